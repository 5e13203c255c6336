//! The floor: the primitive operations each op cannot avoid, timed with the same primitive crates
//! (and versions) the session crate uses, with no framing, no store, no allocation per message.
//!
//! Counted from crates/session/src/x3dh.rs, session.rs and ratchet/state.rs, with a one-time
//! prekey in the bundle (as every workload has):
//!
//! `session_setup`
//! - initiator (`process_prekey_bundle`): 1 signature verification of the signed prekey
//!   (`switchboard_session::xeddsa::verify`: Montgomery→Edwards conversion, point compression and
//!   a variable-time double-scalar multiplication; under `aes-256-gcm` a second one for the
//!   signed suites list), 1 key generation (base key), 4 X3DH DHs, HKDF → root and chain key,
//!   1 key generation (first sending ratchet key) and 1 DH + HKDF for the first sending chain;
//!   then one message encryption (below).
//! - responder (`decrypt` of the PreKeySignalMessage): 4 X3DH DHs, HKDF, 1 DH + HKDF for the new
//!   receiving chain, one message decryption, 1 key generation and 1 DH + HKDF for its new sending
//!   chain.
//! - in all: 1 verification (2 under GCM), 3 key generations (fixed-base multiplications,
//!   `x25519_dalek::PublicKey::from(&StaticSecret)`), 11 DHs (variable-base,
//!   `StaticSecret::diffie_hellman`), 5 HKDFs of 64 bytes, 1 message encryption and decryption.
//!
//! `session_setup` under a post-quantum suite (`signal-pqxdh`, `pq-aes-256-gcm`): the same, with
//! three signature verifications (signed prekey, suites list, KEM prekey over its 1,569 bytes),
//! one KEM encapsulation (initiator) and one decapsulation (responder), and the shared secret as
//! 32 more bytes into X3DH's HKDF. (Generating the KEM prekey is the responder's earlier work, as
//! generating its signed prekey is: outside the timed region for every implementation.)
//!
//! message encryption (`signal-v3`): the chain step (HMAC-SHA256 keyed with the chain key, over
//! 0x01 and over 0x02, the key schedule shared), HKDF-SHA256 of 80 bytes (cipher key, MAC key,
//! IV), AES-256-CBC with PKCS#7 padding, HMAC-SHA256 over both identity keys, the header and the
//! ciphertext. Decryption: the chain step, the HKDF, the MAC check, AES-256-CBC decryption.
//! (`aes-256-gcm`: the chain step, HKDF of 44 bytes, AES-256-GCM over the message with both
//! identities and the header as associated data.)

use std::hint::black_box;
use std::time::Duration;

use aes::Aes256;
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, Aes256Gcm};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use libcrux_ml_kem::mlkem1024::{self, MlKem1024Ciphertext, MlKem1024KeyPair};
use libcrux_ml_kem::kyber1024;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::clock::Instant;
use crate::workloads::{Kind, Op, Report, SMALL, Workload, chunk_len, chunked, each, number, plaintext, repeat};

type HmacSha256 = Hmac<Sha256>;

/// Which suite's primitives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloorSuite {
    /// `signal-v3`: AES-256-CBC and HMAC-SHA256.
    SignalV3,
    /// `aes-256-gcm`.
    Aes256Gcm,
}

impl FloorSuite {
    fn message_label(self) -> &'static [u8] {
        match self {
            FloorSuite::SignalV3 => b"WhisperMessageKeys",
            FloorSuite::Aes256Gcm => b"Switchboard_AES256GCM_MessageKeys",
        }
    }
    fn x3dh_label(self) -> &'static [u8] {
        match self {
            FloorSuite::SignalV3 => b"WhisperText",
            FloorSuite::Aes256Gcm => b"Switchboard_AES256GCM_X3DH",
        }
    }
    fn ratchet_label(self) -> &'static [u8] {
        match self {
            FloorSuite::SignalV3 => b"WhisperRatchet",
            FloorSuite::Aes256Gcm => b"Switchboard_AES256GCM_Ratchet",
        }
    }
}

