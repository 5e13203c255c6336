//! What is measured: one [`Workload`] per (operation, implementation). Each knows how to prepare
//! its inputs outside the timed region and times only the operation itself, so the interleaved
//! runner (`measure`) and the criterion benches (`benches/sessions.rs`, `benches/groups.rs`) share
//! every line of setup.
//!
//! 1:1 sessions: [`session`] (Switchboard), [`libsignal_c`]. Groups: [`group`] (Switchboard's
//! Sender Keys), [`libsignal_c_group`], [`megolm`] (vodozemac), [`openmls`]; membership changes:
//! [`membership`] (Sender Keys over pairwise sessions, made by [`mesh`]) and [`openmls`].

pub mod group;
pub mod libsignal_c;
pub mod libsignal_c_group;
pub mod megolm;
pub mod membership;
pub mod mesh;
pub mod openmls;
pub mod session;

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
    pub const ALL: [Impl; 14] = [
        Impl::SignalV3,
        Impl::Aes256Gcm,
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
        matches!(self, Impl::SignalV3 | Impl::Aes256Gcm | Impl::SignalV3OneByOne | Impl::SignalPqxdh | Impl::PqAes256Gcm)
    }

    /// Whether `self` has a workload for `op`.
    pub fn supports(self, op: Op) -> bool {
        match self {
            Impl::SignalV3 | Impl::Aes256Gcm => true,
            Impl::Floor | Impl::FloorGcm => !op.is_membership(),
            // group_* ops other than membership; membership in groups of C parties is not measured
            Impl::LibsignalC => !op.is_membership(),
            Impl::SignalV3OneByOne => op == Op::GroupCatchup1000,
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
    /// inputs are prepared before the clock starts and leftovers dropped after it stops.
    fn run(&mut self, iters: u64) -> Duration;
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
/// iterations before the clock starts, `timed` consumes them with the clock running.
pub fn chunked<S, P>(
    state: &mut S,
    iters: u64,
    chunk: u64,
    mut prepare: impl FnMut(&mut S, u64) -> P,
    mut timed: impl FnMut(&mut S, &mut P),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(chunk);
        left -= n;
        let mut prepared = prepare(state, n);
        let start = crate::clock::Instant::now();
        timed(state, &mut prepared);
        total += start.elapsed();
        drop(prepared);
    }
    total
}

/// A plaintext of `len` bytes (its content does not matter; it is not all zeroes).
pub fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 + 7) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every workload of a 1:1 op runs (no timing is asserted: this checks that the setups are right).
    #[test]
    fn every_session_workload_runs() {
        for op in Op::ALL.into_iter().filter(|op| !op.is_group()) {
            for imp in Impl::ALL.into_iter().filter(|imp| imp.supports(op)) {
                let mut workload = workload(op, imp, 7);
                workload.run(1);
                workload.run(3);
            }
        }
    }

    /// Every workload of a group op runs, twice (the second run starts from the state the first
    /// left, as the rounds do). The membership changes of groups of 1,000 are in
    /// `every_large_membership_workload_runs`.
    #[test]
    fn every_group_workload_runs() {
        for op in Op::ALL.into_iter().filter(|op| op.is_group()) {
            if matches!(op, Op::GroupAddMember(Members::Thousand) | Op::GroupRemoveMember(Members::Thousand)) {
                continue;
            }
            for imp in Impl::ALL.into_iter().filter(|imp| imp.supports(op)) {
                let mut workload = workload(op, imp, 7);
                workload.run(1);
                workload.run(2);
            }
        }
    }

    /// The membership changes of groups of 1,000 (slow in a debug build: about a minute).
    #[test]
    fn every_large_membership_workload_runs() {
        for op in [Op::GroupAddMember(Members::Thousand), Op::GroupRemoveMember(Members::Thousand)] {
            for imp in Impl::ALL.into_iter().filter(|imp| imp.supports(op)) {
                workload(op, imp, 7).run(1);
            }
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
