//! The `outbox` table: written in the caller's transaction ([`enqueue!`]), claimed and marked by
//! the worker.

use std::time::Duration;

use sqlx::Row;

use crate::db::{Database, Dialect, with_pool};
use crate::session::{UnixTime, now};

/// A message to write into the outbox.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Its template kind (the `kind` column).
    pub kind: &'static str,
    /// One recipient.
    pub recipient: String,
    /// Subject.
    pub subject: String,
    /// Text part.
    pub text: String,
    /// HTML part.
    pub html: String,
}

/// Inserts an [`Outgoing`] (`$m`) with the executor `$ex` — a transaction of either backend,
/// inside `with_pool!` — so the message commits or rolls back with the change that caused it.
macro_rules! enqueue {
    ($ex:expr, $m:expr) => {{
        let m: &$crate::email::Outgoing = $m;
        let t = $crate::session::now();
        sqlx::query(
            "INSERT INTO outbox (kind, recipient, subject, body_text, body_html, created_at, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(m.kind)
        .bind(m.recipient.as_str())
        .bind(m.subject.as_str())
        .bind(m.text.as_str())
        .bind(m.html.as_str())
        .bind(t)
        .execute($ex)
        .await
    }};
}
pub(crate) use enqueue;

/// Commits the transaction `$tx` (of either backend, inside `with_pool!`) with the
/// [`Notice`](crate::email::Notice) `$notice` written into the outbox first: the one way a change
/// that has a security notice commits, so the change and its notice are one transaction
/// (see [`crate::email::notice`]). Evaluates to `Result<(), sqlx::Error>`; on an error nothing
/// is committed (the transaction rolls back when dropped).
macro_rules! commit_with {
    ($tx:ident, $notice:expr) => {{
        let written = match $notice.message() {
            Some(m) => $crate::email::outbox::enqueue!(&mut *$tx, m).map(|_| ()),
            None => Ok(()),
        };
        match written {
            Ok(()) => $tx.commit().await,
            Err(e) => Err(e),
        }
    }};
}
pub(crate) use commit_with;

/// A claimed row.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Row id.
    pub id: i64,
    /// Kind.
    pub kind: String,
    /// Recipient.
    pub recipient: String,
    /// Subject.
    pub subject: String,
    /// Text part.
    pub text: String,
    /// HTML part.
    pub html: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
    /// When it was written.
    pub created_at: UnixTime,
}

/// The outbox of one database.
#[derive(Debug, Clone)]
pub struct Outbox {
    db: Database,
}

/// One row as stored, for tests and the CLI.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// Id.
    pub id: i64,
    /// Kind.
    pub kind: String,
    /// Recipient.
    pub recipient: String,
    /// Attempts.
    pub attempts: i64,
    /// Last error.
    pub last_error: Option<String>,
    /// Sent at.
    pub sent_at: Option<UnixTime>,
    /// Given up at.
    pub failed_at: Option<UnixTime>,
    /// When it was written (or last put back by [`Outbox::retry`]).
    pub created_at: UnixTime,
    /// When the next attempt is due (pending rows).
    pub next_attempt_at: UnixTime,
}

/// Which rows [`Outbox::retry`] puts back in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryWhich {
    /// One row, pending or given up.
    Id(i64),
    /// Every given-up row.
    AllFailed,
}

impl Outbox {
    /// Over `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Writes one message on its own (no change goes with it).
    ///
    /// # Errors
    /// A database error.
    pub async fn enqueue(&self, m: &Outgoing) -> Result<(), sqlx::Error> {
        with_pool!(self.db, write, |pool, _d| {
            enqueue!(pool, m)?;
        });
        Ok(())
    }

