//! One simulated device: the client core ([`Device`]) under a sans-IO driver that does what an
//! app's networking layer does — register, authenticate, fetch bundles before sealing, keep every
//! send in an outbox until the relay confirms it durable (and send it again after a reset),
//! acknowledge what it has processed, drop duplicates by envelope id, and hold group messages
//! whose sender key has not arrived yet.

mod receive;
mod work;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use rand::Rng;
use rand::rngs::StdRng;
use switchboard_client::{Device, InjectedBugs, Outgoing, wire_address};
use switchboard_session::{MessageKind, PreKeyBundle, ProtocolAddress, Suite};
use switchboard_wire::switchboard::{
    Authenticate, ClientFrame, Content, Envelope, EnvelopeKind, ErrorCode,
    GroupEnvelope, Register, ServerFrame, UploadBlob, UploadBundles, client_frame::Body, server_frame,
};
use switchboard_wire::{Message, decode, limits};

use crate::scenario::GroupStrategy;
use work::Work;

/// Acknowledgements gathered into one frame at most.
pub const MAX_ACKS_PER_FRAME: usize = 256;
/// Group messages held while their sender key is on its way.
pub const MAX_STALLED: usize = 10_000;
/// Bytes every plaintext starts with, so that a relay that sees one is caught by a search.
pub const PLAINTEXT_CANARY: &str = "\u{0}sb-plaintext-canary\u{0}";

/// A frame for the relay, with what it is (for the trace).
pub struct OutFrame {
    pub what: &'static str,
    pub bytes: Vec<u8>,
}

/// A membership change this device made, with the epoch it made.
#[derive(Clone, Debug)]
pub struct Change {
    pub group: String,
    pub member: ProtocolAddress,
    pub epoch: u64,
    pub added: bool,
}

fn body_what(body: &Body) -> &'static str {
    match body {
        Body::Register(_) => "register",
        Body::Authenticate(_) => "authenticate",
        Body::UploadBundles(_) => "upload bundles",
        Body::FetchBundles(_) => "fetch bundles",
        Body::Send(_) => "send",
        Body::SendGroup(_) => "send group",
        Body::Acknowledge(_) => "ack",
        Body::UploadBlob(_) => "upload blob",
        Body::FetchBlob(_) => "fetch blob",
    }
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
    Refused { envelope: [u8; 16], reason: &'static str },
    /// This device learnt it was removed from a group.
    Removed { group: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Offline,
    Registering,
    Authenticating,
    Uploading,
    Online,
}

#[derive(Debug)]
enum Request {
    Register,
    /// Another device of this user, registered from this (authenticated) one, as a relay
    /// requires: the credential is handed to the new device (device linking).
    RegisterSibling(u32),
    Authenticate,
    Upload,
    Outbox(u64),
    Fetch(String),
    Blob,
}

/// Counters a report adds up.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientStats {
    /// Crypto done, for comparing a run with the raw cost of its crypto: sessions set up
    /// (counted where a PreKey message opened one), other pairwise messages decrypted, group
    /// messages encrypted and decrypted.
    pub sessions_accepted: u64,
    pub pairwise_decrypts: u64,
    pub group_encrypts: u64,
    pub group_decrypts: u64,
    /// Sends given up: refused for good by the relay, or that could not be sealed.
    pub sends_dropped: u64,
}

/// One device and its driver.
pub struct Client {
    pub address: ProtocolAddress,
    pub app: usize,
    pub device: Device,
    credential: Option<Vec<u8>>,
    phase: Phase,
    next_request: u64,
    requests: HashMap<u64, Request>,
    outbox: BTreeMap<u64, Body>,
    next_outbox: u64,
    bundles: Vec<switchboard_wire::switchboard::PreKeyBundle>,
    directory: switchboard_client::InMemoryDirectory,
    devices_of: HashMap<String, Vec<ProtocolAddress>>,
    fetching: HashSet<String>,
    /// Work waiting for bundles, each with the users it still waits for.
    waiting: VecDeque<(Work, HashSet<String>)>,
    seen: HashSet<[u8; 16]>,
    stalled: Vec<Envelope>,
    stalled_ids: HashSet<[u8; 16]>,
    /// The last group ciphertext this device wrote (Sender Keys), for the membership checks.
    last_group: Option<Vec<u8>>,
    changes: Vec<Change>,
    /// Envelope → message read from it; kept only for the injected duplicate bug.
    read_numbers: HashMap<[u8; 16], u64>,
    /// Other device ids of this user to register from this one (the first device only).
    pub siblings: Vec<u32>,
    /// Credentials of registered siblings, for the world to hand over.
    pub linked: Vec<(u32, Vec<u8>)>,
    /// Every ratchet key this device has sent under, per peer — kept only for a device that will
    /// be stolen, so that a thief's analysis can tell the keys it knew from the ones made after.
    pub sending_keys: Option<HashMap<ProtocolAddress, HashSet<[u8; 32]>>>,
    /// Envelopes processed and not yet acknowledged (sent by [`Client::flush_acks`]).
    pub pending_acks: Vec<Vec<u8>>,
    /// Something failed for now (a fetch, a refused send): try again at the next retry.
    pub needs_retry: bool,
    pub strategy: GroupStrategy,
    pub show_duplicates: bool,
    pub stats: ClientStats,
}