/// The floor workload of `op`.
pub fn workload(op: Op, suite: FloorSuite, seed: u64) -> Box<dyn Workload> {
    let len = op.message_len();
    match op {
        Op::SessionSetup => Box::new(SetupFloor::new(suite, None, seed)),
        Op::Encrypt100 | Op::Encrypt64k => {
            Box::new(EncryptFloor::new(MessageChain::new(suite, seed), MessageChain::new(suite, seed), plaintext(len)))
        }
        Op::Decrypt100 | Op::Decrypt64k => {
            Box::new(DecryptFloor::new(MessageChain::new(suite, seed), MessageChain::new(suite, seed), plaintext(len)))
        }
        _ => unreachable!("{} is not a 1:1 op", op.name()),
    }
}

/// The floor of `session_setup` under the post-quantum suite whose messages are `suite`'s:
/// `signal-pqxdh` (Kyber-1024) over `signal-v3`, `pq-aes-256-gcm` (ML-KEM-1024) over
/// `aes-256-gcm`.
pub fn post_quantum_setup(suite: FloorSuite, seed: u64) -> Box<dyn Workload> {
    let kem = match suite {
        FloorSuite::SignalV3 => Kem::Kyber1024,
        FloorSuite::Aes256Gcm => Kem::MlKem1024,
    };
    Box::new(SetupFloor::new(suite, Some(kem), seed))
}

/// A post-quantum suite's KEM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kem {
    Kyber1024,
    MlKem1024,
}

impl Kem {
    fn type_byte(self) -> u8 {
        match self {
            Kem::Kyber1024 => 0x08,
            Kem::MlKem1024 => 0x0a,
        }
    }
    fn x3dh_label(self) -> &'static [u8] {
        match self {
            Kem::Kyber1024 => b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024",
            Kem::MlKem1024 => b"Switchboard_PQ_AES256GCM_X25519_MLKEM1024",
        }
    }
    fn ratchet_label(self) -> &'static [u8] {
        match self {
            Kem::Kyber1024 => b"WhisperRatchet",
            Kem::MlKem1024 => b"Switchboard_PQ_AES256GCM_Ratchet",
        }
    }
    fn generate(self, seed: [u8; 64]) -> MlKem1024KeyPair {
        match self {
            Kem::Kyber1024 => kyber1024::generate_key_pair(seed),
            Kem::MlKem1024 => mlkem1024::generate_key_pair(seed),
        }
    }
}

/// Bob's KEM prekey in one setup: the key pair, its serialized public key with the type byte,
/// its signature, and alice's encapsulation seed.
struct KemKeys {
    pair: MlKem1024KeyPair,
    serialized: Vec<u8>,
    signature: [u8; 64],
    encapsulation_seed: [u8; 32],
}

/// Length of a SignalMessage header as the MAC / AAD covers it: version byte, ratchet key field
/// (2 + 33), counter and previous counter fields, ciphertext field tag and length.
const HEADER_LEN: usize = 44;
/// Length of the truncated `signal-v3` MAC.
const MAC_LEN: usize = 8;
/// Length of the GCM tag.
const TAG_LEN: usize = 16;

/// One HMAC chain step: the message key seed and the next chain key.
pub(crate) fn chain_step(chain_key: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    let keyed = <HmacSha256 as KeyInit>::new_from_slice(chain_key).expect("any key length");
    let mut seed_mac = keyed.clone();
    seed_mac.update(&[0x01]);
    let mut next_mac = keyed;
    next_mac.update(&[0x02]);
    (seed_mac.finalize().into_bytes().into(), next_mac.finalize().into_bytes().into())
}

pub(crate) fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8], okm: &mut [u8]) {
    Hkdf::<Sha256>::new(Some(salt), ikm).expand(info, okm).expect("short output");
}

/// `bytes[at..at + N]` as an array.
pub(crate) fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    bytes[at..at + N].try_into().expect("in range")
}

/// A sending or receiving chain with everything a message needs that does not change per message
/// (identities, header bytes, buffers), so that the loop does only primitive work.
struct MessageChain {
    suite: FloorSuite,
    chain_key: [u8; 32],
    sender: [u8; 33],
    receiver: [u8; 33],
    header: [u8; HEADER_LEN],
    out: Vec<u8>,
}

