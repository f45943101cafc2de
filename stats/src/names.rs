//! Figures by request name, for scenario runs: the rows of the Locust-style
//! per-name table, and failures by message.
//!
//! A worker thread's [`Recorder`](crate::Recorder) gets the scenario's names
//! once, as slots; recording by slot index then costs what recording a plain
//! request costs. Names travel and merge like the rest of [`Totals`](crate::Totals):
//! counters add, histograms add exactly.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::new_histogram;

/// Distinct (name, message) failure keys kept; beyond, failures count under
/// [`OTHER_MESSAGES`], so messages carrying varying values cannot grow
/// memory without bound.
pub const MAX_MESSAGES: usize = 100;

/// The message failures past [`MAX_MESSAGES`] are counted under.
pub const OTHER_MESSAGES: &str = "(other failure messages)";

/// One request name's figures.
#[derive(Debug, Clone)]
pub struct NameTotals {
    /// The request's name (a scenario's `name`, or `METHOD path`).
    pub name: String,
    /// Its HTTP method.
    pub method: String,
    /// Requests sent under this name, with or without a response.
    pub requests: u64,
    /// Those that failed: no response, a failed assertion, or a bad status.
    pub failures: u64,
    /// Sum of the latencies of its responses, in nanoseconds.
    pub latency_sum_ns: u64,
    /// Latencies of its responses, in microseconds.
    pub histogram: Histogram<u64>,
}

impl NameTotals {
    /// An empty row for `name` and `method`.
    pub fn new(name: &str, method: &str) -> NameTotals {
        NameTotals {
            name: name.to_owned(),
            method: method.to_owned(),
            requests: 0,
            failures: 0,
            latency_sum_ns: 0,
            histogram: new_histogram(),
        }
    }

    /// Records one request; `latency` is `None` when it got no response.
    #[inline]
    pub fn record(&mut self, success: bool, latency: Option<Duration>) {
        self.requests += 1;
        self.failures += u64::from(!success);
        if let Some(l) = latency {
            let ns = l.as_nanos().min(u64::MAX as u128) as u64;
            self.latency_sum_ns += ns;
            crate::record_us(&mut self.histogram, ns / 1000, 1);
        }
    }

    /// Adds another row of the same name into this one.
    pub fn add(&mut self, other: &NameTotals) {
        self.requests += other.requests;
        self.failures += other.failures;
        self.latency_sum_ns += other.latency_sum_ns;
        // Ours grow to hold what is added, so this cannot fail.
        self.histogram.add(&other.histogram).expect("growing histograms add");
    }

    /// Hands out what was recorded and starts again from zero.
    pub fn take(&mut self) -> NameTotals {
        let out = self.clone();
        self.requests = 0;
        self.failures = 0;
        self.latency_sum_ns = 0;
        self.histogram.reset();
        out
    }

    /// Mean latency of its responses, if any.
    pub fn mean_latency(&self) -> Option<Duration> {
        let n = self.histogram.len();
        (n > 0).then(|| Duration::from_nanos(self.latency_sum_ns / n))
    }
}

/// Adds `rows` into `into`, matching rows by name and method.
pub fn add_names(into: &mut Vec<NameTotals>, rows: &[NameTotals]) {
    for row in rows {
        match into.iter_mut().find(|r| r.name == row.name && r.method == row.method) {
            Some(r) => r.add(row),
            None => into.push(row.clone()),
        }
    }
}

/// Adds `n` failures of `name` with `message`, within [`MAX_MESSAGES`] keys.
pub fn add_message(into: &mut BTreeMap<(String, String), u64>, name: &str, message: &str, n: u64) {
    let key = (name.to_owned(), message.to_owned());
    if let Some(count) = into.get_mut(&key) {
        *count += n;
    } else if into.len() < MAX_MESSAGES {
        into.insert(key, n);
    } else {
        *into.entry((name.to_owned(), OTHER_MESSAGES.to_owned())).or_default() += n;
    }
}
