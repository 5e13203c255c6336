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
//! 2. meanwhile, each shard the batch touches writes its rows and `PREPARE TRANSACTION`s them
//!    under the batch's id, all shards at once (a prepared transaction survives a crash of its
//!    server);
//! 3. if every shard prepared, the home commits, and the batch is decided; if one did not, the
//!    others' prepared transactions are rolled back (one that did not answer in time is left for
//!    the next open to roll back) and the home's transaction with them;
//! 4. each shard commits its prepared transaction (`COMMIT PREPARED`), and only then is the batch
//!    acknowledged, so that the reader, on connections of its own, sees every row of it.
//!
//! A node that dies between 2 and 4 leaves prepared transactions on the shards. The next node to
//! open the store (the same after a restart, or a standby taking over) resolves them before it
//! loads. It first takes the shard's writer lock (an advisory lock its writer connection holds
//! for as long as it lives, [`SHARD_WRITER_LOCK`](commit::SHARD_WRITER_LOCK)), so that a dead node's backend still running
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

mod commit;

use std::ops::RangeInclusive;

use sha2::{Digest, Sha256};

use super::PostgresRefusal;
use crate::state::Mutation;
use crate::storage::StoreError;

pub(super) use commit::{Shards, Spanning, check_recorded, connect, record, resolve_in_doubt};

/// How many buckets users are spread over: a shard takes a range of them.
pub const MAILBOX_BUCKETS: usize = 256;

/// Shards a relay's mailboxes may be spread over, beside its home database: each is two
/// connections (a writer and a reader) and a thread for each.
pub const MAX_MAILBOX_SHARDS: usize = 16;

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

/// Fails unless `shards` are at most [`MAX_MAILBOX_SHARDS`], each takes a bucket at least, and
/// none takes a bucket another does.
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
}
