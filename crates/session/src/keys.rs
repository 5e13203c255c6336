//! Curve25519 keys as libsignal serializes them: a public key is the type byte 0x05 followed by the
//! 32-byte Montgomery u-coordinate; a private key is the 32-byte clamped scalar.

use std::fmt;

use rand_core::CryptoRng;
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::xeddsa;

/// The type byte libsignal puts before every Curve25519 public key.
pub const DJB_TYPE: u8 = 0x05;
/// Length of a serialized public key: type byte and 32 bytes.
pub const PUBLIC_KEY_LEN: usize = 33;

/// A Curve25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Parses libsignal's serialized form, `0x05 ‖ 32 bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        match bytes {
            [DJB_TYPE, rest @ ..] if rest.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(rest);
                Ok(PublicKey(key))
            }
            [DJB_TYPE, ..] => Err(Error::InvalidKey("public key is not 33 bytes")),
            [] => Err(Error::InvalidKey("public key is empty")),
            _ => Err(Error::InvalidKey("public key type byte is not 0x05")),
        }
    }

    /// Whether the key is what every honest key generation writes: the canonical encoding (a
    /// u-coordinate below 2^255 − 19, top bit clear) of a point of the prime-order subgroup.
    ///
    /// X25519 ignores the top bit and reduces modulo the prime, and its clamped scalars are
    /// multiples of 8, so it gives the same result for P and for P + T with T any of the eight
    /// points of small order (u and 1/u, for one): each key has aliases that agree to the same
    /// secrets. Where a key is compared as bytes but not authenticated (a first message's base
    /// key), only this one encoding is taken. Costs one Edwards decompression and one scalar
    /// multiplication.
    pub fn is_canonical(&self) -> bool {
        let [low, middle @ .., high] = &self.0;
        let at_or_above_prime = *high == 0x7f && middle.iter().all(|byte| *byte == 0xff) && *low >= 0xed;
        if high & 0x80 != 0 || at_or_above_prime {
            return false;
        }
        // On the curve (not its twist) and with no small-order component; the sign chosen for
        // the Edwards point does not matter, as P and −P are both in the subgroup or neither is.
        curve25519_dalek::MontgomeryPoint(self.0).to_edwards(0).is_some_and(|point| point.is_torsion_free())
    }

    /// The serialized form, `0x05 ‖ 32 bytes`.
    pub fn serialize(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut out = [0u8; PUBLIC_KEY_LEN];
        out[0] = DJB_TYPE;
        out[1..].copy_from_slice(&self.0);
        out
    }

    /// The 32-byte Montgomery u-coordinate, without the type byte.
    pub fn as_montgomery(&self) -> &[u8; 32] {
        &self.0
    }

    /// Checks a signature made by the private half of this key (Signal's XEdDSA-compatible form).
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        xeddsa::verify(&self.0, message, signature)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(")?;
        for byte in &self.0[..6] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "…)")
    }
}

/// A Curve25519 private key: the clamped scalar, zeroized when dropped.
#[derive(Clone)]
pub struct PrivateKey(StaticSecret);

impl PrivateKey {
    /// A fresh random private key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_scalar_bytes(*bytes)
    }

    /// A private key from 32 bytes; the bytes are clamped, as libsignal stores them.
    pub fn from_scalar_bytes(mut bytes: [u8; 32]) -> Self {
        bytes[0] &= 248;
        bytes[31] &= 127;
        bytes[31] |= 64;
        let key = PrivateKey(StaticSecret::from(bytes));
        zeroize::Zeroize::zeroize(&mut bytes);
        key
    }

    /// Parses a stored private key (32 bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bytes: [u8; 32] =
            bytes.try_into().map_err(|_| Error::InvalidKey("private key is not 32 bytes"))?;
        Ok(Self::from_scalar_bytes(bytes))
    }

    /// The 32 clamped scalar bytes, for storage. Handle with care.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// X25519 with `their` public key.
    pub fn agree(&self, their: &PublicKey) -> Zeroizing<[u8; 32]> {
        let their = x25519_dalek::PublicKey::from(their.0);
        Zeroizing::new(self.0.diffie_hellman(&their).to_bytes())
    }

    /// Signs `message` (Signal's XEdDSA-compatible Curve25519 signature, 64 bytes).
    pub fn sign<R: CryptoRng + ?Sized>(&self, message: &[u8], rng: &mut R) -> [u8; 64] {
        let mut random = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(random.as_mut());
        xeddsa::sign(&self.to_bytes(), message, &random)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// A private key and its public key.
#[derive(Clone, Debug)]
pub struct KeyPair {
    /// The public half.
    pub public: PublicKey,
    /// The private half; zeroized on drop, redacted in Debug.
    pub private: PrivateKey,
}

impl KeyPair {
    /// A fresh random key pair.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_private(PrivateKey::generate(rng))
    }

    /// The key pair of `private`.
    pub fn from_private(private: PrivateKey) -> Self {
        KeyPair { public: private.public_key(), private }
    }

    /// Rebuilds a stored key pair, checking that the halves belong together.
    pub fn from_stored(public: &[u8], private: &[u8]) -> Result<Self, Error> {
        let pair = Self::from_private(PrivateKey::from_bytes(private)?);
        if pair.public != PublicKey::from_bytes(public)? {
            return Err(Error::InvalidKey("stored public key does not match its private key"));
        }
        Ok(pair)
    }
}

