//! `group_remove_member_N` as the shipped client makes a removal (implementations
//! `switchboard-signal-v3-as-shipped` and `switchboard-aes-256-gcm-as-shipped`): the client core's
//! own [`Device`] (crates/client-core) in the mode a networked device runs in
//! (`Device::check_changes_with_hub`: every change waits for the group's hub), called exactly as
//! its `Endpoint` calls it. What is left out is the endpoint's and the relay's share: envelopes,
//! outbox, acknowledgements, persistence, and the hub itself, whose answers (a `GroupHead` naming
//! the state it ordered) are made here from the order, as the hub makes them.
//!
//! What the client does on a removal, and so what one iteration times (all on one thread, the CPU
//! the whole group spends, as [`membership`](super::membership) counts it):
//!
//! 1. **The remover** (an admin), `Endpoint::remove_member` → `Device::propose`: the next state
//!    (its member list hashed, SHA-256) signed with the group's order key (Ed25519); the hub
//!    orders it; `Endpoint::ordered` → `Device::ordered` → `commit`: the remover rotates its own
//!    sender key (`rotate_after_removal` → `group::rotate`, held by no one yet) and announces the
//!    new state, member list included, to every remaining member and to the removed one
//!    (`Work::Seal` → `Device::seal_each`: N−1 pairwise encryptions, serialized for the envelopes).
//! 2. **Every remaining member** reads the announcement (`CiphertextMessage::parse`,
//!    `Device::receive_pending`: pairwise decryption, `Group::from_control` hashing the list,
//!    `membership::judge` checking the order key's signature; a networked device keeps it,
//!    `Received::AwaitingHub`), then on its hub's word (`Device::hub_head`, judged again) applies
//!    it: `Transition::Advance { rotate: true }` → `rotate_after_removal`, a fresh sender key held
//!    by no one. Nothing is sent: the new key goes out with the member's next group message.
//! 3. **Each active sender** (a share of the remaining members, [`ACTIVE_SENDERS_PERCENT`], each
//!    sending one 100-byte message after the removal), `Endpoint::send_group`: a franking key and
//!    commitment, the `GroupPayload`, `Device::encrypt_group` — which finds that no other member
//!    holds its new key and makes its distribution for each of the N−2 others — then
//!    (`Work::Group`) `Device::seal_each` of those N−2 distributions and the one group message.
//!    Each of the N−2 recipients reads the distribution (`Device::receive_pending` →
//!    `on_key`: pairwise decryption, the state hash it names checked, `process_distribution`)
//!    and the group message (`Device::decrypt_group`, the `GroupPayload` decoded, the franking
//!    commitment opened, as `Endpoint`'s `decrypt` and `arrived` do).
//!
//! The removed member's reading of its own notice is done with the clock stopped (as in the eager
//! figure, it is out of the group); the remover's encryption of it is timed.
//!
//! **Who is who** (member indices; the group has N): 0 removes, 1 is a second admin that adds the
//! removed member back before the next iteration (with the clock stopped), members 2 onwards are
//! the active senders (the same ones at every removal, as in a group where some talk and most
//! read), the others are silent, and member N−1 is the one removed. The history the sessions go
//! through is the loop itself (removal, the active members talk, the removed member is added back,
//! and again), so each pair's session is in the state that history leaves it: a pairwise message
//! costs its reader a DH ratchet step when the pair's previous message went the other way — here
//! a key between two active senders or from an active sender to an admin (which wrote to it
//! last), and the remover's notice to an active sender; the keys to silent members, and the
//! notices to them, do not (a silent member never writes). Had other traffic turned those pairs
//! around in between, half of those messages would cost one too, as in the eager figure. The
//! runner's warm-up iteration brings the sessions into that pattern.
//!
//! **Sampling at N = 1,000.** Of the 100 active senders, [`SAMPLED_ACTIVE_SENDERS`] are timed
//! and their share is scaled by 100 / [`SAMPLED_ACTIVE_SENDERS`] (every active sender's share is
//! the same work: a rotation already counted, N−2 distributions, N−2 readings of each); the
//! announcement and the N−2 readings of it are timed whole. The other 90 hand their new key, with
//! the clock stopped, to the members whose timed messages it changes the sessions of (the two
//! admins and the timed senders), so that those sessions ratchet as in the whole group.
//!
//! **Checks** (with the clock stopped, in [`Workload::report`]): nothing went wrong in the timed
//! region and nothing was addressed to the removed member; every remaining member holds the
//! remover's new state (N−1 members, the removed one not among them) and has rotated its own
//! sender key, and the removed member holds no state of the group; each timed sender's probe
//! message, under its new key, goes out with no distribution (every remaining member holds the
//! key) and is read right by every other remaining member; the removed member, with every sender
//! key it was ever handed (it held each timed sender's key from before the first removal), reads
//! neither the probe nor the sender's message of the last change.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use switchboard_client::{BundleDirectory, Change, Device, HubVerdict, PendingSend, Received};
use switchboard_session::group::{self, SenderKeyMessage, SenderKeyStore};
use switchboard_session::{CiphertextMessage, ProtocolAddress, Suite, VerifiedBundle};
use switchboard_wire::franking::{self, FRANKING_LEN};
use switchboard_wire::switchboard::{GroupHead, GroupPayload, OrderChange};
use switchboard_wire::{Message, decode, limits};

