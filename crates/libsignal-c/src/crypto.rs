//! The `signal_crypto_provider` callbacks, implemented in Rust (RustCrypto crates) instead of the
//! old wrapper's OpenSSL glue, and the per-party `signal_context` that carries them.
//!
//! Randomness comes from a seeded ChaCha-based `StdRng`, so a party's keys (and every random
//! choice the C library makes for it) are reproducible from its seed.

use std::cell::RefCell;
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt, KeyInit, KeyIvInit};
use hmac::{HmacReset, Mac};
use libsignal_protocol_sys as sys;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256, Sha512};

use crate::error::Error;
use crate::ffi::{c_slice, guard, new_c_buffer};

/// Environment variable that, when set to anything but "" or "0", sends the C library's log
/// lines to stderr (never stdout).
pub const LOG_ENV: &str = "SWITCHBOARD_C_LOG";

/// What the provider callbacks reach through `user_data`.
struct ProviderState {
    rng: RefCell<StdRng>,
    /// When set, every draw yields these bytes instead (repeated to the length asked, from the
    /// first byte), however many draws C makes.
    repeat: RefCell<Option<[u8; 32]>>,
}

/// A `signal_context` with the Rust crypto provider installed. Owns the provider's state, which
/// must outlive the context (C copies the provider struct, including the `user_data` pointer).
pub(crate) struct Context {
    raw: *mut sys::signal_context,
    state: *mut ProviderState,
}

