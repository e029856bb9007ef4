//! One suite every session store passes, stamped per store by `store_suite!`.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use vestibule::db::{Database, DatabaseLocation};
use vestibule::session::stores::{
    CachedStore, Invalidation, MemoryStore, RedisConfig, RedisInvalidation, RedisStore, SqlStore,
    SqliteStore,
};
use vestibule::session::{
    Delta, EndHook, Ended, Record, Revoke, SessionConfig, SessionManager, SessionStore, StoreError,
    now,
};
use vestibule::token::{SecretToken, TokenKind};

use crate::services;

/// A store plus whatever keeps its backing resources alive (and cleans them up when dropped).
pub struct Fixture {
    pub store: Arc<dyn SessionStore>,
    _dir: Option<tempfile::TempDir>,
    _guard: Option<Box<dyn Send + Sync>>,
}

impl Fixture {
    fn new(store: Arc<dyn SessionStore>, dir: Option<tempfile::TempDir>) -> Option<Self> {
        Some(Self {
            store,
            _dir: dir,
            _guard: None,
        })
    }
}

/// A Redis configuration with a fresh prefix whose keys are deleted when the guard drops;
/// `None` (after the skip message) when Redis is unreachable.
pub async fn redis_config() -> Option<(RedisConfig, services::RedisKeysGuard)> {
    let url = services::redis_url();
    if !services::redis_reachable(&url).await {
        return None;
    }
    let mut config = RedisConfig::single(url.clone());
    config.prefix = services::random_prefix();
    let guard = services::RedisKeysGuard {
        urls: vec![url],
        prefix: config.prefix.clone(),
    };
    Some((config, guard))
}

pub async fn redis() -> Option<Fixture> {
    let (config, guard) = redis_config().await?;
    Some(Fixture {
        store: Arc::new(RedisStore::new(&config).expect("redis store")),
        _dir: None,
        _guard: Some(Box::new(guard)),
    })
}

async fn sqlite_db() -> (Database, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Database::open(&dir.path().join("s.db"))
        .await
        .expect("db opens");
    (db, dir)
}

/// A Redis store with the coherent cache in front, as `session.redis_cache = true` builds it.
pub fn cached_redis_store(config: &RedisConfig) -> CachedStore<RedisStore> {
    let store = RedisStore::new(config).expect("redis store");
    let publisher = store.clone();
    CachedStore::coherent(store, 10_000, |handle| {
        let feed: Arc<dyn Invalidation> = RedisInvalidation::start(publisher, config, handle);
        feed
    })
}

pub async fn cached_redis() -> Option<Fixture> {
    let (config, guard) = redis_config().await?;
    Some(Fixture {
        store: Arc::new(cached_redis_store(&config)),
        _dir: None,
        _guard: Some(Box::new(guard)),
    })
}

/// A migrated database in a fresh PostgreSQL schema (dropped with the guard).
pub async fn postgres_db() -> Option<(Database, services::PgSchema)> {
    let schema = services::PgSchema::create().await?;
    let location = DatabaseLocation::parse(&schema.url).expect("postgres url");
    let db = Database::connect(&location, std::time::Duration::from_secs(5))
        .await
        .expect("postgres opens and migrates");
    Some((db, schema))
}

pub async fn postgres() -> Option<Fixture> {
    let (db, schema) = postgres_db().await?;
    Some(Fixture {
        store: Arc::new(SqlStore::new(db)),
        _dir: None,
        _guard: Some(Box::new(schema)),
    })
}

pub async fn cached_postgres() -> Option<Fixture> {
    let (db, schema) = postgres_db().await?;
    Some(Fixture {
        store: Arc::new(CachedStore::new(SqlStore::new(db), 10_000)),
        _dir: None,
        _guard: Some(Box::new(schema)),
    })
}

pub async fn memory() -> Option<Fixture> {
    Fixture::new(Arc::new(MemoryStore::new(10_000)), None)
}

pub async fn sqlite() -> Option<Fixture> {
    let (db, dir) = sqlite_db().await;
    Fixture::new(Arc::new(SqliteStore::new(db)), Some(dir))
}

pub async fn cached_sqlite() -> Option<Fixture> {
    let (db, dir) = sqlite_db().await;
    Fixture::new(
        Arc::new(CachedStore::new(SqliteStore::new(db), 10_000)),
        Some(dir),
    )
}

pub fn record(user_id: Option<i64>, data: Value) -> Record {
    let t = now();
    let data: Map<String, Value> = data.as_object().cloned().unwrap_or_default();
    Record {
        key: SecretToken::generate(TokenKind::Session).hash(),
        user_id,
        user: None,
        data,
        created_at: t,
        last_seen: t,
        expires_at: t + 3600,
        absolute_expires_at: t + 7200,
        user_agent: Some("test-agent".into()),
    }
}

fn delta(set: Value, remove: &[&str]) -> Delta {
    let t = now();
    Delta {
        set: set.as_object().cloned().unwrap_or_default(),
        remove: remove.iter().map(|s| (*s).to_owned()).collect(),
        last_seen: t,
        expires_at: t + 3600,
    }
}

pub async fn create_then_load_round_trips(s: Arc<dyn SessionStore>) {
    let r = record(Some(7), json!({"a": 1, "nested": {"x": [1, 2]}}));
    s.create(&r).await.expect("create");
    assert_eq!(s.load(&r.key).await.expect("load").as_deref(), Some(&r));
    assert_eq!(
        s.load(&record(None, json!({})).key).await.expect("load"),
        None
    );
}

