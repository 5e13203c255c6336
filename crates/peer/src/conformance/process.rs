//! A peer as a child process: request lines written to its standard input by one thread,
//! response lines read from its standard output by another, and a time limit on every answer so
//! that a hung peer is reported instead of hanging the run. A peer that fails — no answer in
//! time, an exit, a closed pipe — is killed with every process it started, and reaped; so is
//! every peer when the run ends, whichever way it ends.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, channel, sync_channel};
use std::thread;
use std::time::{Duration, Instant};

/// The longest response line read (a 1 MiB message in hex, with room to spare).
pub const MAX_RESPONSE_LEN: usize = 16 * 1024 * 1024;

/// How long a peer that closed a pipe is given to finish exiting, so that its exit status can
/// be reported.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// Why a peer gave no usable answer. After any of these the peer has been killed and reaped,
/// and is not asked anything again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerFailure {
    /// The command could not be started.
    #[error("could not be started")]
    Spawn(#[source] std::io::Error),
    /// No answer within the time limit.
    #[error("gave no answer within {timeout:?} (killed)")]
    NoAnswer {
        /// The limit.
        timeout: Duration,
    },
    /// The peer exited.
    #[error("exited ({status}) after {answered} answers")]
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// How many requests it had answered.
        answered: u64,
    },
    /// The peer closed its standard input or output but did not exit.
    #[error("closed its {pipe} but kept running (killed)")]
    ClosedPipe {
        /// `standard input` or `standard output`.
        pipe: &'static str,
        /// The error of the write or read that found it closed, if there was one.
        #[source]
        source: Option<std::io::Error>,
    },
    /// Reading the standard output failed, or a line was too long to be an answer.
    #[error("standard output could not be read (killed)")]
    Read(#[source] std::io::Error),
    /// An earlier failure ended this peer.
    #[error("already failed")]
    Gone,
}

/// What the threads around a child report.
enum Event {
    Line(String),
    EndOfOutput,
    ReadFailed(std::io::Error),
    WriteFailed(std::io::Error),
}

/// A running peer.
pub struct PeerProcess {
    /// `A` or `B`.
    pub label: &'static str,
    child: Child,
    requests: Option<Sender<String>>,
    events: Receiver<Event>,
    timeout: Duration,
    answered: u64,
    gone: bool,
    /// Set once the child was reaped: its pid may then belong to another process, and is never
    /// signalled again.
    exited: Option<ExitStatus>,
}

impl PeerProcess {
    /// Starts `command` through `sh -c`; its standard error passes through.
    pub fn spawn(label: &'static str, command: &str, timeout: Duration) -> Result<Self, PeerFailure> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(PeerFailure::Spawn)?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        // Bounded: a peer that writes lines nobody asked for fills it, and its reader then waits,
        // instead of the runner's memory growing with them.
        let (event_sender, events) = sync_channel(EVENTS_QUEUED);
        let (requests, request_receiver) = channel();
        let writer_events = event_sender.clone();
        thread::spawn(move || write_requests(stdin, request_receiver, writer_events));
        thread::spawn(move || read_responses(stdout, event_sender));
        Ok(PeerProcess { label, child, requests: Some(requests), events, timeout, answered: 0, gone: false, exited: None })
    }

