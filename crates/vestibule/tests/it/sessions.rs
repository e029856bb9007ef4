//! Listing and revoking a user's sessions.

use serde_json::Value;

use crate::support::{COOKIE, PASSWORD, TestApp, assert_error, set_cookie_value};

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

/// Starts an upstream that answers every request with the `Cookie` headers it received.
async fn cookie_echo() -> String {
    use axum::http::HeaderMap;
    let router = axum::Router::new().fallback(|headers: HeaderMap| async move {
        headers
            .get_all("cookie")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(" | ")
    });
    crate::support::serve_router(router).await
}

/// Every cookie Vestibule owns — the session cookie and the login rate limit's device cookie —
/// is stripped before a request reaches an upstream, in every `Cookie` header; the app's own
/// cookies pass. (The device cookie used to pass.)
#[tokio::test]
async fn the_gateway_strips_the_session_and_device_cookies_before_an_upstream() {
    use vestibule::proxy::{RawUpstream, UpstreamPolicy};
    let url = cookie_echo().await;
    let app = TestApp::spawn_with(|raw| {
        raw.upstream = vec![RawUpstream {
            prefix: "/api".into(),
            url,
            policy: UpstreamPolicy::AnonymousOk,
            ..RawUpstream::default()
        }];
    })
    .await;
    let session = cookie_of_new_user(&app, "gus").await;
    let res = app
        .raw_client()
        .get(app.url("/api/x"))
        .header(
            "cookie",
            format!("theme=dark; {COOKIE}={session}; vestibule_device=1.abc"),
        )
        .header("cookie", "vestibule_device=2.def; lang=en")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let seen = res.text().await.expect("body");
    assert_eq!(seen, "theme=dark; lang=en", "the upstream saw: {seen}");
}

/// A session cookie value (a server-side store) for a new account `name`.
async fn cookie_of_new_user(app: &TestApp, name: &str) -> String {
    let res = app
        .post_anon(
            "/auth/signup",
            &serde_json::json!({"username": name, "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), 201);
    set_cookie_value(&res, COOKIE).expect("session cookie")
}

async fn me_with(app: &TestApp, cookie_header: &str) -> (u16, Value) {
    let res = app
        .raw_client()
        .get(app.url("/auth/me"))
        .header("cookie", cookie_header)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Cookie tossing: a sibling subdomain can plant a second cookie of the session's name, which the
/// browser may send first. A dead cookie first must not log the owner out, and an attacker's
/// live session first must not answer as the attacker (live sessions of two users: neither is
/// used). Run on a server-side store and on the cookie store.
#[tokio::test]
async fn two_session_cookies_of_one_name_the_live_one_wins_and_two_accounts_are_refused() {
    for cookie_store in [false, true] {
        let app = TestApp::spawn_with(|raw| {
            if cookie_store {
                use base64::Engine;
                raw.session.store = vestibule::config::RawStore::One("cookie".into());
                raw.session.cookie_keys = vestibule::config::SecretList(vec![
                    base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
                ]);
            }
        })
        .await;
        let victim = cookie_of_new_user(&app, "victim").await;
        let attacker = cookie_of_new_user(&app, "attacker").await;
        let dead = if cookie_store {
            // Well-formed but not authentic.
            "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned()
        } else {
            // Well-formed, checksummed, and no session.
            vestibule::token::SecretToken::generate(vestibule::token::TokenKind::Session)
                .expose()
                .to_owned()
        };
        let (status, body) = me_with(&app, &format!("{COOKIE}={dead}; {COOKIE}={victim}")).await;
        assert_eq!(
            status, 200,
            "cookie store {cookie_store}: dead cookie first"
        );
        assert_eq!(body["user"]["username"], "victim");
        let (status, body) = me_with(
            &app,
            &format!("{COOKIE}={attacker}; other=1; {COOKIE}={victim}"),
        )
        .await;
        assert_ne!(
            body["user"]["username"], "attacker",
            "cookie store {cookie_store}: the planted session answered"
        );
        assert_eq!(status, 401, "cookie store {cookie_store}: {body}");
        // One cookie alone still works.
        let (status, _) = me_with(&app, &format!("{COOKIE}={victim}")).await;
        assert_eq!(status, 200);
    }
}
