//! The peer protocol over this project's sessions and sender keys.

use std::collections::{HashMap, VecDeque};

use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_session::group::{self, InMemorySenderKeyStore, SenderKeyDistributionMessage, SenderKeyMessage};
use switchboard_session::prekey::{KemPreKeyRecord, PreKeyRecord, SignedKemPreKey, SignedPreKeyRecord, SignedSuites};
use switchboard_session::store::{IdentityKeyStore, KemPreKeyStore, PreKeyStore, SignedPreKeyStore, SessionStore};
use switchboard_session::{
    CiphertextMessage, KemPublicKey, Error, IdentityKeyPair, InMemoryStore, MessageKind, PreKeyBundle, ProtocolAddress, PublicKey,
    SessionRecord, Suite, session,
};
use switchboard_wire::Message;

use crate::protocol::{Bundle, ErrorKind, Hello, Hex, MessageType, PeerError, printable};
use crate::serve::Backend;

/// Parties one peer holds at most.
pub const MAX_PARTIES: usize = 10_000;
/// One-time prekeys one party may be created with.
pub const MAX_PREKEYS: u32 = 10_000;
/// Longest party, peer or group name accepted.
pub const MAX_NAME_LEN: usize = 256;

/// The device id under which remote parties are kept: the peer protocol names a remote party by
/// its name alone, so one fixed device id serves for every address this peer builds.
const REMOTE_DEVICE_ID: u32 = 1;
const SIGNED_PREKEY_ID: u32 = 1;

/// Deliberate misbehaviour, to show that the conformance runner catches broken peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Flips one byte of every ciphertext it writes.
    FlipCiphertext,
    /// Forgets the keys of skipped messages after every decrypt, so late messages fail.
    ForgetSkippedKeys,
}

struct Party {
    store: InMemoryStore,
    sender_keys: InMemorySenderKeyStore,
    address: ProtocolAddress,
    registration_id: u32,
    device_id: u32,
    unused_prekeys: VecDeque<(u32, PublicKey)>,
    /// The id of the next KEM prekey (one fresh one-time KEM prekey goes into each bundle of a
    /// post-quantum suite).
    next_kem_prekey: u32,
}

/// This project's implementation behind the peer protocol.
pub struct SwitchboardBackend {
    parties: HashMap<String, Party>,
    group_suite: Suite,
    rng: StdRng,
    fault: Option<Fault>,
}

impl SwitchboardBackend {
    /// A peer whose sender keys use `group_suite`, drawing randomness from `seed` (or from the
    /// operating system when `None`).
    pub fn new(group_suite: Suite, seed: Option<u64>, fault: Option<Fault>) -> Self {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng(),
        };
        SwitchboardBackend { parties: HashMap::new(), group_suite, rng, fault }
    }

    fn party(&mut self, name: &str) -> Result<&mut Party, PeerError> {
        self.parties.get_mut(name).ok_or_else(|| PeerError::unknown_party(name))
    }

    fn flip(&self, mut ciphertext: Vec<u8>) -> Vec<u8> {
        if self.fault == Some(Fault::FlipCiphertext)
            && let Some(last) = ciphertext.last_mut()
        {
            *last ^= 0x01;
        }
        ciphertext
    }
}

fn remote(name: &str) -> Result<ProtocolAddress, PeerError> {
    check_name("peer", name)?;
    Ok(ProtocolAddress::new(name, REMOTE_DEVICE_ID))
}

fn check_name(field: &str, name: &str) -> Result<(), PeerError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(PeerError::bad_request(format!("field {field}: 1 to {MAX_NAME_LEN} bytes")));
    }
    Ok(())
}

fn suite(name: &str) -> Result<Suite, PeerError> {
    name.parse().map_err(|_| PeerError::unsupported(format!("suite {}", printable(name))))
}

