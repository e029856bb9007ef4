//! Framing between the client side and the upstream side of the gateway (request smuggling).
//!
//! A raw-socket upstream parses every request by hand and logs it (method, target, headers,
//! body). It behaves the way RFC 9112 allows and real servers do: it answers a WebSocket
//! handshake with a non-101 status *before* reading the body the request announced and then
//! drains that body; it answers `/api/early` before reading the body; it reads half of
//! `/api/half`'s body and closes. The tests send requests through the real gateway and compare
//! what the clients sent with what the upstream parsed: the same requests, in order per client,
//! each with the identity Vestibule assigned and no other — the differential property test sends
//! random sequences of them from several clients at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vestibule::proxy::{RawUpstream, UpstreamPolicy};

use crate::support::{COOKIE, PASSWORD, TestApp, set_cookie_value};

/// One request as the upstream parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The upstream connection it came on.
    pub conn: usize,
    pub method: String,
    pub target: String,
    /// Lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was read to its end (false: the connection ended inside it).
    pub complete: bool,
}

impl Parsed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The raw upstream: its URL and what it parsed.
pub struct LoggingUpstream {
    pub url: String,
    pub log: Arc<Mutex<Vec<Parsed>>>,
}

impl LoggingUpstream {
    pub fn parsed(&self) -> Vec<Parsed> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

pub async fn logging_upstream() -> LoggingUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let log = Arc::new(Mutex::new(Vec::new()));
    let conns = Arc::new(AtomicUsize::new(0));
    let l = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let conn = conns.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_raw(stream, conn, Arc::clone(&l)));
        }
    });
    LoggingUpstream { url, log }
}

/// A byte reader over a socket with its own buffer (every read bounded in time).
struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Reader {
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// A line without its CRLF, or `None` at the end of the stream.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            if self.buf.len() > 64 * 1024 || !self.fill().await {
                return None;
            }
        }
    }

    /// Up to `n` bytes (fewer at the end of the stream).
    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if !self.fill().await {
                break;
            }
        }
        let n = n.min(self.buf.len());
        self.buf.drain(..n).collect()
    }

    /// A head: the first line and the fields (lower-cased names).
    async fn head(&mut self) -> Option<(String, Vec<(String, String)>)> {
        let first = self.line().await?;
        let mut fields = Vec::new();
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                return Some((first, fields));
            }
            let (n, v) = line.split_once(':').unwrap_or((&line, ""));
            fields.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }

    /// A body framed by `fields`; `(bytes, complete)`.
    async fn body(&mut self, fields: &[(String, String)], limit: Option<usize>) -> (Vec<u8>, bool) {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        if get("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let Some(size) = self.line().await else {
                    return (body, false);
                };
                let Ok(size) =
                    usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                else {
                    return (body, false);
                };
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        match self.line().await {
                            Some(l) if l.is_empty() => return (body, true),
                            Some(_) => {}
                            None => return (body, false),
                        }
                    }
                }
                let chunk = self.take(size).await;
                let whole = chunk.len() == size;
                body.extend_from_slice(&chunk);
                if !whole || self.take(2).await != b"\r\n" {
                    return (body, false);
                }
            }
        }
        let len = get("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let want = limit.map_or(len, |l| l.min(len));
        let body = self.take(want).await;
        let complete = body.len() == want;
        (body, complete)
    }
}

