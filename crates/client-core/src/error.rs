//! Errors of the client layer.

use switchboard_session::ProtocolAddress;

/// Everything that can go wrong in a client operation. A failed operation changes nothing, except
/// where a variant says otherwise ([`ClientError::NotOrdered`], [`ClientError::LimitExceeded`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// A payload that decodes but makes no sense (empty, unknown suite, bad address), or breaks a
    /// bound of the protocol itself (a group of more than [`crate::MAX_GROUP_MEMBERS`], an id too
    /// long); the text says which.
    #[error("invalid payload: {0}")]
    InvalidPayload(&'static str),
    /// This device is not in a group of that id.
    #[error("unknown group {0}")]
    UnknownGroup(String),
    /// A group message or change from a device that is not a member.
    #[error("{sender} is not a member of group {group}")]
    NotAMember {
        /// The group's id.
        group: String,
        /// The device that sent it.
        sender: ProtocolAddress,
    },
    /// A change to a group from a member that is not one of its admins.
    #[error("{sender} is not an admin of group {group}")]
    NotAnAdmin {
        /// The group's id.
        group: String,
        /// The member that sent the change.
        sender: ProtocolAddress,
    },
    /// `from` announced a state of the group that is not the one this device holds at `epoch`,
    /// or a change built on another: the group's admins made two different changes for one
    /// epoch (or one of them showed different members different changes). Refused; this
    /// device keeps its state.
    #[error("group {group} forked at epoch {epoch}: {from} holds another state")]
    GroupFork {
        /// The group's id.
        group: String,
        /// This device's epoch when it saw the other state (which is another state of that epoch,
        /// or a change built on one).
        epoch: u64,
        /// The device whose announcement, key or change named the other state.
        from: ProtocolAddress,
    },
    /// The group's hub ordered another change first, at `epoch`: this device's change was not
    /// applied, and its proposal is dropped (it may be proposed again once this device holds the
    /// state that came first).
    #[error("the hub of group {group} ordered another change first (epoch {epoch})")]
    NotOrdered {
        /// The group's id.
        group: String,
        /// The epoch of the state the hub named in its answer.
        epoch: u64,
    },
    /// A change to group `group`, announced by `from`, that the order key of the state before it
    /// did not sign; or an announcement that this device joined, naming a state the group's hub
    /// does not hold.
    #[error("a change to group {group} from {from} that its admins did not order")]
    UnorderedChange {
        /// The group's id.
        group: String,
        /// The device that announced the change.
        from: ProtocolAddress,
    },
    /// A change or command this device cannot carry out in its state: a membership change it
    /// cannot apply (removing itself through `remove_member`, adding a device twice, a change
    /// while another of the group waits for its hub), or one its role does not allow (a business
    /// roster set from a device other than the account's first); the text says which.
    #[error("invalid membership change: {0}")]
    InvalidChange(&'static str),
    /// A session started under a weaker suite than both devices accept: something between them
    /// removed the responder's signed suite list from its bundle. Refused; nothing is kept.
    #[error("suite downgrade: a session under {chosen} although both sides accept {best}")]
    Downgrade {
        /// The suite the session was started under.
        chosen: switchboard_session::Suite,
        /// The most preferred suite both devices accept, which it should have been started under.
        best: switchboard_session::Suite,
    },
    /// No bundle is published for a device we need a session with.
    #[error("no bundle available for {0}")]
    NoBundle(ProtocolAddress),
    /// A bound on what this device keeps was reached (one of the crate's `MAX_…` constants): the
    /// input may be well formed, but this device holds as many of `what` as it may. Refused;
    /// nothing changed, except that an admin's change kept for later may first have displaced
    /// other members' changes kept for later.
    #[error("limit reached: at most {limit} {what}")]
    LimitExceeded {
        /// What is bounded, in words (e.g. "channels followed").
        what: &'static str,
        /// The bound that was reached (a count, or bytes where `what` says so).
        limit: usize,
    },
}
