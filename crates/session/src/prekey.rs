//! Prekeys and bundles: the keys a device publishes so that others can start sessions with it
//! while it is offline, and the checks an initiator makes before trusting them.

use rand_core::CryptoRng;
use switchboard_wire::{Message, decode, limits, signal, switchboard};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::kem::{KEM_KEYGEN_SEED_LEN, Kem, KemKeyPair, KemPublicKey};
use crate::keys::{IdentityKey, IdentityKeyPair, KeyPair, PublicKey};
use crate::suite::Suite;
use crate::xeddsa::SIGNATURE_LEN;

/// A one-time prekey: used by at most one session, then deleted.
#[derive(Clone, Debug)]
pub struct PreKeyRecord {
    /// Its id, as bundles and first messages name it.
    pub id: u32,
    /// Its X25519 key pair.
    pub key_pair: KeyPair,
}

impl PreKeyRecord {
    /// A fresh one-time prekey.
    pub fn generate<R: CryptoRng + ?Sized>(id: u32, rng: &mut R) -> Self {
        PreKeyRecord { id, key_pair: KeyPair::generate(rng) }
    }

    /// Serializes as libsignal's PreKeyRecordStructure.
    pub fn serialize(&self) -> Zeroizing<Vec<u8>> {
        let structure = signal::PreKeyRecordStructure {
            id: Some(self.id),
            public_key: Some(self.key_pair.public.serialize().to_vec()),
            private_key: Some(self.key_pair.private.to_bytes().to_vec()),
        };
        Zeroizing::new(structure.encode_to_vec())
    }

    /// Parses a PreKeyRecordStructure.
    pub fn deserialize(bytes: &[u8]) -> Result<Self> {
        let structure: signal::PreKeyRecordStructure = decode(bytes, 256)?;
        let private = Zeroizing::new(structure.private_key.unwrap_or_default());
        Ok(PreKeyRecord {
            id: structure.id.ok_or(Error::InvalidRecord("prekey without id"))?,
            key_pair: KeyPair::from_stored(&structure.public_key.unwrap_or_default(), &private)?,
        })
    }
}

/// A medium-term prekey, signed by the identity key.
#[derive(Clone, Debug)]
pub struct SignedPreKeyRecord {
    /// Its id, as bundles and first messages name it.
    pub id: u32,
    /// Its X25519 key pair.
    pub key_pair: KeyPair,
    /// The identity key's XEdDSA signature over the encoded public key.
    pub signature: [u8; SIGNATURE_LEN],
    /// When it was made, in milliseconds since the Unix epoch (passed in: this crate reads no clock).
    pub timestamp: u64,
}

impl SignedPreKeyRecord {
    /// A fresh signed prekey, signed by `identity`.
    pub fn generate<R: CryptoRng + ?Sized>(id: u32, identity: &IdentityKeyPair, timestamp: u64, rng: &mut R) -> Self {
        let key_pair = KeyPair::generate(rng);
        let signature = identity.private_key().sign(&key_pair.public.serialize(), rng);
        SignedPreKeyRecord { id, key_pair, signature, timestamp }
    }

    /// Serializes as libsignal's SignedPreKeyRecordStructure.
    pub fn serialize(&self) -> Zeroizing<Vec<u8>> {
        let structure = signal::SignedPreKeyRecordStructure {
            id: Some(self.id),
            public_key: Some(self.key_pair.public.serialize().to_vec()),
            private_key: Some(self.key_pair.private.to_bytes().to_vec()),
            signature: Some(self.signature.to_vec()),
            timestamp: Some(self.timestamp),
        };
        Zeroizing::new(structure.encode_to_vec())
    }

    /// Parses a SignedPreKeyRecordStructure.
    pub fn deserialize(bytes: &[u8]) -> Result<Self> {
        let structure: signal::SignedPreKeyRecordStructure = decode(bytes, 512)?;
        let private = Zeroizing::new(structure.private_key.unwrap_or_default());
        Ok(SignedPreKeyRecord {
            id: structure.id.ok_or(Error::InvalidRecord("signed prekey without id"))?,
            key_pair: KeyPair::from_stored(&structure.public_key.unwrap_or_default(), &private)?,
            signature: structure
                .signature
                .unwrap_or_default()
                .try_into()
                .map_err(|_| Error::InvalidRecord("signature is not 64 bytes"))?,
            timestamp: structure.timestamp.unwrap_or(0),
        })
    }
}

