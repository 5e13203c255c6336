//! One device: its identity, its pairwise sessions, its sender keys and its groups.

use std::collections::HashMap;

use rand_core::CryptoRng;
use switchboard_session::group::{self as sender_keys, InMemorySenderKeyStore, SenderKeyDistributionMessage, SenderKeyMessage};
use switchboard_session::prekey::{PreKeyRecord, SignedPreKeyRecord, SignedSuites};
use switchboard_session::store::{IdentityKeyStore, PreKeyStore, SignedPreKeyStore};
use switchboard_session::{CiphertextMessage, IdentityKey, IdentityKeyPair, InMemoryStore, PreKeyBundle, ProtocolAddress, Suite, session};
use switchboard_wire::switchboard::{GroupControl, PairwisePayload, pairwise_payload::Body};
use switchboard_wire::{Message, decode, limits};

use crate::directory::BundleDirectory;
use crate::error::ClientError;
use crate::group::Group;

type Result<T> = std::result::Result<T, ClientError>;

const SIGNED_PREKEY_ID: u32 = 1;

/// A pairwise message to send to one device.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub to: ProtocolAddress,
    pub message: CiphertextMessage,
}

/// A pairwise payload decided on but not yet encrypted: sealing it may need the recipient's
/// bundle, which a networked client fetches first.
#[derive(Clone, Debug)]
pub struct PendingSend {
    pub to: ProtocolAddress,
    body: Body,
}

/// A group message: encrypted once, delivered to every other member.
#[derive(Clone, Debug)]
pub struct GroupMessage {
    pub group: String,
    pub recipients: Vec<ProtocolAddress>,
    pub bytes: Vec<u8>,
}

/// What a received pairwise message meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// An application's own content.
    Application(Vec<u8>),
    /// A group was joined or changed, or a member's sender key arrived.
    Group { group: String, epoch: u64 },
    /// This device was removed from the group; its state for the group is gone.
    RemovedFromGroup { group: String },
}

/// One device of one person.
pub struct Device {
    pub(crate) address: ProtocolAddress,
    pub(crate) store: InMemoryStore,
    pub(crate) sender_keys: InMemorySenderKeyStore,
    pub(crate) groups: HashMap<String, Group>,
    pub(crate) next_prekey_id: u32,
}

impl Device {
    /// A new device with a fresh identity and signed prekey.
    pub fn new<R: CryptoRng + ?Sized>(address: ProtocolAddress, registration_id: u32, rng: &mut R) -> Self {
        let identity = IdentityKeyPair::generate(rng);
        let signed = SignedPreKeyRecord::generate(SIGNED_PREKEY_ID, &identity, 0, rng);
        let mut store = InMemoryStore::new(identity, registration_id);
        store.save_signed_prekey(signed).expect("in-memory store");
        Device { address, store, sender_keys: Default::default(), groups: HashMap::new(), next_prekey_id: 1 }
    }

    /// This device's address.
    pub fn address(&self) -> &ProtocolAddress {
        &self.address
    }

    /// This device's identity key.
    pub fn identity_key(&self) -> IdentityKey {
        *self.store.identity_key_pair().expect("in-memory store").identity_key()
    }

    /// `count` bundles to publish, each with a fresh one-time prekey, offering every suite.
    pub fn publish_bundles<R: CryptoRng + ?Sized>(&mut self, count: u32, rng: &mut R) -> Vec<PreKeyBundle> {
        let identity = self.store.identity_key_pair().expect("in-memory store");
        let signed = self.store.signed_prekey(SIGNED_PREKEY_ID).expect("in-memory store").expect("made in new");
        let suites = SignedSuites::sign(&Suite::ALL, &identity, rng);
        (0..count)
            .map(|_| {
                let prekey = PreKeyRecord::generate(self.next_prekey_id, rng);
                self.next_prekey_id += 1;
                let bundle = PreKeyBundle {
                    registration_id: self.store.local_registration_id().expect("in-memory store"),
                    device_id: self.address.device_id(),
                    identity_key: *identity.identity_key(),
                    signed_prekey_id: signed.id,
                    signed_prekey: signed.key_pair.public,
                    signed_prekey_signature: signed.signature.to_vec(),
                    prekey: Some((prekey.id, prekey.key_pair.public)),
                    suites: Some(suites.clone()),
                };
                self.store.save_prekey(prekey).expect("in-memory store");
                bundle
            })
            .collect()
    }

