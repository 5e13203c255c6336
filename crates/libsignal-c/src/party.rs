//! One device ("party"): its C contexts, keys and stores, and 1:1 sessions
//! (session_builder + session_cipher).

use std::collections::VecDeque;
use std::ptr;

use libsignal_protocol_sys as sys;

use crate::crypto::Context;
use crate::error::{Error, check};
use crate::ffi::{
    Address, Buffer, Ref, SessionBuilder, SessionCipher, buffer_to_vec, c_slice, device_id_to_c,
};
use crate::store::{AddressKey, Store, StoreCell, StoreContext};

/// The id of the party's one signed prekey.
pub const SIGNED_PREKEY_ID: u32 = 1;

/// The most one-time prekeys a party can hold: ids run 1..=0xFFFFFE, because libsignal's prekey
/// ids are 24-bit and the library treats 0xFFFFFF (`PRE_KEY_MEDIUM_MAX_VALUE`) as "last resort".
pub const MAX_PREKEYS: u32 = 0xFF_FFFE;

/// Which of the two 1:1 wire formats a ciphertext is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A `PreKeySignalMessage` (wire type 3): what a session initiator sends until it has
    /// received a reply; it carries what the recipient needs to build the session.
    PreKey,
    /// A `SignalMessage` (wire type 2): an ordinary ratchet message.
    Signal,
}

/// What one device publishes so that others can start a session with it. Public keys are
/// 33 bytes: 0x05 followed by the 32-byte Curve25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The device's registration id.
    pub registration_id: u32,
    /// The device id.
    pub device_id: u32,
    /// The identity public key (33 bytes).
    pub identity_key: Vec<u8>,
    /// The signed prekey's id (always [`SIGNED_PREKEY_ID`] for a [`Party`]).
    pub signed_prekey_id: u32,
    /// The signed prekey's public key (33 bytes).
    pub signed_prekey: Vec<u8>,
    /// XEdDSA signature (64 bytes) by the identity key over the serialized signed prekey.
    pub signed_prekey_signature: Vec<u8>,
    /// The id of the one-time prekey handed out, `None` when none is left.
    pub prekey_id: Option<u32>,
    /// The one-time prekey's public key (33 bytes), `None` when none is left.
    pub prekey: Option<Vec<u8>>,
}

/// One device running Signal's reference C library: its own `signal_context` and store context,
/// identity key pair, registration id, device id, one signed prekey (id 1), a stock of one-time
/// prekeys (ids 1..=count), and in-memory stores implemented in Rust (sessions, prekeys, signed
/// prekeys, identities with trust on first use, sender keys).
///
/// Guarantees:
/// - every operation that fails leaves the party's state exactly as it was (store writes made
///   by the C library during a failed call are rolled back);
/// - every C object is released (no leaks however long a party lives);
/// - randomness comes only from the party's seeded RNG, so a run is reproducible.
///
/// A `Party` can move to another thread (it shares nothing with other parties) but is not
/// `Sync`: the C objects are not thread-safe and no locking functions are registered.
///
/// ```compile_fail,E0277
/// fn needs_sync<T: Sync>() {}
/// needs_sync::<switchboard_libsignal_c::Party>();
/// ```
pub struct Party {
    // Field order is drop order: the store context and the global context hold pointers into
    // `store` and into the provider state that `ctx` owns, so they are destroyed first.
    pub(crate) store_ctx: StoreContext,
    pub(crate) ctx: Context,
    pub(crate) store: StoreCell,
    registration_id: u32,
    device_id: u32,
    identity_public: [u8; 33],
    identity_private: [u8; 32],
    signed_prekey_public: [u8; 33],
    signed_prekey_signature: Vec<u8>,
    /// One-time prekeys not yet handed out in a bundle, oldest first.
    unused_prekeys: VecDeque<(u32, [u8; 33])>,
}

// SAFETY: a Party exclusively owns its C objects and Rust stores; the C library keeps no global
// or thread-local state that another party touches, so moving a whole party to another thread is
// sound. It stays !Sync (RefCell and raw pointers), so it is never used from two threads at once.
unsafe impl Send for Party {}

/// Serializes a C public key to its 33-byte form.
///
/// # Safety
/// `key` must be a live public key.
pub(crate) unsafe fn serialize_public(
    key: *const sys::ec_public_key,
    what: &str,
) -> Result<[u8; 33], Error> {
    if key.is_null() {
        return Err(Error::null(what));
    }
    let bytes =
        unsafe { Buffer::create(what, |out| sys::ec_public_key_serialize(out, key))? }.to_vec();
    bytes.try_into().map_err(|_| Error::Other {
        code: sys::SG_ERR_UNKNOWN,
        context: format!("{what}: not 33 bytes"),
    })
}

