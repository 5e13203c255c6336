//! `switchboard chat`: chat from a terminal as a user of one app, through that app's relay — or as
//! one person on several apps at once (`--user` and `--relay` given once per app), with one merged
//! inbox that says which app each message came through.
//!
//! Lines typed: `@user@app text` sends to a person; `#group text` to a group (`#name` alone
//! when only one of your groups has that name); `/group new NAME user@app user@app …` creates
//! one (this app its hub; members by spaces or commas); `/group add|remove GROUP user@app`; with several accounts, `/from name@app` picks the one that sends and `/link`
//! links them all as one person; `/lookup user@app` asks which accounts someone made public;
//! `/safety user@app` shows the safety number of the two people; `/help`; `/quit`. Everything
//! that arrives is printed as it comes, once, however many of the accounts it reached.
//!
//! A message from someone you have no conversation with is a request: it is followed by a line
//! `[request ID]` naming what to do with it. `/accept user@app` takes them in, `/decline
//! user@app` stops showing their requests here (they are not told), `/block user@app` and
//! `/unblock user@app` block or unblock every account of theirs you know, on every account
//! signed in here; `/report ID` reports a received message to your app, which checks with its
//! sender's app that it sent exactly that (`/report` alone lists the messages you can report).
//!
//! Each device lives in its database and is resumed on the next start; when a relay goes away
//! the chat says so, keeps what is typed in the outbox, reconnects with backoff and sends it
//! when the relay is back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use switchboard_client::chat::{REPORTABLE_KEPT, drop_reason, short_id};
use switchboard_client::endpoint::RequestFailed;
use switchboard_client::persist::DeviceDatabase;
use switchboard_client::{ChatClient, ChatError, Event, RelayAddress};
use switchboard_session::Suite;
use switchboard_wire::address::{UserAddress, UserDevice};
use switchboard_wire::message_id::MessageId;
use switchboard_wire::switchboard::{ErrorCode, Text, Visibility, content};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(clap::Args)]
#[command(after_help = format!("Lines typed in the chat (also /help):\n\n{HELP}"))]
pub struct Args {
    /// The client address of your app's relay; once per --user, in the same order (each app has
    /// its own relay). A relay of several nodes (one active, the others standbys or front
    /// nodes): the address of each, comma-separated, tried in turn.
    #[arg(long, required = true, value_parser = relay_nodes)]
    relay: Vec<RelayNodes>,
    /// The certificate authority that issued your relay's certificate (`switchboard setup`
    /// writes it as `ca.pem`): the chat talks only to a relay whose certificate it issued for
    /// your app's name, over TLS.
    #[arg(long)]
    ca: PathBuf,
    /// Who you are: `name@app`. Give it once per app you use to sign in to all of them at once:
    /// one person on several apps, one inbox.
    #[arg(long, required = true)]
    user: Vec<UserAddress>,
    /// Your device id (on every app).
    #[arg(long, default_value_t = 1)]
    device: u32,
    /// The device's database (created 0600 on first use, resumed after): its keys, sessions,
    /// groups, credential and outbox; once per --user. Default: `switchboard-<user>-<device>.redb`
    /// here.
    #[arg(long)]
    db: Vec<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(chat(args))
}

