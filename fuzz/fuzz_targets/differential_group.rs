//! differential_group: Sender Keys in Switchboard against Signal's reference C library, in
//! lockstep. Three members each exist as a Switchboard sender-key store and a libsignal-protocol-c
//! party; an arbitrary sequence of steps — create and hand out a sender key, rotate it, process a
//! distribution (again, late, or one that fell out of the keys kept), send, deliver in any order,
//! replay, tamper a byte, truncate — is played on both twins with the same randomness.
//!
//! Checks, after every step (see `switchboard_fuzz::differential_group`): the same distribution
//! and message bytes, the same plaintext or the same class of failure, and the same sender key
//! states; where the two legitimately differ (a retired key's distribution), Switchboard's side.
//!
//! Input format: actions, each an opcode byte and its operand bytes (`Action::encode`);
//! `examples/make_corpus.rs` writes scripted seeds.
//!
//! Run: `cd fuzz && cargo fuzz run -s none -a differential_group corpus/differential_group`

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| switchboard_fuzz::differential_group::run(data));
