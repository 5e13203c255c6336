//! A relay's configuration file (TOML), so each app's relay can run as its own process, on its
//! own machine. Paths are relative to the file's folder.
//!
//! ```toml
//! app = "green"
//! client_listen = "127.0.0.1:7001"
//! federation_listen = "127.0.0.1:7101"
//! data_dir = "green-data"
//! certificate = "green.pem"
//! private_key = "green.key"
//! ca_certificate = "ca.pem"
//!
//! [[peers]]
//! app = "blue"
//! address = "127.0.0.1:7102"
//! certificate = "blue.pem"
//!
//! [[peers]]
//! app = "red"
//! addresses = ["127.0.0.1:7103", "127.0.0.1:7113"]
//! certificate = "red.pem"
//! ```
//!
//! A peer is given `address`, its federation listener, or, when its relay is several nodes (one
//! active, the others standbys or front nodes: see [`Leadership`](crate::storage::Leadership)), `addresses`,
//! each node's `federation_listen` (at most [`MAX_PEER_ADDRESSES`], each once): the relay dials
//! them in turn, from the one that answered last, so its mail reaches whichever node is active
//! (once the link to a node that went away is dropped: see the README for how soon). One of the
//! two, not both ([`ConfigError::PeerAddresses`]).
//!
//! Where the relay keeps its state is the optional `[storage]` table. Without it, or with
//! `kind = "redb"`, it is an embedded redb database, `relay.redb` in `data_dir`. With
//! `kind = "postgres"` it is a PostgreSQL database, `url` its libpq connection string
//! (`host=… port=… user=… dbname=…`, or `postgresql://…`); the relay creates its tables there on
//! every start if they are missing, so its role needs CREATE on the database's `public` schema
//! (on PostgreSQL 15 and later, make the role the database's owner: `createdb -O <role> …`).
//! Each app's relay needs a database of its own (a node is refused a database recorded as
//! holding another app's state, see [`Leadership`](crate::storage::Leadership)), and `url` must
//! name one host (the primary; see [`PostgresRefusal`]). The
//! connection is made without TLS (a server on loopback, a Unix socket, or a network the relay
//! trusts), and a password in `url` is never printed: keep the file readable by the relay's user
//! only. `url` takes a subset of libpq's options: `PGPASSWORD` and `~/.pgpass` are not read and
//! `passfile=` and `service=` are refused (the client library is not libpq), so a password can
//! only be in `url`; prefer `trust` authentication on loopback or `peer` over a Unix socket, and
//! no password at all. Several nodes of one app may share its database, one active at a time,
//! each with a file of its own that differs in its listen addresses only (see
//! [`Leadership`](crate::storage::Leadership)); other apps' relays then list every node's
//! `federation_listen` in `addresses`.
//!
//! ```toml
//! [storage]
//! kind = "postgres"
//! url = "host=127.0.0.1 port=5432 user=switchboard dbname=green"
//! ```
//!
//! The mailboxes may be sharded by recipient over more primaries: each `[[storage.shards]]`
//! ([`ShardConfig`]) takes the mailboxes of the users whose bucket (0 to 255, see
//! [`mailbox_bucket`](crate::storage::mailbox_bucket)) is in its range, and `url` keeps the rest
//! and everything else. A batch spanning databases commits in two phases, so each shard's server
//! needs `max_prepared_transactions` above 0. Mailboxes are not moved when the map changes: a
//! stored mailbox the new map puts elsewhere is refused at start
//! ([`PostgresRefusal::MailboxOnAnotherShard`]; see [`MailboxShard`]).
//!
//! ```toml
//! [[storage.shards]]
//! url = "host=10.0.0.2 port=5432 user=switchboard dbname=green_mail"
//! buckets = "128-255"
//! ```
//!
//! With an optional `[cluster]` table ([`ClusterConfig`]; PostgreSQL only), the nodes waiting for
//! the lock serve as front nodes, carrying what their listeners take to the active node (see
//! [`front`](crate::server::front)); each node's file names its own `node_listen`, and every
//! node's in `nodes`:
//!
//! ```toml
//! [cluster]
//! node_listen = "127.0.0.1:7201"
//! nodes = ["127.0.0.1:7201", "127.0.0.1:7202"]
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::server::tls::{Pki, TlsError, TlsIdentity, certificate_der, check_issued, device_server_config, private_key_der};
use crate::server::{Peer, RelaySettings};
use crate::storage::{MailboxShard, PostgresRefusal, check_shards};

/// What a configuration file says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// The app this relay serves: the name its certificate carries.
    pub app: String,
    /// Where devices connect (TLS).
    pub client_listen: SocketAddr,
    /// Where other apps' relays connect (mutual TLS).
    pub federation_listen: SocketAddr,
    /// The folder of its redb database (`relay.redb`), created if missing (unused when
    /// `storage` is PostgreSQL).
    pub data_dir: PathBuf,
    /// Its certificate (PEM), issued by the CA for `app`.
    pub certificate: PathBuf,
    /// The certificate's private key (PEM).
    pub private_key: PathBuf,
    /// The federation's CA (PEM).
    pub ca_certificate: PathBuf,
    /// The other apps' relays.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Where its state is kept (absent: redb, in `data_dir`). Last in the file with `cluster`:
    /// a TOML table goes after the plain keys.
    #[serde(default, skip_serializing_if = "StorageConfig::is_redb")]
    pub storage: StorageConfig,
    /// This node among its app's nodes on one PostgreSQL database, when they serve together
    /// (absent: a node waiting for the lock does not listen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
}

