//! A lean HTTP/1.1 client connection for `http://` and `https://` targets:
//! the hot path of every agent.
//!
//! A load generator sends the same request millions of times. So the request is
//! serialised to bytes once per run ([`RequestBytes`]) and each round trip is one
//! `write` of those bytes, then reads into a buffer the connection reuses, with
//! the head parsed by `httparse` (or, when it is byte for byte the head the
//! thread parsed last, as a load test's heads mostly are, recognised without
//! parsing) and the body skipped without being collected.
//! Nothing is allocated per request. Body framing follows RFC 9112 §6.3:
//! no body for HEAD, 1xx, 204 and 304; `Transfer-Encoding: chunked`; then
//! `Content-Length`; otherwise the body runs to the end of the connection.
//! Interim 1xx responses are skipped. `Connection: close` (or an HTTP/1.0
//! response without keep-alive) marks the connection as done after the response.
//!
//! Memory per connection is kept lean for wide runs (100,000 connections): a
//! plain connection waiting for its response holds no read buffer. It waits
//! until the socket is readable, then takes a buffer from its thread's pool,
//! and gives it back once the response is consumed; so a thread needs only
//! as many buffers as connections it is reading at the same instant. A
//! connection whose responses outgrow the pooled size keeps its own, grown
//! buffer; TLS connections keep theirs too.
//!
//! The parsing does not depend on how bytes move: [`Conn`] is generic over a
//! [`Wire`], the connection's byte stream. The epoll engine's is [`Stream`]
//! (tokio, plain or TLS); the io_uring engine supplies its own
//! ([`crate::uring`]), so both engines send the same request bytes and read
//! responses with the same parser.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use volley_stats::ErrorClass;

/// Largest response head accepted; a bigger one is a protocol error.
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed per response head.
const MAX_HEADERS: usize = 64;
/// Initial read buffer per connection: most load-test responses fit, and a
/// run with 100,000 connections holds 100,000 of them.
const INITIAL_BUF: usize = 1024;
/// The size a read buffer grows to, doubling, while reads keep filling it
/// (large bodies: fewer reads per body). Heads may grow it up to [`MAX_HEAD`].
const MAX_BUF: usize = 16 * 1024;

