//! Stateless sessions: the whole record travels in the cookie, encrypted and authenticated
//! (XChaCha20-Poly1305), the analogue of Django's `signed_cookies` backend but unreadable by the
//! client as well as untamperable.
//!
//! What it cannot do, by nature: revoke one session before it expires (the server keeps nothing),
//! list a user's sessions, or hold more than about 4 KB. Logout-all and password changes fall back
//! to a per-user *generation* counter kept by the server: each sealed session carries the
//! generation it was issued under, and a session from an older generation is refused.
//!
//! Keys rotate without logging anyone out: the [`CookieKeyRing`] seals with its first key and
//! opens with any of them; drop an old key once every cookie sealed with it has expired.
//!
//! Format: `v1.` + base64url(key id ‖ 24-byte random nonce ‖ ciphertext ‖ 16-byte tag); the
//! associated data binds the format version, the key id and the cookie name, so a value cannot be
//! replayed under another cookie name or re-labelled with another key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::session::record::UnixTime;

/// Browsers keep cookies up to 4096 bytes for name, value and attributes together; this leaves
/// room for the name and the attributes.
pub const MAX_COOKIE_VALUE: usize = 3800;

const VERSION: &str = "v1.";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// One encryption key with its id (the byte that names it inside each cookie).
#[derive(Clone)]
pub struct CookieKey {
    id: u8,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CookieKey({})", self.id)
    }
}

impl CookieKey {
    /// A key from 32 secret bytes (from a secret manager or `openssl rand 32`).
    pub fn new(id: u8, secret: [u8; 32]) -> Self {
        Self {
            id,
            cipher: XChaCha20Poly1305::new(&Key::from(secret)),
        }
    }
}

/// The keys cookies are sealed and opened with: the first seals, all open.
#[derive(Debug, Clone)]
pub struct CookieKeyRing {
    keys: Vec<CookieKey>,
}

/// Why a cookie could not be sealed or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CookieError {
    /// The key ring is empty, or two keys share an id.
    #[error("the cookie key ring needs at least one key and distinct key ids")]
    BadKeyRing,
    /// The session does not fit in a cookie.
    #[error(
        "the session is {size} bytes sealed, over the {limit}-byte cookie limit: store less in the session, or use a server-side store (sqlite, redis)"
    )]
    TooLarge {
        /// Sealed size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a sealed session of this format.
    #[error("malformed session cookie")]
    Malformed,
    /// Sealed with a key no longer in the ring.
    #[error("session cookie sealed with an unknown key")]
    UnknownKey,
    /// Tampered with, or sealed for another cookie name.
    #[error("session cookie failed authentication")]
    Tampered,
    /// Idle or absolute expiry passed.
    #[error("session cookie expired")]
    Expired,
    /// Issued before the user's last logout-all or password change.
    #[error("session cookie revoked (older generation)")]
    Revoked,
}

/// What a sealed cookie carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedSession {
    /// Logged-in user, if any.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    /// The user's generation when this was issued (see the module docs).
    #[serde(rename = "g", default)]
    pub generation: u64,
    /// Session data.
    #[serde(rename = "d", default)]
    pub data: Map<String, Value>,
    /// Created.
    #[serde(rename = "c")]
    pub created_at: UnixTime,
    /// Idle expiry.
    #[serde(rename = "e")]
    pub expires_at: UnixTime,
    /// Absolute expiry.
    #[serde(rename = "a")]
    pub absolute_expires_at: UnixTime,
}

