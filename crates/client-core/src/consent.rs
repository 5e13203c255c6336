//! What a person takes from others: the users whose messages she accepted (a first message from
//! anyone else is a message request), and the users she blocked (nothing of theirs is shown).
//! Kept by every device of hers alike: a change made on one goes to the others
//! (`ConsentChange`), and each tells its own relay, which enforces a block for its account.
//! Addresses are kept as addresses: a person's block names every account of the blocked person
//! this device knows of when it is made.

use std::collections::BTreeSet;

use crate::error::ClientError;

/// Users whose messages one person accepted, at most.
pub const MAX_ACCEPTED: usize = 10_000;
/// Users one person blocked, at most (as her relay keeps them: `MAX_BLOCKED_PER_USER`).
pub const MAX_BLOCKED: usize = 10_000;
/// Addresses one change of consent names in all (as a relay takes them: `MAX_CONSENT_CHANGES`).
pub const MAX_CONSENT_CHANGE: usize = 256;

/// The users a person accepted and blocked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Consent {
    accepted: BTreeSet<String>,
    blocked: BTreeSet<String>,
}

impl Consent {
    /// Restored from what a snapshot kept; refused past the limits.
    pub fn restore(accepted: &[String], blocked: &[String]) -> Result<Consent, ClientError> {
        if accepted.len() > MAX_ACCEPTED || blocked.len() > MAX_BLOCKED {
            return Err(ClientError::InvalidPayload("more accepted or blocked users than a device keeps"));
        }
        Ok(Consent { accepted: accepted.iter().cloned().collect(), blocked: blocked.iter().cloned().collect() })
    }

    /// The users whose messages she accepted (their first messages are no requests), sorted.
    pub fn accepted(&self) -> impl Iterator<Item = &str> {
        self.accepted.iter().map(String::as_str)
    }

    /// The users she blocked, sorted.
    pub fn blocked(&self) -> impl Iterator<Item = &str> {
        self.blocked.iter().map(String::as_str)
    }

    /// Whether she accepted `user` by this very address (another account of the same person
    /// is not looked at here).
    pub fn is_accepted(&self, user: &str) -> bool {
        self.accepted.contains(user)
    }

    /// Whether she blocked `user` by this very address (another account of the same person is
    /// not looked at here: see [`crate::Endpoint::is_blocked`]).
    pub fn is_blocked(&self, user: &str) -> bool {
        self.blocked.contains(user)
    }

    /// Accepts `users`; returns those that were not accepted before. Past [`MAX_ACCEPTED`] the
    /// rest stay requests.
    pub fn accept<'a>(&mut self, users: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut added = Vec::new();
        for user in users {
            if self.accepted.len() >= MAX_ACCEPTED {
                break;
            }
            if self.accepted.insert(user.to_owned()) {
                added.push(user.to_owned());
            }
        }
        added
    }

    /// Blocks `users`; returns those that were not blocked before. Refused whole past
    /// [`MAX_BLOCKED`].
    pub fn block<'a>(&mut self, users: impl IntoIterator<Item = &'a str> + Clone) -> Result<Vec<String>, ClientError> {
        let new = users.clone().into_iter().filter(|user| !self.blocked.contains(*user)).collect::<BTreeSet<_>>();
        if self.blocked.len() + new.len() > MAX_BLOCKED {
            return Err(ClientError::LimitExceeded { what: "users one device blocks", limit: MAX_BLOCKED });
        }
        Ok(new.into_iter().map(|user| {
            self.blocked.insert(user.to_owned());
            user.to_owned()
        }).collect())
    }

    /// Unblocks `users`; returns those that were blocked.
    pub fn unblock<'a>(&mut self, users: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        users.into_iter().filter(|user| self.blocked.remove(*user)).map(str::to_owned).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepting_and_blocking_say_what_changed_and_keep_to_their_limits() {
        let mut consent = Consent::default();
        assert_eq!(consent.accept(["a@x", "b@y"]), ["a@x", "b@y"]);
        assert_eq!(consent.accept(["a@x"]), Vec::<String>::new());
        assert_eq!(consent.block(["m@x", "m@y"]).unwrap(), ["m@x", "m@y"]);
        assert!(consent.is_blocked("m@y") && !consent.is_blocked("a@x"));
        assert_eq!(consent.unblock(["m@y", "n@z"]), ["m@y"]);
        let many: Vec<String> = (0..MAX_BLOCKED).map(|i| format!("u{i}@x")).collect();
        let before = consent.clone();
        assert_eq!(consent.block(many.iter().map(String::as_str)), Err(ClientError::LimitExceeded { what: "users one device blocks", limit: MAX_BLOCKED }));
        assert_eq!(consent, before, "a refused block changes nothing");
    }
}
