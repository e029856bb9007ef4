//! Bare axum server with one route, `GET /auth/me`, returning a constant body of the same shape
//! and size as vestibule's: the ceiling that vestibule's session handling is measured against.
//!
//! Usage: `bench-baseline 127.0.0.1:9001`

use axum::{Router, http::header, response::IntoResponse, routing::get};

/// Same shape as vestibule's `/auth/me`: an 86-character base64url CSRF token and the user.
const BODY: &str = concat!(
    r#"{"csrf_token":""#,
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    r#"","user":{"id":1,"username":"bench"}}"#
);

async fn me() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], BODY)
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_string());
    let app = Router::new().route("/auth/me", get(me));
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    eprintln!("bench-baseline listening on {addr}");
    axum::serve(listener, app).await.expect("serve");
}
