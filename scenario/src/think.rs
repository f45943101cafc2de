//! Think time: how long a virtual user pauses between two iterations, as the
//! file writes it (`constant 1s`, `between 0.5s..1.5s`,
//! `constant_throughput 2`) and as the runtime asks for it.
//!
//! Durations travel to agents as whole milliseconds (see [`ms`]), so the file's
//! durations are cut to the millisecond when read: what the controller checked
//! is exactly what every agent runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Think time between a virtual user's iterations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Think {
    /// None: the next iteration starts at once.
    #[default]
    None,
    /// Always this long.
    Constant(#[serde(with = "ms")] Duration),
    /// Uniformly between two bounds (whole milliseconds, both included).
    Between(#[serde(with = "ms")] Duration, #[serde(with = "ms")] Duration),
    /// Iterations per second per user: the pause fills up each 1/rate period.
    ConstantThroughput(f64),
}

impl Think {
    /// Parses `constant 1s`, `between 0.5s..1.5s`, `constant_throughput 2` or `none`.
    pub fn parse(s: &str) -> Result<Think, String> {
        let s = s.trim();
        let (kind, arg) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
        let think = match kind {
            "none" if arg.is_empty() => Think::None,
            "constant" => Think::Constant(parse_millis(arg)?),
            "between" => {
                let (a, b) = arg.split_once("..").ok_or_else(|| format!("{arg:?} is not A..B (e.g. 0.5s..1.5s)"))?;
                Think::Between(parse_millis(a)?, parse_millis(b)?)
            }
            "constant_throughput" => Think::ConstantThroughput(
                arg.trim().parse::<f64>().map_err(|_| format!("{arg:?} is not a number of iterations per second"))?,
            ),
            _ => {
                return Err(format!(
                    "{s:?} is not a think time: use \"constant 1s\", \"between 0.5s..1.5s\", \"constant_throughput 2\" or \"none\""
                ));
            }
        };
        think.validate()?;
        Ok(think)
    }

    /// Checks values that parse but cannot be run (a scenario received as
    /// JSON is checked with this too).
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Think::Between(a, b) if a > b => {
                Err(format!("between {a:?}..{b:?}: the lower bound is above the upper one"))
            }
            Think::ConstantThroughput(r) if !(r.is_finite() && r > 0.0) => {
                Err(format!("constant_throughput {r}: the rate must be a number of iterations per second above 0"))
            }
            // The period must be a duration at all (below about 5e-20 it is not).
            Think::ConstantThroughput(r) if Duration::try_from_secs_f64(1.0 / r).is_err() => {
                Err(format!("constant_throughput {r}: the rate is too small to pace anything"))
            }
            _ => Ok(()),
        }
    }

    /// The pause after an iteration that took `took`; `random` is a random u64.
    ///
    /// Never panics, even for values [`Think::validate`] refuses: an inverted
    /// `between` pauses its lower bound, a rate that is not positive not at all.
    pub fn pause(&self, took: Duration, random: u64) -> Duration {
        match *self {
            Think::None => Duration::ZERO,
            Think::Constant(d) => d,
            Think::Between(a, b) => {
                let span = u64::try_from(b.saturating_sub(a).as_millis()).unwrap_or(u64::MAX);
                let offset = match span.checked_add(1) {
                    Some(buckets) => random % buckets,
                    // Every u64 is a valid offset.
                    None => random,
                };
                a.saturating_add(Duration::from_millis(offset))
            }
            Think::ConstantThroughput(r) if r > 0.0 => {
                Duration::try_from_secs_f64(1.0 / r).unwrap_or(Duration::MAX).saturating_sub(took)
            }
            Think::ConstantThroughput(_) => Duration::ZERO,
        }
    }
}

