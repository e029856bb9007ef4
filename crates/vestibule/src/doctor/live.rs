//! Live cookie-drop detection in a running server (development: on with `debug_endpoint`).
//!
//! On the first login no server can know whether the browser stored the cookie (rule 1 is
//! silent). What it can see is the aftermath: it answered a cross-origin login with a session
//! cookie, and the next requests from the same client — same `Origin`, address and user agent,
//! within a short window — arrive without it. Then the browser did not store or send the
//! cookie, and the SPA is most likely calling without `credentials: 'include'`. That is logged
//! once per origin with the fix, as is a login from an origin that is cross-site with the API
//! (third-party cookie blocking will drop the cookie). `/auth/_debug` shows the same analysis
//! for the request it receives ([`LiveAnalysis`] in the request extensions).

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;

use super::rules::{CROSS_SITE_ARCHITECTURE, relation};
use crate::origin::Origin;
use crate::origins::Relation;

/// How long after a login a request without the cookie counts as a drop.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// Logins remembered at once (a development server; bounded anyway).
const MAX_PENDING: usize = 10_000;
/// Origins remembered as already warned about.
const MAX_WARNED: usize = 1_000;

/// The client a login is remembered for: origin, address and user agent (hashed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    origin: String,
    ip: Option<IpAddr>,
    user_agent: u64,
}

/// What the live detector concluded about one request (shown by `/auth/_debug`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LiveAnalysis {
    /// This client (origin, address, user agent) was answered a login with a session cookie
    /// within the window.
    pub logged_in_recently: bool,
    /// … and this request arrived without it (and without `Authorization`).
    pub cookie_dropped: bool,
    /// The origin is cross-site with the API.
    pub cross_site: bool,
    /// The explanation with the fix, when something is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug)]
struct Inner {
    public: Origin,
    cookie_name: String,
    window: Duration,
    pending: Mutex<HashMap<ClientKey, Instant>>,
    warned: Mutex<HashSet<(&'static str, String)>>,
    warnings: Mutex<Vec<String>>,
}

/// The detector: cheap to clone, shared by every request.
#[derive(Debug, Clone)]
pub struct LiveDoctor(Arc<Inner>);

impl LiveDoctor {
    /// A detector for the API at `public` whose session cookie is `cookie_name`.
    pub fn new(public: Origin, cookie_name: impl Into<String>) -> Self {
        Self(Arc::new(Inner {
            public,
            cookie_name: cookie_name.into(),
            window: DEFAULT_WINDOW,
            pending: Mutex::new(HashMap::new()),
            warned: Mutex::new(HashSet::new()),
            warnings: Mutex::new(Vec::new()),
        }))
    }

    /// The warnings logged so far (each once per origin), oldest first.
    pub fn warnings(&self) -> Vec<String> {
        self.0
            .warnings
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default()
    }

    fn warn_once(&self, kind: &'static str, origin: &Origin, message: &str) {
        let first = self
            .0
            .warned
            .lock()
            .is_ok_and(|mut w| w.len() < MAX_WARNED && w.insert((kind, origin.to_string())));
        if first {
            tracing::warn!(origin = %origin, "{message}");
            if let Ok(mut w) = self.0.warnings.lock() {
                w.push(message.to_owned());
            }
        }
    }

    fn drop_message(&self, origin: &Origin, ago: Duration) -> String {
        let mut m = format!(
            "the browser did not store or send the session cookie: {origin} was answered a login with it {}s ago and now calls without it; the SPA is most likely calling without credentials: 'include' (rule 1). Fix: fetch(url, {{credentials: 'include'}}) on every call (axios: withCredentials: true); `vestibule doctor --scan ./src` lists the calls",
            ago.as_secs()
        );
        if relation(origin, &self.0.public) == Relation::CrossSite {
            m.push_str(&format!(
                "; {origin} is also cross-site with {}, so third-party cookie blocking drops it unless Partitioned (rule 7)",
                self.0.public
            ));
        }
        m
    }

