//! Configuration: defaults → `vestibule.toml` → `VESTIBULE_*` environment → command-line flags,
//! validated once into [`Config`] with every problem explained.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use axum::http::{HeaderName, Method};

use crate::cors::{self, CorsConfig};
use crate::csrf::CsrfConfig;
use crate::origin::Origin;
use crate::origins::{CookieOverrides, OriginPattern, OriginsPolicy};
use crate::session::{CookieConfig, DEFAULT_COOKIE_NAME, SessionConfig};

/// Bound of one store operation when `session.store_timeout` is not set.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// The SQL database (`database_url`) with an in-memory read cache: durable and fast. The default.
    #[default]
    CachedSqlite,
    /// The SQL database only.
    Sqlite,
    /// Memory only: sessions end with the process.
    Memory,
    /// Redis (one node or a cluster), shared by every instance; see [`Config::redis`].
    Redis,
    /// Redis with an in-memory read cache kept coherent across instances by pub/sub invalidation.
    CachedRedis,
    /// No store: each session travels sealed (encrypted and authenticated) in its cookie, under
    /// [`Config::cookie_keys`]. See the README's "Session stores" section for what it cannot do.
    Cookie,
}

/// `session.store` as written: a store name, a `redis://` URL, or a list of Redis Cluster nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawStore {
    /// `"cached-sqlite"`, `"sqlite"`, `"memory"`, `"redis://host:port/db"`, or
    /// `"redis://a:7000,redis://b:7001"` (cluster nodes, comma-separated, e.g. in the environment).
    One(String),
    /// Redis Cluster seed nodes.
    Nodes(Vec<String>),
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore::One("cached-sqlite".into())
    }
}

/// The configuration as written, before validation. Field names are the keys of `vestibule.toml`
/// and, upper-cased with `__` between sections, of `VESTIBULE_*` variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// Named overlays (`[profile.dev]`, `[profile.staging]`), merged over the top-level keys when
    /// selected with `--profile` / `VESTIBULE_PROFILE`: one file for production and development.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<figment::value::Dict>,
    /// Socket address to listen on.
    pub listen: String,
    /// The URL browsers use to reach this server; decides `Secure` and the CSRF own origin.
    /// Default: `http://localhost:<port>` for a loopback or wildcard listen address.
    pub public_url: Option<String>,
    /// The origins of the single-page apps that call this API from a browser, exact
    /// (`https://www.acme.com`) or anchored patterns (`https://*.preview.acme.com`). The CORS
    /// allowlist, the CSRF trusted origins and the cookie's `SameSite`/`Secure`/`Partitioned`
    /// are derived from them. In the environment, a comma-separated list.
    #[serde(deserialize_with = "list_or_csv")]
    pub spa_origins: Vec<String>,
    /// Mounts `GET /auth/_debug`, which reports what the server saw of a request (header and
    /// cookie names, never values) and which browser rule drops the cookie. Development only;
    /// `--demo` does not turn it on.
    pub debug_endpoint: bool,
    /// Users, access tokens and durable sessions: an SQLite file (or `sqlite://path`), or
    /// `postgres://user:password@host:port/database` for several instances.
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
    /// CORS settings (the allowed origins are `spa_origins`).
    pub cors: RawCors,
    /// Bearer (API) token settings.
    pub tokens: RawTokens,
    /// Request limits.
    pub limits: RawLimits,
    /// `[[upstream]]`: path prefixes forwarded to backends (the production gateway).
    pub upstream: Vec<crate::proxy::RawUpstream>,
    /// `[dev]`: `vestibule dev` in front of a frontend dev server.
    pub dev: crate::proxy::RawDev,
    /// A built SPA served for every path no route or upstream takes (`--static DIR`).
    pub static_dir: Option<String>,
    /// `[static_site]`: the served SPA's response headers (`[static_site.headers]`).
    pub static_site: crate::proxy::config::RawStaticSite,
    /// Rate limits on login, signup, password change and token creation.
    pub rate_limits: RawRateLimits,
    /// Prometheus metrics.
    pub metrics: RawMetrics,
    /// Signs the login rate limit's device-recognition cookie (any string of 32+ characters;
    /// keep it secret, and the same on every instance). Unset: a random key per process, so
    /// devices are recognised until the next restart, by this instance only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretString>,
}

/// A configuration secret: never shown by `Debug` (configurations get logged).
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(pub String);

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// A list of configuration secrets (a TOML list, or comma-separated in the environment); `Debug`
/// shows only how many there are.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretList(#[serde(deserialize_with = "list_or_csv")] pub Vec<String>);

impl SecretList {
    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[<{} redacted>]", self.0.len())
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawMetrics {
    /// Serves `GET /metrics` (OpenMetrics text).
    pub enabled: bool,
    /// Addresses or CIDR networks allowed to read `/metrics`; others get 404. Loopback only by
    /// default: put the scraper's network here, not the world. In the environment, a
    /// comma-separated list.
    #[serde(deserialize_with = "list_or_csv")]
    pub allow: Vec<String>,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self {
            enabled: true,
            allow: vec!["127.0.0.0/8".into(), "::1".into()],
        }
    }
}

/// `[rate_limits]`: `"N/period"` (a burst of N refilled over the period), or `"off"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRateLimits {
    /// Login attempts per client address (IPv6: per /64).
    pub login_per_ip: String,
    /// Login attempts per account from unrecognised devices (slows password guessing).
    pub login_per_user: String,
    /// Login attempts per account from devices that logged in to it before (the owner's own
    /// budget: an attack from elsewhere cannot lock them out).
    pub login_per_device: String,
    /// Signups per client address.
    pub signup_per_ip: String,
    /// Password changes per account.
    pub password_per_user: String,
    /// Access tokens created per account.
    pub token_create_per_user: String,
    /// Sessions created for clients that are not logged in (a handler writing to an anonymous
    /// session), per address: a flood of cookie-less writes cannot fill the store.
    pub anonymous_sessions_per_ip: String,
    /// Second-factor code attempts (TOTP, recovery code, passkey) per account.
    pub mfa_per_user: String,
}

impl RawRateLimits {
    /// Every limit off (tests and benchmarks that log in far more often than people do).
    pub fn off() -> Self {
        let off = || "off".to_owned();
        Self {
            login_per_ip: off(),
            login_per_user: off(),
            login_per_device: off(),
            signup_per_ip: off(),
            password_per_user: off(),
            token_create_per_user: off(),
            anonymous_sessions_per_ip: off(),
            mfa_per_user: off(),
        }
    }
}

impl Default for RawRateLimits {
    fn default() -> Self {
        Self {
            login_per_ip: "30/min".into(),
            login_per_user: "10/15m".into(),
            login_per_device: "10/min".into(),
            signup_per_ip: "10/h".into(),
            password_per_user: "5/15m".into(),
            token_create_per_user: "20/h".into(),
            anonymous_sessions_per_ip: "30/min".into(),
            mfa_per_user: "5/5m".into(),
        }
    }
}

/// `[session]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// How long a proof of the password lets a session change the password, create access
    /// tokens, end sessions or manage second factors ("10m"); then `POST /auth/reauth`.
    pub reauth_window: String,
    /// Memory all concurrent password hashes may hold ("256MiB"; each holds 19 MiB): caps
    /// `hash_parallelism` so a login storm cannot push the process past it.
    pub hash_memory_budget: String,
    /// How long a login waits for a hashing slot before 503 `busy` ("2s").
    pub hash_queue_timeout: String,
}

/// `[csrf]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RawCsrf {
    /// Origins (or `https://*.acme.com` patterns) trusted for cookie-authenticated writes in
    /// addition to this server's own and `spa_origins`, e.g. a form-posting admin site. In the
    /// environment, a comma-separated list.
    #[serde(deserialize_with = "list_or_csv")]
    pub trusted_origins: Vec<String>,
}

/// `[cors]`. The allowed origins are not here: they are `spa_origins`, shared with CSRF.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCors {
    /// `Access-Control-Allow-Credentials: true`, needed for the session cookie.
    pub allow_credentials: bool,
    /// Methods a preflight may ask for.
    #[serde(deserialize_with = "list_or_csv")]
    pub allow_methods: Vec<String>,
    /// Request headers a preflight may ask for.
    #[serde(deserialize_with = "list_or_csv")]
    pub allow_headers: Vec<String>,
    /// Response headers the page may read.
    #[serde(deserialize_with = "list_or_csv")]
    pub expose_headers: Vec<String>,
    /// How long browsers may cache a preflight answer ("10m", or seconds).
    pub max_age: RawDuration,
    /// Path prefixes CORS applies to.
    #[serde(deserialize_with = "list_or_csv")]
    pub paths: Vec<String>,
    /// Answer Private Network Access preflights.
    pub allow_private_network: bool,
}

