//! The bytes a group's order key signs: one definition for the admins who sign a change, the
//! members who check it ([`crate::switchboard::GroupControl`]) and the hub that orders it
//! ([`crate::switchboard::OrderChange`]).

use sha2::{Digest, Sha256};

/// Domain separation: these bytes are never signed for anything else.
const LABEL: &[u8] = b"switchboard group order v1";
/// Domain separation for [`state_hash`].
const STATE_LABEL: &[u8] = b"switchboard group state v2";

/// The hash that names a group's state: SHA-256 over a label, the hash of the state's body (its
/// id, epoch, suite, previous hash, members and admins: see `Group::hash` in
/// switchboard-client-core) and its order key. Built so, the hub — which never sees the body —
/// can check that the order key it is asked to keep is the one the state names.
pub fn state_hash(body_hash: &[u8; 32], order_key: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((STATE_LABEL.len() as u32).to_be_bytes());
    hasher.update(STATE_LABEL);
    hasher.update(body_hash);
    hasher.update(order_key);
    hasher.finalize().into()
}

/// `LABEL ‖ len(group_id) ‖ group_id ‖ epoch ‖ prev_hash ‖ state_hash ‖ order_key`, lengths and
/// the epoch as big-endian u32 and u64. Every field but the id has a fixed length wherever it is
/// accepted (32 bytes each), so the encoding is unambiguous.
pub fn signed_bytes(group_id: &str, epoch: u64, prev_hash: &[u8], state_hash: &[u8], order_key: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(LABEL.len() + 4 + group_id.len() + 8 + prev_hash.len() + state_hash.len() + order_key.len());
    bytes.extend_from_slice(LABEL);
    bytes.extend_from_slice(&(group_id.len() as u32).to_be_bytes());
    bytes.extend_from_slice(group_id.as_bytes());
    bytes.extend_from_slice(&epoch.to_be_bytes());
    bytes.extend_from_slice(prev_hash);
    bytes.extend_from_slice(state_hash);
    bytes.extend_from_slice(order_key);
    bytes
}
