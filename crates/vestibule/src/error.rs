//! The one error type that leaves Vestibule over HTTP: `{"code", "message", "hint"}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Stable, machine-readable error codes. Clients switch on these; the messages are for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// No valid session or credential.
    NotAuthenticated,
    /// The session ended while this request ran (logout elsewhere, revocation).
    SessionExpired,
    /// Wrong username or password (identical for an unknown user).
    InvalidCredentials,
    /// The account is disabled.
    AccountDisabled,
    /// The username is already taken.
    UsernameTaken,
    /// The username has a character or length that is not allowed.
    InvalidUsername,
    /// The new password has fewer characters than `auth.min_password_length` (8 by default).
    PasswordTooShort,
    /// The new password is longer than 1024 bytes.
    PasswordTooLong,
    /// The new password is on the bundled list of common passwords.
    PasswordTooCommon,
    /// The new password contains the username (case-insensitive).
    PasswordContainsUsername,
    /// A sensitive action (password change, access token creation, ending sessions, second
    /// factors) needs a password proved within `auth.reauth_window`: `POST /auth/reauth`.
    ReauthRequired,
    /// The password reset token is malformed, unknown, expired, already used, or its account
    /// is disabled.
    ResetTokenInvalid,
    /// Too many password hashes are running: the server is at its memory budget; retry after
    /// `Retry-After`.
    Busy,
    /// Signup is turned off in the configuration.
    SignupDisabled,
    /// An unsafe request from an origin that is neither this server nor a trusted origin.
    CsrfOriginUntrusted,
    /// A cookie-authenticated unsafe request without `X-CSRF-Token`.
    CsrfTokenMissing,
    /// The `X-CSRF-Token` does not belong to this session.
    CsrfTokenMismatch,
    /// The body is not valid JSON.
    MalformedJson,
    /// The JSON is valid but does not have the expected fields or types.
    InvalidBody,
    /// The body is not declared as `application/json`.
    UnsupportedMediaType,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// No such route.
    NotFound,
    /// The route exists but not for this method.
    MethodNotAllowed,
    /// No session with this id belongs to the user.
    SessionNotFound,
    /// The session store or database is unreachable; retry later.
    StoreUnavailable,
    /// A bug or an unexpected failure on the server side.
    Internal,
    /// The bearer token is malformed, unknown, expired or revoked (RFC 6750 `invalid_token`).
    InvalidToken,
    /// The access token lacks the scope this request needs (RFC 6750 `insufficient_scope`).
    InsufficientScope,
    /// The request is authenticated by an access token, which has no session to store data in.
    SessionUnavailable,
    /// Managing access tokens needs a session (cookie or session bearer token), not an access token.
    SessionRequired,
    /// No access token with this id belongs to the user.
    TokenNotFound,
    /// The user has as many access tokens as allowed.
    TokenLimitReached,
    /// A CORS preflight from an origin the policy does not allow.
    CorsOriginRefused,
    /// A CORS preflight asking for a method or header the policy does not allow.
    CorsPreflightRefused,
    /// Too many attempts (login, signup, password change, token creation): wait `Retry-After`.
    RateLimited,
    /// The request URI is longer than `limits.uri_bytes`.
    UriTooLong,
    /// The request headers exceed `limits.header_bytes` or `limits.max_headers`.
    HeadersTooLarge,
    /// The request body arrived too slowly (`limits.body_read_timeout`, `limits.body_min_rate`);
    /// the connection is closed.
    RequestTimeout,
    /// A proxied upstream (API backend, frontend dev server) refused or dropped the connection.
    UpstreamUnavailable,
    /// A proxied upstream did not send its response headers in time.
    UpstreamTimeout,
    /// A WebSocket handshake through the proxy from an origin the origins policy does not trust.
    WebsocketOriginRefused,
    /// A WebSocket handshake through the proxy that announced a body (`Content-Length`,
    /// `Transfer-Encoding`): refused, because its framing could desynchronise the upstream.
    UpgradeWithBody,
    /// A path with dot-segments or encoded slashes, which a backend could resolve to another
    /// prefix than the one the gateway authorised.
    InvalidPath,
    /// The session no longer fits in a cookie (`session.store = "cookie"`, ~4 KB): the write was
    /// refused rather than a `Set-Cookie` the browser would silently drop.
    SessionTooLarge,
    /// A bearer session token was asked for, but the cookie session store cannot issue one.
    BearerNotSupported,
    /// A wrong, expired or already used second-factor code (TOTP or recovery code).
    MfaCodeInvalid,
    /// No login is waiting for a second factor in this session (none, or it expired).
    MfaNotPending,
    /// The user has this second factor already (remove it before enrolling again).
    MfaAlreadyEnabled,
    /// The user has no such second factor (or no enrolment is waiting for confirmation).
    MfaNotEnabled,
    /// The action needs a second factor and the user has none (recovery codes recover one).
    MfaFactorRequired,
    /// Passkeys are off on this server (its public URL has no domain name).
    PasskeysUnavailable,
    /// A WebAuthn ceremony failed: no challenge pending, or the authenticator's answer did not verify.
    WebauthnFailed,
    /// Managing second factors on an account that has one needs a re-authentication that proved
    /// a second factor too (`POST /auth/reauth` with `code`, `recovery_code` or a passkey), not
    /// the password alone.
    MfaReauthRequired,
    /// A string field holds characters the server does not accept there (a NUL byte anywhere,
    /// control characters in a name): refused before any storage sees it.
    InvalidCharacters,
    /// The email address is already used by another account (case-insensitively).
    EmailTaken,
    /// The email address is not one this server accepts (ASCII `local@domain`, at most 254
    /// characters).
    InvalidEmail,
    /// `auth.require_email` is on and the signup gave no `email`.
    EmailRequired,
    /// `auth.require_verified_email` is on and this account's address is not verified yet:
    /// follow the link sent to it (`POST /auth/email/verify`).
    EmailUnverified,
    /// The verification token is malformed, unknown, expired or already used.
    VerificationTokenInvalid,
    /// The account has a second factor: a password reset must prove it too (`code` or
    /// `recovery_code`) before the new password takes effect.
    SecondFactorRequired,
    /// No OpenID provider of this name is configured (`[[oidc.provider]]`).
    OidcProviderUnknown,
    /// `return_to` is neither on this server's origin nor an allowed SPA origin.
    OidcReturnToRefused,
    /// The OpenID callback's `state` does not match a login started in this session (none,
    /// another one, already completed or expired).
    OidcStateMismatch,
    /// The authorization response or ID token names another issuer than the provider's (mix-up).
    OidcIssuerMismatch,
    /// The provider answered an error instead of a code (the user declined, …).
    OidcProviderError,
    /// The provider refused the authorization code (used, another client's, wrong PKCE verifier).
    OidcCodeRejected,
    /// The ID token does not verify: signature, algorithm (`none`, an HMAC not configured),
    /// audience, or a missing token.
    OidcIdTokenInvalid,
    /// The ID token's nonce is not this login's (a replayed token).
    OidcNonceMismatch,
    /// The ID token has expired.
    OidcIdTokenExpired,
    /// The OpenID provider did not answer (discovery, keys, token endpoint); retry later.
    OidcProviderUnavailable,
    /// The provider's token endpoint refused this server's client authentication
    /// (`invalid_client`: a wrong client secret or key, or a `client_auth` method the client is
    /// not registered for). The operator's configuration, not the user's doing: a session that
    /// was relaying the provider's tokens is kept.
    OidcClientRejected,
    /// Unlinking this identity would leave the account without any way to log in.
    OidcLastLogin,
    /// A back-channel logout token does not verify (signature, algorithm, issuer, audience,
    /// `iat`, event, `nonce`, `sid`/`sub`) or was received before (`jti`).
    OidcLogoutTokenInvalid,
    /// The identity a logged-in user tried to link belongs to another account.
    OidcIdentityTaken,
}