impl MessageChain {
    fn new(suite: FloorSuite, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xf1005);
        let mut fill = |bytes: &mut [u8]| rng.fill_bytes(bytes);
        let (mut chain_key, mut sender, mut receiver, mut header) = ([0u8; 32], [5u8; 33], [5u8; 33], [0u8; HEADER_LEN]);
        fill(&mut chain_key);
        fill(&mut sender[1..]);
        fill(&mut receiver[1..]);
        fill(&mut header);
        MessageChain { suite, chain_key, sender, receiver, header, out: Vec::new() }
    }

    /// Encrypts `plaintext` into `self.out`, returning the wire length (ciphertext and MAC/tag).
    fn encrypt(&mut self, plaintext: &[u8]) -> usize {
        let (seed, next) = chain_step(&self.chain_key);
        let len = match self.suite {
            FloorSuite::SignalV3 => {
                let mut keys = [0u8; 80];
                hkdf(&[0u8; 32], &seed, self.suite.message_label(), &mut keys);
                self.out.resize((plaintext.len() / 16 + 1) * 16 + MAC_LEN, 0);
                let ct_len = cbc::Encryptor::<Aes256>::new(&array::<32>(&keys, 0).into(), &array::<16>(&keys, 64).into())
                    .encrypt_padded_b2b::<Pkcs7>(plaintext, &mut self.out)
                    .expect("room for padding")
                    .len();
                let mac = v3_mac(&keys[32..64], &self.sender, &self.receiver, &self.header, &self.out[..ct_len]);
                self.out[ct_len..ct_len + MAC_LEN].copy_from_slice(&mac);
                ct_len + MAC_LEN
            }
            FloorSuite::Aes256Gcm => {
                let mut keys = [0u8; 44];
                hkdf(&[0u8; 32], &seed, self.suite.message_label(), &mut keys);
                self.out.resize(plaintext.len() + TAG_LEN, 0);
                let aad = self.gcm_aad();
                let (body, tag_out) = self.out.split_at_mut(plaintext.len());
                let tag = Aes256Gcm::new(&array::<32>(&keys, 0).into())
                    .encrypt_inout_detached(&array::<12>(&keys, 32).into(), &aad, InOutBuf::new(plaintext, body).expect("same length"))
                    .expect("short message");
                tag_out.copy_from_slice(&tag);
                plaintext.len() + TAG_LEN
            }
        };
        self.chain_key = next;
        len
    }

    /// Decrypts `wire` (from [`Self::encrypt`] of the matching chain) into `self.out`.
    fn decrypt(&mut self, wire: &[u8]) -> usize {
        let (seed, next) = chain_step(&self.chain_key);
        let len = match self.suite {
            FloorSuite::SignalV3 => {
                let mut keys = [0u8; 80];
                hkdf(&[0u8; 32], &seed, self.suite.message_label(), &mut keys);
                let (ciphertext, mac) = wire.split_at(wire.len() - MAC_LEN);
                let expected = v3_mac(&keys[32..64], &self.sender, &self.receiver, &self.header, ciphertext);
                assert!(expected == mac, "floor MAC verifies");
                self.out.resize(ciphertext.len(), 0);
                cbc::Decryptor::<Aes256>::new(&array::<32>(&keys, 0).into(), &array::<16>(&keys, 64).into())
                    .decrypt_padded_b2b::<Pkcs7>(ciphertext, &mut self.out)
                    .expect("valid padding")
                    .len()
            }
            FloorSuite::Aes256Gcm => {
                let mut keys = [0u8; 44];
                hkdf(&[0u8; 32], &seed, self.suite.message_label(), &mut keys);
                let (ciphertext, tag) = wire.split_at(wire.len() - TAG_LEN);
                self.out.resize(ciphertext.len(), 0);
                let aad = self.gcm_aad();
                Aes256Gcm::new(&array::<32>(&keys, 0).into())
                    .decrypt_inout_detached(
                        &array::<12>(&keys, 32).into(),
                        &aad,
                        InOutBuf::new(ciphertext, &mut self.out).expect("same length"),
                        tag.try_into().expect("16 bytes"),
                    )
                    .expect("floor tag verifies");
                ciphertext.len()
            }
        };
        self.chain_key = next;
        len
    }

    /// Both identities and the header without its ciphertext field (a stack array: no allocation).
    fn gcm_aad(&self) -> [u8; 66 + HEADER_LEN - 4] {
        let mut aad = [0u8; 66 + HEADER_LEN - 4];
        aad[..33].copy_from_slice(&self.sender);
        aad[33..66].copy_from_slice(&self.receiver);
        aad[66..].copy_from_slice(&self.header[..HEADER_LEN - 4]);
        aad
    }
}

