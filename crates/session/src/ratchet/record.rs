//! All sessions with one remote device, and their stored form: libsignal's RecordStructure, so a
//! record moves between this project and the reference library unchanged.

use std::collections::VecDeque;

use rand_core::CryptoRng;
use switchboard_wire::{Message, decode, limits, signal};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::{KeyPair, PublicKey};
use crate::limits::{MAX_ARCHIVED_SESSIONS, MAX_RECEIVER_CHAINS, MAX_SKIPPED_KEYS};
use crate::protocol::{CiphertextMessage, SignalMessage};
use crate::ratchet::keys::{ChainKey, GCM_NONCE_LEN, MessageKeys, RootKey};
use crate::kem::KEM_CIPHERTEXT_LEN;
use crate::ratchet::state::{DecryptPlan, PendingKem, PendingPreKey, ReceiverChain, SenderChain, SessionState};
use crate::suite::{Cipher, Suite};

/// The current session with a remote device and up to [`MAX_ARCHIVED_SESSIONS`] earlier ones
/// (newest first), which still decrypt messages sent under them.
#[derive(Clone, Debug, Default)]
pub struct SessionRecord {
    current: Option<SessionState>,
    previous: VecDeque<SessionState>,
}

impl SessionRecord {
    /// A record holding just `state`.
    pub fn new(state: SessionState) -> Self {
        SessionRecord { current: Some(state), previous: VecDeque::new() }
    }

    /// The current session, if any.
    pub fn current(&self) -> Option<&SessionState> {
        self.current.as_ref()
    }

    /// Makes `state` current, archiving the one it replaces.
    pub(crate) fn promote(&mut self, state: SessionState) {
        if let Some(old) = self.current.replace(state) {
            self.previous.push_front(old);
            self.previous.truncate(MAX_ARCHIVED_SESSIONS);
        }
    }

    /// Whether any session in the record was started with `base_key` under `suite` (a repeated
    /// PreKeySignalMessage for a session we already have).
    pub(crate) fn has_session_with_base_key(&self, suite: Suite, base_key: &PublicKey) -> bool {
        self.states().any(|state| state.suite == suite && state.alice_base_key == *base_key)
    }

    /// The session at `position` as numbered by [`Self::plan_decrypt`] (0 = current).
    pub(crate) fn state_at(&self, position: usize) -> Option<&SessionState> {
        self.states().nth(position)
    }

    fn states(&self) -> impl Iterator<Item = &SessionState> {
        self.current.iter().chain(self.previous.iter())
    }

    /// Encrypts with the current session.
    pub(crate) fn encrypt(&mut self, plaintext: &[u8]) -> Result<CiphertextMessage> {
        self.current.as_mut().ok_or(Error::InvalidRecord("no current session"))?.encrypt(plaintext)
    }

