//! What a run found: reads (required and done), latency, load per link and per app, faults, what adversaries
//! managed, and every invariant's result — as text for people and as one JSON object.

use std::fmt::Write as _;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::Serialize;
use switchboard_session::{ProtocolAddress, Suite};

use crate::client::Client;
use crate::ledger::{MAX_LISTED_VIOLATIONS, Violation};

/// The invariant a member breaks by holding a state of its group that no admin made (it applied
/// a forged change).
pub const FOREIGN_STATE: &str = "members hold only states their admins made";
use crate::scenario::GroupStrategy;
use crate::thief::TheftReport;
pub use crate::world::business::BusinessCounts;
pub use crate::world::channel::ChannelCounts;
pub use crate::world::consent::ConsentCounts;
pub use crate::world::people::PeopleCounts;
use crate::world::{FaultCounts, World};

/// What a run found. `text()` is the report for people; serialized, it is the JSON object
/// `switchboard sim --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The scenario's `name`.
    pub scenario: String,
    /// The seed of the run's one RNG.
    pub seed: u64,
    /// How groups sent: Sender Keys or pairwise.
    pub group_strategy: GroupStrategy,
    /// SHA-256 over every event of the run, in order.
    pub trace_hash: String,
    /// Events in the trace.
    pub events: u64,
    /// Virtual time the run covered, in seconds (registration, traffic, settling).
    pub simulated_s: f64,
    /// Wall-clock time the run took (not part of the trace: it varies with the machine).
    pub wall_s: f64,
    /// Devices in the world.
    pub devices: usize,
    /// Users (accounts) in the world.
    pub users: usize,
    /// Groups created.
    pub groups: usize,
    /// What was sent, and what was read.
    pub messages: Messages,
    /// Latency of first reads, from sending to reading, in milliseconds.
    pub latency_ms: Percentiles,
    /// Load per link: each app's access link, and each pair of relays.
    pub links: Vec<LinkReport>,
    /// Load per app: its relay and its devices.
    pub apps: Vec<AppLoad>,
    /// What the network did to frames.
    pub faults: FaultCounts,
    /// What adversaries did, and what came of it.
    pub adversaries: AdversaryCounts,
    /// What each thief read, by bucket.
    pub thefts: Vec<TheftReport>,
    /// What a `harvest-now` adversary read of the recorded 1:1 messages, per suite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub harvest: Option<crate::harvest::HarvestReport>,
    /// The crypto the run did.
    pub crypto: CryptoOps,
    /// The scenario's people (`[[person]]`), when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub people: Option<crate::world::people::PeopleCounts>,
    /// Strangers, blocks and reports, when the scenario has them.
    pub consent: Option<crate::world::consent::ConsentCounts>,
    /// The channel, when the scenario has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<crate::world::channel::ChannelCounts>,
    /// The business account, when the scenario has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business: Option<crate::world::business::BusinessCounts>,
    /// Every invariant checked, and whether it held.
    pub invariants: Vec<Invariant>,
    /// Every invariant violation (the first 100 listed; `violations_total` counts them all).
    pub violations: Vec<Violation>,
    /// Violations in all.
    pub violations_total: usize,
}

/// What was sent, and what had to be read and was. Reads are (message, device) pairs, first
/// reads only.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Messages {
    /// Messages sent.
    pub sent: u64,
    /// Of those, 1:1 messages.
    pub direct: u64,
    /// Of those, group messages.
    pub group: u64,
    /// Group sends skipped because no member had heard of the group yet.
    pub skipped_group_sends: u64,
    /// (message, device) pairs that must be read: addressed, and the device stayed in the group
    /// (the exactly-once invariant's denominator).
    pub reads_required: u64,
    /// Every (message, device) pair read, required or not (a member removed later may read what
    /// it was sent before the news reached it): first reads only, so duplicates are not counted.
    /// Can exceed `reads_required`. The latency figures are over these.
    pub reads: u64,
    /// Required reads that never happened (including those an adversary prevented, counted in
    /// `adversaries.reads_prevented`).
    pub missing: u64,
    /// Group messages whose sender was removed later, that a member dropped because the news of
    /// the removal reached it first (not required; reported).
    pub dropped_from_removed_senders: u64,
    /// Envelopes devices dropped as already processed.
    pub duplicates_dropped: u64,
    /// Envelopes devices refused (tampered, forged, from a non-member…).
    pub refused: u64,
    /// Sends the senders gave up (refused for good by their relay, or impossible to seal).
    pub sends_dropped: u64,
}