/// The `[cluster]` table: the nodes of one app on one PostgreSQL database all serve. The one
/// holding the database's lock is active; the others are front nodes, which take devices'
/// connections and other apps' links on their listeners and carry them to the active node (see
/// [`front`](crate::server::front)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Where this node, while active, takes front nodes' links (mutual TLS, the app's own
    /// certificate).
    pub node_listen: SocketAddr,
    /// Every node's `node_listen`, this node's among them: where a front node looks for the
    /// active one. 1 to [`MAX_PEER_ADDRESSES`], each once.
    pub nodes: Vec<SocketAddr>,
}

impl ClusterConfig {
    /// The other nodes' addresses, for a front node to dial.
    pub fn other_nodes(&self) -> Vec<SocketAddr> {
        self.nodes.iter().copied().filter(|node| *node != self.node_listen).collect()
    }
}

/// What is wrong with a `[cluster]` table ([`ConfigError::Cluster`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The storage is not PostgreSQL: only nodes sharing a database can form a cluster.
    #[error("a cluster's nodes share a PostgreSQL database: `[cluster]` needs `[storage] kind = \"postgres\"`")]
    NotPostgres,
    /// `nodes` is empty, too long, or lists an address twice.
    #[error("`nodes`")]
    Nodes(#[source] PeerAddressError),
    /// `nodes` does not list `node_listen`: the file of one node was copied for another without
    /// its `node_listen`, most likely.
    #[error("`nodes` does not list this node's `node_listen` {0}")]
    NotListed(SocketAddr),
}

/// Where a relay keeps its state: the `[storage]` table, its `kind` saying which.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StorageConfig {
    /// An embedded redb database, `relay.redb` in `data_dir` (the default).
    /// (A table of no keys rather than a bare name: serde refuses a key this kind does not
    /// take, `url` say, only for a table.)
    Redb {},
    /// A PostgreSQL database.
    Postgres {
        /// Its libpq connection string.
        url: ConnectionString,
        /// The databases that take some of the mailboxes, by bucket (none: all in `url`'s).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shards: Vec<ShardConfig>,
    },
}

/// A mailbox shard: `[[storage.shards]]` (see the module's docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// Its libpq connection string.
    pub url: ConnectionString,
    /// The buckets it takes: `"first-last"`, or one bucket, `"7"`.
    pub buckets: Buckets,
}

/// A range of mailbox buckets, written `"first-last"` (or `"7"` for one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Buckets(pub std::ops::RangeInclusive<u8>);

impl TryFrom<String> for Buckets {
    type Error = String;

    fn try_from(text: String) -> Result<Buckets, String> {
        let bucket = |part: &str| part.trim().parse::<u8>().map_err(|_| "buckets: give \"first-last\", each 0 to 255".to_owned());
        let (first, last) = match text.split_once('-') {
            Some((first, last)) => (bucket(first)?, bucket(last)?),
            None => (bucket(&text)?, bucket(&text)?),
        };
        Ok(Buckets(first..=last))
    }
}

impl From<Buckets> for String {
    fn from(buckets: Buckets) -> String {
        format!("{}-{}", buckets.0.start(), buckets.0.end())
    }
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig::Redb {}
    }
}

impl StorageConfig {
    fn is_redb(&self) -> bool {
        matches!(self, StorageConfig::Redb {})
    }

    /// The storage of `app`'s relay when each app's is this one with `{app}` in its connection
    /// string replaced by the app (so that `switchboard setup` gives each app a database).
    pub fn for_app(&self, app: &str) -> StorageConfig {
        match self {
            StorageConfig::Redb {} => StorageConfig::Redb {},
            StorageConfig::Postgres { url, shards } => StorageConfig::Postgres {
                url: ConnectionString(url.0.replace("{app}", app)),
                shards: shards
                    .iter()
                    .map(|shard| ShardConfig { url: ConnectionString(shard.url.0.replace("{app}", app)), buckets: shard.buckets.clone() })
                    .collect(),
            },
        }
    }

    /// The mailbox shards, as the store takes them (none for redb).
    pub fn mailbox_shards(&self) -> Vec<MailboxShard> {
        match self {
            StorageConfig::Redb {} => Vec::new(),
            StorageConfig::Postgres { shards, .. } => {
                shards.iter().map(|shard| MailboxShard { url: shard.url.0.clone(), buckets: shard.buckets.0.clone() }).collect()
            }
        }
    }
}

/// A PostgreSQL connection string: it may hold a password, so its `Debug` shows none of it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionString(String);

impl ConnectionString {
    /// The connection string `url`.
    pub fn new(url: impl Into<String>) -> ConnectionString {
        ConnectionString(url.into())
    }

    /// The string itself, to connect with (never to print).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionString(hidden)")
    }
}

/// Another app's relay, as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Its app.
    pub app: String,
    /// Its federation listener, when it is one node (else `addresses`; not both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<SocketAddr>,
    /// The federation listeners of its nodes, when it is several (else `address`; not both):
    /// 1 to [`MAX_PEER_ADDRESSES`] of them, each once, dialled in turn from the one that answered
    /// last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<SocketAddr>>,
    /// Its certificate (PEM): the only one accepted as that app.
    pub certificate: PathBuf,
}

