//! Session tokens over `Authorization: Bearer`: one session, two transports.

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::support::{
    COOKIE, PASSWORD, TestApp, assert_bearer_error, assert_error, set_cookie_value,
};

async fn assert_invalid_token(res: reqwest::Response) {
    assert_bearer_error(res, 401, "invalid_token", "invalid_token").await;
}

#[tokio::test]
async fn bearer_login_returns_a_token_and_no_cookie_and_me_answers() {
    let app = TestApp::spawn().await;
    app.signed_up("alice", PASSWORD).await;
    let res = app
        .post_anon(
            "/auth/login",
            &json!({"username": "alice", "password": PASSWORD, "transport": "bearer"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("set-cookie").is_none());
    let body: Value = res.json().await.expect("json");
    let token = body["token"].as_str().expect("token");
    assert!(token.starts_with("vst_"));
    assert!(body["expires_at"].as_str().is_some_and(|t| t.contains('T')));
    assert_eq!(body["user"]["username"], "alice");
    let me = app
        .with_bearer(Method::GET, "/auth/me", token)
        .send()
        .await
        .expect("request");
    assert_eq!(me.status(), 200);
    assert!(me.headers().get("set-cookie").is_none());
    let me: Value = me.json().await.expect("json");
    assert_eq!(me["user"]["username"], "alice");
    assert_eq!(me["csrf_token"], Value::Null, "bearer needs no CSRF token");
}

#[tokio::test]
async fn bearer_signup_works_too() {
    let app = TestApp::spawn().await;
    let res = app
        .post_anon(
            "/auth/signup",
            &json!({"username": "bea", "password": PASSWORD, "transport": "bearer"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("set-cookie").is_none());
    let body: Value = res.json().await.expect("json");
    let token = body["token"].as_str().expect("token");
    let me = app
        .with_bearer(Method::GET, "/auth/me", token)
        .send()
        .await
        .expect("request");
    assert_eq!(me.status(), 200);
}

#[tokio::test]
async fn bearer_writes_need_no_csrf_token_from_any_origin() {
    let app = TestApp::spawn().await;
    app.signed_up("bob", PASSWORD).await;
    let token = app.bearer_login("bob", PASSWORD).await;
    for _ in 0..2 {
        let res = app
            .with_bearer(Method::POST, "/demo/counter", &token)
            .header("origin", "http://evil.test")
            .header("sec-fetch-site", "cross-site")
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("set-cookie").is_none());
    }
    let res = app
        .with_bearer(Method::GET, "/demo/counter", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.json::<Value>().await.expect("json")["counter"],
        2,
        "data kept in the bearer session"
    );
}

#[tokio::test]
async fn an_authorization_header_is_the_only_credential_no_fallback_to_the_cookie() {
    let app = TestApp::spawn().await;
    let c = app.signed_up("carol", PASSWORD).await;
    assert_eq!(c.get("/auth/me").await.status(), 200);
    let unknown = vestibule::token::SecretToken::generate(vestibule::token::TokenKind::Session);
    // The cookie jar still sends carol's valid cookie; the bad bearer token must win.
    let res = c
        .http
        .get(app.url("/auth/me"))
        .header("authorization", format!("Bearer {}", unknown.expose()))
        .send()
        .await
        .expect("request");
    assert_invalid_token(res).await;
    let res = c
        .http
        .get(app.url("/auth/me"))
        .header("authorization", "Token abc")
        .send()
        .await
        .expect("request");
    assert_invalid_token(res).await;
}

#[tokio::test]
async fn malformed_authorization_headers_are_401_invalid_token_never_500() {
    let app = TestApp::spawn().await;
    app.signed_up("dan", PASSWORD).await;
    let good = app.bearer_login("dan", PASSWORD).await;
    let mut typo: Vec<char> = good.chars().collect();
    typo[12] = if typo[12] == 'x' { 'y' } else { 'x' };
    let typo: String = typo.into_iter().collect();
    let cases: Vec<HeaderValue> = vec![
        HeaderValue::from_static(""),
        HeaderValue::from_static("Bearer"),
        HeaderValue::from_static("Bearer "),
        HeaderValue::from_str(&good).expect("no scheme"),
        HeaderValue::from_str(&format!("Token {good}")).expect("value"),
        HeaderValue::from_str(&format!("Basic {good}")).expect("value"),
        HeaderValue::from_str(&format!("Bearer  {good}")).expect("two spaces"),
        HeaderValue::from_str(&format!("Bearer {good} extra")).expect("value"),
        HeaderValue::from_str(&format!("Bearer {good}\textra")).expect("tab"),
        HeaderValue::from_str(&format!("Bearer {typo}")).expect("checksum"),
        HeaderValue::from_str(&format!("Bearer {}", &good[..good.len() - 1])).expect("truncated"),
        HeaderValue::from_str(&format!("Bearer {}", "A".repeat(10 * 1024))).expect("10 KB"),
        HeaderValue::from_bytes(b"Bearer vst_\xff\xfe\xfd").expect("non-ASCII"),
        HeaderValue::from_static("Bearer vpat_notarealtoken"),
    ];
    for value in cases {
        let mut h = HeaderMap::new();
        h.insert("authorization", value.clone());
        let res = app
            .raw_client()
            .get(app.url("/auth/me"))
            .headers(h)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 401, "{value:?}");
        assert_invalid_token(res).await;
    }
    // Two Authorization headers are refused too.
    let mut h = HeaderMap::new();
    h.append(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {good}")).expect("value"),
    );
    h.append(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {good}")).expect("value"),
    );
    let res = app
        .raw_client()
        .get(app.url("/auth/me"))
        .headers(h)
        .send()
        .await
        .expect("request");
    assert_invalid_token(res).await;
    // Scheme names are case-insensitive (RFC 7235).
    let res = app
        .raw_client()
        .get(app.url("/auth/me"))
        .header("authorization", format!("bearer {good}"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn logout_revokes_the_bearer_token_on_the_very_next_request() {
    let app = TestApp::spawn().await;
    app.signed_up("erin", PASSWORD).await;
    let token = app.bearer_login("erin", PASSWORD).await;
    let res = app
        .with_bearer(Method::POST, "/auth/logout", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 204);
    let res = app
        .with_bearer(Method::GET, "/auth/me", &token)
        .send()
        .await
        .expect("request");
    assert_invalid_token(res).await;
}

#[tokio::test]
async fn bearer_sessions_are_listed_and_ended_by_logout_all_and_password_change() {
    let app = TestApp::spawn().await;
    let mut cookie = app.signed_up("fay", PASSWORD).await;
    let bearer = app.bearer_login("fay", PASSWORD).await;
    let list: Value = cookie
        .get("/auth/sessions")
        .await
        .json()
        .await
        .expect("json");
    let transports: Vec<&str> = list["sessions"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["transport"].as_str())
        .collect();
    assert!(
        transports.contains(&"bearer") && transports.contains(&"cookie"),
        "{list}"
    );
    let res = cookie
        .post_json(
            "/auth/password",
            &json!({"current_password": PASSWORD, "new_password": "another long one"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .with_bearer(Method::GET, "/auth/me", &bearer)
        .send()
        .await
        .expect("request");
    assert_invalid_token(res).await;

    let second = app.bearer_login("fay", "another long one").await;
    let res = app
        .with_bearer(Method::POST, "/auth/logout-all", &second)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 204);
    assert_invalid_token(
        app.with_bearer(Method::GET, "/auth/me", &second)
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_error(cookie.get("/auth/me").await, 401, "not_authenticated").await;
}

#[tokio::test]
async fn a_password_change_over_bearer_answers_with_the_rotated_token() {
    let app = TestApp::spawn().await;
    app.signed_up("gil", PASSWORD).await;
    let old = app.bearer_login("gil", PASSWORD).await;
    let res = app
        .with_bearer(Method::POST, "/auth/password", &old)
        .json(&json!({"current_password": PASSWORD, "new_password": "fresh and long"}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert!(set_cookie_value(&res, COOKIE).is_none());
    let body: Value = res.json().await.expect("json");
    let new = body["token"].as_str().expect("new token");
    assert_ne!(new, old);
    assert_invalid_token(
        app.with_bearer(Method::GET, "/auth/me", &old)
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(
        app.with_bearer(Method::GET, "/auth/me", new)
            .send()
            .await
            .expect("request")
            .status(),
        200
    );
}

#[tokio::test]
async fn an_unknown_transport_is_refused_with_a_code() {
    let app = TestApp::spawn().await;
    app.signed_up("hal", PASSWORD).await;
    let res = app
        .post_anon(
            "/auth/login",
            &json!({"username": "hal", "password": PASSWORD, "transport": "pigeon"}),
        )
        .await;
    assert_error(res, 422, "invalid_body").await;
}

#[tokio::test]
async fn login_and_signup_with_a_dead_bearer_token_are_refused() {
    let app = TestApp::spawn().await;
    app.signed_up("fay", PASSWORD).await;
    let token = app.bearer_login("fay", PASSWORD).await;
    let res = app
        .with_bearer(Method::POST, "/auth/logout", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 204);
    // The header is the only credential considered, on login and signup too.
    for (path, user) in [("/auth/login", "fay"), ("/auth/signup", "gus")] {
        let res = app
            .with_bearer(Method::POST, path, &token)
            .json(&serde_json::json!({"username": user, "password": PASSWORD}))
            .send()
            .await
            .expect("request");
        assert_bearer_error(res, 401, "invalid_token", "invalid_token").await;
    }
    // Without the dead header, the same login works.
    app.bearer_login("fay", PASSWORD).await;
}
