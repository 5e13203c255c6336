//! Matrix's Megolm (crates.io `vodozemac`, version 1 sessions as Matrix clients use them): an
//! outbound `GroupSession` per sender (`encrypt`: AES-256-CBC, HMAC-SHA-256 truncated to 8 bytes,
//! an Ed25519 signature), an `InboundGroupSession` per sender at each receiver (`decrypt`: the
//! signature, the MAC, the decryption). The session key travels as it does in Matrix (over Olm;
//! here directly). Messages go over the wire as `MegolmMessage::to_bytes` and are parsed with
//! `MegolmMessage::from_bytes` inside the timed region, as the other implementations parse.

use std::hint::black_box;
use std::time::Duration;

use vodozemac::megolm::{GroupSession, InboundGroupSession, MegolmMessage, SessionConfig};

use super::group::queue;
use super::{CATCHUP_SENDERS, Kind, Op, Report, SMALL, Workload, chunk_len, chunked, each, number, plaintext, time_encrypts};

/// The workload of a group message op. (vodozemac draws its keys from the OS RNG: no seed.)
pub fn workload(op: Op, _seed: u64) -> Box<dyn Workload> {
    match op {
        Op::GroupEncrypt100 => {
            let (sender, receiver) = pair();
            let report = Report::new(Kind::Encrypt, SMALL);
            Box::new(Encrypt { sender, receiver, plaintext: plaintext(SMALL), last: None, report })
        }
        Op::GroupDecrypt100 => {
            let (sender, receiver) = pair();
            Box::new(Decrypt { sender, receiver, plaintext: plaintext(SMALL), sent: 0, report: Report::new(Kind::Decrypt, SMALL) })
        }
        Op::GroupCatchup1000 => {
            let (senders, receivers) = (0..CATCHUP_SENDERS).map(|_| pair()).unzip();
            let report = Report::new(Kind::Catchup, SMALL);
            Box::new(Catchup { senders, receivers, plaintext: plaintext(SMALL), sent: 0, report })
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

/// `group_encrypt_100`: the sender encrypts; the receiver reads only the last message of each
/// run, in [`Workload::report`].
struct Encrypt {
    sender: GroupSession,
    receiver: InboundGroupSession,
    plaintext: Vec<u8>,
    last: Option<Vec<u8>>,
    report: Report,
}

impl Workload for Encrypt {
    fn run(&mut self, iters: u64) -> Duration {
        time_encrypts(iters, &mut self.report, &mut self.last, || black_box(self.sender.encrypt(&self.plaintext).to_bytes()))
    }

    /// The receiver reads the last message: its index is the number of messages encrypted before
    /// it (the session started at 0), and it decrypts to the plaintext.
    fn report(&mut self) -> Report {
        if let Some(last) = self.last.take() {
            let expected = self.report.messages - 1;
            match MegolmMessage::from_bytes(&last).map_err(|e| e.to_string()).and_then(|message| self.receiver.decrypt(&message).map_err(|e| e.to_string())) {
                Ok(got) => {
                    let index = u64::from(got.message_index);
                    self.report.check(index == expected, || format!("group_encrypt: the last message has index {index}, expected {expected}"));
                    self.report.check_bytes(&got.plaintext, &self.plaintext, "group_encrypt: the last message, as a member read it");
                }
                Err(e) => self.report.check(false, || format!("group_encrypt: a member cannot read the last message: {e}")),
            }
        }
        self.report.clone()
    }
}

/// `group_decrypt_100`: numbered messages made before the clock starts; the last plaintext of
/// each batch checked after it stops.
struct Decrypt {
    sender: GroupSession,
    receiver: InboundGroupSession,
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
            chunk_len(SMALL),
            |this, n| {
                (0..n)
                    .map(|_| {
                        number(&mut this.plaintext, this.sent);
                        this.sent += 1;
                        this.sender.encrypt(&this.plaintext).to_bytes()
                    })
                    .collect::<Vec<_>>()
            },
            |this, batch| {
                each(batch, &mut count, |bytes| {
                    let message = MegolmMessage::from_bytes(bytes).expect("parse");
                    black_box(this.receiver.decrypt(&message).expect("decrypt"))
                })
            },
            |this, _, got| {
                if let Some(got) = got {
                    this.report.check_bytes(&got.plaintext, &this.plaintext, "group_decrypt: the last message of the batch");
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

/// `group_catchup_1000`: one `decrypt` per message (vodozemac has no batch verification).
struct Catchup {
    senders: Vec<GroupSession>,
    receivers: Vec<InboundGroupSession>,
    plaintext: Vec<u8>,
    sent: u64,
    report: Report,
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
                    sender.encrypt(&*plaintext).to_bytes()
                })
            },
            |this, queued| {
                each(queued, &mut count, |(from, bytes)| {
                    let message = MegolmMessage::from_bytes(bytes).expect("parse");
                    black_box(this.receivers[*from].decrypt(&message).expect("decrypt"))
                })
            },
            |this, _, last| {
                this.report.iterations += 1;
                if let Some(got) = last {
                    this.report.check_bytes(&got.plaintext, &this.plaintext, "group_catchup_1000: the last message");
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
