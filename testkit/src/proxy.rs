//! A TCP proxy that delays every byte by a fixed one-way time in each
//! direction, and can cut every connection through it: a slow or broken
//! controller–agent link on loopback, without netem or privileges.
//!
//! Each direction of each connection has a reader thread that stamps what it
//! reads with its delivery time and a writer thread that writes it out at that
//! time, so the delay does not throttle throughput and order is kept.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::process::Address;

/// A running proxy; it stops accepting when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    cut: AtomicBool,
    stop: AtomicBool,
    /// Every socket opened through the proxy, so that a cut can close them.
    sockets: Mutex<Vec<TcpStream>>,
}

/// A proxy on 127.0.0.1 to `upstream` that delays each direction by `one_way`.
pub fn delay_proxy(upstream: &str, one_way: Duration) -> Proxy {
    let upstream: SocketAddr = upstream.parse().expect("an upstream socket address");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let addr = listener.local_addr().expect("the proxy's address");
    let shared =
        Arc::new(Shared { cut: AtomicBool::new(false), stop: AtomicBool::new(false), sockets: Mutex::default() });
    let s = shared.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            if s.stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(client) = client else { continue };
            if s.cut.load(Ordering::Relaxed) {
                continue; // dropped: a cut link takes no new connections
            }
            let Ok(server) = TcpStream::connect(upstream) else { continue };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            {
                let mut sockets = s.sockets.lock().unwrap();
                sockets.push(client.try_clone().unwrap());
                sockets.push(server.try_clone().unwrap());
            }
            pump(client.try_clone().unwrap(), server.try_clone().unwrap(), one_way);
            pump(server, client, one_way);
        }
    });
    Proxy { addr, shared }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return, // dropping tx ends the writer
                Ok(n) => {
                    if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        while let Ok((at, bytes)) = rx.recv() {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Proxy {
    /// The proxy's address (`127.0.0.1:PORT`).
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Cuts the link: closes every connection through the proxy and refuses
    /// new ones from now on.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::Relaxed);
        for s in self.shared.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Address for Proxy {
    fn address(&self) -> String {
        Proxy::address(self)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the stop.
        let _ = TcpStream::connect(self.addr);
        self.cut();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_in_order_one_delay_later_each_way_and_a_cut_closes() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream = echo.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        });
        let proxy = delay_proxy(&upstream, Duration::from_millis(100));
        let mut c = TcpStream::connect(proxy.address()).unwrap();
        let sent = Instant::now();
        c.write_all(b"hello").unwrap();
        let mut got = [0u8; 5];
        c.read_exact(&mut got).unwrap();
        let rtt = sent.elapsed();
        assert_eq!(&got, b"hello");
        assert!(rtt >= Duration::from_millis(200) && rtt < Duration::from_secs(2), "round trip {rtt:?}");
        proxy.cut();
        let mut rest = Vec::new();
        assert!(matches!(c.read_to_end(&mut rest), Ok(0) | Err(_)), "the cut closed the connection");
    }
}
