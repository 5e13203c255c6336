//! PQXDH (Signal's specification, revision 2, as libsignal computes it) and the `pq-aes-256-gcm`
//! key agreement, with fixed keys. Nothing is published for these, so each expected value is
//! re-derived here from the specification's formula with the primitives alone (x25519-dalek,
//! HKDF, HMAC, AES-CBC) — never through `x3dh.rs` or the ratchet — and then pinned in hex, so
//! that a change to either side is seen. The KEM's shared secret is the one the NIST
//! known-answer test of the same seeds publishes.
//!
//! The keys are those of libsignal's X3DH tests (`signal_kat.rs`), plus a one-time prekey, a
//! fixed ratchet key for Alice, and the first seeds of the KEM known-answer files.

use std::convert::Infallible;

use hkdf::Hkdf;
use hmac::Mac;
use sha2::Sha256;

use super::{hex_array, key_pair};
use crate::kdf;
use crate::kem::{Kem, KemKeyPair};
use crate::keys::{IdentityKeyPair, KeyPair, PublicKey};
use crate::protocol::CiphertextMessage;
use crate::ratchet::record::SessionRecord;
use crate::session;
use crate::store::{InMemoryStore, KemPreKeyStore, PreKeyStore, SignedPreKeyStore};
use crate::suite::Suite;
use crate::x3dh::Initiator;
use crate::{KemPreKeyRecord, PreKeyRecord, ProtocolAddress, SignedPreKeyRecord};

const ALICE_IDENTITY_PRIVATE: &str = "9040f0d4e09cf38f6dc7c13779c908c015a1da4fa78737a080eb0a6f4f5f8f58";
const ALICE_BASE_PRIVATE: &str = "11ae7c64d1e61cd596b76a0db5012673391cae66edbfcf073b4da80516a47449";
const ALICE_RATCHET_PRIVATE: &str = "d1ba38cea91743d33939c33c84986509280161b2b4f6e3a1a5c2d4b5e6f70819";
const BOB_IDENTITY_PRIVATE: &str = "4875cc69ddf8ea0719ec947d61081135868d5fd801f02c0225e516df2156605e";
const BOB_SIGNED_PREKEY_PRIVATE: &str = "583900131fb727998b7803fe6ac22cc591f342e4e42a8c8d5d78194209b8d253";
const BOB_ONE_TIME_PREKEY_PRIVATE: &str = "e8b64ab5e1f1f1d8b7ac5ea5f3b2c3d4e5f60718293a4b5c6d7e8f9001122334";
/// Case 0 of both KEM known-answer files.
const KEM_KEYGEN_SEED: &str = "7c9935a0b07694aa0c6d10e4db6b1add2fd81a25ccb148032dcd739936737f2d8626ed79d451140800e03b59b956f8210e556067407d13dc90fa9e8b872bfb8f";
const KEM_ENCAPS_SEED: &str = "147c03f7a5bebba406c8fae1874d7f13c80efe79a3a9a874cc09fe76f6997615";
const KYBER_SHARED_SECRET: &str = "b10f7394926ad3b49c5d62d5aeb531d5757538bcc0da9e550d438f1b61bd7419";
const ML_KEM_SHARED_SECRET: &str = "489dd1e9c2be4af3482bdb35bb26ce760e6e414da6ecbe489985748a825f1cd6";

const SIGNED_PREKEY_ID: u32 = 7;
const ONE_TIME_PREKEY_ID: u32 = 31;
const KEM_PREKEY_ID: u32 = 1001;

/// Yields fixed bytes, in order: the initiator draws its encapsulation seed, then its first
/// ratchet key.
struct Script(Vec<u8>);

impl rand_core::TryRng for Script {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        unreachable!("the initiator only fills byte buffers")
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        unreachable!("the initiator only fills byte buffers")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        assert!(dst.len() <= self.0.len(), "the script ran out");
        dst.copy_from_slice(&self.0[..dst.len()]);
        self.0.drain(..dst.len());
        Ok(())
    }
}

impl rand_core::TryCryptoRng for Script {}

fn x25519(private_hex: &str, their: &PublicKey) -> [u8; 32] {
    let mut scalar: [u8; 32] = hex_array(private_hex);
    scalar[0] &= 248;
    scalar[31] &= 127;
    scalar[31] |= 64;
    x25519_dalek::x25519(scalar, *their.as_montgomery())
}

fn hkdf(salt: Option<&[u8]>, ikm: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    Hkdf::<Sha256>::new(salt, ikm).expand(info, &mut out).unwrap();
    out
}

/// What the specification derives: (root key, chain key) of the key agreement, then Alice's first
/// sending root and chain key after her DH ratchet step against Bob's signed prekey.
struct Derived {
    first_root: Vec<u8>,
    first_chain: Vec<u8>,
    sending_chain: Vec<u8>,
}

