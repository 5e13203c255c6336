//! Sender key state: one sender's chain in one group, with its signing key in the Edwards form
//! that signing and verification need (computed once, not per message), and its stored form,
//! libsignal's SenderKeyRecordStructure.

use std::collections::VecDeque;
use std::sync::OnceLock;

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::montgomery::MontgomeryPoint;
use switchboard_wire::{Message, decode, limits, signal};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::group::keys::{SenderChainKey, SenderMessageKey};
use crate::group::message::{SenderKeyDistributionMessage, SenderKeyMessage};
use crate::keys::{DJB_TYPE, KeyPair, PUBLIC_KEY_LEN, PrivateKey, PublicKey};
use crate::limits::{MAX_FORWARD_JUMPS, MAX_RETIRED_SENDER_KEYS, MAX_SENDER_KEY_STATES, MAX_SKIPPED_KEYS};
use crate::suite::Suite;
use crate::xeddsa::{self, EdwardsSigningKey, SIGNATURE_LEN};

/// A signing public key, decompressed once. The Montgomery form leaves the sign of the Edwards
/// point open; each signature carries it, and the two candidates differ only in that bit.
///
/// Made once per key and carried along: a received key is decompressed when its distribution
/// message is parsed (which must refuse a key with no Edwards form) and the state built from the
/// message takes the point from there; our own key takes it from the base-point multiplication
/// that made it. The compressed form, which only verification needs (the challenge hashes it),
/// costs a field inversion: it is computed at the first verification, since many received keys
/// never verify a message (a member who leaves, a key rotated before its owner sends).
#[derive(Clone, Debug)]
pub(crate) struct VerifyingKey {
    public: PublicKey,
    /// The Edwards point of `public` with an even `x` (`to_edwards(0)`).
    point: EdwardsPoint,
    /// `point` compressed (its top bit clear), once a signature has been checked.
    compressed: OnceLock<CompressedEdwardsY>,
}

impl VerifyingKey {
    pub(crate) fn new(public: PublicKey) -> Result<Self> {
        let point = MontgomeryPoint(*public.as_montgomery())
            .to_edwards(0)
            .ok_or(Error::InvalidKey("signing key has no Edwards form"))?;
        Ok(VerifyingKey { public, point, compressed: OnceLock::new() })
    }

    /// The verifying key of our own `signing` key, from the public point `a·B` that made it.
    fn own(public: PublicKey, signing: &EdwardsSigningKey, point: EdwardsPoint) -> Self {
        let mut compressed = *signing.public();
        let negative = compressed.0[31] >> 7 == 1;
        compressed.0[31] &= 0x7f;
        VerifyingKey { public, point: if negative { -point } else { point }, compressed: OnceLock::from(compressed) }
    }

    /// The Montgomery public key, as the wire carries it.
    pub(crate) fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The Edwards public key a signature with `sign_bit` is checked against.
    pub(crate) fn point(&self, sign_bit: u8) -> EdwardsPoint {
        if sign_bit == 0 { self.point } else { -self.point }
    }

    /// The Edwards public key and compressed form a signature with `sign_bit` is checked against.
    pub(crate) fn edwards(&self, sign_bit: u8) -> (EdwardsPoint, CompressedEdwardsY) {
        let mut compressed = *self.compressed.get_or_init(|| self.point.compress());
        compressed.0[31] |= sign_bit << 7;
        (self.point(sign_bit), compressed)
    }

    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        let (point, compressed) = self.edwards(signature[63] >> 7);
        xeddsa::verify_edwards(&point, &compressed, message, signature)
    }
}

