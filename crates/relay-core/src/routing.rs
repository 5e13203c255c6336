//! Where envelopes go: into a local mailbox, or into the durable outbox of another app.
//! Group envelopes follow the hub/follower model: the sender's relay delivers to its own members
//! and hands one copy to the hub (unless it is the hub); the hub delivers to its members and hands
//! one copy to each other app with members, never back to the app it came from.

use std::collections::BTreeMap;

use switchboard_wire::Message;
use switchboard_wire::switchboard::{
    DeviceAddress, Envelope, EnvelopeKind, ErrorCode, FederationFrame, GroupEnvelope, federation_frame,
};

use super::{Deferred, DeviceKey, MAILBOX_BYTES_QUOTA, MAILBOX_QUOTA, MAX_GROUP_FANOUT_BYTES, MAX_GROUP_RECIPIENTS, RelayCore, app_of, device_key};
use crate::state::Mutation;

type Refusal = (ErrorCode, &'static str);

impl RelayCore {
    /// Routes one envelope to `recipient`, local or remote.
    pub(super) fn route(&mut self, envelope: Envelope, recipient: &DeviceAddress) -> Result<(), Refusal> {
        let app = app_of(&recipient.name).ok_or((ErrorCode::UnknownRecipient, "a recipient is name@app"))?.to_owned();
        if app == self.app {
            let device = device_key(recipient);
            self.check_local_envelope(&device, &envelope)?;
            if self.is_blocked(&device.0, sender_of(envelope.sender.as_ref())) {
                self.metrics.blocked_dropped += 1;
                return Ok(());
            }
            self.store_local(device, envelope);
            return Ok(());
        }
        if !self.peers.contains(&app) {
            return Err((ErrorCode::UnknownRecipient, "no such app"));
        }
        self.check_outbox(&app, envelope.sender.as_ref(), envelope.encoded_len())?;
        self.store_outbound(&app, federation_frame::Body::Forward(envelope));
        Ok(())
    }

    /// Routes a group envelope that came from a device (`from_app` None) or another app.
    pub(super) fn route_group(&mut self, group: GroupEnvelope, from_app: Option<&str>) -> Result<(), Refusal> {
        if group.recipients.len() > MAX_GROUP_RECIPIENTS {
            return Err((ErrorCode::TooLarge, "over 10,000 recipients"));
        }
        if group.recipients.len().saturating_mul(group.content.len()) > MAX_GROUP_FANOUT_BYTES {
            return Err((ErrorCode::TooLarge, "recipients × content over 64 MiB"));
        }
        let hub = group.hub.clone();
        if app_of(&group.group_id) != Some(hub.as_str()) {
            return Err((ErrorCode::Malformed, "a group's hub is the app its id names"));
        }
        if hub != self.app && !self.peers.contains(&hub) {
            return Err((ErrorCode::UnknownRecipient, "unknown hub app"));
        }
        let mut local = Vec::new();
        let mut remote: BTreeMap<String, Vec<DeviceAddress>> = BTreeMap::new();
        for recipient in &group.recipients {
            let app = app_of(&recipient.name).ok_or((ErrorCode::UnknownRecipient, "a recipient is name@app"))?;
            if app == self.app {
                local.push((device_key(recipient), recipient));
            } else if Some(app) != from_app {
                remote.entry(app.to_owned()).or_default().push(recipient.clone());
            }
        }
        // Followers deliver only; only the hub, or the sender's own relay, sends on.
        if from_app.is_some() && self.app != hub {
            remote.clear();
        }
        if remote.keys().any(|app| !self.peers.contains(app)) {
            return Err((ErrorCode::UnknownRecipient, "a recipient on an unknown app"));
        }
        let outgoing: Vec<(String, Vec<DeviceAddress>)> = if self.app == hub || remote.is_empty() {
            remote.into_iter().collect()
        } else {
            vec![(hub.clone(), remote.into_values().flatten().collect())]
        };
        // Refuse before changing anything.
        for (device, _) in &local {
            self.check_local(device, group.content.len())?;
        }
        let bytes = group.encoded_len();
        for (app, _) in &outgoing {
            self.check_outbox(app, group.sender.as_ref(), bytes)?;
        }
        for (device, recipient) in local {
            if self.is_blocked(&device.0, sender_of(group.sender.as_ref())) {
                // Checked above as any other: the sender learns nothing of the block.
                self.metrics.blocked_dropped += 1;
                continue;
            }
            let envelope = Envelope {
                id: group.id.clone(),
                sender: group.sender.clone(),
                recipient: Some(recipient.clone()),
                kind: EnvelopeKind::SenderKeyMessage as i32,
                content: group.content.clone(),
                group_id: group.group_id.clone(),
                franking: group.franking.clone(),
                channel: false,
            };
            self.store_local(device, envelope);
        }
        for (app, recipients) in outgoing {
            let copy = GroupEnvelope { recipients, ..group.clone() };
            self.store_outbound(&app, federation_frame::Body::ForwardGroup(copy));
        }
        Ok(())
    }

    /// Whether a local device's mailbox takes `envelope` now (its quota, and the stranger
    /// allowance), without storing it. From a sender the user blocked, only the mailbox is
    /// checked, as for anyone (no such device, full): the envelope will be dropped, and its sender
    /// answered as if it were stored, learning nothing of the block.
    pub(super) fn check_local_envelope(&self, device: &DeviceKey, envelope: &Envelope) -> Result<(), Refusal> {
        self.check_local(device, envelope.content.len())?;
        if self.is_blocked(&device.0, sender_of(envelope.sender.as_ref())) {
            return Ok(());
        }
        self.check_stranger(device, sender_of(envelope.sender.as_ref()), envelope.content.len())
    }

    /// Whether `device`'s mailbox takes an envelope of `bytes`: it exists, and has room in
    /// envelopes and bytes. (One-to-one mail is also held to the stranger allowance; group mail
    /// is not: a relay does not know who is in a group, and one passive member's allowance must
    /// not hold a whole group's messages back.)
    pub(super) fn check_local(&self, device: &DeviceKey, bytes: usize) -> Result<(), Refusal> {
        let held = self.mailbox_bytes.get(device).copied().unwrap_or(0);
        match self.mailbox_index.get(device) {
            None => Err((ErrorCode::UnknownRecipient, "no such device")),
            Some(ids) if ids.len() >= MAILBOX_QUOTA || held + bytes > MAILBOX_BYTES_QUOTA => {
                Err((ErrorCode::MailboxFull, "the recipient's mailbox is full"))
            }
            Some(_) => Ok(()),
        }
    }

    /// Whether `app`'s outbox takes a frame of about `bytes` from `sender`.
    pub(super) fn check_outbox(&self, app: &str, sender: Option<&DeviceAddress>, bytes: usize) -> Result<(), Refusal> {
        let frames = self.state.outboxes.get(app).map_or(0, |o| o.len());
        self.outbox_usage.admits(app, frames, sender.map(device_key).as_ref(), bytes)
    }

    /// Stores an envelope for a local device that [`Self::check_local`] accepted (once per
    /// sender and envelope id) and delivers it when durable: whether it was stored now (not
    /// already held, and the device exists).
    pub(super) fn store_local(&mut self, device: DeviceKey, envelope: Envelope) -> bool {
        let Some(ids) = self.mailbox_index.get_mut(&device) else { return false };
        let key = crate::state::mail_key(envelope.sender.as_ref(), &envelope.id);
        if ids.contains_key(&key) {
            // The same sender's envelope again (a retry): stored once, acknowledged again.
            return false;
        }
        // `self.seq()`, written out: `ids` still borrows the index.
        let seq = self.next_seq;
        self.next_seq += 1;
        ids.insert(key, seq);
        let bytes = envelope.content.len();
        if envelope.group_id.is_empty() {
            self.hold_from(&device, seq, sender_of(envelope.sender.as_ref()), bytes);
        }
        *self.mailbox_bytes.entry(device.clone()).or_default() += bytes;
        self.metrics.envelopes_stored += 1;
        self.mutate(Mutation::PutEnvelope { device: device.clone(), seq, envelope });
        self.deferred.push(Deferred::Deliver(device));
        true
    }

    /// Stores a frame for another app and sends it when durable (and the link is up).
    pub(super) fn store_outbound(&mut self, app: &str, body: federation_frame::Body) {
        let seq = self.seq();
        let frame = FederationFrame { request_id: seq, body: Some(body) };
        self.mutate(Mutation::PutOutbound { app: app.to_owned(), seq, frame });
        // Counted from the entry the mutation just made (encoding a frame to size it is not free).
        if let Some(entry) = self.state.outboxes.get(app).and_then(|outbox| outbox.get(&seq)) {
            self.outbox_usage.add(app, entry);
        }
        self.deferred.push(Deferred::Forward(app.to_owned()));
    }
}

/// The user an envelope is from ("" if it names none: a stranger to everyone).
pub(super) fn sender_of(sender: Option<&DeviceAddress>) -> &str {
    sender.map_or("", |sender| sender.name.as_str())
}
