//! The relay core without sockets: three apps' cores wired through an in-memory network, each
//! batch committed as a driver would, and nothing answered before it is durable.

use std::collections::{HashMap, VecDeque};

use switchboard_relay_core::{Action, ConnId, RateLimits, RelayCore};
use switchboard_relay_core::state::StoredState;
use switchboard_relay_core::storage::{MemoryStore, Store};
use switchboard_wire::Message;
use switchboard_wire::address::{MAX_USER_LEN, UserAddress};
use switchboard_wire::switchboard::{
    Acknowledge, Authenticate, ClientFrame, DeviceAddress, Envelope, EnvelopeKind, EnvelopeRef, ErrorCode, FederationFrame,
    GroupEnvelope, Register, ServerFrame, client_frame::Body, federation_frame, server_frame,
};

const APPS: [&str; 3] = ["green", "blue", "red"];

/// Three cores, their committed (durable) state, links between every pair, and client inboxes.
struct Net {
    cores: HashMap<String, RelayCore>,
    durable: HashMap<String, MemoryStore>,
    /// (app, conn) → (other app, its conn) for federation links.
    links: HashMap<(String, ConnId), (String, ConnId)>,
    inbox: HashMap<(String, ConnId), Vec<ServerFrame>>,
    closed: Vec<(String, ConnId)>,
    /// Accepted links: (app, conn) → the app that dialed it.
    accepted: HashMap<(String, ConnId), String>,
    next_conn: ConnId,
    limits: RateLimits,
}

impl Net {
    fn new() -> Net {
        Net::with_rate_limits(RateLimits::default())
    }

    /// One requester that takes a user's one-time prekeys many times over: the prekey share per
    /// requester out of the way, for tests of the stock itself.
    fn taking_every_prekey() -> Net {
        Net::with_rate_limits(RateLimits { prekey_fetches_per_requester: u32::MAX, prekey_fetches_per_app: u32::MAX, ..RateLimits::default() })
    }

    fn with_rate_limits(limits: RateLimits) -> Net {
        let mut net = Net {
            limits,
            cores: HashMap::new(),
            durable: HashMap::new(),
            links: HashMap::new(),
            inbox: HashMap::new(),
            closed: Vec::new(),
            accepted: HashMap::new(),
            next_conn: 1000,
        };
        for app in APPS {
            net.durable.insert(app.into(), MemoryStore::default());
            net.start(app);
        }
        net.connect_all();
        net
    }

    /// Starts `app`'s core from what is on its disk (a restart, if it ran before).
    fn start(&mut self, app: &str) {
        let peers = APPS.iter().map(|a| a.to_string());
        let store = self.durable[app].clone();
        let core = RelayCore::new(app, peers, store.state(), Box::new(store), rand::SeedableRng::seed_from_u64(7)).with_rate_limits(self.limits);
        self.cores.insert(app.into(), core);
    }

    /// What `app` has on disk.
    fn disk(&self, app: &str) -> StoredState {
        self.durable[app].state()
    }

    fn connect_all(&mut self) {
        for a in APPS {
            for b in APPS {
                if a != b {
                    self.link(a, b);
                }
            }
        }
    }

    /// `a` dials `b`.
    fn link(&mut self, a: &str, b: &str) {
        let (ca, cb) = (self.conn(), self.conn());
        self.links.insert((a.into(), ca), (b.into(), cb));
        self.links.insert((b.into(), cb), (a.into(), ca));
        self.accepted.insert((b.into(), cb), a.into());
        let accepted = self.cores.get_mut(b).unwrap().link_up(cb, a, false);
        self.run(b, accepted);
        let dialed = self.cores.get_mut(a).unwrap().link_up(ca, b, true);
        self.run(a, dialed);
    }

    fn conn(&mut self) -> ConnId {
        self.next_conn += 1;
        self.next_conn
    }

    /// Carries out actions, then commits pending batches until everything settles.
    fn run(&mut self, app: &str, actions: Vec<Action>) {
        let mut queue: VecDeque<(String, Action)> = actions.into_iter().map(|a| (app.to_owned(), a)).collect();
        loop {
            while let Some((from, action)) = queue.pop_front() {
                match action {
                    Action::ToClient { conn, frame } => self.inbox.entry((from, conn)).or_default().push(frame),
                    Action::Close { conn } => self.closed.push((from, conn)),
                    Action::StorageFailed(error) => panic!("a memory store failed: {error}"),
                    Action::ToLink { conn, frame } => {
                        let (to, their_conn) = self.links[&(from, conn)].clone();
                        let more = self.cores.get_mut(&to).unwrap().link_frame(their_conn, &frame.encode_to_vec());
                        queue.extend(more.into_iter().map(|a| (to.clone(), a)));
                    }
                }
            }
            let mut progressed = false;
            for app in APPS {
                if let Some(batch) = self.cores.get_mut(app).unwrap().take_batch() {
                    self.durable.get_mut(app).unwrap().commit(&batch.mutations).unwrap();
                    let released = self.cores.get_mut(app).unwrap().committed(batch.id);
                    queue.extend(released.into_iter().map(|a| (app.to_owned(), a)));
                    progressed = true;
                }
            }
            if !progressed && queue.is_empty() {
                return;
            }
        }
    }

    fn client(&mut self, app: &str) -> ConnId {
        self.client_from(app, None)
    }

    fn client_from(&mut self, app: &str, source: Option<std::net::IpAddr>) -> ConnId {
        let conn = self.conn();
        self.cores.get_mut(app).unwrap().client_connected(conn, source);
        conn
    }

    fn request(&mut self, app: &str, conn: ConnId, request_id: u64, body: Body) -> ServerFrame {
        let frame = ClientFrame { request_id, body: Some(body) };
        self.send_raw(app, conn, &frame.encode_to_vec());
        let inbox = self.inbox.entry((app.into(), conn)).or_default();
        let position = inbox.iter().position(|f| f.request_id == request_id).expect("an answer");
        inbox.remove(position)
    }

    fn send_raw(&mut self, app: &str, conn: ConnId, bytes: &[u8]) {
        let actions = self.cores.get_mut(app).unwrap().client_frame(conn, bytes);
        self.run(app, actions);
    }

    fn deliveries(&mut self, app: &str, conn: ConnId) -> Vec<Envelope> {
        let inbox = self.inbox.entry((app.into(), conn)).or_default();
        let (deliveries, rest): (Vec<_>, Vec<_>) = inbox.drain(..).partition(|f| f.request_id == 0);
        *inbox = rest;
        deliveries
            .into_iter()
            .filter_map(|f| match f.body {
                Some(server_frame::Body::Deliver(envelope)) => Some(envelope),
                _ => None,
            })
            .collect()
    }

    /// Registers and authenticates `user` (device 1) on its app; returns the connection.
    fn device(&mut self, user: &str) -> (String, ConnId, Vec<u8>) {
        let app = user.parse::<UserAddress>().unwrap().app().to_owned();
        let conn = self.client(&app);
        let answer = self.request(&app, conn, 1, Body::Register(Register { user: user.into(), device_id: 1 }));
        let Some(server_frame::Body::Registered(registered)) = answer.body else { panic!("{answer:?}") };
        let auth = Authenticate { user: user.into(), device_id: 1, credential: registered.credential.clone() };
        assert!(is_done(&self.request(&app, conn, 2, Body::Authenticate(auth))));
        (app, conn, registered.credential)
    }
}

fn address(user: &str) -> DeviceAddress {
    DeviceAddress { name: user.into(), device_id: 1 }
}

fn envelope(id: u8, from: &str, to: &str) -> Envelope {
    Envelope {
        id: vec![id; 16].into(),
        sender: Some(address(from)),
        recipient: Some(address(to)),
        kind: EnvelopeKind::SignalMessage as i32,
        content: vec![0xc1; 64].into(),
        group_id: String::new(),
        franking: None,
        channel: false,
    }
}

/// An acknowledgement of the envelope `id` (all bytes `id`) from `sender`, device 1.
fn ack(request_id: u64, sender: &str, id: u8) -> Vec<u8> {
    let envelope = EnvelopeRef { sender: Some(address(sender)), id: vec![id; 16].into() };
    ClientFrame { request_id, body: Some(Body::Acknowledge(Acknowledge { envelopes: vec![envelope] })) }.encode_to_vec()
}

fn is_done(frame: &ServerFrame) -> bool {
    matches!(frame.body, Some(server_frame::Body::Done(_)))
}

fn code(frame: &ServerFrame) -> Option<ErrorCode> {
    match &frame.body {
        Some(server_frame::Body::Failure(failure)) => ErrorCode::try_from(failure.code).ok(),
        _ => None,
    }
}

#[test]
fn a_message_to_another_app_is_stored_there_delivered_and_deleted_on_acknowledgement() {
    let mut net = Net::new();
    let (green, alice, _) = net.device("alice@green");
    let (blue, bob, _) = net.device("bob@blue");
    let answer = net.request(&green, alice, 10, Body::Send(envelope(1, "alice@green", "bob@blue")));
    assert!(is_done(&answer));
    let delivered = net.deliveries(&blue, bob);
    assert_eq!(delivered, vec![envelope(1, "alice@green", "bob@blue")]);
    // Stored on blue's disk until Bob acknowledges; green's outbox is empty (blue acknowledged).
    assert_eq!(net.disk("blue").mailboxes[&("bob@blue".into(), 1)].len(), 1);
    assert!(net.disk("green").outboxes.values().all(|o| o.is_empty()));
    net.send_raw(&blue, bob, &ack(11, "alice@green", 1));
    assert!(net.disk("blue").mailboxes[&("bob@blue".into(), 1)].is_empty());
}

#[test]
fn nothing_is_acknowledged_before_it_is_durable() {
    let mut net = Net::new();
    let (green, alice, _) = net.device("alice@green");
    net.device("carol@green");
    let core = net.cores.get_mut("green").unwrap();
    let frame = ClientFrame { request_id: 5, body: Some(Body::Send(envelope(2, "alice@green", "carol@green"))) };
    let immediate = core.client_frame(alice, &frame.encode_to_vec());
    assert!(immediate.is_empty(), "answered before commit: {immediate:?}");
    let batch = core.take_batch().unwrap();
    assert!(core.take_batch().is_none(), "one batch at a time");
    let released = core.committed(batch.id);
    assert!(released.iter().any(|a| matches!(a, Action::ToClient { conn, frame } if *conn == alice && is_done(frame))));
    let _ = green;
}

#[test]
fn an_offline_device_gets_its_mail_when_it_authenticates_and_after_a_relay_restart() {
    let mut net = Net::new();
    let (_, alice, _) = net.device("alice@green");
    let (blue, bob, credential) = net.device("bob@blue");
    let closed = net.cores.get_mut("blue").unwrap();
    closed.client_closed(bob);
    for id in 1..=3 {
        assert!(is_done(&net.request("green", alice, 20 + id as u64, Body::Send(envelope(id, "alice@green", "bob@blue")))));
    }
    // Blue restarts from what is on its disk.
    net.start("blue");
    net.connect_all();
    let conn = net.client(&blue);
    let auth = Authenticate { user: "bob@blue".into(), device_id: 1, credential };
    assert!(is_done(&net.request(&blue, conn, 1, Body::Authenticate(auth))));
    let ids: Vec<u8> = net.deliveries(&blue, conn).iter().map(|e| e.id[0]).collect();
    assert_eq!(ids, [1, 2, 3]);
}

#[test]
fn an_outbox_survives_a_broken_link_and_a_restart() {
    let mut net = Net::new();
    let (_, alice, _) = net.device("alice@green");
    let (blue, bob, _) = net.device("bob@blue");
    // Green's link to blue goes down.
    let green_to_blue: Vec<ConnId> = net.links.keys().filter(|(a, _)| a == "green").map(|(_, c)| *c).collect();
    for conn in green_to_blue {
        let actions = net.cores.get_mut("green").unwrap().link_closed(conn);
        net.run("green", actions);
    }
    assert!(is_done(&net.request("green", alice, 30, Body::Send(envelope(9, "alice@green", "bob@blue")))));
    assert!(net.deliveries(&blue, bob).is_empty());
    assert_eq!(net.disk("green").outboxes["blue"].len(), 1);
    // Green restarts; the link comes back; the envelope goes through exactly once.
    net.start("green");
    net.link("green", "blue");
    assert_eq!(net.deliveries(&blue, bob).len(), 1);
    assert!(net.disk("green").outboxes["blue"].is_empty());
}

#[test]
fn a_group_message_crosses_each_app_boundary_once_from_the_hub_and_from_a_follower() {
    for sender in ["alice@green", "bob@blue"] {
        let mut net = Net::new();
        let mut members = Vec::new();
        for (i, app) in APPS.iter().cycle().take(30).enumerate() {
            let user = format!("user{i}@{app}");
            let (app, conn, _) = net.device(&user);
            members.push((user, app, conn));
        }
        let (sender_app, sender_conn) = {
            let (app, conn, _) = net.device(sender);
            (app, conn)
        };
        let before: u64 = APPS.iter().map(|a| net.cores[*a].metrics().envelopes_forwarded).sum();
        let group = GroupEnvelope {
            id: vec![7; 16].into(),
            sender: Some(address(sender)),
            group_id: "g@green".into(),
            hub: "green".into(),
            recipients: members.iter().map(|(u, _, _)| address(u)).collect(),
            content: vec![0x33; 100].into(),
            franking: None,
            channel: false,
        };
        assert!(is_done(&net.request(&sender_app, sender_conn, 40, Body::SendGroup(group))));
        let after: u64 = APPS.iter().map(|a| net.cores[*a].metrics().envelopes_forwarded).sum();
        assert_eq!(after - before, 2, "sender {sender}");
        for (user, app, conn) in &members {
            let delivered = net.deliveries(app, *conn);
            assert_eq!(delivered.len(), 1, "{user}");
            assert_eq!(delivered[0].kind, EnvelopeKind::SenderKeyMessage as i32);
        }
    }
}

