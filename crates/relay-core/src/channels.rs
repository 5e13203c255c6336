//! Channels: one-to-many conversations whose posts only their admins write. A channel is
//! `name@app`, kept by the relay of that app, its hub: the first user to open it owns it and names
//! its admins ([`OpenChannel`]). Each relay keeps which of its own devices follow which channel
//! ([`FollowChannel`]); a hub keeps only which other apps have followers of its channels, never
//! who they are.
//!
//! A post is a [`GroupEnvelope`] with `channel` set and no recipients. The sender's relay stamps
//! it as a group message and hands one copy to the hub (unless it is the hub). The hub takes it
//! only from a device of one of the channel's admins, stores a copy for each of its own
//! followers, and hands one copy to each other app with followers — the sender's own included —
//! which stores a copy for each of its followers. Every stored copy names its sender and the one
//! follower it is for, and no one else. A follower whose mailbox is full misses the post; the
//! post still reaches the others.

use std::collections::BTreeSet;

use switchboard_wire::Message;
use switchboard_wire::switchboard::{
    ChannelInfo, DeviceAddress, Envelope, EnvelopeKind, ErrorCode, FederationFrame, FollowChannel, GroupEnvelope, OpenChannel,
    ServerFrame, federation_frame, server_frame,
};

use super::rates::Requester;
use super::routing::sender_of;
use super::{
    Action, ConnId, Deferred, MAX_CHANNEL_ADMINS, MAX_CHANNEL_FANOUT_BYTES, MAX_CHANNELS, MAX_CHANNELS_FOLLOWED_PER_DEVICE, MAX_CHANNELS_PER_USER,
    MAX_FOLLOWERS_PER_CHANNEL, RelayCore, app_of, failure, link_failure,
};
use crate::state::{DeviceKey, Mutation};

