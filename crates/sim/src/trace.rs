//! The trace: every event of a run, in order. Each event is folded into a SHA-256 hash as it
//! happens (so a run of millions of events costs no memory for it); a run's `trace_hash` is
//! that hash, and two runs with one scenario and seed give the same one. Events are also written
//! as JSON lines when asked, naming devices (`alice@green/1`), relays (by their app, `green`) and
//! groups (`g0@green`); and those of a window (by time and device) are kept for the sequence
//! diagram.
//!
//! The hash covers each event's fixed binary form ([`TraceEvent`], with devices, relays and
//! groups by index), never the names nor the JSON: how a trace is shown does not change it.

use std::io::Write;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// A participant: a device (by index into [`crate::RunResult::devices`]) or an app's relay (by
/// index into [`crate::RunResult::apps`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Node {
    /// A device.
    Device(usize),
    /// The relay of an app.
    Relay(usize),
}

/// One thing that happened. Times are virtual microseconds from the start of the run; devices,
/// relays (`relay`, by app) and groups are indices (see [`Names`] for what the JSON trace shows).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TraceEvent {
    /// A frame left `from` for `to`.
    Sent {
        /// When.
        at_us: u64,
        /// Its sender.
        from: Node,
        /// Its receiver.
        to: Node,
        /// Its size.
        bytes: usize,
        /// What its body is (`send`, `deliver`, `ack`, `fetch bundles`, …).
        what: &'static str,
    },
    /// A frame reached `to`.
    Arrived {
        /// When.
        at_us: u64,
        /// Its sender.
        from: Node,
        /// Its receiver.
        to: Node,
        /// Its size.
        bytes: usize,
        /// What its body is.
        what: &'static str,
        /// Whether it is a duplicate or a replay the network made.
        again: bool,
    },
    /// A frame was lost or damaged on the way, or sent again.
    Fault {
        /// When.
        at_us: u64,
        /// The frame's sender.
        from: Node,
        /// Its receiver.
        to: Node,
        /// `drop`, `corrupt`, `partition`, `duplicate`, `replay`, …
        fault: &'static str,
    },
    /// A connection went down (both ends learn of it).
    Reset {
        /// When.
        at_us: u64,
        /// One end.
        a: Node,
        /// The other end.
        b: Node,
    },
    /// A relay crashed.
    Crashed {
        /// When.
        at_us: u64,
        /// The relay (by app).
        relay: usize,
    },
    /// A relay came back after a crash.
    Restarted {
        /// When.
        at_us: u64,
        /// The relay (by app).
        relay: usize,
    },
    /// An adversarial relay (or a device playing one: a flood) acted on an envelope.
    Adversary {
        /// When.
        at_us: u64,
        /// The relay (by app).
        relay: usize,
        /// The device the envelope was for (the flooder, for a flood).
        device: usize,
        /// `tamper`, `replay`, `withhold`, `strip-suites`, `forge-link`, `flood`, …
        action: &'static str,
    },
    /// A device went offline.
    Offline {
        /// When.
        at_us: u64,
        /// The device.
        device: usize,
    },
    /// A device came back online.
    Online {
        /// When.
        at_us: u64,
        /// The device.
        device: usize,
    },
    /// A message was sent.
    Message {
        /// When.
        at_us: u64,
        /// Its number (messages are numbered in the order they are sent, from 0).
        message: u64,
        /// The sending device.
        from: usize,
        /// The group it was sent to; none for a 1:1 message.
        group: Option<usize>,
        /// Devices meant to read it.
        recipients: usize,
        /// Its plaintext's size.
        bytes: usize,
    },
    /// A device read a message.
    Read {
        /// When.
        at_us: u64,
        /// The message's number.
        message: u64,
        /// The reading device.
        device: usize,
    },
    /// A device refused an envelope.
    Refused {
        /// When.
        at_us: u64,
        /// The device.
        device: usize,
        /// The error's kind (`duplicate`, `invalid message`, `not an admin`, …).
        reason: &'static str,
    },
    /// Group membership changed at the device that made the change.
    Membership {
        /// When.
        at_us: u64,
        /// The group.
        group: usize,
        /// The device that made the change.
        device: usize,
        /// `create`, `add`, `remove`, `learnt removal`, or a forgery's kind.
        change: &'static str,
    },
    /// A device's whole state was copied.
    Theft {
        /// When.
        at_us: u64,
        /// The stolen device.
        device: usize,
    },
}

