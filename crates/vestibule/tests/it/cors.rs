//! The CORS layer over real HTTP: allowed and refused origins and patterns, preflights and their
//! exact header sets, `Vary` on every response, credentials, `null`, Private Network Access,
//! paths, and preflights that never reach the inner service.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use axum::routing::get;
use reqwest::{Client, Method};
use serde_json::Value;
use vestibule::config::RawConfig;
use vestibule::cors::{CorsConfig, CorsLayer, cors_layer};
use vestibule::origin::Origin;
use vestibule::origins::{CookieOverrides, OriginPattern, OriginsPolicy};
use vestibule::server::debug::debug_echo;

use crate::support::serve_router;

const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// A served router whose inner service counts every request that reaches it.
struct Fixture {
    base: String,
    calls: Arc<AtomicU64>,
    http: Client,
}

async fn count(State(calls): State<Arc<AtomicU64>>, req: Request, next: Next) -> Response {
    calls.fetch_add(1, Ordering::SeqCst);
    next.run(req).await
}

async fn handler() -> ([(&'static str, &'static str); 2], &'static str) {
    (
        [("vary", "Accept-Encoding"), ("x-request-id", "req-1")],
        "ok",
    )
}

fn config() -> CorsConfig {
    CorsConfig::default()
}

/// The origins the layer allows: `https://api.acme.com` (its own) and these SPA origins.
fn policy() -> Arc<OriginsPolicy> {
    let spa = [
        "http://localhost:3000",
        "https://www.acme.com",
        "https://*.preview.acme.com",
    ]
    .iter()
    .map(|o| OriginPattern::parse(o).expect("pattern"))
    .collect();
    let public = Origin::parse("https://api.acme.com").expect("origin");
    let (policy, _) =
        OriginsPolicy::new(public, spa, vec![], CookieOverrides::default()).expect("valid policy");
    Arc::new(policy)
}

async fn serve(config: CorsConfig) -> Fixture {
    let calls = Arc::new(AtomicU64::new(0));
    let router = Router::new()
        .route("/api/thing", get(handler).post(handler).delete(handler))
        .route("/public/thing", get(handler))
        .layer(from_fn_with_state(calls.clone(), count))
        .layer(CorsLayer::new(config, policy()).expect("valid CORS config"));
    Fixture {
        base: serve_router(router).await,
        calls,
        http: Client::new(),
    }
}

impl Fixture {
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("request")
    }

    async fn preflight(
        &self,
        origin: &str,
        method: &str,
        headers: Option<&str>,
    ) -> reqwest::Response {
        let mut h = vec![
            ("origin", origin),
            ("access-control-request-method", method),
        ];
        if let Some(requested) = headers {
            h.push(("access-control-request-headers", requested));
        }
        self.send(Method::OPTIONS, "/api/thing", &h).await
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

/// The CORS headers of a response (every `access-control-*` one), lower-case names.
fn cors_headers(res: &reqwest::Response) -> BTreeMap<String, String> {
    res.headers()
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("access-control-"))
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect()
}

