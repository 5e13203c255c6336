//! Both implementations behind one small interface, so every interop scenario runs in both
//! directions: Switchboard ↔ libsignal-protocol-c.

#![allow(dead_code)]

use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_libsignal_c as c;
use switchboard_session::session;
use switchboard_session::testing::Device;
use switchboard_session::{CiphertextMessage, Error, MessageKind, PreKeyBundle, ProtocolAddress, PublicKey, Suite};

/// How a decrypt failed, in terms both implementations share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Invalid,
    Duplicate,
    NoSession,
    Untrusted,
    InvalidKey,
    Other,
}

/// One device of either implementation.
pub trait Endpoint {
    fn name(&self) -> &str;
    fn device_id(&self) -> u32;
    fn bundle(&mut self) -> PreKeyBundle;
    fn process_bundle(&mut self, peer: &str, bundle: &PreKeyBundle);
    fn encrypt(&mut self, peer: &str, plaintext: &[u8]) -> (MessageKind, Vec<u8>);
    fn decrypt(&mut self, peer: &str, kind: MessageKind, bytes: &[u8]) -> Result<Vec<u8>, Failure>;
    /// Bytes that change whenever the session with `peer` changes.
    fn session_snapshot(&self, peer: &str) -> Vec<u8>;
}

pub struct RustEndpoint {
    pub name: String,
    pub device: Device,
    pub rng: StdRng,
}

impl RustEndpoint {
    pub fn new(name: &str, registration_id: u32, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let device = Device::new(registration_id, 1, &mut rng);
        RustEndpoint { name: name.to_owned(), device, rng }
    }
}

fn address(peer: &str) -> ProtocolAddress {
    ProtocolAddress::new(peer, 1)
}

fn failure_of(error: Error) -> Failure {
    match error {
        Error::Duplicate { .. } => Failure::Duplicate,
        Error::NoSession { .. } => Failure::NoSession,
        Error::UntrustedIdentity { .. } => Failure::Untrusted,
        Error::InvalidKey(_) => Failure::InvalidKey,
        Error::InvalidMessage(_)
        | Error::InvalidVersion(_)
        | Error::Decode(_)
        | Error::TooFarAhead { .. }
        | Error::UnknownPreKey { .. }
        | Error::UnknownSignedPreKey { .. } => Failure::Invalid,
        _ => Failure::Other,
    }
}

impl Endpoint for RustEndpoint {
    fn name(&self) -> &str {
        &self.name
    }
    fn device_id(&self) -> u32 {
        1
    }
    fn bundle(&mut self) -> PreKeyBundle {
        self.device.bundle(&[Suite::SignalV3], &mut self.rng)
    }
    fn process_bundle(&mut self, peer: &str, bundle: &PreKeyBundle) {
        session::process_prekey_bundle(&mut self.device.store, &address(peer), bundle, Suite::SignalV3, &mut self.rng)
            .unwrap();
    }
    fn encrypt(&mut self, peer: &str, plaintext: &[u8]) -> (MessageKind, Vec<u8>) {
        let message = session::encrypt(&mut self.device.store, &address(peer), plaintext).unwrap();
        (message.kind(), message.serialize().to_vec())
    }
    fn decrypt(&mut self, peer: &str, kind: MessageKind, bytes: &[u8]) -> Result<Vec<u8>, Failure> {
        let message = CiphertextMessage::parse(kind, bytes).map_err(failure_of)?;
        session::decrypt(&mut self.device.store, &address(peer), &message, &mut self.rng).map_err(failure_of)
    }
    fn session_snapshot(&self, peer: &str) -> Vec<u8> {
        use switchboard_session::store::SessionStore;
        self.device.store.load_session(&address(peer)).unwrap().map(|r| r.serialize().to_vec()).unwrap_or_default()
    }
}

pub struct CEndpoint {
    pub name: String,
    pub party: c::Party,
}

impl CEndpoint {
    pub fn new(name: &str, registration_id: u32, seed: u64) -> Self {
        CEndpoint { name: name.to_owned(), party: c::Party::new(registration_id, 1, 50, seed).unwrap() }
    }
}

fn c_failure_of(error: c::Error) -> Failure {
    match error {
        c::Error::Duplicate => Failure::Duplicate,
        c::Error::NoSession => Failure::NoSession,
        c::Error::UntrustedIdentity => Failure::Untrusted,
        c::Error::InvalidKey(_) => Failure::InvalidKey,
        c::Error::InvalidMessage(_) | c::Error::InvalidVersion | c::Error::LegacyMessage => Failure::Invalid,
        _ => Failure::Other,
    }
}

