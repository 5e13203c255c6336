//! A channel in a scenario (`[channel]`): opened by one admin, followed by users of every app,
//! polls posted to it, votes sent back, some followers leaving. What the report checks, against
//! the world's own record:
//! - every post reaches every follower that held the admin's key when it was sent (a follower
//!   reads from the key it was handed on: posts encrypted before cannot be read with it) and
//!   never left, exactly once;
//! - a follower who left reads no post sent after it left;
//! - no follower learns another follower's address: what reaches a follower comes from the
//!   admin's devices only, and a follower's device holds sessions with no one else;
//! - every vote sent reaches the admin's device exactly once (so the admin's tally is the
//!   votes cast).

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use rand::RngExt;
use switchboard_session::ProtocolAddress;

use super::{Event, World, secs};
use crate::client;
use crate::ledger::Violation;

pub const POSTS_REACH_FOLLOWERS: &str = "every post reaches every follower, exactly once";
pub const LEFT_READS_NOTHING: &str = "a follower who left reads no post sent after";
pub const FOLLOWERS_UNSEEN: &str = "no follower learns another follower's address";
pub const VOTES_TALLIED: &str = "every vote reaches the admin exactly once";

/// Size of a post or a vote, in bytes.
const POST_BYTES: usize = 96;

/// What the report gives of the channel.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ChannelCounts {
    /// Followers the scenario asked for.
    pub followers: u64,
    /// Follows the relays answered (the follower's relay and the channel's app keep it).
    pub followed: u64,
    /// Posts the admin sent.
    pub posts: u64,
    /// (post, follower) pairs read, whether required or not (first reads only).
    pub reads: u64,
    /// (post, follower) pairs that must be read: the follower held the admin's key when the post
    /// was sent and never left.
    pub reads_required: u64,
    /// Of those, the ones read.
    pub reads_done: u64,
    /// Votes followers sent the admin.
    pub votes: u64,
    /// Of those, the ones the admin counted.
    pub votes_tallied: u64,
    /// Followers who left.
    pub leavers: u64,
    /// Key hand-overs by the admin's device (one per follower that asked).
    pub keys_handed_over: u64,
}

#[derive(Default)]
pub(crate) struct ChannelWorld {
    pub(super) id: String,
    pub(super) admin: Option<usize>,
    followers: Vec<usize>,
    /// When each follower's follow was answered, when the admin handed it the key, and when it
    /// left.
    followed_at: HashMap<usize, u64>,
    keyed_at: HashMap<usize, u64>,
    left_at: HashMap<usize, u64>,
    /// Posts by number: when each was sent.
    posts: Vec<u64>,
    /// (post, device) → reads.
    reads: HashMap<(u64, usize), u32>,
    /// Votes by number: the voting device; and how often the admin received each.
    votes: Vec<usize>,
    tallied: HashMap<u64, u32>,
    /// Users that wrote to each other outside the channel (their devices hold sessions with
    /// each other for that), each pair lowest first.
    talked: HashSet<(usize, usize)>,
    pub(super) violations: Vec<Violation>,
}

impl ChannelWorld {
    /// Users `a` and `b` exchanged a message outside the channel.
    pub(super) fn talked(&mut self, a: usize, b: usize) {
        self.talked.insert((a.min(b), a.max(b)));
    }
}