    /// Whether an earlier failure ended this peer.
    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// Sends one request line (any text: hostile requests are sent as they are) and returns the
    /// response line. On failure the peer is killed and reaped, and stays gone.
    pub fn send_line(&mut self, line: &str) -> Result<String, PeerFailure> {
        if self.gone {
            return Err(PeerFailure::Gone);
        }
        let sent = self.requests.as_ref().is_some_and(|requests| requests.send(line.to_owned()).is_ok());
        let event = if sent {
            match self.events.recv_timeout(self.timeout) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => {
                    self.end();
                    return Err(PeerFailure::NoAnswer { timeout: self.timeout });
                }
                Err(RecvTimeoutError::Disconnected) => Event::EndOfOutput,
            }
        } else {
            // The writer stopped after a failed write; its event is waiting.
            self.events.try_recv().unwrap_or(Event::EndOfOutput)
        };
        let failure = match event {
            Event::Line(line) => {
                self.answered += 1;
                return Ok(line);
            }
            Event::EndOfOutput => self.closed("standard output", None),
            Event::WriteFailed(error) => self.closed("standard input", Some(error)),
            Event::ReadFailed(error) => PeerFailure::Read(error),
        };
        self.end();
        Err(failure)
    }

    /// The failure of a peer that closed a pipe: its exit, if it exits soon.
    fn closed(&mut self, pipe: &'static str, source: Option<std::io::Error>) -> PeerFailure {
        match self.wait_for_exit(EXIT_GRACE) {
            Some(status) => PeerFailure::Exited { status, answered: self.answered },
            None => PeerFailure::ClosedPipe { pipe, source },
        }
    }

    fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if self.exited.is_some() {
                return self.exited;
            }
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exited = Some(status);
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => return None,
            }
        }
    }

    /// Closes the peer's standard input, as at the end of a run, and waits up to `limit` for it
    /// to exit on its own. Then, exited or not, it is killed with its descendants and reaped.
    /// Returns its exit status if it exited on its own.
    pub fn finish(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.gone {
            return None;
        }
        self.requests = None;
        let status = self.wait_for_exit(limit);
        self.end();
        status
    }

    /// Kills the peer and every process it started, and reaps it.
    fn end(&mut self) {
        if self.gone {
            return;
        }
        self.gone = true;
        self.requests = None;
        if self.exited.is_none() {
            // Not reaped yet: the pid is still the child's (a zombie at worst).
            kill_tree(self.child.id());
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.end();
    }
}

/// `error` followed by each of its sources, separated by colons.
pub(crate) fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Lines (and failures) read from a peer and not yet taken by the runner, at most.
const EVENTS_QUEUED: usize = 4;

fn write_requests(mut stdin: ChildStdin, requests: Receiver<String>, events: SyncSender<Event>) {
    for line in requests {
        let written = stdin.write_all(line.as_bytes()).and_then(|()| stdin.write_all(b"\n")).and_then(|()| stdin.flush());
        if let Err(error) = written {
            let _ = events.send(Event::WriteFailed(error));
            return;
        }
    }
}

fn read_responses(stdout: ChildStdout, events: SyncSender<Event>) {
    let mut reader = BufReader::new(stdout);
    loop {
        let mut line = Vec::new();
        let event = match (&mut reader).take(MAX_RESPONSE_LEN as u64 + 1).read_until(b'\n', &mut line) {
            Ok(0) => Event::EndOfOutput,
            Ok(_) if line.len() > MAX_RESPONSE_LEN => Event::ReadFailed(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("an answer line longer than {MAX_RESPONSE_LEN} bytes"),
            )),
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                Event::Line(String::from_utf8_lossy(&line).into_owned())
            }
            Err(error) => Event::ReadFailed(error),
        };
        let last = !matches!(event, Event::Line(_));
        if events.send(event).is_err() || last {
            return;
        }
    }
}

/// Kills `root` and all its descendants (those it has not left behind by exiting: an orphan is
/// re-parented away from the tree and cannot be told from any other process). The tree is frozen first (stopped, from the top, until
/// no new process appears) so that nothing escapes by forking or by being re-parented once its
/// parent dies; then everything in it is killed. Descendants are found through `/proc`; where
/// there is none, only `root` is killed.
fn kill_tree(root: u32) {
    let mut tree = BTreeSet::from([root]);
    for _ in 0..16 {
        signal("STOP", &tree);
        let before = tree.len();
        tree.extend(descendants(root));
        if tree.len() == before {
            break;
        }
    }
    signal("KILL", &tree);
}

/// Sends `signal` to `pids` through the `kill` utility (no unsafe code here), ignoring
/// processes already gone.
fn signal(signal: &str, pids: &BTreeSet<u32>) {
    let _ = Command::new("kill")
        .arg("-s")
        .arg(signal)
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Every process whose parent chain leads to `root` (not `root` itself).
fn descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let parents: Vec<(u32, u32)> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect();
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        next += 1;
    }
    found.remove(0);
    found
}

/// The parent process id in `/proc/PID/stat` (the field after the state, after the command name
/// in parentheses, which may itself hold spaces and parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}
