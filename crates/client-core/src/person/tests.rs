use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn device(user: &str, id: u32) -> ProtocolAddress {
    ProtocolAddress::new(user.to_owned(), id)
}

/// Alice on green (public), blue (contacts), red (shown to bob@x only) and grey (nobody).
fn alice(rng: &mut StdRng) -> (Person, Vec<IdentityKeyPair>) {
    let keys: Vec<IdentityKeyPair> = (0..4).map(|_| IdentityKeyPair::generate(rng)).collect();
    let mut person = Person::new(&device("alice@green", 1), &keys[0], Visibility::Public, rng);
    person.put_device(&device("alice@blue", 1), &keys[1], Visibility::Contacts, rng).unwrap();
    person.put_device(&device("alice@red", 1), &keys[2], Visibility::Chosen, rng).unwrap();
    person.set_visibility("alice@red", Visibility::Chosen, vec!["bob@x".into()], rng).unwrap();
    person.put_device(&device("alice@grey", 1), &keys[3], Visibility::Nobody, rng).unwrap();
    (person, keys)
}

fn users(record: &wire::PersonRecord) -> Vec<&str> {
    record.accounts.iter().map(|account| account.user.as_str()).collect()
}

#[test]
fn each_audience_sees_what_she_chose_and_every_view_verifies() {
    let mut rng = rng();
    let (alice, _) = alice(&mut rng);
    let public = alice.view(Audience::Public, &mut rng);
    let bob = alice.view(Audience::Contact("bob@x"), &mut rng);
    let carol = alice.view(Audience::Contact("carol@x"), &mut rng);
    let own = alice.view(Audience::Own, &mut rng);
    assert_eq!(users(&public), ["alice@green"]);
    assert_eq!(users(&bob), ["alice@green", "alice@blue", "alice@red"]);
    assert_eq!(users(&carol), ["alice@green", "alice@blue"]);
    assert_eq!(users(&own), ["alice@green", "alice@blue", "alice@red", "alice@grey"]);
    // Whom an account is shown to is for her own devices only.
    assert!(bob.accounts.iter().all(|account| account.shown_to.is_empty()));
    for view in [public, bob, carol, own] {
        let verified = PersonRecord::verify(view).unwrap();
        assert_eq!(verified.person_key(), alice.person_key());
        assert_eq!(verified.version(), alice.record().version());
    }
}

#[test]
fn a_changed_field_breaks_the_signature() {
    let mut rng = rng();
    let (alice, _) = alice(&mut rng);
    let view = alice.view(Audience::Public, &mut rng);
    let mut tampered: Vec<wire::PersonRecord> = Vec::new();
    let mut newer = view.clone();
    newer.version += 1;
    tampered.push(newer);
    let mut visibility = view.clone();
    visibility.accounts[0].visibility = Visibility::Contacts as i32;
    tampered.push(visibility);
    // A relay adds an account it took from another record of hers (devices signed and all).
    let mut added = view.clone();
    added.accounts.push(alice.view(Audience::Own, &mut rng).accounts[3].clone());
    tampered.push(added);
    let mut dropped = alice.view(Audience::Contact("bob@x"), &mut rng);
    dropped.accounts.pop();
    tampered.push(dropped);
    for record in tampered {
        assert_eq!(PersonRecord::verify(record), Err(PersonError::BadSignature));
    }
}

#[test]
fn no_one_lists_a_device_that_did_not_sign_their_person_key() {
    let mut rng = rng();
    let (alice, keys) = alice(&mut rng);
    // Mallory lists alice's green device (its real identity key) under her own person key: she
    // can sign the record, not the device's cross-signature.
    let mallory_device = IdentityKeyPair::generate(&mut rng);
    let mut mallory = Person::new(&device("mallory@green", 1), &mallory_device, Visibility::Public, &mut rng);
    let mut record = mallory.view(Audience::Own, &mut rng);
    let mut stolen = alice.view(Audience::Public, &mut rng).accounts[0].clone();
    assert_eq!(stolen.devices[0].identity_key, keys[0].identity_key().serialize().to_vec());
    record.accounts.push(stolen.clone());
    let stored = mallory.to_stored().0;
    let key = IdentityKeyPair::deserialize(&stored).unwrap();
    record.signature = key.private_key().sign(&record_signed_bytes(&record), &mut rng).to_vec();
    assert_eq!(PersonRecord::verify(record.clone()), Err(PersonError::BadDeviceSignature { user: "alice@green".into(), device: 1 }));
    // With a signature of its own device over mallory's key, it verifies: that is a device that
    // chose to be mallory's.
    stolen.devices[0].signature = keys[0].private_key().sign(&device_signed_bytes(mallory.person_key(), "alice@green", 1), &mut rng).to_vec();
    record.accounts[1] = stolen;
    record.signature = key.private_key().sign(&record_signed_bytes(&record), &mut rng).to_vec();
    assert!(PersonRecord::verify(record).is_ok());
    // And mallory's own API cannot link a device without its key pair.
    assert!(mallory.put_device(&device("mallory@blue", 1), &mallory_device, Visibility::Public, &mut rng).is_ok());
}

