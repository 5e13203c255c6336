//! `switchboard-bench`: Switchboard, libsignal-c, Megolm, OpenMLS and the primitive floor, side by
//! side in one run.
//!
//! ```text
//! cargo run --release -p switchboard-bench -- --quick --json
//! cargo run --release -p switchboard-bench                     # the full run
//! cargo run --release -p switchboard-bench -- --ops encrypt,decrypt_100
//! cargo run --release -p switchboard-bench -- --ops group_     # only the group ops
//! cargo run --release -p switchboard-bench -- --ops sim         # the simulator at scale
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use switchboard_bench::measure::{self, Config};
use switchboard_bench::{floor, report};
use switchboard_bench::workloads::{Impl, Op};

/// Measures session setup and 1:1 encrypt/decrypt, and group messages, catch-up and membership
/// changes, of Switchboard (both suites), Signal's reference C library, Megolm (vodozemac), OpenMLS
/// and the floor of primitive operations, interleaved round-robin in one run, and prints the
/// median ns/op of each with ratios against libsignal-c, the fastest peer and the floor.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// A short run (under a minute on two cores): fewer rounds, shorter batches, membership changes
    /// under `signal-v3` only for Switchboard.
    #[arg(long)]
    quick: bool,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Only these ops: comma-separated names, or parts of names (session_setup, encrypt_100,
    /// decrypt_100, encrypt_64k, decrypt_64k, group_encrypt_100, group_decrypt_100,
    /// group_catchup_1000, group_add_member_{10,100,1000}, group_remove_member_{10,100,1000};
    /// `group_` selects the group ops, `member` the membership changes).
    #[arg(long, value_name = "FILTER")]
    ops: Option<String>,
    /// Only these implementations: comma-separated names, or parts of names
    /// (switchboard-signal-v3, switchboard-aes-256-gcm, switchboard-signal-v3-as-shipped,
    /// switchboard-aes-256-gcm-as-shipped, switchboard-signal-v3-one-by-one,
    /// switchboard-signal-pqxdh, switchboard-pq-aes-256-gcm, libsignal-c, vodozemac-megolm,
    /// openmls-2, openmls-100, openmls, floor, floor-aes-256-gcm, floor-signal-pqxdh,
    /// floor-pq-aes-256-gcm).
    #[arg(long, value_name = "FILTER")]
    impls: Option<String>,
    /// Rounds per op (default: 15 with --quick, 41 otherwise).
    #[arg(long)]
    rounds: Option<usize>,
    /// Target time of one batch in milliseconds (default: 15 with --quick, 50 otherwise).
    #[arg(long, value_name = "MS")]
    batch_ms: Option<u64>,
    /// Also time each primitive the floor is made of (X25519 DH and key generation, signature
    /// verification, chain step, HKDF, a whole message's symmetric work), interleaved the same way.
    #[arg(long)]
    primitives: bool,
    /// Time operations with the process's CPU time instead of wall-clock time: on a machine busy
    /// with other work, time spent preempted is left out.
    #[arg(long)]
    cpu_time: bool,
    /// Seed for all keys.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The scenario `sim_deliveries_per_sec` runs.
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios/scale.toml"))]
    scenario: std::path::PathBuf,
    /// (Internal) sets up N simulated devices and prints this process's peak memory.
    #[arg(long, hide = true, value_name = "N")]
    sim_memory: Option<usize>,
}

/// The relay benchmarks' op names (run end to end over loopback, after the others).
const RELAY_OPS: [&str; 10] = [
    "relay_throughput",
    "relay_cluster_throughput_1",
    "relay_cluster_throughput_2",
    "relay_cluster_throughput_3",
    "relay_sharded_throughput_2",
    "relay_latency_p50",
    "relay_latency_p99",
    "group_fanout_10",
    "group_fanout_100",
    "group_fanout_1000",
];

