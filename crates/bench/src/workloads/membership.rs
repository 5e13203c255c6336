//! Membership changes with Sender Keys (Switchboard), as crates/client makes them: the cost of the
//! sender key distribution messages a change needs, sent over the members' pairwise sessions
//! (which exist already, established by [`mesh`] outside the timed region).
//! Everything runs on one thread: the ns/op is the CPU time the whole group spends on the change.
//!
//! `group_remove_member_N` (a group of N loses one member; the N−1 who remain act): every
//! remaining member rotates its sender key (`group::rotate`) and encrypts the new distribution
//! message to every other remaining member over their session (N−1 senders × N−2 pairwise
//! encryptions); every recipient parses and decrypts each (`CiphertextMessage::parse`,
//! `session::decrypt`) and stores the key (`SenderKeyDistributionMessage::parse`,
//! `group::process_distribution`). All are counted. The members react to the same event, so all
//! write before they read: on each pair one of the two messages carries a ratchet key its reader
//! has not seen and costs it a DH ratchet step. The removed member gets nothing (the client's
//! notice to it is not counted).
//!
//! For N = 1,000 (498,501 pairs, each an established session on both sides) the group is sampled:
//! [`SAMPLED_SENDERS`] of the remaining members act as senders with the clock running, every
//! other member's messages to them are sent and read with the clock stopped (so that the sessions
//! go through the same ratchet steps as in the whole group), and the time is scaled by
//! (N−1) / [`SAMPLED_SENDERS`]. Each sender's share of the work is the same size (a rotation,
//! N−2 encryptions, N−2 decryptions and key stores at the recipients), so the scaling is exact up
//! to the ratchet steps, of which half fall in the timed direction on average, as in the whole
//! group.
//!
//! `group_add_member_N` (a group of N gains one member): each of the N members encrypts its current
//! distribution to the newcomer; the newcomer parses, decrypts and stores each, then creates its
//! own sender key and encrypts its distribution to each of the N, who parse, decrypt and store
//! it. All counted. The newcomer answers after reading, so each of the 2N messages starts a new
//! direction on its session and costs its reader a DH ratchet step. Before each iteration, with
//! the clock stopped, the newcomer's sender key state (its own and the others') is cleared, so it
//! joins afresh each time. (A real newcomer usually has no sessions yet: add N session setups, see
//! `session_setup`.)

use std::time::Duration;

use switchboard_session::Suite;
use switchboard_session::group::{self, SenderKeyDistributionMessage, SenderKeyRecord, SenderKeyStore};

use crate::clock::Instant;
use super::group::GROUP;
use super::mesh::{self, Member, Sealed, par_each};
use super::{Kind, Members, Op, Report, Workload};

/// Timed senders in the sampled removal from a group of 1,000.
pub const SAMPLED_SENDERS: usize = 6;

/// The workload of a membership op under `suite` (pairwise sessions and sender keys alike).
pub fn workload(op: Op, suite: Suite, seed: u64) -> Box<dyn Workload> {
    match op {
        Op::GroupAddMember(size) => Box::new(Addition::new(size.count(), suite, seed)),
        Op::GroupRemoveMember(size) => {
            let timed = if size == Members::Thousand { SAMPLED_SENDERS } else { size.count() - 1 };
            Box::new(Removal::new(size.count(), timed, suite, seed))
        }
        _ => unreachable!("{} is not a membership op", op.name()),
    }
}

/// Reads a distribution message that arrived over a pairwise session and stores the key.
fn receive(member: &mut Member, from: &switchboard_session::ProtocolAddress, sealed: &Sealed) {
    let plaintext = member.open(from, sealed);
    let distribution = SenderKeyDistributionMessage::parse(&plaintext).expect("distribution");
    group::process_distribution(&mut member.sender_keys, GROUP, from, &distribution).expect("process");
}

/// The probe message member `index` sends under its sender key in the checks.
fn probe_text(index: usize) -> Vec<u8> {
    format!("probe from member {index}").into_bytes()
}

