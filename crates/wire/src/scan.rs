//! Reading a message's fields where they lie in the input, without copying them: the fast path for
//! the messages parsed on every delivery.
//!
//! [`scan`] handles the inputs this project and libsignal write, and any other encoding made of
//! varint and length-delimited fields. Whatever it does not handle (groups, truncated or malformed
//! input) it declines with `None`, and the caller decodes with prost instead, so what is accepted,
//! the values read and the errors given are prost's. A test compares the two on random and mutated
//! inputs.

use std::ops::Range;

/// How a field of the scanned message is declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `optional uint32`.
    Uint32,
    /// `optional bytes`.
    Bytes,
}

/// A field's value as it lies in the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A `uint32`, truncated from the varint as prost truncates it.
    Uint32(u32),
    /// A `bytes` field: where its contents lie in the input.
    Bytes(Range<usize>),
}

/// The fields of one message, as [`scan`] read them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fields<const N: usize> {
    /// `values[i]` is field number `i + 1`: its last occurrence (prost keeps the last), or `None`.
    pub values: [Option<Value>; N],
    /// Whether the input is exactly what prost writes for these values: every field known, each at
    /// most once and in field-number order, every varint as short as it can be, and no `uint32`
    /// holding more than 32 bits. The same answer as [`crate::decode_canonical`] gives.
    pub canonical: bool,
}

impl<const N: usize> Fields<N> {
    /// Field `number` as a `uint32`, if present.
    pub fn uint32(&self, number: usize) -> Option<u32> {
        match self.values.get(number.wrapping_sub(1))? {
            Some(Value::Uint32(value)) => Some(*value),
            _ => None,
        }
    }

    /// Where field `number`'s bytes lie in the input, if present.
    pub fn bytes(&self, number: usize) -> Option<Range<usize>> {
        match self.values.get(number.wrapping_sub(1))? {
            Some(Value::Bytes(range)) => Some(range.clone()),
            _ => None,
        }
    }
}

/// Reads the fields of a message whose field `i + 1` is declared as `kinds[i]`. `None` when the
/// input is not one this fast path handles: decode it with prost instead.
pub fn scan<const N: usize>(input: &[u8], kinds: [Kind; N]) -> Option<Fields<N>> {
    let mut fields = Fields { values: [const { None }; N], canonical: true };
    let mut position = 0;
    let mut last_number = 0;
    while position < input.len() {
        let key = read_varint(input, &mut position, &mut fields.canonical)?;
        let key = u32::try_from(key).ok()?;
        let (number, wire_type) = (key >> 3, key & 7);
        if number == 0 {
            return None;
        }
        if number <= last_number {
            fields.canonical = false;
        }
        last_number = number;
        let kind = kinds.get(number as usize - 1).copied();
        match (kind, wire_type) {
            (Some(Kind::Uint32), 0) => {
                let value = read_varint(input, &mut position, &mut fields.canonical)?;
                if value > u64::from(u32::MAX) {
                    fields.canonical = false;
                }
                fields.values[number as usize - 1] = Some(Value::Uint32(value as u32));
            }
            (Some(Kind::Bytes), 2) => {
                let range = read_length_delimited(input, &mut position, &mut fields.canonical)?;
                fields.values[number as usize - 1] = Some(Value::Bytes(range));
            }
            (Some(_), _) => return None,
            (None, wire_type) => {
                fields.canonical = false;
                match wire_type {
                    0 => {
                        read_varint(input, &mut position, &mut fields.canonical)?;
                    }
                    1 => position = skip(input, position, 8)?,
                    2 => {
                        read_length_delimited(input, &mut position, &mut fields.canonical)?;
                    }
                    5 => position = skip(input, position, 4)?,
                    _ => return None,
                }
            }
        }
    }
    Some(fields)
}

/// A varint at `position`, as prost reads one (at most ten bytes, the tenth at most 1); clears
/// `canonical` when it is longer than needed.
fn read_varint(input: &[u8], position: &mut usize, canonical: &mut bool) -> Option<u64> {
    let mut value = 0u64;
    for index in 0..10 {
        let byte = *input.get(*position + index)?;
        if index == 9 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            let length = index + 1;
            // A last byte of zero after the first adds nothing: the varint is padded.
            if length > 1 && byte == 0 {
                *canonical = false;
            }
            *position += length;
            return Some(value);
        }
    }
    None
}

