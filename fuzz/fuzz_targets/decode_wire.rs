//! Every parser of bytes from a peer, a relay or a disk: none may panic, and whatever parses must
//! serialize back to bytes that parse to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_session::{CiphertextMessage, MessageKind, PreKeyBundle, SessionRecord};

fuzz_target!(|data: &[u8]| {
    for kind in [MessageKind::PreKey, MessageKind::Signal] {
        if let Ok(message) = CiphertextMessage::parse(kind, data) {
            assert_eq!(message.serialize(), data);
        }
    }
    if let Ok(bundle) = PreKeyBundle::deserialize(data) {
        let _ = bundle.verify();
        assert_eq!(PreKeyBundle::deserialize(&bundle.serialize()).as_ref(), Ok(&bundle));
    }
    if let Ok(record) = SessionRecord::deserialize(data) {
        let again = SessionRecord::deserialize(&record.serialize()).expect("re-serialized record parses");
        assert_eq!(again.serialize(), record.serialize());
    }
});