/// Addresses one peer may be given (`addresses`): a relay's nodes, a handful; each unanswered
/// one costs a round of dialing up to the relay's handshake timeout.
pub const MAX_PEER_ADDRESSES: usize = 16;

/// What is wrong with a peer's `address` and `addresses` ([`ConfigError::PeerAddresses`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerAddressError {
    /// Both were given: which is meant is not for the relay to guess.
    #[error("both `address` and `addresses` are given: give one (`addresses` for a relay of several nodes)")]
    Both,
    /// Neither was given, or `addresses` is empty: there is nothing to dial.
    #[error("no `address` (or `addresses`) is given: there is nothing to dial")]
    Neither,
    /// `addresses` lists more than [`MAX_PEER_ADDRESSES`].
    #[error("`addresses` lists {given}, more than {MAX_PEER_ADDRESSES}")]
    TooMany {
        /// How many it lists.
        given: usize,
    },
    /// `addresses` lists one address twice: a slip in the file (another node's address meant,
    /// most likely), and a node that would be dialled twice a round.
    #[error("`addresses` lists {address} more than once: give each node's address once")]
    Duplicate {
        /// The address listed twice (the first such, in the order given).
        address: SocketAddr,
    },
}

impl PeerConfig {
    /// The peer's federation addresses, from `address` or `addresses`: never empty, at most
    /// [`MAX_PEER_ADDRESSES`], each once.
    pub fn federation_addresses(&self) -> Result<Vec<SocketAddr>, PeerAddressError> {
        match (&self.address, &self.addresses) {
            (Some(_), Some(_)) => Err(PeerAddressError::Both),
            (None, None) => Err(PeerAddressError::Neither),
            (Some(address), None) => Ok(vec![*address]),
            (None, Some(addresses)) => check_peer_addresses(addresses).map(|()| addresses.clone()),
        }
    }
}

/// Fails unless `addresses` can be a peer's: 1 to [`MAX_PEER_ADDRESSES`] of them, each once.
/// Checked for a configuration file's peers and again by
/// [`server::start`](crate::server::start) for peers made in code.
pub fn check_peer_addresses(addresses: &[SocketAddr]) -> Result<(), PeerAddressError> {
    if addresses.is_empty() {
        return Err(PeerAddressError::Neither);
    }
    if addresses.len() > MAX_PEER_ADDRESSES {
        return Err(PeerAddressError::TooMany { given: addresses.len() });
    }
    // At most MAX_PEER_ADDRESSES (16): comparing each with those before it is cheap.
    match addresses.iter().enumerate().find(|(i, address)| addresses[..*i].contains(address)) {
        Some((_, address)) => Err(PeerAddressError::Duplicate { address: *address }),
        None => Ok(()),
    }
}

/// Why a configuration could not be used. Each names its file and keeps the error underneath as
/// its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `[[storage.shards]]` is not a map of mailboxes the store takes (too many shards, a bucket
    /// taken twice, an empty range).
    #[error("{}: [[storage.shards]]", path.display())]
    Shards {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: PostgresRefusal,
    },
    /// A file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML of this shape. Only the parser's message (with
    /// any quoted string in it replaced by `"…"`), line and column are kept: the parser's own
    /// error quotes the offending line, which may hold the database password.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why, no value quoted.
        message: String,
        /// The line where the parser stopped (from 1; 0 when it did not say).
        line: usize,
        /// The column on that line (from 1, in characters; 0 when it did not say).
        column: usize,
    },
    /// A file could not be written (or a folder made).
    #[error("writing {}", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A certificate, key or CA file holds nothing usable.
    #[error("{}", path.display())]
    Tls {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<TlsError>,
    },
    /// The private key is not the certificate's.
    #[error("{} is not the private key of {}", key.display(), certificate.display())]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        certificate: PathBuf,
        /// What TLS said.
        #[source]
        source: Box<rustls::Error>,
    },
    /// A certificate was not issued by the configured CA for its app: other relays and devices
    /// would refuse it (a CA written again by `switchboard setup`, say, or a file of another
    /// federation).
    #[error("{} was not issued by {} for app {app:?}", certificate.display(), ca.display())]
    NotIssued {
        /// The certificate file.
        certificate: PathBuf,
        /// The CA file.
        ca: PathBuf,
        /// The app it should be for.
        app: String,
        /// What the check found.
        #[source]
        source: Box<rustls::Error>,
    },
    /// The federation's certificates could not be made.
    #[error("making the federation's certificates")]
    Generate(#[source] Box<TlsError>),
    /// A peer's `address` and `addresses` do not give it one or more addresses to dial.
    #[error("{}peer {app:?}", in_file(path.as_deref()))]
    PeerAddresses {
        /// The configuration file (none for a configuration made in code).
        path: Option<PathBuf>,
        /// The peer's app.
        app: String,
        /// What is wrong.
        #[source]
        source: PeerAddressError,
    },
    /// The `[cluster]` table cannot be used.
    #[error("{}: [cluster]", path.display())]
    Cluster {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: ClusterError,
    },
    /// A configuration could not be written as TOML.
    #[error("{}", path.display())]
    Serialize {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: toml::ser::Error,
    },
}

/// `path: ` for an error's text, or nothing.
fn in_file(path: Option<&Path>) -> String {
    path.map(|path| format!("{}: ", path.display())).unwrap_or_default()
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })
}

