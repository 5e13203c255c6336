//! The event loop: devices and relays over the virtual network and clock. Everything random
//! comes from one RNG seeded with the run's seed, and events at the same instant run in the order
//! they were scheduled, so a scenario and a seed give one run, bit for bit.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use switchboard_relay::core::Action;
use switchboard_session::{ProtocolAddress, Suite};
use switchboard_wire::Message;
use switchboard_wire::switchboard::{FederationFrame, ServerFrame, federation_frame, server_frame};

use crate::client::{self, Client, Outcome};
use crate::ledger::{GroupCiphertext, Ledger, MessageRecord};
use crate::network::{Fate, History, Link, RESET_DETECTION_US};
use crate::relay::{COMMIT_US, Decision, Relay};
use crate::scenario::{AdversaryKind, GroupStrategy, Scenario};
use crate::thief::Thief;
use crate::trace::{Node, Trace, TraceEvent};

pub(crate) const SECOND: u64 = 1_000_000;
/// Time before traffic starts, for every device to register.
const SETUP_US: u64 = 2 * SECOND;
/// How long a device waits before connecting again.
const RECONNECT_US: u64 = 500_000;
/// How long a relay waits before dialing another again.
const REDIAL_US: u64 = SECOND;
/// How long a device waits before retrying what was refused for now.
const CLIENT_RETRY_US: u64 = 500_000;
/// How long a reordering relay holds an envelope back, at most.
const ADVERSARY_HOLD_US: u64 = 2 * SECOND;

#[derive(Debug)]
enum Event {
    Frame { conn: u64, toward: usize, bytes: Vec<u8>, replayed: bool },
    ConnDown { conn: u64 },
    Connect { device: usize },
    Dial { dialer: usize, acceptor: usize },
    Commit { relay: usize, epoch: u32 },
    Tick { relay: usize },
    ClientRetry { device: usize },
    Crash { relay: usize, down_us: u64 },
    Restart { relay: usize },
    Offline { device: usize, for_us: u64 },
    Online { device: usize },
    Traffic,
    CreateGroups,
    Churn { group: usize, join: bool },
    Theft { device: usize },
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnKind {
    /// Between a device and its app's relay; `toward` 0 is the relay, 1 the device.
    Client { device: usize, relay: usize },
    /// Between two relays; `toward` 0 is the acceptor, 1 the dialer.
    Link { dialer: usize, acceptor: usize },
}

struct Conn {
    kind: ConnKind,
    /// Lost a frame: everything else on it is lost until both ends notice.
    broken: bool,
    /// Per direction, the arrival time of the last in-order frame (TCP keeps order).
    last_arrival: [u64; 2],
    history: Option<[History; 2]>,
}

/// A group as the scenario sees it.
pub(crate) struct SimGroup {
    pub id: String,
    pub apps: Vec<usize>,
    pub admin: usize,
    /// Users (by index) currently in it.
    pub users: Vec<usize>,
}

pub(crate) struct User {
    pub name: String,
    pub app: usize,
    pub devices: Vec<usize>,
}

/// Counters of what the network did.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct FaultCounts {
    pub dropped: u64,
    pub corrupted: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub replayed: u64,
    pub resets: u64,
    pub partitioned: u64,
    pub crashes: u64,
}

/// Bytes and frames carried by one link.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkLoad {
    pub frames: u64,
    pub bytes: u64,
}

pub struct World {
    pub(crate) scenario: Scenario,
    pub(crate) rng: StdRng,
    pub(crate) now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    pub(crate) relays: Vec<Relay>,
    pub(crate) clients: Vec<Client>,
    pub(crate) users: Vec<User>,
    /// User index by name, and each device's user.
    user_index: HashMap<String, usize>,
    user_of: Vec<usize>,
    pub(crate) groups: Vec<SimGroup>,
    pub(crate) app_names: Vec<String>,
    access: Vec<Link>,
    federation: HashMap<(usize, usize), Link>,
    partitions: Vec<(usize, usize, u64, u64)>,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    client_conn: Vec<Option<u64>>,
    wants_online: Vec<bool>,
    retry_scheduled: Vec<bool>,
    pub(crate) ledger: Ledger,
    pub(crate) trace: Trace,
    pub(crate) faults: FaultCounts,
    /// Access links per app (both directions), then federation links per app pair.
    pub(crate) access_load: Vec<LinkLoad>,
    pub(crate) federation_load: HashMap<(usize, usize), LinkLoad>,
    pub(crate) client_busy: Vec<std::time::Duration>,
    pub(crate) thieves: Vec<Thief>,
    /// Devices whose deliveries are captured for a theft, with the theft's index.
    victims: HashMap<usize, usize>,
    traffic_left: u64,
    pub(crate) traffic_start: u64,
    pub(crate) traffic_end: u64,
    pub(crate) end: u64,
    pub(crate) skipped_group_sends: u64,
    pub(crate) suite: Suite,
    pub(crate) availability_attacked: bool,
    progress: Option<Box<dyn FnMut(u64, u64)>>,
}

