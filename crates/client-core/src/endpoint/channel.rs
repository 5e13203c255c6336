//! Channels from the endpoint (see [`crate::channel`]): opening one, posting, following and
//! leaving, replying, and reading posts.

use std::time::Duration;

use rand_core::CryptoRng;
use switchboard_session::{ProtocolAddress, Suite};
use switchboard_wire::Message;
use switchboard_wire::switchboard::{ChannelMessage, FollowChannel, GroupEnvelope, GroupPayload, OpenChannel, server_frame::Body as S};

use super::commands::Command;
use super::work::Work;
use super::{CommandError, Endpoint, Event, RequestFailed, check_content, envelope_id, wire_address};

impl Endpoint {
    /// Opens `channel` (`name@app`, on this device's app) with `admins` (users; this device's
    /// own user is always one) and posts to it from this device under `suite`. The relay's
    /// answer comes as [`Event::ChannelOpened`] with the returned handle. The same call from the
    /// channel's owner later changes its admins.
    pub fn open_channel(&mut self, now: Duration, channel: &str, admins: Vec<String>, suite: Suite, rng: &mut (impl CryptoRng + ?Sized)) -> Result<u64, CommandError> {
        self.now = self.now.max(now);
        if crate::hub_of(channel)? != crate::hub_of(self.address().name())? {
            return Err(CommandError::Client(crate::ClientError::InvalidChange("a channel is opened on its own app")));
        }
        if self.commands.len() >= super::commands::MAX_PENDING_COMMANDS {
            return Err(CommandError::TooManyCommands);
        }
        self.device.administer_channel(channel, suite, rng)?;
        self.changed_device();
        let handle = self.command(Command::Open(OpenChannel { channel: channel.to_owned(), admins }))?;
        self.release();
        Ok(handle)
    }

    /// Posts to `channel` from this device too (a device of one of its admins, the channel
    /// opened elsewhere), under `suite`: it answers followers' requests for its key from now on.
    pub fn administer_channel(&mut self, now: Duration, channel: &str, suite: Suite, rng: &mut (impl CryptoRng + ?Sized)) -> Result<(), CommandError> {
        self.now = self.now.max(now);
        self.device.administer_channel(channel, suite, rng)?;
        self.changed_device();
        self.release();
        Ok(())
    }

    /// Posts `content` to `channel`: encrypted once, fanned out by the channel's app to every
    /// app with followers. Returns the ciphertext every follower receives.
    pub fn post(&mut self, now: Duration, channel: &str, content: Vec<u8>, rng: &mut (impl CryptoRng + ?Sized)) -> Result<Vec<u8>, CommandError> {
        self.now = self.now.max(now);
        check_content(&content)?;
        let hub = crate::hub_of(channel)?.to_owned();
        let franking = crate::franking::Commitment::new(&content, rng);
        let plaintext = GroupPayload { application: content, franking_key: franking.key.to_vec() }.encode_to_vec();
        let bytes = self.device.encrypt_channel(channel, &plaintext, rng)?;
        self.changed_device();
        self.stats.group_encrypts += 1;
        self.stats.sent += 1;
        let envelope = GroupEnvelope {
            id: envelope_id(rng),
            sender: Some(wire_address(self.address())),
            group_id: channel.to_owned(),
            hub,
            recipients: Vec::new(),
            content: bytes.clone().into(),
            franking: Some(crate::franking::unstamped(franking.commitment)),
            channel: true,
        };
        self.submit(Work::Group { distributions: Vec::new(), envelope }, rng);
        self.release();
        Ok(bytes)
    }

    /// Follows `channel`: this device's relay records it, the channel's app names its admins
    /// ([`Event::ChannelFollowed`]), and this device asks each admin's devices for their keys.
    pub fn follow(&mut self, now: Duration, channel: &str) -> Result<u64, CommandError> {
        self.now = self.now.max(now);
        crate::hub_of(channel)?;
        let handle = self.command(Command::Follow(FollowChannel { channel: channel.to_owned(), follow: true }))?;
        self.left_channels.remove(channel);
        self.release();
        Ok(handle)
    }

