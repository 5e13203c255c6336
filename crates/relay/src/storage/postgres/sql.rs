//! The relay's tables in PostgreSQL, and the statements that write and read them.
//!
//! One table per redb table (see `redb_store.rs`), keyed the same way. Names are `bytea`, not
//! `text`: a `text` column refuses the byte 0, and a refused name would stop the relay; they are
//! checked as UTF-8 when read back. Unsigned numbers (sequence numbers, report ids, times) are
//! kept in `int8` bit for bit (`u64 as i64` and back): only equality is ever asked of them in
//! SQL, and the core orders them itself once loaded.

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, Row, Statement, Transaction};
use switchboard_wire::switchboard::{Envelope, FederationFrame, KeptReport, StoredGroupHead, UploadBundles};
use switchboard_wire::{Message, decode, frame::MAX_FRAME_LEN};

use super::super::StoreError;
use crate::state::{BlobEntry, DeviceKey, MailEntry, Mutation, OutboundEntry, StampKey, StoredState};

/// Creates what is missing; run on every open. First, for the session: notices (each `CREATE
/// TABLE IF NOT EXISTS` of a table that exists says so) are not sent, warnings are, whatever the
/// server, role or connection string set (the store's commits watch for one, see `postgres.rs`).
pub(super) const SCHEMA: &str = "
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS accounts (user_name bytea NOT NULL, device int8 NOT NULL, credential_hash bytea NOT NULL, PRIMARY KEY (user_name, device));
CREATE TABLE IF NOT EXISTS bundles (user_name bytea NOT NULL, device int8 NOT NULL, bundles bytea NOT NULL, PRIMARY KEY (user_name, device));
CREATE TABLE IF NOT EXISTS mailboxes (user_name bytea NOT NULL, device int8 NOT NULL, seq int8 NOT NULL, envelope bytea NOT NULL, PRIMARY KEY (user_name, device, seq));
CREATE TABLE IF NOT EXISTS outboxes (app bytea NOT NULL, seq int8 NOT NULL, frame bytea NOT NULL, PRIMARY KEY (app, seq));
CREATE TABLE IF NOT EXISTS blobs (id bytea PRIMARY KEY, blob bytea NOT NULL, stored_at int8 NOT NULL);
CREATE TABLE IF NOT EXISTS group_heads (group_id bytea PRIMARY KEY, head bytea NOT NULL);
CREATE TABLE IF NOT EXISTS contacts (user_name bytea NOT NULL, contact bytea NOT NULL, PRIMARY KEY (user_name, contact));
CREATE TABLE IF NOT EXISTS people (user_name bytea PRIMARY KEY, record bytea NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (name text PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE IF NOT EXISTS blocked (user_name bytea NOT NULL, blocked bytea NOT NULL, PRIMARY KEY (user_name, blocked));
CREATE TABLE IF NOT EXISTS reports (id int8 PRIMARY KEY, kept bytea NOT NULL);
CREATE TABLE IF NOT EXISTS channels (channel bytea PRIMARY KEY, owner bytea NOT NULL, admins bytea[] NOT NULL);
CREATE TABLE IF NOT EXISTS follows (user_name bytea NOT NULL, device int8 NOT NULL, channel bytea NOT NULL, PRIMARY KEY (user_name, device, channel));
CREATE TABLE IF NOT EXISTS channel_apps (channel bytea NOT NULL, app bytea NOT NULL, PRIMARY KEY (channel, app));
CREATE TABLE IF NOT EXISTS relay_decisions (batch text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS relay_shards (id bytea PRIMARY KEY);
";

/// What a mailbox shard holds beside [`SCHEMA`] (of which it uses only `mailboxes`): the home it
/// belongs to, and its own id (see `shards.rs`).
pub(super) const SHARD_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS relay_shard (one int4 PRIMARY KEY CHECK (one = 1), home bytea NOT NULL, id bytea NOT NULL);
";

/// Declares a set of statements, prepared once per connection (a statement sent as text would
/// cost a round trip more each time).
macro_rules! statements {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $sql:expr,)* }) => {
        $(#[$doc])*
        pub(super) struct $name {
            $($field: Statement,)*
        }

        impl $name {
            pub(super) fn prepare(client: &mut Client) -> Result<$name, postgres::Error> {
                Ok($name { $($field: client.prepare($sql)?,)* })
            }
        }
    };
}

statements! {
    /// What a batch of mutations is written with.
    Writes {
        put_account: "INSERT INTO accounts VALUES ($1, $2, $3) ON CONFLICT (user_name, device) DO UPDATE SET credential_hash = EXCLUDED.credential_hash",
        put_bundles: "INSERT INTO bundles VALUES ($1, $2, $3) ON CONFLICT (user_name, device) DO UPDATE SET bundles = EXCLUDED.bundles",
        // Mail and frames for other apps a run at a time (see `Run`): one row per array element.
        put_envelopes: "INSERT INTO mailboxes SELECT * FROM UNNEST($1::bytea[], $2::int8[], $3::int8[], $4::bytea[]) \
                        ON CONFLICT (user_name, device, seq) DO UPDATE SET envelope = EXCLUDED.envelope",
        delete_envelopes: "DELETE FROM mailboxes m USING UNNEST($1::bytea[], $2::int8[], $3::int8[]) AS d(user_name, device, seq) \
                           WHERE m.user_name = d.user_name AND m.device = d.device AND m.seq = d.seq",
        put_outbounds: "INSERT INTO outboxes SELECT * FROM UNNEST($1::bytea[], $2::int8[], $3::bytea[]) \
                        ON CONFLICT (app, seq) DO UPDATE SET frame = EXCLUDED.frame",
        delete_outbounds: "DELETE FROM outboxes o USING UNNEST($1::bytea[], $2::int8[]) AS d(app, seq) WHERE o.app = d.app AND o.seq = d.seq",
        put_blob: "INSERT INTO blobs VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET blob = EXCLUDED.blob, stored_at = EXCLUDED.stored_at",
        delete_blob: "DELETE FROM blobs WHERE id = $1",
        put_group_head: "INSERT INTO group_heads VALUES ($1, $2) ON CONFLICT (group_id) DO UPDATE SET head = EXCLUDED.head",
        add_contact: "INSERT INTO contacts VALUES ($1, $2) ON CONFLICT DO NOTHING",
        put_person: "INSERT INTO people VALUES ($1, $2) ON CONFLICT (user_name) DO UPDATE SET record = EXCLUDED.record",
        delete_person: "DELETE FROM people WHERE user_name = $1",
        put_secret: "INSERT INTO secrets VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        block: "INSERT INTO blocked VALUES ($1, $2) ON CONFLICT DO NOTHING",
        unblock: "DELETE FROM blocked WHERE user_name = $1 AND blocked = $2",
        put_report: "INSERT INTO reports VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET kept = EXCLUDED.kept",
        put_channel: "INSERT INTO channels VALUES ($1, $2, $3) ON CONFLICT (channel) DO UPDATE SET owner = EXCLUDED.owner, admins = EXCLUDED.admins",
        follow: "INSERT INTO follows VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        unfollow: "DELETE FROM follows WHERE user_name = $1 AND device = $2 AND channel = $3",
        add_channel_app: "INSERT INTO channel_apps VALUES ($1, $2) ON CONFLICT DO NOTHING",
        remove_channel_app: "DELETE FROM channel_apps WHERE channel = $1 AND app = $2",
        delete_account: "DELETE FROM accounts WHERE user_name = $1 AND device = $2",
        delete_bundles: "DELETE FROM bundles WHERE user_name = $1 AND device = $2",
        delete_mailbox: "DELETE FROM mailboxes WHERE user_name = $1 AND device = $2",
        delete_follows: "DELETE FROM follows WHERE user_name = $1 AND device = $2",
        // A batch spanning mailbox shards: its decision, and those of batches done (`shards.rs`).
        decide: "INSERT INTO relay_decisions VALUES ($1)",
        forget_decisions: "DELETE FROM relay_decisions WHERE batch = ANY($1)",
    }
}

statements! {
    /// What the contents the core does not keep in memory are read with.
    Reads {
        mail: "SELECT seq, envelope FROM mailboxes WHERE user_name = $1 AND device = $2 AND seq = ANY($3)",
        outbound: "SELECT seq, frame FROM outboxes WHERE app = $1 AND seq = ANY($2)",
        blob: "SELECT blob FROM blobs WHERE id = $1",
    }
}

pub(super) fn failed(what: &'static str) -> impl FnOnce(postgres::Error) -> StoreError {
    move |error| StoreError::backend(what, error)
}

/// `u64` as PostgreSQL's `int8`, bit for bit (see the module's docs).
fn int8(value: u64) -> i64 {
    value as i64
}

/// A device's (user, device id) as its two columns.
fn device_params((user, device_id): &DeviceKey) -> (&[u8], i64) {
    (user.as_bytes(), i64::from(*device_id))
}

/// Rows one statement of a [`Run`] writes at most.
const RUN_ROWS: usize = 4_096;

/// Bytes of envelopes or frames one statement of a [`Run`] carries at most (past the first row):
/// PostgreSQL refuses a message or value over 1 GB, and one batch may hold more than that (a
/// channel post to thousands of followers, say); the relay and the server each hold a
/// statement's values at once.
const RUN_BYTES: usize = 16 * 1024 * 1024;

/// The mutations a batch holds many of in a row: a batch stores and deletes mail and frames for
/// other apps by the dozen, and each run of one kind is written as one statement (a round trip
/// to the server) rather than one per row, up to [`RUN_ROWS`] rows and [`RUN_BYTES`] bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    PutEnvelopes,
    DeleteEnvelopes,
    PutOutbounds,
    DeleteOutbounds,
}

