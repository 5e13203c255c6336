//! Durable storage for the relay: the [`Store`] and [`Contents`] traits and the in-memory store come
//! from the core; the stores a relay process runs on are here: redb (embedded, the default) and
//! PostgreSQL.

mod postgres;
mod redb_store;

pub use postgres::{
    Leadership, MAILBOX_BUCKETS, MAX_MAILBOX_SHARDS, MailboxShard, PostgresContents, PostgresRefusal, PostgresStore, check_shards, mailbox_bucket,
};
pub use redb_store::{CACHE_BYTES, OpenError, RedbContents, RedbStore};
pub use switchboard_relay_core::storage::{Contents, MemoryStore, Store, StoreError};

use switchboard_wire::switchboard::StoredGroupHead;

use crate::state::{Head, StoredState};

/// What a relay starts on: its store, a reader of what the store commits, and the state it holds.
pub type Opened = (Box<dyn Store>, Box<dyn Contents>, StoredState);

/// Opens the redb database at `path` for a relay (see [`RedbStore::open`]).
pub fn open_redb(path: &std::path::Path) -> Result<Opened, OpenError> {
    let (store, state) = RedbStore::open(path)?;
    let contents = Box::new(store.contents());
    Ok((Box::new(store), contents, state))
}

/// Opens the PostgreSQL database `url` names for a relay, with its mailboxes sharded over
/// `shards` (none: all in that database), and a reader on connections of its own: for the active
/// node of several when `leadership` is given, for the only one otherwise (see
/// [`PostgresStore::open_sharded`]).
pub fn open_postgres(url: &str, shards: &[MailboxShard], leadership: Option<&Leadership>) -> Result<Opened, StoreError> {
    let (store, state) = PostgresStore::open_sharded(url, shards, leadership)?;
    let contents = Box::new(store.contents()?);
    Ok((Box::new(store), contents, state))
}

/// A group's head as both stores keep it.
fn stored_head(head: &Head) -> StoredGroupHead {
    StoredGroupHead {
        epoch: head.epoch,
        state_hash: head.state_hash.to_vec(),
        order_key: head.order_key.to_vec(),
        recent_hashes: head.recent_hashes.iter().map(|hash| hash.to_vec()).collect(),
    }
}

/// A group's head as [`stored_head`] kept it; an error if a hash has the wrong length.
fn head_from_stored(stored: &StoredGroupHead) -> Result<Head, StoreError> {
    let corrupt = || StoreError::new("corrupt group head");
    Ok(Head {
        epoch: stored.epoch,
        state_hash: stored.state_hash.as_slice().try_into().map_err(|_| corrupt())?,
        order_key: stored.order_key.as_slice().try_into().map_err(|_| corrupt())?,
        recent_hashes: stored.recent_hashes.iter().map(|hash| hash.as_slice().try_into().map_err(|_| corrupt())).collect::<Result<_, _>>()?,
    })
}
