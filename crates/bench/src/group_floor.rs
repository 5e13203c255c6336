//! The floor of the group message ops: the primitive operations a Sender Keys message cannot
//! avoid, with the primitive crates (and versions) the session crate uses, no framing, no store,
//! no allocation per message.
//!
//! Counted from crates/session/src/group/{keys,state,message}.rs:
//!
//! - `group_encrypt_100`: the chain step (HMAC-SHA256 keyed with the chain key over 0x01 and over
//!   0x02), HKDF-SHA256 of the message key seed (`signal-v3`: 48 bytes, IV and cipher key;
//!   `aes-256-gcm`: 44 bytes, key and nonce), AES-256-CBC with PKCS#7 of the 100 bytes (GCM: with
//!   the version byte and header as associated data), 64 random bytes for the nonce, and one
//!   XEdDSA signature over version, header and ciphertext with the signing key's Edwards form
//!   computed once, as the session crate caches it (`xeddsa::EdwardsSigningKey::sign`: SHA-512 for
//!   the nonce, one fixed-base scalar multiplication, SHA-512 for the challenge).
//! - `group_decrypt_100`: one verification against the decompressed Edwards key, cached as the
//!   session crate caches it (`xeddsa::verify_edwards`: SHA-512 and one variable-time
//!   double-scalar multiplication), then the chain step, the HKDF and the decryption.
//! - `group_catchup_1000`, per message: the 1,000 signatures verified as one Ed25519 batch
//!   (`ed25519_dalek::verify_batch`, what `group::decrypt_batch` calls, with the ten verifying keys
//!   built once), and each message's chain step, HKDF and decryption.

use std::hint::black_box;
use std::time::Duration;

use aes::Aes256;
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, Aes256Gcm};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use aes_gcm::KeyInit;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use switchboard_session::xeddsa::{self, EdwardsSigningKey, SIGNATURE_LEN};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::floor::{DecryptFloor, EncryptFloor, FloorChain, FloorSuite, array, chain_step, hkdf};
use crate::workloads::{CATCHUP_MESSAGES, CATCHUP_SENDERS, Kind, Op, Report, SMALL, Workload, chunked, each, number, plaintext};

/// The signed part of a SenderKeyMessage before its ciphertext: version byte, key id field
/// (tag and 5-byte varint), iteration field (tag and up to 5-byte varint), ciphertext tag and
/// length.
const HEADER_LEN: usize = 1 + 6 + 6 + 2;
const TAG_LEN: usize = 16;

/// The floor workload of a group message op.
pub fn workload(op: Op, suite: FloorSuite, seed: u64) -> Box<dyn Workload> {
    match op {
        Op::GroupEncrypt100 => {
            Box::new(EncryptFloor::new(SenderChain::new(suite, seed, 0), SenderChain::new(suite, seed, 0), plaintext(SMALL)))
        }
        Op::GroupDecrypt100 => {
            Box::new(DecryptFloor::new(SenderChain::new(suite, seed, 0), SenderChain::new(suite, seed, 0), plaintext(SMALL)))
        }
        Op::GroupCatchup1000 => Box::new(CatchupFloor::new(suite, seed)),
        _ => unreachable!("{} has no floor", op.name()),
    }
}

fn labels(suite: FloorSuite) -> &'static [u8] {
    match suite {
        FloorSuite::SignalV3 => b"WhisperGroup",
        FloorSuite::Aes256Gcm => b"Switchboard_AES256GCM_Group",
    }
}

/// One sender's chain and signing key as sender and as receiver see them, with buffers, so that
/// a message costs only its primitives.
struct SenderChain {
    suite: FloorSuite,
    chain_key: [u8; 32],
    signing: EdwardsSigningKey,
    /// The verifying key: decompressed, and in the compressed form the challenge hashes.
    point: EdwardsPoint,
    compressed: CompressedEdwardsY,
    rng: StdRng,
    /// The wire message: header, ciphertext, signature.
    out: Vec<u8>,
    /// Decrypted plaintext.
    plain: Vec<u8>,
}

