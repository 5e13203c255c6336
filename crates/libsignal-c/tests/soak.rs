//! Long loops: no crash, no growth of a session record (run under valgrind by hand to check for
//! leaks).

mod common;

use common::*;
use switchboard_libsignal_c::{MessageKind, Party};

#[test]
fn two_thousand_encrypt_decrypt_pairs() {
    let (mut alice, mut bob) = established();
    let mut record_lens = Vec::new();
    for i in 0..2000u32 {
        let msg = i.to_le_bytes().repeat(1 + (i % 50) as usize);
        // Mostly back-and-forth (a DH ratchet step per turn), sometimes one-sided runs.
        let alice_sends = i % 2 == 0 || i % 3 == 2;
        let (from, from_name, to, to_name) = if alice_sends {
            (&mut alice, ALICE, &mut bob, BOB)
        } else {
            (&mut bob, BOB, &mut alice, ALICE)
        };
        assert_eq!(
            send(from, from_name, to, to_name, &msg),
            MessageKind::Signal
        );
        if i % 100 == 99 {
            record_lens.push(alice.session_record(BOB, 1).unwrap().len());
        }
    }
    // Old receiver chains are pruned by the library (it keeps 5), so once a few hundred turns
    // have filled them the record stops growing: every later record is within a few bytes (counters
    // written as varints grow by a byte now and then) of the largest of the first 500 messages.
    let (early, late) = record_lens.split_at(5);
    let settled = *early.iter().max().unwrap();
    assert!(late.iter().all(|&len| len <= settled + 16), "the record grew: {record_lens:?}");
}

#[test]
fn many_parties_and_groups_come_and_go() {
    for i in 0..50u64 {
        let (mut alice, mut bob) = established();
        send(&mut alice, ALICE, &mut bob, BOB, b"x");
        let mut carol = Party::new(3, 3, 3, i).unwrap();
        let d = carol.group_distribution("g").unwrap();
        bob.group_process("g", CAROL, 3, &d).unwrap();
        let ct = carol.group_encrypt("g", b"y").unwrap();
        assert_eq!(bob.group_decrypt("g", CAROL, 3, &ct).unwrap(), b"y");
        carol.group_rotate("g").unwrap();
    }
}
