//! libsignal's Curve25519 vectors: agreement, public key derivation, and signatures in Signal's
//! `curve25519_sign` form (Ed25519 under the Edwards form of the Montgomery private scalar, the
//! Edwards sign bit in the top bit of byte 63).
//!
//! Sources:
//! - signalapp/libsignal `rust/protocol/src/curve/curve25519.rs` (`test_agreement`,
//!   `test_signature`); the same bytes in signalapp/libsignal-protocol-c
//!   `tests/test_curve25519.c` (`test_curve25519_agreement`, `test_curve25519_generate_public`,
//!   `test_curve25519_signature`).
//! - signalapp/libsignal-protocol-c `src/curve25519/ed25519/tests/internal_fast_tests.c`
//!   (`curvesigs_fast_test`: a deterministic `curve25519_sign` vector with zero randomness;
//!   `xeddsa_fast_test`: a deterministic XEdDSA vector).

use super::{ZeroRng, hex_array, private};
use crate::keys::{PrivateKey, PublicKey};
use crate::xeddsa;

/// signalapp/libsignal `rust/protocol/src/curve/curve25519.rs` `test_agreement`;
/// libsignal-protocol-c `tests/test_curve25519.c` `test_curve25519_agreement` and
/// `test_curve25519_generate_public`.
#[test]
fn libsignal_curve25519_agreement() {
    let alice_private = private("c806439dc9d2c476ffed8f2580c0888d58ab406bf7ae3698879021b96bb4bf59");
    let bob_private = private("b03b34c33a1c44f225b662d2bf4859b8135411fa7b0386d45fb75dc5b91b4466");
    let alice_public = PublicKey::from_bytes(&hex_array::<33>(
        "051bb75966f2e93a3691dfff942bb2a466a1c08b8d78ca3f4d6df8b8bfa2e4ee28",
    ))
    .unwrap();
    let bob_public = PublicKey::from_bytes(&hex_array::<33>(
        "05653614993d2b15ee9e5fd3d86ce719ef4ec1daae1886a87b3f5fa9565a27a22f",
    ))
    .unwrap();
    let shared: [u8; 32] = hex_array("325f239328941ced6e673b86ba41017448e99b649a9c3806c1dd7ca4c477e629");

    assert_eq!(alice_private.public_key(), alice_public);
    assert_eq!(bob_private.public_key(), bob_public);
    assert_eq!(*alice_private.agree(&bob_public), shared);
    assert_eq!(*bob_private.agree(&alice_public), shared);
}

const SIG_PRIVATE: &str = "c097248412e58bf05df487968205132794178e367637f5818f81e0e6ce73e865";
const SIG_PUBLIC: &str = "05ab7e717d4a163b7d9a1d8071dfe9dcf8cdcd1cea3339b6356be84d887e322c64";
/// The signed message: a serialized public key (as in a signed prekey).
const SIG_MESSAGE: &str = "05edce9d9c415ca78cb7252e72c2c4a554d3eb29485a0e1d503118d1a82d99fb4a";
const SIGNATURE: &str = concat!(
    "5de88ca9a89b4a115da79109c67c9c7464a3e4180274f1cb8c63c2984e286dfb",
    "ede82deb9dcd9fae0bfbb821569b3d9001bd8130cd11d486cef047bd60b86e88"
);

/// signalapp/libsignal `rust/protocol/src/curve/curve25519.rs` `test_signature`;
/// libsignal-protocol-c `tests/test_curve25519.c` `test_curve25519_signature`: a known-good
/// signature verifies; flipping the low bit of any byte makes it fail (as both tests check).
#[test]
fn libsignal_curve25519_known_signature_verifies() {
    let key = PublicKey::from_bytes(&hex_array::<33>(SIG_PUBLIC)).unwrap();
    assert_eq!(private(SIG_PRIVATE).public_key(), key);
    let message: [u8; 33] = hex_array(SIG_MESSAGE);
    let signature: [u8; 64] = hex_array(SIGNATURE);

    assert!(key.verify_signature(&message, &signature));
    assert!(xeddsa::verify(key.as_montgomery(), &message, &signature));
    for i in 0..signature.len() {
        let mut bad = signature;
        bad[i] ^= 0x01;
        assert!(!key.verify_signature(&message, &bad), "byte {i} flipped still verifies");
    }
    // Wrong message, truncated or extended signature.
    assert!(!key.verify_signature(&message[1..], &signature));
    assert!(!key.verify_signature(&message, &signature[..63]));
    assert!(!key.verify_signature(&message, &[&signature[..], &[0]].concat()));
}

/// The private key of libsignal-protocol-c's `internal_fast_tests.c` signature vectors: zero but
/// byte 8 = 189, then clamped.
fn fast_test_private() -> PrivateKey {
    let mut bytes = [0u8; 32];
    bytes[8] = 189;
    PrivateKey::from_scalar_bytes(bytes)
}

/// libsignal-protocol-c `src/curve25519/ed25519/tests/internal_fast_tests.c`
/// `curvesigs_fast_test`: `curve25519_sign` of 200 zero bytes with 64 zero random bytes. The nonce
/// is SHA-512(0xFE ‖ 0xFF × 31 ‖ private scalar ‖ message ‖ random), exactly as this crate derives
/// it, so the signature is reproduced byte for byte — by `xeddsa::sign` and by `PrivateKey::sign`
/// fed a zero "RNG".
#[test]
fn libsignal_c_curve25519_sign_vector() {
    let key = fast_test_private();
    let message = [0u8; 200];
    let expected: [u8; 64] = hex_array(concat!(
        "cf873d0379ac20e8893e5567ee0f8951f8db840d26b243b463526689d01ca718",
        "ac189fb1678574ebdde569330659448b0bd6c1973f7d780ab39518626803d782"
    ));

    assert_eq!(xeddsa::sign(&key.to_bytes(), &message, &[0u8; 64]), expected);
    assert_eq!(key.sign(&message, &mut ZeroRng), expected);
    assert!(key.public_key().verify_signature(&message, &expected));
    let mut bad = expected;
    bad[0] ^= 1;
    assert!(!key.public_key().verify_signature(&message, &bad));
}

/// libsignal-protocol-c `internal_fast_tests.c` `xeddsa_fast_test`: a true XEdDSA signature
/// (Edwards key forced to sign bit 0, so byte 63's top bit is 0). Signal's verifier takes the sign
/// bit from the signature, so XEdDSA signatures verify under the same function; this crate's
/// `verify` must accept it too. (This crate signs in the `curve25519_sign` form, not XEdDSA's, so
/// only verification is checked here.)
#[test]
fn libsignal_c_xeddsa_vector_verifies() {
    let key = fast_test_private().public_key();
    let message = [0u8; 200];
    let signature: [u8; 64] = hex_array(concat!(
        "11c7f3e6c4df9e8a5150e1db3b30f92de3a3b3aa438656545fa7390f4bcc7bb2",
        "6c431d9e90643e4f0eaa0e9c557766fa69ada576d63dcaf2ac326c11d0b97702"
    ));
    assert!(key.verify_signature(&message, &signature));
    let mut bad = signature;
    bad[0] ^= 1;
    assert!(!key.verify_signature(&message, &bad));
    // As in the C test: an all-0xFF "public key" does not verify it.
    assert!(!xeddsa::verify(&[0xff; 32], &message, &signature));
}
