//! A device on disk, in an embedded redb database (file mode 0600: it holds the device's keys):
//! the device's state as one [`DeviceSnapshot`], and beside it, entry by entry, the outbox and the
//! envelopes already processed — so that what the endpoint reports changed
//! ([`Persist`]) is written in one transaction, and neither list is rewritten whole.

use std::path::Path;

use rand::rngs::StdRng;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use switchboard_client_core::ClientError;
use switchboard_client_core::endpoint::{Endpoint, EndpointConfig, Persist, SeenKey};
use switchboard_wire::switchboard::DeviceSnapshot;
use switchboard_wire::{Message, decode};

const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("device");
const SEEN: TableDefinition<&[u8], u64> = TableDefinition::new("seen");
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
const SNAPSHOT: &str = "snapshot";
const SEEN_COUNTER: &str = "seen-counter";
/// Largest snapshot read back (a device with many sessions and groups fits well within).
pub const MAX_SNAPSHOT_LEN: usize = 512 * 1024 * 1024;

/// Why the device database could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    #[error("device database: {0}")]
    Database(#[from] redb::Error),
    #[error("device database file: {0}")]
    File(#[from] std::io::Error),
    #[error("device database holds no device")]
    Empty,
    #[error("device database holds a snapshot that does not decode: {0}")]
    Corrupt(#[from] switchboard_wire::DecodeError),
    #[error("device database holds a device that cannot be restored: {0}")]
    Restore(#[from] ClientError),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(impl From<$t> for PersistError {
        fn from(error: $t) -> Self {
            PersistError::Database(error.into())
        }
    })*};
}
from_redb!(redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// The device's database file.
pub struct DeviceDatabase {
    db: Database,
}

impl DeviceDatabase {
    /// Opens (or creates, readable by its owner only) the database at `path`.
    pub fn open(path: &Path) -> Result<DeviceDatabase, PersistError> {
        if !path.exists() {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options.open(path)?;
        }
        // Also a file made by an older version, or copied in: it holds the device's keys.
        #[cfg(unix)]
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        Ok(DeviceDatabase { db: Database::create(path)? })
    }

    /// Writes what `persist` says changed, in one durable transaction.
    pub fn write(&self, endpoint: &Endpoint, persist: &Persist) -> Result<(), PersistError> {
        let txn = self.db.begin_write()?;
        {
            if persist.device {
                let mut state = txn.open_table(STATE)?;
                state.insert(SNAPSHOT, endpoint.snapshot().encode_to_vec().as_slice())?;
            }
            let mut seen = txn.open_table(SEEN)?;
            let mut counter = {
                let state = txn.open_table(STATE)?;
                let value = state.get(SEEN_COUNTER)?.map(|v| v.value().try_into().map(u64::from_be_bytes).unwrap_or(0));
                value.unwrap_or(0)
            };
            for key in &persist.seen_forgotten {
                seen.remove(key.to_bytes().as_slice())?;
            }
            for key in &persist.seen_added {
                counter = counter.saturating_add(1);
                seen.insert(key.to_bytes().as_slice(), counter)?;
            }
            txn.open_table(STATE)?.insert(SEEN_COUNTER, counter.to_be_bytes().as_slice())?;
            let mut outbox = txn.open_table(OUTBOX)?;
            for seq in &persist.outbox_removed {
                outbox.remove(*seq)?;
            }
            for seq in &persist.outbox_added {
                if let Some(frame) = endpoint.outbox_frame(*seq) {
                    outbox.insert(*seq, frame.as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Writes the whole endpoint (a new database).
    pub fn write_all(&self, endpoint: &Endpoint) -> Result<(), PersistError> {
        let persist = Persist {
            generation: 0,
            device: true,
            outbox_added: endpoint.outbox_frames().into_iter().map(|(seq, _)| seq).collect(),
            ..Persist::default()
        };
        self.write(endpoint, &persist)
    }

    /// The endpoint as it was last written.
    pub fn load(&self, config: EndpointConfig, rng: &mut StdRng) -> Result<Endpoint, PersistError> {
        let txn = self.db.begin_read()?;
        let state = match txn.open_table(STATE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Err(PersistError::Empty),
            Err(error) => return Err(error.into()),
        };
        let snapshot: DeviceSnapshot = match state.get(SNAPSHOT)? {
            Some(bytes) => decode(bytes.value(), MAX_SNAPSHOT_LEN)?,
            None => return Err(PersistError::Empty),
        };
        let mut seen: Vec<(u64, SeenKey)> = Vec::new();
        if let Ok(table) = txn.open_table(SEEN) {
            for entry in table.iter()? {
                let (key, order) = entry?;
                if let Some(key) = SeenKey::from_bytes(key.value()) {
                    seen.push((order.value(), key));
                }
            }
        }
        seen.sort_by_key(|(order, _)| *order);
        let mut outbox = Vec::new();
        if let Ok(table) = txn.open_table(OUTBOX) {
            for entry in table.iter()? {
                let (seq, frame) = entry?;
                outbox.push((seq.value(), frame.value().to_vec()));
            }
        }
        Ok(Endpoint::restore(&snapshot, seen.into_iter().map(|(_, key)| key), outbox, config, rng)?)
    }
}
