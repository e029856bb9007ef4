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

use crate::session::Record;
use crate::session::record::UnixTime;
use crate::token::{SecretToken, TokenKind};

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
    /// The session's identity: a session token that never leaves the cookie in clear. Its hash is
    /// the session id and it keys the CSRF secret, as for the other stores; login draws a new one.
    #[serde(rename = "t", default)]
    pub token: String,
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
    /// Last expiry extension (throttles re-sealing as `touch_interval` throttles store writes).
    #[serde(rename = "l", default)]
    pub last_seen: UnixTime,
    /// Idle expiry.
    #[serde(rename = "e")]
    pub expires_at: UnixTime,
    /// Absolute expiry.
    #[serde(rename = "a")]
    pub absolute_expires_at: UnixTime,
}

impl SealedSession {
    /// What the cookie carries for `record` under the identity `token` (the session token's
    /// text) and the user's `generation`. The `User-Agent` is not carried: the browser sends it
    /// with every request anyway.
    pub fn from_record(record: &crate::session::Record, token: &str, generation: u64) -> Self {
        Self {
            token: token.to_owned(),
            user_id: record.user_id,
            generation,
            data: record.stored_data().into_owned(),
            created_at: record.created_at,
            last_seen: record.last_seen,
            expires_at: record.expires_at,
            absolute_expires_at: record.absolute_expires_at,
        }
    }

    /// The record again, keyed by `key` (the hash of the identity token), with the `User-Agent`
    /// of the request that presented the cookie.
    ///
    /// # Errors
    /// [`CookieError::Malformed`] when the data's user is not a user.
    pub fn into_record(
        self,
        key: crate::token::TokenHash,
        user_agent: Option<std::sync::Arc<str>>,
    ) -> Result<crate::session::Record, CookieError> {
        let mut record = crate::session::Record {
            key,
            user_id: self.user_id,
            user: None,
            data: self.data,
            created_at: self.created_at,
            last_seen: self.last_seen,
            expires_at: self.expires_at,
            absolute_expires_at: self.absolute_expires_at,
            user_agent,
        };
        record
            .take_user_from_data()
            .map_err(|_| CookieError::Malformed)?;
        Ok(record)
    }
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

impl CookieKey {
    /// A key from 32 secret bytes, its id derived from the bytes (so the id stays the same
    /// wherever the key sits in the ring, and every instance agrees on it).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"vestibule/cookie-key-id\0");
        h.update(secret);
        let id = h.finalize()[0];
        Self::new(id, secret)
    }

    /// Parses one `session.cookie_keys` entry: 32 bytes in base64 (standard or URL-safe, padded
    /// or not), e.g. from `openssl rand -base64 32`. The message never repeats the value.
    ///
    /// # Errors
    /// What is wrong with the entry.
    pub fn parse(encoded: &str) -> Result<Self, String> {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
        let text = encoded.trim();
        let bytes = [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
            .iter()
            .find_map(|e| e.decode(text).ok())
            .ok_or_else(|| {
                "is not base64; generate a key with `openssl rand -base64 32`".to_owned()
            })?;
        let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "decodes to {} bytes, not 32; generate a key with `openssl rand -base64 32`",
                bytes.len()
            )
        })?;
        Ok(Self::from_secret(secret))
    }

    /// The key derived from `secret_key` with HKDF-SHA256, when no `session.cookie_keys` are set:
    /// every instance with the same `secret_key` derives the same key.
    pub fn derive(secret_key: &[u8]) -> Self {
        let mut okm = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte output limit: `expand` cannot fail.
        let _ = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"vestibule"), secret_key)
            .expand(b"vestibule/session-cookie/v1", &mut okm);
        Self::from_secret(okm)
    }

    /// The key's id, the byte that names it inside each sealed cookie.
    pub fn id(&self) -> u8 {
        self.id
    }
}

