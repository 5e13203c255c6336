//! `switchboard conformance`: holds two peer-protocol implementations against each other.

use std::process::ExitCode;
use std::time::Duration;

use switchboard_peer::conformance::{Config, run};

#[derive(clap::Args)]
pub struct Args {
    /// Shell command that starts the first peer (e.g. 'switchboard peer').
    #[arg(long)]
    a: String,
    /// Shell command that starts the second peer (e.g. 'libsignal-c-peer').
    #[arg(long)]
    b: String,
    /// Seed of the randomized scenario: the same seed plays the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Random actions to play.
    #[arg(long, default_value_t = 200)]
    rounds: u32,
    /// Suite of the 1:1 sessions; both peers must support it.
    #[arg(long, default_value = "signal-v3", value_parser = crate::peer::parse_suite)]
    suite: switchboard_session::Suite,
    /// Seconds a peer may take to answer one request.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

pub fn run_cli(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config {
        a: args.a,
        b: args.b,
        seed: args.seed,
        rounds: args.rounds,
        suite: args.suite.name().to_owned(),
        timeout: Duration::from_secs(args.timeout),
    };
    let report = run(&config, &mut std::io::stdout().lock())?;
    Ok(if report.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
