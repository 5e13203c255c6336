//! `switchboard-relay-core`: one app's relay as a sans-IO state machine. It knows accounts,
//! bundles, mailboxes and other apps' relays; it never sees a plaintext: every envelope it stores or
//! forwards is end-to-end encrypted by the devices, and it links no crypto that could read them.
//!
//! Guarantee: this package links no tokio, rustls, redb or database client (checked by
//! `scripts/check-cores.sh`). Its driver feeds it frames, connection events and retry ticks and
//! carries out what it hands back: frames to send, connections to close, batches of mutations to
//! commit (randomness comes in as a seeded `StdRng`). The tokio server in `switchboard-relay` and
//! the simulator in `switchboard-sim` are two such drivers.
//!
//! - [`RelayCore`]: the protocol logic.
//! - [`state`]: what is kept on disk, as mutations, and what of it the core holds in memory.
//! - [`storage`]: the [`storage::Store`] a driver commits those mutations to, the
//!   [`storage::Contents`] the core reads mail, outbox frames and blobs back from, and an
//!   in-memory store for both (the redb and PostgreSQL stores live in the driver).
//!
//! # The protocol logic
//!
//! Frames and connection events go in, frames to send and connections to close come out. A driver
//! (the tokio server, or the simulator) owns the sockets, the clock and the disk.
//!
//! Durability: every change is a [`Mutation`] added to the pending batch, and every answer that
//! promises durability (a send's `Done`, a federation acknowledgement, a handed-out prekey) and
//! every delivery of a new envelope is held back until the driver reports the batch committed.
//! The driver commits one batch at a time, so whatever arrives during a commit goes into the next
//! one: group commit. When a device authenticates, its mailbox is handed over in a window of
//! durable envelopes read back from the store, more as it acknowledges (see [`DELIVERY_WINDOW`]):
//! the core holds what each mailbox has (sender, id, size), never its contents. What waits for
//! another app goes out the same way, in a window of durable frames on the link (see
//! [`FORWARD_WINDOW`]), from the start of the outbox each time a link comes up: this can
//! duplicate (which the receiving side drops by sender and id) but never lose.

pub mod state;
pub mod storage;

mod blobs;
mod channels;
mod client;
mod consent;
mod franking;
mod delivery;
mod federation;
mod outbox;
mod hub;
mod people;
mod users;
mod rates;
mod routing;
mod strangers;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use rand::rngs::StdRng;
use switchboard_wire::address::UserAddress;
use switchboard_wire::switchboard::{
    DeviceAddress, Envelope, ErrorCode, Failure, FederationFrame, ServerFrame, federation_frame, server_frame,
};

use crate::state::{DeviceKey, MailKey, Mutation, StoredState};
use crate::storage::Contents;

pub use delivery::{DELIVERY_WINDOW, DELIVERY_WINDOW_BYTES};
pub use outbox::{FORWARD_WINDOW, FORWARD_WINDOW_BYTES};
pub use people::{MAX_PUBLISHED_PEOPLE_BYTES, MAX_PUBLISHED_PERSON_LEN};
pub use users::MAX_ENVELOPES_PER_USER_SEND;
pub use rates::{MAX_RATE_ENTRIES, RateLimits};

