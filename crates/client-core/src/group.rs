//! A group as one device sees it — its state at one epoch, named by a hash that chains it to the
//! state before — and the control messages that carry it between members.

use indexmap::IndexSet;
use sha2::{Digest, Sha256};

use switchboard_session::{ProtocolAddress, Suite};
use switchboard_wire::switchboard::{DeviceAddress, GroupControl, OrderChange};

use crate::error::ClientError;

/// The key pair that signs a group's changes (Ed25519), held by the group's admins: the public
/// half is part of the group's state, the private half never leaves the admins' pairwise
/// sessions and snapshots. Zeroized on drop; its `Debug` shows only the public half.
#[derive(Clone)]
pub struct OrderKey(ed25519_dalek::SigningKey);

impl OrderKey {
    /// A fresh key.
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> OrderKey {
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill_bytes(secret.as_mut());
        OrderKey(ed25519_dalek::SigningKey::from_bytes(&secret))
    }

    /// The key whose private half is `secret` (32 bytes).
    pub fn from_secret(secret: &[u8]) -> Result<OrderKey, ClientError> {
        let secret: &[u8; 32] = secret.try_into().map_err(|_| ClientError::InvalidPayload("an order key's secret is 32 bytes"))?;
        Ok(OrderKey(ed25519_dalek::SigningKey::from_bytes(secret)))
    }

    /// The private half, to hand to an admin inside a pairwise session or to keep in a snapshot.
    pub fn secret(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.0.to_bytes())
    }

    /// The public half (an Ed25519 verifying key), as a group's state names it.
    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    fn sign(&self, bytes: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.0.sign(bytes).to_bytes()
    }
}

impl std::fmt::Debug for OrderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OrderKey(public {:02x?})", &self.public()[..4])
    }
}

/// Largest group a control message may describe.
pub const MAX_GROUP_MEMBERS: usize = 10_000;
/// Longest group id accepted.
pub const MAX_GROUP_ID_LEN: usize = 256;
/// What a group created at epoch 0 names as the state before it.
pub const GENESIS_HASH: [u8; 32] = [0; 32];
/// Domain separation for [`Group::hash`].
const HASH_LABEL: &[u8] = b"switchboard group state body v1";

/// A group's state at one epoch: its id, member devices, admins (the members that may change it),
/// the suite its sender keys use, the key that signs the change after it (its order key, whose
/// private half only the admins hold), and the hash of the state it followed. With it travels
/// the signature that made it: by the previous state's order key (at epoch 0, by its own).
///
/// Members keep the order the group's announcements list them in (new members last), so every
/// device that applied the same announcement iterates them alike; equality and the hash ignore
/// the order. A hashed set, because every group message received is checked against it: in a
/// group of a thousand an ordered set costs a dozen cache misses per check.
///
/// A `Group` is only made whole ([`Group::create`], [`Group::next`], `Group::from_control`), so
/// its hash always describes its fields, admins are always members and there is always an admin.
#[derive(Clone, Debug)]
pub struct Group {
    id: String,
    epoch: u64,
    members: IndexSet<ProtocolAddress>,
    admins: IndexSet<ProtocolAddress>,
    suite: Suite,
    order_key: [u8; 32],
    prev_hash: [u8; 32],
    /// The hash of everything but the order key; `hash` covers both.
    body_hash: [u8; 32],
    hash: [u8; 32],
    /// Not part of the state (nor its hash): what shows who made it.
    signature: Option<[u8; 64]>,
}

impl PartialEq for Group {
    fn eq(&self, other: &Group) -> bool {
        self.hash == other.hash
    }
}

impl Eq for Group {}

impl Group {
    /// A new group at epoch 0 with `members` and `creator` (its one admin), whose changes
    /// `order_key` signs. Unsigned until [`Self::sign`].
    pub fn create(
        id: &str,
        suite: Suite,
        members: impl IntoIterator<Item = ProtocolAddress>,
        creator: &ProtocolAddress,
        order_key: &OrderKey,
    ) -> Result<Group, ClientError> {
        let mut members: IndexSet<ProtocolAddress> = members.into_iter().collect();
        members.insert(creator.clone());
        let admins = [creator.clone()].into_iter().collect();
        Group::whole(id.to_owned(), 0, members, admins, suite, order_key.public(), GENESIS_HASH, None)
    }

    /// The state after this one, with `members` and `admins`, and a new order key if `order_key`
    /// (when an admin leaves: the key it held must order nothing more). Unsigned until
    /// [`Self::sign`].
    pub fn next(&self, members: IndexSet<ProtocolAddress>, admins: IndexSet<ProtocolAddress>, order_key: Option<&OrderKey>) -> Result<Group, ClientError> {
        let epoch = self.epoch.checked_add(1).ok_or(ClientError::InvalidChange("epoch exhausted"))?;
        let order_key = order_key.map_or(self.order_key, OrderKey::public);
        Group::whole(self.id.clone(), epoch, members, admins, self.suite, order_key, self.hash, None)
    }

