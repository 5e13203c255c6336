//! The symmetric ciphers of the two suites. Both take the per-message keys and never see a key
//! twice: every message has keys of its own.

use aes::Aes256;
use aes_gcm::aead::AeadInOut;
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{Aes256Gcm, KeyInit as _};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};

use crate::error::{Error, Result};

/// Length of the CBC ciphertext of a `plaintext_len`-byte plaintext: padded to whole blocks, and
/// always at least one byte of padding.
pub(crate) fn cbc_len(plaintext_len: usize) -> usize {
    (plaintext_len / 16 + 1) * 16
}

/// AES-256-CBC with PKCS#7 padding, as libsignal uses it, appending the ciphertext to `out`: a
/// message is framed in the buffer it is encrypted into.
pub(crate) fn cbc_encrypt_into(key: &[u8; 32], iv: &[u8; 16], plaintext: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + cbc_len(plaintext.len()), 0);
    cbc::Encryptor::<Aes256>::new(key.into(), iv.into())
        .encrypt_padded_b2b::<Pkcs7>(plaintext, &mut out[start..])
        .expect("room for the padding was made");
}

/// Inverse of [`cbc_encrypt_into`]; fails on a length that is not a whole number of blocks or on bad
/// padding. Callers check the MAC first, so this never acts as a padding oracle.
pub(crate) fn cbc_decrypt(key: &[u8; 32], iv: &[u8; 16], ciphertext: &[u8]) -> Result<Vec<u8>> {
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(16) {
        return Err(Error::InvalidMessage("CBC ciphertext is not a whole number of blocks"));
    }
    cbc::Decryptor::<Aes256>::new(key.into(), iv.into())
        .decrypt_padded_vec::<Pkcs7>(ciphertext)
        .map_err(|_| Error::InvalidMessage("bad CBC padding"))
}

/// [`cbc_decrypt`] in place: the plaintext is left at the start of `buffer`, and its length
/// returned. On bad padding `buffer` is given back its ciphertext (the blocks are decrypted
/// before the padding can be checked): a failure leaves it as it was. Callers check the MAC
/// first.
pub(crate) fn cbc_decrypt_in_place(key: &[u8; 32], iv: &[u8; 16], buffer: &mut [u8]) -> Result<usize> {
    if buffer.is_empty() || !buffer.len().is_multiple_of(16) {
        return Err(Error::InvalidMessage("CBC ciphertext is not a whole number of blocks"));
    }
    let decrypted = cbc::Decryptor::<Aes256>::new(key.into(), iv.into()).decrypt_padded::<Pkcs7>(buffer).map(<[u8]>::len);
    decrypted.map_err(|_| {
        // CBC encryption under the same key and IV gives the ciphertext back.
        let mut restore = cbc::Encryptor::<Aes256>::new(key.into(), iv.into());
        for block in buffer.chunks_exact_mut(16) {
            restore.encrypt_block(block.try_into().expect("16 bytes"));
        }
        Error::InvalidMessage("bad CBC padding")
    })
}

/// Length of an AES-256-GCM tag.
pub(crate) const GCM_TAG_LEN: usize = 16;

/// AES-256-GCM, appending ciphertext and then the 16-byte tag to `out`.
pub(crate) fn gcm_encrypt_into(key: &[u8; 32], nonce: &[u8], plaintext: &[u8], aad: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + plaintext.len(), 0);
    let buffer = InOutBuf::new(plaintext, &mut out[start..]).expect("same lengths");
    let tag = Aes256Gcm::new(key.into())
        .encrypt_inout_detached(nonce.try_into().expect("12-byte nonce"), aad, buffer)
        .expect("plaintexts are bounded far below GCM's limit");
    out.extend_from_slice(&tag);
}

/// [`gcm_decrypt`] in place, `buffer` holding the ciphertext and then the tag: the plaintext is
/// left at the start of `buffer`, and its length returned. The tag is checked before anything is
/// decrypted: when it does not verify, `buffer` is as it was.
pub(crate) fn gcm_decrypt_in_place(key: &[u8; 32], nonce: &[u8], buffer: &mut [u8], aad: &[u8]) -> Result<usize> {
    let invalid = || Error::InvalidMessage("AES-GCM tag does not verify");
    let body_len = buffer.len().checked_sub(GCM_TAG_LEN).ok_or_else(invalid)?;
    let (body, tag) = buffer.split_at_mut(body_len);
    Aes256Gcm::new(key.into())
        .decrypt_inout_detached(nonce.try_into().expect("12-byte nonce"), aad, InOutBuf::from(body), (&*tag).try_into().expect("16 bytes"))
        .map_err(|_| invalid())?;
    Ok(body_len)
}

/// Inverse of [`gcm_encrypt_into`]; fails when the tag does not verify.
pub(crate) fn gcm_decrypt(key: &[u8; 32], nonce: &[u8], ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    let invalid = || Error::InvalidMessage("AES-GCM tag does not verify");
    let body_len = ciphertext.len().checked_sub(GCM_TAG_LEN).ok_or_else(invalid)?;
    let (body, tag) = ciphertext.split_at(body_len);
    let mut plaintext = vec![0u8; body_len];
    let buffer = InOutBuf::new(body, &mut plaintext).expect("same lengths");
    Aes256Gcm::new(key.into())
        .decrypt_inout_detached(nonce.try_into().expect("12-byte nonce"), aad, buffer, tag.try_into().expect("16 bytes"))
        .map_err(|_| invalid())?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const IV: [u8; 16] = [9; 16];

    #[test]
    fn in_place_decryption_gives_the_plaintext_or_leaves_the_buffer_as_it_was() {
        let mut framed = Vec::new();
        cbc_encrypt_into(&KEY, &IV, b"a plaintext of some length", &mut framed);
        let mut buffer = framed.clone();
        let length = cbc_decrypt_in_place(&KEY, &IV, &mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"a plaintext of some length");
        // Two blocks whose plaintext ends in 0, no padding PKCS#7 allows: decrypted, refused,
        // and the ciphertext given back.
        let mut unpadded = [0x41u8; 32];
        unpadded[31] = 0;
        let mut encryptor = cbc::Encryptor::<Aes256>::new((&KEY).into(), (&IV).into());
        for block in unpadded.chunks_exact_mut(16) {
            encryptor.encrypt_block(block.try_into().unwrap());
        }
        let mut buffer = unpadded;
        assert!(cbc_decrypt_in_place(&KEY, &IV, &mut buffer).is_err());
        assert_eq!(buffer, unpadded);
        // A tag that does not verify leaves GCM's buffer as it was too.
        let mut sealed = Vec::new();
        gcm_encrypt_into(&KEY, &[3; 12], b"sealed", b"aad", &mut sealed);
        let mut buffer = sealed.clone();
        assert!(gcm_decrypt_in_place(&KEY, &[3; 12], &mut buffer, b"other aad").is_err());
        assert_eq!(buffer, sealed);
        let length = gcm_decrypt_in_place(&KEY, &[3; 12], &mut buffer, b"aad").unwrap();
        assert_eq!(&buffer[..length], b"sealed");
    }
}
