//! Consent in a scenario (`[consent]`): strangers who flood someone with first messages, users
//! who block the person behind someone who wrote to them, and abuse reports, honest and forged.
//! What the report checks of them: no device that holds a block shows a message from a blocked
//! address; every report a relay kept (verified) is of a message that was sent, by the sender it
//! names, with the content it gives; every forged report is refused.

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

/// What the report gives of consent.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ConsentCounts {
    /// First messages strangers sent in floods; messages shown as requests.
    pub stranger_messages: u64,
    pub requests: u64,
    /// Blocks made; envelopes relays dropped for them; messages devices dropped unshown.
    pub blocks: u64,
    pub blocked_dropped_by_relays: u64,
    pub blocked_dropped_by_devices: u64,
    /// Honest reports sent, verified, refused, unanswered (the connection or the other app was
    /// down).
    pub reports: u64,
    pub reports_verified: u64,
    pub reports_refused: u64,
    pub reports_unanswered: u64,
    /// Forged reports sent, refused, and verified (a violation).
    pub forged_reports: u64,
    pub forged_reports_refused: u64,
    pub forged_reports_verified: u64,
}

/// A report out at a device's relay: of message `message`, or forged.
#[derive(Clone, Copy, Debug)]
pub(super) enum ReportOut {
    Honest(u64),
    Forged,
}

/// The world's part of consent.
#[derive(Default)]
pub(crate) struct ConsentWorld {
    pub(super) counts: ConsentCounts,
    pub(super) violations: Vec<Violation>,
    /// Reports out, by (device, request).
    pub(super) reports_out: HashMap<(usize, u64), ReportOut>,
    forgeries: u64,
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
    }

    /// After the run: what each device's person blocked (every account of the blocked person it
    /// knows by then) is not expected to reach it.
    pub(crate) fn note_unwanted(&mut self) {
        if self.consent.counts.blocks == 0 {
            return;
        }
        for to in 0..self.clients.len() {
            for from in 0..self.clients.len() {
                if self.clients[to].blocks(self.clients[from].address.name()) {
                    self.ledger.unwanted.insert((from, to));
                }
            }
        }
    }

    /// A device reports a message it read — as it was, or forged: another content, another
    /// sender, or another time.
    pub(super) fn report_one(&mut self, forged: bool) {
        let candidates: Vec<usize> = (0..self.clients.len()).filter(|d| !self.clients[*d].reportable.is_empty()).collect();
        if candidates.is_empty() {
            return;
        }
        let reporter = candidates[self.rng.random_range(0..candidates.len())];
        let read = &self.clients[reporter].reportable;
        let client::Reportable { message, mut evidence, mut content } = read[self.rng.random_range(0..read.len())].clone();
        let out_as = if forged {
            self.consent.forgeries += 1;
            match self.consent.forgeries % 3 {
                0 => {
                    let last = content.len() - 1;
                    content[last] ^= 0x01;
                }
                1 => {
                    let other = self.rng.random_range(0..self.clients.len());
                    let other = self.clients[other].address.clone();
                    if other == evidence.sender {
                        evidence.franking.stamped_at += 1;
                    } else {
                        evidence.sender = other;
                    }
                }
                _ => evidence.franking.stamped_at += 1,
            }
            self.consent.counts.forged_reports += 1;
            ReportOut::Forged
        } else {
            self.consent.counts.reports += 1;
            ReportOut::Honest(message)
        };
        let (mut out, mut outcomes) = (Vec::new(), Vec::new());
        let request = self.clients[reporter].report(self.now, &evidence, content, &mut out, &mut outcomes);
        self.consent.reports_out.insert((reporter, request), out_as);
        self.client_out(reporter, out);
        self.outcomes(reporter, outcomes);
    }

    /// A report's answer came to `device`.
    pub(super) fn report_answered(&mut self, device: usize, request: u64, result: Result<(), RequestFailed>) {
        let Some(out_as) = self.consent.reports_out.remove(&(device, request)) else { return };
        let counts = &mut self.consent.counts;
        let refused = matches!(result, Err(RequestFailed::Refused(code)) if code == switchboard_wire::switchboard::ErrorCode::Forbidden || code == switchboard_wire::switchboard::ErrorCode::Malformed);
        match (out_as, result.is_ok(), refused) {
            (ReportOut::Honest(_), true, _) => counts.reports_verified += 1,
            (ReportOut::Honest(message), false, true) => {
                counts.reports_refused += 1;
                self.consent.violations.push(Violation {
                    invariant: HONEST_VERIFIED,
                    detail: format!("the report of message {message} by {} was refused", self.clients[device].address),
                });
            }
            (ReportOut::Honest(_), false, false) => counts.reports_unanswered += 1,
            (ReportOut::Forged, true, _) => {
                counts.forged_reports_verified += 1;
                self.consent.violations.push(Violation { invariant: FORGED_REFUSED, detail: format!("a forged report by {} was verified", self.clients[device].address) });
            }
            (ReportOut::Forged, false, _) => counts.forged_reports_refused += 1,
        }
    }

    /// `device` read `message`: a violation if it holds a block of its sender.
    pub(super) fn check_read(&mut self, device: usize, message: u64) {
        let Some(MessageRecord { sender, .. }) = self.ledger.messages.get(message as usize) else { return };
        let name = self.clients[*sender].address.name().to_owned();
        if self.clients[device].blocks(&name) {
            self.consent.violations.push(Violation {
                invariant: BLOCKED_SHOWN,
                detail: format!("{} showed message {message} from {name}, whom it blocked", self.clients[device].address),
            });
        }
    }

    /// What the report says of consent, with the violations: those seen during the run, and every
    /// report a relay kept that is not of a message sent by the sender it names with its content.
    pub(crate) fn check_consent(&self) -> (ConsentCounts, Vec<Violation>) {
        let mut counts = self.consent.counts.clone();
        let mut violations = self.consent.violations.clone();
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
                            report.sender == Some(DeviceAddress { name: sender.name().to_owned(), device_id: sender.device_id() })
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
