//! Messages to every device of one user at once (`SendToUser`): the user's relay takes them only
//! if they name exactly the devices the user has now; if not, it says so (`DevicesChanged`), and
//! the message is sealed again for the devices the relay lists now — so a device this one did not
//! know of yet gets the message too, and none gets it twice (nothing of a refused send was kept).

use rand_core::CryptoRng;
use std::sync::Arc;

use switchboard_session::ProtocolAddress;
use switchboard_wire::switchboard::{DevicesChanged, Envelope, SendToUser, client_frame::Body};

use super::work::Work;
use super::{DropReason, Endpoint};
use crate::device::PendingSend;

/// Times one message to one user is sealed again after its relay said the devices changed; then
/// what can go goes unchecked, one envelope at a time, and the rest is given up as
/// [`DropReason::DevicesChanged`].
pub const MAX_RESENDS: u32 = 3;
/// Largest SendToUser sent as one: a relay must be able to forward it in one frame (with room
/// for the federation frame's own fields); a larger one goes one envelope at a time.
pub const MAX_USER_SEND_LEN: usize = switchboard_wire::frame::MAX_FRAME_LEN - 1024;

/// What it takes to seal a SendToUser again: the payload every device of the user gets, and how
/// often it was sent already.
#[derive(Clone)]
pub(super) struct UserSend {
    pub(super) user: String,
    pub(super) payload: Arc<[u8]>,
    pub(super) commitment: Option<[u8; 32]>,
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
            let (payload, commitment) = (sends[0].payload.clone(), sends[0].commitment);
            let envelopes = self.seal_for_user(&user, sends, rng);
            self.queue_user_send(user, envelopes, UserSend { user: String::new(), payload, commitment, attempts });
        }
    }

    /// Seals `sends` (all for `user`) into envelopes; a device that cannot be sealed for is
    /// reported, and `user`'s devices are fetched again next time (its relay will say it is
    /// missing, and it is tried again, at most [`MAX_RESENDS`] times).
    fn seal_for_user(&mut self, user: &str, sends: Vec<PendingSend>, rng: &mut (impl CryptoRng + ?Sized)) -> Vec<Envelope> {
        let sealing = self.device.seal_each(sends, &mut self.directory, rng);
        self.changed_device();
        for (_, error) in sealing.failed {
            self.devices_of.remove(user);
            self.drop_send(DropReason::CouldNotSeal(error));
        }
        sealing.sealed.into_iter().map(|message| self.envelope(message, "", rng)).collect()
    }

    /// Queues `envelopes` as one SendToUser — or, if that would not fit in a frame (a large
    /// message to a user with many devices), one `Send` each.
    fn queue_user_send(&mut self, user: String, envelopes: Vec<Envelope>, mut resend: UserSend) {
        if envelopes.is_empty() {
            self.drop_send(DropReason::DevicesChanged { user });
            return;
        }
        let body = Body::SendToUser(SendToUser { user: user.clone(), envelopes });
        if body.encoded_len() > MAX_USER_SEND_LEN {
            let Body::SendToUser(send) = body else { unreachable!("made above") };
            for envelope in send.envelopes {
                self.queue(Body::Send(envelope));
            }
            return;
        }
        if let Some(seq) = self.queue(body) {
            resend.user = user;
            self.user_sends.insert(seq, resend);
        }
    }

    /// `original` was refused: its user's relay says the devices it names are not the user's now
    /// (`changed`). The envelopes for devices the user still has go again as they are — the same
    /// ids, so that a relay that did store them after all (its answer lost) keeps one copy — and
    /// the message is sealed anew for the devices it lacked, once their bundles are fetched.
    pub(super) fn devices_changed(&mut self, original: SendToUser, changed: DevicesChanged, resend: Option<UserSend>, rng: &mut (impl CryptoRng + ?Sized)) {
        let user = original.user;
        self.devices_of.remove(&user);
        let kept: Vec<Envelope> = original
            .envelopes
            .into_iter()
            .filter(|envelope| envelope.recipient.as_ref().is_some_and(|r| !changed.extra.contains(&r.device_id)))
            .collect();
        match resend {
            Some(resend) if resend.attempts < MAX_RESENDS => {
                let attempts = resend.attempts + 1;
                self.submit(Work::Resend { user, payload: resend.payload, commitment: resend.commitment, attempts, kept }, rng);
            }
            // Out of attempts, or restarted since (what it takes to seal again is gone): what
            // can go, goes one envelope at a time, unchecked; the rest is reported.
            _ => {
                if !changed.missing.is_empty() {
                    self.drop_send(DropReason::DevicesChanged { user });
                }
                for envelope in kept {
                    self.queue(Body::Send(envelope));
                }
            }
        }
    }

    /// Runs a [`Work::Resend`]: `kept` as they are, and the message's payload (with its franking
    /// commitment) sealed for every device of `user` (as its relay lists them now) that none of
    /// `kept` is for.
    pub(super) fn resend(
        &mut self,
        user: String,
        (payload, commitment): (Arc<[u8]>, Option<[u8; 32]>),
        attempts: u32,
        kept: Vec<Envelope>,
        rng: &mut (impl CryptoRng + ?Sized),
    ) {
        let covered: Vec<u32> = kept.iter().filter_map(|envelope| envelope.recipient.as_ref().map(|r| r.device_id)).collect();
        let fresh: Vec<PendingSend> = self
            .user_devices(&user)
            .into_iter()
            .filter(|device| !covered.contains(&device.device_id()))
            .map(|device| PendingSend { to: device, payload: payload.clone(), commitment })
            .collect();
        let mut envelopes = kept;
        envelopes.extend(self.seal_for_user(&user, fresh, rng));
        self.queue_user_send(user, envelopes, UserSend { user: String::new(), payload, commitment, attempts });
    }

    /// A SendToUser its user's relay could not take whole (that app out of reach, one of the
    /// user's mailboxes full, or too large to forward): its envelopes go as single `Send`s
    /// instead, which this device's relay keeps and forwards when it can — a message is not held
    /// on the sender's device through another app's outage, nor kept from the user's other
    /// devices by one full mailbox. The device check is skipped for it: a device of the user this
    /// one did not know of misses it (a linked person's own devices carry it on). The same
    /// envelope ids: if the first attempt did reach the user's relay after all, it keeps one copy.
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
