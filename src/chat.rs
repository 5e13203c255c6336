//! `switchboard chat`: chat from a terminal as a user of one app, through that app's relay.
//!
//! Lines typed: `@user@app text` sends to a person; `#group text` to a group;
//! `/group new NAME@APP user@app,user@app` creates one (this app its hub); `/group add|remove
//! GROUP user@app`; `/quit`. Everything that arrives is printed as it comes.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use switchboard_client::{ChatClient, Event};
use switchboard_session::Suite;
use switchboard_wire::address::{UserAddress, UserDevice};
use switchboard_wire::switchboard::{Text, content};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(clap::Args)]
pub struct Args {
    /// The client address of your app's relay.
    #[arg(long)]
    relay: SocketAddr,
    /// Who you are: `name@app` (a new device is registered for you).
    #[arg(long)]
    user: UserAddress,
    /// Your device id.
    #[arg(long, default_value_t = 1)]
    device: u32,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(chat(args))
}

fn show(event: &Event) -> String {
    match event {
        Event::Message { from, group, content } => {
            let place = group.as_ref().map(|g| format!("#{g} ")).unwrap_or_default();
            let body = match &content.body {
                Some(content::Body::Text(t)) => t.text.clone(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            format!("{place}{}: {body}", from.name())
        }
        Event::GroupChanged { group, epoch } => format!("#{group} changed (epoch {epoch})"),
        Event::RemovedFromGroup { group } => format!("#{group}: you were removed"),
    }
}

async fn chat(args: Args) -> anyhow::Result<()> {
    UserDevice::new(args.user.clone(), args.device).with_context(|| format!("--device {}", args.device))?;
    let mut client = ChatClient::register(args.relay, args.user.as_str(), args.device, rand::make_rng())
        .await
        .with_context(|| format!("registering {} with {}", args.user, args.relay))?;
    println!("registered {} (device {}); type @user@app message, #group message, /group …, /quit", args.user, args.device);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { return Ok(()) };
                if let Err(error) = command(&mut client, line.trim()).await {
                    println!("! {error:#}");
                }
                if line.trim() == "/quit" {
                    return Ok(());
                }
            }
            _ = tick.tick() => {
                for event in client.poll(Duration::from_millis(50)).await.unwrap_or_default() {
                    println!("{}", show(&event));
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
    } else if head != "/quit" && !head.is_empty() {
        anyhow::bail!("start a line with @user@app, #group or /group");
    }
    Ok(())
}