/// [`ConfigError::Parse`] for `error` in `text`: its message without any quoted string (serde
/// quotes a string of the wrong type, which may be a connection string), and where it stopped.
/// Never `error`'s `Display`, which quotes the line.
fn parse_error(path: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
    let (line, column) = match error.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
        }
        None => (0, 0),
    };
    ConfigError::Parse { path: path.to_owned(), message: unquoted(error.message().trim()), line, column }
}

/// `message` with the inside of each double-quoted string (backslash escapes included), and of
/// each backquoted one that is not a plain name or a character or two (serde backquotes keys and
/// variants: `kind`, `sqlite` stay), replaced by `…`; a quote left open hides the rest.
fn unquoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '`' {
            let inside: String = chars.by_ref().take_while(|&inner| inner != '`').collect();
            // A character or two (an escape the parser expected: `\\`, `"`) is no secret.
            let plain = inside.chars().count() <= 2 || inside.chars().all(|inner| inner.is_ascii_alphanumeric() || inner == '_' || inner == '-');
            out.push_str(if plain { &inside } else { "…" });
            out.push('`');
        } else if c == '"' {
            out.push('…');
            let mut escaped = false;
            for inner in chars.by_ref() {
                match inner {
                    '"' if !escaped => {
                        out.push('"');
                        break;
                    }
                    '\\' if !escaped => escaped = true,
                    _ => escaped = false,
                }
            }
        }
    }
    out
}

/// Creates `path` holding `contents`, with permissions `mode` on Unix from the moment it exists
/// (a private key is never readable by others, not even briefly), and never over a file that
/// is there already.
fn create(path: &Path, contents: &str, mode: u32) -> Result<(), ConfigError> {
    use std::io::Write as _;
    let failed = |source| ConfigError::Write { path: path.to_owned(), source };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path).and_then(|mut file| file.write_all(contents.as_bytes())).map_err(failed)
}

/// Permissions of the files `setup` writes: private keys (and connection strings) for the
/// relay's eyes only.
const PUBLIC_FILE: u32 = 0o644;
const PRIVATE_KEY_FILE: u32 = 0o600;

impl RelayConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<RelayConfig, ConfigError> {
        let text = read(path)?;
        let mut config: RelayConfig = toml::from_str(&text).map_err(|error| parse_error(path, &text, &error))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut config.data_dir);
        resolve(&mut config.certificate);
        resolve(&mut config.private_key);
        resolve(&mut config.ca_certificate);
        for peer in &mut config.peers {
            resolve(&mut peer.certificate);
            peer.federation_addresses().map_err(|source| ConfigError::PeerAddresses { path: Some(path.to_owned()), app: peer.app.clone(), source })?;
        }
        check_shards(&config.storage.mailbox_shards()).map_err(|source| ConfigError::Shards { path: path.to_owned(), source })?;
        if let Some(cluster) = &config.cluster {
            let refused = |source| ConfigError::Cluster { path: path.to_owned(), source };
            if config.storage.is_redb() {
                return Err(refused(ClusterError::NotPostgres));
            }
            check_peer_addresses(&cluster.nodes).map_err(|error| refused(ClusterError::Nodes(error)))?;
            if !cluster.nodes.contains(&cluster.node_listen) {
                return Err(refused(ClusterError::NotListed(cluster.node_listen)));
            }
        }
        Ok(config)
    }

    /// The settings to start a relay with, the certificates and key read and checked as the
    /// relay and its peers will use them, so that an error names its file: each holds what it
    /// should, the key is the certificate's, and the CA issued the relay's certificate and each
    /// peer's for its app. Each peer has one address or more ([`PeerConfig::federation_addresses`];
    /// [`Self::load`] checked that already, with the file's name).
    pub fn settings(&self) -> Result<RelaySettings, ConfigError> {
        let tls_error = |path: &Path| {
            let path = path.to_owned();
            move |source| ConfigError::Tls { path, source: Box::new(source) }
        };
        let certificate = |path: &Path| {
            let pem = read(path)?;
            certificate_der(&pem).map_err(tls_error(path))?;
            Ok::<_, ConfigError>(pem)
        };
        let private_key = read(&self.private_key)?;
        private_key_der(&private_key).map_err(tls_error(&self.private_key))?;
        let tls = TlsIdentity {
            certificate: certificate(&self.certificate)?,
            private_key,
            ca_certificate: certificate(&self.ca_certificate)?,
        };
        device_server_config(&tls).map_err(|error| match error {
            TlsError::KeyMismatch(source) => {
                ConfigError::KeyMismatch { key: self.private_key.clone(), certificate: self.certificate.clone(), source: Box::new(source) }
            }
            source => ConfigError::Tls { path: self.private_key.clone(), source: Box::new(source) },
        })?;
        let issued = |pem: &str, path: &Path, app: &str| {
            check_issued(pem, &tls.ca_certificate, app).map_err(|error| match error {
                TlsError::NotIssued { source, .. } => ConfigError::NotIssued {
                    certificate: path.to_owned(),
                    ca: self.ca_certificate.clone(),
                    app: app.to_owned(),
                    source: Box::new(source),
                },
                TlsError::Anchor(_) => ConfigError::Tls { path: self.ca_certificate.clone(), source: Box::new(error) },
                source => ConfigError::Tls { path: path.to_owned(), source: Box::new(source) },
            })
        };
        issued(&tls.certificate, &self.certificate, &self.app)?;
        let mut peers = Vec::new();
        for peer in &self.peers {
            let addresses = peer.federation_addresses().map_err(|source| ConfigError::PeerAddresses { path: None, app: peer.app.clone(), source })?;
            let pem = certificate(&peer.certificate)?;
            issued(&pem, &peer.certificate, &peer.app)?;
            peers.push(Peer { app: peer.app.clone(), addresses, certificate: pem });
        }
        Ok(RelaySettings { app: self.app.clone(), tls, peers, seed: None, tap: None, rate_limits: Default::default() })
    }
}

