//! Device recognition for login rate limits (OWASP's "device cookie"): after a successful login,
//! the browser gets a signed cookie naming the account. Later login attempts for that account
//! that carry it draw from their own bucket, so an attacker hammering the account from elsewhere
//! slows himself down without locking the owner out.
//!
//! The cookie grants nothing but a separate rate-limit budget: it is not a credential, and a
//! stolen one only buys an attacker the owner's (small) budget.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use http::HeaderMap;

use crate::session::{CookieConfig, UnixTime};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// How long a device stays recognised after its last successful login.
pub const DEVICE_LIFETIME_SECS: i64 = 180 * 86_400;

/// Signs and checks device cookies.
#[derive(Clone)]
pub struct DeviceTrust {
    key: [u8; 32],
    cookie: CookieConfig,
}

impl fmt::Debug for DeviceTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceTrust")
            .field("cookie", &self.cookie.name)
            .finish_non_exhaustive()
    }
}

impl DeviceTrust {
    /// A signer with `key`; the cookie takes the session cookie's attributes (so it reaches
    /// the login endpoint exactly when the session cookie would) under its own name.
    pub fn new(key: [u8; 32], session_cookie: &CookieConfig) -> Self {
        let mut cookie = session_cookie.clone();
        cookie.name = Self::cookie_name_for(session_cookie);
        Self { key, cookie }
    }

    /// The device cookie's name next to the session cookie `session_cookie` (what the gateway
    /// strips before an upstream, with the session cookie).
    pub fn cookie_name_for(session_cookie: &CookieConfig) -> String {
        match session_cookie.name.strip_suffix("_session") {
            Some(base) => format!("{base}_device"),
            None => format!("{}_device", session_cookie.name),
        }
    }

    /// The cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.cookie.name
    }

    fn mac(&self, account: &str, issued: UnixTime) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"vestibule-device-v1\0");
        mac.update(account.to_ascii_lowercase().as_bytes());
        mac.update(b"\0");
        mac.update(issued.to_string().as_bytes());
        mac
    }

    /// The `Set-Cookie` value for a browser that just logged in to `account`.
    pub fn issue(&self, account: &str, now: UnixTime) -> String {
        let tag = self.mac(account, now).finalize().into_bytes();
        let value = format!("{now}.{}", URL_SAFE_NO_PAD.encode(tag));
        self.cookie.build(value, DEVICE_LIFETIME_SECS).to_string()
    }

    /// Whether the request carries a valid, unexpired device cookie for `account`
    /// (compared in constant time).
    pub fn recognises(&self, headers: &HeaderMap, account: &str, now: UnixTime) -> bool {
        crate::cookie_header::values(headers, &self.cookie.name)
            .any(|value| self.verify(value, account, now))
    }

    fn verify(&self, value: &str, account: &str, now: UnixTime) -> bool {
        let Some((issued, tag)) = value.split_once('.') else {
            return false;
        };
        let Ok(issued) = issued.parse::<UnixTime>() else {
            return false;
        };
        if issued > now + 60 || now - issued > DEVICE_LIFETIME_SECS {
            return false;
        }
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
            return false;
        };
        self.mac(account, issued).verify_slice(&tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust(key: u8) -> DeviceTrust {
        DeviceTrust::new([key; 32], &CookieConfig::default())
    }

    fn cookie_header(set_cookie: &str) -> HeaderMap {
        let pair = set_cookie.split(';').next().expect("name=value");
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            format!("other=1; {pair}").parse().expect("header"),
        );
        h
    }

    #[test]
    fn recognises_its_own_cookie_for_that_account_only() {
        let t = trust(7);
        assert_eq!(t.cookie_name(), "vestibule_device");
        let set = t.issue("Alice", 1_000_000);
        assert!(set.contains("HttpOnly"), "{set}");
        let h = cookie_header(&set);
        assert!(
            t.recognises(&h, "alice", 1_000_100),
            "case-insensitive account"
        );
        assert!(!t.recognises(&h, "bob", 1_000_100), "bound to the account");
        assert!(
            !trust(8).recognises(&h, "alice", 1_000_100),
            "bound to the key"
        );
        assert!(
            !t.recognises(&h, "alice", 1_000_000 + DEVICE_LIFETIME_SECS + 1),
            "expires"
        );
    }

    #[test]
    fn forged_and_malformed_cookies_are_not_recognised() {
        let t = trust(7);
        for value in [
            "",
            "x",
            "1.2",
            "1000000.",
            ".abc",
            "1000000.!!!!",
            "99999999999999999999.AA",
        ] {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::COOKIE,
                format!("vestibule_device={value}").parse().expect("header"),
            );
            assert!(!t.recognises(&h, "alice", 1_000_000), "{value:?}");
        }
        // A valid tag moved to another issue time fails.
        let set = t.issue("alice", 1_000_000);
        let tampered = set.replacen("1000000.", "1000001.", 1);
        assert!(!t.recognises(&cookie_header(&tampered), "alice", 1_000_100));
    }
}
