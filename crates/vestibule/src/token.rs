//! Opaque secret tokens: generation, parsing and the hash a store keys records by.
//!
//! A token is `<prefix><43 base62 chars><6 base62 chars>`: 256 bits from the OS CSPRNG, then a
//! CRC-32 checksum of the prefix and body. The prefix lets secret scanners and humans recognise a
//! leaked Vestibule token; the checksum refuses a typo or a truncated paste before any store lookup.
//! Stores only ever see [`TokenHash`], a domain-separated SHA-256 of the whole token, so a dump of a
//! store or database holds nothing that can be replayed.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 43 base62 characters carry 43 × log2(62) ≈ 256.03 bits.
const BODY_LEN: usize = 43;
/// CRC-32 needs 6 base62 digits (62^6 > 2^32).
const CHECK_LEN: usize = 6;

/// The kind of a token, which fixes its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenKind {
    /// A session token, sent in the session cookie or as `Authorization: Bearer`.
    Session,
    /// A personal access token for scripts and services, sent as `Authorization: Bearer`.
    AccessToken,
    /// A one-time password reset token from `vestibule user reset-password`.
    PasswordReset,
    /// A one-time email verification token (the link or code sent to an address).
    EmailVerification,
}

impl TokenKind {
    /// The recognisable prefix of this kind of token.
    pub const fn prefix(self) -> &'static str {
        match self {
            TokenKind::Session => "vst_",
            TokenKind::AccessToken => "vpat_",
            TokenKind::PasswordReset => "vrst_",
            TokenKind::EmailVerification => "vevf_",
        }
    }

    fn hash_domain(self) -> &'static [u8] {
        match self {
            TokenKind::Session => b"vestibule/session-token/v1\0",
            TokenKind::AccessToken => b"vestibule/access-token/v1\0",
            TokenKind::PasswordReset => b"vestibule/password-reset/v1\0",
            TokenKind::EmailVerification => b"vestibule/email-verification/v1\0",
        }
    }
}

/// Why a string is not a valid token. Callers treat every variant as "no credential".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The prefix does not match the expected kind.
    #[error("the token does not start with the expected prefix")]
    Prefix,
    /// Wrong length or a character outside base62.
    #[error("the token has the wrong length or characters")]
    Format,
    /// The checksum does not match: a typo or a truncated token.
    #[error("the token checksum does not match")]
    Checksum,
}

/// A secret token as the client holds it. `Debug` is redacted so it cannot reach a log by accident.
#[derive(Clone)]
pub struct SecretToken {
    kind: TokenKind,
    value: String,
}

impl SecretToken {
    /// Draws a new token from the OS CSPRNG.
    ///
    /// # Panics
    /// Only if the operating system cannot provide randomness, which leaves no safe way to go on.
    pub fn generate(kind: TokenKind) -> Self {
        let mut value = String::with_capacity(kind.prefix().len() + BODY_LEN + CHECK_LEN);
        value.push_str(kind.prefix());
        value.push_str(&random_base62(BODY_LEN));
        for &b in &checksum(&value) {
            value.push(char::from(b));
        }
        Self { kind, value }
    }

    /// Parses and checks a token received from a client.
    ///
    /// # Errors
    /// A [`TokenError`] when the prefix, length, alphabet or checksum is wrong.
    pub fn parse(kind: TokenKind, input: &str) -> Result<Self, TokenError> {
        let rest = input
            .strip_prefix(kind.prefix())
            .ok_or(TokenError::Prefix)?;
        if rest.len() != BODY_LEN + CHECK_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(TokenError::Format);
        }
        let (signed, check) = input.split_at(input.len() - CHECK_LEN);
        if !bool::from(checksum(signed).ct_eq(check.as_bytes())) {
            return Err(TokenError::Checksum);
        }
        Ok(Self {
            kind,
            value: input.to_owned(),
        })
    }

    /// The token's text, for a cookie or a response body. Never log it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The store key of this token.
    pub fn hash(&self) -> TokenHash {
        let mut h = Sha256::new();
        h.update(self.kind.hash_domain());
        h.update(self.value.as_bytes());
        TokenHash(h.finalize().into())
    }

    /// A secret derived from the token for another purpose (e.g. CSRF), domain-separated so it can
    /// never equal the store key.
    pub(crate) fn derive(&self, domain: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(domain);
        h.update(self.value.as_bytes());
        h.finalize().into()
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretToken({}…redacted)", self.kind.prefix())
    }
}

