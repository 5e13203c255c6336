//! The conformance runner: starts two peers and, from a seed, plays randomized conversations
//! between parties on the two sides — sessions started from either side, messages both ways,
//! delivery out of order within a window, drops, duplicates, tampered bytes, groups with members
//! on both sides and sender-key rotation after removals, and hostile requests that must not kill
//! a peer. Every outcome is checked; a failure is reported with the seed and step to replay it.

mod checks;
mod process;
mod scenario;

use std::io::Write;
use std::time::Duration;

pub use checks::Report;
use checks::Checker;
use process::PeerProcess;
use scenario::Scenario;

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Shell command of the first peer.
    pub a: String,
    /// Shell command of the second peer.
    pub b: String,
    pub seed: u64,
    /// Random actions to play (deliveries of what is still in flight follow).
    pub rounds: u32,
    /// Suite of the 1:1 sessions (the bundles requested); both peers must support it.
    pub suite: String,
    /// How long a peer may take to answer one request.
    pub timeout: Duration,
}

/// Runs the conformance scenario, writing each failure to `out` as it happens and the closing
/// line `N passed, M failed`.
pub fn run(config: &Config, out: &mut dyn Write) -> std::io::Result<Report> {
    let mut checker = Checker::new(config.seed, out);
    let peers = [
        PeerProcess::spawn("A", &config.a, config.timeout)?,
        PeerProcess::spawn("B", &config.b, config.timeout)?,
    ];
    Scenario::new(config, peers, &mut checker).play();
    let report = checker.report();
    if report.failed > 0 {
        writeln!(
            out,
            "replay: switchboard conformance --a '{}' --b '{}' --seed {} --rounds {} --suite {}",
            config.a, config.b, config.seed, config.rounds, config.suite
        )?;
    }
    writeln!(out, "{} passed, {} failed", report.passed, report.failed)?;
    Ok(report)
}