fn envelope_id(rng: &mut StdRng) -> Vec<u8> {
    let mut id = vec![0u8; 16];
    rng.fill_bytes(&mut id);
    id
}

/// An envelope id as a fixed array (shorter ids are padded with zeros).
pub(crate) fn id16(bytes: &[u8]) -> [u8; 16] {
    let mut id = [0u8; 16];
    let n = bytes.len().min(16);
    id[..n].copy_from_slice(&bytes[..n]);
    id
}

/// The plaintext of message `message`: a `Content` whose id carries the message number.
pub fn content(message: u64, group: Option<&str>, size: usize, kind: usize, now_us: u64) -> Vec<u8> {
    use switchboard_wire::switchboard::{Reaction, Receipt, Reply, Text, content::Body as C};
    let mut message_id = message.to_be_bytes().to_vec();
    message_id.extend_from_slice(&[0u8; 8]);
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
    Content { message_id, sent_at_ms: now_us / 1000, group_id: group.unwrap_or_default().to_owned(), body: Some(body) }
        .encode_to_vec()
}

/// The message number a plaintext carries.
pub fn message_number(plaintext: &[u8]) -> Option<u64> {
    let content: Content = decode(plaintext, limits::MAX_PAYLOAD_LEN).ok()?;
    Some(u64::from_be_bytes(content.message_id.get(..8)?.try_into().ok()?))
}

impl Client {
    pub fn new(address: ProtocolAddress, app: usize, prekeys: u32, strategy: GroupStrategy, rng: &mut StdRng) -> Client {
        let registration_id = rng.next_u32() & 0x3fff;
        let mut device = Device::new(address.clone(), registration_id, rng);
        let bundles = device.publish_bundles(prekeys.max(1), rng).iter().map(PreKeyBundle::to_wire).collect();
        Client {
            address,
            app,
            device,
            credential: None,
            phase: Phase::Offline,
            next_request: 1,
            requests: HashMap::new(),
            outbox: BTreeMap::new(),
            next_outbox: 0,
            bundles,
            directory: Default::default(),
            devices_of: HashMap::new(),
            fetching: HashSet::new(),
            waiting: VecDeque::new(),
            seen: HashSet::new(),
            stalled: Vec::new(),
            stalled_ids: HashSet::new(),
            read_numbers: HashMap::new(),
            last_group: None,
            pending_acks: Vec::new(),
            sending_keys: None,
            siblings: Vec::new(),
            linked: Vec::new(),
            changes: Vec::new(),
            needs_retry: false,
            strategy,
            show_duplicates: false,
            stats: ClientStats::default(),
        }
    }

    pub fn inject(&mut self, keep_sender_key_on_removal: bool, show_duplicates: bool) {
        self.device.inject_bugs(InjectedBugs { keep_sender_key_on_removal });
        self.show_duplicates = show_duplicates;
    }

    /// Whether this device can connect: it has a credential, or is its user's first device.
    pub fn can_connect(&self) -> bool {
        self.credential.is_some() || self.address.device_id() == 1
    }

    /// The credential a sibling registered for this device.
    pub fn set_credential(&mut self, credential: Vec<u8>) {
        self.credential = Some(credential);
    }

    fn frame(&mut self, request: Option<Request>, body: Body, out: &mut Vec<OutFrame>) {
        let request_id = match request {
            Some(request) => {
                let id = self.next_request;
                self.next_request += 1;
                self.requests.insert(id, request);
                id
            }
            None => 0,
        };
        let what = body_what(&body);
        out.push(OutFrame { what, bytes: ClientFrame { request_id, body: Some(body) }.encode_to_vec() });
    }

    /// A connection to the relay is up: register or authenticate.
    pub fn connected(&mut self, out: &mut Vec<OutFrame>) {
        self.requests.clear();
        match &self.credential {
            None => {
                self.phase = Phase::Registering;
                let register = Register { user: self.address.name().to_owned(), device_id: self.address.device_id() };
                self.frame(Some(Request::Register), Body::Register(register), out);
            }
            Some(credential) => {
                self.phase = Phase::Authenticating;
                let authenticate = Authenticate {
                    user: self.address.name().to_owned(),
                    device_id: self.address.device_id(),
                    credential: credential.clone(),
                };
                self.frame(Some(Request::Authenticate), Body::Authenticate(authenticate), out);
            }
        }
    }

