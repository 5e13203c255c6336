//! Durable storage for the relay: batches of mutations committed atomically. The trait and an
//! in-memory store live here; the redb store is in the driver (`switchboard_relay::storage`).

mod memory;

pub use memory::MemoryStore;

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
