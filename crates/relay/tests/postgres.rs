//! The PostgreSQL store against real PostgreSQL servers (Debian's, started by the tests
//! themselves; see `support/postgres.rs`): it keeps what the redb store keeps, and what a relay
//! on it acknowledged survives the loss of the primary server.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use switchboard_client::{ChatClient, Event, RelayAddress};
use switchboard_relay::server::tls::{Pki, TlsIdentity};
use switchboard_relay::server::{RelayHandle, RelaySettings, start};
use switchboard_relay::state::{DeviceKey, Head, Mutation, StampKey, StoredState};
use switchboard_relay::storage::{
    Contents, Leadership, MailboxShard, PostgresRefusal, PostgresStore, RedbStore, Store, mailbox_bucket, open_postgres,
};
use switchboard_wire::switchboard::{DeviceAddress, Envelope, FederationFrame, KeptReport, PreKeyBundle, Text, content, federation_frame};
use support::postgres::Server;
use tokio::net::TcpListener;

fn envelope(id: u8) -> Envelope {
    Envelope {
        id: vec![id; 16].into(),
        sender: Some(DeviceAddress { name: "alice@green".into(), device_id: 1 }),
        recipient: Some(DeviceAddress { name: "bob@blue".into(), device_id: 2 }),
        kind: 2,
        content: vec![id; 40].into(),
        group_id: if id.is_multiple_of(2) { String::new() } else { "g@blue".into() },
        franking: None,
        channel: false,
    }
}

/// The batch the lock tests commit: Bob's first envelope.
fn bob_first() -> [Mutation; 1] {
    [Mutation::PutEnvelope { device: ("bob@green".into(), 1), seq: 1, envelope: envelope(1) }]
}

fn frame(id: u8) -> FederationFrame {
    FederationFrame { request_id: u64::from(id), body: Some(federation_frame::Body::Forward(envelope(id))) }
}

/// Which variant `mutation` is: a new variant fails to compile here until the batches below
/// cover it.
fn variant(mutation: &Mutation) -> usize {
    match mutation {
        Mutation::PutAccount { .. } => 0,
        Mutation::PutBundles { .. } => 1,
        Mutation::PutEnvelope { .. } => 2,
        Mutation::DeleteEnvelope { .. } => 3,
        Mutation::PutOutbound { .. } => 4,
        Mutation::DeleteOutbound { .. } => 5,
        Mutation::PutBlob { .. } => 6,
        Mutation::DeleteBlob { .. } => 7,
        Mutation::PutGroupHead { .. } => 8,
        Mutation::AddContact { .. } => 9,
        Mutation::PutPerson { .. } => 10,
        Mutation::PutStampKey { .. } => 11,
        Mutation::SetBlocked { .. } => 12,
        Mutation::PutReport { .. } => 13,
        Mutation::PutChannel { .. } => 14,
        Mutation::SetFollowing { .. } => 15,
        Mutation::SetChannelApp { .. } => 16,
        Mutation::DeleteAccount { .. } => 17,
    }
}
const VARIANTS: usize = 18;

/// Batches of every kind of mutation, overwriting, deleting and re-adding, with numbers past
/// `i64::MAX` and a name holding the byte 0.
fn batches() -> Vec<Vec<Mutation>> {
    let bob: DeviceKey = ("bob@blue".into(), 2);
    let carol: DeviceKey = ("carol@blue".into(), u32::MAX);
    let gone: DeviceKey = ("bob@blue".into(), 3);
    let head = |n: u8| Head { epoch: u64::from(n), state_hash: [n; 32], order_key: [n + 1; 32], recent_hashes: vec![[n + 2; 32]; usize::from(n)] };
    let bundles = |device_id| vec![PreKeyBundle { device_id, ..Default::default() }];
    let kept = |reporter: &str| KeptReport { reporter: reporter.into(), report: Some(Default::default()) };
    vec![
        vec![
            Mutation::PutStampKey { key: StampKey([8; 32]) },
            Mutation::PutAccount { device: bob.clone(), credential_hash: [7; 32] },
            Mutation::PutAccount { device: carol.clone(), credential_hash: [1; 32] },
            Mutation::PutBundles { device: bob.clone(), bundles: bundles(2), low_mark: 7 },
            Mutation::PutBundles { device: carol.clone(), bundles: vec![], low_mark: 0 },
        ],
        vec![
            Mutation::PutAccount { device: bob.clone(), credential_hash: [9; 32] },
            Mutation::PutEnvelope { device: bob.clone(), seq: 3, envelope: envelope(3) },
            Mutation::PutEnvelope { device: bob.clone(), seq: 4, envelope: envelope(4) },
            Mutation::PutEnvelope { device: carol.clone(), seq: u64::MAX - 1, envelope: envelope(5) },
            Mutation::DeleteEnvelope { device: bob.clone(), seq: 3 },
            Mutation::PutEnvelope { device: bob.clone(), seq: 6, envelope: envelope(6) },
            Mutation::PutEnvelope { device: bob.clone(), seq: 6, envelope: envelope(7) },
            Mutation::PutOutbound { app: "red".into(), seq: 9, frame: frame(9) },
            Mutation::PutOutbound { app: "red".into(), seq: 10, frame: frame(10) },
            Mutation::PutOutbound { app: "green".into(), seq: 1 << 63, frame: frame(11) },
            Mutation::DeleteOutbound { app: "red".into(), seq: 10 },
            Mutation::PutBlob { id: "00ff@blue".into(), blob: vec![1, 2, 3], stored_at: 1_800_000_000 },
            Mutation::PutBlob { id: "00fe@blue".into(), blob: vec![4], stored_at: 1_700_000_000 },
            Mutation::PutBlob { id: "00fd@blue".into(), blob: vec![], stored_at: u64::MAX },
            Mutation::DeleteBlob { id: "00fe@blue".into() },
            Mutation::PutGroupHead { group: "g@blue".into(), head: head(3) },
            Mutation::PutGroupHead { group: "h@blue".into(), head: head(0) },
            Mutation::PutGroupHead { group: "g@blue".into(), head: head(4) },
        ],
        vec![
            Mutation::AddContact { user: "bob@blue".into(), contact: "alice@green".into() },
            Mutation::AddContact { user: "bob@blue".into(), contact: "alice@green".into() },
            Mutation::AddContact { user: "bob@blue".into(), contact: "nul\0byte@red".into() },
            Mutation::PutPerson { user: "bob@blue".into(), record: Some(vec![1, 2, 3]) },
            Mutation::PutPerson { user: "carol@blue".into(), record: Some(vec![4]) },
            Mutation::PutPerson { user: "carol@blue".into(), record: None },
            Mutation::PutPerson { user: "dave@blue".into(), record: Some(vec![5; 300]) },
            Mutation::SetBlocked { user: "bob@blue".into(), blocked: "mallory@red".into(), on: true },
            Mutation::SetBlocked { user: "bob@blue".into(), blocked: "eve@red".into(), on: true },
            Mutation::SetBlocked { user: "bob@blue".into(), blocked: "eve@red".into(), on: false },
            Mutation::SetBlocked { user: "carol@blue".into(), blocked: "eve@red".into(), on: false },
            Mutation::PutReport { id: 1, kept: kept("bob@blue") },
            Mutation::PutReport { id: u64::MAX, kept: kept("carol@blue") },
            Mutation::PutChannel { channel: "news@blue".into(), owner: "bob@blue".into(), admins: vec!["alice@green".into(), "bob@blue".into()] },
            Mutation::PutChannel { channel: "old@blue".into(), owner: "carol@blue".into(), admins: vec![] },
            Mutation::PutChannel { channel: "news@blue".into(), owner: "bob@blue".into(), admins: vec!["bob@blue".into(), "dave@red".into()] },
            Mutation::SetFollowing { channel: "news@blue".into(), device: bob.clone(), on: true },
            Mutation::SetFollowing { channel: "tv@red".into(), device: bob.clone(), on: true },
            Mutation::SetFollowing { channel: "tv@red".into(), device: carol.clone(), on: true },
            Mutation::SetFollowing { channel: "old@blue".into(), device: carol.clone(), on: true },
            Mutation::SetFollowing { channel: "old@blue".into(), device: carol.clone(), on: false },
            Mutation::SetChannelApp { channel: "news@blue".into(), app: "red".into(), on: true },
            Mutation::SetChannelApp { channel: "news@blue".into(), app: "green".into(), on: true },
            Mutation::SetChannelApp { channel: "news@blue".into(), app: "green".into(), on: false },
        ],
        vec![],
        // A removed device: its account, bundles, mail and follows go; another's stay. Then it
        // comes back with nothing.
        vec![
            Mutation::PutAccount { device: gone.clone(), credential_hash: [9; 32] },
            Mutation::PutBundles { device: gone.clone(), bundles: bundles(3), low_mark: 2 },
            Mutation::PutEnvelope { device: gone.clone(), seq: 5, envelope: envelope(5) },
            Mutation::SetFollowing { channel: "tv@red".into(), device: gone.clone(), on: true },
        ],
        vec![Mutation::DeleteAccount { device: gone.clone() }, Mutation::PutStampKey { key: StampKey([2; 32]) }],
        vec![
            Mutation::PutAccount { device: gone.clone(), credential_hash: [4; 32] },
            Mutation::DeleteAccount { device: ("nobody@blue".into(), 1) },
        ],
    ]
}

