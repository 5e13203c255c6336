//! Business accounts: one account (`hotel@green`) served by several agents, each on devices of
//! that account. Customers on any app write to the account as to anyone; every device of it
//! receives, so customers see one business. Each message an agent sends names the agent.
//!
//! The account's first device (its owner) keeps the roster: which device serves which agent.
//! Conversations are assigned to an agent and handed over by any device of the account; the
//! devices tell each other of every change (`BusinessChange`, pairwise, from devices of the same
//! account only) and of every reply (a transcript), so that each holds the whole picture.
//!
//! The analytics (conversations, messages, first-response time, per agent) are counted by each
//! device from what it decrypts and sends, and kept on it: they never cross the end-to-end
//! boundary. Two devices may differ by when a transcript reached them.

use std::collections::BTreeMap;

use switchboard_wire::switchboard::{AgentCount, Assignment, ConversationStats, StoredBusiness};

use crate::error::ClientError;

/// The device of a business account that keeps its roster: its first, the owner's.
pub const OWNER_DEVICE: u32 = 1;
/// Agents (devices) one business account lists.
pub const MAX_AGENTS: usize = switchboard_wire::limits::MAX_DEVICES_PER_USER;
/// Longest agent name, in bytes.
pub const MAX_AGENT_NAME: usize = 64;
/// Agent devices counted per conversation (devices come and go: more than a roster lists at
/// once); past it, further ones' replies are not counted.
pub const MAX_REPLYING_AGENTS: usize = 4 * MAX_AGENTS;
/// Conversations a business device counts and assigns; past it, new customers' messages still
/// arrive, but are neither counted nor assigned.
pub const MAX_CONVERSATIONS: usize = 100_000;

/// One conversation, as this device saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Conversation {
    messages_in: u64,
    first_message_ms: u64,
    /// When the first reply went out (or its transcript arrived), and from which device.
    first_response: Option<(u64, u32)>,
    replies: BTreeMap<u32, u64>,
}

/// A business account's shared state and this device's analytics of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Business {
    agents: BTreeMap<u32, String>,
    assignments: BTreeMap<String, u32>,
    conversations: BTreeMap<String, Conversation>,
    handovers: u64,
}

/// What one agent did, as this device counted it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentAnalytics {
    /// The agent's name as the roster lists it; empty for a device no longer in the roster (its
    /// past replies are still counted).
    pub name: String,
    /// Messages its device sent to customers (from this device, or seen in transcripts).
    pub replies: u64,
    /// Conversations it answered first.
    pub first_responses: u64,
    /// Conversations assigned to it now.
    pub assigned: u64,
}

/// A business's analytics, computed on one of its devices from what it decrypted and sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Analytics {
    /// Customers with a conversation counted (at most [`MAX_CONVERSATIONS`]).
    pub conversations: u64,
    /// One-to-one messages from customers (users other than this account) this device received.
    pub messages_in: u64,
    /// Messages the account's agent devices sent to customers, as this device counted them (its
    /// own, and others' from their transcripts).
    pub messages_out: u64,
    /// Conversations with at least one reply.
    pub answered: u64,
    /// Mean time from a conversation's opening (its first message here, or a reply seen before
    /// it) to its first reply, in milliseconds of the endpoint's clock, over the `answered`
    /// conversations (0 if none).
    pub mean_first_response_ms: u64,
    /// Longest such time, in milliseconds (0 if none).
    pub max_first_response_ms: u64,
    /// Assignments that moved a conversation from one agent device to another.
    pub handovers: u64,
    /// By agent device.
    pub agents: BTreeMap<u32, AgentAnalytics>,
}

impl Business {
    /// The agent device `device` serves, if the roster lists it.
    pub fn agent_name(&self, device: u32) -> Option<&str> {
        self.agents.get(&device).map(String::as_str)
    }

    /// The roster: each device of the account and the agent it serves.
    pub fn agents(&self) -> &BTreeMap<u32, String> {
        &self.agents
    }

    /// The device the conversation with `customer` is assigned to.
    pub fn assignee(&self, customer: &str) -> Option<u32> {
        self.assignments.get(customer).copied()
    }

    /// Replaces the roster; assignments to devices it no longer lists are dropped.
    pub(crate) fn set_roster(&mut self, agents: &[(u32, String)]) -> Result<(), ClientError> {
        if agents.is_empty() || agents.len() > MAX_AGENTS {
            return Err(ClientError::InvalidPayload("a business roster lists 1 to MAX_AGENTS devices"));
        }
        let mut roster = BTreeMap::new();
        for (device, name) in agents {
            if name.is_empty() || name.len() > MAX_AGENT_NAME || name.chars().any(char::is_control) {
                return Err(ClientError::InvalidPayload("an agent's name is 1 to 64 bytes of printable text"));
            }
            if roster.insert(*device, name.clone()).is_some() {
                return Err(ClientError::InvalidPayload("a device listed twice in a business roster"));
            }
        }
        self.agents = roster;
        let agents = &self.agents;
        self.assignments.retain(|_, device| agents.contains_key(device));
        Ok(())
    }

