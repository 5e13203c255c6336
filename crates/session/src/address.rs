//! Addresses of devices.

use std::fmt;

/// One device of one person: a name (for Switchboard, `user@app`) and a device id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolAddress {
    name: String,
    device_id: u32,
}

impl ProtocolAddress {
    /// The address of device `device_id` of `name`.
    pub fn new(name: impl Into<String>, device_id: u32) -> Self {
        ProtocolAddress { name: name.into(), device_id }
    }

    /// The person's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device id.
    pub fn device_id(&self) -> u32 {
        self.device_id
    }
}

impl fmt::Display for ProtocolAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.device_id)
    }
}