impl Run {
    fn of(mutation: &Mutation) -> Option<Run> {
        match mutation {
            Mutation::PutEnvelope { .. } => Some(Run::PutEnvelopes),
            Mutation::DeleteEnvelope { .. } => Some(Run::DeleteEnvelopes),
            Mutation::PutOutbound { .. } => Some(Run::PutOutbounds),
            Mutation::DeleteOutbound { .. } => Some(Run::DeleteOutbounds),
            _ => None,
        }
    }

    /// How many of `mutations` (the first of which is of this kind) one statement writes: those of
    /// this kind in a row, up to a key written twice (one INSERT … ON CONFLICT may not change a
    /// row twice; the later write goes in the next statement, so it still wins) and within
    /// [`RUN_ROWS`] and [`RUN_BYTES`]; at least one.
    fn len(self, mutations: &[Mutation]) -> usize {
        let mut keys = std::collections::HashSet::new();
        let mut bytes = 0usize;
        let taken = mutations
            .iter()
            .take(RUN_ROWS)
            .take_while(|mutation| {
                let (key, size) = match mutation {
                    Mutation::PutEnvelope { device, seq, envelope } => (Some((device.0.as_str(), device.1, *seq)), envelope.encoded_len()),
                    Mutation::PutOutbound { app, seq, frame } => (Some((app.as_str(), 0, *seq)), frame.encoded_len()),
                    _ => (None, 0),
                };
                bytes = bytes.saturating_add(size);
                Run::of(mutation) == Some(self) && bytes <= RUN_BYTES && key.is_none_or(|key| keys.insert(key))
            })
            .count();
        taken.max(1)
    }
}

