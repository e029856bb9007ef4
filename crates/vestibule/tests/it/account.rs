//! Account security (issue 9): password quality, re-authentication, the hashing cap, presets
//! and cookies, admin revocation and one-time reset tokens.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn signup_refuses_each_weak_password_with_its_own_code() {
    let app = TestApp::spawn().await;
    let mut c = app.client();
    for (password, code) in [
        ("seven c", "password_too_short"),
        (&*"x".repeat(1025), "password_too_long"),
        ("password1", "password_too_common"),
        ("Iloveyou", "password_too_common"),
        ("my name is GRACE!", "password_contains_username"),
    ] {
        let res = c
            .post_json(
                "/auth/signup",
                &json!({"username": "grace", "password": password}),
            )
            .await;
        let body = assert_error(res, 422, code).await;
        assert!(body["hint"].is_string(), "{body}");
    }
    assert_eq!(app.state.users.list().await.expect("list").len(), 0);
    // Any Unicode, no composition rules, 64 characters and more.
    let long: String = "ß".repeat(70);
    for (i, password) in ["пароль без правил", "長い秘密の合言葉", long.as_str()]
        .into_iter()
        .enumerate()
    {
        let res = app
            .client()
            .post_json(
                "/auth/signup",
                &json!({"username": format!("uni{i}"), "password": password}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "{password}");
    }
}

#[tokio::test]
async fn short_password_message_recommends_fifteen_characters() {
    let app = TestApp::spawn().await;
    let mut c = app.client();
    let res = c
        .post_json(
            "/auth/signup",
            &json!({"username": "heidi", "password": "short"}),
        )
        .await;
    let body = assert_error(res, 422, "password_too_short").await;
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains('8') && message.contains("15"), "{message}");
}

#[tokio::test]
async fn password_change_applies_the_same_quality_rules() {
    let app = TestApp::spawn().await;
    let mut c = app.signed_up("ivan", PASSWORD).await;
    for (new, code) in [
        ("123456789", "password_too_common"),
        ("ivan's new pass", "password_contains_username"),
        ("tiny", "password_too_short"),
    ] {
        let res = c
            .post_json(
                "/auth/password",
                &json!({"current_password": PASSWORD, "new_password": new}),
            )
            .await;
        assert_error(res, 422, code).await;
    }
    // The old password still works: nothing was changed.
    let mut other = app.client();
    other.login_ok("ivan", PASSWORD).await;
}

/// The id of a session of `c` other than its own, from `GET /auth/sessions`.
async fn other_session_id(c: &TestClient) -> String {
    let list: serde_json::Value = c.get("/auth/sessions").await.json().await.expect("json");
    list["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["current"] == false)
        .and_then(|s| s["id"].as_str())
        .expect("another session")
        .to_owned()
}

#[tokio::test]
async fn sensitive_actions_are_refused_when_the_proof_is_stale_and_allowed_after_reauth() {
    let app = TestApp::spawn().await;
    let mut c = app.signed_up("judy", PASSWORD).await;
    let mut other = app.client();
    other.login_ok("judy", PASSWORD).await;
    let other_id = other_session_id(&c).await;
    // Eleven minutes after the logins (the default window is ten).
    app.age_auth("judy", 660).await;

    let res = c.post_json("/auth/tokens", &json!({"name": "ci"})).await;
    let body = assert_error(res, 403, "reauth_required").await;
    assert!(
        body["hint"].as_str().unwrap_or("").contains("/auth/reauth"),
        "{body}"
    );
    let res = c
        .post_json(
            "/auth/password",
            &json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_error(res, 403, "reauth_required").await;
    let res = c.delete(&format!("/auth/sessions/{other_id}")).await;
    assert_error(res, 403, "reauth_required").await;
    assert_error(c.post("/auth/logout-all").await, 403, "reauth_required").await;
    assert_eq!(app.session_count().await, 2, "nothing was ended");

    // A wrong password proves nothing.
    let res = c
        .post_json("/auth/reauth", &json!({"password": "not the password"}))
        .await;
    assert_error(res, 401, "invalid_credentials").await;
    assert_error(c.post("/auth/logout-all").await, 403, "reauth_required").await;

    let res = c
        .post_json("/auth/reauth", &json!({"password": PASSWORD}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.expect("json");
    assert!(body["reauth_until"].is_string(), "{body}");

    // Re-authenticating one session does not refresh the others.
    let res = other.post_json("/auth/tokens", &json!({"name": "x"})).await;
    assert_error(res, 403, "reauth_required").await;

    let res = c.post_json("/auth/tokens", &json!({"name": "ci"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = c.delete(&format!("/auth/sessions/{other_id}")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = c
        .post_json(
            "/auth/password",
            &json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.expect("json");
    c.csrf = body["csrf_token"].as_str().map(str::to_owned);
    assert_eq!(c.post("/auth/logout-all").await.status(), 204);
    assert_eq!(app.session_count().await, 0);
}

#[tokio::test]
async fn ending_ones_own_session_needs_no_reauth() {
    let app = TestApp::spawn().await;
    let c = app.signed_up("kate", PASSWORD).await;
    app.age_auth("kate", 3600).await;
    let list: serde_json::Value = c.get("/auth/sessions").await.json().await.expect("json");
    let own = list["sessions"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(c.delete(&format!("/auth/sessions/{own}")).await.status(), 204);
    assert_eq!(c.get("/auth/me").await.status(), 401);
}

#[tokio::test]
async fn bearer_sessions_need_reauth_too() {
    let app = TestApp::spawn().await;
    app.signed_up("liam", PASSWORD).await;
    let token = app.bearer_login("liam", PASSWORD).await;
    app.age_auth("liam", 660).await;
    let create = || {
        app.with_bearer(reqwest::Method::POST, "/auth/tokens", &token)
            .json(&json!({"name": "script"}))
    };
    let res = create().send().await.expect("request");
    assert_error(res, 403, "reauth_required").await;
    let res = app
        .with_bearer(reqwest::Method::POST, "/auth/reauth", &token)
        .json(&json!({"password": "wrong password!"}))
        .send()
        .await
        .expect("request");
    assert_error(res, 401, "invalid_credentials").await;
    let res = app
        .with_bearer(reqwest::Method::POST, "/auth/reauth", &token)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let res = create().send().await.expect("request");
    assert_eq!(res.status(), StatusCode::CREATED);
    // An access token cannot prove anything for the account.
    let pat: serde_json::Value = res.json().await.expect("json");
    let pat = pat["token"].as_str().expect("token");
    let res = app
        .with_bearer(reqwest::Method::POST, "/auth/reauth", pat)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn reauth_shares_the_accounts_login_budget() {
    let app = TestApp::spawn_with(|raw| {
        raw.rate_limits.login_per_user = "3/hour".into();
        raw.rate_limits.login_per_device = "3/hour".into();
    })
    .await;
    let mut c = app.signed_up("mona", PASSWORD).await;
    let mut refused = 0;
    for _ in 0..5 {
        let res = c
            .post_json("/auth/reauth", &json!({"password": "guess guess guess"}))
            .await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
            assert!(res.headers().contains_key("retry-after"));
        }
    }
    assert!(refused >= 2, "guesses past the budget are refused ({refused})");
}
