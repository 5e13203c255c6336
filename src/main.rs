//! `switchboard`: the command-line entry point. Each subcommand lives in a module of its own.

mod chat;
mod conformance;
mod demo;
mod peer;
mod relay;
mod sim;

use clap::{Parser, Subcommand};

/// Switchboard: an end-to-end encryption interop layer between messaging apps.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs an encrypted conversation between two apps' users and prints what each side and the
    /// wire saw.
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

fn main() -> anyhow::Result<std::process::ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Demo(args) => demo::run(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Peer(args) => peer::run(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Conformance(args) => conformance::run_cli(args),
        Command::Relay(args) => relay::run(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Setup(args) => relay::setup(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Chat(args) => chat::run(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Sim(args) => sim::run(args),
    }
}
