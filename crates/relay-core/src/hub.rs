//! A hub orders the changes of its groups (the groups whose id names its app). It keeps one head
//! per group — the epoch, the hash that names the state and the key that signs the next change —
//! and moves it only for a change that names the head as its previous state and is signed by the
//! head's order key. The members' own checks (see `switchboard-client-core`'s `membership`) stay
//! whole: the hub adds that two admins' changes for one epoch cannot both stand, and it tells a
//! member which state it ordered at an epoch, so that no change it did not order is applied.

use ed25519_dalek::{Signature, VerifyingKey};
use switchboard_wire::group_order;
use switchboard_wire::switchboard::federation_frame::Body;
use switchboard_wire::switchboard::{ErrorCode, GroupHead, OrderChange};

use super::{MAX_GROUPS, MAX_HEAD_HISTORY, RelayCore};
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
        let body_hash: [u8; 32] = order.body_hash.as_slice().try_into().map_err(|_| (ErrorCode::Malformed, "a body hash is 32 bytes"))?;
        if group_order::state_hash(&body_hash, &order_key) != state_hash {
            return Err((ErrorCode::Malformed, "the state hash does not name the order key"));
        }
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
        let mut recent_hashes = self.state.group_heads.get(&order.group_id).map(|head| {
            let mut recent = head.recent_hashes.clone();
            recent.push(head.state_hash);
            recent
        }).unwrap_or_default();
        let excess = recent_hashes.len().saturating_sub(MAX_HEAD_HISTORY);
        recent_hashes.drain(..excess);
        let head = Head { epoch: order.epoch, state_hash, order_key, recent_hashes };
        let answer = head_of(&order.group_id, &head);
        self.mutate(Mutation::PutGroupHead { group: order.group_id, head });
        Ok(answer)
    }

    /// The state of group `id` this hub ordered at `epoch` if it still keeps it, else its head.
    fn group_head(&self, id: &str, epoch: Option<u64>) -> Result<GroupHead, Refusal> {
        let head = self.state.group_heads.get(id).ok_or((ErrorCode::UnknownRecipient, "no such group at its hub"))?;
        let back = epoch.and_then(|epoch| head.epoch.checked_sub(epoch)).filter(|back| (1..=head.recent_hashes.len() as u64).contains(back));
        Ok(match back {
            Some(back) => {
                let hash = head.recent_hashes[head.recent_hashes.len() - back as usize];
                GroupHead { group_id: id.to_owned(), epoch: head.epoch - back, state_hash: hash.to_vec() }
            }
            None => head_of(id, head),
        })
    }

    /// An order or a head fetch for one of this hub's groups (from a device or another app),
    /// answered with the group's head.
    pub(super) fn answer_as_hub(&mut self, request: Body) -> Result<GroupHead, Refusal> {
        match request {
            Body::OrderChange(order) => self.order_change(order),
            Body::FetchHead(fetch) => self.group_head(&fetch.group_id, fetch.epoch),
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