impl Writes {
    /// Applies `mutations` in `txn`, in order (a later mutation of the same key wins, as in redb).
    pub(super) fn apply(&self, txn: &mut impl GenericClient, mutations: &[Mutation]) -> Result<(), postgres::Error> {
        let mut rest = mutations;
        while let Some(first) = rest.first() {
            let len = match Run::of(first) {
                Some(run) => {
                    let len = run.len(rest);
                    self.apply_run(txn, run, &rest[..len])?;
                    len
                }
                None => {
                    self.apply_one(txn, first)?;
                    1
                }
            };
            rest = &rest[len..];
        }
        Ok(())
    }

    /// Records that `batch`, which spans mailbox shards, is decided (see `shards.rs`).
    pub(super) fn decide(&self, txn: &mut Transaction<'_>, batch: &str) -> Result<(), postgres::Error> {
        txn.execute(&self.decide, &[&batch]).map(drop)
    }

    /// Forgets the decisions of `batches`, committed on every shard.
    pub(super) fn forget_decisions(&self, txn: &mut Transaction<'_>, batches: &[String]) -> Result<(), postgres::Error> {
        txn.execute(&self.forget_decisions, &[&batches]).map(drop)
    }

    /// Writes `mutations`, all of kind `run`, with one statement.
    fn apply_run(&self, txn: &mut impl GenericClient, run: Run, mutations: &[Mutation]) -> Result<(), postgres::Error> {
        let (mut names, mut devices, mut seqs, mut values) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for mutation in mutations {
            match mutation {
                Mutation::PutEnvelope { device, seq, envelope } => {
                    names.push(device.0.as_bytes());
                    devices.push(i64::from(device.1));
                    seqs.push(int8(*seq));
                    values.push(envelope.encode_to_vec());
                }
                Mutation::DeleteEnvelope { device, seq } => {
                    names.push(device.0.as_bytes());
                    devices.push(i64::from(device.1));
                    seqs.push(int8(*seq));
                }
                Mutation::PutOutbound { app, seq, frame } => {
                    names.push(app.as_bytes());
                    seqs.push(int8(*seq));
                    values.push(frame.encode_to_vec());
                }
                Mutation::DeleteOutbound { app, seq } => {
                    names.push(app.as_bytes());
                    seqs.push(int8(*seq));
                }
                _ => {}
            }
        }
        match run {
            Run::PutEnvelopes => txn.execute(&self.put_envelopes, &[&names, &devices, &seqs, &values]),
            Run::DeleteEnvelopes => txn.execute(&self.delete_envelopes, &[&names, &devices, &seqs]),
            Run::PutOutbounds => txn.execute(&self.put_outbounds, &[&names, &seqs, &values]),
            Run::DeleteOutbounds => txn.execute(&self.delete_outbounds, &[&names, &seqs]),
        }
        .map(drop)
    }