/// Everything `contents` answers for the devices, apps and blobs of [`batches`].
fn answers(contents: &dyn Contents) -> Vec<String> {
    let seqs = [0, 3, 4, 5, 6, 9, 10, u64::MAX - 1, 1 << 63, 6];
    let mut answers = Vec::new();
    for device in [("bob@blue", 2), ("bob@blue", 3), ("carol@blue", u32::MAX), ("nobody@blue", 1)] {
        let device = (device.0.to_owned(), device.1);
        answers.push(format!("{device:?}: {:?}", contents.mail(&device, &seqs).expect("mail")));
        answers.push(format!("{device:?} none: {:?}", contents.mail(&device, &[]).expect("mail")));
    }
    for app in ["red", "green", "blue"] {
        answers.push(format!("{app}: {:?}", contents.outbound(app, &seqs).expect("outbound")));
    }
    for blob in ["00ff@blue", "00fe@blue", "00fd@blue", "nothing@blue"] {
        answers.push(format!("{blob}: {:?}", contents.blob(blob).expect("blob")));
    }
    answers
}

#[test]
fn the_postgres_store_keeps_what_the_redb_store_keeps() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.redb");
    let batches = batches();
    let covered: BTreeSet<usize> = batches.iter().flatten().map(variant).collect();
    assert_eq!(covered.len(), VARIANTS, "every kind of mutation is committed");
    {
        let (mut redb, redb_state) = RedbStore::open(&path).unwrap();
        let (mut postgres, postgres_state) = PostgresStore::open(&server.url()).unwrap();
        assert_eq!((&redb_state, &postgres_state), (&StoredState::default(), &StoredState::default()));
        // Read back between commits too, by the reader each store hands the core.
        let postgres_contents = postgres.contents().unwrap();
        let redb_contents = redb.contents();
        for batch in &batches {
            redb.commit(batch).unwrap();
            postgres.commit(batch).unwrap();
            assert_eq!(answers(&postgres_contents), answers(&redb_contents));
        }
    }
    let mut expected = StoredState::default();
    batches.iter().flatten().for_each(|mutation| expected.apply(mutation));
    let (redb, redb_state) = RedbStore::open(&path).unwrap();
    let (postgres, postgres_state) = PostgresStore::open(&server.url()).unwrap();
    assert_eq!(postgres_state, redb_state);
    assert_eq!(postgres_state, expected);
    assert!(!postgres_state.mailboxes.is_empty() && !postgres_state.follows.is_empty() && postgres_state.stamp_key.is_some());
    let contents = postgres.contents().unwrap();
    assert_eq!(answers(&contents), answers(&redb.contents()));
    // Not equal by being empty alike: the contents are there, the last write of a key winning.
    assert_eq!(contents.mail(&("bob@blue".into(), 2), &[6, 3, 4]).unwrap(), [(6, envelope(7)), (4, envelope(4))]);
    assert_eq!(contents.blob("00fd@blue").unwrap(), Some(vec![]));
}

