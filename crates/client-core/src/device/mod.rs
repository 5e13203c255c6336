//! One device: its identity, its pairwise sessions, its sender keys and its groups.

use std::collections::{BTreeSet, HashMap};

use rand_core::CryptoRng;
use switchboard_session::group::{self as sender_keys, InMemorySenderKeyStore, SenderKeyDistributionMessage, SenderKeyMessage};
use switchboard_session::prekey::SignedPreKeyRecord;
use switchboard_session::store::{IdentityKeyStore, SignedPreKeyStore};
use switchboard_session::{CiphertextMessage, IdentityKey, IdentityKeyPair, InMemoryStore, ProtocolAddress, Suite, session};
use switchboard_wire::switchboard::{GroupControl, PairwisePayload, pairwise_payload::Body};
use switchboard_wire::{Message, decode, limits};

use crate::directory::BundleDirectory;
use crate::error::ClientError;
use crate::group::Group;

mod business;
mod change;
mod channel;
mod control;
mod people;
mod prekeys;

pub use change::Change;
pub(crate) use change::Proposal;

pub use control::{HubVerdict, MAX_AWAITING_HUB, MAX_AWAITING_HUB_PER_GROUP, MAX_AWAITING_HUB_PER_SENDER, MAX_FORKS_KEPT, MAX_HELD_KEYS, MAX_HELD_KEYS_PER_SENDER, MAX_PENDING_CHANGES, MAX_PENDING_CHANGES_PER_MEMBER, MAX_PENDING_CHANGE_BYTES};
pub(crate) use control::PendingChange;

type Result<T> = std::result::Result<T, ClientError>;


/// A pairwise message to send to one device.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The device it is for.
    pub to: ProtocolAddress,
    /// The encrypted message: a PreKey message while this device started the session and has
    /// decrypted nothing from `to` over it yet, a Signal message otherwise.
    pub message: CiphertextMessage,
    /// The franking commitment its envelope carries, for an application's message.
    pub commitment: Option<[u8; 32]>,
}

/// A pairwise payload decided on but not yet encrypted: sealing it may need the recipient's
/// bundle, which a networked client fetches first. Its `Debug` shows no payload (a sender key or
/// a group's order key may be in it).
#[derive(Clone)]
pub struct PendingSend {
    /// The device to seal it for.
    pub to: ProtocolAddress,
    /// The encoded `PairwisePayload`, shared by every recipient of one control message.
    pub(crate) payload: std::sync::Arc<[u8]>,
    /// For an application's message: the franking commitment to its content (the key is in the
    /// payload).
    pub(crate) commitment: Option<[u8; 32]>,
}

impl std::fmt::Debug for PendingSend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PendingSend {{ to: {}, payload: {} bytes }}", self.to, self.payload.len())
    }
}

impl PendingSend {
    /// A session start for `to` (see [`Received::SessionStarted`]): sealing it starts a new
    /// session from `to`'s bundle if this device has none.
    pub fn session_start(to: ProtocolAddress) -> PendingSend {
        let payload = PairwisePayload { body: Some(Body::SessionStart(true)), ..Default::default() }.encode_to_vec();
        PendingSend::new(to, payload)
    }

    /// `payload`, an encoded `PairwisePayload`, to seal for `to`.
    pub fn new(to: ProtocolAddress, payload: impl Into<std::sync::Arc<[u8]>>) -> PendingSend {
        PendingSend { to, payload: payload.into(), commitment: None }
    }

    /// An application's message: `payload` carries the franking key of `commitment`.
    pub(crate) fn franked(to: ProtocolAddress, payload: std::sync::Arc<[u8]>, commitment: [u8; 32]) -> PendingSend {
        PendingSend { to, payload, commitment: Some(commitment) }
    }
}

/// What [`Device::seal_each`] sealed, and what it could not (each with why).
#[derive(Debug, Default)]
pub struct Sealing {
    /// The sends encrypted, in the order they were given.
    pub sealed: Vec<Outgoing>,
    /// The sends not encrypted, each unchanged with why (e.g. [`ClientError::NoBundle`]), in the
    /// order they were given.
    pub failed: Vec<(PendingSend, ClientError)>,
}

