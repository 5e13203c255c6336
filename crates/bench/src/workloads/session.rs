//! Switchboard's own implementation (crates/session), under either suite, through its public API
//! with the in-memory store: the path an application takes.

use std::hint::black_box;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_session::testing::Device;
use switchboard_session::{CiphertextMessage, MessageKind, PreKeyBundle, ProtocolAddress, Suite, session};

use super::{Kind, Op, Report, Workload, chunk_len, chunked, each, number, plaintext, time_encrypts};

/// The workload of `op` under `suite`.
pub fn workload(op: Op, suite: Suite, seed: u64) -> Box<dyn Workload> {
    let len = op.message_len();
    match op {
        Op::SessionSetup => Box::new(Setup::new(suite, seed)),
        Op::Encrypt100 | Op::Encrypt64k => Box::new(Encrypt::new(Pair::established(suite, seed), plaintext(len))),
        Op::Decrypt100 | Op::Decrypt64k => Box::new(Decrypt {
            pair: Pair::established(suite, seed),
            plaintext: plaintext(len),
            sent: 0,
            report: Report::new(Kind::Decrypt, len),
        }),
        _ => unreachable!("{} is not a 1:1 op", op.name()),
    }
}

/// The address the initiator ("alice") knows the responder ("bob") by, and the other way round.
pub fn addresses() -> (ProtocolAddress, ProtocolAddress) {
    (ProtocolAddress::new("alice@bench", 1), ProtocolAddress::new("bob@bench", 1))
}

/// The responder's bundle as the comparison with libsignal-c needs it: under `signal-v3` a plain
/// libsignal bundle (no suites list, so one signature to verify, as libsignal-c verifies); under
/// the other suites the signed suites list a Switchboard device publishes (a second signature)
/// naming that suite and the classical ones below it, and under a post-quantum suite its one KEM
/// prekey (a third signature).
pub fn bundle_for(device: &mut Device, suite: Suite, rng: &mut StdRng) -> PreKeyBundle {
    match suite {
        Suite::SignalV3 => {
            let mut bundle = device.bundle(&[Suite::SignalV3], rng);
            bundle.suites = None;
            bundle
        }
        Suite::Aes256Gcm => device.bundle(&[Suite::Aes256Gcm, Suite::SignalV3], rng),
        Suite::SignalPqxdh => device.bundle(&[Suite::SignalPqxdh, Suite::SignalV3], rng),
        Suite::PqAes256Gcm => device.bundle(&[Suite::PqAes256Gcm, Suite::Aes256Gcm, Suite::SignalV3], rng),
    }
}

/// What one suite puts on the wire.
pub struct Sizes {
    /// The suite.
    pub suite: Suite,
    /// The serialized bundle the initiator fetches ([`bundle_for`]).
    pub bundle: usize,
    /// The PreKeySignalMessage carrying 100 bytes.
    pub first_message: usize,
    /// A SignalMessage carrying 100 bytes, once the session is established.
    pub later_message: usize,
}

/// The bundle and message sizes of every suite.
pub fn sizes() -> Vec<Sizes> {
    Suite::ALL
        .into_iter()
        .map(|suite| {
            let mut rng = StdRng::seed_from_u64(1);
            let (mut pair, bundle) = Pair::new(suite, &mut rng);
            session::process_prekey_bundle(&mut pair.alice.store, &pair.bob_at, &bundle, suite, &mut pair.rng).expect("bundle");
            let text = plaintext(super::SMALL);
            let first = session::encrypt(&mut pair.alice.store, &pair.bob_at, &text).expect("encrypt");
            session::decrypt(&mut pair.bob.store, &pair.alice_at, &first, &mut pair.rng).expect("decrypt");
            let later = session::encrypt(&mut pair.bob.store, &pair.alice_at, &text).expect("encrypt");
            Sizes { suite, bundle: bundle.serialize().len(), first_message: first.serialize().len(), later_message: later.serialize().len() }
        })
        .collect()
}

/// Two devices and the RNG they draw from.
pub struct Pair {
    /// The suite their session uses.
    pub suite: Suite,
    /// The initiator.
    pub alice: Device,
    /// The responder.
    pub bob: Device,
    /// The seeded RNG both draw from.
    pub rng: StdRng,
    /// Alice's address, as Bob names her.
    pub alice_at: ProtocolAddress,
    /// Bob's address, as Alice names him.
    pub bob_at: ProtocolAddress,
}

