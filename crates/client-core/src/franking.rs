//! Franking on the device: a fresh key and commitment for every message sent
//! ([`switchboard_wire::franking`]), the check that what arrived opens its commitment, and the
//! evidence a recipient keeps to report a message to its own app.

use rand_core::CryptoRng;
use switchboard_session::ProtocolAddress;
use switchboard_wire::franking::{self, FRANKING_LEN};
use switchboard_wire::switchboard::{DeviceAddress, Franking, Report};
use zeroize::Zeroize;

use crate::error::ClientError;

/// A message's franking key and the commitment to its content.
pub(crate) struct Commitment {
    pub(crate) key: [u8; FRANKING_LEN],
    pub(crate) commitment: [u8; FRANKING_LEN],
}

impl Commitment {
    /// A fresh key, and the commitment to `content` with it.
    pub(crate) fn new(content: &[u8], rng: &mut (impl CryptoRng + ?Sized)) -> Commitment {
        let mut key = [0u8; FRANKING_LEN];
        rng.fill_bytes(&mut key);
        Commitment { commitment: franking::commit(&key, content), key }
    }
}

impl Drop for Commitment {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// The commitment as an envelope carries it (unstamped: the sender's relay stamps it).
pub(crate) fn unstamped(commitment: [u8; FRANKING_LEN]) -> Franking {
    Franking { commitment: commitment.to_vec(), ..Default::default() }
}

/// What a recipient keeps of a message to report it ([`crate::Endpoint::report`]): who sent it,
/// to whom the stamp says, the stamped commitment and the key that opens it. With the content,
/// it is exactly what the recipient's app checks.
#[derive(Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The device that sent the message, as its envelope named it.
    pub sender: ProtocolAddress,
    /// The recipient the stamp names: this user, or the group (`group`).
    pub recipient: String,
    /// Whether `recipient` is a group's or a channel's id (a message sent under a sender key)
    /// rather than a user.
    pub group: bool,
    /// The envelope's franking as the sender's relay stamped it: the commitment, the stamp
    /// (32 bytes, checked present) and `stamped_at` (seconds since the Unix epoch).
    pub franking: Franking,
    /// The key, from inside the encryption, that opens `franking`'s commitment to the content.
    pub franking_key: [u8; FRANKING_LEN],
}

impl std::fmt::Debug for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Evidence {{ sender: {}, recipient: {}, stamped_at: {} }}", self.sender, self.recipient, self.franking.stamped_at)
    }
}

impl Evidence {
    /// The evidence of a message from `sender` to `recipient` whose envelope carried `franking`
    /// and whose payload carried `franking_key`, if the key opens the commitment to `content` and
    /// the sender's relay stamped it. A message that does not open its commitment is refused: what
    /// its recipient could report would not be what it was shown.
    pub(crate) fn check(
        sender: &ProtocolAddress,
        (recipient, group): (&str, bool),
        franking: Option<&Franking>,
        franking_key: &[u8],
        content: &[u8],
    ) -> Result<Evidence, ClientError> {
        let franking = franking.ok_or(ClientError::InvalidPayload("a message without a franking commitment"))?;
        if !franking::opens(&franking.commitment, franking_key, content) {
            return Err(ClientError::InvalidPayload("the franking key does not open the message's commitment"));
        }
        if franking.stamp.len() != FRANKING_LEN {
            return Err(ClientError::InvalidPayload("a message its sender's relay did not stamp"));
        }
        let franking_key = franking_key.try_into().expect("opens checked the length");
        Ok(Evidence { sender: sender.clone(), recipient: recipient.to_owned(), group, franking: franking.clone(), franking_key })
    }

    /// The report of this message, whose content was `content`.
    pub fn report(&self, content: Vec<u8>) -> Report {
        Report {
            sender: Some(DeviceAddress { name: self.sender.name().to_owned(), device_id: self.sender.device_id() }),
            recipient: self.recipient.clone(),
            franking: Some(self.franking.clone()),
            content,
            franking_key: self.franking_key.to_vec(),
            group: self.group,
        }
    }
}