/// A group message: encrypted once, delivered to every other member.
#[derive(Clone, Debug)]
pub struct GroupMessage {
    /// The group's id.
    pub group: String,
    /// Every member of the group but this device, as this device holds it.
    pub recipients: Vec<ProtocolAddress>,
    /// The serialized sender-key message, the same for every recipient.
    pub bytes: Vec<u8>,
    /// This device's current sender key, for the members that do not hold it yet: seal these
    /// ([`Device::seal_all`]) and send them before `bytes`.
    pub key_distributions: Vec<PendingSend>,
}

/// Contacts a person's device remembers giving her record to; past it, new ones are not given it
/// (her messages still reach them, and her devices carry their replies on).
pub const MAX_CONTACTS: usize = 10_000;

/// What a received pairwise message meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// An application's own content, with the key that opens its franking commitment (empty if
    /// the sender sent none).
    Application {
        /// The content, as the sending application encoded it.
        content: Vec<u8>,
        /// The franking key from the payload, unchecked here (see [`crate::franking`]).
        franking_key: Vec<u8>,
        /// The agent name the payload carries (at most [`crate::business::MAX_AGENT_NAME`] bytes
        /// of printable text), `None` if empty. A business account's devices set it; it is
        /// checked against no roster.
        agent: Option<String>,
    },
    /// An application's own content sent to this device's person, naming the other accounts of
    /// hers the sender also sent it to.
    PersonMessage {
        /// The content, as the sending application encoded it.
        content: Vec<u8>,
        /// The other accounts (`name@app`) the sender also sent it to: one to
        /// [`crate::person::MAX_LINKED_ACCOUNTS`].
        delivered_to: Vec<String>,
        /// The franking key from the payload, unchecked here.
        franking_key: Vec<u8>,
    },
    /// Another device of this person accepted, blocked or unblocked users (already applied).
    Consent(switchboard_wire::switchboard::ConsentChange),
    /// What another device of this person carried here: a message she sent, or one she received
    /// on an account its sender could not see linked. Checked: it has content and a sender
    /// address, its carrier sent the message or received it, and it names no group.
    Transcript(switchboard_wire::switchboard::Transcript),
    /// A newer record of this device's own person, from another device of hers (`changed`: it
    /// was newer than the one held).
    OwnRecord {
        /// Whether the record was newer than the one held, and adopted.
        changed: bool,
    },
    /// A record of another person, kept (`changed`: it was new or newer), sent by a device of
    /// hers, or (`from_own`) passed on by another device of this device's own person.
    PersonRecord {
        /// The key that signed the record: the person's.
        person_key: IdentityKey,
        /// Whether the record was new to this device or newer than the one held.
        changed: bool,
        /// Whether another device of this device's own person passed it on (rather than a
        /// device the record lists sending it).
        from_own: bool,
    },
    /// A group was joined or changed (`change` says how), or a member's sender key arrived
    /// (`change` is `None`).
    Group {
        /// The group's id.
        group: String,
        /// The group's epoch as this device holds it now (for a key of a group this device is
        /// not in, the epoch the key's message named).
        epoch: u64,
        /// The members added and removed since before the message; `None` if the membership did
        /// not change (a sender key, or an announcement kept until the changes before it come).
        change: Option<MembershipChange>,
    },
    /// This device was removed from the group; its state for the group is gone.
    RemovedFromGroup {
        /// The group's id.
        group: String,
    },
    /// The sender started a session with this device (after refusing one this device started
    /// under a weaker suite): this device's next messages to it go over the new one, and its
    /// sender keys go to it again.
    SessionStarted,
    /// A change of `group` to `epoch` (this device's joining, an advance, its removal) was
    /// announced: it applies once the group's hub says it ordered that state ([`Device::hub_head`]).
    AwaitingHub {
        /// The group's id.
        group: String,
        /// The epoch of the announced state, which the hub is asked about.
        epoch: u64,
    },
    /// A follower of `channel`, which this device posts to, asked for its key (answered).
    ChannelFollower {
        /// The channel's id (`name@app`).
        channel: String,
    },
    /// An admin's key for `channel`, which this device follows, was kept.
    ChannelKey {
        /// The channel's id (`name@app`).
        channel: String,
    },
    /// A follower's reaction or vote on `channel`, for its admins only.
    ChannelReply {
        /// The channel's id (`name@app`).
        channel: String,
        /// The reply, as the follower's application encoded it (never empty).
        content: Vec<u8>,
    },
    /// The owner of this device's business account sent its roster (`listed`: this device is
    /// in it).
    BusinessRoster {
        /// Whether the new roster lists this device as serving an agent.
        listed: bool,
    },
    /// Another device of this business account assigned the conversation with `customer`.
    Assigned {
        /// The customer's address (`name@app`).
        customer: String,
        /// The device of this account the conversation is assigned to now.
        agent_device: u32,
        /// Whether it was assigned to another device before (a hand-over).
        handover: bool,
    },
}

