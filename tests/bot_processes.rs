//! A poll bot over three relay processes on loopback: the bot (a device run by a program, the
//! `PollBot` that `crates/client/examples/poll_bot.rs` drives) opens a channel on green;
//! followers on green, blue and red follow it and vote by replying to it; the bot's tally matches
//! the votes cast (one per user, the last counting), and the results it posts reach every
//! follower, from the bot, naming no follower.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use switchboard_client::bot::{PollBot, text_of};
use switchboard_client::{ChatClient, Event};
use switchboard_session::Suite;
use switchboard_wire::switchboard::{PollVote, content};

mod federation;

use federation::{Federation, text};

const QUIET: Duration = Duration::from_millis(200);
/// How long a step may take on a loaded machine before the test gives up.
const DELIVERY_LIMIT: Duration = Duration::from_secs(60);
const CHANNEL: &str = "lunch@green";
const BOT: &str = "pollbot@green";
/// Each follower, and the option it votes for last.
const VOTERS: [(&str, &str); 5] = [("ann@green", "tue"), ("ben@blue", "wed"), ("cat@red", "tue"), ("dan@blue", "mon"), ("eve@red", "tue")];

fn seeded(seed: u64) -> rand::rngs::StdRng {
    <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed)
}

async fn register(federation: &Federation, user: &str, seed: u64) -> ChatClient {
    let app = user.split_once('@').unwrap().1;
    ChatClient::register(federation.relay(app), user, 1, seeded(seed)).await.unwrap_or_else(|error| panic!("registering {user}: {error}"))
}

/// The bot and its followers, each follower with every event it has seen.
struct World {
    bot: PollBot,
    bot_client: ChatClient,
    followers: Vec<(ChatClient, Vec<Event>)>,
}

impl World {
    /// Runs the bot and polls every follower until `done` holds (or panics after
    /// [`DELIVERY_LIMIT`], naming `what`).
    async fn run_until(&mut self, what: &str, done: impl Fn(&World) -> bool) {
        let deadline = Instant::now() + DELIVERY_LIMIT;
        loop {
            self.bot.serve(&mut self.bot_client, QUIET).await.unwrap();
            for (client, seen) in &mut self.followers {
                seen.extend(client.poll(QUIET).await.unwrap());
            }
            if done(self) {
                return;
            }
            assert!(Instant::now() < deadline, "never: {what}; the bot counted {:?}", self.bot.tally());
        }
    }

    fn follower(&mut self, user: &str) -> &mut ChatClient {
        &mut self.followers.iter_mut().find(|(client, _)| client.user() == user).unwrap().0
    }
}

/// The channel posts among `events`: from whom, and their text (`None` for a poll).
fn posts(events: &[Event]) -> Vec<(String, Option<String>)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::ChannelPost { channel, from, content, .. } if channel == CHANNEL => Some((from.to_string(), text_of(content).map(str::to_owned))),
            _ => None,
        })
        .collect()
}

fn is_results(post: &(String, Option<String>)) -> bool {
    post.1.as_deref().is_some_and(|text| text.starts_with("Results"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_bot_counts_votes_from_followers_on_three_apps() {
    let federation = Federation::new();
    let mut bot_client = register(&federation, BOT, 101).await;
    let bot = PollBot::new(CHANNEL, "Which day?", &["mon", "tue", "wed"]).unwrap();
    bot.open(&mut bot_client, Suite::Aes256Gcm).await.unwrap_or_else(|error| panic!("opening {CHANNEL}: {error}"));
    let bot_address = bot_client.address().to_string();

    let mut followers = Vec::new();
    for (seed, (user, _)) in (110..).zip(VOTERS) {
        let mut client = register(&federation, user, seed).await;
        let admins = client.follow(CHANNEL).await.unwrap_or_else(|error| panic!("{user} following {CHANNEL}: {error}"));
        assert_eq!(admins, [BOT], "the channel's app names its admins");
        followers.push((client, Vec::new()));
    }
    let mut world = World { bot, bot_client, followers };
    // Each follower asked the bot's device for its key, and was handed it.
    world.run_until("every follower handed the bot's key", |world| world.bot.followers() >= VOTERS.len() as u64).await;

    let poll = world.bot.post_poll(&mut world.bot_client).await.unwrap();
    world.run_until("the poll reaching every follower", |world| world.followers.iter().all(|(_, seen)| !posts(seen).is_empty())).await;

    // Ann first votes mon, and once that is counted changes her mind: her last vote counts.
    world.follower("ann@green").reply_to_channel(CHANNEL, text("/vote mon")).await.unwrap();
    world.run_until("ann's first vote counted", |world| world.bot.votes().any(|vote| vote == ("ann@green", "mon"))).await;
    for (user, option) in VOTERS {
        let body = match user {
            // A poll vote, by option index, for this poll.
            "ben@blue" => content::Body::PollVote(PollVote { poll: poll.to_vec(), option: 2 }),
            _ => text(&format!("/vote {option}")),
        };
        world.follower(user).reply_to_channel(CHANNEL, body).await.unwrap_or_else(|error| panic!("{user} voting: {error}"));
    }
    let expected: BTreeSet<(String, String)> = VOTERS.iter().map(|(user, option)| (user.to_string(), option.to_string())).collect();
    world
        .run_until("every last vote counted", |world| {
            world.bot.votes().map(|(user, option)| (user.to_owned(), option.to_owned())).collect::<BTreeSet<_>>() == expected
        })
        .await;
    assert_eq!(world.bot.tally(), [("mon".to_owned(), 1), ("tue".to_owned(), 3), ("wed".to_owned(), 1)], "one vote per user, the last");
    let apps: BTreeSet<&str> = world.bot.votes().map(|(user, _)| user.split_once('@').unwrap().1).collect();
    assert_eq!(apps, BTreeSet::from(["blue", "green", "red"]), "voters from all three apps");

    // Anyone asks for the results: posted once, to every follower.
    world.follower("cat@red").reply_to_channel(CHANNEL, text("/results")).await.unwrap();
    world.run_until("the results reaching every follower", |world| world.followers.iter().all(|(_, seen)| posts(seen).iter().any(is_results))).await;
    let results = world.bot.results();
    assert_eq!(results, "Results — Which day? mon: 1, tue: 3, wed: 1 (5 votes)");
    for (client, seen) in &world.followers {
        let posts = posts(seen);
        assert_eq!(posts.iter().filter(|post| is_results(post)).count(), 1, "{} got the results once: {posts:?}", client.user());
        for (from, text) in &posts {
            // Every post is the bot's, and none names another follower.
            assert_eq!(from, &bot_address, "{} got a post from another than the bot", client.user());
            for (other, _) in VOTERS.iter().filter(|(other, _)| *other != client.user()) {
                let name = other.split_once('@').unwrap().0;
                assert!(!text.as_deref().unwrap_or_default().contains(name), "{} got a post naming {other}: {text:?}", client.user());
            }
        }
        assert!(posts.iter().any(|(_, text)| text.as_deref() == Some(results.as_str())), "{}: {posts:?}", client.user());
        // Followers never hear of each other: no reply, no message, no follower event reached them.
        for event in seen {
            assert!(
                !matches!(event, Event::ChannelReply { .. } | Event::ChannelFollower { .. } | Event::Message { .. }),
                "{} heard {event:?}",
                client.user()
            );
        }
    }
}
