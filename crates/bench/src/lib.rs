//! Side-by-side measurements of Switchboard's 1:1 sessions and groups against Signal's reference C
//! library (libsignal-protocol-c), Megolm (vodozemac), OpenMLS and the floor of primitive
//! operations, in one run, interleaved.
//!
//! The workloads (what is timed, and how inputs are prepared outside the timed region) live in
//! [`workloads`], [`floor`] and [`group_floor`]; [`measure`] runs them round-robin and takes
//! medians (timed by [`clock`]: wall-clock, or process CPU time with `--cpu-time`); [`report`]
//! prints them. The binary (`src/main.rs`) and the criterion benches
//! (`benches/sessions.rs`, `benches/groups.rs`) use the same workloads.

pub mod clock;
pub mod floor;
pub mod group_floor;
pub mod measure;
pub mod relay;
pub mod report;
pub mod sim;
pub mod workloads;
