//! One person on several apps, as the endpoint carries it out (see [`crate::person`] and
//! `docs/PEOPLE.md`): her record goes to her other devices and to her contacts after every
//! change; a message to a linked person goes to every device of every account of hers its sender
//! may see; every message she sends, and every one she receives on an account its sender could
//! not see linked, is carried to her other devices as a transcript.

use rand_core::CryptoRng;
use std::time::Duration;

use switchboard_session::ProtocolAddress;
use switchboard_wire::switchboard::{Transcript, Visibility};
use zeroize::Zeroizing;

use super::work::Work;
use super::{CommandError, Endpoint, Event};
use crate::device::{Device, PendingSend};
use crate::person::{Audience, Person, PersonRecord};

/// Contacts remembered as given this person's current record (see `introduce`); past it, no
/// more are introduced until the record changes.
pub const MAX_INTRODUCED: usize = 100_000;

impl Endpoint {
    /// Makes this device's account the first of a new person ([`crate::person::Person`]).
    pub fn become_person(&mut self, now: Duration, visibility: Visibility, rng: &mut (impl CryptoRng + ?Sized)) -> Result<(), CommandError> {
        self.now = self.now.max(now);
        self.device.become_person(visibility, rng)?;
        self.person_changed(rng);
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
        Ok(())
    }

    /// Sets who may see that `user` (an account of this person's) is hers.
    pub fn set_link_visibility(&mut self, now: Duration, user: &str, visibility: Visibility, shown_to: Vec<String>, rng: &mut (impl CryptoRng + ?Sized)) -> Result<(), CommandError> {
        self.now = self.now.max(now);
        self.device.change_person(|person| person.set_visibility(user, visibility, shown_to, &mut *rng))?;
        self.person_changed(rng);
        Ok(())
    }

    /// Revokes the link of `user`: her other devices and her contacts get a record without it.
    pub fn unlink(&mut self, now: Duration, user: &str, rng: &mut (impl CryptoRng + ?Sized)) -> Result<(), CommandError> {
        self.now = self.now.max(now);
        self.device.change_person(|person| person.unlink(user, &mut *rng))?;
        self.person_changed(rng);
        Ok(())
    }

    /// The person key of `user`'s person, as this device knows it, and the safety number of the
    /// two people: one number for every pair of their accounts.
    pub fn person_safety_number(&self, user: &str) -> Option<String> {
        let mine = self.device.person()?.person_key();
        let theirs = self.device.people().person_of(user)?.person_key();
        Some(crate::person::person_safety_number(mine, theirs))
    }

    /// This person's record changed: her other devices get it whole, each contact the view it may
    /// see.
    fn person_changed(&mut self, rng: &mut (impl CryptoRng + ?Sized)) {
        self.changed_device();
        self.introduced.clear();
        self.share_person(None, rng);
        self.release();
    }

    /// Sends this person's record: to `only` (a contact) or to everyone it concerns.
    pub(super) fn share_person(&mut self, only: Option<&str>, rng: &mut (impl CryptoRng + ?Sized)) {
        let Some(person) = self.device.person() else { return };
        let me = self.device.address().clone();
        let mut pending: Vec<PendingSend> = Vec::new();
        if only.is_none()
            && let Some(payload) = self.device.person_payload(Audience::Own, rng)
        {
            pending.extend(person.record().devices().filter(|device| *device != me).map(|device| PendingSend::new(device, payload.clone())));
        }
        let person = self.device.person().expect("checked above");
        let mut contacts: Vec<String> = match only {
            Some(user) => vec![user.to_owned()],
            None => self.device.session_peers().map(|peer| peer.name().to_owned()).filter(|user| person.record().account(user).is_none()).collect(),
        };
        contacts.sort();
        contacts.dedup();
        for contact in contacts {
            let Some(payload) = self.device.person_payload(Audience::Contact(&contact), rng) else { continue };
            let devices: Vec<ProtocolAddress> = self.device.session_peers().filter(|peer| peer.name() == contact).cloned().collect();
            pending.extend(devices.into_iter().map(|device| PendingSend::new(device, payload.clone())));
        }
        if !pending.is_empty() {
            self.submit(Work::Seal(pending), rng);
        }
    }

    /// Gives `user` this person's record (the view it may see) the first time this device hears
    /// from it or writes to it since the record last changed (or since the device started: a
    /// record given twice is taken once).
    pub(super) fn introduce(&mut self, user: &str, rng: &mut (impl CryptoRng + ?Sized)) {
        let Some(person) = self.device.person() else { return };
        if person.record().account(user).is_some() || self.introduced.len() >= MAX_INTRODUCED || !self.introduced.insert(user.to_owned()) {
            return;
        }
        self.share_person(Some(user), rng);
    }

