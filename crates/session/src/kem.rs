//! The key-encapsulation mechanisms of the post-quantum suites: Kyber-1024 as submitted to NIST's
//! third round (what libsignal's PQXDH prekeys are, key type byte 0x08) and ML-KEM-1024 as FIPS
//! 203 specifies it (key type byte 0x0a, libsignal's number for it as well).
//!
//! Both come from `libcrux-ml-kem`, the implementation libsignal itself uses: one crate for both
//! variants, portable Rust whose arithmetic is formally verified (hax/F*) to be panic-free,
//! constant-time and equal to the specification. It is still checked here, not trusted: the NIST
//! known-answer tests of both variants run against exactly the functions below
//! ([`KemKeyPair::from_seed`], [`KemPublicKey::encapsulate_with_seed`],
//! [`KemSecretKey::decapsulate`]).
//!
//! A public key or ciphertext on the wire is its type byte followed by its bytes, as libsignal
//! serializes them.

use std::fmt;

use libcrux_ml_kem::mlkem1024::{self, MlKem1024Ciphertext, MlKem1024PrivateKey, MlKem1024PublicKey};
use libcrux_ml_kem::{kyber1024, KEY_GENERATION_SEED_SIZE, SHARED_SECRET_SIZE};
use rand_core::CryptoRng;
use zeroize::{Zeroize, Zeroizing};

use crate::error::Error;

/// Length of a Kyber-1024 or ML-KEM-1024 public key, without its type byte.
pub const KEM_PUBLIC_KEY_LEN: usize = 1568;
/// Length of a Kyber-1024 or ML-KEM-1024 secret key.
pub const KEM_SECRET_KEY_LEN: usize = 3168;
/// Length of a Kyber-1024 or ML-KEM-1024 ciphertext, without its type byte.
pub const KEM_CIPHERTEXT_LEN: usize = 1568;
/// Length of the shared secret both give.
pub const KEM_SHARED_SECRET_LEN: usize = SHARED_SECRET_SIZE;
/// Length of the seed deterministic key generation takes (d ‖ z).
pub const KEM_KEYGEN_SEED_LEN: usize = KEY_GENERATION_SEED_SIZE;
/// Length of the seed deterministic encapsulation takes.
pub const KEM_ENCAPS_SEED_LEN: usize = 32;

/// A key-encapsulation mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kem {
    /// CRYSTALS-Kyber-1024, NIST round 3: libsignal's PQXDH.
    Kyber1024,
    /// ML-KEM-1024, FIPS 203.
    MlKem1024,
}

impl Kem {
    /// The byte before every serialized public key and ciphertext of this KEM.
    pub fn type_byte(self) -> u8 {
        match self {
            Kem::Kyber1024 => 0x08,
            Kem::MlKem1024 => 0x0a,
        }
    }

    /// The KEM whose keys start with `byte`.
    pub fn from_type_byte(byte: u8) -> Result<Kem, Error> {
        match byte {
            0x08 => Ok(Kem::Kyber1024),
            0x0a => Ok(Kem::MlKem1024),
            _ => Err(Error::InvalidKey("unknown KEM key type byte")),
        }
    }

    /// The KEM's name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kem::Kyber1024 => "kyber1024",
            Kem::MlKem1024 => "ml-kem-1024",
        }
    }
}

/// Splits `type byte ‖ body`, checking the body's length.
fn split_typed<'a>(bytes: &'a [u8], len: usize, what: &'static str) -> Result<(Kem, &'a [u8]), Error> {
    let (&type_byte, body) = bytes.split_first().ok_or(Error::InvalidKey(what))?;
    let kem = Kem::from_type_byte(type_byte)?;
    if body.len() != len {
        return Err(Error::InvalidKey(what));
    }
    Ok((kem, body))
}

/// A KEM public key: what a bundle carries in a KEM prekey.
#[derive(Clone, PartialEq, Eq)]
pub struct KemPublicKey {
    kem: Kem,
    key: Box<[u8; KEM_PUBLIC_KEY_LEN]>,
}

impl KemPublicKey {
    /// Parses `type byte ‖ key`, refusing a key whose coefficients are not reduced (the check FIPS
    /// 203 asks of an encapsulation key; Kyber keys are held to it too).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let (kem, body) = split_typed(bytes, KEM_PUBLIC_KEY_LEN, "KEM public key is not type byte and 1,568 bytes")?;
        let key: Box<[u8; KEM_PUBLIC_KEY_LEN]> = Box::new(body.try_into().expect("length checked"));
        if !mlkem1024::validate_public_key(&MlKem1024PublicKey::from(&*key)) {
            return Err(Error::InvalidKey("KEM public key is not reduced"));
        }
        Ok(KemPublicKey { kem, key })
    }

    /// `type byte ‖ key`, as bundles carry it and as its signature covers it.
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + KEM_PUBLIC_KEY_LEN);
        out.push(self.kem.type_byte());
        out.extend_from_slice(&self.key[..]);
        out
    }

    /// The KEM the key belongs to.
    pub fn kem(&self) -> Kem {
        self.kem
    }

    /// Encapsulates a fresh shared secret to this key: the ciphertext (`type byte ‖ bytes`) and
    /// the secret.
    pub fn encapsulate<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> (Vec<u8>, Zeroizing<[u8; KEM_SHARED_SECRET_LEN]>) {
        let mut seed = Zeroizing::new([0u8; KEM_ENCAPS_SEED_LEN]);
        rng.fill_bytes(seed.as_mut());
        self.encapsulate_with_seed(&seed)
    }

    /// Deterministic encapsulation from `seed` (what the known-answer tests pin).
    pub fn encapsulate_with_seed(&self, seed: &[u8; KEM_ENCAPS_SEED_LEN]) -> (Vec<u8>, Zeroizing<[u8; KEM_SHARED_SECRET_LEN]>) {
        let public = MlKem1024PublicKey::from(&*self.key);
        let (ciphertext, secret) = match self.kem {
            Kem::Kyber1024 => kyber1024::encapsulate(&public, *seed),
            Kem::MlKem1024 => mlkem1024::encapsulate(&public, *seed),
        };
        let mut out = Vec::with_capacity(1 + KEM_CIPHERTEXT_LEN);
        out.push(self.kem.type_byte());
        out.extend_from_slice(ciphertext.as_ref());
        (out, Zeroizing::new(secret))
    }
}

