//! One person on several apps: the accounts she links, signed by her person key (see
//! `docs/PEOPLE.md`).
//!
//! - [`Person`]: what her own devices hold — the person key and every account with its devices and
//!   who may see it. It signs a [`PersonRecord`] for each audience ([`Audience`]): the public one
//!   her relays publish, one per contact sent end to end.
//! - [`PersonRecord`]: a record that verified — the person key's signature over every field, and
//!   each device's signature over the person key and its own address (a cross-signature: no one
//!   can list someone else's device as theirs, and no relay can add a device to her set).
//! - [`People`]: the records a device holds of others, newest first: an older version than the
//!   one held is refused, so no relay can bring back a revoked link or hide a new one by replaying
//!   an old record once the newer one has been seen.

use std::collections::HashMap;

use rand_core::CryptoRng;
use switchboard_session::{IdentityKey, IdentityKeyPair, ProtocolAddress};
use switchboard_wire::switchboard::{self as wire, Visibility};
use switchboard_wire::{Message, address::UserAddress};
use zeroize::Zeroizing;

/// Accounts one person may link.
pub const MAX_LINKED_ACCOUNTS: usize = 8;
/// Users one account may be shown to by name ([`Visibility::Chosen`]).
pub const MAX_SHOWN_TO: usize = 256;
/// Largest encoded record read: 8 accounts of 64 devices (about 105 bytes each) and 256 names
/// each, with room to spare.
pub const MAX_PERSON_RECORD_LEN: usize = 640 * 1024;
/// Records of other people one device keeps…
pub const MAX_PEOPLE: usize = 2_000;
/// …and their encoded bytes together.
pub const MAX_PEOPLE_BYTES: usize = 16 * 1024 * 1024;
/// Largest encoded record a person makes: it must fit in one pairwise payload to reach her
/// other devices.
pub const MAX_OWN_RECORD_LEN: usize = 128 * 1024;

const RECORD_LABEL: &[u8] = b"switchboard person record v1";
const DEVICE_LABEL: &[u8] = b"switchboard linked device v1";
const SIGNATURE_LEN: usize = 64;

/// Why a record, an invitation or a change was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PersonError {
    /// The bytes of a record or an invitation are not its protobuf message, or are longer than
    /// the limit they are read with.
    #[error("the record does not decode: {0}")]
    Decode(#[from] switchboard_wire::DecodeError),
    /// The message decodes, but a field is wrong (the text names it: a key, a signature's
    /// length, an account that is not `name@app`, a visibility, …), or the request does not fit
    /// this device (it already belongs to a person, or to none).
    #[error("the record is malformed: {0}")]
    Malformed(&'static str),
    /// The person key's signature over the record does not verify.
    #[error("the person key's signature over the record does not verify")]
    BadSignature,
    /// A device the record lists did not sign the person key and its own address: someone else's
    /// device, listed as hers.
    #[error("device {device} of {user} did not sign this person key")]
    BadDeviceSignature {
        /// The account (`name@app`) that lists the device.
        user: String,
        /// The device's id in that account.
        device: u32,
    },
    /// A record older than the one held for the same person (a replay, or a relay hiding a
    /// newer one).
    #[error("version {offered} of this person's record is older than version {held}, already held")]
    Rollback {
        /// The version of the record refused.
        offered: u64,
        /// The version held.
        held: u64,
    },
    /// A record of the version held with other contents (for another person's: accounts that
    /// neither record contains whole, so neither is a view of the other): two different records
    /// were signed for one version.
    #[error("version {version} of this person's record was seen with other contents")]
    Equivocation {
        /// The version both records claim.
        version: u64,
    },
    /// A change would make her record encode to this many bytes, over [`MAX_OWN_RECORD_LEN`]:
    /// it is not made.
    #[error("a record of {0} bytes is over the {MAX_OWN_RECORD_LEN} a person's devices exchange")]
    TooLarge(usize),
    /// Another person's record names users her accounts are shown to, which only her own
    /// devices' record may.
    #[error("another person's record names who her accounts are shown to")]
    ShownToInAnothersRecord,
    /// A record lists more than [`MAX_LINKED_ACCOUNTS`] accounts, or linking one more would.
    #[error("a person links at most {MAX_LINKED_ACCOUNTS} accounts")]
    TooManyAccounts,
    /// The account named (`name@app`) is not one the record lists: a change of an account she
    /// did not link, a record sent from an account it does not list, or a looked-up record that
    /// does not name the address asked for.
    #[error("{0} is not one of this person's accounts")]
    NotLinked(String),
    /// This device holds as many other people's records as it may ([`MAX_PEOPLE`] records, or
    /// [`MAX_PEOPLE_BYTES`] encoded bytes in all): a new one is not kept.
    #[error("too many people known ({MAX_PEOPLE})")]
    TooManyPeople,
}

/// Who a signed view of a person's record is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience<'a> {
    /// Anyone who asks a relay for one of her addresses.
    Public,
    /// One user she has a conversation with.
    Contact(&'a str),
    /// Her own devices: every account, with the names each chosen account is shown to.
    Own,
}

/// One device of a linked account, with its cross-signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkedDevice {
    /// The device's id in its account (never 0).
    pub device_id: u32,
    /// The device's identity key, which signed the person key and the device's address.
    pub identity_key: IdentityKey,
    signature: [u8; SIGNATURE_LEN],
}