impl SenderChain {
    fn new(suite: FloorSuite, seed: u64, index: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x6f10_0000 ^ index as u64);
        let mut chain_key = [0u8; 32];
        rng.fill_bytes(&mut chain_key);
        let mut private = [0u8; 32];
        rng.fill_bytes(&mut private);
        // clamped, as the session crate stores private keys
        private[0] &= 248;
        private[31] &= 127;
        private[31] |= 64;
        let montgomery = PublicKey::from(&StaticSecret::from(private));
        let signing = EdwardsSigningKey::new(&private);
        // The Edwards form a receiver caches: the sign comes with every signature.
        let probe = signing.sign(b"probe", &[0u8; 64]);
        let (ed_public, _) = xeddsa::to_ed25519(montgomery.as_bytes(), &probe).expect("an Edwards form");
        let compressed = CompressedEdwardsY(ed_public);
        let point = compressed.decompress().expect("a point");
        let mut header = [0u8; HEADER_LEN];
        rng.fill_bytes(&mut header);
        let mut out = header.to_vec();
        out.reserve(SMALL + 16 + TAG_LEN + SIGNATURE_LEN);
        SenderChain { suite, chain_key, signing, point, compressed, rng, out, plain: Vec::with_capacity(SMALL + 16) }
    }

    /// The message keys of the next message; advances the chain.
    fn step(&mut self) -> ([u8; 32], [u8; 16]) {
        let (seed, next) = chain_step(&self.chain_key);
        self.chain_key = next;
        let (mut key, mut iv) = ([0u8; 32], [0u8; 16]);
        match self.suite {
            FloorSuite::SignalV3 => {
                let mut derived = [0u8; 48];
                hkdf(&[0u8; 32], &seed, labels(self.suite), &mut derived);
                iv.copy_from_slice(&derived[..16]);
                key.copy_from_slice(&derived[16..]);
            }
            FloorSuite::Aes256Gcm => {
                let mut derived = [0u8; 44];
                hkdf(&[0u8; 32], &seed, labels(self.suite), &mut derived);
                key.copy_from_slice(&derived[..32]);
                iv[..12].copy_from_slice(&derived[32..]);
            }
        }
        (key, iv)
    }

    /// Encrypts and signs the next message into `self.out`.
    fn encrypt(&mut self, plaintext: &[u8]) -> usize {
        let (key, iv) = self.step();
        self.out.truncate(HEADER_LEN);
        match self.suite {
            FloorSuite::SignalV3 => {
                self.out.resize(HEADER_LEN + (plaintext.len() / 16 + 1) * 16, 0);
                let len = cbc::Encryptor::<Aes256>::new(&key.into(), &iv.into())
                    .encrypt_padded_b2b::<Pkcs7>(plaintext, &mut self.out[HEADER_LEN..])
                    .expect("room for padding")
                    .len();
                self.out.truncate(HEADER_LEN + len);
            }
            FloorSuite::Aes256Gcm => {
                self.out.resize(HEADER_LEN + plaintext.len() + TAG_LEN, 0);
                let (header, body) = self.out.split_at_mut(HEADER_LEN);
                let (body, tag_out) = body.split_at_mut(plaintext.len());
                let tag = Aes256Gcm::new(&key.into())
                    .encrypt_inout_detached(
                        &array::<12>(&iv, 0).into(),
                        &header[..HEADER_LEN - 2],
                        InOutBuf::new(plaintext, body).expect("same length"),
                    )
                    .expect("short message");
                tag_out.copy_from_slice(&tag);
            }
        }
        let mut random = [0u8; 64];
        self.rng.fill_bytes(&mut random);
        let signature = self.signing.sign(&self.out, &random);
        self.out.extend_from_slice(&signature);
        self.out.len()
    }

    /// The chain step, the HKDF and the decryption of `wire`'s ciphertext (signature not checked).
    fn open(&mut self, wire: &[u8]) -> usize {
        let (key, iv) = self.step();
        let ciphertext = &wire[HEADER_LEN..wire.len() - SIGNATURE_LEN];
        match self.suite {
            FloorSuite::SignalV3 => {
                self.plain.resize(ciphertext.len(), 0);
                cbc::Decryptor::<Aes256>::new(&key.into(), &iv.into())
                    .decrypt_padded_b2b::<Pkcs7>(ciphertext, &mut self.plain)
                    .expect("valid padding")
                    .len()
            }
            FloorSuite::Aes256Gcm => {
                let (body, tag) = ciphertext.split_at(ciphertext.len() - TAG_LEN);
                self.plain.resize(body.len(), 0);
                Aes256Gcm::new(&key.into())
                    .decrypt_inout_detached(
                        &array::<12>(&iv, 0).into(),
                        &wire[..HEADER_LEN - 2],
                        InOutBuf::new(body, &mut self.plain).expect("same length"),
                        tag.try_into().expect("16 bytes"),
                    )
                    .expect("floor tag verifies");
                body.len()
            }
        }
    }

    /// Verifies `wire`'s signature, then opens it.
    fn decrypt(&mut self, wire: &[u8]) -> usize {
        let (signed, signature) = wire.split_at(wire.len() - SIGNATURE_LEN);
        let signature: &[u8; SIGNATURE_LEN] = signature.try_into().expect("64 bytes");
        assert!(xeddsa::verify_edwards(&self.point, &self.compressed, signed, signature), "floor signature verifies");
        self.open(wire)
    }
}

