//! What a relay keeps on disk, as the mutations that change it and the state they add up to.
//! The core emits mutations; a store applies them atomically in batches; on restart the stored
//! state is loaded back into a fresh core. Only what a committed batch wrote survives a crash.
//!
//! [`StoredState`] is what the core keeps in memory of it: everything but the contents of
//! mailboxes, outboxes and blobs, which stay on disk and are read back
//! ([`crate::storage::Contents`]) when they are handed over. Of an envelope it keeps a
//! [`MailEntry`], of a frame for another app an [`OutboundEntry`], of a blob a [`BlobEntry`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use switchboard_wire::Message;
use switchboard_wire::switchboard::{DeviceAddress, Envelope, FederationFrame, KeptReport, PreKeyBundle, Report, federation_frame};

/// A device on this relay's app: `user@app` and device id.
pub type DeviceKey = (String, u32);

/// What names an envelope in a mailbox: its sender and the id its sender gave it
/// ([`switchboard_wire::envelope::envelope_key`]). Ids alone would let one sender's envelope pass
/// for a duplicate of another's.
pub type MailKey = [u8; switchboard_wire::envelope::ENVELOPE_KEY_LEN];

/// The [`MailKey`] of the envelope `id` from `sender`.
pub fn mail_key(sender: Option<&DeviceAddress>, id: &[u8]) -> MailKey {
    let (name, device_id) = sender.map_or(("", 0), |sender| (sender.name.as_str(), sender.device_id));
    switchboard_wire::envelope::envelope_key(name, device_id, id)
}

/// What the relay keeps in memory of an envelope in a mailbox; its content stays on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailEntry {
    /// Its key in the mailbox table: the sender's device and the envelope's id.
    pub key: MailKey,
    /// The user it is from ("" if it names none): one-to-one mail is counted by sender against
    /// the stranger allowance.
    pub sender: String,
    /// Bytes of content.
    pub bytes: usize,
    /// Whether it is a group message (which the stranger allowance does not cover).
    pub group: bool,
}

impl MailEntry {
    /// What to keep in memory of `envelope`.
    pub fn of(envelope: &Envelope) -> MailEntry {
        MailEntry {
            key: mail_key(envelope.sender.as_ref(), &envelope.id),
            sender: envelope.sender.as_ref().map_or_else(String::new, |sender| sender.name.clone()),
            bytes: envelope.content.len(),
            group: !envelope.group_id.is_empty(),
        }
    }
}

/// What the relay keeps in memory of a frame waiting for another app; the frame stays on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundEntry {
    /// The device whose envelope it carries.
    pub sender: Option<DeviceKey>,
    /// Its encoded size.
    pub bytes: usize,
}

impl OutboundEntry {
    /// What to keep in memory of `frame`.
    pub fn of(frame: &FederationFrame) -> OutboundEntry {
        let sender = match &frame.body {
            Some(federation_frame::Body::Forward(envelope)) => envelope.sender.as_ref(),
            Some(federation_frame::Body::ForwardGroup(group)) => group.sender.as_ref(),
            _ => None,
        };
        OutboundEntry { sender: sender.map(|sender| (sender.name.clone(), sender.device_id)), bytes: frame.encoded_len() }
    }
}

/// What the relay keeps in memory of a blob; the blob itself stays on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobEntry {
    /// Its size in bytes.
    pub bytes: usize,
    /// When it was stored, in seconds since the Unix epoch (by the clock [`crate::RelayCore::tick`]
    /// is given): it is deleted [`crate::BLOB_LIFETIME`] later.
    pub stored_at: u64,
}

