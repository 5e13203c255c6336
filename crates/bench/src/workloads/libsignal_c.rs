//! Signal's reference C library (libsignal-protocol-c) through the project's safe harness
//! (crates/libsignal-c): the same operations, the same message sizes, the same order of events.

use std::hint::black_box;
use std::time::Duration;

use switchboard_libsignal_c::{Bundle, MessageKind, Party};

use crate::clock::Instant;
use super::{Op, Workload, chunk_len, chunked, plaintext};

const ALICE: &str = "alice@bench";
const BOB: &str = "bob@bench";

/// The workload of `op`.
pub fn workload(op: Op, seed: u64) -> Box<dyn Workload> {
    let len = op.message_len();
    match op {
        Op::SessionSetup => Box::new(Setup { seed, plaintext: plaintext(super::SMALL) }),
        Op::Encrypt100 | Op::Encrypt64k => Box::new(Encrypt { pair: Pair::established(seed), plaintext: plaintext(len) }),
        Op::Decrypt100 | Op::Decrypt64k => Box::new(Decrypt { pair: Pair::established(seed), plaintext: plaintext(len) }),
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

/// `session_setup`: a pool of fresh parties made before the clock starts.
struct Setup {
    seed: u64,
    plaintext: Vec<u8>,
}

impl Workload for Setup {
    fn run(&mut self, iters: u64) -> Duration {
        chunked(
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
                for (pair, bundle) in pairs.iter_mut() {
                    pair.alice.process_bundle(BOB, 1, bundle).expect("bundle");
                    let (kind, bytes) = pair.alice.encrypt(BOB, 1, &this.plaintext).expect("encrypt");
                    let got = pair.bob.decrypt(ALICE, 1, kind, &bytes).expect("decrypt");
                    black_box(got);
                }
            },
        )
    }
}

struct Encrypt {
    pair: Pair,
    plaintext: Vec<u8>,
}

impl Workload for Encrypt {
    fn run(&mut self, iters: u64) -> Duration {
        let alice = &mut self.pair.alice;
        let start = Instant::now();
        for _ in 0..iters {
            let sent = alice.encrypt(BOB, 1, &self.plaintext).expect("encrypt");
            black_box(sent);
        }
        start.elapsed()
    }
}

struct Decrypt {
    pair: Pair,
    plaintext: Vec<u8>,
}

impl Workload for Decrypt {
    fn run(&mut self, iters: u64) -> Duration {
        chunked(
            self,
            iters,
            chunk_len(self.plaintext.len()),
            |this, n| {
                (0..n).map(|_| this.pair.alice.encrypt(BOB, 1, &this.plaintext).expect("encrypt")).collect::<Vec<_>>()
            },
            |this, batch| {
                for (kind, bytes) in batch.iter() {
                    let got = this.pair.bob.decrypt(ALICE, 1, *kind, bytes).expect("decrypt");
                    black_box(got);
                }
            },
        )
    }
}
