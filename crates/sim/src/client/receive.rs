//! Deliveries: dropped if seen before, decrypted, read, or held while their sender key is on its
//! way; acknowledged once processed.

use rand::rngs::StdRng;
use switchboard_client::{ClientError, Received};
use switchboard_session::{CiphertextMessage, Error as SessionError, MessageKind, ProtocolAddress};
use switchboard_wire::switchboard::{Acknowledge, Envelope, EnvelopeKind, client_frame::Body};

use super::work::Work;
use super::{Client, MAX_ACKS_PER_FRAME, MAX_STALLED, OutFrame, Outcome, Phase, id16, message_number};

impl Client {
    pub(super) fn deliver(&mut self, envelope: Envelope, rng: &mut StdRng, out: &mut Vec<OutFrame>, outcomes: &mut Vec<Outcome>) {
        let id = id16(&envelope.id);
        if self.seen.contains(&id) {
            if self.show_duplicates {
                // The injected bug: the message shown again.
                if let Some(message) = self.replay_number(&envelope) {
                    outcomes.push(Outcome::Read { message, envelope: id });
                }
            }
            outcomes.push(Outcome::Duplicate { envelope: id });
            self.ack(&envelope.id, out);
            return;
        }
        if self.stalled_ids.contains(&id) {
            return;
        }
        match self.process(&envelope, rng, out, outcomes) {
            Processed::Done => {
                self.seen.insert(id);
                self.ack(&envelope.id, out);
            }
            Processed::Stall => {
                if self.stalled.len() >= MAX_STALLED {
                    self.seen.insert(id);
                    outcomes.push(Outcome::Refused { envelope: id, reason: "no sender key, and too many held" });
                    self.ack(&envelope.id, out);
                } else {
                    self.stalled_ids.insert(id);
                    self.stalled.push(envelope);
                }
            }
        }
    }

    /// The message a duplicate carried (for the injected bug only: a real client never decrypts
    /// a duplicate, so the sim reads the number from the ledger's side instead).
    fn replay_number(&self, envelope: &Envelope) -> Option<u64> {
        self.read_numbers.get(&id16(&envelope.id)).copied()
    }

    /// Acknowledgements go out together, as an app's do (see [`Client::flush_acks`]).
    fn ack(&mut self, id: &[u8], out: &mut Vec<OutFrame>) {
        self.pending_acks.push(id.to_vec());
        if self.pending_acks.len() >= MAX_ACKS_PER_FRAME {
            self.flush_acks(out);
        }
    }

    /// Acknowledges everything processed since the last call, in one frame.
    pub fn flush_acks(&mut self, out: &mut Vec<OutFrame>) {
        if !self.pending_acks.is_empty() && self.phase != Phase::Offline {
            let ids = std::mem::take(&mut self.pending_acks);
            self.frame(None, Body::Acknowledge(Acknowledge { ids }), out);
        }
    }

