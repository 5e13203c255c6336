//! A poll bot over three relay processes on loopback: the bot (a device run by a program, the
//! `PollBot` that `crates/client/examples/poll_bot.rs` drives) opens a channel on green;
//! followers on green, blue and red follow it and vote by replying to it; the bot's tally matches
//! the votes cast (one per user, the last counting), and the results it posts reach every
//! follower, from the bot, naming no follower. The example's binary itself runs too, as a process
//! beside the relays. Also: leaving a channel, and a business's agents (names on replies, a
//! hand-over, an agent's device removed), over the same relays.

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

/// Polls each of `clients` until `done` holds of the events each has seen (or panics after
/// [`DELIVERY_LIMIT`], naming `what`); returns them.
async fn poll_until(clients: &mut [&mut ChatClient], what: &str, done: impl Fn(&[Vec<Event>]) -> bool) -> Vec<Vec<Event>> {
    let deadline = Instant::now() + DELIVERY_LIMIT;
    let mut seen = vec![Vec::new(); clients.len()];
    loop {
        for (client, seen) in clients.iter_mut().zip(&mut seen) {
            seen.extend(client.poll(QUIET).await.unwrap());
        }
        if done(&seen) {
            return seen;
        }
        assert!(Instant::now() < deadline, "never: {what}; seen {seen:#?}");
    }
}

/// The other answered commands, over real relays: a follower who leaves a channel gets no post
/// made after; a business's customer on another app sees which agent wrote, a hand-over is
/// counted, and the relay confirms an agent's device removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_a_channel_and_removing_an_agent_are_answered_by_the_relays() {
    let federation = Federation::new();
    let mut owner = register(&federation, "news@green", 201).await;
    owner.open_channel("news@green", &["news@green"], Suite::Aes256Gcm).await.unwrap();
    let mut reader = register(&federation, "rex@red", 202).await;
    let mut stayer = register(&federation, "sue@blue", 206).await;
    for follower in [&mut reader, &mut stayer] {
        assert_eq!(follower.follow("news@green").await.unwrap(), ["news@green"]);
    }
    let handed = |seen: &[Vec<Event>]| seen[0].iter().filter(|e| matches!(e, Event::ChannelFollower { .. })).count() >= 2;
    poll_until(&mut [&mut owner, &mut reader, &mut stayer], "both followers handed the key", handed).await;
    owner.post("news@green", text("first")).await.unwrap();
    poll_until(&mut [&mut owner, &mut reader], "the first post read", |seen| posts_of(&seen[1], "news@green").contains(&"first".to_owned())).await;
    reader.leave("news@green").await.unwrap();
    owner.post("news@green", text("second")).await.unwrap();
    // Once the follower who stayed has it, the one who left has had time to get it too.
    let seen = poll_until(&mut [&mut owner, &mut stayer, &mut reader], "the second post at the follower who stayed", |seen| {
        posts_of(&seen[1], "news@green").contains(&"second".to_owned())
    })
    .await;
    let later = poll_until(&mut [&mut reader], "a while", |_| true).await;
    assert!(posts_of(&seen[2], "news@green").is_empty() && posts_of(&later[0], "news@green").is_empty(), "a post after leaving arrived");

    // A business on blue, two agents' devices; a customer on green.
    let mut ana = register(&federation, "shop@blue", 203).await;
    let credential = ana.link_device(2).await.unwrap();
    let mut ben = ChatClient::register_linked(federation.relay("blue"), "shop@blue", 2, credential, seeded(204)).await.unwrap();
    let mut customer = register(&federation, "cy@green", 205).await;
    ana.set_agents(&[(1, "Ana"), (2, "Ben")]).await.unwrap();
    poll_until(&mut [&mut ana, &mut ben], "the roster at ben's device", |seen| seen[1].iter().any(|e| matches!(e, Event::AgentsChanged { listed: true }))).await;
    customer.send("shop@blue", text("hello shop")).await.unwrap();
    poll_until(&mut [&mut ana, &mut ben], "the customer's message at both agents", |seen| seen.iter().all(|events| federation::texts(events).contains(&"hello shop".to_owned()))).await;
    assert!(!ana.assign("cy@green", 1).await.unwrap(), "a first assignment is no hand-over");
    ana.send("cy@green", text("Ana here")).await.unwrap();
    assert!(ana.assign("cy@green", 2).await.unwrap(), "to another agent: a hand-over");
    ben.send("cy@green", text("Ben here")).await.unwrap();
    let seen = poll_until(&mut [&mut customer], "both replies", |seen| federation::texts(&seen[0]).len() >= 2).await;
    let agents: Vec<Option<String>> = seen[0].iter().filter_map(|e| if let Event::Message { agent, .. } = e { Some(agent.clone()) } else { None }).collect();
    assert_eq!(agents, [Some("Ana".to_owned()), Some("Ben".to_owned())]);
    let analytics = ana.analytics().expect("a business device");
    assert_eq!((analytics.handovers, analytics.conversations), (1, 1));

    ana.remove_agent(2).await.unwrap_or_else(|error| panic!("removing ben's device: {error}"));
    assert_eq!(ana.agents().into_values().collect::<Vec<_>>(), ["Ana"], "the roster without the removed device");
}

