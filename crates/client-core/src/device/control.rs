//! What a device does with the group control messages it receives: announcements of changes
//! (judged by [`membership::judge`], applied in chain order, kept when early) and members' sender
//! keys (applied, or held while their sender is not yet known as a member).

use indexmap::IndexSet;
use rand_core::CryptoRng;
use switchboard_session::ProtocolAddress;
use switchboard_session::group::{self as sender_keys, SenderKeyDistributionMessage};
use switchboard_wire::Message;
use switchboard_wire::switchboard::{GroupControl, GroupHead};

use super::{Device, MembershipChange, PendingSend, Received, Result};
use crate::error::ClientError;
use crate::group::{Group, MAX_GROUP_ID_LEN, OrderKey};
use crate::membership::{self, Transition};

/// Senders (per group) whose keys are kept while their joining is not yet announced.
pub const MAX_HELD_KEYS: usize = 1_024;
/// Keys kept per such sender (its older keys are dropped first).
pub const MAX_HELD_KEYS_PER_SENDER: usize = 5;
/// Announcements kept, over all groups, while the changes they build on have not arrived.
pub const MAX_PENDING_CHANGES: usize = 256;
/// Of those, from one member that is not an admin of the state this device holds (an admin may
/// have one kept for every epoch up to [`crate::MAX_EPOCH_GAP`] ahead).
pub const MAX_PENDING_CHANGES_PER_MEMBER: usize = 2;
/// Their encoded size, all together.
pub const MAX_PENDING_CHANGE_BYTES: usize = 8 * 1024 * 1024;
/// Forks kept until [`Device::take_forks`] (one per group, epoch and sender).
pub const MAX_FORKS_KEPT: usize = 64;

/// Changes kept while their hub is asked whether it ordered them (the latest of each sender per
/// group).
pub const MAX_AWAITING_HUB: usize = 64;
/// Of those, senders for one group.
pub const MAX_AWAITING_HUB_PER_GROUP: usize = 4;
/// Of those, groups for one sender.
pub const MAX_AWAITING_HUB_PER_SENDER: usize = 8;

/// What a hub's answer did to the changes waiting for it ([`Device::hub_head`]).
#[derive(Debug, Default)]
pub struct HubVerdict {
    /// The change it ordered, applied: what it meant, and who announced it.
    pub applied: Option<(Received, ProtocolAddress)>,
    /// Who announced changes it did not order (refused).
    pub refused: Vec<ProtocolAddress>,
}

/// An announcement kept for later (it came before the changes it builds on, or it waits for its
/// hub's word). Its `Debug` shows no control bytes (an order key may be in it).
#[derive(Clone)]
pub(crate) struct PendingChange {
    pub(crate) from: ProtocolAddress,
    pub(crate) control: GroupControl,
}

impl std::fmt::Debug for PendingChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PendingChange {{ from: {}, group: {:?}, epoch: {} }}", self.from, self.control.group_id, self.control.epoch)
    }
}

/// What applying transitions left this device with.
enum Applied {
    Changed,
    /// Removed, by this state (which a kept re-addition may build on).
    Left(Box<Group>),
}

impl Device {
    pub(super) fn on_control<R: CryptoRng + ?Sized>(
        &mut self,
        from: &ProtocolAddress,
        control: &GroupControl,
        rng: &mut R,
    ) -> Result<(Received, Vec<PendingSend>)> {
        if control.members.is_empty() {
            let distribution = match control.sender_key_distribution.as_slice() {
                [] => return Err(ClientError::InvalidPayload("a group control with neither members nor a key")),
                bytes => SenderKeyDistributionMessage::parse(bytes)?,
            };
            return self.on_key(from, control, distribution);
        }
        // Keys travel on their own (they go to whoever lacks one, announcements to every member).
        if !control.sender_key_distribution.is_empty() {
            return Err(ClientError::InvalidPayload("an announcement carries no sender key"));
        }
        let announced = Group::from_control(control)?;
        let id = announced.id().to_owned();
        let before: Option<(u64, IndexSet<ProtocolAddress>)> = self.groups.get(&id).map(|group| (group.epoch(), group.members().clone()));
        let transition = match membership::judge(self.groups.get(&id), announced, from, &self.address, self.trust_members()) {
            Err(fork @ ClientError::GroupFork { .. }) => {
                self.record_fork(fork.clone());
                return Err(fork);
            }
            other => other?,
        };
        let applied = match transition {
            Transition::Later => {
                self.keep_for_later(from, control)?;
                Applied::Changed
            }
            // (The injected bug that takes any member for an admin asks no hub either.)
            Transition::Join { .. } | Transition::Advance { .. } | Transition::Leave { .. } if self.changes_need_hub && !self.trust_members() => {
                self.await_hub(from, control)?;
                return Ok((Received::AwaitingHub { group: id, epoch: control.epoch }, Vec::new()));
            }
            transition => self.apply(&id, transition, control, rng)?,
        };
        Ok((self.settle(&id, before, applied, rng)?, Vec::new()))
    }

