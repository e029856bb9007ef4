//! What a login answers: the JSON bodies of `POST /auth/login` (and signup, the second-factor
//! routes, passkey login, password change) and the device cookie that goes with a browser login.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::Result;
use crate::session::{Session, UnixTime};
use crate::token::SecretToken;

/// How a login's session travels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LoginTransport {
    /// A session cookie (rotated at login); the body carries the CSRF token.
    #[default]
    Cookie,
    /// A new session whose token is in the body, for `Authorization: Bearer`; no cookie.
    Bearer,
}

/// RFC 3339 for the answers' timestamps (empty for a time no calendar can show).
pub(crate) fn rfc3339(t: UnixTime) -> String {
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

/// The body of `GET /auth/me` and of a cookie login: the user and the session's CSRF token.
pub(crate) async fn user_body(session: &Session, id: i64, username: &str) -> Result<UserBody> {
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

/// What login, signup and password change answer, by transport.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum AuthBody {
    /// The cookie carries the session; the body carries the CSRF token.
    Cookie(UserBody),
    /// The body carries the session token itself.
    Bearer(BearerBody),
}

pub(super) fn bearer_body(
    id: i64,
    username: &str,
    token: &SecretToken,
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

/// `{"mfa_required": true, "methods", "expires_at", "csrf_token" | "token"}`: the answer of a
/// correct password when a second factor is due.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MfaRequiredBody {
    /// Always `true`.
    pub(super) mfa_required: bool,
    /// What completes the login: `"totp"` (`POST /auth/mfa/totp`), `"webauthn"`
    /// (`POST /auth/mfa/webauthn/start` then `/finish`), `"recovery"` (`POST /auth/mfa/recovery`).
    pub(super) methods: Vec<String>,
    /// When the pending state ends (5 minutes).
    #[schema(format = DateTime)]
    pub(super) expires_at: String,
    /// Cookie transport: the CSRF token of the pending session, for the `/auth/mfa/*` calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) csrf_token: Option<String>,
    /// Bearer transport: a pending token that only the `/auth/mfa/*` routes accept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) token: Option<String>,
}

/// A user logged in: the answer Vestibule's own routes give (200 with the CSRF token for the
/// cookie transport, or the new session token for the bearer transport) and, for a browser, the
/// device cookie that gives the account owner a login budget of their own.
#[derive(Debug)]
#[must_use = "the answer carries the session token or the CSRF token, and the device cookie"]
pub struct LoggedIn {
    pub(super) user_id: i64,
    pub(super) body: AuthBody,
    pub(super) device_cookie: Option<HeaderValue>,
}

impl LoggedIn {
    /// The device-recognition cookie to set (a cookie login), for an answer other than the
    /// JSON one (the OpenID callback's redirect).
    pub fn take_device_cookie(&mut self) -> Option<HeaderValue> {
        self.device_cookie.take()
    }

    /// The user now logged in.
    pub fn user_id(&self) -> i64 {
        self.user_id
    }

    /// The new session token, when it travels in the body (the bearer transport).
    pub fn bearer_token(&self) -> Option<&str> {
        match &self.body {
            AuthBody::Bearer(b) => Some(&b.token),
            AuthBody::Cookie(_) => None,
        }
    }

    /// The masked CSRF token of the new cookie session (for `X-CSRF-Token`).
    pub fn csrf_token(&self) -> Option<&str> {
        match &self.body {
            AuthBody::Cookie(b) => b.csrf_token.as_deref(),
            AuthBody::Bearer(_) => None,
        }
    }

    /// The JSON body alone (the device cookie is dropped).
    pub(crate) fn into_body(self) -> AuthBody {
        self.body
    }
}

impl IntoResponse for LoggedIn {
    fn into_response(self) -> Response {
        let mut res = axum::Json(self.body).into_response();
        if let Some(v) = self.device_cookie {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
        res
    }
}

/// The password was right and the account has a second factor: nobody is logged in yet. The
/// session holds a pending state (or, for the bearer transport, a pending token is in the body)
/// that only the second-factor routes (`/auth/mfa/*`) accept.
#[derive(Debug)]
#[must_use = "the answer carries the pending session's CSRF token or its token"]
pub struct SecondFactorDue {
    pub(super) body: MfaRequiredBody,
}

impl SecondFactorDue {
    /// What completes the login: `"totp"`, `"webauthn"`, `"recovery"`.
    pub fn methods(&self) -> &[String] {
        &self.body.methods
    }
}

impl IntoResponse for SecondFactorDue {
    fn into_response(self) -> Response {
        axum::Json(self.body).into_response()
    }
}

/// Where a login stands after the first factor.
#[derive(Debug)]
#[must_use = "the answer carries the session's token or CSRF token"]
pub enum LoginStep {
    /// Logged in.
    LoggedIn(LoggedIn),
    /// A second factor is due.
    SecondFactorDue(SecondFactorDue),
}

impl IntoResponse for LoginStep {
    fn into_response(self) -> Response {
        match self {
            Self::LoggedIn(l) => l.into_response(),
            Self::SecondFactorDue(s) => s.into_response(),
        }
    }
}
