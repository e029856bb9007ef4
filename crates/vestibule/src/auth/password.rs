//! Argon2id hashing on the blocking pool, with a dummy hash so unknown users cost the same.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Argon2, Params};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, ErrorCode};

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

/// Memory one Argon2id hash or verification holds with the parameters Vestibule uses
/// (m = 19 MiB): the unit of `auth.hash_memory_budget`.
pub const HASH_MEMORY_BYTES: u64 = Params::DEFAULT_M_COST as u64 * 1024;

/// Default of `auth.hash_memory_budget`: 256 MiB, 13 concurrent hashes at most.
pub const DEFAULT_HASH_MEMORY_BUDGET: u64 = 256 * 1024 * 1024;

/// Default of `auth.hash_queue_timeout`: how long a login waits for a hashing slot before
/// 503 `busy`.
pub const DEFAULT_HASH_QUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// How many hashes may run at once and how long a request waits for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashLimits {
    /// Concurrent hashes wanted (the CPU count by default: more does not go faster).
    pub parallelism: usize,
    /// Memory all concurrent hashes may hold together, in bytes; caps `parallelism` at
    /// `memory_budget / HASH_MEMORY_BYTES`, so a login storm cannot push the process past it.
    pub memory_budget: u64,
    /// Longest wait for a slot; then 503 `busy` with `Retry-After`.
    pub queue_timeout: Duration,
}

impl HashLimits {
    /// Hashes allowed at once: the parallelism, capped by the memory budget, at least one.
    pub fn permits(&self) -> usize {
        let by_memory =
            usize::try_from(self.memory_budget / HASH_MEMORY_BYTES).unwrap_or(usize::MAX);
        self.parallelism.min(by_memory).max(1)
    }
}

impl Default for HashLimits {
    fn default() -> Self {
        Self {
            parallelism: 1,
            memory_budget: DEFAULT_HASH_MEMORY_BUDGET,
            queue_timeout: DEFAULT_HASH_QUEUE_TIMEOUT,
        }
    }
}

/// Hashes and verifies passwords with Argon2id (OWASP parameters: m = 19 MiB, t = 2, p = 1) on
/// tokio's blocking pool, at most [`HashLimits::permits`] at once, so logins never stall the
/// async workers and a login flood cannot take all the memory: past
/// [`HashLimits::queue_timeout`] of waiting, the caller gets 503 `busy`.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    capacity: usize,
    queue_timeout: Duration,
    dummy: Arc<str>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("capacity", &self.capacity)
            .field("available", &self.permits.available_permits())
            .finish()
    }
}

fn argon2() -> Argon2<'static> {
    // Argon2::default() is Argon2id v19 with m=19456 KiB, t=2, p=1: OWASP's recommendation.
    Argon2::default()
}

/// The hash unknown usernames are verified against: the current parameters, a random salt and
/// a random output. Verifying against it runs the same Argon2id work as a real hash, and no
/// password matches it (that would take a 256-bit preimage), so it needs no hashing to make:
/// computing one at start held a 19 MiB block array that the allocator kept resident while the
/// server sat idle.
fn dummy_hash() -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::phc::{Output, ParamsString, Salt};
    let mut salt = [0u8; 16];
    crate::token::fill_random(&mut salt);
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    crate::token::fill_random(&mut output);
    let a = argon2();
    Ok(argon2::PasswordHash {
        algorithm: argon2::Algorithm::default().ident(),
        version: Some(argon2::Version::default().into()),
        params: ParamsString::try_from(a.params())?,
        salt: Some(Salt::new(&salt)?),
        hash: Some(Output::new(&output)?),
    }
    .to_string())
}

/// Counts hashes actually running (inside the blocking task) and keeps the high-water mark.
struct Running<'a> {
    running: &'a AtomicUsize,
}

impl<'a> Running<'a> {
    fn enter(running: &'a AtomicUsize, peak: &AtomicUsize) -> Self {
        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        Self { running }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PasswordHasher {
    /// A hasher running at most `parallelism` hashes at once (within the default memory budget).
    ///
    /// # Errors
    /// `internal` if the dummy hash cannot be computed.
    pub async fn new(parallelism: usize) -> Result<Self, Error> {
        Self::with_limits(HashLimits {
            parallelism,
            ..HashLimits::default()
        })
        .await
    }

    /// A hasher under `limits`.
    ///
    /// # Errors
    /// `internal` if the dummy hash cannot be computed.
    pub async fn with_limits(limits: HashLimits) -> Result<Self, Error> {
        let capacity = limits.permits();
        let dummy =
            dummy_hash().map_err(|e| Error::internal(std::io::Error::other(e.to_string())))?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
            queue_timeout: limits.queue_timeout,
            dummy: dummy.into(),
            running: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Hashes allowed at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The most hashes that ever ran at once in this process (for tests and the bench).
    pub fn peak_concurrency(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Waits up to the queue timeout for a slot. The permit is owned so it moves into the
    /// blocking task: a client that hangs up does not free the slot while its hash still runs.
    async fn slot(&self) -> Result<OwnedSemaphorePermit, Error> {
        match tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned()).await
        {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(Error::internal(e)),
            Err(_) => Err(Error::new(
                ErrorCode::Busy,
                "the server is verifying as many passwords as its memory budget allows",
            )
            .with_hint("retry after Retry-After seconds; operators: auth.hash_memory_budget, auth.hash_parallelism")
            .with_retry_after(1)),
        }
    }

    /// Runs `f` on the blocking pool under a slot.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let permit = self.slot().await?;
        let running = self.running.clone();
        let peak = self.peak.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _guard = span.enter();
            let _running = Running::enter(&running, &peak);
            f()
        })
        .await
        .map_err(Error::internal)
    }

