//! `switchboard demo`: two people on two apps start a session from a published bundle and talk,
//! once under each suite. For every message it shows what the sender typed, the bytes on the wire
//! and what the receiver read, then checks that no wire byte string contains any plaintext.

use anyhow::{Context, ensure};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use switchboard_session::session::{decrypt, encrypt, process_prekey_bundle};
use switchboard_session::testing::Device;
use switchboard_session::{CiphertextMessage, MessageKind, ProtocolAddress, Suite, fingerprint};

#[derive(clap::Args)]
pub struct Args {
    /// Seed for every random choice, so a run can be repeated exactly.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Print one JSON summary object instead of the conversation.
    #[arg(long)]
    json: bool,
}

const SCRIPT: &[(bool, &str)] = &[
    (true, "Hi Bob, it's Alice — writing from Green."),
    (true, "Can you read this from Blue?"),
    (false, "Loud and clear. Nobody in between can, though."),
    (true, "Lunch on Thursday?"),
    (false, "Thursday works. 12:30?"),
    (false, "I'll book the usual place."),
    (true, "Perfect, see you there."),
];

struct Tally {
    sent: usize,
    delivered: usize,
    wire_bytes: usize,
    plaintext_on_wire: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut tally = Tally { sent: 0, delivered: 0, wire_bytes: 0, plaintext_on_wire: 0 };
    let mut summaries = Vec::new();
    for suite in [Suite::SignalV3, Suite::Aes256Gcm] {
        summaries.push(conversation(suite, &mut rng, &mut tally, !args.json)?);
    }
    if args.json {
        let summary = json!({
            "apps": 2,
            "suites": summaries,
            "messages_sent": tally.sent,
            "deliveries_expected": tally.sent,
            "deliveries": tally.delivered,
            "lost": tally.sent - tally.delivered,
            "wire_bytes": tally.wire_bytes,
            "plaintext_seen_on_wire": tally.plaintext_on_wire,
        });
        println!("{summary}");
    } else {
        println!(
            "\n{} messages sent, {} delivered, {} wire bytes, plaintext seen on the wire: {}",
            tally.sent, tally.delivered, tally.wire_bytes, tally.plaintext_on_wire
        );
    }
    ensure!(tally.delivered == tally.sent, "some messages were not delivered");
    ensure!(tally.plaintext_on_wire == 0, "plaintext appeared on the wire");
    Ok(())
}

fn conversation(suite: Suite, rng: &mut StdRng, tally: &mut Tally, print: bool) -> anyhow::Result<serde_json::Value> {
    let alice_at = ProtocolAddress::new("alice@green", 1);
    let bob_at = ProtocolAddress::new("bob@blue", 1);
    let mut alice = Device::new(1001, 1, rng);
    let mut bob = Device::new(2002, 1, rng);

    let bundle = bob.bundle(&Suite::ALL, rng);
    process_prekey_bundle(&mut alice.store, &bob_at, &bundle, suite, rng).context("processing Bob's bundle")?;
    let alice_identity = alice.identity_key();
    let safety = fingerprint::safety_number(
        alice_at.name().as_bytes(),
        &alice_identity,
        bob_at.name().as_bytes(),
        &bundle.identity_key,
        fingerprint::SAFETY_NUMBER_ITERATIONS,
    );
    if print {
        println!("\n=== {suite}: {alice_at} ⇄ {bob_at} ===");
        println!("Alice fetched Bob's bundle from Blue and verified its signatures.");
        println!("Safety number: {}", group_digits(&safety));
    }

    for &(from_alice, text) in SCRIPT {
        let (sender, receiver, sender_at, receiver_at, name) = if from_alice {
            (&mut alice, &mut bob, &alice_at, &bob_at, "Alice")
        } else {
            (&mut bob, &mut alice, &bob_at, &alice_at, "Bob  ")
        };
        let message = encrypt(&mut sender.store, receiver_at, text.as_bytes())?;
        let wire = message.serialize().to_vec();
        tally.sent += 1;
        tally.wire_bytes += wire.len();
        if contains(&wire, text.as_bytes()) {
            tally.plaintext_on_wire += 1;
        }
        let received = CiphertextMessage::parse(message.kind(), &wire)?;
        let plaintext = decrypt(&mut receiver.store, sender_at, &received, rng)?;
        if plaintext == text.as_bytes() {
            tally.delivered += 1;
        }
        if print {
            let kind = match message.kind() {
                MessageKind::PreKey => "PreKeySignalMessage",
                MessageKind::Signal => "SignalMessage",
            };
            println!("{name} typed: {text}");
            println!("  wire:  {kind}, {} bytes: {}…", wire.len(), hex::encode(&wire[..24.min(wire.len())]));
            println!("  read:  {}", String::from_utf8_lossy(&plaintext));
        }
    }
    Ok(json!({ "suite": suite.name(), "safety_number": safety }))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.len() <= haystack.len() && haystack.windows(needle.len()).any(|window| window == needle)
}

fn group_digits(digits: &str) -> String {
    digits.as_bytes().chunks(5).map(|c| std::str::from_utf8(c).unwrap_or("")).collect::<Vec<_>>().join(" ")
}
