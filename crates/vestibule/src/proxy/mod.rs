//! The same-origin proxy: one origin serves the SPA, `/auth` and the APIs, so no cookie ever
//! crosses an origin. `vestibule dev` puts it in front of a frontend dev server (hot reload
//! WebSockets included); `vestibule serve` with `[[upstream]]` makes it a production gateway
//! that authenticates at the edge and hands the identity to backends in any language.
//!
//! Built on hyper-util's pooled client because no maintained crate fits (see
//! `docs/ARCHITECTURE.md`): bodies stream both ways, hop-by-hop headers go, `Forwarded` is set,
//! upgrades are spliced as raw bytes.

pub mod assertion;
pub mod config;
mod forward;
mod path;
mod pool;
pub(crate) mod rewrite;
mod static_site;
mod validate;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

pub use self::config::{ProxyConfig, RawDev, RawUpstream, Upstream, UpstreamPolicy};
pub use self::forward::HeldByUpgrade;
use self::forward::{ClientSide, UpstreamProxy};
use crate::error::{Error, ErrorCode};
use crate::session::Session;

/// Identity headers the gateway sends upstream. Anything a client sends that looks like one of
/// ours is removed first, in any spelling.
pub const USER_ID_HEADER: &str = "x-vestibule-user-id";
/// See [`USER_ID_HEADER`].
pub const USERNAME_HEADER: &str = "x-vestibule-username";
// The names above as `HeaderName`s, made once at compile time: an insert by `&str` parses the
// name on every proxied request.
const USER_ID: HeaderName = HeaderName::from_static(USER_ID_HEADER);
const USERNAME: HeaderName = HeaderName::from_static(USERNAME_HEADER);
const ASSERTION: HeaderName = HeaderName::from_static(assertion::ASSERTION_HEADER);
/// The request id (`server::front` gives every request one), sent on to the upstream.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Where the gateway sends a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Vestibule's own (404 here: its routes were tried first).
    Ours,
    /// The upstream at this index of `Gateway::upstreams`.
    Upstream(usize),
    /// The built SPA.
    Static,
}

/// What the gateway is built from: the validated proxy section and the parts of the rest of the
/// configuration it needs (so the gateway does not depend on the whole `Config`).
#[derive(Debug)]
pub struct GatewaySettings<'a> {
    /// `[[upstream]]`, `[dev]` and `static_dir`, validated.
    pub proxy: &'a ProxyConfig,
    /// The origin browsers use (`public_url`).
    pub public_origin: &'a crate::origin::Origin,
    /// The origins policy: the WebSocket origin check is the CSRF layer's.
    pub origins: &'a Arc<crate::origins::OriginsPolicy>,
    /// The session cookie (its name, and the device cookie's derived from it).
    pub cookie: &'a crate::session::CookieConfig,
    /// Who may name the client's address.
    pub trusted_proxies: &'a crate::client_ip::TrustedProxies,
    /// The server's metrics, when on.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The OpenID relying party, whose sessions' access tokens go to `forward_access_token`
    /// upstreams.
    pub oidc: Option<crate::auth::oidc::RelyingParty>,
}