/// A content's body as a line shows it.
fn body(content: &switchboard_wire::switchboard::Content) -> String {
    match &content.body {
        Some(content::Body::Text(t)) => t.text.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// The users of `devices`, each once, in order.
fn users<'a>(devices: impl Iterator<Item = &'a switchboard_session::ProtocolAddress>) -> String {
    let mut names: Vec<&str> = Vec::new();
    for device in devices {
        if !names.contains(&device.name()) {
            names.push(device.name());
        }
    }
    names.join(", ")
}

fn show(event: &Event, client: &ChatClient) -> String {
    let outbox = client.outbox_len();
    match event {
        Event::Message { from, group, content, agent, .. } => {
            let place = group.as_ref().map(|g| format!("#{g} ")).unwrap_or_default();
            let agent = agent.as_ref().map(|agent| format!(" ({agent})")).unwrap_or_default();
            format!("{place}{}{agent}: {}", from.name(), body(content))
        }
        Event::ChannelPost { channel, from, content, .. } => format!("#{channel} {}: {}", from.name(), body(content)),
        Event::ChannelReply { channel, from, content } => format!("#{channel} reply from {}: {}", from.name(), body(content)),
        Event::ChannelFollower { channel, follower } => format!("* #{channel}: {follower} follows"),
        Event::AgentsChanged { listed } => format!("* the business's agents changed{}", if *listed { "" } else { " (this device serves none)" }),
        Event::Assigned { customer, agent_device, handover } => {
            format!("* the conversation with {customer} {} device {agent_device}", if *handover { "was handed over to" } else { "was assigned to" })
        }
        Event::Synced { from, to, group, carried_by, content, .. } => {
            let place = group.as_ref().map(|g| format!("#{g} ")).or_else(|| to.as_ref().map(|to| format!("→ {to} "))).unwrap_or_default();
            let body = match &content.body {
                Some(content::Body::Text(t)) => t.text.clone(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            format!("{place}{}: {body} (via {carried_by})", from.name())
        }
        Event::GroupChanged { group, epoch, by, added, removed } => {
            let by = by.name();
            let mut said = Vec::new();
            if *epoch == 0 {
                let others = added.iter().filter(|member| member.name() != by);
                said.push(format!("created by {by} with {}", users(others)));
            } else if !added.is_empty() {
                said.push(format!("{by} added {}", users(added.iter())));
            }
            if !removed.is_empty() {
                said.push(format!("{by} removed {}", users(removed.iter())));
            }
            if said.is_empty() {
                said.push(format!("changed by {by}"));
            }
            format!("* #{group}: {} (epoch {epoch})", said.join("; "))
        }
        Event::RemovedFromGroup { group } => match client.removed_by(group).map(|admins| users(admins.iter())) {
            Some(admins) if !admins.is_empty() && !admins.contains(", ") => format!("* #{group}: {admins} removed you"),
            Some(admins) if !admins.is_empty() => format!("* #{group}: one of its admins ({admins}) removed you"),
            _ => format!("* #{group}: an admin removed you"),
        },
        Event::GroupForked { group, epoch, from } => format!("! #{group} forked at epoch {epoch}: {from} holds another state than yours"),
        Event::SendDropped { reason } => format!("! not sent: {}", drop_reason(reason)),
        Event::Online => match outbox {
            0 => "* online".to_owned(),
            n => format!("* online: sending {n} waiting message(s)"),
        },
        Event::Offline => format!("* offline: {outbox} message(s) wait in the outbox; reconnecting"),
        Event::NotTheRelay { address } => format!(
            "! {address} answered with a certificate that is not your relay's (a changed setup, or someone in the way): nothing was sent to it; still trying"
        ),
    }
}

/// One signed-in account: its user and its device.
struct Account {
    user: UserAddress,
    client: ChatClient,
}

/// The accounts signed in, the one that sends, the ids of the messages shown (so that one
/// that reached several accounts shows once), the messages that can be reported, and the users
/// whose requests are not shown.
struct Inbox {
    accounts: Vec<Account>,
    from: usize,
    shown: std::collections::HashSet<[u8; 32]>,
    shown_order: std::collections::VecDeque<[u8; 32]>,
    recent: std::collections::VecDeque<Reportable>,
    declined: std::collections::BTreeSet<String>,
}

/// A message shown that its account keeps to report.
struct Reportable {
    id: MessageId,
    account: usize,
    from: String,
    request: bool,
    line: String,
}

/// Message ids remembered for showing each once.
const SHOWN_KEPT: usize = 10_000;
/// Users whose requests `/decline` hides, at most.
const DECLINED_KEPT: usize = 1_000;
/// Messages `/report` alone lists.
const REPORT_LISTED: usize = 10;
/// Hex digits of a message id `/report` needs, at least.
const REPORT_ID_MIN: usize = 4;

impl Inbox {
    /// Whether `event` is new to this inbox (a message already shown through another account is
    /// not).
    fn first_time(&mut self, event: &Event) -> bool {
        let id = match event {
            Event::Message { id: Some(id), .. } | Event::Synced { id: Some(id), .. } => *id,
            _ => return true,
        };
        if !self.shown.insert(id) {
            return false;
        }
        self.shown_order.push_back(id);
        if self.shown_order.len() > SHOWN_KEPT {
            let oldest = self.shown_order.pop_front().expect("over the bound");
            self.shown.remove(&oldest);
        }
        true
    }

    /// What to print of `event`, which came through account `index`: nothing for a message
    /// shown already or a request from a user declined; a request with a line saying so. Every
    /// line starts with the account's app when several are signed in.
    fn present(&mut self, index: usize, event: &Event) -> Option<String> {
        if !self.first_time(event) {
            return None;
        }
        let client = &self.accounts[index].client;
        let mut lines = vec![show(event, client)];
        if let Event::Message { from, id: Some(id), .. } = event
            && let Some(received) = client.received(id)
        {
            let (user, request) = (from.name().to_owned(), received.request);
            if request && self.is_declined(&user) {
                return None;
            }
            let short = short_id(id);
            if request {
                lines.push(format!("  [request {short}] from {user}: /accept {user}, /decline {user} or /block {user} (/report {short} reports it)"));
            }
            self.recent.push_back(Reportable { id: *id, account: index, from: user, request, line: lines[0].clone() });
            if self.recent.len() > REPORTABLE_KEPT {
                self.recent.pop_front();
            }
        }
        if self.accounts.len() > 1 {
            let app = self.accounts[index].user.app();
            lines = lines.into_iter().map(|line| format!("[{app}] {line}")).collect();
        }
        Some(lines.join("\n"))
    }

    /// `user` and every other account of the person behind it that an account here knows.
    fn person_accounts(&self, user: &str) -> Vec<String> {
        let mut accounts = vec![user.to_owned()];
        for account in &self.accounts {
            if let Some(record) = account.client.person_of(user) {
                accounts.extend(record.accounts().iter().map(|account| account.user.clone()));
            }
        }
        accounts.sort();
        accounts.dedup();
        accounts
    }

    /// Whether the person behind `user` was declined (on any account of theirs known here).
    fn is_declined(&self, user: &str) -> bool {
        self.person_accounts(user).iter().any(|account| self.declined.contains(account))
    }

    /// The message shown whose id starts with the hex digits `prefix`: exactly one.
    fn reportable(&self, prefix: &str) -> anyhow::Result<&Reportable> {
        let prefix = prefix.to_ascii_lowercase();
        anyhow::ensure!(
            prefix.len() >= REPORT_ID_MIN && prefix.bytes().all(|b| b.is_ascii_hexdigit()),
            "/report ID: the id shown with the message (at least {REPORT_ID_MIN} hex digits); /report alone lists them"
        );
        let mut found = self.recent.iter().filter(|shown| hex(&shown.id).starts_with(&prefix));
        let first = found.next().with_context(|| format!("no message {prefix} to report here (/report lists them)"))?;
        anyhow::ensure!(found.all(|other| other.id == first.id), "more than one message starts with {prefix}: give more of its id");
        Ok(first)
    }
}

/// A message id in hex.
fn hex(id: &MessageId) -> String {
    id.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// One app's relay as `--relay` gives it: the client address of each of its nodes.
#[derive(Clone, Debug)]
struct RelayNodes(Vec<SocketAddr>);

impl std::fmt::Display for RelayNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<String> = self.0.iter().map(SocketAddr::to_string).collect();
        f.write_str(&nodes.join(","))
    }
}

/// `host:port[,host:port…]`.
fn relay_nodes(value: &str) -> Result<RelayNodes, String> {
    value.split(',').map(|node| node.trim().parse::<SocketAddr>().map_err(|error| format!("{node:?}: {error}"))).collect::<Result<_, _>>().map(RelayNodes)
}

async fn sign_in(args: &Args, index: usize, ca: &str) -> anyhow::Result<Account> {
    let address = args.user[index].clone();
    UserDevice::new(address.clone(), args.device).with_context(|| format!("--device {}", args.device))?;
    let relay_address = &args.relay[index];
    let db = args.db.get(index).cloned().unwrap_or_else(|| PathBuf::from(format!("switchboard-{address}-{}.redb", args.device)));
    let relay = RelayAddress::with_addresses(&relay_address.0, address.app(), ca).with_context(|| format!("--ca {}", args.ca.display()))?;
    let client = if db.exists() {
        // The device kept there must be the one asked for (a --db of another user's, or of this
        // user on another app, would run as that device).
        let kept = DeviceDatabase::open(&db).and_then(|database| database.address()).with_context(|| format!("--db {}", db.display()))?;
        anyhow::ensure!(
            kept.name() == address.as_str() && kept.device_id() == args.device,
            "--db {} holds device {} of {}, not device {} of {address}: give --user and --device that match, or another --db",
            db.display(),
            kept.device_id(),
            kept.name(),
            args.device
        );
        let client = ChatClient::resume(relay, &db, rand::make_rng()).await.with_context(|| format!("resuming from {}", db.display()))?;
        println!("resumed {} (device {}) from {}", client.user(), args.device, db.display());
        if !client.is_online() {
            println!("* offline: {} message(s) wait in the outbox; reconnecting", client.outbox_len());
        }
        client
    } else {
        let registered = ChatClient::register_with_database(relay, &address.to_string(), args.device, rand::make_rng(), &db).await;
        let client = match registered {
            Ok(client) => client,
            Err(error) => {
                // A database made for a device no relay took would be resumed next time as if it
                // had been: it goes, and the next start registers afresh. One that holds the
                // relay's credential (the registration went through, what came after failed) is
                // the device's only way back in: it stays, and the next start resumes it.
                let context = format!("registering {address} with {relay_address}");
                if holds_credential(&db) {
                    return Err(anyhow::Error::from(error)
                        .context(format!("{context} (the relay took the device: start again to resume it from {})", db.display())));
                }
                let _ = std::fs::remove_file(&db);
                return Err(anyhow::Error::from(error).context(context));
            }
        };
        println!("registered {address} (device {}), kept in {}", args.device, db.display());
        client
    };
    Ok(Account { user: address, client })
}

/// Whether the device database at `path` holds a relay credential (its registration was taken).
fn holds_credential(path: &std::path::Path) -> bool {
    let mut rng = rand::make_rng();
    DeviceDatabase::open(path)
        .and_then(|database| database.load(switchboard_client::endpoint::EndpointConfig::default(), &mut rng))
        .is_ok_and(|endpoint| endpoint.credential().is_some())
}

async fn chat(args: Args) -> anyhow::Result<()> {
    if args.relay.len() != args.user.len() || !(args.db.is_empty() || args.db.len() == args.user.len()) {
        anyhow::bail!("give --relay (and --db, if any) once per --user, in the same order");
    }
    let mut apps = std::collections::BTreeSet::new();
    if let Some(user) = args.user.iter().find(|user| !apps.insert(user.app().to_owned())) {
        anyhow::bail!("--user {user}: one account per app");
    }
    let ca = std::fs::read_to_string(&args.ca).with_context(|| format!("reading --ca {}", args.ca.display()))?;
    let mut inbox = Inbox {
        accounts: Vec::new(),
        from: 0,
        shown: Default::default(),
        shown_order: Default::default(),
        recent: Default::default(),
        declined: Default::default(),
    };
    for index in 0..args.user.len() {
        inbox.accounts.push(sign_in(&args, index, &ca).await?);
    }
    let merged = inbox.accounts.len() > 1;
    if merged {
        let users: Vec<String> = inbox.accounts.iter().map(|a| a.user.to_string()).collect();
        println!("one inbox for {}; sending from {} (/from to change, /link to link them as one person)", users.join(", "), users[0]);
    }
    println!("type @user@app message, #group message, /group …, /help, /quit");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { return Ok(()) };
                let line = line.trim();
                if line == "/quit" {
                    return Ok(());
                }
                match command(&mut inbox, line).await {
                    Err(error) => println!("! {error:#}"),
                    Ok(Some(said)) => println!("{said}"),
                    Ok(None) => {
                        let client = &inbox.accounts[inbox.from].client;
                        if !client.is_online() && client.outbox_len() > 0 {
                            println!("* offline: {} message(s) wait in the outbox", client.outbox_len());
                        }
                    }
                }
            }
            _ = tick.tick() => {
                for index in 0..inbox.accounts.len() {
                    let events = inbox.accounts[index].client.poll(Duration::from_millis(50)).await;
                    match events {
                        Ok(events) => {
                            for event in events {
                                if let Some(lines) = inbox.present(index, &event) {
                                    println!("{lines}");
                                }
                            }
                        }
                        Err(error) => println!("! {}: {:#}", inbox.accounts[index].user, anyhow::Error::from(error)),
                    }
                }
            }
        }
    }
}