    /// After a transition: applies the kept changes that now follow, and the keys held for
    /// members who are members now; says what changed since `before` (this device's epoch and
    /// members then, if it was in the group).
    fn settle<R: CryptoRng + ?Sized>(&mut self, id: &str, before: Option<(u64, IndexSet<ProtocolAddress>)>, applied: Applied, rng: &mut R) -> Result<Received> {
        self.catch_up(id, applied, rng)?;
        let Some(group) = self.groups.get(id) else {
            return Ok(Received::RemovedFromGroup { group: id.to_owned() });
        };
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
        self.apply_held_keys(id);
        Ok(Received::Group { group: id.to_owned(), epoch, change })
    }

    /// Makes every change wait for the group's hub: a change this device is told of (a join, an
    /// advance, its removal) is applied only once the hub says it ordered that very state at
    /// that epoch ([`Self::hub_head`]), so that no admin — nor a removed one with the key it held
    /// — can show this device a change the hub did not order. Networked devices (the endpoint)
    /// always do; a device driven without relays takes the announcing admin's word, checked as
    /// far as it can be (`membership::judge`).
    pub fn check_changes_with_hub(&mut self) {
        self.changes_need_hub = true;
    }

    /// The changes waiting for their hub's word, as (group, epoch): ask the hub of each which
    /// state it ordered at that epoch.
    pub fn awaiting_hub(&self) -> Vec<(String, u64)> {
        let mut waiting: Vec<(String, u64)> = self.awaiting_hub.values().map(|pending| (pending.control.group_id.clone(), pending.control.epoch)).collect();
        waiting.sort_unstable();
        waiting.dedup();
        waiting
    }

    /// Drops every change of group `id` waiting for its hub (the hub knows no such group): the
    /// devices that announced them.
    pub fn refuse_awaiting(&mut self, id: &str) -> Vec<ProtocolAddress> {
        let keys: Vec<_> = self.awaiting_hub.keys().filter(|(group, _)| group == id).cloned().collect();
        let mut from: Vec<ProtocolAddress> = keys.into_iter().filter_map(|key| self.awaiting_hub.remove(&key)).map(|pending| pending.from).collect();
        from.sort();
        from.dedup();
        from
    }

    /// Keeps a change until its hub's word comes: the latest from each sender per group (a later
    /// one supersedes what that sender said before), from at most [`MAX_AWAITING_HUB_PER_GROUP`]
    /// senders per group. Joins (of groups this device is not in) count apart: at most
    /// [`MAX_AWAITING_HUB_PER_SENDER`] groups per sender and [`MAX_AWAITING_HUB`] in all, so that
    /// strangers' forged joins cannot crowd out changes of the groups this device is in.
    fn await_hub(&mut self, from: &ProtocolAddress, control: &GroupControl) -> Result<()> {
        let key = (control.group_id.clone(), from.clone());
        match self.awaiting_hub.get(&key) {
            Some(kept) if kept.control.epoch > control.epoch => return Ok(()),
            Some(_) => {}
            None => {
                let senders = self.awaiting_hub.keys().filter(|(group, _)| *group == key.0).count();
                let joins: Vec<&ProtocolAddress> = self.awaiting_hub.keys().filter(|(group, _)| !self.groups.contains_key(group)).map(|(_, sender)| sender).collect();
                let joining = !self.groups.contains_key(&key.0);
                if senders >= MAX_AWAITING_HUB_PER_GROUP {
                    return Err(ClientError::LimitExceeded { what: "senders of one group's changes waiting for its hub", limit: MAX_AWAITING_HUB_PER_GROUP });
                }
                if joining && joins.iter().filter(|sender| **sender == from).count() >= MAX_AWAITING_HUB_PER_SENDER {
                    return Err(ClientError::LimitExceeded { what: "joins from one sender waiting for their hub", limit: MAX_AWAITING_HUB_PER_SENDER });
                }
                if joining && joins.len() >= MAX_AWAITING_HUB {
                    return Err(ClientError::LimitExceeded { what: "joins waiting for their hub", limit: MAX_AWAITING_HUB });
                }
            }
        }
        self.awaiting_hub.insert(key, PendingChange { from: from.clone(), control: control.clone() });
        Ok(())
    }