fn v3_mac(key: &[u8], sender: &[u8; 33], receiver: &[u8; 33], header: &[u8], ciphertext: &[u8]) -> [u8; MAC_LEN] {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(sender);
    mac.update(receiver);
    mac.update(header);
    mac.update(ciphertext);
    let mut truncated = [0u8; MAC_LEN];
    truncated.copy_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
    truncated
}

/// A chain of the floor: encrypts one message into its `wire` buffer, and decrypts one.
pub(crate) trait FloorChain {
    /// Encrypts `plaintext`, returning the wire length (the message is `wire()[..len]`).
    fn encrypt(&mut self, plaintext: &[u8]) -> usize;
    /// Decrypts the next message of the chain, returning the plaintext length (the plaintext is
    /// `decrypted(len)`).
    fn decrypt(&mut self, wire: &[u8]) -> usize;
    fn wire(&self) -> &[u8];
    /// The first `len` bytes of what the last `decrypt` wrote.
    fn decrypted(&self, len: usize) -> &[u8];
    /// Steps the chain over `messages` messages without reading them (a receiver catching up,
    /// for the checks: never timed).
    fn skip(&mut self, messages: u64);
}

impl FloorChain for MessageChain {
    fn encrypt(&mut self, plaintext: &[u8]) -> usize {
        MessageChain::encrypt(self, plaintext)
    }
    fn decrypt(&mut self, wire: &[u8]) -> usize {
        MessageChain::decrypt(self, wire)
    }
    fn wire(&self) -> &[u8] {
        &self.out
    }
    fn decrypted(&self, len: usize) -> &[u8] {
        &self.out[..len]
    }
    fn skip(&mut self, messages: u64) {
        for _ in 0..messages {
            self.chain_key = chain_step(&self.chain_key).1;
        }
    }
}

/// Encrypting with a floor chain (1:1 or group); `receiver`, a copy of the chain as its reader
/// holds it, reads the last message of a run in [`Workload::report`].
pub(crate) struct EncryptFloor<C> {
    chain: C,
    plaintext: Vec<u8>,
    receiver: C,
    /// The wire length of the last message of the last run, if not yet read.
    last: Option<usize>,
    /// Messages encrypted when `receiver` last read one.
    reported: u64,
    report: Report,
}

impl<C: FloorChain> EncryptFloor<C> {
    /// `chain` and `receiver` hold the same chain key.
    pub(crate) fn new(chain: C, receiver: C, plaintext: Vec<u8>) -> Self {
        let report = Report::new(Kind::Encrypt, plaintext.len());
        EncryptFloor { chain, plaintext, receiver, last: None, reported: 0, report }
    }
}

impl<C: FloorChain> Workload for EncryptFloor<C> {
    fn run(&mut self, iters: u64) -> Duration {
        let mut count = 0;
        let start = Instant::now();
        let last = repeat(iters, &mut count, || black_box(self.chain.encrypt(&self.plaintext)));
        let took = start.elapsed();
        self.report.iterations += count;
        self.report.messages += count;
        if last.is_some() {
            self.last = last;
        }
        took
    }

    /// The receiver steps over the messages before the last (so it reads the last only if exactly
    /// as many were encrypted as counted: the MAC or tag would not verify) and reads it.
    fn report(&mut self) -> Report {
        if let Some(len) = self.last.take() {
            let since = self.report.messages - self.reported;
            self.receiver.skip(since - 1);
            let got = self.receiver.decrypt(&self.chain.wire()[..len]);
            let got = self.receiver.decrypted(got).to_vec();
            self.report.check_bytes(&got, &self.plaintext, "encrypt: the last message, as its receiver read it");
            self.reported = self.report.messages;
        }
        self.report.clone()
    }
}

/// Decrypting with a floor chain: numbered messages made by `sender` outside the timed region;
/// the last plaintext of each batch checked after the clock stops.
pub(crate) struct DecryptFloor<C> {
    sender: C,
    receiver: C,
    plaintext: Vec<u8>,
    sent: u64,
    report: Report,
}

