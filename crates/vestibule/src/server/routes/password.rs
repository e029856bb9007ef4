//! The password: change it, prove it again (re-authentication, with a second factor when the
//! account has one), or set a new one with an administrator's reset token.

use crate::server::openapi::{JsonBodyErrors, StoreErrors};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{LoginTransport, rfc3339};
use crate::auth::reauth::require_recent;
use crate::auth::{AccountUser, Password, Username};
use crate::error::{Error, ErrorCode, Result};
use crate::server::json::Json;
use crate::server::openapi::ErrorBody;
use crate::server::{AppState, ClientIp};
use crate::session::{AUTH_USER_KEY, Session, now};

/// `{"current_password", "new_password"}`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PasswordChange {
    #[schema(value_type = String, format = Password)]
    current_password: Password,
    #[schema(value_type = String, format = Password)]
    new_password: Password,
}

/// Changes the password: this session moves to a new token, every other session ends.
#[utoipa::path(
    post,
    path = "/auth/password",
    tag = "auth",
    request_body = PasswordChange,
    responses(
        StoreErrors,
        JsonBodyErrors,
        (status = 200, description = "Changed: the new CSRF token, or the new session token for a bearer session, and how many other sessions and access tokens ended", body = crate::server::ended::PasswordChanged),
        (status = 401, description = "`invalid_credentials` (wrong current password), `not_authenticated`, `invalid_token`", body = ErrorBody),
        (status = 403, description = "`reauth_required` (no password proved within `auth.reauth_window`: `POST /auth/reauth`), `session_required` (an access token), `insufficient_scope`, or a CSRF refusal", body = ErrorBody),
        (status = 422, description = "`password_too_short`, `password_too_long`, `password_too_common`, `password_contains_username` or `invalid_body`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: wait `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a retry can succeed"))),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_password(
    State(app): State<AppState>,
    session: Session,
    user: AccountUser,
    Json(body): Json<PasswordChange>,
) -> Result<axum::Json<crate::server::ended::PasswordChanged>> {
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
    // The notice commits with the new password (one transaction): never one without the other.
    let notice = super::email::notice_for(
        &app,
        &stored,
        &crate::email::SecurityNotice::PasswordChanged,
    );
    app.users.set_password_hash(user.id, &hash, &notice).await?;
    super::email::notice_written(&app, &notice);
    // The session is bound to the password: this one moves to a new token, every other one ends.
    // (No device cookie: this is not a login from a new device.)
    let body = app
        .login
        .start(&session, user.id, &stored.username, LoginTransport::Cookie)
        .await?
        .into_body();
    let keep = session.id().await?;
    let ended = app
        .sessions
        .end(crate::session::Revoke::User {
            user_id: user.id,
            keep: keep.as_ref(),
        })
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
    Ok(axum::Json(crate::server::ended::PasswordChanged {
        auth: body,
        ended: crate::server::ended::EndedCounts::new(ended, revoked),
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
        JsonBodyErrors,
        (status = 200, description = "Proved: sensitive actions are allowed until `reauth_until`; managing second factors too when `second_factor` is true", body = ReauthBody),
        (status = 401, description = "`invalid_credentials` (wrong password), `mfa_code_invalid` (wrong, used or replayed code), `webauthn_failed` (no challenge or a bad passkey answer), `not_authenticated`, `session_expired` or `invalid_token`", body = ErrorBody),
        (status = 403, description = "`session_required` (an access token), `insufficient_scope`, or a CSRF refusal", body = ErrorBody),
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
    app.login.for_caller(ip, headers).check_rate(&key).await?;
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

/// `{"token", "new_password"}`: a one-time token from `vestibule user reset-password` or from
/// the link of `POST /auth/password/forgot`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PasswordReset {
    /// The `vrst_…` token the administrator handed over, or the recovery link's.
    #[schema(value_type = String, format = Password)]
    token: Password,
    #[schema(value_type = String, format = Password)]
    new_password: Password,
    /// On an account with a second factor: a current TOTP code (or `recovery_code`).
    #[serde(default)]
    code: Option<String>,
    /// On an account with a second factor: an unused recovery code (spent by this reset).
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    recovery_code: Option<Password>,
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
        (status = 401, description = "`second_factor_required` (the account has a second factor: send `code` or `recovery_code`; the token stays usable) or `mfa_code_invalid`", body = ErrorBody),
        (status = 422, description = "`password_too_short`, `password_too_long`, `password_too_common`, `password_contains_username` (the token stays usable) or `invalid_body`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`rate_limits.mfa_per_user`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a retry can succeed"))),
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
            "ask for a new link (POST /auth/password/forgot), or an administrator for a token (`vestibule user reset-password --user NAME`)",
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
    // A reset does not bypass a second factor (ASVS 6.4.3): the account's factor is proved
    // before the new password takes effect.
    if app.mfa.store.methods(user.id).await?.any() {
        let proved = match (&body.code, &body.recovery_code) {
            (None, None) => {
                return Err(Error::new(
                    ErrorCode::SecondFactorRequired,
                    "this account has a second factor: prove it to set a new password",
                )
                .with_hint("send \"code\" (from the authenticator app) or \"recovery_code\" with the new password; the token stays usable"));
            }
            (code, recovery) => {
                super::mfa::check_rate(&app, user.id).await?;
                match (code, recovery) {
                    (Some(c), _) => super::mfa::totp_ok(&app, user.id, c).await?,
                    (None, Some(r)) => {
                        r.expose().len() <= 64
                            && app
                                .mfa
                                .store
                                .use_recovery_code(
                                    user.id,
                                    &crate::auth::mfa::recovery_hash(r.expose()),
                                )
                                .await?
                    }
                    (None, None) => false,
                }
            }
        };
        if !proved {
            audit!("password.reset_failure", reason = "mfa_code_invalid", user_id = user.id, client_ip = %ip);
            return Err(Error::new(
                ErrorCode::MfaCodeInvalid,
                "the code is wrong, expired or already used",
            ));
        }
    }
    let hash = app.hasher.hash(&body.new_password).await?;
    let notice =
        super::email::notice_for(&app, &user, &crate::email::SecurityNotice::PasswordChanged);
    if resets.redeem(&token, &hash, &notice).await?.is_none() {
        return Err(invalid());
    }
    super::email::notice_written(&app, &notice);
    let ended = app.sessions.end_all([user.id]).await?;
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
