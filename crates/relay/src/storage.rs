//! Durable storage for the relay: the [`Store`] and [`Contents`] traits and the in-memory store come
//! from the core; the stores a relay process runs on are here: redb (embedded, the default) and
//! PostgreSQL.

mod postgres;
mod redb_store;

pub use postgres::{Leadership, PostgresContents, PostgresStore};
pub use redb_store::{CACHE_BYTES, OpenError, RedbContents, RedbStore};
pub use switchboard_relay_core::storage::{Contents, MemoryStore, Store, StoreError};
