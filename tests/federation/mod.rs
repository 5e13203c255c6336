//! Three relays as separate processes on loopback (`switchboard setup`, then `switchboard relay
//! --config` per app), for the tests that hold real processes.

#![allow(dead_code)] // each test file uses its own part of it

pub mod chat;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use switchboard_client::{Event, RelayAddress};
use switchboard_wire::switchboard::{Text, content};

pub const APPS: [&str; 3] = ["green", "blue", "red"];

pub struct Federation {
    pub dir: tempfile::TempDir,
    pub clients: HashMap<String, SocketAddr>,
    pub federation: HashMap<String, SocketAddr>,
    pub processes: HashMap<String, Child>,
}

/// A port no other test of this binary uses, free now, and below the kernel's ephemeral range
/// (32768 and up on Linux), so that no outgoing connection takes it while its relay is down
/// between a kill and a restart. Ports of the ephemeral range (`bind(0)`, then let go) were taken
/// that way between the choice and the relay's bind, now and then.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const LAST: u16 = 32_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Each run starts somewhere else, so that two runs at once on one machine rarely meet.
    let _ = NEXT.compare_exchange(0, FIRST + (std::process::id() % 1000) as u16 * 10, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < LAST, "no free port left below the ephemeral range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Federation {
    pub fn new() -> Federation {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<String> = (0..APPS.len() * 2).map(|_| free_port().to_string()).collect();
        let status = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["setup", "--dir", dir.path().to_str().unwrap(), "--apps", &APPS.join(","), "--ports", &ports.join(",")])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let clients = APPS
            .iter()
            .enumerate()
            .map(|(i, app)| (app.to_string(), format!("127.0.0.1:{}", ports[2 * i]).parse().unwrap()))
            .collect();
        let federation_addresses = APPS
            .iter()
            .enumerate()
            .map(|(i, app)| (app.to_string(), format!("127.0.0.1:{}", ports[2 * i + 1]).parse().unwrap()))
            .collect();
        let mut federation = Federation { dir, clients, federation: federation_addresses, processes: HashMap::new() };
        for app in APPS {
            federation.start(app);
        }
        federation
    }

    pub fn start(&mut self, app: &str) {
        let config = self.dir.path().join(format!("{app}.toml"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command.args(["relay", "--config", config.to_str().unwrap()]).stdout(Stdio::piped());
        // Relays log at info; the tests' output keeps warnings only, unless RUST_LOG says otherwise.
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn");
        }
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains("ready"), "relay {app} did not start: {line}");
        self.processes.insert(app.into(), child);
    }

    /// SIGKILL: no chance to flush or close anything.
    pub fn kill(&mut self, app: &str) {
        let mut child = self.processes.remove(app).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn database(&self, app: &str) -> PathBuf {
        self.dir.path().join(format!("{app}-data")).join("relay.redb")
    }

    /// How a device of `app` reaches and recognises its relay (the CA `setup` wrote).
    pub fn relay(&self, app: &str) -> RelayAddress {
        RelayAddress::new(self.clients[app], app, &self.ca_certificate()).unwrap()
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn ca_certificate(&self) -> String {
        std::fs::read_to_string(self.ca_path()).unwrap()
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        for (_, mut child) in self.processes.drain() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A text message's body.
pub fn text(s: &str) -> content::Body {
    content::Body::Text(Text { text: s.into() })
}

/// The texts among `events`, in order.
pub fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { content: c, .. } => match &c.body {
                Some(content::Body::Text(t)) => Some(t.text.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
