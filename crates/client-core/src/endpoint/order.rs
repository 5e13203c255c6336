//! This device's group changes ordered by their hub, and joins checked with it. A change is
//! proposed (signed), its order goes out through the outbox once the proposal is durable, and the
//! hub's answer applies it (and sends its announcements) or drops it (another change came first).
//! An announcement that this device joined a group waits for the hub's head before it applies.

use rand_core::CryptoRng;
use switchboard_session::ProtocolAddress;
use switchboard_wire::switchboard::{ErrorCode, FetchHead, GroupHead, OrderChange, client_frame::Body};

use super::work::Work;
use super::{DropReason, Endpoint, Event, Request};
use crate::error::ClientError;

/// Changes of this device's kept while an earlier change of the same group waits for its hub.
pub const MAX_HELD_CHANGES: usize = 1_024;
/// How long this device waits for a change it missed (it holds a later one) before it asks the
/// group's hub whether the later one was ordered, and takes it whole if so.
pub const RESYNC_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

impl Endpoint {
    /// Sends a proposed change's order (once the proposal is durable, through the outbox), or
    /// reports why it could not be proposed.
    pub(super) fn order(&mut self, proposed: Result<OrderChange, ClientError>) {
        match proposed {
            Ok(order) => {
                let group = order.group_id.clone();
                let body = Body::OrderChange(order);
                if self.outbox.full(body.encoded_len()) {
                    // A proposal whose order cannot go out would hold every later change back.
                    self.device.abandon_proposal(&group);
                    self.drop_send(DropReason::OutboxFull);
                    return;
                }
                self.changed_device();
                self.queue(body);
            }
            Err(error) => self.drop_send(DropReason::CouldNotSeal(error)),
        }
    }

