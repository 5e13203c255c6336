//! Relay benchmarks, end to end over loopback with durability on: throughput of 1 KiB envelopes
//! from devices on one app to devices on another (client → its relay → federation → other relay →
//! client) beside a plain two-hop TCP forwarder as the ceiling, latency at half the measured peak,
//! and group fan-out to 10, 100 and 1,000 members spread over three apps.
//!
//! The devices here speak the relay protocol directly, over TLS to their relay as every device
//! does, with opaque 1 KiB contents: what is measured is the relays (TLS to devices and between
//! apps, framing, routing, group commit to disk), not the end-to-end cipher, which the session
//! benchmarks measure. The forwarder is plain TCP: the ceiling of the machine's sockets.
//!
//! Last, the same relays on PostgreSQL (one server of the bench's own, started as the relay's
//! tests start theirs), alternated with those on redb, when PostgreSQL's server binaries are
//! installed: with one node per app (`relay_cluster_throughput_1`), and with two and three
//! (`_2`, `_3`: each app's relay and front nodes that carry connections to it, the devices
//! spread over every node); and with one node per app whose mailboxes of buckets 128–255 are on
//! a second server, a shard (`relay_sharded_throughput_2`: a batch spanning both commits in two
//! phases).

#[path = "../../relay/tests/support/postgres.rs"]
#[allow(dead_code)] // the standby server, killing and promotion are for the relay's tests
mod postgres_server;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use switchboard_relay::core::RateLimits;
use switchboard_relay::local::{LocalFederation, LocalOptions, LocalStorage};
use switchboard_relay::storage::MailboxShard;
use switchboard_wire::frame::{FrameDecoder, encode_frame};
use switchboard_wire::switchboard::{
    Acknowledge, Authenticate, ClientFrame, DeviceAddress, Envelope, EnvelopeKind, EnvelopeRef, Franking, GroupEnvelope, Register, ServerFrame,
    client_frame::Body, server_frame,
};
use switchboard_client::RelayAddress;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

/// Bytes of content in every envelope.
pub const ENVELOPE_CONTENT: usize = 1024;

/// The figures of one run.
#[derive(Clone, Debug, Default)]
pub struct RelayFigures {
    /// Envelopes per second through the plain two-hop TCP forwarder.
    pub forwarder_per_sec: f64,
    /// Envelopes per second through two relays, durably stored and acknowledged.
    pub relay_per_sec: f64,
    /// The same through relays on PostgreSQL, with 1, 2 and 3 nodes per app (empty without
    /// PostgreSQL).
    pub clusters: Vec<ClusterRate>,
    /// The same through one node per app on PostgreSQL with half of each app's mailboxes (buckets
    /// 128–255) on a second server, a shard (none without PostgreSQL).
    pub sharded: Option<ClusterRate>,
    /// Median time from send to receipt, in microseconds, at `latency_rate_per_sec`.
    pub latency_p50_us: f64,
    /// 99th percentile of the same, in microseconds.
    pub latency_p99_us: f64,
    /// The offered load the latencies were measured at (half of `relay_per_sec`).
    pub latency_rate_per_sec: f64,
    /// (members, milliseconds until every member had it, envelopes that crossed app boundaries)
    pub fanout: Vec<(usize, f64, u64)>,
}

/// The relays on PostgreSQL, and those on redb in the rounds alternated with theirs.
#[derive(Clone, Copy, Debug)]
pub struct ClusterRate {
    /// Nodes per app.
    pub nodes: usize,
    /// Envelopes per second through the relays on PostgreSQL.
    pub per_sec: f64,
    /// Envelopes per second through the relays on redb, in the same rounds: what `per_sec` is
    /// compared with.
    pub redb_per_sec: f64,
}

/// A device speaking the relay protocol directly.
struct RawDevice {
    address: DeviceAddress,
    reader: ReadHalf<TlsStream<TcpStream>>,
    writer: WriteHalf<TlsStream<TcpStream>>,
    decoder: FrameDecoder,
    buffer: Vec<u8>,
}

