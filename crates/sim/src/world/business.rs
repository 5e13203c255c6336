//! A business account in a scenario (`[business]`): `shop@app`, one device per agent (the first
//! its owner's), customers on the other apps writing to it, the assigned agent answering, some
//! conversations handed over, and (with `remove_agent`) the last agent removed halfway. Its
//! messages go through the ledger like any other, so exactly-once delivery and transcripts to the
//! other agents' devices are checked as everywhere; beside those, the report checks:
//! - a removed agent reads nothing sent after its removal;
//! - every message from the business names the agent whose device wrote it;
//! - the owner's analytics count the conversations, messages and hand-overs that happened.

use rustc_hash::FxHashMap as HashMap;

use rand::RngExt;

use super::{Event, World, secs};
use crate::ledger::Violation;

pub const REMOVED_AGENT_READS_NOTHING: &str = "a removed agent reads nothing sent after";
pub const AGENT_NAMED: &str = "every business message names the agent who wrote it";
pub const ANALYTICS_MATCH: &str = "the business's analytics count what happened";

/// Times an agent looks for a customer's message before giving up answering it.
const MAX_ANSWER_TRIES: u32 = 20;
/// Size of a business message, in bytes.
const MESSAGE_BYTES: usize = 120;

/// What the report gives of the business account.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BusinessCounts {
    /// Agents (devices of the business account).
    pub agents: u64,
    /// Customers who wrote to it.
    pub customers: u64,
    /// Messages customers sent it.
    pub customer_messages: u64,
    /// Replies agents sent.
    pub replies: u64,
    /// Conversations handed to another agent.
    pub handovers: u64,
    /// Agents the owner removed.
    pub removed_agents: u64,
    /// Sends skipped while a removal waited for its answer.
    pub skipped: u64,
    /// Conversations, as the owner's device counted them (its analytics).
    pub analytics_conversations: u64,
    /// Messages in, as the owner counted them.
    pub analytics_messages_in: u64,
    /// Messages out, as the owner counted them.
    pub analytics_messages_out: u64,
    /// Hand-overs, as the owner counted them.
    pub analytics_handovers: u64,
    /// Mean time to a first response, as the owner measured it.
    pub analytics_mean_first_response_ms: u64,
}

#[derive(Default)]
pub(crate) struct BusinessWorld {
    /// The account's devices by agent: (device index, device id, agent name).
    agents: Vec<(usize, u32, String)>,
    customers: Vec<usize>,
    /// The agent device each customer's conversation is assigned to, by customer user.
    assigned: HashMap<usize, usize>,
    /// Customers who wrote (their conversations exist).
    wrote: Vec<usize>,
    removing: Option<usize>,
    removed: Vec<(usize, u64)>,
    handovers_done: u64,
    pub(super) counts: BusinessCounts,
    violations: Vec<Violation>,
}

impl World {
    /// Schedules the business's life: its roster, the customers' messages and the answers, the
    /// hand-overs, the removal.
    pub(super) fn schedule_business(&mut self) {
        let spec = self.scenario.business.clone();
        let Some(user) = self.business_user else { return };
        let devices = self.users[user].devices.clone();
        self.business.agents = devices.iter().map(|&d| (d, self.clients[d].address.device_id(), format!("agent-{}", self.clients[d].address.device_id()))).collect();
        let app = self.users[user].app;
        let customers: Vec<usize> = (0..self.users.len()).filter(|&u| self.users[u].app != app && Some(u) != self.business_user).take(spec.customers as usize).collect();
        self.business.customers = customers;
        self.business.counts.agents = devices.len() as u64;
        self.business.counts.customers = spec.customers as u64;
        let start = self.traffic_start;
        let length = secs(self.scenario.duration_s).max(1);
        self.schedule(start, Event::BusinessRoster);
        // A customer writes, then (a second later) the assigned agent answers.
        for _ in 0..spec.messages {
            let at = start + super::SECOND + self.rng.random_range(0..length);
            self.schedule(at, Event::CustomerWrites);
        }
        // Hand-overs in the first 45 % of the traffic, before the removal's pause.
        for handover in 0..spec.handovers {
            self.schedule(start + length * 9 * u64::from(handover + 1) / (20 * u64::from(spec.handovers + 1)), Event::Handover);
        }
        if spec.remove_agent {
            self.schedule(start + length / 2, Event::RemoveAgent);
        }
    }