    /// Judges a request from `origin` (not the API's own) before it is handled.
    fn on_request(
        &self,
        key: &ClientKey,
        origin: &Origin,
        has_cookie: bool,
        has_auth: bool,
    ) -> LiveAnalysis {
        let cross_site = relation(origin, &self.0.public) == Relation::CrossSite;
        let now = Instant::now();
        let since = {
            let Ok(mut pending) = self.0.pending.lock() else {
                return LiveAnalysis::default();
            };
            match pending.get(key) {
                Some(t) if now.duration_since(*t) <= self.0.window => {
                    let t = *t;
                    if has_cookie {
                        // The cookie came back: the browser stores and sends it.
                        pending.remove(key);
                    }
                    Some(now.duration_since(t))
                }
                Some(_) => {
                    pending.remove(key);
                    None
                }
                None => None,
            }
        };
        let mut analysis = LiveAnalysis {
            logged_in_recently: since.is_some(),
            cross_site,
            ..LiveAnalysis::default()
        };
        if let Some(ago) = since
            && !has_cookie
            && !has_auth
        {
            let message = self.drop_message(origin, ago);
            self.warn_once("dropped", origin, &message);
            analysis.cookie_dropped = true;
            analysis.message = Some(message);
        } else if cross_site {
            analysis.message = Some(self.cross_site_message(origin));
        }
        analysis
    }

    fn cross_site_message(&self, origin: &Origin) -> String {
        format!(
            "login from {origin}, which is cross-site with {}: browsers that block third-party cookies (Chromium's default) drop the session cookie unless it is SameSite=None; Secure; Partitioned, and Safari drops even that (rules 7, 8); simpler: {CROSS_SITE_ARCHITECTURE}",
            self.0.public
        )
    }

