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
