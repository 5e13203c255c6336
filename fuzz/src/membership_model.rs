//! The model behind the `group_control` target: a group's authority under a forging member.
//!
//! Four devices: Alice creates the group with Bob and Carol and is its admin; Dave is outside.
//! The input is a sequence of actions, read byte by byte: an admin adds, removes or promotes; Carol
//! (never promoted by the model) forges an announcement from her view — members, admins, epoch and
//! previous hash chosen by the input — or sends arbitrary bytes as a group control; any member
//! writes to the group; and any message in flight is delivered, in any order, or dropped.
//!
//! The model plays the group's hub: an admin's change applies only if the hub orders it (it
//! names the hub's head as its previous state), and a device told of a change asks the hub which
//! state it ordered at that epoch before applying it, as a networked device does.
//!
//! Checks, after every step: no panic; a delivery that is refused leaves the recipient's view of
//! the group as it was; every device in the group holds a state some admin made (its hash is one
//! the model saw an admin make, since Carol is never an admin) — including a device outside the
//! group that Carol tells it joined a state of her making; and a group message is read only by a
//! member of the state its sender was at, as the admins made it.

use std::collections::{HashMap, HashSet, VecDeque};

use arbitrary::Unstructured;
use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_client_core::{Change, Device, Group, InMemoryDirectory, OrderKey, Outgoing, PendingSend};
use switchboard_session::{ProtocolAddress, Suite};
use switchboard_wire::Message;
use switchboard_wire::switchboard::{GroupHead, PairwisePayload, pairwise_payload::Body};

use crate::{byte, pick};

const GROUP: &str = "g@app0";
const ALICE: usize = 0;
const CAROL: usize = 2;
const DEVICES: usize = 4;
/// Actions read from one input, at most (each may set up sessions: real key agreement).
pub const MAX_ACTIONS: usize = 48;

/// A group message sent: its bytes, its sender, and the state its sender was at.
struct Sent {
    from: usize,
    state: [u8; 32],
    bytes: Vec<u8>,
}

struct World {
    rng: StdRng,
    addresses: Vec<ProtocolAddress>,
    devices: Vec<Device>,
    directory: InMemoryDirectory,
    in_flight: VecDeque<(usize, Outgoing)>,
    /// Every state an admin made, by hash.
    admin_states: HashMap<[u8; 32], Group>,
    sent: Vec<Sent>,
    /// The hub's chain: the hash of the state it ordered at each epoch.
    ordered: Vec<[u8; 32]>,
}

/// Runs one input through the model, panicking on the first violated expectation.
pub fn run(data: &[u8]) {
    let mut rng = StdRng::seed_from_u64(0x6c0 + data.len() as u64);
    let addresses: Vec<ProtocolAddress> = (0..DEVICES).map(|i| ProtocolAddress::new(format!("d{i}@app{}", i % 2), 1)).collect();
    let mut directory = InMemoryDirectory::default();
    let devices: Vec<Device> = addresses
        .iter()
        .enumerate()
        .map(|(i, address)| {
            let mut device = Device::new(address.clone(), i as u32 + 1, &mut rng);
            device.check_changes_with_hub();
            directory.publish(address, device.publish_bundles(16, &mut rng)).expect("own bundles verify");
            device
        })
        .collect();
    let mut world = World {
        rng,
        addresses,
        devices,
        directory,
        in_flight: VecDeque::new(),
        admin_states: HashMap::new(),
        sent: Vec::new(),
        ordered: Vec::new(),
    };
    let members = [1, 2].map(|i| world.addresses[i].clone());
    let outgoing = world.devices[ALICE].create_group(GROUP, members, Suite::Aes256Gcm, &mut world.directory, &mut world.rng).expect("a new group");
    world.made_by_admin(ALICE);
    world.ordered.push(*world.devices[ALICE].group(GROUP).expect("created").hash());
    world.in_flight.extend(outgoing.into_iter().map(|o| (ALICE, o)));
    while !world.in_flight.is_empty() {
        world.deliver(0);
    }

    let mut u = Unstructured::new(data);
    let mut actions = 0;
    while !u.is_empty() && actions < MAX_ACTIONS {
        actions += 1;
        let op = byte(&mut u);
        let (a, b, c) = (byte(&mut u), byte(&mut u), byte(&mut u));
        match op % 7 {
            0 => world.admin_change(a, b),
            1 | 2 => world.deliver(a),
            3 => world.forge(a, b, c),
            4 => world.raw(a, &[b, c, byte(&mut u), byte(&mut u)]),
            5 => world.write(a),
            _ => drop(pick(a, world.in_flight.len()).and_then(|i| world.in_flight.remove(i))),
        }
        world.check();
    }
    // Everything left arrives; the checks hold at the end too.
    while !world.in_flight.is_empty() {
        world.deliver(0);
        world.check();
    }
}

