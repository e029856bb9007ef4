//! The ready-made auth server: `App::build(config)` → `run_until_stopped()`.

pub mod debug;
mod demo;
mod ended;
mod front;
mod headers;
mod json;
mod limits;
mod listener;
mod openapi;
mod routes;
mod store;
mod user_agent;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use tokio::net::TcpListener;
use tower::ServiceBuilder;

pub use self::json::Json;
pub use self::store::{BuiltStore, admin_sessions, build_store};
use self::store::{build_store_sharing, watch_outside_changes};
use crate::auth::{AccessTokens, PasswordHasher, PasswordPolicy, UserStore};
use crate::config::{Config, StoreKind, TokenSettings};
use crate::csrf::CsrfLayer;
use crate::db::{Database, DbError};
use crate::metrics;
use crate::session::stores::{
    CachedStore, Invalidation, MemoryStore, RedisInvalidation, RedisStore, SqliteStore,
};
use crate::session::{SessionLayer, SessionManager, SessionStore};

/// Shared state of the handlers: one `Arc`, because axum clones the state for every request.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Wraps the shared parts.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl AppState {
    /// The 429 for a tripped rate limit, counted and audited.
    pub(crate) fn limited(
        &self,
        l: crate::ratelimit::RateLimited,
        what: &str,
        config_key: &str,
    ) -> crate::Error {
        crate::auth::login::rate_limited(self.metrics.as_deref(), l, what, config_key)
    }

    /// Counts a refused login.
    pub(crate) fn login_failed(&self, reason: &str) {
        if let Some(m) = &self.metrics {
            m.login_failed(reason);
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What the handlers share.
#[derive(Debug)]
pub struct Shared {
    /// Users.
    pub users: UserStore,
    /// Sessions.
    pub sessions: SessionManager,
    /// Password hashing.
    pub hasher: PasswordHasher,
    /// Policy for new passwords.
    pub policy: PasswordPolicy,
    /// Whether signup is open.
    pub signup: bool,
    /// Personal access tokens.
    pub access_tokens: AccessTokens,
    /// Limits on access tokens.
    pub token_settings: TokenSettings,
    /// The database.
    pub db: Database,
    /// Rate-limit buckets (shared with the login flow).
    pub limits: Arc<crate::ratelimit::RateLimits>,
    /// Which peers' forwarding headers name the client.
    pub trusted_proxies: crate::client_ip::TrustedProxies,
    /// The login rate limit's device cookie.
    pub device: crate::auth::DeviceTrust,
    /// Prometheus metrics, when on.
    pub metrics: Option<Arc<metrics::Metrics>>,
    /// Second factors: TOTP, recovery codes, passkeys.
    pub mfa: crate::auth::mfa::Mfa,
    /// How recent a proof of the password sensitive actions need (`auth.reauth_window`).
    pub reauth_window: std::time::Duration,
    /// Whether logout answers `Clear-Site-Data: "cookies"` (`session.clear_site_data`).
    pub clear_site_data: bool,
    /// The login flow (password, second factor, rotation, session cap, device cookie, audit):
    /// the `/auth` routes' and, as the [`Login`](crate::auth::Login) extractor, the
    /// application's routes'.
    pub login: crate::auth::LoginFlow,
    /// Email (`[email]`): templates, links, the worker's wake-up; `None` when email is off.
    pub mailer: Option<Arc<crate::email::Mailer>>,
    /// Signup must give an address (`auth.require_email`).
    pub require_email: bool,
    /// Login waits for a verified address (`auth.require_verified_email`).
    pub require_verified_email: bool,
    /// Sign-in through OpenID providers, when `[[oidc.provider]]` names any.
    pub oidc: Option<crate::auth::oidc::RelyingParty>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The database could not be opened.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Anything else.
    #[error("{0}")]
    Other(#[from] crate::Error),
    /// The identity-assertion key file could not be read or created.
    #[error("identity assertion key {path}: {source}")]
    IdentityKey {
        /// The key file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A built server, bound and ready to run.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: Router,
    state: AppState,
    purge_interval: Duration,
    cache: Option<CachedStore<SqliteStore>>,
    conn_limits: listener::ConnLimits,
    email_transport: Option<crate::email::Transport>,
}

/// How often the server checks whether another process changed the database.
const OUTSIDE_CHANGE_POLL: Duration = Duration::from_secs(1);

/// How long a stopping server waits for the provider token revocations under way: each is at
/// most two requests under the HTTP client's own timeout, and a stop must not hang on a dead
/// provider.
const STOP_REVOCATIONS: Duration = Duration::from_secs(5);

/// The caller's address as the rate limits key it: the socket peer, or what trusted proxies
/// recorded (`limits.trusted_proxies`), IPv6 grouped per /64. A router served without connect
/// info (an embedding app's choice) keys every caller as `0.0.0.0`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp(pub(crate) std::net::IpAddr);

impl axum::extract::FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            state
                .trusted_proxies
                .rate_key(&parts.extensions, &parts.headers),
        ))
    }
}

