//! The accept loop: hyper with the limits an internet-facing server needs and `axum::serve`
//! does not expose: a cap on open connections, a header-read timeout that is also the idle
//! keep-alive timeout (hyper starts it whenever a connection waits for a request; its timer is
//! ours, one per connection, re-armed lazily: `head_timer`), an idle
//! timeout for HTTP/2 connections (hyper has none: a client answering PINGs kept one for ever),
//! stream limits, h2c only when configured, and hard header-size backstops behind the
//! configurable JSON checks of `server::limits`. Request bodies get their clock in
//! `server::limits::BodyClock`.

mod head_timer;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use hyper::body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use pin_project_lite::pin_project;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::Service;

use self::head_timer::{HeadWatch, head_timer};
use crate::proxy::HeldByUpgrade;

/// Connection-level limits (`[limits]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// Open connections at most; further clients wait in the kernel's backlog.
    pub(crate) max_connections: usize,
    /// Time a client has to send a request's headers, and to start its next request on a
    /// kept-alive connection; also how long an HTTP/2 connection may stay without a request.
    pub(crate) header_read_timeout: Duration,
    /// Longest a write may wait for the client to read (`limits.send_timeout`).
    pub(crate) send_timeout: Duration,
    /// Whether h2c (HTTP/2 with prior knowledge) is served besides HTTP/1.1.
    pub(crate) http2: bool,
    /// Concurrent streams per HTTP/2 connection.
    pub(crate) http2_max_streams: u32,
    /// hyper's own cap on the header block (the configurable check is below it, with JSON).
    pub(crate) header_buf_bytes: usize,
    /// hyper's own cap on the header count; `None` keeps hyper's default (100).
    pub(crate) max_headers: Option<usize>,
}

/// How long shutdown waits for in-flight requests before closing their connections.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests finish.
///
/// # Errors
/// None today: accept errors (e.g. out of file descriptors) are logged and retried.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Each connection gets its own header-read timer (`head_timer`) on a copy of these.
    let mut h1 = hyper::server::conn::http1::Builder::new();
    h1.header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.header_buf_bytes.max(8192));
    if let Some(n) = limits.max_headers {
        h1.max_headers(n);
    }
    // h2c only when configured: `http1_only` does nothing for a connection served with
    // upgrades, so HTTP/1.1-only connections are served by hyper's HTTP/1 builder itself.
    let auto = limits.http2.then(|| {
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.header_buf_bytes.max(8192));
        if let Some(n) = limits.max_headers {
            builder.http1().max_headers(n);
        }
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.header_buf_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(limits.http2_max_streams.max(1))
            // A peer that stops answering PINGs while requests are open is dropped.
            .keep_alive_interval(Some(limits.header_read_timeout))
            .keep_alive_timeout(limits.header_read_timeout);
        builder
    });
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the permit is returned.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        // The slot is held by the connection and, past a WebSocket upgrade, by the tunnel.
        let slot = Arc::new(permit);
        let service = ConnService {
            router: router.clone(),
            peer,
            activity: activity.clone(),
            held: HeldByUpgrade::new(slot.clone(), stopping.clone()),
        };
        let io = TokioIo::new(SendTimeout::new(stream, limits.send_timeout));
        let service = TowerToHyperService::new(service);
        let stopping = stopping.clone();
        let idle = limits.header_read_timeout;
        let (timer, watch) = head_timer();
        let watched = Watched {
            activity,
            idle,
            head: watch,
        };
        match &auto {
            Some(auto) => {
                let mut auto = auto.clone();
                auto.http1().timer(timer);
                let conn = auto
                    .serve_connection_with_upgrades(io, service)
                    .into_owned();
                tokio::spawn(drive(conn, watched, stopping, slot));
            }
            None => {
                let mut h1 = h1.clone();
                h1.timer(timer);
                let conn = ErrInto {
                    inner: h1.serve_connection(io, service).with_upgrades(),
                };
                tokio::spawn(drive(conn, watched, stopping, slot));
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a slot until it ends: all slots back means all drained.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutdown: connections still busy after {DRAIN:?}, closing them");
    }
    Ok(())
}

