//! `switchboard sim`: runs a simulator scenario and reports what happened and which invariants
//! held. Exits with 1 when any invariant was violated.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use switchboard_sim::{Diagram, GroupStrategy, RunOptions, Scenario};

/// Runs shorter than this show no progress bar.
const QUIET_FOR: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(clap::Args)]
pub struct Args {
    /// The scenario file (TOML; see scenarios/).
    scenario: PathBuf,
    /// The seed of the run's one RNG: the same seed gives the same run and trace hash.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Prints the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Writes every event as a JSON line to FILE, naming devices (alice@green/1), relays (by
    /// their app: green) and groups (g0@green).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Writes sequence.svg (a sequence diagram; see the --svg-* options for which events) and
    /// latency.svg (the latency of every first read) to DIR.
    #[arg(long, value_name = "DIR")]
    svg: Option<PathBuf>,
    /// The sequence diagram starts at TIME of the run (2s, 2.5s, 2500ms; devices register during
    /// the first 2 s, then the traffic starts). By default: at the first message sent.
    #[arg(long, value_name = "TIME", value_parser = parse_time, requires = "svg")]
    svg_from: Option<u64>,
    /// The sequence diagram ends at TIME of the run (included). By default: at the end.
    #[arg(long, value_name = "TIME", value_parser = parse_time, requires = "svg")]
    svg_to: Option<u64>,
    /// The sequence diagram shows only the events of this device (name@app/n), or of every device
    /// of this user (name@app), each on a lane of its own. Repeat it for several.
    #[arg(long, value_name = "NAME", requires = "svg")]
    svg_device: Vec<String>,
    /// Events the sequence diagram shows at most: the first ones of its window.
    #[arg(long, value_name = "N", default_value_t = 60)]
    svg_events: usize,
    /// Overrides the scenario's group strategy; `both` runs the scenario once with each and
    /// prints the two reports (and, in text, a side-by-side comparison).
    #[arg(long, value_parser = ["sender-keys", "pairwise", "both"])]
    group_strategy: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.scenario).with_context(|| format!("reading {}", args.scenario.display()))?;
    let scenario = Scenario::parse(&text).map_err(|error| {
        let field = error.field.as_deref().map(|field| format!("{field}: ")).unwrap_or_default();
        anyhow::anyhow!("{}:{}:{}: {field}{}", args.scenario.display(), error.line, error.column, error.message)
    })?;
    if let (Some(from), Some(to)) = (args.svg_from, args.svg_to) {
        anyhow::ensure!(from <= to, "--svg-from is after --svg-to");
    }
    let strategies: Vec<GroupStrategy> = match args.group_strategy.as_deref() {
        None => vec![scenario.group_strategy],
        Some("sender-keys") => vec![GroupStrategy::SenderKeys],
        Some("pairwise") => vec![GroupStrategy::Pairwise],
        _ => vec![GroupStrategy::SenderKeys, GroupStrategy::Pairwise],
    };
    let mut reports = Vec::new();
    for strategy in strategies {
        let mut scenario = scenario.clone();
        scenario.group_strategy = strategy;
        let trace = match &args.trace {
            Some(path) => {
                let path = if reports.is_empty() { path.clone() } else { path.with_extension(format!("{strategy:?}.jsonl").to_lowercase()) };
                let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                Some(Box::new(std::io::BufWriter::new(file)) as Box<dyn std::io::Write>)
            }
            None => None,
        };
        let progress = progress_bar();
        let shown = progress.clone();
        let started = std::time::Instant::now();
        let mut visible = false;
        let options = RunOptions {
            trace,
            diagram: Diagram { from_us: args.svg_from, until_us: args.svg_to, devices: args.svg_device.clone(), max_events: args.svg_events },
            progress: Some(Box::new(move |now, end| {
                if !visible && started.elapsed() >= QUIET_FOR {
                    visible = true;
                    shown.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                    shown.enable_steady_tick(std::time::Duration::from_millis(200));
                }
                shown.set_length(end / 1_000_000);
                shown.set_position(now / 1_000_000);
            })),
        };
        let result = switchboard_sim::run(&scenario, args.seed, options)?;
        progress.finish_and_clear();
        if let Some(dir) = &args.svg {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let suffix = if reports.is_empty() { String::new() } else { format!("-{strategy:?}").to_lowercase() };
            std::fs::write(dir.join(format!("sequence{suffix}.svg")), result.sequence_svg())?;
            std::fs::write(dir.join(format!("latency{suffix}.svg")), result.latency_svg())?;
        }
        reports.push(result.report);
    }
    if args.json {
        let json = match reports.as_slice() {
            [one] => serde_json::to_string_pretty(one)?,
            several => serde_json::to_string_pretty(several)?,
        };
        println!("{json}");
    } else {
        for report in &reports {
            println!("{}", report.text());
        }
        if let [keys, pairwise] = reports.as_slice() {
            println!("{}", compare(keys, pairwise));
        }
    }
    let violated = reports.iter().any(|r| r.violations_total > 0);
    Ok(if violated { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// A bar, hidden until the run has taken [`QUIET_FOR`] (indicatif draws nothing when stderr is
/// not a terminal).
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::hidden();
    bar.set_style(ProgressStyle::with_template("{spinner} simulated {pos}/{len} s [{bar:40}] {elapsed}").expect("valid template"));
    bar
}

/// Sender Keys against pairwise sessions: CPU and bytes per app link.
fn compare(keys: &switchboard_sim::Report, pairwise: &switchboard_sim::Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("group strategies, side by side            sender-keys        pairwise\n");
    for (a, b) in keys.links.iter().zip(&pairwise.links) {
        let _ = writeln!(out, "  {:<36} {:>12} B {:>14} B", a.link, a.bytes, b.bytes);
    }
    for (a, b) in keys.apps.iter().zip(&pairwise.apps) {
        let _ = writeln!(out, "  {:<36} {:>10.0} ms {:>12.0} ms", format!("{} devices CPU", a.app), a.devices_cpu_ms, b.devices_cpu_ms);
        let _ = writeln!(out, "  {:<36} {:>10.0} ms {:>12.0} ms", format!("{} relay CPU", a.app), a.relay_cpu_ms, b.relay_cpu_ms);
    }
    out
}

/// A time of the run for the --svg-* options, in microseconds: `2s`, `2.5s`, `2500ms`, `2500000us`,
/// or seconds alone (`2`).
fn parse_time(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1e6,
        "ms" => 1e3,
        "us" | "µs" => 1.0,
        _ => return Err(format!("{text:?}: a time is a number with s, ms or us (2s, 2.5s, 2500ms)")),
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("{text:?}: a time is a number with s, ms or us (2s, 2.5s, 2500ms)"))?;
    if !value.is_finite() || value < 0.0 || value * scale > u64::MAX as f64 / 2.0 {
        return Err(format!("{text:?}: a time is 0 or more"));
    }
    Ok((value * scale).round() as u64)
}