/// The items of `all` that `filter` selects: each comma-separated part selects the item whose name
/// it is, or else every item whose name contains it (`floor` is just the floor, `encrypt` both sizes).
fn select<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str, filter: &Option<String>) -> Vec<T> {
    let Some(filter) = filter.as_deref() else { return all.to_vec() };
    let parts: Vec<&str> = filter.split(',').map(str::trim).filter(|part| !part.is_empty()).collect();
    all.iter()
        .copied()
        .filter(|&item| {
            parts.iter().any(|&part| {
                let exact = all.iter().any(|&other| name(other) == part);
                if exact { name(item) == part } else { name(item).contains(part) }
            })
        })
        .collect()
}

/// The allocator the `switchboard` binary ships with, so that the simulator runs here as there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// As `switchboard sim` does: 2 MiB pages where the kernel allows them, for the simulator's large
/// heap read in no cache-friendly order (see BENCHMARKS.md, "The simulator").
#[allow(unsafe_code)]
fn prefer_huge_pages() {
    // SAFETY: sets one of mimalloc's documented options to a valid value; takes no pointers.
    unsafe { libmimalloc_sys::mi_option_set(libmimalloc_sys::mi_option_large_os_pages, 1) }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = if args.quick { Config::quick() } else { Config::full() };
    if let Some(rounds) = args.rounds {
        config.rounds = rounds.max(1);
    }
    if let Some(ms) = args.batch_ms {
        config.batch_time = Duration::from_millis(ms.max(1));
    }
    config.seed = args.seed;
    switchboard_bench::clock::use_cpu_time(args.cpu_time);
    if let Some(devices) = args.sim_memory {
        let scenario = switchboard_bench::sim::memory_scenario(devices);
        if switchboard_sim::run(&scenario, args.seed, Default::default()).is_err() {
            return ExitCode::FAILURE;
        }
        println!("{}", switchboard_bench::sim::peak_rss().unwrap_or(0));
        return ExitCode::SUCCESS;
    }
    let sim = match args.ops.as_deref() {
        Some(filter) => filter.contains("sim"),
        None => !args.quick,
    };
    if sim && args.ops.is_some() {
        return run_sim(&args);
    }
    let ops = select(&Op::ALL, Op::name, &args.ops);
    let impls = select(&Impl::ALL, Impl::name, &args.impls);
    let relay = !select(&RELAY_OPS, |name| name, &args.ops).is_empty()
        && args.impls.as_deref().is_none_or(|filter| filter.contains("relay"));
    if relay && (ops.is_empty() || impls.is_empty()) {
        return run_relay(args.quick, args.json);
    }
    if ops.is_empty() || impls.is_empty() {
        eprintln!("no op or no implementation matches the filters");
        return ExitCode::FAILURE;
    }
    if config.quick && impls.iter().any(|imp| matches!(imp, Impl::Aes256Gcm | Impl::Aes256GcmAsShipped)) && ops.iter().any(|op| op.is_membership()) {
        eprintln!("--quick: membership changes under switchboard-signal-v3 only (the full run has both suites)");
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; measure with --release");
    }

    let start = Instant::now();
    eprintln!(
        "measuring {} op(s) × {} impl(s), {} rounds of ~{} ms batches, interleaved, {} time",
        ops.len(),
        impls.len(),
        config.rounds,
        config.batch_time.as_millis(),
        if args.cpu_time { "CPU" } else { "wall-clock" }
    );
    let samples = measure::measure(&ops, &impls, &config, |op, took| {
        eprintln!("  {:<26} {:>6.1} s", op.name(), took.as_secs_f64());
    });
    let rows = report::rows(&samples);
    if args.json {
        for line in report::json_lines(&rows) {
            println!("{line}");
        }
    } else {
        print!("{}", report::table(&rows));
        println!();
        if let Some(table) = report::membership_table(&rows) {
            print!("{table}");
            if let Some(note) = report::as_shipped_note(&rows) {
                println!("\n{note}");
            }
            println!();
        }
        for line in report::verdicts(&rows) {
            println!("{line}");
        }
        if ops.contains(&Op::SessionSetup) {
            println!("\n| suite | bundle (bytes) | first message, 100 B (bytes) | later message, 100 B (bytes) |\n|---|---:|---:|---:|");
            for size in switchboard_bench::workloads::session::sizes() {
                println!("| {} | {} | {} | {} |", size.suite, size.bundle, size.first_message, size.later_message);
            }
        }
    }
    if relay {
        let code = run_relay(args.quick, args.json);
        if code != ExitCode::SUCCESS {
            return code;
        }
    }
    if sim {
        let code = run_sim(&args);
        if code != ExitCode::SUCCESS {
            return code;
        }
    }
    if args.primitives {
        let (names, mut workloads): (Vec<&str>, Vec<_>) = floor::primitives(config.seed).into_iter().unzip();
        let stats = measure::measure_interleaved(&mut workloads, &config);
        if args.json {
            for (name, stats) in names.iter().zip(&stats) {
                let line = serde_json::json!({
                    "primitive": name,
                    "ns_per_op": (stats.median * 10.0).round() / 10.0,
                    "rounds": stats.rounds,
                    "iqr_rel": (stats.iqr_rel * 10_000.0).round() / 10_000.0,
                });
                println!("{line}");
            }
        } else {
            println!();
            println!("| primitive | ns/op | IQR |");
            println!("|---|---:|---:|");
            for (name, stats) in names.iter().zip(&stats) {
                println!("| {name} | {:.0} | {:.1}% |", stats.median, stats.iqr_rel * 100.0);
            }
        }
    }
    eprintln!("done in {:.1} s", start.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}

/// `sim_deliveries_per_sec`, then the memory per device (child processes, one per size).
fn run_sim(args: &Args) -> ExitCode {
    prefer_huge_pages();
    let text = match std::fs::read_to_string(&args.scenario) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("reading {}: {error}", args.scenario.display());
            return ExitCode::FAILURE;
        }
    };
    let scenario = match switchboard_sim::Scenario::parse(&text) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("{}:{}: {}", args.scenario.display(), error.line, error.message);
            return ExitCode::FAILURE;
        }
    };
    eprintln!("measuring the simulator: {} ({} devices), then the raw cost of its crypto", scenario.name, scenario.device_count());
    let figures = switchboard_bench::sim::deliveries_per_sec(&scenario, args.seed, !args.json);
    let mut memory = Vec::new();
    if let Ok(me) = std::env::current_exe() {
        for devices in switchboard_bench::sim::MEMORY_SIZES {
            eprintln!("  memory with {devices} devices");
            let output = std::process::Command::new(&me).args(["--sim-memory", &devices.to_string()]).output();
            if let Some(bytes) = output.ok().and_then(|o| String::from_utf8(o.stdout).ok()).and_then(|s| s.trim().parse().ok()) {
                memory.push((devices, bytes));
            }
        }
    }
    if args.json {
        let mut line = serde_json::to_value(&figures).unwrap_or_default();
        line["op"] = "sim_deliveries_per_sec".into();
        line["peak_memory_bytes"] = memory.iter().map(|(devices, bytes)| serde_json::json!({"devices": devices, "bytes": bytes})).collect();
        println!("{line}");
    } else {
        println!();
        print!("{}", switchboard_bench::sim::table(&figures, &memory));
    }
    ExitCode::SUCCESS
}

/// As `switchboard relay` does: no transparent 2 MiB pages from here on (the relays run in this
/// process; see `avoid_huge_pages` in the `switchboard` binary for why).
#[allow(unsafe_code)]
fn avoid_huge_pages() {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments only and changes no memory.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// The relay benchmarks: three relays on loopback, durability on (see `switchboard_bench::relay`).
fn run_relay(quick: bool, json: bool) -> ExitCode {
    avoid_huge_pages();
    eprintln!("measuring the relays end to end over loopback (three apps, durable mailboxes)");
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() else {
        return ExitCode::FAILURE;
    };
    let figures = runtime.block_on(switchboard_bench::relay::run(quick));
    if json {
        for line in switchboard_bench::relay::json_lines(&figures) {
            println!("{line}");
        }
    } else {
        println!();
        print!("{}", switchboard_bench::relay::table(&figures));
    }
    ExitCode::SUCCESS
}
