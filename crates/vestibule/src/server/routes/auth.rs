//! Signup, password login, logout, the current user and the CSRF token. The login itself is the
//! library's flow ([`crate::auth::login`]); these handlers only read the request and answer.

use crate::server::openapi::{JsonBodyErrors, StoreErrors};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    AuthBody, Credentials, LoginAnswer, UserBody, logged_out, refuse_dead_bearer, user_body,
};
use crate::auth::{AuthUser, MaybeAuthUser, Username};
use crate::error::{Error, ErrorCode, Result};
use crate::server::json::Json;
use crate::server::openapi::ErrorBody;
use crate::server::{AppState, ClientIp};
use crate::session::Session;

/// `{"username", "password", "email"?, "transport"?}`.
#[derive(Debug, serde::Deserialize, ToSchema)]
pub(crate) struct Signup {
    username: String,
    #[schema(value_type = String, format = Password)]
    password: crate::auth::Password,
    /// The account's address (required with `auth.require_email`): a verification link is
    /// sent to it; it can then be used to log in and to recover the password.
    #[serde(default)]
    email: Option<String>,
    /// `"cookie"` (default) or `"bearer"`, as for `POST /auth/login`.
    #[serde(default)]
    transport: crate::auth::LoginTransport,
}

/// `{"email_verification_required": true, "email"}`: signed up, not logged in
/// (`auth.require_verified_email`): the link sent to the address must be followed first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SignupPending {
    email_verification_required: bool,
    email: String,
}

/// Creates an account and logs it in (when `auth.signup` is on).
#[utoipa::path(
    post,
    path = "/auth/signup",
    tag = "auth",
    request_body = Signup,
    responses(
        StoreErrors,
        JsonBodyErrors,
        (status = 201, description = "Signed up and logged in: the CSRF token (cookie transport) or the session token (bearer transport)", body = AuthBody),
        (status = 202, description = "Signed up, not logged in: `auth.require_verified_email` waits for the link sent to the address", body = SignupPending),
        (status = 401, description = "`not_authenticated`, `session_expired` or `invalid_token` (a bad bearer token)", body = ErrorBody),
        (status = 403, description = "`signup_disabled`, or a CSRF refusal", body = ErrorBody),
        (status = 409, description = "`username_taken` or `email_taken`", body = ErrorBody),
        (status = 422, description = "`invalid_email`, `email_required`, `invalid_username`, `password_too_short`, `password_too_long`, `password_too_common`, `password_contains_username` or `invalid_body`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: wait `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a retry can succeed"))),
    ),
    security((), ("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_signup(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    session: Session,
    Json(body): Json<Signup>,
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
    let email = match body.email.as_deref().map(str::trim) {
        Some(e) if !e.is_empty() => Some(crate::email::EmailAddress::parse(e)?),
        _ if app.require_email => {
            return Err(Error::new(
                ErrorCode::EmailRequired,
                "this server needs an email address to sign up",
            )
            .with_hint("send \"email\" with the signup"));
        }
        _ => None,
    };
    app.policy.check(username.as_str(), &body.password)?;
    let hash = app.hasher.hash(&body.password).await?;
    let user = match &email {
        // The user, the verification token and its message: one transaction.
        Some(email) => {
            let hours = (crate::auth::email::VERIFICATION_LIFETIME.as_secs() / 3600).to_string();
            let user =
                crate::auth::email::create_with_email(&app.db, &username, &hash, email, |token| {
                    app.mailer.as_ref().map(|m| {
                        super::email::verification_message(
                            m,
                            token,
                            email.as_str(),
                            username.as_str(),
                            &hours,
                        )
                    })
                })
                .await?;
            if let Some(m) = &app.mailer {
                m.wake();
            }
            user
        }
        None => app.users.create(&username, &hash).await?,
    };
    audit!("signup", user_id = user.id, client_ip = %ip, "user signed up");
    if app.require_verified_email {
        return Ok((
            StatusCode::ACCEPTED,
            axum::Json(SignupPending {
                email_verification_required: true,
                email: user.email.clone().unwrap_or_default(),
            }),
        )
            .into_response());
    }
    let done = match app
        .login
        .start(&session, user.id, &user.username, body.transport)
        .await
    {
        Ok(done) => done,
        Err(e) => {
            // All or nothing: an account the caller was told failed must not block a retry.
            if let Err(undo) = app.users.undo_signup(user.id).await {
                tracing::warn!(error = %undo, user_id = user.id, "could not undo a failed signup");
            }
            return Err(e);
        }
    };
    Ok((StatusCode::CREATED, done).into_response())
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
    // The library's login flow (auth/login): budgets, password, second factor, rotation.
    let cookie_headers = headers.clone();
    let login = app.login.for_caller(ip, headers);
    let step = login
        .password(&session, &body.username, &body.password, body.transport)
        .await?;
    if let crate::auth::LoginStep::LoggedIn(done) = &step {
        new_device_notice(&app, ip, &cookie_headers, done.user_id()).await;
    }
    Ok(step.into_response())
}

/// A sign-in from a browser without the account's device cookie: the owner is told (when the
/// account has a verified address and `email.notify.new_device` is on).
async fn new_device_notice(
    app: &AppState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    user_id: i64,
) {
    if app.mailer.is_none() {
        return;
    }
    let Ok(Some(user)) = app.users.by_id(user_id).await else {
        return;
    };
    let key = Username::parse(&user.username)
        .map(|u| u.account_key())
        .unwrap_or_else(|_| user.username.to_ascii_lowercase());
    if !app.device.recognises(headers, &key, crate::session::now()) {
        super::email::notify_new_device(app, user_id, ip).await;
    }
}

/// Ends the current session (a no-op without one).
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    responses(
        StoreErrors,
        (status = 204, description = "Logged out; `Clear-Site-Data: \"cookies\"` for a cookie session unless `session.clear_site_data = false`"),
        (status = 401, description = "`invalid_token`: a bad bearer token", body = ErrorBody),
        (status = 403, description = "`csrf_origin_untrusted`, `csrf_token_missing`, `csrf_token_mismatch`", body = ErrorBody),
    ),
    security((), ("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_logout(
    State(app): State<AppState>,
    session: Session,
    user: MaybeAuthUser,
) -> Result<Response> {
    let user_id = user.0.as_ref().map(|u| u.id);
    session.flush().await?;
    audit!("logout", user_id);
    Ok(logged_out(&app, &session))
}

/// The logged-in user and the session's CSRF token.
#[utoipa::path(
    get,
    path = "/auth/me",
    tag = "auth",
    responses(
        StoreErrors,
        (status = 200, description = "The user", body = UserBody),
        (status = 401, description = "`not_authenticated`, `session_expired` or `invalid_token` (a bad bearer token)", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("bearer" = [])),
)]
pub(crate) async fn get_me(session: Session, user: AuthUser) -> Result<Response> {
    Ok(crate::server::headers::json_answer(
        &user_body(&session, user.id, &user.username).await?,
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
        StoreErrors,
        (status = 200, description = "The masked CSRF token", body = CsrfBody),
        (status = 401, description = "`invalid_token`: a bad bearer token", body = ErrorBody),
    ),
    security((), ("session_cookie" = []), ("bearer" = [])),
)]
pub(crate) async fn get_csrf(session: Session) -> Result<Response> {
    Ok(crate::server::headers::json_answer(&CsrfBody {
        csrf_token: crate::csrf::session_token(&session).await?,
    }))
}