pub fn c_kind(kind: MessageKind) -> c::MessageKind {
    match kind {
        MessageKind::PreKey => c::MessageKind::PreKey,
        MessageKind::Signal => c::MessageKind::Signal,
    }
}

pub fn rust_kind(kind: c::MessageKind) -> MessageKind {
    match kind {
        c::MessageKind::PreKey => MessageKind::PreKey,
        c::MessageKind::Signal => MessageKind::Signal,
    }
}

/// A C library bundle as this project's type (it offers signal-v3 only: no suites list).
pub fn bundle_from_c(bundle: &c::Bundle) -> PreKeyBundle {
    PreKeyBundle {
        registration_id: bundle.registration_id,
        device_id: bundle.device_id,
        identity_key: PublicKey::from_bytes(&bundle.identity_key).unwrap(),
        signed_prekey_id: bundle.signed_prekey_id,
        signed_prekey: PublicKey::from_bytes(&bundle.signed_prekey).unwrap(),
        signed_prekey_signature: bundle.signed_prekey_signature.clone(),
        prekey: bundle.prekey_id.zip(bundle.prekey.as_ref()).map(|(id, key)| (id, PublicKey::from_bytes(key).unwrap())),
        suites: None,
        kem_prekeys: Vec::new(),
    }
}

/// This project's bundle as the C library's type.
pub fn bundle_to_c(bundle: &PreKeyBundle) -> c::Bundle {
    c::Bundle {
        registration_id: bundle.registration_id,
        device_id: bundle.device_id,
        identity_key: bundle.identity_key.serialize().to_vec(),
        signed_prekey_id: bundle.signed_prekey_id,
        signed_prekey: bundle.signed_prekey.serialize().to_vec(),
        signed_prekey_signature: bundle.signed_prekey_signature.clone(),
        prekey_id: bundle.prekey.map(|(id, _)| id),
        prekey: bundle.prekey.map(|(_, key)| key.serialize().to_vec()),
    }
}

impl Endpoint for CEndpoint {
    fn name(&self) -> &str {
        &self.name
    }
    fn device_id(&self) -> u32 {
        1
    }
    fn bundle(&mut self) -> PreKeyBundle {
        bundle_from_c(&self.party.bundle().unwrap())
    }
    fn process_bundle(&mut self, peer: &str, bundle: &PreKeyBundle) {
        self.party.process_bundle(peer, 1, &bundle_to_c(bundle)).unwrap();
    }
    fn encrypt(&mut self, peer: &str, plaintext: &[u8]) -> (MessageKind, Vec<u8>) {
        let (kind, bytes) = self.party.encrypt(peer, 1, plaintext).unwrap();
        (rust_kind(kind), bytes)
    }
    fn decrypt(&mut self, peer: &str, kind: MessageKind, bytes: &[u8]) -> Result<Vec<u8>, Failure> {
        self.party.decrypt(peer, 1, c_kind(kind), bytes).map_err(c_failure_of)
    }
    fn session_snapshot(&self, peer: &str) -> Vec<u8> {
        self.party.session_record(peer, 1).unwrap_or_default()
    }
}

/// The two orders every scenario runs in: (initiator, responder).
pub fn both_orders(seed: u64) -> Vec<(Box<dyn Endpoint>, Box<dyn Endpoint>, &'static str)> {
    vec![
        (
            Box::new(RustEndpoint::new("alice", 101, seed)),
            Box::new(CEndpoint::new("bob", 202, seed)),
            "switchboard → libsignal-c",
        ),
        (
            Box::new(CEndpoint::new("alice", 101, seed)),
            Box::new(RustEndpoint::new("bob", 202, seed)),
            "libsignal-c → switchboard",
        ),
    ]
}

/// Starts a session from `a`'s side with `b`'s bundle.
pub fn connect(a: &mut dyn Endpoint, b: &mut dyn Endpoint) {
    let bundle = b.bundle();
    let b_name = b.name().to_owned();
    a.process_bundle(&b_name, &bundle);
}

/// Sends one message from `from` to `to` and checks it arrives intact.
pub fn send(from: &mut dyn Endpoint, to: &mut dyn Endpoint, plaintext: &[u8]) -> MessageKind {
    let (to_name, from_name) = (to.name().to_owned(), from.name().to_owned());
    let (kind, bytes) = from.encrypt(&to_name, plaintext);
    assert_eq!(to.decrypt(&from_name, kind, &bytes).as_deref(), Ok(plaintext));
    kind
}