/// The private half of our own sender key.
#[derive(Clone)]
pub(crate) struct SigningKey {
    pair: KeyPair,
    edwards: EdwardsSigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// Our sender key's signing key and verifying key from its private key: the Edwards signing
    /// key, the X25519 public key and the Edwards verifying key all come from one base-point
    /// multiplication.
    fn from_private(private: PrivateKey) -> (SigningKey, VerifyingKey) {
        let (edwards, point) = EdwardsSigningKey::with_public_point(&private.to_bytes());
        let mut serialized = [0u8; PUBLIC_KEY_LEN];
        serialized[0] = DJB_TYPE;
        serialized[1..].copy_from_slice(&point.to_montgomery().to_bytes());
        let public = PublicKey::from_bytes(&serialized).expect("the type byte and 32 bytes");
        let verifying = VerifyingKey::own(public, &edwards, point);
        (SigningKey { pair: KeyPair { public, private }, edwards }, verifying)
    }
}

/// One sender key: a chain, its signing key, and the keys of skipped messages (oldest first).
#[derive(Clone, Debug)]
pub(crate) struct SenderKeyState {
    pub(crate) suite: Suite,
    pub(crate) key_id: u32,
    pub(crate) chain_key: SenderChainKey,
    pub(crate) verifying: VerifyingKey,
    pub(crate) signing: Option<SigningKey>,
    pub(crate) skipped: VecDeque<SenderMessageKey>,
}

/// What a successful group decryption changes, computed before anything changes.
pub(crate) struct GroupDecryptPlan {
    pub(crate) plaintext: Vec<u8>,
    update: GroupUpdate,
}

enum GroupUpdate {
    UsedSkipped(usize),
    Advanced { skipped: Vec<SenderMessageKey>, next: SenderChainKey },
}

impl SenderKeyState {
    /// Our own new sender key.
    pub(crate) fn generate<R: rand_core::CryptoRng + ?Sized>(suite: Suite, rng: &mut R) -> Self {
        // Drawn as libsignal-c draws them (key id as 4 bytes cut to 31 bits, chain seed, signing
        // key), so that the same random bytes give the same sender key in both.
        let mut key_id = [0u8; 4];
        rng.fill_bytes(&mut key_id);
        let key_id = u32::from_le_bytes(key_id) & 0x7fff_ffff;
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        // The private key drawn as `KeyPair::generate` draws it.
        let (signing, verifying) = SigningKey::from_private(PrivateKey::generate(rng));
        SenderKeyState {
            suite,
            key_id,
            chain_key: SenderChainKey { iteration: 0, seed },
            verifying,
            signing: Some(signing),
            skipped: VecDeque::new(),
        }
    }

    /// Another member's sender key, from its distribution message (which decompressed its
    /// signing key when it was parsed).
    pub(crate) fn from_distribution(message: &SenderKeyDistributionMessage) -> Self {
        SenderKeyState {
            suite: message.suite,
            key_id: message.key_id,
            chain_key: SenderChainKey { iteration: message.iteration, seed: *message.chain_key },
            verifying: message.verifying.clone(),
            signing: None,
            skipped: VecDeque::new(),
        }
    }

    /// The distribution message for this key at its current iteration.
    pub(crate) fn distribution(&self) -> SenderKeyDistributionMessage {
        SenderKeyDistributionMessage::new(
            self.suite,
            self.key_id,
            self.chain_key.iteration,
            &self.chain_key.seed,
            self.verifying.clone(),
        )
    }

    /// Encrypts and signs the next message of our chain.
    pub(crate) fn encrypt<R: rand_core::CryptoRng + ?Sized>(&mut self, plaintext: &[u8], rng: &mut R) -> Result<SenderKeyMessage> {
        let signing = self.signing.as_ref().ok_or(Error::InvalidRecord("no private signing key for our own sender key"))?;
        if self.chain_key.iteration == u32::MAX {
            return Err(Error::InvalidRecord("sender chain exhausted"));
        }
        let (message_key, next) = self.chain_key.step();
        let keys = message_key.keys(self.suite);
        let mut random = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(random.as_mut());
        let message = SenderKeyMessage::encrypt(self.suite, self.key_id, message_key.iteration, &keys, plaintext, |signed| {
            signing.edwards.sign(signed, &random)
        });
        self.chain_key = next;
        Ok(message)
    }