impl RawDevice {
    async fn join(relay: &RelayAddress, user: &str) -> RawDevice {
        let stream = relay.dial().await.expect("relay reachable");
        let (reader, writer) = tokio::io::split(stream);
        let address = DeviceAddress { name: user.to_owned(), device_id: 1 };
        let mut device = RawDevice { address, reader, writer, decoder: FrameDecoder::default(), buffer: vec![0; 64 * 1024] };
        device.send(1, Body::Register(Register { user: user.to_owned(), device_id: 1 })).await;
        let Some(server_frame::Body::Registered(registered)) = device.next().await.body else { panic!("registration refused") };
        let authenticate = Authenticate { user: user.to_owned(), device_id: 1, credential: registered.credential };
        device.send(2, Body::Authenticate(authenticate)).await;
        device.next().await;
        device
    }

    async fn send(&mut self, request_id: u64, body: Body) {
        let frame = encode_frame(&ClientFrame { request_id, body: Some(body) });
        self.writer.write_all(&frame).await.expect("relay connection");
        self.writer.flush().await.expect("relay connection");
    }

    async fn next(&mut self) -> ServerFrame {
        loop {
            if let Some(frame) = self.decoder.next_message::<ServerFrame>().expect("well-formed frames") {
                return frame;
            }
            let read = self.reader.read(&mut self.buffer).await.expect("relay connection");
            assert!(read > 0, "relay closed the connection");
            self.decoder.extend(&self.buffer[..read]);
        }
    }
}

/// How a device of `app` reaches its relay.
fn device_link(federation: &LocalFederation, app: &str) -> RelayAddress {
    RelayAddress::new(federation.relay(app).client_address, app, federation.ca_certificate()).expect("the federation's CA")
}

fn envelope(sender: &DeviceAddress, recipient: &DeviceAddress, sequence: u64, stamp: u64) -> Envelope {
    let mut id = vec![0u8; 16];
    id[..8].copy_from_slice(&sequence.to_be_bytes());
    let mut content = vec![0xa5; ENVELOPE_CONTENT];
    content[..8].copy_from_slice(&stamp.to_be_bytes());
    Envelope {
        id: id.into(),
        sender: Some(sender.clone()),
        recipient: Some(recipient.clone()),
        kind: EnvelopeKind::SignalMessage as i32,
        content: content.into(),
        group_id: String::new(),
        // As every message a person writes carries: the relay stamps it.
        franking: Some(Franking { commitment: vec![0x3c; 32], ..Default::default() }),
        channel: false,
    }
}

/// Receives `count` deliveries, acknowledging them in batches; returns each one's content stamp.
async fn receive(device: &mut RawDevice, count: usize) -> Vec<u64> {
    let mut stamps = Vec::with_capacity(count);
    let mut pending_ack = Vec::new();
    while stamps.len() < count {
        let frame = device.next().await;
        if let Some(server_frame::Body::Deliver(envelope)) = frame.body {
            stamps.push(u64::from_be_bytes(envelope.content[..8].try_into().expect("8 bytes")));
            pending_ack.push(EnvelopeRef { sender: envelope.sender, id: envelope.id });
            if pending_ack.len() >= 64 {
                let envelopes = std::mem::take(&mut pending_ack);
                device.send(0, Body::Acknowledge(Acknowledge { envelopes })).await;
            }
        }
    }
    if !pending_ack.is_empty() {
        device.send(0, Body::Acknowledge(Acknowledge { envelopes: pending_ack })).await;
    }
    stamps
}

/// Sends `count` envelopes as fast as the window allows (at most `window` unanswered), or at
/// `rate` per second when given; the content carries the send time in µs since `epoch`.
async fn send_stream(device: &mut RawDevice, to: &DeviceAddress, count: usize, window: usize, rate: Option<f64>, epoch: Instant) {
    let mut answered = 0usize;
    let pace = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let start = Instant::now();
    for sequence in 0..count {
        while sequence - answered >= window {
            device.next().await;
            answered += 1;
        }
        if let Some(pace) = pace {
            let due = start + pace * sequence as u32;
            tokio::time::sleep_until(due.into()).await;
        }
        let stamp = epoch.elapsed().as_micros() as u64;
        let envelope = envelope(&device.address, to, sequence as u64, stamp);
        device.send(sequence as u64 + 10, Body::Send(envelope)).await;
    }
    while answered < count {
        device.next().await;
        answered += 1;
    }
}

