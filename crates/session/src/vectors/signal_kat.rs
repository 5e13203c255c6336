//! libsignal's own known-answer vectors for the `signal-v3` key schedule and for safety numbers.
//!
//! Sources (read in the public repositories; the data is copied, the test code is ours):
//! - signalapp/libsignal `rust/protocol/src/ratchet/keys.rs` (`test_chain_key_derivation`),
//!   signalapp/libsignal-protocol-c `tests/test_ratchet.c` (`test_chain_key_derivation_v3`,
//!   `test_chain_key_derivation_v2`, `test_root_key_derivation_v2`, `test_ratcheting_session_as_*`),
//!   signalapp/libsignal-protocol-java `tests/.../ratchet/ChainKeyTest.java`, `RootKeyTest.java`,
//!   and libsignal-protocol-c `src/curve25519/curve25519-donna.c` (why some of these differ).
//! - signalapp/libsignal `rust/protocol/tests/ratchet.rs` and
//!   `java/client/src/test/java/org/signal/libsignal/protocol/ratchet/RatchetingSessionTest.java`.
//! - signalapp/libsignal `java/client/src/test/java/org/signal/libsignal/protocol/kdf/HKDFTest.java`
//!   (RFC 5869 appendix A.1 and A.2).
//! - signalapp/libsignal `rust/protocol/src/fingerprint.rs` (`fingerprint_test_v1`) and
//!   `java/client/src/test/java/org/signal/libsignal/protocol/fingerprint/NumericFingerprintGeneratorTest.java`.

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::Scalar;
use hmac::Mac;

use super::{hex_array, key_pair, private, public};
use crate::fingerprint::{SAFETY_NUMBER_ITERATIONS, safety_number};
use crate::kdf;
use crate::keys::{IdentityKeyPair, PublicKey};
use crate::ratchet::keys::{ChainKey, RootKey};
use crate::suite::Suite;
use crate::x3dh::{Initiator, Responder};

// ---------------------------------------------------------------------------------------------
// Chain key step: HMAC-SHA256(chain key, 0x01) → message-key seed → HKDF(zero salt,
// "WhisperMessageKeys") → cipher key ‖ MAC key ‖ IV; HMAC-SHA256(chain key, 0x02) → next chain key.
// ---------------------------------------------------------------------------------------------

/// The chain key seed shared by every chain key vector (v2 and v3).
const CHAIN_SEED: &str = "8ab72d6f4cc5ac0d387eaf463378ddb28edd07385b1cb01250c715982e7ad48f";
/// The next chain key: HMAC-SHA256(seed, 0x02), the same in v2 and v3.
const CHAIN_NEXT: &str = "28e8f8fee54b801eef7c5cfb2f17f32c7b334485bbb70fac6ec10342a246d15d";

/// signalapp/libsignal `rust/protocol/src/ratchet/keys.rs` `test_chain_key_derivation`; the same
/// bytes in libsignal-protocol-c `tests/test_ratchet.c` `test_chain_key_derivation_v3` and
/// libsignal-protocol-java `ChainKeyTest.testChainKeyDerivationV3`.
#[test]
fn libsignal_chain_key_step_v3() {
    let chain = ChainKey { key: hex_array(CHAIN_SEED), index: 0 };
    let (keys, next) = chain.step(Suite::SignalV3);

    assert_eq!(*keys.cipher_key(), hex_array("bf51e9d75e0e31031051f82a2491ffc084fa298b7793bd9db620056febf45217"));
    assert_eq!(*keys.mac_key(), hex_array("c6c77d6a73a354337a56435e34607dfe48e3ace14e77314dc6abc172e7a7030b"));
    assert_eq!(keys.index, 0);
    assert_eq!(next.key, hex_array(CHAIN_NEXT));
    assert_eq!(next.index, 1);
    // `next()` (chain advance without message keys) must agree with `step()`.
    assert_eq!(chain.next(), next);
    // The message keys of the next chain key carry counter 1, as in libsignal.
    assert_eq!(next.step(Suite::SignalV3).0.index, 1);
}

