//! Small owning wrappers around C objects so that every reference the harness takes is released
//! exactly once (on drop), plus boxed addresses whose pointers stay put while C holds them.

use std::os::raw::{c_char, c_int};
use std::ptr::{self, NonNull};

use libsignal_protocol_sys as sys;

use crate::error::Error;

/// Marker for C types whose first member is a `signal_type_base`, i.e. that are released with
/// `SIGNAL_UNREF` (= `signal_type_unref`).
///
/// # Safety
/// Implement only for such types.
pub(crate) unsafe trait RefCounted {}

macro_rules! ref_counted {
    ($($t:ident),* $(,)?) => { $(unsafe impl RefCounted for sys::$t {})* };
}
ref_counted!(
    ec_public_key,
    ec_private_key,
    ec_key_pair,
    ratchet_identity_key_pair,
    session_pre_key,
    session_signed_pre_key,
    session_pre_key_bundle,
    session_record,
    sender_key_record,
    ciphertext_message,
    signal_message,
    pre_key_signal_message,
    sender_key_message,
    sender_key_distribution_message,
    fingerprint,
);

/// One owned reference to a ref-counted C object; dropping it is `SIGNAL_UNREF`.
pub(crate) struct Ref<T: RefCounted>(NonNull<T>);

impl<T: RefCounted> Ref<T> {
    /// Calls a C constructor of the usual shape `int f(T **out, ...)` and takes ownership of
    /// what it returns.
    ///
    /// # Safety
    /// `f` must be a C constructor that, on success, stores an object carrying one reference
    /// owned by the caller.
    pub(crate) unsafe fn create(
        context: &str,
        f: impl FnOnce(*mut *mut T) -> c_int,
    ) -> Result<Ref<T>, Error> {
        let mut out: *mut T = ptr::null_mut();
        let code = f(&mut out);
        // On failure the C constructors do not hand out an object, but be defensive about it.
        let obj = NonNull::new(out).map(Ref);
        if code < 0 {
            return Err(Error::from_code(code, context));
        }
        obj.ok_or_else(|| Error::null(context))
    }

    /// Like [`Ref::create`], for constructors that parse untrusted bytes.
    ///
    /// # Safety
    /// As for [`Ref::create`].
    pub(crate) unsafe fn parse(
        context: &str,
        f: impl FnOnce(*mut *mut T) -> c_int,
    ) -> Result<Ref<T>, Error> {
        let mut out: *mut T = ptr::null_mut();
        let code = f(&mut out);
        let obj = NonNull::new(out).map(Ref);
        if code < 0 {
            return Err(Error::from_parse_code(code, context));
        }
        obj.ok_or_else(|| Error::null(context))
    }

    pub(crate) fn as_ptr(&self) -> *mut T {
        self.0.as_ptr()
    }

    /// Views this object as a `ciphertext_message` (the C "base class" of the message types).
    pub(crate) fn as_ciphertext(&self) -> *mut sys::ciphertext_message {
        self.0.as_ptr().cast()
    }
}

impl<T: RefCounted> Drop for Ref<T> {
    fn drop(&mut self) {
        // SAFETY: we own one reference to an object starting with a signal_type_base.
        unsafe { sys::signal_type_unref(self.0.as_ptr().cast()) }
    }
}

/// An owned `signal_buffer`, freed on drop.
pub(crate) struct Buffer(NonNull<sys::signal_buffer>);

impl Buffer {
    /// Calls a C function of the shape `int f(signal_buffer **out, ...)` and owns the result.
    ///
    /// # Safety
    /// On success `f` must store a freshly allocated buffer owned by the caller.
    pub(crate) unsafe fn create(
        context: &str,
        f: impl FnOnce(*mut *mut sys::signal_buffer) -> c_int,
    ) -> Result<Buffer, Error> {
        let mut out: *mut sys::signal_buffer = ptr::null_mut();
        let code = f(&mut out);
        let buf = NonNull::new(out).map(Buffer);
        if code < 0 {
            return Err(Error::from_code(code, context));
        }
        buf.ok_or_else(|| Error::null(context))
    }

