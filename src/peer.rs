//! `switchboard peer`: this project's sessions behind the peer protocol (PEER_PROTOCOL.md), JSON
//! lines on standard input and output.

use std::io::{BufReader, BufWriter};

use switchboard_peer::switchboard::{Fault, SwitchboardBackend};
use switchboard_session::Suite;

#[derive(clap::Args)]
pub struct Args {
    /// Suite of the sender keys this peer creates (1:1 sessions take the bundle's suite).
    #[arg(long, default_value = "signal-v3", value_parser = parse_suite)]
    suite: Suite,
    /// Seed for all randomness (default: the operating system's).
    #[arg(long)]
    seed: Option<u64>,
    /// Misbehave on purpose, to check that the conformance runner notices.
    #[arg(long, value_enum)]
    fault: Option<FaultArg>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FaultArg {
    /// Flip the lowest bit of the last byte of every ciphertext written.
    FlipCiphertext,
    /// Forget the keys of skipped messages after every decrypt.
    ForgetSkippedKeys,
}

pub fn parse_suite(name: &str) -> Result<Suite, String> {
    name.parse().map_err(|_| {
        let known: Vec<&str> = Suite::ALL.iter().map(|suite| suite.name()).collect();
        format!("unknown suite {name:?} ({})", known.join(", "))
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let fault = args.fault.map(|fault| match fault {
        FaultArg::FlipCiphertext => Fault::FlipCiphertext,
        FaultArg::ForgetSkippedKeys => Fault::ForgetSkippedKeys,
    });
    let mut backend = SwitchboardBackend::new(args.suite, args.seed, fault);
    let stdin = BufReader::new(std::io::stdin().lock());
    let stdout = BufWriter::new(std::io::stdout().lock());
    switchboard_peer::serve(&mut backend, stdin, stdout)?;
    Ok(())
}
