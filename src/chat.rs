//! `switchboard chat`: chat from a terminal as a user of one app, through that app's relay.
//!
//! Lines typed: `@user@app text` sends to a person; `#group text` to a group;
//! `/group new NAME@APP user@app,user@app` creates one (this app its hub); `/group add|remove
//! GROUP user@app`; `/quit`. Everything that arrives is printed as it comes.
//!
//! The device lives in its database and is resumed on the next start; when the relay goes away
//! the chat says so, keeps what is typed in the outbox, reconnects with backoff and sends it
//! when the relay is back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use switchboard_client::{ChatClient, Event, RelayAddress};
use switchboard_session::Suite;
use switchboard_wire::address::{UserAddress, UserDevice};
use switchboard_wire::switchboard::{Text, content};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(clap::Args)]
pub struct Args {
    /// The client address of your app's relay.
    #[arg(long)]
    relay: SocketAddr,
    /// The certificate authority that issued your relay's certificate (`switchboard setup`
    /// writes it as `ca.pem`): the chat talks only to a relay whose certificate it issued for
    /// your app's name, over TLS.
    #[arg(long)]
    ca: PathBuf,
    /// Who you are: `name@app`.
    #[arg(long)]
    user: UserAddress,
    /// Your device id.
    #[arg(long, default_value_t = 1)]
    device: u32,
    /// The device's database (created 0600 on first use, resumed after): its keys, sessions,
    /// groups, credential and outbox. Default: `switchboard-<user>-<device>.redb` here.
    #[arg(long)]
    db: Option<PathBuf>,
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

async fn chat(args: Args) -> anyhow::Result<()> {
    UserDevice::new(args.user.clone(), args.device).with_context(|| format!("--device {}", args.device))?;
    let address = args.user.clone();
    let db = args.db.clone().unwrap_or_else(|| PathBuf::from(format!("switchboard-{address}-{}.redb", args.device)));
    let ca = std::fs::read_to_string(&args.ca).with_context(|| format!("reading --ca {}", args.ca.display()))?;
    let relay = RelayAddress::new(args.relay, address.app(), &ca).with_context(|| format!("--ca {}", args.ca.display()))?;
    let mut client = if db.exists() {
        let client = ChatClient::resume(relay, &db, rand::make_rng()).await.with_context(|| format!("resuming from {}", db.display()))?;
        println!("resumed {} (device {}) from {}", client.user(), args.device, db.display());
        if !client.is_online() {
            println!("* offline: {} message(s) wait in the outbox; reconnecting", client.outbox_len());
        }
        client
    } else {
        let client = ChatClient::register_with_database(relay, &address.to_string(), args.device, rand::make_rng(), &db)
            .await
            .with_context(|| format!("registering {address} with {}", args.relay))?;
        println!("registered {address} (device {}), kept in {}", args.device, db.display());
        client
    };
    println!("type @user@app message, #group message, /group …, /quit");
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
                if let Err(error) = command(&mut client, line).await {
                    println!("! {error:#}");
                } else if !client.is_online() && client.outbox_len() > 0 {
                    println!("* offline: {} message(s) wait in the outbox", client.outbox_len());
                }
            }
            _ = tick.tick() => {
                let events = client.poll(Duration::from_millis(50)).await;
                match events {
                    Ok(events) => {
                        for event in events {
                            println!("{}", show(&event, client.outbox_len()));
                        }
                    }
                    Err(error) => println!("! {error:#}"),
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

async fn command(client: &mut ChatClient, line: &str) -> anyhow::Result<()> {
    let (head, rest) = line.split_once(' ').unwrap_or((line, ""));
    if let Some(user) = head.strip_prefix('@') {
        client.send(address("user", user)?, text(rest)).await?;
    } else if let Some(group) = head.strip_prefix('#') {
        client.send_group(address("group", group)?, text(rest)).await?;
    } else if head == "/group" {
        let words: Vec<&str> = rest.split_whitespace().collect();
        match words.as_slice() {
            ["new", group, members] => {
                let members: Vec<&str> = members.split(',').map(|m| address("member", m)).collect::<Result<_, _>>()?;
                client.create_group(address("group", group)?, &members, Suite::Aes256Gcm).await?;
            }
            ["add", group, user] => client.add_member(address("group", group)?, address("user", user)?).await?,
            ["remove", group, user] => client.remove_member(address("group", group)?, address("user", user)?).await?,
            _ => anyhow::bail!("/group new NAME@APP a@x,b@y | /group add GROUP user | /group remove GROUP user"),
        }
    } else if !head.is_empty() {
        anyhow::bail!("start a line with @user@app, #group or /group");
    }
    Ok(())
}
