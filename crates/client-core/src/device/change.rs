//! This device's own changes to its groups. A change is made as a signed proposal (the next
//! state, signed with the group's order key), ordered by the group's hub — or applied at once by
//! a device driven without relays — and only then applied and announced, so that two admins'
//! changes for one epoch never both stand.

use indexmap::IndexSet;
use rand_core::CryptoRng;
use switchboard_session::{ProtocolAddress, Suite};
use switchboard_wire::switchboard::{GroupHead, OrderChange};

use super::{Device, Outgoing, PendingSend, Result};
use crate::directory::BundleDirectory;
use crate::error::ClientError;
use crate::group::{Group, OrderKey};

/// What one change does to a group: devices added, removed, made admins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Devices to make members; each must not be one already.
    pub add: Vec<ProtocolAddress>,
    /// Members to remove (an admin removed stops being one); never the proposing device itself.
    pub remove: Vec<ProtocolAddress>,
    /// Members to make admins (after `add` and `remove` are applied); each must not be one
    /// already.
    pub promote: Vec<ProtocolAddress>,
}

/// A change of this device's, signed and waiting for its group's hub to order it.
#[derive(Clone, Debug)]
pub(crate) struct Proposal {
    /// The state it makes, signed.
    pub(crate) group: Group,
    /// The order key of that state (a new one when an admin leaves).
    pub(crate) order_key: OrderKey,
}

impl Device {
    /// Proposes group `id` with `members` and this device as its admin: the order to send to
    /// the group's hub. Nothing is applied until [`Self::ordered`].
    pub fn propose_create<R: CryptoRng + ?Sized>(
        &mut self,
        id: &str,
        members: impl IntoIterator<Item = ProtocolAddress>,
        suite: Suite,
        rng: &mut R,
    ) -> Result<OrderChange> {
        if self.groups.contains_key(id) || self.proposals.contains_key(id) {
            return Err(ClientError::InvalidChange("a group with that id exists"));
        }
        let order_key = OrderKey::generate(rng);
        let group = Group::create(id, suite, members, &self.address, &order_key)?.sign(&order_key);
        Ok(self.keep_proposal(Proposal { group, order_key }))
    }

    /// Proposes `change` to group `id`, which this device is an admin of: the order to send to
    /// the group's hub. Nothing is applied until [`Self::ordered`]. One change per group is
    /// proposed at a time.
    pub fn propose<R: CryptoRng + ?Sized>(&mut self, id: &str, change: &Change, rng: &mut R) -> Result<OrderChange> {
        if self.proposals.contains_key(id) {
            return Err(ClientError::InvalidChange("a change of this group is waiting for its hub"));
        }
        if change.add.is_empty() && change.remove.is_empty() && change.promote.is_empty() {
            return Err(ClientError::InvalidChange("a change that changes nothing"));
        }
        let current = self.group_to_change(id)?;
        let signer = self.order_keys.get(id).ok_or(ClientError::InvalidChange("this device holds no order key for the group"))?;
        let (mut members, mut admins) = (current.members().clone(), current.admins().clone());
        for member in &change.add {
            if !members.insert(member.clone()) {
                return Err(ClientError::InvalidChange("already a member"));
            }
        }
        for member in &change.remove {
            if *member == self.address {
                return Err(ClientError::InvalidChange("a device cannot remove itself this way"));
            }
            if !members.shift_remove(member) {
                return Err(ClientError::InvalidChange("not a member"));
            }
            admins.shift_remove(member);
        }
        for member in &change.promote {
            if !members.contains(member) {
                return Err(ClientError::InvalidChange("not a member"));
            }
            if !admins.insert(member.clone()) {
                return Err(ClientError::InvalidChange("already an admin"));
            }
        }
        // An admin who leaves must order nothing more: the remaining admins get a new key.
        let rekey = (!current.admins().is_subset(&admins)).then(|| OrderKey::generate(rng));
        let group = current.next(members, admins, rekey.as_ref())?.sign(signer);
        let order_key = rekey.unwrap_or_else(|| signer.clone());
        Ok(self.keep_proposal(Proposal { group, order_key }))
    }

    fn keep_proposal(&mut self, proposal: Proposal) -> OrderChange {
        let order = proposal.group.order();
        self.proposals.insert(proposal.group.id().to_owned(), proposal);
        order
    }

