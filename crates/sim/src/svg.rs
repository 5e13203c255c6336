//! Hand-written SVG renderers for the simulator: a sequence diagram of frames
//! between lanes, and a latency histogram. No dependencies, no floats leaking
//! into text as NaN/inf, and byte-for-byte deterministic output.

use std::fmt::Write as _;

/// What one row of the sequence diagram shows.
#[derive(Clone, Debug, PartialEq)]
pub enum DiagramKind {
    /// A frame that arrived: an arrow from lane `from` to lane `to`.
    Arrow,
    /// A frame lost on the way (dropped, or on a connection that was reset): an arrow that
    /// ends in a cross halfway.
    Lost,
    /// A fault (corruption caught, partition, duplicate, replay, crash, restart, theft…): a red
    /// marker on lane `from`, and a dashed line to `to` when it is another lane.
    Fault,
    /// Something a participant did on its own (sent or read a message, went offline…): a grey
    /// marker on lane `from` (`to` is ignored) with the label beside it.
    Note,
}

/// One event of the diagram, in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct DiagramEvent {
    /// Virtual time in microseconds.
    pub at_us: u64,
    /// Lane the event starts on (index into `lanes`); out of range means the event is skipped.
    pub from: usize,
    /// Lane the event ends on (index into `lanes`); out of range means the event is skipped.
    pub to: usize,
    /// How the row is drawn.
    pub kind: DiagramKind,
    /// Short text shown beside the arrow ("deliver 312 B", "drop"); cut to 64 characters.
    pub label: String,
}

const FONT: &str = r#"font-family="monospace" font-size="12""#;
const LABEL_MAX_CHARS: usize = 64;

/// Escapes the five XML special characters so any text is safe in content and attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// Keeps at most 64 characters (not bytes, so never splits UTF-8), the last being "…".
fn truncate(label: &str) -> String {
    if label.chars().count() <= LABEL_MAX_CHARS {
        return label.to_string();
    }
    let mut short: String = label.chars().take(LABEL_MAX_CHARS - 1).collect();
    short.push('…');
    short
}

/// Microseconds as "12.345" milliseconds, using integer math only (exact and deterministic).
fn ms(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

/// Milliseconds with as many decimals as a plot spanning `span_us` needs (none past 100 ms).
fn ms_rounded(us: u64, span_us: u64) -> String {
    match span_us {
        0..10_000 => ms(us),
        10_000..100_000 => format!("{}.{}", us / 1000, us % 1000 / 100),
        _ => (us / 1000).to_string(),
    }
}

fn svg_open(out: &mut String, width: u64, height: u64) {
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" height="{height}" viewBox="0 0 {width} {height}">"#
    );
    let _ = writeln!(out, r#"<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>"#);
}

fn text(out: &mut String, x: f64, y: f64, anchor: &str, fill: &str, content: &str) {
    let _ = writeln!(
        out,
        r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" fill="{fill}" {FONT}>{}</text>"#,
        escape(content)
    );
}

fn line(out: &mut String, (x1, y1): (f64, f64), (x2, y2): (f64, f64), stroke: &str, extra: &str) {
    let _ = writeln!(
        out,
        r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}" stroke-width="1.5"{extra}/>"#
    );
}

// Sequence diagram geometry, in pixels.
const TIME_MARGIN: f64 = 100.0;
const LANE_WIDTH: f64 = 200.0;
const HEADER: f64 = 50.0;
const ROW: f64 = 28.0;
const SELF_LOOP: f64 = 30.0;
/// Room for the diagram's title, above the lanes' titles, and the width that keeps it inside.
const TITLE: f64 = 24.0;
const TITLE_WIDTH: f64 = 760.0;

