//! What a device does with the group control messages it receives: announcements of changes
//! (judged by [`membership::judge`], applied in chain order, kept when early) and members' sender
//! keys (applied, or held while their sender is not yet known as a member).

use indexmap::IndexSet;
use rand_core::CryptoRng;
use switchboard_session::ProtocolAddress;
use switchboard_session::group::{self as sender_keys, SenderKeyDistributionMessage};
use switchboard_wire::Message;
use switchboard_wire::switchboard::GroupControl;

use super::{Device, MembershipChange, PendingSend, Received, Result};
use crate::error::ClientError;
use crate::group::{Group, MAX_GROUP_ID_LEN};
use crate::membership::{self, Transition};

/// Senders (per group) whose keys are kept while their joining is not yet announced.
pub const MAX_HELD_KEYS: usize = 1_024;
/// Keys kept per such sender (its older keys are dropped first).
pub const MAX_HELD_KEYS_PER_SENDER: usize = 5;
/// Announcements kept, over all groups, while the changes they build on have not arrived.
pub const MAX_PENDING_CHANGES: usize = 32;
/// Of those, from any one sender.
pub const MAX_PENDING_CHANGES_PER_SENDER: usize = 4;
/// Their encoded size, all together.
pub const MAX_PENDING_CHANGE_BYTES: usize = 2 * 1024 * 1024;

/// An announcement that came before the changes it builds on.
#[derive(Clone, Debug)]
pub(crate) struct PendingChange {
    pub(crate) from: ProtocolAddress,
    pub(crate) control: GroupControl,
}

/// What applying one transition did.
enum Applied {
    Changed,
    Left,
}

impl Device {
    pub(super) fn on_control<R: CryptoRng + ?Sized>(
        &mut self,
        from: &ProtocolAddress,
        control: &GroupControl,
        rng: &mut R,
    ) -> Result<(Received, Vec<PendingSend>)> {
        let distribution = match control.sender_key_distribution.as_slice() {
            [] => None,
            bytes => Some(SenderKeyDistributionMessage::parse(bytes)?),
        };
        if control.members.is_empty() {
            let distribution = distribution.ok_or(ClientError::InvalidPayload("a group control with neither members nor a key"))?;
            return self.on_key(from, control, distribution);
        }
        let announced = Group::from_control(control)?;
        let id = announced.id().to_owned();
        let before: Option<(u64, IndexSet<ProtocolAddress>)> = self.groups.get(&id).map(|group| (group.epoch(), group.members().clone()));
        let brings_key_as_member = announced.members().contains(from);
        let transition = match membership::judge(self.groups.get(&id), announced, from, &self.address, self.trust_members()) {
            Err(fork @ ClientError::GroupFork { .. }) => {
                self.forks.push(fork.clone());
                return Err(fork);
            }
            other => other?,
        };
        if let Some(distribution) = &distribution {
            // The sender's key first: if it is refused (a retired key), nothing else has changed
            // yet. Only a member's key, and not with the news that this device is out.
            if !brings_key_as_member {
                return Err(ClientError::NotAMember { group: id, sender: from.clone() });
            }
            if !matches!(transition, Transition::Later | Transition::Leave) {
                sender_keys::process_distribution(&mut self.sender_keys, &id, from, distribution)?;
            }
        }
        if let Transition::Later = transition {
            self.keep_for_later(from, control)?;
        } else if let Applied::Left = self.apply(&id, transition, rng)? {
            return Ok((Received::RemovedFromGroup { group: id }, Vec::new()));
        }
        if let Applied::Left = self.catch_up(&id, rng)? {
            return Ok((Received::RemovedFromGroup { group: id }, Vec::new()));
        }
        let group = self.groups.get(&id).ok_or_else(|| ClientError::UnknownGroup(id.clone()))?;
        // What changed since before this announcement (which may have applied kept ones too).
        let change = match &before {
            Some((epoch, _)) if *epoch == group.epoch() => None,
            Some((_, before)) => Some(MembershipChange {
                added: group.members().difference(before).cloned().collect(),
                removed: before.difference(group.members()).cloned().collect(),
            }),
            None => Some(MembershipChange { added: group.members().iter().cloned().collect(), removed: Vec::new() }),
        };
        let epoch = group.epoch();
        self.apply_held_keys(&id);
        Ok((Received::Group { group: id, epoch, change }, Vec::new()))
    }