/// `load_latest` answers the record every write left, at once.
pub async fn load_latest_sees_every_write(s: Arc<dyn SessionStore>) {
    let r = record(Some(7), json!({"a": 1}));
    s.create(&r).await.expect("create");
    assert_eq!(
        s.load_latest(&r.key).await.expect("latest").as_deref(),
        Some(&r)
    );
    let merged = s
        .save(&r.key, &delta(json!({"a": 2}), &[]))
        .await
        .expect("save");
    let latest = s
        .load_latest(&r.key)
        .await
        .expect("latest")
        .expect("exists");
    assert_eq!(latest.data, merged.data);
    assert_eq!(
        s.load_latest(&record(None, json!({})).key)
            .await
            .expect("latest"),
        None
    );
}

/// A shared lock is held by one holder at a time, released only by its holder, and taken
/// again once its lifetime is over (a crashed holder cannot keep it). Stores that one process
/// owns answer `Local` every time.
pub async fn shared_locks_exclude_other_holders_and_expire(s: Arc<dyn SessionStore>) {
    use std::time::Duration;
    use vestibule::session::SharedLock;
    let name = format!(
        "test-lock:{}",
        SecretToken::generate(TokenKind::Session).hash().to_hex()
    );
    let first = s
        .try_lock(&name, Duration::from_secs(30))
        .await
        .expect("lock");
    if first == SharedLock::Local {
        assert_eq!(
            s.try_lock(&name, Duration::from_secs(30))
                .await
                .expect("lock"),
            SharedLock::Local
        );
        return;
    }
    assert!(matches!(first, SharedLock::Held(_)), "{first:?}");
    assert_eq!(
        s.try_lock(&name, Duration::from_secs(30))
            .await
            .expect("lock"),
        SharedLock::Busy,
        "one holder at a time"
    );
    // Another holder's release (a guessed or stale value) releases nothing.
    s.unlock(&name, &SharedLock::Held("not-the-holder".into()))
        .await
        .expect("unlock");
    assert_eq!(
        s.try_lock(&name, Duration::from_secs(30))
            .await
            .expect("lock"),
        SharedLock::Busy
    );
    s.unlock(&name, &first).await.expect("unlock");
    let short = s
        .try_lock(&name, Duration::from_millis(200))
        .await
        .expect("lock");
    assert!(matches!(short, SharedLock::Held(_)), "free after release");
    assert_ne!(short, first, "a new holder value each time");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = s
        .try_lock(&name, Duration::from_secs(30))
        .await
        .expect("lock");
    assert!(
        matches!(after, SharedLock::Held(_)),
        "free once expired: {after:?}"
    );
    // The expired holder's late release leaves the new holder's lock alone.
    s.unlock(&name, &short).await.expect("unlock");
    assert_eq!(
        s.try_lock(&name, Duration::from_secs(30))
            .await
            .expect("lock"),
        SharedLock::Busy
    );
    s.unlock(&name, &after).await.expect("unlock");
}

/// A logged-in session's typed user survives the store, and a delta that writes the user's key
/// (a password change's new `auth_time`) changes the user, never the data.
pub async fn a_logged_in_record_keeps_its_user(s: Arc<dyn SessionStore>) {
    use vestibule::session::{AUTH_USER_KEY, SessionUser, Transport};
    let mut r = record(Some(9), json!({"a": 1}));
    let user = SessionUser {
        id: 9,
        username: "zoë".into(),
        auth_time: now() - 5,
        transport: Transport::Bearer,
    };
    r.user = Some(user.clone());
    s.create(&r).await.expect("create");
    assert_eq!(s.load(&r.key).await.expect("load").as_deref(), Some(&r));
    let mut later = user.clone();
    later.auth_time += 5;
    let mut d = delta(json!({}), &[]);
    d.set.insert(AUTH_USER_KEY.into(), later.to_value());
    let merged = s.save(&r.key, &d).await.expect("save");
    assert_eq!(merged.user.as_ref(), Some(&later));
    let loaded = s.load(&r.key).await.expect("load").expect("exists");
    assert_eq!(loaded.user.as_ref(), Some(&later));
    assert!(
        !loaded.data.contains_key(AUTH_USER_KEY),
        "{:?}",
        loaded.data
    );
    assert_eq!(loaded.data["a"], json!(1));
}

/// Records loaded from the store share one copy of a `User-Agent` (the read cache holds up to a
/// million sessions; a copy per session was a fifth of each one's memory).
pub async fn records_share_one_copy_of_a_user_agent(s: Arc<dyn SessionStore>) {
    use vestibule::session::shared_user_agent;
    let ua = "Mozilla/5.0 (conformance) Chrome/156.0.0.0";
    let mut records = Vec::new();
    for _ in 0..2 {
        let mut r = record(Some(11), json!({}));
        r.user_agent = Some(shared_user_agent(ua));
        s.create(&r).await.expect("create");
        records.push(r);
    }
    let mut loaded = Vec::new();
    for r in &records {
        let l = s.load(&r.key).await.expect("load").expect("exists");
        assert_eq!(l.user_agent.as_deref(), Some(ua));
        loaded.push(l.user_agent.clone().expect("user agent"));
    }
    assert!(
        Arc::ptr_eq(&loaded[0], &loaded[1]),
        "two records with one User-Agent hold two copies of it"
    );
    assert!(Arc::ptr_eq(&loaded[0], &shared_user_agent(ua)));
}

pub async fn create_never_overwrites(s: Arc<dyn SessionStore>) {
    let r = record(None, json!({"a": 1}));
    s.create(&r).await.expect("create");
    let mut other = r.clone();
    other.data.insert("a".into(), json!(2));
    assert!(matches!(s.create(&other).await, Err(StoreError::Collision)));
    assert_eq!(
        s.load(&r.key).await.expect("load").expect("exists").data["a"],
        json!(1)
    );
}

