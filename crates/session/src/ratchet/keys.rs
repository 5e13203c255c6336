//! The keys of the Double Ratchet: root keys, chain keys and per-message keys, each zeroized when
//! dropped and never printed.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::kdf;
use crate::keys::{PrivateKey, PublicKey};
use crate::suite::{Cipher, Suite};

/// Chain step seed for a message key (libsignal's MESSAGE_KEY_SEED).
const MESSAGE_KEY_SEED: u8 = 0x01;
/// Chain step seed for the next chain key (libsignal's CHAIN_KEY_SEED).
const CHAIN_KEY_SEED: u8 = 0x02;

/// The root key: the state the DH ratchet advances.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub(crate) struct RootKey(pub(crate) [u8; 32]);

impl RootKey {
    /// One DH ratchet step: a new root key and a new chain key from `our` private ratchet key and
    /// `their` public ratchet key.
    pub(crate) fn create_chain(
        &self,
        suite: Suite,
        their: &PublicKey,
        our: &PrivateKey,
    ) -> (RootKey, ChainKey) {
        self.step(suite, &our.agree(their))
    }

    /// The DH ratchet step from the shared secret itself.
    pub(crate) fn step(&self, suite: Suite, shared: &[u8; 32]) -> (RootKey, ChainKey) {
        let mut derived = Zeroizing::new([0u8; 64]);
        kdf::hkdf(&self.0, shared, suite.labels().ratchet, derived.as_mut());
        split_root_and_chain(&derived)
    }
}

/// Splits 64 derived bytes into a root key and a chain key at index 0.
pub(crate) fn split_root_and_chain(derived: &[u8; 64]) -> (RootKey, ChainKey) {
    let mut root = [0u8; 32];
    let mut chain = [0u8; 32];
    root.copy_from_slice(&derived[..32]);
    chain.copy_from_slice(&derived[32..]);
    (RootKey(root), ChainKey { key: chain, index: 0 })
}

/// A sending or receiving chain key, with the index of the next message it will key.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub(crate) struct ChainKey {
    pub(crate) key: [u8; 32],
    pub(crate) index: u32,
}

impl ChainKey {
    /// The keys of the message at this chain key's index, and the chain key after it.
    pub(crate) fn step(&self, suite: Suite) -> (MessageKeys, ChainKey) {
        let keyed = kdf::hmac(&self.key);
        let seed = Zeroizing::new(kdf::hmac_byte(&keyed, MESSAGE_KEY_SEED));
        let next = ChainKey { key: kdf::hmac_byte(&keyed, CHAIN_KEY_SEED), index: self.index + 1 };
        (MessageKeys::derive(suite, &seed, self.index), next)
    }

    /// The chain key after this one, without deriving message keys.
    pub(crate) fn next(&self) -> ChainKey {
        ChainKey { key: kdf::hmac_byte(&kdf::hmac(&self.key), CHAIN_KEY_SEED), index: self.index + 1 }
    }
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainKey {{ index: {}, key: <redacted> }}", self.index)
    }
}

/// The keys of one message, as the 80 bytes HKDF gives under `signal-v3`: AES-256 key ‖ HMAC key
/// ‖ CBC IV. Under `aes-256-gcm`: AES-256 key, an unused (zero) HMAC key, and the 12-byte nonce at
/// the IV's place. Derived in place, so no other copy of them needs wiping.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub(crate) struct MessageKeys {
    material: [u8; MESSAGE_KEYS_LEN],
    pub(crate) index: u32,
}

/// Length of the nonce the GCM suite derives.
pub(crate) const GCM_NONCE_LEN: usize = 12;

/// AES key, HMAC key and IV.
const MESSAGE_KEYS_LEN: usize = 32 + 32 + 16;
/// What `aes-256-gcm` derives: AES key and nonce.
const GCM_KEYS_LEN: usize = 32 + GCM_NONCE_LEN;

impl MessageKeys {
    fn derive(suite: Suite, seed: &[u8; 32], index: u32) -> MessageKeys {
        let mut keys = MessageKeys { material: [0; MESSAGE_KEYS_LEN], index };
        match suite.cipher() {
            Cipher::CbcHmac => kdf::hkdf_zero_salt(seed, suite.labels().message_keys, &mut keys.material),
            Cipher::Gcm => {
                kdf::hkdf_zero_salt(seed, suite.labels().message_keys, &mut keys.material[..GCM_KEYS_LEN]);
                // The nonce moves to the IV's place; the HMAC key stays zero.
                keys.material.copy_within(32..GCM_KEYS_LEN, 64);
                keys.material[32..GCM_KEYS_LEN].fill(0);
            }
        }
        keys
    }

    /// Keys read back from a stored record.
    pub(crate) fn from_parts(cipher_key: &[u8; 32], mac_key: &[u8; 32], iv: &[u8; 16], index: u32) -> MessageKeys {
        let mut keys = MessageKeys { material: [0; MESSAGE_KEYS_LEN], index };
        keys.material[..32].copy_from_slice(cipher_key);
        keys.material[32..64].copy_from_slice(mac_key);
        keys.material[64..].copy_from_slice(iv);
        keys
    }

    /// The AES-256 key.
    pub(crate) fn cipher_key(&self) -> &[u8; 32] {
        self.material[..32].try_into().expect("32 bytes")
    }

    /// The HMAC-SHA256 key (`signal-v3`; zero under `aes-256-gcm`).
    pub(crate) fn mac_key(&self) -> &[u8; 32] {
        self.material[32..64].try_into().expect("32 bytes")
    }

    /// The CBC IV (`signal-v3`), or the GCM nonce and four zero bytes.
    pub(crate) fn iv(&self) -> &[u8; 16] {
        self.material[64..].try_into().expect("16 bytes")
    }

    /// The GCM nonce.
    pub(crate) fn gcm_nonce(&self) -> &[u8] {
        &self.material[64..64 + GCM_NONCE_LEN]
    }
}

impl fmt::Debug for MessageKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageKeys {{ index: {}, keys: <redacted> }}", self.index)
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey(<redacted>)")
    }
}
