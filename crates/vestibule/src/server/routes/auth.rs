//! Signup, password login, logout, the current user and the CSRF token; the login helpers the
//! second-factor and passkey routes share.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    AuthBody, Credentials, LoginAnswer, LoginTransport, UserBody, bearer_body, logged_out,
    refuse_dead_bearer, user_body,
};
use crate::auth::{AuthUser, MaybeAuthUser, Password, Username};
use crate::error::{Error, ErrorCode, Result};
use crate::server::json::Json;
use crate::server::openapi::ErrorBody;
use crate::server::{AppState, ClientIp};
use crate::session::{Session, SessionUser, Transport, now};

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
pub(super) async fn check_login_rate(
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
