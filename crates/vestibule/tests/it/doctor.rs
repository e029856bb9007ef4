//! `vestibule doctor` against small misbehaving servers on loopback: each scenario of the
//! issue is probed over real HTTP and checked for the expected verdict per browser family, the
//! failing rule and its fix. Named hosts (`www.acme.test`, `api.acme.test`) resolve to 127.0.0.1
//! through the probe's resolve overrides.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use vestibule::doctor::probe::{ProbeRequest, probe};
use vestibule::doctor::rules::{Credentials, Diagnosis, Family, Status, diagnose};
use vestibule::origin::Origin;

use crate::support::{PASSWORD, TestApp, serve_router};

#[derive(Debug, Clone, Copy)]
enum Cors {
    /// Echo the origin, with `Allow-Credentials: true` and `Vary: Origin`.
    Good,
    /// Echo the origin and credentials, no `Vary`.
    NoVary,
    /// `Access-Control-Allow-Origin: *` with credentials.
    Wildcard,
}

#[derive(Debug, Clone, Copy)]
enum Preflight {
    /// 204 with the given `Access-Control-Allow-Headers`.
    Allow(&'static str),
    /// Django without django-cors-headers in front of CSRF: 403.
    Forbidden,
}

#[derive(Debug, Clone)]
struct Fake {
    cors: Cors,
    preflight: Preflight,
    set_cookie: &'static str,
}

async fn fake_api(State(fake): State<Arc<Fake>>, method: Method, headers: HeaderMap) -> Response {
    let origin = headers.get(header::ORIGIN).cloned();
    let mut res = if method == Method::OPTIONS {
        match fake.preflight {
            Preflight::Forbidden => {
                return (StatusCode::FORBIDDEN, "CSRF verification failed").into_response();
            }
            Preflight::Allow(h) => {
                let mut r = StatusCode::NO_CONTENT.into_response();
                r.headers_mut().insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static(h),
                );
                r.headers_mut().insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, POST"),
                );
                r
            }
        }
    } else if headers.contains_key(header::COOKIE) || method == Method::POST {
        let mut r = axum::Json(json!({"ok": true})).into_response();
        if method == Method::POST {
            r.headers_mut().append(
                header::SET_COOKIE,
                HeaderValue::from_static(fake.set_cookie),
            );
        }
        r
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    };
    let h = res.headers_mut();
    match (fake.cors, origin) {
        (Cors::Wildcard, _) => {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        (cors, Some(o)) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            if matches!(cors, Cors::Good) {
                h.insert(header::VARY, HeaderValue::from_static("Origin"));
            }
        }
        (_, None) => {}
    }
    res
}

