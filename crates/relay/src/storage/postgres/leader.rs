//! Which node of an app is the active one, when several share the app's PostgreSQL database:
//! the one holding the database's session-level advisory lock ([`Leadership`]).
//!
//! # One active node at a time
//!
//! The relay core keeps its state in memory (mailbox sequence numbers, who is online, outboxes
//! to other apps, group heads) and writes through the store as the only writer: it loads the
//! state once, at start, and from then on trusts that the database changes only by its own
//! batches. Two nodes serving one app at once would each hand out the same sequence numbers,
//! overwrite each other's rows and never see the other's mail. So the nodes of an app take turns:
//! the one holding the database's advisory lock loads the state and serves; the others (hot standbys:
//! started, configured, not listening) wait for the lock. When the active node's process dies, PostgreSQL
//! ends its session and frees the lock; a standby takes it, loads the state as the dead node
//! committed it, and opens its listeners. Devices hold the addresses of all the nodes and dial
//! each in turn (a standby refuses the connection at once). With `[cluster]` in their
//! configuration the waiting nodes are front nodes rather than silent standbys: they take
//! connections and carry them to the active node ([`front`](crate::server::front)), which still
//! writes alone.
//!
//! Several writers would need what the core does not have today: state read from the database
//! rather than mirrored in memory (or sharded by recipient, each shard with one writer: the
//! mailboxes may be sharded over several databases, `shards.rs`, but one node writes them all),
//! sequence numbers the database hands out, and a way for the node that takes an envelope to
//! wake the node the recipient is connected to (LISTEN/NOTIFY, say); federation links from any
//! node, and outboxes to other apps drained by exactly one of them.
//!
//! # The database's lock, and the app it holds
//!
//! The lock is the database's, not the app's: its key is fixed, and PostgreSQL keeps advisory
//! locks per database (a lock's tag holds the database's OID: `pg_locks.database`), so nodes on
//! one database exclude each other whatever app they are configured for, and nodes on two
//! databases of one server do not. What must have one writer is the tables, and they are the
//! database's (they have no column for the app): a lock keyed by the app's name let two apps
//! configured onto one database by mistake be active on the same tables at once.
//!
//! The lock alone would still let such a node wait as a standby and, once the other app's node
//! died, load that app's state and serve it as its own. So the database also records the app it
//! holds (the table `relay_app`, one row, written by the first node that takes the lock), and a
//! node of another app is refused ([`PostgresRefusal::AnotherApp`](super::PostgresRefusal)):
//! before it waits, when the record is there, and again once it holds the lock (the record is
//! written and read under the lock, so two apps that start together on a new database cannot
//! both claim it). Of the two, the lock is what safety rests on: it holds whatever the record
//! says, for a database whose record was deleted, or that a relay of an earlier version filled
//! and no node of this one has locked yet (the first to lock it records its own app: check that
//! such a database is that app's). Rather than the record alone, because a record is only read
//! at start and can be deleted; rather than the lock alone, because a misconfigured node would be
//! a silent standby waiting to serve another app's state, not an error at start.
//!
//! A node of another app that finds no record yet (a new database whose first node is between
//! its lock and its record, a database an earlier version filled, a deleted record) does not
//! wait in the lock for good: each wait lasts `WAIT_POLL` (1 s, the session's `lock_timeout`),
//! then it looks at the record again, and is refused as soon as the record names another app,
//! rather than waiting silently for that app's node to die. A standby still takes a freed lock
//! at once, as it is waiting in the server when the lock is freed (but for the moment between
//! two waits); standbys are not served strictly in the order they came, since each wait that
//! ends puts its node at the back of the server's queue.
//!
//! # Nodes of earlier versions (a rolling upgrade)
//!
//! Nodes of earlier versions took a lock keyed by the app (FNV-1a of the app's name: see
//! `app_keys`), and their batches took a fence keyed by it too; alone, the database's lock would
//! exclude none of them. So a node of this version, once it holds the database's lock and the
//! record is its app's, also takes its app's old lock, waiting as long as a node of an earlier
//! version holds it (it says it waits, as for the database's lock), then the old fence,
//! exclusively, and lets it go (an old node's batch begun before it lost the old lock ends
//! first), then the database's fence, and only then loads the state. It holds the old lock, on
//! the same connection, for as long as it holds the database's: an old node waiting for its lock
//! stays a standby. Its batches take both fences, shared: an old node that takes over from it
//! (the old lock freed with its connection) waits for its last batch as it would for an old
//! node's. So old and new nodes of one app may run together during an upgrade, one of them
//! active; stopping the old ones first is not needed. An old node of *another* app on the same
//! database is not excluded (its old lock is another key): that was the earlier versions' fault,
//! which this version only ends for itself.
//!
//! # Fencing
//!
//! A node that loses its lock connection (the server ended the session, the network dropped it)
//! hears of it within a heartbeat, or a few when the server goes silent ([`Leadership::lost`]; see below),
//! and must stop at once. Between the loss
//! and its exit it may still try to commit: every batch of a store opened with
//! [`PostgresStore::open_active`](super::PostgresStore::open_active) first takes a shared lock on
//! a second key (the fence; and the app's old fence, see above) and checks, in the same
//! transaction, that its own lock connection still holds the database's lock; a new active node,
//! once it holds that lock, takes the fence exclusively (and lets it go; the app's old fence
//! first) before it loads the state. So a batch of the old node either committed before the new
//! node loaded, or fails.
//!
//! The fence is two statements in the batch's transaction, prepared once per connection: the
//! first takes the shared lock, the second (only then) looks for the lock connection among the
//! holders of the database's lock. The lock connection is named by its backend's pid *and* its
//! `backend_start` (from `pg_stat_activity`): a pid alone could be a later backend's that reused
//! it, or another server's.
//!
//! # One server
//!
//! The lock, the writer's and the reader's connections must reach the same server: advisory locks
//! are granted on a hot standby too, so a lock held on one server fences nothing on another. A
//! connection string naming more than one host (`host=a,b`, `hostaddr=…,…`) is refused by
//! [`Leadership::acquire`] and by every store ([`PostgresRefusal::MoreThanOneHost`](super::PostgresRefusal));
//! name the primary (a fixed address, or a name that moves with it).
//! A name that resolves to several servers is not refused, but a writer that reaches another
//! server than the lock connection finds no holder there with that pid and start, and commits
//! nothing.
//!
//! # Timeouts and the heartbeat
//!
//! The lock connection sets `statement_timeout`, `lock_timeout` and (PostgreSQL 14 and later)
//! `idle_session_timeout` to 0 for its session: a timeout set for the role or the database would
//! otherwise end a standby's wait for the lock, or the active node's idle lock session. (While it
//! waits for the database's lock, `lock_timeout` is `WAIT_POLL`, its own, and 0 again once it
//! holds it.) The
//! heartbeat counts the lock as lost when the connection is closed, or after
//! `HEARTBEAT_MISSES` (3) checks in a row failed or took longer than `HEARTBEAT_TIMEOUT`: one
//! slow check (a busy server) does not stop the node. Safety does not rest on the heartbeat but
//! on the fence: a node that has lost its lock and not heard yet commits nothing.

