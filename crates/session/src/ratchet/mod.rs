//! The Double Ratchet: the keys it derives ([`keys`]), the state of one session ([`state`]) and
//! its stored form ([`record`]).

pub(crate) mod keys;
pub(crate) mod record;
pub(crate) mod state;
