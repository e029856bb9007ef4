//! One upstream: a pooled HTTP/1.1 client and the request/response transformation of a correct
//! reverse proxy (RFC 9110 §7.6: hop-by-hop headers, `Forwarded`, upgrades).

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::uri::PathAndQuery;
use axum::http::{Request, Response, StatusCode, Uri, Version};
use axum::response::IntoResponse;
use hyper_util::rt::TokioIo;

use super::config::Upstream;
use super::pool::Pool;
use super::rewrite::Rewrite;
use crate::error::{Error, ErrorCode};

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1), plus the
/// obsolete `Proxy-Connection`. `Proxy-*` and the names listed in `Connection` go too.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Method-override headers: some frameworks (Rails, Express' `method-override`, Symfony) run a
/// `POST … X-HTTP-Method-Override: DELETE` as a DELETE. The gateway authorises the method on the
/// request line (a `read` access token may only send GET, HEAD and OPTIONS), so the upstream
/// must never see another one.
const METHOD_OVERRIDE: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// A hop-by-hop header by its name (the fixed list, `Proxy-*`); those named by `Connection` go
/// through [`remove_where`]'s `connection_named`.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name.as_str().starts_with("proxy-")
}

/// Headers the gateway writes itself on the way upstream (identity, assertion, `Host`,
/// `Forwarded`, `X-Forwarded-*`): a `Connection` list can never name them away.
fn owned_by_gateway(name: &HeaderName) -> bool {
    super::looks_like_ours(name)
        || name == header::HOST
        || name == header::FORWARDED
        || name == X_FORWARDED_FOR
        || name == X_FORWARDED_PROTO
        || name == X_FORWARDED_HOST
}

/// Cleans a client's request headers for the upstream, before the gateway adds its own: the
/// hop-by-hop headers and those `Connection` names, the client's forwarding headers (never
/// trusted; the gateway's are set in `forward`), its framing (`Content-Length`; the framing
/// upstream is derived from the body actually sent, see `frame`), `Expect` (the gateway has
/// answered `100 Continue` itself and always sends the body), method overrides, and whatever
/// `doomed` names.
pub(crate) fn clean_request_headers(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    remove_where(headers, true, |name| {
        is_hop_by_hop(name)
            || name == X_FORWARDED_FOR
            || name == X_FORWARDED_PROTO
            || name == X_FORWARDED_HOST
            || name == header::FORWARDED
            || name == header::CONTENT_LENGTH
            || name == header::EXPECT
            || METHOD_OVERRIDE.contains(name)
            || doomed(name)
    });
}

/// Whether a request announces a body (`Transfer-Encoding`, or a `Content-Length` other than 0).
pub(crate) fn announces_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0")
}

/// Sets the upstream request's framing from the body that is actually sent, never from what the
/// client announced: no `Content-Length` when the body is empty (an upgrade, or a body dropped),
/// hyper's own `Content-Length` when the size is known, `chunked` otherwise (hyper would send a
/// GET of unknown size with no body at all, and cut the connection when the body came).
fn frame(headers: &mut HeaderMap, body: &Body) {
    use hyper::body::Body as _;
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
    if !body.is_end_stream() && body.size_hint().exact().is_none() {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
}

/// Removes every header whose name matches `doomed` (and, with `connection_named`, the headers
/// `Connection` names), in one pass over the names: a request has a handful of headers, and a
/// removal by name costs a hash and a probe, so only the names present are removed.
pub(crate) fn remove_where(
    headers: &mut HeaderMap,
    connection_named: bool,
    doomed: impl Fn(&HeaderName) -> bool,
) {
    let mut gone: Vec<HeaderName> = Vec::new(); // no allocation unless something goes
    let mut connection = false;
    for name in headers.keys() {
        connection |= connection_named && name == header::CONNECTION;
        if doomed(name) {
            gone.push(name.clone());
        }
    }
    if connection {
        gone.extend(
            headers
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
                .filter(|n| !owned_by_gateway(n)),
        );
    }
    for name in gone {
        headers.remove(name);
    }
}

/// The protocol a WebSocket handshake asks for (`Connection: upgrade` and `Upgrade: websocket`).
pub(crate) fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    headers
        .get(header::UPGRADE)
        .filter(|u| asks && u.as_bytes().eq_ignore_ascii_case(b"websocket"))
        .cloned()
}

