//! Published person records: each device of a linked person publishes, for its own user, the
//! public view of her record (see `switchboard_client_core::person`); anyone may ask for the
//! record of one exact address, here or through federation. The relay checks only that a record
//! names the user it is published for and fits its limits: the signatures are for the devices
//! that read it to check, and a relay that changes a record gets it refused there.

use switchboard_wire::Message;
use switchboard_wire::switchboard::{
    ErrorCode, FederationFrame, LookupPerson, PersonFound, PublishPerson, ServerFrame, federation_frame, server_frame,
};

use super::rates::Requester;
use super::{Action, ConnId, Deferred, RelayCore, app_of, failure, link_failure};
use crate::state::{DeviceKey, Mutation};

/// Largest published record (encoded): a public view of a few accounts with their devices.
pub const MAX_PUBLISHED_PERSON_LEN: usize = 32 * 1024;
/// Bytes of published records one relay keeps in all.
pub const MAX_PUBLISHED_PEOPLE_BYTES: usize = 256 * 1024 * 1024;

impl RelayCore {
    /// A device publishes (or withdraws) its user's record: answered with `Done` once durable.
    pub(super) fn publish_person(&mut self, conn: ConnId, request_id: u64, device: &DeviceKey, publish: PublishPerson) -> Result<(), (ErrorCode, &'static str)> {
        let user = &device.0;
        // Counted with bundle fetches: each publish is a durable write.
        self.rates.fetch(&Requester::Local(device.clone()), self.ticks)?;
        let held = self.state.people.get(user);
        let record = match publish.record {
            None => None,
            Some(record) => {
                if !record.accounts.iter().any(|account| account.user == *user) {
                    return Err((ErrorCode::Forbidden, "a record is published for a user it lists"));
                }
                let bytes = record.encode_to_vec();
                if bytes.len() > MAX_PUBLISHED_PERSON_LEN {
                    return Err((ErrorCode::TooLarge, "a published record is at most 32 KiB"));
                }
                // Never an older version over a newer one of the same person (a device that has
                // not caught up): a first-time reader would take it.
                let older = held
                    .and_then(|held| switchboard_wire::decode::<switchboard_wire::switchboard::PersonRecord>(held, MAX_PUBLISHED_PERSON_LEN).ok())
                    .is_some_and(|held| held.person_key == record.person_key && held.version > record.version);
                if older {
                    return Err((ErrorCode::Forbidden, "a newer version of this record is published"));
                }
                let held_len = held.map_or(0, Vec::len);
                if self.state.people_bytes - held_len + bytes.len() > MAX_PUBLISHED_PEOPLE_BYTES {
                    return Err((ErrorCode::MailboxFull, "this relay keeps no more published records"));
                }
                Some(bytes)
            }
        };
        self.mutate(Mutation::PutPerson { user: user.clone(), record });
        self.deferred.push(Deferred::Client(conn, super::client::done(request_id)));
        Ok(())
    }

    /// A device asks for the record published for one address: answered here, or by the app
    /// the address is on.
    pub(super) fn lookup_person(&mut self, conn: ConnId, request_id: u64, device: &DeviceKey, mut lookup: LookupPerson) -> Vec<Action> {
        let Some(app) = app_of(&lookup.user).map(str::to_owned) else {
            return vec![failure(conn, request_id, ErrorCode::Malformed, "a user is name@app")];
        };
        if let Err((code, detail)) = self.count_fetch(conn, &Requester::Local(device.clone()), &app) {
            return vec![failure(conn, request_id, code, detail)];
        }
        if app == self.app {
            return match self.published(&lookup.user) {
                Some(found) => {
                    // After the batch that holds what it answers is committed, as every answer.
                    self.deferred.push(Deferred::Client(conn, ServerFrame { request_id, body: Some(server_frame::Body::PersonFound(found)) }));
                    Vec::new()
                }
                None => vec![failure(conn, request_id, ErrorCode::UnknownRecipient, "no record is published for that address")],
            };
        }
        let subject = lookup.user.clone();
        lookup.requester = Some(switchboard_wire::switchboard::DeviceAddress { name: device.0.clone(), device_id: device.1 });
        self.ask_app(conn, request_id, app, subject, federation_frame::Body::LookupPerson(lookup))
    }

    /// Another app's relay asks on behalf of one of its devices.
    pub(super) fn lookup_person_for(&mut self, conn: ConnId, app: &str, request_id: u64, lookup: LookupPerson) -> Vec<Action> {
        let refuse = |code, detail| vec![Action::ToLink { conn, frame: link_failure(request_id, code, detail) }];
        if app_of(&lookup.user) != Some(self.app.as_str()) {
            return refuse(ErrorCode::UnknownRecipient, "the user is not on this app");
        }
        let device = lookup.requester.filter(|device| app_of(&device.name) == Some(app)).map(|device| (device.name, device.device_id));
        if let Err((code, detail)) = self.rates.fetch(&Requester::Remote { app: app.to_owned(), device }, self.ticks) {
            return refuse(code, detail);
        }
        match self.published(&lookup.user) {
            Some(found) => {
                self.deferred.push(Deferred::Link(conn, FederationFrame { request_id, body: Some(federation_frame::Body::PersonFound(found)) }));
                Vec::new()
            }
            None => refuse(ErrorCode::UnknownRecipient, "no record is published for that address"),
        }
    }

    fn published(&self, user: &str) -> Option<PersonFound> {
        let bytes = self.state.people.get(user)?;
        let record = switchboard_wire::decode(bytes, MAX_PUBLISHED_PERSON_LEN).ok()?;
        Some(PersonFound { user: user.to_owned(), record: Some(record) })
    }
}
