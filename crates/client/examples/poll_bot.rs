//! A poll bot: a device run by this program, over the same client and the same end-to-end
//! encryption as everyone. It opens a channel on its app (or posts to one another device of an
//! admin opened), posts a poll, counts the votes followers reply with (`/vote tue`, or a poll
//! vote; one per user, the last counts) and posts the results when someone replies `/results`.
//! Direct messages to the bot take the same commands.
//!
//! ```text
//! cargo run -p switchboard-client --example poll_bot -- \
//!     --relay 127.0.0.1:7001 --ca federation/ca.pem --user pollbot@green \
//!     --channel lunch@green --question "Which day?" --options mon,tue,wed
//! ```
//!
//! Its votes are kept in memory: a bot restarted starts a new count.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use switchboard_client::bot::{PollBot, text_of};
use switchboard_client::{ChatClient, Event, RelayAddress};
use switchboard_session::Suite;

/// Runs a poll in a channel.
#[derive(Parser)]
struct Args {
    /// The bot's relay (its app's, for devices), `host:port`.
    #[arg(long)]
    relay: SocketAddr,
    /// The federation's CA certificate (PEM), which the relay's certificate must chain to.
    #[arg(long)]
    ca: PathBuf,
    /// The bot's user, `name@app`.
    #[arg(long)]
    user: String,
    /// The bot's device.
    #[arg(long, default_value_t = 1)]
    device: u32,
    /// Keep the device in this database (resumed from it when it exists).
    #[arg(long)]
    db: Option<PathBuf>,
    /// The channel, `name@app`, on the bot's app.
    #[arg(long)]
    channel: String,
    /// Post to a channel another device of one of its admins opened, instead of opening it.
    #[arg(long)]
    administer: bool,
    /// The poll's question.
    #[arg(long)]
    question: String,
    /// The poll's options, separated by commas.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    options: Vec<String>,
    /// Stop after this many seconds (runs until interrupted without it).
    #[arg(long)]
    seconds: Option<u64>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args = Args::parse();
    let options: Vec<&str> = args.options.iter().map(String::as_str).collect();
    let mut bot = PollBot::new(&args.channel, &args.question, &options)?;
    let (_, app) = args.user.split_once('@').ok_or("--user is name@app")?;
    let ca = std::fs::read_to_string(&args.ca).map_err(|error| format!("reading --ca {}: {error}", args.ca.display()))?;
    let relay = RelayAddress::new(args.relay, app, &ca)?;
    let mut client = match &args.db {
        Some(db) if db.exists() => ChatClient::resume(relay, db, rand::make_rng()).await?,
        Some(db) => ChatClient::register_with_database(relay, &args.user, args.device, rand::make_rng(), db).await?,
        None => ChatClient::register(relay, &args.user, args.device, rand::make_rng()).await?,
    };
    if args.administer {
        bot.administer(&mut client, Suite::Aes256Gcm).await?;
    } else {
        bot.open(&mut client, Suite::Aes256Gcm).await?;
    }
    let poll = bot.post_poll(&mut client).await?;
    println!("ready: {} polls #{} ({}), poll {}", client.address(), bot.channel(), bot.usage(), switchboard_client::chat::short_id(&poll));

    let stop = args.seconds.map(|seconds| tokio::time::Instant::now() + Duration::from_secs(seconds));
    loop {
        let round = bot.serve(&mut client, Duration::from_millis(200));
        let events = tokio::select! {
            events = round => events?,
            _ = tokio::signal::ctrl_c() => break,
        };
        for event in &events {
            match event {
                Event::ChannelFollower { follower, .. } => println!("follower: {follower}"),
                Event::ChannelReply { from, content, .. } => println!("reply from {}: {}", from.name(), text_of(content).unwrap_or("(a poll vote)")),
                Event::Message { from, content, .. } => println!("message from {}: {}", from.name(), text_of(content).unwrap_or("(not text)")),
                Event::Offline => println!("offline: reconnecting"),
                Event::Online => println!("online"),
                _ => {}
            }
        }
        if !events.is_empty() {
            println!("{}", bot.results());
        }
        if stop.is_some_and(|stop| tokio::time::Instant::now() >= stop) {
            break;
        }
    }
    println!("final: {}", bot.results());
    Ok(())
}
