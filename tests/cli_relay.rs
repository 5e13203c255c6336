//! `switchboard relay` and `switchboard setup` as a person meets them: what a relay logs without
//! being asked (links up and down, a peer of another federation refused, and which side refused
//! what), that `RUST_LOG` changes it, errors that name the file, folder or field at fault, and
//! `setup` refusing what would part a federation.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn switchboard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
}

/// Ports free now (the relays bind them at once).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|listener| listener.local_addr().unwrap().port()).collect()
}

fn setup(dir: &Path, apps: &str, ports: &[u16]) -> std::process::Output {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    switchboard().args(["setup", "--dir", dir.to_str().unwrap(), "--apps", apps, "--ports", &ports.join(",")]).output().unwrap()
}

/// A relay process, its stderr (the log) gathered line by line.
struct Relay {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Relay {
    fn start(config: &Path, rust_log: Option<&str>) -> Relay {
        let mut command = switchboard();
        command.args(["relay", "--config", config.to_str().unwrap()]).stdout(Stdio::piped()).stderr(Stdio::piped());
        match rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let mut child = command.spawn().unwrap();
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).unwrap();
        assert!(ready.contains("ready"), "{ready}");
        let log = Arc::new(Mutex::new(Vec::new()));
        let gathered = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                gathered.lock().unwrap().push(line);
            }
        });
        Relay { child, log }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) for a log line that `seen` accepts.
    fn wait_for(&self, what: &str, seen: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(line) = self.log().into_iter().find(|line| seen(line)) {
                return line;
            }
            assert!(Instant::now() < deadline, "the relay never logged {what}: {:#?}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two federations of green and blue on the same ports, each with its own CA: what `setup` run
/// again in another folder (or the old one, before it refused) leaves.
fn two_federations() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(4);
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    assert!(setup(&first, "green,blue", &ports).status.success());
    assert!(setup(&second, "green,blue", &ports).status.success());
    (dir, first, second)
}

#[test]
fn relays_say_their_links_come_up_and_go_down_in_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    assert!(setup(dir.path(), "green,blue", &free_ports(4)).status.success());
    let green = Relay::start(&dir.path().join("green.toml"), None);
    green.wait_for("that blue cannot be reached", |line| line.contains("cannot reach blue's relay"));
    let blue = Relay::start(&dir.path().join("blue.toml"), None);
    green.wait_for("the link to blue", |line| line.contains("the link to blue's relay is up"));
    blue.wait_for("the link to green", |line| line.contains("the link to green's relay is up"));
    drop(blue);
    green.wait_for("the link closing", |line| line.contains("the link to blue's relay closed"));
    // Said once while blue stays away, not at every retry.
    std::thread::sleep(Duration::from_secs(3));
    let unreachable = green.log().iter().filter(|line| line.contains("cannot reach blue's relay")).count();
    assert_eq!(unreachable, 2, "once at the start, once after the link closed: {:#?}", green.log());
    // Colours are for a terminal: the log read from a pipe holds no escape codes.
    assert!(green.log().iter().all(|line| !line.contains('\u{1b}')), "{:#?}", green.log());
}

#[test]
fn a_relay_of_another_federation_is_refused_and_both_sides_say_why() {
    let (_dir, first, second) = two_federations();
    let green = Relay::start(&first.join("green.toml"), None);
    let blue = Relay::start(&second.join("blue.toml"), None);
    for (relay, peer) in [(&green, "blue"), (&blue, "green")] {
        let line = relay.wait_for("the refused link", |line| line.contains(&format!("no link to {peer}'s relay")));
        assert!(line.contains("WARN") && line.contains("not issued by this federation's CA"), "{line}");
        relay.wait_for("the refused connection", |line| line.contains("refused a federation connection"));
    }
    // The relays retry every two seconds; each says it once.
    std::thread::sleep(Duration::from_secs(5));
    let refused = green.log().iter().filter(|line| line.contains("no link to blue's relay")).count();
    assert_eq!(refused, 1, "{:#?}", green.log());
}

