//! Personal access tokens: creation, listing, scopes, revocation.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{PASSWORD, TestApp, TestClient, assert_bearer_error, assert_error};

async fn create(c: &mut TestClient, body: Value) -> reqwest::Response {
    c.post_json("/auth/tokens", &body).await
}

/// Creates a token and returns only its secret.
async fn create_secret(c: &mut TestClient, body: Value) -> String {
    c.create_token(&body).await
}

async fn create_ok(c: &mut TestClient, body: Value) -> Value {
    let res = create(c, body).await;
    assert_eq!(res.status(), 201);
    res.json().await.expect("json")
}

#[tokio::test]
async fn a_token_is_shown_once_listed_without_its_secret_and_authenticates() {
    let app = TestApp::spawn().await;
    let mut c = app.signed_up("alice", PASSWORD).await;
    let created = create_ok(&mut c, json!({"name": "deploy script"})).await;
    let token = created["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("vpat_"));
    assert_eq!(created["scopes"], json!(["read"]), "read-only unless asked");
    assert!(token.starts_with(created["prefix"].as_str().expect("prefix")));
    assert!(created["expires_at"].as_str().is_some());
    let list: Value = c.get("/auth/tokens").await.json().await.expect("json");
    let listed = &list["tokens"][0];
    assert_eq!(listed["name"], "deploy script");
    assert!(listed.get("token").is_none(), "the secret is never listed");
    assert!(!list.to_string().contains(&token[5..]));
    let me = app
        .with_bearer(Method::GET, "/auth/me", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(me.status(), 200);
    assert_eq!(
        me.json::<Value>().await.expect("json")["user"]["username"],
        "alice"
    );
}

#[tokio::test]
async fn a_read_token_cannot_write_and_a_write_token_has_no_session() {
    let app = TestApp::spawn().await;
    let mut c = app.signed_up("bob", PASSWORD).await;
    let read = create_secret(&mut c, json!({"name": "ro"})).await;
    let rw = create_secret(&mut c, json!({"name": "rw", "scopes": ["read", "write"]})).await;
    let res = app
        .with_bearer(Method::POST, "/demo/counter", &read)
        .send()
        .await
        .expect("request");
    assert_bearer_error(res, 403, "insufficient_scope", "insufficient_scope").await;
    let res = app
        .with_bearer(Method::POST, "/demo/counter", &rw)
        .send()
        .await
        .expect("request");
    assert_error(res, 400, "session_unavailable").await;
    let res = app
        .with_bearer(Method::GET, "/auth/me", &read)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200, "reads are fine");
    // Except the account's security data (issue 21 item 8; every such route is in
    // account::access_tokens_are_refused_on_every_account_security_route).
    let res = app
        .with_bearer(Method::GET, "/auth/sessions", &read)
        .send()
        .await
        .expect("request");
    assert_error(res, 403, "session_required").await;
}

#[tokio::test]
async fn access_tokens_cannot_manage_the_account() {
    let app = TestApp::spawn().await;
    let mut c = app.signed_up("carol", PASSWORD).await;
    let rw = create_secret(&mut c, json!({"name": "rw", "scopes": ["write", "read"]})).await;
    for (method, path, body) in [
        (Method::POST, "/auth/tokens", json!({"name": "escalate"})),
        (Method::GET, "/auth/tokens", json!(null)),
        (
            Method::POST,
            "/auth/password",
            json!({"current_password": PASSWORD, "new_password": "hijacked pw"}),
        ),
        (Method::POST, "/auth/logout-all", json!(null)),
    ] {
        let mut req = app.with_bearer(method, path, &rw);
        if !body.is_null() {
            req = req.json(&body);
        }
        assert_error(req.send().await.expect("request"), 403, "session_required").await;
    }
}

#[tokio::test]
async fn revocation_takes_effect_on_the_next_request_and_is_scoped_to_the_owner() {
    let app = TestApp::spawn().await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let mut bob = app.signed_up("bob", PASSWORD).await;
    let created = create_ok(&mut alice, json!({"name": "ci"})).await;
    let token = created["token"].as_str().expect("t").to_owned();
    let id = created["id"].as_i64().expect("id");
    assert_error(
        bob.delete(&format!("/auth/tokens/{id}")).await,
        404,
        "token_not_found",
    )
    .await;
    assert_error(
        bob.delete("/auth/tokens/not-a-number").await,
        404,
        "token_not_found",
    )
    .await;
    assert_eq!(
        app.with_bearer(Method::GET, "/auth/me", &token)
            .send()
            .await
            .expect("r")
            .status(),
        200
    );
    assert_eq!(
        alice.delete(&format!("/auth/tokens/{id}")).await.status(),
        204
    );
    let res = app
        .with_bearer(Method::GET, "/auth/me", &token)
        .send()
        .await
        .expect("request");
    assert_error(res, 401, "invalid_token").await;
    let _ = &mut bob;
}

#[tokio::test]
async fn creation_input_is_validated() {
    let app = TestApp::spawn().await;
    let mut c = app.signed_up("dora", PASSWORD).await;
    assert_error(
        create(&mut c, json!({"name": ""})).await,
        422,
        "invalid_body",
    )
    .await;
    assert_error(
        create(&mut c, json!({"name": "x", "expires_in_days": 0})).await,
        422,
        "invalid_body",
    )
    .await;
    assert_error(
        create(&mut c, json!({"name": "x", "expires_in_days": 10_000})).await,
        422,
        "invalid_body",
    )
    .await;
    assert_error(
        create(&mut c, json!({"name": "x", "scopes": ["admin"]})).await,
        422,
        "invalid_body",
    )
    .await;
    assert_error(
        create(&mut c, json!({"name": "x", "scopes": []})).await,
        422,
        "invalid_body",
    )
    .await;
    let anon = app.client();
    assert_error(anon.post("/auth/tokens").await, 401, "not_authenticated").await;
}

#[tokio::test]
async fn the_per_user_limit_is_enforced() {
    let app = TestApp::spawn().await;
    let mut c = app.signed_up("eve", PASSWORD).await;
    for i in 0..50 {
        create_ok(&mut c, json!({"name": format!("t{i}")})).await;
    }
    assert_error(
        create(&mut c, json!({"name": "one too many"})).await,
        409,
        "token_limit_reached",
    )
    .await;
}

#[tokio::test]
async fn password_change_and_disabling_the_user_stop_access_tokens() {
    let app = TestApp::spawn().await;
    let mut c = app.signed_up("fred", PASSWORD).await;
    let token = create_secret(&mut c, json!({"name": "t"})).await;
    let res = c
        .post_json(
            "/auth/password",
            &json!({"current_password": PASSWORD, "new_password": "brand new pw"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    c.csrf = body["csrf_token"].as_str().map(str::to_owned);
    assert_error(
        app.with_bearer(Method::GET, "/auth/me", &token)
            .send()
            .await
            .expect("r"),
        401,
        "invalid_token",
    )
    .await;

    let token = create_secret(&mut c, json!({"name": "t2"})).await;
    let user = app
        .state
        .users
        .by_username("fred")
        .await
        .expect("q")
        .expect("exists");
    app.state
        .users
        .set_active(user.id, false)
        .await
        .expect("disable");
    assert_error(
        app.with_bearer(Method::GET, "/auth/me", &token)
            .send()
            .await
            .expect("r"),
        401,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn only_the_hash_of_a_token_is_stored() {
    let app = TestApp::spawn().await;
    let mut c = app.signed_up("gus", PASSWORD).await;
    let token = create_secret(&mut c, json!({"name": "t"})).await;
    let db = std::fs::read(app.dir.path().join("vestibule.db")).expect("db");
    let wal = std::fs::read(app.dir.path().join("vestibule.db-wal")).unwrap_or_default();
    let needle = &token.as_bytes()[5..30];
    for hay in [&db, &wal] {
        assert!(
            !hay.windows(needle.len()).any(|w| w == needle),
            "token text found in the database"
        );
    }
}
