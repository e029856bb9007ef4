//! Personal access tokens: long-lived, scoped, revocable bearer credentials for scripts and
//! services (the analogue of django-rest-knox). Only a hash is stored; the secret is shown once.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::{Database, Dialect, with_pool};
use crate::session::{UnixTime, now};
use crate::token::{SecretToken, TokenHash, TokenKind};

/// What an access token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
// Listed in the OpenAPI document (server/openapi.rs).
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Safe methods only (GET, HEAD, OPTIONS).
    Read,
    /// Unsafe methods too (POST, PUT, PATCH, DELETE).
    Write,
}

impl Scope {
    /// The scope's name as it appears in requests, listings and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }

    /// Whether a token holding only this scope may send `method`: `read` means GET, HEAD and
    /// OPTIONS, nothing else ([`crate::session::is_read_method`], which the session layer also
    /// uses, so the two cannot disagree); `write` may send anything. The one rule for every
    /// place a token's scope is checked.
    pub fn allows(self, method: &axum::http::Method) -> bool {
        match self {
            Scope::Write => true,
            Scope::Read => crate::session::is_read_method(method),
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            other => Err(format!(
                "unknown scope {other:?}: use \"read\" or \"write\""
            )),
        }
    }
}

/// How long a displayed prefix is: `vpat_` plus this many characters of the secret body
/// (40 bits of 256: enough to tell tokens apart, useless to an attacker).
const DISPLAY_CHARS: usize = 7;

/// A stored access token (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessToken {
    /// Id, for listing and revocation.
    pub id: i64,
    /// The owner.
    #[serde(skip)]
    pub user_id: i64,
    /// A name the user chose ("deploy script").
    pub name: String,
    /// The first characters of the token, e.g. `vpat_3kQ9xZa`.
    pub prefix: String,
    /// Granted scopes, sorted.
    pub scopes: Vec<Scope>,
    /// Creation time.
    pub created_at: UnixTime,
    /// Last use, updated at most once a minute.
    pub last_used_at: Option<UnixTime>,
    /// Expiry.
    pub expires_at: UnixTime,
}

impl AccessToken {
    /// Whether the token may be used for an unsafe (writing) request.
    pub fn can_write(&self) -> bool {
        self.scopes.contains(&Scope::Write)
    }
}

/// The owner of a token, resolved together with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    /// User id.
    pub id: i64,
    /// Username.
    pub username: String,
}

/// Why an access-token operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The user already has the maximum number of tokens.
    #[error("the user has {0} access tokens, the maximum")]
    LimitReached(u32),
    /// The database failed.
    #[error("database error")]
    Db(#[from] sqlx::Error),
}

impl From<TokenError> for crate::Error {
    fn from(e: TokenError) -> Self {
        use crate::error::ErrorCode;
        match e {
            TokenError::LimitReached(n) => crate::Error::new(
                ErrorCode::TokenLimitReached,
                format!("you already have {n} access tokens, the maximum"),
            )
            .with_hint("revoke tokens you no longer use (DELETE /auth/tokens/{id})"),
            TokenError::Db(_) => crate::Error::new(
                ErrorCode::StoreUnavailable,
                "the token database is unavailable",
            )
            .with_source(e),
        }
    }
}

/// Access tokens in the database (SQLite or PostgreSQL).
#[derive(Clone)]
pub struct AccessTokens {
    db: Database,
}

impl fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessTokens")
    }
}

/// How often `last_used_at` may be written per token.
const LAST_USED_RESOLUTION: i64 = 60;

fn parse_scopes(text: &str) -> Vec<Scope> {
    let mut scopes: Vec<Scope> = text.split(' ').filter_map(|s| s.parse().ok()).collect();
    scopes.sort();
    scopes
}

/// Decodes an access_tokens row of either backend (expanded per backend by `with_pool!`).
macro_rules! decode {
    ($row:expr) => {{
        let row = $row;
        let scopes: String = row.try_get("scopes")?;
        Ok::<AccessToken, sqlx::Error>(AccessToken {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            name: row.try_get("name")?,
            prefix: row.try_get("display_prefix")?,
            scopes: parse_scopes(&scopes),
            created_at: row.try_get("created_at")?,
            last_used_at: row.try_get("last_used_at")?,
            expires_at: row.try_get("expires_at")?,
        })
    }};
}

macro_rules! token_columns {
    () => {
        "t.id, t.user_id, t.name, t.display_prefix, t.scopes, t.created_at, t.last_used_at, t.expires_at"
    };
}