impl World {
    /// Schedules the channel's life: its opening, the follows, the posts, the votes, the leaves.
    pub(super) fn schedule_channel(&mut self) {
        let spec = self.scenario.channel.clone();
        if spec.followers == 0 && spec.posts == 0 {
            return;
        }
        let app = spec.app.as_ref().map_or(0, |app| self.app_index(app.get_ref()));
        let admin_user = self.users.iter().position(|user| user.app == app).expect("checked: the channel's app has users");
        self.channel.admin = Some(self.users[admin_user].devices[0]);
        self.channel.id = format!("news@{}", self.app_names[app]);
        // Followers: the first users of each app in turn, the admin left out.
        let mut by_app: Vec<std::collections::VecDeque<usize>> = vec![Default::default(); self.app_names.len()];
        for (index, user) in self.users.iter().enumerate() {
            if index != admin_user && self.business_user != Some(index) {
                by_app[user.app].push_back(self.users[index].devices[0]);
            }
        }
        let mut followers = Vec::new();
        while followers.len() < spec.followers as usize && by_app.iter().any(|queue| !queue.is_empty()) {
            for queue in &mut by_app {
                if followers.len() < spec.followers as usize
                    && let Some(device) = queue.pop_front()
                {
                    followers.push(device);
                }
            }
        }
        let start = self.traffic_start;
        let follow_window = secs(spec.follow_s).max(1);
        self.schedule(start, Event::OpenChannel);
        for &device in &followers {
            let at = start + SETTLE_OPEN_US + self.rng.random_range(0..follow_window);
            self.schedule(at, Event::Follow { device });
        }
        let posting_from = start + SETTLE_OPEN_US + follow_window;
        let posting = self.traffic_end.saturating_sub(posting_from).max(1);
        for post in 0..spec.posts {
            let at = posting_from + posting * u64::from(post) / u64::from(spec.posts.max(1));
            self.schedule(at, Event::Post);
        }
        let mut shuffled = followers.clone();
        for i in (1..shuffled.len()).rev() {
            let j = self.rng.random_range(0..=i);
            shuffled.swap(i, j);
        }
        for &device in shuffled.iter().take(spec.votes as usize) {
            let at = posting_from + self.rng.random_range(0..posting);
            self.schedule(at, Event::Vote { device });
        }
        // Leavers halfway through the posts, from the other end of the shuffle.
        for &device in shuffled.iter().rev().take(spec.leavers as usize) {
            self.schedule(posting_from + posting / 2, Event::Leave { device });
        }
        self.channel.followers = followers;
    }

    pub(super) fn open_channel(&mut self) {
        let Some(admin) = self.channel.admin else { return };
        let admins = vec![self.clients[admin].address.name().to_owned()];
        let id = self.channel.id.clone();
        let mut out = Vec::new();
        let suite = self.suite;
        self.clients[admin].open_channel(self.now, &id, admins, suite, &mut self.rng, &mut out);
        self.client_out(admin, out);
    }

    pub(super) fn follow_channel(&mut self, device: usize) {
        let id = self.channel.id.clone();
        let mut out = Vec::new();
        self.clients[device].follow(self.now, &id, &mut out);
        self.client_out(device, out);
    }

    pub(super) fn leave_channel(&mut self, device: usize) {
        let id = self.channel.id.clone();
        self.channel.left_at.insert(device, self.now);
        let mut out = Vec::new();
        self.clients[device].leave(self.now, &id, &mut out);
        self.client_out(device, out);
    }

    pub(super) fn post_to_channel(&mut self) {
        let Some(admin) = self.channel.admin else { return };
        let number = self.channel.posts.len() as u64;
        let id = self.channel.id.clone();
        let content = client::content(number, Some(&id), POST_BYTES, 0, self.now);
        let mut out = Vec::new();
        if self.clients[admin].post(self.now, &id, content, &mut self.rng, &mut out) {
            self.channel.posts.push(self.now);
        }
        self.client_out(admin, out);
    }

    pub(super) fn vote(&mut self, device: usize) {
        if !self.channel.followed_at.contains_key(&device) || self.channel.left_at.contains_key(&device) {
            return;
        }
        let number = self.channel.votes.len() as u64;
        let id = self.channel.id.clone();
        let content = client::content(number, Some(&id), POST_BYTES, 2, self.now);
        let mut out = Vec::new();
        if self.clients[device].reply_to_channel(self.now, &id, content, &mut self.rng, &mut out) {
            self.channel.votes.push(device);
        }
        self.client_out(device, out);
    }

    pub(super) fn channel_followed(&mut self, device: usize, ok: bool) {
        if ok {
            self.channel.followed_at.entry(device).or_insert(self.now);
        }
    }

    pub(super) fn channel_key_handed_over(&mut self, follower: &ProtocolAddress) {
        if let Some(device) = self.device_index(follower) {
            self.channel.keyed_at.entry(device).or_insert(self.now);
        }
    }

