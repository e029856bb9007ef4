//! Per-request limits with our JSON errors: URI length (414), the header block's size and count
//! (431), and how slowly a body may arrive (408, [`BodyClock`]). hyper enforces larger
//! hard caps below the size limits (see `listener`), which answer without a body; these
//! configurable ones explain themselves.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use hyper::body::{Body as _, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::error::{Error, ErrorCode};

/// The size limits, from `[limits]`, checked by the front service (`front.rs`) before anything
/// parses the request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestLimits {
    pub(crate) uri_bytes: usize,
    pub(crate) header_bytes: usize,
    pub(crate) headers: usize,
}

impl RequestLimits {
    /// The refusal for a request over a limit, or `None`.
    pub(crate) fn check<B>(&self, req: &Request<B>) -> Option<Error> {
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

/// How slowly a request body may arrive (`limits.body_read_timeout`, `limits.body_min_rate`).
///
/// hyper's `header_read_timeout` ends at the blank line after the headers: a client that then
/// sends its body one byte every few seconds would hold its connection (and, through the
/// gateway, an upstream connection) for as long as it likes. So the body gets a clock too, in
/// the spirit of nginx's `client_body_timeout` (the longest wait between two reads) and Apache's
/// `mod_reqtimeout` `MinRate` (a slow trickle is cut even if no single gap is long): the time
/// spent *waiting for the client* may not exceed `timeout + received / min_rate`, and no single
/// wait may exceed `timeout`. Only waiting while the body is polled counts: a handler or an
/// upstream that reads late costs the client nothing.
///
/// The timeout is a body error, so everything reading the body sees it the same way: an
/// extractor refuses, the gateway aborts the upstream request (hyper then closes that upstream
/// connection: a half-sent body never goes back to the pool). The front service replaces whatever
/// the reader answered with 408 `request_timeout` ([`too_slow`]), and hyper closes the client connection because
/// the body was not read to its end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyClock {
    pub(crate) timeout: Duration,
    /// Bytes per second; 0 turns the rate rule off (only the per-wait timeout).
    pub(crate) min_rate: u64,
}

impl BodyClock {
    /// Puts the request's body under the clock; the flag says, once the answer is ready, whether
    /// the body ran out of time. Most requests have no body: nothing to time, nothing allocated.
    pub(crate) fn time(&self, req: Request) -> (Request, Option<Arc<AtomicBool>>) {
        if req.body().is_end_stream() {
            return (req, None);
        }
        let flag = Arc::new(AtomicBool::new(false));
        let req = req.map(|body| {
            Body::new(TimedBody {
                inner: body,
                timeout: self.timeout,
                min_rate: self.min_rate,
                received: 0,
                waited: Duration::ZERO,
                wait_start: None,
                sleep: None,
                timed_out: flag.clone(),
            })
        });
        (req, Some(flag))
    }
}

/// Whatever the reader of a body that ran out of time answered, the client gets this 408.
pub(crate) fn too_slow(version: http::Version) -> Response {
    let mut res = Error::new(
        ErrorCode::RequestTimeout,
        "the request body arrived too slowly",
    )
    .with_hint("the limits are limits.body_read_timeout and limits.body_min_rate")
    .into_response();
    if version < http::Version::HTTP_2 {
        // Said, not only done: hyper closes a connection whose body was not read anyway.
        res.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// A request body that ran out of time (see [`BodyClock`]).
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly")]
pub(crate) struct BodyTooSlow;

pin_project! {
    /// The request body under the clock of [`BodyClock`].
    struct TimedBody {
        #[pin]
        inner: Body,
        timeout: Duration,
        min_rate: u64,
        received: u64,
        // Time spent waiting for the client, over completed waits.
        waited: Duration,
        // When the current wait began (the body was polled and had nothing).
        wait_start: Option<Instant>,
        // Allocated at the first wait only.
        sleep: Option<Pin<Box<Sleep>>>,
        timed_out: Arc<AtomicBool>,
    }
}

impl TimedBody {
    /// The longest the current wait, begun at `start`, may last.
    fn budget(timeout: Duration, min_rate: u64, received: u64, waited: Duration) -> Duration {
        if min_rate == 0 {
            return timeout;
        }
        let earned = Duration::from_millis(received.saturating_mul(1000) / min_rate);
        timeout.min((timeout + earned).saturating_sub(waited))
    }
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if this.timed_out.load(Ordering::Relaxed) {
            // Never an end of stream after a timeout: a reader would take a cut body for whole.
            return Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow))));
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(start) = this.wait_start.take() {
                    *this.waited += start.elapsed();
                }
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                    *this.received += data.map_or(0, |d| d.len() as u64);
                }
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let now = Instant::now();
                let start = *this.wait_start.get_or_insert(now);
                let deadline = start
                    + Self::budget(*this.timeout, *this.min_rate, *this.received, *this.waited);
                let sleep = match this.sleep {
                    Some(s) => {
                        if s.deadline() != deadline.into() {
                            s.as_mut().reset(deadline.into());
                        }
                        s
                    }
                    None => this
                        .sleep
                        .insert(Box::pin(tokio::time::sleep_until(deadline.into()))),
                };
                if now < deadline && sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.timed_out.store(true, Ordering::Release);
                tracing::debug!(
                    received = *this.received,
                    "request body too slow: the request is refused and its connection closed"
                );
                Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::TimedBody;
    use std::time::Duration;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_wait_may_last_the_timeout_at_most_and_the_rate_rule_shortens_it() {
        // Nothing received yet: the whole head start, then what is left of it.
        assert_eq!(TimedBody::budget(15 * S, 1024, 0, Duration::ZERO), 15 * S);
        assert_eq!(TimedBody::budget(15 * S, 1024, 0, 14 * S), S);
        assert_eq!(TimedBody::budget(15 * S, 1024, 0, 20 * S), Duration::ZERO);
        // 10 KiB at 1 KiB/s earned 10 s more waiting; a single wait stays capped.
        assert_eq!(TimedBody::budget(15 * S, 1024, 10 * 1024, 20 * S), 5 * S);
        assert_eq!(TimedBody::budget(15 * S, 1024, 1 << 30, 20 * S), 15 * S);
        // No rate rule: every wait gets the timeout, however long the body took.
        assert_eq!(TimedBody::budget(15 * S, 0, 0, 3600 * S), 15 * S);
    }
}
