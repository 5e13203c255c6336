//! The randomized scenario: a model of who holds which session and what is in flight, actions
//! drawn from the seed, and a check of every outcome against the model. Each failure is put on
//! the side the evidence points to (see [`Scenario::exchange_failure`]).

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use serde_json::Value;

use super::Config;
use super::checks::{Checker, Failure, Fault};
use super::process::{PeerProcess, with_sources};
use crate::protocol::{ErrorKind, Hello, Hex, MessageType, PeerError, Reply, Request, Response, ResponseError};
use crate::serve::INTERNAL_ERROR;

const PARTIES_PER_SIDE: usize = 2;
/// One-time prekeys each party is created with.
const PREKEYS: u32 = 40;
/// A message is delivered from among the oldest WINDOW in flight on its path…
const WINDOW: usize = 4;
/// …and at the latest after being passed over this many times (so that it never falls out of
/// the receiving chains an implementation keeps).
const MAX_PASSED_OVER: u32 = 3;
const MAX_GROUPS: usize = 2;
/// Rotations per group: in-flight messages under older sender keys stay within the 5 states kept.
const MAX_ROTATIONS: u32 = 3;
/// A request line over any sensible limit (the contract's "huge hex").
const HUGE_HEX_LEN: usize = 16 * 1024 * 1024;
/// The names of the two parties of each side's self-check, and its group.
const SELF_CHECK_PARTIES: [&str; 2] = ["selfcheck-1", "selfcheck-2"];
const SELF_CHECK_GROUP: &str = "selfcheck-group";
/// The plaintext sizes of each self-check exchange: first, second (read last), third.
const SELF_CHECK_SIZES: [usize; 3] = [0, 100, 4999];

/// The run stops: a peer failed as a process, or the two cannot talk at all (already reported).
pub(super) struct Stop;

type Step<T = ()> = Result<T, Stop>;

/// What a reader was given to read, for deciding whose fault a refusal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    Bundle,
    Prekey,
    PrekeyLate,
    Signal,
    SignalLate,
    Distribution,
    Group,
    GroupLate,
}

impl Shape {
    fn describe(self) -> &'static str {
        match self {
            Shape::Bundle => "bundles",
            Shape::Prekey => "prekey messages",
            Shape::PrekeyLate => "late prekey messages",
            Shape::Signal => "signal messages",
            Shape::SignalLate => "late signal messages",
            Shape::Distribution => "sender-key distributions",
            Shape::Group => "group messages",
            Shape::GroupLate => "late group messages",
        }
    }

    fn pairwise(kind: MessageType, late: bool) -> Shape {
        match (kind, late) {
            (MessageType::Prekey, false) => Shape::Prekey,
            (MessageType::Prekey, true) => Shape::PrekeyLate,
            (MessageType::Signal, false) => Shape::Signal,
            (MessageType::Signal, true) => Shape::SignalLate,
        }
    }
}

/// How far a side got in its self-check.
#[derive(Default)]
struct SelfCheck {
    /// The shapes it handled with itself.
    passed: BTreeSet<Shape>,
    /// The shape it was at when it stopped at a failure (`None`: it did not fail).
    trying: Option<Shape>,
}

impl SelfCheck {
    /// What the self-check says of `shape`, after the side's label.
    fn says(&self, shape: Shape) -> String {
        if self.passed.contains(&shape) {
            return format!("passes its self-check on {}", shape.describe());
        }
        match self.trying {
            Some(stopped) if stopped == shape => format!("fails its self-check on {}", shape.describe()),
            Some(stopped) => format!("fails its self-check on {}, before reaching {}", stopped.describe(), shape.describe()),
            None => format!("did not try {} in its self-check", shape.describe()),
        }
    }
}

/// A reader's refusal of what a writer wrote, and what else is known of the same bytes.
struct Exchange {
    /// The side that wrote the bytes.
    writer: usize,
    shape: Shape,
    /// Another party on the reader's side that read the same bytes.
    read_by: Option<String>,
    /// A party on the writer's side that refused the same bytes too.
    refused_by: Option<String>,
}

impl Exchange {
    fn new(writer: usize, shape: Shape) -> Self {
        Exchange { writer, shape, read_by: None, refused_by: None }
    }
}

struct Party {
    name: String,
    peer: usize,
}

struct Pairwise {
    plaintext: Vec<u8>,
    kind: MessageType,
    ciphertext: Vec<u8>,
    passed_over: u32,
    /// Its place on its path (0 for the first message sent from x to y).
    index: u64,
}

struct GroupMessage {
    sender: usize,
    plaintext: Vec<u8>,
    ciphertext: Vec<u8>,
    recipients: Vec<usize>,
    /// Removed before this message was sent: must not read it.
    excluded: Vec<usize>,
    /// Its place among the sender's messages to the group.
    index: u64,
    /// Recipients that read it, and recipients that refused it (or read something else).
    read_by: Vec<usize>,
    refused_by: Vec<usize>,
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

pub(super) struct Scenario<'r, 'o> {
    suite: String,
    rounds: u32,
    timeout: std::time::Duration,
    peers: [PeerProcess; 2],
    checker: &'r mut Checker<'o>,
    rng: StdRng,
    hellos: [Option<Hello>; 2],
    /// How far each side got in its self-check.
    self_checks: [SelfCheck; 2],
    /// (writer side, reader side, shape): how many were read as they should be.
    read_counts: BTreeMap<(usize, usize, Shape), u64>,
    parties: Vec<Party>,
    /// (x, y): x holds a session with y and can encrypt to it.
    sessions: BTreeSet<(usize, usize)>,
    /// (x, y): x started the session and has not yet read a reply from y.
    awaiting_reply: BTreeSet<(usize, usize)>,
    in_flight: BTreeMap<(usize, usize), Vec<Pairwise>>,
    /// (x, y): messages sent from x to y so far, and the highest index y has read.
    sent: BTreeMap<(usize, usize), u64>,
    highest_read: BTreeMap<(usize, usize), u64>,
    groups: Vec<Group>,
    /// (group, sender): messages sent; (group, sender, reader): the highest index read.
    group_sent: BTreeMap<(usize, usize), u64>,
    group_highest_read: BTreeMap<(usize, usize, usize), u64>,
    groups_supported: bool,
}

impl<'r, 'o> Scenario<'r, 'o> {
    pub fn new(config: &Config, peers: [PeerProcess; 2], checker: &'r mut Checker<'o>) -> Self {
        Scenario {
            suite: config.suite.clone(),
            rounds: config.rounds,
            timeout: config.timeout,
            peers,
            checker,
            rng: StdRng::seed_from_u64(config.seed),
            hellos: [None, None],
            self_checks: [SelfCheck::default(), SelfCheck::default()],
            read_counts: BTreeMap::new(),
            parties: Vec::new(),
            sessions: BTreeSet::new(),
            awaiting_reply: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            sent: BTreeMap::new(),
            highest_read: BTreeMap::new(),
            groups: Vec::new(),
            group_sent: BTreeMap::new(),
            group_highest_read: BTreeMap::new(),
            groups_supported: false,
        }
    }