type Refusal = (ErrorCode, &'static str);

/// What a stored copy of a post costs beyond its content (its envelope's other fields, the
/// mailbox index), counted against [`MAX_CHANNEL_FANOUT_BYTES`] so that empty posts are not
/// free.
const STORED_COPY_OVERHEAD: usize = 256;

impl RelayCore {
    /// A device opens a channel of this app, or (a device of its owner) changes its admins:
    /// answered with `Done` once durable. The admins are the ones named, each once, and the
    /// owner; at most [`MAX_CHANNEL_ADMINS`] in all.
    pub(super) fn open_channel(&mut self, conn: ConnId, request_id: u64, device: &DeviceKey, open: OpenChannel) -> Result<(), Refusal> {
        match app_of(&open.channel) {
            None => return Err((ErrorCode::Malformed, "a channel is name@app")),
            Some(app) if app != self.app => return Err((ErrorCode::UnknownRecipient, "a channel is opened at its own app")),
            Some(_) => {}
        }
        if open.admins.len() > MAX_CHANNEL_ADMINS {
            return Err((ErrorCode::TooLarge, "a channel has at most 32 admins"));
        }
        if open.admins.iter().any(|admin| app_of(admin).is_none()) {
            return Err((ErrorCode::Malformed, "an admin is name@app"));
        }
        // Counted as a durable write, as a consent change is.
        self.count_fetch(conn, &Requester::Local(device.clone()), &self.app.clone())?;
        let held = self.state.channels.get(&open.channel);
        let owner = held.map_or(&device.0, |channel| &channel.owner).clone();
        if owner != device.0 {
            return Err((ErrorCode::Forbidden, "only the channel's owner changes it"));
        }
        let mut admins: BTreeSet<String> = open.admins.into_iter().collect();
        admins.insert(owner.clone());
        if admins.len() > MAX_CHANNEL_ADMINS {
            return Err((ErrorCode::TooLarge, "a channel has at most 32 admins, its owner among them"));
        }
        if held.is_none() && self.state.channels.len() >= MAX_CHANNELS {
            return Err((ErrorCode::Unavailable, "this relay keeps no more channels"));
        }
        if held.is_none() && self.state.channels.values().filter(|channel| channel.owner == owner).count() >= MAX_CHANNELS_PER_USER {
            return Err((ErrorCode::TooLarge, "a user owns at most 100 channels"));
        }
        if held.is_none_or(|channel| channel.admins != admins) {
            self.mutate(Mutation::PutChannel { channel: open.channel, owner, admins: admins.into_iter().collect() });
        }
        self.deferred.push(Deferred::Client(conn, super::client::done(request_id)));
        Ok(())
    }

    /// A device follows a channel (answered with its [`ChannelInfo`] once the follow is durable
    /// here, and at the hub if that is another app), or leaves it (answered with `Done` once
    /// durable).
    pub(super) fn follow_channel(&mut self, conn: ConnId, request_id: u64, device: &DeviceKey, follow: FollowChannel) -> Vec<Action> {
        match self.try_follow_channel(conn, request_id, device, follow) {
            Ok(actions) => actions,
            Err((code, detail)) => vec![failure(conn, request_id, code, detail)],
        }
    }

    fn try_follow_channel(&mut self, conn: ConnId, request_id: u64, device: &DeviceKey, follow: FollowChannel) -> Result<Vec<Action>, Refusal> {
        let app = app_of(&follow.channel).ok_or((ErrorCode::Malformed, "a channel is name@app"))?.to_owned();
        self.count_fetch(conn, &Requester::Local(device.clone()), &app)?;
        if !follow.follow {
            self.leave_channel(device, &follow.channel);
            self.deferred.push(Deferred::Client(conn, super::client::done(request_id)));
            return Ok(Vec::new());
        }
        self.check_follow_room(device, &follow.channel)?;
        if app != self.app {
            // The hub records that this app has followers, and describes the channel; the device
            // follows here once it has (see `channel_followed`).
            let body = federation_frame::Body::FollowChannel(FollowChannel { channel: follow.channel.clone(), follow: true });
            return Ok(self.ask_app_with(conn, request_id, app, follow.channel, body, None, Some(device.clone())));
        }
        let info = self.channel_info(&follow.channel).ok_or((ErrorCode::UnknownRecipient, "no such channel"))?;
        self.note_follower(device, &follow.channel);
        self.deferred.push(Deferred::Client(conn, channel_info_frame(request_id, info)));
        Ok(Vec::new())
    }

    /// Whether `device` may follow `channel` now: it does already, or it follows fewer than
    /// [`MAX_CHANNELS_FOLLOWED_PER_DEVICE`] channels and the channel has fewer than
    /// [`MAX_FOLLOWERS_PER_CHANNEL`] followers here.
    fn check_follow_room(&self, device: &DeviceKey, channel: &str) -> Result<(), Refusal> {
        let follows = self.state.follows.get(device);
        if follows.is_some_and(|channels| channels.contains(channel)) {
            return Ok(());
        }
        if follows.is_some_and(|channels| channels.len() >= MAX_CHANNELS_FOLLOWED_PER_DEVICE) {
            return Err((ErrorCode::TooLarge, "a device follows at most 1,000 channels"));
        }
        if self.state.followers.get(channel).is_some_and(|devices| devices.len() >= MAX_FOLLOWERS_PER_CHANNEL) {
            return Err((ErrorCode::Unavailable, "this channel has all the followers this relay keeps"));
        }
        Ok(())
    }

    /// Records (durably, with the next batch) that `device` follows `channel`.
    fn note_follower(&mut self, device: &DeviceKey, channel: &str) {
        if !self.state.follows.get(device).is_some_and(|channels| channels.contains(channel)) {
            self.mutate(Mutation::SetFollowing { channel: channel.to_owned(), device: device.clone(), on: true });
        }
    }

    /// `device` no longer follows `channel`; if that left this app with no follower of another
    /// app's channel, its hub is told once that is durable.
    fn leave_channel(&mut self, device: &DeviceKey, channel: &str) {
        if !self.state.follows.get(device).is_some_and(|channels| channels.contains(channel)) {
            return;
        }
        self.mutate(Mutation::SetFollowing { channel: channel.to_owned(), device: device.clone(), on: false });
        self.unfollowed_here(channel);
    }

    /// Tells `channel`'s hub, once what is pending is durable, that this app has no follower of
    /// it left — if that is so, and the hub is another app. Not kept for a link that is down: a
    /// lost one only costs the hub copies that this relay drops.
    pub(super) fn unfollowed_here(&mut self, channel: &str) {
        let Some(hub) = app_of(channel) else { return };
        if hub == self.app || self.state.followers.contains_key(channel) {
            return;
        }
        // A follow asked for now would be answered after the hub hears this: the hub keeps the app.
        if self.pending_fetches.values().any(|fetch| fetch.follower.is_some() && fetch.subject == channel) {
            return;
        }
        if self.unfollowed.len() < MAX_CHANNELS {
            self.unfollowed.insert(channel.to_owned());
        }
        self.tell_hub(hub, channel, false);
    }

    /// Tells `hub` (if its link is up) once this batch is durable that this app has followers of
    /// `channel`, or none left; its answer is not waited for.
    fn tell_hub(&mut self, hub: &str, channel: &str, follow: bool) {
        let Some(&link) = self.outbound_links.get(hub) else { return };
        let request_id = self.next_request;
        self.next_request += 1;
        let body = federation_frame::Body::FollowChannel(FollowChannel { channel: channel.to_owned(), follow });
        self.deferred.push(Deferred::Link(link, FederationFrame { request_id, body: Some(body) }));
    }

    /// The hub answered a follow asked for a device (`frame`, on the request that asked it): its
    /// [`ChannelInfo`] — the device follows from now on, and is told once that is durable — or
    /// a refusal, which the device hears and which records nothing.
    pub(super) fn channel_followed(&mut self, frame: FederationFrame) -> Vec<Action> {
        let Some(fetch) = self.pending_fetches.get(&frame.request_id) else { return Vec::new() };
        let answer = match frame.body {
            Some(federation_frame::Body::ChannelInfo(info)) if info.channel == fetch.subject => Ok(info),
            Some(federation_frame::Body::Failure(refusal)) => Err(refusal),
            // An answer about something else: not this one.
            _ => return Vec::new(),
        };
        let Some(fetch) = self.take_pending(frame.request_id) else { return Vec::new() };
        let (conn, request_id) = (fetch.conn, fetch.request_id);
        let Some(device) = fetch.follower else { return Vec::new() };
        let info = match answer {
            Ok(info) => info,
            Err(refusal) => return vec![Action::ToClient { conn, frame: ServerFrame { request_id, body: Some(server_frame::Body::Failure(refusal)) } }],
        };
        // The device may have been removed, or have followed others, while the hub answered.
        if !self.state.accounts.contains_key(&device) {
            return vec![failure(conn, request_id, ErrorCode::UnknownRecipient, "no such device")];
        }
        if let Err((code, detail)) = self.check_follow_room(&device, &info.channel) {
            return vec![failure(conn, request_id, code, detail)];
        }
        self.note_follower(&device, &info.channel);
        // An earlier "none left" of this app's may still be on its way to the hub, behind this
        // follow's question (a question goes out at once, the other once durable): say it again,
        // after.
        if self.unfollowed.contains(&info.channel)
            && let Some(hub) = app_of(&info.channel).map(str::to_owned)
        {
            self.tell_hub(&hub, &info.channel, true);
        }
        self.deferred.push(Deferred::Client(conn, channel_info_frame(request_id, info)));
        Vec::new()
    }

    /// Another app has followers of one of this app's channels now, or none left: recorded, and
    /// answered once durable (with the channel's [`ChannelInfo`], or `Acknowledge`).
    pub(super) fn follow_channel_for(&mut self, conn: ConnId, app: &str, request_id: u64, follow: FollowChannel) -> Vec<Action> {
        let refuse = |code, detail| vec![Action::ToLink { conn, frame: link_failure(request_id, code, detail) }];
        if app_of(&follow.channel) != Some(self.app.as_str()) {
            return refuse(ErrorCode::UnknownRecipient, "the channel is not on this app");
        }
        if !self.peers.contains(app) {
            return refuse(ErrorCode::Forbidden, "an app this relay does not federate with");
        }
        if let Err((code, detail)) = self.rates.fetch(&Requester::Remote { app: app.to_owned(), device: None }, self.ticks) {
            return refuse(code, detail);
        }
        let Some(info) = self.channel_info(&follow.channel) else {
            return refuse(ErrorCode::UnknownRecipient, "no such channel");
        };
        let recorded = self.state.channel_apps.get(&follow.channel).is_some_and(|apps| apps.contains(app));
        if recorded != follow.follow {
            self.mutate(Mutation::SetChannelApp { channel: follow.channel, app: app.to_owned(), on: follow.follow });
        }
        let body = match follow.follow {
            true => federation_frame::Body::ChannelInfo(info),
            false => federation_frame::Body::Acknowledge(Default::default()),
        };
        self.deferred.push(Deferred::Link(conn, FederationFrame { request_id, body: Some(body) }));
        Vec::new()
    }

    /// A channel of this app as a follower is told of it.
    fn channel_info(&self, channel: &str) -> Option<ChannelInfo> {
        let held = self.state.channels.get(channel)?;
        Some(ChannelInfo { channel: channel.to_owned(), admins: held.admins.iter().cloned().collect() })
    }

    /// Routes a channel post that came from a device (`from_app` None) or another app (whose
    /// right to send it the caller checked: the sender's app to the hub, the hub to the others).
    /// Refused whole, before anything changes, if malformed, if the hub refuses its sender, or if
    /// an outbox it needs has no room; a follower whose mailbox is full is skipped.
    pub(super) fn route_channel(&mut self, post: GroupEnvelope, from_app: Option<&str>) -> Result<(), Refusal> {
        if !post.recipients.is_empty() {
            return Err((ErrorCode::Malformed, "a channel post names no recipients"));
        }
        let hub = post.hub.clone();
        if app_of(&post.group_id) != Some(hub.as_str()) {
            return Err((ErrorCode::Malformed, "a channel's hub is the app its id names"));
        }
        if hub != self.app && !self.peers.contains(&hub) {
            return Err((ErrorCode::UnknownRecipient, "unknown hub app"));
        }
        if hub != self.app {
            return match from_app {
                // The sender's relay: one copy to the hub, which alone knows the admins and
                // the apps with followers.
                None => {
                    self.check_outbox(&hub, post.sender.as_ref(), post.encoded_len())?;
                    self.store_outbound(&hub, federation_frame::Body::ForwardGroup(post));
                    Ok(())
                }
                Some(_) => {
                    self.check_channel_fanout(&post)?;
                    if self.state.followers.contains_key(&post.group_id) {
                        self.deliver_to_followers(&post);
                    } else {
                        // The hub thinks this app has followers (a "none left" lost on the way):
                        // told again.
                        self.unfollowed_here(&post.group_id);
                    }
                    Ok(())
                }
            };
        }
        let channel = self.state.channels.get(&post.group_id).ok_or((ErrorCode::UnknownRecipient, "no such channel"))?;
        if !channel.admins.contains(sender_of(post.sender.as_ref())) {
            return Err((ErrorCode::Forbidden, "only a channel's admins post to it"));
        }
        let apps: Vec<String> = self
            .state
            .channel_apps
            .get(&post.group_id)
            .map(|apps| apps.iter().filter(|app| self.peers.contains(*app)).cloned().collect())
            .unwrap_or_default();
        self.check_channel_fanout(&post)?;
        let bytes = post.encoded_len();
        // An app whose outbox is full misses the post (as a follower whose mailbox is full
        // does): one peer that stops reading must not hold the channel back for every other.
        let (apps, full): (Vec<String>, Vec<String>) = apps.into_iter().partition(|app| self.check_outbox(app, post.sender.as_ref(), bytes).is_ok());
        self.metrics.channel_apps_skipped_full += full.len() as u64;
        self.metrics.channel_posts += 1;
        self.deliver_to_followers(&post);
        for app in apps {
            self.store_outbound(&app, federation_frame::Body::ForwardGroup(post.clone()));
        }
        Ok(())
    }

    /// Whether a post fits what one post may make this relay store for its followers
    /// ([`MAX_CHANNEL_FANOUT_BYTES`]).
    fn check_channel_fanout(&self, post: &GroupEnvelope) -> Result<(), Refusal> {
        let followers = self.state.followers.get(&post.group_id).map_or(0, BTreeSet::len);
        if followers.saturating_mul(post.content.len() + STORED_COPY_OVERHEAD) > MAX_CHANNEL_FANOUT_BYTES {
            return Err((ErrorCode::TooLarge, "followers × content over 1 GiB: send large content as a blob"));
        }
        Ok(())
    }

    /// Stores a copy of `post` for each device of this app that follows its channel (none: it
    /// is dropped), naming that device alone; one whose user blocked the sender, or whose mailbox
    /// is full or gone, is skipped.
    fn deliver_to_followers(&mut self, post: &GroupEnvelope) {
        let Some(devices) = self.state.followers.get(&post.group_id) else { return };
        let devices: Vec<DeviceKey> = devices.iter().cloned().collect();
        let sender = sender_of(post.sender.as_ref()).to_owned();
        for device in devices {
            if self.is_blocked(&device.0, &sender) {
                self.metrics.blocked_dropped += 1;
                continue;
            }
            if self.check_local(&device, post.content.len()).is_err() {
                self.metrics.channel_posts_skipped_full += 1;
                continue;
            }
            let envelope = Envelope {
                id: post.id.clone(),
                sender: post.sender.clone(),
                recipient: Some(DeviceAddress { name: device.0.clone(), device_id: device.1 }),
                kind: EnvelopeKind::SenderKeyMessage as i32,
                content: post.content.clone(),
                group_id: post.group_id.clone(),
                franking: post.franking.clone(),
                channel: true,
            };
            if self.store_local(device, envelope) {
                self.metrics.channel_deliveries += 1;
            }
        }
    }
}

fn channel_info_frame(request_id: u64, info: ChannelInfo) -> ServerFrame {
    ServerFrame { request_id, body: Some(server_frame::Body::ChannelInfo(info)) }
}
