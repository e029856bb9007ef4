//! Email addresses on accounts: signup with an address, verification tokens (256-bit, only
//! their SHA-256 stored, 24 hours, single use), and password recovery by email. Every message
//! is written into the outbox in the transaction of the change that causes it
//! ([`crate::email`]).

use std::time::Duration;

use sqlx::Row;

use super::reset::use_up_token;
use super::{User, UserError, Username};
use crate::db::{Database, with_pool};
use crate::email::outbox::{commit_with, enqueue};
use crate::email::{EmailAddress, Notice, Outgoing};
use crate::session::{UnixTime, now};
use crate::token::{SecretToken, TokenKind};

/// How long a verification link works.
pub const VERIFICATION_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// How long a recovery link works.
pub const RECOVERY_LIFETIME: Duration = Duration::from_secs(30 * 60);

fn expiry(t: UnixTime, d: Duration) -> UnixTime {
    t.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Creates a user with an (unverified) address, its verification token and the message that
/// carries it, in one transaction. `message` gets the raw token (shown only in the message).
///
/// # Errors
/// [`UserError::Taken`], [`UserError::EmailTaken`], or a database error.
pub async fn create_with_email(
    db: &Database,
    username: &Username,
    password_hash: &str,
    email: &EmailAddress,
    message: impl FnOnce(&SecretToken) -> Option<Outgoing>,
) -> Result<User, UserError> {
    let token = SecretToken::generate(TokenKind::EmailVerification);
    let hash = token.hash();
    let outgoing = message(&token);
    let t = now();
    let result: Result<User, sqlx::Error> = async {
        Ok(with_pool!(db, write, |pool, d| {
            let mut tx = pool.begin_with(d.begin_write()).await?;
            let row = sqlx::query(
                "INSERT INTO users (username, password_hash, is_active, created_at, email, email_verified) \
                 VALUES ($1, $2, TRUE, $3, $4, FALSE) \
                 RETURNING id, username, password_hash, is_active, created_at, last_login, email, email_verified",
            )
            .bind(username.as_str())
            .bind(password_hash)
            .bind(t)
            .bind(email.as_str())
            .fetch_one(&mut *tx)
            .await?;
            let user = User {
                id: row.try_get("id")?,
                username: row.try_get("username")?,
                password_hash: row.try_get("password_hash")?,
                is_active: row.try_get("is_active")?,
                created_at: row.try_get("created_at")?,
                last_login: row.try_get("last_login")?,
                email: row.try_get("email")?,
                email_verified: row.try_get("email_verified")?,
            };
            sqlx::query(
                "INSERT INTO email_verifications (user_id, email, token_hash, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(user.id)
            .bind(email.as_str())
            .bind(&hash.as_bytes()[..])
            .bind(t)
            .bind(expiry(t, VERIFICATION_LIFETIME))
            .execute(&mut *tx)
            .await?;
            if let Some(m) = &outgoing {
                enqueue!(&mut *tx, m)?;
            }
            tx.commit().await?;
            user
        }))
    }
    .await;
    match result {
        Ok(u) => Ok(u),
        Err(e) if is_unique_violation(&e) => {
            // Which one: the username index or the email index.
            let users = super::UserStore::new(db.clone());
            if users.by_username(username.as_str()).await?.is_some() {
                Err(UserError::Taken)
            } else {
                Err(UserError::EmailTaken)
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Issues a new verification token for `user_id`'s `email` (the older ones stop working) and
/// writes its message, in one transaction.
///
/// # Errors
/// A database error.
pub async fn issue_verification(
    db: &Database,
    user_id: i64,
    email: &str,
    message: impl FnOnce(&SecretToken) -> Option<Outgoing>,
) -> Result<(), UserError> {
    let token = SecretToken::generate(TokenKind::EmailVerification);
    let hash = token.hash();
    let outgoing = message(&token);
    let t = now();
    with_pool!(db, write, |pool, d| {
        let mut tx = pool.begin_with(d.begin_write()).await?;
        sqlx::query("DELETE FROM email_verifications WHERE user_id = $1 AND used_at IS NULL")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO email_verifications (user_id, email, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user_id)
        .bind(email)
        .bind(&hash.as_bytes()[..])
        .bind(t)
        .bind(expiry(t, VERIFICATION_LIFETIME))
        .execute(&mut *tx)
        .await?;
        if let Some(m) = &outgoing {
            enqueue!(&mut *tx, m)?;
        }
        tx.commit().await?;
    });
    Ok(())
}

/// What a followed verification link did.
#[derive(Debug, Clone)]
pub struct VerifiedAddress {
    /// The account.
    pub user_id: i64,
    /// The address now verified on it.
    pub email: String,
    /// The address it replaced, when the link was for a change (it gets a notice).
    pub previous: Option<String>,
    /// The account's username.
    pub username: String,
}

/// Uses a verification token up and marks its address verified on its account (the address
/// becomes the account's, if it was a change), with the notice `notice` gives for what was
/// verified (the old address is told of a change) in the same transaction. `None` for an
/// unknown, expired or used token.
///
/// # Errors
/// [`UserError::EmailTaken`] (another account took the address meanwhile), a database error.
pub async fn verify(
    db: &Database,
    token: &SecretToken,
    notice: impl FnOnce(&VerifiedAddress) -> Notice,
) -> Result<Option<VerifiedAddress>, UserError> {
    let hash = token.hash();
    let t = now();
    let result: Result<Option<VerifiedAddress>, sqlx::Error> = async {
        Ok(with_pool!(db, write, |pool, d| {
            let mut tx = pool.begin_with(d.begin_write()).await?;
            let row = use_up_token!(&mut *tx, "email_verifications", "user_id, email", hash, t)?;
            let found = match row {
                Some(r) => Some((
                    r.try_get::<i64, _>("user_id")?,
                    r.try_get::<String, _>("email")?,
                )),
                None => None,
            };
            let mut verified = None;
            let mut message = Notice::none();
            if let Some((id, email)) = found {
                let row = sqlx::query("SELECT email, username FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                let previous: Option<String> = row.try_get("email")?;
                let username: String = row.try_get("username")?;
                sqlx::query("UPDATE users SET email = $1, email_verified = TRUE WHERE id = $2")
                    .bind(email.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let done = VerifiedAddress {
                    user_id: id,
                    previous: previous.filter(|p| !p.eq_ignore_ascii_case(&email)),
                    email,
                    username,
                };
                message = notice(&done);
                verified = Some(done);
            }
            commit_with!(tx, &message)?;
            verified
        }))
    }
    .await;
    match result {
        Err(e) if is_unique_violation(&e) => Err(UserError::EmailTaken),
        other => Ok(other?),
    }
}

/// Issues a recovery token for `user_id` (a `vrst_` token, redeemed by the one reset path,
/// `POST /auth/password/reset`; valid [`RECOVERY_LIFETIME`]; the user's older tokens stop
/// working) and writes its message, in one transaction: the one reset-token writer,
/// [`PasswordResets::issue_with`](super::PasswordResets::issue_with).
///
/// # Errors
/// A database error.
pub async fn issue_recovery(
    db: &Database,
    user_id: i64,
    message: impl FnOnce(&SecretToken) -> Outgoing,
) -> Result<(), UserError> {
    super::PasswordResets::new(db.clone())
        .issue_with(user_id, RECOVERY_LIFETIME, |token| Some(message(token)))
        .await?;
    Ok(())
}

/// Whether a recovery link may go to an account's address (`docs/SECURITY.md`, "Recovery goes
/// to which address"): a verified address, always; an unverified one only when
/// `auth.require_verified_email` is off and no change of address is pending — the address given
/// at signup and never verified is then the only way back in, while an address the user has
/// asked to replace (or any unverified address on a server that requires verified ones) may
/// belong to someone else. The pending new address itself never receives one: it is not the
/// account's address until its link is followed.
pub fn recovery_allowed(verified: bool, require_verified: bool, change_pending: bool) -> bool {
    verified || (!require_verified && !change_pending)
}

/// The address `user_id` asked to change to (another than `current`) and has not verified yet:
/// an unused verification token for another address.
///
/// # Errors
/// A database error.
pub async fn pending_change(
    db: &Database,
    user_id: i64,
    current: Option<&str>,
) -> Result<Option<String>, UserError> {
    Ok(with_pool!(db, read, |pool, _d| {
        sqlx::query_scalar::<_, String>(
            "SELECT email FROM email_verifications WHERE user_id = $1 AND used_at IS NULL \
             AND ($2 IS NULL OR lower(email) <> lower($2)) ORDER BY id DESC LIMIT 1",
        )
        .bind(user_id)
        .bind(current)
        .fetch_optional(pool)
        .await?
    }))
}

#[cfg(test)]
mod tests {
    use super::recovery_allowed;

    #[test]
    fn recovery_goes_to_a_verified_address_or_the_untouched_signup_address() {
        // Verified: always.
        assert!(recovery_allowed(true, true, false));
        assert!(recovery_allowed(true, false, true));
        // Never verified, never changed, verification not required: the only way in.
        assert!(recovery_allowed(false, false, false));
        // Unverified with verification required, or with a change pending: never.
        assert!(!recovery_allowed(false, true, false));
        assert!(!recovery_allowed(false, false, true));
        assert!(!recovery_allowed(false, true, true));
    }
}
