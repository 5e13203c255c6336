//! `switchboard sim` as a person reads what it says: a sequence diagram of the time and devices
//! asked for, a trace that names things, a report that counts reads, and a bad file refused at its
//! field.

use std::process::Command;

fn sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard")).arg("sim").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_sequence_diagram_shows_the_window_and_device_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let output = sim(&["scenarios/basic.toml", "--svg", out, "--svg-from", "5s", "--svg-to", "8000ms", "--svg-device", "carol@blue"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let svg = std::fs::read_to_string(dir.path().join("sequence.svg")).unwrap();
    assert!(svg.contains("basic · seed 1 · from 5.000 s to 8.000 s · carol@blue · "), "{svg}");
    assert!(svg.contains(">carol@blue/1<") && !svg.contains(">green relay<"), "{svg}");
    // Every row's time is inside the window.
    let times: Vec<f64> = svg
        .split("text-anchor=\"end\" fill=\"#555\"")
        .skip(1)
        .filter_map(|row| row.split('>').nth(1)?.split(" ms<").next()?.parse().ok())
        .collect();
    assert!(!times.is_empty() && times.iter().all(|ms| (5000.0..=8000.0).contains(ms)), "{times:?}");
}

#[test]
fn the_default_diagram_opens_on_the_first_message() {
    let dir = tempfile::tempdir().unwrap();
    let output = sim(&["scenarios/basic.toml", "--svg", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let svg = std::fs::read_to_string(dir.path().join("sequence.svg")).unwrap();
    assert!(svg.contains("from the first message (2.") && svg.contains("sends message 0"), "{svg}");
}

#[test]
fn diagram_options_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let unknown = sim(&["scenarios/basic.toml", "--svg", out, "--svg-device", "mallory@green"]);
    assert!(!unknown.status.success() && stderr(&unknown).contains("no device \"mallory@green\""), "{}", stderr(&unknown));
    let backwards = sim(&["scenarios/basic.toml", "--svg", out, "--svg-from", "4s", "--svg-to", "3s"]);
    assert!(!backwards.status.success() && stderr(&backwards).contains("--svg-from is after --svg-to"), "{}", stderr(&backwards));
    let bad_time = sim(&["scenarios/basic.toml", "--svg", out, "--svg-from", "soon"]);
    assert!(!bad_time.status.success() && stderr(&bad_time).contains("2.5s"), "{}", stderr(&bad_time));
    let no_svg = sim(&["scenarios/basic.toml", "--svg-from", "2s"]);
    assert!(!no_svg.status.success() && stderr(&no_svg).contains("--svg"), "{}", stderr(&no_svg));
}

#[test]
fn the_trace_names_devices_and_relays_and_the_report_counts_reads() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("run.jsonl");
    let output = sim(&["scenarios/basic.toml", "--trace", trace.to_str().unwrap(), "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["messages"]["reads_required"].as_u64().unwrap() > 0 && report["messages"]["reads"].as_u64().unwrap() > 0, "{report}");
    assert!(report["messages"].get("deliveries").is_none(), "{report}");
    let first: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&trace).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first["from"]["device"], "alice@green/1", "{first}");
    assert_eq!(first["to"]["relay"], "green", "{first}");
}

#[test]
fn a_bad_scenario_is_refused_at_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "name = \"bad\"\nduration_s = 5\n[[app]]\nname = \"green\"\nuser_count = 2\ndevices_per_user = 40\n").unwrap();
    let output = sim(&[path.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("bad.toml:6:20: [[app]] #1 devices_per_user: 1 to 16, not 40"), "{}", stderr(&output));
}
