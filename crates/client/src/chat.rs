//! A device connected to its app's relay, driven by tokio: what the demo, the terminal chat and
//! the tests use. All of the client's behaviour lives in the sans-IO [`Endpoint`]; this driver
//! only moves bytes and time: frames read → [`Endpoint::handle_frame`], frames polled → written,
//! sleeps until [`Endpoint::poll_timeout`], state polled → written to the database → reported
//! durable. It reconnects by itself, with backoff, after the connection drops.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::Rng;
use switchboard_client_core::endpoint::{Credential, DropReason, EndpointConfig, Member, RequestFailed, Storage};
use switchboard_client_core::{ClientError, Endpoint, Group, attachment};
use switchboard_session::{ProtocolAddress, Suite};
use switchboard_client_core::endpoint::people::LookupFailed;
use switchboard_client_core::endpoint::{CommandError, MAX_CONTENT_LEN};
use switchboard_client_core::franking::Evidence;
use switchboard_wire::message_id::{MessageId, SALT_LEN, content_id, message_id, room_uri, user_uri};
use switchboard_wire::switchboard::Visibility;
use switchboard_wire::switchboard::{AttachmentPointer, Content, ErrorCode, content};
use switchboard_wire::{Message, decode, limits};

use crate::net::{Connection, NetError, RelayAddress};
use crate::persist::{DeviceDatabase, PersistError};

/// One-time prekeys a device publishes when it registers.
pub const BUNDLES_PUBLISHED: u32 = 100;
/// How long a command waits for the relay to take what it queued (the rest stays queued and
/// goes when it can).
pub const SETTLE_LIMIT: Duration = Duration::from_secs(10);
/// How long registering or reconnecting may take.
pub const CONNECT_LIMIT: Duration = Duration::from_secs(20);
/// Pauses between attempts to reconnect: the first...
pub const RECONNECT_FIRST: Duration = Duration::from_millis(100);
/// ...and the longest.
pub const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// Received messages kept to report ([`ChatClient::report`]): the most recent ones, at most this
/// many...
pub const REPORTABLE_KEPT: usize = 256;
/// ...and at most this many bytes of their contents (the oldest go first).
pub const REPORTABLE_BYTES: usize = 8 * 1024 * 1024;
/// Groups whose admins this device remembers after it left them, to say who removed it
/// ([`ChatClient::removed_by`]).
pub const REMOVALS_KEPT: usize = 64;

