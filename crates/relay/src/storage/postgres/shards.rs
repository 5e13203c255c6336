//! Mailboxes sharded by recipient over several PostgreSQL primaries.
//!
//! # The map
//!
//! Each user's mailboxes (every device of the user) lie in one database, chosen by the user's
//! bucket: the first byte of SHA-256 of `switchboard-relay mailbox bucket`, a zero byte and the
//! user's name ([`mailbox_bucket`]), one of 256. The relay's configuration gives each shard a
//! range of buckets ([`MailboxShard`]); the buckets no shard takes stay in the app's own database,
//! the home, which keeps everything else too (accounts, bundles, outboxes to other apps, blobs,
//! groups, channels) and the lock of [`Leadership`](super::Leadership). A home with one shard
//! taking buckets 128–255 puts about half of the mailboxes on a second primary.
//!
//! Mailboxes do not move: a map that changed so that a stored mailbox now belongs elsewhere is
//! refused at open ([`PostgresRefusal::MailboxOnAnotherShard`]), rather than leaving rows where no
//! delete reaches them. Every database that may hold mailboxes is read at open for that: a shard
//! records the home it belongs to (a random id the home keeps) and an id of its own, the home
//! records the ids of the shards it has had, and a shard of another home
//! ([`PostgresRefusal::ShardOfAnotherHome`]) or a map without one of the home's shards
//! ([`PostgresRefusal::ShardMissing`]) is refused. A shard, once in the map, stays in it.
//!
//! # One batch, several primaries: two-phase commit
//!
//! A batch must still commit atomically: an envelope stored on a shard and the acknowledgement
//! that deleted its predecessor at home, or a device's account deleted at home and its mailbox on
//! a shard, are all or nothing. A batch that touches a shard commits in two phases, the home as
//! coordinator:
//!
//! 1. the home's transaction begins, takes the fence (for the active node of several), writes the
//!    home's rows and the batch's *decision* (a row of `relay_decisions` holding its id);
//! 2. each shard the batch touches writes its rows and `PREPARE TRANSACTION`s them under the
//!    batch's id, all shards at once (a prepared transaction survives a crash of its server);
//! 3. if every shard prepared, the home commits, and the batch is decided; if one did not, the
//!    others' prepared transactions are rolled back (one that did not answer in time is left for
//!    the next open to roll back) and the home's transaction with them;
//! 4. each shard commits its prepared transaction (`COMMIT PREPARED`), and only then is the batch
//!    acknowledged, so that the reader, on connections of its own, sees every row of it.
//!
//! A node that dies between 2 and 4 leaves prepared transactions on the shards. The next node to
//! open the store (the same after a restart, or a standby taking over) resolves them before it
//! loads. It first takes the shard's writer lock (an advisory lock its writer connection holds
//! for as long as it lives, [`SHARD_WRITER_LOCK`]), so that a dead node's backend still running
//! a `PREPARE TRANSACTION` it was sent has ended before the new node looks: a prepared transaction whose decision the home holds is committed, any other rolled
//! back ([`resolve_in_doubt`]). The decision is the home's commit, so the batch is whole either
//! way. Steps 1–3 happen inside the home's transaction, which holds the fence: a new active node
//! takes the fence exclusively before it opens the store, so it resolves only once the old node's
//! last batch has ended, and a node that lost its lock prepares nothing after that (its next
//! batch fails the fence's check first).
//!
//! A prepared transaction is named by the home's id, the shard's and the batch's
//! (`switchboard-relay:<home>:<shard>:<batch>`, in hex): names are unique per server, and two
//! shards may be databases of one server. The decision holds the batch's id alone.
//!
//! `PREPARE TRANSACTION` needs `max_prepared_transactions` above 0 on every shard's server (the
//! default is 0; a standby needs at least its primary's); a shard whose server has it at 0 is
//! refused at open ([`PostgresRefusal::PreparedTransactionsDisabled`]). So is a shard whose
//! database holds a relay's own state ([`PostgresRefusal::ShardIsAHome`]: the home's database
//! named as a shard, say), and a map naming one database twice
//! ([`PostgresRefusal::ShardTwice`]). Each shard's server may
//! have a synchronous standby of its own: the store checks for the warning a cancelled wait gives,
//! on the prepare and on the commit, as it does for the home.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::Client;
use sha2::{Digest, Sha256};

