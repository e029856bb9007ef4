//! The `/auth` JSON API, health checks and the demo counter.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::json::Json;
use super::openapi::{ErrorBody, StatusBody};
use super::{AppState, ClientIp};
use crate::auth::reauth::require_recent;
use crate::auth::{AccessToken, AccountUser, AuthUser, MaybeAuthUser, Password, Scope, Username};
use crate::error::{Error, ErrorCode, Result};
use crate::session::{AUTH_USER_KEY, Session, SessionUser, Transport, UnixTime, now};
use crate::token::TokenHash;

/// `{"username", "password", "transport"?}`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct Credentials {
    username: String,
    #[schema(value_type = String, format = Password)]
    password: Password,
    /// `"cookie"` (default): a session cookie. `"bearer"`: the session token in the body, for
    /// `Authorization: Bearer`, and no cookie.
    #[serde(default)]
    transport: LoginTransport,
}

/// How a login's session travels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LoginTransport {
    #[default]
    Cookie,
    Bearer,
}

/// `{"current_password", "new_password"}`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PasswordChange {
    #[schema(value_type = String, format = Password)]
    current_password: Password,
    #[schema(value_type = String, format = Password)]
    new_password: Password,
}

pub(super) fn rfc3339(t: UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `{"user": {"id", "username"}, "csrf_token"}`: what login, signup, me and password answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserBody {
    user: UserView,
    #[schema(required = true)]
    csrf_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct UserView {
    id: i64,
    username: String,
}

async fn user_body(session: &Session, id: i64, username: &str) -> Result<UserBody> {
    Ok(UserBody {
        user: UserView {
            id,
            username: username.to_owned(),
        },
        csrf_token: crate::csrf::session_token(session).await?,
    })
}

/// `{"user", "token", "expires_at"}`: a login with the bearer transport.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BearerBody {
    user: UserView,
    token: String,
    #[schema(format = DateTime)]
    expires_at: String,
}

/// What `POST /auth/login` answers: a login, or the second factor it waits for.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Only the OpenAPI document names it: the handler answers either body.
pub(crate) enum LoginAnswer {
    /// Logged in.
    Done(AuthBody),
    /// The password was right; a second factor is due.
    MfaRequired(super::mfa::MfaRequiredBody),
}

/// What login, signup and password change answer, by transport.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum AuthBody {
    /// The cookie carries the session; the body carries the CSRF token.
    Cookie(UserBody),
    /// The body carries the session token itself.
    Bearer(BearerBody),
}

fn bearer_body(
    id: i64,
    username: &str,
    token: &crate::token::SecretToken,
    expires_at: UnixTime,
) -> AuthBody {
    AuthBody::Bearer(BearerBody {
        user: UserView {
            id,
            username: username.to_owned(),
        },
        token: token.expose().to_owned(),
        expires_at: rfc3339(expires_at),
    })
}