pub async fn save_merges_only_the_delta(s: Arc<dyn SessionStore>) {
    let r = record(None, json!({"keep": 1, "drop": 2, "change": 3}));
    s.create(&r).await.expect("create");
    let merged = s
        .save(&r.key, &delta(json!({"change": 30, "new": 4}), &["drop"]))
        .await
        .expect("save");
    assert_eq!(
        Value::Object(merged.data.clone()),
        json!({"keep": 1, "change": 30, "new": 4})
    );
    let loaded = s.load(&r.key).await.expect("load").expect("exists");
    assert_eq!(loaded.data, merged.data);
}

/// The fast path a request reads first (`SessionStore::cached`, the read cache's hit) never
/// answers what `load` would not: after a write it holds the write, after a delete nothing.
pub async fn a_cached_copy_follows_every_write(s: Arc<dyn SessionStore>) {
    let r = record(Some(5), json!({"v": 1}));
    s.create(&r).await.expect("create");
    let loaded = s.load(&r.key).await.expect("load").expect("exists");
    let same_as_load = |copy: Option<Arc<Record>>, expected: &Map<String, Value>, when: &str| {
        if let Some(copy) = copy {
            assert_eq!(&copy.data, expected, "the cached copy {when}");
        }
    };
    same_as_load(s.cached(&r.key), &loaded.data, "after a load");
    let merged = s
        .save(&r.key, &delta(json!({"v": 2}), &[]))
        .await
        .expect("save");
    same_as_load(s.cached(&r.key), &merged.data, "after a save");
    assert!(s.delete(&r.key).await.expect("delete"));
    assert!(
        s.cached(&r.key).is_none(),
        "a deleted session has no cached copy"
    );
}

