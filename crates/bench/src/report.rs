//! Turning samples into rows (with the derived encrypt+decrypt rows and the ratios), a table or
//! JSON lines, the membership-change scaling table, and the verdict on the targets.

use serde_json::json;

use crate::measure::Sample;
use crate::workloads::{Impl, Members, Op, shipped};

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Row {
    /// The op's name, as in the JSON.
    pub op: String,
    /// Whose implementation.
    pub imp: Impl,
    /// Median ns per operation.
    pub ns_per_op: f64,
    /// Rounds measured (for a derived row, the fewer of its parts').
    pub rounds: usize,
    /// Iterations per round (`None` for a derived row).
    pub batch: Option<u64>,
    /// Interquartile range of the rounds as a fraction of the median (`None` for a derived row).
    pub iqr_rel: Option<f64>,
    /// Derived from other rows (sum of the medians of encrypt and decrypt).
    pub derived: bool,
    /// Against libsignal-c measured for the same op in the same run.
    pub ratio_vs_libsignal_c: Option<f64>,
    /// Against the floor (the primitives alone) of `signal-v3`.
    pub ratio_vs_floor: Option<f64>,
    /// Against the floor of the implementation's own suite (differs from `ratio_vs_floor` only
    /// for the aes-256-gcm suite).
    pub ratio_vs_own_floor: Option<f64>,
    /// Against the fastest other project's implementation measured for the same op (libsignal-c,
    /// Megolm, OpenMLS), and which one that was.
    pub ratio_vs_fastest_peer: Option<f64>,
    /// The implementation `ratio_vs_fastest_peer` is against.
    pub fastest_peer: Option<Impl>,
}

/// The ops whose sum is reported as `*encrypt+decrypt_*`.
const PAIRS: [(Op, Op, &str); 3] = [
    (Op::Encrypt100, Op::Decrypt100, "encrypt+decrypt_100"),
    (Op::Encrypt64k, Op::Decrypt64k, "encrypt+decrypt_64k"),
    (Op::GroupEncrypt100, Op::GroupDecrypt100, "group_encrypt+decrypt_100"),
];

