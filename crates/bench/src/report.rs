//! Turning samples into rows (with the derived encrypt+decrypt rows and the ratios), a table or
//! JSON lines, and the verdict on the targets.

use serde_json::json;

use crate::measure::Sample;
use crate::workloads::{Impl, Op};

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Row {
    pub op: String,
    pub imp: Impl,
    pub ns_per_op: f64,
    pub rounds: usize,
    pub batch: Option<u64>,
    pub iqr_rel: Option<f64>,
    /// Derived from other rows (sum of the medians of encrypt and decrypt).
    pub derived: bool,
    pub ratio_vs_libsignal_c: Option<f64>,
    pub ratio_vs_floor: Option<f64>,
    /// Against the floor of the implementation's own suite (differs from `ratio_vs_floor` only
    /// for the aes-256-gcm suite).
    pub ratio_vs_own_floor: Option<f64>,
}

/// The ops whose sum is reported as `encrypt+decrypt_*`.
const PAIRS: [(Op, Op, &str); 2] =
    [(Op::Encrypt100, Op::Decrypt100, "encrypt+decrypt_100"), (Op::Encrypt64k, Op::Decrypt64k, "encrypt+decrypt_64k")];

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
    }
    rows
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
            let ratios = [
                ("ratio_vs_libsignal_c", row.ratio_vs_libsignal_c),
                ("ratio_vs_floor", row.ratio_vs_floor),
                ("ratio_vs_own_floor", row.ratio_vs_own_floor),
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
    out.push_str("| op | impl | ns/op | IQR | vs libsignal-c | vs floor | vs own-suite floor |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|\n");
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            row.op,
            row.imp.name(),
            thousands(row.ns_per_op),
            row.iqr_rel.map_or("(sum)".to_owned(), |iqr| format!("{:.1}%", iqr * 100.0)),
            ratio(row.ratio_vs_libsignal_c),
            ratio(row.ratio_vs_floor),
            ratio(row.ratio_vs_own_floor),
        ));
    }
    out
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

/// One line per target and implementation: the ratios and whether they are met.
pub fn verdicts(rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    for (op, max_c, max_floor) in TARGETS {
        for imp in [Impl::SignalV3, Impl::Aes256Gcm] {
            let Some(row) = rows.iter().find(|r| r.op == op && r.imp == imp) else { continue };
            let check = |value: Option<f64>, max: f64| match value {
                Some(v) => format!("{v:.4} (target ≤ {max:.2}: {})", if v <= max { "MET" } else { "MISSED" }),
                None => "not measured".to_owned(),
            };
            out.push(format!(
                "{op} {}: vs libsignal-c {}; vs own-suite floor {}",
                imp.name(),
                check(row.ratio_vs_libsignal_c, max_c),
                check(row.ratio_vs_own_floor, max_floor),
            ));
        }
    }
    out
}
