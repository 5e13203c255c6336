//! Bots: a device run by a program instead of a person, over the same [`ChatClient`] as
//! everyone, with the same end-to-end encryption. A bot reads only what is sent to it: its
//! channel's replies (which go to the channel's admins' devices only) and direct messages.
//!
//! [`PollBot`] runs a poll in a channel it posts to: it posts the question, counts the votes
//! followers reply with (one per user, the last one counts), and posts the results when asked.
//! Its rules ([`PollBot::command`]) are plain, synchronous and testable; [`PollBot::serve`]
//! drives them over a client (`examples/poll_bot.rs` is a command-line bot built on it).

use std::collections::BTreeMap;
use std::time::Duration;

use switchboard_session::Suite;
use switchboard_wire::message_id::MessageId;
use switchboard_wire::switchboard::{Content, Poll, PollVote, Text, content};

use crate::chat::{ChatClient, ChatError, Event};

/// Options one poll offers, at most.
pub const MAX_OPTIONS: usize = 16;
/// Longest option (and question), in bytes.
pub const MAX_OPTION_LEN: usize = 200;
/// Users whose votes one poll counts; past it, new voters are told so and not counted (those
/// already counted may still change their vote).
pub const MAX_VOTERS: usize = 100_000;

/// Why a poll could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PollError {
    /// Fewer than two options, or more than [`MAX_OPTIONS`].
    #[error("a poll offers 2 to {MAX_OPTIONS} options")]
    OptionCount,
    /// A question or option empty, too long or not printable.
    #[error("a question or option is 1 to {MAX_OPTION_LEN} bytes of printable text: {0:?}")]
    BadText(String),
    /// The same option twice (compared without case).
    #[error("option {0:?} is offered twice")]
    DuplicateOption(String),
}

/// What the bot does about one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Nothing to say: a vote counted, or something not meant for the bot.
    Silent,
    /// Post this to the poll's channel (the results): every follower receives it.
    Post(content::Body),
    /// Tell only the user who sent the command this (directly, one to one).
    Tell(content::Body),
}

/// A poll in one channel, and the votes counted so far. Voters are users (`name@app`), not
/// devices: a user's devices share one vote. Kept in memory only.
#[derive(Debug, Clone)]
pub struct PollBot {
    channel: String,
    question: String,
    options: Vec<String>,
    poll: Option<MessageId>,
    /// Each voter's option (an index into `options`).
    votes: BTreeMap<String, usize>,
    /// The tally as last posted, so that `/results` posts again only when it changed.
    posted: Option<Vec<u64>>,
    followers: u64,
}

impl PollBot {
    /// A poll of `question` with `options` (2 to [`MAX_OPTIONS`], distinct, ignoring case) for
    /// `channel`. Nothing is sent until [`Self::post_poll`].
    pub fn new(channel: &str, question: &str, options: &[&str]) -> Result<PollBot, PollError> {
        if !(2..=MAX_OPTIONS).contains(&options.len()) {
            return Err(PollError::OptionCount);
        }
        let printable = |text: &str| !text.trim().is_empty() && text.len() <= MAX_OPTION_LEN && !text.chars().any(char::is_control);
        for text in std::iter::once(&question).chain(options) {
            if !printable(text) {
                return Err(PollError::BadText((*text).to_owned()));
            }
        }
        let options: Vec<String> = options.iter().map(|option| option.trim().to_owned()).collect();
        for (index, option) in options.iter().enumerate() {
            if options[..index].iter().any(|earlier| earlier.eq_ignore_ascii_case(option)) {
                return Err(PollError::DuplicateOption(option.clone()));
            }
        }
        Ok(PollBot { channel: channel.to_owned(), question: question.trim().to_owned(), options, poll: None, votes: BTreeMap::new(), posted: None, followers: 0 })
    }

    /// The channel the poll runs in.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The poll's options, in order.
    pub fn options(&self) -> &[String] {
        &self.options
    }

    /// The poll's message id, once posted.
    pub fn poll_id(&self) -> Option<MessageId> {
        self.poll
    }

    /// Follower devices that asked this bot's device for its key of the channel (each counted
    /// once per time it asked).
    pub fn followers(&self) -> u64 {
        self.followers
    }

    /// The poll as a message body.
    pub fn poll_body(&self) -> content::Body {
        content::Body::Poll(Poll { question: self.question.clone(), options: self.options.clone() })
    }

    /// Votes per option, in the options' order: each voter counted once, for their last vote.
    pub fn tally(&self) -> Vec<(String, u64)> {
        let mut counts = vec![0u64; self.options.len()];
        for option in self.votes.values() {
            counts[*option] += 1;
        }
        self.options.iter().cloned().zip(counts).collect()
    }

