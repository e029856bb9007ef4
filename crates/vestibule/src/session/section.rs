//! `[session]` as written in `vestibule.toml`, and its validation: lifetimes (from the profile or
//! set one by one), the cookie's name, and the store ([`super::stores::section`]). The cookie's
//! `Domain` and `SameSite` override are read by the origins policy, which decides the attributes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::stores::section::{RawStore, StoreKind, cookie_keys, store, store_timeout};
use super::stores::{CookieKeyRing, RedisConfig};
use super::{DEFAULT_ANONYMOUS_TIMEOUT, DEFAULT_COOKIE_NAME};
use crate::problem::Problems;
use crate::settings::{SecretList, SecretString};

/// `[session]`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawSession {
    /// Store backend: `cached-sqlite` (default), `sqlite`, `memory` (the SQL names mean the
    /// database at `database_url`, SQLite or PostgreSQL), a `redis://` URL, or a list of Redis
    /// Cluster node URLs.
    pub store: RawStore,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub redis_prefix: String,
    /// In-memory read cache in front of Redis, kept coherent across instances by pub/sub.
    pub redis_cache: bool,
    /// Bound of one store or database operation ("2s"): past it, 503 `store_unavailable`.
    pub store_timeout: String,
    /// Lifetime preset: `"default"` (14 days idle / 30 days absolute) or `"strict"` (30 minutes
    /// idle / 12 hours absolute, and `SameSite=Strict` when every SPA origin is same-site with
    /// the API), for OWASP ASVS level 2 deployments. `idle_timeout` / `absolute_timeout` override it.
    pub profile: String,
    /// Sliding idle timeout ("14d"); unset: from `profile`.
    pub idle_timeout: Option<String>,
    /// Absolute lifetime ("30d"); unset: from `profile`.
    pub absolute_timeout: Option<String>,
    /// Minimum time between expiry-extending writes ("5m").
    pub touch_interval: String,
    /// Sliding idle timeout of sessions without a logged-in user — anonymous data such as the
    /// demo counter, a passkey ceremony, a pending second factor ("15m"; capped by
    /// `idle_timeout`). Short, so that anonymous traffic cannot keep the store full for days.
    pub anonymous_timeout: String,
    /// Cookie base name (a `__Host-` prefix is added over https).
    pub cookie_name: String,
    /// Cookie `Domain`; unset means host-only (recommended). Must cover the API host and must
    /// not be a public suffix.
    pub cookie_domain: Option<String>,
    /// Overrides the derived `SameSite` (`lax`, `strict` or `none`); unset: `lax`, or `none`
    /// (with `Secure; Partitioned`) when an SPA origin is cross-site with the API.
    pub same_site: Option<String>,
    /// `Clear-Site-Data: "cookies"` on logout: the browser drops every cookie of the API's
    /// origin (the app's own through the same-origin proxy, and the device cookie of the login
    /// rate limit). Turn off when other cookies on the origin must survive a logout.
    pub clear_site_data: bool,
    /// Sessions kept in memory by the memory store or the read cache.
    pub cache_capacity: u64,
    /// How often expired sessions are purged ("10m").
    pub purge_interval: String,
    /// Keys of the cookie store (`store = "cookie"`): 32 bytes each in base64 (`openssl rand
    /// -base64 32`). The first seals, all open: rotate by putting a new key first and dropping the
    /// old one once its cookies have expired. Unset: one key derived from `secret_key` (HKDF).
    #[serde(skip_serializing_if = "SecretList::is_empty")]
    pub cookie_keys: SecretList,
}

impl Default for RawSession {
    fn default() -> Self {
        Self {
            store: RawStore::default(),
            redis_prefix: super::stores::REDIS_DEFAULT_PREFIX.into(),
            redis_cache: true,
            store_timeout: "2s".into(),
            profile: "default".into(),
            idle_timeout: None,
            absolute_timeout: None,
            clear_site_data: true,
            touch_interval: "5m".into(),
            anonymous_timeout: "15m".into(),
            cookie_name: DEFAULT_COOKIE_NAME.into(),
            cookie_domain: None,
            same_site: None,
            cache_capacity: 100_000,
            purge_interval: "10m".into(),
            cookie_keys: SecretList::default(),
        }
    }
}

