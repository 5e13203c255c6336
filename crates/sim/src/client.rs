//! One simulated device: the client core's [`Endpoint`] — the very state machine the app runs —
//! under an adapter that feeds it the virtual network and clock, and turns what it reports into
//! what the simulator's observers need (the ledger's reads, refusals and membership changes, the
//! thief's ratchet keys, the trace's frame labels). No client duty is written here.

// Keyed by the simulator's own indices and ids, never by hostile input: an unkeyed hash will do.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::time::Duration;

use rand_core::CryptoRng;
use switchboard_client_core::endpoint::{Credential, EndpointConfig, EndpointStats, GroupStrategy as Strategy, Member, Storage, Transmit};
use switchboard_client_core::{ClientError, Device, Endpoint, Event};
use switchboard_session::{CiphertextMessage, Error as SessionError, MessageKind, ProtocolAddress, Suite};
use switchboard_wire::switchboard::{ClientFrame, Content, EnvelopeKind, ServerFrame, Visibility, client_frame, server_frame};
use switchboard_wire::{Message, decode, limits};

use crate::scenario::{GroupStrategy, Scenario};

/// Bytes every plaintext starts with, so that a relay that sees one is caught by a search.
pub const PLAINTEXT_CANARY: &str = "\u{0}sb-plaintext-canary\u{0}";

/// A frame for the relay, with what it is (for the trace).
pub type OutFrame = Transmit;

/// A membership change this device made, with the epoch it made.
#[derive(Clone, Debug)]
pub struct Change {
    pub group: String,
    pub member: ProtocolAddress,
    pub epoch: u64,
    pub added: bool,
}

/// What a device made of one delivered envelope.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A message was read.
    Read { message: u64, envelope: [u8; 16] },
    /// An envelope already processed (dropped, or shown again by a buggy client).
    Duplicate { envelope: [u8; 16] },
    /// A pairwise envelope from `from` was processed (`ratchet_key` is the sender's).
    Pairwise { from: ProtocolAddress, ratchet_key: [u8; 32] },
    /// Refused: it does not decrypt, or makes no sense.
    Refused { from: Option<ProtocolAddress>, envelope: [u8; 16], reason: &'static str },
    /// This device learnt it was removed from a group.
    Removed { group: String },
    /// This device found that a group forked (its admins made conflicting changes).
    Forked { group: String },
    /// A lookup of a person's record was answered: kept, or refused (it did not verify, or did
    /// not match the devices its relay serves).
    LookedUp { kept: bool },
    /// A report was answered: verified, or refused (with the relay's code), or not answered.
    ReportAnswered { request: u64, result: Result<(), switchboard_client_core::endpoint::RequestFailed> },
    /// The relay answered a follow (`ok`: the channel's admins came back).
    ChannelFollowed { ok: bool },
    /// A post (by its number) to a channel this device follows, from `from`.
    ChannelPost { post: u64, from: ProtocolAddress, envelope: [u8; 16] },
    /// This admin device handed its channel key to `follower`.
    ChannelKeyHandedOver { follower: ProtocolAddress },
    /// A follower's vote (by its number), at an admin's device.
    ChannelReply { vote: u64, from: ProtocolAddress },
    /// The relay answered a removal of one of this account's devices.
    DeviceRemoved { device_id: u32, ok: bool },
    /// Message `message` named the agent who wrote it (read from a business's device).
    AgentNamed { message: u64, agent: String },
}

/// Messages a device keeps to report (the last ones it read).
pub const MAX_REPORTABLE: usize = 8;

/// A message a device read, as it could report it.
#[derive(Clone, Debug)]
pub struct Reportable {
    pub message: u64,
    pub evidence: switchboard_client_core::franking::Evidence,
    pub content: Vec<u8>,
}

