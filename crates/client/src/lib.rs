//! A device on a real network: the client core's [`Endpoint`]
//! driven by tokio over a TLS connection to its app's relay ([`net::RelayAddress`]) ([`chat::ChatClient`]), with its state
//! kept in an embedded redb database ([`persist::DeviceDatabase`]). Every client duty (outbox,
//! dedupe, acknowledgements, retries, held group messages) lives in the core; this crate only
//! moves bytes, time and state.
//!
//! A bot is a device run by a program over the same client ([`bot::PollBot`]).
//!
//! The core is re-exported, so an app needs this one crate.

pub mod bot;
pub mod chat;
pub mod net;
pub mod persist;

pub use bot::PollBot;
pub use chat::{ChatClient, ChatError, ChatStats, Event};
pub use net::RelayAddress;
pub use switchboard_client_core::*;
pub use switchboard_client_core::Event as EndpointEvent;
