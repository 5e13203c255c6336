//! X3DH and PQXDH as libsignal computes them: 32 bytes of 0xFF, then the three or four DH outputs
//! in libsignal's order, then (post-quantum suites) the KEM shared secret, through HKDF-SHA256
//! with a zero salt and the suite's X3DH label, giving the first root key and chain key. The
//! initiator ("Alice") then takes one DH ratchet step against the responder's signed prekey,
//! which serves as the responder's first ratchet key.

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::error::Result;
use crate::kdf;
use crate::kem::{KemPublicKey, KemSecretKey};
use crate::keys::{IdentityKey, IdentityKeyPair, KeyPair, PublicKey};
use crate::ratchet::keys::{ChainKey, RootKey, split_root_and_chain};
use crate::ratchet::state::{PendingKem, PendingPreKey, ReceiverChain, SenderChain, SessionState};
use crate::suite::Suite;

/// The "discontinuity bytes" that open the X3DH secret.
pub(crate) const DISCONTINUITY: [u8; 32] = [0xff; 32];

/// The initiator's inputs: everything from the responder's bundle, and our own keys.
pub(crate) struct Initiator<'a> {
    pub suite: Suite,
    pub our_identity: &'a IdentityKeyPair,
    pub our_base_key: &'a KeyPair,
    pub our_registration_id: u32,
    pub their_identity: &'a IdentityKey,
    pub their_registration_id: u32,
    pub their_signed_prekey_id: u32,
    pub their_signed_prekey: &'a PublicKey,
    pub their_one_time_prekey: Option<(u32, &'a PublicKey)>,
    /// The KEM prekey, for (and only for) a post-quantum suite.
    pub their_kem_prekey: Option<(u32, &'a KemPublicKey)>,
}

/// The responder's inputs: its own keys named in a PreKeySignalMessage, and the sender's.
pub(crate) struct Responder<'a> {
    pub suite: Suite,
    pub our_identity: &'a IdentityKeyPair,
    pub our_signed_prekey: &'a KeyPair,
    pub our_one_time_prekey: Option<&'a KeyPair>,
    pub our_registration_id: u32,
    pub their_identity: &'a IdentityKey,
    pub their_base_key: &'a PublicKey,
    pub their_registration_id: u32,
    /// Our KEM prekey the message names and the ciphertext it carries (post-quantum suites).
    pub kem: Option<(&'a KemSecretKey, &'a [u8])>,
}

/// The first root key and chain key from the concatenated DH outputs.
pub(crate) fn derive_initial(suite: Suite, secret: &[u8]) -> (RootKey, ChainKey) {
    let mut derived = Zeroizing::new([0u8; 64]);
    kdf::hkdf_zero_salt(secret, suite.labels().x3dh, derived.as_mut());
    split_root_and_chain(&derived)
}

impl Initiator<'_> {
    /// The initiator's new session. `rng` gives the first sending ratchet key.
    pub(crate) fn start<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> SessionState {
        let mut secret = Zeroizing::new(Vec::with_capacity(32 * 6));
        secret.extend_from_slice(&DISCONTINUITY);
        secret.extend_from_slice(self.our_identity.private_key().agree(self.their_signed_prekey).as_ref());
        secret.extend_from_slice(self.our_base_key.private.agree(self.their_identity).as_ref());
        secret.extend_from_slice(self.our_base_key.private.agree(self.their_signed_prekey).as_ref());
        if let Some((_, one_time)) = self.their_one_time_prekey {
            secret.extend_from_slice(self.our_base_key.private.agree(one_time).as_ref());
        }
        let kem = self.their_kem_prekey.map(|(id, prekey)| {
            let (ciphertext, shared) = prekey.encapsulate(rng);
            secret.extend_from_slice(shared.as_ref());
            PendingKem { prekey_id: id, ciphertext }
        });
        let (root, receiving) = derive_initial(self.suite, &secret);

        let ratchet = KeyPair::generate(rng);
        let (root, sending) = root.create_chain(self.suite, self.their_signed_prekey, &ratchet.private);
        SessionState {
            suite: self.suite,
            local_identity: *self.our_identity.identity_key(),
            remote_identity: *self.their_identity,
            root_key: root,
            previous_counter: 0,
            sender_chain: SenderChain { ratchet, chain_key: sending },
            receiver_chains: vec![ReceiverChain {
                ratchet_key: *self.their_signed_prekey,
                chain_key: receiving,
                skipped: Default::default(),
            }],
            pending_prekey: Some(PendingPreKey {
                prekey_id: self.their_one_time_prekey.map(|(id, _)| id),
                signed_prekey_id: self.their_signed_prekey_id,
                base_key: self.our_base_key.public,
                kem,
            }),
            local_registration_id: self.our_registration_id,
            remote_registration_id: self.their_registration_id,
            alice_base_key: self.our_base_key.public,
        }
    }
}

impl Responder<'_> {
    /// The responder's new session; its signed prekey is its first sending ratchet key.
    pub(crate) fn start(&self) -> Result<SessionState> {
        let mut secret = Zeroizing::new(Vec::with_capacity(32 * 6));
        secret.extend_from_slice(&DISCONTINUITY);
        secret.extend_from_slice(self.our_signed_prekey.private.agree(self.their_identity).as_ref());
        secret.extend_from_slice(self.our_identity.private_key().agree(self.their_base_key).as_ref());
        secret.extend_from_slice(self.our_signed_prekey.private.agree(self.their_base_key).as_ref());
        if let Some(one_time) = self.our_one_time_prekey {
            secret.extend_from_slice(one_time.private.agree(self.their_base_key).as_ref());
        }
        if let Some((prekey, ciphertext)) = self.kem {
            secret.extend_from_slice(prekey.decapsulate(ciphertext)?.as_ref());
        }
        let (root, sending) = derive_initial(self.suite, &secret);
        Ok(SessionState {
            suite: self.suite,
            local_identity: *self.our_identity.identity_key(),
            remote_identity: *self.their_identity,
            root_key: root,
            previous_counter: 0,
            sender_chain: SenderChain { ratchet: self.our_signed_prekey.clone(), chain_key: sending },
            receiver_chains: Vec::new(),
            pending_prekey: None,
            local_registration_id: self.our_registration_id,
            remote_registration_id: self.their_registration_id,
            alice_base_key: *self.their_base_key,
        })
    }
}
