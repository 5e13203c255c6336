//! What is measured: one [`Workload`] per (operation, implementation). Each knows how to prepare
//! its inputs outside the timed region and times only the operation itself, so the interleaved
//! runner (`measure`) and the criterion benches (`benches/sessions.rs`, `benches/groups.rs`) share
//! every line of setup.
//!
//! 1:1 sessions: [`session`] (Switchboard), [`libsignal_c`]. Groups: [`group`] (Switchboard's
//! Sender Keys), [`libsignal_c_group`], [`megolm`] (vodozemac), [`openmls`]; membership changes:
//! [`membership`] (Sender Keys over pairwise sessions, made by [`mesh`]), [`shipped`] (a removal
//! as the shipped client makes it, through client-core's `Device`) and [`openmls`].

pub mod group;
pub mod libsignal_c;
pub mod libsignal_c_group;
pub mod megolm;
pub mod membership;
pub mod mesh;
pub mod openmls;
pub mod session;
pub mod shipped;

use std::time::Duration;

use crate::{floor, group_floor};

/// Plaintext length of the small-message ops and of the first message of `session_setup`.
pub const SMALL: usize = 100;
/// Plaintext length of the large-message ops.
pub const LARGE: usize = 64 * 1024;
/// Messages a member catching up decrypts in one `group_catchup_1000` iteration.
pub const CATCHUP_MESSAGES: usize = 1000;
/// How many members sent them (round-robin, `CATCHUP_MESSAGES / CATCHUP_SENDERS` each).
pub const CATCHUP_SENDERS: usize = 10;

/// The group sizes of the membership-change ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Members {
    /// 10 members.
    Ten,
    /// 100 members.
    Hundred,
    /// 1,000 members.
    Thousand,
}

impl Members {
    /// Every size, smallest first.
    pub const ALL: [Members; 3] = [Members::Ten, Members::Hundred, Members::Thousand];

    /// Members in the group before the change.
    pub fn count(self) -> usize {
        match self {
            Members::Ten => 10,
            Members::Hundred => 100,
            Members::Thousand => 1000,
        }
    }
}

/// One operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Initiator processes the responder's bundle, encrypts a 100-byte first message, responder
    /// decrypts it (a fresh pair of devices each time, made outside the timed region).
    SessionSetup,
    /// Encrypt on an established session (both directions seen), 100 bytes.
    Encrypt100,
    /// Decrypt (from wire bytes) on an established session, 100 bytes, in order.
    Decrypt100,
    /// As [`Op::Encrypt100`], 64 KiB.
    Encrypt64k,
    /// As [`Op::Decrypt100`], 64 KiB.
    Decrypt64k,
    /// One group message of 100 bytes, encrypted (and signed) once for the whole group, in a
    /// steady state (the sender's key distributed long ago).
    GroupEncrypt100,
    /// One group message of 100 bytes decrypted (signature checked) from its wire bytes, in order.
    GroupDecrypt100,
    /// A member back online decrypts 1,000 queued group messages from 10 senders (interleaved);
    /// reported per message.
    GroupCatchup1000,
    /// A member joins a group of this many: the key material the change needs (see `membership`
    /// and `openmls` for what each implementation counts).
    GroupAddMember(Members),
    /// A member leaves a group of this many.
    GroupRemoveMember(Members),
}

impl Op {
    /// Every op, in the report's order.
    pub const ALL: [Op; 14] = [
        Op::SessionSetup,
        Op::Encrypt100,
        Op::Decrypt100,
        Op::Encrypt64k,
        Op::Decrypt64k,
        Op::GroupEncrypt100,
        Op::GroupDecrypt100,
        Op::GroupCatchup1000,
        Op::GroupAddMember(Members::Ten),
        Op::GroupAddMember(Members::Hundred),
        Op::GroupAddMember(Members::Thousand),
        Op::GroupRemoveMember(Members::Ten),
        Op::GroupRemoveMember(Members::Hundred),
        Op::GroupRemoveMember(Members::Thousand),
    ];

