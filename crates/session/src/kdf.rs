//! The key-derivation steps shared by X3DH, the Double Ratchet and Sender Keys: HKDF-SHA256 with a
//! 32-byte zero salt unless one is given (libsignal's v3 choice), and HMAC-SHA256.

use hkdf::Hkdf;
use hmac::digest::{FixedOutput, Output};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Expands `ikm` under `salt` and `info` into `okm` (at most 255 × 32 bytes; every caller asks
/// for a fixed, smaller length).
pub(crate) fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8], okm: &mut [u8]) {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, okm)
        .expect("every caller asks for at most 80 bytes");
}

/// HKDF with libsignal's zero salt.
pub(crate) fn hkdf_zero_salt(ikm: &[u8], info: &[u8], okm: &mut [u8]) {
    hkdf(&[0u8; 32], ikm, info, okm)
}

/// An HMAC-SHA256 keyed with `key`, ready for input.
pub(crate) fn hmac(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// HMAC-SHA256 of one byte under a keyed state: the chain step of both ratchets. Cloning the keyed
/// state lets the two steps from one chain key share the key schedule.
pub(crate) fn hmac_byte(keyed: &HmacSha256, byte: u8) -> [u8; 32] {
    let mut mac = keyed.clone();
    mac.update(&[byte]);
    hmac_finish(mac)
}

/// The tag of `mac`. Through `finalize_into` rather than `Mac::finalize`: the latter's
/// `finalize_fixed`, shared with the `hkdf` crate's calls, is compiled out of line in this crate,
/// taking the state by copy.
pub(crate) fn hmac_finish(mac: HmacSha256) -> [u8; 32] {
    let mut tag = Output::<HmacSha256>::default();
    mac.finalize_into(&mut tag);
    tag.into()
}
