//! Consent in a scenario (`[consent]`): strangers who flood someone with first messages, users
//! who block the person behind someone who wrote to them, and abuse reports, honest and forged.
//! What the report checks of them, against the world's own record: no relay stores, for a user,
//! an envelope from someone its durable block names; no device of a blocker shows a message sent,
//! once it had heard of the block, by an account of the blocked person the blocking device knew;
//! nothing from accounts that are not the blocked person's is held back; every report a relay kept (verified) is of a message sent by the sender
//! it names, to the reporter (or the group it names), with the content it gives; every forged
//! report is refused; every honest report is verified unless the check could not be made.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use rand::RngExt;
use switchboard_client_core::endpoint::RequestFailed;
use switchboard_wire::switchboard::DeviceAddress;

use super::{Event, World};
use crate::client;
use crate::ledger::{MessageRecord, Violation};

/// A device that holds a block showed a message from a blocked address.
pub const BLOCKED_SHOWN: &str = "no message from a blocked person is shown after the block";
/// A relay kept a report of a message that was not sent as reported.
pub const REPORT_MATCHES: &str = "every verified report matches a message that was sent";
/// A forged report was verified.
pub const FORGED_REFUSED: &str = "every forged report is refused";
/// An honest report was refused for good.
pub const HONEST_VERIFIED: &str = "every honest report is verified";

/// One block, as the world recorded it when it was made.
pub(super) struct Block {
    /// Every device of the blocker's person (or user).
    blocker_devices: Vec<usize>,
    /// The blocked person's accounts the blocking device knew then (their messages must not be
    /// shown), and all of her accounts (their messages may be held back).
    known: Vec<usize>,
    hers: Vec<usize>,
    /// When each device of the blocker's heard of the block (end to end, from the blocking
    /// device: the links drop and reorder frames, so this takes what a message takes).
    heard_at: HashMap<usize, u64>,
}

/// The envelopes of `mutations` that a relay whose disk held `state` stores for a user who
/// blocked their sender: (device, sender).
pub(crate) fn stored_from_blocked(state: &switchboard_relay_core::state::StoredState, mutations: &[switchboard_relay_core::state::Mutation]) -> Vec<(String, String)> {
    use switchboard_relay_core::state::Mutation;
    mutations
        .iter()
        .filter_map(|mutation| match mutation {
            Mutation::PutEnvelope { device, envelope, .. } => {
                let sender = envelope.sender.as_ref()?.name.clone();
                state.blocked.get(&device.0).is_some_and(|blocked| blocked.contains(&sender)).then(|| (format!("{}/{}", device.0, device.1), sender))
            }
            _ => None,
        })
        .collect()
}

impl ConsentWorld {
    /// A relay stored, for a user, an envelope from someone that user's block (durable before)
    /// names.
    pub(super) fn relay_stored_blocked(&mut self, app: &str, device: &str, sender: &str) {
        self.violations.push(Violation { invariant: BLOCKED_SHOWN, detail: format!("relay {app} stored for {device} an envelope from {sender}, whom it blocked") });
    }
}

/// What the report gives of consent.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ConsentCounts {
    /// First messages strangers sent in floods.
    pub stranger_messages: u64,
    /// Messages shown as requests (from people their recipient never wrote to).
    pub requests: u64,
    /// Blocks made.
    pub blocks: u64,
    /// Envelopes relays dropped because of a block.
    pub blocked_dropped_by_relays: u64,
    /// Messages devices dropped unshown because of a block.
    pub blocked_dropped_by_devices: u64,
    /// Honest reports sent (each is verified, refused, or unanswered: the connection or the
    /// other app was down).
    pub reports: u64,
    /// Honest reports verified.
    pub reports_verified: u64,
    /// Honest reports refused (a violation).
    pub reports_refused: u64,
    /// Honest reports unanswered.
    pub reports_unanswered: u64,
    /// Forged reports sent.
    pub forged_reports: u64,
    /// Forged reports refused.
    pub forged_reports_refused: u64,
    /// Forged reports unanswered.
    pub forged_reports_unanswered: u64,
    /// Forged reports verified (a violation).
    pub forged_reports_verified: u64,
}

/// Times a report the check of which could not be made (the connection or the link to the
/// sender's app down) is made again, as its user would, [`REPORT_RETRY_US`] apart.
pub const REPORT_ATTEMPTS: u32 = 5;
pub const REPORT_RETRY_US: u64 = 2_000_000;

/// A report out at a device's relay, with what it takes to make it again.
#[derive(Clone, Debug)]
pub(super) struct Out {
    kind: ReportOut,
    evidence: switchboard_client_core::franking::Evidence,
    content: Vec<u8>,
    attempts: u32,
}