/// What the hub answers about `epoch`: the state it ordered then, or its head.
fn hub_answer(ordered: &[[u8; 32]], epoch: u64) -> GroupHead {
    let (epoch, hash) = match ordered.get(epoch as usize) {
        Some(hash) => (epoch, hash),
        None => (ordered.len() as u64 - 1, ordered.last().expect("created")),
    };
    GroupHead { group_id: GROUP.to_owned(), epoch, state_hash: hash.to_vec() }
}

impl World {
    fn made_by_admin(&mut self, admin: usize) {
        let group = self.devices[admin].group(GROUP).expect("the admin's own change").clone();
        self.admin_states.insert(*group.hash(), group);
    }

    /// An admin of the group (as its own device holds it) adds, removes or promotes a device.
    fn admin_change(&mut self, who: u8, what: u8) {
        let admins: Vec<usize> = (0..DEVICES)
            .filter(|d| *d != CAROL && self.devices[*d].group(GROUP).is_some_and(|g| g.admins().contains(&self.addresses[*d])))
            .collect();
        let Some(admin) = pick(who, admins.len()).map(|i| admins[i]) else { return };
        let target = usize::from(what >> 2) % DEVICES;
        // Carol stays a member that is never an admin: whatever state names her admin, no admin made it.
        let address = self.addresses[target].clone();
        let change = match what % 3 {
            0 => Change { add: vec![address], ..Change::default() },
            1 => Change { remove: vec![address], ..Change::default() },
            _ if target == CAROL => return,
            _ => Change { promote: vec![address], ..Change::default() },
        };
        let (device, rng, directory) = (&mut self.devices[admin], &mut self.rng, &mut self.directory);
        let Ok(order) = device.propose(GROUP, &change, rng) else { return };
        // The hub orders it if it follows the head (an admin whose view is behind loses).
        if order.epoch == self.ordered.len() as u64 && self.ordered.last().is_some_and(|head| order.prev_hash == head) {
            self.ordered.push(order.state_hash.as_slice().try_into().expect("32 bytes"));
        }
        let head = hub_answer(&self.ordered, u64::MAX);
        let Ok(announcements) = device.ordered(&head, rng) else { return };
        let outgoing = device.seal_all(announcements, directory, rng).expect("every device has a bundle");
        self.made_by_admin(admin);
        self.in_flight.extend(outgoing.into_iter().map(|o| (admin, o)));
    }

    /// Delivers the message in flight at `index`.
    fn deliver(&mut self, index: u8) {
        let Some((from, outgoing)) = pick(index, self.in_flight.len()).and_then(|i| self.in_flight.remove(i)) else { return };
        let to = self.addresses.iter().position(|a| *a == outgoing.to).expect("a device of the model");
        let before = self.devices[to].group(GROUP).map(|g| *g.hash());
        let from_address = self.addresses[from].clone();
        let (device, rng) = (&mut self.devices[to], &mut self.rng);
        let result = device.receive_pending(&from_address, &outgoing.message, rng);
        if let Ok((_, responses)) = &result {
            assert!(responses.is_empty(), "responses go out with the next message");
        }
        // The hub answers at once whatever waits for its word (a change settled may bring up
        // a kept one, which waits in turn). The delivery counts as refused if it failed, or if
        // the hub refused what waited and applied nothing: a change it applied may leave the
        // device out of the group and bring up a kept one naming it, which the hub may refuse.
        let (mut refused_any, mut applied_any) = (false, false);
        while let Some((_, epoch)) = device.awaiting_hub().first().cloned() {
            if let Ok(verdict) = device.hub_head(epoch, &hub_answer(&self.ordered, epoch), rng) {
                refused_any |= !verdict.refused.is_empty();
                applied_any |= verdict.applied.is_some();
            }
        }
        if result.is_err() || (refused_any && !applied_any) {
            assert_eq!(self.devices[to].group(GROUP).map(|g| *g.hash()), before, "a refused delivery changed the group");
        }
    }

