//! A toy peer: a new implementation of the peer protocol, following `docs/PEER_PROTOCOL.md`, as
//! someone plugging their own session library into the conformance runner would write one. The library here is `switchboard-session`, through its public API only; the JSON is read
//! and written by hand with `serde_json`, without the `switchboard-peer` types that this
//! repository's own peers share. It speaks `signal-v3`, with sessions and groups.
//!
//! Build and hold it against this project's peer:
//!
//! ```sh
//! cargo build -p switchboard --bin switchboard && cargo build -p switchboard-peer --example toy_peer
//! target/debug/switchboard conformance --a target/debug/examples/toy_peer --b 'target/debug/switchboard peer' --seed 1
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufWriter, Write};

use rand::rngs::StdRng;
use serde_json::{Map, Value, json};
use switchboard_session::group::{self, InMemorySenderKeyStore, SenderKeyDistributionMessage, SenderKeyMessage};
use switchboard_session::prekey::{PreKeyRecord, SignedPreKeyRecord};
use switchboard_session::store::{PreKeyStore, SignedPreKeyStore};
use switchboard_session::{
    CiphertextMessage, Error, IdentityKeyPair, InMemoryStore, MessageKind, PreKeyBundle, ProtocolAddress,
    PublicKey, Suite, session,
};

/// Request lines longer than this are refused (the contract allows at most 16 MiB).
const MAX_LINE: usize = 4 * 1024 * 1024;
/// Remote parties are known by name; every address uses this device id.
const DEVICE: u32 = 1;
const SUITE: &str = "signal-v3";

/// A failed request: the error kind and a sentence.
struct Refusal(&'static str, String);

type Answer = Result<Map<String, Value>, Refusal>;

fn bad(detail: impl Into<String>) -> Refusal {
    Refusal("bad_request", detail.into())
}

/// The error kind for each library error, as the kinds table of the contract describes them.
fn refusal(error: Error) -> Refusal {
    let kind = match &error {
        Error::Duplicate { .. } | Error::ReplayedFirstMessage => "duplicate",
        Error::TooFarAhead { .. } => "too_far_ahead",
        Error::UntrustedIdentity { .. } => "untrusted_identity",
        Error::InvalidKey(_) => "invalid_key",
        Error::NoSession { .. } | Error::NoSenderKey { .. } => "no_session",
        Error::UnsupportedSuite(_) => "unsupported",
        _ => "invalid_message",
    };
    Refusal(kind, error.to_string())
}

/// One device.
struct Party {
    store: InMemoryStore,
    sender_keys: InMemorySenderKeyStore,
    me: ProtocolAddress,
    identity: PublicKey,
    registration_id: u32,
    device_id: u32,
    signed_prekey: SignedPreKeyRecord,
    /// One-time prekeys not handed out yet, in id order.
    unused: std::collections::VecDeque<(u32, PublicKey)>,
}

struct Toy {
    parties: HashMap<String, Party>,
    rng: StdRng,
}

fn field<'a>(request: &'a Map<String, Value>, name: &str) -> Result<&'a Value, Refusal> {
    request.get(name).ok_or_else(|| bad(format!("missing field {name}")))
}

fn text<'a>(request: &'a Map<String, Value>, name: &str) -> Result<&'a str, Refusal> {
    field(request, name)?.as_str().ok_or_else(|| bad(format!("field {name} must be a string")))
}

fn number(value: &Value, name: &str) -> Result<u32, Refusal> {
    value.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| bad(format!("field {name} must be an integer from 0 to 2^32-1")))
}

fn bytes(request: &Map<String, Value>, name: &str) -> Result<Vec<u8>, Refusal> {
    hex::decode(text(request, name)?).map_err(|e| bad(format!("field {name}: not hex ({e})")))
}

fn ok() -> Answer {
    Ok(Map::new())
}

fn ok_with(name: &str, value: Value) -> Answer {
    let mut map = Map::new();
    map.insert(name.to_owned(), value);
    Ok(map)
}

/// The party a request names.
fn party<'a>(parties: &'a mut HashMap<String, Party>, request: &Map<String, Value>) -> Result<&'a mut Party, Refusal> {
    let name = text(request, "party")?;
    parties.get_mut(name).ok_or_else(|| Refusal("unknown_party", format!("no party named {name:?}")))
}

impl Toy {

