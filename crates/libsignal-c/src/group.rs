//! Groups with Sender Keys: group_session_builder + group_cipher.
//!
//! Each member has one sender key per group, distributed to the others as a
//! SenderKeyDistributionMessage (normally sent over the members' 1:1 sessions). Records are
//! stored per (group, sender name, sender device id).

use std::ptr;

use libsignal_protocol_sys as sys;

use crate::error::{Error, check};
use crate::ffi::{
    Buffer, GroupCipher, GroupSessionBuilder, Ref, SenderKeyName, buffer_to_vec, device_id_to_c,
};
use crate::party::Party;
use crate::store::SenderKeyKey;

/// The sender name under which a party stores its *own* sender keys. Peer names are `&str`, and
/// 0xFF never occurs in UTF-8, so this can never collide with a peer's (name, device) address.
const SELF_NAME: &[u8] = b"\xff";

impl Party {
    fn own_sender_key_name(&self, group: &str) -> Result<SenderKeyName, Error> {
        SenderKeyName::new(group.as_bytes(), SELF_NAME, self.device_id())
    }

    fn own_sender_key_key(&self, group: &str) -> Result<SenderKeyKey, Error> {
        Ok((
            group.as_bytes().to_vec(),
            SELF_NAME.to_vec(),
            device_id_to_c(self.device_id())?,
        ))
    }

    /// Creates this party's sender key for `group` if it has none, and returns the serialized
    /// distribution message for it (key id, current chain iteration and chain key, public
    /// signing key). Members who process it can decrypt this party's group messages from that
    /// iteration on.
    pub fn group_distribution(&mut self, group: &str) -> Result<Vec<u8>, Error> {
        self.transact(|| self.distribution_in_transaction(group))
    }

    /// Body of [`Party::group_distribution`], to be run inside a store transaction.
    fn distribution_in_transaction(&self, group: &str) -> Result<Vec<u8>, Error> {
        let name = self.own_sender_key_name(group)?;
        let g = self.ctx.as_ptr();
        // SAFETY: the builder and message are owned and released on return; `name` outlives both.
        unsafe {
            let builder = GroupSessionBuilder::create("creating a group session builder", |out| {
                sys::group_session_builder_create(out, self.store_ctx.as_ptr(), g)
            })?;
            let message = Ref::<sys::sender_key_distribution_message>::create(
                "creating a sender key distribution message",
                |out| {
                    sys::group_session_builder_create_session(builder.as_ptr(), out, name.as_ptr())
                },
            )?;
            Ok(buffer_to_vec(sys::ciphertext_message_get_serialized(
                message.as_ciphertext(),
            )))
        }
    }

    /// Processes `sender`'s distribution message for `group`, so that this party can decrypt
    /// `sender`'s group messages. A later distribution (after a rotation) adds a new key; the
    /// library keeps the five most recent keys per sender. Fails with
    /// [`Error::InvalidMessage`] (or [`Error::LegacyMessage`]/[`Error::InvalidVersion`]) for
    /// bytes that are not a distribution message; on failure nothing changes.
    pub fn group_process(
        &mut self,
        group: &str,
        sender: &str,
        sender_device_id: u32,
        distribution: &[u8],
    ) -> Result<(), Error> {
        let name = SenderKeyName::new(group.as_bytes(), sender.as_bytes(), sender_device_id)?;
        let g = self.ctx.as_ptr();
        self.transact(|| unsafe {
            let message = Ref::parse("parsing a sender key distribution message", |out| {
                sys::sender_key_distribution_message_deserialize(
                    out,
                    distribution.as_ptr(),
                    distribution.len(),
                    g,
                )
            })?;
            let builder = GroupSessionBuilder::create("creating a group session builder", |out| {
                sys::group_session_builder_create(out, self.store_ctx.as_ptr(), g)
            })?;
            check(
                sys::group_session_builder_process_session(
                    builder.as_ptr(),
                    name.as_ptr(),
                    message.as_ptr(),
                ),
                "processing a sender key distribution message",
            )?;
            Ok(())
        })
    }

    /// Encrypts `plaintext` to `group` with this party's sender key, advancing its chain.
    /// Fails with [`Error::NoSenderKey`] if [`Party::group_distribution`] has not created one.
    pub fn group_encrypt(&mut self, group: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let name = self.own_sender_key_name(group)?;
        if self
            .store
            .get()
            .borrow()
            .sender_key(&self.own_sender_key_key(group)?)
            .is_none()
        {
            return Err(Error::NoSenderKey);
        }
        let g = self.ctx.as_ptr();
        self.transact(|| unsafe {
            let cipher = GroupCipher::create("creating a group cipher", |out| {
                sys::group_cipher_create(out, self.store_ctx.as_ptr(), name.as_ptr(), g)
            })?;
            let message = Ref::<sys::ciphertext_message>::create("group encrypting", |out| {
                sys::group_cipher_encrypt(cipher.as_ptr(), plaintext.as_ptr(), plaintext.len(), out)
            })
            .map_err(|e| {
                if e == Error::NoSession {
                    Error::NoSenderKey
                } else {
                    e
                }
            })?;
            Ok(buffer_to_vec(sys::ciphertext_message_get_serialized(
                message.as_ptr(),
            )))
        })
    }

