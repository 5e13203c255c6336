//! Where sender keys are kept: one record per (group, sender).

use std::collections::HashMap;

use crate::address::ProtocolAddress;
use crate::error::Result;
use crate::group::state::SenderKeyRecord;

/// Sender key records, by group id and sender address (our own included).
pub trait SenderKeyStore {
    /// The record of `sender` in `group`, if there is one.
    fn load_sender_key(&self, group: &str, sender: &ProtocolAddress) -> Result<Option<SenderKeyRecord>>;
    /// Keeps `record` as the record of `sender` in `group`, replacing any before it.
    fn store_sender_key(&mut self, group: &str, sender: &ProtocolAddress, record: SenderKeyRecord) -> Result<()>;

    /// Runs `change` on the record of `sender` in `group`; `Ok(false)` when there is none.
    /// `change` must leave the record as it was when it fails. The default loads a copy and
    /// stores it back when `change` succeeds; a store that holds its records in memory changes
    /// them in place instead, with no copy.
    fn update_sender_key(
        &mut self,
        group: &str,
        sender: &ProtocolAddress,
        change: &mut dyn FnMut(&mut SenderKeyRecord) -> Result<()>,
    ) -> Result<bool> {
        let Some(mut record) = self.load_sender_key(group, sender)? else { return Ok(false) };
        change(&mut record)?;
        self.store_sender_key(group, sender, record)?;
        Ok(true)
    }
}

/// Sender key records in memory, by group and then by sender, so that a lookup borrows its key
/// rather than building one.
#[derive(Clone, Debug, Default)]
pub struct InMemorySenderKeyStore {
    records: HashMap<String, HashMap<ProtocolAddress, SenderKeyRecord>>,
}

impl InMemorySenderKeyStore {
    /// Forgets every sender key of `group` (ours included).
    pub fn forget_group(&mut self, group: &str) {
        self.records.remove(group);
    }

    /// Every record with its group and sender, for persisting the store.
    pub fn records(&self) -> impl Iterator<Item = (&str, &ProtocolAddress, &SenderKeyRecord)> {
        self.records
            .iter()
            .flat_map(|(group, senders)| senders.iter().map(move |(sender, record)| (group.as_str(), sender, record)))
    }
}

impl SenderKeyStore for InMemorySenderKeyStore {
    fn load_sender_key(&self, group: &str, sender: &ProtocolAddress) -> Result<Option<SenderKeyRecord>> {
        Ok(self.records.get(group).and_then(|senders| senders.get(sender)).cloned())
    }
    fn store_sender_key(&mut self, group: &str, sender: &ProtocolAddress, record: SenderKeyRecord) -> Result<()> {
        let senders = match self.records.get_mut(group) {
            Some(senders) => senders,
            None => self.records.entry(group.to_owned()).or_default(),
        };
        // A short name is stored inline, so cloning the sender allocates nothing.
        senders.insert(sender.clone(), record);
        Ok(())
    }
    fn update_sender_key(
        &mut self,
        group: &str,
        sender: &ProtocolAddress,
        change: &mut dyn FnMut(&mut SenderKeyRecord) -> Result<()>,
    ) -> Result<bool> {
        match self.records.get_mut(group).and_then(|senders| senders.get_mut(sender)) {
            Some(record) => change(record).map(|()| true),
            None => Ok(false),
        }
    }
}