/// The router with every route and layer, over `state`.
pub fn router(state: AppState, config: &Config) -> Router {
    router_with(state, config, Router::new())
}

/// [`router`] with the application's own routes (`extra`) mounted beside `/auth`, inside every layer
/// (request ids, limits, CORS, sessions, CSRF, metrics): their handlers take [`AuthUser`],
/// [`Session`](crate::session::Session) and [`CsrfToken`](crate::csrf::CsrfToken) like
/// Vestibule's own. A path both define is a start-up panic (axum's overlap check).
///
/// [`AuthUser`]: crate::auth::AuthUser
pub fn router_with(state: AppState, config: &Config, extra: Router) -> Router {
    let mut app = Router::new();
    if config.debug_endpoint {
        // Development only: echoes what the server saw and the origin policy's verdict.
        app = app.route(
            "/auth/_debug",
            get(debug::debug_echo).with_state(config.origins.clone()),
        );
    }
    // The same-origin proxy takes every path no route takes; `/` too when it has a frontend.
    let gateway = crate::proxy::Gateway::new(crate::proxy::GatewaySettings {
        proxy: &config.proxy,
        public_origin: &config.public_origin,
        origins: &config.origins,
        cookie: &config.session.cookie,
        trusted_proxies: &config.trusted_proxies,
        metrics: state.metrics.clone(),
        oidc: state.oidc.clone(),
    });
    if let Some(jwks) = gateway.as_ref().and_then(|g| g.jwks()) {
        app = app.route(
            "/auth/jwks.json",
            get(move || std::future::ready(axum::Json(jwks.clone()))),
        );
    }
    if config.demo {
        app = app.merge(demo::routes(config.proxy.serves_root()));
    }
    let app = app
        .route("/auth/signup", post(routes::auth::post_signup))
        .route("/auth/login", post(routes::auth::post_login))
        .route("/auth/logout", post(routes::auth::post_logout))
        .route("/auth/logout-all", post(routes::sessions::post_logout_all))
        .route("/auth/me", get(routes::auth::get_me))
        .route("/auth/csrf", get(routes::auth::get_csrf))
        .route("/auth/password", post(routes::password::post_password))
        .route("/auth/reauth", post(routes::password::post_reauth))
        .route(
            "/auth/reauth/webauthn/start",
            post(routes::passkeys::post_reauth_webauthn_start),
        )
        .route(
            "/auth/password/reset",
            post(routes::password::post_password_reset),
        )
        .route(
            "/auth/password/forgot",
            post(routes::email::post_password_forgot),
        )
        .route(
            "/auth/email",
            post(routes::email::post_email_change).get(routes::email::get_email),
        )
        .route("/auth/email/verify", post(routes::email::post_email_verify))
        .route(
            "/auth/email/verify/resend",
            post(routes::email::post_email_resend),
        )
        .route("/auth/sessions", get(routes::sessions::get_sessions))
        .route(
            "/auth/sessions/{id}",
            delete(routes::sessions::delete_session),
        )
        .route(
            "/auth/tokens",
            get(routes::tokens::get_tokens).post(routes::tokens::post_token),
        )
        .route("/auth/tokens/{id}", delete(routes::tokens::delete_token))
        .route(
            "/auth/mfa/totp",
            post(routes::mfa::post_mfa_totp).delete(routes::mfa::delete_totp),
        )
        .route("/auth/mfa/totp/enroll", post(routes::mfa::post_totp_enroll))
        .route(
            "/auth/mfa/totp/confirm",
            post(routes::mfa::post_totp_confirm),
        )
        .route("/auth/mfa", get(routes::mfa::get_mfa))
        .route("/auth/mfa/recovery", post(routes::mfa::post_mfa_recovery))
        .route(
            "/auth/mfa/recovery/regenerate",
            post(routes::mfa::post_recovery_regenerate),
        )
        .route(
            "/auth/mfa/webauthn/start",
            post(routes::passkeys::post_mfa_webauthn_start),
        )
        .route(
            "/auth/mfa/webauthn/finish",
            post(routes::passkeys::post_mfa_webauthn_finish),
        )
        .route("/auth/passkeys", get(routes::passkeys::get_passkeys))
        .route(
            "/auth/passkeys/{id}",
            delete(routes::passkeys::delete_passkey),
        )
        .route(
            "/auth/passkeys/register/start",
            post(routes::passkeys::post_passkey_register_start),
        )
        .route(
            "/auth/passkeys/register/finish",
            post(routes::passkeys::post_passkey_register_finish),
        )
        .route(
            "/auth/passkey/login/start",
            post(routes::passkeys::post_passkey_login_start),
        )
        .route(
            "/auth/passkey/login/finish",
            post(routes::passkeys::post_passkey_login_finish),
        )
        .route("/auth/oidc/providers", get(routes::oidc::get_providers))
        .route("/auth/identities", get(routes::oidc::get_identities))
        .route(
            "/auth/identities/{id}",
            delete(routes::oidc::delete_identity),
        )
        .route("/auth/oidc/{provider}/start", get(routes::oidc::get_start))
        .route("/auth/oidc/{provider}/link", post(routes::oidc::post_link))
        .route(
            "/auth/oidc/{provider}/callback",
            get(routes::oidc::get_callback),
        )
        .route(
            "/auth/oidc/{provider}/backchannel-logout",
            post(routes::oidc_logout::post_backchannel_logout),
        )
        .route(
            "/auth/oidc/logout",
            post(routes::oidc_logout::post_oidc_logout),
        )
        .route("/openapi.json", get(openapi::get_openapi))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/_vestibule/client.js", get(demo::client_js))
        .route("/metrics", get(metrics_handler));
    let app = match gateway {
        Some(g) => app.fallback(move |req: axum::extract::Request| g.clone().handle(req)),
        None => app.fallback(routes::not_found),
    };
    let extra = if extra.has_routes() {
        // The application's handlers log users in through the `Login` extractor (auth/login).
        extra.layer(axum::Extension(state.login.clone()))
    } else {
        extra
    };
    let router = app
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state.clone())
        .merge(extra)
        .layer(
            ServiceBuilder::new()
                // Request id and span, 414 / 431 with our JSON body before anything parses the
                // request, 408 for a body that trickles in (the gateway sees the same body
                // error), metrics, nosniff / Referrer-Policy / no-store unless a handler chose a
                // cache policy, and the response log. No header is ever logged (a test runs the
                // server at trace level and looks for secrets in the output).
                .layer(front::FrontLayer {
                    limits: limits::RequestLimits {
                        uri_bytes: config.uri_limit,
                        header_bytes: config.header_bytes_limit,
                        headers: config.max_headers,
                    },
                    body: limits::BodyClock {
                        timeout: config.body_read_timeout,
                        min_rate: config.body_min_rate,
                    },
                    metrics: state.metrics.clone(),
                })
                // Preflights are answered here: they never reach sessions, CSRF or the store.
                .layer(crate::cors::cors_layer(&config.cors, &config.origins))
                .layer(DefaultBodyLimit::max(config.body_limit))
                .layer(SessionLayer::new(state.sessions.clone()))
                .layer(CsrfLayer::new(config.origins.clone())),
        );
    if config.debug_endpoint {
        // Development: notice logins whose session cookie never comes back (doctor/live.rs).
        let live = crate::doctor::live::LiveDoctor::new(
            config.public_origin.clone(),
            config.session.cookie.name.clone(),
        );
        return router.layer(axum::middleware::from_fn_with_state(
            live,
            crate::doctor::live::middleware,
        ));
    }
    router
}

