//! Durable sessions in the database: the embedded SQLite file or PostgreSQL, one set of queries.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::Row;

use crate::db::{Database, Dialect, with_pool};
use crate::session::record::{Delta, Record, UnixTime, now};
use crate::session::store::{Ended, Revoke, SessionStore, SharedLock, StoreError};
use crate::token::TokenHash;

/// How many expired sessions one purge statement deletes (see `delete_expired`).
const PURGE_BATCH: i64 = 1000;

/// One purge batch. `expires_at` alone decides, because every row written holds
/// `expires_at <= absolute_expires_at` ([`row_expires_at`]; migration 0011 clamped older rows),
/// so the `sessions_by_expiry` index finds the batch. With `OR absolute_expires_at <= $1` (no
/// index) each batch of the purge of 1M sessions scanned the table.
const PURGE_ONE_BATCH: &str = "DELETE FROM sessions WHERE key IN (SELECT key FROM sessions \
     WHERE expires_at <= $1 LIMIT $2)";

/// The `expires_at` a row stores: never past the absolute cap. The rule lives here, at the one
/// place rows are written, rather than in every caller that builds a record: the purge
/// ([`PURGE_ONE_BATCH`]) relies on it.
fn row_expires_at(r: &Record) -> UnixTime {
    r.expires_at.min(r.absolute_expires_at)
}

/// The longest pause between two purge batches.
const PURGE_MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Sessions in the `sessions` table; they survive restarts, and on PostgreSQL they are shared by
/// every instance using the database.
#[derive(Debug, Clone)]
pub struct SqlStore {
    db: Database,
}

/// The name this store had when SQLite was the only database.
pub type SqliteStore = SqlStore;

impl SqlStore {
    /// A store on an opened (migrated) database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

macro_rules! columns {
    () => {
        "key, user_id, data, created_at, last_seen, expires_at, absolute_expires_at, user_agent"
    };
}

/// One live record by key: `$1` the key, `$2` now.
const SELECT_LIVE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM sessions WHERE key = $1 AND expires_at > $2 AND absolute_expires_at > $2"
);

/// Same as [`SELECT_LIVE`], locking the row until the transaction ends (PostgreSQL).
const SELECT_LIVE_FOR_UPDATE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM sessions WHERE key = $1 AND expires_at > $2 AND absolute_expires_at > $2 FOR UPDATE"
);

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn key_from(bytes: Vec<u8>) -> Result<TokenHash, StoreError> {
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("key is not 32 bytes".into()))?;
    Ok(TokenHash::from_bytes(key))
}

/// Decodes a sessions row of either backend (expanded per backend by `with_pool!`).
macro_rules! decode {
    ($row:expr) => {{
        let row = $row;
        let data: String = row.try_get("data").map_err(corrupt)?;
        let data: Map<String, Value> = serde_json::from_str(&data).map_err(corrupt)?;
        let mut record = Record {
            key: key_from(row.try_get("key").map_err(corrupt)?)?,
            user_id: row.try_get("user_id").map_err(corrupt)?,
            user: None,
            data,
            created_at: row.try_get("created_at").map_err(corrupt)?,
            last_seen: row.try_get("last_seen").map_err(corrupt)?,
            expires_at: row.try_get("expires_at").map_err(corrupt)?,
            absolute_expires_at: row.try_get("absolute_expires_at").map_err(corrupt)?,
            user_agent: row
                .try_get::<Option<String>, _>("user_agent")
                .map_err(corrupt)?
                .map(|ua| crate::session::record::shared_user_agent(&ua)),
        };
        record.take_user_from_data().map_err(corrupt)?;
        Ok::<Record, StoreError>(record)
    }};
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::unavailable(e)
}