use std::sync::mpsc;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Config, Statement};

use super::super::StoreError;
use super::{PostgresRefusal, connect, sql::failed, target};

/// How often the lock connection is checked.
const HEARTBEAT: Duration = Duration::from_millis(500);
/// How long a check may take before it counts as missed.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
/// How many checks in a row may be missed (failed, or slower than [`HEARTBEAT_TIMEOUT`]) before
/// the lock counts as lost; a closed connection counts as lost at once.
const HEARTBEAT_MISSES: u32 = 3;

/// The advisory lock keys: the database's lock, and the fence its commits take shared. The same
/// for every app (PostgreSQL keeps advisory locks per database: these are the database's, see
/// the module's docs). FNV-1a (64 bits) of a fixed name, the same on every node, every build,
/// and unlike the small numbers other software on the database may use as keys.
fn keys() -> (i64, i64) {
    let hash = |what: &str| {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in "switchboard-relay database ".bytes().chain(what.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        i64::from_ne_bytes(hash.to_ne_bytes())
    };
    (hash("active node"), hash("commit fence"))
}

/// The advisory lock keys nodes of earlier versions took for `app`: its lock, and the fence their
/// commits took shared. FNV-1a (64 bits) of a fixed name and the app, byte for byte what those
/// versions computed (see the module's docs: a node of this version takes both too, so that old
/// and new nodes of one app exclude each other). Never to change.
fn app_keys(app: &str) -> (i64, i64) {
    let hash = |what: &str| {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in "switchboard-relay ".bytes().chain(what.bytes()).chain([0]).chain(app.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        i64::from_ne_bytes(hash.to_ne_bytes())
    };
    (hash("active node"), hash("commit fence"))
}

/// How long one wait of a node for the database's lock lasts before it looks again at which app
/// the database is recorded as holding (see the module's docs): the longest a node of another
/// app goes unrefused once the record names its app.
const WAIT_POLL: Duration = Duration::from_secs(1);

/// The record of the app whose state the database holds: one row at most (its key can only be
/// true), made by the lock connection under the lock (see the module's docs).
const RELAY_APP_TABLE: &str = "CREATE TABLE IF NOT EXISTS relay_app (singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), app bytea NOT NULL)";

/// Bytes of a recorded app an error shows at most. An app's name has no length limit of its own
/// (`check_app` sets none), and the record is read back from a database that may hold anything:
/// the name shown is cut at this many bytes, and escaped ([`PostgresRefusal::AnotherApp`]'s text
/// shows it with `{:?}`), whatever its length.
const APP_SHOWN: usize = 64;

/// What a store opened by the active node checks before each batch (see the module's docs).
#[derive(Clone, Copy, Debug)]
pub(super) struct Fence {
    /// The database's lock.
    lock: i64,
    /// The key commits take shared.
    fence: i64,
    /// The fence of the app's nodes of earlier versions ([`app_keys`]), which commits take
    /// shared too: an old node that takes over waits for this node's last batch.
    app_fence: i64,
    /// The backend of the lock connection: its pid.
    holder: i32,
    /// … and when it started (`backend_start`, microseconds since 1970): a pid may be reused.
    started: i64,
}

/// The fence's two statements, prepared on the writer's connection (see [`Fence::prepare`]).
pub(super) struct FenceStatements {
    /// Takes the fences (the database's, then the app's old one), shared, until the
    /// transaction ends.
    take: Statement,
    /// Whether the lock connection holds the database's lock.
    held: Statement,
}

/// `backend_start` as a whole number of microseconds: the same expression on both connections.
const STARTED: &str = "(extract(epoch FROM backend_start) * 1000000)::int8";

impl Fence {
    /// Prepares the fence's statements on `client` (the writer's connection), once.
    pub(super) fn prepare(client: &mut Client) -> Result<FenceStatements, postgres::Error> {
        let take = client.prepare("SELECT pg_advisory_xact_lock_shared($1::int8), pg_advisory_xact_lock_shared($2::int8)")?;
        // pg_locks shows a bigint advisory key as its high half (classid) and low half (objid),
        // objsubid 1.
        let held = client.prepare(&format!(
            "SELECT EXISTS (SELECT 1 FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid \
               WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock' \
               AND l.pid = $1::int4 AND {STARTED} = $2::int8 AND l.classid::int8 = $3::int8 AND l.objid::int8 = $4::int8 \
               AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
        ))?;
        Ok(FenceStatements { take, held })
    }

    /// Takes the fences (shared, until the transaction ends), then, in a second statement, fails
    /// unless the lock connection still holds the database's lock.
    pub(super) fn check(&self, statements: &FenceStatements, txn: &mut postgres::Transaction<'_>) -> Result<(), StoreError> {
        let checking = "checking that this node is still the active one";
        txn.execute(&statements.take, &[&self.fence, &self.app_fence]).map_err(failed(checking))?;
        let high = (self.lock >> 32) & 0xffff_ffff;
        let low = self.lock & 0xffff_ffff;
        let row = txn.query_one(&statements.held, &[&self.holder, &self.started, &high, &low]).map_err(failed(checking))?;
        let held: bool = row.try_get(0).map_err(failed(checking))?;
        if held { Ok(()) } else { Err(StoreError::new("this node is no longer the app's active node (its lock connection is gone): nothing committed")) }
    }
}

/// The database's lock, held by a connection on a thread of its own, checked every half second;
/// dropping it ends the connection and frees the lock.
///
/// Nodes of one app that share its database take turns: the one holding the lock loads the
/// state and serves, the others wait in [`Self::acquire`]. The lock is the database's, whatever
/// app a node serves, so a node of another app, of this version, is never active beside it; and
/// the database records the app it holds, so such a node is refused rather than left waiting to
/// serve another app's state. A node of an earlier version of the same app, which took a lock
/// keyed by the app, is excluded too: this one also takes that lock (see the module's docs; one
/// of an earlier version of another app is not excluded). One at a time because the relay
/// core keeps its state in memory and is its only writer; several writers would need state read from
/// the database (or sharded, one writer a shard), sequence numbers the database hands out and
/// notifications between nodes. A node must stop at once when [`Self::lost`] resolves; until it
/// does, a store opened with [`PostgresStore::open_active`](super::PostgresStore::open_active)
/// commits nothing (the fence: a new active node waits for the old one's last batch before it
/// loads). The design and its limits in full: `crates/relay/src/storage/postgres/leader.rs`.
pub struct Leadership {
    target: String,
    fence: Fence,
    lost: tokio::sync::watch::Receiver<Option<String>>,
    /// Dropped with this: the thread then ends, and the connection with it.
    _stop: mpsc::Sender<()>,
}

/// What the lock's thread tells [`Leadership::acquire`].
enum Step {
    Waiting,
    /// The lock connection's backend: pid and start.
    Held(i32, i64),
}

impl Leadership {
    /// Connects to the database `url` names and takes its lock for a node of `app`, blocking the
    /// calling thread until it has it: at once when no other node holds it; otherwise, after
    /// calling `waiting` (with the server and database, never a password), for as long as
    /// another node holds it (trying again every second). Then records `app` as the app the
    /// database holds if no app is recorded yet; takes `app`'s lock of earlier versions, waiting
    /// (after calling `waiting`, if it has not yet) for as long as a node of an earlier version
    /// holds it; and waits for the last batch of a former active node, old or new, to end (see
    /// the module's docs). Safe from any thread; inside a tokio runtime, call it where blocking
    /// is allowed.
    ///
    /// Refuses a `url` naming more than one host ([`PostgresRefusal::MoreThanOneHost`]: the lock
    /// and the store's connections must reach one server), and a database recorded as holding
    /// another app's state ([`PostgresRefusal::AnotherApp`]): before waiting, when the record is
    /// there then; while waiting, within a second of the record appearing; and once it holds
    /// the lock (letting it go).
    pub fn acquire(url: &str, app: &str, waiting: impl FnOnce(&str)) -> Result<Leadership, StoreError> {
        let mut config = super::parse(url)?;
        // A silent network drop is noticed by the heartbeat's timeout once active; while
        // waiting, by TCP keepalives.
        config.keepalives(true).keepalives_idle(Duration::from_secs(5)).keepalives_interval(Duration::from_secs(2)).keepalives_retries(3);
        let named = target(&config);
        let (lock, fence) = keys();
        let (_, app_fence) = app_keys(app);
        let app = app.to_owned();
        let (steps, step) = mpsc::channel::<Result<Step, StoreError>>();
        let (stop, stopped) = mpsc::channel::<()>();
        let (lose, lost) = tokio::sync::watch::channel(None);
        std::thread::Builder::new()
            .name("relay-postgres-lock".to_owned())
            .spawn(move || {
                let mut client = match take_lock(&config, &app, lock, fence, &steps) {
                    Ok(client) => client,
                    Err(error) => {
                        let _ = steps.send(Err(error));
                        return;
                    }
                };
                let mut missed = 0;
                loop {
                    match stopped.recv_timeout(HEARTBEAT) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                    match client.is_valid(HEARTBEAT_TIMEOUT) {
                        Ok(()) => missed = 0,
                        Err(error) => {
                            missed += 1;
                            if client.is_closed() || missed >= HEARTBEAT_MISSES {
                                let error = StoreError::backend(format!("the lock connection to {}", target(&config)), error);
                                let _ = lose.send(Some(error.chain()));
                                return;
                            }
                        }
                    }
                }
            })
            .map_err(|error| StoreError::backend("starting the PostgreSQL lock thread", error))?;
        let ended = || StoreError::new("the PostgreSQL lock thread ended while taking the lock");
        let within = |error: StoreError| StoreError::backend(named.clone(), error);
        let (holder, started) = match step.recv().map_err(|_| ended())?.map_err(within)? {
            Step::Held(holder, started) => (holder, started),
            Step::Waiting => {
                waiting(&named);
                match step.recv().map_err(|_| ended())?.map_err(within)? {
                    Step::Held(holder, started) => (holder, started),
                    Step::Waiting => return Err(ended()),
                }
            }
        };
        Ok(Leadership { target: named, fence: Fence { lock, fence, app_fence, holder, started }, lost, _stop: stop })
    }

    /// Resolves when the lock connection is lost (or its thread ended), with why: the node is no
    /// longer the active one and must stop serving at once.
    pub async fn lost(&self) -> String {
        match self.lost.clone().wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            Err(_) => format!("the lock thread for {} ended", self.target),
        }
    }

    /// The server and database the lock is held on (never a password).
    pub fn target(&self) -> &str {
        &self.target
    }

    pub(super) fn fence(&self) -> Fence {
        self.fence
    }
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership").field("target", &self.target).field("holder", &self.fence.holder).finish_non_exhaustive()
    }
}

