//! A device on disk, in an embedded redb database (file mode 0600: it holds the device's keys):
//! the device's state as one [`DeviceSnapshot`], and beside it, entry by entry, the outbox and the
//! envelopes already processed — so that what the endpoint reports changed
//! ([`Persist`]) is written in one transaction, and neither list is rewritten whole.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use switchboard_client_core::ClientError;
use switchboard_session::ProtocolAddress;
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

/// Why the device database could not be used. Each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// Another process holds the database: another chat (or app) runs this device.
    #[error("{} is in use by another process (is another chat running with this database?)", path.display())]
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
    #[error("{}: not a device database, or one that cannot be opened", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        #[source]
        source: redb::DatabaseError,
    },
    /// Reading or writing the database failed.
    #[error("the device database {}", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        #[source]
        source: redb::Error,
    },
    /// The database holds no device (a new one that was never written).
    #[error("{} holds no device", path.display())]
    Empty {
        /// The database file.
        path: PathBuf,
    },
    /// The device's snapshot does not decode.
    #[error("{} holds a device snapshot that does not decode", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: switchboard_wire::DecodeError,
    },
    /// The device's snapshot decodes but cannot be restored.
    #[error("{} holds a device that cannot be restored", path.display())]
    Restore {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ClientError,
    },
}

/// The device's database file.
pub struct DeviceDatabase {
    db: Database,
    path: PathBuf,
}

impl DeviceDatabase {
    /// Opens (or creates, readable by its owner only) the database at `path`.
    pub fn open(path: &Path) -> Result<DeviceDatabase, PersistError> {
        let file = |source| PersistError::File { path: path.to_owned(), source };
        if !path.exists() {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options.open(path).map_err(file)?;
        }
        // Also a file made by an older version, or copied in: it holds the device's keys.
        #[cfg(unix)]
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(file)?;
        let db = Database::create(path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => PersistError::InUse { path: path.to_owned() },
            source => PersistError::Open { path: path.to_owned(), source },
        })?;
        Ok(DeviceDatabase { db, path: path.to_owned() })
    }

    /// The database's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn failed(&self, source: impl Into<redb::Error>) -> PersistError {
        PersistError::Database { path: self.path.clone(), source: source.into() }
    }

    /// Writes what `persist` says changed, in one durable transaction.
    pub fn write(&self, endpoint: &Endpoint, persist: &Persist) -> Result<(), PersistError> {
        self.write_transaction(endpoint, persist).map_err(|source| self.failed(source))
    }

    fn write_transaction(&self, endpoint: &Endpoint, persist: &Persist) -> Result<(), redb::Error> {
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

    /// The address of the device kept here (its user and device id), without restoring it.
    pub fn address(&self) -> Result<ProtocolAddress, PersistError> {
        let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
        let address = self.snapshot(&txn)?.address.unwrap_or_default();
        Ok(ProtocolAddress::new(&address.name, address.device_id))
    }

    /// The endpoint as it was last written.
    pub fn load(&self, config: EndpointConfig, rng: &mut StdRng) -> Result<Endpoint, PersistError> {
        let path = || self.path.clone();
        let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
        let snapshot = self.snapshot(&txn)?;
        let mut seen: Vec<(u64, SeenKey)> = Vec::new();
        if let Ok(table) = txn.open_table(SEEN) {
            for entry in table.iter().map_err(|e| self.failed(e))? {
                let (key, order) = entry.map_err(|e| self.failed(e))?;
                if let Some(key) = SeenKey::from_bytes(key.value()) {
                    seen.push((order.value(), key));
                }
            }
        }
        seen.sort_by_key(|(order, _)| *order);
        let mut outbox = Vec::new();
        if let Ok(table) = txn.open_table(OUTBOX) {
            for entry in table.iter().map_err(|e| self.failed(e))? {
                let (seq, frame) = entry.map_err(|e| self.failed(e))?;
                outbox.push((seq.value(), frame.value().to_vec()));
            }
        }
        Endpoint::restore(&snapshot, seen.into_iter().map(|(_, key)| key), outbox, config, rng)
            .map_err(|source| PersistError::Restore { path: path(), source })
    }

    /// The device's snapshot as `txn` reads it.
    fn snapshot(&self, txn: &redb::ReadTransaction) -> Result<DeviceSnapshot, PersistError> {
        let path = || self.path.clone();
        let state = match txn.open_table(STATE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Err(PersistError::Empty { path: path() }),
            Err(error) => return Err(self.failed(error)),
        };
        match state.get(SNAPSHOT).map_err(|e| self.failed(e))? {
            Some(bytes) => decode(bytes.value(), MAX_SNAPSHOT_LEN).map_err(|source| PersistError::Corrupt { path: path(), source }),
            None => Err(PersistError::Empty { path: path() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_database_and_keep_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.redb");
        let _open = DeviceDatabase::open(&path).unwrap();
        let Err(error) = DeviceDatabase::open(&path) else { panic!("opened twice") };
        assert!(matches!(error, PersistError::InUse { .. }), "{error:?}");
        assert!(error.to_string().contains(&path.display().to_string()) && error.to_string().contains("another chat"), "{error}");

        let junk = dir.path().join("junk.redb");
        std::fs::write(&junk, "not a database").unwrap();
        let Err(error) = DeviceDatabase::open(&junk) else { panic!("opened a file that is no database") };
        assert!(matches!(error, PersistError::Open { .. }) && error.to_string().contains("junk.redb"), "{error:?}");
        assert!(std::error::Error::source(&error).is_some());

        let missing = dir.path().join("no-such-folder").join("device.redb");
        let Err(error) = DeviceDatabase::open(&missing) else { panic!("opened in a folder that does not exist") };
        let source = std::error::Error::source(&error).and_then(|source| source.downcast_ref::<std::io::Error>());
        assert_eq!(source.map(std::io::Error::kind), Some(std::io::ErrorKind::NotFound), "{error:?}");
        assert!(error.to_string().contains("no-such-folder"), "{error}");

        let empty = DeviceDatabase::open(&dir.path().join("empty.redb")).unwrap();
        let error = empty.address().unwrap_err();
        assert!(matches!(error, PersistError::Empty { .. }) && error.to_string().ends_with("empty.redb holds no device"), "{error}");
    }
}