/// Makes room for one more session of `user_id` under `limits.max_sessions_per_user` by ending
/// the least recently used others (not this request's own, which the login replaces anyway).
async fn make_room_for_session(app: &AppState, session: &Session, user_id: i64) -> Result<()> {
    let cap = app.max_sessions_per_user;
    let current = session.id().await?;
    let store = app.sessions.store();
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
        crate::session::end_sessions(&**store, crate::session::Revoke::One(&r.key)).await?;
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

/// Logs `id` in: a rotated cookie session, or a new bearer session.
pub(super) async fn start_session(
    app: &AppState,
    session: &Session,
    id: i64,
    username: &str,
    transport: LoginTransport,
) -> Result<AuthBody> {
    make_room_for_session(app, session, id).await?;
    let user = SessionUser {
        id,
        username: username.to_owned(),
        auth_time: now(),
        transport: Transport::Cookie,
    };
    let body = if transport == LoginTransport::Bearer {
        let (token, expires_at) = session.login_bearer(user).await?;
        bearer_body(id, username, &token, expires_at)
    } else {
        session.login(user).await?;
        match (session.transport(), session.current_token().await) {
            // A bearer session that rotated (password change): the client needs the new token.
            (Transport::Bearer, Some((token, expires_at))) => {
                bearer_body(id, username, &token, expires_at)
            }
            _ => AuthBody::Cookie(user_body(session, id, username).await?),
        }
    };
    app.users.record_login(id).await?;
    Ok(body)
}

/// Creates an account and logs it in (when `auth.signup` is on).
#[utoipa::path(
    post,
    path = "/auth/signup",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 201, description = "Signed up and logged in: the CSRF token (cookie transport) or the session token (bearer transport)", body = AuthBody),
        (status = 400, description = "`malformed_json`: the body is not valid JSON", body = ErrorBody),
        (status = 401, description = "`not_authenticated`, `session_expired` or `invalid_token` (a bad bearer token)", body = ErrorBody),
        (status = 403, description = "`signup_disabled`, or a CSRF refusal", body = ErrorBody),
        (status = 409, description = "`username_taken`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body exceeds `limits.body_bytes`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not declared as `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_username`, `password_too_short`, `password_too_long`, `password_too_common`, `password_contains_username` or `invalid_body`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: wait `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a retry can succeed"))),
        (status = 503, description = "`store_unavailable`: the session store or database is down; retry", body = ErrorBody),
    ),
    security((), ("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_signup(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    session: Session,
    Json(body): Json<Credentials>,
) -> Result<Response> {
    refuse_dead_bearer(&session).await?;
    if !app.signup {
        return Err(Error::new(ErrorCode::SignupDisabled, "signup is turned off on this server")
            .with_hint("set auth.signup = true (VESTIBULE_AUTH__SIGNUP=true), or create users with `vestibule user add`"));
    }
    app.limits
        .signup_ip
        .take(&ip)
        .await
        .map_err(|l| app.limited(l, "signups from this address", "rate_limits.signup_per_ip"))?;
    let username = Username::parse(&body.username)?;
    app.policy.check(username.as_str(), &body.password)?;
    let hash = app.hasher.hash(&body.password).await?;
    let user = app.users.create(&username, &hash).await?;
    audit!("signup", user_id = user.id, client_ip = %ip, "user signed up");
    let transport = body.transport;
    let body = match start_session(&app, &session, user.id, &user.username, transport).await {
        Ok(body) => body,
        Err(e) => {
            // All or nothing: an account the caller was told failed must not block a retry.
            if let Err(undo) = app.users.undo_signup(user.id).await {
                tracing::warn!(error = %undo, user_id = user.id, "could not undo a failed signup");
            }
            return Err(e);
        }
    };
    let mut res = (StatusCode::CREATED, axum::Json(body)).into_response();
    remember_device(&app, &mut res, &user.username, transport);
    Ok(res)
}

/// A request whose `Authorization: Bearer` names no live session is refused (401
/// `invalid_token`) even on login and signup, which would otherwise never load it: when the
/// header is present it is the only credential considered, everywhere.
pub(super) async fn refuse_dead_bearer(session: &Session) -> Result<()> {
    if session.transport() == Transport::Bearer {
        session.id().await?;
    }
    Ok(())
}

/// Gives a browser that logged in with the cookie transport the device cookie of `account`.
pub(super) fn remember_device(
    app: &AppState,
    res: &mut Response,
    account: &str,
    transport: LoginTransport,
) {
    if transport != LoginTransport::Cookie {
        return;
    }
    if let Ok(v) = HeaderValue::try_from(app.device.issue(account, now())) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Throttles login attempts per client address, then per account: from a device that logged
/// in to the account before, against that device budget; from anywhere else, against the
/// account's shared budget, which is what slows a distributed password-guessing attack.
async fn check_login_rate(
    app: &AppState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    account: &str,
) -> Result<()> {
    check_login_ip_rate(app, ip).await?;
    check_account_rate(app, headers, account).await
}

/// The per-address half of [`check_login_rate`]: every attempt counts, even one whose username
/// cannot name an account.
async fn check_login_ip_rate(app: &AppState, ip: std::net::IpAddr) -> Result<()> {
    app.limits.login_ip.take(&ip).await.map_err(|l| {
        app.limited(
            l,
            "login attempts from this address",
            "rate_limits.login_per_ip",
        )
    })
}

/// The per-account half of [`check_login_rate`], keyed by the canonical username
/// ([`Username::account_key`]): every spelling of one account draws from one bucket.
async fn check_account_rate(app: &AppState, headers: &HeaderMap, account: &str) -> Result<()> {
    if app.device.recognises(headers, account, now()) {
        app.limits
            .login_device
            .take(&account.to_owned())
            .await
            .map_err(|l| {
                app.limited(
                    l,
                    "login attempts for this account from this device",
                    "rate_limits.login_per_device",
                )
            })
    } else {
        app.limits
            .login_user
            .take(&account.to_owned())
            .await
            .map_err(|l| {
                app.limited(
                    l,
                    "login attempts for this account",
                    "rate_limits.login_per_user",
                )
            })
    }
}

/// Logs in with a username and password: a rotated cookie session, or a bearer session token.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "Logged in: the CSRF token (cookie transport) or the session token (bearer transport); or, when the user has a second factor, `{\"mfa_required\": true, \"methods\"}` and a pending state that only the `/auth/mfa/*` routes accept", body = LoginAnswer),
        (status = 400, description = "`malformed_json`: the body is not valid JSON; `bearer_not_supported`: `\"transport\": \"bearer\"` with `session.store = \"cookie\"`", body = ErrorBody),
        (status = 401, description = "`invalid_credentials` (same answer for an unknown user), or a bad bearer token", body = ErrorBody),
        (status = 403, description = "`account_disabled`, or a CSRF refusal", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body exceeds `limits.body_bytes`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not declared as `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_body`: fields missing or of the wrong type", body = ErrorBody),
        (status = 429, description = "`rate_limited`: wait `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a retry can succeed"))),
        (status = 503, description = "`store_unavailable` (the session store or database is down) or `busy` (password hashing at its memory budget); retry after `Retry-After`", body = ErrorBody),
    ),
    security((), ("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_login(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    session: Session,
    Json(body): Json<Credentials>,
) -> Result<Response> {
    refuse_dead_bearer(&session).await?;
    if let Err(e) = check_login_ip_rate(&app, ip).await {
        app.login_failed("rate_limited");
        return Err(e);
    }
    // One canonical username (auth/user.rs): a name that does not parse names no account, so it
    // is refused here, before any database query or password hash, with the answer a wrong
    // password gets. It spent this address's budget above; it has no account budget to spend.
    let Ok(username) = Username::parse(&body.username) else {
        app.login_failed("invalid_credentials");
        audit!(
            "login.failure",
            reason = "invalid_username",
            client_ip = %ip,
            "login refused: the username is not valid"
        );
        return Err(invalid_credentials());
    };
    if let Err(e) = check_account_rate(&app, &headers, &username.account_key()).await {
        app.login_failed("rate_limited");
        return Err(e);
    }
    let user = app.users.by_username(username.as_str()).await?;
    // Unknown users are verified against a dummy hash: same answer, same time.
    let ok = match app
        .hasher
        .verify(
            user.as_ref().map(|u| u.password_hash.as_str()),
            &body.password,
        )
        .await
    {
        Ok(ok) => ok,
        Err(e) => {
            app.login_failed("busy");
            return Err(e);
        }
    };
    let user = match user {
        Some(u) if ok => u,
        _ => {
            app.login_failed("invalid_credentials");
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
        app.login_failed("account_disabled");
        audit!("login.failure", reason = "account_disabled", user_id = user.id, client_ip = %ip);
        return Err(Error::new(
            ErrorCode::AccountDisabled,
            "this account is disabled",
        ));
    }
    rehash_if_outdated(&app, &user, &body.password).await;
    // A second factor is due: a pending state that grants nothing until it is given (server/mfa.rs).
    let methods = app.mfa.store.methods(user.id).await?;
    if methods.any() {
        audit!("login.mfa_required", user_id = user.id, client_ip = %ip, "password accepted; second factor required");
        let bearer =
            body.transport == LoginTransport::Bearer || session.transport() == Transport::Bearer;
        return super::mfa::begin(&session, &user, &methods, bearer).await;
    }
    audit!("login.success", user_id = user.id, client_ip = %ip, transport = ?body.transport, "user logged in");
    let body_out = start_session(&app, &session, user.id, &user.username, body.transport).await?;
    let mut res = axum::Json(body_out).into_response();
    remember_device(&app, &mut res, &user.username, body.transport);
    Ok(res)
}

/// 401 `invalid_credentials`: the one answer for an unknown user, a wrong password and a
/// username that cannot exist.
fn invalid_credentials() -> Error {
    Error::new(ErrorCode::InvalidCredentials, "wrong username or password")
}

/// Rehashes a password whose stored hash has older parameters than the current ones, now that
/// the login has it in hand (the analogue of Django's `must_update`). Best effort: a busy hasher
/// or a database hiccup leaves the old hash, and the next login tries again.
async fn rehash_if_outdated(app: &AppState, user: &crate::auth::User, password: &Password) {
    if !crate::auth::PasswordHasher::needs_rehash(&user.password_hash) {
        return;
    }
    match app.hasher.hash(password).await {
        Ok(hash) => {
            if let Ok(true) = app
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

/// Ends the current session (a no-op without one).
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    responses(
        (status = 204, description = "Logged out; `Clear-Site-Data: \"cookies\"` for a cookie session unless `session.clear_site_data = false`"),
        (status = 401, description = "`invalid_token`: a bad bearer token", body = ErrorBody),
        (status = 403, description = "`csrf_origin_untrusted`, `csrf_token_missing`, `csrf_token_mismatch`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: the session store or database is down; retry", body = ErrorBody),
    ),
    security((), ("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_logout(
    State(app): State<AppState>,
    session: Session,
    user: MaybeAuthUser,
) -> Result<Response> {
    session.flush().await?;
    audit!("logout", user_id = user.0.as_ref().map(|u| u.id));
    Ok(logged_out(&app, &session))
}

/// 204 after a logout; for a browser (cookie transport), with `Clear-Site-Data: "cookies"` when
/// `session.clear_site_data` is on, so no cookie of the origin outlives the session (ASVS 7.4.1).
fn logged_out(app: &AppState, session: &Session) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    if app.clear_site_data && session.transport() == Transport::Cookie {
        res.headers_mut().insert(
            HeaderName::from_static("clear-site-data"),
            HeaderValue::from_static("\"cookies\""),
        );
    }
    res
}

/// The logged-in user and the session's CSRF token.
#[utoipa::path(
    get,
    path = "/auth/me",
    tag = "auth",
    responses(
        (status = 200, description = "The user", body = UserBody),
        (status = 401, description = "`not_authenticated`, `session_expired` or `invalid_token` (a bad bearer token)", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: the session store or database is down; retry", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("bearer" = [])),
)]
pub(crate) async fn get_me(session: Session, user: AuthUser) -> Result<axum::Json<UserBody>> {
    Ok(axum::Json(
        user_body(&session, user.id, &user.username).await?,
    ))
}

/// `{"csrf_token"}`: `null` when the request has no cookie session.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CsrfBody {
    #[schema(required = true)]
    csrf_token: Option<String>,
}

/// The CSRF token for `X-CSRF-Token` (`null` without a cookie session).
#[utoipa::path(
    get,
    path = "/auth/csrf",
    tag = "auth",
    responses(
        (status = 200, description = "The masked CSRF token", body = CsrfBody),
        (status = 401, description = "`invalid_token`: a bad bearer token", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: the session store or database is down; retry", body = ErrorBody),
    ),
    security((), ("session_cookie" = []), ("bearer" = [])),
)]
pub(crate) async fn get_csrf(session: Session) -> Result<axum::Json<CsrfBody>> {
    Ok(axum::Json(CsrfBody {
        csrf_token: crate::csrf::session_token(&session).await?,
    }))
}

/// Changes the password: this session moves to a new token, every other session ends.
#[utoipa::path(
    post,
    path = "/auth/password",
    tag = "auth",
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed: the new CSRF token, or the new session token for a bearer session, and how many other sessions and access tokens ended", body = super::ended::PasswordChanged),
        (status = 400, description = "`malformed_json`: the body is not valid JSON", body = ErrorBody),
        (status = 401, description = "`invalid_credentials` (wrong current password), `not_authenticated`, `invalid_token`", body = ErrorBody),
        (status = 403, description = "`reauth_required` (no password proved within `auth.reauth_window`: `POST /auth/reauth`), `session_required` (an access token), `insufficient_scope`, or a CSRF refusal", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body exceeds `limits.body_bytes`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not declared as `application/json`", body = ErrorBody),
        (status = 422, description = "`password_too_short`, `password_too_long`, `password_too_common`, `password_contains_username` or `invalid_body`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: wait `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a retry can succeed"))),
        (status = 503, description = "`store_unavailable`: the session store or database is down; retry", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_password(
    State(app): State<AppState>,
    session: Session,
    user: AccountUser,
    Json(body): Json<PasswordChange>,
) -> Result<axum::Json<super::ended::PasswordChanged>> {
    require_recent(&session, app.reauth_window).await?;
    app.limits.password_user.take(&user.id).await.map_err(|l| {
        app.limited(
            l,
            "password change attempts",
            "rate_limits.password_per_user",
        )
    })?;
    let stored = app
        .users
        .by_id(user.id)
        .await?
        .ok_or_else(Error::not_authenticated)?;
    if !app
        .hasher
        .verify(Some(&stored.password_hash), &body.current_password)
        .await?
    {
        return Err(Error::new(
            ErrorCode::InvalidCredentials,
            "the current password is wrong",
        ));
    }
    app.policy.check(&stored.username, &body.new_password)?;
    let hash = app.hasher.hash(&body.new_password).await?;
    app.users.set_password_hash(user.id, &hash).await?;
    // The session is bound to the password: this one moves to a new token, every other one ends.
    let body = start_session(
        &app,
        &session,
        user.id,
        &stored.username,
        LoginTransport::Cookie,
    )
    .await?;
    let keep = session.id().await?;
    let ended = crate::session::end_sessions(
        &**app.sessions.store(),
        crate::session::Revoke::User {
            user_id: user.id,
            keep: keep.as_ref(),
        },
    )
    .await?;
    let revoked = if app.token_settings.revoke_on_password_change {
        app.access_tokens.revoke_all(user.id).await?
    } else {
        0
    };
    audit!(
        "password.change",
        user_id = user.id,
        ended = %ended,
        tokens_revoked = revoked,
        "password changed"
    );
    Ok(axum::Json(super::ended::PasswordChanged {
        auth: body,
        ended: super::ended::EndedCounts::new(ended, revoked),
    }))
}

/// `{"password", "code"? | "recovery_code"? | "credential"?}`: the current password, proved
/// again, and on an account with a second factor one of its factors (at most one), which
/// managing second factors needs.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct Reauth {
    #[schema(value_type = String, format = Password)]
    password: Password,
    /// A current TOTP code (6 digits).
    #[serde(default)]
    code: Option<String>,
    /// An unused recovery code (spent by this proof).
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    recovery_code: Option<Password>,
    /// What `navigator.credentials.get` returned for the options of
    /// `POST /auth/reauth/webauthn/start` (binary fields base64url).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    credential: Option<webauthn_rs::prelude::PublicKeyCredential>,
}

/// `{"auth_time", "reauth_until"}`: when the password was proved, and until when sensitive
/// actions are allowed without proving it again.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReauthBody {
    #[schema(format = DateTime)]
    auth_time: String,
    #[schema(format = DateTime)]
    reauth_until: String,
    /// Whether this proof included a second factor ("aal2"): managing second factors on an
    /// account that has one needs it.
    second_factor: bool,
}

/// Proves the password again, which lets this session perform sensitive actions (password
/// change, access tokens, ending sessions, second factors) for `auth.reauth_window`.
#[utoipa::path(
    post,
    path = "/auth/reauth",
    tag = "auth",
    request_body = Reauth,
    responses(
        (status = 200, description = "Proved: sensitive actions are allowed until `reauth_until`; managing second factors too when `second_factor` is true", body = ReauthBody),
        (status = 400, description = "`malformed_json`: the body is not valid JSON", body = ErrorBody),
        (status = 401, description = "`invalid_credentials` (wrong password), `mfa_code_invalid` (wrong, used or replayed code), `webauthn_failed` (no challenge or a bad passkey answer), `not_authenticated`, `session_expired` or `invalid_token`", body = ErrorBody),
        (status = 403, description = "`session_required` (an access token), `insufficient_scope`, or a CSRF refusal", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body exceeds `limits.body_bytes`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not declared as `application/json`", body = ErrorBody),
        (status = 404, description = "`passkeys_unavailable`: a `credential` on a server without passkeys", body = ErrorBody),
        (status = 422, description = "`invalid_body`: fields missing or of the wrong type, or more than one second factor", body = ErrorBody),
        (status = 429, description = "`rate_limited`: the account's login budget (or its second-factor budget) is spent; wait `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a retry can succeed"))),
        (status = 503, description = "`store_unavailable` or `busy` (password hashing at capacity); retry", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_reauth(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    session: Session,
    user: AccountUser,
    Json(body): Json<Reauth>,
) -> Result<axum::Json<ReauthBody>> {
    let factor = match (&body.code, &body.recovery_code, &body.credential) {
        (None, None, None) => None,
        (Some(c), None, None) => Some(super::mfa::ReauthFactor::Totp(c)),
        (None, Some(c), None) => Some(super::mfa::ReauthFactor::Recovery(c.expose())),
        (None, None, Some(c)) => Some(super::mfa::ReauthFactor::Passkey(c)),
        _ => {
            return Err(Error::new(
                ErrorCode::InvalidBody,
                "send at most one second factor: code, recovery_code or credential",
            ));
        }
    };
    // The same budgets as a login for this account: a stolen session cannot guess faster.
    let key = Username::parse(&user.username)
        .map(|u| u.account_key())
        .unwrap_or_else(|_| user.username.to_ascii_lowercase());
    check_login_rate(&app, ip, &headers, &key).await?;
    let stored = app
        .users
        .by_id(user.id)
        .await?
        .filter(|u| u.is_active)
        .ok_or_else(Error::not_authenticated)?;
    if !app
        .hasher
        .verify(Some(&stored.password_hash), &body.password)
        .await?
    {
        app.login_failed("invalid_credentials");
        audit!("reauth.failure", user_id = user.id, client_ip = %ip, "re-authentication refused: wrong password");
        return Err(Error::new(
            ErrorCode::InvalidCredentials,
            "the password is wrong",
        ));
    }
    let Some(mut su) = session.user().await? else {
        return Err(Error::not_authenticated());
    };
    // The second factor, when one was sent: verified (and recorded as this session's factor
    // proof) before anything is stamped, so a wrong code leaves the session as it was.
    let method = match factor {
        Some(f) => Some(super::mfa::verify_reauth_factor(&app, &session, user.id, ip, f).await?),
        None => None,
    };
    let t = now();
    su.auth_time = t;
    session.insert(AUTH_USER_KEY, &su).await?;
    audit!("reauth.success", user_id = user.id, client_ip = %ip, second_factor = method, "password proved again");
    let window = i64::try_from(app.reauth_window.as_secs()).unwrap_or(i64::MAX);
    Ok(axum::Json(ReauthBody {
        auth_time: rfc3339(t),
        reauth_until: rfc3339(t.saturating_add(window)),
        second_factor: method.is_some(),
    }))
}

/// `{"token", "new_password"}`: a one-time token from `vestibule user reset-password`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PasswordReset {
    /// The `vrst_…` token the administrator handed over.
    #[schema(value_type = String, format = Password)]
    token: Password,
    #[schema(value_type = String, format = Password)]
    new_password: Password,
}

/// Sets a new password with a one-time reset token; every session and (with
/// `tokens.revoke_on_password_change`) every access token of the account ends. No login follows:
/// the user logs in with the new password.
#[utoipa::path(
    post,
    path = "/auth/password/reset",
    tag = "auth",
    request_body = PasswordReset,
    responses(
        (status = 204, description = "The password is set; log in with it"),
        (status = 400, description = "`reset_token_invalid` (malformed, unknown, expired, used, or a disabled account) or `malformed_json`", body = ErrorBody),
        (status = 403, description = "A CSRF refusal (an untrusted Origin)", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body exceeds `limits.body_bytes`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not declared as `application/json`", body = ErrorBody),
        (status = 422, description = "`password_too_short`, `password_too_long`, `password_too_common`, `password_contains_username` (the token stays usable) or `invalid_body`", body = ErrorBody),
        (status = 503, description = "`store_unavailable` or `busy`; retry", body = ErrorBody),
    ),
    security(()),
)]
pub(crate) async fn post_password_reset(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<PasswordReset>,
) -> Result<StatusCode> {
    let invalid = || {
        Error::new(
            ErrorCode::ResetTokenInvalid,
            "this reset token is unknown, expired or already used",
        )
        .with_hint(
            "ask an administrator for a new one (`vestibule user reset-password --user NAME`)",
        )
    };
    let token = crate::token::SecretToken::parse(
        crate::token::TokenKind::PasswordReset,
        body.token.expose().trim(),
    )
    .map_err(|_| invalid())?;
    let resets = crate::auth::PasswordResets::new(app.db.clone());
    let user_id = resets.peek(&token).await?.ok_or_else(invalid)?;
    let user = app.users.by_id(user_id).await?.ok_or_else(invalid)?;
    app.policy.check(&user.username, &body.new_password)?;
    let hash = app.hasher.hash(&body.new_password).await?;
    if resets.redeem(&token, &hash).await?.is_none() {
        return Err(invalid());
    }
    let ended = crate::session::end_all_sessions(&**app.sessions.store(), [user.id]).await?;
    let revoked = if app.token_settings.revoke_on_password_change {
        app.access_tokens.revoke_all(user.id).await?
    } else {
        0
    };
    audit!(
        "password.reset",
        user_id = user.id,
        client_ip = %ip,
        ended = %ended,
        tokens_revoked = revoked,
        "password set with a reset token"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// `{"sessions": [...]}`: the caller's live sessions.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionList {
    sessions: Vec<SessionView>,
}

/// One live session, as `GET /auth/sessions` lists it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionView {
    /// Hex id, for `DELETE /auth/sessions/{id}`.
    id: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    last_seen: String,
    #[schema(format = DateTime)]
    expires_at: String,
    #[schema(required = true)]
    user_agent: Option<String>,
    /// A short label parsed from `user_agent` for people ("Chrome 156 on Linux", "curl 8.5.0"):
    /// the major browsers and systems only; `null` when nothing was recognised.
    #[schema(required = true)]
    browser: Option<String>,
    /// `"cookie"` or `"bearer"`, as stored with the login.
    #[schema(value_type = String)]
    transport: Value,
    /// Whether this is the session of the request.
    current: bool,
}