/// One change to durable state.
#[derive(Clone, Debug, PartialEq)]
pub enum Mutation {
    /// A device account and the SHA-256 of its credential.
    PutAccount {
        /// The device, as (user, device id).
        device: DeviceKey,
        /// The SHA-256 of the credential the device authenticates with.
        credential_hash: [u8; 32],
    },
    /// The bundles a device has left to hand out (replacing what was there), and its low mark
    /// (see `UploadBundles`).
    PutBundles {
        /// The device, as (user, device id).
        device: DeviceKey,
        /// The bundles, handed out first to last.
        bundles: Vec<PreKeyBundle>,
        /// How few bundles left the device is told of (0: never).
        low_mark: u32,
    },
    /// An envelope in a device's mailbox.
    PutEnvelope {
        /// The device whose mailbox holds it.
        device: DeviceKey,
        /// Its place in the mailbox, increasing.
        seq: u64,
        /// The envelope, as it is delivered.
        envelope: Envelope,
    },
    /// An envelope acknowledged by its device, gone from the mailbox.
    DeleteEnvelope {
        /// The device whose mailbox held it.
        device: DeviceKey,
        /// Its place in the mailbox.
        seq: u64,
    },
    /// A frame waiting to be accepted by another app's relay.
    PutOutbound {
        /// The app whose relay it waits for.
        app: String,
        /// Its place in that outbox, increasing.
        seq: u64,
        /// The frame, as it is sent.
        frame: FederationFrame,
    },
    /// A frame accepted by the other app's relay, gone from the outbox.
    DeleteOutbound {
        /// The app whose relay accepted it.
        app: String,
        /// Its place in that outbox.
        seq: u64,
    },
    /// An encrypted attachment, kept for anyone who has its id; stored at `stored_at` (seconds
    /// since the Unix epoch).
    PutBlob {
        /// The id it is fetched by.
        id: String,
        /// Its encrypted bytes.
        blob: Vec<u8>,
        /// When it was stored, in seconds since the Unix epoch.
        stored_at: u64,
    },
    /// A blob expired.
    DeleteBlob {
        /// The id it was fetched by.
        id: String,
    },
    /// The head of a group this relay is the hub of (replacing the one before).
    PutGroupHead {
        /// The group's id.
        group: String,
        /// The new head.
        head: Head,
    },
    /// `user` (of this app) sent something to `contact`: mail from `contact` is a contact's.
    AddContact {
        /// The sender, a user of this app.
        user: String,
        /// Whom it sent to (`name@app`).
        contact: String,
    },
    /// The record published for `user` (an encoded `PersonRecord`), or none.
    PutPerson {
        /// The user, of this app.
        user: String,
        /// The encoded record; `None` deletes it.
        record: Option<Vec<u8>>,
    },
    /// The key this relay stamps franking commitments with (made once, on its first start).
    PutStampKey {
        /// The key.
        key: StampKey,
    },
    /// `user` (of this app) blocked `blocked` (`on`), or unblocked it.
    SetBlocked {
        /// Who blocks, a user of this app.
        user: String,
        /// Whom (`name@app`).
        blocked: String,
        /// Blocked (`true`) or unblocked.
        on: bool,
    },
    /// A verified abuse report, number `id`, for this app's moderators.
    PutReport {
        /// Its number, increasing.
        id: u64,
        /// The report and what it reports.
        kept: KeptReport,
    },
    /// A channel of this app (`name@app`), owned by `owner`, and its admins (replacing those
    /// before): sorted, without repeats, the owner among them.
    PutChannel {
        /// The channel's id (`name@app`).
        channel: String,
        /// The user who opened it.
        owner: String,
        /// The users whose devices may post.
        admins: Vec<String>,
    },
    /// `device` (of this app) follows `channel` (of any app) (`on`), or no longer does.
    SetFollowing {
        /// The channel's id.
        channel: String,
        /// The follower, a device of this app.
        device: DeviceKey,
        /// Follows (`true`) or no longer.
        on: bool,
    },
    /// Another `app` has devices that follow `channel` (one of this app's) (`on`), or none left.
    SetChannelApp {
        /// The channel's id.
        channel: String,
        /// The other app.
        app: String,
        /// Has followers (`true`) or none left.
        on: bool,
    },
    /// A device removed by its user: its account, its bundles and low mark, its whole mailbox
    /// and every channel it followed are gone.
    DeleteAccount {
        /// The device removed.
        device: DeviceKey,
    },
}

/// The MAC key a relay stamps franking commitments with. Its `Debug` shows nothing of it, and it
/// is zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct StampKey(pub [u8; switchboard_wire::franking::FRANKING_LEN]);

impl std::fmt::Debug for StampKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StampKey(..)")
    }
}

impl Drop for StampKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// The head of a group's chain of changes, at its hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// How many changes were ordered (0: the group as created).
    pub epoch: u64,
    /// The hash that names the state at `epoch`.
    pub state_hash: [u8; 32],
    /// The Ed25519 key that must sign the next change.
    pub order_key: [u8; 32],
    /// The hashes of the states before, oldest first: at most `MAX_HEAD_HISTORY`, so that a
    /// member can check a change it hears of after later ones were ordered.
    pub recent_hashes: Vec<[u8; 32]>,
}