    /// Plans decryption with the current session, then with each archived one; the first that
    /// succeeds is returned with its position (0 = current). A session that has already read the
    /// message ends the search with [`Error::Duplicate`], as in libsignal and libsignal-c (an
    /// application drops a duplicate quietly, where another failure may make it reset the
    /// session). Otherwise the first session's error is returned (the current one's, if there
    /// is one). Nothing changes but the message, decrypted in its own buffer once a session
    /// succeeds (a session that fails leaves it as it was for the next).
    pub(crate) fn plan_decrypt(&self, message: &mut SignalMessage, prekey_header: &[u8]) -> Result<(usize, DecryptPlan)> {
        let mut first_error = None;
        for (position, state) in self.states().enumerate() {
            match state.plan_decrypt(message, prekey_header) {
                Ok(plan) => return Ok((position, plan)),
                Err(error @ Error::Duplicate { .. }) => return Err(error),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        Err(first_error.unwrap_or(Error::InvalidRecord("no session in record")))
    }

    /// Commits a plan from [`Self::plan_decrypt`]; a session other than the current one that
    /// decrypted becomes current. Returns where the plaintext lies in the message's buffer.
    pub(crate) fn commit<R: CryptoRng + ?Sized>(&mut self, position: usize, plan: DecryptPlan, rng: &mut R) -> std::ops::Range<usize> {
        if position == 0 {
            let current = self.current.as_mut().expect("position 0 is the current session");
            return current.commit(plan, rng);
        }
        let mut state = self.previous.remove(position - 1).expect("position from plan_decrypt");
        let plaintext = state.commit(plan, rng);
        self.promote(state);
        plaintext
    }

    /// Serializes as libsignal's RecordStructure (with Switchboard's suite field).
    pub fn serialize(&self) -> Zeroizing<Vec<u8>> {
        let structure = signal::RecordStructure {
            current_session: self.current.as_ref().map(state_to_wire),
            previous_sessions: self.previous.iter().map(state_to_wire).collect(),
        };
        Zeroizing::new(structure.encode_to_vec())
    }

    /// Parses a stored RecordStructure, checking every key and limit.
    pub fn deserialize(bytes: &[u8]) -> Result<SessionRecord> {
        let structure: signal::RecordStructure = decode(bytes, limits::MAX_RECORD_LEN)?;
        if structure.previous_sessions.len() > MAX_ARCHIVED_SESSIONS {
            return Err(Error::InvalidRecord("too many archived sessions"));
        }
        Ok(SessionRecord {
            current: structure.current_session.map(state_from_wire).transpose()?,
            previous: structure.previous_sessions.into_iter().map(state_from_wire).collect::<Result<_>>()?,
        })
    }
}

fn state_to_wire(state: &SessionState) -> signal::SessionStructure {
    let chain_key = |key: &ChainKey| signal::session_structure::chain::ChainKey {
        index: Some(key.index),
        key: Some(key.key.to_vec()),
    };
    let sender_chain = signal::session_structure::Chain {
        sender_ratchet_key: Some(state.sender_chain.ratchet.public.serialize().to_vec()),
        sender_ratchet_key_private: Some(state.sender_chain.ratchet.private.to_bytes().to_vec()),
        chain_key: Some(chain_key(&state.sender_chain.chain_key)),
        message_keys: Vec::new(),
    };
    let receiver_chains = state
        .receiver_chains
        .iter()
        .map(|chain| signal::session_structure::Chain {
            sender_ratchet_key: Some(chain.ratchet_key.serialize().to_vec()),
            sender_ratchet_key_private: None,
            chain_key: Some(chain_key(&chain.chain_key)),
            message_keys: chain.skipped.iter().map(|keys| message_keys_to_wire(state.suite, keys)).collect(),
        })
        .collect();
    signal::SessionStructure {
        session_version: Some(state.suite.session_version()),
        local_identity_public: Some(state.local_identity.serialize().to_vec()),
        remote_identity_public: Some(state.remote_identity.serialize().to_vec()),
        root_key: Some(state.root_key.0.to_vec()),
        previous_counter: Some(state.previous_counter),
        sender_chain: Some(sender_chain),
        receiver_chains,
        pending_key_exchange: None,
        pending_pre_key: state.pending_prekey.as_ref().map(|pending| {
            signal::session_structure::PendingPreKey {
                pre_key_id: pending.prekey_id,
                base_key: Some(pending.base_key.serialize().to_vec()),
                signed_pre_key_id: Some(pending.signed_prekey_id as i32),
                kyber_pre_key_id: pending.kem.as_ref().map(|kem| kem.prekey_id),
                kyber_ciphertext: pending.kem.as_ref().map(|kem| kem.ciphertext.clone()),
            }
        }),
        remote_registration_id: Some(state.remote_registration_id),
        local_registration_id: Some(state.local_registration_id),
        needs_refresh: Some(false), // libsignal-c always writes it; so do we, for identical records
        alice_base_key: Some(state.alice_base_key.serialize().to_vec()),
        suite: match state.suite {
            Suite::SignalV3 => None,
            other => Some(other.to_wire() as i32),
        },
    }
}

fn message_keys_to_wire(suite: Suite, keys: &MessageKeys) -> signal::session_structure::chain::MessageKey {
    let (mac_key, iv) = match suite.cipher() {
        Cipher::CbcHmac => (keys.mac_key().to_vec(), keys.iv().to_vec()),
        Cipher::Gcm => (Vec::new(), keys.gcm_nonce().to_vec()),
    };
    signal::session_structure::chain::MessageKey {
        index: Some(keys.index),
        cipher_key: Some(keys.cipher_key().to_vec()),
        mac_key: Some(mac_key),
        iv: Some(iv),
    }
}

fn state_from_wire(structure: signal::SessionStructure) -> Result<SessionState> {
    let suite = Suite::from_wire(structure.suite)?;
    if structure.session_version.unwrap_or(3) != suite.session_version() {
        return Err(Error::InvalidRecord("session version is not its suite's"));
    }
    let public = |bytes: Option<Vec<u8>>| {
        PublicKey::from_bytes(&bytes.unwrap_or_default()).map_err(|_| Error::InvalidRecord("malformed public key"))
    };
    let sender = structure.sender_chain.ok_or(Error::InvalidRecord("no sending chain"))?;
    let sender_private = Zeroizing::new(sender.sender_ratchet_key_private.unwrap_or_default());
    let ratchet = KeyPair::from_stored(&sender.sender_ratchet_key.unwrap_or_default(), &sender_private)
        .map_err(|_| Error::InvalidRecord("malformed sending ratchet key"))?;
    let sender_chain = SenderChain { ratchet, chain_key: chain_key_from_wire(sender.chain_key)? };

    if structure.receiver_chains.len() > MAX_RECEIVER_CHAINS {
        return Err(Error::InvalidRecord("too many receiving chains"));
    }
    let mut receiver_chains = Vec::with_capacity(structure.receiver_chains.len());
    for chain in structure.receiver_chains {
        if chain.message_keys.len() > MAX_SKIPPED_KEYS {
            return Err(Error::InvalidRecord("too many skipped message keys"));
        }
        receiver_chains.push(ReceiverChain {
            ratchet_key: public(chain.sender_ratchet_key)?,
            chain_key: chain_key_from_wire(chain.chain_key)?,
            skipped: chain
                .message_keys
                .into_iter()
                .map(|keys| message_keys_from_wire(suite, keys))
                .collect::<Result<_>>()?,
        });
    }
    let pending_prekey = match structure.pending_pre_key {
        None => None,
        Some(pending) => Some(PendingPreKey {
            prekey_id: pending.pre_key_id,
            signed_prekey_id: u32::try_from(pending.signed_pre_key_id.unwrap_or(0))
                .map_err(|_| Error::InvalidRecord("negative signed prekey id"))?,
            base_key: public(pending.base_key)?,
            kem: match (suite.kem(), pending.kyber_pre_key_id, pending.kyber_ciphertext) {
                (None, None, None) => None,
                (Some(kem), Some(prekey_id), Some(ciphertext))
                    if ciphertext.len() == 1 + KEM_CIPHERTEXT_LEN && ciphertext[0] == kem.type_byte() =>
                {
                    Some(PendingKem { prekey_id, ciphertext })
                }
                _ => return Err(Error::InvalidRecord("pending KEM fields do not match the suite")),
            },
        }),
    };
    Ok(SessionState {
        suite,
        local_identity: public(structure.local_identity_public)?,
        remote_identity: public(structure.remote_identity_public)?,
        root_key: RootKey(fixed(structure.root_key, "root key is not 32 bytes")?),
        previous_counter: structure.previous_counter.unwrap_or(0),
        sender_chain,
        receiver_chains,
        pending_prekey,
        local_registration_id: structure.local_registration_id.unwrap_or(0),
        remote_registration_id: structure.remote_registration_id.unwrap_or(0),
        alice_base_key: public(structure.alice_base_key)?,
    })
}

fn chain_key_from_wire(chain_key: Option<signal::session_structure::chain::ChainKey>) -> Result<ChainKey> {
    let chain_key = chain_key.ok_or(Error::InvalidRecord("no chain key"))?;
    Ok(ChainKey {
        key: fixed(chain_key.key, "chain key is not 32 bytes")?,
        index: chain_key.index.unwrap_or(0),
    })
}

fn message_keys_from_wire(suite: Suite, keys: signal::session_structure::chain::MessageKey) -> Result<MessageKeys> {
    let cipher_key = Zeroizing::new(fixed::<32>(keys.cipher_key, "message cipher key is not 32 bytes")?);
    let mut mac_key = Zeroizing::new([0u8; 32]);
    let mut iv = Zeroizing::new([0u8; 16]);
    let stored_iv = Zeroizing::new(keys.iv.unwrap_or_default());
    match suite.cipher() {
        Cipher::CbcHmac => {
            *mac_key = fixed(keys.mac_key, "message MAC key is not 32 bytes")?;
            *iv = stored_iv.as_slice().try_into().map_err(|_| Error::InvalidRecord("IV is not 16 bytes"))?;
        }
        Cipher::Gcm => {
            if stored_iv.len() != GCM_NONCE_LEN {
                return Err(Error::InvalidRecord("GCM nonce is not 12 bytes"));
            }
            iv[..GCM_NONCE_LEN].copy_from_slice(&stored_iv);
        }
    }
    Ok(MessageKeys::from_parts(&cipher_key, &mac_key, &iv, keys.index.unwrap_or(0)))
}

fn fixed<const N: usize>(bytes: Option<Vec<u8>>, error: &'static str) -> Result<[u8; N]> {
    let bytes = Zeroizing::new(bytes.unwrap_or_default());
    bytes.as_slice().try_into().map_err(|_| Error::InvalidRecord(error))
}
