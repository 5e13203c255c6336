//! The conformance runner as a person meets it, run in-process against real peer processes:
//! the toy peer (`examples/toy_peer.rs`, written from `docs/PEER_PROTOCOL.md`) against this
//! project's backend; peers that hang, exit early or do not exit, which must be reported once
//! and leave no process behind; and deliberately broken peers, whose failures must be put on
//! them and not on the side that noticed.
//!
//! This test has no libtest harness (`harness = false`): started as `runner --serve [FAULT]`,
//! the test binary itself is a peer over this project's backend, which the tests start as a
//! process (`switchboard peer` belongs to another package and may not be built).

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use switchboard_peer::conformance::{Config, Report, run};
use switchboard_peer::switchboard::{Fault, SwitchboardBackend};
use switchboard_session::Suite;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        let fault = match args.get(2).map(String::as_str) {
            None => None,
            Some("flip-ciphertext") => Some(Fault::FlipCiphertext),
            Some("forget-skipped-keys") => Some(Fault::ForgetSkippedKeys),
            Some(other) => panic!("unknown fault {other}"),
        };
        let mut backend = SwitchboardBackend::new(Suite::SignalV3, None, fault);
        let (stdin, stdout) = (std::io::stdin().lock(), std::io::stdout().lock());
        switchboard_peer::serve(&mut backend, BufReader::new(stdin), BufWriter::new(stdout)).expect("standard output");
        return;
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let tests: [(&str, fn()); 8] = [
        ("the_toy_peer_passes_against_this_projects_peer_in_both_orders", the_toy_peer_passes_against_this_projects_peer_in_both_orders),
        ("a_peer_that_hangs_at_once_is_killed_and_reaped", a_peer_that_hangs_at_once_is_killed_and_reaped),
        ("a_peer_that_hangs_mid_run_is_killed_and_reaped", a_peer_that_hangs_mid_run_is_killed_and_reaped),
        ("a_peer_that_exits_early_is_reported_once", a_peer_that_exits_early_is_reported_once),
        ("a_peer_that_does_not_exit_at_the_end_of_its_input_is_killed", a_peer_that_does_not_exit_at_the_end_of_its_input_is_killed),
        ("flipped_ciphertexts_are_the_writers_fault_on_either_side", flipped_ciphertexts_are_the_writers_fault_on_either_side),
        ("forgotten_skipped_keys_are_the_readers_fault", forgotten_skipped_keys_are_the_readers_fault),
        ("a_good_pair_has_no_fault", a_good_pair_has_no_fault),
    ];
    let mut ran = 0;
    for (name, test) in tests {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        eprintln!("test {name} ...");
        test();
        eprintln!("test {name} ... ok");
        ran += 1;
    }
    eprintln!("{ran} tests passed");
}

/// This test binary as a peer.
fn switchboard_peer(fault: Option<&str>) -> String {
    let exe = std::env::current_exe().expect("the test binary");
    format!("'{}' --serve {}", exe.display(), fault.unwrap_or(""))
}

/// `target/debug/examples/toy_peer`, built by `cargo test -p switchboard-peer` (which builds
/// the package's examples before running its tests) next to this test's directory.
fn toy_peer() -> String {
    let exe = std::env::current_exe().expect("the test binary");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/runner-…");
    let toy = profile_dir.join("examples").join(format!("toy_peer{}", std::env::consts::EXE_SUFFIX));
    assert!(toy.exists(), "{} is missing: `cargo test -p switchboard-peer` builds it, or `cargo build -p switchboard-peer --example toy_peer`", toy.display());
    format!("'{}'", toy.display())
}

struct Outcome {
    report: Report,
    output: String,
    took: Duration,
}

fn conformance(a: &str, b: &str, seed: u64, rounds: u32, timeout: Duration) -> Outcome {
    let config = Config { a: a.into(), b: b.into(), seed, rounds, suite: "signal-v3".into(), timeout };
    let mut output = Vec::new();
    let start = Instant::now();
    let report = run(&config, &mut output).expect("writing to a Vec");
    Outcome { report, output: String::from_utf8(output).expect("UTF-8"), took: start.elapsed() }
}