    /// Works out the plaintext of `message` and what decrypting it changes. The signature must
    /// already have been checked (`signature_checked`), or is checked here.
    pub(crate) fn plan_decrypt(&self, message: &SenderKeyMessage, signature_checked: bool) -> Result<GroupDecryptPlan> {
        if message.suite != self.suite {
            return Err(Error::InvalidVersion(message.suite.version_byte()));
        }
        if !signature_checked {
            let (signed, signature) = message.signed_parts();
            if !self.verifying.verify(signed, signature) {
                return Err(Error::InvalidMessage("group message signature does not verify"));
            }
        }
        let iteration = message.iteration;
        let (message_key, update) = if iteration < self.chain_key.iteration {
            let position = self
                .skipped
                .iter()
                .position(|key| key.iteration == iteration)
                .ok_or(Error::Duplicate { counter: iteration })?;
            (self.skipped[position].clone(), GroupUpdate::UsedSkipped(position))
        } else {
            let jump = iteration - self.chain_key.iteration;
            if jump > MAX_FORWARD_JUMPS {
                return Err(Error::TooFarAhead { jump, limit: MAX_FORWARD_JUMPS });
            }
            if iteration == u32::MAX {
                return Err(Error::InvalidMessage("iteration at the end of the chain"));
            }
            let keep_from = iteration.saturating_sub(MAX_SKIPPED_KEYS as u32);
            let mut chain = self.chain_key.clone();
            let mut skipped = Vec::new();
            while chain.iteration < iteration {
                if chain.iteration < keep_from {
                    chain = chain.next();
                } else {
                    let (key, next) = chain.step();
                    skipped.push(key);
                    chain = next;
                }
            }
            let (key, next) = chain.step();
            (key, GroupUpdate::Advanced { skipped, next })
        };
        let plaintext = message.decrypt(&message_key.keys(self.suite))?;
        Ok(GroupDecryptPlan { plaintext, update })
    }

    pub(crate) fn commit(&mut self, plan: GroupDecryptPlan) -> Vec<u8> {
        match plan.update {
            GroupUpdate::UsedSkipped(position) => {
                self.skipped.remove(position);
            }
            GroupUpdate::Advanced { skipped, next } => {
                self.skipped.extend(skipped);
                while self.skipped.len() > MAX_SKIPPED_KEYS {
                    self.skipped.pop_front();
                }
                self.chain_key = next;
            }
        }
        plan.plaintext
    }
}

/// All sender keys of one sender in one group, newest first, at most [`MAX_SENDER_KEY_STATES`]:
/// messages under a replaced key still decrypt for a while. Keys that leave the record are
/// remembered (at most [`MAX_RETIRED_SENDER_KEYS`]) so that none comes back.
#[derive(Clone, Debug, Default)]
pub struct SenderKeyRecord {
    pub(crate) states: VecDeque<SenderKeyState>,
    retired: VecDeque<RetiredKey>,
}

/// A sender key that left its record: its id and signing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RetiredKey {
    key_id: u32,
    signing: PublicKey,
}

impl SenderKeyRecord {
    pub(crate) fn newest(&self) -> Option<&SenderKeyState> {
        self.states.front()
    }

    pub(crate) fn newest_mut(&mut self) -> Option<&mut SenderKeyState> {
        self.states.front_mut()
    }

    pub(crate) fn state_index(&self, key_id: u32) -> Option<usize> {
        self.states.iter().position(|state| state.key_id == key_id)
    }

    /// Adds a state as the newest. A state already here with the same key id and signing key is
    /// left as it is (a distribution does not wind a held key back to an older iteration); a key
    /// that has left the record is refused, so it does not come back.
    pub(crate) fn add(&mut self, state: SenderKeyState) -> Result<()> {
        let key = RetiredKey { key_id: state.key_id, signing: state.verifying.public };
        if self.retired.contains(&key) {
            return Err(Error::RetiredSenderKey { key_id: state.key_id });
        }
        if let Some(index) = self.state_index(state.key_id) {
            if self.states[index].verifying.public == state.verifying.public {
                return Ok(());
            }
            // The same id under another signing key: the held one is replaced, and retired.
            let replaced = self.states.remove(index).expect("index from state_index");
            self.retire(&replaced);
        }
        self.states.push_front(state);
        while self.states.len() > MAX_SENDER_KEY_STATES {
            let evicted = self.states.pop_back().expect("longer than the bound");
            self.retire(&evicted);
        }
        Ok(())
    }

