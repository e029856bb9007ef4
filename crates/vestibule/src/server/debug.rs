//! `GET /auth/_debug`: the origins policy's view of one request, for developers. In `server/`
//! because it is an endpoint over two lower modules (the policy in `origins`, the live cookie-drop
//! detection in `doctor::live`), which must not import each other for it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::origin::Origin;
use crate::origins::OriginsPolicy;

/// `GET /auth/_debug` (development only, behind `debug_endpoint = true`): what the server saw
/// of this request and the policy's verdict on its origin, so a developer can tell which
/// browser rule drops the session cookie. Never echoes a cookie or credential value: only
/// cookie names, the `Authorization` scheme, and the `Referer` without query or fragment.
///
/// Mount with the policy as state: `.route("/auth/_debug", get(debug_echo).with_state(policy))`.
pub async fn debug_echo(
    State(policy): State<Arc<OriginsPolicy>>,
    live: Option<axum::Extension<crate::doctor::live::LiveAnalysis>>,
    headers: HeaderMap,
) -> Response {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("(not text)").to_owned())
    };
    let origin_text = text(header::ORIGIN);
    let origin = origin_text.as_deref().and_then(|o| Origin::parse(o).ok());
    let referer = headers.get(header::REFERER).map(|v| {
        v.to_str()
            .ok()
            .and_then(|s| url::Url::parse(s).ok())
            .map_or_else(
                || "(not a URL)".to_owned(),
                |mut u| {
                    u.set_query(None);
                    u.set_fragment(None);
                    u.to_string()
                },
            )
    });
    // Not deduplicated: two cookies with the session's name (one host-only, one with a
    // Domain, or two Paths) are a real cause of "logged out for no reason".
    let cookie_names: Vec<String> = crate::cookie_header::pairs(&headers)
        .map(|(name, _)| name)
        .filter(|n| !n.is_empty())
        .take(64)
        .map(str::to_owned)
        .collect();
    let session_cookies = cookie_names
        .iter()
        .filter(|n| *n == policy.cookie_name())
        .count();
    let session_cookie_received = session_cookies > 0;
    let authorization = headers.get(header::AUTHORIZATION).map(|v| {
        let scheme = v
            .to_str()
            .ok()
            .and_then(|s| s.split_whitespace().next())
            .filter(|s| s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .unwrap_or("(unrecognised)");
        scheme.to_owned()
    });
    let mut notes = Vec::new();
    if origin_text.as_deref() == Some("null") {
        notes.push("Origin: null (a sandboxed frame, a file:// page or a cross-origin redirect) is never allowed for CORS or trusted for CSRF".to_owned());
    }
    if let Some(o) = &origin
        && o != policy.public_origin()
        && !session_cookie_received
    {
        notes.push("no session cookie arrived: if this client logged in, check that every call uses credentials: 'include' (rule 1); a resolved fetch says nothing about whether the cookie was stored".to_owned());
    }
    if session_cookies > 1 {
        notes.push(format!(
            "{session_cookies} cookies named {} arrived: an older one with another Domain or Path shadows the current one; clear the site's cookies",
            policy.cookie_name()
        ));
    }
    let host = text(header::HOST);
    let public = policy.public_origin();
    let expected_host = public
        .to_string()
        .split_once("://")
        .map(|(_, h)| h.to_owned())
        .unwrap_or_default();
    if let Some(h) = &host
        && !h.eq_ignore_ascii_case(&expected_host)
    {
        notes.push(format!(
            "Host {h} is not public_url's {expected_host}: behind a proxy, the cookie belongs to the host the browser sees; its Domain and Path must match that host and path (rules 9/11)"
        ));
    }
    if let Some(o) = &origin
        && !policy.is_cors_allowed(o)
    {
        notes.push(format!(
            "{o} is not in spa_origins: the browser hides the answers from the page (rules 2/3), and a preflighted call is never sent"
        ));
    }
    let cookie = policy.cookie();
    let body = json!({
        "request": {
            "origin": origin_text,
            "referer": referer,
            "host": host,
            "sec_fetch_site": text(header::HeaderName::from_static("sec-fetch-site")),
            "sec_fetch_mode": text(header::HeaderName::from_static("sec-fetch-mode")),
            "sec_fetch_dest": text(header::HeaderName::from_static("sec-fetch-dest")),
            "cookie_names": cookie_names,
            "session_cookie_received": session_cookie_received,
            "authorization": {
                "present": authorization.is_some(),
                "scheme": authorization,
            },
        },
        "policy": {
            "public_origin": policy.public_origin().to_string(),
            "api_site": policy.api_site().to_string(),
            "spa_origins": policy.spa_origins().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "cookie": {
                "name": policy.cookie_name(),
                "secure": cookie.secure,
                "same_site": crate::origins::same_site_title(cookie.same_site),
                "partitioned": cookie.partitioned,
                "domain": cookie.domain,
            },
        },
        "verdict": {
            "origin": origin.as_ref().map(ToString::to_string),
            "cors_allowed": origin.as_ref().is_some_and(|o| policy.is_cors_allowed(o)),
            // The CSRF layer's own rule, with this request's Host (same origin by Host).
            "csrf_trusted": origin.as_ref().is_some_and(|o| policy.is_csrf_trusted(o, host.as_deref())),
            "relation": origin.as_ref().map(|o| policy.relation(o)),
            "site": origin.as_ref().map(|o| crate::origins::site_of(o).to_string()),
            "cookie": policy.cookie_verdict(origin.as_ref()),
            "notes": notes,
        },
        // The live cookie-drop detection's view of this client (doctor/live.rs).
        "live": live.map(|axum::Extension(l)| l),
    });
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(body),
    )
        .into_response()
}
