//! Signatures by Curve25519 keys, in the form Signal's libraries write them (libsignal-protocol-c's
//! `curve25519_sign`, libsignal's `calculate_signature`): an Ed25519 signature under the Edwards
//! point of the Curve25519 private scalar, with the sign bit of that point carried in the top bit
//! of the signature's last byte, since the Montgomery public key does not record it.
//!
//! The nonce is derived as XEdDSA derives it: SHA-512 over a domain prefix, the private scalar, the
//! message and 64 random bytes. Verification is strict: `s` must be reduced modulo the group order.

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Length of a signature.
pub const SIGNATURE_LEN: usize = 64;

/// Separates the nonce hash from the challenge hash (XEdDSA's hash_1 prefix).
const NONCE_PREFIX: [u8; 32] = {
    let mut prefix = [0xff; 32];
    prefix[0] = 0xfe;
    prefix
};

/// A private key's Edwards form, computed once so that repeated signing (group messages) pays
/// for one base-point multiplication per signature, not two.
#[derive(Clone)]
pub struct EdwardsSigningKey {
    scalar: Scalar,
    private: Zeroizing<[u8; 32]>,
    public: CompressedEdwardsY,
}

impl EdwardsSigningKey {
    /// Prepares `private` (clamped scalar bytes) for signing.
    pub fn new(private: &[u8; 32]) -> Self {
        Self::with_public_point(private).0
    }

    /// [`Self::new`], also giving the public point `A = a·B` it computed. Its Montgomery form
    /// ([`EdwardsPoint::to_montgomery`]) is the X25519 public key of `private`, so a new key pair
    /// costs one base-point multiplication for both forms.
    pub fn with_public_point(private: &[u8; 32]) -> (Self, EdwardsPoint) {
        let scalar = Scalar::from_bytes_mod_order(*private);
        let point = &scalar * ED25519_BASEPOINT_TABLE;
        (EdwardsSigningKey { scalar, private: Zeroizing::new(*private), public: point.compress() }, point)
    }

    /// The compressed Edwards public key, its top bit the sign of `x`.
    pub fn public(&self) -> &CompressedEdwardsY {
        &self.public
    }

    /// Signs `message` with 64 bytes of fresh randomness.
    pub fn sign(&self, message: &[u8], random: &[u8; 64]) -> [u8; SIGNATURE_LEN] {
        let mut nonce_hash = Sha512::new();
        nonce_hash.update(NONCE_PREFIX);
        nonce_hash.update(self.private.as_ref());
        nonce_hash.update(message);
        nonce_hash.update(random);
        let r = Zeroizing::new(scalar_from_hash(nonce_hash));
        let big_r = (&*r * ED25519_BASEPOINT_TABLE).compress();

        let h = challenge(big_r.as_bytes(), self.public.as_bytes(), message);
        let s = h * self.scalar + *r;

        let mut signature = [0u8; SIGNATURE_LEN];
        signature[..32].copy_from_slice(big_r.as_bytes());
        signature[32..].copy_from_slice(s.as_bytes());
        signature[63] = (signature[63] & 0x7f) | (self.public.as_bytes()[31] & 0x80);
        signature
    }
}

impl Drop for EdwardsSigningKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.scalar);
    }
}

/// Signs `message` with the clamped Curve25519 scalar `private`.
pub fn sign(private: &[u8; 32], message: &[u8], random: &[u8; 64]) -> [u8; SIGNATURE_LEN] {
    EdwardsSigningKey::new(private).sign(message, random)
}

/// A Curve25519 public key and a signature, turned into the Ed25519 public key and signature they
/// stand for. `None` when the key has no Edwards form or the signature is malformed.
pub fn to_ed25519(montgomery: &[u8; 32], signature: &[u8]) -> Option<([u8; 32], [u8; SIGNATURE_LEN])> {
    let signature: &[u8; SIGNATURE_LEN] = signature.try_into().ok()?;
    let sign_bit = signature[63] >> 7;
    let point = MontgomeryPoint(*montgomery).to_edwards(sign_bit)?;
    let mut ed_signature = *signature;
    ed_signature[63] &= 0x7f;
    Some((point.compress().to_bytes(), ed_signature))
}