    /// The hub's answer to "which state did you order at `asked` in group `head.group_id`":
    /// the state it names at that epoch (or its head, if it keeps that epoch no more). Each
    /// change of that group and epoch waiting for it is then settled:
    /// - the one naming that very state is applied (judged again on this device's state as it
    ///   now is), with every kept change after it; with what it meant comes who announced it;
    /// - one naming another state, or an epoch the hub has not reached, was ordered by no one:
    ///   refused, and its sender is named in [`HubVerdict::refused`];
    /// - one the hub keeps no more is dropped (this device fell behind by more than the hub
    ///   remembers).
    pub fn hub_head<R: CryptoRng + ?Sized>(&mut self, asked: u64, head: &GroupHead, rng: &mut R) -> Result<HubVerdict> {
        let id = head.group_id.clone();
        let keys: Vec<_> = self.awaiting_hub.iter().filter(|((group, _), pending)| *group == id && pending.control.epoch == asked).map(|(key, _)| key.clone()).collect();
        let mut verdict = HubVerdict::default();
        let mut ordered = None;
        for key in keys {
            let Some(pending) = self.awaiting_hub.remove(&key) else { continue };
            let Ok(announced) = Group::from_control(&pending.control) else { continue };
            if head.epoch == asked && *announced.hash() == *head.state_hash {
                // Of two copies of the ordered state, the one handing this device the order key.
                if ordered.as_ref().is_none_or(|kept: &PendingChange| kept.control.order_secret.is_empty()) {
                    ordered = Some(pending);
                }
            } else if head.epoch <= asked {
                verdict.refused.push(pending.from);
            }
        }
        verdict.refused.sort();
        let Some(pending) = ordered else { return Ok(verdict) };
        let before: Option<(u64, IndexSet<ProtocolAddress>)> = self.groups.get(&id).map(|group| (group.epoch(), group.members().clone()));
        let announced = Group::from_control(&pending.control)?;
        // Judged as if it arrived now: this device's state may have moved since.
        let transition = match &before {
            None => match membership::judge(None, announced, &pending.from, &self.address, self.trust_members())? {
                join @ Transition::Join { .. } => join,
                _ => return Ok(verdict),
            },
            Some(_) => match membership::judge(self.groups.get(&id), announced, &pending.from, &self.address, self.trust_members())? {
                change @ (Transition::Advance { .. } | Transition::Leave { .. }) => change,
                Transition::Later => {
                    // Ordered, but this device has not reached the state before it yet.
                    self.keep_for_later(&pending.from, &pending.control)?;
                    return Ok(verdict);
                }
                _ => return Ok(verdict),
            },
        };
        let applied = self.apply(&id, transition, &pending.control, rng)?;
        verdict.applied = Some((self.settle(&id, before, applied, rng)?, pending.from));
        Ok(verdict)
    }

    /// How many changes this device keeps for later (see [`Self::behind`]).
    pub fn kept_changes(&self) -> usize {
        self.pending_changes.len()
    }

    /// The groups this device has fallen behind in: it keeps a change for a later epoch than the
    /// next, none for the next, and waits for no hub's word. With each, the latest epoch kept: the
    /// one to ask the hub about ([`Self::resync`]).
    pub fn behind(&self) -> Vec<(String, u64)> {
        let mut behind: Vec<(String, u64)> = Vec::new();
        for (id, group) in &self.groups {
            // Only an admin's word counts: what other members keep there cannot start a resync.
            let kept = self
                .pending_changes
                .iter()
                .filter(|pending| pending.control.group_id == *id && group.admins().contains(&pending.from))
                .map(|pending| pending.control.epoch);
            let (mut next, mut latest) = (false, None);
            for epoch in kept {
                next |= Some(epoch) == group.epoch().checked_add(1);
                latest = latest.max(Some(epoch));
            }
            let waiting = self.awaiting_hub.keys().any(|(group, _)| group == id);
            if let (false, false, Some(latest)) = (next, waiting, latest) {
                behind.push((id.clone(), latest));
            }
        }
        behind.sort_unstable();
        behind
    }

