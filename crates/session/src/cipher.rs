//! The symmetric ciphers of the two suites. Both take the per-message keys and never see a key
//! twice: every message has keys of its own.

use aes::Aes256;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit as _};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};

use crate::error::{Error, Result};

/// AES-256-CBC with PKCS#7 padding, as libsignal uses it.
pub(crate) fn cbc_encrypt(key: &[u8; 32], iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    cbc::Encryptor::<Aes256>::new(key.into(), iv.into()).encrypt_padded_vec::<Pkcs7>(plaintext)
}

/// Inverse of [`cbc_encrypt`]; fails on a length that is not a whole number of blocks or on bad
/// padding. Callers check the MAC first, so this never acts as a padding oracle.
pub(crate) fn cbc_decrypt(key: &[u8; 32], iv: &[u8; 16], ciphertext: &[u8]) -> Result<Vec<u8>> {
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(16) {
        return Err(Error::InvalidMessage("CBC ciphertext is not a whole number of blocks"));
    }
    cbc::Decryptor::<Aes256>::new(key.into(), iv.into())
        .decrypt_padded_vec::<Pkcs7>(ciphertext)
        .map_err(|_| Error::InvalidMessage("bad CBC padding"))
}

/// AES-256-GCM: ciphertext followed by the 16-byte tag.
pub(crate) fn gcm_encrypt(key: &[u8; 32], nonce: &[u8], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    Aes256Gcm::new(key.into())
        .encrypt(nonce.try_into().expect("12-byte nonce"), Payload { msg: plaintext, aad })
        .expect("plaintexts are bounded far below GCM's limit")
}

/// Inverse of [`gcm_encrypt`]; fails when the tag does not verify.
pub(crate) fn gcm_decrypt(key: &[u8; 32], nonce: &[u8], ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    Aes256Gcm::new(key.into())
        .decrypt(nonce.try_into().expect("12-byte nonce"), Payload { msg: ciphertext, aad })
        .map_err(|_| Error::InvalidMessage("AES-GCM tag does not verify"))
}
