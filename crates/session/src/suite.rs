//! The cipher suites a session can be created under. A session keeps its suite for life; each suite
//! has its own key-derivation labels and its own version byte, so the bytes of one are never taken
//! for the other. Two are classical (X3DH), two post-quantum (X3DH with a KEM prekey, PQXDH);
//! each post-quantum suite encrypts messages as its classical twin does.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::kem::Kem;

/// How a suite encrypts and authenticates each message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    /// AES-256-CBC with PKCS#7 and HMAC-SHA256 truncated to 8 bytes, as libsignal.
    CbcHmac,
    /// AES-256-GCM with the header and both identities as associated data.
    Gcm,
}

/// A session cipher suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Suite {
    /// Byte-compatible with libsignal: AES-256-CBC with PKCS#7, HMAC-SHA256 truncated to 8 bytes.
    SignalV3,
    /// AES-256-GCM, with the message header and both identities as associated data.
    Aes256Gcm,
    /// PQXDH byte-compatible with libsignal: `signal-v3` messages (version 4) over a key
    /// agreement that adds a Kyber-1024 prekey's shared secret.
    SignalPqxdh,
    /// `aes-256-gcm` messages over a key agreement that adds an ML-KEM-1024 prekey's shared
    /// secret, with labels of its own.
    PqAes256Gcm,
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
    /// Post-quantum before classical, and within each the suite of this project's own design
    /// before libsignal's.
    pub const ALL: [Suite; 4] = [Suite::PqAes256Gcm, Suite::SignalPqxdh, Suite::Aes256Gcm, Suite::SignalV3];
    /// The classical suites, in order of preference: what a device offers that does not speak
    /// post-quantum key agreement.
    pub const CLASSICAL: [Suite; 2] = [Suite::Aes256Gcm, Suite::SignalV3];

    /// The suite's name as used in bundles, the peer protocol and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Suite::SignalV3 => "signal-v3",
            Suite::Aes256Gcm => "aes-256-gcm",
            Suite::SignalPqxdh => "signal-pqxdh",
            Suite::PqAes256Gcm => "pq-aes-256-gcm",
        }
    }

    /// The first byte of every message of this suite.
    pub fn version_byte(self) -> u8 {
        match self {
            // libsignal: high nibble the message version, low nibble the sender's current version.
            Suite::SignalV3 => 0x33,
            Suite::SignalPqxdh => 0x44,
            Suite::Aes256Gcm => 0xa1,
            Suite::PqAes256Gcm => 0xa2,
        }
    }

    /// The suite whose messages start with `byte`.
    ///
    /// libsignal's formats keep the message version in the high nibble and read nothing from
    /// the low one, where a sender puts the highest version it knows: libsignal-c writes `0x33`,
    /// libsignal `0x34` for a version 3 message since it learned PQXDH. Both are read here as
    /// those libraries read them (found by the `differential_session` fuzz target); what
    /// Switchboard writes is [`Suite::version_byte`].
    pub fn from_version_byte(byte: u8) -> Result<Suite, Error> {
        match byte {
            0xa1 => Ok(Suite::Aes256Gcm),
            0xa2 => Ok(Suite::PqAes256Gcm),
            _ if byte >> 4 == 3 => Ok(Suite::SignalV3),
            _ if byte >> 4 == 4 => Ok(Suite::SignalPqxdh),
            other => Err(Error::InvalidVersion(other)),
        }
    }

    /// How the suite's messages are encrypted.
    pub fn cipher(self) -> Cipher {
        match self {
            Suite::SignalV3 | Suite::SignalPqxdh => Cipher::CbcHmac,
            Suite::Aes256Gcm | Suite::PqAes256Gcm => Cipher::Gcm,
        }
    }

    /// The KEM whose prekey the suite's key agreement needs; `None` for a classical suite.
    pub fn kem(self) -> Option<Kem> {
        match self {
            Suite::SignalV3 | Suite::Aes256Gcm => None,
            Suite::SignalPqxdh => Some(Kem::Kyber1024),
            Suite::PqAes256Gcm => Some(Kem::MlKem1024),
        }
    }

    /// The classical suite whose messages this suite's are: itself for a classical suite. Sender
    /// keys use it: a group's messages have no key agreement of their own (their keys travel over
    /// pairwise sessions, which is where post-quantum protection comes from), and libsignal writes
    /// version 3 sender-key messages under PQXDH too.
    pub fn classical(self) -> Suite {
        match self {
            Suite::SignalV3 | Suite::SignalPqxdh => Suite::SignalV3,
            Suite::Aes256Gcm | Suite::PqAes256Gcm => Suite::Aes256Gcm,
        }
    }

    /// The classical suite whose messages start with `byte` (what sender-key messages carry).
    pub(crate) fn classical_from_version_byte(byte: u8) -> Result<Suite, Error> {
        match Suite::from_version_byte(byte)? {
            suite if suite.kem().is_none() => Ok(suite),
            _ => Err(Error::InvalidVersion(byte)),
        }
    }

    /// libsignal's session version: 4 for a session with a KEM in its key agreement, else 3.
    pub(crate) fn session_version(self) -> u32 {
        if self.kem().is_some() { 4 } else { 3 }
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
            Suite::SignalPqxdh => &Labels {
                x3dh: b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024",
                ratchet: b"WhisperRatchet",
                message_keys: b"WhisperMessageKeys",
                group: b"WhisperGroup",
            },
            Suite::PqAes256Gcm => &Labels {
                x3dh: b"Switchboard_PQ_AES256GCM_X25519_MLKEM1024",
                ratchet: b"Switchboard_PQ_AES256GCM_Ratchet",
                message_keys: b"Switchboard_PQ_AES256GCM_MessageKeys",
                group: b"Switchboard_PQ_AES256GCM_Group",
            },
        }
    }

    pub(crate) fn to_wire(self) -> switchboard_wire::signal::Suite {
        match self {
            Suite::SignalV3 => switchboard_wire::signal::Suite::SignalV3,
            Suite::Aes256Gcm => switchboard_wire::signal::Suite::Aes256Gcm,
            Suite::SignalPqxdh => switchboard_wire::signal::Suite::SignalPqxdh,
            Suite::PqAes256Gcm => switchboard_wire::signal::Suite::PqAes256Gcm,
        }
    }

    pub(crate) fn from_wire(value: Option<i32>) -> Result<Suite, Error> {
        match value.map(switchboard_wire::signal::Suite::try_from) {
            None | Some(Ok(switchboard_wire::signal::Suite::SignalV3)) => Ok(Suite::SignalV3),
            Some(Ok(switchboard_wire::signal::Suite::Aes256Gcm)) => Ok(Suite::Aes256Gcm),
            Some(Ok(switchboard_wire::signal::Suite::SignalPqxdh)) => Ok(Suite::SignalPqxdh),
            Some(Ok(switchboard_wire::signal::Suite::PqAes256Gcm)) => Ok(Suite::PqAes256Gcm),
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