/// For the checks (never timed): each of `owners` encrypts a probe under its newest sender key;
/// each member in `readers(owner)` decrypts it. Returns how many read it right, and what went
/// wrong for the others.
fn probe(members: &mut [Member], owners: &[usize], readers: impl Fn(usize, usize) -> bool + Sync) -> (u64, Vec<String>) {
    let probes: Vec<(usize, switchboard_session::ProtocolAddress, Vec<u8>)> = owners
        .iter()
        .map(|&owner| {
            let member = &mut members[owner];
            let message = group::encrypt(&mut member.sender_keys, GROUP, &member.address, &probe_text(owner), &mut member.rng)
                .expect("encrypt under our own key");
            (owner, member.address.clone(), message.serialize().to_vec())
        })
        .collect();
    let held = std::sync::atomic::AtomicU64::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    par_each(members, |reader, member| {
        for (owner, from, bytes) in &probes {
            if !readers(*owner, reader) {
                continue;
            }
            let got = group::SenderKeyMessage::parse(bytes)
                .and_then(|message| group::decrypt(&mut member.sender_keys, GROUP, from, &message));
            match got {
                Ok(got) if got == probe_text(*owner) => {
                    held.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(_) => failures.lock().expect("lock").push(format!("member {reader} read member {owner}'s probe wrong")),
                Err(e) => failures.lock().expect("lock").push(format!("member {reader} cannot read member {owner}'s probe: {e}")),
            }
        }
    });
    (held.into_inner(), failures.into_inner().expect("lock"))
}

/// Adds what [`probe`] found to `report`: one check, failed if any reader failed.
fn record_probe(report: &mut Report, members: usize, (held, failures): (u64, Vec<String>)) {
    let first = failures.first().cloned();
    report.check(failures.is_empty(), || format!("{} probe(s) under a new key not read right, first: {}", failures.len(), first.unwrap_or_default()));
    report.members = Some(members);
    report.key_holders = Some(held);
}

/// `group_remove_member_N`: the N−1 remaining members; `members[..senders]` are timed.
struct Removal {
    suite: Suite,
    members: Vec<mesh::Member>,
    senders: usize,
    report: Report,
}

impl Removal {
    fn new(size: usize, senders: usize, suite: Suite, seed: u64) -> Self {
        let remaining = size - 1;
        let mut members = mesh::members(remaining, seed);
        let pairs: Vec<(usize, usize)> =
            (0..senders).flat_map(|s| (s + 1..remaining).map(move |p| (s, p))).collect();
        mesh::connect(&mut members, &pairs, suite);
        // The first change (the runner's warm-up) gives every member every sender's key, as in a
        // running group, and brings each session to its steady alternation.
        Removal { suite, members, senders, report: Report::new(Kind::RemoveMember, 0) }
    }

    /// One removal; returns the time of the timed senders' share.
    fn change(&mut self) -> Duration {
        let (suite, senders, remaining) = (self.suite, self.senders, self.members.len());
        let addresses: Vec<_> = self.members.iter().map(|member| member.address.clone()).collect();
        let mut timed = Duration::ZERO;

        // Everyone rotates and writes. Timed: the sampled senders (all of them unless sampled).
        let start = Instant::now();
        let mut outbox: Vec<(usize, usize, Sealed)> = Vec::with_capacity(senders * remaining);
        for s in 0..senders {
            let member = &mut self.members[s];
            let distribution = group::rotate(&mut member.sender_keys, GROUP, &member.address, suite, &mut member.rng)
                .expect("rotate");
            for (p, to) in addresses.iter().enumerate() {
                if p != s {
                    outbox.push((s, p, member.seal(to, distribution.serialize())));
                }
            }
        }
        timed += start.elapsed();
        // Untimed (sampled groups only): the other members' messages to the sampled senders.
        let mut counter: Vec<Vec<(usize, Sealed)>> = (0..remaining).map(|_| Vec::new()).collect();
        if senders < remaining {
            let mut others: Vec<(&mut Member, &mut Vec<(usize, Sealed)>)> =
                self.members.iter_mut().zip(counter.iter_mut()).skip(senders).collect();
            par_each(&mut others, |_, (member, out)| {
                let distribution =
                    group::rotate(&mut member.sender_keys, GROUP, &member.address, suite, &mut member.rng).expect("rotate");
                for (s, to) in addresses.iter().enumerate().take(senders) {
                    out.push((s, member.seal(to, distribution.serialize())));
                }
            });
        }

        // Everyone reads. Timed: what the sampled senders wrote.
        let mut read = 0;
        let start = Instant::now();
        for (s, p, sealed) in &outbox {
            receive(&mut self.members[*p], &addresses[*s], sealed);
            read += 1;
        }
        timed += start.elapsed();
        self.report.messages += read;
        drop(outbox);
        if senders < remaining {
            let mut inboxes: Vec<Vec<(usize, &Sealed)>> = (0..senders).map(|_| Vec::new()).collect();
            for (p, messages) in counter.iter().enumerate() {
                for (s, sealed) in messages {
                    inboxes[*s].push((p, sealed));
                }
            }
            let mut readers: Vec<(&mut Member, Vec<(usize, &Sealed)>)> =
                self.members.iter_mut().take(senders).zip(inboxes).collect();
            par_each(&mut readers, |_, (member, inbox)| {
                for (p, sealed) in inbox.iter() {
                    receive(member, &addresses[*p], sealed);
                }
            });
        }
        timed.mul_f64((remaining as f64) / (senders as f64))
    }
}

impl Workload for Removal {
    fn run(&mut self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            total += self.change();
            self.report.iterations += 1;
        }
        total
    }

    /// Each timed sender's new key (after the last change) is held by every other remaining
    /// member: each decrypts a probe under it. (In the sampled group the other members' new
    /// keys reach only the timed senders, and are not probed.)
    fn report(&mut self) -> Report {
        if self.report.iterations > 0 {
            let owners: Vec<usize> = (0..self.senders).collect();
            let found = probe(&mut self.members, &owners, |owner, reader| owner != reader);
            record_probe(&mut self.report, self.members.len(), found);
        }
        self.report.clone()
    }
}