    /// Catches up on the hub's word: the hub says it ordered `head` at epoch `asked`, and this
    /// device keeps the announcement of that very state (from an admin of the state it holds,
    /// for an epoch ahead of its own, the ones between lost on the way). Kept changes the hub
    /// contradicts are dropped. The state is taken whole — its chain from
    /// this device's state is the hub's — and, since who left in between cannot be told,
    /// this device's sender key is rotated. Returns what changed and who announced it, or `None`
    /// when nothing kept matches.
    pub fn resync<R: CryptoRng + ?Sized>(&mut self, asked: u64, head: &GroupHead, rng: &mut R) -> Result<Option<(Received, ProtocolAddress)>> {
        let id = head.group_id.clone();
        let Some(current) = self.groups.get(&id) else { return Ok(None) };
        if head.epoch != asked || asked <= current.epoch() {
            return Ok(None);
        }
        // Kept changes the hub contradicts (another state at that epoch, or an epoch it has not
        // reached) were ordered by no one: dropped, so that they hold no resync back.
        let admins = current.admins().clone();
        let contradicted = |pending: &PendingChange| {
            pending.control.group_id == id
                && (pending.control.epoch > head.epoch
                    || pending.control.epoch == head.epoch && Group::from_control(&pending.control).is_ok_and(|group| *group.hash() != *head.state_hash))
        };
        self.pending_changes.retain(|pending| !contradicted(pending));
        let matching = self.pending_changes.iter().position(|pending| {
            pending.control.group_id == id
                && pending.control.epoch == asked
                && admins.contains(&pending.from)
                && Group::from_control(&pending.control).is_ok_and(|group| *group.hash() == *head.state_hash)
        });
        let Some(index) = matching else { return Ok(None) };
        let pending = self.pending_changes.remove(index);
        let announced = Group::from_control(&pending.control)?;
        let before = Some((current.epoch(), current.members().clone()));
        let transition = if announced.members().contains(&self.address) {
            let change = MembershipChange {
                added: announced.members().difference(current.members()).cloned().collect(),
                removed: current.members().difference(announced.members()).cloned().collect(),
            };
            Transition::Advance { group: announced, change, rotate: true }
        } else {
            Transition::Leave { group: announced }
        };
        let applied = self.apply(&id, transition, &pending.control, rng)?;
        Ok(Some((self.settle(&id, before, applied, rng)?, pending.from)))
    }

    /// Whether changes from any member are applied (an injected bug; never in the product).
    fn trust_members(&self) -> bool {
        #[cfg(switchboard_inject_bugs)]
        return self.bugs.accept_changes_from_members;
        #[cfg(not(switchboard_inject_bugs))]
        false
    }

    /// Keeps a fork to report (once per group, epoch and sender; at most [`MAX_FORKS_KEPT`]).
    fn record_fork(&mut self, fork: ClientError) {
        if self.forks.len() < MAX_FORKS_KEPT && !self.forks.contains(&fork) {
            self.forks.push(fork);
        }
    }

    /// Carries out one judged transition (not `Later`), announced by `control`.
    fn apply<R: CryptoRng + ?Sized>(&mut self, id: &str, transition: Transition, control: &GroupControl, rng: &mut R) -> Result<Applied> {
        match transition {
            Transition::Leave { group } => {
                self.groups.remove(id);
                self.key_holders.remove(id);
                self.held_keys.retain(|(held, _), _| held != id);
                self.order_keys.remove(id);
                self.proposals.remove(id);
                return Ok(Applied::Left(Box::new(group)));
            }
            Transition::Join { group, .. } => {
                // A fresh key on every (re)join: a key kept from an earlier membership may be held
                // by a member removed since; it goes out with our first message to the group.
                self.fresh_key(id, group.suite(), rng)?;
                self.learn_order_key(&group, control);
                self.groups.insert(id.to_owned(), group);
            }
            Transition::Advance { group, rotate, .. } => {
                // After a removal, rotate (the new key goes to the remaining members with our next
                // message); a newcomer gets our current key the same way.
                if rotate {
                    self.rotate_after_removal(id, group.suite(), rng)?;
                }
                self.learn_order_key(&group, control);
                self.groups.insert(id.to_owned(), group);
            }
            Transition::Same { .. } | Transition::Later => {}
        }
        Ok(Applied::Changed)
    }