impl Pair {
    /// Two fresh devices with no session.
    pub fn new(suite: Suite, rng: &mut StdRng) -> (Pair, PreKeyBundle) {
        let alice = Device::new(101, 1, rng);
        let mut bob = Device::new(202, 1, rng);
        let bundle = bundle_for(&mut bob, suite, rng);
        let (alice_at, bob_at) = addresses();
        let rng = StdRng::from_rng(rng);
        (Pair { suite, alice, bob, rng, alice_at, bob_at }, bundle)
    }

    /// Two devices in a steady conversation: alice started the session, bob replied, alice wrote
    /// again, so both have a sending and a receiving chain and messages are SignalMessages.
    pub fn established(suite: Suite, seed: u64) -> Pair {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut pair, bundle) = Pair::new(suite, &mut rng);
        session::process_prekey_bundle(&mut pair.alice.store, &pair.bob_at, &bundle, suite, &mut pair.rng)
            .expect("bundle");
        for round in 0..3 {
            let message = plaintext(16);
            if round % 2 == 0 {
                let sent = session::encrypt(&mut pair.alice.store, &pair.bob_at, &message).expect("encrypt");
                let got = session::decrypt(&mut pair.bob.store, &pair.alice_at, &sent, &mut pair.rng).expect("decrypt");
                assert_eq!(got, message);
            } else {
                let sent = session::encrypt(&mut pair.bob.store, &pair.alice_at, &message).expect("encrypt");
                let got = session::decrypt(&mut pair.alice.store, &pair.bob_at, &sent, &mut pair.rng).expect("decrypt");
                assert_eq!(got, message);
            }
        }
        let probe = session::encrypt(&mut pair.alice.store, &pair.bob_at, b"probe").expect("encrypt");
        assert_eq!(probe.kind(), MessageKind::Signal, "the conversation is established");
        session::decrypt(&mut pair.bob.store, &pair.alice_at, &probe, &mut pair.rng).expect("decrypt");
        pair
    }
}

/// Has `from` write `text` to `to` over their session and `to` read it; says what went wrong.
fn exchange(from: &mut Device, to: &mut Device, to_at: &ProtocolAddress, from_at: &ProtocolAddress, rng: &mut StdRng, text: &[u8]) -> Result<(), String> {
    let sent = session::encrypt(&mut from.store, to_at, text).map_err(|e| format!("encrypt: {e}"))?;
    let got = session::decrypt(&mut to.store, from_at, &sent, rng).map_err(|e| format!("decrypt: {e}"))?;
    if got != text {
        return Err(format!("decrypted {} bytes, not the {} sent", got.len(), text.len()));
    }
    Ok(())
}

/// `session_setup`: fresh devices per iteration, made before the clock starts.
struct Setup {
    suite: Suite,
    rng: StdRng,
    plaintext: Vec<u8>,
    report: Report,
}

impl Setup {
    fn new(suite: Suite, seed: u64) -> Self {
        Setup { suite, rng: StdRng::seed_from_u64(seed), plaintext: plaintext(super::SMALL), report: Report::new(Kind::Setup, super::SMALL) }
    }
}