    /// The users whose vote is counted, and the option each chose.
    pub fn votes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.votes.iter().map(|(voter, option)| (voter.as_str(), self.options[*option].as_str()))
    }

    /// The results as a line of text: the question and each option's count. It names no voter.
    pub fn results(&self) -> String {
        let counts: Vec<String> = self.tally().into_iter().map(|(option, count)| format!("{option}: {count}")).collect();
        let total = self.votes.len();
        format!("Results — {} {} ({total} vote{})", self.question, counts.join(", "), if total == 1 { "" } else { "s" })
    }

    /// How to use the bot, as a line of text.
    pub fn usage(&self) -> String {
        format!("{} Reply /vote <option> (one of {}, or its number), or /results.", self.question, self.options.join(", "))
    }

    /// What the bot does about `body`, sent by `voter` (a user, `name@app`) as a channel reply
    /// or a direct message:
    /// - `/vote <option>` (its name, ignoring case, or its number from 1) or a [`PollVote`] for
    ///   this poll: counted, replacing the voter's earlier vote; [`Answer::Silent`]. An option
    ///   the poll does not offer is told back with the usage.
    /// - `/results`: [`Answer::Post`] of the results, unless the ones last posted
    ///   ([`Self::results_posted`]) are still current; then told to the voter alone.
    /// - `/help` and any other `/command`: the usage, told to the voter alone.
    /// - Anything else is not for the bot: [`Answer::Silent`].
    pub fn command(&mut self, voter: &str, body: &content::Body) -> Answer {
        match body {
            content::Body::PollVote(PollVote { poll, option }) => {
                if self.poll.is_some_and(|id| id.as_slice() != poll.as_slice()) {
                    return Answer::Silent;
                }
                match usize::try_from(*option).ok().filter(|option| *option < self.options.len()) {
                    Some(option) => self.vote(voter, option),
                    None => tell(format!("The poll has no option {}. {}", u64::from(*option) + 1, self.usage())),
                }
            }
            content::Body::Text(Text { text }) => {
                let text = text.trim();
                let Some(command) = text.strip_prefix('/') else { return Answer::Silent };
                let (verb, argument) = command.split_once(char::is_whitespace).map_or((command, ""), |(verb, rest)| (verb, rest.trim()));
                match verb.to_ascii_lowercase().as_str() {
                    "vote" => match self.option_named(argument) {
                        Some(option) => self.vote(voter, option),
                        None => tell(format!("No option {argument:?}. {}", self.usage())),
                    },
                    "results" => {
                        if self.posted.as_ref() == Some(&self.counts()) {
                            tell(self.results())
                        } else {
                            Answer::Post(text_body(self.results()))
                        }
                    }
                    _ => tell(self.usage()),
                }
            }
            _ => Answer::Silent,
        }
    }

    /// Records that the results as they stand now were posted: `/results` posts again only once
    /// they change.
    pub fn results_posted(&mut self) {
        self.posted = Some(self.counts());
    }

    fn counts(&self) -> Vec<u64> {
        self.tally().into_iter().map(|(_, count)| count).collect()
    }

    fn option_named(&self, name: &str) -> Option<usize> {
        if let Ok(number) = name.parse::<usize>() {
            return number.checked_sub(1).filter(|index| *index < self.options.len());
        }
        self.options.iter().position(|option| option.eq_ignore_ascii_case(name))
    }

    fn vote(&mut self, voter: &str, option: usize) -> Answer {
        if !self.votes.contains_key(voter) && self.votes.len() >= MAX_VOTERS {
            return tell(format!("This poll counts at most {MAX_VOTERS} voters, and has them."));
        }
        self.votes.insert(voter.to_owned(), option);
        Answer::Silent
    }

    /// Opens the poll's channel (on `client`'s app) with `client`'s user as its only admin, and
    /// waits for the relay to confirm it.
    pub async fn open(&self, client: &mut ChatClient, suite: Suite) -> Result<(), ChatError> {
        let me = client.user().to_owned();
        client.open_channel(&self.channel, &[&me], suite).await
    }

    /// Posts to the poll's channel from `client` too: the channel was opened by another device of
    /// one of its admins, `client`'s user being one.
    pub async fn administer(&self, client: &mut ChatClient, suite: Suite) -> Result<(), ChatError> {
        client.administer_channel(&self.channel, suite).await
    }

    /// Posts the poll to the channel (followers who follow later do not receive it; they can
    /// still vote by `/vote`), and returns its id. Votes for another poll are ignored from now on.
    pub async fn post_poll(&mut self, client: &mut ChatClient) -> Result<MessageId, ChatError> {
        let id = client.post(&self.channel, self.poll_body()).await?;
        self.poll = Some(id);
        Ok(id)
    }

    /// One round of the bot: takes what arrived at `client` (until nothing came for `quiet`),
    /// counts votes and answers commands from its channel's replies and from direct messages, and
    /// returns every event seen. An answer that cannot be sent is logged and skipped: one
    /// follower's failed delivery does not stop the bot.
    pub async fn serve(&mut self, client: &mut ChatClient, quiet: Duration) -> Result<Vec<Event>, ChatError> {
        let events = client.poll(quiet).await?;
        for event in &events {
            self.handle(client, event).await;
        }
        Ok(events)
    }

    /// Acts on one event at `client`; see [`Self::serve`].
    pub async fn handle(&mut self, client: &mut ChatClient, event: &Event) {
        let (voter, content) = match event {
            Event::ChannelFollower { channel, .. } if *channel == self.channel => {
                self.followers += 1;
                return;
            }
            Event::ChannelReply { channel, from, content } if *channel == self.channel => (from.name().to_owned(), content),
            // Commands sent directly; not those of this bot's own user (another device of it).
            Event::Message { from, group: None, content, .. } if from.name() != client.user() => (from.name().to_owned(), content),
            _ => return,
        };
        let Some(body) = &content.body else { return };
        match self.command(&voter, body) {
            Answer::Silent => {}
            Answer::Post(body) => match client.post(&self.channel, body).await {
                Ok(_) => self.results_posted(),
                Err(error) => tracing::warn!(%error, channel = %self.channel, "the results could not be posted"),
            },
            Answer::Tell(body) => {
                if let Err(error) = client.send(&voter, body).await {
                    tracing::warn!(%error, %voter, "an answer could not be sent");
                }
            }
        }
    }
}