use crate::clock::Instant;
use super::mesh::{self, Sealed, par_each};
use super::{Kind, Members, Op, Report, SMALL, Workload, plaintext};

/// Share of the remaining members that send one group message after a removal, in percent
/// (rounded up, at least one): 1, 10 and 100 senders in groups of 10, 100 and 1,000.
pub const ACTIVE_SENDERS_PERCENT: usize = 10;

/// Of the active senders of a removal from a group of 1,000, how many are timed (their time is
/// scaled to all of them).
pub const SAMPLED_ACTIVE_SENDERS: usize = 10;

/// The group's id.
pub const GROUP: &str = "removal@bench";

/// The admin that removes.
const REMOVER: usize = 0;
/// The admin that adds the removed member back between iterations (clock stopped).
const RE_ADDER: usize = 1;
/// The first active sender.
const FIRST_SENDER: usize = 2;

/// How many members send after a removal from a group of `size`, and how many of them are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Senders {
    /// Remaining members that send one message after the removal ([`ACTIVE_SENDERS_PERCENT`]).
    pub active: usize,
    /// Of those, the ones timed: all, but [`SAMPLED_ACTIVE_SENDERS`] at 1,000 members.
    pub timed: usize,
}

/// The senders of a removal from a group of `size`.
pub fn senders(size: Members) -> Senders {
    let remaining = size.count() - 1;
    let active = (remaining * ACTIVE_SENDERS_PERCENT).div_ceil(100).max(1);
    let timed = if size == Members::Thousand { SAMPLED_ACTIVE_SENDERS.min(active) } else { active };
    Senders { active, timed }
}

/// The workload of `group_remove_member_N` as shipped, under `suite` (pairwise sessions and sender
/// keys alike).
pub fn workload(op: Op, suite: Suite, seed: u64) -> Box<dyn Workload> {
    match op {
        Op::GroupRemoveMember(size) => Box::new(Removal::new(size, suite, seed)),
        _ => unreachable!("{} has no as-shipped workload", op.name()),
    }
}

/// One member's device, as the client core holds it, and its seeded RNG.
struct Peer {
    device: Device,
    rng: StdRng,
}

/// Bundles handed out from a shared map (a last-resort bundle per device, no one-time prekey):
/// sessions are set up on every core, before anything is timed.
struct Published<'a>(&'a HashMap<ProtocolAddress, VerifiedBundle>);

impl BundleDirectory for Published<'_> {
    fn fetch_bundle(&mut self, address: &ProtocolAddress) -> Option<VerifiedBundle> {
        self.0.get(address).cloned()
    }

    fn has_bundle(&self, address: &ProtocolAddress) -> bool {
        self.0.contains_key(address)
    }
}

/// No bundles: what the timed region seals for must have a session already.
struct NoBundles;

impl BundleDirectory for NoBundles {
    fn fetch_bundle(&mut self, _: &ProtocolAddress) -> Option<VerifiedBundle> {
        None
    }

    fn has_bundle(&self, _: &ProtocolAddress) -> bool {
        false
    }
}

/// What the timed region did: counted as it goes, described only when something fails.
#[derive(Default)]
struct Tally {
    /// Messages read right: announcements applied, distributions stored, group messages opened.
    read: u64,
    /// Pairwise messages or group message recipients addressed to the removed member.
    to_removed: u64,
    /// What went wrong (empty when all went right).
    failures: Vec<String>,
}

