//! The interleaved runner. For one op, every implementation's workload is prepared and calibrated
//! to a batch that takes about the same time; then in each round every implementation runs one
//! batch, in an order that rotates from round to round, so that whatever else the machine is doing
//! falls on all of them alike. The result of an implementation is the median ns/op over rounds.
//!
//! Ops whose single iteration is long (membership changes in large groups) would take minutes at
//! the usual number of rounds: every op gets at most [`Config::op_time`] of wall-clock time for
//! its rounds (inputs prepared outside the timed region included), and at least
//! [`Config::min_rounds`] rounds.

use std::time::{Duration, Instant};

use crate::workloads::{Impl, Op, Workload, workload};

/// How long and how often to measure.
#[derive(Clone, Debug)]
pub struct Config {
    /// Rounds per op (each round runs one batch of every implementation).
    pub rounds: usize,
    /// The time one batch should take.
    pub batch_time: Duration,
    /// Upper bound on iterations per batch (keeps pre-encrypted 64 KiB batches in memory small).
    pub max_batch: u64,
    /// Seed for every key and ciphertext.
    pub seed: u64,
    /// Wall-clock budget of one op's rounds (fewer rounds when one round of every implementation
    /// takes longer than `op_time / rounds`).
    pub op_time: Duration,
    /// Rounds per op however long a round takes.
    pub min_rounds: usize,
    /// A short run: the membership changes only under `signal-v3` for Switchboard (see
    /// [`Config::includes`]).
    pub quick: bool,
}

impl Config {
    /// A run that finishes in well under a minute on two cores.
    pub fn quick() -> Self {
        Config {
            rounds: 15,
            batch_time: Duration::from_millis(15),
            max_batch: 100_000,
            seed: 1,
            op_time: Duration::from_millis(2500),
            min_rounds: 3,
            quick: true,
        }
    }

    /// The full run (a few minutes).
    pub fn full() -> Self {
        Config {
            rounds: 41,
            batch_time: Duration::from_millis(50),
            max_batch: 1_000_000,
            seed: 1,
            op_time: Duration::from_secs(30),
            min_rounds: 7,
            quick: false,
        }
    }

    /// Whether this run measures `op` under `imp` (when `imp` supports it). A quick run leaves
    /// out the membership changes under `switchboard-aes-256-gcm` (eager and as shipped): each
    /// costs seconds of setup (thousands of pairwise sessions) and differs from `signal-v3` only
    /// in the symmetric cipher of the distribution messages, which is under 2% of it.
    pub fn includes(&self, op: Op, imp: Impl) -> bool {
        imp.supports(op) && !(self.quick && op.is_membership() && matches!(imp, Impl::Aes256Gcm | Impl::Aes256GcmAsShipped))
    }
}

/// The measurement of one op by one implementation.
#[derive(Clone, Debug)]
pub struct Sample {
    /// What was measured.
    pub op: Op,
    /// Whose implementation.
    pub imp: Impl,
    /// Median over rounds of the batch's ns per iteration.
    pub ns_per_op: f64,
    /// The fastest round, in ns per iteration.
    pub min: f64,
    /// The slowest round, in ns per iteration.
    pub max: f64,
    /// Interquartile range of the rounds, as a fraction of the median.
    pub iqr_rel: f64,
    /// Rounds measured.
    pub rounds: usize,
    /// Iterations per round.
    pub batch: u64,
}

/// The median and spread of one workload's rounds.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Median over rounds, in ns per iteration.
    pub median: f64,
    /// The fastest round, in ns per iteration.
    pub min: f64,
    /// The slowest round, in ns per iteration.
    pub max: f64,
    /// Interquartile range of the rounds, as a fraction of the median.
    pub iqr_rel: f64,
    /// Rounds measured.
    pub rounds: usize,
    /// Iterations per round.
    pub batch: u64,
}

