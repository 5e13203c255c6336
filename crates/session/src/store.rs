//! What a device persists, as traits a caller implements over its own storage, and in-memory
//! implementations for tests, the simulator and benchmarks. Every method is synchronous and does
//! no I/O of this crate's own: a durable store does its I/O behind these calls.

use std::collections::{HashMap, VecDeque};

use crate::address::ProtocolAddress;
use crate::error::Result;
use crate::keys::{IdentityKey, IdentityKeyPair, PublicKey};
use crate::prekey::{KemPreKeyRecord, PreKeyRecord, SignedPreKeyRecord};
use crate::ratchet::record::SessionRecord;

/// The local identity, and the identities seen for remote addresses (trust on first use).
pub trait IdentityKeyStore {
    /// The local identity key pair.
    fn identity_key_pair(&self) -> Result<IdentityKeyPair>;
    /// The local device's registration id.
    fn local_registration_id(&self) -> Result<u32>;
    /// The identity stored for `address`, if any.
    fn identity(&self, address: &ProtocolAddress) -> Result<Option<IdentityKey>>;
    /// Stores `identity` as the one of `address`, replacing any other.
    fn save_identity(&mut self, address: &ProtocolAddress, identity: &IdentityKey) -> Result<()>;

    /// Trust on first use: an address with no stored identity trusts any; otherwise only the
    /// stored one. A caller accepts a changed key with [`Self::save_identity`].
    fn is_trusted_identity(&self, address: &ProtocolAddress, identity: &IdentityKey) -> Result<bool> {
        Ok(self.identity(address)?.is_none_or(|stored| stored == *identity))
    }
}

/// One-time prekeys.
pub trait PreKeyStore {
    /// The one-time prekey `id`, if it was not used yet.
    fn prekey(&self, id: u32) -> Result<Option<PreKeyRecord>>;
    /// Keeps a new one-time prekey.
    fn save_prekey(&mut self, record: PreKeyRecord) -> Result<()>;
    /// Deletes one-time prekey `id` (it started a session); no error if it is gone already.
    fn remove_prekey(&mut self, id: u32) -> Result<()>;
}

/// Signed prekeys.
pub trait SignedPreKeyStore {
    /// The signed prekey `id`, if it is still kept.
    fn signed_prekey(&self, id: u32) -> Result<Option<SignedPreKeyRecord>>;
    /// Keeps a new signed prekey.
    fn save_signed_prekey(&mut self, record: SignedPreKeyRecord) -> Result<()>;
    /// Forgets a signed prekey (rotated out, its grace period over): first messages naming it
    /// are refused from then on.
    fn remove_signed_prekey(&mut self, id: u32) -> Result<()>;
}

/// KEM prekeys (one-time and last-resort), for the post-quantum suites.
pub trait KemPreKeyStore {
    /// The KEM prekey `id`, if it is still kept.
    fn kem_prekey(&self, id: u32) -> Result<Option<KemPreKeyRecord>>;
    /// Keeps a new KEM prekey.
    fn save_kem_prekey(&mut self, record: KemPreKeyRecord) -> Result<()>;
    /// Forgets a KEM prekey (a one-time key used, or a last-resort key superseded), with the
    /// base keys recorded against it.
    fn remove_kem_prekey(&mut self, id: u32) -> Result<()>;
    /// Whether a session was started on last-resort KEM prekey `id` with `base_key` (a first
    /// message seen before: its replay, once that session is gone from the record, must not
    /// start it again).
    fn kem_prekey_used_with(&self, id: u32, base_key: &PublicKey) -> Result<bool>;
    /// Records that a session was started on last-resort KEM prekey `id` with `base_key`. A store
    /// keeps at least the newest [`crate::limits::MAX_LAST_RESORT_USES`] per key.
    fn mark_kem_prekey_used(&mut self, id: u32, base_key: &PublicKey) -> Result<()>;
}

/// Session records, one per remote device.
pub trait SessionStore {
    /// The session record of `address`, if there is one.
    fn load_session(&self, address: &ProtocolAddress) -> Result<Option<SessionRecord>>;
    /// Keeps `record` as the session record of `address`, replacing any before it.
    fn store_session(&mut self, address: &ProtocolAddress, record: SessionRecord) -> Result<()>;

    /// Runs `f` on the record of `address` (`None` if there is none) and keeps the record as `f`
    /// leaves it when `f` succeeds. Callers change the record only on success, so a failed `f`
    /// leaves it as it was. The default loads and stores; a store holding records in memory
    /// edits them in place, with no copy per message.
    fn with_session<T>(
        &mut self,
        address: &ProtocolAddress,
        f: impl FnOnce(&mut SessionRecord) -> Result<T>,
    ) -> Result<Option<T>>
    where
        Self: Sized,
    {
        let Some(mut record) = self.load_session(address)? else { return Ok(None) };
        let value = f(&mut record)?;
        self.store_session(address, record)?;
        Ok(Some(value))
    }