/// SHA-256 of a token: what stores key records by, and the public id of a session in listings
/// (it cannot be turned back into the token).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Rebuilds a hash from bytes read back from a store.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        let mut out = [0u8; 64];
        hex_into(&self.0, &mut out).to_owned()
    }

    /// Parses 64 hex characters (either case); `None` for anything else.
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
        }
        Some(Self(out))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", &self.to_hex()[..12])
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Fills `dest` from the OS CSPRNG.
///
/// # Panics
/// If the operating system has no randomness to give: no secret can be made safely then.
/// A 256-bit key from the OS CSPRNG (for keys that need not survive the process).
pub fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    fill_random(&mut k);
    k
}

/// A 256-bit key for `purpose` derived from a configured secret (domain-separated SHA-256: one
/// `secret_key` can serve several purposes without their keys ever being equal).
pub fn derive_key(purpose: &[u8], secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vestibule-key\0");
    h.update(purpose);
    h.update(b"\0");
    h.update(secret);
    h.finalize().into()
}

pub(crate) fn fill_random(dest: &mut [u8]) {
    #[allow(clippy::expect_used)]
    getrandom::fill(dest).expect("the OS CSPRNG must be available");
}

/// Fills `dest` from the thread-local CSPRNG (ChaCha, seeded and periodically reseeded from the
/// OS). For per-request values that are not long-lived secrets themselves (CSRF masks, request
/// ids): as unpredictable as the OS source, without a syscall per request.
pub(crate) fn fill_fast_random(dest: &mut [u8]) {
    use rand::Rng as _;
    rand::rng().fill_bytes(dest);
}

/// Lower-case hex of `bytes` into `out` (which must be twice as long); no allocation.
pub(crate) fn hex_into<'a>(bytes: &[u8], out: &'a mut [u8]) -> &'a str {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    std::str::from_utf8(&out[..2 * bytes.len()]).unwrap_or("")
}

/// `len` uniformly distributed base62 characters (rejection sampling: bytes ≥ 248 are discarded).
fn random_base62(len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        fill_random(&mut buf);
        for &b in &buf {
            if b < 248 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    out
}

/// The checksum's base62 digits, as bytes: checked on every request that carries a token, so it
/// builds no `String`.
fn checksum(signed: &str) -> [u8; CHECK_LEN] {
    let mut n = crc32fast::hash(signed.as_bytes());
    let mut digits = [b'0'; CHECK_LEN];
    for d in digits.iter_mut().rev() {
        *d = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_are_distinct() {
        let a = SecretToken::generate(TokenKind::Session);
        let b = SecretToken::generate(TokenKind::Session);
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with("vst_"));
        assert_eq!(a.expose().len(), 4 + BODY_LEN + CHECK_LEN);
        let parsed = SecretToken::parse(TokenKind::Session, a.expose()).expect("valid");
        assert_eq!(parsed.hash(), a.hash());
    }

    #[test]
    fn a_single_changed_character_fails_the_checksum() {
        let t = SecretToken::generate(TokenKind::Session);
        let mut chars: Vec<char> = t.expose().chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(
            SecretToken::parse(TokenKind::Session, &typo).err(),
            Some(TokenError::Checksum)
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let t = SecretToken::generate(TokenKind::Session);
        let s = t.expose();
        assert_eq!(
            SecretToken::parse(TokenKind::Session, &s[1..]).err(),
            Some(TokenError::Prefix)
        );
        assert_eq!(
            SecretToken::parse(TokenKind::Session, &s[..s.len() - 1]).err(),
            Some(TokenError::Format)
        );
        let bad = format!("{}!{}", &s[..20], &s[21..]);
        assert_eq!(
            SecretToken::parse(TokenKind::Session, &bad).err(),
            Some(TokenError::Format)
        );
        assert!(SecretToken::parse(TokenKind::Session, "").is_err());
        assert!(SecretToken::parse(TokenKind::Session, "vst_é").is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = SecretToken::generate(TokenKind::Session);
        let shown = format!("{t:?}");
        assert!(!shown.contains(&t.expose()[4..]));
    }

    #[test]
    fn hash_hex_round_trips_and_differs_from_the_token() {
        let t = SecretToken::generate(TokenKind::Session);
        let h = t.hash();
        assert_eq!(TokenHash::from_hex(&h.to_hex()), Some(h));
        assert!(!h.to_hex().contains(&t.expose()[4..20]));
        assert_eq!(TokenHash::from_hex("zz"), None);
        assert_ne!(t.derive(b"csrf"), *h.as_bytes());
    }

    #[test]
    fn base62_is_roughly_uniform() {
        let s = random_base62(62 * 200);
        let mut counts = [0u32; 62];
        for b in s.bytes() {
            let i = ALPHABET.iter().position(|&a| a == b).expect("in alphabet");
            counts[i] += 1;
        }
        // Each symbol is expected 200 times; a biased generator (e.g. plain `b % 62`) skews the
        // first eight symbols by ~25%, well outside this band.
        assert!(
            counts.iter().all(|&c| (120..=290).contains(&c)),
            "{counts:?}"
        );
    }
}
