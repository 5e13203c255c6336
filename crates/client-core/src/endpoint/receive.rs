//! Deliveries: dropped if already processed, decrypted and read, or held while their sender key
//! is on its way; acknowledged once processed and durable.

use std::collections::{HashMap, HashSet};

use rand::rngs::StdRng;
use switchboard_session::{CiphertextMessage, Error as SessionError, MessageKind, ProtocolAddress};
use switchboard_wire::switchboard::{Envelope, EnvelopeKind};

use super::dedupe::SeenKey;
use super::work::Work;
use super::{Endpoint, Event, id16};
use crate::device::Received;
use crate::error::ClientError;

/// Group messages held while their sender key is on its way, in number…
pub const MAX_STALLED: usize = 10_000;
/// …and in bytes of ciphertext.
pub const MAX_STALLED_BYTES: usize = 64 * 1024 * 1024;

/// Group messages held for a key, by group. They are not acknowledged while held, so a crash
/// loses none: the relay delivers them again.
#[derive(Default)]
pub(super) struct Stalled {
    by_group: HashMap<String, Vec<Envelope>>,
    ids: HashSet<SeenKey>,
    bytes: usize,
}

impl Stalled {
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    fn contains(&self, key: &SeenKey) -> bool {
        self.ids.contains(key)
    }

    /// Holds `envelope`, unless that would pass a bound.
    fn hold(&mut self, key: SeenKey, envelope: Envelope) -> Result<(), Envelope> {
        if self.ids.len() >= MAX_STALLED || self.bytes + envelope.content.len() > MAX_STALLED_BYTES {
            return Err(envelope);
        }
        self.bytes += envelope.content.len();
        self.ids.insert(key);
        self.by_group.entry(envelope.group_id.clone()).or_default().push(envelope);
        Ok(())
    }

    fn take_group(&mut self, group: &str) -> Vec<Envelope> {
        let envelopes = self.by_group.remove(group).unwrap_or_default();
        for envelope in &envelopes {
            self.bytes -= envelope.content.len();
            if let Some(key) = seen_key(envelope) {
                self.ids.remove(&key);
            }
        }
        envelopes
    }
}

fn seen_key(envelope: &Envelope) -> Option<SeenKey> {
    let sender = envelope.sender.as_ref()?;
    Some(SeenKey { sender: ProtocolAddress::new(sender.name.clone(), sender.device_id), envelope: id16(&envelope.id) })
}

enum Processed {
    /// Read (or acted on).
    Done,
    /// Refused for good.
    Refused(ClientError),
    /// A group message whose key is not here yet.
    Stall,
}

impl Endpoint {
    pub(super) fn deliver(&mut self, envelope: Envelope, rng: &mut StdRng) {
        let Some(key) = seen_key(&envelope) else {
            self.refuse(None, &envelope, ClientError::InvalidPayload("an envelope without a sender"));
            return;
        };
        if self.seen.contains(&key) {
            self.stats.duplicates += 1;
            self.events.push_back(Event::DuplicateDropped { from: key.sender, envelope: key.envelope });
            self.ack(envelope.id);
            return;
        }
        if self.stalled.contains(&key) {
            return;
        }
        self.process(key, envelope, rng);
    }

    fn process(&mut self, key: SeenKey, envelope: Envelope, rng: &mut StdRng) {
        match self.decrypt(&key, &envelope, rng) {
            Processed::Done => {
                if let Some(forgotten) = self.seen.insert(key.clone()) {
                    if self.tracking() {
                        self.changes.seen_forgotten.push(forgotten);
                    }
                }
                if self.tracking() {
                    self.changes.seen_added.push(key);
                }
                self.changed_device();
                self.ack(envelope.id);
            }
            Processed::Refused(error) => {
                let from = key.sender;
                self.refuse(Some(from), &envelope, error);
            }
            Processed::Stall => {
                self.stats.held_for_key += 1;
                if let Err(envelope) = self.stalled.hold(key.clone(), envelope) {
                    self.refuse(Some(key.sender), &envelope, ClientError::InvalidChange("no sender key, and too many held"));
                }
            }
        }
    }