    #[allow(clippy::too_many_arguments)] // one per field: the one place a state is put together
    fn whole(
        id: String,
        epoch: u64,
        members: IndexSet<ProtocolAddress>,
        admins: IndexSet<ProtocolAddress>,
        suite: Suite,
        order_key: [u8; 32],
        prev_hash: [u8; 32],
        signature: Option<[u8; 64]>,
    ) -> Result<Group, ClientError> {
        if id.is_empty() {
            return Err(ClientError::InvalidPayload("empty group id"));
        }
        if id.len() > MAX_GROUP_ID_LEN {
            return Err(ClientError::InvalidPayload("group id too long"));
        }
        if members.len() > MAX_GROUP_MEMBERS {
            return Err(ClientError::InvalidPayload("too many members"));
        }
        if admins.is_empty() {
            return Err(ClientError::InvalidPayload("a group without an admin"));
        }
        if !admins.is_subset(&members) {
            return Err(ClientError::InvalidPayload("an admin who is not a member"));
        }
        let body_hash = body_hash(&id, epoch, &members, &admins, suite, &prev_hash);
        let hash = switchboard_wire::group_order::state_hash(&body_hash, &order_key);
        Ok(Group { id, epoch, members, admins, suite, order_key, prev_hash, body_hash, hash, signature })
    }

    /// Signs this state with `signer`: the order key of the state before it (at epoch 0, its own).
    pub fn sign(mut self, signer: &OrderKey) -> Group {
        self.signature = Some(signer.sign(&self.signed_bytes()));
        self
    }

    /// Whether this state carries a signature by `signer` (an order key's public half).
    pub fn signed_by(&self, signer: &[u8; 32]) -> bool {
        let Some(signature) = &self.signature else { return false };
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(signer) else { return false };
        key.verify_strict(&self.signed_bytes(), &ed25519_dalek::Signature::from_bytes(signature)).is_ok()
    }

    fn signed_bytes(&self) -> Vec<u8> {
        switchboard_wire::group_order::signed_bytes(&self.id, self.epoch, &self.prev_hash, &self.hash, &self.order_key)
    }

    /// What the group's hub is asked to put at the head of its chain for this state.
    pub fn order(&self) -> OrderChange {
        OrderChange {
            group_id: self.id.clone(),
            epoch: self.epoch,
            prev_hash: self.prev_hash.to_vec(),
            state_hash: self.hash.to_vec(),
            order_key: self.order_key.to_vec(),
            signature: self.signature.map(|s| s.to_vec()).unwrap_or_default(),
            body_hash: self.body_hash.to_vec(),
        }
    }

    /// The public half of the key that signs the change after this state.
    pub fn order_key(&self) -> &[u8; 32] {
        &self.order_key
    }

    /// The group's id: never empty, at most [`MAX_GROUP_ID_LEN`] bytes.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// One more at every change.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The member devices (at most [`MAX_GROUP_MEMBERS`], admins among them), in the order the
    /// group's announcements list them.
    pub fn members(&self) -> &IndexSet<ProtocolAddress> {
        &self.members
    }

    /// The members that may add, remove and promote.
    pub fn admins(&self) -> &IndexSet<ProtocolAddress> {
        &self.admins
    }

    /// The suite of the members' sender keys for this group.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The hash of the state this one followed ([`GENESIS_HASH`] at epoch 0).
    pub fn prev_hash(&self) -> &[u8; 32] {
        &self.prev_hash
    }

    /// The hash naming this state: [`switchboard_wire::group_order::state_hash`] of its order
    /// key and of its body — SHA-256 over a label, the id, the epoch, the suite, the previous
    /// hash, then the members and the admins, each list sorted and counted, each
    /// address as its length-prefixed name and device id. Two devices hold the same state at an
    /// epoch exactly when their hashes agree, and (by the previous hash) the same history.
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// The announcement of this state: what its admins send every member after a change.
    pub fn announcement(&self) -> GroupControl {
        GroupControl {
            group_id: self.id.clone(),
            epoch: self.epoch,
            members: self.members.iter().map(crate::wire_address).collect(),
            suite: self.suite.name().to_owned(),
            prev_hash: self.prev_hash.to_vec(),
            admins: self.admins.iter().map(crate::wire_address).collect(),
            order_key: self.order_key.to_vec(),
            signature: self.signature.map(|s| s.to_vec()).unwrap_or_default(),
            ..Default::default()
        }
    }

    /// A sender key for this group, without the member list (a key for a group of 1,000 costs a
    /// few hundred bytes, not the whole list), naming the state it was sent at.
    pub(crate) fn key_control(&self, distribution: Vec<u8>) -> GroupControl {
        GroupControl {
            group_id: self.id.clone(),
            epoch: self.epoch,
            suite: self.suite.name().to_owned(),
            sender_key_distribution: distribution,
            state_hash: self.hash.to_vec(),
            ..Default::default()
        }
    }

