//! A device's state as one [`DeviceSnapshot`] (keys, sessions, sender keys, groups), and back.

use switchboard_session::group::{SenderKeyRecord, SenderKeyStore};
use switchboard_session::store::{IdentityKeyStore, KemPreKeyStore, PreKeyStore, SessionStore, SignedPreKeyStore};
use switchboard_session::{
    IdentityKeyPair, InMemoryStore, KemPreKeyRecord, PreKeyRecord, ProtocolAddress, PublicKey, SessionRecord, SignedPreKeyRecord, Suite,
};
use switchboard_wire::Message;
use switchboard_wire::switchboard::{DeviceAddress, DeviceSnapshot, GroupControl, KemPreKeyUse, KnownIdentity, PendingChange, StoredRecord};

use crate::device::Device;
use crate::error::ClientError;
use crate::group::{Group, OrderKey};

use crate::wire_address as wire;

fn address(wire: Option<&DeviceAddress>) -> Result<ProtocolAddress, ClientError> {
    let wire = wire.ok_or(ClientError::InvalidPayload("stored record without an address"))?;
    Ok(ProtocolAddress::new(wire.name.clone(), wire.device_id))
}

/// A kept announcement, checked as when it was kept (a stored state is hostile input too).
fn pending_change(stored: &PendingChange) -> Result<crate::device::PendingChange, ClientError> {
    let control = stored.control.clone().ok_or(ClientError::InvalidPayload("a kept change without its announcement"))?;
    Group::from_control(&control)?;
    Ok(crate::device::PendingChange { from: address(stored.from.as_ref())?, control })
}

fn stored_change(pending: &crate::device::PendingChange) -> PendingChange {
    PendingChange { from: Some(wire(&pending.from)), control: Some(pending.control.clone()) }
}

/// `group`'s announcement, with the private half of its order key when this device holds it.
fn with_secret(group: &Group, key: Option<&OrderKey>) -> GroupControl {
    let mut control = group.announcement();
    if let Some(key) = key {
        control.order_secret = key.secret().to_vec();
    }
    control
}

/// The order key stored with `group`, checked against the group's (none stored: none held).
fn order_key(group: &Group, control: &GroupControl) -> Result<Option<OrderKey>, ClientError> {
    if control.order_secret.is_empty() {
        return Ok(None);
    }
    let key = OrderKey::from_secret(&control.order_secret)?;
    if key.public() != *group.order_key() {
        return Err(ClientError::InvalidPayload("an order key that is not the group's"));
    }
    Ok(Some(key))
}

impl Device {
    /// The device's whole state (the client's own fields left empty).
    pub fn snapshot(&self) -> DeviceSnapshot {
        let identity = self.store.identity_key_pair().expect("in-memory store");
        DeviceSnapshot {
            address: Some(wire(&self.address)),
            registration_id: self.store.local_registration_id().expect("in-memory store"),
            identity_key_pair: identity.serialize().to_vec(),
            signed_prekeys: self.store.signed_prekeys().map(|r| r.serialize().to_vec()).collect(),
            prekeys: self.store.prekeys().map(|r| r.serialize().to_vec()).collect(),
            kem_prekeys: self.store.kem_prekeys().map(|r| r.serialize().to_vec()).collect(),
            kem_prekey_uses: self
                .store
                .kem_prekey_uses()
                .map(|(id, base_key)| KemPreKeyUse { id, base_key: base_key.serialize().to_vec() })
                .collect(),
            identities: self
                .store
                .identities()
                .map(|(a, key)| KnownIdentity { address: Some(wire(a)), identity_key: key.serialize().to_vec() })
                .collect(),
            sessions: self
                .store
                .sessions()
                .map(|(a, r)| StoredRecord { address: Some(wire(a)), group: String::new(), record: r.serialize().to_vec() })
                .collect(),
            sender_keys: self
                .sender_keys
                .records()
                .map(|(g, a, r)| StoredRecord { address: Some(wire(a)), group: g.to_owned(), record: r.serialize().to_vec() })
                .collect(),
            groups: self.groups.values().map(|group| with_secret(group, self.order_keys.get(group.id()))).collect(),
            pending_changes: self.pending_changes.iter().map(stored_change).collect(),
            proposals: self.proposals.values().map(|proposal| with_secret(&proposal.group, Some(&proposal.order_key))).collect(),
            awaiting_hub: self.awaiting_hub.values().map(stored_change).collect(),
            next_prekey_id: self.next_prekey_id,
            person_key_pair: self.person.as_ref().map(|person| person.to_stored().0.to_vec()).unwrap_or_default(),
            revoked_devices: self.person.as_ref().map(|person| person.to_stored().2.iter().map(wire).collect()).unwrap_or_default(),
            person: self.person.as_ref().map(|person| person.record().to_wire()),
            people: self.people.to_stored(),
            contacts: self.contacts.iter().cloned().collect(),
            accepted: self.consent.accepted().map(str::to_owned).collect(),
            blocked: self.consent.blocked().map(str::to_owned).collect(),
            channels: self.channels.stored(),
            business: self.business.as_ref().map(crate::business::Business::stored),
            ..Default::default()
        }
    }