/// The peer-protocol error for a session error.
pub fn error_kind(error: &Error) -> ErrorKind {
    match error {
        // A retired sender key offered again is a replay of an old distribution.
        Error::Duplicate { .. } | Error::RetiredSenderKey { .. } | Error::ReplayedFirstMessage => ErrorKind::Duplicate,
        Error::TooFarAhead { .. } => ErrorKind::TooFarAhead,
        Error::UntrustedIdentity { .. } => ErrorKind::UntrustedIdentity,
        Error::InvalidKey(_) => ErrorKind::InvalidKey,
        Error::NoSession { .. } | Error::NoSenderKey { .. } => ErrorKind::NoSession,
        Error::UnsupportedSuite(_) => ErrorKind::Unsupported,
        Error::InvalidMessage(_)
        | Error::InvalidVersion(_)
        | Error::Decode(_)
        | Error::UnknownPreKey { .. }
        | Error::UnknownKemPreKey { .. }
        | Error::UnknownSignedPreKey { .. }
        | Error::InvalidRecord(_)
        | Error::Store(_) => ErrorKind::InvalidMessage,
        // A kind the session crate adds later: a failed operation, reported as the widest kind.
        _ => ErrorKind::InvalidMessage,
    }
}

fn session_error(error: Error) -> PeerError {
    PeerError::new(error_kind(&error), error.to_string())
}

fn key(field: &str, bytes: &Hex) -> Result<PublicKey, PeerError> {
    PublicKey::from_bytes(bytes.as_bytes()).map_err(|e| PeerError::new(ErrorKind::InvalidKey, format!("field {field}: {e}")))
}

fn bundle_from_json(bundle: &Bundle) -> Result<PreKeyBundle, PeerError> {
    let prekey = match (bundle.prekey_id, &bundle.prekey) {
        (Some(id), Some(prekey)) => Some((id, key("prekey", prekey)?)),
        (None, None) => None,
        _ => return Err(PeerError::bad_request("prekey_id and prekey come together")),
    };
    let suites = match (&bundle.suites, &bundle.suites_signature) {
        (Some(names), Some(signature)) => {
            Some(SignedSuites { names: names.clone(), signature: signature.0.clone() })
        }
        _ => None,
    };
    let kem_prekeys = match (bundle.kyber_prekey_id, &bundle.kyber_prekey, &bundle.kyber_prekey_signature) {
        (None, None, None) => Vec::new(),
        (Some(id), Some(key), Some(signature)) => vec![SignedKemPreKey {
            id,
            key: KemPublicKey::from_bytes(key.as_bytes())
                .map_err(|e| PeerError::new(ErrorKind::InvalidKey, format!("field kyber_prekey: {e}")))?,
            signature: signature.0.clone(),
        }],
        _ => return Err(PeerError::bad_request("kyber_prekey_id, kyber_prekey and kyber_prekey_signature come together")),
    };
    Ok(PreKeyBundle {
        registration_id: bundle.registration_id,
        device_id: bundle.device_id,
        identity_key: key("identity_key", &bundle.identity_key)?,
        signed_prekey_id: bundle.signed_prekey_id,
        signed_prekey: key("signed_prekey", &bundle.signed_prekey)?,
        signed_prekey_signature: bundle.signed_prekey_signature.0.clone(),
        prekey,
        suites,
        kem_prekeys,
    })
}

/// Drops every stored skipped-message key of the session with `peer` ([`Fault::ForgetSkippedKeys`]).
fn forget_skipped_keys(store: &mut InMemoryStore, peer: &ProtocolAddress) {
    let Ok(Some(record)) = store.load_session(peer) else { return };
    let Ok(mut structure) = switchboard_wire::signal::RecordStructure::decode(record.serialize().as_slice()) else { return };
    for state in structure.current_session.iter_mut().chain(structure.previous_sessions.iter_mut()) {
        for chain in &mut state.receiver_chains {
            chain.message_keys.clear();
        }
    }
    if let Ok(record) = SessionRecord::deserialize(&structure.encode_to_vec()) {
        let _ = store.store_session(peer, record);
    }
}

impl Backend for SwitchboardBackend {
    fn hello(&self) -> Hello {
        Hello {
            implementation: "switchboard".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            suites: Suite::ALL.iter().rev().map(|suite| suite.name().to_owned()).collect(),
            features: vec!["session".into(), "group".into(), "pqxdh".into()],
        }
    }

