//! Frames from devices.

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use switchboard_wire::frame::MAX_FRAME_LEN;
use switchboard_wire::switchboard::{
    Acknowledge, Authenticate, ClientFrame, DeviceAddress, DeviceBundle, Done, Envelope, EnvelopeKind, ErrorCode, FetchBundles,
    GroupEnvelope, Register, Registered, ServerFrame, UploadBundles, client_frame::Body, federation_frame,
    server_frame,
};
use switchboard_wire::decode;

use super::rates::Requester;
use super::{
    Action, ConnId, Deferred, ENVELOPE_ID_LEN, MAX_ACCOUNTS, MAX_BUNDLES_PER_DEVICE,
    MAX_ENVELOPE_CONTENT, RelayCore, app_of, device_key, failure,
};
use crate::state::{DeviceKey, Mutation};

type Refusal = (ErrorCode, &'static str);

pub(super) fn done(request_id: u64) -> ServerFrame {
    ServerFrame { request_id, body: Some(server_frame::Body::Done(Done {})) }
}

impl RelayCore {
    /// A frame from a client connection. A frame that does not decode closes the connection.
    pub fn client_frame(&mut self, conn: ConnId, bytes: &[u8]) -> Vec<Action> {
        let Some(authenticated) = self.clients.get(&conn).cloned() else { return Vec::new() };
        let frame: ClientFrame = match decode(bytes, MAX_FRAME_LEN) {
            Ok(frame) => frame,
            Err(_) => {
                return vec![failure(conn, 0, ErrorCode::Malformed, "frame does not decode"), Action::Close { conn }];
            }
        };
        let request_id = frame.request_id;
        let result = match (frame.body, authenticated) {
            (None, _) => Err((ErrorCode::Malformed, "empty frame")),
            (Some(Body::Register(register)), authenticated) => self.register(conn, request_id, register, authenticated.as_ref()),
            (Some(Body::Authenticate(authenticate)), None) => return self.authenticate(conn, request_id, authenticate),
            // Once per connection: a second as another device would leave the first online on it,
            // and start its delivery over. The same again (a request repeated) is answered again,
            // and changes nothing.
            (Some(Body::Authenticate(again)), Some(device)) => match self.credential_holds(&device, &again) {
                true => return vec![Action::ToClient { conn, frame: done(request_id) }],
                false => Err((ErrorCode::Forbidden, "this connection is authenticated already")),
            },
            (Some(_), None) => Err((ErrorCode::Unauthenticated, "authenticate first")),
            (Some(Body::UploadBundles(upload)), Some(device)) => self.upload_bundles(conn, request_id, &device, upload),
            (Some(Body::FetchBundles(fetch)), Some(device)) => return self.fetch_bundles(conn, request_id, &device, fetch),
            (Some(Body::Send(envelope)), Some(device)) => self.send(conn, request_id, &device, envelope),
            (Some(Body::SendGroup(group)), Some(device)) => self.send_group(conn, request_id, &device, group),
            (Some(Body::Acknowledge(ack)), Some(device)) => {
                self.acknowledge(&device, ack);
                return self.pump(&device);
            }
            (Some(Body::UploadBlob(upload)), Some(_)) => self.upload_blob(conn, request_id, upload),
            (Some(Body::FetchBlob(fetch)), Some(_)) => return self.fetch_blob(conn, request_id, fetch),
            (Some(Body::OrderChange(order)), Some(_)) => return self.ask_hub(conn, request_id, federation_frame::Body::OrderChange(order)),
            (Some(Body::FetchHead(fetch)), Some(_)) => return self.ask_hub(conn, request_id, federation_frame::Body::FetchHead(fetch)),
            (Some(Body::PublishPerson(publish)), Some(device)) => self.publish_person(conn, request_id, &device, publish),
            (Some(Body::LookupPerson(lookup)), Some(device)) => return self.lookup_person(conn, request_id, &device, lookup),
            (Some(Body::SendToUser(send)), Some(device)) => return self.send_to_user(conn, request_id, &device, send),
            (Some(Body::SetConsent(consent)), Some(device)) => self.set_consent(conn, request_id, &device, consent),
            (Some(Body::Report(report)), Some(device)) => return self.report(conn, request_id, &device, report),
            (Some(Body::OpenChannel(open)), Some(device)) => self.open_channel(conn, request_id, &device, open),
            (Some(Body::FollowChannel(follow)), Some(device)) => return self.follow_channel(conn, request_id, &device, follow),
            (Some(Body::RemoveDevice(remove)), Some(device)) => return self.remove_device(conn, request_id, &device, remove),
        };
        match result {
            Ok(()) => Vec::new(),
            Err((code, detail)) => vec![failure(conn, request_id, code, detail)],
        }
    }

    /// The first device of a user registers freely; any further device only from a connection
    /// authenticated as that user's first device (device 1), so no one can add a device to
    /// someone else's account (and so receive what is sent to them), and a device its account's
    /// owner removes cannot have left another behind (removing a device is device 1's too).
    fn register(
        &mut self,
        conn: ConnId,
        request_id: u64,
        register: Register,
        authenticated: Option<&DeviceKey>,
    ) -> Result<(), Refusal> {
        if app_of(&register.user) != Some(self.app.as_str()) || register.device_id == 0 {
            return Err((ErrorCode::Forbidden, "a device registers on its own app, as name@app with a device id"));
        }
        let device = (register.user, register.device_id);
        if self.state.accounts.contains_key(&device) {
            return Err((ErrorCode::AlreadyRegistered, "that device is registered"));
        }
        let devices = self.state.accounts.range(super::devices_of(&device.0)).count();
        if devices > 0 && authenticated.is_none_or(|(user, id)| *user != device.0 || *id != 1) {
            return Err((ErrorCode::Unauthenticated, "a further device registers from its user's first device"));
        }
        if devices >= switchboard_wire::limits::MAX_DEVICES_PER_USER {
            return Err((ErrorCode::TooLarge, "a user has at most 64 devices"));
        }
        if self.state.accounts.len() >= MAX_ACCOUNTS {
            return Err((ErrorCode::Unavailable, "this relay takes no more accounts"));
        }
        let (source, registered) = self.client_sources.get(&conn).copied().unwrap_or((None, 0));
        self.rates.registration(source, registered, self.ticks)?;
        self.client_sources.insert(conn, (source, registered + 1));
        let mut credential = [0u8; 32];
        self.rng.fill_bytes(&mut credential);
        let credential_hash: [u8; 32] = Sha256::digest(credential).into();
        self.mailbox_index.insert(device.clone(), Default::default());
        self.mutate(Mutation::PutAccount { device, credential_hash });
        let registered = Registered { credential: credential.to_vec() };
        self.deferred.push(Deferred::Client(
            conn,
            ServerFrame { request_id, body: Some(server_frame::Body::Registered(registered)) },
        ));
        Ok(())
    }

    /// Whether `authenticate` names `device` and carries its credential.
    fn credential_holds(&self, device: &DeviceKey, authenticate: &Authenticate) -> bool {
        let presented: [u8; 32] = Sha256::digest(&authenticate.credential).into();
        (device.0 == authenticate.user && device.1 == authenticate.device_id)
            && self.state.accounts.get(device).is_some_and(|stored| bool::from(stored.ct_eq(&presented)))
    }

    fn authenticate(&mut self, conn: ConnId, request_id: u64, authenticate: Authenticate) -> Vec<Action> {
        let device: DeviceKey = (authenticate.user.clone(), authenticate.device_id);
        if !self.credential_holds(&device, &authenticate) {
            return vec![failure(conn, request_id, ErrorCode::Unauthenticated, "unknown device or wrong credential")];
        }
        let mut actions = Vec::new();
        if let Some(previous) = self.online.insert(device.clone(), conn).filter(|previous| *previous != conn) {
            self.clients.insert(previous, None);
            actions.push(Action::Close { conn: previous });
        }
        self.clients.insert(conn, Some(device.clone()));
        actions.push(Action::ToClient { conn, frame: done(request_id) });
        if let (remaining, Some(mark)) = self.prekeys_left(&device)
            && remaining <= mark
        {
            actions.push(Action::ToClient { conn, frame: super::prekey_count(remaining) });
        }
        actions.extend(self.start_delivering(&device, conn));
        actions
    }

    /// The one-time prekeys the relay still holds for `device`, and the device's low mark (none
    /// when it asked never to be told).
    fn prekeys_left(&self, device: &DeviceKey) -> (u32, Option<u32>) {
        let left = self.state.bundles.get(device).map_or(0, |bundles| bundles.iter().filter(|bundle| bundle.pre_key.is_some()).count());
        (left as u32, self.state.prekey_marks.get(device).copied().filter(|mark| *mark > 0))
    }

    fn upload_bundles(&mut self, conn: ConnId, request_id: u64, device: &DeviceKey, upload: UploadBundles) -> Result<(), Refusal> {
        if upload.bundles.is_empty() || upload.bundles.len() > MAX_BUNDLES_PER_DEVICE {
            return Err((ErrorCode::TooLarge, "1 to 500 bundles"));
        }
        // Each bundle within what a client reads back, so a device's stock stays within
        // MAX_BUNDLES_PER_DEVICE × MAX_BUNDLE_LEN bytes.
        if upload.bundles.iter().any(|bundle| switchboard_wire::Message::encoded_len(bundle) > switchboard_wire::limits::MAX_BUNDLE_LEN) {
            return Err((ErrorCode::TooLarge, "a bundle over the size limit"));
        }
        if upload.bundles.iter().any(|bundle| bundle.device_id != device.1) {
            return Err((ErrorCode::Forbidden, "bundles of another device"));
        }
        let stock = self.state.bundles.get(device);
        let identity = stock.and_then(|stock| stock.first()).map_or(&upload.bundles[0].identity_key, |held| &held.identity_key);
        if upload.bundles.iter().any(|bundle| bundle.identity_key != *identity) {
            return Err((ErrorCode::Forbidden, "bundles of another identity"));
        }
        // Every bundle kept carries the newest signed prekey the relay has seen for the device
        // (it rotates it, and keeps the old one a while for first messages already on their
        // way); an upload never brings an older one back.
        let held = stock.and_then(|stock| stock.first()).cloned();
        let newest = upload.bundles.iter().max_by_key(|bundle| bundle.signed_pre_key_id).expect("not empty").clone();
        let signed = match held {
            Some(held) if held.signed_pre_key_id >= newest.signed_pre_key_id => held,
            _ => newest,
        };
        let rotated = stock.is_some_and(|stock| stock.iter().any(|bundle| bundle.signed_pre_key_id != signed.signed_pre_key_id));
        // One-time prekeys are numbered upwards by their device. An upload sent again (its answer
        // lost in a reset, or the frame repeated) must not put back prekeys already handed out:
        // two sessions on one prekey, and the device refuses the second. So only prekeys newer
        // than any this relay has held are taken, next to those not yet handed out. The newest
        // id held is remembered on the last-resort bundle once every one-time bundle is gone.
        let newest_prekey = stock.and_then(|stock| stock.iter().filter_map(|bundle| bundle.pre_key_id).max());
        let held_last_resort = stock.and_then(|stock| stock.iter().find(|bundle| bundle.pre_key.is_none()));
        // A last-resort bundle older than the one held (an upload repeated, a device restored from
        // an older copy of itself) does not replace it: its KEM prekeys go with an older signed
        // prekey, which its device forgets first.
        let uploaded_last_resort = upload
            .bundles
            .iter()
            .find(|bundle| bundle.pre_key.is_none())
            .filter(|uploaded| held_last_resort.is_none_or(|held| uploaded.signed_pre_key_id >= held.signed_pre_key_id))
            .cloned();
        let last_resort_changed = uploaded_last_resort.as_ref().is_some_and(|uploaded| {
            held_last_resort.is_none_or(|held| held.kem_pre_keys != uploaded.kem_pre_keys || held.suites != uploaded.suites)
        });
        let last_resort = uploaded_last_resort.or_else(|| held_last_resort.cloned());
        let fresh: Vec<_> = upload
            .bundles
            .into_iter()
            .filter(|bundle| bundle.pre_key.is_some() && bundle.pre_key_id.is_some_and(|id| newest_prekey.is_none_or(|newest| id > newest)))
            .collect();
        let mark_changed = self.state.prekey_marks.get(device).copied().unwrap_or(0) != upload.low_mark;
        if !fresh.is_empty() || rotated || stock.is_none() || mark_changed || last_resort_changed {
            // The one-time bundles not handed out yet, the fresh ones, and one last-resort bundle
            // (handed out, and kept, once the others are gone).
            let mut bundles: Vec<_> = stock.map(|stock| stock.iter().filter(|b| b.pre_key.is_some()).cloned().collect()).unwrap_or_default();
            bundles.extend(fresh);
            let excess = bundles.len().saturating_sub(MAX_BUNDLES_PER_DEVICE - 1);
            bundles.drain(..excess);
            let newest = bundles.iter().filter_map(|bundle| bundle.pre_key_id).chain(newest_prekey).max();
            bundles.extend(last_resort.map(|mut bundle| {
                bundle.pre_key_id = newest;
                bundle
            }));
            for bundle in &mut bundles {
                bundle.signed_pre_key_id = signed.signed_pre_key_id;
                bundle.signed_pre_key = signed.signed_pre_key.clone();
                bundle.signed_pre_key_signature = signed.signed_pre_key_signature.clone();
            }
            self.mutate(Mutation::PutBundles { device: device.clone(), bundles, low_mark: upload.low_mark });
        }
        self.deferred.push(Deferred::Client(conn, done(request_id)));
        // Still at or below the mark after this upload (fetches came while it was on its way):
        // told now, after its answer, since no later fetch will bring the stock down to the mark.
        if let (remaining, Some(mark)) = self.prekeys_left(device)
            && remaining <= mark
        {
            self.deferred.push(Deferred::PreKeyCount(device.clone(), remaining));
        }
        Ok(())
    }

    fn fetch_bundles(&mut self, conn: ConnId, request_id: u64, device: &DeviceKey, mut fetch: FetchBundles) -> Vec<Action> {
        let Some(app) = app_of(&fetch.user).map(str::to_owned) else {
            return vec![failure(conn, request_id, ErrorCode::Malformed, "a user is name@app")];
        };
        let requester = Requester::Local(device.clone());
        if let Err((code, detail)) = self.count_fetch(conn, &requester, &app) {
            return vec![failure(conn, request_id, code, detail)];
        }
        if app == self.app {
            return match self.hand_out_bundles(&fetch.user, &requester) {
                Some(bundles) => {
                    let frame = ServerFrame { request_id, body: Some(server_frame::Body::Bundles(bundles)) };
                    self.deferred.push(Deferred::Client(conn, frame));
                    Vec::new()
                }
                None => vec![failure(conn, request_id, ErrorCode::UnknownRecipient, "no such user, or no bundles")],
            };
        }
        let subject = fetch.user.clone();
        fetch.requester = Some(DeviceAddress { name: device.0.clone(), device_id: device.1 });
        self.ask_app(conn, request_id, app, subject, federation_frame::Body::FetchBundles(fetch))
    }

    /// Counts a fetch (of bundles, or a lookup) by a device of this app against its rate — unless
    /// it cannot be served now (no link to that app, or too many requests out on the connection),
    /// which is refused later without counting.
    pub(super) fn count_fetch(&mut self, conn: ConnId, requester: &Requester, app: &str) -> Result<(), Refusal> {
        let servable = app == self.app || (self.outbound_links.contains_key(app) && self.pending_for(conn) < super::MAX_PENDING_PER_CONNECTION);
        if servable { self.rates.fetch(requester, self.ticks) } else { Ok(()) }
    }

    /// Sends a client's request to `app`'s relay; its answer (about `subject` only) goes back to
    /// the client under the client's request id.
    pub(super) fn ask_app(&mut self, conn: ConnId, request_id: u64, app: String, subject: String, body: federation_frame::Body) -> Vec<Action> {
        self.ask_app_about(conn, request_id, app, subject, body, None)
    }

    /// [`Self::ask_app`], with the report whose stamp it asks about (kept if the answer is yes).
    pub(super) fn ask_app_about(
        &mut self,
        conn: ConnId,
        request_id: u64,
        app: String,
        subject: String,
        body: federation_frame::Body,
        report: Option<Box<switchboard_wire::switchboard::KeptReport>>,
    ) -> Vec<Action> {
        self.ask_app_with(conn, request_id, app, subject, body, report, None)
    }

    /// [`Self::ask_app_about`], or with the device that follows the channel `subject` once its
    /// hub answers (`follower`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ask_app_with(
        &mut self,
        conn: ConnId,
        request_id: u64,
        app: String,
        subject: String,
        body: federation_frame::Body,
        report: Option<Box<switchboard_wire::switchboard::KeptReport>>,
        follower: Option<DeviceKey>,
    ) -> Vec<Action> {
        if !self.peers.contains(&app) {
            return vec![failure(conn, request_id, ErrorCode::UnknownRecipient, "no such app")];
        }
        let Some(&link) = self.outbound_links.get(&app) else {
            return vec![failure(conn, request_id, ErrorCode::Unavailable, "that app's relay cannot be reached now")];
        };
        if self.pending_for(conn) >= super::MAX_PENDING_PER_CONNECTION {
            return vec![failure(conn, request_id, ErrorCode::RateLimited, "too many requests out at other apps for this connection")];
        }
        let forward = matches!(body, federation_frame::Body::SendToUser(_));
        let request = self.next_request;
        self.next_request += 1;
        // A frame this relay forwards must fit in a frame: its request id may be longer.
        let frame = switchboard_wire::switchboard::FederationFrame { request_id: request, body: Some(body) };
        if switchboard_wire::Message::encoded_len(&frame) > MAX_FRAME_LEN {
            return vec![failure(conn, request_id, ErrorCode::TooLarge, "too large to forward in one frame")];
        }
        self.add_pending(request, super::PendingFetch { conn, request_id, app, subject, forward, report, follower });
        vec![Action::ToLink { conn: link, frame }]
    }

    /// An order or a head fetch for a group: answered here if this relay is the group's hub (once
    /// what it answers is durable), or asked of the hub.
    fn ask_hub(&mut self, conn: ConnId, request_id: u64, body: federation_frame::Body) -> Vec<Action> {
        let Some(group) = super::hub::group_of(&body).map(str::to_owned) else {
            return vec![failure(conn, request_id, ErrorCode::Malformed, "not a request for a hub")];
        };
        let Some(hub) = app_of(&group).map(str::to_owned) else {
            return vec![failure(conn, request_id, ErrorCode::Malformed, "a group id is name@app")];
        };
        if hub != self.app {
            return self.ask_app(conn, request_id, hub, group, body);
        }
        match self.answer_as_hub(body) {
            Ok(head) => {
                let frame = ServerFrame { request_id, body: Some(server_frame::Body::GroupHead(head)) };
                self.deferred.push(Deferred::Client(conn, frame));
                Vec::new()
            }
            Err((code, detail)) => vec![failure(conn, request_id, code, detail)],
        }
    }

    /// One bundle of every device of `user` (a local user); each one-time prekey goes out once:
    /// the last bundle of a device is handed out again without its one-time prekey. A requester
    /// past its share of `user`'s one-time prekeys for the period ([`RateLimits`]) gets bundles
    /// without them, and takes nothing from the stock.
    pub(super) fn hand_out_bundles(&mut self, user: &str, requester: &Requester) -> Option<switchboard_wire::switchboard::Bundles> {
        let devices: Vec<DeviceKey> = self.state.bundles.range(super::devices_of(user)).map(|(device, _)| device.clone()).collect();
        if devices.is_empty() {
            return None;
        }
        let with_prekeys = self.rates.prekeys(requester, user, self.ticks);
        let mut handed = Vec::new();
        for device in devices {
            let mut bundles = self.state.bundles.get(&device).cloned().unwrap_or_default();
            let one_time = bundles.iter().position(|bundle| bundle.pre_key.is_some());
            let last_resort = bundles.iter().position(|bundle| bundle.pre_key.is_none());
            let mut bundle = match (with_prekeys, one_time, last_resort) {
                // A one-time bundle, with its one-time prekey and one-time KEM prekeys: handed
                // out once.
                (true, Some(position), last_resort) => {
                    let bundle = if last_resort.is_none() && bundles.len() == 1 {
                        // A device that uploaded no last-resort bundle: its last bundle stays,
                        // without its one-time prekey (whose id is kept: see `upload_bundles`)
                        // and its KEM prekeys, one-time as they are (an initiator then refuses
                        // the bundle rather than write to a key its device no longer has).
                        let handed = bundles[0].clone();
                        bundles[0].pre_key = None;
                        bundles[0].kem_pre_keys.clear();
                        handed
                    } else {
                        bundles.remove(position)
                    };
                    let low_mark = self.state.prekey_marks.get(&device).copied().unwrap_or(0);
                    self.mutate(Mutation::PutBundles { device: device.clone(), bundles, low_mark });
                    // Told once, as the stock reaches the mark (and again at each
                    // authentication below it), not at every fetch below it.
                    let (remaining, mark) = self.prekeys_left(&device);
                    if Some(remaining) == mark {
                        self.deferred.push(Deferred::PreKeyCount(device.clone(), remaining));
                    }
                    bundle
                }
                // The last-resort bundle: handed out as often as asked (its KEM prekeys are
                // last-resort ones), and kept.
                (_, _, Some(position)) => bundles[position].clone(),
                // A device that never uploaded a last-resort bundle, to a requester over its
                // allowance: the signed prekey alone.
                (false, Some(position), None) => {
                    let mut bundle = bundles[position].clone();
                    bundle.pre_key = None;
                    bundle.kem_pre_keys.clear();
                    bundle
                }
                (_, None, None) => continue,
            };
            if bundle.pre_key.is_none() {
                bundle.pre_key_id = None;
            }
            handed.push(DeviceBundle { device_id: device.1, bundle: Some(bundle) });
        }
        handed.sort_by_key(|d| d.device_id);
        (!handed.is_empty()).then(|| switchboard_wire::switchboard::Bundles { user: user.to_owned(), devices: handed })
    }

    fn send(&mut self, conn: ConnId, request_id: u64, device: &DeviceKey, mut envelope: Envelope) -> Result<(), Refusal> {
        check_envelope(device, &envelope.id, envelope.sender.as_ref(), envelope.content.len())?;
        check_pairwise(&envelope)?;
        let recipient = envelope.recipient.clone().ok_or((ErrorCode::Malformed, "no recipient"))?;
        self.stamp(&mut envelope.franking, device, &recipient.name, false)?;
        self.route(envelope, &recipient)?;
        self.note_contacts(&device.0, [recipient.name.as_str()]);
        self.deferred.push(Deferred::Client(conn, done(request_id)));
        Ok(())
    }

    fn send_group(&mut self, conn: ConnId, request_id: u64, device: &DeviceKey, mut group: GroupEnvelope) -> Result<(), Refusal> {
        check_envelope(device, &group.id, group.sender.as_ref(), group.content.len())?;
        if group.channel && !group.recipients.is_empty() {
            return Err((ErrorCode::Malformed, "a channel post names no recipients"));
        }
        self.stamp(&mut group.franking, device, &group.group_id, true)?;
        if group.channel {
            self.route_channel(group, None)?;
            self.deferred.push(Deferred::Client(conn, done(request_id)));
            return Ok(());
        }
        let recipients: Vec<String> = group.recipients.iter().map(|recipient| recipient.name.clone()).collect();
        self.route_group(group, None)?;
        self.note_contacts(&device.0, recipients.iter().map(String::as_str));
        self.deferred.push(Deferred::Client(conn, done(request_id)));
        Ok(())
    }

    fn acknowledge(&mut self, device: &DeviceKey, ack: Acknowledge) {
        for envelope in ack.envelopes {
            let key = crate::state::mail_key(envelope.sender.as_ref(), &envelope.id);
            let Some(seq) = self.mailbox_index.get_mut(device).and_then(|ids| ids.remove(&key)) else { continue };
            self.release(device, seq);
            self.delivered(device, seq);
            let bytes = self.state.mailboxes.get(device).and_then(|mailbox| mailbox.get(&seq)).map_or(0, |e| e.bytes);
            if let Some(held) = self.mailbox_bytes.get_mut(device) {
                *held = held.saturating_sub(bytes);
            }
            self.mutate(Mutation::DeleteEnvelope { device: device.clone(), seq });
        }
    }
}

