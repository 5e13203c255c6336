//! Group messaging with Sender Keys, as Signal does it: each member has a sender chain per group
//! and hands its chain key and public signing key to every other member over their pairwise
//! sessions (a [`SenderKeyDistributionMessage`]); each group message is then encrypted once and
//! signed. Byte-compatible with libsignal under `signal-v3`; `aes-256-gcm` has its own labels.
//!
//! Every operation changes a sender's record only once it has succeeded: encryption makes the
//! message before it steps the chain; decryption checks everything first (signature, chain
//! position, tag) and then commits. Both work in place where the store allows
//! ([`SenderKeyStore::update_sender_key`]), on a copy written back otherwise. So a failed encrypt
//! or decrypt leaves the state as it was.

mod keys;
mod message;
mod state;
mod store;

use rand_core::CryptoRng;

pub use message::{SenderKeyDistributionMessage, SenderKeyMessage};
pub use state::SenderKeyRecord;
pub use store::{InMemorySenderKeyStore, SenderKeyStore};

use crate::address::ProtocolAddress;
use crate::error::{Error, Result};
use crate::suite::Suite;
use state::SenderKeyState;

/// Our distribution message for `group`, creating our sender key under `suite` (its classical
/// twin: see [`Suite::classical`]) if we have none.
pub fn create_distribution<S, R>(
    store: &mut S,
    group: &str,
    local: &ProtocolAddress,
    suite: Suite,
    rng: &mut R,
) -> Result<SenderKeyDistributionMessage>
where
    S: SenderKeyStore + ?Sized,
    R: CryptoRng + ?Sized,
{
    let mut record = store.load_sender_key(group, local)?.unwrap_or_default();
    if let Some(state) = record.newest() {
        return Ok(state.distribution());
    }
    record.add(SenderKeyState::generate(suite.classical(), rng))?;
    let distribution = record.newest().expect("just added").distribution();
    store.store_sender_key(group, local, record)?;
    Ok(distribution)
}

/// Replaces our sender key for `group` with a fresh one (after a member leaves) and returns its
/// distribution message, to be sent to the remaining members only.
pub fn rotate<S, R>(store: &mut S, group: &str, local: &ProtocolAddress, suite: Suite, rng: &mut R) -> Result<SenderKeyDistributionMessage>
where
    S: SenderKeyStore + ?Sized,
    R: CryptoRng + ?Sized,
{
    // Our own old keys are of no further use to us: only the new one is kept.
    let mut record = SenderKeyRecord::default();
    record.add(SenderKeyState::generate(suite.classical(), rng))?;
    let distribution = record.newest().expect("just added").distribution();
    store.store_sender_key(group, local, record)?;
    Ok(distribution)
}

/// Stores `sender`'s sender key for `group` from its distribution message. A key the record holds
/// already is left as it is; one that left the record (pushed out by newer keys, or replaced by
/// another key under the same id) is refused ([`Error::RetiredSenderKey`]), with the store
/// unchanged. The record remembers the last [`crate::limits::MAX_RETIRED_SENDER_KEYS`] keys that
/// left it.
pub fn process_distribution<S>(store: &mut S, group: &str, sender: &ProtocolAddress, message: &SenderKeyDistributionMessage) -> Result<()>
where
    S: SenderKeyStore + ?Sized,
{
    let state = SenderKeyState::from_distribution(message);
    // `add` changes nothing when it fails, so the record may be changed in place.
    if store.update_sender_key(group, sender, &mut |record| record.add(state.clone()))? {
        return Ok(());
    }
    let mut record = SenderKeyRecord::default();
    record.add(state)?;
    store.store_sender_key(group, sender, record)
}

/// Encrypts `plaintext` once for the whole group with our newest sender key.
pub fn encrypt<S, R>(store: &mut S, group: &str, local: &ProtocolAddress, plaintext: &[u8], rng: &mut R) -> Result<SenderKeyMessage>
where
    S: SenderKeyStore + ?Sized,
    R: CryptoRng + ?Sized,
{
    let no_key = || Error::NoSenderKey { sender: local.to_string() };
    let mut message = None;
    // In place where the store allows: the state changes only once the message is made.
    store.update_sender_key(group, local, &mut |record| {
        message = Some(record.newest_mut().ok_or_else(no_key)?.encrypt(plaintext, rng)?);
        Ok(())
    })?;
    message.ok_or_else(no_key)
}