    /// The op's name in the report and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Op::SessionSetup => "session_setup",
            Op::Encrypt100 => "encrypt_100",
            Op::Decrypt100 => "decrypt_100",
            Op::Encrypt64k => "encrypt_64k",
            Op::Decrypt64k => "decrypt_64k",
            Op::GroupEncrypt100 => "group_encrypt_100",
            Op::GroupDecrypt100 => "group_decrypt_100",
            Op::GroupCatchup1000 => "group_catchup_1000",
            Op::GroupAddMember(Members::Ten) => "group_add_member_10",
            Op::GroupAddMember(Members::Hundred) => "group_add_member_100",
            Op::GroupAddMember(Members::Thousand) => "group_add_member_1000",
            Op::GroupRemoveMember(Members::Ten) => "group_remove_member_10",
            Op::GroupRemoveMember(Members::Hundred) => "group_remove_member_100",
            Op::GroupRemoveMember(Members::Thousand) => "group_remove_member_1000",
        }
    }

    /// Plaintext length of each message (the membership ops send key material, not plaintext).
    pub fn message_len(self) -> usize {
        match self {
            Op::Encrypt64k | Op::Decrypt64k => LARGE,
            _ => SMALL,
        }
    }

    /// Whether this is one of the group ops (as opposed to 1:1 sessions).
    pub fn is_group(self) -> bool {
        !matches!(self, Op::SessionSetup | Op::Encrypt100 | Op::Decrypt100 | Op::Encrypt64k | Op::Decrypt64k)
    }

    /// Whether this is a membership change.
    pub fn is_membership(self) -> bool {
        matches!(self, Op::GroupAddMember(_) | Op::GroupRemoveMember(_))
    }

    /// How many of the reported unit one workload iteration is: a catch-up iteration decrypts
    /// [`CATCHUP_MESSAGES`] messages and is reported per message.
    pub fn units_per_iteration(self) -> u64 {
        match self {
            Op::GroupCatchup1000 => CATCHUP_MESSAGES as u64,
            _ => 1,
        }
    }
}

/// One implementation (or the floor of one suite).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Impl {
    /// This project, `signal-v3` suite (byte-compatible with libsignal).
    SignalV3,
    /// This project, `aes-256-gcm` suite.
    Aes256Gcm,
    /// This project, `signal-v3`, catching up with one `group::decrypt` per message (no batch
    /// signature verification): only for `group_catchup_1000`.
    SignalV3OneByOne,
    /// This project, `signal-v3`, a removal as the shipped client makes it: client-core's
    /// `Device`, keys rotated on the notice and handed out lazily by the members that send after
    /// it ([`shipped::ACTIVE_SENDERS_PERCENT`]): only for `group_remove_member_*`.
    SignalV3AsShipped,
    /// As [`Impl::SignalV3AsShipped`], under `aes-256-gcm`.
    Aes256GcmAsShipped,
    /// Signal's reference C library, libsignal-protocol-c.
    LibsignalC,
    /// Matrix's Megolm (crates.io `vodozemac`): group ops only.
    Megolm,
    /// OpenMLS (crates.io `openmls`, RustCrypto provider), a group of 2: group messages only.
    OpenMls2,
    /// OpenMLS, a group of 100: group messages only.
    OpenMls100,
    /// OpenMLS for the catch-up (a group of 11) and the membership changes (the op's size).
    OpenMls,
    /// The primitive operations a `signal-v3` implementation cannot avoid.
    Floor,
    /// The primitive operations an `aes-256-gcm` implementation cannot avoid.
    FloorGcm,
    /// This project, `signal-pqxdh` (PQXDH with a Kyber-1024 prekey): `session_setup` only (its
    /// messages are `signal-v3`'s).
    SignalPqxdh,
    /// This project, `pq-aes-256-gcm` (ML-KEM-1024): `session_setup` only.
    PqAes256Gcm,
    /// The floor of `signal-pqxdh`'s setup: `signal-v3`'s, one more signature verification, a
    /// Kyber-1024 encapsulation and decapsulation.
    FloorPqxdh,
    /// The floor of `pq-aes-256-gcm`'s setup: `aes-256-gcm`'s, one more signature verification,
    /// an ML-KEM-1024 encapsulation and decapsulation.
    FloorPqGcm,
}

