//! Work that needs other devices' bundles before it can be sealed: it waits, in order, while
//! they are fetched through the relay (across apps by federation), and runs once they are here.

use rand_core::CryptoRng;
use std::collections::{HashSet, VecDeque};

use switchboard_session::{PreKeyBundle, ProtocolAddress, Suite};
use switchboard_wire::switchboard::{Bundles, FetchBundles, GroupEnvelope, client_frame::Body};

use super::{DropReason, Endpoint, Member, Phase, Request};
use crate::device::{Change, PendingSend};
use crate::error::ClientError;

/// Devices of one user taken from one bundle answer.
pub const MAX_DEVICES_PER_USER: usize = switchboard_wire::limits::MAX_DEVICES_PER_USER;

/// Work waiting for bundles of some users.
#[derive(Debug)]
pub(super) enum Work {
    Direct { to: String, content: Vec<u8> },
    /// A payload (a transcript, her record) for this person's other devices, but those of the
    /// accounts in `skip`.
    Own { payload: std::sync::Arc<[u8]>, skip: Vec<String> },
    /// This person's record, as contact `to` may see it, for every device of `to`.
    Introduce { to: String },
    /// A message to every device of `user` sent again, after its relay said they changed: the
    /// envelopes `kept` as they are, the payload sealed for the others.
    Resend { user: String, payload: std::sync::Arc<[u8]>, commitment: Option<[u8; 32]>, attempts: u32, kept: Vec<switchboard_wire::switchboard::Envelope> },
    /// A record looked up for `user`, kept if `user`'s devices match it.
    CheckLookup { request: u64, user: String, record: crate::person::PersonRecord },
    Seal(Vec<PendingSend>),
    Group { distributions: Vec<PendingSend>, envelope: GroupEnvelope },
    Pairwise { group: String, recipients: Vec<ProtocolAddress>, content: Vec<u8> },
    /// A change of this device's to group `group`.
    Change { group: String, change: GroupChange },
    /// `payload` for every device of each of `users` (this device left out).
    ToUsers { users: Vec<String>, payload: std::sync::Arc<[u8]> },
    /// A block of the person behind `user`, extended to the accounts her record names that turn
    /// out hers once their devices are fetched (see `consent`).
    ExtendBlock { user: String },
}

/// A change this device makes to one of its groups (see `order`).
#[derive(Debug)]
pub(super) enum GroupChange {
    Create { members: Vec<Member>, suite: Suite },
    Add(Member),
    Remove(Member),
    Promote(ProtocolAddress),
}

impl Work {
    /// Whether this is a change of group `id` (which waits while another change of the group
    /// waits for its hub).
    pub(super) fn changes(&self, id: &str) -> bool {
        match self {
            Work::Change { group, .. } => group == id,
            _ => false,
        }
    }
}

impl Endpoint {
    /// Whether a bundle must be fetched before writing to `address`.
    fn unknown(&self, address: &ProtocolAddress) -> bool {
        !self.device.has_session(address) && !self.devices_of.contains_key(address.name())
    }

    fn member_needs(&self, member: &Member) -> Option<String> {
        match member {
            Member::User(user) => (!self.devices_of.contains_key(user)).then(|| user.clone()),
            Member::Device(address) => self.unknown(address).then(|| address.name().to_owned()),
        }
    }

    /// The users whose bundles `work` still needs.
    fn needs(&self, work: &Work) -> Vec<String> {
        let me = self.device.address();
        let pending_needs = |pending: &[PendingSend]| -> Vec<String> {
            pending.iter().map(|p| &p.to).filter(|a| self.unknown(a)).map(|a| a.name().to_owned()).collect()
        };
        let group_needs = |group: &str, except: Option<&Member>| -> Vec<String> {
            let Some(group) = self.device.group(group) else { return Vec::new() };
            group
                .members()
                .iter()
                .filter(|a| *a != me && self.unknown(a))
                .filter(|a| match except {
                    Some(Member::Device(removed)) => *a != removed,
                    Some(Member::User(removed)) => a.name() != removed,
                    None => true,
                })
                .map(|a| a.name().to_owned())
                .collect()
        };
        let mut users: Vec<String> = match work {
            // Always the user's current device list: sessions alone would miss a device it added.
            Work::Direct { to, .. } => self.direct_users(to).into_iter().filter(|user| !self.devices_of.contains_key(user)).collect(),
            Work::Own { skip, .. } => self.own_accounts().into_iter().filter(|user| !skip.contains(user) && !self.devices_of.contains_key(user)).collect(),
            Work::Introduce { to } => (!self.devices_of.contains_key(to)).then(|| to.clone()).into_iter().collect(),
            Work::ToUsers { users, .. } => users.iter().filter(|user| !self.devices_of.contains_key(*user)).cloned().collect(),
            Work::ExtendBlock { user } => self.claimed_accounts(user).into_iter().filter(|account| !self.devices_of.contains_key(account)).collect(),
            Work::CheckLookup { user, .. } | Work::Resend { user, .. } => (!self.devices_of.contains_key(user)).then(|| user.clone()).into_iter().collect(),
            Work::Seal(pending) => pending_needs(pending),
            Work::Group { distributions, .. } => pending_needs(distributions),
            Work::Pairwise { recipients, .. } => recipients.iter().filter(|a| self.unknown(a)).map(|a| a.name().to_owned()).collect(),
            Work::Change { change: GroupChange::Create { members, .. }, .. } => members.iter().filter_map(|m| self.member_needs(m)).collect(),
            Work::Change { group, change: GroupChange::Add(member) } => {
                let mut users = group_needs(group, None);
                users.extend(self.member_needs(member));
                users
            }
            Work::Change { group, change: GroupChange::Remove(member) } => {
                let mut users = group_needs(group, Some(member));
                if let Member::Device(removed) = member {
                    users.extend(self.unknown(removed).then(|| removed.name().to_owned()));
                }
                users
            }
            Work::Change { group, change: GroupChange::Promote(_) } => group_needs(group, None),
        };
        users.sort();
        users.dedup();
        users
    }