async fn spawn_fake(fake: Fake) -> u16 {
    let app = Router::new().fallback(fake_api).with_state(Arc::new(fake));
    let base = serve_router(app).await;
    base.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn request(page: &str, api: &str, credentials: Credentials) -> ProbeRequest {
    ProbeRequest {
        page: Origin::parse_prefix(page).expect("page"),
        api: url::Url::parse(api).expect("api"),
        later: None,
        method: "POST".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Some(br#"{"username":"u","password":"p"}"#.to_vec()),
        credentials,
        resolve: ["localhost", "www.acme.test", "api.acme.test"]
            .iter()
            .map(|h| ((*h).to_owned(), LOOPBACK))
            .collect(),
        timeout: Duration::from_secs(5),
        extra_roots: Vec::new(),
        login: false,
    }
}

struct Case {
    name: &'static str,
    /// `{port}` is replaced by the fake server's port.
    page: &'static str,
    api: &'static str,
    credentials: Credentials,
    fake: Fake,
    /// Chromium 3PC blocked, Chromium 3PC allowed, Firefox, Safari.
    expect: [Status; 4],
    /// A rule that must have failed (or warned, for all-pass cases) and a fragment of its fix.
    rule: Option<(&'static str, Status, &'static str)>,
}

const OK: Status = Status::Pass;
const NO: Status = Status::Fail;
const LAX: &str = "sid=0123456789abcdef; Path=/; HttpOnly; SameSite=Lax";

fn good(set_cookie: &'static str) -> Fake {
    Fake {
        cors: Cors::Good,
        preflight: Preflight::Allow("content-type, x-csrf-token"),
        set_cookie,
    }
}

async fn run(case: &Case) -> Diagnosis {
    let port = spawn_fake(case.fake.clone()).await;
    let fill = |s: &str| s.replace("{port}", &port.to_string());
    let req = request(&fill(case.page), &fill(case.api), case.credentials);
    let ex = probe(&req).await.expect("probe answered");
    diagnose(&ex)
}

fn check(case: &Case, d: &Diagnosis) {
    let got: Vec<Status> = d.verdicts.iter().map(|v| v.status).collect();
    assert_eq!(
        got, case.expect,
        "{}: verdicts {:?} for {:#?}",
        case.name, got, d.findings
    );
    assert_eq!(
        d.verdicts.iter().map(|v| v.family).collect::<Vec<_>>(),
        Family::ALL
    );
    if let Some((rule, status, fix)) = case.rule {
        let f = d
            .findings
            .iter()
            .find(|f| f.rule == rule && f.status == status)
            .unwrap_or_else(|| panic!("{}: no {status:?} {rule} in {:#?}", case.name, d.findings));
        let text = format!(
            "{} {}",
            f.fix.as_deref().unwrap_or(""),
            f.architecture.as_deref().unwrap_or("")
        );
        assert!(
            text.contains(fix),
            "{}: fix of {rule} is {text:?}, expected {fix:?}",
            case.name
        );
        assert!(
            f.evidence.is_some() || status == Status::Warn,
            "{}: {rule} has evidence",
            case.name
        );
    }
    // Cookie values never appear in findings.
    let all = serde_json::to_string(&d.findings).expect("json");
    assert!(
        !all.contains("0123456789abcdef"),
        "{}: cookie value leaked",
        case.name
    );
}

#[tokio::test]
async fn scenario_table() {
    let cases = [
        Case {
            name: "localhost ports with credentials include",
            page: "http://localhost:3000",
            api: "http://localhost:{port}/auth/login",
            credentials: Credentials::Include,
            fake: good(LAX),
            expect: [OK, OK, OK, OK],
            rule: None,
        },
        Case {
            name: "localhost ports without credentials include (silent drop)",
            page: "http://localhost:3000",
            api: "http://localhost:{port}/auth/login",
            credentials: Credentials::SameOrigin,
            fake: good(LAX),
            expect: [NO, NO, NO, NO],
            rule: Some(("credentials-mode", NO, "credentials: 'include'")),
        },
        Case {
            name: "localhost page, 127.0.0.1 API",
            page: "http://localhost:3000",
            api: "http://127.0.0.1:{port}/auth/login",
            credentials: Credentials::Include,
            fake: good(LAX),
            expect: [NO, NO, NO, NO],
            rule: Some((
                "site-relation",
                Status::Warn,
                "never mix localhost and 127.0.0.1",
            )),
        },
        Case {
            name: "www and api subdomains over http",
            page: "http://www.acme.test:3000",
            api: "http://api.acme.test:{port}/auth/login",
            credentials: Credentials::Include,
            fake: good(LAX),
            expect: [OK, OK, OK, OK],
            rule: None,
        },
        Case {
            name: "cross-site SameSite=None; Secure without Partitioned",
            page: "http://localhost:3000",
            api: "http://127.0.0.1:{port}/auth/login",
            credentials: Credentials::Include,
            fake: good("sid=0123456789abcdef; Path=/; HttpOnly; Secure; SameSite=None"),
            expect: [NO, OK, OK, NO],
            rule: Some(("third-party-cookies", NO, "Partitioned")),
        },
        Case {
            name: "cross-site SameSite=None; Secure; Partitioned",
            page: "http://localhost:3000",
            api: "http://127.0.0.1:{port}/auth/login",
            credentials: Credentials::Include,
            fake: good(
                "sid=0123456789abcdef; Path=/; HttpOnly; Secure; SameSite=None; Partitioned",
            ),
            expect: [OK, OK, OK, NO],
            rule: Some(("third-party-cookies", NO, "bearer")),
        },
        Case {
            name: "SameSite=None without Secure",
            page: "http://localhost:3000",
            api: "http://localhost:{port}/auth/login",
            credentials: Credentials::Include,
            fake: good("sid=0123456789abcdef; Path=/; SameSite=None"),
            expect: [NO, NO, NO, NO],
            rule: Some(("cookie-samesite-none-secure", NO, "add Secure")),
        },
        Case {
            name: "Secure over plain http on a non-localhost host",
            page: "http://www.acme.test:3000",
            api: "http://api.acme.test:{port}/auth/login",
            credentials: Credentials::Include,
            fake: good("sid=0123456789abcdef; Path=/; Secure; SameSite=Lax"),
            expect: [NO, NO, NO, NO],
            rule: Some(("cookie-secure-scheme", NO, "drop Secure")),
        },
        Case {
            name: "wildcard origin with credentials",
            page: "http://localhost:3000",
            api: "http://localhost:{port}/auth/login",
            credentials: Credentials::Include,
            fake: Fake {
                cors: Cors::Wildcard,
                ..good(LAX)
            },
            expect: [NO, NO, NO, NO],
            rule: Some(("cors-allow-origin", NO, "never * with credentials")),
        },
        Case {
            name: "missing Vary: Origin",
            page: "http://localhost:3000",
            api: "http://localhost:{port}/auth/login",
            credentials: Credentials::Include,
            fake: Fake {
                cors: Cors::NoVary,
                ..good(LAX)
            },
            expect: [OK, OK, OK, OK],
            rule: Some(("cors-vary", Status::Warn, "Vary: Origin")),
        },
        Case {
            name: "preflight without content-type in Allow-Headers",
            page: "http://localhost:3000",
            api: "http://localhost:{port}/auth/login",
            credentials: Credentials::Include,
            fake: Fake {
                preflight: Preflight::Allow("x-csrf-token"),
                ..good(LAX)
            },
            expect: [NO, NO, NO, NO],
            rule: Some(("preflight-allow-headers", NO, "add content-type")),
        },
        Case {
            name: "Domain that does not match the API host",
            page: "http://www.acme.test:3000",
            api: "http://api.acme.test:{port}/auth/login",
            credentials: Credentials::Include,
            fake: good("sid=0123456789abcdef; Path=/; Domain=www.acme.test; SameSite=Lax"),
            expect: [NO, NO, NO, NO],
            rule: Some(("cookie-domain", NO, "drop Domain")),
        },
        Case {
            name: "proxied Path that does not cover the browser-visible API path",
            page: "http://www.acme.test:{port}",
            api: "http://www.acme.test:{port}/api/auth/login",
            credentials: Credentials::SameOrigin,
            fake: good("sid=0123456789abcdef; Path=/auth; HttpOnly; SameSite=Lax"),
            expect: [NO, NO, NO, NO],
            rule: Some(("cookie-sent-back", NO, "rewrite Path")),
        },
        Case {
            name: "Django-like server answering 403 to preflights",
            page: "http://localhost:3000",
            api: "http://localhost:{port}/auth/login",
            credentials: Credentials::Include,
            fake: Fake {
                preflight: Preflight::Forbidden,
                ..good(LAX)
            },
            expect: [NO, NO, NO, NO],
            rule: Some((
                "preflight-status",
                NO,
                "CorsMiddleware above CsrfViewMiddleware",
            )),
        },
    ];
    for case in &cases {
        let d = run(case).await;
        check(case, &d);
    }
}

#[tokio::test]
async fn the_probe_headers_match_chromium() {
    // Records each request's method and headers.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(String, HeaderMap)>::new()));
    let rec = seen.clone();
    let app = Router::new().fallback(move |method: Method, headers: HeaderMap| {
        let rec = rec.clone();
        async move {
            rec.lock()
                .expect("lock")
                .push((method.to_string(), headers));
            let mut r = StatusCode::OK.into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_static("sid=abc; Path=/; SameSite=Lax"),
            );
            r
        }
    });
    let base = serve_router(app).await;
    let port = base.rsplit(':').next().expect("port").to_owned();
    let mut req = request(
        "http://localhost:3000",
        &format!("http://localhost:{port}/auth/login"),
        Credentials::Include,
    );
    req.headers.push(("x-csrf-token".into(), "t".into()));
    let ex = probe(&req).await.expect("probe");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 3, "preflight, request, follow-up");
    let h = |i: usize, n: &str| {
        seen[i]
            .1
            .get(n)
            .map(|v| v.to_str().expect("text").to_owned())
    };
    assert_eq!(seen[0].0, "OPTIONS");
    assert_eq!(h(0, "origin").as_deref(), Some("http://localhost:3000"));
    assert_eq!(
        h(0, "access-control-request-method").as_deref(),
        Some("POST")
    );
    assert_eq!(
        h(0, "access-control-request-headers").as_deref(),
        Some("content-type,x-csrf-token")
    );
    assert_eq!(h(0, "cookie"), None, "preflights never carry cookies");
    assert_eq!(h(0, "sec-fetch-mode").as_deref(), Some("cors"));
    assert_eq!(seen[1].0, "POST");
    assert_eq!(h(1, "origin").as_deref(), Some("http://localhost:3000"));
    assert_eq!(h(1, "sec-fetch-site").as_deref(), Some("same-site"));
    assert_eq!(h(1, "sec-fetch-dest").as_deref(), Some("empty"));
    assert_eq!(h(1, "content-type").as_deref(), Some("application/json"));
    assert_eq!(seen[2].0, "GET");
    assert_eq!(
        ex.later.path(),
        "/auth/me",
        "after /login the SPA calls /me"
    );
    assert_eq!(
        h(2, "cookie").as_deref(),
        Some("sid=abc"),
        "follow-up with the returned cookie"
    );
}