    /// Decrypts `sender`'s group message. Errors: [`Error::NoSenderKey`] if no distribution from
    /// that sender (for the key id the message names) was processed, [`Error::Duplicate`],
    /// [`Error::InvalidMessage`] (unparseable, bad signature, too far ahead), and the version
    /// errors. On any error the party's state is unchanged.
    pub fn group_decrypt(
        &mut self,
        group: &str,
        sender: &str,
        sender_device_id: u32,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let name = SenderKeyName::new(group.as_bytes(), sender.as_bytes(), sender_device_id)?;
        let key: SenderKeyKey = (
            group.as_bytes().to_vec(),
            sender.as_bytes().to_vec(),
            device_id_to_c(sender_device_id)?,
        );
        let g = self.ctx.as_ptr();
        self.transact(|| unsafe {
            let message =
                Ref::<sys::sender_key_message>::parse("parsing a sender key message", |out| {
                    sys::sender_key_message_deserialize(
                        out,
                        ciphertext.as_ptr(),
                        ciphertext.len(),
                        g,
                    )
                })?;
            let cipher = GroupCipher::create("creating a group cipher", |out| {
                sys::group_cipher_create(out, self.store_ctx.as_ptr(), name.as_ptr(), g)
            })?;
            let result = Buffer::create("group decrypting", |out| {
                sys::group_cipher_decrypt(cipher.as_ptr(), message.as_ptr(), ptr::null_mut(), out)
            });
            match result {
                Ok(plaintext) => Ok(plaintext.to_vec()),
                Err(Error::NoSession) => Err(Error::NoSenderKey),
                // The library folds "no key with this id" into INVALID_MESSAGE; tell it apart so
                // callers know a distribution message is missing (only on this failure path,
                // to keep the success path free of extra parsing).
                Err(Error::InvalidMessage(m)) => {
                    let key_id = sys::sender_key_message_get_key_id(message.as_ptr());
                    if self.knows_sender_key_id(&key, key_id) {
                        Err(Error::InvalidMessage(m))
                    } else {
                        Err(Error::NoSenderKey)
                    }
                }
                Err(e) => Err(e),
            }
        })
    }

    /// Replaces this party's sender key for `group` with a fresh one (as after a member leaves)
    /// and returns its distribution message. Messages encrypted afterwards can only be read by
    /// members who process the new distribution.
    pub fn group_rotate(&mut self, group: &str) -> Result<Vec<u8>, Error> {
        let key = self.own_sender_key_key(group)?;
        // group_session_builder_create_session only creates a key when the record is empty, so
        // drop the record first, in the same transaction so that a failure restores it.
        self.transact(|| {
            self.store.get().borrow_mut().set_sender_key(key, None);
            self.distribution_in_transaction(group)
        })
    }

    /// The serialized sender key record (libsignal's `SenderKeyRecordStructure`) the store holds
    /// for `sender` in `group` — `None` as the sender means this party's own sender key.
    pub fn sender_key_record(&self, group: &str, sender: Option<(&str, u32)>) -> Option<Vec<u8>> {
        let key = match sender {
            None => self.own_sender_key_key(group).ok()?,
            Some((name, device_id)) => {
                (group.as_bytes().to_vec(), name.as_bytes().to_vec(), device_id_to_c(device_id).ok()?)
            }
        };
        self.store.get().borrow().sender_key(&key).cloned()
    }

    /// Whether the stored record for `key` has a state with `key_id`.
    fn knows_sender_key_id(&self, key: &SenderKeyKey, key_id: u32) -> bool {
        let Some(record) = self.store.get().borrow().sender_key(key).cloned() else {
            return false;
        };
        let g = self.ctx.as_ptr();
        // SAFETY: parse the stored record into an owned object and query it.
        unsafe {
            let Ok(record) =
                Ref::<sys::sender_key_record>::parse("parsing a sender key record", |out| {
                    sys::sender_key_record_deserialize(out, record.as_ptr(), record.len(), g)
                })
            else {
                return false;
            };
            let mut state = ptr::null_mut();
            sys::sender_key_record_get_sender_key_state_by_id(record.as_ptr(), &mut state, key_id)
                >= 0
        }
    }
}
