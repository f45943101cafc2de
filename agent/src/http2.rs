//! HTTP/2 on the fast path (`--http2`): the `h2` crate driven straight from
//! the engine's per-thread runtimes.
//!
//! One HTTP/2 connection carries `streams` request slots ([`Group`]); each
//! slot ([`Slot`]) behaves in the engine's loop exactly like an HTTP/1.1
//! connection (permits, the open model's schedule, timeouts), so every engine
//! feature works unchanged and in-flight requests are connections × streams.
//! `https://` targets negotiate `h2` by ALPN; `http://` targets get cleartext
//! HTTP/2 with prior knowledge (h2c).
//!
//! Per request: one clone of the prebuilt request head (a method, an
//! absolute URI whose parts are shared bytes, and a header map), the stream
//! h2 itself needs, and nothing else. Response bodies are not collected:
//! each DATA frame's bytes are counted and dropped; their flow-control
//! capacity goes back to h2 per MiB of body, or, for the rest (and for a
//! small body, all of it), when the finished stream is dropped. The windows
//! are large (as h2load's), so WINDOW_UPDATE frames are rare.
//!
//! A new connection carries one request alone first: the target's
//! SETTINGS (its SETTINGS_MAX_CONCURRENT_STREAMS among them) come before its
//! first response, so the other slots start only once the limit is known,
//! instead of opening streams the target would refuse (RFC 9113 §6.5.2: the
//! limit is unknown, so unbounded, until the SETTINGS arrive).
//!
//! Errors: a stream reset by the target (RST_STREAM) is `h2_rst_<CODE>`, and
//! the connection is kept; a request cut off by a GOAWAY (a stream above the
//! last one the target promised to process, or the connection closing under
//! it) is `h2_goaway`, counted failed, and the slots reconnect. A request
//! that could not even be opened on a connection already going away is not
//! counted: the slot reconnects and sends it on the new connection.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use volley_stats::ErrorClass;

use crate::engine::{Aim, Worker};
use crate::http1::Response;

/// Initial flow-control window per stream and per connection: large, so the
/// target is never held up by the window and updates are rare (h2load uses
/// 2^30 − 1 too).
const WINDOW: u32 = (1 << 30) - 1;

/// A body's window is released to h2 once this much of it is held: far
/// below [`WINDOW`] even over thousands of streams, so the target never
/// waits for a window, and a small response releases none (h2 releases a
/// finished stream's share of the connection window when it is dropped).
const RELEASE: usize = 1 << 20;

/// Headers HTTP/2 forbids (RFC 9113 §8.2.2) or carries as pseudo-headers;
/// a plan's header of these names is left out.
const NOT_IN_H2: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "te"];

/// The request of a run, built once.
#[derive(Debug, Clone)]
pub struct H2Request {
    head: http::Request<()>,
    body: Bytes,
}

impl H2Request {
    /// Builds the request. `scheme`, `authority` and `path_and_query` make the
    /// absolute URI (`:scheme`, `:authority`, `:path`); a `Host` header, if
    /// given, becomes the authority. Headers must already be checked.
    pub fn new(
        method: &str,
        scheme: &str,
        authority: &str,
        path_and_query: &str,
        headers: &[(String, Vec<u8>)],
        body: &[u8],
    ) -> Result<H2Request, String> {
        let host = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("host"));
        let authority = match host {
            Some((_, v)) => std::str::from_utf8(v).map_err(|_| "the Host header is not text".to_owned())?,
            None => authority,
        };
        let uri = http::Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| format!("cannot make an HTTP/2 request URI: {e}"))?;
        let mut builder = http::Request::builder()
            .method(http::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?)
            .uri(uri)
            .version(http::Version::HTTP_2);
        let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        if !has("user-agent") {
            builder = builder.header("user-agent", concat!("volley/", env!("CARGO_PKG_VERSION")));
        }
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            // h2 refuses connection-specific headers; we frame the body ourselves.
            if NOT_IN_H2.contains(&lower.as_str()) || lower == "content-length" {
                continue;
            }
            builder = builder.header(lower, value.as_slice());
        }
        let method_has_body = !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS" | "TRACE");
        if !body.is_empty() || method_has_body {
            builder = builder.header("content-length", body.len());
        }
        let head = builder.body(()).map_err(|e| format!("cannot make the HTTP/2 request: {e}"))?;
        Ok(H2Request { head, body: Bytes::copy_from_slice(body) })
    }

    /// Bytes counted as sent per request: the body (the head's size on the
    /// wire depends on the connection's header compression state).
    pub fn sent(&self) -> u64 {
        self.body.len() as u64
    }
}