impl TraceEvent {
    /// When it happened (virtual microseconds from the start of the run).
    pub fn at_us(&self) -> u64 {
        match self {
            TraceEvent::Sent { at_us, .. }
            | TraceEvent::Arrived { at_us, .. }
            | TraceEvent::Fault { at_us, .. }
            | TraceEvent::Reset { at_us, .. }
            | TraceEvent::Crashed { at_us, .. }
            | TraceEvent::Restarted { at_us, .. }
            | TraceEvent::Adversary { at_us, .. }
            | TraceEvent::Offline { at_us, .. }
            | TraceEvent::Online { at_us, .. }
            | TraceEvent::Message { at_us, .. }
            | TraceEvent::Read { at_us, .. }
            | TraceEvent::Refused { at_us, .. }
            | TraceEvent::Membership { at_us, .. }
            | TraceEvent::Theft { at_us, .. } => *at_us,
        }
    }

    /// A fixed binary form for hashing: a tag byte, then each field little-endian.
    fn hash_into(&self, hasher: &mut Sha256) {
        fn node(h: &mut Sha256, node: &Node) {
            match node {
                Node::Device(i) => {
                    h.update([0]);
                    h.update((*i as u64).to_le_bytes());
                }
                Node::Relay(i) => {
                    h.update([1]);
                    h.update((*i as u64).to_le_bytes());
                }
            }
        }
        fn num(h: &mut Sha256, value: u64) {
            h.update(value.to_le_bytes());
        }
        fn text(h: &mut Sha256, value: &str) {
            num(h, value.len() as u64);
            h.update(value.as_bytes());
        }
        let h = hasher;
        match self {
            TraceEvent::Sent { at_us, from, to, bytes, what } => {
                h.update([1]);
                num(h, *at_us);
                node(h, from);
                node(h, to);
                num(h, *bytes as u64);
                text(h, what);
            }
            TraceEvent::Arrived { at_us, from, to, bytes, what, again } => {
                h.update([2]);
                num(h, *at_us);
                node(h, from);
                node(h, to);
                num(h, *bytes as u64);
                text(h, what);
                h.update([u8::from(*again)]);
            }
            TraceEvent::Fault { at_us, from, to, fault } => {
                h.update([3]);
                num(h, *at_us);
                node(h, from);
                node(h, to);
                text(h, fault);
            }
            TraceEvent::Reset { at_us, a, b } => {
                h.update([4]);
                num(h, *at_us);
                node(h, a);
                node(h, b);
            }
            TraceEvent::Crashed { at_us, relay } | TraceEvent::Restarted { at_us, relay } => {
                h.update([if matches!(self, TraceEvent::Crashed { .. }) { 5 } else { 6 }]);
                num(h, *at_us);
                num(h, *relay as u64);
            }
            TraceEvent::Adversary { at_us, relay, device, action } => {
                h.update([7]);
                num(h, *at_us);
                num(h, *relay as u64);
                num(h, *device as u64);
                text(h, action);
            }
            TraceEvent::Offline { at_us, device } | TraceEvent::Online { at_us, device } | TraceEvent::Theft { at_us, device } => {
                let tag = match self {
                    TraceEvent::Offline { .. } => 8,
                    TraceEvent::Online { .. } => 9,
                    _ => 10,
                };
                h.update([tag]);
                num(h, *at_us);
                num(h, *device as u64);
            }
            TraceEvent::Message { at_us, message, from, group, recipients, bytes } => {
                h.update([11]);
                num(h, *at_us);
                num(h, *message);
                num(h, *from as u64);
                num(h, group.map_or(u64::MAX, |g| g as u64));
                num(h, *recipients as u64);
                num(h, *bytes as u64);
            }
            TraceEvent::Read { at_us, message, device } => {
                h.update([12]);
                num(h, *at_us);
                num(h, *message);
                num(h, *device as u64);
            }
            TraceEvent::Refused { at_us, device, reason } => {
                h.update([13]);
                num(h, *at_us);
                num(h, *device as u64);
                text(h, reason);
            }
            TraceEvent::Membership { at_us, group, device, change } => {
                h.update([14]);
                num(h, *at_us);
                num(h, *group as u64);
                num(h, *device as u64);
                text(h, change);
            }
        }
    }
}

/// What the JSON trace and the diagram call the participants, by index.
#[derive(Clone, Debug, Default)]
pub struct Names {
    /// Devices: `alice@green/1`.
    pub devices: Vec<String>,
    /// Relays, by their app's name: `green`.
    pub relays: Vec<String>,
    /// Groups, as the run creates them: `g0@green` (the app of the group's first admin).
    pub groups: Vec<String>,
}

impl Names {
    /// Device `index`'s name (`#index` past the known ones).
    pub fn device(&self, index: usize) -> &str {
        self.devices.get(index).map_or("?", String::as_str)
    }

    /// The name of the relay of app `index`.
    pub fn relay(&self, index: usize) -> &str {
        self.relays.get(index).map_or("?", String::as_str)
    }