impl World {
    pub fn new(scenario: Scenario, seed: u64, trace: Trace) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let app_names = scenario.app_names();
        let traffic_start = SETUP_US;
        let traffic_end = traffic_start + secs(scenario.duration_s);
        let window = |from: Option<f64>, until: Option<f64>| {
            (from.map_or(traffic_start, |s| traffic_start + secs(s)), until.map_or(traffic_end, |s| traffic_start + secs(s)))
        };
        let mut last_fault = traffic_end;
        let access = scenario
            .apps
            .iter()
            .map(|app| {
                let spec = app.access.clone().unwrap_or_default();
                let (from, until) = window(spec.from_s, spec.until_s);
                last_fault = last_fault.max(until);
                Link { spec, faults_from_us: from, faults_until_us: until }
            })
            .collect();
        let index_of = |name: &str| app_names.iter().position(|n| n == name).expect("checked by the scenario");
        let mut federation = HashMap::new();
        for a in 0..app_names.len() {
            for b in a + 1..app_names.len() {
                federation.insert((a, b), Link::clean(None));
            }
        }
        for link in &scenario.links {
            let (a, b) = (index_of(&link.apps.get_ref()[0]), index_of(&link.apps.get_ref()[1]));
            let (from, until) = window(link.spec.from_s, link.spec.until_s);
            last_fault = last_fault.max(until);
            federation.insert((a.min(b), a.max(b)), Link { spec: link.spec.clone(), faults_from_us: from, faults_until_us: until });
        }
        let partitions: Vec<_> = scenario
            .partitions
            .iter()
            .map(|p| {
                let (a, b) = (index_of(&p.apps.get_ref()[0]), index_of(&p.apps.get_ref()[1]));
                last_fault = last_fault.max(traffic_start + secs(p.until_s));
                (a.min(b), a.max(b), traffic_start + secs(p.from_s), traffic_start + secs(p.until_s))
            })
            .collect();
        for crash in &scenario.crashes {
            last_fault = last_fault.max(traffic_start + secs(crash.at_s + crash.down_s));
        }
        for offline in &scenario.offline {
            last_fault = last_fault.max(traffic_start + secs(offline.from_s + offline.for_s));
        }

        let mut relays: Vec<Relay> = app_names.iter().map(|app| Relay::new(app, app_names.clone())).collect();
        for relay in &mut relays {
            relay.keeps_disk = scenario.crashes.iter().any(|crash| *crash.relay.get_ref() == relay.app);
        }
        let mut availability_attacked = false;
        let mut users = Vec::new();
        let mut clients = Vec::new();
        for (app_index, app) in scenario.apps.iter().enumerate() {
            let names = app.users.iter().cloned().chain((0..app.user_count).map(|i| format!("u{i}")));
            for name in names {
                let user = format!("{name}@{}", app.name.get_ref());
                let mut devices = Vec::new();
                for device_id in 1..=app.devices_per_user {
                    let index = clients.len();
                    let address = ProtocolAddress::new(user.clone(), device_id);
                    let mut client =
                        Client::new(address, app_index, scenario.prekeys_per_device, scenario.group_strategy, &mut rng);
                    client.inject(scenario.inject.no_rotation_on_removal, scenario.inject.no_duplicate_drop);
                    if device_id == 1 {
                        client.siblings = (2..=app.devices_per_user).collect();
                    }
                    clients.push(client);
                    devices.push(index);
                }
                users.push(User { name: user, app: app_index, devices });
            }
        }
        let device_of = |text: &str| -> Vec<usize> {
            let (user, device) = match text.split_once('/') {
                Some((user, n)) => (user, n.parse::<u32>().ok()),
                None => (text, None),
            };
            users
                .iter()
                .filter(|u| u.name == user)
                .flat_map(|u| u.devices.iter().copied())
                .filter(|d| device.is_none_or(|n| clients[*d].address.device_id() == n))
                .collect()
        };
        for adversary in &scenario.adversaries {
            let relay = index_of(adversary.relay.get_ref());
            let targets = adversary.target.as_ref().map(|t| device_of(t.get_ref()));
            availability_attacked |= matches!(adversary.kind, AdversaryKind::Tamper | AdversaryKind::Withhold);
            relays[relay].adversary = Some(crate::relay::Adversary::new(adversary.kind, adversary.share, targets));
        }
        let thefts: Vec<(usize, u64)> =
            scenario.thefts.iter().map(|t| (device_of(t.device.get_ref())[0], traffic_start + secs(t.at_s))).collect();
        let victims = thefts.iter().enumerate().map(|(i, (device, _))| (*device, i)).collect();
        let thieves = thefts.iter().map(|(device, at)| Thief::new(*device, *at)).collect();