/// Calibrates each workload to a batch of about `config.batch_time`, then runs `config.rounds`
/// rounds (fewer if they would take more than `config.op_time`, but at least `config.min_rounds`), each running one batch of every workload, starting at a different workload each
/// round; returns the per-iteration statistics of each.
pub fn measure_interleaved(workloads: &mut [Box<dyn Workload>], config: &Config) -> Vec<Stats> {
    // Calibrate: double the batch until it takes a tenth of the target, then scale. Also estimate
    // the wall-clock time of one batch, preparation included.
    let (batches, walls): (Vec<u64>, Vec<f64>) = workloads
        .iter_mut()
        .map(|workload| {
            // warm-up: first-touch allocation, lazily built tables, steady state
            let wall = Instant::now();
            let warm = workload.run(1);
            if warm >= config.batch_time {
                // one iteration is a whole batch already (a membership change in a large group)
                return (1, wall.elapsed().as_secs_f64());
            }
            let mut iters = 1u64;
            loop {
                let wall = Instant::now();
                let elapsed = workload.run(iters);
                let wall = wall.elapsed();
                if elapsed >= config.batch_time / 10 || iters >= config.max_batch {
                    let per_iter = elapsed.as_secs_f64() / iters as f64;
                    let batch = (config.batch_time.as_secs_f64() / per_iter.max(1e-9)).round() as u64;
                    let batch = batch.clamp(1, config.max_batch);
                    break (batch, wall.as_secs_f64() / iters as f64 * batch as f64);
                }
                iters *= 2;
            }
        })
        .unzip();

    let n = workloads.len();
    let round_wall: f64 = walls.iter().sum();
    let affordable = (config.op_time.as_secs_f64() / round_wall.max(1e-9)).floor() as usize;
    let rounds = affordable.clamp(config.min_rounds.min(config.rounds), config.rounds);
    let mut per_round: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds {
        for i in 0..n {
            let index = (i + round) % n;
            let elapsed = workloads[index].run(batches[index]);
            per_round[index].push(elapsed.as_nanos() as f64 / batches[index] as f64);
        }
    }

    per_round
        .into_iter()
        .zip(batches)
        .map(|(mut times, batch)| {
            times.sort_by(f64::total_cmp);
            let median = quantile(&times, 0.5);
            Stats {
                median,
                min: times[0],
                max: times[times.len() - 1],
                iqr_rel: (quantile(&times, 0.75) - quantile(&times, 0.25)) / median,
                rounds: times.len(),
                batch,
            }
        })
        .collect()
}

/// Measures `op` for each of `impls` that has a workload for it, interleaved. A catch-up is
/// reported per message (see [`Op::units_per_iteration`]).
pub fn measure_op(op: Op, impls: &[Impl], config: &Config) -> Vec<Sample> {
    let impls: Vec<Impl> = impls.iter().copied().filter(|&imp| config.includes(op, imp)).collect();
    if impls.is_empty() {
        return Vec::new();
    }
    let mut workloads: Vec<_> = impls.iter().map(|&imp| workload(op, imp, config.seed)).collect();
    let units = op.units_per_iteration() as f64;
    measure_interleaved(&mut workloads, config)
        .into_iter()
        .zip(impls)
        .map(|(stats, imp)| Sample {
            op,
            imp,
            ns_per_op: stats.median / units,
            min: stats.min / units,
            max: stats.max / units,
            iqr_rel: stats.iqr_rel,
            rounds: stats.rounds,
            batch: stats.batch,
        })
        .collect()
}

/// The `q`-quantile of sorted `values` (linear interpolation).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
}

/// Measures every op in `ops`, one after the other, and says how long it took.
pub fn measure(ops: &[Op], impls: &[Impl], config: &Config, mut progress: impl FnMut(Op, Duration)) -> Vec<Sample> {
    let mut samples = Vec::new();
    for &op in ops {
        let start = Instant::now();
        samples.extend(measure_op(op, impls, config));
        progress(op, start.elapsed());
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0], 0.5), 2.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
        assert_eq!(quantile(&[5.0], 0.25), 5.0);
    }
}
