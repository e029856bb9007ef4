//! Bytes per logged-in session, measured rather than estimated.
//!
//! - `cache N`: this process's resident set (`/proc/self/statm`) before and after N logged-in
//!   sessions go through `CachedStore::create` in front of a durable store that keeps nothing, so
//!   the difference is the read cache alone (its entry, the `Arc<Record>`, the record's data).
//! - `redis N URL`: Redis's `used_memory` (`INFO memory`) before and after N sessions go through
//!   `RedisStore::create` under a fresh key prefix, which is deleted afterwards.
//!
//! Each session is what a cookie login writes: the `_auth_user` entry (id, username, auth_time,
//! transport), the User-Agent the session list shows, and the record's times.
//! Prints one line: `<store> <N> <bytes per session>`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use serde_json::Map;
use vestibule::session::stores::{CachedStore, RedisConfig, RedisStore};
use vestibule::session::{
    Delta, Ended, Record, Revoke, SessionStore, SessionUser, StoreError, Transport, now,
};
use vestibule::token::{SecretToken, TokenHash, TokenKind};

// The vestibule binary's allocator: the bytes per session are the server's, allocator included.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A durable store that keeps nothing, so only the cache in front of it holds memory.
#[derive(Debug, Clone)]
struct Nothing;

#[async_trait]
impl SessionStore for Nothing {
    async fn create(&self, _: &Record) -> Result<(), StoreError> {
        Ok(())
    }
    async fn load(&self, _: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        Ok(None)
    }
    async fn load_latest(&self, _: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        Ok(None)
    }
    async fn save(&self, _: &TokenHash, _: &Delta) -> Result<Arc<Record>, StoreError> {
        Err(StoreError::NotFound)
    }
    async fn delete(&self, _: &TokenHash) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn list_user(&self, _: i64) -> Result<Vec<Record>, StoreError> {
        Ok(Vec::new())
    }
    async fn delete_user(
        &self,
        _: i64,
        _: Option<&TokenHash>,
    ) -> Result<Vec<TokenHash>, StoreError> {
        Ok(Vec::new())
    }
    async fn revoke(&self, _: Revoke<'_>) -> Result<Ended, StoreError> {
        Ok(Ended::Deleted(0))
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn count(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

/// The record a cookie login writes for user `i` (`BENCH_EMPTY=1`: the same record with no data
/// and no User-Agent, to tell the cache's own cost per entry from the record's).
fn session(i: u64) -> Record {
    let t = now();
    let empty = std::env::var_os("BENCH_EMPTY").is_some();
    Record {
        key: SecretToken::generate(TokenKind::Session).hash(),
        user_id: Some(i64::try_from(i + 1).unwrap_or(i64::MAX)),
        // What a cookie login holds: the user, typed (no JSON among the data since it moved
        // out of `data`).
        user: (!empty).then(|| SessionUser {
            id: i64::try_from(i + 1).unwrap_or(i64::MAX),
            username: format!("user{i:07}"),
            auth_time: t,
            transport: Transport::Cookie,
        }),
        data: Map::new(),
        created_at: t,
        last_seen: t,
        expires_at: t + 14 * 86_400,
        absolute_expires_at: t + 30 * 86_400,
        // Decoders and the session handle intern the User-Agent (`shared_user_agent`): a
        // million sessions from a few browsers hold a few copies, not a million.
        user_agent: (!empty).then(|| {
            vestibule::session::shared_user_agent(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
            )
        }),
    }
}

fn resident_bytes() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").context("read /proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .context("statm has no resident field")?
        .parse()
        .context("statm resident")?;
    Ok(pages * 4096)
}

async fn cache(n: u64) -> Result<f64> {
    let store = CachedStore::new(Nothing, n);
    let before = resident_bytes()?;
    for i in 0..n {
        store.create(&session(i)).await.context("create")?;
    }
    let after = resident_bytes()?;
    // The cache divides its capacity among shards, so a full one may have let a few go: the
    // figure is per record it holds, and only means something if it holds nearly all of them.
    let held = store.cached_len() as u64;
    if held < n - n / 20 {
        bail!("the cache kept {held} of {n} records");
    }
    Ok(after.saturating_sub(before) as f64 / held as f64)
}

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> Result<u64> {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .context("INFO memory")?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .context("no used_memory in INFO")?
        .trim()
        .parse()
        .context("used_memory")
}

async fn redis_bytes(n: u64, url: &str) -> Result<f64> {
    let client = redis::Client::open(url).context("redis url")?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("connect")?;
    let random = SecretToken::generate(TokenKind::Session).hash().to_hex();
    let prefix = format!("bench-bytes-{}:", random.get(..12).unwrap_or("x"));
    let mut config = RedisConfig::single(url);
    config.prefix = prefix.clone();
    config.timeout = Duration::from_secs(10);
    let store = RedisStore::new(&config).context("store")?;
    let before = used_memory(&mut conn).await?;
    let mut done = 0u64;
    while done < n {
        let batch = (n - done).min(256);
        let mut tasks = Vec::with_capacity(usize::try_from(batch).unwrap_or(256));
        for i in done..done + batch {
            let store = store.clone();
            tasks.push(tokio::spawn(async move { store.create(&session(i)).await }));
        }
        for t in tasks {
            t.await.context("join")?.context("create")?;
        }
        done += batch;
    }
    let after = used_memory(&mut conn).await?;
    // Clean up: every key under the prefix, in bounded SCAN batches.
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .context("SCAN")?;
        if !keys.is_empty() {
            let _: u64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .context("UNLINK")?;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args
        .get(2)
        .context("usage: session-bytes cache|redis N [URL]")?
        .parse()
        .context("N")?;
    let bytes = match args.get(1).map(String::as_str) {
        Some("cache") => cache(n).await?,
        Some("redis") => {
            let url = args.get(3).map_or("redis://127.0.0.1:6379/", String::as_str);
            redis_bytes(n, url).await?
        }
        _ => bail!("usage: session-bytes cache|redis N [URL]"),
    };
    println!("{} {n} {bytes:.0}", args[1]);
    Ok(())
}