    fn retire(&mut self, state: &SenderKeyState) {
        if self.retired.len() == MAX_RETIRED_SENDER_KEYS {
            self.retired.pop_front();
        }
        self.retired.push_back(RetiredKey { key_id: state.key_id, signing: state.verifying.public });
    }

    /// Serializes as libsignal's SenderKeyRecordStructure (with Switchboard's suite field).
    pub fn serialize(&self) -> Zeroizing<Vec<u8>> {
        use signal::sender_key_record_structure::RetiredSenderKey;
        let structure = signal::SenderKeyRecordStructure {
            sender_key_states: self.states.iter().map(state_to_wire).collect(),
            retired: self
                .retired
                .iter()
                .map(|key| RetiredSenderKey { sender_key_id: Some(key.key_id), signing_key: Some(key.signing.serialize().to_vec()) })
                .collect(),
        };
        Zeroizing::new(structure.encode_to_vec())
    }

    /// Parses a stored SenderKeyRecordStructure.
    pub fn deserialize(bytes: &[u8]) -> Result<Self> {
        let structure: signal::SenderKeyRecordStructure = decode(bytes, limits::MAX_RECORD_LEN)?;
        if structure.sender_key_states.len() > MAX_SENDER_KEY_STATES {
            return Err(Error::InvalidRecord("too many sender key states"));
        }
        if structure.retired.len() > MAX_RETIRED_SENDER_KEYS {
            return Err(Error::InvalidRecord("too many retired sender keys"));
        }
        let retired = structure
            .retired
            .into_iter()
            .map(|key| {
                Ok(RetiredKey {
                    key_id: key.sender_key_id.ok_or(Error::InvalidRecord("retired sender key without id"))?,
                    signing: PublicKey::from_bytes(&key.signing_key.unwrap_or_default())
                        .map_err(|_| Error::InvalidRecord("malformed retired signing key"))?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(SenderKeyRecord {
            states: structure.sender_key_states.into_iter().map(state_from_wire).collect::<Result<_>>()?,
            retired,
        })
    }
}

fn state_to_wire(state: &SenderKeyState) -> signal::SenderKeyStateStructure {
    use signal::sender_key_state_structure::{SenderChainKey as WireChain, SenderMessageKey as WireKey, SenderSigningKey};
    signal::SenderKeyStateStructure {
        sender_key_id: Some(state.key_id),
        sender_chain_key: Some(WireChain {
            iteration: Some(state.chain_key.iteration),
            seed: Some(state.chain_key.seed.to_vec()),
        }),
        sender_signing_key: Some(SenderSigningKey {
            public: Some(state.verifying.public.serialize().to_vec()),
            private: state.signing.as_ref().map(|signing| signing.pair.private.to_bytes().to_vec()),
        }),
        sender_message_keys: state
            .skipped
            .iter()
            .map(|key| WireKey { iteration: Some(key.iteration), seed: Some(key.seed.to_vec()) })
            .collect(),
        suite: match state.suite {
            Suite::SignalV3 => None,
            other => Some(other.to_wire() as i32),
        },
    }
}

fn state_from_wire(structure: signal::SenderKeyStateStructure) -> Result<SenderKeyState> {
    let suite = Suite::from_wire(structure.suite)?;
    if suite != suite.classical() {
        return Err(Error::InvalidRecord("a sender key under a post-quantum suite"));
    }
    let chain = structure.sender_chain_key.ok_or(Error::InvalidRecord("no sender chain key"))?;
    let seed = |bytes: Option<Vec<u8>>| -> Result<[u8; 32]> {
        let bytes = Zeroizing::new(bytes.unwrap_or_default());
        bytes.as_slice().try_into().map_err(|_| Error::InvalidRecord("sender chain seed is not 32 bytes"))
    };
    let signing_key = structure.sender_signing_key.ok_or(Error::InvalidRecord("no signing key"))?;
    let public = PublicKey::from_bytes(&signing_key.public.unwrap_or_default())
        .map_err(|_| Error::InvalidRecord("malformed signing key"))?;
    // Our own key: its verifying key comes with the signing key, checked against the stored
    // public key as `KeyPair::from_stored` checks it.
    let own = match signing_key.private {
        None => None,
        Some(private) => {
            let (signing, verifying) = SigningKey::from_private(PrivateKey::from_bytes(&Zeroizing::new(private))?);
            if verifying.public != public {
                return Err(Error::InvalidKey("stored public key does not match its private key"));
            }
            Some((signing, verifying))
        }
    };
    if structure.sender_message_keys.len() > MAX_SKIPPED_KEYS {
        return Err(Error::InvalidRecord("too many skipped group message keys"));
    }
    Ok(SenderKeyState {
        suite,
        key_id: structure.sender_key_id.ok_or(Error::InvalidRecord("no sender key id"))?,
        chain_key: SenderChainKey { iteration: chain.iteration.unwrap_or(0), seed: seed(chain.seed)? },
        verifying: match &own {
            Some((_, verifying)) => verifying.clone(),
            None => VerifyingKey::new(public).map_err(|_| Error::InvalidRecord("signing key has no Edwards form"))?,
        },
        signing: own.map(|(signing, _)| signing),
        skipped: structure
            .sender_message_keys
            .into_iter()
            .map(|key| Ok(SenderMessageKey { iteration: key.iteration.unwrap_or(0), seed: seed(key.seed)? }))
            .collect::<Result<_>>()?,
    })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    /// One base-point multiplication gives what `KeyPair::generate` and a decompression of its
    /// public key gave before: the same X25519 public key from the same random bytes, and the
    /// same Edwards verifying key (point and compressed form).
    #[test]
    fn our_own_keys_come_from_one_multiplication_and_match_the_separate_derivations() {
        for seed in 0..64 {
            let (mut ours, mut theirs) = (StdRng::seed_from_u64(seed), StdRng::seed_from_u64(seed));
            let (signing, verifying) = SigningKey::from_private(PrivateKey::generate(&mut ours));
            let pair = KeyPair::generate(&mut theirs);
            assert_eq!(signing.pair.public, pair.public);
            assert_eq!(*signing.pair.private.to_bytes(), *pair.private.to_bytes());
            let decompressed = VerifyingKey::new(pair.public).unwrap();
            for sign_bit in [0, 1] {
                assert_eq!(verifying.edwards(sign_bit), decompressed.edwards(sign_bit), "seed {seed}, sign {sign_bit}");
            }
            // What the signing key signs verifies against both.
            let signature = signing.edwards.sign(b"m", &[seed as u8; 64]);
            assert!(verifying.verify(b"m", &signature) && decompressed.verify(b"m", &signature));
            assert!(pair.public.verify_signature(b"m", &signature));
        }
    }

    #[test]
    fn a_stored_private_key_must_match_its_public_key() {
        let mut rng = StdRng::seed_from_u64(3);
        let state = SenderKeyState::generate(Suite::SignalV3, &mut rng);
        let other = KeyPair::generate(&mut rng);
        let mut structure = state_to_wire(&state);
        let signing = structure.sender_signing_key.as_mut().unwrap();
        signing.public = Some(other.public.serialize().to_vec());
        assert_eq!(
            state_from_wire(structure.clone()).unwrap_err(),
            Error::InvalidKey("stored public key does not match its private key")
        );
        structure.sender_signing_key.as_mut().unwrap().private = Some(vec![1; 31]);
        assert_eq!(state_from_wire(structure).unwrap_err(), Error::InvalidKey("private key is not 32 bytes"));
        let restored = state_from_wire(state_to_wire(&state)).unwrap();
        assert_eq!(restored.verifying.edwards(1), state.verifying.edwards(1));
    }
}