#[test]
fn misbehaving_clients_get_typed_errors() {
    let mut net = Net::new();
    let (green, alice, credential) = net.device("alice@green");
    net.device("bob@blue");
    // Not authenticated.
    let stranger = net.client(&green);
    let answer = net.request(&green, stranger, 1, Body::Send(envelope(1, "alice@green", "bob@blue")));
    assert_eq!(code(&answer), Some(ErrorCode::Unauthenticated));
    // A wrong credential.
    let mut wrong = credential.clone();
    wrong[0] ^= 1;
    let auth = Authenticate { user: "alice@green".into(), device_id: 1, credential: wrong };
    assert_eq!(code(&net.request(&green, stranger, 2, Body::Authenticate(auth))), Some(ErrorCode::Unauthenticated));
    // Posing as someone else.
    let answer = net.request(&green, alice, 3, Body::Send(envelope(1, "mallory@green", "bob@blue")));
    assert_eq!(code(&answer), Some(ErrorCode::Forbidden));
    // Unknown recipients, apps, oversized content, bad ids, registering on another app.
    assert_eq!(code(&net.request(&green, alice, 4, Body::Send(envelope(1, "alice@green", "nobody@green")))), Some(ErrorCode::UnknownRecipient));
    assert_eq!(code(&net.request(&green, alice, 5, Body::Send(envelope(1, "alice@green", "x@purple")))), Some(ErrorCode::UnknownRecipient));
    let mut big = envelope(1, "alice@green", "bob@blue");
    big.content = vec![0; 300 * 1024].into();
    assert_eq!(code(&net.request(&green, alice, 6, Body::Send(big))), Some(ErrorCode::TooLarge));
    let mut short_id = envelope(1, "alice@green", "bob@blue");
    short_id.id = vec![1; 3].into();
    assert_eq!(code(&net.request(&green, alice, 7, Body::Send(short_id))), Some(ErrorCode::Malformed));
    let register = Register { user: "eve@blue".into(), device_id: 1 };
    assert_eq!(code(&net.request(&green, alice, 8, Body::Register(register))), Some(ErrorCode::Forbidden));
    // Names that are not a user address (see switchboard_wire::address): too long, a device
    // written into the user, no name.
    let too_long = format!("{}@green", "e".repeat(MAX_USER_LEN));
    for (i, user) in [too_long.as_str(), "eve@green/1", "@green", "green"].into_iter().enumerate() {
        let register = Register { user: user.into(), device_id: 1 };
        assert_eq!(code(&net.request(&green, stranger, 100 + i as u64, Body::Register(register))), Some(ErrorCode::Forbidden), "{user}");
    }
    // Garbage closes the connection; other connections keep working.
    net.send_raw(&green, stranger, &[0xff, 0xff, 0xff]);
    assert!(net.closed.contains(&(green.clone(), stranger)));
    assert!(is_done(&net.request(&green, alice, 9, Body::Send(envelope(2, "alice@green", "bob@blue")))));
}

#[test]
fn an_app_cannot_forward_envelopes_in_another_apps_name() {
    let mut net = Net::new();
    net.device("bob@blue");
    // The link red dialed into blue carries an envelope claiming to come from green.
    let blue_conn = net
        .accepted
        .iter()
        .find(|((app, _), dialer)| app == "blue" && *dialer == "red")
        .map(|((_, conn), _)| *conn)
        .unwrap();
    let forged = switchboard_wire::switchboard::FederationFrame {
        request_id: 99,
        body: Some(switchboard_wire::switchboard::federation_frame::Body::Forward(envelope(5, "alice@green", "bob@blue"))),
    };
    let answer = net.cores.get_mut("blue").unwrap().link_frame(blue_conn, &forged.encode_to_vec());
    assert!(matches!(
        &answer[..],
        [Action::ToLink { frame: switchboard_wire::switchboard::FederationFrame { body: Some(switchboard_wire::switchboard::federation_frame::Body::Failure(f)), .. }, .. }]
            if f.code == ErrorCode::Forbidden as i32
    ));
    assert!(net.cores["blue"].state().mailboxes.values().all(|m| m.is_empty()));
}

#[test]
fn a_remote_refusal_of_a_fetch_reaches_the_client_and_touches_no_outbox() {
    let mut net = Net::new();
    let (green, alice, _) = net.device("alice@green");
    net.device("bob@blue");
    let fetch = switchboard_wire::switchboard::FetchBundles { user: "nobody@blue".into(), requester: None };
    let answer = net.request(&green, alice, 50, Body::FetchBundles(fetch));
    assert_eq!(code(&answer), Some(ErrorCode::UnknownRecipient));
    let blob = switchboard_wire::switchboard::FetchBlob { blob_id: "0011@blue".into() };
    assert_eq!(code(&net.request(&green, alice, 51, Body::FetchBlob(blob))), Some(ErrorCode::UnknownRecipient));
    // Sending still works and green's outboxes are empty, nothing deleted by mistake.
    assert!(is_done(&net.request(&green, alice, 52, Body::Send(envelope(3, "alice@green", "bob@blue")))));
    assert!(net.disk("green").outboxes.values().all(|o| o.is_empty()));
}

#[test]
fn no_one_can_add_a_device_to_someone_elses_account() {
    let mut net = Net::new();
    let (green, alice, _) = net.device("alice@green");
    // A stranger tries to register a second device for Alice.
    let stranger = net.client(&green);
    let register = Register { user: "alice@green".into(), device_id: 2 };
    assert_eq!(code(&net.request(&green, stranger, 1, Body::Register(register.clone()))), Some(ErrorCode::Unauthenticated));
    // Alice's own authenticated device may add it.
    let answer = net.request(&green, alice, 2, Body::Register(register));
    assert!(matches!(answer.body, Some(server_frame::Body::Registered(_))), "{answer:?}");
    // And an authenticated device of someone else may not add one for her.
    let (_, carol, _) = net.device("carol@green");
    let register = Register { user: "alice@green".into(), device_id: 3 };
    assert_eq!(code(&net.request(&green, carol, 3, Body::Register(register))), Some(ErrorCode::Unauthenticated));
}

#[test]
fn a_user_has_at_most_max_devices_per_user_devices() {
    // Past it, one bundle answer would outgrow a frame (64 post-quantum bundles are ~230 KiB).
    let mut net = Net::with_rate_limits(RateLimits { registrations_per_connection: u32::MAX, registrations_per_source: u32::MAX, ..RateLimits::default() });
    let (green, alice, _) = net.device("alice@green");
    let max = switchboard_wire::limits::MAX_DEVICES_PER_USER as u32;
    for device_id in 2..=max {
        let answer = net.request(&green, alice, 10 + u64::from(device_id), Body::Register(Register { user: "alice@green".into(), device_id }));
        assert!(matches!(answer.body, Some(server_frame::Body::Registered(_))), "device {device_id}: {answer:?}");
    }
    let one_more = Register { user: "alice@green".into(), device_id: max + 1 };
    assert_eq!(code(&net.request(&green, alice, 9, Body::Register(one_more))), Some(ErrorCode::TooLarge));
}

#[test]
fn only_the_app_asked_can_answer_and_only_about_what_was_asked() {
    let mut net = Net::new();
    let (green, alice, _) = net.device("alice@green");
    // Green asks blue for bob's bundles; red answers first with its own, then blue's link answers
    // about someone else. Neither reaches Alice.
    let core = net.cores.get_mut("green").unwrap();
    let frame = ClientFrame {
        request_id: 60,
        body: Some(Body::FetchBundles(switchboard_wire::switchboard::FetchBundles { user: "bob@blue".into(), requester: None })),
    };
    let actions = core.client_frame(alice, &frame.encode_to_vec());
    let Some(Action::ToLink { frame: request, .. }) = actions.first() else { panic!("{actions:?}") };
    let request_id = request.request_id;
    let dialed = |app: &str, net: &Net| {
        net.links.iter().find(|((a, c), (b, _))| a == "green" && b == app && !net.accepted.contains_key(&(a.clone(), *c))).map(|((_, c), _)| *c).unwrap()
    };
    let forged = |user: &str| switchboard_wire::switchboard::FederationFrame {
        request_id,
        body: Some(switchboard_wire::switchboard::federation_frame::Body::Bundles(switchboard_wire::switchboard::Bundles {
            user: user.into(),
            devices: Vec::new(),
        })),
    };
    let red_link = dialed("red", &net);
    let blue_link = dialed("blue", &net);
    let core = net.cores.get_mut("green").unwrap();
    assert!(core.link_frame(red_link, &forged("bob@blue").encode_to_vec()).is_empty(), "red answered for blue");
    assert!(core.link_frame(blue_link, &forged("mallory@blue").encode_to_vec()).is_empty(), "an answer about someone else");
    let genuine = core.link_frame(blue_link, &forged("bob@blue").encode_to_vec());
    assert!(matches!(&genuine[..], [Action::ToClient { conn, frame }] if *conn == alice && frame.request_id == 60));
    let _ = green;
}

#[test]
fn one_group_frame_cannot_make_the_relay_store_more_than_its_limit() {
    let mut net = Net::new();
    let (green, alice, _) = net.device("alice@green");
    let group = GroupEnvelope {
        id: vec![1; 16].into(),
        sender: Some(address("alice@green")),
        group_id: "g".into(),
        hub: "green".into(),
        recipients: (0..10_000).map(|i| address(&format!("u{i}@green"))).collect(),
        content: vec![0; 200 * 1024].into(),
        franking: None,
        channel: false,
    };
    let answer = net.request(&green, alice, 70, Body::SendGroup(group));
    assert_eq!(code(&answer), Some(ErrorCode::TooLarge));
}

#[test]
fn an_upload_sent_again_never_puts_back_a_prekey_already_handed_out() {
    use switchboard_wire::switchboard::{FetchBundles, PreKeyBundle, UploadBundles};
    let mut net = Net::taking_every_prekey();
    let (green, alice, _) = net.device("alice@green");
    let (_, bob, _) = net.device("bob@green");
    let bundle = |id: u32| PreKeyBundle { device_id: 1, pre_key_id: Some(id), pre_key: Some(vec![id as u8; 33]), ..Default::default() };
    let upload = Body::UploadBundles(UploadBundles { bundles: (1..=3).map(bundle).collect(), low_mark: 0 });
    assert!(is_done(&net.request(&green, alice, 3, upload.clone())));
    let mut handed = Vec::new();
    let fetch = |net: &mut Net, request_id| {
        let answer = net.request(&green, bob, request_id, Body::FetchBundles(FetchBundles { user: "alice@green".into(), requester: None }));
        let Some(server_frame::Body::Bundles(bundles)) = answer.body else { panic!("{answer:?}") };
        bundles.devices[0].bundle.as_ref().unwrap().pre_key_id
    };
    handed.push(fetch(&mut net, 4));
    // The same upload again (its answer was lost, or the frame repeated): prekey 1 stays gone.
    assert!(is_done(&net.request(&green, alice, 5, upload.clone())));
    for request_id in 6..9 {
        handed.push(fetch(&mut net, request_id));
    }
    assert_eq!(handed, vec![Some(1), Some(2), Some(3), None]);
    // Once all are gone, the old upload still puts none back; newer prekeys are taken.
    assert!(is_done(&net.request(&green, alice, 9, upload)));
    assert_eq!(fetch(&mut net, 10), None);
    let newer = Body::UploadBundles(UploadBundles { bundles: (4..=5).map(bundle).collect(), low_mark: 0 });
    assert!(is_done(&net.request(&green, alice, 11, newer)));
    assert_eq!([fetch(&mut net, 12), fetch(&mut net, 13), fetch(&mut net, 14)], [Some(4), Some(5), None]);
}

fn prekey_counts(net: &mut Net, app: &str, conn: ConnId) -> Vec<u32> {
    let inbox = net.inbox.entry((app.into(), conn)).or_default();
    let mut found = Vec::new();
    inbox.retain(|frame| match &frame.body {
        Some(server_frame::Body::PrekeyCount(count)) if frame.request_id == 0 => {
            found.push(count.remaining);
            false
        }
        _ => true,
    });
    found
}

fn bundle(prekey: Option<u32>, signed: u32) -> switchboard_wire::switchboard::PreKeyBundle {
    switchboard_wire::switchboard::PreKeyBundle {
        device_id: 1,
        pre_key_id: prekey,
        pre_key: prekey.map(|id| vec![id as u8; 33]),
        signed_pre_key_id: signed,
        signed_pre_key: vec![signed as u8; 33],
        ..Default::default()
    }
}

#[test]
fn a_device_is_told_once_as_its_one_time_prekeys_reach_its_low_mark() {
    use switchboard_wire::switchboard::{FetchBundles, UploadBundles};
    let mut net = Net::taking_every_prekey();
    let (green, alice, credential) = net.device("alice@green");
    let (_, bob, _) = net.device("bob@green");
    assert!(prekey_counts(&mut net, &green, alice).is_empty(), "no mark asked for yet");

    let mark = 5;
    let upload = Body::UploadBundles(UploadBundles { bundles: (1..=mark + 2).map(|id| bundle(Some(id), 1)).collect(), low_mark: mark });
    assert!(is_done(&net.request(&green, alice, 3, upload)));
    let mut told = Vec::new();
    for request_id in 4..8 {
        let answer = net.request(&green, bob, request_id, Body::FetchBundles(FetchBundles { user: "alice@green".into(), requester: None }));
        assert!(matches!(answer.body, Some(server_frame::Body::Bundles(_))), "{answer:?}");
        told.push(prekey_counts(&mut net, &green, alice));
    }
    assert_eq!(told, vec![vec![], vec![mark], vec![], vec![]], "once, as the stock reaches the mark");
    assert!(prekey_counts(&mut net, &green, bob).is_empty(), "only the device itself is told");

    // A device that comes back below the mark hears it as it authenticates.
    let again = net.client(&green);
    let auth = Authenticate { user: "alice@green".into(), device_id: 1, credential: credential.clone() };
    assert!(is_done(&net.request(&green, again, 9, Body::Authenticate(auth))));
    assert_eq!(prekey_counts(&mut net, &green, again), vec![mark - 2]);

    // Mark 0: never told.
    let upload = Body::UploadBundles(UploadBundles { bundles: vec![bundle(Some(100), 1)], low_mark: 0 });
    assert!(is_done(&net.request(&green, again, 10, upload)));
    let later = net.client(&green);
    let auth = Authenticate { user: "alice@green".into(), device_id: 1, credential };
    assert!(is_done(&net.request(&green, later, 11, Body::Authenticate(auth))));
    assert!(prekey_counts(&mut net, &green, later).is_empty());
}

#[test]
fn a_rotated_signed_prekey_replaces_the_old_one_in_every_bundle_and_a_last_resort_bundle_stays() {
    use switchboard_wire::switchboard::{FetchBundles, UploadBundles};
    let mut net = Net::taking_every_prekey();
    let (green, alice, _) = net.device("alice@green");
    let (_, bob, _) = net.device("bob@green");
    let fetch = |net: &mut Net, request_id: u64| -> (Option<u32>, u32) {
        let answer = net.request(&green, bob, request_id, Body::FetchBundles(FetchBundles { user: "alice@green".into(), requester: None }));
        let Some(server_frame::Body::Bundles(bundles)) = answer.body else { panic!("{answer:?}") };
        let bundle = bundles.devices[0].bundle.clone().unwrap();
        (bundle.pre_key_id, bundle.signed_pre_key_id)
    };
    // Only a last-resort bundle: it is handed out again and again.
    let upload = |bundles, request_id| (request_id, Body::UploadBundles(UploadBundles { bundles, low_mark: 1 }));
    let (id, body) = upload(vec![bundle(None, 1)], 3);
    assert!(is_done(&net.request(&green, alice, id, body)));
    assert_eq!([fetch(&mut net, 4), fetch(&mut net, 5)], [(None, 1), (None, 1)]);
    // One-time prekeys, then a rotation: what is left carries the new signed prekey.
    let (id, body) = upload(vec![bundle(Some(1), 1), bundle(Some(2), 1), bundle(Some(3), 1)], 6);
    assert!(is_done(&net.request(&green, alice, id, body)));
    assert_eq!(fetch(&mut net, 7), (Some(1), 1));
    let (id, body) = upload(vec![bundle(None, 2)], 8);
    assert!(is_done(&net.request(&green, alice, id, body)));
    assert_eq!([fetch(&mut net, 9), fetch(&mut net, 10), fetch(&mut net, 11)], [(Some(2), 2), (Some(3), 2), (None, 2)]);
    // An older signed prekey (an upload sent again) changes nothing.
    let (id, body) = upload(vec![bundle(None, 1)], 12);
    assert!(is_done(&net.request(&green, alice, id, body)));
    assert_eq!(fetch(&mut net, 13), (None, 2));
}

