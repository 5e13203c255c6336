//! Business accounts from the endpoint (see [`crate::business`]): the owner's roster, assigning
//! and handing over conversations, removing an agent, and the analytics each device keeps.

use std::time::Duration;

use rand_core::CryptoRng;
use switchboard_session::ProtocolAddress;
use switchboard_wire::switchboard::{Agent, BusinessChange, RemoveDevice, Transcript};

use super::commands::Command;
use super::work::Work;
use super::{CommandError, Endpoint, Event, RequestFailed};
use crate::business::{Analytics, OWNER_DEVICE};
use crate::{ClientError, Device};

impl Endpoint {
    /// Makes this account a business served by `agents` (each device of it and the agent it
    /// serves), from its owner's device (device 1), and tells its other devices. Called again, it
    /// replaces the roster.
    pub fn set_agents(&mut self, now: Duration, agents: Vec<(u32, String)>, rng: &mut (impl CryptoRng + ?Sized)) -> Result<(), CommandError> {
        self.now = self.now.max(now);
        if self.address().device_id() != OWNER_DEVICE {
            return Err(ClientError::InvalidChange("only a business account's first device keeps its roster").into());
        }
        let mut business = self.device.business().cloned().unwrap_or_default();
        business.set_roster(&agents)?;
        *self.device.business_mut() = business;
        self.changed_device();
        self.tell_agents(BusinessChange { roster: true, agents: agents.into_iter().map(|(device_id, name)| Agent { device_id, name }).collect(), ..Default::default() }, rng);
        self.release();
        Ok(())
    }

    /// Assigns the conversation with `customer` to agent device `agent_device` (a hand-over if
    /// it was another's), on every device of the account; whether it was a hand-over.
    pub fn assign(&mut self, now: Duration, customer: &str, agent_device: u32, rng: &mut (impl CryptoRng + ?Sized)) -> Result<bool, CommandError> {
        self.now = self.now.max(now);
        let Some(business) = self.device.business() else {
            return Err(ClientError::InvalidChange("this device serves no business").into());
        };
        let mut business = business.clone();
        let handover = business.assign(customer, agent_device)?;
        *self.device.business_mut() = business;
        self.changed_device();
        self.tell_agents(BusinessChange { customer: customer.to_owned(), agent_device, ..Default::default() }, rng);
        self.release();
        Ok(handover)
    }

    /// Removes agent device `device_id` from this business account (from its owner's device):
    /// the relay deletes the device, so it reads nothing sent after; then the roster without it
    /// goes to the other devices. The answer comes as [`Event::DeviceRemoved`].
    pub fn remove_agent(&mut self, now: Duration, device_id: u32) -> Result<u64, CommandError> {
        self.now = self.now.max(now);
        if self.address().device_id() != OWNER_DEVICE || device_id == OWNER_DEVICE {
            return Err(ClientError::InvalidChange("the owner's device removes the other devices").into());
        }
        let handle = self.command(Command::Remove(RemoveDevice { device_id }))?;
        self.release();
        Ok(handle)
    }

    /// The business's analytics as this device counted them (none if it serves no business).
    pub fn analytics(&self) -> Option<Analytics> {
        self.device.business().map(crate::business::Business::analytics)
    }

    /// The relay removed (or refused to remove) device `device_id`.
    pub(super) fn device_removed(&mut self, request: u64, device_id: u32, result: Result<(), RequestFailed>, rng: &mut (impl CryptoRng + ?Sized)) {
        // "No such device": gone already (an earlier removal whose answer was lost on the way).
        let result = match result {
            Err(RequestFailed::Refused(switchboard_wire::switchboard::ErrorCode::UnknownRecipient)) => Ok(()),
            other => other,
        };
        if result.is_ok() {
            let me = self.address().name().to_owned();
            // Asked again at the next message: the relay lists the account's devices without it.
            self.devices_of.remove(&me);
            if let Some(business) = self.device.business() {
                let agents: Vec<(u32, String)> = business.agents().iter().filter(|(id, _)| **id != device_id).map(|(id, name)| (*id, name.clone())).collect();
                if !agents.is_empty() {
                    let _ = self.set_agents(self.now, agents, rng);
                }
            }
        }
        self.events.push_back(Event::DeviceRemoved { request, device_id, result });
    }

    /// `change` for every other device of this account.
    fn tell_agents(&mut self, change: BusinessChange, rng: &mut (impl CryptoRng + ?Sized)) {
        let me = self.address().name().to_owned();
        self.submit(Work::ToUsers { users: vec![me], payload: Device::business_payload(change) }, rng);
    }

    /// The agent this device serves, for the messages it sends.
    pub(super) fn agent(&self) -> Option<&str> {
        self.device.business().and_then(|business| business.agent_name(self.address().device_id()))
    }

    /// A business device wrote `content` to `customer`: counted, and shown on the account's other
    /// devices as a transcript.
    pub(super) fn business_sent(&mut self, customer: &str, content: &[u8], rng: &mut (impl CryptoRng + ?Sized)) {
        let me = self.address().clone();
        let now_ms = self.now.as_millis() as u64;
        let Some(business) = self.device.business.as_mut() else { return };
        if customer == me.name() {
            return;
        }
        business.agent_replied(customer, me.device_id(), now_ms);
        self.changed_device();
        let transcript = Transcript { from_user: me.name().to_owned(), from_device: me.device_id(), to: customer.to_owned(), group: String::new(), application: content.to_vec() };
        self.stats.transcripts_sent += 1;
        self.submit(Work::ToUsers { users: vec![me.name().to_owned()], payload: Device::transcript_payload(transcript) }, rng);
    }

    /// A message from `sender` reached this business device: a customer's, counted.
    pub(super) fn business_received(&mut self, sender: &ProtocolAddress) {
        let now_ms = self.now.as_millis() as u64;
        let me = self.address().name().to_owned();
        let Some(business) = self.device.business.as_mut() else { return };
        if sender.name() != me {
            business.customer_wrote(sender.name(), now_ms);
            self.changed_device();
        }
    }

    /// A transcript from another agent's device of this account: its reply, counted; the account
    /// wrote to the customer, so the customer's next messages are no requests here either.
    pub(super) fn business_transcript(&mut self, from: &ProtocolAddress, to: Option<&str>) {
        let now_ms = self.now.as_millis() as u64;
        let me = self.address().name().to_owned();
        let Some(business) = self.device.business.as_mut() else { return };
        if let Some(customer) = to.filter(|to| *to != me && switchboard_wire::address::UserAddress::split(to).is_ok())
            && from.name() == me
        {
            business.agent_replied(customer, from.device_id(), now_ms);
            self.changed_device();
            // The device that wrote told its relay (the account's, shared by all its devices).
            self.wrote_to(customer, true);
        }
    }
}