    /// As [`Self::with_session`], also giving `f` the store's trust decision for an identity
    /// (its [`IdentityKeyStore::is_trusted_identity`] for `address`), so that one visit to the
    /// record can plan a change, check the identity it depends on, and only then make it. The
    /// default loads and stores; a store in memory looks the record up once. A store that
    /// overrides [`Self::with_session`] (to make it a transaction, say) overrides this as well.
    fn with_trusted_session<T>(
        &mut self,
        address: &ProtocolAddress,
        f: impl FnOnce(&mut SessionRecord, &dyn Fn(&IdentityKey) -> Result<bool>) -> Result<T>,
    ) -> Result<Option<T>>
    where
        Self: IdentityKeyStore + Sized,
    {
        let Some(mut record) = self.load_session(address)? else { return Ok(None) };
        let value = f(&mut record, &|identity| self.is_trusted_identity(address, identity))?;
        self.store_session(address, record)?;
        Ok(Some(value))
    }
}

/// Everything a 1:1 session needs.
pub trait ProtocolStore: IdentityKeyStore + PreKeyStore + SignedPreKeyStore + KemPreKeyStore + SessionStore {}
impl<T: IdentityKeyStore + PreKeyStore + SignedPreKeyStore + KemPreKeyStore + SessionStore> ProtocolStore for T {}

/// All stores in memory.
#[derive(Clone, Debug)]
pub struct InMemoryStore {
    identity: IdentityKeyPair,
    registration_id: u32,
    /// Each remote address's identity and session record, side by side: an encrypt or decrypt
    /// finds both with one lookup.
    peers: HashMap<ProtocolAddress, Peer>,
    prekeys: HashMap<u32, PreKeyRecord>,
    signed_prekeys: HashMap<u32, SignedPreKeyRecord>,
    kem_prekeys: HashMap<u32, KemPreKeyRecord>,
    /// Base keys of the sessions started on each last-resort KEM prekey, oldest first.
    kem_prekey_uses: HashMap<u32, VecDeque<PublicKey>>,
}

/// What [`InMemoryStore`] keeps for one remote address.
#[derive(Clone, Debug, Default)]
struct Peer {
    identity: Option<IdentityKey>,
    session: Option<SessionRecord>,
}

impl InMemoryStore {
    /// An empty store for a device with `identity` and `registration_id`.
    pub fn new(identity: IdentityKeyPair, registration_id: u32) -> Self {
        InMemoryStore {
            identity,
            registration_id,
            peers: HashMap::new(),
            prekeys: HashMap::new(),
            signed_prekeys: HashMap::new(),
            kem_prekeys: HashMap::new(),
            kem_prekey_uses: HashMap::new(),
        }
    }

    /// How many one-time prekeys are left.
    pub fn prekey_count(&self) -> usize {
        self.prekeys.len()
    }

    /// The identities seen for remote addresses, for persisting the store.
    pub fn identities(&self) -> impl Iterator<Item = (&ProtocolAddress, &IdentityKey)> {
        self.peers.iter().filter_map(|(address, peer)| Some((address, peer.identity.as_ref()?)))
    }

    /// The one-time prekeys left, for persisting the store.
    pub fn prekeys(&self) -> impl Iterator<Item = &PreKeyRecord> {
        self.prekeys.values()
    }

    /// The signed prekeys, for persisting the store.
    pub fn signed_prekeys(&self) -> impl Iterator<Item = &SignedPreKeyRecord> {
        self.signed_prekeys.values()
    }

    /// The KEM prekeys, for persisting the store.
    pub fn kem_prekeys(&self) -> impl Iterator<Item = &KemPreKeyRecord> {
        self.kem_prekeys.values()
    }

    /// The base keys recorded against last-resort KEM prekeys, for persisting the store.
    pub fn kem_prekey_uses(&self) -> impl Iterator<Item = (u32, &PublicKey)> {
        self.kem_prekey_uses.iter().flat_map(|(id, keys)| keys.iter().map(move |key| (*id, key)))
    }

    /// The session records, for persisting the store.
    pub fn sessions(&self) -> impl Iterator<Item = (&ProtocolAddress, &SessionRecord)> {
        self.peers.iter().filter_map(|(address, peer)| Some((address, peer.session.as_ref()?)))
    }

    /// The session record of `address`, borrowed (no copy).
    pub fn session(&self, address: &ProtocolAddress) -> Option<&SessionRecord> {
        self.peers.get(address)?.session.as_ref()
    }