fn derive_from_specification(info: &[u8], shared_secret: &str) -> Derived {
    let bob_identity = key_pair(BOB_IDENTITY_PRIVATE).public;
    let bob_signed = key_pair(BOB_SIGNED_PREKEY_PRIVATE).public;
    let bob_one_time = key_pair(BOB_ONE_TIME_PREKEY_PRIVATE).public;
    // SK = KDF(DH1 ‖ DH2 ‖ DH3 ‖ DH4 ‖ SS), KDF's input prefixed by 32 0xFF bytes, no salt.
    let mut ikm = vec![0xffu8; 32];
    ikm.extend_from_slice(&x25519(ALICE_IDENTITY_PRIVATE, &bob_signed));
    ikm.extend_from_slice(&x25519(ALICE_BASE_PRIVATE, &bob_identity));
    ikm.extend_from_slice(&x25519(ALICE_BASE_PRIVATE, &bob_signed));
    ikm.extend_from_slice(&x25519(ALICE_BASE_PRIVATE, &bob_one_time));
    ikm.extend_from_slice(&hex_array::<32>(shared_secret));
    let first = hkdf(None, &ikm, info, 64);
    let ratchet = hkdf(Some(&first[..32]), &x25519(ALICE_RATCHET_PRIVATE, &bob_signed), ratchet_label(info), 64);
    Derived { first_root: first[..32].to_vec(), first_chain: first[32..].to_vec(), sending_chain: ratchet[32..].to_vec() }
}

fn ratchet_label(info: &[u8]) -> &'static [u8] {
    if info.starts_with(b"WhisperText") { b"WhisperRatchet" } else { b"Switchboard_PQ_AES256GCM_Ratchet" }
}

/// Bob's store: his identity, the signed, one-time and KEM prekeys the message names.
fn bob_store(kem: Kem, rng: &mut impl rand_core::CryptoRng) -> (InMemoryStore, KemKeyPair) {
    let identity = IdentityKeyPair::from_key_pair(key_pair(BOB_IDENTITY_PRIVATE));
    let mut store = InMemoryStore::new(identity.clone(), 2);
    let mut signed = SignedPreKeyRecord::generate(SIGNED_PREKEY_ID, &identity, 0, rng);
    signed.key_pair = key_pair(BOB_SIGNED_PREKEY_PRIVATE);
    store.save_signed_prekey(signed).unwrap();
    store.save_prekey(PreKeyRecord { id: ONE_TIME_PREKEY_ID, key_pair: key_pair(BOB_ONE_TIME_PREKEY_PRIVATE) }).unwrap();
    let kem_pair = KemKeyPair::from_seed(kem, &hex_array(KEM_KEYGEN_SEED));
    let record = KemPreKeyRecord::from_seed(KEM_PREKEY_ID, kem, &hex_array(KEM_KEYGEN_SEED), [0; 64], 0, false);
    store.save_kem_prekey(record).unwrap();
    (store, kem_pair)
}