    /// The orders of every change waiting for its hub (to send again after a reconnection: a hub
    /// answers an order it already took as ordered).
    pub fn proposals(&self) -> impl Iterator<Item = OrderChange> + '_ {
        self.proposals.values().map(|proposal| proposal.group.order())
    }

    /// The hub's answer to this device's order for `head.group_id`. When it names the proposed
    /// state, the change is applied and the announcements to send come back; otherwise another
    /// change was ordered first, the proposal is dropped, and the answer is
    /// [`ClientError::NotOrdered`] (the change can be proposed again once this device holds the
    /// state that came first).
    pub fn ordered<R: CryptoRng + ?Sized>(&mut self, head: &GroupHead, rng: &mut R) -> Result<Vec<PendingSend>> {
        let proposal = self.proposals.remove(&head.group_id).ok_or_else(|| ClientError::UnknownGroup(head.group_id.clone()))?;
        if head.epoch != proposal.group.epoch() || head.state_hash != proposal.group.hash() {
            return Err(ClientError::NotOrdered { group: head.group_id.clone(), epoch: head.epoch });
        }
        self.commit(proposal, rng)
    }

    /// The order key this device holds for group `id` (as one of its admins): for clients that
    /// make their own control messages (`Endpoint::send_payload`), and tests.
    pub fn order_key(&self, id: &str) -> Option<&OrderKey> {
        self.order_keys.get(id)
    }

    /// Whether a change of group `id` waits for its hub.
    pub fn has_proposal(&self, id: &str) -> bool {
        self.proposals.contains_key(id)
    }

    /// Drops the proposal for group `id` (its hub refused it for good).
    pub fn abandon_proposal(&mut self, id: &str) {
        self.proposals.remove(id);
    }

    /// Applies this device's ordered change and returns its announcements: to every other member
    /// (admins with the order key) and to the members it removed, which learn they are out.
    fn commit<R: CryptoRng + ?Sized>(&mut self, proposal: Proposal, rng: &mut R) -> Result<Vec<PendingSend>> {
        let Proposal { group, order_key } = proposal;
        let id = group.id().to_owned();
        let removed: Vec<ProtocolAddress> = match self.groups.get(&id) {
            Some(before) => before.members().difference(group.members()).cloned().collect(),
            None => Vec::new(),
        };
        if !self.groups.contains_key(&id) {
            // Always a fresh key: one kept from an earlier membership may be held by someone
            // since removed.
            self.fresh_key(&id, group.suite(), rng)?;
        } else if !removed.is_empty() {
            self.rotate_after_removal(&id, group.suite(), rng)?;
        }
        let to: Vec<ProtocolAddress> = self.others(&group).chain(removed).collect();
        let plain = group.announcement();
        let mut for_admins = plain.clone();
        for_admins.order_secret = order_key.secret().to_vec();
        let (admins, others): (Vec<_>, Vec<_>) = to.into_iter().partition(|member| group.admins().contains(member));
        let mut sends = Self::pending(for_admins, &admins);
        sends.extend(Self::pending(plain, &others));
        self.groups.insert(id.clone(), group);
        self.order_keys.insert(id.clone(), order_key);
        // A key a member handed out while this device did not count it in (a member re-added that
        // sent before it learnt of its removal) applies now.
        self.apply_held_keys(&id);
        Ok(sends)
    }

    /// Proposes and applies at once, without a hub, sealing the announcements with bundles from
    /// `directory`: all or none (nothing changes when a recipient has neither a session nor a
    /// bundle). For devices driven without relays; a networked device has its hub order changes.
    fn change_now<R: CryptoRng + ?Sized>(&mut self, id: &str, order: Result<OrderChange>, directory: &mut dyn BundleDirectory, rng: &mut R) -> Result<Vec<Outgoing>> {
        order?;
        let proposal = self.proposals.remove(id).expect("just proposed");
        let before: IndexSet<ProtocolAddress> = self.groups.get(id).map(|group| group.members().clone()).unwrap_or_default();
        let to = proposal.group.members().iter().chain(before.difference(proposal.group.members())).filter(|member| **member != self.address);
        if let Some(missing) = to.into_iter().find(|member| !self.has_session(member) && !directory.has_bundle(member)) {
            return Err(ClientError::NoBundle(missing.clone()));
        }
        let sends = self.commit(proposal, rng)?;
        self.seal_all(sends, directory, rng)
    }

    /// Creates group `id` with `members` (this device is added, as its admin) and tells each
    /// member, without a hub (see [`Self::propose_create`] for a networked device); this device's
    /// sender key goes to them with its first message to the group.
    pub fn create_group<R: CryptoRng + ?Sized>(
        &mut self,
        id: &str,
        members: impl IntoIterator<Item = ProtocolAddress>,
        suite: Suite,
        directory: &mut dyn BundleDirectory,
        rng: &mut R,
    ) -> Result<Vec<Outgoing>> {
        let order = self.propose_create(id, members, suite, rng);
        self.change_now(id, order, directory, rng)
    }

    /// Adds `member` to group `id`, without a hub: every member, the new one included, learns the
    /// new membership; the new member gets each member's *current* sender key with that
    /// member's next message to the group.
    pub fn add_member<R: CryptoRng + ?Sized>(&mut self, id: &str, member: ProtocolAddress, directory: &mut dyn BundleDirectory, rng: &mut R) -> Result<Vec<Outgoing>> {
        let order = self.propose(id, &Change { add: vec![member], ..Change::default() }, rng);
        self.change_now(id, order, directory, rng)
    }

    /// Removes `member` from group `id`, without a hub: this device rotates its sender key, which
    /// goes to the remaining members only (with its next group message); each of them does the
    /// same when it learns of the removal.
    pub fn remove_member<R: CryptoRng + ?Sized>(&mut self, id: &str, member: &ProtocolAddress, directory: &mut dyn BundleDirectory, rng: &mut R) -> Result<Vec<Outgoing>> {
        let order = self.propose(id, &Change { remove: vec![member.clone()], ..Change::default() }, rng);
        self.change_now(id, order, directory, rng)
    }

    /// Makes `member` an admin of group `id`, without a hub: from the next epoch on it may add,
    /// remove and promote too. Every member learns it.
    pub fn promote<R: CryptoRng + ?Sized>(&mut self, id: &str, member: &ProtocolAddress, directory: &mut dyn BundleDirectory, rng: &mut R) -> Result<Vec<Outgoing>> {
        let order = self.propose(id, &Change { promote: vec![member.clone()], ..Change::default() }, rng);
        self.change_now(id, order, directory, rng)
    }

    /// Group `id` as it stands, if this device may change it (it is one of its admins).
    fn group_to_change(&self, id: &str) -> Result<&Group> {
        let group = self.groups.get(id).ok_or_else(|| ClientError::UnknownGroup(id.to_owned()))?;
        if !group.admins().contains(&self.address) {
            return Err(ClientError::NotAnAdmin { group: id.to_owned(), sender: self.address.clone() });
        }
        Ok(group)
    }
}
