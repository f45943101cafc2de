//! What Volley agents record and the controller merges.
//!
//! An agent's worker thread owns one [`Recorder`]: plain counters, a status
//! table and an HdrHistogram, touched once per request with no lock, atomic or
//! allocation. About once a second the thread calls [`Recorder::take`], which
//! hands out everything recorded since the previous call as a [`Totals`] delta.
//! Deltas travel to the controller as protobuf [`Snapshot`]s and are added up
//! with [`Totals::add`]; because HdrHistogram addition is exact, percentiles of
//! the merged histogram are exactly those of one histogram fed every sample.
//!
//! # Layout
//! - [`ErrorClass`]: the stable names of transport failures.
//! - [`Recorder`]: the per-thread hot-path recorder.
//! - [`Totals`]: a mergeable delta or running total, and its protobuf form.
//! - [`names`]: figures by request name and failures by message (scenarios).

#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use volley_proto::{ErrorCount, FailureMessage, NameStats, Snapshot, StatusCount};

pub mod names;
pub use names::NameTotals;

/// Highest latency the histograms track, in microseconds (one hour); longer
/// latencies are recorded as one hour.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Significant decimal digits the histograms keep.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// A new, empty latency histogram in microseconds with the project's
/// precision. It starts small (16 KiB) and grows to hold the largest value
/// recorded into or added to it: a histogram spanning the whole range up to
/// [`MAX_LATENCY_US`] at three digits holds 23,552 counters (184 KiB), and
/// the controller keeps a few per agent and decodes, adds and frees a couple
/// per agent-second. Recorders clamp latencies to [`MAX_LATENCY_US`], so
/// none grows past that.
pub fn new_histogram() -> Histogram<u64> {
    // Cannot fail: the precision is a constant the crate accepts (<= 5).
    Histogram::new(SIGNIFICANT_DIGITS).expect("constant histogram precision is valid")
}

/// A histogram that holds no latencies, for [`Totals`] that only count (see
/// [`Totals::counts_only`]): no significant digits, so it takes a few bytes
/// instead of [`new_histogram`]'s 16 KiB. At a thousand agents the controller
/// held two of those per agent and made two per snapshot (issue #19).
/// Adding an empty one to a histogram of ours changes nothing; nothing is
/// ever recorded into one (it would keep only the power of two).
pub fn placeholder_histogram() -> Histogram<u64> {
    // Cannot fail: zero digits is a precision the crate accepts.
    Histogram::new(0).expect("constant histogram precision is valid")
}

/// Records `n` samples of `us` microseconds (clamped to 1..=[`MAX_LATENCY_US`])
/// into a histogram of [`new_histogram`], growing it when needed.
#[inline]
pub fn record_us(h: &mut Histogram<u64>, us: u64, n: u64) {
    let us = us.clamp(1, MAX_LATENCY_US);
    // Growing to hold at most an hour cannot fail; were it to, the sample
    // would still count, at the histogram's largest value.
    if h.record_n(us, n).is_err() {
        h.saturating_record_n(us, n);
    }
}

/// Why a request failed without an HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorClass {
    /// The target refused the TCP connection.
    ConnectRefused,
    /// The TCP connection could not be set up in time.
    ConnectTimeout,
    /// Another error while connecting (unreachable network, no route, ...).
    Connect,
    /// No complete response within the request timeout.
    Timeout,
    /// The target reset the connection.
    Reset,
    /// The target closed the connection before the response was complete.
    Closed,
    /// The response was not valid HTTP/1.1.
    Protocol,
    /// Any other I/O error.
    Io,
    /// The TLS handshake failed: a certificate not trusted, or a server that
    /// hung up on the hello (one that does not speak TLS).
    Tls,
    /// HTTP/2: the target reset the stream with `NO_ERROR` (RST_STREAM, or a
    /// connection error with that code).
    H2RstNoError,
    /// HTTP/2: the target reset the stream with `PROTOCOL_ERROR` (RST_STREAM, or a
    /// connection error with that code).
    H2RstProtocolError,
    /// HTTP/2: the target reset the stream with `INTERNAL_ERROR` (RST_STREAM, or a
    /// connection error with that code).
    H2RstInternalError,
    /// HTTP/2: the target reset the stream with `FLOW_CONTROL_ERROR` (RST_STREAM, or a
    /// connection error with that code).
    H2RstFlowControlError,
    /// HTTP/2: the target reset the stream with `SETTINGS_TIMEOUT` (RST_STREAM, or a
    /// connection error with that code).
    H2RstSettingsTimeout,
    /// HTTP/2: the target reset the stream with `STREAM_CLOSED` (RST_STREAM, or a
    /// connection error with that code).
    H2RstStreamClosed,
    /// HTTP/2: the target reset the stream with `FRAME_SIZE_ERROR` (RST_STREAM, or a
    /// connection error with that code).
    H2RstFrameSizeError,
    /// HTTP/2: the target reset the stream with `REFUSED_STREAM` (RST_STREAM, or a
    /// connection error with that code).
    H2RstRefusedStream,
    /// HTTP/2: the target reset the stream with `CANCEL` (RST_STREAM, or a
    /// connection error with that code).
    H2RstCancel,
    /// HTTP/2: the target reset the stream with `COMPRESSION_ERROR` (RST_STREAM, or a
    /// connection error with that code).
    H2RstCompressionError,
    /// HTTP/2: the target reset the stream with `CONNECT_ERROR` (RST_STREAM, or a
    /// connection error with that code).
    H2RstConnectError,
    /// HTTP/2: the target reset the stream with `ENHANCE_YOUR_CALM` (RST_STREAM, or a
    /// connection error with that code).
    H2RstEnhanceYourCalm,
    /// HTTP/2: the target reset the stream with `INADEQUATE_SECURITY` (RST_STREAM, or a
    /// connection error with that code).
    H2RstInadequateSecurity,
    /// HTTP/2: the target reset the stream with `HTTP_1_1_REQUIRED` (RST_STREAM, or a
    /// connection error with that code).
    H2RstHttp11Required,
    /// HTTP/2: a reset with an error code RFC 9113 does not define.
    H2RstUnknown,
    /// HTTP/2: the target's GOAWAY cut the request off (its stream was not
    /// processed, or the connection closed before the response was complete).
    H2GoAway,
}

