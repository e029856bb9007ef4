//! Session store backends, one module each.

mod cached;
mod cookie;
mod memory;
mod redis;
mod redis_feed;
pub(crate) mod section;
mod sql;

pub use cached::{CacheHandle, CachedStore, Invalidation};
pub use cookie::{
    CookieError, CookieKey, CookieKeyRing, CookieSessions, Generations, MAX_COOKIE_VALUE,
    SealedSession, StatelessStore,
};
pub use memory::MemoryStore;
pub use redis::{DEFAULT_PREFIX as REDIS_DEFAULT_PREFIX, RedisConfig, RedisStore};
pub use redis_feed::RedisInvalidation;
pub use section::{DEFAULT_STORE_TIMEOUT, RawStore, StoreKind};
pub use sql::{SqlStore, SqliteStore};
