//! A federation of relays on this machine: one per app, on loopback ports, each with its own
//! database (a redb file under one folder, or a PostgreSQL database) and a certificate from a
//! freshly made CA; optionally each app with front nodes besides (see
//! [`front`](crate::server::front)). For the demo, tests and benchmarks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use tokio::net::TcpListener;

use crate::core::RateLimits;
use crate::server::tls::{Pki, TlsError, TlsIdentity};
use crate::server::{FrontHandle, Peer, RelayHandle, RelaySettings, Tap, start, start_front};
use crate::storage::{MailboxShard, OpenError, StoreError, open_postgres, open_redb};

/// Why the local federation could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Its CA and certificates could not be made.
    #[error("making the local federation's certificates")]
    Certificates(#[source] TlsError),
    /// A loopback port could not be bound.
    #[error("binding a port on 127.0.0.1")]
    Bind(#[source] std::io::Error),
    /// An app's database could not be opened.
    #[error("opening the database of {app}'s relay")]
    Store {
        /// The app.
        app: String,
        /// Why.
        #[source]
        source: OpenError,
    },
    /// An app's PostgreSQL database could not be opened.
    #[error("opening the PostgreSQL database of {app}'s relay")]
    Postgres {
        /// The app.
        app: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// [`LocalStorage::Postgres`] names no database for an app.
    #[error("no PostgreSQL database is named for {app}'s relay")]
    NoDatabase {
        /// The app.
        app: String,
    },
    /// An app's relay could not start.
    #[error("starting {app}'s relay")]
    Relay {
        /// The app.
        app: String,
        /// Why.
        #[source]
        source: crate::server::StartError,
    },
}

/// Where the relays of a [`LocalFederation`] keep their state.
#[derive(Clone, Default)]
pub enum LocalStorage {
    /// A redb file per app under the folder the federation is started with (`<app>.redb`),
    /// reopened if it exists.
    #[default]
    Redb,
    /// A PostgreSQL database per app: its libpq connection string, by app.
    Postgres(HashMap<String, String>),
}

impl std::fmt::Debug for LocalStorage {
    /// The apps, never their connection strings (which may hold a password).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocalStorage::Redb => f.write_str("Redb"),
            LocalStorage::Postgres(urls) => f.debug_tuple("Postgres").field(&urls.keys().collect::<Vec<_>>()).finish(),
        }
    }
}

/// How the relays of a [`LocalFederation`] run.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// Limits on registrations and bundle fetches: a benchmark registers thousands of devices
    /// from one address.
    pub rate_limits: RateLimits,
    /// Whether every frame each relay handles is copied into its [`Tap`] (the demo searches them
    /// for plaintext). A benchmark leaves them out: the copies are not a relay's work.
    pub taps: bool,
    /// Where each relay keeps its state.
    pub storage: LocalStorage,
    /// Nodes per app, 1 or more: the relay, and front nodes that carry what they take to it
    /// (each with listeners of its own; other apps' relays are given every node's federation
    /// address).
    pub nodes: usize,
    /// Per app on PostgreSQL, the databases that take some of its mailboxes (none: all in its
    /// own; see [`MailboxShard`]).
    pub mailbox_shards: HashMap<String, Vec<MailboxShard>>,
}

impl Default for LocalOptions {
    /// Default rate limits, taps, redb, one node per app.
    fn default() -> LocalOptions {
        LocalOptions { rate_limits: RateLimits::default(), taps: true, storage: LocalStorage::Redb, nodes: 1, mailbox_shards: HashMap::new() }
    }
}

/// Relays for `apps`, their databases under a folder (`<app>.redb`, reopened if they exist) or in
/// PostgreSQL (see [`LocalOptions`]).
pub struct LocalFederation {
    /// The relays, in the order of the apps.
    pub relays: Vec<RelayHandle>,
    /// The front nodes, by app (none with one node per app).
    pub fronts: Vec<FrontHandle>,
    /// Every frame each relay handled, by app (see [`crate::server::Tap`]); empty when started
    /// without taps.
    pub taps: Vec<(String, Tap)>,
    pki: Pki,
    /// Every node's federation address, by app, the relay's first.
    federation_addresses: Vec<(String, Vec<SocketAddr>)>,
    options: LocalOptions,
}

impl LocalFederation {
    /// Starts a relay for each of `apps` on loopback ports, with a fresh CA, default rate limits
    /// and the databases under `dir`.
    pub async fn start(apps: &[&str], dir: &Path) -> Result<LocalFederation, StartError> {
        LocalFederation::start_with(apps, dir, LocalOptions::default()).await
    }