/// `receiver` writes to `sender` first, as in a conversation: the sender is then its contact, not a
/// stranger held to a stranger's allowance by the receiver's relay. The sender takes the message.
async fn introduce(sender: &mut RawDevice, receiver: &mut RawDevice) {
    let hello = envelope(&receiver.address, &sender.address, u64::MAX, 0);
    receiver.send(1, Body::Send(hello)).await;
    while receiver.next().await.request_id != 1 {}
    loop {
        if let Some(server_frame::Body::Deliver(envelope)) = sender.next().await.body {
            let envelopes = vec![EnvelopeRef { sender: envelope.sender, id: envelope.id }];
            sender.send(0, Body::Acknowledge(Acknowledge { envelopes })).await;
            return;
        }
    }
}

/// Messages per second through `pairs` sender/receiver pairs, green → blue.
async fn relay_rate(federation: &LocalFederation, pairs: usize, per_pair: usize, tag: &str) -> f64 {
    // Pair i on each app's node i modulo their count (with several nodes, a pair may span two).
    let nodes = |app: &str| -> Vec<RelayAddress> {
        let ca = federation.ca_certificate();
        federation.client_addresses(app).into_iter().map(|address| RelayAddress::new(address, app, ca).expect("the federation's CA")).collect()
    };
    let (green, blue) = (nodes("green"), nodes("blue"));
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for i in 0..pairs {
        let mut sender = RawDevice::join(&green[i % green.len()], &format!("s{tag}{i}@green")).await;
        let mut receiver = RawDevice::join(&blue[(i + 1) % blue.len()], &format!("r{tag}{i}@blue")).await;
        introduce(&mut sender, &mut receiver).await;
        senders.push(sender);
        receivers.push(receiver);
    }
    let epoch = Instant::now();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (mut sender, mut receiver) in senders.into_iter().zip(receivers) {
        let to = receiver.address.clone();
        tasks.spawn(async move { send_stream(&mut sender, &to, per_pair, 64, None, epoch).await });
        tasks.spawn(async move {
            receive(&mut receiver, per_pair).await;
        });
    }
    while tasks.join_next().await.is_some() {}
    (pairs * per_pair) as f64 / start.elapsed().as_secs_f64()
}

/// Latency percentiles for one pair sending at `rate` per second.
async fn latency(federation: &LocalFederation, rate: f64, count: usize) -> (f64, f64) {
    let (green, blue) = (device_link(federation, "green"), device_link(federation, "blue"));
    let mut sender = RawDevice::join(&green, "latency-sender@green").await;
    let mut receiver = RawDevice::join(&blue, "latency-receiver@blue").await;
    introduce(&mut sender, &mut receiver).await;
    let epoch = Instant::now();
    let to = receiver.address.clone();
    let receiving = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(count);
        let mut pending_ack = Vec::new();
        while latencies.len() < count {
            let frame = receiver.next().await;
            if let Some(server_frame::Body::Deliver(envelope)) = frame.body {
                let sent = u64::from_be_bytes(envelope.content[..8].try_into().expect("8 bytes"));
                latencies.push(epoch.elapsed().as_micros() as u64 - sent);
                pending_ack.push(EnvelopeRef { sender: envelope.sender, id: envelope.id });
                if pending_ack.len() >= 32 {
                    let envelopes = std::mem::take(&mut pending_ack);
                    receiver.send(0, Body::Acknowledge(Acknowledge { envelopes })).await;
                }
            }
        }
        latencies
    });
    send_stream(&mut sender, &to, count, 1024, Some(rate), epoch).await;
    let mut latencies = receiving.await.expect("receiver task");
    latencies.sort_unstable();
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize] as f64;
    (percentile(0.50), percentile(0.99))
}

/// The ceiling: the same traffic through two chained loopback TCP forwarders that only copy.
async fn forwarder_rate(pairs: usize, per_pair: usize) -> f64 {
    async fn forwarder(to: SocketAddr) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("loopback");
        let address = listener.local_addr().expect("bound");
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut outbound = TcpStream::connect(to).await.expect("next hop");
                    let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        address
    }
    let sink = TcpListener::bind("127.0.0.1:0").await.expect("loopback");
    let sink_address = sink.local_addr().expect("bound");
    let second = forwarder(sink_address).await;
    let first = forwarder(second).await;
    let frame = encode_frame(&ClientFrame {
        request_id: 1,
        body: Some(Body::Send(envelope(&DeviceAddress::default(), &DeviceAddress::default(), 0, 0))),
    });
    let bytes_per_pair = frame.len() * per_pair;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..pairs {
        let frame = frame.clone();
        tasks.spawn(async move {
            let mut stream = TcpStream::connect(first).await.expect("forwarder");
            for _ in 0..per_pair {
                stream.write_all(&frame).await.expect("forwarder");
            }
            stream.flush().await.expect("forwarder");
            let mut done = [0u8; 1];
            let _ = stream.read(&mut done).await;
        });
    }
    for _ in 0..pairs {
        let (mut stream, _) = sink.accept().await.expect("forwarded connection");
        tasks.spawn(async move {
            let mut buffer = vec![0u8; 64 * 1024];
            let mut received = 0;
            while received < bytes_per_pair {
                let read = stream.read(&mut buffer).await.expect("sink");
                assert!(read > 0);
                received += read;
            }
            stream.write_all(&[1]).await.expect("sink");
        });
    }
    while tasks.join_next().await.is_some() {}
    (pairs * per_pair) as f64 / start.elapsed().as_secs_f64()
}

