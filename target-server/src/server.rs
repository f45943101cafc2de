//! Running the server: one OS thread per core, each with its own
//! current-thread tokio runtime and accept loop, and stopping it gracefully.
//!
//! Separate single-threaded runtimes rather than one multi-threaded runtime:
//! a connection then lives on one thread from accept to close, with no work
//! stealing or cross-thread wakeups, which is the cheapest way to serve many
//! small requests. All threads accept on clones of the same listening socket.
//!
//! Each connection speaks HTTP/1.1 or HTTP/2 (hyper-util's auto builder reads
//! the connection preface): h2c with prior knowledge on a plain port, and
//! HTTP/2 chosen by ALPN (`h2`) over TLS, counted alike.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;

use crate::routes::{Stall, Worker, respond};
use crate::stats::{Counters, Stats};

/// How long [`ServerHandle::shutdown`] lets in-flight requests finish before
/// dropping them.
pub const GRACE: Duration = Duration::from_secs(5);

/// How many pending connections the kernel queues; a burst of load-test
/// connections overflows the usual 128.
const BACKLOG: i32 = 1024;

/// A running server. Dropping it shuts the server down just as
/// [`ServerHandle::shutdown`] does, so no server outlives its handle.
pub struct ServerHandle {
    addr: SocketAddr,
    counters: Arc<Counters>,
    demo: Arc<crate::demo::Demo>,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

/// Binds a listening socket on `addr` with a backlog fit for load tests.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket =
        socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    // So a restarted server can bind while the old one's connections linger in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Starts serving on an already-bound listener with `threads` OS threads,
/// each running its own current-thread runtime and accept loop. Returns at
/// once: connections made before the threads run wait in the listen backlog.
pub fn start(listener: TcpListener, threads: usize) -> io::Result<ServerHandle> {
    start_with(listener, threads, None)
}

/// [`start`], serving HTTPS with `tls` (see [`tls_config`]).
pub fn start_tls(listener: TcpListener, threads: usize, tls: Arc<rustls::ServerConfig>) -> io::Result<ServerHandle> {
    start_with(listener, threads, Some(tokio_rustls::TlsAcceptor::from(tls)))
}

/// The TLS settings for a certificate chain and its key, both PEM.
pub fn tls_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate chain: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("no PEM private key in it: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn start_with(
    listener: TcpListener,
    threads: usize,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> io::Result<ServerHandle> {
    if threads == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the server needs at least one thread"));
    }
    let addr = listener.local_addr()?;
    // Clones share one open file, so this makes every thread's copy non-blocking.
    listener.set_nonblocking(true)?;
    let counters = Arc::new(Counters::new(threads));
    let stall = Arc::new(Stall::new());
    let demo = Arc::new(crate::demo::Demo::default());
    let (stop, _) = watch::channel(false);

    // Everything that can fail is done here, before any thread starts, so an
    // error is returned rather than logged from a thread nobody watches.
    let mut workers = Vec::with_capacity(threads);
    for shard in 0..threads {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let listener = {
            // Registering with the I/O driver needs the runtime's context.
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener.try_clone()?)?
        };
        let worker = Arc::new(Worker {
            counters: Arc::clone(&counters),
            shard,
            stall: Arc::clone(&stall),
            demo: Arc::clone(&demo),
        });
        workers.push((runtime, listener, worker));
    }
    drop(listener);

    let mut handle = ServerHandle { addr, counters, demo, stop, threads: Vec::with_capacity(threads) };
    for (shard, (runtime, listener, worker)) in workers.into_iter().enumerate() {
        let stop = handle.stop.subscribe();
        // On error, dropping `handle` stops the threads already started.
        let thread = std::thread::Builder::new().name(format!("target-server-{shard}")).spawn({
            let tls = tls.clone();
            move || runtime.block_on(serve(listener, worker, tls, stop))
        })?;
        handle.threads.push(thread);
    }
    Ok(handle)
}

impl ServerHandle {
    /// The address the server listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the responses served so far.
    pub fn stats(&self) -> Stats {
        let mut stats = self.counters.snapshot();
        self.demo.fill(&mut stats);
        stats
    }

    /// Stops accepting, lets in-flight requests finish for up to [`GRACE`],
    /// then joins the threads. It blocks, so call it from async code through
    /// `tokio::task::spawn_blocking`.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.send_replace(true);
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a server thread panicked");
            }
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// One thread's accept loop, then its graceful shutdown.
async fn serve(
    listener: tokio::net::TcpListener,
    worker: Arc<Worker>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .keep_alive(true)
        // Answer pipelined requests with one write instead of one each.
        .pipeline_flush(true)
        // A load tester may hold idle keep-alive connections between phases;
        // they are its to close. (It also needs no timer this way.)
        .header_read_timeout(None);
    let graceful = GracefulShutdown::new();

    loop {
        let stream = tokio::select! {
            // A dropped sender also means stop: `wait_for` then returns an error.
            _ = stop.wait_for(|&stopped| stopped) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    worker.counters.accepted(peer.ip());
                    stream
                }
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
        };
        // Small responses must leave at once, not wait for Nagle's algorithm.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "could not set TCP_NODELAY");
        }
        let service_worker = Arc::clone(&worker);
        let service = service_fn(move |request| respond(request, &service_worker));
        let Some(acceptor) = &tls else {
            // The connection borrows its builder: each task owns a clone (a few Arcs).
            let (http, watcher) = (http.clone(), graceful.watcher());
            tokio::spawn(async move {
                if let Err(err) = watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await {
                    tracing::debug!(%err, "connection ended with an error");
                }
            });
            continue;
        };
        // HTTPS: the handshake runs in the connection's own task, so a slow
        // or failing client does not hold up the accept loop.
        let (acceptor, http, watcher) = (acceptor.clone(), http.clone(), graceful.watcher());
        tokio::spawn(async move {
            match acceptor.accept(stream).await {
                Ok(stream) => {
                    if let Err(err) = watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await {
                        tracing::debug!(%err, "connection ended with an error");
                    }
                }
                Err(err) => tracing::debug!(%err, "TLS handshake failed"),
            }
        });
    }

    // Closing this thread's copy of the socket; the last one closed refuses new connections.
    drop(listener);
    if tokio::time::timeout(GRACE, graceful.shutdown()).await.is_err() {
        // Returning drops the runtime, which drops the remaining connections.
        tracing::warn!(grace = ?GRACE, "in-flight requests outlived the grace period; dropping them");
    }
}

/// Waits out a failed accept. A client that gave up before being accepted is
/// routine; running out of file descriptors is not, and retrying at once
/// would spin the CPU without freeing any.
async fn accept_failed(err: io::Error) {
    match err.kind() {
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset => {
            tracing::debug!(%err, "accept failed");
        }
        _ => {
            tracing::warn!(%err, "accept failed; pausing before the next");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
