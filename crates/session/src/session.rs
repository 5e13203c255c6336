//! The operations of 1:1 sessions over a [`ProtocolStore`]: start a session from a bundle,
//! encrypt, decrypt. Each loads what it needs, works on it in memory, and writes back only when
//! it has succeeded, so a failed call leaves the store as it was.

use rand_core::CryptoRng;

use crate::address::ProtocolAddress;
use crate::error::{Error, Result};
use crate::keys::{IdentityKey, KeyPair};
use crate::prekey::{KemPreKeyRecord, PreKeyBundle, VerifiedBundle};
use crate::protocol::{CiphertextMessage, PreKeySignalMessage, SignalMessage};
use crate::store::ProtocolStore;
use crate::suite::Suite;
use crate::x3dh::{Initiator, Responder};

/// Starts a session with `remote` under `suite` from its `bundle` (X3DH as the initiator), after
/// checking the bundle's signatures. The next messages to `remote` are PreKeySignalMessages until
/// its first reply arrives. An existing session with `remote` is archived, and still decrypts
/// messages sent under it.
pub fn process_prekey_bundle<S, R>(
    store: &mut S,
    remote: &ProtocolAddress,
    bundle: &PreKeyBundle,
    suite: Suite,
    rng: &mut R,
) -> Result<()>
where
    S: ProtocolStore + ?Sized,
    R: CryptoRng + ?Sized,
{
    bundle.verify()?;
    start_session(store, remote, bundle, suite, rng)
}

/// As [`process_prekey_bundle`], for a bundle whose signatures were checked already.
pub fn process_verified_bundle<S, R>(
    store: &mut S,
    remote: &ProtocolAddress,
    bundle: &VerifiedBundle,
    suite: Suite,
    rng: &mut R,
) -> Result<()>
where
    S: ProtocolStore + ?Sized,
    R: CryptoRng + ?Sized,
{
    start_session(store, remote, bundle, suite, rng)
}

/// X3DH as the initiator from a bundle whose signatures hold.
fn start_session<S, R>(store: &mut S, remote: &ProtocolAddress, bundle: &PreKeyBundle, suite: Suite, rng: &mut R) -> Result<()>
where
    S: ProtocolStore + ?Sized,
    R: CryptoRng + ?Sized,
{
    if !bundle.offers(suite) {
        return Err(Error::UnsupportedSuite(format!("{} is not offered by {remote}", suite.name())));
    }
    let kem_prekey = match suite.kem() {
        None => None,
        Some(kem) => {
            let prekey = bundle.kem_prekey(kem).ok_or(Error::InvalidKey("bundle has no KEM prekey for its post-quantum suite"))?;
            Some((prekey.id, &prekey.key))
        }
    };
    ensure_trusted(store, remote, &bundle.identity_key)?;
    let identity = store.identity_key_pair()?;
    let base_key = KeyPair::generate(rng);
    let state = Initiator {
        suite,
        our_identity: &identity,
        our_base_key: &base_key,
        our_registration_id: store.local_registration_id()?,
        their_identity: &bundle.identity_key,
        their_registration_id: bundle.registration_id,
        their_signed_prekey_id: bundle.signed_prekey_id,
        their_signed_prekey: &bundle.signed_prekey,
        their_one_time_prekey: bundle.prekey.as_ref().map(|(id, key)| (*id, key)),
        their_kem_prekey: kem_prekey,
    }
    .start(rng);
    let mut record = store.load_session(remote)?.unwrap_or_default();
    record.promote(state);
    store.store_session(remote, record)?;
    store.save_identity(remote, &bundle.identity_key)
}

/// Encrypts `plaintext` for `remote` with the current session.
pub fn encrypt<S>(store: &mut S, remote: &ProtocolAddress, plaintext: &[u8]) -> Result<CiphertextMessage>
where
    S: ProtocolStore,
{
    store
        .with_trusted_session(remote, |record, trusted| {
            let state = record.current().ok_or_else(|| no_session(remote))?;
            if !trusted(state.remote_identity())? {
                return Err(untrusted(remote));
            }
            record.encrypt(plaintext)
        })?
        .ok_or_else(|| no_session(remote))
}

