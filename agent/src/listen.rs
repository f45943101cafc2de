//! The agent's listener, for hostile networks: anyone who reaches the port
//! can open connections, and a connection that never sends a call with the
//! token must not hold a file descriptor for ever.
//!
//! - A connection has [`Guard::deadline`] to make its first call that passes
//!   the token check ([`ConnAuth::authenticated`], called by the interceptor);
//!   after that it is closed.
//! - At most [`Guard::cap`] connections wait for that call at once; one more
//!   closes the oldest waiting one, so a flood of idle connections cannot lock
//!   a controller out.
//! - An accept error (out of file descriptors: `EMFILE`) is retried after a
//!   growing pause instead of at once, which would spin a core.
//! - [`raise_open_files`] lifts the soft `RLIMIT_NOFILE` to the hard limit at
//!   start; plans needing more descriptors than that are refused
//!   ([`crate::security::Limits`]).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use volley_common::lock;

/// How long a new connection has to make its first authenticated call unless
/// `--auth-timeout` says otherwise.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest pause between accept attempts after errors.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Descriptors an agent needs besides its load connections: the listener,
/// controllers' connections, the runtime, logs, DNS.
pub const SPARE_FILES: u64 = 64;

/// Lifts the soft open-file limit to the hard one; returns the limit now in
/// force (`None`: unlimited or unknown).
pub fn raise_open_files() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("cannot raise the open-file limit to its hard limit: {e}");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// How many connections may wait for their first authenticated call at
/// once: a quarter of the descriptors, so a flood leaves most for the load.
pub fn waiting_cap(open_files: Option<u64>) -> usize {
    open_files.map_or(1024, |n| (n / 4).clamp(8, 1024) as usize)
}

/// The listener's rules and the connections waiting for a first call.
#[derive(Debug)]
pub struct Guard {
    /// Time a connection has for its first authenticated call.
    pub deadline: Duration,
    /// Most connections waiting at once.
    pub cap: usize,
    /// Those waiting, oldest first (entries of closed ones are skipped).
    waiting: Mutex<VecDeque<Weak<ConnState>>>,
    /// How many are waiting.
    count: AtomicUsize,
}

impl Guard {
    /// A guard closing connections silent for `deadline`, at most `cap` waiting.
    pub fn new(deadline: Duration, cap: usize) -> Arc<Guard> {
        Arc::new(Guard { deadline, cap: cap.max(1), waiting: Mutex::new(VecDeque::new()), count: AtomicUsize::new(0) })
    }

    /// Connections accepted that have not yet made an authenticated call.
    pub fn waiting(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Registers a new connection, closing the oldest waiting one if the cap is reached.
    fn admit(self: &Arc<Guard>) -> Arc<ConnState> {
        let state = Arc::new(ConnState {
            authenticated: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            guard: self.clone(),
        });
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut waiting = lock(&self.waiting);
        while self.count.load(Ordering::Relaxed) > self.cap {
            let Some(oldest) = waiting.pop_front() else { break };
            if let Some(old) = oldest.upgrade()
                && !old.authenticated.load(Ordering::Relaxed)
            {
                tracing::debug!("closing the oldest connection without a call: {} are waiting", self.cap);
                old.close();
            }
        }
        // Forget entries of connections that are gone or authenticated, so
        // the queue stays as long as the connections waiting.
        waiting.retain(|w| w.upgrade().is_some_and(|c| !c.authenticated.load(Ordering::Relaxed)));
        waiting.push_back(Arc::downgrade(&state));
        state
    }
}

/// One connection's standing.
#[derive(Debug)]
struct ConnState {
    authenticated: AtomicBool,
    closed: AtomicBool,
    waker: AtomicWaker,
    guard: Arc<Guard>,
}

impl ConnState {
    /// Stops counting it as waiting (once).
    fn leave(&self) {
        if !self.authenticated.swap(true, Ordering::Relaxed) {
            self.guard.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Closes it: its next read fails, which ends the connection.
    fn close(&self) {
        self.leave();
        self.closed.store(true, Ordering::Relaxed);
        self.waker.wake();
    }
}

impl Drop for ConnState {
    fn drop(&mut self) {
        if !*self.authenticated.get_mut() {
            self.guard.count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A connection's standing as the token check sees it (a request extension).
#[derive(Debug, Clone)]
pub struct ConnAuth(Arc<ConnState>);

impl ConnAuth {
    /// The connection made a call that passed the token check: it may stay.
    pub fn authenticated(&self) {
        self.0.leave();
    }
}

/// An accepted connection that closes itself if it makes no authenticated
/// call within the deadline (or is pushed out by newer ones).
#[derive(Debug)]
pub struct GuardedStream {
    tcp: TcpStream,
    state: Arc<ConnState>,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl GuardedStream {
    /// Fails the read if the connection must go; registers to hear when.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let s = &self.state;
        s.waker.register(cx.waker());
        if s.closed.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "too many connections without a call"));
        }
        if !s.authenticated.load(Ordering::Relaxed) && self.deadline.as_mut().poll(cx).is_ready() {
            s.close();
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no authenticated call in time"));
        }
        Ok(())
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for GuardedStream {
    type ConnectInfo = ConnAuth;

    fn connect_info(&self) -> ConnAuth {
        ConnAuth(self.state.clone())
    }
}

/// The connections `listener` accepts, each guarded; accept errors are
/// retried after a pause that doubles up to [`MAX_ACCEPT_BACKOFF`].
pub fn incoming(listener: TcpListener, guard: Arc<Guard>) -> impl Stream<Item = io::Result<GuardedStream>> {
    futures::stream::unfold((listener, guard), |(listener, guard)| async move {
        let mut pause = Duration::from_millis(5);
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => {
                    // Small messages both ways; Nagle would only delay them.
                    let _ = tcp.set_nodelay(true);
                    let state = guard.admit();
                    let deadline = Box::pin(tokio::time::sleep(guard.deadline));
                    return Some((Ok(GuardedStream { tcp, state, deadline }), (listener, guard)));
                }
                Err(e) => {
                    // Out of descriptors (EMFILE) and the like: trying again
                    // at once would fail again and spin a core.
                    tracing::warn!("cannot accept a connection: {e}; retrying in {pause:?}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_ACCEPT_BACKOFF);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_follows_the_open_file_limit() {
        assert_eq!(waiting_cap(Some(1024)), 256);
        assert_eq!(waiting_cap(Some(16)), 8);
        assert_eq!(waiting_cap(Some(1 << 20)), 1024);
        assert_eq!(waiting_cap(None), 1024);
    }

    #[tokio::test]
    async fn the_oldest_waiting_connection_makes_room() {
        let guard = Guard::new(Duration::from_secs(60), 2);
        let a = guard.admit();
        let b = guard.admit();
        ConnAuth(b.clone()).authenticated();
        assert_eq!(guard.waiting(), 1);
        let c = guard.admit();
        let d = guard.admit();
        assert!(a.closed.load(Ordering::Relaxed), "the oldest waiting one is closed");
        assert!(!b.closed.load(Ordering::Relaxed), "an authenticated one stays");
        assert!(!c.closed.load(Ordering::Relaxed) && !d.closed.load(Ordering::Relaxed));
        assert_eq!(guard.waiting(), 2);
        drop((a, b, c, d));
        assert_eq!(guard.waiting(), 0);
    }
}