#[test]
fn what_a_store_committed_is_read_back_once_from_memory_and_otherwise_from_the_database() {
    let server = Server::start();
    let device: DeviceKey = ("bob@blue".into(), 2);
    let put = |seq: u64| Mutation::PutEnvelope { device: device.clone(), seq, envelope: envelope(seq as u8) };
    let (mut store, _) = PostgresStore::open(&server.url()).unwrap();
    let contents = store.contents().unwrap();
    store.commit(&[put(1), put(2)]).unwrap();
    // Another writer (only a test has one) adds seq 3, which this store never saw.
    let (mut other, _) = PostgresStore::open(&server.url()).unwrap();
    other.commit(&[put(3), Mutation::PutOutbound { app: "red".into(), seq: 1, frame: frame(1) }]).unwrap();
    server.sql("UPDATE mailboxes SET envelope = '\\xffffffff' WHERE seq = 1");
    // Seq 1 from memory (the row behind it now corrupt), 2 from memory too, 3 from the database.
    let all = [(1, envelope(1)), (2, envelope(2)), (3, envelope(3))];
    assert_eq!(contents.mail(&device, &[1, 2, 3]).unwrap(), all);
    // Read once: asked again, the database answers, and its corrupt row is an error.
    assert_eq!(contents.mail(&device, &[2, 3]).unwrap(), all[1..]);
    let error = contents.mail(&device, &[1]).expect_err("a corrupt row");
    assert!(error.chain().contains("corrupt row in mailboxes"), "{}", error.chain());
    assert_eq!(contents.outbound("red", &[1]).unwrap(), [(1, frame(1))]);
    // A commit's deletes reach what is kept as well as the rows.
    store.commit(&[put(4), Mutation::DeleteEnvelope { device: device.clone(), seq: 4 }]).unwrap();
    store.commit(&[put(5)]).unwrap();
    store.commit(&[Mutation::DeleteEnvelope { device: device.clone(), seq: 5 }]).unwrap();
    assert!(contents.mail(&device, &[4, 5]).unwrap().is_empty());
}

/// A shard taking exactly the bucket of `user`'s mailboxes, the database `url`.
fn shard_at(url: String, user: &str) -> MailboxShard {
    let bucket = mailbox_bucket(user);
    MailboxShard { url, buckets: bucket..=bucket }
}

/// [`shard_at`] on `server`'s own database.
fn shard_of(server: &Server, user: &str) -> MailboxShard {
    shard_at(server.url(), user)
}

/// How many rows of `table` `server` holds.
fn rows(server: &Server, table: &str) -> usize {
    server.sql(&format!("SELECT count(*) FROM {table}")).trim().parse().expect("a count")
}

#[test]
fn a_store_with_its_mailboxes_sharded_keeps_what_the_redb_store_keeps() {
    let (home, shards_server) = (Server::start(), Server::start());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.redb");
    // Bob's mailboxes and Carol's on two shards, two databases of one server (the names of
    // their prepared transactions must differ); batches span the home and both.
    shards_server.sql("CREATE DATABASE bob_mail");
    shards_server.sql("CREATE DATABASE carol_mail");
    let database = |name: &str| shards_server.url().replace("dbname=postgres", &format!("dbname={name}"));
    let shards = [shard_at(database("bob_mail"), "bob@blue"), shard_at(database("carol_mail"), "carol@blue")];
    assert_ne!(mailbox_bucket("carol@blue"), mailbox_bucket("bob@blue"));
    let batches = batches();
    {
        let (mut redb, _) = RedbStore::open(&path).unwrap();
        let (mut postgres, postgres_state) = PostgresStore::open_sharded(&home.url(), &shards, None).unwrap();
        assert_eq!(postgres_state, StoredState::default());
        let postgres_contents = postgres.contents().unwrap();
        let redb_contents = redb.contents();
        for batch in &batches {
            redb.commit(batch).unwrap();
            postgres.commit(batch).unwrap();
            assert_eq!(answers(&postgres_contents), answers(&redb_contents));
        }
    }
    let count = |name: &str, table: &str| -> usize {
        shards_server.sql_in(name, &format!("SELECT count(*) FROM {table}")).trim().parse().expect("a count")
    };
    assert_eq!((count("bob_mail", "mailboxes"), count("carol_mail", "mailboxes")), (2, 1), "Bob's two envelopes left, and Carol's one");
    assert_eq!(rows(&home, "mailboxes"), 0);
    assert_eq!(count("bob_mail", "accounts") + count("bob_mail", "outboxes") + count("bob_mail", "blobs"), 0, "only mailboxes on a shard");
    assert_eq!(rows(&shards_server, "pg_prepared_xacts"), 0, "every batch committed on both shards");
    assert!(rows(&home, "relay_decisions") <= 1, "decisions are forgotten with the next batch");
    let mut expected = StoredState::default();
    batches.iter().flatten().for_each(|mutation| expected.apply(mutation));
    let (redb, redb_state) = RedbStore::open(&path).unwrap();
    let (postgres, postgres_state) = PostgresStore::open_sharded(&home.url(), &shards, None).unwrap();
    assert_eq!(postgres_state, redb_state);
    assert_eq!(postgres_state, expected);
    assert_eq!(answers(&postgres.contents().unwrap()), answers(&redb.contents()));
}

#[test]
fn a_batch_a_shard_cannot_prepare_commits_nowhere_and_one_left_prepared_is_resolved_by_its_decision() {
    // Bob's mailboxes on shard A, Carol's on shard B, whose server has room for one prepared
    // transaction; Dave's at home.
    let (home, shard_a, shard_b) = (Server::start(), Server::start(), Server::start_with_prepared_transactions(1));
    let shards = [shard_of(&shard_a, "bob@blue"), shard_of(&shard_b, "carol@blue")];
    let (bob, carol, dave): (DeviceKey, DeviceKey, DeviceKey) = (("bob@blue".into(), 2), ("carol@blue".into(), 1), ("dave@blue".into(), 1));
    assert!(![mailbox_bucket("bob@blue"), mailbox_bucket("carol@blue")].contains(&mailbox_bucket("dave@blue")));
    let put = |device: &DeviceKey, seq: u64| Mutation::PutEnvelope { device: device.clone(), seq, envelope: envelope(seq as u8) };
    let (mut store, _) = PostgresStore::open_sharded(&home.url(), &shards, None).unwrap();
    store.commit(&[put(&bob, 1), put(&carol, 1), put(&dave, 1)]).unwrap();
    // Another's prepared transaction takes B's one slot: B's PREPARE fails, after A's succeeded
    // (or not: they run at once), and nothing of the batch is kept anywhere.
    shard_b.sql("BEGIN; CREATE TABLE filler (x int); PREPARE TRANSACTION 'not-ours'");
    let error = store.commit(&[put(&dave, 2), put(&bob, 2), put(&carol, 2)]).expect_err("shard B cannot prepare");
    assert!(error.chain().contains("preparing a batch on a shard"), "{}", error.chain());
    assert_eq!((rows(&home, "mailboxes"), rows(&shard_a, "mailboxes"), rows(&shard_b, "mailboxes")), (1, 1, 1));
    assert_eq!((rows(&shard_a, "pg_prepared_xacts"), shard_b.sql("SELECT gid FROM pg_prepared_xacts").trim()), (0, "not-ours"));
    assert_eq!(rows(&home, "relay_decisions"), 1, "the first batch's, until the next batch commits");
    shard_b.sql("ROLLBACK PREPARED 'not-ours'");
    drop(store);

    // Two batches a node left prepared on shard A when it died: the home decided the first.
    let home_id = home.sql("SELECT encode(value, 'hex') FROM secrets WHERE name = 'home'").trim().to_owned();
    let shard_id = shard_a.sql("SELECT encode(id, 'hex') FROM relay_shard").trim().to_owned();
    let gid = |batch: u8| format!("switchboard-relay:{home_id}:{shard_id}:{batch:032x}");
    let hex = |envelope: Envelope| switchboard_wire::Message::encode_to_vec(&envelope).iter().map(|b| format!("{b:02x}")).collect::<String>();
    for seq in [3u8, 4] {
        shard_a.sql(&format!(
            "BEGIN; INSERT INTO mailboxes VALUES ('bob@blue', 2, {seq}, decode('{}', 'hex')); PREPARE TRANSACTION '{}'",
            hex(envelope(seq)),
            gid(seq)
        ));
    }
    home.sql(&format!("INSERT INTO relay_decisions VALUES ('{:032x}')", 3));
    // Another's prepared transaction on the same server is left alone.
    shard_a.sql("BEGIN; CREATE TABLE other_app (x int); PREPARE TRANSACTION 'not-ours'");
    let (store, state) = PostgresStore::open_sharded(&home.url(), &shards, None).unwrap();
    let seqs = |device: &DeviceKey| state.mailboxes.get(device).map(|mailbox| mailbox.keys().copied().collect::<Vec<_>>());
    assert_eq!((seqs(&bob), seqs(&carol), seqs(&dave)), (Some(vec![1, 3]), Some(vec![1]), Some(vec![1])), "the decided batch, not the other");
    assert_eq!(shard_a.sql("SELECT gid FROM pg_prepared_xacts").trim(), "not-ours");
    assert_eq!(rows(&home, "relay_decisions"), 0);
    assert_eq!(store.contents().unwrap().mail(&bob, &[3, 4]).unwrap(), [(3, envelope(3))]);
    shard_a.sql("ROLLBACK PREPARED 'not-ours'");
}

