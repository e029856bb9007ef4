//! Token-bucket rate limits on the calls an attacker repeats: login, signup, password change and
//! token creation, per client address and per account.
//!
//! Buckets live in memory (GCRA from `governor`: one atomic word per key); idle keys are purged
//! periodically so a flood of made-up usernames does not grow the process. A refusal carries
//! `Retry-After`, so well-behaved clients wait exactly as long as needed.

use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::{Error, ErrorCode};

/// `N/period`: a burst of N, refilled evenly over the period ("10/min" = 10 at once, then one
/// every 6 s). Periods: `s`, `min`, `h`, `d`, or any duration such as `15m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many calls may come at once.
    pub burst: NonZeroU32,
    /// Over how long `burst` calls refill.
    pub per: Duration,
}

/// A rate that does not read as `N/period`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a rate: write N/period, e.g. \"10/min\", \"5/s\", \"100/h\" or \"20/15m\"")]
pub struct BadRate(String);

impl FromStr for Rate {
    type Err = BadRate;

    fn from_str(s: &str) -> Result<Self, BadRate> {
        let bad = || BadRate(s.to_owned());
        let (n, period) = s.split_once('/').ok_or_else(bad)?;
        let burst = n.trim().parse::<NonZeroU32>().map_err(|_| bad())?;
        let per = match period.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => humantime::parse_duration(other).map_err(|_| bad())?,
        };
        if per.is_zero() {
            return Err(bad());
        }
        Ok(Self { burst, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.burst, humantime::format_duration(self.per))
    }
}

impl Rate {
    fn quota(self) -> Quota {
        let each = self.per / self.burst.get();
        Quota::with_period(each.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(self.burst))
            .allow_burst(self.burst)
    }
}

/// One bucket per key; `None` rate = unlimited.
pub struct Limiter<K: Hash + Eq + Clone> {
    rate: Option<Rate>,
    inner: Option<DefaultKeyedRateLimiter<K>>,
}

impl<K: Hash + Eq + Clone> fmt::Debug for Limiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter").field("rate", &self.rate).finish()
    }
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// A limiter at `rate`, or one that allows everything.
    pub fn new(rate: Option<Rate>) -> Self {
        Self {
            rate,
            inner: rate.map(|r| governor::RateLimiter::keyed(r.quota())),
        }
    }

    /// Takes one token from `key`'s bucket, or says how long until one is there.
    ///
    /// # Errors
    /// [`RateLimited`] with the wait.
    pub fn check(&self, key: &K) -> Result<(), RateLimited> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        inner.check_key(key).map_err(|not_until| RateLimited {
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }

    /// Forgets keys whose bucket is full again (they behave as new keys anyway).
    pub fn purge(&self) {
        if let Some(inner) = &self.inner {
            inner.retain_recent();
            inner.shrink_to_fit();
        }
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.len())
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A refused call and how long to wait.
#[derive(Debug, Clone, Copy)]
pub struct RateLimited {
    /// Until the next token.
    pub retry_after: Duration,
}

impl RateLimited {
    /// The 429 answer, naming what was limited (`"login attempts for this account"`).
    pub fn into_error(self, what: &str, config_key: &str) -> Error {
        // Round up: a client that waits the advertised seconds must then succeed.
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        Error::new(
            ErrorCode::RateLimited,
            format!("too many {what}; retry in {secs} s"),
        )
        .with_hint(format!(
            "wait for Retry-After; the limit is {config_key}. Behind a proxy, list it in \
             limits.trusted_proxies so clients are told apart"
        ))
        .with_retry_after(secs.max(1))
    }
}

/// `[rate_limits]`: each `None` turns that limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Login attempts per client address (IPv6 per /64).
    pub login_per_ip: Option<Rate>,
    /// Login attempts per account, from devices that have not logged in to it before.
    pub login_per_user: Option<Rate>,
    /// Login attempts per account from a device that has (its own, separate budget: an attacker
    /// elsewhere cannot lock the owner out).
    pub login_per_device: Option<Rate>,
    /// Signups per client address.
    pub signup_per_ip: Option<Rate>,
    /// Password changes per account.
    pub password_per_user: Option<Rate>,
    /// Access tokens created per account.
    pub token_create_per_user: Option<Rate>,
    /// Sessions created for anonymous clients per address.
    pub anonymous_sessions_per_ip: Option<Rate>,
    /// Second-factor attempts per account (a 6-digit code must not be guessable).
    pub mfa_per_user: Option<Rate>,
}

