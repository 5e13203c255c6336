//! Messages for every device of one user at once ([`SendToUser`]): taken only if they name
//! exactly the devices the user has, so that a sender whose list is out of date hears of it
//! ([`DevicesChanged`]) instead of leaving a device without the message. And the removal of a
//! device ([`RemoveDevice`]), after which it is one of those no longer there.

use std::collections::BTreeSet;

use switchboard_wire::switchboard::{
    DevicesChanged, ErrorCode, FederationFrame, RemoveDevice, SendToUser, ServerFrame, federation_frame, server_frame,
};

use super::{Action, ConnId, Deferred, RelayCore, app_of, device_key, failure, link_failure};
use crate::state::{DeviceKey, Mutation};

type Refusal = (ErrorCode, &'static str);

/// Envelopes in one [`SendToUser`]: one per device.
pub const MAX_ENVELOPES_PER_USER_SEND: usize = switchboard_wire::limits::MAX_DEVICES_PER_USER;

impl RelayCore {
    /// A device sends to every device of one user: stored here, or forwarded at once to the
    /// user's app, whose answer (stored, or the devices changed) goes back to the device.
    pub(super) fn send_to_user(&mut self, conn: ConnId, request_id: u64, device: &DeviceKey, mut send: SendToUser) -> Vec<Action> {
        if let Err((code, detail)) = check(&send, Some(device)) {
            return vec![failure(conn, request_id, code, detail)];
        }
        for envelope in &mut send.envelopes {
            if let Err((code, detail)) = super::client::check_pairwise(envelope) {
                return vec![failure(conn, request_id, code, detail)];
            }
            if let Err((code, detail)) = self.stamp(&mut envelope.franking, device, &send.user, false) {
                return vec![failure(conn, request_id, code, detail)];
            }
        }
        let Some(app) = app_of(&send.user).map(str::to_owned) else {
            return vec![failure(conn, request_id, ErrorCode::Malformed, "a user is name@app")];
        };
        self.note_contacts(&device.0, [send.user.as_str()]);
        if app != self.app {
            let subject = send.user.clone();
            let actions = self.ask_app(conn, request_id, app, subject, federation_frame::Body::SendToUser(send));
            if actions.iter().any(|action| matches!(action, Action::ToLink { .. })) {
                self.metrics.envelopes_forwarded += 1;
            }
            return actions;
        }
        match self.store_for_user(send) {
            Ok(None) => {
                self.deferred.push(Deferred::Client(conn, super::client::done(request_id)));
                Vec::new()
            }
            Ok(Some(changed)) => vec![Action::ToClient { conn, frame: ServerFrame { request_id, body: Some(server_frame::Body::DevicesChanged(changed)) } }],
            Err((code, detail)) => vec![failure(conn, request_id, code, detail)],
        }
    }

    /// Another app's relay forwards a [`SendToUser`] of one of its devices.
    pub(super) fn send_to_user_from(&mut self, conn: ConnId, app: &str, request_id: u64, send: SendToUser) -> Vec<Action> {
        let refuse = |code, detail| vec![Action::ToLink { conn, frame: link_failure(request_id, code, detail) }];
        if let Err((code, detail)) = check(&send, None) {
            return refuse(code, detail);
        }
        if send.envelopes.iter().any(|envelope| envelope.sender.as_ref().and_then(|sender| app_of(&sender.name)) != Some(app)) {
            return refuse(ErrorCode::Forbidden, "an app forwards only its own users' envelopes");
        }
        if app_of(&send.user) != Some(self.app.as_str()) {
            return refuse(ErrorCode::UnknownRecipient, "the user is not on this app");
        }
        match self.store_for_user(send) {
            Ok(None) => {
                let acknowledge = FederationFrame { request_id, body: Some(federation_frame::Body::Acknowledge(Default::default())) };
                self.deferred.push(Deferred::Link(conn, acknowledge));
                Vec::new()
            }
            Ok(Some(changed)) => vec![Action::ToLink { conn, frame: FederationFrame { request_id, body: Some(federation_frame::Body::DevicesChanged(changed)) } }],
            Err((code, detail)) => refuse(code, detail),
        }
    }

    /// Device 1 of a user removes another of its devices: its connection is closed at once and
    /// nothing more reaches it; its account (so its credential), bundles, mailbox and follows
    /// are deleted; answered with `Done` once that is durable.
    pub(super) fn remove_device(&mut self, conn: ConnId, request_id: u64, device: &DeviceKey, remove: RemoveDevice) -> Vec<Action> {
        let removed = match self.check_removal(device, remove.device_id) {
            Ok(removed) => removed,
            Err((code, detail)) => return vec![failure(conn, request_id, code, detail)],
        };
        let actions = self.disconnect(&removed);
        self.forget_device(&removed);
        self.deferred.push(Deferred::Client(conn, super::client::done(request_id)));
        actions
    }

    /// Which device `device` may remove as `device_id`: another existing device of its user, and
    /// only if it is the user's device 1. Counted against its rate, as a durable write.
    fn check_removal(&mut self, device: &DeviceKey, device_id: u32) -> Result<DeviceKey, Refusal> {
        if device.1 != 1 {
            return Err((ErrorCode::Forbidden, "only a user's first device removes its other devices"));
        }
        if device_id == 1 {
            return Err((ErrorCode::Malformed, "a user's first device is not removed"));
        }
        let removed = (device.0.clone(), device_id);
        if !self.state.accounts.contains_key(&removed) {
            return Err((ErrorCode::UnknownRecipient, "no such device"));
        }
        self.rates.fetch(&super::rates::Requester::Local(device.clone()), self.ticks)?;
        Ok(removed)
    }

    /// Closes `device`'s connection, if it is online, and forgets it: nothing more is handed to
    /// it, nothing it sends on it is read, and what it asked of other apps is answered nowhere.
    fn disconnect(&mut self, device: &DeviceKey) -> Vec<Action> {
        let Some(&conn) = self.online.get(device) else { return Vec::new() };
        self.client_closed(conn);
        vec![Action::Close { conn }]
    }

    /// Deletes `device` (of this app) and what the core holds of its mailbox; the hubs of
    /// channels no other device here follows are told.
    fn forget_device(&mut self, device: &DeviceKey) {
        self.mailbox_index.remove(device);
        self.mailbox_bytes.remove(device);
        self.strangers.remove(device);
        let followed: Vec<String> = self.state.follows.get(device).map(|channels| channels.iter().cloned().collect()).unwrap_or_default();
        self.mutate(Mutation::DeleteAccount { device: device.clone() });
        for channel in followed {
            self.unfollowed_here(&channel);
        }
    }

    /// Stores every envelope of `send` (for a user of this app) if they name exactly the user's
    /// devices with bundles, but the sending device; otherwise stores nothing and says which
    /// differ. Every envelope is checked before any is stored: all or none.
    fn store_for_user(&mut self, send: SendToUser) -> Result<Option<DevicesChanged>, Refusal> {
        let sender = send.envelopes.first().and_then(|envelope| envelope.sender.clone()).ok_or((ErrorCode::Malformed, "no envelopes"))?;
        let has: BTreeSet<u32> = self
            .state
            .bundles
            .range(super::devices_of(&send.user))
            .map(|((_, id), _)| *id)
            .filter(|id| !(sender.name == send.user && sender.device_id == *id))
            .collect();
        if has.is_empty() {
            return Err((ErrorCode::UnknownRecipient, "no such user, or no devices with bundles"));
        }
        let named: BTreeSet<u32> = send.envelopes.iter().filter_map(|envelope| envelope.recipient.as_ref().map(|r| r.device_id)).collect();
        if named != has {
            return Ok(Some(DevicesChanged {
                user: send.user,
                missing: has.difference(&named).copied().collect(),
                extra: named.difference(&has).copied().collect(),
            }));
        }
        for envelope in &send.envelopes {
            let recipient = envelope.recipient.as_ref().expect("checked");
            self.check_local_envelope(&device_key(recipient), envelope)?;
        }
        for envelope in send.envelopes {
            let recipient = envelope.recipient.clone().expect("checked");
            self.route(envelope, &recipient)?;
        }
        Ok(None)
    }
}

/// The shape every [`SendToUser`] must have: 1 to [`MAX_ENVELOPES_PER_USER_SEND`] envelopes,
/// one per device of `user`, each from one sender (`device`, when it comes from a device).
fn check(send: &SendToUser, device: Option<&DeviceKey>) -> Result<(), Refusal> {
    if send.envelopes.is_empty() || send.envelopes.len() > MAX_ENVELOPES_PER_USER_SEND {
        return Err((ErrorCode::Malformed, "one to 64 envelopes, one per device"));
    }
    let mut ids = BTreeSet::new();
    let first_sender = send.envelopes[0].sender.clone();
    for envelope in &send.envelopes {
        super::client::check_envelope_shape(&envelope.id, envelope.content.len())?;
        if envelope.channel {
            return Err((ErrorCode::Malformed, "a channel post goes as a channel's, through its hub"));
        }
        if envelope.sender != first_sender {
            return Err((ErrorCode::Malformed, "every envelope from one sender"));
        }
        if let Some(device) = device
            && envelope.sender.as_ref().map(device_key).as_ref() != Some(device)
        {
            return Err((ErrorCode::Forbidden, "the sender must be the authenticated device"));
        }
        match &envelope.recipient {
            Some(recipient) if recipient.name == send.user && recipient.device_id != 0 && ids.insert(recipient.device_id) => {}
            _ => return Err((ErrorCode::Malformed, "each envelope for a distinct device of the user")),
        }
    }
    Ok(())
}