/// Everything a relay has on disk, but for the contents of mailboxes, outboxes and blobs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredState {
    /// Ordered, so a user's devices are one range.
    pub accounts: BTreeMap<DeviceKey, [u8; 32]>,
    /// Per device, the bundles it has left to hand out, first to last.
    pub bundles: BTreeMap<DeviceKey, Vec<PreKeyBundle>>,
    /// Per device, how few one-time prekeys left it is told of (absent: never).
    pub prekey_marks: BTreeMap<DeviceKey, u32>,
    /// Per device, its envelopes by sequence number.
    pub mailboxes: HashMap<DeviceKey, BTreeMap<u64, MailEntry>>,
    /// Per other app, the frames waiting for it by sequence number.
    pub outboxes: HashMap<String, BTreeMap<u64, OutboundEntry>>,
    /// The blobs kept, by id.
    pub blobs: HashMap<String, BlobEntry>,
    /// The groups this relay is the hub of, by id.
    pub group_heads: HashMap<String, Head>,
    /// Per user of this app, the users it has sent something to.
    pub contacts: HashMap<String, BTreeSet<String>>,
    /// Per user of this app, the person record it published (encoded), and their bytes in all.
    pub people: HashMap<String, Vec<u8>>,
    /// Bytes of all the person records above.
    pub people_bytes: usize,
    /// The key franking commitments are stamped with (none only before the first start).
    pub stamp_key: Option<StampKey>,
    /// Per user of this app, the users it blocked.
    pub blocked: HashMap<String, BTreeSet<String>>,
    /// The verified abuse reports kept, by number (the reports themselves stay on disk).
    pub reports: BTreeMap<u64, ReportEntry>,
    /// How many of them each user made, and what each reports ([`report_key`]).
    pub reports_by: HashMap<String, usize>,
    /// What each kept report reports ([`report_key`]): a second report of the same is refused.
    pub report_keys: std::collections::HashSet<[u8; 32]>,
    /// Bytes of reported content kept, in all.
    pub report_bytes: usize,
    /// The channels of this app, by id.
    pub channels: BTreeMap<String, Channel>,
    /// Per channel (of any app), the devices of this app that follow it; and per device, the
    /// channels it follows (the same facts, both ways).
    pub followers: BTreeMap<String, BTreeSet<DeviceKey>>,
    /// Per device of this app, the channels it follows.
    pub follows: BTreeMap<DeviceKey, BTreeSet<String>>,
    /// Per channel of this app, the other apps with devices that follow it.
    pub channel_apps: BTreeMap<String, BTreeSet<String>>,
}

/// A channel of this app, at its hub (this relay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// The user who opened it: only its devices change it.
    pub owner: String,
    /// The users whose devices may post to it (the owner among them).
    pub admins: BTreeSet<String>,
}

/// What the relay keeps in memory of a kept report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportEntry {
    /// The user of this app who made it.
    pub reporter: String,
    /// What it reports ([`report_key`]).
    pub key: [u8; 32],
}

/// What names a report: its reporter and the stamped message it reports, with everything the
/// stamp binds (the same message reported twice by one user is one report; one that differs in
/// anything the check covers is another, checked on its own).
pub fn report_key(reporter: &str, report: &Report) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    let (sender, device) = report.sender.as_ref().map_or(("", 0), |sender| (sender.name.as_str(), sender.device_id));
    let franking = report.franking.clone().unwrap_or_default();
    for field in [reporter.as_bytes(), sender.as_bytes(), &franking.commitment, &franking.stamp, report.recipient.as_bytes()] {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field);
    }
    hash.update(device.to_be_bytes());
    hash.update(franking.stamped_at.to_be_bytes());
    hash.update([u8::from(report.group)]);
    hash.finalize().into()
}