/// Percentiles (nearest rank) and the maximum, in milliseconds; 0 when nothing was measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The largest.
    pub max: f64,
}

/// Frames and bytes one link carried, both ways.
#[derive(Clone, Debug, Serialize)]
pub struct LinkReport {
    /// `green devices <-> green relay`, or `green relay <-> blue relay`.
    pub link: String,
    /// Frames carried.
    pub frames: u64,
    /// Bytes carried.
    pub bytes: u64,
}

/// One app's load: its relay's work and its devices'.
#[derive(Clone, Debug, Serialize)]
pub struct AppLoad {
    /// The app.
    pub app: String,
    /// Its devices.
    pub devices: usize,
    /// Frames its relay received.
    pub relay_frames_in: u64,
    /// Bytes its relay received.
    pub relay_bytes_in: u64,
    /// Envelopes its relay stored for its devices.
    pub envelopes_stored: u64,
    /// Envelopes its relay forwarded to other apps.
    pub envelopes_forwarded: u64,
    /// Batches of mutations its relay committed.
    pub batches_committed: u64,
    /// Times its relay crashed.
    pub crashes: u64,
    /// Processing time of the relay core, and of the app's devices (mostly their crypto).
    pub relay_cpu_ms: f64,
    /// CPU time of its devices, in milliseconds.
    pub devices_cpu_ms: f64,
}

/// What the scenario's adversaries did, and what came of it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AdversaryCounts {
    /// Envelopes a `tamper` relay changed.
    pub tampered: u64,
    /// Of those, the ones read as messages (a violation).
    pub tampered_read: u64,
    /// Of those, the ones refused.
    pub tampered_refused: u64,
    /// Envelopes a `replay` relay handed over again.
    pub replayed: u64,
    /// Envelopes a `withhold` relay never handed over.
    pub withheld: u64,
    /// Required reads that never happened, of devices an adversarial relay serves (counted in
    /// `messages.missing` too, and not a violation).
    pub reads_prevented: u64,
    /// Messages tried with the keys of devices that were not members when they were sent.
    pub membership_attempts: u64,
    /// Of those, the ones readable (a violation).
    pub membership_readable: u64,
    /// Bundle answers whose suite lists an adversary took out, and the envelopes their
    /// responders refused as starting a downgraded session.
    pub bundles_stripped: u64,
    /// Envelopes refused as starting a downgraded session.
    pub downgrades_refused: u64,
    /// Sessions their responders started back after refusing a downgraded one.
    pub sessions_started_back: u64,
    /// Pairs of devices whose current sessions with each other are one session under a weaker
    /// suite than both accept (a violation).
    pub downgraded_sessions: u64,
    /// Messages tried with the keys of devices no admin ever added to the group; messages read,
    /// or readable with those keys, outside the admins' membership (each a violation).
    pub outsider_attempts: u64,
    /// Of those, the ones read or readable (each a violation).
    pub outsider_readable: u64,
    /// Announcements forging members sent, envelopes of theirs refused, and group forks found.
    pub forged_changes: u64,
    /// Envelopes of forging members refused.
    pub forgeries_refused: u64,
    /// Group forks detected.
    pub forks_detected: u64,
    /// Announcements that a device joined a group, refused because the group's hub holds another
    /// state (a member's forgery shown to a device outside the group).
    pub unordered_changes: u64,
    /// Admins' changes their hub did not order because another admin's came first.
    pub changes_not_ordered: u64,
    /// Members that caught up on their hub's word after missing changes for good.
    pub resyncs: u64,
    /// Junk envelopes a member sent under the ids of group messages (`reuse-ids`).
    pub ids_reused: u64,
    /// Junk a stranger sent one user at once (`flood`), and how much of it the user's relay
    /// refused (past the stranger allowance).
    pub flood_sent: u64,
    /// Of that junk, what the user's relay refused.
    pub flood_refused: u64,
}

/// The crypto a run did (see `switchboard-bench`'s `sim_deliveries_per_sec`, which times each
/// kind on its own to set the run against the raw cost of its crypto).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CryptoOps {
    /// Devices created (identity, signed prekey, one-time prekeys).
    pub devices: u64,
    /// One-time prekeys each device keeps in stock.
    pub prekeys_per_device: u32,
    /// Sessions set up (X3DH on both sides, and the first message).
    pub sessions: u64,
    /// Other pairwise messages decrypted (and so encrypted).
    pub pairwise_messages: u64,
    /// Group messages encrypted (once each with Sender Keys).
    pub group_encrypts: u64,
    /// Group messages decrypted.
    pub group_decrypts: u64,
    /// Uploads of more one-time prekeys after a relay reported them low, and the prekeys made.
    pub prekey_replenishments: u64,
    /// One-time prekeys those uploads carried.
    pub prekeys_replenished: u64,
    /// Sessions that started without a one-time prekey (the responder's stock had run out).
    pub sessions_without_prekey: u64,
    /// Signed prekeys replaced on schedule, and replaced ones forgotten after their grace.
    pub signed_prekey_rotations: u64,
    /// Replaced signed prekeys forgotten after their grace.
    pub signed_prekeys_forgotten: u64,
    /// Mean plaintext size of the traffic.
    pub mean_size: usize,
}