impl Impl {
    /// Every implementation, in the report's order.
    pub const ALL: [Impl; 16] = [
        Impl::SignalV3,
        Impl::Aes256Gcm,
        Impl::SignalV3AsShipped,
        Impl::Aes256GcmAsShipped,
        Impl::SignalV3OneByOne,
        Impl::LibsignalC,
        Impl::Megolm,
        Impl::OpenMls2,
        Impl::OpenMls100,
        Impl::OpenMls,
        Impl::Floor,
        Impl::FloorGcm,
        Impl::SignalPqxdh,
        Impl::PqAes256Gcm,
        Impl::FloorPqxdh,
        Impl::FloorPqGcm,
    ];

    /// The implementation's name in the report and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Impl::SignalV3 => "switchboard-signal-v3",
            Impl::Aes256Gcm => "switchboard-aes-256-gcm",
            Impl::SignalV3OneByOne => "switchboard-signal-v3-one-by-one",
            Impl::SignalV3AsShipped => "switchboard-signal-v3-as-shipped",
            Impl::Aes256GcmAsShipped => "switchboard-aes-256-gcm-as-shipped",
            Impl::LibsignalC => "libsignal-c",
            Impl::Megolm => "vodozemac-megolm",
            Impl::OpenMls2 => "openmls-2",
            Impl::OpenMls100 => "openmls-100",
            Impl::OpenMls => "openmls",
            Impl::Floor => "floor",
            Impl::FloorGcm => "floor-aes-256-gcm",
            Impl::SignalPqxdh => "switchboard-signal-pqxdh",
            Impl::PqAes256Gcm => "switchboard-pq-aes-256-gcm",
            Impl::FloorPqxdh => "floor-signal-pqxdh",
            Impl::FloorPqGcm => "floor-pq-aes-256-gcm",
        }
    }

    /// The floor of the same suite, for implementations that have one.
    pub fn own_floor(self) -> Option<Impl> {
        match self {
            Impl::SignalV3 | Impl::SignalV3OneByOne | Impl::LibsignalC => Some(Impl::Floor),
            Impl::Aes256Gcm => Some(Impl::FloorGcm),
            Impl::SignalPqxdh => Some(Impl::FloorPqxdh),
            Impl::PqAes256Gcm => Some(Impl::FloorPqGcm),
            Impl::Megolm
            | Impl::OpenMls2
            | Impl::OpenMls100
            | Impl::OpenMls
            | Impl::SignalV3AsShipped
            | Impl::Aes256GcmAsShipped
            | Impl::Floor
            | Impl::FloorGcm
            | Impl::FloorPqxdh
            | Impl::FloorPqGcm => None,
        }
    }

    /// Another project's implementation (what the targets compare against).
    pub fn is_peer(self) -> bool {
        matches!(self, Impl::LibsignalC | Impl::Megolm | Impl::OpenMls2 | Impl::OpenMls100 | Impl::OpenMls)
    }

    /// This project's implementation.
    pub fn is_switchboard(self) -> bool {
        matches!(
            self,
            Impl::SignalV3
                | Impl::Aes256Gcm
                | Impl::SignalV3OneByOne
                | Impl::SignalV3AsShipped
                | Impl::Aes256GcmAsShipped
                | Impl::SignalPqxdh
                | Impl::PqAes256Gcm
        )
    }

    /// Whether `self` has a workload for `op`.
    pub fn supports(self, op: Op) -> bool {
        match self {
            Impl::SignalV3 | Impl::Aes256Gcm => true,
            Impl::Floor | Impl::FloorGcm => !op.is_membership(),
            // group_* ops other than membership; membership in groups of C parties is not measured
            Impl::LibsignalC => !op.is_membership(),
            Impl::SignalV3OneByOne => op == Op::GroupCatchup1000,
            Impl::SignalV3AsShipped | Impl::Aes256GcmAsShipped => matches!(op, Op::GroupRemoveMember(_)),
            Impl::Megolm => matches!(op, Op::GroupEncrypt100 | Op::GroupDecrypt100 | Op::GroupCatchup1000),
            Impl::OpenMls2 | Impl::OpenMls100 => matches!(op, Op::GroupEncrypt100 | Op::GroupDecrypt100),
            Impl::OpenMls => op == Op::GroupCatchup1000 || op.is_membership(),
            Impl::SignalPqxdh | Impl::PqAes256Gcm | Impl::FloorPqxdh | Impl::FloorPqGcm => op == Op::SessionSetup,
        }
    }
}

