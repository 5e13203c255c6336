//! The randomized scenario: a model of who holds which session and what is in flight, actions
//! drawn from the seed, and a check of every outcome against the model.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use super::Config;
use super::checks::Checker;
use super::process::PeerProcess;

const PARTIES_PER_SIDE: usize = 2;
/// A message is delivered from among the oldest WINDOW in flight on its path…
const WINDOW: usize = 4;
/// …and at the latest after being passed over this many times (so that it never falls out of
/// the receiving chains an implementation keeps).
const MAX_PASSED_OVER: u32 = 3;
const MAX_GROUPS: usize = 2;
/// Rotations per group: in-flight messages under older sender keys stay within the 5 states kept.
const MAX_ROTATIONS: u32 = 3;
/// A request line over any sensible limit (the spec's "huge hex").
const HUGE_HEX_LEN: usize = 16 * 1024 * 1024;

struct Party {
    name: String,
    peer: usize,
}

struct Pairwise {
    plaintext: Vec<u8>,
    kind: String,
    ciphertext: Vec<u8>,
    passed_over: u32,
}

struct GroupMessage {
    sender: usize,
    plaintext: Vec<u8>,
    ciphertext: Vec<u8>,
    recipients: Vec<usize>,
    /// Removed before this message was sent: must not read it.
    excluded: Vec<usize>,
}

struct Group {
    id: String,
    members: Vec<usize>,
    removed: Vec<usize>,
    rotations: u32,
    in_flight: Vec<GroupMessage>,
}

enum Delivery {
    Normal,
    Drop,
    Tamper,
    Duplicate,
}

pub struct Scenario<'r, 'o> {
    suite: String,
    rounds: u32,
    peers: [PeerProcess; 2],
    checker: &'r mut Checker<'o>,
    rng: StdRng,
    parties: Vec<Party>,
    /// (x, y): x holds a session with y and can encrypt to it.
    sessions: BTreeSet<(usize, usize)>,
    /// (x, y): x started the session and has not yet read a reply from y.
    awaiting_reply: BTreeSet<(usize, usize)>,
    in_flight: BTreeMap<(usize, usize), Vec<Pairwise>>,
    groups: Vec<Group>,
    groups_supported: bool,
    dead: bool,
}

impl<'r, 'o> Scenario<'r, 'o> {
    pub fn new(config: &Config, peers: [PeerProcess; 2], checker: &'r mut Checker<'o>) -> Self {
        Scenario {
            suite: config.suite.clone(),
            rounds: config.rounds,
            peers,
            checker,
            rng: StdRng::seed_from_u64(config.seed),
            parties: Vec::new(),
            sessions: BTreeSet::new(),
            awaiting_reply: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            groups: Vec::new(),
            groups_supported: false,
            dead: false,
        }
    }

    pub fn play(mut self) {
        if !self.greet() {
            return;
        }
        self.create_parties();
        for peer in 0..2 {
            self.hostile_requests(peer, true);
        }
        for _ in 0..self.rounds {
            if self.dead {
                return;
            }
            self.round();
        }
        self.drain();
    }

    // ---- requests -------------------------------------------------------------------------

    fn call(&mut self, peer: usize, request: &Value) -> Option<Value> {
        let result = self.peers[peer].request(request);
        self.answer(peer, result)
    }

    fn answer(&mut self, peer: usize, result: Result<Value, String>) -> Option<Value> {
        match result {
            Ok(response) => Some(response),
            Err(problem) => {
                let label = self.peers[peer].label;
                self.checker.check(false, || format!("peer {label} failed: {problem}"));
                self.dead = true;
                None
            }
        }
    }

    /// Sends `request` to `peer` and checks it succeeds; returns the response.
    fn expect_ok(&mut self, peer: usize, request: &Value, what: &str) -> Option<Value> {
        let response = self.call(peer, request)?;
        let ok = response["ok"] == true;
        let label = self.peers[peer].label;
        self.checker.check(ok, || format!("{label} {what}: expected success, got {}", error_of(&response)));
        ok.then_some(response)
    }

