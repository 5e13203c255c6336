//! State in PostgreSQL: the same tables as the redb store, one transaction per batch (with the
//! mailboxes sharded over several databases, one on each that the batch touches, committed in two
//! phases), committed before [`Store::commit`] returns (with `synchronous_commit = on` and a synchronous standby, on
//! the standby too: what the relay acknowledged survives a failover).
//!
//! The store and each reader own a connection per database (the home, and each mailbox shard),
//! each on a thread of its own (see `worker.rs`):
//! `postgres::Client` cannot be used from inside a tokio runtime, which is where the core reads
//! [`Contents`]. The connection string may hold a password: it is never kept as text, and errors
//! and `Debug` name only the server and database (`postgres::Config`'s `Debug` hides the
//! password). Connections are made without TLS: point the relay at a server on loopback, a Unix
//! socket, or a network it trusts.
//!
//! Several nodes of one app may share the database, one active at a time: see [`Leadership`]
//! (in `leader.rs`) for the lock that says which, and why.
//!
//! Mail and frames for other apps that a commit wrote are kept in memory until the core reads
//! them or they are the oldest past a bound in bytes (`recent.rs`), so the read that follows each
//! commit is no round trip.
//!
//! The mailboxes may be sharded by recipient over several primaries, a batch that spans them
//! committing in two phases: see `shards.rs` ([`MailboxShard`]).
//!
//! Every relay, one node or several, needs each database's connections on one server: a
//! connection string (the home's or a shard's) naming more than one host is refused ([`PostgresRefusal::MoreThanOneHost`]). Otherwise the
//! writer could reach the primary and the reader a standby that lags (a read missing what was
//! just committed stops the relay), or the lock one server and the writes another.

mod leader;
mod recent;
mod shards;
mod sql;
mod worker;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use postgres::{Client, Config, IsolationLevel, NoTls};
use switchboard_wire::switchboard::{Envelope, FederationFrame};

use super::{Contents, Store, StoreError};
use crate::state::{DeviceKey, Mutation, StoredState};
use recent::Recent;
use shards::{Place, ShardMap, Shards};
use sql::{Reads, Writes, failed};
use worker::Worker;

pub use leader::Leadership;
pub use shards::{MAILBOX_BUCKETS, MAX_MAILBOX_SHARDS, MailboxShard, check_shards, mailbox_bucket};

