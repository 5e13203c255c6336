//! The README's main job, run as a user runs it: three apps' relays on loopback, every message
//! delivered exactly once to exactly its recipients, and no relay ever seeing a plaintext.

use std::process::Command;

#[test]
fn demo_delivers_everything_exactly_once_and_no_relay_sees_plaintext() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard")).args(["demo", "--json"]).output().unwrap();
    assert!(output.status.success(), "demo failed: {}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["apps"], 3);
    assert!(summary["messages_sent"].as_u64().unwrap() >= 10);
    assert!(summary["deliveries_expected"].as_u64().unwrap() >= 30);
    assert_eq!(summary["deliveries"], summary["deliveries_expected"]);
    assert_eq!(summary["lost"], 0);
    assert_eq!(summary["duplicates"], 0);
    assert_eq!(summary["unintended_deliveries"], 0);
    assert_eq!(summary["plaintext_seen_by_relays"], 0);
    // Grace, one person on three apps: the thread with her changed app twice, and her other
    // devices showed what she sent from each, once.
    assert!(summary["people_on_several_apps"].as_u64().unwrap() >= 1);
    assert!(summary["cross_app_continuations"].as_u64().unwrap() >= 2);
    assert!(summary["sync_deliveries_expected"].as_u64().unwrap() > 0);
    assert_eq!(summary["sync_deliveries"], summary["sync_deliveries_expected"]);
    assert_eq!(summary["sync_duplicates"], 0);
    // A stranger's first message was a request (then accepted); Mallory, blocked by Bob on one
    // address, reached him on neither of her apps after; his report of her message was verified
    // through federation, and a report with the words changed was refused.
    assert!(summary["message_requests"].as_u64().unwrap() >= 1);
    assert_eq!(summary["blocked_deliveries"], 0);
    assert!(summary["abuse_reports_verified"].as_u64().unwrap() >= 1);
    assert!(summary["forged_reports_refused"].as_u64().unwrap() >= 1);
    // The business scene: two agents, a hand-over, and the guest seeing which agent wrote.
    assert!(summary["business_agents"].as_u64().unwrap() >= 2);
    assert!(summary["business_handovers"].as_u64().unwrap() >= 1);
    assert_eq!(summary["business_agents_seen_by_customer"], serde_json::json!(["Ana", "Ben"]));
    let dropped: u64 = summary["relays"].as_array().unwrap().iter().map(|r| r["envelopes_dropped_for_blocks"].as_u64().unwrap()).sum();
    assert_eq!(dropped, 2, "both of Mallory's messages after the block were dropped by Bob's relay");
    // Each relay handled real traffic, and every message between apps crossed through federation.
    for relay in summary["relays"].as_array().unwrap() {
        assert!(relay["frames_handled"].as_u64().unwrap() > 50, "{relay}");
        assert!(relay["envelopes_forwarded_to_other_apps"].as_u64().unwrap() > 0, "{relay}");
    }
}