    pub(super) fn channel_post_read(&mut self, device: usize, post: u64, from: &ProtocolAddress) {
        let admin = self.channel.admin.map(|admin| &self.clients[admin].address);
        if admin != Some(from) {
            self.channel.violations.push(Violation { invariant: FOLLOWERS_UNSEEN, detail: format!("{} read a post from {from}, not the channel's admin", self.clients[device].address) });
        }
        *self.channel.reads.entry((post, device)).or_default() += 1;
    }

    pub(super) fn channel_vote_received(&mut self, device: usize, vote: u64, from: &ProtocolAddress) {
        let voter = self.channel.votes.get(vote as usize).map(|voter| &self.clients[*voter].address);
        if Some(device) != self.channel.admin || voter != Some(from) {
            self.channel.violations.push(Violation { invariant: VOTES_TALLIED, detail: format!("vote {vote} from {from} reached {}", self.clients[device].address) });
            return;
        }
        *self.channel.tallied.entry(vote).or_default() += 1;
    }

    /// The channel's counts and what broke its invariants.
    pub(crate) fn check_channel(&self) -> (ChannelCounts, Vec<Violation>) {
        let channel = &self.channel;
        let mut violations = channel.violations.clone();
        let mut counts = ChannelCounts {
            followers: channel.followers.len() as u64,
            followed: channel.followed_at.len() as u64,
            posts: channel.posts.len() as u64,
            votes: channel.votes.len() as u64,
            leavers: channel.left_at.len() as u64,
            keys_handed_over: channel.admin.map_or(0, |admin| self.clients[admin].keys_handed_over),
            ..Default::default()
        };
        let name = |device: usize| self.clients[device].address.to_string();
        for (post, &sent_at) in channel.posts.iter().enumerate() {
            let post = post as u64;
            for &device in &channel.followers {
                let reads = channel.reads.get(&(post, device)).copied().unwrap_or(0);
                counts.reads += u64::from(reads.min(1));
                let left = channel.left_at.get(&device);
                if left.is_some_and(|left| *left < sent_at) && reads > 0 {
                    violations.push(Violation { invariant: LEFT_READS_NOTHING, detail: format!("{} read post {post}, sent after it left", name(device)) });
                }
                let following = channel.keyed_at.get(&device).is_some_and(|at| *at < sent_at) && left.is_none();
                if !following {
                    if reads > 1 {
                        violations.push(Violation { invariant: POSTS_REACH_FOLLOWERS, detail: format!("post {post} read {reads} times by {}", name(device)) });
                    }
                    continue;
                }
                counts.reads_required += 1;
                counts.reads_done += u64::from(reads.min(1));
                if reads != 1 {
                    violations.push(Violation { invariant: POSTS_REACH_FOLLOWERS, detail: format!("post {post} read {reads} times by {}", name(device)) });
                }
            }
        }
        // A follower's device holds sessions with another follower only if their users wrote to
        // each other outside the channel.
        let followers: HashSet<usize> = channel.followers.iter().copied().collect();
        for &device in &channel.followers {
            let me = self.user_of[device];
            for peer in self.clients[device].device().session_peers() {
                let Some(other) = self.device_index(peer).filter(|d| followers.contains(d)) else { continue };
                let pair = (me.min(self.user_of[other]), me.max(self.user_of[other]));
                if self.user_of[other] != me && !channel.talked.contains(&pair) {
                    violations.push(Violation { invariant: FOLLOWERS_UNSEEN, detail: format!("{} holds a session with {peer}, another follower", name(device)) });
                }
            }
        }
        for (vote, _) in channel.votes.iter().enumerate() {
            let received = channel.tallied.get(&(vote as u64)).copied().unwrap_or(0);
            counts.votes_tallied += u64::from(received.min(1));
            if received != 1 {
                violations.push(Violation { invariant: VOTES_TALLIED, detail: format!("vote {vote} reached the admin {received} times") });
            }
        }
        (counts, violations)
    }
}

/// Time between the channel's opening and the first follow (its app has it durably by then).
const SETTLE_OPEN_US: u64 = super::SECOND;
