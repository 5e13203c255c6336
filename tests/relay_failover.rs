//! Two nodes of one app's relay as separate processes (`switchboard relay --config`) on one
//! PostgreSQL database (a server of the test's own: see `support/postgres.rs` of the relay's
//! tests): one active, the other a hot standby that waits for the active node's lock. The active
//! node is killed with SIGKILL mid-stream; the standby takes over; devices, given both nodes'
//! addresses, find it by themselves, and every message arrives exactly once. The same with the
//! mail coming from another app's relay, given both nodes' federation addresses.

#[path = "../crates/relay/tests/support/postgres.rs"]
#[allow(dead_code)] // the standby server and promotion are for the relay's own tests
mod postgres;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use postgres::Server;
use switchboard_client::{ChatClient, Event, RelayAddress};
use switchboard_wire::switchboard::{Text, content};

/// A loopback port free now, below the kernel's ephemeral range (see `federation/mod.rs`: no
/// outgoing connection takes it while its node is down).
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(0, 20_000 + (std::process::id() % 1000) as u16 * 10 + 5, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 32_000, "no free port left below the ephemeral range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One `switchboard relay` process, its stdout lines gathered by a thread; killed when dropped.
struct Node {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Node {
    fn start(config: &Path) -> Node {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn");
        }
        Node::spawn(command, config)
    }

    /// Like [`Node::start`], logging at `debug` (everything) to the file `log`.
    fn start_logged(config: &Path, log: &Path) -> Node {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command.env("RUST_LOG", "debug").stderr(std::fs::File::create(log).unwrap());
        Node::spawn(command, config)
    }

    fn spawn(mut command: Command, config: &Path) -> Node {
        command.args(["relay", "--config", config.to_str().unwrap()]).stdout(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (line, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for read in BufReader::new(stdout).lines() {
                let Ok(read) = read else { return };
                if line.send(read).is_err() {
                    return;
                }
            }
        });
        Node { child, lines }
    }

    /// Waits (up to `limit`) for a line holding `what`.
    fn wait_for(&self, what: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line with {what:?} within {limit:?}"),
            }
        }
    }

    /// The lines printed since the last look, without waiting.
    fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// SIGKILL: no chance to flush or close anything.
    /// How the process exited, once it has, within `limit`; fails with `still` otherwise.
    fn exited(&mut self, limit: Duration, still: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{still}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn refused(address: SocketAddr) -> bool {
    TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err_and(|error| error.kind() == std::io::ErrorKind::ConnectionRefused)
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

/// The texts `bob` receives until `total` have come or `within` has passed, and then what else
/// comes within 300 ms; none of them twice.
async fn received_once(bob: &mut ChatClient, total: usize, within: Duration) -> Vec<String> {
    let mut received = Vec::new();
    let deadline = Instant::now() + within;
    while received.len() < total && Instant::now() < deadline {
        received.extend(texts(&bob.poll(Duration::from_millis(200)).await.unwrap()));
    }
    received.extend(texts(&bob.poll(Duration::from_millis(300)).await.unwrap()));
    let mut distinct = received.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), received.len(), "a message arrived twice: {received:?}");
    received
}

/// `switchboard setup` of `apps` in `dir`, on the given ports, their state in PostgreSQL at `url`,
/// `nodes` nodes per app.
fn setup(dir: &Path, apps: &str, ports: &[u16], url: &str, nodes: u16) {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let status = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["setup", "--dir", dir.to_str().unwrap(), "--apps", apps, "--ports", &ports.join(","), "--nodes", &nodes.to_string()])
        .args(["--storage", "postgres", "--postgres-url", url])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Green's configuration from [`setup`] (its node A, on ports `a`: client, federation), and a
/// second node's, B, written beside it: the same app, certificate, key and database, on ports `b`.
fn two_nodes_of_green(dir: &Path, a: [u16; 2], b: [u16; 2]) -> (PathBuf, PathBuf) {
    let config_a = dir.join("green.toml");
    let mut written = std::fs::read_to_string(&config_a).unwrap();
    for (from, to) in a.iter().zip(b) {
        let from = format!("127.0.0.1:{from}\"");
        assert!(written.contains(&from), "{written}");
        written = written.replace(&from, &format!("127.0.0.1:{to}\""));
    }
    let config_b = dir.join("green-b.toml");
    std::fs::write(&config_b, written).unwrap();
    (config_a, config_b)
}