    /// Writes one mutation.
    fn apply_one(&self, txn: &mut impl GenericClient, mutation: &Mutation) -> Result<(), postgres::Error> {
        if let Some(kind) = Run::of(mutation) {
            return self.apply_run(txn, kind, std::slice::from_ref(mutation));
        }
        let mut run = |statement: &Statement, params: &[&(dyn ToSql + Sync)]| txn.execute(statement, params).map(drop);
        match mutation {
            Mutation::PutAccount { device, credential_hash } => {
                let (user, id) = device_params(device);
                run(&self.put_account, &[&user, &id, &credential_hash.as_slice()])?;
            }
            Mutation::PutBundles { device, bundles, low_mark } => {
                let (user, id) = device_params(device);
                let value = UploadBundles { bundles: bundles.clone(), low_mark: *low_mark }.encode_to_vec();
                run(&self.put_bundles, &[&user, &id, &value])?;
            }
            // Written as a run of one, above.
            Mutation::PutEnvelope { .. } | Mutation::DeleteEnvelope { .. } | Mutation::PutOutbound { .. } | Mutation::DeleteOutbound { .. } => {}
            Mutation::PutBlob { id, blob, stored_at } => run(&self.put_blob, &[&id.as_bytes(), blob, &int8(*stored_at)])?,
            Mutation::DeleteBlob { id } => run(&self.delete_blob, &[&id.as_bytes()])?,
            Mutation::PutGroupHead { group, head } => {
                run(&self.put_group_head, &[&group.as_bytes(), &super::super::stored_head(head).encode_to_vec()])?;
            }
            Mutation::AddContact { user, contact } => run(&self.add_contact, &[&user.as_bytes(), &contact.as_bytes()])?,
            Mutation::PutPerson { user, record: Some(record) } => run(&self.put_person, &[&user.as_bytes(), record])?,
            Mutation::PutPerson { user, record: None } => run(&self.delete_person, &[&user.as_bytes()])?,
            Mutation::PutStampKey { key } => run(&self.put_secret, &[&"stamp", &key.0.as_slice()])?,
            Mutation::SetBlocked { user, blocked, on } => {
                let statement = if *on { &self.block } else { &self.unblock };
                run(statement, &[&user.as_bytes(), &blocked.as_bytes()])?;
            }
            Mutation::PutReport { id, kept } => run(&self.put_report, &[&int8(*id), &kept.encode_to_vec()])?,
            Mutation::PutChannel { channel, owner, admins } => {
                let admins: Vec<&[u8]> = admins.iter().map(|admin| admin.as_bytes()).collect();
                run(&self.put_channel, &[&channel.as_bytes(), &owner.as_bytes(), &admins])?;
            }
            Mutation::SetFollowing { channel, device, on } => {
                let (user, id) = device_params(device);
                let statement = if *on { &self.follow } else { &self.unfollow };
                run(statement, &[&user, &id, &channel.as_bytes()])?;
            }
            Mutation::SetChannelApp { channel, app, on } => {
                let statement = if *on { &self.add_channel_app } else { &self.remove_channel_app };
                run(statement, &[&channel.as_bytes(), &app.as_bytes()])?;
            }
            Mutation::DeleteAccount { device } => {
                let (user, id) = device_params(device);
                for statement in [&self.delete_account, &self.delete_bundles, &self.delete_mailbox, &self.delete_follows] {
                    run(statement, &[&user, &id])?;
                }
            }
        }
        Ok(())
    }
}

