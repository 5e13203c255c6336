//! Deliveries: dropped if already processed, decrypted and read, or held while their sender key
//! is on its way; acknowledged once processed and durable.

use rand_core::CryptoRng;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use switchboard_session::{CiphertextMessage, Error as SessionError, MessageKind, ProtocolAddress};
use switchboard_wire::Bytes;
use switchboard_wire::decode;
use switchboard_wire::switchboard::{Envelope, EnvelopeKind, EnvelopeRef, Franking, GroupPayload};

use super::dedupe::SeenKey;
use super::work::Work;
use super::{Endpoint, Event, id16};
use crate::device::Received;
use crate::error::ClientError;
use crate::franking::Evidence;

/// Group messages held while their sender key is on its way, in number (well below a relay's
/// mailbox quota: held messages stay in the mailbox until read)…
pub const MAX_STALLED: usize = 2_000;
/// …per sender…
pub const MAX_STALLED_PER_SENDER: usize = 256;
/// …and in bytes (ciphertext, group id and envelope id).
pub const MAX_STALLED_BYTES: usize = 32 * 1024 * 1024;
/// How long a group message is held for its key; then it is refused (and acknowledged).
pub const MAX_STALL: Duration = Duration::from_secs(600);
/// Longest envelope id acknowledged; a longer one is refused and left to the relay (ids are 16
/// bytes; an acknowledgement must fit in a frame).
pub const MAX_ENVELOPE_ID_LEN: usize = 64;

struct Held {
    envelope: Envelope,
    sender: ProtocolAddress,
    key: SeenKey,
    since: Duration,
}

fn held_bytes(envelope: &Envelope) -> usize {
    envelope.content.len() + envelope.group_id.len() + envelope.id.len()
}

/// Group messages held for a key, by group. They are not acknowledged while held, so a crash
/// loses none: the relay delivers them again.
#[derive(Default)]
pub(super) struct Stalled {
    by_group: HashMap<String, Vec<Held>>,
    ids: HashSet<SeenKey>,
    per_sender: HashMap<ProtocolAddress, usize>,
    /// (held since, key), oldest first, for expiry.
    ages: VecDeque<(Duration, SeenKey)>,
    bytes: usize,
}

impl Stalled {
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    fn contains(&self, key: &SeenKey) -> bool {
        self.ids.contains(key)
    }

    /// When the oldest held message expires.
    pub(super) fn next_expiry(&self) -> Option<Duration> {
        self.ages.front().map(|(since, _)| *since + MAX_STALL)
    }

    /// Holds `held`, unless that would pass a bound: then it comes back with the bound it would
    /// pass. (`again`: it was held before and its age is still tracked.)
    fn hold(&mut self, held: Held, again: bool) -> Result<(), (Held, ClientError)> {
        let count = self.per_sender.get(&held.sender).copied().unwrap_or(0);
        let bytes = held_bytes(&held.envelope);
        let full = |what, limit| ClientError::LimitExceeded { what, limit };
        if self.ids.len() >= MAX_STALLED {
            return Err((held, full("group messages held for their sender key", MAX_STALLED)));
        }
        if count >= MAX_STALLED_PER_SENDER {
            return Err((held, full("group messages from one sender held for its key", MAX_STALLED_PER_SENDER)));
        }
        if self.bytes + bytes > MAX_STALLED_BYTES {
            return Err((held, full("bytes of group messages held for their sender key", MAX_STALLED_BYTES)));
        }
        self.bytes += bytes;
        self.ids.insert(held.key);
        *self.per_sender.entry(held.sender.clone()).or_default() += 1;
        if !again {
            self.ages.push_back((held.since, held.key));
        }
        self.by_group.entry(held.envelope.group_id.clone()).or_default().push(held);
        Ok(())
    }

    fn take_group(&mut self, group: &str) -> Vec<Held> {
        let held = self.by_group.remove(group).unwrap_or_default();
        for one in &held {
            self.forget(one);
        }
        held
    }

    fn forget(&mut self, held: &Held) {
        self.bytes -= held_bytes(&held.envelope);
        self.ids.remove(&held.key);
        if let Some(count) = self.per_sender.get_mut(&held.sender) {
            *count -= 1;
            if *count == 0 {
                self.per_sender.remove(&held.sender);
            }
        }
    }