#[test]
fn an_upload_that_leaves_the_stock_at_or_below_the_mark_is_answered_with_the_count() {
    // Found in review: fetches that came while the device's replenishment was on its way left
    // the stock below the mark after it; no later fetch reached the mark, so it was never told.
    use switchboard_wire::switchboard::{FetchBundles, UploadBundles};
    let mut net = Net::taking_every_prekey();
    let (green, alice, _) = net.device("alice@green");
    let (_, bob, _) = net.device("bob@green");
    let upload = |ids: std::ops::RangeInclusive<u32>| Body::UploadBundles(UploadBundles { bundles: ids.map(|id| bundle(Some(id), 1)).collect(), low_mark: 4 });
    assert!(is_done(&net.request(&green, alice, 3, upload(1..=8))));
    for request_id in 10..18 {
        net.request(&green, bob, request_id, Body::FetchBundles(FetchBundles { user: "alice@green".into(), requester: None }));
    }
    assert_eq!(prekey_counts(&mut net, &green, alice), vec![4], "told as it reached the mark");
    // The replenishment made at 4 (four more) arrives when all eight are gone: 4, at the mark.
    assert!(is_done(&net.request(&green, alice, 20, upload(9..=12))));
    assert_eq!(prekey_counts(&mut net, &green, alice), vec![4]);
    // One that lifts the stock above the mark is answered with nothing more.
    assert!(is_done(&net.request(&green, alice, 21, upload(13..=16))));
    assert!(prekey_counts(&mut net, &green, alice).is_empty());
}

#[test]
fn the_relay_never_hands_out_an_older_signed_prekey_than_it_holds_nor_another_identity() {
    // Found in review: fresh one-time prekeys uploaded with an older signed prekey were stored
    // with it, rolling the device's bundles back.
    use switchboard_wire::switchboard::{FetchBundles, UploadBundles};
    let mut net = Net::new();
    let (green, alice, _) = net.device("alice@green");
    let (_, bob, _) = net.device("bob@green");
    let upload = |bundles| Body::UploadBundles(UploadBundles { bundles, low_mark: 0 });
    assert!(is_done(&net.request(&green, alice, 3, upload(vec![bundle(Some(1), 2)]))));
    assert!(is_done(&net.request(&green, alice, 4, upload(vec![bundle(Some(2), 1), bundle(Some(3), 1)]))));
    let mut handed = Vec::new();
    for request_id in 5..9 {
        let answer = net.request(&green, bob, request_id, Body::FetchBundles(FetchBundles { user: "alice@green".into(), requester: None }));
        let Some(server_frame::Body::Bundles(bundles)) = answer.body else { panic!("{answer:?}") };
        let bundle = bundles.devices[0].bundle.clone().unwrap();
        handed.push((bundle.pre_key_id, bundle.signed_pre_key_id));
    }
    assert_eq!(handed, vec![(Some(1), 2), (Some(2), 2), (Some(3), 2), (None, 2)]);
    let mut other = bundle(Some(9), 3);
    other.identity_key = vec![9; 33];
    assert_eq!(code(&net.request(&green, alice, 9, upload(vec![other]))), Some(ErrorCode::Forbidden));
}

#[test]
fn one_time_kem_prekeys_go_out_once_then_the_last_resort_bundle_every_time() {
    use switchboard_wire::switchboard::{FetchBundles, KemPreKey, UploadBundles};
    let kem = |id: u32| KemPreKey { id, public_key: vec![0x08; 1569], signature: vec![id as u8; 64] };
    let with_kem = |prekey: Option<u32>, kem_id: u32| {
        let mut bundle = bundle(prekey, 1);
        bundle.kem_pre_keys = vec![kem(kem_id)];
        bundle
    };
    // A relay whose prekey allowance for one requester is small: past it, the last-resort bundle.
    let mut net = Net::with_rate_limits(RateLimits { prekey_fetches_per_requester: 2, ..RateLimits::default() });
    let (green, alice, _) = net.device("alice@green");
    let (_, bob, _) = net.device("bob@green");
    let upload = Body::UploadBundles(UploadBundles {
        bundles: vec![with_kem(Some(1), 2), with_kem(Some(2), 4), with_kem(Some(3), 6), with_kem(None, 901)],
        low_mark: 0,
    });
    assert!(is_done(&net.request(&green, alice, 3, upload)));
    let mut handed = Vec::new();
    for request_id in 4..9 {
        let answer = net.request(&green, bob, request_id, Body::FetchBundles(FetchBundles { user: "alice@green".into(), requester: None }));
        let Some(server_frame::Body::Bundles(bundles)) = answer.body else { panic!("{answer:?}") };
        let bundle = bundles.devices[0].bundle.clone().unwrap();
        handed.push((bundle.pre_key_id, bundle.kem_pre_keys.iter().map(|k| k.id).collect::<Vec<_>>()));
    }
    assert_eq!(
        handed,
        vec![(Some(1), vec![2]), (Some(2), vec![4]), (None, vec![901]), (None, vec![901]), (None, vec![901])]
    );
    // Bundle 3 is still held, for another requester.
    let (_, carol, _) = net.device("carol@green");
    let answer = net.request(&green, carol, 4, Body::FetchBundles(FetchBundles { user: "alice@green".into(), requester: None }));
    let Some(server_frame::Body::Bundles(bundles)) = answer.body else { panic!("{answer:?}") };
    assert_eq!(bundles.devices[0].bundle.as_ref().unwrap().kem_pre_keys[0].id, 6);
    // A bundle over the size a client reads back is refused.
    let mut huge = with_kem(Some(4), 8);
    huge.suites = vec!["x".repeat(9 * 1024)];
    let answer = net.request(&green, alice, 9, Body::UploadBundles(UploadBundles { bundles: vec![huge], low_mark: 0 }));
    assert_eq!(code(&answer), Some(ErrorCode::TooLarge));
}

// ---- the hub's order of group changes ---------------------------------------------------------

/// An order for `group` at `epoch` on `prev`, for the state of body hash `body` and next order
/// key `next`, signed with `signer`.
fn order(group: &str, epoch: u64, prev: [u8; 32], body: [u8; 32], next: &ed25519_dalek::SigningKey, signer: &ed25519_dalek::SigningKey) -> Body {
    use ed25519_dalek::Signer;
    let order_key = next.verifying_key().to_bytes();
    let state = named(body, next);
    let signed = switchboard_wire::group_order::signed_bytes(group, epoch, &prev, &state, &order_key);
    Body::OrderChange(switchboard_wire::switchboard::OrderChange {
        group_id: group.into(),
        epoch,
        prev_hash: prev.to_vec(),
        state_hash: state.to_vec(),
        order_key: order_key.to_vec(),
        signature: signer.sign(&signed).to_bytes().to_vec(),
        body_hash: body.to_vec(),
    })
}

/// The hash naming the state of body hash `body` and order key `key`.
fn named(body: [u8; 32], key: &ed25519_dalek::SigningKey) -> [u8; 32] {
    switchboard_wire::group_order::state_hash(&body, &key.verifying_key().to_bytes())
}

fn head(frame: &ServerFrame) -> (u64, [u8; 32]) {
    match &frame.body {
        Some(server_frame::Body::GroupHead(head)) => (head.epoch, head.state_hash.as_slice().try_into().unwrap()),
        other => panic!("not a head: {other:?}"),
    }
}

#[test]
fn a_hub_orders_one_change_per_epoch_signed_by_the_order_key_of_the_state_before() {
    let mut net = Net::new();
    let (green, alice, _) = net.device("alice@green");
    let (blue, bob, _) = net.device("bob@blue");
    let keys: Vec<_> = (1..=3u8).map(|n| ed25519_dalek::SigningKey::from_bytes(&[n; 32])).collect();
    let (s0, s1) = (named([1; 32], &keys[0]), named([2; 32], &keys[1]));
    // Alice (on green) creates a group whose hub is blue: her relay asks blue.
    assert_eq!(head(&net.request(&green, alice, 10, order("g@blue", 0, [0; 32], [1; 32], &keys[0], &keys[0]))), (0, s0));
    // The next change, signed by the head's key, moves the head (and hands over to another key).
    assert_eq!(head(&net.request(&blue, bob, 11, order("g@blue", 1, s0, [2; 32], &keys[1], &keys[0]))), (1, s1));
    // A change that arrives second for the same epoch is not ordered: the answer names the winner.
    assert_eq!(head(&net.request(&green, alice, 12, order("g@blue", 1, s0, [9; 32], &keys[1], &keys[0]))), (1, s1));
    // The same order again (its answer lost) is answered as ordered, and changes nothing.
    assert_eq!(head(&net.request(&blue, bob, 13, order("g@blue", 1, s0, [2; 32], &keys[1], &keys[0]))), (1, s1));
    // The key of an earlier state no longer orders anything; nor does anyone else's.
    for signer in [&keys[0], &keys[2]] {
        let refused = net.request(&green, alice, 14, order("g@blue", 2, s1, [3; 32], &keys[2], signer));
        assert_eq!(code(&refused), Some(ErrorCode::Forbidden), "{refused:?}");
    }
    // A group nobody created, a second creation, and malformed orders: a short hash, and a key
    // other than the one the state names (the hub would keep a key the members never see).
    assert_eq!(code(&net.request(&blue, bob, 15, order("h@blue", 1, s0, [2; 32], &keys[1], &keys[0]))), Some(ErrorCode::UnknownRecipient));
    assert_eq!(head(&net.request(&blue, bob, 16, order("g@blue", 0, [0; 32], [7; 32], &keys[2], &keys[2]))), (1, s1));
    let Body::OrderChange(mut short) = order("g@blue", 2, s1, [3; 32], &keys[2], &keys[1]) else { unreachable!() };
    short.state_hash.pop();
    assert_eq!(code(&net.request(&blue, bob, 17, Body::OrderChange(short))), Some(ErrorCode::Malformed));
    let Body::OrderChange(mut hidden) = order("g@blue", 2, s1, [3; 32], &keys[2], &keys[1]) else { unreachable!() };
    let other_key = keys[0].verifying_key().to_bytes();
    let signed = switchboard_wire::group_order::signed_bytes("g@blue", 2, &s1, &hidden.state_hash, &other_key);
    hidden.order_key = other_key.to_vec();
    hidden.signature = ed25519_dalek::Signer::sign(&keys[1], &signed).to_bytes().to_vec();
    assert_eq!(code(&net.request(&blue, bob, 23, Body::OrderChange(hidden))), Some(ErrorCode::Malformed));
    // Anyone who asks learns the head, from any app; it is on the hub's disk, and only there.
    let fetch = |group: &str, epoch: Option<u64>| Body::FetchHead(switchboard_wire::switchboard::FetchHead { group_id: group.into(), epoch });
    assert_eq!(head(&net.request(&green, alice, 18, fetch("g@blue", None))), (1, s1));
    assert_eq!(code(&net.request(&green, alice, 19, fetch("h@blue", None))), Some(ErrorCode::UnknownRecipient));
    // Which state it ordered at an epoch it keeps; the head for any other.
    assert_eq!(head(&net.request(&green, alice, 20, fetch("g@blue", Some(0)))), (0, s0));
    assert_eq!(head(&net.request(&green, alice, 21, fetch("g@blue", Some(1)))), (1, s1));
    assert_eq!(head(&net.request(&green, alice, 22, fetch("g@blue", Some(7)))), (1, s1));
    assert_eq!(net.disk("blue").group_heads["g@blue"].state_hash, s1);
    assert!(net.disk("green").group_heads.is_empty());
}

#[test]
fn a_hub_answers_an_order_only_once_it_is_durable_and_keeps_it_across_a_restart() {
    let mut net = Net::new();
    let (blue, bob, _) = net.device("bob@blue");
    let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let s0 = named([1; 32], &key);
    let frame = ClientFrame { request_id: 5, body: Some(order("g@blue", 0, [0; 32], [1; 32], &key, &key)) };
    let core = net.cores.get_mut("blue").unwrap();
    assert!(core.client_frame(bob, &frame.encode_to_vec()).is_empty(), "answered before commit");
    let batch = core.take_batch().unwrap();
    assert!(batch.mutations.iter().any(|m| matches!(m, switchboard_relay_core::state::Mutation::PutGroupHead { .. })));
    let released = core.committed(batch.id);
    assert!(released.iter().any(|a| matches!(a, Action::ToClient { frame, .. } if head(frame) == (0, s0))));
    net.durable.get_mut("blue").unwrap().commit(&batch.mutations).unwrap();
    net.start("blue");
    net.connect_all();
    let (_, carol, _) = net.device("carol@blue");
    let fetch = Body::FetchHead(switchboard_wire::switchboard::FetchHead { group_id: "g@blue".into(), epoch: None });
    assert_eq!(head(&net.request(&blue, carol, 6, fetch)), (0, s0));
}

#[test]
fn a_hub_keeps_the_states_before_its_head_up_to_its_limit() {
    use switchboard_relay_core::MAX_HEAD_HISTORY;
    let mut net = Net::new();
    let (blue, bob, _) = net.device("bob@blue");
    let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let body = |epoch: u64| {
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&(epoch + 1).to_be_bytes());
        hash
    };
    let state = |epoch: u64| named(body(epoch), &key);
    let last = MAX_HEAD_HISTORY as u64 + 5;
    for epoch in 0..=last {
        let prev = if epoch == 0 { [0; 32] } else { state(epoch - 1) };
        assert_eq!(head(&net.request(&blue, bob, 100 + epoch, order("g@blue", epoch, prev, body(epoch), &key, &key))), (epoch, state(epoch)));
    }
    let fetch = |epoch| Body::FetchHead(switchboard_wire::switchboard::FetchHead { group_id: "g@blue".into(), epoch: Some(epoch) });
    let oldest_kept = last - MAX_HEAD_HISTORY as u64;
    assert_eq!(head(&net.request(&blue, bob, 1000, fetch(oldest_kept))), (oldest_kept, state(oldest_kept)));
    assert_eq!(head(&net.request(&blue, bob, 1001, fetch(oldest_kept - 1))), (last, state(last)), "forgotten: the head");
    assert_eq!(net.disk("blue").group_heads["g@blue"].recent_hashes.len(), MAX_HEAD_HISTORY);
}

