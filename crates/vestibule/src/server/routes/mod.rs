//! Vestibule's HTTP API by area: `auth` (signup, login, logout, me, CSRF), `password` (change,
//! re-authentication, reset), `sessions`, `tokens` (personal access tokens), `mfa` (the pending
//! second-factor login, TOTP, recovery codes), `passkeys` (registration, passkeys as a second
//! factor, passwordless login) over the ceremony helpers of `webauthn`, `health`, and the demo
//! page's `counter`. This file holds the bodies and checks several areas share.

pub(super) mod auth;
pub(super) mod counter;
pub(super) mod email;
pub(super) mod health;
pub(super) mod mfa;
pub(super) mod oidc;
pub(super) mod oidc_logout;
pub(super) mod passkeys;
pub(super) mod password;
pub(super) mod sessions;
pub(super) mod tokens;
mod webauthn;

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
pub(crate) use crate::auth::login::{AuthBody, UserBody, refuse_dead_bearer, rfc3339, user_body};
use crate::auth::{LoginTransport, Password};
use crate::error::{Error, ErrorCode, Result};
use crate::session::{Session, Transport};

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

/// What `POST /auth/login` answers: a login, or the second factor it waits for.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Only the OpenAPI document names it: the handler answers either body.
pub(crate) enum LoginAnswer {
    /// Logged in.
    Done(AuthBody),
    /// The password was right; a second factor is due.
    MfaRequired(crate::auth::login::MfaRequiredBody),
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

pub(crate) async fn not_found() -> Error {
    Error::new(ErrorCode::NotFound, "no such route")
}

pub(crate) async fn method_not_allowed() -> Error {
    Error::new(
        ErrorCode::MethodNotAllowed,
        "this route does not accept this method",
    )
}
