//! Configuration: defaults → `vestibule.toml` → `VESTIBULE_*` environment → command-line flags
//! ([`load`]), validated once into [`Config`] with every problem explained.
//!
//! Each section is declared and validated by the module it configures (`[session]` in
//! `session`, `[cors]` in `cors`, `[[upstream]]` in `proxy::config`, …), returning
//! [`Problem`]s; this module keeps the top-level keys, the profiles, the loading and the
//! assembly of the sections into one [`Config`] (the origins policy and what derives from it).

mod check;
mod limits;
mod load;
pub mod schema;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cors::CorsConfig;
use crate::origin::Origin;
use crate::origins::{CookieOverrides, OriginPattern, OriginsPolicy};
use crate::problem::Problems;
use crate::session::SessionConfig;
use crate::settings::list_or_csv;

pub use crate::auth::{RawAuth, RawTokens, TokenSettings};
pub use crate::cors::RawCors;
pub use crate::metrics::RawMetrics;
pub use crate::problem::{ConfigError, Problem};
pub use crate::ratelimit::RawRateLimits;
pub use crate::session::RawSession;
pub use crate::session::stores::{DEFAULT_STORE_TIMEOUT, RawStore, StoreKind};
pub use crate::settings::{RawDuration, SecretList, SecretString};
pub use limits::RawLimits;
pub use load::{DEFAULT_CONFIG_FILE, apply_dev};

/// Log output format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The configuration as written, before validation. Field names are the keys of `vestibule.toml`
/// and, upper-cased with `__` between sections, of `VESTIBULE_*` variables.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(title = "vestibule.toml")]
pub struct RawConfig {
    /// Named overlays (`[profile.dev]`, `[profile.staging]`), merged over the top-level keys when
    /// selected with `--profile` / `VESTIBULE_PROFILE`: one file for production and development.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "load::profile_schema")]
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
    /// Demo mode: the demo page at `/` and `/demo/*` (a plain 404 without it), signup on, and the
    /// URL printed at start-up.
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
    /// Email: transport, sender, links, templates, retries, security notices.
    pub email: crate::email::RawEmail,
    /// Sign-in through OpenID Connect providers (`[[oidc.provider]]`).
    pub oidc: crate::auth::oidc::RawOidc,
    /// Signs the login rate limit's device-recognition cookie (any string of 32+ characters;
    /// keep it secret, and the same on every instance). Unset: a random key per process, so
    /// devices are recognised until the next restart, by this instance only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretString>,
    /// What loading noticed that does not stop start-up (a `VESTIBULE_*` variable that is not a
    /// key), said with the validation's warnings. Not a key.
    #[serde(skip)]
    pub load_warnings: Vec<String>,
}

/// `[csrf]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawCsrf {
    /// Origins (or `https://*.acme.com` patterns) trusted for cookie-authenticated writes in
    /// addition to this server's own and `spa_origins`, e.g. a form-posting admin site. In the
    /// environment, a comma-separated list.
    #[serde(deserialize_with = "list_or_csv")]
    pub trusted_origins: Vec<String>,
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
            email: crate::email::RawEmail::default(),
            oidc: crate::auth::oidc::RawOidc::default(),
            secret_key: None,
            upstream: Vec::new(),
            dev: crate::proxy::RawDev::default(),
            static_dir: None,
            static_site: crate::proxy::config::RawStaticSite::default(),
            load_warnings: Vec::new(),
        }
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
    /// `[cors]`: how CORS answers (which origins may read answers is `origins`).
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
    /// Longest a response write may wait for the client to read.
    pub send_timeout: Duration,
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
    /// `[email]`.
    pub email: crate::email::EmailSettings,
    /// Signup must give an email address (`auth.require_email`).
    pub require_email: bool,
    /// Login waits for a verified address (`auth.require_verified_email`).
    pub require_verified_email: bool,
    /// `[oidc]`: OpenID Connect providers.
    pub oidc: crate::auth::oidc::OidcSettings,
}

impl Config {
    /// The parts of this configuration the doctor's offline check runs on.
    pub fn offline_server(&self) -> crate::doctor::offline::Server<'_> {
        crate::doctor::offline::Server {
            public_origin: &self.public_origin,
            session: &self.session,
            cors: &self.cors,
            origins: &self.origins,
        }
    }
}

