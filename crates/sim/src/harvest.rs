//! The `harvest-now` adversary: it records every frame on every link, and at the end of the run is
//! given every X25519 private key any device drew (what a quantum computer would compute from the
//! public keys it recorded) but no KEM secret. It then reads what it can of the recorded 1:1
//! messages with [`switchboard_session::harvest::Harvest`], and the report counts, per suite, the
//! messages sent and the messages it read.
//!
//! The private keys are caught as they are drawn: every device call gets its randomness through
//! [`Watched`], which keeps each 32-byte draw (an X25519 private key is 32 random bytes; the other
//! 32-byte draws, KEM encapsulation seeds among them, are offered to the reader as X25519 keys
//! only, where they match nothing).

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rustc_hash::FxHashSet as HashSet;
use switchboard_session::harvest::Harvest;
use switchboard_session::{CiphertextMessage, MessageKind, PreKeyBundle, PrivateKey, ProtocolAddress, Suite};
use switchboard_wire::switchboard::{ClientFrame, EnvelopeKind, ServerFrame, client_frame, server_frame};
use switchboard_wire::{Message, decode};

/// What the recording of one run gives the adversary.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct HarvestReport {
    /// Per suite: 1:1 messages sent, and those the adversary read.
    pub suites: BTreeMap<String, SuiteHarvest>,
}

/// One suite's line of a [`HarvestReport`].
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct SuiteHarvest {
    /// 1:1 messages of sessions under this suite that the adversary recorded.
    pub sent: u64,
    /// Of those, the ones it read with every X25519 private key.
    pub read: u64,
}

impl HarvestReport {
    /// Messages of post-quantum suites the adversary read.
    pub fn post_quantum_read(&self) -> u64 {
        self.lines(true).map(|line| line.read).sum()
    }

    /// Messages of classical suites it did not read.
    pub fn classical_unread(&self) -> u64 {
        self.lines(false).map(|line| line.sent - line.read).sum()
    }

    fn lines(&self, post_quantum: bool) -> impl Iterator<Item = &SuiteHarvest> {
        self.suites
            .iter()
            .filter(move |(name, _)| name.parse::<Suite>().is_ok_and(|suite| suite.kem().is_some() == post_quantum))
            .map(|(_, line)| line)
    }
}

/// One recorded 1:1 message.
struct Recorded {
    from: ProtocolAddress,
    to: ProtocolAddress,
    kind: MessageKind,
    content: Vec<u8>,
}

/// The adversary's recording.
#[derive(Default)]
pub struct Harvester {
    drawn: Vec<[u8; 32]>,
    messages: Vec<Recorded>,
    /// (sender, envelope id) of every envelope recorded: a resent frame is one message.
    seen: HashSet<(ProtocolAddress, Vec<u8>)>,
    bundles: Vec<(ProtocolAddress, PreKeyBundle)>,
}

impl Harvester {
    /// Records a frame from a device to its relay: 1:1 envelopes (alone, or all of one user's
    /// devices at once), in the order they were sent.
    pub fn from_device(&mut self, bytes: &[u8]) {
        let Ok(frame) = ClientFrame::decode(bytes) else { return };
        let envelopes = match frame.body {
            Some(client_frame::Body::Send(envelope)) => vec![envelope],
            Some(client_frame::Body::SendToUser(send)) => send.envelopes,
            _ => return,
        };
        for envelope in envelopes {
            self.record(envelope);
        }
    }

    fn record(&mut self, envelope: switchboard_wire::switchboard::Envelope) {
        let kind = match envelope.kind() {
            EnvelopeKind::PrekeyMessage => MessageKind::PreKey,
            EnvelopeKind::SignalMessage => MessageKind::Signal,
            _ => return,
        };
        let (Some(from), Some(to)) = (envelope.sender.as_ref(), envelope.recipient.as_ref()) else { return };
        let from = ProtocolAddress::new(from.name.clone(), from.device_id);
        if !self.seen.insert((from.clone(), envelope.id.to_vec())) {
            return;
        }
        let to = ProtocolAddress::new(to.name.clone(), to.device_id);
        self.messages.push(Recorded { from, to, kind, content: envelope.content.to_vec() });
    }

    /// Records a frame from a relay to a device: the bundles it hands out.
    pub fn to_device(&mut self, bytes: &[u8]) {
        let Ok(frame) = decode::<ServerFrame>(bytes, switchboard_wire::frame::MAX_FRAME_LEN) else { return };
        let Some(server_frame::Body::Bundles(bundles)) = frame.body else { return };
        for device in bundles.devices {
            if let Some(Ok(bundle)) = device.bundle.map(PreKeyBundle::from_wire) {
                self.bundles.push((ProtocolAddress::new(bundles.user.clone(), device.device_id), bundle));
            }
        }
    }

    /// The drawn keys go here (see [`Watched`]).
    pub fn drawn(&mut self) -> &mut Vec<[u8; 32]> {
        &mut self.drawn
    }

    /// The end of the run: every private key handed over, every recorded message read.
    pub fn report(self) -> HarvestReport {
        let mut reader = Harvest::new();
        for (device, bundle) in &self.bundles {
            reader.learn_bundle(device, bundle);
        }
        for scalar in self.drawn {
            reader.learn_private_key(PrivateKey::from_scalar_bytes(scalar));
        }
        let mut report = HarvestReport::default();
        for recorded in &self.messages {
            let Ok(message) = CiphertextMessage::parse(recorded.kind, &recorded.content) else { continue };
            let suite = match &message {
                CiphertextMessage::PreKey(message) => message.suite(),
                CiphertextMessage::Signal(message) => message.suite(),
            };
            let line = report.suites.entry(suite.name().to_owned()).or_default();
            line.sent += 1;
            if reader.read(&recorded.from, &recorded.to, &message).is_some() {
                line.read += 1;
            }
        }
        report
    }
}

/// The world's randomness as a device call sees it, keeping every 32-byte draw when a harvester
/// listens; the numbers drawn are the same either way.
pub struct Watched<'a> {
    rng: &'a mut StdRng,
    drawn: Option<&'a mut Vec<[u8; 32]>>,
}

impl<'a> Watched<'a> {
    /// The world's RNG, its draws kept for `harvester` when there is one.
    pub fn new(rng: &'a mut StdRng, harvester: Option<&'a mut Harvester>) -> Self {
        Watched { rng, drawn: harvester.map(Harvester::drawn) }
    }
}

impl rand_core::TryRng for Watched<'_> {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        self.rng.try_next_u32()
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.rng.try_next_u64()
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.rng.try_fill_bytes(dst)?;
        if let (Some(drawn), Ok(key)) = (self.drawn.as_mut(), <[u8; 32]>::try_from(&*dst)) {
            drawn.push(key);
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for Watched<'_> {}