/// One device and its adapter.
pub struct Client {
    pub address: ProtocolAddress,
    pub app: usize,
    endpoint: Endpoint,
    /// Credentials of devices linked from this one, for the world to hand over.
    pub linked: Vec<(u32, Vec<u8>)>,
    /// Every ratchet key this device has sent under, per peer — kept only for a device that will
    /// be stolen, so that a thief's analysis can tell the keys it knew from the ones made after.
    pub sending_keys: Option<HashMap<ProtocolAddress, HashSet<[u8; 32]>>>,
    /// Whether pairwise deliveries are reported with their ratchet keys (when a thief watches).
    pub observe_pairwise: bool,
    changes: Vec<Change>,
    made_states: Vec<(String, [u8; 32])>,
    /// The injected "no duplicate drop" bug: duplicates are shown again (the simulator's code,
    /// not the product's: the endpoint drops them, and this adapter reports them as read).
    show_duplicates: bool,
    read_numbers: HashMap<[u8; 16], u64>,
    /// The last messages this device read (at most [`MAX_REPORTABLE`]).
    pub reportable: std::collections::VecDeque<Reportable>,
    /// Followers this device handed its channel key to.
    pub keys_handed_over: u64,
}

/// The plaintext of message `message`: a `Content` whose salt carries the message number.
pub fn content(message: u64, group: Option<&str>, size: usize, kind: usize, now_us: u64) -> Vec<u8> {
    use switchboard_wire::switchboard::{Reaction, Receipt, Reply, Text, content::Body as C};
    // The number in the salt: this simulator's contents need to be told apart, not unlinkable.
    let mut salt = message.to_be_bytes().to_vec();
    salt.extend_from_slice(&[0u8; 8]);
    let message_id = salt.clone();
    let mut text = PLAINTEXT_CANARY.to_owned();
    text.push_str(&format!("message {message} "));
    while text.len() < size {
        text.push('x');
    }
    let body = match kind {
        1 => C::Reply(Reply { to: message_id.clone(), text }),
        2 => C::Reaction(Reaction { to: message_id.clone(), emoji: text, remove: false }),
        3 => C::Receipt(Receipt { kind: 1, to: vec![text.into_bytes()] }),
        _ => C::Text(Text { text }),
    };
    Content { salt, sent_at_ms: now_us / 1000, group_id: group.unwrap_or_default().to_owned(), conversation: String::new(), body: Some(body) }
        .encode_to_vec()
}

/// The message number a plaintext carries.
pub fn message_number(plaintext: &[u8]) -> Option<u64> {
    // The simulator's own contents start with their 16-byte id (field 1, as prost writes it
    // first): read it there, not by decoding (and copying) the whole text of every delivery.
    if let [0x0a, 16, id @ ..] = plaintext {
        return Some(u64::from_be_bytes(id.get(..8)?.try_into().ok()?));
    }
    let content: Content = decode(plaintext, limits::MAX_PAYLOAD_LEN).ok()?;
    Some(u64::from_be_bytes(content.salt.get(..8)?.try_into().ok()?))
}

fn at(now_us: u64) -> Duration {
    Duration::from_micros(now_us)
}

impl Client {
    pub fn new(address: ProtocolAddress, app: usize, scenario: &Scenario, rng: &mut (impl CryptoRng + ?Sized)) -> Client {
        let group_strategy = match scenario.group_strategy {
            GroupStrategy::SenderKeys => Strategy::SenderKeys,
            GroupStrategy::Pairwise => Strategy::Pairwise,
        };
        let config = EndpointConfig {
            prekeys: scenario.prekeys_per_device,
            prekey_low_mark: scenario.prekey_low_mark.unwrap_or(scenario.prekeys_per_device / 2),
            signed_prekey_rotation: Duration::from_secs_f64(scenario.signed_prekey_rotation_s),
            signed_prekey_grace: Duration::from_secs_f64(scenario.signed_prekey_grace_s),
            // Simulated time starts at the Unix epoch.
            unix_ms_at_zero: 0,
            group_strategy,
            storage: Storage::InMemory,
            suites: scenario.apps[app].suites.suites(),
        };
        Client {
            endpoint: Endpoint::new(address.clone(), None, config, rng),
            address,
            app,
            linked: Vec::new(),
            sending_keys: None,
            observe_pairwise: false,
            changes: Vec::new(),
            made_states: Vec::new(),
            show_duplicates: false,
            read_numbers: HashMap::default(),
            reportable: Default::default(),
            keys_handed_over: 0,
        }
    }

