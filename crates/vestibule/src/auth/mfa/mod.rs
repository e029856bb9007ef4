//! Second factors: TOTP (RFC 6238) with single-use recovery codes, and passkeys (WebAuthn) as a
//! second factor or for passwordless login. This module owns the data and the checks; the HTTP
//! flow (the pending login state, enrolment) is `server/mfa.rs`.
//!
//! - TOTP: SHA-1, 6 digits, 30 s steps (what every authenticator app does), ±1 step accepted. A
//!   code is accepted once: the last accepted step is stored per user and an atomic
//!   `UPDATE … WHERE last_step < step` refuses a replay, even from two instances at once.
//! - The TOTP secret is sealed at rest (XChaCha20-Poly1305, key derived from `secret_key`, the
//!   user id as associated data). Without `secret_key` the process has no stable key (a random
//!   one would be lost at restart, and with it every enrolment), so the secret is stored as is.
//! - Recovery codes: a set of 10, 80 random bits each, shown once; only their SHA-256 is stored
//!   (a hash of a high-entropy code needs no slow hash), compared in constant time. A set is
//!   issued at TOTP confirmation (replacing any other) and at a passkey registration when the
//!   account has none; `regenerate` replaces it; removing the last second factor deletes it.

mod store;
mod webauthn;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

pub use self::store::{MfaMethods, MfaStore, StoredPasskey};
pub use self::webauthn::{PASSKEYS_NEED_A_SERVER_SIDE_STORE, WebauthnSettings, webauthn_for};
use crate::error::{Error, ErrorCode};

/// What the second-factor handlers share: the tables, the sealing key, the relying party and
/// the issuer name shown in authenticator apps.
#[derive(Debug, Clone)]
pub struct Mfa {
    /// The tables.
    pub store: MfaStore,
    /// Seals TOTP secrets at rest.
    pub secrets: SecretBox,
    /// The WebAuthn relying party (or why passkeys are off).
    pub webauthn: WebauthnSettings,
    /// The issuer in `otpauth://` URIs (the public host).
    pub issuer: String,
}

/// Seconds per TOTP step.
pub const TOTP_STEP: u64 = 30;
/// Digits of a TOTP code.
pub const TOTP_DIGITS: u8 = 6;
/// Recovery codes in a set (TOTP confirmation, first passkey, regeneration).
pub const RECOVERY_CODES: usize = 10;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Seals and opens TOTP secrets at rest with a key derived from `secret_key` (or stores them as
/// is when there is none: see the module docs). Each use has its own associated-data domain
/// ([`with_domain`](Self::with_domain)): a blob sealed for one never opens as another's.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Option<XChaCha20Poly1305>,
    domain: Domain,
}

/// What a [`SecretBox`] seals: the associated data's prefix, and the name in its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Domain {
    /// The associated data's prefix (before the user id); never the same for two uses.
    pub aad: &'static str,
    /// What the errors call the sealed thing ("TOTP secret").
    pub what: &'static str,
}

/// The domain of TOTP secrets ([`SecretBox::new`]'s).
pub const TOTP_DOMAIN: Domain = Domain {
    aad: "vestibule-totp",
    what: "TOTP secret",
};

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("sealed", &self.cipher.is_some())
            .field("domain", &self.domain.aad)
            .finish()
    }
}

impl SecretBox {
    /// A box over `key` (derived from `secret_key`), or one that stores secrets in clear.
    pub fn new(key: Option<[u8; 32]>) -> Self {
        Self {
            cipher: key.map(|k| XChaCha20Poly1305::new(&Key::from(k))),
            domain: TOTP_DOMAIN,
        }
    }

    /// The same key for another use: what it seals opens only in `domain`.
    #[must_use]
    pub fn with_domain(mut self, domain: Domain) -> Self {
        self.domain = domain;
        self
    }

    fn aad(&self, user_id: i64) -> Vec<u8> {
        format!("{}\0{user_id}", self.domain.aad).into_bytes()
    }

    /// The stored form of `secret` for `user_id`.
    pub fn seal(&self, user_id: i64, secret: &[u8]) -> Result<String, Error> {
        let Some(cipher) = &self.cipher else {
            return Ok(format!("plain:{}", STANDARD.encode(secret)));
        };
        let mut nonce = [0u8; NONCE_LEN];
        crate::token::fill_random(&mut nonce);
        let mut buf = secret.to_vec();
        let tag = cipher
            .encrypt_inout_detached(
                &XNonce::from(nonce),
                &self.aad(user_id),
                buf.as_mut_slice().into(),
            )
            .map_err(|_| {
                Error::new(
                    ErrorCode::Internal,
                    format!("cannot seal the {}", self.domain.what),
                )
            })?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        out.extend_from_slice(tag.as_slice());
        Ok(format!("v1:{}", STANDARD.encode(out)))
    }

    /// The secret of a stored form; an error when it was sealed under another key (`secret_key`
    /// changed or was removed) or was tampered with.
    pub fn open(&self, user_id: i64, stored: &str) -> Result<Vec<u8>, Error> {
        let unusable = || {
            let e = Error::new(
                ErrorCode::Internal,
                format!(
                    "the stored {} cannot be opened with the configured secret_key",
                    self.domain.what
                ),
            );
            if self.domain == TOTP_DOMAIN {
                e.with_hint("secret_key changed since enrolment: restore it, or use a recovery code and enrol again")
            } else {
                e.with_hint("secret_key changed since it was sealed: restore it")
            }
        };
        if let Some(plain) = stored.strip_prefix("plain:") {
            return STANDARD.decode(plain).map_err(|_| unusable());
        }
        let (Some(cipher), Some(sealed)) = (&self.cipher, stored.strip_prefix("v1:")) else {
            return Err(unusable());
        };
        let raw = STANDARD.decode(sealed).map_err(|_| unusable())?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(unusable());
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| unusable())?;
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| unusable())?;
        let mut buf = ct.to_vec();
        cipher
            .decrypt_inout_detached(
                &XNonce::from(nonce),
                &self.aad(user_id),
                buf.as_mut_slice().into(),
                &Tag::from(tag),
            )
            .map_err(|_| unusable())?;
        Ok(buf)
    }
}

