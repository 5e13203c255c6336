//! The peer protocol under hostile requests. A fresh [`SwitchboardBackend`] with a fixed seed is
//! set up with two parties, `alice` and `bob`, a session between them (alice started it, bob has
//! read one message) and a group `g` in which each holds the other's sender key. The input is
//! then split into lines, each handed to [`answer`]; when bit 1 of the first byte is set, the same
//! lines also go whole through [`serve`] on a second backend set up the same way.
//!
//! Checks: every answer is one JSON object with a boolean `ok`; a refusal has a known error kind
//! and a string detail; no request makes the backend panic (`answer` catches panics and says
//! "internal error", which the target treats as a crash); `serve` writes exactly one line per
//! request line (blank lines excepted), each the same answer `answer` gave, since both backends
//! are seeded alike.

use serde_json::{Value, json};
use switchboard_peer::serve::{answer, serve};
use switchboard_peer::switchboard::SwitchboardBackend;
use switchboard_session::Suite;

/// Request lines per run, at most (the rest of the input is ignored).
pub const MAX_LINES: usize = 16;

/// The seed of every backend the target makes.
pub const SEED: u64 = 0x9ee7;

const ERROR_KINDS: [&str; 9] = [
    "bad_request",
    "unsupported",
    "unknown_party",
    "no_session",
    "invalid_message",
    "duplicate",
    "too_far_ahead",
    "untrusted_identity",
    "invalid_key",
];

fn ask(backend: &mut SwitchboardBackend, request: Value) -> Value {
    let response = answer(backend, request.to_string().as_bytes());
    assert_eq!(response["ok"], true, "setup request {request} failed: {response}");
    response
}

/// A backend with alice, bob, their session and their group, always the same for the same
/// build. The group suite is `aes-256-gcm` when `gcm`.
pub fn backend(gcm: bool) -> SwitchboardBackend {
    let suite = if gcm { Suite::Aes256Gcm } else { Suite::SignalV3 };
    let mut backend = SwitchboardBackend::new(suite, Some(SEED), None);
    ask(&mut backend, json!({"op":"create","party":"alice","registration_id":1,"device_id":1,"prekeys":1}));
    ask(&mut backend, json!({"op":"create","party":"bob","registration_id":2,"device_id":1,"prekeys":2}));
    let bundle = ask(&mut backend, json!({"op":"bundle","party":"bob","suite":suite.name()}))["bundle"].clone();
    ask(&mut backend, json!({"op":"process_bundle","party":"alice","peer":"bob","bundle":bundle}));
    let sent = ask(&mut backend, json!({"op":"encrypt","party":"alice","peer":"bob","plaintext":"6869"}));
    ask(&mut backend, json!({"op":"decrypt","party":"bob","peer":"alice","type":sent["type"],"ciphertext":sent["ciphertext"]}));
    for (party, other) in [("alice", "bob"), ("bob", "alice")] {
        let distribution = ask(&mut backend, json!({"op":"group_distribution","party":party,"group":"g"}))["distribution"].clone();
        ask(&mut backend, json!({"op":"group_process","party":other,"group":"g","sender":party,"distribution":distribution}));
    }
    backend
}

/// Checks one answer to `line`.
fn check(response: &Value, line: &[u8]) {
    let line = String::from_utf8_lossy(line);
    let object = response.as_object().unwrap_or_else(|| panic!("answer is not an object: {response} to {line}"));
    let ok = object.get("ok").and_then(Value::as_bool).unwrap_or_else(|| panic!("answer without boolean ok: {response}"));
    if !ok {
        let kind = object.get("error").and_then(Value::as_str).unwrap_or_else(|| panic!("refusal without error: {response}"));
        assert!(ERROR_KINDS.contains(&kind), "unknown error kind in {response}");
        let detail = object.get("detail").and_then(Value::as_str).unwrap_or_else(|| panic!("refusal without detail: {response}"));
        // `answer` catches a panic and says so in these words (a name in a request cannot make
        // a detail equal to them: names are quoted inside longer sentences).
        assert_ne!(detail, "internal error while handling the request", "the backend panicked on {line:?}");
    }
}

/// Runs one input; panics on a violated expectation.
pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let gcm = flags & 1 == 1;
    // At most MAX_LINES lines, cut at the newline after the last.
    let end = rest.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(MAX_LINES - 1).map_or(rest.len(), |(at, _)| at + 1);
    let input = &rest[..end];

    let mut direct = backend(gcm);
    let mut expected = Vec::new();
    for line in input.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let response = answer(&mut direct, line);
        check(&response, line);
        expected.push(response);
    }

    if flags & 2 == 0 {
        return;
    }
    let mut served = backend(gcm);
    let mut output = Vec::new();
    serve(&mut served, input, &mut output).expect("writing to a Vec never fails");
    assert_eq!(output.last().copied().unwrap_or(b'\n'), b'\n', "serve's output does not end with a newline");
    let lines: Vec<&[u8]> = output.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), expected.len(), "serve did not answer each request line once");
    for (line, expected) in lines.iter().zip(&expected) {
        let response: Value = serde_json::from_slice(line).expect("serve writes JSON");
        assert_eq!(&response, expected, "serve and answer disagree");
    }
}
