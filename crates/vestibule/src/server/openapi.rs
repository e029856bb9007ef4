//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! annotations and the body types' `ToSchema` derives, served at `GET /openapi.json` so clients
//! and property-based API tests (schemathesis) read the contract from the running server.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::routes;
use crate::error::ErrorCode;
use crate::session::DEFAULT_COOKIE_NAME;

/// What every route reading a JSON body can answer before its handler runs (`server::Json`'s
/// rejections): written once here, named in each such route's `responses(...)`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // describes answers for the OpenAPI document; never built
pub(crate) enum JsonBodyErrors {
    #[response(
        status = 400,
        description = "`malformed_json`: the body is not valid JSON"
    )]
    Malformed(ErrorBody),
    #[response(
        status = 413,
        description = "`payload_too_large`: the body exceeds `limits.body_bytes`"
    )]
    TooLarge(ErrorBody),
    #[response(
        status = 415,
        description = "`unsupported_media_type`: the body is not declared as `application/json`"
    )]
    NotJson(ErrorBody),
}

/// What every route that reads or writes the session store or the database answers while it is
/// down (written once; routes that can also answer `busy` keep their own, longer 503 row).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // describes answers for the OpenAPI document; never built
pub(crate) enum StoreErrors {
    #[response(
        status = 503,
        description = "`store_unavailable`: the session store or database is down; retry"
    )]
    Unavailable(ErrorBody),
}

/// Every error body: `{"code", "message", "hint"}` (the shape `crate::Error` renders).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// Stable, machine-readable; clients switch on it.
    code: ErrorCode,
    /// For humans.
    message: String,
    /// What the caller can change to fix it, when known (else `null`).
    #[schema(required = true)]
    hint: Option<String>,
}

/// `{"status"}` of `/healthz` (`"ok"`) and `/readyz` (`"ready"`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatusBody {
    status: String,
}

/// The document: every `/auth` route plus the health checks.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vestibule",
        description = "Server-side sessions, login, CSRF and bearer tokens for SPAs. Errors are \
                       `{\"code\", \"message\", \"hint\"}` with a stable `code`."
    ),
    paths(
        routes::auth::post_signup,
        routes::auth::post_login,
        routes::auth::post_logout,
        routes::sessions::post_logout_all,
        routes::auth::get_me,
        routes::auth::get_csrf,
        routes::password::post_password,
        routes::password::post_reauth,
        routes::passkeys::post_reauth_webauthn_start,
        routes::password::post_password_reset,
        routes::sessions::get_sessions,
        routes::sessions::delete_session,
        routes::tokens::get_tokens,
        routes::tokens::post_token,
        routes::tokens::delete_token,
        routes::mfa::post_mfa_totp,
        routes::mfa::post_mfa_recovery,
        routes::mfa::get_mfa,
        routes::mfa::post_recovery_regenerate,
        routes::passkeys::post_mfa_webauthn_start,
        routes::passkeys::post_mfa_webauthn_finish,
        routes::mfa::post_totp_enroll,
        routes::mfa::post_totp_confirm,
        routes::mfa::delete_totp,
        routes::passkeys::get_passkeys,
        routes::passkeys::delete_passkey,
        routes::passkeys::post_passkey_register_start,
        routes::passkeys::post_passkey_register_finish,
        routes::passkeys::post_passkey_login_start,
        routes::passkeys::post_passkey_login_finish,
        routes::health::healthz,
        routes::health::readyz,
        routes::email::post_password_forgot,
        routes::email::post_email_change,
        routes::email::post_email_verify,
        routes::email::post_email_resend,
        routes::email::get_email,
        routes::oidc::get_providers,
        routes::oidc::get_start,
        routes::oidc::get_callback,
        routes::oidc::get_identities,
        routes::oidc::delete_identity,
        routes::oidc_logout::post_backchannel_logout,
        routes::oidc_logout::post_oidc_logout,
        routes::oidc::post_link,
    ),
    components(schemas(ErrorBody, ErrorCode, StatusBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Users, login, sessions, CSRF and access tokens"),
        (name = "health", description = "Liveness and readiness"),
        (name = "mfa", description = "Second factors (TOTP, recovery codes, passkeys) and passwordless passkey login"),
        (name = "oidc", description = "Sign-in through OpenID Connect providers; the provider's tokens stay on the server"),
    )
)]
pub(crate) struct ApiDoc;

/// Adds the three credentials: the session cookie (whose unsafe requests also need the
/// `X-CSRF-Token` header) and `Authorization: Bearer` (session or access token).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                DEFAULT_COOKIE_NAME,
                "The session cookie (the name is `session.cookie.name`; default shown)",
            ))),
        );
        components.add_security_scheme(
            "csrf_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-CSRF-Token",
                "The `csrf_token` from login or GET /auth/csrf; needed on unsafe requests with the cookie",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A session token (login with \"transport\": \"bearer\") or a personal access token",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document, rendered once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot render the OpenAPI document: {e}\"}}"))
});

/// `GET /openapi.json`.
pub(crate) async fn get_openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT.as_str(),
    )
        .into_response()
}
