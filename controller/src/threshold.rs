//! `--fail-if` thresholds: conditions a run must meet, checked against the
//! merged report, so a CI pipeline fails when a load test does.
//!
//! An expression is `METRIC OP VALUE`: `p99 < 200ms`, `error_rate < 1%`,
//! `rps > 5000`. Latency metrics (`min mean p50 p66 p75 p80 p90 p95 p98 p99
//! p999 max`) take `us`, `ms` or `s`; `error_rate` takes `%` or a fraction;
//! `rps`, `requests` and `failures` take plain numbers; `missed` (open model:
//! requests due but never sent) takes a plain count or `%` of the requests
//! the schedule asked for. The condition is what
//! must hold: when it does not, the threshold fails.
//!
//! Against a baseline run (`--baseline FILE`, `controller compare`), the
//! bound may be the baseline's own figure times a factor: `p99 < baseline *
//! 1.10` (at most 10 % slower), `rps > baseline * 0.95`; `baseline` alone is
//! `baseline * 1`.
//!
//! With stages (`--stage`), a condition may be limited to one stage:
//! `p99 < 200ms @ stage 2` (stages count from 1) is judged on the figures
//! of that stage's seconds alone (`report`'s per-stage rows); `missed` is
//! only known for the whole run.
//!
//! The report measures each metric (`report::Report::build`);
//! this module only parses conditions and judges a measured value.

use std::fmt;

use serde::Serialize;

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, actual: f64, bound: f64) -> bool {
        match self {
            Op::Lt => actual < bound,
            Op::Le => actual <= bound,
            Op::Gt => actual > bound,
            Op::Ge => actual >= bound,
        }
    }
}

/// What a metric measures, for its units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    LatencyMs,
    Ratio,
    Count,
    /// A count, or with `%` a share of what was asked.
    CountOrShare,
}

const METRICS: [(&str, Kind); 17] = [
    ("min", Kind::LatencyMs),
    ("mean", Kind::LatencyMs),
    ("p50", Kind::LatencyMs),
    ("p66", Kind::LatencyMs),
    ("p75", Kind::LatencyMs),
    ("p80", Kind::LatencyMs),
    ("p90", Kind::LatencyMs),
    ("p95", Kind::LatencyMs),
    ("p98", Kind::LatencyMs),
    ("p99", Kind::LatencyMs),
    ("p999", Kind::LatencyMs),
    ("max", Kind::LatencyMs),
    ("error_rate", Kind::Ratio),
    ("rps", Kind::Count),
    ("requests", Kind::Count),
    ("failures", Kind::Count),
    ("missed", Kind::CountOrShare),
];

/// One parsed `--fail-if` expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    text: String,
    metric: &'static str,
    op: Op,
    /// In the metric's unit: ms for latencies, a fraction for ratios; for a
    /// relative bound, the factor on the baseline's figure.
    bound: f64,
    /// Whether the bound is `baseline * bound`.
    relative: bool,
    /// `@ stage N`: the stage (from 0) the condition is judged on.
    stage: Option<usize>,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why an expression was refused; each names the expression as given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    /// No `<`, `<=`, `>`, `>=`.
    #[error("{0:?} has no comparison; write e.g. 'p99 < 200ms'")]
    NoComparison(String),
    /// A metric this module does not know.
    #[error("{text:?}: unknown metric {name:?}; use one of {}", METRICS.map(|(m, _)| m).join(", "))]
    UnknownMetric {
        /// The expression.
        text: String,
        /// The metric as written.
        name: String,
    },
    /// The bound is not a number.
    #[error("{text:?}: {value:?} is not a number")]
    NotANumber {
        /// The expression.
        text: String,
        /// The bound as written.
        value: String,
    },
    /// A latency bound without a unit.
    #[error("{text:?}: give {metric} a unit: us, ms or s")]
    NoUnit {
        /// The expression.
        text: String,
        /// The metric.
        metric: &'static str,
    },
    /// A unit that does not fit the metric.
    #[error("{text:?}: {unit:?} is not a unit for {metric}")]
    WrongUnit {
        /// The expression.
        text: String,
        /// The unit as written.
        unit: String,
        /// The metric.
        metric: &'static str,
    },
    /// An `@ …` suffix that is not `@ stage N` with N from 1.
    #[error("{text:?}: {suffix:?} is not a stage; write e.g. '@ stage 2' (stages count from 1)")]
    BadStage {
        /// The expression.
        text: String,
        /// What follows `@`.
        suffix: String,
    },
    /// A metric only known for the whole run, limited to a stage.
    #[error("{text:?}: {metric} is only measured for the whole run, not per stage")]
    NotPerStage {
        /// The expression.
        text: String,
        /// The metric.
        metric: &'static str,
    },
}