/// A live connection: its number within the group and its request handle.
type Live = (u64, SendRequest<Bytes>);

/// One HTTP/2 connection shared by `streams` slots of a worker thread.
#[derive(Default)]
pub struct Group {
    /// The current connection, if any.
    live: RefCell<Option<Live>>,
    /// Connections opened so far (numbers them).
    opened: Cell<u64>,
    /// Held while connecting, so the slots share one new connection.
    connecting: tokio::sync::Mutex<()>,
    /// The newest connection whose first request has completed (its
    /// SETTINGS are known): the other slots may use it.
    settled: Cell<u64>,
    /// Wakes the slots waiting for a first request to complete.
    settle: tokio::sync::Notify,
    /// The local address its connections leave from (`--source-addr`).
    source: Option<std::net::IpAddr>,
    /// Where its connections go, and the address of the current one.
    aim: Aim,
    /// Connections numbered up to this one are to be left (the addresses
    /// changed and the round-robin moved this group elsewhere).
    retired: Cell<u64>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("opened", &self.opened.get()).finish_non_exhaustive()
    }
}

impl Group {
    /// A group with no connection yet, whose connections leave from
    /// `source` if given; `number` is the connection's run-wide number.
    pub fn new(source: Option<std::net::IpAddr>, number: u64) -> Rc<Group> {
        Rc::new(Group { source, aim: Aim::new(number), ..Group::default() })
    }

    /// Forgets connection `n` (it failed or is going away); a newer one stays.
    fn drop_conn(&self, n: u64) {
        let mut live = self.live.borrow_mut();
        if live.as_ref().is_some_and(|(m, _)| *m == n) {
            *live = None;
        }
        drop(live);
        // Whoever waited for its first request tries a new connection.
        self.settled_at(n);
    }

    /// Connection `n`'s first request is over: let the other slots in.
    fn settled_at(&self, n: u64) {
        if self.settled.get() < n {
            self.settled.set(n);
            self.settle.notify_waiters();
        }
    }

    /// The group's connection, opened (once, for all waiting slots) if there
    /// is none; a slot that did not open it waits until its first request
    /// is over. `true` with it: this slot opened it.
    async fn conn(self: &Rc<Self>, w: &Rc<Worker>) -> Result<(Live, bool), ErrorClass> {
        loop {
            let settle = self.settle.notified();
            tokio::pin!(settle);
            // Registered before the check, so a settling in between is not missed.
            settle.as_mut().enable();
            let live = self.live.borrow().clone();
            match live {
                Some(live) if self.settled.get() >= live.0 => return Ok((live, false)),
                Some(_) => settle.await,
                None => break,
            }
        }
        let _connecting = self.connecting.lock().await;
        let opened = self.live.borrow().clone();
        if let Some(live) = opened {
            // Another slot opened it meanwhile; its first request may still
            // be out, so go round again.
            drop(_connecting);
            return if self.settled.get() >= live.0 { Ok((live, false)) } else { Box::pin(self.conn(w)).await };
        }
        let plan = &w.shared().plan;
        let (send, conn) =
            self.aim.connect(w, |addr| connect(addr, self.source, plan.timeout, plan.tls.as_ref())).await?;
        let n = self.opened.get() + 1;
        self.opened.set(n);
        *self.live.borrow_mut() = Some((n, send.clone()));
        tokio::task::spawn_local(drive(conn, Rc::downgrade(self), n, w.clone()));
        Ok(((n, send), true))
    }
}

