//! The statistics behind `controller compare`'s latency verdict: a bootstrap
//! over the seconds of two runs, judged against a smallest change that
//! matters.
//!
//! Why seconds and not requests: requests within one run are not independent
//! (the machine's state drifts, a collector pauses, a neighbour compiles), so
//! a two-sample test on tens of thousands of individual latencies calls every
//! tiny shift "significant". Each second's quantile is one observation of the
//! run's state; resampling seconds keeps that drift in the noise. And since
//! two runs of the same settings still differ by a few percent, a change is
//! called only when the whole confidence interval lies beyond the smallest
//! change that matters (`--min-change`), not merely beyond zero.

use serde::Serialize;

/// Bootstrap resamples: enough for stable 2.5 % / 97.5 % tails.
pub const ROUNDS: usize = 4000;
/// Fewer usable seconds than this on either side: no verdict.
pub const MIN_SECONDS: usize = 3;

/// What a comparison of latencies says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Confidently slower by at least the smallest change that matters.
    Slower,
    /// Confidently faster by at least the smallest change that matters.
    Faster,
    /// Any change is within the noise or smaller than what matters.
    NoSignificantDifference,
    /// Too few seconds on one side to tell noise from change.
    Inconclusive,
}

impl Verdict {
    /// The verdict in words.
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Slower => "slower",
            Verdict::Faster => "faster",
            Verdict::NoSignificantDifference => "no significant difference",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// The candidate's typical second over the baseline's, with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// The median over the baseline's seconds.
    pub baseline: f64,
    /// The median over the candidate's seconds.
    pub candidate: f64,
    /// candidate / baseline.
    pub ratio: f64,
    /// Lower end of the ratio's confidence interval.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

impl Estimate {
    /// The verdict when changes under `min_change` (a fraction) do not
    /// matter: the whole interval must lie beyond it.
    pub fn verdict(&self, min_change: f64) -> Verdict {
        if self.low > 1.0 + min_change {
            Verdict::Slower
        } else if self.high < 1.0 - min_change {
            Verdict::Faster
        } else {
            Verdict::NoSignificantDifference
        }
    }
}

/// The median of `v` (sorted in place); `v` must not be empty.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// The ratio of the medians of `candidate` and `baseline` (one value per
/// second) and its percentile bootstrap interval at `confidence` (e.g. 0.95),
/// resampling each side's seconds with replacement. Deterministic: the same
/// inputs give the same interval. `None` with fewer than [`MIN_SECONDS`] on a
/// side or a baseline median of zero.
pub fn bootstrap_ratio(baseline: &[f64], candidate: &[f64], confidence: f64) -> Option<Estimate> {
    if baseline.len() < MIN_SECONDS || candidate.len() < MIN_SECONDS {
        return None;
    }
    let b = median(&mut baseline.to_vec());
    let c = median(&mut candidate.to_vec());
    if b <= 0.0 {
        return None;
    }
    let mut rng = fastrand::Rng::with_seed(0x766f_6c6c_6579);
    let (mut rb, mut rc) = (vec![0.0; baseline.len()], vec![0.0; candidate.len()]);
    let mut ratios = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        rb.iter_mut().for_each(|x| *x = baseline[rng.usize(..baseline.len())]);
        rc.iter_mut().for_each(|x| *x = candidate[rng.usize(..candidate.len())]);
        let mb = median(&mut rb);
        if mb > 0.0 {
            ratios.push(median(&mut rc) / mb);
        }
    }
    ratios.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| ratios[((q * (ratios.len() - 1) as f64).round() as usize).min(ratios.len() - 1)];
    Some(Estimate { baseline: b, candidate: c, ratio: c / b, low: at(tail), high: at(1.0 - tail) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` seconds around `level` with ±`spread` (a fraction) of
    /// deterministic noise.
    fn seconds(n: usize, level: f64, spread: f64, seed: u64) -> Vec<f64> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n).map(|_| level * (1.0 + spread * (2.0 * rng.f64() - 1.0))).collect()
    }

    #[test]
    fn the_same_seconds_are_no_difference() {
        let a = seconds(20, 10.0, 0.05, 1);
        let e = bootstrap_ratio(&a, &a, 0.95).unwrap();
        assert_eq!(e.ratio, 1.0);
        assert!(e.low <= 1.0 && e.high >= 1.0, "{e:?}");
        assert_eq!(e.verdict(0.10), Verdict::NoSignificantDifference);
    }

    #[test]
    fn a_known_slowdown_is_found_with_its_size() {
        let a = seconds(20, 10.0, 0.05, 1);
        let b = seconds(20, 20.0, 0.05, 2);
        let e = bootstrap_ratio(&a, &b, 0.95).unwrap();
        assert!((e.ratio - 2.0).abs() < 0.1, "{e:?}");
        assert!(e.low > 1.8 && e.high < 2.2, "{e:?}");
        assert_eq!(e.verdict(0.10), Verdict::Slower);
        assert_eq!(bootstrap_ratio(&b, &a, 0.95).unwrap().verdict(0.10), Verdict::Faster);
    }

    #[test]
    fn same_level_different_noise_is_no_difference() {
        for seed in 0..20 {
            let a = seconds(10, 10.0, 0.20, seed);
            let b = seconds(10, 10.0, 0.20, seed + 100);
            let e = bootstrap_ratio(&a, &b, 0.95).unwrap();
            assert_eq!(e.verdict(0.10), Verdict::NoSignificantDifference, "seed {seed}: {e:?}");
        }
    }

    #[test]
    fn a_small_but_certain_change_is_below_what_matters() {
        // 5 % slower with hardly any noise: real, but under a 10 % minimum.
        let a = seconds(20, 10.0, 0.01, 1);
        let b = seconds(20, 10.5, 0.01, 2);
        let e = bootstrap_ratio(&a, &b, 0.95).unwrap();
        assert!(e.low > 1.0, "{e:?}");
        assert_eq!(e.verdict(0.10), Verdict::NoSignificantDifference);
        assert_eq!(e.verdict(0.02), Verdict::Slower);
    }

    #[test]
    fn one_wild_second_does_not_make_a_regression() {
        let a = seconds(10, 10.0, 0.05, 1);
        let mut b = seconds(10, 10.0, 0.05, 2);
        b[4] = 500.0;
        assert_eq!(bootstrap_ratio(&a, &b, 0.95).unwrap().verdict(0.10), Verdict::NoSignificantDifference);
    }

    #[test]
    fn noisy_seconds_widen_the_interval_past_a_verdict() {
        // 30 % slower on average, but seconds scatter by ±80 %, 4 of them.
        let a = [2.0, 18.0, 10.0, 6.0];
        let b = [3.0, 22.0, 13.0, 7.0];
        let e = bootstrap_ratio(&a, &b, 0.95).unwrap();
        assert!(e.low < 1.1, "{e:?}");
        assert_eq!(e.verdict(0.10), Verdict::NoSignificantDifference);
    }

    #[test]
    fn too_few_seconds_give_no_estimate() {
        assert!(bootstrap_ratio(&[1.0, 1.0], &[2.0, 2.0, 2.0], 0.95).is_none());
        assert!(bootstrap_ratio(&[0.0, 0.0, 0.0], &[2.0, 2.0, 2.0], 0.95).is_none());
    }
}