impl std::str::FromStr for Threshold {
    type Err = ThresholdError;

    fn from_str(text: &str) -> Result<Threshold, ThresholdError> {
        let (cond, stage) = match text.split_once('@') {
            None => (text, None),
            Some((cond, suffix)) => {
                let bad = || ThresholdError::BadStage { text: text.to_owned(), suffix: suffix.trim().to_owned() };
                let n = suffix.trim().strip_prefix("stage").ok_or_else(bad)?;
                let n: usize = n.trim().parse().ok().filter(|n| *n >= 1).ok_or_else(bad)?;
                (cond, Some(n - 1))
            }
        };
        let mut parsed = Threshold::condition(text, cond)?;
        if stage.is_some() && parsed.metric.starts_with("missed") {
            return Err(ThresholdError::NotPerStage { text: text.to_owned(), metric: "missed" });
        }
        parsed.text = text.trim().to_owned();
        parsed.stage = stage;
        Ok(parsed)
    }
}

impl Threshold {
    /// The condition `cond` (the part of `text` before any `@`).
    fn condition(text: &str, cond: &str) -> Result<Threshold, ThresholdError> {
        let t = cond.trim();
        let at = t.find(['<', '>']).ok_or_else(|| ThresholdError::NoComparison(text.to_owned()))?;
        let (name, rest) = (t[..at].trim(), &t[at..]);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else {
            (Op::Gt, &rest[1..])
        };
        let (metric, kind) = METRICS
            .iter()
            .find(|(m, _)| *m == name)
            .copied()
            .ok_or_else(|| ThresholdError::UnknownMetric { text: text.to_owned(), name: name.to_owned() })?;
        let value = value.trim();
        if let Some(rest) = value.strip_prefix("baseline") {
            let rest = rest.trim();
            let factor = match rest.strip_prefix('*') {
                None if rest.is_empty() => 1.0,
                None => return Err(ThresholdError::NotANumber { text: text.to_owned(), value: value.to_owned() }),
                Some(f) => {
                    f.trim().parse::<f64>().ok().filter(|f| f.is_finite() && *f >= 0.0).ok_or_else(|| {
                        ThresholdError::NotANumber { text: text.to_owned(), value: f.trim().to_owned() }
                    })?
                }
            };
            return Ok(Threshold { text: t.to_owned(), metric, op, bound: factor, relative: true, stage: None });
        }
        let split = value.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(value.len());
        let (number, unit) = (&value[..split], value[split..].trim());
        let n: f64 = number
            .parse()
            .map_err(|_| ThresholdError::NotANumber { text: text.to_owned(), value: value.to_owned() })?;
        // `missed < 1%` is judged on the share missed, `missed < 10` on the count.
        let metric = if kind == Kind::CountOrShare && unit == "%" { "missed_share" } else { metric };
        let bound = match (kind, unit) {
            (Kind::LatencyMs, "us" | "µs") => n / 1000.0,
            (Kind::LatencyMs, "ms") => n,
            (Kind::LatencyMs, "s") => n * 1000.0,
            (Kind::LatencyMs, _) => return Err(ThresholdError::NoUnit { text: text.to_owned(), metric }),
            (Kind::Ratio, "%") => n / 100.0,
            (Kind::Ratio, "") => n,
            (Kind::Count, "") | (Kind::Count, "/s") | (Kind::CountOrShare, "") => n,
            (Kind::CountOrShare, "%") => n / 100.0,
            (_, unit) => {
                return Err(ThresholdError::WrongUnit { text: text.to_owned(), unit: unit.to_owned(), metric });
            }
        };
        Ok(Threshold { text: t.to_owned(), metric, op, bound, relative: false, stage: None })
    }
}

/// The verdict on one threshold.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    /// The expression as given.
    pub expr: String,
    /// The measured value (ms for latencies, a fraction for ratios);
    /// `null` when there was nothing to measure (no responses).
    pub actual: Option<f64>,
    /// The unit of `actual`: `ms`, `fraction`, `requests/s` or `requests`.
    pub unit: &'static str,
    /// Whether the condition held.
    pub passed: bool,
    /// For a `baseline * F` bound: the baseline's figure (same unit as
    /// `actual`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
}

