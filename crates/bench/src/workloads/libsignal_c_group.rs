//! Groups in Signal's reference C library (libsignal-protocol-c's group_session_builder and
//! group_cipher) through the project's safe harness (`Party::group_*`, crates/libsignal-c): the
//! same messages, sizes and order of events as the Switchboard group workloads.

use std::hint::black_box;
use std::time::Duration;

use switchboard_libsignal_c::Party;

use super::group::{GROUP, queue};
use super::{CATCHUP_SENDERS, Kind, Op, Report, SMALL, Workload, chunk_len, chunked, each, number, plaintext, time_encrypts};

/// The workload of a group message op.
pub fn workload(op: Op, seed: u64) -> Box<dyn Workload> {
    match op {
        Op::GroupEncrypt100 => {
            let (senders, receiver) = group(1, seed);
            Box::new(Encrypt::new(senders.into_iter().next().expect("one"), receiver))
        }
        Op::GroupDecrypt100 => {
            let (senders, receiver) = group(1, seed);
            Box::new(Decrypt {
                sender: senders.into_iter().next().expect("one"),
                receiver,
                plaintext: plaintext(SMALL),
                sent: 0,
                report: Report::new(Kind::Decrypt, SMALL),
            })
        }
        Op::GroupCatchup1000 => {
            let (senders, receiver) = group(CATCHUP_SENDERS, seed);
            Box::new(Catchup { senders, receiver, plaintext: plaintext(SMALL), sent: 0, report: Report::new(Kind::Catchup, SMALL) })
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

/// The iteration of a group message from libsignal-c (read with Switchboard's parser: the
/// `signal-v3` wire format is libsignal's).
fn iteration(bytes: &[u8]) -> Result<u32, String> {
    switchboard_session::group::SenderKeyMessage::parse(bytes).map(|message| message.iteration()).map_err(|e| e.to_string())
}

/// `group_encrypt_100`: the sender encrypts; the receiver reads only the last message of each
/// run, in [`Workload::report`].
struct Encrypt {
    sender: (String, Party),
    receiver: Party,
    plaintext: Vec<u8>,
    last: Option<Vec<u8>>,
    /// The iteration of the last message the receiver read, and how many the sender had
    /// encrypted then.
    iteration: u32,
    reported: u64,
    report: Report,
}

impl Encrypt {
    /// A probe (untimed, read by the receiver) says where the sender's chain stands.
    fn new(mut sender: (String, Party), mut receiver: Party) -> Self {
        let probe = sender.1.group_encrypt(GROUP, b"probe").expect("encrypt");
        receiver.group_decrypt(GROUP, &sender.0, 1, &probe).expect("decrypt");
        let iteration = iteration(&probe).expect("a SenderKeyMessage");
        Encrypt { sender, receiver, plaintext: plaintext(SMALL), last: None, iteration, reported: 0, report: Report::new(Kind::Encrypt, SMALL) }
    }
}

impl Workload for Encrypt {
    fn run(&mut self, iters: u64) -> Duration {
        let sender = &mut self.sender.1;
        time_encrypts(iters, &mut self.report, &mut self.last, || black_box(sender.group_encrypt(GROUP, &self.plaintext).expect("encrypt")))
    }

    /// The receiver reads the last message: its iteration is the last one read plus the
    /// messages encrypted since, and it decrypts to the plaintext.
    fn report(&mut self) -> Report {
        if let Some(last) = self.last.take() {
            let since = self.report.messages - self.reported;
            let expected = self.iteration + since as u32;
            let got = iteration(&last);
            self.report.check(got == Ok(expected), || {
                format!("group_encrypt: the last message is number {got:?} of its chain, expected {expected} ({since} encrypted after number {})", self.iteration)
            });
            match self.receiver.group_decrypt(GROUP, &self.sender.0, 1, &last) {
                Ok(got) => self.report.check_bytes(&got, &self.plaintext, "group_encrypt: the last message, as a member read it"),
                Err(e) => self.report.check(false, || format!("group_encrypt: a member cannot read the last message: {e}")),
            }
            (self.iteration, self.reported) = (got.unwrap_or(expected), self.report.messages);
        }
        self.report.clone()
    }
}

/// `group_decrypt_100`: numbered messages made before the clock starts; the last plaintext of
/// each batch checked after it stops.
struct Decrypt {
    sender: (String, Party),
    receiver: Party,
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
                        this.sender.1.group_encrypt(GROUP, &this.plaintext).expect("encrypt")
                    })
                    .collect::<Vec<_>>()
            },
            |this, batch| {
                each(batch, &mut count, |bytes| black_box(this.receiver.group_decrypt(GROUP, &this.sender.0, 1, bytes).expect("decrypt")))
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

/// `group_catchup_1000`: one `group_decrypt` per message (the C library has no batch verification).
struct Catchup {
    senders: Vec<(String, Party)>,
    receiver: Party,
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
                queue(&mut this.senders, |(_, sender)| {
                    number(plaintext, *sent);
                    *sent += 1;
                    sender.group_encrypt(GROUP, plaintext).expect("encrypt")
                })
            },
            |this, queued| {
                each(queued, &mut count, |(from, bytes)| {
                    black_box(this.receiver.group_decrypt(GROUP, &this.senders[*from].0, 1, bytes).expect("decrypt"))
                })
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
