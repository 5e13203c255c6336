//! The loop every peer runs: read a line, answer it, repeat until end of input. No request can
//! stop it: a line too long is skipped to its end and refused, bad JSON or missing fields get
//! `bad_request`, an unknown op `unsupported`, and even a bug that panics in a backend is caught
//! and answered. Requests and responses are the typed ones of [`crate::protocol`].

use std::io::{BufRead, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::Value;

use crate::protocol::{Bundle, ErrorKind, Hello, MessageType, PeerError, Reply, Request, Response};

/// The longest request line accepted (bytes, newline excluded). Room for 1 MiB messages in hex.
pub const MAX_LINE_LEN: usize = 4 * 1024 * 1024;

/// The detail of the answer to a request that made the backend panic. The conformance runner
/// counts an answer with this detail as a crash, not a refusal.
pub const INTERNAL_ERROR: &str = "internal error while handling the request";

type Result<T> = std::result::Result<T, PeerError>;

/// One implementation of the session protocol, as the peer protocol drives it: one method per
/// op, each returning what the reply carries. Party, peer, group and sender names are the
/// strings of the requests; binary values arrive decoded from hex.
pub trait Backend {
    /// Answers `hello`.
    fn hello(&self) -> Hello;
    /// `create`: a new party with fresh keys and `prekeys` one-time prekeys (ids 1 to `prekeys`).
    fn create(&mut self, party: &str, registration_id: u32, device_id: u32, prekeys: u32) -> Result<()>;
    /// `bundle`: `party`'s bundle for `suite`, handing out its next unused one-time prekey.
    fn bundle(&mut self, party: &str, suite: &str) -> Result<Bundle>;
    /// `process_bundle`: `party` starts a session with `peer` from `peer`'s bundle.
    fn process_bundle(&mut self, party: &str, peer: &str, bundle: &Bundle) -> Result<()>;
    /// `encrypt`: `party` encrypts to `peer`; the kind of message written and its bytes.
    fn encrypt(&mut self, party: &str, peer: &str, plaintext: &[u8]) -> Result<(MessageType, Vec<u8>)>;
    /// `decrypt`: `party` decrypts a message from `peer`. A failure leaves the party as it was.
    fn decrypt(&mut self, party: &str, peer: &str, kind: MessageType, ciphertext: &[u8]) -> Result<Vec<u8>>;
    /// `group_distribution`: `party`'s distribution message for `group`, creating its sender key
    /// if it has none.
    fn group_distribution(&mut self, party: &str, group: &str) -> Result<Vec<u8>>;
    /// `group_process`: `party` takes `sender`'s distribution message for `group`.
    fn group_process(&mut self, party: &str, group: &str, sender: &str, distribution: &[u8]) -> Result<()>;
    /// `group_encrypt`: `party` encrypts to `group` under its sender key.
    fn group_encrypt(&mut self, party: &str, group: &str, plaintext: &[u8]) -> Result<Vec<u8>>;
    /// `group_decrypt`: `party` decrypts `sender`'s message to `group`. A failure leaves the
    /// party as it was.
    fn group_decrypt(&mut self, party: &str, group: &str, sender: &str, ciphertext: &[u8]) -> Result<Vec<u8>>;
    /// `group_rotate`: `party` replaces its sender key for `group`; the new distribution message.
    fn group_rotate(&mut self, party: &str, group: &str) -> Result<Vec<u8>>;
}

/// Serves requests from `input` until it ends, writing one response line per request to `output`
/// (blank lines are skipped without an answer).
pub fn serve(backend: &mut dyn Backend, input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    let mut lines = BoundedLines { input, max: MAX_LINE_LEN };
    while let Some(line) = lines.next_line()? {
        let response = match line {
            Line::TooLong(len) => {
                Response::Err(PeerError::bad_request(format!("request line longer than {MAX_LINE_LEN} bytes ({len})")))
            }
            Line::Complete(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Complete(bytes) => respond(backend, &bytes),
        };
        serde_json::to_writer(&mut output, &response)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(())
}

/// The response to one request line.
pub fn respond(backend: &mut dyn Backend, line: &[u8]) -> Response {
    let request = match Request::parse(line) {
        Ok(request) => request,
        Err(error) => return Response::Err(error),
    };
    match catch_unwind(AssertUnwindSafe(|| dispatch(backend, request))) {
        Ok(result) => result.into(),
        Err(_) => {
            tracing::error!("a request made the backend panic");
            Response::Err(PeerError::new(ErrorKind::InvalidMessage, INTERNAL_ERROR))
        }
    }
}

/// The response to one request line, as a JSON value (what [`serve`] writes for that line).
pub fn answer(backend: &mut dyn Backend, line: &[u8]) -> Value {
    serde_json::to_value(respond(backend, line)).expect("a response always serializes")
}

/// Hands one request to the backend.
pub fn dispatch(backend: &mut dyn Backend, request: Request) -> Result<Reply> {
    Ok(match request {
        Request::Hello => Reply::Hello(backend.hello()),
        Request::Create { party, registration_id, device_id, prekeys } => {
            backend.create(&party, registration_id, device_id, prekeys)?;
            Reply::Done
        }
        Request::Bundle { party, suite } => Reply::Bundle { bundle: backend.bundle(&party, &suite)? },
        Request::ProcessBundle { party, peer, bundle } => {
            backend.process_bundle(&party, &peer, &bundle)?;
            Reply::Done
        }
        Request::Encrypt { party, peer, plaintext } => {
            let (kind, ciphertext) = backend.encrypt(&party, &peer, plaintext.as_bytes())?;
            Reply::Encrypted { kind, ciphertext: ciphertext.into() }
        }
        Request::Decrypt { party, peer, kind, ciphertext } => {
            Reply::Plaintext { plaintext: backend.decrypt(&party, &peer, kind, ciphertext.as_bytes())?.into() }
        }
        Request::GroupDistribution { party, group } => {
            Reply::Distribution { distribution: backend.group_distribution(&party, &group)?.into() }
        }
        Request::GroupProcess { party, group, sender, distribution } => {
            backend.group_process(&party, &group, &sender, distribution.as_bytes())?;
            Reply::Done
        }
        Request::GroupEncrypt { party, group, plaintext } => {
            Reply::GroupCiphertext { ciphertext: backend.group_encrypt(&party, &group, plaintext.as_bytes())?.into() }
        }
        Request::GroupDecrypt { party, group, sender, ciphertext } => {
            Reply::Plaintext { plaintext: backend.group_decrypt(&party, &group, &sender, ciphertext.as_bytes())?.into() }
        }
        Request::GroupRotate { party, group } => {
            Reply::Distribution { distribution: backend.group_rotate(&party, &group)?.into() }
        }
    })
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