    /// Sends `line` to `peer` and checks it fails with one of `kinds` (any kind when empty).
    fn expect_error_line(&mut self, peer: usize, line: &str, kinds: &[&str], what: &str) {
        let result = self.peers[peer].send_line(line);
        let Some(response) = self.answer(peer, result) else { return };
        let kind = response["error"].as_str().unwrap_or("");
        // A refusal that came from a caught panic is a crash the peer survived, not a refusal.
        let crashed = response["detail"].as_str().is_some_and(|d| d.contains("internal error"));
        let passed = response["ok"] == false && !crashed && (kinds.is_empty() || kinds.contains(&kind));
        let label = self.peers[peer].label;
        self.checker.check(passed, || {
            let expected = if kinds.is_empty() { "any error".to_owned() } else { kinds.join(" or ") };
            format!("{label} {what}: expected {expected}, got {}", error_of(&response))
        });
    }

    fn expect_error(&mut self, peer: usize, request: &Value, kinds: &[&str], what: &str) {
        self.expect_error_line(peer, &request.to_string(), kinds, what);
    }

    // ---- set-up ---------------------------------------------------------------------------

    fn greet(&mut self) -> bool {
        let mut group_features = 0;
        for peer in 0..2 {
            let Some(hello) = self.expect_ok(peer, &json!({"op": "hello"}), "hello") else { return false };
            let suites: Vec<&str> = hello["suites"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let label = self.peers[peer].label;
            let suite = self.suite.clone();
            if !self.checker.check(suites.contains(&suite.as_str()), || {
                format!("{label} does not support suite {suite} (it offers {suites:?})")
            }) {
                return false;
            }
            let features = hello["features"].as_array().into_iter().flatten().filter_map(Value::as_str);
            if features.into_iter().any(|f| f == "group") {
                group_features += 1;
            }
        }
        self.groups_supported = group_features == 2;
        true
    }

    fn create_parties(&mut self) {
        for peer in 0..2 {
            for i in 0..PARTIES_PER_SIDE {
                let name = format!("{}{i}", ["a", "b"][peer]);
                let request = json!({
                    "op": "create", "party": name, "registration_id": self.rng.random_range(1..16380u32),
                    "device_id": 1, "prekeys": 40,
                });
                self.expect_ok(peer, &request, &format!("create {name}"));
                self.parties.push(Party { name, peer });
            }
        }
    }

    // ---- one round ------------------------------------------------------------------------

    fn round(&mut self) {
        let roll = self.rng.random_range(0..100);
        match roll {
            0..10 => self.start_session(),
            10..40 => self.send(),
            40..68 => self.deliver(),
            68..71 => self.create_group(),
            71..81 => self.group_send(),
            81..95 => self.group_deliver(),
            95..97 => self.remove_from_group(),
            _ => {
                let peer = self.rng.random_range(0..2);
                self.hostile_requests(peer, false);
            }
        }
    }

    fn start_session(&mut self) {
        let candidates: Vec<(usize, usize)> = (0..self.parties.len())
            .flat_map(|x| (0..self.parties.len()).map(move |y| (x, y)))
            .filter(|&(x, y)| self.parties[x].peer != self.parties[y].peer)
            .filter(|&(x, y)| !self.sessions.contains(&(x, y)) && !self.sessions.contains(&(y, x)))
            .collect();
        let Some(&(x, y)) = candidates.choose(&mut self.rng) else { return self.send() };
        let (xn, yn) = (self.parties[x].name.clone(), self.parties[y].name.clone());
        let request = json!({"op": "bundle", "party": yn, "suite": self.suite});
        let Some(response) = self.expect_ok(self.parties[y].peer, &request, &format!("bundle of {yn}")) else { return };
        let request = json!({"op": "process_bundle", "party": xn, "peer": yn, "bundle": response["bundle"]});
        if self.expect_ok(self.parties[x].peer, &request, &format!("process_bundle {xn} ← bundle of {yn}")).is_some() {
            self.sessions.insert((x, y));
            self.awaiting_reply.insert((x, y));
        }
    }

    fn plaintext(&mut self) -> Vec<u8> {
        let len = match self.rng.random_range(0..20) {
            0 => 0,
            1 => self.rng.random_range(1000..5000),
            _ => self.rng.random_range(1..200),
        };
        (0..len).map(|_| self.rng.random()).collect()
    }

    fn send(&mut self) {
        let sessions: Vec<_> = self.sessions.iter().copied().collect();
        let Some(&(x, y)) = sessions.choose(&mut self.rng) else { return };
        let plaintext = self.plaintext();
        let (xn, yn) = (self.parties[x].name.clone(), self.parties[y].name.clone());
        let request = json!({"op": "encrypt", "party": xn, "peer": yn, "plaintext": hex::encode(&plaintext)});
        let what = format!("encrypt {xn} → {yn}");
        let Some(response) = self.expect_ok(self.parties[x].peer, &request, &what) else { return };
        let kind = response["type"].as_str().unwrap_or("").to_owned();
        let expected = if self.awaiting_reply.contains(&(x, y)) { "prekey" } else { "signal" };
        let label = self.peers[self.parties[x].peer].label;
        self.checker.check(kind == expected, || format!("{label} {what}: expected a {expected} message, got type {kind:?}"));
        let Some(ciphertext) = response["ciphertext"].as_str().and_then(|h| hex::decode(h).ok()) else {
            self.checker.check(false, || format!("{label} {what}: ciphertext is not hex"));
            return;
        };
        self.in_flight.entry((x, y)).or_default().push(Pairwise { plaintext, kind, ciphertext, passed_over: 0 });
    }

    fn delivery(&mut self) -> Delivery {
        match self.rng.random_range(0..100) {
            0..6 => Delivery::Drop,
            6..16 => Delivery::Tamper,
            16..26 => Delivery::Duplicate,
            _ => Delivery::Normal,
        }
    }

    /// Takes a message off a path: one of the oldest [`WINDOW`], or the oldest if it has waited
    /// long enough.
    fn take<T>(rng: &mut StdRng, queue: &mut Vec<T>, passed_over: impl Fn(&mut T) -> &mut u32) -> T {
        let index = if *passed_over(&mut queue[0]) >= MAX_PASSED_OVER { 0 } else { rng.random_range(0..queue.len().min(WINDOW)) };
        for earlier in &mut queue[..index] {
            *passed_over(earlier) += 1;
        }
        queue.remove(index)
    }

    fn deliver(&mut self) {
        let paths: Vec<_> = self.in_flight.iter().filter(|(_, q)| !q.is_empty()).map(|(p, _)| *p).collect();
        let Some(&path) = paths.choose(&mut self.rng) else { return self.send() };
        let queue = self.in_flight.get_mut(&path).expect("chosen from the map");
        let message = Self::take(&mut self.rng, queue, |m| &mut m.passed_over);
        let how = self.delivery();
        self.deliver_pairwise(path, message, how);
    }

    fn deliver_pairwise(&mut self, (x, y): (usize, usize), message: Pairwise, how: Delivery) {
        let (xn, yn) = (self.parties[x].name.clone(), self.parties[y].name.clone());
        let peer = self.parties[y].peer;
        let request = |ciphertext: &[u8]| {
            json!({"op": "decrypt", "party": yn, "peer": xn, "type": message.kind, "ciphertext": hex::encode(ciphertext)})
        };
        let what = format!("decrypt {yn} ← {xn} ({}, {} bytes)", message.kind, message.ciphertext.len());
        match how {
            Delivery::Drop => return,
            Delivery::Tamper => {
                let index = self.tamper_index(&message.kind, &message.ciphertext);
                let mut tampered = message.ciphertext.clone();
                tampered[index] ^= 1 << self.rng.random_range(0..8);
                self.expect_error(peer, &request(&tampered), &[], &format!("{what} with byte {index} tampered"));
            }
            Delivery::Normal | Delivery::Duplicate => {}
        }
        let Some(response) = self.expect_ok(peer, &request(&message.ciphertext), &what) else { return };
        let got = response["plaintext"].as_str().and_then(|h| hex::decode(h).ok());
        let label = self.peers[peer].label;
        if !self.checker.check(got.as_deref() == Some(&message.plaintext[..]), || format!("{label} {what}: wrong plaintext")) {
            return;
        }
        self.sessions.insert((y, x));
        self.awaiting_reply.remove(&(y, x));
        if let Delivery::Duplicate = how {
            self.expect_error(peer, &request(&message.ciphertext), &["duplicate"], &format!("{what} delivered twice"));
        }
    }

    /// A byte to tamper with. In a PreKeySignalMessage of libsignal's format (`signal-v3`,
    /// `signal-pqxdh`) the outer fields are only bound through the keys they select — and only
    /// when the message starts its session: a later one is read under the session its base key
    /// names, KEM ciphertext and prekey ids unread — and the registration id not at all, so the
    /// flip goes inside the authenticated inner message.
    fn tamper_index(&mut self, kind: &str, ciphertext: &[u8]) -> usize {
        let libsignal_format = self.suite.parse::<switchboard_session::Suite>().is_ok_and(|suite| suite.cipher() == switchboard_session::suite::Cipher::CbcHmac);
        if kind == "prekey" && libsignal_format {
            if let Ok(parsed) = switchboard_session::PreKeySignalMessage::parse(ciphertext) {
                let inner = parsed.message().serialize();
                if let Some(start) = ciphertext.windows(inner.len()).position(|w| w == inner) {
                    return start + self.rng.random_range(0..inner.len());
                }
            }
        }
        self.rng.random_range(0..ciphertext.len())
    }

    // ---- groups ---------------------------------------------------------------------------

    fn create_group(&mut self) {
        if !self.groups_supported || self.groups.len() >= MAX_GROUPS {
            return self.group_send();
        }
        let mut members: Vec<usize> = (0..self.parties.len()).collect();
        members.retain(|_| self.rng.random_bool(0.8));
        let sides: BTreeSet<_> = members.iter().map(|m| self.parties[*m].peer).collect();
        if members.len() < 3 || sides.len() < 2 {
            return;
        }
        let id = format!("group-{}", self.groups.len());
        self.groups.push(Group { id, members: members.clone(), removed: Vec::new(), rotations: 0, in_flight: Vec::new() });
        let group = self.groups.len() - 1;
        for &member in &members {
            self.distribute(group, member, false);
        }
    }

    /// `member` creates (or rotates) its sender key and every other current member processes it.
    fn distribute(&mut self, group: usize, member: usize, rotate: bool) {
        let id = self.groups[group].id.clone();
        let name = self.parties[member].name.clone();
        let op = if rotate { "group_rotate" } else { "group_distribution" };
        let request = json!({"op": op, "party": name, "group": id});
        let Some(response) = self.expect_ok(self.parties[member].peer, &request, &format!("{op} {name} in {id}")) else { return };
        let distribution = response["distribution"].clone();
        for other in self.groups[group].members.clone() {
            if other == member {
                continue;
            }
            let other_name = self.parties[other].name.clone();
            let request = json!({"op": "group_process", "party": other_name, "group": id, "sender": name, "distribution": distribution});
            self.expect_ok(self.parties[other].peer, &request, &format!("group_process {other_name} ← {name} in {id}"));
        }
    }

    fn group_send(&mut self) {
        let Some(group) = (!self.groups.is_empty()).then(|| self.rng.random_range(0..self.groups.len())) else { return };
        let sender = *self.groups[group].members.choose(&mut self.rng).expect("groups keep members");
        let plaintext = self.plaintext();
        let (id, name) = (self.groups[group].id.clone(), self.parties[sender].name.clone());
        let request = json!({"op": "group_encrypt", "party": name, "group": id, "plaintext": hex::encode(&plaintext)});
        let Some(response) = self.expect_ok(self.parties[sender].peer, &request, &format!("group_encrypt {name} in {id}")) else {
            return;
        };
        let Some(ciphertext) = response["ciphertext"].as_str().and_then(|h| hex::decode(h).ok()) else { return };
        let g = &mut self.groups[group];
        let recipients = g.members.iter().copied().filter(|m| *m != sender).collect();
        let excluded = g.removed.clone();
        g.in_flight.push(GroupMessage { sender, plaintext, ciphertext, recipients, excluded });
    }

    fn group_deliver(&mut self) {
        let busy: Vec<usize> = (0..self.groups.len()).filter(|g| !self.groups[*g].in_flight.is_empty()).collect();
        let Some(&group) = busy.choose(&mut self.rng) else { return self.group_send() };
        let window = self.groups[group].in_flight.len().min(WINDOW);
        let index = self.rng.random_range(0..window);
        let recipients = self.groups[group].in_flight[index].recipients.len();
        let recipient = self.groups[group].in_flight[index].recipients.remove(self.rng.random_range(0..recipients));
        let how = self.delivery();
        self.deliver_group(group, index, recipient, how);
        if self.groups[group].in_flight[index].recipients.is_empty() {
            let message = self.groups[group].in_flight.remove(index);
            self.check_excluded(group, &message);
        }
    }

    fn group_request(&self, group: usize, reader: usize, sender: usize, ciphertext: &[u8]) -> Value {
        json!({
            "op": "group_decrypt", "party": self.parties[reader].name, "group": self.groups[group].id,
            "sender": self.parties[sender].name, "ciphertext": hex::encode(ciphertext),
        })
    }

    fn deliver_group(&mut self, group: usize, index: usize, reader: usize, how: Delivery) {
        let message = &self.groups[group].in_flight[index];
        let (sender, plaintext, ciphertext) = (message.sender, message.plaintext.clone(), message.ciphertext.clone());
        let peer = self.parties[reader].peer;
        let what = format!(
            "group_decrypt {} ← {} in {} ({} bytes)",
            self.parties[reader].name, self.parties[sender].name, self.groups[group].id, ciphertext.len()
        );
        match how {
            Delivery::Drop => return,
            Delivery::Tamper => {
                let mut tampered = ciphertext.clone();
                let at = self.rng.random_range(0..tampered.len());
                tampered[at] ^= 1 << self.rng.random_range(0..8);
                let request = self.group_request(group, reader, sender, &tampered);
                self.expect_error(peer, &request, &[], &format!("{what} with byte {at} tampered"));
            }
            Delivery::Normal | Delivery::Duplicate => {}
        }
        let request = self.group_request(group, reader, sender, &ciphertext);
        let Some(response) = self.expect_ok(peer, &request, &what) else { return };
        let got = response["plaintext"].as_str().and_then(|h| hex::decode(h).ok());
        let label = self.peers[peer].label;
        if self.checker.check(got.as_deref() == Some(&plaintext[..]), || format!("{label} {what}: wrong plaintext")) {
            if let Delivery::Duplicate = how {
                self.expect_error(peer, &request, &["duplicate"], &format!("{what} delivered twice"));
            }
        }
    }

    /// Members removed before a message was sent must not read it.
    fn check_excluded(&mut self, group: usize, message: &GroupMessage) {
        for &removed in &message.excluded {
            let request = self.group_request(group, removed, message.sender, &message.ciphertext);
            let what = format!(
                "group_decrypt by {}, removed from {} before {} sent this",
                self.parties[removed].name, self.groups[group].id, self.parties[message.sender].name
            );
            self.expect_error(self.parties[removed].peer, &request, &[], &what);
        }
    }

    fn remove_from_group(&mut self) {
        let eligible: Vec<usize> = (0..self.groups.len())
            .filter(|g| self.groups[*g].members.len() >= 3 && self.groups[*g].rotations < MAX_ROTATIONS)
            .collect();
        let Some(&group) = eligible.choose(&mut self.rng) else { return self.group_send() };
        let g = &mut self.groups[group];
        let removed = g.members.remove(self.rng.random_range(0..g.members.len()));
        g.removed.push(removed);
        g.rotations += 1;
        for member in self.groups[group].members.clone() {
            self.distribute(group, member, true);
        }
    }

    // ---- hostile requests ---------------------------------------------------------------

    fn hostile_requests(&mut self, peer: usize, all: bool) {
        let own = self.parties.iter().position(|p| p.peer == peer).expect("parties on both sides");
        let other = self.parties.iter().position(|p| p.peer != peer).expect("parties on both sides");
        let (own, other) = (self.parties[own].name.clone(), self.parties[other].name.clone());
        let bad_request = &["bad_request"][..];
        let cases: Vec<(String, &[&str], &str)> = vec![
            ("this is not json".into(), bad_request, "a line that is not JSON"),
            ("[1, 2, 3]".into(), bad_request, "a JSON array"),
            ("{}".into(), bad_request, "an object without op"),
            (json!({"op": "frobnicate"}).to_string(), &["unsupported"], "an unknown op"),
            (json!({"op": "create", "party": "x"}).to_string(), bad_request, "create without its fields"),
            (
                json!({"op": "create", "party": "y", "registration_id": "one", "device_id": 1, "prekeys": 1}).to_string(),
                bad_request,
                "a string where a number belongs",
            ),
            (json!({"op": "encrypt", "party": "nobody", "peer": other, "plaintext": "00"}).to_string(), &["unknown_party"], "an unknown party"),
            (
                json!({"op": "decrypt", "party": own, "peer": other, "type": "signal", "ciphertext": "abc"}).to_string(),
                bad_request,
                "odd-length hex",
            ),
            (
                json!({"op": "decrypt", "party": own, "peer": other, "type": "signal", "ciphertext": "zz"}).to_string(),
                bad_request,
                "hex with non-hex digits",
            ),
            (
                json!({"op": "decrypt", "party": own, "peer": other, "type": "carrier pigeon", "ciphertext": "00"}).to_string(),
                bad_request,
                "an unknown message type",
            ),
            (
                json!({"op": "decrypt", "party": own, "peer": other, "type": "signal", "ciphertext": "33ffffffff"}).to_string(),
                &["invalid_message", "no_session"],
                "garbage ciphertext",
            ),
            (
                json!({"op": "group_decrypt", "party": own, "group": "no-such-group", "sender": other, "ciphertext": "33ff"}).to_string(),
                &["invalid_message", "no_session"],
                "a group message for an unknown group",
            ),
        ];
        let chosen: Vec<_> = if all { cases } else { cases.into_iter().filter(|_| self.rng.random_bool(0.25)).collect() };
        for (line, kinds, what) in chosen {
            self.expect_error_line(peer, &line, kinds, &format!("hostile request ({what})"));
            self.still_serving(peer);
        }
        if all {
            let huge = format!(
                r#"{{"op":"encrypt","party":"{own}","peer":"{other}","plaintext":"{}"}}"#,
                "00".repeat(HUGE_HEX_LEN / 2)
            );
            self.expect_error_line(peer, &huge, bad_request, "hostile request (16 MiB of hex)");
            self.still_serving(peer);
        }
    }

    fn still_serving(&mut self, peer: usize) {
        self.expect_ok(peer, &json!({"op": "hello"}), "hello after a hostile request");
    }

    // ---- the end --------------------------------------------------------------------------

    /// Delivers everything still in flight, oldest first.
    fn drain(&mut self) {
        let paths: Vec<_> = self.in_flight.keys().copied().collect();
        for path in paths {
            let queue = std::mem::take(self.in_flight.get_mut(&path).expect("a key of the map"));
            for message in queue {
                if self.dead {
                    return;
                }
                self.deliver_pairwise(path, message, Delivery::Normal);
            }
        }
        for group in 0..self.groups.len() {
            while !self.groups[group].in_flight.is_empty() {
                if self.dead {
                    return;
                }
                while let Some(reader) = self.groups[group].in_flight[0].recipients.pop() {
                    self.deliver_group(group, 0, reader, Delivery::Normal);
                }
                let message = self.groups[group].in_flight.remove(0);
                self.check_excluded(group, &message);
            }
        }
    }
}

fn error_of(response: &Value) -> String {
    match (response["error"].as_str(), response["detail"].as_str()) {
        (Some(kind), Some(detail)) => format!("error {kind} ({detail})"),
        (Some(kind), None) => format!("error {kind}"),
        _ => format!("{response:.200}"),
    }
}
