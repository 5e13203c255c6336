//! One device's whole client behaviour as a sans-IO state machine, in the style of quinn-proto's
//! `Connection`: the driver feeds it what happened and carries out what it asks for.
//!
//! Inputs: [`Endpoint::connected`] / [`Endpoint::disconnected`], a frame from the relay
//! ([`Endpoint::handle_frame`]), a timer that fired ([`Endpoint::handle_timeout`]), the user's
//! commands ([`Endpoint::send`], [`Endpoint::send_group`], the group changes, blobs, device
//! linking) and, for a durable device, [`Endpoint::persisted`]. Every input takes the current time
//! (any clock that does not go back, as a `Duration` since the driver's start) and, where keys
//! may be made, an RNG.
//!
//! Outputs, polled by the driver after each input: frames to write ([`Endpoint::poll_transmit`]),
//! events for the user ([`Endpoint::poll_event`]), the next deadline ([`Endpoint::poll_timeout`])
//! and, for a durable device, the state to write ([`Endpoint::poll_persist`]).
//!
//! Duties, each in one place: registration and authentication, publishing prekey bundles, device
//! linking, the outbox (`outbox`: pipelined, sent again after a reconnect), bundle fetches and the
//! work waiting for them (`work`), deliveries (`receive`: duplicates dropped by sender and
//! envelope id before decrypting ([`dedupe`]), group messages held until their sender key
//! arrives, acknowledgements batched), retries of transient refusals on a timer, and counters.
//!
//! Durability: with [`Storage::Durable`], nothing this device processed is acknowledged, and
//! nothing it encrypted is sent, before the driver reports the state that did it durable
//! ([`Endpoint::persisted`]); a crash between the two loses nothing (the relay delivers again, the
//! outbox sends again). With [`Storage::InMemory`] the state in memory is all there is, and counts
//! as durable as soon as it changes. Not yet durable: work still waiting for a recipient's bundles
//! (not sealed, so in no outbox) lives in memory only, and a crash before it is sealed loses it.

mod business;
mod channel;
pub mod commands;
mod consent;
pub mod dedupe;
mod order;
mod outbox;
pub mod people;
mod receive;
pub mod users;
mod work;

use rand_core::CryptoRng;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use switchboard_session::{MessageKind, PreKeyBundle, ProtocolAddress, Suite};
use switchboard_wire::switchboard::{
    Authenticate, ClientFrame, Envelope, EnvelopeKind, EnvelopeRef, ErrorCode, FetchBlob, GroupEnvelope, GroupPayload, Register, ServerFrame,
    UploadBlob, UploadBundles, client_frame::Body, server_frame,
};
use switchboard_wire::{Bytes, Message, decode};

use crate::device::{Device, Outgoing};
use crate::directory::InMemoryDirectory;
use crate::error::ClientError;
use crate::wire_address;
pub use dedupe::{MAX_SEEN, SeenKey};
use dedupe::SeenWindow;
pub use outbox::{MAX_OUTBOX, MAX_OUTBOX_BYTES};
pub use order::{MAX_HELD_CHANGES, RESYNC_AFTER};
use outbox::Outbox;
pub use receive::{MAX_ENVELOPE_ID_LEN, MAX_STALL, MAX_STALLED, MAX_STALLED_BYTES, MAX_STALLED_PER_SENDER};
use work::{GroupChange, Work};

/// Acknowledgements gathered into one frame at most.
pub const MAX_ACKS_PER_FRAME: usize = 256;
/// How long an acknowledgement may wait for others to share its frame.
pub const ACK_DELAY: Duration = Duration::from_millis(20);
/// How long after a transient failure (a request refused for now, a fetch that failed) it is tried
/// again, on average (see `schedule_retry`).
pub const RETRY_DELAY: Duration = Duration::from_millis(500);
/// Largest content the user may send (its ciphertext must fit in an envelope).
pub const MAX_CONTENT_LEN: usize = 128 * 1024;
/// One-time prekeys kept after the relay handed them out, for first messages still on their way;
/// when more are made, older ones are forgotten (a first message naming one is then refused, as
/// one naming any unknown prekey).
pub const MAX_PREKEYS_HANDED_OUT: u32 = 1_000;
/// Sends waiting for bundles at once.
pub const MAX_WAITING: usize = 10_000;
/// Peers a device starts a session back to after refusing a downgraded one, at most (each once).
pub const MAX_SESSIONS_STARTED_BACK: usize = 1_024;
/// Devices another may link from this one, waiting at once.
pub const MAX_PENDING_LINKS: usize = 16;

/// How group messages go out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GroupStrategy {
    /// Encrypted once under this device's sender key, fanned out by the relays.
    #[default]
    SenderKeys,
    /// Encrypted for each other member's device over the pairwise sessions.
    Pairwise,
}

/// Where the endpoint's state lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Storage {
    /// In memory only: it counts as durable as soon as it changes.
    #[default]
    InMemory,
    /// Written by the driver: see [`Endpoint::poll_persist`].
    Durable,
}

/// How an endpoint behaves.
#[derive(Clone, Copy, Debug)]
pub struct EndpointConfig {
    /// One-time prekeys published when the device first comes online, and the stock it fills
    /// again when its relay reports it low.
    pub prekeys: u32,
    /// The relay tells the device when its one-time prekeys left fall to this many (it then
    /// uploads enough to fill its stock again), at most half of `prekeys`; 0: never, and once
    /// they are gone sessions start without one.
    pub prekey_low_mark: u32,
    /// How old the signed prekey may grow before the device makes a new one and uploads it.
    pub signed_prekey_rotation: Duration,
    /// How long a rotated-out signed prekey is kept, for first messages already on their way
    /// (at least `signed_prekey_rotation`).
    pub signed_prekey_grace: Duration,
    /// The wall-clock time (milliseconds since the Unix epoch) at which the endpoint's `now` was
    /// zero: signed prekeys carry wall-clock timestamps, which outlive a restart.
    pub unix_ms_at_zero: u64,
    /// How group messages go out: under sender keys (the default) or pairwise to each member.
    pub group_strategy: GroupStrategy,
    /// Whether the driver persists the state ([`Storage::Durable`]: nothing is acknowledged or
    /// sent before [`Endpoint::persisted`] covers it) or it lives in memory only (the default).
    pub storage: Storage,
    /// The suites the device offers in its bundles and accepts for 1:1 sessions (kept in
    /// [`Suite::ALL`]'s order of preference). Every suite by default; [`Suite::CLASSICAL`] for a
    /// device without post-quantum key agreement.
    pub suites: &'static [Suite],
}

/// A signed prekey older than this is replaced (the default of [`EndpointConfig`]).
pub const SIGNED_PREKEY_ROTATION: Duration = Duration::from_secs(2 * 24 * 3600);
/// A replaced signed prekey is kept this long (the default of [`EndpointConfig`]).
pub const SIGNED_PREKEY_GRACE: Duration = Duration::from_secs(14 * 24 * 3600);
/// The shortest rotation interval an endpoint uses, whatever its configuration says.
pub const MIN_SIGNED_PREKEY_ROTATION: Duration = Duration::from_secs(60);

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            prekeys: 100,
            prekey_low_mark: 50,
            signed_prekey_rotation: SIGNED_PREKEY_ROTATION,
            signed_prekey_grace: SIGNED_PREKEY_GRACE,
            unix_ms_at_zero: 0,
            group_strategy: GroupStrategy::SenderKeys,
            storage: Storage::InMemory,
            suites: &Suite::ALL,
        }
    }
}

/// A device credential, as the relay issued it. Never shown in logs or `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(pub Vec<u8>);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(..)")
    }
}

impl Drop for Credential {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Why something this device meant to send was given up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The relay refused it for good.
    Refused(ErrorCode),
    /// It could not be encrypted (no bundle for a device, an untrusted identity, …).
    CouldNotSeal(ClientError),
    /// The outbox (or the work waiting for bundles) is full: [`MAX_OUTBOX`], [`MAX_OUTBOX_BYTES`],
    /// [`MAX_WAITING`].
    OutboxFull,
    /// `user`'s relay kept answering that its devices are not the ones this device sealed the
    /// message for ([`users::MAX_RESENDS`] times), or answered so after a restart that lost what
    /// it would take to seal it again.
    DevicesChanged {
        /// The recipient user (`name@app`).
        user: String,
    },
}

