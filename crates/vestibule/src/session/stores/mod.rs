//! Session store backends, one module each.

mod cached;
mod memory;
mod redis;
mod sqlite;

pub use cached::CachedStore;
pub use memory::MemoryStore;
pub use redis::{DEFAULT_PREFIX as REDIS_DEFAULT_PREFIX, RedisConfig, RedisStore};
pub use sqlite::SqliteStore;
