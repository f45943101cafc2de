//! Splitting a total (requests, connections) across agents in proportion to
//! their weights, deterministically.
//!
//! Largest-remainder apportionment: every part gets its floor share, then the
//! units left over go to the largest fractional remainders, ties to the agent
//! listed first; a minimum per part (one connection per agent) is then taken
//! from the largest parts. The parts always add up to the total exactly.

/// Splits `total` into `weights.len()` parts proportional to `weights`, then
/// raises parts below `min_each` to it by taking from the largest parts (when
/// `total` allows). Zero weights count as one.
pub fn split(total: u64, weights: &[u64], min_each: u64) -> Vec<u64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let weights: Vec<u128> = weights.iter().map(|&w| u128::from(w.max(1))).collect();
    let sum: u128 = weights.iter().sum();
    let total128 = u128::from(total);
    let mut parts: Vec<u64> = weights.iter().map(|w| (total128 * w / sum) as u64).collect();
    let assigned: u64 = parts.iter().sum();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    // Largest remainder first; the stable sort keeps list order among ties.
    order.sort_by_key(|&i| std::cmp::Reverse(total128 * weights[i] % sum));
    for &i in order.iter().take((total - assigned) as usize) {
        parts[i] += 1;
    }
    if total / weights.len() as u64 >= min_each {
        for i in 0..parts.len() {
            while parts[i] < min_each {
                // The first of the largest parts gives one unit.
                let j = (0..parts.len()).rev().max_by_key(|&j| parts[j]).unwrap_or(i);
                parts[j] -= 1;
                parts[i] += 1;
            }
        }
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
        assert_eq!(split(7, &[2, 1], 1), [5, 2]);
        assert_eq!(split(4, &[1, 1, 100, 1], 1), [1, 1, 1, 1]);
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
