//! The storage contract every session backend implements.

use std::sync::Arc;

use async_trait::async_trait;

use super::record::{Delta, Record};
use crate::error::{Error, ErrorCode};
use crate::token::TokenHash;

/// What [`SessionStore::try_lock`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedLock {
    /// The store keeps no locks shared between processes (one process owns it: memory, the
    /// cookie store): a lock in this process is enough.
    Local,
    /// Taken, under this random value: release it with [`SessionStore::unlock`] (it also
    /// expires by itself).
    Held(String),
    /// Another holder has it.
    Busy,
}

impl SharedLock {
    /// A new holder's value for a store that keeps its locks as values: 128 random bits
    /// (CSPRNG), hex, so no other holder can guess it and release the lock.
    pub(crate) fn new_holder() -> String {
        let mut value = [0u8; 16];
        crate::token::fill_random(&mut value);
        value.iter().map(|b| format!("{b:02x}")).collect()
    }
}

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
    /// The store cannot do this by nature (the cookie store cannot end one session by id: the
    /// server keeps nothing to forget). The message says what to do instead.
    #[error("{0}")]
    Unsupported(&'static str),
}

/// Which sessions [`SessionStore::revoke`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoke<'a> {
    /// One session, by id.
    One(&'a TokenHash),
    /// Every session of a user except `keep` (the session that stays, e.g. after a password
    /// change, which the caller re-issues).
    User {
        /// The user.
        user_id: i64,
        /// A session of that user left alone.
        keep: Option<&'a TokenHash>,
    },
}

/// What [`SessionStore::revoke`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// This many server-side sessions were deleted; each is refused at its next request.
    Deleted(u64),
    /// The user's session generation was bumped (cookie store): every sealed session issued
    /// before is refused at its next request. How many exist is unknown: the browsers hold them.
    Generation,
}

impl Ended {
    /// Two results together (ending several users' sessions).
    #[must_use]
    pub fn and(self, other: Ended) -> Ended {
        match (self, other) {
            (Ended::Deleted(a), Ended::Deleted(b)) => Ended::Deleted(a.saturating_add(b)),
            _ => Ended::Generation,
        }
    }

    /// The number of deleted sessions, `None` when they could not be counted (cookie store).
    pub fn count(self) -> Option<u64> {
        match self {
            Ended::Deleted(n) => Some(n),
            Ended::Generation => None,
        }
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Deleted(n) => write!(f, "ended {n} session(s)"),
            Ended::Generation => f.write_str(
                "ended every session in scope: the session generation was bumped (cookie store), so each sealed session is refused at its next request",
            ),
        }
    }
}

/// [`SessionStore::revoke`] for stores that hold the records: delete them. The server-side
/// stores implement `revoke` with this; a wrapper forwards to its inner store instead.
///
/// # Errors
/// What `delete` or `delete_user` answer.
pub async fn revoke_by_deleting<S: SessionStore + ?Sized>(
    store: &S,
    what: Revoke<'_>,
) -> Result<Ended, StoreError> {
    Ok(match what {
        Revoke::One(key) => Ended::Deleted(u64::from(store.delete(key).await?)),
        Revoke::User { user_id, keep } => {
            let n = store.delete_user(user_id, keep).await?.len();
            Ended::Deleted(u64::try_from(n).unwrap_or(u64::MAX))
        }
    })
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
    /// The record under `key` if this store holds a copy it may answer from without waiting
    /// (the read cache's hit), expired or not: the caller checks expiry, as it does after
    /// [`load`](Self::load). `None` means "ask `load`", never "no such session". It is not a
    /// store operation (no I/O, not timed by the metrics): a cached `load` through the metrics
    /// wrapper cost two boxed futures and three clock reads, ≈ 2 % of `/auth/me`'s CPU time
    /// (perf); with this path and the one-credential path in `Session::loaded`, `/auth/me` went
    /// from 46,671 to 45,376 instructions (callgrind, bench/RESULTS.md, issue 20). A store
    /// without a cache keeps the default.
    fn cached(&self, _key: &TokenHash) -> Option<Arc<Record>> {
        None
    }
    /// The live record under `key` as every instance sees it now: a caching store reads its
    /// durable store, not its own copy, which learns of other instances' writes only when their
    /// announcement arrives. For decisions that must not act on a stale copy (whether another
    /// instance already refreshed a session's provider tokens). Required, with no default, so
    /// that no wrapper can inherit a read that goes to its own (or its inner store's) cache: a
    /// store without a cache answers what [`load`](Self::load) answers, a wrapper forwards.
    async fn load_latest(&self, key: &TokenHash) -> Result<Option<Arc<Record>>, StoreError>;
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
    /// Ends sessions: the one operation every way of ending sessions reaches (logout, logout
    /// everywhere, password change and reset, disabling a user, the owner's and the
    /// administrator's revoke), through [`crate::session::SessionManager::end`]. Required, with no
    /// default, so that no store (or wrapper) can inherit a revocation that does nothing: a
    /// server-side store deletes ([`revoke_by_deleting`]), the cookie store bumps the user's
    /// generation and refuses [`Revoke::One`] with [`StoreError::Unsupported`].
    async fn revoke(&self, what: Revoke<'_>) -> Result<Ended, StoreError>;
    /// Removes expired records; returns how many. Called by the background purge task.
    async fn delete_expired(&self) -> Result<u64, StoreError>;
    /// Checks that the backend answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Number of records held, expired or not (for tests and metrics).
    async fn count(&self) -> Result<u64, StoreError>;

    /// Takes the short lock `name`, shared by every instance on this store, for at most `ttl`
    /// (a crashed holder cannot keep it). For work that must happen once across instances
    /// (refreshing a session's rotating provider tokens). The default, [`SharedLock::Local`], is
    /// for stores that one process owns (memory, the cookie store); a shared store implements it
    /// (Redis: `SET NX PX`; SQLite and PostgreSQL: the `shared_locks` table), a wrapper forwards
    /// it.
    async fn try_lock(
        &self,
        name: &str,
        ttl: std::time::Duration,
    ) -> Result<SharedLock, StoreError> {
        let _ = (name, ttl);
        Ok(SharedLock::Local)
    }

    /// Releases a lock [`try_lock`](Self::try_lock) took, only if it is still this holder's
    /// (compare, then delete: an expired lock someone else took since is left alone).
    async fn unlock(&self, name: &str, lock: &SharedLock) -> Result<(), StoreError> {
        let _ = (name, lock);
        Ok(())
    }
}

/// A store failure as the API's error: 503 while the store is down, 401 `session_expired` when
/// the session went away mid-request. Here, next to the store, so `error` needs no `session`.
impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => Error::new(
                ErrorCode::StoreUnavailable,
                "the session store is unavailable",
            )
            .with_hint("retry shortly; the server log names the cause")
            .with_source(err),
            StoreError::NotFound => Error::new(
                ErrorCode::SessionExpired,
                "the session ended while this request ran",
            )
            .with_source(err),
            StoreError::Unsupported(why) => Error::new(ErrorCode::SessionNotFound, why)
                .with_hint("end all of the user's sessions instead (logout everywhere, `vestibule session revoke --user NAME`)"),
            StoreError::Collision | StoreError::Corrupt(_) => Error::internal(err),
        }
    }
}
