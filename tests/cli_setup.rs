//! `switchboard setup` as a person meets it: it refuses to write over a federation it set up
//! before (a new CA would part every relay from the others) and names it cannot put in a
//! certificate, and says why.

use std::process::Command;

fn setup(dir: &std::path::Path, apps: &str) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["setup", "--dir", dir.to_str().unwrap(), "--apps", apps, "--ports", &ports(apps)])
        .output()
        .unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn ports(apps: &str) -> String {
    (0..apps.split(',').count() * 2).map(|i| (17_001 + i).to_string()).collect::<Vec<_>>().join(",")
}

#[test]
fn setup_writes_a_federation_once_and_refuses_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    let federation = dir.path().join("fed");
    let (ok, _) = setup(&federation, "green,blue");
    assert!(ok);
    let ca = std::fs::read(federation.join("ca.pem")).unwrap();
    let (ok, error) = setup(&federation, "green,blue");
    assert!(!ok && error.contains("already"), "{error}");
    assert_eq!(std::fs::read(federation.join("ca.pem")).unwrap(), ca, "the CA is kept");
    for (apps, says) in [("green,green", "named twice"), ("a b", "letters, digits"), ("c@d", "app"), ("", "app")] {
        let (ok, error) = setup(&dir.path().join(format!("other-{}", apps.len())), apps);
        assert!(!ok && error.contains(says), "{apps:?}: {error}");
    }
}

#[test]
fn a_relay_says_what_it_refused_without_being_asked() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let federation = dir.path().join("fed");
    let status = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["setup", "--dir", federation.to_str().unwrap(), "--apps", "green", "--ports", "17101,17102"])
        .output()
        .unwrap();
    assert!(status.status.success());
    let mut relay = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["relay", "--config", federation.join("green.toml").to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(relay.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    assert!(ready.contains("ready"), "{ready}");
    // A client in the clear: refused, and the relay's log says so.
    let mut plain = std::net::TcpStream::connect("127.0.0.1:17101").unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    plain.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let _ = plain.read_to_end(&mut Vec::new());
    std::thread::sleep(std::time::Duration::from_millis(200));
    relay.kill().unwrap();
    let mut log = String::new();
    relay.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    relay.wait().unwrap();
    assert!(log.contains("refused a device connection"), "{log}");
}

#[test]
fn an_error_names_its_file_and_prints_no_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let federation = dir.path().join("fed");
    assert!(setup(&federation, "green,blue").0);
    std::fs::write(federation.join("blue.pem"), "not a certificate").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["relay", "--config", federation.join("green.toml").to_str().unwrap()])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(error.contains("blue.pem"), "{error}");
    assert!(!error.contains("backtrace") && error.lines().count() <= 2, "{error}");
}