        let devices = clients.len();
        let suite = scenario.suite.get_ref().parse().unwrap_or(Suite::Aes256Gcm);
        let end = last_fault.max(traffic_end) + secs(scenario.settle_s);
        let user_index = users.iter().enumerate().map(|(index, user)| (user.name.clone(), index)).collect();
        let mut user_of = vec![0; clients.len()];
        for (index, user) in users.iter().enumerate() {
            for &device in &user.devices {
                user_of[device] = index;
            }
        }
        let mut world = World {
            user_index,
            user_of,
            traffic_left: scenario.traffic.messages,
            scenario,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            relays,
            clients,
            users,
            groups: Vec::new(),
            access_load: vec![LinkLoad::default(); app_names.len()],
            app_names,
            access,
            federation,
            partitions,
            conns: HashMap::new(),
            next_conn: 1,
            client_conn: vec![None; devices],
            wants_online: vec![true; devices],
            retry_scheduled: vec![false; devices],
            ledger: Ledger::default(),
            trace,
            faults: FaultCounts::default(),
            federation_load: HashMap::new(),
            client_busy: Vec::new(),
            thieves,
            victims,
            traffic_start,
            traffic_end,
            end,
            skipped_group_sends: 0,
            suite,
            availability_attacked,
            progress: None,
        };
        world.client_busy = vec![Default::default(); world.app_names.len()];
        world.schedule_start(thefts);
        world
    }

    /// Calls `progress(now, end)` now and then during [`Self::run`].
    pub fn on_progress(&mut self, progress: Box<dyn FnMut(u64, u64)>) {
        self.progress = Some(progress);
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at, seq: self.seq, event }));
    }

    fn schedule_start(&mut self, thefts: Vec<(usize, u64)>) {
        for relay in 0..self.relays.len() {
            self.relays[relay].start(&mut self.rng);
            self.schedule(SECOND, Event::Tick { relay });
            for other in 0..self.relays.len() {
                if other != relay {
                    self.schedule(0, Event::Dial { dialer: relay, acceptor: other });
                }
            }
        }
        let spread = SETUP_US / 2;
        for device in 0..self.clients.len() {
            let at = self.rng.random_range(0..spread);
            self.schedule(at, Event::Connect { device });
        }
        self.schedule(self.traffic_start, Event::CreateGroups);
        if self.traffic_left > 0 {
            let first = self.next_traffic_gap();
            self.schedule(self.traffic_start + first, Event::Traffic);
        }
        let crashes: Vec<_> = self.scenario.crashes.iter().map(|c| (c.relay.get_ref().clone(), c.at_s, c.down_s)).collect();
        for (relay, at_s, down_s) in crashes {
            let relay = self.app_index(&relay);
            self.schedule(self.traffic_start + secs(at_s), Event::Crash { relay, down_us: secs(down_s) });
        }
        let offline = self.scenario.offline.clone();
        for spec in offline {
            let for_us = secs(spec.for_s);
            match (&spec.device, spec.share) {
                (Some(device), _) => {
                    for device in self.devices_named(device.get_ref()) {
                        self.schedule(self.traffic_start + secs(spec.from_s), Event::Offline { device, for_us });
                    }
                }
                (None, Some(share)) => {
                    for device in 0..self.clients.len() {
                        if self.rng.random::<f64>() < share {
                            let at = self.traffic_start + self.rng.random_range(0..secs(self.scenario.duration_s).max(1));
                            self.schedule(at, Event::Offline { device, for_us });
                        }
                    }
                }
                (None, None) => {}
            }
        }
        for (device, at) in thefts {
            self.schedule(at, Event::Theft { device });
        }
    }

    fn app_index(&self, name: &str) -> usize {
        self.app_names.iter().position(|n| n == name).unwrap_or(0)
    }

    fn devices_named(&self, text: &str) -> Vec<usize> {
        let (user, device) = match text.split_once('/') {
            Some((user, n)) => (user, n.parse::<u32>().ok()),
            None => (text, None),
        };
        self.users
            .iter()
            .filter(|u| u.name == user)
            .flat_map(|u| u.devices.iter().copied())
            .filter(|d| device.is_none_or(|n| self.clients[*d].address.device_id() == n))
            .collect()
    }

    /// Time to the next message: a Poisson process over the traffic window.
    fn next_traffic_gap(&mut self) -> u64 {
        let rate = self.scenario.traffic.messages as f64 / secs(self.scenario.duration_s).max(1) as f64;
        let u: f64 = self.rng.random();
        (-(1.0 - u).ln() / rate) as u64
    }

    /// Runs to the end of the scenario.
    pub fn run(&mut self) {
        let mut next_report = 0u64;
        while let Some(Reverse(scheduled)) = self.queue.pop() {
            if scheduled.at > self.end {
                break;
            }
            self.now = scheduled.at;
            self.handle(scheduled.event);
            if self.now >= next_report {
                next_report = self.now + SECOND;
                if let Some(progress) = self.progress.as_mut() {
                    progress(self.now, self.end);
                }
            }
        }
        self.now = self.end;
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Frame { conn, toward, bytes, replayed } => self.frame_arrived(conn, toward, bytes, replayed),
            Event::ConnDown { conn } => self.conn_down(conn),
            Event::Connect { device } => self.connect(device),
            Event::Dial { dialer, acceptor } => self.dial(dialer, acceptor),
            Event::Commit { relay, epoch } => self.commit(relay, epoch),
            Event::Tick { relay } => {
                self.schedule(self.now + SECOND, Event::Tick { relay });
                if let Some(core) = self.relays[relay].core.as_mut() {
                    let started = Instant::now();
                    let actions = core.tick();
                    self.relays[relay].stats.busy += started.elapsed();
                    self.relay_actions(relay, actions);
                }
            }
            Event::ClientRetry { device } => {
                self.retry_scheduled[device] = false;
                let mut out = Vec::new();
                self.clients[device].retry(&mut self.rng, &mut out);
                self.client_out(device, out);
            }
            Event::Crash { relay, down_us } => self.crash(relay, down_us),
            Event::Restart { relay } => {
                self.relays[relay].start(&mut self.rng);
                self.trace.record(TraceEvent::Restarted { at_us: self.now, relay });
            }
            Event::Offline { device, for_us } => {
                self.wants_online[device] = false;
                self.trace.record(TraceEvent::Offline { at_us: self.now, device });
                if let Some(conn) = self.client_conn[device] {
                    self.conn_down(conn);
                }
                self.schedule(self.now + for_us, Event::Online { device });
            }
            Event::Online { device } => {
                self.wants_online[device] = true;
                self.trace.record(TraceEvent::Online { at_us: self.now, device });
                if self.client_conn[device].is_none() {
                    self.connect(device);
                }
            }
            Event::Traffic => self.traffic(),
            Event::CreateGroups => self.create_groups(),
            Event::Churn { group, join } => self.churn(group, join),
            Event::Theft { device } => {
                self.trace.record(TraceEvent::Theft { at_us: self.now, device });
                if let Some(&index) = self.victims.get(&device) {
                    let client = &self.clients[device];
                    self.thieves[index].steal(client);
                }
            }
        }
    }

    // ---- connections -----------------------------------------------------------------------------

    fn new_conn(&mut self, kind: ConnKind, replays: bool) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        let history = replays.then(Default::default);
        self.conns.insert(id, Conn { kind, broken: false, last_arrival: [0, 0], history });
        id
    }

    fn connect(&mut self, device: usize) {
        if !self.wants_online[device] || self.client_conn[device].is_some() || !self.clients[device].can_connect() {
            return;
        }
        let relay = self.clients[device].app;
        if !self.relays[relay].is_up() {
            self.schedule(self.now + RECONNECT_US, Event::Connect { device });
            return;
        }
        let replays = self.access[relay].spec.replay > 0.0;
        let conn = self.new_conn(ConnKind::Client { device, relay }, replays);
        self.client_conn[device] = Some(conn);
        if let Some(core) = self.relays[relay].core.as_mut() {
            core.client_connected(conn);
        }
        let mut out = Vec::new();
        self.clients[device].connected(&mut out);
        self.client_out(device, out);
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        let (a, b) = (a.min(b), a.max(b));
        self.partitions.iter().any(|(x, y, from, until)| (*x, *y) == (a, b) && (*from..*until).contains(&self.now))
    }

    fn dial(&mut self, dialer: usize, acceptor: usize) {
        if !self.relays[dialer].is_up() {
            return; // it dials again when it restarts
        }
        if !self.relays[acceptor].is_up() || self.partitioned(dialer, acceptor) {
            self.schedule(self.now + REDIAL_US, Event::Dial { dialer, acceptor });
            return;
        }
        let link = &self.federation[&(dialer.min(acceptor), dialer.max(acceptor))];
        let replays = link.spec.replay > 0.0;
        let conn = self.new_conn(ConnKind::Link { dialer, acceptor }, replays);
        let (dialer_app, acceptor_app) = (self.app_names[dialer].clone(), self.app_names[acceptor].clone());
        if let Some(core) = self.relays[acceptor].core.as_mut() {
            core.link_up(conn, &dialer_app, false);
        }
        let actions = self.relays[dialer].core.as_mut().map(|core| core.link_up(conn, &acceptor_app, true)).unwrap_or_default();
        self.relay_actions(dialer, actions);
    }

    /// A connection is gone: both ends learn it, and the side that opens it tries again.
    fn conn_down(&mut self, conn: u64) {
        let Some(closed) = self.conns.remove(&conn) else { return };
        match closed.kind {
            ConnKind::Client { device, relay } => {
                self.trace.record(TraceEvent::Reset { at_us: self.now, a: Node::Device(device), b: Node::Relay(relay) });
                if let Some(core) = self.relays[relay].core.as_mut() {
                    core.client_closed(conn);
                }
                if self.client_conn[device] == Some(conn) {
                    self.client_conn[device] = None;
                }
                self.clients[device].disconnected();
                if self.wants_online[device] {
                    let jitter = self.rng.random_range(0..RECONNECT_US);
                    self.schedule(self.now + RECONNECT_US + jitter, Event::Connect { device });
                }
            }
            ConnKind::Link { dialer, acceptor } => {
                self.trace.record(TraceEvent::Reset { at_us: self.now, a: Node::Relay(dialer), b: Node::Relay(acceptor) });
                if let Some(core) = self.relays[acceptor].core.as_mut() {
                    core.link_closed(conn);
                }
                let actions = self.relays[dialer].core.as_mut().map(|core| core.link_closed(conn)).unwrap_or_default();
                self.relay_actions(dialer, actions);
                self.schedule(self.now + REDIAL_US, Event::Dial { dialer, acceptor });
            }
        }
    }

    fn crash(&mut self, relay: usize, down_us: u64) {
        if !self.relays[relay].is_up() {
            return;
        }
        self.relays[relay].crash();
        self.faults.crashes += 1;
        self.trace.record(TraceEvent::Crashed { at_us: self.now, relay });
        let mut touching: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| match c.kind {
                ConnKind::Client { relay: r, .. } => r == relay,
                ConnKind::Link { dialer, acceptor } => dialer == relay || acceptor == relay,
            })
            .map(|(id, _)| *id)
            .collect();
        touching.sort_unstable();
        for conn in touching {
            self.conn_down(conn);
        }
        self.schedule(self.now + down_us, Event::Restart { relay });
        for other in 0..self.relays.len() {
            if other != relay {
                self.schedule(self.now + down_us + 1, Event::Dial { dialer: relay, acceptor: other });
            }
        }
    }

    // ---- frames ----------------------------------------------------------------------------------

    fn ends(kind: ConnKind, toward: usize) -> (Node, Node) {
        match (kind, toward) {
            (ConnKind::Client { device, relay }, 0) => (Node::Device(device), Node::Relay(relay)),
            (ConnKind::Client { device, relay }, _) => (Node::Relay(relay), Node::Device(device)),
            (ConnKind::Link { dialer, acceptor }, 0) => (Node::Relay(dialer), Node::Relay(acceptor)),
            (ConnKind::Link { dialer, acceptor }, _) => (Node::Relay(acceptor), Node::Relay(dialer)),
        }
    }

    /// Puts a frame on a connection, through the link's delay and faults.
    fn send(&mut self, conn: u64, toward: usize, bytes: Vec<u8>, what: &'static str, extra_delay: u64) {
        let Some(c) = self.conns.get(&conn) else { return };
        if c.broken {
            return;
        }
        let kind = c.kind;
        let (from, to) = Self::ends(kind, toward);
        self.trace.record(TraceEvent::Sent { at_us: self.now, from, to, bytes: bytes.len(), what });
        let (link, partitioned) = match kind {
            ConnKind::Client { relay, .. } => {
                let load = &mut self.access_load[relay];
                load.frames += 1;
                load.bytes += bytes.len() as u64;
                (&self.access[relay], false)
            }
            ConnKind::Link { dialer, acceptor } => {
                let key = (dialer.min(acceptor), dialer.max(acceptor));
                let load = self.federation_load.entry(key).or_default();
                load.frames += 1;
                load.bytes += bytes.len() as u64;
                (&self.federation[&key], self.partitioned(dialer, acceptor))
            }
        };
        let fate = if partitioned { Fate::Resets { fault: "partition" } } else { link.fate(self.now, &mut self.rng) };
        let replay = !partitioned && link.replays(self.now, &mut self.rng);
        match fate {
            Fate::Resets { fault } => {
                match fault {
                    "drop" => self.faults.dropped += 1,
                    "corrupt" => self.faults.corrupted += 1,
                    _ => self.faults.partitioned += 1,
                }
                self.faults.resets += 1;
                self.trace.record(TraceEvent::Fault { at_us: self.now, from, to, fault });
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.broken = true;
                }
                self.schedule(self.now + RESET_DETECTION_US, Event::ConnDown { conn });
            }
            Fate::Arrives { delay_us, duplicate_after_us, reordered } => {
                let c = self.conns.get_mut(&conn).expect("checked above");
                let mut at = self.now + delay_us + extra_delay;
                if reordered || extra_delay > 0 {
                    self.faults.reordered += u64::from(reordered);
                } else {
                    at = at.max(c.last_arrival[toward]);
                    c.last_arrival[toward] = at;
                }
                let earlier = match (&mut c.history, replay) {
                    (Some(history), true) => history[toward].pick(&mut self.rng),
                    _ => None,
                };
                if let Some(history) = c.history.as_mut() {
                    history[toward].remember(&bytes);
                }
                if let Some(after) = duplicate_after_us {
                    self.faults.duplicated += 1;
                    self.trace.record(TraceEvent::Fault { at_us: self.now, from, to, fault: "duplicate" });
                    self.schedule(at + after, Event::Frame { conn, toward, bytes: bytes.clone(), replayed: true });
                }
                if let Some(earlier) = earlier {
                    self.faults.replayed += 1;
                    self.trace.record(TraceEvent::Fault { at_us: self.now, from, to, fault: "replay" });
                    self.schedule(at + 1, Event::Frame { conn, toward, bytes: earlier, replayed: true });
                }
                self.schedule(at, Event::Frame { conn, toward, bytes, replayed: false });
            }
        }
    }

    fn frame_arrived(&mut self, conn: u64, toward: usize, bytes: Vec<u8>, replayed: bool) {
        let Some(c) = self.conns.get(&conn) else { return };
        if c.broken {
            return;
        }
        let kind = c.kind;
        let (from, to) = Self::ends(kind, toward);
        self.trace.record(TraceEvent::Arrived { at_us: self.now, from, to, bytes: bytes.len(), what: if replayed { "again" } else { "frame" } });
        match (kind, toward) {
            (ConnKind::Client { relay, .. }, 0) => {
                let node = &mut self.relays[relay];
                node.inspect(&bytes);
                let Some(core) = node.core.as_mut() else { return };
                let started = Instant::now();
                let actions = core.client_frame(conn, &bytes);
                node.stats.busy += started.elapsed();
                self.relay_actions(relay, actions);
            }
            (ConnKind::Client { device, .. }, _) => {
                if self.victims.contains_key(&device) {
                    self.capture_for_thief(device, &bytes);
                }
                let mut out = Vec::new();
                let mut outcomes = Vec::new();
                let started = Instant::now();
                self.clients[device].frame_arrived(&bytes, &mut self.rng, &mut out, &mut outcomes);
                self.client_busy[self.clients[device].app] += started.elapsed();
                self.client_out(device, out);
                self.outcomes(device, outcomes);
            }
            (ConnKind::Link { dialer, acceptor }, toward) => {
                let relay = if toward == 0 { acceptor } else { dialer };
                let node = &mut self.relays[relay];
                node.inspect(&bytes);
                let Some(core) = node.core.as_mut() else { return };
                let started = Instant::now();
                let actions = core.link_frame(conn, &bytes);
                node.stats.busy += started.elapsed();
                self.relay_actions(relay, actions);
            }
        }
    }

    /// Frames a device wants sent, on its current connection; a retry scheduled if it asked.
    fn client_out(&mut self, device: usize, out: Vec<client::OutFrame>) {
        if let Some(conn) = self.client_conn[device] {
            for frame in out {
                self.send(conn, 0, frame.bytes, frame.what, 0);
            }
        }
        for (device_id, credential) in std::mem::take(&mut self.clients[device].linked) {
            let user = &self.users[self.user_of[device]];
            if let Some(&sibling) = user.devices.iter().find(|d| self.clients[**d].address.device_id() == device_id) {
                self.clients[sibling].set_credential(credential);
                self.schedule(self.now + 1, Event::Connect { device: sibling });
            }
        }
        if self.clients[device].needs_retry && !self.retry_scheduled[device] {
            self.retry_scheduled[device] = true;
            self.schedule(self.now + CLIENT_RETRY_US, Event::ClientRetry { device });
        }
    }

    fn relay_actions(&mut self, relay: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::ToClient { conn, frame } => self.to_client(relay, conn, frame),
                Action::ToLink { conn, frame } => {
                    let Some(c) = self.conns.get(&conn) else { continue };
                    let toward = match c.kind {
                        ConnKind::Link { dialer, .. } if dialer == relay => 0,
                        _ => 1,
                    };
                    let what = federation_what(&frame);
                    self.send(conn, toward, frame.encode_to_vec(), what, 0);
                }
                Action::Close { conn } => self.conn_down(conn),
            }
        }
        self.maybe_commit(relay);
    }

    /// A frame from a relay to one of its devices, through the relay's adversary if it has one.
    fn to_client(&mut self, relay: usize, conn: u64, mut frame: ServerFrame) {
        let Some(ConnKind::Client { device, .. }) = self.conns.get(&conn).map(|c| c.kind) else { return };
        let mut extra_delay = 0;
        let mut replay_later = None;
        if let (Some(adversary), Some(server_frame::Body::Deliver(envelope))) = (self.relays[relay].adversary.as_mut(), frame.body.as_mut()) {
            let id = id16(&envelope.id);
            if adversary.decide(device, id, &mut self.rng) == Decision::Act {
                let action = match adversary.kind {
                    AdversaryKind::Tamper => {
                        if !envelope.content.is_empty() {
                            let at = self.rng.random_range(0..envelope.content.len());
                            envelope.content[at] ^= 0x01 << self.rng.random_range(0..8);
                        }
                        self.ledger.tampered.insert((device, id));
                        "tamper"
                    }
                    AdversaryKind::Withhold => {
                        self.ledger.withheld.insert((device, id));
                        self.trace.record(TraceEvent::Adversary { at_us: self.now, relay, device, action: "withhold" });
                        return;
                    }
                    AdversaryKind::Reorder => {
                        extra_delay = self.rng.random_range(0..ADVERSARY_HOLD_US);
                        "reorder"
                    }
                    AdversaryKind::Replay => {
                        replay_later = Some(self.rng.random_range(SECOND / 2..5 * SECOND));
                        self.ledger.replayed += 1;
                        "replay"
                    }
                };
                self.trace.record(TraceEvent::Adversary { at_us: self.now, relay, device, action });
            }
        }
        let what = server_what(&frame);
        let bytes = frame.encode_to_vec();
        if let Some(after) = replay_later {
            // Straight onto the connection, past the link's faults: the relay sends it again.
            self.schedule(self.now + after, Event::Frame { conn, toward: 1, bytes: bytes.clone(), replayed: true });
        }
        self.send(conn, 1, bytes, what, extra_delay);
    }

    fn maybe_commit(&mut self, relay: usize) {
        let node = &mut self.relays[relay];
        if node.committing.is_some() {
            return;
        }
        let Some(batch) = node.core.as_mut().and_then(|core| core.take_batch()) else { return };
        node.committing = Some(batch);
        let epoch = node.epoch;
        self.schedule(self.now + COMMIT_US, Event::Commit { relay, epoch });
    }

    fn commit(&mut self, relay: usize, epoch: u32) {
        let node = &mut self.relays[relay];
        if node.epoch != epoch {
            return; // the relay crashed meanwhile: that batch never reached the disk
        }
        let Some(batch) = node.committing.take() else { return };
        if node.keeps_disk {
            for mutation in &batch.mutations {
                node.disk.apply(mutation);
            }
        }
        let Some(core) = node.core.as_mut() else { return };
        let started = Instant::now();
        let actions = core.committed(batch.id);
        node.stats.busy += started.elapsed();
        self.relay_actions(relay, actions);
    }

    // ---- what devices do ---------------------------------------------------------------------------

    fn outcomes(&mut self, device: usize, outcomes: Vec<Outcome>) {
        for outcome in outcomes {
            match outcome {
                Outcome::Read { message, envelope } => {
                    self.ledger.read(message, device, envelope, self.now);
                    self.trace.record(TraceEvent::Read { at_us: self.now, message, device });
                    if let Some(&index) = self.victims.get(&device) {
                        self.thieves[index].victim_read(message, self.now);
                    }
                }
                Outcome::Duplicate { .. } => self.ledger.duplicates_dropped += 1,
                Outcome::Refused { envelope, reason } => {
                    self.ledger.refused(device, envelope);
                    self.trace.record(TraceEvent::Refused { at_us: self.now, device, reason });
                }
                Outcome::Pairwise { from, ratchet_key } => {
                    let me = &self.clients[device].address;
                    for thief in &mut self.thieves {
                        if self.clients[thief.victim].address == from {
                            thief.peer_processed(device, me, ratchet_key, self.now);
                        }
                    }
                }
                Outcome::Removed { group } => {
                    if let Some(index) = self.groups.iter().position(|g| g.id == group) {
                        self.trace.record(TraceEvent::Membership { at_us: self.now, group: index, device, change: "learnt removal" });
                    }
                }
            }
        }
    }

    fn traffic(&mut self) {
        self.traffic_left -= 1;
        if self.traffic_left > 0 {
            let gap = self.next_traffic_gap();
            if self.now + gap < self.traffic_end {
                self.schedule(self.now + gap, Event::Traffic);
            }
        }
        let traffic = &self.scenario.traffic;
        let size = self.rng.random_range(traffic.size.min..=traffic.size.max);
        let weights = [traffic.kinds.text, traffic.kinds.reply, traffic.kinds.reaction, traffic.kinds.receipt];
        let mut pick = self.rng.random::<f64>() * weights.iter().sum::<f64>();
        let kind = weights.iter().position(|w| {
            pick -= w;
            pick < 0.0
        });
        let kind = kind.unwrap_or(0);
        let to_group = !self.groups.is_empty() && self.rng.random::<f64>() < *traffic.group_share.get_ref();
        if to_group {
            self.send_group_message(size, kind);
        } else {
            self.send_direct_message(size, kind);
        }
    }

    fn send_direct_message(&mut self, size: usize, kind: usize) {
        let sender = self.rng.random_range(0..self.clients.len());
        let sender_user = self.user_of[sender];
        let mut recipient = self.rng.random_range(0..self.users.len() - 1);
        if recipient >= sender_user {
            recipient += 1;
        }
        let addressed = self.users[recipient].devices.clone();
        let number = self.ledger.messages.len() as u64;
        let content = client::content(number, None, size, kind, self.now);
        self.ledger.sent(MessageRecord { sent_at_us: self.now, sender, group: None, addressed: addressed.clone() });
        self.trace.record(TraceEvent::Message { at_us: self.now, message: number, from: sender, group: None, recipients: addressed.len(), bytes: content.len() });
        let to = self.users[recipient].name.clone();
        let mut out = Vec::new();
        let started = Instant::now();
        if self.scenario.inject.relay_keeps_plaintext {
            self.clients[sender].leak(&content, &mut out);
        }
        self.clients[sender].send_direct(&to, content, &mut self.rng, &mut out);
        self.client_busy[self.clients[sender].app] += started.elapsed();
        self.client_out(sender, out);
    }

    fn send_group_message(&mut self, size: usize, kind: usize) {
        let group = self.rng.random_range(0..self.groups.len());
        let id = self.groups[group].id.clone();
        // A member that knows of the group (the news may still be on its way to some).
        let senders = self.scenario.traffic.group_senders.unwrap_or(usize::MAX);
        let candidates: Vec<usize> = self.groups[group]
            .users
            .iter()
            .take(senders)
            .flat_map(|u| self.users[*u].devices.iter().copied())
            .filter(|d| self.clients[*d].device.group(&id).is_some())
            .collect();
        if candidates.is_empty() {
            self.skipped_group_sends += 1;
            return;
        }
        let sender = candidates[self.rng.random_range(0..candidates.len())];
        let number = self.ledger.messages.len() as u64;
        let content = client::content(number, Some(&id), size, kind, self.now);
        let epoch = self.clients[sender].device.group(&id).map_or(0, |g| g.epoch);
        let content_len = content.len();
        let mut out = Vec::new();
        let started = Instant::now();
        let recipients = self.clients[sender].send_group(&id, content, &mut self.rng, &mut out);
        self.client_busy[self.clients[sender].app] += started.elapsed();
        let Some(recipients) = recipients else {
            self.skipped_group_sends += 1;
            return;
        };
        let addressed: Vec<usize> = recipients.iter().filter_map(|a| self.device_index(a)).collect();
        self.ledger.sent(MessageRecord { sent_at_us: self.now, sender, group: Some(group), addressed: addressed.clone() });
        self.trace.record(TraceEvent::Message { at_us: self.now, message: number, from: sender, group: Some(group), recipients: addressed.len(), bytes: content_len });
        if self.scenario.group_strategy == GroupStrategy::SenderKeys {
            if let Some(bytes) = self.clients[sender].last_group_ciphertext() {
                self.ledger.group_ciphertexts.push(GroupCiphertext { message: number, group, sender, sender_epoch: epoch, bytes });
            }
        }
        self.client_out(sender, out);
    }

    pub(crate) fn device_index(&self, address: &ProtocolAddress) -> Option<usize> {
        let user = &self.users[*self.user_index.get(address.name())?];
        user.devices.iter().copied().find(|d| self.clients[*d].address.device_id() == address.device_id())
    }

    /// Every group of the scenario, created by its first member (its admin) when traffic starts.
    fn create_groups(&mut self) {
        let specs = self.scenario.groups.clone();
        for spec in specs {
            let apps: Vec<usize> = if spec.apps.is_empty() {
                (0..self.app_names.len()).collect()
            } else {
                spec.apps.iter().map(|a| self.app_index(a.get_ref())).collect()
            };
            for _ in 0..spec.count {
                let index = self.groups.len();
                let members = self.draw_users(&apps, *spec.size.get_ref(), &[]);
                let admin_user = members[0];
                let admin = self.users[admin_user].devices[0];
                let id = format!("g{index}@{}", self.app_names[self.users[admin_user].app]);
                let devices: Vec<usize> = members.iter().flat_map(|u| self.users[*u].devices.iter().copied()).collect();
                for &device in &devices {
                    self.ledger.joined(index, device, 0);
                }
                let addresses: Vec<ProtocolAddress> =
                    devices.iter().filter(|d| **d != admin).map(|d| self.clients[*d].address.clone()).collect();
                self.groups.push(SimGroup { id: id.clone(), apps: apps.clone(), admin, users: members });
                self.trace.record(TraceEvent::Membership { at_us: self.now, group: index, device: admin, change: "create" });
                let mut out = Vec::new();
                let suite = self.suite;
                self.clients[admin].create_group(&id, addresses, suite, &mut self.rng, &mut out);
                self.client_out(admin, out);
                let window = secs(self.scenario.duration_s).max(2);
                for join in std::iter::repeat_n(true, spec.joins as usize).chain(std::iter::repeat_n(false, spec.removals as usize)) {
                    let at = self.now + self.rng.random_range(1..window);
                    self.schedule(at, Event::Churn { group: index, join });
                }
            }
        }
    }

    /// `count` distinct users from `apps` in turn, none of `except`.
    fn draw_users(&mut self, apps: &[usize], count: usize, except: &[usize]) -> Vec<usize> {
        let mut pools: Vec<Vec<usize>> = apps
            .iter()
            .map(|app| (0..self.users.len()).filter(|u| self.users[*u].app == *app && !except.contains(u)).collect())
            .collect();
        let mut chosen = Vec::new();
        let mut turn = 0;
        while chosen.len() < count && pools.iter().any(|p| !p.is_empty()) {
            let pool = &mut pools[turn % apps.len()];
            turn += 1;
            if pool.is_empty() {
                continue;
            }
            let pick = self.rng.random_range(0..pool.len());
            chosen.push(pool.swap_remove(pick));
        }
        chosen
    }

    /// The admin adds a user from outside, or removes a member (never itself).
    fn churn(&mut self, group: usize, join: bool) {
        let admin = self.groups[group].admin;
        let admin_user = self.user_of[admin];
        let id = self.groups[group].id.clone();
        let user = if join {
            let apps = self.groups[group].apps.clone();
            let except = self.groups[group].users.clone();
            let Some(&user) = self.draw_users(&apps, 1, &except).first() else { return };
            self.groups[group].users.push(user);
            user
        } else {
            let candidates: Vec<usize> = self.groups[group].users.iter().copied().filter(|u| *u != admin_user).collect();
            if candidates.is_empty() {
                return;
            }
            let user = candidates[self.rng.random_range(0..candidates.len())];
            self.groups[group].users.retain(|u| *u != user);
            user
        };
        let mut out = Vec::new();
        for device in self.users[user].devices.clone() {
            let address = self.clients[device].address.clone();
            self.trace.record(TraceEvent::Membership { at_us: self.now, group, device, change: if join { "add" } else { "remove" } });
            if join {
                self.clients[admin].add_member(&id, address, &mut self.rng, &mut out);
            } else {
                self.clients[admin].remove_member(&id, address, &mut self.rng, &mut out);
            }
        }
        self.client_out(admin, out);
        self.record_changes(admin, group);
    }

    /// The membership changes the admin's device has made (they may wait for bundles).
    pub(crate) fn record_changes(&mut self, admin: usize, group: usize) {
        for change in self.clients[admin].take_changes() {
            let Some(device) = self.device_index(&change.member) else { continue };
            if change.added {
                self.ledger.joined(group, device, change.epoch);
            } else {
                self.ledger.left(group, device, change.epoch);
            }
        }
    }

    /// Pending membership changes of every admin (after the run, for those that waited).
    pub(crate) fn record_all_changes(&mut self) {
        for group in 0..self.groups.len() {
            let admin = self.groups[group].admin;
            self.record_changes(admin, group);
        }
    }

    fn capture_for_thief(&mut self, device: usize, bytes: &[u8]) {
        let Ok(frame) = switchboard_wire::decode::<ServerFrame>(bytes, switchboard_wire::frame::MAX_FRAME_LEN) else { return };
        if let (0, Some(server_frame::Body::Deliver(envelope))) = (frame.request_id, frame.body) {
            let index = self.victims[&device];
            self.thieves[index].capture(envelope, self.now);
        }
    }
}