/// The texts of the posts to `channel` among `events`.
fn posts_of(events: &[Event], channel: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::ChannelPost { channel: posted_in, content, .. } if posted_in == channel => text_of(content).map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// The poll bot example itself, as a process (`crates/client/examples/poll_bot.rs`, which
/// `cargo test --workspace` builds beside this test), against the three relay processes:
/// followers on every app vote, and the results it posts count each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poll_bot_example_runs_as_a_process() {
    use std::io::BufRead;
    let example = std::path::Path::new(env!("CARGO_BIN_EXE_switchboard")).parent().unwrap().join("examples").join("poll_bot");
    assert!(example.exists(), "{} is missing: build the examples first (`cargo test --workspace` does)", example.display());
    let federation = Federation::new();
    let relay = federation.clients["green"].to_string();
    let ca = federation.ca_path();
    let mut bot = std::process::Command::new(&example)
        .args(["--relay", &relay, "--ca", ca.to_str().unwrap(), "--user", BOT, "--channel", CHANNEL])
        .args(["--question", "Which day?", "--options", "mon,tue,wed", "--seconds", "120"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its lines, read on a thread of their own.
    let (lines, said) = std::sync::mpsc::channel::<String>();
    let stdout = bot.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let wait_for = |what: &str| -> String {
        let deadline = Instant::now() + DELIVERY_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = said.recv_timeout(left).unwrap_or_else(|_| panic!("the bot never said {what:?}"));
            if line.contains(what) {
                return line;
            }
        }
    };
    wait_for("ready:");

    let voters = [("ann@green", "tue"), ("ben@blue", "wed"), ("cat@red", "tue")];
    let mut followers = Vec::new();
    for (seed, (user, _)) in (210..).zip(voters) {
        let mut client = register(&federation, user, seed).await;
        assert_eq!(client.follow(CHANNEL).await.unwrap(), [BOT]);
        followers.push((client, Vec::<Event>::new()));
    }
    // Each asks the bot's device for its key; then votes (a post encrypted before a follower held
    // the key, the poll among them, it does not read: the votes name their option).
    let deadline = Instant::now() + DELIVERY_LIMIT;
    for ((client, seen), (user, option)) in followers.iter_mut().zip(voters) {
        seen.extend(client.poll(QUIET).await.unwrap());
        client.reply_to_channel(CHANNEL, text(&format!("/vote {option}"))).await.unwrap_or_else(|error| panic!("{user} voting: {error}"));
    }
    wait_for("(3 votes)");
    followers[0].0.reply_to_channel(CHANNEL, text("/results")).await.unwrap();
    let results = loop {
        for (client, seen) in &mut followers {
            seen.extend(client.poll(QUIET).await.unwrap());
        }
        let found: Vec<Option<String>> = followers.iter().map(|(_, seen)| posts(seen).into_iter().find(is_results).and_then(|post| post.1)).collect();
        if found.iter().all(Option::is_some) {
            break found;
        }
        assert!(Instant::now() < deadline, "the results never reached every follower: {found:?}");
    };
    for text in results {
        let text = text.unwrap();
        assert!(text.contains("mon: 0") && text.contains("tue: 2") && text.contains("wed: 1") && text.contains("(3 votes)"), "{text}");
    }
    bot.kill().unwrap();
    bot.wait().unwrap();
}