    /// The state an announcement describes, checked whole (see [`Group`]).
    pub(crate) fn from_control(control: &GroupControl) -> Result<Group, ClientError> {
        if control.members.len() > MAX_GROUP_MEMBERS {
            return Err(ClientError::InvalidPayload("too many members"));
        }
        let suite = control.suite.parse().map_err(|_| ClientError::InvalidPayload("unknown suite"))?;
        let prev_hash = control.prev_hash.as_slice().try_into().map_err(|_| ClientError::InvalidPayload("a previous hash is 32 bytes"))?;
        let order_key = control.order_key.as_slice().try_into().map_err(|_| ClientError::InvalidPayload("an order key is 32 bytes"))?;
        let signature = control.signature.as_slice().try_into().map_err(|_| ClientError::InvalidPayload("a change's signature is 64 bytes"))?;
        let members = addresses(&control.members)?;
        let admins = addresses(&control.admins)?;
        Group::whole(control.group_id.clone(), control.epoch, members, admins, suite, order_key, prev_hash, Some(signature))
    }
}

fn addresses(wire: &[DeviceAddress]) -> Result<IndexSet<ProtocolAddress>, ClientError> {
    let set: IndexSet<_> = wire.iter().map(|member| ProtocolAddress::new(member.name.clone(), member.device_id)).collect();
    if set.len() != wire.len() {
        return Err(ClientError::InvalidPayload("a member is listed twice"));
    }
    Ok(set)
}

fn body_hash(
    id: &str,
    epoch: u64,
    members: &IndexSet<ProtocolAddress>,
    admins: &IndexSet<ProtocolAddress>,
    suite: Suite,
    prev_hash: &[u8; 32],
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let bytes = |hasher: &mut Sha256, bytes: &[u8]| {
        hasher.update((bytes.len() as u32).to_be_bytes());
        hasher.update(bytes);
    };
    bytes(&mut hasher, HASH_LABEL);
    bytes(&mut hasher, id.as_bytes());
    hasher.update(epoch.to_be_bytes());
    bytes(&mut hasher, suite.name().as_bytes());
    hasher.update(prev_hash);
    for list in [members, admins] {
        let mut sorted: Vec<&ProtocolAddress> = list.iter().collect();
        sorted.sort_unstable();
        hasher.update((sorted.len() as u32).to_be_bytes());
        for address in sorted {
            bytes(&mut hasher, address.name().as_bytes());
            hasher.update(address.device_id().to_be_bytes());
        }
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_key() -> crate::group::OrderKey {
        crate::group::OrderKey::from_secret(&[7; 32]).unwrap()
    }

    fn device(name: &str) -> ProtocolAddress {
        ProtocolAddress::new(format!("{name}@x"), 1)
    }

    #[test]
    fn the_hash_names_the_whole_state_and_its_history_but_not_the_order() {
        let (a, b, c) = (device("a"), device("b"), device("c"));
        let group = Group::create("g@x", Suite::Aes256Gcm, [b.clone(), c.clone()], &a, &test_key()).unwrap().sign(&test_key());
        let reordered = Group::create("g@x", Suite::Aes256Gcm, [c.clone(), b.clone()], &a, &test_key()).unwrap().sign(&test_key());
        assert_eq!(group.hash(), reordered.hash());
        let same_members = |admins: &[&ProtocolAddress]| group.next(group.members().clone(), admins.iter().copied().cloned().collect(), None).unwrap().sign(&test_key());
        let promoted = same_members(&[&a, &b]);
        assert_ne!(promoted.hash(), same_members(&[&a]).hash(), "the admins are part of the state");
        assert_eq!(promoted.prev_hash(), group.hash());
        // The same change on top of a different history is a different state.
        let other = Group::create("g@x", Suite::SignalV3, [b.clone(), c.clone()], &a, &test_key()).unwrap().sign(&test_key());
        assert_ne!(other.next(group.members().clone(), [a.clone(), b.clone()].into_iter().collect(), None).unwrap().sign(&test_key()).hash(), promoted.hash());
        // The hash travels in the announcement and is recomputed, never taken from it.
        assert_eq!(Group::from_control(&promoted.announcement()).unwrap().hash(), promoted.hash());
    }

    #[test]
    fn an_announcement_is_checked_whole() {
        let (a, b) = (device("a"), device("b"));
        let group = Group::create("g@x", Suite::Aes256Gcm, [b.clone()], &a, &test_key()).unwrap().sign(&test_key());
        let refused = |edit: &dyn Fn(&mut GroupControl)| {
            let mut control = group.announcement();
            edit(&mut control);
            Group::from_control(&control).unwrap_err()
        };
        assert_eq!(refused(&|c| c.admins.clear()), ClientError::InvalidPayload("a group without an admin"));
        assert_eq!(refused(&|c| c.admins.push(crate::wire_address(&device("z")))), ClientError::InvalidPayload("an admin who is not a member"));
        assert_eq!(refused(&|c| c.prev_hash.pop().map_or((), drop)), ClientError::InvalidPayload("a previous hash is 32 bytes"));
        assert_eq!(refused(&|c| c.members.push(c.members[0].clone())), ClientError::InvalidPayload("a member is listed twice"));
        assert_eq!(refused(&|c| c.group_id = "g".repeat(MAX_GROUP_ID_LEN + 1)), ClientError::InvalidPayload("group id too long"));
        assert_eq!(refused(&|c| c.suite = "rot13".into()), ClientError::InvalidPayload("unknown suite"));
    }
}