    /// Plays the whole run, then ends both peers: each must exit by itself at the end of its
    /// input; whatever way the run ended, neither is left running.
    pub fn play(mut self) {
        let _ = self.play_until_stopped();
        let limit = self.timeout.min(std::time::Duration::from_secs(5));
        for peer in 0..2 {
            if self.peers[peer].is_gone() {
                continue;
            }
            let status = self.peers[peer].finish(limit);
            let label = self.peers[peer].label;
            self.checker.check(status.is_some_and(|s| s.success()), || {
                let what = match status {
                    Some(status) => format!("peer {label} ended with {status} at the end of its input"),
                    None => format!("peer {label} did not exit within {limit:?} of the end of its input (killed)"),
                };
                Failure::of(peer, what)
            });
        }
    }

    fn play_until_stopped(&mut self) -> Step {
        self.greet()?;
        for peer in 0..2 {
            self.self_check(peer)?;
        }
        self.create_parties()?;
        for peer in 0..2 {
            self.hostile_requests(peer, true)?;
        }
        for _ in 0..self.rounds {
            self.round()?;
        }
        self.drain()
    }

    fn label(&self, peer: usize) -> &'static str {
        self.peers[peer].label
    }

    fn side_of(&self, party: usize) -> usize {
        self.parties[party].peer
    }

    // ---- requests -------------------------------------------------------------------------

    /// Sends one line to `peer` and returns its answer line. A peer that fails as a process is
    /// reported (its fault), killed, and ends the run.
    fn send(&mut self, peer: usize, line: &str, op: &str) -> Step<String> {
        match self.peers[peer].send_line(line) {
            Ok(answer) => Ok(answer),
            Err(failure) => {
                let what = format!("peer {} {}", self.label(peer), with_sources(&failure));
                self.checker.fail(Failure { fault: Fault::side(peer), what, why: Some(format!("while answering {op}")) });
                Err(Stop)
            }
        }
    }

    /// Sends `request` and reads the answer as the contract says that op answers. An answer
    /// outside the contract is a failure of `peer` (`None`); one that is not JSON also ends the
    /// run, since the two sides no longer agree on where answers begin.
    fn call(&mut self, peer: usize, request: &Request) -> Step<Option<Response>> {
        let line = self.send(peer, &request.to_line(), request.op())?;
        match Response::read(request, &line) {
            Ok(response) => Ok(Some(response)),
            Err(error) => self.misanswered(peer, request.op(), error, &line).map(|()| None),
        }
    }

    /// Sends a line that may not be a request and reads only whether it was refused, and how.
    fn call_line(&mut self, peer: usize, line: &str) -> Step<Option<Result<(), PeerError>>> {
        let answer = self.send(peer, line, "a hostile line")?;
        match Response::read_status(&answer) {
            Ok(status) => Ok(Some(status)),
            Err(error) => self.misanswered(peer, "a hostile line", error, &answer).map(|()| None),
        }
    }

    fn misanswered(&mut self, peer: usize, op: &str, error: ResponseError, line: &str) -> Step {
        let label = self.label(peer);
        let fatal = matches!(error, ResponseError::NotJson(_));
        let what = format!("{label}'s answer to {op} does not follow the protocol: {error}: {line:.200}");
        self.checker.fail(Failure::of(peer, what));
        if fatal { Err(Stop) } else { Ok(()) }
    }

    /// Sends `request`, which `peer` alone decides (nothing another side wrote is in it), and
    /// checks it succeeds.
    fn expect_ok(&mut self, peer: usize, request: &Request, what: &str) -> Step<Option<Reply>> {
        let Some(response) = self.call(peer, request)? else { return Ok(None) };
        let label = self.label(peer);
        Ok(match response {
            Response::Ok(reply) => {
                self.checker.pass();
                Some(reply)
            }
            Response::Err(error) => {
                self.checker.fail(Failure::of(peer, format!("{label} {what}: expected success, got {}", describe(&error))));
                None
            }
        })
    }

    /// Sends `request`, in which `peer` reads what a side wrote, and checks it succeeds. A
    /// refusal is put on the side the evidence points to.
    fn expect_read(&mut self, peer: usize, request: &Request, what: &str, exchange: &Exchange) -> Step<Option<Reply>> {
        let Some(response) = self.call(peer, request)? else { return Ok(None) };
        let label = self.label(peer);
        Ok(match response {
            Response::Ok(reply) => {
                self.checker.pass();
                Some(reply)
            }
            Response::Err(error) => {
                let failure = self.exchange_failure(peer, exchange, format!("{label} {what}: expected success, got {}", describe(&error)));
                self.checker.fail(failure);
                None
            }
        })
    }