fn text(s: &str) -> content::Body {
    content::Body::Text(Text { text: s.to_owned() })
}

/// `text` as `name@app` (a user, or a group: its id is `name@hub-app`), or why not.
fn address<'a>(what: &str, text: &'a str) -> anyhow::Result<&'a str> {
    UserAddress::split(text).with_context(|| format!("{what} {text:?}"))?;
    Ok(text)
}

/// What to say once a send to `to` returned: taken by the relay, or waiting in the outbox.
fn sent(client: &ChatClient, to: &str) -> String {
    match (client.is_online(), client.outbox_len()) {
        (true, 0) => format!("* sent to {to}"),
        (true, waiting) => format!("* queued for {to}: {waiting} message(s) wait to go (their keys, or the relay, are on their way)"),
        (false, waiting) => format!("* offline: queued for {to}; {waiting} message(s) wait in the outbox"),
    }
}

/// A group `text` names: its id (`name@app`), or a name alone that only one of `client`'s groups
/// has.
fn group_named(client: &ChatClient, text: &str) -> anyhow::Result<String> {
    if text.contains('@') {
        return address("group", text).map(str::to_owned);
    }
    anyhow::ensure!(!text.is_empty(), "name a group: #name TEXT (your groups: /groups)");
    let groups = client.groups();
    let matching: Vec<&str> = groups.iter().copied().filter(|group| group.split('@').next() == Some(text)).collect();
    match matching.as_slice() {
        [group] => Ok((*group).to_owned()),
        [] if groups.is_empty() => anyhow::bail!("you are in no group named {text:?} (you are in none: /group new NAME USER … makes one)"),
        [] => anyhow::bail!("you are in no group named {text:?}; your groups: {}", groups.join(", ")),
        several => anyhow::bail!("several of your groups are named {text:?}: {}; say which (#name@app)", several.join(", ")),
    }
}

