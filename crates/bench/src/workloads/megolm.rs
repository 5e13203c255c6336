//! Matrix's Megolm (crates.io `vodozemac`, version 1 sessions as Matrix clients use them): an
//! outbound `GroupSession` per sender (`encrypt`: AES-256-CBC, HMAC-SHA-256 truncated to 8 bytes,
//! an Ed25519 signature), an `InboundGroupSession` per sender at each receiver (`decrypt`: the
//! signature, the MAC, the decryption). The session key travels as it does in Matrix (over Olm;
//! here directly). Messages go over the wire as `MegolmMessage::to_bytes` and are parsed with
//! `MegolmMessage::from_bytes` inside the timed region, as the other implementations parse.

use std::hint::black_box;
use std::time::Duration;

use vodozemac::megolm::{GroupSession, InboundGroupSession, MegolmMessage, SessionConfig};

use crate::clock::Instant;
use super::group::queue;
use super::{CATCHUP_SENDERS, Op, SMALL, Workload, chunk_len, chunked, plaintext};

/// The workload of a group message op. (vodozemac draws its keys from the OS RNG: no seed.)
pub fn workload(op: Op, _seed: u64) -> Box<dyn Workload> {
    match op {
        Op::GroupEncrypt100 => Box::new(Encrypt { sender: GroupSession::new(SessionConfig::version_1()), plaintext: plaintext(SMALL) }),
        Op::GroupDecrypt100 => {
            let (sender, receiver) = pair();
            Box::new(Decrypt { sender, receiver, plaintext: plaintext(SMALL) })
        }
        Op::GroupCatchup1000 => {
            let (senders, receivers) = (0..CATCHUP_SENDERS).map(|_| pair()).unzip();
            Box::new(Catchup { senders, receivers, plaintext: plaintext(SMALL) })
        }
        _ => unreachable!("{} is not a group message op", op.name()),
    }
}

/// A sender's outbound session and a receiver's inbound session for it.
fn pair() -> (GroupSession, InboundGroupSession) {
    let sender = GroupSession::new(SessionConfig::version_1());
    let receiver = InboundGroupSession::new(&sender.session_key(), SessionConfig::version_1());
    (sender, receiver)
}

struct Encrypt {
    sender: GroupSession,
    plaintext: Vec<u8>,
}

impl Workload for Encrypt {
    fn run(&mut self, iters: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(self.sender.encrypt(&self.plaintext).to_bytes());
        }
        start.elapsed()
    }
}

struct Decrypt {
    sender: GroupSession,
    receiver: InboundGroupSession,
    plaintext: Vec<u8>,
}

impl Workload for Decrypt {
    fn run(&mut self, iters: u64) -> Duration {
        chunked(
            self,
            iters,
            chunk_len(SMALL),
            |this, n| (0..n).map(|_| this.sender.encrypt(&this.plaintext).to_bytes()).collect::<Vec<_>>(),
            |this, batch| {
                for bytes in batch.iter() {
                    let message = MegolmMessage::from_bytes(bytes).expect("parse");
                    black_box(this.receiver.decrypt(&message).expect("decrypt"));
                }
            },
        )
    }
}

/// `group_catchup_1000`: one `decrypt` per message (vodozemac has no batch verification).
struct Catchup {
    senders: Vec<GroupSession>,
    receivers: Vec<InboundGroupSession>,
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
                queue(&mut this.senders, |sender| sender.encrypt(plaintext).to_bytes())
            },
            |this, queued| {
                for (from, bytes) in queued.iter() {
                    let message = MegolmMessage::from_bytes(bytes).expect("parse");
                    black_box(this.receivers[*from].decrypt(&message).expect("decrypt"));
                }
            },
        )
    }
}
