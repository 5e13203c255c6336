//! `switchboard demo`: three apps, each with its own relay (real sockets on loopback, mutual TLS
//! between relays, a database per relay in a temporary folder), and users on each. They chat one
//! to one across apps, and in a group spanning all three apps with a poll and a reaction; a member
//! is removed and the group goes on without them; one user is offline for a while and catches up.
//! Grace has an account on each app, linked as one person: a conversation with her starts on one
//! app, goes on on a second and ends on a third, her other devices showing what she sent.
//! A stranger's first message arrives as a request and is accepted; Mallory, one person on two
//! apps, harasses Bob from both, is reported (verified through federation; a forged report is
//! refused) and blocked, and nothing she sends after reaches him on any app.
//! A hotel on Green is a business account served by two agents (two devices of the account):
//! a customer on Blue writes to it, agent Ana answers, hands the conversation over to Ben, and
//! Ben answers; the customer sees which agent wrote each reply.
//! It prints each person's view, what each relay stored, and checks that nothing was lost or
//! duplicated and that no relay ever saw a plaintext.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::json;
use switchboard_client::{ChatClient, Event, RelayAddress};
use switchboard_relay::local::LocalFederation;
use switchboard_session::Suite;
use switchboard_wire::address::UserAddress;
use switchboard_wire::switchboard::{Poll, PollVote, Reaction, Reply, Text, Visibility, content};

#[derive(clap::Args)]
pub struct Args {
    /// Print one JSON summary object instead of the conversation.
    #[arg(long)]
    json: bool,
}

const APPS: [&str; 3] = ["green", "blue", "red"];
const USERS: [&str; 13] = [
    "alice@green", "bob@blue", "carol@red", "dave@green", "erin@blue", "frank@red", "grace@green", "grace@blue", "grace@red",
    "mallory@green", "mallory@red", "hotel@green", "ivy@blue",
];
/// One person's three accounts, linked: green public, the others shown to her contacts.
const GRACE: [&str; 3] = ["grace@green", "grace@blue", "grace@red"];
/// Another person's two accounts, both public.
const MALLORY: [&str; 2] = ["mallory@green", "mallory@red"];
const GROUP: &str = "weekend@green";
/// A business account: device 1 (its owner's) serves agent Ana, device 2 agent Ben. The demo
/// names its second device `HOTEL_SECOND`, as a user of its own, to count what each device shows.
const HOTEL: &str = "hotel@green";
const HOTEL_SECOND: &str = "hotel@green#2";
const AGENTS: [(u32, &str); 2] = [(1, "Ana"), (2, "Ben")];
/// The hotel's customer, on another app.
const CUSTOMER: &str = "ivy@blue";
/// How long a client waits for more deliveries before it considers the network quiet.
const QUIET: Duration = Duration::from_millis(60);

/// Who should see what, and what everyone saw.
#[derive(Default)]
struct Ledger {
    /// message id → (sender, recipients, plaintext strings in it)
    sent: Vec<(Vec<u8>, String, Vec<String>, Vec<String>)>,
    /// (recipient, message id) → times shown
    shown: HashMap<(String, Vec<u8>), u32>,
    /// (account, message id) → times another device of its person carried it there
    synced: HashMap<(String, Vec<u8>), u32>,
    /// (viewer, person key) → the app her last message came through, and how often a message of
    /// hers came through another app than the one before (one thread, across apps).
    threads: HashMap<(String, Vec<u8>), (String, u64)>,
    views: BTreeMap<String, Vec<String>>,
    /// Messages shown as requests (from someone the recipient had no conversation with).
    requests: u64,
    /// (recipient, sender) pairs blocked, and messages shown from a blocked sender after that.
    blocked: HashSet<(String, String)>,
    blocked_deliveries: u64,
    /// Plaintexts reported, and the app each was reported to (which sees it, on purpose).
    reported: Vec<(String, String)>,
    reports_verified: u64,
    forged_reports_refused: u64,
    /// The agent named on each message a customer received from a business, in order.
    agents_seen: Vec<String>,
}

struct Demo {
    /// Each device, by its user (a further device of a user: `user#device`).
    clients: BTreeMap<String, ChatClient>,
    /// A user's further devices (`user#device`), which receive what is sent to the user too.
    further_devices: BTreeMap<String, Vec<String>>,
    ledger: Ledger,
    print: bool,
}

