//! The cipher suites a session can be created under. A session keeps its suite for life; each suite
//! has its own key-derivation labels and its own version byte, so the bytes of one are never taken
//! for the other.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A session cipher suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Suite {
    /// Byte-compatible with libsignal: AES-256-CBC with PKCS#7, HMAC-SHA256 truncated to 8 bytes.
    SignalV3,
    /// AES-256-GCM, with the message header and both identities as associated data.
    Aes256Gcm,
}

/// The HKDF info strings of one suite.
pub(crate) struct Labels {
    pub x3dh: &'static [u8],
    pub ratchet: &'static [u8],
    pub message_keys: &'static [u8],
    pub group: &'static [u8],
}

impl Suite {
    /// Every suite, in order of preference (most preferred first).
    pub const ALL: [Suite; 2] = [Suite::Aes256Gcm, Suite::SignalV3];

    /// The suite's name as used in bundles, the peer protocol and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Suite::SignalV3 => "signal-v3",
            Suite::Aes256Gcm => "aes-256-gcm",
        }
    }

    /// The first byte of every message of this suite.
    pub fn version_byte(self) -> u8 {
        match self {
            // libsignal: high nibble the message version, low nibble the sender's current version.
            Suite::SignalV3 => 0x33,
            Suite::Aes256Gcm => 0xa1,
        }
    }

    /// The suite whose messages start with `byte`.
    pub fn from_version_byte(byte: u8) -> Result<Suite, Error> {
        match byte {
            0x33 => Ok(Suite::SignalV3),
            0xa1 => Ok(Suite::Aes256Gcm),
            other => Err(Error::InvalidVersion(other)),
        }
    }

    pub(crate) fn labels(self) -> &'static Labels {
        match self {
            Suite::SignalV3 => &Labels {
                x3dh: b"WhisperText",
                ratchet: b"WhisperRatchet",
                message_keys: b"WhisperMessageKeys",
                group: b"WhisperGroup",
            },
            Suite::Aes256Gcm => &Labels {
                x3dh: b"Switchboard_AES256GCM_X3DH",
                ratchet: b"Switchboard_AES256GCM_Ratchet",
                message_keys: b"Switchboard_AES256GCM_MessageKeys",
                group: b"Switchboard_AES256GCM_Group",
            },
        }
    }

    pub(crate) fn to_wire(self) -> switchboard_wire::signal::Suite {
        match self {
            Suite::SignalV3 => switchboard_wire::signal::Suite::SignalV3,
            Suite::Aes256Gcm => switchboard_wire::signal::Suite::Aes256Gcm,
        }
    }

    pub(crate) fn from_wire(value: Option<i32>) -> Result<Suite, Error> {
        match value.map(switchboard_wire::signal::Suite::try_from) {
            None | Some(Ok(switchboard_wire::signal::Suite::SignalV3)) => Ok(Suite::SignalV3),
            Some(Ok(switchboard_wire::signal::Suite::Aes256Gcm)) => Ok(Suite::Aes256Gcm),
            Some(Err(_)) => Err(Error::InvalidRecord("unknown suite")),
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Suite {
    type Err = Error;

    fn from_str(name: &str) -> Result<Suite, Error> {
        Suite::ALL
            .into_iter()
            .find(|suite| suite.name() == name)
            .ok_or_else(|| Error::UnsupportedSuite(name.chars().take(64).collect()))
    }
}
