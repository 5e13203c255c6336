//! The peer protocol's one typed definition: every request ([`Request`], tagged by `"op"`), every
//! response ([`Response`], with `"ok"`), the error kinds, the bundle and `hello`. The server
//! ([`mod@crate::serve`]), the conformance runner ([`crate::conformance`]) and the C library's peer
//! all read and write the wire through these types; `docs/PEER_PROTOCOL.md` describes the same
//! contract in prose.
//!
//! A response line does not name the op it answers, so it is read back against the request it
//! answers: [`Response::read`].

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The error kinds a peer answers with (`"error"` in a failed response).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed: not JSON, not an object, a field missing or of the wrong type,
    /// hex that does not decode, a line too long, a name or number out of range.
    BadRequest,
    /// The op, the suite or the feature is not implemented by this peer.
    Unsupported,
    /// The request names a party this peer does not hold.
    UnknownParty,
    /// No session with that peer, or no sender key for that group sender.
    NoSession,
    /// Bytes that do not parse, do not authenticate, or carry the wrong version.
    InvalidMessage,
    /// A message already decrypted, or one whose key is gone.
    Duplicate,
    /// A message further ahead in its chain than the peer will skip.
    TooFarAhead,
    /// The remote party's identity key differs from the one first seen.
    UntrustedIdentity,
    /// A bundle or key that does not verify.
    InvalidKey,
}

impl ErrorKind {
    /// Every kind, in the order of the table in `docs/PEER_PROTOCOL.md`.
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::BadRequest,
        ErrorKind::Unsupported,
        ErrorKind::UnknownParty,
        ErrorKind::NoSession,
        ErrorKind::InvalidMessage,
        ErrorKind::Duplicate,
        ErrorKind::TooFarAhead,
        ErrorKind::UntrustedIdentity,
        ErrorKind::InvalidKey,
    ];

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

    /// The kind named `name` on the wire, if there is one.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed request: its kind, and a sentence for a person (never key material).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct PeerError {
    /// What went wrong, from the protocol's fixed list.
    pub kind: ErrorKind,
    /// Free text for a person reading the failure.
    pub detail: String,
}

impl PeerError {
    /// An error of `kind` with `detail`.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        PeerError { kind, detail: detail.into() }
    }
    /// A [`ErrorKind::BadRequest`].
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, detail)
    }
    /// An [`ErrorKind::Unsupported`].
    pub fn unsupported(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, detail)
    }
    /// An [`ErrorKind::UnknownParty`] naming `party`.
    pub fn unknown_party(party: &str) -> Self {
        Self::new(ErrorKind::UnknownParty, format!("no party named {}", printable(party)))
    }
}

/// At most 64 characters of a name from a request, quoted, for error details.
pub fn printable(name: &str) -> String {
    let short: String = name.chars().take(64).collect();
    format!("{short:?}")
}

/// Bytes, written on the wire as a lowercase hex string (upper case is accepted when read).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Hex(pub Vec<u8>);

impl Hex {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Hex {
    fn from(bytes: Vec<u8>) -> Self {
        Hex(bytes)
    }
}

impl From<&[u8]> for Hex {
    fn from(bytes: &[u8]) -> Self {
        Hex(bytes.to_vec())
    }
}

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 32;
        let head = hex::encode(&self.0[..self.0.len().min(SHOWN)]);
        if self.0.len() > SHOWN { write!(f, "{head}…({} bytes)", self.0.len()) } else { write!(f, "{head:?}") }
    }
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HexVisitor;
        impl Visitor<'_> for HexVisitor {
            type Value = Hex;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a hex string")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Hex, E> {
                hex::decode(value).map(Hex).map_err(|e| E::custom(format!("not hex ({e})")))
            }
        }
        deserializer.deserialize_str(HexVisitor)
    }
}

