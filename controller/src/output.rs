//! Report outputs beyond text and JSON: the per-second series as CSV, and the
//! merged interval histograms as an HdrHistogram interval log that
//! HdrHistogram's own tools (HistogramLogProcessor, plotters) read.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;

use crate::series::{Second, SecondRow};

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

/// Why the interval log could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum HdrLogError {
    /// The log's header.
    #[error("cannot begin the log")]
    Begin(#[source] std::io::Error),
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
/// HdrHistogram interval log, V2 + DEFLATE encoded.
pub fn hdr_log(seconds: &[Second], started: SystemTime) -> Result<Vec<u8>, HdrLogError> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut log = IntervalLogWriterBuilder::new()
        .add_comment("Volley: merged latency per second, in microseconds")
        .with_start_time(started)
        .with_base_time(started)
        // Microseconds in the histograms; the max column reads in milliseconds.
        .with_max_value_divisor(1000.0)
        .begin_log_with(&mut out, &mut serializer)
        .map_err(HdrLogError::Begin)?;
    for (i, s) in seconds.iter().enumerate() {
        log.write_histogram(&s.totals.histogram, Duration::from_secs(i as u64), Duration::from_secs(1), None)
            .map_err(|e| HdrLogError::Second { second: i, detail: format!("{e:?}") })?;
    }
    Ok(out)
}
