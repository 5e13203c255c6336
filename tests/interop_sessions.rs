//! 1:1 sessions between Switchboard and Signal's reference C library, every scenario in both
//! directions: each message is written by one implementation and read by the other.

mod common;

use common::{Failure, both_orders, connect, send};
use switchboard_session::{MessageKind, PreKeySignalMessage};

#[test]
fn sessions_start_from_either_side_and_switch_to_signal_messages_after_the_reply() {
    for (mut a, mut b, label) in both_orders(1) {
        connect(a.as_mut(), b.as_mut());
        assert_eq!(send(a.as_mut(), b.as_mut(), b"first"), MessageKind::PreKey, "{label}");
        assert_eq!(send(a.as_mut(), b.as_mut(), b"second"), MessageKind::PreKey, "{label}");
        assert_eq!(send(b.as_mut(), a.as_mut(), b"reply"), MessageKind::Signal, "{label}");
        assert_eq!(send(a.as_mut(), b.as_mut(), b"third"), MessageKind::Signal, "{label}");
    }
}

#[test]
fn long_conversations_with_many_ratchet_turns() {
    for (mut a, mut b, label) in both_orders(2) {
        connect(a.as_mut(), b.as_mut());
        for turn in 0..150u32 {
            for i in 0..(turn % 3 + 1) {
                send(a.as_mut(), b.as_mut(), format!("{label} a {turn}.{i}").as_bytes());
            }
            for i in 0..(turn % 2 + 1) {
                send(b.as_mut(), a.as_mut(), format!("{label} b {turn}.{i}").as_bytes());
            }
        }
    }
}

#[test]
fn plaintexts_of_every_size_around_the_block_boundaries() {
    for (mut a, mut b, _) in both_orders(3) {
        connect(a.as_mut(), b.as_mut());
        for len in (0..70).chain([255, 256, 1000, 4096, 65536]) {
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            send(a.as_mut(), b.as_mut(), &plaintext);
            send(b.as_mut(), a.as_mut(), &plaintext);
        }
    }
}

#[test]
fn out_of_order_and_lost_messages() {
    for (mut a, mut b, label) in both_orders(4) {
        connect(a.as_mut(), b.as_mut());
        send(a.as_mut(), b.as_mut(), b"hello");
        send(b.as_mut(), a.as_mut(), b"hi");
        for (from_a, rounds) in [(true, 0), (false, 1), (true, 2), (false, 3)] {
            let (sender, receiver) = if from_a { (&mut a, &mut b) } else { (&mut b, &mut a) };
            let (receiver_name, sender_name) = (receiver.name().to_owned(), sender.name().to_owned());
            let batch: Vec<_> = (0..12)
                .map(|i| {
                    let text = format!("{label} round {rounds} message {i}");
                    let (kind, bytes) = sender.encrypt(&receiver_name, text.as_bytes());
                    (text, kind, bytes)
                })
                .collect();
            // Deliver in a scrambled order; messages 3 and 7 are lost.
            for i in [11, 0, 5, 2, 9, 1, 10, 4, 6, 8] {
                let (text, kind, bytes) = &batch[i];
                assert_eq!(receiver.decrypt(&sender_name, *kind, bytes).as_deref(), Ok(text.as_bytes()), "{label}");
            }
        }
        send(a.as_mut(), b.as_mut(), b"still fine");
    }
}

#[test]
fn duplicates_are_rejected_by_both() {
    for (mut a, mut b, label) in both_orders(5) {
        connect(a.as_mut(), b.as_mut());
        let (kind, first) = a.encrypt("bob", b"once");
        assert_eq!(b.decrypt("alice", kind, &first).as_deref(), Ok(&b"once"[..]));
        assert_eq!(b.decrypt("alice", kind, &first), Err(Failure::Duplicate), "{label}: replayed prekey message");
        send(b.as_mut(), a.as_mut(), b"reply");
        let (kind, second) = a.encrypt("bob", b"twice");
        assert_eq!(b.decrypt("alice", kind, &second).as_deref(), Ok(&b"twice"[..]));
        assert_eq!(b.decrypt("alice", kind, &second), Err(Failure::Duplicate), "{label}");
        let (kind, back) = b.encrypt("alice", b"back");
        assert_eq!(a.decrypt("bob", kind, &back).as_deref(), Ok(&b"back"[..]));
        assert_eq!(a.decrypt("bob", kind, &back), Err(Failure::Duplicate), "{label}");
    }
}

#[test]
fn every_tampered_byte_is_rejected_and_the_session_goes_on() {
    for (mut a, mut b, label) in both_orders(6) {
        connect(a.as_mut(), b.as_mut());
        send(a.as_mut(), b.as_mut(), b"hello");
        send(b.as_mut(), a.as_mut(), b"hi");
        for a_sends in [true, false] {
            let (sender, receiver) = if a_sends { (&mut a, &mut b) } else { (&mut b, &mut a) };
            let (receiver_name, sender_name) = (receiver.name().to_owned(), sender.name().to_owned());
            let (kind, bytes) = sender.encrypt(&receiver_name, b"tamper with me, if you can");
            let before = receiver.session_snapshot(&sender_name);
            for index in 0..bytes.len() {
                let mut tampered = bytes.clone();
                tampered[index] ^= 0x04;
                assert!(receiver.decrypt(&sender_name, kind, &tampered).is_err(), "{label}: byte {index} accepted");
                assert_eq!(receiver.session_snapshot(&sender_name), before, "{label}: byte {index} changed state");
            }
            assert_eq!(receiver.decrypt(&sender_name, kind, &bytes).as_deref(), Ok(&b"tamper with me, if you can"[..]));
        }
    }
}

#[test]
fn forged_first_messages_leave_no_trace() {
    for (mut a, mut b, label) in both_orders(7) {
        connect(a.as_mut(), b.as_mut());
        let (kind, bytes) = a.encrypt("bob", b"first");
        assert_eq!(kind, MessageKind::PreKey);
        // Flip the last byte of the inner SignalMessage: its MAC.
        let inner = PreKeySignalMessage::parse(&bytes).unwrap().message().serialize().to_vec();
        let mac_at = bytes.windows(inner.len()).position(|w| w == inner.as_slice()).unwrap() + inner.len() - 1;
        let mut forged = bytes.clone();
        forged[mac_at] ^= 1;
        assert_eq!(b.decrypt("alice", kind, &forged), Err(Failure::Invalid), "{label}");
        assert!(b.session_snapshot("alice").is_empty(), "{label}: a forged message made a session");
        assert_eq!(b.decrypt("alice", kind, &bytes).as_deref(), Ok(&b"first"[..]), "{label}");
    }
}