/// A prepared measurement of one op by one implementation.
pub trait Workload {
    /// Runs `iters` iterations of the op and returns the time spent in the timed region only:
    /// inputs are prepared before the clock starts and leftovers dropped after it stops. Inside
    /// the timed region a run adds nothing to the op but a counter increment per iteration (or
    /// per message); what it checks (see [`Report`]) it checks with the clock stopped.
    fn run(&mut self, iters: u64) -> Duration;

    /// What the runs so far did, with whatever is left to check checked now (never timed; the
    /// runner and the criterion benches do not ask). Encrypt workloads keep the last message of
    /// the last run and have its receiver decrypt it here (skipping the messages before it: call
    /// this after each short run, as the tests do, not after millions of iterations); membership
    /// workloads probe who holds the new keys after the last change.
    fn report(&mut self) -> Report;
}

/// What an iteration of a workload does, as the workload itself knows it (so that a workload
/// built for the wrong op shows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A session set up and its first message read ([`Op::SessionSetup`]).
    Setup,
    /// One message encrypted ([`Op::Encrypt100`], [`Op::Encrypt64k`], [`Op::GroupEncrypt100`]).
    Encrypt,
    /// One message decrypted ([`Op::Decrypt100`], [`Op::Decrypt64k`], [`Op::GroupDecrypt100`]).
    Decrypt,
    /// [`CATCHUP_MESSAGES`] queued group messages decrypted ([`Op::GroupCatchup1000`]).
    Catchup,
    /// A member added ([`Op::GroupAddMember`]).
    AddMember,
    /// A member removed ([`Op::GroupRemoveMember`]).
    RemoveMember,
    /// One primitive of the floor's breakdown ([`crate::floor::primitives`]).
    Primitive,
}

impl Kind {
    /// The kind of iteration `op` is made of.
    pub fn of(op: Op) -> Kind {
        match op {
            Op::SessionSetup => Kind::Setup,
            Op::Encrypt100 | Op::Encrypt64k | Op::GroupEncrypt100 => Kind::Encrypt,
            Op::Decrypt100 | Op::Decrypt64k | Op::GroupDecrypt100 => Kind::Decrypt,
            Op::GroupCatchup1000 => Kind::Catchup,
            Op::GroupAddMember(_) => Kind::AddMember,
            Op::GroupRemoveMember(_) => Kind::RemoveMember,
        }
    }
}

/// What a workload's runs did since it was made ([`Workload::report`]): counted in the timed
/// loop (one increment per iteration or message) and checked with the clock stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// What each iteration did.
    pub kind: Kind,
    /// Iterations completed.
    pub iterations: u64,
    /// Messages the timed region handled, counted where it handles them: sessions whose
    /// responder read the first message ([`Kind::Setup`]), messages encrypted or decrypted (one
    /// an iteration; [`CATCHUP_MESSAGES`] a catch-up iteration), and for the membership changes
    /// the messages members read (Sender Keys: the distribution messages over pairwise
    /// sessions; as shipped, also the removal's announcement and the group messages sent after
    /// it; OpenMLS: the commit, at the one other member that processes it).
    pub messages: u64,
    /// Plaintext length of those messages (0 for the membership changes, which carry keys).
    pub message_len: usize,
    /// Outputs checked against what they should be, with the clock stopped: the last plaintext
    /// of each batch against the one sent (each message sent carries its number, see
    /// [`number`]), the last message of an encrypt run decrypted by its receiver and its place
    /// in the chain, a session set up used both ways, a probe message under the new key.
    pub checked: u64,
    /// The checks that failed, each described (empty when all passed).
    pub failures: Vec<String>,
    /// Membership changes: the group's size after the last change, as the members see it.
    pub members: Option<usize>,
    /// Membership changes: (holder, key) pairs shown, after the last change, to hold the new
    /// key: a member decrypted a probe message under another member's new sender key (Sender
    /// Keys), or a member is in the committer's new epoch (same epoch authenticator; OpenMLS).
    pub key_holders: Option<u64>,
}