impl ErrorCode {
    /// The HTTP status that goes with the code. Exhaustive on purpose: a new code must pick one.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::NotAuthenticated | ErrorCode::SessionExpired => StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ErrorCode::AccountDisabled => StatusCode::FORBIDDEN,
            ErrorCode::UsernameTaken => StatusCode::CONFLICT,
            ErrorCode::InvalidUsername
            | ErrorCode::PasswordTooShort
            | ErrorCode::PasswordTooLong
            | ErrorCode::PasswordTooCommon
            | ErrorCode::PasswordContainsUsername => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::SignupDisabled => StatusCode::FORBIDDEN,
            ErrorCode::CsrfOriginUntrusted
            | ErrorCode::CsrfTokenMissing
            | ErrorCode::CsrfTokenMismatch => StatusCode::FORBIDDEN,
            ErrorCode::MalformedJson => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBody => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::NotFound | ErrorCode::SessionNotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ErrorCode::InsufficientScope | ErrorCode::SessionRequired => StatusCode::FORBIDDEN,
            ErrorCode::SessionUnavailable => StatusCode::BAD_REQUEST,
            ErrorCode::TokenNotFound => StatusCode::NOT_FOUND,
            ErrorCode::TokenLimitReached => StatusCode::CONFLICT,
            ErrorCode::CorsOriginRefused | ErrorCode::CorsPreflightRefused => StatusCode::FORBIDDEN,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::WebsocketOriginRefused => StatusCode::FORBIDDEN,
            ErrorCode::UpgradeWithBody => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidPath => StatusCode::BAD_REQUEST,
            ErrorCode::SessionTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BearerNotSupported => StatusCode::BAD_REQUEST,
            ErrorCode::MfaCodeInvalid | ErrorCode::MfaNotPending | ErrorCode::WebauthnFailed => {
                StatusCode::UNAUTHORIZED
            }
            ErrorCode::MfaAlreadyEnabled | ErrorCode::MfaFactorRequired => StatusCode::CONFLICT,
            ErrorCode::MfaNotEnabled | ErrorCode::PasskeysUnavailable => StatusCode::NOT_FOUND,
            ErrorCode::ReauthRequired | ErrorCode::MfaReauthRequired => StatusCode::FORBIDDEN,
            ErrorCode::InvalidCharacters => StatusCode::BAD_REQUEST,
            ErrorCode::ResetTokenInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::EmailTaken => StatusCode::CONFLICT,
            ErrorCode::InvalidEmail | ErrorCode::EmailRequired => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::EmailUnverified => StatusCode::FORBIDDEN,
            ErrorCode::VerificationTokenInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::SecondFactorRequired => StatusCode::UNAUTHORIZED,
            ErrorCode::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::OidcProviderUnknown => StatusCode::NOT_FOUND,
            ErrorCode::OidcReturnToRefused
            | ErrorCode::OidcStateMismatch
            | ErrorCode::OidcIssuerMismatch => StatusCode::BAD_REQUEST,
            ErrorCode::OidcProviderError
            | ErrorCode::OidcCodeRejected
            | ErrorCode::OidcIdTokenInvalid
            | ErrorCode::OidcNonceMismatch
            | ErrorCode::OidcIdTokenExpired => StatusCode::UNAUTHORIZED,
            ErrorCode::OidcProviderUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::OidcClientRejected => StatusCode::BAD_GATEWAY,
            ErrorCode::OidcLastLogin => StatusCode::CONFLICT,
            ErrorCode::OidcLogoutTokenInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::OidcIdentityTaken => StatusCode::CONFLICT,
        }
    }
}

