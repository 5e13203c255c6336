//! session_decrypt: hostile bytes delivered into a live 1:1 session.
//!
//! Input: one selector byte, then the bytes bob receives "from alice". Selector bit 0: the suite
//! (`signal-v3` / `aes-256-gcm`); bit 1: the message kind the bytes are parsed as (SignalMessage /
//! PreKeySignalMessage); bits 2-3: how far the session has gone (mod 3: bob has no session yet and
//! two PreKeySignalMessages are in flight; bob has read the first; several round trips with a
//! skipped key kept, see `switchboard_fuzz::fixtures::Phase`). The fixtures are built once per
//! process and cloned into each run.
//!
//! Checks: parsing and decryption give typed errors, never a panic; a failed decrypt leaves bob's
//! session record, one-time prekeys and stored identity for alice exactly as they were; bytes that
//! do decrypt are one of alice's genuine messages still in flight and decrypt to its plaintext (a
//! `signal-v3` MAC covers only the inner SignalMessage, as in libsignal, so there the outer fields
//! of a PreKeySignalMessage may differ, or the inner message may come alone); afterwards every
//! genuine message in flight still decrypts exactly once, in order.
//!
//! Run: `cd fuzz && cargo fuzz run -s none -a session_decrypt corpus/session_decrypt`

#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_fuzz::fixtures::{Phase, SUITES, SessionFixture, SessionSnapshot};
use switchboard_session::session::decrypt;
use switchboard_session::suite::Cipher;
use switchboard_session::{CiphertextMessage, MessageKind};

/// The SignalMessage bytes a message carries (itself, or the one inside a PreKeySignalMessage).
fn inner(message: &CiphertextMessage) -> &[u8] {
    match message {
        CiphertextMessage::PreKey(message) => message.message().serialize(),
        CiphertextMessage::Signal(message) => message.serialize(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    // Bit 0 picks the cipher, bit 4 classical or post-quantum key agreement.
    let suite = SUITES[usize::from(selector & 1 | (selector >> 3) & 2)];
    let kind = if selector & 2 == 0 { MessageKind::Signal } else { MessageKind::PreKey };
    let phase = Phase::ALL[usize::from(selector >> 2 & 3) % Phase::ALL.len()];

    let fixture = SessionFixture::get(suite, phase);
    let mut bob = fixture.bob.clone();
    let alice_at = fixture.alice.address.clone();
    let mut rng = StdRng::seed_from_u64(u64::from(selector));
    let mut consumed = vec![false; fixture.in_flight.len()];

    if let Ok(message) = CiphertextMessage::parse(kind, bytes) {
        let before = SessionSnapshot::take(&bob.store, &alice_at);
        match decrypt(&mut bob.store, &alice_at, &message, &mut rng) {
            Err(_) => assert_eq!(before, SessionSnapshot::take(&bob.store, &alice_at), "a failed decrypt changed bob's state"),
            Ok(plaintext) => {
                let Some(which) = fixture.in_flight.iter().position(|genuine| genuine.plaintext == plaintext) else {
                    panic!("hostile bytes decrypted to {plaintext:02x?}");
                };
                let genuine = &fixture.in_flight[which];
                let genuine_message = CiphertextMessage::parse(genuine.kind, &genuine.bytes).expect("a genuine message parses");
                // In libsignal's format the MAC covers the inner SignalMessage only: the outer
                // fields of a PreKeySignalMessage may differ (those that select keys only where
                // they select the same keys), or the inner message may come alone.
                let same_inner = inner(&message) == inner(&genuine_message);
                assert!(
                    bytes == genuine.bytes.as_slice() || (suite.cipher() == Cipher::CbcHmac && same_inner),
                    "altered bytes decrypted"
                );
                consumed[which] = true;
            }
        }
    }

    for (genuine, consumed) in fixture.in_flight.iter().zip(consumed) {
        let message = CiphertextMessage::parse(genuine.kind, &genuine.bytes).expect("a genuine message parses");
        let result = decrypt(&mut bob.store, &alice_at, &message, &mut rng);
        if consumed {
            assert!(result.is_err(), "a message decrypted twice");
        } else {
            assert_eq!(result.as_deref(), Ok(genuine.plaintext.as_slice()), "a genuine message no longer decrypts");
        }
    }
});
