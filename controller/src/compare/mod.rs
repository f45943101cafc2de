//! `controller compare BASELINE CANDIDATE`, `--baseline FILE` and
//! `GET /v1/runs/{a}/compare/{b}`: is the candidate run slower than the
//! baseline?
//!
//! Both runs are JSON reports ([`Saved`], read from `--output json` files or
//! from the API). The comparison puts rate, error rate and percentiles side
//! by side with their absolute and relative changes, gives a latency verdict
//! that accounts for noise (see [`stats`]), per scenario request name too,
//! names settings that make the runs not comparable, and judges `--fail-if`
//! thresholds, which may be relative to the baseline (`p99 < baseline *
//! 1.10`). [`page`] draws the two latency distributions over each other.

pub mod page;
pub mod stats;

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::report::{Histograms, Latency, PERCENTILES, decode_histogram};
use crate::threshold::{self, Threshold};
use stats::{Estimate, Verdict};

/// The confidence of the latency verdict when none is given.
pub const DEFAULT_CONFIDENCE: f64 = 0.95;
/// Changes smaller than this fraction are no difference, when none is given.
pub const DEFAULT_MIN_CHANGE: f64 = 0.10;

/// Why a saved report could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The file could not be read.
    #[error("{}: cannot read it", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a Volley JSON report.
    #[error("{what}: not a Volley JSON report (write one with --output json)")]
    NotAReport {
        /// The file, or the run.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// `--confidence` or `--min-change` out of range.
    #[error("{flag}: {value} is not {range}")]
    Setting {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: f64,
        /// What it must be.
        range: &'static str,
    },
    /// A `--fail-if` expression.
    #[error("--fail-if: {0}")]
    Threshold(#[from] threshold::ThresholdError),
}

/// A saved run: the parts of a JSON report a comparison reads. Older
/// reports without `histograms` still compare, on their percentiles.
#[derive(Debug, Clone, Deserialize)]
pub struct Saved {
    /// The target URL.
    pub url: String,
    /// The method.
    #[serde(default)]
    pub method: String,
    /// Requests completed.
    pub total_requests: u64,
    /// Failed requests.
    #[serde(default)]
    pub failed_requests: u64,
    /// Requests per second.
    pub requests_per_second: f64,
    /// Failed over total.
    pub error_rate: f64,
    /// Run time in seconds.
    #[serde(default)]
    pub duration_s: f64,
    /// Connections in total.
    #[serde(default)]
    pub concurrency: u32,
    /// Latency figures.
    pub latency_ms: Latency,
    /// Open model: the rate asked for.
    #[serde(default)]
    pub rate: Option<SavedRate>,
    /// The agents' rows.
    #[serde(default)]
    pub agents: Vec<SavedAgent>,
    /// `--stage` runs: the stages and what each achieved.
    #[serde(default)]
    pub stages: Option<SavedStages>,
    /// The per-second series.
    #[serde(default)]
    pub series: Vec<SavedSecond>,
    /// Scenario runs: per request name.
    #[serde(default)]
    pub names: Vec<SavedName>,
    /// Scenario runs: what ran (its presence is what matters here).
    #[serde(default)]
    pub scenario: Option<serde_json::Value>,
    /// The merged histograms, when the report carries them.
    #[serde(default)]
    pub histograms: Option<Histograms>,
}

/// The open model's asked-for rate.
#[derive(Debug, Clone, Deserialize)]
pub struct SavedRate {
    /// Requests per second asked for.
    pub requested: f64,
}

/// One agent, as far as comparability goes.
#[derive(Debug, Clone, Deserialize)]
pub struct SavedAgent {
    /// Worker threads it used.
    #[serde(default)]
    pub threads: u32,
}

/// A stage run's stages.
#[derive(Debug, Clone, Deserialize)]
pub struct SavedStages {
    /// Each stage's row, in order.
    pub stages: Vec<crate::report::StageRow>,
}

/// One second of the series.
#[derive(Debug, Clone, Deserialize)]
pub struct SavedSecond {
    /// Requests completed in it.
    #[serde(default)]
    pub requests: u64,
    /// Median latency in ms.
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
}

/// One request name's row.
#[derive(Debug, Clone, Deserialize)]
pub struct SavedName {
    /// The name.
    pub name: String,
    /// Its method.
    #[serde(default)]
    pub method: String,
    /// Requests sent under it.
    pub requests: u64,
    /// Those that failed.
    #[serde(default)]
    pub failures: u64,
    /// Its rate.
    #[serde(default)]
    pub requests_per_second: f64,
    /// Its latencies.
    pub latency_ms: Latency,
}

impl Saved {
    /// A report from JSON text: a `--output json` report, or the API's view
    /// of a run (`GET /v1/runs/{id}`, whose `report` holds it).
    pub fn parse(text: &str, what: &str) -> Result<Saved, CompareError> {
        let bad = |source| CompareError::NotAReport { what: what.to_owned(), source };
        let mut value: serde_json::Value = serde_json::from_str(text).map_err(bad)?;
        if value.get("url").is_none()
            && let Some(inner) = value.get_mut("report").map(serde_json::Value::take)
        {
            value = inner;
        }
        serde_json::from_value(value).map_err(bad)
    }

    /// A report from a file.
    pub fn load(path: &Path) -> Result<Saved, CompareError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| CompareError::Read { path: path.to_owned(), source })?;
        Saved::parse(&text, &path.display().to_string())
    }

    /// A report built in this process, as its JSON would read back.
    pub fn of(report: &crate::report::Report) -> Saved {
        // A report always serialises, and its JSON always has the fields read here.
        serde_json::from_value(serde_json::to_value(report).expect("a report serialises"))
            .expect("a report reads back as a saved run")
    }

    /// The value of a `--fail-if` metric (latencies in ms, ratios as
    /// fractions), as [`crate::report::Report`] measures it.
    pub fn measure(&self, metric: &str) -> Option<f64> {
        match metric {
            "error_rate" => Some(self.error_rate),
            "rps" => Some(self.requests_per_second),
            "requests" => Some(self.total_requests as f64),
            "failures" => Some(self.failed_requests as f64),
            "min" => self.latency_ms.min,
            "mean" => self.latency_ms.mean,
            "max" => self.latency_ms.max,
            p => PERCENTILES
                .iter()
                .find(|&&q| percentile_name(q) == p)
                .and_then(|&q| Saved::percentile_of(&self.latency_ms, q)),
        }
    }

    /// The value of a `--fail-if` metric limited to stage `k` (from 0), as
    /// the report's stage rows measure it; `None` without such a stage.
    pub fn measure_stage(&self, k: usize, metric: &str) -> Option<f64> {
        self.stages.as_ref()?.stages.get(k)?.measure(metric)
    }

    /// Total worker threads over the agents.
    fn threads(&self) -> u32 {
        self.agents.iter().map(|a| a.threads).sum()
    }

    /// The seconds whose quantile `pick` is known and that ran at least half
    /// the typical second's requests: the partial first and last seconds and
    /// a ramp would otherwise pass for noise.
    fn seconds(&self, pick: Pick) -> Vec<f64> {
        let mut counts: Vec<u64> = self.series.iter().filter(|s| pick(s).is_some()).map(|s| s.requests).collect();
        if counts.is_empty() {
            return Vec::new();
        }
        counts.sort_unstable();
        let typical = counts[counts.len() / 2];
        self.series.iter().filter(|s| s.requests * 2 >= typical).filter_map(pick).collect()
    }
}