    /// The group `id`, as this device sees it.
    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    /// Sends an application's own content to one device.
    pub fn send<R: CryptoRng + ?Sized>(
        &mut self,
        to: &ProtocolAddress,
        content: &[u8],
        directory: &mut dyn BundleDirectory,
        rng: &mut R,
    ) -> Result<Outgoing> {
        self.seal(to, Body::Application(content.to_vec()), directory, rng)
    }

    /// Creates group `id` with `members` (this device is added), and hands each member this
    /// device's sender key.
    pub fn create_group<R: CryptoRng + ?Sized>(
        &mut self,
        id: &str,
        members: impl IntoIterator<Item = ProtocolAddress>,
        suite: Suite,
        directory: &mut dyn BundleDirectory,
        rng: &mut R,
    ) -> Result<Vec<Outgoing>> {
        if self.groups.contains_key(id) {
            return Err(ClientError::InvalidChange("a group with that id exists"));
        }
        let mut group = Group { id: id.to_owned(), epoch: 0, members: members.into_iter().collect(), suite };
        group.members.insert(self.address.clone());
        // Always a fresh key: one kept from an earlier membership may be held by someone since
        // removed.
        let distribution = sender_keys::rotate(&mut self.sender_keys, id, &self.address, suite, rng)?;
        let others: Vec<_> = self.others(&group).collect();
        let pending = self.send_control(&group, Some(&distribution), false, &others);
        let outgoing = self.seal_all(pending, directory, rng)?;
        self.groups.insert(id.to_owned(), group);
        Ok(outgoing)
    }

    /// Adds `member` to group `id`: every member learns the new membership; the new member gets
    /// this device's current sender key now, and every other member's when they learn of it.
    pub fn add_member<R: CryptoRng + ?Sized>(
        &mut self,
        id: &str,
        member: ProtocolAddress,
        directory: &mut dyn BundleDirectory,
        rng: &mut R,
    ) -> Result<Vec<Outgoing>> {
        let mut group = self.groups.get(id).cloned().ok_or_else(|| ClientError::UnknownGroup(id.to_owned()))?;
        if !group.members.insert(member.clone()) {
            return Err(ClientError::InvalidChange("already a member"));
        }
        group.epoch = group.epoch.checked_add(1).ok_or(ClientError::InvalidChange("epoch exhausted"))?;
        let distribution = sender_keys::create_distribution(&mut self.sender_keys, id, &self.address, group.suite, rng)?;
        let existing: Vec<_> = self.others(&group).filter(|other| *other != member).collect();
        let mut pending = self.send_control(&group, None, false, &existing);
        pending.extend(self.send_control(&group, Some(&distribution), false, &[member]));
        let outgoing = self.seal_all(pending, directory, rng)?;
        self.groups.insert(id.to_owned(), group);
        Ok(outgoing)
    }

