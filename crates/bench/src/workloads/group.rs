//! Switchboard's Sender Keys (crates/session/src/group) under either suite, through the public API
//! (`group::{create_distribution, process_distribution, encrypt, decrypt, decrypt_batch}`) with
//! `InMemorySenderKeyStore`: the path an application takes. Each member has a store of its own.

use std::hint::black_box;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_session::group::{self, InMemorySenderKeyStore, SenderKeyMessage};
use switchboard_session::{ProtocolAddress, Suite};

use crate::clock::Instant;
use super::{CATCHUP_MESSAGES, CATCHUP_SENDERS, Op, SMALL, Workload, chunk_len, chunked, plaintext};

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
        Op::GroupEncrypt100 => Box::new(Encrypt { sender: Sender::new(0, suite, seed), plaintext: plaintext(SMALL) }),
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

/// `group_encrypt_100`: the sender encrypts; nobody reads the messages.
struct Encrypt {
    sender: Sender,
    plaintext: Vec<u8>,
}

impl Workload for Encrypt {
    fn run(&mut self, iters: u64) -> Duration {
        let sender = &mut self.sender;
        let start = Instant::now();
        for _ in 0..iters {
            let message = group::encrypt(&mut sender.store, GROUP, &sender.address, &self.plaintext, &mut sender.rng)
                .expect("encrypt");
            black_box(message.serialize());
        }
        start.elapsed()
    }
}

/// `group_decrypt_100`: the sender encrypts a batch before the clock starts; the receiver parses
/// and decrypts it, in order.
struct Decrypt {
    sender: Sender,
    receiver: InMemorySenderKeyStore,
    plaintext: Vec<u8>,
}

impl Decrypt {
    fn new(suite: Suite, seed: u64) -> Self {
        let mut sender = Sender::new(0, suite, seed);
        let mut receiver = InMemorySenderKeyStore::default();
        sender.distribute_to(&mut receiver, suite);
        Decrypt { sender, receiver, plaintext: plaintext(SMALL) }
    }
}

impl Workload for Decrypt {
    fn run(&mut self, iters: u64) -> Duration {
        chunked(
            self,
            iters,
            chunk_len(SMALL),
            |this, n| (0..n).map(|_| this.sender.encrypt(&this.plaintext)).collect::<Vec<_>>(),
            |this, batch| {
                for bytes in batch.iter() {
                    let message = SenderKeyMessage::parse(bytes).expect("parse");
                    black_box(group::decrypt(&mut this.receiver, GROUP, &this.sender.address, &message).expect("decrypt"));
                }
            },
        )
    }
}

/// `group_catchup_1000`: ten senders each wrote 100 messages (interleaved round-robin) while the
/// receiver was away; made before the clock starts. Timed: parsing all of them and decrypting
/// them, with `group::decrypt_batch` or one `group::decrypt` each.
struct Catchup {
    senders: Vec<Sender>,
    receiver: InMemorySenderKeyStore,
    verify: Verify,
    plaintext: Vec<u8>,
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
        Catchup { senders, receiver, verify, plaintext: plaintext(SMALL) }
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
        chunked(
            self,
            iters,
            1,
            |this, _| {
                let plaintext = this.plaintext.clone();
                queue(&mut this.senders, |sender| sender.encrypt(&plaintext))
                    .into_iter()
                    .map(|(from, bytes)| (this.senders[from].address.clone(), bytes))
                    .collect::<Vec<_>>()
            },
            |this, queued| {
                let messages: Vec<(ProtocolAddress, SenderKeyMessage)> = std::mem::take(queued)
                    .into_iter()
                    .map(|(from, bytes)| (from, SenderKeyMessage::parse(&bytes).expect("parse")))
                    .collect();
                match this.verify {
                    Verify::Batch => {
                        for plaintext in group::decrypt_batch(&mut this.receiver, GROUP, &messages) {
                            black_box(plaintext.expect("decrypt"));
                        }
                    }
                    Verify::OneByOne => {
                        for (from, message) in &messages {
                            black_box(group::decrypt(&mut this.receiver, GROUP, from, message).expect("decrypt"));
                        }
                    }
                }
                black_box(messages);
            },
        )
    }
}