/// `p50`, `p999`, `max` for 50, 99.9, 100.
pub fn percentile_name(q: f64) -> String {
    if q == 100.0 {
        "max".to_owned()
    } else if q == 99.9 {
        "p999".to_owned()
    } else {
        format!("p{q:.0}")
    }
}

/// How the runs are compared.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Confidence of the latency verdict, e.g. 0.95.
    pub confidence: f64,
    /// Changes under this fraction are no difference.
    pub min_change: f64,
    /// `--fail-if` conditions on the candidate.
    pub thresholds: Vec<Threshold>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { confidence: DEFAULT_CONFIDENCE, min_change: DEFAULT_MIN_CHANGE, thresholds: Vec::new() }
    }
}

impl Settings {
    /// Checked settings: confidence in (0, 1) and min-change in [0, 1),
    /// both given in percent; every expression parsed.
    pub fn new(confidence_percent: f64, min_change_percent: f64, fail_if: &[String]) -> Result<Settings, CompareError> {
        let confidence = confidence_percent / 100.0;
        if !(confidence > 0.0 && confidence < 1.0) {
            return Err(CompareError::Setting {
                flag: "--confidence",
                value: confidence_percent,
                range: "a percentage above 0 and below 100",
            });
        }
        let min_change = min_change_percent / 100.0;
        if !(0.0..1.0).contains(&min_change) {
            return Err(CompareError::Setting {
                flag: "--min-change",
                value: min_change_percent,
                range: "a percentage from 0 to below 100",
            });
        }
        let thresholds = fail_if.iter().map(|e| e.parse()).collect::<Result<_, _>>()?;
        Ok(Settings { confidence, min_change, thresholds })
    }
}