pub(crate) fn secs(seconds: f64) -> u64 {
    (seconds * SECOND as f64) as u64
}

fn id16(bytes: &[u8]) -> [u8; 16] {
    let mut id = [0u8; 16];
    let n = bytes.len().min(16);
    id[..n].copy_from_slice(&bytes[..n]);
    id
}

fn server_what(frame: &ServerFrame) -> &'static str {
    match &frame.body {
        Some(server_frame::Body::Done(_)) => "done",
        Some(server_frame::Body::Failure(_)) => "failure",
        Some(server_frame::Body::Registered(_)) => "registered",
        Some(server_frame::Body::Bundles(_)) => "bundles",
        Some(server_frame::Body::Deliver(_)) => "deliver",
        Some(server_frame::Body::Blob(_)) => "blob",
        None => "?",
    }
}

fn federation_what(frame: &FederationFrame) -> &'static str {
    match &frame.body {
        Some(federation_frame::Body::Forward(_)) => "forward",
        Some(federation_frame::Body::ForwardGroup(_)) => "forward group",
        Some(federation_frame::Body::FetchBundles(_)) => "fetch bundles",
        Some(federation_frame::Body::Bundles(_)) => "bundles",
        Some(federation_frame::Body::Acknowledge(_)) => "ack",
        Some(federation_frame::Body::Failure(_)) => "failure",
        Some(federation_frame::Body::FetchBlob(_)) => "fetch blob",
        Some(federation_frame::Body::Blob(_)) => "blob",
        None => "?",
    }
}