#[test]
fn readers_refuse_older_versions_and_equivocation_and_take_richer_views() {
    let mut rng = rng();
    let (mut alice, _) = alice(&mut rng);
    let v5 = PersonRecord::verify(alice.view(Audience::Public, &mut rng)).unwrap();
    alice.unlink("alice@green", &mut rng).unwrap();
    alice.set_visibility("alice@blue", Visibility::Public, Vec::new(), &mut rng).unwrap();
    let v7 = PersonRecord::verify(alice.view(Audience::Public, &mut rng)).unwrap();
    assert_eq!((v5.version(), v7.version()), (5, 7));

    let mut people = People::default();
    assert_eq!(people.accept(v5.clone(), "alice@green"), Ok(true));
    assert_eq!(people.person_of("alice@green").map(|r| r.version()), Some(5));
    assert_eq!(people.accept(v7.clone(), "alice@blue"), Ok(true));
    // The revoked link is gone; the account that sent the new version is hers.
    assert!(people.person_of("alice@green").is_none());
    assert_eq!(people.person_of("alice@blue").map(|r| r.version()), Some(7));
    assert_eq!(people.accept(v5, "alice@green"), Err(PersonError::Rollback { offered: 5, held: 7 }));
    assert_eq!(people.accept(v7.clone(), "alice@blue"), Ok(false));
    // A contact's view of the same version shows more: it replaces the public one, and the
    // public one does not replace it back.
    let for_bob = PersonRecord::verify(alice.view(Audience::Contact("bob@x"), &mut rng)).unwrap();
    assert_eq!(people.accept(for_bob.clone(), "alice@blue"), Ok(true));
    assert_eq!(people.person_of("alice@blue"), Some(&for_bob));
    assert_eq!(people.accept(v7, "alice@blue"), Ok(false));
    assert_eq!(people.person_of("alice@blue"), Some(&for_bob));
    // A record may come only from an account it lists.
    assert_eq!(people.accept(for_bob.clone(), "eve@x"), Err(PersonError::NotLinked("eve@x".into())));
    // Records from others never say whom an account is shown to.
    let own = PersonRecord::verify(alice.view(Audience::Own, &mut rng)).unwrap();
    assert_eq!(people.accept(own, "alice@blue"), Err(PersonError::ShownToInAnothersRecord));

    // Anyone may sign a record naming alice@blue, with keys of their own; it counts for
    // alice@blue only once a device of alice@blue sends it, which eve's cannot.
    let blue = IdentityKeyPair::generate(&mut rng);
    let mut eve = Person::new(&device("eve@x", 1), &IdentityKeyPair::generate(&mut rng), Visibility::Public, &mut rng);
    eve.put_device(&device("alice@blue", 9), &blue, Visibility::Public, &mut rng).unwrap();
    let eve = PersonRecord::verify(eve.view(Audience::Public, &mut rng)).unwrap();
    assert_eq!(people.accept(eve.clone(), "eve@x"), Ok(true));
    assert_eq!(people.person_of("alice@blue"), Some(&for_bob), "eve's claim does not displace hers");
    assert_eq!(people.person_of("eve@x"), Some(&eve));

    // Kept and restored, the same claims hold.
    let restored = People::restore(&people.to_stored()).unwrap();
    assert_eq!(restored.person_of("alice@blue"), Some(&for_bob));
    assert_eq!(restored.person_of("eve@x"), Some(&eve));
    assert_eq!(restored.len(), 2);
}