fn text_body(text: String) -> content::Body {
    content::Body::Text(Text { text })
}

fn tell(text: String) -> Answer {
    Answer::Tell(text_body(text))
}

/// The text of a content, if it is a text.
pub fn text_of(content: &Content) -> Option<&str> {
    match &content.body {
        Some(content::Body::Text(Text { text })) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(text: &str) -> content::Body {
        text_body(text.to_owned())
    }

    fn bot() -> PollBot {
        PollBot::new("lunch@green", "Which day?", &["mon", "tue", "wed"]).unwrap()
    }

    #[test]
    fn one_vote_per_user_the_last_counts() {
        let mut bot = bot();
        assert_eq!(bot.command("ann@green", &say("/vote tue")), Answer::Silent);
        assert_eq!(bot.command("ben@blue", &say("/vote Mon")), Answer::Silent);
        assert_eq!(bot.command("cat@red", &say("/vote 3")), Answer::Silent);
        // Ann changes her mind; only her last vote counts.
        assert_eq!(bot.command("ann@green", &say("  /VOTE   wed ")), Answer::Silent);
        assert_eq!(bot.tally(), [("mon".into(), 1), ("tue".into(), 0), ("wed".into(), 2)]);
        let voters: Vec<&str> = bot.votes().map(|(voter, _)| voter).collect();
        assert_eq!(voters, ["ann@green", "ben@blue", "cat@red"]);
    }

    #[test]
    fn votes_by_poll_vote_count_only_for_this_poll() {
        let mut bot = bot();
        bot.poll = Some([9u8; 32]);
        assert_eq!(bot.command("ann@green", &content::Body::PollVote(PollVote { poll: vec![9u8; 32], option: 1 })), Answer::Silent);
        assert_eq!(bot.command("ben@blue", &content::Body::PollVote(PollVote { poll: vec![8u8; 32], option: 0 })), Answer::Silent);
        assert!(matches!(bot.command("cat@red", &content::Body::PollVote(PollVote { poll: vec![9u8; 32], option: 7 })), Answer::Tell(_)));
        assert_eq!(bot.tally(), [("mon".into(), 0), ("tue".into(), 1), ("wed".into(), 0)]);
    }

    #[test]
    fn bad_votes_are_told_back_and_not_counted() {
        let mut bot = bot();
        for bad in ["/vote fri", "/vote 0", "/vote 4", "/vote", "/vote -1"] {
            assert!(matches!(bot.command("ann@green", &say(bad)), Answer::Tell(_)), "{bad}");
        }
        assert!(matches!(bot.command("ann@green", &say("/help")), Answer::Tell(_)));
        assert_eq!(bot.command("ann@green", &say("hello there")), Answer::Silent);
        assert_eq!(bot.votes().count(), 0);
    }

    #[test]
    fn results_are_posted_once_per_change_and_name_no_voter() {
        let mut bot = bot();
        bot.command("ann@green", &say("/vote tue"));
        let Answer::Post(content::Body::Text(Text { text })) = bot.command("ben@blue", &say("/results")) else { panic!("results posted") };
        assert_eq!(text, "Results — Which day? mon: 0, tue: 1, wed: 0 (1 vote)");
        assert!(!text.contains("ann"));
        bot.results_posted();
        // Unchanged: told to the asker alone.
        assert!(matches!(bot.command("ben@blue", &say("/results")), Answer::Tell(_)));
        bot.command("ben@blue", &say("/vote tue"));
        assert!(matches!(bot.command("ben@blue", &say("/results")), Answer::Post(_)));
    }

    #[test]
    fn a_poll_needs_distinct_printable_options() {
        assert_eq!(PollBot::new("c@green", "Q?", &["one"]).unwrap_err(), PollError::OptionCount);
        assert_eq!(PollBot::new("c@green", "Q?", &["a", "A"]).unwrap_err(), PollError::DuplicateOption("A".into()));
        assert!(matches!(PollBot::new("c@green", "", &["a", "b"]), Err(PollError::BadText(_))));
        assert!(matches!(PollBot::new("c@green", "Q?", &["a", "b\n"]), Err(PollError::BadText(_))));
    }
}