/// The two kinds of 1:1 ciphertext (`"type"` in `encrypt` and `decrypt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    /// A message that can start a session (a PreKeySignalMessage in libsignal's format).
    Prekey,
    /// A message of an established session (a SignalMessage).
    Signal,
}

impl MessageType {
    /// The type's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Prekey => "prekey",
            MessageType::Signal => "signal",
        }
    }
}

/// A prekey bundle. Fields a peer does not know are ignored when read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// The suite the bundle was asked for.
    pub suite: String,
    /// The device's registration id.
    pub registration_id: u32,
    /// The device id.
    pub device_id: u32,
    /// The identity public key, serialized with its type byte (33 bytes, `05…`, for Curve25519).
    pub identity_key: Hex,
    /// The id of the signed prekey.
    pub signed_prekey_id: u32,
    /// The signed prekey's public key, with its type byte.
    pub signed_prekey: Hex,
    /// The identity key's XEdDSA signature over `signed_prekey`.
    pub signed_prekey_signature: Hex,
    /// The id of the one-time prekey handed out, `null` when none is left.
    pub prekey_id: Option<u32>,
    /// The one-time prekey's public key, `null` when none is left.
    pub prekey: Option<Hex>,
    /// The suites the device accepts (Switchboard's extension), signed by `suites_signature`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suites: Option<Vec<String>>,
    /// The identity key's signature over `suites`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suites_signature: Option<Hex>,
    /// The id of the KEM prekey of a post-quantum suite (`signal-pqxdh`: Kyber-1024,
    /// `pq-aes-256-gcm`: ML-KEM-1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kyber_prekey_id: Option<u32>,
    /// The KEM prekey's public key, prefixed by its type byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kyber_prekey: Option<Hex>,
    /// The identity key's signature over `kyber_prekey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kyber_prekey_signature: Option<Hex>,
}

/// What a peer says of itself in answer to `hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The implementation's name (`"impl"` on the wire).
    #[serde(rename = "impl")]
    pub implementation: String,
    /// The implementation's version, free text.
    pub version: String,
    /// The suites whose bundles and sessions it serves.
    pub suites: Vec<String>,
    /// What it implements, from `session`, `group` and `pqxdh`.
    pub features: Vec<String>,
}

impl Hello {
    /// Whether `feature` is listed.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}

/// One request, as one JSON object on one line, its variant named by `"op"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Who are you: answered by [`Reply::Hello`].
    Hello,
    /// Make a new party (a device) with fresh keys and `prekeys` one-time prekeys.
    Create {
        /// The new party's name.
        party: String,
        /// Its registration id.
        registration_id: u32,
        /// Its device id.
        device_id: u32,
        /// How many one-time prekeys to make (ids 1 to `prekeys`).
        prekeys: u32,
    },
    /// Hand out a bundle of `party` for `suite`, with the next unused one-time prekey.
    Bundle {
        /// Whose bundle.
        party: String,
        /// The suite the session will use.
        suite: String,
    },
    /// `party` starts a session with `peer` from `peer`'s bundle.
    ProcessBundle {
        /// Who starts the session.
        party: String,
        /// The remote party the bundle belongs to.
        peer: String,
        /// The bundle, as another peer's `bundle` answered it.
        bundle: Bundle,
    },
    /// `party` encrypts `plaintext` to `peer`.
    Encrypt {
        /// The sender.
        party: String,
        /// The recipient.
        peer: String,
        /// The message.
        plaintext: Hex,
    },
    /// `party` decrypts `ciphertext` from `peer`.
    Decrypt {
        /// The recipient.
        party: String,
        /// The sender.
        peer: String,
        /// The kind of ciphertext (`"type"` on the wire), as `encrypt` said.
        #[serde(rename = "type")]
        kind: MessageType,
        /// The wire bytes.
        ciphertext: Hex,
    },
    /// `party`'s sender-key distribution for `group`, creating its sender key if it has none.
    GroupDistribution {
        /// The group member.
        party: String,
        /// The group's id.
        group: String,
    },
    /// `party` takes `sender`'s distribution for `group`.
    GroupProcess {
        /// The reader.
        party: String,
        /// The group's id.
        group: String,
        /// Whose distribution it is.
        sender: String,
        /// The distribution's wire bytes.
        distribution: Hex,
    },
    /// `party` encrypts `plaintext` to `group` under its sender key.
    GroupEncrypt {
        /// The sender.
        party: String,
        /// The group's id.
        group: String,
        /// The message.
        plaintext: Hex,
    },
    /// `party` decrypts `sender`'s group message.
    GroupDecrypt {
        /// The reader.
        party: String,
        /// The group's id.
        group: String,
        /// Who sent it.
        sender: String,
        /// The wire bytes.
        ciphertext: Hex,
    },
    /// `party` replaces its sender key for `group` (as after a member left).
    GroupRotate {
        /// The group member.
        party: String,
        /// The group's id.
        group: String,
    },
}

