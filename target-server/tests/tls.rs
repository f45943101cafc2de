//! HTTPS: the real binary with `--tls-cert/--tls-key` serves the same routes
//! over TLS to a client that trusts only the test CA; bad certificate or key
//! files are one clear line and a failed exit, never a panic.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use volley_testkit::{PemDir, TestCa, spawn_target};

const BIN: &str = env!("CARGO_BIN_EXE_target-server");

/// A CA, and in a temporary directory its PEM plus a certificate it signed
/// for localhost and 127.0.0.1 with that certificate's key.
struct Pki {
    dir: PemDir,
    ca_pem: String,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = PemDir::new(&format!("target-tls-{tag}"));
        let ca = TestCa::new();
        let leaf = ca.leaf(&["localhost"]).ip(Ipv4Addr::LOCALHOST).sign();
        dir.write("cert.pem", &leaf.cert_pem);
        dir.write("key.pem", &leaf.key_pem);
        // A key that does not fit cert.pem (it belongs to a certificate thrown away).
        dir.write("other-key.pem", ca.leaf(&["localhost"]).sign().key_pem);
        dir.write("junk.pem", "not PEM at all");
        Pki { dir, ca_pem: ca.pem() }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path(name)
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

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).stdout(Stdio::null()).output().expect("run target-server")
}

#[test]
fn the_binary_serves_https_with_the_given_certificate() {
    let pki = Pki::new("serve");
    let target =
        spawn_target(BIN, &["--threads", "1", "--tls-cert", &pki.path("cert.pem"), "--tls-key", &pki.path("key.pem")]);
    let line = &target.ready_line;
    assert_eq!(
        line.strip_prefix("listening on https://"),
        Some(target.addr.as_str()),
        "unexpected first line {line:?}"
    );
    let addr = target.socket_addr();

    let hello = pki.get(addr, "/hello");
    assert!(hello.starts_with("HTTP/1.1 200 "), "{hello}");
    assert!(hello.ends_with("Hello World!"), "{hello}");
    let missing = pki.get(addr, "/nowhere");
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    // The same counters as over plain HTTP.
    let stats = pki.get(addr, "/stats");
    assert!(stats.contains("\"total\":2"), "{stats}");
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