/// A KEM prekey (Kyber-1024 or ML-KEM-1024), signed by the identity key over its serialized public
/// key (type byte included), as libsignal signs its Kyber prekeys. A one-time key is deleted after
/// its first use; a last-resort key is handed out once one-time keys run out and stays until a
/// newer one supersedes it.
///
/// The record keeps the 64-byte seed its key pair is generated from, not the 3,168-byte secret key:
/// a device holds hundreds of these (two per one-time prekey handed out), and the key pair is
/// made again, deterministically, on the rare occasion one is used.
#[derive(Clone)]
pub struct KemPreKeyRecord {
    /// Its id, as bundles and first messages name it.
    pub id: u32,
    seed: Box<Zeroizing<[u8; KEM_KEYGEN_SEED_LEN]>>,
    public: KemPublicKey,
    /// The identity key's XEdDSA signature over the encoded public key.
    pub signature: [u8; SIGNATURE_LEN],
    /// When it was made, in milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// Whether it is a last-resort key (kept after use, handed out when no one-time key is left)
    /// rather than a one-time key (deleted once used).
    pub last_resort: bool,
}

impl KemPreKeyRecord {
    /// A fresh KEM prekey of `kem`, signed by `identity`.
    pub fn generate<R: CryptoRng + ?Sized>(
        id: u32,
        kem: Kem,
        last_resort: bool,
        identity: &IdentityKeyPair,
        timestamp: u64,
        rng: &mut R,
    ) -> Self {
        let mut seed = Box::new(Zeroizing::new([0u8; KEM_KEYGEN_SEED_LEN]));
        rng.fill_bytes(seed.as_mut_slice());
        let public = KemKeyPair::from_seed(kem, &seed).public;
        let signature = identity.private_key().sign(&public.serialize(), rng);
        KemPreKeyRecord { id, seed, public, signature, timestamp, last_resort }
    }

    /// The record of the key pair `seed` generates, with its signature (for tests that pin keys).
    pub fn from_seed(id: u32, kem: Kem, seed: &[u8; KEM_KEYGEN_SEED_LEN], signature: [u8; SIGNATURE_LEN], timestamp: u64, last_resort: bool) -> Self {
        let public = KemKeyPair::from_seed(kem, seed).public;
        KemPreKeyRecord { id, seed: Box::new(Zeroizing::new(*seed)), public, signature, timestamp, last_resort }
    }

    /// The KEM the key belongs to.
    pub fn kem(&self) -> Kem {
        self.public.kem()
    }

    /// The public key.
    pub fn public_key(&self) -> &KemPublicKey {
        &self.public
    }

    /// The key pair, made again from the seed.
    pub fn key_pair(&self) -> KemKeyPair {
        KemKeyPair::from_seed(self.public.kem(), &self.seed)
    }

    /// What a bundle carries of it.
    pub fn signed_public(&self) -> SignedKemPreKey {
        SignedKemPreKey { id: self.id, key: self.public.clone(), signature: self.signature.to_vec() }
    }

    /// Serializes as libsignal's KyberPreKeyRecordStructure, with Switchboard's fields: the
    /// key's seed (type byte first) in place of the keys, and the last-resort flag.
    pub fn serialize(&self) -> Zeroizing<Vec<u8>> {
        let mut seed = Vec::with_capacity(1 + KEM_KEYGEN_SEED_LEN);
        seed.push(self.public.kem().type_byte());
        seed.extend_from_slice(self.seed.as_slice());
        let mut structure = signal::KyberPreKeyRecordStructure {
            id: Some(self.id),
            signature: Some(self.signature.to_vec()),
            timestamp: Some(self.timestamp),
            last_resort: Some(self.last_resort),
            seed: Some(seed),
            ..Default::default()
        };
        let bytes = Zeroizing::new(structure.encode_to_vec());
        if let Some(seed) = structure.seed.as_mut() {
            zeroize::Zeroize::zeroize(seed);
        }
        bytes
    }