use super::sql::{Writes, failed};
use super::worker::Worker;
use super::{PostgresRefusal, Warned};
use crate::state::{DeviceKey, MailEntry, Mutation, StoredState};
use crate::storage::StoreError;

/// How many buckets users are spread over: a shard takes a range of them.
pub const MAILBOX_BUCKETS: usize = 256;

/// Shards a relay's mailboxes may be spread over, beside its home database: each is two
/// connections (a writer and a reader) and a thread for each.
pub const MAX_MAILBOX_SHARDS: usize = 16;

/// The key of the advisory lock a shard's writer connection holds (ASCII `sbshardw`): one writer
/// per shard, and a new one only once the old one's session has ended (see the module's docs).
pub(super) const SHARD_WRITER_LOCK: i64 = 0x7362_7368_6172_6477;

/// How long a new writer waits for the shard's writer lock before it gives up: the old writer's
/// session ends when its node's process does, or once the server notices it is gone.
const SHARD_WRITER_WAIT: &str = "60s";

/// What a prepared transaction of this relay's is named, before the home's id: the rest is hex.
const GID_PREFIX: &str = "switchboard-relay";

/// One database that holds the mailboxes of the users whose bucket ([`mailbox_bucket`]) is in
/// `buckets`.
#[derive(Clone, PartialEq, Eq)]
pub struct MailboxShard {
    /// Its libpq connection string (one host, as for the home).
    pub url: String,
    /// The buckets it takes.
    pub buckets: RangeInclusive<u8>,
}

impl std::fmt::Debug for MailboxShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string may hold a password.
        f.debug_struct("MailboxShard").field("buckets", &self.buckets).finish_non_exhaustive()
    }
}

/// The bucket of `user`'s mailboxes, 0 to 255: see the module's docs.
pub fn mailbox_bucket(user: &str) -> u8 {
    let mut hash = Sha256::new();
    hash.update(b"switchboard-relay mailbox bucket\0");
    hash.update(user.as_bytes());
    hash.finalize()[0]
}

/// Fails unless `shards` are at most [`MAX_MAILBOX_SHARDS`] and take no bucket twice.
pub fn check_shards(shards: &[MailboxShard]) -> Result<(), PostgresRefusal> {
    if shards.len() > MAX_MAILBOX_SHARDS {
        return Err(PostgresRefusal::TooManyShards { shards: shards.len() });
    }
    let mut taken = [false; MAILBOX_BUCKETS];
    for shard in shards {
        if shard.buckets.is_empty() {
            return Err(PostgresRefusal::NoBuckets { first: *shard.buckets.start(), last: *shard.buckets.end() });
        }
        for bucket in shard.buckets.clone() {
            if std::mem::replace(&mut taken[usize::from(bucket)], true) {
                return Err(PostgresRefusal::BucketTakenTwice { bucket });
            }
        }
    }
    Ok(())
}

/// Which database holds each bucket's mailboxes.
#[derive(Clone)]
pub(super) struct ShardMap {
    /// Per bucket: `None` for the home, or the shard's index.
    owner: [Option<u8>; MAILBOX_BUCKETS],
}

/// Where a mailbox lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    Home,
    Shard(usize),
}

impl ShardMap {
    /// The map of `shards` (already checked by [`check_shards`]).
    pub(super) fn new(shards: &[MailboxShard]) -> ShardMap {
        let mut owner = [None; MAILBOX_BUCKETS];
        for (index, shard) in shards.iter().enumerate() {
            for bucket in shard.buckets.clone() {
                owner[usize::from(bucket)] = u8::try_from(index).ok();
            }
        }
        ShardMap { owner }
    }

    /// Where `user`'s mailboxes lie.
    pub(super) fn place(&self, user: &str) -> Place {
        match self.owner[usize::from(mailbox_bucket(user))] {
            None => Place::Home,
            Some(index) => Place::Shard(usize::from(index)),
        }
    }

    /// Fails with [`PostgresRefusal::MailboxOnAnotherShard`] unless `user`'s mailboxes belong
    /// where they were found.
    pub(super) fn check(&self, user: &str, found: Place) -> Result<(), StoreError> {
        if self.place(user) == found {
            return Ok(());
        }
        let refusal = PostgresRefusal::MailboxOnAnotherShard { bucket: mailbox_bucket(user) };
        Err(StoreError::backend("loading the mailboxes", refusal))
    }

