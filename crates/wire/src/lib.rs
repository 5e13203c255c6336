//! Switchboard's wire format: every byte that goes on a wire or to disk is a message defined in the
//! workspace's `proto/` folder. This crate holds the prost types generated from those files and
//! the one way to parse them: [`decode`], which checks a size limit before it reads anything and
//! turns every malformed input into a [`DecodeError`].
//!
//! The Signal v3 messages ([`signal::SignalMessage`], [`signal::PreKeySignalMessage`],
//! [`signal::SenderKeyMessage`], [`signal::SenderKeyDistributionMessage`]) and the session record
//! ([`signal::RecordStructure`]) use libsignal's field numbers, so their bytes match the reference
//! library's.
//!
//! [`address`] holds the one parser of `name@app` and `name@app/n` that every crate uses.

pub mod address;
mod decode;
pub mod envelope;
pub mod frame;
pub mod franking;
pub mod group_order;
pub mod message_id;
pub mod scan;
mod secret_debug;

pub use decode::{DecodeError, decode, decode_canonical, limits};

/// Signal's v3 messages and the records a store persists, with libsignal's field numbers.
pub mod signal {
    include!(concat!(env!("OUT_DIR"), "/signal.rs"));
}

/// Switchboard's own messages: prekey bundles, what devices and relays say to each other
/// (`relay.proto`), what members of a group and linked devices tell each other, the content people
/// send, person records and what a device keeps on disk.
// Generated: a oneof is an enum of its messages, held inline as prost writes them.
#[allow(clippy::large_enum_variant)]
pub mod switchboard {
    include!(concat!(env!("OUT_DIR"), "/switchboard.rs"));
}

pub use prost::Message;
/// The shared byte buffer envelope ids and contents are held in (cloning one is a reference count).
pub use prost::bytes::Bytes;
