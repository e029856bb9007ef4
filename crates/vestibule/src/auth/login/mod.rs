//! The login flow, as a library API: how Vestibule logs a user in, for its own routes and for an
//! application's.
//!
//! ```no_run
//! use axum::Router;
//! use axum::routing::post;
//! use serde::Deserialize;
//! use vestibule::auth::{Login, LoginStep, LoginTransport, Password};
//! use vestibule::server::Json;
//! use vestibule::session::Session;
//!
//! #[derive(Deserialize)]
//! struct Form {
//!     username: String,
//!     password: Password,
//! }
//!
//! /// `POST /api/login`: what `POST /auth/login` does, under the application's own path.
//! async fn login(
//!     login: Login,
//!     session: Session,
//!     Json(form): Json<Form>,
//! ) -> Result<LoginStep, vestibule::Error> {
//!     login
//!         .password(&session, &form.username, &form.password, LoginTransport::Cookie)
//!         .await
//! }
//!
//! // Mounted inside Vestibule's layers, which provide the `Login` (and the `Session`):
//! let routes: Router = Router::new().route("/api/login", post(login));
//! # let _ = vestibule::server::App::build_with_routes;
//! ```
//!
//! A login, in order ([`Login::password`]): the address's and then the account's login budget
//! (the account's own from a device that logged in before: [`DeviceTrust`]); the username and
//! password (an unknown user is checked against a dummy hash: same answer, same time); a
//! disabled account refused; an outdated hash upgraded; then, when the account has a second
//! factor, a pending state instead of a login ([`LoginStep::SecondFactorDue`], completed by
//! [`Login::complete_pending`]); else the login itself ([`Login::complete`]): the oldest
//! sessions past `limits.max_sessions_per_user` end, the session rotates to a new id (cookie) or
//! a new bearer session starts, `last_login` is recorded, the browser gets the device cookie,
//! and every step leaves its `audit!` event. The answers ([`LoginStep`], [`LoggedIn`]) render
//! as Vestibule's own JSON.
//!
//! [`LoginFlow`] is the configured flow: the server builds one (`App::build*` puts it in reach
//! of an application's routes, where [`Login`] extracts it with the caller's address); an
//! application that uses the layers directly builds its own and adds it as an
//! `axum::Extension`, or calls [`LoginFlow::for_caller`].

mod answer;
mod pending;

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};

pub(crate) use self::answer::{AuthBody, MfaRequiredBody, UserBody, rfc3339, user_body};
pub use self::answer::{LoggedIn, LoginStep, LoginTransport, SecondFactorDue};
pub use self::pending::PendingLogin;
pub(crate) use self::pending::{PENDING_KEY, PENDING_SECS, pending as pending_login};
use crate::auth::mfa::MfaStore;
use crate::auth::reauth::record_factor_proof;
use crate::auth::{DeviceTrust, Password, PasswordHasher, User, UserStore, Username};
use crate::client_ip::TrustedProxies;
use crate::error::{Error, ErrorCode, Result};
use crate::metrics::Metrics;
use crate::ratelimit::{RateLimitConfig, RateLimited, RateLimits};
use crate::session::{Session, SessionUser, Transport, now};

/// What proved who the user is, for the audit event and the session's factor proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Proof {
    /// The password (or a first factor the application checked itself).
    Password,
    /// A TOTP code, as the second factor.
    Totp,
    /// A recovery code, as the second factor.
    RecoveryCode,
    /// A passkey, as the second factor.
    SecurityKey,
    /// A passkey alone (passwordless login; a passkey counts as a second factor).
    Passkey,
    /// An OpenID provider's login (the first factor).
    Oidc,
    /// An OpenID provider's multi-factor login (`amr`), trusted by the operator
    /// (`oidc.provider.trust_mfa`): counts as a second factor.
    OidcMfa,
}

