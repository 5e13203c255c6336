//! `sim_deliveries_per_sec`: a simulator run at scale (by default `scenarios/scale.toml`: 10,000
//! devices over three apps, groups of 1,000, about a million deliveries), set against the raw cost
//! of the crypto that run needed, measured in the same process right after it.
//!
//! The run reports how many operations of each kind its devices did (device setups, prekeys made
//! again after a relay reported them low, sessions set up, other pairwise messages, group
//! encryptions and decryptions). Each kind is then timed on its
//! own through the same client core the devices use, with the run's mean message size; the sum of
//! count × time is the crypto's raw cost, and whatever the run took beyond it is the simulator's
//! overhead (relays, network, trace, bookkeeping).
//!
//! Memory: the bench runs itself in child processes (`--sim-memory N`) that set up N devices with
//! no traffic and report their peak resident memory; the slope between sizes is the cost of one
//! device.

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_client::{Device, InMemoryDirectory};
use switchboard_session::{ProtocolAddress, Suite};
use switchboard_sim::report::CryptoOps;
use switchboard_sim::{RunOptions, Scenario};

/// Device counts the memory figure is measured at.
pub const MEMORY_SIZES: [usize; 4] = [1_000, 2_500, 5_000, 10_000];

/// What the bench found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SimFigures {
    /// The scenario's name.
    pub scenario: String,
    /// Simulated devices.
    pub devices: usize,
    /// First reads of a message by a device (the simulator's `reads`).
    pub deliveries: u64,
    /// Wall time of the run, in seconds.
    pub wall_s: f64,
    /// `deliveries` / `wall_s`.
    pub deliveries_per_sec: f64,
    /// Invariant violations (0 in a valid run).
    pub violations: usize,
    /// How many cryptographic operations of each kind the devices made.
    pub crypto: CryptoOps,
    /// Time of one operation of each kind, in microseconds.
    pub unit_us: UnitCosts,
    /// Σ count × unit time.
    pub crypto_s: f64,
    /// (wall − crypto) / crypto.
    pub overhead: f64,
}

/// Time of one operation of each kind, in microseconds, measured apart in the same run.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct UnitCosts {
    /// Making a device and the bundles it publishes first.
    pub device_setup: f64,
    /// Starting a session: the bundles checked, a first message sent and received.
    pub session_setup: f64,
    /// One pairwise message, encrypted and decrypted.
    pub pairwise_message: f64,
    /// One group message encrypted.
    pub group_encrypt: f64,
    /// One group message decrypted.
    pub group_decrypt: f64,
    /// One upload's worth of one-time prekeys made after a relay reported them low (the run's
    /// mean number of prekeys per upload).
    pub prekey_replenishment: f64,
}

/// Runs `scenario` with `seed`, then times its crypto.
pub fn deliveries_per_sec(scenario: &Scenario, seed: u64, progress: bool) -> SimFigures {
    let options = RunOptions {
        progress: progress.then(|| {
            Box::new(|now: u64, end: u64| eprint!("\r  simulated {:>4} of {} s", now / 1_000_000, end / 1_000_000)) as Box<dyn FnMut(u64, u64)>
        }),
        ..RunOptions::default()
    };
    let started = Instant::now();
    let result = switchboard_sim::run(scenario, seed, options).expect("no trace file, so nothing to fail writing");
    let wall_s = started.elapsed().as_secs_f64();
    if progress {
        eprintln!();
    }
    let report = result.report;
    let crypto = report.crypto;
    let suite = scenario.suite.get_ref().parse().unwrap_or(Suite::Aes256Gcm);
    let per_replenishment = crypto.prekeys_replenished.checked_div(crypto.prekey_replenishments).unwrap_or(1).max(1) as u32;
    let unit = unit_costs(crypto.prekeys_per_device, per_replenishment, crypto.mean_size, suite, seed);
    let crypto_s = (crypto.devices as f64 * unit.device_setup
        + crypto.prekey_replenishments as f64 * unit.prekey_replenishment
        + crypto.sessions as f64 * unit.session_setup
        + crypto.pairwise_messages as f64 * unit.pairwise_message
        + crypto.group_encrypts as f64 * unit.group_encrypt
        + crypto.group_decrypts as f64 * unit.group_decrypt)
        / 1e6;
    SimFigures {
        scenario: report.scenario.clone(),
        devices: report.devices,
        deliveries: report.messages.reads,
        wall_s,
        deliveries_per_sec: report.messages.reads as f64 / wall_s,
        violations: report.violations_total,
        crypto,
        unit_us: unit,
        crypto_s,
        overhead: wall_s / crypto_s - 1.0,
    }
}

