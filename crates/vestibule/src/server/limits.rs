//! Per-request size limits with our JSON errors: URI length (414) and the header block's size
//! and count (431). hyper enforces larger hard caps below these (see `listener`), which answer
//! without a body; these configurable ones explain themselves.

use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready, ready};
use tower::{Layer, Service};

use crate::error::{Error, ErrorCode};

/// The limits, from `[limits]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestLimitsLayer {
    pub(crate) uri_bytes: usize,
    pub(crate) header_bytes: usize,
    pub(crate) headers: usize,
}

impl RequestLimitsLayer {
    fn check<B>(&self, req: &Request<B>) -> Option<Error> {
        let uri = req.uri();
        let uri_len = uri.path_and_query().map_or(0, |p| p.as_str().len())
            + uri.authority().map_or(0, |a| a.as_str().len());
        if uri_len > self.uri_bytes {
            return Some(
                Error::new(
                    ErrorCode::UriTooLong,
                    format!(
                        "the request URI has {uri_len} bytes; at most {} are accepted",
                        self.uri_bytes
                    ),
                )
                .with_hint("send large data in the body; the limit is limits.uri_bytes"),
            );
        }
        let headers = req.headers();
        if headers.len() > self.headers {
            return Some(
                Error::new(
                    ErrorCode::HeadersTooLarge,
                    format!(
                        "the request has {} headers; at most {} are accepted",
                        headers.len(),
                        self.headers
                    ),
                )
                .with_hint("the limit is limits.max_headers"),
            );
        }
        // As on the wire: "name: value\r\n".
        let bytes: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if bytes > self.header_bytes {
            return Some(
                Error::new(
                    ErrorCode::HeadersTooLarge,
                    format!("the request headers take {bytes} bytes; at most {} are accepted", self.header_bytes),
                )
                .with_hint(
                    "often a pile of stale cookies for this host: clear them; the limit is limits.header_bytes",
                ),
            );
        }
        None
    }
}

impl<S> Layer<S> for RequestLimitsLayer {
    type Service = RequestLimits<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLimits {
            inner,
            limits: *self,
        }
    }
}

/// The service of [`RequestLimitsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct RequestLimits<S> {
    inner: S,
    limits: RequestLimitsLayer,
}

impl<S, B> Service<Request<B>> for RequestLimits<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.limits.check(&req) {
            Some(err) => Either::Left(ready(Ok(err.into_response()))),
            None => Either::Right(self.inner.call(req)),
        }
    }
}