/// Rows for `samples`, in op order, plus the derived rows, with ratios filled in.
pub fn rows(samples: &[Sample]) -> Vec<Row> {
    let mut rows: Vec<Row> = samples
        .iter()
        .map(|s| Row {
            op: s.op.name().to_owned(),
            imp: s.imp,
            ns_per_op: s.ns_per_op,
            rounds: s.rounds,
            batch: Some(s.batch),
            iqr_rel: Some(s.iqr_rel),
            derived: false,
            ratio_vs_libsignal_c: None,
            ratio_vs_floor: None,
            ratio_vs_own_floor: None,
            ratio_vs_fastest_peer: None,
            fastest_peer: None,
        })
        .collect();
    for (encrypt, decrypt, name) in PAIRS {
        for imp in Impl::ALL {
            let find = |op: Op| samples.iter().find(|s| s.op == op && s.imp == imp);
            if let (Some(e), Some(d)) = (find(encrypt), find(decrypt)) {
                rows.push(Row {
                    op: name.to_owned(),
                    imp,
                    ns_per_op: e.ns_per_op + d.ns_per_op,
                    rounds: e.rounds.min(d.rounds),
                    batch: None,
                    iqr_rel: None,
                    derived: true,
                    ratio_vs_libsignal_c: None,
                    ratio_vs_floor: None,
                    ratio_vs_own_floor: None,
                    ratio_vs_fastest_peer: None,
                    fastest_peer: None,
                });
            }
        }
    }
    let lookup: Vec<(String, Impl, f64)> = rows.iter().map(|r| (r.op.clone(), r.imp, r.ns_per_op)).collect();
    let ns = |op: &str, imp: Impl| lookup.iter().find(|(o, i, _)| o == op && *i == imp).map(|(_, _, ns)| *ns);
    for row in &mut rows {
        row.ratio_vs_libsignal_c = ns(&row.op, Impl::LibsignalC).map(|c| row.ns_per_op / c);
        row.ratio_vs_floor = ns(&row.op, Impl::Floor).map(|f| row.ns_per_op / f);
        row.ratio_vs_own_floor = row.imp.own_floor().and_then(|f| ns(&row.op, f)).map(|f| row.ns_per_op / f);
        let fastest = Impl::ALL
            .into_iter()
            .filter(|imp| imp.is_peer())
            .filter_map(|imp| ns(&row.op, imp).map(|ns| (imp, ns)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((peer, peer_ns)) = fastest {
            row.fastest_peer = Some(peer);
            row.ratio_vs_fastest_peer = Some(row.ns_per_op / peer_ns);
        }
    }
    rows
}

/// The ratio of `imp`'s median to `peer`'s for `op` (`None` if either was not measured).
pub fn ratio(rows: &[Row], op: &str, imp: Impl, peer: Impl) -> Option<f64> {
    let ns = |imp: Impl| rows.iter().find(|r| r.op == op && r.imp == imp).map(|r| r.ns_per_op);
    Some(ns(imp)? / ns(peer)?)
}

/// One JSON object per row.
pub fn json_lines(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|row| {
            let mut object = json!({
                "op": row.op,
                "impl": row.imp.name(),
                "ns_per_op": (row.ns_per_op * 10.0).round() / 10.0,
                "rounds": row.rounds,
            });
            let map = object.as_object_mut().expect("an object");
            if let Some(batch) = row.batch {
                map.insert("batch".into(), json!(batch));
            }
            if let Some(iqr) = row.iqr_rel {
                map.insert("iqr_rel".into(), json!(round4(iqr)));
            }
            if row.derived {
                map.insert("derived".into(), json!(true));
            }
            if row.op == Op::GroupCatchup1000.name() {
                map.insert("per".into(), json!("message"));
            }
            if let Some(senders) = as_shipped_senders(row) {
                map.insert("active_senders_percent".into(), json!(shipped::ACTIVE_SENDERS_PERCENT));
                map.insert("active_senders".into(), json!(senders.active));
                map.insert("timed_senders".into(), json!(senders.timed));
            }
            if let Some(peer) = row.fastest_peer {
                map.insert("fastest_peer".into(), json!(peer.name()));
            }
            let ratios = [
                ("ratio_vs_libsignal_c", row.ratio_vs_libsignal_c),
                ("ratio_vs_floor", row.ratio_vs_floor),
                ("ratio_vs_own_floor", row.ratio_vs_own_floor),
                ("ratio_vs_fastest_peer", row.ratio_vs_fastest_peer),
            ];
            for (key, value) in ratios {
                if let Some(value) = value {
                    map.insert(key.into(), json!(round4(value)));
                }
            }
            object.to_string()
        })
        .collect()
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// A plain-text table (also valid Markdown).
pub fn table(rows: &[Row]) -> String {
    let ratio = |r: Option<f64>| r.map_or("—".to_owned(), |r| format!("{r:.3}"));
    let mut out = String::new();
    out.push_str("| op | impl | ns/op | IQR | vs libsignal-c | vs fastest peer | vs floor | vs own-suite floor |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|\n");
    for row in rows {
        let fastest = match (row.ratio_vs_fastest_peer, row.fastest_peer) {
            (Some(r), Some(peer)) if !row.imp.is_peer() || peer != row.imp => format!("{r:.3} ({})", peer.name()),
            (Some(r), _) => format!("{r:.3}"),
            _ => "—".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.op,
            row.imp.name(),
            thousands(row.ns_per_op),
            row.iqr_rel.map_or("(sum)".to_owned(), |iqr| format!("{:.1}%", iqr * 100.0)),
            ratio(row.ratio_vs_libsignal_c),
            fastest,
            ratio(row.ratio_vs_floor),
            ratio(row.ratio_vs_own_floor),
        ));
    }
    out
}

/// The membership changes as a scaling table, in milliseconds per change (`None` if none was
/// measured).
pub fn membership_table(rows: &[Row]) -> Option<String> {
    let ops: Vec<Op> = Members::ALL
        .into_iter()
        .map(Op::GroupAddMember)
        .chain(Members::ALL.into_iter().map(Op::GroupRemoveMember))
        .collect();
    let imps: Vec<Impl> =
        Impl::ALL.into_iter().filter(|&imp| rows.iter().any(|r| r.imp == imp && ops.iter().any(|op| op.name() == r.op))).collect();
    if imps.is_empty() {
        return None;
    }
    let mut out = String::from("| ms per change | ");
    out.push_str(&ops.iter().map(|op| op.name().trim_start_matches("group_")).collect::<Vec<_>>().join(" | "));
    out.push_str(" |\n|---|");
    out.push_str(&"---:|".repeat(ops.len()));
    out.push('\n');
    for imp in imps {
        out.push_str(&format!("| {} |", imp.name()));
        for op in &ops {
            match rows.iter().find(|r| r.imp == imp && r.op == op.name()) {
                Some(row) => out.push_str(&format!(" {} |", millis(row.ns_per_op))),
                None => out.push_str(" — |"),
            }
        }
        out.push('\n');
    }
    Some(out)
}

/// The senders of an as-shipped removal's row ([`shipped::senders`]); `None` for other rows.
fn as_shipped_senders(row: &Row) -> Option<shipped::Senders> {
    if !matches!(row.imp, Impl::SignalV3AsShipped | Impl::Aes256GcmAsShipped) {
        return None;
    }
    Members::ALL.into_iter().find(|&size| Op::GroupRemoveMember(size).name() == row.op).map(shipped::senders)
}

/// What the as-shipped removal rows assume (the share of members that send after the removal,
/// and the sampling), if any was measured.
pub fn as_shipped_note(rows: &[Row]) -> Option<String> {
    let mut sizes: Vec<(Members, shipped::Senders)> = Members::ALL
        .into_iter()
        .filter(|&size| rows.iter().any(|row| row.op == Op::GroupRemoveMember(size).name() && as_shipped_senders(row).is_some()))
        .map(|size| (size, shipped::senders(size)))
        .collect();
    if sizes.is_empty() {
        return None;
    }
    sizes.dedup();
    let each: Vec<String> = sizes
        .iter()
        .map(|(size, senders)| {
            let sampled = if senders.timed < senders.active { format!(", {} of them timed and scaled", senders.timed) } else { String::new() };
            format!("{} at {} members{sampled}", senders.active, thousands(size.count() as f64))
        })
        .collect();
    Some(format!(
        "*-as-shipped: the removal as the client makes it (every remaining member rotates on the notice; a sender hands its new key out with its next message), with {}% of the remaining members sending one message after it: {}.",
        shipped::ACTIVE_SENDERS_PERCENT,
        each.join("; ")
    ))
}

/// Milliseconds with three significant digits.
fn millis(ns: f64) -> String {
    let ms = ns / 1e6;
    if ms >= 100.0 {
        thousands(ms)
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

fn thousands(ns: f64) -> String {
    let whole = ns.round() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The targets, for the implementation that competes with libsignal-c byte for byte
/// (`switchboard-signal-v3`): (op, ratio vs libsignal-c at most, ratio vs floor at most).
pub const TARGETS: [(&str, f64, f64); 3] =
    [("session_setup", 0.30, 1.2), ("encrypt+decrypt_100", 0.33, 1.3), ("encrypt+decrypt_64k", 0.33, 1.3)];

/// The post-quantum setup target: `session_setup` at most this many times its own suite's floor
/// (which includes the KEM's work); the ratio to libsignal-c's X3DH setup is reported beside it.
pub const POST_QUANTUM_SETUP_MAX_FLOOR: f64 = 1.15;

/// The group targets: for these ops, Switchboard at most this many times every peer's time and
/// at most this many times its own suite's floor.
pub const GROUP_TARGETS: [(Op, f64, f64); 2] = [(Op::GroupEncrypt100, 1.0, 1.1), (Op::GroupDecrypt100, 1.0, 1.1)];

/// The catch-up target: batch verification at least this many times faster per message than
/// one by one.
pub const CATCHUP_SPEEDUP: f64 = 1.5;

/// One line per target and implementation: the ratios and whether they are met.
pub fn verdicts(rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    let check = |value: Option<f64>, max: f64| match value {
        Some(v) => format!("{v:.4} (target ≤ {max:.2}: {})", if v <= max { "MET" } else { "MISSED" }),
        None => "not measured".to_owned(),
    };
    for (op, max_c, max_floor) in TARGETS {
        for imp in [Impl::SignalV3, Impl::Aes256Gcm] {
            let Some(row) = rows.iter().find(|r| r.op == op && r.imp == imp) else { continue };
            out.push(format!(
                "{op} {}: vs libsignal-c {}; vs own-suite floor {}",
                imp.name(),
                check(row.ratio_vs_libsignal_c, max_c),
                check(row.ratio_vs_own_floor, max_floor),
            ));
        }
    }
    for imp in [Impl::SignalPqxdh, Impl::PqAes256Gcm] {
        let setup = Op::SessionSetup.name();
        let Some(row) = rows.iter().find(|r| r.op == setup && r.imp == imp) else { continue };
        let vs_c = ratio(rows, setup, imp, Impl::LibsignalC).map_or("not measured".to_owned(), |r| format!("{r:.3}"));
        out.push(format!(
            "{setup} {}: vs own-suite floor {}; vs libsignal-c's X3DH setup {vs_c} (no target: it does no KEM)",
            imp.name(),
            check(row.ratio_vs_own_floor, POST_QUANTUM_SETUP_MAX_FLOOR),
        ));
    }
    for (op, max_peer, max_floor) in GROUP_TARGETS {
        for imp in [Impl::SignalV3, Impl::Aes256Gcm] {
            let Some(row) = rows.iter().find(|r| r.op == op.name() && r.imp == imp) else { continue };
            let peers: Vec<String> = Impl::ALL
                .into_iter()
                .filter(|peer| peer.is_peer())
                .filter_map(|peer| ratio(rows, op.name(), imp, peer).map(|r| format!("{} {}", peer.name(), check(Some(r), max_peer))))
                .collect();
            out.push(format!(
                "{} {}: vs {}; vs own-suite floor {}",
                op.name(),
                imp.name(),
                if peers.is_empty() { "no peer measured".to_owned() } else { peers.join(", ") },
                check(row.ratio_vs_own_floor, max_floor),
            ));
        }
    }
    let catchup = Op::GroupCatchup1000.name();
    if let Some(slower) = ratio(rows, catchup, Impl::SignalV3OneByOne, Impl::SignalV3) {
        out.push(format!(
            "{catchup}: {} is {slower:.2}x faster per message than {} (target ≥ {CATCHUP_SPEEDUP:.1}x: {})",
            Impl::SignalV3.name(),
            Impl::SignalV3OneByOne.name(),
            if slower >= CATCHUP_SPEEDUP { "MET" } else { "MISSED" },
        ));
    }
    out
}