#[test]
fn a_shard_map_that_moved_a_mailbox_lost_a_shard_or_names_a_home_or_one_database_twice_is_refused() {
    let (home, shard) = (Server::start(), Server::start());
    let refusal = |error: &switchboard_relay::storage::StoreError| PostgresRefusal::of(error).cloned();
    let (mut store, _) = PostgresStore::open_sharded(&home.url(), &[shard_of(&shard, "bob@blue")], None).unwrap();
    store.commit(&[Mutation::PutEnvelope { device: ("bob@blue".into(), 1), seq: 1, envelope: envelope(1) }]).unwrap();
    drop(store);
    // The map changed: Bob's mailbox would now be home's.
    let error = PostgresStore::open_sharded(&home.url(), &[shard_of(&shard, "carol@blue")], None).expect_err("moved");
    assert_eq!(refusal(&error), Some(PostgresRefusal::MailboxOnAnotherShard { bucket: mailbox_bucket("bob@blue") }), "{}", error.chain());
    // The shard left out of the map: its mailboxes would be lost.
    let error = PostgresStore::open_sharded(&home.url(), &[], None).expect_err("a shard left out");
    assert_eq!(refusal(&error), Some(PostgresRefusal::ShardMissing { shards: 1 }), "{}", error.chain());
    // The home named as a shard of itself.
    let error = PostgresStore::open_sharded(&home.url(), &[shard_of(&home, "carol@blue")], None).expect_err("the home as a shard");
    assert_eq!(refusal(&error), Some(PostgresRefusal::ShardIsAHome), "{}", error.chain());
    // One database twice, for two ranges.
    let twice = [shard_of(&shard, "bob@blue"), shard_of(&shard, "carol@blue")];
    let error = PostgresStore::open_sharded(&home.url(), &twice, None).expect_err("one database twice");
    assert_eq!(refusal(&error), Some(PostgresRefusal::ShardTwice), "{}", error.chain());
    // The shard is this home's: another home (a database of its own) is refused it.
    home.sql("CREATE DATABASE other");
    let other = home.url().replace("dbname=postgres", "dbname=other");
    let error = PostgresStore::open_sharded(&other, &[shard_of(&shard, "bob@blue")], None).expect_err("another home's shard");
    assert_eq!(refusal(&error), Some(PostgresRefusal::ShardOfAnotherHome), "{}", error.chain());
    // Prepared transactions disabled on the shard's server.
    let disabled = Server::start_with_prepared_transactions(0);
    let error = PostgresStore::open_sharded(&other, &[shard_of(&disabled, "bob@blue")], None).expect_err("disabled");
    assert_eq!(refusal(&error), Some(PostgresRefusal::PreparedTransactionsDisabled), "{}", error.chain());
    // A map taking a bucket twice.
    let overlapping = [shard_of(&shard, "bob@blue"), shard_of(&disabled, "bob@blue")];
    let error = PostgresStore::open_sharded(&other, &overlapping, None).expect_err("a bucket twice");
    assert_eq!(refusal(&error), Some(PostgresRefusal::BucketTakenTwice { bucket: mailbox_bucket("bob@blue") }), "{}", error.chain());
    // The original map still opens, with Bob's mail.
    let (_, state) = PostgresStore::open_sharded(&home.url(), &[shard_of(&shard, "bob@blue")], None).unwrap();
    assert_eq!(state.mailboxes.len(), 1);
}

#[test]
fn a_row_that_does_not_decode_is_an_error_not_a_panic() {
    let server = Server::start();
    let device: DeviceKey = ("bob@blue".into(), 2);
    let (mut store, _) = PostgresStore::open(&server.url()).unwrap();
    store.commit(&[Mutation::PutEnvelope { device: device.clone(), seq: 1, envelope: envelope(1) }]).unwrap();
    // Read through a store opened since: the one that committed keeps the envelope it wrote until
    // it is read, and would answer without the database.
    let (reopened, _) = PostgresStore::open(&server.url()).unwrap();
    server.sql("UPDATE mailboxes SET envelope = '\\xffffffff'");
    let error = reopened.contents().unwrap().mail(&device, &[1]).expect_err("a corrupt envelope");
    assert!(error.chain().contains("corrupt row in mailboxes"), "{}", error.chain());
    let error = PostgresStore::open(&server.url()).expect_err("a corrupt envelope");
    assert!(error.chain().contains("corrupt row in mailboxes"), "{}", error.chain());
    server.sql("DELETE FROM mailboxes");
    // One bad row at a time, each otherwise good (a hash of 32 bytes): each check is reached.
    let hash = format!("'\\x{}'", "ab".repeat(32));
    for (row, said) in [
        (format!("('\\xff', 1, {hash})"), "corrupt name in accounts"),
        (format!("('\\x41', -1, {hash})"), "corrupt device id in accounts"),
        (format!("('\\x41', 4294967296, {hash})"), "corrupt device id in accounts"),
        ("('\\x41', 1, '\\x00')".to_owned(), "corrupt account"),
    ] {
        server.sql(&format!("DELETE FROM accounts; INSERT INTO accounts VALUES {row}"));
        let error = PostgresStore::open(&server.url()).expect_err(said);
        assert!(error.chain().contains(said), "{row}: {}", error.chain());
    }
    server.sql(&format!("DELETE FROM accounts; INSERT INTO accounts VALUES ('\\x41', 1, {hash})"));
    let (_, state) = PostgresStore::open(&server.url()).expect("a good row");
    assert_eq!(state.accounts.get(&("A".to_owned(), 1)), Some(&[0xab; 32]));
    // A server that is gone: the store says so.
    drop(server);
    let error = store.commit(&[Mutation::DeleteEnvelope { device, seq: 1 }]).expect_err("no server");
    assert!(error.chain().contains("committing a batch"), "{}", error.chain());
}

