//! `session.store` and the keys that go with it (`store_timeout`, `redis_prefix`, `redis_cache`,
//! `cookie_keys`): which backend, where Redis is, the cookie store's key ring.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CookieKey, CookieKeyRing, RedisConfig};
use crate::problem::Problems;
use crate::session::section::RawSession;
use crate::settings::{SecretList, SecretString};

/// Bound of one store operation when `session.store_timeout` is not set.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// Which session store backs the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// The SQL database (`database_url`) with an in-memory read cache: durable and fast. The default.
    #[default]
    CachedSqlite,
    /// The SQL database only.
    Sqlite,
    /// Memory only: sessions end with the process.
    Memory,
    /// Redis (one node or a cluster), shared by every instance; see `Config::redis`.
    Redis,
    /// Redis with an in-memory read cache kept coherent across instances by pub/sub invalidation.
    CachedRedis,
    /// No store: each session travels sealed (encrypted and authenticated) in its cookie, under
    /// `Config::cookie_keys`. See the README's "Session stores" section for what it cannot do.
    Cookie,
}

/// `session.store` as written: a store name, a `redis://` URL, or a list of Redis Cluster nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RawStore {
    /// `"cached-sqlite"`, `"sqlite"`, `"memory"`, `"redis://host:port/db"`, or
    /// `"redis://a:7000,redis://b:7001"` (cluster nodes, comma-separated, e.g. in the environment).
    One(String),
    /// Redis Cluster seed nodes.
    Nodes(Vec<String>),
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore::One("cached-sqlite".into())
    }
}

/// `session.store_timeout`: 10 ms to 1 min.
pub(crate) fn store_timeout(p: &mut Problems, v: &str) -> Option<Duration> {
    match humantime::parse_duration(v) {
        Ok(d) if d >= Duration::from_millis(10) && d <= Duration::from_secs(60) => Some(d),
        _ => {
            p.add(
                "session.store_timeout",
                format!("{v:?} must be a duration from 10ms to 1m, like \"2s\" or \"500ms\""),
            );
            None
        }
    }
}

/// `session.store` → the kind, and where Redis is when it is Redis.
pub(crate) fn store(
    p: &mut Problems,
    raw: &RawSession,
    timeout: Option<Duration>,
) -> (StoreKind, Option<RedisConfig>) {
    let key = "session.store";
    let (urls, cluster) = match &raw.store {
        RawStore::One(name) if !name.contains("://") => {
            let kind = match name.as_str() {
                "cached-sqlite" | "cached-database" => StoreKind::CachedSqlite,
                "sqlite" | "database" => StoreKind::Sqlite,
                "memory" => StoreKind::Memory,
                "cookie" => StoreKind::Cookie,
                other => {
                    p.add(
                        key,
                        format!(
                            "{other:?} is not a store: use cached-sqlite, sqlite, memory, cookie, a redis:// URL or a list of Redis Cluster nodes"
                        ),
                    );
                    StoreKind::CachedSqlite
                }
            };
            return (kind, None);
        }
        RawStore::One(urls) if urls.contains(',') => (
            urls.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>(),
            true,
        ),
        RawStore::One(url) => (vec![url.clone()], false),
        RawStore::Nodes(urls) => (urls.clone(), true),
    };
    if urls.is_empty() {
        p.add(key, "the list of Redis Cluster nodes is empty".into());
    }
    for url in &urls {
        if !url.starts_with("redis://") || redis::Client::open(url.as_str()).is_err() {
            p.add(
                key,
                format!("{url:?} is not a Redis URL like redis://127.0.0.1:6379/0"),
            );
        }
    }
    if raw.redis_prefix.is_empty() {
        p.add(
            "session.redis_prefix",
            "must not be empty: it keeps this deployment's keys apart".into(),
        );
    }
    let kind = if raw.redis_cache {
        StoreKind::CachedRedis
    } else {
        StoreKind::Redis
    };
    let config = RedisConfig {
        urls,
        cluster,
        prefix: raw.redis_prefix.clone(),
        timeout: timeout.unwrap_or(DEFAULT_STORE_TIMEOUT),
    };
    (kind, Some(config))
}

/// `session.cookie_keys` → the cookie store's key ring. Without keys, one is derived from
/// `secret_key`; without either, the cookie store refuses to start (a random per-process key
/// would log everyone out at every restart and differ between instances).
pub(crate) fn cookie_keys(
    p: &mut Problems,
    store: StoreKind,
    keys: &SecretList,
    secret_key: Option<&SecretString>,
    warnings: &mut Vec<String>,
) -> Option<CookieKeyRing> {
    let key = "session.cookie_keys";
    if store != StoreKind::Cookie {
        if !keys.is_empty() {
            warnings.push(format!(
                "{key} is set but session.store is not \"cookie\": the keys are not used"
            ));
        }
        return None;
    }
    if !keys.is_empty() {
        return match CookieKeyRing::parse(&keys.0) {
            Ok(ring) => Some(ring),
            Err(problems) => {
                for m in problems {
                    p.add(key, m);
                }
                None
            }
        };
    }
    match secret_key {
        // Too short is reported under `secret_key`.
        Some(SecretString(k)) if k.chars().count() >= 32 => {
            CookieKeyRing::new(vec![CookieKey::derive(k.as_bytes())]).ok()
        }
        Some(_) => None,
        None => {
            p.add(
                key,
                "session.store = \"cookie\" needs a key: set session.cookie_keys = [\"<output of openssl rand -base64 32>\"] (or secret_key, from which one is derived); a random per-process key would log everyone out at every restart and differ between instances".into(),
            );
            None
        }
    }
}
