//! State on disk in an embedded redb database: one write transaction per batch, synced before
//! the commit returns. Mail, frames for other apps and blobs are read back in read transactions,
//! which redb runs beside the write transaction of the batch being committed and which see every
//! batch committed before they began.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use switchboard_wire::switchboard::{Envelope, FederationFrame, KeptReport, StoredGroupHead, UploadBundles};
use switchboard_wire::{Message, decode, frame::MAX_FRAME_LEN};

use super::{Contents, Store, StoreError};
use crate::state::{BlobEntry, DeviceKey, MailEntry, Mutation, OutboundEntry, StampKey, StoredState};

const ACCOUNTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("accounts");
const BUNDLES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bundles");
const MAILBOXES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("mailboxes");
const OUTBOXES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("outboxes");
const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");
/// When each blob was stored (seconds since the Unix epoch). A blob without one (stored by a
/// version that kept none) is given the time it is first found without.
const BLOB_TIMES: TableDefinition<&str, u64> = TableDefinition::new("blob_times");
const GROUP_HEADS: TableDefinition<&str, &[u8]> = TableDefinition::new("group_heads");
/// Keyed by the user (as [`name_key`]) then the contact's name; no value.
const CONTACTS: TableDefinition<&[u8], ()> = TableDefinition::new("contacts");
/// Per user, the person record it published (encoded).
const PEOPLE: TableDefinition<&str, &[u8]> = TableDefinition::new("people");
/// The relay's own secrets by name: its franking stamp key ("stamp").
const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
/// Per user, the users it blocked (the key: the user's name key, then the blocked user).
const BLOCKED: TableDefinition<&[u8], ()> = TableDefinition::new("blocked");
/// Verified abuse reports (each an encoded `KeptReport`), by number.
const REPORTS: TableDefinition<u64, &[u8]> = TableDefinition::new("reports");
/// The channels of this app by id: their owner, then their admins, each as a [`name_key`].
const CHANNELS: TableDefinition<&str, &[u8]> = TableDefinition::new("channels");
/// Which device follows which channel (the key: the device's [`device_key`], then the channel);
/// no value. By device first, so that a removed device's follows are one range.
const FOLLOWS: TableDefinition<&[u8], ()> = TableDefinition::new("follows");
/// Per channel of this app, the other apps with followers of it (the key: the channel's
/// [`name_key`], then the app); no value.
const CHANNEL_APPS: TableDefinition<&[u8], ()> = TableDefinition::new("channel_apps");

/// Memory redb may keep as a cache of the file (its default, 1 GiB, let every mailbox written
/// count against the relay's resident memory).
pub const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Why a relay's database could not be opened. Each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process holds the database: a relay already running on this data folder.
    #[error("{} is in use by another process (is a relay already running with this data folder?)", path.display())]
    InUse {
        /// The database file.
        path: PathBuf,
    },
    /// The file could not be created or given its permissions.
    #[error("{}", path.display())]
    File {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is no redb database, or cannot be opened as one.
    #[error("{}: not a relay database, or one that cannot be opened", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        #[source]
        source: redb::DatabaseError,
    },
    /// What the database holds could not be read.
    #[error("{}: reading what it holds", path.display())]
    Load {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: StoreError,
    },
}

/// A relay's database file, to commit batches to.
pub struct RedbStore {
    db: Arc<Database>,
}

/// The same database file, to read mail, frames and blobs back from (see [`RedbStore::contents`]).
pub struct RedbContents {
    db: Arc<Database>,
}

fn failed(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::backend("the database", error)
}

