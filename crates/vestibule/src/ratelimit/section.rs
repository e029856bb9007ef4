//! `[rate_limits]` as written in `vestibule.toml`, and its validation into a [`RateLimitConfig`].

use serde::{Deserialize, Serialize};

use super::{Rate, RateLimitConfig};
use crate::problem::Problems;

/// `[rate_limits]`: `"N/period"` (a burst of N refilled over the period), or `"off"`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawRateLimits {
    /// Login attempts per client address (IPv6: per /64).
    pub login_per_ip: String,
    /// Login attempts per account from unrecognised devices (slows password guessing).
    pub login_per_user: String,
    /// Login attempts per account from devices that logged in to it before (the owner's own
    /// budget: an attack from elsewhere cannot lock them out).
    pub login_per_device: String,
    /// Signups per client address.
    pub signup_per_ip: String,
    /// Password changes per account.
    pub password_per_user: String,
    /// Access tokens created per account.
    pub token_create_per_user: String,
    /// Sessions created for clients that are not logged in (a handler writing to an anonymous
    /// session), per address: a flood of cookie-less writes cannot fill the store.
    pub anonymous_sessions_per_ip: String,
    /// Second-factor code attempts (TOTP, recovery code, passkey) per account.
    pub mfa_per_user: String,
    /// Emails asked for (`POST /auth/password/forgot`, `/auth/email/verify/resend`) per client
    /// address.
    pub email_per_ip: String,
    /// Emails asked for per login or address named: one inbox cannot be flooded from many
    /// addresses. Counted the same whether or not an account exists.
    pub email_per_address: String,
}

impl RawRateLimits {
    /// Every limit off (tests and benchmarks that log in far more often than people do).
    pub fn off() -> Self {
        let off = || "off".to_owned();
        Self {
            login_per_ip: off(),
            login_per_user: off(),
            login_per_device: off(),
            signup_per_ip: off(),
            password_per_user: off(),
            token_create_per_user: off(),
            anonymous_sessions_per_ip: off(),
            mfa_per_user: off(),
            email_per_ip: off(),
            email_per_address: off(),
        }
    }

    /// Each limit parsed; a problem per rate that is neither `N/period` nor `"off"`.
    pub fn validate(&self, p: &mut Problems) -> Option<RateLimitConfig> {
        let raw = self;
        Some(RateLimitConfig {
            login_per_ip: rate(p, "rate_limits.login_per_ip", &raw.login_per_ip)?,
            login_per_user: rate(p, "rate_limits.login_per_user", &raw.login_per_user)?,
            login_per_device: rate(p, "rate_limits.login_per_device", &raw.login_per_device)?,
            signup_per_ip: rate(p, "rate_limits.signup_per_ip", &raw.signup_per_ip)?,
            password_per_user: rate(p, "rate_limits.password_per_user", &raw.password_per_user)?,
            token_create_per_user: rate(
                p,
                "rate_limits.token_create_per_user",
                &raw.token_create_per_user,
            )?,
            anonymous_sessions_per_ip: rate(
                p,
                "rate_limits.anonymous_sessions_per_ip",
                &raw.anonymous_sessions_per_ip,
            )?,
            mfa_per_user: rate(p, "rate_limits.mfa_per_user", &raw.mfa_per_user)?,
            email_per_ip: rate(p, "rate_limits.email_per_ip", &raw.email_per_ip)?,
            email_per_address: rate(p, "rate_limits.email_per_address", &raw.email_per_address)?,
        })
    }
}

fn rate(p: &mut Problems, key: &str, v: &str) -> Option<Option<Rate>> {
    if v.trim().eq_ignore_ascii_case("off") {
        return Some(None);
    }
    match v.parse() {
        Ok(r) => Some(Some(r)),
        Err(e) => {
            p.add(key, format!("{e}, or \"off\""));
            None
        }
    }
}

impl Default for RawRateLimits {
    fn default() -> Self {
        Self {
            login_per_ip: "30/min".into(),
            login_per_user: "10/15m".into(),
            login_per_device: "10/min".into(),
            signup_per_ip: "10/h".into(),
            password_per_user: "5/15m".into(),
            token_create_per_user: "20/h".into(),
            anonymous_sessions_per_ip: "30/min".into(),
            mfa_per_user: "5/5m".into(),
            email_per_ip: "10/h".into(),
            email_per_address: "3/h".into(),
        }
    }
}