/// Alice's session from fixed keys and the scripted randomness (as it was before it sent), and
/// its first message.
fn alice_first_message(suite: Suite, kem_public: &crate::KemPublicKey) -> (crate::SessionState, CiphertextMessage) {
    let identity = IdentityKeyPair::from_key_pair(key_pair(ALICE_IDENTITY_PRIVATE));
    let base: KeyPair = key_pair(ALICE_BASE_PRIVATE);
    let bob_identity = key_pair(BOB_IDENTITY_PRIVATE).public;
    let bob_signed = key_pair(BOB_SIGNED_PREKEY_PRIVATE).public;
    let bob_one_time = key_pair(BOB_ONE_TIME_PREKEY_PRIVATE).public;
    let mut script = Script([hex_array::<32>(KEM_ENCAPS_SEED), hex_array::<32>(ALICE_RATCHET_PRIVATE)].concat());
    let state = Initiator {
        suite,
        our_identity: &identity,
        our_base_key: &base,
        our_registration_id: 1,
        their_identity: &bob_identity,
        their_registration_id: 2,
        their_signed_prekey_id: SIGNED_PREKEY_ID,
        their_signed_prekey: &bob_signed,
        their_one_time_prekey: Some((ONE_TIME_PREKEY_ID, &bob_one_time)),
        their_kem_prekey: Some((KEM_PREKEY_ID, kem_public)),
    }
    .start(&mut script);
    assert!(script.0.is_empty(), "the initiator drew exactly a seed and a ratchet key");
    let mut record = SessionRecord::new(state.clone());
    let message = record.encrypt(b"hello, post-quantum bob").unwrap();
    (state, message)
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn field_bytes(tag: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint(tag << 3 | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn field_varint(tag: u64, value: u64, out: &mut Vec<u8>) {
    varint(tag << 3, out);
    varint(value, out);
}

#[test]
fn signal_pqxdh_first_message_is_the_specifications() {
    let (mut bob, kem) = bob_store(Kem::Kyber1024, &mut rand::rng());
    let derived = derive_from_specification(b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024", KYBER_SHARED_SECRET);
    let (state, message) = alice_first_message(Suite::SignalPqxdh, &kem.public);

    // The key schedule: the first chain is Alice's receiving chain; her sending chain is one DH
    // ratchet step on from the first root key.
    assert_eq!(state.receiver_chains[0].chain_key.key.to_vec(), derived.first_chain);
    assert_eq!(state.sender_chain.chain_key.key.to_vec(), derived.sending_chain);
    assert_eq!(hex::encode(&derived.first_root), "ac0e9b028d9faf31ee681d8cf3b34fa1956e618fa77e42d679d846579c7796df");
    assert_eq!(hex::encode(&derived.first_chain), "c10f3da9a7e30d772983bccec19a8968ce57690b85034d1eb60dac44017e85e7");

    // The first message, byte for byte: 0x44 ‖ PreKeySignalMessage{1..8}, whose field 4 is
    // 0x44 ‖ SignalMessage{1..4} ‖ the first 8 bytes of its HMAC.
    let alice_identity = key_pair(ALICE_IDENTITY_PRIVATE).public;
    let bob_identity = key_pair(BOB_IDENTITY_PRIVATE).public;
    let seed = kdf::hmac_byte(&kdf::hmac(&derived.sending_chain), 0x01);
    let keys = hkdf(None, &seed, b"WhisperMessageKeys", 80);
    let (cipher_key, mac_key, iv) = (&keys[..32], &keys[32..64], &keys[64..]);
    let ciphertext = {
        use aes::cipher::{BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
        cbc::Encryptor::<aes::Aes256>::new_from_slices(cipher_key, iv)
            .unwrap()
            .encrypt_padded_vec::<Pkcs7>(b"hello, post-quantum bob")
    };
    let mut inner = vec![0x44];
    field_bytes(1, &key_pair(ALICE_RATCHET_PRIVATE).public.serialize(), &mut inner);
    field_varint(2, 0, &mut inner);
    field_varint(3, 0, &mut inner);
    field_bytes(4, &ciphertext, &mut inner);
    let mut mac = kdf::hmac(mac_key);
    mac.update(&alice_identity.serialize());
    mac.update(&bob_identity.serialize());
    mac.update(&inner);
    inner.extend_from_slice(&mac.finalize().into_bytes()[..8]);
    let (kem_ciphertext, _) = kem.public.encapsulate_with_seed(&hex_array(KEM_ENCAPS_SEED));
    let mut expected = vec![0x44];
    field_varint(1, u64::from(ONE_TIME_PREKEY_ID), &mut expected);
    field_bytes(2, &key_pair(ALICE_BASE_PRIVATE).public.serialize(), &mut expected);
    field_bytes(3, &alice_identity.serialize(), &mut expected);
    field_bytes(4, &inner, &mut expected);
    field_varint(5, 1, &mut expected);
    field_varint(6, u64::from(SIGNED_PREKEY_ID), &mut expected);
    field_varint(7, u64::from(KEM_PREKEY_ID), &mut expected);
    field_bytes(8, &kem_ciphertext, &mut expected);
    assert_eq!(kem_ciphertext[0], 0x08);
    assert_eq!(message.serialize(), expected.as_slice());

    // And Bob, from his own keys, reads it and consumes the one-time KEM prekey.
    let alice_at = ProtocolAddress::new("alice@a", 1);
    let parsed = CiphertextMessage::parse(crate::MessageKind::PreKey, &expected).unwrap();
    assert_eq!(session::decrypt(&mut bob, &alice_at, &parsed, &mut rand::rng()).unwrap(), b"hello, post-quantum bob");
    assert!(bob.kem_prekey(KEM_PREKEY_ID).unwrap().is_none());
}

#[test]
fn pq_aes_256_gcm_key_agreement_is_the_specifications() {
    let (mut bob, kem) = bob_store(Kem::MlKem1024, &mut rand::rng());
    let derived = derive_from_specification(b"Switchboard_PQ_AES256GCM_X25519_MLKEM1024", ML_KEM_SHARED_SECRET);
    let (state, message) = alice_first_message(Suite::PqAes256Gcm, &kem.public);
    assert_eq!(state.receiver_chains[0].chain_key.key.to_vec(), derived.first_chain);
    assert_eq!(state.sender_chain.chain_key.key.to_vec(), derived.sending_chain);
    assert_eq!(hex::encode(&derived.first_root), "bea5f15b0599aeefadd86c695e2d63602775c9c0a3afc1a8dde3d9b629f56b26");
    assert_eq!(hex::encode(&derived.first_chain), "4e354c318cfe1ccf37c72f471bc0bc55ecbfb9490659138d9f686151d265b57c");
    assert_eq!(message.serialize()[0], 0xa2);
    let CiphertextMessage::PreKey(prekey) = &message else { panic!("a first message") };
    assert_eq!(prekey.kem_ciphertext().unwrap()[0], 0x0a);
    let alice_at = ProtocolAddress::new("alice@a", 1);
    assert_eq!(session::decrypt(&mut bob, &alice_at, &message, &mut rand::rng()).unwrap(), b"hello, post-quantum bob");
}

/// The KEM's secret is in the key schedule: the same DH outputs without it give other keys.
#[test]
fn the_kem_secret_is_mixed_in() {
    let with = derive_from_specification(b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024", KYBER_SHARED_SECRET);
    let other = derive_from_specification(b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024", ML_KEM_SHARED_SECRET);
    assert_ne!(with.first_root, other.first_root);
    assert_ne!(with.first_chain, other.first_chain);
}