impl RawConfig {
    /// Validates every value; collects all problems.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing each problem with its key.
    pub fn validate(mut self) -> Result<Config, ConfigError> {
        let mut p = Problems::default();
        let mut warnings = std::mem::take(&mut self.load_warnings);
        let public_url_set = self.public_url.is_some();

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
        let session = self
            .session
            .validate(self.secret_key.as_ref(), &mut p, &mut warnings);
        if session.store == StoreKind::Cookie {
            warnings.push(crate::auth::mfa::PASSKEYS_NEED_A_SERVER_SIDE_STORE.to_owned());
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
        let auth = self.auth.validate(&mut p, &mut warnings);
        let spa = patterns(&mut p, "spa_origins", &self.spa_origins);
        let extra = patterns(&mut p, "csrf.trusted_origins", &self.csrf.trusted_origins);
        let cors_settings = self.cors.validate(&mut p, &mut warnings);
        let tokens = self.tokens.validate(&mut p);
        let limits = self.limits.validate(&mut p);
        let rate_limits = self.rate_limits.validate(&mut p);
        let metrics_allow = self.metrics.allow_list(&mut p);
        let email = self
            .email
            .validate(&public_url, self.demo, &mut p, &mut warnings);
        if self.auth.require_verified_email
            && email
                .as_ref()
                .is_some_and(|e| e.transport == crate::email::TransportKind::Off)
        {
            p.add(
                "auth.require_verified_email",
                "needs email: set email.smtp_url (or email.transport = \"log\" in development)"
                    .into(),
            );
        }
        let oidc = self.oidc.validate(&mut p);
        if let Some(origin) = &public_origin {
            // The redirect URI each provider must have registered (doctor's `oidc-callback`).
            for prov in &oidc.providers {
                let f = crate::doctor::rules::oidc::callback(&prov.name, origin, public_url_set);
                if f.is_problem() {
                    warnings.push(match &f.fix {
                        Some(fix) => format!("{}: {fix}", f.summary),
                        None => f.summary.clone(),
                    });
                }
            }
        }
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
        let strict_same_site = session.strict_profile && same_site.is_none();
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
                name: Some(self.session.cookie_name.clone()),
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
            Some(lifetimes),
            Some(policy),
            Some(cors_settings),
            Some(tokens),
            Some(limits),
            Some(rate_limits),
            Some(device_key),
            Some(metrics_allow),
        ) = (
            listen,
            public_origin,
            database_path,
            session.lifetimes,
            policy,
            cors_settings,
            tokens,
            limits,
            rate_limits,
            device_key,
            metrics_allow,
        )
        else {
            return Err(ConfigError::Invalid(p.0));
        };
        if !p.0.is_empty() {
            return Err(ConfigError::Invalid(p.0));
        }
        // The policy is the one source of the cookie, the CORS origins and the CSRF trust: the
        // layers are given the policy itself (`Config.origins`), the session its cookie.
        let cookie = policy.session_cookie();
        let cors = cors_settings;
        if let Err(found) = cors.validate() {
            return Err(ConfigError::Invalid(found));
        }
        if self.secret_key.is_none() && public_origin.scheme() == "https" {
            // Production without the one key that must survive a restart.
            warnings.push(
                "public_url is https but secret_key is unset: TOTP secrets are stored unsealed and every restart forgets which browsers logged in before (their own login budget); set VESTIBULE_SECRET_KEY to 32+ random characters and keep it".into(),
            );
        }
        if session.redis.is_some() && self.secret_key.is_none() {
            // Shared state that is configuration, not store: every instance must be given it.
            warnings.push(
                "session.store is Redis (several instances) but secret_key is unset: each instance signs device cookies with its own random key, so a browser is recognised for the login rate limit only by the instance that saw it log in; set the same secret_key on every instance".into(),
            );
        }
        let mut store = session.store;
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
        let (Some(database), Some(auth), Some(email)) = (database, auth, email) else {
            return Err(ConfigError::Invalid(p.0));
        };
        Ok(Config {
            listen,
            database,
            database_path,
            demo: self.demo,
            log_format: self.log_format,
            store,
            redis: session.redis,
            cookie_keys: session.cookie_keys,
            store_timeout: session.store_timeout.unwrap_or(DEFAULT_STORE_TIMEOUT),
            session: SessionConfig {
                idle_timeout: lifetimes.idle,
                absolute_timeout: lifetimes.absolute,
                touch_interval: lifetimes.touch,
                anonymous_timeout: lifetimes.anonymous,
                cookie,
            },
            // Browsers honour Clear-Site-Data only on a secure context, and on any other origin
            // the same answer's `Max-Age=0` deletion is lost with it (measured in Chromium:
            // docs/browser-cookie-rules.md, rule 13), so it is sent only where it works.
            clear_site_data: self.session.clear_site_data && public_origin.is_secure_context(),
            cache_capacity: self.session.cache_capacity,
            purge_interval: lifetimes.purge,
            signup: self.auth.signup || self.demo,
            min_password_length: self.auth.min_password_length,
            hash_parallelism: self
                .auth
                .hash_parallelism
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from)),
            reauth_window: auth.reauth_window,
            hash_memory_budget: auth.hash_memory_budget,
            hash_queue_timeout: auth.hash_queue_timeout,
            cors,
            tokens,
            debug_endpoint: self.debug_endpoint,
            origins: Arc::new(policy),
            public_origin,
            body_limit: self.limits.body_bytes,
            trusted_proxies: limits.trusted_proxies,
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
            header_read_timeout: limits.header_read_timeout,
            body_read_timeout: limits.body_read_timeout,
            body_min_rate: self.limits.body_min_rate,
            send_timeout: limits.send_timeout,
            http2: self.limits.http2,
            http2_max_streams: self.limits.http2_max_streams,
            max_sessions_per_user: self.limits.max_sessions_per_user,
            warnings,
            proxy,
            email,
            require_email: self.auth.require_email || self.auth.require_verified_email,
            require_verified_email: self.auth.require_verified_email,
            oidc,
        })
    }
}

/// Parses an origin list, keeping each entry's key for later messages.
fn patterns(p: &mut Problems, key: &str, items: &[String]) -> Vec<(String, OriginPattern)> {
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let (mut parsed, mut found) =
            crate::origins::parse_patterns(key, std::slice::from_ref(item));
        for f in &mut found {
            f.key = format!("{key}[{i}]");
        }
        p.0.append(&mut found);
        if let Some(pattern) = parsed.pop() {
            out.push((format!("{key}[{i}]"), pattern));
        }
    }
    out
}

#[cfg(test)]
mod tests;