    /// Checks a plaintext read against the one sent; a difference is put on a side as a refusal
    /// would be. On success, counts the read for [`Scenario::exchange_failure`].
    fn check_plaintext(&mut self, reader: usize, reply: Reply, expected: &[u8], what: &str, exchange: &Exchange) -> bool {
        let got = match reply {
            Reply::Plaintext { plaintext } => plaintext,
            _ => unreachable!("a decrypt is answered by a plaintext"),
        };
        let label = self.label(reader);
        let passed = got.as_bytes() == expected;
        if passed {
            self.checker.pass();
            *self.read_counts.entry((exchange.writer, reader, exchange.shape)).or_default() += 1;
        } else {
            let failure = self.exchange_failure(
                reader,
                exchange,
                format!("{label} {what}: wrong plaintext ({} bytes instead of the {} sent)", got.as_bytes().len(), expected.len()),
            );
            self.checker.fail(failure);
        }
        passed
    }

    /// Sends `line` to `peer`, which must refuse it with one of `kinds` (any kind when empty); an
    /// acceptance, a crash or another kind is `peer`'s fault.
    fn expect_error(&mut self, peer: usize, line: &str, kinds: &[ErrorKind], what: &str) -> Step {
        let Some(status) = self.call_line(peer, line)? else { return Ok(()) };
        let passed = match &status {
            Ok(()) => false,
            // A refusal that came from a caught panic is a crash the peer survived.
            Err(error) => error.detail != INTERNAL_ERROR && (kinds.is_empty() || kinds.contains(&error.kind)),
        };
        let label = self.label(peer);
        self.checker.check(passed, || {
            let expected = if kinds.is_empty() {
                "an error".to_owned()
            } else {
                kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(" or ")
            };
            let got = match &status {
                Ok(()) => "success".to_owned(),
                Err(error) => describe(error),
            };
            Failure::of(peer, format!("{label} {what}: expected {expected}, got {got}"))
        });
        Ok(())
    }

    /// Whose fault it is that `reader` refused (or misread) what `exchange.writer` wrote:
    ///
    /// 1. one side did both: that side;
    /// 2. another party of the reader's side read the same bytes: the reader's;
    /// 3. a party of the writer's own side refused the same bytes too: the writer's;
    /// 4. exactly one side failed its self-check at that shape: that side; both did: both;
    /// 5. both passed it, and the reader has read others of that shape from the writer: the
    ///    writer's (this message, not the reader's handling of the shape, is what differs);
    /// 6. otherwise the run cannot tell: "A or B".
    fn exchange_failure(&self, reader: usize, exchange: &Exchange, what: String) -> Failure {
        let writer = exchange.writer;
        let (w, r) = (self.label(writer), self.label(reader));
        let shape = exchange.shape.describe();
        let (fault, why) = if writer == reader {
            (Fault::side(reader), format!("{w} wrote it and {r} read it"))
        } else if let Some(other) = &exchange.read_by {
            (Fault::side(reader), format!("{w} wrote it; {other}, on {r} too, read the same bytes"))
        } else if let Some(other) = &exchange.refused_by {
            (Fault::side(writer), format!("{w} wrote it; {other}, on {w} itself, refused the same bytes too"))
        } else {
            let (writer_check, reader_check) = (&self.self_checks[writer], &self.self_checks[reader]);
            let writer_ok = writer_check.passed.contains(&exchange.shape);
            let reader_ok = reader_check.passed.contains(&exchange.shape);
            let says = format!("{w} {}, {r} {}", writer_check.says(exchange.shape), reader_check.says(exchange.shape));
            let read_before = self.read_counts.get(&(writer, reader, exchange.shape)).copied().unwrap_or(0);
            match (writer_ok, reader_ok) {
                (false, true) => (Fault::side(writer), format!("{w} wrote it; {says}")),
                (true, false) => (Fault::side(reader), format!("{w} wrote it; {says}")),
                (false, false) => (Fault::Both, format!("{w} wrote it; {says}")),
                (true, true) if read_before > 0 => (
                    Fault::side(writer),
                    format!("{w} wrote it; both pass their self-checks on {shape}, and {r} read {read_before} other such from {w}"),
                ),
                (true, true) => (
                    Fault::Undecided,
                    format!("{w} wrote it; both pass their self-checks on {shape} and {r} read none such from {w}: hold each against a third implementation"),
                ),
            }
        };
        Failure { fault, what, why: Some(why) }
    }

    // ---- set-up ---------------------------------------------------------------------------

    fn greet(&mut self) -> Step {
        let mut group_features = 0;
        for peer in 0..2 {
            let Some(Reply::Hello(hello)) = self.expect_ok(peer, &Request::Hello, "hello")? else { return Err(Stop) };
            let label = self.label(peer);
            let suite = self.suite.clone();
            if !self.checker.check(hello.suites.contains(&suite), || {
                Failure::of(peer, format!("{label} does not support suite {suite} (it offers {:?})", hello.suites))
            }) {
                return Err(Stop);
            }
            if hello.has_feature("group") {
                group_features += 1;
            }
            self.hellos[peer] = Some(hello);
        }
        self.groups_supported = group_features == 2;
        Ok(())
    }

    /// Each side on its own, before the two meet: two parties of `peer` hold a session (three
    /// messages each way, of 0, 100 and 4,999 bytes, the second read last) and, if it speaks
    /// groups, a group (the same). It stops at its first failure. The shapes it got through
    /// are what [`Scenario::exchange_failure`] calls a passed self-check.
    fn self_check(&mut self, peer: usize) -> Step {
        let mut check = SelfCheck::default();
        let completed = self.self_check_steps(peer, &mut check)?;
        if completed {
            check.trying = None;
        }
        self.self_checks[peer] = check;
        Ok(())
    }