fn seeded(seed: u64) -> rand::rngs::StdRng {
    rand::SeedableRng::seed_from_u64(seed)
}

/// Messages in the stream, and how many are acknowledged before the active node is killed.
const TOTAL: usize = 60;
const BEFORE_THE_KILL: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_node_takes_over_when_the_active_one_is_killed_and_nothing_is_lost_or_doubled() {
    standby_takes_over(false).await;
}

/// The same with every mailbox on a second primary, a shard (`[[storage.shards]]`): each batch
/// of mail commits in two phases. A is killed while a batch is prepared on the shard and not
/// decided (the shard's server made to wait, from then on, for a synchronous standby it does not
/// have), and B rolls it back before it loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_node_takes_over_from_a_killed_node_whose_mailboxes_are_on_a_shard_and_nothing_is_lost_or_doubled() {
    standby_takes_over(true).await;
}

async fn standby_takes_over(sharded: bool) {
    let started = Instant::now();
    let server = Server::start();
    let shard = sharded.then(Server::start);
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let [a, a_federation, b, b_federation] = [ports[0], ports[1], ports[2], ports[3]];
    setup(dir.path(), "green", &[a, a_federation], &server.url(), 1);
    let (config_a, config_b) = two_nodes_of_green(dir.path(), [a, a_federation], [b, b_federation]);
    if let Some(shard) = &shard {
        for config in [&config_a, &config_b] {
            let mut file = std::fs::OpenOptions::new().append(true).open(config).unwrap();
            writeln!(file, "\n[[storage.shards]]\nurl = \"{}\"\nbuckets = \"0-255\"", shard.url()).unwrap();
        }
    }
    let node_address = |port: u16| -> SocketAddr { format!("127.0.0.1:{port}").parse().unwrap() };
    let (address_a, address_b) = (node_address(a), node_address(b));

    let node_a = Node::start(&config_a);
    node_a.wait_for("ready", Duration::from_secs(10));
    let log_b = dir.path().join("b.log");
    let node_b = if sharded { Node::start_logged(&config_b, &log_b) } else { Node::start(&config_b) };
    node_b.wait_for("standby", Duration::from_secs(10));
    assert!(refused(address_b), "the standby serves while the active node lives");

    let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let nodes = [address_a, address_b];
    let mut alice = ChatClient::register(RelayAddress::with_addresses(&nodes, "green", &ca).unwrap(), "alice@green", 1, seeded(1)).await.unwrap();
    let mut bob = ChatClient::register(RelayAddress::with_addresses(&nodes, "green", &ca).unwrap(), "bob@green", 1, seeded(2)).await.unwrap();
    // Bob's mail waits in his mailbox, in the database, for the whole stream.
    bob.disconnect();

    let mut acknowledged = Vec::new();
    // How many are acknowledged so far, for the killing thread to read once A is dead.
    let acknowledged_now = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut node_a = Some(node_a);
    let mut killer = None;
    for i in 0..TOTAL {
        if acknowledged.len() == BEFORE_THE_KILL && killer.is_none() {
            assert!(refused(address_b), "the standby serves while the active node lives");
            // B said nothing but that it waits: no early "ready" is left for the wait below.
            let said = node_b.drain();
            assert!(said.iter().all(|line| !line.contains("ready")), "the standby said it serves while the active node lives: {said:?}");
            // Mid-stream: the kill lands while the next messages are being sent and committed.
            let mut node = node_a.take().expect("node A is killed once");
            let acknowledged_now = acknowledged_now.clone();
            // Sharded: between two messages (none being committed), the shard starts waiting on
            // every commit and prepare; the next batch stalls once prepared, and A is killed then.
            let shard_port = shard.as_ref().map(|shard| {
                shard.sql("ALTER SYSTEM SET synchronous_standby_names = 'nobody'");
                shard.sql("SELECT pg_reload_conf()");
                std::thread::sleep(Duration::from_millis(300)); // the backends take the new setting
                shard.port
            });
            killer = Some(std::thread::spawn(move || {
                match shard_port {
                    Some(port) => {
                        let deadline = Instant::now() + Duration::from_secs(10);
                        while postgres::sql_at(port, "postgres", "SELECT count(*) FROM pg_prepared_xacts").trim() == "0" {
                            assert!(Instant::now() < deadline, "no batch was prepared on the shard");
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                    None => std::thread::sleep(Duration::from_millis(5)),
                }
                node.kill(); // SIGKILL through the Child handle, and reaped: A is dead after it
                let at_the_kill = acknowledged_now.load(std::sync::atomic::Ordering::SeqCst);
                if let Some(port) = shard_port {
                    postgres::sql_at(port, "postgres", "ALTER SYSTEM RESET synchronous_standby_names");
                    postgres::sql_at(port, "postgres", "SELECT pg_reload_conf()");
                }
                (node, at_the_kill)
            }));
        }
        // Up to the client's own limit for the relay to take it; offline, it returns at once
        // and the message waits in the outbox.
        let taken = alice.send("bob@green", text(i)).await;
        if taken.is_ok() && alice.outbox_len() == 0 {
            acknowledged.push(i);
            acknowledged_now.store(acknowledged.len(), std::sync::atomic::Ordering::SeqCst);
        }
    }
    let killer = killer.unwrap_or_else(|| panic!("fewer than {BEFORE_THE_KILL} messages were acknowledged before the kill: {acknowledged:?}"));
    let (_node_a, at_the_kill) = killer.join().expect("node A was killed");
    // Read once A was dead: at most what was acknowledged when it died, and some were not.
    assert!(at_the_kill < TOTAL, "node A was killed only once all {TOTAL} messages were acknowledged, not mid-stream");
    node_b.wait_for("ready", Duration::from_secs(10));
    assert!(refused(address_a), "node A is dead");
    if let Some(shard) = &shard {
        // B rolled back the batch A left prepared and undecided; the mail is on the shard.
        let log = std::fs::read_to_string(&log_b).unwrap();
        let resolved = log.lines().find(|line| line.contains("resolving batches a node left prepared")).unwrap_or_else(|| panic!("{log}"));
        assert!(resolved.contains("batches=1") && resolved.contains("committed=0"), "{resolved}");
        assert_eq!(shard.sql("SELECT count(*) FROM pg_prepared_xacts").trim(), "0");
        assert_ne!(shard.sql("SELECT count(*) FROM mailboxes").trim(), "0");
        assert_eq!(server.sql("SELECT count(*) FROM mailboxes").trim(), "0");
    }
    // Alice's client reconnects by itself (to B, the only node that answers) and sends what
    // waits in its outbox: polled, never told to reconnect.
    let deadline = Instant::now() + Duration::from_secs(10);
    while alice.outbox_len() > 0 || !alice.is_online() {
        assert!(Instant::now() < deadline, "alice's client did not reconnect: {} message(s) wait", alice.outbox_len());
        alice.poll(Duration::from_millis(100)).await.unwrap();
    }

    // Bob comes online: his client tries A (refused), then B.
    bob.reconnect().await.unwrap();
    let received = received_once(&mut bob, TOTAL, Duration::from_secs(10)).await;
    for i in &acknowledged {
        let copies = received.iter().filter(|text| **text == format!("message {i}")).count();
        assert_eq!(copies, 1, "acknowledged message {i} arrived {copies} times; acknowledged {acknowledged:?}, received {received:?}");
    }
    // Alice's outbox is empty: B took every message, those A never acknowledged included.
    assert_eq!(received.len(), TOTAL, "received {received:?}");
    // Exactly once before the client's own filter too. The message in flight at the kill may
    // have been committed by A and not acknowledged, and Alice sent it again to B under the same
    // id: B, which loaded A's rows (the index rebuilt from them), holds that id already, so it
    // stores it no second time and acknowledges it again. A second copy could only come if the
    // resend reached B after Bob acknowledged the first and B deleted it; Alice's outbox is
    // empty before Bob comes online, so it cannot.
    let duplicates = bob.stats().duplicates;
    assert_eq!(duplicates, 0, "bob's client dropped {duplicates} duplicates");

    // A node that loses its lock connection stops at once, with status 3. Only the connection
    // holding the locks (the database's and the app's of earlier versions, exclusively, for the
    // session): B's writer may hold the fences, shared, mid-commit.
    let mut node_b = node_b;
    let ended = server.sql(
        "SELECT count(pg_terminate_backend(pid)) FROM (SELECT DISTINCT pid FROM pg_locks \
           WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock') AS holders",
    );
    assert_eq!(ended.trim(), "1", "B's lock connection");
    let status = node_b.exited(Duration::from_secs(5), "node B serves on without its lock");
    assert_eq!(status.code(), Some(3), "{status}");
    assert!(refused(address_b));
    eprintln!(
        "{TOTAL} sent, {at_the_kill} acknowledged when A died, {} before the failover, {} received once each, bob's duplicates {duplicates}; {:?} in all",
        acknowledged.len(),
        received.len(),
        started.elapsed()
    );
}

/// A relay whose database connections are lost (ended by the server, its lock connection
/// spared) stops at the next batch, and its process exits (status 4) rather than keep its ports
/// with nothing behind them: a supervisor can restart it. Its log, at `debug`, holds nothing of
/// the PostgreSQL client's (statement parameters) and no notice of tables that exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_loses_its_database_connection_exits() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (port, federation) = (free_port(), free_port());
    let status = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["setup", "--dir", dir.path().to_str().unwrap(), "--apps", "green", "--ports", &format!("{port},{federation}")])
        .args(["--storage", "postgres", "--postgres-url", &server.url()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let config = dir.path().join("green.toml");
    let log = dir.path().join("relay.log");
    // A first start creates the tables; the one below finds them there.
    let mut node = Node::start_logged(&config, &log);
    node.wait_for("ready", Duration::from_secs(10));
    node.kill();
    let mut node = Node::start_logged(&config, &log);
    node.wait_for("ready", Duration::from_secs(10));
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let mut alice = ChatClient::register(RelayAddress::new(address, "green", &ca).unwrap(), "alice@green", 1, seeded(1)).await.unwrap();
    let bob = ChatClient::register(RelayAddress::new(address, "green", &ca).unwrap(), "bob@green", 1, seeded(2)).await.unwrap();
    drop(bob);

    let ended = server.sql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'switchboard-relay' \
         AND pid NOT IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)",
    );
    assert_eq!(ended.trim(), "2", "the relay's writer and reader connections");
    // The next batch fails: the relay stops, and so does its process.
    let _ = tokio::time::timeout(Duration::from_secs(5), alice.send("bob@green", text(0))).await;
    let status = node.exited(Duration::from_secs(10), "the relay process lives on without its database");
    assert_eq!(status.code(), Some(4), "{status}");
    assert!(refused(address));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("the relay stopped (its storage failed, or its core ended)"), "{logged}");
    assert!(!logged.contains("already exists"), "{logged}");
    assert!(!logged.contains("tokio_postgres"), "{logged}");
}