/// Decrypts a message from `remote`. A PreKeySignalMessage may start a new session (X3DH or PQXDH
/// as the responder), which consumes the one-time prekey and one-time KEM prekey it names.
pub fn decrypt<S, R>(store: &mut S, remote: &ProtocolAddress, message: &CiphertextMessage, rng: &mut R) -> Result<Vec<u8>>
where
    S: ProtocolStore,
    R: CryptoRng + ?Sized,
{
    decrypt_accepting(store, remote, message, rng, |_, _| Ok::<(), Error>(()))
}

/// As [`decrypt`], decrypting a SignalMessage in its own buffer, which is returned holding the
/// plaintext: for a message the caller has no more use for (parsed with
/// [`CiphertextMessage::parse_owned`], say), no copy is made of it (a PreKeySignalMessage, the
/// rarer kind, is decrypted in a copy). The message is consumed either way: a caller that may
/// want to try it again after a refusal uses [`decrypt`]. The returned Vec's spare capacity may
/// hold a part of the plaintext: wiping it means wiping the whole capacity (`Zeroizing` does).
pub fn decrypt_owned<S, R>(store: &mut S, remote: &ProtocolAddress, message: CiphertextMessage, rng: &mut R) -> Result<Vec<u8>>
where
    S: ProtocolStore,
    R: CryptoRng + ?Sized,
{
    match message {
        CiphertextMessage::Signal(message) => decrypt_signal(store, remote, message, rng),
        CiphertextMessage::PreKey(message) => decrypt_prekey(store, remote, &message, rng, |_, _| Ok::<(), Error>(())),
    }
}

/// As [`decrypt`], with one more check on a message that starts a new session: `accept_new` is
/// given the session's suite and the message's plaintext before anything is stored, and an error
/// from it refuses the message with the store unchanged. (The client core refuses a downgraded
/// suite there.) Messages of sessions already set up are not shown to it.
pub fn decrypt_accepting<S, R, E>(
    store: &mut S,
    remote: &ProtocolAddress,
    message: &CiphertextMessage,
    rng: &mut R,
    accept_new: impl FnOnce(Suite, &[u8]) -> std::result::Result<(), E>,
) -> std::result::Result<Vec<u8>, E>
where
    S: ProtocolStore,
    R: CryptoRng + ?Sized,
    E: From<Error>,
{
    match message {
        // Decrypted in a copy of its own: the caller keeps the message.
        CiphertextMessage::Signal(message) => Ok(decrypt_signal(store, remote, message.clone(), rng)?),
        CiphertextMessage::PreKey(message) => decrypt_prekey(store, remote, message, rng, accept_new),
    }
}

/// Decrypts `message` in its own buffer, which is returned holding the plaintext.
fn decrypt_signal<S, R>(store: &mut S, remote: &ProtocolAddress, mut message: SignalMessage, rng: &mut R) -> Result<Vec<u8>>
where
    S: ProtocolStore,
    R: CryptoRng + ?Sized,
{
    // Plan on the unchanged record, check that the session's identity is still trusted, and
    // only then commit: a refusal at any step changes nothing (but the message).
    let plaintext = store
        .with_trusted_session(remote, |record, trusted| {
            if record.current().is_none() {
                return Err(no_session(remote));
            }
            let (position, plan) = record.plan_decrypt(&mut message, &[])?;
            let identity = record.state_at(position).expect("position from plan_decrypt").remote_identity();
            if !trusted(identity)? {
                return Err(untrusted(remote));
            }
            Ok(record.commit(position, plan, rng))
        })?
        .ok_or_else(|| no_session(remote))?;
    Ok(message.into_plaintext(plaintext))
}