/// What `drive` watches beside the connection itself.
struct Watched {
    /// For the HTTP/2 idle timeout.
    activity: Arc<Activity>,
    idle: Duration,
    /// The HTTP/1 header-read deadline hyper asked for (`head_timer`).
    head: HeadWatch,
}

/// Runs one connection to its end, then gives its slot back: shuts it down gracefully when the
/// server stops, or when it has had no request in flight for `idle` (HTTP/2 only: HTTP/1's idle
/// time is hyper's header timeout, whose timer is `head`); one still open `idle` after a
/// graceful shutdown is dropped.
async fn drive<C>(
    conn: C,
    watched: Watched,
    mut stopping: watch::Receiver<bool>,
    slot: Arc<OwnedSemaphorePermit>,
) where
    C: Future<Output = Result<(), ConnError>> + Graceful,
{
    let Watched {
        activity,
        idle,
        mut head,
    } = watched;
    tokio::pin!(conn);
    let idle_wait = activity.idle_for(idle);
    tokio::pin!(idle_wait);
    let mut closing: Option<tokio::time::Instant> = None;
    let mut server_stopping = false;
    loop {
        tokio::select! {
            // In this order: the connection first, then the watches. hyper asks for a header
            // deadline while the connection is polled, and `head` must see it in the same turn
            // to arm its timer (`head_timer`: hyper's sleep has no waker of its own).
            biased;
            res = conn.as_mut() => {
                // Client resets and timeouts end here; they are the client's business.
                if let Err(e) = res {
                    tracing::trace!(error = %e, "connection ended");
                }
                break;
            }
            _ = stopping.changed(), if !server_stopping => {
                server_stopping = true;
                conn.as_mut().shutdown_gracefully();
            }
            () = &mut idle_wait, if closing.is_none() => {
                tracing::trace!("idle HTTP/2 connection closed");
                conn.as_mut().shutdown_gracefully();
                closing = Some(tokio::time::Instant::now() + idle);
            }
            // A head is late: the next turn polls the connection, whose hyper ends it.
            () = &mut head => {}
            () = sleep_until_some(closing) => {
                // GOAWAY sent, and the peer still holds on: drop it.
                break;
            }
        }
    }
    drop(slot);
}

/// The error both connection kinds end with.
type ConnError = Box<dyn std::error::Error + Send + Sync>;

type Svc = TowerToHyperService<ConnService>;

/// A connection that can be asked to finish its in-flight requests and close.
trait Graceful {
    fn shutdown_gracefully(self: Pin<&mut Self>);
}

impl Graceful
    for hyper_util::server::conn::auto::UpgradeableConnection<
        'static,
        TokioIo<SendTimeout>,
        Svc,
        TokioExecutor,
    >
{
    fn shutdown_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl Graceful
    for ErrInto<hyper::server::conn::http1::UpgradeableConnection<TokioIo<SendTimeout>, Svc>>
{
    fn shutdown_gracefully(self: Pin<&mut Self>) {
        self.project().inner.graceful_shutdown();
    }
}

pin_project! {
    /// hyper's HTTP/1 connection with its error boxed like hyper-util's.
    struct ErrInto<C> {
        #[pin]
        inner: C,
    }
}

impl<C> Future for ErrInto<C>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    type Output = Result<(), ConnError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map_err(Into::into)
    }
}

