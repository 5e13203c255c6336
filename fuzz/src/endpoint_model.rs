//! The endpoint model: three client endpoints on two apps (alice@green, bob@blue, carol@green,
//! each durable, in a group alice founded) against real relay cores over the in-memory harness,
//! driven by an arbitrary interleaving of user commands (send, send to the group, remove and add
//! a member), network events (disconnect, reconnect, hold frames and release them in any order,
//! cut and restore the link between the apps, let time pass), crashes (with or without what the
//! device had not yet written to its disk), a relay handing a delivery over again, and arbitrary
//! bytes handed to an endpoint as if from its relay.
//!
//! Checks, after every step:
//! - no endpoint panics, whatever its relay sends;
//! - nothing is acknowledged before it is persisted (the harness checks every acknowledgement a
//!   durable device writes: it must have written to its disk since the envelope arrived);
//! - no message is delivered to a device twice: not across reconnects, redeliveries or crashes
//!   (a message reported while the device's writes were held back may come again after a crash
//!   that lost them, never otherwise);
//! - no plaintext reaches a relay: no frame any endpoint writes contains the content of a message
//!   sent;
//!
//! and at the end, once every link is restored, every hold released and every device back online
//! for a minute of virtual time, when no arbitrary bytes were handed to an endpoint: every 1:1
//! message whose sending was written to the sender's disk has reached its recipient (a send still
//! waiting for the recipient's bundles is in memory only, as the endpoint documents, and a crash
//! of its sender may lose it).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use switchboard_client_core::Event;
use switchboard_client_core::endpoint::Member;
use switchboard_harness::Harness;
use switchboard_session::Suite;
use switchboard_wire::Message;

use crate::{byte, word};

/// Actions per run, at most.
pub const MAX_ACTIONS: usize = 200;
/// Messages sent per run, at most.
pub const MAX_SENDS: usize = 64;
/// Arbitrary bytes handed to an endpoint in one step, at most.
pub const MAX_INJECTED: usize = 512;

const APPS: [&str; 2] = ["green", "blue"];
const USERS: [&str; 3] = ["alice@green", "bob@blue", "carol@green"];
const GROUP: &str = "trip@green";
/// Every content starts with this, then the send's number: long enough that no frame carries it
/// by chance.
const MARKER: &[u8; 16] = b"sb-fuzz-content:";
/// How long the network is given at the end to deliver everything.
const FINAL_WAIT: Duration = Duration::from_secs(60);

/// One step. Devices are taken modulo 3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `from` sends `len` bytes (after the marker) to the user of device `to`.
    Send { from: u8, to: u8, len: u8 },
    /// `from` sends `len` bytes to the group.
    SendGroup { from: u8, len: u8 },
    /// Alice removes carol from the group, or adds her back.
    Membership { add: bool },
    /// Everything in flight is carried out.
    Settle,
    /// Virtual time passes: `tenths` tenths of a second.
    Advance { tenths: u8 },
    Disconnect { device: u8 },
    Connect { device: u8 },
    /// The device's process dies and restarts from its disk.
    Crash { device: u8 },
    /// The device's writes to its disk are held back (a crash loses them), or no longer.
    HoldPersistence { device: u8, on: bool },
    /// Frames to the device are held, or no longer: the held ones are handed over reversed when
    /// `reversed`, else in order.
    HoldFrames { device: u8, on: bool, reversed: bool },
    /// The link between the two apps is cut, or restored.
    Link { up: bool },
    /// The relay hands the device one of its recent deliveries again.
    Redeliver { device: u8, index: u8 },
    /// Arbitrary bytes reach the device as a frame from its relay.
    Inject { device: u8, bytes: Vec<u8> },
}

const OPS: u8 = 13;

