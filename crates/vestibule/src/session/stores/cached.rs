//! A memory cache in front of a durable store: reads are served from memory, writes go through.

use std::sync::Arc;

use async_trait::async_trait;
use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};

use crate::session::record::{Delta, Record, now};
use crate::session::store::{SessionStore, StoreError};
use crate::token::TokenHash;

/// Caches records of a durable store.
///
/// Every write and every cache fill for a key runs under that key's lock (moka's per-key
/// `compute`), so a fill that raced a write can never put a stale record back. Within one process
/// the cache is therefore exactly as fresh as the durable store. It is not coherent across
/// processes: several instances sharing one database need cache invalidation (a later issue).
#[derive(Debug, Clone)]
pub struct CachedStore<D> {
    cache: Cache<TokenHash, Arc<Record>>,
    durable: D,
}

impl<D: SessionStore> CachedStore<D> {
    /// Caches up to `capacity` records of `durable`, least recently used evicted first.
    ///
    /// No time-based eviction: every read checks the record's own expiry, and a time-to-live
    /// would cost moka a clock read per hit.
    pub fn new(durable: D, capacity: u64) -> Self {
        Self {
            cache: Cache::builder().max_capacity(capacity).build(),
            durable,
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
                Ok::<_, StoreError>(Op::Put(Arc::new(record.clone())))
            })
            .await?;
        debug_assert!(matches!(
            result,
            CompResult::Inserted(_) | CompResult::ReplacedWith(_)
        ));
        Ok(())
    }

    async fn load(&self, key: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        let t = now();
        if let Some(r) = self.cache.get(key).await {
            return Ok((!r.is_expired(t)).then_some(r));
        }
        let durable = &self.durable;
        let result = self
            .cache
            .entry(*key)
            .and_try_compute_with(|cur| async move {
                Ok::<_, StoreError>(match cur {
                    Some(_) => Op::Nop,
                    None => match durable.load(key).await? {
                        Some(r) => Op::Put(r),
                        None => Op::Nop,
                    },
                })
            })
            .await?;
        Ok(match result {
            CompResult::Inserted(e) | CompResult::ReplacedWith(e) | CompResult::Unchanged(e) => {
                Some(e.into_value()).filter(|r| !r.is_expired(t))
            }
            _ => None,
        })
    }

    async fn save(&self, key: &TokenHash, delta: &Delta) -> Result<Arc<Record>, StoreError> {
        let durable = &self.durable;
        let result = self
            .cache
            .entry(*key)
            .and_try_compute_with(|_| async move {
                match durable.save(key, delta).await {
                    Ok(merged) => Ok(Op::Put(merged)),
                    Err(StoreError::NotFound) => Ok(Op::Remove),
                    Err(e) => Err(e),
                }
            })
            .await?;
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
        Ok(keys)
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
}
