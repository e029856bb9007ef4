//! Configuration: defaults → `vestibule.toml` → `VESTIBULE_*` environment → command-line flags,
//! validated once into [`Config`] with every problem explained.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::csrf::CsrfConfig;
use crate::origin::Origin;
use crate::session::{CookieConfig, DEFAULT_COOKIE_NAME, SessionConfig};

/// The file read from the working directory when no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "vestibule.toml";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Which session store backs the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// SQLite with an in-memory read cache: durable and fast. The default.
    #[default]
    CachedSqlite,
    /// SQLite only.
    Sqlite,
    /// Memory only: sessions end with the process.
    Memory,
}

/// The configuration as written, before validation. Field names are the keys of `vestibule.toml`
/// and, upper-cased with `__` between sections, of `VESTIBULE_*` variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// Socket address to listen on.
    pub listen: String,
    /// The URL browsers use to reach this server; decides `Secure` and the CSRF own origin.
    /// Default: `http://localhost:<port>` for a loopback or wildcard listen address.
    pub public_url: Option<String>,
    /// SQLite file (or `sqlite://path`) for users and sessions.
    pub database_url: String,
    /// Demo mode: signup on, and the URL printed at start-up.
    pub demo: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Session settings.
    pub session: RawSession,
    /// Account settings.
    pub auth: RawAuth,
    /// CSRF settings.
    pub csrf: RawCsrf,
    /// Request limits.
    pub limits: RawLimits,
}

/// `[session]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSession {
    /// Store backend.
    pub store: StoreKind,
    /// Sliding idle timeout ("14d").
    pub idle_timeout: String,
    /// Absolute lifetime ("30d").
    pub absolute_timeout: String,
    /// Minimum time between expiry-extending writes ("5m").
    pub touch_interval: String,
    /// Cookie base name (a `__Host-` prefix is added over https).
    pub cookie_name: String,
    /// Cookie `Domain`; unset means host-only (recommended).
    pub cookie_domain: Option<String>,
    /// Sessions kept in memory by the memory store or the read cache.
    pub cache_capacity: u64,
    /// How often expired sessions are purged ("10m").
    pub purge_interval: String,
}

/// `[auth]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAuth {
    /// Whether `POST /auth/signup` is open.
    pub signup: bool,
    /// Minimum password length.
    pub min_password_length: usize,
    /// Concurrent password hashes (each takes 19 MiB); default: the number of CPUs.
    pub hash_parallelism: Option<usize>,
}

/// `[csrf]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RawCsrf {
    /// Origins besides this server's own allowed to make cookie-authenticated writes. In the
    /// environment, a comma-separated list.
    #[serde(deserialize_with = "list_or_csv")]
    pub trusted_origins: Vec<String>,
}

/// `[limits]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLimits {
    /// Largest request body, in bytes.
    pub body_bytes: usize,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8000".into(),
            public_url: None,
            database_url: "vestibule.db".into(),
            demo: false,
            log_format: LogFormat::Human,
            session: RawSession::default(),
            auth: RawAuth::default(),
            csrf: RawCsrf::default(),
            limits: RawLimits::default(),
        }
    }
}

impl Default for RawSession {
    fn default() -> Self {
        Self {
            store: StoreKind::CachedSqlite,
            idle_timeout: "14d".into(),
            absolute_timeout: "30d".into(),
            touch_interval: "5m".into(),
            cookie_name: DEFAULT_COOKIE_NAME.into(),
            cookie_domain: None,
            cache_capacity: 100_000,
            purge_interval: "10m".into(),
        }
    }
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            signup: false,
            min_password_length: 8,
            hash_parallelism: None,
        }
    }
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            body_bytes: 64 * 1024,
        }
    }
}

fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(v) => v,
        Either::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// One thing wrong with a configuration: the key, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, as written in `vestibule.toml`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration cannot be used. Lists every problem, not just the first.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The sources could not be read or typed (syntax, unknown key, wrong type).
    #[error("cannot read the configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// The values were read but some are invalid.
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The origin browsers reach the server at.
    pub public_origin: Origin,
    /// The SQLite file.
    pub database_path: PathBuf,
    /// Demo mode.
    pub demo: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Session store backend.
    pub store: StoreKind,
    /// Session lifetime and cookie.
    pub session: SessionConfig,
    /// Sessions kept in memory.
    pub cache_capacity: u64,
    /// Interval of the expired-session purge.
    pub purge_interval: Duration,
    /// Whether signup is open.
    pub signup: bool,
    /// Minimum password length.
    pub min_password_length: usize,
    /// Concurrent password hashes.
    pub hash_parallelism: usize,
    /// CSRF origins.
    pub csrf: CsrfConfig,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Things that work but deserve attention, said at start-up and by `config check`.
    pub warnings: Vec<String>,
}

