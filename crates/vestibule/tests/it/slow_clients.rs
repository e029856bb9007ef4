//! Slow and idle clients cannot hold connection slots: slowloris headers, request bodies that
//! trickle in (direct and through the gateway), idle HTTP/2 connections that answer PINGs, and
//! idle keep-alive connections are all closed by the server within the configured time, while
//! `GET /healthz` keeps answering. Raw sockets on loopback, a few hundred connections at most,
//! 1 s timeouts; the time bounds are functional (generous margins), not speed benchmarks.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;
use vestibule::config::RawConfig;
use vestibule::proxy::{RawUpstream, UpstreamPolicy};

use crate::support::TestApp;

/// Timeouts of one second: the attack connections must be gone well within a few.
fn short_timeouts(raw: &mut RawConfig) {
    raw.limits.header_read_timeout = "1s".into();
    raw.limits.body_read_timeout = "1s".into();
}

/// How long the server may take to close an attack connection: the 1 s timeout plus a
/// generous margin for a loaded test machine.
const CLOSED_WITHIN: Duration = Duration::from_secs(6);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Reads until the server closes (EOF or reset) or `within` passes; returns what was read, and
/// whether the connection was closed.
async fn read_until_closed(r: &mut OwnedReadHalf, within: Duration) -> (String, bool) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, r.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&seen).into_owned(), true),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&seen).into_owned(), false),
        }
    }
}

/// Writes `head`, then one byte of `filler` every 300 ms (under the 1 s gap, so only the rate
/// rule or the header deadline can end it) until the server closes or 10 s pass.
fn trickle(mut w: OwnedWriteHalf, head: Vec<u8>) -> JoinHandle<()> {
    tokio::spawn(async move {
        if w.write_all(&head).await.is_err() {
            return;
        }
        for _ in 0..33 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if w.write_all(b"a").await.is_err() {
                return;
            }
        }
    })
}

/// `GET /healthz` on a fresh connection answers 200 within a second.
async fn healthz_answers_within_a_second(app: &TestApp) {
    let res = tokio::time::timeout(
        Duration::from_secs(1),
        app.raw_client().get(app.url("/healthz")).send(),
    )
    .await
    .expect("/healthz answered within a second during the attack")
    .expect("request");
    assert_eq!(res.status(), 200);
}

/// Opens `n` connections that send `head` and then trickle; returns their read halves.
async fn attack(app: &TestApp, n: usize, head: &[u8]) -> Vec<(OwnedReadHalf, JoinHandle<()>)> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let (r, w) = connect(app).await.into_split();
        conns.push((r, trickle(w, head.to_vec())));
    }
    conns
}

/// Opens `n` connections that each get one `/healthz` answer and are then kept alive and left
/// idle (the write half stays open); returns their read halves.
async fn idle_keep_alives(app: &TestApp, n: usize) -> Vec<(OwnedReadHalf, JoinHandle<()>)> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let (mut r, mut w) = connect(app).await.into_split();
        w.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("request");
        let mut buf = [0u8; 12];
        r.read_exact(&mut buf).await.expect("answer");
        assert_eq!(&buf, b"HTTP/1.1 200");
        conns.push((
            r,
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(w);
            }),
        ));
    }
    conns
}

/// Every connection is closed by the server in time; returns what each one received.
async fn all_closed(conns: Vec<(OwnedReadHalf, JoinHandle<()>)>) -> Vec<String> {
    let results = futures_util::future::join_all(conns.into_iter().map(|(mut r, w)| async move {
        let out = read_until_closed(&mut r, CLOSED_WITHIN).await;
        w.abort();
        out
    }))
    .await;
    let open = results.iter().filter(|(_, closed)| !closed).count();
    assert_eq!(open, 0, "connections the server left open");
    results.into_iter().map(|(text, _)| text).collect()
}

const SLOW_LOGIN: &[u8] = b"POST /auth/login HTTP/1.1\r\nHost: x\r\n\
    Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"username\": \"";