/// Another app's relay, federated with green and given both of green's nodes' federation
/// addresses, sends mail to green mid-stream while green's active node is killed: its link to
/// the dead node is lost, it dials the next address, reaches the standby once that serves, and
/// every message reaches Bob on green exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_apps_relay_reaches_the_standby_when_the_active_node_is_killed() {
    let server = Server::start();
    for app in ["green", "blue"] {
        server.sql(&format!("CREATE DATABASE relay_{app}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
    let [a, a_federation, blue, blue_federation, b, b_federation] = ports[..] else { unreachable!() };
    let url = format!("host=127.0.0.1 port={} user=postgres dbname=relay_{{app}}", server.port);
    setup(dir.path(), "green,blue", &[a, a_federation, blue, blue_federation], &url, 1);
    let (config_a, config_b) = two_nodes_of_green(dir.path(), [a, a_federation], [b, b_federation]);
    // Blue lists both of green's nodes, the active one first.
    let config_blue = dir.path().join("blue.toml");
    let blue_written = std::fs::read_to_string(&config_blue).unwrap();
    let one_address = format!("address = \"127.0.0.1:{a_federation}\"");
    assert!(blue_written.contains(&one_address), "{blue_written}");
    let both = format!("addresses = [\"127.0.0.1:{a_federation}\", \"127.0.0.1:{b_federation}\"]");
    std::fs::write(&config_blue, blue_written.replace(&one_address, &both)).unwrap();
    let node_address = |port: u16| -> SocketAddr { format!("127.0.0.1:{port}").parse().unwrap() };

    let mut node_a = Node::start(&config_a);
    node_a.wait_for("ready", Duration::from_secs(10));
    let node_b = Node::start(&config_b);
    node_b.wait_for("standby", Duration::from_secs(10));
    let blue_node = Node::start(&config_blue);
    blue_node.wait_for("ready", Duration::from_secs(10));

    let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let green_nodes = [node_address(a), node_address(b)];
    let blue_relay = RelayAddress::with_addresses(&[node_address(blue)], "blue", &ca).unwrap();
    let mut alice = ChatClient::register(blue_relay, "alice@blue", 1, seeded(3)).await.unwrap();
    let mut bob = ChatClient::register(RelayAddress::with_addresses(&green_nodes, "green", &ca).unwrap(), "bob@green", 1, seeded(4)).await.unwrap();
    // Bob's mail waits in his mailbox, in green's database, for the whole stream.
    bob.disconnect();

    for i in 0..TOTAL {
        if i == BEFORE_THE_KILL {
            // Mid-stream: what blue took so far is on its way to A or there already.
            node_a.kill();
        }
        alice.send("bob@green", text(i)).await.unwrap();
    }
    node_b.wait_for("ready", Duration::from_secs(10));
    assert!(refused(node_address(a)), "node A is dead");
    // Alice's messages were all taken by blue (her own relay did not fail).
    assert_eq!(alice.outbox_len(), 0);

    // Bob comes online: his client tries A (refused), then B, where blue's relay sent on what A
    // did not take.
    bob.reconnect().await.unwrap();
    let received = received_once(&mut bob, TOTAL, Duration::from_secs(30)).await;
    assert_eq!(received.len(), TOTAL, "received {received:?}");
    // Exactly once before the client's own filter too.
    let duplicates = bob.stats().duplicates;
    assert_eq!(duplicates, 0, "bob's client dropped {duplicates} duplicates");
    drop(blue_node);
}

/// Two nodes of green as `setup --nodes 2` writes them (`[cluster]`): B, waiting for the lock, is a front node and serves
/// devices by carrying their connections to A. Alice sends through B; A is killed mid-stream;
/// B's link to it closes and with it Alice's connection; B takes the lock and serves as the
/// active node; Alice's client reconnects to B by itself, and Bob, on B too, receives every
/// message exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_node_serves_devices_through_the_active_node_and_takes_over_when_it_is_killed() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
    let [a, _, _, b, _, _] = ports[..] else { unreachable!() };
    setup(dir.path(), "green", &ports, &server.url(), 2);
    let (config_a, config_b) = (dir.path().join("green.toml"), dir.path().join("green-2.toml"));
    let node_address = |port: u16| -> SocketAddr { format!("127.0.0.1:{port}").parse().unwrap() };

    let mut node_a = Node::start(&config_a);
    node_a.wait_for("ready", Duration::from_secs(10));
    let node_b = Node::start(&config_b);
    node_b.wait_for("front", Duration::from_secs(10));

    // Both devices dial B first: while A lives, B carries them to it.
    let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let nodes = [node_address(b), node_address(a)];
    let mut alice = ChatClient::register(RelayAddress::with_addresses(&nodes, "green", &ca).unwrap(), "alice@green", 1, seeded(1)).await.unwrap();
    let mut bob = ChatClient::register(RelayAddress::with_addresses(&nodes, "green", &ca).unwrap(), "bob@green", 1, seeded(2)).await.unwrap();
    alice.send("bob@green", text(1000)).await.unwrap();
    assert_eq!(received_once(&mut bob, 1, Duration::from_secs(5)).await, ["message 1000"], "a message through the front node");
    bob.disconnect();
    assert!(node_b.drain().iter().all(|line| !line.contains("ready")), "B serves as the active node while A lives");

    let mut acknowledged = 0;
    for i in 0..TOTAL {
        if i == BEFORE_THE_KILL {
            node_a.kill();
        }
        let taken = alice.send("bob@green", text(i)).await;
        if taken.is_ok() && alice.outbox_len() == 0 && i < BEFORE_THE_KILL {
            acknowledged += 1;
        }
    }
    assert_eq!(acknowledged, BEFORE_THE_KILL, "every message before the kill was acknowledged through B");
    node_b.wait_for("ready", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    while alice.outbox_len() > 0 || !alice.is_online() {
        assert!(Instant::now() < deadline, "alice's client did not reconnect: {} message(s) wait", alice.outbox_len());
        alice.poll(Duration::from_millis(100)).await.unwrap();
    }
    bob.reconnect().await.unwrap();
    let received = received_once(&mut bob, TOTAL, Duration::from_secs(10)).await;
    assert_eq!(received.len(), TOTAL, "received {received:?}");
    let duplicates = bob.stats().duplicates;
    assert_eq!(duplicates, 0, "bob's client dropped {duplicates} duplicates");
}