impl Proof {
    /// The `method` of the audit events.
    fn method(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Totp => "totp",
            Self::RecoveryCode => "recovery",
            Self::SecurityKey => "webauthn",
            Self::Passkey => "passkey",
            Self::Oidc => "oidc",
            Self::OidcMfa => "oidc_mfa",
        }
    }
}

/// The configured login flow (cheap to clone): users, password hashing, second factors, the
/// device cookie, the login rate limits and the session cap.
#[derive(Debug, Clone)]
pub struct LoginFlow(Arc<Inner>);

#[derive(Debug, Clone)]
struct Inner {
    users: UserStore,
    hasher: PasswordHasher,
    device: DeviceTrust,
    mfa: MfaStore,
    limits: Arc<RateLimits>,
    trusted_proxies: TrustedProxies,
    max_sessions_per_user: usize,
    metrics: Option<Arc<Metrics>>,
    require_verified_email: bool,
}

/// The 429 for a tripped rate limit, counted and audited (`config_key` names the limit).
pub(crate) fn rate_limited(
    metrics: Option<&Metrics>,
    l: RateLimited,
    what: &str,
    config_key: &str,
) -> Error {
    if let Some(m) = metrics {
        m.rate_limited(config_key);
    }
    audit!(
        "rate_limit",
        limit = config_key,
        "rate limit tripped: {what}"
    );
    l.into_error(what, config_key)
}

/// A request whose `Authorization: Bearer` names no live session is refused (401
/// `invalid_token`) even on login and signup, which would otherwise never load it: when the
/// header is present it is the only credential considered, everywhere.
pub(crate) async fn refuse_dead_bearer(session: &Session) -> Result<()> {
    if session.transport() == Transport::Bearer {
        session.id().await?;
    }
    Ok(())
}

/// 401 `invalid_credentials`: the one answer for an unknown user, a wrong password and a
/// username that cannot exist.
fn invalid_credentials() -> Error {
    Error::new(ErrorCode::InvalidCredentials, "wrong username or password")
}

impl LoginFlow {
    /// A flow over these stores, without rate limits, trusting no proxy, at most 100 sessions
    /// per user (the defaults of `[rate_limits]` aside: add them with
    /// [`with_rate_limits`](Self::with_rate_limits)).
    pub fn new(
        users: UserStore,
        hasher: PasswordHasher,
        device: DeviceTrust,
        mfa: MfaStore,
    ) -> Self {
        let off = RateLimitConfig {
            login_per_ip: None,
            login_per_user: None,
            login_per_device: None,
            signup_per_ip: None,
            password_per_user: None,
            token_create_per_user: None,
            anonymous_sessions_per_ip: None,
            mfa_per_user: None,
            email_per_ip: None,
            email_per_address: None,
        };
        Self(Arc::new(Inner {
            users,
            hasher,
            device,
            mfa,
            limits: Arc::new(RateLimits::new(&off)),
            trusted_proxies: TrustedProxies::default(),
            max_sessions_per_user: 100,
            metrics: None,
            require_verified_email: false,
        }))
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        f(Arc::make_mut(&mut self.0));
        self
    }

    /// The login budgets (per address, per account, per recognised device) come from `limits`.
    #[must_use]
    pub fn with_rate_limits(self, limits: Arc<RateLimits>) -> Self {
        self.edit(|p| p.limits = limits)
    }

    /// The caller's address (the per-address budget, the audit events) is resolved through
    /// `proxies`, as everywhere else in Vestibule.
    #[must_use]
    pub fn with_trusted_proxies(self, proxies: TrustedProxies) -> Self {
        self.edit(|p| p.trusted_proxies = proxies)
    }

    /// At most `cap` live sessions per user: a login past it ends the least recently used.
    #[must_use]
    pub fn with_max_sessions_per_user(self, cap: usize) -> Self {
        self.edit(|p| p.max_sessions_per_user = cap.max(1))
    }

