//! CORS for a credentialed SPA, answered entirely in the layer.
//!
//! - The response echoes the exact request origin (never `*`), with
//!   `Access-Control-Allow-Credentials: true`, and every response on a CORS path carries
//!   `Vary: Origin` (also without an `Origin` header, and on refusals), so caches never serve one
//!   origin's answer to another.
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) never reaches the
//!   inner service, so it costs no session, store or database access: 204 with only what was
//!   asked and allowed, or 403 with the error body and no CORS headers.
//! - Other requests always reach the inner service: CORS is not access control (CSRF protects
//!   writes); a refused origin only gets no CORS headers, and a log line naming the origin and
//!   the configuration key that would allow it.
//! - `Origin: null` (sandboxed frames, `file://` pages, cross-origin redirects) is never allowed.
//!
//! Put [`CorsLayer`] outermost, outside the session layer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, CONTENT_TYPE, ORIGIN, VARY,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::response::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::origin::Origin;
use crate::origins::OriginsPolicy;
use crate::problem::{ConfigError, Problem};

mod section;
pub use section::RawCors;

/// `Access-Control-Request-Private-Network` (Private Network Access preflights).
pub const REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
/// `Access-Control-Allow-Private-Network`.
pub const ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");

const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// How CORS answers (`[cors]`), validated by [`CorsConfig::validate`] before any layer uses it.
/// Which origins may read answers is not here: the layer asks the origins policy
/// ([`OriginsPolicy::is_cors_allowed`]), the one list CSRF and the debug endpoint also use.
#[derive(Debug, Clone)]
pub struct CorsConfig {
    /// `Access-Control-Allow-Credentials: true`: needed for the session cookie. Default true.
    pub allow_credentials: bool,
    /// Methods a preflight may ask for. Default GET, HEAD, POST, PUT, PATCH, DELETE.
    pub allow_methods: Vec<Method>,
    /// Request headers a preflight may ask for (case-insensitive). Default `authorization`,
    /// `content-type`, `x-csrf-token`, `x-requested-with`, `x-vestibule-no-touch`.
    pub allow_headers: Vec<HeaderName>,
    /// Response headers the page may read besides the safelisted ones. Default `x-request-id`.
    pub expose_headers: Vec<HeaderName>,
    /// How long browsers may cache a preflight answer. Default 10 minutes.
    pub max_age: Duration,
    /// Path prefixes CORS applies to (`/auth` covers `/auth` and `/auth/me`, not `/authx`).
    /// Default `["/"]`: everywhere.
    pub paths: Vec<String>,
    /// Answer Private Network Access preflights (a public page calling a private-network API)
    /// with `Access-Control-Allow-Private-Network: true`. Default false.
    pub allow_private_network: bool,
}

/// The default allowed methods.
pub const DEFAULT_METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
/// The default allowed request headers: what the Vestibule client sends.
pub const DEFAULT_ALLOW_HEADERS: [&str; 5] = [
    "authorization",
    "content-type",
    "x-csrf-token",
    "x-requested-with",
    "x-vestibule-no-touch",
];
/// The default exposed response headers.
pub const DEFAULT_EXPOSE_HEADERS: [&str; 1] = ["x-request-id"];
/// The default preflight cache time.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allow_credentials: true,
            allow_methods: DEFAULT_METHODS
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            allow_headers: DEFAULT_ALLOW_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect(),
            expose_headers: DEFAULT_EXPOSE_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect(),
            max_age: DEFAULT_MAX_AGE,
            paths: vec!["/".into()],
            allow_private_network: false,
        }
    }
}

