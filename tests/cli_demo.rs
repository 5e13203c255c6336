//! The README's main job, run as a user runs it: every message is delivered and no plaintext is
//! ever on the wire.

use std::process::Command;

#[test]
fn demo_delivers_everything_and_shows_no_plaintext_on_the_wire() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard")).args(["demo", "--json"]).output().unwrap();
    assert!(output.status.success(), "demo failed: {}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(summary["messages_sent"].as_u64().unwrap() > 0);
    assert_eq!(summary["deliveries"], summary["deliveries_expected"]);
    assert_eq!(summary["lost"], 0);
    assert_eq!(summary["plaintext_seen_on_wire"], 0);
    // Both suites ran, and each safety number is 60 digits.
    let suites = summary["suites"].as_array().unwrap();
    assert_eq!(suites.len(), 2);
    for suite in suites {
        assert_eq!(suite["safety_number"].as_str().unwrap().len(), 60);
    }
}

#[test]
fn demo_is_reproducible_from_its_seed() {
    let run = |seed: &str| {
        Command::new(env!("CARGO_BIN_EXE_switchboard")).args(["demo", "--seed", seed]).output().unwrap().stdout
    };
    assert_eq!(run("5"), run("5"));
    assert_ne!(run("5"), run("6"));
}