/// Largest envelope content (ciphertext) accepted.
pub const MAX_ENVELOPE_CONTENT: usize = 256 * 1024;
/// Envelopes one device's mailbox may hold.
pub const MAILBOX_QUOTA: usize = 10_000;
/// Bytes of content one device's mailbox may hold (attachments travel as blobs, not here).
pub const MAILBOX_BYTES_QUOTA: usize = 128 * 1024 * 1024;
/// Envelopes from one stranger (a user that the recipient's user never sent anything to) that
/// one mailbox holds; more are refused for now (`MailboxFull`) until the recipient takes some,
/// so that no flood can fill the mailbox a contact's mail needs.
pub const STRANGER_ALLOWANCE_PER_SENDER: usize = 64;
/// Envelopes from all strangers together that one mailbox holds; the rest of
/// [`MAILBOX_QUOTA`] is for contacts.
pub const STRANGER_ALLOWANCE_PER_MAILBOX: usize = 1_000;
/// Bytes of content from one stranger that one mailbox holds.
pub const STRANGER_ALLOWANCE_BYTES_PER_SENDER: usize = 1024 * 1024;
/// Bytes of content from all strangers together that one mailbox holds.
pub const STRANGER_ALLOWANCE_BYTES_PER_MAILBOX: usize = 16 * 1024 * 1024;
/// Contacts (users it sent to) kept per user of this app; later ones stay strangers.
pub const MAX_CONTACTS_PER_USER: usize = 10_000;
/// Users one user of this app may have blocked at once.
pub const MAX_BLOCKED_PER_USER: usize = 10_000;
/// Addresses one `SetConsent` may name in all.
pub const MAX_CONSENT_CHANGES: usize = 256;
/// Verified abuse reports one relay keeps (for its moderators); more are refused for now.
pub const MAX_REPORTS: usize = 100_000;
/// Verified abuse reports one user's reports may take of them.
pub const MAX_REPORTS_PER_USER: usize = 1_000;
/// Bytes of reported content one relay keeps.
pub const MAX_REPORT_BYTES: usize = 1024 * 1024 * 1024;
/// Frames waiting for one other app's relay.
pub const OUTBOX_QUOTA: usize = 100_000;
/// Bytes waiting for one other app's relay.
pub const OUTBOX_BYTES_QUOTA: usize = 1024 * 1024 * 1024;
/// Frames from one device waiting for one other app's relay (refused for now past it, to that
/// device only).
pub const OUTBOX_QUOTA_PER_SENDER: usize = 2_000;
/// Recipients of one group envelope.
pub const MAX_GROUP_RECIPIENTS: usize = 10_000;
/// Bundles one device may publish at once.
pub const MAX_BUNDLES_PER_DEVICE: usize = 500;
/// Longest user name (`name@app`): one limit for every crate, kept with the address parser.
pub use switchboard_wire::address::MAX_USER_LEN;
/// How often refused-for-now outbox entries are sent again, and how often the driver ticks
/// ([`RelayCore::tick`]: also the clock of the rate limits).
pub const RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Most ticks an outbox entry refused for now waits before it is sent again: short, since the
/// other app does not say when it has room again.
pub const MAX_RETRY_TICKS: u64 = 8;
/// Length of an envelope id.
pub const ENVELOPE_ID_LEN: usize = 16;
/// Largest attachment blob (it must fit in one frame).
pub const MAX_BLOB_LEN: usize = 768 * 1024;
/// Blobs one relay keeps at most.
pub const MAX_BLOBS: usize = 100_000;
/// Bytes of blobs one relay keeps at most.
pub const MAX_BLOB_BYTES: usize = 4 * 1024 * 1024 * 1024;
/// How long a blob is kept after it was stored: its recipients fetch it long before, or never.
pub const BLOB_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 60 * 60);
/// Device accounts one relay keeps at most.
pub const MAX_ACCOUNTS: usize = 1_000_000;
/// Bytes one group envelope may make a relay store (content × local recipients): a single frame
/// must not be able to fill memory and disk.
pub const MAX_GROUP_FANOUT_BYTES: usize = 64 * 1024 * 1024;
/// Groups one relay orders as their hub.
pub const MAX_GROUPS: usize = 1_000_000;
/// States a hub keeps of each group's chain before its head (32 bytes each), for members that
/// check a change after later ones were ordered: at least `MAX_EPOCH_GAP` of the client core.
pub const MAX_HEAD_HISTORY: usize = 64;
/// Admins of one channel, its owner among them.
pub const MAX_CHANNEL_ADMINS: usize = 32;
/// Channels one relay keeps for its app (a channel id is `name@app`, bounded as any address by
/// [`MAX_USER_LEN`]).
pub const MAX_CHANNELS: usize = 100_000;
/// Channels one user owns (each kept until its relay is wiped: channels are not deleted).
pub const MAX_CHANNELS_PER_USER: usize = 100;
/// Channels one device may follow at once.
pub const MAX_CHANNELS_FOLLOWED_PER_DEVICE: usize = 1_000;
/// Devices of this app that may follow one channel (of any app).
pub const MAX_FOLLOWERS_PER_CHANNEL: usize = 1_000_000;
/// Bytes one channel post may make a relay store for its followers (content × local
/// followers): a post over it is refused (`TooLarge`). A million followers take posts of up to
/// 1 KiB; larger content goes as a blob.
pub const MAX_CHANNEL_FANOUT_BYTES: usize = 1024 * 1024 * 1024;
/// Our requests to other relays are numbered from here, apart from outbox sequence numbers.
const FIRST_REQUEST_ID: u64 = 1 << 63;