impl CorsConfig {
    /// Checks what browsers would refuse or what would silently never match, so the layer
    /// cannot be misconfigured at run time (tower-http's layer panics instead).
    ///
    /// # Errors
    /// Every problem, keyed as in `vestibule.toml`: a `*` in methods or headers with
    /// credentials (browsers take it literally then), no method at all, a path that does not
    /// start with `/`.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        let star = |name: &str| name == "*";
        if self.allow_credentials {
            for (key, any) in [
                (
                    "cors.allow_methods",
                    self.allow_methods.iter().any(|m| star(m.as_str())),
                ),
                (
                    "cors.allow_headers",
                    self.allow_headers.iter().any(|h| star(h.as_str())),
                ),
                (
                    "cors.expose_headers",
                    self.expose_headers.iter().any(|h| star(h.as_str())),
                ),
            ] {
                if any {
                    problems.push(Problem {
                        key: key.into(),
                        message: "`*` with cors.allow_credentials = true: browsers treat it as a literal name for credentialed requests, so it allows nothing; list the names".into(),
                    });
                }
            }
        }
        if self.allow_methods.is_empty() {
            problems.push(Problem {
                key: "cors.allow_methods".into(),
                message: "is empty, so every preflight is refused; list at least GET and POST"
                    .into(),
            });
        }
        for (i, p) in self.paths.iter().enumerate() {
            if !p.starts_with('/') {
                problems.push(Problem {
                    key: format!("cors.paths[{i}]"),
                    message: format!("{p:?} must be a path prefix starting with /, e.g. /auth"),
                });
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// The layer's compiled, immutable view of a valid [`CorsConfig`], and the policy it asks.
#[derive(Debug)]
struct Compiled {
    /// Who may read answers; `None` (a configuration that failed validation): nobody.
    policy: Option<Arc<OriginsPolicy>>,
    credentials: bool,
    methods: Vec<Method>,
    any_method: bool,
    headers: Vec<HeaderName>,
    any_header: bool,
    expose: Option<HeaderValue>,
    max_age: HeaderValue,
    paths: Vec<String>,
    private_network: bool,
}

impl Compiled {
    fn new(config: CorsConfig, policy: Option<Arc<OriginsPolicy>>) -> Self {
        let expose = (!config.expose_headers.is_empty())
            .then(|| {
                let joined: Vec<&str> = config
                    .expose_headers
                    .iter()
                    .map(HeaderName::as_str)
                    .collect();
                HeaderValue::from_str(&joined.join(", ")).ok()
            })
            .flatten();
        Self {
            policy,
            credentials: config.allow_credentials,
            any_method: config.allow_methods.iter().any(|m| m.as_str() == "*"),
            methods: config.allow_methods,
            any_header: config.allow_headers.iter().any(|h| h.as_str() == "*"),
            headers: config.allow_headers,
            expose,
            max_age: HeaderValue::from(config.max_age.as_secs()),
            paths: config.paths,
            private_network: config.allow_private_network,
        }
    }

    fn applies_to(&self, path: &str) -> bool {
        self.paths.iter().any(|p| {
            p == "/"
                || path.strip_prefix(p.as_str()).is_some_and(|rest| {
                    rest.is_empty() || rest.starts_with('/') || p.ends_with('/')
                })
        })
    }

    fn check_origin(&self, value: &HeaderValue) -> OriginVerdict {
        let Ok(text) = value.to_str() else {
            return OriginVerdict::Malformed;
        };
        if text == "null" {
            return OriginVerdict::Null;
        }
        let Some(policy) = &self.policy else {
            return match Origin::parse(text) {
                Ok(_) => OriginVerdict::NotListed,
                Err(_) => OriginVerdict::Malformed,
            };
        };
        if policy.is_cors_allowed_exactly(text) {
            return OriginVerdict::Allowed;
        }
        match Origin::parse(text) {
            Ok(o) if policy.is_cors_allowed(&o) => OriginVerdict::Allowed,
            Ok(_) => OriginVerdict::NotListed,
            Err(_) => OriginVerdict::Malformed,
        }
    }

    fn preflight(&self, origin: &HeaderValue, headers: &HeaderMap) -> Response {
        let shown = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        match self.check_origin(origin) {
            OriginVerdict::Allowed => {}
            verdict => {
                let (message, hint) = verdict.explain(&shown);
                tracing::warn!(target: "vestibule::audit", event = "cors.refused", origin = %shown, key = verdict.key(), "CORS preflight refused: {message}");
                return refusal("cors_origin_refused", &message, &hint);
            }
        }
        let requested = headers
            .get(ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
        let method = match requested {
            Some(m) if self.any_method || self.methods.contains(&m) => m,
            other => {
                let m = other.map_or_else(|| "(malformed)".to_owned(), |m| m.to_string());
                tracing::warn!(target: "vestibule::audit", event = "cors.refused", origin = %shown, method = %m, key = "cors.allow_methods", "CORS preflight refused: method not allowed");
                return refusal(
                    "cors_preflight_refused",
                    &format!("CORS preflight refused: method {m} is not allowed"),
                    "add it to cors.allow_methods (VESTIBULE_CORS__ALLOW_METHODS) on the API server",
                );
            }
        };
        let mut asked = Vec::new();
        let mut refused = Vec::new();
        for value in headers.get_all(ACCESS_CONTROL_REQUEST_HEADERS) {
            let Ok(text) = value.to_str() else {
                refused.push("(malformed)".to_owned());
                continue;
            };
            for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let name = name.to_ascii_lowercase();
                let ok = self.any_header || self.headers.iter().any(|h| h.as_str() == name);
                if ok {
                    asked.push(name);
                } else {
                    refused.push(name);
                }
            }
        }
        if !refused.is_empty() {
            let list = refused.join(", ");
            tracing::warn!(target: "vestibule::audit", event = "cors.refused", origin = %shown, headers = %list, key = "cors.allow_headers", "CORS preflight refused: request headers not allowed");
            return refusal(
                "cors_preflight_refused",
                &format!("CORS preflight refused: request header(s) {list} not allowed"),
                "add them to cors.allow_headers (VESTIBULE_CORS__ALLOW_HEADERS) on the API server, or stop sending them",
            );
        }
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::NO_CONTENT;
        let h = res.headers_mut();
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            h.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Ok(v) = HeaderValue::from_str(method.as_str()) {
            h.insert(ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        if !asked.is_empty()
            && let Ok(v) = HeaderValue::from_str(&asked.join(", "))
        {
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        h.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        let pna = headers
            .get(REQUEST_PRIVATE_NETWORK)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        if pna {
            if self.private_network {
                h.insert(ALLOW_PRIVATE_NETWORK, HeaderValue::from_static("true"));
            } else {
                tracing::warn!(origin = %shown, key = "cors.allow_private_network", "Private Network Access preflight not allowed: the browser will block the call");
            }
        }
        h.insert(VARY, HeaderValue::from_static(PREFLIGHT_VARY));
        res
    }
}

/// What the layer decided about a request's `Origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OriginVerdict {
    Allowed,
    Null,
    Malformed,
    NotListed,
}

impl OriginVerdict {
    /// The configuration key that would allow the origin.
    fn key(self) -> &'static str {
        match self {
            OriginVerdict::NotListed => "spa_origins",
            OriginVerdict::Allowed | OriginVerdict::Null | OriginVerdict::Malformed => "none",
        }
    }

    fn explain(self, shown: &str) -> (String, String) {
        match self {
            OriginVerdict::Null => (
                "Origin null (a sandboxed frame, a file:// page or a cross-origin redirect) is never allowed".into(),
                "serve the page from an http(s) origin listed in spa_origins".into(),
            ),
            OriginVerdict::Malformed => (
                format!("Origin {shown:?} is not an http(s) origin"),
                "browsers send scheme://host[:port]; check the client".into(),
            ),
            OriginVerdict::NotListed | OriginVerdict::Allowed => (
                format!("origin {shown} is not allowed"),
                format!(
                    "add {shown} to spa_origins (VESTIBULE_SPA_ORIGINS) on the API server; patterns like https://*.acme.com are allowed"
                ),
            ),
        }
    }
}

/// 403 in the project's error format, with `Vary` and no CORS headers.
fn refusal(code: &str, message: &str, hint: &str) -> Response {
    let body = serde_json::json!({"code": code, "message": message, "hint": hint});
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = StatusCode::FORBIDDEN;
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(VARY, HeaderValue::from_static(PREFLIGHT_VARY));
    res
}

/// Adds `Vary: Origin` unless a `Vary` already covers it; never replaces other `Vary` values.
fn append_vary_origin(headers: &mut HeaderMap) {
    let covered = headers.get_all(VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.eq_ignore_ascii_case("origin"))
        })
    });
    if !covered {
        headers.append(VARY, HeaderValue::from_static("Origin"));
    }
}

