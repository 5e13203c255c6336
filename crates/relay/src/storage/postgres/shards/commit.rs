//! The shards' writers, and the two-phase commit of a batch across them (see the parent module's
//! docs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::{Client, Config};

use super::super::sql::{Writes, failed};
use super::super::worker::{Pending, Worker};
use super::super::{PostgresRefusal, Warned};
use super::ShardMap;
use crate::state::{DeviceKey, MailEntry, Mutation, StoredState};
use crate::storage::StoreError;

/// The key of the advisory lock a shard's writer connection holds (ASCII `sbshardw`): one writer
/// per shard, and a new one only once the old one's session has ended (see the module's docs).
pub(in crate::storage::postgres) const SHARD_WRITER_LOCK: i64 = 0x7362_7368_6172_6477;

/// How long a new writer waits for the shard's writer lock before it gives up: the old writer's
/// session ends when its node's process does, or once the server notices it is gone.
const SHARD_WRITER_WAIT: &str = "60s";

/// What a prepared transaction of this relay's is named, before the home's id: the rest is hex.
const GID_PREFIX: &str = "switchboard-relay";

/// What a shard's writer thread holds.
pub(in crate::storage::postgres) struct ShardWriter {
    client: Client,
    writes: Writes,
    warned: Warned,
    /// The shard's own id, which the home records.
    id: [u8; 16],
}

/// The shard writers of one store, shared with the home writer's thread, which prepares on them.
pub(in crate::storage::postgres) type ShardWriters = Arc<[Worker<ShardWriter>]>;

/// A batch's id, as its decision holds it: 32 lowercase hex digits.
pub(in crate::storage::postgres) fn batch_id(batch: u128) -> String {
    format!("{batch:032x}")
}

