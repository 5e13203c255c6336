//! The person this device belongs to, and the people it knows (see [`crate::person`]): what goes
//! between a person's own devices and to her contacts, and how each is judged on arrival.

use std::sync::Arc;

use rand_core::CryptoRng;
use switchboard_session::ProtocolAddress;
use switchboard_session::store::IdentityKeyStore;
use switchboard_wire::Message;
use switchboard_wire::switchboard::{KnownPerson, PairwisePayload, PersonRecord as WireRecord, Transcript, Visibility, pairwise_payload::Body};

use super::{Device, Received};
use crate::error::ClientError;
use crate::person::{Audience, People, Person, PersonError, PersonRecord};

type Result<T> = std::result::Result<T, ClientError>;

impl Device {
    /// The person this device belongs to, once it created or joined one.
    pub fn person(&self) -> Option<&Person> {
        self.person.as_ref()
    }

    /// The records of other people this device holds.
    pub fn people(&self) -> &People {
        &self.people
    }

    /// Makes this device's account the first of a new person, shown to `visibility`.
    pub fn become_person<R: CryptoRng + ?Sized>(&mut self, visibility: Visibility, rng: &mut R) -> Result<()> {
        if self.person.is_some() {
            return Err(ClientError::Person(PersonError::Malformed("this device already belongs to a person")));
        }
        let identity = self.store.identity_key_pair()?;
        self.person = Some(Person::new(&self.address, &identity, visibility, rng));
        Ok(())
    }

    /// Joins the person whose invitation another device of hers showed, listing this device (and
    /// its account, shown to `visibility`, if the account is new to her).
    pub fn join_person<R: CryptoRng + ?Sized>(&mut self, invitation: &[u8], visibility: Visibility, rng: &mut R) -> Result<()> {
        if self.person.is_some() {
            return Err(ClientError::Person(PersonError::Malformed("this device already belongs to a person")));
        }
        let mut person = Person::from_invitation(invitation)?;
        let identity = self.store.identity_key_pair()?;
        person.put_device(&self.address, &identity, visibility, rng)?;
        self.person = Some(person);
        Ok(())
    }

    /// Changes this person's record by `change` (a visibility, a revocation).
    pub fn change_person(&mut self, change: impl FnOnce(&mut Person) -> std::result::Result<(), PersonError>) -> Result<()> {
        let person = self.person.as_mut().ok_or(ClientError::Person(PersonError::Malformed("this device belongs to no person")))?;
        Ok(change(person)?)
    }

    /// A payload that gives `audience` this person's record as it may see it.
    pub fn person_payload<R: CryptoRng + ?Sized>(&self, audience: Audience<'_>, rng: &mut R) -> Option<Arc<[u8]>> {
        let view = self.person.as_ref()?.view(audience, rng);
        Some(PairwisePayload { body: Some(Body::Person(view)), ..Default::default() }.encode_to_vec().into())
    }

    /// A payload carrying `transcript` to another device of this person.
    pub fn transcript_payload(transcript: Transcript) -> Arc<[u8]> {
        PairwisePayload { body: Some(Body::Transcript(transcript)), ..Default::default() }.encode_to_vec().into()
    }

    /// A payload carrying an application's content to one device of a person, naming the other
    /// accounts of hers it also goes to (so that her device carries it on to the rest only).
    /// `franking_key` opens the commitment its envelope carries.
    pub fn application_payload(content: &[u8], delivered_to: Vec<String>, franking_key: &[u8; 32], agent: Option<&str>) -> Arc<[u8]> {
        let agent = agent.unwrap_or_default().to_owned();
        PairwisePayload { body: Some(Body::Application(content.to_vec())), delivered_to, franking_key: franking_key.to_vec(), agent, ..Default::default() }
            .encode_to_vec()
            .into()
    }