/// Tower layer applying a validated [`CorsConfig`]. Put it outermost (outside the session
/// layer) so preflights never touch sessions.
#[derive(Debug, Clone)]
pub struct CorsLayer {
    state: Arc<Compiled>,
}

impl CorsLayer {
    /// A layer answering as `config` says for the origins `policy` allows (the server's shared
    /// origins policy), `config` validated first.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] with every problem of [`CorsConfig::validate`].
    pub fn new(config: CorsConfig, policy: Arc<OriginsPolicy>) -> Result<Self, ConfigError> {
        config.validate().map_err(ConfigError::Invalid)?;
        Ok(Self {
            state: Arc::new(Compiled::new(config, Some(policy))),
        })
    }
}

/// The CORS layer of a validated configuration's `cors` (outermost layer of the server).
///
/// `RawConfig::validate` already checked `config.cors`; should the public field have been
/// changed into something invalid since, the layer fails closed (logged at error level): it
/// allows no cross-origin reader and no `*`, but still sends `Vary` and never panics.
pub fn cors_layer(cors: &CorsConfig, policy: &Arc<OriginsPolicy>) -> CorsLayer {
    CorsLayer::new(cors.clone(), policy.clone()).unwrap_or_else(|e| {
        tracing::error!(error = %e, "invalid CORS configuration: no cross-origin page may read answers");
        let mut safe = cors.clone();
        safe.allow_methods.retain(|m| m.as_str() != "*");
        safe.allow_headers.retain(|h| h.as_str() != "*");
        safe.expose_headers.retain(|h| h.as_str() != "*");
        CorsLayer {
            state: Arc::new(Compiled::new(safe, None)),
        }
    })
}

