//! TLS on every link. Each app has a certificate for its own name, issued by a CA the federation
//! shares. Between relays TLS is mutual: a relay accepts a connection only from a certificate it
//! has configured for a peer app, and that certificate is what says which app is speaking, so no
//! one can inject envelopes in an app's name without that app's private key. Devices check the
//! same certificate (issued by the CA they were given, for their app's name) and prove who they
//! are with their credential inside the session.

use std::collections::BTreeMap;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why TLS material could not be used. Each keeps the error underneath as its source; none names
/// a file (the caller knows which it read: see [`crate::config::ConfigError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The PEM text holds no `what` (a certificate, a private key), or does not parse.
    #[error("no {what} in it (PEM)")]
    Pem {
        /// What was looked for.
        what: &'static str,
        /// Why the PEM text gave none.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate authority's certificate cannot serve to check others.
    #[error("the certificate authority's certificate cannot be used to check others")]
    Anchor(#[source] rustls::Error),
    /// The private key is not the one of the certificate it goes with.
    #[error("the private key does not match the certificate")]
    KeyMismatch(#[source] rustls::Error),
    /// A certificate was not issued by the certificate authority for the name it must carry (an
    /// app's name), or is not valid now.
    #[error("not issued by the certificate authority for {name:?}")]
    NotIssued {
        /// The name the certificate must carry.
        name: String,
        /// What the check found.
        #[source]
        source: rustls::Error,
    },
    /// `0` cannot be a certificate's name (an app's name is letters, digits and `-`).
    #[error("{0:?} cannot be a certificate's name")]
    Name(String),
    /// rustls refused the configuration for another reason.
    #[error("the TLS configuration")]
    Config(#[source] rustls::Error),
    /// The verifier of other relays' certificates could not be built.
    #[error("the verifier of other relays' certificates")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    /// A key or certificate could not be made.
    #[error("making certificates")]
    Generate(#[source] rcgen::Error),
}

/// A rustls refusal of a certificate and key, told apart: a key that is not the certificate's.
fn config_error(error: rustls::Error) -> TlsError {
    match error {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch(error),
        error => TlsError::Config(error),
    }
}

/// A CA and one certificate per app, made for a demo or a test federation.
#[derive(Clone)]
pub struct Pki {
    /// The CA's certificate (PEM): what devices and relays check the others' certificates with.
    pub ca_certificate: String,
    /// app → (certificate PEM, private key PEM)
    pub apps: BTreeMap<String, (String, String)>,
}

impl Pki {
    /// A fresh CA and a certificate for each of `apps` (its name as the DNS subject name).
    pub fn generate(apps: &[&str]) -> Result<Pki, TlsError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(TlsError::Generate)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "Switchboard federation CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(TlsError::Generate)?).map_err(TlsError::Generate)?;
        let mut issued = BTreeMap::new();
        for app in apps {
            ServerName::try_from(app.to_string()).map_err(|_| TlsError::Name(app.to_string()))?;
            let mut params = CertificateParams::new(vec![app.to_string()]).map_err(TlsError::Generate)?;
            params.distinguished_name.push(DnType::CommonName, *app);
            let key = KeyPair::generate().map_err(TlsError::Generate)?;
            let certificate = params.signed_by(&key, &ca).map_err(TlsError::Generate)?;
            issued.insert(app.to_string(), (certificate.pem(), key.serialize_pem()));
        }
        Ok(Pki { ca_certificate: ca.pem(), apps: issued })
    }
}

/// One relay's TLS material, as PEM.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The relay's certificate, for its app's name, issued by the CA.
    pub certificate: String,
    /// The certificate's private key.
    pub private_key: String,
    /// The federation's CA: the issuer of every relay's certificate.
    pub ca_certificate: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("apps", &self.apps.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsIdentity(<certificate and private key>)")
    }
}

/// The DER of the first certificate in `pem`.
pub fn certificate_der(pem: &str) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|source| TlsError::Pem { what: "certificate", source })
}

/// The private key in `pem`.
pub fn private_key_der(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|source| TlsError::Pem { what: "private key", source })
}

/// Checks that `certificate` (PEM) was issued by `ca_certificate` (PEM) for `name` and is valid
/// now: what every device and relay will check of it. A relay started with one that is not
/// would be refused by every other.
pub fn check_issued(certificate: &str, ca_certificate: &str, name: &str) -> Result<(), TlsError> {
    use rustls::client::danger::ServerCertVerifier;
    let mut roots = RootCertStore::empty();
    roots.add(certificate_der(ca_certificate)?).map_err(TlsError::Anchor)?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(TlsError::Verifier)?;
    let server_name = ServerName::try_from(name.to_owned()).map_err(|_| TlsError::Name(name.to_owned()))?;
    let now = rustls::pki_types::UnixTime::now();
    verifier
        .verify_server_cert(&certificate_der(certificate)?, &[], &server_name, &[], now)
        .map_err(|source| TlsError::NotIssued { name: name.to_owned(), source })?;
    Ok(())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(identity: &TlsIdentity) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(certificate_der(&identity.ca_certificate)?).map_err(TlsError::Anchor)?;
    Ok(roots)
}

fn chain_and_key(identity: &TlsIdentity) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = vec![certificate_der(&identity.certificate)?];
    let key = private_key_der(&identity.private_key)?;
    Ok((chain, key))
}

/// The configuration of the federation listener: it requires a client certificate from the CA.
pub fn server_config(identity: &TlsIdentity) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(identity)?), provider())
        .build()
        .map_err(TlsError::Verifier)?;
    let (chain, key) = chain_and_key(identity)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(config_error)?;
    Ok(Arc::new(config))
}

/// The configuration of the device listener: the relay's certificate, no client certificate (a
/// device authenticates with its credential, inside the session).
pub fn device_server_config(identity: &TlsIdentity) -> Result<Arc<ServerConfig>, TlsError> {
    let (chain, key) = chain_and_key(identity)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(config_error)?;
    Ok(Arc::new(config))
}

/// The configuration for dialing other relays: their certificate must come from the CA and name
/// the app dialed; ours goes with every connection.
pub fn client_config(identity: &TlsIdentity) -> Result<Arc<ClientConfig>, TlsError> {
    let (chain, key) = chain_and_key(identity)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots(identity)?)
        .with_client_auth_cert(chain, key)
        .map_err(config_error)?;
    Ok(Arc::new(config))
}
