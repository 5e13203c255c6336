//! Durable storage for the relay: batches of mutations committed atomically.

mod memory;
mod redb_store;

pub use memory::MemoryStore;
pub use redb_store::RedbStore;

use crate::state::Mutation;

/// Why a commit failed. The relay cannot promise durability after one: it stops.
#[derive(Debug, thiserror::Error)]
#[error("storage failed: {0}")]
pub struct StoreError(pub String);

/// Where a relay's state lives between restarts.
pub trait Store: Send {
    /// Applies `mutations` atomically and durably: when this returns, they survive a crash.
    fn commit(&mut self, mutations: &[Mutation]) -> Result<(), StoreError>;
}