impl ErrorClass {
    /// Every class, in the order of their indices.
    pub const ALL: [ErrorClass; 25] = [
        ErrorClass::ConnectRefused,
        ErrorClass::ConnectTimeout,
        ErrorClass::Connect,
        ErrorClass::Timeout,
        ErrorClass::Reset,
        ErrorClass::Closed,
        ErrorClass::Protocol,
        ErrorClass::Io,
        ErrorClass::Tls,
        ErrorClass::H2RstNoError,
        ErrorClass::H2RstProtocolError,
        ErrorClass::H2RstInternalError,
        ErrorClass::H2RstFlowControlError,
        ErrorClass::H2RstSettingsTimeout,
        ErrorClass::H2RstStreamClosed,
        ErrorClass::H2RstFrameSizeError,
        ErrorClass::H2RstRefusedStream,
        ErrorClass::H2RstCancel,
        ErrorClass::H2RstCompressionError,
        ErrorClass::H2RstConnectError,
        ErrorClass::H2RstEnhanceYourCalm,
        ErrorClass::H2RstInadequateSecurity,
        ErrorClass::H2RstHttp11Required,
        ErrorClass::H2RstUnknown,
        ErrorClass::H2GoAway,
    ];

    /// The stable name used in reports, JSON and the protocol.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::ConnectRefused => "connect_refused",
            ErrorClass::ConnectTimeout => "connect_timeout",
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Reset => "reset",
            ErrorClass::Closed => "closed",
            ErrorClass::Protocol => "protocol",
            ErrorClass::Io => "io",
            ErrorClass::Tls => "tls",
            ErrorClass::H2RstNoError => "h2_rst_NO_ERROR",
            ErrorClass::H2RstProtocolError => "h2_rst_PROTOCOL_ERROR",
            ErrorClass::H2RstInternalError => "h2_rst_INTERNAL_ERROR",
            ErrorClass::H2RstFlowControlError => "h2_rst_FLOW_CONTROL_ERROR",
            ErrorClass::H2RstSettingsTimeout => "h2_rst_SETTINGS_TIMEOUT",
            ErrorClass::H2RstStreamClosed => "h2_rst_STREAM_CLOSED",
            ErrorClass::H2RstFrameSizeError => "h2_rst_FRAME_SIZE_ERROR",
            ErrorClass::H2RstRefusedStream => "h2_rst_REFUSED_STREAM",
            ErrorClass::H2RstCancel => "h2_rst_CANCEL",
            ErrorClass::H2RstCompressionError => "h2_rst_COMPRESSION_ERROR",
            ErrorClass::H2RstConnectError => "h2_rst_CONNECT_ERROR",
            ErrorClass::H2RstEnhanceYourCalm => "h2_rst_ENHANCE_YOUR_CALM",
            ErrorClass::H2RstInadequateSecurity => "h2_rst_INADEQUATE_SECURITY",
            ErrorClass::H2RstHttp11Required => "h2_rst_HTTP_1_1_REQUIRED",
            ErrorClass::H2RstUnknown => "h2_rst_UNKNOWN",
            ErrorClass::H2GoAway => "h2_goaway",
        }
    }

    /// The class with this stable name.
    pub fn from_name(name: &str) -> Option<ErrorClass> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Classifies an I/O error met while talking to the target.
    pub fn of_io(err: &std::io::Error) -> ErrorClass {
        use std::io::ErrorKind::*;
        match err.kind() {
            ConnectionRefused => ErrorClass::ConnectRefused,
            ConnectionReset | ConnectionAborted => ErrorClass::Reset,
            BrokenPipe | UnexpectedEof => ErrorClass::Closed,
            TimedOut => ErrorClass::Timeout,
            InvalidData => ErrorClass::Protocol,
            _ => ErrorClass::Io,
        }
    }

    /// HTTP/2: the class of a reset with error code `code` (RFC 9113 §7).
    pub fn h2_reset(code: u32) -> ErrorClass {
        match code {
            0 => ErrorClass::H2RstNoError,
            1 => ErrorClass::H2RstProtocolError,
            2 => ErrorClass::H2RstInternalError,
            3 => ErrorClass::H2RstFlowControlError,
            4 => ErrorClass::H2RstSettingsTimeout,
            5 => ErrorClass::H2RstStreamClosed,
            6 => ErrorClass::H2RstFrameSizeError,
            7 => ErrorClass::H2RstRefusedStream,
            8 => ErrorClass::H2RstCancel,
            9 => ErrorClass::H2RstCompressionError,
            10 => ErrorClass::H2RstConnectError,
            11 => ErrorClass::H2RstEnhanceYourCalm,
            12 => ErrorClass::H2RstInadequateSecurity,
            13 => ErrorClass::H2RstHttp11Required,
            _ => ErrorClass::H2RstUnknown,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A snapshot could not be turned back into [`Totals`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The histogram bytes are not a valid HdrHistogram serialisation.
    #[error("invalid latency histogram in snapshot: {0}")]
    Histogram(String),
    /// A status code outside 100..=999.
    #[error("invalid status code {0} in snapshot")]
    Status(u32),
    /// An error class this build does not know.
    #[error("unknown error class {0:?} in snapshot")]
    ErrorClass(String),
    /// The histogram disagrees with the counters.
    #[error("snapshot histogram holds {histogram} samples but {responses} responses were counted")]
    Inconsistent {
        /// Samples in the histogram.
        histogram: u64,
        /// Responses counted by status.
        responses: u64,
    },
}

/// Per-thread recorder: the only statistics code on the hot path.
pub struct Recorder {
    totals_without_status: Totals,
    // Indexed by status code; a fixed table so counting a response never
    // allocates or searches a map.
    status: Box<[u64; 1000]>,
    errors: [u64; ErrorClass::ALL.len()],
    /// Scenario runs: one row per request name, by slot.
    names: Vec<NameTotals>,
    /// Scenario runs: failures by (name slot, message) since the last take;
    /// searched by reference, so a repeated failure allocates nothing.
    messages: Vec<(usize, String, u64)>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder").field("requests", &self.totals_without_status.requests).finish_non_exhaustive()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Recorder {
        Recorder {
            totals_without_status: Totals::default(),
            status: Box::new([0; 1000]),
            errors: [0; ErrorClass::ALL.len()],
            names: Vec::new(),
            messages: Vec::new(),
        }
    }

    /// A recorder that also keeps figures by request name (scenario runs);
    /// slot `i` of [`Recorder::named`] is the i-th (name, method).
    pub fn with_names<'a>(names: impl IntoIterator<Item = (&'a str, &'a str)>) -> Recorder {
        let mut r = Recorder::new();
        r.names = names.into_iter().map(|(name, method)| NameTotals::new(name, method)).collect();
        r
    }

    /// Scenario runs: records a request under name slot `slot` (besides
    /// [`Recorder::response`] or [`Recorder::error`], which count it overall);
    /// `latency` is `None` when it got no response.
    #[inline]
    pub fn named(&mut self, slot: usize, success: bool, latency: Option<Duration>) {
        if let Some(row) = self.names.get_mut(slot) {
            row.record(success, latency);
        }
    }

    /// Scenario runs: counts a failure of name slot `slot` with `message`.
    pub fn failure_message(&mut self, slot: usize, message: &str) {
        if slot >= self.names.len() {
            return;
        }
        // Past the bound, new messages share one key per name.
        let full = self.messages.len() >= names::MAX_MESSAGES;
        let known = |m: &str| self.messages.iter().position(|(s, k, _)| *s == slot && k == m);
        match (known(message), full) {
            (Some(i), _) => self.messages[i].2 += 1,
            (None, false) => self.messages.push((slot, message.to_owned(), 1)),
            (None, true) => match known(names::OTHER_MESSAGES) {
                Some(i) => self.messages[i].2 += 1,
                None => self.messages.push((slot, names::OTHER_MESSAGES.to_owned(), 1)),
            },
        }
    }

    /// Records a request that got a complete response.
    #[inline]
    pub fn response(&mut self, status: u16, success: bool, latency: Duration, sent: u64, received: u64) {
        let t = &mut self.totals_without_status;
        t.requests += 1;
        if success {
            t.successes += 1;
        } else {
            t.failures += 1;
        }
        t.bytes_sent += sent;
        t.bytes_received += received;
        let ns = latency.as_nanos().min(u64::MAX as u128) as u64;
        t.latency_sum_ns += ns;
        record_us(&mut t.histogram, ns / 1000, 1);
        // Statuses come from a three-digit parse, so they are below 1000.
        if let Some(slot) = self.status.get_mut(status as usize) {
            *slot += 1;
        }
    }

    /// Open model: records the latency of a response measured from its actual
    /// send (the one given to [`Recorder::response`] counts from the intended
    /// send time) and how late the send was.
    #[inline]
    pub fn scheduled(&mut self, uncorrected: Duration, lag: Duration) {
        let t = &mut self.totals_without_status;
        record_us(&mut t.uncorrected, uncorrected.as_micros().min(u128::from(u64::MAX)) as u64, 1);
        t.max_lag_us = t.max_lag_us.max(lag.as_micros() as u64);
    }

    /// Records a request that failed without a response.
    #[inline]
    pub fn error(&mut self, class: ErrorClass, sent: u64) {
        let t = &mut self.totals_without_status;
        t.requests += 1;
        t.failures += 1;
        t.bytes_sent += sent;
        self.errors[class.index()] += 1;
    }

    /// Duration mode: counts a request still in flight when the run's grace
    /// after its end ran out; it was sent but has no outcome, so it is not in
    /// `requests`.
    pub fn cancelled(&mut self) {
        self.totals_without_status.cancelled += 1;
    }

    /// Open model: counts `n` requests the schedule had due before the end
    /// that were never sent (the connections could not keep up).
    pub fn missed(&mut self, n: u64) {
        self.totals_without_status.missed += n;
    }

    /// HTTP/2: notes the SETTINGS_MAX_CONCURRENT_STREAMS a target announced
    /// (the lowest one is kept).
    pub fn h2_max_streams(&mut self, n: u64) {
        let t = &mut self.totals_without_status;
        t.h2_max_streams = min_some(t.h2_max_streams, Some(n));
    }

    /// Scenario runs: counts a row taken from feeder `i`.
    pub fn feeder_row(&mut self, i: usize) {
        count_at(&mut self.totals_without_status.feeder_rows, i);
    }

    /// Scenario runs: counts a user (or a run) that found unique feeder `i` out of rows.
    pub fn feeder_exhausted(&mut self, i: usize) {
        count_at(&mut self.totals_without_status.feeder_exhausted, i);
    }

    /// Records a new connection to the target.
    #[inline]
    pub fn connect(&mut self) {
        self.totals_without_status.connects += 1;
    }

    /// Requests recorded since the last [`Recorder::take`].
    pub fn requests(&self) -> u64 {
        self.totals_without_status.requests
    }

    /// Everything recorded since the previous call, leaving the recorder empty.
    pub fn take(&mut self) -> Totals {
        let mut out = std::mem::take(&mut self.totals_without_status);
        // The recorder keeps histograms as large as the latencies seen so
        // far (emptied), so recording does not resize them again every
        // second; the delta gets copies sized the same.
        let t = &mut self.totals_without_status;
        for (kept, taken) in [(&mut t.histogram, &out.histogram), (&mut t.uncorrected, &out.uncorrected)] {
            if taken.distinct_values() > kept.distinct_values() {
                *kept = taken.clone();
                kept.reset();
            }
        }
        for (code, n) in self.status.iter_mut().enumerate() {
            if *n > 0 {
                out.status_codes.insert(code as u16, std::mem::take(n));
            }
        }
        for (class, n) in ErrorClass::ALL.iter().zip(self.errors.iter_mut()) {
            if *n > 0 {
                out.errors.insert(*class, std::mem::take(n));
            }
        }
        out.names = self.names.iter_mut().filter(|r| r.requests > 0).map(NameTotals::take).collect();
        for (slot, message, n) in self.messages.drain(..) {
            names::add_message(&mut out.failure_messages, &self.names[slot].name, &message, n);
        }
        out
    }
}