/// A connection, as numbered by the driver.
pub type ConnId = u64;

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send a frame to a client connection.
    ToClient {
        /// The connection.
        conn: ConnId,
        /// The frame.
        frame: ServerFrame,
    },
    /// Send a frame on a federation connection.
    ToLink {
        /// The connection.
        conn: ConnId,
        /// The frame.
        frame: FederationFrame,
    },
    /// Close a connection (a misbehaving client, or one replaced by a newer one).
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// The store could not be read (what it says is in the string): the relay cannot hand over
    /// what it promised to keep, and must stop.
    StorageFailed(String),
}

/// A batch of mutations to commit atomically, then report with [`RelayCore::committed`].
#[derive(Debug)]
pub struct Batch {
    /// Its number, increasing; [`RelayCore::committed`] names it.
    pub id: u64,
    /// The changes, all or none of which must be committed.
    pub mutations: Vec<Mutation>,
}

/// A request to another app's relay on behalf of a client. Only that app may answer it, and only
/// about what was asked.
#[derive(Debug)]
struct PendingFetch {
    conn: ConnId,
    request_id: u64,
    app: String,
    /// The user whose bundles, the blob id, or the group whose head, that was asked for.
    subject: String,
    /// A SendToUser forwarded for the device (its answer is Acknowledge or DevicesChanged),
    /// rather than a fetch.
    forward: bool,
    /// An abuse report whose stamp the sender's app was asked to check (answered with
    /// Acknowledge or a refusal): kept once it says yes.
    report: Option<Box<switchboard_wire::switchboard::KeptReport>>,
    /// A follow of a channel asked of its hub for this device: it follows once the hub answers
    /// with the channel's description.
    follower: Option<DeviceKey>,
}

/// Requests one device connection may have out at other apps' relays at once (fetches and
/// forwarded SendToUser); more are refused for now (`RateLimited`), without counting against the
/// device's fetch rate. As many as a group has members: its creator fetches every member's
/// bundles at once.
pub const MAX_PENDING_PER_CONNECTION: usize = 10_000;

/// What happens once the mutations made so far are durable.
#[derive(Debug)]
enum Deferred {
    Client(ConnId, ServerFrame),
    Link(ConnId, FederationFrame),
    /// Hand a device, if it is online, what waits in its mailbox (as its window allows).
    Deliver(DeviceKey),
    /// Tell a device, if it is online, how many one-time prekeys it has left.
    PreKeyCount(DeviceKey, u32),
    /// Send what waits for an app, if the link to it is up (as its window allows).
    Forward(String),
}

/// Counters a test or benchmark can read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Frames carrying envelopes sent to other apps (each one crosses an app boundary).
    pub envelopes_forwarded: u64,
    /// Envelopes stored in local mailboxes.
    pub envelopes_stored: u64,
    /// Batches committed.
    pub batches: u64,
    /// Blobs deleted after [`BLOB_LIFETIME`].
    pub blobs_expired: u64,
    /// Envelopes dropped because their recipient's user blocked their sender.
    pub blocked_dropped: u64,
    /// Abuse reports verified and kept.
    pub reports_verified: u64,
    /// Abuse reports refused (the content, key, stamp or recipient did not hold).
    pub reports_refused: u64,
    /// Channel posts this relay fanned out as their channel's hub.
    pub channel_posts: u64,
    /// Copies of channel posts stored for this relay's followers.
    pub channel_deliveries: u64,
    /// Copies of channel posts not stored because the follower's mailbox was full (or gone): the
    /// post went to the others.
    pub channel_posts_skipped_full: u64,
    /// Copies of channel posts for other apps skipped because that app's outbox was full.
    pub channel_apps_skipped_full: u64,
}

