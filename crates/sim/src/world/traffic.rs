//! What devices do: traffic, groups and their churn, and what each device made of what it
//! received, recorded in the ledger and the trace.

use std::rc::Rc;
use std::time::Instant;

use rand::RngExt;
use switchboard_session::ProtocolAddress;
use switchboard_wire::switchboard::{ServerFrame, server_frame};

use crate::scenario::AdversaryKind;
use super::forge::{Forger, Forgery};
use super::{Event, SimGroup, World, secs};
use crate::client::{self, Outcome};
use crate::ledger::{GroupCiphertext, MessageRecord};
use crate::scenario::GroupStrategy;
use crate::trace::TraceEvent;

impl World {
    pub(super) fn outcomes(&mut self, device: usize, outcomes: Vec<Outcome>) {
        if !self.consent.blocks.is_empty() {
            self.note_heard(device);
        }
        for outcome in outcomes {
            match outcome {
                Outcome::Read { message, envelope } => {
                    self.ledger.read(message, device, envelope, self.now);
                    if self.scenario.consent.blocks > 0 {
                        self.check_read(device, message);
                    }
                    self.trace.record(TraceEvent::Read { at_us: self.now, message, device });
                    if let Some(&index) = self.victims.get(&device) {
                        self.thieves[index].victim_read(message, self.now);
                    }
                }
                Outcome::Duplicate { .. } => self.ledger.duplicates_dropped += 1,
                Outcome::ChannelFollowed { ok } => self.channel_followed(device, ok),
                Outcome::ChannelKeyHandedOver { follower } => self.channel_key_handed_over(&follower),
                Outcome::ChannelPost { post, from, .. } => self.channel_post_read(device, post, &from),
                Outcome::ChannelReply { vote, from } => self.channel_vote_received(device, vote, &from),
                Outcome::DeviceRemoved { ok, .. } => self.agent_removed(ok),
                Outcome::AgentNamed { message, agent } => self.agent_named(device, message, &agent),
                Outcome::ReportAnswered { request, result } => self.report_answered(device, request, result),
                Outcome::Refused { from, envelope, reason } => {
                    self.ledger.refused(device, envelope);
                    let forged = matches!(reason, "not an admin" | "invalid change" | "limit exceeded" | "group fork" | "invalid payload" | "not a member" | "a change its admins did not order");
                    if forged && self.groups.iter().any(|g| g.forger.is_some_and(|f| from.as_ref() == Some(&self.clients[f.device].address))) {
                        self.ledger.forgeries_refused += 1;
                    }
                    if reason == crate::client::DOWNGRADE_REFUSED {
                        self.ledger.downgrades_refused += 1;
                        // What the initiator sends this device over the refused session is lost.
                        if let Some(initiator) = from.and_then(|from| self.device_index(&from)) {
                            self.ledger.downgraded_pairs.insert((initiator, device));
                        }
                    }
                    self.trace.record(TraceEvent::Refused { at_us: self.now, device, reason });
                }
                Outcome::Pairwise { from, ratchet_key } => {
                    let me = &self.clients[device].address;
                    for thief in &mut self.thieves {
                        if self.clients[thief.victim].address == from {
                            thief.peer_processed(device, me, ratchet_key, self.now);
                        }
                    }
                }
                Outcome::Forked { .. } => self.ledger.forks_detected += 1,
                Outcome::LookedUp { kept: true } => self.ledger.lookups_kept += 1,
                Outcome::LookedUp { kept: false } => self.ledger.lookups_refused += 1,
                Outcome::Removed { group } => {
                    if let Some(index) = self.groups.iter().position(|g| g.id == group) {
                        self.trace.record(TraceEvent::Membership { at_us: self.now, group: index, device, change: "learnt removal" });
                    }
                }
            }
        }
    }

    pub(super) fn traffic(&mut self) {
        self.traffic_left -= 1;
        if self.traffic_left > 0 {
            let gap = self.next_traffic_gap();
            if self.now + gap < self.traffic_end {
                self.schedule(self.now + gap, Event::Traffic);
            }
        }
        let traffic = &self.scenario.traffic;
        let size = self.rng.random_range(traffic.size.min..=traffic.size.max);
        let weights = [traffic.kinds.text, traffic.kinds.reply, traffic.kinds.reaction, traffic.kinds.receipt];
        let mut pick = self.rng.random::<f64>() * weights.iter().sum::<f64>();
        let kind = weights.iter().position(|w| {
            pick -= w;
            pick < 0.0
        });
        let kind = kind.unwrap_or(0);
        let to_group = !self.groups.is_empty() && self.rng.random::<f64>() < *traffic.group_share.get_ref();
        if to_group {
            self.send_group_message(size, kind);
        } else {
            self.send_direct_message(size, kind);
        }
    }