/// Why a request to the relay (a blob upload or fetch, a lookup, a report, a channel or device
/// command) failed. A failed request is not sent again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestFailed {
    /// The relay answered with a failure carrying this code. (A command refused for now —
    /// `Unavailable`, `MailboxFull`, `RateLimited` — is retried instead, and never ends here.)
    #[error("the relay refused: {0:?}")]
    Refused(ErrorCode),
    /// The connection closed before the answer came, or the device was not online when the
    /// request was made.
    #[error("the connection closed before the answer came")]
    Disconnected,
    /// The relay answered with a frame of another kind than the request calls for (or about
    /// another channel than the one asked for).
    #[error("the relay's answer makes no sense for the request")]
    UnexpectedAnswer,
    /// The relay's answer arrived, but this device refused to act on it (the cause is the
    /// source): for a follow, admins that are not 1 to [`crate::channel::MAX_CHANNEL_ADMINS`]
    /// `name@app` addresses, a channel past [`crate::channel::MAX_CHANNELS_FOLLOWED`], or a
    /// channel left before the answer came; the relay is then told this device does not follow.
    #[error("the relay's answer was refused: {0}")]
    Invalid(#[source] ClientError),
}

/// What the user hears of.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Connected, authenticated and (the first time) bundles published: sends go out now.
    Online,
    /// The relay refused to register or authenticate this device; it tries again on the next
    /// connection. Also heard when the relay refused for good to register a device linked from
    /// this one ([`Endpoint::link_device`]).
    AccessRefused {
        /// The relay's error code.
        code: ErrorCode,
    },
    /// A message: the application's content as its sender encoded it. `request`: a one-to-one
    /// message from someone this person has no conversation with (not accepted, never written
    /// to), to be shown apart until she accepts ([`Endpoint::accept`]), ignores or blocks them.
    /// `evidence`: what reporting it takes ([`Endpoint::report`]); every message carries it (one
    /// that does not open its franking commitment is refused).
    /// `agent`: the agent who wrote it, as the sending device names it (a business account's
    /// devices name the agent they serve).
    Message {
        /// The device that sent it.
        from: ProtocolAddress,
        /// The group's id for a group message (under the group's sender keys, or pairwise to
        /// each member); `None` for a one-to-one message.
        group: Option<String>,
        /// The envelope's id (16 bytes, chosen by its sender): what acknowledgements and
        /// deduplication name it by.
        envelope: [u8; 16],
        /// The content, as the sending application encoded it.
        content: Vec<u8>,
        /// Whether it is a message request (see above); never for a group message from a member
        /// of a group this device is in.
        request: bool,
        /// The franking evidence, checked: its key opens the commitment to `content`, and the
        /// sender's relay stamped it.
        evidence: Box<crate::franking::Evidence>,
        /// The agent name the sender's payload carries (at most
        /// [`crate::business::MAX_AGENT_NAME`] bytes of printable text); `None` if it carries
        /// none. Checked against no roster: any sender may set it.
        agent: Option<String>,
    },
    /// A delivery already processed, dropped before decrypting.
    DuplicateDropped {
        /// The device the envelope names as its sender.
        from: ProtocolAddress,
        /// The envelope's id.
        envelope: [u8; 16],
    },
    /// A delivery refused: it does not decrypt or makes no sense. It is acknowledged (it will never
    /// read) and nothing else changed.
    Refused {
        /// The device the envelope names as its sender; `None` if it names none.
        from: Option<ProtocolAddress>,
        /// The envelope's id, padded with zeros or cut to 16 bytes (an id of another length is
        /// itself a reason for refusal).
        envelope: [u8; 16],
        /// Why it was refused.
        reason: ClientError,
    },
    /// A group's membership changed, by this device's own change or by an announcement from `by`
    /// (with any kept announcements it let apply, which other admins may have made: `added` and
    /// `removed` sum them all); `state` is the hash of the group as it stands now
    /// ([`crate::Group::hash`]), the same at every member that holds this epoch.
    GroupChanged {
        /// The group's id.
        group: String,
        /// The group's epoch now.
        epoch: u64,
        /// This device, for its own change; otherwise the admin's device whose announcement
        /// was applied.
        by: ProtocolAddress,
        /// Devices that are members now and were not before (every member, on joining).
        added: Vec<ProtocolAddress>,
        /// Devices that were members before and are not now.
        removed: Vec<ProtocolAddress>,
        /// The hash of the group's state now.
        state: [u8; 32],
    },
    /// This device was removed from the group, and forgot it.
    RemovedFromGroup {
        /// The group's id.
        group: String,
    },
    /// `from` holds another state of the group at `epoch` than this device: its admins made two
    /// different changes for one epoch, or showed different members different ones. This
    /// device keeps its state and refuses the other; the user should hear of it, as of a
    /// safety-number change.
    GroupForked {
        /// The group's id.
        group: String,
        /// This device's epoch of the group when it saw the other state.
        epoch: u64,
        /// The device whose announcement, key or change named the other state.
        from: ProtocolAddress,
    },
    /// `from` announced a change of `group` (this device's joining, an advance, its removal) that
    /// the group's hub did not order: refused. The user should hear of it, as of a fork.
    UnorderedChange {
        /// The group's id.
        group: String,
        /// The device that announced the change.
        from: ProtocolAddress,
    },
    /// Something this device meant to send was given up.
    SendDropped {
        /// Why it was given up.
        reason: DropReason,
    },
    /// A further device of this user was registered from this one: hand it `credential`.
    DeviceLinked {
        /// The id of the device registered ([`Endpoint::link_device`]).
        device_id: u32,
        /// The credential the relay issued for it, which it needs to connect.
        credential: Credential,
    },
    /// A blob upload ([`Endpoint::upload_blob`]) was answered.
    BlobStored {
        /// The request number [`Endpoint::upload_blob`] returned.
        request: u64,
        /// The id the relay stores the blob under (for [`Endpoint::fetch_blob`]), or why not.
        result: Result<String, RequestFailed>,
    },
    /// Another device of this person carried a message here: one she sent from it (`from` is
    /// that device, `to` the user it went to), or one she received on another account whose
    /// sender could not see that account linked to this one (`from` is its sender).
    Synced {
        /// The device that wrote the message.
        from: ProtocolAddress,
        /// The user it was sent to, for one she sent; `None` for one she received.
        to: Option<String>,
        /// Always `None` as things stand: a transcript that names a group is refused.
        group: Option<String>,
        /// The device of hers (or of her business account) that carried it here.
        carried_by: ProtocolAddress,
        /// The id of the envelope that carried the transcript here (not the original's).
        envelope: [u8; 16],
        /// The message's content, as its application encoded it.
        content: Vec<u8>,
    },
    /// Another device of this person changed her linked accounts (a link, a revocation, a
    /// visibility): [`Endpoint::device`]'s person holds the new record.
    LinksChanged,
    /// A person's record (every account of hers this device may see) was received or updated.
    PersonKnown {
        /// Her person key, which signed the record.
        person_key: switchboard_session::IdentityKey,
        /// The device that sent the record: one of hers, or one of this person's own devices
        /// passing on what it was given.
        via: ProtocolAddress,
    },
    /// A lookup ([`Endpoint::lookup_person`]) was answered: the accounts the person behind
    /// `user` shows the public, her record checked (signed by her person key, and listing the
    /// devices and keys `user`'s relay serves) and kept.
    PersonLookedUp {
        /// The request number [`Endpoint::lookup_person`] returned.
        request: u64,
        /// The address looked up.
        user: String,
        /// Every account (`name@app`) the published record lists, in its order, or why not.
        result: Result<Vec<String>, people::LookupFailed>,
    },
    /// A blob fetch ([`Endpoint::fetch_blob`]) was answered.
    BlobFetched {
        /// The request number [`Endpoint::fetch_blob`] returned.
        request: u64,
        /// The blob's bytes as the relay returned them (still encrypted: see
        /// [`crate::attachment::open`]), or why not.
        result: Result<Vec<u8>, RequestFailed>,
    },
    /// A report ([`Endpoint::report`]) was answered: verified and kept by this device's app, or
    /// refused (`Refused(Forbidden)`: the sender's app did not stamp exactly this message).
    ReportAnswered {
        /// The request number [`Endpoint::report`] returned.
        request: u64,
        /// `Ok` if the app kept the report.
        result: Result<(), RequestFailed>,
    },
    /// The relay answered [`Endpoint::open_channel`].
    ChannelOpened {
        /// The request number [`Endpoint::open_channel`] returned.
        request: u64,
        /// The channel's id.
        channel: String,
        /// `Ok` if the relay opened it.
        result: Result<(), RequestFailed>,
    },
    /// The relay answered [`Endpoint::follow`]: the channel's admins (each asked for its key
    /// now), or why not. Also after this device asked again on its own, when a post came from an
    /// admin it did not know.
    ChannelFollowed {
        /// The request number [`Endpoint::follow`] returned (for a follow asked again on its
        /// own, a number this device drew, which no call returned).
        request: u64,
        /// The channel's id.
        channel: String,
        /// The admins' addresses (`name@app`) as the channel's app named them, or why not.
        result: Result<Vec<String>, RequestFailed>,
    },
    /// The relay answered [`Endpoint::leave`].
    ChannelLeft {
        /// The request number [`Endpoint::leave`] returned.
        request: u64,
        /// The channel's id.
        channel: String,
        /// `Ok` if the relay no longer counts this device a follower.
        result: Result<(), RequestFailed>,
    },
    /// A post to a channel this device follows, from `from`, a device of one of its admins.
    ChannelPost {
        /// The channel's id.
        channel: String,
        /// The admin's device that posted it.
        from: ProtocolAddress,
        /// The envelope's id.
        envelope: [u8; 16],
        /// The post, as the admin's application encoded it.
        content: Vec<u8>,
        /// The franking evidence, checked as a message's is (the stamp names the channel).
        evidence: Box<crate::franking::Evidence>,
    },
    /// `follower` asked for this device's key of `channel`, and was handed it.
    ChannelFollower {
        /// The channel's id.
        channel: String,
        /// The follower's device that asked.
        follower: ProtocolAddress,
    },
    /// A follower's reaction or vote on `channel` (which this device posts to), for its admins
    /// only.
    ChannelReply {
        /// The channel's id.
        channel: String,
        /// The follower's device that sent it.
        from: ProtocolAddress,
        /// The reply, as the follower's application encoded it (never empty).
        content: Vec<u8>,
    },
    /// The relay answered [`Endpoint::remove_agent`].
    DeviceRemoved {
        /// The request number [`Endpoint::remove_agent`] returned.
        request: u64,
        /// The id of the device to remove.
        device_id: u32,
        /// `Ok` if the device is gone (also when the relay knew no such device any more); then
        /// this device's roster, without it, goes to the account's other devices (unless that
        /// leaves it empty).
        result: Result<(), RequestFailed>,
    },
    /// The business account's owner sent its roster (`listed`: this device serves an agent in it).
    AgentsChanged {
        /// Whether the new roster lists this device.
        listed: bool,
    },
    /// Another device of this business account assigned the conversation with `customer`.
    Assigned {
        /// The customer's address (`name@app`).
        customer: String,
        /// The device of this account the conversation is assigned to now.
        agent_device: u32,
        /// Whether it was assigned to another device before (a hand-over).
        handover: bool,
    },
}

