//! Messages to every device of one user at once (`SendToUser`): the user's relay takes them only
//! if they name exactly the devices the user has now; if not, it says so (`DevicesChanged`), and
//! the message is sealed again for the devices the relay lists now — so a device this one did not
//! know of yet gets the message too, and none gets it twice (nothing of a refused send was kept).

use rand_core::CryptoRng;
use std::sync::Arc;

use switchboard_session::ProtocolAddress;
use switchboard_wire::switchboard::{SendToUser, client_frame::Body};

use super::work::Work;
use super::{DropReason, Endpoint};
use crate::device::PendingSend;

/// Times one message to one user is sealed again after its relay said the devices changed; then
/// it is given up, as [`DropReason::DevicesChanged`].
pub const MAX_RESENDS: u32 = 3;

/// What it takes to seal a SendToUser again: the payload every device of the user gets, and how
/// often it was sent already.
#[derive(Clone)]
pub(super) struct UserSend {
    pub(super) user: String,
    pub(super) payload: Arc<[u8]>,
    pub(super) attempts: u32,
}

impl Endpoint {
    /// Seals `pending` (every device of each user it names; the devices of one user share one
    /// payload) and queues one SendToUser per user, remembering what to seal again if the user's
    /// relay answers that the devices changed.
    pub(super) fn send_to_users(&mut self, pending: Vec<PendingSend>, attempts: u32, rng: &mut (impl CryptoRng + ?Sized)) {
        let mut by_user: Vec<(String, Vec<PendingSend>)> = Vec::new();
        for send in pending {
            match by_user.iter_mut().find(|(user, _)| user == send.to.name()) {
                Some((_, sends)) => sends.push(send),
                None => by_user.push((send.to.name().to_owned(), vec![send])),
            }
        }
        for (user, sends) in by_user {
            let payload = sends[0].payload.clone();
            let sealing = self.device.seal_each(sends, &mut self.directory, rng);
            self.changed_device();
            for (_, error) in sealing.failed {
                // Its relay will say the device is missing, and it is sealed again after a fresh
                // fetch (at most MAX_RESENDS times).
                self.devices_of.remove(&user);
                self.drop_send(DropReason::CouldNotSeal(error));
            }
            if sealing.sealed.is_empty() {
                self.drop_send(DropReason::DevicesChanged { user });
                continue;
            }
            let envelopes = sealing.sealed.into_iter().map(|message| self.envelope(message, "", rng)).collect();
            if let Some(seq) = self.queue(Body::SendToUser(SendToUser { user: user.clone(), envelopes })) {
                self.user_sends.insert(seq, UserSend { user, payload, attempts });
            }
        }
    }

    /// `user`'s relay answered that the devices a SendToUser named are not the user's now:
    /// fetch them again and seal the message for those it lists.
    pub(super) fn devices_changed(&mut self, user: String, resend: Option<UserSend>, rng: &mut (impl CryptoRng + ?Sized)) {
        self.devices_of.remove(&user);
        match resend {
            Some(resend) if resend.attempts < MAX_RESENDS && resend.user == user => {
                self.submit(Work::Resend { user, payload: resend.payload, attempts: resend.attempts + 1 }, rng);
            }
            _ => self.drop_send(DropReason::DevicesChanged { user }),
        }
    }

    /// A SendToUser that the user's app could not take now (its relay out of reach): its
    /// envelopes go as single `Send`s instead, which this device's relay keeps and forwards when
    /// it can — a message is not held on the sender's device through another app's outage. The
    /// device check is skipped for it: a device of the user this one did not know of misses it
    /// (a linked person's own devices carry it on). The same envelope ids: if the first attempt
    /// did reach the user's relay after all, it keeps one copy.
    pub(super) fn store_and_forward(&mut self, seq: u64) {
        let Some(Body::SendToUser(send)) = self.outbox.get(seq).cloned() else { return };
        self.outbox_done(seq);
        for envelope in send.envelopes {
            self.queue(Body::Send(envelope));
        }
    }

    /// The devices of `user` as its relay listed them last, but this one.
    pub(super) fn user_devices(&self, user: &str) -> Vec<ProtocolAddress> {
        let me = self.device.address();
        self.devices_of.get(user).into_iter().flatten().filter(|device| *device != me).cloned().collect()
    }
}
