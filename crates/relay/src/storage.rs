//! Durable storage for the relay: the [`Store`] and [`Contents`] traits and the in-memory store come
//! from the core; the redb store, the one a relay process runs on, is here.

mod redb_store;

pub use redb_store::{CACHE_BYTES, OpenError, RedbContents, RedbStore};
pub use switchboard_relay_core::storage::{Contents, MemoryStore, Store, StoreError};