    /// The connection went down: every request in flight is lost (the outbox keeps its sends).
    pub fn disconnected(&mut self) {
        // Unacknowledged mail comes again on the next connection; the ids seen drop it then.
        self.pending_acks.clear();
        self.phase = Phase::Offline;
        self.requests.clear();
        self.fetching.clear();
    }

    /// A frame from the relay. `outcomes` gets what each delivery meant.
    pub fn frame_arrived(&mut self, bytes: &[u8], rng: &mut StdRng, out: &mut Vec<OutFrame>, outcomes: &mut Vec<Outcome>) {
        let Ok(frame) = decode::<ServerFrame>(bytes, switchboard_wire::frame::MAX_FRAME_LEN) else { return };
        let Some(body) = frame.body else { return };
        if let server_frame::Body::Deliver(envelope) = body {
            // The relay delivers only once it has authenticated this connection; a delivery may
            // still overtake the answer that says so (on a link that reorders).
            if frame.request_id == 0 && self.phase != Phase::Offline {
                self.deliver(envelope, rng, out, outcomes);
            }
            return;
        }
        let Some(request) = self.requests.remove(&frame.request_id) else { return };
        match (request, body) {
            (Request::Register, server_frame::Body::Registered(registered)) => {
                self.credential = Some(registered.credential);
                self.connected(out);
            }
            (Request::RegisterSibling(device_id), server_frame::Body::Registered(registered)) => {
                self.siblings.retain(|id| *id != device_id);
                self.linked.push((device_id, registered.credential));
            }
            (Request::Authenticate, server_frame::Body::Done(_)) => {
                if self.bundles.is_empty() {
                    self.online(out);
                } else {
                    self.phase = Phase::Uploading;
                    let bundles = self.bundles.clone();
                    self.frame(Some(Request::Upload), Body::UploadBundles(UploadBundles { bundles }), out);
                }
            }
            (Request::Upload, server_frame::Body::Done(_)) => {
                self.bundles.clear();
                self.online(out);
            }
            (Request::Outbox(seq), server_frame::Body::Failure(failure)) => {
                let code = ErrorCode::try_from(failure.code).unwrap_or(ErrorCode::Unspecified);
                if matches!(code, ErrorCode::Unavailable | ErrorCode::MailboxFull) {
                    self.needs_retry = true;
                } else {
                    self.outbox.remove(&seq);
                    self.stats.sends_dropped += 1;
                }
            }
            (Request::Outbox(seq), _) => {
                self.outbox.remove(&seq);
            }
            (Request::Fetch(user), server_frame::Body::Bundles(bundles)) if bundles.user == user => {
                self.fetching.remove(&user);
                let mut devices = Vec::new();
                for device in bundles.devices {
                    let Some(bundle) = device.bundle else { continue };
                    let Ok(bundle) = PreKeyBundle::from_wire(bundle) else { continue };
                    let address = ProtocolAddress::new(user.clone(), device.device_id);
                    self.directory.publish(&address, [bundle]);
                    devices.push(address);
                }
                for (_, missing) in &mut self.waiting {
                    missing.remove(&user);
                }
                self.devices_of.insert(user, devices);
                self.run_waiting(rng, out);
            }
            (Request::Fetch(user), _) => {
                // Unavailable for now (the other app's relay out of reach): later.
                self.fetching.remove(&user);
                self.needs_retry = true;
            }
            (_, _) => {
                // A refused registration or authentication: try again on the next connection.
                self.needs_retry = true;
            }
        }
    }

    fn online(&mut self, out: &mut Vec<OutFrame>) {
        self.phase = Phase::Online;
        for device_id in self.siblings.clone() {
            let register = Register { user: self.address.name().to_owned(), device_id };
            self.frame(Some(Request::RegisterSibling(device_id)), Body::Register(register), out);
        }
        self.flush(out);
        self.fetch_missing(out);
    }

    /// Sends everything in the outbox again (after a reconnect or a refusal for now).
    fn flush(&mut self, out: &mut Vec<OutFrame>) {
        let entries: Vec<(u64, Body)> = self.outbox.iter().map(|(seq, body)| (*seq, body.clone())).collect();
        for (seq, body) in entries {
            self.frame(Some(Request::Outbox(seq)), body, out);
        }
    }