/// What the proxy knows about the client side of a request.
#[derive(Debug, Clone)]
pub(crate) struct ClientSide {
    /// The peer address, when the server records it.
    pub(crate) ip: Option<IpAddr>,
    /// `http` or `https`: the scheme browsers use (from `public_url`).
    pub(crate) proto: &'static str,
    /// Drop `Secure` from upstream cookies (plain-http loopback proxy).
    pub(crate) drop_secure: bool,
    /// Vestibule's session cookie name, which upstreams may not set.
    pub(crate) session_cookie: Arc<str>,
    /// The login device cookie's name: Vestibule's too, never read or set by an upstream.
    pub(crate) device_cookie: Arc<str>,
    /// The request id (`x-request-id`), named in a 502/504 so the client can quote it.
    pub(crate) request_id: Option<Arc<str>>,
}

/// One upstream and its connection pool.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamProxy {
    pub(crate) upstream: Arc<Upstream>,
    pool: Arc<Pool>,
    /// `Host` for `change_origin`, built once.
    upstream_host: Option<HeaderValue>,
    /// The metrics route label (`proxy /api`), built once.
    pub(crate) route_label: Arc<str>,
    /// The identity assertions recently sent here, when `identity_assertion` is on.
    pub(crate) assertions: Option<Arc<super::assertion::AssertionCache>>,
}

impl UpstreamProxy {
    pub(crate) fn new(upstream: Upstream) -> Self {
        let pool = Pool::new(
            upstream.authority.host(),
            upstream.authority.port_u16().unwrap_or(80),
            upstream.connect_timeout,
        );
        Self {
            upstream_host: HeaderValue::from_str(upstream.authority.as_str()).ok(),
            route_label: Arc::from(format!("proxy {}", upstream.prefix)),
            assertions: upstream
                .identity_assertion
                .then(|| Arc::new(super::assertion::AssertionCache::default())),
            upstream: Arc::new(upstream),
            pool,
        }
    }