fn describe(body: &Option<content::Body>) -> (String, Vec<String>) {
    match body {
        Some(content::Body::Text(t)) => (t.text.clone(), vec![t.text.clone()]),
        Some(content::Body::Reply(r)) => (format!("↪ {}", r.text), vec![r.text.clone()]),
        Some(content::Body::Poll(p)) => {
            let mut plain = vec![p.question.clone()];
            plain.extend(p.options.iter().cloned());
            (format!("📊 {} [{}]", p.question, p.options.join(" | ")), plain)
        }
        Some(content::Body::PollVote(v)) => (format!("voted for option {}", v.option + 1), Vec::new()),
        Some(content::Body::Reaction(r)) => (format!("reacted {}", r.emoji), vec![r.emoji.clone()]),
        other => (format!("{other:?}"), Vec::new()),
    }
}

impl Demo {
    /// `reporter` reports message `id` (whose text was `text`) to its own app, and then a copy
    /// with the words changed, which must be refused.
    async fn report(&mut self, reporter: &str, id: &[u8], text: &str) -> anyhow::Result<()> {
        let id: switchboard_wire::message_id::MessageId = id.try_into().context("a message id")?;
        let (evidence, content) = {
            let received = self.clients[reporter].received(&id).context("the reported message was received")?;
            (received.evidence().clone(), received.content().to_vec())
        };
        let app = UserAddress::split(reporter).map(|(_, app)| app.to_owned())?;
        self.ledger.reported.push((app, text.to_owned()));
        self.client(reporter).report(&id).await?;
        self.ledger.reports_verified += 1;
        self.note(reporter, format!("(reported a message from {}: verified)", evidence.sender.name()));
        let forged = String::from_utf8_lossy(&content).replace("regret", "enjoy").into_bytes();
        match self.client(reporter).report_evidence(&evidence, forged).await {
            Err(switchboard_client::ChatError::Request(_)) => {
                self.ledger.forged_reports_refused += 1;
                self.note(reporter, "(a report with the words changed: refused)".into());
            }
            other => anyhow::bail!("a forged report was not refused: {other:?}"),
        }
        Ok(())
    }

    fn client(&mut self, user: &str) -> &mut ChatClient {
        self.clients.get_mut(user).expect("a demo user")
    }

    fn note(&mut self, user: &str, line: String) {
        self.ledger.views.entry(user.to_owned()).or_default().push(line);
    }

    async fn send(&mut self, from: &str, to: &str, body: content::Body) -> anyhow::Result<Vec<u8>> {
        // A message to one of Grace's accounts is for all of them (once her record is known).
        let person: Vec<String> = self.clients[from].person_of(to).map(|p| p.accounts().iter().map(|a| a.user.clone()).collect()).unwrap_or_default();
        let mut recipients = if person.is_empty() { vec![to.to_owned()] } else { person };
        // A user's other devices receive it too.
        let further: Vec<String> = recipients.iter().flat_map(|user| self.further_devices.get(user).cloned().unwrap_or_default()).collect();
        recipients.extend(further);
        let (line, plain) = describe(&Some(body.clone()));
        let id = self.client(from).send(to, body).await?.to_vec();
        self.ledger.sent.push((id.clone(), from.into(), recipients, plain));
        self.note(from, format!("me → {to}: {line}"));
        Ok(id)
    }

    async fn send_group(&mut self, from: &str, body: content::Body) -> anyhow::Result<Vec<u8>> {
        let (line, plain) = describe(&Some(body.clone()));
        let members: Vec<String> = self.clients[from]
            .group(GROUP)
            .context("sender is in the group")?
            .members()
            .iter()
            .map(|m| m.name().to_owned())
            .filter(|m| m != from)
            .collect();
        let id = self.client(from).send_group(GROUP, body).await?.to_vec();
        self.ledger.sent.push((id.clone(), from.into(), members, plain));
        self.note(from, format!("[{GROUP}] me: {line}"));
        Ok(id)
    }

    /// Every online client processes deliveries until a whole round brings nothing new.
    async fn settle(&mut self) -> anyhow::Result<()> {
        for _ in 0..20 {
            let mut quiet = true;
            let users: Vec<String> = self.clients.keys().cloned().collect();
            for user in users {
                let events = self.client(&user).poll(QUIET).await?;
                quiet &= events.is_empty() && self.clients[&user].outbox_len() == 0;
                for event in events {
                    self.record(&user, event);
                }
            }
            if quiet {
                return Ok(());
            }
        }
        Ok(())
    }

