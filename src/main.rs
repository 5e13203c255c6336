//! `switchboard`: the command-line entry point. Each subcommand lives in a module of its own.

mod demo;
mod peer;

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
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Demo(args) => demo::run(args),
        Command::Peer(args) => peer::run(args),
    }
}