fn decrypt_prekey<S, R, E>(
    store: &mut S,
    remote: &ProtocolAddress,
    message: &PreKeySignalMessage,
    rng: &mut R,
    accept_new: impl FnOnce(Suite, &[u8]) -> std::result::Result<(), E>,
) -> std::result::Result<Vec<u8>, E>
where
    S: ProtocolStore,
    R: CryptoRng + ?Sized,
    E: From<Error>,
{
    ensure_trusted(store, remote, message.identity_key())?;
    let mut record = store.load_session(remote)?.unwrap_or_default();
    let prekey_header = message.header().associated_data();
    // Decrypted in a copy of its own (of the outer message's buffer): the rarer kind.
    let mut inner = message.message().clone();

    if record.has_session_with_base_key(message.suite(), message.base_key()) {
        // A further message of a session this PreKeySignalMessage already set up.
        let (position, plan) = record.plan_decrypt(&mut inner, &prekey_header)?;
        let plaintext = record.commit(position, plan, rng);
        store.store_session(remote, record)?;
        return Ok(inner.into_plaintext(plaintext));
    }

    let signed_prekey = store
        .signed_prekey(message.signed_prekey_id())?
        .ok_or(Error::UnknownSignedPreKey { id: message.signed_prekey_id() })?;
    let one_time_prekey = match message.prekey_id() {
        Some(id) => Some(store.prekey(id)?.ok_or(Error::UnknownPreKey { id })?),
        None => None,
    };
    let kem_prekey = match (message.suite().kem(), message.kem_prekey_id()) {
        (Some(kem), Some(id)) => {
            let record = store.kem_prekey(id)?.ok_or(Error::UnknownKemPreKey { id })?;
            if record.kem() != kem {
                return Err(Error::InvalidMessage("KEM prekey of another KEM than the suite's").into());
            }
            if record.last_resort && store.kem_prekey_used_with(id, message.base_key())? {
                return Err(Error::ReplayedFirstMessage.into());
            }
            Some(record)
        }
        _ => None, // parsing holds KEM fields to their suite
    };
    let kem_pair = kem_prekey.as_ref().map(KemPreKeyRecord::key_pair);
    let identity = store.identity_key_pair()?;
    let mut state = Responder {
        suite: message.suite(),
        our_identity: &identity,
        our_signed_prekey: &signed_prekey.key_pair,
        our_one_time_prekey: one_time_prekey.as_ref().map(|record| &record.key_pair),
        our_registration_id: store.local_registration_id()?,
        their_identity: message.identity_key(),
        their_base_key: message.base_key(),
        their_registration_id: message.registration_id(),
        kem: kem_pair.as_ref().zip(message.kem_ciphertext()).map(|(pair, ciphertext)| (&pair.secret, ciphertext)),
    }
    .start()?;
    let plan = state.plan_decrypt(&mut inner, &prekey_header)?;
    accept_new(message.suite(), inner.plaintext(plan.plaintext.clone()))?;
    let plaintext = state.commit(plan, rng);
    record.promote(state);
    store.store_session(remote, record)?;
    store.save_identity(remote, message.identity_key())?;
    if let Some(id) = message.prekey_id() {
        store.remove_prekey(id)?;
    }
    match kem_prekey {
        Some(record) if record.last_resort => store.mark_kem_prekey_used(record.id, message.base_key())?,
        Some(record) => store.remove_kem_prekey(record.id)?,
        None => {}
    }
    Ok(inner.into_plaintext(plaintext))
}

/// Whether there is a current session with `remote`.
pub fn has_session<S: ProtocolStore + ?Sized>(store: &S, remote: &ProtocolAddress) -> Result<bool> {
    Ok(store.load_session(remote)?.is_some_and(|record| record.current().is_some()))
}

fn ensure_trusted<S: ProtocolStore + ?Sized>(store: &S, remote: &ProtocolAddress, identity: &IdentityKey) -> Result<()> {
    if store.is_trusted_identity(remote, identity)? { Ok(()) } else { Err(untrusted(remote)) }
}

fn untrusted(remote: &ProtocolAddress) -> Error {
    Error::UntrustedIdentity { address: remote.to_string() }
}

fn no_session(remote: &ProtocolAddress) -> Error {
    Error::NoSession { address: remote.to_string() }
}