    /// `mutations` split by the database each goes to, each part in the batch's order: the
    /// home's, and each shard's that has any (by index). A deleted account goes to both its home
    /// and its mailboxes' shard (there it deletes only the mailboxes).
    pub(super) fn split(&self, mutations: &[Mutation]) -> (Vec<Mutation>, Vec<(usize, Vec<Mutation>)>) {
        let mut home = Vec::with_capacity(mutations.len());
        let mut shards: Vec<(usize, Vec<Mutation>)> = Vec::new();
        let mut to_shard = |index: usize, mutation: &Mutation| match shards.iter_mut().find(|(shard, _)| *shard == index) {
            Some((_, part)) => part.push(mutation.clone()),
            None => shards.push((index, vec![mutation.clone()])),
        };
        for mutation in mutations {
            let user = match mutation {
                Mutation::PutEnvelope { device, .. } | Mutation::DeleteEnvelope { device, .. } => Some((&device.0, false)),
                Mutation::DeleteAccount { device } => Some((&device.0, true)),
                _ => None,
            };
            match user.map(|(user, both)| (self.place(user), both)) {
                Some((Place::Shard(index), both)) => {
                    to_shard(index, mutation);
                    if both {
                        home.push(mutation.clone());
                    }
                }
                _ => home.push(mutation.clone()),
            }
        }
        (home, shards)
    }
}

/// What a shard's writer thread holds.
pub(super) struct ShardWriter {
    client: Client,
    writes: Writes,
    warned: Warned,
    /// The shard's own id, which the home records.
    pub(super) id: [u8; 16],
}

/// The shard writers of one store, shared with the home writer's thread, which prepares on them.
pub(super) type ShardWriters = Arc<[Worker<ShardWriter>]>;

/// A batch's id, as its decision holds it: 32 lowercase hex digits.
pub(super) fn batch_id(batch: u128) -> String {
    format!("{batch:032x}")
}

/// The name of `batch`'s prepared transaction on the shard `shard` of the home `home` (see the
/// module's docs).
pub(super) fn gid(home: &[u8; 16], shard: &[u8; 16], batch: &str) -> String {
    format!("{GID_PREFIX}:{}:{}:{batch}", hex(home), hex(shard))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The batch id in `gid`, if `gid` is one [`gid`] makes for the shard `shard` of the home `home`:
/// the only names ever written into SQL as literals, so a name read back from the server is
/// checked first.
fn batch_of<'a>(gid: &'a str, home: &[u8; 16], shard: &[u8; 16]) -> Option<&'a str> {
    let batch = gid.strip_prefix(&format!("{GID_PREFIX}:{}:{}:", hex(home), hex(shard)))?;
    let well_formed = batch.len() == 32 && batch.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
    well_formed.then_some(batch)
}

/// SQLSTATE 42704, `undefined_object`: the prepared transaction is gone, resolved by another
/// session (the old active node finishing its batch as the new one resolves it).
fn already_resolved(error: &postgres::Error) -> bool {
    error.code() == Some(&postgres::error::SqlState::UNDEFINED_OBJECT)
}

