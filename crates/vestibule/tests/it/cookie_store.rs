//! `session.store = "cookie"`: the whole session sealed in the cookie, over real HTTP.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::routing::{get, post};
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use vestibule::config::{RawConfig, SecretList};
use vestibule::session::stores::{
    CookieKey, CookieKeyRing, CookieSessions, Generations, MemoryStore, SealedSession,
};
use vestibule::session::{Session, SessionConfig, SessionLayer, SessionManager, now};
use vestibule::token::{SecretToken, TokenKind};

use crate::support::{
    COOKIE, PASSWORD, TestApp, assert_error, serve_router, set_cookie_value, set_cookies,
    test_raw_config,
};

fn key(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

fn cookie_store(raw: &mut RawConfig, keys: &[u8]) {
    raw.session.store = vestibule::config::RawStore::One("cookie".into());
    raw.session.cookie_keys = SecretList(keys.iter().map(|&b| key(b)).collect());
}

async fn spawn(keys: &[u8]) -> TestApp {
    TestApp::spawn_with(|raw| cookie_store(raw, keys)).await
}

/// Logs `user` in with a jar-less client; returns the sealed cookie and the CSRF token.
async fn login(app: &TestApp, user: &str, password: &str) -> (String, String) {
    let res = app
        .post_anon(
            "/auth/login",
            &json!({"username": user, "password": password}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = set_cookie_value(&res, COOKIE).expect("session cookie");
    let body: Value = res.json().await.expect("json");
    let csrf = body["csrf_token"].as_str().expect("csrf").to_owned();
    (cookie, csrf)
}

async fn me(app: &TestApp, cookie: &str) -> reqwest::Response {
    app.raw_client()
        .get(app.url("/auth/me"))
        .header("cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .expect("request")
}

async fn post_with(
    app: &TestApp,
    path: &str,
    cookie: &str,
    csrf: &str,
    body: &Value,
) -> reqwest::Response {
    app.raw_client()
        .post(app.url(path))
        .header("cookie", format!("{COOKIE}={cookie}"))
        .header("x-csrf-token", csrf)
        .json(body)
        .send()
        .await
        .expect("request")
}

/// The `Set-Cookie` of the session clears it (empty value, `Max-Age=0`).
fn clears_cookie(res: &reqwest::Response) -> bool {
    set_cookies(res)
        .iter()
        .any(|c| c.starts_with(&format!("{COOKIE}=;")) && c.contains("Max-Age=0"))
}

#[tokio::test]
async fn login_me_and_logout_with_nothing_stored_server_side() {
    let app = spawn(&[1]).await;
    let browser = app.signed_up("alice", PASSWORD).await;
    let (cookie, _csrf) = login(&app, "alice", PASSWORD).await;
    assert!(cookie.starts_with("v1."), "a sealed session: {cookie}");
    assert!(!cookie.contains("alice"), "encrypted, not just signed");
    assert!(cookie.len() < 1000, "{}", cookie.len());
    let res = me(&app, &cookie).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["user"]["username"], "alice");
    assert_eq!(app.session_count().await, 0, "the server holds no session");
    // The browser-like client: me, then logout clears the cookie.
    assert_eq!(browser.get("/auth/me").await.status(), StatusCode::OK);
    let res = browser.post("/auth/logout").await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(clears_cookie(&res), "{:?}", set_cookies(&res));
    assert_error(browser.get("/auth/me").await, 401, "not_authenticated").await;
    // Anonymous data travels in the cookie too, and carries over at login.
    let mut c = app.client();
    for expected in 1..=3 {
        c.refresh_csrf().await;
        let res = c.post("/demo/counter").await;
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["counter"], expected);
    }
    c.login_ok("alice", PASSWORD).await;
    let body: Value = c.get("/demo/counter").await.json().await.expect("json");
    assert_eq!(body["counter"], 3);
    assert_eq!(app.session_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn csrf_is_still_enforced() {
    let app = spawn(&[1]).await;
    app.signed_up("bob", PASSWORD).await;
    let (cookie, csrf) = login(&app, "bob", PASSWORD).await;
    let res = app
        .raw_client()
        .post(app.url("/auth/logout-all"))
        .header("cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .expect("request");
    assert_error(res, 403, "csrf_token_missing").await;
    // A token of another session does not do.
    let (_, other_csrf) = login(&app, "bob", PASSWORD).await;
    let res = post_with(&app, "/auth/logout-all", &cookie, &other_csrf, &json!({})).await;
    assert_error(res, 403, "csrf_token_mismatch").await;
    assert_eq!(
        me(&app, &cookie).await.status(),
        StatusCode::OK,
        "not logged out"
    );
    let res = post_with(&app, "/auth/logout-all", &cookie, &csrf, &json!({})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn tampered_truncated_or_foreign_cookies_are_no_session_never_a_500() {
    let app = spawn(&[1]).await;
    app.signed_up("carol", PASSWORD).await;
    let (cookie, _) = login(&app, "carol", PASSWORD).await;
    let mut flipped = cookie.clone().into_bytes();
    let i = flipped.len() / 2;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).expect("ascii");
    let foreign = CookieKeyRing::new(vec![CookieKey::from_secret([9; 32])])
        .expect("ring")
        .seal(
            &SealedSession {
                token: SecretToken::generate(TokenKind::Session)
                    .expose()
                    .to_owned(),
                user_id: Some(1),
                generation: 0,
                data: serde_json::Map::new(),
                created_at: now(),
                last_seen: now(),
                expires_at: now() + 3600,
                absolute_expires_at: now() + 7200,
            },
            COOKIE,
        )
        .expect("seal");
    let bad = [
        flipped,
        cookie[..cookie.len() - 10].to_owned(),
        cookie[..20].to_owned(),
        "v1.".into(),
        "v1.%%%%".into(),
        format!("v2.{}", &cookie[3..]),
        "v1.".to_owned() + &"A".repeat(5000),
        foreign,
        SecretToken::generate(TokenKind::Session)
            .expose()
            .to_owned(),
    ];
    for value in &bad {
        let res = me(&app, value).await;
        assert_error(res, 401, "not_authenticated").await;
        let res = app
            .raw_client()
            .get(app.url("/auth/csrf"))
            .header("cookie", format!("{COOKIE}={value}"))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), StatusCode::OK, "{value}");
    }
    assert_eq!(me(&app, &cookie).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn keys_rotate_without_logging_anyone_out_and_retired_keys_are_refused() {
    let first = spawn(&[1]).await;
    let dir = first.dir.clone();
    first.signed_up("dave", PASSWORD).await;
    let (old_cookie, _) = login(&first, "dave", PASSWORD).await;
    first.stop().await;

    // Key 2 now seals; key 1 still opens.
    let rotated = TestApp::spawn_in(dir.clone(), |raw| cookie_store(raw, &[2, 1])).await;
    let res = me(&rotated, &old_cookie).await;
    assert_eq!(res.status(), StatusCode::OK, "a still-listed key opens");
    let (new_cookie, _) = login(&rotated, "dave", PASSWORD).await;
    rotated.stop().await;

    // Key 1 retired: its cookies are refused (and cleared), the new key's still work.
    let retired = TestApp::spawn_in(dir, |raw| cookie_store(raw, &[2])).await;
    let res = me(&retired, &old_cookie).await;
    assert!(clears_cookie(&res), "{:?}", set_cookies(&res));
    assert_error(res, 401, "not_authenticated").await;
    assert_eq!(me(&retired, &new_cookie).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_all_ends_other_browsers_at_their_next_request() {
    let app = spawn(&[1]).await;
    app.signed_up("erin", PASSWORD).await;
    let (a, a_csrf) = login(&app, "erin", PASSWORD).await;
    let (b, _) = login(&app, "erin", PASSWORD).await;
    assert_eq!(me(&app, &b).await.status(), StatusCode::OK);
    let res = post_with(&app, "/auth/logout-all", &a, &a_csrf, &json!({})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(clears_cookie(&res));
    let res = me(&app, &b).await;
    assert!(clears_cookie(&res), "the dead cookie is cleared");
    assert_error(res, 401, "session_expired").await;
    assert_error(me(&app, &a).await, 401, "session_expired").await;
    // A new login works, with the new generation.
    let (c, _) = login(&app, "erin", PASSWORD).await;
    assert_eq!(me(&app, &c).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn password_change_ends_other_browsers_and_keeps_this_one() {
    let app = spawn(&[1]).await;
    app.signed_up("frank", PASSWORD).await;
    let (a, a_csrf) = login(&app, "frank", PASSWORD).await;
    let (b, _) = login(&app, "frank", PASSWORD).await;
    let new_password = "another good passphrase";
    let res = post_with(
        &app,
        "/auth/password",
        &a,
        &a_csrf,
        &json!({"current_password": PASSWORD, "new_password": new_password}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let a2 = set_cookie_value(&res, COOKIE).expect("re-sealed under a new identity");
    assert_ne!(a2, a);
    let body: Value = res.json().await.expect("json");
    assert_eq!(
        body["ended"],
        json!({"sessions": null, "access_tokens": 0}),
        "the cookie store cannot count the sessions it ended"
    );
    assert_eq!(
        me(&app, &a2).await.status(),
        StatusCode::OK,
        "this browser stays in"
    );
    assert_error(me(&app, &b).await, 401, "session_expired").await;
    assert_error(me(&app, &a).await, 401, "session_expired").await;
}

#[tokio::test]
async fn disabling_a_user_ends_their_cookie_sessions() {
    let app = spawn(&[1]).await;
    app.signed_up("gina", PASSWORD).await;
    let (a, _) = login(&app, "gina", PASSWORD).await;
    let user = app
        .state
        .users
        .by_username("gina")
        .await
        .expect("db")
        .expect("user");
    app.state
        .users
        .set_active(user.id, false)
        .await
        .expect("disable");
    assert_error(me(&app, &a).await, 401, "session_expired").await;
    // Enabling again does not revive the old cookie (the generation moved on).
    app.state
        .users
        .set_active(user.id, true)
        .await
        .expect("enable");
    assert_error(me(&app, &a).await, 401, "session_expired").await;
}

/// Documented behaviour: a copy of a cookie taken before logout still opens until it expires,
/// because the server keeps nothing to forget; only a generation bump (logout-all, password
/// change, disabling) kills every copy.
#[tokio::test]
async fn a_cookie_replayed_after_logout_works_until_the_generation_changes() {
    let app = spawn(&[1]).await;
    app.signed_up("hank", PASSWORD).await;
    let (copy, csrf) = login(&app, "hank", PASSWORD).await;
    let res = post_with(&app, "/auth/logout", &copy, &csrf, &json!({})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(clears_cookie(&res));
    let res = me(&app, &copy).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "stateless: the replay still opens"
    );
    // Logout-all from another session bumps the generation: the copy is dead.
    let (other, other_csrf) = login(&app, "hank", PASSWORD).await;
    let res = post_with(&app, "/auth/logout-all", &other, &other_csrf, &json!({})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_error(me(&app, &copy).await, 401, "session_expired").await;
}

#[tokio::test]
async fn bearer_login_is_refused_clearly() {
    let app = spawn(&[1]).await;
    app.signed_up("ivy", PASSWORD).await;
    let res = app
        .post_anon(
            "/auth/login",
            &json!({"username": "ivy", "password": PASSWORD, "transport": "bearer"}),
        )
        .await;
    assert!(res.headers().get("set-cookie").is_none());
    assert_error(res, 400, "bearer_not_supported").await;
}

#[tokio::test]
async fn the_session_list_shows_the_current_session_only() {
    let app = spawn(&[1]).await;
    app.signed_up("jo", PASSWORD).await;
    let (_other, _) = login(&app, "jo", PASSWORD).await;
    let (cookie, csrf) = login(&app, "jo", PASSWORD).await;
    let res = app
        .raw_client()
        .get(app.url("/auth/sessions"))
        .header("cookie", format!("{COOKIE}={cookie}"))
        .header("user-agent", "jo-browser")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    let list = body["sessions"].as_array().expect("list");
    assert_eq!(list.len(), 1, "{body}");
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[0]["user_agent"], "jo-browser");
    let id = list[0]["id"].as_str().expect("id");
    let res = app
        .raw_client()
        .delete(app.url(&format!("/auth/sessions/{id}")))
        .header("cookie", format!("{COOKIE}={cookie}"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(clears_cookie(&res));
}

#[tokio::test]
async fn the_cookie_store_needs_keys_and_validates_them() {
    let mut raw = test_raw_config();
    raw.database_url = "unused.db".into();
    raw.session.store = vestibule::config::RawStore::One("cookie".into());
    let err = raw.clone().validate().expect_err("no key");
    let text = err.to_string();
    assert!(
        text.contains("session.cookie_keys") && text.contains("openssl rand"),
        "{text}"
    );
    raw.session.cookie_keys = SecretList(vec!["short".into(), key(3)]);
    let text = raw.clone().validate().expect_err("bad key").to_string();
    assert!(text.contains("entry 0"), "{text}");
    assert!(
        !format!("{:?}", raw.session.cookie_keys).contains(&key(3)),
        "Debug is redacted"
    );
    // secret_key alone derives a key.
    raw.session.cookie_keys = SecretList::default();
    raw.secret_key = Some(vestibule::config::SecretString("s".repeat(40)));
    let config = raw.validate().expect("derived key");
    assert!(
        !format!("{config:?}").contains(&"s".repeat(40)),
        "no secret in Debug"
    );
    assert_eq!(config.cookie_keys.expect("ring").len(), 1);
}

#[tokio::test]
async fn a_server_keyed_by_secret_key_alone_serves_cookie_sessions() {
    let app = TestApp::spawn_with(|raw| {
        raw.session.store = vestibule::config::RawStore::One("cookie".into());
        raw.secret_key = Some(vestibule::config::SecretString("k".repeat(40)));
    })
    .await;
    app.signed_up("kim", PASSWORD).await;
    let (cookie, _) = login(&app, "kim", PASSWORD).await;
    assert_eq!(me(&app, &cookie).await.status(), StatusCode::OK);
}

/// Generations for a library-level server without users: nobody's sessions are revoked.
#[derive(Debug)]
struct Gen0;

#[async_trait::async_trait]
impl Generations for Gen0 {
    async fn current(&self, _user_id: i64) -> Result<Option<u64>, vestibule::Error> {
        Ok(Some(0))
    }
    async fn bump(&self, _user_id: i64) -> Result<(), vestibule::Error> {
        Ok(())
    }
}

fn ring() -> CookieKeyRing {
    CookieKeyRing::new(vec![CookieKey::from_secret([5; 32])]).expect("ring")
}

async fn put_blob(session: Session, Path(n): Path<usize>) -> Result<StatusCode, vestibule::Error> {
    session.insert("blob", "x".repeat(n)).await?;
    Ok(StatusCode::OK)
}

async fn get_blob(session: Session) -> Result<String, vestibule::Error> {
    Ok(session
        .get::<String>("blob")
        .await?
        .map_or(0, |b| b.len())
        .to_string())
}

async fn library_server(config: SessionConfig) -> String {
    let manager = SessionManager::new(Arc::new(MemoryStore::default()), config)
        .with_cookie_sessions(CookieSessions::new(ring(), Arc::new(Gen0)));
    let router = Router::new()
        .route("/blob/{n}", post(put_blob))
        .route("/blob", get(get_blob))
        .layer(SessionLayer::new(manager));
    serve_router(router).await
}

#[tokio::test]
async fn a_session_over_the_cookie_limit_is_a_clear_error_not_a_dropped_cookie() {
    let base = library_server(SessionConfig::default()).await;
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{base}/blob/100"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = set_cookie_value(&res, COOKIE).expect("sealed");
    let res = http
        .post(format!("{base}/blob/5000"))
        .header("cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .expect("request");
    assert!(
        set_cookie_value(&res, COOKIE).is_none(),
        "no half-written cookie"
    );
    let body = assert_error(res, 413, "session_too_large").await;
    assert!(
        body["message"].as_str().unwrap_or("").contains("3800"),
        "{body}"
    );
    // The session is what it was before the refused write.
    let res = http
        .get(format!("{base}/blob"))
        .header("cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.text().await.expect("text"), "100");
}

fn sealed(created: i64, last_seen: i64, expires: i64, absolute: i64) -> String {
    let mut data = serde_json::Map::new();
    data.insert("blob".into(), json!("abc"));
    ring()
        .seal(
            &SealedSession {
                token: SecretToken::generate(TokenKind::Session)
                    .expose()
                    .to_owned(),
                user_id: None,
                generation: 0,
                data,
                created_at: created,
                last_seen,
                expires_at: expires,
                absolute_expires_at: absolute,
            },
            COOKIE,
        )
        .expect("seal")
}

#[tokio::test]
async fn idle_and_absolute_expiry_hold_and_the_expiry_slides_by_resealing() {
    let base = library_server(SessionConfig::default()).await;
    let http = reqwest::Client::new();
    let get = |cookie: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            http.get(format!("{base}/blob"))
                .header("cookie", format!("{COOKIE}={cookie}"))
                .send()
                .await
                .expect("request")
        }
    };
    let t = now();
    // Idle expiry passed; absolute expiry passed.
    for dead in [
        sealed(t - 100, t - 100, t - 1, t + 100),
        sealed(t - 100, t - 100, t + 100, t - 1),
    ] {
        let res = get(dead).await;
        assert!(clears_cookie(&res));
        assert_eq!(res.text().await.expect("text"), "0");
    }
    // Fresh: read without a new cookie.
    let res = get(sealed(t, t, t + 3600, t + 7200)).await;
    assert!(
        set_cookie_value(&res, COOKIE).is_none(),
        "a read re-seals nothing"
    );
    assert_eq!(res.text().await.expect("text"), "3");
    // Last extended past the touch interval: re-sealed with a slid expiry, capped at the absolute
    // (an anonymous session slides by `anonymous_timeout`, 15 minutes: the cap is nearer).
    let absolute = t + 600;
    let res = get(sealed(t - 3600, t - 3600, t + 60, absolute)).await;
    let fresh = set_cookie_value(&res, COOKIE).expect("re-sealed");
    let opened = ring().open_unchecked(&fresh, COOKIE).expect("opens");
    assert_eq!(
        opened.expires_at, absolute,
        "idle expiry slid up to the absolute cap"
    );
    assert!(opened.last_seen >= t);
    assert_eq!(opened.data["blob"], "abc");
}

/// The generation column and its queries on PostgreSQL (migration 0003 in its dialect), and two
/// instances sharing only the database and the keys: a logout-all on one is honoured by the other.
#[tokio::test]
async fn generations_work_on_postgres_across_two_instances() {
    let Some(schema) = crate::services::PgSchema::create().await else {
        return;
    };
    let url = schema.url.clone();
    let a = TestApp::spawn_with(|raw| {
        raw.database_url = url.clone();
        cookie_store(raw, &[1]);
    })
    .await;
    let b = TestApp::spawn_with(|raw| {
        raw.database_url = url;
        cookie_store(raw, &[1]);
    })
    .await;
    assert!(a.state.db.is_postgres());
    a.signed_up("pat", PASSWORD).await;
    let (on_a, a_csrf) = login(&a, "pat", PASSWORD).await;
    let (on_b, _) = login(&b, "pat", PASSWORD).await;
    assert_eq!(
        me(&b, &on_a).await.status(),
        StatusCode::OK,
        "a cookie of A opens on B"
    );
    let res = post_with(&a, "/auth/logout-all", &on_a, &a_csrf, &json!({})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_error(me(&b, &on_b).await, 401, "session_expired").await;
    assert_error(me(&a, &on_b).await, 401, "session_expired").await;
}

/// With the cookie store a WebAuthn challenge would live in the sealed cookie, and a copy of
/// the start cookie would hold it after the finish: one passwordless assertion accepted again
/// and again, one registration start finished twice. Passkeys are therefore off on this store,
/// with the reason in the answer: neither a passwordless-login start nor a registration start
/// hands out a cookie that could be replayed. The same configuration on a server-side store
/// starts both ceremonies (so this is the store's doing, not the origin's).
#[tokio::test]
async fn passkey_ceremonies_are_refused_on_the_cookie_store_so_no_start_cookie_can_be_replayed() {
    for cookie in [true, false] {
        let app = TestApp::spawn_with(|raw| {
            raw.public_url = Some("http://localhost:8000".into());
            if cookie {
                cookie_store(raw, &[1]);
            }
        })
        .await;
        let mut alice = app.signed_up("alice", PASSWORD).await;
        let register = alice
            .post_json("/auth/passkeys/register/start", &json!({}))
            .await;
        let login = app.post_anon("/auth/passkey/login/start", &json!({})).await;
        if !cookie {
            assert_eq!(register.status(), StatusCode::OK);
            assert_eq!(login.status(), StatusCode::OK);
            continue;
        }
        for res in [register, login] {
            assert!(
                set_cookie_value(&res, COOKIE).is_none(),
                "no ceremony cookie"
            );
            let body = assert_error(res, 404, "passkeys_unavailable").await;
            assert!(
                body["hint"]
                    .as_str()
                    .is_some_and(|h| h.contains("replayed") && h.contains("server-side")),
                "{body}"
            );
        }
        // The finishes have no challenge to accept anything against.
        let res = app
            .post_anon("/auth/passkey/login/finish", &json!({"credential": {}}))
            .await;
        assert!(res.status().is_client_error(), "{}", res.status());
    }
}