    /// Refused logins and tripped limits are counted in `metrics`.
    #[must_use]
    pub fn with_metrics(self, metrics: Option<Arc<Metrics>>) -> Self {
        self.edit(|p| p.metrics = metrics)
    }

    /// Refuses to log in an account whose address is not verified (403 `email_unverified`,
    /// `auth.require_verified_email`).
    #[must_use]
    pub fn with_require_verified_email(self, on: bool) -> Self {
        self.edit(|p| p.require_verified_email = on)
    }

    /// This flow for one request, from `client_ip` (already resolved) with `headers` (the
    /// device cookie is read from them).
    pub fn for_caller(&self, client_ip: IpAddr, headers: HeaderMap) -> Login {
        Login {
            flow: self.clone(),
            client_ip,
            headers,
        }
    }

    /// Logs `id` in, with no check and no audit event of its own (signup, password change: the
    /// caller audits): makes room under the session cap, rotates the cookie session (or starts a
    /// bearer one), records the login, and issues the device cookie to a cookie login.
    pub(crate) async fn start(
        &self,
        session: &Session,
        id: i64,
        username: &str,
        transport: LoginTransport,
    ) -> Result<LoggedIn> {
        self.make_room_for_session(session, id).await?;
        let user = SessionUser {
            id,
            username: username.to_owned(),
            auth_time: now(),
            transport: Transport::Cookie,
        };
        let body = if transport == LoginTransport::Bearer {
            let (token, expires_at) = session.login_bearer(user).await?;
            answer::bearer_body(id, username, &token, expires_at)
        } else {
            session.login(user).await?;
            match (session.transport(), session.current_token().await) {
                // A bearer session that rotated (password change): the client needs the new token.
                (Transport::Bearer, Some((token, expires_at))) => {
                    answer::bearer_body(id, username, &token, expires_at)
                }
                _ => AuthBody::Cookie(user_body(session, id, username).await?),
            }
        };
        self.0.users.record_login(id).await?;
        let device_cookie = (transport == LoginTransport::Cookie)
            .then(|| HeaderValue::try_from(self.0.device.issue(username, now())).ok())
            .flatten();
        Ok(LoggedIn {
            user_id: id,
            body,
            device_cookie,
        })
    }

    /// Makes room for one more session of `user_id` under `limits.max_sessions_per_user` by
    /// ending the least recently used others (not this request's own, which the login replaces
    /// anyway).
    async fn make_room_for_session(&self, session: &Session, user_id: i64) -> Result<()> {
        let cap = self.0.max_sessions_per_user;
        let current = session.id().await?;
        let store = session.manager().store();
        let mut others: Vec<_> = store
            .list_user(user_id)
            .await?
            .into_iter()
            .filter(|r| Some(r.key) != current)
            .collect();
        if others.len() < cap {
            return Ok(());
        }
        others.sort_by_key(|r| r.last_seen);
        let excess = others.len() + 1 - cap;
        for r in others.iter().take(excess) {
            session.manager().end_record(r).await?;
        }
        audit!(
            "session.revoke",
            reason = "session_cap",
            user_id,
            ended = excess,
            "session cap reached: least recently used ended"
        );
        Ok(())
    }

    fn failed(&self, reason: &str) {
        if let Some(m) = &self.0.metrics {
            m.login_failed(reason);
        }
    }

    fn limited(&self, l: RateLimited, what: &str, config_key: &str) -> Error {
        rate_limited(self.0.metrics.as_deref(), l, what, config_key)
    }
}

/// One request's login: the flow, the caller's address and headers. An extractor inside
/// Vestibule's layers (`App::build_with_routes`, `server::router_with`); elsewhere
/// [`LoginFlow::for_caller`].
#[derive(Debug, Clone)]
pub struct Login {
    flow: LoginFlow,
    client_ip: IpAddr,
    headers: HeaderMap,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Login {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        let flow = parts.extensions.get::<LoginFlow>().cloned().ok_or_else(|| {
            Error::new(ErrorCode::Internal, "no login flow is configured for this route")
                .with_hint("mount the route with App::build_with_routes or server::router_with, or add axum::Extension(LoginFlow)")
        })?;
        let client_ip = flow
            .0
            .trusted_proxies
            .rate_key(&parts.extensions, &parts.headers);
        Ok(flow.for_caller(client_ip, parts.headers.clone()))
    }
}