/// Sleeps until `at`, or for ever without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What a connection is doing, for its idle timeout.
#[derive(Debug)]
struct Activity {
    born: Instant,
    /// An HTTP/1 request was seen: hyper's header timeout governs idleness then.
    http1: AtomicBool,
    /// HTTP/2 requests whose response has not been sent to its end (or dropped).
    in_flight: AtomicUsize,
    /// Milliseconds after `born` when the last HTTP/2 request ended.
    last_end_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            born: Instant::now(),
            http1: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
        }
    }

    fn since_born(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Resolves once the connection has been without a request for `idle`; never for an
    /// HTTP/1 connection that has had a request. Wakes at most once per `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            if self.http1.load(Ordering::Relaxed) {
                return std::future::pending().await;
            }
            let now = Instant::now();
            let next = if self.in_flight.load(Ordering::Acquire) > 0 {
                now + idle
            } else {
                let last =
                    self.born + Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
                if now >= last + idle {
                    return;
                }
                last + idle
            };
            tokio::time::sleep_until(next.into()).await;
        }
    }
}

/// Ends one HTTP/2 request's share of [`Activity`] when dropped.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .last_end_ms
            .store(self.0.since_born(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The router as one connection sees it: the peer address goes in as `ConnectInfo` (the
/// client address feeds the rate limits, see `client_ip`), and HTTP/2 requests are counted
/// until their response is sent.
#[derive(Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    held: HeldByUpgrade,
}

impl<B> Service<http::Request<B>> for ConnService
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Counted<<Router as Service<Request>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        // Only a request asking for an upgrade can start a tunnel (no allocation on the others).
        if req.headers().contains_key(http::header::UPGRADE) {
            req.extensions_mut().insert(self.held.clone());
        }
        let in_flight = if req.version() == http::Version::HTTP_2 {
            Some(InFlight::start(&self.activity))
        } else {
            if !self.activity.http1.load(Ordering::Relaxed) {
                self.activity.http1.store(true, Ordering::Relaxed);
            }
            None
        };
        Counted {
            inner: self.router.call(req),
            in_flight,
        }
    }
}

pin_project! {
    /// The response future of [`ConnService`]: an HTTP/2 request stays in flight until its
    /// response body is sent (or dropped).
    struct Counted<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F> Future for Counted<F>
where
    F: Future<Output = Result<Response, std::convert::Infallible>>,
{
    type Output = Result<Response, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx));
        Poll::Ready(match this.in_flight.take() {
            None => res,
            Some(guard) => res.map(|r| {
                r.map(|body| {
                    Body::new(CountedBody {
                        inner: body,
                        _in_flight: guard,
                    })
                })
            }),
        })
    }
}

pin_project! {
    /// A response body that holds its request's [`InFlight`] until it is dropped.
    struct CountedBody {
        #[pin]
        inner: Body,
        _in_flight: InFlight,
    }
}

impl hyper::body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The client socket, whose writes fail once one has waited `limit` for the client to make
    /// room (it stopped reading). hyper has no write timeout, and its header and body timeouts
    /// only cover reading: without this, a client that asks for a large answer and never reads
    /// it keeps its connection slot for ever. Only a write that is pending arms the timer, so
    /// the fast path is a plain delegation.
    pub(crate) struct SendTimeout {
        #[pin]
        inner: TcpStream,
        limit: Duration,
        stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl SendTimeout {
    fn new(inner: TcpStream, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }
}

/// What a write that made progress or failed returns as is, and a pending one checks against
/// the deadline (armed at its first `Pending`).
fn check_stall<T>(
    res: Poll<std::io::Result<T>>,
    stalled: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    limit: Duration,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<T>> {
    match res {
        Poll::Ready(r) => {
            *stalled = None;
            Poll::Ready(r)
        }
        Poll::Pending => {
            let timer = stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
            if timer.as_mut().poll(cx).is_ready() {
                *stalled = None;
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client stopped reading (limits.send_timeout)",
                )));
            }
            Poll::Pending
        }
    }
}

impl tokio::io::AsyncRead for SendTimeout {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SendTimeout {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write(cx, buf);
        check_stall(res, this.stalled, *this.limit, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write_vectored(cx, bufs);
        check_stall(res, this.stalled, *this.limit, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let res = this.inner.poll_flush(cx);
        check_stall(res, this.stalled, *this.limit, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
