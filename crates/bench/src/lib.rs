//! Side-by-side measurements of Switchboard's 1:1 sessions against Signal's reference C library
//! (libsignal-protocol-c) and against the floor of primitive operations, in one run, interleaved.
//!
//! The workloads (what is timed, and how inputs are prepared outside the timed region) live in
//! [`workloads`] and [`floor`]; [`measure`] runs them round-robin and takes medians; [`report`]
//! prints them. The binary (`src/main.rs`) and the criterion benches (`benches/sessions.rs`) use
//! the same workloads.

pub mod floor;
pub mod measure;
pub mod report;
pub mod workloads;