    /// Like [`Self::start`], with other options (`dir` is used only for redb).
    pub async fn start_with(apps: &[&str], dir: &Path, options: LocalOptions) -> Result<LocalFederation, StartError> {
        let pki = Pki::generate(apps).map_err(StartError::Certificates)?;
        let bind = || async { TcpListener::bind("127.0.0.1:0").await.map_err(StartError::Bind) };
        // Each app's nodes' listeners (devices, then other relays), the relay's first.
        let mut listeners = Vec::new();
        for app in apps {
            let mut nodes = Vec::new();
            for _ in 0..options.nodes.max(1) {
                nodes.push((bind().await?, bind().await?));
            }
            listeners.push((app.to_string(), nodes));
        }
        let federation_addresses = listeners
            .iter()
            .map(|(app, nodes)| {
                let addresses = nodes.iter().map(|(_, federation)| federation.local_addr().map_err(StartError::Bind)).collect::<Result<_, _>>()?;
                Ok((app.clone(), addresses))
            })
            .collect::<Result<_, StartError>>()?;
        let mut federation = LocalFederation { relays: Vec::new(), fronts: Vec::new(), taps: Vec::new(), pki, federation_addresses, options };
        for (app, nodes) in listeners {
            let tap = federation.options.taps.then(Tap::default);
            let mut nodes = nodes.into_iter();
            let (client, listener) = nodes.next().expect("one node at least");
            let mut relay = federation.start_relay(&app, client, listener, dir, tap.clone()).await?;
            if nodes.len() > 0 {
                let started = |source| StartError::Relay { app: app.clone(), source };
                let node_address = relay.accept_fronts(bind().await?).map_err(started)?;
                for (client, listener) in nodes {
                    let front = start_front(federation.settings(&app, None), client, listener, vec![node_address]).await.map_err(started)?;
                    federation.fronts.push(front);
                }
            }
            federation.relays.push(relay);
            if let Some(tap) = tap {
                federation.taps.push((app, tap));
            }
        }
        for front in &federation.fronts {
            front.linked().await;
        }
        Ok(federation)
    }

    /// The settings of `app`'s relay (and of its front nodes).
    fn settings(&self, app: &str, tap: Option<Tap>) -> RelaySettings {
        let (certificate, private_key) = self.pki.apps[app].clone();
        let peers = self
            .federation_addresses
            .iter()
            .filter(|(other, _)| other != app)
            .map(|(other, addresses)| Peer { app: other.clone(), addresses: addresses.clone(), certificate: self.pki.apps[other].0.clone() })
            .collect();
        RelaySettings {
            app: app.to_owned(),
            tls: TlsIdentity { certificate, private_key, ca_certificate: self.pki.ca_certificate.clone() },
            peers,
            seed: None,
            tap,
            rate_limits: self.options.rate_limits,
        }
    }

    async fn start_relay(
        &self,
        app: &str,
        client: TcpListener,
        federation: TcpListener,
        dir: &Path,
        tap: Option<Tap>,
    ) -> Result<RelayHandle, StartError> {
        let settings = self.settings(app, tap);
        let (store, contents, state) = match &self.options.storage {
            LocalStorage::Redb => open_redb(&dir.join(format!("{app}.redb"))).map_err(|source| StartError::Store { app: app.to_owned(), source })?,
            LocalStorage::Postgres(urls) => {
                let url = urls.get(app).ok_or_else(|| StartError::NoDatabase { app: app.to_owned() })?;
                let shards = self.options.mailbox_shards.get(app).map_or(&[][..], Vec::as_slice);
                open_postgres(url, shards, None).map_err(|source| StartError::Postgres { app: app.to_owned(), source })?
            }
        };
        start(settings, client, federation, store, contents, state).await.map_err(|source| StartError::Relay { app: app.to_owned(), source })
    }

    /// The certificate authority (PEM) that issued every relay's certificate: what devices of
    /// this federation are given to recognise their relay.
    pub fn ca_certificate(&self) -> &str {
        &self.pki.ca_certificate
    }

    /// The relay of `app`.
    pub fn relay(&self, app: &str) -> &RelayHandle {
        self.relays.iter().find(|r| r.app == app).expect("an app of this federation")
    }

    /// Where `app`'s devices may connect: its relay's address, then its front nodes'.
    pub fn client_addresses(&self, app: &str) -> Vec<SocketAddr> {
        let fronts = self.fronts.iter().filter(|front| front.app == app).map(|front| front.client_address);
        std::iter::once(self.relay(app).client_address).chain(fronts).collect()
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for front in self.fronts {
            front.shutdown().await;
        }
        for relay in self.relays {
            relay.shutdown().await;
        }
    }
}
