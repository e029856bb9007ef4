//! Personal access tokens: create (the secret shown once), list, revoke.

use crate::server::openapi::StoreErrors;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{refuse_control_chars, rfc3339};
use crate::auth::reauth::require_recent;
use crate::auth::{AccessToken, AccountUser, Scope};
use crate::error::{Error, ErrorCode, Result};
use crate::server::AppState;
use crate::server::json::Json;
use crate::server::openapi::ErrorBody;
use crate::session::Session;

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
        StoreErrors,
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
        StoreErrors,
        (status = 200, description = "The tokens", body = TokenList),
        (status = 401, description = "`not_authenticated`, `session_expired` or `invalid_token` (a bad bearer token)", body = ErrorBody),
        (status = 403, description = "`session_required`: access tokens cannot list tokens", body = ErrorBody),
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
        StoreErrors,
        (status = 204, description = "Revoked"),
        (status = 401, description = "`not_authenticated`, `session_expired` or `invalid_token` (a bad bearer token)", body = ErrorBody),
        (status = 403, description = "`session_required`, `insufficient_scope`, or a CSRF refusal", body = ErrorBody),
        (status = 404, description = "`token_not_found`: no access token with this id belongs to the caller", body = ErrorBody),
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