    fn create(&mut self, party: &str, registration_id: u32, device_id: u32, prekeys: u32) -> Result<(), PeerError> {
        check_name("party", party)?;
        if self.parties.contains_key(party) {
            return Err(PeerError::bad_request(format!("party {} exists", printable(party))));
        }
        if self.parties.len() >= MAX_PARTIES {
            return Err(PeerError::bad_request(format!("at most {MAX_PARTIES} parties")));
        }
        if prekeys > MAX_PREKEYS {
            return Err(PeerError::bad_request(format!("at most {MAX_PREKEYS} prekeys")));
        }
        let rng = &mut self.rng;
        let identity = IdentityKeyPair::generate(rng);
        let mut store = InMemoryStore::new(identity.clone(), registration_id);
        let signed = SignedPreKeyRecord::generate(SIGNED_PREKEY_ID, &identity, 0, rng);
        store.save_signed_prekey(signed).map_err(session_error)?;
        let mut unused_prekeys = VecDeque::new();
        for id in 1..=prekeys {
            let prekey = PreKeyRecord::generate(id, rng);
            unused_prekeys.push_back((id, prekey.key_pair.public));
            store.save_prekey(prekey).map_err(session_error)?;
        }
        let address = ProtocolAddress::new(party, REMOTE_DEVICE_ID);
        let sender_keys = InMemorySenderKeyStore::default();
        self.parties.insert(
            party.to_owned(),
            Party { store, sender_keys, address, registration_id, device_id, unused_prekeys, next_kem_prekey: 1 },
        );
        Ok(())
    }

    fn bundle(&mut self, party: &str, suite_name: &str) -> Result<Bundle, PeerError> {
        let suite = suite(suite_name)?;
        let party = self.parties.get_mut(party).ok_or_else(|| PeerError::unknown_party(party))?;
        let rng = &mut self.rng;
        let identity = party.store.identity_key_pair().map_err(session_error)?;
        let signed = party.store.signed_prekey(SIGNED_PREKEY_ID).map_err(session_error)?.expect("made with the party");
        let prekey = party.unused_prekeys.pop_front();
        // A JSON bundle carries one KEM prekey, the asked suite's: it offers the classical suites
        // and that one, signed.
        let offered: Vec<Suite> = Suite::ALL.into_iter().filter(|offered| offered.kem().is_none() || *offered == suite).collect();
        let suites = SignedSuites::sign(&offered, &identity, rng);
        let kem_prekey = match suite.kem() {
            None => None,
            Some(kem) => {
                let record = KemPreKeyRecord::generate(party.next_kem_prekey, kem, false, &identity, 0, rng);
                party.next_kem_prekey += 1;
                let public = record.signed_public();
                party.store.save_kem_prekey(record).map_err(session_error)?;
                Some(public)
            }
        };
        Ok(Bundle {
            suite: suite.name().to_owned(),
            registration_id: party.registration_id,
            device_id: party.device_id,
            identity_key: identity.identity_key().serialize().to_vec().into(),
            signed_prekey_id: signed.id,
            signed_prekey: signed.key_pair.public.serialize().to_vec().into(),
            signed_prekey_signature: signed.signature.to_vec().into(),
            prekey_id: prekey.map(|(id, _)| id),
            prekey: prekey.map(|(_, key)| key.serialize().to_vec().into()),
            suites: Some(suites.names),
            suites_signature: Some(suites.signature.clone().into()),
            kyber_prekey_id: kem_prekey.as_ref().map(|prekey| prekey.id),
            kyber_prekey: kem_prekey.as_ref().map(|prekey| prekey.key.serialize().to_vec().into()),
            kyber_prekey_signature: kem_prekey.as_ref().map(|prekey| prekey.signature.clone().into()),
        })
    }