/// A frame for the relay, with what it carries (for traces). Its `Debug` shows no bytes: a frame
/// may carry the device's credential.
#[derive(Clone)]
pub struct Transmit {
    /// The kind of request the frame carries, in words ("send", "ack", "register", …).
    pub what: &'static str,
    /// The encoded `ClientFrame`, to write to the relay as it is.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Transmit({}, {} bytes)", self.what, self.bytes.len())
    }
}

/// What changed since the last [`Endpoint::poll_persist`]: write it, then call
/// [`Endpoint::persisted`] with `generation`.
#[derive(Clone, Debug, Default)]
pub struct Persist {
    /// The state generation these changes bring the endpoint to: pass it to
    /// [`Endpoint::persisted`] once they are written.
    pub generation: u64,
    /// The device's state changed: write [`Endpoint::snapshot`] whole.
    pub device: bool,
    /// Envelopes newly processed, to add to the stored window.
    pub seen_added: Vec<SeenKey>,
    /// Envelopes the dedupe window forgot (past [`MAX_SEEN`]), to delete from it.
    pub seen_forgotten: Vec<SeenKey>,
    /// Outbox entries added, by sequence number (read them with [`Endpoint::outbox_frame`]).
    pub outbox_added: Vec<u64>,
    /// Outbox entries done with (the relay took them, or refused them for good), by sequence
    /// number, to delete.
    pub outbox_removed: Vec<u64>,
}

/// Counters of what this endpoint did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Messages the user sent (one per message, however many devices it went to).
    pub sent: u64,
    /// Messages delivered to the user.
    pub received: u64,
    /// Deliveries dropped as already processed.
    pub duplicates: u64,
    /// Deliveries refused.
    pub refused: u64,
    /// Sends given up (see [`DropReason`]).
    pub sends_dropped: u64,
    /// Sessions accepted: PreKey messages that opened a session (none was held with the sender).
    pub sessions_accepted: u64,
    /// Other pairwise messages decrypted (whatever they carried).
    pub pairwise_decrypts: u64,
    /// Messages encrypted under this device's sender key: group messages sent with
    /// [`GroupStrategy::SenderKeys`], and channel posts.
    pub group_encrypts: u64,
    /// Group messages and channel posts decrypted.
    pub group_decrypts: u64,
    /// Group messages held because their sender's key had not arrived yet.
    pub held_for_key: u64,
    /// Uploads of more one-time prekeys after the relay reported them low, confirmed by it.
    pub replenishments: u64,
    /// The one-time prekeys (one per bundle) those uploads carried.
    pub prekeys_replenished: u64,
    /// Sessions this device started back after refusing one started under a weaker suite.
    pub sessions_started_back: u64,
    /// Sessions accepted whose first message named no one-time prekey (none was left at the relay).
    pub sessions_without_one_time_prekey: u64,
    /// Signed prekeys made to replace an older one.
    pub signed_prekey_rotations: u64,
    /// Replaced signed prekeys forgotten once their grace ([`EndpointConfig::signed_prekey_grace`])
    /// was over.
    pub signed_prekeys_forgotten: u64,
    /// This device's group changes the hub did not order (another came first).
    pub changes_not_ordered: u64,
    /// Changes announced to this device that the group's hub did not order (refused).
    pub unordered_changes: u64,
    /// Catch-ups on the hub's word, after changes missed for good.
    pub resyncs: u64,
    /// Messages carried to this person's (or this business account's) other devices, one per
    /// message however many devices.
    pub transcripts_sent: u64,
    /// Transcripts received from those devices and accepted (one from a blocked sender
    /// included, though not shown).
    pub transcripts_received: u64,
    /// Messages shown as requests (from someone this person has no conversation with).
    pub requests: u64,
    /// Messages from someone this person blocked, dropped unshown.
    pub blocked_dropped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Offline,
    Registering,
    Authenticating,
    Uploading,
    Online,
}

#[derive(Debug)]
enum Request {
    Register,
    /// Another device of this user, registered from this (authenticated) one.
    Link(u32),
    Authenticate,
    Upload,
    /// More one-time prekeys, uploaded while online.
    Replenish,
    Outbox(u64),
    Fetch(String),
    UploadBlob(u64),
    FetchBlob(u64),
    /// The state a group's hub ordered at an epoch (a change waits for it).
    Head(String, u64),
    /// The same, about a later change kept by a device that missed the ones before it.
    Resync(String, u64),
    /// The public view of this person's record (its version, and the view, sent again if this
    /// fails), or its withdrawal.
    PublishPerson(Option<u64>, Option<switchboard_wire::switchboard::PersonRecord>),
    /// The record published for a user, asked for with this handle.
    LookupPerson(u64, String),
    /// An abuse report, sent with this handle.
    Report(u64),
    /// A command (see `commands`), with its handle.
    Command(u64),
}

/// What a user may name as a group's member: one device, or every device of a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member {
    /// This one device.
    Device(ProtocolAddress),
    /// Every device of this user (`name@app`), as its relay lists them when the change is
    /// carried out.
    User(String),
}

