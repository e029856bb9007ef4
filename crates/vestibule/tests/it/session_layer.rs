//! The session middleware on its own, embedded in a plain axum app as a library user would.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use vestibule::db::Database;
use vestibule::session::stores::{CachedStore, MemoryStore, SqliteStore};
use vestibule::session::{
    Delta, Record, Session, SessionConfig, SessionLayer, SessionManager, SessionStore, StoreError,
};
use vestibule::token::{SecretToken, TokenHash, TokenKind};

use crate::support::{COOKIE, serve_router, set_cookie_value};

/// Counts writes, to prove which requests cause none.
#[derive(Debug, Default)]
struct Counting {
    inner: MemoryStore,
    creates: AtomicU64,
    saves: AtomicU64,
}

#[async_trait]
impl SessionStore for Counting {
    async fn create(&self, r: &Record) -> Result<(), StoreError> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        self.inner.create(r).await
    }
    async fn load(&self, k: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        self.inner.load(k).await
    }
    async fn load_latest(&self, k: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        self.inner.load_latest(k).await
    }
    async fn save(&self, k: &TokenHash, d: &Delta) -> Result<Arc<Record>, StoreError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.inner.save(k, d).await
    }
    async fn delete(&self, k: &TokenHash) -> Result<bool, StoreError> {
        self.inner.delete(k).await
    }
    async fn list_user(&self, u: i64) -> Result<Vec<Record>, StoreError> {
        self.inner.list_user(u).await
    }
    async fn delete_user(
        &self,
        u: i64,
        keep: Option<&TokenHash>,
    ) -> Result<Vec<TokenHash>, StoreError> {
        self.inner.delete_user(u, keep).await
    }
    async fn revoke(
        &self,
        what: vestibule::session::Revoke<'_>,
    ) -> Result<vestibule::session::Ended, StoreError> {
        self.inner.revoke(what).await
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.inner.delete_expired().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn count(&self) -> Result<u64, StoreError> {
        self.inner.count().await
    }
}

