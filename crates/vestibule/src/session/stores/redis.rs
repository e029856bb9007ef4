//! Sessions in Redis (one node or a Redis Cluster), shared by every instance of the server.
//!
//! Layout, under a configurable prefix (`vestibule:` by default):
//! - `{prefix}s:{hex key}`: a hash per session. Meta fields `u` (user id), `c` (created),
//!   `l` (last seen), `e` (idle expiry), `a` (absolute expiry), `g` (user agent), and one field
//!   `d:{name}` per data key holding its JSON value. The key's Redis TTL is the record's expiry,
//!   set in the same script as the write.
//! - `{prefix}u:{user id}`: a sorted set of the user's session keys scored by absolute expiry:
//!   the per-user index for listing and revoke-all (no `KEYS`/`SCAN` on any request path).
//!
//! Every write to a session is one Lua script on one key, so it is atomic and cluster-safe:
//! `create` refuses an existing key, `save` merges only the delta's fields into a live hash and
//! never recreates a deleted or expired one. The index lives in another slot; it is updated
//! before a session is created (so revoke-all never misses a session) and cleaned lazily.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use serde_json::{Map, Value as Json};

use crate::session::record::{Delta, Record, now};
use crate::session::store::{Ended, Revoke, SessionStore, StoreError};
use crate::token::TokenHash;

/// Where and how to reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://host:port/db` URLs: one for a single node, or the seed nodes of a cluster.
    pub urls: Vec<String>,
    /// Whether `urls` name Redis Cluster nodes.
    pub cluster: bool,
    /// Prepended to every key, so several applications (or test runs) can share one Redis.
    pub prefix: String,
    /// Upper bound of any one store operation, connecting included: past it the request gets
    /// 503 `store_unavailable` instead of hanging.
    pub timeout: Duration,
}

impl RedisConfig {
    /// One node at `url`, default prefix, 2 s timeout.
    pub fn single(url: impl Into<String>) -> Self {
        Self {
            urls: vec![url.into()],
            cluster: false,
            prefix: DEFAULT_PREFIX.into(),
            timeout: Duration::from_secs(2),
        }
    }
}

/// The key prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "vestibule:";

/// A connection to one node (reconnecting by itself) or to a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Connects on first use and again after a failed attempt: the server starts (not ready) while
/// Redis is down, and recovers by itself when it returns.
pub(crate) struct Connector {
    single: Option<ConnectionManager>,
    cluster: Option<(ClusterClient, tokio::sync::Mutex<Option<ClusterConnection>>)>,
    timeout: Duration,
}

impl Connector {
    pub(crate) fn new(config: &RedisConfig) -> Result<Self, redis::RedisError> {
        if config.cluster {
            let client = ClusterClient::builder(config.urls.iter().map(String::as_str))
                .connection_timeout(config.timeout)
                .response_timeout(config.timeout)
                .retries(1)
                .build()?;
            Ok(Self {
                single: None,
                cluster: Some((client, tokio::sync::Mutex::new(None))),
                timeout: config.timeout,
            })
        } else {
            let url = config.urls.first().map(String::as_str).unwrap_or_default();
            let client = redis::Client::open(url)?;
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.timeout))
                .set_response_timeout(Some(config.timeout))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(500));
            Ok(Self {
                single: Some(ConnectionManager::new_lazy_with_config(
                    client,
                    manager_config,
                )?),
                cluster: None,
                timeout: config.timeout,
            })
        }
    }

    pub(crate) async fn get(&self) -> Result<Conn, StoreError> {
        if let Some(c) = &self.single {
            return Ok(Conn::Single(c.clone()));
        }
        let Some((client, slot)) = &self.cluster else {
            return Err(StoreError::Corrupt("no redis connection configured".into()));
        };
        let mut slot = slot.lock().await;
        if let Some(c) = &*slot {
            return Ok(Conn::Cluster(c.clone()));
        }
        let c = bounded(self.timeout, client.get_async_connection()).await?;
        *slot = Some(c.clone());
        Ok(Conn::Cluster(c))
    }
}

/// Runs a Redis future under the time bound; every failure is "unavailable".
pub(crate) async fn bounded<T>(
    timeout: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r.map_err(StoreError::unavailable),
        Err(_) => Err(StoreError::unavailable(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("redis did not answer within {timeout:?}"),
        ))),
    }
}

/// Sessions in Redis. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisStore(Arc<Inner>);