impl CookieKeyRing {
    /// A ring sealing with `keys[0]`.
    ///
    /// # Errors
    /// [`CookieError::BadKeyRing`] when empty or when ids repeat.
    pub fn new(keys: Vec<CookieKey>) -> Result<Self, CookieError> {
        let mut ids: Vec<u8> = keys.iter().map(|k| k.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if keys.is_empty() || ids.len() != keys.len() {
            return Err(CookieError::BadKeyRing);
        }
        Ok(Self { keys })
    }

    fn aad(key_id: u8, cookie_name: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(16 + cookie_name.len());
        aad.extend_from_slice(b"vestibule/v1/");
        aad.push(key_id);
        aad.extend_from_slice(cookie_name.as_bytes());
        aad
    }

    /// Seals a session into a cookie value.
    ///
    /// # Errors
    /// [`CookieError::TooLarge`] past [`MAX_COOKIE_VALUE`], with a message saying what to do.
    pub fn seal(&self, session: &SealedSession, cookie_name: &str) -> Result<String, CookieError> {
        let key = self.keys.first().ok_or(CookieError::BadKeyRing)?;
        let mut buf = serde_json::to_vec(session).map_err(|_| CookieError::Malformed)?;
        let sealed_len = VERSION.len() + (1 + NONCE_LEN + buf.len() + TAG_LEN).div_ceil(3) * 4;
        if sealed_len > MAX_COOKIE_VALUE {
            return Err(CookieError::TooLarge {
                size: sealed_len,
                limit: MAX_COOKIE_VALUE,
            });
        }
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| CookieError::BadKeyRing)?;
        let tag = key
            .cipher
            .encrypt_inout_detached(
                &XNonce::from(nonce),
                &Self::aad(key.id, cookie_name),
                buf.as_mut_slice().into(),
            )
            .map_err(|_| CookieError::TooLarge {
                size: sealed_len,
                limit: MAX_COOKIE_VALUE,
            })?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len() + TAG_LEN);
        out.push(key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        out.extend_from_slice(tag.as_slice());
        Ok(format!("{VERSION}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Opens a cookie value: authentic, for this cookie name, not expired at `now`, and of the
    /// user's `current_generation` (ask the server's counter for `user_id` after a first open
    /// with [`CookieKeyRing::open_unchecked`], or pass it when known).
    ///
    /// # Errors
    /// The [`CookieError`] naming why it is refused.
    pub fn open(
        &self,
        value: &str,
        cookie_name: &str,
        now: UnixTime,
        current_generation: impl FnOnce(i64) -> u64,
    ) -> Result<SealedSession, CookieError> {
        let s = self.open_unchecked(value, cookie_name)?;
        if now >= s.expires_at || now >= s.absolute_expires_at {
            return Err(CookieError::Expired);
        }
        if let Some(uid) = s.user_id
            && s.generation != current_generation(uid)
        {
            return Err(CookieError::Revoked);
        }
        Ok(s)
    }

    /// Decrypts and authenticates without checking expiry or generation.
    ///
    /// # Errors
    /// [`CookieError::Malformed`], [`CookieError::UnknownKey`] or [`CookieError::Tampered`].
    pub fn open_unchecked(
        &self,
        value: &str,
        cookie_name: &str,
    ) -> Result<SealedSession, CookieError> {
        if value.len() > MAX_COOKIE_VALUE {
            return Err(CookieError::Malformed);
        }
        let body = value.strip_prefix(VERSION).ok_or(CookieError::Malformed)?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CookieError::Malformed)?;
        if raw.len() < 1 + NONCE_LEN + TAG_LEN {
            return Err(CookieError::Malformed);
        }
        let (id, rest) = raw.split_at(1);
        let (nonce, rest) = rest.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id[0])
            .ok_or(CookieError::UnknownKey)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CookieError::Malformed)?;
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| CookieError::Malformed)?;
        let mut buf = ciphertext.to_vec();
        key.cipher
            .decrypt_inout_detached(
                &XNonce::from(nonce),
                &Self::aad(key.id, cookie_name),
                buf.as_mut_slice().into(),
                &Tag::from(tag),
            )
            .map_err(|_| CookieError::Tampered)?;
        serde_json::from_slice(&buf).map_err(|_| CookieError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ring(ids: &[u8]) -> CookieKeyRing {
        CookieKeyRing::new(ids.iter().map(|&id| CookieKey::new(id, [id; 32])).collect())
            .expect("ring")
    }

    fn session(user: Option<i64>, generation: u64) -> SealedSession {
        SealedSession {
            user_id: user,
            generation,
            data: json!({"cart": [1, 2, 3]})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            created_at: 1000,
            expires_at: 2000,
            absolute_expires_at: 3000,
        }
    }

    #[test]
    fn round_trips_and_hides_the_content() {
        let r = ring(&[1]);
        let s = session(Some(7), 3);
        let v = r.seal(&s, "sid").expect("seal");
        assert!(v.starts_with("v1.") && !v.contains("cart"));
        assert_eq!(r.open(&v, "sid", 1500, |_| 3).expect("open"), s);
        // Two seals of the same session differ (random nonce).
        assert_ne!(v, r.seal(&s, "sid").expect("seal"));
    }

    #[test]
    fn tampering_another_name_and_unknown_keys_are_refused() {
        let r = ring(&[1]);
        let v = r.seal(&session(None, 0), "sid").expect("seal");
        let mut bytes = v.clone().into_bytes();
        let last = bytes.len() - 5;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        assert_eq!(
            r.open_unchecked(&tampered, "sid"),
            Err(CookieError::Tampered)
        );
        assert_eq!(r.open_unchecked(&v, "other"), Err(CookieError::Tampered));
        assert_eq!(
            ring(&[2]).open_unchecked(&v, "sid"),
            Err(CookieError::UnknownKey)
        );
        for junk in ["", "v1.", "v2.abc", "v1.!!!", &"v1.".repeat(2000)] {
            assert!(r.open_unchecked(junk, "sid").is_err(), "{junk}");
        }
    }

    #[test]
    fn keys_rotate_without_logging_anyone_out() {
        let old = ring(&[1]);
        let v = old.seal(&session(None, 0), "sid").expect("seal");
        let rotated = ring(&[2, 1]);
        assert!(
            rotated.open(&v, "sid", 1500, |_| 0).is_ok(),
            "old cookies still open"
        );
        let fresh = rotated.seal(&session(None, 0), "sid").expect("seal");
        assert!(
            ring(&[2]).open(&fresh, "sid", 1500, |_| 0).is_ok(),
            "sealed with the new key"
        );
        assert_eq!(
            ring(&[2]).open(&v, "sid", 1500, |_| 0),
            Err(CookieError::UnknownKey)
        );
        assert_eq!(
            CookieKeyRing::new(vec![]).err(),
            Some(CookieError::BadKeyRing)
        );
        assert!(
            CookieKeyRing::new(vec![CookieKey::new(1, [0; 32]), CookieKey::new(1, [1; 32])])
                .is_err()
        );
    }

    #[test]
    fn expiry_and_generation_are_enforced() {
        let r = ring(&[1]);
        let v = r.seal(&session(Some(7), 3), "sid").expect("seal");
        assert_eq!(r.open(&v, "sid", 2000, |_| 3), Err(CookieError::Expired));
        // Logout-all / password change bumped the user's generation: the cookie is dead.
        assert_eq!(r.open(&v, "sid", 1500, |_| 4), Err(CookieError::Revoked));
        // Anonymous sessions have no generation to check.
        let anon = r.seal(&session(None, 0), "sid").expect("seal");
        assert!(r.open(&anon, "sid", 1500, |_| 99).is_ok());
    }

    #[test]
    fn a_session_over_the_cookie_limit_is_a_clear_error() {
        let r = ring(&[1]);
        let mut s = session(None, 0);
        s.data
            .insert("blob".into(), Value::String("x".repeat(4000)));
        let err = r.seal(&s, "sid").expect_err("too large");
        assert!(matches!(
            err,
            CookieError::TooLarge {
                limit: MAX_COOKIE_VALUE,
                ..
            }
        ));
        assert!(err.to_string().contains("server-side store"), "{err}");
    }
}
