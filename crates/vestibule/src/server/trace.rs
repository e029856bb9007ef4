//! Request ids, request spans and response logs, paying for logs only when the level asks.
//!
//! Every request gets an `x-request-id` (the client's, when it sent a sane one) that goes into
//! the request's extensions, the log span and the response headers.
//!
//! tower-http's `TraceLayer` reads the clock about eight times per request (start, latency,
//! per body frame, end of stream) even when every log line is filtered out, and its request-id
//! layers add and look up headers twice; on a VM whose clock reads are system calls that showed
//! as several percent of a request in profiles. This layer creates the span only when INFO is
//! enabled and reads the clock only when the DEBUG per-response line will be written.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::http::{HeaderName, HeaderValue, Request};
use axum::response::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tower_http::request_id::RequestId;
use tracing::{Instrument, Level, Span};

/// The request id header, on requests and responses.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A client-sent id is kept only if it is short visible ASCII (it lands in logs).
fn usable_client_id(v: &HeaderValue) -> bool {
    (1..=64).contains(&v.len()) && v.as_bytes().iter().all(u8::is_ascii_graphic)
}

/// 16 hex characters from the thread-local CSPRNG.
fn new_request_id() -> HeaderValue {
    let mut bytes = [0u8; 8];
    crate::token::fill_fast_random(&mut bytes);
    let mut hex = [0u8; 16];
    let text = crate::token::hex_into(&bytes, &mut hex);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Gives each request an id, wraps it in a `request` span (method, path — never the query —
/// and the id), logs each response's status and latency at DEBUG, and returns the id in the
/// response's `x-request-id`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RequestTraceLayer;

impl<S> Layer<S> for RequestTraceLayer {
    type Service = RequestTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTrace { inner }
    }
}

/// The service made by [`RequestTraceLayer`].
#[derive(Debug, Clone)]
pub(crate) struct RequestTrace<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for RequestTrace<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = TraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = match req.headers().get(&X_REQUEST_ID) {
            Some(v) if usable_client_id(v) => v.clone(),
            _ => new_request_id(),
        };
        req.extensions_mut().insert(RequestId::new(id.clone()));
        let span = tracing::info_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            request_id = tracing::field::Empty,
        );
        let inner = if span.is_disabled() {
            Traced::Plain {
                fut: self.inner.call(req),
            }
        } else {
            span.record("request_id", id.to_str().unwrap_or(""));
            let fut = {
                let _entered = span.enter();
                self.inner.call(req)
            };
            Traced::Spanned {
                fut: fut.instrument(span),
            }
        };
        TraceFuture {
            inner,
            start: tracing::enabled!(Level::DEBUG).then(Instant::now),
            id: Some(id),
        }
    }
}

pin_project! {
    #[project = TracedProj]
    enum Traced<F> {
        Plain { #[pin] fut: F },
        Spanned { #[pin] fut: tracing::instrument::Instrumented<F> },
    }
}

pin_project! {
    /// The future of [`RequestTrace`].
    pub(crate) struct TraceFuture<F> {
        #[pin]
        inner: Traced<F>,
        start: Option<Instant>,
        id: Option<HeaderValue>,
    }
}

impl<F> Future for TraceFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (mut res, span) = match this.inner.project() {
            TracedProj::Plain { fut } => {
                let Ok(res) = ready!(fut.poll(cx));
                (res, None)
            }
            TracedProj::Spanned { fut } => {
                let span: Span = fut.span().clone();
                let Ok(res) = ready!(fut.poll(cx));
                (res, Some(span))
            }
        };
        if let (Some(start), Some(span)) = (this.start, span) {
            let _entered = span.enter();
            tracing::debug!(
                status = res.status().as_u16(),
                latency_ms = start.elapsed().as_secs_f64() * 1000.0,
                "response"
            );
        }
        if let Some(id) = this.id.take() {
            res.headers_mut().insert(X_REQUEST_ID, id);
        }
        Poll::Ready(Ok(res))
    }
}