impl Workload for Setup {
    fn run(&mut self, iters: u64) -> Duration {
        let mut sessions = 0;
        let took = chunked(
            self,
            iters,
            chunk_len(super::SMALL).min(256),
            |this, n| (0..n).map(|_| Pair::new(this.suite, &mut this.rng)).collect::<Vec<_>>(),
            |this, pairs| {
                each(pairs, &mut sessions, |(pair, bundle)| {
                    session::process_prekey_bundle(&mut pair.alice.store, &pair.bob_at, bundle, this.suite, &mut pair.rng)
                        .expect("bundle");
                    let sent = session::encrypt(&mut pair.alice.store, &pair.bob_at, &this.plaintext).expect("encrypt");
                    let received = CiphertextMessage::parse(MessageKind::PreKey, sent.serialize()).expect("parse");
                    let got =
                        session::decrypt(&mut pair.bob.store, &pair.alice_at, &received, &mut pair.rng).expect("decrypt");
                    black_box(got)
                })
            },
            |this, mut pairs, got| {
                // The last setup of the batch: the first message as sent, and a session both use.
                let Some(got) = got else { return };
                this.report.check_bytes(&got, &this.plaintext, "session_setup: the first message, as the responder read it");
                let (pair, _) = pairs.last_mut().expect("a pair per setup");
                let answered = exchange(&mut pair.bob, &mut pair.alice, &pair.alice_at, &pair.bob_at, &mut pair.rng, b"reply");
                this.report.check(answered.is_ok(), || format!("session_setup: the responder's reply over the new session: {}", answered.unwrap_err()));
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

/// `encrypt_*`: alice encrypts; the ciphertexts are dropped (bob reads only the last of each run,
/// in [`Workload::report`]).
struct Encrypt {
    pair: Pair,
    plaintext: Vec<u8>,
    report: Report,
    /// The last message of the last run, kept for [`Workload::report`].
    last: Option<CiphertextMessage>,
    /// The counter of the last message bob read, and how many alice had encrypted then.
    counter: u32,
    reported: u64,
}

impl Encrypt {
    /// Before the first run, a probe (untimed, read by bob) says where alice's chain stands.
    fn new(mut pair: Pair, plaintext: Vec<u8>) -> Self {
        let probe = session::encrypt(&mut pair.alice.store, &pair.bob_at, b"probe").expect("encrypt");
        session::decrypt(&mut pair.bob.store, &pair.alice_at, &probe, &mut pair.rng).expect("decrypt");
        let CiphertextMessage::Signal(probe) = probe else { panic!("the conversation is established") };
        let report = Report::new(Kind::Encrypt, plaintext.len());
        Encrypt { pair, plaintext, report, last: None, counter: probe.counter(), reported: 0 }
    }
}

impl Workload for Encrypt {
    fn run(&mut self, iters: u64) -> Duration {
        let pair = &mut self.pair;
        time_encrypts(iters, &mut self.report, &mut self.last, || {
            let sent = session::encrypt(&mut pair.alice.store, &pair.bob_at, &self.plaintext).expect("encrypt");
            black_box(sent.serialize());
            sent
        })
    }

    /// Bob reads the last message: its counter is the last one he read plus the messages
    /// encrypted since, and it decrypts to the plaintext.
    fn report(&mut self) -> Report {
        if let Some(last) = self.last.take() {
            let since = self.report.messages - self.reported;
            let expected = self.counter + since as u32;
            let counter = match &last {
                CiphertextMessage::Signal(message) => message.counter(),
                CiphertextMessage::PreKey(message) => message.message().counter(),
            };
            self.report.check(counter == expected, || {
                format!("encrypt: the last message is number {counter} of its chain, expected {expected} ({since} encrypted after number {})", self.counter)
            });
            let pair = &mut self.pair;
            match session::decrypt(&mut pair.bob.store, &pair.alice_at, &last, &mut pair.rng) {
                Ok(got) => self.report.check_bytes(&got, &self.plaintext, "encrypt: the last message, as its receiver read it"),
                Err(e) => self.report.check(false, || format!("encrypt: the receiver cannot read the last message: {e}")),
            }
            (self.counter, self.reported) = (counter, self.report.messages);
        }
        self.report.clone()
    }
}

/// `decrypt_*`: alice encrypts a batch before the clock starts (each message numbered, see
/// [`number`]); bob decrypts it from wire bytes, in order (parsing included, as libsignal-c
/// parses inside its decrypt; the bytes are moved into the message, as a receiver that owns what it
/// read does, not copied); the last plaintext of the batch is checked after the clock stops.
struct Decrypt {
    pair: Pair,
    plaintext: Vec<u8>,
    /// Messages alice has encrypted (the number the next one carries).
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
                let pair = &mut this.pair;
                (0..n)
                    .map(|_| {
                        number(&mut this.plaintext, this.sent);
                        this.sent += 1;
                        let sent =
                            session::encrypt(&mut pair.alice.store, &pair.bob_at, &this.plaintext).expect("encrypt");
                        sent.serialize().to_vec()
                    })
                    .collect::<Vec<_>>()
            },
            |this, batch| {
                let pair = &mut this.pair;
                each(batch, &mut count, |bytes| {
                    let received = CiphertextMessage::parse_owned(MessageKind::Signal, std::mem::take(bytes)).expect("parse");
                    let got = session::decrypt_owned(&mut pair.bob.store, &pair.alice_at, received, &mut pair.rng).expect("decrypt");
                    black_box(got)
                })
            },
            |this, _, got| {
                if let Some(got) = got {
                    // `this.plaintext` is the last message prepared.
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