thread_local! {
    /// This thread's spare read buffers (each [`INITIAL_BUF`] long), shared
    /// by its plain connections; the engine's workers are one thread each.
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Longest response head [`LAST_HEAD`] keeps.
const CACHED_HEAD: usize = 1024;

thread_local! {
    /// The last response head this thread parsed (if no longer than
    /// [`CACHED_HEAD`]) and what it says. A load test gets the same head
    /// again and again (a `Date` header changes it once a second), and the
    /// same bytes parse the same way: comparing them costs a fraction of
    /// parsing them (about 2,000 instructions per response with `httparse`
    /// and the framing headers).
    static LAST_HEAD: RefCell<(Vec<u8>, Option<Head>)> = const { RefCell::new((Vec::new(), None)) };
}

/// The head at the start of `bytes`, if it is the one this thread parsed
/// last. Its bytes end at its first empty line, so `bytes` starting with
/// them means the head ends at the same place and says the same.
#[inline]
fn seen_head(bytes: &[u8]) -> Option<Head> {
    let hit = |last: &RefCell<(Vec<u8>, Option<Head>)>| {
        let (kept, head) = &*last.borrow();
        head.filter(|_| bytes.starts_with(kept))
    };
    LAST_HEAD.try_with(hit).ok().flatten()
}

/// Keeps a freshly parsed head for [`seen_head`].
fn remember_head(bytes: &[u8], head: Head) {
    if bytes.len() <= CACHED_HEAD {
        let _ = LAST_HEAD.try_with(|last| {
            let (kept, parsed) = &mut *last.borrow_mut();
            kept.clear();
            kept.extend_from_slice(bytes);
            *parsed = Some(head);
        });
    }
}

/// A read buffer from this thread's pool, or a new one.
fn take_buffer() -> Vec<u8> {
    POOL.try_with(|p| p.borrow_mut().pop()).ok().flatten().unwrap_or_else(|| vec![0; INITIAL_BUF])
}

/// Returns a read buffer to this thread's pool.
fn give_back(buf: Vec<u8>) {
    // During thread teardown the pool is gone: the buffer is just freed.
    let _ = POOL.try_with(|p| p.borrow_mut().push(buf));
}

/// Reads from a plain socket into `buf[end..]`, taking a pooled buffer only
/// once bytes have arrived if `buf` is empty (none held), and giving it back
/// if the socket turns out to have nothing after all while it holds no bytes.
async fn read_plain(s: &TcpStream, buf: &mut Vec<u8>, end: usize) -> std::io::Result<usize> {
    loop {
        if buf.is_empty() {
            s.readable().await?;
            *buf = take_buffer();
        }
        match s.try_read(&mut buf[end..]) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if end == 0 && buf.len() == INITIAL_BUF {
                    give_back(std::mem::take(buf));
                } else {
                    s.readable().await?;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// One request, serialised once and written as is for every round trip.
#[derive(Debug, Clone)]
pub struct RequestBytes {
    bytes: Bytes,
    head_only: bool,
}

impl RequestBytes {
    /// Serialises a request. `headers` must already be valid header names and
    /// values; `Host`, `User-Agent` and `Content-Length` are added unless given
    /// (`Content-Length` is always computed from `body`).
    pub fn new(method: &str, target: &str, host: &str, headers: &[(String, Vec<u8>)], body: &[u8]) -> RequestBytes {
        let mut out = Vec::with_capacity(128 + body.len());
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        if !has("host") {
            out.extend_from_slice(b"Host: ");
            out.extend_from_slice(host.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !has("user-agent") {
            out.extend_from_slice(concat!("User-Agent: volley/", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes());
        }
        for (name, value) in headers {
            // We frame the body ourselves; a caller's framing headers would lie.
            if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding") {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        let method_has_body = !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS" | "TRACE");
        if !body.is_empty() || method_has_body {
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        RequestBytes { bytes: out.into(), head_only: method == "HEAD" }
    }

    /// The bytes written per request.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the request is empty (never true for a built request).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// What one round trip got back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The final status code.
    pub status: u16,
    /// Bytes read for this response: heads (interim ones too) and body.
    pub received: u64,
    /// The server will close the connection: do not reuse it.
    pub close: bool,
}

/// A connection's byte stream, as the parser needs it: write a request, read
/// more bytes. Implemented by the epoll engine's [`Stream`] and by the
/// io_uring engine's stream.
// Only the agent's own engines implement it, each on one thread, so the
// futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait Wire {
    /// Writes all of `bytes` (and flushes them, if the stream buffers).
    async fn send(&mut self, bytes: &Bytes) -> std::io::Result<()>;
    /// Reads into `buf[end..]` and returns how many bytes arrived (0 at end
    /// of stream). `buf` may be empty (no buffer held): the stream takes one
    /// of [`INITIAL_BUF`] bytes then.
    async fn recv(&mut self, buf: &mut Vec<u8>, end: usize) -> std::io::Result<usize>;
    /// Whether the connection gives its buffer back to the thread's pool
    /// between responses (see the module's notes on memory).
    fn pooled(&self) -> bool;
}

/// A fresh read buffer of the size connections start with.
pub(crate) fn new_buffer() -> Vec<u8> {
    vec![0; INITIAL_BUF]
}

/// A connection's byte stream: plain TCP, or TLS over it.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// Writes all of `bytes`; TLS records are flushed to the socket too.
    #[inline]
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(bytes).await,
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }
}

impl Wire for Stream {
    #[inline]
    async fn send(&mut self, bytes: &Bytes) -> std::io::Result<()> {
        self.write_all(bytes).await
    }

    #[inline]
    async fn recv(&mut self, buf: &mut Vec<u8>, end: usize) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => read_plain(s, buf, end).await,
            Stream::Tls(s) => s.read(&mut buf[end..]).await,
        }
    }

    #[inline]
    fn pooled(&self) -> bool {
        matches!(self, Stream::Plain(_))
    }
}

/// A keep-alive HTTP/1.1 connection to one target, over a [`Wire`]
/// (by default the epoll engine's [`Stream`]).
#[derive(Debug)]
pub struct Conn<S = Stream> {
    stream: S,
    /// The read buffer; empty while a plain connection holds none (see the
    /// module's notes on memory).
    buf: Vec<u8>,
    // Unconsumed bytes are buf[start..end].
    start: usize,
    end: usize,
    /// The last read filled all the room there was: double the buffer (up
    /// to [`MAX_BUF`]) once it is empty.
    grow: bool,
}

impl Conn {
    /// Connects (from `source`, if given: see [`crate::connect::tcp`]),
    /// then does the TLS handshake when `tls` is given.
    pub async fn connect(
        addr: SocketAddr,
        source: Option<IpAddr>,
        timeout: Duration,
        tls: Option<&crate::tls::TlsTarget>,
    ) -> Result<Conn, ErrorClass> {
        let stream = crate::connect::tcp(addr, source, timeout).await?;
        let stream = match tls {
            None => Stream::Plain(stream),
            Some(t) => match tokio::time::timeout(timeout, t.connector.connect(t.name.clone(), stream)).await {
                Err(_) => return Err(ErrorClass::ConnectTimeout),
                Ok(Err(e)) => return Err(crate::tls::handshake_error_class(&e)),
                Ok(Ok(s)) => Stream::Tls(Box::new(s)),
            },
        };
        let buf = if matches!(stream, Stream::Tls(_)) { vec![0; INITIAL_BUF] } else { Vec::new() };
        Ok(Conn { stream, buf, start: 0, end: 0, grow: false })
    }
}

impl<S: Wire> Conn<S> {
    /// A connection over an already open `stream`, holding no buffer yet.
    pub fn over(stream: S) -> Conn<S> {
        Conn { stream, buf: Vec::new(), start: 0, end: 0, grow: false }
    }

    /// Writes the request and reads one complete response, skipping its body.
    pub async fn round_trip(&mut self, request: &RequestBytes) -> Result<Response, ErrorClass> {
        let response = self.exchange(request).await;
        self.release();
        response
    }

    /// A plain connection with nothing left to read gives its buffer back to
    /// the thread's pool (unless it has grown beyond the pooled size).
    fn release(&mut self) {
        if self.stream.pooled() && self.start == self.end && self.buf.len() == INITIAL_BUF && !self.grow {
            give_back(std::mem::take(&mut self.buf));
            self.start = 0;
            self.end = 0;
        }
    }

    async fn exchange(&mut self, request: &RequestBytes) -> Result<Response, ErrorClass> {
        self.stream.send(&request.bytes).await.map_err(|e| ErrorClass::of_io(&e))?;
        let mut received = 0u64;
        loop {
            let head = self.read_head().await?;
            received += head.len as u64;
            if (100..200).contains(&head.status) && head.status != 101 {
                continue; // interim response (100 Continue, 103 Early Hints)
            }
            let no_body = request.head_only || head.status < 200 || head.status == 204 || head.status == 304;
            let close = head.close;
            if no_body {
                return Ok(Response { status: head.status, received, close });
            }
            let body = match head.framing {
                Framing::Chunked => self.skip_chunked().await?,
                Framing::Length(n) => {
                    self.skip(n).await?;
                    n
                }
                Framing::UntilClose => {
                    let n = self.skip_to_eof().await?;
                    return Ok(Response { status: head.status, received: received + n, close: true });
                }
            };
            return Ok(Response { status: head.status, received: received + body, close });
        }
    }

    /// Reads until a full response head is buffered, parses and consumes it.
    async fn read_head(&mut self) -> Result<Head, ErrorClass> {
        loop {
            if self.end > self.start {
                if let Some(head) = seen_head(&self.buf[self.start..self.end]) {
                    self.start += head.len;
                    return Ok(head);
                }
                // Left uninitialised: the parser writes the headers it finds
                // (filling all 64 first would cost more than parsing a small head).
                let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut []);
                let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                    &mut resp,
                    &self.buf[self.start..self.end],
                    &mut headers,
                );
                match parsed {
                    Ok(httparse::Status::Complete(len)) => {
                        let head = Head::from_parsed(&resp, len)?;
                        remember_head(&self.buf[self.start..self.start + len], head);
                        self.start += len;
                        return Ok(head);
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(_) => return Err(ErrorClass::Protocol),
                }
                if self.end - self.start >= MAX_HEAD {
                    return Err(ErrorClass::Protocol);
                }
            }
            if self.fill().await? == 0 {
                return Err(ErrorClass::Closed);
            }
        }
    }

    /// Reads more bytes after the unconsumed ones; returns 0 at end of stream.
    async fn fill(&mut self) -> Result<usize, ErrorClass> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.grow {
                // Nothing to keep: a fresh (calloc'd) buffer, no copy.
                self.grow = false;
                self.buf = vec![0; (self.buf.len() * 2).min(MAX_BUF)];
            }
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                // A head larger than the buffer: grow (bounded by MAX_HEAD).
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let n = self.stream.recv(&mut self.buf, self.end).await.map_err(|e| ErrorClass::of_io(&e))?;
        // After the read: a plain connection may only now hold a buffer.
        let room = self.buf.len() - self.end;
        self.end += n;
        // Responses larger than the buffer: grow it, so a big body takes few
        // reads; small responses never pay for a big buffer.
        self.grow = n == room && self.buf.len() < MAX_BUF;
        Ok(n)
    }

    /// Consumes exactly `n` body bytes.
    async fn skip(&mut self, mut n: u64) -> Result<(), ErrorClass> {
        loop {
            let avail = (self.end - self.start) as u64;
            if avail >= n {
                self.start += n as usize;
                return Ok(());
            }
            n -= avail;
            self.start = self.end;
            if self.fill().await? == 0 {
                return Err(ErrorClass::Closed);
            }
        }
    }

    /// Consumes a CRLF-terminated line and returns it without the CRLF.
    async fn line(&mut self) -> Result<std::ops::Range<usize>, ErrorClass> {
        loop {
            // Lines here are chunk-size and trailer lines: short, so searching
            // from the start again after a read costs nothing worth saving.
            if let Some(i) = self.buf[self.start..self.end].windows(2).position(|w| w == b"\r\n") {
                let line = self.start..self.start + i;
                self.start = line.end + 2;
                return Ok(line);
            }
            if self.end - self.start >= MAX_HEAD {
                return Err(ErrorClass::Protocol);
            }
            if self.fill().await? == 0 {
                return Err(ErrorClass::Closed);
            }
        }
    }

    /// Consumes a chunked body and its trailers; returns the bytes consumed.
    async fn skip_chunked(&mut self) -> Result<u64, ErrorClass> {
        let mut total = 0u64;
        loop {
            let line = self.line().await?;
            total += (line.len() + 2) as u64;
            let size = parse_chunk_size(&self.buf[line]).ok_or(ErrorClass::Protocol)?;
            if size == 0 {
                // Trailer section: header lines until an empty one.
                loop {
                    let line = self.line().await?;
                    total += (line.len() + 2) as u64;
                    if line.is_empty() {
                        return Ok(total);
                    }
                }
            }
            self.skip(size).await?;
            let crlf = self.line().await?;
            if !crlf.is_empty() {
                return Err(ErrorClass::Protocol);
            }
            total += size + 2;
        }
    }

    /// Consumes everything until the server closes; returns the byte count.
    async fn skip_to_eof(&mut self) -> Result<u64, ErrorClass> {
        let mut total = (self.end - self.start) as u64;
        self.start = self.end;
        loop {
            let n = self.fill().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
            self.start = self.end;
        }
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Chunked,
    Length(u64),
    UntilClose,
}

/// The parts of a response head the client acts on.
#[derive(Debug, Clone, Copy)]
struct Head {
    status: u16,
    len: usize,
    framing: Framing,
    close: bool,
}

impl Head {
    fn from_parsed(resp: &httparse::Response<'_, '_>, len: usize) -> Result<Head, ErrorClass> {
        let status = resp.code.ok_or(ErrorClass::Protocol)?;
        let http10 = resp.version == Some(0);
        let mut framing = Framing::UntilClose;
        let mut chunked = false;
        let mut close = http10;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or(ErrorClass::Protocol)?;
                if matches!(framing, Framing::Length(m) if m != n) {
                    return Err(ErrorClass::Protocol); // conflicting lengths
                }
                framing = Framing::Length(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // chunked must be the final coding (RFC 9112 §6.3).
                chunked = h
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                if !chunked {
                    framing = Framing::UntilClose;
                    close = true;
                }
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                        close = false;
                    }
                }
            }
        }
        if chunked {
            framing = Framing::Chunked;
        }
        if matches!(framing, Framing::UntilClose) {
            close = true;
        }
        Ok(Head { status, len, framing, close })
    }
}

