//! A stolen device: at the theft, the device's whole state is copied. The thief is then handed
//! every envelope addressed to that device during the whole run (as a relay colluding with it
//! could) and runs the device's own client on the stolen state to read what it can.
//!
//! Each message to the device falls in one bucket:
//! - *read before the theft*: the device had processed it; forward secrecy says the thief reads
//!   none of these;
//! - *in flight at the theft*: sent before, processed after; readable by design (its keys were
//!   in the state);
//! - *1:1, before healing*: sent after the theft, before the peer processed a message under a
//!   ratchet key the device made after the theft; readable by design;
//! - *1:1, after healing*: sent after that ratchet turn; the Double Ratchet says none readable;
//! - *group, after the theft*: Sender Keys do not heal until the sender rotates its key (on a
//!   removal), so these are reported, not judged.
//!
//! What the device itself sent is not attempted (the thief would need to re-derive its own
//! sending chain; the client has no API for that).

// Keyed by the simulator's own indices and ids, never by hostile input: an unkeyed hash will do.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use rand::rngs::StdRng;
use serde::Serialize;
use switchboard_client_core::{Device, Received};
use switchboard_session::{CiphertextMessage, MessageKind, ProtocolAddress};
use switchboard_wire::switchboard::{Envelope, EnvelopeKind};

use crate::client::{Client, message_number};
use crate::ledger::{Ledger, Violation};

/// Envelopes captured for one victim, at most.
pub const MAX_CAPTURED: usize = 1_000_000;

pub struct Thief {
    pub victim: usize,
    pub at_us: u64,
    stolen: Option<Device>,
    /// Per peer, every ratchet key the victim had sent under by the theft, and its current one:
    /// keys the thief knows (or may); any other is one the victim made after the theft.
    stolen_keys: HashMap<ProtocolAddress, HashSet<[u8; 32]>>,
    captured: Vec<Envelope>,
    captured_ids: HashSet<switchboard_wire::Bytes>,
    read_before: HashSet<u64>,
    /// Per peer device, when it first processed a message under a ratchet key the victim made
    /// after the theft.
    healed_at: HashMap<usize, u64>,
}

/// How many messages of one bucket there were, and how many the thief read.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Bucket {
    /// The bucket: `read before the theft`, `in flight at the theft`, `1:1, before healing`, `1:1, after healing` or `group, after the theft` (see the module's doc).
    pub bucket: &'static str,
    /// Messages to the device in it.
    pub messages: u64,
    /// Of those, the ones the thief read.
    pub readable: u64,
}

/// What the thief of one device could read.
#[derive(Clone, Debug, Serialize)]
pub struct TheftReport {
    /// The stolen device (`alice@green/1`).
    pub device: String,
    /// When its state was copied, in seconds from the start of the run.
    pub at_s: f64,
    /// Whether the theft happened (the run may end first).
    pub stolen: bool,
    /// What the thief read, bucket by bucket.
    pub buckets: Vec<Bucket>,
}

impl Thief {
    pub fn new(victim: usize, at_us: u64) -> Thief {
        Thief {
            victim,
            at_us,
            stolen: None,
            stolen_keys: HashMap::default(),
            captured: Vec::new(),
            captured_ids: HashSet::default(),
            read_before: HashSet::default(),
            healed_at: HashMap::default(),
        }
    }

    /// The theft: a copy of everything the device holds.
    pub fn steal(&mut self, client: &Client) {
        let device = client.device();
        self.stolen = Device::restore(&device.snapshot()).ok();
        self.stolen_keys = client.sending_keys.clone().unwrap_or_default();
        for peer in device.known_devices() {
            if let Some(key) = device.sending_ratchet_key(peer) {
                self.stolen_keys.entry(peer.clone()).or_default().insert(*key.as_montgomery());
            }
        }
    }

