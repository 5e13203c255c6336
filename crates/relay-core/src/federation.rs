//! Frames from other apps' relays. Requests arrive on connections they dialed; answers to our
//! requests arrive on connections we dialed. The app a connection speaks for is established by
//! mutual TLS before the core sees it; the core checks that what it carries is that app's to send.

use switchboard_wire::decode;
use switchboard_wire::frame::MAX_FRAME_LEN;
use switchboard_wire::switchboard::{
    Acknowledge, Blob, ErrorCode, FederationFrame, ServerFrame, federation_frame::Body, server_frame,
};

use super::rates::Requester;
use super::{Action, ConnId, Deferred, RelayCore, app_of, link_failure};
use crate::state::Mutation;

fn is_transient(code: i32) -> bool {
    matches!(ErrorCode::try_from(code), Ok(ErrorCode::MailboxFull | ErrorCode::Unavailable | ErrorCode::RateLimited))
}

impl RelayCore {
    /// A frame from a federation connection.
    pub fn link_frame(&mut self, conn: ConnId, bytes: &[u8]) -> Vec<Action> {
        let Some((app, dialed)) = self.links.get(&conn).cloned() else { return Vec::new() };
        let frame: FederationFrame = match decode(bytes, MAX_FRAME_LEN) {
            Ok(frame) => frame,
            Err(_) => return vec![Action::Close { conn }],
        };
        if dialed {
            self.answer_from(&app, frame)
        } else {
            self.request_from(conn, &app, frame)
        }
    }

    /// An answer to something we sent `app`.
    fn answer_from(&mut self, app: &str, frame: FederationFrame) -> Vec<Action> {
        // An answer to a client's request (bundles, a blob, or a refusal of either) — accepted only
        // from the app asked, and only about what was asked.
        let asked = self.pending_fetches.get(&frame.request_id).filter(|fetch| fetch.app == app);
        if asked.is_some_and(|fetch| fetch.report.is_some()) {
            return self.stamp_checked(frame);
        }
        if asked.is_some_and(|fetch| fetch.follower.is_some()) {
            return self.channel_followed(frame);
        }
        if let Some(fetch) = asked {
            let body = match frame.body {
                Some(Body::Bundles(bundles)) if bundles.user == fetch.subject => server_frame::Body::Bundles(bundles),
                Some(Body::Blob(blob)) if blob.blob_id == fetch.subject => server_frame::Body::Blob(blob),
                Some(Body::GroupHead(head)) if head.group_id == fetch.subject => server_frame::Body::GroupHead(head),
                Some(Body::PersonFound(found)) if found.user == fetch.subject => server_frame::Body::PersonFound(found),
                // A SendToUser forwarded for a device: stored there, or its devices changed.
                Some(Body::Acknowledge(_)) if fetch.forward => server_frame::Body::Done(Default::default()),
                Some(Body::DevicesChanged(changed)) if fetch.forward && changed.user == fetch.subject => server_frame::Body::DevicesChanged(changed),
                Some(Body::Failure(failure)) => server_frame::Body::Failure(failure),
                _ => return Vec::new(),
            };
            let fetch = self.take_pending(frame.request_id).expect("just found");
            return vec![Action::ToClient {
                conn: fetch.conn,
                frame: ServerFrame { request_id: fetch.request_id, body: Some(body) },
            }];
        }
        let seq = frame.request_id;
        match frame.body {
            Some(Body::Acknowledge(_) | Body::Failure(_)) if !self.answered(app, seq) => {
                // An answer to nothing we have out (answered already, or never sent).
                Vec::new()
            }
            Some(Body::Failure(failure)) if is_transient(failure.code) => {
                // Full or unavailable there for now: keep it, and try again later.
                self.retry_later(app, seq);
                self.pump_outbox(app, false)
            }
            Some(Body::Acknowledge(_) | Body::Failure(_)) => {
                // Accepted (durable there) or refused for good: either way it leaves our outbox.
                self.forget_retry(app, seq);
                if let Some(entry) = self.state.outboxes.get(app).and_then(|o| o.get(&seq)).cloned() {
                    self.outbox_usage.remove(app, &entry);
                    self.mutate(Mutation::DeleteOutbound { app: app.to_owned(), seq });
                }
                self.pump_outbox(app, false)
            }
            _ => Vec::new(),
        }
    }