/// Parses a duration such as `500ms`, `1.5s` or `2m` (the workspace's one
/// syntax, [`volley_common::parse_duration`]), cut to whole milliseconds: the
/// unit scenarios travel in.
pub(crate) fn parse_millis(text: &str) -> Result<Duration, String> {
    let d = volley_common::parse_duration(text).map_err(|e| e.to_string())?;
    let ms = u64::try_from(d.as_millis()).map_err(|_| format!("{:?} is too long", text.trim()))?;
    Ok(Duration::from_millis(ms))
}

/// Serde for a [`Duration`] as whole milliseconds, the form scenarios travel in.
pub mod ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `d` as its whole milliseconds (saturating at `u64::MAX`).
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Reads whole milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn think_times_parse() {
        assert_eq!(Think::parse("constant 1s").unwrap(), Think::Constant(ms(1000)));
        assert_eq!(Think::parse("  between 0.5s..1.5s ").unwrap(), Think::Between(ms(500), ms(1500)));
        assert_eq!(Think::parse("between 1ms..1ms").unwrap(), Think::Between(ms(1), ms(1)));
        assert_eq!(Think::parse("constant_throughput 2").unwrap(), Think::ConstantThroughput(2.0));
        assert_eq!(Think::parse("constant 1.5ms").unwrap(), Think::Constant(ms(1)), "cut to whole ms");
        assert_eq!(Think::parse("none").unwrap(), Think::None);
        let cases = [
            ("sometimes", "is not a think time"),
            ("between 2s..1s", "the lower bound is above the upper one"),
            ("between 1s", "is not A..B"),
            ("constant soon", "\"soon\" is not a duration"),
            ("constant", "\"\" is not a duration"),
            ("constant_throughput -1", "above 0"),
            ("constant_throughput 0", "above 0"),
            ("constant_throughput NaN", "above 0"),
            ("constant_throughput inf", "above 0"),
            ("constant_throughput 1e-300", "too small"),
            ("constant_throughput fast", "is not a number"),
            ("none at all", "is not a think time"),
        ];
        for (bad, why) in cases {
            let e = Think::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn pauses() {
        let ct = Think::ConstantThroughput(2.0);
        assert_eq!(ct.pause(ms(100), 0), ms(400));
        assert_eq!(ct.pause(Duration::from_secs(1), 0), Duration::ZERO);
        assert_eq!(Think::Constant(ms(7)).pause(ms(100), 9), ms(7));
        assert_eq!(Think::None.pause(ms(100), 9), Duration::ZERO);
        // Every whole millisecond of the range, bounds included, and nothing else.
        let b = Think::Between(ms(100), ms(200));
        let mut seen = [false; 101];
        for r in 0..10_000 {
            let p = b.pause(Duration::ZERO, r);
            assert!(p >= ms(100) && p <= ms(200), "{p:?}");
            seen[(p.as_millis() - 100) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let huge = Duration::from_millis(u64::MAX);
        assert_eq!(Think::Between(Duration::ZERO, huge).pause(Duration::ZERO, u64::MAX), huge);
        assert_eq!(Think::Between(ms(5), ms(3)).pause(Duration::ZERO, 77), ms(5));
        assert_eq!(Think::ConstantThroughput(-1.0).pause(Duration::ZERO, 0), Duration::ZERO);
        assert_eq!(Think::ConstantThroughput(f64::NAN).pause(Duration::ZERO, 0), Duration::ZERO);
        assert_eq!(Think::ConstantThroughput(1e-300).pause(Duration::ZERO, 0), Duration::MAX);
        assert!(Think::Between(ms(5), ms(3)).validate().is_err());
        assert!(Think::ConstantThroughput(f64::NAN).validate().is_err());
    }

    #[test]
    fn json_carries_milliseconds() {
        let t = Think::Between(ms(500), ms(1500));
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"between":[500,1500]}"#);
        assert_eq!(serde_json::from_str::<Think>(&json).unwrap(), t);
        assert_eq!(serde_json::to_string(&Think::Constant(ms(1000))).unwrap(), r#"{"constant":1000}"#);
        assert_eq!(serde_json::to_string(&Think::None).unwrap(), r#""none""#);
    }
}
