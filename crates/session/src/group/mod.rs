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

use std::collections::HashMap;

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
    store.update_sender_key(group, sender, &mut |record| {
        plaintext = Some(decrypt_in(record, sender, message, signature_checked)?);
        Ok(())
    })?;
    plaintext.ok_or_else(no_key)
}

/// Decrypts `message` with `sender`'s `record`. Planned first, committed only once everything
/// checked: a failure changes nothing.
fn decrypt_in(record: &mut SenderKeyRecord, sender: &ProtocolAddress, message: &SenderKeyMessage, signature_checked: bool) -> Result<Vec<u8>> {
    let index = record.state_index(message.key_id()).ok_or_else(|| Error::NoSenderKey { sender: sender.to_string() })?;
    let plan = record.states[index].plan_decrypt(message, signature_checked)?;
    Ok(record.states[index].commit(plan))
}

/// Decrypts many group messages at once, as a member catching up after being offline does. The
/// signatures are verified together as one Ed25519 batch (Signal's signatures verify as
/// Ed25519), which costs much less per message than one verification each; if the batch fails,
/// each message is checked alone, so one bad message does not hide the good ones. Results are in
/// the order of `messages`.
///
/// Each sender's record is visited once for all of its messages, which are decrypted in their
/// order in `messages` (records of different senders are independent, so the order across senders
/// does not matter). Should the store fail to update a sender's record, each of that sender's
/// messages gives the store's error.
pub fn decrypt_batch<S>(store: &mut S, group: &str, messages: &[(ProtocolAddress, SenderKeyMessage)]) -> Vec<Result<Vec<u8>>>
where
    S: SenderKeyStore + ?Sized,
{
    let senders = by_sender(messages);
    let batch_ok = verify_batch(store, group, messages, &senders).unwrap_or(false);
    let mut results: Vec<Option<Result<Vec<u8>>>> = Vec::with_capacity(messages.len());
    results.resize_with(messages.len(), || None);
    for (sender, indices) in senders {
        let visited = store.update_sender_key(group, sender, &mut |record| {
            for &i in &indices {
                results[i] = Some(decrypt_in(record, sender, &messages[i].1, batch_ok));
            }
            Ok(())
        });
        match visited {
            Ok(true) => {}
            Ok(false) => indices.iter().for_each(|&i| results[i] = Some(Err(Error::NoSenderKey { sender: sender.to_string() }))),
            Err(error) => indices.iter().for_each(|&i| results[i] = Some(Err(error.clone()))),
        }
    }
    results.into_iter().map(|result| result.expect("every message belongs to one sender")).collect()
}

/// The senders of `messages` in the order they first appear, each with the indices of its
/// messages, in order.
fn by_sender(messages: &[(ProtocolAddress, SenderKeyMessage)]) -> Vec<(&ProtocolAddress, Vec<usize>)> {
    let mut position: HashMap<&ProtocolAddress, usize> = HashMap::new();
    let mut senders: Vec<(&ProtocolAddress, Vec<usize>)> = Vec::new();
    for (i, (sender, _)) in messages.iter().enumerate() {
        let at = *position.entry(sender).or_insert_with(|| {
            senders.push((sender, Vec::new()));
            senders.len() - 1
        });
        senders[at].1.push(i);
    }
    senders
}