#[tokio::test]
async fn slowloris_headers_are_cut_at_the_header_timeout_while_healthz_answers() {
    let app = TestApp::spawn_with(short_timeouts).await;
    let conns = attack(&app, 200, b"GET /auth/me HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    healthz_answers_within_a_second(&app).await;
    all_closed(conns).await;
}

/// With h2c on, HTTP/1 connections are served by hyper-util's auto builder, which gets its own
/// copy of the header timer per connection: slowloris heads are cut there too, and an idle
/// kept-alive HTTP/1 connection is closed.
#[tokio::test]
async fn slowloris_headers_and_idle_keep_alives_are_cut_with_h2c_on_too() {
    let app = TestApp::spawn_with(|raw| {
        short_timeouts(raw);
        raw.limits.http2 = true;
    })
    .await;
    let mut conns = attack(&app, 50, b"GET /auth/me HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    conns.extend(idle_keep_alives(&app, 50).await);
    healthz_answers_within_a_second(&app).await;
    all_closed(conns).await;
}

/// One byte every 300 ms never leaves a 1 s gap (nginx's `client_body_timeout` alone would keep
/// it for ever); the rate rule cuts it, with 408 and a closed connection.
#[tokio::test]
async fn a_body_that_trickles_in_gets_408_and_its_connection_closed_while_healthz_answers() {
    let app = TestApp::spawn_with(short_timeouts).await;
    let conns = attack(&app, 200, SLOW_LOGIN).await;
    healthz_answers_within_a_second(&app).await;
    let answers = all_closed(conns).await;
    for a in &answers {
        assert!(
            a.starts_with("HTTP/1.1 408 "),
            "answer to a slow body: {a:?}"
        );
        assert!(a.contains("request_timeout"), "{a}");
        assert!(a.to_ascii_lowercase().contains("connection: close"), "{a}");
    }
    // A body that arrives at a normal pace is not affected.
    let res = app
        .raw_client()
        .post(app.url("/auth/login"))
        .json(&serde_json::json!({"username": "nobody", "password": "whatever12"}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401);
}

/// The issue's symptom: every slot held by a slow body, and `/healthz` waited for ever. Now the
/// slots come back within the body timeout and the waiting client is served.
#[tokio::test]
async fn slots_held_by_slow_bodies_are_freed_for_waiting_clients() {
    let app = TestApp::spawn_with(|raw| {
        short_timeouts(raw);
        raw.limits.max_connections = 50;
    })
    .await;
    let conns = attack(&app, 50, SLOW_LOGIN).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = tokio::time::timeout(
        CLOSED_WITHIN,
        app.raw_client().get(app.url("/healthz")).send(),
    )
    .await
    .expect("a slot was freed for /healthz")
    .expect("request");
    assert_eq!(res.status(), 200);
    all_closed(conns).await;
}

#[tokio::test]
async fn many_idle_keep_alive_connections_are_closed_while_healthz_answers() {
    let app = TestApp::spawn_with(short_timeouts).await;
    let conns = idle_keep_alives(&app, 200).await;
    healthz_answers_within_a_second(&app).await;
    all_closed(conns).await;
}

/// Each wait for a head has its own deadline, counted from when that wait began: a kept-alive
/// connection that asks again within the timeout, for longer than twice the timeout in all,
/// stays open (the header timer is re-armed lazily, `server/listener/head_timer.rs`: one armed for an
/// earlier wait must move on, not fire), and a head that then trickles in is still cut.
#[tokio::test]
async fn a_connection_asking_within_the_header_timeout_stays_and_a_late_head_is_still_cut() {
    let app = TestApp::spawn_with(short_timeouts).await;
    let (mut r, mut w) = connect(&app).await.into_split();
    for i in 0..5 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        w.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap_or_else(|e| panic!("request {i} written: {e}"));
        let mut head = [0u8; 12];
        r.read_exact(&mut head)
            .await
            .unwrap_or_else(|e| panic!("answer to request {i} ({e}): the connection was closed"));
        assert_eq!(&head, b"HTTP/1.1 200", "request {i}");
        // The rest of the answer (a small JSON body) arrives in the same breath.
        let mut rest = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_millis(50), r.read(&mut rest)).await;
    }
    // Half a head: the connection is still there half a timeout later, and gone after it.
    w.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        .await
        .expect("partial head");
    let (early, closed_early) = read_until_closed(&mut r, Duration::from_millis(500)).await;
    assert!(!closed_early, "closed before the header timeout: {early:?}");
    let (_, closed) = read_until_closed(&mut r, CLOSED_WITHIN).await;
    assert!(closed, "a head that never ended kept its connection");
}

/// What the gateway's upstream saw: (the gateway connection's port, the body if it arrived whole).
type Uploads = Arc<Mutex<Vec<(u16, Option<Bytes>)>>>;

async fn upload_upstream() -> (String, Uploads) {
    let seen = Uploads::default();
    let log = seen.clone();
    let router = Router::new().route(
        "/api/upload",
        post(
            move |ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request| {
                let log = log.clone();
                async move {
                    let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.ok();
                    let ok = body.is_some();
                    if let Ok(mut l) = log.lock() {
                        l.push((peer.port(), body));
                    }
                    if ok { "stored" } else { "broken" }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    (format!("http://{addr}"), seen)
}

/// The gateway streams request bodies: a trickling body is cut the same way (408, connection
/// closed), the upstream never gets it whole, and its half-sent upstream connection is not
/// reused for the next request.
#[tokio::test]
async fn a_body_that_trickles_through_the_gateway_is_cut_and_its_upstream_connection_dropped() {
    let (url, uploads) = upload_upstream().await;
    let app = TestApp::spawn_with(|raw| {
        short_timeouts(raw);
        raw.upstream = vec![RawUpstream {
            prefix: "/api".into(),
            url,
            policy: UpstreamPolicy::AnonymousOk,
            ..RawUpstream::default()
        }];
    })
    .await;
    let conns = attack(
        &app,
        1,
        b"POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nhalf",
    )
    .await;
    let answers = all_closed(conns).await;
    assert!(answers[0].starts_with("HTTP/1.1 408 "), "{:?}", answers[0]);
    // The upstream saw the request start and its body break off.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = uploads.lock().expect("log").clone();
    assert!(
        matches!(first.as_slice(), [(_, None)]),
        "the upstream saw the slow request start and its body break off, never whole: {first:?}"
    );
    let res = app
        .raw_client()
        .post(app.url("/api/upload"))
        .body("whole")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.expect("text"), "stored");
    let all = uploads.lock().expect("log").clone();
    let (port, body) = all.last().expect("the second upload").clone();
    assert_eq!(body.as_deref(), Some(&b"whole"[..]));
    assert!(
        first.iter().all(|(p, _)| *p != port),
        "the next request went over the half-sent upstream connection: {all:?}"
    );
}

/// An HTTP/2 (h2c) client connection; its task ends when the server closes the connection.
async fn h2(
    app: &TestApp,
) -> Result<
    (
        hyper::client::conn::http2::SendRequest<Body>,
        JoinHandle<Result<(), hyper::Error>>,
    ),
    hyper::Error,
> {
    let io = TokioIo::new(connect(app).await);
    // The h2 client answers the server's PINGs by itself, as an attacker's would.
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
    Ok((send, tokio::spawn(conn)))
}

fn h2_get(path: &str) -> http::Request<Body> {
    http::Request::get(format!("http://x{path}"))
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn h2c_is_served_only_when_configured() {
    let app = TestApp::spawn_with(short_timeouts).await;
    let outcome = async {
        let (mut send, _conn) = h2(&app).await?;
        send.send_request(h2_get("/healthz")).await
    };
    let refused = tokio::time::timeout(CLOSED_WITHIN, outcome)
        .await
        .expect("settled");
    assert!(refused.is_err(), "h2c answered with limits.http2 off");
}

/// hyper's HTTP/2 keep-alive only checks that the peer answers PINGs: an idle client that does
/// kept its connection for ever. The idle timeout closes a connection without open streams.
#[tokio::test]
async fn idle_http2_connections_that_answer_pings_are_closed_while_healthz_answers() {
    let app = TestApp::spawn_with(|raw| {
        short_timeouts(raw);
        raw.limits.http2 = true;
    })
    .await;
    let mut conns = Vec::new();
    for _ in 0..50 {
        let (mut send, conn) = h2(&app).await.expect("h2c handshake");
        let res = send
            .send_request(h2_get("/healthz"))
            .await
            .expect("h2 request");
        assert_eq!(res.status(), 200);
        conns.push((send, conn));
    }
    healthz_answers_within_a_second(&app).await;
    for (_send, conn) in conns {
        let ended = tokio::time::timeout(CLOSED_WITHIN, conn).await;
        assert!(ended.is_ok(), "an idle h2 connection was left open");
    }
}

/// A trickling body on an HTTP/2 stream gets 408 too, and the connection, idle again, closes.
#[tokio::test]
async fn a_trickling_http2_body_gets_408_and_the_connection_then_closes() {
    let app = TestApp::spawn_with(|raw| {
        short_timeouts(raw);
        raw.limits.http2 = true;
        raw.limits.http2_max_streams = 4;
    })
    .await;
    let (mut send, conn) = h2(&app).await.expect("h2c handshake");
    let trickle = futures_util::stream::unfold(0u32, |i| async move {
        if i >= 30 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        Some((Ok::<_, std::io::Error>(Bytes::from_static(b"a")), i + 1))
    });
    let req = http::Request::post("http://x/auth/login")
        .header("content-type", "application/json")
        .body(Body::from_stream(trickle))
        .expect("request");
    let res = tokio::time::timeout(CLOSED_WITHIN, send.send_request(req))
        .await
        .expect("answered in time")
        .expect("h2 response");
    assert_eq!(res.status(), 408);
    let ended = tokio::time::timeout(CLOSED_WITHIN, conn).await;
    assert!(
        ended.is_ok(),
        "the h2 connection stayed open after its stream ended"
    );
}

/// Stopping the server lets a request in flight finish, closes idle keep-alive connections at
/// once, and returns when the last connection is gone.
#[tokio::test]
async fn shutdown_finishes_requests_in_flight_and_closes_idle_connections() {
    let app = TestApp::spawn().await;
    let (mut idle_r, mut idle_w) = connect(&app).await.into_split();
    idle_w
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut buf = [0u8; 12];
    idle_r.read_exact(&mut buf).await.expect("answer");
    let (mut r, mut w) = connect(&app).await.into_split();
    let body = br#"{"username": "nobody", "password": "whatever12"}"#;
    w.write_all(
        format!(
            "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .expect("head");
    w.write_all(&body[..10]).await.expect("half the body");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stopped.is_finished(), "stopped with a request in flight");
    let (rest, closed) = read_until_closed(&mut idle_r, Duration::from_secs(3)).await;
    assert!(closed, "the idle connection stayed open during shutdown");
    assert!(
        rest.ends_with(r#"{"status":"ok"}"#),
        "nothing more than its answer: {rest:?}"
    );
    w.write_all(&body[10..]).await.expect("rest of the body");
    let (answer, closed) = read_until_closed(&mut r, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer:?}");
    assert!(closed, "the connection closes after its last answer");
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("the server stopped once drained")
        .expect("task");
}

/// A client that asks for a large answer and stops reading is cut off after
/// `limits.send_timeout` (its connection slot freed), instead of holding the connection while
/// the server waits to write: here through the gateway, a 64 MiB download never read.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_at_the_send_timeout() {
    const BIG: usize = 64 << 20;
    let router = Router::new().route("/api/big", axum::routing::get(|| async { vec![b'x'; BIG] }));
    let url = crate::support::serve_router(router).await;
    let app = TestApp::spawn_with(|raw| {
        short_timeouts(raw);
        raw.limits.send_timeout = "1s".into();
        raw.limits.max_connections = 2;
        raw.upstream = vec![RawUpstream {
            prefix: "/api".into(),
            url,
            policy: UpstreamPolicy::AnonymousOk,
            ..RawUpstream::default()
        }];
    })
    .await;
    let (mut r, mut w) = connect(&app).await.into_split();
    w.write_all(b"GET /api/big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    // Not reading: the socket buffers fill and the server's write waits.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let deadline = tokio::time::Instant::now() + CLOSED_WITHIN;
    let closed = loop {
        match tokio::time::timeout_at(deadline, r.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => got += n,
            Err(_) => break false,
        }
    };
    assert!(closed, "the connection stayed open");
    assert!(
        got < BIG,
        "the whole answer was still there to read ({got} bytes): the server waited for the client"
    );
    healthz_answers_within_a_second(&app).await;
    drop(w);
}
