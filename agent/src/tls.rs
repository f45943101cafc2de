//! TLS for `https://` targets on the lean HTTP/1.1 path: one client
//! configuration per run (roots, the controller's extra CA, or no checks at
//! all when asked), shared by every connection.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use volley_stats::ErrorClass;

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
        TlsTarget::with_alpn(host, ca_pem, insecure, false)
    }

    /// [`TlsTarget::new`], offering only `h2` by ALPN when `http2` (else `http/1.1`).
    pub fn with_alpn(host: &str, ca_pem: &[u8], insecure: bool, http2: bool) -> Result<TlsTarget, String> {
        // The name and CA rules are the contract's: the controller checks
        // `--target-ca` with the same ones.
        let name = volley_proto::tls::server_name(host).map_err(|e| e.to_string())?;
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut config = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(danger::AcceptAnyCertificate(provider())))
                .with_no_client_auth()
        } else {
            let mut roots = volley_proto::tls::ca_roots(ca_pem).map_err(|e| e.to_string())?;
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        config.alpn_protocols = vec![if http2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
        Ok(TlsTarget { connector: tokio_rustls::TlsConnector::from(Arc::new(config)), name })
    }
}

/// The class of an I/O error from a TLS handshake. A rustls error (a
/// certificate not trusted, no common version, a record that is not TLS) is
/// `tls`, and so is the server hanging up mid-handshake: that is how a server
/// that does not speak TLS, or will not serve our name, usually answers, and a
/// TCP connection cannot otherwise end before it has begun. Anything else
/// (a reset, say) keeps its I/O class.
pub(crate) fn handshake_error_class(e: &std::io::Error) -> ErrorClass {
    let inner = innermost_io(e);
    if wraps_rustls(e) || inner.kind() == std::io::ErrorKind::UnexpectedEof {
        ErrorClass::Tls
    } else {
        ErrorClass::of_io(inner)
    }
}

/// The innermost I/O error wrapped in `e`. hyper's connector wraps
/// tokio-rustls's error in another, and `io::Error::source` skips the error
/// it wraps, so a walk along `source` never sees the inner one's kind.
pub(crate) fn innermost_io(e: &std::io::Error) -> &std::io::Error {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<std::io::Error>()) {
        Some(inner) => innermost_io(inner),
        None => e,
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

/// `-k/--target-insecure`, kept in a module of its own so that every use
/// reads `danger::`: a verifier that trusts whoever answers.
mod danger {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    /// Accepts any certificate for any name, still checking that the
    /// handshake's signatures are sound (so the session keys are the peer's).
    /// For test targets only.
    #[derive(Debug)]
    pub(super) struct AcceptAnyCertificate(pub(super) Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAnyCertificate {
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
}

/// A throwaway CA and a server certificate it signed, for tests that talk
/// TLS to an in-process target-server.
#[cfg(test)]
pub(crate) mod test_pki {
    use std::net::{IpAddr, Ipv4Addr};

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};

    pub(crate) struct Pki {
        pub(crate) ca_pem: String,
        pub(crate) cert_pem: String,
        pub(crate) key_pem: String,
    }

    /// A CA, and a certificate from it for `names` plus 127.0.0.1.
    pub(crate) fn pki(names: &[&str]) -> Pki {
        // rcgen only fails on bad parameters, and these are fixed.
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let cert = params.signed_by(&key, &ca).unwrap();
        Pki { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    impl Pki {
        /// A target-server on 127.0.0.1 serving HTTPS with this certificate.
        pub(crate) fn server(&self) -> target_server::ServerHandle {
            let tls = target_server::tls_config(self.cert_pem.as_bytes(), self.key_pem.as_bytes()).unwrap();
            target_server::start_tls(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), 1, tls).unwrap()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_config_trusts_the_given_cas_and_speaks_http1() {
        let a = test_pki::pki(&["localhost"]);
        let b = test_pki::pki(&["localhost"]);
        // Two CAs in one file: both are taken.
        let both = format!("{}{}", a.ca_pem, b.ca_pem);
        let t = TlsTarget::new("localhost", both.as_bytes(), false).unwrap();
        assert_eq!(t.connector.config().alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert_eq!(t.name, ServerName::try_from("localhost").unwrap());
        // An IP address is a name too (sent as no SNI, checked against the IP SAN).
        assert!(TlsTarget::new("127.0.0.1", b"", false).is_ok());
        // Clones share the one configuration: connections cost no new one.
        let c = t.clone();
        assert!(Arc::ptr_eq(t.connector.config(), c.connector.config()));
    }

    #[test]
    fn bad_cas_and_names_are_refused_with_a_reason() {
        let err = |pem: &str| TlsTarget::new("localhost", pem.as_bytes(), false).unwrap_err();
        assert!(err("junk").contains("no PEM certificate"), "{}", err("junk"));
        let key_only = test_pki::pki(&["localhost"]).key_pem;
        assert!(err(&key_only).contains("no PEM certificate"), "{}", err(&key_only));
        let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(err(bad_base64).contains("not PEM"), "{}", err(bad_base64));
        let not_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(err(not_der).contains("not a usable certificate"), "{}", err(not_der));
        // -k skips the CA entirely, so even junk does not matter there.
        assert!(TlsTarget::new("localhost", b"junk", true).is_ok());
        let e = TlsTarget::new("bad name!", b"", false).unwrap_err();
        assert!(e.contains("not a TLS server name"), "{e}");
    }

    #[test]
    fn rustls_errors_are_found_inside_io_errors() {
        use std::io::{Error, ErrorKind};
        let tls = || rustls::Error::General("x".into());
        assert!(wraps_rustls(&Error::new(ErrorKind::InvalidData, tls())));
        assert!(wraps_rustls(&Error::other(Error::new(ErrorKind::InvalidData, tls()))));
        assert!(!wraps_rustls(&Error::new(ErrorKind::InvalidData, "not tls")));
        assert!(!wraps_rustls(&Error::from(ErrorKind::ConnectionReset)));

        let class = |e: Error| handshake_error_class(&e);
        assert_eq!(class(Error::other(tls())), ErrorClass::Tls);
        assert_eq!(class(Error::new(ErrorKind::UnexpectedEof, "tls handshake eof")), ErrorClass::Tls);
        assert_eq!(class(Error::from(ErrorKind::ConnectionReset)), ErrorClass::Reset);
        // As hyper's connector hands it on: wrapped once more, as `Other`.
        let eof = || Error::new(ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(class(Error::other(eof())), ErrorClass::Tls);
        assert_eq!(innermost_io(&Error::other(Error::other(eof()))).kind(), ErrorKind::UnexpectedEof);
    }
}
