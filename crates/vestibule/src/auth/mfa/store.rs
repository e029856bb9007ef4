//! The second factors in the database (SQLite or PostgreSQL, one set of queries).

use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::db::{Database, Dialect, with_pool};
use crate::email::Notice;
use crate::email::outbox::commit_with;
use crate::error::{Error, ErrorCode};
use crate::session::now;

fn db_error(e: sqlx::Error) -> Error {
    Error::new(
        ErrorCode::StoreUnavailable,
        "the second-factor database is unavailable",
    )
    .with_hint("retry shortly; the server log names the cause")
    .with_source(e)
}

/// Deletes the recovery codes of `$1` when no second factor is left (they recover a factor;
/// without one they would be a dormant credential that a new factor could silently revive).
const DELETE_CODES_WITHOUT_FACTOR: &str = "DELETE FROM mfa_recovery_codes WHERE user_id = $1 \
     AND NOT EXISTS (SELECT 1 FROM webauthn_credentials WHERE user_id = $1) \
     AND NOT EXISTS (SELECT 1 FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL)";

/// Starts a write transaction that serialises the changes to one user's factors and codes:
/// SQLite takes the write lock at `BEGIN IMMEDIATE`; PostgreSQL locks the user's row.
macro_rules! begin_user_tx {
    ($pool:expr, $d:expr, $user_id:expr) => {{
        let mut tx = $pool.begin_with($d.begin_write()).await.map_err(db_error)?;
        if $d == Dialect::Postgres {
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind($user_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx
    }};
}

/// Inserts the recovery code hashes `$hashes` of `$user_id` inside the transaction `$tx`.
macro_rules! insert_codes {
    ($tx:expr, $user_id:expr, $hashes:expr) => {
        for h in $hashes {
            sqlx::query("INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind($user_id)
                .bind(h.as_slice())
                .execute(&mut *$tx)
                .await
                .map_err(db_error)?;
        }
    };
}

/// Which second factors a user has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MfaMethods {
    /// A confirmed TOTP authenticator.
    pub totp: bool,
    /// Registered passkeys.
    pub passkeys: i64,
    /// Unused recovery codes.
    pub recovery_codes: i64,
}

impl MfaMethods {
    /// Whether a login needs a second factor.
    pub fn any(&self) -> bool {
        self.totp || self.passkeys > 0
    }

    /// The method names a pending login may complete with, as `/auth/login` lists them.
    pub fn names(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.totp {
            m.push("totp");
        }
        if self.passkeys > 0 {
            m.push("webauthn");
        }
        if self.any() && self.recovery_codes > 0 {
            m.push("recovery");
        }
        m
    }
}

/// A stored passkey.
#[derive(Debug, Clone)]
pub struct StoredPasskey {
    /// Row id.
    pub id: i64,
    /// Owner.
    pub user_id: i64,
    /// The WebAuthn user handle the authenticator keeps.
    pub user_handle: Vec<u8>,
    /// The webauthn-rs `Passkey` as JSON.
    pub passkey: String,
    /// A label.
    pub name: String,
}

macro_rules! decode_passkey {
    ($row:expr) => {{
        let row = $row;
        Ok::<StoredPasskey, sqlx::Error>(StoredPasskey {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            user_handle: row.try_get("user_handle")?,
            passkey: row.try_get("passkey")?,
            name: row.try_get("name")?,
        })
    }};
}

/// The second-factor tables.
#[derive(Debug, Clone)]
pub struct MfaStore {
    db: Database,
}

impl MfaStore {
    /// The tables on an opened database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Which factors `user_id` has.
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn methods(&self, user_id: i64) -> Result<MfaMethods, Error> {
        with_pool!(self.db, read, |pool, _d| {
            let row = sqlx::query(
                "SELECT \
                 (SELECT COUNT(*) FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL) AS totp, \
                 (SELECT COUNT(*) FROM webauthn_credentials WHERE user_id = $1) AS passkeys, \
                 (SELECT COUNT(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL) AS recovery",
            )
            .bind(user_id)
            .fetch_one(pool)
            .await
            .map_err(db_error)?;
            let totp: i64 = row.try_get("totp").map_err(db_error)?;
            Ok(MfaMethods {
                totp: totp > 0,
                passkeys: row.try_get("passkeys").map_err(db_error)?,
                recovery_codes: row.try_get("recovery").map_err(db_error)?,
            })
        })
    }

    /// Starts (or restarts) a TOTP enrolment with a sealed secret. `false` when a confirmed
    /// authenticator exists already (remove it first).
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn totp_begin(&self, user_id: i64, sealed: &str) -> Result<bool, Error> {
        let n = with_pool!(self.db, write, |pool, _d| {
            sqlx::query(
                "INSERT INTO mfa_totp (user_id, secret, confirmed_at, last_step, created_at) \
                 VALUES ($1, $2, NULL, NULL, $3) \
                 ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, \
                 last_step = NULL, created_at = excluded.created_at \
                 WHERE mfa_totp.confirmed_at IS NULL",
            )
            .bind(user_id)
            .bind(sealed)
            .bind(now())
            .execute(pool)
            .await
            .map_err(db_error)?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// The sealed TOTP secret of `user_id` and whether it is confirmed.
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn totp(&self, user_id: i64) -> Result<Option<(String, bool)>, Error> {
        with_pool!(self.db, read, |pool, _d| {
            let row = sqlx::query(
                "SELECT secret, confirmed_at IS NOT NULL AS confirmed FROM mfa_totp WHERE user_id = $1",
            )
            .bind(user_id)
            .fetch_optional(pool)
            .await
            .map_err(db_error)?;
            row.map(|r| -> Result<(String, bool), Error> {
                Ok((
                    r.try_get("secret").map_err(db_error)?,
                    r.try_get("confirmed").map_err(db_error)?,
                ))
            })
            .transpose()
        })
    }

    /// Records that a code of `step` was accepted: confirms a pending enrolment (`confirm`), or
    /// for a confirmed authenticator, advances the last used step. `false` when the step is not
    /// after the last accepted one (a replay) or the state changed meanwhile. Atomic: two
    /// requests with one code cannot both succeed. `notice` (a confirmation's "second factor
    /// added") is written in the same transaction, only when the step was accepted.
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn totp_accept(
        &self,
        user_id: i64,
        step: i64,
        confirm: bool,
        notice: &Notice,
    ) -> Result<bool, Error> {
        let n = with_pool!(self.db, write, |pool, d| {
            let q = if confirm {
                sqlx::query(
                    "UPDATE mfa_totp SET confirmed_at = $3, last_step = $2 \
                     WHERE user_id = $1 AND confirmed_at IS NULL",
                )
                .bind(user_id)
                .bind(step)
                .bind(now())
            } else {
                sqlx::query(
                    "UPDATE mfa_totp SET last_step = $2 WHERE user_id = $1 \
                     AND confirmed_at IS NOT NULL AND (last_step IS NULL OR last_step < $2)",
                )
                .bind(user_id)
                .bind(step)
            };
            if notice.is_some() {
                let mut tx = pool.begin_with(d.begin_write()).await.map_err(db_error)?;
                let n = q.execute(&mut *tx).await.map_err(db_error)?.rows_affected();
                if n == 1 {
                    commit_with!(tx, notice).map_err(db_error)?;
                }
                n
            } else {
                q.execute(pool).await.map_err(db_error)?.rows_affected()
            }
        });
        Ok(n == 1)
    }

    /// Removes the TOTP authenticator (confirmed or not), and the recovery codes when no passkey
    /// is left, with `notice` in the same transaction. `false` (and no notice) when there was
    /// none.
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn totp_remove(&self, user_id: i64, notice: &Notice) -> Result<bool, Error> {
        with_pool!(self.db, write, |pool, d| {
            let mut tx = begin_user_tx!(pool, d, user_id);
            let n = sqlx::query("DELETE FROM mfa_totp WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected();
            if n == 0 {
                return Ok(false);
            }
            sqlx::query(DELETE_CODES_WITHOUT_FACTOR)
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            commit_with!(tx, notice).map_err(db_error)?;
            Ok(true)
        })
    }

    /// Replaces the recovery codes of `user_id` by `hashes` (TOTP confirmation).
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn set_recovery_codes(&self, user_id: i64, hashes: &[[u8; 32]]) -> Result<(), Error> {
        with_pool!(self.db, write, |pool, d| {
            let mut tx = begin_user_tx!(pool, d, user_id);
            sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            insert_codes!(tx, user_id, hashes);
            tx.commit().await.map_err(db_error)?;
            Ok(())
        })
    }

    /// Stores `hashes` as the recovery codes of `user_id` if the user has none (neither unused
    /// nor spent ones): the set a first factor brings. `false`, and nothing changes, when a set
    /// exists already.
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn issue_recovery_codes_if_none(
        &self,
        user_id: i64,
        hashes: &[[u8; 32]],
    ) -> Result<bool, Error> {
        with_pool!(self.db, write, |pool, d| {
            let mut tx = begin_user_tx!(pool, d, user_id);
            let existing: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM mfa_recovery_codes WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_error)?;
            if existing > 0 {
                return Ok(false);
            }
            insert_codes!(tx, user_id, hashes);
            tx.commit().await.map_err(db_error)?;
            Ok(true)
        })
    }

    /// Replaces every recovery code of `user_id` (used or not) by `hashes`, if the user has a
    /// second factor. `false`, and nothing changes, when there is none: codes recover a factor.
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn regenerate_recovery_codes(
        &self,
        user_id: i64,
        hashes: &[[u8; 32]],
    ) -> Result<bool, Error> {
        with_pool!(self.db, write, |pool, d| {
            let mut tx = begin_user_tx!(pool, d, user_id);
            let factors: i64 = sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL) \
                 + (SELECT COUNT(*) FROM webauthn_credentials WHERE user_id = $1)",
            )
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
            if factors == 0 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            insert_codes!(tx, user_id, hashes);
            tx.commit().await.map_err(db_error)?;
            Ok(true)
        })
    }

    /// Spends the recovery code with hash `hash`: `true` once, `false` for an unknown or used
    /// code. Compared in constant time against each unused code of the user.
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn use_recovery_code(&self, user_id: i64, hash: &[u8; 32]) -> Result<bool, Error> {
        let rows: Vec<(i64, Vec<u8>)> = with_pool!(self.db, write, |pool, _d| {
            let rows = sqlx::query(
                "SELECT id, code_hash FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await
            .map_err(db_error)?;
            rows.iter()
                .map(|r| Ok((r.try_get("id")?, r.try_get("code_hash")?)))
                .collect::<Result<_, sqlx::Error>>()
                .map_err(db_error)?
        });
        let mut found = None;
        for (id, stored) in &rows {
            if bool::from(stored.as_slice().ct_eq(hash.as_slice())) {
                found = Some(*id);
            }
        }
        let Some(id) = found else {
            return Ok(false);
        };
        let n = with_pool!(self.db, write, |pool, _d| {
            sqlx::query(
                "UPDATE mfa_recovery_codes SET used_at = $2 WHERE id = $1 AND used_at IS NULL",
            )
            .bind(id)
            .bind(now())
            .execute(pool)
            .await
            .map_err(db_error)?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Stores a new passkey, with `notice` in the same transaction. `false` (and no notice)
    /// when the credential id is registered already.
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn add_passkey(
        &self,
        user_id: i64,
        credential_id: &[u8],
        user_handle: &[u8],
        passkey: &str,
        name: &str,
        notice: &Notice,
    ) -> Result<bool, Error> {
        let n = with_pool!(self.db, write, |pool, d| {
            let mut tx = pool.begin_with(d.begin_write()).await.map_err(db_error)?;
            let n = sqlx::query(
                "INSERT INTO webauthn_credentials \
                 (user_id, credential_id, user_handle, passkey, name, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(user_id)
            .bind(credential_id)
            .bind(user_handle)
            .bind(passkey)
            .bind(name)
            .bind(now())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
            if n == 1 {
                commit_with!(tx, notice).map_err(db_error)?;
            }
            n
        });
        Ok(n == 1)
    }

    /// The passkeys of `user_id`.
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn passkeys(&self, user_id: i64) -> Result<Vec<StoredPasskey>, Error> {
        with_pool!(self.db, read, |pool, _d| {
            let rows = sqlx::query(
                "SELECT id, user_id, user_handle, passkey, name FROM webauthn_credentials \
                 WHERE user_id = $1 ORDER BY id",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await
            .map_err(db_error)?;
            rows.iter()
                .map(|r| decode_passkey!(r))
                .collect::<Result<_, _>>()
                .map_err(db_error)
        })
    }

    /// The passkey with this credential id (passwordless login).
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn passkey_by_credential(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<StoredPasskey>, Error> {
        with_pool!(self.db, read, |pool, _d| {
            let row = sqlx::query(
                "SELECT id, user_id, user_handle, passkey, name FROM webauthn_credentials \
                 WHERE credential_id = $1",
            )
            .bind(credential_id)
            .fetch_optional(pool)
            .await
            .map_err(db_error)?;
            row.as_ref()
                .map(|r| decode_passkey!(r))
                .transpose()
                .map_err(db_error)
        })
    }

    /// Removes passkey `id` of `user_id`, and the recovery codes when it was the last second
    /// factor, with `notice` in the same transaction. `false` (and no notice) when no such
    /// passkey belongs to the user.
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn remove_passkey(
        &self,
        user_id: i64,
        id: i64,
        notice: &Notice,
    ) -> Result<bool, Error> {
        with_pool!(self.db, write, |pool, d| {
            let mut tx = begin_user_tx!(pool, d, user_id);
            let n = sqlx::query("DELETE FROM webauthn_credentials WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected();
            if n != 1 {
                return Ok(false);
            }
            sqlx::query(DELETE_CODES_WITHOUT_FACTOR)
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            commit_with!(tx, notice).map_err(db_error)?;
            Ok(true)
        })
    }

    /// Saves a passkey after use (its signature counter moved).
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn touch_passkey(&self, id: i64, passkey: &str) -> Result<(), Error> {
        with_pool!(self.db, write, |pool, _d| {
            sqlx::query(
                "UPDATE webauthn_credentials SET passkey = $2, last_used_at = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(passkey)
            .bind(now())
            .execute(pool)
            .await
            .map_err(db_error)?;
        });
        Ok(())
    }
}