/// A duration written as text ("10m", "600s") or as a number of seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawDuration {
    /// Whole seconds.
    Seconds(u64),
    /// Human-readable, parsed by `humantime`.
    Text(String),
}

/// `[tokens]`: bearer tokens for clients that cannot use the cookie.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTokens {
    /// Lifetime of a new token when the request names none.
    pub default_expiry_days: u32,
    /// Longest lifetime a token may be given.
    pub max_expiry_days: u32,
    /// Live tokens one user may hold.
    pub per_user_limit: u32,
    /// Whether changing the password revokes the user's tokens.
    pub revoke_on_password_change: bool,
}

/// Validated bearer-token settings: bounds that keep a leaked token from living forever and a
/// user from minting unbounded rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSettings {
    /// Lifetime of a new token when the request names none (30 days).
    pub default_expiry: Duration,
    /// Longest lifetime a token may be given (365 days).
    pub max_expiry: Duration,
    /// Live tokens one user may hold (50).
    pub per_user_limit: u32,
    /// Whether a password change revokes the user's tokens (true), like it ends their sessions.
    pub revoke_on_password_change: bool,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl TokenSettings {
    /// The expiry of a token created now for `requested_days` (or the default lifetime).
    ///
    /// # Errors
    /// A message naming the allowed range when the request is 0 or above the maximum.
    pub fn expiry_for(
        &self,
        requested_days: Option<u32>,
    ) -> Result<crate::session::UnixTime, String> {
        let max_days = self.max_expiry.as_secs() / DAY.as_secs();
        let days = requested_days.map_or(self.default_expiry.as_secs() / DAY.as_secs(), u64::from);
        if days == 0 || days > max_days {
            return Err(format!(
                "expires_in_days must be between 1 and {max_days} (tokens.max_expiry_days)"
            ));
        }
        let secs = i64::try_from(days * DAY.as_secs()).unwrap_or(i64::MAX / 2);
        Ok(crate::session::now() + secs)
    }
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            default_expiry: DAY * 30,
            max_expiry: DAY * 365,
            per_user_limit: 50,
            revoke_on_password_change: true,
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLimits {
    /// Largest request body, in bytes.
    pub body_bytes: usize,
    /// Reverse proxies (addresses or CIDR networks) whose entries in `client_ip_header` name
    /// the client; empty: the socket peer is the client. In the environment, a
    /// comma-separated list.
    #[serde(deserialize_with = "list_or_csv")]
    pub trusted_proxies: Vec<String>,
    /// The one forwarding header the trusted proxies write: `x-forwarded-for` (default),
    /// `forwarded` (RFC 7239) or `x-real-ip`. The others are ignored: a proxy passes through
    /// the headers it does not write, so a client could fill them with any address.
    pub client_ip_header: String,
    /// Longest request URI (414 beyond).
    pub uri_bytes: usize,
    /// Largest request header block (431 beyond).
    pub header_bytes: usize,
    /// Most request headers (431 beyond). Browsers send about twenty; below 100, hyper parses
    /// into a fixed buffer instead of a heap one sized per request.
    pub max_headers: usize,
    /// Open connections at most; more clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time a client gets to send a request's headers, and to start its next request on an
    /// idle kept-alive connection ("15s"): what stops slowloris clients from holding sockets.
    pub header_read_timeout: String,
    /// Longest wait for the next piece of a request body ("15s"), which is also the body's
    /// head start for `body_min_rate`: a body that trickles in gets 408 and its connection is
    /// closed (client-facing and, through the gateway, the upstream one).
    pub body_read_timeout: String,
    /// Slowest average a request body may arrive at, in bytes per second, once
    /// `body_read_timeout` is used up (0: only `body_read_timeout` between two reads). Only time
    /// spent waiting for the client counts.
    pub body_min_rate: u64,
    /// Serve HTTP/2 without TLS (h2c, prior knowledge) besides HTTP/1.1. Off: browsers never speak
    /// h2c, so only a front proxy that does needs it, and each h2c connection carries many
    /// requests past `max_connections`.
    pub http2: bool,
    /// Concurrent streams (requests) per HTTP/2 connection.
    pub http2_max_streams: u32,
    /// Live sessions per user; a login beyond it ends the least recently used one.
    pub max_sessions_per_user: usize,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            profile: None,
            listen: "127.0.0.1:8000".into(),
            public_url: None,
            spa_origins: Vec::new(),
            debug_endpoint: false,
            database_url: "vestibule.db".into(),
            demo: false,
            log_format: LogFormat::Human,
            session: RawSession::default(),
            auth: RawAuth::default(),
            csrf: RawCsrf::default(),
            cors: RawCors::default(),
            tokens: RawTokens::default(),
            limits: RawLimits::default(),
            rate_limits: RawRateLimits::default(),
            metrics: RawMetrics::default(),
            secret_key: None,
            upstream: Vec::new(),
            dev: crate::proxy::RawDev::default(),
            static_dir: None,
            static_site: crate::proxy::config::RawStaticSite::default(),
        }
    }
}

impl Default for RawSession {
    fn default() -> Self {
        Self {
            store: RawStore::default(),
            redis_prefix: crate::session::stores::REDIS_DEFAULT_PREFIX.into(),
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

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            signup: false,
            min_password_length: 8,
            hash_parallelism: None,
            reauth_window: "10m".into(),
            hash_memory_budget: "256MiB".into(),
            hash_queue_timeout: "2s".into(),
        }
    }
}

impl Default for RawCors {
    fn default() -> Self {
        Self {
            allow_credentials: true,
            allow_methods: cors::DEFAULT_METHODS.map(str::to_owned).to_vec(),
            allow_headers: cors::DEFAULT_ALLOW_HEADERS.map(str::to_owned).to_vec(),
            expose_headers: cors::DEFAULT_EXPOSE_HEADERS.map(str::to_owned).to_vec(),
            max_age: RawDuration::Seconds(cors::DEFAULT_MAX_AGE.as_secs()),
            paths: vec!["/".into()],
            allow_private_network: false,
        }
    }
}

