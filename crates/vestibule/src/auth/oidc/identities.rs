//! External identities: which Vestibule user a provider's (issuer, subject) is. The table is
//! `oidc_identities` (migration 0008), one query text for SQLite and PostgreSQL.

use serde::Serialize;
use sqlx::Row;

use crate::auth::UserError;
use crate::db::{Database, with_pool};
use crate::session::now;

/// One linked identity, as `GET /auth/identities` lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Identity {
    /// Its id (for unlinking).
    pub id: i64,
    /// The provider's configured name.
    pub provider: String,
    /// The issuer.
    pub issuer: String,
    /// The subject at that issuer.
    pub subject: String,
    /// The e-mail address the provider gave at linking, if any.
    pub email: Option<String>,
    /// When it was linked (Unix seconds).
    pub created_at: i64,
}

/// The identities table.
#[derive(Debug, Clone)]
pub struct Identities {
    db: Database,
}

impl Identities {
    /// Over `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The database (the logout index lives next to the identities).
    pub(super) fn db(&self) -> &Database {
        &self.db
    }

    /// The user linked to (`issuer`, `subject`), recording this login.
    ///
    /// # Errors
    /// A database error.
    pub async fn user_for(&self, issuer: &str, subject: &str) -> Result<Option<i64>, UserError> {
        Ok(with_pool!(self.db, write, |pool, _d| {
            sqlx::query(
                "UPDATE oidc_identities SET last_login = $1 WHERE issuer = $2 AND subject = $3 \
                 RETURNING user_id",
            )
            .bind(now())
            .bind(issuer)
            .bind(subject)
            .fetch_optional(pool)
            .await?
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
        }))
    }

    /// Links (`issuer`, `subject`) to `user_id`.
    ///
    /// # Errors
    /// [`UserError::Taken`] when the identity is linked already (to anyone); a database error.
    pub async fn link(
        &self,
        user_id: i64,
        provider: &str,
        issuer: &str,
        subject: &str,
        email: Option<&str>,
    ) -> Result<(), UserError> {
        let n = with_pool!(self.db, write, |pool, _d| {
            sqlx::query(
                "INSERT INTO oidc_identities (user_id, provider, issuer, subject, email, created_at, last_login) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING",
            )
            .bind(user_id)
            .bind(provider)
            .bind(issuer)
            .bind(subject)
            .bind(email)
            .bind(now())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if n == 0 {
            return Err(UserError::Taken);
        }
        Ok(())
    }

    /// The user's identities, oldest first.
    ///
    /// # Errors
    /// A database error.
    pub async fn list(&self, user_id: i64) -> Result<Vec<Identity>, UserError> {
        Ok(with_pool!(self.db, read, |pool, _d| {
            let rows = sqlx::query(
                "SELECT id, provider, issuer, subject, email, created_at FROM oidc_identities \
                 WHERE user_id = $1 ORDER BY id",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(Identity {
                    id: r.try_get(0)?,
                    provider: r.try_get(1)?,
                    issuer: r.try_get(2)?,
                    subject: r.try_get(3)?,
                    email: r.try_get(4)?,
                    created_at: r.try_get(5)?,
                });
            }
            out
        }))
    }

    /// Removes the user's identity `id`; whether there was one.
    ///
    /// # Errors
    /// A database error.
    pub async fn unlink(&self, user_id: i64, id: i64) -> Result<bool, UserError> {
        Ok(with_pool!(self.db, write, |pool, _d| {
            sqlx::query("DELETE FROM oidc_identities WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
                > 0
        }))
    }

    /// The users linked to (`issuer`, `subject`) (back-channel logout by `sub`).
    ///
    /// # Errors
    /// A database error.
    pub async fn users_of(&self, issuer: &str, subject: &str) -> Result<Vec<i64>, UserError> {
        Ok(with_pool!(self.db, read, |pool, _d| {
            let rows = sqlx::query(
                "SELECT user_id FROM oidc_identities WHERE issuer = $1 AND subject = $2",
            )
            .bind(issuer)
            .bind(subject)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| r.try_get::<i64, _>(0))
                .collect::<Result<Vec<_>, _>>()?
        }))
    }
}