    pub(super) fn send_direct_message(&mut self, size: usize, kind: usize) {
        let sender = self.rng.random_range(0..self.clients.len());
        let sender_user = self.user_of[sender];
        let sender_person = self.person_of_user[sender_user];
        let mut recipient = self.rng.random_range(0..self.users.len() - 1);
        if recipient >= sender_user {
            recipient += 1;
        }
        // Not to another account of the sender's own person (that is her own devices).
        let mut tries = 0;
        while sender_person.is_some() && self.person_of_user[recipient] == sender_person {
            tries += 1;
            if tries > 64 {
                self.skipped_direct_sends += 1;
                return;
            }
            recipient = self.rng.random_range(0..self.users.len());
        }
        // The business account's traffic is its own (`[business]`): counted by its analytics.
        if self.business_user.is_some_and(|business| business == sender_user || business == recipient) {
            self.skipped_direct_sends += 1;
            return;
        }
        self.send_direct_between(sender, recipient, size, kind);
    }

    /// A message from device `sender` to user `recipient`.
    pub(super) fn send_direct_between(&mut self, sender: usize, recipient: usize, size: usize, kind: usize) {
        let sender_person = self.person_of_user[self.user_of[sender]];
        // To one account of a person: every device of hers; from a person: her other devices
        // as transcripts.
        let addressed: Rc<[usize]> = match self.person_of_user[recipient] {
            Some(person) => self.person_devices[person].as_slice().into(),
            None => self.users[recipient].devices.as_slice().into(),
        };
        let synced: Rc<[usize]> = match sender_person {
            Some(person) => self.person_devices[person].iter().copied().filter(|d| *d != sender).collect(),
            // A business's other agents see each reply as a transcript.
            None if Some(self.user_of[sender]) == self.business_user => self.users[self.user_of[sender]].devices.iter().copied().filter(|d| *d != sender).collect(),
            None => Rc::from([]),
        };
        self.look_up_before_writing(sender, recipient);
        self.channel.talked(self.user_of[sender], recipient);
        let number = self.ledger.messages.len() as u64;
        let content = client::content(number, None, size, kind, self.now);
        self.consent.sent(number, &content, self.scenario.consent.reports > 0);
        self.ledger.sent(MessageRecord { sent_at_us: self.now, sender, group: None, addressed: addressed.clone(), synced });
        self.trace.record(TraceEvent::Message { at_us: self.now, message: number, from: sender, group: None, recipients: addressed.len(), bytes: content.len() });
        let to = self.users[recipient].name.clone();
        let mut out = Vec::new();
        let started = Instant::now();
        if self.scenario.inject.relay_keeps_plaintext {
            self.clients[sender].leak(self.now, &content, &mut out);
        }
        self.clients[sender].send_direct(self.now, &to, content, &mut crate::harvest::Watched::new(&mut self.rng, self.harvester.as_mut()), &mut out);
        self.client_busy[self.clients[sender].app] += started.elapsed();
        self.client_out(sender, out);
    }

    pub(super) fn send_group_message(&mut self, size: usize, kind: usize) {
        let group = self.rng.random_range(0..self.groups.len());
        let id = self.groups[group].id.clone();
        // A member that knows of the group (the news may still be on its way to some).
        let senders = self.scenario.traffic.group_senders.unwrap_or(usize::MAX);
        let candidates: Vec<usize> = self.groups[group]
            .users
            .iter()
            .take(senders)
            .flat_map(|u| self.users[*u].devices.iter().copied())
            .filter(|d| self.clients[*d].device().group(&id).is_some())
            .collect();
        if candidates.is_empty() {
            self.skipped_group_sends += 1;
            return;
        }
        let sender = candidates[self.rng.random_range(0..candidates.len())];
        let number = self.ledger.messages.len() as u64;
        let content = client::content(number, Some(&id), size, kind, self.now);
        self.consent.sent(number, &content, self.scenario.consent.reports > 0);
        let epoch = self.clients[sender].device().group(&id).map_or(0, |g| g.epoch());
        let addressed = self.addressed(sender, group, &id, epoch);
        let content_len = content.len();
        let mut out = Vec::new();
        let started = Instant::now();
        let sent = self.clients[sender].send_group(self.now, &id, content, &mut crate::harvest::Watched::new(&mut self.rng, self.harvester.as_mut()), &mut out);
        self.client_busy[self.clients[sender].app] += started.elapsed();
        let Some(ciphertext) = sent else {
            self.skipped_group_sends += 1;
            return;
        };
        self.ledger.sent(MessageRecord { sent_at_us: self.now, sender, group: Some(group), addressed: addressed.clone(), synced: Rc::from([]) });
        self.trace.record(TraceEvent::Message { at_us: self.now, message: number, from: sender, group: Some(group), recipients: addressed.len(), bytes: content_len });
        if self.scenario.group_strategy == GroupStrategy::SenderKeys && self.groups[group].churn {
            if let Some(bytes) = ciphertext {
                self.ledger.group_ciphertexts.push(GroupCiphertext { message: number, group, sender, sender_epoch: epoch, bytes });
            }
        }
        self.client_out(sender, out);
    }

