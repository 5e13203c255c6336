//! group_decrypt: hostile bytes delivered into a live group.
//!
//! Input: one selector byte, then the bytes bob receives as a group message "from alice".
//! Selector bit 0: the suite; bit 1: alone through `group::decrypt`, or through
//! `group::decrypt_batch` together with alice's next genuine message. Bob holds two sender keys of
//! alice (the first replaced by a rotation) with skipped keys kept under both; the fixture is
//! built once per process and cloned into each run.
//!
//! Checks: typed errors, never a panic; a failed decrypt leaves bob's record of alice's sender
//! keys exactly as it was; bytes that decrypt are exactly one of alice's genuine messages in flight
//! (the signature covers every byte) and decrypt to its plaintext; in a batch, the genuine message
//! still decrypts; afterwards every genuine message in flight decrypts exactly once.
//!
//! Run: `cd fuzz && cargo fuzz run -s none -a group_decrypt corpus/group_decrypt`

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_fuzz::fixtures::{GROUP, GroupFixture, sender_key_bytes};
use switchboard_session::Suite;
use switchboard_session::group::{self, SenderKeyMessage};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let suite = if selector & 1 == 0 { Suite::SignalV3 } else { Suite::Aes256Gcm };
    let batch = selector & 2 != 0;

    let fixture = GroupFixture::get(suite);
    let mut bob = fixture.bob_keys.clone();
    let alice = &fixture.alice;
    let mut consumed = vec![false; fixture.in_flight.len()];
    let judge = |plaintext: &[u8], consumed: &mut Vec<bool>| {
        let Some(which) = fixture.in_flight.iter().position(|(_, genuine)| genuine == plaintext) else {
            panic!("hostile bytes decrypted to {plaintext:02x?}");
        };
        assert_eq!(bytes, fixture.in_flight[which].0.as_slice(), "altered bytes decrypted");
        assert!(!consumed[which], "a group message decrypted twice");
        consumed[which] = true;
    };

    if let Ok(message) = SenderKeyMessage::parse(bytes) {
        let before = sender_key_bytes(&bob, alice);
        if batch {
            let last = fixture.in_flight.len() - 1;
            let genuine = SenderKeyMessage::parse(&fixture.in_flight[last].0).expect("a genuine message parses");
            let results = group::decrypt_batch(&mut bob, GROUP, &[(alice.clone(), message), (alice.clone(), genuine)]);
            assert_eq!(results.len(), 2);
            if let Ok(plaintext) = &results[0] {
                judge(plaintext, &mut consumed);
            }
            match &results[1] {
                Ok(plaintext) => {
                    assert_eq!(plaintext, &fixture.in_flight[last].1);
                    assert!(!consumed[last], "a group message decrypted twice in one batch");
                    consumed[last] = true;
                }
                Err(error) => assert!(consumed[last], "a genuine message failed in a batch: {error}"),
            }
        } else {
            match group::decrypt(&mut bob, GROUP, alice, &message) {
                Ok(plaintext) => judge(&plaintext, &mut consumed),
                Err(_) => assert_eq!(before, sender_key_bytes(&bob, alice), "a failed group decrypt changed bob's record"),
            }
        }
    }

    for ((bytes, plaintext), consumed) in fixture.in_flight.iter().zip(consumed) {
        let message = SenderKeyMessage::parse(bytes).expect("a genuine message parses");
        let result = group::decrypt(&mut bob, GROUP, alice, &message);
        if consumed {
            assert!(result.is_err(), "a group message decrypted twice");
        } else {
            assert_eq!(result.as_ref(), Ok(plaintext), "a genuine group message no longer decrypts");
        }
    }
});