/// Parses a 33-byte public key; anything else is [`Error::InvalidKey`].
pub(crate) fn decode_public(
    global: *mut sys::signal_context,
    bytes: &[u8],
    what: &str,
) -> Result<Ref<sys::ec_public_key>, Error> {
    // SAFETY: curve_decode_point reads `len` bytes and checks type byte and length itself.
    unsafe {
        Ref::create(what, |out| {
            sys::curve_decode_point(out, bytes.as_ptr(), bytes.len(), global)
        })
    }
    .map_err(|e| match e {
        Error::InvalidKey(_) => {
            Error::InvalidKey(format!("{what}: expected 0x05 followed by 32 bytes"))
        }
        other => other,
    })
}

impl Party {
    /// A new device with a fresh identity, signed prekey 1 and `prekey_count` one-time prekeys
    /// (ids 1..=prekey_count). All randomness for this party comes from an RNG seeded with
    /// `seed`, so runs are reproducible: two parties made with the same arguments have the same
    /// keys and produce the same ciphertexts for the same inputs.
    ///
    /// Fails with an invalid-argument error if `device_id` exceeds `i32::MAX` (the C library's
    /// device ids are `int32_t`) or `prekey_count` exceeds [`MAX_PREKEYS`].
    pub fn new(
        registration_id: u32,
        device_id: u32,
        prekey_count: u32,
        seed: u64,
    ) -> Result<Party, Error> {
        device_id_to_c(device_id)?;
        if prekey_count > MAX_PREKEYS {
            return Err(Error::invalid_argument(format!(
                "prekey_count {prekey_count} exceeds the 24-bit prekey id space ({MAX_PREKEYS})"
            )));
        }
        let ctx = Context::new(seed)?;
        let g = ctx.as_ptr();
        let mut store = Store::new(registration_id);
        let mut unused_prekeys = VecDeque::with_capacity(prekey_count as usize);
        let (signed_prekey_public, signed_prekey_signature);
        // SAFETY: C constructors on the live context; every object is owned by a Ref/Buffer.
        unsafe {
            let identity = Ref::create("generating the identity key pair", |out| {
                sys::signal_protocol_key_helper_generate_identity_key_pair(out, g)
            })?;
            store.identity_public = serialize_public(
                sys::ratchet_identity_key_pair_get_public(identity.as_ptr()),
                "serializing the identity public key",
            )?;
            let private = Buffer::create("serializing the identity private key", |out| {
                sys::ec_private_key_serialize(
                    out,
                    sys::ratchet_identity_key_pair_get_private(identity.as_ptr()),
                )
            })?
            .to_vec();
            store.identity_private = private.try_into().map_err(|_| Error::Other {
                code: sys::SG_ERR_UNKNOWN,
                context: "identity private key is not 32 bytes".into(),
            })?;

            let spk = Ref::create("generating the signed prekey", |out| {
                sys::signal_protocol_key_helper_generate_signed_pre_key(
                    out,
                    identity.as_ptr(),
                    SIGNED_PREKEY_ID,
                    0,
                    g,
                )
            })?;
            signed_prekey_public = serialize_public(
                sys::ec_key_pair_get_public(sys::session_signed_pre_key_get_key_pair(spk.as_ptr())),
                "serializing the signed prekey",
            )?;
            signed_prekey_signature = c_slice(
                sys::session_signed_pre_key_get_signature(spk.as_ptr()),
                sys::session_signed_pre_key_get_signature_len(spk.as_ptr()),
            )
            .to_vec();
            let record = Buffer::create("serializing the signed prekey record", |out| {
                sys::session_signed_pre_key_serialize(out, spk.as_ptr())
            })?;
            store.set_signed_prekey(SIGNED_PREKEY_ID, Some(record.to_vec()));

            for id in 1..=prekey_count {
                let pair = Ref::create("generating a prekey", |out| {
                    sys::curve_generate_key_pair(g, out)
                })?;
                let prekey = Ref::create("creating a prekey record", |out| {
                    sys::session_pre_key_create(out, id, pair.as_ptr())
                })?;
                let record = Buffer::create("serializing a prekey record", |out| {
                    sys::session_pre_key_serialize(out, prekey.as_ptr())
                })?;
                store.set_prekey(id, Some(record.to_vec()));
                let public = serialize_public(
                    sys::ec_key_pair_get_public(pair.as_ptr()),
                    "serializing a prekey",
                )?;
                unused_prekeys.push_back((id, public));
            }
        }
        let identity_public = store.identity_public;
        let identity_private = store.identity_private;
        let store = StoreCell::new(store);
        let store_ctx = StoreContext::new(g, &store)?;
        Ok(Party {
            store_ctx,
            ctx,
            store,
            registration_id,
            device_id,
            identity_public,
            identity_private,
            signed_prekey_public,
            signed_prekey_signature,
            unused_prekeys,
        })
    }

