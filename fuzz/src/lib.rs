//! Shared code of the fuzz targets: the fixtures they start from (built once per process), the
//! models that drive the interaction targets, and the encoders `examples/make_corpus.rs` uses to
//! write seed inputs. Each target in `fuzz_targets/` is a thin wrapper around one `run` function
//! here, so the seed generator can also run every seed it writes and prove that it passes.

pub mod differential_group;
pub mod differential_session;
pub mod endpoint_model;
pub mod fixtures;
pub mod group_model;
pub mod membership_model;
pub mod peer;
pub mod session_model;

use arbitrary::{Arbitrary, Unstructured};

/// One byte from the input (0 once it has run out). Actions are read byte by byte, never with
/// `arbitrary`'s own integer layout, so that the corpus generator can write them exactly.
pub fn byte(u: &mut Unstructured<'_>) -> u8 {
    u8::arbitrary(u).unwrap_or(0)
}

/// Two bytes, little-endian.
pub fn word(u: &mut Unstructured<'_>) -> u16 {
    u16::from(byte(u)) | (u16::from(byte(u)) << 8)
}

/// Picks an element index from an input byte; `None` when there is nothing to pick from.
pub fn pick(index: u8, len: usize) -> Option<usize> {
    (len > 0).then(|| usize::from(index) % len)
}

/// An action of a scripted target, written as the bytes its [`Arbitrary`] implementation reads
/// back (so that seeds can be written as scripts).
pub trait Encode {
    fn encode(&self, out: &mut Vec<u8>);
}

/// Reads actions until the bytes run out, at most `max` of them.
pub fn decode_actions<'a, A: Arbitrary<'a>>(data: &'a [u8], max: usize) -> Vec<A> {
    let mut u = Unstructured::new(data);
    let mut actions = Vec::new();
    while !u.is_empty() && actions.len() < max {
        actions.push(A::arbitrary(&mut u).expect("reading bytes never fails"));
    }
    actions
}

/// The bytes [`decode_actions`] reads back as `actions`.
pub fn encode_actions<A: Encode>(actions: &[A]) -> Vec<u8> {
    let mut out = Vec::new();
    for action in actions {
        action.encode(&mut out);
    }
    out
}