/// Errors of a command; a command that fails changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// This device is not in a group of that id (for a channel reply: follows no channel of
    /// that id).
    #[error("this device is not in group {0}")]
    UnknownGroup(String),
    /// [`MAX_PENDING_LINKS`] device links already wait for the relay.
    #[error("too many device links waiting")]
    TooManyLinks,
    /// [`commands::MAX_PENDING_COMMANDS`] commands (channel opens, follows and leaves, device
    /// removals) already wait for the relay's answer.
    #[error("too many commands waiting for the relay's answer")]
    TooManyCommands,
    /// The content is longer than the endpoint sends.
    #[error("content of {len} bytes is over the limit of {limit}")]
    TooLarge {
        /// The content's length, in bytes.
        len: usize,
        /// The longest content sent, in bytes ([`MAX_CONTENT_LEN`]).
        limit: usize,
    },
    /// A user, group or channel id that is not a `name@app` address.
    #[error("not an address: {0}")]
    Address(#[from] switchboard_wire::address::AddressError),
    /// The device refused the command (see [`ClientError`]).
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// One device's client behaviour. See the module documentation.
pub struct Endpoint {
    config: EndpointConfig,
    device: Device,
    credential: Option<Credential>,
    /// Bundles to publish when next online (empty once the relay has them).
    bundles: Vec<switchboard_wire::switchboard::PreKeyBundle>,
    phase: Phase,
    next_request: u64,
    requests: HashMap<u64, Request>,
    outbox: Outbox,
    directory: InMemoryDirectory,
    devices_of: HashMap<String, Vec<ProtocolAddress>>,
    fetching: HashSet<String>,
    /// Work waiting for bundles, each with the users it still waits for.
    waiting: VecDeque<(Work, HashSet<String>)>,
    seen: SeenWindow,
    stalled: receive::Stalled,
    links: Vec<u32>,
    next_handle: u64,
    /// Acknowledgements waiting for their state to be durable, with its generation.
    unreleased_acks: VecDeque<(u64, EnvelopeRef)>,
    /// Acknowledgements to send (in the next frame).
    acks: Vec<EnvelopeRef>,
    ack_deadline: Option<Duration>,
    retry_deadline: Option<Duration>,
    /// The latest time an input brought.
    now: Duration,
    /// The state generation: one more at every change.
    generation: u64,
    /// The generation the driver reported durable.
    durable: u64,
    /// What changed since the last [`Self::poll_persist`].
    changes: Persist,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: EndpointStats,
    /// More one-time prekeys (made after the relay reported them low), or a new signed prekey:
    /// uploaded once the state that holds their private halves is durable (a key the relay
    /// hands out must never be one this device could lose in a crash).
    replenish: Option<Replenish>,
    /// The relay reported one-time prekeys low while an upload was on its way.
    low_reported: Option<u32>,
    /// Peers this device started a session back to (see `start_session_back`).
    started_back: std::collections::HashSet<ProtocolAddress>,
    /// Changes of a group waiting while an earlier one waits for the group's hub (see `order`).
    held_changes: VecDeque<Work>,
    /// Groups this device fell behind in, since when (see `order::resync_behind`).
    behind_since: HashMap<String, Duration>,
    /// Users given this person's current record (see `people::introduce`).
    introduced: HashSet<String>,
    /// The version of this person's record the relay publishes for this device's user (`None`:
    /// none), as last confirmed; a publish on its way; the state generation that holds the
    /// current version (published only once durable: see `people::publish_person`).
    published_person: Option<u64>,
    publishing: bool,
    person_generation: u64,
    to_publish: Option<(Option<u64>, Option<switchboard_wire::switchboard::PersonRecord>)>,
    /// What it takes to seal each SendToUser in the outbox again (see `users`); in memory only.
    user_sends: HashMap<u64, users::UserSend>,
    /// Commands waiting for the relay's answer (see `commands`).
    commands: Vec<(u64, commands::Command)>,
    /// Channels left since they were last followed (a follow answered after is not taken).
    left_channels: HashSet<String>,
}

struct Replenish {
    bundles: Vec<switchboard_wire::switchboard::PreKeyBundle>,
    /// The state generation that holds their private halves.
    generation: u64,
    in_flight: bool,
    /// A new signed prekey (in a last-resort bundle), not one-time prekeys.
    rotation: bool,
}

impl Endpoint {
    /// A new device of `address`'s user. The first device of a user registers itself; any other
    /// is linked from one already registered ([`Self::link_device`]) and starts with the
    /// credential it was handed. Every key comes from `rng`: seed it from the operating system
    /// outside tests and simulations.
    pub fn new(address: ProtocolAddress, credential: Option<Credential>, config: EndpointConfig, rng: &mut (impl CryptoRng + ?Sized)) -> Endpoint {
        let registration_id = rng.next_u32() & 0x3fff;
        let mut device = Device::new_at(address, registration_id, config.unix_ms_at_zero, rng);
        device.set_suites(config.suites);
        let bundles = device.publish_bundles(config.prekeys.max(1), rng).iter().map(PreKeyBundle::to_wire).collect();
        let mut endpoint = Endpoint::with_device(device, credential, bundles, config);
        endpoint.changed_device();
        endpoint
    }

    /// The endpoint as it was persisted: its snapshot ([`Self::snapshot`]: device, credential,
    /// whether its bundles were published), the envelopes it had processed (oldest first) and its
    /// outbox (entries as [`Self::outbox_frame`] wrote them). Entries that do not decode are
    /// dropped; a snapshot that does not restore is an error.
    pub fn restore(
        snapshot: &switchboard_wire::switchboard::DeviceSnapshot,
        seen: impl IntoIterator<Item = SeenKey>,
        outbox: impl IntoIterator<Item = (u64, Vec<u8>)>,
        config: EndpointConfig,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<Endpoint, ClientError> {
        let mut device = Device::restore(snapshot)?;
        device.set_suites(config.suites);
        let credential = (!snapshot.credential.is_empty()).then(|| Credential(snapshot.credential.clone()));
        let bundles_published = snapshot.bundles_published;
        let bundles = if bundles_published {
            Vec::new()
        } else {
            device.publish_bundles(config.prekeys.max(1), rng).iter().map(PreKeyBundle::to_wire).collect()
        };
        let mut endpoint = Endpoint::with_device(device, credential, bundles, config);
        for key in seen {
            endpoint.seen.insert(key);
        }
        for (seq, bytes) in outbox {
            let frame = decode::<ClientFrame>(&bytes, switchboard_wire::frame::MAX_FRAME_LEN).ok();
            if let Some(body @ (Body::Send(_) | Body::SendToUser(_) | Body::SendGroup(_) | Body::OrderChange(_) | Body::SetConsent(_))) = frame.and_then(|frame| frame.body) {
                endpoint.outbox.restore(seq, body);
            }
        }
        endpoint.reconcile_orders();
        if !bundles_published {
            endpoint.changed_device();
        }
        Ok(endpoint)
    }

    fn with_device(
        mut device: Device,
        credential: Option<Credential>,
        bundles: Vec<switchboard_wire::switchboard::PreKeyBundle>,
        config: EndpointConfig,
    ) -> Endpoint {
        device.check_changes_with_hub();
        Endpoint {
            config,
            device,
            credential,
            bundles,
            phase: Phase::Offline,
            next_request: 1,
            requests: HashMap::new(),
            outbox: Outbox::default(),
            directory: InMemoryDirectory::default(),
            devices_of: HashMap::new(),
            fetching: HashSet::new(),
            waiting: VecDeque::new(),
            seen: SeenWindow::default(),
            stalled: Default::default(),
            links: Vec::new(),
            next_handle: 1,
            unreleased_acks: VecDeque::new(),
            acks: Vec::new(),
            ack_deadline: None,
            retry_deadline: None,
            now: Duration::ZERO,
            generation: 0,
            durable: 0,
            changes: Persist::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: EndpointStats::default(),
            replenish: None,
            low_reported: None,
            started_back: Default::default(),
            held_changes: VecDeque::new(),
            behind_since: HashMap::new(),
            introduced: HashSet::new(),
            published_person: None,
            publishing: false,
            person_generation: 0,
            to_publish: None,
            user_sends: HashMap::new(),
            commands: Vec::new(),
            left_channels: HashSet::new(),
        }
    }

    /// Turns deliberate defects on (see [`crate::InjectedBugs`]); exists only in a build with
    /// `--cfg switchboard_inject_bugs`.
    #[cfg(switchboard_inject_bugs)]
    pub fn inject_bugs(&mut self, bugs: crate::InjectedBugs) {
        self.device.inject_bugs(bugs);
    }

    // ---- what the driver reads ----------------------------------------------------------------

    /// This device's address.
    pub fn address(&self) -> &ProtocolAddress {
        self.device.address()
    }

    /// The device (sessions, sender keys, groups), read-only.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The group `id` as this device sees it.
    pub fn group(&self, id: &str) -> Option<&crate::Group> {
        self.device.group(id)
    }

    /// The credential the relay issued this device, once registered.
    pub fn credential(&self) -> Option<&Credential> {
        self.credential.as_ref()
    }

    /// Hands this device the credential another device of its user obtained for it
    /// ([`Event::DeviceLinked`]).
    pub fn set_credential(&mut self, credential: Credential) {
        self.credential = Some(credential);
        self.changed_device();
    }

    /// Whether this device can connect: it has a credential, or is its user's first device.
    pub fn can_connect(&self) -> bool {
        self.credential.is_some() || self.address().device_id() == 1
    }

    /// Whether the relay has this device's bundles.
    pub fn bundles_published(&self) -> bool {
        self.bundles.is_empty()
    }

    /// Whether the relay has authenticated this device on the current connection.
    pub fn is_online(&self) -> bool {
        self.phase == Phase::Online
    }

    /// Entries in the outbox (sent or not, unconfirmed by the relay).
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Work waiting for bundles before it can be sealed and queued.
    pub fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether nothing is waiting: no outbox entry, no request unanswered, no work waiting for a
    /// bundle, no acknowledgement unsent.
    pub fn is_idle(&self) -> bool {
        self.outbox.len() == 0
            && self.requests.is_empty()
            && self.waiting.is_empty()
            && self.acks.is_empty()
            && self.unreleased_acks.is_empty()
    }

    /// The counters so far (since this endpoint was made or restored: they are not persisted).
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// Group messages held for a sender key not yet here.
    pub fn stalled_len(&self) -> usize {
        self.stalled.len()
    }

    /// The device's state, for the driver to persist (see [`Persist::device`]).
    pub fn snapshot(&self) -> switchboard_wire::switchboard::DeviceSnapshot {
        let mut snapshot = self.device.snapshot();
        snapshot.credential = self.credential.as_ref().map(|c| c.0.clone()).unwrap_or_default();
        snapshot.bundles_published = self.bundles.is_empty();
        snapshot
    }

    /// An outbox entry encoded as stored, if it is still in the outbox.
    pub fn outbox_frame(&self, seq: u64) -> Option<Vec<u8>> {
        self.outbox.get(seq).map(|body| ClientFrame { request_id: 0, body: Some(body.clone()) }.encode_to_vec())
    }

    /// Every outbox entry, encoded as stored (for a driver writing a fresh database).
    pub fn outbox_frames(&self) -> Vec<(u64, Vec<u8>)> {
        self.outbox.iter().map(|(seq, body)| (seq, ClientFrame { request_id: 0, body: Some(body.clone()) }.encode_to_vec())).collect()
    }

    /// The next frame to write to the relay.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the user.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] is next due, if anything waits for a timer.
    pub fn poll_timeout(&self) -> Option<Duration> {
        [self.ack_deadline, self.retry_deadline, self.stalled.next_expiry(), self.rotation_deadline()].into_iter().flatten().min()
    }

    /// What to write, if the state changed since the last call ([`Storage::Durable`] only).
    pub fn poll_persist(&mut self) -> Option<Persist> {
        if self.config.storage != Storage::Durable || self.changes.generation == 0 {
            return None;
        }
        Some(std::mem::take(&mut self.changes))
    }

    /// The driver could not write `persist`: its changes are taken back, to go with the next
    /// [`Self::poll_persist`] (and nothing they cover is released meanwhile).
    pub fn persist_failed(&mut self, persist: Persist) {
        let newer = std::mem::take(&mut self.changes);
        let mut merged = persist;
        merged.generation = merged.generation.max(newer.generation);
        merged.device |= newer.device;
        merged.seen_added.extend(newer.seen_added);
        merged.seen_forgotten.extend(newer.seen_forgotten);
        merged.outbox_added.extend(newer.outbox_added);
        merged.outbox_removed.extend(newer.outbox_removed);
        self.changes = merged;
    }

    /// The driver wrote the state of `generation` durably: what it held back goes out.
    pub fn persisted(&mut self, generation: u64) {
        self.durable = self.durable.max(generation.min(self.generation));
        self.release();
    }

    // ---- connection events --------------------------------------------------------------------

    /// A connection to the relay is up: register or authenticate.
    pub fn connected(&mut self, now: Duration) {
        self.now = self.now.max(now);
        self.requests.clear();
        self.outbox.connection_lost();
        if let Some(replenish) = &mut self.replenish {
            replenish.in_flight = false;
        }
        match &self.credential {
            None => {
                self.phase = Phase::Registering;
                let register = Register { user: self.address().name().to_owned(), device_id: self.address().device_id() };
                self.request(Request::Register, Body::Register(register));
            }
            Some(credential) => {
                self.phase = Phase::Authenticating;
                let authenticate = Authenticate {
                    user: self.address().name().to_owned(),
                    device_id: self.address().device_id(),
                    credential: credential.0.clone(),
                };
                self.request(Request::Authenticate, Body::Authenticate(authenticate));
            }
        }
    }

    /// The connection went down: every request in flight is lost; the outbox keeps its entries
    /// and sends them again on the next connection, and the relay delivers again what was not
    /// acknowledged (dropped then as duplicates).
    pub fn disconnected(&mut self, now: Duration) {
        self.now = self.now.max(now);
        self.phase = Phase::Offline;
        self.acks.clear();
        self.unreleased_acks.clear();
        self.ack_deadline = None;
        self.fetching.clear();
        self.transmits.clear();
        self.outbox.connection_lost();
        for (_, request) in std::mem::take(&mut self.requests) {
            match request {
                Request::UploadBlob(request) => {
                    self.events.push_back(Event::BlobStored { request, result: Err(RequestFailed::Disconnected) })
                }
                Request::FetchBlob(request) => {
                    self.events.push_back(Event::BlobFetched { request, result: Err(RequestFailed::Disconnected) })
                }
                Request::LookupPerson(request, user) => self.events.push_back(Event::PersonLookedUp {
                    request,
                    user,
                    result: Err(people::LookupFailed::Request(RequestFailed::Disconnected)),
                }),
                Request::PublishPerson(version, record) => {
                    self.publishing = false;
                    self.to_publish.get_or_insert((version, record));
                }
                Request::Report(request) => self.events.push_back(Event::ReportAnswered { request, result: Err(RequestFailed::Disconnected) }),
                _ => {}
            }
        }
    }

    /// A frame from the relay.
    pub fn handle_frame(&mut self, now: Duration, bytes: &[u8], rng: &mut (impl CryptoRng + ?Sized)) {
        self.now = self.now.max(now);
        let Ok(frame) = decode::<ServerFrame>(bytes, switchboard_wire::frame::MAX_FRAME_LEN) else { return };
        let Some(body) = frame.body else { return };
        if let server_frame::Body::Deliver(envelope) = body {
            // The relay delivers only once it has authenticated this connection; a delivery may
            // still overtake the answer that says so (on a link that reorders).
            if frame.request_id == 0 && self.phase != Phase::Offline {
                self.deliver(envelope, rng);
            }
        } else if let server_frame::Body::PrekeyCount(count) = body {
            if frame.request_id == 0 && self.phase != Phase::Offline {
                self.prekeys_left(count.remaining, rng);
            }
        } else if let Some(request) = self.requests.remove(&frame.request_id) {
            self.answer(request, body, rng);
        }
        self.release();
    }

    /// A deadline from [`Self::poll_timeout`] passed.
    pub fn handle_timeout(&mut self, now: Duration, rng: &mut (impl CryptoRng + ?Sized)) {
        self.now = self.now.max(now);
        if self.ack_deadline.is_some_and(|deadline| deadline <= now) {
            self.ack_deadline = None;
            self.flush_acks();
        }
        if self.stalled.next_expiry().is_some_and(|deadline| deadline <= now) {
            self.expire_stalled();
        }
        if self.rotation_deadline().is_some_and(|deadline| deadline <= now) {
            self.rotate_signed_prekey(rng);
        }
        if self.retry_deadline.is_some_and(|deadline| deadline <= now) {
            self.retry_deadline = None;
            if let Some(replenish) = self.replenish.as_mut().filter(|_| !self.requests.values().any(|r| matches!(r, Request::Replenish))) {
                replenish.in_flight = false;
            }
            if self.phase == Phase::Online {
                self.outbox.retry();
                let asked: Vec<u32> = self.requests.values().filter_map(|r| if let Request::Link(id) = r { Some(*id) } else { None }).collect();
                for device_id in self.links.clone().into_iter().filter(|id| !asked.contains(id)) {
                    self.request_link(device_id);
                }
                self.send_commands();
                self.fetch_missing();
                self.fetch_heads();
                self.resync_behind(rng);
                self.run_waiting(rng);
            }
        }
        self.release();
    }

    // ---- the user's commands ------------------------------------------------------------------

    /// Sends `content` to every device of `user` (fetching their bundles first if needed).
    pub fn send(&mut self, now: Duration, user: &str, content: Vec<u8>, rng: &mut (impl CryptoRng + ?Sized)) -> Result<(), CommandError> {
        self.now = self.now.max(now);
        check_content(&content)?;
        switchboard_wire::address::UserAddress::split(user)?;
        // Writing to someone is a conversation: their answers are no requests.
        self.wrote_to(user, true);
        self.stats.sent += 1;
        self.submit(Work::Direct { to: user.to_owned(), content }, rng);
        self.release();
        Ok(())
    }

    /// Sends `content` to group `id`: by the configured strategy, to every other member in this
    /// device's view. Returns the Sender Keys ciphertext, when that is the strategy (the same
    /// bytes every member receives).
    pub fn send_group(&mut self, now: Duration, id: &str, content: Vec<u8>, rng: &mut (impl CryptoRng + ?Sized)) -> Result<Option<Vec<u8>>, CommandError> {
        self.now = self.now.max(now);
        check_content(&content)?;
        let hub = crate::hub_of(id)?.to_owned();
        let me = self.address().clone();
        let group = self.device.group(id).ok_or_else(|| CommandError::UnknownGroup(id.to_owned()))?;
        let sent = match self.config.group_strategy {
            GroupStrategy::Pairwise => {
                let recipients: Vec<ProtocolAddress> = group.members().iter().filter(|member| **member != me).cloned().collect();
                self.submit(Work::Pairwise { group: id.to_owned(), recipients, content }, rng);
                None
            }
            GroupStrategy::SenderKeys => {
                let franking = crate::franking::Commitment::new(&content, rng);
                let plaintext = GroupPayload { application: content, franking_key: franking.key.to_vec() }.encode_to_vec();
                let message = self.device.encrypt_group(id, &plaintext, rng)?;
                self.changed_device();
                self.stats.group_encrypts += 1;
                let envelope = GroupEnvelope {
                    id: envelope_id(rng),
                    sender: Some(wire_address(&me)),
                    group_id: id.to_owned(),
                    hub,
                    recipients: message.recipients.iter().map(wire_address).collect(),
                    content: message.bytes.clone().into(),
                    franking: Some(crate::franking::unstamped(franking.commitment)),
                    channel: false,
                };
                self.submit(Work::Group { distributions: message.key_distributions, envelope }, rng);
                Some(message.bytes)
            }
        };
        self.stats.sent += 1;
        self.release();
        Ok(sent)
    }

    /// Creates group `id` (`name@app`, the app being its hub) with `members`. A malformed id is
    /// given up as [`Event::SendDropped`].
    pub fn create_group(&mut self, now: Duration, id: &str, members: Vec<Member>, suite: Suite, rng: &mut (impl CryptoRng + ?Sized)) {
        self.now = self.now.max(now);
        if crate::hub_of(id).is_err() {
            self.drop_send(DropReason::CouldNotSeal(ClientError::InvalidPayload("a group id is name@app")));
            return;
        }
        self.submit(Work::Change { group: id.to_owned(), change: GroupChange::Create { members, suite } }, rng);
        self.release();
    }

    /// Adds `member` to group `id`.
    pub fn add_member(&mut self, now: Duration, id: &str, member: Member, rng: &mut (impl CryptoRng + ?Sized)) {
        self.now = self.now.max(now);
        self.submit(Work::Change { group: id.to_owned(), change: GroupChange::Add(member) }, rng);
        self.release();
    }

    /// Removes `member` from group `id`; every remaining member rotates its sender key.
    pub fn remove_member(&mut self, now: Duration, id: &str, member: Member, rng: &mut (impl CryptoRng + ?Sized)) {
        self.now = self.now.max(now);
        self.submit(Work::Change { group: id.to_owned(), change: GroupChange::Remove(member) }, rng);
        self.release();
    }

    /// Makes `member` (a member device) an admin of group `id`. Only an admin may.
    pub fn promote(&mut self, now: Duration, id: &str, member: ProtocolAddress, rng: &mut (impl CryptoRng + ?Sized)) {
        self.now = self.now.max(now);
        self.submit(Work::Change { group: id.to_owned(), change: GroupChange::Promote(member) }, rng);
        self.release();
    }

    /// Sends `payload`, a `PairwisePayload` this caller encoded itself, to device `to`: for
    /// research clients that speak their own control messages, and for the simulator's member
    /// adversaries. The recipient judges it as it judges any other.
    pub fn send_payload(&mut self, now: Duration, to: ProtocolAddress, payload: Vec<u8>, rng: &mut (impl CryptoRng + ?Sized)) {
        self.now = self.now.max(now);
        self.submit(Work::Seal(vec![crate::PendingSend::new(to, payload)]), rng);
        self.release();
    }

    /// Registers device `device_id` of this user from this (authenticated) device; the
    /// credential comes as [`Event::DeviceLinked`].
    pub fn link_device(&mut self, now: Duration, device_id: u32) -> Result<(), CommandError> {
        self.now = self.now.max(now);
        if self.links.len() >= MAX_PENDING_LINKS {
            return Err(CommandError::TooManyLinks);
        }
        self.links.push(device_id);
        if self.phase == Phase::Online {
            self.request_link(device_id);
        }
        self.release();
        Ok(())
    }

    /// Asks this device's relay to keep `blob` (an attachment, already encrypted); the answer
    /// comes as [`Event::BlobStored`] with the returned request number.
    pub fn upload_blob(&mut self, now: Duration, blob: Vec<u8>) -> u64 {
        self.now = self.now.max(now);
        let request = self.next_handle();
        self.blob_request(Request::UploadBlob(request), Body::UploadBlob(UploadBlob { blob }), request, true);
        self.release();
        request
    }

    /// Fetches the blob `blob_id` (through federation when another app keeps it); the answer
    /// comes as [`Event::BlobFetched`] with the returned request number.
    pub fn fetch_blob(&mut self, now: Duration, blob_id: String) -> u64 {
        self.now = self.now.max(now);
        let request = self.next_handle();
        self.blob_request(Request::FetchBlob(request), Body::FetchBlob(FetchBlob { blob_id }), request, false);
        self.release();
        request
    }

    fn next_handle(&mut self) -> u64 {
        let handle = self.next_handle;
        self.next_handle += 1;
        handle
    }

    fn blob_request(&mut self, request: Request, body: Body, handle: u64, upload: bool) {
        if self.phase == Phase::Online {
            self.request(request, body);
        } else {
            let result = Err(RequestFailed::Disconnected);
            self.events.push_back(if upload {
                Event::BlobStored { request: handle, result }
            } else {
                Event::BlobFetched { request: handle, result: Err(RequestFailed::Disconnected) }
            });
        }
    }

    // ---- internals ----------------------------------------------------------------------------

    fn request(&mut self, request: Request, body: Body) {
        let id = self.next_request;
        self.next_request += 1;
        self.requests.insert(id, request);
        self.transmit(id, body);
    }

    fn transmit(&mut self, request_id: u64, body: Body) {
        let what = body_what(&body);
        self.transmits.push_back(Transmit { what, bytes: ClientFrame { request_id, body: Some(body) }.encode_to_vec() });
    }

    fn request_link(&mut self, device_id: u32) {
        let register = Register { user: self.address().name().to_owned(), device_id };
        self.request(Request::Link(device_id), Body::Register(register));
    }

    /// The state changed: one more generation.
    fn bump(&mut self) -> u64 {
        self.generation += 1;
        if self.config.storage == Storage::Durable {
            self.changes.generation = self.generation;
        } else {
            self.durable = self.generation;
        }
        self.generation
    }

    fn changed_device(&mut self) {
        self.bump();
        self.changes.device = true;
    }

    fn tracking(&self) -> bool {
        self.config.storage == Storage::Durable
    }

    fn answer(&mut self, request: Request, body: server_frame::Body, rng: &mut (impl CryptoRng + ?Sized)) {
        use server_frame::Body as S;
        match (request, body) {
            (Request::Register, S::Registered(registered)) => {
                self.credential = Some(Credential(registered.credential));
                self.changed_device();
                self.connected(self.now);
            }
            (Request::Link(device_id), S::Registered(registered)) => {
                self.links.retain(|id| *id != device_id);
                self.events.push_back(Event::DeviceLinked { device_id, credential: Credential(registered.credential) });
            }
            (Request::Link(device_id), S::Failure(failure)) => {
                let code = error_code(failure.code);
                if !transient(failure.code) {
                    self.links.retain(|id| *id != device_id);
                    self.events.push_back(Event::AccessRefused { code });
                } else {
                    self.schedule_retry(rng);
                }
            }
            (Request::Authenticate, S::Done(_)) => {
                if self.bundles.is_empty() {
                    self.online(rng);
                } else {
                    self.phase = Phase::Uploading;
                    let bundles = self.bundles.clone();
                    let low_mark = self.low_mark();
                    self.request(Request::Upload, Body::UploadBundles(UploadBundles { bundles, low_mark }));
                }
            }
            (Request::Replenish, S::Done(_)) => {
                if let Some(replenish) = self.replenish.take().filter(|replenish| !replenish.rotation) {
                    self.stats.replenishments += 1;
                    self.stats.prekeys_replenished += replenish.bundles.len() as u64;
                }
                // A report that came while this upload was on its way.
                if let Some(remaining) = self.low_reported.take() {
                    self.prekeys_left(remaining, rng);
                }
            }
            (Request::Replenish, _) => {
                // Sent again once the retry timer fires (it stays marked in flight until then, so
                // that a relay refusing it is not asked again at once; the relay dedupes by id).
                self.schedule_retry(rng);
            }
            (Request::Upload, S::Done(_)) => {
                self.bundles.clear();
                self.changed_device();
                self.online(rng);
            }
            (Request::Outbox(seq), S::Failure(failure)) => {
                let code = error_code(failure.code);
                let whole_send_refused = matches!(code, ErrorCode::Unavailable | ErrorCode::MailboxFull | ErrorCode::TooLarge);
                if whole_send_refused && matches!(self.outbox.get(seq), Some(Body::SendToUser(_))) {
                    // The user's app cannot be reached now, one of the user's mailboxes is full,
                    // or the whole is too large to forward: the same envelopes go one by one
                    // (see `users::store_and_forward`).
                    self.store_and_forward(seq);
                } else if transient(failure.code) {
                    self.outbox.defer(seq);
                    self.schedule_retry(rng);
                } else {
                    let order = match self.outbox.get(seq) {
                        Some(Body::OrderChange(order)) => Some(order.group_id.clone()),
                        _ => None,
                    };
                    self.outbox_done(seq);
                    match order {
                        Some(group) => self.order_refused(&group, code, rng),
                        None => self.drop_send(DropReason::Refused(code)),
                    }
                }
            }
            (Request::Outbox(seq), S::GroupHead(head)) => {
                let asked = matches!(self.outbox.get(seq), Some(Body::OrderChange(order)) if order.group_id == head.group_id);
                self.outbox_done(seq);
                if asked {
                    self.ordered(head, rng);
                }
            }
            (Request::Outbox(seq), S::DevicesChanged(changed)) => {
                let original = match self.outbox.get(seq) {
                    Some(Body::SendToUser(send)) if send.user == changed.user => Some(send.clone()),
                    _ => None,
                };
                let resend = self.user_sends.remove(&seq);
                self.outbox_done(seq);
                if let Some(original) = original {
                    self.devices_changed(original, changed, resend, rng);
                }
            }
            (Request::Outbox(seq), _) => self.outbox_done(seq),
            (Request::Head(group, epoch), S::GroupHead(head)) if head.group_id == group => self.head_arrived(epoch, head, rng),
            (Request::Head(group, _), S::Failure(failure)) if !transient(failure.code) => self.head_refused(&group),
            (Request::Head(..), _) => self.schedule_retry(rng),
            (Request::Resync(group, epoch), S::GroupHead(head)) if head.group_id == group => self.resynced(epoch, head, rng),
            // Unavailable for now: asked again after RESYNC_AFTER (refused for good: likewise,
            // while the device stays behind).
            (Request::Resync(..), _) => {}
            (Request::Fetch(user), S::Bundles(bundles)) if bundles.user == user => self.bundles_arrived(user, bundles, rng),
            (Request::Fetch(user), S::Failure(failure)) if !transient(failure.code) => {
                // No such user (or no bundles): what waits for it is given up as unsealable.
                let empty = switchboard_wire::switchboard::Bundles { user: user.clone(), devices: Vec::new() };
                self.bundles_arrived(user, empty, rng);
            }
            (Request::Fetch(user), _) => {
                // Unavailable for now (the other app's relay out of reach): later.
                self.fetching.remove(&user);
                self.schedule_retry(rng);
            }
            (Request::UploadBlob(request), S::Blob(blob)) => {
                self.events.push_back(Event::BlobStored { request, result: Ok(blob.blob_id) });
            }
            (Request::FetchBlob(request), S::Blob(blob)) => {
                self.events.push_back(Event::BlobFetched { request, result: Ok(blob.blob) });
            }
            (Request::UploadBlob(request), other) => {
                self.events.push_back(Event::BlobStored { request, result: Err(failed(other)) });
            }
            (Request::FetchBlob(request), other) => {
                self.events.push_back(Event::BlobFetched { request, result: Err(failed(other)) });
            }
            (Request::PublishPerson(version, _), S::Done(_)) => {
                self.publishing = false;
                self.published_person = version;
            }
            (Request::PublishPerson(version, record), S::Failure(failure)) if transient(failure.code) => {
                self.publishing = false;
                self.to_publish.get_or_insert((version, record));
                self.schedule_retry(rng);
            }
            (Request::PublishPerson(version, _), _) => {
                // Refused for good (a newer version is published already): not asked again
                // until the record changes.
                self.publishing = false;
                self.published_person = version;
            }
            (Request::LookupPerson(request, user), S::PersonFound(found)) if found.user == user => self.person_found(request, user, found, rng),
            (Request::Command(handle), answer) => self.command_answered(handle, answer, rng),
            (Request::Report(request), S::Done(_)) => self.events.push_back(Event::ReportAnswered { request, result: Ok(()) }),
            (Request::Report(request), other) => self.events.push_back(Event::ReportAnswered { request, result: Err(failed(other)) }),
            (Request::LookupPerson(request, user), other) => {
                self.events.push_back(Event::PersonLookedUp { request, user, result: Err(people::LookupFailed::Request(failed(other))) });
            }
            (Request::Register | Request::Authenticate | Request::Upload, S::Failure(failure)) => {
                // Refused: tried again on the next connection (a relay restarting says Unavailable).
                self.events.push_back(Event::AccessRefused { code: error_code(failure.code) });
            }
            (_, _) => {}
        }
    }

    /// The relay holds `remaining` one-time prekeys of this device: at or below the low mark,
    /// make enough to fill the stock again (uploaded from [`Self::release`] once durable).
    fn prekeys_left(&mut self, remaining: u32, rng: &mut (impl CryptoRng + ?Sized)) {
        let target = self.config.prekeys.max(1);
        let low = self.low_mark() > 0 && remaining <= self.low_mark();
        if !low || !self.bundles.is_empty() {
            return;
        }
        if self.replenish.is_some() {
            // Busy uploading: acted on once that is done.
            self.low_reported = Some(remaining);
            return;
        }
        let bundles = self.device.publish_bundles(target - remaining, rng).iter().map(PreKeyBundle::to_wire).collect();
        // Prekeys the relay handed out and no first message has used yet are kept, up to a bound.
        let stock_from = self.device.next_prekey_id.saturating_sub(target);
        self.device.forget_prekeys_below(stock_from.saturating_sub(MAX_PREKEYS_HANDED_OUT));
        self.changed_device();
        self.replenish = Some(Replenish { bundles, generation: self.generation, in_flight: false, rotation: false });
    }

    /// The low mark the relay is given: the configured one, at most half the stock.
    fn low_mark(&self) -> u32 {
        self.config.prekey_low_mark.min(self.config.prekeys.max(1) / 2)
    }

    /// The wall-clock time now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64 {
        self.config.unix_ms_at_zero.saturating_add(millis(self.now))
    }

    /// The rotation interval (at least [`MIN_SIGNED_PREKEY_ROTATION`]) and the grace (at least
    /// the interval, so that the relay has had a whole interval to take the new one before the
    /// old one is gone), in milliseconds.
    fn rotation_and_grace_ms(&self) -> (u64, u64) {
        let rotation = millis(self.config.signed_prekey_rotation.max(MIN_SIGNED_PREKEY_ROTATION));
        (rotation, millis(self.config.signed_prekey_grace).max(rotation))
    }

    /// When the signed prekey is due to be replaced, on the endpoint's clock: only while online
    /// with nothing else to upload (it is checked again once that is done).
    fn rotation_deadline(&self) -> Option<Duration> {
        if self.phase != Phase::Online || self.replenish.is_some() || !self.bundles.is_empty() {
            return None;
        }
        let made = self.device.current_signed_prekey().timestamp;
        let due_ms = made.saturating_add(self.rotation_and_grace_ms().0);
        Some(Duration::from_millis(due_ms.saturating_sub(self.config.unix_ms_at_zero)))
    }

    /// Replaces the signed prekey: a new one, uploaded in a last-resort bundle (the relay puts it
    /// in every bundle it holds), and those replaced longer ago than the grace forgotten.
    fn rotate_signed_prekey(&mut self, rng: &mut (impl CryptoRng + ?Sized)) {
        let now_ms = self.now_ms();
        self.device.rotate_signed_prekey(now_ms, rng);
        let grace = self.rotation_and_grace_ms().1;
        let forgotten = self.device.forget_signed_prekeys_superseded_before(now_ms.saturating_sub(grace));
        self.stats.signed_prekey_rotations += 1;
        self.stats.signed_prekeys_forgotten += forgotten as u64;
        let bundles = self.device.publish_bundles(0, rng).iter().map(PreKeyBundle::to_wire).collect();
        self.changed_device();
        self.replenish = Some(Replenish { bundles, generation: self.generation, in_flight: false, rotation: true });
    }

    fn online(&mut self, rng: &mut (impl CryptoRng + ?Sized)) {
        self.phase = Phase::Online;
        self.prepare_publish(rng);
        self.events.push_back(Event::Online);
        for device_id in self.links.clone() {
            self.request_link(device_id);
        }
        self.send_commands();
        self.fetch_missing();
        self.fetch_heads();
        self.run_waiting(rng);
    }

    fn outbox_done(&mut self, seq: u64) {
        self.user_sends.remove(&seq);
        if self.outbox.remove(seq) {
            self.bump();
            if self.tracking() {
                self.changes.outbox_added.retain(|added| *added != seq);
                self.changes.outbox_removed.push(seq);
            }
        }
    }

    fn drop_send(&mut self, reason: DropReason) {
        self.stats.sends_dropped += 1;
        self.events.push_back(Event::SendDropped { reason });
    }

    /// A retry between half and one and a half [`RETRY_DELAY`] from now: spread, so that retries
    /// do not fall in step with whatever keeps failing (a link that resets and redials on a beat).
    fn schedule_retry(&mut self, rng: &mut (impl CryptoRng + ?Sized)) {
        if self.retry_deadline.is_none() {
            let spread = rng.next_u64() % RETRY_DELAY.as_micros() as u64;
            self.retry_deadline = Some(self.now + RETRY_DELAY / 2 + Duration::from_micros(spread));
        }
    }

    /// Keeps `body` in the outbox until the relay confirms it; it goes out once durable.
    fn queue(&mut self, body: Body) -> Option<u64> {
        if self.outbox.full(body.encoded_len()) {
            self.drop_send(DropReason::OutboxFull);
            return None;
        }
        let generation = self.bump();
        let seq = self.outbox.push(body, generation);
        if self.tracking() {
            self.changes.outbox_added.push(seq);
        }
        Some(seq)
    }

    /// Queues each pairwise message as an envelope (`group` names the group for pairwise group
    /// messages, empty otherwise).
    fn queue_pairwise(&mut self, outgoing: Vec<Outgoing>, group: &str, rng: &mut (impl CryptoRng + ?Sized)) {
        for message in outgoing {
            let envelope = self.envelope(message, group, rng);
            self.queue(Body::Send(envelope));
        }
    }

    /// The envelope of one pairwise message (`group` names the group for pairwise group
    /// messages, empty otherwise).
    fn envelope(&self, message: Outgoing, group: &str, rng: &mut (impl CryptoRng + ?Sized)) -> Envelope {
        let kind = match message.message.kind() {
            MessageKind::PreKey => EnvelopeKind::PrekeyMessage,
            MessageKind::Signal => EnvelopeKind::SignalMessage,
        };
        Envelope {
            id: envelope_id(rng),
            sender: Some(wire_address(self.device.address())),
            recipient: Some(wire_address(&message.to)),
            kind: kind as i32,
            content: message.message.serialize().to_vec().into(),
            group_id: group.to_owned(),
            franking: message.commitment.map(crate::franking::unstamped),
            channel: false,
        }
    }

    /// Sends what durability now allows: outbox entries and acknowledgements whose state is
    /// durable; the acknowledgements' deadline.
    fn release(&mut self) {
        while let Some((generation, _)) = self.unreleased_acks.front() {
            if *generation > self.durable {
                break;
            }
            let (_, id) = self.unreleased_acks.pop_front().expect("looked at");
            self.acks.push(id);
            if self.acks.len() >= MAX_ACKS_PER_FRAME {
                self.flush_acks();
            }
        }
        if self.phase == Phase::Online
            && let Some(replenish) = self.replenish.as_mut().filter(|r| !r.in_flight && r.generation <= self.durable)
        {
            replenish.in_flight = true;
            let bundles = replenish.bundles.clone();
            let low_mark = self.low_mark();
            self.request(Request::Replenish, Body::UploadBundles(UploadBundles { bundles, low_mark }));
        }
        self.publish_person();
        if self.phase == Phase::Online {
            for seq in self.outbox.take_sendable(self.durable) {
                let body = self.outbox.get(seq).expect("just listed").clone();
                let id = self.next_request;
                self.next_request += 1;
                self.requests.insert(id, Request::Outbox(seq));
                self.transmit(id, body);
            }
        }
        if !self.acks.is_empty() && self.ack_deadline.is_none() {
            self.ack_deadline = Some(self.now + ACK_DELAY);
        }
    }

    /// Acknowledges everything released since the last call, in one frame.
    fn flush_acks(&mut self) {
        if !self.acks.is_empty() && self.phase != Phase::Offline {
            let envelopes = std::mem::take(&mut self.acks);
            self.transmit(0, Body::Acknowledge(switchboard_wire::switchboard::Acknowledge { envelopes }));
        }
    }
}

fn check_content(content: &[u8]) -> Result<(), CommandError> {
    match content.len() {
        len if len > MAX_CONTENT_LEN => Err(CommandError::TooLarge { len, limit: MAX_CONTENT_LEN }),
        _ => Ok(()),
    }
}

fn envelope_id(rng: &mut (impl CryptoRng + ?Sized)) -> Bytes {
    let mut id = vec![0u8; 16];
    rng.fill_bytes(&mut id);
    id.into()
}

/// Whether a refusal is for now only: the other app out of reach, a mailbox full, or a rate limit.
fn transient(code: i32) -> bool {
    matches!(error_code(code), ErrorCode::Unavailable | ErrorCode::MailboxFull | ErrorCode::RateLimited)
}

fn error_code(code: i32) -> ErrorCode {
    ErrorCode::try_from(code).unwrap_or(ErrorCode::Unspecified)
}

fn failed(body: server_frame::Body) -> RequestFailed {
    match body {
        server_frame::Body::Failure(failure) => RequestFailed::Refused(error_code(failure.code)),
        _ => RequestFailed::UnexpectedAnswer,
    }
}

/// An envelope id as a fixed array (shorter ids are padded with zeros, longer cut).
pub fn id16(bytes: &[u8]) -> [u8; 16] {
    let mut id = [0u8; 16];
    let n = bytes.len().min(16);
    id[..n].copy_from_slice(&bytes[..n]);
    id
}

fn body_what(body: &Body) -> &'static str {
    match body {
        Body::Register(_) => "register",
        Body::Authenticate(_) => "authenticate",
        Body::UploadBundles(_) => "upload bundles",
        Body::FetchBundles(_) => "fetch bundles",
        Body::Send(_) => "send",
        Body::SendGroup(_) => "send group",
        Body::Acknowledge(_) => "ack",
        Body::UploadBlob(_) => "upload blob",
        Body::FetchBlob(_) => "fetch blob",
        Body::OrderChange(_) => "order change",
        Body::FetchHead(_) => "fetch head",
        Body::PublishPerson(_) => "publish person",
        Body::LookupPerson(_) => "lookup person",
        Body::SendToUser(_) => "send to user",
        Body::SetConsent(_) => "set consent",
        Body::Report(_) => "report",
        Body::OpenChannel(_) => "open channel",
        Body::FollowChannel(_) => "follow channel",
        Body::RemoveDevice(_) => "remove device",
    }
}
