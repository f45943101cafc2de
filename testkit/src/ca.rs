//! A throwaway certificate authority for tests, and the leaf certificates it
//! signs: `TestCa::new().leaf(&["localhost"]).ip(LOCALHOST).sign()`.
//! [`PemDir`] puts PEM files where a binary's `--tls-*` flags can read them.

use std::net::IpAddr;
use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};

/// A self-signed CA with no constraints.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        // rcgen only fails on bad parameters, and these are fixed.
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        TestCa { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate for the DNS `names`, to be signed by this CA.
    pub fn leaf(&self, names: &[&str]) -> LeafBuilder<'_> {
        LeafBuilder { ca: self, names: names.iter().map(|n| n.to_string()).collect(), ips: vec![], usage: vec![] }
    }
}

/// What a leaf certificate says, before [`LeafBuilder::sign`].
pub struct LeafBuilder<'a> {
    ca: &'a TestCa,
    names: Vec<String>,
    ips: Vec<IpAddr>,
    usage: Vec<ExtendedKeyUsagePurpose>,
}

impl LeafBuilder<'_> {
    /// Also valid for the IP address `ip`.
    pub fn ip(mut self, ip: impl Into<IpAddr>) -> Self {
        self.ips.push(ip.into());
        self
    }

    /// Only for servers (extended key usage `serverAuth`).
    pub fn server_auth(mut self) -> Self {
        self.usage.push(ExtendedKeyUsagePurpose::ServerAuth);
        self
    }

    /// Only for clients (extended key usage `clientAuth`).
    pub fn client_auth(mut self) -> Self {
        self.usage.push(ExtendedKeyUsagePurpose::ClientAuth);
        self
    }

    /// The certificate, signed by the CA, with a fresh key.
    pub fn sign(self) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(self.names).unwrap();
        params.subject_alt_names.extend(self.ips.into_iter().map(SanType::IpAddress));
        params.extended_key_usages = self.usage;
        let cert = params.signed_by(&key, &self.ca.issuer).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

/// A signed certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A temporary directory of files (PEM or other), removed when dropped.
#[derive(Debug)]
pub struct PemDir {
    dir: PathBuf,
}

impl PemDir {
    /// A fresh directory whose name says which test made it.
    pub fn new(tag: &str) -> PemDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("volley-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        PemDir { dir }
    }

    /// Writes `contents` to the file `name`; returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path.display().to_string()
    }

    /// The path of the file `name` in the directory (which need not exist).
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for PemDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
