//! `[auth]` and `[tokens]` as written in `vestibule.toml`, and their validation: password
//! hashing's budget and waits, the re-authentication window, and access tokens' bounds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::HASH_MEMORY_BYTES;
use crate::problem::Problems;

/// `[auth]`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawAuth {
    /// Whether `POST /auth/signup` is open.
    pub signup: bool,
    /// Minimum password length.
    pub min_password_length: usize,
    /// Concurrent password hashes (each takes 19 MiB); default: the number of CPUs.
    pub hash_parallelism: Option<usize>,
    /// How long a proof of the password lets a session change the password, create access
    /// tokens, end sessions or manage second factors ("10m"); then `POST /auth/reauth`.
    pub reauth_window: String,
    /// Memory all concurrent password hashes may hold ("256MiB"; each holds 19 MiB): caps
    /// `hash_parallelism` so a login storm cannot push the process past it.
    pub hash_memory_budget: String,
    /// How long a login waits for a hashing slot before 503 `busy` ("2s").
    pub hash_queue_timeout: String,
    /// Whether signup must give an `email` (on when `require_verified_email` is).
    pub require_email: bool,
    /// Whether login waits until the account's address is verified (403 `email_unverified`).
    pub require_verified_email: bool,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            signup: false,
            min_password_length: 8,
            hash_parallelism: None,
            reauth_window: "10m".into(),
            hash_memory_budget: "256MiB".into(),
            hash_queue_timeout: "2s".into(),
            require_email: false,
            require_verified_email: false,
        }
    }
}

/// `[auth]` validated (the keys that need parsing; the others are used as written).
#[derive(Debug, Clone, Copy)]
pub struct AuthSettings {
    /// How recent a proof of the password sensitive actions need.
    pub reauth_window: Duration,
    /// Memory budget of concurrent password hashes, in bytes.
    pub hash_memory_budget: u64,
    /// Longest wait for a hashing slot.
    pub hash_queue_timeout: Duration,
}

impl RawAuth {
    /// Every `[auth]` value; a password minimum below 8 works but is said.
    pub fn validate(&self, p: &mut Problems, warnings: &mut Vec<String>) -> Option<AuthSettings> {
        let reauth_window = p.duration("auth.reauth_window", &self.reauth_window);
        let hash_queue_timeout = match humantime::parse_duration(&self.hash_queue_timeout) {
            Ok(d) if d > Duration::ZERO && d <= Duration::from_secs(60) => Some(d),
            _ => {
                p.add(
                    "auth.hash_queue_timeout",
                    format!(
                        "{:?} must be a duration from 1ms to 60s, like \"2s\" or \"500ms\"",
                        self.hash_queue_timeout
                    ),
                );
                None
            }
        };
        let hash_memory_budget = match parse_bytes(&self.hash_memory_budget) {
            Some(b) if b >= HASH_MEMORY_BYTES => Some(b),
            Some(_) => {
                p.add(
                    "auth.hash_memory_budget",
                    "must hold at least one password hash (19MiB)".into(),
                );
                None
            }
            None => {
                p.add(
                    "auth.hash_memory_budget",
                    format!(
                        "{:?} is not a size like \"256MiB\" or \"1GiB\"",
                        self.hash_memory_budget
                    ),
                );
                None
            }
        };
        if self.min_password_length < 8 {
            warnings.push(format!(
                "auth.min_password_length = {} is below 8, the minimum NIST SP 800-63B and OWASP ASVS accept",
                self.min_password_length
            ));
        }
        Some(AuthSettings {
            reauth_window: reauth_window?,
            hash_memory_budget: hash_memory_budget?,
            hash_queue_timeout: hash_queue_timeout?,
        })
    }
}

/// `[tokens]`: bearer tokens for clients that cannot use the cookie.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawTokens {
    /// Lifetime of a new token when the request names none.
    pub default_expiry_days: u32,
    /// Longest lifetime a token may be given.
    pub max_expiry_days: u32,
    /// Live tokens one user may hold.
    pub per_user_limit: u32,
    /// Whether changing the password revokes the user's tokens.
    pub revoke_on_password_change: bool,
}

impl Default for RawTokens {
    fn default() -> Self {
        Self {
            default_expiry_days: 30,
            max_expiry_days: 365,
            per_user_limit: 50,
            revoke_on_password_change: true,
        }
    }
}

impl RawTokens {
    /// The bounds, each checked; a problem per bound that is zero or inverted.
    pub fn validate(&self, p: &mut Problems) -> Option<TokenSettings> {
        let raw = self;
        let before = p.len();
        if raw.default_expiry_days == 0 {
            p.add("tokens.default_expiry_days", "must be at least 1".into());
        }
        if raw.max_expiry_days == 0 {
            p.add("tokens.max_expiry_days", "must be at least 1".into());
        }
        if raw.default_expiry_days > raw.max_expiry_days {
            p.add(
                "tokens.default_expiry_days",
                "is longer than tokens.max_expiry_days, which caps it".into(),
            );
        }
        if raw.per_user_limit == 0 {
            p.add(
                "tokens.per_user_limit",
                "must be at least 1 (set no [tokens] to keep the default of 50)".into(),
            );
        }
        (p.len() == before).then(|| TokenSettings {
            default_expiry: DAY * raw.default_expiry_days,
            max_expiry: DAY * raw.max_expiry_days,
            per_user_limit: raw.per_user_limit,
            revoke_on_password_change: raw.revoke_on_password_change,
        })
    }
}

/// Validated bearer-token settings: bounds that keep a leaked token from living forever and a
/// user from minting unbounded rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSettings {
    /// Lifetime of a new token when the request names none (30 days).
    pub default_expiry: Duration,
    /// Longest lifetime a token may be given (365 days).
    pub max_expiry: Duration,
    /// Live tokens one user may hold (50).
    pub per_user_limit: u32,
    /// Whether a password change revokes the user's tokens (true), like it ends their sessions.
    pub revoke_on_password_change: bool,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl TokenSettings {
    /// The expiry of a token created now for `requested_days` (or the default lifetime).
    ///
    /// # Errors
    /// A message naming the allowed range when the request is 0 or above the maximum.
    pub fn expiry_for(
        &self,
        requested_days: Option<u32>,
    ) -> Result<crate::session::UnixTime, String> {
        let max_days = self.max_expiry.as_secs() / DAY.as_secs();
        let days = requested_days.map_or(self.default_expiry.as_secs() / DAY.as_secs(), u64::from);
        if days == 0 || days > max_days {
            return Err(format!(
                "expires_in_days must be between 1 and {max_days} (tokens.max_expiry_days)"
            ));
        }
        let secs = i64::try_from(days * DAY.as_secs()).unwrap_or(i64::MAX / 2);
        Ok(crate::session::now() + secs)
    }
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            default_expiry: DAY * 30,
            max_expiry: DAY * 365,
            per_user_limit: 50,
            revoke_on_password_change: true,
        }
    }
}

/// `"256MiB"`, `"1GiB"`, `"512KiB"`, `"300MB"` or a plain number of bytes.
fn parse_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn byte_sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_bytes("256MiB"), Some(256 << 20));
        assert_eq!(parse_bytes("1GiB"), Some(1 << 30));
        assert_eq!(parse_bytes("300MB"), Some(300_000_000));
        assert_eq!(parse_bytes("1048576"), Some(1 << 20));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("99999999999999GiB"), None);
    }
}