    /// Removes `member` from group `id`: this device rotates its sender key and hands the new one
    /// to the remaining members only; each of them does the same when it learns of the removal.
    pub fn remove_member<R: CryptoRng + ?Sized>(
        &mut self,
        id: &str,
        member: &ProtocolAddress,
        directory: &mut dyn BundleDirectory,
        rng: &mut R,
    ) -> Result<Vec<Outgoing>> {
        if *member == self.address {
            return Err(ClientError::InvalidChange("a device cannot remove itself this way"));
        }
        let mut group = self.groups.get(id).cloned().ok_or_else(|| ClientError::UnknownGroup(id.to_owned()))?;
        if !group.members.remove(member) {
            return Err(ClientError::InvalidChange("not a member"));
        }
        group.epoch = group.epoch.checked_add(1).ok_or(ClientError::InvalidChange("epoch exhausted"))?;
        let distribution = sender_keys::rotate(&mut self.sender_keys, id, &self.address, group.suite, rng)?;
        let remaining: Vec<_> = self.others(&group).collect();
        let mut pending = self.send_control(&group, Some(&distribution), false, &remaining);
        // The removed device learns it is out (and gets no key).
        pending.extend(self.send_control(&group, None, false, std::slice::from_ref(member)));
        let outgoing = self.seal_all(pending, directory, rng)?;
        self.groups.insert(id.to_owned(), group);
        Ok(outgoing)
    }

    /// Encrypts `plaintext` once for every other member of group `id`.
    pub fn encrypt_group<R: CryptoRng + ?Sized>(&mut self, id: &str, plaintext: &[u8], rng: &mut R) -> Result<GroupMessage> {
        let group = self.groups.get(id).ok_or_else(|| ClientError::UnknownGroup(id.to_owned()))?;
        let recipients = self.others(group).collect();
        let message = sender_keys::encrypt(&mut self.sender_keys, id, &self.address, plaintext, rng)?;
        Ok(GroupMessage { group: id.to_owned(), recipients, bytes: message.serialize().to_vec() })
    }

    /// Decrypts a group message that `sender`, a current member, sent to group `id`.
    pub fn decrypt_group(&mut self, id: &str, sender: &ProtocolAddress, bytes: &[u8]) -> Result<Vec<u8>> {
        let group = self.groups.get(id).ok_or_else(|| ClientError::UnknownGroup(id.to_owned()))?;
        if !group.members.contains(sender) {
            return Err(ClientError::NotAMember { group: id.to_owned(), sender: sender.clone() });
        }
        let message = SenderKeyMessage::parse(bytes)?;
        Ok(sender_keys::decrypt(&mut self.sender_keys, id, sender, &message)?)
    }

