//! A device with in-memory stores and a stock of prekeys, for tests, examples and benchmarks.

use rand_core::CryptoRng;

use crate::keys::IdentityKeyPair;
use crate::prekey::{KemPreKeyRecord, PreKeyBundle, PreKeyRecord, SignedKemPreKey, SignedPreKeyRecord, SignedSuites};
use crate::store::{IdentityKeyStore, InMemoryStore, KemPreKeyStore, PreKeyStore, SignedPreKeyStore};
use crate::suite::Suite;

/// One device: an identity, a signed prekey (id 1), one-time prekeys handed out in order, and a
/// KEM prekey for each post-quantum suite a bundle offers (one-time with a one-time prekey,
/// last-resort without).
pub struct Device {
    /// Everything the device keeps: identity, prekeys, sessions, sender keys.
    pub store: InMemoryStore,
    /// Its registration id, as its bundles carry it.
    pub registration_id: u32,
    /// Its device id, as its bundles and addresses carry it.
    pub device_id: u32,
    next_prekey: u32,
    next_kem_prekey: u32,
}

/// The signed prekey id every [`Device`] uses.
pub const SIGNED_PREKEY_ID: u32 = 1;

impl Device {
    /// A new device with a fresh identity.
    pub fn new<R: CryptoRng + ?Sized>(registration_id: u32, device_id: u32, rng: &mut R) -> Self {
        Self::with_identity(IdentityKeyPair::generate(rng), registration_id, device_id, rng)
    }

    /// A new device of an existing identity (another device of the same person).
    pub fn with_identity<R: CryptoRng + ?Sized>(
        identity: IdentityKeyPair,
        registration_id: u32,
        device_id: u32,
        rng: &mut R,
    ) -> Self {
        let signed = SignedPreKeyRecord::generate(SIGNED_PREKEY_ID, &identity, 0, rng);
        let mut store = InMemoryStore::new(identity, registration_id);
        store.save_signed_prekey(signed).expect("in-memory store");
        Device { store, registration_id, device_id, next_prekey: 1, next_kem_prekey: 1 }
    }

    /// The device's identity key.
    pub fn identity_key(&self) -> crate::keys::IdentityKey {
        *self.store.identity_key_pair().expect("in-memory store").identity_key()
    }

    /// A bundle with a fresh one-time prekey, offering `suites` (signed).
    pub fn bundle<R: CryptoRng + ?Sized>(&mut self, suites: &[Suite], rng: &mut R) -> PreKeyBundle {
        let prekey = PreKeyRecord::generate(self.next_prekey, rng);
        self.next_prekey += 1;
        let public = prekey.key_pair.public;
        let id = prekey.id;
        self.store.save_prekey(prekey).expect("in-memory store");
        let mut bundle = self.bundle_with(suites, false, rng);
        bundle.prekey = Some((id, public));
        bundle
    }

    /// A bundle with no one-time prekey (as when the stock has run out).
    pub fn bundle_without_prekey<R: CryptoRng + ?Sized>(&mut self, suites: &[Suite], rng: &mut R) -> PreKeyBundle {
        self.bundle_with(suites, true, rng)
    }

    fn bundle_with<R: CryptoRng + ?Sized>(&mut self, suites: &[Suite], last_resort: bool, rng: &mut R) -> PreKeyBundle {
        let identity = self.store.identity_key_pair().expect("in-memory store");
        let signed = self.store.signed_prekey(SIGNED_PREKEY_ID).expect("in-memory store").expect("made in new");
        PreKeyBundle {
            registration_id: self.registration_id,
            device_id: self.device_id,
            identity_key: *identity.identity_key(),
            signed_prekey_id: signed.id,
            signed_prekey: signed.key_pair.public,
            signed_prekey_signature: signed.signature.to_vec(),
            prekey: None,
            suites: Some(SignedSuites::sign(suites, &identity, rng)),
            kem_prekeys: self.kem_prekeys(suites, last_resort, &identity, rng),
        }
    }

    /// Fresh KEM prekeys, stored, for the post-quantum suites in `suites`.
    fn kem_prekeys<R: CryptoRng + ?Sized>(
        &mut self,
        suites: &[Suite],
        last_resort: bool,
        identity: &IdentityKeyPair,
        rng: &mut R,
    ) -> Vec<SignedKemPreKey> {
        let mut kems: Vec<_> = suites.iter().filter_map(|suite| suite.kem()).collect();
        kems.dedup();
        kems.into_iter()
            .map(|kem| {
                let record = KemPreKeyRecord::generate(self.next_kem_prekey, kem, last_resort, identity, 0, rng);
                self.next_kem_prekey += 1;
                let public = record.signed_public();
                self.store.save_kem_prekey(record).expect("in-memory store");
                public
            })
            .collect()
    }
}