/// One app's relay.
pub struct RelayCore {
    app: String,
    peers: BTreeSet<String>,
    state: StoredState,
    /// Where the contents of mailboxes, outboxes and blobs are read back from.
    contents: Box<dyn Contents>,
    /// One entry per account: its mailbox as envelope key (sender and id, see [`state::mail_key`]) →
    /// sequence number. One lookup answers whether a device exists, how full its mailbox is,
    /// which envelope an acknowledgement names, and whether an envelope is a duplicate.
    mailbox_index: HashMap<DeviceKey, HashMap<MailKey, u64>>,
    /// Per mailbox, the bytes of content it holds.
    mailbox_bytes: HashMap<DeviceKey, usize>,
    /// Bytes of all blobs held.
    blob_bytes: usize,
    /// Every blob by the time it was stored, oldest first: the next to expire.
    blob_times: BTreeSet<(u64, String)>,
    /// How full the outboxes are, by app and by sender.
    outbox_usage: outbox::OutboxUsage,
    /// Per mailbox, the envelopes it holds from strangers.
    strangers: HashMap<DeviceKey, strangers::StrangerMail>,
    next_seq: u64,
    rng: StdRng,
    clients: HashMap<ConnId, Option<DeviceKey>>,
    /// Per client connection: where it comes from (if the driver knows) and how many
    /// registrations it asked for.
    client_sources: HashMap<ConnId, (Option<IpAddr>, u32)>,
    rates: rates::Rates,
    online: HashMap<DeviceKey, ConnId>,
    /// What each online device has been handed and not acknowledged.
    deliveries: delivery::Deliveries,
    /// Every mailbox envelope with a lower sequence number is durable.
    durable_seq: u64,
    /// Federation connections: their app, and whether we dialed them (requests go out on those).
    links: HashMap<ConnId, (String, bool)>,
    outbound_links: HashMap<String, ConnId>,
    /// Channels of other apps this relay told their hub it has no follower of left (at most
    /// [`MAX_CHANNELS`]): a later follow is told again after (see `channels`).
    unfollowed: std::collections::HashSet<String>,
    /// What each link we dialed has been sent and not answered.
    forwarding: HashMap<String, outbox::Forwarding>,
    /// Our requests to other apps (bundles, blobs), by request id.
    pending_fetches: HashMap<u64, PendingFetch>,
    /// The requests in `pending_fetches` by the device connection they answer.
    pending_by_conn: HashMap<ConnId, BTreeSet<u64>>,
    next_request: u64,
    batch: Vec<Mutation>,
    deferred: Vec<Deferred>,
    /// Outbox entries another app refused for now, to send again.
    retry: outbox::Retries,
    /// Ticks since the relay started: the clock of retries and rate limits.
    ticks: u64,
    /// Seconds since the Unix epoch, as the last tick said: the clock of blob expiry.
    clock: u64,
    /// The batch being committed: its id, what waits for it, and the sequence number below
    /// which everything is durable once it is.
    committing: Option<(u64, Vec<Deferred>, u64)>,
    next_batch: u64,
    metrics: Metrics,
    /// Whether the stamp key is durable (nothing is stamped before: see `franking`).
    stamp_key_durable: bool,
}

impl RelayCore {
    /// A relay for `app` that federates with `peers`, restored from `state` (empty for a new one)
    /// and reading the contents of its mailboxes, outboxes and blobs from `contents` (the store
    /// `state` was loaded from). `rng` makes the credentials and blob ids it issues: seed it from
    /// the operating system outside tests and simulations. Give it the time with [`Self::tick`]
    /// before anything else.
    pub fn new(app: &str, peers: impl IntoIterator<Item = String>, state: StoredState, contents: Box<dyn Contents>, mut rng: StdRng) -> Self {
        let new_stamp_key = state.stamp_key.is_none().then(|| {
            let mut key = state::StampKey([0; switchboard_wire::franking::FRANKING_LEN]);
            rand::Rng::fill_bytes(&mut rng, &mut key.0);
            key
        });
        let mut mailbox_index: HashMap<DeviceKey, HashMap<MailKey, u64>> =
            state.accounts.keys().map(|device| (device.clone(), HashMap::new())).collect();
        for (device, mailbox) in &state.mailboxes {
            if let Some(ids) = mailbox_index.get_mut(device) {
                ids.extend(mailbox.iter().map(|(seq, entry)| (entry.key, *seq)));
            }
        }
        let mut relay = RelayCore {
            app: app.to_owned(),
            peers: peers.into_iter().filter(|peer| peer != app).collect(),
            next_seq: state.next_seq(),
            durable_seq: state.next_seq(),
            strangers: strangers::count(&state),
            blob_bytes: state.blobs.values().map(|blob| blob.bytes).sum(),
            blob_times: state.blobs.iter().map(|(id, blob)| (blob.stored_at, id.clone())).collect(),
            outbox_usage: outbox::OutboxUsage::count(&state),
            mailbox_bytes: state.mailboxes.iter().map(|(device, mailbox)| (device.clone(), mailbox.values().map(|e| e.bytes).sum())).collect(),
            state,
            contents,
            mailbox_index,
            rng,
            clients: HashMap::new(),
            client_sources: HashMap::new(),
            rates: rates::Rates::new(RateLimits::default()),
            online: HashMap::new(),
            deliveries: Default::default(),
            links: HashMap::new(),
            outbound_links: HashMap::new(),
            unfollowed: Default::default(),
            forwarding: HashMap::new(),
            pending_fetches: HashMap::new(),
            pending_by_conn: HashMap::new(),
            next_request: FIRST_REQUEST_ID,
            batch: Vec::new(),
            deferred: Vec::new(),
            retry: Default::default(),
            ticks: 0,
            clock: 0,
            committing: None,
            next_batch: 1,
            metrics: Metrics::default(),
            stamp_key_durable: new_stamp_key.is_none(),
        };
        if let Some(key) = new_stamp_key {
            // Durable with the first batch, before anything is stamped with it is answered.
            relay.mutate(Mutation::PutStampKey { key });
        }
        relay
    }