impl Login {
    /// The caller's address as the rate limits and audit events see it.
    pub fn client_ip(&self) -> IpAddr {
        self.client_ip
    }

    /// Logs in with a username and password, as `POST /auth/login` does.
    ///
    /// # Errors
    /// 401 `invalid_credentials` (an unknown user, a wrong password, a username that cannot
    /// exist: one answer), 403 `account_disabled`, 429 `rate_limited`, 503 `busy` or
    /// `store_unavailable`, 401 `invalid_token` for a dead bearer token on the request, 400
    /// `bearer_not_supported` for the bearer transport on the cookie store.
    pub async fn password(
        &self,
        session: &Session,
        username: &str,
        password: &Password,
        transport: LoginTransport,
    ) -> Result<LoginStep> {
        refuse_dead_bearer(session).await?;
        let ip = self.client_ip;
        if let Err(e) = self.check_ip_rate().await {
            self.flow.failed("rate_limited");
            return Err(e);
        }
        // One canonical username (auth/user.rs): a name that does not parse names no account,
        // so it is refused here, before any database query or password hash, with the answer a
        // wrong password gets. It spent this address's budget above; it has no account budget.
        // An email address (with `@`) names the account that has it, when no username does.
        let parsed = Username::parse(username);
        let is_email =
            username.contains('@') && crate::email::EmailAddress::parse(username).is_ok();
        if parsed.is_err() && !is_email {
            self.flow.failed("invalid_credentials");
            audit!(
                "login.failure",
                reason = "invalid_username",
                client_ip = %ip,
                "login refused: the username is not valid"
            );
            return Err(invalid_credentials());
        }
        let flow = &self.flow.0;
        let user = match &parsed {
            Ok(name) => flow.users.by_username(name.as_str()).await?,
            Err(_) => None,
        };
        let user = match user {
            None if is_email => flow.users.by_email(username).await?,
            found => found,
        };
        // The account's budget is one whatever spelling named it (username or address).
        let account_key = match (&user, &parsed) {
            (Some(u), _) => Username::parse(&u.username)
                .map(|n| n.account_key())
                .unwrap_or_else(|_| u.username.to_ascii_lowercase()),
            (None, Ok(name)) => name.account_key(),
            (None, Err(_)) => username.trim().to_ascii_lowercase(),
        };
        if let Err(e) = self.check_account_rate(&account_key).await {
            self.flow.failed("rate_limited");
            return Err(e);
        }
        // Unknown users are verified against a dummy hash: same answer, same time.
        let stored = user.as_ref().map(|u| u.password_hash.as_str());
        let ok = match flow.hasher.verify(stored, password).await {
            Ok(ok) => ok,
            Err(e) => {
                self.flow.failed("busy");
                return Err(e);
            }
        };
        let user = match user {
            Some(u) if ok => u,
            _ => {
                self.flow.failed("invalid_credentials");
                audit!(
                    "login.failure",
                    reason = "invalid_credentials",
                    user_id = user.as_ref().map(|u| u.id),
                    client_ip = %ip,
                    "login refused: invalid credentials"
                );
                return Err(invalid_credentials());
            }
        };
        if !user.is_active {
            self.flow.failed("account_disabled");
            audit!("login.failure", reason = "account_disabled", user_id = user.id, client_ip = %ip);
            return Err(Error::new(
                ErrorCode::AccountDisabled,
                "this account is disabled",
            ));
        }
        self.rehash_if_outdated(&user, password).await;
        self.verified(session, &user, transport).await
    }