/// Decrypts a group message from `sender`: checks its signature, then its place in the chain.
pub fn decrypt<S>(store: &mut S, group: &str, sender: &ProtocolAddress, message: &SenderKeyMessage) -> Result<Vec<u8>>
where
    S: SenderKeyStore + ?Sized,
{
    decrypt_checked(store, group, sender, message, false)
}

fn decrypt_checked<S>(store: &mut S, group: &str, sender: &ProtocolAddress, message: &SenderKeyMessage, signature_checked: bool) -> Result<Vec<u8>>
where
    S: SenderKeyStore + ?Sized,
{
    let no_key = || Error::NoSenderKey { sender: sender.to_string() };
    let mut plaintext = None;
    // Planned first, committed only once everything checked: a failure changes nothing.
    store.update_sender_key(group, sender, &mut |record| {
        let index = record.state_index(message.key_id()).ok_or_else(no_key)?;
        let plan = record.states[index].plan_decrypt(message, signature_checked)?;
        plaintext = Some(record.states[index].commit(plan));
        Ok(())
    })?;
    plaintext.ok_or_else(no_key)
}

/// Decrypts many group messages at once, as a member catching up after being offline does. The
/// signatures are verified together as one Ed25519 batch (Signal's signatures verify as
/// Ed25519), which costs much less per message than one verification each; if the batch fails,
/// each message is checked alone, so one bad message does not hide the good ones. Results are in
/// the order of `messages`.
pub fn decrypt_batch<S>(store: &mut S, group: &str, messages: &[(ProtocolAddress, SenderKeyMessage)]) -> Vec<Result<Vec<u8>>>
where
    S: SenderKeyStore + ?Sized,
{
    let batch_ok = verify_batch(store, group, messages).unwrap_or(false);
    messages
        .iter()
        .map(|(sender, message)| decrypt_checked(store, group, sender, message, batch_ok))
        .collect()
}

/// Verifies every signature of `messages` in one batch. `Ok(false)` when any is missing a key or
/// fails; the caller then checks each one alone.
fn verify_batch<S>(store: &S, group: &str, messages: &[(ProtocolAddress, SenderKeyMessage)]) -> Result<bool>
where
    S: SenderKeyStore + ?Sized,
{
    use std::collections::HashMap;
    let mut keys: HashMap<(&ProtocolAddress, u32, u8), ed25519_dalek::VerifyingKey> = HashMap::new();
    let mut records: HashMap<&ProtocolAddress, SenderKeyRecord> = HashMap::new();
    let mut signed = Vec::with_capacity(messages.len());
    let mut signatures = Vec::with_capacity(messages.len());
    let mut verifying_keys = Vec::with_capacity(messages.len());
    for (sender, message) in messages {
        if !records.contains_key(sender) {
            match store.load_sender_key(group, sender)? {
                Some(record) => records.insert(sender, record),
                None => return Ok(false),
            };
        }
        let (body, signature) = message.signed_parts();
        let sign_bit = signature[63] >> 7;
        let key = match keys.entry((sender, message.key_id(), sign_bit)) {
            std::collections::hash_map::Entry::Occupied(entry) => *entry.get(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let record = &records[sender];
                let Some(index) = record.state_index(message.key_id()) else { return Ok(false) };
                *entry.insert(ed25519_dalek::VerifyingKey::from(record.states[index].verifying.point(sign_bit)))
            }
        };
        let mut ed_signature = *signature;
        ed_signature[63] &= 0x7f;
        signed.push(body);
        signatures.push(ed25519_dalek::Signature::from_bytes(&ed_signature));
        verifying_keys.push(key);
    }
    Ok(ed25519_dalek::verify_batch(&signed, &signatures, &verifying_keys).is_ok())
}
