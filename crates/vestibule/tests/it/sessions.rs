//! Listing and revoking a user's sessions.

use serde_json::Value;

use crate::support::{PASSWORD, TestApp, assert_error};

#[tokio::test]
async fn a_user_lists_their_sessions_and_revokes_one() {
    let app = TestApp::spawn().await;
    let one = app.signed_up("alice", PASSWORD).await;
    let mut two = app.client();
    two.login_ok("alice", PASSWORD).await;
    let body: Value = one.get("/auth/sessions").await.json().await.expect("json");
    let list = body["sessions"].as_array().expect("array").clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    let other = list
        .iter()
        .find(|s| s["current"] == false)
        .expect("the other session");
    assert!(
        other["created_at"]
            .as_str()
            .is_some_and(|t| t.contains('T'))
    );
    assert!(other["user_agent"].is_string());
    let id = other["id"].as_str().expect("id");
    assert_eq!(
        one.delete(&format!("/auth/sessions/{id}")).await.status(),
        204
    );
    assert_error(two.get("/auth/me").await, 401, "not_authenticated").await;
    assert_eq!(one.get("/auth/me").await.status(), 200);
    assert_error(
        one.delete(&format!("/auth/sessions/{id}")).await,
        404,
        "session_not_found",
    )
    .await;
}

#[tokio::test]
async fn nobody_revokes_another_users_session() {
    let app = TestApp::spawn().await;
    let alice = app.signed_up("alice", PASSWORD).await;
    let bob = app.signed_up("bob", PASSWORD).await;
    let body: Value = bob.get("/auth/sessions").await.json().await.expect("json");
    let bobs = body["sessions"][0]["id"].as_str().expect("id").to_owned();
    assert_error(
        alice.delete(&format!("/auth/sessions/{bobs}")).await,
        404,
        "session_not_found",
    )
    .await;
    assert_error(
        alice.delete("/auth/sessions/not-hex").await,
        404,
        "session_not_found",
    )
    .await;
    assert_eq!(bob.get("/auth/me").await.status(), 200);
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_user() {
    let app = TestApp::spawn().await;
    let one = app.signed_up("carl", PASSWORD).await;
    let mut two = app.client();
    two.login_ok("carl", PASSWORD).await;
    let bystander = app.signed_up("dora", PASSWORD).await;
    assert_eq!(one.post("/auth/logout-all").await.status(), 204);
    assert_error(one.get("/auth/me").await, 401, "not_authenticated").await;
    assert_error(two.get("/auth/me").await, 401, "not_authenticated").await;
    assert_eq!(bystander.get("/auth/me").await.status(), 200);
}

#[tokio::test]
async fn listing_needs_a_login() {
    let app = TestApp::spawn().await;
    assert_error(
        app.client().get("/auth/sessions").await,
        401,
        "not_authenticated",
    )
    .await;
}