    /// Group `index`'s id.
    pub fn group(&self, index: usize) -> &str {
        self.groups.get(index).map_or("?", String::as_str)
    }

    fn node(&self, node: &Node) -> NamedNode<'_> {
        match node {
            Node::Device(index) => NamedNode::Device(self.device(*index)),
            Node::Relay(index) => NamedNode::Relay(self.relay(*index)),
        }
    }

    /// `event` as the JSON trace writes it: the same fields, with names for indices.
    fn named<'a>(&'a self, event: &'a TraceEvent) -> NamedEvent<'a> {
        match *event {
            TraceEvent::Sent { at_us, ref from, ref to, bytes, what } => NamedEvent::Sent { at_us, from: self.node(from), to: self.node(to), bytes, what },
            TraceEvent::Arrived { at_us, ref from, ref to, bytes, what, again } => {
                NamedEvent::Arrived { at_us, from: self.node(from), to: self.node(to), bytes, what, again }
            }
            TraceEvent::Fault { at_us, ref from, ref to, fault } => NamedEvent::Fault { at_us, from: self.node(from), to: self.node(to), fault },
            TraceEvent::Reset { at_us, ref a, ref b } => NamedEvent::Reset { at_us, a: self.node(a), b: self.node(b) },
            TraceEvent::Crashed { at_us, relay } => NamedEvent::Crashed { at_us, relay: self.relay(relay) },
            TraceEvent::Restarted { at_us, relay } => NamedEvent::Restarted { at_us, relay: self.relay(relay) },
            TraceEvent::Adversary { at_us, relay, device, action } => {
                NamedEvent::Adversary { at_us, relay: self.relay(relay), device: self.device(device), action }
            }
            TraceEvent::Offline { at_us, device } => NamedEvent::Offline { at_us, device: self.device(device) },
            TraceEvent::Online { at_us, device } => NamedEvent::Online { at_us, device: self.device(device) },
            TraceEvent::Message { at_us, message, from, group, recipients, bytes } => {
                NamedEvent::Message { at_us, message, from: self.device(from), group: group.map(|g| self.group(g)), recipients, bytes }
            }
            TraceEvent::Read { at_us, message, device } => NamedEvent::Read { at_us, message, device: self.device(device) },
            TraceEvent::Refused { at_us, device, reason } => NamedEvent::Refused { at_us, device: self.device(device), reason },
            TraceEvent::Membership { at_us, group, device, change } => {
                NamedEvent::Membership { at_us, group: self.group(group), device: self.device(device), change }
            }
            TraceEvent::Theft { at_us, device } => NamedEvent::Theft { at_us, device: self.device(device) },
        }
    }
}