/// One figure side by side.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Figure {
    /// `rps`, `error_rate`, `p50` ... `max`: the names `--fail-if` uses.
    pub metric: String,
    /// `req/s`, `fraction` or `ms`.
    pub unit: &'static str,
    /// The baseline's value.
    pub baseline: Option<f64>,
    /// The candidate's value.
    pub candidate: Option<f64>,
    /// candidate - baseline.
    pub change: Option<f64>,
    /// (candidate - baseline) / baseline; `null` when the baseline is 0.
    pub relative_change: Option<f64>,
}

impl Figure {
    fn new(metric: &str, unit: &'static str, baseline: Option<f64>, candidate: Option<f64>) -> Figure {
        let change = baseline.zip(candidate).map(|(b, c)| c - b);
        let relative_change = baseline.zip(change).filter(|(b, _)| *b != 0.0).map(|(b, d)| d / b);
        Figure { metric: metric.to_owned(), unit, baseline, candidate, change, relative_change }
    }
}

/// The test on one quantile of the per-second series.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QuantileTest {
    /// `p50`, `p90` or `p99`.
    pub quantile: &'static str,
    /// Usable seconds of the baseline.
    pub baseline_seconds: usize,
    /// Usable seconds of the candidate.
    pub candidate_seconds: usize,
    /// The medians over seconds and the ratio's interval (`null`: too few seconds).
    pub estimate: Option<Estimate>,
    /// What it says.
    pub verdict: Verdict,
}

/// The latency verdict and the tests behind it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencyVerdict {
    /// `slower` when any quantile is slower, `faster` when any is faster and
    /// none slower, `inconclusive` when none could be tested.
    pub verdict: Verdict,
    /// One per quantile.
    pub tests: Vec<QuantileTest>,
}

/// One request name compared.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NameComparison {
    /// The request's name.
    pub name: String,
    /// Its method.
    pub method: String,
    /// Its rate, error rate and percentiles side by side.
    pub figures: Vec<Figure>,
    /// Its latency verdict (see the book: the run's own second-to-second
    /// spread stands in for the name's).
    pub verdict: Verdict,
}

/// What a run was, in a line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunLine {
    /// The target URL.
    pub url: String,
    /// Requests completed.
    pub total_requests: u64,
    /// Run time in seconds.
    pub duration_s: f64,
}

/// The whole comparison: `controller compare --output json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The baseline run.
    pub baseline: RunLine,
    /// The candidate run.
    pub candidate: RunLine,
    /// The latency verdict's confidence (a fraction).
    pub confidence: f64,
    /// Changes under this fraction count as no difference.
    pub min_change: f64,
    /// Settings that differ and make the runs not comparable.
    pub warnings: Vec<String>,
    /// Rate, error rate and latency percentiles side by side.
    pub figures: Vec<Figure>,
    /// Is the candidate slower?
    pub latency: LatencyVerdict,
    /// Scenario runs: each request name in both runs.
    pub names: Vec<NameComparison>,
    /// The `--fail-if` verdicts on the candidate.
    pub thresholds: Vec<threshold::Verdict>,
}

/// The figures of a run (or a name) side by side with another's.
fn figures(
    (b_rps, b_err, b): (f64, f64, &Latency),
    (c_rps, c_err, c): (f64, f64, &Latency),
    bh: Option<&hdrhistogram::Histogram<u64>>,
    ch: Option<&hdrhistogram::Histogram<u64>>,
) -> Vec<Figure> {
    let mut out = vec![
        Figure::new("rps", "req/s", Some(b_rps), Some(c_rps)),
        Figure::new("error_rate", "fraction", Some(b_err), Some(c_err)),
        Figure::new("mean", "ms", b.mean, c.mean),
    ];
    // The histograms give the exact percentiles; without them, the report's figures.
    let at = |h: Option<&hdrhistogram::Histogram<u64>>, l: &Latency, q: f64| match h {
        Some(h) if !h.is_empty() => Some(h.value_at_quantile(q / 100.0) as f64 / 1000.0),
        Some(_) => None,
        None => Saved::percentile_of(l, q),
    };
    for q in PERCENTILES {
        out.push(Figure::new(&percentile_name(q), "ms", at(bh, b, q), at(ch, c, q)));
    }
    out
}

