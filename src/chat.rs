//! `switchboard chat`: chat from a terminal as a user of one app, through that app's relay — or as
//! one person on several apps at once (`--user` and `--relay` given once per app), with one merged
//! inbox that says which app each message came through.
//!
//! Lines typed: `@user@app text` sends to a person; `#group text` to a group;
//! `/group new NAME@APP user@app,user@app` creates one (this app its hub); `/group add|remove
//! GROUP user@app`; with several accounts, `/from name@app` picks the one that sends and `/link`
//! links them all as one person; `/lookup user@app` asks which accounts someone made public;
//! `/safety user@app` shows the safety number of the two people; `/help`; `/quit`. Everything
//! that arrives is printed as it comes, once, however many of the accounts it reached.
//!
//! Each device lives in its database and is resumed on the next start; when a relay goes away
//! the chat says so, keeps what is typed in the outbox, reconnects with backoff and sends it
//! when the relay is back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use switchboard_client::{ChatClient, Event, RelayAddress};
use switchboard_session::Suite;
use switchboard_wire::address::{UserAddress, UserDevice};
use switchboard_wire::switchboard::{Text, Visibility, content};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(clap::Args)]
#[command(after_help = "Lines typed in the chat:\n  @user@app TEXT        send to a person\n  #group@app TEXT       send to a group\n  /group new NAME@APP a@x,b@y   create a group (this app its hub)\n  /group add|remove GROUP user@app\n  /from name@app        send from this one of your accounts\n  /link                 link all your accounts as one person\n  /lookup user@app      the accounts someone made public\n  /safety user@app      the safety number of you two\n  /help, /quit")]
pub struct Args {
    /// The client address of your app's relay; once per --user, in the same order (each app has
    /// its own relay).
    #[arg(long, required = true)]
    relay: Vec<SocketAddr>,
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

fn show(event: &Event, outbox: usize) -> String {
    match event {
        Event::Message { from, group, content, .. } => {
            let place = group.as_ref().map(|g| format!("#{g} ")).unwrap_or_default();
            let body = match &content.body {
                Some(content::Body::Text(t)) => t.text.clone(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            format!("{place}{}: {body}", from.name())
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
            let list = |devices: &[switchboard_session::ProtocolAddress]| devices.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
            let mut line = format!("#{group} changed by {by} (epoch {epoch})");
            if !added.is_empty() {
                line.push_str(&format!(" +{}", list(added)));
            }
            if !removed.is_empty() {
                line.push_str(&format!(" -{}", list(removed)));
            }
            line
        }
        Event::RemovedFromGroup { group } => format!("#{group}: you were removed"),
        Event::GroupForked { group, epoch, from } => format!("! #{group} forked at epoch {epoch}: {from} holds another state than yours"),
        Event::SendDropped { reason } => format!("! a message could not be sent: {reason:?}"),
        Event::Online => match outbox {
            0 => "* online".to_owned(),
            n => format!("* online: sending {n} waiting message(s)"),
        },
        Event::Offline => format!("* offline: {outbox} message(s) wait in the outbox; reconnecting"),
    }
}

/// One signed-in account: its user and its device.
struct Account {
    user: UserAddress,
    client: ChatClient,
}

/// The accounts signed in, the one that sends, and the ids of the messages shown (so that one
/// that reached several accounts shows once).
struct Inbox {
    accounts: Vec<Account>,
    from: usize,
    shown: std::collections::HashSet<[u8; 32]>,
    shown_order: std::collections::VecDeque<[u8; 32]>,
}

/// Message ids remembered for showing each once.
const SHOWN_KEPT: usize = 10_000;

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
}

async fn sign_in(args: &Args, index: usize, ca: &str) -> anyhow::Result<Account> {
    let address = args.user[index].clone();
    UserDevice::new(address.clone(), args.device).with_context(|| format!("--device {}", args.device))?;
    let relay_address = args.relay[index];
    let db = args.db.get(index).cloned().unwrap_or_else(|| PathBuf::from(format!("switchboard-{address}-{}.redb", args.device)));
    let relay = RelayAddress::new(relay_address, address.app(), ca).with_context(|| format!("--ca {}", args.ca.display()))?;
    let client = if db.exists() {
        let client = ChatClient::resume(relay, &db, rand::make_rng()).await.with_context(|| format!("resuming from {}", db.display()))?;
        println!("resumed {} (device {}) from {}", client.user(), args.device, db.display());
        if !client.is_online() {
            println!("* offline: {} message(s) wait in the outbox; reconnecting", client.outbox_len());
        }
        client
    } else {
        let client = ChatClient::register_with_database(relay, &address.to_string(), args.device, rand::make_rng(), &db)
            .await
            .with_context(|| format!("registering {address} with {relay_address}"))?;
        println!("registered {address} (device {}), kept in {}", args.device, db.display());
        client
    };
    Ok(Account { user: address, client })
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
    let mut inbox = Inbox { accounts: Vec::new(), from: 0, shown: Default::default(), shown_order: Default::default() };
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
                                if !inbox.first_time(&event) {
                                    continue;
                                }
                                let account = &inbox.accounts[index];
                                let line = show(&event, account.client.outbox_len());
                                match merged {
                                    true => println!("[{}] {line}", account.user.app()),
                                    false => println!("{line}"),
                                }
                            }
                        }
                        Err(error) => println!("! {}: {error:#}", inbox.accounts[index].user),
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

/// Carries out one typed line; returns what to print about it, if anything.
async fn command(inbox: &mut Inbox, line: &str) -> anyhow::Result<Option<String>> {
    let (head, rest) = line.split_once(' ').unwrap_or((line, ""));
    let from = inbox.from;
    let client = &mut inbox.accounts[from].client;
    if let Some(user) = head.strip_prefix('@') {
        anyhow::ensure!(!rest.trim().is_empty(), "nothing to send: @user@app TEXT");
        client.send(address("user", user)?, text(rest)).await?;
    } else if let Some(group) = head.strip_prefix('#') {
        anyhow::ensure!(!rest.trim().is_empty(), "nothing to send: #group@app TEXT");
        client.send_group(address("group", group)?, text(rest)).await?;
    } else if head == "/group" {
        let words: Vec<&str> = rest.split_whitespace().collect();
        match words.as_slice() {
            ["new", group, members @ ..] if !members.is_empty() => {
                let members: Vec<&str> = members.iter().flat_map(|m| m.split(',')).filter(|m| !m.is_empty()).map(|m| address("member", m)).collect::<Result<_, _>>()?;
                client.create_group(address("group", group)?, &members, Suite::Aes256Gcm).await?;
                return Ok(Some(format!("* created #{group} with {}", members.join(", "))));
            }
            ["add", group, user] => {
                client.add_member(address("group", group)?, address("user", user)?).await?;
                return Ok(Some(format!("* added {user} to #{group}")));
            }
            ["remove", group, user] => {
                client.remove_member(address("group", group)?, address("user", user)?).await?;
                return Ok(Some(format!("* removed {user} from #{group}")));
            }
            _ => anyhow::bail!("/group new NAME@APP a@x,b@y | /group add GROUP user | /group remove GROUP user"),
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
                    if inbox.first_time(&event) {
                        arrived.push(show(&event, 0));
                    }
                }
            }
        }
        let users: Vec<String> = inbox.accounts.iter().map(|a| a.user.to_string()).collect();
        let app = inbox.accounts[0].user.app().to_owned();
        let mut said: Vec<String> = arrived.into_iter().map(|line| format!("[{app}] {line}")).collect();
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
    } else if head == "/help" {
        return Ok(Some(HELP.to_owned()));
    } else if !head.is_empty() {
        anyhow::bail!("start a line with @user@app, #group, or a command (/help)");
    }
    Ok(None)
}

const HELP: &str = "@user@app TEXT        send to a person
#group@app TEXT       send to a group
/group new NAME@APP a@x,b@y   create a group (this app its hub)
/group add|remove GROUP user@app
/from name@app        send from this one of your accounts
/link                 link all your accounts as one person
/lookup user@app      the accounts someone made public
/safety user@app      the safety number of you two
/quit";
