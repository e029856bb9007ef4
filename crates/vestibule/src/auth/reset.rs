//! One-time password reset tokens: what an administrator hands a user instead of a password
//! (`vestibule user reset-password`), redeemed by `POST /auth/password/reset`. The administrator
//! never chooses, types or sees the user's password (ASVS 6.4.x); only the SHA-256 of a token is
//! stored; a token is single use, short-lived, and issuing a new one voids the older ones. The
//! self-service recovery link (`POST /auth/password/forgot`) is the same token, written by the
//! same [`PasswordResets::issue_with`] with its message.

use std::time::Duration;

use sqlx::Row;

use super::UserError;
use crate::db::{Database, with_pool};
use crate::email::outbox::{commit_with, enqueue};
use crate::email::{Notice, Outgoing};
use crate::session::{UnixTime, now};
use crate::token::{SecretToken, TokenKind};

/// Uses up, with the executor `$ex`, the live token whose hash is `$hash` at time `$t` in
/// `$table` — `password_resets` or `email_verifications`, the two single-use links — returning
/// the columns `$returning` of its row (`None`: unknown, expired, used, or its user disabled).
/// The one rule of what a live link is: unused, unexpired, of an active account; the `UPDATE`
/// makes two concurrent redemptions of one token succeed at most once.
macro_rules! use_up_token {
    ($ex:expr, $table:literal, $returning:literal, $hash:expr, $t:expr) => {
        sqlx::query(concat!(
            "UPDATE ",
            $table,
            " SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             AND user_id IN (SELECT id FROM users WHERE is_active) RETURNING ",
            $returning
        ))
        .bind($t)
        .bind(&$hash.as_bytes()[..])
        .fetch_optional($ex)
        .await
    };
}
pub(crate) use use_up_token;

/// How long a reset token works unless the administrator says otherwise.
pub const DEFAULT_RESET_LIFETIME: Duration = Duration::from_secs(3600);

/// Longest lifetime a reset token may be given: it is a password in transit.
pub const MAX_RESET_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The password reset tokens table (SQLite or PostgreSQL, one query text each).
#[derive(Debug, Clone)]
pub struct PasswordResets {
    db: Database,
}

impl PasswordResets {
    /// Over `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Issues a token for `user_id` valid for `lifetime` (capped at [`MAX_RESET_LIFETIME`]);
    /// the user's unused older tokens stop working. Returns the token (shown once) and its expiry.
    /// The administrator's token (`vestibule user reset-password`): no message goes with it.
    ///
    /// # Errors
    /// A database error.
    pub async fn issue(
        &self,
        user_id: i64,
        lifetime: Duration,
    ) -> Result<(SecretToken, UnixTime), UserError> {
        self.issue_with(user_id, lifetime, |_| None).await
    }

    /// The one writer of reset tokens, for the administrator's token ([`PasswordResets::issue`])
    /// and the self-service recovery link alike: deletes the user's older tokens, stores the new
    /// one's hash, and writes the message `message` makes of it (the recovery email, carrying the
    /// raw token) into the outbox, all in one transaction.
    ///
    /// # Errors
    /// A database error.
    pub async fn issue_with(
        &self,
        user_id: i64,
        lifetime: Duration,
        message: impl FnOnce(&SecretToken) -> Option<Outgoing>,
    ) -> Result<(SecretToken, UnixTime), UserError> {
        let t = now();
        let secs = lifetime.min(MAX_RESET_LIFETIME).as_secs();
        let expires_at = t.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX));
        let token = SecretToken::generate(TokenKind::PasswordReset);
        let hash = token.hash();
        let outgoing = message(&token);
        with_pool!(self.db, write, |pool, d| {
            let mut tx = pool.begin_with(d.begin_write()).await?;
            sqlx::query("DELETE FROM password_resets WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO password_resets (user_id, token_hash, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(user_id)
            .bind(&hash.as_bytes()[..])
            .bind(t)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            if let Some(m) = &outgoing {
                enqueue!(&mut *tx, m)?;
            }
            tx.commit().await?;
        });
        Ok((token, expires_at))
    }

    /// The active user a live, unused token belongs to, without using it up (so a refused new
    /// password does not burn the token).
    ///
    /// # Errors
    /// A database error.
    pub async fn peek(&self, token: &SecretToken) -> Result<Option<i64>, UserError> {
        let hash = token.hash();
        Ok(with_pool!(self.db, read, |pool, _d| {
            sqlx::query(
                "SELECT r.user_id FROM password_resets r JOIN users u ON u.id = r.user_id \
                 WHERE r.token_hash = $1 AND r.used_at IS NULL AND r.expires_at > $2 AND u.is_active",
            )
            .bind(&hash.as_bytes()[..])
            .bind(now())
            .fetch_optional(pool)
            .await?
            .map(|row| row.try_get::<i64, _>("user_id"))
            .transpose()?
        }))
    }

    /// Uses the token up and sets the user's password hash, with `notice` (the password-changed
    /// notice), in one transaction: of two concurrent redemptions exactly one succeeds. Returns
    /// the user id, or `None` when the token is unknown, expired, used or its user disabled
    /// (and then no notice is written).
    ///
    /// # Errors
    /// A database error.
    pub async fn redeem(
        &self,
        token: &SecretToken,
        new_hash: &str,
        notice: &Notice,
    ) -> Result<Option<i64>, UserError> {
        let hash = token.hash();
        let t = now();
        Ok(with_pool!(self.db, write, |pool, d| {
            let mut tx = pool.begin_with(d.begin_write()).await?;
            let user_id: Option<i64> =
                use_up_token!(&mut *tx, "password_resets", "user_id", hash, t)?
                    .map(|row| row.try_get::<i64, _>("user_id"))
                    .transpose()?;
            if let Some(id) = user_id {
                sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                    .bind(new_hash)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                // Every other token of the user dies with this one.
                sqlx::query("DELETE FROM password_resets WHERE user_id = $1 AND used_at IS NULL")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                commit_with!(tx, notice)?;
            } else {
                tx.commit().await?;
            }
            user_id
        }))
    }
}
