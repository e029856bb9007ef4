//! CSRF: each attack is tried and refused with its own code; legitimate calls pass.

use serde_json::{Value, json};

use crate::support::{PASSWORD, TestApp, assert_error};

#[tokio::test]
async fn a_cookie_write_without_a_token_is_refused() {
    let app = TestApp::spawn().await;
    let mut c = app.signed_up("alice", PASSWORD).await;
    c.csrf = None;
    assert_error(c.post("/demo/counter").await, 403, "csrf_token_missing").await;
    assert_error(c.post("/auth/logout").await, 403, "csrf_token_missing").await;
    assert_eq!(
        c.get("/auth/me").await.status(),
        200,
        "logout was refused, session alive"
    );
}

#[tokio::test]
async fn a_wrong_or_garbage_token_is_refused() {
    let app = TestApp::spawn().await;
    let mut c = app.signed_up("bob", PASSWORD).await;
    for bad in ["", "garbage", "AAAA", &"A".repeat(86), &"A".repeat(10_000)] {
        c.csrf = Some(bad.to_owned());
        assert_error(c.post("/demo/counter").await, 403, "csrf_token_mismatch").await;
    }
}

#[tokio::test]
async fn another_sessions_token_is_refused() {
    let app = TestApp::spawn().await;
    let mallory = app.signed_up("mallory", PASSWORD).await;
    let mut victim = app.signed_up("victim", PASSWORD).await;
    victim.csrf = mallory.csrf.clone();
    assert_error(
        victim.post("/auth/logout-all").await,
        403,
        "csrf_token_mismatch",
    )
    .await;
}

#[tokio::test]
async fn an_untrusted_origin_is_refused_even_with_a_valid_token() {
    let app = TestApp::spawn().await;
    let c = app.signed_up("carol", PASSWORD).await;
    for origin in [
        "http://evil.test",
        "null",
        "http://localhost:3001",
        "https://localhost:3000",
    ] {
        let res = c
            .http
            .post(app.url("/demo/counter"))
            .header("origin", origin)
            .header("x-csrf-token", c.csrf.clone().expect("token"))
            .send()
            .await
            .expect("request");
        let body = assert_error(res, 403, "csrf_origin_untrusted").await;
        assert!(
            body["hint"]
                .as_str()
                .is_some_and(|h| h.contains("csrf.trusted_origins"))
        );
    }
}

#[tokio::test]
async fn sec_fetch_site_cross_site_is_refused() {
    let app = TestApp::spawn().await;
    let c = app.signed_up("dan", PASSWORD).await;
    let res = c
        .http
        .post(app.url("/demo/counter"))
        .header("sec-fetch-site", "cross-site")
        .header("x-csrf-token", c.csrf.clone().expect("token"))
        .send()
        .await
        .expect("request");
    assert_error(res, 403, "csrf_origin_untrusted").await;
    let res = c
        .http
        .post(app.url("/demo/counter"))
        .header("referer", "http://evil.test/page")
        .header("x-csrf-token", c.csrf.clone().expect("token"))
        .send()
        .await
        .expect("request");
    assert_error(res, 403, "csrf_origin_untrusted").await;
}

#[tokio::test]
async fn login_csrf_from_a_foreign_origin_is_refused() {
    let app = TestApp::spawn().await;
    app.signed_up("attacker", PASSWORD).await;
    // A victim's browser with no cookie, submitting the attacker's credentials from evil.test.
    let res = app
        .raw_client()
        .post(app.url("/auth/login"))
        .header("origin", "http://evil.test")
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"username": "attacker", "password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert!(res.headers().get("set-cookie").is_none());
    assert_error(res, 403, "csrf_origin_untrusted").await;
    let res = app
        .raw_client()
        .post(app.url("/auth/signup"))
        .header("origin", "http://evil.test")
        .json(&json!({"username": "planted", "password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_error(res, 403, "csrf_origin_untrusted").await;
}

#[tokio::test]
async fn a_trusted_origin_with_the_token_passes_and_same_origin_fetch_metadata_passes() {
    let app = TestApp::spawn().await;
    let c = app.signed_up("erin", PASSWORD).await;
    let token = c.csrf.clone().expect("token");
    let res = c
        .http
        .post(app.url("/demo/counter"))
        .header("origin", "http://localhost:3000")
        .header("sec-fetch-site", "same-site")
        .header("x-csrf-token", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let res = c
        .http
        .post(app.url("/demo/counter"))
        .header("sec-fetch-site", "same-origin")
        .header("x-csrf-token", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["counter"], 2);
}

#[tokio::test]
async fn a_non_browser_client_without_origin_headers_still_needs_the_token_with_a_cookie() {
    let app = TestApp::spawn().await;
    let mut c = app.signed_up("fay", PASSWORD).await;
    assert_eq!(c.post("/demo/counter").await.status(), 200);
    c.csrf = None;
    assert_error(c.post("/demo/counter").await, 403, "csrf_token_missing").await;
}

#[tokio::test]
async fn masked_tokens_change_per_response_and_all_verify() {
    let app = TestApp::spawn().await;
    let mut c = app.signed_up("gus", PASSWORD).await;
    let a = c.csrf.clone();
    c.refresh_csrf().await;
    let b = c.csrf.clone();
    assert_ne!(a, b, "masked afresh");
    assert_eq!(c.post("/demo/counter").await.status(), 200);
    c.csrf = a;
    assert_eq!(c.post("/demo/counter").await.status(), 200);
}

/// `/auth/_debug`'s `csrf_trusted` is the CSRF layer's own rule: on the same requests (the same
/// `Origin` and `Host`), the debug endpoint says "trusted" exactly when the layer lets a cookie
/// write through — the same-Host rule included, which the debug endpoint once lacked.
#[tokio::test]
async fn the_debug_endpoint_and_the_csrf_layer_agree() {
    let app = TestApp::spawn_with(|raw| raw.debug_endpoint = true).await;
    let http = app.raw_client();
    let own_host = app.base.trim_start_matches("http://").to_owned();
    let first: Value = http
        .get(app.url("/auth/_debug"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let public = first["policy"]["public_origin"]
        .as_str()
        .expect("public origin")
        .to_owned();
    let by_host = format!("http://{own_host}");
    let cases: Vec<(String, Option<&str>, bool)> = vec![
        // Same origin by Host: the server reached under another name than public_url.
        (by_host.clone(), None, true),
        (public.clone(), None, true),
        ("http://localhost:3000".into(), None, true),
        ("http://evil.test".into(), None, false),
        // The Host's origin, but another scheme than the server's.
        (format!("https://{own_host}"), None, false),
        // A Host that names another origin than the page's.
        (by_host.clone(), Some("evil.test"), false),
    ];
    for (origin, host, trusted) in cases {
        let with_headers = |req: reqwest::RequestBuilder| {
            let req = req.header("origin", &origin);
            match host {
                Some(h) => req.header("host", h),
                None => req,
            }
        };
        let debug: Value = with_headers(http.get(app.url("/auth/_debug")))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        assert_eq!(
            debug["verdict"]["csrf_trusted"], trusted,
            "debug: {origin} with Host {host:?}: {debug}"
        );
        let res = with_headers(http.post(app.url("/demo/counter")))
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or_default();
        let refused = status == 403 && body["code"] == "csrf_origin_untrusted";
        assert_eq!(
            !refused, trusted,
            "CSRF layer: {origin} with Host {host:?}: {status} {body}"
        );
    }
}