/// On the lock's thread: connects, refuses a database recorded as another app's, takes the lock
/// (saying so first if it must wait, and refusing the database as soon as another app is
/// recorded meanwhile); records `app` if no app is recorded, and refuses the database if another
/// is; takes `app`'s lock of earlier versions (saying so first if it must wait and has not
/// yet); then the old fence and the database's, each exclusively, letting each go.
fn take_lock(config: &Config, app: &str, lock: i64, fence: i64, steps: &mpsc::Sender<Result<Step, StoreError>>) -> Result<Client, StoreError> {
    let mut client = connect(config)?;
    let taking = "taking the database's lock";
    // A timeout set for the role or the database would end the wait for the lock (or the idle
    // lock session of the active node): none on this connection. idle_session_timeout is
    // PostgreSQL 14's. Notices (`relay_app` exists already) are not sent.
    client
        .batch_execute(
            "SET client_min_messages = warning; SET statement_timeout = 0; SET lock_timeout = 0; \
             SELECT set_config('idle_session_timeout', '0', false) WHERE current_setting('server_version_num')::int >= 140000",
        )
        .map_err(failed(taking))?;
    // Another app's database is refused now rather than after a wait for its node's lock.
    check_recorded_app(&mut client, app)?;
    let row = client
        .query_one(&format!("SELECT pid, {STARTED} FROM pg_stat_activity WHERE pid = pg_backend_pid()"), &[])
        .map_err(failed(taking))?;
    let holder: i32 = row.try_get(0).map_err(failed(taking))?;
    let started: i64 = row.try_get(1).map_err(failed(taking))?;
    let waiting = || steps.send(Ok(Step::Waiting)).map_err(|_| StoreError::new("no one waits for the lock any more"));
    let mut said_waiting = false;
    // Waited for in the server a `WAIT_POLL` at a time: between waits the record is looked at
    // again, so that a node of another app is refused once the active node has recorded its app,
    // rather than wait silently for that node to die (see the module's docs).
    if !try_lock(&mut client, lock, taking)? {
        waiting()?;
        said_waiting = true;
        client.batch_execute(&format!("SET lock_timeout = {}", WAIT_POLL.as_millis())).map_err(failed(taking))?;
        while !wait_for_lock(&mut client, lock, taking)? {
            check_recorded_app(&mut client, app)?;
        }
        client.batch_execute("SET lock_timeout = 0").map_err(failed(taking))?;
    }
    // Under the lock, so no other node of this version writes or reads the record meanwhile: the
    // first app to hold the lock is the one recorded. A refusal drops the connection, and the
    // lock with it.
    let recording = "recording which app the database holds";
    client.batch_execute(RELAY_APP_TABLE).map_err(failed(recording))?;
    client.execute("INSERT INTO relay_app (app) VALUES ($1) ON CONFLICT DO NOTHING", &[&app.as_bytes()]).map_err(failed(recording))?;
    recorded_app_is(&mut client, app)?;
    // The app's lock of earlier versions, held with the database's for as long as this
    // connection lives: a node of an earlier version serving the app keeps this one waiting, and
    // one waiting for it stays a standby (see the module's docs). Waited for in the server: only
    // old nodes of this app take it, and the record was checked under the database's lock.
    let (app_lock, app_fence) = app_keys(app);
    let upgrading = "taking the lock nodes of earlier versions take for the app";
    if !try_lock(&mut client, app_lock, upgrading)? {
        if !said_waiting {
            waiting()?;
        }
        client.execute("SELECT pg_advisory_lock($1::int8)", &[&app_lock]).map_err(failed(upgrading))?;
    }
    // A batch a former active node began before it lost its lock ends (commits or fails) before
    // this node loads the state: an old node's, under the app's old fence, then a new one's.
    let fencing = "waiting for a former active node's last batch";
    for key in [app_fence, fence] {
        client.execute("SELECT pg_advisory_lock($1::int8)", &[&key]).map_err(failed(fencing))?;
        client.execute("SELECT pg_advisory_unlock($1::int8)", &[&key]).map_err(failed(fencing))?;
    }
    steps.send(Ok(Step::Held(holder, started))).map_err(|_| StoreError::new("no one waits for the lock any more"))?;
    Ok(client)
}

