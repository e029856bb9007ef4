//! Users in the database (SQLite or PostgreSQL, one set of queries).

use std::fmt;

use serde::{Deserialize, Serialize};
use sqlx::Row;

mod owned;

pub use self::owned::{Removal, delete_user};
use crate::db::{Database, with_pool};
use crate::error::{Error, ErrorCode};
use crate::session::{UnixTime, now};

/// A valid username: 1–150 characters of ASCII letters, digits and `@ . + - _` (Django's set,
/// ASCII-only so case-insensitive uniqueness is exact), not only dots (`.` and `..` read as
/// paths in URLs, logs and file names).
///
/// **One canonical username.** Every entry that takes a username — signup, login, the CLI, the
/// rate-limit keys — goes through [`Username::parse`], and every comparison uses
/// [`Username::canonical`] (ASCII lowercase), which the database compares byte for byte
/// (`lower(username)`, a unique index in both SQLite and PostgreSQL). No collation decides what
/// is "equal": fullwidth, mathematical, circled letters, soft hyphens, zero-width and control
/// characters never parse, so they can neither log in as `admin` nor get a rate-limit bucket
/// of their own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    /// Validates a username.
    ///
    /// # Errors
    /// 422 `invalid_username` saying what is allowed.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "@.+-_".contains(c);
        if s.is_empty() || s.len() > 150 || !s.chars().all(ok_char) || s.chars().all(|c| c == '.') {
            return Err(Error::new(
                ErrorCode::InvalidUsername,
                "a username has 1 to 150 characters: ASCII letters, digits and @ . + - _, not only dots",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The canonical form: what two spellings of one account have in common (ASCII lowercase:
    /// the characters are ASCII, so this is exact). Lookups and rate-limit keys use it.
    pub fn canonical(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// The key of the account's login buckets (`rate_limits.login_per_user`,
    /// `login_per_device`): the canonical form. Only a parsed `Username` has one, so every
    /// spelling that can reach an account — `Admin`, `ADMIN` — shares one bucket, and a spelling
    /// that cannot (fullwidth, invisible or control characters) never gets a bucket of its own:
    /// login refuses it before counting.
    pub fn account_key(&self) -> String {
        self.canonical()
    }

    /// The username.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Username {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Username::parse(&s).map_err(|_| serde::de::Error::custom("invalid username"))
    }
}

/// Whether `c` is a control character (C0, DEL, C1) or an invisible formatting character that
/// reorders or hides text (zero-width, soft hyphen, bidirectional embeddings and isolates, BOM).
/// Labels that people read — access-token and passkey names — refuse them at the API, and the
/// CLI escapes them in every table, so stored text cannot rewrite a terminal or disguise a row.
pub fn is_control_or_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

/// A stored user.
#[derive(Clone, Serialize)]
pub struct User {
    /// Id.
    pub id: i64,
    /// Username as registered.
    pub username: String,
    /// PHC string; never serialized.
    #[serde(skip)]
    pub password_hash: String,
    /// Disabled users cannot log in.
    pub is_active: bool,
    /// Creation time.
    pub created_at: UnixTime,
    /// Last successful login.
    pub last_login: Option<UnixTime>,
    /// The account's address, when it has one.
    pub email: Option<String>,
    /// Whether `email` was verified (a link sent to it was followed).
    pub email_verified: bool,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("is_active", &self.is_active)
            .finish_non_exhaustive()
    }
}

/// Why a user operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// The username is taken (case-insensitively).
    #[error("username already taken")]
    Taken,
    /// The email address belongs to another account (case-insensitively).
    #[error("email address already taken")]
    EmailTaken,
    /// No such user.
    #[error("no such user")]
    NotFound,
    /// The database failed.
    #[error("database error")]
    Db(#[from] sqlx::Error),
}

impl From<UserError> for Error {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Taken => Error::new(ErrorCode::UsernameTaken, "this username is taken"),
            UserError::EmailTaken => Error::new(
                ErrorCode::EmailTaken,
                "this email address belongs to another account",
            )
            .with_hint("log in to that account, or recover it with POST /auth/password/forgot"),
            UserError::NotFound => Error::new(ErrorCode::NotFound, "no such user"),
            UserError::Db(_) => Error::new(
                ErrorCode::StoreUnavailable,
                "the user database is unavailable",
            )
            .with_hint("retry shortly; the server log names the cause")
            .with_source(e),
        }
    }
}

/// Users table access.
#[derive(Debug, Clone)]
pub struct UserStore {
    db: Database,
}

macro_rules! user_columns {
    () => {
        "id, username, password_hash, is_active, created_at, last_login, email, email_verified"
    };
}

/// Decodes a users row of either backend (expanded per backend by `with_pool!`).
macro_rules! decode {
    ($row:expr) => {{
        let row = $row;
        Ok::<User, sqlx::Error>(User {
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            password_hash: row.try_get("password_hash")?,
            is_active: row.try_get("is_active")?,
            created_at: row.try_get("created_at")?,
            last_login: row.try_get("last_login")?,
            email: row.try_get("email")?,
            email_verified: row.try_get("email_verified")?,
        })
    }};
}