impl<'a> Arbitrary<'a> for Action {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match byte(u) % OPS {
            0 => Action::Send { from: byte(u), to: byte(u), len: byte(u) },
            1 => Action::SendGroup { from: byte(u), len: byte(u) },
            2 => Action::Membership { add: byte(u) & 1 == 1 },
            3 => Action::Settle,
            4 => Action::Advance { tenths: byte(u) },
            5 => Action::Disconnect { device: byte(u) },
            6 => Action::Connect { device: byte(u) },
            7 => Action::Crash { device: byte(u) },
            8 => Action::HoldPersistence { device: byte(u), on: byte(u) & 1 == 1 },
            9 => {
                let (device, flags) = (byte(u), byte(u));
                Action::HoldFrames { device, on: flags & 1 == 1, reversed: flags & 2 == 2 }
            }
            10 => Action::Link { up: byte(u) & 1 == 1 },
            11 => Action::Redeliver { device: byte(u), index: byte(u) },
            _ => {
                let device = byte(u);
                let len = usize::from(word(u)) % (MAX_INJECTED + 1);
                let bytes = (0..len).map(|_| byte(u)).collect();
                Action::Inject { device, bytes }
            }
        })
    }
}

impl crate::Encode for Action {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Action::Send { from, to, len } => out.extend([0, *from, *to, *len]),
            Action::SendGroup { from, len } => out.extend([1, *from, *len]),
            Action::Membership { add } => out.extend([2, u8::from(*add)]),
            Action::Settle => out.push(3),
            Action::Advance { tenths } => out.extend([4, *tenths]),
            Action::Disconnect { device } => out.extend([5, *device]),
            Action::Connect { device } => out.extend([6, *device]),
            Action::Crash { device } => out.extend([7, *device]),
            Action::HoldPersistence { device, on } => out.extend([8, *device, u8::from(*on)]),
            Action::HoldFrames { device, on, reversed } => out.extend([9, *device, u8::from(*on) | u8::from(*reversed) << 1]),
            Action::Link { up } => out.extend([10, u8::from(*up)]),
            Action::Redeliver { device, index } => out.extend([11, *device, *index]),
            Action::Inject { device, bytes } => {
                out.extend([12, *device]);
                out.extend((bytes.len() as u16).to_le_bytes());
                out.extend(bytes);
            }
        }
    }
}

/// A whole input: actions until the bytes run out.
pub fn decode(data: &[u8]) -> Vec<Action> {
    crate::decode_actions(data, MAX_ACTIONS)
}

/// The bytes [`decode`] reads back as `actions`.
pub fn encode(actions: &[Action]) -> Vec<u8> {
    crate::encode_actions(actions)
}

/// What one device has been shown.
#[derive(Default)]
struct Shown {
    /// Contents reported after the device wrote them to its disk (or once it did).
    durable: BTreeSet<Vec<u8>>,
    /// Contents reported while its writes were held back: a crash forgets them.
    tentative: BTreeSet<Vec<u8>>,
}

/// A 1:1 message sent, for the final check.
struct Sent {
    from: usize,
    to: usize,
    content: Vec<u8>,
    /// Sent while the sender's writes were held back, and not written since.
    tentative: bool,
    /// Waiting for the recipient's bundles, so in memory only (the endpoint's documented limit:
    /// work not yet sealed is lost in a crash).
    waiting: bool,
    /// The sender crashed while it was tentative: it may be gone.
    may_be_lost: bool,
}

struct World {
    h: Harness,
    shown: [Shown; 3],
    sent: Vec<Sent>,
    contents: Vec<Vec<u8>>,
    /// Frames of each device already scanned for plaintext.
    scanned: [usize; 3],
    injected: bool,
    dropped_sends: bool,
}

/// Runs one input, panicking on the first violated expectation.
pub fn run(data: &[u8]) {
    let mut world = World::new();
    let trace = std::env::var_os(crate::differential_session::TRACE_ENV).is_some();
    for action in decode(data) {
        if trace {
            eprintln!("{action:?}");
        }
        world.act(&action);
        world.check();
    }
    world.finish();
}