impl Report {
    /// Nothing done yet, by a workload whose iterations are `kind` with messages of `message_len`.
    pub fn new(kind: Kind, message_len: usize) -> Report {
        Report { kind, iterations: 0, messages: 0, message_len, checked: 0, failures: Vec::new(), members: None, key_holders: None }
    }

    /// Counts one check; if it failed (`ok` false), keeps `what()` as its description.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            self.failures.push(what());
        }
    }

    /// Checks that `got` is `expected` (a plaintext), describing the first difference if not.
    pub fn check_bytes(&mut self, got: &[u8], expected: &[u8], what: &str) {
        self.check(got == expected, || describe_difference(what, got, expected));
    }
}

/// `what: got N bytes, expected M` or where the bytes first differ.
fn describe_difference(what: &str, got: &[u8], expected: &[u8]) -> String {
    if got.len() != expected.len() {
        return format!("{what}: got {} bytes, expected {}", got.len(), expected.len());
    }
    let at = got.iter().zip(expected).position(|(a, b)| a != b).unwrap_or(0);
    format!("{what}: bytes differ from byte {at} (got {:02x?}, expected {:02x?})", &got[at..(at + 8).min(got.len())], &expected[at..(at + 8).min(expected.len())])
}

/// Runs `op` `iters` times (with the clock running, in the caller), adding one to `count` after
/// each, and returns what the last one gave: the others' results are dropped in the loop, as an
/// ignored result is; the last is kept, to be checked (and dropped) after the clock stops.
pub fn repeat<T>(iters: u64, count: &mut u64, mut op: impl FnMut() -> T) -> Option<T> {
    if iters == 0 {
        return None;
    }
    for _ in 1..iters {
        op();
        *count += 1;
    }
    let last = op();
    *count += 1;
    Some(last)
}

/// Times `iters` runs of `encrypt` (see [`repeat`]), counts each as an iteration and a message
/// in `report`, and keeps the last message in `last`, for [`Workload::report`] to check with the
/// clock stopped.
pub fn time_encrypts<T>(iters: u64, report: &mut Report, last: &mut Option<T>, encrypt: impl FnMut() -> T) -> Duration {
    let mut count = 0;
    let start = crate::clock::Instant::now();
    let kept = repeat(iters, &mut count, encrypt);
    let took = start.elapsed();
    report.iterations += count;
    report.messages += count;
    if kept.is_some() {
        *last = kept;
    }
    took
}

/// Runs `op` on each of `items` in order (with the clock running, in the caller), adding one
/// to `count` after each, and returns what it gave for the last one (see [`repeat`]).
pub fn each<T, R>(items: &mut [T], count: &mut u64, mut op: impl FnMut(&mut T) -> R) -> Option<R> {
    let (last, rest) = items.split_last_mut()?;
    for item in rest {
        op(item);
        *count += 1;
    }
    let kept = op(last);
    *count += 1;
    Some(kept)
}

