//! The conformance runner as CI runs it: this project against itself in both suites and against
//! Signal's reference C library in both orders, for several seeds — and deliberately broken
//! peers, which it must catch.

use std::path::PathBuf;
use std::process::Command;

fn switchboard() -> String {
    env!("CARGO_BIN_EXE_switchboard").to_owned()
}

/// The C library's peer, built by `cargo test --workspace` next to the switchboard binary.
fn c_peer() -> String {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_switchboard")).with_file_name("libsignal-c-peer");
    assert!(path.exists(), "{} is missing: build it with `cargo build -p switchboard-libsignal-c --bins`", path.display());
    path.display().to_string()
}

struct Outcome {
    success: bool,
    passed: u64,
    failed: u64,
    output: String,
}

fn conformance(a: &str, b: &str, seed: u64, rounds: u32, suite: &str) -> Outcome {
    let output = Command::new(switchboard())
        .args(["conformance", "--a", a, "--b", b, "--seed", &seed.to_string(), "--rounds", &rounds.to_string()])
        .args(["--suite", suite])
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let last = text.lines().last().unwrap_or_default().to_owned();
    let numbers: Vec<u64> = last.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    assert_eq!(numbers.len(), 2, "no closing line `N passed, M failed` in:\n{text}");
    Outcome { success: output.status.success(), passed: numbers[0], failed: numbers[1], output: text }
}

fn assert_clean(outcome: &Outcome, what: &str) {
    assert!(outcome.success && outcome.failed == 0, "{what}:\n{}", outcome.output);
    assert!(outcome.passed > 300, "{what}: only {} checks ran", outcome.passed);
}

const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];

#[test]
fn switchboard_against_itself_in_both_suites() {
    let peer = format!("{} peer", switchboard());
    let gcm_peer = format!("{} peer --suite aes-256-gcm", switchboard());
    for seed in SEEDS {
        assert_clean(&conformance(&peer, &peer, seed, 200, "signal-v3"), &format!("signal-v3, seed {seed}"));
        assert_clean(&conformance(&gcm_peer, &gcm_peer, seed, 200, "aes-256-gcm"), &format!("aes-256-gcm, seed {seed}"));
    }
}

/// Both post-quantum suites, 20 seeds each (issue 17's bar).
#[test]
fn switchboard_against_itself_in_the_post_quantum_suites() {
    for suite in ["signal-pqxdh", "pq-aes-256-gcm"] {
        let peer = format!("{} peer --suite {suite}", switchboard());
        for seed in 1..=20 {
            assert_clean(&conformance(&peer, &peer, seed, 200, suite), &format!("{suite}, seed {seed}"));
        }
    }
}

#[test]
fn switchboard_against_libsignal_c_in_both_orders() {
    let peer = format!("{} peer", switchboard());
    let c = c_peer();
    for seed in SEEDS {
        assert_clean(&conformance(&peer, &c, seed, 200, "signal-v3"), &format!("switchboard, libsignal-c, seed {seed}"));
        assert_clean(&conformance(&c, &peer, seed, 200, "signal-v3"), &format!("libsignal-c, switchboard, seed {seed}"));
    }
}

#[test]
fn a_peer_that_flips_ciphertext_bytes_is_caught() {
    let good = format!("{} peer", switchboard());
    let broken = format!("{} peer --fault flip-ciphertext", switchboard());
    let outcome = conformance(&good, &broken, 7, 100, "signal-v3");
    assert!(!outcome.success);
    assert!(outcome.failed > 0);
    assert!(outcome.output.contains("FAIL seed=7 step="), "{}", outcome.output);
    assert!(outcome.output.contains("replay: switchboard conformance"), "{}", outcome.output);
}

#[test]
fn a_peer_that_forgets_skipped_message_keys_is_caught() {
    let broken = format!("{} peer --fault forget-skipped-keys", switchboard());
    let outcome = conformance(&c_peer(), &broken, 6, 200, "signal-v3");
    assert!(!outcome.success);
    assert!(outcome.failed > 0, "{}", outcome.output);
}

#[test]
fn a_seed_replays_the_same_run() {
    let good = format!("{} peer", switchboard());
    let broken = format!("{} peer --fault flip-ciphertext", switchboard());
    let first = conformance(&good, &broken, 11, 80, "signal-v3");
    let second = conformance(&good, &broken, 11, 80, "signal-v3");
    assert_eq!(first.output, second.output);
    assert_ne!(first.output, conformance(&good, &broken, 12, 80, "signal-v3").output);
}

#[test]
fn a_peer_that_does_not_speak_the_protocol_is_reported_not_waited_for() {
    let good = format!("{} peer", switchboard());
    for silent in ["cat", "true", "sleep 0.1; echo not-json"] {
        let outcome = conformance(&good, silent, 1, 10, "signal-v3");
        assert!(!outcome.success && outcome.failed > 0, "{silent}: {}", outcome.output);
    }
    for suite in ["aes-256-gcm", "signal-pqxdh", "pq-aes-256-gcm"] {
        let outcome = conformance(&good, &c_peer(), 1, 10, suite);
        assert!(outcome.output.contains(&format!("does not support suite {suite}")), "{}", outcome.output);
    }
}
