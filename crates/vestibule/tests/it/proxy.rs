//! The same-origin proxy against real upstreams on random ports: header hygiene, identity,
//! gateway policy, CSRF, streaming both ways, WebSocket passthrough, rewriting, failures and
//! request smuggling.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use vestibule::config::RawConfig;
use vestibule::proxy::{RawUpstream, UpstreamPolicy};

use crate::support::{COOKIE, PASSWORD, TestApp, assert_error, set_cookie_value, set_cookies};

const MIB: usize = 1024 * 1024;

/// What an upstream saw.
#[derive(Default)]
struct Seen {
    hits: AtomicUsize,
    paths: Mutex<Vec<String>>,
    uploaded: AtomicUsize,
    release: Notify,
}

impl Seen {
    fn paths(&self) -> Vec<String> {
        self.paths.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

fn headers_json(h: &HeaderMap) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in h {
        let list = m
            .entry(k.as_str().to_owned())
            .or_insert_with(|| Value::Array(vec![]));
        if let Value::Array(a) = list {
            a.push(Value::from(
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ));
        }
    }
    Value::Object(m)
}

/// Echoes method, path and headers; counts the body as it streams in.
async fn echo(State(seen): State<Arc<Seen>>, req: Request) -> Response {
    seen.hits.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut p) = seen.paths.lock() {
        p.push(req.uri().to_string());
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let headers = headers_json(req.headers());
    let mut body = req.into_body().into_data_stream();
    let mut len = 0;
    while let Some(Ok(chunk)) = body.next().await {
        len += chunk.len();
        seen.uploaded.fetch_add(chunk.len(), Ordering::SeqCst);
    }
    axum::Json(json!({"method": method, "uri": uri, "headers": headers, "body_len": len}))
        .into_response()
}

/// 1 MiB, then waits for the test to say it received it, then 7 MiB more.
async fn big(State(seen): State<Arc<Seen>>) -> Response {
    let stream = futures_util::stream::unfold((0usize, seen), |(i, seen)| async move {
        if i == 8 {
            return None;
        }
        if i == 1 {
            // Bounded: a proxy that buffers would never deliver chunk 0, and the test fails.
            let _ = tokio::time::timeout(Duration::from_secs(20), seen.release.notified()).await;
        }
        Some((
            Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; MIB])),
            (i + 1, seen),
        ))
    });
    Body::from_stream(stream).into_response()
}

async fn redirect(headers: HeaderMap) -> Response {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut res = StatusCode::FOUND.into_response();
    let h = res.headers_mut();
    h.insert(
        "location",
        format!("http://{host}/notes/7?x=1").parse().expect("value"),
    );
    for c in [
        "pref=dark; Domain=backend.internal; Path=/; Secure; SameSite=None",
        "vestibule_session=planted; Path=/",
        "vestibule_device=planted; Path=/",
    ] {
        h.append("set-cookie", c.parse().expect("value"));
    }
    res
}

/// A careless backend: reflects any Origin with credentials.
async fn reflect_cors(headers: HeaderMap) -> Response {
    let origin = headers.get("origin").cloned();
    let mut res = "open to all".into_response();
    if let Some(o) = origin {
        res.headers_mut().insert("access-control-allow-origin", o);
        res.headers_mut().insert(
            "access-control-allow-credentials",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    res
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(10)).await;
    "late"
}

/// An HTTP upstream on a random port: `/big`, `/redirect`, `/slow`, everything else echoes.
async fn upstream() -> (String, Arc<Seen>) {
    let (url, seen, _) = upstream_counted().await;
    (url, seen)
}

/// [`upstream`], also counting the TCP connections it accepted.
async fn upstream_counted() -> (String, Arc<Seen>, Arc<AtomicUsize>) {
    use axum::serve::ListenerExt;
    let seen = Arc::new(Seen::default());
    let router = Router::new()
        .route("/api/big", get(big))
        .route("/redirect", get(redirect))
        .route("/api/slow", get(slow))
        .route("/api/cors", get(reflect_cors))
        .fallback(any(echo))
        .with_state(seen.clone());
    let conns = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let counter = conns.clone();
    let listener = listener.tap_io(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), seen, conns)
}

fn upstream_cfg(prefix: &str, url: &str, policy: UpstreamPolicy) -> RawUpstream {
    RawUpstream {
        prefix: prefix.into(),
        url: url.into(),
        policy,
        ..RawUpstream::default()
    }
}

async fn gateway(tweak: impl FnOnce(&mut RawConfig)) -> TestApp {
    TestApp::spawn_with(tweak).await
}

/// A gateway forwarding `/api` to `url` for anyone (`anonymous_ok`).
async fn api_gateway(url: &str) -> TestApp {
    gateway(|r| {
        r.upstream = vec![upstream_cfg("/api", url, UpstreamPolicy::AnonymousOk)];
    })
    .await
}

async fn json_of(res: reqwest::Response) -> Value {
    assert_eq!(res.status(), 200);
    res.json().await.expect("json")
}

fn seen_header<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"][name][0].as_str()
}