#[test]
fn an_invitation_carries_the_person_to_a_new_device() {
    let mut rng = rng();
    let (mut alice, _) = alice(&mut rng);
    let invitation = alice.invitation();
    let mut on_blue = Person::from_invitation(&invitation).unwrap();
    assert_eq!(on_blue.person_key(), alice.person_key());
    let new_device = IdentityKeyPair::generate(&mut rng);
    on_blue.put_device(&device("alice@blue", 2), &new_device, Visibility::Contacts, &mut rng).unwrap();
    // The first device takes the newer record, and not an older one back.
    let newer = PersonRecord::verify(on_blue.view(Audience::Own, &mut rng)).unwrap();
    let older = alice.record().clone();
    assert_eq!(alice.adopt(newer.clone()), Ok(true));
    assert!(alice.owns(&device("alice@blue", 2)));
    assert_eq!(alice.adopt(older), Err(PersonError::Rollback { offered: 5, held: 6 }));
    // Someone else's record is not hers to adopt.
    let other = Person::new(&device("x@y", 1), &new_device, Visibility::Public, &mut rng);
    assert!(alice.adopt(other.record().clone()).is_err());
    // An invitation whose record is another person's is refused.
    let mut forged: wire::LinkInvitation = switchboard_wire::decode(&invitation, usize::MAX).unwrap();
    forged.record = Some(other.view(Audience::Own, &mut rng));
    assert!(Person::from_invitation(&forged.encode_to_vec()).is_err());
    // Stored and restored, she is the same person.
    let (pair, record, revoked) = alice.to_stored();
    let restored = Person::from_stored(&pair, record, revoked.to_vec()).unwrap();
    assert_eq!(restored.record(), alice.record());
    assert_eq!(format!("{alice:?}").contains("person_key"), true);
}

#[test]
fn malformed_records_are_refused() {
    let mut rng = rng();
    let (alice, _) = alice(&mut rng);
    let good = alice.view(Audience::Own, &mut rng);
    let mut cases: Vec<(wire::PersonRecord, &str)> = Vec::new();
    let mut twice = good.clone();
    twice.accounts.push(twice.accounts[0].clone());
    cases.push((twice, "twice"));
    let mut no_devices = good.clone();
    no_devices.accounts[0].devices.clear();
    cases.push((no_devices, "no devices"));
    let mut unspecified = good.clone();
    unspecified.accounts[0].visibility = 0;
    cases.push((unspecified, "visibility"));
    let mut bad_user = good.clone();
    bad_user.accounts[0].user = "no-app".into();
    cases.push((bad_user, "address"));
    let mut shown = good.clone();
    shown.accounts[0].shown_to.push("bob@x".into());
    cases.push((shown, "shown_to on a public account"));
    let mut short = good.clone();
    short.signature.pop();
    cases.push((short, "signature length"));
    let mut too_many = good.clone();
    while too_many.accounts.len() <= MAX_LINKED_ACCOUNTS {
        let mut account = too_many.accounts[0].clone();
        account.user = format!("a{}@z", too_many.accounts.len());
        too_many.accounts.push(account);
    }
    cases.push((too_many, "too many"));
    for (record, what) in cases {
        assert!(PersonRecord::verify(record).is_err(), "{what}");
    }
    assert!(matches!(PersonRecord::from_bytes(&[0xff; 8]), Err(PersonError::Decode(_))));
    assert!(PersonRecord::from_bytes(&good.encode_to_vec()).is_ok());
}

#[test]
fn one_safety_number_for_two_people() {
    let mut rng = rng();
    let (alice, _) = alice(&mut rng);
    let bob = Person::new(&device("bob@x", 1), &IdentityKeyPair::generate(&mut rng), Visibility::Public, &mut rng);
    let from_alice = person_safety_number(alice.person_key(), bob.person_key());
    assert_eq!(from_alice.len(), 60);
    assert_eq!(from_alice, person_safety_number(bob.person_key(), alice.person_key()));
    let carol = Person::new(&device("carol@x", 1), &IdentityKeyPair::generate(&mut rng), Visibility::Public, &mut rng);
    assert_ne!(from_alice, person_safety_number(alice.person_key(), carol.person_key()));
}

#[test]
fn a_conversation_of_two_is_the_same_from_both_sides_and_any_account() {
    let mut rng = rng();
    let (alice, _) = alice(&mut rng);
    let her = party(Some(alice.person_key()), "alice@green");
    assert_eq!(her, party(Some(alice.person_key()), "alice@blue"), "a person is named by her key, not the account");
    assert_eq!(party(None, "bob@x"), "bob@x");
    let conversation = direct_conversation(&her, "bob@x");
    assert_eq!(conversation, direct_conversation("bob@x", &her));
    assert!(conversation.starts_with("dm-") && conversation.len() == 3 + 32);
    assert_ne!(conversation, direct_conversation(&her, "carol@x"));
    // The length prefixes keep the two parties apart.
    assert_ne!(direct_conversation("ab", "c"), direct_conversation("a", "bc"));
}
