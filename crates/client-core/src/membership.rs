//! Group membership as one device sees it, as a state machine. An announcement is first judged
//! against the group as it stands ([`judge`]), which changes nothing and yields one
//! [`Transition`] or a refusal; the device then carries out exactly that transition.
//!
//! The rules, which every member checks for itself:
//! - only an admin of the state a change applies to may make it, and it carries the signature of
//!   that state's order key (a key only the admins hold, which the group's hub checks too);
//! - a change names that state (epoch and hash) and advances the epoch by exactly one, so a
//!   forged, skipped or replayed change does not apply;
//! - a change that arrives before the ones it builds on waits for them ([`Transition::Later`]),
//!   so members catch up through the chain of changes whatever order they arrive in;
//! - two different states for one epoch are a fork: detected, refused and reported.
//!
//! The states of a group for a device are: not in it (no `Group`), in it at some epoch. The
//! transitions an announcement can make are: join, advance to the next epoch (rotating this
//! device's sender key when someone left), leave (this device was removed), wait, or nothing.

use switchboard_session::ProtocolAddress;

use crate::device::MembershipChange;
use crate::error::ClientError;
use crate::group::Group;

/// Furthest ahead of this device's epoch an announcement may be and still be kept for later.
pub const MAX_EPOCH_GAP: u64 = 32;

/// What an announcement does to this device's view of a group.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    /// This device was not in the group, and an admin's announcement names it: it joins.
    Join { group: Group, change: MembershipChange },
    /// The next epoch, keeping this device: the group moves on; `rotate` when a member left.
    Advance { group: Group, change: MembershipChange, rotate: bool },
    /// The next epoch, without this device: it was removed (`group` is the state that removed it).
    Leave { group: Group },
    /// The state this device holds, or an older one: nothing changes.
    Same { epoch: u64 },
    /// A later epoch than the next: kept until the changes before it arrive.
    Later,
}

/// Judges `announced`, sent by `from`, against `current` (this device's view, if it is in the
/// group). `trust_members` (an injected bug, false in the product) takes any member for an admin.
pub(crate) fn judge(
    current: Option<&Group>,
    announced: Group,
    from: &ProtocolAddress,
    me: &ProtocolAddress,
    trust_members: bool,
) -> Result<Transition, ClientError> {
    let is_admin = |group: &Group| group.admins().contains(from) || (trust_members && group.members().contains(from));
    let Some(current) = current else {
        if !announced.members().contains(me) {
            return Err(ClientError::InvalidPayload("a group this device is not in"));
        }
        // Joining, this device cannot know the group's history: it takes the state from whoever
        // the state names as an admin (authenticated by their session), signed by its own order
        // key if it is the first, and checks every change after. A member could still hand a
        // device outside the group a state of its own making: a networked device therefore
        // applies no change before the group's hub says it ordered it (`Device::hub_head`).
        if !is_admin(&announced) {
            return Err(not_an_admin(&announced, from));
        }
        if announced.epoch() == 0 && !announced.signed_by(announced.order_key()) {
            return Err(unordered(&announced, from));
        }
        let change = MembershipChange { added: announced.members().iter().cloned().collect(), removed: Vec::new() };
        return Ok(Transition::Join { group: announced, change });
    };
    let epoch = announced.epoch();
    if epoch < current.epoch() || announced.hash() == current.hash() {
        // Old news (a late copy of a change already applied): nothing to do.
        return Ok(Transition::Same { epoch: current.epoch() });
    }
    if epoch - current.epoch() > MAX_EPOCH_GAP {
        return Err(ClientError::LimitExceeded { what: "epochs an announcement kept for later may be ahead", limit: MAX_EPOCH_GAP as usize });
    }
    if epoch - current.epoch() > 1 {
        // Judged once this device has reached the state before it; kept meanwhile only from a
        // member (no stranger can fill the room kept for it).
        return match current.members().contains(from) {
            true => Ok(Transition::Later),
            false => Err(ClientError::NotAMember { group: current.id().to_owned(), sender: from.clone() }),
        };
    }
    // Whoever is not an admin is refused before anything else is looked at, so that a member's
    // forgery reads as what it is, not as a fork.
    if !is_admin(current) {
        return Err(not_an_admin(current, from));
    }
    if epoch == current.epoch() || announced.prev_hash() != current.hash() {
        return Err(fork(current, from));
    }
    if !announced.signed_by(current.order_key()) && !trust_members {
        return Err(unordered(current, from));
    }
    if !announced.members().contains(me) {
        return Ok(Transition::Leave { group: announced });
    }
    let change = MembershipChange {
        added: announced.members().difference(current.members()).cloned().collect(),
        removed: current.members().difference(announced.members()).cloned().collect(),
    };
    let rotate = !change.removed.is_empty();
    Ok(Transition::Advance { group: announced, change, rotate })
}

