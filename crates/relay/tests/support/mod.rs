//! What the relay's integration tests share.

pub mod postgres;