    pub(super) fn business_roster(&mut self) {
        let Some(&(owner, ..)) = self.business.agents.first() else { return };
        let roster = self.business.agents.iter().map(|(_, id, name)| (*id, name.clone())).collect();
        let mut out = Vec::new();
        self.clients[owner].set_agents(self.now, roster, &mut self.rng, &mut out);
        self.client_out(owner, out);
    }

    fn business_paused(&mut self) -> bool {
        if self.business.removing.is_some() {
            self.business.counts.skipped += 1;
        }
        self.business.removing.is_some()
    }

    /// A customer writes to the business; the conversation, new, is assigned by the owner's
    /// device to an agent (in turn).
    pub(super) fn customer_writes(&mut self) {
        let Some(shop) = self.business_user else { return };
        if self.business_paused() || self.business.customers.is_empty() {
            return;
        }
        let customer = self.business.customers[self.rng.random_range(0..self.business.customers.len())];
        let sender = self.users[customer].devices[0];
        let message = self.ledger.messages.len() as u64;
        self.send_direct_between(sender, shop, MESSAGE_BYTES, 0);
        self.business.counts.customer_messages += 1;
        if !self.business.assigned.contains_key(&customer) {
            self.business.wrote.push(customer);
            let live: Vec<usize> = self.live_agents();
            let agent = live[self.business.wrote.len() % live.len()];
            self.assign(customer, agent);
        }
        self.schedule(self.now + super::SECOND, Event::AgentAnswers { customer, message, tries: 0 });
    }

    fn live_agents(&self) -> Vec<usize> {
        self.business.agents.iter().map(|(d, ..)| *d).filter(|d| !self.business.removed.iter().any(|(r, _)| r == d)).collect()
    }

    /// `assigner` (the owner's device, or the agent handing over) records the assignment.
    fn assign(&mut self, customer: usize, agent: usize) {
        let assigner = self.business.assigned.get(&customer).copied().unwrap_or(self.business.agents[0].0);
        let name = self.users[customer].name.clone();
        let agent_id = self.clients[agent].address.device_id();
        let mut out = Vec::new();
        if let Some(handover) = self.clients[assigner].assign(self.now, &name, agent_id, &mut self.rng, &mut out) {
            self.business.handovers_done += u64::from(handover);
            self.business.assigned.insert(customer, agent);
        }
        self.client_out(assigner, out);
    }

    /// The agent of `customer`'s conversation answers `message`, once it has read it (it looks
    /// again every second, [`MAX_ANSWER_TRIES`] times).
    pub(super) fn agent_answers(&mut self, customer: usize, message: u64, tries: u32) {
        if self.business_paused() {
            return;
        }
        let Some(&agent) = self.business.assigned.get(&customer) else { return };
        if !self.ledger.reads.contains_key(&(message, agent)) {
            if tries < MAX_ANSWER_TRIES {
                self.schedule(self.now + super::SECOND, Event::AgentAnswers { customer, message, tries: tries + 1 });
            }
            return;
        }
        self.send_direct_between(agent, customer, MESSAGE_BYTES, 1);
        self.business.counts.replies += 1;
    }

    /// The agent of an assigned conversation hands it to another live agent.
    pub(super) fn handover(&mut self) {
        if self.business_paused() {
            return;
        }
        let live = self.live_agents();
        let candidates: Vec<usize> = self.business.wrote.iter().copied().filter(|c| self.business.assigned.get(c).is_some_and(|a| live.contains(a))).collect();
        if candidates.is_empty() || live.len() < 2 {
            return;
        }
        let customer = candidates[self.rng.random_range(0..candidates.len())];
        let current = self.business.assigned[&customer];
        let others: Vec<usize> = live.into_iter().filter(|a| *a != current).collect();
        let next = others[self.rng.random_range(0..others.len())];
        self.assign(customer, next);
        self.business.counts.handovers += 1;
    }

    /// Pauses business traffic before the last agent's removal; whether there is one to remove.
    pub(super) fn pause_business(&mut self) -> bool {
        let owner = self.business.agents.first().map(|(d, ..)| *d);
        let Some(&(removed, ..)) = self.business.agents.last().filter(|(d, ..)| Some(*d) != owner) else { return false };
        self.business.removing = Some(removed);
        true
    }

