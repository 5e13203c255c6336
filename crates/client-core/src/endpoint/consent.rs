//! Consent, blocking and abuse reports, as the user commands them: a message from someone she
//! has no conversation with is a request ([`Event::Message`]'s `request`); accepting, blocking
//! and unblocking name a person (every account this device knows is hers), reach every other
//! device of this person, and each device tells its own relay ([`SetConsent`]); a report sends a
//! received message's evidence to this device's relay ([`Endpoint::report`]). See
//! docs/CONSENT.md.

use std::time::Duration;

use rand_core::CryptoRng;
use switchboard_wire::switchboard::{ConsentChange, SetConsent, client_frame::Body};

use super::work::Work;
use super::{CommandError, Endpoint, Event, Request, RequestFailed};
use crate::device::Device;
use crate::franking::Evidence;

impl Endpoint {
    /// Accepts the person behind `user`: her messages, on any account this device knows is hers
    /// (`accounts_of`), are no longer requests, on every device of this person, and no
    /// longer held to the stranger allowance at this person's relays.
    pub fn accept(&mut self, now: Duration, user: &str, rng: &mut (impl CryptoRng + ?Sized)) -> Result<(), CommandError> {
        self.now = self.now.max(now);
        switchboard_wire::address::UserAddress::split(user)?;
        let accounts = self.accounts_of(user);
        let accepted = self.device.consent_mut().accept(accounts.iter().map(String::as_str));
        self.consent_changed(ConsentChange { accept: accepted, ..Default::default() }, rng);
        Ok(())
    }

    /// Blocks the person behind `user`: every account this device knows is hers, and then those
    /// her record names whose relays, asked now, serve exactly what it lists. Nothing she sends
    /// from them is shown on any device of this person from now on, and this person's relays drop
    /// it (answering her as if they had stored it).
    pub fn block(&mut self, now: Duration, user: &str, rng: &mut (impl CryptoRng + ?Sized)) -> Result<(), CommandError> {
        self.now = self.now.max(now);
        switchboard_wire::address::UserAddress::split(user)?;
        let accounts: Vec<String> = self.accounts_of(user).into_iter().filter(|account| !self.own_accounts().contains(account)).collect();
        let blocked = self.device.consent_mut().block(accounts.iter().map(String::as_str))?;
        self.consent_changed(ConsentChange { block: blocked, ..Default::default() }, rng);
        if !self.claimed_accounts(user).is_empty() {
            self.submit(Work::ExtendBlock { user: user.to_owned() }, rng);
            self.release();
        }
        Ok(())
    }

    /// The accounts the record of the person behind `user` names that are not confirmed hers.
    pub(super) fn claimed_accounts(&self, user: &str) -> Vec<String> {
        let Some(record) = self.device.people().person_of(user) else { return Vec::new() };
        let confirmed = self.accounts_of(user);
        record.accounts().iter().map(|account| account.user.clone()).filter(|account| !confirmed.contains(account)).collect()
    }

    /// Runs a [`Work::ExtendBlock`]: the devices of the accounts her record names are fetched
    /// now; those whose relay serves exactly what the record lists are hers, and blocked too.
    pub(super) fn extend_block(&mut self, user: &str, rng: &mut (impl CryptoRng + ?Sized)) {
        if !self.is_blocked(user) {
            return; // unblocked meanwhile
        }
        let accounts = self.accounts_of(user);
        let Ok(blocked) = self.device.consent_mut().block(accounts.iter().map(String::as_str)) else { return };
        self.consent_changed(ConsentChange { block: blocked, ..Default::default() }, rng);
    }

    /// Unblocks the person behind `user` (every account this device knows is hers).
    pub fn unblock(&mut self, now: Duration, user: &str, rng: &mut (impl CryptoRng + ?Sized)) -> Result<(), CommandError> {
        self.now = self.now.max(now);
        switchboard_wire::address::UserAddress::split(user)?;
        let accounts = self.accounts_of(user);
        let unblocked = self.device.consent_mut().unblock(accounts.iter().map(String::as_str));
        self.consent_changed(ConsentChange { unblock: unblocked, ..Default::default() }, rng);
        Ok(())
    }