fn corrupt(what: &'static str) -> impl FnOnce(postgres::Error) -> StoreError {
    move |error| StoreError::backend(format!("corrupt row in {what}"), error)
}

/// Column `i` of `row`, of the type asked for (a column of another type is an error, not a
/// panic).
fn column<'a, T: postgres::types::FromSql<'a>>(row: &'a Row, i: usize, table: &'static str) -> Result<T, StoreError> {
    row.try_get(i).map_err(corrupt(table))
}

/// A name kept as `bytea` (see the module's docs).
fn name(row: &Row, i: usize, table: &'static str) -> Result<String, StoreError> {
    String::from_utf8(column::<Vec<u8>>(row, i, table)?).map_err(|_| StoreError::new(format!("corrupt name in {table}")))
}

fn device(row: &Row, user: usize, table: &'static str) -> Result<DeviceKey, StoreError> {
    let id = u32::try_from(column::<i64>(row, user + 1, table)?).map_err(|_| StoreError::new(format!("corrupt device id in {table}")))?;
    Ok((name(row, user, table)?, id))
}

fn decoded<M: Message + Default>(bytes: &[u8], limit: usize, table: &'static str) -> Result<M, StoreError> {
    decode(bytes, limit).map_err(|error| StoreError::backend(format!("corrupt row in {table}"), error))
}

/// Calls `each` with every row `sql` selects, as they arrive: the mailboxes may hold far more
/// than is worth holding twice in memory.
fn each(txn: &mut Transaction<'_>, table: &'static str, sql: &str, mut each: impl FnMut(&Row) -> Result<(), StoreError>) -> Result<(), StoreError> {
    let reading = || format!("reading {table}");
    let mut rows = txn.query_raw(sql, std::iter::empty::<&(dyn ToSql + Sync)>()).map_err(|error| StoreError::backend(reading(), error))?;
    while let Some(row) = rows.next().map_err(|error| StoreError::backend(reading(), error))? {
        each(&row)?;
    }
    Ok(())
}

