//! Where sender keys are kept: one record per (group, sender).

use std::collections::HashMap;

use crate::address::ProtocolAddress;
use crate::error::Result;
use crate::group::state::SenderKeyRecord;

/// Sender key records, by group id and sender address (our own included).
pub trait SenderKeyStore {
    fn load_sender_key(&self, group: &str, sender: &ProtocolAddress) -> Result<Option<SenderKeyRecord>>;
    fn store_sender_key(&mut self, group: &str, sender: &ProtocolAddress, record: SenderKeyRecord) -> Result<()>;
}

/// Sender key records in memory.
#[derive(Clone, Debug, Default)]
pub struct InMemorySenderKeyStore {
    records: HashMap<(String, ProtocolAddress), SenderKeyRecord>,
}

impl InMemorySenderKeyStore {
    /// Every record with its group and sender, for persisting the store.
    pub fn records(&self) -> impl Iterator<Item = (&str, &ProtocolAddress, &SenderKeyRecord)> {
        self.records.iter().map(|((group, sender), record)| (group.as_str(), sender, record))
    }
}

impl SenderKeyStore for InMemorySenderKeyStore {
    fn load_sender_key(&self, group: &str, sender: &ProtocolAddress) -> Result<Option<SenderKeyRecord>> {
        Ok(self.records.get(&(group.to_owned(), sender.clone())).cloned())
    }
    fn store_sender_key(&mut self, group: &str, sender: &ProtocolAddress, record: SenderKeyRecord) -> Result<()> {
        self.records.insert((group.to_owned(), sender.clone()), record);
        Ok(())
    }
}