/// `Device::seal_each` as the endpoint calls it, and the wire form of what it sealed (what the
/// endpoint puts in each envelope), with the recipient.
fn seal(peer: &mut Peer, pending: Vec<PendingSend>, tally: &mut Tally) -> Vec<(ProtocolAddress, Sealed)> {
    let sealing = peer.device.seal_each(pending, &mut NoBundles, &mut peer.rng);
    for (send, error) in &sealing.failed {
        tally.failures.push(format!("{} could not seal for {}: {error}", peer.device.address(), send.to));
    }
    sealing
        .sealed
        .into_iter()
        .map(|outgoing| (outgoing.to, Sealed { kind: outgoing.message.kind(), bytes: outgoing.message.serialize().to_vec() }))
        .collect()
}

/// A pairwise message as the endpoint reads it: parsed from the envelope, then
/// `Device::receive_pending`; returns what it meant, `None` (and a failure) if it could not be
/// read or asked for an answer.
fn open(peer: &mut Peer, from: &ProtocolAddress, sealed: &Sealed, tally: &mut Tally) -> Option<Received> {
    let got = CiphertextMessage::parse(sealed.kind, &sealed.bytes)
        .map_err(switchboard_client::ClientError::from)
        .and_then(|message| peer.device.receive_pending(from, &message, &mut peer.rng));
    match got {
        Ok((received, responses)) if responses.is_empty() => Some(received),
        Ok((_, responses)) => {
            tally.failures.push(format!("{} answered {from} with {} message(s)", peer.device.address(), responses.len()));
            None
        }
        Err(error) => {
            tally.failures.push(format!("{} cannot read {from}'s message: {error}", peer.device.address()));
            None
        }
    }
}

/// The hub's answer to an order: it ordered that state.
fn head(order: OrderChange) -> GroupHead {
    GroupHead { group_id: order.group_id, epoch: order.epoch, state_hash: order.state_hash }
}

/// A member reads an announcement (kept for its hub) and applies it on the hub's word; the
/// change it made, if any.
fn apply_announcement(peer: &mut Peer, from: &ProtocolAddress, sealed: &Sealed, head: &GroupHead, tally: &mut Tally) -> Option<Received> {
    match open(peer, from, sealed, tally)? {
        Received::AwaitingHub { .. } => {}
        other => {
            tally.failures.push(format!("{} did not wait for the hub: {other:?}", peer.device.address()));
            return None;
        }
    }
    match peer.device.hub_head(head.epoch, head, &mut peer.rng) {
        Ok(HubVerdict { applied: Some((received, _)), refused }) if refused.is_empty() => Some(received),
        other => {
            tally.failures.push(format!("{} did not apply the hub's state: {other:?}", peer.device.address()));
            None
        }
    }
}

/// `group_remove_member_N` as shipped: `peers[..N-1]` remain, `peers[N-1]` is removed.
struct Removal {
    peers: Vec<Peer>,
    addresses: Vec<ProtocolAddress>,
    index: HashMap<ProtocolAddress, usize>,
    senders: Senders,
    /// The application content each active sender sends.
    content: Vec<u8>,
    /// Each remaining member's own sender key record before the last change.
    keys_before: Vec<Vec<u8>>,
    /// Each timed sender's group message of the last change.
    last_messages: Vec<(usize, Vec<u8>)>,
    tally: Tally,
    report: Report,
}

