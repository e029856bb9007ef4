//! Token-bucket rate limits on the calls an attacker repeats: login, signup, password change and
//! token creation, per client address and per account.
//!
//! Buckets live in memory by default (GCRA from `governor`: one atomic word per key); idle keys
//! are purged periodically so a flood of made-up usernames does not grow the process. A refusal
//! carries `Retry-After`, so well-behaved clients wait exactly as long as needed.
//!
//! When the session store is Redis, the buckets live there instead ([`RedisBuckets`]), so every
//! instance behind a load balancer draws on one budget: an attacker who spreads guesses over N
//! instances gets no more than from one. Each check is one Lua script on one key (GCRA, atomic,
//! cluster-safe, clocked by the Redis server so instances' clocks need not agree), and the key
//! expires when its bucket is full again.
//!
//! **When Redis is down or slow** (no answer within `session.store_timeout`), a check falls back
//! to this instance's in-memory bucket for the same key: the limit still holds, per instance,
//! and the caller never sees a 5xx because of the limiter (fail-closed would turn a Redis outage
//! into a login outage; fail-open would turn it into an unthrottled brute-force window). The
//! first failure of an outage is logged once as a warning; after a failure Redis is left alone
//! for [`REDIS_RETRY_AFTER`] so a dead Redis costs requests nothing, and the recovery is logged.

use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::{Error, ErrorCode};
use crate::session::stores::RedisStore;

mod section;
pub use section::RawRateLimits;

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

/// One bucket per key; `None` rate = unlimited. In memory, or in Redis (with the memory buckets
/// as the fallback) once [`Limiter::shared`] is given a [`RedisBuckets`].
pub struct Limiter<K: Hash + Eq + Clone> {
    rate: Option<Rate>,
    inner: Option<DefaultKeyedRateLimiter<K>>,
    remote: Option<(Arc<RedisBuckets>, &'static str)>,
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
            remote: None,
        }
    }

    /// The same limit with its buckets in Redis under `{prefix}rl:{name}:`, shared by every
    /// instance using that Redis and prefix.
    #[must_use]
    pub fn shared(mut self, redis: Arc<RedisBuckets>, name: &'static str) -> Self {
        self.remote = Some((redis, name));
        self
    }

    /// Takes one token from `key`'s bucket: the shared one in Redis when there is one and it
    /// answers in time, otherwise this instance's (see the module notes on outages).
    ///
    /// # Errors
    /// [`RateLimited`] with the wait.
    pub async fn take(&self, key: &K) -> Result<(), RateLimited>
    where
        K: fmt::Display,
    {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        if let Some((redis, name)) = &self.remote
            && let Some(verdict) = redis.take(name, &key.to_string(), rate).await
        {
            return verdict;
        }
        self.check(key)
    }

    /// Takes one token from `key`'s bucket in this instance's memory, or says how long until one
    /// is there (never consults Redis: see [`Limiter::take`]).
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

/// After a failed Redis check, how long checks use the in-memory buckets before trying again.
pub const REDIS_RETRY_AFTER: Duration = Duration::from_secs(1);

/// GCRA on one key. `KEYS[1]` the bucket; `ARGV[1]` emission interval (µs), `ARGV[2]` burst.
/// The key holds the theoretical arrival time (µs, Redis server clock) and expires when the
/// bucket is full again. Returns 0 when allowed, else the wait in µs (nothing written then).
/// (`replicate_commands`: Redis before 5 replicates scripts verbatim and refuses writes after
/// `TIME` unless effects replication is on; from 5 it is the default, and the call a no-op.)
const GCRA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then tat = math.max(tonumber(stored) or now, now) end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then return math.max(1, math.ceil(allow_at - now)) end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
  'PX', string.format('%.0f', math.max(1, math.ceil((new_tat - now) / 1000))))
return 0
";

/// Rate-limit buckets in Redis, on the session store's connection and key prefix.
pub struct RedisBuckets {
    store: RedisStore,
    script: redis::Script,
    /// Whether the last attempt failed (so the outage is logged once, and its end too).
    down: AtomicBool,
    /// Until when checks skip Redis after a failure.
    skip_until: Mutex<Option<Instant>>,
}

