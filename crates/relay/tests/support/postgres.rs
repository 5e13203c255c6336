//! PostgreSQL servers for tests: each a cluster of its own in a temporary folder, on a free
//! loopback port, made with Debian's `initdb` and run with `pg_ctl`, stopped when dropped.
//!
//! `initdb` and `postgres` refuse to run as root, and tests run as root here and in CI: as root,
//! the server binaries run as an unprivileged system user made once for them
//! ([`SERVER_USER`]), owner of the cluster's folder.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The system user the server binaries run as when the tests run as root.
pub const SERVER_USER: &str = "switchboard-pg";

/// The folder of `initdb`, `pg_ctl`, `pg_basebackup` and `psql`: `pg_config --bindir` if that
/// has them, or the newest of Debian's `/usr/lib/postgresql/*/bin`; `None` if there is none.
pub fn installed_bindir() -> Option<PathBuf> {
    static BINDIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINDIR
        .get_or_init(|| {
            let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
            let configured = Command::new("pg_config").arg("--bindir").output().ok().filter(|out| out.status.success());
            if let Some(out) = configured {
                let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
                if has_server(&dir) {
                    return Some(dir);
                }
            }
            let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.path().join("bin"))
                .filter(|dir| has_server(dir))
                .collect();
            // Versions are whole numbers: the longest name, then the greatest, is the newest.
            dirs.sort_by_key(|dir| (dir.as_os_str().len(), dir.clone()));
            dirs.pop()
        })
        .clone()
}