fn fail_lines(output: &str) -> Vec<&str> {
    output.lines().filter(|line| line.starts_with("FAIL ")).collect()
}

/// A scratch directory for one test's pid files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-runner-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read_pid(path: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(pid) = std::fs::read_to_string(path).ok().and_then(|text| text.trim().parse().ok()) {
            return pid;
        }
        assert!(Instant::now() < deadline, "{} was never written", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is still a live process: gone, or a zombie (killed, and waiting for a parent
/// that is not this process to reap it), counts as ended. A zombie whose parent is this process
/// means the runner did not reap its child.
fn still_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let after_name = &stat[stat.rfind(')').unwrap() + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next().unwrap();
    let parent: u32 = fields.next().unwrap().parse().unwrap();
    assert!(!(state == "Z" && parent == std::process::id()), "process {pid} was killed but never reaped by the runner");
    state != "Z"
}

/// `pid` ends within a second (the kill is immediate; the check allows for a slow machine).
fn assert_ended(pid: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while still_running(pid) {
        assert!(Instant::now() < deadline, "{what} (pid {pid}) is still running after the run");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const HELLO: &str = r#"{"ok":true,"impl":"shell","version":"0","suites":["signal-v3"],"features":["session","group"]}"#;

fn the_toy_peer_passes_against_this_projects_peer_in_both_orders() {
    let (toy, ours) = (toy_peer(), switchboard_peer(None));
    for (a, b, seed) in [(&toy, &ours, 1), (&ours, &toy, 2), (&toy, &toy, 3)] {
        let outcome = conformance(a, b, seed, 200, Duration::from_secs(30));
        assert_eq!(outcome.report.failed, 0, "seed {seed}, {a} against {b}:\n{}", outcome.output);
        assert!(outcome.report.passed > 500, "seed {seed}: only {} checks ran:\n{}", outcome.report.passed, outcome.output);
        assert_eq!(outcome.output.lines().last(), Some(format!("{} passed, 0 failed", outcome.report.passed).as_str()));
    }
}

fn a_peer_that_hangs_at_once_is_killed_and_reaped() {
    let dir = scratch("hang-at-once");
    // The shell (the runner's child) waits on a sleep (its grandchild): both must go.
    let hang = format!("echo $$ > '{0}/shell'; sleep 1000 & echo $! > '{0}/sleep'; wait", dir.display());
    let outcome = conformance(&switchboard_peer(None), &hang, 1, 20, Duration::from_secs(1));
    assert!(outcome.took < Duration::from_secs(15), "the run took {:?}", outcome.took);
    let fails = fail_lines(&outcome.output);
    assert_eq!(fails.len(), 1, "{}", outcome.output);
    assert!(fails[0].contains("[fault: B] peer B gave no answer within 1s (killed) — while answering hello"), "{}", outcome.output);
    assert_eq!(outcome.report.faults.b, 1);
    assert_ended(read_pid(&dir.join("sleep")), "the hung peer's sleep");
    assert_ended(read_pid(&dir.join("shell")), "the hung peer's shell");
}

fn a_peer_that_hangs_mid_run_is_killed_and_reaped() {
    let dir = scratch("hang-mid-run");
    // Answers hello, then stops answering (and stops reading: the runner's writes must not
    // block it either).
    let hang = format!("read line; echo '{HELLO}'; sleep 1000 & echo $! > '{0}/sleep'; wait", dir.display());
    let outcome = conformance(&hang, &switchboard_peer(None), 1, 20, Duration::from_secs(1));
    assert!(outcome.took < Duration::from_secs(15), "the run took {:?}", outcome.took);
    let fails = fail_lines(&outcome.output);
    assert_eq!(fails.len(), 1, "{}", outcome.output);
    assert!(fails[0].contains("[fault: A] peer A gave no answer within 1s (killed)"), "{}", outcome.output);
    assert_ended(read_pid(&dir.join("sleep")), "the hung peer's sleep");
}

fn a_peer_that_exits_early_is_reported_once() {
    // Answers hello and exits: every later request would find its pipes closed.
    let exits = format!("read line; echo '{HELLO}'");
    let outcome = conformance(&switchboard_peer(None), &exits, 1, 50, Duration::from_secs(5));
    let fails = fail_lines(&outcome.output);
    assert_eq!(fails.len(), 1, "one line for one exit:\n{}", outcome.output);
    assert!(fails[0].contains("[fault: B] peer B exited (exit status: 0) after 1 answers"), "{}", outcome.output);
    assert_eq!(outcome.report.failed, 1);
    assert!(outcome.output.ends_with(&format!("{} passed, 1 failed\n", outcome.report.passed)), "{}", outcome.output);
}

fn a_peer_that_does_not_exit_at_the_end_of_its_input_is_killed() {
    let dir = scratch("no-exit");
    // A good peer, but its shell goes on after it: the end of the run must still end it.
    let lingers = format!("{}; sleep 1000 & echo $! > '{}/sleep'; wait", switchboard_peer(None), dir.display());
    let outcome = conformance(&switchboard_peer(None), &lingers, 1, 30, Duration::from_secs(2));
    let fails = fail_lines(&outcome.output);
    assert_eq!(fails.len(), 1, "{}", outcome.output);
    assert!(fails[0].contains("[fault: B] peer B did not exit within 2s of the end of its input (killed)"), "{}", outcome.output);
    assert_ended(read_pid(&dir.join("sleep")), "the lingering peer's sleep");
}

/// Every failure of the run is put on `side` (`"A"` or `"B"`), none on the other or undecided.
fn assert_all_on(outcome: &Outcome, side: &str) {
    let faults = outcome.report.faults;
    assert!(outcome.report.failed > 0, "the broken peer was not caught:\n{}", outcome.output);
    let on_side = if side == "A" { faults.a } else { faults.b };
    assert_eq!(on_side, outcome.report.failed, "faults {faults:?}:\n{}", outcome.output);
    for line in fail_lines(&outcome.output) {
        assert!(line.contains(&format!("[fault: {side}]")), "{line}");
    }
}

fn flipped_ciphertexts_are_the_writers_fault_on_either_side() {
    let (good, broken) = (switchboard_peer(None), switchboard_peer(Some("flip-ciphertext")));
    let outcome = conformance(&good, &broken, 7, 100, Duration::from_secs(30));
    assert_all_on(&outcome, "B");
    // A is the one that notices: its decrypts fail, and the fault is still B's.
    assert!(
        fail_lines(&outcome.output).iter().any(|line| line.contains("[fault: B] A decrypt") && line.contains("— B wrote it")),
        "{}",
        outcome.output
    );
    let outcome = conformance(&broken, &good, 7, 100, Duration::from_secs(30));
    assert_all_on(&outcome, "A");
    assert!(fail_lines(&outcome.output).iter().any(|line| line.contains("[fault: A] B decrypt")), "{}", outcome.output);
}

fn forgotten_skipped_keys_are_the_readers_fault() {
    let (good, broken) = (switchboard_peer(None), switchboard_peer(Some("forget-skipped-keys")));
    let outcome = conformance(&good, &broken, 6, 200, Duration::from_secs(30));
    assert_all_on(&outcome, "B");
    // Here the side that noticed is the one at fault: it reads late messages wrong.
    assert!(outcome.output.contains("B fails its self-check on late prekey messages"), "{}", outcome.output);
    let outcome = conformance(&broken, &good, 6, 200, Duration::from_secs(30));
    assert_all_on(&outcome, "A");
}

fn a_good_pair_has_no_fault() {
    let outcome = conformance(&switchboard_peer(None), &switchboard_peer(None), 3, 200, Duration::from_secs(30));
    assert_eq!(outcome.report.failed, 0, "{}", outcome.output);
    assert!(!outcome.output.contains("faults:") && !outcome.output.contains("replay:"), "{}", outcome.output);
}
