//! The trace names what it shows (devices, relays, groups), the sequence diagram shows the window
//! of time and the devices asked for, and neither changes the run's `trace_hash`.

use std::cell::RefCell;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;

use switchboard_sim::trace::TraceEvent;
use switchboard_sim::{Diagram, RunOptions, RunResult, Scenario, SimError};

fn basic() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/basic.toml");
    Scenario::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A writer the test keeps a handle on.
#[derive(Clone, Default)]
struct Shared(Rc<RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn run(diagram: Diagram, trace: Option<Shared>) -> RunResult {
    let options = RunOptions { trace: trace.map(|t| Box::new(t) as Box<dyn Write>), diagram, ..RunOptions::default() };
    switchboard_sim::run(&basic(), 1, options).expect("runs")
}

/// Every JSON line names devices (`alice@green/1`), relays (`green`) and groups (`g0@green`); no
/// participant is a bare index.
#[test]
fn the_json_trace_names_devices_relays_and_groups() {
    let buffer = Shared::default();
    let result = run(Diagram::default(), Some(buffer.clone()));
    let text = String::from_utf8(buffer.0.borrow().clone()).unwrap();
    let events: Vec<serde_json::Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(events.len() as u64, result.report.events);
    let devices: Vec<&str> = result.devices.iter().map(String::as_str).collect();
    assert!(devices.contains(&"alice@green/2") && devices.contains(&"frank@red/1"), "{devices:?}");
    let mut seen = [false; 4];
    for event in &events {
        for key in ["from", "to", "a", "b"] {
            match &event[key] {
                serde_json::Value::Null => {}
                serde_json::Value::String(device) => assert!(devices.contains(&device.as_str()), "{event}"),
                node => {
                    if let Some(device) = node.get("device") {
                        assert!(devices.contains(&device.as_str().unwrap_or("")), "{event}");
                        seen[0] = true;
                    } else {
                        assert!(result.apps.iter().any(|app| node["relay"] == app.as_str()), "{event}");
                        seen[1] = true;
                    }
                }
            }
        }
        if let Some(device) = event.get("device") {
            assert!(devices.contains(&device.as_str().unwrap_or("")), "{event}");
            seen[2] = true;
        }
        if let Some(group) = event.get("group").filter(|g| !g.is_null()) {
            assert_eq!(group, "g0@green", "{event}");
            seen[3] = true;
        }
    }
    assert_eq!(seen, [true; 4], "devices in frames, relays, devices of events, groups");
}

/// How a run is observed — a trace written, a diagram of another window, of a device — leaves its
/// trace hash as it is: the hash covers the events, not how they are shown.
#[test]
fn observing_a_run_does_not_change_its_trace_hash() {
    let plain = run(Diagram { max_events: 0, ..Diagram::default() }, None).report.trace_hash;
    let watched = run(
        Diagram { from_us: Some(3_000_000), until_us: Some(9_000_000), devices: vec!["carol@blue".into()], max_events: 500 },
        Some(Shared::default()),
    );
    assert_eq!(watched.report.trace_hash, plain);
    assert_eq!(run(Diagram::default(), None).report.trace_hash, plain);
}

/// By default the diagram opens on the first message, after the devices registered, and its
/// labels name the device of a lane several share.
#[test]
fn the_default_diagram_starts_at_the_first_message() {
    let result = run(Diagram::default(), None);
    assert_eq!(result.diagram_events.len(), 60);
    assert!(result.diagram_events_in_window > 60);
    assert!(matches!(result.diagram_events[0], TraceEvent::Message { .. }), "{:?}", result.diagram_events[0]);
    assert!(result.diagram_events[0].at_us() >= 2_000_000);
    let svg = result.sequence_svg();
    assert!(svg.contains("from the first message") && svg.contains("the first 60 of"), "{svg}");
    assert!(svg.contains(" · alice@green/") || svg.contains(">alice@green/"), "labels name devices: {svg}");
}

/// A window of time and a device: only events of that time and of her devices (and her relay),
/// her device on a lane of its own, lanes nobody uses left out.
#[test]
fn the_diagram_shows_the_window_and_the_devices_asked_for() {
    let diagram = Diagram { from_us: Some(5_000_000), until_us: Some(8_000_000), devices: vec!["carol@blue".into()], max_events: 1000 };
    let result = run(diagram, None);
    assert!(result.diagram_events.len() > 5, "{:?}", result.diagram_events);
    assert_eq!(result.diagram_events.len() as u64, result.diagram_events_in_window);
    let carol: Vec<usize> = result.devices.iter().enumerate().filter(|(_, name)| name.starts_with("carol@blue/")).map(|(i, _)| i).collect();
    assert_eq!(result.diagram_devices, carol);
    for event in &result.diagram_events {
        assert!((5_000_000..=8_000_000).contains(&event.at_us()), "{event:?}");
        let json = serde_json::to_value(event).unwrap();
        let mentions = |index: usize| {
            ["from", "to", "a", "b"].iter().any(|key| json[key]["device"] == index) || json["device"] == index || json["from"] == index
        };
        assert!(carol.iter().any(|d| mentions(*d)), "not carol's: {event:?}");
    }
    let svg = result.sequence_svg();
    assert!(svg.contains(">carol@blue/1<") && svg.contains(">blue relay<"), "{svg}");
    assert!(!svg.contains(">green relay<") && !svg.contains(">red devices<"), "unused lanes left in: {svg}");
    assert!(svg.contains("from 5.000 s to 8.000 s · carol@blue"), "{svg}");
}

/// A device the scenario does not have is refused before the run.
#[test]
fn a_diagram_of_an_unknown_device_is_refused() {
    for name in ["mallory@green", "alice@green/9", "alice@nowhere"] {
        let options = RunOptions { diagram: Diagram { devices: vec![name.into()], ..Diagram::default() }, ..RunOptions::default() };
        match switchboard_sim::run(&basic(), 1, options) {
            Err(SimError::UnknownDevice { name: refused }) => assert_eq!(refused, name),
            Err(other) => panic!("{name}: {other}"),
            Ok(_) => panic!("{name} accepted"),
        }
    }
}

/// A writer whose disk is full.
struct Full;

impl Write for Full {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full"))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Errors keep their cause as their source: a trace that cannot be written fails the run with the
/// I/O error behind it, and an invalid scenario with the scenario's error (field, line, column).
#[test]
fn errors_keep_their_source() {
    use std::error::Error as _;
    let options = RunOptions { trace: Some(Box::new(Full)), ..RunOptions::default() };
    let error = switchboard_sim::run(&basic(), 1, options).err().expect("the trace cannot be written");
    assert!(matches!(error, SimError::Trace(_)), "{error:?}");
    let source = error.source().expect("the I/O error is its source");
    assert_eq!(source.downcast_ref::<std::io::Error>().map(std::io::Error::kind), Some(std::io::ErrorKind::StorageFull));
    assert_eq!(error.to_string(), "writing the trace", "the cause is not repeated in the message");

    let mut scenario = basic();
    scenario.traffic.messages = u64::MAX;
    let error = switchboard_sim::run(&scenario, 1, RunOptions::default()).err().expect("refused");
    let source = error.source().and_then(|s| s.downcast_ref::<switchboard_sim::ScenarioError>()).expect("the scenario's error is its source");
    assert_eq!(source.field.as_deref(), Some("[traffic] messages"));
}