/// The live buckets of every limit.
#[derive(Debug)]
pub struct RateLimits {
    /// Login attempts by client address group.
    pub login_ip: Limiter<IpAddr>,
    /// Login attempts by normalised username.
    pub login_user: Limiter<String>,
    /// Login attempts by (normalised username) from a recognised device.
    pub login_device: Limiter<String>,
    /// Signups by client address group.
    pub signup_ip: Limiter<IpAddr>,
    /// Password changes by user id.
    pub password_user: Limiter<i64>,
    /// Token creation by user id.
    pub token_user: Limiter<i64>,
    /// Second-factor attempts by user id.
    pub mfa_user: Limiter<i64>,
}

impl RateLimits {
    /// Buckets for `config`.
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            login_ip: Limiter::new(config.login_per_ip),
            login_user: Limiter::new(config.login_per_user),
            login_device: Limiter::new(config.login_per_device),
            signup_ip: Limiter::new(config.signup_per_ip),
            password_user: Limiter::new(config.password_per_user),
            token_user: Limiter::new(config.token_create_per_user),
            mfa_user: Limiter::new(config.mfa_per_user),
        }
    }

    /// Forgets idle keys in every limit.
    pub fn purge(&self) {
        self.login_ip.purge();
        self.login_user.purge();
        self.login_device.purge();
        self.signup_ip.purge();
        self.password_user.purge();
        self.token_user.purge();
        self.mfa_user.purge();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_refuse_nonsense() {
        let r: Rate = "10/min".parse().expect("valid");
        assert_eq!((r.burst.get(), r.per), (10, Duration::from_secs(60)));
        let r: Rate = "20/15m".parse().expect("valid");
        assert_eq!(r.per, Duration::from_secs(900));
        let r: Rate = " 5 / s ".parse().expect("valid");
        assert_eq!((r.burst.get(), r.per), (5, Duration::from_secs(1)));
        for bad in [
            "",
            "10",
            "0/min",
            "-1/min",
            "ten/min",
            "10/fortnightly",
            "10/0s",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_a_wait() {
        let limiter = Limiter::new(Some("3/h".parse().expect("valid")));
        for _ in 0..3 {
            assert!(limiter.check(&"alice".to_owned()).is_ok());
        }
        let refused = limiter
            .check(&"alice".to_owned())
            .expect_err("fourth refused");
        assert!(refused.retry_after > Duration::from_secs(1000));
        assert!(refused.retry_after <= Duration::from_secs(1200));
        // Keys are independent.
        assert!(limiter.check(&"bob".to_owned()).is_ok());
        let err = refused.into_error("login attempts", "rate_limits.login_per_user");
        assert_eq!(err.code(), ErrorCode::RateLimited);
    }

    #[test]
    fn no_rate_means_no_limit() {
        let limiter: Limiter<i64> = Limiter::new(None);
        for _ in 0..10_000 {
            assert!(limiter.check(&1).is_ok());
        }
        assert!(limiter.is_empty());
    }

    #[test]
    fn purge_forgets_full_buckets_only() {
        let limiter = Limiter::new(Some("2/h".parse().expect("valid")));
        assert!(limiter.check(&1_i64).is_ok());
        assert_eq!(limiter.len(), 1);
        limiter.purge();
        // Still partly drained: remembered.
        assert_eq!(limiter.len(), 1);
    }
}