impl ShardWriter {
    /// Connects to a shard on the calling thread (its worker's), makes the relay's tables, checks
    /// that prepared transactions are enabled, that the database holds no relay's own state and
    /// that the shard is `home`'s (recording it, on a new shard). Call [`Self::lock`] next.
    pub(super) fn connect(config: &postgres::Config, home: [u8; 16]) -> Result<ShardWriter, StoreError> {
        let warned = Warned::default();
        let noticed = warned.clone();
        let mut config = config.clone();
        config.notice_callback(move |notice| noticed.notice(&notice));
        let mut client = super::connect(&config)?;
        client.batch_execute(super::sql::SCHEMA).map_err(failed("creating the relay's tables on a shard"))?;
        client.batch_execute(super::sql::SHARD_SCHEMA).map_err(failed("creating the relay's tables on a shard"))?;
        let checking = "checking the shard's server";
        let prepared: String = client.query_one("SHOW max_prepared_transactions", &[]).and_then(|row| row.try_get(0)).map_err(failed(checking))?;
        if prepared.trim() == "0" {
            return Err(StoreError::backend(checking, PostgresRefusal::PreparedTransactionsDisabled));
        }
        let holds_state: bool = client
            .query_one("SELECT EXISTS (SELECT 1 FROM secrets) OR EXISTS (SELECT 1 FROM accounts)", &[])
            .and_then(|row| row.try_get(0))
            .map_err(failed(checking))?;
        if holds_state {
            return Err(StoreError::backend(checking, PostgresRefusal::ShardIsAHome));
        }
        let recording = "recording the shard's home";
        let made: [u8; 16] = rand::random();
        client
            .execute("INSERT INTO relay_shard VALUES (1, $1, $2) ON CONFLICT (one) DO NOTHING", &[&home.as_slice(), &made.as_slice()])
            .map_err(failed(recording))?;
        let row = client.query_one("SELECT home, id FROM relay_shard WHERE one = 1", &[]).map_err(failed(recording))?;
        let (recorded, id): (&[u8], &[u8]) = (row.try_get(0).map_err(failed(recording))?, row.try_get(1).map_err(failed(recording))?);
        if recorded != home {
            return Err(StoreError::backend(recording, PostgresRefusal::ShardOfAnotherHome));
        }
        let id = id.try_into().map_err(|_| StoreError::new("corrupt shard id"))?;
        let writes = Writes::prepare(&mut client).map_err(failed("preparing the relay's statements"))?;
        Ok(ShardWriter { client, writes, warned, id })
    }

    /// Takes the shard's writer lock, waiting up to [`SHARD_WRITER_WAIT`] for the session of the
    /// writer before it to end.
    pub(super) fn lock(&mut self) -> Result<(), StoreError> {
        let locking = "taking the shard's writer lock (another node's writer still holds it)";
        self.client.batch_execute(&format!("SET lock_timeout = '{SHARD_WRITER_WAIT}'")).map_err(failed(locking))?;
        self.client.execute("SELECT pg_advisory_lock($1)", &[&SHARD_WRITER_LOCK]).map_err(failed(locking))?;
        self.client.batch_execute("RESET lock_timeout").map_err(failed(locking))
    }

    /// Phase 2: writes `mutations` and prepares them as `gid`. On an error nothing is left
    /// prepared, as far as this connection knows.
    fn prepare(&mut self, gid: &str, mutations: &[Mutation]) -> Result<(), StoreError> {
        let preparing = "preparing a batch on a shard";
        self.client.batch_execute("BEGIN").map_err(failed(preparing))?;
        let written = self.writes.apply(&mut self.client, mutations).map_err(failed(preparing));
        if let Err(error) = written {
            let _ = self.client.batch_execute("ROLLBACK");
            return Err(error);
        }
        self.warned.take();
        // A failed PREPARE ends the transaction (rolled back): nothing is left to end.
        self.client.batch_execute(&format!("PREPARE TRANSACTION '{gid}'")).map_err(failed(preparing))?;
        if self.warned.take() {
            self.rollback(gid);
            return Err(StoreError::new(
                "preparing a batch on a shard: PostgreSQL warned that the wait for the shard's synchronous standby was cancelled",
            ));
        }
        Ok(())
    }

    /// Phase 4: commits the prepared `gid`.
    fn commit(&mut self, gid: &str) -> Result<(), StoreError> {
        let committing = "committing a prepared batch on a shard";
        self.warned.take();
        // Gone already is an error too: only a node that took over resolves another's batches.
        self.client.batch_execute(&format!("COMMIT PREPARED '{gid}'")).map_err(failed(committing))?;
        if self.warned.take() {
            return Err(StoreError::new(
                "committing a prepared batch on a shard: PostgreSQL warned that the wait for the shard's synchronous standby was \
                 cancelled: committed on the shard's primary but maybe not replicated, so not acknowledged",
            ));
        }
        Ok(())
    }

    /// Rolls the prepared `gid` back, as well as it can: what fails here is resolved when the
    /// store is next opened.
    fn rollback(&mut self, gid: &str) {
        let _ = self.client.batch_execute(&format!("ROLLBACK PREPARED '{gid}'"));
    }

    /// The shard's mailboxes, each user's checked by `owned`, in one snapshot.
    pub(super) fn load_mailboxes(
        &mut self,
        owned: impl Fn(&str) -> Result<(), StoreError>,
    ) -> Result<std::collections::HashMap<DeviceKey, std::collections::BTreeMap<u64, MailEntry>>, StoreError> {
        let mut txn = super::snapshot(&mut self.client)?;
        let mut state = StoredState::default();
        super::sql::load_mailboxes(&mut txn, &mut state, owned)?;
        txn.commit().map_err(failed("loading the relay's state"))?;
        Ok(state.mailboxes)
    }

