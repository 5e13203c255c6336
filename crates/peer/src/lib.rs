//! The peer protocol of `../shared/PEER_PROTOCOL.md`: one implementation of Signal-style sessions
//! driven from outside through JSON lines on standard input and output, so that a conformance
//! runner can hold any two implementations against each other.
//!
//! - [`protocol`]: the requests, responses, error kinds and bundles, as JSON.
//! - [`serve`]: the loop every peer runs — bounded line reading, dispatch to a [`Backend`], one
//!   answer per request, whatever the request.
//! - [`switchboard`]: the backend over this project's sessions and sender keys.
//! - [`conformance`]: the runner that plays randomized, seeded conversations between two peers.

pub mod conformance;
pub mod protocol;
pub mod serve;
pub mod switchboard;

pub use protocol::{Bundle, ErrorKind, Hello, MessageType, PeerError};
pub use serve::{Backend, serve};
