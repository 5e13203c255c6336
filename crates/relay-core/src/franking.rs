//! Franking at the relay: the stamp on every commitment its devices send, and abuse reports.
//!
//! A device's envelope carries its commitment ([`Franking`]); its relay replaces whatever stamp
//! the device put there with its own, which binds the commitment to the sending device, the
//! recipient (a user, or a group's id) and the time ([`switchboard_wire::franking::stamp`]).
//! A [`Report`] comes to the reporting user's own relay, which checks what it can there (the key
//! opens the commitment to the content; the message was sent to this user, or to a group) and
//! asks the sender's relay (itself, or another app's through federation: [`CheckStamp`]) whether
//! the stamp is its own. Only then is the report kept. The sender's relay learns which of its
//! stamps was reported, never the content.

use switchboard_wire::franking::{self, Binding, FRANKING_LEN};
use switchboard_wire::switchboard::{
    CheckStamp, DeviceAddress, ErrorCode, FederationFrame, Franking, KeptReport, Report, federation_frame,
};

use super::{Action, ConnId, Deferred, MAX_ENVELOPE_CONTENT, MAX_REPORT_BYTES, MAX_REPORTS, MAX_REPORTS_PER_USER, RelayCore, app_of, failure, link_failure};
use crate::state::{DeviceKey, Mutation};

