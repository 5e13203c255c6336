//! In-memory protocol stores implemented in Rust and exposed to C as the five store callback
//! tables (sessions, prekeys, signed prekeys, identities, sender keys).
//!
//! The C library saves some state before an operation is known to succeed (for instance it
//! saves the sender's identity while processing a PreKey message, before the message has been
//! authenticated). To guarantee that a failed operation leaves a party unchanged, every write
//! can be journaled: the party opens a transaction around each C call and rolls the journal
//! back if the call fails.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;

use libsignal_protocol_sys as sys;

use crate::error::{Error, check};
use crate::ffi::{c_slice, guard, new_c_buffer};

/// Key of a 1:1 record: the peer's name (bytes) and device id.
pub(crate) type AddressKey = (Vec<u8>, i32);
/// Key of a sender key record: group id, sender name, sender device id.
pub(crate) type SenderKeyKey = (Vec<u8>, Vec<u8>, i32);

/// One undo step: the key written and the value it had before (None: it was absent).
enum Undo {
    Session(AddressKey, Option<Vec<u8>>),
    PreKey(u32, Option<Vec<u8>>),
    SignedPreKey(u32, Option<Vec<u8>>),
    Identity(AddressKey, Option<Vec<u8>>),
    SenderKey(SenderKeyKey, Option<Vec<u8>>),
}

/// All of one party's protocol state, as serialized records.
pub(crate) struct Store {
    pub(crate) registration_id: u32,
    pub(crate) identity_public: [u8; 33],
    pub(crate) identity_private: [u8; 32],
    sessions: HashMap<AddressKey, Vec<u8>>,
    prekeys: HashMap<u32, Vec<u8>>,
    signed_prekeys: HashMap<u32, Vec<u8>>,
    /// Trust on first use: the first identity key seen for an address is the trusted one.
    identities: HashMap<AddressKey, Vec<u8>>,
    sender_keys: HashMap<SenderKeyKey, Vec<u8>>,
    /// Open transaction's undo log, newest last.
    journal: Option<Vec<Undo>>,
}

/// Writes `value` (None: removes) at `key`, returning the previous value.
fn put<K: Hash + Eq, V>(map: &mut HashMap<K, V>, key: K, value: Option<V>) -> Option<V> {
    match value {
        Some(v) => map.insert(key, v),
        None => map.remove(&key),
    }
}

impl Store {
    pub(crate) fn new(registration_id: u32) -> Store {
        Store {
            registration_id,
            identity_public: [0; 33],
            identity_private: [0; 32],
            sessions: HashMap::new(),
            prekeys: HashMap::new(),
            signed_prekeys: HashMap::new(),
            identities: HashMap::new(),
            sender_keys: HashMap::new(),
            journal: None,
        }
    }

    fn log(&mut self, undo: Undo) {
        if let Some(journal) = &mut self.journal {
            journal.push(undo);
        }
    }

    /// Starts journaling writes (an already open transaction is kept: transactions don't nest).
    pub(crate) fn begin(&mut self) {
        if self.journal.is_none() {
            self.journal = Some(Vec::new());
        }
    }

    /// Keeps every write since [`Store::begin`].
    pub(crate) fn commit(&mut self) {
        self.journal = None;
    }

    /// Undoes every write since [`Store::begin`], newest first.
    pub(crate) fn rollback(&mut self) {
        let Some(journal) = self.journal.take() else {
            return;
        };
        for undo in journal.into_iter().rev() {
            match undo {
                Undo::Session(k, v) => {
                    put(&mut self.sessions, k, v);
                }
                Undo::PreKey(k, v) => {
                    put(&mut self.prekeys, k, v);
                }
                Undo::SignedPreKey(k, v) => {
                    put(&mut self.signed_prekeys, k, v);
                }
                Undo::Identity(k, v) => {
                    put(&mut self.identities, k, v);
                }
                Undo::SenderKey(k, v) => {
                    put(&mut self.sender_keys, k, v);
                }
            }
        }
    }

    pub(crate) fn session(&self, key: &AddressKey) -> Option<&Vec<u8>> {
        self.sessions.get(key)
    }

    pub(crate) fn set_session(&mut self, key: AddressKey, record: Option<Vec<u8>>) {
        let old = put(&mut self.sessions, key.clone(), record);
        self.log(Undo::Session(key, old));
    }

    pub(crate) fn set_prekey(&mut self, id: u32, record: Option<Vec<u8>>) {
        let old = put(&mut self.prekeys, id, record);
        self.log(Undo::PreKey(id, old));
    }