    /// Whether changes from any member are applied (an injected bug; never in the product).
    fn trust_members(&self) -> bool {
        #[cfg(switchboard_inject_bugs)]
        return self.bugs.accept_changes_from_members;
        #[cfg(not(switchboard_inject_bugs))]
        false
    }

    /// Carries out one judged transition (not `Later`).
    fn apply<R: CryptoRng + ?Sized>(&mut self, id: &str, transition: Transition, rng: &mut R) -> Result<Applied> {
        match transition {
            Transition::Leave => {
                self.groups.remove(id);
                self.key_holders.remove(id);
                self.held_keys.retain(|(group, _), _| group != id);
                self.pending_changes.retain(|pending| pending.control.group_id != id);
                return Ok(Applied::Left);
            }
            Transition::Join { group, .. } => {
                // A fresh key on every (re)join: a key kept from an earlier membership may be held
                // by a member removed since; it goes out with our first message to the group.
                self.fresh_key(id, group.suite(), rng)?;
                self.groups.insert(id.to_owned(), group);
            }
            Transition::Advance { group, rotate, .. } => {
                // After a removal, rotate (the new key goes to the remaining members with our next
                // message); a newcomer gets our current key the same way.
                if rotate {
                    self.rotate_after_removal(id, group.suite(), rng)?;
                }
                self.groups.insert(id.to_owned(), group);
            }
            Transition::Same { .. } | Transition::Later => {}
        }
        Ok(Applied::Changed)
    }

    /// Applies the kept announcements that now follow this device's state, one epoch at a time,
    /// each judged as if it had just arrived. One that does not apply is dropped (a fork among
    /// them is recorded); those for epochs already reached are dropped too.
    fn catch_up<R: CryptoRng + ?Sized>(&mut self, id: &str, rng: &mut R) -> Result<Applied> {
        loop {
            let Some(current) = self.groups.get(id) else { return Ok(Applied::Left) };
            let epoch = current.epoch();
            self.pending_changes.retain(|pending| pending.control.group_id != id || pending.control.epoch > epoch);
            let (next, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_changes)
                .into_iter()
                .partition(|pending| pending.control.group_id == id && pending.control.epoch == epoch + 1);
            self.pending_changes = rest;
            if next.is_empty() {
                return Ok(Applied::Changed);
            }
            let mut advanced = false;
            for pending in next {
                let Ok(announced) = Group::from_control(&pending.control) else { continue };
                match membership::judge(self.groups.get(id), announced, &pending.from, &self.address, self.trust_members()) {
                    Ok(transition @ (Transition::Advance { .. } | Transition::Leave)) if !advanced => {
                        advanced = true;
                        if let Applied::Left = self.apply(id, transition, rng)? {
                            return Ok(Applied::Left);
                        }
                    }
                    Err(fork @ ClientError::GroupFork { .. }) => self.forks.push(fork),
                    _ => {}
                }
            }
            if !advanced {
                return Ok(Applied::Changed);
            }
        }
    }

    /// Keeps an announcement until the changes before it arrive, within [`MAX_PENDING_CHANGES`]
    /// (at most [`MAX_PENDING_CHANGES_PER_SENDER`] from one sender) and
    /// [`MAX_PENDING_CHANGE_BYTES`]. A copy of one already kept changes nothing.
    fn keep_for_later(&mut self, from: &ProtocolAddress, control: &GroupControl) -> Result<()> {
        if self.pending_changes.iter().any(|pending| pending.from == *from && pending.control == *control) {
            return Ok(());
        }
        let from_sender = self.pending_changes.iter().filter(|pending| pending.from == *from).count();
        let bytes: usize = self.pending_changes.iter().map(|pending| pending.control.encoded_len()).sum();
        if self.pending_changes.len() >= MAX_PENDING_CHANGES
            || from_sender >= MAX_PENDING_CHANGES_PER_SENDER
            || bytes + control.encoded_len() > MAX_PENDING_CHANGE_BYTES
        {
            return Err(ClientError::InvalidChange("too many changes waiting for the ones before them"));
        }
        let mut kept = control.clone();
        kept.sender_key_distribution.clear();
        self.pending_changes.push(PendingChange { from: from.clone(), control: kept });
        Ok(())
    }