    /// Hashes a new password into a PHC string.
    ///
    /// # Errors
    /// 503 `busy` when no slot frees up in time; `internal` on a hashing failure.
    pub async fn hash(&self, password: &Password) -> Result<String, Error> {
        let pw = password.clone();
        self.run(move || {
            argon2()
                .hash_password(pw.expose().as_bytes())
                .map(|h| h.to_string())
        })
        .await?
        .map_err(|e| Error::internal(std::io::Error::other(e.to_string())))
    }

    /// Verifies `password` against `stored`, or against a dummy hash when the user does not exist,
    /// so both answers take the same time.
    ///
    /// # Errors
    /// 503 `busy` when no slot frees up in time.
    pub async fn verify(&self, stored: Option<&str>, password: &Password) -> Result<bool, Error> {
        let exists = stored.is_some();
        let hash: String = stored.map_or_else(|| self.dummy.to_string(), str::to_owned);
        let pw = password.clone();
        let ok = self
            .run(move || {
                argon2()
                    .verify_password(pw.expose().as_bytes(), hash.as_str())
                    .is_ok()
            })
            .await?;
        Ok(ok && exists)
    }

    /// Whether `stored` was made with other parameters than the current ones (an older
    /// algorithm, version or cost): the login that just proved the password rehashes it.
    pub fn needs_rehash(stored: &str) -> bool {
        let Ok(parsed) = argon2::PasswordHash::new(stored) else {
            return false;
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return false;
        };
        let current = Params::DEFAULT;
        parsed.algorithm.as_str() != argon2::ARGON2ID_IDENT.as_str()
            || parsed.version != Some(argon2::Version::default().into())
            || params.m_cost() != current.m_cost()
            || params.t_cost() != current.t_cost()
            || params.p_cost() != current.p_cost()
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
        assert!(h.verify(Some(&a), &pw).await.expect("verify"));
        assert!(
            !h.verify(Some(&a), &Password::new("wrong horse"))
                .await
                .expect("verify")
        );
        assert!(!h.verify(None, &pw).await.expect("verify"));
        assert!(
            !h.verify(Some("not a phc string"), &pw)
                .await
                .expect("verify")
        );
        assert!(!PasswordHasher::needs_rehash(&a));
        assert!(h.peak_concurrency() >= 1);
    }

    #[test]
    fn the_dummy_hash_has_the_current_parameters_and_matches_nothing() {
        let d = dummy_hash().expect("dummy");
        assert!(d.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{d}");
        assert!(!PasswordHasher::needs_rehash(&d));
        assert_ne!(
            dummy_hash().expect("dummy"),
            d,
            "salted and random each time"
        );
        assert!(argon2().verify_password(b"", d.as_str()).is_err());
    }

    #[test]
    fn weaker_parameters_need_a_rehash() {
        let weak = Params::new(8 * 1024, 1, 1, None).expect("params");
        let stored = Argon2::from(weak)
            .hash_password(b"correct horse")
            .expect("hash")
            .to_string();
        assert!(PasswordHasher::needs_rehash(&stored), "{stored}");
        let argon2i = Argon2::new(
            argon2::Algorithm::Argon2i,
            argon2::Version::default(),
            Params::DEFAULT,
        )
        .hash_password(b"correct horse")
        .expect("hash")
        .to_string();
        assert!(PasswordHasher::needs_rehash(&argon2i), "{argon2i}");
        assert!(!PasswordHasher::needs_rehash("not a phc string"));
    }

    #[test]
    fn permits_follow_the_memory_budget() {
        let l = |parallelism, mib: u64| HashLimits {
            parallelism,
            memory_budget: mib * 1024 * 1024,
            queue_timeout: DEFAULT_HASH_QUEUE_TIMEOUT,
        };
        assert_eq!(l(64, 256).permits(), 13, "256 MiB / 19 MiB");
        assert_eq!(l(2, 256).permits(), 2, "the CPU count when lower");
        assert_eq!(l(8, 40).permits(), 2);
        assert_eq!(l(8, 1).permits(), 1, "never zero");
    }

    #[tokio::test]
    async fn a_full_hasher_answers_busy_after_the_queue_timeout() {
        let h = PasswordHasher::with_limits(HashLimits {
            parallelism: 1,
            memory_budget: DEFAULT_HASH_MEMORY_BUDGET,
            queue_timeout: Duration::from_millis(1),
        })
        .await
        .expect("hasher");
        let _held = h.permits.clone().acquire_owned().await.expect("permit");
        let e = h
            .verify(None, &Password::new("whatever pass"))
            .await
            .expect_err("busy");
        assert_eq!(e.code(), ErrorCode::Busy);
        assert_eq!(e.code().status(), 503);
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
