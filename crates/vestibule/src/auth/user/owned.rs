//! What belongs to a user, in one place: the rows of other tables that name the user
//! (`REFERENCES users (id)`), removed with the user in one transaction. Every path that deletes a
//! user goes through [`UserStore::remove`]; a new table that references users is added to
//! [`OWNED`] (a test checks the migrations against it).

use sqlx::Row;

use super::{UserError, UserStore};
use crate::db::{Dialect, with_pool};
use crate::error::Error;

/// The tables whose rows belong to one user, and the statement that removes them: children
/// before the `users` row (the foreign keys). Static text per table: no SQL is assembled.
pub(crate) const OWNED: &[(&str, &str)] = &[
    (
        "access_tokens",
        "DELETE FROM access_tokens WHERE user_id = $1",
    ),
    ("mfa_totp", "DELETE FROM mfa_totp WHERE user_id = $1"),
    (
        "mfa_recovery_codes",
        "DELETE FROM mfa_recovery_codes WHERE user_id = $1",
    ),
    (
        "webauthn_credentials",
        "DELETE FROM webauthn_credentials WHERE user_id = $1",
    ),
    (
        "password_resets",
        "DELETE FROM password_resets WHERE user_id = $1",
    ),
    (
        "email_verifications",
        "DELETE FROM email_verifications WHERE user_id = $1",
    ),
    (
        "oidc_identities",
        "DELETE FROM oidc_identities WHERE user_id = $1",
    ),
    (
        "oidc_sessions",
        "DELETE FROM oidc_sessions WHERE user_id = $1",
    ),
];

/// Which users [`UserStore::remove`] may remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Any user.
    Any,
    /// Only one that never logged in (undoing a signup that could not start its session).
    NeverLoggedIn,
}

impl UserStore {
    /// Removes user `id` and every row that belongs to it ([`OWNED`]) in one transaction;
    /// whether a user was removed (`false`: none, or `when` did not allow it). Sessions are the
    /// caller's to end first ([`delete_user`]).
    ///
    /// # Errors
    /// A database error (nothing is removed then).
    pub async fn remove(&self, id: i64, when: Removal) -> Result<bool, UserError> {
        Ok(with_pool!(self.db, write, |pool, d| {
            let mut tx = pool.begin_with(d.begin_write()).await?;
            // The row is locked on PostgreSQL until the end (a login cannot slip in between
            // the check and the delete); SQLite's `BEGIN IMMEDIATE` holds the write lock.
            let select = match (when, d) {
                (Removal::Any, Dialect::Sqlite) => "SELECT id, last_login FROM users WHERE id = $1",
                (Removal::Any, Dialect::Postgres) => {
                    "SELECT id, last_login FROM users WHERE id = $1 FOR UPDATE"
                }
                (Removal::NeverLoggedIn, Dialect::Sqlite) => {
                    "SELECT id, last_login FROM users WHERE id = $1 AND last_login IS NULL"
                }
                (Removal::NeverLoggedIn, Dialect::Postgres) => {
                    "SELECT id, last_login FROM users WHERE id = $1 AND last_login IS NULL FOR UPDATE"
                }
            };
            let found = sqlx::query(select)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get::<i64, _>(0))
                .transpose()?;
            if found.is_none() {
                tx.rollback().await?;
                false
            } else {
                for (_, delete) in OWNED {
                    sqlx::query(*delete).bind(id).execute(&mut *tx).await?;
                }
                let n = sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                n > 0
            }
        }))
    }
}

/// Deletes a user for good: every session ends (through [`crate::session::SessionManager::end`],
/// so the end hook revokes provider tokens), then the user and what belongs to it go in one transaction ([`UserStore::remove`]).
/// The path `vestibule user delete` takes. Returns what ended.
///
/// # Errors
/// `not_found` for an unknown user, `store_unavailable`.
pub async fn delete_user(
    db: &crate::db::Database,
    sessions: &crate::session::SessionManager,
    user_id: i64,
) -> Result<crate::session::Ended, Error> {
    let users = UserStore::new(db.clone());
    if users.by_id(user_id).await?.is_none() {
        return Err(UserError::NotFound.into());
    }
    let ended = sessions
        .end(crate::session::Revoke::User {
            user_id,
            keep: None,
        })
        .await?;
    if !users.remove(user_id, Removal::Any).await? {
        return Err(UserError::NotFound.into());
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::OWNED;

    /// Every table a migration makes with a column that references users is in [`OWNED`]: a
    /// new one cannot be forgotten by user deletion (the foreign key would block it).
    #[test]
    fn every_table_that_references_users_is_owned() {
        for dir in ["migrations", "migrations-postgres"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            let mut referencing = Vec::new();
            for entry in std::fs::read_dir(&path).expect("migrations") {
                let sql = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
                let mut table = None;
                for line in sql.lines() {
                    let l = line.trim();
                    if let Some(rest) = l.strip_prefix("CREATE TABLE ") {
                        table = rest.split_whitespace().next().map(str::to_owned);
                    }
                    if l.contains("REFERENCES users")
                        && let Some(t) = &table
                        && !referencing.contains(t)
                    {
                        referencing.push(t.clone());
                    }
                }
            }
            assert!(referencing.len() >= 7, "{dir}: {referencing:?}");
            for t in &referencing {
                assert!(
                    OWNED.iter().any(|(o, _)| o == t),
                    "{dir}: {t} references users but is not in OWNED"
                );
            }
            for (t, delete) in OWNED {
                assert!(delete.starts_with(&format!("DELETE FROM {t} WHERE user_id = $1")));
            }
        }
    }
}
