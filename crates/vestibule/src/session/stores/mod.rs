//! Session store backends, one module each.

mod cached;
mod memory;
mod sqlite;

pub use cached::CachedStore;
pub use memory::MemoryStore;
pub use sqlite::SqliteStore;
