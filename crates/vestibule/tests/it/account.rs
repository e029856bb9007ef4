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
