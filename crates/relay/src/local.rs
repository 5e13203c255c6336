//! A federation of relays on this machine: one per app, on loopback ports, each with its own
//! database under one folder and a certificate from a freshly made CA. For the demo, tests and
//! benchmarks.

use std::net::SocketAddr;
use std::path::Path;

use tokio::net::TcpListener;

use crate::core::RateLimits;
use crate::server::tls::{Pki, TlsError, TlsIdentity};
use crate::server::{Peer, RelayHandle, RelaySettings, Tap, start};
use crate::storage::{OpenError, RedbStore};

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

/// Relays for `apps`, their databases under `dir` (`dir/<app>.redb`), reopened if they exist.
pub struct LocalFederation {
    /// The relays, in the order of the apps.
    pub relays: Vec<RelayHandle>,
    /// Every frame each relay handled, by app (see [`crate::server::Tap`]).
    pub taps: Vec<(String, Tap)>,
    pki: Pki,
    federation_addresses: Vec<(String, SocketAddr)>,
    rate_limits: RateLimits,
}

impl LocalFederation {
    /// Starts a relay for each of `apps` on loopback ports, with a fresh CA, default rate limits
    /// and the databases under `dir`.
    pub async fn start(apps: &[&str], dir: &Path) -> Result<LocalFederation, StartError> {
        LocalFederation::start_with_rate_limits(apps, dir, RateLimits::default()).await
    }

    /// Like [`Self::start`], with other rate limits: a benchmark registers thousands of devices
    /// from one address.
    pub async fn start_with_rate_limits(apps: &[&str], dir: &Path, rate_limits: RateLimits) -> Result<LocalFederation, StartError> {
        let pki = Pki::generate(apps).map_err(StartError::Certificates)?;
        let mut listeners = Vec::new();
        for app in apps {
            let client = TcpListener::bind("127.0.0.1:0").await.map_err(StartError::Bind)?;
            let federation = TcpListener::bind("127.0.0.1:0").await.map_err(StartError::Bind)?;
            listeners.push((app.to_string(), client, federation));
        }
        let federation_addresses: Vec<(String, SocketAddr)> = listeners
            .iter()
            .map(|(app, _, federation)| Ok((app.clone(), federation.local_addr().map_err(StartError::Bind)?)))
            .collect::<Result<_, StartError>>()?;
        let mut federation = LocalFederation { relays: Vec::new(), taps: Vec::new(), pki, federation_addresses, rate_limits };
        for (app, client, listener) in listeners {
            let tap = Tap::default();
            let relay = federation.start_relay(&app, client, listener, dir, tap.clone()).await?;
            federation.relays.push(relay);
            federation.taps.push((app, tap));
        }
        Ok(federation)
    }

    async fn start_relay(
        &self,
        app: &str,
        client: TcpListener,
        federation: TcpListener,
        dir: &Path,
        tap: Tap,
    ) -> Result<RelayHandle, StartError> {
        let (certificate, private_key) = self.pki.apps[app].clone();
        let peers = self
            .federation_addresses
            .iter()
            .filter(|(other, _)| other != app)
            .map(|(other, address)| Peer { app: other.clone(), address: *address, certificate: self.pki.apps[other].0.clone() })
            .collect();
        let settings = RelaySettings {
            app: app.to_owned(),
            tls: TlsIdentity { certificate, private_key, ca_certificate: self.pki.ca_certificate.clone() },
            peers,
            seed: None,
            tap: Some(tap),
            rate_limits: self.rate_limits,
        };
        let (store, state) = RedbStore::open(&dir.join(format!("{app}.redb"))).map_err(|source| StartError::Store { app: app.to_owned(), source })?;
        let contents = Box::new(store.contents());
        start(settings, client, federation, Box::new(store), contents, state).await.map_err(|source| StartError::Relay { app: app.to_owned(), source })
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

    /// Stops every relay.
    pub async fn shutdown(self) {
        for relay in self.relays {
            relay.shutdown().await;
        }
    }
}