    /// Goes on with a `user` whose first factor is proved (by [`password`](Self::password), or
    /// by the application): when the account has a second factor, records the pending state
    /// ([`LoginStep::SecondFactorDue`]); else logs in ([`complete`](Self::complete)).
    ///
    /// # Errors
    /// 503 `store_unavailable`; those of [`complete`](Self::complete).
    pub async fn verified(
        &self,
        session: &Session,
        user: &User,
        transport: LoginTransport,
    ) -> Result<LoginStep> {
        self.refuse_unverified(user)?;
        self.verified_by(session, user, transport, Proof::Password)
            .await
    }

    /// [`verified`](Self::verified) with the first factor named (`Proof::Password` or
    /// `Proof::Oidc`) for the audit event.
    ///
    /// # Errors
    /// As [`verified`](Self::verified).
    pub async fn verified_by(
        &self,
        session: &Session,
        user: &User,
        transport: LoginTransport,
        proof: Proof,
    ) -> Result<LoginStep> {
        let methods = self.flow.0.mfa.methods(user.id).await?;
        if methods.any() {
            audit!("login.mfa_required", user_id = user.id, client_ip = %self.client_ip, "password accepted; second factor required");
            let bearer =
                transport == LoginTransport::Bearer || session.transport() == Transport::Bearer;
            let due = pending::begin(session, user, &methods, bearer).await?;
            return Ok(LoginStep::SecondFactorDue(due));
        }
        let done = self.complete(session, user, transport, proof).await?;
        Ok(LoginStep::LoggedIn(done))
    }

    /// Logs `user` in now, `proof` being what proved it (no second factor is asked for: see
    /// [`verified`](Self::verified)): the `login.success` event, the session cap, the rotated
    /// cookie session or a new bearer one, `last_login`, the device cookie; a second factor
    /// proved on a cookie session counts for managing factors within the re-authentication
    /// window.
    ///
    /// # Errors
    /// 503 `store_unavailable`, 400 `bearer_not_supported` (the bearer transport on the cookie
    /// store).
    pub async fn complete(
        &self,
        session: &Session,
        user: &User,
        transport: LoginTransport,
        proof: Proof,
    ) -> Result<LoggedIn> {
        self.refuse_unverified(user)?;
        let ip = self.client_ip;
        match proof {
            Proof::Password => {
                audit!("login.success", user_id = user.id, client_ip = %ip, transport = ?transport, "user logged in");
            }
            Proof::Passkey => {
                audit!("login.success", user_id = user.id, client_ip = %ip, method = "passkey", "user logged in with a passkey");
            }
            Proof::Oidc | Proof::OidcMfa => {
                audit!("login.success", user_id = user.id, client_ip = %ip, method = proof.method(), "user logged in through an OpenID provider");
            }
            _ => {
                audit!("login.success", user_id = user.id, client_ip = %ip, method = proof.method(), "user logged in with a second factor");
            }
        }
        let done = self
            .flow
            .start(session, user.id, &user.username, transport)
            .await?;
        if !matches!(proof, Proof::Password | Proof::Oidc) && transport == LoginTransport::Cookie {
            // This session proved a second factor now: it counts for managing factors within
            // the re-authentication window. (A bearer login's new token is another session: it
            // proves a factor through `POST /auth/reauth`.)
            record_factor_proof(session, user.id).await?;
        }
        Ok(done)
    }

    /// 403 `email_unverified` under `auth.require_verified_email` for an account whose address
    /// is not verified (after the password: the answer tells only someone who knows it).
    fn refuse_unverified(&self, user: &User) -> Result<()> {
        if self.flow.0.require_verified_email && !user.email_verified {
            self.flow.failed("email_unverified");
            audit!("login.failure", reason = "email_unverified", user_id = user.id, client_ip = %self.client_ip, "login refused: the address is not verified");
            return Err(Error::new(
                ErrorCode::EmailUnverified,
                "this account's email address is not verified yet",
            )
            .with_hint("follow the link sent to the address, or ask for a new one: POST /auth/email/verify/resend {\"login\"}"));
        }
        Ok(())
    }