impl Context {
    /// A fresh global context whose randomness is an RNG seeded with `seed`. No locking
    /// functions are registered: the library re-locks inside decrypt, and the harness is
    /// single-threaded by construction, so none are needed.
    pub(crate) fn new(seed: u64) -> Result<Context, Error> {
        let state = Box::into_raw(Box::new(ProviderState {
            rng: RefCell::new(StdRng::seed_from_u64(seed)),
            repeat: RefCell::new(None),
        }));
        // From here on `ctx` owns `state` (and `raw` once created) and frees them on any exit.
        let mut ctx = Context {
            raw: ptr::null_mut(),
            state,
        };
        // SAFETY: plain C constructors and setters on the context we just created.
        unsafe {
            let code = sys::signal_context_create(&mut ctx.raw, ptr::null_mut());
            if code < 0 || ctx.raw.is_null() {
                let code = if code < 0 { code } else { sys::SG_ERR_NOMEM };
                return Err(Error::from_code(code, "creating signal_context"));
            }
            let provider = sys::signal_crypto_provider {
                random_func: Some(random_func),
                hmac_sha256_init_func: Some(hmac_sha256_init),
                hmac_sha256_update_func: Some(hmac_sha256_update),
                hmac_sha256_final_func: Some(hmac_sha256_final),
                hmac_sha256_cleanup_func: Some(hmac_sha256_cleanup),
                sha512_digest_init_func: Some(sha512_init),
                sha512_digest_update_func: Some(sha512_update),
                sha512_digest_final_func: Some(sha512_final),
                sha512_digest_cleanup_func: Some(sha512_cleanup),
                encrypt_func: Some(encrypt_func),
                decrypt_func: Some(decrypt_func),
                user_data: state.cast(),
            };
            crate::error::check(
                sys::signal_context_set_crypto_provider(ctx.raw, &provider),
                "installing the crypto provider",
            )?;
            if log_enabled() {
                sys::signal_context_set_log_function(ctx.raw, Some(log_func));
            }
        }
        Ok(ctx)
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::signal_context {
        self.raw
    }

    /// Restarts the provider's randomness from `seed`, as if the context had been made with it.
    pub(crate) fn reseed(&self, seed: u64) {
        // SAFETY: `state` is owned by this context and lives as long as it; no C call is running
        // (we hold `&self` on a !Sync type outside any callback).
        let state = unsafe { &*self.state };
        *state.rng.borrow_mut() = StdRng::seed_from_u64(seed);
        *state.repeat.borrow_mut() = None;
    }

    /// Makes every later draw yield `block` (cut or repeated to the length asked), until
    /// [`Context::reseed`].
    pub(crate) fn repeat_randomness(&self, block: [u8; 32]) {
        // SAFETY: as in `reseed`.
        let state = unsafe { &*self.state };
        *state.repeat.borrow_mut() = Some(block);
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: we own both; the context is destroyed before the state it points to.
        unsafe {
            if !self.raw.is_null() {
                sys::signal_context_destroy(self.raw);
            }
            drop(Box::from_raw(self.state));
        }
    }
}

fn log_enabled() -> bool {
    std::env::var_os(LOG_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

unsafe extern "C" fn log_func(
    level: c_int,
    message: *const c_char,
    len: usize,
    _user: *mut c_void,
) {
    let _ = guard(|| {
        // SAFETY: C passes a buffer of `len` bytes.
        let msg = unsafe { c_slice(message.cast(), len) };
        let name = match level as u32 {
            sys::SG_LOG_ERROR => "error",
            sys::SG_LOG_WARNING => "warning",
            sys::SG_LOG_NOTICE => "notice",
            sys::SG_LOG_INFO => "info",
            _ => "debug",
        };
        eprintln!(
            "[libsignal-protocol-c {name}] {}",
            String::from_utf8_lossy(msg)
        );
        0
    });
}

/// Stores a copy of `data` as a new `signal_buffer` in `*output`.
unsafe fn set_output(output: *mut *mut sys::signal_buffer, data: &[u8]) -> c_int {
    if output.is_null() {
        return sys::SG_ERR_INVAL;
    }
    let buf = new_c_buffer(data);
    if buf.is_null() {
        return sys::SG_ERR_NOMEM;
    }
    // SAFETY: checked non-null; C gave us a place to store the result.
    unsafe { *output = buf };
    0
}

unsafe extern "C" fn random_func(data: *mut u8, len: usize, user_data: *mut c_void) -> c_int {
    guard(|| {
        if user_data.is_null() || (data.is_null() && len > 0) {
            return sys::SG_ERR_INVAL;
        }
        // SAFETY: user_data is the ProviderState owned by the live Context.
        let state = unsafe { &*(user_data as *const ProviderState) };
        let Ok(mut rng) = state.rng.try_borrow_mut() else {
            return sys::SG_ERR_UNKNOWN;
        };
        if len > 0 {
            // SAFETY: C passes a writable buffer of `len` bytes.
            let out = unsafe { std::slice::from_raw_parts_mut(data, len) };
            match *state.repeat.borrow() {
                Some(block) => out.iter_mut().zip(block.iter().cycle()).for_each(|(byte, from)| *byte = *from),
                None => rng.fill_bytes(out),
            }
        }
        0
    })
}

// HMAC-SHA256 contexts are boxed Rust MACs handed to C as opaque pointers. `HmacReset` so that
// `final` leaves the context usable, as the provider contract allows.
type HmacSha256 = HmacReset<Sha256>;

unsafe extern "C" fn hmac_sha256_init(
    hmac_context: *mut *mut c_void,
    key: *const u8,
    key_len: usize,
    _user: *mut c_void,
) -> c_int {
    guard(|| {
        if hmac_context.is_null() {
            return sys::SG_ERR_INVAL;
        }
        // SAFETY: C passes a key of `key_len` bytes.
        let key = unsafe { c_slice(key, key_len) };
        let Ok(mac) = HmacSha256::new_from_slice(key) else {
            return sys::SG_ERR_INVAL;
        };
        // SAFETY: checked non-null.
        unsafe { *hmac_context = Box::into_raw(Box::new(mac)).cast() };
        0
    })
}

unsafe extern "C" fn hmac_sha256_update(
    hmac_context: *mut c_void,
    data: *const u8,
    data_len: usize,
    _user: *mut c_void,
) -> c_int {
    guard(|| {
        if hmac_context.is_null() {
            return sys::SG_ERR_INVAL;
        }
        // SAFETY: the context came from hmac_sha256_init and is not yet cleaned up.
        let mac = unsafe { &mut *(hmac_context as *mut HmacSha256) };
        mac.update(unsafe { c_slice(data, data_len) });
        0
    })
}

unsafe extern "C" fn hmac_sha256_final(
    hmac_context: *mut c_void,
    output: *mut *mut sys::signal_buffer,
    _user: *mut c_void,
) -> c_int {
    guard(|| {
        if hmac_context.is_null() {
            return sys::SG_ERR_INVAL;
        }
        // SAFETY: as in update.
        let mac = unsafe { &mut *(hmac_context as *mut HmacSha256) };
        let tag = mac.finalize_reset().into_bytes();
        unsafe { set_output(output, &tag) }
    })
}

unsafe extern "C" fn hmac_sha256_cleanup(hmac_context: *mut c_void, _user: *mut c_void) {
    if !hmac_context.is_null() {
        // SAFETY: the context came from Box::into_raw in init; C cleans up exactly once.
        drop(unsafe { Box::from_raw(hmac_context as *mut HmacSha256) });
    }
}

unsafe extern "C" fn sha512_init(digest_context: *mut *mut c_void, _user: *mut c_void) -> c_int {
    guard(|| {
        if digest_context.is_null() {
            return sys::SG_ERR_INVAL;
        }
        // SAFETY: checked non-null.
        unsafe { *digest_context = Box::into_raw(Box::new(Sha512::new())).cast() };
        0
    })
}

unsafe extern "C" fn sha512_update(
    digest_context: *mut c_void,
    data: *const u8,
    data_len: usize,
    _user: *mut c_void,
) -> c_int {
    guard(|| {
        if digest_context.is_null() {
            return sys::SG_ERR_INVAL;
        }
        // SAFETY: the context came from sha512_init and is not yet cleaned up.
        let digest = unsafe { &mut *(digest_context as *mut Sha512) };
        Digest::update(digest, unsafe { c_slice(data, data_len) });
        0
    })
}

unsafe extern "C" fn sha512_final(
    digest_context: *mut c_void,
    output: *mut *mut sys::signal_buffer,
    _user: *mut c_void,
) -> c_int {
    guard(|| {
        if digest_context.is_null() {
            return sys::SG_ERR_INVAL;
        }
        // SAFETY: as in update. The contract asks that final leaves the context ready for reuse
        // (the fingerprint code iterates init-once, update/final many times).
        let digest = unsafe { &mut *(digest_context as *mut Sha512) };
        let out = digest.finalize_reset();
        unsafe { set_output(output, &out) }
    })
}

unsafe extern "C" fn sha512_cleanup(digest_context: *mut c_void, _user: *mut c_void) {
    if !digest_context.is_null() {
        // SAFETY: the context came from Box::into_raw in init; C cleans up exactly once.
        drop(unsafe { Box::from_raw(digest_context as *mut Sha512) });
    }
}

/// Which way an AES call goes.
#[derive(Clone, Copy)]
enum Direction {
    Encrypt,
    Decrypt,
}

/// AES-CBC with PKCS#7 padding (the library's `SG_CIPHER_AES_CBC_PKCS5`), for AES-128/192/256.
/// Padding is always added on encryption (a full block when the input is block-aligned), which
/// is exactly where the old OpenSSL glue went wrong for inputs of 16 bytes or more.
fn aes_cbc(dir: Direction, key: &[u8], iv: &[u8], input: &[u8]) -> Result<Vec<u8>, c_int> {
    macro_rules! run {
        ($aes:ty) => {
            match dir {
                Direction::Encrypt => cbc::Encryptor::<$aes>::new_from_slices(key, iv)
                    .map_err(|_| sys::SG_ERR_INVAL)
                    .map(|c| c.encrypt_padded_vec::<Pkcs7>(input)),
                Direction::Decrypt => cbc::Decryptor::<$aes>::new_from_slices(key, iv)
                    .map_err(|_| sys::SG_ERR_INVAL)?
                    .decrypt_padded_vec::<Pkcs7>(input)
                    // Bad padding or a length that is not a multiple of the block size.
                    .map_err(|_| sys::SG_ERR_INVALID_MESSAGE),
            }
        };
    }
    match key.len() {
        16 => run!(aes::Aes128),
        24 => run!(aes::Aes192),
        32 => run!(aes::Aes256),
        _ => Err(sys::SG_ERR_INVAL),
    }
}

/// AES-CTR without padding (`SG_CIPHER_AES_CTR_NOPADDING`, used only by protocol version 2
/// sessions): the 16-byte IV is the initial counter block, incremented as one 128-bit
/// big-endian integer, as OpenSSL's EVP_aes_*_ctr does. Encryption and decryption coincide.
fn aes_ctr(key: &[u8], iv: &[u8], input: &[u8]) -> Result<Vec<u8>, c_int> {
    let Ok(iv) = <[u8; 16]>::try_from(iv) else {
        return Err(sys::SG_ERR_INVAL);
    };
    macro_rules! run {
        ($aes:ty) => {{
            let cipher = <$aes>::new_from_slice(key).map_err(|_| sys::SG_ERR_INVAL)?;
            let mut counter = u128::from_be_bytes(iv);
            let mut out = Vec::with_capacity(input.len());
            for chunk in input.chunks(16) {
                let mut block = aes::Block::from(counter.to_be_bytes());
                cipher.encrypt_block(&mut block);
                out.extend(chunk.iter().zip(block.iter()).map(|(a, b)| a ^ b));
                counter = counter.wrapping_add(1);
            }
            Ok(out)
        }};
    }
    match key.len() {
        16 => run!(aes::Aes128),
        24 => run!(aes::Aes192),
        32 => run!(aes::Aes256),
        _ => Err(sys::SG_ERR_INVAL),
    }
}

/// Shared body of the encrypt and decrypt callbacks.
#[allow(clippy::too_many_arguments)]
unsafe fn aes_callback(
    dir: Direction,
    output: *mut *mut sys::signal_buffer,
    cipher: c_int,
    key: *const u8,
    key_len: usize,
    iv: *const u8,
    iv_len: usize,
    input: *const u8,
    input_len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: C passes buffers of the stated lengths.
        let (key, iv, input) = unsafe {
            (
                c_slice(key, key_len),
                c_slice(iv, iv_len),
                c_slice(input, input_len),
            )
        };
        let result = match cipher as u32 {
            sys::SG_CIPHER_AES_CBC_PKCS5 => aes_cbc(dir, key, iv, input),
            sys::SG_CIPHER_AES_CTR_NOPADDING => aes_ctr(key, iv, input),
            _ => Err(sys::SG_ERR_INVAL),
        };
        match result {
            Ok(out) => unsafe { set_output(output, &out) },
            Err(code) => code,
        }
    })
}

unsafe extern "C" fn encrypt_func(
    output: *mut *mut sys::signal_buffer,
    cipher: c_int,
    key: *const u8,
    key_len: usize,
    iv: *const u8,
    iv_len: usize,
    plaintext: *const u8,
    plaintext_len: usize,
    _user: *mut c_void,
) -> c_int {
    unsafe {
        aes_callback(
            Direction::Encrypt,
            output,
            cipher,
            key,
            key_len,
            iv,
            iv_len,
            plaintext,
            plaintext_len,
        )
    }
}

unsafe extern "C" fn decrypt_func(
    output: *mut *mut sys::signal_buffer,
    cipher: c_int,
    key: *const u8,
    key_len: usize,
    iv: *const u8,
    iv_len: usize,
    ciphertext: *const u8,
    ciphertext_len: usize,
    _user: *mut c_void,
) -> c_int {
    unsafe {
        aes_callback(
            Direction::Decrypt,
            output,
            cipher,
            key,
            key_len,
            iv,
            iv_len,
            ciphertext,
            ciphertext_len,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbc_pkcs7_round_trips_every_length_and_pads_aligned_input() {
        let key = [7u8; 32];
        let iv = [9u8; 16];
        for len in 0..70 {
            let pt: Vec<u8> = (0..len as u8).collect();
            let ct = aes_cbc(Direction::Encrypt, &key, &iv, &pt).unwrap();
            // PKCS#7 always adds 1..=16 bytes.
            assert_eq!(ct.len(), (len / 16 + 1) * 16, "length {len}");
            assert_eq!(aes_cbc(Direction::Decrypt, &key, &iv, &ct).unwrap(), pt);
        }
    }

    #[test]
    fn cbc_matches_a_known_answer() {
        // NIST SP 800-38A F.2.5 (CBC-AES256.Encrypt), first block, plus the PKCS#7 pad block.
        let key = hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
        let iv = hex("000102030405060708090a0b0c0d0e0f");
        let pt = hex("6bc1bee22e409f96e93d7e117393172a");
        let ct = aes_cbc(Direction::Encrypt, &key, &iv, &pt).unwrap();
        assert_eq!(&ct[..16], &hex("f58c4c04d6e5f1ba779eabfb5f7bfbd6")[..]);
        assert_eq!(ct.len(), 32);
    }

    #[test]
    fn ctr_matches_a_known_answer() {
        // NIST SP 800-38A F.5.5 (CTR-AES256.Encrypt), two blocks, the second one truncated.
        let key = hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
        let iv = hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        let pt = hex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");
        let ct = aes_ctr(&key, &iv, &pt[..20]).unwrap();
        let expected = hex("601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5");
        assert_eq!(ct, expected[..20]);
        assert_eq!(aes_ctr(&key, &iv, &ct).unwrap(), pt[..20]);
    }

    #[test]
    fn bad_inputs_give_error_codes() {
        assert_eq!(
            aes_cbc(Direction::Encrypt, &[0; 31], &[0; 16], b"x"),
            Err(sys::SG_ERR_INVAL)
        );
        assert_eq!(
            aes_cbc(Direction::Encrypt, &[0; 32], &[0; 15], b"x"),
            Err(sys::SG_ERR_INVAL)
        );
        assert_eq!(
            aes_cbc(Direction::Decrypt, &[0; 32], &[0; 16], &[0; 17]),
            Err(sys::SG_ERR_INVALID_MESSAGE)
        );
        assert_eq!(aes_ctr(&[0; 32], &[0; 8], b"x"), Err(sys::SG_ERR_INVAL));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