/// How an announcement changed a group's membership as this device sees it. On joining,
/// `added` lists every member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipChange {
    /// Devices that are members now and were not before (every member, on joining).
    pub added: Vec<ProtocolAddress>,
    /// Devices that were members before and are not now.
    pub removed: Vec<ProtocolAddress>,
}

/// One device of one person.
pub struct Device {
    pub(crate) address: ProtocolAddress,
    pub(crate) store: InMemoryStore,
    pub(crate) sender_keys: InMemorySenderKeyStore,
    pub(crate) groups: HashMap<String, Group>,
    /// Per group, the members that were handed this device's current sender key. A device hands
    /// its key out when it next sends to the group (as Signal does), not when it joins: a member
    /// that never sends costs its group nothing, which keeps a group of 1,000 linear to set up.
    pub(crate) key_holders: HashMap<String, BTreeSet<ProtocolAddress>>,
    /// Sender keys from devices not yet known as members, by group and sender (see `on_control`).
    pub(crate) held_keys: HashMap<(String, ProtocolAddress), Vec<SenderKeyDistributionMessage>>,
    /// Announcements that came before the changes they build on (see `control::catch_up`).
    pub(crate) pending_changes: Vec<PendingChange>,
    /// Forks detected and not yet taken by [`Device::take_forks`].
    pub(crate) forks: Vec<ClientError>,
    /// This device's changes waiting for their hub, by group (see `change`).
    pub(crate) proposals: HashMap<String, Proposal>,
    /// The order keys of the groups this device is an admin of.
    pub(crate) order_keys: HashMap<String, crate::group::OrderKey>,
    /// Changes announced to this device, waiting for the hub's word that it ordered them (see
    /// [`Self::check_changes_with_hub`]), by group and sender.
    pub(crate) awaiting_hub: HashMap<(String, ProtocolAddress), PendingChange>,
    /// Whether a change waits for the hub's word (a networked device) or takes the announcing
    /// admin's (a device driven without relays).
    pub(crate) changes_need_hub: bool,
    pub(crate) next_prekey_id: u32,
    /// The suites this device offers in its bundles and accepts, best first, and their names as
    /// its first messages state them (encoded once).
    pub(crate) suites: Vec<Suite>,
    pub(crate) stated_suites: Vec<u8>,
    /// The person this device belongs to, if any, and the people it knows.
    pub(crate) person: Option<crate::person::Person>,
    pub(crate) people: crate::person::People,
    /// The users this person gave her record to (see `endpoint::people`).
    pub(crate) contacts: BTreeSet<String>,
    /// Whose messages this person accepted, and whom she blocked.
    pub(crate) consent: crate::consent::Consent,
    /// The channels this device posts to and follows.
    pub(crate) channels: crate::channel::Channels,
    /// The business account this device serves, if any.
    pub(crate) business: Option<crate::business::Business>,
    #[cfg(switchboard_inject_bugs)]
    pub(crate) bugs: InjectedBugs,
}

/// Deliberate defects, for checking that the simulator's invariants catch them. Never enable
/// outside such tests.
#[cfg(switchboard_inject_bugs)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InjectedBugs {
    /// Keep the current sender key when a member is removed, instead of rotating it.
    pub keep_sender_key_on_removal: bool,
    /// Accept a session started under a weaker suite than both sides accept.
    pub accept_downgrade: bool,
    /// Apply a group change from any member, not only from an admin (unsigned, and without
    /// asking the group's hub).
    pub accept_changes_from_members: bool,
}

impl Device {
    /// A new device with a fresh identity and signed prekey (made at time 0: see [`Self::new_at`]).
    pub fn new<R: CryptoRng + ?Sized>(address: ProtocolAddress, registration_id: u32, rng: &mut R) -> Self {
        Device::new_at(address, registration_id, 0, rng)
    }

