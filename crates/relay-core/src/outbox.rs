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
//! ticks, up to [`MAX_RETRY_TICKS`]) and then goes out again through the same window.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

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

impl RelayCore {
    /// Sends `app`, if its link is up, what the window has room for: with `retries` (at a tick),
    /// frames due to be sent again first; then those not sent yet.
    pub(super) fn pump_outbox(&mut self, app: &str, retries: bool) -> Vec<Action> {
        let (Some(forwarding), Some(outbox)) = (self.forwarding.get_mut(app), self.state.outboxes.get(app)) else {
            return Vec::new();
        };
        // Runs of frames next to each other in the outbox, each read in one range, with how many
        // frames each holds.
        let mut runs: Vec<(Range<u64>, usize)> = Vec::new();
        let (mut taken, mut taken_bytes) = (0, 0);
        let waiting = self.retry.range((app.to_owned(), 0)..=(app.to_owned(), u64::MAX)).filter(|_| retries);
        for ((_, seq), _) in waiting.filter(|(_, (at, _))| *at <= self.ticks) {
            let Some(entry) = outbox.get(seq) else { continue };
            if !forwarding.has_room(taken, taken_bytes, entry.bytes) {
                break;
            }
            runs.push((*seq..seq + 1, 1));
            (taken, taken_bytes) = (taken + 1, taken_bytes + entry.bytes);
        }
        let mut last_new = None;
        let mut extends_run = false;
        for (seq, entry) in outbox.range(forwarding.cursor + 1..self.durable_seq) {
            if self.retry.contains_key(&(app.to_owned(), *seq)) {
                // Waiting to be sent again, or in flight: not sent from here.
                extends_run = false;
                continue;
            }
            if !forwarding.has_room(taken, taken_bytes, entry.bytes) {
                break;
            }
            match runs.last_mut() {
                Some((run, frames)) if extends_run => (run.end, *frames) = (seq + 1, *frames + 1),
                _ => runs.push((*seq..seq + 1, 1)),
            }
            extends_run = true;
            last_new = Some(*seq);
            (taken, taken_bytes) = (taken + 1, taken_bytes + entry.bytes);
        }
        let mut actions = Vec::with_capacity(taken);
        for (run, frames) in runs {
            let read = match self.contents.outbound(app, run) {
                Ok(read) => read,
                Err(error) => return vec![Action::StorageFailed(error.to_string())],
            };
            let mut sent = 0;
            for (seq, frame) in read {
                // The range may also hold frames answered since and not yet deleted on disk.
                let Some(entry) = outbox.get(&seq) else { continue };
                if let Some((at, _)) = self.retry.get_mut(&(app.to_owned(), seq)) {
                    // Sent again: it waits for its answer (a refusal sets the next wait).
                    *at = u64::MAX;
                }
                forwarding.in_flight.insert(seq, entry.bytes);
                forwarding.bytes += entry.bytes;
                self.metrics.envelopes_forwarded += 1;
                actions.push(Action::ToLink { conn: forwarding.conn, frame: FederationFrame { request_id: seq, body: frame.body } });
                sent += 1;
            }
            if sent < frames {
                return vec![Action::StorageFailed(format!("{} durable frames for {app} are missing from the store", frames - sent))];
            }
        }
        if let Some(last) = last_new {
            forwarding.cursor = last;
        }
        actions
    }

    /// `app` answered the frame `seq` (accepted it, refused it for good, or for now).
    pub(super) fn answered(&mut self, app: &str, seq: u64) {
        let Some(forwarding) = self.forwarding.get_mut(app) else { return };
        if let Some(bytes) = forwarding.in_flight.remove(&seq) {
            forwarding.bytes -= bytes;
        }
    }

    /// `app` refused the outbox entry `seq` for now: it is sent again later, later each time.
    pub(super) fn retry_later(&mut self, app: &str, seq: u64) {
        // Only for what is still waiting (a refusal of a copy already acknowledged, or of nothing
        // we sent, changes nothing).
        if !self.state.outboxes.get(app).is_some_and(|outbox| outbox.contains_key(&seq)) {
            return;
        }
        let refusals = self.retry.get(&(app.to_owned(), seq)).map_or(0, |(_, refusals)| *refusals).saturating_add(1);
        let wait = (1u64 << refusals.min(16)).min(MAX_RETRY_TICKS);
        self.retry.insert((app.to_owned(), seq), (self.ticks + wait, refusals));
    }

    /// The link to `app` went down: what it carried and was not answered is sent again on the
    /// next, from the start of the outbox.
    pub(super) fn stop_forwarding(&mut self, app: &str) {
        self.forwarding.remove(app);
        let ticks = self.ticks;
        for ((_, _), (at, _)) in self.retry.range_mut((app.to_owned(), 0)..=(app.to_owned(), u64::MAX)) {
            if *at == u64::MAX {
                *at = ticks;
            }
        }
    }

    /// Sends again what is due on every link: called at each tick.
    pub(super) fn retry_due(&mut self) -> Vec<Action> {
        let outboxes = &self.state.outboxes;
        self.retry.retain(|(app, seq), _| outboxes.get(app).is_some_and(|outbox| outbox.contains_key(seq)));
        let mut apps: Vec<String> = self.retry.iter().filter(|(_, (at, _))| *at <= self.ticks).map(|((app, _), _)| app.clone()).collect();
        apps.dedup();
        apps.iter().flat_map(|app| self.pump_outbox(app, true)).collect()
    }
}