#[tokio::test]
async fn gateway_sends_identity_and_strips_spoofed_headers_and_credentials() {
    let (url, _) = upstream().await;
    let app = gateway(|r| {
        r.upstream = vec![upstream_cfg("/api", &url, UpstreamPolicy::RequireAuth)];
    })
    .await;
    let res = app
        .post_anon(
            "/auth/signup",
            &json!({"username": "alice", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let session = set_cookie_value(&res, COOKIE).expect("session cookie");
    let body: Value = res.json().await.expect("json");
    let csrf = body["csrf_token"].as_str().unwrap_or_default().to_owned();
    let host = app.base.trim_start_matches("http://").to_owned();
    let id = app
        .state
        .users
        .by_username("alice")
        .await
        .expect("lookup")
        .expect("alice")
        .id;
    let res = app
        .raw_client()
        .get(app.url("/api/notes?page=2"))
        .header("X-Vestibule-User-Id", "999")
        .header("x_vestibule_user_id", "999")
        .header("X-VESTIBULE-USERNAME", "root")
        .header("x-vestibule_username", "root")
        .header("x-csrf-token", csrf)
        .header("cookie", format!("theme=dark; {COOKIE}={session}; lang=en"))
        .header("x-forwarded-for", "6.6.6.6")
        .send()
        .await
        .expect("request");
    let echo = json_of(res).await;
    assert_eq!(echo["uri"], "/api/notes?page=2");
    assert_eq!(
        seen_header(&echo, "x-vestibule-user-id"),
        Some(&*id.to_string())
    );
    assert_eq!(seen_header(&echo, "x-vestibule-username"), Some("alice"));
    let names: Vec<&String> = echo["headers"]
        .as_object()
        .expect("headers")
        .keys()
        .collect();
    let ours: Vec<&&String> = names
        .iter()
        .filter(|n| n.replace('_', "-").starts_with("x-vestibule"))
        .collect();
    assert_eq!(
        ours.len(),
        2,
        "only the gateway's identity headers: {names:?}"
    );
    assert_eq!(
        echo["headers"]["x-vestibule-user-id"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let cookies = echo["headers"]["cookie"].to_string();
    assert!(
        cookies.contains("theme=dark; lang=en"),
        "other cookies stay: {cookies}"
    );
    assert!(
        !cookies.contains(COOKIE),
        "the session cookie never reaches the upstream: {cookies}"
    );
    assert!(seen_header(&echo, "x-csrf-token").is_none());
    assert_eq!(
        seen_header(&echo, "x-forwarded-for"),
        Some("127.0.0.1"),
        "client XFF replaced"
    );
    assert_eq!(seen_header(&echo, "x-forwarded-proto"), Some("http"));
    assert_eq!(seen_header(&echo, "x-forwarded-host"), Some(&*host));
    assert_eq!(
        seen_header(&echo, "forwarded"),
        Some(&*format!("for=127.0.0.1;host=\"{host}\";proto=http"))
    );
    assert_eq!(
        seen_header(&echo, "host"),
        Some(&*host),
        "Host preserved by default"
    );
}

/// Behind a trusted front proxy, upstreams get the client that proxy named, not the proxy's own
/// address; an untrusted peer's header is still replaced by the peer.
#[tokio::test]
async fn upstreams_see_the_client_a_trusted_proxy_named() {
    let (url, _) = upstream().await;
    let app = gateway(|r| {
        r.upstream = vec![upstream_cfg("/api", &url, UpstreamPolicy::AnonymousOk)];
        r.limits.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let res = app
        .raw_client()
        .get(app.url("/api/who"))
        .header("x-forwarded-for", "6.6.6.6, 203.0.113.7")
        .send()
        .await
        .expect("request");
    let echo = json_of(res).await;
    assert_eq!(seen_header(&echo, "x-forwarded-for"), Some("203.0.113.7"));
    assert!(
        seen_header(&echo, "forwarded").is_some_and(|f| f.starts_with("for=203.0.113.7;")),
        "{echo}"
    );
}

#[tokio::test]
async fn bearer_requests_reach_the_upstream_as_identity_without_authorization() {
    let (url, _) = upstream().await;
    let app = gateway(|r| {
        r.upstream = vec![upstream_cfg("/api", &url, UpstreamPolicy::RequireAuth)];
    })
    .await;
    app.signed_up("bob", PASSWORD).await;
    let token = app.bearer_login("bob", PASSWORD).await;
    let res = app
        .with_bearer(reqwest::Method::POST, "/api/notes", &token)
        .body("hello")
        .send()
        .await
        .expect("request");
    let echo = json_of(res).await;
    assert_eq!(seen_header(&echo, "x-vestibule-username"), Some("bob"));
    assert!(seen_header(&echo, "authorization").is_none(), "{echo}");
    assert_eq!(echo["body_len"], 5);
}

#[tokio::test]
async fn the_upstream_gets_the_request_id_the_client_gets_back() {
    let (url, _) = upstream().await;
    let app = api_gateway(&url).await;
    // (what the client sends, whether the front keeps it)
    let long = "a".repeat(65);
    for (sent, kept) in [
        (None, false),
        (Some("trace-42"), true),
        // Refused by the front (over 64 bytes): the upstream must not get it either.
        (Some(long.as_str()), false),
    ] {
        let mut req = app.raw_client().get(app.url("/api/notes"));
        if let Some(id) = sent {
            req = req.header("x-request-id", id);
        }
        let res = req.send().await.expect("request");
        let answered = res
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .expect("every answer has a request id");
        let echo = json_of(res).await;
        assert_eq!(
            seen_header(&echo, "x-request-id"),
            Some(answered.as_str()),
            "sent {sent:?}: {echo}"
        );
        assert_eq!(
            echo["headers"]["x-request-id"].as_array().map(Vec::len),
            Some(1),
            "{echo}"
        );
        match (sent, kept) {
            (Some(id), true) => assert_eq!(answered, id),
            (Some(id), false) => assert_ne!(answered, id),
            (None, _) => assert_eq!(answered.len(), 16, "{answered}"),
        }
    }
}

#[tokio::test]
async fn require_auth_refuses_anonymous_at_the_gateway_and_anonymous_ok_sends_no_identity() {
    let (url, seen) = upstream().await;
    let app = gateway(|r| {
        r.upstream = vec![
            upstream_cfg("/api", &url, UpstreamPolicy::RequireAuth),
            upstream_cfg("/public", &url, UpstreamPolicy::AnonymousOk),
        ];
    })
    .await;
    let anon = app.raw_client();
    let res = anon
        .get(app.url("/api/notes"))
        .header("x-vestibule-user-id", "1")
        .send()
        .await
        .expect("request");
    assert_error(res, 401, "not_authenticated").await;
    assert_eq!(
        seen.hits.load(Ordering::SeqCst),
        0,
        "the upstream never saw it"
    );
    let res = anon
        .get(app.url("/public/x"))
        .header("x-vestibule-user-id", "1")
        .header("X_Vestibule_Username", "admin")
        .send()
        .await
        .expect("request");
    let echo = json_of(res).await;
    let names = echo["headers"].to_string();
    assert!(!names.to_ascii_lowercase().contains("vestibule"), "{names}");
    let res = anon.get(app.url("/apix")).send().await.expect("request");
    assert_error(res, 404, "not_found").await;
}

#[tokio::test]
async fn csrf_is_enforced_on_every_proxied_write() {
    let (url, seen) = upstream().await;
    let app = api_gateway(&url).await;
    let client = app.signed_up("carol", PASSWORD).await;
    let res = client
        .http
        .post(app.url("/api/notes"))
        .send()
        .await
        .expect("request");
    assert_error(res, 403, "csrf_token_missing").await;
    let res = client
        .http
        .delete(app.url("/api/notes/1"))
        .header("origin", "http://evil.test")
        .header("x-csrf-token", client.csrf.clone().unwrap_or_default())
        .send()
        .await
        .expect("request");
    assert_error(res, 403, "csrf_origin_untrusted").await;
    assert_eq!(
        seen.hits.load(Ordering::SeqCst),
        0,
        "refused before the upstream"
    );
    let res = client.post("/api/notes").await;
    let echo = json_of(res).await;
    assert_eq!(echo["method"], "POST");
}

#[tokio::test]
async fn change_origin_sends_the_upstream_host_and_strip_prefix_maps_paths() {
    let (url, _) = upstream().await;
    let app = gateway(|r| {
        r.upstream = vec![RawUpstream {
            change_origin: true,
            strip_prefix: true,
            ..upstream_cfg("/svc", &url, UpstreamPolicy::AnonymousOk)
        }];
    })
    .await;
    let echo = json_of(
        app.raw_client()
            .get(app.url("/svc/a/b?q=1"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(echo["uri"], "/a/b?q=1");
    assert_eq!(
        seen_header(&echo, "host"),
        Some(url.trim_start_matches("http://"))
    );
    let echo = json_of(
        app.raw_client()
            .get(app.url("/svc"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(echo["uri"], "/");
}

#[tokio::test]
async fn location_and_set_cookie_from_the_backend_work_on_the_proxy_origin() {
    let (url, _) = upstream().await;
    let app = gateway(|r| {
        r.upstream = vec![RawUpstream {
            change_origin: true,
            strip_prefix: true,
            ..upstream_cfg("/svc", &url, UpstreamPolicy::AnonymousOk)
        }];
    })
    .await;
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(app.url("/svc/redirect"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 302);
    assert_eq!(res.headers()["location"], "/svc/notes/7?x=1");
    let cookies = set_cookies(&res);
    assert_eq!(
        cookies.len(),
        1,
        "the planted session and device cookies are dropped: {cookies:?}"
    );
    let c = &cookies[0];
    assert!(c.starts_with("pref=dark"), "{c}");
    assert!(!c.contains("Domain") && !c.contains("Secure"), "{c}");
    assert!(c.contains("Path=/svc") && c.contains("SameSite=Lax"), "{c}");
}

#[tokio::test]
async fn hop_by_hop_headers_do_not_cross_the_proxy() {
    let (url, _) = upstream().await;
    let app = api_gateway(&url).await;
    let res = raw(
        &app,
        "GET /api/h HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
         Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eDp5\r\nUpgrade: h2c\r\n\
         X-Kept: yes\r\n\r\n",
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    let body = &res[res.find("\r\n\r\n").map_or(0, |i| i + 4)..];
    let echo: Value = serde_json::from_str(body.trim()).expect("json body");
    for gone in [
        "x-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(
            echo["headers"].get(gone).is_none(),
            "{gone} reached the upstream: {echo}"
        );
    }
    assert_eq!(seen_header(&echo, "x-kept"), Some("yes"));
}

/// Sends raw bytes to the app and reads until the server closes or 3 s pass.
async fn raw(app: &TestApp, request: &str) -> String {
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                // One response with Content-Length is complete: stop reading a kept-alive socket.
                let text = String::from_utf8_lossy(&out);
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_owned)
                        })
                        .and_then(|v| v.trim().parse::<usize>().ok());
                    if len.is_some_and(|l| out.len() >= end + 4 + l) {
                        break;
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_dead_upstream_gets_a_502_naming_only_its_prefix_html_for_pages_json_for_fetches() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", dead.local_addr().expect("addr"));
    drop(dead);
    let app = gateway(|r| {
        r.upstream = vec![RawUpstream {
            name: Some("the notes API".into()),
            start_hint: Some("start it (cargo run -p notes)".into()),
            ..upstream_cfg("/api", &url, UpstreamPolicy::AnonymousOk)
        }];
    })
    .await;
    let res = app
        .raw_client()
        .get(app.url("/api/x"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("request");
    let id = res.headers()["x-request-id"]
        .to_str()
        .expect("request id")
        .to_owned();
    let body = assert_error(res, 502, "upstream_unavailable").await;
    // Anonymous clients learn the prefix and the request id, not the internal URL, the
    // upstream's name or the configuration key (those are logged with the request id).
    assert_eq!(body["message"], "the upstream for /api is not answering");
    assert!(body["hint"].as_str().unwrap_or("").contains(&id), "{body}");
    let text = body.to_string();
    for secret in [
        url.as_str(),
        "127.0.0.1",
        "notes API",
        "cargo run",
        "upstream[",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let res = app
        .raw_client()
        .get(app.url("/api/page"))
        .header("sec-fetch-mode", "navigate")
        .header("accept", "text/html")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 502);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/html")
    );
    let page = res.text().await.expect("text");
    assert!(
        page.contains("the upstream for /api is not answering"),
        "{page}"
    );
    for secret in [
        url.as_str(),
        "127.0.0.1",
        "notes API",
        "cargo run",
        "upstream[",
    ] {
        assert!(!page.contains(secret), "{secret} in {page}");
    }
    assert!(
        !page.contains("location.reload"),
        "no reload loop against a production backend"
    );
    // Both failures are counted per upstream, and the requests under the upstream's prefix.
    let metrics = app
        .raw_client()
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    let text = metrics.text().await.expect("text");
    assert!(
        text.contains("vestibule_proxy_upstream_errors_total{reason=\"/api\"} 2"),
        "{text}"
    );
    assert!(
        text.contains(
            "vestibule_http_requests_total{route=\"proxy /api\",method=\"GET\",status=\"502\"} 2"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_slow_upstream_gets_a_504_after_the_response_timeout() {
    let (url, _) = upstream().await;
    let app = gateway(|r| {
        r.upstream = vec![RawUpstream {
            response_timeout: "300ms".into(),
            ..upstream_cfg("/api", &url, UpstreamPolicy::AnonymousOk)
        }];
    })
    .await;
    let res = app
        .raw_client()
        .get(app.url("/api/slow"))
        .send()
        .await
        .expect("request");
    let body = assert_error(res, 504, "upstream_timeout").await;
    assert_eq!(
        body["message"],
        "the upstream for /api did not answer in time"
    );
    assert!(!body.to_string().contains(&url), "{body}");
}

#[tokio::test]
async fn a_download_streams_while_the_upstream_is_still_producing_it() {
    let (url, seen) = upstream().await;
    let app = api_gateway(&url).await;
    let mut res = app
        .raw_client()
        .get(app.url("/api/big"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let mut got = 0usize;
    let mut released = false;
    let read = async {
        while let Some(chunk) = res.chunk().await.expect("chunk") {
            got += chunk.len();
            if got >= MIB && !released {
                // The first MiB arrived while the upstream is blocked: nothing was buffered whole.
                seen.release.notify_one();
                released = true;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read)
        .await
        .expect("the first MiB must arrive before the upstream finishes");
    assert!(released);
    assert_eq!(got, 8 * MIB);
}

#[tokio::test]
async fn an_upload_streams_to_the_upstream_before_the_client_finished_sending() {
    let (url, seen) = upstream().await;
    let app = api_gateway(&url).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let chunk = vec![b'u'; MIB];
    let send_chunk = async |s: &mut tokio::net::TcpStream| {
        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .expect("write");
        s.write_all(&chunk).await.expect("write");
        s.write_all(b"\r\n").await.expect("write");
    };
    s.write_all(
        b"POST /api/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .expect("write");
    send_chunk(&mut s).await;
    // The upstream must see the first MiB while the client still holds back the rest.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.uploaded.load(Ordering::SeqCst) < MIB / 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload was buffered by the proxy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..3 {
        send_chunk(&mut s).await;
    }
    s.write_all(b"0\r\n\r\n").await.expect("write");
    let mut buf = vec![0u8; 64 * 1024];
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !text.contains("body_len") {
        assert!(tokio::time::Instant::now() < deadline, "no answer: {text}");
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        text.contains(&format!("\"body_len\":{}", 4 * MIB)),
        "{text}"
    );
}

/// A WebSocket echo upstream that records the handshake's Origin and subprotocol.
#[allow(clippy::result_large_err)] // the error type is tungstenite's callback signature
async fn ws_upstream() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let callback = |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                                mut res: tokio_tungstenite::tungstenite::handshake::server::Response| {
                    let get = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    let protocol = get("sec-websocket-protocol");
                    if let Ok(mut r) = record.lock() {
                        r.push((get("origin"), protocol.clone()));
                    }
                    if !protocol.is_empty() {
                        res.headers_mut()
                            .insert("sec-websocket-protocol", protocol.parse().expect("value"));
                    }
                    Ok(res)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        let _ = ws.send(msg).await;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn websockets_pass_through_with_origin_and_subprotocol() {
    let (url, seen) = ws_upstream().await;
    let app = gateway(|r| {
        r.upstream = vec![upstream_cfg("/hmr", &url, UpstreamPolicy::AnonymousOk)];
    })
    .await;
    let origin = app.base.clone();
    let mut req = format!("{}/hmr", app.base.replace("http://", "ws://"))
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("origin", origin.parse().expect("value"));
    req.headers_mut()
        .insert("sec-websocket-protocol", "vite-hmr".parse().expect("value"));
    let (mut ws, res) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("in time")
    .expect("handshake through the proxy");
    assert_eq!(res.headers()["sec-websocket-protocol"], "vite-hmr");
    for i in 0..3 {
        ws.send(Message::text(format!("ping {i}")))
            .await
            .expect("send");
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time")
            .expect("open")
            .expect("message");
        assert_eq!(
            back.into_text().expect("text").as_str(),
            format!("ping {i}")
        );
    }
    let _ = ws.close(None).await;
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen, vec![(origin, "vite-hmr".to_owned())]);
}

/// A same-origin WebSocket through the gateway at `path`, checked with one echo.
async fn open_echo_ws(
    app: &TestApp,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("{}{path}", app.base.replace("http://", "ws://"))
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("origin", app.base.parse().expect("value"));
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("in time")
    .expect("handshake through the proxy");
    ws.send(Message::text("hi")).await.expect("send");
    let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo in time")
        .expect("open")
        .expect("message");
    assert_eq!(back.into_text().expect("text").as_str(), "hi");
    ws
}

/// Stopping the server closes an open WebSocket at once: a tunnel has no end of its own, and
/// the graceful stop used to wait the whole drain time (30 s) for it.
#[tokio::test]
async fn a_graceful_stop_closes_open_websockets_at_once() {
    let (url, _) = ws_upstream().await;
    let app = gateway(|r| {
        r.upstream = vec![upstream_cfg("/ws", &url, UpstreamPolicy::AnonymousOk)];
    })
    .await;
    let mut ws = open_echo_ws(&app, "/ws").await;
    tokio::time::timeout(Duration::from_secs(5), app.stop())
        .await
        .expect("stopped without waiting for the WebSocket");
    // The client sees its connection end (a close or an error, not another echo).
    let next = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the WebSocket ended in time");
    assert!(
        !matches!(next, Some(Ok(ref m)) if m.is_text()),
        "still open after the stop: {next:?}"
    );
}

/// An open WebSocket keeps its `limits.max_connections` slot until it closes: the upgraded
/// tunnel outlives the HTTP connection that started it, and used to give the slot back at the
/// upgrade (so a client could hold any number of sockets open past the cap).
#[tokio::test]
async fn open_websockets_count_against_max_connections() {
    let (url, _) = ws_upstream().await;
    let app = gateway(|r| {
        r.upstream = vec![upstream_cfg("/ws", &url, UpstreamPolicy::AnonymousOk)];
        r.limits.max_connections = 2;
    })
    .await;
    let mut first = open_echo_ws(&app, "/ws").await;
    let _second = open_echo_ws(&app, "/ws").await;
    // Both slots are held by the tunnels: a third connection is not served.
    let health = app.url("/healthz");
    let refused = reqwest::Client::new()
        .get(&health)
        .timeout(Duration::from_millis(800))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a third connection was served while two WebSockets held both slots: {refused:?}"
    );
    // Closing one gives its slot back.
    let _ = first.close(None).await;
    drop(first);
    let res = reqwest::Client::new()
        .get(&health)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("served once a WebSocket closed");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_cross_site_websocket_is_refused_at_the_gateway() {
    let (url, seen) = ws_upstream().await;
    let app = gateway(|r| {
        r.upstream = vec![upstream_cfg("/ws", &url, UpstreamPolicy::AnonymousOk)];
    })
    .await;
    let mut req = format!("{}/ws", app.base.replace("http://", "ws://"))
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("origin", "http://evil.test".parse().expect("value"));
    let err = tokio_tungstenite::connect_async(req)
        .await
        .expect_err("refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(res) => {
            assert_eq!(res.status(), 403);
            let body =
                String::from_utf8_lossy(res.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("websocket_origin_refused"), "{body}");
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    assert!(
        seen.lock().map(|s| s.is_empty()).unwrap_or(false),
        "the upstream never saw it"
    );
}

#[tokio::test]
async fn smuggling_attempts_never_reach_the_upstream_as_extra_requests() {
    let (url, seen) = upstream().await;
    let app = api_gateway(&url).await;
    // Two different Content-Lengths: hyper refuses with 400 before any handler runs.
    let res = raw(
        &app,
        "POST /api/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nbody",
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 400"), "{res}");
    // Content-Length and Transfer-Encoding: hyper ignores Content-Length (RFC 9112 §6.1), reads
    // the chunked body and closes the connection after answering, so the bytes after the body
    // are never parsed as a second request; the upstream gets one re-framed request.
    let res = raw(
        &app,
        "POST /api/b HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
         0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert!(res.contains("\"body_len\":0"), "{res}");
    assert!(
        res.to_ascii_lowercase().contains("connection: close"),
        "{res}"
    );
    assert!(!res.contains("smuggled"), "{res}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        seen.paths(),
        vec!["/api/b".to_owned()],
        "only one request reached the upstream"
    );
}

#[tokio::test]
async fn a_built_spa_is_served_with_route_fallback_caching_and_precompression() {
    let (url, seen) = upstream().await;
    let site = tempfile::tempdir().expect("tempdir");
    let root = site.path();
    std::fs::create_dir(root.join("assets")).expect("mkdir");
    std::fs::write(root.join("index.html"), "<!doctype html><p>spa index</p>").expect("write");
    std::fs::write(root.join("assets/index-BXk3a9Zq.js"), "console.log('app')").expect("write");
    std::fs::write(root.join("assets/index-BXk3a9Zq.js.br"), "BROTLI-BYTES").expect("write");
    std::fs::write(root.join("favicon.ico"), "icon").expect("write");
    let dir = root.display().to_string();
    let app = gateway(|r| {
        r.upstream = vec![upstream_cfg("/api", &url, UpstreamPolicy::RequireAuth)];
        r.static_dir = Some(dir);
    })
    .await;
    let http = app.raw_client();
    for path in ["/", "/notes/42", "/settings/profile?tab=2"] {
        let res = http.get(app.url(path)).send().await.expect("request");
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["cache-control"], "no-cache", "{path}");
        assert!(
            res.text().await.expect("text").contains("spa index"),
            "{path}"
        );
    }
    let res = http
        .get(app.url("/assets/index-BXk3a9Zq.js"))
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(res.headers()["content-encoding"], "br");
    assert_eq!(res.text().await.expect("text"), "BROTLI-BYTES");
    let res = http
        .get(app.url("/assets/index-BXk3a9Zq.js"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.text().await.expect("text"), "console.log('app')");
    let res = http
        .get(app.url("/favicon.ico"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.headers()["cache-control"], "no-cache");
    // Missing assets, /auth and upstream prefixes never get index.html.
    let res = http
        .get(app.url("/assets/gone-AAAA1111.js"))
        .send()
        .await
        .expect("request");
    assert_error(res, 404, "not_found").await;
    let res = http
        .get(app.url("/auth/nope"))
        .send()
        .await
        .expect("request");
    assert_error(res, 404, "not_found").await;
    let res = http
        .get(app.url("/api/notes"))
        .send()
        .await
        .expect("request");
    assert_error(res, 401, "not_authenticated").await;
    assert_eq!(seen.hits.load(Ordering::SeqCst), 0);
    let res = http
        .delete(app.url("/notes/1"))
        .send()
        .await
        .expect("request");
    assert_error(res, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn credentials_are_forwarded_only_when_configured_and_scopes_still_apply() {
    let (url, seen) = upstream().await;
    let app = gateway(|r| {
        r.upstream = vec![RawUpstream {
            forward_authorization: true,
            ..upstream_cfg("/api", &url, UpstreamPolicy::RequireAuth)
        }];
    })
    .await;
    app.signed_up("dave", PASSWORD).await;
    let token = app.bearer_login("dave", PASSWORD).await;
    let res = app
        .with_bearer(reqwest::Method::GET, "/api/x", &token)
        .send()
        .await
        .expect("request");
    let echo = json_of(res).await;
    assert_eq!(
        seen_header(&echo, "authorization"),
        Some(&*format!("Bearer {token}"))
    );
    let cookie_app = gateway(|r| {
        r.upstream = vec![RawUpstream {
            forward_session_cookie: true,
            ..upstream_cfg("/api", &url, UpstreamPolicy::RequireAuth)
        }];
    })
    .await;
    let client = cookie_app.signed_up("dave", PASSWORD).await;
    let echo = json_of(client.get("/api/x").await).await;
    assert!(
        seen_header(&echo, "cookie").is_some_and(|c| c.contains(&format!("{COOKIE}="))),
        "forwarded when configured: {echo}"
    );
    // A read-only access token cannot write through the gateway.
    let mut owner = app.signed_up("erin", PASSWORD).await;
    let res = owner
        .post_json("/auth/tokens", &json!({"name": "ro"}))
        .await;
    assert_eq!(res.status(), 201);
    let pat: Value = res.json().await.expect("json");
    let pat = pat["token"].as_str().expect("token").to_owned();
    let before = seen.hits.load(Ordering::SeqCst);
    let res = app
        .with_bearer(reqwest::Method::POST, "/api/x", &pat)
        .send()
        .await
        .expect("request");
    assert_error(res, 403, "insufficient_scope").await;
    let res = app
        .with_bearer(reqwest::Method::GET, "/api/x", "vst_garbage")
        .send()
        .await
        .expect("request");
    assert_error(res, 401, "invalid_token").await;
    assert_eq!(
        seen.hits.load(Ordering::SeqCst),
        before,
        "refused at the gateway"
    );
}

#[tokio::test]
async fn an_upstream_cannot_widen_the_gateway_cors_policy() {
    let (url, _) = upstream().await;
    let app = gateway(|r| {
        r.spa_origins = vec!["http://localhost:3000".into()];
        r.upstream = vec![upstream_cfg("/api", &url, UpstreamPolicy::RequireAuth)];
    })
    .await;
    let client = app.signed_up("frank", PASSWORD).await;
    let res = client
        .http
        .get(app.url("/api/cors"))
        .header("origin", "http://evil.test")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers().get("access-control-allow-origin").is_none()
            && res
                .headers()
                .get("access-control-allow-credentials")
                .is_none(),
        "the backend's reflected CORS headers must not pass: {:?}",
        res.headers()
    );
    let res = client
        .http
        .get(app.url("/api/cors"))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "http://localhost:3000",
        "an allowed origin gets the gateway's own CORS answer"
    );
}

#[tokio::test]
async fn a_signed_identity_assertion_verifies_with_the_published_jwks() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    let (url, _) = upstream().await;
    let app = gateway(|r| {
        r.upstream = vec![
            RawUpstream {
                identity_assertion: true,
                ..upstream_cfg("/api", &url, UpstreamPolicy::RequireAuth)
            },
            upstream_cfg("/plain", &url, UpstreamPolicy::AnonymousOk),
        ];
    })
    .await;
    let client = app.signed_up("gina", PASSWORD).await;
    let echo = json_of(client.get("/api/me").await).await;
    let jwt = seen_header(&echo, "x-vestibule-assertion")
        .expect("assertion sent")
        .to_owned();
    let jwks: Value = client
        .get("/auth/jwks.json")
        .await
        .json()
        .await
        .expect("jwks");
    let key = &jwks["keys"][0];
    assert_eq!(key["alg"], "EdDSA");
    let x = URL_SAFE_NO_PAD
        .decode(key["x"].as_str().expect("x"))
        .expect("b64");
    let public = VerifyingKey::from_bytes(&x.try_into().expect("32 bytes")).expect("key");
    let parts: Vec<&str> = jwt.split('.').collect();
    let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).expect("b64")).expect("sig");
    public
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .expect("the assertion verifies with the published key");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("claims");
    assert_eq!(claims["preferred_username"], "gina");
    assert_eq!(claims["aud"], url.as_str());
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    assert_eq!(lifetime, 60);
    assert!(app.dir.path().join("vestibule-identity.key").exists());
    // A client cannot forge one, even towards an upstream that does not ask for assertions.
    let res = client
        .http
        .get(app.url("/plain/x"))
        .header("x-vestibule-assertion", "forged")
        .send()
        .await
        .expect("request");
    let echo = json_of(res).await;
    assert!(
        seen_header(&echo, "x-vestibule-assertion").is_none(),
        "{echo}"
    );
}

#[tokio::test]
async fn an_h2c_upgrade_is_not_tunnelled_past_the_gateway() {
    let (url, seen) = upstream().await;
    let app = api_gateway(&url).await;
    let res = raw(
        &app,
        "GET /api/h2c HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    )
    .await;
    assert!(
        res.starts_with("HTTP/1.1 200"),
        "answered as a plain request: {res}"
    );
    let body = &res[res.find("\r\n\r\n").map_or(0, |i| i + 4)..];
    let echo: Value = serde_json::from_str(body.trim()).expect("json body");
    for gone in ["upgrade", "connection", "http2-settings"] {
        assert!(
            echo["headers"].get(gone).is_none(),
            "{gone} reached the upstream: {echo}"
        );
    }
    assert_eq!(seen.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn dot_segments_cannot_move_a_request_to_another_prefix() {
    let (url, seen) = upstream().await;
    let app = gateway(|r| {
        r.upstream = vec![
            upstream_cfg("/api", &url, UpstreamPolicy::RequireAuth),
            upstream_cfg("/public", &url, UpstreamPolicy::AnonymousOk),
        ];
    })
    .await;
    for path in [
        "/public/../api/secret",
        "/public/%2e%2e/api/secret",
        "/public/..%2Fapi/secret",
    ] {
        let res = raw(
            &app,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(res.starts_with("HTTP/1.1 400"), "{path}: {res}");
        assert!(res.contains("invalid_path"), "{path}: {res}");
    }
    assert_eq!(
        seen.hits.load(Ordering::SeqCst),
        0,
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn percent_encoded_prefixes_are_routed_by_their_normal_form() {
    let (url, seen) = upstream().await;
    let app = gateway(|r| {
        r.upstream = vec![
            upstream_cfg("/admin", &url, UpstreamPolicy::RequireAuth),
            upstream_cfg("/", &url, UpstreamPolicy::AnonymousOk),
        ];
    })
    .await;
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    // `/%61dmin` is `/admin` to every backend: it gets `/admin`'s policy.
    for path in ["/%61dmin/panel", "/%61%64%6D%69%6E/panel", "/a%64min"] {
        let res = raw(&app, &get(path)).await;
        assert!(res.starts_with("HTTP/1.1 401"), "{path}: {res}");
        assert!(res.contains("not_authenticated"), "{path}: {res}");
    }
    // An encoded slash or backslash that a decoding backend reads as `/admin/…`.
    for path in [
        "/admin%2Fpanel",
        "/admin%2fpanel",
        "/admin%5Cpanel",
        "/%61dmin%5cpanel",
    ] {
        let res = raw(&app, &get(path)).await;
        assert!(res.starts_with("HTTP/1.1 400"), "{path}: {res}");
        assert!(res.contains("invalid_path"), "{path}: {res}");
    }
    // A `%` that is no escape at all.
    let res = raw(&app, &get("/x%zz")).await;
    assert!(res.starts_with("HTTP/1.1 400"), "{res}");
    assert_eq!(
        seen.hits.load(Ordering::SeqCst),
        0,
        "nothing reached the upstream"
    );
    // Encoded slashes that stay under the same route pass; the upstream gets the normal form.
    let res = raw(&app, &get("/files/group%2fname/%7Euser")).await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    let client = app.signed_up("norma", PASSWORD).await;
    let res = client.get("/%61dmin/panel").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        seen.paths(),
        vec![
            "/files/group%2Fname/~user".to_owned(),
            "/admin/panel".to_owned()
        ]
    );
    // The static site and its fallback decide on the same form: `/%61dmin` is not the SPA's.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("index.html"), "<p>spa</p>").expect("write");
    let spa = gateway(|r| {
        r.upstream = vec![upstream_cfg("/admin", &url, UpstreamPolicy::RequireAuth)];
        r.static_dir = Some(dir.path().to_string_lossy().into_owned());
    })
    .await;
    let res = raw(&spa, &get("/%61dmin/panel")).await;
    assert!(res.starts_with("HTTP/1.1 401"), "{res}");
    let res = raw(&spa, &get("/admin%2Fpanel")).await;
    assert!(res.starts_with("HTTP/1.1 400"), "{res}");
    let res = raw(&spa, &get("/%61uth/nothing")).await;
    assert!(
        res.starts_with("HTTP/1.1 404"),
        "Vestibule's own space: {res}"
    );
    assert!(!res.contains("spa"), "{res}");
}

// --- the upstream connection pool ------------------------------------------------------------

/// Starts `/api/big` through the gateway and reads its first MiB: the upstream then waits for
/// `seen.release`. Answers the response and the bytes read.
async fn paused_download(app: &TestApp) -> (reqwest::Response, usize) {
    let mut big = app
        .raw_client()
        .get(app.url("/api/big"))
        .send()
        .await
        .expect("request");
    let mut got = 0;
    while got < MIB {
        got += big.chunk().await.expect("chunk").expect("more").len();
    }
    (big, got)
}

#[tokio::test]
async fn connections_to_an_upstream_are_kept_alive_and_reused() {
    let (url, seen, conns) = upstream_counted().await;
    let app = api_gateway(&url).await;
    for i in 0..20 {
        let echo = json_of(app.client().get(&format!("/api/n/{i}")).await).await;
        assert_eq!(echo["uri"], format!("/api/n/{i}"));
    }
    assert_eq!(seen.hits.load(Ordering::SeqCst), 20);
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "one kept-alive connection for 20 requests"
    );
}

/// A raw HTTP/1.1 upstream that answers each request on a connection and closes the connection
/// once it has been idle for 100 ms (a short keep-alive timeout, as nginx or gunicorn have).
async fn impatient_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                // Bounded: at most 100 requests per connection.
                for _ in 0..100 {
                    let mut chunk = [0u8; 4096];
                    let read =
                        tokio::time::timeout(Duration::from_millis(100), sock.read(&mut chunk));
                    match read.await {
                        Ok(Ok(k)) if k > 0 => buf.extend_from_slice(&chunk[..k]),
                        _ => return, // idle too long, or closed: drop the connection
                    }
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        buf.clear();
                        let body = format!("conn {n}");
                        let res = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if sock.write_all(res.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), conns)
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_replaced_without_an_error() {
    let (url, conns) = impatient_upstream().await;
    let app = api_gateway(&url).await;
    let c = app.client();
    for round in 1..=3 {
        let res = c.get("/api/x").await;
        assert_eq!(res.status(), 200, "round {round}");
        assert_eq!(res.text().await.expect("body"), format!("conn {round}"));
        // Past the upstream's keep-alive: the pooled connection is closed under the pool.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(conns.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_streaming_response_does_not_hold_up_other_requests() {
    let (url, seen, conns) = upstream_counted().await;
    let app = api_gateway(&url).await;
    // Warm one connection, then start a download that pauses after its first MiB.
    assert_eq!(app.client().get("/api/warm").await.status(), 200);
    let (mut big, mut got) = paused_download(&app).await;
    // The download's connection is busy: this request takes another one and is not queued
    // behind the paused stream.
    let echo = tokio::time::timeout(Duration::from_secs(5), app.client().get("/api/during"))
        .await
        .expect("not held up by the paused download");
    assert_eq!(json_of(echo).await["uri"], "/api/during");
    assert_eq!(conns.load(Ordering::SeqCst), 2);
    seen.release.notify_one();
    while let Some(chunk) = big.chunk().await.expect("chunk") {
        got += chunk.len();
    }
    assert_eq!(got, 8 * MIB);
    // Both connections are idle again: no third one is opened.
    for _ in 0..4 {
        assert_eq!(app.client().get("/api/after").await.status(), 200);
    }
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_response_abandoned_half_way_never_leaks_into_the_next_one() {
    let (url, seen, conns) = upstream_counted().await;
    let app = api_gateway(&url).await;
    let (big, _) = paused_download(&app).await;
    drop(big); // the browser went away in the middle of the download
    seen.release.notify_one();
    // The half-read connection is closed, not pooled: the next answers are whole and their own.
    for i in 0..5 {
        let res = tokio::time::timeout(
            Duration::from_secs(5),
            app.client().get(&format!("/api/next/{i}")),
        )
        .await
        .expect("answered");
        assert_eq!(json_of(res).await["uri"], format!("/api/next/{i}"));
    }
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}

/// A raw HTTP/1.1 upstream that answers each request as soon as its headers arrive (with the
/// request path as the body), then reads and drops the request body (by `Content-Length`) before
/// the next request on the connection. Counts its connections.
async fn early_answering_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf: Vec<u8> = Vec::new();
                // Bounded: at most 100 requests per connection, 30 s per read.
                for _ in 0..100 {
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match tokio::time::timeout(Duration::from_secs(30), sock.read(&mut chunk))
                            .await
                        {
                            Ok(Ok(k)) if k > 0 => buf.extend_from_slice(&chunk[..k]),
                            _ => return,
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let mut body_left: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    buf.drain(..head_end);
                    let res = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{path}",
                        path.len()
                    );
                    if sock.write_all(res.as_bytes()).await.is_err() {
                        return;
                    }
                    // Now the body, which may still be on its way.
                    while body_left > 0 {
                        if !buf.is_empty() {
                            let k = body_left.min(buf.len());
                            buf.drain(..k);
                            body_left -= k;
                            continue;
                        }
                        let mut chunk = [0u8; 4096];
                        match tokio::time::timeout(Duration::from_secs(30), sock.read(&mut chunk))
                            .await
                        {
                            Ok(Ok(k)) if k > 0 => buf.extend_from_slice(&chunk[..k]),
                            _ => return,
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), conns)
}

#[tokio::test]
async fn a_stalled_upload_the_upstream_answered_early_does_not_hold_up_the_next_request() {
    let (url, conns) = early_answering_upstream().await;
    let app = api_gateway(&url).await;
    // A client starts a 100 kB upload, sends 10 bytes of it and stalls.
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut uploader = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    uploader
        .write_all(
            b"POST /api/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n0123456789",
        )
        .await
        .expect("write");
    // The upstream answers it at once; the gateway passes the answer on.
    let mut seen = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        while !String::from_utf8_lossy(&seen).contains("/api/upload") {
            let mut chunk = [0u8; 1024];
            let k = uploader.read(&mut chunk).await.expect("read");
            assert!(k > 0, "closed: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&chunk[..k]);
        }
    })
    .await;
    assert!(answered.is_ok(), "{}", String::from_utf8_lossy(&seen));
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    // That upstream connection is still busy carrying the stalled upload: the next request
    // takes another one instead of waiting behind it.
    let res = tokio::time::timeout(Duration::from_secs(3), app.client().get("/api/after"))
        .await
        .expect("not held up by the stalled upload");
    assert_eq!(res.text().await.expect("body"), "/api/after");
    assert_eq!(conns.load(Ordering::SeqCst), 2);
    // The upload ends; both connections serve again and no third one is opened.
    uploader
        .write_all(&vec![b'x'; 100_000 - 10])
        .await
        .expect("write the rest");
    for i in 0..4 {
        let res = app.client().get(&format!("/api/again/{i}")).await;
        assert_eq!(res.text().await.expect("body"), format!("/api/again/{i}"));
    }
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}
