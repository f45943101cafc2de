//! Load profiles: how a run's target (a rate, or active connections) moves
//! over time, as a piecewise-linear function of the time since the start.
//!
//! A profile is a list of stages, each `(duration, level)`: the level moves
//! linearly from the previous stage's level (0 before the first) to `level`
//! over `duration`; a zero duration is a step. After the last stage the last
//! level holds. Levels are fractions of the run's peak (the plan's `rate` or
//! `connections`), so that a lost agent's share moves to the survivors by
//! scaling the peak alone, the shape untouched.
//!
//! The controller and the agents share this arithmetic: the agents' open-model
//! schedule inverts the profile's integral (slot k is due when the integral
//! reaches k), the closed model opens connection `i` of `C` while
//! `level · C > i`, and the controller's report integrates the same profile
//! for the target of each second.

/// A piecewise-linear profile; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Times of the corners, seconds since the start, non-decreasing; the first is 0.
    x: Vec<f64>,
    /// Levels at the corners.
    f: Vec<f64>,
    /// The integral of the level from 0 to each corner.
    cum: Vec<f64>,
}

impl Profile {
    /// The constant level 1 from the start (no ramp, no stages).
    pub fn flat() -> Profile {
        Profile { x: vec![0.0], f: vec![1.0], cum: vec![0.0] }
    }

    /// A linear ramp from 0 to 1 over `secs` seconds, then 1.
    pub fn ramp(secs: f64) -> Profile {
        if secs > 0.0 { Profile::from_stages([(0.0, 0.0), (secs, 1.0)]) } else { Profile::flat() }
    }

    /// The profile of `stages`, each `(duration in seconds, level)`, from
    /// level 0 at the start. Durations must be finite and non-negative, levels
    /// finite (the callers check; anything else is clamped to 0).
    pub fn from_stages(stages: impl IntoIterator<Item = (f64, f64)>) -> Profile {
        let clean = |v: f64| if v.is_finite() && v > 0.0 { v } else { 0.0 };
        let (mut x, mut f, mut cum) = (vec![0.0], vec![0.0], vec![0.0]);
        for (d, level) in stages {
            let (d, level) = (clean(d), clean(level));
            let (x0, f0, c0) = (x[x.len() - 1], f[f.len() - 1], cum[cum.len() - 1]);
            x.push(x0 + d);
            f.push(level);
            cum.push(c0 + d * (f0 + level) / 2.0);
        }
        Profile { x, f, cum }
    }

    /// The stages' total time, in seconds.
    pub fn length(&self) -> f64 {
        self.x[self.x.len() - 1]
    }

    /// The highest level anywhere.
    pub fn peak(&self) -> f64 {
        self.f.iter().copied().fold(0.0, f64::max)
    }

    /// The last corner at or before `x` (`x` ≥ 0).
    fn corner(&self, x: f64) -> usize {
        self.x.partition_point(|&c| c <= x).saturating_sub(1)
    }

    /// The level at `x` seconds (0 before the start; right after a step, the
    /// step's new level).
    pub fn level(&self, x: f64) -> f64 {
        if x.is_nan() || x < 0.0 {
            return 0.0;
        }
        let j = self.corner(x);
        if j + 1 >= self.x.len() {
            return self.f[j];
        }
        let t = (x - self.x[j]) / (self.x[j + 1] - self.x[j]);
        self.f[j] + (self.f[j + 1] - self.f[j]) * t
    }

    /// The integral of the level from 0 to `x` seconds.
    pub fn integral(&self, x: f64) -> f64 {
        if x.is_nan() || x <= 0.0 {
            return 0.0;
        }
        let j = self.corner(x);
        let d = x - self.x[j];
        let slope = if j + 1 < self.x.len() { (self.f[j + 1] - self.f[j]) / (self.x[j + 1] - self.x[j]) } else { 0.0 };
        self.cum[j] + self.f[j] * d + slope * d * d / 2.0
    }