impl Saved {
    fn percentile_of(l: &Latency, q: f64) -> Option<f64> {
        match percentile_name(q).as_str() {
            "p50" => l.p50,
            "p66" => l.p66,
            "p75" => l.p75,
            "p80" => l.p80,
            "p90" => l.p90,
            "p95" => l.p95,
            "p98" => l.p98,
            "p99" => l.p99,
            "p999" => l.p999,
            _ => l.max,
        }
    }

    /// The run's overall histogram, when it carries one that decodes.
    pub fn histogram(&self) -> Option<hdrhistogram::Histogram<u64>> {
        self.histograms.as_ref().and_then(|h| decode_histogram(&h.latency).ok())
    }

    fn name_histogram(&self, name: &str, method: &str) -> Option<hdrhistogram::Histogram<u64>> {
        let h = self.histograms.as_ref()?.names.iter().find(|n| n.name == name && n.method == method)?;
        decode_histogram(&h.latency).ok()
    }
}

/// The settings that differ between two runs, each named.
pub fn warnings(b: &Saved, c: &Saved) -> Vec<String> {
    let mut w = Vec::new();
    if b.url != c.url {
        w.push(format!("different URL: {} vs {}", b.url, c.url));
    }
    if b.method != c.method {
        w.push(format!("different method: {} vs {}", b.method, c.method));
    }
    if b.scenario.is_some() != c.scenario.is_some() {
        w.push("different model: one run is a scenario, the other is not".to_owned());
    }
    match (&b.rate, &c.rate) {
        (Some(x), Some(y)) if x.requested != y.requested => {
            w.push(format!("different rate: {} vs {} requests per second", x.requested, y.requested));
        }
        (Some(_), None) | (None, Some(_)) => {
            w.push("different model: one run has a fixed rate (open model), the other does not".to_owned());
        }
        _ => {}
    }
    if b.concurrency != c.concurrency {
        w.push(format!("different connections: {} vs {}", b.concurrency, c.concurrency));
    }
    if b.agents.len() != c.agents.len() {
        w.push(format!("different agents: {} vs {}", b.agents.len(), c.agents.len()));
    }
    if b.threads() != c.threads() {
        w.push(format!("different agents' threads: {} vs {} in total", b.threads(), c.threads()));
    }
    w
}

/// `slower` wins over `faster`, either over no difference; all inconclusive
/// is inconclusive.
fn overall(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
    let v: Vec<Verdict> = verdicts.into_iter().collect();
    if v.contains(&Verdict::Slower) {
        Verdict::Slower
    } else if v.contains(&Verdict::Faster) {
        Verdict::Faster
    } else if v.iter().all(|&x| x == Verdict::Inconclusive) {
        Verdict::Inconclusive
    } else {
        Verdict::NoSignificantDifference
    }
}

/// Picks one quantile of a second.
type Pick = fn(&SavedSecond) -> Option<f64>;

/// The quantiles the series carries, tested one by one.
const TESTED: [(&str, Pick); 3] = [("p50", |s| s.p50_ms), ("p90", |s| s.p90_ms), ("p99", |s| s.p99_ms)];