/// The node files [`write_federation`] writes for an app: `<app>.toml` for the first node,
/// `<app>-<k>.toml` for node k from 2.
pub fn node_file(app: &str, node: usize) -> String {
    match node {
        0 | 1 => format!("{app}.toml"),
        k => format!("{app}-{k}.toml"),
    }
}

/// The ports [`write_federation`] takes per app: two per app of one node (devices, other
/// relays); three per node for an app of several (devices, other relays, other nodes).
pub fn ports_per_app(nodes: usize) -> usize {
    if nodes <= 1 { 2 } else { 3 * nodes }
}

/// Writes a federation's files into `dir`: a CA, a certificate and key per app, and a
/// configuration per node of each app ([`node_file`]), each keeping its state in `storage`
/// (made the app's with [`StorageConfig::for_app`]). `ports` gives [`ports_per_app`] ports of
/// 127.0.0.1 per app, in the order of `apps`: with one node, the app at index i listens for
/// clients on `ports[2i]` and for other relays on `ports[2i + 1]`; with `nodes` above 1, each
/// node takes three in turn (devices, other relays, its `[cluster]` `node_listen`), every node's
/// file lists every node of its app in `[cluster]`, and other apps' relays list every node's
/// federation address. A configuration with a connection string is readable by its owner only:
/// the string may hold a password.
///
/// Several nodes need PostgreSQL ([`ClusterError::NotPostgres`]); `nodes` is 1 to
/// [`MAX_PEER_ADDRESSES`].
pub fn write_federation(dir: &Path, apps: &[&str], ports: &[u16], storage: &StorageConfig, nodes: usize) -> Result<Vec<PathBuf>, ConfigError> {
    assert!((1..=MAX_PEER_ADDRESSES).contains(&nodes), "1 to {MAX_PEER_ADDRESSES} nodes per app");
    let per_app = ports_per_app(nodes);
    assert_eq!(ports.len(), apps.len() * per_app, "{per_app} ports per app");
    if nodes > 1 && storage.is_redb() {
        return Err(ConfigError::Cluster { path: dir.to_owned(), source: ClusterError::NotPostgres });
    }
    let pki = Pki::generate(apps).map_err(|error| ConfigError::Generate(Box::new(error)))?;
    std::fs::create_dir_all(dir).map_err(|source| ConfigError::Write { path: dir.to_owned(), source })?;
    create(&dir.join("ca.pem"), &pki.ca_certificate, PUBLIC_FILE)?;
    let address = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    // App i's node k's port of kind `which` (0 devices, 1 other relays, 2 other nodes).
    let port = |i: usize, k: usize, which: usize| address(ports[i * per_app + k * (per_app / nodes) + which]);
    let mut written = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let (certificate, key) = &pki.apps[*app];
        create(&dir.join(format!("{app}.pem")), certificate, PUBLIC_FILE)?;
        create(&dir.join(format!("{app}.key")), key, PRIVATE_KEY_FILE)?;
        let cluster_nodes: Vec<SocketAddr> = if nodes > 1 { (0..nodes).map(|k| port(i, k, 2)).collect() } else { Vec::new() };
        for k in 0..nodes {
            let peers = apps
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, other)| {
                    let (address, addresses) = match nodes {
                        1 => (Some(port(j, 0, 1)), None),
                        _ => (None, Some((0..nodes).map(|k| port(j, k, 1)).collect())),
                    };
                    PeerConfig { app: other.to_string(), address, addresses, certificate: PathBuf::from(format!("{other}.pem")) }
                })
                .collect();
            let config = RelayConfig {
                app: app.to_string(),
                client_listen: port(i, k, 0),
                federation_listen: port(i, k, 1),
                data_dir: PathBuf::from(match k {
                    0 => format!("{app}-data"),
                    k => format!("{app}-{}-data", k + 1),
                }),
                certificate: PathBuf::from(format!("{app}.pem")),
                private_key: PathBuf::from(format!("{app}.key")),
                ca_certificate: PathBuf::from("ca.pem"),
                peers,
                storage: storage.for_app(app),
                cluster: (nodes > 1).then(|| ClusterConfig { node_listen: cluster_nodes[k], nodes: cluster_nodes.clone() }),
            };
            let path = dir.join(node_file(app, k + 1));
            let text = toml::to_string(&config).map_err(|source| ConfigError::Serialize { path: path.clone(), source })?;
            create(&path, &text, if config.storage.is_redb() { PUBLIC_FILE } else { PRIVATE_KEY_FILE })?;
            written.push(path);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A federation of green and blue written into a fresh folder, and green's configuration.
    fn federation() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        write_federation(dir.path(), &["green", "blue"], &[17_901, 17_902, 17_903, 17_904], &StorageConfig::Redb {}, 1).unwrap();
        let config = dir.path().join("green.toml");
        (dir, config)
    }

    fn settings_error(config: &Path) -> ConfigError {
        RelayConfig::load(config).unwrap().settings().expect_err("the configuration was accepted")
    }

    /// The whole chain, as `switchboard` prints it.
    fn chain(error: &dyn std::error::Error) -> String {
        let mut said = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            said.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        said
    }

    #[test]
    fn a_private_key_is_created_for_its_owner_only_and_nothing_is_written_over() {
        let (dir, _config) = federation();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |name: &str| std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode("green.key"), 0o600);
            assert_eq!(mode("blue.key"), 0o600);
        }
        let key = std::fs::read(dir.path().join("green.key")).unwrap();
        std::fs::remove_file(dir.path().join("ca.pem")).unwrap();
        let error = write_federation(dir.path(), &["green", "blue"], &[17_901, 17_902, 17_903, 17_904], &StorageConfig::Redb {}, 1).expect_err("files are there");
        assert!(matches!(&error, ConfigError::Write { path, source } if path.ends_with("green.pem") && source.kind() == std::io::ErrorKind::AlreadyExists), "{error:?}");
        assert_eq!(std::fs::read(dir.path().join("green.key")).unwrap(), key, "the key was not written over");
    }

    #[test]
    fn written_files_are_accepted() {
        let (_dir, config) = federation();
        let settings = RelayConfig::load(&config).unwrap().settings().unwrap();
        assert_eq!(settings.peers.len(), 1);
        assert_eq!(settings.peers[0].addresses, [SocketAddr::from(([127, 0, 0, 1], 17_904))]);
        // One node per app: written as `address`, as before.
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(text.contains("address = \"127.0.0.1:17904\"") && !text.contains("addresses"), "{text}");
    }

    #[test]
    fn a_peer_has_address_or_addresses_not_both_nor_none() {
        let (dir, config) = federation();
        let original = std::fs::read_to_string(&config).unwrap();
        let single = "address = \"127.0.0.1:17904\"";
        assert!(original.contains(single), "{original}");
        let with = |peer_addresses: &str| {
            let path = dir.path().join("peers.toml");
            std::fs::write(&path, original.replace(single, peer_addresses)).unwrap();
            RelayConfig::load(&path)
        };
        // Several nodes: each dialled, in this order at first.
        let loaded = with("addresses = [\"127.0.0.1:17904\", \"127.0.0.1:17914\"]").unwrap();
        let settings = loaded.settings().unwrap();
        assert_eq!(settings.peers[0].addresses, [SocketAddr::from(([127, 0, 0, 1], 17_904)), SocketAddr::from(([127, 0, 0, 1], 17_914))]);
        // Written back as it was given.
        let text = toml::to_string(&loaded).unwrap();
        assert!(text.contains("addresses = [\"127.0.0.1:17904\", \"127.0.0.1:17914\"]") && !text.contains("address ="), "{text}");
        let too_many = format!("addresses = [{}]", (0..=MAX_PEER_ADDRESSES).map(|i| format!("\"127.0.0.1:{}\"", 20_000 + i)).collect::<Vec<_>>().join(", "));
        for (wrong, problem) in [
            (format!("{single}\naddresses = [\"127.0.0.1:17914\"]"), PeerAddressError::Both),
            (String::new(), PeerAddressError::Neither),
            ("addresses = []".to_owned(), PeerAddressError::Neither),
            (too_many, PeerAddressError::TooMany { given: MAX_PEER_ADDRESSES + 1 }),
            (
                "addresses = [\"127.0.0.1:17904\", \"127.0.0.1:17914\", \"127.0.0.1:17904\"]".to_owned(),
                PeerAddressError::Duplicate { address: SocketAddr::from(([127, 0, 0, 1], 17_904)) },
            ),
        ] {
            let error = with(&wrong).expect_err(&wrong);
            let ConfigError::PeerAddresses { path: Some(path), app, source } = &error else { panic!("{wrong}: {error:?}") };
            assert!(path.ends_with("peers.toml") && app == "blue" && *source == problem, "{wrong}: {error:?}");
            let said = chain(&error);
            assert!(said.contains("peers.toml: peer \"blue\": "), "{said}");
        }
        // A configuration made in code is checked too, when it becomes settings.
        let mut made = RelayConfig::load(&config).unwrap();
        made.peers[0].addresses = Some(vec![SocketAddr::from(([127, 0, 0, 1], 17_914))]);
        let error = made.settings().expect_err("both");
        assert!(matches!(&error, ConfigError::PeerAddresses { path: None, source: PeerAddressError::Both, .. }), "{error:?}");
        assert!(chain(&error).starts_with("peer \"blue\": both"), "{}", chain(&error));
        // A wrong address is the parser's to refuse.
        assert!(matches!(with("addresses = [\"nowhere\"]"), Err(ConfigError::Parse { .. })));
    }

    #[test]
    fn a_file_without_its_pem_is_named() {
        let (dir, config) = federation();
        std::fs::write(dir.path().join("ca.pem"), "").unwrap();
        let error = settings_error(&config);
        assert!(matches!(&error, ConfigError::Tls { path, source } if path.ends_with("ca.pem") && matches!(**source, TlsError::Pem { what: "certificate", .. })), "{error:?}");
        assert!(chain(&error).contains("ca.pem: no certificate in it (PEM): no items found"), "{}", chain(&error));
        std::fs::write(dir.path().join("ca.pem"), std::fs::read(dir.path().join("blue.pem")).unwrap()).unwrap();
        std::fs::write(dir.path().join("green.key"), "junk").unwrap();
        assert!(chain(&settings_error(&config)).contains("green.key: no private key in it"), "{}", chain(&settings_error(&config)));
    }

    #[test]
    fn a_key_of_another_certificate_is_named_with_both_files() {
        let (dir, config) = federation();
        std::fs::copy(dir.path().join("blue.key"), dir.path().join("green.key")).unwrap();
        let error = settings_error(&config);
        assert!(matches!(error, ConfigError::KeyMismatch { .. }), "{error:?}");
        let said = error.to_string();
        assert!(said.contains("green.key is not the private key of") && said.ends_with("green.pem"), "{said}");
    }

    #[test]
    fn a_certificate_of_another_ca_is_named_before_the_relay_starts() {
        // What `setup` run again over a working federation used to leave: a new CA beside
        // certificates of the old one (or the other way round).
        let (dir, config) = federation();
        let other = tempfile::tempdir().unwrap();
        write_federation(other.path(), &["green", "blue"], &[17_901, 17_902, 17_903, 17_904], &StorageConfig::Redb {}, 1).unwrap();
        std::fs::copy(other.path().join("blue.pem"), dir.path().join("blue.pem")).unwrap();
        let error = settings_error(&config);
        assert!(matches!(&error, ConfigError::NotIssued { certificate, app, .. } if certificate.ends_with("blue.pem") && app == "blue"), "{error:?}");
        assert!(error.to_string().contains("was not issued by"), "{error}");
        // A certificate of the right CA but for another app.
        std::fs::copy(dir.path().join("green.pem"), dir.path().join("blue.pem")).unwrap();
        let error = settings_error(&config);
        assert!(matches!(&error, ConfigError::NotIssued { app, .. } if app == "blue"), "{error:?}");
    }

    #[test]
    fn a_missing_file_keeps_its_io_error() {
        let (dir, config) = federation();
        std::fs::remove_file(dir.path().join("green.pem")).unwrap();
        let error = settings_error(&config);
        let source = std::error::Error::source(&error).and_then(|source| source.downcast_ref::<std::io::Error>());
        assert_eq!(source.map(std::io::Error::kind), Some(std::io::ErrorKind::NotFound), "{error:?}");
        assert!(error.to_string().starts_with("reading ") && error.to_string().ends_with("green.pem"), "{error}");
    }

    #[test]
    fn a_parse_error_quotes_no_password() {
        let (dir, config) = federation();
        let original = std::fs::read_to_string(&config).unwrap();
        let wrong = [
            // An invalid escape (\d) in the url: the parser's own error quotes the line.
            "[storage]\nkind = \"postgres\"\nurl = \"host=127.0.0.1 user=sw password=Secr3t\\d! dbname=x\"\n",
            // A string where a table belongs: serde quotes the string.
            "storage = \"host=127.0.0.1 user=sw password=Secr3t dbname=x\"\n",
            // The url under the wrong key: serde quotes the variant it does not know.
            "[storage]\nkind = \"host=127.0.0.1 password=Secr3t\"\n",
        ];
        for (i, wrong) in wrong.iter().enumerate() {
            let path = dir.path().join(format!("wrong-{i}.toml"));
            std::fs::write(&path, format!("{original}\n{wrong}")).unwrap();
            let error = RelayConfig::load(&path).expect_err("not valid");
            let ConfigError::Parse { line, column, .. } = &error else { panic!("{error:?}") };
            assert!(*line > 1 && *column >= 1, "{error}");
            let mut said = format!("{error} / {error:#} / {error:?}");
            let mut source: Option<&dyn std::error::Error> = Some(&error);
            while let Some(error) = source {
                said.push_str(&format!(" / {error}"));
                source = error.source();
            }
            assert!(!said.contains("Secr3t"), "{said}");
            assert!(said.contains(&format!("wrong-{i}.toml:{line}:")), "{said}");
        }
        assert_eq!(unquoted(r#"invalid type: string "a\"b", expected x "c"#), r#"invalid type: string "…", expected x "…"#);
        assert_eq!(unquoted("unknown variant `a b`, expected `redb` or `postgres`"), "unknown variant `…`, expected `redb` or `postgres`");
    }

    #[test]
    fn a_config_without_storage_is_redb_and_postgres_is_read_and_written_back() {
        let (dir, config) = federation();
        let green = RelayConfig::load(&config).unwrap();
        assert_eq!(green.storage, StorageConfig::Redb {});
        assert!(!std::fs::read_to_string(&config).unwrap().contains("[storage]"), "the default is not written");
        let secret = "host=127.0.0.1 user=relay password=hunter2 dbname=green";
        let original = std::fs::read_to_string(&config).unwrap();
        let text = format!("{original}\n[storage]\nkind = \"postgres\"\nurl = \"{secret}\"\n");
        std::fs::write(&config, text).unwrap();
        let loaded = RelayConfig::load(&config).unwrap();
        assert_eq!(loaded.storage, StorageConfig::Postgres { url: ConnectionString::new(secret), shards: Vec::new() });
        assert!(!format!("{loaded:?}").contains("hunter2"), "{loaded:?}");
        for wrong in ["kind = \"sqlite\"", "kind = \"postgres\"", "kind = \"redb\"\nurl = \"x\""] {
            std::fs::write(&config, format!("{original}\n[storage]\n{wrong}\n")).unwrap();
            assert!(matches!(RelayConfig::load(&config), Err(ConfigError::Parse { .. })), "{wrong}");
        }
        std::fs::write(&config, format!("{original}\n[storage]\nkind = \"redb\"\n")).unwrap();
        assert_eq!(RelayConfig::load(&config).unwrap().storage, StorageConfig::Redb {});
        // Mailbox shards: read, written back, and a map taking a bucket twice refused.
        let shard = |url: &str, buckets: &str| format!("[[storage.shards]]\nurl = \"{url}\"\nbuckets = \"{buckets}\"\n");
        let sharded = format!("{original}\n[storage]\nkind = \"postgres\"\nurl = \"{secret}\"\n{}{}", shard("host=a password=hunter3", "128-255"), shard("host=b", "7"));
        std::fs::write(&config, &sharded).unwrap();
        let loaded = RelayConfig::load(&config).unwrap();
        let buckets: Vec<_> = loaded.storage.mailbox_shards().into_iter().map(|shard| shard.buckets).collect();
        assert_eq!(buckets, [128..=255, 7..=7]);
        assert!(!format!("{loaded:?}").contains("hunter3"), "{loaded:?}");
        assert_eq!(toml::from_str::<RelayConfig>(&toml::to_string(&loaded).unwrap()).unwrap().storage, loaded.storage);
        for (wrong, parse_error) in [("128-256", true), ("x", true), ("9-3", false), ("255", false)] {
            std::fs::write(&config, format!("{sharded}{}", shard("host=c", wrong))).unwrap();
            match RelayConfig::load(&config) {
                Err(ConfigError::Parse { .. }) if parse_error => {}
                Err(ConfigError::Shards { .. }) if !parse_error => {}
                other => panic!("{wrong}: {other:?}"),
            }
        }
        // Written by setup: each app its database, the file its owner's only.
        let written = dir.path().join("written");
        let storage = StorageConfig::Postgres { url: ConnectionString::new("host=/run/postgresql dbname=relay_{app}"), shards: Vec::new() };
        write_federation(&written, &["green", "blue"], &[17_901, 17_902, 17_903, 17_904], &storage, 1).unwrap();
        let blue = RelayConfig::load(&written.join("blue.toml")).unwrap();
        assert_eq!(blue.storage, StorageConfig::Postgres { url: ConnectionString::new("host=/run/postgresql dbname=relay_blue"), shards: Vec::new() });
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(written.join("blue.toml")).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn a_cluster_is_written_node_by_node_and_a_cluster_table_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let storage = StorageConfig::Postgres { url: ConnectionString::new("host=/run/postgresql dbname=relay_{app}"), shards: Vec::new() };
        let ports: Vec<u16> = (17_901..17_913).collect();
        let written = write_federation(dir.path(), &["green", "blue"], &ports, &storage, 2).unwrap();
        let names: Vec<String> = written.iter().map(|path| path.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["green.toml", "green-2.toml", "blue.toml", "blue-2.toml"]);
        let address = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let green_2 = RelayConfig::load(&dir.path().join("green-2.toml")).unwrap();
        assert_eq!((green_2.client_listen, green_2.federation_listen), (address(17_904), address(17_905)));
        assert_eq!(green_2.cluster, Some(ClusterConfig { node_listen: address(17_906), nodes: vec![address(17_903), address(17_906)] }));
        assert_eq!(green_2.cluster.as_ref().unwrap().other_nodes(), [address(17_903)]);
        assert_eq!(green_2.peers[0].federation_addresses().unwrap(), [address(17_908), address(17_911)]);
        green_2.settings().unwrap();
        // Several nodes share a database: not on redb.
        let redb = tempfile::tempdir().unwrap();
        let error = write_federation(redb.path(), &["green"], &ports[..6], &StorageConfig::Redb {}, 2).expect_err("redb");
        assert!(matches!(error, ConfigError::Cluster { source: ClusterError::NotPostgres, .. }), "{error:?}");
        // A [cluster] table read back: its own address listed, no address twice, PostgreSQL.
        let path = dir.path().join("green.toml");
        let original = std::fs::read_to_string(&path).unwrap();
        let cluster_at = original.find("[cluster]").unwrap();
        let cases = [
            ("[cluster]\nnode_listen = \"127.0.0.1:1\"\nnodes = [\"127.0.0.1:2\"]\n", "does not list"),
            ("[cluster]\nnode_listen = \"127.0.0.1:1\"\nnodes = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n", "`nodes`"),
            ("[cluster]\nnode_listen = \"127.0.0.1:1\"\nnodes = []\n", "`nodes`"),
        ];
        for (table, said) in cases {
            std::fs::write(&path, format!("{}{table}", &original[..cluster_at])).unwrap();
            let error = RelayConfig::load(&path).expect_err(table);
            assert!(chain(&error).contains(said), "{table}: {}", chain(&error));
        }
        let without_storage = original[..cluster_at].replace("[storage]", "[unused]");
        let without_storage = &without_storage[..without_storage.find("[unused]").unwrap()];
        std::fs::write(&path, format!("{without_storage}{}", &original[cluster_at..])).unwrap();
        let error = RelayConfig::load(&path).expect_err("a cluster on redb");
        assert!(matches!(error, ConfigError::Cluster { source: ClusterError::NotPostgres, .. }), "{error:?}");
    }
}