fn read_length_delimited(input: &[u8], position: &mut usize, canonical: &mut bool) -> Option<Range<usize>> {
    let length = usize::try_from(read_varint(input, position, canonical)?).ok()?;
    let start = *position;
    *position = skip(input, start, length)?;
    Some(start..*position)
}

fn skip(input: &[u8], position: usize, length: usize) -> Option<usize> {
    let end = position.checked_add(length)?;
    (end <= input.len()).then_some(end)
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use proptest::prelude::*;

    use super::*;
    use crate::signal::{PreKeySignalMessage, SignalMessage};
    use crate::{decode, decode_canonical};

    const SIGNAL: [Kind; 4] = [Kind::Bytes, Kind::Uint32, Kind::Uint32, Kind::Bytes];

    /// What prost read, in the scanner's terms (a `bytes` field as the range `0..len`).
    fn from_prost(message: &SignalMessage) -> Vec<Option<Value>> {
        let bytes = |value: &Option<Vec<u8>>| value.as_ref().map(|v| Value::Bytes(0..v.len()));
        vec![
            bytes(&message.ratchet_key),
            message.counter.map(Value::Uint32),
            message.previous_counter.map(Value::Uint32),
            bytes(&message.ciphertext),
        ]
    }

    fn check(input: &[u8]) {
        let prost = decode::<SignalMessage>(input, usize::MAX);
        let Some(fields) = scan(input, SIGNAL) else {
            return; // declined: the caller decodes with prost
        };
        let message = prost.unwrap_or_else(|error| panic!("scan accepted what prost refuses ({error}): {input:02x?}"));
        let lengths: Vec<_> = fields
            .values
            .iter()
            .map(|value| match value {
                Some(Value::Bytes(range)) => Some(Value::Bytes(0..range.len())),
                other => other.clone(),
            })
            .collect();
        assert_eq!(lengths, from_prost(&message), "{input:02x?}");
        assert_eq!(fields.bytes(1).map(|r| input[r].to_vec()), message.ratchet_key, "{input:02x?}");
        assert_eq!(fields.bytes(4).map(|r| input[r].to_vec()), message.ciphertext, "{input:02x?}");
        assert_eq!(fields.canonical, decode_canonical::<SignalMessage>(input, usize::MAX).is_ok(), "canonical: {input:02x?}");
    }

    const PREKEY: [Kind; 8] =
        [Kind::Uint32, Kind::Bytes, Kind::Bytes, Kind::Bytes, Kind::Uint32, Kind::Uint32, Kind::Uint32, Kind::Bytes];

    /// As [`check`], for the PreKeySignalMessage's eight fields.
    fn check_prekey(input: &[u8]) {
        let prost = decode::<PreKeySignalMessage>(input, usize::MAX);
        let Some(fields) = scan(input, PREKEY) else { return };
        let message = prost.unwrap_or_else(|error| panic!("scan accepted what prost refuses ({error}): {input:02x?}"));
        let bytes = |number| fields.bytes(number).map(|range| input[range].to_vec());
        assert_eq!(
            (fields.uint32(1), bytes(2), bytes(3), bytes(4), fields.uint32(5), fields.uint32(6), fields.uint32(7), bytes(8)),
            (
                message.pre_key_id,
                message.base_key.clone(),
                message.identity_key.clone(),
                message.message.clone(),
                message.registration_id,
                message.signed_pre_key_id,
                message.kyber_pre_key_id,
                message.kyber_ciphertext.clone()
            ),
            "{input:02x?}"
        );
        assert_eq!(fields.canonical, decode_canonical::<PreKeySignalMessage>(input, usize::MAX).is_ok(), "canonical: {input:02x?}");
    }

    fn prekey_message() -> impl Strategy<Value = Vec<u8>> {
        let bytes = |max| proptest::option::of(proptest::collection::vec(any::<u8>(), 0..max));
        let number = || proptest::option::of(any::<u32>());
        ((number(), bytes(40), bytes(40), bytes(80)), (number(), number(), number(), bytes(40))).prop_map(
            |((pre_key_id, base_key, identity_key, message), (registration_id, signed_pre_key_id, kyber_pre_key_id, kyber_ciphertext))| {
                PreKeySignalMessage {
                    pre_key_id,
                    base_key,
                    identity_key,
                    message,
                    registration_id,
                    signed_pre_key_id,
                    kyber_pre_key_id,
                    kyber_ciphertext,
                }
                .encode_to_vec()
            },
        )
    }

    fn mutate(mut input: Vec<u8>, edits: Vec<(prop::sample::Index, u8, u8)>) -> Vec<u8> {
        for (at, byte, how) in edits {
            let at = if input.is_empty() { 0 } else { at.index(input.len() + 1) };
            match how {
                0 if at < input.len() => input[at] = byte,
                1 => input.insert(at.min(input.len()), byte),
                2 if at < input.len() => {
                    input.remove(at);
                }
                _ => input.truncate(at),
            }
        }
        input
    }

    fn signal_message() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        )
            .prop_map(|(ratchet_key, counter, previous_counter, ciphertext)| {
                SignalMessage { ratchet_key, counter, previous_counter, ciphertext }.encode_to_vec()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn agrees_with_prost_on_messages_prost_wrote(input in signal_message()) {
            let fields = scan(&input, SIGNAL).expect("a message prost wrote is scanned");
            prop_assert!(fields.canonical);
            check(&input);
        }

        #[test]
        fn agrees_with_prost_on_mutated_messages(
            input in signal_message(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..4),
        ) {
            check(&mutate(input, edits));
        }

        #[test]
        fn agrees_with_prost_on_prekey_messages_prost_wrote_and_mutated(
            input in prekey_message(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 0..4),
        ) {
            prop_assert!(scan(&input, PREKEY).expect("a message prost wrote is scanned").canonical);
            check_prekey(&mutate(input, edits));
        }

        #[test]
        fn agrees_with_prost_on_any_bytes(input in proptest::collection::vec(any::<u8>(), 0..64)) {
            check(&input);
            check_prekey(&input);
        }

        #[test]
        fn agrees_with_prost_on_fields_repeated_reordered_padded_or_unknown(
            fields in proptest::collection::vec((1u32..7, 0u32..6, any::<u64>(), proptest::collection::vec(any::<u8>(), 0..8), 0usize..3), 0..8),
        ) {
            // Hand-made encodings: any field number (5 and 6 unknown), any wire type, varints
            // padded by up to two bytes.
            let mut input = Vec::new();
            for (number, wire_type, value, bytes, padding) in fields {
                push_varint(&mut input, u64::from(number << 3 | wire_type), padding);
                match wire_type {
                    0 => push_varint(&mut input, value, padding),
                    1 => input.extend_from_slice(&value.to_le_bytes()),
                    2 => { push_varint(&mut input, bytes.len() as u64, padding); input.extend_from_slice(&bytes); }
                    5 => input.extend_from_slice(&(value as u32).to_le_bytes()),
                    _ => {}
                }
            }
            check(&input);
            check_prekey(&input);
        }
    }

    fn push_varint(out: &mut Vec<u8>, mut value: u64, padding: usize) {
        let mut bytes = Vec::new();
        loop {
            bytes.push((value & 0x7f) as u8 | 0x80);
            value >>= 7;
            if value == 0 {
                break;
            }
        }
        bytes.extend(std::iter::repeat_n(0x80, padding));
        let last = bytes.len() - 1;
        bytes[last] &= 0x7f;
        if bytes.len() > 10 {
            bytes.truncate(10);
            bytes[9] &= 0x01;
        }
        out.extend_from_slice(&bytes);
    }

    #[test]
    fn padded_varints_and_reordered_fields_are_not_canonical() {
        let fields = scan(&[0x10, 0x81, 0x00], SIGNAL).unwrap();
        assert_eq!(fields.uint32(2), Some(1));
        assert!(!fields.canonical);
        assert!(!scan(&[0x18, 0x01, 0x10, 0x01], SIGNAL).unwrap().canonical);
        assert!(!scan(&[0x10, 0x01, 0x10, 0x01], SIGNAL).unwrap().canonical);
        assert!(scan(&[0x10, 0x01, 0x18, 0x00], SIGNAL).unwrap().canonical);
        // A uint32 written with more than 32 bits is truncated, as prost does.
        let fields = scan(&[0x10, 0x81, 0x80, 0x80, 0x80, 0x10], SIGNAL).unwrap();
        assert_eq!(fields.uint32(2), Some(1));
        assert!(!fields.canonical);
        // Groups, field number 0, a wrong wire type and truncation are left to prost.
        for declined in [&[0x0b, 0x0c][..], &[0x00, 0x01], &[0x12, 0x00], &[0x0a, 0x05, 0x01], &[0x10, 0x80]] {
            assert_eq!(scan(declined, SIGNAL), None, "{declined:02x?}");
        }
    }
}
