//! What an `https://` target's trust settings must be: a name a certificate
//! can carry, and an extra CA (`target_ca_pem`) that is PEM certificates.
//! The agent builds its TLS client from these; the controller checks
//! `--target-ca` with them, so a bad file stops the run before any agent.

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// Why a target's TLS settings were refused. Each cause's text is part of the
/// message (it is the reason), so it is not also a `source`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetTlsError {
    /// The URL's host cannot be a certificate's name.
    #[error("{host:?} is not a TLS server name: {reason}")]
    ServerName {
        /// The host.
        host: String,
        /// Why not.
        reason: String,
    },
    /// The CA is not PEM.
    #[error("the target CA is not PEM: {reason}")]
    NotPem {
        /// What the PEM reader found.
        reason: String,
    },
    /// A PEM certificate that cannot be a trust anchor.
    #[error("the target CA is not a usable certificate: {reason}")]
    Unusable {
        /// Why not.
        reason: String,
    },
    /// PEM with no certificate in it (a key, say).
    #[error("the target CA holds no PEM certificate")]
    NoCertificate,
}

/// The name the target's certificate must carry (and the SNI sent).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TargetTlsError> {
    ServerName::try_from(host.to_owned())
        .map_err(|e| TargetTlsError::ServerName { host: host.to_owned(), reason: e.to_string() })
}

/// The certificates of `ca_pem` as trust anchors. Empty PEM is no extra CA
/// (an empty store); anything else must hold at least one usable certificate.
pub fn ca_roots(ca_pem: &[u8]) -> Result<RootCertStore, TargetTlsError> {
    let mut roots = RootCertStore::empty();
    if ca_pem.is_empty() {
        return Ok(roots);
    }
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| TargetTlsError::NotPem { reason: e.to_string() })?;
        roots.add(cert).map_err(|e| TargetTlsError::Unusable { reason: e.to_string() })?;
    }
    if roots.is_empty() {
        return Err(TargetTlsError::NoCertificate);
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_cas() {
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("example.com").is_ok());
        assert!(
            server_name("not a name").unwrap_err().to_string().starts_with("\"not a name\" is not a TLS server name")
        );
        assert!(ca_roots(b"").unwrap().is_empty());
        assert_eq!(ca_roots(b"just text").unwrap_err(), TargetTlsError::NoCertificate);
        let bad = b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        assert!(matches!(ca_roots(bad), Err(TargetTlsError::NotPem { .. })), "{:?}", ca_roots(bad));
        let junk = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(ca_roots(junk), Err(TargetTlsError::Unusable { .. })), "{:?}", ca_roots(junk));
        // Two real CAs in one file: both are taken.
        let ca = || {
            use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap().pem()
        };
        assert_eq!(ca_roots(format!("{}{}", ca(), ca()).as_bytes()).unwrap().len(), 2);
    }
}