#[test]
fn an_envelope_id_names_an_envelope_only_with_its_sender() {
    // Mallory is in Alice's group and saw the id of its next message (one id for all members):
    // her junk sent to Bob under that id first must not have Alice's dropped as a duplicate.
    let mut net = Net::new();
    let (blue, bob, _) = net.device("bob@blue");
    let (green, alice, _) = net.device("alice@green");
    let (red, mallory, _) = net.device("mallory@red");
    assert!(is_done(&net.request(&red, mallory, 10, Body::Send(envelope(9, "mallory@red", "bob@blue")))));
    let group = GroupEnvelope {
        id: vec![9; 16].into(),
        sender: Some(address("alice@green")),
        group_id: "g@green".into(),
        hub: "green".into(),
        recipients: vec![address("bob@blue"), address("mallory@red")],
        content: vec![0x33; 100].into(),
        franking: None,
        channel: false,
    };
    assert!(is_done(&net.request(&green, alice, 11, Body::SendGroup(group.clone()))));
    let senders: Vec<String> = net.deliveries(&blue, bob).into_iter().map(|e| e.sender.unwrap().name).collect();
    assert_eq!(senders, ["mallory@red", "alice@green"]);
    // Alice's own retry is one envelope, stored once.
    assert!(is_done(&net.request(&green, alice, 12, Body::SendGroup(group))));
    assert_eq!(net.disk("blue").mailboxes[&("bob@blue".into(), 1)].len(), 2);
    // Bob's acknowledgement of Mallory's leaves Alice's until he acknowledges hers.
    net.send_raw(&blue, bob, &ack(13, "mallory@red", 9));
    let left: Vec<String> =
        net.disk("blue").mailboxes[&("bob@blue".into(), 1)].values().map(|e| e.sender.clone()).collect();
    assert_eq!(left, ["alice@green"]);
    net.send_raw(&blue, bob, &ack(14, "alice@green", 9));
    assert!(net.disk("blue").mailboxes[&("bob@blue".into(), 1)].is_empty());
}

/// Relay `from` hands `to` a group frame on the link it dialed; `to`'s refusal, if it refused.
fn forward_group(net: &mut Net, from: &str, to: &str, group: GroupEnvelope) -> Option<ErrorCode> {
    let conn = net.accepted.iter().find(|((app, _), dialer)| app == to && *dialer == from).map(|((_, conn), _)| *conn).unwrap();
    let frame = FederationFrame { request_id: 77, body: Some(federation_frame::Body::ForwardGroup(group)) };
    let actions = net.cores.get_mut(to).unwrap().link_frame(conn, &frame.encode_to_vec());
    let refusal = actions.iter().find_map(|action| match action {
        Action::ToLink { frame: FederationFrame { body: Some(federation_frame::Body::Failure(f)), .. }, .. } => ErrorCode::try_from(f.code).ok(),
        _ => None,
    });
    net.run(to, actions);
    refusal
}

#[test]
fn only_a_groups_hub_hands_its_messages_to_other_apps() {
    let mut net = Net::new();
    let (blue, bob, _) = net.device("bob@blue");
    let group = |id: &str, hub: &str, sender: &str, tag: u8| GroupEnvelope {
        id: vec![tag; 16].into(),
        sender: Some(address(sender)),
        group_id: id.into(),
        hub: hub.into(),
        recipients: vec![address("bob@blue")],
        content: vec![tag; 10].into(),
        franking: None,
        channel: false,
    };
    // Red names itself the hub of green's group, in the name of a green user.
    assert!(forward_group(&mut net, "red", "blue", group("g@green", "red", "alice@green", 1)).is_some());
    // Red, hub of its own group, in the name of one of blue's own users (they send through blue).
    assert_eq!(forward_group(&mut net, "red", "blue", group("g@red", "red", "carol@blue", 2)), Some(ErrorCode::Forbidden));
    // Red, not the hub, hands its user's message straight to a follower.
    assert_eq!(forward_group(&mut net, "red", "blue", group("g@green", "green", "mallory@red", 3)), Some(ErrorCode::Forbidden));
    assert!(net.deliveries(&blue, bob).is_empty());
    // What a hub does: red relays a green member's message of red's group.
    assert_eq!(forward_group(&mut net, "red", "blue", group("g@red", "red", "alice@green", 4)), None);
    assert_eq!(net.deliveries(&blue, bob).len(), 1);
    // A device cannot name a hub other than the app its group's id names either.
    let (green, alice, _) = net.device("alice@green");
    let answer = net.request(&green, alice, 20, Body::SendGroup(group("g@red", "green", "alice@green", 5)));
    assert_eq!(code(&answer), Some(ErrorCode::Malformed));
}

#[test]
fn a_flood_from_strangers_never_keeps_a_contacts_mail_out() {
    use switchboard_relay_core::{MAILBOX_QUOTA, STRANGER_ALLOWANCE_PER_MAILBOX, STRANGER_ALLOWANCE_PER_SENDER};
    let mut net = Net::new();
    let (blue, bob, _) = net.device("bob@blue");
    let (green, alice, _) = net.device("alice@green");
    let (red, mallory, _) = net.device("mallory@red");
    let (_, carol, _) = net.device("carol@blue");
    // Bob wrote to Alice once: she is his contact, the others are strangers.
    assert!(is_done(&net.request(&blue, bob, 10, Body::Send(envelope(1, "bob@blue", "alice@green")))));
    let flood = |net: &mut Net, app: &str, conn: ConnId, from: &str, count: usize, first: u64| -> Vec<Option<ErrorCode>> {
        (0..count as u64)
            .map(|n| {
                let mut envelope = envelope(0, from, "bob@blue");
                envelope.id = [&(first + n).to_be_bytes()[..], &[0; 8]].concat().into();
                let answer = net.request(app, conn, 1000 + first + n, Body::Send(envelope));
                code(&answer)
            })
            .collect()
    };
    // A stranger on Bob's app: refused for now past its allowance.
    let answers = flood(&mut net, &blue, carol, "carol@blue", STRANGER_ALLOWANCE_PER_SENDER + 5, 0);
    assert!(answers[..STRANGER_ALLOWANCE_PER_SENDER].iter().all(Option::is_none));
    assert!(answers[STRANGER_ALLOWANCE_PER_SENDER..].iter().all(|code| *code == Some(ErrorCode::MailboxFull)));
    // A stranger on another app sends a whole mailbox's worth: Red takes it (its outbox), Blue
    // keeps the allowance and refuses the rest for now.
    flood(&mut net, &red, mallory, "mallory@red", MAILBOX_QUOTA, 100_000);
    // Many strangers: together no more than their allowance.
    for i in 0..(STRANGER_ALLOWANCE_PER_MAILBOX / STRANGER_ALLOWANCE_PER_SENDER + 2) {
        let user = format!("s{i}@green");
        let (_, conn, _) = net.device(&user);
        flood(&mut net, &green, conn, &user, STRANGER_ALLOWANCE_PER_SENDER, 200_000 + 1000 * i as u64);
    }
    let held = net.disk("blue").mailboxes[&("bob@blue".into(), 1)].len();
    assert_eq!(held, STRANGER_ALLOWANCE_PER_MAILBOX);
    // Alice's message gets in, once.
    assert!(is_done(&net.request(&green, alice, 20, Body::Send(envelope(7, "alice@green", "bob@blue")))));
    let from_alice = net.deliveries(&blue, bob).into_iter().filter(|e| e.sender.as_ref().unwrap().name == "alice@green").count();
    assert_eq!(from_alice, 1);
    // Bob writes back to Carol: she is a contact now, and her mail passes.
    assert!(is_done(&net.request(&blue, bob, 21, Body::Send(envelope(2, "bob@blue", "carol@blue")))));
    assert_eq!(flood(&mut net, &blue, carol, "carol@blue", 1, 500_000), [None]);
}

#[test]
fn registrations_are_limited_per_connection_and_per_source_address() {
    let limits = RateLimits::default();
    let mut net = Net::new();
    let source = Some(std::net::IpAddr::from([192, 0, 2, 7]));
    let register = |net: &mut Net, conn: ConnId, n: u32| {
        let answer = net.request("green", conn, u64::from(n), Body::Register(Register { user: format!("u{n}@green"), device_id: 1 }));
        code(&answer)
    };
    // One connection: a few, then refused (for now, and typed so).
    let conn = net.client_from("green", source);
    let answers: Vec<_> = (0..limits.registrations_per_connection + 1).map(|n| register(&mut net, conn, n)).collect();
    assert!(answers[..limits.registrations_per_connection as usize].iter().all(Option::is_none));
    assert_eq!(answers.last().unwrap(), &Some(ErrorCode::RateLimited));
    // New connections from the same address: the address's share for the window, no more.
    let mut registered = limits.registrations_per_connection;
    let mut refused = 0;
    for n in 100..1100 {
        let conn = net.client_from("green", source);
        match register(&mut net, conn, n) {
            None => registered += 1,
            Some(code) => {
                assert_eq!(code, ErrorCode::RateLimited);
                refused += 1;
            }
        }
    }
    assert_eq!(registered, limits.registrations_per_source);
    assert_eq!(refused, 1000 - (limits.registrations_per_source - limits.registrations_per_connection));
    assert_eq!(net.cores["green"].state().accounts.len() as u32, limits.registrations_per_source);
    // Another address is not held back; and once the window passes, this one may again.
    let other = net.client_from("green", Some(std::net::IpAddr::from([192, 0, 2, 8])));
    assert_eq!(register(&mut net, other, 2000), None);
    for _ in 0..limits.window_ticks {
        let actions = net.cores.get_mut("green").unwrap().tick(0);
        net.run("green", actions);
    }
    let conn = net.client_from("green", source);
    assert_eq!(register(&mut net, conn, 3000), None);
}

#[test]
fn no_one_drains_a_users_one_time_prekeys() {
    use switchboard_wire::switchboard::{FetchBundles, UploadBundles};
    let limits = RateLimits::default();
    let mut net = Net::new();
    let (green, alice, _) = net.device("alice@green");
    let upload = Body::UploadBundles(UploadBundles { bundles: (1..=100).map(|id| bundle(Some(id), 1)).collect(), low_mark: 0 });
    assert!(is_done(&net.request(&green, alice, 3, upload)));
    // A device on another app fetches Alice's bundles a hundred times.
    let (blue, mallory, _) = net.device("mallory@blue");
    let mut with_prekey = 0;
    for n in 0..100 {
        let answer = net.request(&blue, mallory, 10 + n, Body::FetchBundles(FetchBundles { user: "alice@green".into(), requester: None }));
        let Some(server_frame::Body::Bundles(bundles)) = answer.body else { panic!("{answer:?}") };
        let handed = bundles.devices[0].bundle.as_ref().unwrap();
        assert!(!handed.signed_pre_key.is_empty(), "a session can still start");
        with_prekey += usize::from(handed.pre_key.is_some());
    }
    assert_eq!(with_prekey, limits.prekey_fetches_per_requester as usize);
    let left = net.cores["green"].state().bundles[&("alice@green".into(), 1)].len();
    assert_eq!(left, 100 - with_prekey, "the rest of the stock is still there");
    // A device of Alice's own app: likewise, and its fetches are limited per window.
    let (_, eve, _) = net.device("eve@green");
    let mut rate_limited = 0;
    for n in 0..u64::from(limits.fetches_per_device) + 10 {
        let answer = net.request(&green, eve, 1000 + n, Body::FetchBundles(FetchBundles { user: "alice@green".into(), requester: None }));
        rate_limited += usize::from(code(&answer) == Some(ErrorCode::RateLimited));
    }
    assert_eq!(rate_limited, 10);
    let left_after = net.cores["green"].state().bundles[&("alice@green".into(), 1)].len();
    assert_eq!(left - left_after, limits.prekey_fetches_per_requester as usize);
}

#[test]
fn a_full_mailbox_is_handed_over_in_a_window_not_all_at_once() {
    use switchboard_relay_core::{DELIVERY_WINDOW, DELIVERY_WINDOW_BYTES};
    let mut net = Net::new();
    let (blue, bob, credential) = net.device("bob@blue");
    let (_, alice, _) = net.device("alice@blue");
    // Alice is Bob's contact (he wrote to her), so her mail is not held to a stranger's share.
    assert!(is_done(&net.request(&blue, bob, 10, Body::Send(envelope(1, "bob@blue", "alice@blue")))));
    net.cores.get_mut("blue").unwrap().client_closed(bob);
    let count = DELIVERY_WINDOW + 100;
    for n in 0..count {
        let mut envelope = envelope(0, "alice@blue", "bob@blue");
        envelope.id = [&(n as u64).to_be_bytes()[..], &[0; 8]].concat().into();
        assert!(is_done(&net.request(&blue, alice, 100 + n as u64, Body::Send(envelope))));
    }
    // Bob comes back: one window, oldest first, not the whole mailbox.
    let conn = net.client(&blue);
    let auth = Authenticate { user: "bob@blue".into(), device_id: 1, credential };
    assert!(is_done(&net.request(&blue, conn, 1, Body::Authenticate(auth))));
    let first = net.deliveries(&blue, conn);
    assert_eq!(first.len(), DELIVERY_WINDOW);
    assert_eq!(first[0].id[..8], 0u64.to_be_bytes());
    // Each acknowledgement makes room for as many more.
    let refs = first[..100].iter().map(|e| EnvelopeRef { sender: e.sender.clone(), id: e.id.clone() }).collect();
    net.send_raw(&blue, conn, &ClientFrame { request_id: 0, body: Some(Body::Acknowledge(Acknowledge { envelopes: refs })) }.encode_to_vec());
    let more = net.deliveries(&blue, conn);
    assert_eq!(more.len(), 100);
    assert_eq!(more[0].id[..8], (DELIVERY_WINDOW as u64).to_be_bytes());
    // Large envelopes, to Carol: the window counts bytes too.
    let (_, carol, credential) = net.device("carol@blue");
    assert!(is_done(&net.request(&blue, carol, 10, Body::Send(envelope(2, "carol@blue", "alice@blue")))));
    net.cores.get_mut("blue").unwrap().client_closed(carol);
    for n in 0..300 {
        let mut envelope = envelope(0, "alice@blue", "carol@blue");
        envelope.id = [&(n as u64).to_be_bytes()[..], &[1; 8]].concat().into();
        envelope.content = vec![0x42; 250 * 1024].into();
        assert!(is_done(&net.request(&blue, alice, 20_000 + n as u64, Body::Send(envelope))));
    }
    let conn = net.client(&blue);
    let auth = Authenticate { user: "carol@blue".into(), device_id: 1, credential };
    assert!(is_done(&net.request(&blue, conn, 1, Body::Authenticate(auth))));
    let handed = net.deliveries(&blue, conn);
    let bytes: usize = handed.iter().map(|e| e.content.len()).sum();
    assert!(handed.len() < DELIVERY_WINDOW && bytes <= DELIVERY_WINDOW_BYTES, "{} envelopes, {bytes} bytes", handed.len());
    assert!(bytes > DELIVERY_WINDOW_BYTES - 250 * 1024, "the window is used: {bytes}");
}