/// Polls a connection until it ends (then its group forgets it), noting the
/// server's SETTINGS_MAX_CONCURRENT_STREAMS once announced.
async fn drive(
    mut conn: h2::client::Connection<Box<dyn Io>, Bytes>,
    group: std::rc::Weak<Group>,
    n: u64,
    w: Rc<Worker>,
) {
    // The limit arrives in the server's first SETTINGS, read within the
    // first polls; after that it is not looked at again (reading it takes
    // h2's lock).
    let mut looks = 64u32;
    let result = poll_fn(|cx| {
        let r = conn.poll_unpin(cx);
        if looks > 0 {
            let max = conn.max_concurrent_send_streams();
            if max != usize::MAX {
                w.recorder().borrow_mut().h2_max_streams(max as u64);
                looks = 0;
            } else {
                looks -= 1;
            }
        }
        r
    })
    .await;
    if let Err(e) = result {
        tracing::debug!("HTTP/2 connection ended: {e}");
    }
    if let Some(group) = group.upgrade() {
        group.drop_conn(n);
    }
}

trait PollUnpin: std::future::Future + Unpin {
    fn poll_unpin(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        std::pin::Pin::new(self).poll(cx)
    }
}
impl<F: std::future::Future + Unpin> PollUnpin for F {}

/// A byte stream h2 can run over: TCP or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Io for T {}

/// Opens TCP (no Nagle), TLS with ALPN `h2` when `tls` is given, and the
/// HTTP/2 handshake, all within `timeout`.
async fn connect(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
    timeout: Duration,
    tls: Option<&crate::tls::TlsTarget>,
) -> Result<(SendRequest<Bytes>, h2::client::Connection<Box<dyn Io>, Bytes>), ErrorClass> {
    let open = async {
        let stream = crate::connect::tcp(addr, source, timeout).await?;
        let io: Box<dyn Io> = match tls {
            None => Box::new(stream),
            Some(t) => {
                let s = t
                    .connector
                    .connect(t.name.clone(), stream)
                    .await
                    .map_err(|e| crate::tls::handshake_error_class(&e))?;
                if s.get_ref().1.alpn_protocol() != Some(b"h2") {
                    // The server does not speak HTTP/2 over TLS.
                    return Err(ErrorClass::Tls);
                }
                Box::new(s)
            }
        };
        h2::client::Builder::new()
            .initial_window_size(WINDOW)
            .initial_connection_window_size(WINDOW)
            .handshake(io)
            .await
            .map_err(|e| class(&e))
    };
    tokio::time::timeout(timeout, open).await.map_err(|_| ErrorClass::ConnectTimeout)?
}

/// The error class of an h2 error met on a request.
fn class(e: &h2::Error) -> ErrorClass {
    if e.is_go_away() && e.is_remote() {
        ErrorClass::H2GoAway
    } else if e.is_reset() && e.is_remote() {
        ErrorClass::h2_reset(e.reason().map_or(u32::MAX, u32::from))
    } else if let Some(io) = e.get_io() {
        ErrorClass::of_io(io)
    } else {
        ErrorClass::Protocol
    }
}

/// One request slot: a stream at a time on its group's connection.
#[derive(Debug)]
pub struct Slot {
    group: Rc<Group>,
    /// This slot's handle on the group's connection.
    live: Option<Live>,
    /// The address of that connection (or of the connect last tried): the
    /// group may have moved on to another while this slot's request was out.
    target: Option<Rc<crate::resolve::Target>>,
}

impl Slot {
    /// A slot of `group`.
    pub fn new(group: Rc<Group>) -> Slot {
        Slot { group, live: None, target: None }
    }

