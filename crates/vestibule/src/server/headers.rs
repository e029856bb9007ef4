//! Security headers on every response of Vestibule's own router.
//!
//! Set by the front service for the three headers at once (tower-http's
//! `SetResponseHeaderLayer` takes one layer, one future and one move of the request per header:
//! about 1,000 instructions of a request).

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::Response;

/// Each header is set unless the handler set it already.
const DEFAULTS: [(HeaderName, HeaderValue); 3] = [
    // Answers carry CSRF tokens, bearer tokens and user data that no shared or browser cache
    // may keep; a handler with a cache policy (static files) sets its own.
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    // No URL of ours leaks to another site.
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    // A JSON error is never sniffed into HTML.
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
];

/// `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` and `Cache-Control:
/// no-store`, each unless the handler set it. The front service (`front.rs`) calls it on every
/// response of Vestibule's own router.
pub(crate) fn set_security_headers(headers: &mut HeaderMap) {
    for (name, value) in DEFAULTS {
        if let header::Entry::Vacant(slot) = headers.entry(name) {
            slot.insert(value);
        }
    }
}

/// How many headers one of our answers leaves with: its content type, the three above, `vary`
/// (CORS), `x-request-id` and `content-length`.
const ANSWER_HEADERS: usize = 8;

/// A JSON answer whose header map has room, from the start, for every header the layers add on
/// its way out. `axum::Json` starts with http's default (room for six on the first insert) and
/// the seventh regrows the map and rehashes every header: ≈ 900 of the ≈ 50k instructions of an
/// `/auth/me` (callgrind, bench/profile.sh). Used by the answers every page load asks for.
pub(crate) fn json_answer<T: serde::Serialize>(value: &T) -> Response {
    let mut body = Vec::with_capacity(160);
    if let Err(e) = serde_json::to_writer(&mut body, value) {
        return axum::response::IntoResponse::into_response(crate::error::Error::internal(e));
    }
    let mut res = Response::new(axum::body::Body::from(body));
    let mut headers = axum::http::HeaderMap::with_capacity(ANSWER_HEADERS);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    *res.headers_mut() = headers;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_answer_has_room_for_every_header_it_leaves_with() {
        let res = json_answer(&serde_json::json!({"a": 1}));
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        assert!(res.headers().capacity() >= ANSWER_HEADERS);
    }
}