    /// A new device with a fresh identity and signed prekey (id 1), made at `now_ms`
    /// (milliseconds since the Unix epoch; the signed prekey's age counts from it).
    pub fn new_at<R: CryptoRng + ?Sized>(address: ProtocolAddress, registration_id: u32, now_ms: u64, rng: &mut R) -> Self {
        let identity = IdentityKeyPair::generate(rng);
        let signed = SignedPreKeyRecord::generate(1, &identity, now_ms, rng);
        let mut store = InMemoryStore::new(identity, registration_id);
        store.save_signed_prekey(signed).expect("in-memory store");
        Device {
            address,
            store,
            sender_keys: Default::default(),
            groups: HashMap::new(),
            key_holders: HashMap::new(),
            held_keys: HashMap::new(),
            pending_changes: Vec::new(),
            forks: Vec::new(),
            proposals: HashMap::new(),
            order_keys: HashMap::new(),
            awaiting_hub: HashMap::new(),
            changes_need_hub: false,
            next_prekey_id: 1,
            suites: Suite::ALL.to_vec(),
            stated_suites: stated_suites(&Suite::ALL),
            person: None,
            people: Default::default(),
            contacts: BTreeSet::new(),
            consent: Default::default(),
            channels: Default::default(),
            business: None,
            #[cfg(switchboard_inject_bugs)]
            bugs: InjectedBugs::default(),
        }
    }

    /// Turns deliberate defects on (see [`InjectedBugs`]).
    #[cfg(switchboard_inject_bugs)]
    pub fn inject_bugs(&mut self, bugs: InjectedBugs) {
        self.bugs = bugs;
    }

    /// A fresh sender key for group `id` after a removal: no one holds it yet.
    fn rotate_after_removal<R: CryptoRng + ?Sized>(&mut self, id: &str, suite: Suite, rng: &mut R) -> Result<()> {
        #[cfg(switchboard_inject_bugs)]
        if self.bugs.keep_sender_key_on_removal {
            return Ok(());
        }
        self.fresh_key(id, suite, rng)
    }

    /// A fresh sender key for group `id`, held by no one yet.
    fn fresh_key<R: CryptoRng + ?Sized>(&mut self, id: &str, suite: Suite, rng: &mut R) -> Result<()> {
        sender_keys::rotate(&mut self.sender_keys, id, &self.address, suite, rng)?;
        self.key_holders.insert(id.to_owned(), BTreeSet::new());
        Ok(())
    }

    /// This device's address.
    pub fn address(&self) -> &ProtocolAddress {
        &self.address
    }

    /// This device's identity key.
    pub fn identity_key(&self) -> IdentityKey {
        *self.store.identity_key_pair().expect("in-memory store").identity_key()
    }

    /// Whether this device has a session with `address` (and so needs no bundle to write to it).
    pub fn has_session(&self, address: &ProtocolAddress) -> bool {
        self.store.session(address).is_some_and(|record| record.current().is_some())
    }

    /// The current session with `address`, if any (its suite, its base key).
    pub fn current_session(&self, address: &ProtocolAddress) -> Option<&switchboard_session::SessionState> {
        self.store.session(address)?.current()
    }

    /// Every device this device holds a session record with.
    pub fn session_peers(&self) -> impl Iterator<Item = &ProtocolAddress> {
        self.store.sessions().map(|(address, _)| address)
    }

    /// The public ratchet key this device currently sends to `address` under, if it has a
    /// session with it.
    pub fn sending_ratchet_key(&self, address: &ProtocolAddress) -> Option<switchboard_session::PublicKey> {
        self.store.session(address)?.current().map(|state| *state.sender_ratchet_key())
    }

    /// The sender keys this device holds (its own and other members'), read-only: what a member
    /// who keeps everything it was ever given could use.
    pub fn sender_key_store(&self) -> &InMemorySenderKeyStore {
        &self.sender_keys
    }

    /// Every sender key this device was handed: those it applied, and those it holds unused
    /// because their senders are not members as it knows the group. What someone in control of
    /// the device could read with (the simulator's invariants try it); a copy.
    pub fn every_sender_key_received(&self) -> InMemorySenderKeyStore {
        let mut store = self.sender_keys.clone();
        for ((group, sender), held) in &self.held_keys {
            for distribution in held {
                let _ = sender_keys::process_distribution(&mut store, group, sender, distribution);
            }
        }
        store
    }

