//! Devices that misbehave toward relays (the relay's limits are what stops them):
//!
//! - `kind = "reuse-ids"`: a group member whose modified client, whenever a group message is
//!   handed to it, sends every other member a junk envelope under that message's id, hoping to
//!   reach them first and have the real one dropped as a duplicate. Relays and devices name an
//!   envelope by its sender and id, so both are kept: the junk is refused, the message read.
//! - `kind = "flood"`: another user of `target`'s app sends it a mailbox's worth of junk in one
//!   burst.
//!   The target's relay holds a stranger's allowance and refuses the rest for now; the target's
//!   contacts' mail keeps flowing.
//!
//! Their frames go straight onto the device's connection, past its endpoint, and the relay's
//! answers to them are counted here, not handed to the endpoint.

use rand::RngExt;
use switchboard_wire::Message;
use switchboard_wire::switchboard::{ClientFrame, DeviceAddress, Envelope, EnvelopeKind, ServerFrame, client_frame, server_frame};

use super::World;
use crate::trace::TraceEvent;

/// Request ids of frames a misbehaving device sends past its endpoint (the endpoint numbers its
/// own from 1).
const ROGUE_REQUEST: u64 = 1 << 62;

fn wire(device: &switchboard_session::ProtocolAddress) -> DeviceAddress {
    DeviceAddress { name: device.name().to_owned(), device_id: device.device_id() }
}

impl World {
    /// Sends `envelope` from `device` past its endpoint.
    fn send_rogue(&mut self, device: usize, envelope: Envelope, what: &'static str) {
        let Some(conn) = self.client_conn[device] else { return };
        self.rogue_requests += 1;
        let frame = ClientFrame { request_id: ROGUE_REQUEST | self.rogue_requests, body: Some(client_frame::Body::Send(envelope)) };
        self.send(conn, 0, frame.encode_to_vec(), what, 0);
    }

    /// Whether `frame`, on its way to `device`, answers a rogue frame (then it is counted and
    /// kept from the endpoint).
    pub(super) fn rogue_answer(&mut self, device: usize, frame: &ServerFrame) -> bool {
        if frame.request_id & ROGUE_REQUEST == 0 {
            return false;
        }
        if Some(device) == self.flood.map(|(flooder, _)| flooder)
            && let Some(server_frame::Body::Failure(_)) = frame.body
        {
            self.ledger.flood_refused += 1;
        }
        true
    }

    /// A group message from `sender` with `id` was handed to `device`: if it reuses ids, every
    /// other member of the group gets junk under that id.
    pub(super) fn reuse_id(&mut self, device: usize, envelope: &Envelope) {
        if !self.id_reusers.contains(&device) || envelope.kind != EnvelopeKind::SenderKeyMessage as i32 {
            return;
        }
        let Some(group) = self.groups.iter().position(|g| g.id == envelope.group_id) else { return };
        let me = self.clients[device].address.clone();
        let others: Vec<usize> =
            self.groups[group].users.iter().flat_map(|u| self.users[*u].devices.iter().copied()).filter(|d| *d != device).collect();
        for other in others {
            let junk = Envelope {
                id: envelope.id.clone(),
                sender: Some(wire(&me)),
                recipient: Some(wire(&self.clients[other].address)),
                kind: EnvelopeKind::SignalMessage as i32,
                content: vec![0x6a; 48].into(),
                group_id: String::new(),
                franking: None,
                channel: false,
            };
            self.ledger.ids_reused += 1;
            self.send_rogue(device, junk, "reused id");
        }
    }

    /// The flooder sends its target a mailbox's worth of junk at once.
    pub(super) fn flood_now(&mut self) {
        let Some((flooder, target)) = self.flood else { return };
        let me = wire(&self.clients[flooder].address);
        let victim = wire(&self.clients[self.users[target].devices[0]].address);
        let relay = self.clients[flooder].app;
        self.trace.record(TraceEvent::Adversary { at_us: self.now, relay, device: flooder, action: "flood" });
        for _ in 0..switchboard_relay_core::MAILBOX_QUOTA {
            let mut id = vec![0u8; 16];
            self.rng.fill(&mut id[..]);
            let junk = Envelope {
                id: id.into(),
                sender: Some(me.clone()),
                recipient: Some(victim.clone()),
                kind: EnvelopeKind::SignalMessage as i32,
                content: vec![0x66; 64].into(),
                group_id: String::new(),
                franking: None,
                channel: false,
            };
            self.ledger.flood_sent += 1;
            self.send_rogue(flooder, junk, "flood");
        }
    }
}

impl World {
    /// With the flood adversary's share: its target (a user), a flooder (the first device of
    /// another user of its app, drawn), and a time in the traffic window.
    pub(super) fn draw_flood(&mut self) {
        let Some(adversary) = self.scenario.adversaries.iter().find(|a| *a.kind.get_ref() == crate::scenario::AdversaryKind::Flood) else {
            return;
        };
        let share = adversary.share;
        let Some(target) = adversary.target.as_ref().and_then(|t| t.get_ref().parse::<switchboard_wire::address::Address>().ok()) else {
            return;
        };
        let Some(&target) = self.user_index.get(target.user().as_str()) else { return };
        // Of the target's app, so that the relay's refusals come back to it (from another app's
        // relay they are retried between relays, unseen).
        let app = self.users[target].app;
        let others: Vec<usize> = (0..self.users.len()).filter(|u| *u != target && self.users[*u].app == app).collect();
        if others.is_empty() || self.rng.random::<f64>() >= share {
            return;
        }
        let flooder = others[self.rng.random_range(0..others.len())];
        self.flood = Some((self.users[flooder].devices[0], target));
        let window = (self.traffic_end - self.traffic_start).max(2);
        let at = self.traffic_start + self.rng.random_range(1..window);
        self.schedule(at, super::Event::Flood);
    }
}
