//! What "harvest now, decrypt later" reads: an adversary that recorded 1:1 traffic and later
//! learns every X25519 private key (a quantum computer computes each from the public key it saw)
//! but no KEM secret. It is the threat the post-quantum suites answer, and a [`Harvest`] plays
//! it: a passive reader that follows each recorded session from its first message, computing
//! the key agreement and every DH ratchet step from the private keys it is given, and counts a
//! message as read only when the message's own MAC or tag verifies under the keys it derived.
//!
//! For a post-quantum session it computes what a classical one would (the DH outputs through the
//! suite's own key derivation, without the KEM's shared secret, which it cannot know): if the
//! KEM's secret did not reach the key schedule, that is what it would read.
//!
//! A research tool for simulations and tests; it reads nothing a real device would hand out.

use std::collections::HashMap;

use zeroize::Zeroizing;

use crate::address::ProtocolAddress;
use crate::keys::{IdentityKey, PrivateKey, PublicKey};
use crate::prekey::PreKeyBundle;
use crate::protocol::{CiphertextMessage, Parties, SignalMessage};
use crate::ratchet::keys::{ChainKey, RootKey};
use crate::suite::Suite;
use crate::x3dh::{DISCONTINUITY, derive_initial};

/// Recorded sessions followed at most, and messages per chain stepped through: a reader given
/// hostile traffic stays bounded.
pub const MAX_OBSERVED_SESSIONS: usize = 100_000;
/// How far into one chain the reader steps.
pub const MAX_CHAIN_STEPS: u32 = 100_000;

/// Which side of a session a key or message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Initiator,
    Responder,
}

/// One recorded session, as the reader has followed it so far.
struct Observed {
    suite: Suite,
    initiator: ProtocolAddress,
    responder: ProtocolAddress,
    initiator_identity: IdentityKey,
    responder_identity: IdentityKey,
    base_key: PublicKey,
    root: RootKey,
    /// The newest ratchet key, and whose it is.
    latest: (PublicKey, Side),
    /// Every ratchet key seen, with its chain at index 0.
    chains: Vec<(PublicKey, ChainKey)>,
}

/// The reader: the keys that were published (from bundles on the wire), the sessions followed,
/// and the private keys it is given.
#[derive(Default)]
pub struct Harvest {
    identities: HashMap<ProtocolAddress, IdentityKey>,
    signed_prekeys: HashMap<(ProtocolAddress, u32), PublicKey>,
    one_time_prekeys: HashMap<(ProtocolAddress, u32), PublicKey>,
    private_keys: HashMap<PublicKey, PrivateKey>,
    sessions: Vec<Observed>,
}

impl Harvest {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Learns the public keys of `device`'s bundle, as it crossed the wire.
    pub fn learn_bundle(&mut self, device: &ProtocolAddress, bundle: &PreKeyBundle) {
        self.identities.insert(device.clone(), bundle.identity_key);
        self.signed_prekeys.insert((device.clone(), bundle.signed_prekey_id), bundle.signed_prekey);
        if let Some((id, key)) = bundle.prekey {
            self.one_time_prekeys.insert((device.clone(), id), key);
        }
    }

    /// Is given a private key (the quantum computer's answer for its public key).
    pub fn learn_private_key(&mut self, private: PrivateKey) {
        self.private_keys.insert(private.public_key(), private);
    }

    /// X25519 of two public keys, from the private half of either.
    fn agree(&self, a: &PublicKey, b: &PublicKey) -> Option<Zeroizing<[u8; 32]>> {
        match (self.private_keys.get(a), self.private_keys.get(b)) {
            (Some(private), _) => Some(private.agree(b)),
            (None, Some(private)) => Some(private.agree(a)),
            (None, None) => None,
        }
    }

