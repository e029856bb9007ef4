//! The caller's sessions: list them, end one, end them all.

use crate::server::openapi::StoreErrors;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{logged_out, rfc3339};
use crate::auth::AccountUser;
use crate::auth::reauth::require_recent;
use crate::error::{Error, ErrorCode, Result};
use crate::server::AppState;
use crate::server::openapi::ErrorBody;
use crate::session::Session;
use crate::token::TokenHash;

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
        StoreErrors,
        (status = 200, description = "The sessions", body = SessionList),
        (status = 401, description = "`not_authenticated`, `session_expired` or `invalid_token` (a bad bearer token)", body = ErrorBody),
        (status = 403, description = "`session_required`: access tokens cannot list sessions", body = ErrorBody),
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
            user_agent: r.user_agent.as_deref().map(str::to_owned),
            browser: r
                .user_agent
                .as_deref()
                .and_then(crate::server::user_agent::label),
            transport: json!(r.user.as_ref().map_or("cookie", |u| u.transport.as_str())),
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
        StoreErrors,
        (status = 204, description = "Ended"),
        (status = 401, description = "`not_authenticated`, `session_expired` or `invalid_token` (a bad bearer token)", body = ErrorBody),
        (status = 403, description = "`reauth_required` (ending another session: `POST /auth/reauth` first), `session_required`, `insufficient_scope`, or a CSRF refusal", body = ErrorBody),
        (status = 404, description = "`session_not_found`: no session with this id belongs to the caller", body = ErrorBody),
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
        app.sessions.end_record(&record).await?;
    }
    audit!("session.revoke", reason = "by_owner", user_id = user.id);
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session of the caller, this one included.
#[utoipa::path(
    post,
    path = "/auth/logout-all",
    tag = "auth",
    responses(
        StoreErrors,
        (status = 204, description = "Logged out everywhere; `Clear-Site-Data: \"cookies\"` for a cookie session unless `session.clear_site_data = false`"),
        (status = 401, description = "`not_authenticated`, `session_expired` or `invalid_token` (a bad bearer token)", body = ErrorBody),
        (status = 403, description = "`reauth_required` (`POST /auth/reauth` first), `session_required`, `insufficient_scope`, or a CSRF refusal", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_logout_all(
    State(app): State<AppState>,
    session: Session,
    user: AccountUser,
) -> Result<Response> {
    require_recent(&session, app.reauth_window).await?;
    let ended = app.sessions.end_all([user.id]).await?;
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
