//! The keys of a sender chain: a chain key steps forward with HMAC seeds 0x01 (message key seed)
//! and 0x02 (next chain key); a message key seed expands through HKDF into the cipher key and IV.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::kdf;
use crate::suite::{Cipher, Suite};

const MESSAGE_KEY_SEED: u8 = 0x01;
const CHAIN_KEY_SEED: u8 = 0x02;

/// A sender chain key and the iteration of the next message it will key.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub(crate) struct SenderChainKey {
    pub(crate) iteration: u32,
    pub(crate) seed: [u8; 32],
}

impl SenderChainKey {
    /// The message key seed at this iteration, and the chain key after it.
    pub(crate) fn step(&self) -> (SenderMessageKey, SenderChainKey) {
        let keyed = kdf::hmac(&self.seed);
        let message = SenderMessageKey { iteration: self.iteration, seed: kdf::hmac_byte(&keyed, MESSAGE_KEY_SEED) };
        let next = SenderChainKey { iteration: self.iteration + 1, seed: kdf::hmac_byte(&keyed, CHAIN_KEY_SEED) };
        (message, next)
    }

    /// The chain key after this one, without a message key.
    pub(crate) fn next(&self) -> SenderChainKey {
        SenderChainKey { iteration: self.iteration + 1, seed: kdf::hmac_byte(&kdf::hmac(&self.seed), CHAIN_KEY_SEED) }
    }
}

/// The seed of one group message's keys (stored for skipped messages, as libsignal stores it).
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub(crate) struct SenderMessageKey {
    pub(crate) iteration: u32,
    pub(crate) seed: [u8; 32],
}

/// The cipher key and IV (or GCM nonce, in `iv[..12]`) of one group message.
pub(crate) struct GroupCipherKeys {
    pub(crate) cipher_key: Zeroizing<[u8; 32]>,
    pub(crate) iv: Zeroizing<[u8; 16]>,
}

impl SenderMessageKey {
    /// `signal-v3`: HKDF → IV 16 ‖ cipher key 32 (libsignal's order). `aes-256-gcm`: HKDF under
    /// its own label → cipher key 32 ‖ nonce 12.
    pub(crate) fn keys(&self, suite: Suite) -> GroupCipherKeys {
        let mut keys = GroupCipherKeys { cipher_key: Zeroizing::new([0; 32]), iv: Zeroizing::new([0; 16]) };
        match suite.cipher() {
            Cipher::CbcHmac => {
                let mut derived = Zeroizing::new([0u8; 48]);
                kdf::hkdf_zero_salt(&self.seed, suite.labels().group, derived.as_mut());
                keys.iv.copy_from_slice(&derived[..16]);
                keys.cipher_key.copy_from_slice(&derived[16..]);
            }
            Cipher::Gcm => {
                let mut derived = Zeroizing::new([0u8; 44]);
                kdf::hkdf_zero_salt(&self.seed, suite.labels().group, derived.as_mut());
                keys.cipher_key.copy_from_slice(&derived[..32]);
                keys.iv[..12].copy_from_slice(&derived[32..]);
            }
        }
        keys
    }
}

impl fmt::Debug for SenderChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SenderChainKey {{ iteration: {}, seed: <redacted> }}", self.iteration)
    }
}

impl fmt::Debug for SenderMessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SenderMessageKey {{ iteration: {}, seed: <redacted> }}", self.iteration)
    }
}
