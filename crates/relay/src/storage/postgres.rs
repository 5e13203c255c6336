//! State in PostgreSQL: the same tables as the redb store, one transaction per batch, committed
//! before [`Store::commit`] returns (with `synchronous_commit = on` and a synchronous standby, on
//! the standby too: what the relay acknowledged survives a failover).
//!
//! The store and each reader own a connection on a thread of their own (see `worker.rs`):
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
//! Every relay, one node or several, needs its connections on one server: a connection string
//! naming more than one host is refused ([`PostgresRefusal::MoreThanOneHost`]). Otherwise the
//! writer could reach the primary and the reader a standby that lags (a read missing what was
//! just committed stops the relay), or the lock one server and the writes another.

mod leader;
mod recent;
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
use sql::{Reads, Writes, failed};
use worker::Worker;

pub use leader::Leadership;

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

/// A relay's PostgreSQL database, to commit batches to.
pub struct PostgresStore {
    config: Config,
    writer: Worker<Writer>,
    recent: Recent,
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
        PostgresStore::open_fenced(url, None)
    }

    /// Like [`Self::open`], for the active node of an app whose nodes share the database: call it
    /// once `leadership` holds the database's lock. Each batch then commits only while that lock is
    /// still held (see [`Leadership`]); once it is lost, [`Store::commit`] fails. Like
    /// [`Self::open`], refuses a `url` that names more than one host: the lock and this store's
    /// connections must reach the same server.
    pub fn open_active(url: &str, leadership: &Leadership) -> Result<(PostgresStore, StoredState), StoreError> {
        PostgresStore::open_fenced(url, Some(leadership.fence()))
    }

    fn open_fenced(url: &str, fence: Option<leader::Fence>) -> Result<(PostgresStore, StoredState), StoreError> {
        let config = parse(url)?;
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
        let state = writer.run(LOAD_TIMEOUT, |Writer { client, .. }| {
            let mut txn = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(failed("loading the relay's state"))?;
            let state = sql::load(&mut txn)?;
            txn.commit().map_err(failed("loading the relay's state"))?;
            Ok(state)
        });
        let within = |error: StoreError| StoreError::backend(target(&config), error);
        let state = state.map_err(within)?;
        Ok((PostgresStore { config, writer, recent: Recent::default() }, state))
    }

    /// A reader of what this store commits, for the core, on a connection of its own. Every reader
    /// of one store shares what its commits left in memory (see the module's docs), and a read
    /// takes what it is answered from there: a second reader would take mail the core is yet to
    /// read, which the core would then read from the database.
    pub fn contents(&self) -> Result<PostgresContents, StoreError> {
        let config = self.config.clone();
        let reader = Worker::start("relay-postgres-read", move || {
            let mut client = connect(&config)?;
            let reads = Reads::prepare(&mut client).map_err(failed("preparing the relay's statements"))?;
            Ok((client, reads))
        })?;
        Ok(PostgresContents { target: target(&self.config), reader, recent: self.recent.clone() })
    }
}

impl Store for PostgresStore {
    fn commit(&mut self, mutations: &[Mutation]) -> Result<(), StoreError> {
        // The worker needs the batch for as long as it runs: the committer waits for it anyway.
        let mutations = mutations.to_vec();
        let recent = self.recent.clone();
        let result = self.writer.run(COMMIT_TIMEOUT, move |Writer { client, writes, warned, fencing }| {
            let mut txn = client.transaction().map_err(failed("committing a batch"))?;
            if let Some((fence, statements)) = fencing {
                fence.check(statements, &mut txn)?;
            }
            writes.apply(&mut txn, &mutations).map_err(failed("committing a batch"))?;
            warned.take();
            txn.commit().map_err(failed("committing a batch"))?;
            // The warning arrives before the COMMIT's answer, on this thread: it is seen here.
            if warned.take() {
                return Err(StoreError::new(
                    "committing a batch: PostgreSQL warned that the wait for the synchronous standby was cancelled: \
                     committed on the primary but maybe not replicated, so not acknowledged",
                ));
            }
            recent.committed(mutations);
            Ok(())
        });
        if result.is_err() {
            // A commit that failed (or is still running, past its time) leaves what the database
            // holds unknown here; the relay stops on it anyway.
            self.recent.clear();
        }
        result
    }
}

/// Mail and frames come from what the store's commits left (see `recent.rs`), the rest from the
/// database. A read of the database blocks the core's task for a round trip, 30 s at most (then
/// it is an error, and the relay stops): the core asks for a window at a time.
impl Contents for PostgresContents {
    fn mail(&self, device: &DeviceKey, seqs: &[u64]) -> Result<Vec<(u64, Envelope)>, StoreError> {
        let device_key = device.clone();
        self.kept_then_read(seqs, self.recent.take_mail(device, seqs), move |client, reads, missing| {
            reads.mail(client, &device_key, missing)
        })
    }

    fn outbound(&self, app: &str, seqs: &[u64]) -> Result<Vec<(u64, FederationFrame)>, StoreError> {
        let app_name = app.to_owned();
        self.kept_then_read(seqs, self.recent.take_frames(app, seqs), move |client, reads, missing| {
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
    /// from the database, in the order of `seqs`.
    fn kept_then_read<T: Send + 'static>(
        &self,
        seqs: &[u64],
        kept: Vec<Option<T>>,
        read: impl FnOnce(&mut Client, &Reads, &[u64]) -> Result<Vec<(u64, T)>, StoreError> + Send + 'static,
    ) -> Result<Vec<(u64, T)>, StoreError> {
        let missing = not_kept(seqs, &kept);
        let read = if missing.is_empty() {
            Vec::new()
        } else {
            self.reader.run(READ_TIMEOUT, move |(client, reads)| read(client, reads, &missing))?
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