    /// The entry of `address`, made empty if there is none.
    fn peer_mut(&mut self, address: &ProtocolAddress) -> &mut Peer {
        // Looked up first so that a known address (every message) is not cloned for `entry`.
        if !self.peers.contains_key(address) {
            self.peers.insert(address.clone(), Peer::default());
        }
        self.peers.get_mut(address).expect("inserted above")
    }
}

impl IdentityKeyStore for InMemoryStore {
    fn identity_key_pair(&self) -> Result<IdentityKeyPair> {
        Ok(self.identity.clone())
    }
    fn local_registration_id(&self) -> Result<u32> {
        Ok(self.registration_id)
    }
    fn identity(&self, address: &ProtocolAddress) -> Result<Option<IdentityKey>> {
        Ok(self.peers.get(address).and_then(|peer| peer.identity))
    }
    fn save_identity(&mut self, address: &ProtocolAddress, identity: &IdentityKey) -> Result<()> {
        self.peer_mut(address).identity = Some(*identity);
        Ok(())
    }
}

impl PreKeyStore for InMemoryStore {
    fn prekey(&self, id: u32) -> Result<Option<PreKeyRecord>> {
        Ok(self.prekeys.get(&id).cloned())
    }
    fn save_prekey(&mut self, record: PreKeyRecord) -> Result<()> {
        self.prekeys.insert(record.id, record);
        Ok(())
    }
    fn remove_prekey(&mut self, id: u32) -> Result<()> {
        self.prekeys.remove(&id);
        Ok(())
    }
}

impl SignedPreKeyStore for InMemoryStore {
    fn signed_prekey(&self, id: u32) -> Result<Option<SignedPreKeyRecord>> {
        Ok(self.signed_prekeys.get(&id).cloned())
    }
    fn save_signed_prekey(&mut self, record: SignedPreKeyRecord) -> Result<()> {
        self.signed_prekeys.insert(record.id, record);
        Ok(())
    }
    fn remove_signed_prekey(&mut self, id: u32) -> Result<()> {
        self.signed_prekeys.remove(&id);
        Ok(())
    }
}

impl KemPreKeyStore for InMemoryStore {
    fn kem_prekey(&self, id: u32) -> Result<Option<KemPreKeyRecord>> {
        Ok(self.kem_prekeys.get(&id).cloned())
    }
    fn save_kem_prekey(&mut self, record: KemPreKeyRecord) -> Result<()> {
        self.kem_prekeys.insert(record.id, record);
        Ok(())
    }
    fn remove_kem_prekey(&mut self, id: u32) -> Result<()> {
        self.kem_prekeys.remove(&id);
        self.kem_prekey_uses.remove(&id);
        Ok(())
    }
    fn kem_prekey_used_with(&self, id: u32, base_key: &PublicKey) -> Result<bool> {
        Ok(self.kem_prekey_uses.get(&id).is_some_and(|keys| keys.contains(base_key)))
    }
    fn mark_kem_prekey_used(&mut self, id: u32, base_key: &PublicKey) -> Result<()> {
        let keys = self.kem_prekey_uses.entry(id).or_default();
        keys.push_back(*base_key);
        while keys.len() > crate::limits::MAX_LAST_RESORT_USES {
            keys.pop_front();
        }
        Ok(())
    }
}

impl SessionStore for InMemoryStore {
    fn load_session(&self, address: &ProtocolAddress) -> Result<Option<SessionRecord>> {
        Ok(self.session(address).cloned())
    }
    fn store_session(&mut self, address: &ProtocolAddress, record: SessionRecord) -> Result<()> {
        self.peer_mut(address).session = Some(record);
        Ok(())
    }

    fn with_session<T>(
        &mut self,
        address: &ProtocolAddress,
        f: impl FnOnce(&mut SessionRecord) -> Result<T>,
    ) -> Result<Option<T>> {
        self.peers.get_mut(address).and_then(|peer| peer.session.as_mut()).map(f).transpose()
    }

    fn with_trusted_session<T>(
        &mut self,
        address: &ProtocolAddress,
        f: impl FnOnce(&mut SessionRecord, &dyn Fn(&IdentityKey) -> Result<bool>) -> Result<T>,
    ) -> Result<Option<T>> {
        // The trust rule is this store's `is_trusted_identity` (the trait's default, trust on
        // first use), on the identity beside the record: an override of it belongs here too.
        let Some(Peer { identity: stored, session: Some(record) }) = self.peers.get_mut(address) else { return Ok(None) };
        let trusted = |identity: &IdentityKey| Ok(stored.is_none_or(|stored| stored == *identity));
        f(record, &trusted).map(Some)
    }
}
