//! Durable sessions in the embedded SQLite database.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::db::Database;
use crate::session::record::{Delta, Record, now};
use crate::session::store::{SessionStore, StoreError};
use crate::token::TokenHash;

/// Sessions in the `sessions` table; they survive restarts.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: Database,
}

impl SqliteStore {
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

fn decode(row: &SqliteRow) -> Result<Record, StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(e.to_string());
    let key: Vec<u8> = row.try_get("key").map_err(|e| corrupt(&e))?;
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| StoreError::Corrupt("key is not 32 bytes".into()))?;
    let data: String = row.try_get("data").map_err(|e| corrupt(&e))?;
    let data: Map<String, Value> = serde_json::from_str(&data).map_err(|e| corrupt(&e))?;
    Ok(Record {
        key: TokenHash::from_bytes(key),
        user_id: row.try_get("user_id").map_err(|e| corrupt(&e))?,
        data,
        created_at: row.try_get("created_at").map_err(|e| corrupt(&e))?,
        last_seen: row.try_get("last_seen").map_err(|e| corrupt(&e))?,
        expires_at: row.try_get("expires_at").map_err(|e| corrupt(&e))?,
        absolute_expires_at: row
            .try_get("absolute_expires_at")
            .map_err(|e| corrupt(&e))?,
        user_agent: row.try_get("user_agent").map_err(|e| corrupt(&e))?,
    })
}

fn encode_data(data: &Map<String, Value>) -> Result<String, StoreError> {
    serde_json::to_string(data).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create(&self, r: &Record) -> Result<(), StoreError> {
        let done = sqlx::query(concat!(
            "INSERT INTO sessions (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (key) DO NOTHING"
        ))
        .bind(&r.key.as_bytes()[..])
        .bind(r.user_id)
        .bind(encode_data(&r.data)?)
        .bind(r.created_at)
        .bind(r.last_seen)
        .bind(r.expires_at)
        .bind(r.absolute_expires_at)
        .bind(&r.user_agent)
        .execute(&self.db.write)
        .await
        .map_err(StoreError::unavailable)?;
        if done.rows_affected() == 0 {
            Err(StoreError::Collision)
        } else {
            Ok(())
        }
    }

    async fn load(&self, key: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        let row = sqlx::query(SELECT_LIVE)
            .bind(&key.as_bytes()[..])
            .bind(now())
            .fetch_optional(&self.db.read)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(row.as_ref().map(decode).transpose()?.map(Arc::new))
    }

    async fn save(&self, key: &TokenHash, delta: &Delta) -> Result<Arc<Record>, StoreError> {
        // One writer connection, and IMMEDIATE takes the write lock before the read, so the
        // read-merge-write cannot interleave with another save (not even from another process).
        let mut tx = self
            .db
            .write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::unavailable)?;
        let row = sqlx::query(SELECT_LIVE)
            .bind(&key.as_bytes()[..])
            .bind(now())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::unavailable)?;
        let Some(row) = row else {
            return Err(StoreError::NotFound);
        };
        let mut record = decode(&row)?;
        record.apply(delta);
        sqlx::query(
            "UPDATE sessions SET data = $1, last_seen = $2, expires_at = $3 WHERE key = $4",
        )
        .bind(encode_data(&record.data)?)
        .bind(record.last_seen)
        .bind(record.expires_at)
        .bind(&key.as_bytes()[..])
        .execute(&mut *tx)
        .await
        .map_err(StoreError::unavailable)?;
        tx.commit().await.map_err(StoreError::unavailable)?;
        Ok(Arc::new(record))
    }

    async fn delete(&self, key: &TokenHash) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE key = $1")
            .bind(&key.as_bytes()[..])
            .execute(&self.db.write)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_user(&self, user_id: i64) -> Result<Vec<Record>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM sessions WHERE user_id = $1 AND expires_at > $2 AND absolute_expires_at > $2 \
             ORDER BY created_at, key"
        ))
        .bind(user_id)
        .bind(now())
        .fetch_all(&self.db.read)
        .await
        .map_err(StoreError::unavailable)?;
        rows.iter().map(decode).collect()
    }

    async fn delete_user(
        &self,
        user_id: i64,
        keep: Option<&TokenHash>,
    ) -> Result<Vec<TokenHash>, StoreError> {
        let keep: Vec<u8> = keep.map(|k| k.as_bytes().to_vec()).unwrap_or_default();
        let rows =
            sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND key != $2 RETURNING key")
                .bind(user_id)
                .bind(keep)
                .fetch_all(&self.db.write)
                .await
                .map_err(StoreError::unavailable)?;
        rows.iter()
            .map(|row| {
                let key: Vec<u8> = row
                    .try_get("key")
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let key: [u8; 32] = key
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("key is not 32 bytes".into()))?;
                Ok(TokenHash::from_bytes(key))
            })
            .collect()
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR absolute_expires_at <= $1")
                .bind(now())
                .execute(&self.db.write)
                .await
                .map_err(StoreError::unavailable)?;
        Ok(done.rows_affected())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await.map_err(StoreError::unavailable)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
            .fetch_one(&self.db.read)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
