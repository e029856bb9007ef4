//! Kept-alive HTTP/1.1 connections to one upstream.
//!
//! hyper-util's general-purpose client costs about a fifth of a proxied request here (callgrind:
//! a SipHash-keyed pool map probed several times per request, a connector future built per
//! request even on a pool hit, a task spawned per response to wait for the connection to be
//! ready again). A gateway talks to one fixed `http://host:port` per upstream, so its pool is a
//! LIFO stack of hyper `SendRequest`s:
//!
//! - a connection goes back on the stack only when its response body has been read to the end
//!   ([`Returning`]); a response still streaming, an upgraded (101) connection or a body dropped
//!   half-way never block another request, and a half-read connection is closed, not reused;
//! - a connection that carried an upgrade request (`Upgrade`) is never reused, whatever the
//!   answer: after a 101 it belongs to the tunnel, and after any other status the upstream's
//!   idea of where the next request starts is not worth trusting (an upstream that answered
//!   before reading a body it then drains would read the next request as that body);
//! - checkout takes the most recent connection that is ready: one still busy (writing a stalled
//!   upload the upstream already answered) waits on the stack instead of holding a request up;
//! - a connection closed by the upstream while idle is noticed at checkout (`is_closed`, or the
//!   request handed back unsent by `try_send_request`) and the request goes to the next one;
//! - idle connections are closed after `IDLE_TIMEOUT` by a reaper task that ends with the pool,
//!   and at most `MAX_IDLE` are kept.

use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long a connection may sit unused before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per upstream; more are closed when their response ends.
const MAX_IDLE: usize = 256;

/// Why a request did not get a response from the upstream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    /// No connection within the connect timeout.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The TCP connect failed (refused, unreachable, name not resolved).
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    /// The HTTP exchange failed (connection reset, malformed response, …).
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// The connections to one upstream.
pub(crate) struct Pool {
    /// `host:port`, for `TcpStream::connect`.
    addr: String,
    connect_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
    reaper: std::sync::Once,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("addr", &self.addr)
            .field("idle", &self.idle.lock().map(|v| v.len()).unwrap_or(0))
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool for `http://{host}:{port}`.
    pub(crate) fn new(host: &str, port: u16, connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            addr: format!("{host}:{port}"),
            connect_timeout,
            idle: Mutex::new(Vec::new()),
            reaper: std::sync::Once::new(),
        })
    }

    /// Sends `req` (origin-form URI, `Host` set) on an idle connection, or a new one, and answers
    /// the response with a body that gives the connection back when it has been read.
    ///
    /// Dropping the returned future closes the connection it was using (hyper cannot abandon
    /// half an HTTP/1 exchange); the response timeout relies on that.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, PoolError> {
        // See the module documentation: an upgrade's connection never comes back.
        let reusable = !req.headers().contains_key(axum::http::header::UPGRADE);
        loop {
            let (mut sender, pooled) = match self.checkout() {
                Some(s) => (s, true),
                None => {
                    let mut fresh = self.connect().await?;
                    fresh.ready().await?;
                    (fresh, false)
                }
            };
            match sender.try_send_request(req).await {
                Ok(res) if reusable => return Ok(self.wrap(res, sender)),
                // Dropping the sender closes the connection once this exchange is over.
                Ok(res) => return Ok(res.map(Body::new)),
                Err(mut e) => match e.take_message() {
                    // Never written: the connection died between checkout and send. A pooled
                    // connection may do that (the upstream's keep-alive ran out); try another.
                    Some(back) if pooled => req = back,
                    _ => return Err(PoolError::Http(e.into_error())),
                },
            }
        }
    }

    /// The most recently used connection that is ready for a request. One that is not ready yet
    /// (its connection task is still writing the previous request's body, say a stalled upload
    /// the upstream answered early) stays for later instead of holding this request up; closed
    /// and expired ones go.
    fn checkout(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().ok()?;
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            if idle[i].sender.is_closed() {
                idle.remove(i);
            } else if idle[i].sender.is_ready() {
                let c = idle.remove(i);
                if c.since.elapsed() < IDLE_TIMEOUT {
                    return Some(c.sender);
                }
            }
        }
        None
    }

    fn checkin(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    async fn connect(self: &Arc<Self>) -> Result<SendRequest<Body>, PoolError> {
        self.start_reaper();
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| PoolError::ConnectTimeout(self.connect_timeout))?
            .map_err(PoolError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            // Upstream resets and closes end here; the request that saw them reports them.
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    fn wrap(
        self: &Arc<Self>,
        res: Response<Incoming>,
        sender: SendRequest<Body>,
    ) -> Response<Body> {
        // A 101 hands the connection over to the upgrade; it never comes back.
        if res.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
            return res.map(Body::new);
        }
        if res.body().is_end_stream() {
            self.checkin(sender);
            return res.map(Body::new);
        }
        let pool = Arc::clone(self);
        res.map(|body| {
            Body::new(Returning {
                body,
                back: Some((pool, sender)),
            })
        })
    }

    /// Starts (once) the task that closes connections idle for longer than `IDLE_TIMEOUT`; it
    /// holds the pool weakly and ends when the pool is dropped.
    fn start_reaper(self: &Arc<Self>) {
        self.reaper.call_once(|| {
            let weak: Weak<Self> = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(IDLE_TIMEOUT / 2);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(pool) = weak.upgrade() else { return };
                    if let Ok(mut idle) = pool.idle.lock() {
                        idle.retain(|c| !c.sender.is_closed() && c.since.elapsed() < IDLE_TIMEOUT);
                    }
                }
            });
        });
    }
}

/// A response body that returns its connection to the pool once read to the end.
struct Returning {
    body: Incoming,
    back: Option<(Arc<Pool>, SendRequest<Body>)>,
}

impl HttpBody for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.give_back(),
            // An error: the connection is not reusable; dropping the sender lets it close.
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Returning {
    fn give_back(&mut self) {
        if let Some((pool, sender)) = self.back.take() {
            pool.checkin(sender);
        }
    }
}
