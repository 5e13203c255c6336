//! TEST AND BENCH ONLY: a safe Rust harness over Signal's reference C library,
//! libsignal-protocol-c (vendored and built with cmake by the `libsignal-protocol-sys` crate).
//!
//! It exists so that Switchboard's own implementation can be held against code nobody here
//! wrote: interop tests, conformance runs and side-by-side benchmarks. It is not meant for
//! production use.
//!
//! What it adds on top of the raw bindings:
//! - a crypto provider in Rust (HMAC-SHA256, SHA-512, AES-CBC/PKCS#7, AES-CTR, and a seeded
//!   RNG per party, so runs are reproducible), replacing the old wrapper's broken OpenSSL glue;
//! - in-memory stores in Rust, with store transactions so that a failed operation leaves a
//!   party unchanged even where the C library writes state before it knows it will succeed;
//! - owned wrappers that release every C object, and boxed addresses whose pointers stay put
//!   while C holds them;
//! - typed errors mapped from `SG_ERR_*` codes; no input to the public API panics.
//!
//! Nothing is printed to stdout. Set `SWITCHBOARD_C_LOG=1` to get the C library's own log
//! lines on stderr.

mod crypto;
mod error;
mod ffi;
mod fingerprint;
mod group;
mod party;
pub mod peer;
mod store;

pub use crypto::LOG_ENV;
pub use error::Error;
pub use fingerprint::{safety_number, verify_signature};
pub use party::{Bundle, MAX_PREKEYS, MessageKind, Party, SIGNED_PREKEY_ID};