    /// Takes every message held since `now - MAX_STALL` or earlier.
    fn take_expired(&mut self, now: Duration) -> Vec<Held> {
        let mut expired = HashSet::new();
        while let Some((since, key)) = self.ages.front() {
            if *since + MAX_STALL > now {
                break;
            }
            // Entries already taken (read once their key came) are skipped here.
            if self.ids.contains(key) {
                expired.insert(*key);
            }
            self.ages.pop_front();
        }
        if expired.is_empty() {
            return Vec::new();
        }
        let mut taken = Vec::new();
        for held in self.by_group.values_mut() {
            let (out, keep): (Vec<Held>, Vec<Held>) = std::mem::take(held).into_iter().partition(|h| expired.contains(&h.key));
            *held = keep;
            taken.extend(out);
        }
        self.by_group.retain(|_, held| !held.is_empty());
        for held in &taken {
            self.forget(held);
        }
        taken
    }
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
    pub(super) fn deliver(&mut self, mut envelope: Envelope, rng: &mut (impl CryptoRng + ?Sized)) {
        // Taken, not copied: the sender travels beside the envelope from here on.
        let Some(sender) = envelope.sender.take().map(|s| ProtocolAddress::new(s.name, s.device_id)) else {
            self.refuse(None, &envelope, ClientError::InvalidPayload("an envelope without a sender"));
            return;
        };
        if envelope.id.len() != 16 {
            self.refuse(Some(sender), &envelope, ClientError::InvalidPayload("an envelope id is 16 bytes"));
            return;
        }
        let key = SeenKey::of(&sender, &envelope.id);
        if self.seen.contains(&key) {
            self.stats.duplicates += 1;
            self.ack(Some(&sender), envelope.id.clone());
            self.events.push_back(Event::DuplicateDropped { from: sender, envelope: id16(&envelope.id) });
            return;
        }
        if self.stalled.contains(&key) {
            return;
        }
        self.process(sender, key, envelope, None, rng);
    }

    /// `held_since`: when it was first held, for a held message tried again.
    fn process(&mut self, sender: ProtocolAddress, key: SeenKey, mut envelope: Envelope, held_since: Option<Duration>, rng: &mut (impl CryptoRng + ?Sized)) {
        match self.decrypt(&sender, &mut envelope, rng) {
            Processed::Done => {
                if let Some(forgotten) = self.seen.insert(key) {
                    if self.tracking() {
                        self.changes.seen_forgotten.push(forgotten);
                    }
                }
                if self.tracking() {
                    self.changes.seen_added.push(key);
                }
                self.changed_device();
                self.ack(Some(&sender), envelope.id.clone());
            }
            Processed::Refused(error) => {
                if let ClientError::Downgrade { .. } = error {
                    self.start_session_back(&sender, rng);
                }
                self.refuse(Some(sender), &envelope, error)
            }
            Processed::Stall => {
                if held_since.is_none() {
                    self.stats.held_for_key += 1;
                }
                let held = Held { envelope, sender, key, since: held_since.unwrap_or(self.now) };
                if let Err((held, full)) = self.stalled.hold(held, held_since.is_some()) {
                    self.refuse(Some(held.sender), &held.envelope, full);
                }
            }
        }
    }

    /// `sender` started a session under a weaker suite than both accept, and it was refused: it
    /// would go on writing over that session, to no avail. This device starts one the other way,
    /// from `sender`'s bundle as it reaches it (a path that strips bundles on the way to
    /// `sender` may well leave this one whole): once per peer (at most [`super::MAX_SESSIONS_STARTED_BACK`]
    /// peers), so that two devices behind such paths do not answer each other for ever.
    fn start_session_back(&mut self, sender: &ProtocolAddress, rng: &mut (impl CryptoRng + ?Sized)) {
        if self.started_back.len() >= super::MAX_SESSIONS_STARTED_BACK || !self.started_back.insert(sender.clone()) {
            return;
        }
        self.stats.sessions_started_back += 1;
        self.submit(Work::Seal(vec![crate::PendingSend::session_start(sender.clone())]), rng);
    }

    /// Refuses `envelope` for good: acknowledged (unless its id could not be), nothing else
    /// changed.
    fn refuse(&mut self, from: Option<ProtocolAddress>, envelope: &Envelope, reason: ClientError) {
        self.stats.refused += 1;
        if envelope.id.len() <= MAX_ENVELOPE_ID_LEN {
            self.ack(from.as_ref(), envelope.id.clone());
        }
        self.events.push_back(Event::Refused { from, envelope: id16(&envelope.id), reason });
    }

    /// Acknowledges the envelope `id` from `sender` once the state that processed it is durable.
    fn ack(&mut self, sender: Option<&ProtocolAddress>, id: Bytes) {
        let envelope = EnvelopeRef { sender: sender.map(crate::wire_address), id };
        self.unreleased_acks.push_back((self.generation, envelope));
    }

    /// Held messages past [`MAX_STALL`]: their key is not coming.
    pub(super) fn expire_stalled(&mut self) {
        for held in self.stalled.take_expired(self.now) {
            let error = ClientError::Session(SessionError::NoSenderKey { sender: held.sender.to_string() });
            self.refuse(Some(held.sender), &held.envelope, error);
        }
    }