    /// Forwards `req` (headers already cleaned by the gateway, `clean_request_headers`; a
    /// WebSocket handshake asking for `upgrade`) and streams the answer back. Never fails: a dead
    /// or slow upstream becomes a 502/504.
    pub(crate) async fn forward(
        &self,
        mut req: Request<Body>,
        side: &ClientSide,
        upgrade: Option<HeaderValue>,
    ) -> Response<Body> {
        let up = &self.upstream;
        let navigation = is_navigation(req.headers());
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        // What the connection's owner asks an upgraded connection to hold until it ends (the
        // server's connection slot, see `HeldByUpgrade`).
        let held = upgrade
            .as_ref()
            .and_then(|_| req.extensions().get::<HeldByUpgrade>().cloned());
        let (mut parts, body) = req.into_parts();

        let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        // The path is shared with the request's (no copy) unless the prefix is stripped.
        let path_and_query = match parts.uri.path_and_query() {
            Some(pq) if up.strip_prefix && up.prefix != "/" => {
                match pq.as_str().strip_prefix(up.prefix.as_str()) {
                    Some(rest) if rest.starts_with('/') => PathAndQuery::try_from(rest),
                    Some(rest) => PathAndQuery::try_from(format!("/{rest}")),
                    None => Ok(pq.clone()),
                }
            }
            Some(pq) => Ok(pq.clone()),
            None => Ok(PathAndQuery::from_static("/")),
        };
        let uri = match path_and_query
            .map_err(axum::http::Error::from)
            // Origin-form (`/path?query`): what an HTTP/1.1 server expects from a client.
            .map(Uri::from)
        {
            Ok(u) => u,
            Err(e) => {
                return Error::new(
                    ErrorCode::InvalidBody,
                    "the request target cannot be forwarded",
                )
                .with_hint("check the URL's path and query")
                .with_source(e)
                .into_response();
            }
        };

        let headers = &mut parts.headers;
        let host = if up.change_origin {
            self.upstream_host.clone()
        } else {
            original_host.clone()
        };
        // HTTP/1.1 requires Host; a client that sent none (HTTP/1.0) gets the upstream's.
        if let Some(h) = host.or_else(|| self.upstream_host.clone()) {
            headers.insert(header::HOST, h);
        }
        // `Forwarded` in one buffer: for=…;host="…";proto=… (RFC 7239).
        let mut forwarded = String::with_capacity(96);
        if let Some(ip) = side.ip {
            let text = ip_text(ip);
            match ip {
                IpAddr::V4(_) => forwarded.push_str("for="),
                IpAddr::V6(_) => forwarded.push_str("for=\"["),
            }
            forwarded.push_str(&text);
            forwarded.push_str(if ip.is_ipv6() { "]\";" } else { ";" });
            // Replaced, not appended: a client-sent X-Forwarded-For is not trusted.
            if let Ok(v) = HeaderValue::try_from(text) {
                headers.insert(X_FORWARDED_FOR, v);
            }
        }
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(side.proto));
        if let Some(h) = original_host.as_ref().filter(|h| h.to_str().is_ok()) {
            headers.insert(X_FORWARDED_HOST, h.clone());
            forwarded.push_str("host=\"");
            forwarded.extend(
                h.to_str()
                    .unwrap_or_default()
                    .chars()
                    .filter(|c| !matches!(c, '"' | '\\')),
            );
            forwarded.push_str("\";");
        }
        forwarded.push_str("proto=");
        forwarded.push_str(side.proto);
        if let Ok(v) = HeaderValue::try_from(forwarded) {
            headers.insert(header::FORWARDED, v);
        }
        let body = if let Some(u) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, u.clone());
            // The gateway refused a handshake that announced a body (`announces_body`).
            Body::empty()
        } else {
            body
        };
        frame(headers, &body);
        parts.uri = uri;
        // The answer goes back in the client's version, whatever the upstream spoke.
        let client_version = parts.version;
        // Upgrades need HTTP/1.1, and the pool speaks it whatever the client spoke.
        parts.version = Version::HTTP_11;
        let upstream_req = Request::from_parts(parts, body);

        let res =
            match tokio::time::timeout(up.response_timeout, self.pool.send(upstream_req)).await {
                Ok(Ok(res)) => res,
                Ok(Err(e)) => {
                    tracing::warn!(
                        request_id = side.request_id.as_deref().unwrap_or(""),
                        prefix = %up.prefix,
                        upstream = %up.url,
                        error = %e,
                        source = ?std::error::Error::source(&e),
                        "upstream not answering: {}", up.start_hint
                    );
                    return failure(up, Failure::Unavailable, navigation, side);
                }
                Err(_) => {
                    tracing::warn!(
                        request_id = side.request_id.as_deref().unwrap_or(""),
                        prefix = %up.prefix,
                        upstream = %up.url,
                        timeout = ?up.response_timeout,
                        "upstream response timed out"
                    );
                    return failure(up, Failure::Timeout, navigation, side);
                }
            };
        let mut res = res;
        let switched = res.status() == StatusCode::SWITCHING_PROTOCOLS;
        let upstream_upgrade =
            (switched && client_upgrade.is_some()).then(|| hyper::upgrade::on(&mut res));
        let (mut rparts, rbody) = res.into_parts();
        rparts.version = client_version;
        let upgrade_reply = rparts.headers.get(header::UPGRADE).cloned();
        // Hop-by-hop headers, and the upstream's CORS headers: the gateway's own policy
        // answers for the origin (an upstream cannot widen it).
        remove_where(&mut rparts.headers, true, |name| {
            is_hop_by_hop(name) || name.as_str().starts_with("access-control-")
        });
        let rewrite = Rewrite {
            upstream: &up.authority,
            prefix: &up.prefix,
            strip_prefix: up.strip_prefix,
            drop_secure: side.drop_secure,
            protected_cookies: [&side.session_cookie, &side.device_cookie],
        };
        rewrite_response_headers(&mut rparts.headers, &rewrite);
        if let (Some(client_up), Some(upstream_up)) = (client_upgrade, upstream_upgrade) {
            rparts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            if let Some(u) = upgrade_reply {
                rparts.headers.insert(header::UPGRADE, u);
            }
            let url = up.url.clone();
            tokio::spawn(async move {
                let stopping = async move {
                    match held {
                        Some(h) => h.stopping().await,
                        None => std::future::pending().await,
                    }
                };
                let (client, upstream) = tokio::join!(client_up, upstream_up);
                match (client, upstream) {
                    (Ok(c), Ok(u)) => {
                        let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                        // Raw bytes both ways: frames, pings and close pass untouched.
                        tokio::select! {
                            res = tokio::io::copy_bidirectional(&mut c, &mut u) => {
                                if let Err(e) = res {
                                    tracing::debug!(upstream = %url, error = %e, "upgraded connection ended");
                                }
                            }
                            () = stopping => {
                                tracing::debug!(upstream = %url, "upgraded connection closed: the server is stopping");
                            }
                        }
                    }
                    (c, u) => {
                        tracing::debug!(upstream = %url, client = ?c.err(), upstream_err = ?u.err(), "upgrade failed");
                    }
                }
            });
            return Response::from_parts(rparts, Body::empty());
        }
        // The body streams as it arrives: nothing is buffered here.
        Response::from_parts(rparts, Body::new(rbody))
    }
}

