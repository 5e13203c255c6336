//! differential_session: Switchboard against Signal's reference C library, in lockstep. Two
//! parties each exist as a Switchboard device and a libsignal-protocol-c party with the same keys;
//! an arbitrary sequence of steps — start or reset a session from a bundle with or without a
//! one-time prekey, send either way, deliver in any order, replay, tamper a byte, truncate, take
//! a message as the other kind, lose one — is played on both twins with the same randomness.
//!
//! Checks, after every step (see `switchboard_fuzz::differential_session`): both accept or both
//! refuse (for the same class of reason), both decrypt to the same plaintext, both encrypt to the
//! same bytes, and both hold byte-identical session records.
//!
//! Input format: actions, each an opcode byte and its operand bytes (`Action::encode`);
//! `examples/make_corpus.rs` writes scripted seeds.
//!
//! Run: `cd fuzz && cargo fuzz run -s none -a differential_session corpus/differential_session`

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| switchboard_fuzz::differential_session::run(data));