    /// Claims up to `limit` due rows for `lease`: no other worker takes them until the lease
    /// ends. PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent claims never overlap and never
    /// wait on each other; SQLite: the statement runs under the one write lock.
    ///
    /// # Errors
    /// A database error.
    pub async fn claim(&self, lease: Duration, limit: i64) -> Result<Vec<Claimed>, sqlx::Error> {
        let t = now();
        let until = t.saturating_add(i64::try_from(lease.as_secs()).unwrap_or(i64::MAX));
        Ok(with_pool!(self.db, write, |pool, d| {
            let lock = if d == Dialect::Postgres {
                " FOR UPDATE SKIP LOCKED"
            } else {
                ""
            };
            let sql = format!(
                "UPDATE outbox SET attempts = attempts + 1, locked_until = $1 WHERE id IN (\
                 SELECT id FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL \
                 AND next_attempt_at <= $2 AND (locked_until IS NULL OR locked_until <= $2) \
                 ORDER BY id LIMIT $3{lock}) \
                 RETURNING id, kind, recipient, subject, body_text, body_html, attempts, created_at"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(until)
                .bind(t)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok::<_, sqlx::Error>(Claimed {
                        id: r.try_get("id")?,
                        kind: r.try_get("kind")?,
                        recipient: r.try_get("recipient")?,
                        subject: r.try_get("subject")?,
                        text: r.try_get("body_text")?,
                        html: r.try_get("body_html")?,
                        attempts: r.try_get("attempts")?,
                        created_at: r.try_get("created_at")?,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        }))
    }

    /// Marks a row sent and wipes its bodies (they may hold a live link).
    ///
    /// # Errors
    /// A database error.
    pub async fn mark_sent(&self, id: i64) -> Result<(), sqlx::Error> {
        with_pool!(self.db, write, |pool, _d| {
            sqlx::query(
                "UPDATE outbox SET sent_at = $1, locked_until = NULL, last_error = NULL, \
                 body_text = '', body_html = '' WHERE id = $2",
            )
            .bind(now())
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Keeps `error` and schedules the next attempt at `next`.
    ///
    /// # Errors
    /// A database error.
    pub async fn mark_retry(
        &self,
        id: i64,
        next: UnixTime,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        with_pool!(self.db, write, |pool, _d| {
            sqlx::query(
                "UPDATE outbox SET next_attempt_at = $1, locked_until = NULL, last_error = $2 \
                 WHERE id = $3",
            )
            .bind(next)
            .bind(error)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Gives a row up, keeping `error`. The bodies stay, so that `vestibule outbox retry` can
    /// send it once the cause is fixed; `vestibule outbox purge --failed-before` deletes it.
    /// (A link in it expires on its own schedule: 30 minutes for recovery, 24 hours for
    /// verification.)
    ///
    /// # Errors
    /// A database error.
    pub async fn mark_failed(&self, id: i64, error: &str) -> Result<(), sqlx::Error> {
        with_pool!(self.db, write, |pool, _d| {
            sqlx::query(
                "UPDATE outbox SET failed_at = $1, locked_until = NULL, last_error = $2 \
                 WHERE id = $3",
            )
            .bind(now())
            .bind(error)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Messages neither sent nor given up.
    ///
    /// # Errors
    /// A database error.
    pub async fn pending(&self) -> Result<i64, sqlx::Error> {
        Ok(with_pool!(self.db, read, |pool, _d| {
            sqlx::query(
                "SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL",
            )
            .fetch_one(pool)
            .await?
            .try_get::<i64, _>("n")?
        }))
    }

    /// Puts rows back in the queue, due now: a given-up row (or, by id, a pending one) gets a
    /// fresh start (no attempts, the `email.give_up_after` clock restarted; its last error
    /// stays until the next attempt). Sent rows are never re-sent. Returns how many rows.
    ///
    /// # Errors
    /// A database error.
    pub async fn retry(&self, which: RetryWhich) -> Result<u64, sqlx::Error> {
        let t = now();
        Ok(with_pool!(self.db, write, |pool, _d| {
            let q = match which {
                RetryWhich::Id(id) => sqlx::query(
                    "UPDATE outbox SET failed_at = NULL, attempts = 0, created_at = $1, \
                     next_attempt_at = $1, locked_until = NULL WHERE id = $2 AND sent_at IS NULL",
                )
                .bind(t)
                .bind(id),
                RetryWhich::AllFailed => sqlx::query(
                    "UPDATE outbox SET failed_at = NULL, attempts = 0, created_at = $1, \
                     next_attempt_at = $1, locked_until = NULL \
                     WHERE failed_at IS NOT NULL AND sent_at IS NULL",
                )
                .bind(t),
            };
            q.execute(pool).await?.rows_affected()
        }))
    }

    /// Deletes the rows sent before `sent_before` and the rows given up before `failed_before`
    /// (either may be `None`: that kind is kept). Pending rows are never deleted. Returns how
    /// many rows.
    ///
    /// # Errors
    /// A database error.
    pub async fn purge(
        &self,
        sent_before: Option<UnixTime>,
        failed_before: Option<UnixTime>,
    ) -> Result<u64, sqlx::Error> {
        let mut n = 0;
        with_pool!(self.db, write, |pool, _d| {
            if let Some(t) = sent_before {
                n += sqlx::query("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1")
                    .bind(t)
                    .execute(pool)
                    .await?
                    .rows_affected();
            }
            if let Some(t) = failed_before {
                n += sqlx::query(
                    "DELETE FROM outbox WHERE failed_at IS NOT NULL AND failed_at < $1",
                )
                .bind(t)
                .execute(pool)
                .await?
                .rows_affected();
            }
        });
        Ok(n)
    }

    /// Every row, oldest first (tests, the operator).
    ///
    /// # Errors
    /// A database error.
    pub async fn list(&self) -> Result<Vec<OutboxRow>, sqlx::Error> {
        Ok(with_pool!(self.db, read, |pool, _d| {
            let rows = sqlx::query(
                "SELECT id, kind, recipient, attempts, last_error, sent_at, failed_at, created_at, \
                 next_attempt_at FROM outbox ORDER BY id",
            )
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok::<_, sqlx::Error>(OutboxRow {
                        id: r.try_get("id")?,
                        kind: r.try_get("kind")?,
                        recipient: r.try_get("recipient")?,
                        attempts: r.try_get("attempts")?,
                        last_error: r.try_get("last_error")?,
                        sent_at: r.try_get("sent_at")?,
                        failed_at: r.try_get("failed_at")?,
                        created_at: r.try_get("created_at")?,
                        next_attempt_at: r.try_get("next_attempt_at")?,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        }))
    }
}
