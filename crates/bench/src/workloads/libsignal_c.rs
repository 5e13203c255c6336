//! Signal's reference C library (libsignal-protocol-c) through the project's safe harness
//! (crates/libsignal-c): the same operations, the same message sizes, the same order of events.

use std::hint::black_box;
use std::time::Duration;

use switchboard_libsignal_c::{Bundle, MessageKind, Party};

use super::{Kind, Op, Report, Workload, chunk_len, chunked, each, number, plaintext, time_encrypts};

const ALICE: &str = "alice@bench";
const BOB: &str = "bob@bench";

/// The workload of `op`.
pub fn workload(op: Op, seed: u64) -> Box<dyn Workload> {
    let len = op.message_len();
    match op {
        Op::SessionSetup => {
            Box::new(Setup { seed, plaintext: plaintext(super::SMALL), report: Report::new(Kind::Setup, super::SMALL) })
        }
        Op::Encrypt100 | Op::Encrypt64k => Box::new(Encrypt::new(Pair::established(seed), plaintext(len))),
        Op::Decrypt100 | Op::Decrypt64k => Box::new(Decrypt {
            pair: Pair::established(seed),
            plaintext: plaintext(len),
            sent: 0,
            report: Report::new(Kind::Decrypt, len),
        }),
        _ => unreachable!("{} is not a 1:1 op", op.name()),
    }
}

/// Two parties. `Party::new` generates the identity, signed prekey and one-time prekeys.
pub struct Pair {
    /// The initiator.
    pub alice: Party,
    /// The responder.
    pub bob: Party,
}

impl Pair {
    /// Two fresh parties (one one-time prekey each) and bob's bundle.
    pub fn new(seed: u64) -> (Pair, Bundle) {
        let alice = Party::new(101, 1, 1, seed.wrapping_mul(2)).expect("party");
        let mut bob = Party::new(202, 1, 1, seed.wrapping_mul(2).wrapping_add(1)).expect("party");
        let bundle = bob.bundle().expect("bundle");
        (Pair { alice, bob }, bundle)
    }

    /// A steady conversation, as in the Switchboard workloads: alice started, bob replied,
    /// alice wrote again.
    pub fn established(seed: u64) -> Pair {
        let (mut pair, bundle) = Pair::new(seed);
        pair.alice.process_bundle(BOB, 1, &bundle).expect("bundle");
        for round in 0..3 {
            let message = plaintext(16);
            let (from, to, to_name, from_name) = if round % 2 == 0 {
                (&mut pair.alice, &mut pair.bob, BOB, ALICE)
            } else {
                (&mut pair.bob, &mut pair.alice, ALICE, BOB)
            };
            let (kind, bytes) = from.encrypt(to_name, 1, &message).expect("encrypt");
            assert_eq!(to.decrypt(from_name, 1, kind, &bytes).expect("decrypt"), message);
        }
        let (kind, bytes) = pair.alice.encrypt(BOB, 1, b"probe").expect("encrypt");
        assert_eq!(kind, MessageKind::Signal, "the conversation is established");
        pair.bob.decrypt(ALICE, 1, kind, &bytes).expect("decrypt");
        pair
    }
}

/// The counter of a SignalMessage from libsignal-c (read with Switchboard's parser: the
/// `signal-v3` wire format is libsignal's).
fn counter(kind: MessageKind, bytes: &[u8]) -> Result<u32, String> {
    if kind != MessageKind::Signal {
        return Err(format!("a {kind:?} message, not a SignalMessage"));
    }
    switchboard_session::SignalMessage::parse(bytes).map(|message| message.counter()).map_err(|e| e.to_string())
}

/// `session_setup`: a pool of fresh parties made before the clock starts.
struct Setup {
    seed: u64,
    plaintext: Vec<u8>,
    report: Report,
}

