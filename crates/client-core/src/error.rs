//! Errors of the client layer.

use switchboard_session::ProtocolAddress;

/// Everything that can go wrong in a client operation. A failed operation changes nothing.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The session layer refused (bad bytes, duplicate, untrusted identity, …).
    #[error(transparent)]
    Session(#[from] switchboard_session::Error),
    /// A person's record, invitation or change refused.
    #[error(transparent)]
    Person(#[from] crate::person::PersonError),
    /// A pairwise payload that does not decode.
    #[error("malformed payload: {0}")]
    Decode(#[from] switchboard_wire::DecodeError),
    /// A payload that decodes but makes no sense (empty, unknown suite, bad address).
    #[error("invalid payload: {0}")]
    InvalidPayload(&'static str),
    /// This device is not in a group of that id.
    #[error("unknown group {0}")]
    UnknownGroup(String),
    /// A group message or change from a device that is not a member.
    #[error("{sender} is not a member of group {group}")]
    NotAMember { group: String, sender: ProtocolAddress },
    /// A change to a group from a member that is not one of its admins.
    #[error("{sender} is not an admin of group {group}")]
    NotAnAdmin { group: String, sender: ProtocolAddress },
    /// `from` announced a state of the group that is not the one this device holds at `epoch`,
    /// or a change built on another: the group's admins made two different changes for one
    /// epoch (or one of them showed different members different changes). Refused; this
    /// device keeps its state.
    #[error("group {group} forked at epoch {epoch}: {from} holds another state")]
    GroupFork { group: String, epoch: u64, from: ProtocolAddress },
    /// The group's hub ordered another change first, at `epoch`: this device's change was not
    /// applied.
    #[error("the hub of group {group} ordered another change first (epoch {epoch})")]
    NotOrdered { group: String, epoch: u64 },
    /// A change to group `group`, announced by `from`, that the order key of the state before it
    /// did not sign; or an announcement that this device joined, naming a state the group's hub
    /// does not hold.
    #[error("a change to group {group} from {from} that its admins did not order")]
    UnorderedChange { group: String, from: ProtocolAddress },
    /// A change that names this device's own membership in a way it cannot apply (e.g. removing
    /// itself through `remove_member`, or adding a device twice).
    #[error("invalid membership change: {0}")]
    InvalidChange(&'static str),
    /// A session started under a weaker suite than both devices accept: something between them
    /// removed the responder's signed suite list from its bundle. Refused; nothing is kept.
    #[error("suite downgrade: a session under {chosen} although both sides accept {best}")]
    Downgrade { chosen: switchboard_session::Suite, best: switchboard_session::Suite },
    /// No bundle is published for a device we need a session with.
    #[error("no bundle available for {0}")]
    NoBundle(ProtocolAddress),
}
