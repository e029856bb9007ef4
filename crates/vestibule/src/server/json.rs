//! A `Json` extractor whose rejections leave in Vestibule's error format.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

use crate::error::{Error, ErrorCode};

/// Like `axum::Json`, but a malformed, mistyped, oversized or undeclared body becomes
/// `{"code", "message", "hint"}` with a stable code.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(map_rejection(&rejection)),
        }
    }
}

fn map_rejection(r: &JsonRejection) -> Error {
    match r {
        JsonRejection::JsonSyntaxError(e) => Error::new(
            ErrorCode::MalformedJson,
            format!("the body is not valid JSON: {}", e.body_text()),
        )
        .with_hint("send a JSON object, e.g. {\"username\": \"…\", \"password\": \"…\"}"),
        JsonRejection::JsonDataError(e) => Error::new(ErrorCode::InvalidBody, e.body_text()),
        JsonRejection::MissingJsonContentType(_) => {
            Error::new(ErrorCode::UnsupportedMediaType, "the body must be JSON")
                .with_hint("set Content-Type: application/json")
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Error::new(
            ErrorCode::PayloadTooLarge,
            "the request body is larger than allowed",
        )
        .with_hint("raise limits.body_bytes if this body is legitimate"),
        other => Error::new(
            ErrorCode::MalformedJson,
            format!("the body could not be read: {}", other.body_text()),
        ),
    }
}