impl Default for RawTokens {
    fn default() -> Self {
        Self {
            default_expiry_days: 30,
            max_expiry_days: 365,
            per_user_limit: 50,
            revoke_on_password_change: true,
        }
    }
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            body_bytes: 64 * 1024,
            trusted_proxies: Vec::new(),
            client_ip_header: "x-forwarded-for".into(),
            uri_bytes: 8 * 1024,
            header_bytes: 16 * 1024,
            max_headers: 64,
            max_connections: 10_000,
            header_read_timeout: "15s".into(),
            body_read_timeout: "15s".into(),
            body_min_rate: 1024,
            http2: false,
            http2_max_streams: 100,
            max_sessions_per_user: 100,
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

pub use crate::problem::{ConfigError, Problem};

/// Turns a configuration into `vestibule dev`'s: one origin, the dev proxy's. The file's
/// production `public_url`, `spa_origins`, cookie domain, `[[upstream]]` and `static_dir` are set
/// aside; `[dev]` (and the flags, already merged into it) decide. The default cookie name gets
/// the port (`vestibule_session_3000`), so projects on other ports keep their own sessions;
/// `/auth/_debug` and the live cookie-drop detection are on.
pub fn apply_dev(raw: &mut RawConfig) {
    raw.dev.enabled = true;
    raw.listen = raw
        .dev
        .listen
        .clone()
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    raw.public_url = raw.dev.public_url.clone();
    raw.spa_origins.clear();
    raw.session.cookie_domain = None;
    raw.session.same_site = None;
    raw.upstream.clear();
    raw.static_dir = None;
    raw.auth.signup |= raw.dev.signup;
    // Development: `/auth/_debug` and the live cookie-drop warnings (doctor::live).
    raw.debug_endpoint = true;
    if raw.session.cookie_name == crate::session::DEFAULT_COOKIE_NAME
        && let Ok(addr) = raw.listen.parse::<std::net::SocketAddr>()
    {
        raw.session.cookie_name = format!("{}_{}", raw.session.cookie_name, addr.port());
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The origin browsers reach the server at.
    pub public_origin: Origin,
    /// The browser-origins policy everything below is derived from (also the state of the
    /// `/auth/_debug` handler).
    pub origins: Arc<OriginsPolicy>,
    /// CORS, derived from `spa_origins` and `[cors]`.
    pub cors: CorsConfig,
    /// Bearer-token bounds.
    pub tokens: TokenSettings,
    /// Whether `GET /auth/_debug` is mounted.
    pub debug_endpoint: bool,
    /// The database: an SQLite file or a PostgreSQL URL.
    pub database: crate::db::DatabaseLocation,
    /// The SQLite file (empty when the database is PostgreSQL).
    pub database_path: PathBuf,
    /// Demo mode.
    pub demo: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Session store backend.
    pub store: StoreKind,
    /// Where Redis is, when the store is Redis.
    pub redis: Option<crate::session::stores::RedisConfig>,
    /// The cookie store's key ring, when the store is [`StoreKind::Cookie`]. `Debug` shows key
    /// ids only.
    pub cookie_keys: Option<crate::session::stores::CookieKeyRing>,
    /// Bound of one store or database operation.
    pub store_timeout: Duration,
    /// Session lifetime and cookie.
    pub session: SessionConfig,
    /// `Clear-Site-Data: "cookies"` on logout (`session.clear_site_data`).
    pub clear_site_data: bool,
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
    /// How recent a proof of the password sensitive actions need (`auth.reauth_window`).
    pub reauth_window: Duration,
    /// Memory budget of concurrent password hashes, in bytes (`auth.hash_memory_budget`).
    pub hash_memory_budget: u64,
    /// Longest wait for a hashing slot (`auth.hash_queue_timeout`).
    pub hash_queue_timeout: Duration,
    /// CSRF origins: this server's, `spa_origins` and `csrf.trusted_origins`.
    pub csrf: CsrfConfig,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Proxies whose forwarding header (`limits.client_ip_header`) names the client.
    pub trusted_proxies: crate::client_ip::TrustedProxies,
    /// Rate limits.
    pub rate_limits: crate::ratelimit::RateLimitConfig,
    /// Who may read `/metrics`; `None`: metrics off.
    pub metrics_allow: Option<crate::client_ip::TrustedProxies>,
    /// Key of the device-recognition cookie (from `secret_key`, or random).
    pub device_key: [u8; 32],
    /// Key sealing TOTP secrets at rest (from `secret_key`; `None` without one: see `auth::mfa`).
    pub mfa_key: Option<[u8; 32]>,
    /// Longest request URI in bytes.
    pub uri_limit: usize,
    /// Largest request header block in bytes.
    pub header_bytes_limit: usize,
    /// Most request headers.
    pub max_headers: usize,
    /// Open connections at most.
    pub max_connections: usize,
    /// Header-read and idle timeout (HTTP/1 keep-alive, HTTP/2 without open streams).
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body, and its head start.
    pub body_read_timeout: Duration,
    /// Slowest average request body in bytes per second (0: off).
    pub body_min_rate: u64,
    /// Whether h2c is served.
    pub http2: bool,
    /// Concurrent streams per HTTP/2 connection.
    pub http2_max_streams: u32,
    /// Live sessions per user.
    pub max_sessions_per_user: usize,
    /// Things that work but deserve attention, said at start-up and by `config check`.
    pub warnings: Vec<String>,
    /// The same-origin proxy: upstreams, dev mode, static SPA.
    pub proxy: crate::proxy::ProxyConfig,
}

impl Config {
    /// The parts of this configuration the doctor's offline check runs on.
    pub fn offline_server(&self) -> crate::doctor::offline::Server<'_> {
        crate::doctor::offline::Server {
            public_origin: &self.public_origin,
            session: &self.session,
            cors: &self.cors,
            csrf: &self.csrf,
        }
    }
}

impl RawConfig {
    /// Reads defaults, then the file (`path`, or `vestibule.toml` if it exists), then
    /// `VESTIBULE_*` variables, then `overrides` (command-line flags, already serialized).
    ///
    /// # Errors
    /// [`ConfigError::Load`] on a syntax error, unknown key or wrong type, and when an explicitly
    /// named file is missing.
    pub fn load(path: Option<&Path>, overrides: impl Serialize) -> Result<Self, ConfigError> {
        Self::load_profile(path, None, overrides)
    }

