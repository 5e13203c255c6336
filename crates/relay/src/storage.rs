//! Durable storage for the relay: the [`Store`] trait and the in-memory store come from the core;
//! the redb store, the one a relay process runs on, is here.

mod redb_store;

pub use redb_store::{CACHE_BYTES, RedbStore};
pub use switchboard_relay_core::storage::{MemoryStore, Store, StoreError};