    /// Restarts this party's randomness from `seed`: every random choice the C library makes
    /// from here on (ratchet keys, base keys, sender keys, signature nonces) comes from an RNG
    /// seeded with it. With the same seed, a Switchboard device drawing from `StdRng` makes the
    /// same choices wherever both draw the same bytes in the same order — what the differential
    /// fuzz targets rely on.
    pub fn reseed(&mut self, seed: u64) {
        self.ctx.reseed(seed);
    }

    /// Makes every random draw from here on yield `block` (cut or repeated to the length asked,
    /// always from its first byte) until the next [`Party::reseed`]: however many keys the C
    /// library draws, they are all the same one. Where it draws a key per session it tries
    /// before the one that decrypts (a fresh ratchet key each time), the one it keeps is then
    /// the key an implementation that draws once would have.
    pub fn repeat_randomness(&mut self, block: [u8; 32]) {
        self.ctx.repeat_randomness(block);
    }

    /// The registration id given to [`Party::new`].
    pub fn registration_id(&self) -> u32 {
        self.registration_id
    }

    /// The device id given to [`Party::new`].
    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    /// The identity public key: 0x05 followed by 32 bytes.
    pub fn identity_public(&self) -> [u8; 33] {
        self.identity_public
    }

    /// The identity private key (32-byte Curve25519 scalar, clamped), for tests that cross-check
    /// key derivations.
    pub fn identity_private(&self) -> [u8; 32] {
        self.identity_private
    }

    /// This party's bundle, handing out the next one-time prekey that was never handed out
    /// before and is still in the store; `prekey_id`/`prekey` are `None` when none are left
    /// (a session can still be built from the signed prekey alone).
    pub fn bundle(&mut self) -> Result<Bundle, Error> {
        let mut next = None;
        while let Some((id, public)) = self.unused_prekeys.pop_front() {
            if self.store.get().borrow().has_prekey(id) {
                next = Some((id, public));
                break;
            }
        }
        Ok(Bundle {
            registration_id: self.registration_id,
            device_id: self.device_id,
            identity_key: self.identity_public.to_vec(),
            signed_prekey_id: SIGNED_PREKEY_ID,
            signed_prekey: self.signed_prekey_public.to_vec(),
            signed_prekey_signature: self.signed_prekey_signature.clone(),
            prekey_id: next.map(|(id, _)| id),
            prekey: next.map(|(_, public)| public.to_vec()),
        })
    }