fn not_an_admin(group: &Group, from: &ProtocolAddress) -> ClientError {
    ClientError::NotAnAdmin { group: group.id().to_owned(), sender: from.clone() }
}

fn unordered(group: &Group, from: &ProtocolAddress) -> ClientError {
    ClientError::UnorderedChange { group: group.id().to_owned(), from: from.clone() }
}

fn fork(current: &Group, from: &ProtocolAddress) -> ClientError {
    ClientError::GroupFork { group: current.id().to_owned(), epoch: current.epoch(), from: from.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_key() -> crate::group::OrderKey {
        crate::group::OrderKey::from_secret(&[7; 32]).unwrap()
    }
    use switchboard_session::Suite;

    fn device(name: &str) -> ProtocolAddress {
        ProtocolAddress::new(format!("{name}@x"), 1)
    }

    fn set(names: &[&str]) -> indexmap::IndexSet<ProtocolAddress> {
        names.iter().map(|name| device(name)).collect()
    }

    #[test]
    fn each_announcement_makes_one_transition() {
        let (me, a, b, c) = (device("me"), device("a"), device("b"), device("c"));
        let genesis = Group::create("g@x", Suite::Aes256Gcm, set(&["me", "b"]), &a, &test_key()).unwrap().sign(&test_key());
        let judge = |current: Option<&Group>, announced: &Group, from: &ProtocolAddress| judge(current, announced.clone(), from, &me, false);

        assert!(matches!(judge(None, &genesis, &a), Ok(Transition::Join { .. })));
        assert!(matches!(judge(None, &genesis, &b), Err(ClientError::NotAnAdmin { .. })), "joining takes an admin's word");
        let without_me = Group::create("g@x", Suite::Aes256Gcm, set(&["b"]), &a, &test_key()).unwrap().sign(&test_key());
        assert_eq!(judge(None, &without_me, &a), Err(ClientError::InvalidPayload("a group this device is not in")));

        assert_eq!(judge(Some(&genesis), &genesis, &b), Ok(Transition::Same { epoch: 0 }));
        let added = genesis.next(set(&["me", "a", "b", "c"]), set(&["a"]), None).unwrap().sign(&test_key());
        let Ok(Transition::Advance { change, rotate, .. }) = judge(Some(&genesis), &added, &a) else { panic!() };
        assert_eq!((change.added, change.removed, rotate), (vec![c.clone()], vec![], false));
        let removed = added.next(set(&["me", "a", "c"]), set(&["a"]), None).unwrap().sign(&test_key());
        let Ok(Transition::Advance { change, rotate, .. }) = judge(Some(&added), &removed, &a) else { panic!() };
        assert_eq!((change.removed, rotate), (vec![b.clone()], true));
        assert!(matches!(judge(Some(&added), &added.next(set(&["a", "b"]), set(&["a"]), None).unwrap().sign(&test_key()), &a), Ok(Transition::Leave { .. })));
        assert_eq!(judge(Some(&removed), &added, &a), Ok(Transition::Same { epoch: 2 }), "older news changes nothing");
        assert_eq!(judge(Some(&genesis), &removed, &a), Ok(Transition::Later), "a change before its predecessor waits");
    }

    #[test]
    fn only_an_admin_changes_the_group_and_only_one_epoch_at_a_time() {
        let (me, a, b) = (device("me"), device("a"), device("b"));
        let genesis = Group::create("g@x", Suite::Aes256Gcm, set(&["me", "b"]), &a, &test_key()).unwrap().sign(&test_key());
        let judge = |current: &Group, announced: Group, from: &ProtocolAddress| judge(Some(current), announced, from, &me, false);

        // A member who is not an admin adds a stranger, removes someone, or makes itself admin.
        for forged in [set(&["me", "a", "b", "eve"]), set(&["me", "b"])] {
            let change = genesis.next(forged, set(&["b"]), None).unwrap().sign(&test_key());
            assert!(matches!(judge(&genesis, change, &b), Err(ClientError::NotAnAdmin { .. })));
        }
        // Promoted, it may.
        let promoted = genesis.next(genesis.members().clone(), set(&["a", "b"]), None).unwrap().sign(&test_key());
        let after = judge(&genesis, promoted.clone(), &a).unwrap();
        assert!(matches!(after, Transition::Advance { rotate: false, .. }));
        assert!(matches!(judge(&promoted, promoted.next(set(&["me", "a", "b", "c"]), set(&["a", "b"]), None).unwrap().sign(&test_key()), &b), Ok(Transition::Advance { .. })));

        // An epoch far ahead is refused, not kept: nobody can make a member wait for ever.
        let mut jumped = genesis.announcement();
        jumped.epoch = u64::MAX - 1;
        let too_far = ClientError::LimitExceeded { what: "epochs an announcement kept for later may be ahead", limit: MAX_EPOCH_GAP as usize };
        assert_eq!(judge(&genesis, Group::from_control(&jumped).unwrap(), &a), Err(too_far.clone()));
        let mut near = genesis.announcement();
        near.epoch = MAX_EPOCH_GAP;
        assert_eq!(judge(&genesis, Group::from_control(&near).unwrap(), &a), Ok(Transition::Later));
        near.epoch = MAX_EPOCH_GAP + 1;
        assert_eq!(judge(&genesis, Group::from_control(&near).unwrap(), &a), Err(too_far));
    }

    #[test]
    fn two_states_for_one_epoch_are_a_fork() {
        let (me, a, b) = (device("me"), device("a"), device("b"));
        let genesis = Group::create("g@x", Suite::Aes256Gcm, set(&["me", "b"]), &a, &test_key()).unwrap().sign(&test_key());
        let ours = genesis.next(set(&["me", "a", "b", "c"]), set(&["a"]), None).unwrap().sign(&test_key());
        let theirs = genesis.next(set(&["me", "a", "b", "d"]), set(&["a"]), None).unwrap().sign(&test_key());
        let fork = Err(ClientError::GroupFork { group: "g@x".into(), epoch: 1, from: a.clone() });
        // The same epoch, another state.
        assert_eq!(judge(Some(&ours), theirs.clone(), &a, &me, false), fork);
        // The next epoch, built on another state.
        assert_eq!(judge(Some(&ours), theirs.next(theirs.members().clone(), set(&["a"]), None).unwrap().sign(&test_key()), &a, &me, false), fork);
        // A member that is no admin does not get to claim a fork.
        assert!(matches!(judge(Some(&ours), theirs.clone(), &b, &me, false), Err(ClientError::NotAnAdmin { .. })));
        assert!(matches!(judge(Some(&ours), theirs.next(theirs.members().clone(), set(&["a"]), None).unwrap().sign(&test_key()), &b, &me, false), Err(ClientError::NotAnAdmin { .. })));
    }
}