#[test]
fn rust_log_changes_what_a_relay_logs() {
    let (_dir, first, second) = two_federations();
    let green = Relay::start(&first.join("green.toml"), Some("error"));
    let blue = Relay::start(&second.join("blue.toml"), None);
    // Blue's log shows the refusals have happened; green, told to log errors only, says nothing.
    blue.wait_for("the refused link", |line| line.contains("no link to green's relay"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(green.log(), Vec::<String>::new());
    drop(green);
    let debug = Relay::start(&second.join("green.toml"), Some("debug"));
    debug.wait_for("a debug line", |line| line.contains("DEBUG"));
}

#[test]
fn garbage_on_the_federation_port_is_logged() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    assert!(setup(dir.path(), "green", &ports).status.success());
    let green = Relay::start(&dir.path().join("green.toml"), None);
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", ports[1])).unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = plain.read_to_end(&mut Vec::new());
    let line = green.wait_for("the refusal", |line| line.contains("refused a federation connection"));
    assert!(line.contains("does the other side speak TLS"), "{line}");
}

#[test]
fn a_second_relay_on_one_data_folder_is_told_so() {
    let dir = tempfile::tempdir().unwrap();
    assert!(setup(dir.path(), "green", &free_ports(2)).status.success());
    let _green = Relay::start(&dir.path().join("green.toml"), None);
    let output = switchboard().args(["relay", "--config", dir.path().join("green.toml").to_str().unwrap()]).env("RUST_BACKTRACE", "1").output().unwrap();
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    let database = dir.path().join("green-data").join("relay.redb");
    assert!(error.contains(&format!("{} is in use by another process", database.display())), "{error}");
    assert!(error.contains("relay already running"), "{error}");
    assert_eq!(error.lines().count(), 1, "one line, no backtrace: {error}");
}

#[test]
fn a_port_in_use_names_its_field_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    assert!(setup(dir.path(), "green", &ports).status.success());
    let _taken = std::net::TcpListener::bind(("127.0.0.1", ports[0])).unwrap();
    let output = switchboard().args(["relay", "--config", dir.path().join("green.toml").to_str().unwrap()]).output().unwrap();
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(error.contains("green.toml: client_listen 127.0.0.1:") && error.contains("is a relay already running on it?"), "{error}");
}

#[test]
fn certificate_files_that_do_not_belong_together_are_named() {
    let (_dir, first, second) = two_federations();
    // A CA written again over certificates of the old one.
    std::fs::copy(second.join("ca.pem"), first.join("ca.pem")).unwrap();
    let output = switchboard().args(["relay", "--config", first.join("green.toml").to_str().unwrap()]).output().unwrap();
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(error.contains(&format!("{} was not issued by {} for app \"green\"", first.join("green.pem").display(), first.join("ca.pem").display())), "{error}");
    // Blue's key beside green's certificate.
    std::fs::copy(second.join("ca.pem"), first.join("ca.pem")).unwrap();
    std::fs::copy(second.join("green.pem"), first.join("green.pem")).unwrap();
    std::fs::copy(second.join("blue.key"), first.join("green.key")).unwrap();
    let output = switchboard().args(["relay", "--config", first.join("green.toml").to_str().unwrap()]).output().unwrap();
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains(&format!("{} is not the private key of {}", first.join("green.key").display(), first.join("green.pem").display())), "{error}");
    // An empty CA file: which file, and what is missing in it.
    std::fs::write(first.join("ca.pem"), "").unwrap();
    let output = switchboard().args(["relay", "--config", first.join("green.toml").to_str().unwrap()]).output().unwrap();
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains(&format!("{}: no certificate in it", first.join("ca.pem").display())), "{error}");
}

#[test]
fn setup_refuses_ports_it_cannot_use_and_files_it_would_write_over() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |dir: &Path, apps: &str, ports: &str| {
        let output = switchboard().args(["setup", "--dir", dir.to_str().unwrap(), "--apps", apps, "--ports", ports]).output().unwrap();
        assert!(!output.status.success(), "{apps} {ports} accepted");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let error = refused(&dir.path().join("a"), "green,blue", "17301,17302,17301,17304");
    assert!(error.contains("--ports: 17301 is given twice"), "{error}");
    let error = refused(&dir.path().join("b"), "green,blue", "17301,17302,17303");
    assert!(error.contains("4 for 2 app(s), not 3"), "{error}");
    let error = refused(&dir.path().join("c"), "green", "0,17302");
    assert!(error.contains("--ports: 0"), "{error}");
    // A folder holding one app's files (its CA gone) is not written over either.
    let federation = dir.path().join("d");
    assert!(setup(&federation, "green", &[17_301, 17_302]).status.success());
    std::fs::remove_file(federation.join("ca.pem")).unwrap();
    let key = std::fs::read(federation.join("green.key")).unwrap();
    let error = refused(&federation, "green,blue", "17301,17302,17303,17304");
    assert!(error.contains("green.pem exists") || error.contains("green.key exists"), "{error}");
    assert_eq!(std::fs::read(federation.join("green.key")).unwrap(), key);
    for (name, says) in [("", "1 to 63 letters"), ("a b", "1 to 63 letters"), ("c@d", "1 to 63 letters")] {
        let error = refused(&dir.path().join("e"), name, "17301,17302");
        assert!(error.contains("--apps") && error.contains(says), "{name:?}: {error}");
    }
}
