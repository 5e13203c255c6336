//! Safety numbers (libsignal's displayable fingerprints) and signature checks.

use std::ffi::{CStr, CString};
use std::os::raw::c_int;
use std::ptr;

use libsignal_protocol_sys as sys;

use crate::crypto::Context;
use crate::error::Error;
use crate::ffi::{FingerprintGenerator, Ref};
use crate::party::decode_public;

// libsignal-protocol-sys 0.1.0's pregenerated bindings leave this constructor out, although the
// library it builds exports it; declared here with the signature from fingerprint.h.
unsafe extern "C" {
    fn fingerprint_generator_create(
        generator: *mut *mut sys::fingerprint_generator,
        iterations: c_int,
        scannable_version: c_int,
        global_context: *mut sys::signal_context,
    ) -> c_int;
}

/// The scannable (QR) format version; only the displayable text is used here, which does not
/// depend on it.
const SCANNABLE_VERSION: c_int = 1;

/// libsignal's displayable fingerprint ("safety number") for two identities: 60 decimal digits,
/// the same string on both sides (the two 30-digit halves are ordered, not local-first).
///
/// `local_id`/`remote_id` are the stable identifiers (e.g. phone numbers); the C library reads
/// them as C strings, so an identifier containing a NUL byte is rejected. `iterations` is the
/// hash iteration count (5200 in Signal; it must be the same on both sides) and must fit an
/// `int`. Identity keys must be 0x05 followed by 32 bytes ([`Error::InvalidKey`] otherwise).
pub fn safety_number(
    iterations: u32,
    local_id: &[u8],
    local_identity: &[u8; 33],
    remote_id: &[u8],
    remote_identity: &[u8; 33],
) -> Result<String, Error> {
    let iterations = c_int::try_from(iterations).map_err(|_| {
        Error::invalid_argument(format!("iterations {iterations} exceeds i32::MAX"))
    })?;
    let local_id = CString::new(local_id)
        .map_err(|_| Error::invalid_argument("local stable identifier contains a NUL byte"))?;
    let remote_id = CString::new(remote_id)
        .map_err(|_| Error::invalid_argument("remote stable identifier contains a NUL byte"))?;
    // The fingerprint code needs a context for SHA-512; it draws no randomness.
    let ctx = Context::new(0)?;
    let g = ctx.as_ptr();
    let local_key = decode_public(g, local_identity, "local identity key")?;
    let remote_key = decode_public(g, remote_identity, "remote identity key")?;
    // SAFETY: owned generator and fingerprint, released on return; strings outlive the calls.
    unsafe {
        let generator = FingerprintGenerator::create("creating a fingerprint generator", |out| {
            fingerprint_generator_create(out, iterations, SCANNABLE_VERSION, g)
        })?;
        let fingerprint = Ref::<sys::fingerprint>::create("computing a fingerprint", |out| {
            sys::fingerprint_generator_create_for(
                generator.as_ptr(),
                local_id.as_ptr(),
                local_key.as_ptr(),
                remote_id.as_ptr(),
                remote_key.as_ptr(),
                out,
            )
        })?;
        let displayable = sys::fingerprint_get_displayable(fingerprint.as_ptr());
        if displayable.is_null() {
            return Err(Error::null("getting the displayable fingerprint"));
        }
        let text = sys::displayable_fingerprint_text(displayable);
        if text.is_null() {
            return Err(Error::null("getting the displayable fingerprint text"));
        }
        Ok(CStr::from_ptr(text).to_string_lossy().into_owned())
    }
}

/// Whether `signature` is a valid XEdDSA signature (libsignal's `curve_verify_signature`) by
/// `public_key33` (0x05 followed by 32 bytes) over `message`. Malformed keys or signatures (not
/// 64 bytes) are simply not valid: this never fails or panics.
pub fn verify_signature(public_key33: &[u8], message: &[u8], signature: &[u8]) -> bool {
    if signature.len() != sys::CURVE_SIGNATURE_LEN as usize {
        return false;
    }
    // Decoding a point needs no context (it is only used for logging).
    let Ok(key) = decode_public(ptr::null_mut(), public_key33, "public key") else {
        return false;
    };
    // SAFETY: live key; slices of the stated lengths.
    unsafe {
        sys::curve_verify_signature(
            key.as_ptr(),
            message.as_ptr(),
            message.len(),
            signature.as_ptr(),
            signature.len(),
        ) == 1
    }
}