    /// Notes a response: a session cookie set for a cross-origin client starts the window; a
    /// removal (logout) ends it.
    fn on_response(&self, key: ClientKey, origin: &Origin, headers: &HeaderMap) {
        let mut set = None;
        for v in headers.get_all(header::SET_COOKIE) {
            let Ok(line) = v.to_str() else { continue };
            let Ok(c) = cookie::Cookie::parse(line) else {
                continue;
            };
            if c.name() == self.0.cookie_name {
                let removal = c.max_age().is_some_and(|m| m.is_zero() || m.is_negative());
                set = Some(!removal);
            }
        }
        let Some(set) = set else { return };
        let Ok(mut pending) = self.0.pending.lock() else {
            return;
        };
        if !set {
            pending.remove(&key);
            return;
        }
        if pending.len() >= MAX_PENDING {
            let window = self.0.window;
            pending.retain(|_, t| t.elapsed() <= window);
        }
        if pending.len() < MAX_PENDING {
            pending.insert(key, Instant::now());
        }
        drop(pending);
        if relation(origin, &self.0.public) == Relation::CrossSite {
            self.warn_once("cross-site", origin, &self.cross_site_message(origin));
        }
    }
}

fn has_named_cookie(headers: &HeaderMap, name: &str) -> bool {
    crate::cookie_header::has(headers, name)
}

/// The middleware (`axum::middleware::from_fn_with_state(live, live::middleware)`): requests
/// from another origin are judged, their [`LiveAnalysis`] put in the extensions, and session
/// cookies set in the answers noted. Preflights (which never carry cookies) and same-origin
/// requests pass untouched.
pub async fn middleware(State(live): State<LiveDoctor>, mut req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| Origin::parse(s).ok());
    let Some(origin) = origin.filter(|o| *o != live.0.public && req.method() != Method::OPTIONS)
    else {
        return next.run(req).await;
    };
    let headers = req.headers();
    let mut ua = DefaultHasher::new();
    headers
        .get(header::USER_AGENT)
        .map(|v| v.as_bytes())
        .hash(&mut ua);
    let key = ClientKey {
        origin: origin.to_string(),
        ip: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip()),
        user_agent: ua.finish(),
    };
    let has_cookie = has_named_cookie(headers, &live.0.cookie_name);
    let has_auth = headers.contains_key(header::AUTHORIZATION);
    let analysis = live.on_request(&key, &origin, has_cookie, has_auth);
    req.extensions_mut().insert(analysis);
    let res = next.run(req).await;
    live.on_response(key, &origin, res.headers());
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn key(origin: &str) -> ClientKey {
        ClientKey {
            origin: origin.into(),
            ip: Some(IpAddr::from([127, 0, 0, 1])),
            user_agent: 1,
        }
    }

    fn set_cookie(line: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append(header::SET_COOKIE, HeaderValue::from_static(line));
        h
    }

    fn doctor() -> LiveDoctor {
        LiveDoctor::new(Origin::parse("http://localhost:8000").expect("o"), "sid")
    }

    #[test]
    fn a_login_followed_by_a_cookieless_call_is_a_drop_warned_once() {
        let d = doctor();
        let spa = Origin::parse("http://localhost:3000").expect("o");
        let k = key("http://localhost:3000");
        assert_eq!(
            d.on_request(&k, &spa, false, false),
            LiveAnalysis::default()
        );
        d.on_response(k.clone(), &spa, &set_cookie("sid=abc; Path=/"));
        let a = d.on_request(&k, &spa, false, false);
        assert!(a.cookie_dropped && a.logged_in_recently);
        assert!(
            a.message
                .as_deref()
                .is_some_and(|m| m.contains("credentials: 'include'"))
        );
        let again = d.on_request(&k, &spa, false, false);
        assert!(again.cookie_dropped, "still dropped for _debug");
        assert_eq!(d.warnings().len(), 1, "logged once per origin");
    }

    #[test]
    fn the_cookie_coming_back_bearer_calls_and_other_clients_are_not_drops() {
        let d = doctor();
        let spa = Origin::parse("http://localhost:3000").expect("o");
        let k = key("http://localhost:3000");
        d.on_response(k.clone(), &spa, &set_cookie("sid=abc; Path=/"));
        assert!(
            !d.on_request(&k, &spa, false, true).cookie_dropped,
            "bearer"
        );
        let other = ClientKey {
            user_agent: 2,
            ..k.clone()
        };
        assert!(!d.on_request(&other, &spa, false, false).cookie_dropped);
        assert!(!d.on_request(&k, &spa, true, false).cookie_dropped);
        // After the cookie came back, a cookieless call is not blamed on the login.
        assert!(!d.on_request(&k, &spa, false, false).cookie_dropped);
        // A logout's removal ends the window too.
        d.on_response(k.clone(), &spa, &set_cookie("sid=abc; Path=/"));
        d.on_response(k.clone(), &spa, &set_cookie("sid=; Max-Age=0; Path=/"));
        assert!(!d.on_request(&k, &spa, false, false).cookie_dropped);
        // Other cookies do not start a window.
        d.on_response(k.clone(), &spa, &set_cookie("theme=dark"));
        assert!(!d.on_request(&k, &spa, false, false).cookie_dropped);
        assert!(d.warnings().is_empty());
    }

    #[test]
    fn a_cross_site_login_is_warned_about() {
        let d = LiveDoctor::new(Origin::parse("http://127.0.0.1:8000").expect("o"), "sid");
        let spa = Origin::parse("http://localhost:3000").expect("o");
        let k = key("http://localhost:3000");
        d.on_response(k.clone(), &spa, &set_cookie("sid=abc; Path=/"));
        d.on_response(k, &spa, &set_cookie("sid=abc; Path=/"));
        let w = d.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("cross-site") && w[0].contains("bearer"),
            "{w:?}"
        );
    }

    #[test]
    fn named_cookie_detection_is_exact() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; sidx=2"));
        assert!(!has_named_cookie(&h, "sid"));
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; sid=2"));
        assert!(has_named_cookie(&h, "sid"));
    }
}