    /// Reports a received message to this device's app: `evidence` as [`Event::Message`] gave
    /// it, and the message's `content`. The answer comes as [`Event::ReportAnswered`] with the
    /// returned request number: verified (the sender's app stamped exactly this), or refused.
    pub fn report(&mut self, now: Duration, evidence: &Evidence, content: Vec<u8>) -> u64 {
        self.now = self.now.max(now);
        let request = self.next_handle();
        if self.is_online() {
            self.request(Request::Report(request), Body::Report(evidence.report(content)));
        } else {
            self.events.push_back(Event::ReportAnswered { request, result: Err(RequestFailed::Disconnected) });
        }
        self.release();
        request
    }

    /// This person wrote to `user` (from this device, or from another of hers): the person behind
    /// `user` is accepted, and this device's relay hears of it if the message went from another.
    pub(super) fn wrote_to(&mut self, user: &str, from_here: bool) {
        let accounts = self.accounts_of(user);
        let accepted = self.device.consent_mut().accept(accounts.iter().map(String::as_str));
        if accepted.is_empty() {
            return;
        }
        self.changed_device();
        if !from_here {
            self.tell_relay(&ConsentChange { accept: accepted, ..Default::default() });
        }
    }

    /// Whether a message from `user` is a request: not from this person, nor from anyone whose
    /// messages she accepted (on any account of theirs this device knows).
    pub(super) fn is_request(&self, user: &str) -> bool {
        // Every message asks this: the person's other accounts only when the address itself says
        // nothing.
        let consent = self.device.consent();
        if user == self.address().name() || consent.is_accepted(user) || self.own_accounts().iter().any(|own| own == user) {
            return false;
        }
        !self.accounts_of(user).iter().any(|account| consent.is_accepted(account))
    }

    /// Whether this person blocked `user` (or another account of the person behind it, as this
    /// device knows her now): nothing from `user` is shown.
    pub fn is_blocked(&self, user: &str) -> bool {
        let consent = self.device.consent();
        if consent.blocked().next().is_none() {
            return false;
        }
        consent.is_blocked(user) || self.accounts_of(user).iter().any(|account| consent.is_blocked(account))
    }

    /// `user` and every other account of the person behind it, as this device knows her: those
    /// her record lists that are confirmed hers (a device of the account sent the record, or its
    /// relay serves exactly the devices the record lists). Anyone can sign a record naming any
    /// account: an account that is only named is not hers, and blocking her must not block it.
    pub(super) fn accounts_of(&self, user: &str) -> Vec<String> {
        let mut accounts = vec![user.to_owned()];
        let people = self.device.people();
        if let Some(record) = people.person_of(user) {
            let hers = |account: &str| people.person_of(account).is_some_and(|other| other.person_key() == record.person_key()) || self.matches(record, account);
            accounts.extend(record.accounts().iter().map(|account| account.user.clone()).filter(|account| account != user && hers(account)));
        }
        accounts
    }

    /// This person's `change` (made here): this device's relay hears of it, and so do her other
    /// devices.
    fn consent_changed(&mut self, change: ConsentChange, rng: &mut (impl CryptoRng + ?Sized)) {
        if change.accept.is_empty() && change.block.is_empty() && change.unblock.is_empty() {
            return;
        }
        self.changed_device();
        self.tell_relay(&change);
        if self.device.person().is_some() {
            self.submit(Work::Own { payload: Device::consent_payload(change), skip: Vec::new() }, rng);
        }
        self.release();
    }

    /// Tells this device's relay of a change of consent (durably: from the outbox), in frames of
    /// at most [`crate::consent::MAX_CONSENT_CHANGE`] addresses.
    pub(super) fn tell_relay(&mut self, change: &ConsentChange) {
        let limit = crate::consent::MAX_CONSENT_CHANGE;
        for contacts in change.accept.chunks(limit) {
            self.queue(Body::SetConsent(SetConsent { contacts: contacts.to_vec(), ..Default::default() }));
        }
        for block in change.block.chunks(limit) {
            self.queue(Body::SetConsent(SetConsent { block: block.to_vec(), ..Default::default() }));
        }
        for unblock in change.unblock.chunks(limit) {
            self.queue(Body::SetConsent(SetConsent { unblock: unblock.to_vec(), ..Default::default() }));
        }
    }
}