/// What a chat client can fail with. A variant that wraps another error keeps it as its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// The client core refused something this device was asked to do, or something it received.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A command was refused before anything was sent (too large, unknown group, …).
    #[error(transparent)]
    Command(#[from] switchboard_client_core::endpoint::CommandError),
    /// The relay could not be reached, or is not the app's relay.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The relay refused this device (its registration, or its credential).
    #[error("the relay refused this device: {}", refusal(*.0))]
    AccessRefused(ErrorCode),
    /// The relay did not answer in time (the work stays queued where it can).
    #[error("the relay gave no answer in time")]
    Timeout,
    /// The relay (or another app's, through it) refused or failed a request.
    #[error("a request to the relay failed")]
    Request(#[from] RequestFailed),
    /// A lookup of a person found nothing usable.
    #[error("the lookup found nothing")]
    Lookup(#[from] LookupFailed),
    /// What a command meant to send (a message, a group change) was given up ([`drop_reason`]
    /// says why in words).
    #[error("not sent: {}", drop_reason(.0))]
    Dropped(DropReason),
    /// The device's database could not be read or written.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// [`ChatClient::report`] of a message no longer kept.
    #[error("no received message {} is kept to report (only the last {REPORTABLE_KEPT} are)", short_id(.0))]
    UnknownMessage(MessageId),
}

/// What a relay's refusal means, in words.
pub fn refusal(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Malformed => "the request was malformed",
        ErrorCode::Unauthenticated => "not signed in, or the credential is wrong",
        ErrorCode::UnknownRecipient => "no such user, device, app, group or channel",
        ErrorCode::TooLarge => "over a size or count limit",
        ErrorCode::MailboxFull => "the recipient's mailbox is full",
        ErrorCode::AlreadyRegistered => "that device is registered already",
        ErrorCode::Forbidden => "not allowed",
        ErrorCode::Unavailable => "not available now",
        ErrorCode::RateLimited => "too many requests for now",
        ErrorCode::Unspecified => "no reason given",
    }
}

/// Why a send was given up, in words.
pub fn drop_reason(reason: &DropReason) -> String {
    #[allow(unreachable_patterns)] // DropReason may grow
    match reason {
        DropReason::Refused(code) => format!("the relay refused it: {}", refusal(*code)),
        DropReason::CouldNotSeal(ClientError::NoBundle(device)) => {
            format!("no keys were found for {} (is there such a user? their app may also be out of reach)", device.name())
        }
        DropReason::CouldNotSeal(error) => error.to_string(),
        DropReason::OutboxFull => "the outbox is full".to_owned(),
        DropReason::DevicesChanged { user } => format!("{user}'s devices kept changing while it was sent"),
        other => format!("{other:?}"),
    }
}

/// The first bytes of a message id, in hex: how a person names a message.
pub fn short_id(id: &MessageId) -> String {
    id[..4].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Something that happened, for the user.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A message.
    Message {
        /// The sender's device.
        from: ProtocolAddress,
        /// The group it came in, if any.
        group: Option<String>,
        /// Its id, as every app derives it (`None` for a content without a salt, from a client
        /// that does not make one).
        id: Option<MessageId>,
        /// What it says.
        content: Content,
        /// From someone this person has no conversation with (see [`ChatClient::accept`]), to
        /// be shown apart.
        request: bool,
        /// From a device of a business account, the agent who wrote it, as the business names it
        /// (its devices' roster; a name the business chose, not checked by anyone else).
        agent: Option<String>,
    },
    /// Carried here by another device of this person: a message she sent from it, or one she
    /// received on an account whose sender could not see it linked.
    Synced {
        /// Who wrote it (her, or the sender of what she received).
        from: ProtocolAddress,
        /// Whom she sent it to, for one she sent one to one.
        to: Option<String>,
        /// The group it was in, if any.
        group: Option<String>,
        /// Her device that carried it here.
        carried_by: ProtocolAddress,
        /// Its id: the one every other reader derives.
        id: Option<MessageId>,
        /// What it says.
        content: Content,
    },
    /// A group this device is in changed (or it joined one: `added` holds it).
    GroupChanged {
        /// The group's id (`name@hub-app`).
        group: String,
        /// Its epoch now (0: just created).
        epoch: u64,
        /// The admin device that made the change.
        by: ProtocolAddress,
        /// The member devices it added.
        added: Vec<ProtocolAddress>,
        /// The member devices it removed.
        removed: Vec<ProtocolAddress>,
    },
    /// This device was removed from `group` (by one of the admins [`ChatClient::removed_by`]
    /// names).
    RemovedFromGroup {
        /// The group's id.
        group: String,
    },
    /// `from` holds another state of the group at `epoch`: its admins made conflicting changes.
    GroupForked {
        /// The group's id.
        group: String,
        /// The epoch at which the states part.
        epoch: u64,
        /// The device holding the other state.
        from: ProtocolAddress,
    },
    /// Something this device meant to send was given up (not one a command already returned as
    /// [`ChatError::Dropped`]).
    SendDropped {
        /// Why ([`drop_reason`] says it in words).
        reason: DropReason,
    },
    /// A post to a channel this device follows. It names no follower: followers never learn of
    /// each other.
    ChannelPost {
        /// The channel's id.
        channel: String,
        /// The posting device (one of an admin's).
        from: ProtocolAddress,
        /// Its id (`None` if its content names another channel, or has no salt).
        id: Option<MessageId>,
        /// What it says.
        content: Content,
    },
    /// A follower's reply (a vote, a reaction, a command) to a channel this device posts to:
    /// sent to the channel's admins' devices only.
    ChannelReply {
        /// The channel's id.
        channel: String,
        /// The follower's device.
        from: ProtocolAddress,
        /// What it says.
        content: Content,
    },
    /// A follower started following a channel this device posts to, and was handed this
    /// device's key for it.
    ChannelFollower {
        /// The channel's id.
        channel: String,
        /// The follower's device.
        follower: ProtocolAddress,
    },
    /// The owner of this business account sent its roster of agents.
    AgentsChanged {
        /// This device serves one of them.
        listed: bool,
    },
    /// Another device of this business account assigned a conversation to an agent device.
    Assigned {
        /// The customer (`name@app`).
        customer: String,
        /// The agent device it is assigned to (one the roster lists).
        agent_device: u32,
        /// It was another agent's before.
        handover: bool,
    },
    /// The connection to the relay is up (again) and the outbox is being sent.
    Online,
    /// The connection to the relay is gone; sends wait in the outbox.
    Offline,
    /// Reconnecting by itself, the client met at `address` something that presented a
    /// certificate that is not the relay's ([`NetError::NotTheRelay`]), and no node of the relay
    /// answered: a setup that changed, or someone in the way, to show the user. Said once, until
    /// a connection to the relay comes up again; the client keeps trying meanwhile, with its
    /// backoff. (The calls that connect, [`ChatClient::reconnect`] and those that start a
    /// client, return the same as an error instead.) Best effort, as [`NetError::NotTheRelay`]
    /// says: one in the way that stalls or resets the connection before it presents a
    /// certificate looks like a hung node, and is not reported.
    NotTheRelay {
        /// Where it answered.
        address: std::net::SocketAddr,
    },
}

/// Counters, for demos and tests.
pub use switchboard_client_core::endpoint::EndpointStats as ChatStats;

/// When a drive of the endpoint may end.
enum Until {
    /// The endpoint has nothing waiting.
    Idle,
    /// The endpoint is online (or was refused).
    Online,
    /// Nothing came or went for this long.
    Quiet(Duration),
    /// The answer to blob request `n`.
    Blob(u64),
    /// The answer to lookup `n`.
    Lookup(u64),
    /// Device `n` of this user registered from this one.
    Linked(u32),
    /// The answer to report `n`.
    Report(u64),
    /// The answer to command `n` (a channel opened, followed or left, a device removed).
    Command(u64),
}

/// A message this device received, kept to report it ([`ChatClient::received`]).
#[derive(Clone)]
pub struct Received {
    /// Its sender's device.
    pub from: ProtocolAddress,
    /// The group it came in, if any.
    pub group: Option<String>,
    /// Whether it was a message request when it arrived: a one-to-one message from someone this
    /// person had no conversation with (see [`ChatClient::accept`]).
    pub request: bool,
    evidence: Evidence,
    content: Vec<u8>,
}

impl Received {
    /// What a report of it takes, with [`Self::content`]: its franking, as its sender's app
    /// stamped it, and the key that opens it.
    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }

    /// Its content, as its sender encoded it (the bytes the franking commits to).
    pub fn content(&self) -> &[u8] {
        &self.content
    }
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No content, no key: what it says is the user's business.
        write!(f, "Received {{ from: {}, group: {:?}, request: {}, {} bytes }}", self.from, self.group, self.request, self.content.len())
    }
}

/// The received messages kept to report, oldest first, within [`REPORTABLE_KEPT`] and
/// [`REPORTABLE_BYTES`].
#[derive(Default)]
struct Kept {
    order: std::collections::VecDeque<MessageId>,
    by_id: std::collections::HashMap<MessageId, Received>,
    bytes: usize,
}

impl Kept {
    /// Keeps `received` as `id` (the first copy, if it came twice), forgetting the oldest past
    /// the bounds.
    fn keep(&mut self, id: MessageId, received: Received) {
        if self.by_id.contains_key(&id) || received.content.len() > REPORTABLE_BYTES {
            return;
        }
        self.bytes += received.content.len();
        self.by_id.insert(id, received);
        self.order.push_back(id);
        while self.order.len() > REPORTABLE_KEPT || self.bytes > REPORTABLE_BYTES {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(gone) = self.by_id.remove(&oldest) {
                self.bytes -= gone.content.len();
            }
        }
    }
}

/// A blob request's answer.
enum Blob {
    Stored(String),
    Fetched(Vec<u8>),
}

