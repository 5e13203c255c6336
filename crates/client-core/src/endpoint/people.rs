//! One person on several apps, as the endpoint carries it out (see [`crate::person`] and
//! `docs/PEOPLE.md`): her record goes to her other devices and to her contacts after every
//! change; a message to a linked person goes to every device of every account of hers its sender
//! may see; every message she sends, and every one she receives on an account its sender could
//! not see linked, is carried to her other devices as a transcript.

use rand_core::CryptoRng;
use std::time::Duration;

use switchboard_session::ProtocolAddress;
use switchboard_wire::switchboard::{LookupPerson, PersonFound, PublishPerson, Transcript, Visibility, client_frame::Body};
use zeroize::Zeroizing;

use super::work::Work;
use super::{CommandError, Endpoint, Event, Phase, Request, RequestFailed};
use crate::device::{Device, PendingSend};
use crate::person::{Audience, Person, PersonError, PersonRecord};

/// Why a lookup ([`Endpoint::lookup_person`]) gave nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupFailed {
    /// The relay answered with a refusal (no record published for that address: `UnknownRecipient`),
    /// or not at all.
    #[error(transparent)]
    Request(#[from] RequestFailed),
    /// The record does not verify, or does not name the address asked for.
    #[error("the record does not hold: {0}")]
    Record(#[source] PersonError),
    /// The record's devices or keys for the address are not those its relay serves: not hers,
    /// or out of date.
    #[error("the record lists other devices or keys for {0} than its relay serves")]
    Mismatch(String),
}

/// Contacts remembered as given this person's current record (see `introduce`); past it, no
/// more are introduced until the record changes.
pub const MAX_INTRODUCED: usize = 100_000;

impl Endpoint {
    /// Makes this device's account the first of a new person ([`crate::person::Person`]).
    pub fn become_person(&mut self, now: Duration, visibility: Visibility, rng: &mut (impl CryptoRng + ?Sized)) -> Result<(), CommandError> {
        self.now = self.now.max(now);
        self.device.become_person(visibility, rng)?;
        self.person_changed(rng);
        self.release();
        Ok(())
    }

    /// The invitation a new device of this person is shown (a code it scans on the same phone):
    /// secret, as it holds the person key. `None` before [`Self::become_person`].
    pub fn person_invitation(&self) -> Option<Zeroizing<Vec<u8>>> {
        self.device.person().map(Person::invitation)
    }

    /// Joins the person another device of hers invited this one to: lists this device (and its
    /// account, shown to `visibility`, if new to her) and tells her other devices.
    pub fn join_person(&mut self, now: Duration, invitation: &[u8], visibility: Visibility, rng: &mut (impl CryptoRng + ?Sized)) -> Result<(), CommandError> {
        self.now = self.now.max(now);
        self.device.join_person(invitation, visibility, rng)?;
        self.person_changed(rng);
        self.release();
        Ok(())
    }

    /// Asks (through this device's relay, and federation) for the record published for `user`:
    /// the accounts its person shows the public. Needs the exact address; counted against this
    /// device's rate with bundle fetches. The answer comes as [`Event::PersonLookedUp`] with the
    /// returned request number.
    pub fn lookup_person(&mut self, now: Duration, user: &str) -> Result<u64, CommandError> {
        self.now = self.now.max(now);
        switchboard_wire::address::UserAddress::split(user)?;
        let request = self.next_handle();
        if self.phase == Phase::Online {
            self.request(Request::LookupPerson(request, user.to_owned()), Body::LookupPerson(LookupPerson { user: user.to_owned(), requester: None }));
        } else {
            self.events.push_back(Event::PersonLookedUp { request, user: user.to_owned(), result: Err(LookupFailed::Request(RequestFailed::Disconnected)) });
        }
        self.release();
        Ok(request)
    }

    /// The relay's answer to a lookup: checked, then kept once `user`'s devices are known and
    /// match it.
    pub(super) fn person_found(&mut self, request: u64, user: String, found: PersonFound, rng: &mut (impl CryptoRng + ?Sized)) {
        let record = match found.record.ok_or(PersonError::Malformed("no record")).and_then(PersonRecord::verify) {
            Ok(record) if record.account(&user).is_some() => record,
            Ok(_) => return self.events.push_back(Event::PersonLookedUp { request, user: user.clone(), result: Err(LookupFailed::Record(PersonError::NotLinked(user))) }),
            Err(error) => return self.events.push_back(Event::PersonLookedUp { request, user, result: Err(LookupFailed::Record(error)) }),
        };
        // Fetched again: the devices its relay lists now are what the record must match.
        self.devices_of.remove(&user);
        self.submit(Work::CheckLookup { request, user, record }, rng);
    }

    /// A looked-up record, with `user`'s devices at hand: kept if it matches them.
    pub(super) fn check_lookup(&mut self, request: u64, user: String, record: PersonRecord, rng: &mut (impl CryptoRng + ?Sized)) {
        if !self.matches(&record, &user) {
            return self.events.push_back(Event::PersonLookedUp { request, user: user.clone(), result: Err(LookupFailed::Mismatch(user)) });
        }
        let accounts: Vec<String> = record.accounts().iter().map(|account| account.user.clone()).collect();
        let person_key = *record.person_key();
        let result = match self.device.accept_person_record(record, &user) {
            Ok(changed) => {
                if changed {
                    self.share_known_person(&person_key, &user, rng);
                }
                Ok(accounts)
            }
            Err(error) => Err(LookupFailed::Record(error)),
        };
        self.changed_device();
        self.events.push_back(Event::PersonLookedUp { request, user, result });
    }

    /// Makes what the relay should publish for this device's user: the public view of this
    /// person's record, or a withdrawal (when the view does not list the user, or the device
    /// belongs to no person). Sent by [`Self::publish_person`].
    pub(super) fn prepare_publish(&mut self, rng: &mut (impl CryptoRng + ?Sized)) {
        let version = self.device.person().map(|person| person.record().version());
        if version == self.published_person && self.to_publish.is_none() {
            return;
        }
        let me = self.device.address().name().to_owned();
        let record = self.device.person().map(|person| person.view(Audience::Public, rng)).filter(|view| view.accounts.iter().any(|account| account.user == me));
        self.to_publish = Some((version, record));
    }

    /// Sends what [`Self::prepare_publish`] made, once the state holding that version is durable
    /// (a version the device could lose in a crash would come back signed anew with other
    /// contents, and its readers would refuse both).
    pub(super) fn publish_person(&mut self) {
        if self.phase != Phase::Online || self.publishing || self.person_generation > self.durable {
            return;
        }
        let Some((version, record)) = self.to_publish.take() else { return };
        if version == self.published_person {
            return;
        }
        self.publishing = true;
        self.request(Request::PublishPerson(version, record.clone()), Body::PublishPerson(PublishPerson { record }));
    }

    /// Sets who may see that `user` (an account of this person's) is hers.
    pub fn set_link_visibility(&mut self, now: Duration, user: &str, visibility: Visibility, shown_to: Vec<String>, rng: &mut (impl CryptoRng + ?Sized)) -> Result<(), CommandError> {
        self.now = self.now.max(now);
        self.device.change_person(|person| person.set_visibility(user, visibility, shown_to, &mut *rng))?;
        self.person_changed(rng);
        self.release();
        Ok(())
    }

    /// Revokes the link of `user`: her other devices and her contacts get a record without it.
    pub fn unlink(&mut self, now: Duration, user: &str, rng: &mut (impl CryptoRng + ?Sized)) -> Result<(), CommandError> {
        self.now = self.now.max(now);
        let dropped: Vec<ProtocolAddress> = self.devices_of.get(user).cloned().unwrap_or_default();
        self.device.change_person(|person| person.unlink(user, &mut *rng))?;
        // The unlinked account's devices hear of it too (the public view: they belong to her no
        // more, and learn no more of her), and stop acting as hers.
        if let Some(payload) = self.device.person_payload(Audience::Public, rng) {
            let me = self.device.address().clone();
            let pending: Vec<PendingSend> = dropped.into_iter().filter(|device| *device != me).map(|device| PendingSend::new(device, payload.clone())).collect();
            self.submit(Work::Seal(pending), rng);
        }
        self.person_changed(rng);
        self.release();
        Ok(())
    }

    /// The safety number of this person and `user`'s person: one number for every pair of their
    /// accounts. `None` unless both are people and a device of `user` itself sent its record.
    pub fn person_safety_number(&self, user: &str) -> Option<String> {
        let mine = self.device.person()?.person_key();
        let theirs = self.device.people().person_of(user)?.person_key();
        Some(crate::person::person_safety_number(mine, theirs))
    }

    /// The id of this device's conversation with `user`: the same whichever account of this
    /// person writes, and whichever of `user`'s person's accounts it writes to, once that
    /// person's record is known here (see [`crate::person::direct_conversation`]).
    pub fn conversation_with(&self, user: &str) -> String {
        let me = self.device.address().name();
        let mine = crate::person::party(self.device.person().map(Person::person_key), me);
        let theirs = crate::person::party(self.device.people().person_of(user).map(PersonRecord::person_key), user);
        crate::person::direct_conversation(&mine, &theirs)
    }

    /// This person's record changed (here, or on another device of hers): her other devices get
    /// it whole, each contact the view it may see.
    pub(super) fn person_changed(&mut self, rng: &mut (impl CryptoRng + ?Sized)) {
        self.changed_device();
        // Her accounts' devices may have changed with it: fetched again when next needed.
        for account in self.own_accounts() {
            self.devices_of.remove(&account);
        }
        self.person_generation = self.generation;
        self.to_publish = None;
        self.prepare_publish(rng);
        self.introduced.clear();
        if let Some(payload) = self.device.person_payload(Audience::Own, rng) {
            self.submit(Work::Own { payload, skip: Vec::new() }, rng);
        }
        let contacts: Vec<String> = self.device.contacts().map(str::to_owned).collect();
        for contact in contacts {
            self.submit(Work::Introduce { to: contact }, rng);
        }
    }

    /// Whether `to` may see that this device's account is this person's: if not, nothing of her
    /// record goes from this device to `to` (that it came from this account would show the link).
    fn shows_this_account_to(&self, to: &str) -> bool {
        let me = self.device.address().name();
        self.device.person().and_then(|person| person.record().account(me)).is_some_and(|account| match account.visibility {
            Visibility::Public | Visibility::Contacts => true,
            Visibility::Chosen => account.shown_to.iter().any(|user| user == to),
            _ => false,
        })
    }

    /// Gives `to` (a contact) this person's record as it may see it, on every device of `to`.
    pub(super) fn introduce(&mut self, to: &str, rng: &mut (impl CryptoRng + ?Sized)) {
        if !self.shows_this_account_to(to) {
            return;
        }
        let Some(payload) = self.device.person_payload(Audience::Contact(to), rng) else { return };
        let me = self.device.address().clone();
        let devices: Vec<ProtocolAddress> = self.devices_of.get(to).into_iter().flatten().filter(|device| **device != me).cloned().collect();
        self.introduced.insert(to.to_owned());
        let pending: Vec<PendingSend> = devices.into_iter().map(|device| PendingSend::new(device, payload.clone())).collect();
        self.seal_each(pending, None, rng);
    }

    /// After a message to `to`: if this device belongs to a person and `to` does not hold her
    /// current record yet, `to` becomes a contact and gets it (on the `devices` the message went
    /// to). Only people she writes to learn the accounts she shows her contacts.
    pub(super) fn introduce_after_message(&mut self, to: &str, devices: Vec<ProtocolAddress>, rng: &mut (impl CryptoRng + ?Sized)) {
        let Some(person) = self.device.person() else { return };
        if person.record().account(to).is_some() || self.introduced.len() >= MAX_INTRODUCED || !self.shows_this_account_to(to) {
            return;
        }
        // Each account of the recipient's (the message may have gone to several of a person's).
        let fresh: Vec<ProtocolAddress> = devices.into_iter().filter(|device| !self.introduced.contains(device.name())).collect();
        if fresh.is_empty() || !self.device.add_contact(to) {
            return;
        }
        let Some(payload) = self.device.person_payload(Audience::Contact(to), rng) else { return };
        self.introduced.extend(fresh.iter().map(|device| device.name().to_owned()));
        let pending: Vec<PendingSend> = fresh.into_iter().map(|device| PendingSend::new(device, payload.clone())).collect();
        self.seal_each(pending, None, rng);
    }

    /// The users whose bundles a message to `to` needs: every account of `to`'s person this
    /// device knows of (or `to` alone), and this device's own accounts, for the transcript.
    pub(super) fn direct_users(&self, to: &str) -> Vec<String> {
        let mut users: Vec<String> = match self.device.people().person_of(to) {
            Some(record) => record.accounts().iter().map(|account| account.user.clone()).collect(),
            None => vec![to.to_owned()],
        };
        users.extend(self.own_accounts());
        if self.device.business().is_some() {
            // The account's other devices get a transcript.
            users.push(self.device.address().name().to_owned());
        }
        users
    }

    /// This person's accounts (none if the device belongs to no person).
    pub(super) fn own_accounts(&self) -> Vec<String> {
        self.device.person().map(|person| person.record().accounts().iter().map(|account| account.user.clone()).collect()).unwrap_or_default()
    }

    /// Whether `address`'s identity (its session's, or its bundle's before there is one) is the
    /// one `record` lists for it.
    fn vouched(&self, record: &PersonRecord, address: &ProtocolAddress) -> bool {
        let identity = match self.device.current_session(address) {
            Some(session) => Some(*session.remote_identity()),
            None => self.directory.identity_of(address),
        };
        identity.is_some_and(|identity| record.vouches_for(address, &identity))
    }

    /// Whether `account`, as its relay lists its devices now, is exactly what `record` lists:
    /// the same devices, each with the identity the record vouches for. A relay that adds a
    /// device, or serves other keys, makes the account not match.
    pub(super) fn matches(&self, record: &PersonRecord, account: &str) -> bool {
        let Some(listed) = record.account(account) else { return false };
        let Some(devices) = self.devices_of.get(account) else { return false };
        devices.len() == listed.devices.len() && devices.iter().all(|device| self.vouched(record, device))
    }

    /// The devices a message to `to` goes to, each with the payload it carries. Every device of
    /// `to` as its relay lists them, always; and if `to`'s own device sent a record of its person
    /// that `to` matches, every device of each other account of hers that matches too, each told
    /// which accounts got the message (her devices carry it on to the rest).
    pub(super) fn direct_targets(&self, to: &str, content: &[u8], franking: &crate::franking::Commitment) -> Vec<PendingSend> {
        let me = self.device.address();
        let mut accounts: Vec<String> = vec![to.to_owned()];
        if let Some(record) = self.device.people().person_of(to).filter(|record| self.matches(record, to)) {
            accounts.extend(record.accounts().iter().map(|account| account.user.clone()).filter(|user| user != to && self.matches(record, user)));
        }
        let mut targets = Vec::new();
        for account in &accounts {
            let others: Vec<String> = accounts.iter().filter(|other| *other != account).cloned().collect();
            let payload = Device::application_payload(content, others, &franking.key, self.agent());
            for device in self.devices_of.get(account).into_iter().flatten().filter(|device| *device != me) {
                targets.push(PendingSend::franked(device.clone(), payload.clone(), franking.commitment));
            }
        }
        targets
    }

    /// `payload` for every other device of this person's, but those of the accounts in `skip`,
    /// each vouched for by her record (a relay that serves another key for a device of hers gets
    /// nothing meant for her own devices).
    pub(super) fn to_own_devices(&self, payload: &std::sync::Arc<[u8]>, skip: &[String]) -> Vec<PendingSend> {
        let Some(person) = self.device.person() else { return Vec::new() };
        let me = self.device.address();
        person
            .record()
            .accounts()
            .iter()
            .filter(|account| !skip.contains(&account.user))
            .flat_map(|account| self.devices_of.get(&account.user).into_iter().flatten())
            .filter(|device| *device != me && self.vouched(person.record(), device))
            .map(|device| PendingSend::new(device.clone(), payload.clone()))
            .collect()
    }

    /// A transcript of what this device just sent to `to`, for every other device of this
    /// person's (those of `to`, if it is one of her accounts, had the message itself).
    pub(super) fn sync_sent(&mut self, to: &str, content: &[u8], rng: &mut (impl CryptoRng + ?Sized)) {
        if self.device.person().is_none() {
            return;
        }
        let me = self.device.address();
        let transcript = Transcript { from_user: me.name().to_owned(), from_device: me.device_id(), to: to.to_owned(), group: String::new(), application: content.to_vec() };
        let skip: Vec<String> = self.own_accounts().into_iter().filter(|account| account == to).collect();
        let pending = self.to_own_devices(&Device::transcript_payload(transcript), &skip);
        if !pending.is_empty() {
            self.stats.transcripts_sent += 1;
            self.seal_each(pending, None, rng);
        }
    }

    /// A message from `from` arrived on this device's account: if this device belongs to a
    /// person, it carries the message on to her accounts the sender did not send it to
    /// (`delivered_to`), so that every device of hers receives it, whichever of her links its
    /// sender may see. One device per account carries (the lowest device id her record lists
    /// for it), so each of her devices gets one copy.
    pub(super) fn carry_on(&mut self, from: &ProtocolAddress, group: Option<&str>, content: &[u8], delivered_to: &[String], rng: &mut (impl CryptoRng + ?Sized)) {
        let Some(person) = self.device.person() else { return };
        let me = self.device.address();
        if person.owns(from) || group.is_some() {
            return;
        }
        let carrier = person.record().account(me.name()).and_then(|account| account.devices.iter().map(|device| device.device_id).min());
        if carrier != Some(me.device_id()) {
            return;
        }
        let mut skip: Vec<String> = delivered_to.to_vec();
        skip.push(me.name().to_owned());
        if self.own_accounts().iter().all(|account| skip.contains(account)) {
            return;
        }
        let transcript = Transcript { from_user: from.name().to_owned(), from_device: from.device_id(), to: me.name().to_owned(), group: String::new(), application: content.to_vec() };
        self.stats.transcripts_sent += 1;
        self.submit(Work::Own { payload: Device::transcript_payload(transcript), skip }, rng);
    }

    /// Another person's record this device was just given by `user` (one of her accounts): passed
    /// on to this person's other devices, so that each knows who is behind the messages it is
    /// carried (not passed on again by them).
    pub(super) fn share_known_person(&mut self, person_key: &switchboard_session::IdentityKey, user: &str, rng: &mut (impl CryptoRng + ?Sized)) {
        if self.device.person().is_none() {
            return;
        }
        let Some(record) = self.device.people().person_of(user).filter(|record| record.person_key() == person_key) else { return };
        let payload = Device::known_person_payload(record, vec![user.to_owned()]);
        // To the other devices of this account too: the sender's copy may have missed one it did
        // not know of yet (the simulator's people scenario, seed 4).
        self.submit(Work::Own { payload, skip: Vec::new() }, rng);
    }

    /// A transcript from another device of this person's: shown as what it carries.
    pub(super) fn transcript_arrived(&mut self, carried_by: &ProtocolAddress, transcript: Transcript, envelope: [u8; 16]) {
        self.stats.transcripts_received += 1;
        let from = ProtocolAddress::new(transcript.from_user, transcript.from_device);
        if self.is_blocked(from.name()) {
            // Carried here by a device of hers that had not heard of the block yet.
            self.stats.blocked_dropped += 1;
            return;
        }
        let to = (!transcript.to.is_empty()).then_some(transcript.to);
        let group = (!transcript.group.is_empty()).then_some(transcript.group);
        if let Some(to) = to.as_deref().filter(|_| self.device.person().is_some_and(|person| person.owns(&from))) {
            self.wrote_to(to, false);
        }
        self.business_transcript(&from, to.as_deref());
        self.events.push_back(Event::Synced { from, to, group, carried_by: carried_by.clone(), envelope, content: transcript.application });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn refusals_of_an_answer_keep_their_cause_as_source() {
        let record = LookupFailed::Record(PersonError::BadSignature);
        let source = record.source().and_then(|source| source.downcast_ref::<PersonError>());
        assert_eq!(source, Some(&PersonError::BadSignature));

        let limit = crate::ClientError::LimitExceeded { what: "channels one device follows", limit: crate::channel::MAX_CHANNELS_FOLLOWED };
        let invalid = RequestFailed::Invalid(limit.clone());
        assert_eq!(invalid.source().and_then(|source| source.downcast_ref::<crate::ClientError>()), Some(&limit));
        assert!(RequestFailed::Disconnected.source().is_none());
    }
}
