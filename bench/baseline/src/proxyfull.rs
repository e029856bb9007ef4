//! `proxyfull` mode: the bare proxy of `proxy` mode doing, per request, the header work a correct
//! reverse proxy must do (RFC 9110 §7.6) and that Vestibule's gateway does on an `anonymous_ok`
//! upstream, written the plain way a team would: the floor of the stack (axum, hyper-util's
//! pooled client, tokio) for the same forwarded request. `proxy` mode forwards the client's
//! headers untouched, which no production proxy may do.
//!
//! Per request, over what `proxy` does:
//! - the request id (the client's when it is 1-64 visible ASCII characters, else 16 random hex
//!   characters), on the request sent upstream and on the response;
//! - on the way up: the hop-by-hop headers removed (the fixed list, `Proxy-*` and the names the
//!   client's `Connection` lists), the client's `Forwarded` and `X-Forwarded-*` removed (never
//!   trusted) and the proxy's own written: `Forwarded: for=…;host="…";proto=http`,
//!   `X-Forwarded-For`, `-Proto` and `-Host`;
//! - the upstream's answer awaited under a timeout (a hung upstream gets a 504, not a held
//!   connection);
//! - on the way down: the hop-by-hop headers removed again, `Vary: Origin`, and
//!   `Cache-Control: no-store`, `X-Content-Type-Options: nosniff` and `Referrer-Policy:
//!   no-referrer` unless the upstream chose its own (the headers Vestibule's gateway adds to a
//!   proxied answer with no configuration).
//!
//! What it still leaves out, and Vestibule does not: the path normalised before the route is
//! chosen (`/%61pi` is `/api`), dot-segments refused, method overrides and `X-Vestibule-*`
//! stripped, the session and device cookies stripped from the request, `Set-Cookie` and
//! `Location` rewritten on the way down, CORS, CSRF, the size limits and the body clock, metrics
//! and the route's policy.

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, Request},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::time::Duration;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// Vestibule's default `response_timeout`.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// RFC 9110 §7.6.1's hop-by-hop headers, `Proxy-*`, and what `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap, also: impl Fn(&HeaderName) -> bool) {
    let mut gone: Vec<HeaderName> = headers
        .keys()
        .filter(|n| {
            [
                header::CONNECTION,
                KEEP_ALIVE,
                header::TE,
                header::TRAILER,
                header::TRANSFER_ENCODING,
                header::UPGRADE,
            ]
            .contains(n)
                || n.as_str().starts_with("proxy-")
                || also(n)
        })
        .cloned()
        .collect();
    gone.extend(
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok()),
    );
    for name in gone {
        headers.remove(name);
    }
}

async fn forward(
    client: Client<HttpConnector, Body>,
    upstream: &str,
    peer: SocketAddr,
    mut req: Request,
) -> Response {
    let id = crate::full::request_id(req.headers());
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("{upstream}{pq}").parse::<Uri>() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, |n| {
        n == header::FORWARDED
            || n == X_FORWARDED_FOR
            || n == X_FORWARDED_PROTO
            || n == X_FORWARDED_HOST
    });
    let ip = peer.ip().to_string();
    let host = headers.get(header::HOST).cloned();
    // One buffer, sized once: no `format!` per part.
    let mut forwarded = String::with_capacity(96);
    forwarded.push_str("for=");
    forwarded.push_str(&ip);
    forwarded.push(';');
    if let Some(h) = host.as_ref().and_then(|h| h.to_str().ok()) {
        forwarded.push_str("host=\"");
        forwarded.push_str(h);
        forwarded.push_str("\";");
    }
    forwarded.push_str("proto=http");
    if let Ok(v) = HeaderValue::try_from(forwarded) {
        headers.insert(header::FORWARDED, v);
    }
    if let Ok(v) = HeaderValue::try_from(ip) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    if let Some(h) = host {
        headers.insert(X_FORWARDED_HOST, h);
    }
    headers.insert(crate::full::X_REQUEST_ID, id.clone());
    let mut res = match tokio::time::timeout(RESPONSE_TIMEOUT, client.request(req)).await {
        Ok(Ok(res)) => res.map(Body::new),
        Ok(Err(_)) => StatusCode::BAD_GATEWAY.into_response(),
        Err(_) => StatusCode::GATEWAY_TIMEOUT.into_response(),
    };
    let h = res.headers_mut();
    strip_hop_by_hop(h, |_| false);
    crate::full::answer_headers(h, id);
    res
}

pub fn router(upstream: String) -> Router {
    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    Router::new().fallback(
        move |ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request| {
            let client = client.clone();
            let upstream = upstream.clone();
            async move { forward(client, &upstream, peer, req).await }
        },
    )
}