/// The router fallback: everything Vestibule does not answer itself goes to the upstream with
/// the longest matching prefix (or the static site, or 404).
#[derive(Debug)]
pub struct Gateway {
    upstreams: Vec<UpstreamProxy>,
    static_site: Option<static_site::StaticSite>,
    assertion: Option<Arc<assertion::IdentityKey>>,
    issuer: String,
    /// Relays OpenID sessions' access tokens (`forward_access_token`).
    oidc: Option<crate::auth::oidc::RelyingParty>,
    origins: Arc<crate::origins::OriginsPolicy>,
    side: ClientSide,
    /// Who may tell the client's address (`limits.trusted_proxies`): upstreams get the
    /// resolved client in `X-Forwarded-For`/`Forwarded`, never the front proxy's address.
    trusted: crate::client_ip::TrustedProxies,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Gateway {
    /// The gateway for a validated configuration's pieces, `None` when nothing is proxied.
    pub fn new(settings: GatewaySettings<'_>) -> Option<Arc<Self>> {
        let GatewaySettings {
            proxy,
            public_origin: origin,
            origins,
            cookie,
            trusted_proxies,
            metrics,
            oidc,
        } = settings;
        if !proxy.is_active() {
            return None;
        }
        Some(Arc::new(Self {
            upstreams: proxy
                .upstreams
                .iter()
                .cloned()
                .map(UpstreamProxy::new)
                .collect(),
            static_site: proxy
                .static_dir
                .as_deref()
                .map(|dir| static_site::StaticSite::new(dir, &proxy.static_headers)),
            assertion: proxy.needs_assertion_key().then(|| {
                proxy
                    .assertion_key
                    .clone()
                    .unwrap_or_else(|| Arc::new(assertion::IdentityKey::generate()))
            }),
            issuer: origin.to_string(),
            oidc,
            origins: origins.clone(),
            side: ClientSide {
                ip: None,
                proto: if origin.scheme() == "https" {
                    "https"
                } else {
                    "http"
                },
                drop_secure: origin.scheme() == "http" && origin.is_loopback(),
                session_cookie: Arc::from(cookie.name.as_str()),
                device_cookie: Arc::from(crate::auth::DeviceTrust::cookie_name_for(cookie)),
                request_id: None,
            },
            trusted: trusted_proxies.clone(),
            metrics,
        }))
    }

    /// The public keys for `/auth/jwks.json`, when an upstream gets signed assertions.
    pub fn jwks(&self) -> Option<serde_json::Value> {
        self.assertion.as_ref().map(|k| k.jwks())
    }

    /// Where `path` (in normal form) goes. Vestibule's own `/auth/…` space comes first (an
    /// unknown `/auth/…` path is Vestibule's 404, never the SPA's or a backend's), then the
    /// upstream with the longest matching prefix (they are sorted so), then the static site.
    fn route(&self, path: &str) -> Route {
        if path == "/auth" || path.starts_with("/auth/") {
            Route::Ours
        } else if let Some(i) = self.upstreams.iter().position(|p| p.upstream.matches(path)) {
            Route::Upstream(i)
        } else if self.static_site.is_some() {
            Route::Static
        } else {
            Route::Ours
        }
    }

    /// Handles one request that no Vestibule route took.
    pub async fn handle(self: Arc<Self>, mut req: Request) -> Response {
        let invalid = |why: &str| {
            Error::new(ErrorCode::InvalidPath, why.to_owned())
                .with_hint("browsers never send these; resolve the path before sending it")
                .into_response()
        };
        // Every decision below is taken on the normal form (see `path`): a backend decodes
        // `/%61dmin` into `/admin`, so the gateway must authorise it as `/admin`.
        let Ok(normal) = path::NormalPath::new(req.uri().path()) else {
            return invalid("the path has a `%` that is not a percent-encoded byte");
        };
        let route = self.route(normal.as_str());
        // `/admin%2Fpanel` under `/` is `/admin/panel` under `/admin` to a decoding backend.
        if normal
            .separators_decoded()
            .is_some_and(|decoded| self.route(&decoded) != route)
        {
            return invalid("an encoded slash or backslash would move the path to another route");
        }
        let proxy = match route {
            Route::Upstream(i) => &self.upstreams[i],
            Route::Static => {
                return match &self.static_site {
                    Some(site) => site.serve(req).await,
                    None => Error::new(ErrorCode::NotFound, "no such route").into_response(),
                };
            }
            Route::Ours => return Error::new(ErrorCode::NotFound, "no such route").into_response(),
        };
        if !is_plain_path(normal.as_str()) {
            return invalid("the path has dot-segments or encoded slashes");
        }
        if normal.changed() {
            // The upstream gets the path the gateway authorised.
            let target = match req.uri().query() {
                Some(q) => format!("{}?{q}", normal.as_str()),
                None => normal.as_str().to_owned(),
            };
            match target.parse() {
                Ok(uri) => *req.uri_mut() = uri,
                Err(_) => return invalid("the normalised path is not a valid request target"),
            }
        }
        let mut res = match self.prepare(proxy, req).await {
            Ok((req, side, upgrade)) => proxy.forward(req, &side, upgrade).await,
            Err(e) => e.into_response(),
        };
        if let Some(m) = &self.metrics {
            let prefix = proxy.upstream.prefix.as_str();
            if res.extensions().get::<forward::UpstreamFailed>().is_some() {
                m.upstream_failed(prefix);
            }
            crate::metrics::tag_route(&mut res, &proxy.route_label);
        }
        res
    }

    /// Authorises the request at the gateway and cleans its headers for the upstream; answers
    /// the request, the client side, and the protocol a WebSocket handshake asks for.
    async fn prepare(
        &self,
        proxy: &UpstreamProxy,
        mut req: Request,
    ) -> Result<(Request<Body>, ClientSide, Option<HeaderValue>), Error> {
        let up = &proxy.upstream;
        // TRACE echoes the request (cookies, credentials) back to the page; like nginx, the
        // gateway never forwards it, whoever asks.
        if req.method() == Method::TRACE || req.method().as_str() == "TRACK" {
            return Err(Error::new(
                ErrorCode::MethodNotAllowed,
                "TRACE is not forwarded by the gateway",
            ));
        }
        // Read before the hop-by-hop headers go: `Connection: upgrade` is one of them.
        let upgrade = forward::upgrade_of(req.headers());
        // A WebSocket handshake is a GET, so CSRF does not see it; a page on another site could
        // open one with the victim's cookie (cross-site WebSocket hijacking).
        if upgrade.is_some() {
            crate::csrf::check_origin(&self.origins, req.headers()).map_err(|_| {
                let seen = req
                    .headers()
                    .get(header::ORIGIN)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("(none)")
                    .to_owned();
                Error::new(
                    ErrorCode::WebsocketOriginRefused,
                    format!("WebSocket from origin {seen} refused: it is not this site or a trusted SPA origin"),
                )
                .with_hint("add the page's origin to spa_origins, or open the WebSocket from this origin")
            })?;
            // A handshake has no body (RFC 6455 §4.1). One that announces one is refused rather
            // than re-framed: after a 101 nobody can tell its bytes from the first frames, and
            // after any other answer an upstream that drains it would read the next request on
            // the connection as that body (request smuggling).
            if forward::announces_body(req.headers()) {
                return Err(Error::new(
                    ErrorCode::UpgradeWithBody,
                    "a WebSocket handshake cannot carry a body",
                )
                .with_hint(
                    "send the upgrade request without Content-Length or Transfer-Encoding",
                ));
            }
        }
        // The dev frontend needs no identity: its assets cost no session lookup.
        let wants_user = up.policy == UpstreamPolicy::RequireAuth
            || up.identity_headers
            || up.identity_assertion
            || up.forward_access_token;
        let user = match req.extensions().get::<Session>() {
            Some(session) if wants_user => session.user().await?,
            _ => None,
        };
        if user.is_none() && up.policy == UpstreamPolicy::RequireAuth {
            return Err(Error::not_authenticated());
        }
        // The provider's access token of a session that logged in through OpenID (refreshed
        // when due): the backend-for-frontend relay; the browser never holds it.
        let access_token = match (&user, &self.oidc, req.extensions().get::<Session>()) {
            (Some(u), Some(rp), Some(session)) if up.forward_access_token => {
                rp.access_token(session, u.id).await?
            }
            _ => None,
        };
        // Resolved before the forwarding headers go: behind a trusted proxy, the client it names.
        let client_ip = self.trusted.resolve(req.extensions(), req.headers());
        let headers = req.headers_mut();
        // First everything the client may not hand on: hop-by-hop headers and those its
        // `Connection` names, its forwarding and framing headers, a client's `X-Vestibule-*`
        // (any spelling), its credentials unless configured, and the CSRF header. Only then are
        // Vestibule's own headers added, so no client header can remove them.
        let forward_authorization = up.forward_authorization;
        forward::clean_request_headers(headers, |name| {
            looks_like_ours(name)
                || (!forward_authorization && name == header::AUTHORIZATION)
                || name == crate::csrf::CSRF_HEADER
        });
        // Every cookie Vestibule owns is stripped: the device cookie always, the session cookie
        // unless the upstream is configured to get it.
        if up.forward_session_cookie {
            crate::cookie_header::remove(headers, &[&self.side.device_cookie]);
        } else {
            crate::cookie_header::remove(
                headers,
                &[&self.side.session_cookie, &self.side.device_cookie],
            );
        }
        if let (Some(user), true) = (&user, up.identity_headers) {
            headers.insert(USER_ID, HeaderValue::from(user.id));
            // Usernames are ASCII letters, digits and @.+-_ (auth::Username): always valid.
            if let Ok(v) = HeaderValue::from_str(&user.username) {
                headers.insert(USERNAME, v);
            }
        }
        if let Some(v) =
            access_token.and_then(|t| HeaderValue::try_from(format!("Bearer {t}")).ok())
        {
            headers.insert(header::AUTHORIZATION, v);
        }
        if let (Some(user), Some(key), Some(cache)) = (&user, &self.assertion, &proxy.assertions)
            && let Some(v) =
                cache.assertion(key, &self.issuer, &up.url, user, crate::session::now())
        {
            headers.insert(ASSERTION, v);
        }
        // The request's id goes upstream too, so the backend's log can quote the id the client
        // got back and Vestibule logged: the client's own when the front kept it, else the one
        // the front made (which replaces a client value it refused).
        let request_id = req
            .extensions()
            .get::<tower_http::request_id::RequestId>()
            .map(|id| id.header_value().clone());
        let mut side = self.side.clone();
        side.ip = client_ip;
        side.request_id = request_id
            .as_ref()
            .and_then(|id| id.to_str().ok())
            .map(Arc::from);
        if let Some(id) = request_id {
            req.headers_mut().insert(REQUEST_ID, id);
        }
        Ok((req, side, upgrade))
    }
}

/// Whether no segment of `path`, once percent-decoded and split at `/` and `\\` (which some
/// backends treat alike), is `.` or `..`. The gateway authorises by prefix; a backend that
/// resolves `/public/../api` or `/public/..%2Fapi` would serve `/api` under `/public`'s policy.
/// Encoded slashes alone (`/projects/group%2Fname`) stay allowed.
fn is_plain_path(path: &str) -> bool {
    path.split('/').all(|segment| {
        // Bytes, not `contains(['%', '.'])`, which decodes every char of the path.
        if !segment.bytes().any(|b| b == b'%' || b == b'.') {
            return true;
        }
        percent_decode(segment)
            .split(|b| matches!(b, b'/' | b'\\'))
            .all(|piece| piece != b"." && piece != b"..")
    })
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            )
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(0));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Removes every header that could pass for one of ours: `X-Vestibule-*` in any case, and with
/// underscores, which CGI-style backends (Django's `META`, PHP) fold into the same name.
/// `X-Vestibule-*` in any case, with `_` for `-` (some backends fold underscores into dashes).
pub(crate) fn looks_like_ours(name: &HeaderName) -> bool {
    // Header names are lower-case already; compared in place, no copy per header.
    const OURS: &[u8] = b"x-vestibule";
    let n = name.as_str().as_bytes();
    n.len() >= OURS.len()
        && n.iter()
            .zip(OURS)
            .all(|(c, o)| c == o || (*c == b'_' && *o == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    #[test]
    fn every_spelling_of_our_headers_is_stripped() {
        let mut h = HeaderMap::new();
        for name in [
            "x-vestibule-user-id",
            "X-VESTIBULE-USERNAME",
            "x_vestibule_user_id",
            "x-vestibule_username",
            "x-vestibuleuser",
            "x-other",
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_static("1"),
            );
        }
        forward::remove_where(&mut h, false, looks_like_ours);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-other"));
    }

    #[test]
    fn dot_segments_and_encoded_slashes_are_not_plain() {
        for ok in [
            "/api/notes",
            "/api/v1.2/x",
            "/api/.well-known/x",
            "/api/a%20b",
            "/",
        ] {
            assert!(is_plain_path(ok), "{ok}");
        }
        for bad in [
            "/public/../api/x",
            "/public/./x",
            "/public/..",
            "/public/%2e%2e/api",
            "/public/%2E./api",
            "/public/..%2Fapi/x",
            "/public/a%5c..%5capi",
            "/public\\..\\api",
        ] {
            assert!(!is_plain_path(bad), "{bad}");
        }
    }
}