    /// Leaves `channel`: its keys are forgotten now, and the relay stops delivering its posts
    /// ([`Event::ChannelLeft`]). The admins hear nothing of it.
    pub fn leave(&mut self, now: Duration, channel: &str) -> Result<u64, CommandError> {
        self.now = self.now.max(now);
        let handle = self.command(Command::Follow(FollowChannel { channel: channel.to_owned(), follow: false }))?;
        if self.device.leave_channel(channel) {
            self.changed_device();
        }
        // A follow still on its way is not taken when its answer comes (see `followed`).
        if self.left_channels.len() < crate::channel::MAX_CHANNELS_FOLLOWED {
            self.left_channels.insert(channel.to_owned());
        }
        self.release();
        Ok(handle)
    }

    /// Sends `content` (a reaction, a vote) to the admins of `channel`, which this device
    /// follows: to every device of each, and to no follower.
    pub fn reply_to_channel(&mut self, now: Duration, channel: &str, content: Vec<u8>, rng: &mut (impl CryptoRng + ?Sized)) -> Result<(), CommandError> {
        self.now = self.now.max(now);
        check_content(&content)?;
        let admins: Vec<String> = match self.device.channels().admins_of(channel) {
            Some(admins) => admins.iter().cloned().collect(),
            None => return Err(CommandError::UnknownGroup(channel.to_owned())),
        };
        let payload = crate::Device::channel_payload(ChannelMessage { channel: channel.to_owned(), reply: content, ..Default::default() });
        self.submit(Work::ToUsers { users: admins, payload }, rng);
        self.release();
        Ok(())
    }

    /// Asks the channel's app again for `channel`'s admins (a post came from one this device does
    /// not know), unless a follow of it already waits for its answer.
    pub(super) fn refresh_channel(&mut self, channel: &str) {
        let waiting = self.commands.iter().any(|(_, command)| matches!(command, Command::Follow(follow) if follow.follow && follow.channel == channel));
        if !waiting {
            let _ = self.command(Command::Follow(FollowChannel { channel: channel.to_owned(), follow: true }));
        }
    }

    /// The relay's answer to following `channel` (or to asking again): the admins it names, then
    /// each asked for its key.
    pub(super) fn followed(&mut self, request: u64, channel: String, answer: Result<S, RequestFailed>, rng: &mut (impl CryptoRng + ?Sized)) {
        let info = match answer {
            Ok(S::ChannelInfo(info)) if info.channel == channel => info,
            Ok(_) => return self.events.push_back(Event::ChannelFollowed { request, channel, result: Err(RequestFailed::UnexpectedAnswer) }),
            Err(error) => return self.events.push_back(Event::ChannelFollowed { request, channel, result: Err(error) }),
        };
        let refused = if self.left_channels.contains(&channel) {
            Err(crate::ClientError::InvalidChange("the channel was left before its follow was answered"))
        } else {
            self.device.follow_channel(&channel, &info.admins)
        };
        if let Err(error) = refused {
            // The relay keeps this device as a follower now: it is told otherwise.
            let _ = self.command(Command::Follow(FollowChannel { channel: channel.clone(), follow: false }));
            self.events.push_back(Event::ChannelFollowed { request, channel, result: Err(RequestFailed::Invalid(error)) });
            return;
        }
        self.changed_device();
        let payload = crate::Device::channel_payload(ChannelMessage { channel: channel.clone(), follow: true, ..Default::default() });
        self.submit(Work::ToUsers { users: info.admins.clone(), payload }, rng);
        self.events.push_back(Event::ChannelFollowed { request, channel, result: Ok(info.admins) });
    }

    /// A post to a channel this device follows, decrypted: shown unless its sender is blocked.
    pub(super) fn channel_post(&mut self, sender: &ProtocolAddress, channel: String, envelope: [u8; 16], payload: GroupPayload, franking: Option<switchboard_wire::switchboard::Franking>) -> Result<(), crate::ClientError> {
        if self.is_blocked(sender.name()) {
            self.stats.blocked_dropped += 1;
            return Ok(());
        }
        let evidence = crate::franking::Evidence::check(sender, (&channel, true), franking.as_ref(), &payload.franking_key, &payload.application)?;
        self.stats.received += 1;
        self.events.push_back(Event::ChannelPost { channel, from: sender.clone(), envelope, content: payload.application, evidence: Box::new(evidence) });
        Ok(())
    }
}