/// `name` as a length-prefixed key part, so that keys sort by name, then by what follows.
fn name_key(name: &str) -> Vec<u8> {
    let mut key = (name.len() as u32).to_be_bytes().to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

fn device_key((user, device_id): &DeviceKey) -> Vec<u8> {
    let mut key = name_key(user);
    key.extend_from_slice(&device_id.to_be_bytes());
    key
}

fn with_seq(mut key: Vec<u8>, seq: u64) -> Vec<u8> {
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Splits a key made by [`name_key`] into the name and the rest.
fn split_name(key: &[u8]) -> Result<(String, &[u8]), StoreError> {
    let corrupt = || StoreError::new("corrupt key");
    let (len, rest) = key.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(corrupt());
    }
    let name = String::from_utf8(rest[..len].to_vec()).map_err(|_| corrupt())?;
    Ok((name, &rest[len..]))
}

fn split_device(key: &[u8]) -> Result<(DeviceKey, &[u8]), StoreError> {
    let (user, rest) = split_name(key)?;
    let (device, rest) = rest.split_first_chunk::<4>().ok_or_else(|| StoreError::new("corrupt key"))?;
    Ok(((user, u32::from_be_bytes(*device)), rest))
}

/// A channel's owner and admins as stored in [`CHANNELS`].
fn channel_value(owner: &str, admins: &[String]) -> Vec<u8> {
    std::iter::once(owner).chain(admins.iter().map(String::as_str)).flat_map(name_key).collect()
}

/// The owner and the admins in a value made by [`channel_value`].
fn split_channel(mut value: &[u8]) -> Result<(String, Vec<String>), StoreError> {
    let (owner, rest) = split_name(value)?;
    value = rest;
    let mut admins = Vec::new();
    while !value.is_empty() {
        let (admin, rest) = split_name(value)?;
        admins.push(admin);
        value = rest;
    }
    Ok((owner, admins))
}

/// `key` followed by a name, for tables keyed by a key part then a name.
fn then_name(mut key: Vec<u8>, name: &str) -> Vec<u8> {
    key.extend_from_slice(name.as_bytes());
    key
}

/// The bounds of every key that is `prefix` followed by a name (UTF-8, which never holds the
/// byte 0xFF).
fn named_after(prefix: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    let mut end = prefix.clone();
    end.push(0xFF);
    (prefix, end)
}

fn seq_of(rest: &[u8]) -> Result<u64, StoreError> {
    let seq: [u8; 8] = rest.try_into().map_err(|_| StoreError::new("corrupt key"))?;
    Ok(u64::from_be_bytes(seq))
}

impl RedbStore {
    /// Opens (or creates, readable by its owner only: it holds credential hashes, mailboxes and
    /// who writes to whom) the database at `path` and loads what it holds.
    pub fn open(path: &Path) -> Result<(RedbStore, StoredState), OpenError> {
        let file = |source| OpenError::File { path: path.to_owned(), source };
        if !path.exists() {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options.open(path).map_err(file)?;
        }
        // Also a file made by an older version, or copied in.
        #[cfg(unix)]
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(file)?;
        let db = redb::Builder::new().set_cache_size(CACHE_BYTES).create(path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => OpenError::InUse { path: path.to_owned() },
            source => OpenError::Database { path: path.to_owned(), source },
        })?;
        let store = RedbStore { db: Arc::new(db) };
        let load = |source| OpenError::Load { path: path.to_owned(), source };
        // Create the tables, so a fresh database reads as empty.
        store.write(&[]).map_err(failed).map_err(load)?;
        let state = store.load().map_err(load)?;
        Ok((store, state))
    }

    /// A reader of what this store committed, for the core.
    pub fn contents(&self) -> RedbContents {
        RedbContents { db: self.db.clone() }
    }

    fn load(&self) -> Result<StoredState, StoreError> {
        let txn = self.db.begin_read().map_err(failed)?;
        let mut state = StoredState::default();
        for entry in txn.open_table(ACCOUNTS).map_err(failed)?.iter().map_err(failed)? {
            let (key, value) = entry.map_err(failed)?;
            let (device, _) = split_device(key.value())?;
            let hash: [u8; 32] = value.value().try_into().map_err(|_| StoreError::new("corrupt account"))?;
            state.accounts.insert(device, hash);
        }
        for entry in txn.open_table(BUNDLES).map_err(failed)?.iter().map_err(failed)? {
            let (key, value) = entry.map_err(failed)?;
            let (device, _) = split_device(key.value())?;
            let bundles: UploadBundles = decode(value.value(), MAX_FRAME_LEN * 64).map_err(failed)?;
            if bundles.low_mark > 0 {
                state.prekey_marks.insert(device.clone(), bundles.low_mark);
            }
            state.bundles.insert(device, bundles.bundles);
        }
        for entry in txn.open_table(MAILBOXES).map_err(failed)?.iter().map_err(failed)? {
            let (key, value) = entry.map_err(failed)?;
            let (device, rest) = split_device(key.value())?;
            let envelope: Envelope = decode(value.value(), MAX_FRAME_LEN).map_err(failed)?;
            state.mailboxes.entry(device).or_default().insert(seq_of(rest)?, MailEntry::of(&envelope));
        }
        for entry in txn.open_table(OUTBOXES).map_err(failed)?.iter().map_err(failed)? {
            let (key, value) = entry.map_err(failed)?;
            let (app, rest) = split_name(key.value())?;
            let frame: FederationFrame = decode(value.value(), MAX_FRAME_LEN).map_err(failed)?;
            state.outboxes.entry(app).or_default().insert(seq_of(rest)?, OutboundEntry::of(&frame));
        }
        let times = txn.open_table(BLOB_TIMES).map_err(failed)?;
        let now = crate::unix_time();
        let mut untimed = Vec::new();
        for entry in txn.open_table(BLOBS).map_err(failed)?.iter().map_err(failed)? {
            let (key, value) = entry.map_err(failed)?;
            let stored_at = match times.get(key.value()).map_err(failed)? {
                Some(time) => time.value(),
                None => {
                    untimed.push(key.value().to_owned());
                    now
                }
            };
            state.blobs.insert(key.value().to_owned(), BlobEntry { bytes: value.value().len(), stored_at });
        }
        for entry in txn.open_table(GROUP_HEADS).map_err(failed)?.iter().map_err(failed)? {
            let (key, value) = entry.map_err(failed)?;
            let stored: StoredGroupHead = decode(value.value(), MAX_FRAME_LEN).map_err(failed)?;
            state.group_heads.insert(key.value().to_owned(), super::head_from_stored(&stored)?);
        }
        for entry in txn.open_table(CONTACTS).map_err(failed)?.iter().map_err(failed)? {
            let (key, _) = entry.map_err(failed)?;
            let (user, contact) = split_name(key.value())?;
            let contact = String::from_utf8(contact.to_vec()).map_err(|_| StoreError::new("corrupt contact"))?;
            state.contacts.entry(user).or_default().insert(contact);
        }
        for entry in txn.open_table(PEOPLE).map_err(failed)?.iter().map_err(failed)? {
            let (key, value) = entry.map_err(failed)?;
            state.people_bytes += value.value().len();
            state.people.insert(key.value().to_owned(), value.value().to_vec());
        }
        for entry in txn.open_table(SECRETS).map_err(failed)?.iter().map_err(failed)? {
            let (key, value) = entry.map_err(failed)?;
            if key.value() == "stamp" {
                let key: [u8; 32] = value.value().try_into().map_err(|_| StoreError::new("corrupt stamp key"))?;
                state.stamp_key = Some(StampKey(key));
            }
        }
        for entry in txn.open_table(BLOCKED).map_err(failed)?.iter().map_err(failed)? {
            let (key, _) = entry.map_err(failed)?;
            let (user, blocked) = split_name(key.value())?;
            let blocked = String::from_utf8(blocked.to_vec()).map_err(|_| StoreError::new("corrupt block"))?;
            state.blocked.entry(user).or_default().insert(blocked);
        }
        for entry in txn.open_table(REPORTS).map_err(failed)?.iter().map_err(failed)? {
            let (key, value) = entry.map_err(failed)?;
            let kept: KeptReport = decode(value.value(), MAX_FRAME_LEN).map_err(failed)?;
            state.apply(&Mutation::PutReport { id: key.value(), kept });
        }
        for entry in txn.open_table(CHANNELS).map_err(failed)?.iter().map_err(failed)? {
            let (key, value) = entry.map_err(failed)?;
            let (owner, admins) = split_channel(value.value())?;
            state.apply(&Mutation::PutChannel { channel: key.value().to_owned(), owner, admins });
        }
        for entry in txn.open_table(FOLLOWS).map_err(failed)?.iter().map_err(failed)? {
            let (key, _) = entry.map_err(failed)?;
            let (device, channel) = split_device(key.value())?;
            let channel = String::from_utf8(channel.to_vec()).map_err(|_| StoreError::new("corrupt follow"))?;
            state.apply(&Mutation::SetFollowing { channel, device, on: true });
        }
        for entry in txn.open_table(CHANNEL_APPS).map_err(failed)?.iter().map_err(failed)? {
            let (key, _) = entry.map_err(failed)?;
            let (channel, app) = split_name(key.value())?;
            let app = String::from_utf8(app.to_vec()).map_err(|_| StoreError::new("corrupt channel app"))?;
            state.apply(&Mutation::SetChannelApp { channel, app, on: true });
        }
        if !untimed.is_empty() {
            let write = self.db.begin_write().map_err(failed)?;
            {
                let mut times = write.open_table(BLOB_TIMES).map_err(failed)?;
                for id in &untimed {
                    times.insert(id.as_str(), now).map_err(failed)?;
                }
            }
            write.commit().map_err(failed)?;
        }
        Ok(state)
    }

    fn write(&self, mutations: &[Mutation]) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        {
            let mut accounts = txn.open_table(ACCOUNTS)?;
            let mut bundles = txn.open_table(BUNDLES)?;
            let mut mailboxes = txn.open_table(MAILBOXES)?;
            let mut outboxes = txn.open_table(OUTBOXES)?;
            let mut blobs = txn.open_table(BLOBS)?;
            let mut blob_times = txn.open_table(BLOB_TIMES)?;
            let mut group_heads = txn.open_table(GROUP_HEADS)?;
            let mut contacts = txn.open_table(CONTACTS)?;
            let mut people = txn.open_table(PEOPLE)?;
            let mut secrets = txn.open_table(SECRETS)?;
            let mut blocked_table = txn.open_table(BLOCKED)?;
            let mut reports = txn.open_table(REPORTS)?;
            let mut channels = txn.open_table(CHANNELS)?;
            let mut follows = txn.open_table(FOLLOWS)?;
            let mut channel_apps = txn.open_table(CHANNEL_APPS)?;
            for mutation in mutations {
                match mutation {
                    Mutation::PutAccount { device, credential_hash } => {
                        accounts.insert(device_key(device).as_slice(), credential_hash.as_slice())?;
                    }
                    Mutation::PutBundles { device, bundles: list, low_mark } => {
                        let value = UploadBundles { bundles: list.clone(), low_mark: *low_mark }.encode_to_vec();
                        bundles.insert(device_key(device).as_slice(), value.as_slice())?;
                    }
                    Mutation::PutEnvelope { device, seq, envelope } => {
                        let key = with_seq(device_key(device), *seq);
                        mailboxes.insert(key.as_slice(), envelope.encode_to_vec().as_slice())?;
                    }
                    Mutation::DeleteEnvelope { device, seq } => {
                        mailboxes.remove(with_seq(device_key(device), *seq).as_slice())?;
                    }
                    Mutation::PutOutbound { app, seq, frame } => {
                        let key = with_seq(name_key(app), *seq);
                        outboxes.insert(key.as_slice(), frame.encode_to_vec().as_slice())?;
                    }
                    Mutation::DeleteOutbound { app, seq } => {
                        outboxes.remove(with_seq(name_key(app), *seq).as_slice())?;
                    }
                    Mutation::PutBlob { id, blob, stored_at } => {
                        blobs.insert(id.as_str(), blob.as_slice())?;
                        blob_times.insert(id.as_str(), *stored_at)?;
                    }
                    Mutation::DeleteBlob { id } => {
                        blobs.remove(id.as_str())?;
                        blob_times.remove(id.as_str())?;
                    }
                    Mutation::PutGroupHead { group, head } => {
                        group_heads.insert(group.as_str(), super::stored_head(head).encode_to_vec().as_slice())?;
                    }
                    Mutation::AddContact { user, contact } => {
                        let mut key = name_key(user);
                        key.extend_from_slice(contact.as_bytes());
                        contacts.insert(key.as_slice(), ())?;
                    }
                    Mutation::PutPerson { user, record } => match record {
                        Some(record) => {
                            people.insert(user.as_str(), record.as_slice())?;
                        }
                        None => {
                            people.remove(user.as_str())?;
                        }
                    },
                    Mutation::PutStampKey { key } => {
                        secrets.insert("stamp", key.0.as_slice())?;
                    }
                    Mutation::SetBlocked { user, blocked, on } => {
                        let mut key = name_key(user);
                        key.extend_from_slice(blocked.as_bytes());
                        match on {
                            true => blocked_table.insert(key.as_slice(), ())?,
                            false => blocked_table.remove(key.as_slice())?,
                        };
                    }
                    Mutation::PutReport { id, kept } => {
                        reports.insert(*id, kept.encode_to_vec().as_slice())?;
                    }
                    Mutation::PutChannel { channel, owner, admins } => {
                        channels.insert(channel.as_str(), channel_value(owner, admins).as_slice())?;
                    }
                    Mutation::SetFollowing { channel, device, on } => {
                        let key = then_name(device_key(device), channel);
                        match on {
                            true => follows.insert(key.as_slice(), ())?,
                            false => follows.remove(key.as_slice())?,
                        };
                    }
                    Mutation::SetChannelApp { channel, app, on } => {
                        let key = then_name(name_key(channel), app);
                        match on {
                            true => channel_apps.insert(key.as_slice(), ())?,
                            false => channel_apps.remove(key.as_slice())?,
                        };
                    }
                    Mutation::DeleteAccount { device } => {
                        let key = device_key(device);
                        accounts.remove(key.as_slice())?;
                        bundles.remove(key.as_slice())?;
                        let (first, last) = (with_seq(key.clone(), 0), with_seq(key.clone(), u64::MAX));
                        mailboxes.retain_in::<&[u8], _>(first.as_slice()..=last.as_slice(), |_, _| false)?;
                        let (start, end) = named_after(key);
                        follows.retain_in::<&[u8], _>(start.as_slice()..end.as_slice(), |_, _| false)?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

impl Store for RedbStore {
    fn commit(&mut self, mutations: &[Mutation]) -> Result<(), StoreError> {
        self.write(mutations).map_err(failed)
    }
}

impl RedbContents {
    /// The values under `prefix` followed by each of `seqs`, decoded, in one read transaction.
    fn read_each<M: Message + Default>(
        &self,
        table: TableDefinition<&[u8], &[u8]>,
        prefix: &[u8],
        seqs: &[u64],
    ) -> Result<Vec<(u64, M)>, StoreError> {
        let txn = self.db.begin_read().map_err(failed)?;
        let table = txn.open_table(table).map_err(failed)?;
        let mut read = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if let Some(value) = table.get(with_seq(prefix.to_vec(), *seq).as_slice()).map_err(failed)? {
                read.push((*seq, decode(value.value(), MAX_FRAME_LEN).map_err(failed)?));
            }
        }
        Ok(read)
    }
}

impl Contents for RedbContents {
    fn mail(&self, device: &DeviceKey, seqs: &[u64]) -> Result<Vec<(u64, Envelope)>, StoreError> {
        self.read_each(MAILBOXES, &device_key(device), seqs)
    }

    fn outbound(&self, app: &str, seqs: &[u64]) -> Result<Vec<(u64, FederationFrame)>, StoreError> {
        self.read_each(OUTBOXES, &name_key(app), seqs)
    }

    fn blob(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(failed)?;
        let table = txn.open_table(BLOBS).map_err(failed)?;
        Ok(table.get(id).map_err(failed)?.map(|blob| blob.value().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_wire::switchboard::{DeviceAddress, PreKeyBundle, federation_frame};

    #[test]
    fn what_was_committed_is_what_is_loaded_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.redb");
        let device: DeviceKey = ("bob@blue".into(), 2);
        let envelope = |id: u8| Envelope {
            id: vec![id; 16].into(),
            sender: Some(DeviceAddress { name: "alice@green".into(), device_id: 1 }),
            recipient: Some(DeviceAddress { name: "bob@blue".into(), device_id: 2 }),
            kind: 2,
            content: vec![id; 40].into(),
            group_id: String::new(),
            franking: None,
            channel: false,
        };
        let frame = FederationFrame { request_id: 9, body: Some(federation_frame::Body::Forward(envelope(9))) };
        let mutations = vec![
            Mutation::PutAccount { device: device.clone(), credential_hash: [7; 32] },
            Mutation::PutBundles { device: device.clone(), bundles: vec![PreKeyBundle { device_id: 2, ..Default::default() }], low_mark: 7 },
            Mutation::PutEnvelope { device: device.clone(), seq: 3, envelope: envelope(3) },
            Mutation::PutEnvelope { device: device.clone(), seq: 4, envelope: envelope(4) },
            Mutation::DeleteEnvelope { device: device.clone(), seq: 3 },
            Mutation::PutOutbound { app: "red".into(), seq: 9, frame: frame.clone() },
            Mutation::PutBlob { id: "00ff@blue".into(), blob: vec![1, 2, 3], stored_at: 1_800_000_000 },
            Mutation::PutBlob { id: "00fe@blue".into(), blob: vec![4], stored_at: 1_700_000_000 },
            Mutation::DeleteBlob { id: "00fe@blue".into() },
            Mutation::PutGroupHead { group: "g@blue".into(), head: crate::state::Head { epoch: 3, state_hash: [4; 32], order_key: [5; 32], recent_hashes: vec![[6; 32]] } },
            Mutation::AddContact { user: "bob@blue".into(), contact: "alice@green".into() },
            Mutation::AddContact { user: "bob@blue".into(), contact: "carol@red".into() },
            Mutation::PutPerson { user: "bob@blue".into(), record: Some(vec![1, 2, 3]) },
            Mutation::PutPerson { user: "carol@blue".into(), record: Some(vec![4]) },
            Mutation::PutPerson { user: "carol@blue".into(), record: None },
            Mutation::PutStampKey { key: StampKey([8; 32]) },
            Mutation::SetBlocked { user: "bob@blue".into(), blocked: "mallory@red".into(), on: true },
            Mutation::SetBlocked { user: "bob@blue".into(), blocked: "eve@red".into(), on: true },
            Mutation::SetBlocked { user: "bob@blue".into(), blocked: "eve@red".into(), on: false },
            Mutation::PutReport { id: 1, kept: KeptReport { reporter: "bob@blue".into(), report: Some(Default::default()) } },
            Mutation::PutChannel { channel: "news@blue".into(), owner: "bob@blue".into(), admins: vec!["alice@green".into(), "bob@blue".into()] },
            Mutation::PutChannel { channel: "old@blue".into(), owner: "carol@blue".into(), admins: vec!["carol@blue".into()] },
            Mutation::PutChannel { channel: "news@blue".into(), owner: "bob@blue".into(), admins: vec!["bob@blue".into(), "dave@red".into()] },
            Mutation::SetFollowing { channel: "news@blue".into(), device: device.clone(), on: true },
            Mutation::SetFollowing { channel: "tv@red".into(), device: device.clone(), on: true },
            Mutation::SetFollowing { channel: "tv@red".into(), device: ("carol@blue".into(), 1), on: true },
            Mutation::SetFollowing { channel: "old@blue".into(), device: ("carol@blue".into(), 1), on: true },
            Mutation::SetFollowing { channel: "old@blue".into(), device: ("carol@blue".into(), 1), on: false },
            Mutation::SetChannelApp { channel: "news@blue".into(), app: "red".into(), on: true },
            Mutation::SetChannelApp { channel: "news@blue".into(), app: "green".into(), on: true },
            Mutation::SetChannelApp { channel: "news@blue".into(), app: "green".into(), on: false },
            // A removed device: its account, bundles, mail and follows go; another's stay.
            Mutation::PutAccount { device: ("bob@blue".into(), 3), credential_hash: [9; 32] },
            Mutation::PutBundles { device: ("bob@blue".into(), 3), bundles: vec![PreKeyBundle { device_id: 3, ..Default::default() }], low_mark: 2 },
            Mutation::PutEnvelope { device: ("bob@blue".into(), 3), seq: 5, envelope: envelope(5) },
            Mutation::SetFollowing { channel: "tv@red".into(), device: ("bob@blue".into(), 3), on: true },
            Mutation::DeleteAccount { device: ("bob@blue".into(), 3) },
        ];
        let mut expected = StoredState::default();
        {
            let (mut store, loaded) = RedbStore::open(&path).unwrap();
            assert_eq!(loaded, StoredState::default());
            store.commit(&mutations[..3]).unwrap();
            store.commit(&mutations[3..]).unwrap();
        }
        for mutation in &mutations {
            expected.apply(mutation);
        }
        let (store, loaded) = RedbStore::open(&path).unwrap();
        assert_eq!(loaded, expected);
        assert_eq!(loaded.next_seq(), 10);
        assert_eq!(loaded.blobs["00ff@blue"], BlobEntry { bytes: 3, stored_at: 1_800_000_000 });
        // The contents the state leaves out are read back: mail by range, blobs by id.
        let contents = store.contents();
        assert_eq!(contents.mail(&device, &[3, 4, 5]).unwrap(), [(4, envelope(4))]);
        assert_eq!(contents.mail(&device, &[3]).unwrap(), []);
        assert_eq!(contents.mail(&("bob@blue".into(), 3), &[4, 5]).unwrap(), []);
        assert!(!loaded.accounts.contains_key(&("bob@blue".into(), 3)));
        assert_eq!(loaded.channels["news@blue"].admins.iter().collect::<Vec<_>>(), ["bob@blue", "dave@red"]);
        assert_eq!(loaded.followers["tv@red"].len(), 2);
        assert!(!loaded.followers.contains_key("old@blue"));
        assert_eq!(loaded.channel_apps["news@blue"].iter().collect::<Vec<_>>(), ["red"]);
        assert_eq!(contents.blob("00ff@blue").unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(contents.blob("00fe@blue").unwrap(), None);
        assert_eq!(contents.outbound("red", &[8, 9]).unwrap(), [(9, frame)]);
        assert_eq!(contents.outbound("green", &[9]).unwrap(), []);
    }

    #[cfg(unix)]
    #[test]
    fn the_database_is_readable_by_its_owner_only_even_if_it_existed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let fresh = dir.path().join("fresh.redb");
        drop(RedbStore::open(&fresh).unwrap());
        assert_eq!(mode(&fresh), 0o600);
        let older = dir.path().join("older.redb");
        drop(RedbStore::open(&older).unwrap());
        std::fs::set_permissions(&older, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(RedbStore::open(&older).unwrap());
        assert_eq!(mode(&older), 0o600);
    }

    #[test]
    fn an_error_names_the_database_and_says_it_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.redb");
        let _open = RedbStore::open(&path).unwrap();
        let Err(error) = RedbStore::open(&path) else { panic!("opened twice") };
        assert!(matches!(error, OpenError::InUse { .. }), "{error:?}");
        let said = error.to_string();
        assert!(said.contains(&path.display().to_string()) && said.contains("relay already running"), "{said}");
    }

    #[test]
    fn a_file_that_is_no_database_is_named_and_keeps_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.redb");
        std::fs::write(&path, "not a database").unwrap();
        let Err(error) = RedbStore::open(&path) else { panic!("opened a file that is no database") };
        assert!(error.to_string().contains(&path.display().to_string()), "{error}");
        assert!(std::error::Error::source(&error).is_some(), "{error:?}");
        let missing = dir.path().join("no-such-folder").join("relay.redb");
        let Err(error) = RedbStore::open(&missing) else { panic!("opened in a folder that does not exist") };
        let source = std::error::Error::source(&error).and_then(|source| source.downcast_ref::<std::io::Error>());
        assert_eq!(source.map(std::io::Error::kind), Some(std::io::ErrorKind::NotFound), "{error:?}");
        assert!(error.to_string().contains("no-such-folder"), "{error}");
    }
}