impl fmt::Debug for RedisBuckets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBuckets")
            .field("prefix", &self.store.prefix())
            .field("down", &self.down.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RedisBuckets {
    /// Buckets on `store`'s connection, under its prefix, bounded by its timeout.
    pub fn new(store: RedisStore) -> Self {
        Self {
            store,
            script: redis::Script::new(GCRA),
            down: AtomicBool::new(false),
            skip_until: Mutex::new(None),
        }
    }

    /// The Redis key of `key`'s bucket in the limit `name`.
    fn bucket_key(&self, name: &str, key: &str) -> String {
        format!("{}rl:{name}:{key}", self.store.prefix())
    }

    /// The shared verdict, or `None` when Redis did not give one in time (the caller then uses
    /// its in-memory bucket).
    async fn take(&self, name: &str, key: &str, rate: Rate) -> Option<Result<(), RateLimited>> {
        if self
            .skip_until
            .lock()
            .ok()
            .and_then(|g| *g)
            .is_some_and(|until| Instant::now() < until)
        {
            return None;
        }
        let interval = (rate.per / rate.burst.get()).as_micros().max(1);
        let mut inv = self.script.key(self.bucket_key(name, key));
        inv.arg(u64::try_from(interval).unwrap_or(u64::MAX))
            .arg(rate.burst.get());
        let result = self.store.invoke_script::<i64>(&inv).await;
        match result {
            Ok(wait_us) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("rate limits are shared through Redis again");
                }
                Some(if wait_us <= 0 {
                    Ok(())
                } else {
                    Err(RateLimited {
                        retry_after: Duration::from_micros(wait_us.unsigned_abs()),
                    })
                })
            }
            Err(e) => {
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %e,
                        "Redis is unavailable for rate limits: limiting per instance until it answers"
                    );
                }
                if let Ok(mut g) = self.skip_until.lock() {
                    *g = Some(Instant::now() + REDIS_RETRY_AFTER);
                }
                None
            }
        }
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

/// The anonymous-session cap of the session layer, counted like every other per-address limit.
impl crate::session::AddressBudget for Limiter<IpAddr> {
    fn take(&self, ip: IpAddr, config_key: &str) -> Result<(), Error> {
        self.check(&ip)
            .map_err(|l| l.into_error("new sessions from this address", config_key))
    }

    fn purge(&self) {
        Limiter::purge(self);
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
    /// Email requests (password recovery, verification resends) per client address.
    pub email_per_ip: Option<Rate>,
    /// Email requests per address or account named (one inbox cannot be flooded).
    pub email_per_address: Option<Rate>,
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
    /// Email requests by client address group.
    pub email_ip: Limiter<IpAddr>,
    /// Email requests by the login or address named (canonical, lowercase).
    pub email_address: Limiter<String>,
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
            email_ip: Limiter::new(config.email_per_ip),
            email_address: Limiter::new(config.email_per_address),
        }
    }

    /// The same limits with their buckets in Redis (see [`RedisBuckets`]). The anonymous-session
    /// cap stays per instance: it guards this process's memory, not a shared budget.
    #[must_use]
    pub fn shared(self, redis: &Arc<RedisBuckets>) -> Self {
        Self {
            login_ip: self.login_ip.shared(redis.clone(), "login_ip"),
            login_user: self.login_user.shared(redis.clone(), "login_user"),
            login_device: self.login_device.shared(redis.clone(), "login_device"),
            signup_ip: self.signup_ip.shared(redis.clone(), "signup_ip"),
            password_user: self.password_user.shared(redis.clone(), "password_user"),
            token_user: self.token_user.shared(redis.clone(), "token_user"),
            mfa_user: self.mfa_user.shared(redis.clone(), "mfa_user"),
            email_ip: self.email_ip.shared(redis.clone(), "email_ip"),
            email_address: self.email_address.shared(redis.clone(), "email_address"),
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
        self.email_ip.purge();
        self.email_address.purge();
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
