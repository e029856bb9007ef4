//! Users, passwords and the extractors handlers use to know who is calling
//! (the analogue of `django.contrib.auth` and DRF's `SessionAuthentication`).

mod device;
pub mod email;
mod extract;
pub mod login;
pub mod mfa;
pub mod oidc;
mod password;
pub mod quality;
pub mod reauth;
pub mod reset;
mod section;
mod tokens;
mod user;

pub use device::{DEVICE_LIFETIME_SECS, DeviceTrust};
pub use extract::{AccountUser, AuthUser, MaybeAuthUser};
pub use login::{
    LoggedIn, Login, LoginFlow, LoginStep, LoginTransport, PendingLogin, Proof, SecondFactorDue,
};
pub use password::{
    DEFAULT_HASH_MEMORY_BUDGET, DEFAULT_HASH_QUEUE_TIMEOUT, HASH_MEMORY_BYTES, HashLimits,
    Password, PasswordHasher, PasswordPolicy,
};
pub use quality::MAX_PASSWORD_BYTES;
pub use reset::PasswordResets;
pub use section::{AuthSettings, RawAuth, RawTokens, TokenSettings};
pub use tokens::{AccessToken, AccessTokens, Scope, TokenError, TokenOwner};
pub use user::{Removal, delete_user};
pub use user::{User, UserError, UserStore, Username, disable_user, is_control_or_invisible};
