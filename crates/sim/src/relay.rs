//! One simulated relay: the relay core, its disk (what committed batches wrote, and nothing
//! else), crashes that lose the rest, and — when the scenario says so — an adversary in it.

// Keyed by the simulator's own indices and ids, never by hostile input: an unkeyed hash will do.
use rustc_hash::FxHashMap as HashMap;
use std::time::Duration;

use memchr::memmem;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use switchboard_relay_core::{Batch, RelayCore};
use switchboard_relay_core::storage::MemoryStore;

use crate::client::PLAINTEXT_CANARY;
use crate::scenario::AdversaryKind;

/// Virtual time one batch takes to commit (an fsync).
pub const COMMIT_US: u64 = 300;

/// What an adversarial relay decided for one envelope to one device; decided once, so that
/// each later hand-over of the same envelope is treated the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Pass,
    Act,
}

/// An adversary in a relay.
pub struct Adversary {
    pub kind: AdversaryKind,
    pub share: f64,
    /// Only envelopes to these devices, when set.
    pub targets: Option<Vec<usize>>,
    decisions: HashMap<(usize, [u8; 16]), Decision>,
}

impl Adversary {
    pub fn new(kind: AdversaryKind, share: f64, targets: Option<Vec<usize>>) -> Adversary {
        Adversary { kind, share, targets, decisions: HashMap::default() }
    }

    /// Whether `device` is one this adversary acts on.
    fn targets(&self, device: usize) -> bool {
        self.targets.as_ref().is_none_or(|targets| targets.contains(&device))
    }

    /// Whether to act on one frame to `device` that is not an envelope (decided afresh each time).
    pub fn decide_frame(&self, device: usize, rng: &mut StdRng) -> Decision {
        if !self.targets(device) {
            return Decision::Pass;
        }
        if rng.random::<f64>() < self.share { Decision::Act } else { Decision::Pass }
    }

    /// Whether to act on envelope `id` to `device`.
    pub fn decide(&mut self, device: usize, id: [u8; 16], rng: &mut StdRng) -> Decision {
        if !self.targets(device) {
            return Decision::Pass;
        }
        let share = self.share;
        *self.decisions.entry((device, id)).or_insert_with(|| if rng.random::<f64>() < share { Decision::Act } else { Decision::Pass })
    }
}

/// Counters of one relay.
#[derive(Clone, Copy, Debug, Default)]
pub struct RelayStats {
    pub frames_in: u64,
    pub bytes_in: u64,
    pub plaintext_seen: u64,
    pub crashes: u64,
    pub busy: Duration,
}

pub struct Relay {
    pub app: String,
    peers: Vec<String>,
    pub core: Option<RelayCore>,
    /// What is on disk: every committed batch, applied (a crash keeps it; the core reads mail,
    /// outbox frames and blobs back from it).
    pub disk: MemoryStore,
    /// Bumped at each crash: a commit begun before it never completes.
    pub epoch: u32,
    pub committing: Option<Batch>,
    pub adversary: Option<Adversary>,
    pub stats: RelayStats,
    /// Metrics of the cores that crashed, added up.
    pub past_metrics: switchboard_relay_core::Metrics,
    canary: memmem::Finder<'static>,
}

impl Relay {
    pub fn new(app: &str, peers: Vec<String>) -> Relay {
        Relay {
            app: app.to_owned(),
            peers,
            core: None,
            disk: MemoryStore::default(),
            epoch: 0,
            committing: None,
            adversary: None,
            stats: RelayStats::default(),
            past_metrics: Default::default(),
            canary: memmem::Finder::new(PLAINTEXT_CANARY.as_bytes()),
        }
    }

    pub fn is_up(&self) -> bool {
        self.core.is_some()
    }

    /// Starts (or restarts) the relay from what is on disk.
    pub fn start(&mut self, rng: &mut StdRng) {
        let core_rng = StdRng::seed_from_u64(rng.random());
        let disk = self.disk.clone();
        self.core = Some(RelayCore::new(&self.app, self.peers.clone(), disk.state(), Box::new(disk), core_rng));
    }

    /// The relay dies: its memory and the commit in progress are gone.
    pub fn crash(&mut self) {
        if let Some(core) = self.core.take() {
            let metrics = core.metrics();
            self.past_metrics.envelopes_forwarded += metrics.envelopes_forwarded;
            self.past_metrics.envelopes_stored += metrics.envelopes_stored;
            self.past_metrics.batches += metrics.batches;
            self.past_metrics.blocked_dropped += metrics.blocked_dropped;
            self.past_metrics.reports_verified += metrics.reports_verified;
            self.past_metrics.reports_refused += metrics.reports_refused;
        }
        self.committing = None;
        self.epoch += 1;
        self.stats.crashes += 1;
    }

    /// Every byte a relay reads passes here: a plaintext among them is counted.
    pub fn inspect(&mut self, bytes: &[u8]) {
        self.stats.frames_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        if self.canary.find(bytes).is_some() {
            self.stats.plaintext_seen += 1;
        }
    }

    /// All metrics, crashed cores included.
    pub fn metrics(&self) -> switchboard_relay_core::Metrics {
        let mut metrics = self.past_metrics;
        if let Some(core) = &self.core {
            let now = core.metrics();
            metrics.envelopes_forwarded += now.envelopes_forwarded;
            metrics.envelopes_stored += now.envelopes_stored;
            metrics.batches += now.batches;
            metrics.blocked_dropped += now.blocked_dropped;
            metrics.reports_verified += now.reports_verified;
            metrics.reports_refused += now.reports_refused;
            metrics.channel_posts += now.channel_posts;
            metrics.channel_deliveries += now.channel_deliveries;
            metrics.channel_posts_skipped_full += now.channel_posts_skipped_full;
            metrics.channel_apps_skipped_full += now.channel_apps_skipped_full;
        }
        metrics
    }
}