/// One invariant's result.
#[derive(Clone, Debug, Serialize)]
pub struct Invariant {
    /// What it says (`exactly-once delivery`, `no plaintext at relays`, …).
    pub name: &'static str,
    /// Whether it held.
    pub holds: bool,
    /// What was counted, in a line.
    pub detail: String,
}

/// A percentile of sorted microseconds, in milliseconds (nearest rank, as the latency plot).
fn percentile_ms(sorted: &[u64], p: u64) -> f64 {
    if sorted.is_empty() { 0.0 } else { crate::svg::percentile(sorted, p) as f64 / 1000.0 }
}

impl Report {
    pub(crate) fn build(world: &mut World, seed: u64, wall_s: f64, trace_hash: String, events: u64) -> Report {
        world.note_unwanted();
        let describe = |d: usize| world.clients[d].address.to_string();
        let ledger = &world.ledger;
        let attacked = |sender: usize, device: usize| world.attacked[device] || ledger.downgraded_pairs.contains(&(sender, device));
        let delivery = ledger.check_delivery(&attacked, &describe);
        let (mut violations, missing, expected) = (delivery.violations, delivery.missing, delivery.expected);
        let sync_violations = violations.iter().filter(|v| v.invariant == crate::ledger::SYNCED).count();
        let delivery_violations = violations.len() - sync_violations;
        let (people_counts, forged_links, threads) = world.check_people();
        let (forged_link_violations, thread_violations) = (forged_links.len(), threads.len());
        violations.extend(forged_links);
        violations.extend(threads);

        let plaintext_seen: u64 = world.relays.iter().map(|r| r.stats.plaintext_seen).sum();
        if plaintext_seen > 0 {
            for relay in world.relays.iter().filter(|r| r.stats.plaintext_seen > 0) {
                violations.push(Violation {
                    invariant: "no plaintext at relays",
                    detail: format!("relay {} read {} frames holding a plaintext", relay.app, relay.stats.plaintext_seen),
                });
            }
        }
        if ledger.tampered_read > 0 {
            violations.push(Violation {
                invariant: "tampered envelopes rejected",
                detail: format!("{} tampered envelopes were read as messages", ledger.tampered_read),
            });
        }

        let clients = &world.clients;
        let groups = &world.groups;
        let (membership_attempts, membership_readable, membership_violations) = ledger.check_membership(
            &|d| clients[d].device().sender_key_store().clone(),
            &|d| clients[d].address.clone(),
            &|g| groups[g].id.clone(),
        );
        violations.extend(membership_violations);
        // Who holds keys of the groups whose messages were kept: any device the admins never
        // added is an outsider, and must read none of them.
        let kept: HashSet<usize> = ledger.group_ciphertexts.iter().map(|c| c.group).collect();
        let group_index: HashMap<&str, usize> = kept.iter().map(|g| (groups[*g].id.as_str(), *g)).collect();
        let mut holders: HashMap<usize, Vec<usize>> = HashMap::default();
        // Keys a device holds unused count too: whoever controls the device reads with them.
        let received: Vec<_> = clients.iter().map(|client| client.device().every_sender_key_received()).collect();
        for (device, store) in received.iter().enumerate() {
            for group in store.records().filter_map(|(g, _, _)| group_index.get(g).copied()) {
                let devices = holders.entry(group).or_default();
                if devices.last() != Some(&device) {
                    devices.push(device);
                }
            }
        }
        let (outsiders, outsider_attempts, outsider_readable, outsider_violations) = ledger.check_outsiders(
            &holders,
            &|d| received[d].clone(),
            &|d| clients[d].address.clone(),
            &|g| groups[g].id.clone(),
        );
        violations.extend(outsider_violations);
        // Every member, as the admins' changes have it at the end, holds a state the admins made
        // (perhaps an older one, if their latest change has not reached it).
        let mut foreign_states = 0;
        for (group, spec) in groups.iter().enumerate() {
            for (&device, tenure) in ledger.membership.get(&group).into_iter().flatten() {
                let Some(held) = clients[device].device().group(&spec.id) else { continue };
                if tenure.last().is_some_and(|(_, until)| *until == u64::MAX) && !ledger.admin_states.contains(&(group, *held.hash())) {
                    foreign_states += 1;
                    violations.push(Violation {
                        invariant: FOREIGN_STATE,
                        detail: format!("{} holds {} at epoch {}, a state its admins never made", clients[device].address, spec.id, held.epoch()),
                    });
                }
            }
        }

        let downgraded_sessions = downgraded_sessions(&world.clients);
        for (a, b, suite, best) in &downgraded_sessions {
            violations.push(Violation {
                invariant: "no downgraded session",
                detail: format!("{a} and {b} share a session under {suite}, although both accept {best}"),
            });
        }

        let mut thefts = Vec::new();
        let names: Vec<String> = world.clients.iter().map(|c| c.address.to_string()).collect();
        let mut thieves = std::mem::take(&mut world.thieves);
        for thief in &mut thieves {
            let (report, found) = thief.analyze(&world.ledger, &|d| names[d].clone(), &mut world.rng);
            thefts.push(report);
            violations.extend(found);
        }
        world.thieves = thieves;
        let harvest = world.harvester.take().map(crate::harvest::Harvester::report);
        if let Some(harvest) = &harvest {
            if harvest.post_quantum_read() > 0 {
                violations.push(Violation {
                    invariant: HARVEST_POST_QUANTUM,
                    detail: format!("{} messages of post-quantum sessions read from the recording", harvest.post_quantum_read()),
                });
            }
            if harvest.classical_unread() > 0 {
                violations.push(Violation {
                    invariant: HARVEST_CLASSICAL,
                    detail: format!("{} messages of classical sessions not read: the adversary is weaker than it should be", harvest.classical_unread()),
                });
            }
        }
        let ledger = &world.ledger;

        let mut latencies = ledger.latencies_us.clone();
        latencies.sort_unstable();
        let latency_ms = Percentiles {
            p50: percentile_ms(&latencies, 50),
            p90: percentile_ms(&latencies, 90),
            p99: percentile_ms(&latencies, 99),
            max: latencies.last().map_or(0.0, |v| *v as f64 / 1000.0),
        };
        let group_messages = ledger.messages.iter().filter(|m| m.group.is_some()).count() as u64;
        let messages = Messages {
            sent: ledger.messages.len() as u64,
            direct: ledger.messages.len() as u64 - group_messages,
            group: group_messages,
            skipped_group_sends: world.skipped_group_sends,
            reads_required: expected,
            reads: ledger.latencies_us.len() as u64,
            missing,
            dropped_from_removed_senders: delivery.from_removed_unread,
            duplicates_dropped: ledger.duplicates_dropped,
            refused: ledger.refused,
            sends_dropped: world.clients.iter().map(|c| c.stats().sends_dropped).sum(),
        };

        let mut links: Vec<LinkReport> = world
            .app_names
            .iter()
            .zip(&world.access_load)
            .map(|(app, load)| LinkReport { link: format!("{app} devices ⇄ {app} relay"), frames: load.frames, bytes: load.bytes })
            .collect();
        let mut pairs: Vec<_> = world.federation_load.iter().collect();
        pairs.sort_by_key(|(key, _)| **key);
        for ((a, b), load) in pairs {
            links.push(LinkReport {
                link: format!("{} relay ⇄ {} relay", world.app_names[*a], world.app_names[*b]),
                frames: load.frames,
                bytes: load.bytes,
            });
        }
        let apps = world
            .relays
            .iter()
            .enumerate()
            .map(|(index, relay)| {
                let metrics = relay.metrics();
                AppLoad {
                    app: relay.app.clone(),
                    devices: world.clients.iter().filter(|c| c.app == index).count(),
                    relay_frames_in: relay.stats.frames_in,
                    relay_bytes_in: relay.stats.bytes_in,
                    envelopes_stored: metrics.envelopes_stored,
                    envelopes_forwarded: metrics.envelopes_forwarded,
                    batches_committed: metrics.batches,
                    crashes: relay.stats.crashes,
                    relay_cpu_ms: relay.stats.busy.as_secs_f64() * 1e3,
                    devices_cpu_ms: world.client_busy[index].as_secs_f64() * 1e3,
                }
            })
            .collect();

        let adversaries = AdversaryCounts {
            tampered: ledger.tampered.len() as u64,
            tampered_read: ledger.tampered_read,
            tampered_refused: ledger.tampered_refused,
            replayed: ledger.replayed,
            withheld: ledger.withheld.len() as u64,
            reads_prevented: delivery.prevented,
            membership_attempts,
            membership_readable,
            bundles_stripped: ledger.bundles_stripped,
            downgrades_refused: ledger.downgrades_refused,
            sessions_started_back: world.clients.iter().map(|c| c.stats().sessions_started_back).sum(),
            downgraded_sessions: downgraded_sessions.len() as u64,
            outsider_attempts,
            outsider_readable,
            forged_changes: ledger.forged_changes,
            forgeries_refused: ledger.forgeries_refused,
            forks_detected: ledger.forks_detected,
            unordered_changes: world.clients.iter().map(|c| c.stats().unordered_changes).sum(),
            changes_not_ordered: world.clients.iter().map(|c| c.stats().changes_not_ordered).sum(),
            resyncs: world.clients.iter().map(|c| c.stats().resyncs).sum(),
            ids_reused: ledger.ids_reused,
            flood_sent: ledger.flood_sent,
            flood_refused: ledger.flood_refused,
        };

        let count = |name: &str| violations.iter().filter(|v| v.invariant == name).count();
        let theft_detail = if thefts.is_empty() {
            "no theft in this scenario".to_owned()
        } else {
            thefts.iter().map(|t| format!("{}: {}", t.device, t.buckets.iter().map(|b| format!("{} {}/{}", b.bucket, b.readable, b.messages)).collect::<Vec<_>>().join(", "))).collect::<Vec<_>>().join("; ")
        };
        let invariants = vec![
            Invariant {
                name: "exactly-once delivery",
                holds: delivery_violations == 0,
                detail: format!(
                    "{} of {expected} read; {} kept from their devices by an adversary; {delivery_violations} violations; {} junk envelopes under reused ids, {} flooded ({} refused by the relay)",
                    expected - missing,
                    delivery.prevented,
                    ledger.ids_reused,
                    ledger.flood_sent,
                    ledger.flood_refused
                ),
            },
            Invariant {
                name: "no plaintext at relays",
                holds: plaintext_seen == 0,
                detail: format!("{plaintext_seen} frames read by relays held a plaintext"),
            },
            Invariant {
                name: "tampered and replayed envelopes rejected",
                holds: ledger.tampered_read == 0 && delivery.read_twice == 0,
                detail: format!(
                    "{} tampered: {} refused, {} read; {} replayed by relays, {} duplicates dropped",
                    ledger.tampered.len(),
                    ledger.tampered_refused,
                    ledger.tampered_read,
                    ledger.replayed,
                    ledger.duplicates_dropped
                ),
            },
            Invariant {
                name: "membership: nothing read outside it",
                holds: membership_readable == 0,
                detail: format!("{membership_readable} of {membership_attempts} messages sent outside a device's membership were readable with its keys"),
            },
            Invariant {
                name: crate::ledger::OUTSIDER_READ,
                holds: outsider_readable == 0,
                detail: format!(
                    "{outsider_readable} group messages read, or readable, outside the admins' membership ({outsider_attempts} tried with the keys of {outsiders} devices no admin added); {} changes forged by members, {} refused on arrival, {} fork alarms raised, {} changes refused on the hub's word",
                    ledger.forged_changes, ledger.forgeries_refused, ledger.forks_detected, adversaries.unordered_changes
                ),
            },
            Invariant {
                name: FOREIGN_STATE,
                holds: foreign_states == 0,
                detail: format!("{foreign_states} members hold a state of their group that its admins never made"),
            },
            Invariant {
                name: "no downgraded session",
                holds: downgraded_sessions.is_empty(),
                detail: format!(
                    "{} pairs of devices on a weaker suite than both accept; {} bundles stripped of their suites, {} envelopes refused as downgraded, {} sessions started back by their responders",
                    downgraded_sessions.len(),
                    ledger.bundles_stripped,
                    ledger.downgrades_refused,
                    adversaries.sessions_started_back
                ),
            },
            Invariant {
                name: "stolen state: forward secrecy and healing",
                holds: count("forward secrecy") + count("healing after compromise") == 0,
                detail: theft_detail,
            },
        ];
        let mut invariants = invariants;
        let spec = &world.scenario.consent;
        let consent_on = spec.strangers + spec.blocks + spec.reports + spec.forged_reports > 0;
        let (consent_counts, consent_violations) = world.check_consent();
        if consent_on {
            let c = &consent_counts;
            let of = |name: &str| consent_violations.iter().filter(|v| v.invariant == name).count();
            use crate::world::consent::{BLOCKED_SHOWN, FORGED_REFUSED, HONEST_VERIFIED, REPORT_MATCHES};
            invariants.push(Invariant {
                name: BLOCKED_SHOWN,
                holds: of(BLOCKED_SHOWN) == 0,
                detail: format!(
                    "{} blocks; {} envelopes dropped by relays, {} messages by devices; {} stranger messages, {} requests shown",
                    c.blocks, c.blocked_dropped_by_relays, c.blocked_dropped_by_devices, c.stranger_messages, c.requests
                ),
            });
            invariants.push(Invariant {
                name: REPORT_MATCHES,
                holds: of(REPORT_MATCHES) == 0,
                detail: format!("{} reports kept by relays match no message sent", of(REPORT_MATCHES)),
            });
            invariants.push(Invariant {
                name: HONEST_VERIFIED,
                holds: of(HONEST_VERIFIED) == 0,
                detail: format!("{} reports, {} verified, {} refused, {} unanswered", c.reports, c.reports_verified, c.reports_refused, c.reports_unanswered),
            });
            invariants.push(Invariant {
                name: FORGED_REFUSED,
                holds: of(FORGED_REFUSED) == 0,
                detail: format!(
                    "{} forged reports, {} refused, {} unanswered, {} verified",
                    c.forged_reports, c.forged_reports_refused, c.forged_reports_unanswered, c.forged_reports_verified
                ),
            });
        }
        violations.extend(consent_violations);
        let channel_on = world.scenario.channel.followers + world.scenario.channel.posts > 0;
        let (channel_counts, channel_violations) = world.check_channel();
        if channel_on {
            let c = &channel_counts;
            let of = |name: &str| channel_violations.iter().filter(|v| v.invariant == name).count();
            use crate::world::channel::{FOLLOWERS_UNSEEN, LEFT_READS_NOTHING, POSTS_REACH_FOLLOWERS, VOTES_TALLIED};
            invariants.push(Invariant {
                name: POSTS_REACH_FOLLOWERS,
                holds: of(POSTS_REACH_FOLLOWERS) == 0,
                detail: format!("{} posts, {} of {} required reads; {} of {} followers followed, {} keys handed over", c.posts, c.reads_done, c.reads_required, c.followed, c.followers, c.keys_handed_over),
            });
            invariants.push(Invariant { name: LEFT_READS_NOTHING, holds: of(LEFT_READS_NOTHING) == 0, detail: format!("{} followers left", c.leavers) });
            invariants.push(Invariant { name: FOLLOWERS_UNSEEN, holds: of(FOLLOWERS_UNSEEN) == 0, detail: format!("{} violations", of(FOLLOWERS_UNSEEN)) });
            invariants.push(Invariant { name: VOTES_TALLIED, holds: of(VOTES_TALLIED) == 0, detail: format!("{} votes, {} tallied", c.votes, c.votes_tallied) });
        }
        violations.extend(channel_violations);
        let business_on = world.scenario.business.agents > 0;
        let (business_counts, business_violations) = world.check_business();
        if business_on {
            let b = &business_counts;
            let of = |name: &str| business_violations.iter().filter(|v| v.invariant == name).count();
            use crate::world::business::{AGENT_NAMED, ANALYTICS_MATCH, REMOVED_AGENT_READS_NOTHING};
            invariants.push(Invariant {
                name: REMOVED_AGENT_READS_NOTHING,
                holds: of(REMOVED_AGENT_READS_NOTHING) == 0,
                detail: format!("{} agents, {} removed", b.agents, b.removed_agents),
            });
            invariants.push(Invariant { name: AGENT_NAMED, holds: of(AGENT_NAMED) == 0, detail: format!("{} replies to {} customers", b.replies, b.customers) });
            invariants.push(Invariant {
                name: ANALYTICS_MATCH,
                holds: of(ANALYTICS_MATCH) == 0,
                detail: format!(
                    "owner counted {} conversations, {} in, {} out, {} hand-overs, {} ms mean first response",
                    b.analytics_conversations, b.analytics_messages_in, b.analytics_messages_out, b.analytics_handovers, b.analytics_mean_first_response_ms
                ),
            });
        }
        violations.extend(business_violations);
        if people_counts.people > 0 {
            let p = &people_counts;
            invariants.push(Invariant {
                name: crate::ledger::SYNCED,
                holds: sync_violations == 0,
                detail: format!("{sync_violations} messages a person sent never reached another device of hers; {} transcripts sent, {} received", p.transcripts_sent, p.transcripts_received),
            });
            invariants.push(Invariant {
                name: crate::world::people::FORGED_LINK,
                holds: forged_link_violations == 0,
                detail: format!(
                    "{forged_link_violations} records held link an account to a person it is not; {} lookup answers changed by relays, {} lookups refused, {} kept; {} records of other people held",
                    p.links_forged, p.lookups_refused, p.lookups_kept, p.records_held
                ),
            });
            invariants.push(Invariant {
                name: crate::world::people::ONE_THREAD,
                holds: thread_violations == 0,
                detail: format!("{thread_violations} readers did not see one person behind the accounts of hers they heard from"),
            });
        }
        if let Some(harvest) = &harvest {
            let lines: Vec<String> =
                harvest.suites.iter().map(|(suite, line)| format!("{suite} {} of {}", line.read, line.sent)).collect();
            let detail = format!("read after the fact: {}", lines.join(", "));
            invariants.push(Invariant { name: HARVEST_POST_QUANTUM, holds: harvest.post_quantum_read() == 0, detail: detail.clone() });
            invariants.push(Invariant { name: HARVEST_CLASSICAL, holds: harvest.classical_unread() == 0, detail });
        }
        let mut crypto = CryptoOps {
            devices: world.clients.len() as u64,
            prekeys_per_device: world.scenario.prekeys_per_device,
            mean_size: (world.scenario.traffic.size.min + world.scenario.traffic.size.max) / 2,
            ..CryptoOps::default()
        };
        for client in &world.clients {
            let stats = client.stats();
            crypto.sessions += stats.sessions_accepted;
            crypto.pairwise_messages += stats.pairwise_decrypts;
            crypto.group_encrypts += stats.group_encrypts;
            crypto.group_decrypts += stats.group_decrypts;
            crypto.prekey_replenishments += stats.replenishments;
            crypto.prekeys_replenished += stats.prekeys_replenished;
            crypto.signed_prekey_rotations += stats.signed_prekey_rotations;
            crypto.sessions_without_prekey += stats.sessions_without_one_time_prekey;
            crypto.signed_prekeys_forgotten += stats.signed_prekeys_forgotten;
        }
        let violations_total = violations.len();
        violations.truncate(MAX_LISTED_VIOLATIONS);
        Report {
            scenario: world.scenario.name.clone(),
            seed,
            group_strategy: world.scenario.group_strategy,
            trace_hash,
            events,
            simulated_s: world.now as f64 / 1e6,
            wall_s,
            devices: world.clients.len(),
            users: world.users.len(),
            groups: world.groups.len(),
            messages,
            latency_ms,
            links,
            apps,
            faults: world.faults,
            adversaries,
            thefts,
            harvest,
            crypto,
            people: (people_counts.people > 0).then_some(people_counts),
            consent: consent_on.then_some(consent_counts),
            channel: channel_on.then_some(channel_counts),
            business: business_on.then_some(business_counts),
            invariants,
            violations,
            violations_total,
        }
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let m = &self.messages;
        let _ = writeln!(out, "scenario {} · seed {} · groups by {:?}", self.scenario, self.seed, self.group_strategy);
        let _ = writeln!(
            out,
            "{} devices ({} users) · {} groups · {:.1} s simulated in {:.2} s · {} events",
            self.devices, self.users, self.groups, self.simulated_s, self.wall_s, self.events
        );
        let _ = writeln!(out, "trace hash {}", self.trace_hash);
        let _ = writeln!(out, "\nmessages   {} sent ({} 1:1, {} group; {} group sends skipped)", m.sent, m.direct, m.group, m.skipped_group_sends);
        let _ = writeln!(
            out,
            "reads      {} required, {} missing · {} in all (first reads, required or not) · {} dropped as from removed senders · {} duplicates dropped · {} envelopes refused",
            m.reads_required, m.missing, m.reads, m.dropped_from_removed_senders, m.duplicates_dropped, m.refused
        );
        let l = &self.latency_ms;
        let _ = writeln!(out, "latency    p50 {:.1} ms · p90 {:.1} ms · p99 {:.1} ms · max {:.1} ms", l.p50, l.p90, l.p99, l.max);
        let c = &self.crypto;
        let _ = writeln!(
            out,
            "prekeys    {} uploads of {} more one-time prekeys after relays reported them low · {} of {} sessions started without one · {} signed prekeys rotated, {} forgotten after their grace",
            c.prekey_replenishments, c.prekeys_replenished, c.sessions_without_prekey, c.sessions, c.signed_prekey_rotations, c.signed_prekeys_forgotten
        );
        let _ = writeln!(out, "\nlinks");
        for link in &self.links {
            let _ = writeln!(out, "  {:<34} {:>10} frames {:>14} bytes", link.link, link.frames, link.bytes);
        }
        let _ = writeln!(out, "\napps        devices  frames in   bytes in     stored  forwarded  crashes  relay CPU  devices CPU");
        for app in &self.apps {
            let _ = writeln!(
                out,
                "  {:<10} {:>7} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8.0} ms {:>9.0} ms",
                app.app, app.devices, app.relay_frames_in, app.relay_bytes_in, app.envelopes_stored, app.envelopes_forwarded, app.crashes, app.relay_cpu_ms, app.devices_cpu_ms
            );
        }
        let f = &self.faults;
        let _ = writeln!(
            out,
            "\nfaults     {} dropped · {} corrupted · {} duplicated · {} reordered · {} replayed · {} partitioned · {} resets · {} crashes",
            f.dropped, f.corrupted, f.duplicated, f.reordered, f.replayed, f.partitioned, f.resets, f.crashes
        );
        if let Some(p) = &self.people {
            let _ = writeln!(
                out,
                "people     {} on several apps ({} devices) · {} messages carried to their other devices, {} transcripts read · lookups {} kept, {} refused ({} answers changed by relays) · {} records of others held",
                p.people, p.devices, p.transcripts_sent, p.transcripts_received, p.lookups_kept, p.lookups_refused, p.links_forged, p.records_held
            );
        }
        let a = &self.adversaries;
        if a.tampered + a.replayed + a.withheld > 0 {
            let _ = writeln!(
                out,
                "adversary  {} tampered ({} refused, {} read) · {} replayed · {} withheld · {} required reads prevented",
                a.tampered, a.tampered_refused, a.tampered_read, a.replayed, a.withheld, a.reads_prevented
            );
        }
        for theft in &self.thefts {
            let _ = writeln!(out, "theft      {} at {:.1} s{}", theft.device, theft.at_s, if theft.stolen { "" } else { " (never happened)" });
            for bucket in &theft.buckets {
                let _ = writeln!(out, "  {:<24} {:>6} messages, {:>6} readable by the thief", bucket.bucket, bucket.messages, bucket.readable);
            }
        }
        if let Some(harvest) = &self.harvest {
            for (suite, line) in &harvest.suites {
                let _ = writeln!(out, "harvest    {suite:<16} {:>6} messages, {:>6} read with every X25519 private key", line.sent, line.read);
            }
        }
        let _ = writeln!(out, "\ninvariants");
        for invariant in &self.invariants {
            let _ = writeln!(out, "  [{}] {}: {}", if invariant.holds { "ok" } else { "FAIL" }, invariant.name, invariant.detail);
        }
        if self.violations_total > 0 {
            let _ = writeln!(out, "\n{} violations{}", self.violations_total, if self.violations_total > self.violations.len() { " (first 100)" } else { "" });
            for violation in &self.violations {
                let _ = writeln!(out, "  {}: {}", violation.invariant, violation.detail);
            }
        }
        out
    }
}