    /// The owner removes the last agent; business traffic waits for the relay's answer.
    pub(super) fn remove_agent(&mut self) {
        let Some(&(owner, ..)) = self.business.agents.first() else { return };
        let Some(removed) = self.business.removing else { return };
        let removed_id = self.clients[removed].address.device_id();
        let mut out = Vec::new();
        if !self.clients[owner].remove_agent(self.now, removed_id, &mut out) {
            self.business.removing = None;
        }
        self.client_out(owner, out);
    }

    /// The relay answered the removal: the device is gone from the account (it goes on
    /// connecting, and its relay refuses it), and its conversations go back to the owner.
    pub(super) fn agent_removed(&mut self, ok: bool) {
        let Some(removed) = self.business.removing.take() else { return };
        if !ok {
            return;
        }
        self.business.removed.push((removed, self.now));
        // What was on its way to the removed device when the relay deleted it is not missed.
        let senders: Vec<usize> = self.business.customers.iter().map(|c| self.users[*c].devices[0]).chain(self.business.agents.iter().map(|(d, ..)| *d)).collect();
        for sender in senders {
            self.ledger.unwanted.insert((sender, removed));
        }
        self.business.counts.removed_agents += 1;
        if let Some(user) = self.business_user {
            self.users[user].devices.retain(|d| *d != removed);
        }
        if let Some(conn) = self.client_conn[removed] {
            self.conn_down(conn);
        }
        let orphaned: Vec<usize> = self.business.assigned.iter().filter(|(_, a)| **a == removed).map(|(c, _)| *c).collect();
        let owner = self.business.agents[0].0;
        for customer in orphaned {
            // Assigned by the owner (the removed device can no longer hand anything over).
            self.business.assigned.insert(customer, owner);
            let name = self.users[customer].name.clone();
            let mut out = Vec::new();
            let owner_id = self.clients[owner].address.device_id();
            if let Some(handover) = self.clients[owner].assign(self.now, &name, owner_id, &mut self.rng, &mut out) {
                self.business.handovers_done += u64::from(handover);
            }
            self.client_out(owner, out);
        }
    }

    /// A business device's message `message` named `agent`.
    pub(super) fn agent_named(&mut self, device: usize, message: u64, agent: &str) {
        let Some(record) = self.ledger.messages.get(message as usize) else { return };
        let expected = self.business.agents.iter().find(|(d, ..)| *d == record.sender).map(|(_, _, name)| name.as_str());
        if expected != Some(agent) {
            self.business.violations.push(Violation {
                invariant: AGENT_NAMED,
                detail: format!("{} read message {message} named as {agent:?}, written by {}", self.clients[device].address, self.clients[record.sender].address),
            });
        }
    }

    /// The business's counts and what broke its invariants.
    pub(crate) fn check_business(&self) -> (BusinessCounts, Vec<Violation>) {
        let mut counts = self.business.counts.clone();
        let mut violations = self.business.violations.clone();
        for &(removed, at) in &self.business.removed {
            for (&(message, device), _) in &self.ledger.reads {
                if device == removed && self.ledger.messages.get(message as usize).is_some_and(|m| m.sent_at_us > at) {
                    violations.push(Violation { invariant: REMOVED_AGENT_READS_NOTHING, detail: format!("{} read message {message}, sent after its removal", self.clients[removed].address) });
                }
            }
        }
        if let Some(analytics) = self.business.agents.first().and_then(|(owner, ..)| self.clients[*owner].analytics()) {
            counts.analytics_conversations = analytics.conversations;
            counts.analytics_messages_in = analytics.messages_in;
            counts.analytics_messages_out = analytics.messages_out;
            counts.analytics_handovers = analytics.handovers;
            counts.analytics_mean_first_response_ms = analytics.mean_first_response_ms;
            let expected = (self.business.wrote.len() as u64, counts.customer_messages, counts.replies, self.business.handovers_done);
            let counted = (analytics.conversations, analytics.messages_in, analytics.messages_out, analytics.handovers);
            if expected != counted {
                violations.push(Violation {
                    invariant: ANALYTICS_MATCH,
                    detail: format!("(conversations, messages in, replies, hand-overs): {counted:?} counted by the owner's device, {expected:?} happened"),
                });
            }
        }
        (counts, violations)
    }
}