type Refusal = (ErrorCode, &'static str);

const NOT_SENT: Refusal = (ErrorCode::Forbidden, "no such message was sent: the stamp does not hold");

impl RelayCore {
    /// Stamps `franking` (if the device committed to its content) for `sender` to `recipient`
    /// now. A commitment that is not 32 bytes is refused.
    pub(super) fn stamp(&self, franking: &mut Option<Franking>, sender: &DeviceKey, recipient: &str, to_group: bool) -> Result<(), Refusal> {
        let Some(franking) = franking else { return Ok(()) };
        if franking.commitment.len() != FRANKING_LEN {
            return Err((ErrorCode::Malformed, "a franking commitment is 32 bytes"));
        }
        // Not before the key is durable: a crash would make a new one, and what it stamped could
        // never be verified.
        let Some(key) = self.state.stamp_key.as_ref().filter(|_| self.stamp_key_durable) else {
            return Err((ErrorCode::Unavailable, "the relay is starting; try again"));
        };
        let binding = Binding { commitment: &franking.commitment, sender: &sender.0, sender_device: sender.1, recipient, to_group, stamped_at: self.clock };
        franking.stamped_at = self.clock;
        franking.stamp = franking::stamp(&key.0, &binding).to_vec();
        Ok(())
    }

    /// Whether this relay stamped `franking` for `sender` to `recipient`.
    fn stamped(&self, sender: &DeviceAddress, recipient: &str, to_group: bool, franking: &Franking) -> bool {
        let Some(key) = &self.state.stamp_key else { return false };
        let binding = Binding {
            commitment: &franking.commitment,
            sender: &sender.name,
            sender_device: sender.device_id,
            recipient,
            to_group,
            stamped_at: franking.stamped_at,
        };
        franking::stamp_holds(&key.0, &binding, &franking.stamp)
    }

    /// A device reports a message it received.
    pub(super) fn report(&mut self, conn: ConnId, request_id: u64, device: &DeviceKey, report: Report) -> Vec<Action> {
        match self.check_report(device, &report) {
            Ok(()) => {}
            Err(refusal) => return self.report_refused(conn, request_id, refusal),
        }
        // The key opened the commitment to this content: a report kept with the same stamped
        // commitment is this one, kept already. The same answer again, and nothing stored.
        if self.state.report_keys.contains(&crate::state::report_key(&device.0, &report)) {
            self.deferred.push(Deferred::Client(conn, super::client::done(request_id)));
            return Vec::new();
        }
        let sender = report.sender.clone().expect("checked");
        let franking = report.franking.clone().expect("checked");
        let Some(app) = app_of(&sender.name).map(str::to_owned) else { return self.report_refused(conn, request_id, NOT_SENT) };
        // Every report counts against the device's rate, checked here or at another app.
        if let Err((code, detail)) = self.count_fetch(conn, &super::rates::Requester::Local(device.clone()), &app) {
            return vec![failure(conn, request_id, code, detail)];
        }
        if app == self.app {
            if !self.stamped(&sender, &report.recipient, report.group, &franking) {
                return self.report_refused(conn, request_id, NOT_SENT);
            }
            self.keep_report(conn, request_id, &device.0, report);
            return Vec::new();
        }
        let check = CheckStamp { sender: Some(sender), recipient: report.recipient.clone(), franking: Some(franking), group: report.group };
        // The report waits with the request for the other app's answer.
        let kept = KeptReport { reporter: device.0.clone(), report: Some(report) };
        self.ask_app_about(conn, request_id, app, String::new(), federation_frame::Body::CheckStamp(check), Some(Box::new(kept)))
    }

    /// What a report must hold before anyone is asked about its stamp.
    fn check_report(&self, device: &DeviceKey, report: &Report) -> Result<(), Refusal> {
        let (Some(sender), Some(franking)) = (&report.sender, &report.franking) else {
            return Err((ErrorCode::Malformed, "a report names its sender and franking"));
        };
        if app_of(&sender.name).is_none() || app_of(&report.recipient).is_none() {
            return Err((ErrorCode::Malformed, "a sender and a recipient are name@app"));
        }
        if report.content.len() > MAX_ENVELOPE_CONTENT {
            return Err((ErrorCode::TooLarge, "reported content over 256 KiB"));
        }
        if sender.name == device.0 {
            return Err((ErrorCode::Forbidden, "a user does not report its own messages"));
        }
        if self.state.reports.len() >= MAX_REPORTS || self.state.report_bytes + report.content.len() > MAX_REPORT_BYTES {
            return Err((ErrorCode::RateLimited, "this app keeps no more reports for now"));
        }
        if self.state.reports_by.get(&device.0).is_some_and(|made| *made >= MAX_REPORTS_PER_USER) {
            return Err((ErrorCode::RateLimited, "this app keeps no more reports of this user's for now"));
        }
        // A one-to-one message is reported by the user it was sent to; a group's by a member,
        // who alone could decrypt the key that opens it (the stamp says which it was).
        if !report.group && report.recipient != device.0 {
            return Err((ErrorCode::Forbidden, "a message is reported by its recipient"));
        }
        if !franking::opens(&franking.commitment, &report.franking_key, &report.content) {
            return Err((ErrorCode::Forbidden, "the franking key does not open the commitment to this content"));
        }
        Ok(())
    }

    fn report_refused(&mut self, conn: ConnId, request_id: u64, (code, detail): Refusal) -> Vec<Action> {
        self.metrics.reports_refused += 1;
        vec![failure(conn, request_id, code, detail)]
    }

    /// Keeps a verified report of `reporter`'s; answered once durable.
    fn keep_report(&mut self, conn: ConnId, request_id: u64, reporter: &str, report: Report) {
        // The same report may have been verified meanwhile (sent twice before either answer).
        if !self.state.report_keys.contains(&crate::state::report_key(reporter, &report)) {
            self.keep_new_report(reporter, report);
        }
        self.deferred.push(Deferred::Client(conn, super::client::done(request_id)));
    }

    fn keep_new_report(&mut self, reporter: &str, report: Report) {
        let id = self.state.reports.keys().next_back().map_or(1, |last| last + 1);
        self.metrics.reports_verified += 1;
        self.mutate(Mutation::PutReport { id, kept: KeptReport { reporter: reporter.to_owned(), report: Some(report) } });
    }

    /// The sender's app answered whether it stamped a reported message (`frame`, on the request
    /// that asked it): `Acknowledge`, it did — the report is kept; `Forbidden`, it did not; any
    /// other answer says nothing of the stamp, and the device hears that the check could not be
    /// made (`Unavailable`), never that the message was not sent.
    pub(super) fn stamp_checked(&mut self, frame: FederationFrame) -> Vec<Action> {
        let Some(fetch) = self.take_pending(frame.request_id) else { return Vec::new() };
        let Some(kept) = fetch.report else { return Vec::new() };
        let (conn, request_id) = (fetch.conn, fetch.request_id);
        match frame.body {
            Some(federation_frame::Body::Acknowledge(_)) => match kept.report {
                Some(report) => {
                    self.keep_report(conn, request_id, &kept.reporter, report);
                    Vec::new()
                }
                None => Vec::new(),
            },
            Some(federation_frame::Body::Failure(answer)) if answer.code == ErrorCode::Forbidden as i32 => self.report_refused(conn, request_id, NOT_SENT),
            _ => vec![failure(conn, request_id, ErrorCode::Unavailable, "the sender's app could not check the stamp; try again later")],
        }
    }

    /// Another app asks whether this relay stamped a message of one of its users.
    pub(super) fn check_stamp_for(&mut self, conn: ConnId, request_id: u64, check: CheckStamp) -> Vec<Action> {
        let answer = match (&check.sender, &check.franking) {
            (Some(sender), Some(franking)) if app_of(&sender.name) == Some(self.app.as_str()) => {
                match self.stamped(sender, &check.recipient, check.group, franking) {
                    true => FederationFrame { request_id, body: Some(federation_frame::Body::Acknowledge(Default::default())) },
                    false => link_failure(request_id, NOT_SENT.0, NOT_SENT.1),
                }
            }
            (Some(_), Some(_)) => link_failure(request_id, ErrorCode::UnknownRecipient, "the sender is not on this app"),
            _ => link_failure(request_id, ErrorCode::Malformed, "a check names a sender and its franking"),
        };
        vec![Action::ToLink { conn, frame: answer }]
    }
}