impl CookieKeyRing {
    /// Parses `session.cookie_keys` (first seals, all open). Each problem names the entry.
    ///
    /// # Errors
    /// The problems found, as messages for the `session.cookie_keys` key.
    pub fn parse(entries: &[impl AsRef<str>]) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut keys: Vec<CookieKey> = Vec::new();
        if entries.is_empty() {
            problems.push("is empty: give at least one key (`openssl rand -base64 32`)".into());
        }
        for (i, e) in entries.iter().enumerate() {
            match CookieKey::parse(e.as_ref()) {
                Ok(k) if keys.iter().any(|o| o.id == k.id) => problems.push(format!(
                    "entry {i} is a duplicate of an earlier key, or shares its 8-bit key id with it; generate another key"
                )),
                Ok(k) => keys.push(k),
                Err(why) => problems.push(format!("entry {i} {why}")),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Self::new(keys).map_err(|e| vec![e.to_string()])
    }

    /// How many keys the ring holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true for a built ring (kept for the `len` convention).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The per-user session generation the cookie store checks: the server's one piece of state
/// about stateless sessions (a column of the users table, read on every authenticated load).
#[async_trait::async_trait]
pub trait Generations: Send + Sync + std::fmt::Debug + 'static {
    /// The user's current generation; `None` when the user is gone or disabled (every sealed
    /// session of theirs is then refused).
    ///
    /// # Errors
    /// `store_unavailable` when the database cannot answer.
    async fn current(&self, user_id: i64) -> Result<Option<u64>, crate::Error>;

    /// Moves the user to a new generation: every sealed session of theirs issued before is
    /// refused at its next request (how the cookie store ends a user's sessions).
    ///
    /// # Errors
    /// `store_unavailable` when the database cannot answer.
    async fn bump(&self, user_id: i64) -> Result<(), crate::Error>;
}

/// The stateless cookie backend: the key ring, the cookie name it seals for, and where the
/// generations are. The session layer uses it in place of store reads and writes.
#[derive(Debug, Clone)]
pub struct CookieSessions {
    pub(crate) ring: CookieKeyRing,
    pub(crate) generations: std::sync::Arc<dyn Generations>,
}

impl CookieSessions {
    /// A backend sealing with `ring` and checking `generations`.
    pub fn new(ring: CookieKeyRing, generations: std::sync::Arc<dyn Generations>) -> Self {
        Self { ring, generations }
    }

    /// The key ring.
    pub fn ring(&self) -> &CookieKeyRing {
        &self.ring
    }

    /// Opens one sealed session cookie named `cookie_name` at `now`: authentic, not expired, and
    /// of the user's current generation (one read of the users table), or says why it is
    /// refused. The record comes back without a `User-Agent`: the caller adds the request's to
    /// the one it keeps.
    ///
    /// # Errors
    /// `store_unavailable` when the generation cannot be read.
    pub(crate) async fn open(
        &self,
        value: &str,
        cookie_name: &str,
        now: UnixTime,
    ) -> Result<Result<Opened, CookieError>, crate::Error> {
        let refused = |why: CookieError| {
            tracing::debug!(reason = %why, "sealed session cookie refused");
            Ok(Err(why))
        };
        let s = match self.ring.open_unchecked(value, cookie_name) {
            Ok(s) => s,
            Err(e) => return refused(e),
        };
        if now >= s.expires_at || now >= s.absolute_expires_at {
            return refused(CookieError::Expired);
        }
        let Ok(token) = SecretToken::parse(TokenKind::Session, &s.token) else {
            return refused(CookieError::Malformed);
        };
        let mut generation = None;
        if let Some(uid) = s.user_id {
            if self.generations.current(uid).await? != Some(s.generation) {
                return refused(CookieError::Revoked);
            }
            generation = Some((uid, s.generation));
        }
        let Ok(record) = s.into_record(token.hash(), None) else {
            return refused(CookieError::Malformed);
        };
        Ok(Ok(Opened {
            token,
            record,
            generation,
        }))
    }

    /// Seals `record` under `token` into the value of the cookie `cookie_name`. An authenticated
    /// session carries its user's generation: `known` (the user and generation it was opened
    /// under) when it is still that user's, else the current one (after a login).
    ///
    /// # Errors
    /// 413 `session_too_large` when it does not fit in a cookie; `session_expired` when the user
    /// was disabled meanwhile; `store_unavailable` when the generation cannot be read.
    pub(crate) async fn seal_record(
        &self,
        known: Option<(i64, u64)>,
        record: &Record,
        token: &SecretToken,
        cookie_name: &str,
    ) -> Result<String, crate::Error> {
        use crate::error::{Error, ErrorCode};
        let generation = match (record.user_id, known) {
            (None, _) => 0,
            (Some(uid), Some((k, g))) if k == uid => g,
            (Some(uid), _) => self.generations.current(uid).await?.ok_or_else(|| {
                Error::new(
                    ErrorCode::SessionExpired,
                    "the account was disabled while this request ran",
                )
            })?,
        };
        let sealed = SealedSession::from_record(record, token.expose(), generation);
        self.ring.seal(&sealed, cookie_name).map_err(|e| match e {
            CookieError::TooLarge { size, limit } => {
                tracing::warn!(
                    size,
                    limit,
                    "session too large for the cookie store: {size} bytes sealed, over the {limit}-byte limit; the write was refused"
                );
                Error::new(ErrorCode::SessionTooLarge, e.to_string()).with_hint(
                    "keep less in the session (ids, not documents), or use a server-side store (session.store = \"cached-sqlite\" or redis://…)",
                )
            }
            other => Error::internal(other),
        })
    }
}

/// A sealed session cookie opened by [`CookieSessions::open`]: the identity token sealed inside
/// (its hash is the record's key), the session (without a `User-Agent`), and the user and
/// generation it was issued under.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) token: SecretToken,
    pub(crate) record: Record,
    pub(crate) generation: Option<(i64, u64)>,
}

