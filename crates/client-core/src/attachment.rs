//! Attachments: each file is encrypted with a fresh AES-256-GCM key and stored by a relay as an
//! opaque blob; the key and the blob's SHA-256 travel in the (end-to-end encrypted) message, as an
//! AttachmentPointer. A relay that holds or forwards the blob learns its size and nothing else.

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ClientError;

/// The nonce: every blob has a key of its own, so a fixed nonce never repeats under one key.
const NONCE: [u8; 12] = [0; 12];

/// A file sealed for upload: the blob to store, and the key and digest for the pointer.
pub struct SealedAttachment {
    /// The file under AES-256-GCM (its length plus a 16-byte tag): what the relay stores.
    pub blob: Vec<u8>,
    /// The fresh AES-256 key the blob is encrypted under, for the pointer only.
    pub key: [u8; 32],
    /// SHA-256 of `blob`, checked by [`open`] before it decrypts.
    pub digest: [u8; 32],
}

/// Encrypts `file` under a fresh key.
pub fn seal(file: &[u8], rng: &mut impl Rng) -> SealedAttachment {
    let mut key = [0u8; 32];
    rng.fill_bytes(&mut key);
    let blob = Aes256Gcm::new((&key).into()).encrypt((&NONCE).into(), file).expect("attachments are far below GCM's limit");
    let digest = Sha256::digest(&blob).into();
    SealedAttachment { blob, key, digest }
}

/// Checks a downloaded blob against the pointer's digest, then decrypts it.
pub fn open(blob: &[u8], key: &[u8], digest: &[u8]) -> Result<Vec<u8>, ClientError> {
    let actual: [u8; 32] = Sha256::digest(blob).into();
    if !bool::from(actual.as_slice().ct_eq(digest)) {
        return Err(ClientError::InvalidPayload("attachment does not match its digest"));
    }
    let key: &[u8; 32] = key.try_into().map_err(|_| ClientError::InvalidPayload("attachment key is not 32 bytes"))?;
    Aes256Gcm::new(key.into())
        .decrypt((&NONCE).into(), blob)
        .map_err(|_| ClientError::InvalidPayload("attachment does not decrypt"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_sealed_attachment_opens_and_any_change_is_refused() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let file = b"holiday photo bytes".repeat(100);
        let sealed = seal(&file, &mut rng);
        assert!(!sealed.blob.windows(13).any(|w| w == b"holiday photo"));
        assert_eq!(open(&sealed.blob, &sealed.key, &sealed.digest).unwrap(), file);
        let mut tampered = sealed.blob.clone();
        tampered[5] ^= 1;
        assert!(open(&tampered, &sealed.key, &sealed.digest).is_err());
        let mut wrong_key = sealed.key;
        wrong_key[0] ^= 1;
        assert!(open(&sealed.blob, &wrong_key, &sealed.digest).is_err());
        // Two uploads of one file share nothing: fresh keys.
        assert_ne!(seal(&file, &mut rng).blob, sealed.blob);
    }
}
