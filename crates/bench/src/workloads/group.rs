//! Switchboard's Sender Keys (crates/session/src/group) under either suite, through the public API
//! (`group::{create_distribution, process_distribution, encrypt, decrypt, decrypt_batch}`) with
//! `InMemorySenderKeyStore`: the path an application takes. Each member has a store of its own.

use std::hint::black_box;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_session::group::{self, InMemorySenderKeyStore, SenderKeyMessage};
use switchboard_session::{ProtocolAddress, Suite};

use super::{CATCHUP_MESSAGES, CATCHUP_SENDERS, Kind, Op, Report, SMALL, Workload, chunk_len, chunked, each, number, plaintext, time_encrypts};

/// The group id every group workload uses.
pub const GROUP: &str = "bench-group";

/// How a member catching up checks signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// `group::decrypt_batch`: one Ed25519 batch verification for all the messages.
    Batch,
    /// `group::decrypt` for each message: one verification each.
    OneByOne,
}

/// The workload of a group message op (`group_encrypt_100`, `group_decrypt_100`,
/// `group_catchup_1000`) under `suite`; `verify` matters only for the catch-up.
pub fn workload(op: Op, suite: Suite, verify: Verify, seed: u64) -> Box<dyn Workload> {
    match op {
        Op::GroupEncrypt100 => Box::new(Encrypt::new(suite, seed)),
        Op::GroupDecrypt100 => Box::new(Decrypt::new(suite, seed)),
        Op::GroupCatchup1000 => Box::new(Catchup::new(suite, verify, seed)),
        _ => unreachable!("{} is not a group message op", op.name()),
    }
}

/// A member that sends: its address, its own sender key store and its RNG.
pub struct Sender {
    /// Its address.
    pub address: ProtocolAddress,
    /// Its sender keys (its own and those it received).
    pub store: InMemorySenderKeyStore,
    /// Its seeded RNG.
    pub rng: StdRng,
}

impl Sender {
    /// Member `index` with a fresh sender key under `suite`.
    pub fn new(index: usize, suite: Suite, seed: u64) -> Sender {
        let mut sender = Sender {
            address: ProtocolAddress::new(format!("sender-{index}@bench"), 1),
            store: InMemorySenderKeyStore::default(),
            rng: StdRng::seed_from_u64(seed ^ (0x5e4d_0000 + index as u64)),
        };
        group::create_distribution(&mut sender.store, GROUP, &sender.address, suite, &mut sender.rng).expect("distribution");
        sender
    }

    /// Hands this sender's key to `receiver` (over a pairwise session in real life; here directly).
    pub fn distribute_to(&mut self, receiver: &mut InMemorySenderKeyStore, suite: Suite) {
        let distribution =
            group::create_distribution(&mut self.store, GROUP, &self.address, suite, &mut self.rng).expect("distribution");
        let received = group::SenderKeyDistributionMessage::parse(distribution.serialize()).expect("parse");
        group::process_distribution(receiver, GROUP, &self.address, &received).expect("process");
    }

    /// The wire bytes of this sender's next group message.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Vec<u8> {
        group::encrypt(&mut self.store, GROUP, &self.address, plaintext, &mut self.rng).expect("encrypt").serialize().to_vec()
    }
}

/// `group_encrypt_100`: the sender encrypts; a receiver reads only the last message of each
/// run, in [`Workload::report`].
struct Encrypt {
    sender: Sender,
    plaintext: Vec<u8>,
    receiver: InMemorySenderKeyStore,
    last: Option<SenderKeyMessage>,
    /// The iteration of the last message the receiver read, and how many the sender had
    /// encrypted then.
    iteration: u32,
    reported: u64,
    report: Report,
}

impl Encrypt {
    /// The receiver gets the sender's key, and reads a probe (untimed) that says where the
    /// sender's chain stands.
    fn new(suite: Suite, seed: u64) -> Self {
        let mut sender = Sender::new(0, suite, seed);
        let mut receiver = InMemorySenderKeyStore::default();
        sender.distribute_to(&mut receiver, suite);
        let probe = SenderKeyMessage::parse(&sender.encrypt(b"probe")).expect("parse");
        group::decrypt(&mut receiver, GROUP, &sender.address, &probe).expect("decrypt");
        let report = Report::new(Kind::Encrypt, SMALL);
        Encrypt { sender, plaintext: plaintext(SMALL), receiver, last: None, iteration: probe.iteration(), reported: 0, report }
    }
}

impl Workload for Encrypt {
    fn run(&mut self, iters: u64) -> Duration {
        let sender = &mut self.sender;
        time_encrypts(iters, &mut self.report, &mut self.last, || {
            let message = group::encrypt(&mut sender.store, GROUP, &sender.address, &self.plaintext, &mut sender.rng)
                .expect("encrypt");
            black_box(message.serialize());
            message
        })
    }

    /// The receiver reads the last message: its iteration is the last one read plus the
    /// messages encrypted since, and it decrypts to the plaintext.
    fn report(&mut self) -> Report {
        if let Some(last) = self.last.take() {
            let since = self.report.messages - self.reported;
            let expected = self.iteration + since as u32;
            let iteration = last.iteration();
            self.report.check(iteration == expected, || {
                format!("group_encrypt: the last message is number {iteration} of its chain, expected {expected} ({since} encrypted after number {})", self.iteration)
            });
            match group::decrypt(&mut self.receiver, GROUP, &self.sender.address, &last) {
                Ok(got) => self.report.check_bytes(&got, &self.plaintext, "group_encrypt: the last message, as a member read it"),
                Err(e) => self.report.check(false, || format!("group_encrypt: a member cannot read the last message: {e}")),
            }
            (self.iteration, self.reported) = (iteration, self.report.messages);
        }
        self.report.clone()
    }
}