    pub fn capture(&mut self, envelope: Envelope, _now_us: u64) {
        if self.captured.len() < MAX_CAPTURED && self.captured_ids.insert(envelope.id.clone()) {
            self.captured.push(envelope);
        }
    }

    pub fn victim_read(&mut self, message: u64, now_us: u64) {
        if now_us < self.at_us {
            self.read_before.insert(message);
        }
    }

    /// `peer` processed a pairwise message from the victim sent under `ratchet_key`.
    pub fn peer_processed(&mut self, peer: usize, peer_address: &ProtocolAddress, ratchet_key: [u8; 32], now_us: u64) {
        if self.stolen.is_none() || now_us < self.at_us || self.healed_at.contains_key(&peer) {
            return;
        }
        if !self.stolen_keys.get(peer_address).is_some_and(|known| known.contains(&ratchet_key)) {
            self.healed_at.insert(peer, now_us);
        }
    }

    /// Runs the stolen state over every captured envelope; buckets the victim's messages.
    pub fn analyze(&mut self, ledger: &Ledger, name: &dyn Fn(usize) -> String, rng: &mut StdRng) -> (TheftReport, Vec<Violation>) {
        let mut report = TheftReport { device: name(self.victim), at_s: self.at_us as f64 / 1e6, stolen: self.stolen.is_some(), buckets: Vec::new() };
        let Some(thief) = self.stolen.as_mut() else { return (report, Vec::new()) };
        let mut readable = HashSet::default();
        for envelope in &self.captured {
            let Some(sender) = envelope.sender.as_ref().map(|s| ProtocolAddress::new(s.name.clone(), s.device_id)) else { continue };
            let plaintext = match EnvelopeKind::try_from(envelope.kind) {
                Ok(EnvelopeKind::SenderKeyMessage) => thief
                    .decrypt_group(&envelope.group_id, &sender, &envelope.content)
                    .ok()
                    .and_then(|plaintext| switchboard_wire::decode::<switchboard_wire::switchboard::GroupPayload>(&plaintext, usize::MAX).ok())
                    .map(|payload| payload.application),
                Ok(kind @ (EnvelopeKind::PrekeyMessage | EnvelopeKind::SignalMessage)) => {
                    let kind = if kind == EnvelopeKind::PrekeyMessage { MessageKind::PreKey } else { MessageKind::Signal };
                    CiphertextMessage::parse(kind, &envelope.content).ok().and_then(|message| match thief.receive_pending(&sender, &message, rng) {
                        Ok((Received::Application { content, .. }, _)) => Some(content),
                        _ => None,
                    })
                }
                _ => None,
            };
            if let Some(number) = plaintext.as_deref().and_then(message_number) {
                readable.insert(number);
            }
        }
        const NAMES: [&str; 5] = ["read before the theft", "in flight at the theft", "1:1, before healing", "1:1, after healing", "group, after the theft"];
        let mut buckets: Vec<Bucket> = NAMES.iter().map(|bucket| Bucket { bucket, messages: 0, readable: 0 }).collect();
        let mut violations = Vec::new();
        for (number, record) in ledger.messages.iter().enumerate() {
            let number = number as u64;
            if !record.addressed.contains(&self.victim) {
                continue;
            }
            let bucket = if self.read_before.contains(&number) {
                0
            } else if record.sent_at_us < self.at_us {
                1
            } else if record.group.is_some() {
                4
            } else if self.healed_at.get(&record.sender).is_some_and(|healed| record.sent_at_us >= *healed) {
                3
            } else {
                2
            };
            buckets[bucket].messages += 1;
            if readable.contains(&number) {
                buckets[bucket].readable += 1;
                if bucket == 0 || bucket == 3 {
                    violations.push(Violation {
                        invariant: if bucket == 0 { "forward secrecy" } else { "healing after compromise" },
                        detail: format!("the thief of {} read message {number} ({})", name(self.victim), NAMES[bucket]),
                    });
                }
            }
        }
        report.buckets = buckets;
        (report, violations)
    }
}
