//! What is measured: one [`Workload`] per (operation, implementation). Each knows how to prepare
//! its inputs outside the timed region and times only the operation itself, so the interleaved
//! runner (`measure`) and the criterion benches (`benches/sessions.rs`) share every line of setup.

pub mod libsignal_c;
pub mod session;

use std::time::Duration;

use crate::floor;

/// Plaintext length of the small-message ops and of the first message of `session_setup`.
pub const SMALL: usize = 100;
/// Plaintext length of the large-message ops.
pub const LARGE: usize = 64 * 1024;

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
}

impl Op {
    pub const ALL: [Op; 5] = [Op::SessionSetup, Op::Encrypt100, Op::Decrypt100, Op::Encrypt64k, Op::Decrypt64k];

    pub fn name(self) -> &'static str {
        match self {
            Op::SessionSetup => "session_setup",
            Op::Encrypt100 => "encrypt_100",
            Op::Decrypt100 => "decrypt_100",
            Op::Encrypt64k => "encrypt_64k",
            Op::Decrypt64k => "decrypt_64k",
        }
    }

    /// Plaintext length of each message.
    pub fn message_len(self) -> usize {
        match self {
            Op::SessionSetup | Op::Encrypt100 | Op::Decrypt100 => SMALL,
            Op::Encrypt64k | Op::Decrypt64k => LARGE,
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
    /// Signal's reference C library, libsignal-protocol-c.
    LibsignalC,
    /// The primitive operations a `signal-v3` implementation cannot avoid.
    Floor,
    /// The primitive operations an `aes-256-gcm` implementation cannot avoid.
    FloorGcm,
}

impl Impl {
    pub const ALL: [Impl; 5] = [Impl::SignalV3, Impl::Aes256Gcm, Impl::LibsignalC, Impl::Floor, Impl::FloorGcm];

    pub fn name(self) -> &'static str {
        match self {
            Impl::SignalV3 => "switchboard-signal-v3",
            Impl::Aes256Gcm => "switchboard-aes-256-gcm",
            Impl::LibsignalC => "libsignal-c",
            Impl::Floor => "floor",
            Impl::FloorGcm => "floor-aes-256-gcm",
        }
    }

    /// The floor of the same suite, for implementations that have one.
    pub fn own_floor(self) -> Option<Impl> {
        match self {
            Impl::SignalV3 | Impl::LibsignalC => Some(Impl::Floor),
            Impl::Aes256Gcm => Some(Impl::FloorGcm),
            Impl::Floor | Impl::FloorGcm => None,
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
pub fn workload(op: Op, imp: Impl, seed: u64) -> Box<dyn Workload> {
    use switchboard_session::Suite;
    match imp {
        Impl::SignalV3 => session::workload(op, Suite::SignalV3, seed),
        Impl::Aes256Gcm => session::workload(op, Suite::Aes256Gcm, seed),
        Impl::LibsignalC => libsignal_c::workload(op, seed),
        Impl::Floor => floor::workload(op, floor::FloorSuite::SignalV3, seed),
        Impl::FloorGcm => floor::workload(op, floor::FloorSuite::Aes256Gcm, seed),
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
        let start = std::time::Instant::now();
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

    /// Every workload runs (no timing is asserted: this checks that the setups are right).
    #[test]
    fn every_workload_runs() {
        for op in Op::ALL {
            for imp in Impl::ALL {
                let mut workload = workload(op, imp, 7);
                workload.run(1);
                workload.run(3);
            }
        }
    }
}
