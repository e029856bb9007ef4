//! Session lifetime and cookie attributes.

use std::time::Duration;

use cookie::{Cookie, SameSite};

/// How long sessions live and how their cookie looks.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Sliding idle timeout (Django's `SESSION_COOKIE_AGE`): 14 days by default.
    pub idle_timeout: Duration,
    /// Absolute lifetime cap from creation: 30 days by default. Idle expiry never slides past it.
    pub absolute_timeout: Duration,
    /// At most one expiry-extending store write per session per interval: 5 minutes by default.
    pub touch_interval: Duration,
    /// Sliding idle timeout of sessions without a logged-in user (anonymous data, passkey
    /// ceremonies, a pending second factor): [`DEFAULT_ANONYMOUS_TIMEOUT`] by default. Anonymous
    /// sessions cost nothing to create, so they must not live as long as logins.
    pub anonymous_timeout: Duration,
    /// Cookie attributes.
    pub cookie: CookieConfig,
}

/// How long an anonymous session lives without use: 15 minutes.
pub const DEFAULT_ANONYMOUS_TIMEOUT: Duration = Duration::from_secs(15 * 60);

impl SessionConfig {
    /// The sliding idle timeout of a session of `user_id` (`None`: anonymous).
    pub fn idle_for(&self, user_id: Option<i64>) -> Duration {
        match user_id {
            Some(_) => self.idle_timeout,
            None => self.anonymous_timeout.min(self.idle_timeout),
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(14 * 24 * 3600),
            absolute_timeout: Duration::from_secs(30 * 24 * 3600),
            touch_interval: Duration::from_secs(300),
            anonymous_timeout: DEFAULT_ANONYMOUS_TIMEOUT,
            cookie: CookieConfig::default(),
        }
    }
}

/// Attributes of the session cookie. Defaults are the safe ones: `HttpOnly`, `SameSite=Lax`,
/// `Path=/`, no `Domain`. A configured server takes the whole cookie from its origins policy
/// (`origins::OriginsPolicy::session_cookie`: `Secure`, `SameSite`, `Partitioned`, `Domain` and the
/// `__Host-`/`__Secure-` prefix decided in one place); sessions only apply what they are given.
#[derive(Debug, Clone)]
pub struct CookieConfig {
    /// Cookie name (including any `__Host-`/`__Secure-` prefix).
    pub name: String,
    /// `Secure` attribute.
    pub secure: bool,
    /// `SameSite` attribute. `Lax` by default: `Strict` breaks the first navigation from an e-mail
    /// link or an SSO redirect.
    pub same_site: SameSite,
    /// `Domain` attribute; `None` makes a host-only cookie (the safe default).
    pub domain: Option<String>,
    /// `Path` attribute.
    pub path: String,
    /// `Partitioned` (CHIPS): the one way a cross-site cookie survives third-party cookie
    /// blocking (browser-cookie-rules.md rule 8). Only with `SameSite=None; Secure`.
    pub partitioned: bool,
}

/// Base name of the session cookie.
pub const DEFAULT_COOKIE_NAME: &str = "vestibule_session";

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_COOKIE_NAME.to_owned(),
            secure: false,
            same_site: SameSite::Lax,
            domain: None,
            path: "/".to_owned(),
            partitioned: false,
        }
    }
}

impl CookieConfig {
    /// Builds the `Set-Cookie` for a token that lives `max_age` more seconds.
    pub(crate) fn build(&self, value: String, max_age: i64) -> Cookie<'static> {
        let mut c = Cookie::build((self.name.clone(), value))
            .http_only(true)
            .secure(self.secure)
            .same_site(self.same_site)
            .path(self.path.clone())
            .max_age(time::Duration::seconds(max_age.max(0)))
            .partitioned(self.partitioned)
            .build();
        if let Some(d) = &self.domain {
            c.set_domain(d.clone());
        }
        c
    }

    /// The `Set-Cookie` that deletes the cookie in the browser.
    pub(crate) fn removal(&self) -> Cookie<'static> {
        self.build(String::new(), 0)
    }
}