impl Threshold {
    /// The metric the condition is on: a name of [`METRICS`], or
    /// `missed_share` for `missed` given in `%`; the report measures it
    /// (latencies in ms, ratios as fractions).
    pub fn metric(&self) -> &'static str {
        self.metric
    }

    /// The verdict given the measured value of [`Threshold::metric`]; a
    /// condition with nothing to measure (no responses) fails.
    pub fn verdict(&self, actual: Option<f64>) -> Verdict {
        self.verdict_against(actual, None)
    }

    /// `@ stage N`: the stage (counting from 0) the condition is limited to.
    pub fn stage(&self) -> Option<usize> {
        self.stage
    }

    /// Whether the bound is relative to a baseline run (`baseline * F`).
    pub fn is_relative(&self) -> bool {
        self.relative
    }

    /// The verdict given the measured value and, for a relative bound, the
    /// baseline's value of the same metric; a relative condition without a
    /// baseline figure fails, as one with nothing to measure does.
    pub fn verdict_against(&self, actual: Option<f64>, baseline: Option<f64>) -> Verdict {
        let (bound, baseline) =
            if self.relative { (baseline.map(|b| b * self.bound), baseline) } else { (Some(self.bound), None) };
        let passed = matches!((actual, bound), (Some(a), Some(b)) if self.op.holds(a, b));
        let unit = match self.metric {
            "error_rate" => "fraction",
            "rps" => "requests/s",
            "requests" | "failures" => "requests",
            _ => "ms",
        };
        Verdict { expr: self.text.clone(), actual, unit, passed, baseline }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_users_write() {
        let t: Threshold = "p99 < 200ms".parse().unwrap();
        assert_eq!((t.metric, t.op, t.bound), ("p99", Op::Lt, 200.0));
        let t: Threshold = "error_rate<1%".parse().unwrap();
        assert_eq!((t.metric, t.bound), ("error_rate", 0.01));
        let t: Threshold = "missed < 1%".parse().unwrap();
        assert_eq!((t.metric, t.bound), ("missed_share", 0.01));
        let t: Threshold = "missed <= 10".parse().unwrap();
        assert_eq!((t.metric, t.bound), ("missed", 10.0));
        let t: Threshold = " rps >= 5000 ".parse().unwrap();
        assert_eq!((t.op, t.bound), (Op::Ge, 5000.0));
        assert_eq!("p50 <= 1.5s".parse::<Threshold>().unwrap().bound, 1500.0);
        assert_eq!("max < 800us".parse::<Threshold>().unwrap().bound, 0.8);
        let t: Threshold = "p99 < 200ms @ stage 2".parse().unwrap();
        assert_eq!((t.metric, t.bound, t.stage()), ("p99", 200.0, Some(1)));
        assert_eq!(t.to_string(), "p99 < 200ms @ stage 2");
        let t: Threshold = "rps >= baseline * 0.9 @stage 1".parse().unwrap();
        assert_eq!((t.is_relative(), t.bound, t.stage()), (true, 0.9, Some(0)));
        assert_eq!("p99 < 200ms".parse::<Threshold>().unwrap().stage(), None);
        for (bad, needle) in [
            ("p99 200ms", "no comparison"),
            ("p42 < 1ms", "unknown metric"),
            ("p99 < fast", "not a number"),
            ("p99 < 200", "unit"),
            ("rps > 5ms", "not a unit"),
            ("p99 < 5ms @ stage 0", "not a stage"),
            ("p99 < 5ms @ 2", "not a stage"),
            ("p99 < 5ms @ stage two", "not a stage"),
            ("missed < 1% @ stage 1", "whole run"),
        ] {
            let err = bad.parse::<Threshold>().unwrap_err();
            assert!(err.to_string().contains(needle), "{bad:?}: {err}");
        }
    }

    #[test]
    fn relative_bounds_scale_the_baseline() {
        let t: Threshold = "p99 < baseline * 1.10".parse().unwrap();
        assert!(t.is_relative());
        assert!(t.verdict_against(Some(10.9), Some(10.0)).passed);
        assert!(!t.verdict_against(Some(11.1), Some(10.0)).passed);
        assert_eq!(t.verdict_against(Some(11.1), Some(10.0)).baseline, Some(10.0));
        // No baseline figure: nothing to judge against, so it fails.
        assert!(!t.verdict_against(Some(1.0), None).passed);
        let t: Threshold = "rps >= baseline*0.95".parse().unwrap();
        assert!(t.verdict_against(Some(950.0), Some(1000.0)).passed);
        assert!(!t.verdict_against(Some(949.0), Some(1000.0)).passed);
        let t: Threshold = "error_rate <= baseline".parse().unwrap();
        assert!(t.verdict_against(Some(0.01), Some(0.01)).passed);
        // Absolute bounds ignore a baseline.
        let t: Threshold = "p99 < 5ms".parse().unwrap();
        assert!(t.verdict_against(Some(4.0), Some(1.0)).passed);
        for bad in ["p99 < baseline * fast", "p99 < baseline + 1", "p99 < baseline * -1"] {
            let err = bad.parse::<Threshold>().unwrap_err();
            assert!(err.to_string().contains("not a number"), "{bad:?}: {err}");
        }
    }
}
