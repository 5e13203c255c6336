//! The event loop: devices and relays over the virtual network and clock. Everything random
//! comes from one RNG seeded with the run's seed, and events at the same instant run in the order
//! they were scheduled, so a scenario and a seed give one run, bit for bit.

pub(crate) mod business;
pub(crate) mod channel;
pub(crate) mod consent;
mod forge;
mod links;
mod misbehave;
pub(crate) mod people;
mod traffic;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

// Keyed by the simulator's own indices and ids, never by hostile input: an unkeyed hash will do.
use rustc_hash::FxHashMap as HashMap;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use switchboard_session::{ProtocolAddress, Suite};

use crate::client::Client;
use crate::ledger::Ledger;
use crate::network::{History, Link};
use crate::relay::Relay;
use crate::scenario::{AdversaryKind, Scenario};
use crate::thief::Thief;
use crate::trace::{Trace, TraceEvent};

pub(crate) const SECOND: u64 = 1_000_000;
/// Time before traffic starts, for every device to register.
const SETUP_US: u64 = 2 * SECOND;
/// How long a device waits before connecting again.
const RECONNECT_US: u64 = 500_000;
/// How long a relay waits before dialing another again.
const REDIAL_US: u64 = SECOND;
/// How long business traffic pauses before an agent's removal, for what is on its way to land.
const BUSINESS_DRAIN_US: u64 = 5 * SECOND;
/// How long a reordering relay holds an envelope back, at most.
const ADVERSARY_HOLD_US: u64 = 2 * SECOND;

