//! Bare axum server, two modes:
//!
//! - default: one route, `GET /auth/me`, returning a constant body of the same shape and size as
//!   vestibule's: the ceiling that vestibule's session handling is measured against (`run.sh`).
//! - `upstream`: the backend that `proxy.sh` proxies to: `GET /api/json` (a constant 1 KB JSON
//!   body), `GET /api/big?mb=N` (N MiB streamed in 64 KiB chunks, never held in memory) and
//!   `POST /api/upload` (drains the body as it streams and answers its length).
//!
//! - `proxy URL`: the smallest reverse proxy axum and hyper-util make (every request forwarded
//!   to `URL` through the pooled legacy client, no header work at all): the floor of the stack
//!   Vestibule's gateway is built on (`proxy.sh`, `profile.sh`).
//!
//! - `proxyfull URL`: the same proxy doing the header work a correct reverse proxy must do
//!   (hop-by-hop headers, `Forwarded` and `X-Forwarded-*`, a response timeout, the request id
//!   and security headers): the floor of the stack for the same forwarded request, see
//!   `proxyfull.rs`.
//!
//! - `peer`: the stack a team would write by hand instead of Vestibule — axum + tower-sessions
//!   (its memory store) for the cookie, a hand-written bearer lookup for scripts:
//!   `POST /auth/login` starts a session holding the user and a CSRF token and answers a bearer
//!   token; `GET /auth/me` answers the same JSON shape as Vestibule's from the bearer token if one
//!   is sent, else from the session (401 without either). What it leaves out, and Vestibule does
//!   not: hashed ids at rest (tower-sessions keys its store by the raw id, the bearer map by the
//!   raw token), durability (memory only), rotation, expiry sliding, revocation, audit.
//!
//! - `peerfull`: the same peer doing the per-request work Vestibule's `/auth/me` must do by its
//!   security promises (token hashed before the lookup, a derived and masked CSRF token, request
//!   id and security headers); a hand-written session map, as tower-sessions cannot key by a
//!   hashed id. The floor of the stack for Vestibule's answer: see `full.rs`.
//!
//! Usage: `bench-baseline 127.0.0.1:9001 [upstream | proxy http://127.0.0.1:9002 | proxyfull http://127.0.0.1:9002 | peer | peerfull]`

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Query, Request},
    http::{StatusCode, Uri, header},
    response::IntoResponse,
    routing::{get, post},
};
use futures_util::StreamExt;

mod full;
mod proxyfull;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tower_sessions::{MemoryStore, Session, SessionManagerLayer};

/// Same shape as vestibule's `/auth/me`: an 86-character base64url CSRF token and the user.
const BODY: &str = concat!(
    r#"{"csrf_token":""#,
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    r#"","user":{"id":1,"username":"bench"}}"#
);

async fn me() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], BODY)
}

/// Exactly 1024 bytes of JSON: `{"items":[…],"pad":"xxx…"}` built once at start-up.
fn json_1k() -> &'static str {
    static ONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let items: Vec<String> = (0..10)
            .map(|i| format!(r#"{{"id":{i},"name":"item {i}","done":false}}"#))
            .collect();
        let head = format!(r#"{{"items":[{}],"pad":""#, items.join(","));
        let tail = r#""}"#;
        let pad = 1024 - head.len() - tail.len();
        format!("{head}{}{tail}", "x".repeat(pad))
    })
}

async fn json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json_1k())
}

#[derive(serde::Deserialize)]
struct Big {
    mb: Option<usize>,
}

const CHUNK: usize = 64 * 1024;

async fn big(Query(q): Query<Big>) -> impl IntoResponse {
    let chunks = q.mb.unwrap_or(100).min(10_240) * (1024 * 1024 / CHUNK);
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let stream = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream),
    )
}