/// Parses a chunk-size line (hex digits, optional `;extensions`).
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next()?.trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut n = 0u64;
    for &d in digits {
        n = n * 16 + (d as char).to_digit(16)? as u64;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A scripted server: for each accepted connection, reads one request per
    /// scripted reply and writes the reply, then closes.
    async fn scripted(replies: Vec<Vec<&'static [u8]>>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for conn_replies in replies {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                for reply in conn_replies {
                    // Read until the end of a request head (requests here have no body).
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = s.read(&mut buf).await.unwrap();
                        assert!(n > 0, "client closed early");
                        got.extend_from_slice(&buf[..n]);
                    }
                    // Write in small pieces to exercise partial reads.
                    for piece in reply.chunks(7) {
                        s.write_all(piece).await.unwrap();
                        s.flush().await.unwrap();
                        tokio::task::yield_now().await;
                    }
                }
            }
        });
        addr
    }

    fn get() -> RequestBytes {
        RequestBytes::new("GET", "/x", "h", &[], b"")
    }

    async fn conn(addr: SocketAddr) -> Conn {
        Conn::connect(addr, None, Duration::from_secs(5), None).await.unwrap()
    }

    #[tokio::test]
    async fn content_length_keep_alive_then_close() {
        let addr = scripted(vec![vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nHello World!",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\nConnection: close\r\n\r\nnot",
        ]])
        .await;
        let mut c = conn(addr).await;
        let r = c.round_trip(&get()).await.unwrap();
        assert_eq!((r.status, r.close), (200, false));
        assert_eq!(r.received, 39 + 12);
        let r = c.round_trip(&get()).await.unwrap();
        assert_eq!((r.status, r.close), (404, true));
    }

    /// The buffer starts small, grows (doubling, to `MAX_BUF`) only while
    /// reads fill it, and large bodies and heads are still read exactly.
    #[tokio::test]
    async fn the_read_buffer_grows_only_for_large_responses() {
        let body = vec![b'x'; 100_000];
        let mut big = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        big.extend_from_slice(&body);
        let long_head = format!("HTTP/1.1 200 OK\r\nX-Long: {}\r\nContent-Length: 2\r\n\r\nok", "h".repeat(3000));
        let small = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nHello World!".to_vec();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let replies = [small.clone(), small.clone(), long_head.clone().into_bytes(), big.clone(), small.clone()];
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            for reply in replies {
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0, "client closed early");
                    got.extend_from_slice(&buf[..n]);
                }
                s.write_all(&reply).await.unwrap();
            }
        });
        let mut c = conn(addr).await;
        for _ in 0..2 {
            assert_eq!(c.round_trip(&get()).await.unwrap().received, small.len() as u64);
            assert!(c.buf.is_empty(), "between responses a plain connection holds no buffer");
            assert_eq!(POOL.with(|p| p.borrow().len()), 1, "its buffer went back to the thread's pool");
        }
        let r = c.round_trip(&get()).await.unwrap();
        assert_eq!((r.status, r.received), (200, long_head.len() as u64));
        assert!(c.buf.len() >= 4096, "a head larger than the buffer grows it");
        let r = c.round_trip(&get()).await.unwrap();
        assert_eq!((r.status, r.received), (200, big.len() as u64));
        assert_eq!(c.round_trip(&get()).await.unwrap().received, small.len() as u64);
        assert_eq!(c.buf.len(), MAX_BUF, "a large body grew the buffer to its cap, no further");
    }

    /// A head seen before is not parsed again, and one that differs in any
    /// byte (a length, a `Connection: close`) is, whatever came before.
    #[tokio::test]
    async fn a_repeated_head_is_recognised_and_a_changed_one_parsed() {
        let addr = scripted(vec![vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye",
        ]])
        .await;
        let mut c = conn(addr).await;
        for (received, close) in [(40, false), (40, false), (41, false), (41, false), (60, true)] {
            let r = c.round_trip(&get()).await.unwrap();
            assert_eq!((r.status, r.received, r.close), (200, received, close));
        }
        let kept = LAST_HEAD.with_borrow(|(kept, _)| kept.clone());
        assert_eq!(kept, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n");
        // Heads of another server, after this one's: parsed, not taken for it.
        let other = scripted(vec![vec![b"HTTP/1.1 204 No Content\r\n\r\n"]]).await;
        assert_eq!(conn(other).await.round_trip(&get()).await.unwrap().status, 204);
    }

    #[tokio::test]
    async fn chunked_bodies_with_extensions_and_trailers() {
        let addr = scripted(vec![vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nHello\r\n7\r\n World!\r\n0\r\nX-Trailer: yes\r\n\r\n",
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: gzip, chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
        ]])
        .await;
        let mut c = conn(addr).await;
        let r = c.round_trip(&get()).await.unwrap();
        assert_eq!((r.status, r.close), (200, false));
        let r = c.round_trip(&get()).await.unwrap();
        assert_eq!((r.status, r.close), (201, false));
    }

    #[tokio::test]
    async fn body_until_close_and_http10() {
        let addr = scripted(vec![vec![b"HTTP/1.0 200 OK\r\n\r\nall of this is the body"]]).await;
        let mut c = conn(addr).await;
        let r = c.round_trip(&get()).await.unwrap();
        assert_eq!((r.status, r.close), (200, true));
        assert_eq!(r.received, 19 + 23);
    }

    #[tokio::test]
    async fn interim_and_bodiless_statuses() {
        let addr = scripted(vec![vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
        ]])
        .await;
        let mut c = conn(addr).await;
        assert_eq!(c.round_trip(&get()).await.unwrap().status, 204);
        assert_eq!(c.round_trip(&get()).await.unwrap().status, 304);
    }

    #[tokio::test]
    async fn truncated_and_garbage_responses_are_errors() {
        let addr = scripted(vec![
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort"],
            vec![b"SMTP ready\r\n\r\n"],
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
        ])
        .await;
        assert_eq!(conn(addr).await.round_trip(&get()).await, Err(ErrorClass::Closed));
        assert_eq!(conn(addr).await.round_trip(&get()).await, Err(ErrorClass::Protocol));
        assert_eq!(conn(addr).await.round_trip(&get()).await, Err(ErrorClass::Protocol));
    }

    #[tokio::test]
    async fn https_keeps_one_handshake_for_many_requests() {
        use crate::tls::{TlsTarget, test_pki};
        let pki = test_pki::pki(&["localhost"]);
        let server = pki.server();
        let hello = RequestBytes::new("GET", "/hello", "localhost", &[], b"");

        let trusted = TlsTarget::new("localhost", pki.ca_pem.as_bytes(), false).unwrap();
        let mut c = Conn::connect(server.local_addr(), None, Duration::from_secs(5), Some(&trusted)).await.unwrap();
        let Stream::Tls(s) = &c.stream else { panic!("an https target got a plain connection") };
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        for _ in 0..3 {
            let r = c.round_trip(&hello).await.unwrap();
            assert_eq!((r.status, r.close), (200, false));
            assert!(r.received > 12, "{r:?}");
        }
        // -k: a name the certificate does not carry, and no CA, still work.
        let insecure = TlsTarget::new("elsewhere.test", b"", true).unwrap();
        let mut c = Conn::connect(server.local_addr(), None, Duration::from_secs(5), Some(&insecure)).await.unwrap();
        assert_eq!(c.round_trip(&hello).await.unwrap().status, 200);
        assert_eq!(server.stats().count("/hello", 200), 4);
    }

    #[tokio::test]
    async fn failed_handshakes_are_tls_errors() {
        use crate::tls::{TlsTarget, test_pki};
        let pki = test_pki::pki(&["localhost"]);
        let server = pki.server();
        let connect =
            |addr, t| async move { Conn::connect(addr, None, Duration::from_secs(5), Some(&t)).await.map(drop) };

        // The web's roots do not know the test CA.
        let untrusted = TlsTarget::new("localhost", b"", false).unwrap();
        assert_eq!(connect(server.local_addr(), untrusted).await, Err(ErrorClass::Tls));
        // The right CA, but a name the certificate does not carry.
        let wrong_name = TlsTarget::new("elsewhere.test", pki.ca_pem.as_bytes(), false).unwrap();
        assert_eq!(connect(server.local_addr(), wrong_name).await, Err(ErrorClass::Tls));
        // An https:// URL pointing at a plain HTTP server: its answer is no TLS record.
        let plain = target_server::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), 1).unwrap();
        let trusted = TlsTarget::new("localhost", pki.ca_pem.as_bytes(), false).unwrap();
        assert_eq!(connect(plain.local_addr(), trusted.clone()).await, Err(ErrorClass::Tls));
        assert_eq!(server.stats().total + plain.stats().total, 0);

        // A server that accepts TCP but never answers the handshake: the
        // connect timeout covers the handshake too.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Conn::connect(silent.local_addr().unwrap(), None, Duration::from_millis(200), Some(&trusted)).await;
        assert_eq!(r.map(drop), Err(ErrorClass::ConnectTimeout));
    }

    #[test]
    fn request_bytes_frame_the_body() {
        let r = RequestBytes::new(
            "POST",
            "/echo?a=1",
            "example:80",
            &[("X-A".into(), b"1".to_vec()), ("content-length".into(), b"999".to_vec())],
            b"{}",
        );
        let text = String::from_utf8(r.bytes.to_vec()).unwrap();
        assert!(text.starts_with("POST /echo?a=1 HTTP/1.1\r\nHost: example:80\r\n"), "{text}");
        assert!(text.contains("X-A: 1\r\n"));
        assert!(text.ends_with("Content-Length: 2\r\n\r\n{}"), "{text}");
        assert!(!text.contains("999"));
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a"), Some(26));
        assert_eq!(parse_chunk_size(b"0"), Some(0));
        assert_eq!(parse_chunk_size(b"F ; x=y"), Some(15));
        assert_eq!(parse_chunk_size(b""), None);
        assert_eq!(parse_chunk_size(b"g"), None);
    }
}