/// The caller's live sessions.
#[utoipa::path(
    get,
    path = "/auth/sessions",
    tag = "auth",
    responses(
        (status = 200, description = "The sessions", body = SessionList),
        (status = 401, description = "`not_authenticated`, `session_expired` or `invalid_token` (a bad bearer token)", body = ErrorBody),
        (status = 403, description = "`session_required`: access tokens cannot list sessions", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: the session store or database is down; retry", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("bearer" = [])),
)]
pub(crate) async fn get_sessions(
    State(app): State<AppState>,
    session: Session,
    user: AccountUser,
) -> Result<axum::Json<SessionList>> {
    let current = session.id().await?;
    let records = if app.sessions.is_stateless() {
        // The cookie store keeps no list: the current session is the only one it can see.
        session.current_record().await?.into_iter().collect()
    } else {
        app.sessions.store().list_user(user.id).await?
    };
    let sessions = records
        .iter()
        .map(|r| SessionView {
            id: r.key.to_hex(),
            created_at: rfc3339(r.created_at),
            last_seen: rfc3339(r.last_seen),
            expires_at: rfc3339(r.expires_at.min(r.absolute_expires_at)),
            user_agent: r.user_agent.clone(),
            browser: r.user_agent.as_deref().and_then(super::user_agent::label),
            transport: r
                .data
                .get(AUTH_USER_KEY)
                .and_then(|u| u.get("transport"))
                .cloned()
                .unwrap_or_else(|| json!("cookie")),
            current: Some(r.key) == current,
        })
        .collect();
    Ok(axum::Json(SessionList { sessions }))
}

