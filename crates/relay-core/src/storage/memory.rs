//! State kept in memory, for tests and the simulator: a "crash" keeps exactly what was committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use switchboard_wire::switchboard::{Envelope, FederationFrame, KeptReport};

use super::{Contents, Store, StoreError};
use crate::state::{DeviceKey, Mutation, StoredState};

/// Committed state, in memory. Clones share it: one clone commits, another reads the contents
/// back for a core, a third restarts a core from [`MemoryStore::state`].
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    committed: Arc<Mutex<Committed>>,
}

#[derive(Debug, Default)]
struct Committed {
    state: StoredState,
    mail: HashMap<DeviceKey, BTreeMap<u64, Envelope>>,
    outboxes: HashMap<String, BTreeMap<u64, FederationFrame>>,
    blobs: HashMap<String, Vec<u8>>,
    reports: BTreeMap<u64, KeptReport>,
}

impl MemoryStore {
    fn committed(&self) -> MutexGuard<'_, Committed> {
        // A panic elsewhere while this was held leaves it consistent: every change is one insert
        // or one remove.
        self.committed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The verified abuse reports committed, by number.
    pub fn reports(&self) -> Vec<(u64, KeptReport)> {
        self.committed().reports.iter().map(|(id, report)| (*id, report.clone())).collect()
    }

    /// `read` of the committed state, without copying it.
    pub fn read_state<T>(&self, read: impl FnOnce(&StoredState) -> T) -> T {
        read(&self.committed().state)
    }

    /// What a core restarted from this store begins with.
    pub fn state(&self) -> StoredState {
        self.committed().state.clone()
    }
}

impl Store for MemoryStore {
    fn commit(&mut self, mutations: &[Mutation]) -> Result<(), StoreError> {
        let mut committed = self.committed();
        for mutation in mutations {
            committed.state.apply(mutation);
            match mutation {
                Mutation::PutEnvelope { device, seq, envelope } => {
                    committed.mail.entry(device.clone()).or_default().insert(*seq, envelope.clone());
                }
                Mutation::DeleteEnvelope { device, seq } => {
                    if let Some(mailbox) = committed.mail.get_mut(device) {
                        mailbox.remove(seq);
                        if mailbox.is_empty() {
                            committed.mail.remove(device);
                        }
                    }
                }
                Mutation::PutOutbound { app, seq, frame } => {
                    committed.outboxes.entry(app.clone()).or_default().insert(*seq, frame.clone());
                }
                Mutation::DeleteOutbound { app, seq } => {
                    if let Some(outbox) = committed.outboxes.get_mut(app) {
                        outbox.remove(seq);
                    }
                }
                Mutation::PutBlob { id, blob, .. } => {
                    committed.blobs.insert(id.clone(), blob.clone());
                }
                Mutation::DeleteBlob { id } => {
                    committed.blobs.remove(id);
                }
                Mutation::PutReport { id, kept } => {
                    committed.reports.insert(*id, kept.clone());
                }
                Mutation::DeleteAccount { device } => {
                    committed.mail.remove(device);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl Contents for MemoryStore {
    fn mail(&self, device: &DeviceKey, seqs: &[u64]) -> Result<Vec<(u64, Envelope)>, StoreError> {
        let committed = self.committed();
        let Some(mailbox) = committed.mail.get(device) else { return Ok(Vec::new()) };
        Ok(seqs.iter().filter_map(|seq| mailbox.get(seq).map(|envelope| (*seq, envelope.clone()))).collect())
    }

    fn outbound(&self, app: &str, seqs: &[u64]) -> Result<Vec<(u64, FederationFrame)>, StoreError> {
        let committed = self.committed();
        let Some(outbox) = committed.outboxes.get(app) else { return Ok(Vec::new()) };
        Ok(seqs.iter().filter_map(|seq| outbox.get(seq).map(|frame| (*seq, frame.clone()))).collect())
    }

    fn blob(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.committed().blobs.get(id).cloned())
    }
}
