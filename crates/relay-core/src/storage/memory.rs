//! State kept in memory, for tests and the simulator: a "crash" keeps exactly what was committed.

use super::{Store, StoreError};
use crate::state::{Mutation, StoredState};

/// Committed state, in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    pub durable: StoredState,
}

impl Store for MemoryStore {
    fn commit(&mut self, mutations: &[Mutation]) -> Result<(), StoreError> {
        for mutation in mutations {
            self.durable.apply(mutation);
        }
        Ok(())
    }
}