    /// Like [`Self::introduce`], for a user this device is writing to: the record (the view
    /// `user` may see) goes to those of `devices` (the ones the message went to, on any account
    /// of the recipient's) whose account was not given it yet.
    pub(super) fn introduce_to_devices(&mut self, user: &str, devices: Vec<ProtocolAddress>, rng: &mut (impl CryptoRng + ?Sized)) {
        let Some(person) = self.device.person() else { return };
        let fresh: Vec<ProtocolAddress> = devices
            .into_iter()
            .filter(|device| person.record().account(device.name()).is_none() && !self.introduced.contains(device.name()))
            .collect();
        if fresh.is_empty() || self.introduced.len() >= MAX_INTRODUCED {
            return;
        }
        let Some(payload) = self.device.person_payload(Audience::Contact(user), rng) else { return };
        self.introduced.extend(fresh.iter().map(|device| device.name().to_owned()));
        let pending: Vec<PendingSend> = fresh.into_iter().map(|device| PendingSend::new(device, payload.clone())).collect();
        self.seal_each(pending, None, rng);
    }

    /// The users whose bundles a message to `to` needs: every account of `to`'s person this
    /// device knows of (or `to` alone), and this device's own other accounts, for the transcript.
    pub(super) fn direct_users(&self, to: &str) -> Vec<String> {
        let mut users: Vec<String> = match self.device.people().person_of(to) {
            Some(record) => record.accounts().iter().map(|account| account.user.clone()).collect(),
            None => vec![to.to_owned()],
        };
        if let Some(person) = self.device.person() {
            users.extend(person.record().accounts().iter().map(|account| account.user.clone()));
        }
        users
    }

    /// Whether `address`'s identity (its session's, or its bundle's before there is one) is the
    /// one `record` lists for it: a relay that hands out other keys for a device of hers, or
    /// devices she did not sign, gets nothing sent to them as hers.
    fn vouched(&self, record: &PersonRecord, address: &ProtocolAddress) -> bool {
        let identity = match self.device.current_session(address) {
            Some(session) => Some(*session.remote_identity()),
            None => self.directory.identity_of(address),
        };
        identity.is_some_and(|identity| record.vouches_for(address, &identity))
    }

    /// The devices a message to `to` goes to, each with the payload it carries: for a linked
    /// person, every device of each account of hers this device may see (vouched for by her
    /// record), each told which other accounts it went to; for anyone else, every device of `to`.
    pub(super) fn direct_targets(&self, to: &str, content: &[u8]) -> Vec<PendingSend> {
        let me = self.device.address();
        let Some(record) = self.device.people().person_of(to) else {
            let devices = self.devices_of.get(to).cloned().unwrap_or_default();
            return devices
                .into_iter()
                .filter(|device| device != me)
                .map(|device| PendingSend::new(device, Device::application_payload(content, Vec::new())))
                .collect();
        };
        let accounts: Vec<String> = record.accounts().iter().map(|account| account.user.clone()).collect();
        let mut targets = Vec::new();
        for account in &accounts {
            let others: Vec<String> = accounts.iter().filter(|other| *other != account).cloned().collect();
            let payload = Device::application_payload(content, others);
            for device in self.devices_of.get(account).into_iter().flatten() {
                if device != me && self.vouched(record, device) {
                    targets.push(PendingSend::new(device.clone(), payload.clone()));
                }
            }
        }
        targets
    }

    /// Transcripts of what this device just sent (or received from someone who could not see
    /// every account of hers) for this person's other devices: `skip` names the accounts the
    /// message reached directly.
    pub(super) fn transcripts(&self, transcript: Transcript, skip: &[String]) -> Vec<PendingSend> {
        let Some(person) = self.device.person() else { return Vec::new() };
        let me = self.device.address();
        let payload = Device::transcript_payload(transcript);
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

    /// A message from `from` arrived on this device's account: if this device belongs to a person,
    /// it carries the message on to her accounts the sender did not send it to (`delivered_to`),
    /// so that every device of hers receives it, whichever of her links its sender may see.
    pub(super) fn carry_on(&mut self, from: &ProtocolAddress, group: Option<&str>, content: &[u8], delivered_to: &[String], rng: &mut (impl CryptoRng + ?Sized)) {
        let Some(person) = self.device.person() else { return };
        if person.owns(from) || group.is_some() {
            return;
        }
        let mut skip: Vec<String> = delivered_to.to_vec();
        skip.push(self.device.address().name().to_owned());
        let transcript = Transcript {
            from_user: from.name().to_owned(),
            from_device: from.device_id(),
            to: self.device.address().name().to_owned(),
            group: String::new(),
            application: content.to_vec(),
        };
        let accounts: Vec<String> = person.record().accounts().iter().map(|account| account.user.clone()).filter(|user| !skip.contains(user)).collect();
        if accounts.is_empty() {
            return;
        }
        self.stats.transcripts_sent += 1;
        self.submit(Work::Transcript { transcript, skip }, rng);
    }

    /// A transcript from another device of this person's: shown as what it carries.
    pub(super) fn transcript_arrived(&mut self, carried_by: &ProtocolAddress, transcript: Transcript, envelope: [u8; 16]) {
        self.stats.transcripts_received += 1;
        let from = ProtocolAddress::new(transcript.from_user, transcript.from_device);
        let to = (!transcript.to.is_empty()).then_some(transcript.to);
        let group = (!transcript.group.is_empty()).then_some(transcript.group);
        self.events.push_back(Event::Synced { from, to, group, carried_by: carried_by.clone(), envelope, content: transcript.application });
    }
}
