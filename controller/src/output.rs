//! Report outputs beyond text and JSON: the per-second series as CSV, and the
//! merged interval histograms as an HdrHistogram interval log that
//! HdrHistogram's own tools (HistogramLogProcessor, plotters) read, written
//! as the run goes.

use std::fmt::Write as _;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;

use crate::series::SecondRow;

/// The series as CSV: a header, then one row per second. Empty cells where a
/// second had no responses to take percentiles of.
pub fn csv(rows: &[SecondRow]) -> String {
    let mut out = String::from("second,requests,successes,failures,rps,p50_ms,p90_ms,p99_ms,max_ms\n");
    let cell = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.3}"));
    for r in rows {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{}",
            r.second,
            r.requests,
            r.successes,
            r.failures,
            r.requests,
            cell(r.p50_ms),
            cell(r.p90_ms),
            cell(r.p99_ms),
            cell(r.max_ms)
        );
    }
    out
}

/// Why the interval log could not be written.
#[derive(Debug, thiserror::Error)]
pub enum HdrLogError {
    /// The file could not be created, or its header written.
    #[error("cannot create {}", path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A second could not be written to the file.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// One second's histogram (the serializer's error has no `Display`, so
    /// its `Debug` text is kept).
    #[error("cannot encode second {second}: {detail}")]
    Second {
        /// Which second.
        second: usize,
        /// The serializer's account.
        detail: String,
    },
}

/// The per-second merged histograms (latency in microseconds) as an
/// HdrHistogram interval log, V2 + DEFLATE encoded, written to its file as
/// the run goes: the series hands each second's histogram over once it is
/// complete, and a thread of its own encodes and writes it, so neither the
/// merge loop waits on the disk nor the histograms pile up in memory.
#[derive(Debug)]
pub struct HdrLog {
    seconds: mpsc::Sender<(usize, Histogram<u64>)>,
    writer: std::thread::JoinHandle<Result<(), HdrLogError>>,
}

/// Histograms in the log are in microseconds; the max column reads in milliseconds.
const MAX_VALUE_DIVISOR: f64 = 1000.0;

impl HdrLog {
    /// Creates the file at `path` and writes the log's header, with
    /// `started` as the run's start time.
    pub fn create(path: &Path, started: SystemTime) -> Result<HdrLog, HdrLogError> {
        let create = |source| HdrLogError::Create { path: path.to_owned(), source };
        let mut out = BufWriter::new(std::fs::File::create(path).map_err(create)?);
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment("Volley: merged latency per second, in microseconds")
            .with_start_time(started)
            .with_base_time(started)
            .with_max_value_divisor(MAX_VALUE_DIVISOR)
            .begin_log_with(&mut out, &mut serializer)
            .map_err(create)?;
        let (seconds, received) = mpsc::channel();
        let path = path.to_owned();
        let writer = std::thread::Builder::new()
            .name("hdr-log".into())
            .spawn(move || write_seconds(out, serializer, &received, &path))
            .map_err(create)?;
        Ok(HdrLog { seconds, writer })
    }

    /// Writes second `i`'s histogram; seconds come in order, from 0.
    pub fn second(&self, i: usize, histogram: Histogram<u64>) {
        // A send fails only when the writer stopped on an error, which
        // `finish` reports.
        let _ = self.seconds.send((i, histogram));
    }

    /// Waits for every second to be written and the file to be flushed.
    pub fn finish(self) -> Result<(), HdrLogError> {
        drop(self.seconds);
        self.writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// The writer thread: encodes and appends each second it receives.
fn write_seconds(
    mut out: BufWriter<std::fs::File>,
    mut serializer: V2DeflateSerializer,
    seconds: &mpsc::Receiver<(usize, Histogram<u64>)>,
    path: &Path,
) -> Result<(), HdrLogError> {
    let write = |source| HdrLogError::Write { path: path.to_owned(), source };
    let mut line = Vec::new();
    for (i, h) in seconds {
        // The crate writes interval lines only through a log writer, which
        // begins with a `#[MaxValueDivisor]` header line: encode into a
        // scratch buffer and keep only the interval line.
        line.clear();
        IntervalLogWriterBuilder::new()
            .with_max_value_divisor(MAX_VALUE_DIVISOR)
            .begin_log_with(&mut line, &mut serializer)
            .map_err(write)?
            .write_histogram(&h, Duration::from_secs(i as u64), Duration::from_secs(1), None)
            .map_err(|e| HdrLogError::Second { second: i, detail: format!("{e:?}") })?;
        let header = line.iter().position(|&b| b == b'\n').map_or(0, |n| n + 1);
        out.write_all(&line[header..]).map_err(write)?;
    }
    out.flush().map_err(write)
}