impl Request {
    /// Every op's name.
    pub const OPS: [&'static str; 11] = [
        "hello",
        "create",
        "bundle",
        "process_bundle",
        "encrypt",
        "decrypt",
        "group_distribution",
        "group_process",
        "group_encrypt",
        "group_decrypt",
        "group_rotate",
    ];

    /// The op's name on the wire.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Hello => "hello",
            Request::Create { .. } => "create",
            Request::Bundle { .. } => "bundle",
            Request::ProcessBundle { .. } => "process_bundle",
            Request::Encrypt { .. } => "encrypt",
            Request::Decrypt { .. } => "decrypt",
            Request::GroupDistribution { .. } => "group_distribution",
            Request::GroupProcess { .. } => "group_process",
            Request::GroupEncrypt { .. } => "group_encrypt",
            Request::GroupDecrypt { .. } => "group_decrypt",
            Request::GroupRotate { .. } => "group_rotate",
        }
    }

    /// Reads one request line. Whatever the line, the error is the one to answer with: an op
    /// nobody knows is [`ErrorKind::Unsupported`], anything else wrong [`ErrorKind::BadRequest`].
    pub fn parse(line: &[u8]) -> Result<Request, PeerError> {
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(line) {
            return Err(PeerError::bad_request(format!("not JSON: {e}")));
        }
        // (serde would also read a struct from a JSON array.)
        if !is_object(line) {
            return Err(PeerError::bad_request("a request is a JSON object"));
        }
        let error = match serde_json::from_slice::<Request>(line) {
            Ok(request) => return Ok(request),
            Err(error) => error,
        };
        #[derive(Deserialize)]
        struct Op {
            op: String,
        }
        match serde_json::from_slice::<Op>(line) {
            Ok(Op { op }) if !Request::OPS.contains(&op.as_str()) => {
                Err(PeerError::unsupported(format!("unknown op {}", printable(&op))))
            }
            Ok(Op { op }) => Err(PeerError::bad_request(format!("{op} request: {error}"))),
            Err(e) => Err(PeerError::bad_request(format!("field op: {e}"))),
        }
    }

    /// The request as one line of JSON, without its newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a request always serializes")
    }
}

/// What a successful request answers, besides `"ok": true`. Which variant answers which op is
/// fixed: [`Response::read`] reads a line as the variant its request calls for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// To `hello`: `impl`, `version`, `suites`, `features`.
    Hello(Hello),
    /// To `bundle`: `bundle`.
    Bundle {
        /// The bundle handed out.
        bundle: Bundle,
    },
    /// To `encrypt`: `type` and `ciphertext`.
    Encrypted {
        /// Whether a prekey or a signal message was written.
        #[serde(rename = "type")]
        kind: MessageType,
        /// The wire bytes.
        ciphertext: Hex,
    },
    /// To `decrypt` and `group_decrypt`: `plaintext`.
    Plaintext {
        /// The message read.
        plaintext: Hex,
    },
    /// To `group_distribution` and `group_rotate`: `distribution`.
    Distribution {
        /// The SenderKeyDistributionMessage's wire bytes.
        distribution: Hex,
    },
    /// To `group_encrypt`: `ciphertext`.
    GroupCiphertext {
        /// The SenderKeyMessage's wire bytes.
        ciphertext: Hex,
    },
    /// To `create`, `process_bundle` and `group_process`: nothing more.
    Done,
}

