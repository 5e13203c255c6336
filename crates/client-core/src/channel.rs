//! Channels: one to many. A channel (`name@app`) lives at its app, which keeps its admins (the
//! users whose devices post to it) and fans each post out once per app with followers; each
//! follower's own relay keeps who follows. A post is encrypted once, with the posting device's
//! sender key for the channel (Sender Keys, as in groups).
//!
//! Following costs an admin device one thing per follower: handing over its current sender key,
//! pairwise, when the follower asks (`ChannelMessage.follow`). Leaving costs the admins nothing:
//! the follower's relay stops delivering, and the follower forgets the keys. A follower never
//! learns who else follows: posts name no recipient, and reactions and votes
//! (`ChannelMessage.reply`) go to the admins' devices only.
//!
//! Channels are public: an admin's device hands its key to any device that asks (it cannot tell
//! who follows; the relays keep that), so end-to-end encryption here keeps the relays out, not
//! readers. A follower who left forgets the keys it was handed; one that kept them could read
//! posts it obtained some other way. A follower learns the admins when it follows, and again
//! when a post comes from an admin it does not know. An admin's device hands over its current key:
//! what it posted before a follower got it, that follower does not read.

use std::collections::{BTreeMap, BTreeSet};

use switchboard_session::Suite;

use crate::error::ClientError;

/// Channels one device follows.
pub const MAX_CHANNELS_FOLLOWED: usize = 1_000;
/// Channels one device posts to.
pub const MAX_CHANNELS_ADMINISTERED: usize = 100;
/// Admins one channel names (as its app's relay limits them).
pub const MAX_CHANNEL_ADMINS: usize = 32;

/// The key under which a channel's sender keys are kept, apart from groups' (a group and a
/// channel may share a name).
pub(crate) fn sender_key_id(channel: &str) -> String {
    format!("channel:{channel}")
}

/// A device's channels: those it posts to and those it follows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Channels {
    /// Channels this device posts to, with the suite of its sender key for each.
    administered: BTreeMap<String, Suite>,
    /// Channels this device follows, each with its admins as the channel's app named them.
    followed: BTreeMap<String, BTreeSet<String>>,
}

impl Channels {
    /// Whether this device posts to `channel`.
    pub fn administers(&self, channel: &str) -> bool {
        self.administered.contains_key(channel)
    }

    /// The suite of this device's sender key for `channel`, if it posts to it.
    pub fn suite_of(&self, channel: &str) -> Option<Suite> {
        self.administered.get(channel).copied()
    }

    /// The admins of `channel`, if this device follows it.
    pub fn admins_of(&self, channel: &str) -> Option<&BTreeSet<String>> {
        self.followed.get(channel)
    }

    /// Whether `user` is an admin of `channel`, which this device follows.
    pub fn is_admin(&self, channel: &str, user: &str) -> bool {
        self.followed.get(channel).is_some_and(|admins| admins.contains(user))
    }

    /// The channels this device follows.
    pub fn followed(&self) -> impl Iterator<Item = (&str, &BTreeSet<String>)> {
        self.followed.iter().map(|(channel, admins)| (channel.as_str(), admins))
    }

    /// The channels this device posts to.
    pub fn administered(&self) -> impl Iterator<Item = (&str, Suite)> {
        self.administered.iter().map(|(channel, suite)| (channel.as_str(), *suite))
    }

    /// Posts to `channel` from now on, under `suite`.
    pub(crate) fn administer(&mut self, channel: &str, suite: Suite) -> Result<(), ClientError> {
        check_id(channel)?;
        if !self.administered.contains_key(channel) && self.administered.len() >= MAX_CHANNELS_ADMINISTERED {
            return Err(ClientError::LimitExceeded { what: "channels one device posts to", limit: MAX_CHANNELS_ADMINISTERED });
        }
        self.administered.insert(channel.to_owned(), suite);
        Ok(())
    }

    /// Follows `channel`, whose app names `admins`.
    pub(crate) fn follow(&mut self, channel: &str, admins: &[String]) -> Result<(), ClientError> {
        check_id(channel)?;
        if admins.is_empty() || admins.len() > MAX_CHANNEL_ADMINS {
            return Err(ClientError::InvalidPayload("a channel names 1 to 32 admins"));
        }
        for admin in admins {
            switchboard_wire::address::UserAddress::split(admin).map_err(|_| ClientError::InvalidPayload("an admin is name@app"))?;
        }
        if !self.followed.contains_key(channel) && self.followed.len() >= MAX_CHANNELS_FOLLOWED {
            return Err(ClientError::LimitExceeded { what: "channels one device follows", limit: MAX_CHANNELS_FOLLOWED });
        }
        self.followed.insert(channel.to_owned(), admins.iter().cloned().collect());
        Ok(())
    }

    /// Leaves `channel`; whether this device followed it.
    pub(crate) fn leave(&mut self, channel: &str) -> bool {
        self.followed.remove(channel).is_some()
    }

    /// The stored form, checked as any other input.
    pub(crate) fn restore(stored: &[switchboard_wire::switchboard::StoredChannel]) -> Result<Channels, ClientError> {
        let mut channels = Channels::default();
        for one in stored {
            if one.admins.is_empty() {
                let suite: Suite = one.suite.parse().map_err(|_| ClientError::InvalidPayload("a stored channel of an unknown suite"))?;
                channels.administer(&one.channel, suite)?;
            } else {
                channels.follow(&one.channel, &one.admins)?;
            }
        }
        Ok(channels)
    }

    pub(crate) fn stored(&self) -> Vec<switchboard_wire::switchboard::StoredChannel> {
        use switchboard_wire::switchboard::StoredChannel;
        let administered = self.administered.iter().map(|(channel, suite)| StoredChannel { channel: channel.clone(), suite: suite.name().to_owned(), admins: Vec::new() });
        let followed =
            self.followed.iter().map(|(channel, admins)| StoredChannel { channel: channel.clone(), suite: String::new(), admins: admins.iter().cloned().collect() });
        administered.chain(followed).collect()
    }
}

/// A channel id is `name@app`, like a user's address.
fn check_id(channel: &str) -> Result<(), ClientError> {
    switchboard_wire::address::UserAddress::split(channel).map(|_| ()).map_err(|_| ClientError::InvalidPayload("a channel id is name@app"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_past_the_limits_are_refused_as_limits_and_change_nothing() {
        let mut channels = Channels::default();
        let admins = vec!["owner@x".to_owned()];
        for i in 0..MAX_CHANNELS_FOLLOWED {
            channels.follow(&format!("news{i}@x"), &admins).unwrap();
        }
        for i in 0..MAX_CHANNELS_ADMINISTERED {
            channels.administer(&format!("mine{i}@x"), Suite::Aes256Gcm).unwrap();
        }
        let before = channels.clone();
        assert_eq!(
            channels.follow("one-more@x", &admins),
            Err(ClientError::LimitExceeded { what: "channels one device follows", limit: MAX_CHANNELS_FOLLOWED })
        );
        assert_eq!(
            channels.administer("one-more@x", Suite::Aes256Gcm),
            Err(ClientError::LimitExceeded { what: "channels one device posts to", limit: MAX_CHANNELS_ADMINISTERED })
        );
        assert_eq!(channels, before);
        // One already held is no new entry: following it again, or posting to it, is no limit.
        channels.follow("news0@x", &admins).unwrap();
        channels.administer("mine0@x", Suite::Aes256Gcm).unwrap();
        // A malformed answer stays a malformed payload, not a limit.
        assert_eq!(channels.follow("news0@x", &[]), Err(ClientError::InvalidPayload("a channel names 1 to 32 admins")));
    }
}
