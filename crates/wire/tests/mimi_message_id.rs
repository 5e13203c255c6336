//! MIMI content's 15 examples: every message id recomputes byte for byte from the message's bytes.

use std::path::Path;

use ciborium::Value;
use switchboard_wire::message_id::{MESSAGE_ID_LEN, SALT_LEN, message_id};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mimi-content");

/// The id an `.edn` file states in its header: `# message ID = h'…` and a continuation line.
fn stated_id(edn: &str) -> Vec<u8> {
    let mut hex = String::new();
    for line in edn.lines().take_while(|line| line.starts_with('#')) {
        let rest = match line.split_once("message ID = h'") {
            Some((_, rest)) => rest,
            None if !hex.is_empty() && !hex.ends_with('\'') => line.trim_start_matches('#').trim(),
            None => continue,
        };
        hex.push_str(rest.trim());
    }
    let hex = hex.trim_end_matches('\'');
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

/// Salt, sender URI and room URI of one example.
fn fields(cbor: &[u8]) -> ([u8; SALT_LEN], String, String) {
    let value: Value = ciborium::from_reader(cbor).unwrap();
    let array = value.as_array().unwrap();
    let salt: [u8; SALT_LEN] = array[0].as_bytes().unwrap().as_slice().try_into().unwrap();
    let extensions = array[5].as_map().unwrap();
    let text = |key: i64| {
        extensions
            .iter()
            .find(|(k, _)| k.as_integer() == Some(key.into()))
            .and_then(|(_, v)| v.as_text())
            .unwrap()
            .to_owned()
    };
    (salt, text(1), text(2))
}

#[test]
fn every_example_id_recomputes() {
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(EXAMPLES).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    let messages = entries.iter().filter(|p| p.extension().is_some_and(|e| e == "cbor") && !p.ends_with("implied-original.cbor"));
    for cbor_path in messages {
        let cbor = std::fs::read(cbor_path).unwrap();
        let edn = std::fs::read_to_string(cbor_path.with_extension("edn")).unwrap();
        let expected = stated_id(&edn);
        assert_eq!(expected.len(), MESSAGE_ID_LEN, "{}", cbor_path.display());
        let (salt, sender, room) = fields(&cbor);
        let id = message_id(&sender, &room, &cbor, &salt).unwrap();
        assert_eq!(id.as_slice(), expected.as_slice(), "{}", file_name(cbor_path));
        checked += 1;
    }
    assert_eq!(checked, 14, "the draft has 14 messages and the implied values of one");
}

/// `implied-original` holds what a receiver derives for `original`: its id, its sender and room.
/// Its text form states the id this construction gives; its CBOR bytes still hold the id of the
/// draft's earlier construction, without the two length prefixes (checked here so that a change of
/// either is noticed).
#[test]
fn the_implied_values_name_the_original() {
    let original = std::fs::read(Path::new(EXAMPLES).join("original.cbor")).unwrap();
    let implied_edn = std::fs::read_to_string(Path::new(EXAMPLES).join("implied-original.edn")).unwrap();
    let implied: Value = ciborium::from_reader(std::fs::read(Path::new(EXAMPLES).join("implied-original.cbor")).unwrap().as_slice()).unwrap();
    let implied = implied.as_array().unwrap();
    let sender = implied[5].as_text().unwrap();
    let room = implied[6].as_text().unwrap();
    let (salt, original_sender, original_room) = fields(&original);
    assert_eq!((sender, room), (original_sender.as_str(), original_room.as_str()));
    let id = message_id(sender, room, &original, &salt).unwrap();

    let stated: String = implied_edn.split("messageId = Original message /").nth(1).unwrap().split(',').next().unwrap().chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let stated: Vec<u8> = (0..stated.len()).step_by(2).map(|i| u8::from_str_radix(&stated[i..i + 2], 16).unwrap()).collect();
    assert_eq!(id.as_slice(), stated.as_slice());

    use sha2::{Digest, Sha256};
    let unprefixed = Sha256::new().chain_update(sender).chain_update(room).chain_update(&original).chain_update(salt).finalize();
    let in_cbor = implied[0].as_bytes().unwrap();
    assert_eq!(in_cbor[0], 0x01);
    assert_eq!(&in_cbor[1..], &unprefixed[..31]);
}

#[test]
fn one_changed_byte_changes_the_id() {
    let cbor = std::fs::read(Path::new(EXAMPLES).join("original.cbor")).unwrap();
    let (salt, sender, room) = fields(&cbor);
    let mut altered = cbor.clone();
    *altered.last_mut().unwrap() ^= 1;
    assert_ne!(message_id(&sender, &room, &cbor, &salt).unwrap(), message_id(&sender, &room, &altered, &salt).unwrap());
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}