    /// The group `id`, as this device sees it.
    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    /// Sends an application's own content to one device, with a franking commitment to it
    /// (see [`crate::franking`]).
    pub fn send<R: CryptoRng + ?Sized>(
        &mut self,
        to: &ProtocolAddress,
        content: &[u8],
        directory: &mut dyn BundleDirectory,
        rng: &mut R,
    ) -> Result<Outgoing> {
        let commitment = crate::franking::Commitment::new(content, rng);
        let payload = Self::application_payload(content, Vec::new(), &commitment.key, None);
        let mut outgoing = self.seal(to, &payload, directory, rng)?;
        outgoing.commitment = Some(commitment.commitment);
        Ok(outgoing)
    }

    /// Forks of groups detected since the last call (each a [`ClientError::GroupFork`]): the
    /// application shows them to the user, as a safety-number change is shown.
    pub fn take_forks(&mut self) -> Vec<ClientError> {
        std::mem::take(&mut self.forks)
    }

    /// Encrypts `plaintext` once for every other member of group `id`, with this device's sender
    /// key handed to the members that do not hold it yet. Those members count as holding it from
    /// now on: a caller that cannot seal or send `key_distributions` must say so with
    /// [`Self::key_not_delivered`], or they never get it.
    pub fn encrypt_group<R: CryptoRng + ?Sized>(&mut self, id: &str, plaintext: &[u8], rng: &mut R) -> Result<GroupMessage> {
        let group = self.groups.get(id).ok_or_else(|| ClientError::UnknownGroup(id.to_owned()))?;
        let recipients: Vec<ProtocolAddress> = self.others(group).collect();
        let holders = self.key_holders.get(id);
        let missing: Vec<ProtocolAddress> =
            recipients.iter().filter(|member| holders.is_none_or(|holders| !holders.contains(*member))).cloned().collect();
        let key_distributions = if missing.is_empty() {
            Vec::new()
        } else {
            let suite = group.suite();
            let distribution = sender_keys::create_distribution(&mut self.sender_keys, id, &self.address, suite, rng)?;
            let group = self.groups.get(id).expect("looked up above");
            self.send_key(group, &distribution, &missing)
        };
        let message = sender_keys::encrypt(&mut self.sender_keys, id, &self.address, plaintext, rng)?;
        self.key_holders.entry(id.to_owned()).or_default().extend(missing);
        Ok(GroupMessage { group: id.to_owned(), recipients, bytes: message.serialize().to_vec(), key_distributions })
    }

    /// The key distributions of an [`Self::encrypt_group`] did not go out: their recipients get
    /// this device's key with its next group message instead.
    pub fn key_not_delivered(&mut self, id: &str, distributions: &[PendingSend]) {
        if let Some(holders) = self.key_holders.get_mut(id) {
            for distribution in distributions {
                holders.remove(&distribution.to);
            }
        }
    }

    /// Decrypts a group message that `sender`, a current member, sent to group `id`.
    pub fn decrypt_group(&mut self, id: &str, sender: &ProtocolAddress, bytes: &[u8]) -> Result<Vec<u8>> {
        let group = self.groups.get(id).ok_or_else(|| ClientError::UnknownGroup(id.to_owned()))?;
        if !group.members().contains(sender) {
            return Err(ClientError::NotAMember { group: id.to_owned(), sender: sender.clone() });
        }
        let message = SenderKeyMessage::parse(bytes)?;
        Ok(sender_keys::decrypt(&mut self.sender_keys, id, sender, &message)?)
    }

    /// Handles a pairwise message from `from`: decrypts it and acts on it. Returns what it meant
    /// and any messages this device must send in response, sealed with bundles from `directory`
    /// where needed (none today: keys go out with the next group message).
    pub fn receive<R: CryptoRng + ?Sized>(
        &mut self,
        from: &ProtocolAddress,
        message: &CiphertextMessage,
        directory: &mut dyn BundleDirectory,
        rng: &mut R,
    ) -> Result<(Received, Vec<Outgoing>)> {
        let (received, pending) = self.receive_pending(from, message, rng)?;
        Ok((received, self.seal_all(pending, directory, rng)?))
    }