/// One linked account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkedAccount {
    /// The account's address, `name@app`.
    pub user: String,
    /// Who may see that the account is hers: the public, her contacts, or the users in
    /// `shown_to` (never `Unspecified` in a verified record).
    pub visibility: Visibility,
    /// The account's devices she lists, each cross-signed: one to
    /// `switchboard_wire::limits::MAX_DEVICES_PER_USER`, no id twice.
    pub devices: Vec<LinkedDevice>,
    /// For [`Visibility::Chosen`]: who may see it (only in her own devices' record).
    pub shown_to: Vec<String>,
}

impl LinkedAccount {
    fn visible_to(&self, audience: Audience<'_>) -> bool {
        match (self.visibility, audience) {
            (_, Audience::Own) => true,
            (Visibility::Public, _) => true,
            (Visibility::Contacts, Audience::Contact(_)) => true,
            (Visibility::Chosen, Audience::Contact(user)) => self.shown_to.iter().any(|shown| shown == user),
            _ => false,
        }
    }
}

/// A person's record whose signatures verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonRecord {
    person_key: IdentityKey,
    version: u64,
    accounts: Vec<LinkedAccount>,
    signature: [u8; SIGNATURE_LEN],
}

impl PersonRecord {
    /// Decodes and verifies `bytes` (an encoded [`wire::PersonRecord`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<PersonRecord, PersonError> {
        PersonRecord::verify(switchboard_wire::decode(bytes, MAX_PERSON_RECORD_LEN)?)
    }

    /// Verifies a record: the person key's signature, every device's cross-signature, and its
    /// shape (valid and distinct addresses, at most [`MAX_LINKED_ACCOUNTS`] accounts, each with at
    /// least one and at most [`switchboard_wire::limits::MAX_DEVICES_PER_USER`] distinct devices).
    pub fn verify(record: wire::PersonRecord) -> Result<PersonRecord, PersonError> {
        let person_key = IdentityKey::from_bytes(&record.person_key).map_err(|_| PersonError::Malformed("person key"))?;
        let signature: [u8; SIGNATURE_LEN] = record.signature.as_slice().try_into().map_err(|_| PersonError::Malformed("signature length"))?;
        if record.accounts.len() > MAX_LINKED_ACCOUNTS {
            return Err(PersonError::TooManyAccounts);
        }
        let mut accounts: Vec<LinkedAccount> = Vec::with_capacity(record.accounts.len());
        for account in &record.accounts {
            UserAddress::split(&account.user).map_err(|_| PersonError::Malformed("an account that is not name@app"))?;
            if accounts.iter().any(|known| known.user == account.user) {
                return Err(PersonError::Malformed("an account listed twice"));
            }
            let visibility = match Visibility::try_from(account.visibility) {
                Ok(Visibility::Unspecified) | Err(_) => return Err(PersonError::Malformed("visibility")),
                Ok(visibility) => visibility,
            };
            if account.shown_to.len() > MAX_SHOWN_TO || (visibility != Visibility::Chosen && !account.shown_to.is_empty()) {
                return Err(PersonError::Malformed("shown_to"));
            }
            if account.shown_to.iter().any(|user| UserAddress::split(user).is_err()) {
                return Err(PersonError::Malformed("shown_to names a user that is not name@app"));
            }
            if account.devices.is_empty() || account.devices.len() > switchboard_wire::limits::MAX_DEVICES_PER_USER {
                return Err(PersonError::Malformed("an account with no devices, or too many"));
            }
            let mut devices: Vec<LinkedDevice> = Vec::with_capacity(account.devices.len());
            for device in &account.devices {
                if device.device_id == 0 || devices.iter().any(|known| known.device_id == device.device_id) {
                    return Err(PersonError::Malformed("a device id of 0, or listed twice"));
                }
                let identity_key = IdentityKey::from_bytes(&device.identity_key).map_err(|_| PersonError::Malformed("identity key"))?;
                let device_signature: [u8; SIGNATURE_LEN] =
                    device.signature.as_slice().try_into().map_err(|_| PersonError::Malformed("device signature length"))?;
                let signed = device_signed_bytes(&person_key, &account.user, device.device_id);
                if !identity_key.verify_signature(&signed, &device_signature) {
                    return Err(PersonError::BadDeviceSignature { user: account.user.clone(), device: device.device_id });
                }
                devices.push(LinkedDevice { device_id: device.device_id, identity_key, signature: device_signature });
            }
            accounts.push(LinkedAccount { user: account.user.clone(), visibility, devices, shown_to: account.shown_to.clone() });
        }
        let verified = PersonRecord { person_key, version: record.version, accounts, signature };
        if !person_key.verify_signature(&record_signed_bytes(&verified.unsigned_wire()), &signature) {
            return Err(PersonError::BadSignature);
        }
        Ok(verified)
    }

    /// The person key: what a contact verifies once for every account of hers.
    pub fn person_key(&self) -> &IdentityKey {
        &self.person_key
    }

    /// The record's version: one more at every change she signs; of two records of one person
    /// a device keeps the higher.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The accounts the record shows (every one in her own devices' record; those its audience
    /// may see in a view), in the order she linked them.
    pub fn accounts(&self) -> &[LinkedAccount] {
        &self.accounts
    }

    /// The account `user` (`name@app`), if the record shows it.
    pub fn account(&self, user: &str) -> Option<&LinkedAccount> {
        self.accounts.iter().find(|account| account.user == user)
    }

    /// Every device of every account the record lists.
    pub fn devices(&self) -> impl Iterator<Item = ProtocolAddress> + '_ {
        self.accounts.iter().flat_map(|account| account.devices.iter().map(|device| ProtocolAddress::new(account.user.clone(), device.device_id)))
    }

    /// Whether `address` is a device of this person's with identity key `identity_key`.
    pub fn vouches_for(&self, address: &ProtocolAddress, identity_key: &IdentityKey) -> bool {
        self.account(address.name())
            .and_then(|account| account.devices.iter().find(|device| device.device_id == address.device_id()))
            .is_some_and(|device| device.identity_key == *identity_key)
    }

    /// Whether `address` is a device this record lists, whatever its key.
    pub fn lists(&self, address: &ProtocolAddress) -> bool {
        self.account(address.name()).is_some_and(|account| account.devices.iter().any(|device| device.device_id == address.device_id()))
    }

    /// The record as it goes on the wire.
    pub fn to_wire(&self) -> wire::PersonRecord {
        wire::PersonRecord { signature: self.signature.to_vec(), ..self.unsigned_wire() }
    }

    fn unsigned_wire(&self) -> wire::PersonRecord {
        wire::PersonRecord {
            person_key: self.person_key.serialize().to_vec(),
            version: self.version,
            accounts: self
                .accounts
                .iter()
                .map(|account| wire::LinkedAccount {
                    user: account.user.clone(),
                    visibility: account.visibility as i32,
                    devices: account
                        .devices
                        .iter()
                        .map(|device| wire::LinkedDevice {
                            device_id: device.device_id,
                            identity_key: device.identity_key.serialize().to_vec(),
                            signature: device.signature.to_vec(),
                        })
                        .collect(),
                    shown_to: account.shown_to.clone(),
                })
                .collect(),
            signature: Vec::new(),
        }
    }
}