struct Inner {
    connector: Connector,
    prefix: String,
    timeout: Duration,
    create: Script,
    save: Script,
    delete: Script,
    index_add: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.0.prefix)
            .field("timeout", &self.0.timeout)
            .finish_non_exhaustive()
    }
}

/// `KEYS[1]` session; `ARGV[1]` expiry (Unix s), then field/value pairs. 0 when the key exists.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIREAT', KEYS[1], ARGV[1])
return 1
";

/// `KEYS[1]` session; `ARGV`: now, last_seen, expires_at, n, n field/value pairs, fields to drop.
/// Nil when the session is missing or expired (nothing is written then); else the merged hash.
const SAVE: &str = r"
local abs = tonumber(redis.call('HGET', KEYS[1], 'a'))
local exp = tonumber(redis.call('HGET', KEYS[1], 'e'))
local now = tonumber(ARGV[1])
if not abs or not exp or exp <= now or abs <= now then return false end
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
  i = i + 1
end
local new_exp = math.min(tonumber(ARGV[3]), abs)
redis.call('HSET', KEYS[1], 'l', ARGV[2], 'e', new_exp)
redis.call('EXPIREAT', KEYS[1], new_exp)
return redis.call('HGETALL', KEYS[1])
";

/// `KEYS[1]` session. Returns {deleted (0/1), user id or false}.
const DELETE: &str = r"
local u = redis.call('HGET', KEYS[1], 'u')
return {redis.call('DEL', KEYS[1]), u}
";

/// `KEYS[1]` user index; `ARGV`: absolute expiry, member, now. Adds the member, drops members
/// past their absolute expiry, and keeps the index alive as long as its longest-lived member.
const INDEX_ADD: &str = r"
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 or tonumber(ARGV[3]) + ttl < tonumber(ARGV[1]) then
  redis.call('EXPIREAT', KEYS[1], ARGV[1])
end
return 1
";

fn corrupt(what: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("redis session hash: {what}"))
}

/// Decodes `HGETALL` output (field, value pairs) into a record.
fn decode(key: TokenHash, pairs: Vec<(String, String)>) -> Result<Option<Record>, StoreError> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut r = Record {
        key,
        user_id: None,
        user: None,
        data: Map::new(),
        created_at: 0,
        last_seen: 0,
        expires_at: 0,
        absolute_expires_at: 0,
        user_agent: None,
    };
    let int = |v: &str| v.parse::<i64>().map_err(corrupt);
    for (field, value) in pairs {
        if let Some(name) = field.strip_prefix("d:") {
            let v: Json = serde_json::from_str(&value).map_err(corrupt)?;
            r.data.insert(name.to_owned(), v);
            continue;
        }
        match field.as_str() {
            "u" => r.user_id = Some(int(&value)?),
            "c" => r.created_at = int(&value)?,
            "l" => r.last_seen = int(&value)?,
            "e" => r.expires_at = int(&value)?,
            "a" => r.absolute_expires_at = int(&value)?,
            "g" => r.user_agent = Some(crate::session::record::shared_user_agent(&value)),
            _ => {}
        }
    }
    r.take_user_from_data().map_err(corrupt)?;
    Ok((!r.is_expired(now())).then_some(r))
}

fn json_text(v: &Json) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(corrupt)
}

impl RedisStore {
    /// A store on `config`. Connects lazily: nothing fails here when Redis is down.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when a URL is malformed.
    pub fn new(config: &RedisConfig) -> Result<Self, StoreError> {
        Ok(Self(Arc::new(Inner {
            connector: Connector::new(config).map_err(StoreError::unavailable)?,
            prefix: config.prefix.clone(),
            timeout: config.timeout,
            create: Script::new(CREATE),
            save: Script::new(SAVE),
            delete: Script::new(DELETE),
            index_add: Script::new(INDEX_ADD),
        })))
    }

    /// The configured key prefix.
    pub fn prefix(&self) -> &str {
        &self.0.prefix
    }