/// A commit whose wait for the synchronous standby is cancelled is committed on the primary, and
/// PostgreSQL answers it with a warning, not an error: the store must not report it committed
/// (the relay would acknowledge what the standby may not have).
#[test]
fn a_commit_whose_wait_for_the_synchronous_standby_was_cancelled_is_an_error() {
    let server = Server::start();
    let device: DeviceKey = ("bob@blue".into(), 2);
    let put = |seq: u8| vec![Mutation::PutEnvelope { device: device.clone(), seq: u64::from(seq), envelope: envelope(seq) }];
    let (mut store, _) = PostgresStore::open(&server.url()).unwrap();
    store.commit(&put(1)).unwrap();
    // From now on every commit waits for a standby that never comes.
    server.sql("ALTER SYSTEM SET synchronous_standby_names = 'nowhere'");
    server.sql("SELECT pg_reload_conf()");
    let waiting = "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'";
    let mut seq = 2;
    let deadline = Instant::now() + Duration::from_secs(20);
    let result = loop {
        let batch = put(seq);
        let committing = std::thread::spawn(move || {
            let result = store.commit(&batch);
            (store, result)
        });
        // The writer's backend may read the new setting a moment after the reload: a commit
        // that did not wait is tried again.
        while server.sql(waiting).trim().is_empty() && !committing.is_finished() {
            assert!(Instant::now() < deadline, "no commit waits for the standby");
            std::thread::sleep(Duration::from_millis(20));
        }
        if committing.is_finished() {
            let (back, result) = committing.join().unwrap();
            result.expect("a commit that did not wait for the standby succeeds");
            store = back;
            seq += 1;
            continue;
        }
        let cancelled = server.sql(&format!("SELECT count(pg_cancel_backend(pid)) FROM ({waiting}) AS waiting"));
        assert_eq!(cancelled.trim(), "1");
        break committing.join().unwrap().1;
    };
    let error = result.expect_err("a commit the standby may not have is not reported committed");
    assert!(error.chain().contains("synchronous standby"), "{}", error.chain());
}