#[derive(Debug)]
enum Event {
    Frame { conn: u64, toward: usize, bytes: Vec<u8>, what: &'static str, again: bool },
    ConnDown { conn: u64 },
    Connect { device: usize },
    Dial { dialer: usize, acceptor: usize },
    Commit { relay: usize, epoch: u32 },
    Tick { relay: usize },
    /// A timer of a device's endpoint, due at `at_us`.
    ClientTimer { device: usize, at_us: u64 },
    Crash { relay: usize, down_us: u64 },
    Restart { relay: usize },
    Offline { device: usize, for_us: u64 },
    Online { device: usize },
    Traffic,
    CreateGroups,
    Churn { group: usize, join: bool },
    Forge { group: usize, forgery: forge::Forgery },
    /// The flooder (`kind = "flood"`) sends its burst.
    Flood,
    Theft { device: usize },
    /// The scenario's people link their accounts (`[[person]]`).
    LinkPeople,
    /// `[consent]`: a stranger's flood, a block, a report.
    StrangerFlood,
    Block,
    Report { forged: bool },
    /// A report whose check could not be made, made again.
    ReportAgain { slot: u64 },
    /// `[channel]`: its opening, a follow, a post, a vote, a leave.
    OpenChannel,
    Follow { device: usize },
    Post,
    Vote { device: usize },
    Leave { device: usize },
    /// `[business]`: the roster, a customer's message and its answer, a hand-over, a removal
    /// (business traffic pauses first, then the owner removes the agent).
    BusinessRoster,
    CustomerWrites,
    AgentAnswers { customer: usize, message: u64, tries: u32 },
    Handover,
    RemoveAgent,
    RemoveAgentNow,
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
    /// Whether members join or leave during the run, or one forges changes (only then are its
    /// ciphertexts kept for the membership checks).
    pub churn: bool,
    /// Users (by index) currently in it.
    pub users: Vec<usize>,
    /// Its forging member, if the scenario has one (`kind = "forge-membership"`).
    pub forger: Option<forge::Forger>,
}

pub(crate) struct User {
    pub name: String,
    pub app: usize,
    pub devices: Vec<usize>,
}

/// Counters of what the network did.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct FaultCounts {
    /// Frames lost on a link (their connection reset).
    pub dropped: u64,
    /// Frames damaged on a link, caught by its integrity check (their connection reset).
    pub corrupted: u64,
    /// Frames delivered twice.
    pub duplicated: u64,
    /// Frames held back and overtaken by later ones.
    pub reordered: u64,
    /// Older frames of a link sent again.
    pub replayed: u64,
    /// Connections reset (after a loss, a corruption, a crash or a partition).
    pub resets: u64,
    /// Frames lost to a partition.
    pub partitioned: u64,
    /// Relay crashes.
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
    /// Offline windows each device is in (online when 0).
    offline_windows: Vec<u32>,
    /// The endpoint timer scheduled per device.
    timer_at: Vec<Option<u64>>,
    /// Per (sender, group): the sender's epoch and the devices its view addresses.
    addressed_cache: HashMap<(usize, usize), (u64, std::rc::Rc<[usize]>)>,
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
    /// Members that reuse the ids of group messages (`kind = "reuse-ids"`).
    id_reusers: HashSet<usize>,
    /// The flooding device and the user it floods (`kind = "flood"`).
    flood: Option<(usize, usize)>,
    /// The recording of a `harvest-now` adversary.
    pub(crate) harvester: Option<crate::harvest::Harvester>,
    /// Frames misbehaving devices sent past their endpoints.
    rogue_requests: u64,
    /// Per person (`[[person]]`), her devices (every device of every account of hers), and per
    /// user, its person; the (device, user) pairs a lookup was made for.
    pub(crate) person_devices: Vec<Vec<usize>>,
    pub(crate) person_of_user: Vec<Option<usize>>,
    looked_up: HashSet<(usize, usize)>,
    pub(crate) consent: consent::ConsentWorld,
    pub(crate) channel: channel::ChannelWorld,
    pub(crate) business: business::BusinessWorld,
    /// The business account's user (`[business]`), if the scenario has one.
    pub(crate) business_user: Option<usize>,
    traffic_left: u64,
    pub(crate) traffic_start: u64,
    pub(crate) traffic_end: u64,
    pub(crate) end: u64,
    pub(crate) skipped_group_sends: u64,
    /// 1:1 sends skipped because the sender's person holds every user drawn.
    pub(crate) skipped_direct_sends: u64,
    pub(crate) suite: Suite,
    /// Devices whose relay may keep mail from them on purpose (a tampering or withholding
    /// adversary serving them): what they miss is reported, not a violation.
    pub(crate) attacked: Vec<bool>,
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
        let index_of = |name: &str| app_names.iter().position(|n| n == name).expect("checked by Scenario::validate in run");
        let mut federation = HashMap::default();
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
            // A share of devices goes offline at random times of the traffic (`from_s` unused).
            let from = if offline.device.is_some() { traffic_start + secs(offline.from_s) } else { traffic_end };
            last_fault = last_fault.max(from + secs(offline.for_s));
        }

        let mut relays: Vec<Relay> = app_names.iter().map(|app| Relay::new(app, app_names.clone())).collect();
        let mut harvester = scenario
            .adversaries
            .iter()
            .any(|adversary| *adversary.kind.get_ref() == AdversaryKind::HarvestNow)
            .then(crate::harvest::Harvester::default);
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
                    let watched = &mut crate::harvest::Watched::new(&mut rng, harvester.as_mut());
                    let mut client = Client::new(address, app_index, &scenario, watched);
                    client.inject(&scenario.inject);
                    if device_id == 1 {
                        client.link_siblings(2..=app.devices_per_user);
                    }
                    clients.push(client);
                    devices.push(index);
                }
                users.push(User { name: user, app: app_index, devices });
            }
        }
        // The business account: one device per agent, the first (its owner's) linking the rest.
        let business_user = (scenario.business.agents > 0).then(|| {
            let app_index = scenario.business.app.as_ref().map_or(0, |app| index_of(app.get_ref()));
            let user = format!("shop@{}", scenario.apps[app_index].name.get_ref());
            let mut devices = Vec::new();
            for device_id in 1..=scenario.business.agents {
                let watched = &mut crate::harvest::Watched::new(&mut rng, harvester.as_mut());
                let mut client = Client::new(ProtocolAddress::new(user.clone(), device_id), app_index, &scenario, watched);
                if device_id == 1 {
                    client.link_siblings(2..=scenario.business.agents);
                }
                devices.push(clients.len());
                clients.push(client);
            }
            users.push(User { name: user, app: app_index, devices });
            users.len() - 1
        });
        let device_of = |text: &str| -> Vec<usize> {
            // The scenario was checked with the same parser: a text that fails here names no one.
            let Ok(address) = text.parse::<switchboard_wire::address::Address>() else { return Vec::new() };
            let (user, device) = (address.user().as_str(), address.device_id());
            users
                .iter()
                .filter(|u| u.name == user)
                .flat_map(|u| u.devices.iter().copied())
                .filter(|d| device.is_none_or(|n| clients[*d].address.device_id() == n))
                .collect()
        };
        let mut attacked = vec![false; clients.len()];
        for adversary in &scenario.adversaries {
            // A forging member is chosen with its group (`create_groups`).
            let Some(relay) = &adversary.relay else { continue };
            let relay = index_of(relay.get_ref());
            let kind = *adversary.kind.get_ref();
            let targets = adversary.target.as_ref().map(|t| device_of(t.get_ref()));
            // (What a strip-suites relay costs is excused pair by pair, as refusals show it.)
            if matches!(kind, AdversaryKind::Tamper | AdversaryKind::Withhold) {
                for (device, client) in clients.iter().enumerate() {
                    let targeted = targets.as_ref().is_none_or(|targets| targets.contains(&device));
                    attacked[device] |= client.app == relay && targeted;
                }
            }
            relays[relay].adversary = Some(crate::relay::Adversary::new(kind, adversary.share, targets));
        }
        let thefts: Vec<(usize, u64)> =
            scenario.thefts.iter().map(|t| (device_of(t.device.get_ref())[0], traffic_start + secs(t.at_s))).collect();
        let victims = thefts.iter().enumerate().map(|(i, (device, _))| (*device, i)).collect();
        for (device, _) in &thefts {
            clients[*device].sending_keys = Some(Default::default());
        }
        if !thefts.is_empty() {
            for client in &mut clients {
                client.observe_pairwise = true;
            }
        }
        let thieves = thefts.iter().map(|(device, at)| Thief::new(*device, *at)).collect();

        let devices = clients.len();
        let suite = scenario.suite.get_ref().parse().unwrap_or(Suite::Aes256Gcm);
        let end = last_fault.max(traffic_end) + secs(scenario.settle_s);
        let user_index: HashMap<String, usize> = users.iter().enumerate().map(|(index, user)| (user.name.clone(), index)).collect();
        let mut person_of_user = vec![None; users.len()];
        let mut person_devices = Vec::new();
        for (person, spec) in scenario.people.iter().enumerate() {
            let mut devices = Vec::new();
            for account in spec.accounts.get_ref() {
                let user = user_index[account.as_str()];
                person_of_user[user] = Some(person);
                devices.extend(users[user].devices.iter().copied());
            }
            person_devices.push(devices);
        }
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
            conns: HashMap::default(),
            next_conn: 1,
            client_conn: vec![None; devices],
            offline_windows: vec![0; devices],
            timer_at: vec![None; devices],
            addressed_cache: HashMap::default(),
            ledger: Ledger::default(),
            trace,
            faults: FaultCounts::default(),
            federation_load: HashMap::default(),
            client_busy: Vec::new(),
            thieves,
            victims,
            id_reusers: HashSet::new(),
            flood: None,
            harvester,
            rogue_requests: 0,
            person_devices,
            person_of_user,
            looked_up: HashSet::new(),
            consent: Default::default(),
            channel: Default::default(),
            business: Default::default(),
            business_user,
            traffic_start,
            traffic_end,
            end,
            skipped_group_sends: 0,
            skipped_direct_sends: 0,
            suite,
            attacked,
            progress: None,
        };
        world.client_busy = vec![Default::default(); world.app_names.len()];
        world.trace.names.devices = world.clients.iter().map(|client| client.address.to_string()).collect();
        world.trace.names.relays = world.app_names.clone();
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
        if !self.person_devices.is_empty() {
            // Once every device had time to register, well before the traffic.
            self.schedule(SETUP_US / 2 + SETUP_US / 10, Event::LinkPeople);
        }
        self.draw_flood();
        self.schedule_consent();
        self.schedule_channel();
        self.schedule_business();
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
        let Ok(address) = text.parse::<switchboard_wire::address::Address>() else { return Vec::new() };
        let (user, device) = (address.user().as_str(), address.device_id());
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
            Event::Frame { conn, toward, bytes, what, again } => self.frame_arrived(conn, toward, bytes, what, again),
            Event::ConnDown { conn } => self.conn_down(conn),
            Event::Connect { device } => self.connect(device),
            Event::Dial { dialer, acceptor } => self.dial(dialer, acceptor),
            Event::Commit { relay, epoch } => self.commit(relay, epoch),
            Event::Tick { relay } => {
                self.schedule(self.now + SECOND, Event::Tick { relay });
                if let Some(core) = self.relays[relay].core.as_mut() {
                    let started = Instant::now();
                    let actions = core.tick(self.now / SECOND);
                    self.relays[relay].stats.busy += started.elapsed();
                    self.relay_actions(relay, actions);
                }
            }
            Event::ClientTimer { device, at_us } => {
                if self.timer_at[device] == Some(at_us) {
                    self.timer_at[device] = None;
                }
                let (mut out, mut outcomes) = (Vec::new(), Vec::new());
                self.clients[device].timeout(self.now, &mut crate::harvest::Watched::new(&mut self.rng, self.harvester.as_mut()), &mut out, &mut outcomes);
                self.client_out(device, out);
                self.outcomes(device, outcomes);
            }
            Event::Crash { relay, down_us } => self.crash(relay, down_us),
            Event::Restart { relay } => {
                self.relays[relay].start(&mut self.rng);
                self.trace.record(TraceEvent::Restarted { at_us: self.now, relay });
            }
            Event::Offline { device, for_us } => {
                // Offline windows may overlap: the device comes back when the last one ends.
                self.offline_windows[device] += 1;
                self.schedule(self.now + for_us, Event::Online { device });
                if self.offline_windows[device] == 1 {
                    self.trace.record(TraceEvent::Offline { at_us: self.now, device });
                    if let Some(conn) = self.client_conn[device] {
                        self.conn_down(conn);
                    }
                }
            }
            Event::Online { device } => {
                self.offline_windows[device] -= 1;
                if self.offline_windows[device] == 0 {
                    self.trace.record(TraceEvent::Online { at_us: self.now, device });
                    self.connect(device);
                }
            }
            Event::Traffic => self.traffic(),
            Event::CreateGroups => self.create_groups(),
            Event::LinkPeople => self.link_people(),
            Event::StrangerFlood => self.stranger_flood(),
            Event::Block => self.block_someone(),
            Event::Report { forged } => self.report_one(forged),
            Event::ReportAgain { slot } => self.report_again(slot),
            Event::OpenChannel => self.open_channel(),
            Event::Follow { device } => self.follow_channel(device),
            Event::Post => self.post_to_channel(),
            Event::Vote { device } => self.vote(device),
            Event::Leave { device } => self.leave_channel(device),
            Event::BusinessRoster => self.business_roster(),
            Event::CustomerWrites => self.customer_writes(),
            Event::AgentAnswers { customer, message, tries } => self.agent_answers(customer, message, tries),
            Event::Handover => self.handover(),
            Event::RemoveAgent => {
                if self.pause_business() {
                    self.schedule(self.now + BUSINESS_DRAIN_US, Event::RemoveAgentNow);
                }
            }
            Event::RemoveAgentNow => self.remove_agent(),
            Event::Churn { group, join } => self.churn(group, join),
            Event::Forge { group, forgery } => self.forge(group, forgery),
            Event::Flood => self.flood_now(),
            Event::Theft { device } => {
                self.trace.record(TraceEvent::Theft { at_us: self.now, device });
                if let Some(&index) = self.victims.get(&device) {
                    let client = &self.clients[device];
                    self.thieves[index].steal(client);
                }
            }
        }
    }
}

pub(crate) fn secs(seconds: f64) -> u64 {
    (seconds * SECOND as f64) as u64
}