    /// Keeps the order key of `group` if this device is one of its admins: the one `control`
    /// hands over, or the one it holds if that is still the group's. Otherwise holds none.
    fn learn_order_key(&mut self, group: &Group, control: &GroupControl) {
        let id = group.id();
        let handed = OrderKey::from_secret(&control.order_secret).ok().filter(|key| key.public() == *group.order_key());
        let held = self.order_keys.remove(id).filter(|key| key.public() == *group.order_key());
        if group.admins().contains(&self.address)
            && let Some(key) = handed.or(held)
        {
            self.order_keys.insert(id.to_owned(), key);
        }
    }

    /// Applies the kept announcements that now follow, one epoch at a time, each judged as if it
    /// had just arrived: on this device's state while it is in the group; after its removal
    /// (`applied` is `Left`), only a re-addition built on the state that removed it, by an admin
    /// of that state. One that does not apply is dropped (a fork among them is recorded); kept
    /// ones for epochs already passed are dropped too. Once this device is out of the group, a
    /// kept announcement that names it may bring it back ([`Self::rejoin_from_kept`]).
    fn catch_up<R: CryptoRng + ?Sized>(&mut self, id: &str, mut applied: Applied, rng: &mut R) -> Result<()> {
        loop {
            let epoch = match (&applied, self.groups.get(id)) {
                (Applied::Left(removal), _) => removal.epoch(),
                (Applied::Changed, Some(current)) => current.epoch(),
                (Applied::Changed, None) => break,
            };
            self.pending_changes.retain(|pending| pending.control.group_id != id || pending.control.epoch > epoch);
            let (next, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_changes)
                .into_iter()
                .partition(|pending| pending.control.group_id == id && Some(pending.control.epoch) == epoch.checked_add(1));
            self.pending_changes = rest;
            let mut advanced = None;
            for pending in next {
                let Ok(announced) = Group::from_control(&pending.control) else { continue };
                if advanced.is_some() {
                    continue;
                }
                let transition = match &applied {
                    Applied::Left(removal) => {
                        let rejoin = announced.prev_hash() == removal.hash()
                            && removal.admins().contains(&pending.from)
                            && announced.signed_by(removal.order_key())
                            && announced.members().contains(&self.address);
                        if !rejoin {
                            continue;
                        }
                        let change = MembershipChange { added: announced.members().iter().cloned().collect(), removed: Vec::new() };
                        Transition::Join { group: announced, change }
                    }
                    Applied::Changed => match membership::judge(self.groups.get(id), announced, &pending.from, &self.address, self.trust_members()) {
                        Ok(transition @ (Transition::Advance { .. } | Transition::Leave { .. })) => transition,
                        Err(fork @ ClientError::GroupFork { .. }) => {
                            self.record_fork(fork);
                            continue;
                        }
                        _ => continue,
                    },
                };
                if self.changes_need_hub {
                    // Like any change, a kept one applies only on its hub's word (kept on if the
                    // room for those is full).
                    if self.await_hub(&pending.from, &pending.control).is_err() {
                        self.pending_changes.push(pending);
                    }
                    continue;
                }
                advanced = Some(self.apply(id, transition, &pending.control, rng)?);
            }
            match advanced {
                Some(now) => applied = now,
                None => break,
            }
        }
        if !self.groups.contains_key(id) {
            return self.rejoin_from_kept(id, rng);
        }
        Ok(())
    }