impl AccessTokens {
    /// Access tokens on an opened database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Creates a token for `user_id`; returns the stored record and the secret (shown once).
    ///
    /// # Errors
    /// [`TokenError::LimitReached`] when the user has `limit` live tokens already.
    pub async fn create(
        &self,
        user_id: i64,
        name: &str,
        scopes: &[Scope],
        expires_at: UnixTime,
        limit: u32,
    ) -> Result<(AccessToken, SecretToken), TokenError> {
        let secret = SecretToken::generate(TokenKind::AccessToken);
        let prefix: String = secret
            .expose()
            .chars()
            .take(TokenKind::AccessToken.prefix().len() + DISPLAY_CHARS)
            .collect();
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let scope_text: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        let t = now();
        // The count and the insert share one write transaction, so the limit cannot be raced:
        // SQLite takes the write lock at BEGIN; PostgreSQL locks the owner's row first.
        let id: Option<i64> = with_pool!(self.db, write, |pool, d| {
            let mut tx = pool.begin_with(d.begin_write()).await?;
            if d == Dialect::Postgres {
                sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
            let live: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM access_tokens WHERE user_id = $1 AND expires_at > $2",
            )
            .bind(user_id)
            .bind(t)
            .fetch_one(&mut *tx)
            .await?;
            if live >= i64::from(limit) {
                None
            } else {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO access_tokens (user_id, name, token_hash, display_prefix, scopes, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                )
                .bind(user_id)
                .bind(name)
                .bind(&secret.hash().as_bytes()[..])
                .bind(&prefix)
                .bind(scope_text.join(" "))
                .bind(t)
                .bind(expires_at)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Some(id)
            }
        });
        let Some(id) = id else {
            return Err(TokenError::LimitReached(limit));
        };
        let token = AccessToken {
            id,
            user_id,
            name: name.to_owned(),
            prefix,
            scopes,
            created_at: t,
            last_used_at: None,
            expires_at,
        };
        Ok((token, secret))
    }

    /// The user's live tokens, newest first.
    ///
    /// # Errors
    /// A database error.
    pub async fn list(&self, user_id: i64) -> Result<Vec<AccessToken>, TokenError> {
        Ok(with_pool!(self.db, read, |pool, _d| {
            let rows = sqlx::query(concat!(
                "SELECT ",
                token_columns!(),
                " FROM access_tokens t WHERE t.user_id = $1 AND t.expires_at > $2 ORDER BY t.id DESC"
            ))
            .bind(user_id)
            .bind(now())
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| decode!(r)).collect::<Result<_, _>>()?
        }))
    }

    /// Revokes one of the user's tokens; `false` when no such token belongs to the user.
    ///
    /// # Errors
    /// A database error.
    pub async fn revoke(&self, user_id: i64, id: i64) -> Result<bool, TokenError> {
        let done = with_pool!(self.db, write, |pool, _d| {
            sqlx::query("DELETE FROM access_tokens WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// Revokes every token of the user; returns how many were still live. Expired rows that the
    /// purge has not reached yet are deleted too but not counted: the count is what the caller
    /// is told was ended (`ended.access_tokens`), and an expired token had already stopped working.
    ///
    /// # Errors
    /// A database error.
    pub async fn revoke_all(&self, user_id: i64) -> Result<u64, TokenError> {
        let t = now();
        let expiries: Vec<i64> = with_pool!(self.db, write, |pool, _d| {
            sqlx::query_scalar("DELETE FROM access_tokens WHERE user_id = $1 RETURNING expires_at")
                .bind(user_id)
                .fetch_all(pool)
                .await?
        });
        Ok(expiries.iter().filter(|&&at| at > t).count() as u64)
    }

    /// Finds the live token with this hash whose owner is active (one indexed lookup), and
    /// records the use at most once a minute.
    ///
    /// # Errors
    /// A database error.
    pub async fn resolve(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<(AccessToken, TokenOwner)>, TokenError> {
        let t = now();
        let found = with_pool!(self.db, read, |pool, _d| {
            let row = sqlx::query(concat!(
                "SELECT ",
                token_columns!(),
                ", u.username FROM access_tokens t JOIN users u ON u.id = t.user_id \
                 WHERE t.token_hash = $1 AND t.expires_at > $2 AND u.is_active"
            ))
            .bind(&hash.as_bytes()[..])
            .bind(t)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(row) => {
                    let token = decode!(&row)?;
                    let username: String = row.try_get("username")?;
                    Some((token, username))
                }
                None => None,
            }
        });
        let Some((token, username)) = found else {
            return Ok(None);
        };
        let owner = TokenOwner {
            id: token.user_id,
            username,
        };
        if token
            .last_used_at
            .is_none_or(|last| t - last >= LAST_USED_RESOLUTION)
        {
            with_pool!(self.db, write, |pool, _d| {
                sqlx::query("UPDATE access_tokens SET last_used_at = $1 WHERE id = $2")
                    .bind(t)
                    .bind(token.id)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
        }
        Ok(Some((token, owner)))
    }
}

/// The session layer resolves `Authorization: Bearer vpat_…` through this (sessions sit below
/// `auth`, so they name the lookup, not this store).
#[async_trait::async_trait]
impl crate::session::AccessTokenLookup for AccessTokens {
    async fn grant(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<crate::session::AccessGrant>, crate::Error> {
        Ok(self
            .resolve(hash)
            .await?
            .map(|(token, owner)| crate::session::AccessGrant {
                user_id: owner.id,
                username: owner.username,
                created_at: token.created_at,
                can_write: token.can_write(),
            }))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::Scope;

    #[test]
    fn read_means_get_head_and_options_only() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(Scope::Read.allows(&m), "{m}");
            assert!(Scope::Write.allows(&m), "{m}");
        }
        let propfind = Method::from_bytes(b"PROPFIND").expect("method");
        for m in [
            Method::TRACE,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::CONNECT,
            propfind,
        ] {
            assert!(!Scope::Read.allows(&m), "{m}");
            assert!(Scope::Write.allows(&m), "{m}");
        }
    }
}