    /// Builds a session with (`peer`, `peer_device_id`) from its bundle (X3DH as the initiator).
    /// Afterwards [`Party::encrypt`] to that address produces PreKey messages until the peer
    /// replies. Fails with [`Error::InvalidKey`] for malformed keys or a bad signed prekey
    /// signature and with [`Error::UntrustedIdentity`] if the bundle's identity differs from the
    /// one already trusted for that address; on failure nothing changes.
    pub fn process_bundle(
        &mut self,
        peer: &str,
        peer_device_id: u32,
        bundle: &Bundle,
    ) -> Result<(), Error> {
        let addr = Address::new(peer.as_bytes(), peer_device_id)?;
        let bundle_device = device_id_to_c(bundle.device_id)?;
        let g = self.ctx.as_ptr();
        let identity = decode_public(g, &bundle.identity_key, "bundle identity key")?;
        let signed_prekey = decode_public(g, &bundle.signed_prekey, "bundle signed prekey")?;
        // The C library dereferences the signature buffer unconditionally (an empty one would be
        // a null pointer), so check its length here.
        if bundle.signed_prekey_signature.len() != sys::CURVE_SIGNATURE_LEN as usize {
            return Err(Error::InvalidKey(format!(
                "signed prekey signature must be {} bytes, got {}",
                sys::CURVE_SIGNATURE_LEN,
                bundle.signed_prekey_signature.len()
            )));
        }
        let prekey = match (bundle.prekey_id, &bundle.prekey) {
            (Some(id), Some(key)) => Some((id, decode_public(g, key, "bundle one-time prekey")?)),
            (None, None) => None,
            _ => {
                return Err(Error::InvalidKey(
                    "bundle prekey_id and prekey must be both set or both absent".into(),
                ));
            }
        };
        let (prekey_id, prekey_ptr) = match &prekey {
            Some((id, key)) => (*id, key.as_ptr()),
            None => (0, ptr::null_mut()),
        };
        let sig = &bundle.signed_prekey_signature;
        // SAFETY: the bundle takes its own references to the keys; the builder keeps a pointer
        // to `addr`, which outlives it.
        unsafe {
            let c_bundle = Ref::create("building a prekey bundle", |out| {
                sys::session_pre_key_bundle_create(
                    out,
                    bundle.registration_id,
                    bundle_device,
                    prekey_id,
                    prekey_ptr,
                    bundle.signed_prekey_id,
                    signed_prekey.as_ptr(),
                    sig.as_ptr(),
                    sig.len(),
                    identity.as_ptr(),
                )
            })?;
            self.transact(|| {
                let builder = SessionBuilder::create("creating a session builder", |out| {
                    sys::session_builder_create(out, self.store_ctx.as_ptr(), addr.as_ptr(), g)
                })?;
                check(
                    sys::session_builder_process_pre_key_bundle(
                        builder.as_ptr(),
                        c_bundle.as_ptr(),
                    ),
                    "processing a prekey bundle",
                )?;
                Ok(())
            })
        }
    }

    /// Encrypts `plaintext` for (`peer`, `peer_device_id`), advancing the sending chain.
    /// Returns [`MessageKind::PreKey`] while the session is unacknowledged (this party built it
    /// from a bundle and has not yet decrypted a reply), [`MessageKind::Signal`] afterwards.
    /// Fails with [`Error::NoSession`] if there is no session with that address.
    pub fn encrypt(
        &mut self,
        peer: &str,
        peer_device_id: u32,
        plaintext: &[u8],
    ) -> Result<(MessageKind, Vec<u8>), Error> {
        let addr = Address::new(peer.as_bytes(), peer_device_id)?;
        if !self.has_session(peer, peer_device_id) {
            return Err(Error::NoSession);
        }
        let g = self.ctx.as_ptr();
        self.transact(|| unsafe {
            let cipher = SessionCipher::create("creating a session cipher", |out| {
                sys::session_cipher_create(out, self.store_ctx.as_ptr(), addr.as_ptr(), g)
            })?;
            let message = Ref::<sys::ciphertext_message>::create("encrypting", |out| {
                sys::session_cipher_encrypt(
                    cipher.as_ptr(),
                    plaintext.as_ptr(),
                    plaintext.len(),
                    out,
                )
            })?;
            let kind = match sys::ciphertext_message_get_type(message.as_ptr()) as u32 {
                sys::CIPHERTEXT_PREKEY_TYPE => MessageKind::PreKey,
                sys::CIPHERTEXT_SIGNAL_TYPE => MessageKind::Signal,
                other => {
                    return Err(Error::Other {
                        code: sys::SG_ERR_UNKNOWN,
                        context: format!("encrypt produced unexpected message type {other}"),
                    });
                }
            };
            Ok((
                kind,
                buffer_to_vec(sys::ciphertext_message_get_serialized(message.as_ptr())),
            ))
        })
    }

    /// Decrypts a message from (`peer`, `peer_device_id`). A [`MessageKind::PreKey`] message
    /// builds the session (as the responder) if needed and consumes the one-time prekey it
    /// names. Errors: [`Error::InvalidMessage`] (unparseable, forged or tampered),
    /// [`Error::Duplicate`] (already decrypted), [`Error::NoSession`] (a Signal message with no
    /// session), [`Error::InvalidKey`] (a PreKey message naming an unknown prekey),
    /// [`Error::UntrustedIdentity`], [`Error::LegacyMessage`], [`Error::InvalidVersion`].
    /// On any error the party's state is unchanged.
    pub fn decrypt(
        &mut self,
        peer: &str,
        peer_device_id: u32,
        kind: MessageKind,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        self.decrypt_keeping(peer, peer_device_id, kind, ciphertext, true)
    }

