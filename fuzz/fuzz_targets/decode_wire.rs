//! decode_wire: every parser of bytes from a peer, a relay or a disk.
//!
//! The same input goes to every message type of `switchboard-wire` (Signal's SignalMessage,
//! PreKeySignalMessage, SenderKeyMessage, SenderKeyDistributionMessage; the session, prekey,
//! signed prekey, identity and sender key records; Switchboard's PreKeyBundle, DeviceAddress,
//! GroupControl and PairwisePayload), and to every typed parser of `switchboard-session` built on
//! them (`CiphertextMessage::parse` for both kinds, `SenderKeyMessage::parse`,
//! `SenderKeyDistributionMessage::parse`, `PreKeyBundle::deserialize`, `SessionRecord`,
//! `SenderKeyRecord`, `PreKeyRecord`, `SignedPreKeyRecord`, `IdentityKeyPair`).
//!
//! Checks: nothing panics; whatever decodes re-encodes to bytes that decode to the same value and
//! re-encode to the same bytes (prost may legitimately re-encode differently from the input:
//! unknown fields dropped, repeated scalars merged, padded varints shortened, so the first
//! re-encoding is compared by value); whatever `decode_canonical` accepts re-encodes to exactly
//! the input; typed parsers keep the exact input bytes where they promise to (messages) and
//! round-trip stably where they rebuild them (records, bundles); the `aes-256-gcm` messages,
//! which must be canonical, re-encode to exactly their protobuf bytes.
//!
//! Run: `cd fuzz && cargo fuzz run -s none -a decode_wire corpus/decode_wire -- -dict=dict/protobuf.dict`

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_wire::{Message, decode, decode_canonical, signal, switchboard};

use switchboard_session::suite::Cipher;
use switchboard_session::group::{SenderKeyDistributionMessage, SenderKeyMessage, SenderKeyRecord};
use switchboard_session::{CiphertextMessage, IdentityKeyPair, MessageKind, PreKeyBundle, PreKeyRecord, SessionRecord, SignedPreKeyRecord, KemPreKeyRecord, KemPublicKey};

/// Decodes as `M`; where it decodes, re-encodes and compares.
fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let limit = data.len();
    if let Ok(first) = decode::<M>(data, limit) {
        let encoded = first.encode_to_vec();
        assert_eq!(encoded.len(), first.encoded_len(), "encoded_len disagrees with encode");
        let second = decode::<M>(&encoded, encoded.len()).expect("a re-encoded message decodes");
        assert_eq!(first, second, "a message changed value through encode and decode");
        assert_eq!(second.encode_to_vec(), encoded, "a message's encoding is not stable");
        if encoded == data {
            assert_eq!(decode_canonical::<M>(data, limit).as_ref(), Ok(&first));
        }
    }
    if let Ok(canonical) = decode_canonical::<M>(data, limit) {
        assert_eq!(canonical.encode_to_vec(), data, "decode_canonical accepted bytes it does not write");
    }
    if !data.is_empty() {
        assert!(decode::<M>(data, data.len() - 1).is_err(), "the size limit was not enforced");
    }
}

fn wire(data: &[u8]) {
    round_trip::<signal::SignalMessage>(data);
    round_trip::<signal::PreKeySignalMessage>(data);
    round_trip::<signal::SenderKeyMessage>(data);
    round_trip::<signal::SenderKeyDistributionMessage>(data);
    round_trip::<signal::SessionStructure>(data);
    round_trip::<signal::RecordStructure>(data);
    round_trip::<signal::PreKeyRecordStructure>(data);
    round_trip::<signal::SignedPreKeyRecordStructure>(data);
    round_trip::<signal::IdentityKeyPairStructure>(data);
    round_trip::<signal::SenderKeyStateStructure>(data);
    round_trip::<signal::SenderKeyRecordStructure>(data);
    round_trip::<switchboard::PreKeyBundle>(data);
    round_trip::<switchboard::DeviceAddress>(data);
    round_trip::<switchboard::GroupControl>(data);
    round_trip::<switchboard::PairwisePayload>(data);
    // The relay protocol, message content and the device's stored state.
    round_trip::<switchboard::Envelope>(data);
    round_trip::<switchboard::GroupEnvelope>(data);
    round_trip::<switchboard::ClientFrame>(data);
    round_trip::<switchboard::ServerFrame>(data);
    round_trip::<switchboard::FederationFrame>(data);
    round_trip::<switchboard::NodeFrame>(data);
    round_trip::<switchboard::Content>(data);
    round_trip::<switchboard::DeviceSnapshot>(data);
    frames(data);
}

