//! The cross-app simulator: the very client and relay cores of Switchboard, driven over a virtual
//! network and clock, with faults, adversaries and invariants checked on every run.
//!
//! - [`scenario`]: the TOML files that describe a run, checked with line-numbered errors;
//! - `world`: the event loop (devices, relays, connections, traffic, churn);
//! - `network`: what happens to a frame on a link; `relay` and `client`: the cores' drivers;
//! - `ledger` and `thief`: the ground truth and the invariants checked against it;
//! - [`report`], [`trace`] and [`svg`]: what a run produces.
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
use trace::{Node, Trace, TraceEvent};

/// How a run is observed.
#[derive(Default)]
pub struct RunOptions {
    /// Every event, as JSON lines.
    pub trace: Option<Box<dyn Write>>,
    /// Events kept for the sequence diagram.
    pub diagram_events: usize,
    /// Called about once per simulated second with (now, end) in microseconds.
    pub progress: Option<Box<dyn FnMut(u64, u64)>>,
}

/// What a run produced.
pub struct RunResult {
    pub report: Report,
    /// The first events, for the sequence diagram.
    pub first_events: Vec<TraceEvent>,
    pub apps: Vec<String>,
    /// Each device's app (by index into `apps`).
    pub device_apps: Vec<usize>,
    pub latencies_us: Vec<u64>,
}

/// Why a run could not finish.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid scenario: {0}")]
    Scenario(#[from] ScenarioError),
    #[error("writing the trace: {0}")]
    Trace(std::io::Error),
}

/// Runs `scenario` with `seed`. The scenario is checked first (fields are public, so one made
/// in code may not be valid): the world relies on what [`Scenario::parse`] guarantees.
pub fn run(scenario: &Scenario, seed: u64, options: RunOptions) -> Result<RunResult, SimError> {
    scenario.validate()?;
    let started = Instant::now();
    let trace = Trace::new(options.diagram_events, options.trace);
    let mut world = world::World::new(scenario.clone(), seed, trace);
    if let Some(progress) = options.progress {
        world.on_progress(progress);
    }
    world.run();
    let trace = std::mem::replace(&mut world.trace, Trace::new(0, None));
    let events = trace.len();
    let first_events = trace.first.clone();
    let (trace_hash, write_error) = trace.finish();
    if let Some(error) = write_error {
        return Err(SimError::Trace(error));
    }
    let wall_s = started.elapsed().as_secs_f64();
    let report = Report::build(&mut world, seed, wall_s, trace_hash, events);
    let latencies_us = std::mem::take(&mut world.ledger.latencies_us);
    let device_apps = world.clients.iter().map(|c| c.app).collect();
    Ok(RunResult { report, first_events, apps: world.app_names.clone(), device_apps, latencies_us })
}

impl RunResult {
    /// The sequence diagram of the first events: two lanes per app (its devices, its relay).
    pub fn sequence_svg(&self) -> String {
        let lanes: Vec<String> = self.apps.iter().flat_map(|app| [format!("{app} devices"), format!("{app} relay")]).collect();
        let lane = |node: &Node, clients_app: &dyn Fn(usize) -> usize| match node {
            Node::Device(d) => 2 * clients_app(*d),
            Node::Relay(r) => 2 * r + 1,
        };
        let app_of = |device: usize| self.device_apps.get(device).copied().unwrap_or(0);
        let events: Vec<DiagramEvent> = self
            .first_events
            .iter()
            .filter_map(|event| {
                let (from, to, kind, label) = match event {
                    TraceEvent::Arrived { from, to, bytes, what, again, .. } => {
                        let label = if *again { format!("{what} {bytes} B (again)") } else { format!("{what} {bytes} B") };
                        (from, to, DiagramKind::Arrow, label)
                    }
                    TraceEvent::Fault { from, to, fault, .. } => {
                        let kind = if matches!(*fault, "drop" | "corrupt" | "partition") { DiagramKind::Lost } else { DiagramKind::Fault };
                        (from, to, kind, (*fault).to_owned())
                    }
                    TraceEvent::Reset { a, b, .. } => (a, b, DiagramKind::Fault, "reset".to_owned()),
                    TraceEvent::Crashed { relay, .. } => {
                        let lane = 2 * relay + 1;
                        return Some(DiagramEvent { at_us: event.at_us(), from: lane, to: lane, kind: DiagramKind::Fault, label: "crash".into() });
                    }
                    TraceEvent::Restarted { relay, .. } => {
                        let lane = 2 * relay + 1;
                        return Some(DiagramEvent { at_us: event.at_us(), from: lane, to: lane, kind: DiagramKind::Fault, label: "restart".into() });
                    }
                    TraceEvent::Adversary { relay, device, action, .. } => {
                        let (from, to) = (2 * relay + 1, 2 * app_of(*device));
                        return Some(DiagramEvent { at_us: event.at_us(), from, to, kind: DiagramKind::Fault, label: format!("adversary: {action}") });
                    }
                    _ => return None,
                };
                Some(DiagramEvent { at_us: event.at_us(), from: lane(from, &app_of), to: lane(to, &app_of), kind, label })
            })
            .collect();
        svg::sequence_diagram(&lanes, &events)
    }

    /// The latency distribution of first reads.
    pub fn latency_svg(&self) -> String {
        svg::latency_plot(&format!("{}: latency of {} first reads (seed {})", self.report.scenario, self.latencies_us.len(), self.report.seed), &self.latencies_us)
    }
}
