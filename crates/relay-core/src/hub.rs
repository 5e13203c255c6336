//! A hub orders the changes of its groups (the groups whose id names its app). It keeps one head
//! per group — the epoch, the hash that names the state and the key that signs the next change —
//! and moves it only for a change that names the head as its previous state and is signed by the
//! head's order key. The members' own checks (see `switchboard-client-core`'s `membership`) stay
//! whole: the hub adds that two admins' changes for one epoch cannot both stand, and it answers a
//! device that is told it joined which state is the group's.

use ed25519_dalek::{Signature, VerifyingKey};
use switchboard_wire::group_order;
use switchboard_wire::switchboard::federation_frame::Body;
use switchboard_wire::switchboard::{ErrorCode, GroupHead, OrderChange};

use super::{MAX_GROUPS, RelayCore};
use crate::state::{Head, Mutation};

type Refusal = (ErrorCode, &'static str);

impl RelayCore {
    /// Puts `order` at the head of its group's chain if it follows the head and carries its order
    /// key's signature; answers with the head as it then is, which names `order`'s state exactly
    /// when it was ordered (now, or by an earlier copy of the same order).
    fn order_change(&mut self, order: OrderChange) -> Result<GroupHead, Refusal> {
        let state_hash: [u8; 32] = order.state_hash.as_slice().try_into().map_err(|_| (ErrorCode::Malformed, "a state hash is 32 bytes"))?;
        let prev_hash: [u8; 32] = order.prev_hash.as_slice().try_into().map_err(|_| (ErrorCode::Malformed, "a previous hash is 32 bytes"))?;
        let order_key: [u8; 32] = order.order_key.as_slice().try_into().map_err(|_| (ErrorCode::Malformed, "an order key is 32 bytes"))?;
        let signature = Signature::from_slice(&order.signature).map_err(|_| (ErrorCode::Malformed, "a signature is 64 bytes"))?;
        let signer = match self.state.group_heads.get(&order.group_id) {
            Some(head) if head.epoch.checked_add(1) != Some(order.epoch) || head.state_hash != prev_hash => {
                // Another change came first (or this one, if its hash is the head's): the head
                // tells the device which.
                return Ok(head_of(&order.group_id, head));
            }
            Some(head) => head.order_key,
            None if order.epoch == 0 && prev_hash == [0; 32] => {
                if self.state.group_heads.len() >= MAX_GROUPS {
                    return Err((ErrorCode::Unavailable, "this hub orders no more groups"));
                }
                order_key
            }
            None => return Err((ErrorCode::UnknownRecipient, "no such group at its hub")),
        };
        let signed = group_order::signed_bytes(&order.group_id, order.epoch, &prev_hash, &state_hash, &order_key);
        let valid = VerifyingKey::from_bytes(&signer).is_ok_and(|key| key.verify_strict(&signed, &signature).is_ok());
        if !valid {
            return Err((ErrorCode::Forbidden, "not signed by the group's order key"));
        }
        let head = Head { epoch: order.epoch, state_hash, order_key };
        let answer = head_of(&order.group_id, &head);
        self.mutate(Mutation::PutGroupHead { group: order.group_id, head });
        Ok(answer)
    }

    /// The head of group `id`, if this hub orders it.
    fn group_head(&self, id: &str) -> Result<GroupHead, Refusal> {
        self.state.group_heads.get(id).map(|head| head_of(id, head)).ok_or((ErrorCode::UnknownRecipient, "no such group at its hub"))
    }

    /// An order or a head fetch for one of this hub's groups (from a device or another app),
    /// answered with the group's head.
    pub(super) fn answer_as_hub(&mut self, request: Body) -> Result<GroupHead, Refusal> {
        match request {
            Body::OrderChange(order) => self.order_change(order),
            Body::FetchHead(fetch) => self.group_head(&fetch.group_id),
            _ => Err((ErrorCode::Malformed, "not a request for a hub")),
        }
    }
}

/// The group a request for a hub is about (`None`: not such a request).
pub(super) fn group_of(request: &Body) -> Option<&str> {
    match request {
        Body::OrderChange(order) => Some(&order.group_id),
        Body::FetchHead(fetch) => Some(&fetch.group_id),
        _ => None,
    }
}

fn head_of(id: &str, head: &Head) -> GroupHead {
    GroupHead { group_id: id.to_owned(), epoch: head.epoch, state_hash: head.state_hash.to_vec() }
}