/// The workload of `op` under `imp`; `seed` makes keys and ciphertexts reproducible.
///
/// # Panics
/// If `imp` does not support `op` (see [`Impl::supports`]).
pub fn workload(op: Op, imp: Impl, seed: u64) -> Box<dyn Workload> {
    use switchboard_session::Suite;
    assert!(imp.supports(op), "{} has no {} workload", imp.name(), op.name());
    if op.is_group() {
        return match imp {
            Impl::SignalV3 | Impl::Aes256Gcm if op.is_membership() => {
                membership::workload(op, if imp == Impl::SignalV3 { Suite::SignalV3 } else { Suite::Aes256Gcm }, seed)
            }
            Impl::SignalV3AsShipped => shipped::workload(op, Suite::SignalV3, seed),
            Impl::Aes256GcmAsShipped => shipped::workload(op, Suite::Aes256Gcm, seed),
            Impl::SignalV3 => group::workload(op, Suite::SignalV3, group::Verify::Batch, seed),
            Impl::Aes256Gcm => group::workload(op, Suite::Aes256Gcm, group::Verify::Batch, seed),
            Impl::SignalV3OneByOne => group::workload(op, Suite::SignalV3, group::Verify::OneByOne, seed),
            Impl::LibsignalC => libsignal_c_group::workload(op, seed),
            Impl::Megolm => megolm::workload(op, seed),
            Impl::OpenMls2 => openmls::workload(op, 2, seed),
            Impl::OpenMls100 => openmls::workload(op, 100, seed),
            Impl::OpenMls => openmls::workload(op, 0, seed),
            Impl::Floor => group_floor::workload(op, floor::FloorSuite::SignalV3, seed),
            Impl::FloorGcm => group_floor::workload(op, floor::FloorSuite::Aes256Gcm, seed),
            Impl::SignalPqxdh | Impl::PqAes256Gcm | Impl::FloorPqxdh | Impl::FloorPqGcm => unreachable!("checked by supports"),
        };
    }
    match imp {
        Impl::SignalV3 => session::workload(op, Suite::SignalV3, seed),
        Impl::Aes256Gcm => session::workload(op, Suite::Aes256Gcm, seed),
        Impl::LibsignalC => libsignal_c::workload(op, seed),
        Impl::Floor => floor::workload(op, floor::FloorSuite::SignalV3, seed),
        Impl::FloorGcm => floor::workload(op, floor::FloorSuite::Aes256Gcm, seed),
        Impl::SignalPqxdh => session::workload(op, Suite::SignalPqxdh, seed),
        Impl::PqAes256Gcm => session::workload(op, Suite::PqAes256Gcm, seed),
        Impl::FloorPqxdh => floor::post_quantum_setup(floor::FloorSuite::SignalV3, seed),
        Impl::FloorPqGcm => floor::post_quantum_setup(floor::FloorSuite::Aes256Gcm, seed),
        _ => unreachable!("checked by supports"),
    }
}

/// How many iterations a workload that prepares inputs per iteration (pre-encrypted messages,
/// fresh devices) prepares at once: about 4 MiB of messages, so memory stays bounded however many
/// iterations criterion asks for, and every implementation reads its inputs from the same depth
/// of the cache hierarchy.
pub fn chunk_len(message_len: usize) -> u64 {
    ((4 << 20) / (message_len + 64)).clamp(16, 4096) as u64
}

/// Runs `iters` iterations in chunks of at most `chunk`: `prepare(n)` makes the inputs of `n`
/// iterations before the clock starts, `timed` consumes them with the clock running, and
/// `check` gets the inputs and what `timed` returned after the clock stops (and drops them).
pub fn chunked<S, P, R>(
    state: &mut S,
    iters: u64,
    chunk: u64,
    mut prepare: impl FnMut(&mut S, u64) -> P,
    mut timed: impl FnMut(&mut S, &mut P) -> R,
    mut check: impl FnMut(&mut S, P, R),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(chunk);
        left -= n;
        let mut prepared = prepare(state, n);
        let start = crate::clock::Instant::now();
        let result = timed(state, &mut prepared);
        total += start.elapsed();
        check(state, prepared, result);
    }
    total
}

/// A plaintext of `len` bytes (its content does not matter; it is not all zeroes).
pub fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 + 7) as u8).collect()
}

