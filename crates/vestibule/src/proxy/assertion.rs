//! Signed identity assertions: a short-lived JWT (EdDSA over Ed25519, RFC 8037) the gateway sends
//! upstream in `X-Vestibule-Assertion`, so a backend that can be reached by other paths than the
//! gateway can still verify who the user is, with the public key from `GET /auth/jwks.json`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use http::HeaderValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::session::SessionUser;

/// The request header that carries the assertion.
pub const ASSERTION_HEADER: &str = "x-vestibule-assertion";

/// How long an assertion is valid: long enough for clock skew and one request, too short to be
/// worth stealing.
pub const ASSERTION_LIFETIME_SECS: i64 = 60;

/// How long a signed assertion is sent again to the same upstream for the same login: half its
/// lifetime, so an upstream always receives one with at least 30 s left.
pub const ASSERTION_REUSE_SECS: i64 = ASSERTION_LIFETIME_SECS / 2;

/// How many logins' assertions one upstream keeps (S3-FIFO: a burst of one-off users does not
/// push out the active ones). ≈ 600 bytes each.
const CACHE_CAPACITY: usize = 4096;

/// The gateway's signing key. The private half never leaves the process and its key file.
pub struct IdentityKey {
    signing: SigningKey,
    kid: String,
    x: String,
}

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl IdentityKey {
    fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
        // RFC 7638 thumbprint: the required members, sorted, no spaces.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        Self { signing, kid, x }
    }

    /// A fresh key from the OS CSPRNG (lives as long as the process).
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        crate::token::fill_random(&mut seed);
        Self::from_seed(&seed)
    }

    /// Reads the key from `path`, or creates it there (mode 0600) so that restarts and several
    /// gateway processes sharing the file sign with the same key.
    ///
    /// # Errors
    /// The file cannot be read or created, or does not hold a key.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let raw = URL_SAFE_NO_PAD.decode(text.trim()).ok();
                let seed: Option<[u8; 32]> = raw.and_then(|r| r.try_into().ok());
                seed.map(|s| Self::from_seed(&s)).ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{} does not hold an identity key; delete it to make a new one",
                            path.display()
                        ),
                    )
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                crate::token::fill_random(&mut seed);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path)?;
                writeln!(file, "{}", URL_SAFE_NO_PAD.encode(seed))?;
                Ok(Self::from_seed(&seed))
            }
            Err(e) => Err(e),
        }
    }

    /// The key id (RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK Set served at `/auth/jwks.json`.
    pub fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "x": self.x,
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        }]})
    }

    /// A signed assertion that `user` made this request, for the upstream `audience`.
    pub(crate) fn assert(
        &self,
        issuer: &str,
        audience: &str,
        user: &SessionUser,
        now: i64,
    ) -> String {
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let claims = json!({
            "iss": issuer,
            "aud": audience,
            "sub": user.id.to_string(),
            "preferred_username": user.username,
            "auth_time": user.auth_time,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.signing.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

/// The assertions one upstream received recently, by login.
///
/// Why: signing is most of the authenticated gateway's cost. Ed25519 plus two JSON encodings
/// took ≈ 33 µs of a 75 µs proxied request on this project's 2-core bench host
/// (`bench/proxy.sh`, `require_auth` upstream: 13.4k req/s with `identity_assertion`, 23.9k
/// without), the same for every request of one login within a second. The claims depend only on
/// the issuer, the upstream, the user (id, username) and `auth_time`, plus `iat`, so one login's
/// assertion is reused for [`ASSERTION_REUSE_SECS`]: the upstream learns nothing new from a
/// fresh one. A new login (new `auth_time`) or a renamed user gets a new assertion; a session that
/// ends is refused at the gateway before this is asked.
pub(crate) struct AssertionCache {
    cache: quick_cache::sync::Cache<(i64, i64), Arc<Cached>>,
}

struct Cached {
    username: String,
    iat: i64,
    value: HeaderValue,
}

impl std::fmt::Debug for AssertionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Assertions are credentials for the upstream: never in a log.
        f.debug_struct("AssertionCache")
            .field("entries", &self.cache.len())
            .finish()
    }
}

impl Default for AssertionCache {
    fn default() -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(CACHE_CAPACITY),
        }
    }
}