    /// Like [`RawConfig::load`], with the file's `[profile.NAME]` table merged over its
    /// top-level keys (before the environment and flags) when `profile` is given.
    ///
    /// # Errors
    /// As [`RawConfig::load`], and when the file has no such profile.
    pub fn load_profile(
        path: Option<&Path>,
        profile: Option<&str>,
        overrides: impl Serialize,
    ) -> Result<Self, ConfigError> {
        let file = match path {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError::Invalid(vec![Problem {
                        key: "--config".into(),
                        message: format!("{} does not exist", p.display()),
                    }]));
                }
                p.to_owned()
            }
            None => Path::new(DEFAULT_CONFIG_FILE).to_owned(),
        };
        let mut fig = Figment::from(Serialized::defaults(RawConfig::default()));
        // An explicit file must exist (checked above); the default one is optional.
        fig = if path.is_some() {
            fig.merge(Toml::file_exact(&file))
        } else {
            fig.merge(Toml::file(&file))
        };
        if let Some(name) = profile {
            let overlay = Figment::from(Toml::file(&file)).focus(&format!("profile.{name}"));
            let present = overlay
                .extract::<figment::value::Dict>()
                .is_ok_and(|d| !d.is_empty());
            if !present {
                return Err(ConfigError::Invalid(vec![Problem {
                    key: "--profile".into(),
                    message: format!(
                        "{} has no [profile.{name}] table; add one, or drop --profile / VESTIBULE_PROFILE",
                        file.display()
                    ),
                }]));
            }
            fig = fig.merge(overlay);
        }
        fig = fig
            .merge(
                Env::prefixed("VESTIBULE_")
                    .split("__")
                    .ignore(&["config", "log", "profile"]),
            )
            .merge(Serialized::globals(overrides));
        fig.extract().map_err(|e| ConfigError::Load(Box::new(e)))
    }

    /// Validates every value; collects all problems.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing each problem with its key.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let mut p = Problems::default();
        let mut warnings = Vec::new();

        let listen: Option<SocketAddr> = match self.listen.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                p.add(
                    "listen",
                    format!("{:?} is not ip:port (e.g. 127.0.0.1:8000)", self.listen),
                );
                None
            }
        };
        match (listen, &self.public_url) {
            (Some(a), None) if a.ip().is_unspecified() => warnings.push(format!(
                "listen = \"{a}\" accepts connections from other machines, but public_url is unset: browsers are assumed to use http://localhost:{} (the Secure flag, CSRF's own origin and passkeys follow it); in a container or behind a proxy, set public_url to the URL browsers type",
                a.port()
            )),
            (Some(a), None) if a.port() == 0 => warnings.push(
                "listen has port 0 (chosen at start-up), so public_url cannot be derived from it: set public_url to the URL browsers use".into(),
            ),
            _ => {}
        }
        let public_url = self.public_url.clone().unwrap_or_else(|| match listen {
            Some(a) if a.ip().is_loopback() || a.ip().is_unspecified() => {
                format!("http://localhost:{}", a.port())
            }
            Some(a) => format!("http://{a}"),
            None => "http://localhost:8000".into(),
        });
        // A URL, so one trailing slash is tolerated here (not in the origin lists).
        let public_origin = match Origin::parse_config(public_url.trim_end_matches('/')) {
            Ok(o) => Some(o),
            Err(e) => {
                p.add(
                    "public_url",
                    format!("{e}; give the origin browsers use, e.g. https://api.acme.com"),
                );
                None
            }
        };
        let database = match crate::db::DatabaseLocation::parse(&self.database_url) {
            Ok(location) => Some(location),
            Err(e) => {
                p.add("database_url", e.to_string());
                None
            }
        };
        let database_path = database.as_ref().map(|d| match d {
            crate::db::DatabaseLocation::Sqlite(path) => path.clone(),
            crate::db::DatabaseLocation::Postgres(_) => PathBuf::new(),
        });
        let profile = match self.session.profile.as_str() {
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
            self.session.idle_timeout.as_deref().unwrap_or(idle_default),
        );
        let absolute = p.duration(
            "session.absolute_timeout",
            self.session
                .absolute_timeout
                .as_deref()
                .unwrap_or(absolute_default),
        );
        let touch = p.duration("session.touch_interval", &self.session.touch_interval);
        let anonymous = p.duration("session.anonymous_timeout", &self.session.anonymous_timeout);
        let purge = p.duration("session.purge_interval", &self.session.purge_interval);
        let store_timeout = p.store_timeout(&self.session.store_timeout);
        let reauth_window = p.duration("auth.reauth_window", &self.auth.reauth_window);
        let hash_queue_timeout = match humantime::parse_duration(&self.auth.hash_queue_timeout) {
            Ok(d) if d > Duration::ZERO && d <= Duration::from_secs(60) => Some(d),
            _ => {
                p.add(
                    "auth.hash_queue_timeout",
                    format!(
                        "{:?} must be a duration from 1ms to 60s, like \"2s\" or \"500ms\"",
                        self.auth.hash_queue_timeout
                    ),
                );
                None
            }
        };
        let hash_memory_budget = match parse_bytes(&self.auth.hash_memory_budget) {
            Some(b) if b >= crate::auth::HASH_MEMORY_BYTES => Some(b),
            Some(_) => {
                p.add(
                    "auth.hash_memory_budget",
                    "must hold at least one password hash (19MiB)".into(),
                );
                None
            }
            None => {
                p.add(
                    "auth.hash_memory_budget",
                    format!(
                        "{:?} is not a size like \"256MiB\" or \"1GiB\"",
                        self.auth.hash_memory_budget
                    ),
                );
                None
            }
        };
        let (store, redis) = p.store(&self.session, store_timeout);
        let cookie_keys = p.cookie_keys(
            store,
            &self.session.cookie_keys,
            self.secret_key.as_ref(),
            &mut warnings,
        );
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
        let name = &self.session.cookie_name;
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
        if self.session.cache_capacity == 0 {
            p.add("session.cache_capacity", "must be at least 1".into());
        }
        let same_site = self.session.same_site.as_deref().and_then(|v| {
            let parsed = crate::origins::parse_same_site(v);
            if parsed.is_none() {
                p.add(
                    "session.same_site",
                    format!(
                        "{v:?} must be lax, strict or none (or unset to derive it from spa_origins)"
                    ),
                );
            }
            parsed
        });
        let spa = p.patterns("spa_origins", &self.spa_origins);
        let extra = p.patterns("csrf.trusted_origins", &self.csrf.trusted_origins);
        let cors_settings = p.cors(&self.cors, &mut warnings);
        let tokens = p.tokens(&self.tokens);
        if self.auth.min_password_length < 8 {
            warnings.push(format!(
                "auth.min_password_length = {} is below 8, the minimum NIST SP 800-63B and OWASP ASVS accept",
                self.auth.min_password_length
            ));
        }
        let client_ip_header =
            match crate::client_ip::ClientIpHeader::parse(&self.limits.client_ip_header) {
                Ok(h) => Some(h),
                Err(e) => {
                    p.add("limits.client_ip_header", e);
                    None
                }
            };
        let trusted_proxies =
            match crate::client_ip::TrustedProxies::parse(&self.limits.trusted_proxies) {
                Ok(t) => client_ip_header.map(|h| t.with_header(h)),
                Err(e) => {
                    p.add("limits.trusted_proxies", e.to_string());
                    None
                }
            };
        let rate_limits = p.rate_limits(&self.rate_limits);
        let metrics_allow = match crate::client_ip::TrustedProxies::parse(&self.metrics.allow) {
            Ok(a) => Some(a),
            Err(e) => {
                p.add("metrics.allow", e.to_string());
                None
            }
        };
        let device_key = match &self.secret_key {
            Some(SecretString(k)) if k.chars().count() < 32 => {
                p.add(
                    "secret_key",
                    "must be at least 32 characters (e.g. `openssl rand -base64 32`)".into(),
                );
                None
            }
            Some(SecretString(k)) => Some(crate::token::derive_key(b"device-cookie", k.as_bytes())),
            None => Some(crate::token::random_key()),
        };
        let header_read_timeout = p.duration(
            "limits.header_read_timeout",
            &self.limits.header_read_timeout,
        );
        let body_read_timeout =
            p.duration("limits.body_read_timeout", &self.limits.body_read_timeout);
        if self.limits.http2_max_streams == 0 {
            p.add("limits.http2_max_streams", "must be at least 1".into());
        }
        for (key, value, min) in [
            ("limits.uri_bytes", self.limits.uri_bytes, 256),
            ("limits.header_bytes", self.limits.header_bytes, 4096),
            ("limits.max_headers", self.limits.max_headers, 16),
            ("limits.max_connections", self.limits.max_connections, 1),
            (
                "limits.max_sessions_per_user",
                self.limits.max_sessions_per_user,
                1,
            ),
        ] {
            if value < min {
                p.add(key, format!("must be at least {min}"));
            }
        }
        if self.limits.body_bytes < 1024 {
            p.add(
                "limits.body_bytes",
                "must be at least 1024 so login bodies fit".into(),
            );
        }

        let mut proxy = crate::proxy::config::validate(
            &self.upstream,
            &self.dev,
            self.static_dir.as_deref(),
            &self.listen,
            &mut p.0,
            &mut warnings,
        );
        // The strict profile asks for SameSite=Strict when it breaks no SPA: every SPA origin is
        // same-site with the API (a cross-site SPA keeps the derived None, said as a warning).
        let strict_same_site = profile == Some(SessionProfile::Strict) && same_site.is_none();
        let same_site = match (&public_origin, strict_same_site) {
            (Some(api), true) => {
                let api_site = crate::origins::site_of(api);
                let cross: Vec<&str> = spa
                    .iter()
                    .filter(|(_, pattern)| pattern.site() != api_site)
                    .map(|(key, _)| key.as_str())
                    .collect();
                if cross.is_empty() {
                    Some(cookie::SameSite::Strict)
                } else {
                    warnings.push(format!(
                        "session.profile = \"strict\": {} cross-site with public_url, so the session cookie cannot be SameSite=Strict; sessions are still short",
                        cross.join(", ")
                    ));
                    None
                }
            }
            _ => same_site,
        };
        proxy.static_headers = crate::proxy::config::static_headers(&self.static_site, &mut p.0);
        let policy = public_origin.as_ref().and_then(|origin| {
            let overrides = CookieOverrides {
                domain: self.session.cookie_domain.clone(),
                same_site,
            };
            match OriginsPolicy::new_keyed(origin.clone(), spa, extra, overrides) {
                Ok((policy, mut said)) => {
                    if strict_same_site {
                        // Chosen by the profile, not by hand: its warning about e-mail links is
                        // the documented price of the strict profile.
                        said.retain(|w| !w.starts_with("session.same_site = strict"));
                    }
                    warnings.append(&mut said);
                    Some(policy)
                }
                Err(mut found) => {
                    p.0.append(&mut found);
                    None
                }
            }
        });
        if let (Some(origin), Some(policy)) = (&public_origin, &policy) {
            if origin.scheme() == "http" && origin.is_loopback() && !policy.cookie().secure {
                warnings.push(format!(
                    "public_url {origin} is plain-http loopback: the session cookie is sent without Secure (development only; browsers treat localhost as secure)"
                ));
            } else if origin.scheme() == "http" && !origin.is_loopback() {
                warnings.push(format!(
                    "public_url {origin} is plain http on a non-loopback host: the session cookie cannot be Secure and travels in clear; use https in production"
                ));
            }
        }
        if self.debug_endpoint {
            let exposed = public_origin.as_ref().is_none_or(|o| !o.is_loopback());
            warnings.push(format!(
                "debug_endpoint is on: GET /auth/_debug tells any caller which headers and cookie names arrive and how the origins policy judges them{}",
                if exposed { "; this public_url is not loopback: turn it off outside development" } else { "" }
            ));
        }

        let (
            Some(listen),
            Some(public_origin),
            Some(database_path),
            Some(idle),
            Some(absolute),
            Some(touch),
            Some(purge),
            Some(policy),
            Some(cors_settings),
            Some(tokens),
            Some(trusted_proxies),
            Some(rate_limits),
            Some(device_key),
            Some(header_read_timeout),
            Some(body_read_timeout),
            Some(metrics_allow),
        ) = (
            listen,
            public_origin,
            database_path,
            idle,
            absolute,
            touch,
            purge,
            policy,
            cors_settings,
            tokens,
            trusted_proxies,
            rate_limits,
            device_key,
            header_read_timeout,
            body_read_timeout,
            metrics_allow,
        )
        else {
            return Err(ConfigError::Invalid(p.0));
        };
        if !p.0.is_empty() {
            return Err(ConfigError::Invalid(p.0));
        }
        let public_url = url::Url::parse(&public_origin.to_string()).map_err(|e| {
            ConfigError::Invalid(vec![Problem {
                key: "public_url".into(),
                message: e.to_string(),
            }])
        })?;
        let derived = policy.cookie().clone();
        let mut cookie = CookieConfig::for_public_url(
            &public_url,
            &self.session.cookie_name,
            derived.domain.clone(),
        );
        cookie.secure = derived.secure;
        cookie.same_site = derived.same_site;
        cookie.partitioned = derived.partitioned;
        let policy = policy.with_cookie_name(cookie.name.clone());
        let cors = CorsConfig {
            allowed_origins: policy.cors_allowed_origins(),
            ..cors_settings
        };
        if let Err(found) = cors.validate() {
            return Err(ConfigError::Invalid(found));
        }
        let csrf = CsrfConfig {
            own_origin: public_origin.clone(),
            trusted_origins: policy.csrf_trusted_origins(),
        };
        if self.secret_key.is_none() && public_origin.scheme() == "https" {
            // Production without the one key that must survive a restart.
            warnings.push(
                "public_url is https but secret_key is unset: TOTP secrets are stored unsealed and every restart forgets which browsers logged in before (their own login budget); set VESTIBULE_SECRET_KEY to 32+ random characters and keep it".into(),
            );
        }
        if redis.is_some() && self.secret_key.is_none() {
            // Shared state that is configuration, not store: every instance must be given it.
            warnings.push(
                "session.store is Redis (several instances) but secret_key is unset: each instance signs device cookies with its own random key, so a browser is recognised for the login rate limit only by the instance that saw it log in; set the same secret_key on every instance".into(),
            );
        }
        let mut store = store;
        if matches!(database, Some(crate::db::DatabaseLocation::Postgres(_)))
            && store == StoreKind::CachedSqlite
        {
            // A per-process cache over a database other instances write to would serve what
            // they revoked: the coherent cache is the Redis one.
            store = StoreKind::Sqlite;
            warnings.push(
                "database_url is PostgreSQL: sessions are read from it uncached (a per-instance cache would not see other instances' revocations); use session.store = \"redis://…\" for a coherent cache".into(),
            );
        }
        let (
            Some(database),
            Some(reauth_window),
            Some(hash_memory_budget),
            Some(hash_queue_timeout),
        ) = (
            database,
            reauth_window,
            hash_memory_budget,
            hash_queue_timeout,
        )
        else {
            return Err(ConfigError::Invalid(p.0));
        };
        Ok(Config {
            listen,
            database,
            database_path,
            demo: self.demo,
            log_format: self.log_format,
            store,
            redis,
            cookie_keys,
            store_timeout: store_timeout.unwrap_or(DEFAULT_STORE_TIMEOUT),
            session: SessionConfig {
                idle_timeout: idle,
                absolute_timeout: absolute,
                touch_interval: touch,
                // Invalid: already a problem above; never longer than the idle timeout.
                anonymous_timeout: anonymous
                    .unwrap_or(crate::session::DEFAULT_ANONYMOUS_TIMEOUT)
                    .min(idle),
                cookie,
            },
            // Browsers honour Clear-Site-Data only on a secure context, and on any other origin
            // the same answer's `Max-Age=0` deletion is lost with it (measured in Chromium:
            // docs/browser-cookie-rules.md, rule 13), so it is sent only where it works.
            clear_site_data: self.session.clear_site_data && public_origin.is_secure_context(),
            cache_capacity: self.session.cache_capacity,
            purge_interval: purge,
            signup: self.auth.signup || self.demo,
            min_password_length: self.auth.min_password_length,
            hash_parallelism: self
                .auth
                .hash_parallelism
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from)),
            reauth_window,
            hash_memory_budget,
            hash_queue_timeout,
            csrf,
            cors,
            tokens,
            debug_endpoint: self.debug_endpoint,
            origins: Arc::new(policy),
            public_origin,
            body_limit: self.limits.body_bytes,
            trusted_proxies,
            rate_limits,
            metrics_allow: self.metrics.enabled.then_some(metrics_allow),
            device_key,
            mfa_key: self
                .secret_key
                .as_ref()
                .map(|SecretString(k)| crate::token::derive_key(b"mfa-secrets", k.as_bytes())),
            uri_limit: self.limits.uri_bytes,
            header_bytes_limit: self.limits.header_bytes,
            max_headers: self.limits.max_headers,
            max_connections: self.limits.max_connections,
            header_read_timeout,
            body_read_timeout,
            body_min_rate: self.limits.body_min_rate,
            http2: self.limits.http2,
            http2_max_streams: self.limits.http2_max_streams,
            max_sessions_per_user: self.limits.max_sessions_per_user,
            warnings,
            proxy,
        })
    }
}