/// Ends one of the caller's sessions (the current one too).
#[utoipa::path(
    delete,
    path = "/auth/sessions/{id}",
    tag = "auth",
    params(("id" = String, Path, description = "The session id from `GET /auth/sessions`")),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, description = "`not_authenticated`, `session_expired` or `invalid_token` (a bad bearer token)", body = ErrorBody),
        (status = 403, description = "`reauth_required` (ending another session: `POST /auth/reauth` first), `session_required`, `insufficient_scope`, or a CSRF refusal", body = ErrorBody),
        (status = 404, description = "`session_not_found`: no session with this id belongs to the caller", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: the session store or database is down; retry", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn delete_session(
    State(app): State<AppState>,
    session: Session,
    user: AccountUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let not_found = || {
        Error::new(
            ErrorCode::SessionNotFound,
            "no session with this id belongs to you",
        )
    };
    let key = TokenHash::from_hex(&id).ok_or_else(not_found)?;
    if session.id().await? == Some(key) {
        // The current session: found without a store read (the cookie store has none).
        session.flush().await?;
        audit!("session.revoke", reason = "by_owner", user_id = user.id);
        return Ok(StatusCode::NO_CONTENT);
    }
    let record = app
        .sessions
        .store()
        .load(&key)
        .await?
        .filter(|r| r.user_id == Some(user.id))
        .ok_or_else(not_found)?;
    if session.id().await? == Some(record.key) {
        // Ending one's own session is a logout, which never needs a fresh password.
        session.flush().await?;
    } else {
        require_recent(&session, app.reauth_window).await?;
        crate::session::end_sessions(
            &**app.sessions.store(),
            crate::session::Revoke::One(&record.key),
        )
        .await?;
    }
    audit!("session.revoke", reason = "by_owner", user_id = user.id);
    Ok(StatusCode::NO_CONTENT)
}

