//! One app's relay. It knows accounts, bundles, mailboxes and other apps' relays; it never sees a
//! plaintext: every envelope it stores or forwards is end-to-end encrypted by the devices.
//!
//! - [`core`]: the protocol logic, sans-IO.
//! - [`state`]: what is kept on disk, as mutations.
//! - [`storage`]: committing those mutations, to redb or to memory.
//! - [`server`]: the tokio driver — client connections, TLS links between relays, group commit.

pub mod config;
pub mod core;
pub mod local;
pub mod server;
pub mod state;
pub mod storage;
