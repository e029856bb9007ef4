//! Users, passwords and the extractors handlers use to know who is calling
//! (the analogue of `django.contrib.auth` and DRF's `SessionAuthentication`).

mod device;
mod extract;
pub mod mfa;
mod password;
mod tokens;
mod user;

pub use device::{DEVICE_LIFETIME_SECS, DeviceTrust};
pub use extract::{AuthUser, MaybeAuthUser};
pub use password::{MAX_PASSWORD_BYTES, Password, PasswordHasher, PasswordPolicy};
pub use tokens::{AccessToken, AccessTokens, Scope, TokenError, TokenOwner};
pub use user::{User, UserError, UserStore, Username};