impl<C: FloorChain> DecryptFloor<C> {
    /// `sender` and `receiver` hold the same chain key.
    pub(crate) fn new(sender: C, receiver: C, plaintext: Vec<u8>) -> Self {
        let report = Report::new(Kind::Decrypt, plaintext.len());
        DecryptFloor { sender, receiver, plaintext, sent: 0, report }
    }
}

impl<C: FloorChain> Workload for DecryptFloor<C> {
    fn run(&mut self, iters: u64) -> Duration {
        let mut count = 0;
        let took = chunked(
            self,
            iters,
            chunk_len(self.plaintext.len()),
            |this, n| {
                (0..n)
                    .map(|_| {
                        number(&mut this.plaintext, this.sent);
                        this.sent += 1;
                        let len = this.sender.encrypt(&this.plaintext);
                        this.sender.wire()[..len].to_vec()
                    })
                    .collect::<Vec<_>>()
            },
            |this, batch| each(batch, &mut count, |wire| black_box(this.receiver.decrypt(wire))),
            |this, _, len| {
                if let Some(len) = len {
                    let got = this.receiver.decrypted(len);
                    this.report.check(got == this.plaintext, || format!("decrypt: the last message of the batch: {} bytes, not those sent", got.len()));
                }
            },
        );
        self.report.iterations += count;
        self.report.messages += count;
        took
    }

    fn report(&mut self) -> Report {
        self.report.clone()
    }
}

/// The long-term keys of one session setup: both identities, bob's signed prekey (with its
/// signature by bob's identity, in Signal's form) and one-time prekey, and the secrets of the
/// keys generated during the setup (alice's base key and ratchet key, bob's new ratchet key).
struct SetupKeys {
    alice_identity: StaticSecret,
    alice_identity_public: PublicKey,
    bob_identity: StaticSecret,
    bob_identity_public: PublicKey,
    bob_signed: StaticSecret,
    bob_signed_public: PublicKey,
    bob_signed_serialized: [u8; 33],
    bob_signed_signature: [u8; 64],
    suites_message: Vec<u8>,
    suites_signature: [u8; 64],
    bob_one_time: StaticSecret,
    bob_one_time_public: PublicKey,
    alice_base: StaticSecret,
    alice_ratchet: StaticSecret,
    bob_ratchet: StaticSecret,
    kem: Option<KemKeys>,
}

impl SetupKeys {
    fn generate(rng: &mut StdRng, kem: Option<Kem>) -> Self {
        let mut secret = || {
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            // clamped, as the session crate stores private keys
            bytes[0] &= 248;
            bytes[31] &= 127;
            bytes[31] |= 64;
            StaticSecret::from(bytes)
        };
        let (alice_identity, bob_identity, bob_signed, bob_one_time) = (secret(), secret(), secret(), secret());
        let (alice_base, alice_ratchet, bob_ratchet) = (secret(), secret(), secret());
        let bob_signed_public = PublicKey::from(&bob_signed);
        let mut bob_signed_serialized = [5u8; 33];
        bob_signed_serialized[1..].copy_from_slice(bob_signed_public.as_bytes());
        let mut random = [0u8; 64];
        rng.fill_bytes(&mut random);
        let bob_signed_signature = switchboard_session::xeddsa::sign(&bob_identity.to_bytes(), &bob_signed_serialized, &random);
        let suites_message = b"Switchboard suites v1\0\0\0\x0baes-256-gcm\0\0\0\x09signal-v3".to_vec();
        let suites_signature = switchboard_session::xeddsa::sign(&bob_identity.to_bytes(), &suites_message, &random);
        let kem = kem.map(|kem| {
            let mut seed = [0u8; 64];
            rng.fill_bytes(&mut seed);
            let pair = kem.generate(seed);
            let serialized = [&[kem.type_byte()][..], pair.pk()].concat();
            let signature = switchboard_session::xeddsa::sign(&bob_identity.to_bytes(), &serialized, &random);
            let mut encapsulation_seed = [0u8; 32];
            rng.fill_bytes(&mut encapsulation_seed);
            KemKeys { pair, serialized, signature, encapsulation_seed }
        });
        SetupKeys {
            kem,
            alice_identity_public: PublicKey::from(&alice_identity),
            bob_identity_public: PublicKey::from(&bob_identity),
            bob_one_time_public: PublicKey::from(&bob_one_time),
            alice_identity,
            bob_identity,
            bob_signed,
            bob_signed_public,
            bob_signed_serialized,
            bob_signed_signature,
            suites_message,
            suites_signature,
            bob_one_time,
            alice_base,
            alice_ratchet,
            bob_ratchet,
        }
    }
}