/// Checks `signature` over `message` against the Curve25519 public key `montgomery`.
pub fn verify(montgomery: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let Ok(signature) = <&[u8; SIGNATURE_LEN]>::try_from(signature) else {
        return false;
    };
    let Some(point) = MontgomeryPoint(*montgomery).to_edwards(signature[63] >> 7) else {
        return false;
    };
    verify_edwards(&point, &point.compress(), message, signature)
}

/// Checks a signature against an already decompressed Edwards public key (cached by callers that
/// verify many signatures from one key).
pub fn verify_edwards(
    point: &EdwardsPoint,
    compressed: &CompressedEdwardsY,
    message: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> bool {
    if (compressed.as_bytes()[31] ^ signature[63]) & 0x80 != 0 {
        return false;
    }
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&signature[32..]);
    s_bytes[31] &= 0x7f;
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
        return false;
    };
    let h = challenge(&signature[..32], compressed.as_bytes(), message);
    let expected_r = EdwardsPoint::vartime_double_scalar_mul_basepoint(&h, &-point, &s).compress();
    expected_r.as_bytes().ct_eq(&signature[..32]).into()
}

fn challenge(r: &[u8], public: &[u8; 32], message: &[u8]) -> Scalar {
    let mut hash = Sha512::new();
    hash.update(r);
    hash.update(public);
    hash.update(message);
    scalar_from_hash(hash)
}

fn scalar_from_hash(hash: Sha512) -> Scalar {
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&hash.finalize());
    let scalar = Scalar::from_bytes_mod_order_wide(&wide);
    zeroize::Zeroize::zeroize(&mut wide);
    scalar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyPair;

    #[test]
    fn signatures_verify_and_bind_key_and_message() {
        let mut rng = rand::rng();
        for _ in 0..32 {
            let pair = KeyPair::generate(&mut rng);
            let other = KeyPair::generate(&mut rng);
            let signature = pair.private.sign(b"message", &mut rng);
            assert!(pair.public.verify_signature(b"message", &signature));
            assert!(!pair.public.verify_signature(b"messagf", &signature));
            assert!(!other.public.verify_signature(b"message", &signature));
        }
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let mut rng = rand::rng();
        let pair = KeyPair::generate(&mut rng);
        let signature = pair.private.sign(b"m", &mut rng);
        for bit in 0..SIGNATURE_LEN * 8 {
            let mut bad = signature;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(!pair.public.verify_signature(b"m", &bad), "bit {bit}");
        }
        assert!(!pair.public.verify_signature(b"m", &signature[..63]));
    }

    #[test]
    fn unreduced_s_is_rejected() {
        let mut rng = rand::rng();
        let pair = KeyPair::generate(&mut rng);
        let mut signature = pair.private.sign(b"m", &mut rng);
        // s + l has the same value modulo l and still fits in 253 bits for most s.
        let order: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let sign_bit = signature[63] & 0x80;
        signature[63] &= 0x7f;
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = signature[32 + i] as u16 + order[i] as u16 + carry;
            signature[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        signature[63] |= sign_bit;
        assert!(!pair.public.verify_signature(b"m", &signature));
    }

    #[test]
    fn signatures_verify_as_ed25519() {
        let mut rng = rand::rng();
        let pair = KeyPair::generate(&mut rng);
        let signature = pair.private.sign(b"batch me", &mut rng);
        let (ed_public, ed_signature) = to_ed25519(pair.public.as_montgomery(), &signature).unwrap();
        let point = CompressedEdwardsY(ed_public).decompress().unwrap();
        let mut with_bit = ed_signature;
        with_bit[63] |= ed_public[31] & 0x80;
        assert!(verify_edwards(&point, &CompressedEdwardsY(ed_public), b"batch me", &with_bit));
    }
}