/// One device connected to a relay.
pub struct ChatClient {
    endpoint: Endpoint,
    relay: RelayAddress,
    connection: Option<Connection>,
    /// The user asked to be offline ([`Self::disconnect`]).
    offline: bool,
    next_attempt: Instant,
    backoff: Duration,
    database: Option<DeviceDatabase>,
    rng: StdRng,
    clock: Instant,
    ready: Vec<Event>,
    /// [`Event::NotTheRelay`] was said since a connection last came up: not again until one does.
    impostor_said: bool,
    refused: Option<ErrorCode>,
    blob: Option<(u64, Result<Blob, RequestFailed>)>,
    lookup: Option<(u64, Result<Vec<String>, LookupFailed>)>,
    linked: Option<(u32, Credential)>,
    report: Option<(u64, Result<(), RequestFailed>)>,
    /// Answers to commands ([`Until::Command`]), by handle, oldest first: at most
    /// [`COMMAND_ANSWERS_KEPT`] (an answer nobody waits for any more is forgotten in time).
    commands: std::collections::VecDeque<(u64, Result<Vec<String>, RequestFailed>)>,
    received: Kept,
    /// The admins of each group this device is in, as it last saw them...
    admins: std::collections::HashMap<String, Vec<ProtocolAddress>>,
    /// ...and of the last [`REMOVALS_KEPT`] groups it was removed from, then.
    removals: std::collections::VecDeque<(String, Vec<ProtocolAddress>)>,
}