/// The invariant that a quantum adversary reads nothing of a post-quantum session.
const HARVEST_POST_QUANTUM: &str = "harvest now, decrypt later: post-quantum sessions unread";
/// The check that the same adversary does read every classical session (else it proves nothing).
const HARVEST_CLASSICAL: &str = "harvest now, decrypt later: classical sessions read";

/// Pairs of devices whose current sessions with each other are one session (the same base key)
/// under a weaker suite than the best both accept: a downgrade that went through. Each pair once,
/// with the suite and the best one.
fn downgraded_sessions(clients: &[Client]) -> Vec<(String, String, Suite, Suite)> {
    let index: HashMap<&ProtocolAddress, usize> = clients.iter().enumerate().map(|(i, client)| (&client.address, i)).collect();
    let mut found = Vec::new();
    for (a, client) in clients.iter().enumerate() {
        let device = client.device();
        for peer in device.session_peers() {
            let Some(&b) = index.get(peer) else { continue };
            let Some(ours) = device.current_session(peer) else { continue };
            let other = clients[b].device();
            let Some(best) = device.suites().iter().copied().find(|suite| other.suites().contains(suite)) else { continue };
            if a >= b || ours.suite() == best {
                continue;
            }
            let theirs = other.current_session(&client.address);
            if theirs.is_some_and(|theirs| theirs.base_key() == ours.base_key()) {
                found.push((client.address.to_string(), peer.to_string(), ours.suite(), best));
            }
        }
    }
    found.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    found
}