    /// Reads `message`, recorded on its way from `from` to `to`, in the order messages were sent.
    /// `Some(plaintext)` when the reader derived keys under which it authenticates.
    pub fn read(&mut self, from: &ProtocolAddress, to: &ProtocolAddress, message: &CiphertextMessage) -> Option<Vec<u8>> {
        match message {
            CiphertextMessage::PreKey(first) => {
                let position = match self.sessions.iter().position(|session| {
                    session.base_key == *first.base_key() && session.initiator == *from && session.responder == *to
                }) {
                    Some(position) => position,
                    None => self.start(from, to, first)?,
                };
                let associated_data = first.header().associated_data();
                self.read_in(position, Side::Initiator, first.message(), &associated_data)
            }
            CiphertextMessage::Signal(message) => {
                // Newest sessions first: a reset leaves older ones behind.
                let candidates: Vec<(usize, Side)> = self
                    .sessions
                    .iter()
                    .enumerate()
                    .rev()
                    .filter_map(|(position, session)| match (&session.initiator, &session.responder) {
                        (initiator, responder) if initiator == from && responder == to => Some((position, Side::Initiator)),
                        (initiator, responder) if initiator == to && responder == from => Some((position, Side::Responder)),
                        _ => None,
                    })
                    .collect();
                candidates.into_iter().find_map(|(position, side)| self.read_in(position, side, message, &[]))
            }
        }
    }

    /// The key agreement of a first message, as the responder computes it, without a KEM secret.
    fn start(&mut self, from: &ProtocolAddress, to: &ProtocolAddress, first: &crate::PreKeySignalMessage) -> Option<usize> {
        if self.sessions.len() >= MAX_OBSERVED_SESSIONS {
            return None;
        }
        let responder_identity = *self.identities.get(to)?;
        let signed = *self.signed_prekeys.get(&(to.clone(), first.signed_prekey_id()))?;
        let one_time = match first.prekey_id() {
            Some(id) => Some(*self.one_time_prekeys.get(&(to.clone(), id))?),
            None => None,
        };
        let (initiator_identity, base) = (*first.identity_key(), *first.base_key());
        let mut secret = Zeroizing::new(DISCONTINUITY.to_vec());
        secret.extend_from_slice(self.agree(&initiator_identity, &signed)?.as_ref());
        secret.extend_from_slice(self.agree(&base, &responder_identity)?.as_ref());
        secret.extend_from_slice(self.agree(&base, &signed)?.as_ref());
        if let Some(one_time) = one_time {
            secret.extend_from_slice(self.agree(&base, &one_time)?.as_ref());
        }
        let (root, chain) = derive_initial(first.suite(), &secret);
        self.sessions.push(Observed {
            suite: first.suite(),
            initiator: from.clone(),
            responder: to.clone(),
            initiator_identity,
            responder_identity,
            base_key: base,
            root,
            latest: (signed, Side::Responder),
            chains: vec![(signed, chain)],
        });
        Some(self.sessions.len() - 1)
    }

    /// Reads one message of session `position` sent by `side`: in a chain already followed, or
    /// in a new one that the sender's new ratchet key opens.
    fn read_in(&mut self, position: usize, side: Side, message: &SignalMessage, associated_data: &[u8]) -> Option<Vec<u8>> {
        let session = &self.sessions[position];
        if message.suite() != session.suite || message.counter() > MAX_CHAIN_STEPS {
            return None;
        }
        let parties = match side {
            Side::Initiator => Parties { sender: &session.initiator_identity, receiver: &session.responder_identity },
            Side::Responder => Parties { sender: &session.responder_identity, receiver: &session.initiator_identity },
        };
        if let Some((_, chain)) = session.chains.iter().find(|(key, _)| key == message.ratchet_key()) {
            return read_at(session.suite, chain, message, parties, associated_data);
        }
        if session.latest.1 == side {
            return None;
        }
        let shared = self.agree(message.ratchet_key(), &session.latest.0)?;
        let (root, chain) = session.root.step(session.suite, &shared);
        let plaintext = read_at(session.suite, &chain, message, parties, associated_data)?;
        let session = &mut self.sessions[position];
        session.root = root;
        session.latest = (*message.ratchet_key(), side);
        session.chains.push((*message.ratchet_key(), chain));
        Some(plaintext)
    }
}