fn varies(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap_or("?").to_owned())
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn simple_requests_echo_allowed_origins_exactly_and_always_vary() {
    let f = serve(config()).await;
    let allowed = |origin: &str| {
        map(&[
            ("access-control-allow-origin", origin),
            ("access-control-allow-credentials", "true"),
            ("access-control-expose-headers", "x-request-id"),
        ])
    };
    let none = BTreeMap::new();
    let cases: Vec<(Method, Option<&str>, BTreeMap<String, String>)> = vec![
        (Method::GET, None, none.clone()),
        (
            Method::GET,
            Some("http://localhost:3000"),
            allowed("http://localhost:3000"),
        ),
        (
            Method::GET,
            Some("https://www.acme.com"),
            allowed("https://www.acme.com"),
        ),
        (
            Method::GET,
            Some("https://pr-1.preview.acme.com"),
            allowed("https://pr-1.preview.acme.com"),
        ),
        (
            Method::GET,
            Some("https://a.b.preview.acme.com"),
            allowed("https://a.b.preview.acme.com"),
        ),
        (
            Method::POST,
            Some("https://www.acme.com"),
            allowed("https://www.acme.com"),
        ),
        (Method::GET, Some("https://preview.acme.com"), none.clone()),
        (
            Method::GET,
            Some("http://pr-1.preview.acme.com"),
            none.clone(),
        ),
        (
            Method::GET,
            Some("https://pr-1.preview.acme.com:8443"),
            none.clone(),
        ),
        (
            Method::GET,
            Some("https://evilpreview.acme.com"),
            none.clone(),
        ),
        (
            Method::GET,
            Some("https://pr-1.preview.acme.com.evil.test"),
            none.clone(),
        ),
        (Method::GET, Some("https://acme.com"), none.clone()),
        (Method::GET, Some("http://localhost:3001"), none.clone()),
        (Method::GET, Some("http://127.0.0.1:3000"), none.clone()),
        (Method::GET, Some("https://evil.test"), none.clone()),
        (Method::GET, Some("null"), none.clone()),
        (Method::POST, Some("null"), none.clone()),
        (Method::POST, Some("https://evil.test"), none.clone()),
        (Method::GET, Some("not an origin"), none.clone()),
    ];
    let mut expected_calls = 0;
    for (method, origin, want) in cases {
        let headers: Vec<(&str, &str)> = origin.iter().map(|o| ("origin", *o)).collect();
        let res = f.send(method.clone(), "/api/thing", &headers).await;
        expected_calls += 1;
        assert_eq!(
            res.status(),
            200,
            "{method} {origin:?}: CORS never blocks the request"
        );
        assert_eq!(cors_headers(&res), want, "{method} {origin:?}");
        assert_eq!(
            varies(&res),
            ["Accept-Encoding", "Origin"],
            "{method} {origin:?}: Vary appended, not clobbered"
        );
        assert_ne!(
            res.headers()
                .get("access-control-allow-origin")
                .map(|v| v.as_bytes()),
            Some(&b"*"[..])
        );
    }
    assert_eq!(
        f.calls(),
        expected_calls,
        "every non-preflight request reaches the app"
    );
}

#[tokio::test]
async fn allowed_preflights_answer_204_with_only_what_was_asked() {
    let f = serve(config()).await;
    struct Case {
        origin: &'static str,
        method: &'static str,
        asked: Option<&'static str>,
        allow_headers: Option<&'static str>,
    }
    for c in [
        Case {
            origin: "http://localhost:3000",
            method: "POST",
            asked: Some("content-type, x-csrf-token"),
            allow_headers: Some("content-type, x-csrf-token"),
        },
        Case {
            origin: "https://www.acme.com",
            method: "PUT",
            asked: Some("Content-Type,X-CSRF-Token,Authorization"),
            allow_headers: Some("content-type, x-csrf-token, authorization"),
        },
        Case {
            origin: "https://pr-9.preview.acme.com",
            method: "DELETE",
            asked: None,
            allow_headers: None,
        },
        Case {
            origin: "https://www.acme.com",
            method: "PATCH",
            asked: Some("x-vestibule-no-touch, x-requested-with"),
            allow_headers: Some("x-vestibule-no-touch, x-requested-with"),
        },
    ] {
        let res = f.preflight(c.origin, c.method, c.asked).await;
        assert_eq!(res.status(), 204, "{}", c.origin);
        let mut want = map(&[
            ("access-control-allow-origin", c.origin),
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-methods", c.method),
            ("access-control-max-age", "600"),
        ]);
        if let Some(h) = c.allow_headers {
            want.insert("access-control-allow-headers".into(), h.into());
        }
        assert_eq!(cors_headers(&res), want, "{} {}", c.origin, c.method);
        assert_eq!(varies(&res), [PREFLIGHT_VARY]);
    }
    assert_eq!(f.calls(), 0, "a preflight never reaches the inner service");
}

#[tokio::test]
async fn refused_preflights_are_403_without_cors_headers() {
    let f = serve(config()).await;
    for (origin, method, asked, code, mention) in [
        (
            "https://evil.test",
            "POST",
            None,
            "cors_origin_refused",
            "spa_origins",
        ),
        (
            "https://preview.acme.com",
            "POST",
            None,
            "cors_origin_refused",
            "spa_origins",
        ),
        (
            "http://localhost:3001",
            "POST",
            None,
            "cors_origin_refused",
            "spa_origins",
        ),
        ("null", "POST", None, "cors_origin_refused", "null"),
        (
            "http://localhost:3000",
            "PROPFIND",
            None,
            "cors_preflight_refused",
            "cors.allow_methods",
        ),
        (
            "http://localhost:3000",
            "OPTIONS",
            None,
            "cors_preflight_refused",
            "cors.allow_methods",
        ),
        (
            "http://localhost:3000",
            "POST",
            Some("content-type, x-evil"),
            "cors_preflight_refused",
            "x-evil",
        ),
        (
            "http://localhost:3000",
            "POST",
            Some("cookie"),
            "cors_preflight_refused",
            "cors.allow_headers",
        ),
    ] {
        let res = f.preflight(origin, method, asked).await;
        assert_eq!(res.status(), 403, "{origin} {method} {asked:?}");
        assert!(
            cors_headers(&res).is_empty(),
            "{origin}: {:?}",
            cors_headers(&res)
        );
        assert_eq!(varies(&res), [PREFLIGHT_VARY], "{origin}");
        let body: Value = res.json().await.expect("JSON error body");
        assert_eq!(body["code"], code, "{body}");
        let text = format!("{} {}", body["message"], body["hint"]);
        assert!(text.contains(mention), "{mention} missing from {body}");
    }
    assert_eq!(
        f.calls(),
        0,
        "refused preflights never reach the inner service"
    );
}

