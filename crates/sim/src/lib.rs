//! The cross-app simulator: the very client and relay cores of Switchboard, driven over a virtual
//! network and clock, with faults, adversaries and invariants checked on every run.
//!
//! - [`scenario`]: the TOML files that describe a run, checked with errors that name the field
//!   at fault, its line and column;
//! - `world`: the event loop (devices, relays, connections, traffic, churn);
//! - `network`: what happens to a frame on a link; `relay` and `client`: the cores' drivers;
//! - `ledger` and `thief`: the ground truth and the invariants checked against it;
//! - [`report`], [`trace`] and [`svg`]: what a run produces — the report, every event (as JSON
//!   lines naming devices, relays and groups), a sequence diagram of a window chosen by time and
//!   device ([`Diagram`]) and the latency distribution.
//!
//! [`run`] runs a scenario; `examples/run_scenario.rs` shows it, and reading the report, in forty
//! lines.
//!
//! One RNG, seeded with the run's seed, feeds everything random — the network, the traffic, and
//! every key the devices make (a relay core owns its generator, so each is seeded from that one
//! RNG when it starts or restarts) — so a scenario and a seed give the same run, bit for bit, and
//! the same `trace_hash`. Wall-clock time is measured (CPU per app, the run's length) but never
//! reaches the trace.

mod client;
pub mod harvest;
mod ledger;
pub use ledger::OUTSIDER_READ;
pub use report::FOREIGN_STATE;
mod network;
mod relay;
pub mod report;
pub mod scenario;
pub mod svg;
mod thief;
pub mod trace;
mod world;

use std::io::Write;
use std::time::Instant;

pub use ledger::Violation;
pub use report::Report;
pub use scenario::{GroupStrategy, Scenario, ScenarioError};
pub use thief::{Bucket, TheftReport};
pub use world::FaultCounts;

use svg::{DiagramEvent, DiagramKind};
use trace::{DiagramWindow, Node, Trace, TraceEvent};

/// How a run is observed.
#[derive(Default)]
pub struct RunOptions {
    /// Every event, as JSON lines naming devices (`alice@green/1`), relays (`green`) and groups.
    pub trace: Option<Box<dyn Write>>,
    /// The events the sequence diagram shows.
    pub diagram: Diagram,
    /// Called about once per simulated second with (now, end) in microseconds.
    pub progress: Option<Box<dyn FnMut(u64, u64)>>,
}

/// Which events the sequence diagram ([`RunResult::sequence_svg`]) shows: those of a window of
/// time, of some devices, at most so many. By default the first 60 events from the first message
/// sent (the devices register before it), of every device.
#[derive(Clone, Debug)]
pub struct Diagram {
    /// From this time, in microseconds from the start of the run (the traffic starts at 2 s);
    /// none: from the first message sent.
    pub from_us: Option<u64>,
    /// Up to this time (included), in microseconds from the start of the run; none: to the end.
    pub until_us: Option<u64>,
    /// Only the events of these devices: `alice@green` for every device of hers, `alice@green/2`
    /// for one. Each has a lane of its own; every device when empty.
    pub devices: Vec<String>,
    /// At most this many events (the first ones of the window).
    pub max_events: usize,
}

impl Default for Diagram {
    fn default() -> Diagram {
        Diagram { from_us: None, until_us: None, devices: Vec::new(), max_events: 60 }
    }
}

/// What a run produced.
#[non_exhaustive]
pub struct RunResult {
    /// The report: counts, latency, load, faults, adversaries, invariants and violations.
    pub report: Report,
    /// The events the diagram's window kept, in order (every kind but [`TraceEvent::Sent`]: the
    /// diagram draws a frame when it arrives, or is lost).
    pub diagram_events: Vec<TraceEvent>,
    /// Events in the window, kept or not.
    pub diagram_events_in_window: u64,
    /// The diagram's window, as asked.
    pub diagram: Diagram,
    /// The devices the diagram gives lanes of their own (indices into `devices`).
    pub diagram_devices: Vec<usize>,
    /// The apps (each with its relay), in scenario order: what [`Node::Relay`] indexes.
    pub apps: Vec<String>,
    /// Every device's name (`alice@green/1`): what [`Node::Device`] and the device fields of a
    /// [`TraceEvent`] index.
    pub devices: Vec<String>,
    /// Each device's app (by index into `apps`).
    pub device_apps: Vec<usize>,
    /// Every group's id (`g0@green`), in the order the run created them.
    pub groups: Vec<String>,
    /// The latency of every first read, in microseconds, in the order they happened.
    pub latencies_us: Vec<u64>,
}

