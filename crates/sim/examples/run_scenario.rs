//! Running a simulator scenario from code and reading its report.
//!
//! A scenario is a TOML file (the shipped ones are in `scenarios/`); here it is written inline,
//! parsed, changed in code, and run twice with one seed — the same seed gives the same run, so
//! the same `trace_hash`. The report says what was sent, what had to be read and was, and whether
//! every invariant held. Run with `cargo run -p switchboard-sim --example run_scenario`.

use switchboard_sim::{Diagram, RunOptions, Scenario};

/// Two apps, three users, a group of three, and a lossy link between the apps' relays.
const SCENARIO: &str = r#"
name = "first-contact"
duration_s = 10          # seconds of traffic (the devices register during the 2 s before)
settle_s = 10            # then time for the network to heal before delivery is checked

[[app]]
name = "green"
users = ["alice", "bob"]
devices_per_user = 2

[[app]]
name = "blue"
users = ["carol"]

[[group]]
size = 3

[traffic]
messages = 60
group_share = 0.5

[[link]]                 # between the two relays: every tenth frame lost, the rest late
apps = ["green", "blue"]
drop = 0.1
delay = { kind = "uniform", min_ms = 20, max_ms = 80 }
"#;

/// Parses the scenario, runs it, reads the report, and runs it again (`pub` only so that
/// `tests/examples.rs` runs it as well).
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A bad file is refused with the field at fault, its line and column.
    let mut scenario = Scenario::parse(SCENARIO)?;
    // A scenario's fields are public: change one, and the run checks it again.
    scenario.traffic.messages = 80;

    // The options say how the run is observed: here, a sequence diagram of Carol's device only.
    let options = RunOptions { diagram: Diagram { devices: vec!["carol@blue".into()], ..Diagram::default() }, ..RunOptions::default() };
    let result = switchboard_sim::run(&scenario, 7, options)?;
    let report = &result.report;

    let m = &report.messages;
    println!("{} devices, {} messages sent ({} 1:1, {} to the group)", report.devices, m.sent, m.direct, m.group);
    println!("{} reads required, {} missing; {} first reads in all", m.reads_required, m.missing, m.reads);
    println!("latency p50 {:.1} ms, p99 {:.1} ms; {} frames dropped on the way", report.latency_ms.p50, report.latency_ms.p99, report.faults.dropped);
    for invariant in &report.invariants {
        println!("[{}] {}", if invariant.holds { "ok" } else { "FAIL" }, invariant.name);
    }
    println!("trace hash {}", report.trace_hash);
    // `result.sequence_svg()` and `result.latency_svg()` are the pictures `switchboard sim --svg` writes.
    println!("sequence diagram: {} of Carol's events, {} bytes of SVG", result.diagram_events.len(), result.sequence_svg().len());

    // However lossy the link, once it heals every message reaches every device meant to read it.
    assert_eq!(report.violations_total, 0, "{}", report.text());
    assert_eq!(m.missing, 0);
    // One scenario and one seed: one run.
    let again = switchboard_sim::run(&scenario, 7, RunOptions::default())?;
    assert_eq!(again.report.trace_hash, report.trace_hash);
    Ok(())
}