    /// Decrypts and acts on `envelope`; on success its group id may have been moved out.
    fn decrypt(&mut self, sender: &ProtocolAddress, envelope: &mut Envelope, rng: &mut (impl CryptoRng + ?Sized)) -> Processed {
        let kind = EnvelopeKind::try_from(envelope.kind).unwrap_or(EnvelopeKind::Unspecified);
        let id = id16(&envelope.id);
        match kind {
            EnvelopeKind::SenderKeyMessage if envelope.channel => match self.device.decrypt_channel(&envelope.group_id, sender, &envelope.content) {
                Ok(plaintext) => {
                    self.stats.group_decrypts += 1;
                    let Ok(payload) = decode::<GroupPayload>(&plaintext, switchboard_wire::limits::MAX_PAYLOAD_LEN) else {
                        return Processed::Refused(ClientError::InvalidPayload("a channel post that is not a group payload"));
                    };
                    let channel = std::mem::take(&mut envelope.group_id);
                    match self.channel_post(sender, channel, id, payload, envelope.franking.take()) {
                        Ok(()) => Processed::Done,
                        Err(error) => Processed::Refused(error),
                    }
                }
                // The admin's key may be on its way (asked for on following).
                Err(ClientError::Session(SessionError::NoSenderKey { .. })) => Processed::Stall,
                // An admin named after this device followed: the channel's app is asked again
                // (and the new admins for their keys); the post waits meanwhile.
                Err(ClientError::NotAnAdmin { .. }) if self.device.channels().admins_of(&envelope.group_id).is_some() => {
                    self.refresh_channel(&envelope.group_id);
                    Processed::Stall
                }
                Err(error) => Processed::Refused(error),
            },
            EnvelopeKind::SenderKeyMessage => match self.device.decrypt_group(&envelope.group_id, sender, &envelope.content) {
                Ok(plaintext) => {
                    self.stats.group_decrypts += 1;
                    let Ok(payload) = decode::<GroupPayload>(&plaintext, switchboard_wire::limits::MAX_PAYLOAD_LEN) else {
                        return Processed::Refused(ClientError::InvalidPayload("a group message that is not a group payload"));
                    };
                    let group = std::mem::take(&mut envelope.group_id);
                    let franking = ((group.clone(), true), envelope.franking.take(), payload.franking_key);
                    self.arrived(sender, Some(group), id, franking, (payload.application, None), &[], rng)
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
                let without_prekey = matches!(&message, CiphertextMessage::PreKey(first) if first.prekey_id().is_none());
                let result = self.device.receive_pending(sender, &message, rng);
                for fork in self.device.take_forks() {
                    if let ClientError::GroupFork { group, epoch, from } = fork {
                        self.events.push_back(Event::GroupForked { group, epoch, from });
                    }
                }
                let (received, responses) = match result {
                    Ok(done) => done,
                    Err(error) => return Processed::Refused(error),
                };
                if opens_session {
                    self.stats.sessions_accepted += 1;
                    self.stats.sessions_without_one_time_prekey += u64::from(without_prekey);
                } else {
                    self.stats.pairwise_decrypts += 1;
                }
                if !responses.is_empty() {
                    self.submit(Work::Seal(responses), rng);
                }
                // The relay stamps a one-to-one message (and one of a group sent pairwise) for the
                // user it is addressed to: this one.
                let me = (self.address().name().to_owned(), false);
                match received {
                    Received::Application { content, franking_key, agent } => {
                        let group = (!envelope.group_id.is_empty()).then(|| std::mem::take(&mut envelope.group_id));
                        return self.arrived(sender, group, id, (me, envelope.franking.take(), franking_key), (content, agent), &[], rng);
                    }
                    Received::PersonMessage { content, delivered_to, franking_key } => {
                        return self.arrived(sender, None, id, (me, envelope.franking.take(), franking_key), (content, None), &delivered_to, rng);
                    }
                    Received::ChannelFollower { channel } => self.events.push_back(Event::ChannelFollower { channel, follower: sender.clone() }),
                    Received::ChannelKey { channel } => self.retry_stalled(&channel, rng),
                    Received::ChannelReply { channel, content } => {
                        if !self.is_blocked(sender.name()) {
                            self.events.push_back(Event::ChannelReply { channel, from: sender.clone(), content });
                        }
                    }
                    Received::BusinessRoster { listed } => self.events.push_back(Event::AgentsChanged { listed }),
                    Received::Assigned { customer, agent_device, handover } => self.events.push_back(Event::Assigned { customer, agent_device, handover }),
                    Received::Consent(change) => self.tell_relay(&change),
                    Received::Transcript(transcript) => self.transcript_arrived(sender, transcript, id),
                    Received::OwnRecord { changed } => {
                        if changed {
                            self.events.push_back(Event::LinksChanged);
                            // Her contacts hear of it from every device of hers that learns it.
                            self.person_changed(rng);
                        }
                    }
                    Received::PersonRecord { person_key, changed, from_own } => {
                        if changed {
                            self.events.push_back(Event::PersonKnown { person_key, via: sender.clone() });
                            if !from_own {
                                self.share_known_person(&person_key, sender.name(), rng);
                            }
                        }
                    }
                    Received::Group { group, epoch, change } => {
                        if let (Some(change), Some(now)) = (change, self.device.group(&group)) {
                            self.events.push_back(Event::GroupChanged {
                                group: group.clone(),
                                epoch,
                                by: sender.clone(),
                                added: change.added,
                                removed: change.removed,
                                state: *now.hash(),
                            });
                        }
                        self.retry_stalled(&group, rng);
                        self.resync_behind(rng);
                    }
                    // What waits for a key of that group stays held (until MAX_STALL): the news
                    // of this device's return may be on its way, behind that of its removal.
                    Received::SessionStarted => {}
                    Received::AwaitingHub { group, epoch } => self.fetch_head(&group, epoch),
                    Received::RemovedFromGroup { group } => self.events.push_back(Event::RemovedFromGroup { group }),
                }
                Processed::Done
            }
            EnvelopeKind::Unspecified => Processed::Refused(ClientError::InvalidPayload("unknown envelope kind")),
        }
    }

    /// An application's message from `sender` (to `group`, if a group's), whose franking is the
    /// recipient its stamp must name, the envelope's commitment and the payload's key: shown,
    /// unless its sender is blocked (then dropped unshown, and not carried on), or refused if it
    /// does not open its commitment.
    #[allow(clippy::too_many_arguments)]
    fn arrived(
        &mut self,
        sender: &ProtocolAddress,
        group: Option<String>,
        envelope: [u8; 16],
        ((recipient, to_group), franking, franking_key): ((String, bool), Option<Franking>, Vec<u8>),
        (content, agent): (Vec<u8>, Option<String>),
        delivered_to: &[String],
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Processed {
        if self.is_blocked(sender.name()) {
            self.stats.blocked_dropped += 1;
            return Processed::Done;
        }
        let evidence = match Evidence::check(sender, (&recipient, to_group), franking.as_ref(), &franking_key, &content) {
            Ok(evidence) => evidence,
            Err(error) => return Processed::Refused(error),
        };
        self.stats.received += 1;
        self.carry_on(sender, group.as_deref(), &content, delivered_to, rng);
        // A group's message is no request if the group is one this device is in, with the sender
        // a member: a stranger who names a group does not pass for one.
        let in_group = group.as_deref().and_then(|id| self.device.group(id)).is_some_and(|g| g.members().contains(sender));
        let request = !in_group && self.is_request(sender.name());
        self.stats.requests += u64::from(request);
        if group.is_none() {
            self.business_received(sender);
        }
        self.events.push_back(Event::Message { from: sender.clone(), group, envelope, content, request, evidence: Box::new(evidence), agent });
        Processed::Done
    }

    /// Group messages of `group` held for a key: try them again.
    pub(super) fn retry_stalled(&mut self, group: &str, rng: &mut (impl CryptoRng + ?Sized)) {
        for held in self.stalled.take_group(group) {
            self.process(held.sender, held.key, held.envelope, Some(held.since), rng);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(sender: &ProtocolAddress, n: u32, content: usize) -> Held {
        let envelope = Envelope { id: n.to_be_bytes().to_vec().into(), group_id: "g@x".into(), content: vec![0; content].into(), ..Default::default() };
        Held { key: SeenKey::of(sender, &envelope.id), envelope, sender: sender.clone(), since: Duration::ZERO }
    }

    #[test]
    fn held_messages_past_a_bound_come_back_with_that_bound() {
        let mut stalled = Stalled::default();
        let flooder = ProtocolAddress::new("flooder@x".to_owned(), 1);
        for n in 0..MAX_STALLED_PER_SENDER as u32 {
            assert!(stalled.hold(held(&flooder, n, 10), false).is_ok());
        }
        let Err((_, refused)) = stalled.hold(held(&flooder, u32::MAX, 10), false) else { panic!("held past the bound") };
        assert_eq!(refused, ClientError::LimitExceeded { what: "group messages from one sender held for its key", limit: MAX_STALLED_PER_SENDER });
        assert_eq!(stalled.len(), MAX_STALLED_PER_SENDER, "the refused one is not held");

        let big = ProtocolAddress::new("big@x".to_owned(), 1);
        let Err((_, refused)) = stalled.hold(held(&big, 0, MAX_STALLED_BYTES), false) else { panic!("held past the bound") };
        assert_eq!(refused, ClientError::LimitExceeded { what: "bytes of group messages held for their sender key", limit: MAX_STALLED_BYTES });
    }
}
