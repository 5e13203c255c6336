//! What waits for other apps' relays, bounded per app in frames ([`OUTBOX_QUOTA`]) and in bytes
//! ([`OUTBOX_BYTES_QUOTA`]), and per sending device ([`OUTBOX_QUOTA_PER_SENDER`]): one device
//! writing to someone whose relay refuses it for now cannot fill the outbox that every user of
//! its app shares toward that app. The counts are kept in memory and counted again from the
//! outboxes on restart.

use std::collections::HashMap;

use switchboard_wire::Message;
use switchboard_wire::switchboard::{ErrorCode, FederationFrame, federation_frame};

use super::{OUTBOX_BYTES_QUOTA, OUTBOX_QUOTA, OUTBOX_QUOTA_PER_SENDER, device_key};
use crate::state::{DeviceKey, StoredState};

type Refusal = (ErrorCode, &'static str);

/// The device a frame for another app is from.
fn sender(frame: &FederationFrame) -> Option<DeviceKey> {
    match &frame.body {
        Some(federation_frame::Body::Forward(envelope)) => envelope.sender.as_ref().map(device_key),
        Some(federation_frame::Body::ForwardGroup(group)) => group.sender.as_ref().map(device_key),
        _ => None,
    }
}

/// How full each outbox is.
#[derive(Debug, Default)]
pub(super) struct OutboxUsage {
    bytes: HashMap<String, usize>,
    by_sender: HashMap<(String, DeviceKey), usize>,
    /// (app, sequence number) → sender and bytes, to give them back when the entry leaves.
    entries: HashMap<(String, u64), (Option<DeviceKey>, usize)>,
}

impl OutboxUsage {
    /// The usage of the outboxes in `state`, as a restarted relay finds them.
    pub(super) fn count(state: &StoredState) -> OutboxUsage {
        let mut usage = OutboxUsage::default();
        for (app, outbox) in &state.outboxes {
            for (seq, frame) in outbox {
                usage.add(app, *seq, frame);
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

    pub(super) fn add(&mut self, app: &str, seq: u64, frame: &FederationFrame) {
        let (sender, bytes) = (sender(frame), frame.encoded_len());
        *self.bytes.entry(app.to_owned()).or_default() += bytes;
        if let Some(sender) = &sender {
            *self.by_sender.entry((app.to_owned(), sender.clone())).or_default() += 1;
        }
        self.entries.insert((app.to_owned(), seq), (sender, bytes));
    }

    pub(super) fn remove(&mut self, app: &str, seq: u64) {
        let Some((sender, bytes)) = self.entries.remove(&(app.to_owned(), seq)) else { return };
        if let Some(total) = self.bytes.get_mut(app) {
            *total = total.saturating_sub(bytes);
        }
        if let Some(sender) = sender {
            let key = (app.to_owned(), sender);
            if let Some(waiting) = self.by_sender.get_mut(&key) {
                *waiting -= 1;
                if *waiting == 0 {
                    self.by_sender.remove(&key);
                }
            }
        }
    }
}
