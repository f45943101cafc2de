//! HTTPS: the real binary with `--tls-cert/--tls-key` serves the same routes
//! over TLS to a client that trusts only the test CA; bad certificate or key
//! files are one clear line and a failed exit, never a panic.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;

const BIN: &str = env!("CARGO_BIN_EXE_target-server");

/// A CA, and in a temporary directory its PEM plus a certificate it signed
/// for localhost and 127.0.0.1 with that certificate's key.
struct Pki {
    dir: PathBuf,
    ca_pem: String,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("volley-target-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let cert = params.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        // A key that belongs to no certificate here.
        std::fs::write(dir.join("other-key.pem"), KeyPair::generate().unwrap().serialize_pem()).unwrap();
        std::fs::write(dir.join("junk.pem"), "not PEM at all").unwrap();
        Pki { dir, ca_pem: ca.pem() }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// One `GET` over a fresh TLS connection that trusts only the test CA.
    fn get(&self, addr: SocketAddr, path: &str) -> String {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(addr).unwrap());
        write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = Vec::new();
        // The server may close without close_notify; what arrived is enough.
        let _ = tls.read_to_end(&mut out);
        String::from_utf8(out).unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).stdout(Stdio::null()).output().expect("run target-server")
}

#[test]
fn the_binary_serves_https_with_the_given_certificate() {
    let pki = Pki::new("serve");
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--threads", "1", "--tls-cert", &pki.path("cert.pem")])
        .args(["--tls-key", &pki.path("key.pem")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn target-server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read the listening line");
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on https://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("an address");

    let hello = pki.get(addr, "/hello");
    assert!(hello.starts_with("HTTP/1.1 200 "), "{hello}");
    assert!(hello.ends_with("Hello World!"), "{hello}");
    let missing = pki.get(addr, "/nowhere");
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    // The same counters as over plain HTTP.
    let stats = pki.get(addr, "/stats");
    assert!(stats.contains("\"total\":2"), "{stats}");

    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn bad_certificate_or_key_files_are_one_clear_line() {
    let pki = Pki::new("bad");
    let cases = [
        (pki.path("missing.pem"), pki.path("key.pem"), "--tls-cert: cannot read"),
        (pki.path("cert.pem"), pki.path("missing.pem"), "--tls-key: cannot read"),
        (pki.path("junk.pem"), pki.path("key.pem"), "no certificate"),
        (pki.path("cert.pem"), pki.path("junk.pem"), "no PEM private key"),
        (pki.path("cert.pem"), pki.path("other-key.pem"), "do not fit"),
    ];
    for (cert, key, needle) in cases {
        // --dry-run reads and checks the files too.
        for dry in [&[][..], &["--dry-run"][..]] {
            let mut args = vec!["--listen", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &key];
            args.extend_from_slice(dry);
            let out = run(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(err.starts_with("target-server: ") && err.contains(needle), "{args:?}: {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    // One without the other is a usage error from the flag parser.
    let out = run(&["--listen", "127.0.0.1:0", "--tls-cert", &pki.path("cert.pem")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}