    /// Parses a KyberPreKeyRecordStructure written by [`Self::serialize`].
    pub fn deserialize(bytes: &[u8]) -> Result<Self> {
        let structure: signal::KyberPreKeyRecordStructure = decode(bytes, limits::MAX_KEM_PREKEY_RECORD_LEN)?;
        let typed_seed = Zeroizing::new(structure.seed.unwrap_or_default());
        let (&type_byte, seed) = typed_seed.split_first().ok_or(Error::InvalidRecord("KEM prekey without its seed"))?;
        let seed: &[u8; KEM_KEYGEN_SEED_LEN] = seed.try_into().map_err(|_| Error::InvalidRecord("KEM prekey seed is not 64 bytes"))?;
        Ok(KemPreKeyRecord::from_seed(
            structure.id.ok_or(Error::InvalidRecord("KEM prekey without id"))?,
            Kem::from_type_byte(type_byte).map_err(|_| Error::InvalidRecord("unknown KEM type byte"))?,
            seed,
            structure
                .signature
                .unwrap_or_default()
                .try_into()
                .map_err(|_| Error::InvalidRecord("signature is not 64 bytes"))?,
            structure.timestamp.unwrap_or(0),
            structure.last_resort.unwrap_or(false),
        ))
    }
}

impl std::fmt::Debug for KemPreKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KemPreKeyRecord")
            .field("id", &self.id)
            .field("public", &self.public)
            .field("last_resort", &self.last_resort)
            .finish_non_exhaustive()
    }
}

/// A KEM prekey as a bundle carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedKemPreKey {
    /// The KEM prekey's id.
    pub id: u32,
    /// The encapsulation key.
    pub key: KemPublicKey,
    /// The identity key's XEdDSA signature over the encoded key (checked when the bundle is
    /// processed, not when it is parsed).
    pub signature: Vec<u8>,
}

/// What a device publishes so that others can start sessions with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreKeyBundle {
    /// The device's registration id (libsignal's; carried, not checked).
    pub registration_id: u32,
    /// The device's id under its user.
    pub device_id: u32,
    /// The device's long-term identity key.
    pub identity_key: IdentityKey,
    /// The signed prekey's id.
    pub signed_prekey_id: u32,
    /// The signed prekey.
    pub signed_prekey: PublicKey,
    /// The identity key's XEdDSA signature over the encoded signed prekey (checked when the
    /// bundle is processed).
    pub signed_prekey_signature: Vec<u8>,
    /// The next unused one-time prekey, if the device has any left.
    pub prekey: Option<(u32, PublicKey)>,
    /// The suites the device accepts beyond `signal-v3`, with the identity key's signature over
    /// them. `None` for a plain libsignal bundle, which offers `signal-v3` only.
    pub suites: Option<SignedSuites>,
    /// KEM prekeys, at most one per KEM: one for each post-quantum suite the list names.
    pub kem_prekeys: Vec<SignedKemPreKey>,
}

/// A list of suite names signed by an identity key. Names this implementation does not know are
/// kept, since the signature covers them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedSuites {
    /// The suite names, in the order signed.
    pub names: Vec<String>,
    /// The identity key's XEdDSA signature over the names.
    pub signature: Vec<u8>,
}

/// Domain separation for the suites signature.
const SUITES_CONTEXT: &[u8] = b"Switchboard suites v1";

fn suites_message(names: &[String]) -> Vec<u8> {
    let mut message = SUITES_CONTEXT.to_vec();
    for name in names {
        message.extend_from_slice(&(name.len() as u32).to_be_bytes());
        message.extend_from_slice(name.as_bytes());
    }
    message
}

impl SignedSuites {
    /// `suites`, signed by `identity`.
    pub fn sign<R: CryptoRng + ?Sized>(suites: &[Suite], identity: &IdentityKeyPair, rng: &mut R) -> Self {
        let names: Vec<String> = suites.iter().map(|suite| suite.name().to_owned()).collect();
        let signature = identity.private_key().sign(&suites_message(&names), rng).to_vec();
        SignedSuites { names, signature }
    }

