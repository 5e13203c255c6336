//! A device's prekeys over their life: bundles to publish (one-time prekeys, each with one-time KEM
//! prekeys for the post-quantum suites it offers, and one last-resort bundle), the signed prekey's
//! rotation, and what is forgotten when.
//!
//! KEM prekey ids are derived, so that no further counter has to be kept: a one-time KEM prekey
//! published beside one-time prekey `p` has id `2p + k` (`k` = 0 for Kyber-1024, 1 for
//! ML-KEM-1024; one-time prekey ids stay below 2³⁰); a last-resort KEM prekey made with signed
//! prekey `s` has id `2³¹ | (2s + k mod 2³¹)`, and goes when `s` does.

use rand_core::CryptoRng;
use switchboard_session::prekey::{KemPreKeyRecord, PreKeyRecord, SignedKemPreKey, SignedPreKeyRecord, SignedSuites};
use switchboard_session::store::{IdentityKeyStore, KemPreKeyStore, PreKeyStore, SignedPreKeyStore};
use switchboard_session::{IdentityKeyPair, Kem, PreKeyBundle, Suite};

use super::Device;

/// The top bit of a last-resort KEM prekey's id.
const LAST_RESORT_KEM_BIT: u32 = 1 << 31;

fn kem_index(kem: Kem) -> u32 {
    match kem {
        Kem::Kyber1024 => 0,
        Kem::MlKem1024 => 1,
    }
}

fn one_time_kem_id(prekey_id: u32, kem: Kem) -> u32 {
    prekey_id.wrapping_mul(2).wrapping_add(kem_index(kem)) & !LAST_RESORT_KEM_BIT
}

fn last_resort_kem_id(signed_prekey_id: u32, kem: Kem) -> u32 {
    LAST_RESORT_KEM_BIT | (signed_prekey_id.wrapping_mul(2).wrapping_add(kem_index(kem)) & !LAST_RESORT_KEM_BIT)
}

impl Device {
    /// Sets the suites this device offers in its bundles and accepts (kept in [`Suite::ALL`]'s
    /// order of preference, which initiator and responder must share; an empty list is ignored).
    /// From the next bundles published on.
    pub fn set_suites(&mut self, suites: &[Suite]) {
        if !suites.is_empty() {
            self.suites = Suite::ALL.into_iter().filter(|suite| suites.contains(suite)).collect();
            self.stated_suites = super::stated_suites(&self.suites);
        }
    }

    /// The suites this device offers and accepts, best first.
    pub fn suites(&self) -> &[Suite] {
        &self.suites
    }

    /// The KEMs of the post-quantum suites this device offers.
    fn kems(&self) -> Vec<Kem> {
        let mut kems: Vec<Kem> = self.suites.iter().filter_map(|suite| suite.kem()).collect();
        kems.sort();
        kems.dedup();
        kems
    }

    /// `count` bundles to publish, each with a fresh one-time prekey (and a fresh one-time KEM
    /// prekey for each post-quantum suite offered), then one last-resort bundle without a
    /// one-time prekey (with the last-resort KEM prekeys of the current signed prekey), which the
    /// relay hands out once the others are gone.
    pub fn publish_bundles<R: CryptoRng + ?Sized>(&mut self, count: u32, rng: &mut R) -> Vec<PreKeyBundle> {
        let identity = self.store.identity_key_pair().expect("in-memory store");
        let signed = self.current_signed_prekey().clone();
        let suites = SignedSuites::sign(&self.suites, &identity, rng);
        let kems = self.kems();
        let mut bundles = Vec::with_capacity(count as usize + 1);
        for _ in 0..count {
            let prekey = PreKeyRecord::generate(self.next_prekey_id, rng);
            self.next_prekey_id += 1;
            let kem_prekeys = kems
                .iter()
                .map(|kem| self.new_kem_prekey(one_time_kem_id(prekey.id, *kem), *kem, false, &identity, signed.timestamp, rng))
                .collect();
            bundles.push(self.bundle(&identity, &signed, Some(&prekey), &suites, kem_prekeys));
            self.store.save_prekey(prekey).expect("in-memory store");
        }
        let last_resort = kems
            .iter()
            .map(|kem| {
                let id = last_resort_kem_id(signed.id, *kem);
                match self.store.kem_prekey(id).expect("in-memory store") {
                    Some(held) if held.kem() == *kem => held.signed_public(),
                    _ => self.new_kem_prekey(id, *kem, true, &identity, signed.timestamp, rng),
                }
            })
            .collect();
        bundles.push(self.bundle(&identity, &signed, None, &suites, last_resort));
        bundles
    }