/// Everything but the contents of mailboxes, outboxes and blobs, as [`StoredState`] holds it,
/// read in one snapshot (`txn` is repeatable-read); each mailbox's user checked by `owned`.
pub(super) fn load(txn: &mut Transaction<'_>, owned: impl Fn(&str) -> Result<(), StoreError>) -> Result<StoredState, StoreError> {
    let mut state = StoredState::default();
    each(txn, "accounts", "SELECT user_name, device, credential_hash FROM accounts", |row| {
        let hash: [u8; 32] = column::<&[u8]>(row, 2, "accounts")?.try_into().map_err(|_| StoreError::new("corrupt account"))?;
        state.accounts.insert(device(row, 0, "accounts")?, hash);
        Ok(())
    })?;
    each(txn, "bundles", "SELECT user_name, device, bundles FROM bundles", |row| {
        let device = device(row, 0, "bundles")?;
        let bundles: UploadBundles = decoded(column(row, 2, "bundles")?, MAX_FRAME_LEN * 64, "bundles")?;
        if bundles.low_mark > 0 {
            state.prekey_marks.insert(device.clone(), bundles.low_mark);
        }
        state.bundles.insert(device, bundles.bundles);
        Ok(())
    })?;
    load_mailboxes(txn, &mut state, owned)?;
    each(txn, "outboxes", "SELECT app, seq, frame FROM outboxes", |row| {
        let frame: FederationFrame = decoded(column(row, 2, "outboxes")?, MAX_FRAME_LEN, "outboxes")?;
        let seq = column::<i64>(row, 1, "outboxes")? as u64;
        state.outboxes.entry(name(row, 0, "outboxes")?).or_default().insert(seq, OutboundEntry::of(&frame));
        Ok(())
    })?;
    // Their sizes only: the blobs stay in the database.
    each(txn, "blobs", "SELECT id, octet_length(blob), stored_at FROM blobs", |row| {
        let bytes = usize::try_from(column::<i32>(row, 1, "blobs")?).map_err(|_| StoreError::new("corrupt blob length"))?;
        let stored_at = column::<i64>(row, 2, "blobs")? as u64;
        state.blobs.insert(name(row, 0, "blobs")?, BlobEntry { bytes, stored_at });
        Ok(())
    })?;
    each(txn, "group_heads", "SELECT group_id, head FROM group_heads", |row| {
        let stored: StoredGroupHead = decoded(column(row, 1, "group_heads")?, MAX_FRAME_LEN, "group_heads")?;
        state.group_heads.insert(name(row, 0, "group_heads")?, super::super::head_from_stored(&stored)?);
        Ok(())
    })?;
    each(txn, "contacts", "SELECT user_name, contact FROM contacts", |row| {
        state.contacts.entry(name(row, 0, "contacts")?).or_default().insert(name(row, 1, "contacts")?);
        Ok(())
    })?;
    each(txn, "people", "SELECT user_name, record FROM people", |row| {
        let record: Vec<u8> = column(row, 1, "people")?;
        state.people_bytes += record.len();
        state.people.insert(name(row, 0, "people")?, record);
        Ok(())
    })?;
    each(txn, "secrets", "SELECT value FROM secrets WHERE name = 'stamp'", |row| {
        let key: [u8; 32] = column::<&[u8]>(row, 0, "secrets")?.try_into().map_err(|_| StoreError::new("corrupt stamp key"))?;
        state.stamp_key = Some(StampKey(key));
        Ok(())
    })?;
    each(txn, "blocked", "SELECT user_name, blocked FROM blocked", |row| {
        state.blocked.entry(name(row, 0, "blocked")?).or_default().insert(name(row, 1, "blocked")?);
        Ok(())
    })?;
    each(txn, "reports", "SELECT id, kept FROM reports", |row| {
        let kept: KeptReport = decoded(column(row, 1, "reports")?, MAX_FRAME_LEN, "reports")?;
        state.apply(&Mutation::PutReport { id: column::<i64>(row, 0, "reports")? as u64, kept });
        Ok(())
    })?;
    each(txn, "channels", "SELECT channel, owner, admins FROM channels", |row| {
        let admins = column::<Vec<Vec<u8>>>(row, 2, "channels")?
            .into_iter()
            .map(|admin| String::from_utf8(admin).map_err(|_| StoreError::new("corrupt name in channels")))
            .collect::<Result<_, _>>()?;
        state.apply(&Mutation::PutChannel { channel: name(row, 0, "channels")?, owner: name(row, 1, "channels")?, admins });
        Ok(())
    })?;
    each(txn, "follows", "SELECT user_name, device, channel FROM follows", |row| {
        state.apply(&Mutation::SetFollowing { channel: name(row, 2, "follows")?, device: device(row, 0, "follows")?, on: true });
        Ok(())
    })?;
    each(txn, "channel_apps", "SELECT channel, app FROM channel_apps", |row| {
        state.apply(&Mutation::SetChannelApp { channel: name(row, 0, "channel_apps")?, app: name(row, 1, "channel_apps")?, on: true });
        Ok(())
    })?;
    Ok(state)
}