    /// Turns the scenario's deliberate client bugs on. "No rotation on removal" and "no downgrade
    /// check" live in the client core and exist only in a build with `--cfg
    /// switchboard_inject_bugs` (other builds refuse a scenario asking for them); "no duplicate
    /// drop" is this adapter's.
    pub fn inject(&mut self, inject: &crate::scenario::Inject) {
        #[cfg(switchboard_inject_bugs)]
        self.endpoint.inject_bugs(switchboard_client_core::InjectedBugs {
            keep_sender_key_on_removal: inject.no_rotation_on_removal,
            accept_downgrade: inject.no_downgrade_check,
            accept_changes_from_members: inject.no_admin_check,
        });
        self.show_duplicates = inject.no_duplicate_drop;
    }

    /// The device, read-only.
    pub fn device(&self) -> &Device {
        self.endpoint.device()
    }


    pub fn stats(&self) -> EndpointStats {
        self.endpoint.stats()
    }

    /// Whether this device can connect: it has a credential, or is its user's first device.
    pub fn can_connect(&self) -> bool {
        self.endpoint.can_connect()
    }

    /// The credential a sibling registered for this device.
    pub fn set_credential(&mut self, credential: Vec<u8>) {
        self.endpoint.set_credential(Credential(credential));
    }

    /// Registers the user's other devices from this one once online.
    pub fn link_siblings(&mut self, device_ids: impl IntoIterator<Item = u32>) {
        for device_id in device_ids {
            // At most a handful per user in any scenario, well within the endpoint's bound.
            let _ = self.endpoint.link_device(Duration::ZERO, device_id);
        }
    }

    /// When the endpoint's next timer is due, in the simulator's microseconds.
    pub fn next_timeout_us(&self) -> Option<u64> {
        self.endpoint.poll_timeout().map(|t| t.as_micros() as u64)
    }

    pub fn connected(&mut self, now_us: u64, out: &mut Vec<OutFrame>) {
        self.endpoint.connected(at(now_us));
        self.drain(out, &mut Vec::new(), None);
    }

    pub fn disconnected(&mut self, now_us: u64) {
        self.endpoint.disconnected(at(now_us));
        self.drain(&mut Vec::new(), &mut Vec::new(), None);
    }

    /// A frame from the relay. `outcomes` gets what each delivery meant.
    pub fn frame_arrived(&mut self, now_us: u64, bytes: &[u8], rng: &mut (impl CryptoRng + ?Sized), out: &mut Vec<OutFrame>, outcomes: &mut Vec<Outcome>) {
        let pairwise = if self.observe_pairwise { pairwise_delivery(bytes) } else { None };
        self.endpoint.handle_frame(at(now_us), bytes, rng);
        self.drain(out, outcomes, pairwise);
    }

    /// A timer of the endpoint's may be due.
    pub fn timeout(&mut self, now_us: u64, rng: &mut (impl CryptoRng + ?Sized), out: &mut Vec<OutFrame>, outcomes: &mut Vec<Outcome>) {
        self.endpoint.handle_timeout(at(now_us), rng);
        self.drain(out, outcomes, None);
    }

