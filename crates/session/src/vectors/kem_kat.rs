//! The NIST known-answer tests of both KEMs, through exactly the functions the session crate
//! uses ([`KemKeyPair::from_seed`], [`KemPublicKey::encapsulate_with_seed`],
//! [`KemSecretKey::decapsulate`]) and the serialized forms bundles and messages carry. Data:
//! `data/README.md`.

use serde_json::Value;
use sha3::{Digest, Sha3_256};

use super::hex_array;
use crate::kem::{Kem, KemKeyPair, KemPublicKey};

const KYBER: &str = include_str!("data/kyber1024-round3-nistkats.json");
const ML_KEM: &str = include_str!("data/mlkem1024-fips203-nistkats.json");

fn sha3(bytes: &[u8]) -> [u8; 32] {
    Sha3_256::digest(bytes).into()
}

/// Runs every case of `json` under `kem`; returns how many ran.
fn run(kem: Kem, json: &str) -> usize {
    let cases: Vec<Value> = serde_json::from_str(json).expect("vector file is JSON");
    for (n, case) in cases.iter().enumerate() {
        let field = |name: &str| case[name].as_str().unwrap_or_else(|| panic!("case {n} has no {name}"));
        let pair = KemKeyPair::from_seed(kem, &hex_array(field("key_generation_seed")));
        let public = pair.public.serialize();
        assert_eq!(public[0], kem.type_byte());
        assert_eq!(sha3(&public[1..]), hex_array(field("sha3_256_hash_of_public_key")), "{kem:?} case {n}: public key");
        assert_eq!(sha3(pair.secret.as_bytes()), hex_array(field("sha3_256_hash_of_secret_key")), "{kem:?} case {n}: secret key");

        // The public key as a peer would parse it out of a bundle.
        let parsed = KemPublicKey::from_bytes(&public).expect("a generated key parses");
        let (ciphertext, shared) = parsed.encapsulate_with_seed(&hex_array(field("encapsulation_seed")));
        assert_eq!(sha3(&ciphertext[1..]), hex_array(field("sha3_256_hash_of_ciphertext")), "{kem:?} case {n}: ciphertext");
        let expected: [u8; 32] = hex_array(field("shared_secret"));
        assert_eq!(*shared, expected, "{kem:?} case {n}: encapsulated secret");
        assert_eq!(*pair.secret.decapsulate(&ciphertext).expect("well-formed"), expected, "{kem:?} case {n}: decapsulated secret");
    }
    cases.len()
}

#[test]
fn kyber1024_round3_known_answers() {
    assert_eq!(run(Kem::Kyber1024, KYBER), 100);
}

#[test]
fn ml_kem_1024_fips203_known_answers() {
    assert_eq!(run(Kem::MlKem1024, ML_KEM), 100);
}

/// The two files share their seeds; the variants must still differ in every output (FIPS 203
/// changed key generation and the shared-secret derivation), so neither test can pass by running
/// the other's code.
#[test]
fn the_variants_are_not_interchangeable() {
    let kyber: Vec<Value> = serde_json::from_str(KYBER).unwrap();
    let ml_kem: Vec<Value> = serde_json::from_str(ML_KEM).unwrap();
    for (a, b) in kyber.iter().zip(&ml_kem) {
        assert_eq!(a["key_generation_seed"], b["key_generation_seed"]);
        assert_ne!(a["shared_secret"], b["shared_secret"]);
        assert_ne!(a["sha3_256_hash_of_public_key"], b["sha3_256_hash_of_public_key"]);
    }
}