    /// A payload carrying a change of consent to another device of this person.
    pub fn consent_payload(change: switchboard_wire::switchboard::ConsentChange) -> Arc<[u8]> {
        PairwisePayload { body: Some(Body::Consent(change)), ..Default::default() }.encode_to_vec().into()
    }

    /// A change of consent from `from`, taken only from another device of this person's, and
    /// applied here whole or not at all.
    pub(super) fn on_consent(&mut self, from: &ProtocolAddress, change: switchboard_wire::switchboard::ConsentChange) -> Result<Received> {
        let own = self.person.as_ref().is_some_and(|person| self.vouched(person.record(), from));
        if !own {
            return Err(ClientError::InvalidPayload("a change of consent from a device that is not this person's"));
        }
        let named = change.accept.len() + change.block.len() + change.unblock.len();
        if named > crate::consent::MAX_CONSENT_CHANGE
            || change.accept.iter().chain(&change.block).chain(&change.unblock).any(|user| switchboard_wire::address::UserAddress::split(user).is_err())
        {
            return Err(ClientError::InvalidPayload("a change of consent naming too many users, or not users"));
        }
        self.consent.block(change.block.iter().map(String::as_str))?;
        self.consent.unblock(change.unblock.iter().map(String::as_str));
        self.consent.accept(change.accept.iter().map(String::as_str));
        Ok(Received::Consent(change))
    }

    /// Whose messages this person accepted and whom she blocked.
    pub fn consent(&self) -> &crate::consent::Consent {
        &self.consent
    }

    pub(crate) fn consent_mut(&mut self) -> &mut crate::consent::Consent {
        &mut self.consent
    }

    /// Whether `from`'s identity, as this device's session with it knows it, is the one `record`
    /// lists for it.
    fn vouched(&self, record: &PersonRecord, from: &ProtocolAddress) -> bool {
        matches!(self.store.identity(from), Ok(Some(identity)) if record.vouches_for(from, &identity))
    }

    /// A transcript from `from`: read only from a device of this same person whose identity her
    /// record vouches for, and only as what that device can know: a message it sent itself
    /// (`from_user`/`from_device` are its own), or one that arrived on its own account (`to` is
    /// its account). Groups are not carried.
    pub(super) fn on_transcript(&self, from: &ProtocolAddress, transcript: Transcript) -> Result<Received> {
        // Her own device; or another agent's device of this business account, carrying what it
        // sent itself (nothing it says it received).
        let own = self.person.as_ref().is_some_and(|person| self.vouched(person.record(), from));
        let agent = from.name() == self.address.name()
            && self.business.as_ref().is_some_and(|business| business.agent_name(from.device_id()).is_some())
            && transcript.from_user == from.name()
            && transcript.from_device == from.device_id();
        if !own && !agent {
            return Err(ClientError::InvalidPayload("a transcript from a device that is not this person's"));
        }
        if transcript.application.is_empty() || switchboard_wire::address::UserAddress::split(&transcript.from_user).is_err() {
            return Err(ClientError::InvalidPayload("a transcript without content or sender"));
        }
        let sent_by_carrier = transcript.from_user == from.name() && transcript.from_device == from.device_id();
        let received_by_carrier = transcript.to == from.name();
        if !(sent_by_carrier || received_by_carrier) || !transcript.group.is_empty() {
            return Err(ClientError::InvalidPayload("a transcript of a message its carrier neither sent nor received"));
        }
        Ok(Received::Transcript(transcript))
    }