    /// Handles a pairwise message from `from`: decrypts it and acts on it. Returns what it meant
    /// and the messages this device must send in response (its sender key to a new member, or a
    /// rotated key after a removal), sealed with bundles from `directory` where needed.
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
        let plaintext = session::decrypt(&mut self.store, from, message, rng)?;
        let payload: PairwisePayload = decode(&plaintext, limits::MAX_PAYLOAD_LEN)?;
        match payload.body {
            Some(Body::Application(content)) => Ok((Received::Application(content), Vec::new())),
            Some(Body::GroupControl(control)) => self.on_control(from, &control, rng),
            None => Err(ClientError::InvalidPayload("empty payload")),
        }
    }

    fn on_control<R: CryptoRng + ?Sized>(
        &mut self,
        from: &ProtocolAddress,
        control: &GroupControl,
        rng: &mut R,
    ) -> Result<(Received, Vec<PendingSend>)> {
        let announced = Group::from_control(control)?;
        let distribution = match control.sender_key_distribution.as_slice() {
            [] => None,
            bytes => Some(SenderKeyDistributionMessage::parse(bytes)?),
        };
        let id = announced.id.clone();
        let current = self.groups.get(&id).cloned();
        if current.as_ref().is_some_and(|group| !group.members.contains(from)) || !announced.members.contains(from) {
            return Err(ClientError::NotAMember { group: id, sender: from.clone() });
        }

        let mut outgoing = Vec::new();
        let joining = current.is_none();
        let group = match current {
            // Joining: take the announced group and hand our own sender key to everyone.
            None => {
                if !announced.members.contains(&self.address) {
                    return Err(ClientError::InvalidPayload("a group this device is not in"));
                }
                // A fresh key on every (re)join: a key kept from an earlier membership may be held
                // by a member removed since.
                let ours = sender_keys::rotate(&mut self.sender_keys, &id, &self.address, announced.suite, rng)?;
                let others: Vec<_> = self.others(&announced).collect();
                outgoing = self.send_control(&announced, Some(&ours), false, &others);
                announced
            }
            // A change: apply it, and rotate after a removal or hand our key to newcomers.
            Some(current) if announced.epoch > current.epoch => {
                if !announced.members.contains(&self.address) {
                    self.groups.remove(&id);
                    return Ok((Received::RemovedFromGroup { group: id }, Vec::new()));
                }
                let removed = current.members.difference(&announced.members).next().is_some();
                let added: Vec<_> = announced.members.difference(&current.members).cloned().collect();
                if removed {
                    let fresh = sender_keys::rotate(&mut self.sender_keys, &id, &self.address, announced.suite, rng)?;
                    let others: Vec<_> = self.others(&announced).collect();
                    outgoing = self.send_control(&announced, Some(&fresh), false, &others);
                } else if !added.is_empty() {
                    let ours = sender_keys::create_distribution(&mut self.sender_keys, &id, &self.address, announced.suite, rng)?;
                    outgoing = self.send_control(&announced, Some(&ours), true, &added);
                }
                announced
            }
            // The same or an older epoch: only the sender key is news.
            Some(current) => current,
        };
        if let Some(distribution) = &distribution {
            sender_keys::process_distribution(&mut self.sender_keys, &id, from, distribution)?;
        }
        // A member that learnt of our arrival asks for our key (our own announcement may have
        // reached it too early); on joining, everyone got it already.
        if control.request_sender_key && !joining {
            let ours = sender_keys::create_distribution(&mut self.sender_keys, &id, &self.address, group.suite, rng)?;
            outgoing.extend(self.send_control(&group, Some(&ours), false, std::slice::from_ref(from)));
        }
        let epoch = group.epoch;
        self.groups.insert(id.clone(), group);
        Ok((Received::Group { group: id, epoch }, outgoing))
    }

    fn others<'a>(&'a self, group: &'a Group) -> impl Iterator<Item = ProtocolAddress> + 'a {
        group.members.iter().filter(move |member| **member != self.address).cloned()
    }

    fn send_control(
        &self,
        group: &Group,
        distribution: Option<&SenderKeyDistributionMessage>,
        request_sender_key: bool,
        to: &[ProtocolAddress],
    ) -> Vec<PendingSend> {
        let control = group.control(distribution.map(SenderKeyDistributionMessage::serialize), request_sender_key);
        to.iter().map(|member| PendingSend { to: member.clone(), body: Body::GroupControl(control.clone()) }).collect()
    }

    /// Encrypts pending sends (see [`PendingSend`]).
    pub fn seal_all<R: CryptoRng + ?Sized>(
        &mut self,
        pending: Vec<PendingSend>,
        directory: &mut dyn BundleDirectory,
        rng: &mut R,
    ) -> Result<Vec<Outgoing>> {
        pending.into_iter().map(|send| self.seal(&send.to, send.body, directory, rng)).collect()
    }

    /// Encrypts a payload for `to`, starting a session from its bundle first if there is none
    /// (under the best suite the bundle offers).
    fn seal<R: CryptoRng + ?Sized>(
        &mut self,
        to: &ProtocolAddress,
        body: Body,
        directory: &mut dyn BundleDirectory,
        rng: &mut R,
    ) -> Result<Outgoing> {
        if !session::has_session(&self.store, to)? {
            let bundle = directory.fetch_bundle(to).ok_or_else(|| ClientError::NoBundle(to.clone()))?;
            bundle.verify()?;
            let suite = Suite::ALL.into_iter().find(|suite| bundle.offers(*suite)).unwrap_or(Suite::SignalV3);
            session::process_prekey_bundle(&mut self.store, to, &bundle, suite, rng)?;
        }
        let payload = PairwisePayload { body: Some(body) }.encode_to_vec();
        let message = session::encrypt(&mut self.store, to, &payload)?;
        Ok(Outgoing { to: to.clone(), message })
    }
}