/// Serves one upstream connection (see the module documentation for the behaviours).
async fn serve_raw(stream: TcpStream, conn: usize, log: Arc<Mutex<Vec<Parsed>>>) {
    let mut r = Reader {
        stream,
        buf: Vec::new(),
    };
    // Logged when the head is parsed (the order requests arrived in), completed with the body.
    let push = |p: Parsed| {
        log.lock().ok().map(|mut l| {
            l.push(p);
            l.len() - 1
        })
    };
    let set = |i: Option<usize>, p: Parsed| {
        if let (Some(i), Ok(mut l)) = (i, log.lock()) {
            l[i] = p;
        }
    };
    loop {
        let Some((line, fields)) = r.head().await else {
            return;
        };
        let mut parts = line.splitn(3, ' ');
        let (method, target, version) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or(""),
        );
        let mut parsed = Parsed {
            conn,
            method,
            target,
            headers: fields.clone(),
            body: Vec::new(),
            complete: true,
        };
        if !version.starts_with("HTTP/1.") {
            // Not a request line: what a desynchronised connection looks like.
            let _ = push(parsed);
            return;
        }
        let at = push(Parsed {
            complete: false,
            ..parsed.clone()
        });
        let target = parsed.target.clone();
        let answer = |status: &str, close: bool| {
            format!(
                "HTTP/1.1 {status}\r\nx-seen: {target}\r\ncontent-length: 2\r\n{}\r\nok",
                if close { "connection: close\r\n" } else { "" }
            )
        };
        let close = parsed
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let path = parsed.target.split('?').next().unwrap_or("").to_owned();
        if parsed.header("upgrade").is_some() || path == "/api/early" {
            // Answered before the body is read (no 101), then the announced body is drained.
            let status = if path == "/api/early" {
                "200 OK"
            } else {
                "400 Bad Request"
            };
            if r.stream
                .write_all(answer(status, false).as_bytes())
                .await
                .is_err()
            {
                return;
            }
            let (body, complete) = r.body(&fields, None).await;
            (parsed.body, parsed.complete) = (body, complete);
            set(at, parsed);
            if !complete {
                return;
            }
        } else if path == "/api/half" {
            // Half the body read, the answer, and the connection closed.
            let len = parsed
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if parsed.header("transfer-encoding").is_none() {
                parsed.body = r.body(&fields, Some(len / 2)).await.0;
            }
            set(at, parsed);
            let _ = r.stream.write_all(answer("200 OK", true).as_bytes()).await;
            return;
        } else if path == "/api/old" {
            let (body, complete) = r.body(&fields, None).await;
            (parsed.body, parsed.complete) = (body, complete);
            set(at, parsed);
            let _ = r
                .stream
                .write_all(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nold")
                .await;
            return;
        } else {
            let (body, complete) = r.body(&fields, None).await;
            (parsed.body, parsed.complete) = (body, complete);
            set(at, parsed);
            if !complete
                || r.stream
                    .write_all(answer("200 OK", close).as_bytes())
                    .await
                    .is_err()
            {
                return;
            }
        }
        if close {
            return;
        }
    }
}