/// Refuses a label (an access token's or a passkey's name) holding control or invisible
/// characters ([`crate::auth::is_control_or_invisible`]: NUL, which PostgreSQL cannot store,
/// the escape sequences that would rewrite an administrator's terminal in `vestibule token
/// list`, bidirectional overrides that disguise a row) with 400 `invalid_characters`, before
/// anything stores it.
pub(super) fn refuse_control_chars(field: &str, value: &str) -> Result<()> {
    if value.chars().any(crate::auth::is_control_or_invisible) {
        return Err(Error::new(
            ErrorCode::InvalidCharacters,
            format!("{field} must not contain control characters"),
        )
        .with_hint(format!(
            "send {field} as printable text: no NUL, escape, newline, other control or invisible formatting characters"
        )));
    }
    Ok(())
}

/// Ends every session of the caller, this one included.
#[utoipa::path(
    post,
    path = "/auth/logout-all",
    tag = "auth",
    responses(
        (status = 204, description = "Logged out everywhere; `Clear-Site-Data: \"cookies\"` for a cookie session unless `session.clear_site_data = false`"),
        (status = 401, description = "`not_authenticated`, `session_expired` or `invalid_token` (a bad bearer token)", body = ErrorBody),
        (status = 403, description = "`reauth_required` (`POST /auth/reauth` first), `session_required`, `insufficient_scope`, or a CSRF refusal", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: the session store or database is down; retry", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_logout_all(
    State(app): State<AppState>,
    session: Session,
    user: AccountUser,
) -> Result<Response> {
    require_recent(&session, app.reauth_window).await?;
    let ended = crate::session::end_all_sessions(&**app.sessions.store(), [user.id]).await?;
    session.flush().await?;
    audit!(
        "session.revoke",
        reason = "logout_all",
        user_id = user.id,
        ended = %ended,
        "logged out everywhere"
    );
    Ok(logged_out(&app, &session))
}

pub(crate) async fn get_counter(session: Session) -> Result<axum::Json<Value>> {
    let n: u64 = session.get("counter").await?.unwrap_or(0);
    Ok(axum::Json(json!({ "counter": n })))
}

pub(crate) async fn post_counter(session: Session) -> Result<axum::Json<Value>> {
    let n: u64 = session
        .get::<u64>("counter")
        .await?
        .unwrap_or(0)
        .saturating_add(1);
    session.insert("counter", n).await?;
    Ok(axum::Json(json!({ "counter": n })))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive", body = StatusBody)))]
pub(crate) async fn healthz() -> axum::Json<Value> {
    axum::Json(json!({ "status": "ok" }))
}

/// Readiness: the session store and the database answer.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "Ready", body = StatusBody), (status = 503, description = "`store_unavailable`", body = ErrorBody)))]
pub(crate) async fn readyz(State(app): State<AppState>) -> Response {
    let store = app.sessions.store().ping().await;
    let db = app.db.ping().await;
    match (store, db) {
        (Ok(()), Ok(())) => axum::Json(json!({ "status": "ready" })).into_response(),
        (Err(e), _) => Error::from(e).into_response(),
        (_, Err(e)) => Error::new(ErrorCode::StoreUnavailable, "the database is unavailable")
            .with_source(e)
            .into_response(),
    }
}

pub(crate) async fn not_found() -> Error {
    Error::new(ErrorCode::NotFound, "no such route")
}

pub(crate) async fn method_not_allowed() -> Error {
    Error::new(
        ErrorCode::MethodNotAllowed,
        "this route does not accept this method",
    )
}

/// `{"name", "expires_in_days"?, "scopes"?}`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NewToken {
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    expires_in_days: Option<u32>,
    #[schema(min_items = 1)]
    scopes: Option<Vec<Scope>>,
}

/// An access token as listed (never the secret).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenView {
    id: i64,
    name: String,
    /// The first characters of the token, to tell tokens apart.
    prefix: String,
    scopes: Vec<Scope>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime, required = true)]
    last_used_at: Option<String>,
    #[schema(format = DateTime)]
    expires_at: String,
}