    /// Carol announces a state of her making, from her view: members and admins from bit masks,
    /// an epoch moved by `shift`, and (by its top bit) a previous hash that names no state.
    fn forge(&mut self, to: u8, masks: u8, shift: u8) {
        let Some(view) = self.devices[CAROL].group(GROUP).cloned() else { return };
        let chosen = |mask: u8| self.addresses.iter().enumerate().filter(|(i, _)| mask >> i & 1 == 1).map(|(_, a)| a.clone()).collect();
        let mut members: indexmap::IndexSet<ProtocolAddress> = chosen(masks & 0x0f);
        members.insert(self.addresses[CAROL].clone());
        let mut admins: indexmap::IndexSet<ProtocolAddress> = chosen(masks >> 4);
        admins.insert(self.addresses[CAROL].clone());
        admins.retain(|a| members.contains(a));
        // Signed with a key of Carol's own: she holds none of the group's.
        let own_key = OrderKey::generate(&mut self.rng);
        let Ok(forged) = view.next(members, admins, Some(&own_key)).map(|group| group.sign(&own_key)) else { return };
        let mut control = forged.announcement();
        control.epoch = match shift % 4 {
            0 => view.epoch(),
            1 => view.epoch() + 1,
            2 => view.epoch() + u64::from(shift >> 2),
            _ => u64::MAX - u64::from(shift >> 2),
        };
        if shift & 0x80 != 0 {
            control.prev_hash = vec![shift; 32];
        }
        let payload = PairwisePayload { body: Some(Body::GroupControl(control)), ..Default::default() }.encode_to_vec();
        self.seal_from_carol(to, payload);
    }

    /// Carol sends arbitrary bytes as a group control.
    fn raw(&mut self, to: u8, bytes: &[u8]) {
        let mut payload = vec![0x0a, bytes.len() as u8];
        payload.extend_from_slice(bytes);
        self.seal_from_carol(to, payload);
    }

    fn seal_from_carol(&mut self, to: u8, payload: Vec<u8>) {
        let Some(to) = pick(to, DEVICES - 1).map(|i| if i >= CAROL { i + 1 } else { i }) else { return };
        let send = PendingSend::new(self.addresses[to].clone(), payload);
        let (device, rng, directory) = (&mut self.devices[CAROL], &mut self.rng, &mut self.directory);
        if let Ok(sealed) = device.seal_all(vec![send], directory, rng) {
            self.in_flight.extend(sealed.into_iter().map(|o| (CAROL, o)));
        }
    }

    /// A device in the group writes to it: its key goes out, and its message is kept for reading.
    fn write(&mut self, who: u8) {
        let from = usize::from(who) % DEVICES;
        let Some(state) = self.devices[from].group(GROUP).map(|g| *g.hash()) else { return };
        let (device, rng, directory) = (&mut self.devices[from], &mut self.rng, &mut self.directory);
        let Ok(mut message) = device.encrypt_group(GROUP, b"to the group", rng) else { return };
        let distributions = std::mem::take(&mut message.key_distributions);
        match device.seal_all(distributions.clone(), directory, rng) {
            Ok(sealed) => self.in_flight.extend(sealed.into_iter().map(|o| (from, o))),
            Err(_) => device.key_not_delivered(GROUP, &distributions),
        }
        self.sent.push(Sent { from, state, bytes: message.bytes });
    }

    fn check(&mut self) {
        for (index, device) in self.devices.iter().enumerate() {
            if let Some(group) = device.group(GROUP) {
                assert!(
                    self.admin_states.contains_key(group.hash()),
                    "{} holds epoch {} of the group, which no admin made",
                    self.addresses[index],
                    group.epoch()
                );
            }
        }
        // Every message so far, tried by every device: only members of its sender's state read it.
        let mut tried = HashSet::new();
        for sent in &self.sent {
            for reader in (0..DEVICES).filter(|r| *r != sent.from) {
                if !tried.insert((sent.bytes.clone(), reader)) {
                    continue;
                }
                let store = self.devices[reader].sender_key_store().clone();
                let mut probe = store;
                let Ok(message) = switchboard_session::group::SenderKeyMessage::parse(&sent.bytes) else { continue };
                let readable = switchboard_session::group::decrypt(&mut probe, GROUP, &self.addresses[sent.from], &message).is_ok();
                let state = self.admin_states.get(&sent.state).expect("a writer holds a state an admin made");
                if readable {
                    assert!(
                        state.members().contains(&self.addresses[reader]),
                        "{} can read a message {} sent while not a member of its state",
                        self.addresses[reader],
                        self.addresses[sent.from]
                    );
                }
            }
        }
    }
}