#[tokio::test]
async fn options_without_request_method_is_not_a_preflight() {
    let f = serve(config()).await;
    let res = f
        .send(
            Method::OPTIONS,
            "/api/thing",
            &[("origin", "http://localhost:3000")],
        )
        .await;
    assert_eq!(f.calls(), 1, "a plain OPTIONS goes to the app");
    assert_eq!(
        res.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("http://localhost:3000")
    );
    assert!(varies(&res).iter().any(|v| v.contains("Origin")));
}

#[tokio::test]
async fn private_network_access_is_opt_in() {
    let ask = [
        ("origin", "https://www.acme.com"),
        ("access-control-request-method", "GET"),
        ("access-control-request-private-network", "true"),
    ];
    let off = serve(config()).await;
    let res = off.send(Method::OPTIONS, "/api/thing", &ask).await;
    assert_eq!(res.status(), 204);
    assert!(!cors_headers(&res).contains_key("access-control-allow-private-network"));

    let on = serve(CorsConfig {
        allow_private_network: true,
        ..config()
    })
    .await;
    let res = on.send(Method::OPTIONS, "/api/thing", &ask).await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        cors_headers(&res)
            .get("access-control-allow-private-network")
            .map(String::as_str),
        Some("true")
    );
    let unasked = on.preflight("https://www.acme.com", "GET", None).await;
    assert!(
        !cors_headers(&unasked).contains_key("access-control-allow-private-network"),
        "only when asked"
    );
    assert_eq!(off.calls() + on.calls(), 0);
}

#[tokio::test]
async fn without_credentials_no_allow_credentials_header() {
    let f = serve(CorsConfig {
        allow_credentials: false,
        ..config()
    })
    .await;
    let res = f
        .preflight("https://www.acme.com", "POST", Some("content-type"))
        .await;
    assert_eq!(res.status(), 204);
    assert!(!cors_headers(&res).contains_key("access-control-allow-credentials"));
    let res = f
        .send(
            Method::GET,
            "/api/thing",
            &[("origin", "https://www.acme.com")],
        )
        .await;
    let h = cors_headers(&res);
    assert_eq!(
        h.get("access-control-allow-origin").map(String::as_str),
        Some("https://www.acme.com")
    );
    assert!(!h.contains_key("access-control-allow-credentials"));
}

#[tokio::test]
async fn paths_outside_the_cors_paths_pass_through_untouched() {
    let f = serve(CorsConfig {
        paths: vec!["/api".into()],
        ..config()
    })
    .await;
    let res = f
        .send(
            Method::GET,
            "/public/thing",
            &[("origin", "https://www.acme.com")],
        )
        .await;
    assert!(cors_headers(&res).is_empty());
    assert_eq!(varies(&res), ["Accept-Encoding"], "no Vary added outside");
    let pre = f
        .send(
            Method::OPTIONS,
            "/public/thing",
            &[
                ("origin", "https://www.acme.com"),
                ("access-control-request-method", "GET"),
            ],
        )
        .await;
    assert!(cors_headers(&pre).is_empty());
    assert_eq!(
        f.calls(),
        2,
        "outside the paths even an OPTIONS reaches the app"
    );
    let inside = f.preflight("https://www.acme.com", "GET", None).await;
    assert_eq!(inside.status(), 204);
    assert_eq!(f.calls(), 2);
}

#[tokio::test]
async fn invalid_configurations_never_build_a_layer() {
    let mut star = config();
    star.allow_headers
        .push(axum::http::HeaderName::from_static("*"));
    assert!(
        CorsLayer::new(star, policy()).is_err(),
        "credentials with a * header"
    );
    let mut no_methods = config();
    no_methods.allow_methods.clear();
    assert!(CorsLayer::new(no_methods, policy()).is_err());
    assert!(CorsLayer::new(config(), policy()).is_ok());
}