    /// After a restore: every proposal has its order in the outbox (a snapshot and an outbox
    /// written apart may disagree), and no order stays without its proposal.
    pub(super) fn reconcile_orders(&mut self) {
        let proposals: Vec<OrderChange> = self.device.proposals().collect();
        let queued: Vec<(u64, OrderChange)> = self
            .outbox
            .iter()
            .filter_map(|(seq, body)| match body {
                Body::OrderChange(order) => Some((seq, order.clone())),
                _ => None,
            })
            .collect();
        for (seq, order) in &queued {
            if !proposals.contains(order) {
                self.outbox_done(*seq);
            }
        }
        let missing: Vec<OrderChange> = proposals.into_iter().filter(|order| !queued.iter().any(|(_, queued)| queued == order)).collect();
        for order in missing {
            self.order(Ok(order));
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
    pub(super) fn ordered(&mut self, head: GroupHead, rng: &mut (impl CryptoRng + ?Sized)) {
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
    pub(super) fn order_refused(&mut self, group: &str, code: ErrorCode, rng: &mut (impl CryptoRng + ?Sized)) {
        self.device.abandon_proposal(group);
        self.changed_device();
        self.drop_send(DropReason::Refused(code));
        self.release_held_changes(group, rng);
    }

    fn release_held_changes(&mut self, group: &str, rng: &mut (impl CryptoRng + ?Sized)) {
        let (mine, rest): (std::collections::VecDeque<Work>, std::collections::VecDeque<Work>) = std::mem::take(&mut self.held_changes).into_iter().partition(|work| work.changes(group));
        self.held_changes = rest;
        for work in mine {
            self.submit(work, rng);
        }
    }

    /// Asks the hub of `group` which state it ordered at `epoch` (a change waits for it).
    pub(super) fn fetch_head(&mut self, group: &str, epoch: u64) {
        let asked = |r: &Request| matches!(r, Request::Head(g, e) if g == group && *e == epoch);
        if self.phase != super::Phase::Online || self.requests.values().any(asked) {
            return;
        }
        // A join must name the head itself: an older state the hub still keeps is no longer the
        // group's, and its members may have changed since.
        let joining = self.device.group(group).is_none();
        let fetch = FetchHead { group_id: group.to_owned(), epoch: (!joining).then_some(epoch) };
        self.request(Request::Head(group.to_owned(), epoch), Body::FetchHead(fetch));
    }

    /// Asks for every change waiting for its hub's word (after a reconnection, after changes
    /// settled and kept ones came up).
    pub(super) fn fetch_heads(&mut self) {
        for (group, epoch) in self.device.awaiting_hub() {
            self.fetch_head(&group, epoch);
        }
    }

    /// The hub's answer about `group` at `epoch`, which changes waited for.
    pub(super) fn head_arrived(&mut self, asked: u64, head: GroupHead, rng: &mut (impl CryptoRng + ?Sized)) {
        let group = head.group_id.clone();
        // An error: the change was ordered, but does not apply to this device's state as it now
        // is (a later one came first); nothing changed.
        if let Ok(verdict) = self.device.hub_head(asked, &head, rng) {
            self.changed_device();
            match verdict.applied {
                Some((crate::Received::Group { group, epoch, change: Some(change) }, by)) => {
                    let state = self.device.group(&group).map_or([0; 32], |g| *g.hash());
                    self.events.push_back(Event::GroupChanged { group: group.clone(), epoch, by, added: change.added, removed: change.removed, state });
                    self.retry_stalled(&group, rng);
                }
                Some((crate::Received::RemovedFromGroup { group }, _)) => self.events.push_back(Event::RemovedFromGroup { group }),
                _ => {}
            }
            for from in verdict.refused {
                self.unordered(group.clone(), from);
            }
        }
        self.fetch_heads();
    }

    /// Groups this device fell behind in (see `Device::behind`): once behind for
    /// [`RESYNC_AFTER`], it asks the hub about the latest change it keeps; meanwhile the retry
    /// timer brings it back here.
    pub(super) fn resync_behind(&mut self, rng: &mut (impl CryptoRng + ?Sized)) {
        let behind = self.device.behind();
        self.behind_since.retain(|group, _| behind.iter().any(|(b, _)| b == group));
        for (group, epoch) in behind {
            let since = *self.behind_since.entry(group.clone()).or_insert(self.now);
            let asked = |r: &Request| matches!(r, Request::Resync(g, e) if *g == group && *e == epoch);
            if self.now.saturating_sub(since) >= RESYNC_AFTER && self.phase == super::Phase::Online && !self.requests.values().any(asked) {
                // Asked at most once per RESYNC_AFTER.
                self.behind_since.insert(group.clone(), self.now);
                let fetch = FetchHead { group_id: group.clone(), epoch: Some(epoch) };
                self.request(Request::Resync(group, epoch), Body::FetchHead(fetch));
            }
        }
        if !self.behind_since.is_empty() {
            self.schedule_retry(rng);
        }
    }

    /// The hub's answer about a later change this device keeps, having missed those before it.
    pub(super) fn resynced(&mut self, asked: u64, head: GroupHead, rng: &mut (impl CryptoRng + ?Sized)) {
        let kept = self.device.kept_changes();
        match self.device.resync(asked, &head, rng) {
            Ok(Some((crate::Received::Group { group, epoch, change: Some(change) }, by))) => {
                self.stats.resyncs += 1;
                self.behind_since.remove(&group);
                let state = self.device.group(&group).map_or([0; 32], |g| *g.hash());
                self.events.push_back(Event::GroupChanged { group: group.clone(), epoch, by, added: change.added, removed: change.removed, state });
                self.retry_stalled(&group, rng);
            }
            Ok(Some((crate::Received::RemovedFromGroup { group }, _))) => {
                self.stats.resyncs += 1;
                self.behind_since.remove(&group);
                self.events.push_back(Event::RemovedFromGroup { group });
            }
            _ if self.device.kept_changes() == kept => return,
            _ => {}
        }
        self.changed_device();
        self.fetch_heads();
    }

    /// The hub of `group` knows no such group: every change waiting for it is refused.
    pub(super) fn head_refused(&mut self, group: &str) {
        for from in self.device.refuse_awaiting(group) {
            self.unordered(group.to_owned(), from);
        }
        self.changed_device();
    }

    fn unordered(&mut self, group: String, from: ProtocolAddress) {
        self.stats.unordered_changes += 1;
        self.events.push_back(Event::UnorderedChange { group, from });
    }
}
