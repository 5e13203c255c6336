//! `switchboard-relay`: the driver that runs one app's relay core ([`switchboard_relay_core`]) as a
//! server — tokio for TLS (rustls) connections to devices and links between relays, redb or
//! PostgreSQL for the committed state, group commit between the two.
//!
//! The protocol logic lives in the core; this package adds only I/O. It re-exports the core so that
//! `switchboard_relay::core`, `::state` and `::storage` keep their paths; code that needs only the
//! core (the simulator, fuzz targets) depends on `switchboard-relay-core` directly and links none of
//! this package's I/O.
//!
//! - [`core`]: the protocol logic, sans-IO (the `switchboard-relay-core` crate).
//! - [`state`]: what is kept on disk, as mutations (from the core).
//! - [`storage`]: committing those mutations, to redb or PostgreSQL (here) or to memory (from the
//!   core).
//! - [`server`]: the tokio driver — device connections and links between relays, both TLS, with
//!   write deadlines and a budget for what is queued; group commit.
//! - [`config`], [`local`]: configuration files, and a federation of relays on this machine.

pub use switchboard_relay_core as core;
pub use switchboard_relay_core::state;

pub mod config;
pub mod local;
pub mod server;
pub mod storage;

/// Seconds since the Unix epoch (0 for a clock set before it): the relay core's clock.
pub(crate) fn unix_time() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs())
}