#[tokio::test]
async fn sec_fetch_site_is_not_sent_to_plain_http_named_hosts() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<HeaderMap>::new()));
    let rec = seen.clone();
    let app = Router::new().fallback(move |headers: HeaderMap| {
        let rec = rec.clone();
        async move {
            rec.lock().expect("lock").push(headers);
            StatusCode::OK
        }
    });
    let base = serve_router(app).await;
    let port = base.rsplit(':').next().expect("port").to_owned();
    let mut req = request(
        "http://www.acme.test:3000",
        &format!("http://api.acme.test:{port}/x"),
        Credentials::Include,
    );
    req.method = "GET".into();
    req.headers.clear();
    req.body = None;
    let ex = probe(&req).await.expect("probe");
    assert!(ex.preflight.is_none(), "a simple GET is not preflighted");
    let seen = seen.lock().expect("lock").clone();
    assert!(seen.iter().all(|h| !h.contains_key("sec-fetch-site")));
    assert!(seen.iter().all(|h| h.contains_key("origin")));
}

#[tokio::test]
async fn a_correctly_configured_vestibule_server_passes_every_family() {
    let app = TestApp::spawn_with(|raw| {
        raw.public_url = Some("http://localhost:8000".into());
        raw.spa_origins = vec!["http://localhost:3000".into()];
        raw.csrf.trusted_origins = vec![];
    })
    .await;
    app.signed_up("doctor", PASSWORD).await;
    let port = app.base.rsplit(':').next().expect("port").to_owned();
    let mut req = request(
        "http://localhost:3000",
        &format!("http://localhost:{port}/auth/login"),
        Credentials::Include,
    );
    req.body = Some(
        json!({"username": "doctor", "password": PASSWORD})
            .to_string()
            .into_bytes(),
    );
    let ex = probe(&req).await.expect("probe");
    assert_eq!(ex.response.as_ref().map(|r| r.status), Some(200));
    assert_eq!(ex.preflight.as_ref().map(|r| r.status), Some(204));
    assert_eq!(
        ex.followup.as_ref().map(|r| r.status),
        Some(200),
        "/auth/me with the cookie"
    );
    let d = diagnose(&ex);
    assert!(d.all_work(), "{:#?}", d.findings);
    assert!(
        d.findings.iter().all(|f| f.status == Status::Pass),
        "{:#?}",
        d.findings
    );
    // Without credentials: 'include' the same server is reported as a silent drop.
    req.credentials = Credentials::SameOrigin;
    let d = diagnose(&probe(&req).await.expect("probe"));
    assert!(!d.all_work());
}

