//! One browser-origins policy instead of four lists.
//!
//! The operator declares the API's public origin and the SPA origins once; everything a browser
//! cares about is derived from them: the CORS allowlist, the CSRF trusted origins and the session
//! cookie's `SameSite`, `Secure` and `Partitioned` attributes. The rules applied are the measured
//! ones of `browser-cookie-rules.md` (cited as "rule N" in messages).
//!
//! - [`OriginPattern`]: an exact origin or an anchored `scheme://*.suffix[:port]` wildcard.
//! - [`Site`] and [`site_of`]: schemeful same-site (scheme + registrable domain, ports ignored),
//!   with the registrable domain taken from the Public Suffix List.
//! - [`OriginsPolicy`]: the validated policy, its derived cookie attributes and the verdicts the
//!   debug endpoint (`server::debug`) reports.
//!
//! One file each: `pattern.rs`, `site.rs` (also the relation the doctor uses), `policy.rs`.

mod pattern;
mod policy;
mod site;

pub use self::pattern::{OriginPattern, PatternError, parse_patterns};
pub(crate) use self::policy::same_site_title;
pub use self::policy::{CookieAttributes, CookieOverrides, OriginsPolicy, parse_same_site};
pub use self::site::{Relation, Site, is_loopback_mix, is_public_suffix, relation, site_of};