fn device(index: u8) -> usize {
    usize::from(index) % USERS.len()
}

impl World {
    fn new() -> World {
        let mut h = Harness::new(&APPS, 0x0e4d);
        for user in USERS {
            let d = h.add_device(user, 1, true);
            h.connect(d);
        }
        h.settle();
        let members = vec![Member::User(USERS[1].to_owned()), Member::User(USERS[2].to_owned())];
        h.with(0, |e, now, rng| e.create_group(now, GROUP, members, Suite::Aes256Gcm, rng));
        h.settle();
        let mut world =
            World { h, shown: Default::default(), sent: Vec::new(), contents: Vec::new(), scanned: [0; 3], injected: false, dropped_sends: false };
        world.check();
        world
    }

    fn content(&mut self, len: u8) -> Option<Vec<u8>> {
        if self.contents.len() >= MAX_SENDS {
            return None;
        }
        let mut content = MARKER.to_vec();
        content.extend((self.contents.len() as u32).to_be_bytes());
        content.extend((0..len).map(|i| i.wrapping_mul(41)));
        self.contents.push(content.clone());
        Some(content)
    }

    fn act(&mut self, action: &Action) {
        match *action {
            Action::Send { from, to, len } => {
                let (from, to) = (device(from), device(to));
                let Some(content) = self.content(len) else { return };
                let sent = self.h.with(from, |e, now, rng| e.send(now, USERS[to], content.clone(), rng));
                if sent.is_ok() && from != to {
                    let node = &self.h.devices[from];
                    let (tentative, waiting) = (node.hold_persistence, node.endpoint.waiting_len() > 0);
                    self.sent.push(Sent { from, to, content, tentative, waiting, may_be_lost: false });
                }
            }
            Action::SendGroup { from, len } => {
                let Some(content) = self.content(len) else { return };
                let _ = self.h.with(device(from), |e, now, rng| e.send_group(now, GROUP, content, rng));
            }
            Action::Membership { add } => {
                let carol = Member::User(USERS[2].to_owned());
                if add {
                    self.h.with(0, |e, now, rng| e.add_member(now, GROUP, carol, rng));
                } else {
                    self.h.with(0, |e, now, rng| e.remove_member(now, GROUP, carol, rng));
                }
            }
            Action::Settle => self.h.settle(),
            Action::Advance { tenths } => self.h.advance(Duration::from_millis(100 * u64::from(tenths))),
            Action::Disconnect { device: d } => self.h.disconnect(device(d)),
            Action::Connect { device: d } => self.h.connect(device(d)),
            Action::Crash { device: d } => {
                let d = device(d);
                self.take_events(d);
                self.h.crash(d);
                self.shown[d].tentative.clear();
                // What it sent while its writes were held, or before it was sealed, may be gone.
                for sent in self.sent.iter_mut().filter(|sent| sent.from == d && (sent.tentative || sent.waiting)) {
                    sent.may_be_lost = true;
                }
            }
            Action::HoldPersistence { device: d, on } => {
                let d = device(d);
                self.h.devices[d].hold_persistence = on;
                if !on {
                    // The next pump writes what was held; what was shown meanwhile is durable.
                    self.h.with(d, |_, _, _| ());
                    self.take_events(d);
                    let shown = &mut self.shown[d];
                    let tentative = std::mem::take(&mut shown.tentative);
                    shown.durable.extend(tentative);
                    for sent in self.sent.iter_mut().filter(|sent| sent.from == d) {
                        sent.tentative = false;
                    }
                }
            }
            Action::HoldFrames { device: d, on, reversed } => {
                let d = device(d);
                self.h.devices[d].hold_frames = on;
                if !on {
                    let count = self.h.devices[d].held.len();
                    if reversed {
                        self.h.release_held(d, (0..count).rev());
                    } else {
                        self.h.release_held(d, 0..count);
                    }
                }
            }
            Action::Link { up } => {
                if up {
                    self.h.restore(APPS[0], APPS[1]);
                } else {
                    self.h.cut(APPS[0], APPS[1]);
                }
            }
            Action::Redeliver { device: d, index } => {
                let d = device(d);
                let recent = &self.h.devices[d].recent_deliveries;
                if let Some(i) = crate::pick(index, recent.len()) {
                    let bytes = recent[i].clone();
                    self.h.inject_bytes(d, &bytes);
                }
            }
            Action::Inject { device: d, ref bytes } => {
                self.injected = true;
                self.h.inject_bytes(device(d), bytes);
            }
        }
    }