pub async fn save_never_creates_or_resurrects(s: Arc<dyn SessionStore>) {
    let missing = record(None, json!({}));
    assert!(matches!(
        s.save(&missing.key, &delta(json!({"a": 1}), &[])).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.load(&missing.key).await.expect("load"), None);
    let r = record(Some(1), json!({"a": 1}));
    s.create(&r).await.expect("create");
    assert!(s.delete(&r.key).await.expect("delete"));
    assert!(!s.delete(&r.key).await.expect("second delete"));
    assert!(matches!(
        s.save(&r.key, &delta(json!({"b": 2}), &[])).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.load(&r.key).await.expect("load"), None);
}

/// A purge removes every expired record however many there are (the SQL stores delete in
/// batches of 1,000) and nothing live.
pub async fn a_purge_of_many_expired_records_takes_them_all(s: Arc<dyn SessionStore>) {
    let live = record(Some(4), json!({}));
    s.create(&live).await.expect("create");
    let mut keys = Vec::new();
    for i in 0..2_345 {
        let mut r = record(Some(5), json!({}));
        if i % 2 == 0 {
            r.expires_at = now() - 1;
        } else {
            r.absolute_expires_at = now() - 1;
        }
        s.create(&r).await.expect("create");
        keys.push(r.key);
    }
    let purged = s.delete_expired().await.expect("purge");
    // Stores that expire by themselves (Redis TTLs, moka) report what they could count.
    assert!(purged == 2_345 || purged == 0, "purged {purged}");
    for k in [keys[0], keys[1_000], keys[2_344]] {
        assert_eq!(s.load(&k).await.expect("load"), None);
    }
    assert!(s.load(&live.key).await.expect("load").is_some());
    if purged == 2_345 {
        assert!(s.list_user(5).await.expect("list").is_empty());
    }
}

pub async fn expired_records_are_invisible_and_purged(s: Arc<dyn SessionStore>) {
    let mut idle = record(Some(3), json!({}));
    idle.expires_at = now() - 1;
    let mut absolute = record(Some(3), json!({}));
    absolute.absolute_expires_at = now() - 1;
    let live = record(Some(3), json!({}));
    for r in [&idle, &absolute, &live] {
        s.create(r).await.expect("create");
    }
    assert_eq!(s.load(&idle.key).await.expect("load"), None);
    assert_eq!(s.load(&absolute.key).await.expect("load"), None);
    assert!(matches!(
        s.save(&idle.key, &delta(json!({}), &[])).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.list_user(3).await.expect("list").len(), 1);
    // A store may also drop expired records by itself (the memory store does); either way only
    // the live one is left after a purge.
    s.delete_expired().await.expect("purge");
    assert_eq!(s.count().await.expect("count"), 1);
}

pub async fn expiry_slides_but_never_past_the_absolute_cap(s: Arc<dyn SessionStore>) {
    let r = record(None, json!({}));
    s.create(&r).await.expect("create");
    let mut d = delta(json!({}), &[]);
    d.expires_at = r.absolute_expires_at + 10_000;
    let merged = s.save(&r.key, &d).await.expect("save");
    assert_eq!(merged.expires_at, r.absolute_expires_at);
    assert_eq!(
        s.load(&r.key)
            .await
            .expect("load")
            .expect("exists")
            .expires_at,
        r.absolute_expires_at
    );
}

pub async fn rotation_moves_data_and_kills_the_old_key(s: Arc<dyn SessionStore>) {
    let old = record(Some(9), json!({"cart": [1, 2]}));
    s.create(&old).await.expect("create");
    let mut new = record(Some(9), json!({}));
    new.data = old.data.clone();
    s.create(&new).await.expect("create new");
    s.delete(&old.key).await.expect("delete old");
    assert_eq!(s.load(&old.key).await.expect("load"), None);
    assert_eq!(
        s.load(&new.key).await.expect("load").expect("exists").data["cart"],
        json!([1, 2])
    );
}

pub async fn per_user_listing_and_revocation(s: Arc<dyn SessionStore>) {
    let a1 = record(Some(1), json!({}));
    let a2 = record(Some(1), json!({}));
    let a3 = record(Some(1), json!({}));
    let b = record(Some(2), json!({}));
    let anon = record(None, json!({}));
    for r in [&a1, &a2, &a3, &b, &anon] {
        s.create(r).await.expect("create");
    }
    let mut listed: Vec<_> = s
        .list_user(1)
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.key)
        .collect();
    listed.sort();
    let mut expected = vec![a1.key, a2.key, a3.key];
    expected.sort();
    assert_eq!(listed, expected);
    let mut deleted = s.delete_user(1, Some(&a2.key)).await.expect("revoke");
    deleted.sort();
    let mut expected = vec![a1.key, a3.key];
    expected.sort();
    assert_eq!(deleted, expected);
    assert_eq!(s.load(&a1.key).await.expect("load"), None);
    assert_eq!(s.load(&a3.key).await.expect("load"), None);
    assert!(s.load(&a2.key).await.expect("load").is_some());
    assert!(
        s.load(&b.key).await.expect("load").is_some(),
        "other users untouched"
    );
    assert!(
        s.load(&anon.key).await.expect("load").is_some(),
        "anonymous sessions untouched"
    );
    assert_eq!(
        s.delete_user(1, None).await.expect("revoke all"),
        vec![a2.key]
    );
    assert!(s.list_user(1).await.expect("list").is_empty());
}

pub async fn concurrent_writers_of_different_keys_lose_nothing(s: Arc<dyn SessionStore>) {
    let r = record(None, json!({}));
    s.create(&r).await.expect("create");
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = s.clone();
        let key = r.key;
        tasks.push(tokio::spawn(async move {
            // Each writer read the record first, as a request does.
            let _ = s.load(&key).await.expect("load");
            s.save(&key, &delta(json!({ format!("k{i}"): i }), &[]))
                .await
                .expect("save")
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let loaded = s.load(&r.key).await.expect("load").expect("exists");
    for i in 0..50 {
        assert_eq!(
            loaded.data.get(&format!("k{i}")),
            Some(&json!(i)),
            "key k{i} lost"
        );
    }
}

/// A record with many keys (a long-lived session rotated on login) is created and saved whole.
pub async fn large_records_round_trip(s: Arc<dyn SessionStore>) {
    let mut r = record(Some(4), json!({}));
    for i in 0..10_000 {
        r.data.insert(format!("k{i}"), json!(i));
    }
    s.create(&r).await.expect("create");
    let loaded = s.load(&r.key).await.expect("load").expect("exists");
    assert_eq!(loaded.data.len(), 10_000);
    let mut d = delta(json!({}), &[]);
    for i in 0..10_000 {
        d.set.insert(format!("k{i}"), json!(-i));
    }
    let merged = s.save(&r.key, &d).await.expect("save");
    assert_eq!(merged.data["k9999"], json!(-9999));
}

pub async fn ping_answers(s: Arc<dyn SessionStore>) {
    s.ping().await.expect("ping");
}

/// Revocation, the operation every way of ending sessions reaches ([`SessionStore::revoke`]):
/// ending a user's sessions makes each unloadable at once and leaves other users' and anonymous
/// sessions alone; ending one session by id either ends exactly that one or (the cookie store,
/// which keeps nothing to forget) is refused loudly, never reported as done.
pub async fn revoke_ends_the_scope_on_the_next_load(s: Arc<dyn SessionStore>) {
    let a1 = record(Some(11), json!({}));
    let a2 = record(Some(11), json!({}));
    let b = record(Some(12), json!({}));
    let anon = record(None, json!({"a": 1}));
    for r in [&a1, &a2, &b, &anon] {
        s.create(r).await.expect("create");
    }
    let one_by_id = match s.revoke(Revoke::One(&a1.key)).await {
        Ok(Ended::Deleted(1)) => {
            assert_eq!(s.load(&a1.key).await.expect("load"), None);
            assert!(s.load(&a2.key).await.expect("load").is_some(), "only a1");
            true
        }
        Err(StoreError::Unsupported(why)) => {
            assert!(why.contains("cannot end one session"), "{why}");
            false
        }
        other => panic!("ending one session: {other:?}"),
    };
    let ended = s
        .revoke(Revoke::User {
            user_id: 11,
            keep: None,
        })
        .await
        .expect("revoke user");
    match ended {
        Ended::Deleted(n) => assert_eq!(n, if one_by_id { 1 } else { 2 }),
        Ended::Generation => assert!(!one_by_id, "a generation store ends no session by id"),
    }
    for k in [&a1.key, &a2.key] {
        assert_eq!(s.load(k).await.expect("load"), None, "user 11 still loads");
    }
    assert!(s.load(&b.key).await.expect("load").is_some(), "other user");
    assert!(
        s.load(&anon.key).await.expect("load").is_some(),
        "anonymous"
    );
    // A user with no session: nothing to end, and no error.
    s.revoke(Revoke::User {
        user_id: 13,
        keep: None,
    })
    .await
    .expect("revoke a user without sessions");
}

/// An end hook that writes down what it is handed: (key, the data under `oidc.tokens`).
#[derive(Debug, Default)]
struct EndedLog(std::sync::Mutex<Vec<(vestibule::token::TokenHash, Option<Value>)>>);

impl EndHook for EndedLog {
    fn ended(&self, records: &[Record]) {
        let mut log = self.0.lock().expect("log");
        for r in records {
            log.push((r.key, r.data.get("oidc.tokens").cloned()));
        }
    }
}

impl EndedLog {
    fn take(&self) -> Vec<(vestibule::token::TokenHash, Option<Value>)> {
        std::mem::take(&mut *self.0.lock().expect("log"))
    }
}

/// Every way the manager ends sessions hands each ended record, with its data as stored, to
/// the end hook (which revokes provider tokens), once: by id, a user's except one, every
/// session of a user, and a record already read. What another path ended first is not handed
/// over again; what was kept and other users' sessions are not handed over at all.
pub async fn ending_sessions_hands_each_ended_record_to_the_end_hook(s: Arc<dyn SessionStore>) {
    let log = Arc::new(EndedLog::default());
    let m = SessionManager::new(s.clone(), SessionConfig::default()).with_end_hook(log.clone());
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|t| record(Some(31), json!({"oidc.tokens": t})));
    let other = record(Some(32), json!({"oidc.tokens": "other"}));
    for r in [&a, &b, &c, &d, &other] {
        s.create(r).await.expect("create");
    }

    assert_eq!(
        m.end(Revoke::One(&a.key)).await.expect("end"),
        Ended::Deleted(1)
    );
    assert_eq!(log.take(), vec![(a.key, Some(json!("a")))]);
    assert_eq!(
        m.end(Revoke::One(&a.key)).await.expect("end"),
        Ended::Deleted(0)
    );
    assert!(log.take().is_empty(), "ended before: not handed over again");

    let ended = m
        .end(Revoke::User {
            user_id: 31,
            keep: Some(&d.key),
        })
        .await
        .expect("end user");
    assert_eq!(ended, Ended::Deleted(2));
    let mut handed = log.take();
    handed.sort_by(|x, y| {
        x.1.as_ref()
            .map(Value::to_string)
            .cmp(&y.1.as_ref().map(Value::to_string))
    });
    assert_eq!(
        handed,
        vec![(b.key, Some(json!("b"))), (c.key, Some(json!("c")))]
    );
    assert!(s.load(&d.key).await.expect("load").is_some(), "kept");

    assert_eq!(m.end_record(&d).await.expect("end"), Ended::Deleted(1));
    assert_eq!(log.take(), vec![(d.key, Some(json!("d")))]);
    assert_eq!(m.end_record(&d).await.expect("end"), Ended::Deleted(0));
    assert_eq!(m.end_all([31]).await.expect("end all"), Ended::Deleted(0));
    assert!(log.take().is_empty(), "nothing left of user 31");

    assert!(
        s.load(&other.key).await.expect("load").is_some(),
        "another user's"
    );
    assert_eq!(m.end_all([32]).await.expect("end all"), Ended::Deleted(1));
    assert_eq!(log.take(), vec![(other.key, Some(json!("other")))]);
}

/// The conformance cases, written once and stamped by every run ([`store_suite!`], the cookie
/// backend's module, the Redis Cluster test): `all` cases apply to every store, `server` ones
/// only to stores that hold records server-side (see [`CookieJar`] for why each is left out
/// there). `$then!(kind, case)` is invoked once per case.
macro_rules! conformance_cases {
    ($then:ident) => {
        $then!(all, create_then_load_round_trips);
        $then!(server, a_purge_of_many_expired_records_takes_them_all);
        $then!(all, load_latest_sees_every_write);
        $then!(all, a_logged_in_record_keeps_its_user);
        $then!(all, records_share_one_copy_of_a_user_agent);
        $then!(all, shared_locks_exclude_other_holders_and_expire);
        $then!(server, create_never_overwrites);
        $then!(all, save_merges_only_the_delta);
        $then!(server, a_cached_copy_follows_every_write);
        $then!(server, save_never_creates_or_resurrects);
        $then!(server, expired_records_are_invisible_and_purged);
        $then!(all, expiry_slides_but_never_past_the_absolute_cap);
        $then!(server, rotation_moves_data_and_kills_the_old_key);
        $then!(server, per_user_listing_and_revocation);
        $then!(server, concurrent_writers_of_different_keys_lose_nothing);
        $then!(server, large_records_round_trip);
        $then!(all, ping_answers);
        $then!(all, revoke_ends_the_scope_on_the_next_load);
        $then!(
            server,
            ending_sessions_hands_each_ended_record_to_the_end_hook
        );
    };
}

macro_rules! store_suite {
    ($store:ident) => {
        mod $store {
            macro_rules! case {
                ($kind:ident, $case:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $case() {
                        // None: the backing service is unreachable and the skip was printed.
                        let Some(f) = super::$store().await else {
                            return;
                        };
                        super::$case(f.store.clone()).await;
                    }
                };
            }
            conformance_cases!(case);
        }
    };
}

store_suite!(memory);
store_suite!(sqlite);
store_suite!(cached_sqlite);
store_suite!(redis);
store_suite!(cached_redis);
store_suite!(postgres);
store_suite!(cached_postgres);

/// Sessions written before the user was held typed (the user as JSON among the data) load
/// with their user, on both databases: the stored form did not change.
#[tokio::test]
async fn a_session_stored_with_the_user_among_its_data_loads_with_its_user() {
    let (db, _dir) = sqlite_db().await;
    let mut stores: Vec<(Arc<dyn SessionStore>, Option<services::PgSchema>)> =
        vec![(Arc::new(SqliteStore::new(db)), None)];
    if let Some((pg, schema)) = postgres_db().await {
        stores.push((Arc::new(SqlStore::new(pg)), Some(schema)));
    }
    for (s, _schema) in stores {
        // What an earlier version's login wrote: no typed user, the JSON under its key.
        let r = record(
            Some(4),
            json!({"_auth_user": {"id": 4, "username": "old", "auth_time": 100, "transport": "cookie"}, "b": 2}),
        );
        s.create(&r).await.expect("create");
        let loaded = s.load(&r.key).await.expect("load").expect("exists");
        let user = loaded.user.as_ref().expect("the user, typed");
        assert_eq!(
            (user.id, user.username.as_str(), user.auth_time),
            (4, "old", 100)
        );
        assert_eq!(Value::Object(loaded.data.clone()), json!({"b": 2}));
    }
}

/// A cached store's `load_latest` reads past its copy: a write another instance made (here: to
/// the durable store directly, unannounced) shows there at once, while `load` still answers the
/// copy until the announcement arrives. The relay's refresh decision depends on this
/// (tests/it/oidc/refresh.rs).
#[tokio::test]
async fn a_cached_stores_load_latest_reads_past_its_copy() {
    let (db, _dir) = sqlite_db().await;
    let durable = SqliteStore::new(db);
    let cached = CachedStore::new(durable.clone(), 100);
    let r = record(Some(3), json!({"tokens": "old"}));
    cached.create(&r).await.expect("create");
    assert_eq!(
        cached
            .load(&r.key)
            .await
            .expect("load")
            .expect("cached")
            .data["tokens"],
        json!("old")
    );
    durable
        .save(&r.key, &delta(json!({"tokens": "new"}), &[]))
        .await
        .expect("another instance's write");
    assert_eq!(
        cached.load(&r.key).await.expect("load").expect("copy").data["tokens"],
        json!("old"),
        "the copy is stale until an announcement drops it"
    );
    assert_eq!(
        cached
            .load_latest(&r.key)
            .await
            .expect("latest")
            .expect("exists")
            .data["tokens"],
        json!("new")
    );
}

/// A durable store whose `load` stops after reading, until told to go on: lets a test put a
/// write between a cache fill's read and its insert.
#[derive(Debug)]
struct PausedLoads {
    inner: MemoryStore,
    read: tokio::sync::Notify,
    go: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl SessionStore for PausedLoads {
    async fn create(&self, r: &Record) -> Result<(), StoreError> {
        self.inner.create(r).await
    }
    async fn load(
        &self,
        k: &vestibule::token::TokenHash,
    ) -> Result<Option<Arc<Record>>, StoreError> {
        let r = self.inner.load(k).await;
        self.read.notify_one();
        self.go.notified().await;
        r
    }
    async fn load_latest(
        &self,
        k: &vestibule::token::TokenHash,
    ) -> Result<Option<Arc<Record>>, StoreError> {
        self.inner.load_latest(k).await
    }
    async fn save(
        &self,
        k: &vestibule::token::TokenHash,
        d: &Delta,
    ) -> Result<Arc<Record>, StoreError> {
        self.inner.save(k, d).await
    }
    async fn delete(&self, k: &vestibule::token::TokenHash) -> Result<bool, StoreError> {
        self.inner.delete(k).await
    }
    async fn list_user(&self, id: i64) -> Result<Vec<Record>, StoreError> {
        self.inner.list_user(id).await
    }
    async fn delete_user(
        &self,
        id: i64,
        keep: Option<&vestibule::token::TokenHash>,
    ) -> Result<Vec<vestibule::token::TokenHash>, StoreError> {
        self.inner.delete_user(id, keep).await
    }
    async fn revoke(&self, what: Revoke<'_>) -> Result<Ended, StoreError> {
        vestibule::session::revoke_by_deleting(self, what).await
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

/// A cache fill that read a record before a delete went through cannot put it back afterwards:
/// the fill and the delete of one key run one after the other (the key's lock). Without that,
/// the revoked session would be served from memory until evicted.
#[tokio::test]
async fn a_fill_racing_a_delete_never_puts_the_record_back() {
    let durable = PausedLoads {
        inner: MemoryStore::new(100),
        read: tokio::sync::Notify::new(),
        go: tokio::sync::Notify::new(),
    };
    let r = record(Some(9), json!({}));
    durable.inner.create(&r).await.expect("create");
    let cached = Arc::new(CachedStore::new(durable, 100));
    let key = r.key;
    let fill = tokio::spawn({
        let cached = cached.clone();
        async move { cached.load(&key).await }
    });
    // The fill has read the live record and is paused before caching it.
    cached.durable().read.notified().await;
    let delete = tokio::spawn({
        let cached = cached.clone();
        async move { cached.delete(&key).await }
    });
    // Give the delete every chance to run ahead of the paused fill.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    cached.durable().go.notify_one();
    let filled = fill.await.expect("join").expect("load");
    assert!(
        filled.is_some(),
        "the fill read the record before the delete"
    );
    assert!(delete.await.expect("join").expect("delete"));
    // The next load misses the cache and reads the durable store again: let it through.
    cached.durable().go.notify_one();
    assert_eq!(
        cached.load(&key).await.expect("load"),
        None,
        "a revoked session came back from the cache"
    );
}

/// The cookie backend (`session.store = "cookie"`) seen through the store contract: the "store" is
/// the browsers' cookie jars, modelled here as a map from session id to the sealed value the
/// browser holds (plus the `User-Agent` it sends along). Every write seals the whole record with
/// the production key ring and record mapping, every read opens it: what these cases check is
/// that the sealed cookie carries a record faithfully, merges deltas and enforces the expiry caps.
///
/// Cases that cannot apply to a stateless store, and why:
/// - `create_never_overwrites`: ids are fresh random tokens and nothing server-side is shared, so
///   there is no namespace to collide in.
/// - `save_never_creates_or_resurrects`, `rotation_moves_data_and_kills_the_old_key`: the server
///   cannot forget a cookie it issued; a copy of an old or logged-out cookie opens until it
///   expires (unless the user's generation changed). `tests/it/cookie_store.rs` tests exactly that.
/// - `per_user_listing_and_revocation`, `expired_records_are_invisible_and_purged` (listing,
///   counting, purging): no server-side list exists; logout-all, password change and disabling a
///   user bump the per-user generation instead (tested over HTTP in `cookie_store.rs`).
/// - `concurrent_writers_of_different_keys_lose_nothing`: each request re-seals the whole session
///   and the browser keeps the last `Set-Cookie`: concurrent writes to one session can lose
///   each other's keys (documented in the README).
/// - `large_records_round_trip`: 10 000 keys do not fit in a cookie; the size limit's clear error
///   is tested instead (`cookie_store.rs` and the unit tests of `stores/cookie.rs`).
#[derive(Debug)]
pub struct CookieJar {
    ring: vestibule::session::stores::CookieKeyRing,
    generations: Arc<JarGenerations>,
    jar: std::sync::Mutex<std::collections::HashMap<vestibule::token::TokenHash, JarEntry>>,
}

/// What the jar keeps per session: the sealed cookie value and the `User-Agent` beside it.
type JarEntry = (String, Option<Arc<str>>);

const JAR_COOKIE: &str = "vestibule_session";

/// The server's per-user generations the jar's cookies are sealed under and checked against (the
/// users table's column in production).
#[derive(Debug, Default)]
pub struct JarGenerations(std::sync::Mutex<std::collections::HashMap<i64, u64>>);

impl JarGenerations {
    fn get(&self, user_id: i64) -> u64 {
        self.0
            .lock()
            .expect("generations")
            .get(&user_id)
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl vestibule::session::stores::Generations for JarGenerations {
    async fn current(&self, user_id: i64) -> Result<Option<u64>, vestibule::Error> {
        Ok(Some(self.get(user_id)))
    }
    async fn bump(&self, user_id: i64) -> Result<(), vestibule::Error> {
        *self
            .0
            .lock()
            .expect("generations")
            .entry(user_id)
            .or_insert(0) += 1;
        Ok(())
    }
}

impl CookieJar {
    fn new() -> Self {
        use vestibule::session::stores::{CookieKey, CookieKeyRing};
        Self {
            ring: CookieKeyRing::new(vec![CookieKey::from_secret([42; 32])]).expect("ring"),
            generations: Arc::default(),
            jar: std::sync::Mutex::default(),
        }
    }

    fn seal(&self, r: &Record) -> Result<(), StoreError> {
        use vestibule::session::stores::SealedSession;
        let token = SecretToken::generate(TokenKind::Session);
        let value = self
            .ring
            .seal(
                &SealedSession::from_record(
                    r,
                    token.expose(),
                    r.user_id.map_or(0, |u| self.generations.get(u)),
                ),
                JAR_COOKIE,
            )
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        assert!(value.starts_with("v1.") && !value.contains("test-agent"));
        self.jar
            .lock()
            .expect("jar")
            .insert(r.key, (value, r.user_agent.clone()));
        Ok(())
    }

    fn open(&self, key: &vestibule::token::TokenHash) -> Option<Record> {
        let (value, ua) = self.jar.lock().expect("jar").get(key).cloned()?;
        let s = self
            .ring
            .open(&value, JAR_COOKIE, now(), |u| self.generations.get(u))
            .ok()?;
        s.into_record(*key, ua).ok()
    }
}

#[async_trait::async_trait]
impl SessionStore for CookieJar {
    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        self.seal(record)
    }
    async fn load(
        &self,
        key: &vestibule::token::TokenHash,
    ) -> Result<Option<Arc<Record>>, StoreError> {
        Ok(self.open(key).map(Arc::new))
    }
    async fn load_latest(
        &self,
        key: &vestibule::token::TokenHash,
    ) -> Result<Option<Arc<Record>>, StoreError> {
        self.load(key).await
    }
    async fn save(
        &self,
        key: &vestibule::token::TokenHash,
        delta: &Delta,
    ) -> Result<Arc<Record>, StoreError> {
        let mut r = self.open(key).ok_or(StoreError::NotFound)?;
        r.apply(delta);
        self.seal(&r)?;
        Ok(Arc::new(r))
    }
    async fn delete(&self, key: &vestibule::token::TokenHash) -> Result<bool, StoreError> {
        Ok(self.jar.lock().expect("jar").remove(key).is_some())
    }
    async fn list_user(&self, _user_id: i64) -> Result<Vec<Record>, StoreError> {
        unreachable!("not applicable to the cookie store")
    }
    async fn delete_user(
        &self,
        _user_id: i64,
        _keep: Option<&vestibule::token::TokenHash>,
    ) -> Result<Vec<vestibule::token::TokenHash>, StoreError> {
        unreachable!("not applicable to the cookie store")
    }
    async fn revoke(
        &self,
        what: vestibule::session::Revoke<'_>,
    ) -> Result<vestibule::session::Ended, StoreError> {
        vestibule::session::stores::StatelessStore::new(self.generations.clone())
            .revoke(what)
            .await
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn ping(&self) -> Result<(), StoreError> {
        vestibule::session::stores::StatelessStore::new(self.generations.clone())
            .ping()
            .await
    }
    async fn count(&self) -> Result<u64, StoreError> {
        Ok(self.jar.lock().expect("jar").len() as u64)
    }
}

pub async fn cookie() -> Option<Fixture> {
    Fixture::new(Arc::new(CookieJar::new()), None)
}

/// The applicable subset of the suite, stamped for the cookie backend (see [`CookieJar`]).
mod cookie {
    macro_rules! case {
        (server, $case:ident) => {};
        (all, $case:ident) => {
            #[tokio::test]
            async fn $case() {
                let Some(f) = super::cookie().await else {
                    return;
                };
                super::$case(f.store.clone()).await;
            }
        };
    }
    conformance_cases!(case);
}

/// The cache never serves a record its durable store no longer has when the change went through it.
#[tokio::test]
async fn cached_store_reflects_revocation_through_it_at_once() {
    let (db, _dir) = sqlite_db().await;
    let cached = CachedStore::new(SqliteStore::new(db), 100);
    let r = record(Some(5), json!({"a": 1}));
    cached.create(&r).await.expect("create");
    assert!(cached.load(&r.key).await.expect("load").is_some());
    cached.delete_user(5, None).await.expect("revoke");
    assert_eq!(cached.load(&r.key).await.expect("load"), None);
}

/// A dump of the durable store holds no token: only hashes.
#[tokio::test]
async fn sqlite_rows_hold_hashes_not_tokens() {
    let (db, dir) = sqlite_db().await;
    let store = SqliteStore::new(db.clone());
    let token = SecretToken::generate(TokenKind::Session);
    let mut r = record(None, json!({"x": 1}));
    r.key = token.hash();
    store.create(&r).await.expect("create");
    db.close().await;
    let bytes = std::fs::read(dir.path().join("s.db")).expect("read db");
    let wal = std::fs::read(dir.path().join("s.db-wal")).unwrap_or_default();
    let needle = token.expose().as_bytes();
    for hay in [&bytes, &wal] {
        assert!(
            !hay.windows(needle.len()).any(|w| w == needle),
            "raw token found in the database file"
        );
    }
    let needle = &token.expose().as_bytes()[4..24];
    assert!(!bytes.windows(needle.len()).any(|w| w == needle));
}

/// Redis keeps each session under the prefix with its expiry as the key's TTL (set by the same
/// script as the write), and the user index names it; nothing is stored outside the prefix.
#[tokio::test]
async fn redis_keys_carry_the_expiry_and_stay_under_the_prefix() {
    let Some((config, _guard)) = redis_config().await else {
        return;
    };
    let store = RedisStore::new(&config).expect("store");
    let r = record(Some(42), json!({"a": 1}));
    store.create(&r).await.expect("create");
    let client = ::redis::Client::open(config.urls[0].as_str()).expect("client");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let session_key = format!("{}s:{}", config.prefix, r.key.to_hex());
    let ttl: i64 = ::redis::cmd("TTL")
        .arg(&session_key)
        .query_async(&mut c)
        .await
        .expect("ttl");
    let expected = r.expires_at - now();
    assert!(
        (expected - 2..=expected).contains(&ttl),
        "ttl {ttl}, expected {expected}"
    );
    let members: Vec<String> = ::redis::cmd("ZRANGE")
        .arg(format!("{}u:42", config.prefix))
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .expect("index");
    assert_eq!(members, vec![r.key.to_hex()]);
    // A save slides the TTL with the expiry; it is never longer than the absolute cap.
    let mut d = delta(json!({}), &[]);
    d.expires_at = r.absolute_expires_at + 5000;
    store.save(&r.key, &d).await.expect("save");
    let ttl: i64 = ::redis::cmd("TTL")
        .arg(&session_key)
        .query_async(&mut c)
        .await
        .expect("ttl");
    assert!(
        ttl <= r.absolute_expires_at - now() && ttl > expected,
        "ttl {ttl}"
    );
    // The token itself is nowhere in Redis: only its hash names the key.
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{}*", config.prefix))
        .query_async(&mut c)
        .await
        .expect("keys");
    assert_eq!(keys.len(), 2, "{keys:?}");
    store.delete(&r.key).await.expect("delete");
    let members: Vec<String> = ::redis::cmd("ZRANGE")
        .arg(format!("{}u:42", config.prefix))
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .expect("index");
    assert!(members.is_empty(), "deleted session left in the index");
}

/// The whole suite against a Redis Cluster the test starts itself (three primaries joined with
/// `redis-cli --cluster create`): sessions and per-user indexes land in different slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_passes_the_conformance_suite() {
    let Some(cluster) = services::OwnedCluster::start().await else {
        return;
    };
    let config = |prefix: &str| RedisConfig {
        urls: cluster.urls(),
        cluster: true,
        prefix: prefix.to_owned(),
        timeout: std::time::Duration::from_secs(2),
    };
    macro_rules! run {
        ($kind:ident, $case:ident) => {
            let plain: Arc<dyn SessionStore> =
                Arc::new(RedisStore::new(&config(&services::random_prefix())).expect("store"));
            $case(plain).await;
            let cached: Arc<dyn SessionStore> =
                Arc::new(cached_redis_store(&config(&services::random_prefix())));
            $case(cached).await;
        };
    }
    conformance_cases!(run);
    // Keys really are spread over the nodes.
    let holding = cluster
        .nodes
        .iter()
        .filter(|n| {
            let out = n.cli(&["dbsize"]);
            String::from_utf8_lossy(&out.stdout).trim() != "0"
        })
        .count();
    assert!(holding >= 2, "all keys on one node: {holding}");
}