impl FloorChain for SenderChain {
    fn encrypt(&mut self, plaintext: &[u8]) -> usize {
        SenderChain::encrypt(self, plaintext)
    }
    fn decrypt(&mut self, wire: &[u8]) -> usize {
        SenderChain::decrypt(self, wire)
    }
    fn wire(&self) -> &[u8] {
        &self.out
    }
    fn decrypted(&self, len: usize) -> &[u8] {
        &self.plain[..len]
    }
    fn skip(&mut self, messages: u64) {
        for _ in 0..messages {
            self.step();
        }
    }
}

/// Ten senders' chains (as senders and as the receiver's copies) and their Ed25519 verifying keys.
struct CatchupFloor {
    senders: Vec<SenderChain>,
    receivers: Vec<SenderChain>,
    keys: Vec<ed25519_dalek::VerifyingKey>,
    plaintext: Vec<u8>,
    /// Messages queued so far (the number the next one carries).
    sent: u64,
    report: Report,
}

impl CatchupFloor {
    fn new(suite: FloorSuite, seed: u64) -> Self {
        let senders: Vec<SenderChain> = (0..CATCHUP_SENDERS).map(|i| SenderChain::new(suite, seed, i)).collect();
        let receivers = (0..CATCHUP_SENDERS).map(|i| SenderChain::new(suite, seed, i)).collect();
        let keys = senders.iter().map(|sender| ed25519_dalek::VerifyingKey::from(sender.point)).collect();
        CatchupFloor { senders, receivers, keys, plaintext: plaintext(SMALL), sent: 0, report: Report::new(Kind::Catchup, SMALL) }
    }
}

impl Workload for CatchupFloor {
    fn run(&mut self, iters: u64) -> Duration {
        let mut count = 0;
        let took = chunked(
            self,
            iters,
            1,
            |this, _| {
                let (plaintext, sent) = (&mut this.plaintext, &mut this.sent);
                crate::workloads::group::queue(&mut this.senders, |sender| {
                    number(plaintext, *sent);
                    *sent += 1;
                    let len = sender.encrypt(plaintext);
                    sender.out[..len].to_vec()
                })
            },
            |this, queued| {
                let mut messages: Vec<&[u8]> = Vec::with_capacity(CATCHUP_MESSAGES);
                let mut signatures = Vec::with_capacity(CATCHUP_MESSAGES);
                let mut keys = Vec::with_capacity(CATCHUP_MESSAGES);
                for (from, wire) in queued.iter() {
                    let (signed, signature) = wire.split_at(wire.len() - SIGNATURE_LEN);
                    let mut signature: [u8; SIGNATURE_LEN] = signature.try_into().expect("64 bytes");
                    signature[63] &= 0x7f;
                    messages.push(signed);
                    signatures.push(ed25519_dalek::Signature::from_bytes(&signature));
                    keys.push(this.keys[*from]);
                }
                assert!(ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok(), "floor batch verifies");
                each(queued, &mut count, |(from, wire)| (*from, black_box(this.receivers[*from].open(wire))))
            },
            |this, _, last| {
                this.report.iterations += 1;
                let Some((from, len)) = last else { return };
                let got = &this.receivers[from].plain[..len];
                this.report.check(got == this.plaintext, || format!("group_catchup_1000: the last message: {} bytes, not those sent", got.len()));
            },
        );
        self.report.messages += count;
        took
    }

    fn report(&mut self) -> Report {
        self.report.clone()
    }
}