/// The [`SessionStore`](crate::session::SessionStore) of the cookie backend: it holds nothing,
/// because the sessions are in the browsers. Writes succeed without effect, reads find nothing,
/// per-user listing sees nothing, and `/readyz` is always ready. It is what administrative code
/// (purge, metrics, `vestibule user disable`) sees. Ending sessions goes through
/// [`SessionStore::revoke`](crate::session::SessionStore::revoke): a user's sessions end by
/// bumping their generation; one session alone cannot be ended (the server cannot forget a
/// cookie it issued), which is refused loudly rather than reported as "ended 0".
#[derive(Debug, Clone)]
pub struct StatelessStore {
    generations: std::sync::Arc<dyn Generations>,
}

impl StatelessStore {
    /// The store of the cookie backend, ending sessions through `generations`.
    pub fn new(generations: std::sync::Arc<dyn Generations>) -> Self {
        Self { generations }
    }
}

#[async_trait::async_trait]
impl crate::session::SessionStore for StatelessStore {
    async fn create(
        &self,
        _record: &crate::session::Record,
    ) -> Result<(), crate::session::StoreError> {
        Ok(())
    }
    async fn load_latest(
        &self,
        key: &crate::token::TokenHash,
    ) -> Result<Option<std::sync::Arc<crate::session::Record>>, crate::session::StoreError> {
        self.load(key).await
    }
    async fn load(
        &self,
        _key: &crate::token::TokenHash,
    ) -> Result<Option<std::sync::Arc<crate::session::Record>>, crate::session::StoreError> {
        Ok(None)
    }
    async fn save(
        &self,
        _key: &crate::token::TokenHash,
        _delta: &crate::session::Delta,
    ) -> Result<std::sync::Arc<crate::session::Record>, crate::session::StoreError> {
        Err(crate::session::StoreError::NotFound)
    }
    async fn delete(
        &self,
        _key: &crate::token::TokenHash,
    ) -> Result<bool, crate::session::StoreError> {
        Ok(false)
    }
    async fn list_user(
        &self,
        _user_id: i64,
    ) -> Result<Vec<crate::session::Record>, crate::session::StoreError> {
        Ok(Vec::new())
    }
    async fn delete_user(
        &self,
        _user_id: i64,
        _keep: Option<&crate::token::TokenHash>,
    ) -> Result<Vec<crate::token::TokenHash>, crate::session::StoreError> {
        Ok(Vec::new())
    }
    async fn revoke(
        &self,
        what: crate::session::Revoke<'_>,
    ) -> Result<crate::session::Ended, crate::session::StoreError> {
        use crate::session::{Ended, Revoke, StoreError};
        match what {
            Revoke::One(_) => Err(StoreError::Unsupported(
                "the cookie session store cannot end one session by id: the session lives in the browser's cookie and the server keeps nothing to forget",
            )),
            // `keep` needs nothing here: the kept session is the request's own, re-sealed under
            // the new generation when its answer leaves (see `Session::seal`).
            Revoke::User { user_id, .. } => {
                self.generations
                    .bump(user_id)
                    .await
                    .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
                Ok(Ended::Generation)
            }
        }
    }
    async fn delete_expired(&self) -> Result<u64, crate::session::StoreError> {
        Ok(0)
    }
    async fn ping(&self) -> Result<(), crate::session::StoreError> {
        Ok(())
    }
    async fn count(&self) -> Result<u64, crate::session::StoreError> {
        Ok(0)
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
            token: String::new(),
            last_seen: 1000,
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
    fn configured_keys_are_validated_and_ids_do_not_depend_on_position() {
        let a = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let b = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let one = CookieKeyRing::parse(&[a.as_str()]).expect("one key");
        let v = one.seal(&session(None, 0), "sid").expect("seal");
        let rotated = CookieKeyRing::parse(&[b.as_str(), a.as_str()]).expect("two keys");
        assert_eq!(rotated.len(), 2);
        assert!(
            rotated.open_unchecked(&v, "sid").is_ok(),
            "old key still opens"
        );
        let errs = CookieKeyRing::parse(&["not base64!", "AAAA", a.as_str(), a.as_str()])
            .expect_err("bad ring");
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].contains("entry 0") && errs[0].contains("not base64"));
        assert!(errs[1].contains("3 bytes, not 32"));
        assert!(errs[2].contains("duplicate"));
        assert!(errs.iter().all(|e| !e.contains(&a)), "never echoes a key");
        assert!(CookieKeyRing::parse(&[] as &[&str]).is_err());
        // The derived key is stable for a secret and differs between secrets.
        assert_eq!(CookieKey::derive(b"s1").id(), CookieKey::derive(b"s1").id());
        let d = CookieKeyRing::new(vec![CookieKey::derive(b"secret one")]).expect("ring");
        let sealed = d.seal(&session(None, 0), "sid").expect("seal");
        let other = CookieKeyRing::new(vec![CookieKey::derive(b"secret two")]).expect("ring");
        assert!(other.open_unchecked(&sealed, "sid").is_err());
        assert!(format!("{d:?}").len() < 80, "Debug shows ids only");
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