/// How long a connection attempt may take when the connection string sets no `connect_timeout`:
/// a relay that cannot reach its database says so rather than waiting forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keepalive on a connection when the connection string sets no `keepalives_idle`: first
/// probe after this much silence, then every [`KEEPALIVE_INTERVAL`], [`KEEPALIVE_RETRIES`] of
/// them (libpq's and the kernel's default waits two hours before the first).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// See [`KEEPALIVE_IDLE`].
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// See [`KEEPALIVE_IDLE`].
const KEEPALIVE_RETRIES: u32 = 3;
/// How long sent data may go unacknowledged by the server's machine before the connection is
/// dropped, when the connection string sets no `tcp_user_timeout` (the kernel's default is about
/// 15 minutes of retransmissions). The string gives it in seconds (libpq: milliseconds).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read ([`Contents`]) may take: the core waits for it.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a batch may take to commit (with a synchronous standby, to be replicated too): the
/// committer waits for it, and the relay stops when it fails.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long loading the whole state at open may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// What the store and [`Leadership`] refuse to work with, before they touch the relay's tables:
/// the source of the [`StoreError`] they return ([`Self::of`] finds it). No variant holds a
/// password, or any of the connection string but a count of its hosts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresRefusal {
    /// The connection string names more than one host (`host=a,b`, `hostaddr=…,…`,
    /// `postgresql://…@a,b/…`): the relay's connections could each reach another server, its
    /// writer the primary and its reader a standby that lags, or its lock one server and its
    /// writes another (a hot standby grants advisory locks too). Refused for every relay, the
    /// only node of its app or one of several: name the primary alone (a fixed address, or a
    /// name that moves with it).
    #[error(
        "the PostgreSQL connection string names more than one host ({hosts}): a relay's connections must all reach one \
         server (its writer the primary, its reader no lagging standby, its lock where it writes), so name the primary alone"
    )]
    MoreThanOneHost {
        /// How many it names.
        hosts: usize,
    },
    /// The database already holds the relay state of another app: each app's relay needs a
    /// database of its own (the relay's tables have no column for the app). Said by
    /// [`Leadership::acquire`], which records in the database the app whose nodes take its lock
    /// (see `leader.rs`).
    #[error("the database holds the relay state of app {holder:?}, not of {app:?}: each app's relay needs a database of its own")]
    AnotherApp {
        /// The app that asked.
        app: String,
        /// The app the database is recorded as holding the state of (its first 64 bytes, as
        /// UTF-8 where they are: the record is read from the database).
        holder: String,
    },
    /// More mailbox shards than [`MAX_MAILBOX_SHARDS`].
    #[error("{shards} mailbox shards: at most {MAX_MAILBOX_SHARDS}")]
    TooManyShards {
        /// How many the map gives.
        shards: usize,
    },
    /// A mailbox shard's range of buckets is empty (its first after its last).
    #[error("a mailbox shard takes no bucket: {first}-{last} is empty")]
    NoBuckets {
        /// The range's first bucket.
        first: u8,
        /// Its last.
        last: u8,
    },
    /// Two mailbox shards take the same bucket.
    #[error("two mailbox shards take bucket {bucket}")]
    BucketTakenTwice {
        /// The first bucket taken twice.
        bucket: u8,
    },
    /// A stored mailbox is not where the shard map puts it: the map changed since it was
    /// stored. Mailboxes are not moved between shards; restore the map it was stored under.
    #[error(
        "a mailbox of bucket {bucket} is stored where the shard map no longer puts it: the map changed, and mailboxes are \
         not moved between shards (restore the map they were stored under)"
    )]
    MailboxOnAnotherShard {
        /// The mailbox's bucket.
        bucket: u8,
    },
    /// The home database records mailbox shards that the map lacks: they may hold mailboxes,
    /// which would be lost. A shard, once in the map, stays in it.
    #[error("the shard map lacks {shards} of the mailbox shards the home database records: they may hold mailboxes, so keep them in the map")]
    ShardMissing {
        /// How many it lacks.
        shards: usize,
    },
    /// A mailbox shard's database is recorded as belonging to another home database: each
    /// shard belongs to one app's home.
    #[error("the mailbox shard's database belongs to another home database: each shard belongs to one app's")]
    ShardOfAnotherHome,
    /// A mailbox shard's database holds a relay's own state (accounts or secrets): it is an
    /// app's home (this one's, named as a shard by mistake, or another's), not a shard.
    #[error("the mailbox shard's database holds a relay's own state (accounts or secrets): it is an app's home database, not a shard")]
    ShardIsAHome,
    /// Two entries of the shard map name one database.
    #[error("two mailbox shards of the map are one database")]
    ShardTwice,
    /// A mailbox shard's server has `max_prepared_transactions = 0` (PostgreSQL's default): a
    /// batch spanning the home and a shard commits in two phases, and needs it above 0.
    #[error(
        "the mailbox shard's server has max_prepared_transactions = 0: a batch spanning shards commits in two phases, so set \
         it above 0 (the number of connections, say) and restart the server"
    )]
    PreparedTransactionsDisabled,
}

impl PostgresRefusal {
    /// The refusal `error` is, or was caused by, if any: what a caller matches on.
    pub fn of(error: &StoreError) -> Option<&PostgresRefusal> {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(error) = cause {
            if let Some(refusal) = error.downcast_ref::<PostgresRefusal>() {
                return Some(refusal);
            }
            cause = error.source();
        }
        None
    }
}