/// Compares `candidate` with `baseline`.
pub fn compare(baseline: &Saved, candidate: &Saved, settings: &Settings) -> Comparison {
    let tests: Vec<QuantileTest> = TESTED
        .iter()
        .map(|&(quantile, pick)| {
            let (b, c) = (baseline.seconds(pick), candidate.seconds(pick));
            let estimate = stats::bootstrap_ratio(&b, &c, settings.confidence);
            QuantileTest {
                quantile,
                baseline_seconds: b.len(),
                candidate_seconds: c.len(),
                estimate,
                verdict: estimate.map_or(Verdict::Inconclusive, |e| e.verdict(settings.min_change)),
            }
        })
        .collect();
    let latency = LatencyVerdict { verdict: overall(tests.iter().map(|t| t.verdict)), tests };
    let (bh, ch) = (baseline.histogram(), candidate.histogram());
    let figures = figures(
        (baseline.requests_per_second, baseline.error_rate, &baseline.latency_ms),
        (candidate.requests_per_second, candidate.error_rate, &candidate.latency_ms),
        bh.as_ref(),
        ch.as_ref(),
    );
    let names = compare_names(baseline, candidate, &latency, settings.min_change);
    let thresholds = settings
        .thresholds
        .iter()
        .map(|t| t.verdict_against(candidate.measure(t.metric()), baseline.measure(t.metric())))
        .collect();
    Comparison {
        baseline: RunLine {
            url: baseline.url.clone(),
            total_requests: baseline.total_requests,
            duration_s: baseline.duration_s,
        },
        candidate: RunLine {
            url: candidate.url.clone(),
            total_requests: candidate.total_requests,
            duration_s: candidate.duration_s,
        },
        confidence: settings.confidence,
        min_change: settings.min_change,
        warnings: warnings(baseline, candidate),
        figures,
        latency,
        names,
        thresholds,
    }
}

/// Each name in both runs. Per-name seconds are not recorded, so the run's
/// own interval, relative to its estimate, is laid around the name's ratio:
/// a name is called slower only if its change stands out of the run's noise
/// by the smallest change that matters.
fn compare_names(b: &Saved, c: &Saved, run: &LatencyVerdict, min_change: f64) -> Vec<NameComparison> {
    b.names
        .iter()
        .filter_map(|bn| {
            let cn = c.names.iter().find(|n| n.name == bn.name && n.method == bn.method)?;
            let (bh, ch) = (b.name_histogram(&bn.name, &bn.method), c.name_histogram(&cn.name, &cn.method));
            let err = |n: &SavedName| if n.requests > 0 { n.failures as f64 / n.requests as f64 } else { 0.0 };
            let figures = figures(
                (bn.requests_per_second, err(bn), &bn.latency_ms),
                (cn.requests_per_second, err(cn), &cn.latency_ms),
                bh.as_ref(),
                ch.as_ref(),
            );
            let verdict = overall(run.tests.iter().map(|t| {
                let Some(e) = t.estimate else { return Verdict::Inconclusive };
                let fig = figures.iter().find(|f| f.metric == t.quantile);
                match fig.and_then(|f| f.baseline.zip(f.candidate)) {
                    Some((x, y)) if x > 0.0 => {
                        let ratio = y / x;
                        let spread = Estimate {
                            baseline: x,
                            candidate: y,
                            ratio,
                            low: ratio * e.low / e.ratio,
                            high: ratio * e.high / e.ratio,
                        };
                        spread.verdict(min_change)
                    }
                    _ => Verdict::Inconclusive,
                }
            }));
            Some(NameComparison { name: bn.name.clone(), method: bn.method.clone(), figures, verdict })
        })
        .collect()
}

impl Comparison {
    /// 0 when every `--fail-if` held, 3 when one failed (as `controller run`).
    pub fn exit_code(&self) -> i32 {
        if self.thresholds.iter().all(|v| v.passed) { 0 } else { 3 }
    }

    /// As one JSON object.
    pub fn to_json(&self) -> String {
        // Plain structs of numbers and strings always serialise.
        serde_json::to_string_pretty(self).expect("a comparison serialises")
    }