    /// The same relay with other rate limits than [`RateLimits::default`].
    pub fn with_rate_limits(mut self, limits: RateLimits) -> Self {
        self.rates = rates::Rates::new(limits);
        self
    }

    /// This relay's app.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// What the relay has handled since it started (not persisted).
    pub fn metrics(&self) -> Metrics {
        self.metrics
    }

    /// The state as it will be on disk once every batch is committed.
    pub fn state(&self) -> &StoredState {
        &self.state
    }

    // ---- durability ---------------------------------------------------------------------

    /// The next batch to commit, if there is work and no batch is being committed.
    pub fn take_batch(&mut self) -> Option<Batch> {
        if self.committing.is_some() || (self.batch.is_empty() && self.deferred.is_empty()) {
            return None;
        }
        let id = self.next_batch;
        self.next_batch += 1;
        self.committing = Some((id, std::mem::take(&mut self.deferred), self.next_seq));
        Some(Batch { id, mutations: std::mem::take(&mut self.batch) })
    }

    /// The batch `id` is durable: release what waited for it.
    pub fn committed(&mut self, id: u64) -> Vec<Action> {
        let Some((committing, deferred, durable_seq)) = self.committing.take_if(|(batch, _, _)| *batch == id) else {
            return Vec::new();
        };
        debug_assert_eq!(committing, id);
        self.durable_seq = durable_seq;
        self.metrics.batches += 1;
        // The key is in the first batch of a new relay.
        self.stamp_key_durable = true;
        let mut actions = Vec::new();
        for item in deferred {
            match item {
                Deferred::Client(conn, frame) => {
                    if self.clients.contains_key(&conn) {
                        actions.push(Action::ToClient { conn, frame });
                    }
                }
                Deferred::Link(conn, frame) => {
                    if self.links.contains_key(&conn) {
                        actions.push(Action::ToLink { conn, frame });
                    }
                }
                Deferred::Deliver(device) => actions.extend(self.pump(&device)),
                Deferred::PreKeyCount(device, remaining) => {
                    if let Some(&conn) = self.online.get(&device) {
                        actions.push(Action::ToClient { conn, frame: prekey_count(remaining) });
                    }
                }
                Deferred::Forward(app) => actions.extend(self.pump_outbox(&app, false)),
            }
        }
        actions
    }

    fn mutate(&mut self, mutation: Mutation) {
        self.state.apply(&mutation);
        self.batch.push(mutation);
    }

    fn seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    // ---- connections --------------------------------------------------------------------

    /// A client connected, from `source` if the driver knows it (registrations are limited per
    /// source address).
    pub fn client_connected(&mut self, conn: ConnId, source: Option<IpAddr>) {
        self.clients.insert(conn, None);
        self.client_sources.insert(conn, (source, 0));
    }

    /// A client connection closed.
    pub fn client_closed(&mut self, conn: ConnId) {
        self.client_sources.remove(&conn);
        // Answers to what it asked other apps go nowhere now.
        for request in self.pending_by_conn.remove(&conn).unwrap_or_default() {
            self.pending_fetches.remove(&request);
        }
        if let Some(Some(device)) = self.clients.remove(&conn) {
            if self.online.get(&device) == Some(&conn) {
                self.online.remove(&device);
                self.stop_delivering(&device);
            }
        }
    }

    /// Requests out at other apps' relays for one device connection.
    pub(crate) fn pending_for(&self, conn: ConnId) -> usize {
        self.pending_by_conn.get(&conn).map_or(0, BTreeSet::len)
    }

    fn add_pending(&mut self, request: u64, fetch: PendingFetch) {
        self.pending_by_conn.entry(fetch.conn).or_default().insert(request);
        self.pending_fetches.insert(request, fetch);
    }

