//! A bounded, expiring, concurrent in-memory store (moka). Sessions die with the process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};

use crate::session::record::{Delta, Record, now};
use crate::session::store::{Ended, Revoke, SessionStore, StoreError};
use crate::token::TokenHash;

/// In-memory sessions. When full, the least recently used sessions are evicted first.
///
/// Logged-in and anonymous sessions are held apart, each up to the capacity: anonymous sessions
/// cost a client nothing to create (one unsafe request without a cookie), so a flood of them
/// may evict other anonymous sessions but never a login.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    cache: Cache<TokenHash, Arc<Record>>,
    anonymous: Cache<TokenHash, Arc<Record>>,
}

/// Entries expire at the record's own expiry, re-read at every write.
struct RecordExpiry;

impl Expiry<TokenHash, Arc<Record>> for RecordExpiry {
    fn expire_after_create(
        &self,
        _k: &TokenHash,
        v: &Arc<Record>,
        _at: Instant,
    ) -> Option<Duration> {
        Some(remaining(v))
    }

    fn expire_after_update(
        &self,
        _k: &TokenHash,
        v: &Arc<Record>,
        _at: Instant,
        _d: Option<Duration>,
    ) -> Option<Duration> {
        Some(remaining(v))
    }
}

fn remaining(r: &Record) -> Duration {
    let left = r.expires_at.min(r.absolute_expires_at) - now();
    Duration::from_secs(u64::try_from(left).unwrap_or(0))
}

impl MemoryStore {
    /// A store holding at most `capacity` sessions.
    pub fn new(capacity: u64) -> Self {
        let part = || {
            Cache::builder()
                .max_capacity(capacity)
                .expire_after(RecordExpiry)
                .build()
        };
        Self {
            cache: part(),
            anonymous: part(),
        }
    }

    /// The partition a record of `user_id` lives in.
    fn part(&self, user_id: Option<i64>) -> &Cache<TokenHash, Arc<Record>> {
        match user_id {
            Some(_) => &self.cache,
            None => &self.anonymous,
        }
    }

    /// The partition holding `key`, if any (a record never changes partition: a login is a new
    /// key).
    fn part_of(&self, key: &TokenHash) -> &Cache<TokenHash, Arc<Record>> {
        if self.anonymous.contains_key(key) {
            &self.anonymous
        } else {
            &self.cache
        }
    }
}

impl MemoryStore {
    /// Every live record, in no particular order (for tests and small administrative tools).
    pub async fn snapshot(&self) -> Vec<Record> {
        let t = now();
        self.cache
            .iter()
            .chain(self.anonymous.iter())
            .filter(|(_, r)| !r.is_expired(t))
            .map(|(_, r)| (*r).clone())
            .collect()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(100_000)
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        let t = now();
        let other = self.part(if record.user_id.is_some() {
            None
        } else {
            Some(0)
        });
        if other
            .get(&record.key)
            .await
            .is_some_and(|r| !r.is_expired(t))
        {
            return Err(StoreError::Collision);
        }
        let result = self
            .part(record.user_id)
            .entry(record.key)
            .and_compute_with(|cur| {
                let op = match cur {
                    Some(e) if !e.value().is_expired(t) => Op::Nop,
                    _ => Op::Put(Arc::new(record.clone())),
                };
                std::future::ready(op)
            })
            .await;
        match result {
            CompResult::Inserted(_) | CompResult::ReplacedWith(_) => Ok(()),
            _ => Err(StoreError::Collision),
        }
    }

    async fn load_latest(&self, key: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        // No cache here: every load is the latest.
        self.load(key).await
    }

    async fn load(&self, key: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        let t = now();
        let found = match self.cache.get(key).await {
            Some(r) => Some(r),
            None => self.anonymous.get(key).await,
        };
        Ok(found.filter(|r| !r.is_expired(t)))
    }

    async fn save(&self, key: &TokenHash, delta: &Delta) -> Result<Arc<Record>, StoreError> {
        let t = now();
        let result = self
            .part_of(key)
            .entry(*key)
            .and_compute_with(|cur| {
                let op = match cur {
                    Some(e) if !e.value().is_expired(t) => {
                        let mut r = (**e.value()).clone();
                        r.apply(delta);
                        Op::Put(Arc::new(r))
                    }
                    _ => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
        match result {
            CompResult::ReplacedWith(e) => Ok(e.into_value()),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, key: &TokenHash) -> Result<bool, StoreError> {
        let t = now();
        let user = self
            .cache
            .remove(key)
            .await
            .is_some_and(|r| !r.is_expired(t));
        let anonymous = self
            .anonymous
            .remove(key)
            .await
            .is_some_and(|r| !r.is_expired(t));
        Ok(user || anonymous)
    }

    async fn list_user(&self, user_id: i64) -> Result<Vec<Record>, StoreError> {
        let t = now();
        let mut out: Vec<Record> = self
            .cache
            .iter()
            .filter(|(_, r)| r.user_id == Some(user_id) && !r.is_expired(t))
            .map(|(_, r)| (*r).clone())
            .collect();
        out.sort_by_key(|r| (r.created_at, r.key));
        Ok(out)
    }

    async fn delete_user(
        &self,
        user_id: i64,
        keep: Option<&TokenHash>,
    ) -> Result<Vec<TokenHash>, StoreError> {
        let keys: Vec<TokenHash> = self
            .cache
            .iter()
            .filter(|(k, r)| r.user_id == Some(user_id) && Some(&**k) != keep)
            .map(|(k, _)| *k)
            .collect();
        for k in &keys {
            self.cache.invalidate(k).await;
        }
        Ok(keys)
    }

    async fn revoke(&self, what: Revoke<'_>) -> Result<Ended, StoreError> {
        crate::session::store::revoke_by_deleting(self, what).await
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        let t = now();
        let mut n = 0;
        for part in [&self.cache, &self.anonymous] {
            let keys: Vec<TokenHash> = part
                .iter()
                .filter(|(_, r)| r.is_expired(t))
                .map(|(k, _)| *k)
                .collect();
            for k in &keys {
                part.invalidate(k).await;
            }
            part.run_pending_tasks().await;
            n += keys.len() as u64;
        }
        Ok(n)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn count(&self) -> Result<u64, StoreError> {
        // moka hides expired entries at once but counts them until its housekeeping runs.
        Ok((self.cache.iter().count() + self.anonymous.iter().count()) as u64)
    }
}
