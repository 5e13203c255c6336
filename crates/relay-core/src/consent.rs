//! What a user takes from others, as its relay enforces it ([`SetConsent`]): contacts it accepted
//! (no longer held to the stranger allowance) and users it blocked. An envelope from a blocked
//! user is dropped where it would have been stored, and its sender is answered as if it had
//! been: a blocked sender learns nothing from the relay. The relay learns the addresses named
//! and nothing else — which of them are one person only the devices know.

use switchboard_wire::switchboard::{ErrorCode, SetConsent};

use super::{Deferred, MAX_BLOCKED_PER_USER, MAX_CONSENT_CHANGES, RelayCore, app_of};
use crate::state::{DeviceKey, Mutation};

type Refusal = (ErrorCode, &'static str);

impl RelayCore {
    /// A device sets what its user takes from others; answered once durable.
    pub(super) fn set_consent(&mut self, conn: super::ConnId, request_id: u64, device: &DeviceKey, consent: SetConsent) -> Result<(), Refusal> {
        let named = consent.contacts.len() + consent.block.len() + consent.unblock.len();
        if named == 0 || named > MAX_CONSENT_CHANGES {
            return Err((ErrorCode::Malformed, "one to 256 addresses"));
        }
        if consent.contacts.iter().chain(&consent.block).chain(&consent.unblock).any(|user| app_of(user).is_none()) {
            return Err((ErrorCode::Malformed, "an address is name@app"));
        }
        self.count_fetch(conn, &super::rates::Requester::Local(device.clone()), &self.app.clone())?;
        let user = device.0.clone();
        let blocked = self.state.blocked.get(&user).map_or(0, |list| list.len());
        let new = consent.block.iter().filter(|other| !self.is_blocked(&user, other)).count();
        if blocked + new > MAX_BLOCKED_PER_USER {
            return Err((ErrorCode::TooLarge, "over 10,000 blocked users"));
        }
        self.note_contacts(&user, consent.contacts.iter().map(String::as_str));
        for other in consent.unblock {
            if self.is_blocked(&user, &other) {
                self.mutate(Mutation::SetBlocked { user: user.clone(), blocked: other, on: false });
            }
        }
        for other in consent.block {
            if other != user && !self.is_blocked(&user, &other) {
                self.mutate(Mutation::SetBlocked { user: user.clone(), blocked: other, on: true });
            }
        }
        self.deferred.push(Deferred::Client(conn, super::client::done(request_id)));
        Ok(())
    }

    /// Whether `user` (of this app) blocked `sender` (a user).
    pub(super) fn is_blocked(&self, user: &str, sender: &str) -> bool {
        self.state.blocked.get(user).is_some_and(|blocked| blocked.contains(sender))
    }
}
