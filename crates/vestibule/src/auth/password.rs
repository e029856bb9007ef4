//! Argon2id hashing on the blocking pool, with a dummy hash so unknown users cost the same.

use std::fmt;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::error::Error;

/// A password from a client. `Debug` is redacted so it never reaches a log.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(redacted)")
    }
}

/// What a new password must satisfy.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    /// Minimum length in characters (default 8).
    pub min_length: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self { min_length: 8 }
    }
}

impl PasswordPolicy {
    /// Checks a new password for `username` (see [`super::quality::check`]).
    ///
    /// # Errors
    /// 422 `password_too_short`, `password_too_long`, `password_too_common` or
    /// `password_contains_username`.
    pub fn check(&self, username: &str, password: &Password) -> Result<(), Error> {
        super::quality::check(self.min_length, username, password.expose())
    }
}

/// Hashes and verifies passwords with Argon2id (OWASP parameters: m = 19 MiB, t = 2, p = 1) on
/// tokio's blocking pool, at most `parallelism` at once, so logins never stall the async workers
/// and a login flood cannot take all the memory.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    dummy: Arc<str>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("available", &self.permits.available_permits())
            .finish()
    }
}

fn argon2() -> Argon2<'static> {
    // Argon2::default() is Argon2id v19 with m=19456 KiB, t=2, p=1: OWASP's recommendation.
    Argon2::default()
}

impl PasswordHasher {
    /// A hasher running at most `parallelism` hashes at once.
    ///
    /// # Errors
    /// `internal` if the dummy hash cannot be computed.
    pub async fn new(parallelism: usize) -> Result<Self, Error> {
        let permits = Arc::new(Semaphore::new(parallelism.max(1)));
        let dummy = tokio::task::spawn_blocking(|| {
            let mut salt_src = [0u8; 16];
            crate::token::fill_random(&mut salt_src);
            argon2().hash_password(&salt_src).map(|h| h.to_string())
        })
        .await
        .map_err(Error::internal)?
        .map_err(|e| Error::internal(std::io::Error::other(e.to_string())))?;
        Ok(Self {
            permits,
            dummy: dummy.into(),
        })
    }

    /// Hashes a new password into a PHC string.
    ///
    /// # Errors
    /// `internal` on a hashing failure.
    pub async fn hash(&self, password: &Password) -> Result<String, Error> {
        let _permit = self.permits.acquire().await.map_err(Error::internal)?;
        let pw = password.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _guard = span.enter();
            argon2()
                .hash_password(pw.expose().as_bytes())
                .map(|h| h.to_string())
        })
        .await
        .map_err(Error::internal)?
        .map_err(|e| Error::internal(std::io::Error::other(e.to_string())))
    }

    /// Verifies `password` against `stored`, or against a dummy hash when the user does not exist,
    /// so both answers take the same time.
    pub async fn verify(&self, stored: Option<&str>, password: &Password) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let exists = stored.is_some();
        let hash: String = stored.map_or_else(|| self.dummy.to_string(), str::to_owned);
        let pw = password.clone();
        let span = tracing::Span::current();
        let ok = tokio::task::spawn_blocking(move || {
            let _guard = span.enter();
            argon2()
                .verify_password(pw.expose().as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .unwrap_or(false);
        ok && exists
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let h = PasswordHasher::new(2).await.expect("hasher");
        let pw = Password::new("correct horse");
        let a = h.hash(&pw).await.expect("hash");
        let b = h.hash(&pw).await.expect("hash");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b);
        assert!(h.verify(Some(&a), &pw).await);
        assert!(!h.verify(Some(&a), &Password::new("wrong horse")).await);
        assert!(!h.verify(None, &pw).await);
        assert!(!h.verify(Some("not a phc string"), &pw).await);
    }

    #[test]
    fn policy_refuses_short_long_common_and_username() {
        let p = PasswordPolicy::default();
        assert!(p.check("alice", &Password::new("short")).is_err());
        assert!(p.check("alice", &Password::new("Alice")).is_err());
        assert!(p.check("alicealice", &Password::new("ALICEALICE")).is_err());
        assert!(p.check("alice", &Password::new("iloveyou")).is_err());
        assert!(
            p.check(
                "alice",
                &Password::new("x".repeat(super::super::MAX_PASSWORD_BYTES + 1))
            )
            .is_err()
        );
        assert!(p.check("alice", &Password::new("ünïcødé pass")).is_ok());
        assert!(format!("{:?}", Password::new("secret")).contains("redacted"));
    }
}