/// Carries out one typed line; returns what to print about it, if anything.
async fn command(inbox: &mut Inbox, line: &str) -> anyhow::Result<Option<String>> {
    let (head, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    let from = inbox.from;
    let app = inbox.accounts[from].user.app().to_owned();
    let client = &mut inbox.accounts[from].client;
    if let Some(user) = head.strip_prefix('@') {
        let user = address("user", user)?;
        anyhow::ensure!(!rest.is_empty(), "nothing to send: @{user} TEXT");
        client.send(user, text(rest)).await?;
        return Ok(Some(sent(client, user)));
    } else if let Some(group) = head.strip_prefix('#') {
        let group = group_named(client, group)?;
        anyhow::ensure!(!rest.is_empty(), "nothing to send: #{group} TEXT");
        client.send_group(&group, text(rest)).await?;
        return Ok(Some(sent(client, &format!("#{group}"))));
    } else if head == "/groups" {
        let groups = client.groups();
        anyhow::ensure!(!groups.is_empty(), "you are in no group (/group new NAME USER … makes one)");
        let listed: Vec<String> = groups
            .iter()
            .map(|id| {
                let members = client.group(id).map(|group| users(group.members().iter())).unwrap_or_default();
                format!("  #{id}: {members}")
            })
            .collect();
        return Ok(Some(format!("* your groups:\n{}", listed.join("\n"))));
    } else if head == "/group" {
        const USAGE: &str = "/group new NAME USER USER … | /group add GROUP USER | /group remove GROUP USER (/help)";
        let words: Vec<&str> = rest.split(|c: char| c.is_whitespace() || c == ',').filter(|word| !word.is_empty()).collect();
        match words.as_slice() {
            ["new", group, members @ ..] => {
                anyhow::ensure!(!members.is_empty(), "/group new {group} USER …: name at least one member (user@app)");
                // A name alone: this app is its hub.
                let group = if group.contains('@') { address("group", group)?.to_owned() } else { format!("{group}@{app}") };
                address("group", &group)?;
                let members: Vec<&str> = members.iter().map(|member| address("member", member)).collect::<Result<_, _>>()?;
                client.create_group(&group, &members, Suite::Aes256Gcm).await.with_context(|| format!("creating #{group}"))?;
                return Ok(Some(format!("* created #{group} with {} (you are its admin)", members.join(", "))));
            }
            ["add", group, user] => {
                let group = group_named(client, group)?;
                client.add_member(&group, address("user", user)?).await.with_context(|| format!("adding {user} to #{group}"))?;
                return Ok(Some(format!("* added {user} to #{group}")));
            }
            ["remove", group, user] => {
                let group = group_named(client, group)?;
                client.remove_member(&group, address("user", user)?).await.with_context(|| format!("removing {user} from #{group}"))?;
                return Ok(Some(format!("* removed {user} from #{group}")));
            }
            _ => anyhow::bail!(USAGE),
        }
    } else if head == "/from" {
        let user = address("account", rest.trim())?;
        let index = inbox.accounts.iter().position(|a| a.user.as_str() == user).with_context(|| format!("{user} is not signed in here"))?;
        inbox.from = index;
        return Ok(Some(format!("* sending from {user}")));
    } else if head == "/link" {
        anyhow::ensure!(inbox.accounts.len() > 1, "sign in with --user once per app to link your accounts");
        if inbox.accounts[0].client.person_record().is_none() {
            inbox.accounts[0].client.become_person(Visibility::Public).await?;
        }
        let mut arrived: Vec<String> = Vec::new();
        let key = |account: &Account| account.client.person_record().map(|record| *record.person_key());
        let person = key(&inbox.accounts[0]);
        // Each account joins with an invitation from the first (the same phone: the code never
        // leaves this process), shown to contacts, once the joins before it reached the first.
        for index in 1..inbox.accounts.len() {
            match key(&inbox.accounts[index]) {
                Some(theirs) if Some(theirs) == person => continue,
                Some(_) => anyhow::bail!("{} already belongs to another person", inbox.accounts[index].user),
                None => {}
            }
            let invitation = inbox.accounts[0].client.person_invitation().context("the first account is a person")?;
            inbox.accounts[index].client.join_person(&invitation, Visibility::Contacts).await?;
            for _ in 0..20 {
                let joined = inbox.accounts[index].client.person_record().map(|record| record.version());
                if inbox.accounts[0].client.person_record().map(|record| record.version()) >= joined {
                    break;
                }
                for event in inbox.accounts[0].client.poll(Duration::from_millis(100)).await? {
                    arrived.extend(inbox.present(0, &event));
                }
            }
        }
        let users: Vec<String> = inbox.accounts.iter().map(|a| a.user.to_string()).collect();
        let mut said = arrived;
        said.push(format!("* linked {} as one person", users.join(", ")));
        return Ok(Some(said.join("\n")));
    } else if head == "/lookup" {
        let user = address("user", rest.trim())?;
        let accounts = client.lookup_person(user).await?;
        return Ok(Some(format!("* {user} is one person with {}", accounts.join(", "))));
    } else if head == "/safety" {
        let user = address("user", rest.trim())?;
        let number = client.person_safety_number(user).context("no safety number: link your accounts (/link), and hear from that person first")?;
        let groups: Vec<&str> = number.as_bytes().chunks(5).map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
        return Ok(Some(format!("* safety number with {user}'s person: {}", groups.join(" "))));
    } else if let Some(said) = consent(inbox, head, rest.trim()).await? {
        return Ok(Some(said));
    } else if head == "/help" {
        return Ok(Some(HELP.to_owned()));
    } else if !head.is_empty() {
        anyhow::bail!("start a line with @user@app, #group, or a command (/help)");
    }
    Ok(None)
}

/// Carries out `/accept`, `/decline`, `/block`, `/unblock` and `/report` (on every account signed
/// in, but a report: on the one the message came through); `None` for another command.
async fn consent(inbox: &mut Inbox, head: &str, rest: &str) -> anyhow::Result<Option<String>> {
    let said = match head {
        "/accept" => {
            let user = address("user", rest)?;
            for account in &mut inbox.accounts {
                account.client.accept(user).await?;
            }
            for account in inbox.person_accounts(user) {
                inbox.declined.remove(&account);
            }
            format!("* accepted {user}: their messages are no longer requests")
        }
        "/decline" => {
            let user = address("user", rest)?;
            anyhow::ensure!(inbox.declined.len() < DECLINED_KEPT, "too many declined already: /block {user} instead");
            inbox.declined.insert(user.to_owned());
            let accounts = inbox.person_accounts(user);
            inbox.recent.retain(|shown| !(shown.request && accounts.contains(&shown.from)));
            format!("* declined {user}: their requests are no longer shown here (they are not told; /accept {user} to see them again)")
        }
        "/block" => {
            let user = address("user", rest)?;
            for account in &mut inbox.accounts {
                account.client.block(user).await?;
            }
            format!("* blocked {user}: nothing from them, on any account of theirs you know, reaches you (they are not told)")
        }
        "/unblock" => {
            let user = address("user", rest)?;
            for account in &mut inbox.accounts {
                account.client.unblock(user).await?;
            }
            format!("* unblocked {user}")
        }
        "/report" if rest.is_empty() => {
            let listed: Vec<String> = inbox.recent.iter().rev().take(REPORT_LISTED).map(|shown| format!("  {}  {}", short_id(&shown.id), shown.line)).collect();
            anyhow::ensure!(!listed.is_empty(), "no received message to report yet");
            format!("* messages you can report (/report ID), newest first:\n{}", listed.join("\n"))
        }
        "/report" => {
            let shown = inbox.reportable(rest)?;
            let (id, account, from) = (shown.id, shown.account, shown.from.clone());
            let short = short_id(&id);
            match inbox.accounts[account].client.report(&id).await {
                Ok(()) => format!("* report of {short} verified: {from}'s app confirmed they sent exactly this; your app keeps the report"),
                Err(ChatError::Request(RequestFailed::Refused(ErrorCode::Forbidden))) => {
                    anyhow::bail!("report of {short} refused: {from}'s app did not confirm this message")
                }
                Err(error) => return Err(anyhow::Error::from(error).context(format!("report of {short}"))),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(said))
}

/// What `/help` prints, and `chat --help` after the options: every line the chat understands.
const HELP: &str = "\
@user@app TEXT                  send TEXT to a person (every device of theirs)
#group TEXT                     send TEXT to a group: its id (name@app), or its name alone if no
                                other group of yours has it
/group new NAME USER USER ...   create a group with these members (user@app, by spaces or commas),
                                this app its hub: NAME becomes NAME@thisapp
/group add GROUP USER           add a member (you must be an admin)
/group remove GROUP USER        remove a member (every device of theirs)
/groups                         the groups you are in
/from name@app                  send from this one of your accounts (several --user)
/link                           link all your accounts as one person
/lookup user@app                the accounts someone made public
/safety user@app                the safety number of you two
/accept user@app                take in their message requests
/decline user@app               stop showing their requests here (they are not told)
/block user@app                 nothing from them (any account of theirs you know) reaches you
/unblock user@app               let them reach you again
/report ID                      report a received message to your app (/report alone lists them)
/help                           this list
/quit                           leave (end of input too); the device and its outbox stay in --db

Lines the chat prints: `* …` says what happened (a send taken by the relay, a group change),
`! …` what went wrong, `#group@app user@app: text` a group message, `user@app: text` a message.";