/// `group_decrypt_100`: the sender encrypts a batch of numbered messages before the clock starts;
/// the receiver parses and decrypts it, in order; the last plaintext is checked after.
struct Decrypt {
    sender: Sender,
    receiver: InMemorySenderKeyStore,
    plaintext: Vec<u8>,
    sent: u64,
    report: Report,
}

impl Decrypt {
    fn new(suite: Suite, seed: u64) -> Self {
        let mut sender = Sender::new(0, suite, seed);
        let mut receiver = InMemorySenderKeyStore::default();
        sender.distribute_to(&mut receiver, suite);
        Decrypt { sender, receiver, plaintext: plaintext(SMALL), sent: 0, report: Report::new(Kind::Decrypt, SMALL) }
    }
}

impl Workload for Decrypt {
    fn run(&mut self, iters: u64) -> Duration {
        let mut count = 0;
        let took = chunked(
            self,
            iters,
            chunk_len(SMALL),
            |this, n| {
                (0..n)
                    .map(|_| {
                        number(&mut this.plaintext, this.sent);
                        this.sent += 1;
                        this.sender.encrypt(&this.plaintext)
                    })
                    .collect::<Vec<_>>()
            },
            |this, batch| {
                each(batch, &mut count, |bytes| {
                    let message = SenderKeyMessage::parse(bytes).expect("parse");
                    black_box(group::decrypt(&mut this.receiver, GROUP, &this.sender.address, &message).expect("decrypt"))
                })
            },
            |this, _, got| {
                if let Some(got) = got {
                    this.report.check_bytes(&got, &this.plaintext, "group_decrypt: the last message of the batch");
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

/// `group_catchup_1000`: ten senders each wrote 100 numbered messages (interleaved round-robin)
/// while the receiver was away; made before the clock starts. Timed: parsing all of them and
/// decrypting them, with `group::decrypt_batch` or one `group::decrypt` each. The last plaintext
/// is checked after the clock stops.
struct Catchup {
    senders: Vec<Sender>,
    receiver: InMemorySenderKeyStore,
    verify: Verify,
    plaintext: Vec<u8>,
    sent: u64,
    report: Report,
}

impl Catchup {
    fn new(suite: Suite, verify: Verify, seed: u64) -> Self {
        let mut receiver = InMemorySenderKeyStore::default();
        let senders = (0..CATCHUP_SENDERS)
            .map(|index| {
                let mut sender = Sender::new(index, suite, seed);
                sender.distribute_to(&mut receiver, suite);
                sender
            })
            .collect();
        Catchup { senders, receiver, verify, plaintext: plaintext(SMALL), sent: 0, report: Report::new(Kind::Catchup, SMALL) }
    }
}

/// The queue a catching-up member finds: [`CATCHUP_MESSAGES`] of (sender index, message),
/// round-robin over `senders`, each made by `encrypt` (shared by every implementation's catch-up).
pub fn queue<S, T>(senders: &mut [S], mut encrypt: impl FnMut(&mut S) -> T) -> Vec<(usize, T)> {
    (0..CATCHUP_MESSAGES)
        .map(|i| {
            let from = i % senders.len();
            (from, encrypt(&mut senders[from]))
        })
        .collect()
}

impl Workload for Catchup {
    fn run(&mut self, iters: u64) -> Duration {
        let mut count = 0;
        let took = chunked(
            self,
            iters,
            1,
            |this, _| {
                let (plaintext, sent) = (&mut this.plaintext, &mut this.sent);
                queue(&mut this.senders, |sender| {
                    number(plaintext, *sent);
                    *sent += 1;
                    sender.encrypt(plaintext)
                })
                .into_iter()
                .map(|(from, bytes)| (this.senders[from].address.clone(), bytes))
                .collect::<Vec<_>>()
            },
            |this, queued| {
                let mut messages: Vec<(ProtocolAddress, SenderKeyMessage)> = std::mem::take(queued)
                    .into_iter()
                    .map(|(from, bytes)| (from, SenderKeyMessage::parse(&bytes).expect("parse")))
                    .collect();
                let last = match this.verify {
                    Verify::Batch => {
                        let mut plaintexts = group::decrypt_batch(&mut this.receiver, GROUP, &messages);
                        let last = plaintexts.pop();
                        for plaintext in plaintexts {
                            black_box(plaintext.expect("decrypt"));
                            count += 1;
                        }
                        last.map(|plaintext| {
                            count += 1;
                            black_box(plaintext.expect("decrypt"))
                        })
                    }
                    Verify::OneByOne => each(&mut messages, &mut count, |(from, message)| {
                        black_box(group::decrypt(&mut this.receiver, GROUP, from, message).expect("decrypt"))
                    }),
                };
                black_box(messages);
                last
            },
            |this, _, last| {
                this.report.iterations += 1;
                if let Some(got) = last {
                    this.report.check_bytes(&got, &this.plaintext, "group_catchup_1000: the last message");
                }
            },
        );
        self.report.messages += count;
        took
    }

    fn report(&mut self) -> Report {
        self.report.clone()
    }
}
