//! Durable storage for the relay: batches of mutations committed atomically, and the contents of
//! mailboxes, outboxes and blobs read back from what was committed. The traits and an in-memory store live
//! here; the redb and PostgreSQL stores are in the driver (`switchboard_relay::storage`).

mod memory;

pub use memory::MemoryStore;

use switchboard_wire::switchboard::{Envelope, FederationFrame};

use crate::state::{DeviceKey, Mutation};

/// Why a commit or a read failed. The relay cannot promise durability after one: it stops.
#[derive(Debug, thiserror::Error)]
#[error("storage failed: {what}")]
pub struct StoreError {
    what: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// Something the store found wrong itself: `what` says what (a record that does not decode,
    /// a key of the wrong length).
    pub fn new(what: impl Into<String>) -> StoreError {
        StoreError { what: what.into(), source: None }
    }

    /// The backend underneath failed at `what`, for the reason `source` (kept as the error's
    /// [`source`](std::error::Error::source)).
    pub fn backend(what: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
        StoreError { what: what.into(), source: Some(source.into()) }
    }

    /// The error and each of its causes, on one line (for [`crate::Action::StorageFailed`] and
    /// logs).
    pub fn chain(&self) -> String {
        let mut line = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            line.push_str(": ");
            line.push_str(&error.to_string());
            cause = error.source();
        }
        line
    }
}

/// Where a relay's state lives between restarts.
pub trait Store: Send {
    /// Applies `mutations` atomically and durably: when this returns, they survive a crash.
    fn commit(&mut self, mutations: &[Mutation]) -> Result<(), StoreError>;
}

/// Reads back what a [`Store`] committed: the contents the core does not keep in memory. The core
/// calls it as it hands mail, frames for other apps and blobs over, blocking its task while it
/// reads, so a read must be quick and see every batch committed before the call. A read may be
/// a local database's (redb) or a round trip to a database server on the relay's network
/// (PostgreSQL), which must then be bounded by a timeout: a server that went silent is an error
/// (the relay stops), not a core that waits for ever.
///
/// The core asks only for what it knows is committed, a window at a time: it stops the relay on
/// an error, or when an answer lacks something it asked for.
pub trait Contents: Send {
    /// The envelopes of `device`'s mailbox with the sequence numbers `seqs`, in that order (one
    /// not stored is left out).
    fn mail(&self, device: &DeviceKey, seqs: &[u64]) -> Result<Vec<(u64, Envelope)>, StoreError>;
    /// The frames of the outbox for `app` with the sequence numbers `seqs`, in that order (one
    /// not stored is left out).
    fn outbound(&self, app: &str, seqs: &[u64]) -> Result<Vec<(u64, FederationFrame)>, StoreError>;
    /// The blob `id`, if it is stored.
    fn blob(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::StoreError;

    #[test]
    fn a_backend_failure_keeps_its_cause() {
        let cause = std::io::Error::other("disk on fire");
        let error = StoreError::backend("committing a batch", cause);
        let source = std::error::Error::source(&error).expect("the cause is the source");
        assert_eq!(source.to_string(), "disk on fire");
        assert_eq!(error.chain(), "storage failed: committing a batch: disk on fire");
        assert!(std::error::Error::source(&StoreError::new("a corrupt key")).is_none());
    }
}