/// The problems found so far, with the parsers that add to them.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: &str, message: String) {
        self.0.push(Problem {
            key: key.into(),
            message,
        });
    }

    /// `session.store_timeout`: 10 ms to 1 min.
    fn store_timeout(&mut self, v: &str) -> Option<Duration> {
        match humantime::parse_duration(v) {
            Ok(d) if d >= Duration::from_millis(10) && d <= Duration::from_secs(60) => Some(d),
            _ => {
                self.add(
                    "session.store_timeout",
                    format!("{v:?} must be a duration from 10ms to 1m, like \"2s\" or \"500ms\""),
                );
                None
            }
        }
    }

    /// `session.store` → the kind, and where Redis is when it is Redis.
    fn store(
        &mut self,
        raw: &RawSession,
        timeout: Option<Duration>,
    ) -> (StoreKind, Option<crate::session::stores::RedisConfig>) {
        let key = "session.store";
        let (urls, cluster) = match &raw.store {
            RawStore::One(name) if !name.contains("://") => {
                let kind = match name.as_str() {
                    "cached-sqlite" | "cached-database" => StoreKind::CachedSqlite,
                    "sqlite" | "database" => StoreKind::Sqlite,
                    "memory" => StoreKind::Memory,
                    "cookie" => StoreKind::Cookie,
                    other => {
                        self.add(
                            key,
                            format!(
                                "{other:?} is not a store: use cached-sqlite, sqlite, memory, cookie, a redis:// URL or a list of Redis Cluster nodes"
                            ),
                        );
                        StoreKind::CachedSqlite
                    }
                };
                return (kind, None);
            }
            RawStore::One(urls) if urls.contains(',') => (
                urls.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
                true,
            ),
            RawStore::One(url) => (vec![url.clone()], false),
            RawStore::Nodes(urls) => (urls.clone(), true),
        };
        if urls.is_empty() {
            self.add(key, "the list of Redis Cluster nodes is empty".into());
        }
        for url in &urls {
            if !url.starts_with("redis://") || redis::Client::open(url.as_str()).is_err() {
                self.add(
                    key,
                    format!("{url:?} is not a Redis URL like redis://127.0.0.1:6379/0"),
                );
            }
        }
        if raw.redis_prefix.is_empty() {
            self.add(
                "session.redis_prefix",
                "must not be empty: it keeps this deployment's keys apart".into(),
            );
        }
        let kind = if raw.redis_cache {
            StoreKind::CachedRedis
        } else {
            StoreKind::Redis
        };
        let config = crate::session::stores::RedisConfig {
            urls,
            cluster,
            prefix: raw.redis_prefix.clone(),
            timeout: timeout.unwrap_or(DEFAULT_STORE_TIMEOUT),
        };
        (kind, Some(config))
    }

    /// `session.cookie_keys` → the cookie store's key ring. Without keys, one is derived from
    /// `secret_key`; without either, the cookie store refuses to start (a random per-process key
    /// would log everyone out at every restart and differ between instances).
    fn cookie_keys(
        &mut self,
        store: StoreKind,
        keys: &SecretList,
        secret_key: Option<&SecretString>,
        warnings: &mut Vec<String>,
    ) -> Option<crate::session::stores::CookieKeyRing> {
        use crate::session::stores::{CookieKey, CookieKeyRing};
        let key = "session.cookie_keys";
        if store == StoreKind::Cookie {
            warnings.push(crate::auth::mfa::PASSKEYS_NEED_A_SERVER_SIDE_STORE.to_owned());
        }
        if store != StoreKind::Cookie {
            if !keys.is_empty() {
                warnings.push(format!(
                    "{key} is set but session.store is not \"cookie\": the keys are not used"
                ));
            }
            return None;
        }
        if !keys.is_empty() {
            return match CookieKeyRing::parse(&keys.0) {
                Ok(ring) => Some(ring),
                Err(problems) => {
                    for m in problems {
                        self.add(key, m);
                    }
                    None
                }
            };
        }
        match secret_key {
            // Too short is reported under `secret_key`.
            Some(SecretString(k)) if k.chars().count() >= 32 => {
                CookieKeyRing::new(vec![CookieKey::derive(k.as_bytes())]).ok()
            }
            Some(_) => None,
            None => {
                self.add(
                    key,
                    "session.store = \"cookie\" needs a key: set session.cookie_keys = [\"<output of openssl rand -base64 32>\"] (or secret_key, from which one is derived); a random per-process key would log everyone out at every restart and differ between instances".into(),
                );
                None
            }
        }
    }

    fn duration(&mut self, key: &str, v: &str) -> Option<Duration> {
        match humantime::parse_duration(v) {
            Ok(d) if d.as_secs() > 0 => Some(d),
            _ => {
                self.add(
                    key,
                    format!("{v:?} is not a duration like \"14d\", \"30m\" or \"90s\""),
                );
                None
            }
        }
    }

    /// Parses an origin list, keeping each entry's key for later messages.
    fn patterns(&mut self, key: &str, items: &[String]) -> Vec<(String, OriginPattern)> {
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let (mut parsed, mut found) =
                crate::origins::parse_patterns(key, std::slice::from_ref(item));
            for f in &mut found {
                f.key = format!("{key}[{i}]");
            }
            self.0.append(&mut found);
            if let Some(pattern) = parsed.pop() {
                out.push((format!("{key}[{i}]"), pattern));
            }
        }
        out
    }

    /// `[cors]` without the origins (those come from the policy).
    fn cors(&mut self, raw: &RawCors, warnings: &mut Vec<String>) -> Option<CorsConfig> {
        let before = self.0.len();
        let mut methods = Vec::new();
        for (i, m) in raw.allow_methods.iter().enumerate() {
            match Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()) {
                Ok(m) => methods.push(m),
                Err(_) => self.add(
                    &format!("cors.allow_methods[{i}]"),
                    format!("{m:?} is not an HTTP method"),
                ),
            }
        }
        let mut names = |key: &str, list: &[String]| {
            let mut out = Vec::new();
            for (i, h) in list.iter().enumerate() {
                match HeaderName::from_bytes(h.trim().to_ascii_lowercase().as_bytes()) {
                    Ok(h) => out.push(h),
                    Err(_) => self.add(
                        &format!("{key}[{i}]"),
                        format!("{h:?} is not a header name"),
                    ),
                }
            }
            out
        };
        let allow_headers = names("cors.allow_headers", &raw.allow_headers);
        let expose_headers = names("cors.expose_headers", &raw.expose_headers);
        let max_age = match &raw.max_age {
            RawDuration::Seconds(s) => Some(Duration::from_secs(*s)),
            RawDuration::Text(t) => match humantime::parse_duration(t) {
                Ok(d) => Some(d),
                Err(_) => {
                    self.add(
                        "cors.max_age",
                        format!("{t:?} is not a duration like \"10m\" or a number of seconds"),
                    );
                    None
                }
            },
        };
        if max_age.is_some_and(|d| d > Duration::from_secs(7200)) {
            warnings.push("cors.max_age is over 2 hours: Chromium caps preflight caching at 2 hours (Firefox at 24 hours)".into());
        }
        if !raw.allow_credentials {
            warnings.push("cors.allow_credentials = false: browsers hide every cookie-authenticated answer from cross-origin pages and fail their preflights (rule 3); only bearer tokens work cross-origin".into());
        }
        for needed in ["content-type", "x-csrf-token"] {
            if !allow_headers
                .iter()
                .any(|h| h.as_str() == needed || h.as_str() == "*")
            {
                warnings.push(format!(
                    "cors.allow_headers lacks {needed}: cross-origin calls that send it fail their preflight and are never sent (rule 3)"
                ));
            }
        }
        let config = CorsConfig {
            allowed_origins: Vec::new(),
            allow_credentials: raw.allow_credentials,
            allow_methods: methods,
            allow_headers,
            expose_headers,
            max_age: max_age.unwrap_or(cors::DEFAULT_MAX_AGE),
            paths: raw.paths.iter().map(|p| p.trim().to_owned()).collect(),
            allow_private_network: raw.allow_private_network,
        };
        if self.0.len() == before
            && let Err(mut found) = config.validate()
        {
            self.0.append(&mut found);
        }
        (self.0.len() == before).then_some(config)
    }

    fn rate(&mut self, key: &str, v: &str) -> Option<Option<crate::ratelimit::Rate>> {
        if v.trim().eq_ignore_ascii_case("off") {
            return Some(None);
        }
        match v.parse() {
            Ok(r) => Some(Some(r)),
            Err(e) => {
                self.add(key, format!("{e}, or \"off\""));
                None
            }
        }
    }

    fn rate_limits(&mut self, raw: &RawRateLimits) -> Option<crate::ratelimit::RateLimitConfig> {
        Some(crate::ratelimit::RateLimitConfig {
            login_per_ip: self.rate("rate_limits.login_per_ip", &raw.login_per_ip)?,
            login_per_user: self.rate("rate_limits.login_per_user", &raw.login_per_user)?,
            login_per_device: self.rate("rate_limits.login_per_device", &raw.login_per_device)?,
            signup_per_ip: self.rate("rate_limits.signup_per_ip", &raw.signup_per_ip)?,
            password_per_user: self
                .rate("rate_limits.password_per_user", &raw.password_per_user)?,
            token_create_per_user: self.rate(
                "rate_limits.token_create_per_user",
                &raw.token_create_per_user,
            )?,
            anonymous_sessions_per_ip: self.rate(
                "rate_limits.anonymous_sessions_per_ip",
                &raw.anonymous_sessions_per_ip,
            )?,
            mfa_per_user: self.rate("rate_limits.mfa_per_user", &raw.mfa_per_user)?,
        })
    }

    fn tokens(&mut self, raw: &RawTokens) -> Option<TokenSettings> {
        let before = self.0.len();
        if raw.default_expiry_days == 0 {
            self.add("tokens.default_expiry_days", "must be at least 1".into());
        }
        if raw.max_expiry_days == 0 {
            self.add("tokens.max_expiry_days", "must be at least 1".into());
        }
        if raw.default_expiry_days > raw.max_expiry_days {
            self.add(
                "tokens.default_expiry_days",
                "is longer than tokens.max_expiry_days, which caps it".into(),
            );
        }
        if raw.per_user_limit == 0 {
            self.add(
                "tokens.per_user_limit",
                "must be at least 1 (set no [tokens] to keep the default of 50)".into(),
            );
        }
        (self.0.len() == before).then(|| TokenSettings {
            default_expiry: DAY * raw.default_expiry_days,
            max_expiry: DAY * raw.max_expiry_days,
            per_user_limit: raw.per_user_limit,
            revoke_on_password_change: raw.revoke_on_password_change,
        })
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

/// `"256MiB"`, `"1GiB"`, `"512KiB"`, `"300MB"` or a plain number of bytes.
fn parse_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_memory_budget_sizes_parse_and_must_hold_one_hash() {
        assert_eq!(parse_bytes("256MiB"), Some(256 << 20));
        assert_eq!(parse_bytes("1GiB"), Some(1 << 30));
        assert_eq!(parse_bytes("300MB"), Some(300_000_000));
        assert_eq!(parse_bytes("1048576"), Some(1 << 20));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("99999999999999GiB"), None);
        let mut raw = RawConfig::default();
        raw.auth.hash_memory_budget = "10MiB".into();
        assert!(
            matches!(raw.validate(), Err(ConfigError::Invalid(p)) if p.iter().any(|p| p.key == "auth.hash_memory_budget"))
        );
        let c = RawConfig::default().validate().expect("defaults");
        assert_eq!(c.hash_memory_budget, 256 << 20);
        assert_eq!(c.reauth_window, Duration::from_secs(600));
    }

    #[test]
    fn start_up_traps_are_warned_about() {
        let warnings = |tweak: fn(&mut RawConfig)| {
            let mut raw = RawConfig::default();
            tweak(&mut raw);
            raw.validate().expect("valid").warnings
        };
        let said = |w: &[String], what: &str| w.iter().any(|w| w.contains(what));
        // Every interface without public_url: the container trap.
        let w = warnings(|r| r.listen = "0.0.0.0:8000".into());
        assert!(said(&w, "public_url is unset"), "{w:?}");
        let w = warnings(|r| {
            r.listen = "0.0.0.0:8000".into();
            r.public_url = Some("https://api.acme.test".into());
        });
        assert!(!said(&w, "public_url is unset"), "{w:?}");
        // A port chosen at start-up cannot be the public URL's.
        let w = warnings(|r| r.listen = "127.0.0.1:0".into());
        assert!(said(&w, "port 0"), "{w:?}");
        // https without secret_key: unsealed TOTP secrets, devices forgotten at restart.
        let w = warnings(|r| r.public_url = Some("https://api.acme.test".into()));
        assert!(said(&w, "secret_key is unset"), "{w:?}");
        assert!(!said(&warnings(|_| {}), "secret_key is unset"));
    }

    #[test]
    fn clear_site_data_is_sent_only_where_browsers_honour_it() {
        for (url, sent) in [
            ("http://localhost:8000", true),
            ("http://127.0.0.1:8000", true),
            ("https://api.acme.test", true),
            // Rule 13: ignored on plain http elsewhere, and the cookie deletion is lost with it.
            ("http://api.acme.test:8000", false),
        ] {
            let raw = RawConfig {
                public_url: Some(url.into()),
                ..RawConfig::default()
            };
            let c = raw.validate().expect("valid");
            assert_eq!(c.clear_site_data, sent, "{url}");
        }
        let mut raw = RawConfig::default();
        raw.session.clear_site_data = false;
        assert!(!raw.validate().expect("valid").clear_site_data);
    }

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
    fn session_store_takes_names_redis_urls_and_cluster_nodes() {
        let with = |store: RawStore, tweak: fn(&mut RawSession)| {
            let mut raw = RawConfig::default();
            raw.session.store = store;
            tweak(&mut raw.session);
            raw.validate()
        };
        let c = with(RawStore::One("redis://127.0.0.1:6379/0".into()), |_| {}).expect("valid");
        assert_eq!(c.store, StoreKind::CachedRedis);
        let redis = c.redis.expect("redis config");
        assert_eq!(redis.urls, vec!["redis://127.0.0.1:6379/0".to_owned()]);
        assert!(!redis.cluster);
        assert_eq!(redis.timeout, Duration::from_secs(2));
        assert_eq!(redis.prefix, "vestibule:");
        let c = with(RawStore::One("redis://h:1".into()), |s| {
            s.redis_cache = false;
            s.store_timeout = "250ms".into();
        })
        .expect("valid");
        assert_eq!(c.store, StoreKind::Redis);
        assert_eq!(c.store_timeout, Duration::from_millis(250));
        // A list, or commas (the environment), names cluster nodes.
        for store in [
            RawStore::Nodes(vec!["redis://a:7000".into(), "redis://b:7001".into()]),
            RawStore::One("redis://a:7000, redis://b:7001".into()),
        ] {
            let redis = with(store, |_| {}).expect("valid").redis.expect("redis");
            assert!(redis.cluster);
            assert_eq!(redis.urls.len(), 2);
        }
        let c = with(RawStore::One("sqlite".into()), |_| {}).expect("valid");
        assert_eq!((c.store, c.redis), (StoreKind::Sqlite, None));
        for (store, tweak, key) in [
            (
                RawStore::One("mongo".into()),
                (|_| {}) as fn(&mut RawSession),
                "session.store",
            ),
            (
                RawStore::One("http://h:6379".into()),
                |_| {},
                "session.store",
            ),
            (RawStore::Nodes(vec![]), |_| {}, "session.store"),
            (
                RawStore::One("redis://h".into()),
                |s| s.store_timeout = "5ms".into(),
                "session.store_timeout",
            ),
            (
                RawStore::One("redis://h".into()),
                |s| s.redis_prefix = String::new(),
                "session.redis_prefix",
            ),
        ] {
            let Err(ConfigError::Invalid(problems)) = with(store.clone(), tweak) else {
                panic!("{store:?} accepted");
            };
            assert!(problems.iter().any(|p| p.key == key), "{problems:?}");
        }
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
        raw.session.idle_timeout = Some("forever".into());
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
        raw.session.idle_timeout = Some("40d".into());
        assert!(
            matches!(raw.validate(), Err(ConfigError::Invalid(p)) if p[0].key == "session.idle_timeout")
        );
    }

    type Tweak = fn(&mut RawConfig);

    /// A production-like configuration: https, with the secret production needs.
    fn acme(raw: &mut RawConfig) {
        raw.public_url = Some("https://api.acme.com".into());
        raw.secret_key = Some(SecretString("k".repeat(40)));
    }

    fn strs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn session_profiles_set_lifetimes_and_strict_same_site_where_possible() {
        let c = RawConfig::default().validate().expect("valid");
        assert_eq!(c.session.idle_timeout, Duration::from_secs(14 * 86400));
        assert_eq!(c.session.absolute_timeout, Duration::from_secs(30 * 86400));

        let mut raw = RawConfig::default();
        acme(&mut raw);
        raw.spa_origins = strs(&["https://app.acme.com"]);
        raw.session.profile = "strict".into();
        let c = raw.clone().validate().expect("valid");
        assert_eq!(c.session.idle_timeout, Duration::from_secs(30 * 60));
        assert_eq!(c.session.absolute_timeout, Duration::from_secs(12 * 3600));
        assert_eq!(c.session.cookie.same_site, cookie::SameSite::Strict);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        // An explicit timeout still wins over the preset.
        raw.session.idle_timeout = Some("10m".into());
        let c = raw.clone().validate().expect("valid");
        assert_eq!(c.session.idle_timeout, Duration::from_secs(600));

        // A cross-site SPA keeps the cookie it needs; the profile says why it is not Strict.
        raw.spa_origins = strs(&["https://acme-app.net"]);
        let c = raw.clone().validate().expect("valid");
        assert_eq!(c.session.cookie.same_site, cookie::SameSite::None);
        assert!(
            c.warnings.iter().any(|w| w.contains("session.profile")),
            "{:?}",
            c.warnings
        );

        raw.session.profile = "paranoid".into();
        assert!(
            matches!(raw.validate(), Err(ConfigError::Invalid(p)) if p.iter().any(|p| p.key == "session.profile"))
        );
    }

    #[test]
    fn cookie_prefix_follows_secure_and_domain() {
        let mut raw = RawConfig::default();
        acme(&mut raw);
        let c = raw.clone().validate().expect("valid");
        assert_eq!(c.session.cookie.name, "__Host-vestibule_session");
        raw.session.cookie_domain = Some("acme.com".into());
        let c = raw.clone().validate().expect("valid");
        assert_eq!(c.session.cookie.name, "__Secure-vestibule_session");
        assert_eq!(c.session.cookie.domain.as_deref(), Some("acme.com"));
        assert!(c.session.cookie.secure);
        // Plain-http localhost: browsers would drop a prefixed cookie set without Secure.
        let raw = RawConfig {
            public_url: Some("http://localhost:8000".into()),
            ..RawConfig::default()
        };
        let c = raw.validate().expect("valid");
        assert_eq!(c.session.cookie.name, "vestibule_session");
        assert!(!c.session.cookie.secure);
    }

    #[test]
    fn one_declaration_derives_cors_csrf_and_cookie() {
        let mut raw = RawConfig::default();
        acme(&mut raw);
        raw.spa_origins = strs(&["https://www.acme.com", "https://*.preview.acme.com"]);
        let c = raw.validate().expect("valid");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let cookie = &c.session.cookie;
        assert_eq!(cookie.name, "__Host-vestibule_session");
        assert!(cookie.secure && cookie.domain.is_none());
        assert_eq!(cookie.same_site, cookie::SameSite::Lax);
        assert!(!c.origins.cookie().partitioned);
        let cors: Vec<String> = c
            .cors
            .allowed_origins
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            cors,
            [
                "https://api.acme.com",
                "https://www.acme.com",
                "https://*.preview.acme.com"
            ]
        );
        let csrf: Vec<String> = c
            .csrf
            .trusted_origins
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(csrf, ["https://www.acme.com", "https://*.preview.acme.com"]);
        assert!(c.cors.allow_credentials);
        assert_eq!(c.cors.max_age, Duration::from_secs(600));
        assert_eq!(c.tokens, TokenSettings::default());
        assert_eq!(c.tokens.default_expiry, Duration::from_secs(30 * 86400));
        assert!(!c.debug_endpoint);
        assert_eq!(c.origins.cookie_name(), "__Host-vestibule_session");
    }

    #[test]
    fn cross_site_spa_gets_a_partitioned_none_cookie() {
        let mut raw = RawConfig::default();
        acme(&mut raw);
        raw.spa_origins = strs(&["https://acme-web.vercel.app"]);
        let c = raw.validate().expect("valid");
        assert_eq!(c.session.cookie.same_site, cookie::SameSite::None);
        assert!(c.session.cookie.secure);
        assert!(c.origins.cookie().partitioned);
        assert!(c.warnings.iter().any(|w| w.contains("same-origin proxy")));
    }

    #[test]
    fn lists_and_durations_read_from_toml_and_csv() {
        let raw: RawConfig = Figment::from(Serialized::defaults(RawConfig::default()))
            .merge(Toml::string(
                "spa_origins = \"https://www.acme.com, https://*.preview.acme.com\"\n\
                 debug_endpoint = true\n\
                 [session]\nsame_site = \"Strict\"\n\
                 [cors]\nmax_age = 60\nallow_headers = \"content-type,x-csrf-token,x-custom\"\npaths = [\"/auth\"]\n\
                 [tokens]\ndefault_expiry_days = 7\n",
            ))
            .extract()
            .expect("reads");
        assert_eq!(raw.spa_origins.len(), 2);
        assert_eq!(raw.cors.max_age, RawDuration::Seconds(60));
        assert_eq!(raw.session.same_site.as_deref(), Some("Strict"));
        let mut raw = raw;
        acme(&mut raw);
        let c = raw.validate().expect("valid");
        assert_eq!(c.session.cookie.same_site, cookie::SameSite::Strict);
        assert_eq!(c.cors.max_age, Duration::from_secs(60));
        assert_eq!(c.cors.paths, ["/auth"]);
        assert_eq!(c.cors.allow_headers.len(), 3);
        assert!(c.debug_endpoint);
        assert_eq!(c.tokens.default_expiry, Duration::from_secs(7 * 86400));
        let text: RawConfig = Figment::from(Serialized::defaults(RawConfig::default()))
            .merge(Toml::string("[cors]\nmax_age = \"2m\"\n"))
            .extract()
            .expect("reads");
        assert_eq!(
            text.validate().expect("valid").cors.max_age,
            Duration::from_secs(120)
        );
    }

    #[test]
    fn every_start_up_error_names_its_key() {
        let cases: Vec<(Tweak, &str, &str)> = vec![
            (
                |r| r.spa_origins = strs(&["*"]),
                "spa_origins[0]",
                "every site",
            ),
            (
                |r| r.spa_origins = strs(&["http://localhost:3000", "http://localhost:3001/"]),
                "spa_origins[1]",
                "trailing /",
            ),
            (
                |r| r.spa_origins = strs(&["http://localhost:3000/app"]),
                "spa_origins[0]",
                "no path",
            ),
            (
                |r| r.spa_origins = strs(&["http://localhost:3000?x=1"]),
                "spa_origins[0]",
                "query",
            ),
            (
                |r| r.spa_origins = strs(&["localhost:3000"]),
                "spa_origins[0]",
                "missing scheme",
            ),
            (
                |r| r.spa_origins = strs(&["null"]),
                "spa_origins[0]",
                "never be trusted",
            ),
            (
                |r| {
                    acme(r);
                    r.spa_origins = strs(&["https://*.vercel.app"])
                },
                "spa_origins[0]",
                "public suffix",
            ),
            (
                |r| {
                    acme(r);
                    r.spa_origins = strs(&["https://www.*.acme.com"])
                },
                "spa_origins[0]",
                "first label",
            ),
            (
                |r| r.spa_origins = strs(&["http://127.0.0.1:3000"]),
                "spa_origins[0]",
                "different sites",
            ),
            (
                |r| {
                    r.public_url = Some("http://127.0.0.1:8000".into());
                    r.spa_origins = strs(&["http://localhost:3000"])
                },
                "spa_origins[0]",
                "localhost and 127.0.0.1",
            ),
            (
                |r| {
                    r.public_url = Some("http://api.acme.test".into());
                    r.spa_origins = strs(&["http://www.other.test"])
                },
                "spa_origins[0]",
                "rule 6",
            ),
            (
                |r| r.spa_origins = strs(&["https://www.acme.com"]),
                "spa_origins[0]",
                "mixed content",
            ),
            (
                |r| r.csrf.trusted_origins = strs(&["https://*.acme.com"]),
                "csrf.trusted_origins[0]",
                "mixed content",
            ),
            (
                |r| r.csrf.trusted_origins = strs(&["http://a.test/"]),
                "csrf.trusted_origins[0]",
                "trailing /",
            ),
            (
                |r| {
                    r.public_url = Some("http://api.acme.test".into());
                    r.session.same_site = Some("none".into())
                },
                "session.same_site",
                "rule 5",
            ),
            (
                |r| r.session.same_site = Some("sometimes".into()),
                "session.same_site",
                "lax, strict or none",
            ),
            (
                |r| {
                    acme(r);
                    r.session.cookie_domain = Some("www.acme.com".into())
                },
                "session.cookie_domain",
                "does not cover",
            ),
            (
                |r| {
                    r.public_url = Some("https://acme-api.fly.dev".into());
                    r.session.cookie_domain = Some("fly.dev".into())
                },
                "session.cookie_domain",
                "public suffix",
            ),
            (
                |r| {
                    acme(r);
                    r.session.cookie_domain = Some("com".into())
                },
                "session.cookie_domain",
                "public suffix",
            ),
            (
                |r| r.cors.allow_headers.push("*".into()),
                "cors.allow_headers",
                "allows nothing",
            ),
            (
                |r| r.cors.allow_methods = strs(&["*"]),
                "cors.allow_methods",
                "allows nothing",
            ),
            (
                |r| r.cors.expose_headers = strs(&["*"]),
                "cors.expose_headers",
                "allows nothing",
            ),
            (
                |r| r.cors.allow_methods.clear(),
                "cors.allow_methods",
                "is empty",
            ),
            (
                |r| r.cors.allow_methods = strs(&["GE T"]),
                "cors.allow_methods[0]",
                "not an HTTP method",
            ),
            (
                |r| r.cors.allow_headers = strs(&["content-type", "bad header"]),
                "cors.allow_headers[1]",
                "not a header name",
            ),
            (
                |r| r.cors.max_age = RawDuration::Text("soon".into()),
                "cors.max_age",
                "not a duration",
            ),
            (
                |r| r.cors.paths = strs(&["auth"]),
                "cors.paths[0]",
                "starting with /",
            ),
            (
                |r| r.tokens.default_expiry_days = 0,
                "tokens.default_expiry_days",
                "at least 1",
            ),
            (
                |r| r.tokens.max_expiry_days = 10,
                "tokens.default_expiry_days",
                "caps it",
            ),
            (
                |r| r.tokens.per_user_limit = 0,
                "tokens.per_user_limit",
                "at least 1",
            ),
            (
                |r| r.public_url = Some("api.acme.com".into()),
                "public_url",
                "missing scheme",
            ),
        ];
        for (tweak, key, why) in cases {
            let mut raw = RawConfig::default();
            tweak(&mut raw);
            let Err(ConfigError::Invalid(problems)) = raw.validate() else {
                panic!("{key}: must be invalid")
            };
            assert!(
                problems
                    .iter()
                    .any(|p| p.key == key && p.message.contains(why)),
                "want {key} / {why:?}, got {problems:#?}"
            );
        }
    }

    #[test]
    fn every_start_up_warning_is_said() {
        let cases: Vec<(Tweak, &str)> = vec![
            (
                |r| {
                    acme(r);
                    r.spa_origins = strs(&["https://app.other.com"])
                },
                "SameSite=None; Secure; Partitioned",
            ),
            (
                |r| {
                    acme(r);
                    r.spa_origins = strs(&["https://app.other.com"])
                },
                "Safari",
            ),
            (
                |r| {
                    acme(r);
                    r.spa_origins = strs(&["http://localhost:3000"])
                },
                "plain http while public_url is https",
            ),
            (
                |r| {
                    acme(r);
                    r.spa_origins = strs(&["https://api.acme.com"])
                },
                "unnecessary",
            ),
            (
                |r| {
                    acme(r);
                    r.session.same_site = Some("strict".into())
                },
                "e-mail link",
            ),
            (
                |r| {
                    acme(r);
                    r.session.same_site = Some("lax".into());
                    r.spa_origins = strs(&["https://app.other.com"])
                },
                "never sent",
            ),
            (
                |r| {
                    acme(r);
                    r.session.cookie_domain = Some("acme.com".into())
                },
                "every subdomain",
            ),
            (
                |r| r.spa_origins = strs(&["http://www.acme.test"]),
                "plain-http loopback",
            ),
            (
                |r| r.cors.max_age = RawDuration::Text("3h".into()),
                "2 hours",
            ),
            (|r| r.cors.allow_credentials = false, "rule 3"),
            (
                |r| r.cors.allow_headers = strs(&["content-type"]),
                "lacks x-csrf-token",
            ),
            (|r| r.debug_endpoint = true, "/auth/_debug"),
            (
                |r| {
                    acme(r);
                    r.debug_endpoint = true
                },
                "turn it off",
            ),
            (|_| {}, "without Secure"),
            (
                |r| r.public_url = Some("http://api.acme.test".into()),
                "travels in clear",
            ),
            (|r| r.auth.min_password_length = 6, "below 8"),
        ];
        for (tweak, want) in cases {
            let mut raw = RawConfig::default();
            tweak(&mut raw);
            let c = raw
                .validate()
                .unwrap_or_else(|e| panic!("{want}: must be valid: {e}"));
            assert!(
                c.warnings.iter().any(|w| w.contains(want)),
                "want {want:?} in {:#?}",
                c.warnings
            );
        }
    }
}