/// Verifies every signature of `messages` in one batch. `Ok(false)` when any is missing a key or
/// fails; the caller then checks each one alone.
fn verify_batch<S>(
    store: &S,
    group: &str,
    messages: &[(ProtocolAddress, SenderKeyMessage)],
    senders: &[(&ProtocolAddress, Vec<usize>)],
) -> Result<bool>
where
    S: SenderKeyStore + ?Sized,
{
    let mut signed = Vec::with_capacity(messages.len());
    let mut signatures = Vec::with_capacity(messages.len());
    let mut verifying_keys = Vec::with_capacity(messages.len());
    // The batch's equation sums over its messages: their order does not matter, so they are taken
    // sender by sender.
    for (sender, indices) in senders {
        let Some(record) = store.load_sender_key(group, sender)? else { return Ok(false) };
        // The Ed25519 key of each (key id, sign bit) this sender's messages use: few.
        let mut keys: Vec<(u32, u8, ed25519_dalek::VerifyingKey)> = Vec::new();
        for &i in indices {
            let message = &messages[i].1;
            let (body, signature) = message.signed_parts();
            let sign_bit = signature[63] >> 7;
            let key = match keys.iter().find(|(id, bit, _)| (*id, *bit) == (message.key_id(), sign_bit)) {
                Some((_, _, key)) => *key,
                None => {
                    let Some(index) = record.state_index(message.key_id()) else { return Ok(false) };
                    let key = ed25519_dalek::VerifyingKey::from(record.states[index].verifying.point(sign_bit));
                    keys.push((message.key_id(), sign_bit, key));
                    key
                }
            };
            let mut ed_signature = *signature;
            ed_signature[63] &= 0x7f;
            signed.push(body);
            signatures.push(ed25519_dalek::Signature::from_bytes(&ed_signature));
            verifying_keys.push(key);
        }
    }
    Ok(ed25519_dalek::verify_batch(&signed, &signatures, &verifying_keys).is_ok())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const GROUP: &str = "group";

    /// A store that keeps records as bytes, as a database would, counts its loads and refuses to
    /// store `refused`'s record: the provided `update_sender_key` (load, change, store back).
    #[derive(Clone, Default)]
    struct Persisted {
        records: HashMap<ProtocolAddress, Vec<u8>>,
        loads: Cell<usize>,
        refused: Option<ProtocolAddress>,
    }

    impl SenderKeyStore for Persisted {
        fn load_sender_key(&self, _: &str, sender: &ProtocolAddress) -> Result<Option<SenderKeyRecord>> {
            self.loads.set(self.loads.get() + 1);
            self.records.get(sender).map(|bytes| SenderKeyRecord::deserialize(bytes)).transpose()
        }
        fn store_sender_key(&mut self, _: &str, sender: &ProtocolAddress, record: SenderKeyRecord) -> Result<()> {
            if self.refused.as_ref() == Some(sender) {
                return Err(Error::InvalidRecord("the disk is full"));
            }
            self.records.insert(sender.clone(), record.serialize().to_vec());
            Ok(())
        }
    }

    /// `decrypt_batch` gives, message for message, what `decrypt` gives one at a time, and leaves
    /// the same records: senders interleaved, messages out of order, a duplicate, a forgery, a
    /// sender with no record, a key the reader never got, a message of the other suite. When the
    /// store fails for one sender, each of that sender's messages gives the store's error and the
    /// others are unaffected. A store without in-place updates is visited once per sender to
    /// verify and once to decrypt.
    #[test]
    fn a_batch_reads_as_messages_one_at_a_time_do() {
        for suite in [Suite::SignalV3, Suite::Aes256Gcm] {
            let mut rng = StdRng::seed_from_u64(5);
            let senders: Vec<ProtocolAddress> = (0..4).map(|i| ProtocolAddress::new(format!("sender{i}@app"), 1)).collect();
            let mut stores: Vec<InMemorySenderKeyStore> = (0..4).map(|_| InMemorySenderKeyStore::default()).collect();
            let mut reader = Persisted::default();
            // Senders 0 to 2 hand their keys to the reader; sender 3 does not.
            for (i, sender) in senders.iter().enumerate() {
                let distribution = create_distribution(&mut stores[i], GROUP, sender, suite, &mut rng).unwrap();
                if i < 3 {
                    process_distribution(&mut reader, GROUP, sender, &distribution).unwrap();
                }
            }
            let mut queued = Vec::new();
            for i in 0..30u8 {
                let from = i as usize % 4;
                let message = encrypt(&mut stores[from], GROUP, &senders[from], &[i], &mut rng).unwrap();
                queued.push((senders[from].clone(), message));
            }
            // Sender 1 rotates and sends under a key the reader never got.
            rotate(&mut stores[1], GROUP, &senders[1], suite, &mut rng).unwrap();
            queued.push((senders[1].clone(), encrypt(&mut stores[1], GROUP, &senders[1], b"new key", &mut rng).unwrap()));
            queued.swap(0, 8); // sender 0's first and third messages change places
            queued.push(queued[5].clone()); // a duplicate
            let mut forged = queued[6].1.serialize().to_vec();
            *forged.last_mut().unwrap() ^= 1;
            queued[6].1 = SenderKeyMessage::parse(&forged).unwrap();
            let other = if suite == Suite::SignalV3 { Suite::Aes256Gcm } else { Suite::SignalV3 };
            let mut elsewhere = InMemorySenderKeyStore::default();
            create_distribution(&mut elsewhere, GROUP, &senders[2], other, &mut rng).unwrap();
            queued.push((senders[2].clone(), encrypt(&mut elsewhere, GROUP, &senders[2], b"other", &mut rng).unwrap()));

            for refused in [None, Some(senders[2].clone())] {
                reader.refused = refused;
                let mut one_by_one = reader.clone();
                let expected: Vec<_> =
                    queued.iter().map(|(sender, message)| decrypt(&mut one_by_one, GROUP, sender, message)).collect();
                let mut batch = reader.clone();
                batch.loads.set(0);
                let results = decrypt_batch(&mut batch, GROUP, &queued);
                for ((sender, _), (result, expected)) in queued.iter().zip(results.iter().zip(&expected)) {
                    if batch.refused.as_ref() == Some(sender) {
                        // Nothing of this sender's could be kept: each of its messages says so.
                        assert_eq!(result, &Err(Error::InvalidRecord("the disk is full")));
                    } else {
                        assert_eq!(result, expected, "{}", suite.name());
                    }
                }
                assert_eq!(batch.records, one_by_one.records);
                let read = results.iter().filter(|result| result.is_ok()).count();
                assert_eq!(read, if batch.refused.is_none() { 22 } else { 16 });
                // Verified and decrypted sender by sender: 2 loads for each of the 4 senders, or
                // for those up to sender 3 (no record) when the batch stops there.
                assert!(batch.loads.get() <= 8, "{} loads", batch.loads.get());
            }
        }
    }
}