// ---------------------------------------------------------------------------------------------
// libsignal's HKDF "v2" (message version 2, long retired): RFC 5869 except that the expand
// counter starts at 0 instead of 1. This crate does not implement it and must not; it is
// rebuilt here from the crate's HMAC-SHA256 only so that libsignal's *published* root key
// vector, which exists only for v2, can pin down the parameters of the root step (salt = root
// key, IKM = X25519 output, info "WhisperRatchet", 64 bytes split root ‖ chain). The v2 chain
// key vector checks this test-local construction first.
// ---------------------------------------------------------------------------------------------

/// HKDF-SHA256 with a configurable first expand counter (0: libsignal v2; 1: RFC 5869 / v3).
fn hkdf_with_counter_offset(salt: &[u8], ikm: &[u8], info: &[u8], first_counter: u8, len: usize) -> Vec<u8> {
    let prk = kdf::hmac(salt).chain_update(ikm).finalize().into_bytes();
    let mut okm = Vec::with_capacity(len);
    let mut previous: Vec<u8> = Vec::new();
    let mut counter = first_counter;
    while okm.len() < len {
        let block = kdf::hmac(&prk).chain_update(&previous).chain_update(info).chain_update([counter]).finalize();
        previous = block.into_bytes().to_vec();
        okm.extend_from_slice(&previous);
        counter += 1;
    }
    okm.truncate(len);
    okm
}

/// libsignal-protocol-c `tests/test_ratchet.c` `test_chain_key_derivation_v2` (same bytes in
/// libsignal-protocol-java `ChainKeyTest.testChainKeyDerivationV2`): validates the test-local
/// HKDF-v2 above, and shows the crate's v3 step differs from v2 only in the KDF.
#[test]
fn libsignal_chain_key_vector_v2_validates_the_v2_kdf_helper() {
    let seed: [u8; 32] = hex_array(CHAIN_SEED);
    let message_seed = kdf::hmac(&seed).chain_update([0x01]).finalize().into_bytes();
    let derived = hkdf_with_counter_offset(&[0u8; 32], &message_seed, b"WhisperMessageKeys", 0, 64);
    assert_eq!(derived[..32], hex_array::<32>("02a9aa6c7dbd64f9d3aa92f92a277bf54609dadf0b00828acfc61e3c724b84a7"));
    assert_eq!(derived[32..], hex_array::<32>("bfbe5efb603030526742e3ee89c7024e884e440f1ff376bb2317b2d64deb7c83"));

    // With the RFC 5869 counter, the same helper reproduces the v3 vector, i.e. the crate's KDF.
    let v3 = hkdf_with_counter_offset(&[0u8; 32], &message_seed, b"WhisperMessageKeys", 1, 80);
    let (keys, _) = ChainKey { key: seed, index: 0 }.step(Suite::SignalV3);
    assert_eq!(v3[..32], *keys.cipher_key());
    assert_eq!(v3[32..64], *keys.mac_key());
    assert_eq!(v3[64..], *keys.iv(), "IV = HKDF bytes 64..80 (no published vector covers the IV alone)");
}

// ---------------------------------------------------------------------------------------------
// libsignal-protocol-c does not clamp. Its `curve25519_donna` has the three clamping lines
// commented out (signalapp/libsignal-protocol-c `src/curve25519/curve25519-donna.c`), and
// `curve_decode_private_point` stores the 32 bytes as given; only `curve_generate_private_key`
// clamps. libsignal (Rust, Java) and this crate clamp every private key. So for a private key
// whose bytes are not already clamped, the C library derives another public key and other DH
// outputs. Several of libsignal's old vectors were made that way: their private keys have the low
// three bits set (0x21…, 0x11…, 0xa1…) and their public keys are the unclamped products. The
// model below reproduces the C library's arithmetic for such keys (all peers' keys in the
// vectors are in the prime-order subgroup, so reducing the scalar mod ℓ changes nothing).
// ---------------------------------------------------------------------------------------------