    /// A device restored from its snapshot.
    pub fn restore(snapshot: &DeviceSnapshot) -> Result<Device, ClientError> {
        let identity = IdentityKeyPair::deserialize(&snapshot.identity_key_pair)?;
        if snapshot.signed_prekeys.is_empty() {
            return Err(ClientError::InvalidPayload("a device without a signed prekey"));
        }
        let mut store = InMemoryStore::new(identity, snapshot.registration_id);
        for bytes in &snapshot.signed_prekeys {
            store.save_signed_prekey(SignedPreKeyRecord::deserialize(bytes)?)?;
        }
        for bytes in &snapshot.prekeys {
            store.save_prekey(PreKeyRecord::deserialize(bytes)?)?;
        }
        for bytes in &snapshot.kem_prekeys {
            store.save_kem_prekey(KemPreKeyRecord::deserialize(bytes)?)?;
        }
        for used in &snapshot.kem_prekey_uses {
            store.mark_kem_prekey_used(used.id, &PublicKey::from_bytes(&used.base_key)?)?;
        }
        for known in &snapshot.identities {
            store.save_identity(&address(known.address.as_ref())?, &PublicKey::from_bytes(&known.identity_key)?)?;
        }
        for session in &snapshot.sessions {
            store.store_session(&address(session.address.as_ref())?, SessionRecord::deserialize(&session.record)?)?;
        }
        let mut sender_keys = switchboard_session::group::InMemorySenderKeyStore::default();
        for record in &snapshot.sender_keys {
            let sender = address(record.address.as_ref())?;
            sender_keys.store_sender_key(&record.group, &sender, SenderKeyRecord::deserialize(&record.record)?)?;
        }
        let mut groups = std::collections::HashMap::new();
        let mut order_keys = std::collections::HashMap::new();
        for control in &snapshot.groups {
            let group = Group::from_control(control)?;
            if let Some(key) = order_key(&group, control)? {
                order_keys.insert(group.id().to_owned(), key);
            }
            if groups.insert(group.id().to_owned(), group).is_some() {
                return Err(ClientError::InvalidPayload("a group stored twice"));
            }
        }
        let mut proposals = std::collections::HashMap::new();
        for control in &snapshot.proposals {
            let group = Group::from_control(control)?;
            let order_key = order_key(&group, control)?.ok_or(ClientError::InvalidPayload("a proposal without its order key"))?;
            if proposals.insert(group.id().to_owned(), crate::device::Proposal { group, order_key }).is_some() {
                return Err(ClientError::InvalidPayload("two proposals for one group"));
            }
        }
        // The bounds `Device::await_hub` keeps to: senders per group, and joins (changes of groups
        // this device is not in) per sender and in all. A change past them is dropped, not the
        // whole device: it is only waiting for its hub's word, which its sender can ask for again
        // (and a group this device left since turns its kept changes into joins).
        let mut awaiting_hub = std::collections::HashMap::new();
        let mut per_group: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut joins_per_sender: std::collections::HashMap<ProtocolAddress, usize> = std::collections::HashMap::new();
        let mut joins = 0;
        for stored in &snapshot.awaiting_hub {
            let pending = pending_change(stored)?;
            let senders = per_group.entry(pending.control.group_id.clone()).or_default();
            if *senders >= crate::MAX_AWAITING_HUB_PER_GROUP {
                continue;
            }
            if !groups.contains_key(&pending.control.group_id) {
                let from_sender = joins_per_sender.entry(pending.from.clone()).or_default();
                if joins >= crate::MAX_AWAITING_HUB || *from_sender >= crate::MAX_AWAITING_HUB_PER_SENDER {
                    continue;
                }
                joins += 1;
                *from_sender += 1;
            }
            *senders += 1;
            if awaiting_hub.insert((pending.control.group_id.clone(), pending.from.clone()), pending).is_some() {
                return Err(ClientError::InvalidPayload("two changes from one sender for one group"));
            }
        }
        let kept_bytes: usize = snapshot.pending_changes.iter().map(|pending| pending.encoded_len()).sum();
        if snapshot.pending_changes.len() > crate::MAX_PENDING_CHANGES || kept_bytes > crate::MAX_PENDING_CHANGE_BYTES {
            return Err(ClientError::InvalidPayload("more kept changes than a device keeps"));
        }
        let person = match &snapshot.person {
            Some(record) => {
                let revoked = snapshot.revoked_devices.iter().map(|device| address(Some(device))).collect::<Result<Vec<_>, _>>()?;
                Some(crate::person::Person::from_stored(&snapshot.person_key_pair, record.clone(), revoked)?)
            }
            None => None,
        };
        let people = crate::person::People::restore(&snapshot.people)?;
        if snapshot.contacts.len() > crate::device::MAX_CONTACTS {
            return Err(ClientError::InvalidPayload("more contacts than a device keeps"));
        }
        Ok(Device {
            person,
            people,
            contacts: snapshot.contacts.iter().cloned().collect(),
            consent: crate::consent::Consent::restore(&snapshot.accepted, &snapshot.blocked)?,
            channels: crate::channel::Channels::restore(&snapshot.channels)?,
            business: snapshot.business.as_ref().map(crate::business::Business::restore).transpose()?,
            address: address(snapshot.address.as_ref())?,
            store,
            sender_keys,
            groups,
            // Not kept: after a restart the current key goes to every member once more, which
            // costs a message each and rewinds nothing.
            key_holders: Default::default(),
            held_keys: Default::default(),
            pending_changes: snapshot.pending_changes.iter().map(pending_change).collect::<Result<_, _>>()?,
            forks: Vec::new(),
            proposals,
            order_keys,
            awaiting_hub,
            // The driver says again (`check_changes_with_hub`): it is how the device is driven,
            // not part of its state.
            changes_need_hub: false,
            next_prekey_id: snapshot.next_prekey_id,
            // Configuration, not state: the driver sets it again (`set_suites`).
            suites: Suite::ALL.to_vec(),
            stated_suites: crate::device::stated_suites(&Suite::ALL),
            #[cfg(switchboard_inject_bugs)]
            bugs: Default::default(),
        })
    }

