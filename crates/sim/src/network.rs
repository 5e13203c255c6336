//! The virtual network: what happens to one frame on one link, drawn from the scenario's delay
//! distribution and fault probabilities with the run's RNG.
//!
//! The model is a TLS connection over TCP. A lost frame (`drop`) or one whose bytes were flipped
//! (`corrupt`, caught by the record integrity check) resets the connection: both ends see it go
//! down, and whatever else was in flight on it is lost too. Recovery is the cores' own: relays
//! send their outboxes again when a link comes back, devices their unconfirmed sends, and a
//! relay hands a device its whole mailbox when it authenticates. Duplicates, reordering and
//! replays happen above the integrity layer (as a retransmitting or multi-path sender causes
//! them), so the cores see them as they are.

use std::collections::VecDeque;

use rand::RngExt;
use rand::rngs::StdRng;

use crate::scenario::{Delay, LinkSpec};

/// Frames of one direction of a connection kept for replays.
pub const REPLAY_HISTORY: usize = 32;
/// How long a reset takes to be noticed by both ends (a TCP timeout, shortened).
pub const RESET_DETECTION_US: u64 = 200_000;

/// The delay and faults of one link, with the window in which the faults apply.
#[derive(Clone, Debug)]
pub struct Link {
    pub spec: LinkSpec,
    pub faults_from_us: u64,
    pub faults_until_us: u64,
}

/// What happens to one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fate {
    /// It arrives after `delay_us`; a copy arrives `duplicate_after_us` after that when set.
    Arrives { delay_us: u64, duplicate_after_us: Option<u64>, reordered: bool },
    /// It is lost (`"drop"`) or damaged (`"corrupt"`), and the connection resets.
    Resets { fault: &'static str },
}

impl Link {
    /// A link with no faults and the default delay.
    pub fn clean(spec: Option<&LinkSpec>) -> Link {
        Link { spec: spec.cloned().unwrap_or_default(), faults_from_us: 0, faults_until_us: 0 }
    }

    pub fn faulty_at(&self, now_us: u64) -> bool {
        (self.faults_from_us..self.faults_until_us).contains(&now_us)
    }

    /// The fate of a frame sent at `now_us`.
    pub fn fate(&self, now_us: u64, rng: &mut StdRng) -> Fate {
        let mut delay_us = sample_delay(&self.spec.delay, rng);
        if !self.faulty_at(now_us) {
            return Fate::Arrives { delay_us, duplicate_after_us: None, reordered: false };
        }
        let spec = &self.spec;
        if chance(rng, spec.drop) {
            return Fate::Resets { fault: "drop" };
        }
        if chance(rng, spec.corrupt) {
            return Fate::Resets { fault: "corrupt" };
        }
        let reordered = chance(rng, spec.reorder);
        if reordered {
            delay_us += (rng.random::<f64>() * spec.reorder_ms * 1000.0) as u64;
        }
        let duplicate_after_us = chance(rng, spec.duplicate).then(|| 1 + sample_delay(&spec.delay, rng));
        Fate::Arrives { delay_us, duplicate_after_us, reordered }
    }

    /// Whether an older frame is replayed along with this one.
    pub fn replays(&self, now_us: u64, rng: &mut StdRng) -> bool {
        self.faulty_at(now_us) && chance(rng, self.spec.replay)
    }
}

fn chance(rng: &mut StdRng, probability: f64) -> bool {
    probability > 0.0 && rng.random::<f64>() < probability
}

/// A delay in microseconds, at least 1.
pub fn sample_delay(delay: &Delay, rng: &mut StdRng) -> u64 {
    let ms = match *delay {
        Delay::Constant { ms } => ms,
        Delay::Uniform { min_ms, max_ms } => min_ms + rng.random::<f64>() * (max_ms - min_ms),
        Delay::Exponential { min_ms, mean_ms } => {
            // Inverse transform; 1 - u is in (0, 1], so the logarithm is finite.
            let u: f64 = rng.random::<f64>();
            min_ms - mean_ms * (1.0 - u).ln()
        }
    };
    ((ms * 1000.0) as u64).max(1)
}

/// The last frames sent one way on a connection, for replays.
#[derive(Default, Debug)]
pub struct History {
    frames: VecDeque<(&'static str, Vec<u8>)>,
}

impl History {
    pub fn remember(&mut self, what: &'static str, frame: &[u8]) {
        if self.frames.len() == REPLAY_HISTORY {
            self.frames.pop_front();
        }
        self.frames.push_back((what, frame.to_vec()));
    }

    /// A frame sent earlier (and what it is), at random.
    pub fn pick(&self, rng: &mut StdRng) -> Option<(&'static str, Vec<u8>)> {
        if self.frames.is_empty() {
            return None;
        }
        self.frames.get(rng.random_range(0..self.frames.len())).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn faults_apply_only_inside_their_window_and_delays_follow_the_distribution() {
        let mut rng = StdRng::seed_from_u64(7);
        let spec = LinkSpec { drop: 0.5, delay: Delay::Uniform { min_ms: 2.0, max_ms: 4.0 }, ..LinkSpec::default() };
        let link = Link { spec, faults_from_us: 1_000, faults_until_us: 2_000 };
        for _ in 0..1_000 {
            match link.fate(10, &mut rng) {
                Fate::Arrives { delay_us, duplicate_after_us: None, reordered: false } => assert!((2_000..=4_000).contains(&delay_us)),
                other => panic!("a fault outside the window: {other:?}"),
            }
        }
        let resets = (0..10_000).filter(|_| matches!(link.fate(1_500, &mut rng), Fate::Resets { .. })).count();
        assert!((4_500..5_500).contains(&resets), "{resets} of 10,000 dropped at p = 0.5");
        let exponential = Delay::Exponential { min_ms: 1.0, mean_ms: 10.0 };
        let mean = (0..20_000).map(|_| sample_delay(&exponential, &mut rng)).sum::<u64>() as f64 / 20_000.0;
        assert!((10_000.0..12_000.0).contains(&mean), "mean {mean} µs, expected about 11,000");
    }
}