/// One response as a raw client read it.
#[derive(Debug)]
pub struct Answer {
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn status(&self) -> u16 {
        self.status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A raw client connection to the gateway.
pub struct RawClient {
    r: Reader,
}

impl RawClient {
    pub async fn connect(app: &TestApp) -> Self {
        let addr = app.base.trim_start_matches("http://").to_owned();
        let stream = TcpStream::connect(addr).await.expect("connect");
        Self {
            r: Reader {
                stream,
                buf: Vec::new(),
            },
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.r.stream.write_all(bytes).await.is_ok()
    }

    /// The next final response (1xx skipped); `None` when the gateway closed or went quiet.
    pub async fn answer(&mut self) -> Option<Answer> {
        loop {
            let (status_line, headers) = self.r.head().await?;
            let a = Answer {
                status_line,
                headers,
                body: Vec::new(),
            };
            if (100..200).contains(&a.status()) {
                continue;
            }
            let (body, complete) = self.r.body(&a.headers, None).await;
            return complete.then_some(Answer { body, ..a });
        }
    }

    pub async fn close(mut self) {
        let _ = self.r.stream.shutdown().await;
    }
}

/// A trusted SPA origin of the test configuration (`support::test_raw_config`).
const TRUSTED: &str = "http://localhost:3000";

/// A gateway with `/api` (anonymous_ok, identity headers) and `/admin` (require_auth) on `url`.
async fn framing_gateway(url: &str) -> TestApp {
    TestApp::spawn_with(|r| {
        r.upstream = vec![
            RawUpstream {
                prefix: "/api".into(),
                url: url.into(),
                policy: UpstreamPolicy::AnonymousOk,
                ..RawUpstream::default()
            },
            RawUpstream {
                prefix: "/admin".into(),
                url: url.into(),
                policy: UpstreamPolicy::RequireAuth,
                ..RawUpstream::default()
            },
        ];
    })
    .await
}

/// A logged-in user for raw clients: id, name, cookie, CSRF token.
#[derive(Debug, Clone)]
pub struct RawUser {
    pub id: i64,
    pub name: String,
    pub cookie: String,
    pub csrf: String,
}

pub async fn raw_user(app: &TestApp, name: &str) -> RawUser {
    let res = app
        .post_anon(
            "/auth/signup",
            &json!({"username": name, "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let cookie = set_cookie_value(&res, COOKIE).expect("session cookie");
    let body: Value = res.json().await.expect("json");
    let csrf = body["csrf_token"].as_str().unwrap_or_default().to_owned();
    let id = app
        .state
        .users
        .by_username(name)
        .await
        .expect("lookup")
        .expect("user")
        .id;
    RawUser {
        id,
        name: name.to_owned(),
        cookie,
        csrf,
    }
}

fn handshake(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn an_upgrade_with_a_body_answered_without_101_cannot_eat_the_next_request() {
    let up = logging_upstream().await;
    let app = framing_gateway(&up.url).await;
    // The attacker: a handshake announcing a 5-byte body, which the upstream drains from
    // whatever comes next on that connection once it has refused the upgrade.
    let mut attacker = RawClient::connect(&app).await;
    attacker
        .send(format!("{}hello", handshake("/api/ws", "Content-Length: 5\r\n")).as_bytes())
        .await;
    let refused = attacker.answer().await.expect("an answer");
    assert_eq!(refused.status(), 400, "{refused:?}");
    attacker.close().await;
    // The victim, on another client connection (the gateway may reuse its upstream connection).
    let mut victim = RawClient::connect(&app).await;
    victim
        .send(b"GET /api/victim HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let answer = victim.answer().await;
    // On the old gateway the upstream ate `GET /` as the body and parsed `api/victim …` as a
    // request line; here the handshake never reached it.
    let parsed = up.parsed();
    let targets: Vec<&str> = parsed.iter().map(|p| p.target.as_str()).collect();
    assert_eq!(targets, ["/api/victim"], "{parsed:?}");
    let answer = answer.expect("an answer");
    assert_eq!(answer.status(), 200, "{answer:?}");
    assert_eq!(answer.header("x-seen"), Some("/api/victim"));
    assert!(
        String::from_utf8_lossy(&refused.body).contains("upgrade_with_body"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_connection_whose_upgrade_was_refused_is_never_reused() {
    let up = logging_upstream().await;
    let app = framing_gateway(&up.url).await;
    let mut c = RawClient::connect(&app).await;
    c.send(handshake("/api/ws", "").as_bytes()).await;
    let refused = c.answer().await.expect("an answer");
    assert_eq!(
        refused.status(),
        400,
        "the upstream's own refusal: {refused:?}"
    );
    c.send(b"GET /api/next HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let next = c.answer().await.expect("an answer");
    assert_eq!(next.header("x-seen"), Some("/api/next"));
    let parsed = up.parsed();
    assert_eq!(parsed.len(), 2, "{parsed:?}");
    assert!(
        parsed[0].header("content-length").is_none()
            && parsed[0].header("transfer-encoding").is_none(),
        "no framing on a handshake: {parsed:?}"
    );
    assert_ne!(
        parsed[0].conn, parsed[1].conn,
        "the upgrade's connection went back to the pool"
    );
}

#[tokio::test]
async fn connection_cannot_name_away_the_identity_the_gateway_adds() {
    let up = logging_upstream().await;
    let app = framing_gateway(&up.url).await;
    let user = raw_user(&app, "conn-alice").await;
    let names = "keep-alive, X-Vestibule-User-Id, X-Vestibule-Username, X-Vestibule-Assertion, \
                 Forwarded, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, Host, x-hop";
    let mut c = RawClient::connect(&app).await;
    c.send(
        format!(
            "GET /admin/panel HTTP/1.1\r\nHost: localhost\r\nCookie: {COOKIE}={}\r\nConnection: {names}\r\nx-hop: 1\r\n\r\n",
            user.cookie
        )
        .as_bytes(),
    )
    .await;
    let a = c.answer().await.expect("an answer");
    assert_eq!(a.status(), 200, "{a:?}");
    // The same through a WebSocket handshake (refused by this upstream with 400, but parsed).
    c.send(
        handshake(
            "/admin/ws",
            &format!(
                "Cookie: {COOKIE}={}\r\nOrigin: {TRUSTED}\r\nConnection: Upgrade, {names}\r\n",
                user.cookie
            ),
        )
        .as_bytes(),
    )
    .await;
    let a = c.answer().await.expect("an answer");
    assert_eq!(a.status(), 400, "{a:?}");
    let parsed = up.parsed();
    assert_eq!(parsed.len(), 2, "{parsed:?}");
    for p in &parsed {
        assert_eq!(
            p.header("x-vestibule-user-id"),
            Some(&*user.id.to_string()),
            "{p:?}"
        );
        assert_eq!(
            p.header("x-vestibule-username"),
            Some("conn-alice"),
            "{p:?}"
        );
        assert!(p.header("forwarded").is_some(), "{p:?}");
        assert!(p.header("x-forwarded-for").is_some(), "{p:?}");
        assert!(p.header("x-forwarded-proto").is_some(), "{p:?}");
        assert!(p.header("host").is_some(), "{p:?}");
        assert!(p.header("x-hop").is_none(), "{p:?}");
    }
}

#[tokio::test]
async fn an_http_1_0_upstream_is_answered_in_the_clients_version() {
    let up = logging_upstream().await;
    let app = framing_gateway(&up.url).await;
    let mut c = RawClient::connect(&app).await;
    c.send(b"GET /api/old HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let a = c.answer().await.expect("an answer");
    assert!(a.status_line.starts_with("HTTP/1.1 200"), "{a:?}");
    assert_eq!(a.body, b"old");
    // Still a kept-alive HTTP/1.1 connection.
    c.send(b"GET /api/next HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let a = c.answer().await.expect("an answer");
    assert_eq!(a.header("x-seen"), Some("/api/next"), "{a:?}");
}

#[tokio::test]
async fn method_overrides_and_trace_never_reach_an_upstream() {
    let up = logging_upstream().await;
    let app = framing_gateway(&up.url).await;
    let mut owner = app.signed_up("pat-owner", PASSWORD).await;
    let read_token = owner.create_token(&json!({"name": "ro"})).await;
    let mut c = RawClient::connect(&app).await;
    c.send(
        format!(
            "TRACE /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {read_token}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let a = c.answer().await.expect("an answer");
    assert_eq!(a.status(), 405, "{a:?}");
    assert!(String::from_utf8_lossy(&a.body).contains("method_not_allowed"));
    c.send(
        format!(
            "GET /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {read_token}\r\n\
             X-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\nX-Method-Override: DELETE\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let a = c.answer().await.expect("an answer");
    assert_eq!(a.status(), 200, "{a:?}");
    let parsed = up.parsed();
    assert_eq!(
        parsed.len(),
        1,
        "TRACE never reached the upstream: {parsed:?}"
    );
    assert_eq!(parsed[0].method, "GET");
    for name in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ] {
        assert!(parsed[0].header(name).is_none(), "{name}: {parsed:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The differential property test.

/// Where a request goes on the upstream.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// Read, then answered.
    Echo,
    /// Answered before the body is read, then drained.
    Early,
    /// Half the body read, answered, connection closed.
    Half,
}

#[derive(Debug, Clone)]
enum BodyKind {
    None,
    Length(Vec<u8>),
    Chunked(Vec<Vec<u8>>),
}

impl BodyKind {
    fn bytes(&self) -> Vec<u8> {
        match self {
            BodyKind::None => Vec::new(),
            BodyKind::Length(b) => b.clone(),
            BodyKind::Chunked(c) => c.concat(),
        }
    }
}

/// Names a client's `Connection` may list.
const CONNECTION_NAMES: [&str; 7] = [
    "x-vestibule-user-id",
    "x-vestibule-username",
    "forwarded",
    "x-forwarded-for",
    "content-length",
    "host",
    "x-hop",
];

#[derive(Debug, Clone)]
struct Req {
    route: Route,
    post: bool,
    upgrade: bool,
    body: BodyKind,
    expect: bool,
    connection: Vec<usize>,
    spoof: bool,
}

#[derive(Debug, Clone)]
struct Script {
    /// `None`: anonymous; else an index into the users.
    user: Option<usize>,
    reqs: Vec<Req>,
    pipelined: bool,
    /// Close the connection after this share (per mille) of the bytes.
    cut: Option<u16>,
}

fn body_strategy() -> impl Strategy<Value = BodyKind> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        Just(BodyKind::None),
        bytes.clone().prop_map(BodyKind::Length),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..24), 0..4)
            .prop_map(BodyKind::Chunked),
    ]
}

fn req_strategy() -> impl Strategy<Value = Req> {
    (
        prop_oneof![Just(Route::Echo), Just(Route::Early), Just(Route::Half)],
        any::<bool>(),
        prop::bool::weighted(0.25),
        body_strategy(),
        prop::bool::weighted(0.25),
        proptest::collection::vec(0..CONNECTION_NAMES.len(), 0..3),
        prop::bool::weighted(0.3),
    )
        .prop_map(
            |(route, post, upgrade, body, expect, connection, spoof)| Req {
                route,
                post: post && !upgrade,
                upgrade,
                body,
                expect,
                connection,
                spoof,
            },
        )
}

fn script_strategy() -> impl Strategy<Value = Script> {
    (
        prop_oneof![Just(None), Just(Some(0)), Just(Some(1))],
        proptest::collection::vec(req_strategy(), 1..5),
        any::<bool>(),
        prop::option::weighted(0.25, 0u16..1000),
    )
        .prop_map(|(user, reqs, pipelined, cut)| Script {
            user,
            reqs,
            pipelined,
            cut,
        })
}

impl Req {
    /// The request's target, naming the case, client and position.
    fn target(&self, case: usize, client: usize, n: usize) -> String {
        let path = match (self.upgrade, self.route) {
            (true, _) => "/api/ws",
            (false, Route::Echo) => "/api/echo",
            (false, Route::Early) => "/api/early",
            (false, Route::Half) => "/api/half",
        };
        format!("{path}?case={case}&c={client}&n={n}")
    }

    /// Whether the gateway refuses it before the upstream (a handshake announcing a body).
    fn refused(&self) -> bool {
        self.upgrade
            && !matches!(&self.body, BodyKind::None)
            && !matches!(&self.body, BodyKind::Length(b) if b.is_empty())
    }

    /// The body the upstream reads: half of it on `/api/half` with a Content-Length, none with
    /// chunked framing there, none on an upgrade (refused with one).
    fn expected_body(&self) -> Vec<u8> {
        match (self.upgrade, self.route, &self.body) {
            (true, _, _) => Vec::new(),
            (false, Route::Half, BodyKind::Length(b)) => b[..b.len() / 2].to_vec(),
            // The upstream reads none of a chunked body there.
            (false, Route::Half, BodyKind::Chunked(_)) => Vec::new(),
            (false, _, b) => b.bytes(),
        }
    }

    fn encode(&self, target: &str, user: Option<&RawUser>, origin: &str) -> Vec<u8> {
        let method = if self.post { "POST" } else { "GET" };
        let mut head =
            format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nOrigin: {origin}\r\n");
        if let Some(u) = user {
            head.push_str(&format!(
                "Cookie: {COOKIE}={}\r\nx-csrf-token: {}\r\n",
                u.cookie, u.csrf
            ));
        }
        let mut connection: Vec<&str> = self
            .connection
            .iter()
            .map(|i| CONNECTION_NAMES[*i])
            .collect();
        if self.upgrade {
            connection.insert(0, "Upgrade");
            head.push_str("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
        }
        if !connection.is_empty() {
            head.push_str(&format!("Connection: {}\r\n", connection.join(", ")));
        }
        head.push_str("x-hop: 1\r\n");
        if self.spoof {
            head.push_str("X-Vestibule-User-Id: 1\r\nX-Vestibule-Username: root\r\n");
        }
        if self.expect && !matches!(self.body, BodyKind::None) {
            head.push_str("Expect: 100-continue\r\n");
        }
        let mut out = match &self.body {
            BodyKind::None => {
                head.push_str("\r\n");
                head.into_bytes()
            }
            BodyKind::Length(b) => {
                head.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
                let mut out = head.into_bytes();
                out.extend_from_slice(b);
                out
            }
            BodyKind::Chunked(chunks) => {
                head.push_str("Transfer-Encoding: chunked\r\n\r\n");
                let mut out = head.into_bytes();
                for c in chunks {
                    out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    out.extend_from_slice(c);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                out
            }
        };
        out.shrink_to_fit();
        out
    }
}

/// What one client did: per request, whether it was sent whole, and the answers it read.
struct Outcome {
    whole: Vec<bool>,
    answers: Vec<Answer>,
}

async fn run_client(
    app: &TestApp,
    script: &Script,
    case: usize,
    client: usize,
    users: &[RawUser],
) -> Outcome {
    let user = script.user.map(|u| &users[u]);
    let encoded: Vec<Vec<u8>> = script
        .reqs
        .iter()
        .enumerate()
        .map(|(n, r)| r.encode(&r.target(case, client, n), user, TRUSTED))
        .collect();
    let total: usize = encoded.iter().map(Vec::len).sum();
    let mut budget = script
        .cut
        .map_or(usize::MAX, |c| total * usize::from(c) / 1000);
    let mut c = RawClient::connect(app).await;
    let mut whole = Vec::new();
    let mut answers = Vec::new();
    let mut sent = 0;
    for bytes in &encoded {
        let n = bytes.len().min(budget);
        budget -= n;
        if !c.send(&bytes[..n]).await {
            break;
        }
        whole.push(n == bytes.len());
        sent += 1;
        if n < bytes.len() {
            break;
        }
        if !script.pipelined {
            match c.answer().await {
                Some(a) => answers.push(a),
                None => break,
            }
        }
    }
    if script.pipelined && whole.iter().all(|w| *w) {
        for _ in 0..sent {
            match c.answer().await {
                Some(a) => answers.push(a),
                None => break,
            }
        }
    }
    c.close().await;
    Outcome { whole, answers }
}

/// Checks one client's requests against what the upstream parsed of them.
fn check_client(
    script: &Script,
    outcome: &Outcome,
    parsed: &[&Parsed],
    case: usize,
    client: usize,
    users: &[RawUser],
) -> Result<(), TestCaseError> {
    // The requests that can reach the upstream, in order (a handshake with a body cannot).
    let forwarded: Vec<usize> = (0..outcome.whole.len())
        .filter(|n| !script.reqs[*n].refused())
        .collect();
    prop_assert!(
        parsed.len() <= forwarded.len(),
        "client {client} sent {} forwardable requests, the upstream parsed {}: {parsed:?}",
        forwarded.len(),
        parsed.len()
    );
    for (p, &n) in parsed.iter().zip(&forwarded) {
        let req = &script.reqs[n];
        prop_assert_eq!(
            &p.target,
            &req.target(case, client, n),
            "order: {:?}",
            parsed
        );
        prop_assert!(
            !req.refused(),
            "a handshake with a body reached the upstream: {:?}",
            p
        );
        let method = if req.post { "POST" } else { "GET" };
        prop_assert_eq!(&p.method, method);
        // A request the upstream read to its end has exactly the body sent. One whose upstream
        // connection ended inside the body (the client cut it, or went away before the gateway
        // had delivered it) shows a prefix; `/api/half` reads what it chooses.
        let body = req.expected_body();
        if p.complete && outcome.whole[n] && !matches!(req.route, Route::Half) {
            prop_assert_eq!(&p.body, &body, "body of {}", p.target);
        } else {
            prop_assert!(body.starts_with(&p.body), "body of {}: {:?}", p.target, p);
        }
        match script.user.map(|u| &users[u]) {
            Some(u) => {
                prop_assert_eq!(
                    p.header("x-vestibule-user-id"),
                    Some(&*u.id.to_string()),
                    "{:?}",
                    p
                );
                prop_assert_eq!(
                    p.header("x-vestibule-username"),
                    Some(u.name.as_str()),
                    "{:?}",
                    p
                );
            }
            None => {
                prop_assert!(p.header("x-vestibule-user-id").is_none(), "{:?}", p);
                prop_assert!(p.header("x-vestibule-username").is_none(), "{:?}", p);
            }
        }
        let ours = p
            .headers
            .iter()
            .filter(|(n, _)| n.starts_with("x-vestibule"))
            .count();
        prop_assert_eq!(ours, if script.user.is_some() { 2 } else { 0 }, "{:?}", p);
        if req.connection.contains(&(CONNECTION_NAMES.len() - 1)) {
            prop_assert!(p.header("x-hop").is_none(), "named by Connection: {:?}", p);
        }
        for gone in ["expect", "x-csrf-token", "cookie"] {
            prop_assert!(
                p.header(gone).is_none(),
                "{} reached the upstream: {:?}",
                gone,
                p
            );
        }
        prop_assert!(
            p.header("forwarded").is_some() && p.header("host").is_some(),
            "{:?}",
            p
        );
        if req.upgrade {
            prop_assert!(
                p.header("content-length").is_none() && p.header("transfer-encoding").is_none(),
                "a handshake with framing: {:?}",
                p
            );
        }
    }
    // Every answer from the upstream is the answer to the request in its position.
    for (i, a) in outcome.answers.iter().enumerate() {
        if let Some(seen) = a.header("x-seen") {
            prop_assert_eq!(seen, script.reqs[i].target(case, client, i), "answer {}", i);
            prop_assert!(
                parsed.iter().any(|p| p.target == seen),
                "answered {} but the upstream never parsed it",
                seen
            );
        } else if script.reqs[i].refused() {
            prop_assert_eq!(a.status(), 400, "{:?}", a);
        }
    }
    Ok(())
}

async fn run_case(
    app: &TestApp,
    up: &LoggingUpstream,
    users: &[RawUser],
    case: usize,
    scripts: &[Script],
) -> Result<(), TestCaseError> {
    let outcomes = futures_util::future::join_all(
        scripts
            .iter()
            .enumerate()
            .map(|(i, s)| run_client(app, s, case, i, users)),
    )
    .await;
    // Requests cut by a client end on the upstream when the gateway closes that connection;
    // wait (bounded) until the log stops growing.
    let mut last = Vec::new();
    for _ in 0..20 {
        let now = up.parsed();
        if now == last {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let parsed = up.parsed();
    let tag = format!("case={case}&");
    for p in &parsed {
        // Anything not of our making is a desynchronised parse.
        let ok =
            p.target.contains("?case=") && p.target.contains("&c=") && p.target.contains("&n=");
        prop_assert!(ok, "the upstream parsed a request no client sent: {:?}", p);
    }
    for (i, (script, outcome)) in scripts.iter().zip(&outcomes).enumerate() {
        let c = format!("&c={i}&");
        let mine: Vec<&Parsed> = parsed
            .iter()
            .filter(|p| p.target.contains(&tag) && p.target.contains(&c))
            .collect();
        check_client(script, outcome, &mine, case, i, users)?;
    }
    Ok(())
}

/// The differential property: random request sequences from several clients at once reach the
/// upstream exactly as sent, in order, each with the identity Vestibule assigned. Bounded for CI
/// (`PROPTEST_CASES`, default 32).
#[test]
fn the_upstream_parses_exactly_the_requests_clients_sent() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (app, up, users) = rt.block_on(async {
        let up = logging_upstream().await;
        let app = framing_gateway(&up.url).await;
        let users = vec![
            raw_user(&app, "frame-ann").await,
            raw_user(&app, "frame-bob").await,
        ];
        (app, up, users)
    });
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let case = AtomicUsize::new(0);
    let result = runner.run(
        &proptest::collection::vec(script_strategy(), 1..4),
        |scripts| {
            let n = case.fetch_add(1, Ordering::SeqCst);
            rt.block_on(run_case(&app, &up, &users, n, &scripts))
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
