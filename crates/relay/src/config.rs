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
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use rustls::pki_types::pem::PemObject;

use crate::server::tls::{Pki, TlsIdentity, certificate_der};
use crate::server::{Peer, RelaySettings};

/// What a configuration file says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    pub app: String,
    pub client_listen: SocketAddr,
    pub federation_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    pub ca_certificate: PathBuf,
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
}

/// Another app's relay, as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub app: String,
    pub address: SocketAddr,
    pub certificate: PathBuf,
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{path}: {error}")]
    Parse { path: PathBuf, error: String },
    #[error("writing {path}: {error}")]
    Write { path: PathBuf, error: std::io::Error },
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_owned(), error })
}

fn write(path: &Path, contents: &str) -> Result<(), ConfigError> {
    std::fs::write(path, contents).map_err(|error| ConfigError::Write { path: path.to_owned(), error })
}

impl RelayConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<RelayConfig, ConfigError> {
        let text = read(path)?;
        let mut config: RelayConfig =
            toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), error: e.to_string() })?;
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
        }
        Ok(config)
    }

    /// The settings to start a relay with (reading the certificates and key).
    /// Each certificate is checked to hold one, so that an error names its file.
    pub fn settings(&self) -> Result<RelaySettings, ConfigError> {
        let certificate = |path: &Path| {
            let pem = read(path)?;
            certificate_der(&pem).map_err(|e| ConfigError::Parse { path: path.to_owned(), error: e.to_string() })?;
            Ok::<_, ConfigError>(pem)
        };
        let private_key = read(&self.private_key)?;
        rustls::pki_types::PrivateKeyDer::from_pem_slice(private_key.as_bytes())
            .map_err(|e| ConfigError::Parse { path: self.private_key.clone(), error: format!("no private key: {e}") })?;
        let tls = TlsIdentity {
            certificate: certificate(&self.certificate)?,
            private_key,
            ca_certificate: certificate(&self.ca_certificate)?,
        };
        let peers = self
            .peers
            .iter()
            .map(|peer| Ok(Peer { app: peer.app.clone(), address: peer.address, certificate: certificate(&peer.certificate)? }))
            .collect::<Result<_, ConfigError>>()?;
        Ok(RelaySettings { app: self.app.clone(), tls, peers, seed: None, tap: None, rate_limits: Default::default() })
    }
}

/// Writes a federation's files into `dir`: a CA, a certificate and key per app, and a
/// configuration per app (`<app>.toml`), the app at index i listening for clients on
/// `ports[2i]` and for other relays on `ports[2i + 1]` of 127.0.0.1.
pub fn write_federation(dir: &Path, apps: &[&str], ports: &[u16]) -> Result<Vec<PathBuf>, ConfigError> {
    assert_eq!(ports.len(), apps.len() * 2, "two ports per app");
    let pki = Pki::generate(apps).map_err(|e| ConfigError::Parse { path: dir.to_owned(), error: e.to_string() })?;
    std::fs::create_dir_all(dir).map_err(|error| ConfigError::Write { path: dir.to_owned(), error })?;
    write(&dir.join("ca.pem"), &pki.ca_certificate)?;
    let address = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let mut written = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let (certificate, key) = &pki.apps[*app];
        write(&dir.join(format!("{app}.pem")), certificate)?;
        let key_path = dir.join(format!("{app}.key"));
        write(&key_path, key)?;
        // A private key is for the relay's eyes only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
                .map_err(|error| ConfigError::Write { path: key_path.clone(), error })?;
        }
        let config = RelayConfig {
            app: app.to_string(),
            client_listen: address(ports[2 * i]),
            federation_listen: address(ports[2 * i + 1]),
            data_dir: PathBuf::from(format!("{app}-data")),
            certificate: PathBuf::from(format!("{app}.pem")),
            private_key: PathBuf::from(format!("{app}.key")),
            ca_certificate: PathBuf::from("ca.pem"),
            peers: apps
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, other)| PeerConfig {
                    app: other.to_string(),
                    address: address(ports[2 * j + 1]),
                    certificate: PathBuf::from(format!("{other}.pem")),
                })
                .collect(),
        };
        let path = dir.join(format!("{app}.toml"));
        let text = toml::to_string(&config).map_err(|e| ConfigError::Parse { path: path.clone(), error: e.to_string() })?;
        write(&path, &text)?;
        written.push(path);
    }
    Ok(written)
}