    /// The earliest time, in seconds, at which the integral reaches `c`;
    /// infinite if it never does (the profile ends at level 0 below `c`).
    pub fn inverse(&self, c: f64) -> f64 {
        if c.is_nan() || c <= 0.0 {
            return 0.0;
        }
        let m = self.cum.partition_point(|&v| v < c);
        if m == 0 {
            return 0.0;
        }
        let last = self.x.len() - 1;
        if m > last {
            let f = self.f[last];
            return if f > 0.0 { self.x[last] + (c - self.cum[last]) / f } else { f64::INFINITY };
        }
        let j = m - 1;
        let (len, f0) = (self.x[m] - self.x[j], self.f[j]);
        let slope = (self.f[m] - f0) / len;
        let r = c - self.cum[j];
        // f0·a + slope·a²/2 = r, in the form that is stable for any slope.
        let denominator = f0 + (f0 * f0 + 2.0 * slope * r).max(0.0).sqrt();
        let a = if denominator > 0.0 { 2.0 * r / denominator } else { 0.0 };
        self.x[j] + a.clamp(0.0, len)
    }

    /// The earliest time at or after `x` at which the level is above `theta`;
    /// `None` if it never is again.
    pub fn next_above(&self, x: f64, theta: f64) -> Option<f64> {
        let x = if x.is_nan() { 0.0 } else { x.max(0.0) };
        if self.level(x) > theta {
            return Some(x);
        }
        let last = self.x.len() - 1;
        for j in self.corner(x)..last {
            let (a, b) = (self.f[j], self.f[j + 1]);
            if b > theta {
                let at = if a >= b || a > theta {
                    self.x[j]
                } else {
                    self.x[j] + (self.x[j + 1] - self.x[j]) * (theta - a) / (b - a)
                };
                return Some(at.max(x));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * (1.0 + b.abs())
    }

    #[test]
    fn stages_integrate_and_invert() {
        // 1 s up to 0.5, 2 s at 0.5, a step to 1, 1 s at 1, 1 s down to 0.
        let p = Profile::from_stages([(1.0, 0.5), (2.0, 0.5), (0.0, 1.0), (1.0, 1.0), (1.0, 0.0)]);
        assert_eq!(p.length(), 5.0);
        assert_eq!(p.peak(), 1.0);
        assert!(close(p.level(0.5), 0.25));
        assert!(close(p.level(3.0), 1.0), "after a step, its new level");
        assert!(close(p.level(4.5), 0.5));
        assert_eq!(p.level(9.0), 0.0);
        assert!(close(p.integral(1.0), 0.25));
        assert!(close(p.integral(3.0), 1.25));
        assert!(close(p.integral(4.0), 2.25));
        assert!(close(p.integral(5.0), 2.75));
        assert!(close(p.integral(50.0), 2.75));
        for x in [0.0, 0.1, 0.7, 1.0, 2.2, 3.0, 3.5, 4.0, 4.9] {
            assert!(close(p.inverse(p.integral(x)), x), "{x}: {}", p.inverse(p.integral(x)));
        }
        assert_eq!(p.inverse(3.0), f64::INFINITY);
        let flat = Profile::flat();
        assert!(close(flat.inverse(7.0), 7.0));
        let ramp = Profile::ramp(2.0);
        assert!(close(ramp.integral(1.0), 0.25));
        assert!(close(ramp.integral(3.0), 2.0));
    }

    #[test]
    fn next_above_finds_when_a_connection_opens() {
        let p = Profile::from_stages([(2.0, 1.0), (2.0, 1.0), (2.0, 0.0)]);
        assert_eq!(p.next_above(0.0, 0.0), Some(0.0));
        assert!(close(p.next_above(0.0, 0.5).unwrap(), 1.0));
        assert_eq!(p.next_above(3.0, 0.5), Some(3.0));
        assert_eq!(p.next_above(5.5, 0.5), None);
        let steps = Profile::from_stages([(1.0, 0.0), (0.0, 1.0)]);
        assert_eq!(steps.next_above(0.0, 0.5), Some(1.0));
    }
}