    fn take_pending(&mut self, request: u64) -> Option<PendingFetch> {
        let fetch = self.pending_fetches.remove(&request)?;
        if let Some(requests) = self.pending_by_conn.get_mut(&fetch.conn) {
            requests.remove(&request);
            if requests.is_empty() {
                self.pending_by_conn.remove(&fetch.conn);
            }
        }
        Some(fetch)
    }

    /// A federation connection to `app` is up; `dialed` when we opened it (our requests and
    /// forwards go out on the connection we dialed). Starts sending what waits in the outbox.
    pub fn link_up(&mut self, conn: ConnId, app: &str, dialed: bool) -> Vec<Action> {
        self.links.insert(conn, (app.to_owned(), dialed));
        if !dialed {
            return Vec::new();
        }
        if self.outbound_links.insert(app.to_owned(), conn).is_some() {
            // Its predecessor's close has not been reported yet: what it had out goes again.
            self.stop_forwarding(app);
        }
        self.forwarding.insert(app.to_owned(), outbox::Forwarding::new(conn));
        self.pump_outbox(app, false)
    }

    /// A federation connection closed. Unacknowledged outbox entries stay for the next link.
    pub fn link_closed(&mut self, conn: ConnId) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some((app, true)) = self.links.remove(&conn) {
            // Unless a newer link to the same app has taken its place.
            if self.outbound_links.get(&app) == Some(&conn) {
                self.outbound_links.remove(&app);
                self.stop_forwarding(&app);
            }
            // Requests that went out on this link will get no answer.
            let mut lost: Vec<u64> = self.pending_fetches.iter().filter(|(_, f)| f.app == app).map(|(id, _)| *id).collect();
            // In request order: a driver that replays a run must see the same actions.
            lost.sort_unstable();
            for request in lost {
                if let Some(fetch) = self.take_pending(request) {
                    actions.push(failure(fetch.conn, fetch.request_id, ErrorCode::Unavailable, "the other app's relay went away"));
                }
            }
        }
        actions
    }

    /// Called by the driver as the relay starts and then every [`RETRY_INTERVAL`], with the time
    /// (`now`, seconds since the Unix epoch): sends again what another app refused for now (a
    /// full mailbox there, or a relay it could not reach) once its wait is over — the wait
    /// doubles with each refusal in a row, up to [`MAX_RETRY_TICKS`] — and deletes the blobs
    /// stored [`BLOB_LIFETIME`] ago.
    pub fn tick(&mut self, now: u64) -> Vec<Action> {
        self.ticks += 1;
        self.clock = now;
        self.rates.tick(self.ticks);
        self.expire_blobs();
        self.retry_due()
    }
}

/// A delivery frame.
fn deliver(conn: ConnId, envelope: Envelope) -> Action {
    Action::ToClient { conn, frame: ServerFrame { request_id: 0, body: Some(server_frame::Body::Deliver(envelope)) } }
}

/// The frame that tells a device how many one-time prekeys it has left.
fn prekey_count(remaining: u32) -> ServerFrame {
    ServerFrame { request_id: 0, body: Some(server_frame::Body::PrekeyCount(switchboard_wire::switchboard::PreKeyCount { remaining })) }
}

/// A failure answer to a client request.
fn failure(conn: ConnId, request_id: u64, code: ErrorCode, detail: &str) -> Action {
    Action::ToClient { conn, frame: failure_frame(request_id, code, detail) }
}

fn failure_frame(request_id: u64, code: ErrorCode, detail: &str) -> ServerFrame {
    ServerFrame {
        request_id,
        body: Some(server_frame::Body::Failure(Failure { code: code as i32, detail: detail.to_owned() })),
    }
}

fn link_failure(request_id: u64, code: ErrorCode, detail: &str) -> FederationFrame {
    FederationFrame {
        request_id,
        body: Some(federation_frame::Body::Failure(Failure { code: code as i32, detail: detail.to_owned() })),
    }
}

/// The app of `name@app` (a user, a group or a blob id), if well formed: see
/// [`switchboard_wire::address`] for the rules.
pub fn app_of(user: &str) -> Option<&str> {
    UserAddress::split(user).ok().map(|(_, app)| app)
}

/// Every device key of `user`, as a range of an ordered map.
fn devices_of(user: &str) -> std::ops::RangeInclusive<DeviceKey> {
    (user.to_owned(), 0)..=(user.to_owned(), u32::MAX)
}

fn device_key(address: &DeviceAddress) -> DeviceKey {
    (address.name.clone(), address.device_id)
}
