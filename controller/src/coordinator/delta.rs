//! One agent's snapshot as the merge loop adds it: its counts, and its
//! latencies as the (value, count) pairs the agent recorded, read straight
//! from the HdrHistogram V2 bytes.
//!
//! Why not decode into histograms: a decoded histogram is as long as the
//! agent's range (about 64 KiB for latencies up to 100 ms), so every delta
//! cost an allocation to zero, and every merge into the run's total, the
//! agent's total and the series' second walked all of it. A delta of one
//! second from one agent holds a few distinct values; merging those costs
//! what the agent recorded, and a delta waiting in the merge loop's queue
//! is small. Histograms of another layout (another precision or lowest
//! value) take the full decode, which re-homes them.

use hdrhistogram::Histogram;
use volley_proto::Snapshot;
use volley_stats::{DecodeError, MAX_LATENCY_US, SIGNIFICANT_DIGITS, Totals, placeholder_histogram};

/// HdrHistogram's V2 cookie (uncompressed, 8-byte counts).
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
/// Our layout's half sub-bucket count, as a power of two: 3 significant
/// digits need 2,048 sub-buckets (the lowest value is 1, so no unit shift).
const HALF_MAGNITUDE: u32 = 10;

/// A histogram's recorded values: (lowest equivalent value, count) pairs in
/// increasing order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sparse(Vec<(u64, u64)>);

impl Sparse {
    /// Reads V2 bytes of our layout; `None` for anything else (compressed,
    /// another layout, values beyond an hour), which the full decode handles.
    /// Empty bytes are an empty histogram.
    pub fn decode(bytes: &[u8]) -> Option<Sparse> {
        if bytes.is_empty() {
            return Some(Sparse::default());
        }
        let u32_at = |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        let u64_at = |at: usize| Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
        let (cookie, len, offset, digits) = (u32_at(0)?, u32_at(4)? as usize, u32_at(8)?, u32_at(12)?);
        let (low, ratio) = (u64_at(16)?, f64::from_bits(u64_at(32)?));
        if cookie != V2_COOKIE || offset != 0 || digits != u32::from(SIGNIFICANT_DIGITS) || low != 1 || ratio != 1.0 {
            return None;
        }
        let mut payload = bytes.get(40..40usize.checked_add(len)?)?;
        let mut pairs = Vec::new();
        let mut index: u64 = 0;
        while !payload.is_empty() {
            let (zz, used) = varint(payload)?;
            payload = &payload[used..];
            // Zig-zag: a negative number is a run of empty counters.
            let n = ((zz >> 1) as i64) ^ -((zz & 1) as i64);
            if n < 0 {
                index = index.checked_add(n.unsigned_abs())?;
                continue;
            }
            if n > 0 {
                let value = value_at(index)?;
                if value > MAX_LATENCY_US {
                    return None;
                }
                pairs.push((value, n as u64));
            }
            index += 1;
        }
        Some(Sparse(pairs))
    }

    /// Every recorded value of `h`, as pairs (for deltas that were decoded whole).
    pub fn of(h: &Histogram<u64>) -> Sparse {
        Sparse(h.iter_recorded().map(|v| (h.lowest_equivalent(v.value_iterated_to()), v.count_at_value())).collect())
    }