/// The whole chain from the configuration: `spa_origins` → `Config.cors` → `cors_layer`, and the
/// debug endpoint's report.
#[tokio::test]
async fn the_configured_layer_and_the_debug_endpoint() {
    let mut raw = RawConfig {
        public_url: Some("https://api.acme.com".into()),
        spa_origins: vec![
            "https://www.acme.com".into(),
            "https://*.preview.acme.com".into(),
        ],
        debug_endpoint: true,
        ..RawConfig::default()
    };
    raw.csrf.trusted_origins = vec!["https://admin.acme.com".into()];
    let config = raw.validate().expect("valid");
    let router = Router::new()
        .route(
            "/auth/_debug",
            get(debug_echo).with_state(config.origins.clone()),
        )
        .layer(cors_layer(&config.cors, &config.origins));
    let base = serve_router(router).await;
    let http = Client::new();
    let get_debug = |headers: Vec<(&'static str, &'static str)>| {
        let mut req = http.get(format!("{base}/auth/_debug"));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };

    let res = get_debug(vec![
        ("origin", "https://pr-3.preview.acme.com"),
        (
            "referer",
            "https://pr-3.preview.acme.com/page?token=secret#frag",
        ),
        (
            "cookie",
            "__Host-vestibule_session=vst_SECRETVALUE; theme=dark",
        ),
        ("authorization", "Bearer vst_ALSOSECRET"),
        ("sec-fetch-site", "same-site"),
    ])
    .await
    .expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://pr-3.preview.acme.com")
    );
    assert_eq!(
        res.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let text = res.text().await.expect("body");
    for secret in ["SECRETVALUE", "ALSOSECRET", "dark", "token=secret", "frag"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        body["request"]["cookie_names"],
        serde_json::json!(["__Host-vestibule_session", "theme"])
    );
    assert_eq!(body["request"]["session_cookie_received"], true);
    assert_eq!(body["request"]["authorization"]["scheme"], "Bearer");
    assert_eq!(
        body["request"]["referer"],
        "https://pr-3.preview.acme.com/page"
    );
    assert_eq!(body["verdict"]["cors_allowed"], true);
    assert_eq!(body["verdict"]["csrf_trusted"], true);
    assert_eq!(body["verdict"]["relation"], "same-site");
    assert_eq!(body["policy"]["cookie"]["same_site"], "Lax");

    let res = get_debug(vec![("origin", "https://app.other.com")])
        .await
        .expect("request");
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["verdict"]["cors_allowed"], false);
    assert_eq!(body["verdict"]["relation"], "cross-site");
    let verdict = body["verdict"]["cookie"].as_str().unwrap_or("");
    assert!(verdict.contains("rule 4"), "{verdict}");

    let notes = body["verdict"]["notes"].to_string();
    assert!(notes.contains("is not public_url's"), "proxy hint: {notes}");

    let res = get_debug(vec![(
        "cookie",
        "__Host-vestibule_session=a; __Host-vestibule_session=b",
    )])
    .await
    .expect("request");
    let body: Value = res.json().await.expect("json");
    let notes = body["verdict"]["notes"].to_string();
    assert!(notes.contains("2 cookies named"), "{notes}");
    assert!(
        body["verdict"]["cookie"]
            .as_str()
            .is_some_and(|v| v.contains("no Origin"))
    );

    let res = get_debug(vec![("origin", "https://admin.acme.com")])
        .await
        .expect("request");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["verdict"]["cors_allowed"], false, "CSRF-only origin");
    assert_eq!(body["verdict"]["csrf_trusted"], true);
}

#[tokio::test]
async fn refusals_are_logged_with_the_origin_and_the_key_that_would_allow_it() {
    let (logs, _guard) = crate::support::Captured::install();
    let f = serve(config()).await;
    f.preflight("https://evil.test", "POST", None).await;
    f.preflight("http://localhost:3000", "PROPFIND", None).await;
    f.preflight("http://localhost:3000", "POST", Some("x-evil"))
        .await;
    f.send(
        Method::GET,
        "/api/thing",
        &[("origin", "https://other.test")],
    )
    .await;
    f.send(Method::GET, "/api/thing", &[("origin", "null")])
        .await;
    let text = logs.text();
    for (line_has, key) in [
        ("https://evil.test", "spa_origins"),
        ("PROPFIND", "cors.allow_methods"),
        ("x-evil", "cors.allow_headers"),
        ("https://other.test", "spa_origins"),
        ("origin=null", "none"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(line_has) && l.contains(&format!("key=\"{key}\""))),
            "no log line with {line_has} and {key}:\n{text}"
        );
    }
}