    /// Applies the keys held for senders of group `id` that are members now.
    pub(super) fn apply_held_keys(&mut self, id: &str) {
        let Some(group) = self.groups.get(id) else { return };
        let mut now_members: Vec<_> =
            self.held_keys.keys().filter(|(held, sender)| held == id && group.members().contains(sender)).cloned().collect();
        now_members.sort();
        for key in now_members {
            for held in self.held_keys.remove(&key).unwrap_or_default() {
                // Checked when kept (`SenderKeyDistributionMessage::parse`): nothing here can fail
                // the change, which must be applied whatever a held key holds.
                let _ = sender_keys::process_distribution(&mut self.sender_keys, id, &key.1, &held);
            }
        }
    }

    /// A member's sender key, without the member list: applied if the sender is a member as this
    /// device knows the group; otherwise kept, unused and bounded (see [`Self::hold_key`]), until
    /// an announcement makes the sender a member. A key sent at this device's epoch from another
    /// state of the group is a fork, and refused.
    fn on_key(&mut self, from: &ProtocolAddress, control: &GroupControl, distribution: SenderKeyDistributionMessage) -> Result<(Received, Vec<PendingSend>)> {
        let id = control.group_id.clone();
        if id.is_empty() {
            return Err(ClientError::InvalidPayload("empty group id"));
        }
        match self.groups.get(&id) {
            Some(group) if group.members().contains(from) => {
                let epoch = group.epoch();
                if control.epoch == epoch && !control.state_hash.is_empty() && control.state_hash != group.hash() {
                    let fork = ClientError::GroupFork { group: id, epoch, from: from.clone() };
                    self.forks.push(fork.clone());
                    return Err(fork);
                }
                sender_keys::process_distribution(&mut self.sender_keys, &id, from, &distribution)?;
                if control.request_sender_key {
                    if let Some(holders) = self.key_holders.get_mut(&id) {
                        holders.remove(from);
                    }
                }
                Ok((Received::Group { group: id, epoch, change: None }, Vec::new()))
            }
            // Not a member as this device knows the group: the news of its joining (or of its
            // coming back after a removal it may not know of) may be on its way. Kept, unused,
            // until a membership that includes it arrives.
            current => {
                let epoch = current.map_or(control.epoch, |group| group.epoch());
                self.hold_key(id.clone(), from, distribution)?;
                Ok((Received::Group { group: id, epoch, change: None }, Vec::new()))
            }
        }
    }

    /// Keeps a key whose sender is not (yet) known as a member; its latest few keys are kept, in
    /// order, since its messages under an older one may still be on their way. Bounded per
    /// sender ([`MAX_HELD_KEYS_PER_SENDER`]) and in all ([`MAX_HELD_KEYS`]), with group ids of at
    /// most [`MAX_GROUP_ID_LEN`] bytes, so no peer can make this grow without limit.
    fn hold_key(&mut self, group: String, from: &ProtocolAddress, distribution: SenderKeyDistributionMessage) -> Result<()> {
        if group.len() > MAX_GROUP_ID_LEN {
            return Err(ClientError::InvalidPayload("group id too long"));
        }
        let key = (group, from.clone());
        if !self.held_keys.contains_key(&key) && self.held_keys.len() >= MAX_HELD_KEYS {
            return Err(ClientError::InvalidChange("too many keys from unannounced members"));
        }
        let held = self.held_keys.entry(key).or_default();
        if held.len() == MAX_HELD_KEYS_PER_SENDER {
            held.remove(0);
        }
        held.push(distribution);
        Ok(())
    }
}