    /// The self-check's steps; `false` when it stopped at a failure (at `check.trying`).
    fn self_check_steps(&mut self, peer: usize, check: &mut SelfCheck) -> Step<bool> {
        check.trying = Some(Shape::Bundle);
        let [one, two] = SELF_CHECK_PARTIES.map(str::to_owned);
        for (registration_id, name) in [(1, &one), (2, &two)] {
            let request = Request::Create { party: name.clone(), registration_id, device_id: 1, prekeys: 4 };
            if self.self_check_ok(peer, &request, &format!("create {name}"))?.is_none() {
                return Ok(false);
            }
        }
        let request = Request::Bundle { party: two.clone(), suite: self.suite.clone() };
        let Some(Reply::Bundle { bundle }) = self.self_check_ok(peer, &request, &format!("bundle of {two}"))? else { return Ok(false) };
        let request = Request::ProcessBundle { party: one.clone(), peer: two.clone(), bundle };
        if self.self_check_ok(peer, &request, &format!("process_bundle {one} ← bundle of {two}"))?.is_none() {
            return Ok(false);
        }
        check.passed.insert(Shape::Bundle);
        let pairwise = [(&one, &two, MessageType::Prekey, Shape::Prekey, Shape::PrekeyLate), (&two, &one, MessageType::Signal, Shape::Signal, Shape::SignalLate)];
        for (from, to, kind, in_order, late) in pairwise {
            check.trying = Some(in_order);
            let mut sent = Vec::new();
            for (i, size) in SELF_CHECK_SIZES.into_iter().enumerate() {
                let plaintext = self_check_plaintext(i, size);
                let request = Request::Encrypt { party: from.clone(), peer: to.clone(), plaintext: plaintext.clone().into() };
                let what = format!("encrypt {from} → {to} ({size} bytes)");
                let Some(Reply::Encrypted { kind: got, ciphertext }) = self.self_check_ok(peer, &request, &what)? else { return Ok(false) };
                let label = self.label(peer);
                if !self.checker.check(got == kind, || {
                    Failure::of(peer, format!("{label} self-check: {what}: expected a {} message, got {}", kind.name(), got.name()))
                }) {
                    return Ok(false);
                }
                sent.push((plaintext, ciphertext));
            }
            for i in [0, 2, 1] {
                if i == 1 {
                    check.trying = Some(late);
                }
                let (plaintext, ciphertext) = &sent[i];
                let request = Request::Decrypt { party: to.clone(), peer: from.clone(), kind, ciphertext: ciphertext.clone() };
                let what = format!("decrypt {to} ← {from} ({}, message {} of 3)", kind.name(), i + 1);
                if !self.self_check_read(peer, &request, plaintext, &what)? {
                    return Ok(false);
                }
                if i == 1 {
                    check.passed.insert(late);
                } else if i == 2 {
                    check.passed.insert(in_order);
                }
            }
        }
        if !self.hellos[peer].as_ref().is_some_and(|hello| hello.has_feature("group")) {
            return Ok(true);
        }
        check.trying = Some(Shape::Distribution);
        let group = SELF_CHECK_GROUP.to_owned();
        let request = Request::GroupDistribution { party: one.clone(), group: group.clone() };
        let Some(Reply::Distribution { distribution }) = self.self_check_ok(peer, &request, &format!("group_distribution {one}"))? else {
            return Ok(false);
        };
        let request = Request::GroupProcess { party: two.clone(), group: group.clone(), sender: one.clone(), distribution };
        if self.self_check_ok(peer, &request, &format!("group_process {two} ← {one}"))?.is_none() {
            return Ok(false);
        }
        check.passed.insert(Shape::Distribution);
        check.trying = Some(Shape::Group);
        let mut sent = Vec::new();
        for (i, size) in SELF_CHECK_SIZES.into_iter().enumerate() {
            let plaintext = self_check_plaintext(i, size);
            let request = Request::GroupEncrypt { party: one.clone(), group: group.clone(), plaintext: plaintext.clone().into() };
            let what = format!("group_encrypt {one} ({size} bytes)");
            let Some(Reply::GroupCiphertext { ciphertext }) = self.self_check_ok(peer, &request, &what)? else { return Ok(false) };
            sent.push((plaintext, ciphertext));
        }
        for i in [0, 2, 1] {
            if i == 1 {
                check.trying = Some(Shape::GroupLate);
            }
            let (plaintext, ciphertext) = &sent[i];
            let request = Request::GroupDecrypt { party: two.clone(), group: group.clone(), sender: one.clone(), ciphertext: ciphertext.clone() };
            let what = format!("group_decrypt {two} ← {one} (message {} of 3)", i + 1);
            if !self.self_check_read(peer, &request, plaintext, &what)? {
                return Ok(false);
            }
            if i == 1 {
                check.passed.insert(Shape::GroupLate);
            } else if i == 2 {
                check.passed.insert(Shape::Group);
            }
        }
        Ok(true)
    }

    fn self_check_ok(&mut self, peer: usize, request: &Request, what: &str) -> Step<Option<Reply>> {
        self.expect_ok(peer, request, &format!("self-check: {what}"))
    }

    fn self_check_read(&mut self, peer: usize, request: &Request, plaintext: &[u8], what: &str) -> Step<bool> {
        let Some(reply) = self.self_check_ok(peer, request, what)? else { return Ok(false) };
        let got = match reply {
            Reply::Plaintext { plaintext } => plaintext,
            _ => unreachable!("a decrypt is answered by a plaintext"),
        };
        let label = self.label(peer);
        Ok(self.checker.check(got.as_bytes() == plaintext, || {
            Failure::of(peer, format!("{label} self-check: {what}: wrong plaintext"))
        }))
    }

    fn create_parties(&mut self) -> Step {
        for peer in 0..2 {
            for i in 0..PARTIES_PER_SIDE {
                let name = format!("{}{i}", ["a", "b"][peer]);
                let request = Request::Create {
                    party: name.clone(),
                    registration_id: self.rng.random_range(1..16380u32),
                    device_id: 1,
                    prekeys: PREKEYS,
                };
                self.expect_ok(peer, &request, &format!("create {name}"))?;
                self.parties.push(Party { name, peer });
            }
        }
        Ok(())
    }

