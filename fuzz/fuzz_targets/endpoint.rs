//! endpoint: three client endpoints (two apps, one group) against real relay cores over the
//! in-memory harness, driven by an arbitrary interleaving of user commands, network events,
//! crashes, redeliveries and arbitrary bytes from the relay.
//!
//! Checks (see `switchboard_fuzz::endpoint_model`): no panic; nothing acknowledged before it is
//! persisted; no message shown to a device twice, across reconnects, redeliveries and crashes;
//! no plaintext in any frame an endpoint writes; and, unless arbitrary bytes reached an endpoint,
//! every 1:1 message written to its sender's disk arrives once the network is back.
//!
//! Input format: actions, each an opcode byte and its operand bytes (`Action::encode`);
//! `examples/make_corpus.rs` writes scripted seeds.
//!
//! Run: `cd fuzz && cargo fuzz run -s none -a endpoint corpus/endpoint`

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| switchboard_fuzz::endpoint_model::run(data));