    /// Out of group `id` with announcements of it still kept: one that names this device (its
    /// re-addition, the news of which came before that of its removal, or before changes in
    /// between that never reached it) is its way back in, judged as any join of a group it is not
    /// in. On its hub's word where changes wait for one: every such announcement goes to the hub
    /// (the latest per sender), so that one forged by a member cannot crowd out the admins' real
    /// one. Without a hub, the latest that judges as a join applies. Kept ones after the earliest
    /// tried stay, to follow it; if none can be tried, the group's are all dropped.
    fn rejoin_from_kept<R: CryptoRng + ?Sized>(&mut self, id: &str, rng: &mut R) -> Result<()> {
        let mut naming_me: Vec<(PendingChange, Group)> = self
            .pending_changes
            .iter()
            .filter(|pending| pending.control.group_id == id)
            .filter_map(|pending| Group::from_control(&pending.control).ok().map(|announced| (pending.clone(), announced)))
            .filter(|(_, announced)| announced.members().contains(&self.address))
            .collect();
        naming_me.sort_by_key(|(pending, _)| std::cmp::Reverse(pending.control.epoch));
        let mut earliest_tried = None;
        for (candidate, announced) in naming_me {
            let Ok(transition @ Transition::Join { .. }) = membership::judge(None, announced, &candidate.from, &self.address, self.trust_members()) else {
                continue;
            };
            let epoch = candidate.control.epoch;
            if self.changes_need_hub {
                if self.await_hub(&candidate.from, &candidate.control).is_ok() {
                    earliest_tried = Some(epoch);
                }
                continue;
            }
            self.pending_changes.retain(|pending| pending.control.group_id != id || pending.control.epoch > epoch);
            let applied = self.apply(id, transition, &candidate.control, rng)?;
            return self.catch_up(id, applied, rng);
        }
        self.pending_changes.retain(|pending| pending.control.group_id != id || earliest_tried.is_some_and(|epoch| pending.control.epoch > epoch));
        Ok(())
    }

    /// Keeps an announcement until the changes before it arrive: at most [`MAX_PENDING_CHANGES`]
    /// and [`MAX_PENDING_CHANGE_BYTES`] in all, as many per admin of the group (as this device
    /// holds it) as epochs can be kept ahead, [`MAX_PENDING_CHANGES_PER_MEMBER`] per other member.
    /// When full, an admin's displaces another member's. A copy of one already kept changes
    /// nothing.
    fn keep_for_later(&mut self, from: &ProtocolAddress, control: &GroupControl) -> Result<()> {
        if self.pending_changes.iter().any(|pending| pending.from == *from && pending.control == *control) {
            return Ok(());
        }
        let by_admin = |device: &Device, pending: &PendingChange| {
            device.groups.get(&pending.control.group_id).is_some_and(|group| group.admins().contains(&pending.from))
        };
        let candidate = PendingChange { from: from.clone(), control: control.clone() };
        let admin = by_admin(self, &candidate);
        let from_sender = self.pending_changes.iter().filter(|pending| pending.from == *from && pending.control.group_id == control.group_id).count();
        let allowed = if admin { membership::MAX_EPOCH_GAP as usize } else { MAX_PENDING_CHANGES_PER_MEMBER };
        if from_sender >= allowed {
            return Err(ClientError::LimitExceeded { what: "changes of one group from one sender waiting for the ones before them", limit: allowed });
        }
        let bytes = |pending: &[PendingChange]| pending.iter().map(|p| p.control.encoded_len()).sum::<usize>();
        while self.pending_changes.len() >= MAX_PENDING_CHANGES || bytes(&self.pending_changes) + control.encoded_len() > MAX_PENDING_CHANGE_BYTES {
            let displaced = self.pending_changes.iter().rposition(|pending| !by_admin(self, pending));
            match displaced {
                Some(index) if admin => drop(self.pending_changes.remove(index)),
                _ if self.pending_changes.len() >= MAX_PENDING_CHANGES => {
                    return Err(ClientError::LimitExceeded { what: "changes waiting for the ones before them", limit: MAX_PENDING_CHANGES });
                }
                _ => return Err(ClientError::LimitExceeded { what: "bytes of changes waiting for the ones before them", limit: MAX_PENDING_CHANGE_BYTES }),
            }
        }
        self.pending_changes.push(candidate);
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
                    // Without signed changes a member's claim cannot be checked: it is reported as
                    // its claim (naming it), once per epoch, so that a lying member can raise one
                    // alarm per change at most and exposes itself doing so.
                    let fork = ClientError::GroupFork { group: id, epoch, from: from.clone() };
                    self.record_fork(fork.clone());
                    return Err(fork);
                }
                sender_keys::process_distribution(&mut self.sender_keys, &id, from, &distribution)?;
                if control.request_sender_key
                    && let Some(holders) = self.key_holders.get_mut(&id)
                {
                    holders.remove(from);
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
            return Err(ClientError::LimitExceeded { what: "senders whose keys are held until they are announced", limit: MAX_HELD_KEYS });
        }
        let held = self.held_keys.entry(key).or_default();
        if held.len() == MAX_HELD_KEYS_PER_SENDER {
            held.remove(0);
        }
        held.push(distribution);
        Ok(())
    }
}