    /// Takes the events of device `d`, checking each message against what it was shown before.
    fn take_events(&mut self, d: usize) {
        let held = self.h.devices[d].hold_persistence;
        for event in self.h.take_events(d) {
            if std::env::var_os(crate::differential_session::TRACE_ENV).is_some() {
                eprintln!("  {}: {event:?}", USERS[d]);
            }
            match event {
                Event::Message { content, from, .. } => {
                    let shown = &mut self.shown[d];
                    assert!(
                        !shown.durable.contains(&content) && !shown.tentative.contains(&content),
                        "{} was shown a message from {from} twice",
                        USERS[d]
                    );
                    if held {
                        shown.tentative.insert(content);
                    } else {
                        shown.durable.insert(content);
                    }
                }
                Event::SendDropped { .. } => self.dropped_sends = true,
                _ => {}
            }
        }
    }

    fn check(&mut self) {
        for d in 0..USERS.len() {
            // Nothing waits for bundles any more: every send of this device is sealed, into an
            // outbox that is as durable as the device's writes.
            if self.h.devices[d].endpoint.waiting_len() == 0 {
                let held = self.h.devices[d].hold_persistence;
                for sent in self.sent.iter_mut().filter(|sent| sent.from == d && sent.waiting) {
                    sent.waiting = false;
                    sent.tentative |= held;
                }
            }
            self.take_events(d);
            let frames = &self.h.devices[d].frames;
            for frame in &frames[self.scanned[d]..] {
                let bytes = frame.encode_to_vec();
                for content in &self.contents {
                    assert!(
                        !bytes.windows(content.len()).any(|window| window == content.as_slice()),
                        "{} wrote a frame carrying a message's plaintext",
                        USERS[d]
                    );
                }
            }
            self.scanned[d] = frames.len();
        }
    }

    /// Brings the network back, then checks that every 1:1 message written to its sender's disk
    /// arrived — unless arbitrary bytes were handed to an endpoint (a relay that lies can lose
    /// anything) or a send was given up (which the sender was told).
    fn finish(&mut self) {
        self.h.restore(APPS[0], APPS[1]);
        for d in 0..USERS.len() {
            self.act(&Action::HoldPersistence { device: d as u8, on: false });
            self.act(&Action::HoldFrames { device: d as u8, on: false, reversed: false });
            self.h.connect(d);
        }
        self.h.advance(FINAL_WAIT);
        self.check();
        if std::env::var_os(crate::differential_session::TRACE_ENV).is_some() {
            for (d, node) in self.h.devices.iter().enumerate() {
                eprintln!("{} wrote: {:?}; outbox {}", USERS[d], node.sent, node.endpoint.outbox_len());
            }
        }
        if self.injected || self.dropped_sends {
            return;
        }
        let mut missing: BTreeMap<&str, usize> = BTreeMap::new();
        for sent in self.sent.iter().filter(|sent| !sent.may_be_lost) {
            if !self.shown[sent.to].durable.contains(&sent.content) {
                *missing.entry(USERS[sent.to]).or_default() += 1;
            }
        }
        assert!(missing.is_empty(), "messages written to their senders' disks never arrived: {missing:?}");
    }
}
