//! A memory cache in front of a durable store: reads are served from memory, writes go through.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{Mutex, MutexGuard};

use crate::session::record::{Delta, Record, now};
use crate::session::store::{Ended, Revoke, SessionStore, StoreError};
use crate::token::TokenHash;

/// Caches records of a durable store.
///
/// Every write and every cache fill for a key runs under that key's lock, so a fill that raced a
/// write can never put a stale record back. Within one process the cache is therefore exactly as
/// fresh as the durable store. Across processes it needs an [`Invalidation`] feed
/// ([`CachedStore::coherent`]): every write is announced to the other instances, which drop their
/// copy, and while this instance's feed is down the cache is bypassed.
#[derive(Debug, Clone)]
pub struct CachedStore<D> {
    shared: Arc<Shared>,
    durable: D,
    feed: Option<Arc<dyn Invalidation>>,
    /// `false` for [`CachedStore::announcing`]: nothing is kept, writes are only announced.
    caching: bool,
}

/// The cache and its key locks, shared with the [`CacheHandle`] an invalidation feed holds.
///
/// Why `quick_cache` and striped locks rather than moka's per-key `and_compute_with` (what this
/// used until 2026-12-06): moka's entry costs about 310 bytes beside the record (its deques'
/// nodes, access timestamps, a key hash in its own allocation) and every hit records itself in a
/// channel for the LRU policy. quick_cache (S3-FIFO, no background work) keeps an entry in a
/// slot of a sharded table. The per-key exclusion moka gave is a fixed array of locks indexed by
/// the key (a SHA-256, so uniformly spread): two keys share a lock one time in
/// [`KEY_LOCKS`], and then only their writes and fills wait for each other, never reads.
/// `bench/session_bytes.sh` measures both (bench/RESULTS.md, "Bytes per session").
#[derive(Debug)]
struct Shared {
    cache: quick_cache::sync::Cache<TokenHash, Arc<Record>>,
    locks: Box<[Mutex<()>]>,
}

/// How many key locks a cache has (about 40 KB of them): enough that two requests writing
/// different sessions at the same moment almost never share one.
const KEY_LOCKS: usize = 1024;

impl Shared {
    fn new(capacity: u64) -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(usize::try_from(capacity).unwrap_or(usize::MAX)),
            locks: (0..KEY_LOCKS).map(|_| Mutex::new(())).collect(),
        }
    }

    /// The lock for `key`'s writes and fills.
    async fn lock(&self, key: &TokenHash) -> MutexGuard<'_, ()> {
        let b = key.as_bytes();
        let i = usize::from(u16::from_le_bytes([b[0], b[1]])) % self.locks.len();
        self.locks[i].lock().await
    }

    /// Drops one key, under its lock (after any fill in flight for it).
    async fn drop_key(&self, key: &TokenHash) {
        let _held = self.lock(key).await;
        self.cache.remove(key);
    }
}

/// A channel between instances sharing one durable store: announces the keys this instance
/// changed and tells whether the announcements of the others are being received.
#[async_trait]
pub trait Invalidation: Send + Sync + std::fmt::Debug + 'static {
    /// Whether the other instances' announcements reach this one right now. When not, the cache
    /// must not be read: it may hold a record another instance changed meanwhile.
    fn is_live(&self) -> bool;
    /// Changes every time the feed is interrupted, so a fill that began before an interruption
    /// is not kept.
    fn epoch(&self) -> u64;
    /// Tells the other instances that these keys changed. Returns once the announcement has been
    /// delivered to the feed (for Redis: echoed back to this instance's own subscription).
    async fn publish(&self, keys: &[TokenHash]) -> Result<(), StoreError>;
}

/// What an [`Invalidation`] feed may do to a cache when another instance announces a change.
#[derive(Debug, Clone)]
pub struct CacheHandle(Arc<Shared>);

impl CacheHandle {
    /// Drops one key, under its lock (after any fill in flight for it).
    pub async fn drop_key(&self, key: TokenHash) {
        self.0.drop_key(&key).await;
    }

    /// Drops everything (the feed was interrupted: announcements may have been missed).
    pub fn drop_all(&self) {
        self.0.cache.clear();
    }
}

impl<D: SessionStore> CachedStore<D> {
    /// Whether copies may be read or filled: not while only announcing (nothing is kept), and
    /// not while the feed is down (deaf to the other instances, a copy may be stale). The one
    /// rule for `load` and for the fast path (`cached`).
    fn copies_usable(&self) -> bool {
        self.caching && self.feed.as_ref().is_none_or(|f| f.is_live())
    }

    /// Caches up to `capacity` records of `durable`; the eviction policy (S3-FIFO) keeps the
    /// sessions in use and lets one-hit wonders go first.
    ///
    /// Only logged-in sessions are cached: anonymous ones cost a client nothing to create, and
    /// caching them would let a flood of anonymous requests evict every login from the cache.
    /// They are read from the durable store instead (their creation is rate-limited per client
    /// address, and they expire after `session.anonymous_timeout`).
    ///
    /// No time-based eviction: every read checks the record's own expiry.
    pub fn new(durable: D, capacity: u64) -> Self {
        Self {
            shared: Arc::new(Shared::new(capacity)),
            durable,
            feed: None,
            caching: true,
        }
    }

    /// A cache shared-nothing with other instances yet coherent with them: `connect` gets a
    /// handle on this cache (to drop what other instances announce) and returns the feed this
    /// instance announces its own writes on.
    pub fn coherent(
        durable: D,
        capacity: u64,
        connect: impl FnOnce(CacheHandle) -> Arc<dyn Invalidation>,
    ) -> Self {
        let mut store = Self::new(durable, capacity);
        store.feed = Some(connect(CacheHandle(store.shared.clone())));
        store
    }

