//! Security headers on every response of Vestibule's own router.
//!
//! One layer for the three headers (tower-http's `SetResponseHeaderLayer` takes one layer, one
//! future and one move of the request per header: about 1,000 instructions of a request).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::{HeaderName, HeaderValue, Request, header};
use axum::response::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// Each header is set unless the handler set it already.
const DEFAULTS: [(HeaderName, HeaderValue); 3] = [
    // Answers carry CSRF tokens, bearer tokens and user data that no shared or browser cache
    // may keep; a handler with a cache policy (static files) sets its own.
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    // No URL of ours leaks to another site.
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    // A JSON error is never sniffed into HTML.
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
];

/// `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` and `Cache-Control:
/// no-store`, each unless the handler set it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SecurityHeadersLayer;

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeaders { inner }
    }
}

/// The service of [`SecurityHeadersLayer`].
#[derive(Debug, Clone)]
pub(crate) struct SecurityHeaders<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for SecurityHeaders<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = SecurityHeadersFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        SecurityHeadersFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// The future of [`SecurityHeaders`].
    pub(crate) struct SecurityHeadersFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, E> Future for SecurityHeadersFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut res = ready!(self.project().inner.poll(cx))?;
        let headers = res.headers_mut();
        for (name, value) in DEFAULTS {
            if let header::Entry::Vacant(slot) = headers.entry(name) {
                slot.insert(value);
            }
        }
        Poll::Ready(Ok(res))
    }
}

/// How many headers one of our answers leaves with: its content type, the three above, `vary`
/// (CORS), `x-request-id` and `content-length`.
const ANSWER_HEADERS: usize = 8;

/// A JSON answer whose header map has room, from the start, for every header the layers add on
/// its way out. `axum::Json` starts with http's default (room for six on the first insert) and
/// the seventh regrows the map and rehashes every header: ≈ 900 of the ≈ 50k instructions of an
/// `/auth/me` (callgrind, bench/profile.sh). Used by the answers every page load asks for.
pub(crate) fn json_answer<T: serde::Serialize>(value: &T) -> Response {
    let mut body = Vec::with_capacity(160);
    if let Err(e) = serde_json::to_writer(&mut body, value) {
        return axum::response::IntoResponse::into_response(crate::error::Error::internal(e));
    }
    let mut res = Response::new(axum::body::Body::from(body));
    let mut headers = axum::http::HeaderMap::with_capacity(ANSWER_HEADERS);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    *res.headers_mut() = headers;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_answer_has_room_for_every_header_it_leaves_with() {
        let res = json_answer(&serde_json::json!({"a": 1}));
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        assert!(res.headers().capacity() >= ANSWER_HEADERS);
    }
}