impl Removal {
    fn new(size: Members, suite: Suite, seed: u64) -> Self {
        let n = size.count();
        let senders = senders(size);
        assert!(FIRST_SENDER + senders.active < n, "a group of {n} has room for {} senders", senders.active);
        let addresses: Vec<ProtocolAddress> = (0..n).map(mesh::address).collect();
        let index = addresses.iter().cloned().enumerate().map(|(i, address)| (address, i)).collect();

        // Devices, as a networked client holds them, under `suite` only; a last-resort bundle each.
        let mut slots: Vec<Option<(Peer, VerifiedBundle)>> = (0..n).map(|_| None).collect();
        par_each(&mut slots, |i, slot| {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9).wrapping_add(0x5419_0000 + i as u64));
            let mut device = Device::new(mesh::address(i), 1 + i as u32, &mut rng);
            device.set_suites(&[suite]);
            device.check_changes_with_hub();
            let bundle = device.publish_bundles(0, &mut rng).pop().expect("a last-resort bundle").into_verified().expect("verifies");
            *slot = Some((Peer { device, rng }, bundle));
        });
        let (mut peers, bundles): (Vec<Peer>, Vec<VerifiedBundle>) = slots.into_iter().map(|slot| slot.expect("made")).unzip();
        let bundles: HashMap<ProtocolAddress, VerifiedBundle> = addresses.iter().cloned().zip(bundles).collect();

        // The sessions the removals use: the admins with everyone, the timed senders with everyone
        // (the removed member included, for the probe: see `new`'s last step).
        let mut pairs = BTreeSet::new();
        for s in [REMOVER, RE_ADDER].into_iter().chain(FIRST_SENDER..FIRST_SENDER + senders.timed) {
            for m in (0..n).filter(|&m| m != s) {
                pairs.insert((s.min(m), s.max(m)));
            }
        }
        connect(&mut peers, &addresses, &pairs.into_iter().collect::<Vec<_>>(), &bundles);

        let mut removal = Removal {
            peers,
            addresses,
            index,
            senders,
            content: plaintext(SMALL),
            keys_before: Vec::new(),
            last_messages: Vec::new(),
            tally: Tally::default(),
            report: Report::new(Kind::RemoveMember, 0),
        };
        // The group, made by the remover, with the second admin promoted, each on its hub's word.
        let mut setup = Tally::default();
        let remover = &mut removal.peers[REMOVER];
        let others: Vec<ProtocolAddress> = removal.addresses[1..].to_vec();
        let order = remover.device.propose_create(GROUP, others, suite, &mut remover.rng).expect("a new group");
        removal.commit_and_deliver(REMOVER, order, &mut setup);
        let promote = Change { promote: vec![removal.addresses[RE_ADDER].clone()], ..Change::default() };
        let remover = &mut removal.peers[REMOVER];
        let order = remover.device.propose(GROUP, &promote, &mut remover.rng).expect("an admin promotes");
        removal.commit_and_deliver(REMOVER, order, &mut setup);
        // Before the first removal, each timed sender talks once: every member, the one to be
        // removed included, holds its key as it is then (what the removed one reads with later).
        for s in FIRST_SENDER..FIRST_SENDER + senders.timed {
            removal.send(s, &mut setup);
        }
        assert!(setup.failures.is_empty(), "setting the group up: {:#?}", setup.failures);
        removal.last_messages.clear();
        // The first change (the runner's warm-up) brings each session to the loop's pattern.
        removal
    }

    fn removed(&self) -> usize {
        self.peers.len() - 1
    }

    /// With the clock stopped: the hub orders `order`, made by `from`; `from` commits it and
    /// seals its announcements, and every recipient applies it on the hub's word (on every core).
    fn commit_and_deliver(&mut self, from: usize, order: OrderChange, tally: &mut Tally) {
        let head = head(order);
        let peer = &mut self.peers[from];
        let sends = peer.device.ordered(&head, &mut peer.rng).expect("the hub's head is the proposal's");
        let sealed = seal(peer, sends, tally);
        let mut inbox: Vec<Option<Sealed>> = (0..self.peers.len()).map(|_| None).collect();
        for (to, sealed) in sealed {
            inbox[self.index[&to]] = Some(sealed);
        }
        let sender = self.addresses[from].clone();
        let failures = std::sync::Mutex::new(Vec::new());
        let mut jobs: Vec<(&mut Peer, Option<Sealed>)> = self.peers.iter_mut().zip(inbox).collect();
        par_each(&mut jobs, |_, (peer, sealed)| {
            if let Some(sealed) = sealed {
                let mut own = Tally::default();
                apply_announcement(peer, &sender, sealed, &head, &mut own);
                failures.lock().expect("lock").extend(own.failures);
            }
        });
        tally.failures.extend(failures.into_inner().expect("lock"));
    }

    /// Whether the removed member is in the group (as the second admin sees it).
    fn removed_is_member(&self) -> bool {
        let removed = &self.addresses[self.removed()];
        self.peers[RE_ADDER].device.group(GROUP).is_some_and(|group| group.members().contains(removed))
    }

    /// Member `m`'s own sender key record, serialized (empty if it has none).
    fn own_key(&self, m: usize) -> Vec<u8> {
        let store = self.peers[m].device.sender_key_store();
        match store.load_sender_key(GROUP, &self.addresses[m]) {
            Ok(Some(record)) => record.serialize().to_vec(),
            _ => Vec::new(),
        }
    }

    /// One removal; returns the time of the whole group's share (the senders' scaled when sampled).
    fn change(&mut self) -> Duration {
        let removed = self.removed();
        let mut tally = std::mem::take(&mut self.tally);
        // Untimed: the group is whole again, and each member's own key noted.
        if !self.removed_is_member() {
            let change = Change { add: vec![self.addresses[removed].clone()], ..Change::default() };
            let adder = &mut self.peers[RE_ADDER];
            let order = adder.device.propose(GROUP, &change, &mut adder.rng).expect("an admin adds");
            self.commit_and_deliver(RE_ADDER, order, &mut tally);
        }
        self.keys_before = (0..removed).map(|m| self.own_key(m)).collect();
        self.last_messages.clear();
        let mut timed = Duration::ZERO;

        // The remover proposes, has it ordered, rotates, and seals the announcements.
        let change = Change { remove: vec![self.addresses[removed].clone()], ..Change::default() };
        let start = Instant::now();
        let remover = &mut self.peers[REMOVER];
        let order = remover.device.propose(GROUP, &change, &mut remover.rng).expect("the remover is an admin");
        let head = head(order);
        let announcements = remover.device.ordered(&head, &mut remover.rng).expect("the hub's head is the proposal's");
        let notices = seal(remover, announcements, &mut tally);
        timed += start.elapsed();

        // Untimed: to whom each goes.
        let mut to_removed = None;
        let mut inbox: Vec<(usize, Sealed)> = Vec::with_capacity(notices.len());
        for (to, sealed) in notices {
            match self.index[&to] {
                m if m == removed => to_removed = Some(sealed),
                m => inbox.push((m, sealed)),
            }
        }

        // Every remaining member reads it and, on its hub's word, applies it (and rotates).
        let remover = self.addresses[REMOVER].clone();
        let start = Instant::now();
        for (m, sealed) in &inbox {
            if let Some(Received::Group { change: Some(_), .. }) = apply_announcement(&mut self.peers[*m], &remover, sealed, &head, &mut tally) {
                tally.read += 1;
            }
        }
        timed += start.elapsed();
        drop(inbox);

        // Untimed: the removed member learns it is out.
        match to_removed {
            Some(sealed) => match apply_announcement(&mut self.peers[removed], &remover, &sealed, &head, &mut tally) {
                Some(Received::RemovedFromGroup { .. }) => {}
                other => tally.failures.push(format!("the removed member did not leave: {other:?}")),
            },
            None => tally.failures.push("the removed member was not told".to_owned()),
        }

        // Each active sender sends one message, its new key first to every other member.
        let mut senders_time = Duration::ZERO;
        for s in FIRST_SENDER..FIRST_SENDER + self.senders.timed {
            senders_time += self.send(s, &mut tally);
        }
        // Untimed (sampled groups only): the other active senders' keys, to the members whose
        // timed messages they change the sessions of.
        let readers: Vec<usize> = [REMOVER, RE_ADDER].into_iter().chain(FIRST_SENDER..FIRST_SENDER + self.senders.timed).collect();
        for u in FIRST_SENDER + self.senders.timed..FIRST_SENDER + self.senders.active {
            self.send_key_to(u, &readers, &mut tally);
        }
        timed += senders_time.mul_f64(self.senders.active as f64 / self.senders.timed as f64);
        self.tally = tally;
        timed
    }

    /// Sender `s` sends one group message as `Endpoint::send_group` does, its key first to each
    /// member that lacks it, and every recipient reads both; returns the time of it.
    fn send(&mut self, s: usize, tally: &mut Tally) -> Duration {
        let removed = self.removed();
        let content = self.content.clone();
        let mut took = Duration::ZERO;

        let start = Instant::now();
        let sender = &mut self.peers[s];
        let mut franking_key = [0u8; FRANKING_LEN];
        sender.rng.fill_bytes(&mut franking_key);
        let commitment = franking::commit(&franking_key, &content);
        let payload = GroupPayload { application: content, franking_key: franking_key.to_vec() }.encode_to_vec();
        let message = sender.device.encrypt_group(GROUP, &payload, &mut sender.rng).expect("a member sends");
        let keys = seal(sender, message.key_distributions, tally);
        took += start.elapsed();

        // Untimed: to whom each goes.
        let from = self.addresses[s].clone();
        let keys: Vec<(usize, Sealed)> = keys.into_iter().map(|(to, sealed)| (self.index[&to], sealed)).collect();
        let recipients: Vec<usize> = message.recipients.iter().map(|to| self.index[to]).collect();
        if !self.removed_is_member() {
            let keys_to_removed = keys.iter().filter(|(to, _)| *to == removed).count();
            tally.to_removed += (keys_to_removed + recipients.iter().filter(|&&to| to == removed).count()) as u64;
        }

        let start = Instant::now();
        for (to, sealed) in &keys {
            match open(&mut self.peers[*to], &from, sealed, tally) {
                Some(Received::Group { change: None, .. }) => tally.read += 1,
                Some(other) => tally.failures.push(format!("member {to} took {from}'s key for {other:?}")),
                None => {}
            }
        }
        for &to in &recipients {
            let peer = &mut self.peers[to];
            let opened = peer.device.decrypt_group(GROUP, &from, &message.bytes).map(|plaintext| {
                decode::<GroupPayload>(&plaintext, limits::MAX_PAYLOAD_LEN)
                    .is_ok_and(|payload| franking::opens(&commitment, &payload.franking_key, &payload.application))
            });
            match opened {
                Ok(true) => tally.read += 1,
                Ok(false) => tally.failures.push(format!("member {to}: {from}'s message does not open its commitment")),
                Err(error) => tally.failures.push(format!("member {to} cannot read {from}'s message: {error}")),
            }
        }
        took += start.elapsed();
        self.last_messages.push((s, message.bytes));
        took
    }

    /// With the clock stopped: sender `u` hands its current key to `readers` only (its message
    /// itself goes nowhere), and they store it.
    fn send_key_to(&mut self, u: usize, readers: &[usize], tally: &mut Tally) {
        let sender = &mut self.peers[u];
        let message = sender.device.encrypt_group(GROUP, b"untimed", &mut sender.rng).expect("a member sends");
        let wanted: Vec<&ProtocolAddress> = readers.iter().map(|&r| &self.addresses[r]).collect();
        let (send, skip): (Vec<PendingSend>, Vec<PendingSend>) =
            message.key_distributions.into_iter().partition(|pending| wanted.contains(&&pending.to));
        sender.device.key_not_delivered(GROUP, &skip);
        let keys = seal(sender, send, tally);
        let from = self.addresses[u].clone();
        for (to, sealed) in keys {
            let to = self.index[&to];
            if !matches!(open(&mut self.peers[to], &from, &sealed, tally), Some(Received::Group { change: None, .. })) {
                tally.failures.push(format!("member {to} did not store {from}'s key"));
            }
        }
    }
}