    /// Like [`Self::receive`], but returns the responses unsealed, for a caller that must fetch
    /// bundles before it can seal them ([`Self::seal_all`]).
    pub fn receive_pending<R: CryptoRng + ?Sized>(
        &mut self,
        from: &ProtocolAddress,
        message: &CiphertextMessage,
        rng: &mut R,
    ) -> Result<(Received, Vec<PendingSend>)> {
        #[cfg(switchboard_inject_bugs)]
        let accept_downgrade = self.bugs.accept_downgrade;
        #[cfg(not(switchboard_inject_bugs))]
        let accept_downgrade = false;
        let accepted = &self.suites;
        let plaintext = session::decrypt_accepting(&mut self.store, from, message, rng, |suite, plaintext| {
            if accept_downgrade { Ok(()) } else { refuse_downgrade(accepted, suite, plaintext) }
        })?;
        if let CiphertextMessage::PreKey(first) = message
            && let Some(prekey) = first.prekey_id()
        {
            // The bundle of that one-time prekey was handed out once: its other KEM prekey
            // serves no one now.
            self.forget_kem_prekeys_beside(prekey);
        }
        let payload: PairwisePayload = decode(&plaintext, limits::MAX_PAYLOAD_LEN)?;
        match payload.body {
            Some(Body::Application(content)) if payload.delivered_to.is_empty() => {
                if payload.agent.len() > crate::business::MAX_AGENT_NAME || payload.agent.chars().any(char::is_control) {
                    return Err(ClientError::InvalidPayload("an agent's name is at most 64 bytes of printable text"));
                }
                let agent = (!payload.agent.is_empty()).then_some(payload.agent);
                Ok((Received::Application { content, franking_key: payload.franking_key, agent }, Vec::new()))
            }
            Some(Body::Application(content)) => {
                if payload.delivered_to.len() > crate::person::MAX_LINKED_ACCOUNTS {
                    return Err(ClientError::InvalidPayload("a message delivered to more accounts than a person links"));
                }
                Ok((Received::PersonMessage { content, delivered_to: payload.delivered_to, franking_key: payload.franking_key }, Vec::new()))
            }
            Some(Body::Consent(change)) => Ok((self.on_consent(from, change)?, Vec::new())),
            Some(Body::Transcript(transcript)) => Ok((self.on_transcript(from, transcript)?, Vec::new())),
            Some(Body::Person(record)) => Ok((self.on_person(from, record)?, Vec::new())),
            Some(Body::KnownPerson(known)) => Ok((self.on_known_person(from, known)?, Vec::new())),
            Some(Body::GroupControl(control)) => self.on_control(from, &control, rng),
            Some(Body::Channel(message)) => self.on_channel(from, message, rng),
            Some(Body::Business(change)) => Ok((self.on_business(from, change)?, Vec::new())),
            Some(Body::SessionStart(_)) => {
                // What this device sent over the refused session never arrived, its sender keys
                // included: they go out again with its next message to each group.
                for holders in self.key_holders.values_mut() {
                    holders.remove(from);
                }
                Ok((Received::SessionStarted, Vec::new()))
            }
            None => Err(ClientError::InvalidPayload("empty payload")),
        }
    }

    fn others<'a>(&'a self, group: &'a Group) -> impl Iterator<Item = ProtocolAddress> + 'a {
        group.members().iter().filter(move |member| **member != self.address).cloned()
    }

    /// This device's sender key for `group`, handed to `to`: the group's id, epoch and suite with
    /// the key, and no member list (membership travels in announcements only, so a key for a
    /// group of 1,000 costs a few hundred bytes, not the whole list).
    fn send_key(&self, group: &Group, distribution: &SenderKeyDistributionMessage, to: &[ProtocolAddress]) -> Vec<PendingSend> {
        Self::pending(group.key_control(distribution.serialize().to_vec()), to)
    }

    fn pending(control: GroupControl, to: &[ProtocolAddress]) -> Vec<PendingSend> {
        let payload: std::sync::Arc<[u8]> = PairwisePayload { body: Some(Body::GroupControl(control)), ..Default::default() }.encode_to_vec().into();
        to.iter().map(|member| PendingSend { to: member.clone(), payload: payload.clone(), commitment: None }).collect()
    }

    /// Encrypts pending sends (see [`PendingSend`]), all or none: when a recipient has neither a
    /// session nor a bundle in `directory`, it fails before anything is sealed.
    pub fn seal_all<R: CryptoRng + ?Sized>(
        &mut self,
        pending: Vec<PendingSend>,
        directory: &mut dyn BundleDirectory,
        rng: &mut R,
    ) -> Result<Vec<Outgoing>> {
        if let Some(missing) = pending.iter().find(|send| !self.has_session(&send.to) && !directory.has_bundle(&send.to)) {
            return Err(ClientError::NoBundle(missing.to.clone()));
        }
        pending.into_iter().map(|send| self.seal_pending(&send, directory, rng)).collect()
    }

