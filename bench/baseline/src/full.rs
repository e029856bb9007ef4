//! `peerfull` mode: the axum peer of `peer` mode doing, per request, the work Vestibule's
//! `GET /auth/me` must do by its own security promises, written the plain way a team would: the
//! floor of the stack (axum, hyper, tokio, sha2) for the same answer.
//!
//! Per request, over what `peer` does:
//! - hashed ids at rest: the cookie (`id`) or `Authorization: Bearer` carries a random token and
//!   the session map is keyed by `SHA-256(domain ‖ token)`, so each request hashes its token
//!   before the lookup (Vestibule: `SecretToken::hash`). tower-sessions keys its store by its own
//!   raw `Id` and cannot do this, so the map is the small hand-written one a team would write
//!   (`RwLock<HashMap<[u8; 32], Record>>`), the cookie parsed with the `cookie` crate;
//! - the session's expiry is checked against the clock (tower-sessions' memory store does too);
//! - the CSRF token in the body (cookie sessions only; `null` for bearer, as Vestibule): a second
//!   SHA-256 of the token under another domain, masked afresh with 32 random bytes from the
//!   thread-local CSPRNG (XOR) and base64url-encoded, 86 characters (Vestibule: `csrf::mask`);
//! - the response headers Vestibule sends on `/auth/me` with no configuration: `vary: Origin`,
//!   `cache-control: no-store`, `referrer-policy: no-referrer`, `x-content-type-options:
//!   nosniff` and `x-request-id` (the client's when it is 1-64 visible ASCII characters, else 16
//!   random hex characters; also put in the request's extensions for handlers and logs), in one
//!   `axum::middleware::from_fn` on every response.
//!
//! What it still leaves out, and Vestibule does not: durability (Vestibule keeps the sessions in
//! SQLite behind a read cache; this map is memory only), the token's prefix and checksum,
//! expiry sliding, rotation, revocation, audit, logging, CORS (it needs a configured origin
//! list), and a password check at login (`POST /auth/login` logs in as `bench` at once, as in
//! `peer`, and answers a bearer token beside the cookie).

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::User;

/// The session cookie's name (tower-sessions' default, so the bench scripts read it alike).
const COOKIE: &str = "id";
/// Domains of the two hashes of a token: the store key and the CSRF secret never coincide.
const SESSION_DOMAIN: &[u8] = b"peerfull/session-token/v1\0";
const CSRF_DOMAIN: &[u8] = b"peerfull/csrf/v1\0";
/// Session lifetime (Vestibule's default idle timeout, 14 days).
const TTL_SECS: u64 = 14 * 24 * 3600;

pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Cookie,
    Bearer,
}

struct Record {
    user: User,
    transport: Transport,
    expires_at: u64,
}

/// SHA-256(session domain ‖ token) → session.
type Sessions = Arc<RwLock<HashMap<[u8; 32], Record>>>;

/// The request id, for handlers and logs.
#[derive(Clone)]
#[allow(dead_code)] // read by no handler here; Vestibule's are there for logs
struct RequestId(HeaderValue);

#[derive(serde::Serialize)]
struct Me<'a> {
    user: &'a User,
    csrf_token: Option<&'a str>,
}

fn hash(domain: &[u8], token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(domain);
    h.update(token.as_bytes());
    h.finalize().into()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 256 random bits, base64url (43 characters).
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `base64url(mask ‖ secret ⊕ mask)` with a fresh random mask: 86 characters.
fn mask(secret: &[u8; 32]) -> String {
    let mut out = [0u8; 64];
    let (m, x) = out.split_at_mut(32);
    rand::rng().fill_bytes(m);
    for i in 0..32 {
        x[i] = secret[i] ^ m[i];
    }
    URL_SAFE_NO_PAD.encode(out)
}

/// The user of the live session `token` names, if it was issued for `transport`.
fn lookup(sessions: &Sessions, token: &str, transport: Transport) -> Option<User> {
    let key = hash(SESSION_DOMAIN, token);
    let map = sessions.read().ok()?;
    let rec = map.get(&key)?;
    (rec.transport == transport && rec.expires_at > now()).then(|| rec.user.clone())
}

/// The value of the first `id` cookie among the `Cookie` headers.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .and_then(|c| c.value_raw())
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, r#"Bearer realm="peerfull""#)],
        Json(serde_json::json!({ "code": "not_authenticated" })),
    )
        .into_response()
}

async fn login(State(sessions): State<Sessions>) -> Response {
    let user = User {
        id: 1,
        username: "bench".into(),
    };
    let (cookie_token, bearer_token) = (new_token(), new_token());
    let expires_at = now() + TTL_SECS;
    let Ok(mut map) = sessions.write() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    for (token, transport) in [
        (&cookie_token, Transport::Cookie),
        (&bearer_token, Transport::Bearer),
    ] {
        let rec = Record {
            user: user.clone(),
            transport,
            expires_at,
        };
        map.insert(hash(SESSION_DOMAIN, token), rec);
    }
    drop(map);
    let csrf = mask(&hash(CSRF_DOMAIN, &cookie_token));
    let set_cookie = cookie::Cookie::build((COOKIE, cookie_token))
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .path("/")
        .max_age(cookie::time::Duration::seconds(TTL_SECS as i64))
        .build()
        .to_string();
    (
        [(header::SET_COOKIE, set_cookie)],
        Json(serde_json::json!({ "user": user, "csrf_token": csrf, "token": bearer_token })),
    )
        .into_response()
}

async fn me(State(sessions): State<Sessions>, headers: HeaderMap) -> Response {
    // A request with `Authorization` is judged by it alone (no fallback to the cookie).
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let token = auth.to_str().ok().and_then(|v| v.strip_prefix("Bearer "));
        return match token.and_then(|t| lookup(&sessions, t, Transport::Bearer)) {
            Some(user) => Json(Me {
                user: &user,
                csrf_token: None,
            })
            .into_response(),
            None => unauthorized(),
        };
    }
    let Some(token) = session_cookie(&headers) else {
        return unauthorized();
    };
    let Some(user) = lookup(&sessions, token, Transport::Cookie) else {
        return unauthorized();
    };
    let csrf = mask(&hash(CSRF_DOMAIN, token));
    Json(Me {
        user: &user,
        csrf_token: Some(&csrf),
    })
    .into_response()
}

/// The request's id: the client's when it is short visible ASCII (it lands in logs), else 16 hex
/// characters from the thread-local CSPRNG.
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&X_REQUEST_ID) {
        Some(v) if (1..=64).contains(&v.len()) && v.as_bytes().iter().all(u8::is_ascii_graphic) => {
            v.clone()
        }
        _ => HeaderValue::from_str(&format!("{:016x}", rand::rng().next_u64()))
            .unwrap_or_else(|_| HeaderValue::from_static("0")),
    }
}

/// The headers Vestibule puts on every answer, its own routes' and the gateway's: `Vary:
/// Origin`, the cache and security headers unless the handler (or upstream) chose its own, and
/// the request id.
pub(crate) fn answer_headers(h: &mut HeaderMap, id: HeaderValue) {
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        h.entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
    h.insert(X_REQUEST_ID, id);
}

/// The request id and the headers Vestibule puts on every response of its own routes.
async fn response_headers(mut req: Request, next: Next) -> Response {
    let id = request_id(req.headers());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.run(req).await;
    answer_headers(res.headers_mut(), id);
    res
}

pub fn router() -> Router {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/me", get(me))
        .with_state(Sessions::default())
        .layer(axum::middleware::from_fn(response_headers))
}