    /// This shard's prepared transactions of the home `home`: (name, batch id).
    fn in_doubt(&mut self, home: &[u8; 16]) -> Result<Vec<(String, String)>, StoreError> {
        let listing = "listing the prepared batches on a shard";
        let rows = self.client.query("SELECT gid FROM pg_prepared_xacts WHERE database = current_database()", &[]).map_err(failed(listing))?;
        let mut ours = Vec::new();
        for row in rows {
            let gid: String = row.try_get(0).map_err(failed(listing))?;
            if let Some(batch) = batch_of(&gid, home, &self.id) {
                let batch = batch.to_owned();
                ours.push((gid, batch));
            }
        }
        Ok(ours)
    }

    /// Commits each of `in_doubt` whose batch `decided` holds, rolls back the others.
    fn resolve(&mut self, in_doubt: &[(String, String)], decided: &[String]) -> Result<(), StoreError> {
        for (gid, batch) in in_doubt {
            let verb = if decided.contains(batch) { "COMMIT" } else { "ROLLBACK" };
            match self.client.batch_execute(&format!("{verb} PREPARED '{gid}'")) {
                Ok(()) => {}
                Err(error) if already_resolved(&error) => {}
                Err(error) => return Err(StoreError::backend("resolving a prepared batch on a shard", error)),
            }
        }
        Ok(())
    }
}

/// Fails with [`PostgresRefusal::ShardMissing`] unless every shard the home (`client`) records
/// is among `configured` (ids).
pub(super) fn check_recorded(client: &mut Client, configured: &[Vec<u8>]) -> Result<(), StoreError> {
    let checking = "checking the home's mailbox shards";
    let rows = client.query("SELECT id FROM relay_shards", &[]).map_err(failed(checking))?;
    let mut missing = 0;
    for row in rows {
        let id: Vec<u8> = row.try_get(0).map_err(failed(checking))?;
        missing += usize::from(!configured.contains(&id));
    }
    if missing > 0 {
        return Err(StoreError::backend(checking, PostgresRefusal::ShardMissing { shards: missing }));
    }
    Ok(())
}

/// Records in the home (`client`) the shards `ids`, once their mailboxes are loaded.
pub(super) fn record(client: &mut Client, ids: &[Vec<u8>]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    client.execute("INSERT INTO relay_shards SELECT unnest($1::bytea[]) ON CONFLICT DO NOTHING", &[&ids]).map_err(failed("recording the home's mailbox shards"))?;
    Ok(())
}

/// Resolves every batch a node left prepared on `shards` (see the module's docs): committed where
/// the home holds its decision (`decisions` answers which of the batch ids it is given it holds,
/// on the home's connection), rolled back otherwise; then forgets every decision. Call at open,
/// with every shard's writer lock held, before loading.
pub(super) fn resolve_in_doubt(
    home: &[u8; 16],
    shards: &ShardWriters,
    decisions: impl Fn(Vec<String>) -> Result<Vec<String>, StoreError>,
    forget: impl FnOnce() -> Result<(), StoreError>,
    limit: Duration,
) -> Result<(), StoreError> {
    for shard in shards.iter() {
        let id = *home;
        let in_doubt = shard.run(limit, move |writer| writer.in_doubt(&id))?;
        if in_doubt.is_empty() {
            continue;
        }
        let decided = decisions(in_doubt.iter().map(|(_, batch)| batch.clone()).collect())?;
        tracing::info!(batches = in_doubt.len(), committed = decided.len(), "resolving batches a node left prepared on a mailbox shard");
        shard.run(limit, move |writer| writer.resolve(&in_doubt, &decided))?;
    }
    forget()
}

/// The shards of a store, and the batches it commits across them.
pub(super) struct Shards {
    map: ShardMap,
    writers: ShardWriters,
    /// Each shard's id, by index.
    ids: Vec<[u8; 16]>,
    home: [u8; 16],
    /// The last batch's number: this store's random id in the upper half, a count in the lower.
    batch: u128,
    /// Batches committed on every shard, whose decisions the next batch forgets.
    decided: Vec<String>,
}