/// Counts and latencies of some requests: a delta or a running total.
#[derive(Debug, Clone)]
pub struct Totals {
    /// Requests completed, with or without a response.
    pub requests: u64,
    /// Requests whose response counted as success.
    pub successes: u64,
    /// Requests that failed: a non-success status or no response at all.
    pub failures: u64,
    /// Responses by status code.
    pub status_codes: BTreeMap<u16, u64>,
    /// Requests without a response, by cause.
    pub errors: BTreeMap<ErrorClass, u64>,
    /// Request bytes written.
    pub bytes_sent: u64,
    /// Response bytes read (head and body).
    pub bytes_received: u64,
    /// Sum of the latencies of the responses, in nanoseconds.
    pub latency_sum_ns: u64,
    /// Connections established.
    pub connects: u64,
    /// Latencies of the responses, in microseconds (in the open model, from
    /// each request's intended send time).
    pub histogram: Histogram<u64>,
    /// Open model only: latencies from the actual send, in microseconds.
    pub uncorrected: Histogram<u64>,
    /// Open model only: the largest delay of a send behind its schedule, in microseconds.
    pub max_lag_us: u64,
    /// Scenario runs: the requests above by request name.
    pub names: Vec<NameTotals>,
    /// Scenario runs: failures by (name, message).
    pub failure_messages: BTreeMap<(String, String), u64>,
    /// Open model with a duration: requests due before the end that were
    /// never sent.
    pub missed: u64,
    /// Duration mode: requests sent but still without an outcome when the
    /// grace after the end ran out (not in `requests`).
    pub cancelled: u64,
    /// When the first of these requests was sent, in microseconds after the
    /// run's common start instant (`None`: none was sent).
    pub first_send_us: Option<u64>,
    /// When the last of these requests completed, in microseconds after the
    /// run's common start instant (`None`: none completed).
    pub last_done_us: Option<u64>,
    /// HTTP/2: the lowest SETTINGS_MAX_CONCURRENT_STREAMS a target announced
    /// on any connection (`None`: none announced, or not HTTP/2).
    pub h2_max_streams: Option<u64>,
    /// Scenario runs: rows taken from each feeder, by feeder index.
    pub feeder_rows: Vec<u64>,
    /// Scenario runs: users (or agents' runs, with `end_run`) that found a
    /// unique feeder out of rows, by feeder index.
    pub feeder_exhausted: Vec<u64>,
    /// Requests by target address (`IP:port` as connected to).
    pub targets: BTreeMap<String, AddrTotals>,
}

