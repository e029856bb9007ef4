//! The `/auth` API over HTTP: signup, login, logout, me, password, errors.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{COOKIE, PASSWORD, TestApp, assert_error, set_cookie_value, set_cookies};

#[tokio::test]
async fn signup_logs_in_and_me_answers() {
    let app = TestApp::spawn().await;
    let c = app.signed_up("alice", PASSWORD).await;
    let res = c.get("/auth/me").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["user"]["username"], "alice");
    assert!(body["user"]["id"].as_i64().is_some());
    assert!(body["csrf_token"].as_str().is_some_and(|t| t.len() >= 43));
}

#[tokio::test]
async fn me_without_a_session_is_401_with_www_authenticate() {
    let app = TestApp::spawn().await;
    let res = app.client().get("/auth/me").await;
    assert!(res.headers().get("www-authenticate").is_some());
    assert_error(res, 401, "not_authenticated").await;
}

#[tokio::test]
async fn the_session_cookie_has_safe_attributes() {
    let app = TestApp::spawn().await;
    let mut c = app.client();
    let res = c
        .post_json(
            "/auth/signup",
            &json!({"username": "bob", "password": PASSWORD}),
        )
        .await;
    let cookie = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with(COOKIE))
        .expect("cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains("Domain"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain-http loopback relaxes Secure: {cookie}"
    );
    let value = set_cookie_value(&res, COOKIE).expect("value");
    assert!(
        value.starts_with("vst_") && value.len() >= 4 + 43,
        "{value}"
    );
    assert_eq!(
        res.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
}