/// `[session]` validated. The cookie itself is not here: its attributes follow the origins
/// policy, which the configuration assembles.
#[derive(Debug)]
pub struct SessionSection {
    /// The lifetimes, when every one of them is valid.
    pub lifetimes: Option<Lifetimes>,
    /// `profile = "strict"`: `SameSite=Strict` where it breaks no SPA.
    pub strict_profile: bool,
    /// The store backend.
    pub store: StoreKind,
    /// Where Redis is, when the store is Redis.
    pub redis: Option<RedisConfig>,
    /// The cookie store's keys, when the store is the cookie.
    pub cookie_keys: Option<CookieKeyRing>,
    /// `store_timeout`, when valid.
    pub store_timeout: Option<Duration>,
}

/// How long sessions live.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// Sliding idle timeout.
    pub idle: Duration,
    /// Absolute lifetime.
    pub absolute: Duration,
    /// Minimum time between expiry-extending writes.
    pub touch: Duration,
    /// Idle timeout of anonymous sessions, never longer than `idle`.
    pub anonymous: Duration,
    /// Interval of the expired-session purge.
    pub purge: Duration,
}

impl RawSession {
    /// Every `[session]` key; `secret_key` is the top-level one the cookie store's key may be
    /// derived from.
    pub fn validate(
        &self,
        secret_key: Option<&SecretString>,
        p: &mut Problems,
        warnings: &mut Vec<String>,
    ) -> SessionSection {
        let profile = match self.profile.as_str() {
            "default" => Some(SessionProfile::Default),
            "strict" => Some(SessionProfile::Strict),
            other => {
                p.add(
                    "session.profile",
                    format!("{other:?} must be \"default\" or \"strict\""),
                );
                None
            }
        };
        let (idle_default, absolute_default) =
            profile.unwrap_or(SessionProfile::Default).timeouts();
        let idle = p.duration(
            "session.idle_timeout",
            self.idle_timeout.as_deref().unwrap_or(idle_default),
        );
        let absolute = p.duration(
            "session.absolute_timeout",
            self.absolute_timeout.as_deref().unwrap_or(absolute_default),
        );
        let touch = p.duration("session.touch_interval", &self.touch_interval);
        let anonymous = p.duration("session.anonymous_timeout", &self.anonymous_timeout);
        let purge = p.duration("session.purge_interval", &self.purge_interval);
        let timeout = store_timeout(p, &self.store_timeout);
        let (kind, redis) = store(p, self, timeout);
        let keys = cookie_keys(p, kind, &self.cookie_keys, secret_key, warnings);
        if let (Some(i), Some(a)) = (idle, absolute)
            && i > a
        {
            p.add(
                "session.idle_timeout",
                "is longer than session.absolute_timeout, which caps it".into(),
            );
        }
        if let (Some(i), Some(t)) = (idle, touch)
            && t >= i
        {
            p.add(
                "session.touch_interval",
                "must be shorter than session.idle_timeout, or sessions expire while in use".into(),
            );
        }
        let name = &self.cookie_name;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            p.add(
                "session.cookie_name",
                format!(
                    "{name:?} must be ASCII letters, digits, _ or - (prefixes are added automatically)"
                ),
            );
        }
        if self.cache_capacity == 0 {
            p.add("session.cache_capacity", "must be at least 1".into());
        }
        let lifetimes = match (idle, absolute, touch, purge) {
            (Some(idle), Some(absolute), Some(touch), Some(purge)) => Some(Lifetimes {
                idle,
                absolute,
                touch,
                // Invalid: already a problem above; never longer than the idle timeout.
                anonymous: anonymous.unwrap_or(DEFAULT_ANONYMOUS_TIMEOUT).min(idle),
                purge,
            }),
            _ => None,
        };
        SessionSection {
            lifetimes,
            strict_profile: profile == Some(SessionProfile::Strict),
            store: kind,
            redis,
            cookie_keys: keys,
            store_timeout: timeout,
        }
    }
}

/// `session.profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionProfile {
    /// 14 days idle, 30 days absolute: Django's two-week `SESSION_COOKIE_AGE` (people who use an
    /// app every week or two stay logged in), capped at a month so a stolen session dies
    /// within one whatever its use (ASVS 7.3.2 asks for an absolute limit, its length is the
    /// deployment's risk decision).
    Default,
    /// 30 minutes idle, 12 hours absolute (a working day): ASVS level 2 expectations for
    /// applications with sensitive data.
    Strict,
}

impl SessionProfile {
    fn timeouts(self) -> (&'static str, &'static str) {
        match self {
            Self::Default => ("14d", "30d"),
            Self::Strict => ("30m", "12h"),
        }
    }
}