/// A relay's PostgreSQL database, to commit batches to, and its mailbox shards if it has any.
pub struct PostgresStore {
    config: Config,
    writer: Worker<Writer>,
    recent: Recent,
    shards: Shards,
    shard_configs: Vec<Config>,
}

/// What the writer's thread holds.
struct Writer {
    client: Client,
    writes: Writes,
    warned: Warned,
    /// The fence and its statements, checked before each batch, when this node is one of
    /// several ([`PostgresStore::open_active`]).
    fencing: Option<(leader::Fence, leader::FenceStatements)>,
}

/// The same database, to read mail, frames and blobs back from (see [`PostgresStore::contents`]),
/// over a connection of its own.
pub struct PostgresContents {
    target: String,
    reader: Worker<(Client, Reads)>,
    shard_readers: Vec<Worker<(Client, Reads)>>,
    map: ShardMap,
    recent: Recent,
}

/// The server(s) and database `config` points at, for errors and logs (never its password).
fn target(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!("PostgreSQL at {} port {} database {}", hosts.join(","), ports.join(","), config.get_dbname().unwrap_or("(the user's)"))
}

/// Connects on the calling thread (a worker's).
fn connect(config: &Config) -> Result<Client, StoreError> {
    config.connect(NoTls).map_err(|error| StoreError::backend(format!("connecting to {}", target(config)), error))
}

/// The connection string `url`, with the relay's defaults for what it does not set. Refuses one
/// naming more than one host ([`PostgresRefusal::MoreThanOneHost`]).
fn parse(url: &str) -> Result<Config, StoreError> {
    let what = "the PostgreSQL connection string";
    // The parser's errors name the option, never its value.
    let mut config = Config::from_str(url).map_err(|error| StoreError::backend(what, error))?;
    let hosts = config.get_hosts().len().max(config.get_hostaddrs().len());
    if hosts > 1 {
        return Err(StoreError::backend(what, PostgresRefusal::MoreThanOneHost { hosts }));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("switchboard-relay");
    }
    // A server that goes silent (its machine gone, the network dropping everything) is noticed
    // within tens of seconds, not the kernel's two hours (keepalive) or 15 minutes (unacknowledged
    // data). `keepalives=0` in the string is kept; 7,200 s is the unset default.
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(KEEPALIVE_INTERVAL);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(KEEPALIVE_RETRIES);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    Ok(config)
}

