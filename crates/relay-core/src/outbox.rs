//! What waits for other apps' relays, and how it is sent to them.
//!
//! Each outbox is bounded per app in frames ([`OUTBOX_QUOTA`]) and in bytes
//! ([`OUTBOX_BYTES_QUOTA`]), and per sending device ([`OUTBOX_QUOTA_PER_SENDER`]): one device
//! writing to someone whose relay refuses it for now cannot fill the outbox that every user of
//! its app shares toward that app. The counts are kept in memory and counted again from the
//! outboxes on restart; the frames themselves stay on disk.
//!
//! Frames go out on the link we dialed in a window: at most [`FORWARD_WINDOW`] frames and
//! [`FORWARD_WINDOW_BYTES`] sent and not yet answered, read back from the store as the window
//! opens, oldest first — a link that comes up to a full outbox is not handed the whole of it at
//! once. Only durable frames are sent. One the other app refused for now waits (2, 4, 8 …
//! ticks, up to [`MAX_RETRY_TICKS`]) and goes out again through the same window at the first
//! tick after that with room in it. Only answers to frames out and not yet answered count.

use std::collections::{BTreeMap, HashMap};

use switchboard_wire::switchboard::{ErrorCode, FederationFrame};

use super::{Action, ConnId, MAX_RETRY_TICKS, OUTBOX_BYTES_QUOTA, OUTBOX_QUOTA, OUTBOX_QUOTA_PER_SENDER, RelayCore};
use crate::state::{DeviceKey, OutboundEntry, StoredState};

/// Frames sent on one link and not yet answered.
pub const FORWARD_WINDOW: usize = 1_024;
/// Bytes of frames sent on one link and not yet answered (one frame always goes, however large,
/// if nothing else is in flight).
pub const FORWARD_WINDOW_BYTES: usize = 16 * 1024 * 1024;