/// One target address's counts (a delta or a running total).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddrTotals {
    /// Requests sent on connections to it (with or without a response).
    pub requests: u64,
    /// Of those, failures.
    pub failures: u64,
    /// Connections opened to it.
    pub connects: u64,
    /// The agent's --allow-target refused it: nothing was sent there.
    pub refused: bool,
}

impl AddrTotals {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &AddrTotals) {
        self.requests += other.requests;
        self.failures += other.failures;
        self.connects += other.connects;
        self.refused |= other.refused;
    }
}

impl Default for Totals {
    fn default() -> Self {
        Totals::empty_with(new_histogram(), new_histogram())
    }
}

impl Totals {
    /// Empty totals whose latency histograms are placeholders
    /// ([`placeholder_histogram`]): for figures kept without latencies (an
    /// agent's own totals, a delta whose latencies travel apart).
    pub fn counts_only() -> Totals {
        Totals::empty_with(placeholder_histogram(), placeholder_histogram())
    }

    /// Empty totals with these (empty) latency histograms.
    fn empty_with(histogram: Histogram<u64>, uncorrected: Histogram<u64>) -> Totals {
        Totals {
            requests: 0,
            successes: 0,
            failures: 0,
            status_codes: BTreeMap::new(),
            errors: BTreeMap::new(),
            bytes_sent: 0,
            bytes_received: 0,
            latency_sum_ns: 0,
            connects: 0,
            histogram,
            uncorrected,
            max_lag_us: 0,
            names: Vec::new(),
            failure_messages: BTreeMap::new(),
            missed: 0,
            cancelled: 0,
            first_send_us: None,
            last_done_us: None,
            h2_max_streams: None,
            feeder_rows: Vec::new(),
            feeder_exhausted: Vec::new(),
            targets: BTreeMap::new(),
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Totals) {
        self.requests += other.requests;
        self.successes += other.successes;
        self.failures += other.failures;
        for (code, n) in &other.status_codes {
            *self.status_codes.entry(*code).or_default() += n;
        }
        for (class, n) in &other.errors {
            *self.errors.entry(*class).or_default() += n;
        }
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.latency_sum_ns += other.latency_sum_ns;
        self.connects += other.connects;
        // Ours grow to hold what is added (up to an hour), so `add` cannot
        // fail; it costs a walk of `other`'s counters, which end at its own
        // largest value.
        self.histogram.add(&other.histogram).expect("growing histograms add");
        self.uncorrected.add(&other.uncorrected).expect("growing histograms add");
        self.max_lag_us = self.max_lag_us.max(other.max_lag_us);
        names::add_names(&mut self.names, &other.names);
        for ((name, message), n) in &other.failure_messages {
            names::add_message(&mut self.failure_messages, name, message, *n);
        }
        self.missed += other.missed;
        self.cancelled += other.cancelled;
        self.first_send_us = min_some(self.first_send_us, other.first_send_us);
        self.last_done_us = self.last_done_us.max(other.last_done_us);
        self.h2_max_streams = min_some(self.h2_max_streams, other.h2_max_streams);
        add_counts(&mut self.feeder_rows, &other.feeder_rows);
        add_counts(&mut self.feeder_exhausted, &other.feeder_exhausted);
        for (addr, t) in &other.targets {
            match self.targets.get_mut(addr) {
                Some(mine) => mine.add(t),
                None => {
                    self.targets.insert(addr.clone(), *t);
                }
            }
        }
    }

    /// The time from the first request sent to the last one completed: the
    /// run's real span (`None` when nothing completed).
    pub fn span(&self) -> Option<Duration> {
        let (first, last) = (self.first_send_us?, self.last_done_us?);
        Some(Duration::from_micros(last.saturating_sub(first)))
    }

    /// Responses received (requests with a latency).
    pub fn responses(&self) -> u64 {
        self.histogram.len()
    }

    /// Mean latency of the responses, if any.
    pub fn mean_latency(&self) -> Option<Duration> {
        let n = self.responses();
        (n > 0).then(|| Duration::from_nanos(self.latency_sum_ns / n))
    }

    /// The latency at quantile `q` (0.0..=1.0) of the responses, if any.
    pub fn latency_at(&self, q: f64) -> Option<Duration> {
        (self.responses() > 0).then(|| Duration::from_micros(self.histogram.value_at_quantile(q)))
    }

    /// Encodes this delta as a protobuf snapshot.
    pub fn to_snapshot(&self, elapsed: Duration) -> Snapshot {
        let histogram = serialize(&self.histogram);
        // Closed-model runs leave it empty; sending nothing saves the bytes.
        let histogram_uncorrected = if self.uncorrected.is_empty() { Vec::new() } else { serialize(&self.uncorrected) };
        Snapshot {
            requests: self.requests,
            successes: self.successes,
            failures: self.failures,
            status_codes: self
                .status_codes
                .iter()
                .map(|(s, n)| StatusCount { status: u32::from(*s), count: *n })
                .collect(),
            errors: self.errors.iter().map(|(c, n)| ErrorCount { class: c.name().to_owned(), count: *n }).collect(),
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
            latency_sum_ns: self.latency_sum_ns,
            histogram,
            elapsed_us: elapsed.as_micros().min(u64::MAX as u128) as u64,
            connects: self.connects,
            histogram_uncorrected,
            max_lag_us: self.max_lag_us,
            // Not a delta: the agent fills it in from its grant counters.
            taken_total: 0,
            // A level the agent fills in from its threads, not a delta.
            in_flight: 0,
            names: self
                .names
                .iter()
                .map(|r| NameStats {
                    name: r.name.clone(),
                    method: r.method.clone(),
                    requests: r.requests,
                    failures: r.failures,
                    latency_sum_ns: r.latency_sum_ns,
                    histogram: serialize(&r.histogram),
                })
                .collect(),
            failure_messages: self
                .failure_messages
                .iter()
                .map(|((name, message), n)| FailureMessage { name: name.clone(), message: message.clone(), count: *n })
                .collect(),
            missed: self.missed,
            cancelled: self.cancelled,
            first_send_us: self.first_send_us,
            last_done_us: self.last_done_us,
            h2_max_streams: self.h2_max_streams,
            feeder_rows: self.feeder_rows.clone(),
            feeder_exhausted: self.feeder_exhausted.clone(),
            target_addresses: self
                .targets
                .iter()
                .map(|(a, t)| volley_proto::TargetAddress {
                    address: a.clone(),
                    requests: t.requests,
                    failures: t.failures,
                    connects: t.connects,
                    refused: t.refused,
                })
                .collect(),
        }
    }

    /// Decodes a protobuf snapshot, checking it is self-consistent.
    pub fn from_snapshot(s: &Snapshot) -> Result<Totals, DecodeError> {
        let histogram = deserialize(&s.histogram)?;
        let uncorrected =
            if s.histogram_uncorrected.is_empty() { new_histogram() } else { deserialize(&s.histogram_uncorrected)? };
        let t = Totals::decode_counts(s, histogram, uncorrected)?;
        let responses: u64 = t.status_codes.values().sum();
        if responses != t.histogram.len() {
            return Err(DecodeError::Inconsistent { histogram: t.histogram.len(), responses });
        }
        if !t.uncorrected.is_empty() && t.uncorrected.len() != responses {
            return Err(DecodeError::Inconsistent { histogram: t.uncorrected.len(), responses });
        }
        Ok(t)
    }

    /// Decodes a protobuf snapshot's counts, checked as [`Totals::from_snapshot`]
    /// checks them, but not its latencies: those are left for the caller
    /// (who also checks that they count the responses), and the totals'
    /// histograms are placeholders ([`Totals::counts_only`]).
    pub fn counts_from_snapshot(s: &Snapshot) -> Result<Totals, DecodeError> {
        Totals::decode_counts(s, placeholder_histogram(), placeholder_histogram())
    }

    fn decode_counts(
        s: &Snapshot,
        histogram: Histogram<u64>,
        uncorrected: Histogram<u64>,
    ) -> Result<Totals, DecodeError> {
        let mut status_codes = BTreeMap::new();
        for sc in &s.status_codes {
            let code = u16::try_from(sc.status)
                .ok()
                .filter(|c| (100..1000).contains(c))
                .ok_or(DecodeError::Status(sc.status))?;
            *status_codes.entry(code).or_default() += sc.count;
        }
        let mut errors = BTreeMap::new();
        for e in &s.errors {
            let class = ErrorClass::from_name(&e.class).ok_or_else(|| DecodeError::ErrorClass(e.class.clone()))?;
            *errors.entry(class).or_default() += e.count;
        }
        let mut names = Vec::with_capacity(s.names.len());
        for n in &s.names {
            let histogram = deserialize(&n.histogram)?;
            if histogram.len() > n.requests || n.failures > n.requests {
                return Err(DecodeError::Inconsistent { histogram: histogram.len(), responses: n.requests });
            }
            let row = NameTotals {
                name: n.name.clone(),
                method: n.method.clone(),
                requests: n.requests,
                failures: n.failures,
                latency_sum_ns: n.latency_sum_ns,
                histogram,
            };
            names::add_names(&mut names, std::slice::from_ref(&row));
        }
        let mut targets = BTreeMap::new();
        for t in s.target_addresses.iter().take(MAX_TARGET_ADDRESSES) {
            if t.failures > t.requests {
                return Err(DecodeError::Inconsistent { histogram: t.failures, responses: t.requests });
            }
            let row =
                AddrTotals { requests: t.requests, failures: t.failures, connects: t.connects, refused: t.refused };
            targets.entry(t.address.clone()).or_insert_with(AddrTotals::default).add(&row);
        }
        let mut failure_messages = BTreeMap::new();
        for f in &s.failure_messages {
            names::add_message(&mut failure_messages, &f.name, &f.message, f.count);
        }
        Ok(Totals {
            requests: s.requests,
            successes: s.successes,
            failures: s.failures,
            status_codes,
            errors,
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
            latency_sum_ns: s.latency_sum_ns,
            connects: s.connects,
            histogram,
            uncorrected,
            max_lag_us: s.max_lag_us,
            names,
            failure_messages,
            missed: s.missed,
            cancelled: s.cancelled,
            first_send_us: s.first_send_us,
            last_done_us: s.last_done_us,
            h2_max_streams: s.h2_max_streams,
            feeder_rows: s.feeder_rows.clone(),
            feeder_exhausted: s.feeder_exhausted.clone(),
            targets,
        })
    }
}

/// Adds counts by index, growing `into` as needed.
fn add_counts(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// Counts one at `i`, growing `v` as needed.
fn count_at(v: &mut Vec<u64>, i: usize) {
    if v.len() <= i {
        v.resize(i + 1, 0);
    }
    v[i] += 1;
}
/// Most target addresses a snapshot's rows are read for: a name with more
/// addresses than this is unusual, and the report stays bounded.
pub const MAX_TARGET_ADDRESSES: usize = 1024;

/// The smaller of two optional values, ignoring a missing one.
fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        _ => a.or(b),
    }
}