/// Where one batch's mutations go.
pub(super) struct Plan {
    /// The home's part.
    pub(super) home: Vec<Mutation>,
    /// Decisions the home's transaction forgets (their batches committed on every shard).
    pub(super) forget: Vec<String>,
    /// The shards' parts, when the batch spans any.
    pub(super) spanning: Option<Spanning>,
}

/// The shards' parts of a batch that spans some, for phase 2.
pub(super) struct Spanning {
    /// The batch's id, its decision.
    pub(super) batch: String,
    parts: Vec<(usize, String, Vec<Mutation>)>,
    writers: ShardWriters,
}

/// A batch each of whose shards prepared, for phase 4.
pub(super) struct Prepared {
    batch: String,
    gids: Vec<(usize, String)>,
}

impl Shards {
    /// No shards: every batch is the home's alone.
    pub(super) fn none() -> Shards {
        Shards { map: ShardMap::new(&[]), writers: Arc::new([]), ids: Vec::new(), home: [0; 16], batch: 0, decided: Vec::new() }
    }

    /// The shards `writers` (connected, locked, resolved) of the home `home`, by `map`.
    pub(super) fn new(map: ShardMap, writers: ShardWriters, ids: Vec<[u8; 16]>, home: [u8; 16]) -> Shards {
        Shards { map, writers, ids, home, batch: u128::from(rand::random::<u64>()) << 64, decided: Vec::new() }
    }

    /// Which database holds each mailbox.
    pub(super) fn map(&self) -> &ShardMap {
        &self.map
    }

    /// Splits `mutations` by database, and names the batch if it spans shards.
    pub(super) fn plan(&mut self, mutations: &[Mutation]) -> Plan {
        let forget = std::mem::take(&mut self.decided);
        if self.writers.is_empty() {
            return Plan { home: mutations.to_vec(), forget, spanning: None };
        }
        let (home, parts) = self.map.split(mutations);
        if parts.is_empty() {
            return Plan { home, forget, spanning: None };
        }
        self.batch = self.batch.wrapping_add(1);
        let batch = batch_id(self.batch);
        let parts = parts.into_iter().map(|(index, part)| (index, gid(&self.home, &self.ids[index], &batch), part)).collect();
        Plan { home, forget, spanning: Some(Spanning { batch, parts, writers: self.writers.clone() }) }
    }

    /// Phase 4: each shard of `prepared` commits its part, all at once, within `limit` in all.
    /// Then the batch's decision is forgotten with the next batch.
    pub(super) fn commit(&mut self, prepared: Prepared, limit: Duration) -> Result<(), StoreError> {
        let deadline = Instant::now() + limit;
        let pending: Vec<_> = prepared.gids.into_iter().map(|(index, gid)| self.writers[index].submit(move |writer| writer.commit(&gid))).collect();
        pending.into_iter().map(|pending| pending.wait(deadline.saturating_duration_since(Instant::now()))).fold(Ok(()), Result::and)?;
        self.decided.push(prepared.batch);
        Ok(())
    }
}

