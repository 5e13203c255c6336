//! The state of one session and the two operations on it. Decryption is planned on an unchanged
//! state and committed only once the MAC or tag has verified, so a failed decrypt changes nothing.

use std::collections::VecDeque;

use rand_core::CryptoRng;

use crate::error::{Error, Result};
use crate::keys::{IdentityKey, KeyPair, PublicKey};
use crate::limits::{MAX_FORWARD_JUMPS, MAX_RECEIVER_CHAINS, MAX_SKIPPED_KEYS};
use crate::protocol::{CiphertextMessage, Parties, PreKeyHeader, SignalMessage};
use crate::ratchet::keys::{ChainKey, MessageKeys, RootKey};
use crate::suite::Suite;

/// Our sending chain: our current ratchet key pair and the chain key of our next message.
#[derive(Clone, Debug)]
pub(crate) struct SenderChain {
    pub ratchet: KeyPair,
    pub chain_key: ChainKey,
}

/// A receiving chain: the remote ratchet key it belongs to, its next chain key, and the keys of
/// messages skipped in it (oldest first).
#[derive(Clone, Debug)]
pub(crate) struct ReceiverChain {
    pub ratchet_key: PublicKey,
    pub chain_key: ChainKey,
    pub skipped: VecDeque<MessageKeys>,
}

/// The X3DH inputs an initiator repeats until the first reply arrives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingPreKey {
    pub prekey_id: Option<u32>,
    pub signed_prekey_id: u32,
    pub base_key: PublicKey,
    /// Post-quantum suites: the KEM prekey and the ciphertext sent to it.
    pub kem: Option<PendingKem>,
}

/// The KEM part of a post-quantum first message, repeated with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingKem {
    pub prekey_id: u32,
    /// Type byte and ciphertext, as on the wire.
    pub ciphertext: Vec<u8>,
}

/// One session with one remote device.
#[derive(Clone, Debug)]
pub struct SessionState {
    pub(crate) suite: Suite,
    pub(crate) local_identity: IdentityKey,
    pub(crate) remote_identity: IdentityKey,
    pub(crate) root_key: RootKey,
    pub(crate) previous_counter: u32,
    pub(crate) sender_chain: SenderChain,
    /// Newest last.
    pub(crate) receiver_chains: Vec<ReceiverChain>,
    pub(crate) pending_prekey: Option<PendingPreKey>,
    pub(crate) local_registration_id: u32,
    pub(crate) remote_registration_id: u32,
    pub(crate) alice_base_key: PublicKey,
}

/// What a successful decryption changes, computed before anything is changed but the message
/// (decrypted in its own buffer).
pub(crate) struct DecryptPlan {
    /// Where the plaintext lies in the message's buffer.
    pub plaintext: std::ops::Range<usize>,
    update: ChainUpdate,
}

enum ChainUpdate {
    /// The message's key was a stored skipped key: remove it.
    UsedSkipped { chain: usize, position: usize },
    /// The message was at or ahead of an existing chain: store the keys skipped on the way.
    Advanced { chain: usize, skipped: Vec<MessageKeys>, next: ChainKey },
    /// The message opened a new receiving chain: one DH ratchet step. Boxed: it is the rare and
    /// large update, and every plan is moved out of the record's search.
    NewChain(Box<NewChain>),
}

/// What a DH ratchet step brings.
struct NewChain {
    ratchet_key: PublicKey,
    root: RootKey,
    chain: ReceiverChain,
}

impl SessionState {
    /// The public half of this side's current sending ratchet key (it is on the wire in every
    /// message this side sends in its current chain).
    pub fn sender_ratchet_key(&self) -> &PublicKey {
        &self.sender_chain.ratchet.public
    }

    /// The suite the session was created under.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The remote identity key this session is bound to.
    pub fn remote_identity(&self) -> &IdentityKey {
        &self.remote_identity
    }

    /// The remote device's registration id.
    pub fn remote_registration_id(&self) -> u32 {
        self.remote_registration_id
    }

    /// The initiator's base key: the same in both parties' state of one session, so it tells
    /// whether two devices' current sessions with each other are one session.
    pub fn base_key(&self) -> &PublicKey {
        &self.alice_base_key
    }

    /// Whether messages still go out as PreKeySignalMessages (no reply seen yet).
    pub fn awaiting_reply(&self) -> bool {
        self.pending_prekey.is_some()
    }

    /// Encrypts the next message of our sending chain.
    pub(crate) fn encrypt(&mut self, plaintext: &[u8]) -> Result<CiphertextMessage> {
        if self.sender_chain.chain_key.index == u32::MAX {
            return Err(Error::InvalidRecord("sending chain exhausted"));
        }
        let (keys, next) = self.sender_chain.chain_key.step(self.suite);
        let parties = Parties { sender: &self.local_identity, receiver: &self.remote_identity };
        let header = self.pending_prekey.as_ref().map(|pending| PreKeyHeader {
            suite: self.suite,
            registration_id: self.local_registration_id,
            prekey_id: pending.prekey_id,
            signed_prekey_id: pending.signed_prekey_id,
            base_key: pending.base_key,
            identity_key: self.local_identity,
            kem: pending.kem.clone(),
        });
        let associated_data = header.as_ref().map(PreKeyHeader::associated_data).unwrap_or_default();
        let inner = SignalMessage::encrypt(
            self.suite,
            &keys,
            self.sender_chain.ratchet.public,
            self.previous_counter,
            plaintext,
            parties,
            &associated_data,
        );
        let message = match header {
            None => CiphertextMessage::Signal(inner),
            Some(header) => CiphertextMessage::PreKey(Box::new(header.wrap(inner))),
        };
        self.sender_chain.chain_key = next;
        Ok(message)
    }

