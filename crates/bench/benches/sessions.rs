//! Criterion benches of the same workloads the `switchboard-bench` binary measures (the setup code
//! is shared: `switchboard_bench::workloads` and `switchboard_bench::floor`). Each op is a group
//! with one bench per implementation; criterion measures them one after the other, so for
//! ratios taken in one interleaved run use the binary (`cargo run --release -p switchboard-bench`).
//!
//! `cargo bench -p switchboard-bench --bench sessions`, or one op:
//! `cargo bench -p switchboard-bench --bench sessions -- encrypt_100`. The group ops are in
//! `benches/groups.rs`.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard_bench::workloads::{Impl, Op, workload};

fn sessions(c: &mut Criterion) {
    for op in Op::ALL.into_iter().filter(|op| !op.is_group()) {
        let mut group = c.benchmark_group(op.name());
        match op {
            Op::SessionSetup => {
                // ~0.5 ms (floor) to ~2 ms (libsignal-c) per iteration, and fresh devices to make
                // outside the clock for each: fewer samples.
                group.sample_size(20).measurement_time(Duration::from_secs(6));
            }
            _ => {
                group.throughput(Throughput::Bytes(op.message_len() as u64));
            }
        }
        for imp in Impl::ALL.into_iter().filter(|imp| imp.supports(op)) {
            let mut workload = workload(op, imp, 1);
            group.bench_function(imp.name(), |b| b.iter_custom(|iters| workload.run(iters)));
        }
        group.finish();
    }
}

criterion_group!(benches, sessions);
criterion_main!(benches);