/// The floor of `session_setup`.
struct SetupFloor {
    suite: FloorSuite,
    kem: Option<Kem>,
    keys: Vec<SetupKeys>,
    next: usize,
    plaintext: Vec<u8>,
    alice_chain: MessageChain,
    bob_chain: MessageChain,
    report: Report,
}

impl SetupFloor {
    fn new(suite: FloorSuite, kem: Option<Kem>, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        SetupFloor {
            suite,
            kem,
            keys: (0..16).map(|_| SetupKeys::generate(&mut rng, kem)).collect(),
            next: 0,
            plaintext: plaintext(SMALL),
            alice_chain: MessageChain::new(suite, seed),
            bob_chain: MessageChain::new(suite, seed),
            report: Report::new(Kind::Setup, SMALL),
        }
    }

    /// X3DH's HKDF: 32 bytes of 0xFF, the DH outputs and (post-quantum) the KEM's shared
    /// secret → root key ‖ chain key.
    fn x3dh_kdf(&self, dhs: [&[u8; 32]; 4], shared: Option<&[u8; 32]>) -> [u8; 64] {
        let mut secret = [0xffu8; 32 * 6];
        for (i, dh) in dhs.iter().enumerate() {
            secret[32 * (i + 1)..32 * (i + 2)].copy_from_slice(&dh[..]);
        }
        let len = match shared {
            Some(shared) => {
                secret[32 * 5..].copy_from_slice(shared);
                32 * 6
            }
            None => 32 * 5,
        };
        let label = self.kem.map_or(self.suite.x3dh_label(), Kem::x3dh_label);
        let mut derived = [0u8; 64];
        hkdf(&[0u8; 32], &secret[..len], label, &mut derived);
        derived
    }

    /// One DH ratchet step: HKDF keyed by the root key over the DH output.
    fn ratchet_kdf(&self, root: &[u8], dh: &[u8; 32]) -> [u8; 64] {
        let label = self.kem.map_or(self.suite.ratchet_label(), Kem::ratchet_label);
        let mut derived = [0u8; 64];
        hkdf(root, dh, label, &mut derived);
        derived
    }

