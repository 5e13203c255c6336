//! peer_request: arbitrary bytes as peer-protocol request lines (PEER_PROTOCOL.md) into
//! `switchboard_peer::serve::answer`, and (selected by the first byte) through `serve`, against this project's
//! backend pre-populated with two parties (`alice`, `bob`), a session between them and a group
//! `g` (see `switchboard_fuzz::peer`).
//!
//! Input: one byte (bit 0: the backend's group suite is `aes-256-gcm`; bit 1: the lines also go
//! through `serve`, on a second backend, and its answers are compared), then up to 16 lines.
//!
//! Checks: exactly one JSON object per request line with a boolean `ok`; refusals carry a known
//! error kind and a detail; no panic anywhere — including panics `answer` catches, which it
//! reports as "internal error" and which this target treats as a crash; `serve` answers each
//! non-blank line once, and exactly as `answer` does.
//!
//! Run: `cd fuzz && cargo fuzz run -s none -a peer_request corpus/peer_request -- -dict=dict/peer_request.dict`

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| switchboard_fuzz::peer::run(data));
