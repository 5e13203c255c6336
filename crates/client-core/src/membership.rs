//! Group membership as one device sees it, as a state machine. An announcement from a member is
//! first judged against the group as it stands ([`judge`]), which changes nothing and yields one
//! [`Transition`]; the device then carries out exactly that transition.
//!
//! The states of a group for a device are: not in it (no `Group`), in it at some epoch. The
//! transitions an announcement can make are: join, advance to a newer epoch (rotating this
//! device's sender key when someone left), leave (this device was removed), or nothing (the
//! same or an older epoch: only the sender's key is news). A key from a sender this device does
//! not yet know as a member is held, unused, when a newer announcement says it is one.

use switchboard_session::ProtocolAddress;

use crate::device::MembershipChange;
use crate::error::ClientError;
use crate::group::Group;

/// What an announcement does to this device's view of a group.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    /// This device was not in the group, and the announcement names it: it joins.
    Join { group: Group, change: MembershipChange },
    /// A newer epoch that keeps this device: the group moves on; `rotate` when a member left.
    Advance { group: Group, change: MembershipChange, rotate: bool },
    /// A newer epoch without this device: it was removed.
    Leave,
    /// The same or an older epoch: nothing changes but the sender's key, if it brought one.
    Same { epoch: u64 },
    /// The sender is not a member as this device knows the group, but a newer announcement that
    /// names both says it is one: its key is kept, unused, until the news of its joining comes.
    HoldKey { epoch: u64 },
}

/// Judges `announced`, sent by `from`, against `current` (this device's view, if it is in the
/// group). `brings_key`: the announcement carries the sender's key.
pub(crate) fn judge(
    current: Option<&Group>,
    announced: Group,
    from: &ProtocolAddress,
    me: &ProtocolAddress,
    brings_key: bool,
) -> Result<Transition, ClientError> {
    let not_a_member = || ClientError::NotAMember { group: announced.id.clone(), sender: from.clone() };
    if !announced.members.contains(from) {
        return Err(not_a_member());
    }
    let Some(current) = current else {
        if !announced.members.contains(me) {
            return Err(ClientError::InvalidPayload("a group this device is not in"));
        }
        let change = MembershipChange { added: announced.members.iter().cloned().collect(), removed: Vec::new() };
        return Ok(Transition::Join { group: announced, change });
    };
    let newer = announced.epoch > current.epoch;
    if !current.members.contains(from) {
        // A newcomer whose key overtook the news of its joining.
        return match newer && brings_key && announced.members.contains(me) {
            true => Ok(Transition::HoldKey { epoch: current.epoch }),
            false => Err(not_a_member()),
        };
    }
    if !newer {
        return Ok(Transition::Same { epoch: current.epoch });
    }
    if !announced.members.contains(me) {
        return Ok(Transition::Leave);
    }
    let change = MembershipChange {
        added: announced.members.difference(&current.members).cloned().collect(),
        removed: current.members.difference(&announced.members).cloned().collect(),
    };
    let rotate = !change.removed.is_empty();
    Ok(Transition::Advance { group: announced, change, rotate })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_session::Suite;

    fn device(name: &str) -> ProtocolAddress {
        ProtocolAddress::new(format!("{name}@x"), 1)
    }

    fn group(epoch: u64, members: &[&str]) -> Group {
        Group { id: "g@x".into(), epoch, members: members.iter().map(|m| device(m)).collect(), suite: Suite::Aes256Gcm }
    }

    #[test]
    fn each_announcement_makes_one_transition() {
        let me = device("me");
        let (a, b) = (device("a"), device("b"));
        let current = group(3, &["me", "a", "b"]);
        let judge = |current: Option<&Group>, announced: Group, from: &ProtocolAddress, key: bool| judge(current, announced, from, &me, key);

        assert!(matches!(judge(None, group(0, &["me", "a"]), &a, false), Ok(Transition::Join { .. })));
        assert_eq!(judge(None, group(0, &["a", "b"]), &a, false), Err(ClientError::InvalidPayload("a group this device is not in")));
        assert!(matches!(judge(Some(&current), group(1, &["me", "a"]), &a, true), Ok(Transition::Same { epoch: 3 })));
        assert!(matches!(judge(Some(&current), group(3, &["me", "a"]), &a, true), Ok(Transition::Same { epoch: 3 })));
        assert_eq!(judge(Some(&current), group(4, &["a", "b"]), &a, false), Ok(Transition::Leave));
        let Ok(Transition::Advance { change, rotate, .. }) = judge(Some(&current), group(4, &["me", "a", "c"]), &a, false) else {
            panic!()
        };
        assert_eq!((change.added, change.removed, rotate), (vec![device("c")], vec![b.clone()], true));
        let Ok(Transition::Advance { rotate, .. }) = judge(Some(&current), group(4, &["me", "a", "b", "c"]), &a, false) else { panic!() };
        assert!(!rotate, "nobody left: no rotation");
        // The sender must be in what it announces, and (for a change) in the group as it stands.
        assert!(matches!(judge(Some(&current), group(4, &["me", "a"]), &b, false), Err(ClientError::NotAMember { .. })));
        let c = device("c");
        assert_eq!(judge(Some(&current), group(4, &["me", "a", "b", "c"]), &c, true), Ok(Transition::HoldKey { epoch: 3 }));
        assert!(matches!(judge(Some(&current), group(4, &["me", "a", "b", "c"]), &c, false), Err(ClientError::NotAMember { .. })));
        assert!(matches!(judge(Some(&current), group(3, &["me", "a", "b", "c"]), &c, true), Err(ClientError::NotAMember { .. })));
    }
}