impl App {
    /// Opens the database, builds the store and binds the listener.
    ///
    /// # Errors
    /// [`StartError`] when the database cannot be opened or the address bound.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with_routes(config, Router::new()).await
    }

    /// [`App::build`] for an application that mounts its own `routes` in-process (the DRF-style
    /// use): see [`router_with`]. The server then purges sessions, watches the database and
    /// serves everything on one listener.
    ///
    /// # Errors
    /// As [`App::build`].
    pub async fn build_with_routes(mut config: Config, routes: Router) -> Result<Self, StartError> {
        if config.proxy.needs_assertion_key() && config.proxy.assertion_key.is_none() {
            // Next to the database, so every process sharing it signs with the same key.
            let path = config
                .database_path
                .with_file_name("vestibule-identity.key");
            let key = crate::proxy::assertion::IdentityKey::load_or_create(&path)
                .map_err(|source| StartError::IdentityKey { path, source })?;
            config.proxy.assertion_key = Some(Arc::new(key));
        }
        // A server starts while PostgreSQL is down (not ready) and migrates when it answers.
        let db = Database::connect_or_wait(&config.database, config.store_timeout).await?;
        let mut shared_redis = None;
        let (store, cache) = build_store_sharing(&config, &db, &mut shared_redis)?;
        // With Redis, the rate limits are shared by every instance too (see `ratelimit`).
        let limits = crate::ratelimit::RateLimits::new(&config.rate_limits);
        let limits = Arc::new(match shared_redis {
            Some(r) => limits.shared(&Arc::new(crate::ratelimit::RedisBuckets::new(r))),
            None => limits,
        });
        let metrics = config
            .metrics_allow
            .clone()
            .map(|allow| Arc::new(metrics::Metrics::new(allow)));
        let store: Arc<dyn SessionStore> = match &metrics {
            Some(m) => Arc::new(metrics::MeteredStore::new(store, m.clone())),
            None => store,
        };
        let mfa = {
            let mut webauthn = crate::auth::mfa::webauthn_for(&config.origins);
            if config.store == StoreKind::Cookie {
                webauthn.webauthn = Err(crate::auth::mfa::PASSKEYS_NEED_A_SERVER_SIDE_STORE.into());
            }
            if let Err(why) = &webauthn.webauthn {
                tracing::info!("passkeys off: {why}");
            }
            crate::auth::mfa::Mfa {
                store: crate::auth::mfa::MfaStore::new(db.clone()),
                secrets: crate::auth::mfa::SecretBox::new(config.mfa_key),
                webauthn,
                issuer: config.public_origin.host().to_owned(),
            }
        };
        let users = UserStore::new(db.clone());
        let hasher = PasswordHasher::with_limits(crate::auth::HashLimits {
            parallelism: config.hash_parallelism,
            memory_budget: config.hash_memory_budget,
            queue_timeout: config.hash_queue_timeout,
        })
        .await?;
        let device = crate::auth::DeviceTrust::new(config.device_key, &config.session.cookie);
        let login = crate::auth::LoginFlow::new(
            users.clone(),
            hasher.clone(),
            device.clone(),
            mfa.store.clone(),
        )
        .with_rate_limits(limits.clone())
        .with_trusted_proxies(config.trusted_proxies.clone())
        .with_max_sessions_per_user(config.max_sessions_per_user)
        .with_metrics(metrics.clone())
        .with_require_verified_email(config.require_verified_email);
        let email_transport = crate::email::Transport::build(&config.email)
            .map_err(|e| crate::Error::new(crate::error::ErrorCode::Internal, e))?;
        let mailer = match &email_transport {
            Some(_) => Some(Arc::new(crate::email::Mailer {
                // Checked by the configuration's validation already; read again here.
                templates: crate::email::Templates::load(config.email.templates_dir.as_deref())
                    .map_err(|e| {
                        crate::Error::new(
                            crate::error::ErrorCode::Internal,
                            format!("email.templates_dir: {e}"),
                        )
                    })?,
                settings: config.email.clone(),
                wake: Arc::new(tokio::sync::Notify::new()),
            })),
            None => {
                tracing::info!(
                    "email off (no email.smtp_url): password recovery and address verification send nothing"
                );
                None
            }
        };
        let oidc = store::relying_party(&config, &db)?;
        let state = AppState::new(Shared {
            users,
            sessions: {
                let mut m = SessionManager::new(store, config.session.clone())
                    .with_access_tokens(AccessTokens::new(db.clone()));
                if let Some(rp) = &oidc {
                    // Every session that ends hands its provider tokens to the relying party,
                    // which revokes them (auth/oidc/revocation.rs).
                    m = m.with_end_hook(Arc::new(rp.clone()));
                }
                if config.store == StoreKind::Cookie {
                    let ring = config.cookie_keys.clone().ok_or_else(|| {
                        crate::Error::new(
                            crate::error::ErrorCode::Internal,
                            "session.store is cookie but no cookie key ring was configured",
                        )
                    })?;
                    m = m.with_cookie_sessions(crate::session::stores::CookieSessions::new(
                        ring,
                        Arc::new(UserStore::new(db.clone())),
                    ));
                }
                match config.rate_limits.anonymous_sessions_per_ip {
                    Some(rate) => m.with_anonymous_limit(
                        Arc::new(crate::ratelimit::Limiter::<std::net::IpAddr>::new(Some(
                            rate,
                        ))),
                        config.trusted_proxies.clone(),
                    ),
                    None => m,
                }
            },
            oidc,
            access_tokens: AccessTokens::new(db.clone()),
            token_settings: config.tokens,
            hasher,
            policy: PasswordPolicy {
                min_length: config.min_password_length,
            },
            signup: config.signup,
            db,
            limits,
            trusted_proxies: config.trusted_proxies.clone(),
            device,
            metrics,
            mfa,
            reauth_window: config.reauth_window,
            clear_site_data: config.clear_site_data,
            login,
            mailer,
            require_email: config.require_email,
            require_verified_email: config.require_verified_email,
        });
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let router = router_with(state.clone(), &config, routes);
        Ok(Self {
            listener,
            router,
            state,
            purge_interval: config.purge_interval,
            cache,
            conn_limits: listener::ConnLimits {
                max_connections: config.max_connections,
                header_read_timeout: config.header_read_timeout,
                send_timeout: config.send_timeout,
                http2: config.http2,
                http2_max_streams: config.http2_max_streams,
                // hyper's hard caps sit well above the JSON-explained limits.
                header_buf_bytes: (config.header_bytes_limit + config.uri_limit) * 2 + 8192,
                // Under hyper's default cap (100) its fixed parse buffer is kept: setting any cap
                // makes it allocate and fill one per request (2,400 instructions of ~60,000).
                max_headers: (config.max_headers >= 100).then_some(config.max_headers * 2),
            },
            email_transport,
        })
    }

    /// The bound address (useful with port 0).
    ///
    /// # Errors
    /// The OS error if the socket has no address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The handlers' state (users, sessions), e.g. for tests and administration.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish (their session
    /// writes happen inside the request), waits up to 5 s for the provider token revocations
    /// that ended sessions started, and closes the database.
    ///
    /// # Errors
    /// The I/O error that stopped the server.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let store = self.state.sessions.store().clone();
        let interval = self.purge_interval;
        let state = self.state.clone();
        let purge = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                state.limits.purge();
                state.sessions.purge_limits();
                match store.delete_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(purged = n, "expired sessions purged"),
                    Err(e) => tracing::warn!(error = %e, "expired-session purge failed"),
                }
            }
        });
        // The outbox worker: SMTP being down never touches readiness (the outbox keeps the mail).
        let mail_worker = match (self.email_transport, &self.state.mailer) {
            (Some(t), Some(m)) => Some(tokio::spawn(crate::email::worker::run(
                crate::email::Outbox::new(self.state.db.clone()),
                t,
                m.clone(),
                self.state.metrics.clone(),
            ))),
            _ => None,
        };
        let watcher = self
            .cache
            .map(|cache| tokio::spawn(watch_outside_changes(self.state.db.clone(), cache)));
        // The peer address feeds the rate limits (see `client_ip`).
        let result = listener::serve(self.listener, self.router, self.conn_limits, shutdown).await;
        if let Some(rp) = &self.state.oidc
            && !rp.settle(STOP_REVOCATIONS).await
        {
            tracing::warn!("stopping with provider token revocations still under way");
        }
        purge.abort();
        if let Some(w) = mail_worker {
            w.abort();
        }
        if let Some(w) = watcher {
            w.abort();
        }
        self.state.db.close().await;
        result
    }

    /// Serves until SIGINT or SIGTERM.
    ///
    /// # Errors
    /// The I/O error that stopped the server.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// `GET /metrics`: the app's registry, judged on the client address the rate limits see.
async fn metrics_handler(
    axum::extract::State(app): axum::extract::State<AppState>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let client = app.trusted_proxies.resolve(req.extensions(), req.headers());
    metrics::answer(
        app.metrics.as_deref(),
        client,
        app.sessions.store().as_ref(),
    )
    .await
}