    /// One full setup on `keys`; returns the length of the first message's plaintext as the
    /// responder decrypted it (into `bob_chain`).
    fn setup(&mut self, k: usize) -> usize {
        let keys = &self.keys[k];
        // initiator: process the bundle
        assert!(switchboard_session::xeddsa::verify(
            keys.bob_identity_public.as_bytes(),
            &keys.bob_signed_serialized,
            &keys.bob_signed_signature
        ));
        if self.suite == FloorSuite::Aes256Gcm || self.kem.is_some() {
            assert!(switchboard_session::xeddsa::verify(
                keys.bob_identity_public.as_bytes(),
                &keys.suites_message,
                &keys.suites_signature
            ));
        }
        let mut encapsulated = None;
        if let (Some(kem), Some(kem_keys)) = (self.kem, &keys.kem) {
            assert!(switchboard_session::xeddsa::verify(keys.bob_identity_public.as_bytes(), &kem_keys.serialized, &kem_keys.signature));
            let public = kem_keys.pair.public_key();
            encapsulated = Some(match kem {
                Kem::Kyber1024 => kyber1024::encapsulate(public, kem_keys.encapsulation_seed),
                Kem::MlKem1024 => mlkem1024::encapsulate(public, kem_keys.encapsulation_seed),
            });
        }
        let alice_base_public = PublicKey::from(&keys.alice_base);
        let a1 = keys.alice_identity.diffie_hellman(&keys.bob_signed_public);
        let a2 = keys.alice_base.diffie_hellman(&keys.bob_identity_public);
        let a3 = keys.alice_base.diffie_hellman(&keys.bob_signed_public);
        let a4 = keys.alice_base.diffie_hellman(&keys.bob_one_time_public);
        let alice_shared = encapsulated.as_ref().map(|(_, shared)| shared);
        let alice_root = self.x3dh_kdf([a1.as_bytes(), a2.as_bytes(), a3.as_bytes(), a4.as_bytes()], alice_shared);
        let alice_ratchet_public = PublicKey::from(&keys.alice_ratchet);
        let a5 = keys.alice_ratchet.diffie_hellman(&keys.bob_signed_public);
        let alice_sending = self.ratchet_kdf(&alice_root[..32], a5.as_bytes());
        // initiator: encrypt the first message
        self.alice_chain.chain_key.copy_from_slice(&alice_sending[32..]);
        let len = self.alice_chain.encrypt(&self.plaintext);

        // responder: X3DH, new receiving chain, decrypt, new sending chain
        let keys = &self.keys[k];
        let b1 = keys.bob_signed.diffie_hellman(&keys.alice_identity_public);
        let b2 = keys.bob_identity.diffie_hellman(&alice_base_public);
        let b3 = keys.bob_signed.diffie_hellman(&alice_base_public);
        let b4 = keys.bob_one_time.diffie_hellman(&alice_base_public);
        let bob_shared = match (self.kem, &keys.kem, &encapsulated) {
            (Some(kem), Some(kem_keys), Some((ciphertext, _))) => {
                let ciphertext: &MlKem1024Ciphertext = ciphertext;
                Some(match kem {
                    Kem::Kyber1024 => kyber1024::decapsulate(kem_keys.pair.private_key(), ciphertext),
                    Kem::MlKem1024 => mlkem1024::decapsulate(kem_keys.pair.private_key(), ciphertext),
                })
            }
            _ => None,
        };
        let bob_root = self.x3dh_kdf([b1.as_bytes(), b2.as_bytes(), b3.as_bytes(), b4.as_bytes()], bob_shared.as_ref());
        debug_assert_eq!(bob_root, alice_root);
        let b5 = keys.bob_signed.diffie_hellman(&alice_ratchet_public);
        let bob_receiving = self.ratchet_kdf(&bob_root[..32], b5.as_bytes());
        self.bob_chain.chain_key.copy_from_slice(&bob_receiving[32..]);
        let keys = &self.keys[k];
        let wire = &self.alice_chain.out[..len];
        let got = black_box(self.bob_chain.decrypt(wire));
        let bob_ratchet_public = PublicKey::from(&keys.bob_ratchet);
        let b6 = keys.bob_ratchet.diffie_hellman(&alice_ratchet_public);
        let bob_sending = self.ratchet_kdf(&bob_receiving[..32], b6.as_bytes());
        black_box((bob_ratchet_public, bob_sending));
        got
    }
}

impl Workload for SetupFloor {
    fn run(&mut self, iters: u64) -> Duration {
        let mut count = 0;
        let start = Instant::now();
        let last = repeat(iters, &mut count, || {
            let k = self.next;
            self.next = (self.next + 1) % self.keys.len();
            self.setup(k)
        });
        let took = start.elapsed();
        self.report.iterations += count;
        self.report.messages += count;
        if let Some(len) = last {
            // The responder's chain key came out of its own X3DH: the first message reads right
            // only if both sides derived the same keys.
            let got = self.bob_chain.decrypted(len);
            self.report.check(got == self.plaintext, || format!("session_setup: the first message, as the responder read it: {} bytes, not those sent", got.len()));
        }
        took
    }

    fn report(&mut self) -> Report {
        self.report.clone()
    }
}

/// One primitive, timed on its own (for the breakdown of the floor).
struct Primitive<F: FnMut()> {
    body: F,
    /// Iterations run.
    count: u64,
}

impl<F: FnMut()> Workload for Primitive<F> {
    fn run(&mut self, iters: u64) -> Duration {
        let start = Instant::now();
        repeat(iters, &mut self.count, &mut self.body);
        start.elapsed()
    }

    fn report(&mut self) -> Report {
        Report { iterations: self.count, ..Report::new(Kind::Primitive, 0) }
    }
}