/// The name of `batch`'s prepared transaction on the shard `shard` of the home `home` (see the
/// module's docs).
pub(in crate::storage::postgres) fn gid(home: &[u8; 16], shard: &[u8; 16], batch: &str) -> String {
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
    fn connect(config: &Config, home: [u8; 16]) -> Result<ShardWriter, StoreError> {
        let warned = Warned::default();
        let noticed = warned.clone();
        let mut config = config.clone();
        config.notice_callback(move |notice| noticed.notice(&notice));
        let mut client = super::super::connect(&config)?;
        client.batch_execute(super::super::sql::SCHEMA).map_err(failed("creating the relay's tables on a shard"))?;
        client.batch_execute(super::super::sql::SHARD_SCHEMA).map_err(failed("creating the relay's tables on a shard"))?;
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
    fn lock(&mut self) -> Result<(), StoreError> {
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
    pub(in crate::storage::postgres) fn load_mailboxes(
        &mut self,
        owned: impl Fn(&str) -> Result<(), StoreError>,
    ) -> Result<std::collections::HashMap<DeviceKey, std::collections::BTreeMap<u64, MailEntry>>, StoreError> {
        let mut txn = super::super::snapshot(&mut self.client)?;
        let mut state = StoredState::default();
        super::super::sql::load_mailboxes(&mut txn, &mut state, owned)?;
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

/// Connects a writer to each of `shards` (see [`ShardWriter::connect`]), refuses one database
/// named twice ([`PostgresRefusal::ShardTwice`]), then takes each shard's writer lock. Returns the
/// writers and the shards' ids, in the map's order.
pub(in crate::storage::postgres) fn connect(shards: &[Config], home: [u8; 16], limit: Duration) -> Result<(ShardWriters, Vec<[u8; 16]>), StoreError> {
    let mut writers = Vec::with_capacity(shards.len());
    let mut ids = Vec::with_capacity(shards.len());
    for shard in shards {
        let within = |error: StoreError| StoreError::backend(super::super::target(shard), error);
        let connecting = shard.clone();
        let writer = Worker::start("relay-postgres-shard", move || ShardWriter::connect(&connecting, home)).map_err(within)?;
        let id = writer.run(limit, |writer| Ok(writer.id)).map_err(within)?;
        if ids.contains(&id) {
            return Err(within(StoreError::backend("connecting to a mailbox shard", PostgresRefusal::ShardTwice)));
        }
        ids.push(id);
        writers.push(writer);
    }
    for (writer, shard) in writers.iter().zip(shards) {
        writer.run(limit, ShardWriter::lock).map_err(|error| StoreError::backend(super::super::target(shard), error))?;
    }
    Ok((writers.into(), ids))
}

/// Fails with [`PostgresRefusal::ShardMissing`] unless every shard the home (`client`) records
/// is among `configured` (ids).
pub(in crate::storage::postgres) fn check_recorded(client: &mut Client, configured: &[Vec<u8>]) -> Result<(), StoreError> {
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
pub(in crate::storage::postgres) fn record(client: &mut Client, ids: &[Vec<u8>]) -> Result<(), StoreError> {
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
pub(in crate::storage::postgres) fn resolve_in_doubt(
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
pub(in crate::storage::postgres) struct Shards {
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
pub(in crate::storage::postgres) struct Plan {
    /// The home's part.
    pub(in crate::storage::postgres) home: Vec<Mutation>,
    /// Decisions the home's transaction forgets (their batches committed on every shard).
    pub(in crate::storage::postgres) forget: Vec<String>,
    /// The shards' parts, when the batch spans any.
    pub(in crate::storage::postgres) spanning: Option<Spanning>,
}

/// The shards' parts of a batch that spans some, for phase 2.
pub(in crate::storage::postgres) struct Spanning {
    /// The batch's id, its decision.
    pub(in crate::storage::postgres) batch: String,
    parts: Vec<(usize, String, Vec<Mutation>)>,
    writers: ShardWriters,
}

/// A batch each of whose shards prepared, for phase 4.
pub(in crate::storage::postgres) struct Prepared {
    batch: String,
    gids: Vec<(usize, String)>,
    writers: ShardWriters,
}

impl Shards {
    /// No shards: every batch is the home's alone.
    pub(in crate::storage::postgres) fn none() -> Shards {
        Shards { map: ShardMap::new(&[]), writers: Arc::new([]), ids: Vec::new(), home: [0; 16], batch: 0, decided: Vec::new() }
    }

    /// The shards `writers` (connected, locked, resolved) of the home `home`, by `map`.
    pub(in crate::storage::postgres) fn new(map: ShardMap, writers: ShardWriters, ids: Vec<[u8; 16]>, home: [u8; 16]) -> Shards {
        Shards { map, writers, ids, home, batch: u128::from(rand::random::<u64>()) << 64, decided: Vec::new() }
    }

    /// Which database holds each mailbox.
    pub(in crate::storage::postgres) fn map(&self) -> &ShardMap {
        &self.map
    }

    /// Splits `mutations` by database, and names the batch if it spans shards.
    pub(in crate::storage::postgres) fn plan(&mut self, mutations: &[Mutation]) -> Plan {
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
    pub(in crate::storage::postgres) fn commit(&mut self, prepared: Prepared, limit: Duration) -> Result<(), StoreError> {
        let deadline = Instant::now() + limit;
        let pending: Vec<_> = prepared.gids.into_iter().map(|(index, gid)| self.writers[index].submit(move |writer| writer.commit(&gid))).collect();
        pending.into_iter().map(|pending| pending.wait(deadline.saturating_duration_since(Instant::now()))).fold(Ok(()), Result::and)?;
        self.decided.push(prepared.batch);
        Ok(())
    }
}

impl Spanning {
    /// Phase 2, within the home's transaction: each shard starts writing its part and preparing
    /// it, all at once, while the home writes its own; [`Preparing::finish`] waits for them.
    pub(in crate::storage::postgres) fn start(self) -> Preparing {
        let Spanning { batch, parts, writers } = self;
        let pending = parts
            .into_iter()
            .map(|(index, gid, part)| {
                let preparing = gid.clone();
                (index, gid, writers[index].submit(move |writer| writer.prepare(&preparing, &part).map(|()| part)))
            })
            .collect();
        Preparing { batch, pending, writers }
    }
}

/// The shards of a batch preparing their parts (see [`Spanning::start`]).
pub(in crate::storage::postgres) struct Preparing {
    batch: String,
    pending: Vec<(usize, String, Pending<Vec<Mutation>>)>,
    writers: ShardWriters,
}

impl Preparing {
    /// Waits, `limit` in all, for every shard to have prepared its part. Returns the parts
    /// written; on an error, rolls back those that prepared.
    pub(in crate::storage::postgres) fn finish(self, limit: Duration) -> Result<(Vec<Vec<Mutation>>, Prepared), StoreError> {
        let deadline = Instant::now() + limit;
        let Preparing { batch, pending, writers } = self;
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
        let prepared = Prepared { batch, gids, writers };
        let Some(error) = failure else { return Ok((written, prepared)) };
        prepared.roll_back(deadline.saturating_duration_since(Instant::now()));
        Err(error)
    }
}

impl Prepared {
    /// Rolls back every shard's prepared part, all at once, `limit` in all, as well as it can:
    /// what is left is rolled back when the store is next opened (the batch has no decision).
    pub(in crate::storage::postgres) fn roll_back(self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let rolling_back: Vec<_> = self
            .gids
            .into_iter()
            .map(|(index, gid)| {
                self.writers[index].submit(move |writer| {
                    writer.rollback(&gid);
                    Ok(())
                })
            })
            .collect();
        for pending in rolling_back {
            let _ = pending.wait(deadline.saturating_duration_since(Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