/// The bytes a device's identity key signs to vouch for a person key:
/// `LABEL ‖ person key (33) ‖ len(user) ‖ user ‖ device id`, the length and id big-endian u32.
pub fn device_signed_bytes(person_key: &IdentityKey, user: &str, device_id: u32) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(DEVICE_LABEL.len() + 33 + 4 + user.len() + 4);
    bytes.extend_from_slice(DEVICE_LABEL);
    bytes.extend_from_slice(&person_key.serialize());
    put_str(&mut bytes, user);
    bytes.extend_from_slice(&device_id.to_be_bytes());
    bytes
}

/// The bytes a person key signs: every field of `record` but its signature, each length-prefixed
/// (big-endian u32) so that no two records share an encoding. Protobuf's own encoding is not
/// canonical, so it is not what is signed.
pub fn record_signed_bytes(record: &wire::PersonRecord) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(256);
    bytes.extend_from_slice(RECORD_LABEL);
    put_bytes(&mut bytes, &record.person_key);
    bytes.extend_from_slice(&record.version.to_be_bytes());
    put_len(&mut bytes, record.accounts.len());
    for account in &record.accounts {
        put_str(&mut bytes, &account.user);
        bytes.extend_from_slice(&account.visibility.to_be_bytes());
        put_len(&mut bytes, account.devices.len());
        for device in &account.devices {
            bytes.extend_from_slice(&device.device_id.to_be_bytes());
            put_bytes(&mut bytes, &device.identity_key);
            put_bytes(&mut bytes, &device.signature);
        }
        put_len(&mut bytes, account.shown_to.len());
        for user in &account.shown_to {
            put_str(&mut bytes, user);
        }
    }
    bytes
}