    fn process(&mut self, envelope: &Envelope, rng: &mut StdRng, out: &mut Vec<OutFrame>, outcomes: &mut Vec<Outcome>) -> Processed {
        let id = id16(&envelope.id);
        let Some(sender) = envelope.sender.as_ref().map(|s| ProtocolAddress::new(s.name.clone(), s.device_id)) else {
            self.refuse(id, "no sender", outcomes);
            return Processed::Done;
        };
        let kind = EnvelopeKind::try_from(envelope.kind).unwrap_or(EnvelopeKind::Unspecified);
        match kind {
            EnvelopeKind::SenderKeyMessage => match self.device.decrypt_group(&envelope.group_id, &sender, &envelope.content) {
                Ok(plaintext) => {
                    self.stats.group_decrypts += 1;
                    self.read(id, &plaintext, outcomes);
                    Processed::Done
                }
                Err(ClientError::Session(SessionError::NoSenderKey { .. }) | ClientError::UnknownGroup(_) | ClientError::NotAMember { .. }) => {
                    Processed::Stall
                }
                Err(error) => {
                    self.refuse(id, reason(&error), outcomes);
                    Processed::Done
                }
            },
            EnvelopeKind::PrekeyMessage | EnvelopeKind::SignalMessage => {
                let kind = if kind == EnvelopeKind::PrekeyMessage { MessageKind::PreKey } else { MessageKind::Signal };
                let message = match CiphertextMessage::parse(kind, &envelope.content) {
                    Ok(message) => message,
                    Err(error) => {
                        self.refuse(id, reason(&ClientError::Session(error)), outcomes);
                        return Processed::Done;
                    }
                };
                let ratchet_key = *message.ratchet_key().as_montgomery();
                let opens_session = kind == MessageKind::PreKey && !self.device.has_session(&sender);
                match self.device.receive_pending(&sender, &message, rng) {
                    Ok((received, responses)) => {
                        if opens_session {
                            self.stats.sessions_accepted += 1;
                        } else {
                            self.stats.pairwise_decrypts += 1;
                        }
                        outcomes.push(Outcome::Pairwise { from: sender, ratchet_key });
                        if !responses.is_empty() {
                            self.submit(Work::Seal(responses), rng, out);
                        }
                        match received {
                            Received::Application(plaintext) => self.read(id, &plaintext, outcomes),
                            Received::Group { group, .. } => self.retry_stalled(&group, rng, out, outcomes),
                            Received::RemovedFromGroup { group } => outcomes.push(Outcome::Removed { group }),
                        }
                        Processed::Done
                    }
                    Err(error) => {
                        self.refuse(id, reason(&error), outcomes);
                        Processed::Done
                    }
                }
            }
            EnvelopeKind::Unspecified => {
                self.refuse(id, "unknown kind", outcomes);
                Processed::Done
            }
        }
    }

    fn read(&mut self, id: [u8; 16], plaintext: &[u8], outcomes: &mut Vec<Outcome>) {
        match message_number(plaintext) {
            Some(message) => {
                if self.show_duplicates {
                    self.read_numbers.insert(id, message);
                }
                outcomes.push(Outcome::Read { message, envelope: id });
            }
            None => self.refuse(id, "content does not decode", outcomes),
        }
    }

    fn refuse(&mut self, id: [u8; 16], reason: &'static str, outcomes: &mut Vec<Outcome>) {
        outcomes.push(Outcome::Refused { envelope: id, reason });
    }

    /// Group messages of `group` held for a key: try them again.
    fn retry_stalled(&mut self, group: &str, rng: &mut StdRng, out: &mut Vec<OutFrame>, outcomes: &mut Vec<Outcome>) {
        let (ours, rest): (Vec<Envelope>, Vec<Envelope>) = std::mem::take(&mut self.stalled).into_iter().partition(|e| e.group_id == group);
        self.stalled = rest;
        for envelope in ours {
            let id = id16(&envelope.id);
            self.stalled_ids.remove(&id);
            match self.process(&envelope, rng, out, outcomes) {
                Processed::Done => {
                    self.seen.insert(id);
                    self.ack(&envelope.id, out);
                }
                Processed::Stall => {
                    self.stalled_ids.insert(id);
                    self.stalled.push(envelope);
                }
            }
        }
    }
}

enum Processed {
    Done,
    Stall,
}

fn reason(error: &ClientError) -> &'static str {
    match error {
        ClientError::Session(SessionError::Duplicate { .. }) => "duplicate",
        ClientError::Session(SessionError::InvalidMessage(_)) => "invalid message",
        ClientError::Session(SessionError::NoSession { .. }) => "no session",
        ClientError::Session(SessionError::UntrustedIdentity { .. }) => "untrusted identity",
        ClientError::Session(_) => "session error",
        ClientError::Decode(_) => "payload does not decode",
        ClientError::InvalidPayload(_) => "invalid payload",
        ClientError::UnknownGroup(_) => "unknown group",
        ClientError::NotAMember { .. } => "not a member",
        ClientError::InvalidChange(_) => "invalid change",
        ClientError::NoBundle(_) => "no bundle",
    }
}