    /// A person's record from `from`. Her own — a newer version another device of hers made — is
    /// adopted only from a device the record already held vouches for (a device she unlinked
    /// cannot put itself back); if the new version no longer lists this device, this device
    /// belongs to her no more. Another person's is kept if `from` is one of the devices it lists,
    /// with the identity this device's session knows, and it names no `shown_to`.
    pub(super) fn on_person(&mut self, from: &ProtocolAddress, record: WireRecord) -> Result<Received> {
        let record = PersonRecord::verify(record)?;
        if let Some(person) = self.person.as_ref()
            && record.person_key() == person.person_key()
        {
            let may = matches!(self.store.identity(from), Ok(Some(identity)) if person.may_update(&record, from, &identity));
            if !may {
                return Err(ClientError::InvalidPayload("this person's record from a device that may not change it"));
            }
            let changed = self.person.as_mut().expect("checked above").adopt(record)?;
            if !self.person.as_ref().expect("checked above").owns(&self.address) {
                self.person = None;
                self.contacts.clear();
            }
            return Ok(Received::OwnRecord { changed });
        }
        if !self.vouched(&record, from) {
            return Err(ClientError::InvalidPayload("a person's record from a device it does not list"));
        }
        let person_key = *record.person_key();
        let changed = self.people.accept(record, from.name())?;
        Ok(Received::PersonRecord { person_key, changed, from_own: false })
    }

    /// Another person's record, passed on by a device of this device's own person (which was
    /// given it by the accounts named): taken as if those accounts had sent it here, since every
    /// device of hers is hers to trust.
    pub(super) fn on_known_person(&mut self, from: &ProtocolAddress, known: KnownPerson) -> Result<Received> {
        let own = self.person.as_ref().is_some_and(|person| self.vouched(person.record(), from));
        if !own {
            return Err(ClientError::InvalidPayload("another person's record passed on by a device that is not this person's"));
        }
        let record = PersonRecord::verify(known.record.ok_or(PersonError::Malformed("no record"))?)?;
        if known.confirmed_by.is_empty() || known.confirmed_by.len() > crate::person::MAX_LINKED_ACCOUNTS {
            return Err(ClientError::InvalidPayload("a record passed on names one to eight accounts that sent it"));
        }
        if self.person.as_ref().is_some_and(|person| person.person_key() == record.person_key()) {
            return Err(ClientError::InvalidPayload("this person's own record passed on as another's"));
        }
        if known.confirmed_by.iter().any(|user| record.account(user).is_none()) {
            return Err(ClientError::InvalidPayload("a record passed on as sent by an account it does not list"));
        }
        let person_key = *record.person_key();
        let mut changed = false;
        for user in &known.confirmed_by {
            changed |= self.people.accept(record.clone(), user)?;
        }
        Ok(Received::PersonRecord { person_key, changed, from_own: true })
    }

    /// A payload passing `record` (another person's, sent by `confirmed_by`) on to this
    /// person's other devices.
    pub fn known_person_payload(record: &PersonRecord, confirmed_by: Vec<String>) -> Arc<[u8]> {
        let known = KnownPerson { record: Some(record.to_wire()), confirmed_by };
        PairwisePayload { body: Some(Body::KnownPerson(known)), ..Default::default() }.encode_to_vec().into()
    }

    /// Keeps a record looked up for `user` at a relay, once the caller checked that `user`'s
    /// devices, as its relay lists them, are the ones it lists (see
    /// [`crate::person::People::accept`]). Not this device's own person's.
    pub fn accept_person_record(&mut self, record: PersonRecord, user: &str) -> std::result::Result<bool, PersonError> {
        if self.person.as_ref().is_some_and(|person| person.person_key() == record.person_key()) {
            return Ok(false);
        }
        self.people.accept(record, user)
    }

    /// Remembers `user` as a contact of this person's (given her record, told of its changes);
    /// false past [`super::MAX_CONTACTS`].
    pub(crate) fn add_contact(&mut self, user: &str) -> bool {
        if self.contacts.contains(user) {
            return true;
        }
        if self.contacts.len() >= super::MAX_CONTACTS {
            return false;
        }
        self.contacts.insert(user.to_owned())
    }

    /// This person's contacts (see `add_contact`).
    pub fn contacts(&self) -> impl Iterator<Item = &str> {
        self.contacts.iter().map(String::as_str)
    }
}