fn serialize(h: &Histogram<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    // Serialising into a Vec cannot fail: the only errors are I/O errors of
    // the writer, and writing to a Vec does not fail.
    V2Serializer::new().serialize(h, &mut out).expect("serialising a histogram into memory");
    out
}

fn deserialize(bytes: &[u8]) -> Result<Histogram<u64>, DecodeError> {
    let mut decoded: Histogram<u64> =
        Deserializer::new().deserialize(&mut &bytes[..]).map_err(|e| DecodeError::Histogram(format!("{e:?}")))?;
    // An agent's histogram has our layout and only the range it needed (the
    // decoder sizes it from the sender's bounds): it is used as it is, and
    // made to grow like ours when more is added to it.
    if decoded.low() == 1 && decoded.sigfig() == SIGNIFICANT_DIGITS && decoded.max() <= MAX_LATENCY_US {
        decoded.auto(true);
        return Ok(decoded);
    }
    // Other bounds: re-home the samples into a histogram of ours, so later
    // additions cannot fail, clamping them to our range.
    let mut h = new_histogram();
    for v in decoded.iter_recorded() {
        record_us(&mut h, v.value_iterated_to(), v.count_at_value());
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_small_hold_nothing_and_add_nothing() {
        let p = placeholder_histogram();
        assert!(p.is_empty());
        assert!(p.distinct_values() <= 4, "{} counters", p.distinct_values());
        // An empty placeholder added to one of ours leaves it as it was,
        // and counts-only totals add up like any.
        let mut ours = new_histogram();
        record_us(&mut ours, 1234, 3);
        let before = ours.clone();
        ours.add(&p).unwrap();
        assert!(ours == before);
        let mut t = Totals { requests: 3, latency_sum_ns: 9, ..Totals::default() };
        t.add(&Totals { requests: 2, ..Totals::counts_only() });
        assert_eq!((t.requests, t.histogram.len()), (5, 0));
        let mut counts = Totals::counts_only();
        counts.add(&Totals { requests: 2, ..Totals::counts_only() });
        assert_eq!(counts.requests, 2);
        assert!(counts.histogram.distinct_values() <= 4);
    }

    #[test]
    fn counts_from_a_snapshot_are_the_full_decode_without_latencies() {
        let mut r = Recorder::new();
        r.response(200, true, Duration::from_micros(1500), 10, 20);
        r.response(503, false, Duration::from_micros(90_000), 10, 20);
        let snap = r.take().to_snapshot(Duration::from_secs(1));
        let full = Totals::from_snapshot(&snap).unwrap();
        let counts = Totals::counts_from_snapshot(&snap).unwrap();
        assert_eq!((counts.requests, &counts.status_codes, counts.histogram.len()), (2, &full.status_codes, 0));
        assert_eq!(counts.latency_sum_ns, full.latency_sum_ns);
    }

    fn recorded(latencies_us: &[u64], status: u16) -> Totals {
        let mut r = Recorder::new();
        for &us in latencies_us {
            r.response(status, status == 200, Duration::from_micros(us), 10, 20);
        }
        r.take()
    }

    #[test]
    fn take_empties_the_recorder() {
        let mut r = Recorder::new();
        r.response(200, true, Duration::from_micros(150), 40, 100);
        r.error(ErrorClass::ConnectRefused, 0);
        let t = r.take();
        assert_eq!((t.requests, t.successes, t.failures), (2, 1, 1));
        assert_eq!(t.status_codes.get(&200), Some(&1));
        assert_eq!(t.errors.get(&ErrorClass::ConnectRefused), Some(&1));
        assert_eq!(t.responses(), 1);
        let again = r.take();
        assert_eq!(again.requests, 0);
        assert!(again.status_codes.is_empty() && again.errors.is_empty());
        assert_eq!(again.responses(), 0);
    }

    #[test]
    fn merged_percentiles_equal_those_of_all_samples() {
        // Two "agents" with very different latency distributions.
        let a: Vec<u64> = (1..=5000).map(|i| 100 + i % 700).collect();
        let b: Vec<u64> = (1..=3000).map(|i| 2_000 + (i * 37) % 90_000).collect();
        let mut merged = Totals::default();
        for part in [recorded(&a, 200), recorded(&b, 200)] {
            let wire = part.to_snapshot(Duration::from_secs(1));
            merged.add(&Totals::from_snapshot(&wire).unwrap());
        }
        let all: Vec<u64> = a.iter().chain(&b).copied().collect();
        let one = recorded(&all, 200);
        for q in [0.5, 0.66, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(merged.latency_at(q), one.latency_at(q), "quantile {q}");
        }
        assert_eq!(merged.latency_sum_ns, one.latency_sum_ns);
        assert_eq!(merged.requests, 8000);
        // And the merged p50 is within histogram precision of the true median.
        let mut sorted = all.clone();
        sorted.sort_unstable();
        let exact = sorted[sorted.len() / 2 - 1] as f64;
        let p50 = merged.latency_at(0.5).unwrap().as_micros() as f64;
        assert!((p50 - exact).abs() / exact < 0.001, "p50 {p50} vs {exact}");
    }

    #[test]
    fn snapshot_round_trip_keeps_everything() {
        let mut r = Recorder::new();
        r.response(500, false, Duration::from_millis(3), 50, 70);
        r.response(200, true, Duration::from_millis(1), 50, 70);
        r.scheduled(Duration::from_micros(900), Duration::from_millis(7));
        r.scheduled(Duration::from_micros(400), Duration::ZERO);
        r.error(ErrorClass::Timeout, 50);
        r.connect();
        let t = r.take();
        let mut back = Totals::default();
        back.add(&Totals::from_snapshot(&t.to_snapshot(Duration::from_secs(2))).unwrap());
        assert_eq!(back.uncorrected.len(), 2);
        assert_eq!(back.uncorrected.max(), t.uncorrected.max());
        assert_eq!(back.max_lag_us, 7000);
        assert_eq!(back.requests, 3);
        assert_eq!(back.failures, 2);
        assert_eq!(back.status_codes, t.status_codes);
        assert_eq!(back.errors, t.errors);
        assert_eq!(back.bytes_sent, 150);
        assert_eq!(back.connects, 1);
        assert_eq!(back.histogram, t.histogram);
    }

    #[test]
    fn histograms_grow_only_as_far_as_their_values_and_clamp_at_an_hour() {
        let fast = recorded(&[150, 900, 2_000], 200);
        // Up to 2 ms: three buckets of 1,024 counters, not the 23,552 an hour needs.
        assert!(fast.histogram.distinct_values() <= 4096, "{}", fast.histogram.distinct_values());
        let back = Totals::from_snapshot(&fast.to_snapshot(Duration::ZERO)).unwrap();
        assert_eq!(back.histogram, fast.histogram);
        assert!(back.histogram.distinct_values() <= 4096);
        // A slow delta added to it grows it; the sum is exact.
        let mut sum = back;
        let slow = recorded(&[7_200_000_000, 50_000], 200);
        assert_eq!(slow.histogram.max(), sum.histogram.highest_equivalent(MAX_LATENCY_US), "clamped at an hour");
        sum.add(&Totals::from_snapshot(&slow.to_snapshot(Duration::ZERO)).unwrap());
        assert_eq!(sum.histogram.len(), 5);
        assert_eq!(sum.latency_at(1.0), slow.latency_at(1.0));
        assert_eq!(sum.latency_at(0.0), fast.latency_at(0.0));
        // A recorder keeps its grown size across takes, and hands out empty deltas when idle.
        let mut r = Recorder::new();
        r.response(200, true, Duration::from_millis(100), 1, 1);
        let first = r.take();
        assert_eq!(first.histogram.len(), 1);
        assert!(r.take().histogram.is_empty());
    }

    #[test]
    fn inconsistent_snapshots_are_rejected() {
        let mut s = recorded(&[100, 200], 200).to_snapshot(Duration::ZERO);
        s.status_codes[0].count = 5;
        assert!(matches!(Totals::from_snapshot(&s), Err(DecodeError::Inconsistent { .. })));
        let mut s = recorded(&[100], 200).to_snapshot(Duration::ZERO);
        s.histogram.truncate(3);
        assert!(matches!(Totals::from_snapshot(&s), Err(DecodeError::Histogram(_))));
        let mut s = recorded(&[100], 200).to_snapshot(Duration::ZERO);
        s.errors.push(ErrorCount { class: "gremlins".into(), count: 1 });
        assert!(matches!(Totals::from_snapshot(&s), Err(DecodeError::ErrorClass(_))));
    }

    #[test]
    fn names_merge_exactly_across_threads_and_snapshots() {
        let names = [("login", "POST"), ("list items", "GET"), ("login", "GET")];
        let mut one = Recorder::with_names(names);
        let mut a = Recorder::with_names(names);
        let mut b = Recorder::with_names(names);
        for i in 0..3000u64 {
            let (slot, ok) = ((i % 3) as usize, i % 7 != 0);
            let latency = (i % 11 != 0).then(|| Duration::from_micros(50 + i * 13 % 5000));
            for r in [&mut one, if i % 2 == 0 { &mut a } else { &mut b }] {
                r.named(slot, ok, latency);
                if !ok {
                    r.failure_message(slot, &format!("status {} not in [200]", 400 + i % 2));
                }
            }
        }
        let whole = one.take();
        let mut merged = Totals::default();
        for r in [&mut a, &mut b] {
            merged.add(&Totals::from_snapshot(&r.take().to_snapshot(Duration::from_secs(1))).unwrap());
        }
        assert_eq!(merged.names.len(), 3);
        for row in &whole.names {
            let m = merged.names.iter().find(|m| m.name == row.name && m.method == row.method).unwrap();
            assert_eq!((m.requests, m.failures, m.latency_sum_ns), (row.requests, row.failures, row.latency_sum_ns));
            assert_eq!(m.histogram, row.histogram);
            assert_eq!(m.histogram.value_at_quantile(0.99), row.histogram.value_at_quantile(0.99));
        }
        assert_eq!(merged.failure_messages, whole.failure_messages);
        assert_eq!(whole.failure_messages.values().sum::<u64>(), whole.names.iter().map(|r| r.failures).sum::<u64>());
        // Taken: the recorder starts again from zero.
        assert!(one.take().names.is_empty());
    }

    #[test]
    fn failure_messages_are_bounded() {
        let mut t = BTreeMap::new();
        for i in 0..(names::MAX_MESSAGES as u64 + 50) {
            names::add_message(&mut t, "n", &format!("JSON /count is {i}, expected 3"), 1);
        }
        assert_eq!(t.len(), names::MAX_MESSAGES + 1);
        assert_eq!(t[&("n".to_owned(), names::OTHER_MESSAGES.to_owned())], 50);
        // The same bound on a thread's recorder, before anything is merged.
        let mut r = Recorder::with_names([("n", "GET")]);
        for i in 0..(names::MAX_MESSAGES as u64 + 50) {
            r.failure_message(0, &format!("JSON /count is {i}, expected 3"));
            r.failure_message(0, "JSON /count is 0, expected 3");
        }
        let t = r.take().failure_messages;
        assert_eq!(t.len(), names::MAX_MESSAGES + 1);
        assert_eq!(t[&("n".to_owned(), names::OTHER_MESSAGES.to_owned())], 50);
        assert_eq!(t[&("n".to_owned(), "JSON /count is 0, expected 3".to_owned())], 151);
    }
}
