//! A device's client behaviour, sans-IO: what every driver of a device runs — the app's
//! (`switchboard-client`, tokio), the terminal chat, and the simulator.
//!
//! - [`Device`]: one device's identity, pairwise sessions, sender keys and groups. Methods take
//!   the bytes that arrived and return the messages to send.
//! - [`endpoint::Endpoint`]: the device connected to its relay, as a state machine — registration,
//!   outbox, bundle fetches, held group messages, deduplication, acknowledgements after
//!   persistence, retries. Frames, commands and time in; frames, events, timeouts and state to
//!   persist out.
//!
//! Groups follow Signal's Sender Keys model with explicit membership: a group has an id, a set of
//! member devices, admins among them, and an epoch that grows by one at every change. Only an
//! admin may change a group; every change names the state it applies to by its hash and carries
//! the signature of that state's order key (which only admins hold), and every member checks all
//! three before applying it, so that no member can be shown a change the admins did not make, and
//! two different changes for one epoch are detected as a fork. A networked device has the group's
//! hub order its changes before it applies them (one per epoch, so two admins' changes never both
//! stand), and applies a change it is told of, its joining included, only once the hub says it
//! ordered that very state. Adding a member
//! gives it every member's *current* sender key, so it cannot read what was sent before it joined;
//! removing one makes every remaining member rotate its sender key and hand the new one to the
//! remaining members only, so the removed member cannot read what is sent after.
//!
//! This crate links no I/O (no tokio, no database): `scripts/check-cores.sh` checks it.

pub mod attachment;
pub mod business;
pub mod channel;
pub mod consent;
mod device;
mod directory;
pub mod endpoint;
mod error;
pub mod franking;
mod group;
mod membership;
pub mod person;

pub use membership::MAX_EPOCH_GAP;
mod snapshot;

pub use device::{Change, Device, GroupMessage, MembershipChange, Outgoing, PendingSend, Received, Sealing};
pub use device::{HubVerdict, MAX_AWAITING_HUB, MAX_AWAITING_HUB_PER_GROUP, MAX_AWAITING_HUB_PER_SENDER, MAX_FORKS_KEPT, MAX_HELD_KEYS, MAX_HELD_KEYS_PER_SENDER, MAX_PENDING_CHANGES, MAX_PENDING_CHANGES_PER_MEMBER, MAX_PENDING_CHANGE_BYTES};
#[cfg(switchboard_inject_bugs)]
pub use device::InjectedBugs;
pub use directory::{BundleDirectory, InMemoryDirectory};
pub use endpoint::{Endpoint, EndpointConfig, Event};
pub use error::ClientError;
pub use group::{GENESIS_HASH, Group, OrderKey, MAX_GROUP_ID_LEN, MAX_GROUP_MEMBERS};

/// A device's address as the wire carries it.
pub fn wire_address(address: &switchboard_session::ProtocolAddress) -> switchboard_wire::switchboard::DeviceAddress {
    switchboard_wire::switchboard::DeviceAddress { name: address.name().to_owned(), device_id: address.device_id() }
}

/// The hub app of group `id` (`name@app`, parsed as every address is:
/// [`switchboard_wire::address::UserAddress`]).
pub fn hub_of(id: &str) -> Result<&str, switchboard_wire::address::AddressError> {
    switchboard_wire::address::UserAddress::split(id).map(|(_, app)| app)
}
