//! A device's part in channels (see [`crate::channel`]): its sender key for the channels it posts
//! to, handed to each follower that asks, and the admins' keys of the channels it follows.

use std::sync::Arc;

use rand_core::CryptoRng;
use switchboard_session::group::{self as sender_keys, SenderKeyDistributionMessage, SenderKeyMessage};
use switchboard_session::{ProtocolAddress, Suite};
use switchboard_wire::Message;
use switchboard_wire::switchboard::{ChannelMessage, PairwisePayload, pairwise_payload::Body};

use super::{Device, PendingSend, Received, Result};
use crate::channel::sender_key_id;
use crate::error::ClientError;

impl Device {
    /// The channels this device posts to and follows.
    pub fn channels(&self) -> &crate::channel::Channels {
        &self.channels
    }

    /// Posts to `channel` from now on, with a sender key under `suite` (made now if this device
    /// has none for it).
    pub fn administer_channel<R: CryptoRng + ?Sized>(&mut self, channel: &str, suite: Suite, rng: &mut R) -> Result<()> {
        self.channels.administer(channel, suite)?;
        sender_keys::create_distribution(&mut self.sender_keys, &sender_key_id(channel), &self.address, suite, rng)?;
        Ok(())
    }

    /// Encrypts a post to `channel` once, with this device's sender key for it.
    pub fn encrypt_channel<R: CryptoRng + ?Sized>(&mut self, channel: &str, plaintext: &[u8], rng: &mut R) -> Result<Vec<u8>> {
        if !self.channels.administers(channel) {
            return Err(ClientError::InvalidChange("this device does not post to that channel"));
        }
        let message = sender_keys::encrypt(&mut self.sender_keys, &sender_key_id(channel), &self.address, plaintext, rng)?;
        Ok(message.serialize().to_vec())
    }

    /// Follows `channel`, whose app names `admins`: their devices' posts are read once their keys
    /// arrive.
    pub fn follow_channel(&mut self, channel: &str, admins: &[String]) -> Result<()> {
        self.channels.follow(channel, admins)
    }

    /// Leaves `channel` and forgets its keys; whether this device followed it.
    pub fn leave_channel(&mut self, channel: &str) -> bool {
        let followed = self.channels.leave(channel);
        // An admin that followed its own channel keeps its key (and the others', to post beside).
        if followed && !self.channels.administers(channel) {
            self.sender_keys.forget_group(&sender_key_id(channel));
        }
        followed
    }

    /// Decrypts a post to `channel`, which this device follows, from `sender`, a device of one
    /// of its admins.
    pub fn decrypt_channel(&mut self, channel: &str, sender: &ProtocolAddress, bytes: &[u8]) -> Result<Vec<u8>> {
        if !self.channels.is_admin(channel, sender.name()) {
            return Err(ClientError::NotAnAdmin { group: channel.to_owned(), sender: sender.clone() });
        }
        let message = SenderKeyMessage::parse(bytes)?;
        Ok(sender_keys::decrypt(&mut self.sender_keys, &sender_key_id(channel), sender, &message)?)
    }

    /// A payload for a channel's admins or one of its followers.
    pub(crate) fn channel_payload(message: ChannelMessage) -> Arc<[u8]> {
        PairwisePayload { body: Some(Body::Channel(message)), ..Default::default() }.encode_to_vec().into()
    }

    /// A channel message from `from`: a follower asking for this device's key (answered with it),
    /// an admin's key for a channel this device follows, or a follower's reply.
    pub(super) fn on_channel<R: CryptoRng + ?Sized>(&mut self, from: &ProtocolAddress, message: ChannelMessage, rng: &mut R) -> Result<(Received, Vec<PendingSend>)> {
        let ChannelMessage { channel, follow, sender_key_distribution, reply } = message;
        let set = usize::from(follow) + usize::from(!sender_key_distribution.is_empty()) + usize::from(!reply.is_empty());
        if set != 1 {
            return Err(ClientError::InvalidPayload("a channel message carries exactly one thing"));
        }
        if follow {
            let Some(suite) = self.channels.suite_of(&channel) else {
                return Err(ClientError::InvalidPayload("a follow of a channel this device does not post to"));
            };
            let distribution = sender_keys::create_distribution(&mut self.sender_keys, &sender_key_id(&channel), &self.address, suite, rng)?;
            let answer = ChannelMessage { channel: channel.clone(), sender_key_distribution: distribution.serialize().to_vec(), ..Default::default() };
            return Ok((Received::ChannelFollower { channel }, vec![PendingSend::new(from.clone(), Self::channel_payload(answer))]));
        }
        if !reply.is_empty() {
            if !self.channels.administers(&channel) {
                return Err(ClientError::InvalidPayload("a reply to a channel this device does not post to"));
            }
            return Ok((Received::ChannelReply { channel, content: reply }, Vec::new()));
        }
        if !self.channels.is_admin(&channel, from.name()) {
            return Err(ClientError::NotAnAdmin { group: channel, sender: from.clone() });
        }
        let distribution = SenderKeyDistributionMessage::parse(&sender_key_distribution)?;
        sender_keys::process_distribution(&mut self.sender_keys, &sender_key_id(&channel), from, &distribution)?;
        Ok((Received::ChannelKey { channel }, Vec::new()))
    }
}