    pub(crate) fn to_vec(&self) -> Vec<u8> {
        // SAFETY: the buffer is live; data/len describe its contents.
        unsafe { buffer_to_vec(self.0.as_ptr()) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: we own the buffer.
        unsafe { sys::signal_buffer_free(self.0.as_ptr()) }
    }
}

/// Copies the contents of a borrowed `signal_buffer` (null gives an empty vector).
///
/// # Safety
/// `buf` must be null or a live buffer.
pub(crate) unsafe fn buffer_to_vec(buf: *mut sys::signal_buffer) -> Vec<u8> {
    if buf.is_null() {
        return Vec::new();
    }
    // SAFETY: the caller guarantees a live buffer.
    unsafe {
        let len = sys::signal_buffer_len(buf);
        let data = sys::signal_buffer_data(buf);
        if len == 0 || data.is_null() {
            return Vec::new();
        }
        std::slice::from_raw_parts(data, len).to_vec()
    }
}

/// Allocates a `signal_buffer` holding a copy of `data`, for handing to C (which frees it).
/// Returns null when C is out of memory.
pub(crate) fn new_c_buffer(data: &[u8]) -> *mut sys::signal_buffer {
    // SAFETY: signal_buffer_create copies `len` bytes from `data`.
    unsafe { sys::signal_buffer_create(data.as_ptr(), data.len()) }
}

/// Copies a (pointer, length) pair that C handed us into a slice, tolerating null for empty.
///
/// # Safety
/// If non-null, `ptr` must be valid for `len` bytes for the returned lifetime.
pub(crate) unsafe fn c_slice<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    // SAFETY: guaranteed by the caller.
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// Converts a device id to the `int32_t` the C library uses, rejecting ids it cannot represent.
pub(crate) fn device_id_to_c(device_id: u32) -> Result<i32, Error> {
    i32::try_from(device_id)
        .map_err(|_| Error::invalid_argument(format!("device id {device_id} exceeds i32::MAX")))
}

/// A NUL-terminated copy of a name: C gets (pointer, length) and also prints names with `%s`
/// in its log messages, so the terminator must be there even though lengths are passed.
fn c_name(name: &[u8]) -> Box<[u8]> {
    let mut v = Vec::with_capacity(name.len() + 1);
    v.extend_from_slice(name);
    v.push(0);
    v.into_boxed_slice()
}

/// A `signal_protocol_address` (name + device id) whose struct and name live in their own heap
/// allocations, so the pointers C keeps (session builders and ciphers hold on to the address)
/// stay valid however the owner moves.
pub(crate) struct Address {
    _name: Box<[u8]>,
    raw: Box<sys::signal_protocol_address>,
}

impl Address {
    pub(crate) fn new(name: &[u8], device_id: u32) -> Result<Address, Error> {
        let device_id = device_id_to_c(device_id)?;
        let name = c_name(name);
        let raw = Box::new(sys::signal_protocol_address {
            name: name.as_ptr().cast::<c_char>(),
            name_len: name.len() - 1,
            device_id,
        });
        Ok(Address { _name: name, raw })
    }

    pub(crate) fn as_ptr(&self) -> *const sys::signal_protocol_address {
        &*self.raw
    }
}

/// A `signal_protocol_sender_key_name` (group + sender address), boxed like [`Address`].
pub(crate) struct SenderKeyName {
    _group: Box<[u8]>,
    _name: Box<[u8]>,
    raw: Box<sys::signal_protocol_sender_key_name>,
}

impl SenderKeyName {
    pub(crate) fn new(group: &[u8], sender: &[u8], device_id: u32) -> Result<SenderKeyName, Error> {
        let device_id = device_id_to_c(device_id)?;
        let group = c_name(group);
        let name = c_name(sender);
        let raw = Box::new(sys::signal_protocol_sender_key_name {
            group_id: group.as_ptr().cast::<c_char>(),
            group_id_len: group.len() - 1,
            sender: sys::signal_protocol_address {
                name: name.as_ptr().cast::<c_char>(),
                name_len: name.len() - 1,
                device_id,
            },
        });
        Ok(SenderKeyName {
            _group: group,
            _name: name,
            raw,
        })
    }

    pub(crate) fn as_ptr(&self) -> *const sys::signal_protocol_sender_key_name {
        &*self.raw
    }
}

/// Runs a callback body, turning a panic (which must not unwind into C) into an error code.
pub(crate) fn guard(f: impl FnOnce() -> c_int) -> c_int {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(sys::SG_ERR_UNKNOWN)
}

/// Declares an owner for a C object that is not ref-counted but freed with its own `*_free`.
macro_rules! owned_handle {
    ($(#[$doc:meta])* $name:ident, $t:ident, $free:ident) => {
        $(#[$doc])*
        pub(crate) struct $name(NonNull<sys::$t>);

        impl $name {
            /// Calls a C constructor of the shape `int f(T **out, ...)` and owns the result.
            ///
            /// # Safety
            /// On success `f` must store an object to be released with the matching `*_free`.
            pub(crate) unsafe fn create(
                context: &str,
                f: impl FnOnce(*mut *mut sys::$t) -> c_int,
            ) -> Result<$name, Error> {
                let mut out: *mut sys::$t = ptr::null_mut();
                let code = f(&mut out);
                let obj = NonNull::new(out).map($name);
                if code < 0 {
                    return Err(Error::from_code(code, context));
                }
                obj.ok_or_else(|| Error::null(context))
            }

            pub(crate) fn as_ptr(&self) -> *mut sys::$t {
                self.0.as_ptr()
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: we own the object.
                unsafe { sys::$free(self.0.as_ptr()) }
            }
        }
    };
}

owned_handle!(
    /// A `session_builder`; keeps a pointer to the [`Address`] it was made with, so it must be
    /// dropped before that address (declare the address first).
    SessionBuilder, session_builder, session_builder_free
);
owned_handle!(
    /// A `session_cipher`; keeps a pointer to its [`Address`] (declare the address first).
    SessionCipher, session_cipher, session_cipher_free
);
owned_handle!(
    /// A `group_session_builder`.
    GroupSessionBuilder, group_session_builder, group_session_builder_free
);
owned_handle!(
    /// A `group_cipher`; keeps a pointer to its [`SenderKeyName`] (declare the name first).
    GroupCipher, group_cipher, group_cipher_free
);
owned_handle!(
    /// A `fingerprint_generator`.
    FingerprintGenerator, fingerprint_generator, fingerprint_generator_free
);