impl RawConfig {
    /// Reads defaults, then the file (`path`, or `vestibule.toml` if it exists), then
    /// `VESTIBULE_*` variables, then `overrides` (command-line flags, already serialized).
    ///
    /// # Errors
    /// [`ConfigError::Load`] on a syntax error, unknown key or wrong type, and when an explicitly
    /// named file is missing.
    pub fn load(path: Option<&Path>, overrides: impl Serialize) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(RawConfig::default()));
        match path {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError::Invalid(vec![Problem {
                        key: "--config".into(),
                        message: format!("{} does not exist", p.display()),
                    }]));
                }
                fig = fig.merge(Toml::file_exact(p));
            }
            None => fig = fig.merge(Toml::file(DEFAULT_CONFIG_FILE)),
        }
        fig = fig
            .merge(
                Env::prefixed("VESTIBULE_")
                    .split("__")
                    .ignore(&["config", "log"]),
            )
            .merge(Serialized::globals(overrides));
        fig.extract().map_err(|e| ConfigError::Load(Box::new(e)))
    }

    /// Validates every value; collects all problems.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing each problem with its key.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let mut problem = |key: &str, message: String| {
            problems.push(Problem {
                key: key.into(),
                message,
            })
        };

        let listen: Option<SocketAddr> = match self.listen.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                problem(
                    "listen",
                    format!("{:?} is not ip:port (e.g. 127.0.0.1:8000)", self.listen),
                );
                None
            }
        };
        let public_url = self.public_url.clone().unwrap_or_else(|| match listen {
            Some(a) if a.ip().is_loopback() || a.ip().is_unspecified() => {
                format!("http://localhost:{}", a.port())
            }
            Some(a) => format!("http://{a}"),
            None => "http://localhost:8000".into(),
        });
        let public_origin = match Origin::parse(public_url.trim_end_matches('/')) {
            Ok(o) => Some(o),
            Err(e) => {
                problem(
                    "public_url",
                    format!("{e}; give the origin browsers use, e.g. https://api.acme.com"),
                );
                None
            }
        };
        let database_path = match crate::db::sqlite_path(&self.database_url) {
            Ok(p) => Some(p),
            Err(e) => {
                problem("database_url", e.to_string());
                None
            }
        };
        let mut duration = |key: &str, v: &str| match humantime::parse_duration(v) {
            Ok(d) if d.as_secs() > 0 => Some(d),
            _ => {
                problem(
                    key,
                    format!("{v:?} is not a duration like \"14d\", \"30m\" or \"90s\""),
                );
                None
            }
        };
        let idle = duration("session.idle_timeout", &self.session.idle_timeout);
        let absolute = duration("session.absolute_timeout", &self.session.absolute_timeout);
        let touch = duration("session.touch_interval", &self.session.touch_interval);
        let purge = duration("session.purge_interval", &self.session.purge_interval);
        if let (Some(i), Some(a)) = (idle, absolute)
            && i > a
        {
            problem(
                "session.idle_timeout",
                "is longer than session.absolute_timeout, which caps it".into(),
            );
        }
        if let (Some(i), Some(t)) = (idle, touch)
            && t >= i
        {
            problem(
                "session.touch_interval",
                "must be shorter than session.idle_timeout, or sessions expire while in use".into(),
            );
        }
        let name = &self.session.cookie_name;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            problem(
                "session.cookie_name",
                format!(
                    "{name:?} must be ASCII letters, digits, _ or - (prefixes are added automatically)"
                ),
            );
        }
        if self.session.cache_capacity == 0 {
            problem("session.cache_capacity", "must be at least 1".into());
        }
        let mut trusted = Vec::new();
        for (i, o) in self.csrf.trusted_origins.iter().enumerate() {
            match Origin::parse(o) {
                Ok(o) => trusted.push(o),
                Err(e) => problem(
                    &format!("csrf.trusted_origins[{i}]"),
                    format!("{e}; write scheme://host[:port], e.g. http://localhost:3000"),
                ),
            }
        }
        if self.auth.min_password_length < 8 {
            warnings.push(format!(
                "auth.min_password_length = {} is below 8, the minimum NIST SP 800-63B and OWASP ASVS accept",
                self.auth.min_password_length
            ));
        }
        if self.limits.body_bytes < 1024 {
            problem(
                "limits.body_bytes",
                "must be at least 1024 so login bodies fit".into(),
            );
        }
        if let Some(origin) = &public_origin {
            if origin.scheme() == "http" && origin.is_loopback() {
                warnings.push(format!(
                    "public_url {origin} is plain-http loopback: the session cookie is sent without Secure (development only; browsers treat localhost as secure)"
                ));
            } else if origin.scheme() == "http" {
                warnings.push(format!(
                    "public_url {origin} is plain http on a non-loopback host: the session cookie cannot be Secure and travels in clear; use https in production"
                ));
            }
            for t in &trusted {
                if t.scheme() == "https" && origin.scheme() == "http" {
                    warnings.push(format!("trusted origin {t} is https but this server is http: browsers block the calls as mixed content"));
                }
            }
        }
        if self.session.cookie_domain.is_some() {
            warnings.push("session.cookie_domain is set: the cookie is shared with every subdomain, and the __Host- prefix cannot be used".into());
        }

        let (
            Some(listen),
            Some(public_origin),
            Some(database_path),
            Some(idle),
            Some(absolute),
            Some(touch),
            Some(purge),
        ) = (
            listen,
            public_origin,
            database_path,
            idle,
            absolute,
            touch,
            purge,
        )
        else {
            return Err(ConfigError::Invalid(problems));
        };
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        let public_url = url::Url::parse(&public_origin.to_string()).map_err(|e| {
            ConfigError::Invalid(vec![Problem {
                key: "public_url".into(),
                message: e.to_string(),
            }])
        })?;
        let cookie = CookieConfig::for_public_url(
            &public_url,
            &self.session.cookie_name,
            self.session.cookie_domain.clone(),
        );
        Ok(Config {
            listen,
            database_path,
            demo: self.demo,
            log_format: self.log_format,
            store: self.session.store,
            session: SessionConfig {
                idle_timeout: idle,
                absolute_timeout: absolute,
                touch_interval: touch,
                cookie,
            },
            cache_capacity: self.session.cache_capacity,
            purge_interval: purge,
            signup: self.auth.signup || self.demo,
            min_password_length: self.auth.min_password_length,
            hash_parallelism: self
                .auth
                .hash_parallelism
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from)),
            csrf: CsrfConfig {
                own_origin: public_origin.clone(),
                trusted_origins: trusted,
            },
            public_origin,
            body_limit: self.limits.body_bytes,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_safe() {
        let c = RawConfig::default().validate().expect("defaults validate");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(c.public_origin.to_string(), "http://localhost:8000");
        assert_eq!(c.store, StoreKind::CachedSqlite);
        assert!(!c.session.cookie.secure);
        assert_eq!(c.session.cookie.name, "vestibule_session");
        assert_eq!(c.session.idle_timeout, Duration::from_secs(14 * 86400));
        assert!(!c.signup);
        assert!(c.warnings.iter().any(|w| w.contains("without Secure")));
    }

    #[test]
    fn https_public_url_makes_a_host_prefixed_secure_cookie() {
        let raw = RawConfig {
            public_url: Some("https://api.acme.com".into()),
            ..RawConfig::default()
        };
        let c = raw.validate().expect("valid");
        assert!(c.session.cookie.secure);
        assert_eq!(c.session.cookie.name, "__Host-vestibule_session");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let mut raw = RawConfig {
            listen: "nope".into(),
            ..RawConfig::default()
        };
        raw.session.idle_timeout = "forever".into();
        raw.csrf.trusted_origins = vec![
            "https://*.acme.com".into(),
            "http://localhost:3000/app".into(),
        ];
        let Err(ConfigError::Invalid(problems)) = raw.validate() else {
            panic!("must be invalid")
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"listen"));
        assert!(keys.contains(&"session.idle_timeout"));
        assert!(keys.contains(&"csrf.trusted_origins[0]"));
        assert!(keys.contains(&"csrf.trusted_origins[1]"));
    }

    #[test]
    fn idle_longer_than_absolute_is_refused() {
        let mut raw = RawConfig::default();
        raw.session.idle_timeout = "40d".into();
        assert!(
            matches!(raw.validate(), Err(ConfigError::Invalid(p)) if p[0].key == "session.idle_timeout")
        );
    }
}