    fn fetch(&mut self, user: &str) {
        if self.phase != Phase::Online || self.fetching.contains(user) {
            return;
        }
        self.fetching.insert(user.to_owned());
        self.request(Request::Fetch(user.to_owned()), Body::FetchBundles(FetchBundles { user: user.to_owned(), requester: None }));
    }

    pub(super) fn fetch_missing(&mut self) {
        let mut users: Vec<String> = self.waiting.iter().flat_map(|(_, missing)| missing.iter().cloned()).collect();
        users.sort();
        users.dedup();
        for user in users {
            self.fetch(&user);
        }
    }

    /// The relay's answer to a fetch: every device of `user` with a bundle that verifies.
    pub(super) fn bundles_arrived(&mut self, user: String, bundles: Bundles, rng: &mut (impl CryptoRng + ?Sized)) {
        self.fetching.remove(&user);
        let mut devices: Vec<ProtocolAddress> = Vec::new();
        for device in bundles.devices {
            if devices.len() == MAX_DEVICES_PER_USER {
                break;
            }
            // One bundle per device: a list naming a device twice would have every message to
            // it sent twice.
            if device.device_id == 0 || devices.iter().any(|known| known.device_id() == device.device_id) {
                continue;
            }
            let Some(bundle) = device.bundle else { continue };
            let Ok(bundle) = PreKeyBundle::from_wire(bundle) else { continue };
            let address = ProtocolAddress::new(user.clone(), device.device_id);
            if self.directory.publish(&address, [bundle]).is_err() {
                continue;
            }
            devices.push(address);
        }
        for (_, missing) in &mut self.waiting {
            missing.remove(&user);
        }
        let none = devices.is_empty();
        self.devices_of.insert(user.clone(), devices);
        self.run_waiting(rng);
        if none {
            // What waited for the user was given up; a later send asks again (it may register).
            self.devices_of.remove(&user);
        }
    }

    /// Runs `work` now if its bundles are at hand (and nothing waits before it), else once they
    /// are (fetching them).
    pub(super) fn submit(&mut self, work: Work, rng: &mut (impl CryptoRng + ?Sized)) {
        let needs = self.needs(&work);
        if needs.is_empty() && self.waiting.is_empty() {
            self.run(work, rng);
            return;
        }
        if self.waiting.len() >= super::MAX_WAITING {
            self.drop_send(DropReason::OutboxFull);
            return;
        }
        for user in &needs {
            self.fetch(user);
        }
        self.waiting.push_back((work, needs.into_iter().collect()));
        self.run_waiting(rng);
    }

    /// Runs, in order, every waiting work no longer waiting for a bundle. (Each is checked once
    /// more as it runs: a group's membership may have grown meanwhile.) Work that needs nothing
    /// may so overtake earlier work still waiting for bundles — a group message its key, say;
    /// receivers hold such a message until the key comes.
    pub(super) fn run_waiting(&mut self, rng: &mut (impl CryptoRng + ?Sized)) {
        let mut still = VecDeque::new();
        while let Some((work, missing)) = self.waiting.pop_front() {
            if !missing.is_empty() {
                still.push_back((work, missing));
                continue;
            }
            let needs = self.needs(&work);
            if needs.is_empty() {
                self.run(work, rng);
            } else {
                for user in &needs {
                    self.fetch(user);
                }
                still.push_back((work, needs.into_iter().collect::<HashSet<_>>()));
            }
        }
        self.waiting = still;
    }

    fn resolve(&self, member: &Member) -> Vec<ProtocolAddress> {
        match member {
            Member::Device(address) => vec![address.clone()],
            Member::User(user) => self.devices_of.get(user).cloned().unwrap_or_default(),
        }
    }

