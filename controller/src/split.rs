//! Splitting a total (requests, connections) across agents in proportion to
//! their weights, deterministically.
//!
//! Largest-remainder apportionment: every part gets its floor share, then the
//! units left over go to the largest fractional remainders, ties to the agent
//! listed first. The parts always add up to the total exactly.

/// Splits `total` into `weights.len()` parts proportional to `weights`, each at
/// least `min_each` (the caller ensures `total >= min_each * weights.len()`).
/// Zero weights count as one.
pub fn split(total: u64, weights: &[u64], min_each: u64) -> Vec<u64> {
    let k = weights.len() as u64;
    if k == 0 {
        return Vec::new();
    }
    let base = min_each.min(total / k);
    let rest = total - base * k;
    let weights: Vec<u128> = weights.iter().map(|&w| u128::from(w.max(1))).collect();
    let sum: u128 = weights.iter().sum();
    let mut parts: Vec<u64> = weights.iter().map(|w| base + (u128::from(rest) * w / sum) as u64).collect();
    let assigned: u64 = parts.iter().sum();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    // Largest remainder first; the stable sort keeps list order among ties.
    order.sort_by_key(|&i| std::cmp::Reverse(u128::from(rest) * weights[i] % sum));
    for &i in order.iter().take((total - assigned) as usize) {
        parts[i] += 1;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn parts_add_up_and_follow_weights() {
        assert_eq!(split(10, &[1, 1], 0), [5, 5]);
        assert_eq!(split(11, &[1, 1], 0), [6, 5]);
        assert_eq!(split(10, &[2, 1, 1], 0), [5, 3, 2]);
        assert_eq!(split(5, &[1, 16], 1), [1, 4]);
        assert_eq!(split(1, &[1, 1], 0), [1, 0]);
        assert_eq!(split(3, &[0, 0, 0], 1), [1, 1, 1]);
        for total in [0u64, 1, 7, 99, 1_000_003, u64::MAX / 2] {
            for weights in [&[1u64][..], &[3, 5], &[7, 1, 1, 2], &[u64::MAX / 4, 1]] {
                let parts = split(total, weights, 0);
                assert_eq!(parts.iter().sum::<u64>(), total, "{total} {weights:?}");
            }
        }
    }
}
