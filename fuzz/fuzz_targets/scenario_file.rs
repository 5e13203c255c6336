//! scenario_file: arbitrary bytes as a simulator scenario (TOML) into `Scenario::parse`; a
//! scenario that parses and is small (≤ 24 devices, ≤ 60 messages, ≤ 20 s of traffic and of
//! settling) is also run.
//!
//! Checks: parsing never panics, and a refusal names a line of the file; a run never panics,
//! and whatever the faults, the invariants that do not depend on the network healing hold — no
//! relay sees a plaintext (unless that bug is injected), no tampered envelope is read, no device
//! reads a group message sent while it was not a member (unless rotation is switched off), nor
//! while the admins' changes did not make it one, and no member holds a state of its group its
//! admins did not make (unless the admin check is switched off), no two
//! devices share a session under a weaker suite than both accept (unless the downgrade check is
//! switched off), and a thief never reads what its device had read before the theft.
//!
//! Run: `cd fuzz && cargo fuzz run -s none -a scenario_file corpus/scenario_file -- -dict=dict/scenario.dict`

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_sim::{RunOptions, Scenario};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let scenario = match Scenario::parse(text) {
        Ok(scenario) => scenario,
        Err(error) => {
            assert!(error.line >= 1 && error.line <= text.lines().count().max(1) + 1, "line {} of a {}-line file", error.line, text.lines().count());
            return;
        }
    };
    let small = scenario.device_count() <= 24
        && scenario.traffic.messages <= 60
        && scenario.duration_s <= 20.0
        && scenario.settle_s <= 20.0
        && scenario.groups.iter().all(|g| g.count <= 3);
    if !small {
        return;
    }
    let report = switchboard_sim::run(&scenario, 1, RunOptions::default()).expect("no trace file").report;
    let holds = |name: &str| report.invariants.iter().find(|i| i.name == name).is_some_and(|i| i.holds);
    if !scenario.inject.relay_keeps_plaintext {
        assert!(holds("no plaintext at relays"), "{}", report.text());
    }
    assert_eq!(report.adversaries.tampered_read, 0, "{}", report.text());
    if !scenario.inject.no_rotation_on_removal {
        assert!(holds("membership: nothing read outside it"), "{}", report.text());
    }
    if !scenario.inject.no_admin_check {
        assert!(holds(switchboard_sim::OUTSIDER_READ), "{}", report.text());
        assert!(holds(switchboard_sim::FOREIGN_STATE), "{}", report.text());
    }
    if !scenario.inject.no_downgrade_check {
        assert!(holds("no downgraded session"), "{}", report.text());
    }
    assert!(!report.violations.iter().any(|v| v.invariant == "forward secrecy"), "{}", report.text());
});