/// Two nodes of one app on one database: the second waits for the first's lock; once the first's
/// lock connection is gone it hears so, can commit nothing more, and the second takes over with
/// what the first committed. A node of another app pointed at the same database is never active
/// with them: it is refused at once (the database records whose state it holds), and the lock is
/// the database's, so even with that record gone it only waits, and is refused as soon as the
/// record is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_on_a_database_is_active_whatever_its_app_and_a_node_that_loses_its_lock_commits_nothing() {
    let server = Server::start();
    let url = server.url();
    let device: DeviceKey = ("bob@green".into(), 1);
    let (a, (mut store_a, _)) = tokio::task::block_in_place(|| {
        let a = Leadership::acquire(&url, "green", |_| panic!("the first node waits for no one")).unwrap();
        let opened = PostgresStore::open_active(&url, &a).unwrap();
        (a, opened)
    });
    tokio::task::block_in_place(|| store_a.commit(&[Mutation::PutEnvelope { device: device.clone(), seq: 1, envelope: envelope(1) }])).unwrap();
    // Another app's node on green's database is refused before it waits, naming green.
    let error = tokio::task::block_in_place(|| Leadership::acquire(&url, "blue", |_| panic!("refused, not waiting"))).expect_err("green's database");
    let refused = PostgresRefusal::AnotherApp { app: "blue".into(), holder: "green".into() };
    assert_eq!(PostgresRefusal::of(&error), Some(&refused), "{}", error.chain());
    assert!(error.chain().contains("each app's relay needs a database of its own"), "{}", error.chain());

    let (waiting, waited) = std::sync::mpsc::channel();
    let standby = {
        let url = url.clone();
        std::thread::spawn(move || {
            let b = Leadership::acquire(&url, "green", move |target| waiting.send(target.to_owned()).unwrap()).unwrap();
            let opened = PostgresStore::open_active(&url, &b).unwrap();
            (b, opened)
        })
    };
    let target = waited.recv_timeout(Duration::from_secs(10)).expect("the second node says it waits");
    assert!(target.contains("127.0.0.1") && target.contains("postgres"), "{target}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!standby.is_finished(), "the second node took the lock the first holds");

    // The first node's lock connection is ended by the server (as a crash or a network loss
    // would end it); its store's connection lives on. One connection holds locks on the
    // database (the database's, and green's of earlier versions).
    let ended = server.sql(
        "SELECT count(pg_terminate_backend(pid)) FROM (SELECT DISTINCT pid FROM pg_locks \
           WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock') AS holders",
    );
    assert_eq!(ended.trim(), "1", "green's lock connection");
    let why = tokio::time::timeout(Duration::from_secs(5), a.lost()).await.expect("the first node hears it lost its lock");
    assert!(why.contains("lock connection"), "{why}");
    let error = tokio::task::block_in_place(|| store_a.commit(&[Mutation::DeleteEnvelope { device: device.clone(), seq: 1 }]))
        .expect_err("a node without the lock commits nothing");
    assert!(error.chain().contains("no longer the app's active node"), "{}", error.chain());

    let (b, (mut store_b, state)) = tokio::task::spawn_blocking(move || standby.join().unwrap()).await.unwrap();
    assert_eq!(state.mailboxes.get(&device).map(|mailbox| mailbox.len()), Some(1), "the first node's mail, not its refused delete");
    tokio::task::block_in_place(|| store_b.commit(&[Mutation::DeleteEnvelope { device: device.clone(), seq: 1 }])).unwrap();

    // With the record of green gone (deleted; or a database a relay of an earlier version
    // filled), blue's node is not refused at once: it waits, for the database's lock.
    server.sql("DELETE FROM relay_app");
    let (waiting, waited) = std::sync::mpsc::channel();
    let other = {
        let url = url.clone();
        std::thread::spawn(move || Leadership::acquire(&url, "blue", move |_| waiting.send(()).unwrap()))
    };
    waited.recv_timeout(Duration::from_secs(10)).expect("blue's node waits for the lock green's holds");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!other.is_finished(), "blue's node took a lock while green's active node holds the database's");
    tokio::task::block_in_place(|| store_b.commit(&[Mutation::PutEnvelope { device: device.clone(), seq: 2, envelope: envelope(2) }])).unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(1200), b.lost()).await.is_err(), "the second node keeps its lock");
    // Green is recorded again (as its next start would): blue's node, which looks at the record
    // while it waits, is refused while green's node still holds the lock.
    server.sql("INSERT INTO relay_app (app) VALUES (convert_to('green', 'UTF8'))");
    let error = tokio::task::spawn_blocking(move || other.join().unwrap()).await.unwrap().expect_err("blue's node on green's database");
    assert_eq!(PostgresRefusal::of(&error), Some(&refused), "{}", error.chain());
    assert!(tokio::time::timeout(Duration::from_millis(100), b.lost()).await.is_err(), "the second node keeps its lock");
    // Once green's node is gone, no lock is left: blue's connection held none.
    drop((b, store_b));
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted").trim() != "0" {
        assert!(Instant::now() < deadline, "the refused node kept the database's lock");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A node of another app that finds no record of the app the database holds (here: none yet, as
/// on a new database whose first node is between its lock and its record) waits, but looks at
/// the record while it does: once the active node has recorded its app, it is refused within
/// seconds, not left waiting for that node to die.
#[test]
fn a_node_of_another_app_is_refused_once_the_active_node_records_its_app() {
    let server = Server::start();
    let url = server.url();
    let green = Leadership::acquire(&url, "green", |_| panic!("the first node waits for no one")).unwrap();
    // As if green's node had not recorded its app yet: not even the table is there.
    server.sql("DROP TABLE relay_app");
    let (waiting, waited) = std::sync::mpsc::channel();
    let (ended, end) = std::sync::mpsc::channel();
    let blue = {
        let url = url.clone();
        std::thread::spawn(move || {
            let _ = ended.send(Leadership::acquire(&url, "blue", move |_| waiting.send(()).unwrap()).map(|_| ()));
        })
    };
    waited.recv_timeout(Duration::from_secs(10)).expect("blue's node waits: no app is recorded yet");
    assert!(end.recv_timeout(Duration::from_millis(1500)).is_err(), "blue's node stopped waiting while green's holds the lock and no app is recorded");
    // Green's node records its app, as it does once it holds the lock.
    server.sql("CREATE TABLE relay_app (singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), app bytea NOT NULL)");
    server.sql("INSERT INTO relay_app (app) VALUES (convert_to('green', 'UTF8'))");
    let error = end
        .recv_timeout(Duration::from_secs(5))
        .expect("blue's node is refused within seconds of green's record, not once green's node dies")
        .expect_err("blue's node on green's database");
    let refused = PostgresRefusal::AnotherApp { app: "blue".into(), holder: "green".into() };
    assert_eq!(PostgresRefusal::of(&error), Some(&refused), "{}", error.chain());
    blue.join().unwrap();
    // Green's node holds on.
    let lost = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
        tokio::time::timeout(Duration::from_millis(600), green.lost()).await
    });
    assert!(lost.is_err(), "green's node lost its lock: {lost:?}");
}

/// The lock and fence keys nodes of earlier versions took for `app`: FNV-1a (64 bits) of
/// "switchboard-relay active node\0{app}" and "… commit fence\0{app}", as they computed them
/// (written out here again, apart from the relay's own copy).
fn earlier_keys(app: &str) -> (i64, i64) {
    let hash = |what: &str| {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in format!("switchboard-relay {what}\0{app}").bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        i64::from_ne_bytes(hash.to_ne_bytes())
    };
    (hash("active node"), hash("commit fence"))
}

/// A rolling upgrade: a node of an earlier version (its lock and fence keyed by the app, played
/// here by a plain connection) keeps a node of this version waiting, as a standby, while it holds
/// its lock; once it lets it go, the new node waits for the old one's last batch, then is active
/// and holds the old lock (a node of an earlier version now waits), and its batches take the
/// old fence too (an old node taking over waits for them).
#[test]
fn a_node_of_an_earlier_version_keeps_a_new_node_waiting_and_its_last_batch_ends_first() {
    let server = Server::start();
    let url = server.url();
    let (old_lock, old_fence) = earlier_keys("green");
    let mut old = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    old.execute("SELECT pg_advisory_lock($1)", &[&old_lock]).unwrap();
    let (waiting, waited) = std::sync::mpsc::channel();
    let (ended, end) = std::sync::mpsc::channel();
    let new = {
        let url = url.clone();
        std::thread::spawn(move || {
            let _ = ended.send(Leadership::acquire(&url, "green", move |_| waiting.send(()).unwrap()));
        })
    };
    waited.recv_timeout(Duration::from_secs(10)).expect("the new node says it waits for the old one");
    assert!(end.recv_timeout(Duration::from_millis(1500)).is_err(), "the new node became active while a node of an earlier version holds its lock");
    // The old node's last batch holds the old fence, shared, as it lets its lock go.
    let mut batch = old.transaction().unwrap();
    batch.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&old_fence]).unwrap();
    batch.execute("SELECT pg_advisory_unlock($1)", &[&old_lock]).unwrap();
    assert!(end.recv_timeout(Duration::from_millis(1000)).is_err(), "the new node loaded before the old node's last batch ended");
    batch.commit().unwrap();
    let leadership = end.recv_timeout(Duration::from_secs(5)).expect("the new node is active once the old one is gone").unwrap();
    new.join().unwrap();
    // A node of an earlier version started now waits for the new one.
    let free: bool = old.query_one("SELECT pg_try_advisory_lock($1)", &[&old_lock]).unwrap().get(0);
    assert!(!free, "the new node does not hold the lock of earlier versions");
    // The new node's batches take the old fence, shared: one waits while an old node (having
    // taken over) holds it exclusively, as it does before it loads.
    let (mut store, _) = PostgresStore::open_active(&url, &leadership).unwrap();
    old.execute("SELECT pg_advisory_lock($1)", &[&old_fence]).unwrap();
    let (committed, commit) = std::sync::mpsc::channel();
    let committing = std::thread::spawn(move || {
        let _ = committed.send(store.commit(&bob_first()));
        store
    });
    assert!(commit.recv_timeout(Duration::from_millis(1000)).is_err(), "a batch of the new node did not wait for the old fence");
    old.execute("SELECT pg_advisory_unlock($1)", &[&old_fence]).unwrap();
    commit.recv_timeout(Duration::from_secs(5)).expect("the batch goes on once the old fence is free").unwrap();
    drop(committing.join().unwrap());
    // Once the new node is gone, the old lock is free for a node of an earlier version.
    drop(leadership);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !old.query_one("SELECT pg_try_advisory_lock($1)", &[&old_lock]).unwrap().get::<_, bool>(0) {
        assert!(Instant::now() < deadline, "the new node kept the lock of earlier versions once gone");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The lock is the database's: the nodes of one app on two databases of one server (two
/// relays, each its own database) are both active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_two_databases_of_one_server_do_not_exclude_each_other() {
    let server = Server::start();
    server.sql("CREATE DATABASE second");
    let second = format!("host=127.0.0.1 port={} user=postgres dbname=second", server.port);
    let (first, other) = tokio::task::block_in_place(|| {
        let first = Leadership::acquire(&server.url(), "green", |_| panic!("the first database's lock is free")).unwrap();
        let other = Leadership::acquire(&second, "green", |_| panic!("the second database's lock is free")).unwrap();
        (first, other)
    });
    assert!(first.target().contains("database postgres") && other.target().contains("database second"), "{} / {}", first.target(), other.target());
    let (mut store, _) = tokio::task::block_in_place(|| PostgresStore::open_active(&second, &other)).unwrap();
    tokio::task::block_in_place(|| store.commit(&bob_first())).unwrap();
}

