//! The bytes a group's order key signs: one definition for the admins who sign a change, the
//! members who check it ([`crate::switchboard::GroupControl`]) and the hub that orders it
//! ([`crate::switchboard::OrderChange`]).

/// Domain separation: these bytes are never signed for anything else.
const LABEL: &[u8] = b"switchboard group order v1";

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
