//! The loop every peer runs: read a line, answer it, repeat until end of input. No request can
//! stop it: a line too long is skipped to its end and refused, bad JSON or missing fields get
//! `bad_request`, an unknown op `unsupported`, and even a bug that panics in a backend is caught
//! and answered.

use std::io::{BufRead, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::{Map, Value, json};

use crate::protocol::{Bundle, ErrorKind, Hello, MessageType, PeerError, from_hex};

/// The longest request line accepted (bytes, newline excluded). Room for 1 MiB messages in hex.
pub const MAX_LINE_LEN: usize = 4 * 1024 * 1024;

type Result<T> = std::result::Result<T, PeerError>;

/// One implementation of the session protocol, as the peer protocol drives it. Party, peer,
/// group and sender names are the strings of the requests.
pub trait Backend {
    fn hello(&self) -> Hello;
    fn create(&mut self, party: &str, registration_id: u32, device_id: u32, prekeys: u32) -> Result<()>;
    fn bundle(&mut self, party: &str, suite: &str) -> Result<Bundle>;
    fn process_bundle(&mut self, party: &str, peer: &str, bundle: &Bundle) -> Result<()>;
    fn encrypt(&mut self, party: &str, peer: &str, plaintext: &[u8]) -> Result<(MessageType, Vec<u8>)>;
    fn decrypt(&mut self, party: &str, peer: &str, kind: MessageType, ciphertext: &[u8]) -> Result<Vec<u8>>;
    fn group_distribution(&mut self, party: &str, group: &str) -> Result<Vec<u8>>;
    fn group_process(&mut self, party: &str, group: &str, sender: &str, distribution: &[u8]) -> Result<()>;
    fn group_encrypt(&mut self, party: &str, group: &str, plaintext: &[u8]) -> Result<Vec<u8>>;
    fn group_decrypt(&mut self, party: &str, group: &str, sender: &str, ciphertext: &[u8]) -> Result<Vec<u8>>;
    fn group_rotate(&mut self, party: &str, group: &str) -> Result<Vec<u8>>;
}

/// Serves requests from `input` until it ends, writing one response line per request to `output`.
pub fn serve(backend: &mut dyn Backend, input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    let mut lines = BoundedLines { input, max: MAX_LINE_LEN };
    while let Some(line) = lines.next_line()? {
        let response = match line {
            Line::TooLong(len) => failure(&PeerError::bad_request(format!("request line longer than {MAX_LINE_LEN} bytes ({len})"))),
            Line::Complete(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Complete(bytes) => answer(backend, &bytes),
        };
        serde_json::to_writer(&mut output, &response)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(())
}

/// The response to one request line.
pub fn answer(backend: &mut dyn Backend, line: &[u8]) -> Value {
    let request = match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(request)) => request,
        Ok(_) => return failure(&PeerError::bad_request("a request is a JSON object")),
        Err(e) => return failure(&PeerError::bad_request(format!("not JSON: {e}"))),
    };
    match catch_unwind(AssertUnwindSafe(|| dispatch(backend, &request))) {
        Ok(Ok(mut fields)) => {
            fields.insert("ok".into(), Value::Bool(true));
            Value::Object(fields)
        }
        Ok(Err(error)) => failure(&error),
        Err(_) => {
            tracing::error!("a request made the backend panic");
            failure(&PeerError::new(ErrorKind::InvalidMessage, "internal error while handling the request"))
        }
    }
}

fn failure(error: &PeerError) -> Value {
    json!({ "ok": false, "error": error.kind.name(), "detail": error.detail })
}

fn dispatch(backend: &mut dyn Backend, request: &Map<String, Value>) -> Result<Map<String, Value>> {
    let op = string(request, "op")?;
    let ok = Map::new;
    let with = |key: &str, value: Value| {
        let mut map = Map::new();
        map.insert(key.into(), value);
        map
    };
    match op {
        "hello" => match serde_json::to_value(backend.hello()) {
            Ok(Value::Object(fields)) => Ok(fields),
            _ => Err(PeerError::bad_request("hello could not be written")),
        },
        "create" => {
            backend.create(
                string(request, "party")?,
                number(request, "registration_id")?,
                number(request, "device_id")?,
                number(request, "prekeys")?,
            )?;
            Ok(ok())
        }
        "bundle" => {
            let bundle = backend.bundle(string(request, "party")?, string(request, "suite")?)?;
            let value = serde_json::to_value(bundle).map_err(|e| PeerError::bad_request(e.to_string()))?;
            Ok(with("bundle", value))
        }
        "process_bundle" => {
            let bundle: Bundle = serde_json::from_value(field(request, "bundle")?.clone())
                .map_err(|e| PeerError::bad_request(format!("field bundle: {e}")))?;
            backend.process_bundle(string(request, "party")?, string(request, "peer")?, &bundle)?;
            Ok(ok())
        }
        "encrypt" => {
            let (kind, ciphertext) =
                backend.encrypt(string(request, "party")?, string(request, "peer")?, &bytes(request, "plaintext")?)?;
            let mut fields = with("ciphertext", Value::String(hex::encode(ciphertext)));
            fields.insert("type".into(), serde_json::to_value(kind).expect("a unit variant serializes"));
            Ok(fields)
        }
        "decrypt" => {
            let kind: MessageType = serde_json::from_value(field(request, "type")?.clone())
                .map_err(|_| PeerError::bad_request("field type: \"prekey\" or \"signal\""))?;
            let plaintext =
                backend.decrypt(string(request, "party")?, string(request, "peer")?, kind, &bytes(request, "ciphertext")?)?;
            Ok(with("plaintext", Value::String(hex::encode(plaintext))))
        }
        "group_distribution" => {
            let distribution = backend.group_distribution(string(request, "party")?, string(request, "group")?)?;
            Ok(with("distribution", Value::String(hex::encode(distribution))))
        }
        "group_process" => {
            backend.group_process(
                string(request, "party")?,
                string(request, "group")?,
                string(request, "sender")?,
                &bytes(request, "distribution")?,
            )?;
            Ok(ok())
        }
        "group_encrypt" => {
            let ciphertext =
                backend.group_encrypt(string(request, "party")?, string(request, "group")?, &bytes(request, "plaintext")?)?;
            Ok(with("ciphertext", Value::String(hex::encode(ciphertext))))
        }
        "group_decrypt" => {
            let plaintext = backend.group_decrypt(
                string(request, "party")?,
                string(request, "group")?,
                string(request, "sender")?,
                &bytes(request, "ciphertext")?,
            )?;
            Ok(with("plaintext", Value::String(hex::encode(plaintext))))
        }
        "group_rotate" => {
            let distribution = backend.group_rotate(string(request, "party")?, string(request, "group")?)?;
            Ok(with("distribution", Value::String(hex::encode(distribution))))
        }
        other => Err(PeerError::unsupported(format!("unknown op {}", crate::protocol::printable(other)))),
    }
}

fn field<'a>(request: &'a Map<String, Value>, name: &str) -> Result<&'a Value> {
    request.get(name).ok_or_else(|| PeerError::bad_request(format!("missing field {name}")))
}