    fn answer(&mut self, request: &Map<String, Value>) -> Answer {
        let op = text(request, "op")?;
        match op {
            "hello" => {
                let mut map = Map::new();
                map.insert("impl".into(), json!("toy"));
                map.insert("version".into(), json!("0.1"));
                map.insert("suites".into(), json!([SUITE]));
                map.insert("features".into(), json!(["session", "group"]));
                Ok(map)
            }
            "create" => self.create(request),
            "bundle" => self.bundle(request),
            "process_bundle" => self.process_bundle(request),
            "encrypt" => {
                let peer = ProtocolAddress::new(text(request, "peer")?, DEVICE);
                let plaintext = bytes(request, "plaintext")?;
                let party = party(&mut self.parties, request)?;
                let message = session::encrypt(&mut party.store, &peer, &plaintext).map_err(refusal)?;
                let kind = match message.kind() {
                    MessageKind::PreKey => "prekey",
                    MessageKind::Signal => "signal",
                };
                let mut map = Map::new();
                map.insert("type".into(), json!(kind));
                map.insert("ciphertext".into(), json!(hex::encode(message.serialize())));
                Ok(map)
            }
            "decrypt" => {
                let peer = ProtocolAddress::new(text(request, "peer")?, DEVICE);
                let kind = match text(request, "type")? {
                    "prekey" => MessageKind::PreKey,
                    "signal" => MessageKind::Signal,
                    other => return Err(bad(format!("unknown message type {other:?}"))),
                };
                let ciphertext = bytes(request, "ciphertext")?;
                let message = CiphertextMessage::parse(kind, &ciphertext).map_err(refusal)?;
                let rng = &mut self.rng;
                let party = party(&mut self.parties, request)?;
                // The library changes nothing when it fails, as the contract requires.
                let plaintext = session::decrypt(&mut party.store, &peer, &message, rng).map_err(refusal)?;
                ok_with("plaintext", json!(hex::encode(plaintext)))
            }
            "group_distribution" | "group_rotate" => {
                let group_id = text(request, "group")?.to_owned();
                let rng = &mut self.rng;
                let party = party(&mut self.parties, request)?;
                let distribution = if op == "group_rotate" {
                    group::rotate(&mut party.sender_keys, &group_id, &party.me, Suite::SignalV3, rng)
                } else {
                    group::create_distribution(&mut party.sender_keys, &group_id, &party.me, Suite::SignalV3, rng)
                }
                .map_err(refusal)?;
                ok_with("distribution", json!(hex::encode(distribution.serialize())))
            }
            "group_process" => {
                let group_id = text(request, "group")?.to_owned();
                let sender = ProtocolAddress::new(text(request, "sender")?, DEVICE);
                let distribution = SenderKeyDistributionMessage::parse(&bytes(request, "distribution")?).map_err(refusal)?;
                let party = party(&mut self.parties, request)?;
                group::process_distribution(&mut party.sender_keys, &group_id, &sender, &distribution).map_err(refusal)?;
                ok()
            }
            "group_encrypt" => {
                let group_id = text(request, "group")?.to_owned();
                let plaintext = bytes(request, "plaintext")?;
                let rng = &mut self.rng;
                let party = party(&mut self.parties, request)?;
                let message = group::encrypt(&mut party.sender_keys, &group_id, &party.me, &plaintext, rng).map_err(refusal)?;
                ok_with("ciphertext", json!(hex::encode(message.serialize())))
            }
            "group_decrypt" => {
                let group_id = text(request, "group")?.to_owned();
                let sender = ProtocolAddress::new(text(request, "sender")?, DEVICE);
                let message = SenderKeyMessage::parse(&bytes(request, "ciphertext")?).map_err(refusal)?;
                let party = party(&mut self.parties, request)?;
                let plaintext = group::decrypt(&mut party.sender_keys, &group_id, &sender, &message).map_err(refusal)?;
                ok_with("plaintext", json!(hex::encode(plaintext)))
            }
            other => Err(Refusal("unsupported", format!("unknown op {:?}", other.chars().take(40).collect::<String>()))),
        }
    }

    fn create(&mut self, request: &Map<String, Value>) -> Answer {
        let name = text(request, "party")?.to_owned();
        let registration_id = number(field(request, "registration_id")?, "registration_id")?;
        let device_id = number(field(request, "device_id")?, "device_id")?;
        let prekeys = number(field(request, "prekeys")?, "prekeys")?;
        if name.is_empty() || name.len() > 256 || self.parties.contains_key(&name) {
            return Err(bad(format!("party name {name:?} is empty, too long or taken")));
        }
        if prekeys > 1000 {
            return Err(bad("at most 1000 prekeys"));
        }
        let rng = &mut self.rng;
        let identity = IdentityKeyPair::generate(rng);
        let mut store = InMemoryStore::new(identity.clone(), registration_id);
        let signed_prekey = SignedPreKeyRecord::generate(1, &identity, 0, rng);
        store.save_signed_prekey(signed_prekey.clone()).map_err(refusal)?;
        let mut unused = std::collections::VecDeque::new();
        for id in 1..=prekeys {
            let prekey = PreKeyRecord::generate(id, rng);
            unused.push_back((id, prekey.key_pair.public));
            store.save_prekey(prekey).map_err(refusal)?;
        }
        let me = ProtocolAddress::new(&name, DEVICE);
        let party = Party {
            store,
            sender_keys: InMemorySenderKeyStore::default(),
            me,
            identity: *identity.identity_key(),
            registration_id,
            device_id,
            signed_prekey,
            unused,
        };
        self.parties.insert(name, party);
        ok()
    }