    fn record(&mut self, user: &str, event: Event) {
        match event {
            Event::Message { from, group, id, content, request, agent } => {
                if let Some(agent) = &agent {
                    self.ledger.agents_seen.push(agent.clone());
                }
                self.ledger.requests += u64::from(request);
                if self.ledger.blocked.contains(&(user.to_owned(), from.name().to_owned())) {
                    self.ledger.blocked_deliveries += 1;
                }
                let id = id.map(|id| id.to_vec()).unwrap_or_default();
                *self.ledger.shown.entry((user.to_owned(), id)).or_default() += 1;
                let (line, _) = describe(&content.body);
                if group.is_none()
                    && let Some(person) = self.clients[user].person_of(from.name())
                {
                    let key = person.person_key().serialize().to_vec();
                    let app = UserAddress::split(from.name()).map(|(_, app)| app.to_owned()).unwrap_or_default();
                    let thread = self.ledger.threads.entry((user.to_owned(), key)).or_insert_with(|| (app.clone(), 0));
                    if thread.0 != app {
                        thread.0 = app;
                        thread.1 += 1;
                    }
                }
                let place = group.map(|g| format!("[{g}] ")).unwrap_or_default();
                let request = if request { "(request) " } else { "" };
                let agent = agent.map(|agent| format!(" (agent {agent})")).unwrap_or_default();
                self.note(user, format!("{place}{request}{}{agent}: {line}", from.name()));
            }
            Event::Synced { from, to, id, content, carried_by, .. } => {
                let id = id.map(|id| id.to_vec()).unwrap_or_default();
                *self.ledger.synced.entry((user.to_owned(), id)).or_default() += 1;
                let (line, _) = describe(&content.body);
                let to = to.map(|to| format!(" → {to}")).unwrap_or_default();
                // Another device of this account (a business's other agent), or of this person.
                let account = user.split('#').next().unwrap_or(user);
                let carrier = if carried_by.name() == account { format!("device {} of this account", carried_by.device_id()) } else { format!("her {} device", carried_by.name()) };
                self.note(user, format!("(from {carrier}) {}{to}: {line}", from.name()));
            }
            Event::GroupChanged { group, epoch, added, removed, .. } => {
                let members = self.clients[user].group(&group).map_or(0, |g| g.members().len());
                let mut change = Vec::new();
                if !added.is_empty() {
                    change.push(format!("+{}", names(&added)));
                }
                if !removed.is_empty() {
                    change.push(format!("-{}", names(&removed)));
                }
                self.note(user, format!("[{group}] {}: now {members} members (epoch {epoch})", change.join(" ")));
            }
            Event::RemovedFromGroup { group } => self.note(user, format!("[{group}] you were removed")),
            Event::GroupForked { group, epoch, from } => self.note(user, format!("[{group}] forked at epoch {epoch}: {from} holds another state")),
            Event::SendDropped { reason } => self.note(user, format!("(a send was given up: {reason:?})")),
            Event::AgentsChanged { listed } => {
                let agents = self.clients[user].agents().into_values().collect::<Vec<_>>().join(", ");
                self.note(user, format!("(the business's agents are now {agents}{})", if listed { "" } else { "; this device serves none" }));
            }
            Event::Assigned { customer, agent_device, handover } => {
                let agent = self.clients[user].agents().get(&agent_device).cloned().unwrap_or_else(|| format!("device {agent_device}"));
                let how = if handover { "handed over to" } else { "assigned to" };
                self.note(user, format!("(the conversation with {customer} was {how} {agent})"));
            }
            // No channel in this demo.
            Event::ChannelPost { .. } | Event::ChannelReply { .. } | Event::ChannelFollower { .. } => {}
            Event::Online | Event::Offline => {}
            // Not expected of the demo's own relays on loopback; shown if it happens.
            Event::NotTheRelay { address } => self.note(user, format!("(a certificate that is not the relay's at {address})")),
        }
    }
}