impl<S> Layer<S> for CorsLayer {
    type Service = CorsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CorsService {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service made by [`CorsLayer`].
#[derive(Debug, Clone)]
pub struct CorsService<S> {
    inner: S,
    state: Arc<Compiled>,
}

impl<S, B> Service<Request<B>> for CorsService<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = CorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let state = &self.state;
        if !state.applies_to(req.uri().path()) {
            return CorsFuture::inner(self.inner.call(req), None);
        }
        let origin = req.headers().get(ORIGIN).cloned();
        if let Some(origin) = &origin
            && req.method() == Method::OPTIONS
            && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD)
        {
            return CorsFuture::ready(state.preflight(origin, req.headers()));
        }
        let decision = match origin {
            None => Decision::NoOrigin,
            Some(origin) => match state.check_origin(&origin) {
                OriginVerdict::Allowed => Decision::Allowed(origin),
                verdict => {
                    let shown = String::from_utf8_lossy(origin.as_bytes());
                    let (message, _) = verdict.explain(&shown);
                    tracing::info!(origin = %shown, key = verdict.key(), "CORS headers withheld: {message}");
                    Decision::Refused
                }
            },
        };
        let finish = Finish {
            state: state.clone(),
            decision,
        };
        CorsFuture::inner(self.inner.call(req), Some(finish))
    }
}

#[derive(Debug)]
enum Decision {
    NoOrigin,
    Allowed(HeaderValue),
    Refused,
}

/// What to add to the inner service's response.
#[derive(Debug)]
struct Finish {
    state: Arc<Compiled>,
    decision: Decision,
}

impl Finish {
    fn apply(self, res: &mut Response) {
        let h = res.headers_mut();
        append_vary_origin(h);
        match self.decision {
            Decision::NoOrigin => {}
            Decision::Allowed(origin) => {
                h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                if self.state.credentials {
                    h.insert(
                        ACCESS_CONTROL_ALLOW_CREDENTIALS,
                        HeaderValue::from_static("true"),
                    );
                }
                if let Some(expose) = &self.state.expose {
                    h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
                }
            }
            Decision::Refused => {
                h.remove(ACCESS_CONTROL_ALLOW_ORIGIN);
                h.remove(ACCESS_CONTROL_ALLOW_CREDENTIALS);
                h.remove(ACCESS_CONTROL_EXPOSE_HEADERS);
            }
        }
    }
}

pin_project! {
    /// The future of [`CorsService`]: a preflight answer, or the inner response with CORS
    /// headers added.
    pub struct CorsFuture<F> {
        #[pin]
        kind: FutureKind<F>,
    }
}