/// libsignal-protocol-c's public key of raw (unclamped) private bytes: scalar × base point.
fn c_library_public(private_hex: &str) -> [u8; 32] {
    let scalar = Scalar::from_bytes_mod_order(hex_array(private_hex));
    EdwardsPoint::mul_base(&scalar).to_montgomery().to_bytes()
}

/// libsignal-protocol-c's `curve_calculate_agreement` for raw (unclamped) private bytes.
fn c_library_agree(private_hex: &str, their: &PublicKey) -> [u8; 32] {
    (MontgomeryPoint(*their.as_montgomery()) * Scalar::from_bytes_mod_order(hex_array(private_hex))).to_bytes()
}

// ---------------------------------------------------------------------------------------------
// Root key step: HKDF(salt = root key, IKM = X25519(our ratchet private, their ratchet public),
// info "WhisperRatchet") → new root key ‖ new chain key.
// ---------------------------------------------------------------------------------------------

const ROOT_SEED: &str = "7ba6debc2bc1bbf91abbc1367404176ca623095b7ec66b45f602d93538942dcc";
const ROOT_BOB_PUBLIC: &str = "05abb8eb29cc80b47109a2265abe9798485406e32da268934a9555e84757708a30";
/// The vectors' "alice public": the C library's (unclamped) public key of `0x21…`.
const ROOT_ALICE_PUBLIC: &str = "05ee4fa6cdc030df49ecd0ba6cfcffb233d365a27fadbeff77e963fcb16222e13a";

/// signalapp/libsignal-protocol-java `tests/src/test/java/org/whispersystems/libsignal/ratchet/RootKeyTest.java`
/// `testRootKeyDerivationV2`: the published root-step vector for a clamping X25519 (private key
/// `0x20…`, the clamped form of the C vector's `0x21…`). It exists only for HKDF v2.
///
/// What it pins for the crate: the X25519 step (`PrivateKey::agree`, clamping) and the HKDF
/// parameters of the root step (salt = root key, IKM = DH output, info "WhisperRatchet", 64 bytes
/// split root ‖ chain). The crate's `RootKey::create_chain` is then held to exactly those
/// parameters under v3's counter.
#[test]
fn libsignal_root_key_step() {
    let alice = private("206822ec67eb38049ebae7b939baeaebb151bbb32db80fd389245ac37a948e50");
    let bob = public(ROOT_BOB_PUBLIC);
    let root_seed: [u8; 32] = hex_array(ROOT_SEED);
    let shared = alice.agree(&bob);

    let v2 = hkdf_with_counter_offset(&root_seed, shared.as_ref(), b"WhisperRatchet", 0, 64);
    assert_eq!(v2[..32], hex_array::<32>("674677652104e864d07c5433efaa5925ed4367d6b25aafe6991def5c7f0fb86f"));
    assert_eq!(v2[32..], hex_array::<32>("faed7fb2c3e6f606fcbf26646cf268ad49589fcbde01c12675e5e822a7e335d1"));

    let (next_root, next_chain) = RootKey(root_seed).create_chain(Suite::SignalV3, &bob, &alice);
    let v3 = hkdf_with_counter_offset(&root_seed, shared.as_ref(), b"WhisperRatchet", 1, 64);
    assert_eq!(next_root.0[..], v3[..32]);
    assert_eq!(next_chain.key[..], v3[32..]);
    assert_eq!(next_chain.index, 0);
}