impl Spanning {
    /// Phase 2, within the home's transaction: each shard writes its part and prepares it, all at
    /// once, within `limit` in all. Returns the parts written; on an error, rolls back those that
    /// prepared.
    pub(super) fn prepare(self, limit: Duration) -> Result<(Vec<Vec<Mutation>>, Prepared), StoreError> {
        let deadline = Instant::now() + limit;
        let Spanning { batch, parts, writers } = self;
        let pending: Vec<_> = parts
            .into_iter()
            .map(|(index, gid, part)| {
                let preparing = gid.clone();
                (index, gid, writers[index].submit(move |writer| writer.prepare(&preparing, &part).map(|()| part)))
            })
            .collect();
        let (mut written, mut gids, mut failure) = (Vec::new(), Vec::new(), None);
        for (index, gid, pending) in pending {
            match pending.wait(deadline.saturating_duration_since(Instant::now())) {
                Ok(part) => {
                    written.push(part);
                    gids.push((index, gid));
                }
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        let Some(error) = failure else { return Ok((written, Prepared { batch, gids })) };
        let rolling_back: Vec<_> = gids
            .into_iter()
            .map(|(index, gid)| {
                writers[index].submit(move |writer| {
                    writer.rollback(&gid);
                    Ok(())
                })
            })
            .collect();
        for pending in rolling_back {
            let _ = pending.wait(deadline.saturating_duration_since(Instant::now()));
        }
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(buckets: RangeInclusive<u8>) -> MailboxShard {
        MailboxShard { url: "host=127.0.0.1 password=hunter2".into(), buckets }
    }

    #[test]
    fn buckets_spread_users_and_the_map_splits_a_batch_by_them() {
        let users: Vec<String> = (0..2_000).map(|i| format!("user{i}@green")).collect();
        let high = users.iter().filter(|user| mailbox_bucket(user) >= 128).count();
        assert!((800..1_200).contains(&high), "{high} of 2,000 in the upper half");
        let map = ShardMap::new(&[shard(128..=255)]);
        let (low_user, high_user) = (
            users.iter().find(|user| mailbox_bucket(user) < 128).unwrap().clone(),
            users.iter().find(|user| mailbox_bucket(user) >= 128).unwrap().clone(),
        );
        assert_eq!((map.place(&low_user), map.place(&high_user)), (Place::Home, Place::Shard(0)));
        let envelope = switchboard_wire::switchboard::Envelope::default();
        let batch = [
            Mutation::PutEnvelope { device: (high_user.clone(), 1), seq: 1, envelope: envelope.clone() },
            Mutation::PutEnvelope { device: (low_user.clone(), 1), seq: 1, envelope },
            Mutation::AddContact { user: high_user.clone(), contact: low_user.clone() },
            Mutation::DeleteEnvelope { device: (high_user.clone(), 1), seq: 1 },
            Mutation::DeleteAccount { device: (high_user.clone(), 2) },
        ];
        let (home, shards) = map.split(&batch);
        assert_eq!(home, [batch[1].clone(), batch[2].clone(), batch[4].clone()]);
        assert_eq!(shards, [(0, vec![batch[0].clone(), batch[3].clone(), batch[4].clone()])]);
        assert!(map.check(&high_user, Place::Shard(0)).is_ok());
        let error = map.check(&high_user, Place::Home).expect_err("on the wrong shard");
        assert!(matches!(PostgresRefusal::of(&error), Some(PostgresRefusal::MailboxOnAnotherShard { .. })), "{}", error.chain());
    }

    #[test]
    fn a_map_takes_each_bucket_once_and_shows_no_password() {
        assert_eq!(check_shards(&[shard(0..=127), shard(128..=255)]), Ok(()));
        assert_eq!(check_shards(&[shard(0..=127), shard(127..=200)]), Err(PostgresRefusal::BucketTakenTwice { bucket: 127 }));
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = shard(9..=3);
        assert_eq!(check_shards(&[backwards]), Err(PostgresRefusal::NoBuckets { first: 9, last: 3 }));
        let many: Vec<MailboxShard> = (0..=MAX_MAILBOX_SHARDS as u8).map(|i| shard(i..=i)).collect();
        assert_eq!(check_shards(&many), Err(PostgresRefusal::TooManyShards { shards: MAX_MAILBOX_SHARDS + 1 }));
        assert!(!format!("{:?}", shard(0..=1)).contains("hunter2"));
    }

    #[test]
    fn only_names_of_our_own_form_are_resolved() {
        let (home, shard) = ([7u8; 16], [9u8; 16]);
        let batch = batch_id(0xabc_1234);
        let ours = gid(&home, &shard, &batch);
        assert_eq!(batch_of(&ours, &home, &shard), Some(batch.as_str()));
        assert_eq!(batch_of(&gid(&[8u8; 16], &shard, &batch), &home, &shard), None, "another home's");
        assert_eq!(batch_of(&gid(&home, &[8u8; 16], &batch), &home, &shard), None, "another shard's");
        assert_eq!(batch_of(&format!("{ours}'; DROP TABLE mailboxes; --"), &home, &shard), None);
        assert_eq!(batch_of(&gid(&home, &shard, &batch.to_uppercase()), &home, &shard), None, "upper-case hex");
        assert_eq!(batch_of(&gid(&home, &shard, &batch[1..]), &home, &shard), None, "31 digits");
        assert_eq!(batch_of(&gid(&home, &shard, &format!("{batch}0")), &home, &shard), None, "33 digits");
        assert_eq!(batch_of(&gid(&home, &shard, &batch.replace('a', "g")), &home, &shard), None, "not hex");
        assert_eq!(batch_of("switchboard-relay", &home, &shard), None);
    }
}
