//! The conformance runner: starts two peers and, from a seed, plays randomized conversations
//! between parties on the two sides — sessions started from either side, messages both ways,
//! delivery out of order within a window, drops, duplicates, tampered bytes, groups with members
//! on both sides and sender-key rotation after removals, and hostile requests that must not kill
//! a peer. Before the two meet, each holds a short conversation with itself (its self-check).
//!
//! Every outcome is checked; a failure is reported with the seed and step to replay it and the
//! side it is put on (`docs/PEER_PROTOCOL.md`, "The conformance runner", says how). A failure
//! already reported is counted, not printed again. A peer that hangs, exits or writes something
//! that is not JSON ends the run; whichever way the run ends, both peers and every process they
//! started are killed and reaped.

mod checks;
mod process;
mod scenario;

use std::io::Write;
use std::time::Duration;

pub use checks::{Fault, Faults, Report};
pub use process::{MAX_RESPONSE_LEN, PeerFailure};
use checks::{Checker, Failure};
use process::PeerProcess;
use scenario::Scenario;

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Shell command of the first peer (run with `sh -c`).
    pub a: String,
    /// Shell command of the second peer.
    pub b: String,
    /// Seed of the randomized scenario: the same seed plays the same run.
    pub seed: u64,
    /// Random actions to play (deliveries of what is still in flight follow).
    pub rounds: u32,
    /// Suite of the 1:1 sessions (the bundles requested); both peers must support it.
    pub suite: String,
    /// How long a peer may take to answer one request.
    pub timeout: Duration,
}

/// Runs the conformance scenario, writing each new failure to `out` as it happens, then a line
/// for each failure that repeated, the faults per side, a `replay:` line if anything failed, and
/// the closing line `N passed, M failed`. Errors are those of writing to `out`.
pub fn run(config: &Config, out: &mut dyn Write) -> std::io::Result<Report> {
    let mut checker = Checker::new(config.seed, out);
    match (PeerProcess::spawn("A", &config.a, config.timeout), PeerProcess::spawn("B", &config.b, config.timeout)) {
        (Ok(a), Ok(b)) => Scenario::new(config, [a, b], &mut checker).play(),
        (a, b) => {
            // Dropping the one that started kills it.
            for (side, spawned) in [a.err(), b.err()].into_iter().enumerate() {
                if let Some(error) = spawned {
                    let label = ["A", "B"][side];
                    checker.fail(Failure::of(side, format!("peer {label} {}", process::with_sources(&error))));
                }
            }
        }
    }
    checker.summarize()?;
    let report = checker.report();
    drop(checker);
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