/// Writes `n` into the first 8 bytes of `plaintext` (little-endian), so that each message a
/// decrypt workload prepares is told from the others by its receiver's check; the length, and so
/// the work, is unchanged.
///
/// # Panics
/// If `plaintext` is shorter than 8 bytes.
pub fn number(plaintext: &mut [u8], n: u64) {
    plaintext[..8].copy_from_slice(&n.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages an iteration of `op` by `imp` handles in its timed region ([`Report::messages`]).
    fn messages_per_iteration(op: Op, imp: Impl) -> u64 {
        match op {
            Op::GroupCatchup1000 => CATCHUP_MESSAGES as u64,
            // OpenMLS: the commit, processed by the one other member that exists as a client.
            Op::GroupAddMember(_) | Op::GroupRemoveMember(_) if imp == Impl::OpenMls => 1,
            // As shipped: the notice, read by the N−2 other remaining members; each timed active
            // sender's new key and its message, read by the same N−2.
            Op::GroupRemoveMember(size) if is_as_shipped(imp) => ((size.count() - 2) * (1 + 2 * shipped::senders(size).timed)) as u64,
            // Sender Keys: each member's key to the newcomer and the newcomer's to each member.
            Op::GroupAddMember(size) => 2 * size.count() as u64,
            // Sender Keys: each timed sender's new key to every other remaining member.
            Op::GroupRemoveMember(size) => (removal_senders(size) * (size.count() - 2)) as u64,
            _ => 1,
        }
    }

    /// Whether `imp` makes a removal as the shipped client does ([`shipped`]).
    fn is_as_shipped(imp: Impl) -> bool {
        matches!(imp, Impl::SignalV3AsShipped | Impl::Aes256GcmAsShipped)
    }

    /// The remaining members whose new keys a Sender Keys removal times (and the checks probe).
    fn removal_senders(size: Members) -> usize {
        if size == Members::Thousand { membership::SAMPLED_SENDERS } else { size.count() - 1 }
    }

    /// The group's size after a membership change, and the (holder, key) pairs that hold the new
    /// keys then ([`Report::key_holders`]); `None` for the other ops.
    fn after_change(op: Op, imp: Impl) -> (Option<usize>, Option<u64>) {
        let holders = |sender_keys: usize| Some(if imp == Impl::OpenMls { 2 } else { sender_keys as u64 });
        match op {
            Op::GroupAddMember(size) => (Some(size.count() + 1), holders(2 * size.count())),
            Op::GroupRemoveMember(size) if is_as_shipped(imp) => (Some(size.count() - 1), holders(shipped::senders(size).timed * (size.count() - 2))),
            Op::GroupRemoveMember(size) => (Some(size.count() - 1), holders(removal_senders(size) * (size.count() - 2))),
            _ => (None, None),
        }
    }

    /// Runs the workload of `op` by `imp` once per entry of `runs`, that many iterations each, and
    /// after each run asserts what it did: exactly that many iterations of the kind `op` is
    /// made of, the messages they handle, plaintexts of `op`'s length, at least one output checked
    /// and none wrong, and for a membership change the group's new size and who holds the new
    /// keys. (No timing is asserted.)
    fn does_what_it_measures(op: Op, imp: Impl, runs: &[u64]) {
        let what = format!("{} by {}", op.name(), imp.name());
        let mut workload = workload(op, imp, 7);
        let mut before = workload.report();
        assert_eq!((before.iterations, before.messages, before.checked), (0, 0, 0), "{what}: nothing done before the first run");
        let message_len = if op.is_membership() { 0 } else { op.message_len() };
        let (members, key_holders) = after_change(op, imp);
        for &n in runs {
            workload.run(n);
            let report = workload.report();
            assert_eq!(report.kind, Kind::of(op), "{what}: the kind of iteration");
            assert_eq!(report.message_len, message_len, "{what}: the plaintext length");
            assert_eq!(report.iterations - before.iterations, n, "{what}: run({n}) did {} iterations", report.iterations - before.iterations);
            let messages = report.messages - before.messages;
            assert_eq!(messages, n * messages_per_iteration(op, imp), "{what}: run({n}) handled {messages} messages");
            assert!(report.failures.is_empty(), "{what}: run({n}): {:#?}", report.failures);
            assert!(report.checked > before.checked, "{what}: run({n}) checked nothing");
            assert_eq!(report.members, members, "{what}: members after the change");
            assert_eq!(report.key_holders, key_holders, "{what}: holders of the new keys");
            before = report;
        }
    }

    /// Every workload of a 1:1 op, run for 1 and then 3 iterations: see [`does_what_it_measures`].
    #[test]
    fn every_session_workload_runs() {
        for op in Op::ALL.into_iter().filter(|op| !op.is_group()) {
            for imp in Impl::ALL.into_iter().filter(|imp| imp.supports(op)) {
                does_what_it_measures(op, imp, &[1, 3]);
            }
        }
    }

    /// Every workload of a group op, run for 1 and then 2 iterations (the second run starts from
    /// the state the first left, as the rounds do): see [`does_what_it_measures`]. The membership
    /// changes of groups of 1,000 are in `every_large_membership_workload_runs`.
    #[test]
    fn every_group_workload_runs() {
        for op in Op::ALL.into_iter().filter(|op| op.is_group()) {
            if matches!(op, Op::GroupAddMember(Members::Thousand) | Op::GroupRemoveMember(Members::Thousand)) {
                continue;
            }
            for imp in Impl::ALL.into_iter().filter(|imp| imp.supports(op)) {
                does_what_it_measures(op, imp, &[1, 2]);
            }
        }
    }

    /// The membership changes of groups of 1,000, one iteration (slow in a debug build: a minute
    /// or so on 2 cores): see [`does_what_it_measures`]. The removal as shipped runs under
    /// `signal-v3` only: under `aes-256-gcm` it is the same code with another cipher, and it runs
    /// at 10 and 100 members in `every_group_workload_runs`.
    #[test]
    fn every_large_membership_workload_runs() {
        for op in [Op::GroupAddMember(Members::Thousand), Op::GroupRemoveMember(Members::Thousand)] {
            for imp in Impl::ALL.into_iter().filter(|imp| imp.supports(op) && *imp != Impl::Aes256GcmAsShipped) {
                does_what_it_measures(op, imp, &[1]);
            }
        }
    }

    /// A removal as the shipped client makes it ([`shipped`]), from groups of 10 and 100 under
    /// `signal-v3`, with its counts spelled out: each iteration, the notice is read by the N−2
    /// other remaining members, and each of the 1 / 10 active senders' new key and message by
    /// the same N−2 (24 and 2,058 messages); after it, N−1 members, and each active sender's new
    /// key held by the N−2 others (8 and 980 holders); six checks per report, none failed. (Both
    /// suites also run in `every_group_workload_runs`, and 1,000 members in
    /// `every_large_membership_workload_runs`.)
    #[test]
    fn the_removal_as_shipped_runs() {
        for (size, messages, holders) in [(Members::Ten, 24, 8), (Members::Hundred, 2058, 980)] {
            let op = Op::GroupRemoveMember(size);
            let mut workload = workload(op, Impl::SignalV3AsShipped, 7);
            let mut total = 0;
            for (run, iterations) in [1, 2].into_iter().enumerate() {
                workload.run(iterations);
                total += iterations;
                let report = workload.report();
                let what = format!("{} as shipped, run {run}", op.name());
                assert!(report.failures.is_empty(), "{what}: {:#?}", report.failures);
                assert_eq!(
                    (report.kind, report.iterations, report.messages, report.checked),
                    (Kind::RemoveMember, total, total * messages, 6 * (run as u64 + 1)),
                    "{what}"
                );
                assert_eq!((report.members, report.key_holders), (Some(size.count() - 1), Some(holders)), "{what}");
            }
        }
    }

    /// Each primitive of the floor's breakdown runs exactly as many iterations as asked.
    #[test]
    fn every_floor_primitive_runs() {
        for (name, mut primitive) in crate::floor::primitives(7) {
            primitive.run(1);
            primitive.run(3);
            let report = primitive.report();
            assert_eq!((report.kind, report.iterations), (Kind::Primitive, 4), "{name}");
        }
    }

    #[test]
    fn names_are_unique() {
        let mut ops: Vec<_> = Op::ALL.iter().map(|op| op.name()).collect();
        ops.sort();
        ops.dedup();
        assert_eq!(ops.len(), Op::ALL.len());
        let mut impls: Vec<_> = Impl::ALL.iter().map(|imp| imp.name()).collect();
        impls.sort();
        impls.dedup();
        assert_eq!(impls.len(), Impl::ALL.len());
    }
}