    /// As text: the side-by-side table, the verdict and its tests.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail; the results are ignored on purpose.
        let _ = writeln!(
            s,
            "Baseline:   {} ({} requests, {:.1} s)",
            self.baseline.url, self.baseline.total_requests, self.baseline.duration_s
        );
        let _ = writeln!(
            s,
            "Candidate:  {} ({} requests, {:.1} s)",
            self.candidate.url, self.candidate.total_requests, self.candidate.duration_s
        );
        for w in &self.warnings {
            let _ = writeln!(s, "WARNING: not comparable: {w}");
        }
        let _ = writeln!(s);
        figures_text(&mut s, &self.figures);
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "Latency: {} ({:.0} % confidence; changes under {:.0} % count as none)",
            self.latency.verdict.words().to_uppercase(),
            self.confidence * 100.0,
            self.min_change * 100.0
        );
        for t in &self.latency.tests {
            match &t.estimate {
                Some(e) => {
                    let _ = writeln!(
                        s,
                        "  {:<4} per second, median {:.3} -> {:.3} ms: {:+.1} % (interval {:+.1} % .. {:+.1} %; {} vs {} seconds): {}",
                        t.quantile,
                        e.baseline,
                        e.candidate,
                        (e.ratio - 1.0) * 100.0,
                        (e.low - 1.0) * 100.0,
                        (e.high - 1.0) * 100.0,
                        t.baseline_seconds,
                        t.candidate_seconds,
                        t.verdict.words()
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        "  {:<4} {} vs {} usable seconds; at least {} each are needed: {}",
                        t.quantile,
                        t.baseline_seconds,
                        t.candidate_seconds,
                        stats::MIN_SECONDS,
                        t.verdict.words()
                    );
                }
            }
        }
        for n in &self.names {
            let _ = writeln!(s);
            let _ = writeln!(s, "{} {}: {}", n.method, n.name, n.verdict.words());
            figures_text(&mut s, &n.figures);
        }
        if !self.thresholds.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "Thresholds (--fail-if):");
            for v in &self.thresholds {
                let actual = v.actual.map_or_else(|| "n/a".to_owned(), |a| format!("{a:.3}"));
                let base = v.baseline.map_or_else(String::new, |b| format!(", baseline {b:.3}"));
                let _ =
                    writeln!(s, "  {:<4}  {}  (measured {actual}{base})", if v.passed { "ok" } else { "FAIL" }, v.expr);
            }
        }
        s
    }
}

