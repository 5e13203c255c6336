//! A group as one device sees it, and the control message that carries it between members.

use indexmap::IndexSet;

use switchboard_session::{ProtocolAddress, Suite};
use switchboard_wire::switchboard::GroupControl;

use crate::error::ClientError;

/// Largest group a control message may describe.
pub const MAX_GROUP_MEMBERS: usize = 10_000;

/// A group: its id, the member devices, the epoch (one more at each membership change) and the
/// suite its sender keys use.
///
/// Members keep the order the group's announcements list them in (new members last), so every
/// device that applied the same announcement iterates them alike; equality ignores the order. A
/// hashed set, because every group message received is checked against it: in a group of a
/// thousand an ordered set costs a dozen cache misses per check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub epoch: u64,
    pub members: IndexSet<ProtocolAddress>,
    pub suite: Suite,
}

impl Group {
    /// The control message describing this group, with an optional sender key distribution.
    pub(crate) fn control(&self, distribution: Option<&[u8]>, request_sender_key: bool) -> GroupControl {
        GroupControl {
            group_id: self.id.clone(),
            epoch: self.epoch,
            members: self
                .members
                .iter()
                .map(crate::wire_address)
                .collect(),
            suite: self.suite.name().to_owned(),
            sender_key_distribution: distribution.map(<[u8]>::to_vec).unwrap_or_default(),
            request_sender_key,
        }
    }

    /// The group a control message describes.
    pub(crate) fn from_control(control: &GroupControl) -> Result<Group, ClientError> {
        if control.group_id.is_empty() {
            return Err(ClientError::InvalidPayload("empty group id"));
        }
        if control.members.len() > MAX_GROUP_MEMBERS {
            return Err(ClientError::InvalidPayload("too many members"));
        }
        let suite = control.suite.parse().map_err(|_| ClientError::InvalidPayload("unknown suite"))?;
        let members: IndexSet<_> =
            control.members.iter().map(|member| ProtocolAddress::new(member.name.clone(), member.device_id)).collect();
        if members.len() != control.members.len() {
            return Err(ClientError::InvalidPayload("a member is listed twice"));
        }
        Ok(Group { id: control.group_id.clone(), epoch: control.epoch, members, suite })
    }
}