/// Establishes a session (through the client core: a first message and its answer) for each pair
/// of member indices, on every core; the initiator alternates with the pair (`mesh::initiator`).
fn connect(peers: &mut [Peer], addresses: &[ProtocolAddress], pairs: &[(usize, usize)], bundles: &HashMap<ProtocolAddress, VerifiedBundle>) {
    let pairs: Vec<(usize, usize)> = pairs.iter().map(|&(a, b)| mesh::initiator(a, b)).collect();
    let mut starts: Vec<Vec<usize>> = vec![Vec::new(); peers.len()];
    let mut answers: Vec<Vec<usize>> = vec![Vec::new(); peers.len()];
    for (pair, &(initiator, responder)) in pairs.iter().enumerate() {
        starts[initiator].push(pair);
        answers[responder].push(pair);
    }
    let firsts = mesh::route(peers, &starts, pairs.len(), |peer: &mut Peer, pair| {
        let to = &addresses[pairs[pair].1];
        peer.device.send(to, b"hello", &mut Published(bundles), &mut peer.rng).expect("a bundle").message
    });
    let replies = mesh::route(peers, &answers, pairs.len(), |peer: &mut Peer, pair| {
        let from = &addresses[pairs[pair].0];
        let (received, _) = peer.device.receive(from, &firsts[pair], &mut NoBundles, &mut peer.rng).expect("a first message");
        assert!(matches!(received, Received::Application { .. }));
        peer.device.send(from, b"hello back", &mut NoBundles, &mut peer.rng).expect("a session").message
    });
    mesh::route(peers, &starts, pairs.len(), |peer: &mut Peer, pair| {
        let from = &addresses[pairs[pair].1];
        peer.device.receive(from, &replies[pair], &mut NoBundles, &mut peer.rng).expect("the answer");
    });
}