impl Workload for Setup {
    fn run(&mut self, iters: u64) -> Duration {
        let mut sessions = 0;
        let took = chunked(
            self,
            iters,
            chunk_len(super::SMALL).min(256),
            |this, n| {
                (0..n)
                    .map(|_| {
                        this.seed = this.seed.wrapping_add(1);
                        Pair::new(this.seed)
                    })
                    .collect::<Vec<_>>()
            },
            |this, pairs| {
                each(pairs, &mut sessions, |(pair, bundle)| {
                    pair.alice.process_bundle(BOB, 1, bundle).expect("bundle");
                    let (kind, bytes) = pair.alice.encrypt(BOB, 1, &this.plaintext).expect("encrypt");
                    let got = pair.bob.decrypt(ALICE, 1, kind, &bytes).expect("decrypt");
                    black_box(got)
                })
            },
            |this, mut pairs, got| {
                // The last setup of the batch: the first message as sent, and a session both use.
                let Some(got) = got else { return };
                this.report.check_bytes(&got, &this.plaintext, "session_setup: the first message, as the responder read it");
                let (pair, _) = pairs.last_mut().expect("a pair per setup");
                let answered = pair
                    .bob
                    .encrypt(ALICE, 1, b"reply")
                    .and_then(|(kind, bytes)| pair.alice.decrypt(BOB, 1, kind, &bytes))
                    .map_err(|e| e.to_string());
                this.report.check(answered.as_deref() == Ok(b"reply".as_slice()), || {
                    format!("session_setup: the responder's reply over the new session: {answered:?}")
                });
            },
        );
        self.report.iterations += sessions;
        self.report.messages += sessions;
        took
    }

    fn report(&mut self) -> Report {
        self.report.clone()
    }
}

/// `encrypt_*`: alice encrypts; bob reads only the last message of each run, in
/// [`Workload::report`].
struct Encrypt {
    pair: Pair,
    plaintext: Vec<u8>,
    report: Report,
    last: Option<(MessageKind, Vec<u8>)>,
    /// The counter of the last message bob read, and how many alice had encrypted then.
    counter: u32,
    reported: u64,
}

impl Encrypt {
    /// Before the first run, a probe (untimed, read by bob) says where alice's chain stands.
    fn new(mut pair: Pair, plaintext: Vec<u8>) -> Self {
        let (kind, bytes) = pair.alice.encrypt(BOB, 1, b"probe").expect("encrypt");
        pair.bob.decrypt(ALICE, 1, kind, &bytes).expect("decrypt");
        let counter = counter(kind, &bytes).expect("a SignalMessage");
        let report = Report::new(Kind::Encrypt, plaintext.len());
        Encrypt { pair, plaintext, report, last: None, counter, reported: 0 }
    }
}

impl Workload for Encrypt {
    fn run(&mut self, iters: u64) -> Duration {
        let alice = &mut self.pair.alice;
        time_encrypts(iters, &mut self.report, &mut self.last, || {
            let sent = alice.encrypt(BOB, 1, &self.plaintext).expect("encrypt");
            black_box(sent)
        })
    }

    /// Bob reads the last message: its counter is the last one he read plus the messages
    /// encrypted since, and it decrypts to the plaintext.
    fn report(&mut self) -> Report {
        if let Some((kind, bytes)) = self.last.take() {
            let since = self.report.messages - self.reported;
            let expected = self.counter + since as u32;
            let got = counter(kind, &bytes);
            self.report.check(got == Ok(expected), || {
                format!("encrypt: the last message is number {got:?} of its chain, expected {expected} ({since} encrypted after number {})", self.counter)
            });
            match self.pair.bob.decrypt(ALICE, 1, kind, &bytes) {
                Ok(got) => self.report.check_bytes(&got, &self.plaintext, "encrypt: the last message, as its receiver read it"),
                Err(e) => self.report.check(false, || format!("encrypt: the receiver cannot read the last message: {e}")),
            }
            (self.counter, self.reported) = (got.unwrap_or(expected), self.report.messages);
        }
        self.report.clone()
    }
}

/// `decrypt_*`: numbered messages made before the clock starts; the last plaintext of each batch
/// checked after it stops.
struct Decrypt {
    pair: Pair,
    plaintext: Vec<u8>,
    sent: u64,
    report: Report,
}

impl Workload for Decrypt {
    fn run(&mut self, iters: u64) -> Duration {
        let mut count = 0;
        let took = chunked(
            self,
            iters,
            chunk_len(self.plaintext.len()),
            |this, n| {
                (0..n)
                    .map(|_| {
                        number(&mut this.plaintext, this.sent);
                        this.sent += 1;
                        this.pair.alice.encrypt(BOB, 1, &this.plaintext).expect("encrypt")
                    })
                    .collect::<Vec<_>>()
            },
            |this, batch| {
                each(batch, &mut count, |(kind, bytes)| {
                    let got = this.pair.bob.decrypt(ALICE, 1, *kind, bytes).expect("decrypt");
                    black_box(got)
                })
            },
            |this, _, got| {
                if let Some(got) = got {
                    this.report.check_bytes(&got, &this.plaintext, "decrypt: the last message of the batch");
                }
            },
        );
        self.report.iterations += count;
        self.report.messages += count;
        took
    }

    fn report(&mut self) -> Report {
        self.report.clone()
    }
}