async fn upload(req: Request) -> impl IntoResponse {
    let mut body = req.into_body().into_data_stream();
    let mut len: u64 = 0;
    while let Some(Ok(chunk)) = body.next().await {
        len += chunk.len() as u64;
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"received":{len}}}"#),
    )
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct User {
    id: i64,
    username: String,
}

#[derive(serde::Serialize)]
struct Me<'a> {
    csrf_token: &'a str,
    user: &'a User,
}

/// Bearer token → user (and the CSRF token a bearer client does not need, for the same shape).
type Bearers = Arc<RwLock<HashMap<String, User>>>;

fn random_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn peer_login(
    session: Session,
    axum::extract::State(bearers): axum::extract::State<Bearers>,
) -> axum::response::Response {
    let user = User {
        id: 1,
        username: "bench".into(),
    };
    let csrf = format!("{}{}", random_token(), random_token());
    if session.cycle_id().await.is_err()
        || session.insert("user", &user).await.is_err()
        || session.insert("csrf", &csrf).await.is_err()
    {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let token = random_token();
    if let Ok(mut map) = bearers.write() {
        map.insert(token.clone(), user);
    }
    axum::Json(serde_json::json!({ "token": token, "csrf_token": csrf })).into_response()
}

async fn peer_me(
    session: Session,
    axum::extract::State(bearers): axum::extract::State<Bearers>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        let found = bearers.read().ok().and_then(|m| m.get(token).cloned());
        return match found {
            Some(user) => axum::Json(Me {
                csrf_token: "",
                user: &user,
            })
            .into_response(),
            None => StatusCode::UNAUTHORIZED.into_response(),
        };
    }
    let user: Option<User> = session.get("user").await.ok().flatten();
    let csrf: Option<String> = session.get("csrf").await.ok().flatten();
    match (user, csrf) {
        (Some(user), Some(csrf)) => axum::Json(Me {
            csrf_token: &csrf,
            user: &user,
        })
        .into_response(),
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

#[tokio::main]
async fn main() {
    // SIGTERM ends the process through `exit()`, which runs the instrumented build's profile
    // writer (bench/pgo.sh PEER=1); a task parked on a signal, nothing per request.
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::spawn(async move {
            term.recv().await;
            std::process::exit(0);
        });
    }
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_string());
    let mode = std::env::args().nth(2);
    if mode.as_deref() == Some("proxyfull") {
        let upstream = std::env::args()
            .nth(3)
            .unwrap_or_else(|| "http://127.0.0.1:9002".to_string());
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        eprintln!("bench-baseline listening on {addr}");
        // The client's address, for `Forwarded` and `X-Forwarded-For`.
        let app = proxyfull::router(upstream)
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, app).await.expect("serve");
        return;
    }
    let app = match mode.as_deref() {
        Some("proxy") => {
            let upstream = std::env::args()
                .nth(3)
                .unwrap_or_else(|| "http://127.0.0.1:9002".to_string());
            let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
            Router::new().fallback(move |mut req: Request| {
                let client = client.clone();
                let upstream = upstream.clone();
                async move {
                    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    let Ok(uri) = format!("{upstream}{pq}").parse::<Uri>() else {
                        return StatusCode::BAD_REQUEST.into_response();
                    };
                    *req.uri_mut() = uri;
                    match client.request(req).await {
                        Ok(res) => res.map(Body::new).into_response(),
                        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
                    }
                }
            })
        }
        Some("upstream") => Router::new()
            .route("/api/json", get(json))
            .route("/api/big", get(big))
            .route("/api/upload", post(upload)),
        Some("peerfull") => full::router(),
        Some("peer") => Router::new()
            .route("/auth/login", post(peer_login))
            .route("/auth/me", get(peer_me))
            .with_state(Bearers::default())
            .layer(SessionManagerLayer::new(MemoryStore::default()).with_secure(false)),
        _ => Router::new().route("/auth/me", get(me)),
    };
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    eprintln!("bench-baseline listening on {addr}");
    axum::serve(listener, app).await.expect("serve");
}