/// A report: of message `message`, or forged.
#[derive(Clone, Copy, Debug)]
pub(super) enum ReportOut {
    Honest(u64),
    /// How it was forged.
    Forged(&'static str),
}

/// The world's part of consent.
#[derive(Default)]
pub(crate) struct ConsentWorld {
    pub(super) counts: ConsentCounts,
    pub(super) violations: Vec<Violation>,
    /// Reports out, by (device, request).
    pub(super) reports_out: HashMap<(usize, u64), Out>,
    /// Reports to make again, by slot (see [`Event::ReportAgain`]).
    again: HashMap<u64, (usize, Out)>,
    next_again: u64,
    forgeries: u64,
    pub(super) blocks: Vec<Block>,
    /// The SHA-256 of every message's content, by number (kept only when reports are made).
    sent: HashMap<u64, [u8; 32]>,
}

fn content_hash(content: &[u8]) -> [u8; 32] {
    Sha256::digest(content).into()
}

impl ConsentWorld {
    /// Message `number` went out with `content`.
    pub(super) fn sent(&mut self, number: u64, content: &[u8], reports_made: bool) {
        if reports_made {
            self.sent.insert(number, content_hash(content));
        }
    }
}

impl World {
    /// Schedules the scenario's floods, blocks and reports in the traffic window.
    pub(super) fn schedule_consent(&mut self) {
        let spec = self.scenario.consent.clone();
        let window = (self.traffic_end - self.traffic_start).max(10);
        for _ in 0..spec.strangers {
            let at = self.traffic_start + self.rng.random_range(0..window / 10);
            self.schedule(at, Event::StrangerFlood);
        }
        for _ in 0..spec.blocks {
            let at = self.traffic_start + self.rng.random_range(window / 5..window * 4 / 5);
            self.schedule(at, Event::Block);
        }
        for forged in std::iter::repeat_n(false, spec.reports as usize).chain(std::iter::repeat_n(true, spec.forged_reports as usize)) {
            let at = self.traffic_start + self.rng.random_range(window / 5..window);
            self.schedule(at, Event::Report { forged });
        }
    }

    /// A stranger writes `stranger_messages` first messages at once to a user of another person
    /// it never wrote to (a plain user: the stranger is no person).
    pub(super) fn stranger_flood(&mut self) {
        let strangers: Vec<usize> = (0..self.users.len()).filter(|u| self.person_of_user[*u].is_none()).collect();
        if strangers.len() < 2 {
            return;
        }
        let stranger = strangers[self.rng.random_range(0..strangers.len())];
        let mut target = self.rng.random_range(0..self.users.len());
        while target == stranger {
            target = self.rng.random_range(0..self.users.len());
        }
        let sender = self.users[stranger].devices[0];
        for _ in 0..self.scenario.consent.stranger_messages {
            self.send_direct_between(sender, target, 64, 0);
            self.consent.counts.stranger_messages += 1;
        }
    }