/// libsignal-protocol-c `tests/test_ratchet.c` `test_root_key_derivation_v2` and libaxolotl-java
/// `tests/src/main/java/org/whispersystems/libaxolotl/ratchet/RootKeyTest.java`: the same root
/// step with private key `0x21…` and *unclamped* X25519. This crate (like libsignal today)
/// clamps, so it derives the Java vector above for both `0x20…` and `0x21…`, not this one; the
/// C model reproduces this one. Kept as a record of the C library's behaviour.
#[test]
fn libsignal_c_root_key_vector_uses_unclamped_x25519() {
    const ALICE_PRIVATE_C: &str = "216822ec67eb38049ebae7b939baeaebb151bbb32db80fd389245ac37a948e50";
    let bob = public(ROOT_BOB_PUBLIC);
    let root_seed: [u8; 32] = hex_array(ROOT_SEED);
    let expected_root: [u8; 32] = hex_array("b114f5de28011985e6eba25d50e7ec41a9b02f5693c5c788a63a06d212a2f731");
    let expected_chain: [u8; 32] = hex_array("9d7d2469bc9ae53ee9805aa3264d2499a3ace80f4ccae2da13430c5c55b5ca5f");

    assert_eq!(c_library_public(ALICE_PRIVATE_C), *public(ROOT_ALICE_PUBLIC).as_montgomery());
    assert_ne!(private(ALICE_PRIVATE_C).public_key(), public(ROOT_ALICE_PUBLIC));

    let c_shared = c_library_agree(ALICE_PRIVATE_C, &bob);
    let v2 = hkdf_with_counter_offset(&root_seed, &c_shared, b"WhisperRatchet", 0, 64);
    assert_eq!(v2[..32], expected_root);
    assert_eq!(v2[32..], expected_chain);

    let clamped_shared = private(ALICE_PRIVATE_C).agree(&bob);
    assert_ne!(*clamped_shared, c_shared, "this crate clamps, the C library does not");
}

// ---------------------------------------------------------------------------------------------
// X3DH, as libsignal's "ratcheting session" tests run it (no one-time prekey): the secret is
// 0xFF × 32 ‖ DH(IKa, SPKb) ‖ DH(EKa, IKb) ‖ DH(EKa, SPKb) through HKDF(zero salt, "WhisperText")
// → root key ‖ chain key. Bob's first *sending* chain and Alice's first *receiving* chain are that
// chain key.
// ---------------------------------------------------------------------------------------------

const BOB_IDENTITY_PUBLIC: &str = "05f1f43874f6966956c2dd473f8fa15adeb71d1cb991b2341692324cefb1c5e626";
const BOB_IDENTITY_PRIVATE: &str = "4875cc69ddf8ea0719ec947d61081135868d5fd801f02c0225e516df2156605e";
const BOB_SIGNED_PREKEY_PUBLIC: &str = "05ac248a8f263be6863576eb0362e28c828f0107a3379d34bab1586bf8c770cd67";
const BOB_SIGNED_PREKEY_PRIVATE: &str = "583900131fb727998b7803fe6ac22cc591f342e4e42a8c8d5d78194209b8d253";
const ALICE_IDENTITY_PUBLIC: &str = "05b4a8455660ada65b401007f615e654041746432e3339c6875149bceefcb42b4a";
const ALICE_IDENTITY_PRIVATE: &str = "9040f0d4e09cf38f6dc7c13779c908c015a1da4fa78737a080eb0a6f4f5f8f58";
/// Alice's base key as the older tests give it to Bob: the C library's (unclamped) public key of
/// `ALICE_BASE_PRIVATE`, not the public key a clamping library derives.
const ALICE_BASE_PUBLIC_OLD: &str = "05472d1fb1a9862c3af6beaca8920277e2b26f4a79213ec7c906aeb35e03cf8950";
/// The clamped public key of `ALICE_BASE_PRIVATE`, as the 2023 Java copy of the test gives it.
const ALICE_BASE_PUBLIC_NEW: &str = "05e2c05860f2ac6b2b57ba564b421ffe71e4b128c591e46e0491cc9b33dbf22a27";
const ALICE_BASE_PRIVATE: &str = "11ae7c64d1e61cd596b76a0db5012673391cae66edbfcf073b4da80516a47449";
/// X3DH's chain key with `ALICE_BASE_PUBLIC_OLD` (and, in the C library, for Alice too).
const CHAIN_WITH_OLD_BASE: &str = "9797caca53c989bbe229a40ca7727010eb2604fc14945d77958a0aeda088b44d";
/// X3DH's chain key with the clamped base key, on both sides.
const CHAIN_WITH_BASE_PRIVATE: &str = "ab9be50e5cb22a925446ab90ee5670545f4fd32902459ec274b6ad0ae5d6031a";