/// `group_add_member_N`: `members[..N]` are the group, `members[N]` the newcomer.
struct Addition {
    suite: Suite,
    members: Vec<mesh::Member>,
    report: Report,
}

impl Addition {
    fn new(size: usize, suite: Suite, seed: u64) -> Self {
        let mut members = mesh::members(size + 1, seed);
        let pairs: Vec<(usize, usize)> = (0..size).map(|e| (e, size)).collect();
        mesh::connect(&mut members, &pairs, suite);
        for member in members.iter_mut().take(size) {
            group::create_distribution(&mut member.sender_keys, GROUP, &member.address, suite, &mut member.rng)
                .expect("distribution");
        }
        // The first change (the runner's warm-up) brings the sessions to their steady state.
        Addition { suite, members, report: Report::new(Kind::AddMember, 0) }
    }

    /// One addition; returns its time.
    fn change(&mut self) -> Duration {
        let suite = self.suite;
        let size = self.members.len() - 1;
        let (existing, newcomer) = self.members.split_at_mut(size);
        let newcomer = &mut newcomer[0];
        // Untimed: the newcomer arrives with no sender keys, and nobody has its key.
        newcomer.sender_keys = Default::default();
        for member in existing.iter_mut() {
            member.sender_keys.store_sender_key(GROUP, &newcomer.address, SenderKeyRecord::default()).expect("store");
        }

        let start = Instant::now();
        // Each member hands the newcomer its current sender key.
        let to_newcomer: Vec<Sealed> = existing
            .iter_mut()
            .map(|member| {
                let ours = group::create_distribution(&mut member.sender_keys, GROUP, &member.address, suite, &mut member.rng)
                    .expect("distribution");
                member.seal(&newcomer.address, ours.serialize())
            })
            .collect();
        let mut read = 0;
        for (member, sealed) in existing.iter().zip(&to_newcomer) {
            receive(newcomer, &member.address, sealed);
            read += 1;
        }
        // The newcomer makes its sender key and hands it to each member.
        let ours = group::create_distribution(&mut newcomer.sender_keys, GROUP, &newcomer.address, suite, &mut newcomer.rng)
            .expect("distribution");
        let from_newcomer: Vec<Sealed> =
            existing.iter().map(|member| newcomer.seal(&member.address, ours.serialize())).collect();
        for (member, sealed) in existing.iter_mut().zip(&from_newcomer) {
            receive(member, &newcomer.address, sealed);
            read += 1;
        }
        let took = start.elapsed();
        self.report.messages += read;
        took
    }
}

impl Workload for Addition {
    fn run(&mut self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            total += self.change();
            self.report.iterations += 1;
        }
        total
    }

    /// After the last change, the newcomer's key is held by every member, and the newcomer holds
    /// every member's key: each decrypts a probe under the other's.
    fn report(&mut self) -> Report {
        if self.report.iterations > 0 {
            let newcomer = self.members.len() - 1;
            let owners: Vec<usize> = (0..=newcomer).collect();
            let found = probe(&mut self.members, &owners, |owner, reader| (owner == newcomer) != (reader == newcomer));
            record_probe(&mut self.report, self.members.len(), found);
        }
        self.report.clone()
    }
}
