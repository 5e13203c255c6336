//! The limits every session and sender key enforces, so that no input can make state grow without
//! bound or make a device derive keys forever. The numbers are libsignal's.

/// Skipped message keys kept per receiving chain (and per sender key); the oldest go first.
pub const MAX_SKIPPED_KEYS: usize = 2_000;
/// How far ahead of its chain a message may be.
pub const MAX_FORWARD_JUMPS: u32 = 25_000;
/// Receiving chains kept per session (the current one and older ones).
pub const MAX_RECEIVER_CHAINS: usize = 5;
/// Earlier sessions with the same device kept, to decrypt messages still in flight under them.
pub const MAX_ARCHIVED_SESSIONS: usize = 40;
/// Sender key states kept per sender and group.
pub const MAX_SENDER_KEY_STATES: usize = 5;
/// Sender keys a record remembers as retired (replaced, or pushed out by newer ones), per sender
/// and group, so that an old distribution cannot bring one back; the oldest is forgotten first.
pub const MAX_RETIRED_SENDER_KEYS: usize = 16;
/// Sessions remembered per last-resort KEM prekey (by the initiator's base key), so that a replayed
/// first message does not start a session again once the first is gone from the record; the oldest
/// is forgotten first. A last-resort key lives for a signed prekey's rotation and grace.
pub const MAX_LAST_RESORT_USES: usize = 10_000;