#[test]
fn a_mailbox_is_bounded_in_bytes_and_strangers_get_a_small_share_of_them() {
    use switchboard_relay_core::{MAILBOX_BYTES_QUOTA, STRANGER_ALLOWANCE_BYTES_PER_MAILBOX, STRANGER_ALLOWANCE_BYTES_PER_SENDER};
    let mut net = Net::new();
    let (blue, bob, _) = net.device("bob@blue");
    let green = "green".to_owned();
    let big = |from: &str, n: u64| {
        let mut envelope = envelope(0, from, "bob@blue");
        envelope.id = [&n.to_be_bytes()[..], &[2; 8]].concat().into();
        envelope.content = vec![0x42; 250 * 1024].into();
        Body::Send(envelope)
    };
    let held_bytes = |net: &Net| -> usize { net.cores["blue"].state().mailboxes[&("bob@blue".into(), 1)].values().map(|e| e.bytes).sum() };
    // Strangers, each under its count allowance: each no more than its byte share, and all
    // together no more than theirs.
    for i in 0..20 {
        let stranger = format!("s{i}@green");
        let (_, conn, _) = net.device(&stranger);
        for n in 0..8 {
            net.request(&green, conn, 100 + n, big(&stranger, 1000 * i as u64 + n));
        }
    }
    let mailbox = &net.cores["blue"].state().mailboxes[&("bob@blue".into(), 1)];
    for i in 0..20 {
        let from: usize = mailbox.values().filter(|e| e.sender == format!("s{i}@green")).map(|e| e.bytes).sum();
        assert!(from <= STRANGER_ALLOWANCE_BYTES_PER_SENDER, "{from}");
    }
    let from_strangers = held_bytes(&net);
    assert!(from_strangers <= STRANGER_ALLOWANCE_BYTES_PER_MAILBOX && from_strangers > STRANGER_ALLOWANCE_BYTES_PER_MAILBOX - 250 * 1024, "{from_strangers}");
    // A contact on Bob's app: up to the mailbox's byte quota, then refused for now.
    let (_, carol, _) = net.device("carol@blue");
    assert!(is_done(&net.request(&blue, bob, 11, Body::Send(envelope(2, "bob@blue", "carol@blue")))));
    let mut refused = None;
    for n in 0..1000 {
        let answer = net.request(&blue, carol, 5000 + n, big("carol@blue", 5000 + n));
        if let Some(code) = code(&answer) {
            refused = Some((n, code));
            break;
        }
    }
    let (sent, code) = refused.expect("the byte quota stops the contact too, far below 10,000 envelopes");
    assert_eq!(code, ErrorCode::MailboxFull);
    assert!(held_bytes(&net) <= MAILBOX_BYTES_QUOTA && held_bytes(&net) > MAILBOX_BYTES_QUOTA - 250 * 1024);
    assert!(sent < 600, "{sent}");
}

#[test]
fn a_passive_members_stranger_allowance_never_holds_a_groups_messages_back() {
    use switchboard_relay_core::STRANGER_ALLOWANCE_PER_SENDER;
    // Dave has never written to anyone and is offline; Alice posts to the group more than a
    // stranger's allowance. A relay does not know who is in a group: its mail is not held to it.
    let mut net = Net::new();
    let (green, alice, _) = net.device("alice@green");
    let (_, dave, _) = net.device("dave@blue");
    net.device("carol@blue");
    net.cores.get_mut("blue").unwrap().client_closed(dave);
    let count = STRANGER_ALLOWANCE_PER_SENDER + 10;
    for n in 0..count as u64 {
        let group = GroupEnvelope {
            id: [&n.to_be_bytes()[..], &[3; 8]].concat().into(),
            sender: Some(address("alice@green")),
            group_id: "g@green".into(),
            hub: "green".into(),
            recipients: vec![address("dave@blue"), address("carol@blue")],
            content: vec![0x33; 100].into(),
            franking: None,
            channel: false,
        };
        assert!(is_done(&net.request(&green, alice, 100 + n, Body::SendGroup(group))));
    }
    assert_eq!(net.disk("blue").mailboxes[&("dave@blue".into(), 1)].len(), count);
    assert_eq!(net.disk("blue").mailboxes[&("carol@blue".into(), 1)].len(), count);
}

#[test]
fn a_connection_authenticates_once_as_one_device_and_a_repeated_authentication_changes_nothing() {
    let mut net = Net::new();
    let (green, alice, alice_credential) = net.device("alice@green");
    let (_, conn, bob_credential) = net.device("bob@green");
    let _ = conn;
    let auth = Authenticate { user: "bob@green".into(), device_id: 1, credential: bob_credential };
    assert_eq!(code(&net.request(&green, alice, 5, Body::Authenticate(auth))), Some(ErrorCode::Forbidden));
    let wrong = Authenticate { user: "alice@green".into(), device_id: 1, credential: vec![0; 32] };
    assert_eq!(code(&net.request(&green, alice, 6, Body::Authenticate(wrong))), Some(ErrorCode::Forbidden));
    // The same authentication again (a request repeated on the way): answered as the first was,
    // with nothing handed over again.
    assert!(is_done(&net.request(&green, alice, 7, Body::Send(envelope(3, "alice@green", "alice@green")))));
    assert_eq!(net.deliveries(&green, alice).len(), 1);
    let again = Authenticate { user: "alice@green".into(), device_id: 1, credential: alice_credential };
    assert!(is_done(&net.request(&green, alice, 8, Body::Authenticate(again))));
    assert!(net.deliveries(&green, alice).is_empty(), "delivery did not start over");
    assert!(net.closed.is_empty());
}

#[test]
fn one_device_cannot_fill_the_outbox_its_app_shares_toward_another() {
    use switchboard_relay_core::{OUTBOX_QUOTA_PER_SENDER, STRANGER_ALLOWANCE_PER_SENDER};
    // Mallory writes to Bob, a stranger on Blue, far past his allowance: Blue refuses the rest
    // for now and Green keeps it to send again — up to Mallory's share of Green's outbox.
    let mut net = Net::new();
    let (green, mallory, _) = net.device("mallory@green");
    let (_, alice, _) = net.device("alice@green");
    let (blue, bob, _) = net.device("bob@blue");
    let (_, carol, _) = net.device("carol@blue");
    let _ = bob;
    let mut refused = None;
    for n in 0..(OUTBOX_QUOTA_PER_SENDER + STRANGER_ALLOWANCE_PER_SENDER + 10) as u64 {
        let mut envelope = envelope(0, "mallory@green", "bob@blue");
        envelope.id = [&n.to_be_bytes()[..], &[4; 8]].concat().into();
        if let Some(code) = code(&net.request(&green, mallory, 100 + n, Body::Send(envelope))) {
            refused = Some((n, code));
            break;
        }
    }
    let (sent, code) = refused.expect("refused once her share of the outbox is full");
    assert_eq!(code, ErrorCode::Unavailable);
    assert_eq!(sent as usize, OUTBOX_QUOTA_PER_SENDER + STRANGER_ALLOWANCE_PER_SENDER);
    // Alice, on the same app, still writes to Blue.
    assert!(is_done(&net.request(&green, alice, 10, Body::Send(envelope(1, "alice@green", "carol@blue")))));
    let to_carol = net.deliveries(&blue, carol);
    assert_eq!(to_carol.len(), 1);
}

#[test]
fn an_entry_refused_for_now_is_sent_again_later_each_time() {
    use switchboard_relay_core::{MAX_RETRY_TICKS, STRANGER_ALLOWANCE_PER_SENDER};
    let mut net = Net::new();
    let (green, mallory, _) = net.device("mallory@green");
    net.device("bob@blue");
    for n in 0..=STRANGER_ALLOWANCE_PER_SENDER as u64 {
        let mut envelope = envelope(0, "mallory@green", "bob@blue");
        envelope.id = [&n.to_be_bytes()[..], &[5; 8]].concat().into();
        assert!(is_done(&net.request(&green, mallory, 100 + n, Body::Send(envelope))));
    }
    // One entry is refused for now at Blue. Green sends it again after 2, 4, 8 … ticks, up to
    // MAX_RETRY_TICKS apart.
    let mut sent_at = Vec::new();
    for tick in 1..=200u64 {
        let actions = net.cores.get_mut("green").unwrap().tick(0);
        if actions.iter().any(|a| matches!(a, Action::ToLink { .. })) {
            sent_at.push(tick);
        }
        net.run("green", actions);
    }
    let waits: Vec<u64> = sent_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(sent_at.first(), Some(&2), "{sent_at:?}");
    assert!(waits.windows(2).all(|w| w[1] >= w[0]) && waits.iter().all(|w| *w <= MAX_RETRY_TICKS), "{waits:?}");
    assert_eq!(waits.last(), Some(&MAX_RETRY_TICKS), "{waits:?}");
    assert!(sent_at.len() as u64 <= 200 / MAX_RETRY_TICKS + 3, "not every tick: {sent_at:?}");
}

#[test]
fn a_blob_is_deleted_its_lifetime_after_it_was_stored_even_across_a_restart() {
    use switchboard_relay_core::BLOB_LIFETIME;
    use switchboard_wire::switchboard::{FetchBlob, UploadBlob};
    let mut net = Net::new();
    let (green, alice, credential) = net.device("alice@green");
    let stored_at = 1_800_000_000;
    let tick = |net: &mut Net, now: u64| {
        let actions = net.cores.get_mut("green").unwrap().tick(now);
        net.run("green", actions);
    };
    tick(&mut net, stored_at);
    let answer = net.request(&green, alice, 10, Body::UploadBlob(UploadBlob { blob: vec![7; 1000] }));
    let Some(server_frame::Body::Blob(stored)) = answer.body else { panic!("{answer:?}") };
    let fetch = |net: &mut Net, conn: ConnId, request_id: u64| {
        net.request(&green, conn, request_id, Body::FetchBlob(FetchBlob { blob_id: stored.blob_id.clone() }))
    };
    let fetched = fetch(&mut net, alice, 11);
    assert!(matches!(&fetched.body, Some(server_frame::Body::Blob(blob)) if blob.blob == [7; 1000]), "{fetched:?}");
    // Green restarts; the blob's time came back from its disk.
    net.start("green");
    net.connect_all();
    let conn = net.client(&green);
    let auth = Authenticate { user: "alice@green".into(), device_id: 1, credential };
    assert!(is_done(&net.request(&green, conn, 1, Body::Authenticate(auth))));
    let lifetime = BLOB_LIFETIME.as_secs();
    tick(&mut net, stored_at + lifetime);
    assert!(matches!(fetch(&mut net, conn, 12).body, Some(server_frame::Body::Blob(_))), "kept for its whole lifetime");
    tick(&mut net, stored_at + lifetime + 1);
    assert_eq!(code(&fetch(&mut net, conn, 13)), Some(ErrorCode::UnknownRecipient));
    assert_eq!(net.cores["green"].metrics().blobs_expired, 1);
    assert!(net.disk("green").blobs.is_empty(), "deleted from the disk too");
}

/// A store whose contents cannot be read.
struct Unreadable;

impl switchboard_relay_core::storage::Contents for Unreadable {
    fn mail(
        &self,
        _: &switchboard_relay_core::state::DeviceKey,
        _: &[u64],
    ) -> Result<Vec<(u64, Envelope)>, switchboard_relay_core::storage::StoreError> {
        Err(switchboard_relay_core::storage::StoreError::new("disk on fire"))
    }

    fn outbound(&self, _: &str, _: &[u64]) -> Result<Vec<(u64, FederationFrame)>, switchboard_relay_core::storage::StoreError> {
        Err(switchboard_relay_core::storage::StoreError::new("disk on fire"))
    }

    fn blob(&self, _: &str) -> Result<Option<Vec<u8>>, switchboard_relay_core::storage::StoreError> {
        Err(switchboard_relay_core::storage::StoreError::new("disk on fire"))
    }
}

#[test]
fn mail_that_cannot_be_read_back_stops_the_relay_instead_of_going_missing() {
    let mut core = RelayCore::new("blue", ["blue".to_owned()], StoredState::default(), Box::new(Unreadable), rand::SeedableRng::seed_from_u64(7));
    let commit = |core: &mut RelayCore, mut actions: Vec<Action>| {
        let batch = core.take_batch().unwrap();
        actions.extend(core.committed(batch.id));
        actions
    };
    let frame = |request_id, body| ClientFrame { request_id, body: Some(body) }.encode_to_vec();
    core.client_connected(1, None);
    let registered = core.client_frame(1, &frame(1, Body::Register(Register { user: "bob@blue".into(), device_id: 1 })));
    let answer = commit(&mut core, registered);
    let [Action::ToClient { frame: ServerFrame { body: Some(server_frame::Body::Registered(registered)), .. }, .. }] = &answer[..] else {
        panic!("{answer:?}")
    };
    let auth = Authenticate { user: "bob@blue".into(), device_id: 1, credential: registered.credential.clone() };
    core.client_frame(1, &frame(2, Body::Authenticate(auth)));
    let sent = core.client_frame(1, &frame(3, Body::Send(envelope(1, "bob@blue", "bob@blue"))));
    let actions = commit(&mut core, sent);
    assert!(actions.iter().any(|a| matches!(a, Action::StorageFailed(error) if error.contains("disk on fire"))), "{actions:?}");
    assert!(!actions.iter().any(|a| matches!(a, Action::ToClient { frame: ServerFrame { request_id: 0, .. }, .. })), "nothing delivered");
}

#[test]
fn a_link_that_comes_up_to_a_full_outbox_is_sent_a_window_and_the_rest_as_answers_come() {
    use switchboard_relay_core::FORWARD_WINDOW;
    let mut net = Net::new();
    let (_, alice, _) = net.device("alice@green");
    let (blue, bob, _) = net.device("bob@blue");
    // Bob wrote to Alice: her mail is a contact's, not held to the stranger allowance.
    assert!(is_done(&net.request(&blue, bob, 5, Body::Send(envelope(1, "bob@blue", "alice@green")))));
    let green_to_blue: Vec<ConnId> = net.links.keys().filter(|(a, _)| a == "green").map(|(_, c)| *c).collect();
    for conn in green_to_blue {
        let actions = net.cores.get_mut("green").unwrap().link_closed(conn);
        net.run("green", actions);
    }
    let waiting = FORWARD_WINDOW + 50;
    for n in 0..waiting as u64 {
        let mut envelope = envelope(0, "alice@green", "bob@blue");
        envelope.id = [&n.to_be_bytes()[..], &[3; 8]].concat().into();
        assert!(is_done(&net.request("green", alice, 100 + n, Body::Send(envelope))));
    }
    // Green dials Blue again: the first answer has not come, and only a window has gone out.
    let (ca, cb) = (net.conn(), net.conn());
    net.links.insert(("green".into(), ca), ("blue".into(), cb));
    net.links.insert(("blue".into(), cb), ("green".into(), ca));
    let accepted = net.cores.get_mut("blue").unwrap().link_up(cb, "green", false);
    net.run("blue", accepted);
    let sent = net.cores.get_mut("green").unwrap().link_up(ca, "blue", true);
    assert_eq!(sent.iter().filter(|a| matches!(a, Action::ToLink { .. })).count(), FORWARD_WINDOW);
    // As Blue acknowledges, the rest follows: every envelope reaches Bob, once.
    net.run("green", sent);
    let mut ids: Vec<Vec<u8>> = net.deliveries(&blue, bob).into_iter().map(|e| e.id.to_vec()).collect();
    assert_eq!(ids.len(), waiting);
    ids.dedup();
    assert_eq!(ids.len(), waiting);
    assert!(net.disk("green").outboxes["blue"].is_empty());
}