    fn process_bundle(&mut self, party: &str, peer: &str, bundle: &Bundle) -> Result<(), PeerError> {
        let suite = suite(&bundle.suite)?;
        let peer = remote(peer)?;
        let bundle = bundle_from_json(bundle)?;
        let rng = &mut self.rng;
        let party = self.parties.get_mut(party).ok_or_else(|| PeerError::unknown_party(party))?;
        session::process_prekey_bundle(&mut party.store, &peer, &bundle, suite, rng).map_err(session_error)
    }

    fn encrypt(&mut self, party: &str, peer: &str, plaintext: &[u8]) -> Result<(MessageType, Vec<u8>), PeerError> {
        let peer = remote(peer)?;
        let party = self.party(party)?;
        let message = session::encrypt(&mut party.store, &peer, plaintext).map_err(session_error)?;
        let kind = match message.kind() {
            MessageKind::PreKey => MessageType::Prekey,
            MessageKind::Signal => MessageType::Signal,
        };
        Ok((kind, self.flip(message.serialize().to_vec())))
    }

    fn decrypt(&mut self, party: &str, peer: &str, kind: MessageType, ciphertext: &[u8]) -> Result<Vec<u8>, PeerError> {
        let peer = remote(peer)?;
        let kind = match kind {
            MessageType::Prekey => MessageKind::PreKey,
            MessageType::Signal => MessageKind::Signal,
        };
        let fault = self.fault;
        let rng = &mut self.rng;
        let party = self.parties.get_mut(party).ok_or_else(|| PeerError::unknown_party(party))?;
        let message = CiphertextMessage::parse(kind, ciphertext).map_err(session_error)?;
        let plaintext = session::decrypt(&mut party.store, &peer, &message, rng).map_err(session_error)?;
        if fault == Some(Fault::ForgetSkippedKeys) {
            forget_skipped_keys(&mut party.store, &peer);
        }
        Ok(plaintext)
    }

    fn group_distribution(&mut self, party: &str, group_id: &str) -> Result<Vec<u8>, PeerError> {
        check_name("group", group_id)?;
        let (suite, rng) = (self.group_suite, &mut self.rng);
        let party = self.parties.get_mut(party).ok_or_else(|| PeerError::unknown_party(party))?;
        let distribution = group::create_distribution(&mut party.sender_keys, group_id, &party.address, suite, rng)
            .map_err(session_error)?;
        Ok(distribution.serialize().to_vec())
    }

    fn group_process(&mut self, party: &str, group_id: &str, sender: &str, distribution: &[u8]) -> Result<(), PeerError> {
        check_name("group", group_id)?;
        let sender = remote(sender)?;
        let party = self.party(party)?;
        let message = SenderKeyDistributionMessage::parse(distribution).map_err(session_error)?;
        group::process_distribution(&mut party.sender_keys, group_id, &sender, &message).map_err(session_error)
    }

    fn group_encrypt(&mut self, party: &str, group_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, PeerError> {
        let rng = &mut self.rng;
        let party = self.parties.get_mut(party).ok_or_else(|| PeerError::unknown_party(party))?;
        let message =
            group::encrypt(&mut party.sender_keys, group_id, &party.address, plaintext, rng).map_err(session_error)?;
        Ok(self.flip(message.serialize().to_vec()))
    }

    fn group_decrypt(&mut self, party: &str, group_id: &str, sender: &str, ciphertext: &[u8]) -> Result<Vec<u8>, PeerError> {
        let sender = remote(sender)?;
        let party = self.party(party)?;
        let message = SenderKeyMessage::parse(ciphertext).map_err(session_error)?;
        group::decrypt(&mut party.sender_keys, group_id, &sender, &message).map_err(session_error)
    }

    fn group_rotate(&mut self, party: &str, group_id: &str) -> Result<Vec<u8>, PeerError> {
        check_name("group", group_id)?;
        let (suite, rng) = (self.group_suite, &mut self.rng);
        let party = self.parties.get_mut(party).ok_or_else(|| PeerError::unknown_party(party))?;
        let distribution =
            group::rotate(&mut party.sender_keys, group_id, &party.address, suite, rng).map_err(session_error)?;
        Ok(distribution.serialize().to_vec())
    }
}
