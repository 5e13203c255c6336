//! Groups in Signal's reference C library (libsignal-protocol-c's group_session_builder and
//! group_cipher) through the project's safe harness (`Party::group_*`, crates/libsignal-c): the
//! same messages, sizes and order of events as the Switchboard group workloads.

use std::hint::black_box;
use std::time::Duration;

use switchboard_libsignal_c::Party;

use crate::clock::Instant;
use super::group::{GROUP, queue};
use super::{CATCHUP_SENDERS, Op, SMALL, Workload, chunk_len, chunked, plaintext};

/// The workload of a group message op.
pub fn workload(op: Op, seed: u64) -> Box<dyn Workload> {
    match op {
        Op::GroupEncrypt100 => {
            let mut sender = member(0, seed);
            sender.group_distribution(GROUP).expect("distribution");
            Box::new(Encrypt { sender, plaintext: plaintext(SMALL) })
        }
        Op::GroupDecrypt100 => {
            let (senders, receiver) = group(1, seed);
            Box::new(Decrypt { sender: senders.into_iter().next().expect("one"), receiver, plaintext: plaintext(SMALL) })
        }
        Op::GroupCatchup1000 => {
            let (senders, receiver) = group(CATCHUP_SENDERS, seed);
            Box::new(Catchup { senders, receiver, plaintext: plaintext(SMALL) })
        }
        _ => unreachable!("{} is not a group message op", op.name()),
    }
}

/// The name member `index` is known by.
fn name(index: usize) -> String {
    format!("sender-{index}@bench")
}

/// Member `index` (one one-time prekey: the group ops need none, `Party::new` wants one).
fn member(index: usize, seed: u64) -> Party {
    Party::new(1000 + index as u32, 1, 1, seed.wrapping_mul(31).wrapping_add(index as u64)).expect("party")
}

/// `senders` senders with their sender keys and a receiver that processed all their distributions.
fn group(senders: usize, seed: u64) -> (Vec<(String, Party)>, Party) {
    let mut receiver = member(999, seed);
    let senders = (0..senders)
        .map(|index| {
            let mut sender = member(index, seed);
            let distribution = sender.group_distribution(GROUP).expect("distribution");
            receiver.group_process(GROUP, &name(index), 1, &distribution).expect("process");
            (name(index), sender)
        })
        .collect();
    (senders, receiver)
}

struct Encrypt {
    sender: Party,
    plaintext: Vec<u8>,
}

impl Workload for Encrypt {
    fn run(&mut self, iters: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(self.sender.group_encrypt(GROUP, &self.plaintext).expect("encrypt"));
        }
        start.elapsed()
    }
}

struct Decrypt {
    sender: (String, Party),
    receiver: Party,
    plaintext: Vec<u8>,
}

impl Workload for Decrypt {
    fn run(&mut self, iters: u64) -> Duration {
        chunked(
            self,
            iters,
            chunk_len(SMALL),
            |this, n| (0..n).map(|_| this.sender.1.group_encrypt(GROUP, &this.plaintext).expect("encrypt")).collect::<Vec<_>>(),
            |this, batch| {
                for bytes in batch.iter() {
                    black_box(this.receiver.group_decrypt(GROUP, &this.sender.0, 1, bytes).expect("decrypt"));
                }
            },
        )
    }
}

/// `group_catchup_1000`: one `group_decrypt` per message (the C library has no batch verification).
struct Catchup {
    senders: Vec<(String, Party)>,
    receiver: Party,
    plaintext: Vec<u8>,
}

impl Workload for Catchup {
    fn run(&mut self, iters: u64) -> Duration {
        chunked(
            self,
            iters,
            1,
            |this, _| {
                let plaintext = &this.plaintext;
                queue(&mut this.senders, |(_, sender)| sender.group_encrypt(GROUP, plaintext).expect("encrypt"))
            },
            |this, queued| {
                for (from, bytes) in queued.iter() {
                    black_box(this.receiver.group_decrypt(GROUP, &this.senders[*from].0, 1, bytes).expect("decrypt"));
                }
            },
        )
    }
}