type Refusal = (ErrorCode, &'static str);

/// How full each outbox is.
#[derive(Debug, Default)]
pub(super) struct OutboxUsage {
    bytes: HashMap<String, usize>,
    by_sender: HashMap<(String, DeviceKey), usize>,
}

impl OutboxUsage {
    /// The usage of the outboxes in `state`, as a restarted relay finds them.
    pub(super) fn count(state: &StoredState) -> OutboxUsage {
        let mut usage = OutboxUsage::default();
        for (app, outbox) in &state.outboxes {
            for entry in outbox.values() {
                usage.add(app, entry);
            }
        }
        usage
    }

    /// Whether `app`'s outbox (of `frames` entries) takes a frame of about `bytes` from `sender`.
    pub(super) fn admits(&self, app: &str, frames: usize, sender: Option<&DeviceKey>, bytes: usize) -> Result<(), Refusal> {
        if frames >= OUTBOX_QUOTA || self.bytes.get(app).copied().unwrap_or(0) + bytes > OUTBOX_BYTES_QUOTA {
            return Err((ErrorCode::Unavailable, "too much is waiting for that app; try again later"));
        }
        let waiting = sender.map_or(0, |sender| self.by_sender.get(&(app.to_owned(), sender.clone())).copied().unwrap_or(0));
        if waiting >= OUTBOX_QUOTA_PER_SENDER {
            return Err((ErrorCode::Unavailable, "too much of yours is waiting for that app; try again later"));
        }
        Ok(())
    }

    pub(super) fn add(&mut self, app: &str, entry: &OutboundEntry) {
        *self.bytes.entry(app.to_owned()).or_default() += entry.bytes;
        if let Some(sender) = &entry.sender {
            *self.by_sender.entry((app.to_owned(), sender.clone())).or_default() += 1;
        }
    }

    pub(super) fn remove(&mut self, app: &str, entry: &OutboundEntry) {
        if let Some(total) = self.bytes.get_mut(app) {
            *total = total.saturating_sub(entry.bytes);
        }
        if let Some(sender) = &entry.sender {
            let key = (app.to_owned(), sender.clone());
            if let Some(waiting) = self.by_sender.get_mut(&key) {
                *waiting -= 1;
                if *waiting == 0 {
                    self.by_sender.remove(&key);
                }
            }
        }
    }
}

/// What one link we dialed has been sent.
#[derive(Debug)]
pub(super) struct Forwarding {
    conn: ConnId,
    /// Every durable frame of the outbox up to this sequence number was sent (or waits to be
    /// sent again: see `RelayCore::retry`).
    cursor: u64,
    /// Sent and not answered: sequence number → bytes.
    in_flight: BTreeMap<u64, usize>,
    bytes: usize,
}

impl Forwarding {
    pub(super) fn new(conn: ConnId) -> Forwarding {
        Forwarding { conn, cursor: 0, in_flight: BTreeMap::new(), bytes: 0 }
    }

    fn has_room(&self, taken: usize, taken_bytes: usize, bytes: usize) -> bool {
        let frames = self.in_flight.len() + taken;
        frames < FORWARD_WINDOW && (frames == 0 || self.bytes + taken_bytes + bytes <= FORWARD_WINDOW_BYTES)
    }
}

/// A frame another app refused for now.
#[derive(Debug)]
pub(super) struct Retry {
    /// The tick at which it goes out again; `None` while it is out again, waiting for its answer.
    pub(super) due: Option<u64>,
    /// Refusals in a row.
    refusals: u32,
}

/// Per other app, the frames it refused for now, by sequence number (ordered, so that a driver
/// replaying a run sees the same actions).
pub(super) type Retries = BTreeMap<String, BTreeMap<u64, Retry>>;

impl RelayCore {
    /// Sends `app`, if its link is up, what the window has room for: with `retries` (at a tick),
    /// frames due to be sent again first; then those not sent yet.
    pub(super) fn pump_outbox(&mut self, app: &str, retries: bool) -> Vec<Action> {
        let (Some(forwarding), Some(outbox)) = (self.forwarding.get_mut(app), self.state.outboxes.get(app)) else {
            return Vec::new();
        };
        let mut waiting = self.retry.get_mut(app);
        let mut chosen: Vec<(u64, usize)> = Vec::new();
        let mut chosen_bytes = 0;
        if retries && let Some(waiting) = waiting.as_deref() {
            let due = waiting.iter().filter(|(seq, retry)| retry.due.is_some_and(|due| due <= self.ticks) && **seq < self.durable_seq);
            for (seq, _) in due {
                let Some(entry) = outbox.get(seq) else { continue };
                if !forwarding.has_room(chosen.len(), chosen_bytes, entry.bytes) {
                    break;
                }
                chosen.push((*seq, entry.bytes));
                chosen_bytes += entry.bytes;
            }
        }
        let mut cursor = forwarding.cursor;
        for (seq, entry) in outbox.range(forwarding.cursor + 1..self.durable_seq) {
            if waiting.as_deref().is_some_and(|waiting| waiting.contains_key(seq)) {
                // Refused for now: it goes out again from the retries, not from here.
                cursor = *seq;
                continue;
            }
            if !forwarding.has_room(chosen.len(), chosen_bytes, entry.bytes) {
                break;
            }
            chosen.push((*seq, entry.bytes));
            chosen_bytes += entry.bytes;
            cursor = *seq;
        }
        forwarding.cursor = cursor;
        if chosen.is_empty() {
            return Vec::new();
        }
        let seqs: Vec<u64> = chosen.iter().map(|(seq, _)| *seq).collect();
        let read = match self.contents.outbound(app, &seqs) {
            Ok(read) if read.len() == seqs.len() => read,
            Ok(read) => return vec![Action::StorageFailed(format!("{} durable frames for {app} are missing from the store", seqs.len() - read.len()))],
            Err(error) => return vec![Action::StorageFailed(error.chain())],
        };
        let mut actions = Vec::with_capacity(chosen.len());
        for ((seq, frame), (_, bytes)) in read.into_iter().zip(chosen) {
            if let Some(retry) = waiting.as_deref_mut().and_then(|waiting| waiting.get_mut(&seq)) {
                retry.due = None;
            }
            forwarding.in_flight.insert(seq, bytes);
            forwarding.bytes += bytes;
            self.metrics.envelopes_forwarded += 1;
            actions.push(Action::ToLink { conn: forwarding.conn, frame: FederationFrame { request_id: seq, body: frame.body } });
        }
        actions
    }

    /// `app` answered the frame `seq` (accepted it, refused it for good, or for now): whether it
    /// had that frame from us, out and not yet answered.
    pub(super) fn answered(&mut self, app: &str, seq: u64) -> bool {
        let Some(forwarding) = self.forwarding.get_mut(app) else { return false };
        let Some(bytes) = forwarding.in_flight.remove(&seq) else { return false };
        forwarding.bytes -= bytes;
        true
    }

    /// `app` refused the frame `seq` (which it had from us) for now: it is sent again later,
    /// later each time.
    pub(super) fn retry_later(&mut self, app: &str, seq: u64) {
        let waiting = self.retry.entry(app.to_owned()).or_default();
        let refusals = waiting.get(&seq).map_or(0, |retry| retry.refusals).saturating_add(1);
        let wait = (1u64 << refusals.min(16)).min(MAX_RETRY_TICKS);
        waiting.insert(seq, Retry { due: Some(self.ticks + wait), refusals });
    }

    /// The frame `seq` left the outbox for `app`: it is not sent again.
    pub(super) fn forget_retry(&mut self, app: &str, seq: u64) {
        let Some(waiting) = self.retry.get_mut(app) else { return };
        waiting.remove(&seq);
        if waiting.is_empty() {
            self.retry.remove(app);
        }
    }

    /// The link to `app` went down: what it carried and was not answered is sent again on the
    /// next, from the start of the outbox (what was refused for now and out again, at once).
    pub(super) fn stop_forwarding(&mut self, app: &str) {
        self.forwarding.remove(app);
        for retry in self.retry.get_mut(app).into_iter().flat_map(|waiting| waiting.values_mut()) {
            retry.due.get_or_insert(self.ticks);
        }
    }

    /// Sends again what is due on every link (as their windows allow): called at each tick.
    pub(super) fn retry_due(&mut self) -> Vec<Action> {
        let ticks = self.ticks;
        let due: Vec<String> = self
            .retry
            .iter()
            .filter(|(_, waiting)| waiting.values().any(|retry| retry.due.is_some_and(|due| due <= ticks)))
            .map(|(app, _)| app.clone())
            .collect();
        due.iter().flat_map(|app| self.pump_outbox(app, true)).collect()
    }
}