    /// Whether the list names `suite`.
    pub fn contains(&self, suite: Suite) -> bool {
        self.names.iter().any(|name| name == suite.name())
    }
}

/// A [`PreKeyBundle`] whose signatures have been checked. Made only by
/// [`PreKeyBundle::into_verified`]; read through `Deref`, changed only where the signatures do not
/// reach (the one-time prekey, which is not signed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedBundle(PreKeyBundle);

impl VerifiedBundle {
    /// Removes the one-time prekey (handed out once), leaving a bundle that still verifies.
    pub fn take_prekey(&mut self) -> Option<(u32, PublicKey)> {
        self.0.prekey.take()
    }

    /// The bundle, to be checked again wherever it goes next.
    pub fn into_inner(self) -> PreKeyBundle {
        self.0
    }
}

impl std::ops::Deref for VerifiedBundle {
    type Target = PreKeyBundle;

    fn deref(&self) -> &PreKeyBundle {
        &self.0
    }
}

impl PreKeyBundle {
    /// Checks the signed prekey's signature, the suites signature if present, and each KEM
    /// prekey's signature; and that every post-quantum suite the list names has its KEM prekey
    /// here. A bundle whose KEM prekey was taken out on the way is refused as a whole, so that
    /// no one between the device and the initiator can turn a post-quantum session classical.
    pub fn verify(&self) -> Result<()> {
        if !self.identity_key.verify_signature(&self.signed_prekey.serialize(), &self.signed_prekey_signature) {
            return Err(Error::InvalidKey("signed prekey signature does not verify"));
        }
        if let Some(signed) = &self.suites
            && !self.identity_key.verify_signature(&suites_message(&signed.names), &signed.signature) {
                return Err(Error::InvalidKey("suites signature does not verify"));
            }
        for prekey in &self.kem_prekeys {
            if !self.identity_key.verify_signature(&prekey.key.serialize(), &prekey.signature) {
                return Err(Error::InvalidKey("KEM prekey signature does not verify"));
            }
        }
        for suite in Suite::ALL {
            if let Some(kem) = suite.kem()
                && self.suites.as_ref().is_some_and(|signed| signed.contains(suite))
                && self.kem_prekey(kem).is_none()
            {
                return Err(Error::InvalidKey("bundle offers a post-quantum suite without its KEM prekey"));
            }
        }
        Ok(())
    }

    /// The bundle's KEM prekey of `kem`, if it has one.
    pub fn kem_prekey(&self, kem: Kem) -> Option<&SignedKemPreKey> {
        self.kem_prekeys.iter().find(|prekey| prekey.key.kem() == kem)
    }

    /// The bundle, once its signatures are checked: what [`crate::session::process_verified_bundle`]
    /// takes, so that a bundle checked where it arrives is not checked again for every session.
    pub fn into_verified(self) -> Result<VerifiedBundle> {
        self.verify()?;
        Ok(VerifiedBundle(self))
    }

    /// Whether the device offers `suite`: `signal-v3` always, any other only in a signed list.
    /// Call after [`Self::verify`].
    pub fn offers(&self, suite: Suite) -> bool {
        suite == Suite::SignalV3 || self.suites.as_ref().is_some_and(|signed| signed.contains(suite))
    }

    /// The bundle as a protobuf message.
    pub fn to_wire(&self) -> switchboard::PreKeyBundle {
        switchboard::PreKeyBundle {
            registration_id: self.registration_id,
            device_id: self.device_id,
            identity_key: self.identity_key.serialize().to_vec(),
            signed_pre_key_id: self.signed_prekey_id,
            signed_pre_key: self.signed_prekey.serialize().to_vec(),
            signed_pre_key_signature: self.signed_prekey_signature.clone(),
            pre_key_id: self.prekey.map(|(id, _)| id),
            pre_key: self.prekey.map(|(_, key)| key.serialize().to_vec()),
            suites: self.suites.as_ref().map(|signed| signed.names.clone()).unwrap_or_default(),
            suites_signature: self.suites.as_ref().map(|signed| signed.signature.clone()).unwrap_or_default(),
            kem_pre_keys: self
                .kem_prekeys
                .iter()
                .map(|prekey| switchboard::KemPreKey {
                    id: prekey.id,
                    public_key: prekey.key.serialize(),
                    signature: prekey.signature.clone(),
                })
                .collect(),
        }
    }