/// What a connection's owner gives an upgraded (WebSocket) connection, put in each request's
/// extensions. The tunnel outlives the HTTP exchange that started it (hyper hands the socket
/// over and ends the HTTP connection at the upgrade), so:
/// - it holds `held` until it closes, and the server's `limits.max_connections` slot stays
///   taken;
/// - it closes when `stopping` turns true. A graceful shutdown lets requests in flight finish,
///   but a WebSocket has no end of its own: waiting for it would hold every stop (a deploy, a
///   Ctrl-C of `vestibule dev`) for the whole drain time. Clients reconnect, as they do when any
///   proxy restarts; Caddy also closes its streams at a stop or reload. Caddy sends a close
///   frame (1001); this tunnel copies raw bytes without framing them, so a frame of its own
///   could land inside the upstream's, and the client sees the connection end instead (1006).
///
/// One `Arc` per connection: every request's extensions get a clone of it, a single count.
#[derive(Clone)]
pub struct HeldByUpgrade(Arc<Held>);

struct Held {
    // Never read: kept alive for as long as the tunnel is.
    _held: Arc<dyn Send + Sync>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl HeldByUpgrade {
    /// `held` stays alive as long as the tunnel; the tunnel closes once `stopping` is true (or
    /// its sender is gone).
    pub fn new(held: Arc<dyn Send + Sync>, stopping: tokio::sync::watch::Receiver<bool>) -> Self {
        Self(Arc::new(Held {
            _held: held,
            stopping,
        }))
    }

    /// Resolves when the server is stopping; what is held stays alive until then.
    async fn stopping(self) {
        let mut stopping = self.0.stopping.clone();
        // An error means the sender is gone: the server has stopped.
        let _ = stopping.wait_for(|stop| *stop).await;
    }
}

impl std::fmt::Debug for HeldByUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldByUpgrade")
    }
}

fn rewrite_response_headers(headers: &mut HeaderMap, rewrite: &Rewrite<'_>) {
    if let Some(loc) = headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| rewrite.location(v))
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        headers.insert(header::LOCATION, loc);
    }
    if !headers.contains_key(header::SET_COOKIE) {
        return;
    }
    let cookies: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for value in cookies {
        let Ok(text) = value.to_str() else {
            continue;
        };
        match rewrite.set_cookie(text) {
            None => tracing::warn!(
                "an upstream Set-Cookie was dropped: it set Vestibule's own session cookie or could not be parsed"
            ),
            Some(None) => {
                headers.append(header::SET_COOKIE, value.clone());
            }
            Some(Some(new)) => {
                if let Ok(v) = HeaderValue::from_str(&new) {
                    headers.append(header::SET_COOKIE, v);
                }
            }
        }
    }
}