/// Users named once each, in order (`alice@green, bob@blue`).
fn names(devices: &[switchboard_session::ProtocolAddress]) -> String {
    let mut users: Vec<&str> = devices.iter().map(|d| d.name()).collect();
    users.dedup();
    users.join(", ")
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: Args) -> anyhow::Result<()> {
    let print = !args.json;
    let dir = tempfile::tempdir()?;
    let federation = LocalFederation::start(&APPS, dir.path()).await?;
    if print {
        println!("Three apps, each with its own relay (databases in {}):", dir.path().display());
        for relay in &federation.relays {
            println!("  {:<6} devices at {} (TLS), other relays at {} (mutual TLS)", relay.app, relay.client_address, relay.federation_address);
        }
    }
    let mut demo = Demo { clients: BTreeMap::new(), further_devices: BTreeMap::new(), ledger: Ledger::default(), print };
    for user in USERS {
        let address: UserAddress = user.parse()?;
        let relay = RelayAddress::new(federation.relay(address.app()).client_address, address.app(), federation.ca_certificate())?;
        let client = ChatClient::register(relay, user, 1, rand::make_rng()).await?;
        demo.clients.insert(user.to_string(), client);
    }

    // One to one, across apps.
    let hello = demo.send("alice@green", "bob@blue", text("Hi Bob! Writing from Green — can you read this on Blue?")).await?;
    demo.settle().await?;
    demo.send("bob@blue", "alice@green", reply(&hello, "Loud and clear, Alice. Neither relay can, though.")).await?;
    demo.send("carol@red", "dave@green", text("Dave, are you coming on Saturday?")).await?;
    demo.settle().await?;
    demo.send("dave@green", "carol@red", text("Wouldn't miss it.")).await?;
    demo.settle().await?;

    // Grace links her three accounts: one person, on every app. Each new device joins with an
    // invitation from one already hers (a code it scans), once the last join reached it.
    demo.client("grace@green").become_person(Visibility::Public).await?;
    for account in &GRACE[1..] {
        let invitation = demo.clients["grace@green"].person_invitation().context("grace is a person")?;
        demo.client(account).join_person(&invitation, Visibility::Contacts).await?;
        demo.settle().await?;
    }
    // A conversation that starts on Green, goes on on Blue and ends on Red: Alice sees one
    // thread, Grace's other devices show what she sent from each.
    demo.send("grace@green", "alice@green", text("Alice! It's Grace — writing from Green.")).await?;
    demo.settle().await?;
    demo.send("alice@green", "grace@green", text("Hi Grace! Which app are you on these days?")).await?;
    demo.settle().await?;
    demo.send("grace@blue", "alice@green", text("All of them — this one's from Blue.")).await?;
    demo.settle().await?;
    demo.send("alice@green", "grace@green", text("Then I'll write to whichever, you'll get it everywhere.")).await?;
    demo.settle().await?;
    demo.send("grace@red", "alice@green", text("Exactly. Signing off from Red!")).await?;
    demo.settle().await?;

    // A stranger writes: a request, shown apart until Carol accepts; then a conversation.
    demo.send("erin@blue", "carol@red", text("Hello Carol, we met at the lake — it's Erin.")).await?;
    demo.settle().await?;
    demo.client("carol@red").accept("erin@blue").await?;
    demo.note("carol@red", "(accepted erin@blue)".into());
    demo.send("erin@blue", "carol@red", text("Glad you remember!")).await?;
    demo.settle().await?;

    // Mallory, one person on Green and Red, harasses Bob from both. He reports her first message
    // to his app (Blue), which has Green check its stamp; a report with the words changed is
    // refused. Then he blocks her: every account of hers he knows, at his relay and his devices.
    demo.client(MALLORY[0]).become_person(Visibility::Public).await?;
    let invitation = demo.clients[MALLORY[0]].person_invitation().context("mallory is a person")?;
    demo.client(MALLORY[1]).join_person(&invitation, Visibility::Public).await?;
    demo.settle().await?;
    let vile = "You will regret this, Bob.";
    let first = demo.send(MALLORY[0], "bob@blue", text(vile)).await?;
    demo.send(MALLORY[1], "bob@blue", text("Did you think Red would be any different?")).await?;
    demo.settle().await?;
    demo.report("bob@blue", &first, vile).await?;
    demo.client("bob@blue").block(MALLORY[0]).await?;
    demo.note("bob@blue", format!("(blocked {} and every account of hers he knows)", MALLORY[0]));
    for account in MALLORY {
        demo.ledger.blocked.insert(("bob@blue".into(), account.into()));
        // Sent as any message, and answered as any: she cannot tell.
        demo.client(account).send("bob@blue", text("Still there?")).await?;
    }
    demo.settle().await?;

    // A group across all three apps; Green is its hub.
    demo.client("alice@green")
        .create_group(GROUP, &["bob@blue", "carol@red", "dave@green", "erin@blue", "frank@red"], Suite::Aes256Gcm)
        .await?;
    demo.settle().await?;
    demo.send_group("alice@green", text("Welcome to the weekend plan, everyone!")).await?;
    demo.settle().await?;
    let poll = demo.send_group("bob@blue", content::Body::Poll(Poll {
        question: "Where shall we go?".into(),
        options: vec!["The lake".into(), "The mountains".into(), "Stay in town".into()],
    })).await?;
    demo.settle().await?;

    // Frank goes offline for a while.
    demo.client("frank@red").disconnect();
    demo.send_group("carol@red", content::Body::PollVote(PollVote { poll: poll.clone(), option: 1 })).await?;
    demo.send_group("erin@blue", content::Body::PollVote(PollVote { poll: poll.clone(), option: 1 })).await?;
    demo.send_group("dave@green", content::Body::Reaction(Reaction { to: poll.clone(), emoji: "⛰️".into(), remove: false })).await?;
    demo.settle().await?;

    // Dave is removed; the others rotate their keys and go on without him.
    demo.client("alice@green").remove_member(GROUP, "dave@green").await?;
    demo.settle().await?;
    demo.send_group("carol@red", text("Mountains it is — Dave can't make it after all.")).await?;
    demo.send_group("alice@green", text("I'll book the cabin for the five of us.")).await?;
    demo.settle().await?;

    // Frank comes back and catches up on everything he missed, held for him by his relay.
    let (_, red) = federation.relay("red").inspect().await.context("relay is running")?;
    let held = red.mailboxes.iter().find(|((user, _), _)| user == "frank@red").map(|(_, m)| m.clone()).unwrap_or_default();
    if print {
        let bytes: usize = held.values().map(|e| e.bytes).sum();
        println!("\nWhile Frank is offline, Red holds {} envelopes for him: {bytes} bytes of ciphertext on its disk.", held.len());
    }
    demo.client("frank@red").reconnect().await?;
    demo.settle().await?;
    demo.send_group("frank@red", text("Sorry, I was offline — count me in!")).await?;
    demo.settle().await?;

    business(&mut demo, &federation).await?;

    summarize(demo, federation, dir.path()).await
}

