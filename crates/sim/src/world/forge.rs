//! The forging member (`kind = "forge-membership"`): a member of a group, not an admin, whose
//! modified client announces changes no admin made. Every honest member must refuse them; the
//! stranger it pretends to add must read nothing (the invariant "no read while not a member by
//! the admins' changes").

use rand::RngExt;
use switchboard_session::ProtocolAddress;
use switchboard_client_core::OrderKey;
use switchboard_session::group::{self as sender_keys, InMemorySenderKeyStore};
use switchboard_wire::Message;
use switchboard_wire::switchboard::{GroupControl, PairwisePayload, pairwise_payload::Body};

use super::World;
use crate::trace::TraceEvent;

/// A group's forging member, and the stranger it pretends to add (a user the admin never adds).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Forger {
    pub device: usize,
    pub stranger: usize,
}

/// What a forging member tries, once each, at random times of the run.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Forgery {
    /// Adds the stranger, and tells one member and the stranger only (naming itself admin).
    AddStranger,
    /// Removes another member (the admin, when it can), and tells everyone.
    Remove,
    /// Announces the group at an epoch near the end of the range.
    JumpEpoch,
    /// Tells half the members it added the stranger, the other half it removed someone.
    Split,
    /// Announces a change a few epochs ahead, naming itself admin (kept by members until they
    /// reach the epoch before it, then judged and dropped).
    NearJump,
    /// Hands out a sender key that names another state of the group (a fork alarm raised by a
    /// member), and the group's previous announcement with a key attached.
    FakeState,
}

impl Forgery {
    pub const ALL: [Forgery; 6] =
        [Forgery::AddStranger, Forgery::Remove, Forgery::JumpEpoch, Forgery::Split, Forgery::NearJump, Forgery::FakeState];

    fn label(self) -> &'static str {
        match self {
            Forgery::AddStranger => "forge: add a stranger",
            Forgery::Remove => "forge: remove a member",
            Forgery::JumpEpoch => "forge: jump the epoch",
            Forgery::Split => "forge: different changes to different members",
            Forgery::NearJump => "forge: a change a few epochs ahead",
            Forgery::FakeState => "forge: a key from another state, a key with an announcement",
        }
    }
}

impl World {
    /// The forger of `group` tries `forgery`, from its own view of the group (none if it was
    /// removed meanwhile).
    pub(super) fn forge(&mut self, group: usize, forgery: Forgery) {
        let Some(forger) = self.groups[group].forger else { return };
        let id = self.groups[group].id.clone();
        let Some(view) = self.clients[forger.device].device().group(&id).cloned() else { return };
        let me = self.clients[forger.device].address.clone();
        let stranger = self.clients[self.users[forger.stranger].devices[0]].address.clone();
        let others: Vec<ProtocolAddress> = view.members().iter().filter(|m| **m != me).cloned().collect();
        if others.is_empty() {
            return;
        }
        // Signed with a key of its own: it holds none of the group's.
        let own_key = OrderKey::generate(&mut self.rng);
        let with_stranger = || {
            let mut members = view.members().clone();
            members.insert(stranger.clone());
            view.next(members, [me.clone()].into_iter().collect(), Some(&own_key)).ok().map(|g| g.sign(&own_key).announcement())
        };
        let without = |removed: &ProtocolAddress| {
            let mut members = view.members().clone();
            members.shift_remove(removed);
            let mut admins = view.admins().clone();
            admins.shift_remove(removed);
            admins.insert(me.clone());
            view.next(members, admins, Some(&own_key)).ok().map(|g| g.sign(&own_key).announcement())
        };
        let victim = view.admins().iter().find(|a| **a != me).cloned().unwrap_or_else(|| others[0].clone());
        let mut sends: Vec<(ProtocolAddress, GroupControl)> = Vec::new();
        match forgery {
            Forgery::AddStranger => {
                let told = others[self.rng.random_range(0..others.len())].clone();
                if let Some(control) = with_stranger() {
                    sends.extend([(told, control.clone()), (stranger.clone(), control)]);
                }
            }
            Forgery::Remove => {
                if let Some(control) = without(&victim) {
                    sends.extend(others.iter().map(|to| (to.clone(), control.clone())));
                }
            }
            Forgery::JumpEpoch => {
                let mut control = view.announcement();
                control.epoch = u64::MAX - 1;
                sends.extend(others.iter().map(|to| (to.clone(), control.clone())));
            }
            Forgery::Split => {
                let (first, second) = others.split_at(others.len() / 2);
                if let (Some(added), Some(removed)) = (with_stranger(), without(&victim)) {
                    sends.extend(first.iter().map(|to| (to.clone(), added.clone())));
                    sends.extend(second.iter().filter(|to| **to != victim).map(|to| (to.clone(), removed.clone())));
                }
            }
            Forgery::NearJump => {
                if let Some(mut control) = with_stranger() {
                    control.epoch = view.epoch().saturating_add(3);
                    sends.extend(others.iter().map(|to| (to.clone(), control.clone())));
                }
            }
            Forgery::FakeState => {
                let mut keys = InMemorySenderKeyStore::default();
                if let Ok(distribution) = sender_keys::create_distribution(&mut keys, &id, &me, view.suite(), &mut self.rng) {
                    let key = GroupControl {
                        group_id: id.clone(),
                        epoch: view.epoch(),
                        suite: view.suite().name().to_owned(),
                        sender_key_distribution: distribution.serialize().to_vec(),
                        state_hash: vec![0x5a; 32],
                        ..Default::default()
                    };
                    let mut announcement = view.announcement();
                    announcement.sender_key_distribution = distribution.serialize().to_vec();
                    sends.extend(others.iter().map(|to| (to.clone(), key.clone())));
                    sends.extend(others.iter().map(|to| (to.clone(), announcement.clone())));
                }
            }
        }
        self.trace.record(TraceEvent::Membership { at_us: self.now, group, device: forger.device, change: forgery.label() });
        let mut out = Vec::new();
        for (to, control) in sends {
            if to != stranger {
                self.ledger.forged_changes += 1;
            }
            let payload = PairwisePayload { body: Some(Body::GroupControl(control)), ..Default::default() }.encode_to_vec();
            self.clients[forger.device].send_payload(self.now, to, payload, &mut crate::harvest::Watched::new(&mut self.rng, self.harvester.as_mut()), &mut out);
        }
        self.client_out(forger.device, out);
    }
}