/// The connection `from` dialed to `to`.
fn dialed_link(net: &Net, from: &str, to: &str) -> ConnId {
    let dialed = net.links.iter().find(|((app, _), (other, their))| app == from && other == to && net.accepted.get(&(to.to_owned(), *their)).is_some_and(|d| d == from));
    dialed.map(|((_, conn), _)| *conn).expect("a link")
}

#[test]
fn an_answer_to_a_frame_not_yet_sent_is_ignored_not_taken_for_its_fate() {
    let mut net = Net::new();
    let (_, alice, _) = net.device("alice@green");
    let (blue, bob, _) = net.device("bob@blue");
    let link = dialed_link(&net, "green", "blue");
    let refusal = |request_id| {
        let failure = switchboard_wire::switchboard::Failure { code: ErrorCode::Unavailable as i32, detail: String::new() };
        FederationFrame { request_id, body: Some(federation_frame::Body::Failure(failure)) }.encode_to_vec()
    };
    let acknowledgement =
        |request_id| FederationFrame { request_id, body: Some(federation_frame::Body::Acknowledge(Acknowledge::default())) }.encode_to_vec();
    // Two frames for Blue, not yet committed (so not yet sent): Blue guesses their numbers and
    // answers for them — one "accepted", one "refused for now".
    let green = net.cores.get_mut("green").unwrap();
    for id in [1, 2] {
        let frame = ClientFrame { request_id: 10 + id as u64, body: Some(Body::Send(envelope(id, "alice@green", "bob@blue"))) };
        assert!(green.client_frame(alice, &frame.encode_to_vec()).is_empty());
    }
    let seqs: Vec<u64> = green.state().outboxes["blue"].keys().copied().collect();
    assert_eq!(seqs.len(), 2);
    assert!(green.link_frame(link, &acknowledgement(seqs[0])).is_empty());
    assert!(green.link_frame(link, &refusal(seqs[1])).is_empty());
    // Both go out once durable, and arrive.
    net.run("green", Vec::new());
    let ids: Vec<u8> = net.deliveries(&blue, bob).iter().map(|e| e.id[0]).collect();
    assert_eq!(ids, [1, 2]);
    assert!(net.disk("green").outboxes["blue"].is_empty());
}