    /// A device blocks the person behind the sender of a message it read lately (every account
    /// of hers it knows). Only a device whose blocks reach all its user's devices blocks: one of
    /// a person (her devices tell each other), or the only device of a user.
    pub(super) fn block_someone(&mut self) {
        let candidates: Vec<usize> = (0..self.clients.len())
            .filter(|d| !self.clients[*d].reportable.is_empty())
            .filter(|d| {
                let user = self.user_of[*d];
                self.person_of_user[user].is_some() || self.users[user].devices.len() == 1
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        let blocker = candidates[self.rng.random_range(0..candidates.len())];
        let read = &self.clients[blocker].reportable;
        let message = read[self.rng.random_range(0..read.len())].message;
        let sender = self.ledger.messages[message as usize].sender;
        let blocker_person = self.person_of_user[self.user_of[blocker]];
        if self.user_of[sender] == self.user_of[blocker] || (blocker_person.is_some() && self.person_of_user[self.user_of[sender]] == blocker_person) {
            return;
        }
        let name = self.clients[sender].address.name().to_owned();
        let mut out = Vec::new();
        self.clients[blocker].block(self.now, &name, &mut crate::harvest::Watched::new(&mut self.rng, self.harvester.as_mut()), &mut out);
        self.client_out(blocker, out);
        self.consent.counts.blocks += 1;
        let sender_user = self.user_of[sender];
        let hers: Vec<usize> = match self.person_of_user[sender_user] {
            Some(person) => (0..self.users.len()).filter(|u| self.person_of_user[*u] == Some(person)).collect(),
            None => vec![sender_user],
        };
        let known = hers.iter().copied().filter(|u| self.clients[blocker].blocks(&self.users[*u].name)).collect();
        let blocker_devices = match blocker_person {
            Some(person) => self.person_devices[person].clone(),
            None => self.users[self.user_of[blocker]].devices.clone(),
        };
        let heard_at = HashMap::from([(blocker, self.now)]);
        self.consent.blocks.push(Block { blocker_devices, known, hers, heard_at });
    }

    /// After the run: what the blocked person's accounts sent the blocker's devices may be held
    /// back — and nothing else (a block that covered someone else would show as lost mail).
    pub(crate) fn note_unwanted(&mut self) {
        for block in &self.consent.blocks {
            for &user in &block.hers {
                for &from in &self.users[user].devices {
                    for &to in &block.blocker_devices {
                        self.ledger.unwanted.insert((from, to));
                    }
                }
            }
        }
    }

    /// A device reports a message another user sent it — as it was, or forged: another content,
    /// another sender, another time, another recipient, or the other kind (group or not).
    pub(super) fn report_one(&mut self, forged: bool) {
        let from_others = |world: &World, d: usize| -> Vec<client::Reportable> {
            let me = world.clients[d].address.name();
            world.clients[d].reportable.iter().filter(|read| read.evidence.sender.name() != me).cloned().collect()
        };
        let candidates: Vec<usize> = (0..self.clients.len()).filter(|d| !from_others(self, *d).is_empty()).collect();
        if candidates.is_empty() {
            return;
        }
        let reporter = candidates[self.rng.random_range(0..candidates.len())];
        let read = from_others(self, reporter);
        let client::Reportable { message, mut evidence, mut content } = read[self.rng.random_range(0..read.len())].clone();
        let out_as = if forged {
            self.consent.forgeries += 1;
            let how = match self.consent.forgeries % 5 {
                0 => {
                    let last = content.len() - 1;
                    content[last] ^= 0x01;
                    "another content"
                }
                1 => {
                    let other = self.rng.random_range(0..self.clients.len());
                    let other = self.clients[other].address.clone();
                    if other == evidence.sender {
                        evidence.franking.stamped_at += 1;
                        "another time"
                    } else {
                        evidence.sender = other;
                        "another sender"
                    }
                }
                2 => {
                    evidence.franking.stamped_at += 1;
                    "another time"
                }
                // As if sent to someone else, or the other kind of message.
                3 => {
                    evidence.recipient = format!("x{}", evidence.recipient);
                    "another recipient"
                }
                _ => {
                    evidence.group = !evidence.group;
                    "the other kind"
                }
            };
            self.consent.counts.forged_reports += 1;
            ReportOut::Forged(how)
        } else {
            self.consent.counts.reports += 1;
            ReportOut::Honest(message)
        };
        self.make_report(reporter, Out { kind: out_as, evidence, content, attempts: 1 });
    }

    fn make_report(&mut self, reporter: usize, report: Out) {
        let (mut out, mut outcomes) = (Vec::new(), Vec::new());
        let request = self.clients[reporter].report(self.now, &report.evidence, report.content.clone(), &mut out, &mut outcomes);
        self.consent.reports_out.insert((reporter, request), report);
        self.client_out(reporter, out);
        self.outcomes(reporter, outcomes);
    }

    /// A report whose check could not be made, made again.
    pub(super) fn report_again(&mut self, slot: u64) {
        if let Some((reporter, report)) = self.consent.again.remove(&slot) {
            self.make_report(reporter, report);
        }
    }

    /// A report's answer came to `device`.
    pub(super) fn report_answered(&mut self, device: usize, request: u64, result: Result<(), RequestFailed>) {
        let Some(mut report) = self.consent.reports_out.remove(&(device, request)) else { return };
        // Unanswered: the connection or the sender's app was down. Every other failure is a refusal.
        let unanswered = matches!(result, Err(RequestFailed::Disconnected | RequestFailed::Refused(switchboard_wire::switchboard::ErrorCode::Unavailable)));
        if unanswered && report.attempts < REPORT_ATTEMPTS {
            report.attempts += 1;
            let slot = self.consent.next_again;
            self.consent.next_again += 1;
            self.consent.again.insert(slot, (device, report));
            self.schedule(self.now + REPORT_RETRY_US, Event::ReportAgain { slot });
            return;
        }
        let counts = &mut self.consent.counts;
        let refused = result.is_err() && !unanswered;
        match (report.kind, &result, refused) {
            (ReportOut::Honest(_), Ok(()), _) => counts.reports_verified += 1,
            (ReportOut::Honest(message), Err(error), true) => {
                counts.reports_refused += 1;
                self.consent.violations.push(Violation {
                    invariant: HONEST_VERIFIED,
                    detail: format!("the report of message {message} by {} was refused ({error})", self.clients[device].address),
                });
            }
            (ReportOut::Honest(_), Err(_), false) => counts.reports_unanswered += 1,
            (ReportOut::Forged(how), Ok(()), _) => {
                counts.forged_reports_verified += 1;
                self.consent.violations.push(Violation {
                    invariant: FORGED_REFUSED,
                    detail: format!("a report forged with {how} by {} was verified", self.clients[device].address),
                });
            }
            (ReportOut::Forged(_), Err(_), true) => counts.forged_reports_refused += 1,
            (ReportOut::Forged(_), Err(_), false) => counts.forged_reports_unanswered += 1,
        }
    }

    /// After `device` handled something: the blocks of its person it has now heard of.
    pub(super) fn note_heard(&mut self, device: usize) {
        for block in &mut self.consent.blocks {
            if block.blocker_devices.contains(&device)
                && !block.heard_at.contains_key(&device)
                && block.known.first().is_some_and(|user| self.clients[device].blocks(&self.users[*user].name))
            {
                block.heard_at.insert(device, self.now);
            }
        }
    }

    /// `device` read `message`: a violation if a block of its person covers the sender's account
    /// and the device had heard of it when the message was sent (anything from then on must be
    /// dropped, whichever way it comes: one to one, in a group, carried by her other devices).
    pub(super) fn check_read(&mut self, device: usize, message: u64) {
        let Some(MessageRecord { sender, sent_at_us, .. }) = self.ledger.messages.get(message as usize) else { return };
        let sender_user = self.user_of[*sender];
        let covered = self.consent.blocks.iter().any(|block| {
            block.known.contains(&sender_user) && block.heard_at.get(&device).is_some_and(|heard| *sent_at_us >= *heard)
        });
        if covered {
            self.consent.violations.push(Violation {
                invariant: BLOCKED_SHOWN,
                detail: format!("{} showed message {message} from {}, whom its person blocked", self.clients[device].address, self.users[sender_user].name),
            });
        }
    }

    /// What the report says of consent, with the violations: those seen during the run, and every
    /// report a relay kept that is not of a message sent by the sender it names with its content.
    pub(crate) fn check_consent(&self) -> (ConsentCounts, Vec<Violation>) {
        let mut counts = self.consent.counts.clone();
        let mut violations = self.consent.violations.clone();
        // Reports still out at the end: their answer was lost with a frame a link dropped (a
        // device does not time a request out; see docs/CONSENT.md).
        for out in self.consent.reports_out.values().map(|out| &out.kind).chain(self.consent.again.values().map(|(_, out)| &out.kind)) {
            match out {
                ReportOut::Honest(_) => counts.reports_unanswered += 1,
                ReportOut::Forged(_) => counts.forged_reports_unanswered += 1,
            }
        }
        for client in &self.clients {
            let stats = client.stats();
            counts.requests += stats.requests;
            counts.blocked_dropped_by_devices += stats.blocked_dropped;
        }
        for relay in &self.relays {
            counts.blocked_dropped_by_relays += relay.metrics().blocked_dropped;
            for (id, kept) in relay.disk.reports() {
                let matches = kept.report.as_ref().is_some_and(|report| {
                    let number = client::message_number(&report.content);
                    let record = number.and_then(|n| self.ledger.messages.get(n as usize));
                    let sent_as_reported = number.and_then(|n| self.consent.sent.get(&n)) == Some(&content_hash(&report.content));
                    sent_as_reported
                        && record.is_some_and(|record| {
                            let sender = &self.clients[record.sender].address;
                            let from_sender = report.sender == Some(DeviceAddress { name: sender.name().to_owned(), device_id: sender.device_id() });
                            // The reporter was one it went to: the group it names, or the user.
                            let to_reporter = record.addressed.iter().any(|d| self.clients[*d].address.name() == kept.reporter);
                            let to_as_named = match record.group {
                                Some(group) => report.group && self.groups[group].id == report.recipient,
                                None => !report.group && report.recipient == kept.reporter,
                            };
                            from_sender && to_reporter && to_as_named
                        })
                });
                if !matches {
                    violations.push(Violation { invariant: REPORT_MATCHES, detail: format!("report {id} kept by {} matches no message sent", relay.app) });
                }
            }
        }
        (counts, violations)
    }
}