fn encode_data(data: &Map<String, Value>) -> Result<String, StoreError> {
    serde_json::to_string(data).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn create(&self, r: &Record) -> Result<(), StoreError> {
        let data = encode_data(&r.stored_data())?;
        let done = with_pool!(self.db, write, |pool, _d| {
            sqlx::query(concat!(
                "INSERT INTO sessions (",
                columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (key) DO NOTHING"
            ))
            .bind(&r.key.as_bytes()[..])
            .bind(r.user_id)
            .bind(&data)
            .bind(r.created_at)
            .bind(r.last_seen)
            .bind(row_expires_at(r))
            .bind(r.absolute_expires_at)
            .bind(r.user_agent.as_deref())
            .execute(pool)
            .await
            .map_err(unavailable)?
            .rows_affected()
        });
        if done == 0 {
            Err(StoreError::Collision)
        } else {
            Ok(())
        }
    }

    async fn load_latest(&self, key: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        // No cache here: every load is the latest.
        self.load(key).await
    }

    async fn load(&self, key: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        let record = with_pool!(self.db, read, |pool, _d| {
            let row = sqlx::query(SELECT_LIVE)
                .bind(&key.as_bytes()[..])
                .bind(now())
                .fetch_optional(pool)
                .await
                .map_err(unavailable)?;
            row.as_ref().map(|r| decode!(r)).transpose()?
        });
        Ok(record.map(Arc::new))
    }

    async fn save(&self, key: &TokenHash, delta: &Delta) -> Result<Arc<Record>, StoreError> {
        // SQLite: one writer connection, and IMMEDIATE takes the write lock before the read, so
        // the read-merge-write cannot interleave with another save (not even from another
        // process). PostgreSQL: the read locks the row until the commit.
        let record = with_pool!(self.db, write, |pool, d| {
            let mut tx = pool
                .begin_with(d.begin_write())
                .await
                .map_err(unavailable)?;
            let select = match d {
                Dialect::Sqlite => SELECT_LIVE,
                Dialect::Postgres => SELECT_LIVE_FOR_UPDATE,
            };
            let row = sqlx::query(select)
                .bind(&key.as_bytes()[..])
                .bind(now())
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
            let Some(row) = row else {
                return Err(StoreError::NotFound);
            };
            let mut record = decode!(&row)?;
            record.apply(delta);
            sqlx::query(
                "UPDATE sessions SET data = $1, last_seen = $2, expires_at = $3 WHERE key = $4",
            )
            .bind(encode_data(&record.stored_data())?)
            .bind(record.last_seen)
            .bind(row_expires_at(&record))
            .bind(&key.as_bytes()[..])
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            record
        });
        Ok(Arc::new(record))
    }

    async fn delete(&self, key: &TokenHash) -> Result<bool, StoreError> {
        let done = with_pool!(self.db, write, |pool, _d| {
            sqlx::query("DELETE FROM sessions WHERE key = $1")
                .bind(&key.as_bytes()[..])
                .execute(pool)
                .await
                .map_err(unavailable)?
                .rows_affected()
        });
        Ok(done > 0)
    }

    async fn list_user(&self, user_id: i64) -> Result<Vec<Record>, StoreError> {
        with_pool!(self.db, read, |pool, _d| {
            let rows = sqlx::query(concat!(
                "SELECT ",
                columns!(),
                " FROM sessions WHERE user_id = $1 AND expires_at > $2 \
                 AND absolute_expires_at > $2 ORDER BY created_at, key"
            ))
            .bind(user_id)
            .bind(now())
            .fetch_all(pool)
            .await
            .map_err(unavailable)?;
            rows.iter().map(|r| decode!(r)).collect()
        })
    }

    async fn delete_user(
        &self,
        user_id: i64,
        keep: Option<&TokenHash>,
    ) -> Result<Vec<TokenHash>, StoreError> {
        let keep: Vec<u8> = keep.map(|k| k.as_bytes().to_vec()).unwrap_or_default();
        with_pool!(self.db, write, |pool, _d| {
            let rows =
                sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND key != $2 RETURNING key")
                    .bind(user_id)
                    .bind(&keep)
                    .fetch_all(pool)
                    .await
                    .map_err(unavailable)?;
            rows.iter()
                .map(|row| key_from(row.try_get("key").map_err(corrupt)?))
                .collect()
        })
    }

    async fn revoke(&self, what: Revoke<'_>) -> Result<Ended, StoreError> {
        crate::session::store::revoke_by_deleting(self, what).await
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        with_pool!(self.db, write, |pool, _d| {
            // Expired shared locks too (one row per session that ever refreshed provider tokens).
            sqlx::query("DELETE FROM shared_locks WHERE expires_at <= $1")
                .bind(now_ms())
                .execute(pool)
                .await
                .map_err(unavailable)?;
            Ok::<_, StoreError>(())
        })?;
        // In batches, each its own statement, with a pause after each four times as long as the
        // batch took: the purge uses at most a fifth of a core. Measured with 1M sessions
        // expiring together on one pinned core serving 60k req/s (bench/growth.sh, RESULTS.md):
        // one DELETE ran 14 s and `/auth/me`'s p99 rose from ≈ 2 to 6.5 ms; batches without a
        // pause stretched that to 40 s at the same p99 (the purge's CPU competes with the
        // requests however it is cut). The pause trades purge time for request latency; nothing
        // waits on the purge.
        let t = now();
        let mut total = 0;
        loop {
            let started = std::time::Instant::now();
            let n = with_pool!(self.db, write, |pool, _d| {
                sqlx::query(PURGE_ONE_BATCH)
                    .bind(t)
                    .bind(PURGE_BATCH)
                    .execute(pool)
                    .await
                    .map_err(unavailable)?
                    .rows_affected()
            });
            total += n;
            if n < PURGE_BATCH.unsigned_abs() {
                return Ok(total);
            }
            tokio::time::sleep((started.elapsed() * 4).min(PURGE_MAX_PAUSE)).await;
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await.map_err(StoreError::unavailable)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = with_pool!(self.db, read, |pool, _d| {
            sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
                .fetch_one(pool)
                .await
                .map_err(unavailable)?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// A row in `shared_locks`: inserted, or an expired one overwritten, in one statement (the
    /// conflict check and the update are atomic on both databases), so one instance at a time
    /// holds it. On PostgreSQL every instance of the deployment shares it; on SQLite it also
    /// covers several processes on one file.
    async fn try_lock(
        &self,
        name: &str,
        ttl: std::time::Duration,
    ) -> Result<SharedLock, StoreError> {
        let holder = SharedLock::new_holder();
        let t = now_ms();
        let until = t.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1));
        let taken = with_pool!(self.db, write, |pool, _d| {
            sqlx::query(
                "INSERT INTO shared_locks (name, holder, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 expires_at = excluded.expires_at WHERE shared_locks.expires_at <= $4",
            )
            .bind(name)
            .bind(&holder)
            .bind(until)
            .bind(t)
            .execute(pool)
            .await
            .map_err(unavailable)?
            .rows_affected()
        });
        Ok(if taken == 1 {
            SharedLock::Held(holder)
        } else {
            SharedLock::Busy
        })
    }

    /// Deletes the row only while it still names this holder: a lock that expired and was taken
    /// by another instance meanwhile stays taken.
    async fn unlock(&self, name: &str, lock: &SharedLock) -> Result<(), StoreError> {
        let SharedLock::Held(holder) = lock else {
            return Ok(());
        };
        with_pool!(self.db, write, |pool, _d| {
            sqlx::query("DELETE FROM shared_locks WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(pool)
                .await
                .map_err(unavailable)?;
        });
        Ok(())
    }
}

/// Now in Unix milliseconds (lock lifetimes are seconds or less: whole seconds are too coarse).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The purge's batch query finds its rows through `sessions_by_expiry` rather than a scan of
    /// the table (with 1M rows a scan per batch of 1,000 is what the purge used to cost).
    #[tokio::test]
    async fn a_purge_batch_uses_the_expiry_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::open(&dir.path().join("plan.db"))
            .await
            .expect("open");
        let plan: Vec<String> = with_pool!(db, read, |pool, _d| {
            // A constant with a prefix: nothing from outside goes into the text.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "EXPLAIN QUERY PLAN {PURGE_ONE_BATCH}"
            )))
            .bind(0_i64)
            .bind(PURGE_BATCH)
            .fetch_all(pool)
            .await
            .expect("explain")
            .iter()
            .map(|row| row.try_get::<String, _>("detail").expect("detail"))
            .collect()
        });
        let plan = plan.join("\n");
        assert!(plan.contains("sessions_by_expiry"), "plan: {plan}");
        assert!(
            !plan.lines().any(|l| l.trim() == "SCAN sessions"),
            "plan: {plan}"
        );
    }
}
