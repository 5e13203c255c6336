//! `switchboard chat` as a process, for the tests that type into it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Federation;

/// `switchboard chat` as a process: its printed lines, gathered by a thread.
pub struct Chat {
    child: Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Chat {
    pub fn start(federation: &Federation, user: &str, db: &std::path::Path) -> Chat {
        Chat::start_as(federation, &[(user, db)])
    }

    /// One chat signed in to several accounts at once (one per app).
    pub fn start_as(federation: &Federation, accounts: &[(&str, &std::path::Path)]) -> Chat {
        let ca = federation.ca_path();
        let mut args: Vec<String> = vec!["chat".into(), "--ca".into(), ca.to_str().unwrap().into()];
        for (user, db) in accounts {
            let app = user.split_once('@').unwrap().1;
            args.extend(["--relay".into(), federation.clients[app].to_string(), "--user".into(), user.to_string(), "--db".into(), db.to_str().unwrap().into()]);
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let gathered = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                gathered.lock().unwrap().push(line);
            }
        });
        Chat { child, stdin, lines }
    }

    pub fn type_line(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a printed line satisfies `seen`.
    pub fn wait_for(&self, what: &str, seen: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.lines().iter().any(|line| seen(line)) {
            assert!(Instant::now() < deadline, "chat never printed {what}: {:#?}", self.lines());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL.
    pub fn kill(mut self) -> Vec<String> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.lines()
    }
}