fn bob_identity() -> IdentityKeyPair {
    IdentityKeyPair::from_key_pair(key_pair(BOB_IDENTITY_PRIVATE))
}

fn alice_identity() -> IdentityKeyPair {
    IdentityKeyPair::from_key_pair(key_pair(ALICE_IDENTITY_PRIVATE))
}

fn bob_session_chain_key(alice_base_public: &str) -> [u8; 32] {
    let identity = bob_identity();
    let signed_prekey = key_pair(BOB_SIGNED_PREKEY_PRIVATE);
    let state = Responder {
        suite: Suite::SignalV3,
        our_identity: &identity,
        our_signed_prekey: &signed_prekey,
        our_one_time_prekey: None,
        our_registration_id: 2,
        their_identity: &public(ALICE_IDENTITY_PUBLIC),
        their_base_key: &public(alice_base_public),
        their_registration_id: 1,
        kem: None,
    }
    .start()
    .expect("no KEM to fail");
    assert_eq!(state.local_identity, public(BOB_IDENTITY_PUBLIC));
    assert_eq!(state.remote_identity, public(ALICE_IDENTITY_PUBLIC));
    assert_eq!(state.sender_chain.chain_key.index, 0);
    state.sender_chain.chain_key.key
}

/// signalapp/libsignal `rust/protocol/tests/ratchet.rs` `test_ratcheting_session_as_bob`; same
/// bytes in libsignal-protocol-c `tests/test_ratchet.c`, libsignal-protocol-java
/// `RatchetingSessionTest.testRatchetingSessionAsBob`, and signalapp/libsignal
/// `java/client/src/test/.../ratchet/RatchetingSessionTest.java`.
///
/// libsignal's test gives Bob a separate "ephemeral" ratchet key pair (`052cb497…`); it does not
/// enter X3DH, so the chain key does not depend on it. This crate's responder uses its signed
/// prekey as its first ratchet key, as libsignal's session builder does.
#[test]
fn libsignal_x3dh_as_bob_sender_chain() {
    assert_eq!(bob_session_chain_key(ALICE_BASE_PUBLIC_OLD), hex_array(CHAIN_WITH_OLD_BASE));
}

/// The 2023 Java copy of the same test (package `org.signal.libsignal.protocol.ratchet`, the
/// index did not record its repository) hands Bob the clamped base public key and expects
/// ab9b… — the value Alice derives below. This is the vector under which both sides agree.
#[test]
fn libsignal_x3dh_as_bob_with_clamped_base_key() {
    assert_eq!(key_pair(ALICE_BASE_PRIVATE).public, public(ALICE_BASE_PUBLIC_NEW));
    assert_eq!(bob_session_chain_key(ALICE_BASE_PUBLIC_NEW), hex_array(CHAIN_WITH_BASE_PRIVATE));
}

/// signalapp/libsignal `rust/protocol/tests/ratchet.rs` `test_ratcheting_session_as_alice` and
/// `java/client/src/test/.../ratchet/RatchetingSessionTest.java` `testRatchetingSessionAsAlice`
/// (same bytes in libsignal-protocol-java, whose old expectation 9797… is left commented out).
/// The receiving chain is keyed to Bob's ratchet key, which this crate takes to be his signed
/// prekey; the chain key itself is X3DH's.
#[test]
fn libsignal_x3dh_as_alice_receiver_chain() {
    let identity = alice_identity();
    let base = key_pair(ALICE_BASE_PRIVATE);
    let bob_identity = public(BOB_IDENTITY_PUBLIC);
    let bob_signed_prekey = public(BOB_SIGNED_PREKEY_PUBLIC);
    let state = Initiator {
        suite: Suite::SignalV3,
        our_identity: &identity,
        our_base_key: &base,
        our_registration_id: 1,
        their_identity: &bob_identity,
        their_registration_id: 2,
        their_signed_prekey_id: 1,
        their_signed_prekey: &bob_signed_prekey,
        their_one_time_prekey: None,
        their_kem_prekey: None,
    }
    .start(&mut rand::rng());
    assert_eq!(state.local_identity, public(ALICE_IDENTITY_PUBLIC));
    assert_eq!(state.remote_identity, bob_identity);
    assert_eq!(state.receiver_chains.len(), 1);
    assert_eq!(state.receiver_chains[0].ratchet_key, bob_signed_prekey);
    assert_eq!(state.receiver_chains[0].chain_key.index, 0);
    assert_eq!(state.receiver_chains[0].chain_key.key, hex_array(CHAIN_WITH_BASE_PRIVATE));
}