fn put_len(bytes: &mut Vec<u8>, len: usize) {
    bytes.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_bytes(bytes: &mut Vec<u8>, field: &[u8]) {
    put_len(bytes, field.len());
    bytes.extend_from_slice(field);
}

fn put_str(bytes: &mut Vec<u8>, field: &str) {
    put_bytes(bytes, field.as_bytes());
}

/// The safety number of two people (or of a person and a user who linked nothing): 60 digits
/// computed as libsignal's, over the two person keys. One number for every pair of their accounts.
pub fn person_safety_number(mine: &IdentityKey, theirs: &IdentityKey) -> String {
    switchboard_session::fingerprint::safety_number(
        b"switchboard person",
        mine,
        b"switchboard person",
        theirs,
        switchboard_session::fingerprint::SAFETY_NUMBER_ITERATIONS,
    )
}

/// How a party of a conversation is named in its id: a person by her person key (so that the
/// conversation is the same whichever account of hers writes), anyone else by the address.
pub fn party(person_key: Option<&IdentityKey>, user: &str) -> String {
    match person_key {
        Some(key) => key.serialize().iter().fold(String::from("person:"), |mut hex, byte| {
            use std::fmt::Write;
            let _ = write!(hex, "{byte:02x}");
            hex
        }),
        None => user.to_owned(),
    }
}

/// The id of the conversation of two parties ([`party`]): `dm-` and 32 hex digits of SHA-256
/// over the two, in order — the same on both sides and whichever app either writes from.
pub fn direct_conversation(a: &str, b: &str) -> String {
    use sha2::{Digest, Sha256};
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    let mut hasher = Sha256::new();
    for party in [first, second] {
        hasher.update((party.len() as u32).to_be_bytes());
        hasher.update(party.as_bytes());
    }
    let hash = hasher.finalize();
    hash[..16].iter().fold(String::from("dm-"), |mut hex, byte| {
        use std::fmt::Write;
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// What a person's own devices hold: her person key and every linked account.
pub struct Person {
    key: IdentityKeyPair,
    record: PersonRecord,
    /// Devices a version of her record listed and a later one dropped: none of them may bring a
    /// newer record of hers (a device put back must be linked again, by a device still hers).
    revoked: Vec<ProtocolAddress>,
}

/// Devices one person remembers as unlinked.
pub const MAX_REVOKED: usize = 1_024;

impl std::fmt::Debug for Person {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Person").field("person_key", self.record.person_key()).field("version", &self.record.version).finish_non_exhaustive()
    }
}

impl Person {
    /// A new person whose first account is `user`, with `device` (this device, whose identity
    /// key pair is `identity`).
    pub fn new<R: CryptoRng + ?Sized>(device: &ProtocolAddress, identity: &IdentityKeyPair, visibility: Visibility, rng: &mut R) -> Person {
        let key = IdentityKeyPair::generate(rng);
        let record = PersonRecord { person_key: *key.identity_key(), version: 0, accounts: Vec::new(), signature: [0; SIGNATURE_LEN] };
        let mut person = Person { key, record, revoked: Vec::new() };
        person.put_device(device, identity, visibility, rng).expect("a first account fits");
        person
    }

    /// The person a device joins with an invitation another device of hers showed it.
    pub fn from_invitation(bytes: &[u8]) -> Result<Person, PersonError> {
        let invitation: wire::LinkInvitation = switchboard_wire::decode(bytes, MAX_PERSON_RECORD_LEN + 1024)?;
        let key = IdentityKeyPair::deserialize(&invitation.person_key_pair).map_err(|_| PersonError::Malformed("person key pair"))?;
        let record = PersonRecord::verify(invitation.record.ok_or(PersonError::Malformed("no record"))?)?;
        if record.person_key != *key.identity_key() {
            return Err(PersonError::Malformed("the record is another person's"));
        }
        Ok(Person { key, record, revoked: Vec::new() })
    }

    /// Restores what [`Self::to_stored`] gave.
    pub fn from_stored(key_pair: &[u8], record: wire::PersonRecord, revoked: Vec<ProtocolAddress>) -> Result<Person, PersonError> {
        let key = IdentityKeyPair::deserialize(key_pair).map_err(|_| PersonError::Malformed("person key pair"))?;
        let record = PersonRecord::verify(record)?;
        if record.person_key != *key.identity_key() {
            return Err(PersonError::Malformed("the record is another person's"));
        }
        if revoked.len() > MAX_REVOKED {
            return Err(PersonError::Malformed("more revoked devices than a person keeps"));
        }
        Ok(Person { key, record, revoked })
    }

    /// The key pair (secret), the record and the revoked devices, to keep on disk.
    pub fn to_stored(&self) -> (Zeroizing<Vec<u8>>, wire::PersonRecord, &[ProtocolAddress]) {
        (self.key.serialize(), self.record.to_wire(), &self.revoked)
    }

    /// Whether `from` (with identity `identity`) may bring a newer record of hers: a device her
    /// record lists, or a device the newer record lists that was never unlinked (one that just
    /// joined with an invitation).
    pub fn may_update(&self, newer: &PersonRecord, from: &ProtocolAddress, identity: &IdentityKey) -> bool {
        self.record.vouches_for(from, identity) || (newer.vouches_for(from, identity) && !self.record.lists(from) && !self.revoked.contains(from))
    }

    /// The invitation a new device of hers is shown (a code it scans): secret, as it holds the
    /// person key.
    pub fn invitation(&self) -> Zeroizing<Vec<u8>> {
        let pair = self.key.serialize();
        Zeroizing::new(wire::LinkInvitation { person_key_pair: pair.to_vec(), record: Some(self.record.to_wire()) }.encode_to_vec())
    }

    /// The record with every account (her own devices' view).
    pub fn record(&self) -> &PersonRecord {
        &self.record
    }

    /// Her person key's public half, which signs every record of hers.
    pub fn person_key(&self) -> &IdentityKey {
        self.record.person_key()
    }

    /// Whether `address` is a device of hers (on any of her accounts).
    pub fn owns(&self, address: &ProtocolAddress) -> bool {
        self.record.lists(address)
    }

    /// Lists `device` (identity key pair `identity`) under its account, linking the account with
    /// `visibility` if it is new. A new version.
    pub fn put_device<R: CryptoRng + ?Sized>(&mut self, device: &ProtocolAddress, identity: &IdentityKeyPair, visibility: Visibility, rng: &mut R) -> Result<(), PersonError> {
        UserAddress::split(device.name()).map_err(|_| PersonError::Malformed("an account that is not name@app"))?;
        let signed = device_signed_bytes(self.person_key(), device.name(), device.device_id());
        let linked = LinkedDevice { device_id: device.device_id(), identity_key: *identity.identity_key(), signature: identity.private_key().sign(&signed, rng) };
        let mut accounts = self.record.accounts.clone();
        match accounts.iter_mut().find(|account| account.user == device.name()) {
            Some(account) => {
                account.devices.retain(|known| known.device_id != device.device_id());
                account.devices.push(linked);
            }
            None => {
                if accounts.len() == MAX_LINKED_ACCOUNTS {
                    return Err(PersonError::TooManyAccounts);
                }
                accounts.push(LinkedAccount { user: device.name().to_owned(), visibility, devices: vec![linked], shown_to: Vec::new() });
            }
        }
        self.resign(accounts, rng)
    }

    /// Sets who may see that `user` is hers; `shown_to` counts for [`Visibility::Chosen`] only.
    pub fn set_visibility<R: CryptoRng + ?Sized>(&mut self, user: &str, visibility: Visibility, shown_to: Vec<String>, rng: &mut R) -> Result<(), PersonError> {
        if visibility == Visibility::Unspecified {
            return Err(PersonError::Malformed("visibility"));
        }
        if shown_to.len() > MAX_SHOWN_TO || shown_to.iter().any(|user| UserAddress::split(user).is_err()) {
            return Err(PersonError::Malformed("shown_to"));
        }
        let mut accounts = self.record.accounts.clone();
        let account = accounts.iter_mut().find(|account| account.user == user).ok_or_else(|| PersonError::NotLinked(user.to_owned()))?;
        account.visibility = visibility;
        account.shown_to = if visibility == Visibility::Chosen { shown_to } else { Vec::new() };
        self.resign(accounts, rng)
    }

    /// Revokes the link of `user`: a new version without it. Readers that hold the new version
    /// no longer send to it as hers, and her devices no longer carry messages to it.
    pub fn unlink<R: CryptoRng + ?Sized>(&mut self, user: &str, rng: &mut R) -> Result<(), PersonError> {
        let mut accounts = self.record.accounts.clone();
        let before = accounts.len();
        accounts.retain(|account| account.user != user);
        if accounts.len() == before {
            return Err(PersonError::NotLinked(user.to_owned()));
        }
        let dropped: Vec<ProtocolAddress> = self.record.devices().filter(|device| device.name() == user).collect();
        self.resign(accounts, rng)?;
        self.revoke(dropped);
        Ok(())
    }

    /// Takes a newer record of hers that another of her devices made (its every account and
    /// device). Returns whether it was newer.
    pub fn adopt(&mut self, record: PersonRecord) -> Result<bool, PersonError> {
        if record.person_key != *self.person_key() {
            return Err(PersonError::Malformed("the record is another person's"));
        }
        if record.version < self.record.version {
            return Err(PersonError::Rollback { offered: record.version, held: self.record.version });
        }
        if record.version == self.record.version {
            return if record == self.record { Ok(false) } else { Err(PersonError::Equivocation { version: record.version }) };
        }
        let dropped: Vec<ProtocolAddress> = self.record.devices().filter(|device| !record.lists(device)).collect();
        self.revoke(dropped);
        self.record = record;
        Ok(true)
    }

    fn revoke(&mut self, devices: Vec<ProtocolAddress>) {
        for device in devices {
            if !self.revoked.contains(&device) {
                if self.revoked.len() == MAX_REVOKED {
                    self.revoked.remove(0);
                }
                self.revoked.push(device);
            }
        }
    }

    /// Her record as `audience` may see it, signed (same version as her own).
    pub fn view<R: CryptoRng + ?Sized>(&self, audience: Audience<'_>, rng: &mut R) -> wire::PersonRecord {
        if audience == Audience::Own {
            return self.record.to_wire();
        }
        let accounts: Vec<LinkedAccount> = self
            .record
            .accounts
            .iter()
            .filter(|account| account.visible_to(audience))
            .map(|account| LinkedAccount { shown_to: Vec::new(), ..account.clone() })
            .collect();
        self.sign(self.record.version, accounts, rng).to_wire()
    }

    fn resign<R: CryptoRng + ?Sized>(&mut self, accounts: Vec<LinkedAccount>, rng: &mut R) -> Result<(), PersonError> {
        let record = self.sign(self.record.version + 1, accounts, rng);
        let len = record.to_wire().encoded_len();
        if len > MAX_OWN_RECORD_LEN {
            return Err(PersonError::TooLarge(len));
        }
        self.record = record;
        Ok(())
    }

    fn sign<R: CryptoRng + ?Sized>(&self, version: u64, accounts: Vec<LinkedAccount>, rng: &mut R) -> PersonRecord {
        let mut record = PersonRecord { person_key: *self.person_key(), version, accounts, signature: [0; SIGNATURE_LEN] };
        record.signature = self.key.private_key().sign(&record_signed_bytes(&record.unsigned_wire()), rng);
        record
    }
}

/// What a device knows of other people: the newest record of each it was given, and for each
/// account the person whose record that account's own device sent (the only claim on an account
/// this device acts on: anyone can sign a record naming any account, only the account's devices
/// can send one from it).
#[derive(Clone, Debug, Default)]
pub struct People {
    records: HashMap<[u8; 33], PersonRecord>,
    /// Account → the person whose record a device of that account sent.
    confirmed: HashMap<String, [u8; 33]>,
    bytes: usize,
}

impl People {
    /// Takes `record`, sent by a device of account `from_user` (which it lists), if it is the
    /// first or a newer version of its person's, or a richer view of the version held (a person
    /// shows her contacts more accounts than the public). An older version is refused
    /// ([`PersonError::Rollback`]); the same version with accounts that neither view contains
    /// whole is too ([`PersonError::Equivocation`]). Records name no `shown_to`. Returns whether
    /// it changed what is known.
    pub fn accept(&mut self, record: PersonRecord, from_user: &str) -> Result<bool, PersonError> {
        if record.accounts.iter().any(|account| !account.shown_to.is_empty()) {
            return Err(PersonError::ShownToInAnothersRecord);
        }
        if record.account(from_user).is_none() {
            return Err(PersonError::NotLinked(from_user.to_owned()));
        }
        let key = record.person_key.serialize();
        let size = record.to_wire().encoded_len();
        let held_size = self.records.get(&key).map_or(0, |held| held.to_wire().encoded_len());
        if let Some(held) = self.records.get(&key) {
            if record.version < held.version {
                return Err(PersonError::Rollback { offered: record.version, held: held.version });
            }
            if record.version == held.version {
                let contains = |outer: &PersonRecord, inner: &PersonRecord| inner.accounts.iter().all(|account| outer.accounts.contains(account));
                if contains(held, &record) {
                    return Ok(self.confirm(from_user, key));
                }
                if !contains(&record, held) {
                    return Err(PersonError::Equivocation { version: record.version });
                }
            }
        } else if self.records.len() >= MAX_PEOPLE {
            return Err(PersonError::TooManyPeople);
        }
        if self.bytes - held_size + size > MAX_PEOPLE_BYTES {
            return Err(PersonError::TooManyPeople);
        }
        // Accounts the new version no longer lists are no longer hers.
        self.confirmed.retain(|user, owner| *owner != key || record.account(user).is_some());
        self.bytes = self.bytes - held_size + size;
        self.records.insert(key, record);
        self.confirm(from_user, key);
        Ok(true)
    }

    fn confirm(&mut self, user: &str, key: [u8; 33]) -> bool {
        self.confirmed.insert(user.to_owned(), key) != Some(key)
    }

    /// The person whose record a device of `user` sent, if any.
    pub fn person_of(&self, user: &str) -> Option<&PersonRecord> {
        self.confirmed.get(user).and_then(|key| self.records.get(key))
    }

    /// Every record held.
    pub fn records(&self) -> impl Iterator<Item = &PersonRecord> {
        self.records.values()
    }

    /// What [`Self::restore`] takes back: each record with the accounts that sent it.
    pub fn to_stored(&self) -> Vec<wire::KnownPerson> {
        self.records
            .iter()
            .map(|(key, record)| wire::KnownPerson {
                record: Some(record.to_wire()),
                confirmed_by: self.confirmed.iter().filter(|(_, owner)| *owner == key).map(|(user, _)| user.clone()).collect(),
            })
            .collect()
    }

    /// The people [`Self::to_stored`] gave, each record checked again as on arrival.
    pub fn restore(stored: &[wire::KnownPerson]) -> Result<People, PersonError> {
        if stored.len() > MAX_PEOPLE {
            return Err(PersonError::TooManyPeople);
        }
        let mut people = People::default();
        for known in stored {
            let record = PersonRecord::verify(known.record.clone().ok_or(PersonError::Malformed("no record"))?)?;
            let Some((first, rest)) = known.confirmed_by.split_first() else { continue };
            people.accept(record.clone(), first)?;
            for user in rest {
                people.accept(record.clone(), user)?;
            }
        }
        Ok(people)
    }

    /// How many people's records are held (at most [`MAX_PEOPLE`]).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no one's record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests;