    /// No cache, but this instance's writes are announced on the feed like a coherent cache's:
    /// what an instance without a read cache (`session.redis_cache = false`) runs, so the
    /// instances with one that share its store drop what it changes (a deployment switching the
    /// cache on or off runs both kinds at once). Without it, they would serve a session it
    /// ended until their copy was evicted.
    pub fn announcing(
        durable: D,
        connect: impl FnOnce(CacheHandle) -> Arc<dyn Invalidation>,
    ) -> Self {
        let mut store = Self::coherent(durable, 1, connect);
        store.caching = false;
        store
    }

    /// Whether the cache is in use: always without a feed; with one, while it is live.
    pub fn is_coherent(&self) -> bool {
        self.feed.as_ref().is_none_or(|f| f.is_live())
    }

    async fn announce(&self, keys: &[TokenHash]) -> Result<(), StoreError> {
        match &self.feed {
            Some(feed) if !keys.is_empty() => feed.publish(keys).await,
            _ => Ok(()),
        }
    }

    /// Drops every cached record, e.g. when another process changed the durable store.
    pub fn invalidate_all(&self) {
        self.shared.cache.clear();
    }

    /// How many records are cached now.
    pub fn cached_len(&self) -> usize {
        self.shared.cache.len()
    }

    /// The durable store behind the cache.
    pub fn durable(&self) -> &D {
        &self.durable
    }

    /// Puts `record` in the cache if it is a logged-in one, else drops `key` (anonymous sessions
    /// are never cached, see [`Self::new`]). Callers hold the key's lock.
    fn keep(&self, key: &TokenHash, record: &Arc<Record>) {
        if self.caching && record.user_id.is_some() {
            self.shared.cache.insert(*key, record.clone());
        } else {
            self.shared.cache.remove(key);
        }
    }
}

#[async_trait]
impl<D: SessionStore> SessionStore for CachedStore<D> {
    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        let _held = self.shared.lock(&record.key).await;
        self.durable.create(record).await?;
        self.keep(&record.key, &Arc::new(record.clone()));
        Ok(())
    }

    async fn load_latest(&self, key: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        // The durable store, never the copy here: another instance's write reaches this cache
        // only when its announcement does. The copy is left as it is (the announcement, or this
        // instance's next write, updates it).
        self.durable.load_latest(key).await
    }

    fn cached(&self, key: &TokenHash) -> Option<Arc<Record>> {
        if !self.copies_usable() {
            return None;
        }
        self.shared.cache.get(key)
    }

    async fn load(&self, key: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        let t = now();
        if !self.copies_usable() {
            return self.durable.load(key).await;
        }
        let epoch = self.feed.as_ref().map(|f| f.epoch());
        if let Some(r) = self.shared.cache.get(key) {
            return Ok((!r.is_expired(t)).then_some(r));
        }
        let _held = self.shared.lock(key).await;
        // A write or fill that held the lock before us may have cached it meanwhile.
        if let Some(r) = self.shared.cache.get(key) {
            return Ok((!r.is_expired(t)).then_some(r));
        }
        let Some(r) = self.durable.load(key).await? else {
            return Ok(None);
        };
        // The feed was interrupted during the read: announcements may have been missed, so the
        // record is used for this request only. Anonymous sessions are never cached.
        let interrupted = self
            .feed
            .as_ref()
            .is_some_and(|f| !f.is_live() || Some(f.epoch()) != epoch);
        if r.user_id.is_some() && !interrupted {
            self.shared.cache.insert(*key, r.clone());
        }
        Ok((!r.is_expired(t)).then_some(r))
    }

    async fn save(&self, key: &TokenHash, delta: &Delta) -> Result<Arc<Record>, StoreError> {
        let merged = {
            let _held = self.shared.lock(key).await;
            match self.durable.save(key, delta).await {
                Ok(merged) => {
                    self.keep(key, &merged);
                    Ok(merged)
                }
                Err(StoreError::NotFound) => {
                    self.shared.cache.remove(key);
                    Err(StoreError::NotFound)
                }
                Err(e) => return Err(e),
            }
        };
        self.announce(std::slice::from_ref(key)).await?;
        merged
    }

    async fn delete(&self, key: &TokenHash) -> Result<bool, StoreError> {
        let existed = {
            let _held = self.shared.lock(key).await;
            let existed = self.durable.delete(key).await?;
            self.shared.cache.remove(key);
            existed
        };
        self.announce(std::slice::from_ref(key)).await?;
        Ok(existed)
    }

    async fn list_user(&self, user_id: i64) -> Result<Vec<Record>, StoreError> {
        self.durable.list_user(user_id).await
    }

    async fn delete_user(
        &self,
        user_id: i64,
        keep: Option<&TokenHash>,
    ) -> Result<Vec<TokenHash>, StoreError> {
        let keys = self.durable.delete_user(user_id, keep).await?;
        for k in &keys {
            // Under the key's lock, so a fill that read the record before the delete is undone.
            self.shared.drop_key(k).await;
        }
        self.announce(&keys).await?;
        Ok(keys)
    }

    /// Through this wrapper's own `delete` and `delete_user`, which drop the cached copies.
    async fn revoke(&self, what: Revoke<'_>) -> Result<Ended, StoreError> {
        crate::session::store::revoke_by_deleting(self, what).await
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.durable.delete_expired().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.durable.ping().await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.durable.count().await
    }
    async fn try_lock(
        &self,
        name: &str,
        ttl: std::time::Duration,
    ) -> Result<crate::session::SharedLock, StoreError> {
        self.durable.try_lock(name, ttl).await
    }
    async fn unlock(
        &self,
        name: &str,
        lock: &crate::session::SharedLock,
    ) -> Result<(), StoreError> {
        self.durable.unlock(name, lock).await
    }
}
