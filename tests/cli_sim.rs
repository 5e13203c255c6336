//! `switchboard sim` as a researcher runs it: a shipped scenario holds every invariant, one seed
//! gives one trace hash, the trace and pictures are written, and a bad file is refused with its line.

use std::process::Command;

fn sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard")).arg("sim").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn json(output: &std::process::Output) -> serde_json::Value {
    assert!(output.status.success(), "sim failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn a_scenario_holds_its_invariants_and_one_seed_gives_one_trace_hash() {
    let first = json(&sim(&["scenarios/adversaries.toml", "--seed", "5", "--json"]));
    let again = json(&sim(&["scenarios/adversaries.toml", "--seed", "5", "--json"]));
    let other = json(&sim(&["scenarios/adversaries.toml", "--seed", "6", "--json"]));
    assert_eq!(first["violations"], serde_json::json!([]));
    assert_eq!(first["trace_hash"].as_str().unwrap().len(), 64);
    assert_eq!(first["trace_hash"], again["trace_hash"]);
    assert_ne!(first["trace_hash"], other["trace_hash"]);
    assert!(first["adversaries"]["tampered"].as_u64().unwrap() > 0);
    assert_eq!(first["adversaries"]["tampered_read"], 0);
    assert!(first["invariants"].as_array().unwrap().iter().all(|i| i["holds"] == true));
}

#[test]
fn the_trace_and_the_pictures_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("run.jsonl");
    let output = sim(&["scenarios/basic.toml", "--trace", trace.to_str().unwrap(), "--svg", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("trace hash") && report.contains("[ok] exactly-once delivery"), "{report}");
    let lines = std::fs::read_to_string(&trace).unwrap();
    let events: Vec<serde_json::Value> = lines.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(events.len() > 1_000);
    assert!(events.iter().any(|e| e["event"] == "read") && events.iter().any(|e| e["event"] == "message"));
    for picture in ["sequence.svg", "latency.svg"] {
        let svg = std::fs::read_to_string(dir.path().join(picture)).unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"), "{picture}");
    }
}

#[test]
fn a_bad_scenario_is_refused_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "name = \"bad\"\nduration_s = 5\n[[app]]\nname = \"green\"\nuser_count = 2\n[[crash]]\nrelay = \"pink\"\nat_s = 1\n").unwrap();
    let output = sim(&[path.to_str().unwrap()]);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("bad.toml:7:") && error.contains("unknown app \"pink\""), "{error}");
}