    /// The devices this device has sessions with, by user.
    pub fn known_devices(&self) -> impl Iterator<Item = &ProtocolAddress> {
        self.store.sessions().map(|(address, _)| address)
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_wire::Message;
    use crate::directory::InMemoryDirectory;
    use rand::SeedableRng;
    use switchboard_session::Suite;

    #[test]
    fn a_restored_device_carries_on_its_sessions_and_groups() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let (a, b) = (ProtocolAddress::new("a@x", 1), ProtocolAddress::new("b@y", 1));
        let mut alice = Device::new(a.clone(), 1, &mut rng);
        let mut bob = Device::new(b.clone(), 2, &mut rng);
        let mut directory = InMemoryDirectory::default();
        directory.publish(&b, bob.publish_bundles(3, &mut rng)).unwrap();
        directory.publish(&a, alice.publish_bundles(3, &mut rng)).unwrap();
        let outgoing = alice.create_group("g@x", [b.clone()], Suite::Aes256Gcm, &mut directory, &mut rng).unwrap();
        for message in outgoing {
            let (_, responses) = bob.receive(&a, &message.message, &mut directory, &mut rng).unwrap();
            for response in responses {
                alice.receive(&b, &response.message, &mut directory, &mut rng).unwrap();
            }
        }
        // Alice's key reaches Bob with her first group message, before the restart.
        let first = alice.encrypt_group("g@x", b"before the restart", &mut rng).unwrap();
        for sealed in alice.seal_all(first.key_distributions, &mut directory, &mut rng).unwrap() {
            bob.receive(&a, &sealed.message, &mut directory, &mut rng).unwrap();
        }
        assert_eq!(bob.decrypt_group("g@x", &a, &first.bytes).unwrap(), b"before the restart");
        let stored = bob.snapshot().encode_to_vec();
        drop(bob);
        let mut bob = Device::restore(&switchboard_wire::decode(&stored, usize::MAX).unwrap()).unwrap();
        let group_message = alice.encrypt_group("g@x", b"after the restart", &mut rng).unwrap();
        assert!(group_message.key_distributions.is_empty(), "Bob holds Alice's key already");
        assert_eq!(bob.decrypt_group("g@x", &a, &group_message.bytes).unwrap(), b"after the restart");
        let direct = alice.send(&b, b"direct", &mut directory, &mut rng).unwrap();
        let (received, _) = bob.receive(&a, &direct.message, &mut directory, &mut rng).unwrap();
        assert!(matches!(received, crate::Received::Application { content, .. } if content == b"direct"));
        assert_eq!(bob.group("g@x").unwrap().members().len(), 2);
    }