/// The id and size every envelope must have.
pub(super) fn check_envelope_shape(id: &[u8], content_len: usize) -> Result<(), Refusal> {
    if id.len() != ENVELOPE_ID_LEN {
        return Err((ErrorCode::Malformed, "an envelope id is 16 bytes"));
    }
    if content_len > MAX_ENVELOPE_CONTENT {
        return Err((ErrorCode::TooLarge, "envelope content over 256 KiB"));
    }
    Ok(())
}

/// What a one-to-one envelope must be: a pairwise message, and no channel post. Group ciphertext
/// and channel posts go through `SendGroup` only, where they are stamped as the group's (a Sender
/// Keys message sent as a one-to-one one would be stamped for the wrong recipient, and could never
/// be reported; one marked as a channel's post would pass for one its hub never took).
pub(super) fn check_pairwise(envelope: &Envelope) -> Result<(), Refusal> {
    if envelope.channel {
        return Err((ErrorCode::Malformed, "a channel post goes as a channel's, through its hub"));
    }
    match EnvelopeKind::try_from(envelope.kind) {
        Ok(EnvelopeKind::PrekeyMessage | EnvelopeKind::SignalMessage) => Ok(()),
        _ => Err((ErrorCode::Malformed, "a one-to-one envelope holds a PreKeySignalMessage or a SignalMessage")),
    }
}

/// What every envelope from a device must satisfy.
fn check_envelope(
    device: &DeviceKey,
    id: &[u8],
    sender: Option<&switchboard_wire::switchboard::DeviceAddress>,
    content_len: usize,
) -> Result<(), Refusal> {
    check_envelope_shape(id, content_len)?;
    match sender {
        Some(sender) if device_key(sender) == *device => Ok(()),
        _ => Err((ErrorCode::Forbidden, "the sender must be the authenticated device")),
    }
}
