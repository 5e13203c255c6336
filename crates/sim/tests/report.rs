//! What the report says it counts: reads (required, done, in all) under names that say so, and
//! figures that agree with each other.

use std::path::Path;

use switchboard_sim::{Report, RunOptions, Scenario};

fn run_shipped(name: &str, seed: u64) -> Report {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios").join(name);
    let scenario = Scenario::parse(&std::fs::read_to_string(&path).unwrap()).expect("a valid scenario");
    switchboard_sim::run(&scenario, seed, RunOptions::default()).expect("runs").report
}

/// The JSON keys name reads, not "deliveries" (which the demo uses for intended deliveries): the
/// required ones, every first read, and those an adversary prevented.
#[test]
fn the_json_report_counts_reads_under_their_own_names() {
    let report = run_shipped("adversaries.toml", 1);
    let json = serde_json::to_value(&report).unwrap();
    let messages = &json["messages"];
    for key in ["reads_required", "reads", "missing"] {
        assert!(messages[key].is_u64(), "messages.{key} missing: {messages}");
    }
    assert!(json["adversaries"]["reads_prevented"].as_u64().unwrap() > 0, "{}", json["adversaries"]);
    let text = serde_json::to_string(&json).unwrap();
    assert!(!text.contains("deliveries"), "an ambiguous key is left: {text}");
    // Reads in all include reads no invariant required, so they may exceed the required ones, but
    // the required ones done never exceed them.
    let m = &report.messages;
    assert!(m.reads >= m.reads_required - m.missing, "{m:?}");
    let shown = report.text();
    assert!(shown.contains(&format!("reads      {} required, {} missing · {} in all", m.reads_required, m.missing, m.reads)), "{shown}");
}

/// The exactly-once invariant's detail counts the required reads done as the figures do: the
/// reads an adversary prevented are among the missing ones, not subtracted twice.
#[test]
fn the_delivery_detail_agrees_with_the_counts() {
    let report = run_shipped("adversaries.toml", 1);
    let m = &report.messages;
    assert!(report.adversaries.reads_prevented > 0, "the scenario prevents some reads");
    let detail = &report.invariants.iter().find(|i| i.name == "exactly-once delivery").unwrap().detail;
    let expected = format!("{} of {} read; {} kept from their devices by an adversary", m.reads_required - m.missing, m.reads_required, report.adversaries.reads_prevented);
    assert!(detail.starts_with(&expected), "{detail}\nwanted {expected}");
}