/// The length-delimited framing: whatever the bytes, the decoder yields whole frames within its
/// limit or stops with an error, and never holds more than it was given.
fn frames(data: &[u8]) {
    use switchboard_wire::frame::{FrameDecoder, encode_frame};
    let mut decoder = FrameDecoder::new(4096);
    decoder.extend(data);
    let mut taken = 0;
    while let Ok(Some(frame)) = decoder.next_frame() {
        assert!(frame.len() <= 4096);
        taken += frame.len() + 4;
    }
    assert!(decoder.buffered() + taken <= data.len());
    if let Ok(envelope) = switchboard_wire::decode::<switchboard::ClientFrame>(data, 4096) {
        let mut again = FrameDecoder::default();
        again.extend(&encode_frame(&envelope));
        assert_eq!(again.next_message::<switchboard::ClientFrame>(), Ok(Some(envelope)));
    }
}

fn messages(data: &[u8]) {
    for kind in [MessageKind::PreKey, MessageKind::Signal] {
        if let Ok(message) = CiphertextMessage::parse(kind, data) {
            assert_eq!(message.serialize(), data);
            assert_eq!(message.kind(), kind);
            let again = CiphertextMessage::parse(kind, message.serialize()).expect("a parsed message parses again");
            assert_eq!(again.serialize(), data);
            let (suite, inner) = match &message {
                CiphertextMessage::PreKey(message) => (message.suite(), message.message()),
                CiphertextMessage::Signal(message) => (message.suite(), message),
            };
            assert_eq!(inner.suite(), suite, "a message carries an inner message of another suite");
            if suite.cipher() == Cipher::Gcm {
                let body = &data[1..];
                match kind {
                    MessageKind::PreKey => assert!(decode_canonical::<signal::PreKeySignalMessage>(body, body.len()).is_ok()),
                    MessageKind::Signal => assert!(decode_canonical::<signal::SignalMessage>(body, body.len()).is_ok()),
                }
            }
        }
    }
    if let Ok(message) = SenderKeyMessage::parse(data) {
        assert_eq!(message.serialize(), data);
        let again = SenderKeyMessage::parse(message.serialize()).expect("a parsed group message parses again");
        assert_eq!((again.key_id(), again.iteration(), again.suite()), (message.key_id(), message.iteration(), message.suite()));
    }
    if let Ok(message) = SenderKeyDistributionMessage::parse(data) {
        assert_eq!(message.serialize(), data);
        let again = SenderKeyDistributionMessage::parse(message.serialize()).expect("a parsed distribution parses again");
        assert_eq!((again.key_id(), again.suite()), (message.key_id(), message.suite()));
    }
}

fn records(data: &[u8]) {
    if let Ok(bundle) = PreKeyBundle::deserialize(data) {
        let _ = bundle.verify();
        assert_eq!(PreKeyBundle::deserialize(&bundle.serialize()).as_ref(), Ok(&bundle));
    }
    if let Ok(record) = SessionRecord::deserialize(data) {
        let bytes = record.serialize();
        let again = SessionRecord::deserialize(&bytes).expect("a re-serialized session record parses");
        assert_eq!(*again.serialize(), *bytes);
    }
    if let Ok(record) = SenderKeyRecord::deserialize(data) {
        let bytes = record.serialize();
        let again = SenderKeyRecord::deserialize(&bytes).expect("a re-serialized sender key record parses");
        assert_eq!(*again.serialize(), *bytes);
    }
    if let Ok(record) = PreKeyRecord::deserialize(data) {
        let bytes = record.serialize();
        let again = PreKeyRecord::deserialize(&bytes).expect("a re-serialized prekey record parses");
        assert_eq!(*again.serialize(), *bytes);
    }
    if let Ok(record) = SignedPreKeyRecord::deserialize(data) {
        let bytes = record.serialize();
        let again = SignedPreKeyRecord::deserialize(&bytes).expect("a re-serialized signed prekey record parses");
        assert_eq!(*again.serialize(), *bytes);
    }
    if let Ok(record) = KemPreKeyRecord::deserialize(data) {
        let bytes = record.serialize();
        let again = KemPreKeyRecord::deserialize(&bytes).expect("a re-serialized KEM prekey record parses");
        assert_eq!(*again.serialize(), *bytes);
    }
    if let Ok(key) = KemPublicKey::from_bytes(data) {
        assert_eq!(key.serialize(), data);
    }
    if let Ok(identity) = IdentityKeyPair::deserialize(data) {
        let bytes = identity.serialize();
        let again = IdentityKeyPair::deserialize(&bytes).expect("a re-serialized identity parses");
        assert_eq!(*again.serialize(), *bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    wire(data);
    messages(data);
    records(data);
});