fn figures_text(s: &mut String, figures: &[Figure]) {
    let opt = |v: Option<f64>, unit: &str| match (v, unit) {
        (None, _) => "n/a".to_owned(),
        (Some(v), "fraction") => format!("{:.2} %", v * 100.0),
        (Some(v), _) => format!("{v:.3}"),
    };
    let _ = writeln!(s, "{:<12} {:>12} {:>12} {:>12} {:>10}", "", "baseline", "candidate", "change", "relative");
    for f in figures {
        let label = match f.unit {
            "ms" => format!("{} (ms)", f.metric),
            "req/s" => "req/s".to_owned(),
            _ => "error rate".to_owned(),
        };
        let change = match (f.change, f.unit) {
            (None, _) => "n/a".to_owned(),
            (Some(d), "fraction") => format!("{:+.2} %", d * 100.0),
            (Some(d), _) => format!("{d:+.3}"),
        };
        let rel = f.relative_change.map_or_else(|| "n/a".to_owned(), |r| format!("{:+.1} %", r * 100.0));
        let _ = writeln!(
            s,
            "{label:<12} {:>12} {:>12} {change:>12} {rel:>10}",
            opt(f.baseline, f.unit),
            opt(f.candidate, f.unit)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A saved run of `seconds` seconds whose quantiles are `level` ms
    /// (p90 and p99 a fixed step above), with small deterministic noise.
    fn run(level: f64, seconds: usize, extra: serde_json::Value) -> Saved {
        let mut rng = fastrand::Rng::with_seed(level.to_bits());
        let series: Vec<serde_json::Value> = (0..seconds)
            .map(|_| {
                let n = 1.0 + 0.04 * (2.0 * rng.f64() - 1.0);
                serde_json::json!({ "requests": 1000, "p50_ms": level * n, "p90_ms": level * n + 1.0, "p99_ms": level * n + 3.0 })
            })
            .collect();
        let mut v = serde_json::json!({
            "url": "http://127.0.0.1:1/", "method": "GET", "total_requests": 1000 * seconds,
            "requests_per_second": 1000.0, "error_rate": 0.0, "concurrency": 10,
            "latency_ms": { "p50": level, "p99": level + 3.0 },
            "agents": [{ "threads": 2 }], "series": series,
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn known_differences_get_their_verdicts() {
        let s = Settings::default();
        let base = run(10.0, 10, serde_json::json!({}));
        assert_eq!(compare(&base, &base, &s).latency.verdict, Verdict::NoSignificantDifference);
        assert_eq!(compare(&base, &run(20.0, 10, serde_json::json!({})), &s).latency.verdict, Verdict::Slower);
        assert_eq!(compare(&base, &run(5.0, 10, serde_json::json!({})), &s).latency.verdict, Verdict::Faster);
        assert_eq!(
            compare(&base, &run(10.3, 10, serde_json::json!({})), &s).latency.verdict,
            Verdict::NoSignificantDifference
        );
        assert_eq!(compare(&base, &run(20.0, 2, serde_json::json!({})), &s).latency.verdict, Verdict::Inconclusive);
        let c = compare(&base, &run(20.0, 10, serde_json::json!({})), &s);
        let p50 = c.figures.iter().find(|f| f.metric == "p50").unwrap();
        assert_eq!(
            (p50.baseline, p50.candidate, p50.change, p50.relative_change),
            (Some(10.0), Some(20.0), Some(10.0), Some(1.0))
        );
    }

    /// `run` with one request name "home" whose latencies are `ms`.
    fn with_name(level: f64, ms: u64) -> Saved {
        let mut h = volley_stats::new_histogram();
        for i in 0..1000 {
            h.record(ms * 1000 + i % 100).unwrap();
        }
        let latency = crate::report::encode_histogram(&h);
        run(
            level,
            10,
            serde_json::json!({
                "names": [{ "name": "home", "method": "GET", "requests": 1000, "requests_per_second": 100.0,
                            "latency_ms": {} }],
                "histograms": { "latency": latency.clone(), "latency_uncorrected": null,
                                "names": [{ "name": "home", "method": "GET", "latency": latency }] },
            }),
        )
    }

    #[test]
    fn each_name_gets_its_own_verdict_from_its_histogram() {
        let s = Settings::default();
        let base = with_name(10.0, 10);
        let same = compare(&base, &with_name(10.0, 10), &s);
        assert_eq!(same.names.len(), 1);
        assert_eq!(same.names[0].verdict, Verdict::NoSignificantDifference);
        // The run as a whole unchanged, but this name twice as slow.
        let slower = compare(&base, &with_name(10.0, 20), &s);
        assert_eq!(slower.names[0].verdict, Verdict::Slower);
        let p50 = slower.names[0].figures.iter().find(|f| f.metric == "p50").unwrap();
        // Medians of 10.000..10.099 and 20.000..20.099 ms, at the histogram's precision.
        let (b, c) = (p50.baseline.unwrap(), p50.candidate.unwrap());
        assert!((10.04..10.06).contains(&b) && (20.04..20.07).contains(&c), "{b} {c}");
    }

    #[test]
    fn partial_seconds_are_left_out() {
        // A last second with a tenth of the requests and a wild p50 is not a second of the run.
        let mut r = run(10.0, 5, serde_json::json!({}));
        r.series.push(SavedSecond { requests: 100, p50_ms: Some(500.0), p90_ms: None, p99_ms: None });
        assert_eq!(r.seconds(|s| s.p50_ms).len(), 5);
    }

    #[test]
    fn settings_that_differ_are_named() {
        let base = run(10.0, 5, serde_json::json!({}));
        let other = run(
            10.0,
            5,
            serde_json::json!({ "url": "http://127.0.0.1:2/", "concurrency": 20, "rate": { "requested": 50.0 },
                                "agents": [{ "threads": 1 }, { "threads": 1 }] }),
        );
        let w = warnings(&base, &other).join("; ");
        for needle in
            ["different URL", "different model", "different connections: 10 vs 20", "different agents: 1 vs 2"]
        {
            assert!(w.contains(needle), "{needle}: {w}");
        }
        let threads = run(10.0, 5, serde_json::json!({ "agents": [{ "threads": 4 }] }));
        assert_eq!(warnings(&base, &threads), ["different agents' threads: 2 vs 4 in total"]);
        assert!(warnings(&base, &base).is_empty());
    }

    #[test]
    fn the_api_view_of_a_run_reads_as_its_report() {
        let view = serde_json::json!({ "id": "x", "state": "done", "report": {
            "url": "http://127.0.0.1:1/", "total_requests": 1, "requests_per_second": 1.0, "error_rate": 0.0,
            "latency_ms": {} } });
        assert_eq!(Saved::parse(&view.to_string(), "view").unwrap().total_requests, 1);
        let err = Saved::parse("{\"hello\": 1}", "f.json").unwrap_err().to_string();
        assert!(err.contains("f.json: not a Volley JSON report"), "{err}");
    }
}