/// Whether a `WARNING` (SQLSTATE 01000) arrived on the writer's connection since it was last
/// cleared. PostgreSQL answers a COMMIT whose wait for the synchronous standby was cancelled
/// (`pg_cancel_backend`, a statement timeout) with such a warning — "canceling wait for
/// synchronous replication … already committed locally, but might not have been replicated" —
/// and the COMMIT itself succeeds: without this, the relay would acknowledge a batch the standby
/// may not have. Matched by its code, not its text (the server may translate it); no other
/// warning of that code is sent for a COMMIT.
#[derive(Clone, Default)]
struct Warned(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Warned {
    fn notice(&self, notice: &postgres::error::DbError) {
        if *notice.code() == postgres::error::SqlState::WARNING {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn take(&self) -> bool {
        self.0.swap(false, std::sync::atomic::Ordering::SeqCst)
    }
}

impl PostgresStore {
    /// Connects to the database `url` names (a libpq connection string, `host=… dbname=…` or
    /// `postgresql://…`), creates the relay's tables if they are missing, and loads what they
    /// hold. Blocks while it does so (safe from any thread, a runtime's included). For the only
    /// node of its app: nodes that share the database use [`Self::open_active`]. Refuses a `url`
    /// naming more than one host ([`PostgresRefusal::MoreThanOneHost`]): the writer and the
    /// reader must reach the same server. Does not check which app the database is recorded as
    /// holding ([`Leadership::acquire`] does): one node alone must be given its app's database.
    pub fn open(url: &str) -> Result<(PostgresStore, StoredState), StoreError> {
        PostgresStore::open_fenced(url, &[], None)
    }

    /// Like [`Self::open`] or, with `leadership`, [`Self::open_active`], with the mailboxes of
    /// the users in each of `shards`' buckets in that shard's database (see [`MailboxShard`]).
    /// Before loading, resolves the batches a node left prepared on the shards. Refuses a map
    /// [`check_shards`] refuses, a shard whose server does not allow prepared transactions, a
    /// shard of another home, a home's database as a shard, one database twice, a map without a
    /// shard the home has had, and stored mailboxes the map puts elsewhere ([`PostgresRefusal`]).
    pub fn open_sharded(
        url: &str,
        shards: &[MailboxShard],
        leadership: Option<&Leadership>,
    ) -> Result<(PostgresStore, StoredState), StoreError> {
        PostgresStore::open_fenced(url, shards, leadership.map(Leadership::fence))
    }

    /// Like [`Self::open`], for the active node of an app whose nodes share the database: call it
    /// once `leadership` holds the database's lock. Each batch then commits only while that lock is
    /// still held (see [`Leadership`]); once it is lost, [`Store::commit`] fails. Like
    /// [`Self::open`], refuses a `url` that names more than one host: the lock and this store's
    /// connections must reach the same server.
    pub fn open_active(url: &str, leadership: &Leadership) -> Result<(PostgresStore, StoredState), StoreError> {
        PostgresStore::open_fenced(url, &[], Some(leadership.fence()))
    }

    fn open_fenced(url: &str, shards: &[MailboxShard], fence: Option<leader::Fence>) -> Result<(PostgresStore, StoredState), StoreError> {
        check_shards(shards).map_err(|refusal| StoreError::backend("the mailbox shards", refusal))?;
        let config = parse(url)?;
        let shard_configs = shards.iter().map(|shard| parse(&shard.url)).collect::<Result<Vec<_>, _>>()?;
        let map = ShardMap::new(shards);
        let mut connecting = config.clone();
        let warned = Warned::default();
        // The writer's notices are not logged (the default callback logs each at info): only a
        // warning is looked for (see Warned); notices are not even sent (sql::SCHEMA).
        let noticed = warned.clone();
        connecting.notice_callback(move |notice| noticed.notice(&notice));
        let writer = Worker::start("relay-postgres-commit", move || {
            let mut client = connect(&connecting)?;
            client.batch_execute(sql::SCHEMA).map_err(failed("creating the relay's tables"))?;
            let writes = Writes::prepare(&mut client).map_err(failed("preparing the relay's statements"))?;
            let fencing = match fence {
                Some(fence) => Some((fence, leader::Fence::prepare(&mut client).map_err(failed("preparing the fence's statements"))?)),
                None => None,
            };
            Ok(Writer { client, writes, warned, fencing })
        })?;
        let within = |error: StoreError| StoreError::backend(target(&config), error);
        let home = if shards.is_empty() { [0; 16] } else { writer.run(LOAD_TIMEOUT, |Writer { client, .. }| home_id(client)).map_err(within)? };
        let (shard_writers, ids) = shards::connect(&shard_configs, home, LOAD_TIMEOUT)?;
        let configured: Vec<Vec<u8>> = ids.iter().map(|id| id.to_vec()).collect();
        writer.run(LOAD_TIMEOUT, move |Writer { client, .. }| shards::check_recorded(client, &configured)).map_err(within)?;
        let decisions = |batches: Vec<String>| {
            writer.run(LOAD_TIMEOUT, move |Writer { client, .. }| {
                let reading = "reading the decisions of batches left prepared";
                let rows = client.query("SELECT batch FROM relay_decisions WHERE batch = ANY($1)", &[&batches]).map_err(failed(reading))?;
                rows.iter().map(|row| row.try_get(0).map_err(failed(reading))).collect()
            })
        };
        let forget = || writer.run(LOAD_TIMEOUT, |Writer { client, .. }| client.batch_execute("DELETE FROM relay_decisions").map_err(failed("forgetting decisions")));
        shards::resolve_in_doubt(&home, &shard_writers, decisions, forget, LOAD_TIMEOUT).map_err(within)?;
        let home_map = map.clone();
        let mut state = writer
            .run(LOAD_TIMEOUT, move |Writer { client, .. }| {
                let mut txn = snapshot(client)?;
                let state = sql::load(&mut txn, |user| home_map.check(user, Place::Home))?;
                txn.commit().map_err(failed("loading the relay's state"))?;
                Ok(state)
            })
            .map_err(within)?;
        for (index, (shard, config)) in shard_writers.iter().zip(&shard_configs).enumerate() {
            let shard_map = map.clone();
            let mailboxes = shard.run(LOAD_TIMEOUT, move |writer| writer.load_mailboxes(|user| shard_map.check(user, Place::Shard(index))));
            state.mailboxes.extend(mailboxes.map_err(|error| StoreError::backend(target(config), error))?);
        }
        let recording: Vec<Vec<u8>> = ids.iter().map(|id| id.to_vec()).collect();
        writer.run(LOAD_TIMEOUT, move |Writer { client, .. }| shards::record(client, &recording)).map_err(within)?;
        let shards = if shard_writers.is_empty() { Shards::none() } else { Shards::new(map, shard_writers, ids, home) };
        Ok((PostgresStore { config, writer, recent: Recent::default(), shards, shard_configs }, state))
    }

    /// A reader of what this store commits, for the core, on connections of its own (one per
    /// database). Every reader
    /// of one store shares what its commits left in memory (see the module's docs), and a read
    /// takes what it is answered from there: a second reader would take mail the core is yet to
    /// read, which the core would then read from the database.
    pub fn contents(&self) -> Result<PostgresContents, StoreError> {
        let reader = |config: &Config| {
            let config = config.clone();
            Worker::start("relay-postgres-read", move || {
                let mut client = connect(&config)?;
                let reads = Reads::prepare(&mut client).map_err(failed("preparing the relay's statements"))?;
                Ok((client, reads))
            })
        };
        let shard_readers = self.shard_configs.iter().map(reader).collect::<Result<_, _>>()?;
        Ok(PostgresContents {
            target: target(&self.config),
            reader: reader(&self.config)?,
            shard_readers,
            map: self.shards.map().clone(),
            recent: self.recent.clone(),
        })
    }
}

/// A read-only repeatable-read transaction: one snapshot of everything loaded at open.
fn snapshot(client: &mut Client) -> Result<postgres::Transaction<'_>, StoreError> {
    client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().map_err(failed("loading the relay's state"))
}

/// The home's id, which its shards record and its prepared transactions are named by: made at
/// random by the first open with shards, then kept in `secrets`.
fn home_id(client: &mut Client) -> Result<[u8; 16], StoreError> {
    let what = "recording the home's id";
    let made: [u8; 16] = rand::random();
    client.execute("INSERT INTO secrets VALUES ('home', $1) ON CONFLICT (name) DO NOTHING", &[&made.as_slice()]).map_err(failed(what))?;
    let row = client.query_one("SELECT value FROM secrets WHERE name = 'home'", &[]).map_err(failed(what))?;
    row.try_get::<_, &[u8]>(0).map_err(failed(what))?.try_into().map_err(|_| StoreError::new("corrupt home id"))
}

impl Store for PostgresStore {
    fn commit(&mut self, mutations: &[Mutation]) -> Result<(), StoreError> {
        // The workers need the batch for as long as they run: the committer waits for them anyway.
        let plan = self.shards.plan(mutations);
        // A batch spanning shards: 60 s for the home's transaction in all, of which up to 30 s
        // waiting for the shards' prepares once the home's part is written.
        let limit = if plan.spanning.is_some() { 2 * COMMIT_TIMEOUT } else { COMMIT_TIMEOUT };
        let result = self.writer.run(limit, move |Writer { client, writes, warned, fencing }| {
            let committing = "committing a batch";
            let mut txn = client.transaction().map_err(failed(committing))?;
            if let Some((fence, statements)) = fencing {
                fence.check(statements, &mut txn)?;
            }
            // The shards prepare within this transaction, so within the fence (see `shards.rs`),
            // while the home writes its part.
            let batch = plan.spanning.as_ref().map(|spanning| spanning.batch.clone());
            let preparing = plan.spanning.map(shards::Spanning::start);
            let home_written = writes
                .apply(&mut txn, &plan.home)
                .and_then(|()| if plan.forget.is_empty() { Ok(()) } else { writes.forget_decisions(&mut txn, &plan.forget) })
                .and_then(|()| batch.map_or(Ok(()), |batch| writes.decide(&mut txn, &batch)))
                .map_err(failed(committing));
            let prepared = preparing.map(|preparing| preparing.finish(COMMIT_TIMEOUT)).transpose();
            let mut written = vec![plan.home];
            let prepared = match (home_written, prepared) {
                (Ok(()), Ok(prepared)) => prepared.map(|(parts, prepared)| {
                    written.extend(parts);
                    prepared
                }),
                (Err(error), Ok(Some((_, prepared)))) => {
                    prepared.roll_back(COMMIT_TIMEOUT);
                    return Err(error);
                }
                (Err(error), _) | (Ok(()), Err(error)) => return Err(error),
            };
            warned.take();
            txn.commit().map_err(failed(committing))?;
            // The warning arrives before the COMMIT's answer, on this thread: it is seen here.
            if warned.take() {
                return Err(StoreError::new(
                    "committing a batch: PostgreSQL warned that the wait for the synchronous standby was cancelled: \
                     committed on the primary but maybe not replicated, so not acknowledged",
                ));
            }
            Ok((written, prepared))
        });
        let committed = result.and_then(|(written, prepared)| {
            if let Some(prepared) = prepared {
                self.shards.commit(prepared, COMMIT_TIMEOUT)?;
            }
            Ok(written)
        });
        match committed {
            Ok(written) => {
                written.into_iter().for_each(|part| self.recent.committed(part));
                Ok(())
            }
            Err(error) => {
                // A commit that failed (or is still running, past its time) leaves what the
                // database holds unknown here; the relay stops on it anyway.
                self.recent.clear();
                Err(error)
            }
        }
    }
}

/// Mail and frames come from what the store's commits left (see `recent.rs`), the rest from the
/// database. A read of the database blocks the core's task for a round trip, 30 s at most (then
/// it is an error, and the relay stops): the core asks for a window at a time.
impl Contents for PostgresContents {
    fn mail(&self, device: &DeviceKey, seqs: &[u64]) -> Result<Vec<(u64, Envelope)>, StoreError> {
        let device_key = device.clone();
        let reader = match self.map.place(&device.0) {
            Place::Home => &self.reader,
            Place::Shard(index) => &self.shard_readers[index],
        };
        self.kept_then_read(reader, seqs, self.recent.take_mail(device, seqs), move |client, reads, missing| {
            reads.mail(client, &device_key, missing)
        })
    }

    fn outbound(&self, app: &str, seqs: &[u64]) -> Result<Vec<(u64, FederationFrame)>, StoreError> {
        let app_name = app.to_owned();
        self.kept_then_read(&self.reader, seqs, self.recent.take_frames(app, seqs), move |client, reads, missing| {
            reads.outbound(client, &app_name, missing)
        })
    }

    fn blob(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let id = id.to_owned();
        self.reader.run(READ_TIMEOUT, move |(client, reads)| reads.blob(client, &id))
    }
}

/// The seqs `kept` has no answer for.
fn not_kept<T>(seqs: &[u64], kept: &[Option<T>]) -> Vec<u64> {
    seqs.iter().zip(kept).filter(|(_, kept)| kept.is_none()).map(|(seq, _)| *seq).collect()
}

impl PostgresContents {
    /// `kept` (what the store's commits left, one answer per seq) with the seqs it lacks `read`
    /// from the database `reader` reads, in the order of `seqs`.
    fn kept_then_read<T: Send + 'static>(
        &self,
        reader: &Worker<(Client, Reads)>,
        seqs: &[u64],
        kept: Vec<Option<T>>,
        read: impl FnOnce(&mut Client, &Reads, &[u64]) -> Result<Vec<(u64, T)>, StoreError> + Send + 'static,
    ) -> Result<Vec<(u64, T)>, StoreError> {
        let missing = not_kept(seqs, &kept);
        let read = if missing.is_empty() {
            Vec::new()
        } else {
            reader.run(READ_TIMEOUT, move |(client, reads)| read(client, reads, &missing))?
        };
        Ok(recent::merged(seqs, kept, read))
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore").field("target", &target(&self.config)).finish_non_exhaustive()
    }
}

impl fmt::Debug for PostgresContents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresContents").field("target", &self.target).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_server_is_noticed_unless_the_string_says_otherwise() {
        let config = parse("host=127.0.0.1 dbname=relay").unwrap();
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(config.get_keepalives_interval(), Some(KEEPALIVE_INTERVAL));
        assert_eq!(config.get_keepalives_retries(), Some(KEEPALIVE_RETRIES));
        assert_eq!(config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        let config = parse("host=127.0.0.1 dbname=relay keepalives=0 keepalives_idle=60 tcp_user_timeout=20").unwrap();
        assert!(!config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(60));
        assert_eq!(config.get_tcp_user_timeout(), Some(&Duration::from_secs(20)));
    }

    #[test]
    fn a_password_is_in_no_error_and_no_debug_output() {
        // Nothing listens on port 1: the connection is refused, quickly.
        let url = "host=127.0.0.1 port=1 dbname=relay user=relay password=hunter2-secret connect_timeout=2";
        let error = PostgresStore::open(url).expect_err("nothing listens there");
        let said = format!("{} / {error:?}", error.chain());
        assert!(!said.contains("hunter2"), "{said}");
        assert!(said.contains("127.0.0.1") && said.contains("relay"), "{said}");
        let error = PostgresStore::open("postgresql://relay:hunter2-secret@127.0.0.1:1/relay?nonsense=1").expect_err("no such option");
        let said = format!("{} / {error:?}", error.chain());
        assert!(!said.contains("hunter2"), "{said}");
        let config = Config::from_str(url).unwrap();
        assert!(!format!("{config:?} {}", target(&config)).contains("hunter2"));
    }

    #[test]
    fn the_only_node_of_an_app_refuses_a_string_with_more_than_one_host_and_shows_no_password() {
        for (url, hosts) in [
            ("host=127.0.0.1,127.0.0.2 port=1,1 user=relay password=hunter2-secret dbname=relay connect_timeout=2", 2),
            ("hostaddr=127.0.0.1,127.0.0.2,127.0.0.3 port=1 user=relay password=hunter2-secret dbname=relay", 3),
            ("postgresql://relay:hunter2-secret@127.0.0.1:1,127.0.0.2:1/relay", 2),
        ] {
            let error = PostgresStore::open(url).expect_err("more than one host");
            assert_eq!(PostgresRefusal::of(&error), Some(&PostgresRefusal::MoreThanOneHost { hosts }), "{}", error.chain());
            let said = format!("{} / {error:?}", error.chain());
            assert!(said.contains("more than one host") && !said.contains("hunter2"), "{said}");
        }
        // One host is not refused for that: nothing listens there.
        let error = PostgresStore::open("host=127.0.0.1 port=1 dbname=relay connect_timeout=2").expect_err("nothing listens there");
        assert_eq!(PostgresRefusal::of(&error), None, "{}", error.chain());
    }
}