    /// Works out the plaintext of `message` (decrypted in its buffer) and what decrypting it
    /// changes, changing nothing else. On an error the message is as it was.
    pub(crate) fn plan_decrypt(&self, message: &mut SignalMessage, prekey_header: &[u8]) -> Result<DecryptPlan> {
        if message.suite() != self.suite {
            return Err(Error::InvalidVersion(message.suite().version_byte()));
        }
        let counter = message.counter();
        let (keys, update) = match self.receiver_chain_index(message.ratchet_key()) {
            Some(chain) => {
                let receiver = &self.receiver_chains[chain];
                if counter < receiver.chain_key.index {
                    let position = receiver
                        .skipped
                        .iter()
                        .position(|keys| keys.index == counter)
                        .ok_or(Error::Duplicate { counter })?;
                    (receiver.skipped[position].clone(), ChainUpdate::UsedSkipped { chain, position })
                } else {
                    let (keys, skipped, next) = self.advance(&receiver.chain_key, counter)?;
                    (keys, ChainUpdate::Advanced { chain, skipped, next })
                }
            }
            None => {
                check_jump(0, counter)?;
                let (root, chain_key) = self.root_key.create_chain(
                    self.suite,
                    message.ratchet_key(),
                    &self.sender_chain.ratchet.private,
                );
                let (keys, skipped, next) = self.advance(&chain_key, counter)?;
                let chain = ReceiverChain {
                    ratchet_key: *message.ratchet_key(),
                    chain_key: next,
                    skipped: skipped.into(),
                };
                (keys, ChainUpdate::NewChain(Box::new(NewChain { ratchet_key: *message.ratchet_key(), root, chain })))
            }
        };
        let parties = Parties { sender: &self.remote_identity, receiver: &self.local_identity };
        let plaintext = message.decrypt_in_place(&keys, parties, prekey_header)?;
        Ok(DecryptPlan { plaintext, update })
    }

    /// Applies a plan made by [`Self::plan_decrypt`] on this same, unchanged state; returns where
    /// the plaintext lies in the message's buffer.
    pub(crate) fn commit<R: CryptoRng + ?Sized>(&mut self, plan: DecryptPlan, rng: &mut R) -> std::ops::Range<usize> {
        match plan.update {
            ChainUpdate::UsedSkipped { chain, position } => {
                self.receiver_chains[chain].skipped.remove(position);
            }
            ChainUpdate::Advanced { chain, skipped, next } => {
                let receiver = &mut self.receiver_chains[chain];
                receiver.skipped.extend(skipped);
                trim_skipped(&mut receiver.skipped);
                receiver.chain_key = next;
            }
            ChainUpdate::NewChain(new_chain) => {
                // Borrowed, not moved out of the box: moving the keys out would skip their
                // wiping, and the allocator would get the box back with them still in it.
                let NewChain { ratchet_key, root, chain } = &*new_chain;
                let ratchet = KeyPair::generate(rng);
                let (root, chain_key) = root.create_chain(self.suite, ratchet_key, &ratchet.private);
                self.root_key = root;
                self.receiver_chains.push(chain.clone());
                if self.receiver_chains.len() > MAX_RECEIVER_CHAINS {
                    self.receiver_chains.remove(0);
                }
                self.previous_counter = self.sender_chain.chain_key.index.saturating_sub(1);
                self.sender_chain = SenderChain { ratchet, chain_key };
            }
        }
        // A message from the responder proves the session is established.
        self.pending_prekey = None;
        plan.plaintext
    }

    fn receiver_chain_index(&self, ratchet_key: &PublicKey) -> Option<usize> {
        self.receiver_chains.iter().position(|chain| chain.ratchet_key == *ratchet_key)
    }

    /// The keys for `counter` in a chain now at `chain_key`, the keys skipped on the way (only
    /// as many as would be kept), and the chain key after `counter`.
    fn advance(&self, chain_key: &ChainKey, counter: u32) -> Result<(MessageKeys, Vec<MessageKeys>, ChainKey)> {
        check_jump(chain_key.index, counter)?;
        if counter == u32::MAX {
            return Err(Error::InvalidMessage("counter at the end of the chain"));
        }
        if counter == chain_key.index {
            // The message every in-order delivery brings: no key skipped, no copy of the chain.
            let (keys, next) = chain_key.step(self.suite);
            return Ok((keys, Vec::new(), next));
        }
        let keep_from = counter.saturating_sub(MAX_SKIPPED_KEYS as u32);
        let mut chain_key = chain_key.clone();
        let mut skipped = Vec::new();
        while chain_key.index < counter {
            if chain_key.index < keep_from {
                chain_key = chain_key.next();
            } else {
                let (keys, next) = chain_key.step(self.suite);
                skipped.push(keys);
                chain_key = next;
            }
        }
        let (keys, next) = chain_key.step(self.suite);
        Ok((keys, skipped, next))
    }
}

fn check_jump(index: u32, counter: u32) -> Result<()> {
    let jump = counter - index;
    if jump > MAX_FORWARD_JUMPS {
        return Err(Error::TooFarAhead { jump, limit: MAX_FORWARD_JUMPS });
    }
    Ok(())
}

fn trim_skipped(skipped: &mut VecDeque<MessageKeys>) {
    while skipped.len() > MAX_SKIPPED_KEYS {
        skipped.pop_front();
    }
}