    /// Carries out what the endpoint asks, and translates its events.
    fn drain(&mut self, out: &mut Vec<OutFrame>, outcomes: &mut Vec<Outcome>, pairwise: Option<PairwiseDelivery>) {
        while let Some(transmit) = self.endpoint.poll_transmit() {
            if let Some(keys) = self.sending_keys.as_mut() {
                record_sending_key(keys, &transmit.bytes);
            }
            out.push(transmit);
        }
        let mut pairwise_processed = pairwise.is_some();
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                Event::Message { content, envelope, evidence, agent, .. } => match message_number(&content) {
                    Some(message) => {
                        if let Some(agent) = agent {
                            outcomes.push(Outcome::AgentNamed { message, agent });
                        }
                        if self.show_duplicates {
                            self.read_numbers.insert(envelope, message);
                        }
                        if self.reportable.len() == MAX_REPORTABLE {
                            self.reportable.pop_front();
                        }
                        self.reportable.push_back(Reportable { message, evidence: *evidence, content });
                        outcomes.push(Outcome::Read { message, envelope });
                    }
                    None => outcomes.push(Outcome::Refused { from: None, envelope, reason: "content does not decode" }),
                },
                // A message another device of this person carried here: read as the message.
                Event::Synced { content, envelope, .. } => match message_number(&content) {
                    Some(message) => outcomes.push(Outcome::Read { message, envelope }),
                    None => outcomes.push(Outcome::Refused { from: None, envelope, reason: "content does not decode" }),
                },
                Event::PersonLookedUp { result, .. } => outcomes.push(Outcome::LookedUp { kept: result.is_ok() }),
                Event::DuplicateDropped { envelope, .. } => {
                    pairwise_processed &= pairwise.as_ref().is_none_or(|p| p.envelope != envelope);
                    if let Some(&message) = self.read_numbers.get(&envelope).filter(|_| self.show_duplicates) {
                        outcomes.push(Outcome::Read { message, envelope });
                    }
                    outcomes.push(Outcome::Duplicate { envelope });
                }
                Event::Refused { from, envelope, reason } => {
                    pairwise_processed &= pairwise.as_ref().is_none_or(|p| p.envelope != envelope);
                    outcomes.push(Outcome::Refused { from, envelope, reason: reason_label(&reason) });
                }
                Event::RemovedFromGroup { group } => outcomes.push(Outcome::Removed { group }),
                Event::GroupForked { group, .. } => outcomes.push(Outcome::Forked { group }),
                // Changes this device made: every state it made counts as the admins'; the
                // members it added or removed at a change (a group's creation, epoch 0, the world
                // records itself).
                Event::GroupChanged { group, epoch, by, added, removed, state } if by == self.address => {
                    self.made_states.push((group.clone(), state));
                    if epoch > 0 {
                        let made = |member, added| Change { group: group.clone(), member, epoch, added };
                        let mine = &self.address;
                        self.changes.extend(added.into_iter().filter(|m| m != mine).map(|m| made(m, true)));
                        self.changes.extend(removed.into_iter().map(|m| made(m, false)));
                    }
                }
                Event::DeviceLinked { device_id, credential } => self.linked.push((device_id, credential.0.clone())),
                Event::ReportAnswered { request, result } => outcomes.push(Outcome::ReportAnswered { request, result }),
                Event::ChannelFollower { follower, .. } => {
                    self.keys_handed_over += 1;
                    outcomes.push(Outcome::ChannelKeyHandedOver { follower });
                }
                Event::ChannelFollowed { result, .. } => outcomes.push(Outcome::ChannelFollowed { ok: result.is_ok() }),
                Event::ChannelPost { content, from, envelope, .. } => match message_number(&content) {
                    Some(post) => outcomes.push(Outcome::ChannelPost { post, from, envelope }),
                    None => outcomes.push(Outcome::Refused { from: Some(from), envelope, reason: "content does not decode" }),
                },
                Event::ChannelReply { content, from, .. } => {
                    if let Some(vote) = message_number(&content) {
                        outcomes.push(Outcome::ChannelReply { vote, from });
                    }
                }
                Event::DeviceRemoved { device_id, result, .. } => outcomes.push(Outcome::DeviceRemoved { device_id, ok: result.is_ok() }),
                _ => {}
            }
        }
        if let (Some(delivery), true) = (pairwise, pairwise_processed) {
            outcomes.push(Outcome::Pairwise { from: delivery.from, ratchet_key: delivery.ratchet_key });
        }
    }

    /// Membership changes made since the last call, and the states of groups they made (by
    /// group id and hash, creations included).
    pub fn take_changes(&mut self) -> (Vec<Change>, Vec<(String, [u8; 32])>) {
        (std::mem::take(&mut self.changes), std::mem::take(&mut self.made_states))
    }

    // ---- what the app does --------------------------------------------------------------------

    /// Sends `content` to every device of `to`.
    pub fn send_direct(&mut self, now_us: u64, to: &str, content: Vec<u8>, rng: &mut (impl CryptoRng + ?Sized), out: &mut Vec<OutFrame>) {
        // The simulator's contents are far below the limit.
        let _ = self.endpoint.send(at(now_us), to, content, rng);
        self.drain(out, &mut Vec::new(), None);
    }

    /// Sends `content` to group `group` by the scenario's strategy; `None` if this device is not
    /// in the group, else the Sender Keys ciphertext (when that is the strategy).
    pub fn send_group(&mut self, now_us: u64, group: &str, content: Vec<u8>, rng: &mut (impl CryptoRng + ?Sized), out: &mut Vec<OutFrame>) -> Option<Option<Vec<u8>>> {
        let sent = self.endpoint.send_group(at(now_us), group, content, rng).ok();
        self.drain(out, &mut Vec::new(), None);
        sent
    }

    pub fn create_group(&mut self, now_us: u64, group: &str, members: Vec<ProtocolAddress>, suite: Suite, rng: &mut (impl CryptoRng + ?Sized), out: &mut Vec<OutFrame>) {
        self.endpoint.create_group(at(now_us), group, members.into_iter().map(Member::Device).collect(), suite, rng);
        self.drain(out, &mut Vec::new(), None);
    }

    // ---- channels and business accounts --------------------------------------------------------

    /// Opens `channel` with `admins`, posting to it from this device.
    pub fn open_channel(&mut self, now_us: u64, channel: &str, admins: Vec<String>, suite: Suite, rng: &mut (impl CryptoRng + ?Sized), out: &mut Vec<OutFrame>) -> bool {
        let opened = self.endpoint.open_channel(at(now_us), channel, admins, suite, rng).is_ok();
        self.drain(out, &mut Vec::new(), None);
        opened
    }

    pub fn follow(&mut self, now_us: u64, channel: &str, out: &mut Vec<OutFrame>) -> bool {
        let asked = self.endpoint.follow(at(now_us), channel).is_ok();
        self.drain(out, &mut Vec::new(), None);
        asked
    }

    pub fn leave(&mut self, now_us: u64, channel: &str, out: &mut Vec<OutFrame>) -> bool {
        let asked = self.endpoint.leave(at(now_us), channel).is_ok();
        self.drain(out, &mut Vec::new(), None);
        asked
    }

    /// Posts `content` to `channel`; whether this device could (it posts to it).
    pub fn post(&mut self, now_us: u64, channel: &str, content: Vec<u8>, rng: &mut (impl CryptoRng + ?Sized), out: &mut Vec<OutFrame>) -> bool {
        let posted = self.endpoint.post(at(now_us), channel, content, rng).is_ok();
        self.drain(out, &mut Vec::new(), None);
        posted
    }

    /// Sends `content` to the admins of `channel`; whether this device could (it follows it).
    pub fn reply_to_channel(&mut self, now_us: u64, channel: &str, content: Vec<u8>, rng: &mut (impl CryptoRng + ?Sized), out: &mut Vec<OutFrame>) -> bool {
        let sent = self.endpoint.reply_to_channel(at(now_us), channel, content, rng).is_ok();
        self.drain(out, &mut Vec::new(), None);
        sent
    }

    pub fn set_agents(&mut self, now_us: u64, agents: Vec<(u32, String)>, rng: &mut (impl CryptoRng + ?Sized), out: &mut Vec<OutFrame>) -> bool {
        let set = self.endpoint.set_agents(at(now_us), agents, rng).is_ok();
        self.drain(out, &mut Vec::new(), None);
        set
    }

    /// Assigns the conversation with `customer` to `agent_device`; `None` if this device could
    /// not, else whether it was a hand-over.
    pub fn assign(&mut self, now_us: u64, customer: &str, agent_device: u32, rng: &mut (impl CryptoRng + ?Sized), out: &mut Vec<OutFrame>) -> Option<bool> {
        let handover = self.endpoint.assign(at(now_us), customer, agent_device, rng).ok();
        self.drain(out, &mut Vec::new(), None);
        handover
    }

    pub fn remove_agent(&mut self, now_us: u64, device_id: u32, out: &mut Vec<OutFrame>) -> bool {
        let asked = self.endpoint.remove_agent(at(now_us), device_id).is_ok();
        self.drain(out, &mut Vec::new(), None);
        asked
    }

    /// The business analytics this device counted, if it serves one.
    pub fn analytics(&self) -> Option<switchboard_client_core::business::Analytics> {
        self.endpoint.analytics()
    }

    pub fn add_member(&mut self, now_us: u64, group: &str, member: ProtocolAddress, rng: &mut (impl CryptoRng + ?Sized), out: &mut Vec<OutFrame>) {
        self.endpoint.add_member(at(now_us), group, Member::Device(member), rng);
        self.drain(out, &mut Vec::new(), None);
    }

    pub fn remove_member(&mut self, now_us: u64, group: &str, member: ProtocolAddress, rng: &mut (impl CryptoRng + ?Sized), out: &mut Vec<OutFrame>) {
        self.endpoint.remove_member(at(now_us), group, Member::Device(member), rng);
        self.drain(out, &mut Vec::new(), None);
    }

    /// Sends a `PairwisePayload` this adapter's caller encoded (a forging member's announcements).
    pub fn send_payload(&mut self, now_us: u64, to: ProtocolAddress, payload: Vec<u8>, rng: &mut (impl CryptoRng + ?Sized), out: &mut Vec<OutFrame>) {
        self.endpoint.send_payload(at(now_us), to, payload, rng);
        self.drain(out, &mut Vec::new(), None);
    }

    /// Makes this device's account the first of a new person.
    pub fn become_person(&mut self, now_us: u64, visibility: Visibility, rng: &mut (impl CryptoRng + ?Sized), out: &mut Vec<OutFrame>) {
        // A fresh device belongs to no person yet: this cannot fail.
        let _ = self.endpoint.become_person(at(now_us), visibility, rng);
        self.drain(out, &mut Vec::new(), None);
    }

    /// The invitation another device of this person joins with.
    pub fn person_invitation(&self) -> Option<Vec<u8>> {
        self.endpoint.person_invitation().map(|invitation| invitation.to_vec())
    }

    /// Joins the person whose invitation another device of hers gave.
    pub fn join_person(&mut self, now_us: u64, invitation: &[u8], visibility: Visibility, rng: &mut (impl CryptoRng + ?Sized), out: &mut Vec<OutFrame>) {
        let _ = self.endpoint.join_person(at(now_us), invitation, visibility, rng);
        self.drain(out, &mut Vec::new(), None);
    }

    /// Asks for the record published for `user`; the answer comes as [`Outcome::LookedUp`].
    pub fn lookup_person(&mut self, now_us: u64, user: &str, out: &mut Vec<OutFrame>, outcomes: &mut Vec<Outcome>) {
        let _ = self.endpoint.lookup_person(at(now_us), user);
        self.drain(out, outcomes, None);
    }

    /// Hands a plaintext copy to the relay (the injected "relay keeps plaintext" bug).
    /// Blocks the person behind `user` (every account of hers this device knows).
    pub fn block(&mut self, now_us: u64, user: &str, rng: &mut (impl CryptoRng + ?Sized), out: &mut Vec<OutFrame>) {
        let _ = self.endpoint.block(at(now_us), user, rng);
        self.drain(out, &mut Vec::new(), None);
    }

    /// Whether this device holds a block of `user` (or of another account of the person behind
    /// it, as the device knows her).
    pub fn blocks(&self, user: &str) -> bool {
        self.endpoint.is_blocked(user)
    }

    /// Reports a message: returns the request's number.
    pub fn report(&mut self, now_us: u64, evidence: &switchboard_client_core::franking::Evidence, content: Vec<u8>, out: &mut Vec<OutFrame>, outcomes: &mut Vec<Outcome>) -> u64 {
        let request = self.endpoint.report(at(now_us), evidence, content);
        self.drain(out, outcomes, None);
        request
    }

    pub fn leak(&mut self, now_us: u64, plaintext: &[u8], out: &mut Vec<OutFrame>) {
        if self.endpoint.is_online() {
            self.endpoint.upload_blob(at(now_us), plaintext.to_vec());
        }
        self.drain(out, &mut Vec::new(), None);
    }
}