    /// Changes of the groups a device is in wait for their hub up to a bound per group, not
    /// [`crate::MAX_AWAITING_HUB`] in all (which bounds joins): a device in many groups may keep
    /// more than that, and must restore what it wrote.
    #[test]
    fn a_device_restores_every_change_it_kept_waiting_for_a_hub() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let (a, b) = (ProtocolAddress::new("a@x", 1), ProtocolAddress::new("b@y", 1));
        let mut alice = Device::new(a.clone(), 1, &mut rng);
        let mut bob = Device::new(b.clone(), 2, &mut rng);
        let mut directory = InMemoryDirectory::default();
        directory.publish(&b, bob.publish_bundles(3, &mut rng)).unwrap();
        let groups = crate::MAX_AWAITING_HUB / crate::MAX_AWAITING_HUB_PER_GROUP + 1;
        for g in 0..groups {
            alice.create_group(&format!("g{g}@x"), [b.clone()], Suite::Aes256Gcm, &mut directory, &mut rng).unwrap();
        }
        // What each group's other members might have announced, kept while the hub is asked.
        for g in 0..groups {
            let control = alice.group(&format!("g{g}@x")).unwrap().announcement();
            for sender in 0..crate::MAX_AWAITING_HUB_PER_GROUP {
                let from = ProtocolAddress::new(&format!("m{sender}@y"), 1);
                alice.awaiting_hub.insert((control.group_id.clone(), from.clone()), crate::device::PendingChange { from, control: control.clone() });
            }
        }
        assert!(alice.awaiting_hub.len() > crate::MAX_AWAITING_HUB);
        let stored = alice.snapshot().encode_to_vec();
        let restored = Device::restore(&switchboard_wire::decode(&stored, usize::MAX).unwrap()).expect("a device restores what it wrote");
        assert_eq!(restored.awaiting_hub.len(), groups * crate::MAX_AWAITING_HUB_PER_GROUP);

        // Past the bounds (one sender too many for a group; a group left since, whose changes are
        // now joins past the per-sender bound), the extra changes are dropped, not the device.
        let mut crowded = alice.snapshot();
        let mut extra = crowded.awaiting_hub[0].clone();
        extra.from = Some(wire(&ProtocolAddress::new("m9@y", 1)));
        crowded.awaiting_hub.push(extra);
        crowded.groups.truncate(1);
        let restored = Device::restore(&crowded).expect("a device restores past the bounds");
        let joins: Vec<_> = restored.awaiting_hub.values().filter(|pending| !restored.groups.contains_key(&pending.control.group_id)).collect();
        assert!(!joins.is_empty() && joins.len() <= crate::MAX_AWAITING_HUB);
        for sender in joins.iter().map(|pending| &pending.from) {
            assert!(joins.iter().filter(|pending| pending.from == *sender).count() <= crate::MAX_AWAITING_HUB_PER_SENDER, "{sender}");
        }
        let mut per_group = std::collections::HashMap::<&str, usize>::new();
        for pending in restored.awaiting_hub.values() {
            *per_group.entry(&pending.control.group_id).or_default() += 1;
        }
        assert!(per_group.values().all(|senders| *senders <= crate::MAX_AWAITING_HUB_PER_GROUP));
    }
}