impl UserStore {
    /// Users on an opened database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Creates a user.
    ///
    /// # Errors
    /// [`UserError::Taken`], or a database error.
    pub async fn create(
        &self,
        username: &Username,
        password_hash: &str,
    ) -> Result<User, UserError> {
        let user = with_pool!(self.db, write, |pool, _d| {
            let row = sqlx::query(concat!(
                "INSERT INTO users (username, password_hash, is_active, created_at) \
                 VALUES ($1, $2, TRUE, $3) ON CONFLICT DO NOTHING RETURNING ",
                user_columns!()
            ))
            .bind(username.as_str())
            .bind(password_hash)
            .bind(now())
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(|r| decode!(r)).transpose()?
        });
        user.ok_or(UserError::Taken)
    }

    /// Finds a user by username, case-insensitively. The one lookup by name (login, the CLI):
    /// `username` is parsed first — a name that does not parse names nobody, and no query runs
    /// (so input the database cannot take, such as NUL, never reaches it) — then its
    /// [`Username::canonical`] form is compared byte for byte with `lower(username)` (a unique
    /// index in both databases).
    ///
    /// # Errors
    /// A database error.
    pub async fn by_username(&self, username: &str) -> Result<Option<User>, UserError> {
        let Ok(username) = Username::parse(username) else {
            return Ok(None);
        };
        let canonical = username.canonical();
        Ok(with_pool!(self.db, read, |pool, _d| {
            let row = sqlx::query(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE lower(username) = $1"
            ))
            .bind(canonical.as_str())
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(|r| decode!(r)).transpose()?
        }))
    }

    /// Finds a user by email address, case-insensitively; an address that does not parse names
    /// nobody and runs no query.
    ///
    /// # Errors
    /// A database error.
    pub async fn by_email(&self, email: &str) -> Result<Option<User>, UserError> {
        let Ok(email) = crate::email::EmailAddress::parse(email) else {
            return Ok(None);
        };
        let canonical = email.canonical();
        Ok(with_pool!(self.db, read, |pool, _d| {
            let row = sqlx::query(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE lower(email) = $1"
            ))
            .bind(canonical.as_str())
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(|r| decode!(r)).transpose()?
        }))
    }

    /// Finds a user by what a person types to log in: the username, else (when it has an `@`)
    /// the email address. A username wins over another account's address.
    ///
    /// # Errors
    /// A database error.
    pub async fn by_login(&self, login: &str) -> Result<Option<User>, UserError> {
        if let Some(u) = self.by_username(login).await? {
            return Ok(Some(u));
        }
        if login.contains('@') {
            return self.by_email(login).await;
        }
        Ok(None)
    }

    /// Finds a user by id.
    ///
    /// # Errors
    /// A database error.
    pub async fn by_id(&self, id: i64) -> Result<Option<User>, UserError> {
        Ok(with_pool!(self.db, read, |pool, _d| {
            let row = sqlx::query(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(|r| decode!(r)).transpose()?
        }))
    }

    /// All users, by id.
    ///
    /// # Errors
    /// A database error.
    pub async fn list(&self) -> Result<Vec<User>, UserError> {
        Ok(with_pool!(self.db, read, |pool, _d| {
            let rows = sqlx::query(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users ORDER BY id"
            ))
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| decode!(r)).collect::<Result<_, _>>()?
        }))
    }

    /// Enables or disables a user.
    ///
    /// Disabling also bumps the user's session generation, which ends their stateless
    /// (cookie-store) sessions; server-side stores are cleared by the caller.
    ///
    /// # Errors
    /// [`UserError::NotFound`], or a database error.
    pub async fn set_active(&self, id: i64, active: bool) -> Result<(), UserError> {
        let done = with_pool!(self.db, write, |pool, _d| {
            sqlx::query(
                "UPDATE users SET is_active = $1, \
                 session_generation = session_generation + $2 WHERE id = $3",
            )
            .bind(active)
            .bind(i64::from(!active))
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            Err(UserError::NotFound)
        } else {
            Ok(())
        }
    }

    /// Replaces the password hash, and writes `notice` (the password-changed notice, or
    /// [`Notice::none`](crate::email::Notice::none)) in the same transaction.
    ///
    /// Also bumps the session generation: a password change ends every stateless (cookie-store)
    /// session issued before it.
    ///
    /// # Errors
    /// [`UserError::NotFound`], or a database error.
    pub async fn set_password_hash(
        &self,
        id: i64,
        hash: &str,
        notice: &crate::email::Notice,
    ) -> Result<(), UserError> {
        let done = with_pool!(self.db, write, |pool, d| {
            let mut tx = pool.begin_with(d.begin_write()).await?;
            let done = sqlx::query(
                "UPDATE users SET password_hash = $1, \
                 session_generation = session_generation + 1 WHERE id = $2",
            )
            .bind(hash)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // A password change voids every reset link still in flight.
            sqlx::query("DELETE FROM password_resets WHERE user_id = $1 AND used_at IS NULL")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if done == 0 {
                // No such user: nothing to tell anyone.
                tx.commit().await?;
            } else {
                crate::email::outbox::commit_with!(tx, notice)?;
            }
            done
        });
        if done == 0 {
            Err(UserError::NotFound)
        } else {
            Ok(())
        }
    }

    /// Replaces a hash with the same password under newer parameters (the upgrade at login). Unlike
    /// [`UserStore::set_password_hash`] it ends no session, and it changes nothing when the hash
    /// changed meanwhile (a password change won the race). Returns whether it wrote.
    ///
    /// # Errors
    /// A database error.
    pub async fn upgrade_password_hash(
        &self,
        id: i64,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<bool, UserError> {
        let done = with_pool!(self.db, write, |pool, _d| {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
                .bind(new_hash)
                .bind(id)
                .bind(old_hash)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// Ends every stateless (cookie-store) session of the user at its next request by bumping the
    /// generation they were sealed under (logout-all). Harmless with the other stores.
    ///
    /// # Errors
    /// [`UserError::NotFound`], or a database error.
    pub async fn bump_session_generation(&self, id: i64) -> Result<(), UserError> {
        let done = with_pool!(self.db, write, |pool, _d| {
            sqlx::query(
                "UPDATE users SET session_generation = session_generation + 1 WHERE id = $1",
            )
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            Err(UserError::NotFound)
        } else {
            Ok(())
        }
    }

    /// The user's session generation, `None` when the user does not exist or is disabled.
    ///
    /// # Errors
    /// A database error.
    pub async fn session_generation(&self, id: i64) -> Result<Option<u64>, UserError> {
        let g: Option<i64> = with_pool!(self.db, read, |pool, _d| {
            let row = sqlx::query(
                "SELECT session_generation FROM users WHERE id = $1 AND is_active = TRUE",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            row.as_ref()
                .map(|r| r.try_get::<i64, _>("session_generation"))
                .transpose()?
        });
        Ok(g.map(|g| u64::try_from(g).unwrap_or(0)))
    }

    /// Removes an account that signup has just created and could not start a session for (the
    /// session store was down), so the answer — 503 — is the whole truth and a retry can succeed
    /// instead of finding the name taken. Only an account that never logged in is removed.
    ///
    /// # Errors
    /// A database error.
    pub async fn undo_signup(&self, id: i64) -> Result<(), UserError> {
        // With what belongs to it (an identity a provider signup linked): one place, `owned`.
        self.remove(id, Removal::NeverLoggedIn).await?;
        Ok(())
    }

    /// Records a successful login.
    ///
    /// # Errors
    /// A database error.
    pub async fn record_login(&self, id: i64) -> Result<(), UserError> {
        with_pool!(self.db, write, |pool, _d| {
            sqlx::query("UPDATE users SET last_login = $1 WHERE id = $2")
                .bind(now())
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(())
    }
}

/// Disables `user_id` and ends everything they are logged in with: every session through
/// [`crate::session::SessionManager::end`] (the cookie store: the generation moves; the end
/// hook revokes provider tokens) and every access token (refused at once anyway, since each
/// use checks the owner; revoked so that enabling the account again does not bring them back).
/// The one path `vestibule user disable` takes.
/// Returns what ended and how many tokens were revoked.
///
/// # Errors
/// `not_found` for an unknown user, `store_unavailable`.
pub async fn disable_user(
    db: &crate::db::Database,
    sessions: &crate::session::SessionManager,
    user_id: i64,
) -> Result<(crate::session::Ended, u64), Error> {
    UserStore::new(db.clone())
        .set_active(user_id, false)
        .await?;
    let ended = sessions
        .end(crate::session::Revoke::User {
            user_id,
            keep: None,
        })
        .await?;
    let revoked = crate::auth::AccessTokens::new(db.clone())
        .revoke_all(user_id)
        .await?;
    Ok((ended, revoked))
}

/// The cookie store reads generations from the users table on every authenticated load (one
/// indexed primary-key read; no cache, so a bump on any instance is honoured by all at once).
#[async_trait::async_trait]
impl crate::session::stores::Generations for UserStore {
    async fn current(&self, user_id: i64) -> Result<Option<u64>, Error> {
        Ok(self.session_generation(user_id).await?)
    }

    async fn bump(&self, user_id: i64) -> Result<(), Error> {
        match self.bump_session_generation(user_id).await {
            // No such user: no sealed session of theirs opens anyway (`current` is `None`).
            Ok(()) | Err(UserError::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_validated() {
        for ok in ["alice", "a.b+c-d_e@x", "A", &"x".repeat(150)] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "with space",
            "ünï",
            "a/b",
            &"x".repeat(151),
            "semi;colon",
            ".",
            "..",
            "...",
            "ａｄｍｉｎ",
            "𝐚𝐝𝐦𝐢𝐧",
            "ⓐdmin",
            "ad\u{ad}min",
            "adm\u{200b}in",
            "admin\u{1}",
            "admin\0",
            "admin\n",
            "ᵃdmin",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Username::parse(".a.").is_ok(), "dots with something else");
        let a = Username::parse("AdMiN").expect("valid");
        assert_eq!(a.canonical(), "admin");
        assert_eq!(a.as_str(), "AdMiN", "kept as registered");
    }
}