/// A sequence diagram: `title` (none when empty) above one vertical lane per entry of `lanes`,
/// titled at the top; one evenly spaced row per event, time flowing down and printed in the left
/// margin; arrows for frames, red markers for faults, grey arrows with a red cross for lost
/// frames, grey markers for notes. Events naming a lane out of range are skipped. The output is
/// deterministic, standalone SVG 1.1 with every piece of caller text escaped.
pub fn sequence_diagram(title: &str, lanes: &[String], events: &[DiagramEvent]) -> String {
    // Filter first so skipped events leave no gaps between rows.
    let shown: Vec<&DiagramEvent> =
        events.iter().filter(|e| e.from < lanes.len() && (e.to < lanes.len() || e.kind == DiagramKind::Note)).collect();
    let top = if title.is_empty() { 0.0 } else { TITLE };
    let lane_x = |i: usize| TIME_MARGIN + LANE_WIDTH * (i as f64 + 0.5);
    let width = (TIME_MARGIN + LANE_WIDTH * lanes.len().max(1) as f64).max(TITLE_WIDTH) as u64;
    let header = top + HEADER;
    let bottom = header + ROW * (shown.len() as f64 + 1.0);
    let height = (bottom + 20.0) as u64;

    let mut out = String::new();
    svg_open(&mut out, width, height);
    if !title.is_empty() {
        text(&mut out, 10.0, 20.0, "start", "#000", title);
    }
    out.push_str(concat!(
        "<defs>\n",
        r##"<marker id="arrowhead" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#222"/></marker>"##,
        "\n</defs>\n"
    ));
    for (i, lane) in lanes.iter().enumerate() {
        text(&mut out, lane_x(i), header - 20.0, "middle", "#000", &truncate(lane));
        line(&mut out, (lane_x(i), header - 10.0), (lane_x(i), bottom), "#bbb", "");
    }
    for (row, event) in shown.iter().enumerate() {
        let y = header + ROW * (row as f64 + 1.0);
        let x1 = lane_x(event.from);
        let x2 = if event.kind == DiagramKind::Note { x1 } else { lane_x(event.to) };
        let label = truncate(&event.label);
        text(&mut out, TIME_MARGIN - 10.0, y + 4.0, "end", "#555", &format!("{} ms", ms(event.at_us)));
        match event.kind {
            DiagramKind::Arrow if x1 == x2 => {
                // A frame to the same lane: a small loop back onto the lane.
                let _ = writeln!(
                    out,
                    r##"<path d="M{x1:.1},{:.1} h{SELF_LOOP} v10 h-{SELF_LOOP}" fill="none" stroke="#222" stroke-width="1.5" marker-end="url(#arrowhead)"/>"##,
                    y - 5.0
                );
                text(&mut out, x1 + SELF_LOOP + 6.0, y + 4.0, "start", "#222", &label);
            }
            DiagramKind::Arrow => {
                line(&mut out, (x1, y), (x2, y), "#222", r#" marker-end="url(#arrowhead)""#);
                text(&mut out, (x1 + x2) / 2.0, y - 4.0, "middle", "#222", &label);
            }
            DiagramKind::Lost => {
                // Grey stub to the midpoint (or a short stub for a same-lane frame), then a red cross.
                let end = if x1 == x2 { x1 + SELF_LOOP } else { (x1 + x2) / 2.0 };
                line(&mut out, (x1, y), (end, y), "#999", r#" stroke-dasharray="4 3""#);
                line(&mut out, (end - 5.0, y - 5.0), (end + 5.0, y + 5.0), "#d00", "");
                line(&mut out, (end - 5.0, y + 5.0), (end + 5.0, y - 5.0), "#d00", "");
                text(&mut out, end, y - 7.0, "middle", "#777", &label);
            }
            DiagramKind::Note => {
                let _ = writeln!(out, r##"<circle cx="{x1:.1}" cy="{y:.1}" r="4" fill="#888"/>"##);
                text(&mut out, x1 + 8.0, y + 4.0, "start", "#444", &label);
            }
            DiagramKind::Fault => {
                if x1 != x2 {
                    line(&mut out, (x1, y), (x2, y), "#d00", r#" stroke-dasharray="5 4""#);
                }
                let _ = writeln!(out, r##"<circle cx="{x1:.1}" cy="{y:.1}" r="5" fill="#d00"/>"##);
                // Put the label on the side away from the dashed line.
                let (lx, anchor) = if x2 > x1 { (x1 - 9.0, "end") } else { (x1 + 9.0, "start") };
                text(&mut out, lx, y + 4.0, anchor, "#d00", &label);
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

// Latency plot geometry, in pixels.
const PLOT_W: f64 = 640.0;
const PLOT_H: f64 = 300.0;
const PLOT_LEFT: f64 = 70.0;
const PLOT_TOP: f64 = 60.0;
const BINS: usize = 40;

/// Nearest-rank percentile of non-empty sorted values: the ceil(p/100 * n)-th smallest.
pub(crate) fn percentile(sorted: &[u64], p: u64) -> u64 {
    let rank = (p as usize * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// A latency distribution: a histogram of `latencies_us` in 40 bins over [0, max] (x in ms, y
/// in counts), with lines at p50, p90, p99 (nearest rank) and the maximum, ticks, and `title`.
/// No values give a picture that says so; equal or huge values draw without NaN or infinity.
/// The output is deterministic, standalone SVG 1.1.
pub fn latency_plot(title: &str, latencies_us: &[u64]) -> String {
    let (width, height) = ((PLOT_LEFT + PLOT_W + 30.0) as u64, (PLOT_TOP + PLOT_H + 60.0) as u64);
    let mut out = String::new();
    svg_open(&mut out, width, height);
    text(&mut out, width as f64 / 2.0, 24.0, "middle", "#000", title);
    if latencies_us.is_empty() {
        text(&mut out, width as f64 / 2.0, height as f64 / 2.0, "middle", "#555", "no reads");
        out.push_str("</svg>\n");
        return out;
    }
    let mut sorted = latencies_us.to_vec();
    sorted.sort_unstable();
    let max = *sorted.last().unwrap_or(&0);
    // A span of at least 1 µs keeps every division finite when all values are 0.
    let span = max.max(1);
    let mut counts = [0u64; BINS];
    for &v in &sorted {
        // u128 so v * BINS cannot overflow for huge values; v == max lands in the last bin.
        let bin = (v as u128 * BINS as u128 / span as u128).min(BINS as u128 - 1) as usize;
        counts[bin] += 1;
    }
    // Round the y range up to a multiple of 4 so the 5 ticks are distinct integers.
    let tallest = counts.iter().copied().max().unwrap_or(1).max(1);
    let y_step = tallest.div_ceil(4);
    let y_top = y_step * 4;
    let x_of = |us: u64| PLOT_LEFT + us as f64 / span as f64 * PLOT_W;
    let y_of = |count: u64| PLOT_TOP + PLOT_H - count as f64 / y_top as f64 * PLOT_H;
    let base = PLOT_TOP + PLOT_H;

    let _ = writeln!(out, "<text x=\"{:.1}\" y=\"40\" text-anchor=\"middle\" fill=\"#555\" {FONT}>n = {}</text>", width as f64 / 2.0, sorted.len());
    let bar_w = PLOT_W / BINS as f64;
    for (i, &count) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
        let (x, y) = (PLOT_LEFT + bar_w * i as f64, y_of(count));
        let _ = writeln!(
            out,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{:.1}" fill="#6a9fd8" stroke="#fff" stroke-width="0.5"/>"##,
            base - y
        );
    }
    // Axes, then ticks: x at quarters of the span, y at multiples of y_step.
    line(&mut out, (PLOT_LEFT, base), (PLOT_LEFT + PLOT_W, base), "#000", "");
    line(&mut out, (PLOT_LEFT, PLOT_TOP), (PLOT_LEFT, base), "#000", "");
    for k in 0..=4u64 {
        let us = (span as u128 * k as u128 / 4) as u64;
        let x = x_of(us);
        line(&mut out, (x, base), (x, base + 5.0), "#000", "");
        // The last tick label ends at the axis' end, so it stays inside the picture.
        let anchor = if k == 4 { "end" } else { "middle" };
        text(&mut out, x, base + 18.0, anchor, "#000", &ms_rounded(us, span));
        let y = y_of(y_step * k);
        line(&mut out, (PLOT_LEFT - 5.0, y), (PLOT_LEFT, y), "#000", "");
        text(&mut out, PLOT_LEFT - 8.0, y + 4.0, "end", "#000", &(y_step * k).to_string());
    }
    text(&mut out, PLOT_LEFT + PLOT_W / 2.0, base + 40.0, "middle", "#000", "latency (ms)");
    text(&mut out, 16.0, PLOT_TOP - 10.0, "start", "#000", "count");
    // Marker labels are stacked on separate rows so equal percentiles stay readable.
    let markers = [
        ("p50", percentile(&sorted, 50), "#2a2"),
        ("p90", percentile(&sorted, 90), "#e80"),
        ("p99", percentile(&sorted, 99), "#d00"),
        ("max", max, "#80c"),
    ];
    for (row, (name, value, color)) in markers.iter().enumerate() {
        let x = x_of(*value);
        line(&mut out, (x, PLOT_TOP), (x, base), color, r#" stroke-dasharray="4 2""#);
        let (lx, anchor) = if x > PLOT_LEFT + PLOT_W * 0.7 { (x - 4.0, "end") } else { (x + 4.0, "start") };
        text(&mut out, lx, PLOT_TOP + 12.0 + 14.0 * row as f64, anchor, color, &format!("{name} {} ms", ms_rounded(*value, span)));
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks every opening tag is closed in order (self-closing tags count as closed),
    /// and that no stray `<` or `>` appears in text.
    fn assert_balanced(svg: &str) {
        assert!(svg.starts_with("<svg"), "starts with <svg");
        assert!(svg.ends_with("</svg>\n"), "ends with </svg>");
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            assert!(!rest[..open].contains('>'), "stray > in text");
            let close = rest[open..].find('>').expect("unterminated tag") + open;
            let tag = &rest[open + 1..close];
            assert!(!tag.contains('<'), "stray < inside tag {tag}");
            if let Some(closing) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(closing.trim()), "mismatched </{closing}>");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().expect("tag name"));
            }
            rest = &rest[close + 1..];
        }
        assert!(stack.is_empty(), "unclosed tags: {stack:?}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "non-finite number in output");
    }

    fn event(at_us: u64, from: usize, to: usize, kind: DiagramKind, label: &str) -> DiagramEvent {
        DiagramEvent { at_us, from, to, kind, label: label.to_string() }
    }

    fn lanes() -> Vec<String> {
        vec!["green devices".into(), "green relay".into(), "a<b&\"c".into()]
    }

    #[test]
    fn sequence_diagram_is_balanced_escaped_and_deterministic() {
        let events = vec![
            event(12_345, 0, 1, DiagramKind::Arrow, "send 312 B"),
            event(13_000, 1, 2, DiagramKind::Lost, "drop <x> & 'y'"),
            event(14_000, 2, 2, DiagramKind::Fault, "relay crash"),
            event(15_000, 2, 0, DiagramKind::Fault, "partition"),
            event(16_000, 1, 1, DiagramKind::Arrow, "self"),
            event(17_000, 1, 1, DiagramKind::Lost, &"x".repeat(100)),
        ];
        let svg = sequence_diagram("", &lanes(), &events);
        assert_balanced(&svg);
        assert!(svg.contains("a&lt;b&amp;&quot;c") && !svg.contains("a<b"));
        assert!(svg.contains("drop &lt;x&gt; &amp; &apos;y&apos;"));
        assert!(svg.contains("12.345 ms"));
        assert!(svg.contains(&format!("{}…", "x".repeat(63))) && !svg.contains(&"x".repeat(64)));
        assert_eq!(svg, sequence_diagram("", &lanes(), &events));
    }

    #[test]
    fn sequence_diagram_skips_out_of_range_lanes() {
        let events = vec![
            event(1_000, 0, 9, DiagramKind::Arrow, "bad to"),
            event(2_000, 7, 0, DiagramKind::Fault, "bad from"),
            event(3_000, 0, 1, DiagramKind::Arrow, "good"),
        ];
        let svg = sequence_diagram("", &lanes(), &events);
        assert_balanced(&svg);
        assert!(!svg.contains("bad to") && !svg.contains("bad from") && svg.contains("good"));
        // Skipped rows leave no gap: the diagram is the same size as with only the good event.
        let only_good = sequence_diagram("", &lanes(), &events[2..]);
        assert_eq!(svg, only_good);
    }

    #[test]
    fn sequence_diagram_empty_cases() {
        let svg = sequence_diagram("", &lanes(), &[]);
        assert_balanced(&svg);
        assert!(svg.contains("green relay"));
        assert_balanced(&sequence_diagram("", &[], &[event(0, 0, 0, DiagramKind::Arrow, "x")]));
    }

    #[test]
    fn latency_plot_percentiles_and_escaping() {
        let values: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let svg = latency_plot("latency <green> & \"red\"", &values);
        assert_balanced(&svg);
        assert!(svg.contains("latency &lt;green&gt; &amp; &quot;red&quot;"));
        // Over a 100 ms span, whole milliseconds; below 10 ms, microseconds.
        assert!(svg.contains("p50 50 ms") && svg.contains("p90 90 ms"));
        assert!(svg.contains("p99 99 ms") && svg.contains("max 100 ms"));
        let fine = latency_plot("t", &[1_500, 2_250]);
        assert!(fine.contains("p50 1.500 ms") && fine.contains("max 2.250 ms"));
        assert_eq!(svg, latency_plot("latency <green> & \"red\"", &values));
        assert_eq!(percentile(&[7], 50), 7);
        assert_eq!(percentile(&[1, 2, 3], 99), 3);
    }

    #[test]
    fn latency_plot_edge_inputs() {
        let empty = latency_plot("t", &[]);
        assert_balanced(&empty);
        assert!(empty.contains("no reads"));
        for values in [vec![0, 0, 0], vec![5_000; 10], vec![u64::MAX / 2, 0, 1], vec![u64::MAX / 2; 3], vec![0]] {
            let svg = latency_plot("edge", &values);
            assert_balanced(&svg);
            assert!(svg.contains("<rect"));
        }
    }
}
