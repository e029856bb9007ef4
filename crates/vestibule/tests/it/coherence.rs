//! The read cache in front of a shared store, across instances: what one instance changes the
//! others never serve from their cache, and a cache that cannot hear the others is not read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use vestibule::session::stores::{CachedStore, Invalidation, MemoryStore, RedisStore};
use vestibule::session::{Delta, SessionStore, StoreError, now};
use vestibule::token::TokenHash;

use crate::store_conformance::{cached_redis_store, record, redis_config};

/// Waits (bounded) until a coherent cache's feed is subscribed.
async fn until_live(stores: &[&CachedStore<RedisStore>]) {
    for _ in 0..200 {
        if stores.iter().all(|s| s.is_coherent()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("invalidation feed never came up");
}

fn touch(set: serde_json::Value) -> Delta {
    let t = now();
    Delta {
        set: set.as_object().cloned().unwrap_or_default(),
        remove: Vec::new(),
        last_seen: t,
        expires_at: t + 3600,
    }
}

/// Two instances (A, B) with their own caches over one Redis: B has the session cached; a
/// logout, a data change and a revoke-all on A are each seen by B's very next read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_instance_is_seen_by_the_next_read_on_another() {
    let Some((config, _guard)) = redis_config().await else {
        return;
    };
    let a = cached_redis_store(&config);
    let b = cached_redis_store(&config);
    until_live(&[&a, &b]).await;
    for round in 0..20 {
        let r = record(Some(round), json!({"n": 0}));
        a.create(&r).await.expect("create");
        assert!(b.load(&r.key).await.expect("load").is_some(), "B caches it");
        a.save(&r.key, &touch(json!({"n": 1}))).await.expect("save");
        assert_eq!(
            b.load(&r.key).await.expect("load").expect("live").data["n"],
            json!(1),
            "round {round}: B served a stale copy after A's write"
        );
        if round % 2 == 0 {
            assert!(a.delete(&r.key).await.expect("delete"));
        } else {
            assert_eq!(
                a.delete_user(round, None).await.expect("revoke"),
                vec![r.key]
            );
        }
        assert_eq!(
            b.load(&r.key).await.expect("load"),
            None,
            "round {round}: B served a session A ended"
        );
    }
}

/// A feed that can be switched off, over any store.
#[derive(Debug, Default)]
struct SwitchFeed {
    live: AtomicBool,
}

#[async_trait]
impl Invalidation for SwitchFeed {
    fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }
    fn epoch(&self) -> u64 {
        0
    }
    async fn publish(&self, _keys: &[TokenHash]) -> Result<(), StoreError> {
        Ok(())
    }
}

/// While the feed is down, every read goes to the shared store: a change made there by another
/// instance (here: directly) is seen at once. While it is up, the cache answers.
#[tokio::test]
async fn the_cache_is_bypassed_while_the_feed_is_down() {
    let Some((config, _guard)) = redis_config().await else {
        return;
    };
    let shared = RedisStore::new(&config).expect("store");
    let feed = Arc::new(SwitchFeed::default());
    let f = feed.clone();
    let cached = CachedStore::coherent(shared.clone(), 100, move |_| {
        let feed: Arc<dyn Invalidation> = f;
        feed
    });
    let r = record(Some(1), json!({}));
    cached.create(&r).await.expect("create");
    assert!(cached.load(&r.key).await.expect("load").is_some());
    shared
        .delete(&r.key)
        .await
        .expect("delete behind the cache");
    assert_eq!(
        cached.load(&r.key).await.expect("load"),
        None,
        "feed down: the shared store was asked"
    );
    // With the feed up, a cached copy is served (which is why the feed must deliver every write).
    feed.live.store(true, Ordering::SeqCst);
    let r2 = record(Some(1), json!({}));
    cached.create(&r2).await.expect("create");
    shared
        .delete(&r2.key)
        .await
        .expect("delete behind the cache");
    assert!(cached.load(&r2.key).await.expect("load").is_some());
}

/// A request reads the cache's copy first (`SessionStore::cached`): a hit after a load, but
/// nothing while the feed is down (the copy may be stale then), the same rule as `load`.
#[tokio::test]
async fn the_fast_path_serves_copies_only_while_the_feed_is_up() {
    let feed = Arc::new(SwitchFeed::default());
    feed.live.store(true, Ordering::SeqCst);
    let f = feed.clone();
    let cached = CachedStore::coherent(MemoryStore::new(100), 100, move |_| {
        let feed: Arc<dyn Invalidation> = f;
        feed
    });
    let r = record(Some(1), json!({"n": 1}));
    cached.create(&r).await.expect("create");
    assert!(cached.load(&r.key).await.expect("load").is_some());
    let copy = cached.cached(&r.key).expect("a copy after the load");
    assert_eq!(copy.data["n"], json!(1));
    feed.live.store(false, Ordering::SeqCst);
    assert!(cached.cached(&r.key).is_none(), "feed down: no copy served");
    // Anonymous sessions are never kept, so never served from the copy either.
    feed.live.store(true, Ordering::SeqCst);
    let anonymous = record(None, json!({}));
    cached.create(&anonymous).await.expect("create");
    assert!(cached.load(&anonymous.key).await.expect("load").is_some());
    assert!(cached.cached(&anonymous.key).is_none());
}

/// An instance without a read cache (`session.redis_cache = false`) beside one with it on the
/// same Redis, both built as the server builds them: a session the uncached one ends is not
/// served by the cached one's next read (it was, until its copy was evicted, when only cached
/// instances announced their writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncached_instances_writes_reach_the_cached_ones() {
    let Some((rc, _guard)) = redis_config().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let db = vestibule::db::Database::open(&dir.path().join("u.db"))
        .await
        .expect("db opens");
    let build = |cache: bool| {
        let mut raw = crate::support::test_raw_config();
        raw.session.store = vestibule::config::RawStore::One(rc.urls[0].clone());
        raw.session.redis_prefix = rc.prefix.clone();
        raw.session.redis_cache = cache;
        let config = raw.validate().expect("valid config");
        vestibule::server::build_store(&config, &db)
            .expect("store builds")
            .0
    };
    let uncached = build(false);
    let cached = build(true);
    // Behind both: writes nobody announces, to see when the cached instance serves its copy.
    let raw = RedisStore::new(&rc).expect("redis store");
    let mut serving_copies = false;
    for _ in 0..200 {
        let r = record(Some(1), json!({"n": 0}));
        uncached.create(&r).await.expect("create");
        cached.load(&r.key).await.expect("load");
        raw.save(&r.key, &touch(json!({"n": 1})))
            .await
            .expect("save");
        let seen = cached.load(&r.key).await.expect("load").expect("live");
        if seen.data["n"] == json!(0) {
            serving_copies = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(serving_copies, "the cached instance never used its cache");
    for round in 0..10 {
        let r = record(Some(100 + round), json!({"n": 0}));
        uncached.create(&r).await.expect("create");
        assert!(cached.load(&r.key).await.expect("load").is_some());
        uncached
            .save(&r.key, &touch(json!({"n": 1})))
            .await
            .expect("save");
        assert_eq!(
            cached.load(&r.key).await.expect("load").expect("live").data["n"],
            json!(1),
            "round {round}: a stale copy after the uncached instance's write"
        );
        if round % 2 == 0 {
            assert!(uncached.delete(&r.key).await.expect("delete"));
        } else {
            uncached
                .delete_user(100 + round, None)
                .await
                .expect("revoke");
        }
        assert_eq!(
            cached.load(&r.key).await.expect("load"),
            None,
            "round {round}: the cached instance served a session the uncached one ended"
        );
    }
}
