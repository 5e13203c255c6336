//! group_control: a group's authority under a forging member — admins' changes, a member's forged
//! announcements and arbitrary control bytes, group messages, and deliveries in any order or not
//! at all (see `switchboard_fuzz::membership_model` for the actions and the checks).
//!
//! Input: actions of four bytes (an opcode, then operands), read byte by byte.
//!
//! Run: `cd fuzz && cargo fuzz run -s none -a group_control corpus/group_control`

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| switchboard_fuzz::membership_model::run(data));