/// A pairwise delivery, seen before the endpoint takes it (for the thief's healing check).
struct PairwiseDelivery {
    from: ProtocolAddress,
    envelope: [u8; 16],
    ratchet_key: [u8; 32],
}

fn pairwise_delivery(bytes: &[u8]) -> Option<PairwiseDelivery> {
    let frame = decode::<ServerFrame>(bytes, switchboard_wire::frame::MAX_FRAME_LEN).ok()?;
    let (0, Some(server_frame::Body::Deliver(envelope))) = (frame.request_id, frame.body) else { return None };
    let kind = match EnvelopeKind::try_from(envelope.kind).ok()? {
        EnvelopeKind::PrekeyMessage => MessageKind::PreKey,
        EnvelopeKind::SignalMessage => MessageKind::Signal,
        _ => return None,
    };
    let message = CiphertextMessage::parse(kind, &envelope.content).ok()?;
    let sender = envelope.sender?;
    Some(PairwiseDelivery {
        from: ProtocolAddress::new(sender.name, sender.device_id),
        envelope: switchboard_client_core::endpoint::id16(&envelope.id),
        ratchet_key: *message.ratchet_key().as_montgomery(),
    })
}

/// The reason a session refused as downgraded is reported under.
pub const DOWNGRADE_REFUSED: &str = "suite downgrade";

