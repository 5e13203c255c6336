//! The vocabulary of the peer protocol: error kinds, message types, bundles and `hello`.

use serde::{Deserialize, Serialize};

/// The error kinds a peer answers with (`"error"` in a response).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    BadRequest,
    Unsupported,
    UnknownParty,
    NoSession,
    InvalidMessage,
    Duplicate,
    TooFarAhead,
    UntrustedIdentity,
    InvalidKey,
}

impl ErrorKind {
    /// The kind's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::UnknownParty => "unknown_party",
            ErrorKind::NoSession => "no_session",
            ErrorKind::InvalidMessage => "invalid_message",
            ErrorKind::Duplicate => "duplicate",
            ErrorKind::TooFarAhead => "too_far_ahead",
            ErrorKind::UntrustedIdentity => "untrusted_identity",
            ErrorKind::InvalidKey => "invalid_key",
        }
    }
}

/// A failed request: its kind, and a sentence for a person (never key material).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", kind.name())]
pub struct PeerError {
    pub kind: ErrorKind,
    pub detail: String,
}

impl PeerError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        PeerError { kind, detail: detail.into() }
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, detail)
    }
    pub fn unsupported(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, detail)
    }
    pub fn unknown_party(party: &str) -> Self {
        Self::new(ErrorKind::UnknownParty, format!("no party named {}", printable(party)))
    }
}

/// At most 64 characters of a name from a request, for error details.
pub fn printable(name: &str) -> String {
    let short: String = name.chars().take(64).collect();
    format!("{short:?}")
}

/// The two kinds of 1:1 ciphertext.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    Prekey,
    Signal,
}

/// A prekey bundle as JSON. Keys are lowercase hex; fields a peer does not know are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    pub suite: String,
    pub registration_id: u32,
    pub device_id: u32,
    pub identity_key: String,
    pub signed_prekey_id: u32,
    pub signed_prekey: String,
    pub signed_prekey_signature: String,
    pub prekey_id: Option<u32>,
    pub prekey: Option<String>,
    /// The suites the device accepts, signed by its identity key (Switchboard's extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suites: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suites_signature: Option<String>,
    /// The KEM prekey of a post-quantum suite (`signal-pqxdh`: Kyber-1024, `pq-aes-256-gcm`:
    /// ML-KEM-1024): its id, its type-prefixed public key, and the identity key's signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kyber_prekey_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kyber_prekey: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kyber_prekey_signature: Option<String>,
}

/// What a peer says of itself in answer to `hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    #[serde(rename = "impl")]
    pub implementation: String,
    pub version: String,
    pub suites: Vec<String>,
    pub features: Vec<String>,
}

/// Decodes a hex field, with a `bad_request` naming the field on failure.
pub fn from_hex(field: &str, value: &str) -> Result<Vec<u8>, PeerError> {
    hex::decode(value).map_err(|e| PeerError::bad_request(format!("field {field}: not hex ({e})")))
}