async fn set_key(
    session: Session,
    Path((k, v)): Path<(String, i64)>,
) -> Result<StatusCode, vestibule::Error> {
    session.insert(&k, v).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_key(session: Session, Path(k): Path<String>) -> Result<String, vestibule::Error> {
    Ok(session
        .get::<i64>(&k)
        .await?
        .map(|v| v.to_string())
        .unwrap_or_default())
}

async fn poll(session: Session) -> Result<String, vestibule::Error> {
    session.skip_touch().await;
    Ok(session
        .get::<i64>("a")
        .await?
        .map(|v| v.to_string())
        .unwrap_or_default())
}

async fn fail_after_write(session: Session) -> Result<StatusCode, vestibule::Error> {
    session.insert("half", 1).await?;
    Ok(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Simulates a logout elsewhere that lands while this request runs.
async fn deleted_meanwhile(
    State(store): State<Arc<Counting>>,
    session: Session,
) -> Result<StatusCode, vestibule::Error> {
    let id = session.id().await?.expect("a session");
    store.delete(&id).await.expect("delete");
    session.insert("late", 1).await?;
    Ok(StatusCode::OK)
}

struct Fixture {
    base: String,
    store: Arc<Counting>,
    http: reqwest::Client,
}

async fn fixture(config: SessionConfig) -> Fixture {
    let store = Arc::new(Counting::default());
    let manager = SessionManager::new(store.clone(), config);
    let router = Router::new()
        .route("/set/{k}/{v}", post(set_key))
        .route("/get/{k}", get(get_key))
        .route("/poll", get(poll))
        .route("/fail", post(fail_after_write))
        .route("/deleted", post(deleted_meanwhile))
        .with_state(store.clone())
        .layer(SessionLayer::new(manager));
    let base = serve_router(router).await;
    Fixture {
        base,
        store,
        http: reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .expect("client"),
    }
}

impl Fixture {
    async fn send(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.http
            .request(method, format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
    }
}

#[tokio::test]
async fn fifty_concurrent_requests_writing_different_keys_lose_none() {
    let f = fixture(SessionConfig::default()).await;
    assert_eq!(
        f.send(reqwest::Method::POST, "/set/seed/0").await.status(),
        204
    );
    let mut tasks = Vec::new();
    for i in 0..50 {
        let req = f.http.post(format!("{}/set/k{i}/{i}", f.base));
        tasks.push(tokio::spawn(async move {
            req.send().await.expect("request").status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 204);
    }
    for i in 0..50 {
        let body = f
            .send(reqwest::Method::GET, &format!("/get/k{i}"))
            .await
            .text()
            .await
            .expect("body");
        assert_eq!(body, i.to_string(), "k{i} lost");
    }
    assert_eq!(
        f.store.creates.load(Ordering::SeqCst),
        1,
        "one session, not fifty"
    );
}

#[tokio::test]
async fn reading_a_session_writes_nothing_and_sends_no_cookie() {
    let f = fixture(SessionConfig::default()).await;
    f.send(reqwest::Method::POST, "/set/a/1").await;
    let saves = f.store.saves.load(Ordering::SeqCst);
    for _ in 0..5 {
        let res = f.send(reqwest::Method::GET, "/get/a").await;
        assert!(set_cookie_value(&res, COOKIE).is_none());
        assert_eq!(res.text().await.expect("body"), "1");
    }
    assert_eq!(f.store.saves.load(Ordering::SeqCst), saves);
}

#[tokio::test]
async fn anonymous_reads_create_nothing() {
    let f = fixture(SessionConfig::default()).await;
    for _ in 0..20 {
        let res = f.send(reqwest::Method::GET, "/get/a").await;
        assert!(set_cookie_value(&res, COOKIE).is_none());
    }
    assert_eq!(f.store.creates.load(Ordering::SeqCst), 0);
    assert_eq!(f.store.count().await.expect("count"), 0);
}

#[tokio::test]
async fn a_5xx_response_saves_nothing() {
    let f = fixture(SessionConfig::default()).await;
    let res = f.send(reqwest::Method::POST, "/fail").await;
    assert_eq!(res.status(), 500);
    assert!(set_cookie_value(&res, COOKIE).is_none());
    assert_eq!(f.store.count().await.expect("count"), 0);
}

#[tokio::test]
async fn a_session_deleted_during_the_request_ends_in_401_not_resurrection() {
    let f = fixture(SessionConfig::default()).await;
    f.send(reqwest::Method::POST, "/set/a/1").await;
    let res = f.send(reqwest::Method::POST, "/deleted").await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        set_cookie_value(&res, COOKIE).as_deref(),
        Some(""),
        "cookie cleared"
    );
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["code"], "session_expired");
    assert_eq!(f.store.count().await.expect("count"), 0, "not resurrected");
}

#[tokio::test]
async fn expiry_extension_is_throttled_and_pollers_can_skip_it() {
    let config = SessionConfig {
        touch_interval: Duration::from_secs(60),
        ..SessionConfig::default()
    };
    let f = fixture(config).await;
    f.send(reqwest::Method::POST, "/set/a/1").await;
    // Age the record's last_seen past the touch interval.
    let records = f.store.inner.snapshot().await;
    assert_eq!(records.len(), 1);
    let r = &records[0];
    let old = vestibule::session::now() - 120;
    f.store
        .inner
        .save(
            &r.key,
            &Delta {
                last_seen: old,
                expires_at: r.expires_at,
                ..Delta::default()
            },
        )
        .await
        .expect("age");
    let before = f.store.saves.load(Ordering::SeqCst);
    let polled = f.send(reqwest::Method::GET, "/poll").await;
    assert!(
        set_cookie_value(&polled, COOKIE).is_none(),
        "a poller does not slide the expiry"
    );
    let polled = f
        .http
        .get(format!("{}/get/a", f.base))
        .header(vestibule::session::NO_TOUCH_HEADER, "1")
        .send()
        .await
        .expect("request");
    assert!(
        set_cookie_value(&polled, COOKIE).is_none(),
        "nor does a request that asks by header"
    );
    assert_eq!(f.store.saves.load(Ordering::SeqCst), before);
    let res = f.send(reqwest::Method::GET, "/get/a").await;
    assert!(
        set_cookie_value(&res, COOKIE).is_some(),
        "cookie Max-Age refreshed"
    );
    assert_eq!(
        f.store.saves.load(Ordering::SeqCst),
        before + 1,
        "one touch"
    );
    for _ in 0..5 {
        f.send(reqwest::Method::GET, "/get/a").await;
    }
    assert_eq!(
        f.store.saves.load(Ordering::SeqCst),
        before + 1,
        "throttled: no more touches"
    );
}

#[tokio::test]
async fn unknown_and_expired_cookies_are_no_session_and_never_adopted() {
    let f = fixture(SessionConfig::default()).await;
    let raw = reqwest::Client::new();
    let forged = SecretToken::generate(TokenKind::Session);
    let res = raw
        .post(format!("{}/set/a/5", f.base))
        .header("cookie", format!("{COOKIE}={}", forged.expose()))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 204);
    let issued = set_cookie_value(&res, COOKIE).expect("a new session cookie");
    assert_ne!(issued, forged.expose(), "the unknown id is not adopted");
    assert_eq!(f.store.load(&forged.hash()).await.expect("load"), None);
}

fn key_router(store: Arc<dyn SessionStore>) -> Router {
    let manager = SessionManager::new(store, SessionConfig::default());
    Router::new()
        .route("/set/{k}/{v}", post(set_key))
        .route("/get/{k}", get(get_key))
        .route("/free", get(|| async { "no session needed" }))
        .layer(SessionLayer::new(manager))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_on_the_default_store_lose_no_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Database::open(&dir.path().join("s.db")).await.expect("db");
    let durable = SqliteStore::new(db);
    let store = Arc::new(CachedStore::new(durable.clone(), 1000));
    let base = serve_router(key_router(store)).await;
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    let seeded = http
        .post(format!("{base}/set/seed/0"))
        .send()
        .await
        .expect("request");
    assert_eq!(seeded.status(), 204);
    let token = set_cookie_value(&seeded, COOKIE).expect("session cookie");
    let key = SecretToken::parse(TokenKind::Session, &token)
        .expect("token")
        .hash();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let req = http.post(format!("{base}/set/k{i}/{i}"));
        tasks.push(tokio::spawn(async move {
            req.send().await.expect("request").status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 204);
    }
    // Read the record back from SQLite itself, not through the cache.
    assert_eq!(durable.count().await.expect("count"), 1, "one session");
    let record = durable.load(&key).await.expect("load").expect("exists");
    for i in 0..50 {
        assert_eq!(
            record.data.get(&format!("k{i}")),
            Some(&serde_json::json!(i)),
            "k{i} lost"
        );
    }
}

/// A store that is down: every call fails as unreachable.
#[derive(Debug)]
struct Down;

fn down() -> StoreError {
    StoreError::unavailable(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "store down",
    ))
}

#[async_trait]
impl SessionStore for Down {
    async fn create(&self, _: &Record) -> Result<(), StoreError> {
        Err(down())
    }
    async fn load(&self, _: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        Err(down())
    }
    async fn load_latest(&self, _: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        Err(down())
    }
    async fn save(&self, _: &TokenHash, _: &Delta) -> Result<Arc<Record>, StoreError> {
        Err(down())
    }
    async fn delete(&self, _: &TokenHash) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn list_user(&self, _: i64) -> Result<Vec<Record>, StoreError> {
        Err(down())
    }
    async fn delete_user(
        &self,
        _: i64,
        _: Option<&TokenHash>,
    ) -> Result<Vec<TokenHash>, StoreError> {
        Err(down())
    }
    async fn revoke(
        &self,
        _: vestibule::session::Revoke<'_>,
    ) -> Result<vestibule::session::Ended, StoreError> {
        Err(down())
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Err(down())
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Err(down())
    }
    async fn count(&self) -> Result<u64, StoreError> {
        Err(down())
    }
}

#[tokio::test]
async fn a_store_that_is_down_gives_503_and_routes_without_sessions_keep_working() {
    let base = serve_router(key_router(Arc::new(Down))).await;
    let http = reqwest::Client::new();
    let token = SecretToken::generate(TokenKind::Session);
    let cookie = format!("{COOKIE}={}", token.expose());
    let reads = http.get(format!("{base}/get/a")).header("cookie", &cookie);
    let writes = http.post(format!("{base}/set/a/1"));
    for req in [reads, writes] {
        let res = req.send().await.expect("request");
        assert_eq!(res.status(), 503);
        let body: serde_json::Value = res.json().await.expect("json");
        assert_eq!(body["code"], "store_unavailable");
        let message = body["message"].as_str().unwrap_or("");
        assert!(!message.contains("store down"), "internals are not sent");
    }
    let res = http
        .get(format!("{base}/free"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
}
