//! The front of every request to Vestibule's own router, in one service and one future: the
//! request id and span, the size limits (414 / 431), the body clock (408), metrics, the security
//! headers and the response log.
//!
//! Why one service and not a layer each: the order of these jobs matters (a refusal by a limit
//! still gets its request id, metrics and headers; metrics see the 408 that replaces a slow
//! body's answer), and here it is written once, in `call` and `poll`. Each job stays in its own
//! module (`limits`, `headers`, `metrics`); this file only runs them in order. It is not much
//! faster: with fat LTO the five layers were already mostly inlined, and fusing them took
//! `/auth/me` from 48,744 to 48,184 instructions (callgrind) with no wall-clock change beyond the
//! noise (bench/RESULTS.md, issue 20).
//!
//! Request ids: every request gets an `x-request-id` (the client's, when it sent a sane one)
//! that goes into the request's extensions, the log span and the response headers.
//! tower-http's `TraceLayer` reads the clock about eight times per request even when every log
//! line is filtered out; on a VM whose clock reads are system calls that showed as several
//! percent of a request. Here the span exists only when INFO is enabled, and the clock is read
//! once, only when metrics are on or the DEBUG per-response line will be written.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tower_http::request_id::RequestId;
use tracing::{Instrument, Level, Span};

use super::headers::set_security_headers;
use super::limits::{BodyClock, RequestLimits, too_slow};
use crate::metrics::Metrics;

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

/// What the front does, from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct FrontLayer {
    pub(crate) limits: RequestLimits,
    pub(crate) body: BodyClock,
    /// `None`: metrics off.
    pub(crate) metrics: Option<Arc<Metrics>>,
}

impl<S> Layer<S> for FrontLayer {
    type Service = Front<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Front {
            inner,
            front: self.clone(),
        }
    }
}

/// The service of [`FrontLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Front<S> {
    inner: S,
    front: FrontLayer,
}

impl<S> Service<Request> for Front<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = FrontFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let id = match req.headers().get(&X_REQUEST_ID) {
            Some(v) if usable_client_id(v) => v.clone(),
            _ => new_request_id(),
        };
        req.extensions_mut().insert(RequestId::new(id.clone()));
        let debug = tracing::enabled!(Level::DEBUG);
        let start = (debug || self.front.metrics.is_some()).then(Instant::now);
        let metrics = self.front.metrics.as_ref().map(|m| {
            // The router has matched already: the front runs inside it (`Router::layer`).
            let matched = req.extensions().get::<MatchedPath>().cloned();
            (m.clone(), req.method().clone(), matched)
        });
        let version = req.version();
        let span = tracing::info_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            request_id = tracing::field::Empty,
        );
        if !span.is_disabled() {
            span.record("request_id", id.to_str().unwrap_or(""));
        }
        let mut too_slow_flag = None;
        let inner = match self.front.limits.check(&req) {
            Some(refusal) => Inner::Answered {
                res: Some(refusal.into_response()),
            },
            None => {
                let (req, flag) = self.front.body.time(req);
                too_slow_flag = flag;
                if span.is_disabled() {
                    Inner::Plain {
                        fut: self.inner.call(req),
                    }
                } else {
                    let fut = {
                        let _entered = span.enter();
                        self.inner.call(req)
                    };
                    Inner::Spanned {
                        fut: fut.instrument(span),
                    }
                }
            }
        };
        FrontFuture {
            inner,
            id: Some(id),
            start,
            debug,
            metrics,
            too_slow: too_slow_flag,
            version,
        }
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<F> {
        // Refused by a limit before the router saw it.
        Answered { res: Option<Response> },
        Plain { #[pin] fut: F },
        Spanned { #[pin] fut: tracing::instrument::Instrumented<F> },
    }
}

pin_project! {
    /// The future of [`Front`].
    pub(crate) struct FrontFuture<F> {
        #[pin]
        inner: Inner<F>,
        id: Option<HeaderValue>,
        start: Option<Instant>,
        debug: bool,
        metrics: Option<(Arc<Metrics>, Method, Option<MatchedPath>)>,
        too_slow: Option<Arc<AtomicBool>>,
        version: http::Version,
    }
}

impl<F, E> Future for FrontFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (res, span) = match this.inner.project() {
            InnerProj::Answered { res } => match res.take() {
                Some(res) => (Ok(res), None),
                // Polled again after it was ready: a caller's bug, answered rather than panicking.
                None => (
                    Ok(axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()),
                    None,
                ),
            },
            InnerProj::Plain { fut } => (ready!(fut.poll(cx)), None),
            InnerProj::Spanned { fut } => {
                let span: Span = fut.span().clone();
                (ready!(fut.poll(cx)), Some(span))
            }
        };
        let mut res = res?;
        if this
            .too_slow
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Acquire))
        {
            res = too_slow(*this.version);
        }
        if let (Some((metrics, method, matched)), Some(start)) =
            (this.metrics.as_ref(), *this.start)
        {
            metrics.record(&res, method, matched.as_ref(), start);
        }
        set_security_headers(res.headers_mut());
        if let (true, Some(start), Some(span)) = (*this.debug, *this.start, span) {
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