    /// Assigns the conversation with `customer` to `device`; whether that was a hand-over (it was
    /// another agent's).
    pub(crate) fn assign(&mut self, customer: &str, device: u32) -> Result<bool, ClientError> {
        switchboard_wire::address::UserAddress::split(customer).map_err(|_| ClientError::InvalidPayload("a customer is name@app"))?;
        if !self.agents.contains_key(&device) {
            return Err(ClientError::InvalidChange("an assignment to a device that serves no agent"));
        }
        if !self.assignments.contains_key(customer) && self.assignments.len() >= MAX_CONVERSATIONS {
            return Err(ClientError::LimitExceeded { what: "conversations assigned on one business device", limit: MAX_CONVERSATIONS });
        }
        let before = self.assignments.insert(customer.to_owned(), device);
        let handover = before.is_some_and(|before| before != device);
        self.handovers += u64::from(handover);
        Ok(handover)
    }

    /// A message from `customer` arrived at `now_ms`.
    pub(crate) fn customer_wrote(&mut self, customer: &str, now_ms: u64) {
        if let Some(conversation) = self.conversation(customer, now_ms) {
            conversation.messages_in = conversation.messages_in.saturating_add(1);
        }
    }

    /// Agent device `device` replied to `customer` at `now_ms` (sent from this device, or seen in
    /// a transcript from another).
    /// (A reply that reaches this device before the customer's message did opens the
    /// conversation: the first response then counts as immediate.)
    pub(crate) fn agent_replied(&mut self, customer: &str, device: u32, now_ms: u64) {
        let Some(conversation) = self.conversation(customer, now_ms) else { return };
        if conversation.replies.len() >= MAX_REPLYING_AGENTS && !conversation.replies.contains_key(&device) {
            return;
        }
        let count = conversation.replies.entry(device).or_default();
        *count = count.saturating_add(1);
        conversation.first_response.get_or_insert((now_ms, device));
    }

    fn conversation(&mut self, customer: &str, now_ms: u64) -> Option<&mut Conversation> {
        if !self.conversations.contains_key(customer) && self.conversations.len() >= MAX_CONVERSATIONS {
            return None;
        }
        Some(self.conversations.entry(customer.to_owned()).or_insert_with(|| Conversation { first_message_ms: now_ms, ..Default::default() }))
    }

    /// The analytics as this device counted them.
    pub fn analytics(&self) -> Analytics {
        let mut analytics = Analytics { conversations: self.conversations.len() as u64, handovers: self.handovers, ..Default::default() };
        for (device, name) in &self.agents {
            analytics.agents.insert(*device, AgentAnalytics { name: name.clone(), ..Default::default() });
        }
        let mut total_response_ms = 0u64;
        for conversation in self.conversations.values() {
            analytics.messages_in = analytics.messages_in.saturating_add(conversation.messages_in);
            for (device, count) in &conversation.replies {
                analytics.messages_out = analytics.messages_out.saturating_add(*count);
                let agent = analytics.agents.entry(*device).or_default();
                agent.replies = agent.replies.saturating_add(*count);
            }
            if let Some((at, device)) = conversation.first_response {
                let waited = at.saturating_sub(conversation.first_message_ms);
                analytics.answered += 1;
                total_response_ms = total_response_ms.saturating_add(waited);
                analytics.max_first_response_ms = analytics.max_first_response_ms.max(waited);
                analytics.agents.entry(device).or_default().first_responses += 1;
            }
        }
        for device in self.assignments.values() {
            analytics.agents.entry(*device).or_default().assigned += 1;
        }
        analytics.mean_first_response_ms = total_response_ms.checked_div(analytics.answered).unwrap_or(0);
        analytics
    }

    pub(crate) fn stored(&self) -> StoredBusiness {
        StoredBusiness {
            agents: self.agents.iter().map(|(device, name)| switchboard_wire::switchboard::Agent { device_id: *device, name: name.clone() }).collect(),
            assignments: self.assignments.iter().map(|(customer, device)| Assignment { customer: customer.clone(), agent_device: *device }).collect(),
            conversations: self
                .conversations
                .iter()
                .map(|(customer, c)| ConversationStats {
                    customer: customer.clone(),
                    messages_in: c.messages_in,
                    first_message_ms: c.first_message_ms,
                    first_response_ms: c.first_response.map_or(0, |(at, _)| at),
                    first_responder: c.first_response.map_or(0, |(_, device)| device),
                    replies: c.replies.iter().map(|(device, count)| AgentCount { agent_device: *device, count: *count }).collect(),
                })
                .collect(),
            handovers: self.handovers,
        }
    }

    /// The stored form, checked as any other input.
    pub(crate) fn restore(stored: &StoredBusiness) -> Result<Business, ClientError> {
        let mut business = Business::default();
        let agents: Vec<(u32, String)> = stored.agents.iter().map(|agent| (agent.device_id, agent.name.clone())).collect();
        business.set_roster(&agents)?;
        for assignment in &stored.assignments {
            business.assign(&assignment.customer, assignment.agent_device)?;
        }
        if stored.conversations.len() > MAX_CONVERSATIONS {
            return Err(ClientError::InvalidPayload("more stored conversations than a business device keeps"));
        }
        for c in &stored.conversations {
            if c.replies.len() > MAX_REPLYING_AGENTS {
                return Err(ClientError::InvalidPayload("a stored conversation with more agents than a roster lists"));
            }
            let conversation = Conversation {
                messages_in: c.messages_in,
                first_message_ms: c.first_message_ms,
                first_response: (c.first_response_ms != 0).then_some((c.first_response_ms, c.first_responder)),
                replies: c.replies.iter().map(|count| (count.agent_device, count.count)).collect(),
            };
            business.conversations.insert(c.customer.clone(), conversation);
        }
        business.handovers = stored.handovers;
        Ok(business)
    }
}