impl AssertionCache {
    /// The assertion that `user` makes this request to `audience`: the one signed for the same
    /// login less than [`ASSERTION_REUSE_SECS`] ago, or a new one. `None` only if the JWT were
    /// not a valid header value (it is base64url and dots).
    pub(crate) fn assertion(
        &self,
        key: &IdentityKey,
        issuer: &str,
        audience: &str,
        user: &SessionUser,
        now: i64,
    ) -> Option<HeaderValue> {
        let login = (user.id, user.auth_time);
        if let Some(c) = self.cache.get(&login)
            && c.username == user.username
            && (0..ASSERTION_REUSE_SECS).contains(&(now - c.iat))
        {
            return Some(c.value.clone());
        }
        let value = HeaderValue::from_str(&key.assert(issuer, audience, user, now)).ok()?;
        self.cache.insert(
            login,
            Arc::new(Cached {
                username: user.username.clone(),
                iat: now,
                value: value.clone(),
            }),
        );
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    #[test]
    fn assertions_verify_with_the_published_key_and_carry_the_claims() {
        let key = IdentityKey::generate();
        let user = alice();
        let jwt = key.assert(
            "http://localhost:8000",
            "http://127.0.0.1:8001",
            &user,
            5000,
        );
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let jwks = key.jwks();
        let x = URL_SAFE_NO_PAD
            .decode(jwks["keys"][0]["x"].as_str().expect("x"))
            .expect("b64");
        let public = VerifyingKey::from_bytes(&x.try_into().expect("32 bytes")).expect("key");
        let sig =
            Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).expect("b64")).expect("sig");
        let input = format!("{}.{}", parts[0], parts[1]);
        assert!(public.verify(input.as_bytes(), &sig).is_ok());
        assert!(public.verify(b"tampered", &sig).is_err());
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(claims["sub"], "7");
        assert_eq!(claims["exp"], 5060);
        assert_eq!(claims["aud"], "http://127.0.0.1:8001");
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(header["kid"], key.kid());
    }

    fn alice() -> SessionUser {
        SessionUser {
            id: 7,
            username: "alice".into(),
            auth_time: 1000,
            transport: crate::session::Transport::Cookie,
        }
    }

    fn claims_of(v: &HeaderValue) -> Value {
        let jwt = v.to_str().expect("ascii");
        let payload = jwt.split('.').nth(1).expect("claims");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
    }

    #[test]
    fn a_login_reuses_its_assertion_for_half_its_lifetime_and_no_longer() {
        let key = IdentityKey::generate();
        let cache = AssertionCache::default();
        let alice = alice();
        let up = "http://127.0.0.1:8001";
        let first = cache
            .assertion(&key, "http://localhost:8000", up, &alice, 5000)
            .expect("assertion");
        let again = cache.assertion(&key, "http://localhost:8000", up, &alice, 5029);
        assert_eq!(again.as_ref(), Some(&first), "reused within the window");
        // Never handed on with less than half its lifetime left.
        let later = cache
            .assertion(&key, "http://localhost:8000", up, &alice, 5030)
            .expect("assertion");
        assert_ne!(later, first);
        assert_eq!(claims_of(&later)["iat"], 5030);
        assert_eq!(claims_of(&later)["exp"], 5090);
        // A clock that went back does not revive an old one either.
        let back = cache
            .assertion(&key, "http://localhost:8000", up, &alice, 4000)
            .expect("assertion");
        assert_eq!(claims_of(&back)["iat"], 4000);
    }

    #[test]
    fn another_login_another_user_or_a_rename_gets_its_own_assertion() {
        let key = IdentityKey::generate();
        let cache = AssertionCache::default();
        let iss = "http://localhost:8000";
        let up = "http://127.0.0.1:8001";
        let alice = alice();
        let a = cache.assertion(&key, iss, up, &alice, 5000).expect("a");
        let relogin = SessionUser {
            auth_time: 1001,
            ..alice.clone()
        };
        let r = cache.assertion(&key, iss, up, &relogin, 5001).expect("r");
        assert_eq!(claims_of(&r)["auth_time"], 1001);
        let bob = SessionUser {
            id: 8,
            username: "bob".into(),
            ..alice.clone()
        };
        let b = cache.assertion(&key, iss, up, &bob, 5001).expect("b");
        assert_eq!(claims_of(&b)["sub"], "8");
        let renamed = SessionUser {
            username: "alice2".into(),
            ..alice.clone()
        };
        let n = cache.assertion(&key, iss, up, &renamed, 5002).expect("n");
        assert_eq!(claims_of(&n)["preferred_username"], "alice2");
        assert_ne!(a, r);
        assert_ne!(a, n);
        // Logins do not push each other out: bob's is still the one he got.
        assert_eq!(cache.assertion(&key, iss, up, &bob, 5003), Some(b));
    }

    #[test]
    fn the_key_file_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.key");
        let a = IdentityKey::load_or_create(&path).expect("create");
        let b = IdentityKey::load_or_create(&path).expect("read");
        assert_eq!(a.kid(), b.kid());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "only the owner may read the key");
        }
        std::fs::write(&path, "garbage").expect("write");
        assert!(IdentityKey::load_or_create(&path).is_err());
    }
}