/// Median of `rounds` timings of `op`, per operation, in microseconds.
fn median_us(rounds: usize, ops_per_round: usize, mut op: impl FnMut() -> Duration) -> f64 {
    let mut samples: Vec<f64> = (0..rounds).map(|_| op().as_secs_f64() * 1e6 / ops_per_round as f64).collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn address(name: &str) -> ProtocolAddress {
    ProtocolAddress::new(name, 1)
}

/// Times each kind of crypto operation through the client core.
pub fn unit_costs(prekeys: u32, per_replenishment: u32, size: usize, suite: Suite, seed: u64) -> UnitCosts {
    const ROUNDS: usize = 9;
    const BATCH: usize = 200;
    let mut rng = StdRng::seed_from_u64(seed);
    let content = vec![0x42u8; size.max(1)];

    let device_setup = median_us(ROUNDS, 50, || {
        let started = Instant::now();
        for i in 0..50 {
            let mut device = Device::new(address(&format!("d{i}@a")), 1, &mut rng);
            std::hint::black_box(device.publish_bundles(prekeys.max(1), &mut rng));
        }
        started.elapsed()
    });

    let mut replenishing = Device::new(address("r@a"), 1, &mut rng);
    let prekey_replenishment = median_us(ROUNDS, 50, || {
        let started = Instant::now();
        for _ in 0..50 {
            std::hint::black_box(replenishing.publish_bundles(per_replenishment, &mut rng));
        }
        started.elapsed()
    });

    // A fresh initiator for every session, made outside the timed region. Checking a bundle's
    // signatures is timed: the run's devices check each bundle once, as it arrives.
    let session_setup = median_us(ROUNDS, 50, || {
        let mut bob = Device::new(address("bob@b"), 2, &mut rng);
        let mut directory = InMemoryDirectory::default();
        let bundles = bob.publish_bundles(50, &mut rng);
        let mut alices: Vec<Device> = (0..50).map(|i| Device::new(address(&format!("a{i}@a")), 1, &mut rng)).collect();
        let started = Instant::now();
        directory.publish(&address("bob@b"), bundles).expect("bundles verify");
        for alice in &mut alices {
            let first = alice.send(&address("bob@b"), &content, &mut directory, &mut rng).expect("bundle published");
            std::hint::black_box(bob.receive(alice.address(), &first.message, &mut directory, &mut rng).expect("decrypts"));
        }
        started.elapsed()
    });

    let mut alice = Device::new(address("alice@a"), 1, &mut rng);
    let mut bob = Device::new(address("bob@b"), 2, &mut rng);
    let mut directory = InMemoryDirectory::default();
    directory.publish(&address("bob@b"), bob.publish_bundles(1, &mut rng)).expect("bundles verify");
    directory.publish(&address("alice@a"), alice.publish_bundles(1, &mut rng)).expect("bundles verify");
    let first = alice.send(&address("bob@b"), &content, &mut directory, &mut rng).expect("bundle published");
    bob.receive(&address("alice@a"), &first.message, &mut directory, &mut rng).expect("decrypts");
    let pairwise_message = median_us(ROUNDS, BATCH, || {
        let started = Instant::now();
        for _ in 0..BATCH {
            let message = alice.send(&address("bob@b"), &content, &mut directory, &mut rng).expect("session");
            std::hint::black_box(bob.receive(&address("alice@a"), &message.message, &mut directory, &mut rng).expect("decrypts"));
        }
        started.elapsed()
    });

    let created = alice.create_group("g@a", [address("bob@b")], suite, &mut directory, &mut rng).expect("new group");
    for message in created {
        bob.receive(&address("alice@a"), &message.message, &mut directory, &mut rng).expect("decrypts");
    }
    let mut first = alice.encrypt_group("g@a", &content, &mut rng).expect("a member");
    for sealed in alice.seal_all(std::mem::take(&mut first.key_distributions), &mut directory, &mut rng).expect("session") {
        bob.receive(&address("alice@a"), &sealed.message, &mut directory, &mut rng).expect("decrypts");
    }
    bob.decrypt_group("g@a", &address("alice@a"), &first.bytes).expect("decrypts");
    let mut pending = Vec::new();
    let group_encrypt = median_us(ROUNDS, BATCH, || {
        let started = Instant::now();
        for _ in 0..BATCH {
            pending.push(alice.encrypt_group("g@a", &content, &mut rng).expect("a member").bytes);
        }
        started.elapsed()
    });
    let mut messages = pending.into_iter();
    let group_decrypt = median_us(ROUNDS, BATCH, || {
        let batch: Vec<Vec<u8>> = messages.by_ref().take(BATCH).collect();
        let started = Instant::now();
        for bytes in &batch {
            std::hint::black_box(bob.decrypt_group("g@a", &address("alice@a"), bytes).expect("decrypts"));
        }
        started.elapsed()
    });
    UnitCosts { device_setup, session_setup, pairwise_message, group_encrypt, group_decrypt, prekey_replenishment }
}

/// A scenario of `devices` devices over three apps, no traffic: what setting up costs in memory.
pub fn memory_scenario(devices: usize) -> Scenario {
    let per_app = devices / 3;
    let text = format!(
        "name = \"memory-{devices}\"\nduration_s = 1\nsettle_s = 1\nprekeys_per_device = 2\n\
         [[app]]\nname = \"green\"\nuser_count = {}\n[[app]]\nname = \"blue\"\nuser_count = {per_app}\n\
         [[app]]\nname = \"red\"\nuser_count = {per_app}\n",
        devices - 2 * per_app
    );
    Scenario::parse(&text).expect("a valid scenario")
}

/// Peak resident memory of this process, in bytes (Linux).
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The figures as a Markdown table, with the peak memory per device for each (devices, bytes) of
/// `memory`.
pub fn table(figures: &SimFigures, memory: &[(usize, u64)]) -> String {
    use std::fmt::Write as _;
    let f = figures;
    let u = &f.unit_us;
    let c = &f.crypto;
    let mut out = String::new();
    let _ = writeln!(out, "| sim_deliveries_per_sec ({}) | |", f.scenario);
    let _ = writeln!(out, "|---|---:|");
    let _ = writeln!(out, "| devices | {} |", f.devices);
    let _ = writeln!(out, "| deliveries | {} |", f.deliveries);
    let _ = writeln!(out, "| wall time | {:.1} s |", f.wall_s);
    let _ = writeln!(out, "| deliveries per second | {:.0} |", f.deliveries_per_sec);
    let _ = writeln!(out, "| invariant violations | {} |", f.violations);
    let _ = writeln!(out, "| device setups | {} × {:.1} µs |", c.devices, u.device_setup);
    let _ = writeln!(out, "| prekey replenishments ({} prekeys) | {} × {:.1} µs |", c.prekeys_replenished, c.prekey_replenishments, u.prekey_replenishment);
    let _ = writeln!(out, "| sessions set up | {} × {:.1} µs |", c.sessions, u.session_setup);
    let _ = writeln!(out, "| other pairwise messages | {} × {:.1} µs |", c.pairwise_messages, u.pairwise_message);
    let _ = writeln!(out, "| group encryptions ({} B) | {} × {:.1} µs |", c.mean_size, c.group_encrypts, u.group_encrypt);
    let _ = writeln!(out, "| group decryptions ({} B) | {} × {:.1} µs |", c.mean_size, c.group_decrypts, u.group_decrypt);
    let _ = writeln!(out, "| raw crypto | {:.1} s |", f.crypto_s);
    let _ = writeln!(out, "| simulator overhead on top | {:.0} % (target ≤ 30 %) |", f.overhead * 100.0);
    for (devices, bytes) in memory {
        let _ = writeln!(out, "| peak memory, {devices} devices, no traffic | {:.1} MiB |", *bytes as f64 / (1 << 20) as f64);
    }
    if let (Some(first), Some(last)) = (memory.first(), memory.last()) {
        if last.0 > first.0 {
            let slope = (last.1 as f64 - first.1 as f64) / (last.0 - first.0) as f64;
            let _ = writeln!(out, "| memory per device (slope) | {:.1} KiB |", slope / 1024.0);
        }
    }
    out
}
