//! TLS for `https://` targets on the lean HTTP/1.1 path: one client
//! configuration per run (roots, the controller's extra CA, or no checks at
//! all when asked), shared by every connection.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// How to open TLS to one target.
#[derive(Clone)]
pub struct TlsTarget {
    /// The run's client configuration.
    pub connector: tokio_rustls::TlsConnector,
    /// The name the certificate must carry (SNI).
    pub name: ServerName<'static>,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTarget").field("name", &self.name).finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsTarget {
    /// TLS to `host`, trusting the web's roots and the certificates in
    /// `ca_pem`; with `insecure`, trusting any certificate.
    pub fn new(host: &str, ca_pem: &[u8], insecure: bool) -> Result<TlsTarget, String> {
        let name =
            ServerName::try_from(host.to_owned()).map_err(|e| format!("{host:?} is not a TLS server name: {e}"))?;
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut config = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider())))
                .with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if !ca_pem.is_empty() {
                let mut added = 0;
                for cert in CertificateDer::pem_slice_iter(ca_pem) {
                    let cert = cert.map_err(|e| format!("the target CA is not PEM: {e}"))?;
                    roots.add(cert).map_err(|e| format!("the target CA is not a usable certificate: {e}"))?;
                    added += 1;
                }
                if added == 0 {
                    return Err("the target CA holds no PEM certificate".into());
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsTarget { connector: tokio_rustls::TlsConnector::from(Arc::new(config)), name })
    }
}

/// Whether an I/O error carries a rustls error, possibly inside other I/O
/// errors (hyper's connector wraps tokio-rustls's error once more).
pub(crate) fn wraps_rustls(e: &std::io::Error) -> bool {
    match e.get_ref() {
        Some(inner) if inner.is::<rustls::Error>() => true,
        Some(inner) => inner.downcast_ref::<std::io::Error>().is_some_and(wraps_rustls),
        None => false,
    }
}

/// `-k/--target-insecure`: accepts any certificate, still checking that
/// the handshake's signatures are sound. For test targets only.
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