fn string<'a>(request: &'a Map<String, Value>, name: &str) -> Result<&'a str> {
    field(request, name)?.as_str().ok_or_else(|| PeerError::bad_request(format!("field {name} must be a string")))
}

fn number(request: &Map<String, Value>, name: &str) -> Result<u32> {
    field(request, name)?
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| PeerError::bad_request(format!("field {name} must be an integer from 0 to 2^32-1")))
}

fn bytes(request: &Map<String, Value>, name: &str) -> Result<Vec<u8>> {
    from_hex(name, string(request, name)?)
}

enum Line {
    Complete(Vec<u8>),
    TooLong(usize),
}

/// Lines of at most `max` bytes; a longer line is consumed to its end without being kept.
struct BoundedLines<R> {
    input: R,
    max: usize,
}

impl<R: BufRead> BoundedLines<R> {
    fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        let mut line = Vec::new();
        let mut len = 0usize;
        loop {
            let buffer = self.input.fill_buf()?;
            if buffer.is_empty() {
                return Ok(match len {
                    0 => None,
                    _ if len > self.max => Some(Line::TooLong(len)),
                    _ => Some(Line::Complete(line)),
                });
            }
            let (chunk, found_newline) = match buffer.iter().position(|b| *b == b'\n') {
                Some(at) => (&buffer[..at], true),
                None => (buffer, false),
            };
            len += chunk.len();
            if len <= self.max {
                line.extend_from_slice(chunk);
            } else {
                line = Vec::new();
            }
            let consumed = chunk.len() + usize::from(found_newline);
            self.input.consume(consumed);
            if found_newline {
                return Ok(Some(if len > self.max { Line::TooLong(len) } else { Line::Complete(line) }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switchboard::SwitchboardBackend;
    use switchboard_session::Suite;

    fn run(input: &[u8]) -> Vec<Value> {
        let mut backend = SwitchboardBackend::new(Suite::SignalV3, Some(1), None);
        let mut output = Vec::new();
        serve(&mut backend, input, &mut output).unwrap();
        output.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
    }

    fn kinds(responses: &[Value]) -> Vec<&str> {
        responses.iter().map(|r| r["error"].as_str().unwrap_or("ok")).collect()
    }

    #[test]
    fn every_request_gets_exactly_one_answer_and_the_peer_keeps_serving() {
        let mut input = Vec::new();
        input.extend_from_slice(b"garbage\n[]\n{}\n{\"op\":42}\n{\"op\":\"nope\"}\n");
        input.extend_from_slice(b"{\"op\":\"create\",\"party\":\"p\",\"registration_id\":1,\"device_id\":1,\"prekeys\":1}\n");
        input.extend_from_slice(b"{\"op\":\"create\",\"party\":\"p\",\"registration_id\":1,\"device_id\":1,\"prekeys\":1}\n");
        input.extend_from_slice(b"{\"op\":\"create\",\"party\":\"q\",\"registration_id\":-1,\"device_id\":1,\"prekeys\":1}\n");
        input.extend_from_slice(b"{\"op\":\"create\",\"party\":\"q\",\"registration_id\":1,\"device_id\":1,\"prekeys\":99999999}\n");
        input.extend_from_slice(b"{\"op\":\"encrypt\",\"party\":\"p\",\"peer\":\"x\",\"plaintext\":\"0\"}\n");
        input.extend_from_slice(b"{\"op\":\"encrypt\",\"party\":\"p\",\"peer\":\"x\",\"plaintext\":\"00\"}\n");
        input.extend_from_slice(b"{\"op\":\"encrypt\",\"party\":\"ghost\",\"peer\":\"x\",\"plaintext\":\"00\"}\n");
        input.extend_from_slice(b"{\"op\":\"bundle\",\"party\":\"p\",\"suite\":\"rot13\"}\n");
        input.extend_from_slice(b"{\"op\":\"group_decrypt\",\"party\":\"p\",\"group\":\"g\",\"sender\":\"x\",\"ciphertext\":\"33\"}\n");
        input.extend_from_slice(b"\n   \n{\"op\":\"hello\"}");
        let responses = run(&input);
        assert_eq!(
            kinds(&responses),
            [
                "bad_request", "bad_request", "bad_request", "bad_request", "unsupported", "ok", "bad_request",
                "bad_request", "bad_request", "bad_request", "no_session", "unknown_party", "unsupported",
                "invalid_message", "ok",
            ]
        );
        assert!(responses.iter().all(|r| r["ok"].is_boolean()));
        assert_eq!(responses.last().unwrap()["impl"], "switchboard");
    }

    #[test]
    fn an_overlong_line_is_refused_without_being_kept_and_the_next_line_is_served() {
        let mut input = b"{\"op\":\"encrypt\",\"plaintext\":\"".to_vec();
        input.resize(input.len() + MAX_LINE_LEN + 10, b'0');
        input.extend_from_slice(b"\"}\n{\"op\":\"hello\"}\n");
        let responses = run(&input);
        assert_eq!(kinds(&responses), ["bad_request", "ok"]);
    }

    #[test]
    fn two_peers_talk_through_the_protocol() {
        let mut alice = SwitchboardBackend::new(Suite::Aes256Gcm, Some(2), None);
        let mut bob = SwitchboardBackend::new(Suite::Aes256Gcm, Some(3), None);
        let ask = |backend: &mut SwitchboardBackend, request: Value| answer(backend, request.to_string().as_bytes());
        ask(&mut alice, serde_json::json!({"op":"create","party":"alice","registration_id":1,"device_id":1,"prekeys":0}));
        ask(&mut bob, serde_json::json!({"op":"create","party":"bob","registration_id":2,"device_id":1,"prekeys":3}));
        let bundle = ask(&mut bob, serde_json::json!({"op":"bundle","party":"bob","suite":"aes-256-gcm"}))["bundle"].clone();
        assert_eq!(bundle["prekey_id"], 1);
        let processed = ask(&mut alice, serde_json::json!({"op":"process_bundle","party":"alice","peer":"bob","bundle":bundle}));
        assert_eq!(processed["ok"], true);
        let sent = ask(&mut alice, serde_json::json!({"op":"encrypt","party":"alice","peer":"bob","plaintext":"cafe"}));
        assert_eq!(sent["type"], "prekey");
        assert_eq!(sent["ciphertext"].as_str().unwrap()[..2], *"a1");
        let read = ask(
            &mut bob,
            serde_json::json!({"op":"decrypt","party":"bob","peer":"alice","type":"prekey","ciphertext":sent["ciphertext"]}),
        );
        assert_eq!(read["plaintext"], "cafe");
    }
}
