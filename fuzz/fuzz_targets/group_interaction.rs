//! group_interaction: Sender Keys with membership changes. Up to four devices, a suite, first
//! members, then an arbitrary sequence of actions — send, deliver any message to any device,
//! deliver in a batch (with one tampered), tamper, claim the wrong sender, add a member, remove
//! one (every remaining member rotates and hands the new key to the remaining members only),
//! rotate, re-send a distribution, persist and restore a record — and at the end, every message
//! reaches every device that may read it.
//!
//! Checks, after every step (see `switchboard_fuzz::group_model`): a member reads every message
//! sent while it was a member, exactly once and exactly as sent; a removed member reads nothing
//! sent after its removal, a late joiner nothing sent before it joined, a sender not its own
//! messages; tampered bytes and the wrong sender fail; a failure leaves the record as it was;
//! records survive serialize and deserialize. The only legitimate loss is a key dropped after 5
//! newer sender keys of the same sender, which the model tracks.
//!
//! Input format: one byte (bit 0: `aes-256-gcm`; bits 1-4: first members), then actions, each an
//! opcode byte and its operand bytes (`Action::encode`); `examples/make_corpus.rs` writes seeds.
//!
//! Run: `cd fuzz && cargo fuzz run -s none -a group_interaction corpus/group_interaction`

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| switchboard_fuzz::group_model::run(data));