/// Waits for the advisory lock `key` for the session, as long as the session's `lock_timeout`
/// allows: whether it took it.
fn wait_for_lock(client: &mut Client, key: i64, what: &'static str) -> Result<bool, StoreError> {
    match client.execute("SELECT pg_advisory_lock($1::int8)", &[&key]) {
        Ok(_) => Ok(true),
        Err(error) if error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => Ok(false),
        Err(error) => Err(failed(what)(error)),
    }
}

/// Takes the advisory lock `key` for the session if it is free: whether it did.
fn try_lock(client: &mut Client, key: i64, what: &'static str) -> Result<bool, StoreError> {
    client.query_one("SELECT pg_try_advisory_lock($1::int8)", &[&key]).and_then(|row| row.try_get(0)).map_err(failed(what))
}

/// [`recorded_app_is`], when the database has the record's table (a database no node of this
/// version has locked yet has none: no refusal).
fn check_recorded_app(client: &mut Client, app: &str) -> Result<(), StoreError> {
    let checking = "checking which app the database holds";
    let recorded: bool = client.query_one("SELECT to_regclass('relay_app') IS NOT NULL", &[]).and_then(|row| row.try_get(0)).map_err(failed(checking))?;
    if recorded { recorded_app_is(client, app) } else { Ok(()) }
}

