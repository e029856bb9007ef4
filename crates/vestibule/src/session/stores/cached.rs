//! A memory cache in front of a durable store: reads are served from memory, writes go through.

use std::sync::Arc;

use async_trait::async_trait;
use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};

use crate::session::record::{Delta, Record, now};
use crate::session::store::{Ended, Revoke, SessionStore, StoreError};
use crate::token::TokenHash;

/// Caches records of a durable store.
///
/// Every write and every cache fill for a key runs under that key's lock (moka's per-key
/// `compute`), so a fill that raced a write can never put a stale record back. Within one process
/// the cache is therefore exactly as fresh as the durable store. Across processes it needs an
/// [`Invalidation`] feed ([`CachedStore::coherent`]): every write is announced to the other
/// instances, which drop their copy, and while this instance's feed is down the cache is bypassed.
#[derive(Debug, Clone)]
pub struct CachedStore<D> {
    cache: Cache<TokenHash, Arc<Record>>,
    durable: D,
    feed: Option<Arc<dyn Invalidation>>,
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
pub struct CacheHandle(Cache<TokenHash, Arc<Record>>);

impl CacheHandle {
    /// Drops one key, under its lock (after any fill in flight for it).
    pub async fn drop_key(&self, key: TokenHash) {
        self.0
            .entry(key)
            .and_compute_with(|_| std::future::ready(Op::Remove))
            .await;
    }

    /// Drops everything (the feed was interrupted: announcements may have been missed).
    pub fn drop_all(&self) {
        self.0.invalidate_all();
    }
}

impl<D: SessionStore> CachedStore<D> {
    /// Caches up to `capacity` records of `durable`, least recently used evicted first.
    ///
    /// Only logged-in sessions are cached: anonymous ones cost a client nothing to create, and
    /// caching them would let a flood of anonymous requests evict every login from the cache.
    /// They are read from the durable store instead (their creation is rate-limited per client
    /// address, and they expire after `session.anonymous_timeout`).
    ///
    /// No time-based eviction: every read checks the record's own expiry, and a time-to-live
    /// would cost moka a clock read per hit.
    pub fn new(durable: D, capacity: u64) -> Self {
        Self {
            cache: Cache::builder().max_capacity(capacity).build(),
            durable,
            feed: None,
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
        store.feed = Some(connect(CacheHandle(store.cache.clone())));
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
        self.cache.invalidate_all();
    }

    /// The durable store behind the cache.
    pub fn durable(&self) -> &D {
        &self.durable
    }
}

#[async_trait]
impl<D: SessionStore> SessionStore for CachedStore<D> {
    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        let durable = &self.durable;
        let result = self
            .cache
            .entry(record.key)
            .and_try_compute_with(|_| async move {
                durable.create(record).await?;
                // Anonymous sessions are not cached (see `Self::new`).
                Ok::<_, StoreError>(if record.user_id.is_some() {
                    Op::Put(Arc::new(record.clone()))
                } else {
                    Op::Remove
                })
            })
            .await?;
        debug_assert!(
            record.user_id.is_none()
                || matches!(
                    result,
                    CompResult::Inserted(_) | CompResult::ReplacedWith(_)
                )
        );
        Ok(())
    }

    async fn load_latest(&self, key: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        // The durable store, never the copy here: another instance's write reaches this cache
        // only when its announcement does. The copy is left as it is (the announcement, or this
        // instance's next write, updates it).
        self.durable.load_latest(key).await
    }

    async fn load(&self, key: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        let t = now();
        let epoch = match &self.feed {
            // Deaf to the other instances: the cache may be stale, so it is neither read nor filled.
            Some(feed) if !feed.is_live() => return self.durable.load(key).await,
            Some(feed) => Some(feed.epoch()),
            None => None,
        };
        if let Some(r) = self.cache.get(key).await {
            return Ok((!r.is_expired(t)).then_some(r));
        }
        let durable = &self.durable;
        let feed = &self.feed;
        let mut uncached = None;
        let uncached_ref = &mut uncached;
        let result = self
            .cache
            .entry(*key)
            .and_try_compute_with(|cur| async move {
                Ok::<_, StoreError>(match cur {
                    Some(_) => Op::Nop,
                    None => match durable.load(key).await? {
                        // The feed was interrupted during the read: announcements may have been
                        // missed, so the record is used for this request only.
                        // Anonymous sessions are never cached (see `Self::new`).
                        Some(r)
                            if r.user_id.is_none()
                                || feed
                                    .as_ref()
                                    .is_some_and(|f| !f.is_live() || Some(f.epoch()) != epoch) =>
                        {
                            *uncached_ref = Some(r);
                            Op::Nop
                        }
                        Some(r) => Op::Put(r),
                        None => Op::Nop,
                    },
                })
            })
            .await?;
        if let Some(r) = uncached {
            return Ok(Some(r).filter(|r| !r.is_expired(t)));
        }
        Ok(match result {
            CompResult::Inserted(e) | CompResult::ReplacedWith(e) | CompResult::Unchanged(e) => {
                Some(e.into_value()).filter(|r| !r.is_expired(t))
            }
            _ => None,
        })
    }

    async fn save(&self, key: &TokenHash, delta: &Delta) -> Result<Arc<Record>, StoreError> {
        let durable = &self.durable;
        let mut anonymous = None;
        let anonymous_ref = &mut anonymous;
        let result = self
            .cache
            .entry(*key)
            .and_try_compute_with(|_| async move {
                match durable.save(key, delta).await {
                    // Anonymous sessions are never cached (see `Self::new`).
                    Ok(merged) if merged.user_id.is_none() => {
                        *anonymous_ref = Some(merged);
                        Ok(Op::Remove)
                    }
                    Ok(merged) => Ok(Op::Put(merged)),
                    Err(StoreError::NotFound) => Ok(Op::Remove),
                    Err(e) => Err(e),
                }
            })
            .await?;
        self.announce(std::slice::from_ref(key)).await?;
        if let Some(merged) = anonymous {
            return Ok(merged);
        }
        match result {
            CompResult::Inserted(e) | CompResult::ReplacedWith(e) => Ok(e.into_value()),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, key: &TokenHash) -> Result<bool, StoreError> {
        let durable = &self.durable;
        let mut existed = false;
        let existed_ref = &mut existed;
        self.cache
            .entry(*key)
            .and_try_compute_with(|_| async move {
                *existed_ref = durable.delete(key).await?;
                Ok::<_, StoreError>(Op::Remove)
            })
            .await?;
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
            self.cache
                .entry(*k)
                .and_compute_with(|_| std::future::ready(Op::Remove))
                .await;
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