/// `{"tokens": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenList {
    tokens: Vec<TokenView>,
}

/// A new access token: the listing fields plus the secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NewTokenBody {
    #[serde(flatten)]
    view: TokenView,
    token: String,
}

fn token_json(t: &AccessToken) -> TokenView {
    TokenView {
        id: t.id,
        name: t.name.clone(),
        prefix: t.prefix.clone(),
        scopes: t.scopes.clone(),
        created_at: rfc3339(t.created_at),
        last_used_at: t.last_used_at.map(rfc3339),
        expires_at: rfc3339(t.expires_at),
    }
}

/// Creates a personal access token; its secret is in this answer only.
#[utoipa::path(
    post,
    path = "/auth/tokens",
    tag = "auth",
    request_body = NewToken,
    responses(
        (status = 201, description = "Created", body = NewTokenBody),
        (status = 400, description = "`malformed_json`: the body is not valid JSON; `invalid_characters`: control characters in `name`", body = ErrorBody),
        (status = 401, description = "`not_authenticated`, `session_expired` or `invalid_token` (a bad bearer token)", body = ErrorBody),
        (status = 403, description = "`reauth_required` (no password proved within `auth.reauth_window`: `POST /auth/reauth`), `session_required` (an access token cannot mint tokens), `insufficient_scope`, or a CSRF refusal", body = ErrorBody),
        (status = 409, description = "`token_limit_reached`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body exceeds `limits.body_bytes`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not declared as `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_body`: a bad name, expiry or scope list", body = ErrorBody),
        (status = 429, description = "`rate_limited`: wait `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a retry can succeed"))),
        (status = 503, description = "`store_unavailable`: the session store or database is down; retry", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_token(
    State(app): State<AppState>,
    session: Session,
    user: AccountUser,
    Json(body): Json<NewToken>,
) -> Result<Response> {
    require_recent(&session, app.reauth_window).await?;
    app.limits.token_user.take(&user.id).await.map_err(|l| {
        app.limited(
            l,
            "access tokens created",
            "rate_limits.token_create_per_user",
        )
    })?;
    let limits = &app.token_settings;
    let name = body.name.trim();
    refuse_control_chars("name", name)?;
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::new(
            ErrorCode::InvalidBody,
            "name must have 1 to 100 characters",
        ));
    }
    let expires_at = limits
        .expiry_for(body.expires_in_days)
        .map_err(|msg| Error::new(ErrorCode::InvalidBody, msg))?;
    let scopes = body.scopes.unwrap_or_else(|| vec![Scope::Read]);
    if scopes.is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidBody,
            "scopes must name at least one scope",
        ));
    }
    let (token, secret) = app
        .access_tokens
        .create(user.id, name, &scopes, expires_at, limits.per_user_limit)
        .await?;
    audit!(
        "token.create",
        user_id = user.id,
        token_id = token.id,
        "access token created"
    );
    let out = NewTokenBody {
        view: token_json(&token),
        token: secret.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

/// The caller's access tokens (never their secrets).
#[utoipa::path(
    get,
    path = "/auth/tokens",
    tag = "auth",
    responses(
        (status = 200, description = "The tokens", body = TokenList),
        (status = 401, description = "`not_authenticated`, `session_expired` or `invalid_token` (a bad bearer token)", body = ErrorBody),
        (status = 403, description = "`session_required`: access tokens cannot list tokens", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: the session store or database is down; retry", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("bearer" = [])),
)]
pub(crate) async fn get_tokens(
    State(app): State<AppState>,
    user: AccountUser,
) -> Result<axum::Json<TokenList>> {
    let tokens = app.access_tokens.list(user.id).await?;
    Ok(axum::Json(TokenList {
        tokens: tokens.iter().map(token_json).collect(),
    }))
}

/// Revokes one of the caller's access tokens.
#[utoipa::path(
    delete,
    path = "/auth/tokens/{id}",
    tag = "auth",
    params(("id" = String, Path, description = "The token id from `GET /auth/tokens`")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "`not_authenticated`, `session_expired` or `invalid_token` (a bad bearer token)", body = ErrorBody),
        (status = 403, description = "`session_required`, `insufficient_scope`, or a CSRF refusal", body = ErrorBody),
        (status = 404, description = "`token_not_found`: no access token with this id belongs to the caller", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: the session store or database is down; retry", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn delete_token(
    State(app): State<AppState>,
    user: AccountUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let not_found = || {
        Error::new(
            ErrorCode::TokenNotFound,
            "no access token with this id belongs to you",
        )
    };
    let id: i64 = id.parse().map_err(|_| not_found())?;
    if app.access_tokens.revoke(user.id, id).await? {
        audit!(
            "token.revoke",
            user_id = user.id,
            token_id = id,
            "access token revoked"
        );
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}