/// Why libsignal's Bob and Alice vectors disagree (9797… vs ab9b…). The consistent key pairs are
/// consistent; the three private keys with their low three bits set carry the C library's
/// unclamped public keys. libsignal-protocol-c `tests/test_ratchet.c` expects 9797… for Alice as
/// well (`receiverAndSenderChain`), which only an unclamped X25519 gives: the C model reproduces
/// it from the X3DH definition (with this crate's HKDF), the crate does not.
#[test]
fn libsignal_x3dh_vector_discrepancy_is_clamping() {
    assert_eq!(key_pair(BOB_IDENTITY_PRIVATE).public, public(BOB_IDENTITY_PUBLIC));
    assert_eq!(key_pair(BOB_SIGNED_PREKEY_PRIVATE).public, public(BOB_SIGNED_PREKEY_PUBLIC));
    assert_eq!(key_pair(ALICE_IDENTITY_PRIVATE).public, public(ALICE_IDENTITY_PUBLIC));
    for (private_hex, published) in [
        (ALICE_BASE_PRIVATE, ALICE_BASE_PUBLIC_OLD),
        // Bob's separate ratchet key pair from the same tests.
        (
            "a1cab48f7c893fafa9880a28c3b4999d28d6329562d27a4ea4e22e9ff1bdd65a",
            "052cb49776b8770205745a3a6e24f579cdb4ba7a89041005928ebbadc9c05ad458",
        ),
    ] {
        assert_ne!(key_pair(private_hex).public, public(published));
        assert_eq!(c_library_public(private_hex), *public(published).as_montgomery());
    }

    let mut secret = vec![0xff; 32];
    secret.extend_from_slice(&c_library_agree(ALICE_IDENTITY_PRIVATE, &public(BOB_SIGNED_PREKEY_PUBLIC)));
    secret.extend_from_slice(&c_library_agree(ALICE_BASE_PRIVATE, &public(BOB_IDENTITY_PUBLIC)));
    secret.extend_from_slice(&c_library_agree(ALICE_BASE_PRIVATE, &public(BOB_SIGNED_PREKEY_PUBLIC)));
    let mut derived = [0u8; 64];
    kdf::hkdf_zero_salt(&secret, b"WhisperText", &mut derived);
    assert_eq!(derived[32..], hex_array::<32>(CHAIN_WITH_OLD_BASE), "the C library's Alice");
}

// ---------------------------------------------------------------------------------------------
// HKDF itself: libsignal's HKDF v3 is RFC 5869.
// ---------------------------------------------------------------------------------------------

