//! Safety numbers and signature verification.

use switchboard_libsignal_c::{Error, Party, safety_number, verify_signature};

#[test]
fn safety_number_is_60_digits_and_symmetric() {
    let alice = Party::new(1, 1, 0, 1).unwrap();
    let bob = Party::new(2, 1, 0, 2).unwrap();
    let (a, b) = (alice.identity_public(), bob.identity_public());
    let from_alice = safety_number(5200, b"+14152222222", &a, b"+14153333333", &b).unwrap();
    let from_bob = safety_number(5200, b"+14153333333", &b, b"+14152222222", &a).unwrap();
    assert_eq!(from_alice.len(), 60);
    assert!(from_alice.bytes().all(|c| c.is_ascii_digit()));
    assert_eq!(from_alice, from_bob);

    // It depends on the keys, the identifiers and the iteration count.
    let carol = Party::new(3, 1, 0, 3).unwrap();
    let c = carol.identity_public();
    assert_ne!(
        safety_number(5200, b"+14152222222", &a, b"+14153333333", &c).unwrap(),
        from_alice
    );
    assert_ne!(
        safety_number(5200, b"+14152222222", &a, b"+14154444444", &b).unwrap(),
        from_alice
    );
    assert_ne!(
        safety_number(1024, b"+14152222222", &a, b"+14153333333", &b).unwrap(),
        from_alice
    );
    // Deterministic.
    assert_eq!(
        safety_number(5200, b"+14152222222", &a, b"+14153333333", &b).unwrap(),
        from_alice
    );
}

#[test]
fn safety_number_bad_inputs_are_errors() {
    let a = Party::new(1, 1, 0, 1).unwrap().identity_public();
    let mut bad = a;
    bad[0] = 0x06;
    assert!(matches!(
        safety_number(5200, b"x", &bad, b"y", &a),
        Err(Error::InvalidKey(_))
    ));
    assert!(matches!(
        safety_number(5200, b"x", &a, b"y", &bad),
        Err(Error::InvalidKey(_))
    ));
    assert!(matches!(
        safety_number(5200, b"x\0y", &a, b"y", &a),
        Err(Error::Other { .. })
    ));
    assert!(matches!(
        safety_number(u32::MAX, b"x", &a, b"y", &a),
        Err(Error::Other { .. })
    ));
    // Degenerate but accepted by the C library: no iterations, empty identifiers.
    assert_eq!(safety_number(0, b"", &a, b"", &a).unwrap().len(), 60);
}

#[test]
fn signed_prekey_signature_verifies() {
    let mut bob = Party::new(2, 1, 0, 2).unwrap();
    let bundle = bob.bundle().unwrap();
    assert!(verify_signature(
        &bundle.identity_key,
        &bundle.signed_prekey,
        &bundle.signed_prekey_signature
    ));
    let mut sig = bundle.signed_prekey_signature.clone();
    sig[10] ^= 1;
    assert!(!verify_signature(
        &bundle.identity_key,
        &bundle.signed_prekey,
        &sig
    ));
    let mut msg = bundle.signed_prekey.clone();
    msg[1] ^= 1;
    assert!(!verify_signature(
        &bundle.identity_key,
        &msg,
        &bundle.signed_prekey_signature
    ));
    let other = Party::new(3, 1, 0, 3).unwrap().identity_public();
    assert!(!verify_signature(
        &other,
        &bundle.signed_prekey,
        &bundle.signed_prekey_signature
    ));
    // Malformed inputs are just "not valid".
    assert!(!verify_signature(
        &[],
        &bundle.signed_prekey,
        &bundle.signed_prekey_signature
    ));
    assert!(!verify_signature(
        &bundle.identity_key[1..],
        &bundle.signed_prekey,
        &bundle.signed_prekey_signature
    ));
    assert!(!verify_signature(
        &bundle.identity_key,
        &bundle.signed_prekey,
        &sig[..63]
    ));
    assert!(!verify_signature(&bundle.identity_key, &[], &[0; 64]));
}