/// Milliseconds until every one of `members` (spread over the three apps) had a group message
/// sent once by a device on Green (the hub), and how many envelopes crossed app boundaries.
async fn fanout(federation: &LocalFederation, members: usize, tag: &str) -> (f64, u64) {
    let mut devices = Vec::with_capacity(members);
    for i in 0..members {
        let app = APPS[i % 3];
        devices.push(RawDevice::join(&device_link(federation, app), &format!("m{tag}{i}@{app}")).await);
    }
    let mut sender = RawDevice::join(&device_link(federation, "green"), &format!("sender{tag}@green")).await;
    let recipients: Vec<DeviceAddress> = devices.iter().map(|d| d.address.clone()).collect();
    let mut before = 0;
    for relay in &federation.relays {
        before += relay.inspect().await.expect("running").0.envelopes_forwarded;
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut device in devices {
        tasks.spawn(async move {
            receive(&mut device, 1).await;
        });
    }
    let group = GroupEnvelope {
        id: vec![7; 16].into(),
        sender: Some(sender.address.clone()),
        group_id: format!("g{tag}@green"),
        hub: "green".into(),
        recipients,
        content: vec![0x5a; ENVELOPE_CONTENT].into(),
        franking: Some(Franking { commitment: vec![0x3c; 32], ..Default::default() }),
        channel: false,
    };
    sender.send(99, Body::SendGroup(group)).await;
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64() * 1000.0;
    let mut after = 0;
    for relay in &federation.relays {
        after += relay.inspect().await.expect("running").0.envelopes_forwarded;
    }
    (elapsed, after - before)
}

/// One line per figure, as the other benchmarks print them (`ns_per_op` per message; rates and
/// counts in extra fields).
pub fn json_lines(figures: &RelayFigures) -> Vec<serde_json::Value> {
    use serde_json::json;
    let mut lines = vec![
        json!({"op": "relay_throughput", "impl": "switchboard-relay", "ns_per_op": (1e9 / figures.relay_per_sec).round(),
               "per_sec": figures.relay_per_sec.round(), "ratio_vs_forwarder": figures.relay_per_sec / figures.forwarder_per_sec}),
        json!({"op": "relay_throughput", "impl": "tcp-forwarder", "ns_per_op": (1e9 / figures.forwarder_per_sec).round(),
               "per_sec": figures.forwarder_per_sec.round()}),
    ];
    let one_node = figures.clusters.first().map(|one| one.per_sec);
    for ClusterRate { nodes, per_sec, redb_per_sec } in &figures.clusters {
        lines.push(json!({"op": format!("relay_cluster_throughput_{nodes}"), "impl": "switchboard-relay-postgres",
                          "ns_per_op": (1e9 / per_sec).round(), "per_sec": per_sec.round(), "nodes": nodes,
                          "redb_per_sec": redb_per_sec.round(), "ratio_vs_redb": per_sec / redb_per_sec,
                          "ratio_vs_one_node": one_node.map(|one| per_sec / one)}));
    }
    if let Some(ClusterRate { per_sec, redb_per_sec, .. }) = &figures.sharded {
        lines.push(json!({"op": "relay_sharded_throughput_2", "impl": "switchboard-relay-postgres",
                          "ns_per_op": (1e9 / per_sec).round(), "per_sec": per_sec.round(), "primaries": 2,
                          "redb_per_sec": redb_per_sec.round(), "ratio_vs_redb": per_sec / redb_per_sec,
                          "ratio_vs_one_node": one_node.map(|one| per_sec / one)}));
    }
    lines.extend([
        json!({"op": "relay_latency_p50", "impl": "switchboard-relay", "ns_per_op": figures.latency_p50_us * 1000.0,
               "at_per_sec": figures.latency_rate_per_sec.round()}),
        json!({"op": "relay_latency_p99", "impl": "switchboard-relay", "ns_per_op": figures.latency_p99_us * 1000.0,
               "at_per_sec": figures.latency_rate_per_sec.round()}),
    ]);
    for (members, ms, crossings) in &figures.fanout {
        lines.push(json!({"op": format!("group_fanout_{members}"), "impl": "switchboard-relay",
                          "ns_per_op": (ms * 1e6).round(), "apps": 3, "app_boundary_crossings": crossings}));
    }
    lines
}

/// A table of the figures, with the targets.
pub fn table(figures: &RelayFigures) -> String {
    let ratio = figures.relay_per_sec / figures.forwarder_per_sec;
    let mut out = String::new();
    out.push_str("| relay op | figure | target |\n|---|---:|---|\n");
    out.push_str(&format!("| relay_throughput (1 KiB, durable) | {:.0} msg/s | |\n", figures.relay_per_sec));
    out.push_str(&format!("| plain two-hop TCP forwarder | {:.0} msg/s | |\n", figures.forwarder_per_sec));
    out.push_str(&format!("| ratio relay / forwarder | {ratio:.3} | ≥ 0.25: {} |\n", if ratio >= 0.25 { "MET" } else { "MISSED" }));
    let one_node = figures.clusters.first().map(|one| one.per_sec);
    for ClusterRate { nodes, per_sec, redb_per_sec } in &figures.clusters {
        out.push_str(&format!(
            "| relay_cluster_throughput_{nodes} ({nodes} per app on PostgreSQL) | {per_sec:.0} msg/s, {:.3} × one node, {:.3} × redb ({redb_per_sec:.0} msg/s in the same rounds) | |\n",
            one_node.map_or(f64::NAN, |one| per_sec / one),
            per_sec / redb_per_sec,
        ));
    }
    if let Some(ClusterRate { per_sec, redb_per_sec, .. }) = &figures.sharded {
        out.push_str(&format!(
            "| relay_sharded_throughput_2 (1 per app, half the mailboxes on a second server) | {per_sec:.0} msg/s, {:.3} × one node, {:.3} × redb | |\n",
            one_node.map_or(f64::NAN, |one| per_sec / one),
            per_sec / redb_per_sec,
        ));
    }
    if figures.clusters.is_empty() {
        out.push_str("| relay_cluster_throughput_1, _2, _3 | not measured: PostgreSQL is not installed | |\n");
    }
    out.push_str(&format!(
        "| latency p50 / p99 at {:.0} msg/s (half of peak) | {:.2} ms / {:.2} ms | p99 < 10 ms: {} |\n",
        figures.latency_rate_per_sec,
        figures.latency_p50_us / 1000.0,
        figures.latency_p99_us / 1000.0,
        if figures.latency_p99_us < 10_000.0 { "MET" } else { "MISSED" }
    ));
    for (members, ms, crossings) in &figures.fanout {
        out.push_str(&format!("| group_fanout_{members} (3 apps) | {ms:.1} ms, {crossings} envelopes across app boundaries | |\n"));
    }
    out
}

/// The apps of the benchmark's federation.
const APPS: [&str; 3] = ["green", "blue", "red"];

/// Runs every relay benchmark once; `quick` makes it short.
pub async fn run(quick: bool) -> RelayFigures {
    let dir = tempfile::tempdir().expect("a temporary folder");
    // Every device of the benchmark registers from 127.0.0.1: the per-address limit would stop
    // it after a few; nothing else is raised. No taps: copying every frame is the demo's work,
    // not a relay's.
    let limits = RateLimits { registrations_per_source: u32::MAX, ..RateLimits::default() };
    let options = LocalOptions { rate_limits: limits, taps: false, ..LocalOptions::default() };
    let federation = LocalFederation::start_with(&APPS, dir.path(), options.clone()).await.expect("local federation");
    // Let the relays' links come up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (pairs, per_pair) = if quick { (8, 400) } else { (16, 2_000) };
    let mut figures = RelayFigures::default();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // Warm up, then measure the forwarder and the relays side by side (alternating).
    relay_rate(&federation, 2, 100, "w").await;
    let mut forwarder = Vec::new();
    let mut relays = Vec::new();
    for round in 0..3 {
        // The ceiling is cheap to measure at full size, and short runs of it are dominated by
        // connection set-up: always full size.
        forwarder.push(forwarder_rate(16, 2_000).await);
        relays.push(relay_rate(&federation, pairs, per_pair, &format!("t{round}")).await);
    }
    figures.forwarder_per_sec = median(forwarder);
    figures.relay_per_sec = median(relays);
    figures.latency_rate_per_sec = figures.relay_per_sec / 2.0;
    let count = if quick { 1_000 } else { 5_000 };
    let (p50, p99) = latency(&federation, figures.latency_rate_per_sec, count).await;
    (figures.latency_p50_us, figures.latency_p99_us) = (p50, p99);
    for (i, members) in [10usize, 100, 1000].into_iter().enumerate() {
        let (ms, crossings) = fanout(&federation, members, &format!("f{i}")).await;
        figures.fanout.push((members, ms, crossings));
    }
    // Last, the same relays on PostgreSQL (a server of the bench's own, a database per app and
    // node count), with 1, 2 and 3 nodes per app, alternated with those on redb: while the
    // figures above are measured, no server runs and none is being stopped or its files deleted.
    match postgres_server::installed_bindir() {
        Some(_) => {
            let (server, shard_server) = (postgres_server::Server::start(), postgres_server::Server::start());
            let mut clusters = Vec::new();
            for nodes in 1..=3 {
                let mut urls = std::collections::HashMap::new();
                for app in APPS {
                    server.sql(&format!("CREATE DATABASE relay_{app}_{nodes}"));
                    urls.insert(app.to_owned(), format!("host=127.0.0.1 port={} user=postgres dbname=relay_{app}_{nodes}", server.port));
                }
                let options = LocalOptions { storage: LocalStorage::Postgres(urls), nodes, ..options.clone() };
                let cluster = LocalFederation::start_with(&APPS, dir.path(), options).await.expect("local federation on PostgreSQL");
                tokio::time::sleep(Duration::from_millis(300)).await;
                relay_rate(&cluster, 2, 100, &format!("w{nodes}")).await;
                clusters.push(cluster);
            }
            // One node per app again, each app's mailboxes of buckets 128-255 on the second server.
            let (mut urls, mut shards) = (std::collections::HashMap::new(), std::collections::HashMap::new());
            for app in APPS {
                server.sql(&format!("CREATE DATABASE relay_{app}_sharded"));
                shard_server.sql(&format!("CREATE DATABASE relay_{app}_mail"));
                urls.insert(app.to_owned(), format!("host=127.0.0.1 port={} user=postgres dbname=relay_{app}_sharded", server.port));
                let url = format!("host=127.0.0.1 port={} user=postgres dbname=relay_{app}_mail", shard_server.port);
                shards.insert(app.to_owned(), vec![MailboxShard { url, buckets: 128..=255 }]);
            }
            let options = LocalOptions { storage: LocalStorage::Postgres(urls), mailbox_shards: shards, ..options.clone() };
            let sharded = LocalFederation::start_with(&APPS, dir.path(), options).await.expect("local federation on sharded PostgreSQL");
            tokio::time::sleep(Duration::from_millis(300)).await;
            relay_rate(&sharded, 2, 100, "ws").await;
            clusters.push(sharded);
            let mut baseline = Vec::new();
            let mut rates = vec![Vec::new(); clusters.len()];
            for round in 0..3 {
                baseline.push(relay_rate(&federation, pairs, per_pair, &format!("b{round}")).await);
                for (i, cluster) in clusters.iter().enumerate() {
                    rates[i].push(relay_rate(cluster, pairs, per_pair, &format!("c{}r{round}", i + 1)).await);
                }
            }
            let redb_per_sec = median(baseline);
            for (i, cluster) in clusters.into_iter().enumerate() {
                cluster.shutdown().await;
                let rate = ClusterRate { nodes: (i % 3) + 1, per_sec: median(std::mem::take(&mut rates[i])), redb_per_sec };
                if i < 3 {
                    figures.clusters.push(rate);
                } else {
                    figures.sharded = Some(rate);
                }
            }
        }
        None => eprintln!("PostgreSQL's server binaries are not installed: relay_cluster_throughput_1, _2 and _3 are not measured"),
    }
    federation.shutdown().await;
    figures
}