#[tokio::test]
async fn debug_endpoint_shows_a_login_whose_cookie_never_came_back() {
    // test_raw_config trusts http://localhost:3000 for CSRF (same-site with the API on
    // http://localhost) but does not list it in spa_origins.
    let app = TestApp::spawn_with(|raw| raw.debug_endpoint = true).await;
    app.signed_up("live", PASSWORD).await;
    let spa = "http://localhost:3000";
    let client = |ua: &str| {
        reqwest::Client::builder()
            .user_agent(ua)
            .build()
            .expect("client")
    };
    let browser = client("spa-browser");
    let res = browser
        .post(app.url("/auth/login"))
        .header("origin", spa)
        .json(&json!({"username": "live", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), 200);
    let cookie = crate::support::set_cookie_value(&res, crate::support::COOKIE).expect("cookie");
    let debug = |c: &reqwest::Client, cookie: Option<&str>| {
        let mut rb = c.get(app.url("/auth/_debug")).header("origin", spa);
        if let Some(v) = cookie {
            rb = rb.header("cookie", format!("{}={v}", crate::support::COOKIE));
        }
        async move {
            rb.send()
                .await
                .expect("debug")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        }
    };
    // The SPA's next call arrives without the cookie: the drop is explained.
    let v = debug(&browser, None).await;
    assert_eq!(v["live"]["cookie_dropped"], true, "{v}");
    assert_eq!(v["live"]["cross_site"], false, "{v}");
    let msg = v["live"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("credentials: 'include'"), "{msg}");
    assert!(!msg.contains(&cookie), "no cookie value in the analysis");
    // Another client (another user agent) from the same origin is not blamed.
    let v = debug(&client("other-browser"), None).await;
    assert_eq!(v["live"]["logged_in_recently"], false, "{v}");
    assert_eq!(v["live"]["cookie_dropped"], false, "{v}");
    // Once the cookie comes back, nothing is dropped.
    let v = debug(&browser, Some(&cookie)).await;
    assert_eq!(v["live"]["cookie_dropped"], false, "{v}");
    let v = debug(&browser, None).await;
    assert_eq!(
        v["live"]["cookie_dropped"], false,
        "the window closed when the cookie arrived: {v}"
    );
}

#[tokio::test]
async fn without_the_debug_endpoint_there_is_no_live_detection() {
    let app = TestApp::spawn().await;
    let res = reqwest::Client::new()
        .get(app.url("/auth/_debug"))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .expect("debug");
    assert_eq!(res.status(), 404);
}

/// TLS in front of the fake API, with a self-signed certificate made for the test's host names.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.tcp.accept().await {
                Ok((tcp, addr)) => {
                    if let Ok(tls) = self.acceptor.accept(tcp).await {
                        return (tls, addr);
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Serves `fake` over https; returns the port and the certificate (PEM) to trust.
async fn spawn_tls_fake(fake: Fake) -> (u16, String) {
    use tokio_rustls::rustls;
    let names = ["api.acme.test", "www.acme.test", "localhost"].map(str::to_owned);
    let certified = rcgen::generate_simple_self_signed(names.to_vec()).expect("certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .expect("server config");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = tcp.local_addr().expect("addr").port();
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    let app = Router::new().fallback(fake_api).with_state(Arc::new(fake));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, certified.cert.pem())
}

#[tokio::test]
async fn https_scenarios_with_a_self_signed_certificate() {
    let cases = [
        Case {
            name: "www and api subdomains over https with a __Host- cookie",
            page: "https://www.acme.test",
            api: "https://api.acme.test:{port}/auth/login",
            credentials: Credentials::Include,
            fake: good("__Host-sid=0123456789abcdef; Path=/; Secure; HttpOnly; SameSite=Lax"),
            expect: [OK, OK, OK, OK],
            rule: None,
        },
        Case {
            name: "truly cross-site over https without Partitioned",
            page: "https://app.spa.test",
            api: "https://api.acme.test:{port}/auth/login",
            credentials: Credentials::Include,
            fake: good("sid=0123456789abcdef; Path=/; Secure; HttpOnly; SameSite=None"),
            expect: [NO, OK, OK, NO],
            rule: Some(("third-party-cookies", NO, "add Partitioned")),
        },
        Case {
            name: "truly cross-site over https with Partitioned (CHIPS)",
            page: "https://app.spa.test",
            api: "https://api.acme.test:{port}/auth/login",
            credentials: Credentials::Include,
            fake: good(
                "sid=0123456789abcdef; Path=/; Secure; HttpOnly; SameSite=None; Partitioned",
            ),
            expect: [OK, OK, OK, NO],
            rule: Some(("third-party-cookies", NO, "same-origin proxy")),
        },
        Case {
            name: "http page calling the https API: schemeful cross-site",
            page: "http://www.acme.test",
            api: "https://api.acme.test:{port}/auth/login",
            credentials: Credentials::Include,
            fake: good("sid=0123456789abcdef; Path=/; Secure; HttpOnly; SameSite=Lax"),
            expect: [NO, NO, NO, NO],
            rule: Some(("cookie-samesite", NO, "same-site")),
        },
    ];
    for case in &cases {
        let (port, pem) = spawn_tls_fake(case.fake.clone()).await;
        let fill = |s: &str| s.replace("{port}", &port.to_string());
        let mut req = request(&fill(case.page), &fill(case.api), case.credentials);
        req.extra_roots = vec![pem.into_bytes()];
        let ex = probe(&req).await.expect("probe over https");
        check(case, &diagnose(&ex));
    }
}

#[tokio::test]
async fn an_untrusted_certificate_is_an_error_not_a_verdict() {
    let (port, _pem) = spawn_tls_fake(good(LAX)).await;
    let req = request(
        "https://www.acme.test",
        &format!("https://api.acme.test:{port}/auth/login"),
        Credentials::Include,
    );
    let err = probe(&req)
        .await
        .expect_err("a browser would refuse the certificate");
    assert!(err.to_string().contains("failed"), "{err}");
}

#[tokio::test]
async fn an_https_page_calling_a_plain_http_api_is_mixed_content() {
    let case = Case {
        name: "https page, http API",
        page: "https://www.acme.test",
        api: "http://api.acme.test:{port}/auth/login",
        credentials: Credentials::Include,
        fake: good(LAX),
        expect: [NO, NO, NO, NO],
        rule: Some(("mixed-content", NO, "serve the API over https")),
    };
    let d = run(&case).await;
    check(&case, &d);
}

#[tokio::test]
async fn a_login_refused_by_the_csrf_origin_check_shows_the_servers_answer() {
    let app = TestApp::spawn().await;
    app.signed_up("refused", PASSWORD).await;
    let port = app.base.rsplit(':').next().expect("port").to_owned();
    let mut req = request(
        "http://localhost:4000",
        &format!("http://localhost:{port}/auth/login"),
        Credentials::Include,
    );
    req.body = Some(
        json!({"username": "refused", "password": PASSWORD})
            .to_string()
            .into_bytes(),
    );
    let d = diagnose(&probe(&req).await.expect("probe"));
    assert!(!d.all_work());
    let f = d
        .findings
        .iter()
        .find(|f| f.rule == "response-status")
        .expect("status finding");
    assert_eq!(f.status, Status::Fail);
    let evidence = f.evidence.as_deref().unwrap_or("");
    assert!(
        evidence.contains("403") && evidence.contains("csrf_origin_untrusted"),
        "{evidence}"
    );
    assert!(!evidence.contains(PASSWORD));
}