    pub(crate) fn has_prekey(&self, id: u32) -> bool {
        self.prekeys.contains_key(&id)
    }

    pub(crate) fn set_signed_prekey(&mut self, id: u32, record: Option<Vec<u8>>) {
        let old = put(&mut self.signed_prekeys, id, record);
        self.log(Undo::SignedPreKey(id, old));
    }

    fn set_identity(&mut self, key: AddressKey, identity: Option<Vec<u8>>) {
        let old = put(&mut self.identities, key.clone(), identity);
        self.log(Undo::Identity(key, old));
    }

    pub(crate) fn sender_key(&self, key: &SenderKeyKey) -> Option<&Vec<u8>> {
        self.sender_keys.get(key)
    }

    pub(crate) fn set_sender_key(&mut self, key: SenderKeyKey, record: Option<Vec<u8>>) {
        let old = put(&mut self.sender_keys, key.clone(), record);
        self.log(Undo::SenderKey(key, old));
    }
}

/// The store in a stable heap cell whose address is the `user_data` of every store callback.
pub(crate) struct StoreCell(*mut RefCell<Store>);

impl StoreCell {
    pub(crate) fn new(store: Store) -> StoreCell {
        StoreCell(Box::into_raw(Box::new(RefCell::new(store))))
    }

    /// The store, for use between C calls (a callback never runs while this borrow is held,
    /// because C is only entered with no borrow outstanding).
    pub(crate) fn get(&self) -> &RefCell<Store> {
        // SAFETY: the cell lives until drop; only shared references are ever formed.
        unsafe { &*self.0 }
    }

    fn user_data(&self) -> *mut c_void {
        self.0.cast()
    }
}

impl Drop for StoreCell {
    fn drop(&mut self) {
        // SAFETY: created by Box::into_raw; the store context that points here is destroyed first
        // (see the field order of `Party`).
        drop(unsafe { Box::from_raw(self.0) });
    }
}

/// A `signal_protocol_store_context` wired to a [`StoreCell`].
pub(crate) struct StoreContext(*mut sys::signal_protocol_store_context);