    /// What [`Party::decrypt`] would answer, with the party's stores left exactly as they were
    /// even when it succeeds (every store write is undone): to see what the C library makes of a
    /// message without letting it change a session, prekey or identity. Its randomness is drawn
    /// from as usual (not put back).
    pub fn decrypt_without_keeping(
        &mut self,
        peer: &str,
        peer_device_id: u32,
        kind: MessageKind,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        self.decrypt_keeping(peer, peer_device_id, kind, ciphertext, false)
    }

    fn decrypt_keeping(
        &mut self,
        peer: &str,
        peer_device_id: u32,
        kind: MessageKind,
        ciphertext: &[u8],
        keep: bool,
    ) -> Result<Vec<u8>, Error> {
        let addr = Address::new(peer.as_bytes(), peer_device_id)?;
        let g = self.ctx.as_ptr();
        let (data, len) = (ciphertext.as_ptr(), ciphertext.len());
        self.transact_keeping(keep, || unsafe {
            let cipher = SessionCipher::create("creating a session cipher", |out| {
                sys::session_cipher_create(out, self.store_ctx.as_ptr(), addr.as_ptr(), g)
            })?;
            let plaintext = match kind {
                MessageKind::PreKey => {
                    let message = Ref::parse("parsing a PreKey message", |out| {
                        sys::pre_key_signal_message_deserialize(out, data, len, g)
                    })?;
                    Buffer::create("decrypting a PreKey message", |out| {
                        sys::session_cipher_decrypt_pre_key_signal_message(
                            cipher.as_ptr(),
                            message.as_ptr(),
                            ptr::null_mut(),
                            out,
                        )
                    })?
                }
                MessageKind::Signal => {
                    let message = Ref::parse("parsing a Signal message", |out| {
                        sys::signal_message_deserialize(out, data, len, g)
                    })?;
                    Buffer::create("decrypting a Signal message", |out| {
                        sys::session_cipher_decrypt_signal_message(
                            cipher.as_ptr(),
                            message.as_ptr(),
                            ptr::null_mut(),
                            out,
                        )
                    })?
                }
            };
            Ok(plaintext.to_vec())
        })
    }

    /// Whether the store holds a session record for (`peer`, `peer_device_id`).
    pub fn has_session(&self, peer: &str, peer_device_id: u32) -> bool {
        match address_key(peer, peer_device_id) {
            Ok(key) => self.store.get().borrow().session(&key).is_some(),
            Err(_) => false,
        }
    }

    /// The serialized session record (libsignal's `RecordStructure` protobuf, current state and
    /// archived states) the store holds for (`peer`, `peer_device_id`), if any.
    pub fn session_record(&self, peer: &str, peer_device_id: u32) -> Option<Vec<u8>> {
        let key = address_key(peer, peer_device_id).ok()?;
        self.store.get().borrow().session(&key).cloned()
    }

    /// Replaces the session record for (`peer`, `peer_device_id`) with `record`, after checking
    /// that the C library can parse it ([`Error::InvalidMessage`] otherwise, and nothing changes).
    /// The record carries both identity keys and the ratchet state, so a party that imports
    /// another party's record continues that party's conversation.
    pub fn set_session_record(
        &mut self,
        peer: &str,
        peer_device_id: u32,
        record: &[u8],
    ) -> Result<(), Error> {
        let key = address_key(peer, peer_device_id)?;
        let g = self.ctx.as_ptr();
        // SAFETY: parse into an owned record that is dropped right away.
        unsafe {
            Ref::parse("parsing a session record", |out| {
                sys::session_record_deserialize(out, record.as_ptr(), record.len(), g)
            })?;
        }
        self.store
            .get()
            .borrow_mut()
            .set_session(key, Some(record.to_vec()));
        Ok(())
    }

    /// Runs `f` (which calls into C) as a store transaction: if it fails, every store write the
    /// C library made during it is undone.
    pub(crate) fn transact<T>(&self, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        self.transact_keeping(true, f)
    }

    /// As [`Party::transact`]; with `keep` false, the writes are undone even on success.
    fn transact_keeping<T>(&self, keep: bool, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        self.store.get().borrow_mut().begin();
        let result = f();
        let mut store = self.store.get().borrow_mut();
        match result {
            Ok(_) if keep => store.commit(),
            _ => store.rollback(),
        }
        result
    }
}

fn address_key(peer: &str, device_id: u32) -> Result<AddressKey, Error> {
    Ok((peer.as_bytes().to_vec(), device_id_to_c(device_id)?))
}