/// Answers to commands kept for the call waiting on them.
const COMMAND_ANSWERS_KEPT: usize = 64;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl ChatClient {
    /// Creates device `device_id` of `user` (`name@app`) on the relay at `relay`, and publishes
    /// its bundles. Every key of the device comes from `rng`: seed it from the operating system
    /// (`rand::make_rng()`) outside tests.
    pub async fn register(relay: RelayAddress, user: &str, device_id: u32, rng: StdRng) -> Result<ChatClient, ChatError> {
        ChatClient::create(relay, user, device_id, rng, None).await
    }

    /// Like [`Self::register`], keeping the device in the database at `path` (created 0600) from
    /// now on: every change is written there before what depends on it leaves the device.
    pub async fn register_with_database(
        relay: RelayAddress,
        user: &str,
        device_id: u32,
        rng: StdRng,
        path: &Path,
    ) -> Result<ChatClient, ChatError> {
        ChatClient::create(relay, user, device_id, rng, Some(DeviceDatabase::open(path)?)).await
    }

    /// Device `device_id` of `user`, linked from another device of the user's
    /// ([`Self::link_device`] gave `credential`): it connects and publishes its bundles.
    pub async fn register_linked(relay: RelayAddress, user: &str, device_id: u32, credential: Credential, rng: StdRng) -> Result<ChatClient, ChatError> {
        ChatClient::create_with(relay, user, device_id, Some(credential), rng, None).await
    }

    /// Registers device `device_id` of this device's user, from this one; returns the credential
    /// to hand the new device ([`Self::register_linked`]).
    pub async fn link_device(&mut self, device_id: u32) -> Result<Credential, ChatError> {
        let now = self.now();
        self.endpoint.link_device(now, device_id)?;
        self.drive(Until::Linked(device_id), CONNECT_LIMIT).await?;
        match self.linked.take() {
            Some((linked, credential)) if linked == device_id => Ok(credential),
            _ => Err(self.refused.map_or(ChatError::Timeout, ChatError::AccessRefused)),
        }
    }

    async fn create(relay: RelayAddress, user: &str, device_id: u32, rng: StdRng, database: Option<DeviceDatabase>) -> Result<ChatClient, ChatError> {
        ChatClient::create_with(relay, user, device_id, None, rng, database).await
    }

    async fn create_with(
        relay: RelayAddress,
        user: &str,
        device_id: u32,
        credential: Option<Credential>,
        mut rng: StdRng,
        database: Option<DeviceDatabase>,
    ) -> Result<ChatClient, ChatError> {
        let storage = if database.is_some() { Storage::Durable } else { Storage::InMemory };
        let config = EndpointConfig { prekeys: BUNDLES_PUBLISHED, storage, unix_ms_at_zero: now_ms(), ..EndpointConfig::default() };
        let endpoint = Endpoint::new(ProtocolAddress::new(user, device_id), credential, config, &mut rng);
        let mut client = ChatClient::with_endpoint(endpoint, relay, database, rng);
        if let Some(database) = &client.database {
            // The keys exist before anyone can use them.
            database.write_all(&client.endpoint)?;
            let generation = client.endpoint.poll_persist().map_or(0, |p| p.generation);
            client.endpoint.persisted(generation);
        }
        client.go_online().await?;
        Ok(client)
    }

    /// The device kept in the database at `path`, as it was when it last wrote: it connects to
    /// the relay at `relay`, sends its outbox and fetches its mail. A relay out of reach is not
    /// an error (no node answering, or its handshake not finishing: [`NetError::is_for_now`]):
    /// the client stays offline and keeps trying ([`Self::is_online`]); a relay whose
    /// certificate is not the one expected is.
    pub async fn resume(relay: RelayAddress, path: &Path, mut rng: StdRng) -> Result<ChatClient, ChatError> {
        let database = DeviceDatabase::open(path)?;
        let config = EndpointConfig { prekeys: BUNDLES_PUBLISHED, storage: Storage::Durable, unix_ms_at_zero: now_ms(), ..EndpointConfig::default() };
        let endpoint = database.load(config, &mut rng)?;
        let mut client = ChatClient::with_endpoint(endpoint, relay, Some(database), rng);
        match client.go_online().await {
            // Out of reach, a hung or half-dead node, a dropped connection: for now, and the
            // client keeps trying. A relay that is not ours is an error to show.
            Ok(()) | Err(ChatError::Timeout) => Ok(client),
            Err(ChatError::Net(error)) if error.is_for_now() => Ok(client),
            Err(error) => Err(error),
        }
    }

    fn with_endpoint(endpoint: Endpoint, relay: RelayAddress, database: Option<DeviceDatabase>, rng: StdRng) -> ChatClient {
        let mut client = ChatClient {
            endpoint,
            relay,
            connection: None,
            offline: false,
            next_attempt: Instant::now(),
            backoff: RECONNECT_FIRST,
            database,
            rng,
            clock: Instant::now(),
            ready: Vec::new(),
            impostor_said: false,
            refused: None,
            blob: None,
            lookup: None,
            linked: None,
            report: None,
            commands: std::collections::VecDeque::new(),
            received: Kept::default(),
            admins: std::collections::HashMap::new(),
            removals: std::collections::VecDeque::new(),
        };
        // The groups it is in already (a device resumed from its database).
        for control in client.endpoint.snapshot().groups {
            client.remember_admins(&control.group_id);
        }
        client
    }

    /// Notes the admins `group` has now (forgets it if this device is no member).
    fn remember_admins(&mut self, group: &str) {
        match self.endpoint.group(group) {
            Some(state) => {
                self.admins.insert(group.to_owned(), state.admins().iter().cloned().collect());
            }
            None => {
                self.admins.remove(group);
            }
        }
    }

    /// The groups this device is in (their ids, `name@hub-app`), sorted.
    pub fn groups(&self) -> Vec<&str> {
        let mut groups: Vec<&str> = self.admins.keys().map(String::as_str).collect();
        groups.sort_unstable();
        groups
    }

    /// The admins `group` had when this device last saw it, before it was removed from it: one
    /// of them removed it (the one, if the group had one admin). `None` if this device was not
    /// removed from `group` (among the last [`REMOVALS_KEPT`] removals).
    pub fn removed_by(&self, group: &str) -> Option<&[ProtocolAddress]> {
        self.removals.iter().rev().find(|(id, _)| id == group).map(|(_, admins)| admins.as_slice())
    }

    /// This device's user.
    pub fn user(&self) -> &str {
        self.endpoint.address().name()
    }

    /// This device's address.
    pub fn address(&self) -> ProtocolAddress {
        self.endpoint.address().clone()
    }

    /// The endpoint's counters (sends, deliveries, drops, retries, …).
    pub fn stats(&self) -> ChatStats {
        self.endpoint.stats()
    }

    /// The group `id` as this device sees it.
    pub fn group(&self, id: &str) -> Option<&Group> {
        self.endpoint.group(id)
    }

    /// Whether the relay has authenticated this device on a live connection.
    pub fn is_online(&self) -> bool {
        self.connection.is_some() && self.endpoint.is_online()
    }

    /// What waits to go: envelopes in the outbox for the relay to take, and sends still waiting
    /// for a recipient's bundles.
    pub fn outbox_len(&self) -> usize {
        self.endpoint.outbox_len() + self.endpoint.waiting_len()
    }

    /// Goes offline: the relay keeps this device's mail until it comes back.
    pub fn disconnect(&mut self) {
        self.offline = true;
        self.lost_connection();
    }

    /// Comes back online (or reconnects after the relay restarted) and sends what waits in the
    /// outbox.
    pub async fn reconnect(&mut self) -> Result<(), ChatError> {
        self.offline = false;
        self.lost_connection();
        self.next_attempt = Instant::now();
        self.go_online().await?;
        self.drive(Until::Idle, SETTLE_LIMIT).await
    }

    async fn go_online(&mut self) -> Result<(), ChatError> {
        self.refused = None;
        if self.connection.is_none() {
            self.connection = Some(Connection::connect(&self.relay).await?);
            self.impostor_said = false;
            self.endpoint.connected(self.now());
        }
        self.drive(Until::Online, CONNECT_LIMIT).await?;
        if let Some(code) = self.refused {
            return Err(ChatError::AccessRefused(code));
        }
        if !self.endpoint.is_online() {
            return Err(ChatError::Timeout);
        }
        // The caller asked for this connection: it hears of it from the result, not an event.
        self.ready.retain(|event| !matches!(event, Event::Online | Event::Offline));
        Ok(())
    }

    /// A new content in `conversation` (a group's id, or a conversation of two), with a fresh
    /// salt, encoded, and its id.
    fn new_content(&mut self, group: Option<&str>, conversation: String, body: content::Body) -> Result<(Vec<u8>, MessageId), ChatError> {
        let mut salt = [0u8; SALT_LEN];
        self.rng.fill_bytes(&mut salt);
        let room = room_uri(&conversation);
        let content = Content { salt: salt.to_vec(), sent_at_ms: now_ms(), group_id: group.unwrap_or_default().to_owned(), conversation, body: Some(body) };
        let bytes = content.encode_to_vec();
        if bytes.len() > MAX_CONTENT_LEN {
            return Err(CommandError::TooLarge { len: bytes.len(), limit: MAX_CONTENT_LEN }.into());
        }
        let sender = user_uri(self.endpoint.address().name()).expect("a device's own address is name@app");
        let id = message_id(&sender, &room, &bytes, &salt).expect("URIs of addresses fit the length prefix");
        Ok((bytes, id))
    }

    /// Sends `body` to every device of `user` (to every device of `user`'s person, when this
    /// device knows her record), and waits (a while) for the relay to take it. Returns the
    /// message's id: what every reader, in every app, derives from it.
    pub async fn send(&mut self, user: &str, body: content::Body) -> Result<MessageId, ChatError> {
        let conversation = self.endpoint.conversation_with(user);
        let (bytes, id) = self.new_content(None, conversation, body)?;
        let now = self.now();
        let before = self.before_command();
        self.endpoint.send(now, user, bytes, &mut self.rng)?;
        self.settle(before).await?;
        Ok(id)
    }

    /// Sends `body` to group `id`: encrypted once, fanned out by the relays. Returns the
    /// message's id.
    pub async fn send_group(&mut self, id: &str, body: content::Body) -> Result<MessageId, ChatError> {
        let (bytes, message) = self.new_content(Some(id), id.to_owned(), body)?;
        let now = self.now();
        let before = self.before_command();
        self.endpoint.send_group(now, id, bytes, &mut self.rng)?;
        self.settle(before).await?;
        Ok(message)
    }

    /// Creates group `id` (`name@app`, the app being the group's hub) with every device of `users`.
    pub async fn create_group(&mut self, id: &str, users: &[&str], suite: Suite) -> Result<(), ChatError> {
        let members = users.iter().map(|user| Member::User((*user).to_owned())).collect();
        let now = self.now();
        let before = self.before_command();
        self.endpoint.create_group(now, id, members, suite, &mut self.rng);
        let settled = self.settle(before).await;
        self.remember_admins(id);
        settled
    }

    /// Makes this device's account the first of a new person (see
    /// [`switchboard_client_core::person`]), shown to `visibility`.
    pub async fn become_person(&mut self, visibility: Visibility) -> Result<(), ChatError> {
        let now = self.now();
        let before = self.before_command();
        self.endpoint.become_person(now, visibility, &mut self.rng)?;
        self.settle(before).await
    }

    /// The code a new device of this person is shown to join her (secret: it holds her person
    /// key). `None` before [`Self::become_person`].
    pub fn person_invitation(&self) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        self.endpoint.person_invitation()
    }

    /// Joins the person whose invitation another device of hers showed, linking this account
    /// (shown to `visibility`).
    pub async fn join_person(&mut self, invitation: &[u8], visibility: Visibility) -> Result<(), ChatError> {
        let now = self.now();
        let before = self.before_command();
        self.endpoint.join_person(now, invitation, visibility, &mut self.rng)?;
        self.settle(before).await
    }

    /// This device's person's record (every account of hers), if it belongs to one.
    pub fn person_record(&self) -> Option<&switchboard_client_core::person::PersonRecord> {
        self.endpoint.device().person().map(switchboard_client_core::person::Person::record)
    }

    /// The record of the person `user` belongs to, as this device knows it.
    pub fn person_of(&self, user: &str) -> Option<&switchboard_client_core::person::PersonRecord> {
        self.endpoint.device().people().person_of(user)
    }

    /// The safety number of this person and `user`'s: one for every pair of their accounts.
    pub fn person_safety_number(&self, user: &str) -> Option<String> {
        self.endpoint.person_safety_number(user)
    }

    /// Adds every device of `user` to group `id`.
    pub async fn add_member(&mut self, id: &str, user: &str) -> Result<(), ChatError> {
        let now = self.now();
        let before = self.before_command();
        self.endpoint.add_member(now, id, Member::User(user.to_owned()), &mut self.rng);
        self.settle(before).await
    }

    /// Removes every device of `user` from group `id`; every remaining member rotates its key.
    pub async fn remove_member(&mut self, id: &str, user: &str) -> Result<(), ChatError> {
        let now = self.now();
        let before = self.before_command();
        self.endpoint.remove_member(now, id, Member::User(user.to_owned()), &mut self.rng);
        self.settle(before).await
    }

    /// Sends a file to every device of `user`: encrypted with a fresh key, stored by this
    /// device's relay as an opaque blob, and pointed to by an end-to-end encrypted message.
    pub async fn send_attachment(&mut self, user: &str, file: &[u8], content_type: &str, file_name: &str) -> Result<MessageId, ChatError> {
        let sealed = attachment::seal(file, &mut self.rng);
        let now = self.now();
        let request = self.endpoint.upload_blob(now, sealed.blob.clone());
        let Blob::Stored(blob_id) = self.blob_answer(request).await? else { return Err(ChatError::Timeout) };
        let pointer = AttachmentPointer {
            blob_id,
            key: sealed.key.to_vec(),
            digest: sealed.digest.to_vec(),
            size: file.len() as u64,
            content_type: content_type.to_owned(),
            file_name: file_name.to_owned(),
        };
        self.send(user, content::Body::Attachment(pointer)).await
    }

    /// Fetches and decrypts the file an attachment pointer names (through federation when
    /// another app's relay holds it).
    pub async fn download(&mut self, pointer: &AttachmentPointer) -> Result<Vec<u8>, ChatError> {
        let now = self.now();
        let request = self.endpoint.fetch_blob(now, pointer.blob_id.clone());
        let Blob::Fetched(blob) = self.blob_answer(request).await? else { return Err(ChatError::Timeout) };
        Ok(attachment::open(&blob, &pointer.key, &pointer.digest)?)
    }

    /// Asks which accounts the person behind `user` (one exact address, on any app) made public:
    /// her record, checked against the devices its relay serves, and kept (messages to `user`
    /// then reach every account it names).
    pub async fn lookup_person(&mut self, user: &str) -> Result<Vec<String>, ChatError> {
        let now = self.now();
        let request = self.endpoint.lookup_person(now, user)?;
        self.drive(Until::Lookup(request), CONNECT_LIMIT).await?;
        match self.lookup.take() {
            Some((answered, result)) if answered == request => Ok(result?),
            _ => Err(ChatError::Timeout),
        }
    }

    /// Accepts the person behind `user` (every account of hers this device knows): her messages
    /// are no longer requests, on every device of this person, and this person's relays no longer
    /// hold them to the allowance for strangers. Waits (a while) for the relay to take it.
    pub async fn accept(&mut self, user: &str) -> Result<(), ChatError> {
        let now = self.now();
        let before = self.before_command();
        self.endpoint.accept(now, user, &mut self.rng)?;
        self.settle(before).await
    }

    /// Blocks the person behind `user` (every account of hers this device knows): this person's
    /// relays drop what she sends (answering her as if they had stored it), and her devices drop
    /// anything that still arrives. Her other devices hear of it too. Waits (a while) for the
    /// relay to take it.
    pub async fn block(&mut self, user: &str) -> Result<(), ChatError> {
        let now = self.now();
        let before = self.before_command();
        self.endpoint.block(now, user, &mut self.rng)?;
        self.settle(before).await
    }

    /// Unblocks the person behind `user` (every account of hers this device knows), on every
    /// device of this person. Waits (a while) for the relay to take it.
    pub async fn unblock(&mut self, user: &str) -> Result<(), ChatError> {
        let now = self.now();
        let before = self.before_command();
        self.endpoint.unblock(now, user, &mut self.rng)?;
        self.settle(before).await
    }

    /// The received message `id`, if it is still kept (the last [`REPORTABLE_KEPT`] messages
    /// with an id, within [`REPORTABLE_BYTES`]; in memory only).
    pub fn received(&self, id: &MessageId) -> Option<&Received> {
        self.received.by_id.get(id)
    }

    /// Reports the received message `id` to this device's app, and waits for its verdict: `Ok`
    /// once the app verified, through its sender's app, that she sent exactly this;
    /// [`ChatError::Request`] with `Refused(Forbidden)` if it did not. A message no longer kept
    /// is [`ChatError::UnknownMessage`].
    pub async fn report(&mut self, id: &MessageId) -> Result<(), ChatError> {
        let received = self.received(id).ok_or(ChatError::UnknownMessage(*id))?;
        let (evidence, content) = (received.evidence.clone(), received.content.clone());
        self.report_evidence(&evidence, content).await
    }

    /// Reports a message by its evidence and content (as [`Self::report`] does for one kept
    /// here), and waits for the app's verdict.
    pub async fn report_evidence(&mut self, evidence: &Evidence, content: Vec<u8>) -> Result<(), ChatError> {
        let now = self.now();
        let request = self.endpoint.report(now, evidence, content);
        self.drive(Until::Report(request), CONNECT_LIMIT).await?;
        match self.report.take() {
            Some((answered, result)) if answered == request => Ok(result?),
            _ => Err(ChatError::Timeout),
        }
    }

    /// Waits for the relay's answer to command `request`: what it named (a followed channel's
    /// admins; nothing for the others), or why it refused ([`ChatError::Request`]).
    async fn command_answer(&mut self, request: u64) -> Result<Vec<String>, ChatError> {
        self.drive(Until::Command(request), CONNECT_LIMIT).await?;
        match self.commands.iter().position(|(answered, _)| *answered == request).and_then(|at| self.commands.remove(at)) {
            Some((_, result)) => Ok(result?),
            None => Err(ChatError::Timeout),
        }
    }

    /// Opens `channel` (`name@app`, on this device's app) with `admins` (users; this device's own
    /// user is always one), posting to it from this device under `suite`, and waits for its
    /// relay's answer: `Ok` once the channel exists with those admins. Called again by the
    /// channel's owner, it changes its admins.
    pub async fn open_channel(&mut self, channel: &str, admins: &[&str], suite: Suite) -> Result<(), ChatError> {
        let now = self.now();
        let admins = admins.iter().map(|admin| (*admin).to_owned()).collect();
        let request = self.endpoint.open_channel(now, channel, admins, suite, &mut self.rng)?;
        self.command_answer(request).await.map(|_| ())
    }

    /// Posts to `channel` from this device too (this device's user being one of its admins, the
    /// channel opened by another device), under `suite`: from now on it hands its key to the
    /// followers who ask. Waits (a while) for the relay to take what it queued.
    pub async fn administer_channel(&mut self, channel: &str, suite: Suite) -> Result<(), ChatError> {
        let now = self.now();
        let before = self.before_command();
        self.endpoint.administer_channel(now, channel, suite, &mut self.rng)?;
        self.settle(before).await
    }

    /// Posts `body` to `channel` (one this device administers): encrypted once, fanned out by the
    /// channel's app to every app with followers; no follower learns who else follows. Waits (a
    /// while) for the relay to take it. Returns the post's id, as every follower derives it.
    pub async fn post(&mut self, channel: &str, body: content::Body) -> Result<MessageId, ChatError> {
        let (bytes, id) = self.new_content(Some(channel), channel.to_owned(), body)?;
        let now = self.now();
        let before = self.before_command();
        self.endpoint.post(now, channel, bytes, &mut self.rng)?;
        self.settle(before).await?;
        Ok(id)
    }

    /// Follows `channel` and waits for the relay's answer: the channel's admins (whose devices
    /// this device then asks for their keys; posts from a device whose key has not arrived yet
    /// are held until it does). Posts made before following are not delivered.
    pub async fn follow(&mut self, channel: &str) -> Result<Vec<String>, ChatError> {
        let now = self.now();
        let request = self.endpoint.follow(now, channel)?;
        self.command_answer(request).await
    }

    /// Stops following `channel`: its keys are forgotten at once, and once this returns `Ok` the
    /// relay delivers no more of its posts. Its admins hear nothing of it.
    pub async fn leave(&mut self, channel: &str) -> Result<(), ChatError> {
        let now = self.now();
        let request = self.endpoint.leave(now, channel)?;
        self.command_answer(request).await.map(|_| ())
    }

    /// Sends `body` (a vote, a reaction, a command for a bot) to the admins of `channel`, which
    /// this device follows: to every device of each admin, pairwise, and to no follower. Waits (a
    /// while) for the relay to take it.
    pub async fn reply_to_channel(&mut self, channel: &str, body: content::Body) -> Result<(), ChatError> {
        let (bytes, _) = self.new_content(Some(channel), channel.to_owned(), body)?;
        let now = self.now();
        let before = self.before_command();
        self.endpoint.reply_to_channel(now, channel, bytes, &mut self.rng)?;
        self.settle(before).await
    }

    /// Makes this account a business served by `agents` (each device of the account and the
    /// agent it serves), from its owner's device (device 1), replacing any roster before, and
    /// tells the account's other devices. Messages a listed device sends name its agent. Waits (a
    /// while) for the relay to take it.
    pub async fn set_agents(&mut self, agents: &[(u32, &str)]) -> Result<(), ChatError> {
        let now = self.now();
        let before = self.before_command();
        let agents = agents.iter().map(|(device, name)| (*device, (*name).to_owned())).collect();
        self.endpoint.set_agents(now, agents, &mut self.rng)?;
        self.settle(before).await
    }

    /// Assigns the conversation with `customer` to agent device `agent_device` (one the roster
    /// lists), on every device of this business account. Returns whether it was a hand-over (it
    /// was another agent's). Waits (a while) for the relay to take what tells the others.
    pub async fn assign(&mut self, customer: &str, agent_device: u32) -> Result<bool, ChatError> {
        let now = self.now();
        let before = self.before_command();
        let handover = self.endpoint.assign(now, customer, agent_device, &mut self.rng)?;
        self.settle(before).await?;
        Ok(handover)
    }

    /// Removes agent device `device_id` from this business account (from its owner's device),
    /// and waits for the relay: once `Ok`, the relay has deleted the device (it reads nothing
    /// sent after), and the roster without it is on its way to the other devices.
    pub async fn remove_agent(&mut self, device_id: u32) -> Result<(), ChatError> {
        let now = self.now();
        let request = self.endpoint.remove_agent(now, device_id)?;
        self.command_answer(request).await?;
        // The roster without it goes now.
        self.flush().await
    }

    /// The business's analytics as this device counted them from what it decrypted and sent
    /// (`None` if it serves no business). They never leave the device.
    pub fn analytics(&self) -> Option<switchboard_client_core::business::Analytics> {
        self.endpoint.analytics()
    }

    /// The business roster as this device knows it: each device of the account and the agent it
    /// serves (empty if it serves no business).
    pub fn agents(&self) -> std::collections::BTreeMap<u32, String> {
        self.endpoint.device().business().map(|business| business.agents().clone()).unwrap_or_default()
    }

    async fn blob_answer(&mut self, request: u64) -> Result<Blob, ChatError> {
        self.drive(Until::Blob(request), CONNECT_LIMIT).await?;
        match self.blob.take() {
            Some((answered, result)) if answered == request => Ok(result?),
            _ => Err(ChatError::Timeout),
        }
    }

    /// Where a command starts: sends dropped so far, events so far (see [`Self::settle`]).
    fn before_command(&self) -> (u64, usize) {
        (self.endpoint.stats().sends_dropped, self.ready.len())
    }

    /// Waits (up to [`SETTLE_LIMIT`]) until the relay has taken everything queued; what it could
    /// not take yet stays queued. A send given up since the command began is an error (the
    /// caller hears of it from the result, not from an [`Event::SendDropped`] as well).
    async fn settle(&mut self, (dropped, first_new): (u64, usize)) -> Result<(), ChatError> {
        self.drive(Until::Idle, SETTLE_LIMIT).await?;
        if self.endpoint.stats().sends_dropped > dropped {
            let first_new = first_new.min(self.ready.len());
            let at = self.ready[first_new..].iter().position(|event| matches!(event, Event::SendDropped { .. }));
            if let Some(at) = at {
                let Event::SendDropped { reason } = self.ready.remove(first_new + at) else { unreachable!("found as a drop") };
                return Err(ChatError::Dropped(reason));
            }
        }
        Ok(())
    }

    /// Sends what waits and takes what the relay delivers, until nothing comes or goes for
    /// `quiet`. Returns what happened since the last call.
    pub async fn poll(&mut self, quiet: Duration) -> Result<Vec<Event>, ChatError> {
        self.drive(Until::Quiet(quiet), Duration::from_secs(3600)).await?;
        Ok(std::mem::take(&mut self.ready))
    }

    /// Waits (a while) until the outbox is empty.
    pub async fn flush(&mut self) -> Result<(), ChatError> {
        self.drive(Until::Idle, SETTLE_LIMIT).await
    }

    fn now(&self) -> Duration {
        self.clock.elapsed()
    }

    fn lost_connection(&mut self) {
        if self.connection.take().is_some() {
            let now = self.now();
            self.endpoint.disconnected(now);
            self.ready.push(Event::Offline);
        }
    }

    fn done(&self, until: &Until, last_activity: Instant) -> bool {
        match until {
            Until::Idle => self.endpoint.is_idle() || self.connection.is_none(),
            Until::Online => self.endpoint.is_online() || self.refused.is_some() || self.connection.is_none(),
            Until::Quiet(quiet) => last_activity.elapsed() >= *quiet,
            Until::Blob(request) => self.blob.as_ref().is_some_and(|(answered, _)| answered == request) || self.connection.is_none(),
            Until::Lookup(request) => self.lookup.as_ref().is_some_and(|(answered, _)| answered == request) || self.connection.is_none(),
            Until::Report(request) => self.report.as_ref().is_some_and(|(answered, _)| answered == request) || self.connection.is_none(),
            Until::Command(request) => self.commands.iter().any(|(answered, _)| answered == request) || self.connection.is_none(),
            Until::Linked(device_id) => {
                self.linked.as_ref().is_some_and(|(linked, _)| linked == device_id) || self.refused.is_some() || self.connection.is_none()
            }
        }
    }

    /// Runs the endpoint over the connection until `until` holds or `limit` passes.
    async fn drive(&mut self, until: Until, limit: Duration) -> Result<(), ChatError> {
        let deadline = Instant::now() + limit;
        let mut last_activity = Instant::now();
        loop {
            if self.pump().await? {
                last_activity = Instant::now();
            }
            if self.done(&until, last_activity) || Instant::now() >= deadline {
                return Ok(());
            }
            if self.connection.is_none() && !self.offline && Instant::now() >= self.next_attempt {
                match Connection::connect(&self.relay).await {
                    Ok(connection) => {
                        // The backoff goes on growing until the relay takes this device.
                        self.next_attempt = Instant::now() + self.backoff;
                        self.backoff = (self.backoff * 2).min(RECONNECT_MAX);
                        self.connection = Some(connection);
                        self.impostor_said = false;
                        let now = self.now();
                        self.endpoint.connected(now);
                        continue;
                    }
                    Err(error) => {
                        // Out of reach, or a node that did not finish its handshake, is for
                        // now and said by Offline already; a certificate that is not the
                        // relay's is for the user to know, once, while trying on.
                        if let NetError::NotTheRelay { address, .. } = error
                            && !self.impostor_said
                        {
                            self.impostor_said = true;
                            self.ready.push(Event::NotTheRelay { address });
                        }
                        self.next_attempt = Instant::now() + self.backoff;
                        self.backoff = (self.backoff * 2).min(RECONNECT_MAX);
                    }
                }
            }
            let mut wake = deadline;
            if let Some(timeout) = self.endpoint.poll_timeout() {
                wake = wake.min(self.clock + timeout);
            }
            if self.connection.is_none() && !self.offline {
                wake = wake.min(self.next_attempt);
            }
            if let Until::Quiet(quiet) = until {
                wake = wake.min(last_activity + quiet);
            }
            let sleep = tokio::time::sleep_until(wake.into());
            let frame = async {
                match self.connection.as_mut() {
                    Some(connection) => Some(connection.next_frame().await),
                    None => std::future::pending().await,
                }
            };
            let arrived = tokio::select! {
                frame = frame => frame,
                () = sleep => None,
            };
            let now = self.now();
            match arrived {
                Some(Some(bytes)) => {
                    last_activity = Instant::now();
                    self.endpoint.handle_frame(now, &bytes, &mut self.rng);
                }
                Some(None) => self.lost_connection(),
                None => {
                    if self.endpoint.poll_timeout().is_some_and(|timeout| timeout <= now) {
                        self.endpoint.handle_timeout(now, &mut self.rng);
                    }
                }
            }
        }
    }

    /// Carries out what the endpoint asks: state written (then reported durable), frames
    /// written, events collected. Returns whether any frame went out.
    async fn pump(&mut self) -> Result<bool, ChatError> {
        let mut wrote = false;
        loop {
            if let Some(persist) = self.endpoint.poll_persist() {
                if let Some(database) = &self.database {
                    if let Err(error) = database.write(&self.endpoint, &persist) {
                        // Nothing it covers leaves the device; the next write tries it again.
                        self.endpoint.persist_failed(persist);
                        return Err(error.into());
                    }
                }
                self.endpoint.persisted(persist.generation);
            }
            let mut progressed = false;
            while let Some(transmit) = self.endpoint.poll_transmit() {
                progressed = true;
                let Some(connection) = self.connection.as_mut() else { break };
                if connection.write(&transmit.bytes).await.is_err() {
                    self.lost_connection();
                    break;
                }
                wrote = true;
            }
            while let Some(event) = self.endpoint.poll_event() {
                progressed = true;
                self.event(event);
            }
            if !progressed {
                return Ok(wrote);
            }
        }
    }

    fn event(&mut self, event: switchboard_client_core::Event) {
        use switchboard_client_core::Event as E;
        match event {
            E::Online => {
                self.backoff = RECONNECT_FIRST;
                self.ready.push(Event::Online);
            }
            E::ReportAnswered { request, result } => self.report = Some((request, result)),
            E::AccessRefused { code } => {
                // Tried again on a new connection, after the backoff.
                self.refused = Some(code);
                tracing::warn!(?code, "the relay refused this device");
                self.lost_connection();
            }
            E::Message { from, group, content, request, evidence, agent, .. } => match decode::<Content>(&content, limits::MAX_PAYLOAD_LEN) {
                Ok(decoded) => {
                    // A group message's id names the group it came in: a content that claims
                    // another group (or none) gets no id, so it cannot pass for one there.
                    let in_its_group = decoded.group_id == group.as_deref().unwrap_or_default();
                    let id = content_id(from.name(), &content).filter(|_| in_its_group);
                    if let Some(id) = id {
                        let received = Received { from: from.clone(), group: group.clone(), request, evidence: *evidence, content };
                        self.received.keep(id, received);
                    }
                    self.ready.push(Event::Message { from, group, id, content: decoded, request, agent })
                }
                Err(error) => tracing::debug!(%error, "a message whose content does not decode"),
            },
            // Carried here by another device of this person: shown as what it carries.
            E::Synced { from, to, group, carried_by, content, .. } => match decode::<Content>(&content, limits::MAX_PAYLOAD_LEN) {
                Ok(decoded) => {
                    let id = content_id(from.name(), &content);
                    self.ready.push(Event::Synced { from, to, group, carried_by, id, content: decoded })
                }
                Err(error) => tracing::debug!(%error, "a transcript whose content does not decode"),
            },
            E::LinksChanged => tracing::info!("this person's linked accounts changed"),
            E::PersonKnown { via, .. } => tracing::info!(%via, "a person's linked accounts arrived"),
            E::GroupChanged { group, epoch, by, added, removed, .. } => {
                self.remember_admins(&group);
                self.ready.push(Event::GroupChanged { group, epoch, by, added, removed })
            }
            E::RemovedFromGroup { group } => {
                let admins = self.admins.remove(&group).unwrap_or_default();
                self.removals.push_back((group.clone(), admins));
                if self.removals.len() > REMOVALS_KEPT {
                    self.removals.pop_front();
                }
                self.ready.push(Event::RemovedFromGroup { group })
            }
            E::GroupForked { group, epoch, from } => {
                tracing::warn!(%group, epoch, %from, "a group forked");
                self.ready.push(Event::GroupForked { group, epoch, from });
            }
            E::UnorderedChange { group, from } => tracing::warn!(%group, %from, "an announcement of joining a group its hub does not know"),
            E::SendDropped { reason } => {
                tracing::warn!(?reason, "a send was given up");
                self.ready.push(Event::SendDropped { reason });
            }
            E::Refused { reason, .. } => tracing::debug!(%reason, "a delivery was refused"),
            E::DeviceLinked { device_id, credential } => self.linked = Some((device_id, credential)),
            E::DuplicateDropped { .. } => {}
            E::BlobStored { request, result } => self.blob = Some((request, result.map(Blob::Stored))),
            E::BlobFetched { request, result } => self.blob = Some((request, result.map(Blob::Fetched))),
            E::PersonLookedUp { request, result, .. } => self.lookup = Some((request, result)),
            E::ChannelOpened { request, result, .. } | E::ChannelLeft { request, result, .. } | E::DeviceRemoved { request, result, .. } => {
                self.command_answered(request, result.map(|()| Vec::new()))
            }
            E::ChannelFollowed { request, result, .. } => self.command_answered(request, result),
            E::ChannelPost { channel, from, content, evidence, .. } => match decode::<Content>(&content, limits::MAX_PAYLOAD_LEN) {
                Ok(decoded) => {
                    // Like a group message's, a post's id names its channel.
                    let id = content_id(from.name(), &content).filter(|_| decoded.group_id == channel);
                    if let Some(id) = id {
                        let received = Received { from: from.clone(), group: Some(channel.clone()), request: false, evidence: *evidence, content };
                        self.received.keep(id, received);
                    }
                    self.ready.push(Event::ChannelPost { channel, from, id, content: decoded });
                }
                Err(error) => tracing::debug!(%error, "a channel post whose content does not decode"),
            },
            E::ChannelReply { channel, from, content } => match decode::<Content>(&content, limits::MAX_PAYLOAD_LEN) {
                Ok(decoded) => self.ready.push(Event::ChannelReply { channel, from, content: decoded }),
                Err(error) => tracing::debug!(%error, "a channel reply whose content does not decode"),
            },
            E::ChannelFollower { channel, follower } => self.ready.push(Event::ChannelFollower { channel, follower }),
            E::AgentsChanged { listed } => self.ready.push(Event::AgentsChanged { listed }),
            E::Assigned { customer, agent_device, handover } => self.ready.push(Event::Assigned { customer, agent_device, handover }),
        }
    }

    fn command_answered(&mut self, request: u64, result: Result<Vec<String>, RequestFailed>) {
        self.commands.push_back((request, result));
        while self.commands.len() > COMMAND_ANSWERS_KEPT {
            self.commands.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error and its causes, as `switchboard` prints them: one line, joined by ": ".
    fn chain(error: &dyn std::error::Error) -> String {
        let mut said = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            said.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        said
    }

    #[test]
    fn a_wrapped_error_is_said_once_in_the_chain() {
        let error = ChatError::Request(RequestFailed::Refused(ErrorCode::Forbidden));
        let said = chain(&error);
        assert_eq!(said.matches("refused").count(), 1, "{said}");
        assert!(std::error::Error::source(&error).is_some());
        let error = ChatError::Net(NetError::Unreachable {
            address: "127.0.0.1:7001".parse().unwrap(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        });
        let said = chain(&error);
        assert!(said.starts_with("cannot reach the relay at 127.0.0.1:7001: ") && said.matches("refused").count() == 1, "{said}");
    }

    #[test]
    fn a_dropped_send_says_why_in_words() {
        let nobody = ProtocolAddress::new("nobody@blue", 1);
        let said = ChatError::Dropped(DropReason::CouldNotSeal(ClientError::NoBundle(nobody))).to_string();
        assert!(said.starts_with("not sent: no keys were found for nobody@blue"), "{said}");
        let said = ChatError::Dropped(DropReason::Refused(ErrorCode::UnknownRecipient)).to_string();
        assert_eq!(said, "not sent: the relay refused it: no such user, device, app, group or channel");
        assert!(!ChatError::AccessRefused(ErrorCode::Unauthenticated).to_string().contains("Unauthenticated"));
    }
}