/// A hotel on Green, one business account with two agents' devices: Ivy (on Blue) writes to
/// it, Ana answers, hands the conversation over to Ben, and Ben answers. Ivy sees one account,
/// and which agent wrote each reply; each agent's device shows the other's replies.
async fn business(demo: &mut Demo, federation: &LocalFederation) -> anyhow::Result<()> {
    let relay = RelayAddress::new(federation.relay("green").client_address, "green", federation.ca_certificate())?;
    let credential = demo.client(HOTEL).link_device(2).await?;
    let second = ChatClient::register_linked(relay, HOTEL, 2, credential, rand::make_rng()).await?;
    demo.clients.insert(HOTEL_SECOND.to_owned(), second);
    demo.further_devices.insert(HOTEL.to_owned(), vec![HOTEL_SECOND.to_owned()]);
    demo.client(HOTEL).set_agents(&AGENTS).await?;
    demo.note(HOTEL, format!("(agents: {})", AGENTS.map(|(device, name)| format!("{name} on device {device}")).join(", ")));
    demo.settle().await?;

    demo.send(CUSTOMER, HOTEL, text("Hello! Is a double room free this Friday?")).await?;
    demo.settle().await?;
    demo.client(HOTEL).assign(CUSTOMER, 1).await?;
    demo.send(HOTEL, CUSTOMER, text("Good morning, Ana here: yes, we have a double room with a lake view.")).await?;
    demo.settle().await?;
    demo.send(CUSTOMER, HOTEL, text("Lovely. Can I bring my dog?")).await?;
    demo.settle().await?;
    // Ana hands the conversation over to Ben, who handles the pets policy.
    let handover = demo.client(HOTEL).assign(CUSTOMER, 2).await?;
    ensure!(handover, "assigning Ana's conversation to Ben is a hand-over");
    demo.note(HOTEL, format!("(handed the conversation with {CUSTOMER} over to Ben)"));
    demo.settle().await?;
    demo.send(HOTEL_SECOND, CUSTOMER, text("Hi, Ben here: dogs are welcome, the room has a garden door.")).await?;
    demo.settle().await
}