    fn bundle(
        &self,
        identity: &IdentityKeyPair,
        signed: &SignedPreKeyRecord,
        prekey: Option<&PreKeyRecord>,
        suites: &SignedSuites,
        kem_prekeys: Vec<SignedKemPreKey>,
    ) -> PreKeyBundle {
        PreKeyBundle {
            registration_id: self.store.local_registration_id().expect("in-memory store"),
            device_id: self.address.device_id(),
            identity_key: *identity.identity_key(),
            signed_prekey_id: signed.id,
            signed_prekey: signed.key_pair.public,
            signed_prekey_signature: signed.signature.to_vec(),
            prekey: prekey.map(|prekey| (prekey.id, prekey.key_pair.public)),
            suites: Some(suites.clone()),
            kem_prekeys,
        }
    }

    /// A new KEM prekey, kept in the store; what a bundle carries of it.
    fn new_kem_prekey<R: CryptoRng + ?Sized>(
        &mut self,
        id: u32,
        kem: Kem,
        last_resort: bool,
        identity: &IdentityKeyPair,
        timestamp: u64,
        rng: &mut R,
    ) -> SignedKemPreKey {
        let record = KemPreKeyRecord::generate(id, kem, last_resort, identity, timestamp, rng);
        let public = record.signed_public();
        self.store.save_kem_prekey(record).expect("in-memory store");
        public
    }

    /// The signed prekey bundles carry now (the newest).
    pub fn current_signed_prekey(&self) -> &SignedPreKeyRecord {
        self.store.signed_prekeys().max_by_key(|record| record.id).expect("made with the device, never all removed")
    }

    /// Makes a new signed prekey at `now_ms`, which bundles carry from now on (with new
    /// last-resort KEM prekeys); the ones before it stay (first messages naming them may be on
    /// their way) until [`Self::forget_signed_prekeys_superseded_before`]. Returns its id: the
    /// time in seconds, or one more than the current id if that is larger, so that a device
    /// restored from an older copy of its state does not make a second key under an id its relay
    /// already holds.
    pub fn rotate_signed_prekey<R: CryptoRng + ?Sized>(&mut self, now_ms: u64, rng: &mut R) -> u32 {
        let identity = self.store.identity_key_pair().expect("in-memory store");
        let by_clock = u32::try_from(now_ms / 1000).unwrap_or(u32::MAX);
        let id = self.current_signed_prekey().id.saturating_add(1).max(by_clock);
        self.store.save_signed_prekey(SignedPreKeyRecord::generate(id, &identity, now_ms, rng)).expect("in-memory store");
        id
    }

    /// Forgets every signed prekey that a newer one replaced at or before `cutoff_ms`, with the
    /// last-resort KEM prekeys made with it: a first message naming one is refused from then on.
    /// Returns how many signed prekeys.
    pub fn forget_signed_prekeys_superseded_before(&mut self, cutoff_ms: u64) -> usize {
        let records: Vec<(u32, u64)> = self.store.signed_prekeys().map(|record| (record.id, record.timestamp)).collect();
        let superseded: Vec<u32> = records
            .iter()
            .filter(|(id, _)| records.iter().any(|(newer, made)| newer > id && *made <= cutoff_ms))
            .map(|(id, _)| *id)
            .collect();
        for id in &superseded {
            self.store.remove_signed_prekey(*id).expect("in-memory store");
            for kem in [Kem::Kyber1024, Kem::MlKem1024] {
                self.store.remove_kem_prekey(last_resort_kem_id(*id, kem)).expect("in-memory store");
            }
        }
        superseded.len()
    }

    /// Forgets the one-time KEM prekeys published beside one-time prekey `prekey`.
    pub(crate) fn forget_kem_prekeys_beside(&mut self, prekey: u32) {
        for kem in [Kem::Kyber1024, Kem::MlKem1024] {
            self.store.remove_kem_prekey(one_time_kem_id(prekey, kem)).expect("in-memory store");
        }
    }

    /// Forgets the one-time prekeys numbered below `id`, and the one-time KEM prekeys published
    /// with them: handed out long ago, and never used.
    pub(crate) fn forget_prekeys_below(&mut self, id: u32) {
        let old: Vec<u32> = self.store.prekeys().map(|prekey| prekey.id).filter(|prekey| *prekey < id).collect();
        for prekey in old {
            self.store.remove_prekey(prekey).expect("in-memory store");
        }
        let old_kem: Vec<u32> = self
            .store
            .kem_prekeys()
            .filter(|record| !record.last_resort && record.id < one_time_kem_id(id, Kem::Kyber1024))
            .map(|record| record.id)
            .collect();
        for kem_prekey in old_kem {
            self.store.remove_kem_prekey(kem_prekey).expect("in-memory store");
        }
    }
}