/// The mailboxes `txn` holds, into `state`; each mailbox's user checked by `owned` (a shard's
/// mailboxes, or the home's, belong there by the shard map).
pub(super) fn load_mailboxes(
    txn: &mut Transaction<'_>,
    state: &mut StoredState,
    owned: impl Fn(&str) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    each(txn, "mailboxes", "SELECT user_name, device, seq, envelope FROM mailboxes", |row| {
        let envelope: Envelope = decoded(column(row, 3, "mailboxes")?, MAX_FRAME_LEN, "mailboxes")?;
        let seq = column::<i64>(row, 2, "mailboxes")? as u64;
        let device = device(row, 0, "mailboxes")?;
        owned(&device.0)?;
        state.mailboxes.entry(device).or_default().insert(seq, MailEntry::of(&envelope));
        Ok(())
    })
}

impl Reads {
    /// The values of `rows` (sequence number, encoded message) for each of `seqs` in that order,
    /// decoded; a sequence number with no row is left out.
    fn in_order<M: Message + Default>(rows: Vec<Row>, seqs: &[u64], table: &'static str) -> Result<Vec<(u64, M)>, StoreError> {
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            found.insert(column::<i64>(row, 0, table)? as u64, column::<&[u8]>(row, 1, table)?);
        }
        seqs.iter().filter_map(|seq| found.get(seq).map(|bytes| Ok((*seq, decoded(bytes, MAX_FRAME_LEN, table)?)))).collect()
    }

    pub(super) fn mail(&self, client: &mut Client, device: &DeviceKey, seqs: &[u64]) -> Result<Vec<(u64, Envelope)>, StoreError> {
        let (user, id) = device_params(device);
        let wanted: Vec<i64> = seqs.iter().map(|seq| int8(*seq)).collect();
        let rows = client.query(&self.mail, &[&user, &id, &wanted]).map_err(failed("reading mail"))?;
        Reads::in_order(rows, seqs, "mailboxes")
    }

    pub(super) fn outbound(&self, client: &mut Client, app: &str, seqs: &[u64]) -> Result<Vec<(u64, FederationFrame)>, StoreError> {
        let wanted: Vec<i64> = seqs.iter().map(|seq| int8(*seq)).collect();
        let rows = client.query(&self.outbound, &[&app.as_bytes(), &wanted]).map_err(failed("reading frames for other apps"))?;
        Reads::in_order(rows, seqs, "outboxes")
    }

    pub(super) fn blob(&self, client: &mut Client, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = client.query_opt(&self.blob, &[&id.as_bytes()]).map_err(failed("reading a blob"))?;
        row.map(|row| column(&row, 0, "blobs")).transpose()
    }
}

#[cfg(test)]
mod tests {
    use switchboard_wire::switchboard::Envelope;

    use super::{RUN_BYTES, RUN_ROWS, Run};
    use crate::state::Mutation;

    fn put(seq: u64, content: usize) -> Mutation {
        let envelope = Envelope { id: vec![1; 16].into(), content: vec![7; content].into(), ..Default::default() };
        Mutation::PutEnvelope { device: ("bob@blue".into(), 1), seq, envelope }
    }

    fn delete(seq: u64) -> Mutation {
        Mutation::DeleteEnvelope { device: ("bob@blue".into(), 1), seq }
    }

    #[test]
    fn a_run_ends_at_another_kind_or_a_key_written_again() {
        assert_eq!(Run::PutEnvelopes.len(&[put(1, 10), put(2, 10), delete(1), put(3, 10)]), 2);
        assert_eq!(Run::PutEnvelopes.len(&[put(1, 10), put(2, 10), put(1, 20)]), 2);
        // Deletes of one key twice are one statement.
        assert_eq!(Run::DeleteEnvelopes.len(&[delete(1), delete(1), put(1, 10)]), 2);
    }

    #[test]
    fn a_run_is_bounded_in_rows_and_bytes() {
        let many: Vec<Mutation> = (0..RUN_ROWS as u64 + 10).map(|seq| put(seq, 1)).collect();
        assert_eq!(Run::PutEnvelopes.len(&many), RUN_ROWS);
        // Four envelopes of a quarter of the bound and a bit: three fit.
        let large: Vec<Mutation> = (0..4).map(|seq| put(seq, RUN_BYTES / 4 + 1)).collect();
        assert_eq!(Run::PutEnvelopes.len(&large), 3);
        // One envelope over the bound is still written, alone.
        let huge = [put(1, RUN_BYTES + 1), put(2, 1)];
        assert_eq!(Run::PutEnvelopes.len(&huge), 1);
    }
}