    /// Sends the request on a stream and reads its response, skipping the body.
    pub(crate) async fn round_trip(&mut self, request: &H2Request, w: &Rc<Worker>) -> Result<Response, ErrorClass> {
        // A connection going away refuses new streams before anything is
        // sent: then one retry on a new connection, the request not counted twice.
        let mut retried = false;
        // Set when this request is the first on a connection this slot
        // opened: it lets the other slots in when it is over, however it ends
        // (the engine drops this future on a timeout).
        let mut first = Settle(None);
        let (response, n) = loop {
            let (n, send) = match &mut self.live {
                Some(live) => live,
                None => {
                    let got = self.group.conn(w).await;
                    // The group's address is this connection's (or the one that failed).
                    self.target = self.group.aim.target();
                    let (live, opened) = got?;
                    if opened {
                        first = Settle(Some((self.group.clone(), live.0)));
                    }
                    self.live.insert(live)
                }
            };
            let n = *n;
            let opened = match poll_fn(|cx| send.poll_ready(cx)).await {
                Ok(()) => send.send_request(request.head.clone(), request.body.is_empty()),
                Err(e) => Err(e),
            };
            match opened {
                Ok((response, mut body)) => {
                    if !request.body.is_empty() {
                        // h2 queues what the window does not yet allow.
                        body.send_data(request.body.clone(), true).map_err(|e| class(&e))?;
                    }
                    break (response, n);
                }
                Err(e) => {
                    self.forget(n);
                    if retried {
                        return Err(class(&e));
                    }
                    retried = true;
                }
            }
        };
        let result = async {
            let response = response.await.map_err(|e| class(&e))?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let mut received = 0u64;
            // Window taken by this body and not yet given back: released in
            // batches (each release takes h2's lock); what is left when the
            // stream ends h2 gives back to the connection itself.
            let mut held = 0usize;
            while let Some(data) = body.data().await {
                let data = data.map_err(|e| class(&e))?;
                received += data.len() as u64;
                held += data.len();
                if held >= RELEASE {
                    let _ = body.flow_control().release_capacity(held);
                    held = 0;
                }
            }
            Ok(Response { status, received, close: false })
        }
        .await;
        drop(first);
        if let Err(class) = result {
            // A reset ends the stream only; anything else ends the connection.
            if !is_stream_error(class) {
                self.forget(n);
            }
        }
        result
    }

    /// Counts a request on the group's address. When a re-resolution
    /// changed the addresses and moved this group's place in the round-robin
    /// (or dropped its address), the connection is retired: each slot leaves
    /// it after its own request, and the next connection goes there.
    #[inline]
    pub(crate) fn count(&mut self, w: &Worker, ok: bool) {
        let g = &self.group;
        if let Some(t) = &self.target {
            t.request(!ok);
        }
        let Some((n, _)) = self.live else { return };
        if g.aim.moved(w) {
            g.retired.set(g.retired.get().max(g.opened.get()));
        }
        if n <= g.retired.get() {
            self.forget(n);
        }
    }

    /// Drops connection `n`, for this slot and its group.
    fn forget(&mut self, n: u64) {
        self.live = None;
        self.group.drop_conn(n);
    }
}

/// Lets a group's other slots onto connection `n` when dropped.
struct Settle(Option<(Rc<Group>, u64)>);

impl Drop for Settle {
    fn drop(&mut self) {
        if let Some((group, n)) = self.0.take() {
            group.settled_at(n);
        }
    }
}

/// Whether an error ends only its stream (an RST_STREAM), not the connection.
fn is_stream_error(class: ErrorClass) -> bool {
    !matches!(
        class,
        ErrorClass::H2GoAway
            | ErrorClass::Reset
            | ErrorClass::Closed
            | ErrorClass::Io
            | ErrorClass::Protocol
            | ErrorClass::Timeout
            | ErrorClass::Tls
            | ErrorClass::Connect
            | ErrorClass::ConnectRefused
            | ErrorClass::ConnectTimeout
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_drop_connection_headers_and_take_the_host_as_authority() {
        let headers = vec![("Host".to_owned(), b"example.test".to_vec()), ("Connection".to_owned(), b"close".to_vec())];
        let r = H2Request::new("POST", "http", "127.0.0.1:9", "/a?b=1", &headers, b"{}").unwrap();
        assert_eq!(r.head.uri().to_string(), "http://example.test/a?b=1");
        assert!(r.head.headers().get("connection").is_none());
        assert!(r.head.headers().get("host").is_none());
        assert_eq!(r.head.headers()["content-length"], "2");
        assert!(r.head.headers()["user-agent"].to_str().unwrap().starts_with("volley/"));
        assert_eq!(r.sent(), 2);
    }

    #[test]
    fn error_classes() {
        assert_eq!(ErrorClass::h2_reset(7).name(), "h2_rst_REFUSED_STREAM");
        assert_eq!(ErrorClass::h2_reset(0xd).name(), "h2_rst_HTTP_1_1_REQUIRED");
        assert_eq!(ErrorClass::h2_reset(99).name(), "h2_rst_UNKNOWN");
        assert!(is_stream_error(ErrorClass::h2_reset(8)));
        assert!(!is_stream_error(ErrorClass::H2GoAway));
        for c in ErrorClass::ALL {
            assert_eq!(ErrorClass::from_name(c.name()), Some(c));
        }
    }
}