    /// Refuses `envelope` for good: acknowledged, nothing else changed.
    fn refuse(&mut self, from: Option<ProtocolAddress>, envelope: &Envelope, reason: ClientError) {
        self.stats.refused += 1;
        self.events.push_back(Event::Refused { from, envelope: id16(&envelope.id), reason });
        self.ack(envelope.id.clone());
    }

    /// Acknowledges `id` once the state that processed it is durable.
    fn ack(&mut self, id: Vec<u8>) {
        self.unreleased_acks.push_back((self.generation, id));
    }

    fn decrypt(&mut self, key: &SeenKey, envelope: &Envelope, rng: &mut StdRng) -> Processed {
        let sender = &key.sender;
        let kind = EnvelopeKind::try_from(envelope.kind).unwrap_or(EnvelopeKind::Unspecified);
        match kind {
            EnvelopeKind::SenderKeyMessage => match self.device.decrypt_group(&envelope.group_id, sender, &envelope.content) {
                Ok(content) => {
                    self.stats.group_decrypts += 1;
                    self.stats.received += 1;
                    let group = Some(envelope.group_id.clone());
                    self.events.push_back(Event::Message { from: sender.clone(), group, envelope: key.envelope, content });
                    Processed::Done
                }
                Err(ClientError::Session(SessionError::NoSenderKey { .. }) | ClientError::UnknownGroup(_) | ClientError::NotAMember { .. }) => {
                    Processed::Stall
                }
                Err(error) => Processed::Refused(error),
            },
            EnvelopeKind::PrekeyMessage | EnvelopeKind::SignalMessage => {
                let kind = if kind == EnvelopeKind::PrekeyMessage { MessageKind::PreKey } else { MessageKind::Signal };
                let message = match CiphertextMessage::parse(kind, &envelope.content) {
                    Ok(message) => message,
                    Err(error) => return Processed::Refused(error.into()),
                };
                let opens_session = kind == MessageKind::PreKey && !self.device.has_session(sender);
                let (received, responses) = match self.device.receive_pending(sender, &message, rng) {
                    Ok(done) => done,
                    Err(error) => return Processed::Refused(error),
                };
                if opens_session {
                    self.stats.sessions_accepted += 1;
                } else {
                    self.stats.pairwise_decrypts += 1;
                }
                if !responses.is_empty() {
                    self.submit(Work::Seal(responses), rng);
                }
                match received {
                    Received::Application(content) => {
                        self.stats.received += 1;
                        let group = (!envelope.group_id.is_empty()).then(|| envelope.group_id.clone());
                        self.events.push_back(Event::Message { from: sender.clone(), group, envelope: key.envelope, content });
                    }
                    Received::Group { group, epoch, change } => {
                        if let Some(change) = change {
                            self.events.push_back(Event::GroupChanged {
                                group: group.clone(),
                                epoch,
                                by: sender.clone(),
                                added: change.added,
                                removed: change.removed,
                            });
                        }
                        self.retry_stalled(&group, rng);
                    }
                    Received::RemovedFromGroup { group } => {
                        self.events.push_back(Event::RemovedFromGroup { group: group.clone() });
                        // What waited for a key of that group will never read now.
                        for held in self.stalled.take_group(&group) {
                            let from = seen_key(&held).map(|k| k.sender);
                            self.refuse(from, &held, ClientError::UnknownGroup(group.clone()));
                        }
                    }
                }
                Processed::Done
            }
            EnvelopeKind::Unspecified => Processed::Refused(ClientError::InvalidPayload("unknown envelope kind")),
        }
    }

    /// Group messages of `group` held for a key: try them again.
    fn retry_stalled(&mut self, group: &str, rng: &mut StdRng) {
        for envelope in self.stalled.take_group(group) {
            if let Some(key) = seen_key(&envelope) {
                self.process(key, envelope, rng);
            }
        }
    }
}
