//! Channels and business accounts at the endpoint, over the in-memory harness: real endpoints
//! and real relay cores on three apps.

use switchboard_client_core::Event;
use switchboard_harness::Harness;
use switchboard_session::Suite;

fn online(h: &mut Harness, user: &str) -> usize {
    let d = h.add_device(user, 1, false);
    h.connect(d);
    h.settle();
    assert!(h.devices[d].endpoint.is_online());
    h.take_events(d);
    d
}

/// Links device `id` of `first`'s user and brings it online.
fn linked(h: &mut Harness, first: usize, user: &str, id: u32) -> usize {
    let device = h.add_device(user, id, false);
    h.with(first, |e, now, _| e.link_device(now, id)).unwrap();
    h.settle();
    let credential = h.take_events(first).into_iter().find_map(|e| match e {
        Event::DeviceLinked { credential, .. } => Some(credential),
        _ => None,
    });
    h.with(device, |e, _, _| e.set_credential(credential.expect("linked")));
    h.connect(device);
    h.settle();
    h.take_events(device);
    device
}

/// The posts `d` read: (channel, sender, content).
fn posts(h: &mut Harness, d: usize) -> Vec<(String, String, Vec<u8>)> {
    h.take_events(d)
        .into_iter()
        .filter_map(|event| match event {
            Event::ChannelPost { channel, from, content, .. } => Some((channel, from.to_string(), content)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_post_reaches_followers_on_every_app_and_votes_reach_the_admin_only() {
    let mut h = Harness::new(&["green", "blue", "red"], 5);
    let admin = online(&mut h, "news@green");
    let followers = [online(&mut h, "ann@green"), online(&mut h, "bob@blue"), online(&mut h, "cat@red")];
    let bystander = online(&mut h, "dan@red");
    h.with(admin, |e, now, rng| e.open_channel(now, "daily@green", Vec::new(), Suite::Aes256Gcm, rng)).unwrap();
    h.settle();
    assert!(h.take_events(admin).iter().any(|e| matches!(e, Event::ChannelOpened { result: Ok(()), .. })));
    for &f in &followers {
        h.with(f, |e, now, _| e.follow(now, "daily@green")).unwrap();
    }
    h.settle();
    for &f in &followers {
        let followed = h.take_events(f).into_iter().find_map(|e| match e {
            Event::ChannelFollowed { result, .. } => Some(result),
            _ => None,
        });
        assert_eq!(followed, Some(Ok(vec!["news@green".to_owned()])));
    }
    let handed = h.take_events(admin).into_iter().filter(|e| matches!(e, Event::ChannelFollower { .. })).count();
    assert_eq!(handed, 3, "one key hand-over per follower");

    h.with(admin, |e, now, rng| e.post(now, "daily@green", b"poll: mon or tue?".to_vec(), rng)).unwrap();
    h.settle();
    for &f in &followers {
        assert_eq!(posts(&mut h, f), [("daily@green".to_owned(), "news@green/1".to_owned(), b"poll: mon or tue?".to_vec())]);
    }
    assert!(posts(&mut h, bystander).is_empty(), "no post reaches a device that does not follow");

    // Votes go to the admin's devices only: no follower sees another's.
    h.with(followers[1], |e, now, rng| e.reply_to_channel(now, "daily@green", b"tue".to_vec(), rng)).unwrap();
    h.with(followers[2], |e, now, rng| e.reply_to_channel(now, "daily@green", b"mon".to_vec(), rng)).unwrap();
    h.settle();
    let mut votes: Vec<(String, Vec<u8>)> = h
        .take_events(admin)
        .into_iter()
        .filter_map(|e| match e {
            Event::ChannelReply { from, content, .. } => Some((from.name().to_owned(), content)),
            _ => None,
        })
        .collect();
    votes.sort();
    assert_eq!(votes, [("bob@blue".to_owned(), b"tue".to_vec()), ("cat@red".to_owned(), b"mon".to_vec())]);
    for &f in &followers {
        let events = h.take_events(f);
        assert!(!events.iter().any(|e| matches!(e, Event::ChannelReply { .. } | Event::Message { .. })), "{events:?}");
        // A follower's device knows the admin's device and no other follower's.
        let peers: Vec<String> = h.devices[f].endpoint.device().session_peers().map(|p| p.name().to_owned()).collect();
        assert_eq!(peers, ["news@green"]);
    }

    // A follower who leaves reads nothing posted after; the others go on reading.
    h.with(followers[0], |e, now, _| e.leave(now, "daily@green")).unwrap();
    h.settle();
    h.with(admin, |e, now, rng| e.post(now, "daily@green", b"results: tue".to_vec(), rng)).unwrap();
    h.settle();
    assert!(posts(&mut h, followers[0]).is_empty());
    assert_eq!(posts(&mut h, followers[2]).len(), 1);
}

#[test]
fn a_post_from_someone_who_is_not_an_admin_is_refused() {
    let mut h = Harness::new(&["green", "blue"], 6);
    let admin = online(&mut h, "news@green");
    let intruder = online(&mut h, "eve@green");
    let follower = online(&mut h, "bob@blue");
    h.with(admin, |e, now, rng| e.open_channel(now, "daily@green", Vec::new(), Suite::Aes256Gcm, rng)).unwrap();
    h.settle();
    h.with(follower, |e, now, _| e.follow(now, "daily@green")).unwrap();
    h.settle();
    // Eve posts under the channel's name with a key of her own: her relay passes the post to the
    // channel's app, which refuses it (she is no admin); the follower would not read it anyway.
    h.with(intruder, |e, now, rng| e.administer_channel(now, "daily@green", Suite::Aes256Gcm, rng)).unwrap();
    h.with(intruder, |e, now, rng| e.post(now, "daily@green", b"fake".to_vec(), rng)).unwrap();
    h.settle();
    assert!(posts(&mut h, follower).is_empty());
    assert!(h.take_events(intruder).iter().any(|e| matches!(e, Event::SendDropped { .. })), "the channel's app refused the post");
}

#[test]
fn a_business_answers_as_its_agents_hands_over_and_removes_one() {
    let mut h = Harness::new(&["green", "blue"], 7);
    let owner = online(&mut h, "hotel@green");
    let ben = linked(&mut h, owner, "hotel@green", 2);
    let cleo = linked(&mut h, owner, "hotel@green", 3);
    let guest = online(&mut h, "guest@blue");
    h.with(owner, |e, now, rng| e.set_agents(now, vec![(1, "Ana".into()), (2, "Ben".into()), (3, "Cleo".into())], rng)).unwrap();
    h.settle();
    for d in [ben, cleo] {
        assert!(h.take_events(d).iter().any(|e| matches!(e, Event::AgentsChanged { listed: true })));
    }

    // The guest writes to one business; every agent's device receives it.
    h.with(guest, |e, now, rng| e.send(now, "hotel@green", b"is breakfast included?".to_vec(), rng)).unwrap();
    h.settle();
    for d in [owner, ben, cleo] {
        assert_eq!(h.take_messages(d).len(), 1);
    }
    h.with(owner, |e, now, rng| e.assign(now, "guest@blue", 1, rng)).unwrap();
    h.with(owner, |e, now, rng| e.send(now, "guest@blue", b"yes, 7 to 10".to_vec(), rng)).unwrap();
    h.settle();
    // Ben hands it over to Cleo; she answers.
    assert!(h.with(ben, |e, now, rng| e.assign(now, "guest@blue", 3, rng)).unwrap(), "a hand-over");
    h.with(cleo, |e, now, rng| e.send(now, "guest@blue", b"and room service".to_vec(), rng)).unwrap();
    h.settle();
    let agents: Vec<Option<String>> = h
        .take_events(guest)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { agent, from, .. } => {
                assert_eq!(from.name(), "hotel@green");
                Some(agent)
            }
            _ => None,
        })
        .collect();
    assert_eq!(agents, [Some("Ana".to_owned()), Some("Cleo".to_owned())]);

    let analytics = h.with(owner, |e, _, _| e.analytics()).expect("a business device");
    assert_eq!((analytics.conversations, analytics.messages_in, analytics.messages_out, analytics.answered, analytics.handovers), (1, 1, 2, 1, 1));
    assert_eq!(analytics.agents[&1].first_responses, 1);
    assert_eq!(analytics.agents[&3].replies, 1, "Cleo's reply, seen in her transcript");
    assert_eq!(analytics.agents[&3].assigned, 1);

    // Cleo leaves: removed, she reads nothing sent after; the others still do.
    h.with(owner, |e, now, _| e.remove_agent(now, 3)).unwrap();
    h.settle();
    assert!(h.take_events(owner).iter().any(|e| matches!(e, Event::DeviceRemoved { device_id: 3, result: Ok(()), .. })));
    h.take_messages(cleo);
    h.with(guest, |e, now, rng| e.send(now, "hotel@green", b"thanks!".to_vec(), rng)).unwrap();
    h.settle();
    assert!(h.take_messages(cleo).is_empty(), "a removed agent reads nothing sent after");
    assert_eq!(h.take_messages(owner).len(), 1);
    // The account answered the guest (from other agents' devices): no request on Ben's either.
    let requests: Vec<bool> = h.take_events(ben).into_iter().filter_map(|e| if let Event::Message { request, .. } = e { Some(request) } else { None }).collect();
    assert_eq!(requests, [false]);
    let roster = h.devices[ben].endpoint.device().business().unwrap().agents().clone();
    assert_eq!(roster.len(), 2);
}

#[test]
fn only_the_owner_sets_the_roster_and_only_the_account_assigns() {
    let mut h = Harness::new(&["green", "blue"], 8);
    let owner = online(&mut h, "hotel@green");
    let ben = linked(&mut h, owner, "hotel@green", 2);
    assert!(h.with(ben, |e, now, rng| e.set_agents(now, vec![(2, "Ben".into())], rng)).is_err());
    assert!(h.with(ben, |e, now, _| e.remove_agent(now, 1)).is_err());
    h.with(owner, |e, now, rng| e.set_agents(now, vec![(1, "Ana".into()), (2, "Ben".into())], rng)).unwrap();
    h.settle();
    // Another account's device cannot change the business: its change is refused.
    let outsider = online(&mut h, "eve@blue");
    let change = switchboard_wire::switchboard::PairwisePayload {
        body: Some(switchboard_wire::switchboard::pairwise_payload::Body::Business(switchboard_wire::switchboard::BusinessChange {
            customer: "eve@blue".into(),
            agent_device: 2,
            ..Default::default()
        })),
        ..Default::default()
    };
    let to = switchboard_session::ProtocolAddress::new("hotel@green".to_owned(), 2);
    h.with(outsider, |e, now, rng| e.send_payload(now, to, switchboard_wire::Message::encode_to_vec(&change), rng));
    h.settle();
    assert!(h.take_events(ben).iter().any(|e| matches!(e, Event::Refused { .. })));
    assert_eq!(h.devices[ben].endpoint.device().business().unwrap().assignee("eve@blue"), None);
}

#[test]
fn an_agent_cannot_change_what_the_account_takes_from_others() {
    let mut h = Harness::new(&["green", "blue"], 9);
    let owner = online(&mut h, "hotel@green");
    let ben = linked(&mut h, owner, "hotel@green", 2);
    h.with(owner, |e, now, rng| e.set_agents(now, vec![(1, "Ana".into()), (2, "Ben".into())], rng)).unwrap();
    h.settle();
    h.take_events(owner);
    // An agent's device is trusted with assignments and its own replies, not with the account's
    // consent: a block it sends the owner's device is refused.
    let block = switchboard_wire::switchboard::PairwisePayload {
        body: Some(switchboard_wire::switchboard::pairwise_payload::Body::Consent(switchboard_wire::switchboard::ConsentChange {
            block: vec!["guest@blue".into()],
            ..Default::default()
        })),
        ..Default::default()
    };
    let to = switchboard_session::ProtocolAddress::new("hotel@green".to_owned(), 1);
    h.with(ben, |e, now, rng| e.send_payload(now, to, switchboard_wire::Message::encode_to_vec(&block), rng));
    h.settle();
    assert!(h.take_events(owner).iter().any(|e| matches!(e, Event::Refused { .. })));
    assert!(!h.devices[owner].endpoint.is_blocked("guest@blue"));
}

#[test]
fn a_channel_left_before_its_follow_was_answered_delivers_nothing() {
    let mut h = Harness::new(&["green", "blue"], 10);
    let admin = online(&mut h, "news@green");
    let follower = online(&mut h, "bob@blue");
    h.with(admin, |e, now, rng| e.open_channel(now, "daily@green", Vec::new(), Suite::Aes256Gcm, rng)).unwrap();
    h.settle();
    h.with(follower, |e, now, _| e.follow(now, "daily@green")).unwrap();
    h.with(follower, |e, now, _| e.leave(now, "daily@green")).unwrap();
    h.settle();
    h.take_events(follower);
    h.with(admin, |e, now, rng| e.post(now, "daily@green", b"after".to_vec(), rng)).unwrap();
    h.settle();
    let events = h.take_events(follower);
    assert!(!events.iter().any(|e| matches!(e, Event::ChannelPost { .. } | Event::Refused { .. })), "nothing delivered: {events:?}");
    assert!(h.devices[follower].endpoint.device().channels().admins_of("daily@green").is_none());
}

#[test]
fn a_follower_reads_an_admin_named_after_it_followed() {
    let mut h = Harness::new(&["green", "blue"], 11);
    let owner = online(&mut h, "news@green");
    let editor = online(&mut h, "ed@blue");
    let follower = online(&mut h, "bob@blue");
    h.with(owner, |e, now, rng| e.open_channel(now, "daily@green", Vec::new(), Suite::Aes256Gcm, rng)).unwrap();
    h.settle();
    h.with(follower, |e, now, _| e.follow(now, "daily@green")).unwrap();
    h.settle();
    h.take_events(follower);
    // The owner names a second admin, on another app, who posts from then on.
    h.with(owner, |e, now, rng| e.open_channel(now, "daily@green", vec!["ed@blue".into()], Suite::Aes256Gcm, rng)).unwrap();
    h.with(editor, |e, now, rng| e.administer_channel(now, "daily@green", Suite::Aes256Gcm, rng)).unwrap();
    h.settle();
    // Her first post makes the follower ask again and get her key; the key it is handed is her
    // current one, so that first post stays unread (as any post encrypted before a follower got
    // the key), and the next is read.
    h.with(editor, |e, now, rng| e.post(now, "daily@green", b"first".to_vec(), rng)).unwrap();
    h.settle();
    assert!(posts(&mut h, follower).is_empty());
    h.with(editor, |e, now, rng| e.post(now, "daily@green", b"from the new editor".to_vec(), rng)).unwrap();
    h.settle();
    assert_eq!(posts(&mut h, follower), [("daily@green".to_owned(), "ed@blue/1".to_owned(), b"from the new editor".to_vec())]);
    let admins = h.devices[follower].endpoint.device().channels().admins_of("daily@green").cloned().unwrap();
    assert_eq!(admins.into_iter().collect::<Vec<_>>(), ["ed@blue", "news@green"]);
}