/// [`installed_bindir`], or a failed test saying how to install the binaries: a test that needs
/// PostgreSQL never passes without it.
pub fn bindir() -> PathBuf {
    installed_bindir().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server binaries (initdb, pg_ctl) were not found (pg_config --bindir, /usr/lib/postgresql/*/bin): \
             scripts/test.sh installs them (apt-get install postgresql)"
        )
    })
}

/// The uid and gid to run the server binaries as: [`SERVER_USER`]'s, made if missing, when
/// this process is root; none otherwise.
fn server_ids() -> Option<(u32, u32)> {
    static IDS: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *IDS.get_or_init(|| {
        let id = |flag: &str, user: Option<&str>| {
            let out = Command::new("id").arg(flag).args(user).output().ok().filter(|out| out.status.success())?;
            String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().ok()
        };
        if id("-u", None).expect("`id -u` runs") != 0 {
            return None;
        }
        if id("-u", Some(SERVER_USER)).is_none() {
            // Another test process may make it at the same time: its "already exists" is fine,
            // and the look-up below is what counts.
            let _ = Command::new("useradd")
                .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER])
                .output();
        }
        let uid = id("-u", Some(SERVER_USER)).unwrap_or_else(|| panic!("could not make the system user {SERVER_USER} (useradd)"));
        let gid = id("-g", Some(SERVER_USER)).unwrap_or_else(|| panic!("no group for {SERVER_USER}"));
        Some((uid, gid))
    })
}

/// `program` from [`bindir`], run as the server's user.
fn server_command(program: &str) -> Command {
    let mut command = Command::new(bindir().join(program));
    if let Some((uid, gid)) = server_ids() {
        command.uid(uid).gid(gid);
    }
    command.env_remove("PGDATA").env_remove("PGPORT").env_remove("PGHOST");
    command
}

fn run(mut command: Command, what: &str) -> Output {
    let out = command.output().unwrap_or_else(|error| panic!("{what}: {error}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// What `psql` prints for `query` (unaligned, tuples only) in `database` of the test server on
/// `port`: for a thread that does not own the [`Server`].
pub fn sql_at(port: u16, database: &str, query: &str) -> String {
    let mut psql = Command::new(bindir().join("psql"));
    psql.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", query]);
    String::from_utf8_lossy(&run(psql, &format!("psql -c {query:?}")).stdout).into_owned()
}

/// A free port on 127.0.0.1 (free when asked: the server binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("a free loopback port").port()
}

/// One PostgreSQL server, its folder a temporary one; stopped (fast) when dropped.
pub struct Server {
    /// Its loopback port.
    pub port: u16,
    data: PathBuf,
    /// Its `max_prepared_transactions` (a standby's is its primary's).
    prepared_transactions: u32,
    _root: Option<tempfile::TempDir>,
}

/// A temporary folder the server's user may write in.
fn server_folder() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("a temporary folder");
    if let Some((uid, gid)) = server_ids() {
        std::os::unix::fs::chown(root.path(), Some(uid), Some(gid)).expect("chown the cluster's folder");
    }
    root
}

impl Server {
    /// A new cluster (`initdb`, trust authentication on loopback only, user `postgres`), started,
    /// with prepared transactions enabled (mailbox shards need them).
    pub fn start() -> Server {
        Server::start_with_prepared_transactions(16)
    }

    /// [`Self::start`] with `max_prepared_transactions` at `prepared_transactions` (0:
    /// PostgreSQL's default, disabled).
    pub fn start_with_prepared_transactions(prepared_transactions: u32) -> Server {
        let root = server_folder();
        let data = root.path().join("data");
        let mut initdb = server_command("initdb");
        initdb.arg("-D").arg(&data).args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"]);
        run(initdb, "initdb");
        let server = Server { port: free_port(), data, prepared_transactions, _root: Some(root) };
        server.pg_ctl_start();
        server
    }

    /// A synchronous standby of `self` (`pg_basebackup -R`), started and streaming; `self` then
    /// waits for it on every commit (`synchronous_standby_names = '*'`, `synchronous_commit =
    /// on`).
    pub fn start_standby(&self) -> Server {
        let root = server_folder();
        let data = root.path().join("data");
        let mut backup = server_command("pg_basebackup");
        backup.arg("-D").arg(&data).args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-R", "-X", "stream"]);
        run(backup, "pg_basebackup");
        let standby = Server { port: free_port(), data, prepared_transactions: self.prepared_transactions, _root: Some(root) };
        standby.pg_ctl_start();
        self.sql("ALTER SYSTEM SET synchronous_standby_names = '*'");
        self.sql("ALTER SYSTEM SET synchronous_commit = 'on'");
        self.sql("SELECT pg_reload_conf()");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.sql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'").trim() != "1" {
            assert!(Instant::now() < deadline, "the standby did not become synchronous");
            std::thread::sleep(Duration::from_millis(50));
        }
        standby
    }

    fn pg_ctl_start(&self) {
        let socket_dir = self.data.parent().expect("the data folder is in a folder");
        let options = format!(
            "-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_prepared_transactions={}",
            self.port,
            socket_dir.display(),
            self.prepared_transactions
        );
        let mut start = server_command("pg_ctl");
        start.arg("-D").arg(&self.data).arg("-l").arg(socket_dir.join("log")).args(["-w", "-t", "30", "-o", &options, "start"]);
        run(start, "pg_ctl start");
    }

    /// Its libpq connection string.
    pub fn url(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }

    /// What `psql` prints for `query` (unaligned, tuples only).
    pub fn sql(&self, query: &str) -> String {
        self.sql_in("postgres", query)
    }

    /// [`Self::sql`] in the database `database`.
    pub fn sql_in(&self, database: &str, query: &str) -> String {
        sql_at(self.port, database, query)
    }

    /// Kills the server with SIGKILL, its postmaster and then every process it started (see
    /// [`Self::signal_all`]): a crash, with no shutdown of any kind and no backend left to
    /// finish what it was sending.
    pub fn kill(&self) {
        self.signal_all("KILL");
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`) to the server's postmaster (pid from
    /// `postmaster.pid`) and every process it started (backends, walsender, walreceiver, …; each
    /// a session of its own, so not one process group). The postmaster first, then its children
    /// (a stopped or killed postmaster starts no more); for `CONT`, the children first.
    pub fn signal_all(&self, signal: &str) {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid")).expect("postmaster.pid");
        let pid = pid_file.lines().next().expect("a pid").trim().to_owned();
        let send = |pids: &[String]| {
            if pids.is_empty() {
                return;
            }
            let mut kill = Command::new("kill");
            kill.arg(format!("-{signal}")).args(pids);
            run(kill, &format!("kill -{signal}"));
        };
        let children = || {
            let mut ps = Command::new("ps");
            ps.args(["-o", "pid=", "--ppid", &pid]);
            // ps fails when there is none.
            let out = ps.output().expect("ps runs");
            String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect::<Vec<_>>()
        };
        if signal == "CONT" {
            send(&children());
            send(std::slice::from_ref(&pid));
        } else {
            send(std::slice::from_ref(&pid));
            send(&children());
        }
    }

    /// Promotes a standby to primary, and waits until it is.
    pub fn promote(&self) {
        let mut promote = server_command("pg_ctl");
        promote.arg("-D").arg(&self.data).args(["-w", "-t", "30", "promote"]);
        run(promote, "pg_ctl promote");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Immediate: nothing of a test's cluster needs keeping. A killed server's pg_ctl fails,
        // and that is fine; what a crash left behind goes with the folder.
        let mut stop = server_command("pg_ctl");
        stop.arg("-D").arg(&self.data).args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.output();
        // A postmaster killed with SIGKILL leaves its backends to exit on their own; the folder
        // may be removed under them, which they survive.
    }
}
