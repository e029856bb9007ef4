//! Bad input gets a clear 4xx and costs nothing: garbage cookies, bad JSON, big bodies, floods.

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::json;

use crate::support::{COOKIE, PASSWORD, TestApp, assert_error};

async fn me_with_cookie_header(app: &TestApp, value: HeaderValue) -> reqwest::Response {
    let mut h = HeaderMap::new();
    h.insert("cookie", value);
    app.raw_client()
        .get(app.url("/auth/me"))
        .headers(h)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn garbage_cookies_are_anonymous_never_500() {
    let app = TestApp::spawn().await;
    app.signed_up("alice", PASSWORD).await;
    let mut random = [0u8; 64];
    for (i, b) in random.iter_mut().enumerate() {
        *b = u8::try_from((i * 37 + 11) % 256).unwrap_or(0);
    }
    let printable: String = random
        .iter()
        .map(|b| char::from(b'!' + (b % 90)))
        .filter(|c| *c != ';')
        .collect();
    let cases: Vec<HeaderValue> = vec![
        HeaderValue::from_str(&format!("{COOKIE}={printable}")).expect("value"),
        HeaderValue::from_str(&format!("{COOKIE}={}", "x".repeat(10 * 1024))).expect("value"),
        HeaderValue::from_bytes(b"vestibule_session=\xff\xfe\xfd; other=\x80")
            .expect("obs-text bytes"),
        HeaderValue::from_str(
            &(0..1000)
                .map(|i| format!("c{i}=v{i}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
        .expect("value"),
        HeaderValue::from_str(&format!("{COOKIE}=vst_{}", "A".repeat(49)))
            .expect("right shape, wrong checksum"),
        HeaderValue::from_str(&format!("{COOKIE}=; {COOKIE}==; ;;; =")).expect("value"),
    ];
    for value in cases {
        let res = me_with_cookie_header(&app, value).await;
        assert_error(res, 401, "not_authenticated").await;
    }
    assert_eq!(app.session_count().await, 1, "only alice's session");
}

#[tokio::test]
async fn malformed_json_mistyped_fields_and_wrong_content_type_get_codes() {
    let app = TestApp::spawn().await;
    let http = app.raw_client();
    let res = http
        .post(app.url("/auth/login"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_error(res, 400, "malformed_json").await;
    let res = http
        .post(app.url("/auth/login"))
        .json(&json!({"username": 5}))
        .send()
        .await
        .expect("request");
    assert_error(res, 422, "invalid_body").await;
    let res = http
        .post(app.url("/auth/login"))
        .body("username=a&password=b")
        .send()
        .await
        .expect("request");
    assert_error(res, 415, "unsupported_media_type").await;
    let res = http
        .post(app.url("/auth/login"))
        .header("content-type", "application/json")
        .body(vec![0xff, 0xfe])
        .send()
        .await
        .expect("request");
    assert_error(res, 400, "malformed_json").await;
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let app = TestApp::spawn().await;
    let big = json!({"username": "a", "password": "p".repeat(100 * 1024)});
    let res = app
        .raw_client()
        .post(app.url("/auth/login"))
        .json(&big)
        .send()
        .await
        .expect("request");
    assert_error(res, 413, "payload_too_large").await;
}

#[tokio::test]
async fn a_flood_of_cookieless_requests_creates_no_session_records() {
    let app = TestApp::spawn().await;
    let http = app.raw_client();
    for i in 0..100 {
        let path = [
            "/auth/me",
            "/auth/csrf",
            "/demo/counter",
            "/",
            "/healthz",
            "/auth/sessions",
            "/nope",
        ][i % 7];
        let res = http.get(app.url(path)).send().await.expect("request");
        assert!(res.status().as_u16() < 500);
        assert!(
            res.headers().get("set-cookie").is_none(),
            "{path} set a cookie"
        );
        let res = http
            .post(app.url("/auth/logout"))
            .send()
            .await
            .expect("request");
        assert!(res.status().as_u16() < 500);
    }
    assert_eq!(app.session_count().await, 0);
}

#[tokio::test]
async fn failed_logins_create_no_session_records() {
    let app = TestApp::spawn().await;
    let mut c = app.client();
    for _ in 0..5 {
        assert_error(
            c.login("ghost", "wrong password").await,
            401,
            "invalid_credentials",
        )
        .await;
    }
    assert_eq!(app.session_count().await, 0);
}