/// The primitives the floors are made of, each as a workload: (name, workload).
pub fn primitives(seed: u64) -> Vec<(&'static str, Box<dyn Workload>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = SetupKeys::generate(&mut rng, None);
    let kyber = Kem::Kyber1024.generate([3u8; 64]);
    let ml_kem = Kem::MlKem1024.generate([3u8; 64]);
    let (kyber_ciphertext, _) = kyber1024::encapsulate(kyber.public_key(), [4u8; 32]);
    let (ml_kem_ciphertext, _) = mlkem1024::encapsulate(ml_kem.public_key(), [4u8; 32]);
    let (secret, public) = (keys.alice_base.clone(), keys.bob_signed_public);
    let keygen_secret = keys.alice_ratchet.clone();
    let (identity, signed, signature) = (keys.bob_identity_public, keys.bob_signed_serialized, keys.bob_signed_signature);
    let mut chain_key = [7u8; 32];
    let seed_bytes = [9u8; 32];
    let message_len = SMALL;
    let mut chain = MessageChain::new(FloorSuite::SignalV3, seed);
    let mut gcm_chain = MessageChain::new(FloorSuite::Aes256Gcm, seed);
    let text = plaintext(message_len);
    let gcm_text = text.clone();
    vec![
        ("x25519 DH (variable base, StaticSecret::diffie_hellman)", Box::new(Primitive {
            count: 0,
            body: move || {
                black_box(black_box(&secret).diffie_hellman(black_box(&public)));
            },
        }) as Box<dyn Workload>),
        ("x25519 key generation (fixed base, PublicKey::from)", Box::new(Primitive {
            count: 0,
            body: move || {
                black_box(PublicKey::from(black_box(&keygen_secret)));
            },
        })),
        ("signature verification (switchboard_session::xeddsa::verify)", Box::new(Primitive {
            count: 0,
            body: move || {
                assert!(switchboard_session::xeddsa::verify(identity.as_bytes(), black_box(&signed), &signature));
            },
        })),
        ("chain step (HMAC-SHA256 keyed once, over 0x01 and 0x02)", Box::new(Primitive {
            count: 0,
            body: move || {
                chain_key = chain_step(black_box(&chain_key)).1;
            },
        })),
        ("HKDF-SHA256, 80 bytes (message keys)", Box::new(Primitive {
            count: 0,
            body: move || {
                let mut keys = [0u8; 80];
                hkdf(&[0u8; 32], black_box(&seed_bytes), b"WhisperMessageKeys", &mut keys);
                black_box(keys);
            },
        })),
        ("signal-v3 message encryption, 100 bytes (all of the above symmetric work)", Box::new(Primitive {
            count: 0,
            body: move || {
                black_box(chain.encrypt(black_box(&text)));
            },
        })),
        ("aes-256-gcm message encryption, 100 bytes", Box::new(Primitive {
            count: 0,
            body: move || {
                black_box(gcm_chain.encrypt(black_box(&gcm_text)));
            },
        })),
        ("Kyber-1024 key generation (libcrux-ml-kem)", Box::new(Primitive {
            count: 0,
            body: || {
                black_box(Kem::Kyber1024.generate(black_box([5u8; 64])));
            },
        })),
        ("Kyber-1024 encapsulation", Box::new(Primitive {
            count: 0,
            body: move || {
                black_box(kyber1024::encapsulate(black_box(kyber.public_key()), [6u8; 32]));
            },
        })),
        ("ML-KEM-1024 encapsulation", Box::new(Primitive {
            count: 0,
            body: move || {
                black_box(mlkem1024::encapsulate(black_box(ml_kem.public_key()), [6u8; 32]));
            },
        })),
        ("Kyber-1024 decapsulation", Box::new(Primitive {
            count: 0,
            body: {
                let pair = Kem::Kyber1024.generate([3u8; 64]);
                move || {
                    black_box(kyber1024::decapsulate(black_box(pair.private_key()), &kyber_ciphertext));
                }
            },
        })),
        ("ML-KEM-1024 decapsulation", Box::new(Primitive {
            count: 0,
            body: {
                let pair = Kem::MlKem1024.generate([3u8; 64]);
                move || {
                    black_box(mlkem1024::decapsulate(black_box(pair.private_key()), &ml_kem_ciphertext));
                }
            },
        })),
    ]
}