    /// The login of this session that waits for its second factor.
    ///
    /// # Errors
    /// 401 `mfa_not_pending` (none, or expired), 503 `store_unavailable`.
    pub async fn pending(&self, session: &Session) -> Result<PendingLogin> {
        pending::pending(session).await
    }

    /// Logs the pending user in once the application verified `proof`: the pending state ends,
    /// the session id rotates (cookie) or a new token replaces the pending one (bearer).
    ///
    /// # Errors
    /// 403 `account_disabled` (disabled meanwhile); those of [`complete`](Self::complete).
    pub async fn complete_pending(
        &self,
        session: &Session,
        pending: &PendingLogin,
        proof: Proof,
    ) -> Result<LoggedIn> {
        let user = self
            .flow
            .0
            .users
            .by_id(pending.user_id)
            .await?
            .filter(|u| u.is_active)
            .ok_or_else(|| Error::new(ErrorCode::AccountDisabled, "this account is disabled"))?;
        let transport = if pending.bearer {
            session.flush().await?;
            LoginTransport::Bearer
        } else {
            session.remove(PENDING_KEY).await?;
            LoginTransport::Cookie
        };
        self.complete(session, &user, transport, proof).await
    }

    /// Throttles login attempts per client address, then per account: from a device that logged
    /// in to the account before, against that device budget; from anywhere else, against the
    /// account's shared budget, which is what slows a distributed password-guessing attack.
    /// `account` is the canonical key ([`Username::account_key`]).
    pub(crate) async fn check_rate(&self, account: &str) -> Result<()> {
        self.check_ip_rate().await?;
        self.check_account_rate(account).await
    }

    /// The per-address half of [`check_rate`](Self::check_rate): every attempt counts, even one
    /// whose username cannot name an account.
    async fn check_ip_rate(&self) -> Result<()> {
        self.flow
            .0
            .limits
            .login_ip
            .take(&self.client_ip)
            .await
            .map_err(|l| {
                self.flow.limited(
                    l,
                    "login attempts from this address",
                    "rate_limits.login_per_ip",
                )
            })
    }

    /// The per-account half of [`check_rate`](Self::check_rate): every spelling of one account
    /// draws from one bucket.
    async fn check_account_rate(&self, account: &str) -> Result<()> {
        let flow = &self.flow;
        if flow.0.device.recognises(&self.headers, account, now()) {
            flow.0
                .limits
                .login_device
                .take(&account.to_owned())
                .await
                .map_err(|l| {
                    flow.limited(
                        l,
                        "login attempts for this account from this device",
                        "rate_limits.login_per_device",
                    )
                })
        } else {
            flow.0
                .limits
                .login_user
                .take(&account.to_owned())
                .await
                .map_err(|l| {
                    flow.limited(
                        l,
                        "login attempts for this account",
                        "rate_limits.login_per_user",
                    )
                })
        }
    }

    /// Rehashes a password whose stored hash has older parameters than the current ones, now
    /// that the login has it in hand (the analogue of Django's `must_update`). Best effort: a
    /// busy hasher or a database hiccup leaves the old hash, and the next login tries again.
    async fn rehash_if_outdated(&self, user: &User, password: &Password) {
        if !PasswordHasher::needs_rehash(&user.password_hash) {
            return;
        }
        let flow = &self.flow.0;
        match flow.hasher.hash(password).await {
            Ok(hash) => {
                if let Ok(true) = flow
                    .users
                    .upgrade_password_hash(user.id, &user.password_hash, &hash)
                    .await
                {
                    audit!(
                        "password.rehash",
                        user_id = user.id,
                        "password hash upgraded to the current parameters"
                    );
                }
            }
            Err(e) => tracing::debug!(error = %e, "password rehash postponed"),
        }
    }
}
