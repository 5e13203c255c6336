//! Message franking: the bytes of a commitment and of a relay's stamp, one definition for the
//! devices that make and check commitments and the relays that stamp and verify them.
//!
//! A sender picks a fresh franking key per message and commits to the application content with
//! it ([`commit`]); the key goes inside the encryption, the commitment outside, on the envelope.
//! The sender's relay, which sees only the commitment, binds it to the sending device, the
//! recipient and the time with a MAC under a key only it holds ([`stamp`]). A recipient checks
//! that the key it decrypted opens the commitment to what it decrypted ([`opens`]), so that what
//! it can report is what it was shown; its app checks the opening again and asks the sender's
//! app whether the stamp is its own ([`stamp_holds`]). HMAC-SHA256 is a committing MAC here
//! because the key is part of the opening: finding two contents (or two keys) with one
//! commitment is finding an HMAC-SHA256 collision.

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Length of a franking key, a commitment and a stamp.
pub const FRANKING_LEN: usize = 32;

const STAMP_LABEL: &[u8] = b"switchboard franking stamp v1";

fn mac(key: &[u8]) -> hmac::Hmac<Sha256> {
    // HMAC takes a key of any length.
    <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length")
}

/// The commitment to `content` under `franking_key`.
pub fn commit(franking_key: &[u8; FRANKING_LEN], content: &[u8]) -> [u8; FRANKING_LEN] {
    mac(franking_key).chain_update(content).finalize().into_bytes().into()
}

/// Whether `franking_key` opens `commitment` to `content` (compared in constant time).
pub fn opens(commitment: &[u8], franking_key: &[u8], content: &[u8]) -> bool {
    let Ok(key) = <&[u8; FRANKING_LEN]>::try_from(franking_key) else { return false };
    commitment.len() == FRANKING_LEN && bool::from(commit(key, content).ct_eq(commitment))
}

/// What a stamp binds: the commitment, the sending device, the recipient (a user, or a group's
/// id, told apart: both are `name@app`) and the time. Each field is length-prefixed, so no two
/// bindings share bytes.
pub struct Binding<'a> {
    /// The sender's commitment ([`commit`]), 32 bytes.
    pub commitment: &'a [u8],
    /// The sending user, `name@app`.
    pub sender: &'a str,
    /// The sending device's id under `sender`.
    pub sender_device: u32,
    /// The recipient: a user for a one-to-one message, the group's (or channel's) id for a group
    /// message.
    pub recipient: &'a str,
    /// Whether `recipient` is a group (or channel) rather than a user.
    pub to_group: bool,
    /// When the sender's relay took the message, in seconds since the Unix epoch.
    pub stamped_at: u64,
}

/// The stamp of `binding` under a relay's `stamp_key`.
pub fn stamp(stamp_key: &[u8; FRANKING_LEN], binding: &Binding<'_>) -> [u8; FRANKING_LEN] {
    let mut mac = mac(stamp_key);
    mac.update(STAMP_LABEL);
    for field in [binding.commitment, binding.sender.as_bytes(), binding.recipient.as_bytes()] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field);
    }
    mac.update(&binding.sender_device.to_be_bytes());
    mac.update(&[u8::from(binding.to_group)]);
    mac.update(&binding.stamped_at.to_be_bytes());
    mac.finalize().into_bytes().into()
}

/// Whether `stamp_bytes` is `stamp_key`'s stamp of `binding` (compared in constant time).
pub fn stamp_holds(stamp_key: &[u8; FRANKING_LEN], binding: &Binding<'_>, stamp_bytes: &[u8]) -> bool {
    binding.commitment.len() == FRANKING_LEN && bool::from(stamp(stamp_key, binding).ct_eq(stamp_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(commitment: &[u8]) -> Binding<'_> {
        Binding { commitment, sender: "alice@green", sender_device: 1, recipient: "bob@blue", to_group: false, stamped_at: 1_700_000_000 }
    }

    #[test]
    fn a_commitment_opens_only_to_its_content_and_key() {
        let key = [7u8; FRANKING_LEN];
        let commitment = commit(&key, b"hello");
        assert!(opens(&commitment, &key, b"hello"));
        assert!(!opens(&commitment, &key, b"hellO"));
        assert!(!opens(&commitment, &[8u8; FRANKING_LEN], b"hello"));
        assert!(!opens(&commitment, &key[..31], b"hello"));
        assert!(!opens(&commitment[..31], &key, b"hello"));
    }

    #[test]
    fn a_stamp_holds_only_for_what_it_binds() {
        let key = [1u8; FRANKING_LEN];
        let commitment = [2u8; FRANKING_LEN];
        let stamped = stamp(&key, &binding(&commitment));
        assert!(stamp_holds(&key, &binding(&commitment), &stamped));
        assert!(!stamp_holds(&[3u8; FRANKING_LEN], &binding(&commitment), &stamped));
        let changes: [Binding<'_>; 6] = [
            Binding { commitment: &[9u8; FRANKING_LEN], ..binding(&commitment) },
            Binding { sender: "mallory@green", ..binding(&commitment) },
            Binding { sender_device: 2, ..binding(&commitment) },
            Binding { recipient: "carol@blue", ..binding(&commitment) },
            Binding { to_group: true, ..binding(&commitment) },
            Binding { stamped_at: 1_700_000_001, ..binding(&commitment) },
        ];
        for changed in &changes {
            assert!(!stamp_holds(&key, changed, &stamped));
        }
        // Fields are length-prefixed: moving bytes from one to the next changes the stamp.
        let shifted = Binding { sender: "alice@greenb", recipient: "ob@blue", ..binding(&commitment) };
        assert!(!stamp_holds(&key, &shifted, &stamped));
    }
}