fn record_sending_key(keys: &mut HashMap<ProtocolAddress, HashSet<[u8; 32]>>, bytes: &[u8]) {
    let Ok(frame) = decode::<ClientFrame>(bytes, switchboard_wire::frame::MAX_FRAME_LEN) else { return };
    let envelopes = match frame.body {
        Some(client_frame::Body::Send(envelope)) => vec![envelope],
        Some(client_frame::Body::SendToUser(send)) => send.envelopes,
        _ => return,
    };
    for envelope in envelopes {
        let kind = match EnvelopeKind::try_from(envelope.kind) {
            Ok(EnvelopeKind::PrekeyMessage) => MessageKind::PreKey,
            Ok(EnvelopeKind::SignalMessage) => MessageKind::Signal,
            _ => continue,
        };
        let (Some(to), Ok(message)) = (envelope.recipient, CiphertextMessage::parse(kind, &envelope.content)) else { continue };
        keys.entry(ProtocolAddress::new(to.name, to.device_id)).or_default().insert(*message.ratchet_key().as_montgomery());
    }
}

fn reason_label(error: &ClientError) -> &'static str {
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
        ClientError::Downgrade { .. } => DOWNGRADE_REFUSED,
        ClientError::NotAnAdmin { .. } => "not an admin",
        ClientError::GroupFork { .. } => "group fork",
        ClientError::NotOrdered { .. } => "not ordered by the hub",
        ClientError::UnorderedChange { .. } => "a change its admins did not order",
        ClientError::Person(_) => "a person's record refused",
        ClientError::LimitExceeded { .. } => "limit exceeded",
        // `ClientError` is non-exhaustive: a kind added later is labelled apart until named here.
        #[allow(unreachable_patterns)]
        _ => "other client error",
    }
}
