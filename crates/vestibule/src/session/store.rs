//! The storage contract every session backend implements.

use std::sync::Arc;

use async_trait::async_trait;

use super::record::{Delta, Record};
use crate::token::TokenHash;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No live record under that key (never created, expired, or deleted meanwhile).
    #[error("no live session under that key")]
    NotFound,
    /// `create` found a record under the key already.
    #[error("a session already exists under that key")]
    Collision,
    /// The backend cannot be reached or failed; the request gets 503 `store_unavailable`.
    #[error("session store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored record could not be decoded.
    #[error("corrupt session record: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Wraps a backend error as [`StoreError::Unavailable`].
    pub fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Unavailable(Box::new(err))
    }
}

/// A session backend.
///
/// Loaded and saved records come back as `Arc<Record>`: caching stores hand out what they hold
/// without copying the data on every request.
///
/// The contract, checked by the conformance suite every store runs:
/// - `load` never returns an expired record.
/// - `create` never overwrites: an existing key is [`StoreError::Collision`].
/// - `save` never creates: a missing or expired key is [`StoreError::NotFound`], so a session
///   deleted under a running request cannot be resurrected by that request's write. It merges the
///   delta atomically with respect to other `save`s on the same key and returns the merged record.
/// - The per-user methods see exactly the live records whose `user_id` matches.
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new record under `record.key`.
    async fn create(&self, record: &Record) -> Result<(), StoreError>;
    /// The live record under `key`, if any.
    async fn load(&self, key: &TokenHash) -> Result<Option<Arc<Record>>, StoreError>;
    /// Merges `delta` into the live record under `key` and returns the result.
    async fn save(&self, key: &TokenHash, delta: &Delta) -> Result<Arc<Record>, StoreError>;
    /// Deletes the record; `true` when one existed.
    async fn delete(&self, key: &TokenHash) -> Result<bool, StoreError>;
    /// The live sessions of a user, oldest first.
    async fn list_user(&self, user_id: i64) -> Result<Vec<Record>, StoreError>;
    /// Deletes every session of a user except `keep`; returns the deleted keys.
    async fn delete_user(
        &self,
        user_id: i64,
        keep: Option<&TokenHash>,
    ) -> Result<Vec<TokenHash>, StoreError>;
    /// Removes expired records; returns how many. Called by the background purge task.
    async fn delete_expired(&self) -> Result<u64, StoreError>;
    /// Checks that the backend answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Number of records held, expired or not (for tests and metrics).
    async fn count(&self) -> Result<u64, StoreError>;
}
