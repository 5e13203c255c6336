//! Typed errors for everything the harness does, mapped from libsignal-protocol-c's `SG_ERR_*`
//! return codes so that tests can assert on the kind of failure rather than on numbers.

use std::os::raw::c_int;

use libsignal_protocol_sys as sys;

/// Every failure of the public API. No input to the public API panics: each one either succeeds
/// or yields one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The message could not be parsed, authenticated or decrypted (`SG_ERR_INVALID_MESSAGE`,
    /// `SG_ERR_INVALID_MAC`, `SG_ERR_INVALID_PROTO_BUF`, or a message too short to parse).
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// The message was already decrypted and its key is gone (`SG_ERR_DUPLICATE_MESSAGE`).
    #[error("duplicate message")]
    Duplicate,
    /// There is no session with that address (`SG_ERR_NO_SESSION`).
    #[error("no session with this address")]
    NoSession,
    /// The peer's identity key differs from the one first seen for that address
    /// (`SG_ERR_UNTRUSTED_IDENTITY`; the stores trust on first use).
    #[error("untrusted identity")]
    UntrustedIdentity,
    /// A key is malformed, a signature on it is wrong, or a referenced key id is unknown
    /// (`SG_ERR_INVALID_KEY`, `SG_ERR_INVALID_KEY_ID`).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The message carries a protocol version newer than the library knows (`SG_ERR_INVALID_VERSION`).
    #[error("invalid (unknown) protocol version")]
    InvalidVersion,
    /// The message carries a protocol version the library no longer supports (`SG_ERR_LEGACY_MESSAGE`).
    #[error("legacy message version")]
    LegacyMessage,
    /// Groups: there is no sender key for that (group, sender) — or for the key id the message
    /// names — so a distribution message must be processed first. Also returned by
    /// `group_encrypt` before `group_distribution` created this party's own sender key.
    #[error("no sender key for this group sender")]
    NoSenderKey,
    /// Any other failure: the raw `SG_ERR_*` (or errno-style) code and what the harness was doing.
    #[error("libsignal-protocol-c error {code} while {context}")]
    Other {
        /// The negative return code.
        code: i32,
        /// What the harness was doing.
        context: String,
    },
}

impl Error {
    /// Maps a negative return code of the C library to a typed error. `context` says what the
    /// harness was doing, for the variants that carry text.
    pub(crate) fn from_code(code: c_int, context: &str) -> Error {
        match code {
            sys::SG_ERR_DUPLICATE_MESSAGE => Error::Duplicate,
            sys::SG_ERR_NO_SESSION => Error::NoSession,
            sys::SG_ERR_UNTRUSTED_IDENTITY => Error::UntrustedIdentity,
            sys::SG_ERR_INVALID_VERSION => Error::InvalidVersion,
            sys::SG_ERR_LEGACY_MESSAGE => Error::LegacyMessage,
            sys::SG_ERR_INVALID_MESSAGE => Error::InvalidMessage(context.to_owned()),
            sys::SG_ERR_INVALID_MAC => Error::InvalidMessage(format!("{context}: bad MAC")),
            sys::SG_ERR_INVALID_PROTO_BUF => {
                Error::InvalidMessage(format!("{context}: malformed protobuf"))
            }
            sys::SG_ERR_INVALID_KEY => Error::InvalidKey(context.to_owned()),
            sys::SG_ERR_INVALID_KEY_ID => Error::InvalidKey(format!("{context}: unknown key id")),
            _ => Error::Other {
                code,
                context: context.to_owned(),
            },
        }
    }

    /// Like [`Error::from_code`], for codes returned while *parsing* untrusted bytes: there a
    /// generic `SG_ERR_INVAL` (input too short) or `SG_ERR_INVALID_KEY` (a bad embedded key)
    /// means the message itself is invalid.
    pub(crate) fn from_parse_code(code: c_int, context: &str) -> Error {
        match code {
            sys::SG_ERR_INVAL => Error::InvalidMessage(format!("{context}: input too short")),
            sys::SG_ERR_INVALID_KEY | sys::SG_ERR_INVALID_KEY_ID => {
                Error::InvalidMessage(format!("{context}: bad embedded key"))
            }
            _ => Error::from_code(code, context),
        }
    }

    /// An invalid argument rejected by the harness before reaching C.
    pub(crate) fn invalid_argument(context: impl Into<String>) -> Error {
        Error::Other {
            code: sys::SG_ERR_INVAL,
            context: context.into(),
        }
    }

    /// A C call that reported success but handed back a null object.
    pub(crate) fn null(context: &str) -> Error {
        Error::Other {
            code: sys::SG_ERR_UNKNOWN,
            context: format!("{context}: null result"),
        }
    }
}

/// Turns a C return code into `Ok(code)` (non-negative) or a typed error.
pub(crate) fn check(code: c_int, context: &str) -> Result<c_int, Error> {
    if code < 0 {
        Err(Error::from_code(code, context))
    } else {
        Ok(code)
    }
}