#[tokio::test]
async fn an_https_public_url_gives_a_secure_host_prefixed_cookie() {
    let app =
        TestApp::spawn_with(|raw| raw.public_url = Some("https://api.acme.test".into())).await;
    let mut c = app.client();
    let res = c
        .http
        .post(app.url("/auth/signup"))
        .header("origin", "https://api.acme.test")
        .json(&json!({"username": "carol", "password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::CREATED);
    let cookies = set_cookies(&res);
    let cookie = cookies
        .iter()
        .find(|c| c.starts_with("__Host-vestibule_session="))
        .expect("session cookie");
    assert!(
        cookie.starts_with("__Host-vestibule_session=vst_"),
        "{cookie}"
    );
    assert!(cookie.contains("Secure"), "{cookie}");
    // The rate limit's device cookie follows the same rules.
    let device = cookies
        .iter()
        .find(|c| c.starts_with("__Host-vestibule_device="))
        .expect("device cookie");
    assert!(
        device.contains("Secure") && device.contains("HttpOnly"),
        "{device}"
    );
    c.csrf = None;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_answer_identically() {
    let app = TestApp::spawn().await;
    app.signed_up("dave", PASSWORD).await;
    let mut c = app.client();
    let wrong = c.login("dave", "not the password").await;
    let unknown = c.login("nobody-here", "not the password").await;
    assert_eq!(wrong.status(), unknown.status());
    let a = assert_error(wrong, 401, "invalid_credentials").await;
    let b = assert_error(unknown, 401, "invalid_credentials").await;
    assert_eq!(a, b);
}

#[tokio::test]
async fn usernames_are_unique_case_insensitively_and_validated() {
    let app = TestApp::spawn().await;
    app.signed_up("Erin", PASSWORD).await;
    let mut c = app.client();
    let res = c
        .post_json(
            "/auth/signup",
            &json!({"username": "erin", "password": PASSWORD}),
        )
        .await;
    assert_error(res, 409, "username_taken").await;
    let res = c
        .post_json(
            "/auth/signup",
            &json!({"username": "no spaces", "password": PASSWORD}),
        )
        .await;
    assert_error(res, 422, "invalid_username").await;
    // Login is case-insensitive too.
    c.login_ok("ERIN", PASSWORD).await;
}

#[tokio::test]
async fn weak_passwords_are_refused() {
    let app = TestApp::spawn().await;
    let mut c = app.client();
    let res = c
        .post_json(
            "/auth/signup",
            &json!({"username": "frank", "password": "short"}),
        )
        .await;
    assert_error(res, 422, "password_too_short").await;
    let res = c
        .post_json(
            "/auth/signup",
            &json!({"username": "frankfrank", "password": "FrankFrank"}),
        )
        .await;
    assert_error(res, 422, "password_contains_username").await;
    assert_eq!(app.state.users.list().await.expect("list").len(), 0);
}

#[tokio::test]
async fn signup_can_be_turned_off() {
    // Demo mode opens signup: off here, as in production.
    let app = TestApp::spawn_with(|raw| {
        raw.auth.signup = false;
        raw.demo = false;
    })
    .await;
    let mut c = app.client();
    let res = c
        .post_json(
            "/auth/signup",
            &json!({"username": "gina", "password": PASSWORD}),
        )
        .await;
    let body = assert_error(res, 403, "signup_disabled").await;
    assert!(
        body["hint"]
            .as_str()
            .is_some_and(|h| h.contains("auth.signup"))
    );
}

#[tokio::test]
async fn disabled_users_cannot_log_in() {
    let app = TestApp::spawn().await;
    let mut c = app.signed_up("hank", PASSWORD).await;
    let user = app
        .state
        .users
        .by_username("hank")
        .await
        .expect("query")
        .expect("exists");
    app.state
        .users
        .set_active(user.id, false)
        .await
        .expect("disable");
    c.post("/auth/logout").await;
    let res = c.login("hank", PASSWORD).await;
    assert_error(res, 403, "account_disabled").await;
}

#[tokio::test]
async fn logout_is_server_side_and_replaying_the_old_cookie_is_401() {
    let app = TestApp::spawn().await;
    let mut c = app.client();
    let res = c
        .post_json(
            "/auth/signup",
            &json!({"username": "ivy", "password": PASSWORD}),
        )
        .await;
    let token = set_cookie_value(&res, COOKIE).expect("cookie");
    let body: Value = res.json().await.expect("json");
    c.csrf = body["csrf_token"].as_str().map(str::to_owned);
    let res = c.post("/auth/logout").await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        set_cookie_value(&res, COOKIE).as_deref(),
        Some(""),
        "cookie expired"
    );
    let replay = app
        .raw_client()
        .get(app.url("/auth/me"))
        .header("cookie", format!("{COOKIE}={token}"))
        .send()
        .await
        .expect("request");
    assert_error(replay, 401, "not_authenticated").await;
    assert_eq!(app.session_count().await, 0);
}

#[tokio::test]
async fn login_rotates_the_session_id_so_fixation_fails() {
    let app = TestApp::spawn().await;
    app.signed_up("judy", PASSWORD).await;
    // The attacker obtains an anonymous session and plants its cookie in the victim's browser.
    let attacker = app.client();
    let res = attacker.post("/demo/counter").await;
    let planted = set_cookie_value(&res, COOKIE).expect("anonymous session cookie");
    let victim = app.raw_client();
    let csrf: Value = victim
        .get(app.url("/auth/csrf"))
        .header("cookie", format!("{COOKIE}={planted}"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let res = victim
        .post(app.url("/auth/login"))
        .header("cookie", format!("{COOKIE}={planted}"))
        .header("x-csrf-token", csrf["csrf_token"].as_str().expect("token"))
        .json(&json!({"username": "judy", "password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let fresh = set_cookie_value(&res, COOKIE).expect("new cookie");
    assert_ne!(fresh, planted);
    let body: Value = res.json().await.expect("json");
    assert_ne!(
        body["csrf_token"], csrf["csrf_token"],
        "CSRF token rotates too"
    );
    // The planted id is dead: the attacker holds nothing.
    let res = attacker.get("/auth/me").await;
    assert_error(res, 401, "not_authenticated").await;
    let res = victim
        .get(app.url("/auth/me"))
        .header("cookie", format!("{COOKIE}={fresh}"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn anonymous_data_carries_over_at_login_but_another_users_does_not() {
    let app = TestApp::spawn().await;
    app.signed_up("kim", PASSWORD).await;
    app.signed_up("leo", PASSWORD).await;
    let mut c = app.client();
    c.post("/demo/counter").await;
    c.refresh_csrf().await;
    c.post("/demo/counter").await;
    c.login_ok("kim", PASSWORD).await;
    let body: Value = c.get("/demo/counter").await.json().await.expect("json");
    assert_eq!(
        body["counter"], 2,
        "anonymous session data kept through login"
    );
    // Logging in as someone else from kim's session must not inherit kim's data.
    c.login_ok("leo", PASSWORD).await;
    let body: Value = c.get("/demo/counter").await.json().await.expect("json");
    assert_eq!(body["counter"], 0, "another user's session is flushed");
    let me: Value = c.get("/auth/me").await.json().await.expect("json");
    assert_eq!(me["user"]["username"], "leo");
}

#[tokio::test]
async fn password_change_rotates_this_session_and_ends_every_other() {
    let app = TestApp::spawn().await;
    let mut one = app.signed_up("mia", PASSWORD).await;
    let mut two = app.client();
    two.login_ok("mia", PASSWORD).await;
    let res = one
        .post_json(
            "/auth/password",
            &json!({"current_password": PASSWORD, "new_password": "a brand new secret"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(
        set_cookie_value(&res, COOKIE).is_some(),
        "this session moved to a new token"
    );
    let body: Value = res.json().await.expect("json");
    one.csrf = body["csrf_token"].as_str().map(str::to_owned);
    assert_eq!(one.get("/auth/me").await.status(), 200);
    assert_error(two.get("/auth/me").await, 401, "not_authenticated").await;
    assert_error(two.login("mia", PASSWORD).await, 401, "invalid_credentials").await;
    two.login_ok("mia", "a brand new secret").await;
}

#[tokio::test]
async fn password_change_answers_how_many_sessions_and_tokens_it_ended() {
    let app = TestApp::spawn().await;
    let mut one = app.signed_up("max", PASSWORD).await;
    one.create_token(&json!({"name": "backup"})).await;
    // An expired token the purge has not reached yet: deleted by the change, but not counted
    // (it had already stopped working).
    let max = app
        .state
        .users
        .by_username("max")
        .await
        .expect("lookup")
        .expect("max");
    app.state
        .access_tokens
        .create(
            max.id,
            "expired",
            &[vestibule::auth::Scope::Read],
            vestibule::session::now() - 60,
            10,
        )
        .await
        .expect("create expired token");
    let mut two = app.client();
    two.login_ok("max", PASSWORD).await;
    let bearer = app.bearer_login("max", PASSWORD).await;
    let res = one
        .post_json(
            "/auth/password",
            &json!({"current_password": PASSWORD, "new_password": "a brand new secret"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(
        body["ended"],
        json!({"sessions": 2, "access_tokens": 1}),
        "{body}"
    );
    assert!(
        body["csrf_token"].is_string(),
        "the login answer is still flat: {body}"
    );
    assert_eq!(body["user"]["username"], "max");
    one.csrf = body["csrf_token"].as_str().map(str::to_owned);
    assert_error(two.get("/auth/me").await, 401, "not_authenticated").await;
    let res = app
        .raw_client()
        .get(app.url("/auth/me"))
        .bearer_auth(&bearer)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401, "the bearer session ended too");
    // Nothing else left to end: a second change counts zero of each.
    let res = one
        .post_json(
            "/auth/password",
            &json!({"current_password": "a brand new secret", "new_password": "yet another secret"}),
        )
        .await;
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["ended"], json!({"sessions": 0, "access_tokens": 0}));
}

#[tokio::test]
async fn password_change_needs_the_current_password() {
    let app = TestApp::spawn().await;
    let mut c = app.signed_up("ned", PASSWORD).await;
    let res = c
        .post_json(
            "/auth/password",
            &json!({"current_password": "wrong one!", "new_password": "whatever else"}),
        )
        .await;
    assert_error(res, 401, "invalid_credentials").await;
    let res = c
        .post_json(
            "/auth/password",
            &json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_error(res, 422, "password_too_short").await;
    assert_eq!(c.get("/auth/me").await.status(), 200, "still logged in");
}

#[tokio::test]
async fn csrf_endpoint_gives_null_without_a_session_and_a_token_with_one() {
    let app = TestApp::spawn().await;
    let body: Value = app
        .client()
        .get("/auth/csrf")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["csrf_token"], Value::Null);
    let c = app.signed_up("olga", PASSWORD).await;
    let body: Value = c.get("/auth/csrf").await.json().await.expect("json");
    assert!(body["csrf_token"].as_str().is_some());
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let c = app.client();
    let res = c.get("/healthz").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers().get("x-request-id").is_some(),
        "every response carries a request id"
    );
    assert_eq!(
        c.get("/readyz").await.json::<Value>().await.expect("json")["status"],
        "ready"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = TestApp::spawn().await;
    let c = app.client();
    assert_error(c.get("/auth/nope").await, 404, "not_found").await;
    assert_error(c.delete("/auth/me").await, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn the_demo_page_is_served_with_a_csp() {
    let app = TestApp::spawn().await;
    let res = app.client().get("/").await;
    assert_eq!(res.status(), 200);
    let csp = res
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(res.text().await.expect("body").contains("/demo/app.js"));
    assert_eq!(app.client().get("/demo/app.js").await.status(), 200);
}

#[tokio::test]
async fn without_demo_mode_the_page_and_the_counter_are_a_plain_404() {
    let app = TestApp::spawn_with(|raw| raw.demo = false).await;
    let c = app.client();
    for path in ["/", "/demo/counter", "/demo/app.js", "/demo/index.html"] {
        let body = assert_error(c.get(path).await, 404, "not_found").await;
        assert!(body["message"].is_string(), "{path}: {body}");
    }
    assert_error(c.post("/demo/counter").await, 404, "not_found").await;
    // The client module stays: pages on other origins import it.
    assert_eq!(c.get("/_vestibule/client.js").await.status(), 200);
}

#[tokio::test]
async fn the_js_client_is_served_byte_for_byte_as_the_npm_package_ships_it() {
    let app = TestApp::spawn().await;
    let res = app.client().get("/_vestibule/client.js").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/javascript; charset=utf-8")
    );
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../clients/js/src/index.js"
    ))
    .expect("clients/js/src/index.js");
    assert_eq!(res.text().await.expect("body"), shipped);
    let app_js = app
        .client()
        .get("/demo/app.js")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        app_js.contains("from '/_vestibule/client.js'"),
        "the demo uses the client"
    );
}

#[tokio::test]
async fn sessions_survive_a_restart_on_the_default_store() {
    let app = TestApp::spawn().await;
    let dir = app.dir.clone();
    let mut c = app.client();
    let res = c
        .post_json(
            "/auth/signup",
            &json!({"username": "pam", "password": PASSWORD}),
        )
        .await;
    let token = set_cookie_value(&res, COOKIE).expect("cookie");
    app.stop().await;
    let again = TestApp::spawn_in(dir, |_| {}).await;
    let res = again
        .raw_client()
        .get(again.url("/auth/me"))
        .header("cookie", format!("{COOKIE}={token}"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.expect("json")["user"]["username"],
        "pam"
    );
}

#[tokio::test]
async fn a_sane_client_request_id_is_echoed_and_a_bad_one_replaced() {
    let app = TestApp::spawn().await;
    let http = app.raw_client();
    let res = http
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("trace-abc-123")
    );
    let long = "x".repeat(500);
    let res = http
        .get(app.url("/healthz"))
        .header("x-request-id", &long)
        .send()
        .await
        .expect("request");
    let id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(id.len(), 16, "replaced by a fresh id: {id}");
    let a = http.get(app.url("/nope")).send().await.expect("request");
    let b = http.get(app.url("/nope")).send().await.expect("request");
    assert_ne!(
        a.headers().get("x-request-id"),
        b.headers().get("x-request-id"),
        "ids differ, errors carry them too"
    );
}
