//! A device's part in a business account (see [`crate::business`]): the shared roster and
//! assignments, changed only by devices of the same account.

use std::sync::Arc;

use switchboard_session::ProtocolAddress;
use switchboard_wire::Message;
use switchboard_wire::switchboard::{BusinessChange, PairwisePayload, pairwise_payload::Body};

use super::{Device, Received, Result};
use crate::business::Business;
use crate::error::ClientError;

impl Device {
    /// The business account this device serves, if any.
    pub fn business(&self) -> Option<&Business> {
        self.business.as_ref()
    }

    /// The business this device serves, made a business device if it was none.
    pub(crate) fn business_mut(&mut self) -> &mut Business {
        self.business.get_or_insert_with(Business::default)
    }

    /// A payload telling the account's other devices of `change`.
    pub(crate) fn business_payload(change: BusinessChange) -> Arc<[u8]> {
        PairwisePayload { body: Some(Body::Business(change)), ..Default::default() }.encode_to_vec().into()
    }

    /// A change from `from`, taken only from another device of this account: a roster only from
    /// its first device (the owner), an assignment from any device the roster lists.
    pub(super) fn on_business(&mut self, from: &ProtocolAddress, change: BusinessChange) -> Result<Received> {
        if from.name() != self.address.name() {
            return Err(ClientError::InvalidPayload("a business change from another account"));
        }
        if change.roster {
            if from.device_id() != crate::business::OWNER_DEVICE {
                return Err(ClientError::InvalidPayload("a business roster from a device that is not the owner's"));
            }
            if !change.customer.is_empty() {
                return Err(ClientError::InvalidPayload("a business change carries a roster or an assignment, not both"));
            }
            let agents: Vec<(u32, String)> = change.agents.into_iter().map(|agent| (agent.device_id, agent.name)).collect();
            // Checked on a copy: a refused roster changes nothing.
            let mut business = self.business.clone().unwrap_or_default();
            business.set_roster(&agents)?;
            let listed = business.agents().contains_key(&self.address.device_id());
            self.business = Some(business);
            return Ok(Received::BusinessRoster { listed });
        }
        let Some(business) = self.business.as_mut() else {
            return Err(ClientError::InvalidPayload("an assignment to a device that serves no business"));
        };
        if !change.agents.is_empty() || business.agent_name(from.device_id()).is_none() {
            return Err(ClientError::InvalidPayload("an assignment from a device that serves no agent"));
        }
        let handover = business.assign(&change.customer, change.agent_device)?;
        Ok(Received::Assigned { customer: change.customer, agent_device: change.agent_device, handover })
    }
}