/// Steps `chain` to the message's counter and decrypts it there.
fn read_at(suite: Suite, chain: &ChainKey, message: &SignalMessage, parties: Parties<'_>, associated_data: &[u8]) -> Option<Vec<u8>> {
    let mut chain = chain.clone();
    while chain.index < message.counter() {
        chain = chain.next();
    }
    let (keys, _) = chain.step(suite);
    message.decrypt(&keys, parties, associated_data).ok()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::session::{decrypt, encrypt, process_prekey_bundle};
    use crate::testing::Device;

    /// Records every 32-byte draw: the X25519 private keys (and anything else drawn in 32 bytes).
    struct Recording<'a> {
        inner: &'a mut StdRng,
        drawn: &'a mut Vec<[u8; 32]>,
    }

    impl rand_core::TryRng for Recording<'_> {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            self.inner.try_next_u32()
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            self.inner.try_next_u64()
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            self.inner.try_fill_bytes(dst)?;
            if let Ok(drawn) = <[u8; 32]>::try_from(&*dst) {
                self.drawn.push(drawn);
            }
            Ok(())
        }
    }

    impl rand_core::TryCryptoRng for Recording<'_> {}

    /// A conversation of `turns` ratchet turns under `suite`; how many of its messages the reader
    /// reads, of how many.
    fn harvest(suite: Suite, turns: usize) -> (usize, usize) {
        let mut seed_rng = StdRng::seed_from_u64(9);
        let mut drawn = Vec::new();
        let mut rng = Recording { inner: &mut seed_rng, drawn: &mut drawn };
        let (alice_at, bob_at) = (ProtocolAddress::new("alice@a", 1), ProtocolAddress::new("bob@b", 1));
        let mut alice = Device::new(1, 1, &mut rng);
        let mut bob = Device::new(2, 1, &mut rng);
        let bundle = bob.bundle(&Suite::ALL, &mut rng);
        process_prekey_bundle(&mut alice.store, &bob_at, &bundle, suite, &mut rng).unwrap();
        let mut wire = Vec::new();
        for turn in 0..turns {
            for n in 0..3 {
                let text = format!("turn {turn} message {n}");
                if turn % 2 == 0 {
                    let message = encrypt(&mut alice.store, &bob_at, text.as_bytes()).unwrap();
                    decrypt(&mut bob.store, &alice_at, &message, &mut rng).unwrap();
                    wire.push((alice_at.clone(), bob_at.clone(), message, text));
                } else {
                    let message = encrypt(&mut bob.store, &alice_at, text.as_bytes()).unwrap();
                    decrypt(&mut alice.store, &bob_at, &message, &mut rng).unwrap();
                    wire.push((bob_at.clone(), alice_at.clone(), message, text));
                }
            }
        }
        let mut reader = Harvest::new();
        reader.learn_bundle(&bob_at, &bundle);
        for scalar in drawn {
            reader.learn_private_key(PrivateKey::from_scalar_bytes(scalar));
        }
        let read = wire
            .iter()
            .filter(|(from, to, message, text)| reader.read(from, to, message).is_some_and(|plaintext| plaintext == text.as_bytes()))
            .count();
        (read, wire.len())
    }

    #[test]
    fn a_classical_session_is_read_whole_a_post_quantum_one_not_at_all() {
        for suite in Suite::ALL {
            let (read, sent) = harvest(suite, 6);
            assert_eq!(sent, 18);
            match suite.kem() {
                None => assert_eq!(read, sent, "{suite}: every message read"),
                Some(_) => assert_eq!(read, 0, "{suite}: none read"),
            }
        }
    }

    #[test]
    fn without_the_private_keys_nothing_is_read() {
        let mut rng = StdRng::seed_from_u64(10);
        let (alice_at, bob_at) = (ProtocolAddress::new("alice@a", 1), ProtocolAddress::new("bob@b", 1));
        let mut alice = Device::new(1, 1, &mut rng);
        let mut bob = Device::new(2, 1, &mut rng);
        let bundle = bob.bundle(&Suite::ALL, &mut rng);
        process_prekey_bundle(&mut alice.store, &bob_at, &bundle, Suite::SignalV3, &mut rng).unwrap();
        let message = encrypt(&mut alice.store, &bob_at, b"hi").unwrap();
        let mut reader = Harvest::new();
        reader.learn_bundle(&bob_at, &bundle);
        assert!(reader.read(&alice_at, &bob_at, &message).is_none());
    }
}