/// A person's long-term identity: a Curve25519 public key used for X3DH and for signatures.
pub type IdentityKey = PublicKey;

/// The identity key pair of the local person, shared by all of their devices.
#[derive(Clone, Debug)]
pub struct IdentityKeyPair(KeyPair);

impl IdentityKeyPair {
    /// A fresh random identity.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        IdentityKeyPair(KeyPair::generate(rng))
    }

    /// Wraps an existing key pair.
    pub fn from_key_pair(pair: KeyPair) -> Self {
        IdentityKeyPair(pair)
    }

    /// The public identity key.
    pub fn identity_key(&self) -> &IdentityKey {
        &self.0.public
    }

    /// The private identity key.
    pub fn private_key(&self) -> &PrivateKey {
        &self.0.private
    }

    /// Serializes as libsignal's IdentityKeyPairStructure.
    pub fn serialize(&self) -> Zeroizing<Vec<u8>> {
        use switchboard_wire::Message;
        let structure = switchboard_wire::signal::IdentityKeyPairStructure {
            public_key: Some(self.0.public.serialize().to_vec()),
            private_key: Some(self.0.private.to_bytes().to_vec()),
        };
        Zeroizing::new(structure.encode_to_vec())
    }

    /// Parses an IdentityKeyPairStructure.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, Error> {
        let structure: switchboard_wire::signal::IdentityKeyPairStructure =
            switchboard_wire::decode(bytes, 256)?;
        let pair = KeyPair::from_stored(
            structure.public_key.as_deref().unwrap_or_default(),
            Zeroizing::new(structure.private_key.unwrap_or_default()).as_slice(),
        )?;
        Ok(IdentityKeyPair(pair))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_round_trips_and_rejects_bad_forms() {
        let mut rng = rand::rng();
        let pair = KeyPair::generate(&mut rng);
        let bytes = pair.public.serialize();
        assert_eq!(bytes[0], 0x05);
        assert_eq!(PublicKey::from_bytes(&bytes).unwrap(), pair.public);
        assert!(PublicKey::from_bytes(&bytes[..32]).is_err());
        assert!(PublicKey::from_bytes(&[]).is_err());
        let mut wrong_type = bytes;
        wrong_type[0] = 0x06;
        assert!(PublicKey::from_bytes(&wrong_type).is_err());
    }

    #[test]
    fn agreement_is_symmetric() {
        let mut rng = rand::rng();
        let a = KeyPair::generate(&mut rng);
        let b = KeyPair::generate(&mut rng);
        assert_eq!(*a.private.agree(&b.public), *b.private.agree(&a.public));
    }

    #[test]
    fn private_keys_are_stored_clamped_and_never_printed() {
        let key = PrivateKey::from_scalar_bytes([0xff; 32]);
        let bytes = key.to_bytes();
        assert_eq!(bytes[0] & 7, 0);
        assert_eq!(bytes[31] & 0xc0, 0x40);
        assert_eq!(format!("{key:?}"), "PrivateKey(<redacted>)");
    }

    #[test]
    fn identity_key_pair_round_trips_and_rejects_mismatched_halves() {
        let mut rng = rand::rng();
        let identity = IdentityKeyPair::generate(&mut rng);
        let restored = IdentityKeyPair::deserialize(&identity.serialize()).unwrap();
        assert_eq!(restored.identity_key(), identity.identity_key());
        let other = KeyPair::generate(&mut rng);
        let mixed = switchboard_wire::signal::IdentityKeyPairStructure {
            public_key: Some(other.public.serialize().to_vec()),
            private_key: Some(identity.private_key().to_bytes().to_vec()),
        };
        use switchboard_wire::Message;
        assert!(IdentityKeyPair::deserialize(&mixed.encode_to_vec()).is_err());
    }
}
