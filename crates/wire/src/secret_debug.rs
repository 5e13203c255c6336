//! `Debug` for the messages that hold private keys or a reported plaintext: what they hold, never
//! the keys or the plaintext (a report goes to its app's moderators, not to its logs).

use std::fmt;

use crate::switchboard::{DeviceSnapshot, LinkInvitation, Report};

impl fmt::Debug for DeviceSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceSnapshot")
            .field("address", &self.address)
            .field("registration_id", &self.registration_id)
            .field("sessions", &self.sessions.len())
            .field("groups", &self.groups.len())
            .field("person", &self.person.as_ref().map(|record| record.version))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for LinkInvitation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkInvitation").field("record_version", &self.record.as_ref().map(|record| record.version)).finish_non_exhaustive()
    }
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Report")
            .field("sender", &self.sender)
            .field("recipient", &self.recipient)
            .field("group", &self.group)
            .field("content_len", &self.content.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_private_key_shows() {
        let secret = vec![0x5a; 32];
        let snapshot = DeviceSnapshot { identity_key_pair: secret.clone(), person_key_pair: secret.clone(), ..Default::default() };
        let invitation = LinkInvitation { person_key_pair: secret, record: None };
        for shown in [format!("{snapshot:?}"), format!("{invitation:?}")] {
            assert!(!shown.contains("90") && !shown.to_lowercase().contains("5a"), "{shown}");
        }
    }

    #[test]
    fn no_reported_plaintext_or_franking_key_shows() {
        let report = Report { content: b"something vile".to_vec(), franking_key: vec![0x5a; 32], ..Default::default() };
        let kept = crate::switchboard::KeptReport { reporter: "bob@blue".into(), report: Some(report.clone()) };
        for shown in [format!("{report:?}"), format!("{kept:?}")] {
            assert!(!shown.contains("vile") && !shown.contains("90"), "{shown}");
        }
    }
}
