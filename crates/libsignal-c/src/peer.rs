//! The peer protocol (`docs/PEER_PROTOCOL.md`) over the reference C library (`signal-v3` only),
//! so the conformance runner can hold it against any other implementation. It implements the
//! `Backend` trait of `switchboard-peer`, whose typed requests and responses it shares with the
//! server loop and the runner.

use std::collections::HashMap;

use switchboard_peer::protocol::printable;
use switchboard_peer::{Backend, Bundle, ErrorKind, Hello, MessageType, PeerError};

use crate::{Error, MessageKind, Party};

/// Parties one peer holds at most.
pub const MAX_PARTIES: usize = 10_000;
/// One-time prekeys one party may be created with.
pub const MAX_PREKEYS: u32 = 10_000;
/// Remote parties are named by the peer protocol without a device id; this one stands for all.
const REMOTE_DEVICE_ID: u32 = 1;
const SUITE: &str = "signal-v3";

/// The C library behind the peer protocol. Each party gets its own seeded RNG: `seed` plus the
/// number of parties created before it.
pub struct CBackend {
    parties: HashMap<String, Party>,
    seed: u64,
}

impl CBackend {
    /// A peer with no party yet, whose parties draw their randomness from `seed` (the first
    /// party from `seed`, the next from `seed + 1`, and so on).
    pub fn new(seed: u64) -> Self {
        CBackend { parties: HashMap::new(), seed }
    }

    fn party(&mut self, name: &str) -> Result<&mut Party, PeerError> {
        self.parties.get_mut(name).ok_or_else(|| PeerError::unknown_party(name))
    }
}

fn peer_error(error: Error) -> PeerError {
    let kind = match &error {
        Error::Duplicate => ErrorKind::Duplicate,
        Error::NoSession | Error::NoSenderKey => ErrorKind::NoSession,
        Error::UntrustedIdentity => ErrorKind::UntrustedIdentity,
        Error::InvalidKey(_) => ErrorKind::InvalidKey,
        _ => ErrorKind::InvalidMessage,
    };
    PeerError::new(kind, error.to_string())
}

fn check_suite(suite: &str) -> Result<(), PeerError> {
    if suite == SUITE {
        Ok(())
    } else {
        Err(PeerError::unsupported(format!("suite {} (the C library speaks signal-v3 only)", printable(suite))))
    }
}

impl Backend for CBackend {
    fn hello(&self) -> Hello {
        Hello {
            implementation: "libsignal-protocol-c".into(),
            version: "2.3.3".into(),
            suites: vec![SUITE.into()],
            features: vec!["session".into(), "group".into()],
        }
    }

    fn create(&mut self, party: &str, registration_id: u32, device_id: u32, prekeys: u32) -> Result<(), PeerError> {
        if party.is_empty() || self.parties.contains_key(party) {
            return Err(PeerError::bad_request(format!("party {} is empty or exists", printable(party))));
        }
        if self.parties.len() >= MAX_PARTIES || prekeys > MAX_PREKEYS {
            return Err(PeerError::bad_request(format!("at most {MAX_PARTIES} parties of {MAX_PREKEYS} prekeys")));
        }
        let seed = self.seed.wrapping_add(self.parties.len() as u64);
        let created = Party::new(registration_id, device_id, prekeys, seed)
            .map_err(|e| PeerError::bad_request(e.to_string()))?;
        self.parties.insert(party.to_owned(), created);
        Ok(())
    }

    fn bundle(&mut self, party: &str, suite: &str) -> Result<Bundle, PeerError> {
        check_suite(suite)?;
        let bundle = self.party(party)?.bundle().map_err(peer_error)?;
        Ok(Bundle {
            suite: SUITE.into(),
            registration_id: bundle.registration_id,
            device_id: bundle.device_id,
            identity_key: bundle.identity_key.into(),
            signed_prekey_id: bundle.signed_prekey_id,
            signed_prekey: bundle.signed_prekey.into(),
            signed_prekey_signature: bundle.signed_prekey_signature.into(),
            prekey_id: bundle.prekey_id,
            prekey: bundle.prekey.map(Into::into),
            suites: None,
            suites_signature: None,
            kyber_prekey_id: None,
            kyber_prekey: None,
            kyber_prekey_signature: None,
        })
    }

    fn process_bundle(&mut self, party: &str, peer: &str, bundle: &Bundle) -> Result<(), PeerError> {
        check_suite(&bundle.suite)?;
        let c_bundle = crate::Bundle {
            registration_id: bundle.registration_id,
            device_id: bundle.device_id,
            identity_key: bundle.identity_key.0.clone(),
            signed_prekey_id: bundle.signed_prekey_id,
            signed_prekey: bundle.signed_prekey.0.clone(),
            signed_prekey_signature: bundle.signed_prekey_signature.0.clone(),
            prekey_id: bundle.prekey_id,
            prekey: bundle.prekey.as_ref().map(|key| key.0.clone()),
        };
        self.party(party)?.process_bundle(peer, REMOTE_DEVICE_ID, &c_bundle).map_err(peer_error)
    }

    fn encrypt(&mut self, party: &str, peer: &str, plaintext: &[u8]) -> Result<(MessageType, Vec<u8>), PeerError> {
        let (kind, ciphertext) = self.party(party)?.encrypt(peer, REMOTE_DEVICE_ID, plaintext).map_err(peer_error)?;
        let kind = match kind {
            MessageKind::PreKey => MessageType::Prekey,
            MessageKind::Signal => MessageType::Signal,
        };
        Ok((kind, ciphertext))
    }

    fn decrypt(&mut self, party: &str, peer: &str, kind: MessageType, ciphertext: &[u8]) -> Result<Vec<u8>, PeerError> {
        let kind = match kind {
            MessageType::Prekey => MessageKind::PreKey,
            MessageType::Signal => MessageKind::Signal,
        };
        self.party(party)?.decrypt(peer, REMOTE_DEVICE_ID, kind, ciphertext).map_err(peer_error)
    }

    fn group_distribution(&mut self, party: &str, group: &str) -> Result<Vec<u8>, PeerError> {
        self.party(party)?.group_distribution(group).map_err(peer_error)
    }

    fn group_process(&mut self, party: &str, group: &str, sender: &str, distribution: &[u8]) -> Result<(), PeerError> {
        self.party(party)?.group_process(group, sender, REMOTE_DEVICE_ID, distribution).map_err(peer_error)
    }

    fn group_encrypt(&mut self, party: &str, group: &str, plaintext: &[u8]) -> Result<Vec<u8>, PeerError> {
        self.party(party)?.group_encrypt(group, plaintext).map_err(peer_error)
    }

    fn group_decrypt(&mut self, party: &str, group: &str, sender: &str, ciphertext: &[u8]) -> Result<Vec<u8>, PeerError> {
        self.party(party)?.group_decrypt(group, sender, REMOTE_DEVICE_ID, ciphertext).map_err(peer_error)
    }

    fn group_rotate(&mut self, party: &str, group: &str) -> Result<Vec<u8>, PeerError> {
        self.party(party)?.group_rotate(group).map_err(peer_error)
    }
}