impl Workload for Removal {
    fn run(&mut self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            total += self.change();
            self.report.iterations += 1;
        }
        self.report.messages += std::mem::take(&mut self.tally.read);
        total
    }

    /// See the module's documentation, "Checks".
    fn report(&mut self) -> Report {
        if self.report.iterations == 0 {
            return self.report.clone();
        }
        let removed = self.removed();
        let failures = std::mem::take(&mut self.tally.failures);
        let first = failures.first().cloned().unwrap_or_default();
        self.report.check(failures.is_empty(), || format!("{} failure(s) in the timed region, first: {first}", failures.len()));
        let to_removed = std::mem::take(&mut self.tally.to_removed);
        self.report.check(to_removed == 0, || format!("{to_removed} message(s) after the removal went to the removed member"));

        // Every remaining member holds the remover's new state, and has rotated its own key.
        let state = self.peers[REMOVER].device.group(GROUP).cloned();
        let members = state.as_ref().map_or(0, |group| group.members().len());
        let removed_address = self.addresses[removed].clone();
        let behind: Vec<usize> = (0..removed)
            .filter(|&m| self.peers[m].device.group(GROUP).map(|group| group.hash()) != state.as_ref().map(|group| group.hash()))
            .collect();
        self.report.check(behind.is_empty() && members == removed && state.as_ref().is_some_and(|group| !group.members().contains(&removed_address)), || {
            format!("after the removal: {members} members in the remover's state; members {behind:?} hold another")
        });
        self.report.check(self.peers[removed].device.group(GROUP).is_none(), || "the removed member still holds the group".to_owned());
        let kept: Vec<usize> = (0..removed).filter(|&m| self.keys_before.get(m).is_none_or(|before| *before == self.own_key(m))).collect();
        self.report.check(kept.is_empty(), || format!("members {kept:?} did not rotate their sender key"));

        // Each timed sender's probe, under its new key: read by every other remaining member, and
        // by the removed one neither it nor the message it sent in the last change.
        let mut holders = 0;
        let mut wrong = Vec::new();
        let thief = self.peers[removed].device.every_sender_key_received();
        for s in FIRST_SENDER..FIRST_SENDER + self.senders.timed {
            let from = self.addresses[s].clone();
            let probe = format!("probe from member {s}").into_bytes();
            let sender = &mut self.peers[s];
            let message = match sender.device.encrypt_group(GROUP, &probe, &mut sender.rng) {
                Ok(message) => message,
                Err(error) => {
                    wrong.push(format!("member {s} cannot send a probe: {error}"));
                    continue;
                }
            };
            if !message.key_distributions.is_empty() {
                wrong.push(format!("member {s}'s key is not held by {} member(s)", message.key_distributions.len()));
            }
            for to in (0..removed).filter(|&to| to != s) {
                match self.peers[to].device.decrypt_group(GROUP, &from, &message.bytes) {
                    Ok(got) if got == probe => holders += 1,
                    Ok(_) => wrong.push(format!("member {to} read member {s}'s probe wrong")),
                    Err(error) => wrong.push(format!("member {to} cannot read member {s}'s probe: {error}")),
                }
            }
            let last = self.last_messages.iter().find(|(sender, _)| *sender == s).map(|(_, bytes)| bytes.as_slice());
            for (what, bytes) in [("probe", Some(message.bytes.as_slice())), ("message", last)] {
                let Some(bytes) = bytes else { continue };
                let mut store = thief.clone();
                let read = SenderKeyMessage::parse(bytes).and_then(|message| group::decrypt(&mut store, GROUP, &from, &message));
                if read.is_ok() {
                    wrong.push(format!("the removed member read member {s}'s {what}"));
                }
            }
        }
        let first = wrong.first().cloned().unwrap_or_default();
        self.report.check(wrong.is_empty(), || format!("{} probe check(s) failed, first: {first}", wrong.len()));
        self.report.members = Some(members);
        self.report.key_holders = Some(holders);
        self.report.clone()
    }
}
