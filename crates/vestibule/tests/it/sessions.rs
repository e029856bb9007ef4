//! Listing and revoking a user's sessions.

use serde_json::Value;

use crate::support::{COOKIE, PASSWORD, TestApp, assert_error, set_cookie_value, set_cookies};

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
    assert_eq!(other["user_agent"], "vestibule-tests");
    assert_eq!(
        other["browser"], "vestibule-tests",
        "a label beside the raw string"
    );
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

/// A durable store that counts its loads (to see what a cache in front of it served).
#[derive(Debug, Default)]
struct CountingLoads {
    inner: vestibule::session::stores::MemoryStore,
    loads: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl vestibule::session::SessionStore for CountingLoads {
    async fn create(
        &self,
        r: &vestibule::session::Record,
    ) -> Result<(), vestibule::session::StoreError> {
        self.inner.create(r).await
    }
    async fn load_latest(
        &self,
        k: &vestibule::token::TokenHash,
    ) -> Result<Option<std::sync::Arc<vestibule::session::Record>>, vestibule::session::StoreError>
    {
        self.inner.load_latest(k).await
    }
    async fn load(
        &self,
        k: &vestibule::token::TokenHash,
    ) -> Result<Option<std::sync::Arc<vestibule::session::Record>>, vestibule::session::StoreError>
    {
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.load(k).await
    }
    async fn save(
        &self,
        k: &vestibule::token::TokenHash,
        d: &vestibule::session::Delta,
    ) -> Result<std::sync::Arc<vestibule::session::Record>, vestibule::session::StoreError> {
        self.inner.save(k, d).await
    }
    async fn delete(
        &self,
        k: &vestibule::token::TokenHash,
    ) -> Result<bool, vestibule::session::StoreError> {
        self.inner.delete(k).await
    }
    async fn list_user(
        &self,
        u: i64,
    ) -> Result<Vec<vestibule::session::Record>, vestibule::session::StoreError> {
        self.inner.list_user(u).await
    }
    async fn delete_user(
        &self,
        u: i64,
        keep: Option<&vestibule::token::TokenHash>,
    ) -> Result<Vec<vestibule::token::TokenHash>, vestibule::session::StoreError> {
        self.inner.delete_user(u, keep).await
    }
    async fn revoke(
        &self,
        what: vestibule::session::Revoke<'_>,
    ) -> Result<vestibule::session::Ended, vestibule::session::StoreError> {
        self.inner.revoke(what).await
    }
    async fn delete_expired(&self) -> Result<u64, vestibule::session::StoreError> {
        self.inner.delete_expired().await
    }
    async fn ping(&self) -> Result<(), vestibule::session::StoreError> {
        Ok(())
    }
    async fn count(&self) -> Result<u64, vestibule::session::StoreError> {
        self.inner.count().await
    }
}

fn store_record(user_id: Option<i64>) -> vestibule::session::Record {
    let t = vestibule::session::now();
    vestibule::session::Record {
        key: vestibule::token::SecretToken::generate(vestibule::token::TokenKind::Session).hash(),
        user_id,
        user: None,
        data: serde_json::Map::new(),
        created_at: t,
        last_seen: t,
        expires_at: t + 900,
        absolute_expires_at: t + 3600,
        user_agent: None,
    }
}

/// 3,000 anonymous sessions against a capacity of 16 evict no logged-in session: not from the
/// memory store (where eviction is the end of the session), not from the read cache (where it
/// would send every login to the durable store).
#[tokio::test]
async fn a_flood_of_anonymous_sessions_never_evicts_a_login() {
    use vestibule::session::SessionStore;
    use vestibule::session::stores::{CachedStore, MemoryStore};
    let memory = MemoryStore::new(16);
    let cached = CachedStore::new(CountingLoads::default(), 16);
    let logins: Vec<_> = (0..8).map(|u| store_record(Some(u))).collect();
    for r in &logins {
        memory.create(r).await.expect("create");
        cached.create(r).await.expect("create");
    }
    for _ in 0..3_000 {
        let r = store_record(None);
        memory.create(&r).await.expect("create");
        cached.create(&r).await.expect("create");
        // Anonymous sessions are read too (the demo counter, a passkey ceremony).
        assert!(cached.load(&r.key).await.expect("load").is_some());
    }
    memory.delete_expired().await.expect("housekeeping");
    let before = cached
        .durable()
        .loads
        .load(std::sync::atomic::Ordering::SeqCst);
    for r in &logins {
        assert!(
            memory.load(&r.key).await.expect("load").is_some(),
            "a login was evicted from the memory store"
        );
        assert!(cached.load(&r.key).await.expect("load").is_some());
    }
    let after = cached
        .durable()
        .loads
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(after, before, "logins were evicted from the read cache");
}

/// A session with no logged-in user lives `session.anonymous_timeout` (15 minutes by default),
/// sliding with use; a login gets the full idle timeout.
#[tokio::test]
async fn anonymous_sessions_get_the_short_lifetime_and_logins_the_idle_timeout() {
    use axum::routing::post;
    use vestibule::session::stores::MemoryStore;
    use vestibule::session::{Session, SessionConfig, SessionLayer, SessionManager};
    let store = std::sync::Arc::new(MemoryStore::new(100));
    let manager = SessionManager::new(store.clone(), SessionConfig::default());
    let router = axum::Router::new()
        .route(
            "/w",
            post(|s: Session| async move {
                s.insert("k", 1).await?;
                Ok::<_, vestibule::Error>(())
            }),
        )
        .layer(SessionLayer::new(manager));
    let base = crate::support::serve_router(router).await;
    let res = reqwest::Client::new()
        .post(format!("{base}/w"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let max_age = set_cookies(&res)
        .iter()
        .find_map(|c| c.split("Max-Age=").nth(1).map(str::to_owned))
        .and_then(|v| v.split(';').next().and_then(|v| v.parse::<i64>().ok()))
        .expect("Max-Age");
    assert!(
        (1..=900).contains(&max_age),
        "anonymous cookie Max-Age {max_age}"
    );
    let records = store.snapshot().await;
    assert_eq!(records.len(), 1);
    let left = records[0].expires_at - vestibule::session::now();
    assert!((1..=900).contains(&left), "anonymous record lives {left}s");

    // A login on a real server keeps the idle timeout (14 days by default).
    let app = TestApp::spawn_with(|raw| {
        raw.session.store = vestibule::config::RawStore::One("memory".into());
    })
    .await;
    let user = cookie_of_new_user(&app, "ann").await;
    let key = vestibule::token::SecretToken::parse(vestibule::token::TokenKind::Session, &user)
        .expect("token")
        .hash();
    let login = app
        .state
        .sessions
        .store()
        .load(&key)
        .await
        .expect("load")
        .expect("login");
    assert!(login.expires_at - vestibule::session::now() > 13 * 86_400);
}