fn text(s: &str) -> content::Body {
    content::Body::Text(Text { text: s.into() })
}

fn reply(to: &[u8], s: &str) -> content::Body {
    content::Body::Reply(Reply { to: to.to_vec(), text: s.into() })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && needle.len() <= haystack.len() && haystack.windows(needle.len()).any(|w| w == needle)
}

async fn summarize(demo: Demo, federation: LocalFederation, dir: &std::path::Path) -> anyhow::Result<()> {
    let ledger = &demo.ledger;
    let expected: u64 = ledger.sent.iter().map(|(_, _, to, _)| to.len() as u64).sum();
    let mut delivered = 0u64;
    let mut duplicates = 0u64;
    for (id, _, recipients, _) in &ledger.sent {
        for recipient in recipients {
            match ledger.shown.get(&(recipient.clone(), id.clone())).copied().unwrap_or(0) {
                0 => {}
                n => {
                    delivered += 1;
                    duplicates += u64::from(n - 1);
                }
            }
        }
    }
    let intended: HashSet<(String, Vec<u8>)> =
        ledger.sent.iter().flat_map(|(id, _, to, _)| to.iter().map(move |r| (r.clone(), id.clone()))).collect();
    let unintended = ledger.shown.keys().filter(|key| !intended.contains(*key)).count();

    // What one person's accounts sent, every other account of hers should show once.
    // So should the business's other devices, of what one agent's device sent.
    let people: Vec<Vec<String>> = vec![GRACE.iter().map(|a| a.to_string()).collect(), vec![HOTEL.to_owned(), HOTEL_SECOND.to_owned()]];
    let mut sync_expected = 0u64;
    let mut sync_delivered = 0u64;
    let mut sync_duplicates = 0u64;
    for (id, from, _, _) in &ledger.sent {
        for accounts in people.iter().filter(|accounts| accounts.contains(from)) {
            for other in accounts.iter().filter(|a| *a != from) {
                sync_expected += 1;
                match ledger.synced.get(&(other.clone(), id.clone())).copied().unwrap_or(0) {
                    0 => {}
                    n => {
                        sync_delivered += 1;
                        sync_duplicates += u64::from(n - 1);
                    }
                }
            }
        }
    }
    // People whose record (as each of their own devices holds it) links accounts on several apps.
    let mut people_on_several_apps = BTreeSet::new();
    for client in demo.clients.values() {
        if let Some(record) = client.person_record() {
            let apps: BTreeSet<&str> = record.accounts().iter().filter_map(|a| UserAddress::split(&a.user).ok().map(|(_, app)| app)).collect();
            if apps.len() > 1 {
                people_on_several_apps.insert(record.person_key().serialize().to_vec());
            }
        }
    }
    let cross_app_continuations: u64 = ledger.threads.values().map(|(_, changes)| changes).sum();

    // Everything each relay handled (frames after TLS, as the relay saw them) and stored (its
    // database file), searched for every plaintext sent.
    let plaintexts: Vec<&String> = ledger.sent.iter().flat_map(|(_, _, _, plain)| plain).collect();
    // A reported message is shown to the reporter's app on purpose; to no other.
    let reported_to = |app: &str, plain: &str| ledger.reported.iter().any(|(to, text)| to == app && text == plain);
    let mut relays = Vec::new();
    let mut plaintext_seen = 0u64;
    let mut crossings = 0u64;
    for (app, tap) in &federation.taps {
        let frames = tap.lock().expect("not poisoned").clone();
        let database = std::fs::read(dir.join(format!("{app}.redb"))).unwrap_or_default();
        let (metrics, state) = federation.relay(app).inspect().await.context("relay is running")?;
        crossings += metrics.envelopes_forwarded;
        let seen = plaintexts
            .iter()
            .filter(|p| !reported_to(app, p))
            .filter(|p| contains(&database, p.as_bytes()) || frames.iter().any(|f| contains(f, p.as_bytes())))
            .count() as u64;
        plaintext_seen += seen;
        let waiting: usize = state.mailboxes.values().map(|m| m.len()).sum();
        relays.push(json!({
            "app": app, "frames_handled": frames.len(), "bytes_handled": frames.iter().map(Vec::len).sum::<usize>(),
            "database_bytes": database.len(), "envelopes_stored": metrics.envelopes_stored,
            "envelopes_forwarded_to_other_apps": metrics.envelopes_forwarded, "still_waiting": waiting,
            "envelopes_dropped_for_blocks": metrics.blocked_dropped, "reports_verified": metrics.reports_verified,
            "plaintexts_found": seen,
        }));
    }
    let stats: Vec<_> = demo.clients.values().map(|c| c.stats()).collect();
    // The business as its owner's device counted it (on the device: no relay sees any of it).
    let analytics = demo.clients.get(HOTEL).and_then(ChatClient::analytics).unwrap_or_default();
    let business_agents = analytics.agents.values().filter(|agent| !agent.name.is_empty()).count() as u64;
    let summary = json!({
        "apps": APPS.len(),
        "users": USERS.len(),
        "messages_sent": ledger.sent.len(),
        "deliveries_expected": expected,
        "deliveries": delivered,
        "lost": expected - delivered,
        "duplicates": duplicates,
        "unintended_deliveries": unintended,
        "people_on_several_apps": people_on_several_apps.len(),
        "cross_app_continuations": cross_app_continuations,
        "sync_deliveries": sync_delivered,
        "sync_deliveries_expected": sync_expected,
        "sync_duplicates": sync_duplicates,
        "message_requests": ledger.requests,
        "blocked_deliveries": ledger.blocked_deliveries,
        "abuse_reports_verified": ledger.reports_verified,
        "forged_reports_refused": ledger.forged_reports_refused,
        "business_agents": business_agents,
        "business_handovers": analytics.handovers,
        "business_replies": analytics.messages_out,
        "business_agents_seen_by_customer": ledger.agents_seen,
        "duplicate_deliveries_dropped_by_clients": stats.iter().map(|s| s.duplicates).sum::<u64>(),
        "rejected_by_clients": stats.iter().map(|s| s.refused).sum::<u64>(),
        "envelopes_crossing_app_boundaries": crossings,
        "plaintext_seen_by_relays": plaintext_seen,
        "relays": relays,
    });
    if demo.print {
        for (user, view) in &ledger.views {
            println!("\n— {user} sees —");
            for line in view {
                println!("  {line}");
            }
        }
        println!("\nWhat each relay handled and stored (ciphertext only):");
        for relay in summary["relays"].as_array().into_iter().flatten() {
            println!(
                "  {:<6} {} frames, {} bytes handled; {} envelopes stored, {} forwarded to other apps, {} still waiting; {} plaintexts found",
                relay["app"].as_str().unwrap_or(""), relay["frames_handled"], relay["bytes_handled"], relay["envelopes_stored"],
                relay["envelopes_forwarded_to_other_apps"], relay["still_waiting"], relay["plaintexts_found"],
            );
        }
        println!(
            "\nGrace is one person on {} apps: the thread with her changed app {cross_app_continuations} times; {sync_delivered} of {sync_expected} copies of what she sent reached her other devices.",
            GRACE.len()
        );
        println!(
            "\nThe hotel is one account served by {business_agents} agents ({}): {} conversation(s), {} message(s) in, {} replies out, {} hand-over(s); {CUSTOMER} saw replies from {}.",
            analytics.agents.values().map(|agent| agent.name.as_str()).collect::<Vec<_>>().join(", "),
            analytics.conversations, analytics.messages_in, analytics.messages_out, analytics.handovers, ledger.agents_seen.join(" then "),
        );
        println!(
            "\n{} messages sent, {} deliveries expected, {} delivered, {} lost, {} duplicates, {} unintended; plaintext seen by relays: {}",
            summary["messages_sent"], expected, delivered, expected - delivered, duplicates, unintended, plaintext_seen
        );
    } else {
        println!("{summary}");
    }
    federation.shutdown().await;
    ensure!(delivered == expected && duplicates == 0 && unintended == 0, "delivery was not exactly once");
    ensure!(sync_delivered == sync_expected && sync_duplicates == 0, "her own devices did not each show what she sent exactly once");
    ensure!(plaintext_seen == 0, "a relay saw plaintext");
    ensure!(ledger.blocked_deliveries == 0, "a message from a blocked person was shown");
    ensure!(ledger.agents_seen == ["Ana", "Ben"], "the customer saw replies from {:?}, not Ana then Ben", ledger.agents_seen);
    ensure!(business_agents >= 2 && analytics.handovers >= 1, "the business had {business_agents} agents and {} hand-overs", analytics.handovers);
    Ok(())
}