/// A memory store that counts the envelopes it reads back.
struct Counting {
    store: MemoryStore,
    read: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl switchboard_relay_core::storage::Contents for Counting {
    fn mail(&self, device: &switchboard_relay_core::state::DeviceKey, seqs: &[u64]) -> Result<Vec<(u64, Envelope)>, switchboard_relay_core::storage::StoreError> {
        let read = self.store.mail(device, seqs)?;
        self.read.fetch_add(read.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(read)
    }

    fn outbound(&self, app: &str, seqs: &[u64]) -> Result<Vec<(u64, FederationFrame)>, switchboard_relay_core::storage::StoreError> {
        self.store.outbound(app, seqs)
    }

    fn blob(&self, id: &str) -> Result<Option<Vec<u8>>, switchboard_relay_core::storage::StoreError> {
        self.store.blob(id)
    }
}

#[test]
fn a_relay_reads_back_only_the_mail_it_hands_over_whatever_a_device_acknowledges() {
    use switchboard_relay_core::DELIVERY_WINDOW_BYTES;
    let mut store = MemoryStore::default();
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let contents = Box::new(Counting { store: store.clone(), read: read.clone() });
    let mut core = RelayCore::new("blue", ["blue".to_owned()], StoredState::default(), contents, rand::SeedableRng::seed_from_u64(7));
    let run = |core: &mut RelayCore, store: &mut MemoryStore, mut actions: Vec<Action>| {
        while let Some(batch) = core.take_batch() {
            store.commit(&batch.mutations).unwrap();
            actions.extend(core.committed(batch.id));
        }
        actions
    };
    let frame = |request_id, body| ClientFrame { request_id, body: Some(body) }.encode_to_vec();
    core.client_connected(1, None);
    let registered = core.client_frame(1, &frame(1, Body::Register(Register { user: "bob@blue".into(), device_id: 1 })));
    let answer = run(&mut core, &mut store, registered);
    let [Action::ToClient { frame: ServerFrame { body: Some(server_frame::Body::Registered(registered)), .. }, .. }] = &answer[..] else {
        panic!("{answer:?}")
    };
    let credential = registered.credential.clone();
    // Bob, offline, has two windows of large envelopes (from himself: no stranger allowance).
    let big = |n: u16| {
        let mut envelope = envelope(0, "bob@blue", "bob@blue");
        envelope.id = [&n.to_be_bytes()[..], &[1; 14]].concat().into();
        envelope.content = vec![0x42; 250 * 1024].into();
        envelope
    };
    let auth = Authenticate { user: "bob@blue".into(), device_id: 1, credential: credential.clone() };
    core.client_frame(1, &frame(2, Body::Authenticate(auth)));
    let count = 2 * DELIVERY_WINDOW_BYTES / (250 * 1024);
    let mut sent = Vec::new();
    for n in 0..count as u16 {
        sent.extend(core.client_frame(1, &frame(100 + n as u64, Body::Send(big(n)))));
        sent = run(&mut core, &mut store, sent);
    }
    core.client_closed(1);
    read.store(0, std::sync::atomic::Ordering::Relaxed);
    // Bob comes back: a window is handed over. He acknowledges the first two envelopes, and every
    // one he has not been handed but the first and the last of those.
    core.client_connected(2, None);
    let auth = Authenticate { user: "bob@blue".into(), device_id: 1, credential };
    let handed = core.client_frame(2, &frame(3, Body::Authenticate(auth)));
    let delivered = |actions: &[Action]| actions.iter().filter(|a| matches!(a, Action::ToClient { frame: ServerFrame { body: Some(server_frame::Body::Deliver(_)), .. }, .. })).count();
    let first = delivered(&handed);
    assert!(first > 0 && first < count, "{first} of {count}");
    let refs = [0, 1].into_iter().chain(first as u16 + 1..count as u16 - 1).map(|n| EnvelopeRef { sender: Some(address("bob@blue")), id: big(n).id });
    let ack = frame(4, Body::Acknowledge(Acknowledge { envelopes: refs.collect() }));
    let more = core.client_frame(2, &ack);
    assert_eq!(delivered(&more), 2, "the two envelopes left");
    assert_eq!(read.load(std::sync::atomic::Ordering::Relaxed), first + 2, "read back: what was handed over, no more");
}

/// SendToUser: every envelope or none, for exactly the user's devices with bundles; malformed
/// and forged ones refused whole; across apps, the recipient's relay decides and its answer
/// comes back to the device.
#[test]
fn a_send_to_a_user_is_taken_only_for_exactly_its_devices() {
    use switchboard_wire::switchboard::{DevicesChanged, SendToUser, UploadBundles};
    let mut net = Net::new();
    let (green, alice, _) = net.device("alice@green");
    let (_, carol, _) = net.device("carol@green");
    let (blue, bob, _) = net.device("bob@blue");
    for (app, conn) in [(&green, carol), (&blue, bob)] {
        let upload = Body::UploadBundles(UploadBundles { bundles: vec![bundle(Some(1), 1)], low_mark: 0 });
        assert!(is_done(&net.request(app, conn, 3, upload)));
    }
    let to = |user: &str, device_ids: &[u32]| {
        let envelopes = device_ids
            .iter()
            .enumerate()
            .map(|(n, id)| Envelope { recipient: Some(DeviceAddress { name: user.into(), device_id: *id }), ..envelope(40 + n as u8, "alice@green", user) })
            .collect();
        Body::SendToUser(SendToUser { user: user.into(), envelopes })
    };
    let changed = |frame: &ServerFrame| match &frame.body {
        Some(server_frame::Body::DevicesChanged(changed)) => Some(changed.clone()),
        _ => None,
    };
    // Naming a device the user does not have, or too few: nothing stored, and why.
    let answer = net.request(&green, alice, 10, to("carol@green", &[1, 2]));
    assert_eq!(changed(&answer), Some(DevicesChanged { user: "carol@green".into(), missing: vec![], extra: vec![2] }));
    let held = |net: &Net, app: &str, user: &str| net.disk(app).mailboxes.get(&(user.into(), 1)).map_or(0, |m| m.len());
    assert_eq!(held(&net, "green", "carol@green"), 0, "none stored");
    // Exactly its devices: stored.
    assert!(is_done(&net.request(&green, alice, 11, to("carol@green", &[1]))));
    assert_eq!(held(&net, "green", "carol@green"), 1);
    // Across apps, bob's relay answers, through alice's.
    assert_eq!(
        changed(&net.request(&green, alice, 12, to("bob@blue", &[1, 3]))),
        Some(DevicesChanged { user: "bob@blue".into(), missing: vec![], extra: vec![3] })
    );
    assert!(is_done(&net.request(&green, alice, 13, to("bob@blue", &[1]))));
    assert_eq!(held(&net, "blue", "bob@blue"), 1);
    assert!(net.disk("green").outboxes.values().all(|o| o.is_empty()), "forwarded at once, not kept");
    // Malformed: empty, a device twice, an envelope for someone else, a forged sender.
    let empty = Body::SendToUser(SendToUser { user: "carol@green".into(), envelopes: vec![] });
    assert_eq!(code(&net.request(&green, alice, 14, empty)), Some(ErrorCode::Malformed));
    let Body::SendToUser(mut twice) = to("carol@green", &[1, 1]) else { unreachable!() };
    assert_eq!(code(&net.request(&green, alice, 15, Body::SendToUser(twice.clone()))), Some(ErrorCode::Malformed));
    twice.envelopes.truncate(1);
    twice.envelopes[0].recipient = Some(address("bob@blue"));
    assert_eq!(code(&net.request(&green, alice, 16, Body::SendToUser(twice.clone()))), Some(ErrorCode::Malformed));
    twice.envelopes[0].recipient = Some(address("carol@green"));
    twice.envelopes[0].sender = Some(address("carol@green"));
    assert_eq!(code(&net.request(&green, alice, 17, Body::SendToUser(twice))), Some(ErrorCode::Forbidden));
    assert_eq!(held(&net, "green", "carol@green"), 1, "nothing more stored");
}

/// An envelope from `from` to `to` that commits to `content` under `key`.
fn franked(id: u8, from: &str, to: &str, key: &[u8; 32], content: &[u8]) -> Envelope {
    let commitment = switchboard_wire::franking::commit(key, content).to_vec();
    // Whatever stamp a device puts on, its relay puts its own.
    let franking = switchboard_wire::switchboard::Franking { commitment, stamped_at: 7, stamp: vec![0xee; 32] };
    Envelope { franking: Some(franking), ..envelope(id, from, to) }
}

fn report(delivered: &Envelope, recipient: &str, key: &[u8; 32], content: &[u8]) -> Body {
    Body::Report(switchboard_wire::switchboard::Report {
        sender: delivered.sender.clone(),
        recipient: recipient.into(),
        franking: delivered.franking.clone(),
        content: content.to_vec(),
        franking_key: key.to_vec(),
        group: false,
    })
}

#[test]
fn a_report_is_verified_by_the_senders_app_through_federation_and_a_forged_one_is_refused() {
    let mut net = Net::new();
    let (green, alice, _) = net.device("alice@green");
    let (blue, bob, _) = net.device("bob@blue");
    let (_, carol, _) = net.device("carol@blue");
    let key = [0x42; 32];
    assert!(is_done(&net.request(&green, alice, 10, Body::Send(franked(1, "alice@green", "bob@blue", &key, b"abuse")))));
    let delivered = net.deliveries(&blue, bob).pop().expect("delivered");
    let stamp = delivered.franking.clone().expect("franked").stamp;
    assert_ne!(stamp, vec![0xee; 32], "the sender's relay stamped it");
    // Bob reports it to his own app (blue), which asks green.
    assert!(is_done(&net.request(&blue, bob, 11, report(&delivered, "bob@blue", &key, b"abuse"))));
    assert_eq!(net.disk("blue").reports.len(), 1);
    // The same report again is answered the same, and kept once (found in review: one device
    // could fill the app's reports with one message).
    assert!(is_done(&net.request(&blue, bob, 12, report(&delivered, "bob@blue", &key, b"abuse"))));
    assert_eq!(net.disk("blue").reports.len(), 1);
    // Another content, another key, another sender, another time, another recipient: refused.
    let mut refused = vec![
        report(&delivered, "bob@blue", &key, b"abusE"),
        report(&delivered, "bob@blue", &[0x43; 32], b"abuse"),
        report(&Envelope { sender: Some(address("dave@green")), ..delivered.clone() }, "bob@blue", &key, b"abuse"),
    ];
    let mut later = delivered.clone();
    later.franking.as_mut().unwrap().stamped_at += 1;
    refused.push(report(&later, "bob@blue", &key, b"abuse"));
    for (n, body) in refused.into_iter().enumerate() {
        assert_eq!(code(&net.request(&blue, bob, 20 + n as u64, body)), Some(ErrorCode::Forbidden), "forgery {n}");
    }
    // A Sender Keys message goes as a group's only: sent one to one, it would be stamped for the
    // wrong recipient (found in review).
    let mut as_pairwise = franked(2, "alice@green", "bob@blue", &key, b"x");
    as_pairwise.kind = EnvelopeKind::SenderKeyMessage as i32;
    assert_eq!(code(&net.request(&green, alice, 40, Body::Send(as_pairwise))), Some(ErrorCode::Malformed));
    // Nobody reports their own message.
    assert!(is_done(&net.request(&blue, bob, 41, Body::Send(franked(3, "bob@blue", "bob@blue", &key, b"me")))));
    let own = Envelope { franking: net.deliveries(&blue, bob).into_iter().find_map(|e| e.franking), ..franked(3, "bob@blue", "bob@blue", &key, b"me") };
    assert_eq!(code(&net.request(&blue, bob, 42, report(&own, "bob@blue", &key, b"me"))), Some(ErrorCode::Forbidden));
    // Carol cannot report Bob's message as hers.
    assert_eq!(code(&net.request(&blue, carol, 30, report(&delivered, "carol@blue", &key, b"abuse"))), Some(ErrorCode::Forbidden));
    assert_eq!(code(&net.request(&blue, carol, 31, report(&delivered, "bob@blue", &key, b"abuse"))), Some(ErrorCode::Forbidden));
    // Nor pass it for a group message (found in review: any other address passed for a group).
    let Body::Report(mut as_group) = report(&delivered, "bob@blue", &key, b"abuse") else { unreachable!() };
    as_group.group = true;
    assert_eq!(code(&net.request(&blue, carol, 32, Body::Report(as_group))), Some(ErrorCode::Forbidden));
    assert_eq!(net.disk("blue").reports.len(), 1, "refused reports are not kept");
    assert_eq!(net.cores["blue"].metrics().reports_refused, 8);
}

#[test]
fn a_block_drops_everything_from_the_blocked_user_and_its_sender_learns_nothing() {
    let mut net = Net::new();
    let (green, mallory, _) = net.device("mallory@green");
    let (blue, bob, _) = net.device("bob@blue");
    let (_, alice, _) = net.device("alice@green");
    let block = switchboard_wire::switchboard::SetConsent { block: vec!["mallory@green".into()], ..Default::default() };
    assert!(is_done(&net.request(&blue, bob, 10, Body::SetConsent(block))));
    assert!(net.disk("blue").blocked["bob@blue"].contains("mallory@green"), "durable once answered");
    // Mallory is answered as for any delivery; Bob gets nothing of hers, and Alice's message.
    for id in 1..=70 {
        assert!(is_done(&net.request(&green, mallory, 100 + id as u64, Body::Send(envelope(id, "mallory@green", "bob@blue")))), "envelope {id}");
    }
    assert!(is_done(&net.request(&green, alice, 11, Body::Send(envelope(1, "alice@green", "bob@blue")))));
    assert_eq!(net.deliveries(&blue, bob), vec![envelope(1, "alice@green", "bob@blue")]);
    assert_eq!(net.cores["blue"].metrics().blocked_dropped, 70);
    // A device that does not exist is no such device to a blocked sender as to anyone (found in
    // review: the block answered first, and told her).
    let (_, eve, _) = net.device("eve@blue");
    let (_, carol, _) = net.device("carol@blue");
    let block_eve = switchboard_wire::switchboard::SetConsent { block: vec!["eve@blue".into()], ..Default::default() };
    assert!(is_done(&net.request(&blue, bob, 14, Body::SetConsent(block_eve))));
    for (conn, from) in [(eve, "eve@blue"), (carol, "carol@blue")] {
        let nobody = Envelope { recipient: Some(DeviceAddress { name: "bob@blue".into(), device_id: 4242 }), ..envelope(72, from, "bob@blue") };
        assert_eq!(code(&net.request(&blue, conn, 300, Body::Send(nobody))), Some(ErrorCode::UnknownRecipient), "{from}");
    }
    // Unblocked, her mail comes again.
    let unblock = switchboard_wire::switchboard::SetConsent { unblock: vec!["mallory@green".into()], ..Default::default() };
    assert!(is_done(&net.request(&blue, bob, 12, Body::SetConsent(unblock))));
    assert!(is_done(&net.request(&green, mallory, 200, Body::Send(envelope(99, "mallory@green", "bob@blue")))));
    assert_eq!(net.deliveries(&blue, bob), vec![envelope(99, "mallory@green", "bob@blue")]);
    // Malformed changes are refused whole.
    let bad = switchboard_wire::switchboard::SetConsent { block: vec!["not an address".into()], ..Default::default() };
    assert_eq!(code(&net.request(&blue, bob, 13, Body::SetConsent(bad))), Some(ErrorCode::Malformed));
    assert!(!net.disk("blue").blocked["bob@blue"].contains("not an address"));
}

// ---- channels and device removal --------------------------------------------------------------

fn open_channel(channel: &str, admins: &[&str]) -> Body {
    Body::OpenChannel(switchboard_wire::switchboard::OpenChannel { channel: channel.into(), admins: admins.iter().map(|a| a.to_string()).collect() })
}

fn follow_channel(channel: &str, follow: bool) -> Body {
    Body::FollowChannel(switchboard_wire::switchboard::FollowChannel { channel: channel.into(), follow })
}

/// A post `id` by `sender` (device 1) to `channel`.
fn post(id: u8, sender: &str, channel: &str) -> GroupEnvelope {
    GroupEnvelope {
        id: vec![id; 16].into(),
        sender: Some(address(sender)),
        group_id: channel.into(),
        hub: channel.parse::<UserAddress>().unwrap().app().into(),
        recipients: Vec::new(),
        content: vec![id; 48].into(),
        franking: None,
        channel: true,
    }
}

fn admins_of(frame: &ServerFrame) -> Option<Vec<String>> {
    match &frame.body {
        Some(server_frame::Body::ChannelInfo(info)) => Some(info.admins.clone()),
        _ => None,
    }
}

/// Relay `from` sends `to` a request on the link it dialed; `to`'s answers on it.
fn link_request(net: &mut Net, from: &str, to: &str, body: federation_frame::Body) -> Vec<FederationFrame> {
    let conn = net.accepted.iter().find(|((app, _), dialer)| app == to && *dialer == from).map(|((_, conn), _)| *conn).unwrap();
    let frame = FederationFrame { request_id: 88, body: Some(body) };
    let actions = net.cores.get_mut(to).unwrap().link_frame(conn, &frame.encode_to_vec());
    let mut answers: Vec<FederationFrame> = actions
        .iter()
        .filter_map(|action| match action {
            Action::ToLink { conn: c, frame } if *c == conn => Some(frame.clone()),
            _ => None,
        })
        .collect();
    // Answers held until durable go out as the batch commits: commit it here, and read them.
    let core = net.cores.get_mut(to).unwrap();
    if let Some(batch) = core.take_batch() {
        net.durable.get_mut(to).unwrap().commit(&batch.mutations).unwrap();
        let released = net.cores.get_mut(to).unwrap().committed(batch.id);
        answers.extend(released.iter().filter_map(|action| match action {
            Action::ToLink { conn: c, frame } if *c == conn => Some(frame.clone()),
            _ => None,
        }));
        let rest = released.into_iter().filter(|action| !matches!(action, Action::ToLink { conn: c, .. } if *c == conn)).collect();
        net.run(to, rest);
    }
    let others = actions.into_iter().filter(|action| !matches!(action, Action::ToLink { conn: c, .. } if *c == conn)).collect();
    net.run(to, others);
    answers
}

fn link_code(frame: &FederationFrame) -> Option<ErrorCode> {
    match &frame.body {
        Some(federation_frame::Body::Failure(failure)) => ErrorCode::try_from(failure.code).ok(),
        _ => None,
    }
}

/// Registers device `device_id` of `user` from its authenticated device on `from`, and
/// authenticates it on a connection of its own.
fn another_device(net: &mut Net, user: &str, device_id: u32, from: ConnId) -> (ConnId, Vec<u8>) {
    let app = user.parse::<UserAddress>().unwrap().app().to_owned();
    let answer = net.request(&app, from, 900 + u64::from(device_id), Body::Register(Register { user: user.into(), device_id }));
    let Some(server_frame::Body::Registered(registered)) = answer.body else { panic!("{answer:?}") };
    let conn = net.client(&app);
    let auth = Authenticate { user: user.into(), device_id, credential: registered.credential.clone() };
    assert!(is_done(&net.request(&app, conn, 2, Body::Authenticate(auth))));
    (conn, registered.credential)
}

/// Alice (green) opens news@green with Bob (blue) as another admin; Carol and Dave (green), Erin
/// and Frank (blue) and Gina (red) follow it.
struct Channel {
    net: Net,
    alice: ConnId,
    alice_credential: Vec<u8>,
    bob: ConnId,
    followers: Vec<(String, String, ConnId)>,
}

fn channel() -> Channel {
    let mut net = Net::new();
    let (_, alice, alice_credential) = net.device("alice@green");
    let (_, bob, _) = net.device("bob@blue");
    assert!(is_done(&net.request("green", alice, 10, open_channel("news@green", &["bob@blue", "bob@blue"]))));
    let mut followers = Vec::new();
    for user in ["carol@green", "dave@green", "erin@blue", "frank@blue", "gina@red"] {
        let (app, conn, _) = net.device(user);
        let answer = net.request(&app, conn, 11, follow_channel("news@green", true));
        assert_eq!(admins_of(&answer), Some(vec!["alice@green".to_string(), "bob@blue".to_string()]), "{user}: {answer:?}");
        followers.push((user.to_owned(), app, conn));
    }
    Channel { net, alice, alice_credential, bob, followers }
}

fn forwarded(net: &Net) -> u64 {
    APPS.iter().map(|app| net.cores[*app].metrics().envelopes_forwarded).sum()
}

#[test]
fn a_channel_post_by_an_admin_reaches_every_follower_once_and_crosses_each_app_boundary_once() {
    let Channel { mut net, alice, bob, followers, .. } = channel();
    // The hub knows which apps have followers, and only its own followers by device.
    let hub = net.disk("green");
    assert_eq!(hub.channel_apps["news@green"].iter().collect::<Vec<_>>(), ["blue", "red"]);
    assert_eq!(hub.followers["news@green"].iter().map(|(user, _)| user.as_str()).collect::<Vec<_>>(), ["carol@green", "dave@green"]);
    assert_eq!(net.disk("blue").followers["news@green"].len(), 2);
    assert_eq!(net.disk("red").followers["news@green"].len(), 1);
    let names: Vec<String> = followers.iter().map(|(user, _, _)| user.clone()).collect();
    // A post by the owner, at the hub: one copy to each other app with followers.
    let before = forwarded(&net);
    assert!(is_done(&net.request("green", alice, 20, Body::SendGroup(post(1, "alice@green", "news@green")))));
    assert_eq!(forwarded(&net) - before, 2, "one copy to blue, one to red");
    // A franked post by an admin on another app: to the hub, then one copy to each other app
    // (its own included, whose followers it reaches through the hub).
    let key = [0x42; 32];
    let commitment = switchboard_wire::franking::commit(&key, &[2; 48]).to_vec();
    let franking = switchboard_wire::switchboard::Franking { commitment, stamped_at: 0, stamp: vec![0xee; 32] };
    let before = forwarded(&net);
    assert!(is_done(&net.request("blue", bob, 21, Body::SendGroup(GroupEnvelope { franking: Some(franking), ..post(2, "bob@blue", "news@green") }))));
    assert_eq!(forwarded(&net) - before, 3, "blue to the hub, the hub to blue and red");
    assert_eq!(net.cores["green"].metrics().channel_posts, 2);
    for (user, app, conn) in &followers {
        let delivered = net.deliveries(app, *conn);
        assert_eq!(delivered.iter().map(|e| e.id[0]).collect::<Vec<_>>(), [1, 2], "{user}");
        for (envelope, sender) in delivered.iter().zip(["alice@green", "bob@blue"]) {
            // It names its sender and this follower, and no other follower anywhere.
            assert_eq!(envelope.recipient, Some(address(user)), "{user}");
            assert_eq!(envelope.sender, Some(address(sender)));
            assert_eq!(envelope.group_id, "news@green");
            assert!(envelope.channel);
            assert_eq!(envelope.kind, EnvelopeKind::SenderKeyMessage as i32);
            let bytes = envelope.encode_to_vec();
            for other in names.iter().filter(|other| *other != user) {
                assert!(!bytes.windows(other.len()).any(|w| w == other.as_bytes()), "{user}'s copy names {other}");
            }
        }
        // Stamped by Bob's relay, for the channel as a group.
        let stamp = delivered[1].franking.as_ref().expect("franked").stamp.clone();
        assert_ne!(stamp, vec![0xee; 32], "{user}");
    }
    let deliveries: u64 = APPS.iter().map(|app| net.cores[*app].metrics().channel_deliveries).sum();
    assert_eq!(deliveries, 10);
    // Nothing is left waiting anywhere.
    for app in APPS {
        assert!(net.disk(app).outboxes.values().all(|o| o.is_empty()), "{app}");
    }
}

#[test]
fn only_admins_post_and_a_follower_that_left_gets_nothing_more() {
    let Channel { mut net, alice, followers, .. } = channel();
    let conn_of = |name: &str| followers.iter().find(|(user, _, _)| user == name).map(|(_, app, conn)| (app.clone(), *conn)).unwrap();
    let (green, carol) = conn_of("carol@green");
    let (red, gina) = conn_of("gina@red");
    let (blue, erin) = conn_of("erin@blue");
    let (_, frank) = conn_of("frank@blue");
    // A follower at the hub is no admin.
    assert_eq!(code(&net.request(&green, carol, 30, Body::SendGroup(post(3, "carol@green", "news@green")))), Some(ErrorCode::Forbidden));
    // One on another app: its relay hands it on, the hub refuses it for good; no one gets it.
    assert!(is_done(&net.request(&red, gina, 31, Body::SendGroup(post(4, "gina@red", "news@green")))));
    assert!(net.disk("red").outboxes.values().all(|o| o.is_empty()));
    for (user, app, conn) in &followers {
        assert!(net.deliveries(app, *conn).is_empty(), "{user}");
    }
    // Erin leaves: Done, and the next post reaches everyone but her.
    assert!(is_done(&net.request(&blue, erin, 32, follow_channel("news@green", false))));
    assert!(!net.disk("blue").followers["news@green"].contains(&("erin@blue".into(), 1)));
    assert!(is_done(&net.request("green", alice, 33, Body::SendGroup(post(5, "alice@green", "news@green")))));
    assert!(net.deliveries(&blue, erin).is_empty());
    assert_eq!(net.deliveries(&blue, frank).len(), 1);
    // Frank leaves too: blue has no follower left and tells the hub, which sends blue no more.
    assert!(is_done(&net.request(&blue, frank, 34, follow_channel("news@green", false))));
    assert!(!net.disk("blue").followers.contains_key("news@green"));
    assert_eq!(net.disk("green").channel_apps["news@green"].iter().collect::<Vec<_>>(), ["red"]);
    let before = forwarded(&net);
    assert!(is_done(&net.request("green", alice, 35, Body::SendGroup(post(6, "alice@green", "news@green")))));
    assert_eq!(forwarded(&net) - before, 1, "to red only");
    assert!(net.deliveries(&blue, frank).is_empty());
    assert_eq!(net.deliveries(&red, gina).len(), 2);
    // A copy that reaches an app with no follower left (the hub missed its "none left") is
    // taken and dropped, and the hub is told again.
    let follow = federation_frame::Body::FollowChannel(switchboard_wire::switchboard::FollowChannel { channel: "news@green".into(), follow: true });
    link_request(&mut net, "blue", "green", follow);
    assert!(net.disk("green").channel_apps["news@green"].contains("blue"));
    let blue_before = net.cores["blue"].metrics().envelopes_stored;
    assert_eq!(forward_group(&mut net, "green", "blue", post(7, "alice@green", "news@green")), None);
    assert_eq!(net.cores["blue"].metrics().envelopes_stored, blue_before);
    assert_eq!(net.disk("green").channel_apps["news@green"].iter().collect::<Vec<_>>(), ["red"]);
    // Leaving twice is still Done.
    assert!(is_done(&net.request(&blue, frank, 36, follow_channel("news@green", false))));
}

#[test]
fn channels_admins_follows_and_following_apps_survive_a_restart() {
    let Channel { mut net, alice_credential, followers, .. } = channel();
    let channels = |net: &Net, app: &str| {
        let state = net.cores[app].state();
        (state.channels.clone(), state.followers.clone(), state.follows.clone(), state.channel_apps.clone())
    };
    let before: Vec<_> = APPS.iter().map(|app| channels(&net, app)).collect();
    for app in APPS {
        net.start(app);
    }
    net.connect_all();
    let after: Vec<_> = APPS.iter().map(|app| channels(&net, app)).collect();
    assert_eq!(before, after);
    assert_eq!(before.iter().map(|(c, _, _, _)| c.len()).sum::<usize>(), 1);
    // A post after the restart still reaches every follower's mailbox.
    let alice = net.client("green");
    let auth = Authenticate { user: "alice@green".into(), device_id: 1, credential: alice_credential };
    assert!(is_done(&net.request("green", alice, 1, Body::Authenticate(auth))));
    assert!(is_done(&net.request("green", alice, 40, Body::SendGroup(post(8, "alice@green", "news@green")))));
    for (user, app, _) in &followers {
        assert_eq!(net.disk(app).mailboxes[&(user.clone(), 1)].len(), 1, "{user}");
    }
}

#[test]
fn a_follower_whose_mailbox_is_full_misses_a_post_that_still_reaches_the_others() {
    use switchboard_relay_core::{MAILBOX_BYTES_QUOTA, MAX_ENVELOPE_CONTENT};
    let Channel { mut net, alice, followers, .. } = channel();
    let (carol, dave) = (followers[0].2, followers[1].2);
    let (_, filler, _) = net.device("filler@green");
    // Dave's mailbox full (in bytes), with group mail he does not read.
    for n in 0..(MAILBOX_BYTES_QUOTA / MAX_ENVELOPE_CONTENT) as u64 {
        let group = GroupEnvelope {
            id: [&n.to_be_bytes()[..], &[9; 8]].concat().into(),
            sender: Some(address("filler@green")),
            group_id: "g@green".into(),
            hub: "green".into(),
            recipients: vec![address("dave@green")],
            content: vec![0; MAX_ENVELOPE_CONTENT].into(),
            franking: None,
            channel: false,
        };
        assert!(is_done(&net.request("green", filler, 1000 + n, Body::SendGroup(group))), "{n}");
    }
    net.deliveries("green", dave);
    assert!(is_done(&net.request("green", alice, 50, Body::SendGroup(post(9, "alice@green", "news@green")))));
    assert_eq!(net.cores["green"].metrics().channel_posts_skipped_full, 1);
    assert!(net.deliveries("green", dave).is_empty());
    assert_eq!(net.deliveries("green", carol).len(), 1);
    for (user, app, conn) in &followers[2..] {
        assert_eq!(net.deliveries(app, *conn).len(), 1, "{user}");
    }
}

#[test]
fn hostile_channel_frames_are_refused() {
    let Channel { mut net, alice, bob, followers, .. } = channel();
    let (_, _, carol) = followers[0].clone();
    let (_, _, erin) = followers[2].clone();
    // A post that names recipients.
    let named = GroupEnvelope { recipients: vec![address("carol@green")], ..post(1, "alice@green", "news@green") };
    assert_eq!(code(&net.request("green", alice, 60, Body::SendGroup(named.clone()))), Some(ErrorCode::Malformed));
    assert_eq!(forward_group(&mut net, "blue", "green", GroupEnvelope { sender: Some(address("bob@blue")), ..named }), Some(ErrorCode::Malformed));
    // A hub that is not the app the channel names; a channel that does not exist.
    let elsewhere = GroupEnvelope { hub: "blue".into(), ..post(2, "alice@green", "news@green") };
    assert_eq!(code(&net.request("green", alice, 61, Body::SendGroup(elsewhere))), Some(ErrorCode::Malformed));
    assert_eq!(code(&net.request("green", alice, 62, Body::SendGroup(post(3, "alice@green", "nope@green")))), Some(ErrorCode::UnknownRecipient));
    // A one-to-one envelope that passes for a channel's post, from a device or another app.
    let pretending = Envelope { channel: true, group_id: "news@green".into(), ..envelope(9, "alice@green", "carol@green") };
    assert_eq!(code(&net.request("green", alice, 72, Body::Send(pretending.clone()))), Some(ErrorCode::Malformed));
    let pretending = Envelope { sender: Some(address("bob@blue")), ..pretending };
    let answers = link_request(&mut net, "blue", "green", federation_frame::Body::Forward(pretending));
    assert_eq!(answers.iter().map(link_code).collect::<Vec<_>>(), [Some(ErrorCode::Malformed)]);
    // Follows of channels that do not exist, here and at another app: refused, nothing kept.
    assert_eq!(code(&net.request("green", carol, 63, follow_channel("nope@green", true))), Some(ErrorCode::UnknownRecipient));
    assert_eq!(code(&net.request("blue", erin, 64, follow_channel("nope@green", true))), Some(ErrorCode::UnknownRecipient));
    assert_eq!(code(&net.request("blue", erin, 65, follow_channel("not a channel", true))), Some(ErrorCode::Malformed));
    assert!(!net.disk("blue").followers.contains_key("nope@green"));
    assert!(!net.disk("green").channel_apps.contains_key("nope@green"));
    // Too many admins, a malformed one, another app's channel, someone else's channel.
    let many: Vec<String> = (0..32).map(|n| format!("admin{n}@red")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(code(&net.request("green", alice, 66, open_channel("big@green", &many))), Some(ErrorCode::TooLarge), "32 and the owner");
    assert!(is_done(&net.request("green", alice, 67, open_channel("big@green", &many[..31]))));
    assert_eq!(net.disk("green").channels["big@green"].admins.len(), 32);
    let mut over = many.clone();
    over.push("alice@green");
    assert_eq!(code(&net.request("green", alice, 68, open_channel("big@green", &over))), Some(ErrorCode::TooLarge));
    assert_eq!(code(&net.request("green", alice, 69, open_channel("big@green", &["not an address"]))), Some(ErrorCode::Malformed));
    assert_eq!(code(&net.request("blue", bob, 70, open_channel("news@green", &[]))), Some(ErrorCode::UnknownRecipient));
    assert_eq!(code(&net.request("green", carol, 71, open_channel("news@green", &["carol@green"]))), Some(ErrorCode::Forbidden));
    assert_eq!(net.disk("green").channels["news@green"].admins.len(), 2, "unchanged");
    // A copy of a post from an app that is not the channel's hub (red, in the name of its own
    // user and of the hub's): refused, nothing delivered.
    assert_eq!(forward_group(&mut net, "red", "blue", post(4, "mallory@red", "news@green")), Some(ErrorCode::Forbidden));
    assert_eq!(forward_group(&mut net, "red", "blue", post(5, "alice@green", "news@green")), Some(ErrorCode::Forbidden));
    // To the hub, a post in the name of another app's admin.
    assert_eq!(forward_group(&mut net, "red", "green", post(6, "bob@blue", "news@green")), Some(ErrorCode::Forbidden));
    for (user, app, conn) in &followers {
        assert!(net.deliveries(app, *conn).is_empty(), "{user}");
    }
    // Follows from another app: of a channel not on the hub's app, or unknown there.
    for channel in ["x@blue", "nope@green"] {
        let follow = switchboard_wire::switchboard::FollowChannel { channel: channel.into(), follow: true };
        let answers = link_request(&mut net, "red", "green", federation_frame::Body::FollowChannel(follow));
        assert_eq!(answers.iter().map(link_code).collect::<Vec<_>>(), [Some(ErrorCode::UnknownRecipient)], "{channel}");
    }
    // A genuine one is answered with the channel once durable.
    let follow = switchboard_wire::switchboard::FollowChannel { channel: "big@green".into(), follow: true };
    let answers = link_request(&mut net, "red", "green", federation_frame::Body::FollowChannel(follow));
    assert!(matches!(&answers[..], [FederationFrame { body: Some(federation_frame::Body::ChannelInfo(info)), .. }] if info.admins.len() == 32), "{answers:?}");
}

#[test]
fn device_one_removes_another_device_which_then_gets_and_reads_nothing() {
    use switchboard_wire::switchboard::{DevicesChanged, FetchBundles, PreKeyBundle, RemoveDevice, SendToUser, UploadBundles};
    let mut net = Net::new();
    let (green, one, _) = net.device("alice@green");
    let (two, two_credential) = another_device(&mut net, "alice@green", 2, one);
    let (three, _) = another_device(&mut net, "alice@green", 3, one);
    let (blue, bob, _) = net.device("bob@blue");
    for (device_id, conn) in [(1, one), (2, two), (3, three)] {
        let upload = Body::UploadBundles(UploadBundles { bundles: vec![PreKeyBundle { device_id, ..bundle(Some(1), 1) }], low_mark: 0 });
        assert!(is_done(&net.request(&green, conn, 3, upload)));
    }
    // Device 2 follows a channel and has mail waiting.
    let (_, carol, _) = net.device("carol@green");
    assert!(is_done(&net.request(&green, carol, 4, open_channel("news@green", &[]))));
    assert!(admins_of(&net.request(&green, two, 5, follow_channel("news@green", true))).is_some());
    let to_two = Envelope { recipient: Some(DeviceAddress { name: "alice@green".into(), device_id: 2 }), ..envelope(1, "bob@blue", "alice@green") };
    assert!(is_done(&net.request(&blue, bob, 6, Body::Send(to_two.clone()))));
    assert_eq!(net.disk("green").mailboxes[&("alice@green".into(), 2)].len(), 1);
    // Only device 1 registers further devices: a device it may remove leaves none behind.
    let register = Body::Register(Register { user: "alice@green".into(), device_id: 7 });
    assert_eq!(code(&net.request(&green, two, 9, register)), Some(ErrorCode::Unauthenticated));
    assert!(!net.disk("green").accounts.contains_key(&("alice@green".into(), 7)));
    // Only device 1 removes, and neither itself nor a device that does not exist.
    let remove = |device_id| Body::RemoveDevice(RemoveDevice { device_id });
    assert_eq!(code(&net.request(&green, two, 10, remove(1))), Some(ErrorCode::Forbidden));
    assert_eq!(code(&net.request(&green, two, 11, remove(3))), Some(ErrorCode::Forbidden));
    assert_eq!(code(&net.request(&green, one, 12, remove(1))), Some(ErrorCode::Malformed));
    assert_eq!(code(&net.request(&green, one, 13, remove(9))), Some(ErrorCode::UnknownRecipient));
    // Nor a device of another user.
    assert_eq!(code(&net.request(&green, carol, 14, remove(2))), Some(ErrorCode::UnknownRecipient));
    assert!(net.disk("green").accounts.contains_key(&("alice@green".into(), 2)));
    // Device 1 removes device 2: its connection is closed and reads nothing more.
    net.deliveries(&green, two);
    assert!(is_done(&net.request(&green, one, 15, remove(2))));
    assert!(net.closed.contains(&("green".into(), two)));
    net.send_raw(&green, two, &ClientFrame { request_id: 16, body: Some(follow_channel("news@green", true)) }.encode_to_vec());
    assert!(net.inbox.get(&("green".into(), two)).is_none_or(|inbox| inbox.is_empty()), "answered a removed device");
    assert_eq!(code(&net.request(&green, carol, 17, Body::SendGroup(post(2, "carol@green", "news@green")))), None);
    assert!(net.deliveries(&green, two).is_empty());
    // Its credential, bundles, mailbox and follows are gone, also after a restart.
    for restarted in [false, true] {
        if restarted {
            net.start("green");
            net.connect_all();
        }
        let disk = net.disk("green");
        let device: (String, u32) = ("alice@green".into(), 2);
        assert!(!disk.accounts.contains_key(&device) && !disk.bundles.contains_key(&device) && !disk.mailboxes.contains_key(&device));
        assert!(!disk.follows.contains_key(&device) && !disk.followers.contains_key("news@green"));
        let conn = net.client(&green);
        let auth = Authenticate { user: "alice@green".into(), device_id: 2, credential: two_credential.clone() };
        assert_eq!(code(&net.request(&green, conn, 1, Body::Authenticate(auth))), Some(ErrorCode::Unauthenticated), "restarted: {restarted}");
    }
    // Others no longer find it: its bundles are not handed out, and a send that names it hears
    // that the devices changed.
    let fetch = Body::FetchBundles(FetchBundles { user: "alice@green".into(), requester: None });
    let answer = net.request(&blue, bob, 20, fetch);
    let Some(server_frame::Body::Bundles(bundles)) = answer.body else { panic!("{answer:?}") };
    assert_eq!(bundles.devices.iter().map(|d| d.device_id).collect::<Vec<_>>(), [1, 3]);
    let envelopes = [1, 2, 3]
        .iter()
        .map(|id| Envelope { recipient: Some(DeviceAddress { name: "alice@green".into(), device_id: *id }), ..envelope(30 + *id as u8, "bob@blue", "alice@green") })
        .collect();
    let answer = net.request(&blue, bob, 21, Body::SendToUser(SendToUser { user: "alice@green".into(), envelopes }));
    assert_eq!(answer.body, Some(server_frame::Body::DevicesChanged(DevicesChanged { user: "alice@green".into(), missing: vec![], extra: vec![2] })));
    // A one-to-one envelope for it: no such device.
    assert_eq!(code(&net.request(&blue, bob, 22, Body::Send(Envelope { id: vec![40; 16].into(), ..to_two }))), None, "taken by blue's outbox");
    assert!(net.disk("blue").outboxes.values().all(|o| o.is_empty()), "refused for good by green");
}

/// One user owns at most `MAX_CHANNELS_PER_USER` channels: no one fills a relay's channels alone.
#[test]
fn a_user_owns_a_bounded_number_of_channels() {
    let mut net = Net::new();
    let (green, alice, _) = net.device("alice@green");
    let (_, carol, _) = net.device("carol@green");
    for n in 0..switchboard_relay_core::MAX_CHANNELS_PER_USER {
        assert!(is_done(&net.request(&green, alice, 100 + n as u64, open_channel(&format!("c{n}@green"), &[]))), "channel {n}");
    }
    let over = net.request(&green, alice, 99, open_channel("one-more@green", &[]));
    assert_eq!(code(&over), Some(ErrorCode::TooLarge));
    assert!(!net.disk("green").channels.contains_key("one-more@green"));
    // Changing one she owns is still allowed; another user opens his own.
    assert!(is_done(&net.request(&green, alice, 98, open_channel("c0@green", &["bob@blue"]))));
    assert!(is_done(&net.request(&green, carol, 97, open_channel("carols@green", &[]))));
}
