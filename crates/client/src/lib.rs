//! What an app embeds, sans-IO: one device, its pairwise sessions with other devices, and the
//! groups it belongs to. Methods take the bytes that arrived and return the messages to send; the
//! app's own transport carries them.
//!
//! Groups follow Signal's Sender Keys model with explicit membership: a group has an id, a set of
//! member devices and an epoch that grows at every change. Adding a member gives it every member's
//! *current* sender key, so it cannot read what was sent before it joined; removing one makes every
//! remaining member rotate its sender key and hand the new one to the remaining members only, so
//! the removed member cannot read what is sent after.

pub mod attachment;
pub mod chat;
mod device;
mod directory;
mod error;
mod group;
pub mod net;
pub mod persist;

pub use device::{Device, GroupMessage, Outgoing, PendingSend, Received};
#[cfg(feature = "inject-bugs")]
pub use device::InjectedBugs;
pub use chat::{ChatClient, ChatError, ChatStats, Event};
pub use directory::{BundleDirectory, InMemoryDirectory};
pub use error::ClientError;
pub use group::Group;

/// A device's address as the wire carries it.
pub fn wire_address(address: &switchboard_session::ProtocolAddress) -> switchboard_wire::switchboard::DeviceAddress {
    switchboard_wire::switchboard::DeviceAddress { name: address.name().to_owned(), device_id: address.device_id() }
}
