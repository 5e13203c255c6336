//! Safety numbers: 60 digits two people compare to check that each holds the other's real
//! identity key, computed as libsignal's displayable fingerprint (version 0).

use sha2::{Digest, Sha512};

use crate::keys::IdentityKey;

/// The number of hash iterations Signal's apps use.
pub const SAFETY_NUMBER_ITERATIONS: u32 = 5200;
const FINGERPRINT_VERSION: [u8; 2] = [0, 0];

/// The safety number of a conversation between `local` and `remote`, each an identity key and a
/// stable identifier (for Switchboard, the `user@app` address). Both sides compute the same
/// digits: the two halves are ordered, not placed by who is local.
pub fn safety_number(
    local_id: &[u8],
    local_key: &IdentityKey,
    remote_id: &[u8],
    remote_key: &IdentityKey,
    iterations: u32,
) -> String {
    let local = half(local_id, local_key, iterations);
    let remote = half(remote_id, remote_key, iterations);
    if local <= remote { local + &remote } else { remote + &local }
}

/// Thirty digits for one identity.
fn half(stable_id: &[u8], key: &IdentityKey, iterations: u32) -> String {
    let key = key.serialize();
    let mut hash: Vec<u8> = [&FINGERPRINT_VERSION[..], &key, stable_id].concat();
    for _ in 0..iterations {
        hash = Sha512::new().chain_update(&hash).chain_update(key).finalize().to_vec();
    }
    hash[..30]
        .chunks_exact(5)
        .map(|chunk| {
            let value = chunk.iter().fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
            format!("{:05}", value % 100_000)
        })
        .collect()
}