    // ---- one round ------------------------------------------------------------------------

    fn round(&mut self) -> Step {
        let roll = self.rng.random_range(0..100);
        match roll {
            0..10 => self.start_session(),
            10..40 => self.send_pairwise(),
            40..68 => self.deliver(),
            68..71 => self.create_group(),
            71..81 => self.group_send(),
            81..95 => self.group_deliver(),
            95..97 => self.remove_from_group(),
            _ => {
                let peer = self.rng.random_range(0..2);
                self.hostile_requests(peer, false)
            }
        }
    }

    fn start_session(&mut self) -> Step {
        let candidates: Vec<(usize, usize)> = (0..self.parties.len())
            .flat_map(|x| (0..self.parties.len()).map(move |y| (x, y)))
            .filter(|&(x, y)| self.parties[x].peer != self.parties[y].peer)
            .filter(|&(x, y)| !self.sessions.contains(&(x, y)) && !self.sessions.contains(&(y, x)))
            .collect();
        let Some(&(x, y)) = candidates.choose(&mut self.rng) else { return self.send_pairwise() };
        let (xn, yn) = (self.parties[x].name.clone(), self.parties[y].name.clone());
        let request = Request::Bundle { party: yn.clone(), suite: self.suite.clone() };
        let Some(Reply::Bundle { bundle }) = self.expect_ok(self.side_of(y), &request, &format!("bundle of {yn}"))? else { return Ok(()) };
        let request = Request::ProcessBundle { party: xn.clone(), peer: yn.clone(), bundle };
        let exchange = Exchange::new(self.side_of(y), Shape::Bundle);
        let what = format!("process_bundle {xn} ← bundle of {yn}");
        if self.expect_read(self.side_of(x), &request, &what, &exchange)?.is_some() {
            *self.read_counts.entry((self.side_of(y), self.side_of(x), Shape::Bundle)).or_default() += 1;
            self.sessions.insert((x, y));
            self.awaiting_reply.insert((x, y));
        }
        Ok(())
    }

    fn plaintext(&mut self) -> Vec<u8> {
        let len = match self.rng.random_range(0..20) {
            0 => 0,
            1 => self.rng.random_range(1000..5000),
            _ => self.rng.random_range(1..200),
        };
        (0..len).map(|_| self.rng.random()).collect()
    }