    fn run(&mut self, work: Work, rng: &mut (impl CryptoRng + ?Sized)) {
        match work {
            Work::Direct { to, content } => {
                let me = self.device.address().clone();
                let franking = crate::franking::Commitment::new(&content, rng);
                let targets = self.direct_targets(&to, &content, &franking);
                // To its own user, a device writes to its other devices only: a session with
                // itself would read nothing (found by the endpoint fuzz target).
                if targets.is_empty() && to != me.name() {
                    self.drop_send(DropReason::CouldNotSeal(ClientError::NoBundle(ProtocolAddress::new(to, 1))));
                    return;
                }
                let devices: Vec<ProtocolAddress> = targets.iter().map(|target| target.to.clone()).collect();
                self.send_to_users(targets, 0, rng);
                self.introduce_after_message(&to, devices, rng);
                // Every other device of this person (or business) shows what she sent from this one.
                self.sync_sent(&to, &content, rng);
                self.business_sent(&to, &content, rng);
            }
            Work::Own { payload, skip } => {
                let pending = self.to_own_devices(&payload, &skip);
                self.seal_each(pending, None, rng);
            }
            Work::Introduce { to } => self.introduce(&to, rng),
            Work::CheckLookup { request, user, record } => self.check_lookup(request, user, record, rng),
            Work::Resend { user, payload, commitment, attempts, kept } => self.resend(user, (payload, commitment), attempts, kept, rng),
            Work::Seal(pending) => self.seal_each(pending, None, rng),
            Work::Group { distributions, envelope } => {
                let group = envelope.group_id.clone();
                self.seal_each(distributions, Some(&group), rng);
                self.queue(Body::SendGroup(envelope));
            }
            Work::Pairwise { group, recipients, content } => {
                for device in recipients {
                    match self.device.send(&device, &content, &mut self.directory, rng) {
                        Ok(outgoing) => self.queue_pairwise(vec![outgoing], &group, rng),
                        Err(error) => self.drop_send(DropReason::CouldNotSeal(error)),
                    }
                }
                self.changed_device();
            }
            Work::Change { group, change } => self.propose(group, change, rng),
            Work::ExtendBlock { user } => self.extend_block(&user, rng),
            Work::ToUsers { users, payload } => {
                let me = self.device.address().clone();
                let targets: Vec<PendingSend> = users
                    .iter()
                    .flat_map(|user| self.devices_of.get(user).into_iter().flatten())
                    .filter(|device| **device != me)
                    .map(|device| PendingSend::new(device.clone(), payload.clone()))
                    .collect();
                self.send_to_users(targets, 0, rng);
            }
        }
    }

    /// Proposes a change of this device's to one of its groups; its hub orders it (see `order`).
    fn propose(&mut self, group: String, change: GroupChange, rng: &mut (impl CryptoRng + ?Sized)) {
        if self.change_waits(&group) {
            self.hold_change(Work::Change { group, change });
            return;
        }
        let proposed = match change {
            GroupChange::Create { members, suite } => {
                let devices: Vec<ProtocolAddress> = members.iter().flat_map(|m| self.resolve(m)).collect();
                self.device.propose_create(&group, devices, suite, rng)
            }
            GroupChange::Add(member) => {
                let add = self.resolve(&member);
                self.device.propose(&group, &Change { add, ..Change::default() }, rng)
            }
            GroupChange::Remove(member) => {
                let remove: Vec<ProtocolAddress> = match &member {
                    Member::Device(address) => vec![address.clone()],
                    Member::User(user) => self
                        .device
                        .group(&group)
                        .map(|g| g.members().iter().filter(|m| m.name() == user).cloned().collect())
                        .unwrap_or_default(),
                };
                self.device.propose(&group, &Change { remove, ..Change::default() }, rng)
            }
            GroupChange::Promote(member) => self.device.propose(&group, &Change { promote: vec![member], ..Change::default() }, rng),
        };
        self.order(proposed);
    }

    /// Seals `pending` recipient by recipient; what cannot be sealed is reported (and, for this
    /// device's sender key in `group`, handed out again with its next message).
    pub(super) fn seal_each(&mut self, pending: Vec<PendingSend>, group: Option<&str>, rng: &mut (impl CryptoRng + ?Sized)) {
        if pending.is_empty() {
            return;
        }
        let sealing = self.device.seal_each(pending, &mut self.directory, rng);
        self.changed_device();
        self.queue_pairwise(sealing.sealed, "", rng);
        if sealing.failed.is_empty() {
            return;
        }
        if let Some(group) = group {
            let failed: Vec<PendingSend> = sealing.failed.iter().map(|(send, _)| send.clone()).collect();
            self.device.key_not_delivered(group, &failed);
        }
        for (send, error) in sealing.failed {
            // What we knew of that user's devices did not do: ask again next time.
            self.devices_of.remove(send.to.name());
            self.drop_send(DropReason::CouldNotSeal(error));
        }
    }
}