    /// The devices `sender` addresses in `group` at its `epoch` (its own view of the members),
    /// computed once per view.
    fn addressed(&mut self, sender: usize, group: usize, id: &str, epoch: u64) -> Rc<[usize]> {
        if let Some((cached, list)) = self.addressed_cache.get(&(sender, group)) {
            if *cached == epoch {
                return list.clone();
            }
        }
        let me = &self.clients[sender].address;
        let members = self.clients[sender].device().group(id).map(|g| g.members().iter().filter(|m| *m != me).collect::<Vec<_>>()).unwrap_or_default();
        let list: Rc<[usize]> = members.into_iter().filter_map(|member| self.device_index(member)).collect();
        self.addressed_cache.insert((sender, group), (epoch, list.clone()));
        list
    }

    pub(crate) fn device_index(&self, address: &ProtocolAddress) -> Option<usize> {
        let user = &self.users[*self.user_index.get(address.name())?];
        user.devices.iter().copied().find(|d| self.clients[*d].address.device_id() == address.device_id())
    }

    /// Every group of the scenario, created by its first member (its admin) when traffic starts.
    pub(super) fn create_groups(&mut self) {
        let specs = self.scenario.groups.clone();
        for spec in specs {
            let apps: Vec<usize> = if spec.apps.is_empty() {
                (0..self.app_names.len()).collect()
            } else {
                spec.apps.iter().map(|a| self.app_index(a.get_ref())).collect()
            };
            for _ in 0..spec.count {
                let index = self.groups.len();
                let members = self.draw_users(&apps, *spec.size.get_ref(), &[]);
                let admin_user = members[0];
                let admin = self.users[admin_user].devices[0];
                let id = format!("g{index}@{}", self.app_names[self.users[admin_user].app]);
                let devices: Vec<usize> = members.iter().flat_map(|u| self.users[*u].devices.iter().copied()).collect();
                for &device in &devices {
                    self.ledger.joined(index, device, 0, self.now);
                }
                let addresses: Vec<ProtocolAddress> =
                    devices.iter().filter(|d| **d != admin).map(|d| self.clients[*d].address.clone()).collect();
                let forger = self.draw_forger(&apps, &members);
                self.draw_id_reuser(&members);
                let churn = spec.joins + spec.removals > 0 || forger.is_some();
                self.groups.push(SimGroup { id: id.clone(), apps: apps.clone(), admin, users: members, churn, forger });
                self.trace.names.groups.push(id.clone());
                self.trace.record(TraceEvent::Membership { at_us: self.now, group: index, device: admin, change: "create" });
                let mut out = Vec::new();
                let suite = self.suite;
                self.clients[admin].create_group(self.now, &id, addresses, suite, &mut crate::harvest::Watched::new(&mut self.rng, self.harvester.as_mut()), &mut out);
                self.client_out(admin, out);
                let window = secs(self.scenario.duration_s).max(2);
                for join in std::iter::repeat_n(true, spec.joins as usize).chain(std::iter::repeat_n(false, spec.removals as usize)) {
                    let at = self.now + self.rng.random_range(1..window);
                    self.schedule(at, Event::Churn { group: index, join });
                }
                if forger.is_some() {
                    for forgery in Forgery::ALL {
                        let at = self.now + self.rng.random_range(1..window);
                        self.schedule(at, Event::Forge { group: index, forgery });
                    }
                }
            }
        }
    }

