//! This device's group changes ordered by their hub, and joins checked with it. A change is
//! proposed (signed), its order goes out through the outbox once the proposal is durable, and the
//! hub's answer applies it (and sends its announcements) or drops it (another change came first).
//! An announcement that this device joined a group waits for the hub's head before it applies.

use rand::rngs::StdRng;
use switchboard_session::ProtocolAddress;
use switchboard_wire::switchboard::{ErrorCode, FetchHead, GroupHead, OrderChange, client_frame::Body};

use super::work::Work;
use super::{DropReason, Endpoint, Event, Request};
use crate::error::ClientError;

/// Changes of this device's kept while an earlier change of the same group waits for its hub.
pub const MAX_HELD_CHANGES: usize = 1_024;

impl Endpoint {
    /// Sends a proposed change's order (once the proposal is durable, through the outbox), or
    /// reports why it could not be proposed.
    pub(super) fn order(&mut self, proposed: Result<OrderChange, ClientError>) {
        match proposed {
            Ok(order) => {
                self.changed_device();
                self.queue(Body::OrderChange(order));
            }
            Err(error) => self.drop_send(DropReason::CouldNotSeal(error)),
        }
    }

    /// A change of group `group` comes while another of this device's waits for the hub: it is
    /// proposed once that one is settled (it builds on the state that one makes).
    pub(super) fn change_waits(&mut self, group: &str) -> bool {
        self.device.has_proposal(group)
    }

    pub(super) fn hold_change(&mut self, work: Work) {
        if self.held_changes.len() >= MAX_HELD_CHANGES {
            self.drop_send(DropReason::OutboxFull);
            return;
        }
        self.held_changes.push_back(work);
    }

    /// The hub answered this device's order for `head.group_id`.
    pub(super) fn ordered(&mut self, head: GroupHead, rng: &mut StdRng) {
        let group = head.group_id.clone();
        let before = self.device.group(&group).map(|g| g.members().clone()).unwrap_or_default();
        match self.device.ordered(&head, rng) {
            Ok(announcements) => {
                self.changed_device();
                self.submit(Work::Seal(announcements), rng);
                if let Some(now) = self.device.group(&group) {
                    let added = now.members().difference(&before).cloned().collect();
                    let removed = before.difference(now.members()).cloned().collect();
                    let (epoch, state, by) = (now.epoch(), *now.hash(), self.device.address().clone());
                    self.events.push_back(Event::GroupChanged { group: group.clone(), epoch, by, added, removed, state });
                }
                // A member added may have written before: what waited for it reads now.
                self.retry_stalled(&group, rng);
            }
            Err(error) => {
                self.changed_device();
                self.stats.changes_not_ordered += 1;
                self.drop_send(DropReason::CouldNotSeal(error));
            }
        }
        self.release_held_changes(&group, rng);
    }

    /// The hub refused this device's order for `group` for good: the proposal is dropped.
    pub(super) fn order_refused(&mut self, group: &str, code: ErrorCode, rng: &mut StdRng) {
        self.device.abandon_proposal(group);
        self.changed_device();
        self.drop_send(DropReason::Refused(code));
        self.release_held_changes(group, rng);
    }

    fn release_held_changes(&mut self, group: &str, rng: &mut StdRng) {
        let (mine, rest): (std::collections::VecDeque<Work>, std::collections::VecDeque<Work>) = std::mem::take(&mut self.held_changes).into_iter().partition(|work| work.changes(group));
        self.held_changes = rest;
        for work in mine {
            self.submit(work, rng);
        }
    }

    /// Asks the hub of `group` for its head (a join waits for it).
    pub(super) fn fetch_head(&mut self, group: &str) {
        if self.phase != super::Phase::Online || self.requests.values().any(|r| matches!(r, Request::Head(g) if g == group)) {
            return;
        }
        self.request(Request::Head(group.to_owned()), Body::FetchHead(FetchHead { group_id: group.to_owned() }));
    }

    /// Asks again for the heads of every group a join waits for (after a reconnection).
    pub(super) fn fetch_heads(&mut self) {
        let groups: Vec<String> = self.device.joins_awaiting_hub().map(str::to_owned).collect();
        for group in groups {
            self.fetch_head(&group);
        }
    }

    /// The hub's head of `group`, asked for a join.
    pub(super) fn head_arrived(&mut self, head: GroupHead, rng: &mut StdRng) {
        match self.device.hub_head(&head, rng) {
            Ok((crate::Received::Group { group, epoch, change: Some(change) }, by)) => {
                self.changed_device();
                let state = self.device.group(&group).map_or([0; 32], |g| *g.hash());
                self.events.push_back(Event::GroupChanged { group: group.clone(), epoch, by, added: change.added, removed: change.removed, state });
                self.retry_stalled(&group, rng);
            }
            Ok(_) => self.changed_device(),
            Err(ClientError::UnorderedChange { group, from }) => {
                self.changed_device();
                self.join_refused(group, from);
            }
            Err(_) => self.changed_device(),
        }
    }

    /// The hub of `group` knows no such group: every join waiting for it is refused.
    pub(super) fn head_refused(&mut self, group: &str) {
        for from in self.device.refuse_joins(group) {
            self.join_refused(group.to_owned(), from);
        }
        self.changed_device();
    }

    fn join_refused(&mut self, group: String, from: ProtocolAddress) {
        self.stats.joins_refused += 1;
        self.events.push_back(Event::JoinRefused { group, from });
    }
}
