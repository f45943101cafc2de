//! One raw HTTP/1.1 client for tests, over plain TCP, so a test sees exactly
//! what goes over the wire (keep-alive, chunked bodies, closes) with no
//! client library between: [`Client`] for a keep-alive connection, [`http`]
//! and [`http_json`] for one exchange with `Connection: close`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names lowercased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked if it came chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }
}

/// One keep-alive connection.
pub struct Client {
    reader: BufReader<TcpStream>,
    host: String,
}

impl Client {
    /// Connects to `addr`; reads time out after 20 s, so a hung server fails
    /// the test instead of hanging it.
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("a read timeout");
        Client { reader: BufReader::new(stream), host: addr.to_string() }
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    /// Sends one request (`Host` and `Content-Length` added) and reads its response.
    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n", self.host, body.len());
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.send(head.as_bytes());
        self.send(body);
        self.read_response()
    }

    /// Writes raw bytes, for requests [`Client::request`] cannot express.
    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("send");
    }

    /// Reads one response: a Content-Length body, a chunked body, or (with
    /// `Connection: close` and neither) everything up to the close.
    pub fn read_response(&mut self) -> Response {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("read header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or_else(|| panic!("header without a colon: {line:?}"));
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let mut response = Response { status, headers, body: Vec::new() };
        if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().expect("numeric content-length");
            response.body = vec![0; length];
            self.reader.read_exact(&mut response.body).expect("read body");
        } else if response.header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            response.body = self.read_chunked();
        } else if response.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            self.reader.read_to_end(&mut response.body).expect("read body to the close");
        }
        response
    }

    fn read_chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("read chunk size");
            let size = line.trim().split(';').next().unwrap_or("");
            let n = usize::from_str_radix(size, 16).unwrap_or_else(|_| panic!("bad chunk size {line:?}"));
            if n == 0 {
                // Trailers, if any, end with an empty line.
                loop {
                    line.clear();
                    if self.reader.read_line(&mut line).expect("read trailer") == 0 || line.trim().is_empty() {
                        return body;
                    }
                }
            }
            let start = body.len();
            body.resize(start + n, 0);
            self.reader.read_exact(&mut body[start..]).expect("read chunk");
            line.clear();
            self.reader.read_line(&mut line).expect("read chunk end");
        }
    }

    /// True once the server has closed the connection.
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0];
        matches!(self.reader.read(&mut byte), Ok(0))
    }
}

/// One HTTP/1.1 exchange with `Connection: close`: the status, the headers
/// (lower-cased names) and the body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr:?} is not a socket address: {e}"));
    let mut all = vec![("connection", "close")];
    all.extend_from_slice(headers);
    let r = Client::connect(addr).request(method, path, &all, body.as_bytes());
    let text = String::from_utf8_lossy(&r.body).into_owned();
    (r.status, r.headers, text)
}

/// [`http`] for JSON: a non-empty body goes as `Content-Type:
/// application/json` (unless `headers` name one), the answer is parsed.
pub fn http_json(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, serde_json::Value) {
    let mut all = headers.to_vec();
    if !body.is_empty() && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
        all.push(("content-type", "application/json"));
    }
    let (status, _, text) = http(addr, method, path, &all, body);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text:?}"));
    (status, v)
}
