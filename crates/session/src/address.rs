//! Addresses of devices.

use std::fmt;

use compact_str::CompactString;

/// One device of one person: a name (for Switchboard, `user@app`) and a device id. Ordered and
/// hashed as the name's text, then the device id.
///
/// A name of up to 24 bytes is kept inline, not on the heap: addresses are the keys of member
/// sets and key stores, and comparing one then reads no memory beyond the address itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolAddress {
    name: CompactString,
    device_id: u32,
}

impl ProtocolAddress {
    /// The address of device `device_id` of `name`.
    pub fn new(name: impl AsRef<str>, device_id: u32) -> Self {
        ProtocolAddress { name: CompactString::new(name.as_ref()), device_id }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_name_text_then_device_id_whether_the_name_is_inline_or_not() {
        let long = "a-name-longer-than-twenty-four-bytes@green";
        let mut addresses = vec![
            ProtocolAddress::new("bob@blue", 2),
            ProtocolAddress::new(long, 1),
            ProtocolAddress::new("bob@blue", 1),
            ProtocolAddress::new("b", 9),
        ];
        addresses.sort();
        let names: Vec<_> = addresses.iter().map(|a| (a.name().to_owned(), a.device_id())).collect();
        let mut expected: Vec<_> = addresses.iter().map(|a| (a.name().to_owned(), a.device_id())).collect();
        expected.sort();
        assert_eq!(names, expected);
        assert_eq!(addresses[0].name(), long);
        assert_eq!(ProtocolAddress::new(String::from(long), 1), ProtocolAddress::new(long, 1));
    }
}