    fn bundle(&mut self, request: &Map<String, Value>) -> Answer {
        let suite = text(request, "suite")?;
        if suite != SUITE {
            return Err(Refusal("unsupported", format!("suite {suite:?}: this peer speaks {SUITE} only")));
        }
        let party = party(&mut self.parties, request)?;
        let identity = party.identity.serialize();
        let prekey = party.unused.pop_front();
        ok_with(
            "bundle",
            json!({
                "suite": SUITE,
                "registration_id": party.registration_id,
                "device_id": party.device_id,
                "identity_key": hex::encode(identity),
                "signed_prekey_id": party.signed_prekey.id,
                "signed_prekey": hex::encode(party.signed_prekey.key_pair.public.serialize()),
                "signed_prekey_signature": hex::encode(party.signed_prekey.signature),
                "prekey_id": prekey.map(|(id, _)| id),
                "prekey": prekey.map(|(_, key)| hex::encode(key.serialize())),
            }),
        )
    }

    fn process_bundle(&mut self, request: &Map<String, Value>) -> Answer {
        let peer = ProtocolAddress::new(text(request, "peer")?, DEVICE);
        let bundle = field(request, "bundle")?.as_object().ok_or_else(|| bad("field bundle must be an object"))?;
        if text(bundle, "suite")? != SUITE {
            return Err(Refusal("unsupported", format!("this peer speaks {SUITE} only")));
        }
        let key = |name: &str| -> Result<PublicKey, Refusal> {
            PublicKey::from_bytes(&bytes(bundle, name)?).map_err(|e| Refusal("invalid_key", format!("{name}: {e}")))
        };
        let prekey = match (field(bundle, "prekey_id")?, field(bundle, "prekey")?) {
            (Value::Null, Value::Null) => None,
            (id, _) => Some((number(id, "prekey_id")?, key("prekey")?)),
        };
        let bundle = PreKeyBundle {
            registration_id: number(field(bundle, "registration_id")?, "registration_id")?,
            device_id: number(field(bundle, "device_id")?, "device_id")?,
            identity_key: key("identity_key")?,
            signed_prekey_id: number(field(bundle, "signed_prekey_id")?, "signed_prekey_id")?,
            signed_prekey: key("signed_prekey")?,
            signed_prekey_signature: bytes(bundle, "signed_prekey_signature")?,
            prekey,
            // A bundle without the optional suite list offers signal-v3 only, which is all we speak.
            suites: None,
            kem_prekeys: Vec::new(),
        };
        let rng = &mut self.rng;
        let party = party(&mut self.parties, request)?;
        session::process_prekey_bundle(&mut party.store, &peer, &bundle, Suite::SignalV3, rng).map_err(refusal)?;
        ok()
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes; a longer one is read to its end and reported by
/// its length. `None` at the end of input.
fn read_line(input: &mut impl BufRead) -> std::io::Result<Option<Result<Vec<u8>, usize>>> {
    let mut line = Vec::new();
    let mut len = 0;
    loop {
        let buffer = input.fill_buf()?;
        if buffer.is_empty() {
            return Ok(match len {
                0 => None,
                _ if len > MAX_LINE => Some(Err(len)),
                _ => Some(Ok(line)),
            });
        }
        let (chunk, newline) = match buffer.iter().position(|b| *b == b'\n') {
            Some(at) => (&buffer[..at], true),
            None => (buffer, false),
        };
        len += chunk.len();
        if len <= MAX_LINE {
            line.extend_from_slice(chunk);
        }
        let used = chunk.len() + usize::from(newline);
        input.consume(used);
        if newline {
            return Ok(Some(if len > MAX_LINE { Err(len) } else { Ok(line) }));
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut toy = Toy { parties: HashMap::new(), rng: rand::make_rng() };
    let mut input = std::io::stdin().lock();
    let mut output = BufWriter::new(std::io::stdout().lock());
    while let Some(line) = read_line(&mut input)? {
        let answer = match line {
            Err(len) => Err(bad(format!("line of {len} bytes, longer than {MAX_LINE}"))),
            Ok(line) if line.iter().all(u8::is_ascii_whitespace) => continue,
            Ok(line) => match serde_json::from_slice::<Value>(&line) {
                Ok(Value::Object(request)) => toy.answer(&request),
                Ok(_) => Err(bad("a request is a JSON object")),
                Err(e) => Err(bad(format!("not JSON: {e}"))),
            },
        };
        let response = match answer {
            Ok(mut fields) => {
                fields.insert("ok".into(), json!(true));
                Value::Object(fields)
            }
            Err(Refusal(kind, detail)) => json!({"ok": false, "error": kind, "detail": detail}),
        };
        serde_json::to_writer(&mut output, &response)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(())
}