    /// How many values it holds.
    pub fn count(&self) -> u64 {
        self.0.iter().fold(0u64, |a, (_, n)| a.saturating_add(*n))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Records its values into `h` (one of ours, which grows to hold them).
    pub fn add_to(&self, h: &mut Histogram<u64>) {
        for &(value, n) in &self.0 {
            // Values are within an hour, so growing cannot fail; were it to,
            // they would still count, at the largest value.
            if h.record_n(value, n).is_err() {
                h.saturating_record_n(value, n);
            }
        }
    }
}

/// The lowest value of counter `index` in our layout (HdrHistogram's
/// `value_for`): the first 2,048 counters hold 0..2,048 one by one, then
/// each further half-bucket of 1,024 counters doubles the unit.
fn value_at(index: u64) -> Option<u64> {
    let half = 1u64 << HALF_MAGNITUDE;
    let bucket = (index >> HALF_MAGNITUDE).checked_sub(1);
    let (bucket, sub) = match bucket {
        Some(b) => (b, (index & (half - 1)) + half),
        None => (0, index),
    };
    sub.checked_shl(u32::try_from(bucket).ok()?).filter(|v| v >> bucket == sub)
}

/// A LEB128 number of at most 9 bytes (the 9th byte whole), as HdrHistogram
/// writes them, and how many bytes it took.
fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(9) {
        if i == 8 {
            return Some((value | u64::from(b) << 56, 9));
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// One agent's delta: its counts, with the latencies apart.
#[derive(Debug)]
pub struct Delta {
    /// Everything but the latencies (its latency histograms are empty).
    pub counts: Totals,
    /// Latencies of the responses (from the intended send, in the open model).
    pub latencies: Sparse,
    /// Open model only: latencies from the actual send.
    pub uncorrected: Sparse,
}

impl Delta {
    /// Decodes a snapshot, with the checks of [`Totals::from_snapshot`].
    pub fn decode(snap: Snapshot) -> Result<Delta, DecodeError> {
        let (Some(latencies), Some(uncorrected)) =
            (Sparse::decode(&snap.histogram), Sparse::decode(&snap.histogram_uncorrected))
        else {
            return Totals::from_snapshot(&snap).map(Delta::from);
        };
        // The counts alone: a full decode would make two 16 KiB histograms
        // per snapshot only to leave them empty.
        let counts = Totals::counts_from_snapshot(&snap)?;
        let responses = counts.status_codes.values().fold(0u64, |a, n| a.saturating_add(*n));
        if responses != latencies.count() {
            return Err(DecodeError::Inconsistent { histogram: latencies.count(), responses });
        }
        if !uncorrected.is_empty() && uncorrected.count() != responses {
            return Err(DecodeError::Inconsistent { histogram: uncorrected.count(), responses });
        }
        Ok(Delta { counts, latencies, uncorrected })
    }

    /// Adds it to `t`.
    pub fn add_to(&self, t: &mut Totals) {
        t.add(&self.counts);
        self.latencies.add_to(&mut t.histogram);
        self.uncorrected.add_to(&mut t.uncorrected);
    }

    /// Requests completed in it.
    pub fn requests(&self) -> u64 {
        self.counts.requests
    }
}

impl From<Totals> for Delta {
    /// A delta decoded whole (or made up, in tests): its histograms become pairs.
    fn from(mut counts: Totals) -> Delta {
        let latencies = Sparse::of(&counts.histogram);
        let uncorrected = Sparse::of(&counts.uncorrected);
        counts.histogram = placeholder_histogram();
        counts.uncorrected = placeholder_histogram();
        Delta { counts, latencies, uncorrected }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volley_stats::{new_histogram, record_us};

    /// A histogram of ours holding `values`, each `n` times.
    fn histogram(values: &[(u64, u64)]) -> Histogram<u64> {
        let mut h = new_histogram();
        for &(v, n) in values {
            record_us(&mut h, v, n);
        }
        h
    }

    fn bytes(h: &Histogram<u64>) -> Vec<u8> {
        let t = Totals { histogram: h.clone(), ..Totals::default() };
        t.to_snapshot(std::time::Duration::ZERO).histogram
    }

    #[test]
    fn pairs_are_what_the_full_decode_records_and_add_up_the_same() {
        // Values across every range: one by one, then coarser, up to an hour.
        let mut values = vec![(1, 3), (2, 1), (1000, 7), (2047, 1), (2048, 2), (2049, 5), (4097, 1)];
        let mut v = 3u64;
        while v < MAX_LATENCY_US {
            values.push((v, v % 7 + 1));
            v = v * 3 + 1;
        }
        values.push((MAX_LATENCY_US, 2));
        let h = histogram(&values);
        let sparse = Sparse::decode(&bytes(&h)).expect("our layout");
        assert_eq!(sparse, Sparse::of(&h));
        assert_eq!(sparse.count(), h.len());
        // Adding the pairs is adding the histogram: to an empty one and to one
        // that already holds other values.
        for base in [vec![], vec![(5, 1), (90_000, 4), (7_000_000, 1)]] {
            let (mut by_pairs, mut by_add) = (histogram(&base), histogram(&base));
            sparse.add_to(&mut by_pairs);
            by_add.add(&h).unwrap();
            assert!(by_pairs == by_add, "base {base:?}");
            assert_eq!(by_pairs.value_at_quantile(0.99), by_add.value_at_quantile(0.99));
        }
    }

    #[test]
    fn an_empty_histogram_and_empty_bytes_hold_nothing() {
        assert_eq!(Sparse::decode(&[]), Some(Sparse::default()));
        assert_eq!(Sparse::decode(&bytes(&new_histogram())), Some(Sparse::default()));
    }

    #[test]
    fn another_layout_or_bad_bytes_take_the_full_decode() {
        let mut other = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).unwrap();
        other.record(1500).unwrap();
        let mut b = Vec::new();
        use hdrhistogram::serialization::Serializer as _;
        hdrhistogram::serialization::V2Serializer::new().serialize(&other, &mut b).unwrap();
        assert_eq!(Sparse::decode(&b), None, "two digits is not our layout");
        let ours = bytes(&histogram(&[(10, 1)]));
        assert_eq!(Sparse::decode(&ours[..ours.len() - 1]), None, "cut short");
        assert_eq!(Sparse::decode(&ours[..20]), None, "no header");
    }

    #[test]
    fn a_delta_decodes_to_what_the_full_decode_adds() {
        let mut t =
            Totals { requests: 4, successes: 3, failures: 1, bytes_sent: 400, connects: 2, ..Totals::default() };
        t.status_codes.insert(200, 3);
        t.errors.insert(volley_stats::ErrorClass::Timeout, 1);
        t.histogram = histogram(&[(100, 2), (250_000, 1)]);
        t.uncorrected = histogram(&[(90, 2), (240_000, 1)]);
        t.first_send_us = Some(5);
        let snap = t.to_snapshot(std::time::Duration::from_secs(1));
        let delta = Delta::decode(snap.clone()).unwrap();
        let (mut by_delta, mut by_totals) = (Totals::default(), Totals::default());
        for _ in 0..2 {
            delta.add_to(&mut by_delta);
            by_totals.add(&Totals::from_snapshot(&snap).unwrap());
        }
        assert!(by_delta.histogram == by_totals.histogram && by_delta.uncorrected == by_totals.uncorrected);
        for t in [&mut by_delta, &mut by_totals] {
            (t.histogram, t.uncorrected) = (new_histogram(), new_histogram());
        }
        assert_eq!(format!("{by_delta:?}"), format!("{by_totals:?}"));
        assert_eq!(delta.requests(), 4);
        // The checks of the full decode hold: responses must match the latencies.
        let mut bad = snap.clone();
        bad.status_codes[0].count = 4;
        assert!(matches!(Delta::decode(bad), Err(DecodeError::Inconsistent { .. })));
        let mut bad = snap;
        bad.status_codes[0].status = 42;
        assert!(matches!(Delta::decode(bad), Err(DecodeError::Status(42))));
    }
}
