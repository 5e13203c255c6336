//! The peer protocol (`docs/PEER_PROTOCOL.md`): one implementation of Signal-style sessions
//! driven from outside through JSON lines on standard input and output, so that a conformance
//! runner can hold any two implementations against each other.
//!
//! - [`protocol`]: the one typed definition of the wire — requests, responses, error kinds,
//!   bundles and `hello`.
//! - [`mod@serve`]: the loop every peer of this workspace runs — bounded line reading, dispatch to a
//!   [`Backend`], one answer per request, whatever the request.
//! - [`switchboard`]: the backend over this project's sessions and sender keys.
//! - [`conformance`]: the runner that plays randomized, seeded conversations between two peers.

pub mod conformance;
pub mod protocol;
pub mod serve;
pub mod switchboard;

pub use protocol::{Bundle, ErrorKind, Hello, Hex, MessageType, PeerError, Reply, Request, Response};
pub use serve::{Backend, serve};