    fn send_pairwise(&mut self) -> Step {
        let sessions: Vec<_> = self.sessions.iter().copied().collect();
        let Some(&(x, y)) = sessions.choose(&mut self.rng) else { return Ok(()) };
        let plaintext = self.plaintext();
        let (xn, yn) = (self.parties[x].name.clone(), self.parties[y].name.clone());
        let request = Request::Encrypt { party: xn.clone(), peer: yn.clone(), plaintext: plaintext.clone().into() };
        let what = format!("encrypt {xn} → {yn}");
        let peer = self.side_of(x);
        let Some(Reply::Encrypted { kind, ciphertext }) = self.expect_ok(peer, &request, &what)? else { return Ok(()) };
        let expected = if self.awaiting_reply.contains(&(x, y)) { MessageType::Prekey } else { MessageType::Signal };
        let label = self.label(peer);
        self.checker.check(kind == expected, || {
            Failure::of(peer, format!("{label} {what}: expected a {} message, got {}", expected.name(), kind.name()))
        });
        let sent = self.sent.entry((x, y)).or_default();
        let index = *sent;
        *sent += 1;
        self.in_flight.entry((x, y)).or_default().push(Pairwise { plaintext, kind, ciphertext: ciphertext.0, passed_over: 0, index });
        Ok(())
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

    fn deliver(&mut self) -> Step {
        let paths: Vec<_> = self.in_flight.iter().filter(|(_, q)| !q.is_empty()).map(|(p, _)| *p).collect();
        let Some(&path) = paths.choose(&mut self.rng) else { return self.send_pairwise() };
        let queue = self.in_flight.get_mut(&path).expect("chosen from the map");
        let message = Self::take(&mut self.rng, queue, |m| &mut m.passed_over);
        let how = self.delivery();
        self.deliver_pairwise(path, message, how)
    }

    fn deliver_pairwise(&mut self, (x, y): (usize, usize), message: Pairwise, how: Delivery) -> Step {
        let (xn, yn) = (self.parties[x].name.clone(), self.parties[y].name.clone());
        let peer = self.side_of(y);
        let request = |ciphertext: &[u8]| Request::Decrypt {
            party: yn.clone(),
            peer: xn.clone(),
            kind: message.kind,
            ciphertext: ciphertext.into(),
        };
        let what = format!("decrypt {yn} ← {xn} ({} #{}, {} bytes)", message.kind.name(), message.index + 1, message.ciphertext.len());
        match how {
            Delivery::Drop => return Ok(()),
            // An empty ciphertext has no byte to flip: it goes as it is (and its reading fails).
            Delivery::Tamper if !message.ciphertext.is_empty() => {
                let index = self.tamper_index(message.kind, &message.ciphertext);
                let mut tampered = message.ciphertext.clone();
                tampered[index] ^= 1 << self.rng.random_range(0..8);
                self.expect_error(peer, &request(&tampered).to_line(), &[], &format!("{what} with byte {index} tampered"))?;
            }
            Delivery::Tamper | Delivery::Normal | Delivery::Duplicate => {}
        }
        let late = self.highest_read.get(&(x, y)).is_some_and(|highest| *highest > message.index);
        let exchange = Exchange::new(self.side_of(x), Shape::pairwise(message.kind, late));
        let genuine = request(&message.ciphertext);
        let Some(reply) = self.expect_read(peer, &genuine, &what, &exchange)? else { return Ok(()) };
        if !self.check_plaintext(peer, reply, &message.plaintext, &what, &exchange) {
            return Ok(());
        }
        let highest = self.highest_read.entry((x, y)).or_insert(message.index);
        *highest = (*highest).max(message.index);
        self.sessions.insert((y, x));
        self.awaiting_reply.remove(&(y, x));
        if let Delivery::Duplicate = how {
            self.expect_error(peer, &genuine.to_line(), &[ErrorKind::Duplicate], &format!("{what} delivered twice"))?;
        }
        Ok(())
    }

    /// A byte to tamper with. In a PreKeySignalMessage of libsignal's format (`signal-v3`,
    /// `signal-pqxdh`) the outer fields are only bound through the keys they select — and only
    /// when the message starts its session: a later one is read under the session its base key
    /// names, KEM ciphertext and prekey ids unread — and the registration id not at all, so the
    /// flip goes inside the authenticated inner message.
    fn tamper_index(&mut self, kind: MessageType, ciphertext: &[u8]) -> usize {
        let libsignal_format = self
            .suite
            .parse::<switchboard_session::Suite>()
            .is_ok_and(|suite| suite.cipher() == switchboard_session::suite::Cipher::CbcHmac);
        if kind == MessageType::Prekey
            && libsignal_format
            && let Ok(parsed) = switchboard_session::PreKeySignalMessage::parse(ciphertext)
        {
            let inner = parsed.message().serialize();
            if !inner.is_empty()
                && let Some(start) = ciphertext.windows(inner.len()).position(|w| w == inner)
            {
                return start + self.rng.random_range(0..inner.len());
            }
        }
        self.rng.random_range(0..ciphertext.len())
    }

    // ---- groups ---------------------------------------------------------------------------

    fn create_group(&mut self) -> Step {
        if !self.groups_supported || self.groups.len() >= MAX_GROUPS {
            return self.group_send();
        }
        let mut members: Vec<usize> = (0..self.parties.len()).collect();
        members.retain(|_| self.rng.random_bool(0.8));
        let sides: BTreeSet<_> = members.iter().map(|m| self.parties[*m].peer).collect();
        if members.len() < 3 || sides.len() < 2 {
            return Ok(());
        }
        let id = format!("group-{}", self.groups.len());
        self.groups.push(Group { id, members: members.clone(), removed: Vec::new(), rotations: 0, in_flight: Vec::new() });
        let group = self.groups.len() - 1;
        for &member in &members {
            self.distribute(group, member, false)?;
        }
        Ok(())
    }

    /// `member` creates (or rotates) its sender key and every other current member processes it.
    fn distribute(&mut self, group: usize, member: usize, rotate: bool) -> Step {
        let id = self.groups[group].id.clone();
        let name = self.parties[member].name.clone();
        let request = if rotate {
            Request::GroupRotate { party: name.clone(), group: id.clone() }
        } else {
            Request::GroupDistribution { party: name.clone(), group: id.clone() }
        };
        let what = format!("{} {name} in {id}", request.op());
        let Some(Reply::Distribution { distribution }) = self.expect_ok(self.side_of(member), &request, &what)? else { return Ok(()) };
        // Per side, a party that took the distribution and one that refused it.
        let mut read_by: BTreeMap<usize, String> = BTreeMap::new();
        let mut refused_by: BTreeMap<usize, String> = BTreeMap::new();
        for other in self.groups[group].members.clone() {
            if other == member {
                continue;
            }
            let other_name = self.parties[other].name.clone();
            let request = Request::GroupProcess {
                party: other_name.clone(),
                group: id.clone(),
                sender: name.clone(),
                distribution: distribution.clone(),
            };
            let reader = self.side_of(other);
            let mut exchange = Exchange::new(self.side_of(member), Shape::Distribution);
            exchange.read_by = read_by.get(&reader).cloned();
            exchange.refused_by = refused_by.get(&exchange.writer).cloned();
            let what = format!("group_process {other_name} ← {name} in {id}");
            if self.expect_read(reader, &request, &what, &exchange)?.is_some() {
                read_by.entry(reader).or_insert(other_name);
                *self.read_counts.entry((exchange.writer, reader, Shape::Distribution)).or_default() += 1;
            } else {
                refused_by.entry(reader).or_insert(other_name);
            }
        }
        Ok(())
    }

    fn group_send(&mut self) -> Step {
        let Some(group) = (!self.groups.is_empty()).then(|| self.rng.random_range(0..self.groups.len())) else { return Ok(()) };
        let sender = *self.groups[group].members.choose(&mut self.rng).expect("groups keep members");
        let plaintext = self.plaintext();
        let (id, name) = (self.groups[group].id.clone(), self.parties[sender].name.clone());
        let request = Request::GroupEncrypt { party: name.clone(), group: id.clone(), plaintext: plaintext.clone().into() };
        let what = format!("group_encrypt {name} in {id}");
        let Some(Reply::GroupCiphertext { ciphertext }) = self.expect_ok(self.side_of(sender), &request, &what)? else { return Ok(()) };
        let sent = self.group_sent.entry((group, sender)).or_default();
        let index = *sent;
        *sent += 1;
        let g = &mut self.groups[group];
        let recipients = g.members.iter().copied().filter(|m| *m != sender).collect();
        let excluded = g.removed.clone();
        g.in_flight.push(GroupMessage {
            sender,
            plaintext,
            ciphertext: ciphertext.0,
            recipients,
            excluded,
            index,
            read_by: Vec::new(),
            refused_by: Vec::new(),
        });
        Ok(())
    }

    fn group_deliver(&mut self) -> Step {
        let busy: Vec<usize> = (0..self.groups.len()).filter(|g| !self.groups[*g].in_flight.is_empty()).collect();
        let Some(&group) = busy.choose(&mut self.rng) else { return self.group_send() };
        let window = self.groups[group].in_flight.len().min(WINDOW);
        let index = self.rng.random_range(0..window);
        let recipients = self.groups[group].in_flight[index].recipients.len();
        let recipient = self.groups[group].in_flight[index].recipients.remove(self.rng.random_range(0..recipients));
        let how = self.delivery();
        self.deliver_group(group, index, recipient, how)?;
        if self.groups[group].in_flight[index].recipients.is_empty() {
            let message = self.groups[group].in_flight.remove(index);
            self.check_excluded(group, &message)?;
        }
        Ok(())
    }

    fn group_request(&self, group: usize, reader: usize, sender: usize, ciphertext: &[u8]) -> Request {
        Request::GroupDecrypt {
            party: self.parties[reader].name.clone(),
            group: self.groups[group].id.clone(),
            sender: self.parties[sender].name.clone(),
            ciphertext: Hex(ciphertext.to_vec()),
        }
    }

    fn deliver_group(&mut self, group: usize, index: usize, reader: usize, how: Delivery) -> Step {
        let message = &self.groups[group].in_flight[index];
        let (sender, plaintext, ciphertext) = (message.sender, message.plaintext.clone(), message.ciphertext.clone());
        let (reader_side, writer_side) = (self.side_of(reader), self.side_of(sender));
        let late = self.group_highest_read.get(&(group, sender, reader)).is_some_and(|highest| *highest > message.index);
        let mut exchange = Exchange::new(writer_side, if late { Shape::GroupLate } else { Shape::Group });
        exchange.read_by = message.read_by.iter().find(|p| self.side_of(**p) == reader_side).map(|p| self.parties[*p].name.clone());
        exchange.refused_by =
            message.refused_by.iter().find(|p| self.side_of(**p) == writer_side).map(|p| self.parties[*p].name.clone());
        let message_index = message.index;
        let what = format!(
            "group_decrypt {} ← {} in {} (#{}, {} bytes)",
            self.parties[reader].name,
            self.parties[sender].name,
            self.groups[group].id,
            message.index + 1,
            ciphertext.len()
        );
        match how {
            Delivery::Drop => return Ok(()),
            Delivery::Tamper if !ciphertext.is_empty() => {
                let mut tampered = ciphertext.clone();
                let at = self.rng.random_range(0..tampered.len());
                tampered[at] ^= 1 << self.rng.random_range(0..8);
                let request = self.group_request(group, reader, sender, &tampered);
                self.expect_error(reader_side, &request.to_line(), &[], &format!("{what} with byte {at} tampered"))?;
            }
            Delivery::Tamper | Delivery::Normal | Delivery::Duplicate => {}
        }
        let request = self.group_request(group, reader, sender, &ciphertext);
        let read = match self.expect_read(reader_side, &request, &what, &exchange)? {
            Some(reply) => self.check_plaintext(reader_side, reply, &plaintext, &what, &exchange),
            None => false,
        };
        let message = &mut self.groups[group].in_flight[index];
        if read { message.read_by.push(reader) } else { message.refused_by.push(reader) }
        if !read {
            return Ok(());
        }
        let highest = self.group_highest_read.entry((group, sender, reader)).or_insert(message_index);
        *highest = (*highest).max(message_index);
        if let Delivery::Duplicate = how {
            self.expect_error(reader_side, &request.to_line(), &[ErrorKind::Duplicate], &format!("{what} delivered twice"))?;
        }
        Ok(())
    }

    /// Members removed before a message was sent must not read it. If one reads exactly what
    /// was sent, the sender encrypted under a key the removed member still holds (the sender's
    /// fault); if it "reads" something else, it accepted bytes it could not read (its own).
    fn check_excluded(&mut self, group: usize, message: &GroupMessage) -> Step {
        for &removed in &message.excluded {
            let request = self.group_request(group, removed, message.sender, &message.ciphertext);
            let what = format!(
                "group_decrypt by {}, removed from {} before {} sent this",
                self.parties[removed].name, self.groups[group].id, self.parties[message.sender].name
            );
            let reader = self.side_of(removed);
            let Some(response) = self.call(reader, &request)? else { continue };
            let label = self.label(reader);
            let failure = match response {
                Response::Err(error) if error.detail != INTERNAL_ERROR => None,
                Response::Err(error) => Some(Failure::of(reader, format!("{label} {what}: expected an error, got {}", describe(&error)))),
                Response::Ok(Reply::Plaintext { plaintext }) if plaintext.as_bytes() == message.plaintext => {
                    let writer = self.side_of(message.sender);
                    let w = self.label(writer);
                    Some(Failure {
                        fault: Fault::side(writer),
                        what: format!("{label} {what}: expected an error, but it read the message"),
                        why: Some(format!("{w} encrypted it under a sender key the removed member still holds")),
                    })
                }
                Response::Ok(_) => Some(Failure::of(reader, format!("{label} {what}: expected an error, got success with another plaintext"))),
            };
            match failure {
                None => {
                    self.checker.pass();
                }
                Some(failure) => self.checker.fail(failure),
            }
        }
        Ok(())
    }

    fn remove_from_group(&mut self) -> Step {
        let eligible: Vec<usize> = (0..self.groups.len())
            .filter(|g| self.groups[*g].members.len() >= 3 && self.groups[*g].rotations < MAX_ROTATIONS)
            .collect();
        let Some(&group) = eligible.choose(&mut self.rng) else { return self.group_send() };
        let g = &mut self.groups[group];
        let removed = g.members.remove(self.rng.random_range(0..g.members.len()));
        g.removed.push(removed);
        g.rotations += 1;
        for member in self.groups[group].members.clone() {
            self.distribute(group, member, true)?;
        }
        Ok(())
    }

    // ---- hostile requests ---------------------------------------------------------------

    /// Lines a peer must refuse, each followed by a `hello` it must still answer. Most are a
    /// valid request with one field broken.
    fn hostile_requests(&mut self, peer: usize, all: bool) -> Step {
        let own = self.parties.iter().position(|p| p.peer == peer).expect("parties on both sides");
        let other = self.parties.iter().position(|p| p.peer != peer).expect("parties on both sides");
        let (own, other) = (self.parties[own].name.clone(), self.parties[other].name.clone());
        let create = Request::Create { party: "x".into(), registration_id: 1, device_id: 1, prekeys: 1 };
        let decrypt = |ciphertext: &[u8]| Request::Decrypt {
            party: own.clone(),
            peer: other.clone(),
            kind: MessageType::Signal,
            ciphertext: ciphertext.into(),
        };
        let bad_request = &[ErrorKind::BadRequest][..];
        let cases: Vec<(String, &[ErrorKind], &str)> = vec![
            ("this is not json".into(), bad_request, "a line that is not JSON"),
            ("[1, 2, 3]".into(), bad_request, "a JSON array"),
            ("{}".into(), bad_request, "an object without op"),
            (edit(&Request::Hello, &[("op", Some("frobnicate".into()))]), &[ErrorKind::Unsupported], "an unknown op"),
            (
                edit(&create, &[("registration_id", None), ("device_id", None), ("prekeys", None)]),
                bad_request,
                "create without its fields",
            ),
            (edit(&create, &[("registration_id", Some("one".into()))]), bad_request, "a string where a number belongs"),
            (
                Request::Encrypt { party: "nobody".into(), peer: other.clone(), plaintext: Hex(vec![0]) }.to_line(),
                &[ErrorKind::UnknownParty],
                "an unknown party",
            ),
            (edit(&decrypt(&[0]), &[("ciphertext", Some("abc".into()))]), bad_request, "odd-length hex"),
            (edit(&decrypt(&[0]), &[("ciphertext", Some("zz".into()))]), bad_request, "hex with non-hex digits"),
            (edit(&decrypt(&[0]), &[("type", Some("carrier pigeon".into()))]), bad_request, "an unknown message type"),
            (
                decrypt(&[0x33, 0xff, 0xff, 0xff, 0xff]).to_line(),
                &[ErrorKind::InvalidMessage, ErrorKind::NoSession],
                "garbage ciphertext",
            ),
            (
                Request::GroupDecrypt { party: own.clone(), group: "no-such-group".into(), sender: other.clone(), ciphertext: Hex(vec![0x33, 0xff]) }
                    .to_line(),
                &[ErrorKind::InvalidMessage, ErrorKind::NoSession],
                "a group message for an unknown group",
            ),
        ];
        let chosen: Vec<_> = if all { cases } else { cases.into_iter().filter(|_| self.rng.random_bool(0.25)).collect() };
        for (line, kinds, what) in chosen {
            self.expect_error(peer, &line, kinds, &format!("hostile request ({what})"))?;
            self.still_serving(peer)?;
        }
        if all {
            let huge = Request::Encrypt { party: own, peer: other, plaintext: Hex(vec![0; HUGE_HEX_LEN / 2]) };
            self.expect_error(peer, &huge.to_line(), bad_request, "hostile request (16 MiB of hex)")?;
            self.still_serving(peer)?;
        }
        Ok(())
    }

    fn still_serving(&mut self, peer: usize) -> Step {
        self.expect_ok(peer, &Request::Hello, "hello after a hostile request").map(drop)
    }

    // ---- the end --------------------------------------------------------------------------

    /// Delivers everything still in flight, oldest first.
    fn drain(&mut self) -> Step {
        let paths: Vec<_> = self.in_flight.keys().copied().collect();
        for path in paths {
            let queue = std::mem::take(self.in_flight.get_mut(&path).expect("a key of the map"));
            for message in queue {
                self.deliver_pairwise(path, message, Delivery::Normal)?;
            }
        }
        for group in 0..self.groups.len() {
            while !self.groups[group].in_flight.is_empty() {
                while let Some(reader) = self.groups[group].in_flight[0].recipients.pop() {
                    self.deliver_group(group, 0, reader, Delivery::Normal)?;
                }
                let message = self.groups[group].in_flight.remove(0);
                self.check_excluded(group, &message)?;
            }
        }
        Ok(())
    }
}

/// A request line with fields replaced (`Some`) or removed (`None`): a hostile line that is a
/// valid request but for those fields.
fn edit(request: &Request, edits: &[(&str, Option<Value>)]) -> String {
    let Ok(Value::Object(mut object)) = serde_json::to_value(request) else { unreachable!("a request is an object") };
    for (field, value) in edits {
        match value {
            Some(value) => object.insert((*field).to_owned(), value.clone()),
            None => object.remove(*field),
        };
    }
    Value::Object(object).to_string()
}

/// The `i`-th self-check message: `size` bytes that differ from message to message.
fn self_check_plaintext(i: usize, size: usize) -> Vec<u8> {
    (0..size).map(|j| (j * 7 + i * 31) as u8).collect()
}

/// A peer's error as the report prints it. Its detail is the peer's own text: at most
/// [`DETAIL_SHOWN`] characters of it, control characters made spaces, so that it cannot fill the
/// report or write lines of its own into it.
fn describe(error: &PeerError) -> String {
    if error.detail.is_empty() {
        return format!("error {}", error.kind);
    }
    let detail: String = error.detail.chars().take(DETAIL_SHOWN).map(|c| if c.is_control() { ' ' } else { c }).collect();
    let cut = if error.detail.chars().nth(DETAIL_SHOWN).is_some() { "…" } else { "" };
    format!("error {} ({detail}{cut})", error.kind)
}

/// Characters of a peer's error detail a report shows.
const DETAIL_SHOWN: usize = 200;

#[cfg(test)]
mod report_tests {
    use super::*;
    use crate::protocol::ErrorKind;

    #[test]
    fn a_peers_detail_cannot_write_lines_of_its_own_or_fill_the_report() {
        let forged = PeerError::new(ErrorKind::InvalidMessage, format!("x\nFAIL seed=1 step=3: [fault: A] {}", "y".repeat(10_000)));
        let shown = describe(&forged);
        assert!(!shown.contains('\n'), "{shown}");
        assert!(shown.chars().count() < DETAIL_SHOWN + 40, "{} characters", shown.chars().count());
        assert!(shown.ends_with("…)"));
    }
}
