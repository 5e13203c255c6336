//! session_interaction: two or three parties with 1:1 sessions in both suites, driven by an
//! arbitrary sequence of actions — start a session from a fresh bundle (with or without a one-time
//! prekey), send, deliver any in-flight message, drop, replay a delivered one, reorder, tamper a
//! byte, misdeliver, claim the wrong sender, take it as the other kind, persist and restore a
//! record — and at the end, deliver everything still in flight.
//!
//! Checks, after every step (see `switchboard_fuzz::session_model` for the exact model):
//! what was delivered untampered decrypts to exactly what was sent, once; a replay, a tampered
//! copy, a misdelivery, a wrong sender or a wrong kind fails (only a `signal-v3`
//! PreKeySignalMessage's unauthenticated outer fields may change, as in libsignal); a failure
//! leaves the recipient's state as it was; a record survives serialize and deserialize unchanged;
//! the only genuine message allowed to fail is one whose receiving chain the recipient has
//! dropped (more than 5 newer chains of that session), and the model stays below every other
//! limit so no other loss is legitimate.
//!
//! Input format: one byte (bit 0: three parties), then actions, each an opcode byte and its
//! operand bytes (`Action::encode`); `examples/make_corpus.rs` writes scripted seeds.
//!
//! Run: `cd fuzz && cargo fuzz run -s none -a session_interaction corpus/session_interaction`

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| switchboard_fuzz::session_model::run(data));
