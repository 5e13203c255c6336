//! `switchboard chat` as a person meets it, over three relay processes: help that lists every
//! line it understands, a word for every send, group creation and removal (who removed whom), a
//! group named by its name alone, members by spaces or commas, no empty message sent, a failed
//! send said once and in words, and errors that name the database at fault.

use std::process::Command;
use std::time::Duration;

mod federation;

use federation::Federation;
use federation::chat::Chat;

/// Every command the chat understands, as `/help` and `chat --help` list them.
const COMMANDS: [&str; 17] = [
    "@user@app TEXT",
    "#group TEXT",
    "/group new NAME USER USER",
    "/group add GROUP USER",
    "/group remove GROUP USER",
    "/groups",
    "/from",
    "/link",
    "/lookup",
    "/safety",
    "/accept",
    "/decline",
    "/block",
    "/unblock",
    "/report",
    "/help",
    "/quit",
];

#[test]
fn chat_help_lists_every_command_typed_in_the_chat() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard")).args(["chat", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    for command in COMMANDS {
        assert!(help.contains(command), "chat --help lacks {command}: {help}");
    }
}

fn start(federation: &Federation, user: &str) -> Chat {
    let db = federation.dir.path().join(format!("{user}.redb"));
    let chat = Chat::start(federation, user, &db);
    chat.wait_for("its registration", |line| line.starts_with(&format!("registered {user}")));
    chat
}

/// The lines `chat` printed after the first `after` ones.
fn since(chat: &Chat, after: usize) -> Vec<String> {
    chat.lines().into_iter().skip(after).collect()
}

#[test]
fn the_chat_says_what_each_line_did() {
    let federation = Federation::new();
    let mut alice = start(&federation, "alice@green");
    let bob = start(&federation, "bob@blue");
    let carol = start(&federation, "carol@red");

    // /help: every command, one per line, not one line.
    let before = alice.lines().len();
    alice.type_line("/help");
    alice.wait_for("the help", |line| line.starts_with("/quit"));
    let help = since(&alice, before);
    assert!(help.len() >= COMMANDS.len(), "{help:#?}");
    for command in COMMANDS {
        assert!(help.iter().any(|line| line.contains(command)), "/help lacks {command}: {help:#?}");
    }

    // A send is confirmed once the relay has it.
    alice.type_line("@bob@blue hello bob");
    alice.wait_for("the send confirmed", |line| line == "* sent to bob@blue");
    bob.wait_for("the message", |line| line == "alice@green: hello bob");

    // An empty message is not sent.
    alice.type_line("@bob@blue    ");
    alice.wait_for("the refusal", |line| line == "! nothing to send: @bob@blue TEXT");

    // A group: its name alone (this app its hub), members by spaces and by commas.
    alice.type_line("/group new trip bob@blue, carol@red");
    alice.wait_for("the creation", |line| line == "* created #trip@green with bob@blue, carol@red (you are its admin)");
    for member in [&bob, &carol] {
        member.wait_for("the group", |line| line == "* #trip@green: created by alice@green with bob@blue, carol@red (epoch 0)");
    }
    // Named by its name alone, as it was created.
    alice.type_line("#trip hi all");
    alice.wait_for("the group send confirmed", |line| line == "* sent to #trip@green");
    for member in [&bob, &carol] {
        member.wait_for("the group message", |line| line == "#trip@green alice@green: hi all");
    }
    alice.type_line("#trap hi");
    alice.wait_for("an unknown group", |line| line == "! you are in no group named \"trap\"; your groups: trip@green");
    alice.type_line("/groups");
    alice.wait_for("the groups", |line| line == "  #trip@green: bob@blue, carol@red, alice@green");

    // A removal: who was removed, and by whom, on every side.
    alice.type_line("/group remove trip carol@red");
    alice.wait_for("the removal confirmed", |line| line == "* removed carol@red from #trip@green");
    bob.wait_for("the removal", |line| line == "* #trip@green: alice@green removed carol@red (epoch 1)");
    carol.wait_for("her removal", |line| line == "* #trip@green: alice@green removed you");

    // Only an admin changes a group: said as a failed change, not as a message.
    let mut bob = bob;
    bob.type_line("/group remove trip@green alice@green");
    bob.wait_for("the refusal", |line| {
        line.starts_with("! removing alice@green from #trip@green: not sent:") && line.contains("is not an admin")
    });

    // A send to no one: one line, in words.
    let before = alice.lines().len();
    alice.type_line("@nobody@blue hello?");
    alice.wait_for("the failure", |line| line.starts_with("! not sent: no keys were found for nobody@blue"));
    std::thread::sleep(Duration::from_secs(1));
    let failures: Vec<String> = since(&alice, before).into_iter().filter(|line| line.starts_with('!')).collect();
    assert_eq!(failures.len(), 1, "said once: {failures:#?}");
    assert!(!failures[0].contains("CouldNotSeal"), "in words, not Debug: {failures:#?}");

    drop(carol);
    let bob_lines = bob.kill();
    assert!(!bob_lines.iter().any(|line| line.starts_with("alice@green:") && line.trim_end() == "alice@green:"), "{bob_lines:#?}");
}

#[test]
fn a_database_of_another_device_or_in_use_is_named() {
    let federation = Federation::new();
    let db = federation.dir.path().join("alice@green.redb");
    let alice = start(&federation, "alice@green");
    let chat = |user: &str, db: &std::path::Path, ca: &std::path::Path| {
        let app = user.split_once('@').unwrap().1;
        let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["chat", "--ca", ca.to_str().unwrap(), "--relay", &federation.clients[app].to_string()])
            .args(["--user", user, "--db", db.to_str().unwrap()])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let error = chat("alice@green", &db, &federation.ca_path());
    assert!(error.contains(&format!("{} is in use by another process", db.display())), "{error}");
    drop(alice.kill());
    // Alice's database under Dave's name would run as Alice.
    let error = chat("dave@green", &db, &federation.ca_path());
    assert!(error.contains("holds device 1 of alice@green, not device 1 of dave@green"), "{error}");
    // A registration refused (a CA that did not issue the relay's certificate) leaves no database
    // behind to be resumed next time as if it had been registered.
    let other = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["setup", "--dir", other.path().to_str().unwrap(), "--apps", "green", "--ports", "1,2"])
        .output()
        .unwrap();
    assert!(status.status.success());
    let dave = federation.dir.path().join("dave.redb");
    let error = chat("dave@green", &dave, &other.path().join("ca.pem"));
    assert!(error.contains("is not green's relay"), "{error}");
    assert!(!dave.exists(), "a database left behind");
}