/// An address as text; IPv4 without `fmt` (the `Display` impl costs more than the rest of the
/// `Forwarded` header).
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut s = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if octet >= 100 {
            s.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            s.push(char::from(b'0' + octet / 10 % 10));
        }
        s.push(char::from(b'0' + octet % 10));
    }
    s
}

/// A page navigation (HTML error page) rather than a fetch (JSON error).
pub(crate) fn is_navigation(headers: &HeaderMap) -> bool {
    // A constant name: a `&str` is parsed into a header name on every lookup.
    const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");
    match headers.get(SEC_FETCH_MODE).and_then(|v| v.to_str().ok()) {
        Some(mode) => mode == "navigate",
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html")),
    }
}

#[derive(Debug, Clone, Copy)]
enum Failure {
    Unavailable,
    Timeout,
}

/// Marks a response the proxy made because its upstream failed (counted by the metrics).
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpstreamFailed;

fn failure(up: &Upstream, what: Failure, navigation: bool, side: &ClientSide) -> Response<Body> {
    let mut res = failure_page(up, what, navigation, side);
    res.extensions_mut().insert(UpstreamFailed);
    res
}

/// The 502/504. A production upstream's answer names the prefix and the request id only (the
/// URL, name and hint are in the log line with that request id): an anonymous client learns
/// nothing of the internal network or the configuration. `[dev]` upstreams say everything.
fn failure_page(
    up: &Upstream,
    what: Failure,
    navigation: bool,
    side: &ClientSide,
) -> Response<Body> {
    let code = match what {
        Failure::Unavailable => ErrorCode::UpstreamUnavailable,
        Failure::Timeout => ErrorCode::UpstreamTimeout,
    };
    let (message, hint) = if up.detailed_errors {
        let message = match what {
            Failure::Unavailable => format!("{} at {} is not answering", up.name, up.url),
            Failure::Timeout => format!(
                "{} at {} did not answer within {}",
                up.name,
                up.url,
                humantime::format_duration(up.response_timeout)
            ),
        };
        let hint = match what {
            Failure::Unavailable => up.start_hint.clone(),
            Failure::Timeout => "check that it is not stuck, or raise response_timeout".to_owned(),
        };
        (message, hint)
    } else {
        let id = side.request_id.as_deref().unwrap_or("-");
        let message = match what {
            Failure::Unavailable => format!("the upstream for {} is not answering", up.prefix),
            Failure::Timeout => format!("the upstream for {} did not answer in time", up.prefix),
        };
        (
            message,
            format!("try again later; the operator can find request id {id} in the log"),
        )
    };
    if !navigation {
        return Error::new(code, message).with_hint(hint).into_response();
    }
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status} — Vestibule</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em}}code{{background:#eee;padding:0 .2em}}</style></head>\
         <body><h1>{status}</h1><p>{msg} — {hint}.</p>{reload}</body></html>",
        status = code.status(),
        msg = esc(&message),
        hint = esc(&hint),
        reload = if up.reload_error_page {
            "<p>This page reloads itself every few seconds until it answers.</p>\
             <script>setTimeout(()=>location.reload(),3000)</script>"
        } else {
            ""
        },
    );
    let mut res = (code.status(), html).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_named_by_connection_are_removed() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "yes"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        remove_where(&mut h, true, is_hop_by_hop);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn addresses_are_written_like_display_does() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.199.255",
            "192.168.100.9",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn navigation_is_told_from_fetches() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html,*/*"));
        assert!(is_navigation(&h));
        h.insert("sec-fetch-mode", HeaderValue::from_static("cors"));
        assert!(!is_navigation(&h));
        h.insert("sec-fetch-mode", HeaderValue::from_static("navigate"));
        assert!(is_navigation(&h));
        assert!(!is_navigation(&HeaderMap::new()));
    }
}
