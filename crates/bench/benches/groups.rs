//! Criterion benches of the group workloads the `switchboard-bench` binary measures (the setup code
//! is shared: `switchboard_bench::workloads` and `switchboard_bench::group_floor`): group messages,
//! the catch-up and the membership changes. Each op is a criterion group with one bench per
//! implementation; criterion measures them one after the other, so for ratios taken in one
//! interleaved run use the binary (`cargo run --release -p switchboard-bench -- --ops group_`).
//!
//! `cargo bench -p switchboard-bench --bench groups`, or some ops:
//! `cargo bench -p switchboard-bench --bench groups -- group_decrypt_100`.
//!
//! `group_catchup_1000` reports the time of a whole catch-up (1,000 messages; criterion's
//! throughput line gives messages per second); the binary reports it per message.

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use switchboard_bench::workloads::{Impl, Members, Op, workload};

fn groups(c: &mut Criterion) {
    for op in Op::ALL.into_iter().filter(|op| op.is_group()) {
        let mut group = c.benchmark_group(op.name());
        match op {
            Op::GroupEncrypt100 | Op::GroupDecrypt100 => {
                group.throughput(Throughput::Bytes(op.message_len() as u64));
            }
            Op::GroupCatchup1000 => {
                group.throughput(Throughput::Elements(op.units_per_iteration()));
                group.sample_size(20).measurement_time(Duration::from_secs(8));
            }
            // A change in a group of 10 takes about a millisecond; in groups of 100 and 1,000,
            // tens of milliseconds to tens of seconds (sampled removal): few samples.
            Op::GroupAddMember(Members::Ten) | Op::GroupRemoveMember(Members::Ten) => {
                group.sample_size(20).measurement_time(Duration::from_secs(5));
            }
            _ => {
                group.sample_size(10).measurement_time(Duration::from_secs(10)).sampling_mode(SamplingMode::Flat);
            }
        }
        for imp in Impl::ALL.into_iter().filter(|imp| imp.supports(op)) {
            let mut workload = workload(op, imp, 1);
            group.bench_function(imp.name(), |b| b.iter_custom(|iters| workload.run(iters)));
        }
        group.finish();
    }
}

criterion_group!(benches, groups);
criterion_main!(benches);
