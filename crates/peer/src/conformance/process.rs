//! A peer as a child process: requests written to its standard input, one response line read
//! back per request, with a time limit so a hung peer is reported instead of hanging the run.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread;
use std::time::Duration;

use serde_json::Value;

/// A running peer.
pub struct PeerProcess {
    pub label: &'static str,
    child: Child,
    stdin: ChildStdin,
    responses: Receiver<String>,
    timeout: Duration,
}

impl PeerProcess {
    /// Starts `command` through `sh -c`; its standard error passes through.
    pub fn spawn(label: &'static str, command: &str, timeout: Duration) -> std::io::Result<Self> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (sender, responses) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(PeerProcess { label, child, stdin, responses, timeout })
    }

    /// Sends one request line (any text: hostile requests are sent as they are) and returns
    /// the response, or why there was none.
    pub fn send_line(&mut self, line: &str) -> Result<Value, String> {
        let written = self.stdin.write_all(line.as_bytes()).and_then(|()| self.stdin.write_all(b"\n"));
        if let Err(e) = written.and_then(|()| self.stdin.flush()) {
            return Err(format!("peer {} stopped reading: {e}", self.label));
        }
        match self.responses.recv_timeout(self.timeout) {
            Ok(line) => serde_json::from_str(&line)
                .map_err(|e| format!("peer {} answered with a line that is not JSON ({e}): {line:.200}", self.label)),
            Err(RecvTimeoutError::Timeout) => Err(format!("peer {} gave no answer within {:?}", self.label, self.timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(format!("peer {} exited", self.label)),
        }
    }

    /// Sends a request object.
    pub fn request(&mut self, request: &Value) -> Result<Value, String> {
        self.send_line(&request.to_string())
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
