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
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(pub String);

fn tls_error(error: impl std::fmt::Display) -> TlsError {
    TlsError(error.to_string())
}

/// A CA and one certificate per app, made for a demo or a test federation.
#[derive(Clone)]
pub struct Pki {
    pub ca_certificate: String,
    /// app → (certificate PEM, private key PEM)
    pub apps: BTreeMap<String, (String, String)>,
}

impl Pki {
    /// A fresh CA and a certificate for each of `apps` (its name as the DNS subject name).
    pub fn generate(apps: &[&str]) -> Result<Pki, TlsError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "Switchboard federation CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(tls_error)?).map_err(tls_error)?;
        let mut issued = BTreeMap::new();
        for app in apps {
            let mut params = CertificateParams::new(vec![app.to_string()]).map_err(tls_error)?;
            params.distinguished_name.push(DnType::CommonName, *app);
            let key = KeyPair::generate().map_err(tls_error)?;
            let certificate = params.signed_by(&key, &ca).map_err(tls_error)?;
            issued.insert(app.to_string(), (certificate.pem(), key.serialize_pem()));
        }
        Ok(Pki { ca_certificate: ca.pem(), apps: issued })
    }
}

/// One relay's TLS material, as PEM.
#[derive(Clone)]
pub struct TlsIdentity {
    pub certificate: String,
    pub private_key: String,
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
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(tls_error)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(identity: &TlsIdentity) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(certificate_der(&identity.ca_certificate)?).map_err(tls_error)?;
    Ok(roots)
}

fn chain_and_key(identity: &TlsIdentity) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = vec![certificate_der(&identity.certificate)?];
    let key = PrivateKeyDer::from_pem_slice(identity.private_key.as_bytes()).map_err(tls_error)?;
    Ok((chain, key))
}

/// The configuration of the federation listener: it requires a client certificate from the CA.
pub fn server_config(identity: &TlsIdentity) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(identity)?), provider())
        .build()
        .map_err(tls_error)?;
    let (chain, key) = chain_and_key(identity)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls_error)?;
    Ok(Arc::new(config))
}

/// The configuration of the device listener: the relay's certificate, no client certificate (a
/// device authenticates with its credential, inside the session).
pub fn device_server_config(identity: &TlsIdentity) -> Result<Arc<ServerConfig>, TlsError> {
    let (chain, key) = chain_and_key(identity)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_error)?;
    Ok(Arc::new(config))
}

/// The configuration for dialing other relays: their certificate must come from the CA and name
/// the app dialed; ours goes with every connection.
pub fn client_config(identity: &TlsIdentity) -> Result<Arc<ClientConfig>, TlsError> {
    let (chain, key) = chain_and_key(identity)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(roots(identity)?)
        .with_client_auth_cert(chain, key)
        .map_err(tls_error)?;
    Ok(Arc::new(config))
}
