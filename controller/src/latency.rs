//! Latency figures in milliseconds as reports show them, taken from a
//! merged HdrHistogram (the mean from the exact latency sum): one shape for
//! the whole run, each stage, and each request name.

use serde::{Deserialize, Serialize};
use volley_stats::Totals;

/// Latency figures in milliseconds; all `null` in JSON when nothing answered.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Fastest response.
    pub min: Option<f64>,
    /// Mean (exact: latency sum over count).
    pub mean: Option<f64>,
    /// Standard deviation.
    pub stdev: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 66th percentile.
    pub p66: Option<f64>,
    /// 75th percentile.
    pub p75: Option<f64>,
    /// 80th percentile.
    pub p80: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 98th percentile.
    pub p98: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p999: Option<f64>,
    /// Slowest response.
    pub max: Option<f64>,
}

pub(crate) fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Latency {
    /// Latency figures of `t`'s responses (the mean is exact, from the sum).
    pub fn of(t: &Totals) -> Latency {
        Latency::of_histogram(&t.histogram, t.mean_latency().map(|d| d.as_secs_f64() * 1000.0))
    }

    /// Latency figures of a histogram in microseconds, with the mean given
    /// (`None`: the histogram's own mean).
    pub fn of_histogram(h: &hdrhistogram::Histogram<u64>, mean: Option<f64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let q = |p: f64| Some(ms(h.value_at_quantile(p / 100.0)));
        Latency {
            min: Some(ms(h.min())),
            mean: mean.or(Some(h.mean() / 1000.0)),
            stdev: Some(h.stdev() / 1000.0),
            p50: q(50.0),
            p66: q(66.0),
            p75: q(75.0),
            p80: q(80.0),
            p90: q(90.0),
            p95: q(95.0),
            p98: q(98.0),
            p99: q(99.0),
            p999: q(99.9),
            max: Some(ms(h.max())),
        }
    }

    pub(crate) fn at(&self, percent: f64) -> Option<f64> {
        match percent {
            50.0 => self.p50,
            66.0 => self.p66,
            75.0 => self.p75,
            80.0 => self.p80,
            90.0 => self.p90,
            95.0 => self.p95,
            98.0 => self.p98,
            99.0 => self.p99,
            99.9 => self.p999,
            _ => self.max,
        }
    }
}

impl Latency {
    /// The figure a `--fail-if` latency metric names (`min`, `mean`, `p50`,
    /// … `p999`, `max`): `None` for a name that is not a latency metric,
    /// `Some(None)` when nothing answered.
    pub fn metric(&self, name: &str) -> Option<Option<f64>> {
        Some(match name {
            "min" => self.min,
            "mean" => self.mean,
            "p50" => self.p50,
            "p66" => self.p66,
            "p75" => self.p75,
            "p80" => self.p80,
            "p90" => self.p90,
            "p95" => self.p95,
            "p98" => self.p98,
            "p99" => self.p99,
            "p999" => self.p999,
            "max" => self.max,
            _ => return None,
        })
    }
}