    /// With the scenario's forge-membership share: a member device that is not the admin (the
    /// first device of a user other than the first), and a stranger from the group's apps.
    fn draw_forger(&mut self, apps: &[usize], members: &[usize]) -> Option<Forger> {
        let share = self.scenario.adversaries.iter().find(|a| *a.kind.get_ref() == AdversaryKind::ForgeMembership)?.share;
        if members.len() < 2 || self.rng.random::<f64>() >= share {
            return None;
        }
        let user = members[self.rng.random_range(1..members.len())];
        let stranger = *self.draw_users(apps, 1, members).first()?;
        Some(Forger { device: self.users[user].devices[0], stranger })
    }

    /// With the scenario's reuse-ids share: a member device of the group, not its admin, that
    /// reuses the ids of the group messages it is handed.
    fn draw_id_reuser(&mut self, members: &[usize]) {
        let Some(share) = self.scenario.adversaries.iter().find(|a| *a.kind.get_ref() == AdversaryKind::ReuseIds).map(|a| a.share) else {
            return;
        };
        if members.len() < 2 || self.rng.random::<f64>() >= share {
            return;
        }
        let user = members[self.rng.random_range(1..members.len())];
        self.id_reusers.insert(self.users[user].devices[0]);
    }

    /// `count` distinct users from `apps` in turn, none of `except`.
    pub(super) fn draw_users(&mut self, apps: &[usize], count: usize, except: &[usize]) -> Vec<usize> {
        let mut pools: Vec<Vec<usize>> = apps
            .iter()
            .map(|app| (0..self.users.len()).filter(|u| self.users[*u].app == *app && !except.contains(u)).collect())
            .collect();
        let mut chosen = Vec::new();
        let mut turn = 0;
        while chosen.len() < count && pools.iter().any(|p| !p.is_empty()) {
            let pool = &mut pools[turn % apps.len()];
            turn += 1;
            if pool.is_empty() {
                continue;
            }
            let pick = self.rng.random_range(0..pool.len());
            chosen.push(pool.swap_remove(pick));
        }
        chosen
    }

    /// The admin adds a user from outside, or removes a member (never itself).
    pub(super) fn churn(&mut self, group: usize, join: bool) {
        let admin = self.groups[group].admin;
        let admin_user = self.user_of[admin];
        let id = self.groups[group].id.clone();
        let user = if join {
            let apps = self.groups[group].apps.clone();
            let Some(&user) = self.draw_users(&apps, 1, &self.groups[group].users.clone()).first() else { return };
            self.groups[group].users.push(user);
            user
        } else {
            let candidates: Vec<usize> = self.groups[group].users.iter().copied().filter(|u| *u != admin_user).collect();
            if candidates.is_empty() {
                return;
            }
            let user = candidates[self.rng.random_range(0..candidates.len())];
            self.groups[group].users.retain(|u| *u != user);
            user
        };
        let mut out = Vec::new();
        for device in self.users[user].devices.clone() {
            let address = self.clients[device].address.clone();
            self.trace.record(TraceEvent::Membership { at_us: self.now, group, device, change: if join { "add" } else { "remove" } });
            if join {
                self.clients[admin].add_member(self.now, &id, address, &mut crate::harvest::Watched::new(&mut self.rng, self.harvester.as_mut()), &mut out);
            } else {
                self.clients[admin].remove_member(self.now, &id, address, &mut crate::harvest::Watched::new(&mut self.rng, self.harvester.as_mut()), &mut out);
            }
        }
        self.client_out(admin, out);
    }

    /// Membership changes `device` has just made (an admin's change may have waited for bundles),
    /// with the time they took effect.
    pub(super) fn record_changes(&mut self, device: usize) {
        let (changes, states) = self.clients[device].take_changes();
        for (id, state) in states {
            if let Some(group) = self.groups.iter().position(|g| g.id == id) {
                self.ledger.admin_states.insert((group, state));
            }
        }
        for change in changes {
            let (Some(group), Some(member)) = (self.groups.iter().position(|g| g.id == change.group), self.device_index(&change.member))
            else {
                continue;
            };
            if change.added {
                self.ledger.joined(group, member, change.epoch, self.now);
            } else {
                self.ledger.left(group, member, change.epoch, self.now);
            }
        }
    }

    pub(super) fn capture_for_thief(&mut self, device: usize, bytes: &[u8]) {
        let Ok(frame) = switchboard_wire::decode::<ServerFrame>(bytes, switchboard_wire::frame::MAX_FRAME_LEN) else { return };
        if let (0, Some(server_frame::Body::Deliver(envelope))) = (frame.request_id, frame.body) {
            let index = self.victims[&device];
            self.thieves[index].capture(envelope, self.now);
        }
    }
}
