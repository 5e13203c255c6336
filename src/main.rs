//! `switchboard`: the command-line entry point. Each subcommand lives in a module of its own.

mod chat;
mod conformance;
mod demo;
mod peer;
mod relay;
mod sim;

use clap::{Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Switchboard: an end-to-end encryption interop layer between messaging apps.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs three apps, each with its own relay, and their users' conversations (one to one, a
    /// group across apps, a person on several apps, a business), and prints what each saw.
    Demo(demo::Args),
    /// Serves the peer protocol (JSON lines on stdin/stdout) over this project's sessions.
    Peer(peer::Args),
    /// Plays randomized, seeded conversations between two peers and checks every outcome.
    Conformance(conformance::Args),
    /// Runs one app's relay as its own process.
    Relay(relay::RelayArgs),
    /// Writes a federation's CA, certificates, keys and relay configuration files.
    Setup(relay::SetupArgs),
    /// Chats from the terminal as a user of one app.
    Chat(chat::Args),
    /// Runs a simulator scenario: the client and relay cores over a virtual network, with
    /// faults and attacks, and every invariant checked.
    Sim(sim::Args),
}

/// mimalloc rather than the C library's allocator: relays and the simulator allocate per envelope
/// and hold large heaps, and mimalloc keeps objects of one size together (see BENCHMARKS.md, "The
/// simulator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Lets the allocator back its memory with 2 MiB pages where the kernel allows it. For the
/// simulator: it holds every simulated device's state (about 0.9 GB at scale) and reads it in
/// no order a cache could follow, so with 4 KiB pages most reads also miss the TLB.
#[allow(unsafe_code)]
fn prefer_huge_pages() {
    // SAFETY: sets one of mimalloc's documented options to a valid value; takes no pointers.
    unsafe { libmimalloc_sys::mi_option_set(libmimalloc_sys::mi_option_large_os_pages, 1) }
}

/// Keeps the kernel from backing this process with transparent 2 MiB pages. For a relay: mimalloc
/// hands freed memory back to the kernel within about a second, and a relay's per-envelope
/// allocations then fault it in again, each fault zeroing a whole 2 MiB page (a quarter of the
/// relay benchmark's CPU; see docs/PERFORMANCE_HISTORY.md, "Relays", "Profiled"). Only faults
/// after the call are affected.
#[allow(unsafe_code)]
fn avoid_huge_pages() {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments only and changes no memory;
    // on a kernel without it the call fails and nothing changes.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(code) => code,
        Err(error) => {
            // The chain of causes on one line; no backtrace for an ordinary error, whatever
            // RUST_BACKTRACE says (it is for panics).
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    // A relay says what it refused and why (connections, TLS, limits) unless told otherwise
    // (`RUST_LOG`); the other commands print what they do themselves.
    let default = match cli.command {
        Command::Relay(_) => tracing_subscriber::filter::LevelFilter::INFO,
        _ => tracing_subscriber::filter::LevelFilter::ERROR,
    };
    let filter = tracing_subscriber::EnvFilter::builder().with_default_directive(default.into()).from_env_lossy();
    // The PostgreSQL client crates (heard through the `log` bridge) stay at `warn` whatever
    // RUST_LOG says: at debug, tokio_postgres prints each statement's parameters (credential
    // hashes, the stamp secret, envelopes); at info, each notice. A filter after the env filter,
    // not a directive in it: a more specific directive of RUST_LOG (`tokio_postgres::query=debug`)
    // would win over one added to it.
    let quiet_postgres = tracing_subscriber::filter::filter_fn(|metadata| {
        let postgres = ["tokio_postgres", "postgres"]
            .iter()
            .any(|name| metadata.target().strip_prefix(name).is_some_and(|rest| rest.is_empty() || rest.starts_with("::")));
        !postgres || *metadata.level() <= tracing::Level::WARN
    });
    // Colours for a terminal only: a log kept in a file reads as plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    tracing_subscriber::registry().with(filter).with(quiet_postgres).with(output).init();
    match cli.command {
        Command::Demo(args) => demo::run(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Peer(args) => peer::run(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Conformance(args) => conformance::run_cli(args),
        Command::Relay(args) => {
            avoid_huge_pages();
            relay::run(args).map(|()| std::process::ExitCode::SUCCESS)
        }
        Command::Setup(args) => relay::setup(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Chat(args) => chat::run(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Sim(args) => {
            prefer_huge_pages();
            sim::run(args)
        }
    }
}
