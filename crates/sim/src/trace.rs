//! The trace: every event of a run, in order. Each event is folded into a SHA-256 hash as it
//! happens (so a run of millions of events costs no memory for it); a run's `trace_hash` is
//! that hash, and two runs with one scenario and seed give the same one. Events are also written
//! as JSON lines when asked, and the first few are kept for the sequence diagram.

use std::io::Write;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// A participant: a device (by index) or an app's relay (by app index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Node {
    Device(usize),
    Relay(usize),
}

/// One thing that happened. Times are virtual microseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TraceEvent {
    /// A frame left `from` for `to` (`what` names its body).
    Sent { at_us: u64, from: Node, to: Node, bytes: usize, what: &'static str },
    /// A frame reached `to` (`again` when it is a duplicate or replay the network made).
    Arrived { at_us: u64, from: Node, to: Node, bytes: usize, what: &'static str, again: bool },
    /// A frame was lost or damaged on the way, or sent again (`fault` says which).
    Fault { at_us: u64, from: Node, to: Node, fault: &'static str },
    /// A connection went down (both ends learn of it).
    Reset { at_us: u64, a: Node, b: Node },
    /// A relay crashed, or came back.
    Crashed { at_us: u64, relay: usize },
    Restarted { at_us: u64, relay: usize },
    /// An adversarial relay acted on an envelope.
    Adversary { at_us: u64, relay: usize, device: usize, action: &'static str },
    /// A device went offline or came back.
    Offline { at_us: u64, device: usize },
    Online { at_us: u64, device: usize },
    /// A message was sent (`recipients` devices meant to read it).
    Message { at_us: u64, message: u64, from: usize, group: Option<usize>, recipients: usize, bytes: usize },
    /// A device read a message.
    Read { at_us: u64, message: u64, device: usize },
    /// A device refused an envelope (`reason` is the error's kind).
    Refused { at_us: u64, device: usize, reason: &'static str },
    /// Group membership changed at the device that made the change.
    Membership { at_us: u64, group: usize, device: usize, change: &'static str },
    /// A device's whole state was copied.
    Theft { at_us: u64, device: usize },
}

impl TraceEvent {
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

/// Where the events of a run go.
pub struct Trace {
    hasher: Sha256,
    events: u64,
    /// The first events, kept for the sequence diagram.
    pub first: Vec<TraceEvent>,
    keep_first: usize,
    writer: Option<Box<dyn Write>>,
    write_error: Option<std::io::Error>,
}

impl Trace {
    /// A trace keeping the first `keep_first` events, and writing every event as a JSON line
    /// to `writer` when given.
    pub fn new(keep_first: usize, writer: Option<Box<dyn Write>>) -> Trace {
        Trace { hasher: Sha256::new(), events: 0, first: Vec::new(), keep_first, writer, write_error: None }
    }

    pub fn record(&mut self, event: TraceEvent) {
        event.hash_into(&mut self.hasher);
        self.events += 1;
        if let Some(writer) = self.writer.as_mut().filter(|_| self.write_error.is_none()) {
            let written = serde_json::to_writer(&mut *writer, &event).map_err(std::io::Error::from).and_then(|()| writer.write_all(b"\n"));
            if let Err(error) = written {
                self.write_error = Some(error);
            }
        }
        if self.first.len() < self.keep_first {
            self.first.push(event);
        }
    }

    /// Events recorded so far.
    pub fn len(&self) -> u64 {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The hash of every event so far, and the error writing the trace file met, if any.
    pub fn finish(mut self) -> (String, Option<std::io::Error>) {
        if let Some(writer) = self.writer.as_mut() {
            if let Err(error) = writer.flush() {
                self.write_error.get_or_insert(error);
            }
        }
        (hex::encode(self.hasher.finalize()), self.write_error)
    }
}