/// Why a run could not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The scenario is not valid (made or changed in code: a parsed one was checked already).
    #[error("invalid scenario")]
    Scenario(#[from] ScenarioError),
    /// The diagram names a device the scenario does not have.
    #[error("no device {name:?} in this scenario (name@app for every device of a user, name@app/n for one)")]
    UnknownDevice {
        /// The name as given.
        name: String,
    },
    /// The trace could not be written.
    #[error("writing the trace")]
    Trace(#[source] std::io::Error),
}

/// Runs `scenario` with `seed`. The scenario is checked first (fields are public, so one made
/// in code may not be valid): the world relies on what [`Scenario::parse`] guarantees.
pub fn run(scenario: &Scenario, seed: u64, options: RunOptions) -> Result<RunResult, SimError> {
    scenario.validate()?;
    let started = Instant::now();
    let mut world = world::World::new(scenario.clone(), seed, Trace::new(options.trace));
    let devices = world.trace.names.devices.clone();
    let device_apps: Vec<usize> = world.clients.iter().map(|c| c.app).collect();
    let mut chosen: Vec<usize> = Vec::new();
    for name in &options.diagram.devices {
        let found: Vec<usize> = if name.contains('/') {
            devices.iter().position(|device| device == name).into_iter().collect()
        } else {
            world.users.iter().filter(|user| user.name == *name).flat_map(|user| user.devices.iter().copied()).collect()
        };
        if found.is_empty() {
            return Err(SimError::UnknownDevice { name: name.clone() });
        }
        chosen.extend(found.into_iter().filter(|device| !chosen.contains(device)).collect::<Vec<_>>());
    }
    let mut relays: Vec<usize> = chosen.iter().map(|device| device_apps[*device]).collect();
    relays.dedup();
    let window = DiagramWindow {
        from_us: options.diagram.from_us,
        until_us: options.diagram.until_us,
        devices: chosen.clone(),
        max_events: options.diagram.max_events,
    };
    world.trace.keep(window, relays);
    if let Some(progress) = options.progress {
        world.on_progress(progress);
    }
    world.run();
    let trace = std::mem::replace(&mut world.trace, Trace::new(None));
    let events = trace.len();
    let groups = trace.names.groups.clone();
    let (diagram_events, diagram_events_in_window) = (trace.kept.clone(), trace.in_window);
    let (trace_hash, write_error) = trace.finish();
    if let Some(error) = write_error {
        return Err(SimError::Trace(error));
    }
    let wall_s = started.elapsed().as_secs_f64();
    let report = Report::build(&mut world, seed, wall_s, trace_hash, events);
    let latencies_us = std::mem::take(&mut world.ledger.latencies_us);
    Ok(RunResult {
        report,
        diagram_events,
        diagram_events_in_window,
        diagram: options.diagram,
        diagram_devices: chosen,
        apps: world.app_names.clone(),
        devices,
        device_apps,
        groups,
        latencies_us,
    })
}

impl RunResult {
    /// The sequence diagram of the window's events: per app, a lane for each device asked for, one
    /// for its other devices and one for its relay (lanes no event uses are left out). Labels name
    /// the device when it shares its lane with others.
    pub fn sequence_svg(&self) -> String {
        #[derive(Clone, Copy, PartialEq)]
        enum Lane {
            Device(usize),
            Devices(usize),
            Relay(usize),
        }
        let mut lanes: Vec<Lane> = Vec::new();
        for app in 0..self.apps.len() {
            lanes.extend(self.diagram_devices.iter().filter(|d| self.device_apps.get(**d) == Some(&app)).map(|d| Lane::Device(*d)));
            lanes.extend([Lane::Devices(app), Lane::Relay(app)]);
        }
        let app_of = |device: usize| self.device_apps.get(device).copied().unwrap_or(0);
        let lane_of = |node: Node| -> Lane {
            match node {
                Node::Device(d) if self.diagram_devices.contains(&d) => Lane::Device(d),
                Node::Device(d) => Lane::Devices(app_of(d)),
                Node::Relay(r) => Lane::Relay(r),
            }
        };
        let name = |device: usize| self.devices.get(device).map_or("?", String::as_str);
        let group = |group: usize| self.groups.get(group).map_or("?", String::as_str);
        // " · alice@green/1" when the device shares its lane, so a label always says whose it is.
        let whose = |node: Node| match (node, lane_of(node)) {
            (Node::Device(d), Lane::Devices(_)) => format!(" · {}", name(d)),
            _ => String::new(),
        };
        let on = |device: usize, text: String| -> (Lane, Lane, DiagramKind, String) {
            let lane = lane_of(Node::Device(device));
            let label = if matches!(lane, Lane::Devices(_)) { format!("{}: {text}", name(device)) } else { text };
            (lane, lane, DiagramKind::Note, label)
        };
        let rows: Vec<(u64, Lane, Lane, DiagramKind, String)> = self
            .diagram_events
            .iter()
            .filter_map(|event| {
                let (from, to, kind, label) = match *event {
                    // A frame is drawn when it arrives, or is lost (the window keeps no sends).
                    TraceEvent::Sent { .. } => return None,
                    TraceEvent::Arrived { from, to, bytes, what, again, .. } => {
                        let again = if again { " (again)" } else { "" };
                        (lane_of(from), lane_of(to), DiagramKind::Arrow, format!("{what} {bytes} B{again}{}{}", whose(from), whose(to)))
                    }
                    TraceEvent::Fault { from, to, fault, .. } => {
                        let kind = if matches!(fault, "drop" | "corrupt" | "partition") { DiagramKind::Lost } else { DiagramKind::Fault };
                        (lane_of(from), lane_of(to), kind, format!("{fault}{}{}", whose(from), whose(to)))
                    }
                    TraceEvent::Reset { a, b, .. } => (lane_of(a), lane_of(b), DiagramKind::Fault, format!("reset{}{}", whose(a), whose(b))),
                    TraceEvent::Crashed { relay, .. } => (Lane::Relay(relay), Lane::Relay(relay), DiagramKind::Fault, "crash".into()),
                    TraceEvent::Restarted { relay, .. } => (Lane::Relay(relay), Lane::Relay(relay), DiagramKind::Fault, "restart".into()),
                    TraceEvent::Adversary { relay, device, action, .. } => {
                        (Lane::Relay(relay), lane_of(Node::Device(device)), DiagramKind::Fault, format!("adversary: {action} · {}", name(device)))
                    }
                    TraceEvent::Message { message, from, group: Some(g), recipients, .. } => {
                        on(from, format!("sends message {message} to {} ({recipients} devices)", group(g)))
                    }
                    TraceEvent::Message { message, from, group: None, recipients, .. } => on(from, format!("sends message {message} ({recipients} devices)")),
                    TraceEvent::Read { message, device, .. } => on(device, format!("reads message {message}")),
                    TraceEvent::Refused { device, reason, .. } => on(device, format!("refuses an envelope: {reason}")),
                    TraceEvent::Membership { group: g, device, change, .. } => on(device, format!("{}: {change}", group(g))),
                    TraceEvent::Offline { device, .. } => on(device, "goes offline".into()),
                    TraceEvent::Online { device, .. } => on(device, "comes back online".into()),
                    TraceEvent::Theft { device, .. } => {
                        let (lane, _, _, label) = on(device, "stolen: its whole state copied".into());
                        (lane, lane, DiagramKind::Fault, label)
                    }
                };
                Some((event.at_us(), from, to, kind, label))
            })
            .collect();
        let used: Vec<Lane> = lanes.iter().copied().filter(|lane| rows.iter().any(|(_, from, to, ..)| from == lane || to == lane)).collect();
        let lanes = if used.is_empty() { lanes } else { used };
        let index = |lane: Lane| lanes.iter().position(|l| *l == lane).unwrap_or(usize::MAX);
        let titles: Vec<String> = lanes
            .iter()
            .map(|lane| match *lane {
                Lane::Device(d) => name(d).to_owned(),
                Lane::Devices(a) if self.diagram_devices.iter().any(|d| app_of(*d) == a) => format!("other {} devices", self.apps[a]),
                Lane::Devices(a) => format!("{} devices", self.apps[a]),
                Lane::Relay(a) => format!("{} relay", self.apps[a]),
            })
            .collect();
        let events: Vec<DiagramEvent> =
            rows.into_iter().map(|(at_us, from, to, kind, label)| DiagramEvent { at_us, from: index(from), to: index(to), kind, label }).collect();
        svg::sequence_diagram(&self.diagram_title(), &titles, &events)
    }

    /// What the diagram shows, in one line: the run, the window, the devices, how many events.
    fn diagram_title(&self) -> String {
        let seconds = |us: u64| format!("{}.{:03} s", us / 1_000_000, us % 1_000_000 / 1000);
        let from = match (self.diagram.from_us, self.diagram_events.first()) {
            (Some(from), _) => format!("from {}", seconds(from)),
            (None, Some(first)) => format!("from the first message ({})", seconds(first.at_us())),
            (None, None) => "from the first message".to_owned(),
        };
        let until = self.diagram.until_us.map_or_else(|| "to the end".to_owned(), |until| format!("to {}", seconds(until)));
        let devices = if self.diagram.devices.is_empty() { "every device".to_owned() } else { self.diagram.devices.join(", ") };
        let shown = self.diagram_events.len() as u64;
        let count = if shown < self.diagram_events_in_window {
            format!("the first {shown} of {} events", self.diagram_events_in_window)
        } else {
            format!("{shown} events")
        };
        format!("{} · seed {} · {from} {until} · {devices} · {count}", self.report.scenario, self.report.seed)
    }

    /// The latency distribution of first reads.
    pub fn latency_svg(&self) -> String {
        svg::latency_plot(&format!("{}: latency of {} first reads (seed {})", self.report.scenario, self.latencies_us.len(), self.report.seed), &self.latencies_us)
    }
}