    /// Periodic retry of what failed for now.
    pub fn retry(&mut self, rng: &mut StdRng, out: &mut Vec<OutFrame>) {
        self.needs_retry = false;
        if self.phase != Phase::Online {
            return;
        }
        // Sends refused for now go again; the ones still in flight are answered by id, and a
        // second copy is dropped by the relay as a duplicate.
        self.flush(out);
        self.fetch_missing(out);
        self.run_waiting(rng, out);
    }

    /// Keeps `body` in the outbox until the relay confirms it, and sends it now if online.
    fn queue(&mut self, body: Body, out: &mut Vec<OutFrame>) {
        let seq = self.next_outbox;
        self.next_outbox += 1;
        self.outbox.insert(seq, body.clone());
        if self.phase == Phase::Online {
            self.frame(Some(Request::Outbox(seq)), body, out);
        }
    }

    /// Queues each pairwise message as an envelope (`group` names the group for pairwise group
    /// messages, empty otherwise).
    fn queue_pairwise(&mut self, outgoing: Vec<Outgoing>, group: &str, rng: &mut StdRng, out: &mut Vec<OutFrame>) {
        for message in outgoing {
            if let Some(keys) = self.sending_keys.as_mut() {
                keys.entry(message.to.clone()).or_default().insert(*message.message.ratchet_key().as_montgomery());
            }
            let kind = match message.message.kind() {
                MessageKind::PreKey => EnvelopeKind::PrekeyMessage,
                MessageKind::Signal => EnvelopeKind::SignalMessage,
            };
            let envelope = Envelope {
                id: envelope_id(rng),
                sender: Some(wire_address(&self.address)),
                recipient: Some(wire_address(&message.to)),
                kind: kind as i32,
                content: message.message.serialize().to_vec(),
                group_id: group.to_owned(),
            };
            self.queue(Body::Send(envelope), out);
        }
    }

    /// Hands a plaintext copy to the relay (the injected "relay keeps plaintext" bug).
    pub fn leak(&mut self, plaintext: &[u8], out: &mut Vec<OutFrame>) {
        if self.phase == Phase::Online {
            self.frame(Some(Request::Blob), Body::UploadBlob(UploadBlob { blob: plaintext.to_vec() }), out);
        }
    }

    /// The group ciphertext of the last [`Self::send_group`] (Sender Keys only).
    pub fn last_group_ciphertext(&mut self) -> Option<Vec<u8>> {
        self.last_group.take()
    }

    /// Membership changes made since the last call.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    // ---- what the app does --------------------------------------------------------------------

    /// Sends `content` to every device of `to`.
    pub fn send_direct(&mut self, to: &str, content: Vec<u8>, rng: &mut StdRng, out: &mut Vec<OutFrame>) {
        self.submit(Work::Direct { to: to.to_owned(), content }, rng, out);
    }

    /// Sends `content` to group `group` (every other member in this device's view), by the
    /// scenario's strategy. `None` if this device is not in the group.
    pub fn send_group(&mut self, group: &str, content: Vec<u8>, rng: &mut StdRng, out: &mut Vec<OutFrame>) -> Option<()> {
        match self.strategy {
            GroupStrategy::Pairwise => {
                let recipients: Vec<ProtocolAddress> =
                    self.device.group(group)?.members.iter().filter(|member| **member != self.address).cloned().collect();
                self.submit(Work::Pairwise { group: group.to_owned(), recipients, content }, rng, out);
            }
            GroupStrategy::SenderKeys => {
                let message = self.device.encrypt_group(group, &content, rng).ok()?;
                self.stats.group_encrypts += 1;
                self.last_group = Some(message.bytes.clone());
                let envelope = GroupEnvelope {
                    id: envelope_id(rng),
                    sender: Some(wire_address(&self.address)),
                    group_id: group.to_owned(),
                    hub: group.rsplit_once('@').map_or("", |(_, app)| app).to_owned(),
                    recipients: message.recipients.iter().map(wire_address).collect(),
                    content: message.bytes,
                };
                self.submit(Work::Group { distributions: message.key_distributions, envelope }, rng, out);
            }
        }
        Some(())
    }

    pub fn create_group(&mut self, group: &str, members: Vec<ProtocolAddress>, suite: Suite, rng: &mut StdRng, out: &mut Vec<OutFrame>) {
        self.submit(Work::Create { group: group.to_owned(), members, suite }, rng, out);
    }

    pub fn add_member(&mut self, group: &str, member: ProtocolAddress, rng: &mut StdRng, out: &mut Vec<OutFrame>) {
        self.submit(Work::Add { group: group.to_owned(), member }, rng, out);
    }

    pub fn remove_member(&mut self, group: &str, member: ProtocolAddress, rng: &mut StdRng, out: &mut Vec<OutFrame>) {
        self.submit(Work::Remove { group: group.to_owned(), member }, rng, out);
    }
}