    /// Encrypts each pending send on its own, and says exactly which were sealed and which were
    /// not (with why): a recipient that fails changes nothing for the others.
    pub fn seal_each<R: CryptoRng + ?Sized>(
        &mut self,
        pending: Vec<PendingSend>,
        directory: &mut dyn BundleDirectory,
        rng: &mut R,
    ) -> Sealing {
        let mut sealing = Sealing::default();
        for send in pending {
            match self.seal_pending(&send, directory, rng) {
                Ok(outgoing) => sealing.sealed.push(outgoing),
                Err(error) => sealing.failed.push((send, error)),
            }
        }
        sealing
    }

    /// Encrypts one pending send, its franking commitment kept with it.
    fn seal_pending<R: CryptoRng + ?Sized>(&mut self, send: &PendingSend, directory: &mut dyn BundleDirectory, rng: &mut R) -> Result<Outgoing> {
        let mut outgoing = self.seal(&send.to, &send.payload, directory, rng)?;
        outgoing.commitment = send.commitment;
        Ok(outgoing)
    }

    /// Encrypts a payload for `to`, starting a session from its bundle first if there is none
    /// (under the best suite the bundle offers).
    fn seal<R: CryptoRng + ?Sized>(
        &mut self,
        to: &ProtocolAddress,
        payload: &[u8],
        directory: &mut dyn BundleDirectory,
        rng: &mut R,
    ) -> Result<Outgoing> {
        let stated = &self.stated_suites;
        // The recipient reads no payload over this (with the suites a first message states).
        if payload.len() + stated.len() > limits::MAX_PAYLOAD_LEN {
            return Err(ClientError::InvalidPayload("a payload over the limit its recipient reads"));
        }
        if !self.has_session(to) {
            let bundle = directory.fetch_bundle(to).ok_or_else(|| ClientError::NoBundle(to.clone()))?;
            let suite = self
                .suites
                .iter()
                .copied()
                .find(|suite| bundle.offers(*suite))
                .ok_or_else(|| ClientError::Session(switchboard_session::Error::UnsupportedSuite(format!("{to} offers none of this device's suites"))))?;
            session::process_verified_bundle(&mut self.store, to, &bundle, suite, rng)?;
        }
        let awaiting_reply = self.store.session(to).and_then(|record| record.current()).is_some_and(|state| state.awaiting_reply());
        let message = if awaiting_reply {
            // A PreKeySignalMessage: state our suites, for the responder's downgrade check. A
            // repeated field appended to an encoded message is that message with the field set.
            let mut first = payload.to_vec();
            first.extend_from_slice(stated);
            session::encrypt(&mut self.store, to, &first)?
        } else {
            session::encrypt(&mut self.store, to, payload)?
        };
        Ok(Outgoing { to: to.clone(), message, commitment: None })
    }
}

/// The `suites` field of a [`PairwisePayload`]: every suite this device accepts, best first.
pub(crate) fn stated_suites(suites: &[Suite]) -> Vec<u8> {
    let suites = suites.iter().map(|suite| suite.name().to_owned()).collect();
    PairwisePayload { body: None, suites, ..Default::default() }.encode_to_vec()
}

/// The responder's check on a session a PreKeySignalMessage starts: when the initiator states its
/// suites, the session must be under the best suite both accept (`accepted`: what this device
/// accepts and its bundles offer, best first, in [`Suite::ALL`]'s order, as the initiator's
/// list is). A weaker one means the suite list or a KEM prekey was taken out of this device's
/// bundle on the way: the session is refused. An initiator that states nothing (a plain
/// libsignal peer) is held only to `accepted`: a device that accepts the post-quantum suites
/// alone takes no classical session from anyone.
fn refuse_downgrade(accepted: &[Suite], chosen: Suite, plaintext: &[u8]) -> Result<()> {
    if !accepted.contains(&chosen) {
        return Err(ClientError::Session(switchboard_session::Error::UnsupportedSuite(format!("{chosen} is not accepted here"))));
    }
    let payload: PairwisePayload = decode(plaintext, limits::MAX_PAYLOAD_LEN)?;
    let best = accepted.iter().copied().find(|suite| payload.suites.iter().any(|name| name == suite.name()));
    let rank = |suite: Suite| Suite::ALL.iter().position(|known| *known == suite);
    match best {
        Some(best) if rank(best) < rank(chosen) => Err(ClientError::Downgrade { chosen, best }),
        _ => Ok(()),
    }
}
