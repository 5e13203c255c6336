//! Signal-style end-to-end encryption, sans-IO: identity keys with XEdDSA-compatible signatures,
//! prekeys and bundles, X3DH and PQXDH, and the Double Ratchet, under four suites — `signal-v3`
//! and `signal-pqxdh`, byte for byte what Signal's libraries write, and `aes-256-gcm` and
//! `pq-aes-256-gcm` (the [`suite`] module says how they differ).
//!
//! Nothing here does I/O or reads a clock: randomness comes in as a `rand_core` RNG, state lives in
//! the caller's [`store`]s, and every operation either succeeds or leaves that state untouched.
//! Every secret is zeroized when dropped and none is printed by `Debug`.
//!
//! ```
//! use switchboard_session::{ProtocolAddress, Suite, session, testing::Device};
//! let mut rng = rand::rng();
//! let mut alice = Device::new(1, 1, &mut rng);
//! let mut bob = Device::new(2, 1, &mut rng);
//! let bundle = bob.bundle(Suite::ALL.as_slice(), &mut rng);
//! let (alice_at, bob_at) = (ProtocolAddress::new("alice@a", 1), ProtocolAddress::new("bob@b", 1));
//! session::process_prekey_bundle(&mut alice.store, &bob_at, &bundle, Suite::SignalV3, &mut rng)?;
//! let message = session::encrypt(&mut alice.store, &bob_at, b"hi")?;
//! assert_eq!(session::decrypt(&mut bob.store, &alice_at, &message, &mut rng)?, b"hi");
//! # Ok::<(), switchboard_session::Error>(())
//! ```

// The deliberate defect of `protocol/message.rs` exists for a fuzz build only.
#[cfg(all(switchboard_inject_divergence, not(fuzzing)))]
compile_error!("--cfg switchboard_inject_divergence is a deliberate MAC defect for the fuzz build of scripts/test.sh only");

pub mod address;
mod cipher;
pub mod error;
pub mod fingerprint;
pub mod group;
pub mod harvest;
mod kdf;
pub mod kem;
pub mod keys;
pub mod limits;
pub mod prekey;
pub mod protocol;
mod ratchet;
pub mod session;
pub mod store;
pub mod suite;
pub mod testing;
#[cfg(test)]
mod vectors;
mod x3dh;
pub mod xeddsa;

pub use address::ProtocolAddress;
pub use error::{Error, Result};
pub use keys::{IdentityKey, IdentityKeyPair, KeyPair, PrivateKey, PublicKey};
pub use kem::{Kem, KemKeyPair, KemPublicKey, KemSecretKey};
pub use prekey::{KemPreKeyRecord, PreKeyBundle, PreKeyRecord, SignedKemPreKey, SignedPreKeyRecord, SignedSuites, VerifiedBundle};
pub use protocol::{CiphertextMessage, MessageKind, PreKeySignalMessage, SignalMessage};
pub use ratchet::record::SessionRecord;
pub use ratchet::state::SessionState;
pub use store::{InMemoryStore, ProtocolStore};
pub use suite::Suite;
