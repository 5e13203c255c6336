//! Strangers cannot crowd out contacts. A user's contacts are the users it has sent something to
//! (one to one, or as a recipient of its group messages), and itself. One-to-one mail from anyone
//! else goes under a small allowance per mailbox (group mail does not: a relay does not know who
//! is in a group): at most [`STRANGER_ALLOWANCE_PER_SENDER`] envelopes from
//! one stranger and [`STRANGER_ALLOWANCE_PER_MAILBOX`] (and [`STRANGER_ALLOWANCE_BYTES_PER_MAILBOX`])
//! from all of them together, so a flood from
//! one sender — or from many — never fills the mailbox that a contact's mail needs. What is over
//! the allowance is refused for now (`MailboxFull`), and its sender tries again later.
//!
//! Contacts are kept on disk ([`Mutation::AddContact`]); the mail held from strangers is counted
//! in memory and counted again from the mailboxes on restart.

use std::collections::HashMap;

use switchboard_wire::switchboard::ErrorCode;

use super::{
    MAX_CONTACTS_PER_USER, RelayCore, STRANGER_ALLOWANCE_BYTES_PER_MAILBOX, STRANGER_ALLOWANCE_BYTES_PER_SENDER, STRANGER_ALLOWANCE_PER_MAILBOX,
    STRANGER_ALLOWANCE_PER_SENDER,
};
use crate::state::{DeviceKey, Mutation, StoredState};

type Refusal = (ErrorCode, &'static str);

/// The envelopes from strangers one mailbox holds: by sender, and which sender each one is from.
#[derive(Debug, Default)]
pub(super) struct StrangerMail {
    /// Per sender: envelopes and content bytes.
    by_sender: HashMap<String, (usize, usize)>,
    /// Sequence number → sender and content bytes.
    sender_of: HashMap<u64, (String, usize)>,
    bytes: usize,
}

impl StrangerMail {
    /// Whether one more envelope of `bytes` from `sender` fits the allowance.
    fn admits(&self, sender: &str, bytes: usize) -> Result<(), Refusal> {
        if self.sender_of.len() >= STRANGER_ALLOWANCE_PER_MAILBOX || self.bytes + bytes > STRANGER_ALLOWANCE_BYTES_PER_MAILBOX {
            return Err((ErrorCode::MailboxFull, "the recipient holds all the mail from strangers it takes; try again later"));
        }
        let (held, held_bytes) = self.by_sender.get(sender).copied().unwrap_or((0, 0));
        if held >= STRANGER_ALLOWANCE_PER_SENDER || held_bytes + bytes > STRANGER_ALLOWANCE_BYTES_PER_SENDER {
            return Err((ErrorCode::MailboxFull, "the recipient holds all the mail from you it takes before answering; try again later"));
        }
        Ok(())
    }

    fn hold(&mut self, seq: u64, sender: &str, bytes: usize) {
        let held = self.by_sender.entry(sender.to_owned()).or_default();
        held.0 += 1;
        held.1 += bytes;
        self.sender_of.insert(seq, (sender.to_owned(), bytes));
        self.bytes += bytes;
    }

    fn release(&mut self, seq: u64) {
        let Some((sender, bytes)) = self.sender_of.remove(&seq) else { return };
        self.bytes -= bytes;
        if let Some(held) = self.by_sender.get_mut(&sender) {
            held.0 -= 1;
            held.1 -= bytes;
            if held.0 == 0 {
                self.by_sender.remove(&sender);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.sender_of.is_empty()
    }
}

/// Whether `sender` (a user) is a stranger to the user of `device` in `state`.
fn is_stranger(state: &StoredState, device: &DeviceKey, sender: &str) -> bool {
    device.0 != sender && !state.contacts.get(&device.0).is_some_and(|contacts| contacts.contains(sender))
}

/// The mail from strangers in the mailboxes of `state`, counted as a restarted relay finds it.
pub(super) fn count(state: &StoredState) -> HashMap<DeviceKey, StrangerMail> {
    let mut strangers: HashMap<DeviceKey, StrangerMail> = HashMap::new();
    for (device, mailbox) in &state.mailboxes {
        for (seq, entry) in mailbox.iter().filter(|(_, entry)| !entry.group) {
            if is_stranger(state, device, &entry.sender) {
                strangers.entry(device.clone()).or_default().hold(*seq, &entry.sender, entry.bytes);
            }
        }
    }
    strangers
}

impl RelayCore {
    /// Refuses an envelope of `bytes` from `sender` (a user) to `device` that the stranger
    /// allowance has no room for; anything from a contact passes.
    pub(super) fn check_stranger(&self, device: &DeviceKey, sender: &str, bytes: usize) -> Result<(), Refusal> {
        if !is_stranger(&self.state, device, sender) {
            return Ok(());
        }
        self.strangers.get(device).map_or(Ok(()), |held| held.admits(sender, bytes))
    }

    /// Counts the envelope `seq` of `bytes` from `sender`, just stored for `device`, if from a
    /// stranger.
    pub(super) fn hold_from(&mut self, device: &DeviceKey, seq: u64, sender: &str, bytes: usize) {
        if is_stranger(&self.state, device, sender) {
            self.strangers.entry(device.clone()).or_default().hold(seq, sender, bytes);
        }
    }

    /// The envelope `seq` of `device` left its mailbox.
    pub(super) fn release(&mut self, device: &DeviceKey, seq: u64) {
        if let Some(held) = self.strangers.get_mut(device) {
            held.release(seq);
            if held.is_empty() {
                self.strangers.remove(device);
            }
        }
    }

    /// `user` (of this app) sent to `recipients`: they are its contacts from now on, up to
    /// [`MAX_CONTACTS_PER_USER`].
    pub(super) fn note_contacts<'a>(&mut self, user: &str, recipients: impl IntoIterator<Item = &'a str>) {
        for recipient in recipients {
            let known = self.state.contacts.get(user);
            if recipient == user || known.is_some_and(|contacts| contacts.contains(recipient)) {
                continue;
            }
            if known.is_some_and(|contacts| contacts.len() >= MAX_CONTACTS_PER_USER) {
                return;
            }
            self.mutate(Mutation::AddContact { user: user.to_owned(), contact: recipient.to_owned() });
        }
    }
}