impl fmt::Debug for KemPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KemPublicKey({}, ", self.kem.name())?;
        for byte in &self.key[..6] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "…)")
    }
}

/// A KEM secret key, zeroized when dropped and never printed.
#[derive(Clone)]
pub struct KemSecretKey {
    kem: Kem,
    key: Box<Zeroizing<[u8; KEM_SECRET_KEY_LEN]>>,
}

impl KemSecretKey {
    /// The secret key's bytes (for the known-answer tests, which pin their hash).
    #[cfg(test)]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.key[..]
    }

    /// Recovers the shared secret from a ciphertext (`type byte ‖ bytes`) of this key's KEM. A
    /// ciphertext of the right form always gives a secret (implicit rejection): a tampered one
    /// gives a different secret, which the first message's MAC or tag then refuses.
    pub fn decapsulate(&self, ciphertext: &[u8]) -> Result<Zeroizing<[u8; KEM_SHARED_SECRET_LEN]>, Error> {
        let (kem, body) = split_typed(ciphertext, KEM_CIPHERTEXT_LEN, "KEM ciphertext is not type byte and 1,568 bytes")?;
        if kem != self.kem {
            return Err(Error::InvalidKey("KEM ciphertext of another KEM than its prekey"));
        }
        let ciphertext = MlKem1024Ciphertext::try_from(body).expect("length checked");
        let private = MlKem1024PrivateKey::from(&**self.key);
        let secret = match self.kem {
            Kem::Kyber1024 => kyber1024::decapsulate(&private, &ciphertext),
            Kem::MlKem1024 => mlkem1024::decapsulate(&private, &ciphertext),
        };
        // The library's key type does not zeroize itself: take its bytes out and wipe them.
        let mut copy: [u8; KEM_SECRET_KEY_LEN] = private.into();
        copy.zeroize();
        Ok(Zeroizing::new(secret))
    }
}

impl fmt::Debug for KemSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KemSecretKey({}, <redacted>)", self.kem.name())
    }
}

/// A KEM key pair.
#[derive(Clone, Debug)]
pub struct KemKeyPair {
    /// The encapsulation key, published in bundles.
    pub public: KemPublicKey,
    /// The decapsulation key; zeroized on drop, redacted in Debug.
    pub secret: KemSecretKey,
}

impl KemKeyPair {
    /// A fresh key pair of `kem`.
    pub fn generate<R: CryptoRng + ?Sized>(kem: Kem, rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; KEM_KEYGEN_SEED_LEN]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(kem, &seed)
    }

    /// Deterministic key generation from `seed` (d ‖ z; what the known-answer tests pin).
    pub fn from_seed(kem: Kem, seed: &[u8; KEM_KEYGEN_SEED_LEN]) -> Self {
        let pair = match kem {
            Kem::Kyber1024 => kyber1024::generate_key_pair(*seed),
            Kem::MlKem1024 => mlkem1024::generate_key_pair(*seed),
        };
        let (private, public) = pair.into_parts();
        let mut secret: [u8; KEM_SECRET_KEY_LEN] = private.into();
        let key = Box::new(Zeroizing::new(secret));
        secret.zeroize();
        KemKeyPair {
            public: KemPublicKey { kem, key: Box::new(public.into()) },
            secret: KemSecretKey { kem, key },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kems_agree_and_refuse_malformed_input() {
        let mut rng = rand::rng();
        for kem in [Kem::Kyber1024, Kem::MlKem1024] {
            let pair = KemKeyPair::generate(kem, &mut rng);
            let public = KemPublicKey::from_bytes(&pair.public.serialize()).unwrap();
            assert_eq!(public, pair.public);
            let (ciphertext, secret) = public.encapsulate(&mut rng);
            assert_eq!(ciphertext[0], kem.type_byte());
            assert_eq!(*pair.secret.decapsulate(&ciphertext).unwrap(), *secret);
            // Implicit rejection: a flipped bit gives another secret, not an error.
            let mut tampered = ciphertext.clone();
            tampered[100] ^= 1;
            assert_ne!(*pair.secret.decapsulate(&tampered).unwrap(), *secret);
            assert!(pair.secret.decapsulate(&ciphertext[..100]).is_err());
            let mut other_kem = ciphertext.clone();
            other_kem[0] = if kem == Kem::Kyber1024 { 0x0a } else { 0x08 };
            assert!(pair.secret.decapsulate(&other_kem).is_err());
            assert!(KemPublicKey::from_bytes(&pair.public.serialize()[..1000]).is_err());
            let mut unreduced = pair.public.serialize();
            unreduced[1..4].copy_from_slice(&[0xff, 0xff, 0xff]);
            assert!(KemPublicKey::from_bytes(&unreduced).is_err());
            assert_eq!(format!("{:?}", pair.secret), format!("KemSecretKey({}, <redacted>)", kem.name()));
        }
    }
}