/// A `lock_timeout` or `statement_timeout` set for the database (or the role) does not end a
/// standby's wait for the lock: the lock connection sets both to 0 for itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_waits_for_the_lock_whatever_timeouts_the_database_sets() {
    let server = Server::start();
    let url = server.url();
    server.sql("ALTER DATABASE postgres SET lock_timeout = '200ms'");
    server.sql("ALTER DATABASE postgres SET statement_timeout = '200ms'");
    let a = tokio::task::block_in_place(|| Leadership::acquire(&url, "green", |_| panic!("the first node waits for no one"))).unwrap();
    let (waiting, waited) = std::sync::mpsc::channel();
    let standby = {
        let url = url.clone();
        std::thread::spawn(move || Leadership::acquire(&url, "green", move |_| waiting.send(()).unwrap()))
    };
    waited.recv_timeout(Duration::from_secs(10)).expect("the second node says it waits");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(!standby.is_finished(), "the second node's wait for the lock ended while the first holds it");
    drop(a);
    let b = tokio::task::spawn_blocking(move || standby.join().unwrap()).await.unwrap().expect("the second node takes the lock once it is free");
    let (mut store, _) = tokio::task::block_in_place(|| PostgresStore::open_active(&url, &b)).unwrap();
    tokio::task::block_in_place(|| store.commit(&bob_first())).unwrap();
}

/// One slow check of the lock connection (its backend stopped for longer than a check may take)
/// does not count as a lost lock: the node keeps it, and commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_check_of_the_lock_connection_does_not_lose_the_lock() {
    let server = Server::start();
    let url = server.url();
    let (a, (mut store, _)) = tokio::task::block_in_place(|| {
        let a = Leadership::acquire(&url, "green", |_| panic!("the first node waits for no one")).unwrap();
        let opened = PostgresStore::open_active(&url, &a).unwrap();
        (a, opened)
    });
    let pid = server.sql("SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock'");
    let pid = pid.trim().to_owned();
    assert!(pid.parse::<u32>().is_ok(), "one lock connection: {pid:?}");
    let signal = |what: &str| assert!(std::process::Command::new("kill").args([what, pid.as_str()]).status().unwrap().success());
    signal("-STOP");
    // Longer than one check may take (2 s), shorter than three missed in a row.
    let stalled = tokio::time::timeout(Duration::from_millis(3500), a.lost()).await;
    signal("-CONT");
    assert!(stalled.is_err(), "one slow check lost the lock: {stalled:?}");
    assert!(tokio::time::timeout(Duration::from_millis(1500), a.lost()).await.is_err(), "the node keeps its lock");
    tokio::task::block_in_place(|| store.commit(&bob_first())).unwrap();
}

/// Every relay needs its connections on one server: a connection string naming two hosts (here
/// both the same live server) is refused, with why, by the only node of an app as by nodes that
/// share a database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_relay_refuses_a_string_with_two_hosts() {
    let server = Server::start();
    let url = server.url();
    let two = format!("host=127.0.0.1,127.0.0.1 port={0},{0} user=postgres password=hunter2-secret dbname=postgres", server.port);
    let refused = |error: &switchboard_relay::storage::StoreError| {
        assert_eq!(PostgresRefusal::of(error), Some(&PostgresRefusal::MoreThanOneHost { hosts: 2 }), "{}", error.chain());
        let said = format!("{} / {error:?}", error.chain());
        assert!(said.contains("more than one host") && !said.contains("hunter2"), "{said}");
    };
    refused(&tokio::task::block_in_place(|| PostgresStore::open(&two)).expect_err("two hosts, one node"));
    let opened = tokio::task::block_in_place(|| open_postgres(&two, &[], None));
    refused(&opened.err().expect("two hosts, one node"));
    let a = tokio::task::block_in_place(|| Leadership::acquire(&url, "green", |_| panic!("the first node waits for no one"))).unwrap();
    refused(&tokio::task::block_in_place(|| PostgresStore::open_active(&two, &a)).expect_err("two hosts, the active node"));
    refused(&tokio::task::block_in_place(|| Leadership::acquire(&two, "green", |_| panic!("refused before it waits"))).expect_err("two hosts"));
}

