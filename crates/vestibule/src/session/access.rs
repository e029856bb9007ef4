//! What a session needs to know about personal access tokens, as a trait the token store
//! (`auth::AccessTokens`) implements: sessions sit below `auth` in the layering, so they ask
//! through [`AccessTokenLookup`] the way they ask the user store through
//! [`Generations`](super::stores::Generations).

use axum::http::Method;

use super::UnixTime;
use crate::error::Error;
use crate::token::TokenHash;

/// A live access token as the session layer needs it: whose it is, since when, and whether it
/// may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessGrant {
    /// The owner's user id.
    pub user_id: i64,
    /// The owner's username.
    pub username: String,
    /// When the token was created (the request's `auth_time`).
    pub created_at: UnixTime,
    /// Whether the token holds the `write` scope.
    pub can_write: bool,
}

/// Looks up a personal access token by its hash: live (not expired, not revoked) and owned by
/// an active user, or `None`.
#[async_trait::async_trait]
pub trait AccessTokenLookup: Send + Sync + std::fmt::Debug + 'static {
    /// The grant of the token whose hash is `hash`, if it is live.
    ///
    /// # Errors
    /// `store_unavailable` when the database cannot answer.
    async fn grant(&self, hash: &TokenHash) -> Result<Option<AccessGrant>, Error>;
}

/// Whether `method` only reads: GET, HEAD and OPTIONS, nothing else. Not `Method::is_safe`,
/// which also counts TRACE (a method that echoes the request back, and that some backends route
/// like any other). The one rule for a read-only access token (`auth::Scope::allows`) and for the
/// session layer's "is this a write".
pub fn is_read_method(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD || *method == Method::OPTIONS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_means_get_head_and_options_only() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(is_read_method(&m), "{m}");
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
            assert!(!is_read_method(&m), "{m}");
        }
    }
}