impl StoreContext {
    pub(crate) fn new(
        global: *mut sys::signal_context,
        cell: &StoreCell,
    ) -> Result<StoreContext, Error> {
        let mut raw = ptr::null_mut();
        // SAFETY: plain C constructor; the callback tables are copied by the setters.
        unsafe {
            let code = sys::signal_protocol_store_context_create(&mut raw, global);
            if code < 0 || raw.is_null() {
                return Err(Error::from_code(
                    if code < 0 { code } else { sys::SG_ERR_NOMEM },
                    "creating the store context",
                ));
            }
            let ctx = StoreContext(raw);
            let ud = cell.user_data();
            check(
                sys::signal_protocol_store_context_set_session_store(
                    raw,
                    &sys::signal_protocol_session_store {
                        load_session_func: Some(load_session),
                        get_sub_device_sessions_func: Some(get_sub_device_sessions),
                        store_session_func: Some(store_session),
                        contains_session_func: Some(contains_session),
                        delete_session_func: Some(delete_session),
                        delete_all_sessions_func: Some(delete_all_sessions),
                        destroy_func: None,
                        user_data: ud,
                    },
                ),
                "installing the session store",
            )?;
            check(
                sys::signal_protocol_store_context_set_pre_key_store(
                    raw,
                    &sys::signal_protocol_pre_key_store {
                        load_pre_key: Some(load_pre_key),
                        store_pre_key: Some(store_pre_key),
                        contains_pre_key: Some(contains_pre_key),
                        remove_pre_key: Some(remove_pre_key),
                        destroy_func: None,
                        user_data: ud,
                    },
                ),
                "installing the prekey store",
            )?;
            check(
                sys::signal_protocol_store_context_set_signed_pre_key_store(
                    raw,
                    &sys::signal_protocol_signed_pre_key_store {
                        load_signed_pre_key: Some(load_signed_pre_key),
                        store_signed_pre_key: Some(store_signed_pre_key),
                        contains_signed_pre_key: Some(contains_signed_pre_key),
                        remove_signed_pre_key: Some(remove_signed_pre_key),
                        destroy_func: None,
                        user_data: ud,
                    },
                ),
                "installing the signed prekey store",
            )?;
            check(
                sys::signal_protocol_store_context_set_identity_key_store(
                    raw,
                    &sys::signal_protocol_identity_key_store {
                        get_identity_key_pair: Some(get_identity_key_pair),
                        get_local_registration_id: Some(get_local_registration_id),
                        save_identity: Some(save_identity),
                        is_trusted_identity: Some(is_trusted_identity),
                        destroy_func: None,
                        user_data: ud,
                    },
                ),
                "installing the identity store",
            )?;
            check(
                sys::signal_protocol_store_context_set_sender_key_store(
                    raw,
                    &sys::signal_protocol_sender_key_store {
                        store_sender_key: Some(store_sender_key),
                        load_sender_key: Some(load_sender_key),
                        destroy_func: None,
                        user_data: ud,
                    },
                ),
                "installing the sender key store",
            )?;
            Ok(ctx)
        }
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::signal_protocol_store_context {
        self.0
    }
}

impl Drop for StoreContext {
    fn drop(&mut self) {
        // SAFETY: we own it; no destroy callbacks are registered (the Rust side owns the data).
        unsafe { sys::signal_protocol_store_context_destroy(self.0) }
    }
}

// ---- callback plumbing -------------------------------------------------------------------

/// Runs `f` on the store behind `user_data`, mapping a missing store, a re-entrant borrow or a
/// panic to an error code instead of undefined behaviour or an abort.
unsafe fn with_store(user_data: *mut c_void, f: impl FnOnce(&mut Store) -> c_int) -> c_int {
    guard(|| {
        if user_data.is_null() {
            return sys::SG_ERR_INVAL;
        }
        // SAFETY: user_data is the StoreCell's RefCell, alive while its Party is.
        let cell = unsafe { &*(user_data as *const RefCell<Store>) };
        match cell.try_borrow_mut() {
            Ok(mut store) => f(&mut store),
            Err(_) => sys::SG_ERR_UNKNOWN,
        }
    })
}

/// The store key of a C address.
unsafe fn address_key(address: *const sys::signal_protocol_address) -> Option<AddressKey> {
    // SAFETY: C passes a live address (or null, rejected here).
    let a = unsafe { address.as_ref()? };
    Some((
        unsafe { c_slice(a.name.cast(), a.name_len) }.to_vec(),
        a.device_id,
    ))
}

unsafe fn sender_key_key(
    name: *const sys::signal_protocol_sender_key_name,
) -> Option<SenderKeyKey> {
    // SAFETY: C passes a live sender key name (or null, rejected here).
    let n = unsafe { name.as_ref()? };
    let group = unsafe { c_slice(n.group_id.cast(), n.group_id_len) }.to_vec();
    let sender = unsafe { c_slice(n.sender.name.cast(), n.sender.name_len) }.to_vec();
    Some((group, sender, n.sender.device_id))
}

/// Hands a copy of `data` to C through an out-parameter.
unsafe fn give(out: *mut *mut sys::signal_buffer, data: &[u8]) -> c_int {
    if out.is_null() {
        return sys::SG_ERR_INVAL;
    }
    let buf = new_c_buffer(data);
    if buf.is_null() {
        return sys::SG_ERR_NOMEM;
    }
    // SAFETY: checked non-null.
    unsafe { *out = buf };
    0
}

// ---- sessions ----------------------------------------------------------------------------

unsafe extern "C" fn load_session(
    record: *mut *mut sys::signal_buffer,
    _user_record: *mut *mut sys::signal_buffer,
    address: *const sys::signal_protocol_address,
    user_data: *mut c_void,
) -> c_int {
    unsafe {
        with_store(user_data, |s| {
            let Some(key) = address_key(address) else {
                return sys::SG_ERR_INVAL;
            };
            match s.sessions.get(&key) {
                Some(r) => match give(record, r) {
                    0 => 1,
                    e => e,
                },
                None => 0,
            }
        })
    }
}

unsafe extern "C" fn get_sub_device_sessions(
    sessions: *mut *mut sys::signal_int_list,
    name: *const c_char,
    name_len: usize,
    user_data: *mut c_void,
) -> c_int {
    unsafe {
        with_store(user_data, |s| {
            if sessions.is_null() {
                return sys::SG_ERR_INVAL;
            }
            let name = c_slice(name.cast(), name_len);
            let list = sys::signal_int_list_alloc();
            if list.is_null() {
                return sys::SG_ERR_NOMEM;
            }
            let mut count = 0;
            for (n, device) in s.sessions.keys() {
                // Device 1 is the primary device and is never listed, as in libsignal.
                if n.as_slice() == name && *device != 1 {
                    if sys::signal_int_list_push_back(list, *device) < 0 {
                        sys::signal_int_list_free(list);
                        return sys::SG_ERR_NOMEM;
                    }
                    count += 1;
                }
            }
            *sessions = list;
            count
        })
    }
}

unsafe extern "C" fn store_session(
    address: *const sys::signal_protocol_address,
    record: *mut u8,
    record_len: usize,
    _user_record: *mut u8,
    _user_record_len: usize,
    user_data: *mut c_void,
) -> c_int {
    unsafe {
        with_store(user_data, |s| {
            let Some(key) = address_key(address) else {
                return sys::SG_ERR_INVAL;
            };
            s.set_session(key, Some(c_slice(record, record_len).to_vec()));
            0
        })
    }
}

unsafe extern "C" fn contains_session(
    address: *const sys::signal_protocol_address,
    user_data: *mut c_void,
) -> c_int {
    unsafe {
        with_store(user_data, |s| match address_key(address) {
            Some(key) => s.sessions.contains_key(&key) as c_int,
            None => 0,
        })
    }
}

unsafe extern "C" fn delete_session(
    address: *const sys::signal_protocol_address,
    user_data: *mut c_void,
) -> c_int {
    unsafe {
        with_store(user_data, |s| {
            let Some(key) = address_key(address) else {
                return sys::SG_ERR_INVAL;
            };
            let existed = s.sessions.contains_key(&key);
            if existed {
                s.set_session(key, None);
            }
            existed as c_int
        })
    }
}

unsafe extern "C" fn delete_all_sessions(
    name: *const c_char,
    name_len: usize,
    user_data: *mut c_void,
) -> c_int {
    unsafe {
        with_store(user_data, |s| {
            let name = c_slice(name.cast(), name_len);
            let keys: Vec<AddressKey> = s
                .sessions
                .keys()
                .filter(|(n, _)| n.as_slice() == name)
                .cloned()
                .collect();
            let count = keys.len() as c_int;
            for key in keys {
                s.set_session(key, None);
            }
            count
        })
    }
}

// ---- prekeys and signed prekeys --------------------------------------------------------------

unsafe extern "C" fn load_pre_key(
    record: *mut *mut sys::signal_buffer,
    pre_key_id: u32,
    user_data: *mut c_void,
) -> c_int {
    unsafe {
        with_store(user_data, |s| match s.prekeys.get(&pre_key_id) {
            Some(r) => give(record, r),
            None => sys::SG_ERR_INVALID_KEY_ID,
        })
    }
}

unsafe extern "C" fn store_pre_key(
    pre_key_id: u32,
    record: *mut u8,
    record_len: usize,
    user_data: *mut c_void,
) -> c_int {
    unsafe {
        with_store(user_data, |s| {
            s.set_prekey(pre_key_id, Some(c_slice(record, record_len).to_vec()));
            0
        })
    }
}

unsafe extern "C" fn contains_pre_key(pre_key_id: u32, user_data: *mut c_void) -> c_int {
    unsafe { with_store(user_data, |s| s.prekeys.contains_key(&pre_key_id) as c_int) }
}

unsafe extern "C" fn remove_pre_key(pre_key_id: u32, user_data: *mut c_void) -> c_int {
    unsafe {
        with_store(user_data, |s| {
            if s.prekeys.contains_key(&pre_key_id) {
                s.set_prekey(pre_key_id, None);
            }
            0
        })
    }
}

unsafe extern "C" fn load_signed_pre_key(
    record: *mut *mut sys::signal_buffer,
    signed_pre_key_id: u32,
    user_data: *mut c_void,
) -> c_int {
    unsafe {
        with_store(user_data, |s| {
            match s.signed_prekeys.get(&signed_pre_key_id) {
                Some(r) => give(record, r),
                None => sys::SG_ERR_INVALID_KEY_ID,
            }
        })
    }
}

unsafe extern "C" fn store_signed_pre_key(
    signed_pre_key_id: u32,
    record: *mut u8,
    record_len: usize,
    user_data: *mut c_void,
) -> c_int {
    unsafe {
        with_store(user_data, |s| {
            s.set_signed_prekey(
                signed_pre_key_id,
                Some(c_slice(record, record_len).to_vec()),
            );
            0
        })
    }
}

unsafe extern "C" fn contains_signed_pre_key(
    signed_pre_key_id: u32,
    user_data: *mut c_void,
) -> c_int {
    unsafe {
        with_store(user_data, |s| {
            s.signed_prekeys.contains_key(&signed_pre_key_id) as c_int
        })
    }
}

unsafe extern "C" fn remove_signed_pre_key(
    signed_pre_key_id: u32,
    user_data: *mut c_void,
) -> c_int {
    unsafe {
        with_store(user_data, |s| {
            if s.signed_prekeys.contains_key(&signed_pre_key_id) {
                s.set_signed_prekey(signed_pre_key_id, None);
            }
            0
        })
    }
}

// ---- identities ---------------------------------------------------------------------------

unsafe extern "C" fn get_identity_key_pair(
    public_data: *mut *mut sys::signal_buffer,
    private_data: *mut *mut sys::signal_buffer,
    user_data: *mut c_void,
) -> c_int {
    unsafe {
        with_store(user_data, |s| {
            if public_data.is_null() || private_data.is_null() {
                return sys::SG_ERR_INVAL;
            }
            let code = give(public_data, &s.identity_public);
            if code < 0 {
                return code;
            }
            let code = give(private_data, &s.identity_private);
            if code < 0 {
                // Don't leave C holding half a key pair it would not free.
                sys::signal_buffer_free(*public_data);
                *public_data = ptr::null_mut();
                return code;
            }
            0
        })
    }
}

unsafe extern "C" fn get_local_registration_id(
    user_data: *mut c_void,
    registration_id: *mut u32,
) -> c_int {
    unsafe {
        with_store(user_data, |s| {
            if registration_id.is_null() {
                return sys::SG_ERR_INVAL;
            }
            *registration_id = s.registration_id;
            0
        })
    }
}

unsafe extern "C" fn save_identity(
    address: *const sys::signal_protocol_address,
    key_data: *mut u8,
    key_len: usize,
    user_data: *mut c_void,
) -> c_int {
    unsafe {
        with_store(user_data, |s| {
            let Some(key) = address_key(address) else {
                return sys::SG_ERR_INVAL;
            };
            // A null key means "forget the key" per the store contract.
            let identity = (!key_data.is_null()).then(|| c_slice(key_data, key_len).to_vec());
            s.set_identity(key, identity);
            0
        })
    }
}

unsafe extern "C" fn is_trusted_identity(
    address: *const sys::signal_protocol_address,
    key_data: *mut u8,
    key_len: usize,
    user_data: *mut c_void,
) -> c_int {
    unsafe {
        with_store(user_data, |s| {
            let Some(key) = address_key(address) else {
                return sys::SG_ERR_INVAL;
            };
            match s.identities.get(&key) {
                None => 1, // trust on first use
                Some(known) => (known.as_slice() == c_slice(key_data, key_len)) as c_int,
            }
        })
    }
}

// ---- sender keys --------------------------------------------------------------------------

unsafe extern "C" fn store_sender_key(
    sender_key_name: *const sys::signal_protocol_sender_key_name,
    record: *mut u8,
    record_len: usize,
    _user_record: *mut u8,
    _user_record_len: usize,
    user_data: *mut c_void,
) -> c_int {
    unsafe {
        with_store(user_data, |s| {
            let Some(key) = sender_key_key(sender_key_name) else {
                return sys::SG_ERR_INVAL;
            };
            s.set_sender_key(key, Some(c_slice(record, record_len).to_vec()));
            0
        })
    }
}

unsafe extern "C" fn load_sender_key(
    record: *mut *mut sys::signal_buffer,
    _user_record: *mut *mut sys::signal_buffer,
    sender_key_name: *const sys::signal_protocol_sender_key_name,
    user_data: *mut c_void,
) -> c_int {
    unsafe {
        with_store(user_data, |s| {
            let Some(key) = sender_key_key(sender_key_name) else {
                return sys::SG_ERR_INVAL;
            };
            match s.sender_keys.get(&key) {
                Some(r) => match give(record, r) {
                    0 => 1,
                    e => e,
                },
                None => 0,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_restores_every_kind_of_write_in_reverse_order() {
        let mut s = Store::new(1);
        let a: AddressKey = (b"bob".to_vec(), 1);
        s.set_session(a.clone(), Some(vec![1]));
        s.set_prekey(5, Some(vec![5]));
        s.begin();
        s.set_session(a.clone(), Some(vec![2]));
        s.set_session(a.clone(), Some(vec![3]));
        s.set_prekey(5, None);
        s.set_identity(a.clone(), Some(vec![9]));
        s.set_sender_key((b"g".to_vec(), b"bob".to_vec(), 1), Some(vec![7]));
        s.rollback();
        assert_eq!(s.session(&a), Some(&vec![1]));
        assert!(s.has_prekey(5));
        assert!(s.identities.is_empty());
        assert!(s.sender_keys.is_empty());
        s.begin();
        s.set_session(a.clone(), Some(vec![4]));
        s.commit();
        s.rollback(); // nothing open: no effect
        assert_eq!(s.session(&a), Some(&vec![4]));
    }
}