/// A [`Node`] by name, as the JSON trace writes it: `{"device": "alice@green/1"}`,
/// `{"relay": "green"}`.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum NamedNode<'a> {
    Device(&'a str),
    Relay(&'a str),
}

/// A [`TraceEvent`] with names for indices: one JSON line of the trace.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum NamedEvent<'a> {
    Sent { at_us: u64, from: NamedNode<'a>, to: NamedNode<'a>, bytes: usize, what: &'a str },
    Arrived { at_us: u64, from: NamedNode<'a>, to: NamedNode<'a>, bytes: usize, what: &'a str, again: bool },
    Fault { at_us: u64, from: NamedNode<'a>, to: NamedNode<'a>, fault: &'a str },
    Reset { at_us: u64, a: NamedNode<'a>, b: NamedNode<'a> },
    Crashed { at_us: u64, relay: &'a str },
    Restarted { at_us: u64, relay: &'a str },
    Adversary { at_us: u64, relay: &'a str, device: &'a str, action: &'a str },
    Offline { at_us: u64, device: &'a str },
    Online { at_us: u64, device: &'a str },
    Message { at_us: u64, message: u64, from: &'a str, group: Option<&'a str>, recipients: usize, bytes: usize },
    Read { at_us: u64, message: u64, device: &'a str },
    Refused { at_us: u64, device: &'a str, reason: &'a str },
    Membership { at_us: u64, group: &'a str, device: &'a str, change: &'a str },
    Theft { at_us: u64, device: &'a str },
}

/// Which events the sequence diagram keeps: a window of time, the events of some devices, and at
/// most so many of them.
#[derive(Clone, Debug)]
pub(crate) struct DiagramWindow {
    /// From this time (µs from the start of the run); none: from the first message sent, so the
    /// diagram opens on the traffic rather than on the devices registering.
    pub from_us: Option<u64>,
    /// Up to this time (µs, included); none: to the end of the run.
    pub until_us: Option<u64>,
    /// Only events of these devices (frames to or from them, what they send, read, refuse…, and
    /// their relays' crashes); every event when empty. Indices, resolved from the names of a
    /// [`crate::Diagram`].
    pub devices: Vec<usize>,
    /// At most this many events.
    pub max_events: usize,
}

impl Default for DiagramWindow {
    fn default() -> DiagramWindow {
        DiagramWindow { from_us: None, until_us: None, devices: Vec::new(), max_events: 60 }
    }
}

impl DiagramWindow {
    /// Whether `event` is one of the chosen devices' (`relays`: their apps).
    fn concerns(&self, event: &TraceEvent, relays: &[usize]) -> bool {
        if self.devices.is_empty() {
            return true;
        }
        let device = |index: &usize| self.devices.contains(index);
        let node = |node: &Node| matches!(node, Node::Device(index) if device(index));
        match event {
            TraceEvent::Sent { from, to, .. } | TraceEvent::Arrived { from, to, .. } | TraceEvent::Fault { from, to, .. } => node(from) || node(to),
            TraceEvent::Reset { a, b, .. } => node(a) || node(b),
            TraceEvent::Crashed { relay, .. } | TraceEvent::Restarted { relay, .. } => relays.contains(relay),
            TraceEvent::Message { from: device_index, .. }
            | TraceEvent::Adversary { device: device_index, .. }
            | TraceEvent::Offline { device: device_index, .. }
            | TraceEvent::Online { device: device_index, .. }
            | TraceEvent::Read { device: device_index, .. }
            | TraceEvent::Refused { device: device_index, .. }
            | TraceEvent::Membership { device: device_index, .. }
            | TraceEvent::Theft { device: device_index, .. } => device(device_index),
        }
    }
}

/// Where the events of a run go.
pub struct Trace {
    hasher: Sha256,
    events: u64,
    /// The events the diagram's window kept.
    pub kept: Vec<TraceEvent>,
    /// Events in the window, kept or not (it keeps at most so many).
    pub in_window: u64,
    window: DiagramWindow,
    /// The apps of the window's devices: their relays' crashes are theirs too.
    window_relays: Vec<usize>,
    /// Whether the window has opened (its start reached, or the first message sent).
    opened: bool,
    /// What the JSON lines call the participants.
    pub names: Names,
    writer: Option<Box<dyn Write>>,
    write_error: Option<std::io::Error>,
}

impl Trace {
    /// A trace keeping no events for the diagram, writing every event as a JSON line to `writer`
    /// when given.
    pub fn new(writer: Option<Box<dyn Write>>) -> Trace {
        Trace {
            hasher: Sha256::new(),
            events: 0,
            kept: Vec::new(),
            in_window: 0,
            window: DiagramWindow { max_events: 0, ..DiagramWindow::default() },
            window_relays: Vec::new(),
            opened: false,
            names: Names::default(),
            writer,
            write_error: None,
        }
    }

    /// Keeps the events of `window` for the diagram; `relays` are the apps of its devices.
    pub(crate) fn keep(&mut self, window: DiagramWindow, relays: Vec<usize>) {
        self.window = window;
        self.window_relays = relays;
    }

    /// Hashes `event`, writes it, and keeps it if the diagram's window wants it.
    pub fn record(&mut self, event: TraceEvent) {
        event.hash_into(&mut self.hasher);
        self.events += 1;
        if let Some(writer) = self.writer.as_mut().filter(|_| self.write_error.is_none()) {
            let written = serde_json::to_writer(&mut *writer, &self.names.named(&event))
                .map_err(std::io::Error::from)
                .and_then(|()| writer.write_all(b"\n"));
            if let Err(error) = written {
                self.write_error = Some(error);
            }
        }
        // A frame is drawn when it arrives or is lost: its sending is not kept.
        if self.window.max_events == 0 || matches!(event, TraceEvent::Sent { .. }) {
            return;
        }
        let at = event.at_us();
        if !self.opened {
            self.opened = match self.window.from_us {
                Some(from) => at >= from,
                None => matches!(event, TraceEvent::Message { .. }),
            };
        }
        if self.opened && self.window.until_us.is_none_or(|until| at <= until) && self.window.concerns(&event, &self.window_relays) {
            self.in_window += 1;
            if self.kept.len() < self.window.max_events {
                self.kept.push(event);
            }
        }
    }

    /// Events recorded so far.
    pub fn len(&self) -> u64 {
        self.events
    }

    /// Whether no event was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The hash of every event so far, and the error writing the trace file met, if any.
    pub fn finish(mut self) -> (String, Option<std::io::Error>) {
        if let Some(Err(error)) = self.writer.as_mut().map(|writer| writer.flush()) {
            self.write_error.get_or_insert(error);
        }
        (hex::encode(self.hasher.finalize()), self.write_error)
    }
}