fn text(i: usize) -> content::Body {
    content::Body::Text(Text { text: format!("message {i}") })
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Message { content, .. } => match &content.body {
                Some(content::Body::Text(text)) => Some(text.text.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// A relay of app green on the database `url`, listening on `addresses` (devices, then other
/// relays; port 0 for any).
async fn start_relay(pki: &Pki, url: String, shards: Vec<MailboxShard>, addresses: [SocketAddr; 2]) -> RelayHandle {
    let (store, state, contents) = tokio::task::spawn_blocking(move || {
        let (store, state) = PostgresStore::open_sharded(&url, &shards, None).expect("open the store");
        let contents = store.contents().expect("open the reader");
        (store, state, contents)
    })
    .await
    .unwrap();
    let (certificate, private_key) = pki.apps["green"].clone();
    let settings = RelaySettings {
        app: "green".into(),
        tls: TlsIdentity { certificate, private_key, ca_certificate: pki.ca_certificate.clone() },
        peers: Vec::new(),
        seed: None,
        tap: None,
        rate_limits: Default::default(),
    };
    let clients = TcpListener::bind(addresses[0]).await.unwrap();
    let federation = TcpListener::bind(addresses[1]).await.unwrap();
    start(settings, clients, federation, Box::new(store), Box::new(contents), state).await.unwrap()
}

fn seeded(seed: u64) -> rand::rngs::StdRng {
    rand::SeedableRng::seed_from_u64(seed)
}

/// Messages acknowledged, one at a time, while the synchronous standby streams.
const BEFORE_THE_STOP: usize = 15;

/// Whether `alice` sent message `i` and the relay acknowledged it within `limit`.
async fn acknowledged_within(alice: &mut ChatClient, i: usize, limit: Duration) -> bool {
    let taken = tokio::time::timeout(limit, alice.send("bob@green", text(i))).await;
    matches!(taken, Ok(Ok(_))) && alice.outbox_len() == 0
}

/// A relay acknowledges a message only once the synchronous standby has it: while the standby is
/// stopped (SIGSTOP) nothing more is acknowledged; the primary is then killed (every process of
/// it), the standby resumed and promoted, and every acknowledged message arrives once. With
/// asynchronous replication the message sent while the standby is stopped would be acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_when_the_primary_dies_and_the_standby_takes_over() {
    primary_dies(false).await;
}

/// The same for a mailbox shard's primary (every mailbox on it; the home has no standby): the
/// batch whose PREPARE waits for the stopped standby is neither acknowledged nor decided, and
/// the relay started on the promoted standby rolls it back if the standby has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_when_a_shards_primary_dies_and_its_standby_takes_over() {
    primary_dies(true).await;
}

async fn primary_dies(sharded: bool) {
    let primary = Server::start();
    let standby = primary.start_standby();
    // Sharded: the home is a server of its own, and `primary` holds every mailbox.
    let home = sharded.then(Server::start);
    let databases = |primary: &Server| match &home {
        Some(home) => (home.url(), vec![MailboxShard { url: primary.url(), buckets: 0..=255 }]),
        None => (primary.url(), Vec::new()),
    };
    let pki = Pki::generate(&["green"]).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (home_url, shards) = databases(&primary);
    let relay = start_relay(&pki, home_url, shards, [any, any]).await;
    let addresses = [relay.client_address, relay.federation_address];
    let address = RelayAddress::new(relay.client_address, "green", &pki.ca_certificate).unwrap();
    let mut alice = ChatClient::register(address.clone(), "alice@green", 1, seeded(1)).await.unwrap();
    let mut bob = ChatClient::register(address, "bob@green", 1, seeded(2)).await.unwrap();
    // Bob's mail waits in his mailbox, in the database, for the whole stream.
    bob.disconnect();

    // Each acknowledged in turn while the standby streams (however slow the machine).
    let mut acknowledged = Vec::new();
    for i in 0..BEFORE_THE_STOP {
        assert!(acknowledged_within(&mut alice, i, Duration::from_secs(20)).await, "message {i} was not acknowledged with the standby streaming");
        acknowledged.push(i);
    }

    // The standby stops (every process of it): the primary's commits wait for it.
    standby.signal_all("STOP");
    let stopped = BEFORE_THE_STOP;
    let taken = acknowledged_within(&mut alice, stopped, Duration::from_millis(1500)).await;
    // Killed and resumed whatever the assertion says: a stopped server would outlive the test.
    primary.kill();
    standby.signal_all("CONT");
    assert!(!taken, "message {stopped} was acknowledged while the synchronous standby was stopped");
    // The relay's waiting commit fails with its connection: the relay stops, and says why.
    let why = tokio::time::timeout(Duration::from_secs(10), relay.stopped()).await.expect("the relay stops once its database is gone");
    assert!(why.contains(if sharded { "preparing a batch on a shard" } else { "committing a batch" }), "{why}");
    relay.shutdown().await;

    standby.promote();
    let (home_url, shards) = databases(&standby);
    let relay = start_relay(&pki, home_url, shards, addresses).await;
    // Alice sends again what the relay did not acknowledge, and the relay takes it before Bob
    // comes for his mail: `reconnect` may return with it still in the outbox (its wait for the
    // client to settle also ends when the connection is gone, and after 10 s).
    alice.reconnect().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alice.outbox_len() > 0 || !alice.is_online() {
        assert!(Instant::now() < deadline, "alice's client did not resend: {} message(s) wait", alice.outbox_len());
        alice.poll(Duration::from_millis(100)).await.unwrap();
    }
    bob.reconnect().await.unwrap();
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        alice.poll(Duration::from_millis(50)).await.unwrap();
        received.extend(texts(&bob.poll(Duration::from_millis(300)).await.unwrap()));
        if acknowledged.iter().chain([&stopped]).all(|i| received.contains(&format!("message {i}"))) {
            break;
        }
    }
    // Nothing more comes: exactly once.
    received.extend(texts(&bob.poll(Duration::from_millis(300)).await.unwrap()));
    for i in &acknowledged {
        let copies = received.iter().filter(|text| **text == format!("message {i}")).count();
        assert_eq!(copies, 1, "acknowledged message {i} arrived {copies} times; acknowledged {acknowledged:?}, received {received:?}");
    }
    let distinct: BTreeSet<&String> = received.iter().collect();
    assert_eq!(distinct.len(), received.len(), "a message arrived twice: {received:?}");
    // The message sent while the standby was stopped was not acknowledged: Alice sent it again
    // to the new primary. It may also be in the standby's copy (the primary had sent its WAL,
    // which the stopped standby read once resumed). Either way the relay holds it once: it
    // stores an envelope id it already holds no second time (and acknowledges it again), its
    // index rebuilt from the rows it loads, and Alice's client resends under the same id. A
    // second copy could only come if the resend reached the relay after Bob acknowledged the
    // first and the relay deleted it; Alice's outbox is empty before Bob comes online, so it
    // cannot, and Bob's client drops nothing as a duplicate.
    let stopped_text = format!("message {stopped}");
    assert_eq!(received.iter().filter(|text| **text == stopped_text).count(), 1, "received {received:?}");
    assert_eq!(bob.stats().duplicates, 0, "the relay delivered {} messages twice", bob.stats().duplicates);
    eprintln!("{} acknowledged, {} received after the failover, {} duplicates dropped", acknowledged.len(), received.len(), bob.stats().duplicates);
    relay.shutdown().await;
}