/// An error answered to the client. Internal causes are logged, never sent.
#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Error {
    code: ErrorCode,
    message: String,
    hint: Option<String>,
    retry_after: Option<u64>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Serialize)]
struct Body<'a> {
    code: ErrorCode,
    message: &'a str,
    hint: Option<&'a str>,
}

impl Error {
    /// An error with a code and a human message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
            retry_after: None,
            source: None,
        }
    }

    /// Adds what the caller can change to fix it (a config key, a client option).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds `Retry-After: secs` to the response (429 and 503 answers).
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Keeps the internal cause for the log.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The human message, as the API answers it (`message`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What the caller can change, as the API answers it (`hint`).
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// A failure of ours, details logged only.
    pub fn internal(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(
            ErrorCode::Internal,
            "internal error; the server log has the details",
        )
        .with_source(source)
    }

    /// 401 `invalid_token` for a bearer token that is malformed, unknown, expired or revoked.
    pub fn invalid_token(why: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidToken, why).with_hint(
            "log in again (POST /auth/login with \"transport\": \"bearer\") or create a new access token",
        )
    }

    /// 401 for a request without a valid credential.
    pub fn not_authenticated() -> Self {
        Self::new(ErrorCode::NotAuthenticated, "authentication required").with_hint(
            "log in with POST /auth/login; a cross-origin SPA must send credentials: 'include'",
        )
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.code.status();
        if self.code == ErrorCode::Busy {
            // Load shedding working as configured, not a failure: one line, below error level.
            tracing::warn!(code = ?self.code, "request shed: password hashing at capacity");
        } else if status.is_server_error() {
            match &self.source {
                Some(src) => {
                    tracing::error!(code = ?self.code, error = %src, source = ?src.source(), "request failed")
                }
                None => tracing::error!(code = ?self.code, "request failed"),
            }
        }
        let body = Body {
            code: self.code,
            message: &self.message,
            hint: self.hint.as_deref(),
        };
        let mut res = (status, axum::Json(body)).into_response();
        // RFC 6750 §3: every 401, and a 403 for a missing scope, names the scheme and the error.
        let challenge = match self.code {
            ErrorCode::InvalidToken => Some("Bearer realm=\"vestibule\", error=\"invalid_token\""),
            ErrorCode::InsufficientScope => {
                Some("Bearer realm=\"vestibule\", error=\"insufficient_scope\", scope=\"write\"")
            }
            _ if status == StatusCode::UNAUTHORIZED => Some("Bearer realm=\"vestibule\""),
            _ => None,
        };
        if let Some(c) = challenge {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}