/// Fails with [`PostgresRefusal::AnotherApp`] when the database is recorded as holding the state
/// of an app other than `app` (no record is no refusal).
fn recorded_app_is(client: &mut Client, app: &str) -> Result<(), StoreError> {
    let checking = "checking which app the database holds";
    let row = client
        .query_opt(&format!("SELECT app = $1, substring(app FROM 1 FOR {APP_SHOWN}) FROM relay_app"), &[&app.as_bytes()])
        .map_err(failed(checking))?;
    let Some(row) = row else { return Ok(()) };
    let same: bool = row.try_get(0).map_err(failed(checking))?;
    if same {
        return Ok(());
    }
    let holder: &[u8] = row.try_get(1).map_err(failed(checking))?;
    let refusal = PostgresRefusal::AnotherApp { app: app.to_owned(), holder: String::from_utf8_lossy(holder).into_owned() };
    Err(StoreError::backend(checking, refusal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_are_fixed_and_differ() {
        // Fixed: every build of every node, whatever its app, takes the same lock of a database
        // (a change would let nodes of two builds be active at once).
        let (lock, fence) = keys();
        assert_eq!((lock, fence), (0x3d72_c8f0_859f_5f5a, 0x7c1a_95b3_3677_2f10));
        assert_ne!(lock, fence);
    }

    #[test]
    fn the_keys_of_earlier_versions_are_theirs() {
        // What `keys(app)` of the versions before the database's lock computed (FNV-1a of
        // "switchboard-relay active node\0green"): a change would let old and new nodes of an
        // app be active at once during an upgrade.
        let (lock, fence) = app_keys("green");
        assert_eq!((lock as u64, fence as u64), (0xb238_e3eb_4629_defe, 0x7d5a_774b_34ca_86fe));
        assert_ne!(app_keys("green"), app_keys("blue"));
        assert!(![lock, fence].contains(&keys().0) && ![lock, fence].contains(&keys().1));
    }

    #[test]
    fn a_password_is_in_no_error() {
        // Nothing listens on port 1: the connection is refused, quickly.
        let url = "host=127.0.0.1 port=1 dbname=relay user=relay password=hunter2-secret connect_timeout=2";
        let error = Leadership::acquire(url, "green", |_| panic!("no lock to wait for")).expect_err("nothing listens there");
        let said = format!("{} / {error:?}", error.chain());
        assert!(!said.contains("hunter2"), "{said}");
        assert!(said.contains("127.0.0.1") && said.contains("relay"), "{said}");
    }

    #[test]
    fn a_string_with_more_than_one_host_is_refused() {
        for url in ["host=127.0.0.1,127.0.0.2 port=1 dbname=relay connect_timeout=2", "hostaddr=127.0.0.1,127.0.0.2 port=1,1 dbname=relay"] {
            let error = Leadership::acquire(url, "green", |_| panic!("no lock to wait for")).expect_err("two hosts");
            assert_eq!(PostgresRefusal::of(&error), Some(&PostgresRefusal::MoreThanOneHost { hosts: 2 }), "{}", error.chain());
            assert!(error.chain().contains("more than one host"), "{}", error.chain());
        }
    }
}