impl StoredState {
    /// Applies one mutation (what a store does on commit, and what a memory store replays).
    pub fn apply(&mut self, mutation: &Mutation) {
        match mutation {
            Mutation::PutAccount { device, credential_hash } => {
                self.accounts.insert(device.clone(), *credential_hash);
            }
            Mutation::PutBundles { device, bundles, low_mark } => {
                self.bundles.insert(device.clone(), bundles.clone());
                match low_mark {
                    0 => self.prekey_marks.remove(device),
                    mark => self.prekey_marks.insert(device.clone(), *mark),
                };
            }
            Mutation::PutEnvelope { device, seq, envelope } => {
                let mailbox = match self.mailboxes.get_mut(device) {
                    Some(mailbox) => mailbox,
                    None => self.mailboxes.entry(device.clone()).or_default(),
                };
                mailbox.insert(*seq, MailEntry::of(envelope));
            }
            Mutation::DeleteEnvelope { device, seq } => {
                if let Some(mailbox) = self.mailboxes.get_mut(device) {
                    mailbox.remove(seq);
                }
            }
            Mutation::PutOutbound { app, seq, frame } => {
                self.outboxes.entry(app.clone()).or_default().insert(*seq, OutboundEntry::of(frame));
            }
            Mutation::DeleteOutbound { app, seq } => {
                if let Some(outbox) = self.outboxes.get_mut(app) {
                    outbox.remove(seq);
                }
            }
            Mutation::PutBlob { id, blob, stored_at } => {
                self.blobs.insert(id.clone(), BlobEntry { bytes: blob.len(), stored_at: *stored_at });
            }
            Mutation::DeleteBlob { id } => {
                self.blobs.remove(id);
            }
            Mutation::PutGroupHead { group, head } => {
                self.group_heads.insert(group.clone(), head.clone());
            }
            Mutation::AddContact { user, contact } => {
                self.contacts.entry(user.clone()).or_default().insert(contact.clone());
            }
            Mutation::PutPerson { user, record } => {
                let old = match record {
                    Some(record) => {
                        self.people_bytes += record.len();
                        self.people.insert(user.clone(), record.clone())
                    }
                    None => self.people.remove(user),
                };
                self.people_bytes -= old.map_or(0, |old| old.len());
            }
            Mutation::PutStampKey { key } => self.stamp_key = Some(key.clone()),
            Mutation::SetBlocked { user, blocked, on: true } => {
                self.blocked.entry(user.clone()).or_default().insert(blocked.clone());
            }
            Mutation::SetBlocked { user, blocked, on: false } => {
                if let Some(list) = self.blocked.get_mut(user) {
                    list.remove(blocked);
                    if list.is_empty() {
                        self.blocked.remove(user);
                    }
                }
            }
            Mutation::PutReport { id, kept } => {
                let key = report_key(&kept.reporter, kept.report.as_ref().unwrap_or(&Report::default()));
                *self.reports_by.entry(kept.reporter.clone()).or_default() += 1;
                self.report_bytes += kept.report.as_ref().map_or(0, |report| report.content.len());
                self.report_keys.insert(key);
                self.reports.insert(*id, ReportEntry { reporter: kept.reporter.clone(), key });
            }
            Mutation::PutChannel { channel, owner, admins } => {
                let channel_entry = Channel { owner: owner.clone(), admins: admins.iter().cloned().collect() };
                self.channels.insert(channel.clone(), channel_entry);
            }
            Mutation::SetFollowing { channel, device, on: true } => {
                self.followers.entry(channel.clone()).or_default().insert(device.clone());
                self.follows.entry(device.clone()).or_default().insert(channel.clone());
            }
            Mutation::SetFollowing { channel, device, on: false } => self.unfollow(channel, device),
            Mutation::SetChannelApp { channel, app, on: true } => {
                self.channel_apps.entry(channel.clone()).or_default().insert(app.clone());
            }
            Mutation::SetChannelApp { channel, app, on: false } => {
                if let Some(apps) = self.channel_apps.get_mut(channel) {
                    apps.remove(app);
                    if apps.is_empty() {
                        self.channel_apps.remove(channel);
                    }
                }
            }
            Mutation::DeleteAccount { device } => {
                self.accounts.remove(device);
                self.bundles.remove(device);
                self.prekey_marks.remove(device);
                self.mailboxes.remove(device);
                for channel in self.follows.get(device).cloned().unwrap_or_default() {
                    self.unfollow(&channel, device);
                }
            }
        }
    }

    /// `device` no longer follows `channel` (no empty set is left behind).
    fn unfollow(&mut self, channel: &str, device: &DeviceKey) {
        if let Some(devices) = self.followers.get_mut(channel) {
            devices.remove(device);
            if devices.is_empty() {
                self.followers.remove(channel);
            }
        }
        if let Some(channels) = self.follows.get_mut(device) {
            channels.remove(channel);
            if channels.is_empty() {
                self.follows.remove(device);
            }
        }
    }

    /// The next free sequence number: one past every stored one.
    pub fn next_seq(&self) -> u64 {
        let mailboxes = self.mailboxes.values().filter_map(|m| m.keys().next_back());
        let outboxes = self.outboxes.values().filter_map(|o| o.keys().next_back());
        mailboxes.chain(outboxes).max().map_or(1, |seq| seq + 1)
    }
}