/// One response line: `{"ok":true, …the reply's fields}` or
/// `{"ok":false,"error":KIND,"detail":TEXT}`.
// One response lives at a time, so a bundle's size in the enum costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The request succeeded.
    Ok(Reply),
    /// The request failed.
    Err(PeerError),
}

impl From<Result<Reply, PeerError>> for Response {
    fn from(result: Result<Reply, PeerError>) -> Self {
        match result {
            Ok(reply) => Response::Ok(reply),
            Err(error) => Response::Err(error),
        }
    }
}

impl From<Response> for Result<Reply, PeerError> {
    fn from(response: Response) -> Self {
        match response {
            Response::Ok(reply) => Ok(reply),
            Response::Err(error) => Err(error),
        }
    }
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Success<'a> {
            ok: bool,
            #[serde(flatten)]
            reply: &'a Reply,
        }
        #[derive(Serialize)]
        struct Failure<'a> {
            ok: bool,
            error: ErrorKind,
            detail: &'a str,
        }
        match self {
            Response::Ok(reply) => Success { ok: true, reply }.serialize(serializer),
            Response::Err(error) => Failure { ok: false, error: error.kind, detail: &error.detail }.serialize(serializer),
        }
    }
}

/// A response line that does not follow the protocol.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// The line is not JSON at all.
    #[error("not JSON ({0})")]
    NotJson(#[source] serde_json::Error),
    /// The line is JSON but no response: not an object, or no boolean `ok`.
    #[error("no object with a boolean \"ok\" ({0})")]
    NoStatus(#[source] serde_json::Error),
    /// A success without the fields its op answers with.
    #[error("not an answer to {op} ({source})")]
    Fields {
        /// The op answered.
        op: &'static str,
        /// What serde found missing or wrong.
        #[source]
        source: serde_json::Error,
    },
    /// A failure whose `error` is no kind of the protocol (or missing).
    #[error("error kind {0:?} is not one of the protocol's")]
    UnknownErrorKind(String),
}

impl Response {
    /// Reads the line a peer answered to `request`.
    pub fn read(request: &Request, line: &str) -> Result<Response, ResponseError> {
        #[derive(Deserialize)]
        struct Bundled {
            bundle: Bundle,
        }
        #[derive(Deserialize)]
        struct Encrypted {
            #[serde(rename = "type")]
            kind: MessageType,
            ciphertext: Hex,
        }
        #[derive(Deserialize)]
        struct Plaintext {
            plaintext: Hex,
        }
        #[derive(Deserialize)]
        struct Distribution {
            distribution: Hex,
        }
        #[derive(Deserialize)]
        struct GroupCiphertext {
            ciphertext: Hex,
        }
        if let Err(error) = Self::read_status(line)? {
            return Ok(Response::Err(error));
        }
        let fields = |source| ResponseError::Fields { op: request.op(), source };
        let reply = match request {
            Request::Hello => Reply::Hello(serde_json::from_str(line).map_err(fields)?),
            Request::Create { .. } | Request::ProcessBundle { .. } | Request::GroupProcess { .. } => Reply::Done,
            Request::Bundle { .. } => {
                let Bundled { bundle } = serde_json::from_str(line).map_err(fields)?;
                Reply::Bundle { bundle }
            }
            Request::Encrypt { .. } => {
                let Encrypted { kind, ciphertext } = serde_json::from_str(line).map_err(fields)?;
                Reply::Encrypted { kind, ciphertext }
            }
            Request::Decrypt { .. } | Request::GroupDecrypt { .. } => {
                let Plaintext { plaintext } = serde_json::from_str(line).map_err(fields)?;
                Reply::Plaintext { plaintext }
            }
            Request::GroupDistribution { .. } | Request::GroupRotate { .. } => {
                let Distribution { distribution } = serde_json::from_str(line).map_err(fields)?;
                Reply::Distribution { distribution }
            }
            Request::GroupEncrypt { .. } => {
                let GroupCiphertext { ciphertext } = serde_json::from_str(line).map_err(fields)?;
                Reply::GroupCiphertext { ciphertext }
            }
        };
        Ok(Response::Ok(reply))
    }

    /// Reads only whether a response line says success, or which error — for answers to lines
    /// that are not requests (the runner's hostile ones), which have no op to read them by.
    pub fn read_status(line: &str) -> Result<Result<(), PeerError>, ResponseError> {
        #[derive(Deserialize)]
        struct Status {
            ok: bool,
            #[serde(default)]
            error: Option<String>,
            #[serde(default)]
            detail: Option<String>,
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(line) {
            return Err(ResponseError::NotJson(e));
        }
        if !is_object(line.as_bytes()) {
            return Err(ResponseError::NoStatus(de::Error::custom("not a JSON object")));
        }
        let status: Status = serde_json::from_str(line).map_err(ResponseError::NoStatus)?;
        if status.ok {
            return Ok(Ok(()));
        }
        let name = status.error.unwrap_or_default();
        let kind = ErrorKind::from_name(&name).ok_or(ResponseError::UnknownErrorKind(name))?;
        Ok(Err(PeerError::new(kind, status.detail.unwrap_or_default())))
    }

    /// The response as one line of JSON, without its newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a response always serializes")
    }
}

/// Whether a line of valid JSON holds an object.
fn is_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn value(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn requests_read_and_write_the_wire_format() {
        let cases = [
            (json!({"op":"hello"}), Request::Hello),
            (
                json!({"op":"create","party":"p","registration_id":7,"device_id":2,"prekeys":40}),
                Request::Create { party: "p".into(), registration_id: 7, device_id: 2, prekeys: 40 },
            ),
            (
                json!({"op":"decrypt","party":"p","peer":"q","type":"prekey","ciphertext":"33ff"}),
                Request::Decrypt { party: "p".into(), peer: "q".into(), kind: MessageType::Prekey, ciphertext: Hex(vec![0x33, 0xff]) },
            ),
            (
                json!({"op":"group_process","party":"p","group":"g","sender":"q","distribution":"00"}),
                Request::GroupProcess { party: "p".into(), group: "g".into(), sender: "q".into(), distribution: Hex(vec![0]) },
            ),
        ];
        for (wire, request) in cases {
            assert_eq!(Request::parse(wire.to_string().as_bytes()).unwrap(), request);
            assert_eq!(value(&request.to_line()), wire);
        }
    }

    #[test]
    fn malformed_requests_get_the_kinds_of_the_contract() {
        let kind = |line: &str| Request::parse(line.as_bytes()).unwrap_err().kind;
        assert_eq!(kind("garbage"), ErrorKind::BadRequest);
        assert_eq!(kind("[1]"), ErrorKind::BadRequest);
        assert_eq!(kind(r#"["hello"]"#), ErrorKind::BadRequest);
        assert_eq!(kind("{}"), ErrorKind::BadRequest);
        assert_eq!(kind(r#"{"op":42}"#), ErrorKind::BadRequest);
        assert_eq!(kind(r#"{"op":"frobnicate"}"#), ErrorKind::Unsupported);
        assert_eq!(kind(r#"{"op":"create","party":"x"}"#), ErrorKind::BadRequest);
        assert_eq!(kind(r#"{"op":"encrypt","party":"p","peer":"q","plaintext":"abc"}"#), ErrorKind::BadRequest);
        assert_eq!(kind(r#"{"op":"decrypt","party":"p","peer":"q","type":"pigeon","ciphertext":"00"}"#), ErrorKind::BadRequest);
        let detail = Request::parse(br#"{"op":"create","party":"x"}"#).unwrap_err().detail;
        assert!(detail.contains("registration_id"), "{detail}");
        // Unknown fields are ignored.
        assert_eq!(Request::parse(br#"{"op":"hello","extra":[1,2]}"#).unwrap(), Request::Hello);
    }

    #[test]
    fn responses_read_and_write_the_wire_format() {
        let encrypt = Request::Encrypt { party: "p".into(), peer: "q".into(), plaintext: Hex(vec![1]) };
        let sent = Response::Ok(Reply::Encrypted { kind: MessageType::Signal, ciphertext: Hex(vec![0x33, 1]) });
        assert_eq!(value(&sent.to_line()), json!({"ok":true,"type":"signal","ciphertext":"3301"}));
        assert_eq!(Response::read(&encrypt, &sent.to_line()).unwrap(), sent);

        let done = Response::Ok(Reply::Done);
        assert_eq!(value(&done.to_line()), json!({"ok":true}));
        let create = Request::Create { party: "p".into(), registration_id: 1, device_id: 1, prekeys: 0 };
        assert_eq!(Response::read(&create, r#"{"ok":true}"#).unwrap(), done);

        let hello = Reply::Hello(Hello {
            implementation: "x".into(),
            version: "1".into(),
            suites: vec!["signal-v3".into()],
            features: vec!["session".into()],
        });
        let line = Response::Ok(hello.clone()).to_line();
        assert_eq!(value(&line), json!({"ok":true,"impl":"x","version":"1","suites":["signal-v3"],"features":["session"]}));
        assert_eq!(Response::read(&Request::Hello, &line).unwrap(), Response::Ok(hello));

        let failed = Response::Err(PeerError::new(ErrorKind::Duplicate, "again"));
        assert_eq!(value(&failed.to_line()), json!({"ok":false,"error":"duplicate","detail":"again"}));
        assert_eq!(Response::read(&encrypt, &failed.to_line()).unwrap(), failed);
    }

    #[test]
    fn responses_that_break_the_contract_are_told_apart() {
        let encrypt = Request::Encrypt { party: "p".into(), peer: "q".into(), plaintext: Hex(vec![1]) };
        let read = |line| Response::read(&encrypt, line).unwrap_err();
        assert!(matches!(read("not json"), ResponseError::NotJson(_)));
        assert!(matches!(read("[true]"), ResponseError::NoStatus(_)));
        assert!(matches!(read(r#"{"okay":true}"#), ResponseError::NoStatus(_)));
        assert!(matches!(read(r#"{"ok":true,"type":"signal"}"#), ResponseError::Fields { op: "encrypt", .. }));
        assert!(matches!(read(r#"{"ok":true,"type":"signal","ciphertext":"0"}"#), ResponseError::Fields { .. }));
        assert!(matches!(read(r#"{"ok":false,"error":"oops"}"#), ResponseError::UnknownErrorKind(_)));
    }

    #[test]
    fn bundles_round_trip_and_ignore_unknown_fields() {
        let line = r#"{"suite":"signal-v3","registration_id":1,"device_id":2,"identity_key":"05aa","signed_prekey_id":3,
            "signed_prekey":"05bb","signed_prekey_signature":"cc","prekey_id":null,"prekey":null,"future_field":1}"#;
        let bundle: Bundle = serde_json::from_str(line).unwrap();
        assert_eq!(bundle.identity_key, Hex(vec![5, 0xaa]));
        assert_eq!(bundle.prekey, None);
        let written = serde_json::to_value(&bundle).unwrap();
        assert_eq!(written["prekey_id"], Value::Null);
        assert!(written.get("kyber_prekey").is_none() && written.get("future_field").is_none());
    }
}