    /// A request from `app` on a connection it dialed; answered on that connection.
    fn request_from(&mut self, conn: ConnId, app: &str, frame: FederationFrame) -> Vec<Action> {
        let request_id = frame.request_id;
        let acknowledge = FederationFrame { request_id, body: Some(Body::Acknowledge(Acknowledge::default())) };
        let refuse = |code, detail| vec![Action::ToLink { conn, frame: link_failure(request_id, code, detail) }];
        match frame.body {
            Some(Body::Forward(envelope)) => {
                let sender_app = envelope.sender.as_ref().and_then(|sender| app_of(&sender.name));
                if sender_app != Some(app) {
                    return refuse(ErrorCode::Forbidden, "an app forwards only its own users' envelopes");
                }
                let Some(recipient) = envelope.recipient.clone() else {
                    return refuse(ErrorCode::Malformed, "no recipient");
                };
                if envelope.channel {
                    return refuse(ErrorCode::Malformed, "a channel post goes as a channel's, through its hub");
                }
                if app_of(&recipient.name) != Some(self.app.as_str()) {
                    return refuse(ErrorCode::UnknownRecipient, "the recipient is not on this app");
                }
                match self.route(envelope, &recipient) {
                    Ok(()) => {
                        self.deferred.push(Deferred::Link(conn, acknowledge));
                        Vec::new()
                    }
                    Err((code, detail)) => refuse(code, detail),
                }
            }
            Some(Body::ForwardGroup(group)) if group.channel => {
                let sender_app = group.sender.as_ref().and_then(|sender| app_of(&sender.name));
                // A channel's hub takes its posts from the sender's own app; every other app
                // takes them from the hub only (its own users' posts too: they reach their
                // followers through the hub, which alone knows the admins).
                let allowed = match self.app == group.hub {
                    true => sender_app == Some(app),
                    false => group.hub == app,
                };
                if !allowed {
                    return refuse(ErrorCode::Forbidden, "a channel post comes from its sender's app to the hub, and from the hub to the others");
                }
                match self.route_channel(group, Some(app)) {
                    Ok(()) => {
                        self.deferred.push(Deferred::Link(conn, acknowledge));
                        Vec::new()
                    }
                    Err((code, detail)) => refuse(code, detail),
                }
            }
            Some(Body::ForwardGroup(group)) => {
                let sender_app = group.sender.as_ref().and_then(|sender| app_of(&sender.name));
                // A hub takes a group's messages from the sender's own app; every other app takes
                // them from the hub only, and never in the name of one of its own users (those
                // send through it). The hub is the app the group's id names, so no relay can name
                // itself hub of someone else's group.
                let allowed = match self.app == group.hub {
                    true => sender_app == Some(app),
                    false => group.hub == app && sender_app != Some(self.app.as_str()),
                };
                if !allowed {
                    return refuse(ErrorCode::Forbidden, "a group message comes from its sender's app to the hub, and from the hub to the others");
                }
                match self.route_group(group, Some(app)) {
                    Ok(()) => {
                        self.deferred.push(Deferred::Link(conn, acknowledge));
                        Vec::new()
                    }
                    Err((code, detail)) => refuse(code, detail),
                }
            }
            Some(Body::LookupPerson(lookup)) => self.lookup_person_for(conn, app, request_id, lookup),
            Some(Body::SendToUser(send)) => self.send_to_user_from(conn, app, request_id, send),
            Some(Body::CheckStamp(check)) => self.check_stamp_for(conn, request_id, check),
            Some(Body::FollowChannel(follow)) => self.follow_channel_for(conn, app, request_id, follow),
            Some(Body::FetchBundles(fetch)) => {
                if app_of(&fetch.user) != Some(self.app.as_str()) {
                    return refuse(ErrorCode::UnknownRecipient, "the user is not on this app");
                }
                // The device it asks for is counted only if it is one of its own app's.
                let device = fetch.requester.filter(|device| app_of(&device.name) == Some(app)).map(|device| (device.name, device.device_id));
                let requester = Requester::Remote { app: app.to_owned(), device };
                if let Err((code, detail)) = self.rates.fetch(&requester, self.ticks) {
                    return refuse(code, detail);
                }
                match self.hand_out_bundles(&fetch.user, &requester) {
                    Some(bundles) => {
                        let frame = FederationFrame { request_id, body: Some(Body::Bundles(bundles)) };
                        self.deferred.push(Deferred::Link(conn, frame));
                        Vec::new()
                    }
                    None => refuse(ErrorCode::UnknownRecipient, "no such user, or no bundles"),
                }
            }
            Some(Body::FetchBlob(fetch)) => {
                if let Err((code, detail)) = self.rates.blob_fetch(app, self.ticks) {
                    return refuse(code, detail);
                }
                match self.read_blob(&fetch.blob_id) {
                    Ok(Some(blob)) => {
                        let blob = Blob { blob_id: fetch.blob_id, blob };
                        vec![Action::ToLink { conn, frame: FederationFrame { request_id, body: Some(Body::Blob(blob)) } }]
                    }
                    Ok(None) => refuse(ErrorCode::UnknownRecipient, "no such blob"),
                    Err(stop) => vec![stop],
                }
            }
            Some(request) if super::hub::group_of(&request).is_some() => {
                if super::hub::group_of(&request).and_then(app_of) != Some(self.app.as_str()) {
                    return refuse(ErrorCode::UnknownRecipient, "this app is not the group's hub");
                }
                match self.answer_as_hub(request) {
                    Ok(head) => {
                        // Answered once durable: a head the hub may lose in a crash is never told.
                        self.deferred.push(Deferred::Link(conn, FederationFrame { request_id, body: Some(Body::GroupHead(head)) }));
                        Vec::new()
                    }
                    Err((code, detail)) => refuse(code, detail),
                }
            }
            _ => refuse(ErrorCode::Malformed, "not a request"),
        }
    }
}