/// signalapp/libsignal `java/client/src/test/java/org/signal/libsignal/protocol/kdf/HKDFTest.java`
/// `testVectorV3` and `testVectorLongV3` (RFC 5869 A.1 and A.2).
#[test]
fn libsignal_hkdf_v3_vectors() {
    let mut okm = [0u8; 42];
    let (salt, info) = (hex_array::<13>("000102030405060708090a0b0c"), hex_array::<10>("f0f1f2f3f4f5f6f7f8f9"));
    kdf::hkdf(&salt, &[0x0b; 22], &info, &mut okm);
    assert_eq!(
        okm,
        hex_array("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
    );

    let ikm: Vec<u8> = (0x00..=0x4f).collect();
    let salt: Vec<u8> = (0x60..=0xaf).collect();
    let info: Vec<u8> = (0xb0..=0xff).collect();
    let mut okm = [0u8; 82];
    kdf::hkdf(&salt, &ikm, &info, &mut okm);
    assert_eq!(
        okm,
        hex_array(concat!(
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c",
            "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71",
            "cc30c58179ec3e87c14c01d5c1f3434f1d87"
        ))
    );
}

/// libsignal derives with `Hkdf::new(None, …)` (Rust) or a 32-byte zero salt (Java, C): RFC 5869
/// makes an absent salt a string of HashLen zeros, so both are `hkdf_zero_salt`. Checked on
/// RFC 5869 A.3 (empty salt, empty info; also Wycheproof `hkdf_sha256_test.json` tcId 2).
#[test]
fn zero_salt_is_rfc5869_absent_salt() {
    let mut okm = [0u8; 42];
    kdf::hkdf_zero_salt(&[0x0b; 22], b"", &mut okm);
    assert_eq!(
        okm,
        hex_array("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")
    );
}

// ---------------------------------------------------------------------------------------------
// Safety numbers: libsignal's displayable fingerprint. Hash input is version 0 (two bytes) ‖ the
// 33-byte key ‖ the stable id, then `iterations` rounds of SHA-512(hash ‖ key); 30 bytes → six
// 5-byte big-endian chunks mod 100000; the smaller 30-digit half first. The "version" 1/2 of
// libsignal's API changes only the scannable (QR) encoding, not these digits.
// ---------------------------------------------------------------------------------------------

const FP_ALICE_KEY: &str = "0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868";
const FP_BOB_KEY: &str = "05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b";
const FP_ALICE_ID: &[u8] = b"+14152222222";
const FP_BOB_ID: &[u8] = b"+14153333333";
const FP_DISPLAY: &str = "300354477692869396892869876765458257569162576843440918079131";

/// signalapp/libsignal `rust/protocol/src/fingerprint.rs` `fingerprint_test_v1` /
/// `fingerprint_test_v2` and `java/client/src/test/.../fingerprint/NumericFingerprintGeneratorTest.java`
/// `testVectorsVersion1` (5200 iterations).
#[test]
fn libsignal_safety_number() {
    assert_eq!(SAFETY_NUMBER_ITERATIONS, 5200, "the iteration count of libsignal's vector and Signal's apps");
    let alice = public(FP_ALICE_KEY);
    let bob = public(FP_BOB_KEY);
    assert_eq!(safety_number(FP_ALICE_ID, &alice, FP_BOB_ID, &bob, 5200), FP_DISPLAY);
    assert_eq!(safety_number(FP_BOB_ID, &bob, FP_ALICE_ID, &alice, 5200), FP_DISPLAY);
    // A changed identifier or key changes the digits.
    assert_ne!(safety_number(b"+14152222223", &alice, FP_BOB_ID, &bob, 5200), FP_DISPLAY);
    assert_ne!(safety_number(FP_ALICE_ID, &bob, FP_BOB_ID, &alice, 5200), FP_DISPLAY);
}

/// The same test's scannable fingerprints carry the first 32 bytes of each side's final hash
/// (`…0a20 ‖ 32 bytes`). Encoding their first 30 bytes as digits must give the two halves of the
/// displayable string: this ties the vector's hash to its digits without using the crate, and so
/// shows the display string above tests the whole pipeline (hash input, iteration count, encoding,
/// ordering).
#[test]
fn libsignal_safety_number_halves_match_published_hashes() {
    fn digits(hash: &[u8]) -> String {
        hash[..30]
            .chunks(5)
            .map(|c| format!("{:05}", c.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)) % 100_000))
            .collect()
    }
    let alice_hash: [u8; 32] = hex_array("1e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df");
    let bob_hash: [u8; 32] = hex_array("d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d");
    let (a, b) = (digits(&alice_hash), digits(&bob_hash));
    let expected = if a <= b { a + &b } else { b + &a };
    assert_eq!(expected, FP_DISPLAY);
}