    /// Runs a one-key script on this store's connection, bounded by its timeout: how the rate
    /// limiter shares the connection (see `ratelimit::RedisBuckets`).
    pub(crate) async fn invoke_script<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut c = self.conn().await?;
        bounded(self.0.timeout, inv.invoke_async(&mut c)).await
    }

    pub(crate) async fn conn(&self) -> Result<Conn, StoreError> {
        self.0.connector.get().await
    }

    fn session_key(&self, key: &TokenHash) -> String {
        format!("{}s:{}", self.0.prefix, key.to_hex())
    }

    fn user_key(&self, user_id: i64) -> String {
        format!("{}u:{user_id}", self.0.prefix)
    }

    fn lock_key(&self, name: &str) -> String {
        format!("{}l:{name}", self.0.prefix)
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut c = self.conn().await?;
        bounded(self.0.timeout, cmd.query_async(&mut c)).await
    }

    async fn load_raw(&self, key: &TokenHash) -> Result<Option<Record>, StoreError> {
        let pairs: Vec<(String, String)> = self
            .run(redis::cmd("HGETALL").arg(self.session_key(key)))
            .await?;
        decode(*key, pairs)
    }

    /// The user's indexed keys (live or not).
    async fn indexed(&self, user_id: i64) -> Result<Vec<String>, StoreError> {
        self.run(
            redis::cmd("ZRANGE")
                .arg(self.user_key(user_id))
                .arg(0)
                .arg(-1),
        )
        .await
    }

    async fn unindex(&self, user_id: i64, members: &[String]) -> Result<(), StoreError> {
        if members.is_empty() {
            return Ok(());
        }
        self.run::<()>(redis::cmd("ZREM").arg(self.user_key(user_id)).arg(members))
            .await
    }

    /// Counts keys under the prefix with `SCAN` (tests and metrics only: never on a request path).
    async fn scan_count(&self) -> Result<u64, StoreError> {
        let pattern = format!("{}s:*", self.0.prefix);
        match self.conn().await? {
            Conn::Single(mut c) => {
                let mut cursor: u64 = 0;
                let mut n = 0u64;
                // Bounded: SCAN visits every key once; 100 000 rounds of 1000 is far past any test.
                for _ in 0..100_000 {
                    let (next, keys): (u64, Vec<String>) = bounded(
                        self.0.timeout,
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(1000)
                            .query_async(&mut c),
                    )
                    .await?;
                    n += keys.len() as u64;
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                Ok(n)
            }
            Conn::Cluster(mut c) => {
                // The cluster client sends KEYS to every primary and joins the answers (tests only).
                let keys: Vec<String> = bounded(
                    self.0.timeout,
                    redis::cmd("KEYS").arg(&pattern).query_async(&mut c),
                )
                .await?;
                Ok(keys.len() as u64)
            }
        }
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, r: &Record) -> Result<(), StoreError> {
        let t = now();
        if let Some(uid) = r.user_id {
            // Index first: a session never exists unlisted, so revoke-all cannot miss it.
            let mut c = self.conn().await?;
            bounded(
                self.0.timeout,
                self.0
                    .index_add
                    .key(self.user_key(uid))
                    .arg(r.absolute_expires_at)
                    .arg(r.key.to_hex())
                    .arg(t)
                    .invoke_async::<i64>(&mut c),
            )
            .await?;
        }
        let mut inv = self.0.create.key(self.session_key(&r.key));
        inv.arg(r.expires_at.min(r.absolute_expires_at))
            .arg("c")
            .arg(r.created_at)
            .arg("l")
            .arg(r.last_seen)
            .arg("e")
            .arg(r.expires_at)
            .arg("a")
            .arg(r.absolute_expires_at);
        if let Some(uid) = r.user_id {
            inv.arg("u").arg(uid);
        }
        if let Some(ua) = &r.user_agent {
            inv.arg("g").arg(&**ua);
        }
        for (k, v) in r.stored_data().iter() {
            inv.arg(format!("d:{k}")).arg(json_text(v)?);
        }
        let mut c = self.conn().await?;
        let created: i64 = bounded(self.0.timeout, inv.invoke_async(&mut c)).await?;
        if created == 1 {
            Ok(())
        } else {
            Err(StoreError::Collision)
        }
    }

    async fn load_latest(&self, key: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        // No cache here: every load is the latest.
        self.load(key).await
    }

    async fn load(&self, key: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        Ok(self.load_raw(key).await?.map(Arc::new))
    }

    async fn save(&self, key: &TokenHash, delta: &Delta) -> Result<Arc<Record>, StoreError> {
        let mut inv = self.0.save.key(self.session_key(key));
        inv.arg(now())
            .arg(delta.last_seen)
            .arg(delta.expires_at)
            .arg(delta.set.len());
        for (k, v) in &delta.set {
            inv.arg(format!("d:{k}")).arg(json_text(v)?);
        }
        for k in &delta.remove {
            inv.arg(format!("d:{k}"));
        }
        let mut c = self.conn().await?;
        let merged: Option<Vec<(String, String)>> =
            bounded(self.0.timeout, inv.invoke_async(&mut c)).await?;
        match merged {
            Some(pairs) => decode(*key, pairs)?
                .map(Arc::new)
                .ok_or(StoreError::NotFound),
            None => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, key: &TokenHash) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let (deleted, user): (i64, Option<i64>) = bounded(
            self.0.timeout,
            self.0
                .delete
                .key(self.session_key(key))
                .invoke_async(&mut c),
        )
        .await?;
        if let Some(uid) = user {
            self.unindex(uid, &[key.to_hex()]).await?;
        }
        Ok(deleted == 1)
    }

    async fn list_user(&self, user_id: i64) -> Result<Vec<Record>, StoreError> {
        let members = self.indexed(user_id).await?;
        let mut out = Vec::with_capacity(members.len());
        let mut dead = Vec::new();
        for m in members {
            let Some(key) = TokenHash::from_hex(&m) else {
                dead.push(m);
                continue;
            };
            match self.load_raw(&key).await? {
                Some(r) if r.user_id == Some(user_id) => out.push(r),
                _ => dead.push(m),
            }
        }
        self.unindex(user_id, &dead).await?;
        out.sort_by_key(|r| (r.created_at, r.key));
        Ok(out)
    }

    async fn delete_user(
        &self,
        user_id: i64,
        keep: Option<&TokenHash>,
    ) -> Result<Vec<TokenHash>, StoreError> {
        let keep = keep.map(TokenHash::to_hex);
        let members: Vec<String> = self
            .indexed(user_id)
            .await?
            .into_iter()
            .filter(|m| Some(m) != keep.as_ref())
            .collect();
        let mut deleted = Vec::new();
        for m in &members {
            let Some(key) = TokenHash::from_hex(m) else {
                continue;
            };
            let n: i64 = self
                .run(redis::cmd("DEL").arg(self.session_key(&key)))
                .await?;
            if n == 1 {
                deleted.push(key);
            }
        }
        self.unindex(user_id, &members).await?;
        Ok(deleted)
    }

    async fn revoke(&self, what: Revoke<'_>) -> Result<Ended, StoreError> {
        crate::session::store::revoke_by_deleting(self, what).await
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        // Redis drops expired sessions itself (their TTL is their expiry); indexes are trimmed
        // on the next login, listing or revoke-all of their user, and expire with their last member.
        Ok(0)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run::<String>(&redis::cmd("PING")).await.map(|_| ())
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.scan_count().await
    }

    /// `SET key value NX PX ttl` with a random value: taken by one instance at a time.
    async fn try_lock(
        &self,
        name: &str,
        ttl: std::time::Duration,
    ) -> Result<crate::session::SharedLock, StoreError> {
        let value = crate::session::SharedLock::new_holder();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(self.lock_key(name))
                    .arg(&value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms),
            )
            .await?;
        Ok(if set.is_some() {
            crate::session::SharedLock::Held(value)
        } else {
            crate::session::SharedLock::Busy
        })
    }

    /// Deletes the lock only while it still holds this holder's value (one script: no other
    /// holder's lock is released between the compare and the delete).
    async fn unlock(
        &self,
        name: &str,
        lock: &crate::session::SharedLock,
    ) -> Result<(), StoreError> {
        let crate::session::SharedLock::Held(value) = lock else {
            return Ok(());
        };
        self.run::<i64>(
            redis::cmd("EVAL")
                .arg(UNLOCK)
                .arg(1)
                .arg(self.lock_key(name))
                .arg(value),
        )
        .await?;
        Ok(())
    }
}

/// `KEYS[1]` the lock, `ARGV[1]` the holder's value: deleted only if it is still that value.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{SecretToken, TokenKind};

    #[test]
    fn decode_reads_meta_and_data_fields_and_hides_expired() {
        let key = SecretToken::generate(TokenKind::Session).hash();
        let t = now();
        let pairs = vec![
            ("u".to_owned(), "7".to_owned()),
            ("c".to_owned(), t.to_string()),
            ("l".to_owned(), t.to_string()),
            ("e".to_owned(), (t + 10).to_string()),
            ("a".to_owned(), (t + 20).to_string()),
            ("d:x".to_owned(), "[1,2]".to_owned()),
        ];
        let r = decode(key, pairs.clone()).expect("decodes").expect("live");
        assert_eq!(r.user_id, Some(7));
        assert_eq!(r.data["x"], serde_json::json!([1, 2]));
        let mut dead = pairs;
        dead[3].1 = (t - 1).to_string();
        assert_eq!(decode(key, dead).expect("decodes"), None);
        assert!(decode(key, vec![("e".into(), "x".into())]).is_err());
    }
}