pin_project! {
    #[project = FutureKindProj]
    enum FutureKind<F> {
        Ready { response: Option<Response> },
        Inner { #[pin] future: F, finish: Option<Finish> },
    }
}

impl<F> CorsFuture<F> {
    fn ready(response: Response) -> Self {
        Self {
            kind: FutureKind::Ready {
                response: Some(response),
            },
        }
    }

    fn inner(future: F, finish: Option<Finish>) -> Self {
        Self {
            kind: FutureKind::Inner { future, finish },
        }
    }
}

impl<F> Future for CorsFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            FutureKindProj::Ready { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_default()))
            }
            FutureKindProj::Inner { future, finish } => {
                let Ok(mut res) = ready!(future.poll(cx));
                if let Some(f) = finish.take() {
                    f.apply(&mut res);
                }
                Poll::Ready(Ok(res))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CorsConfig {
        CorsConfig::default()
    }

    /// `https://api.acme.com` called by `http://localhost:3000` and `https://*.acme.com`.
    fn policy() -> Arc<OriginsPolicy> {
        use crate::origins::{CookieOverrides, OriginPattern};
        let (p, _) = OriginsPolicy::new(
            Origin::parse("https://api.acme.com").expect("origin"),
            vec![
                OriginPattern::parse("http://localhost:3000").expect("pattern"),
                OriginPattern::parse("https://*.acme.com").expect("pattern"),
            ],
            vec![],
            CookieOverrides::default(),
        )
        .expect("valid policy");
        Arc::new(p)
    }

    #[test]
    fn defaults_are_valid() {
        assert!(CorsConfig::default().validate().is_ok());
        assert!(CorsLayer::new(config(), policy()).is_ok());
    }

    #[test]
    fn validation_names_each_key() {
        let star_method = Method::from_bytes(b"*").expect("token");
        let star = HeaderName::from_static("*");
        for (tweak, key) in [
            (
                Box::new(|c: &mut CorsConfig| c.allow_methods.push(star_method.clone()))
                    as Box<dyn Fn(&mut CorsConfig)>,
                "cors.allow_methods",
            ),
            (
                Box::new(|c: &mut CorsConfig| c.allow_headers.push(star.clone())),
                "cors.allow_headers",
            ),
            (
                Box::new(|c: &mut CorsConfig| c.expose_headers.push(star.clone())),
                "cors.expose_headers",
            ),
            (
                Box::new(|c: &mut CorsConfig| c.allow_methods.clear()),
                "cors.allow_methods",
            ),
            (
                Box::new(|c: &mut CorsConfig| c.paths = vec!["/".into(), "auth".into()]),
                "cors.paths[1]",
            ),
        ] {
            let mut c = config();
            tweak(&mut c);
            let problems = c.validate().expect_err(key);
            assert!(problems.iter().any(|p| p.key == key), "{key}: {problems:?}");
        }
        let mut without_credentials = config();
        without_credentials.allow_credentials = false;
        without_credentials.allow_headers.push(star);
        assert!(without_credentials.validate().is_ok());
    }

    #[test]
    fn paths_are_prefixes_on_segment_boundaries() {
        let mut c = config();
        c.paths = vec!["/auth".into(), "/api/".into()];
        let compiled = Compiled::new(c, Some(policy()));
        for (path, expected) in [
            ("/auth", true),
            ("/auth/me", true),
            ("/authx", false),
            ("/api/", true),
            ("/api/x", true),
            ("/api", false),
            ("/", false),
            ("/healthz", false),
        ] {
            assert_eq!(compiled.applies_to(path), expected, "{path}");
        }
        assert!(Compiled::new(config(), Some(policy())).applies_to("/anything"));
    }

    #[test]
    fn origins_are_checked_exactly() {
        let compiled = Compiled::new(config(), Some(policy()));
        for (o, expected) in [
            ("https://api.acme.com", OriginVerdict::Allowed),
            ("http://localhost:3000", OriginVerdict::Allowed),
            ("https://www.acme.com", OriginVerdict::Allowed),
            ("https://a.b.acme.com", OriginVerdict::Allowed),
            ("https://acme.com", OriginVerdict::NotListed),
            ("http://localhost:3001", OriginVerdict::NotListed),
            ("https://evilacme.com", OriginVerdict::NotListed),
            ("null", OriginVerdict::Null),
            ("not an origin", OriginVerdict::Malformed),
        ] {
            let v = HeaderValue::from_str(o).expect("header");
            assert_eq!(compiled.check_origin(&v), expected, "{o}");
        }
        // A configuration that failed validation allows nobody.
        let closed = Compiled::new(config(), None);
        let v = HeaderValue::from_static("http://localhost:3000");
        assert_eq!(closed.check_origin(&v), OriginVerdict::NotListed);
    }

    #[test]
    fn vary_is_appended_once() {
        let mut h = HeaderMap::new();
        h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        append_vary_origin(&mut h);
        append_vary_origin(&mut h);
        let all: Vec<_> = h.get_all(VARY).iter().collect();
        assert_eq!(all, ["Accept-Encoding", "Origin"]);
        let mut star = HeaderMap::new();
        star.insert(VARY, HeaderValue::from_static("*"));
        append_vary_origin(&mut star);
        assert_eq!(star.get_all(VARY).iter().count(), 1);
    }
}
