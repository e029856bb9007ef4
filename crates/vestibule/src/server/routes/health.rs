//! Liveness and readiness.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::{Error, ErrorCode};
use crate::server::AppState;
use crate::server::openapi::{ErrorBody, StatusBody};

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