    /// The serialized bundle.
    pub fn serialize(&self) -> Vec<u8> {
        self.to_wire().encode_to_vec()
    }

    /// Parses a serialized bundle (its signatures are checked by [`Self::verify`]).
    pub fn deserialize(bytes: &[u8]) -> Result<Self> {
        Self::from_wire(decode(bytes, limits::MAX_BUNDLE_LEN)?)
    }

    /// A bundle from its protobuf message.
    pub fn from_wire(wire: switchboard::PreKeyBundle) -> Result<Self> {
        let prekey = match (wire.pre_key_id, wire.pre_key) {
            (Some(id), Some(key)) => Some((id, PublicKey::from_bytes(&key)?)),
            (None, None) => None,
            _ => return Err(Error::InvalidKey("one-time prekey id without key, or key without id")),
        };
        let suites = if wire.suites.is_empty() && wire.suites_signature.is_empty() {
            None
        } else {
            Some(SignedSuites { names: wire.suites, signature: wire.suites_signature })
        };
        let mut kem_prekeys: Vec<SignedKemPreKey> = Vec::with_capacity(wire.kem_pre_keys.len());
        for prekey in wire.kem_pre_keys {
            let key = KemPublicKey::from_bytes(&prekey.public_key)?;
            if kem_prekeys.iter().any(|held| held.key.kem() == key.kem()) {
                return Err(Error::InvalidKey("two KEM prekeys of one KEM in a bundle"));
            }
            kem_prekeys.push(SignedKemPreKey { id: prekey.id, key, signature: prekey.signature });
        }
        Ok(PreKeyBundle {
            registration_id: wire.registration_id,
            device_id: wire.device_id,
            identity_key: PublicKey::from_bytes(&wire.identity_key)?,
            signed_prekey_id: wire.signed_pre_key_id,
            signed_prekey: PublicKey::from_bytes(&wire.signed_pre_key)?,
            signed_prekey_signature: wire.signed_pre_key_signature,
            prekey,
            suites,
            kem_prekeys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A KEM prekey record is its seed: it round-trips small, makes the same key pair again, and
    /// prints neither.
    #[test]
    fn kem_prekey_records_keep_the_seed_not_the_keys() {
        let mut rng = rand::rng();
        let identity = IdentityKeyPair::generate(&mut rng);
        for kem in [Kem::Kyber1024, Kem::MlKem1024] {
            let record = KemPreKeyRecord::generate(7, kem, true, &identity, 5, &mut rng);
            let bytes = record.serialize();
            assert!(bytes.len() < 200, "{} bytes", bytes.len());
            let restored = KemPreKeyRecord::deserialize(&bytes).unwrap();
            assert_eq!(restored.public_key(), record.public_key());
            assert_eq!((restored.id, restored.last_resort, restored.timestamp, restored.kem()), (7, true, 5, kem));
            let (ciphertext, secret) = record.public_key().encapsulate(&mut rng);
            assert_eq!(*restored.key_pair().secret.decapsulate(&ciphertext).unwrap(), *secret);
            assert!(identity.identity_key().verify_signature(&record.public_key().serialize(), &record.signature));
            let printed = format!("{record:?}");
            assert!(!printed.contains(&format!("{:?}", &record.seed[..4])), "{printed}");
            let mut unknown = signal::KyberPreKeyRecordStructure::decode(bytes.as_slice()).unwrap();
            unknown.seed.as_mut().unwrap()[0] = 0x09;
            assert!(KemPreKeyRecord::deserialize(&unknown.encode_to_vec()).is_err());
        }
    }
}