/// A new TOTP secret: 160 random bits (RFC 4226's recommendation).
pub fn new_totp_secret() -> Vec<u8> {
    let mut s = vec![0u8; 20];
    crate::token::fill_random(&mut s);
    s
}

fn totp(secret: &[u8], account: &str, issuer: &str) -> Result<totp_rs::Totp, Error> {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(TOTP_DIGITS)
        .with_skew(1)
        .with_step_duration(TOTP_STEP)
        .with_secret(secret.to_vec())
        .with_account_name(account.replace(':', "_"))
        .with_issuer(Some(issuer.replace(':', "_")))
        .build()
        .map_err(|e| Error::new(ErrorCode::Internal, format!("TOTP setup failed: {e}")))
}

/// What enrolment shows: the base32 secret, the `otpauth://` URI and that URI as an SVG QR code.
pub fn enrolment(
    secret: &[u8],
    account: &str,
    issuer: &str,
) -> Result<(String, String, String), Error> {
    let t = totp(secret, account, issuer)?;
    let uri = t
        .to_url()
        .map_err(|e| Error::new(ErrorCode::Internal, format!("TOTP URI failed: {e}")))?;
    let svg = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|e| Error::new(ErrorCode::Internal, format!("QR code failed: {e}")))?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok((t.secret().to_base32(), uri, svg))
}

/// The time step `code` is valid for at `now` (±1 step), or `None`. Codes are compared in
/// constant time by totp-rs.
pub fn matching_step(secret: &[u8], code: &str, now: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != usize::from(TOTP_DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret, "u", "i").ok()?;
    t.check(code, now)
}

/// The code of `secret` at `now` (tests and tools).
pub fn code_at(secret: &[u8], now: u64) -> Option<String> {
    Some(totp(secret, "u", "i").ok()?.generate(now).to_string())
}

/// New recovery codes, as shown to the user (`xxxx-xxxx-xxxx-xxxx`, lowercase base32, 80 bits).
pub fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut raw = [0u8; 16];
            crate::token::fill_random(&mut raw);
            let chars: Vec<char> = raw
                .iter()
                .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
                .collect();
            chars
                .chunks(4)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// The stored form of a recovery code: SHA-256 of its normalised text (case, spaces and dashes
/// do not matter when typing it back).
pub fn recovery_hash(code: &str) -> [u8; 32] {
    let norm: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let mut h = Sha256::new();
    h.update(b"vestibule-recovery\0");
    h.update(norm.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_user() {
        let b = SecretBox::new(Some([7; 32]));
        let s = new_totp_secret();
        let sealed = b.seal(1, &s).expect("seal");
        assert!(sealed.starts_with("v1:"));
        assert_eq!(b.open(1, &sealed).expect("open"), s);
        assert!(b.open(2, &sealed).is_err(), "bound to the user");
        assert!(SecretBox::new(Some([8; 32])).open(1, &sealed).is_err());
        assert!(SecretBox::new(None).open(1, &sealed).is_err());
        let plain = SecretBox::new(None).seal(1, &s).expect("plain");
        assert_eq!(SecretBox::new(None).open(1, &plain).expect("open"), s);
    }

    /// RFC 6238 appendix B, SHA-1 (the last 6 of the 8 digits shown there).
    #[test]
    fn codes_follow_the_rfc_6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (t, expected) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(secret, t).as_deref(), Some(expected), "t = {t}");
        }
    }

    #[test]
    fn codes_match_within_one_step_only() {
        let s = new_totp_secret();
        let now = 1_800_000_000;
        let step = now / TOTP_STEP;
        for (offset, ok) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let t = (now as i64 + offset * TOTP_STEP as i64) as u64;
            let code = code_at(&s, t).expect("code");
            let m = matching_step(&s, &code, now);
            assert_eq!(m.is_some(), ok, "offset {offset}");
            if ok {
                assert_eq!(m, Some((step as i64 + offset) as u64));
            }
        }
        assert_eq!(matching_step(&s, "12345", now), None);
        assert_eq!(matching_step(&s, "abcdef", now), None);
    }

    #[test]
    fn recovery_codes_are_distinct_and_hash_normalised() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let set: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(set.len(), RECOVERY_CODES);
        assert_eq!(codes[0].len(), 19);
        assert_eq!(
            recovery_hash(&codes[0]),
            recovery_hash(&codes[0].to_uppercase().replace('-', " "))
        );
        assert_ne!(recovery_hash(&codes[0]), recovery_hash(&codes[1]));
    }

    #[test]
    fn enrolment_gives_an_otpauth_uri_and_an_svg() {
        let (b32, uri, svg) = enrolment(&new_totp_secret(), "alice", "example.com").expect("ok");
        assert!(uri.starts_with("otpauth://totp/"), "{uri}");
        assert!(uri.contains(&format!("secret={b32}")));
        assert!(svg.contains("<svg"));
    }
}
