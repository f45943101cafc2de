//! How many virtual users of each type a run gets, and in which order they
//! start: computed the same way by the controller and every agent, so no
//! list of users has to travel.

use crate::Scenario;

impl Scenario {
    /// Virtual users per user type for `total` users: fixed counts first,
    /// the rest by weight (largest remainders, ties to the first), exact.
    pub fn split_users(&self, total: u64) -> Result<Vec<u64>, String> {
        // Sums in u128: counts and weights are each below 2^63, and a file
        // with many of them must get an error, not an overflow.
        let fixed: u128 = self.users.iter().filter_map(|u| u.count).map(u128::from).sum();
        if fixed > u128::from(total) {
            return Err(format!("the user types' fixed counts add up to {fixed}, more than the {total} users asked"));
        }
        let rest = total - fixed as u64;
        let weights: Vec<u64> = self.users.iter().map(|u| if u.count.is_some() { 0 } else { u.weight }).collect();
        let sum: u128 = weights.iter().copied().map(u128::from).sum();
        if rest > 0 && sum == 0 {
            return Err(format!("{rest} users are left after the fixed counts but no user type has a weight"));
        }
        let mut out: Vec<u64> = self.users.iter().map(|u| u.count.unwrap_or(0)).collect();
        if rest == 0 {
            return Ok(out);
        }
        let shares: Vec<(u64, u128)> = weights
            .iter()
            .map(|&w| {
                // Below 2^127, and the quotient is at most `rest`.
                let exact = u128::from(rest) * u128::from(w);
                ((exact / sum) as u64, exact % sum)
            })
            .collect();
        let mut given: u64 = shares.iter().map(|s| s.0).sum();
        for (o, s) in out.iter_mut().zip(&shares) {
            *o += s.0;
        }
        let mut order: Vec<usize> = (0..shares.len()).filter(|&i| weights[i] > 0).collect();
        order.sort_by(|&a, &b| shares[b].1.cmp(&shares[a].1).then(a.cmp(&b)));
        for i in order.into_iter().cycle() {
            if given == rest {
                break;
            }
            out[i] += 1;
            given += 1;
        }
        Ok(out)
    }
}

/// The user type of every virtual user, in start order, for `per_type`
/// users of each type: types interleaved in proportion, so that any
/// contiguous slice (an agent's share, or the first users a spawn rate
/// starts) is already a fair mix. Deterministic: the controller and the
/// agents compute the same order.
pub fn interleave(per_type: &[u64]) -> Vec<usize> {
    let mut keyed: Vec<(f64, usize)> = Vec::new();
    for (t, &n) in per_type.iter().enumerate() {
        for j in 0..n {
            keyed.push(((j as f64 + 0.5) / n as f64, t));
        }
    }
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    keyed.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Think, UserType};

    fn user(name: &str, weight: u64, count: Option<u64>) -> UserType {
        UserType { name: name.into(), weight, count, think: Think::None, setup: vec![], requests: vec![] }
    }

    #[test]
    fn users_split_exactly() {
        let s = Scenario {
            users: vec![user("a", 3, None), user("b", 1, None), user("c", 0, Some(2))],
            ..Scenario::default()
        };
        assert_eq!(s.split_users(10).unwrap(), [6, 2, 2]);
        assert_eq!(s.split_users(3).unwrap(), [1, 0, 2]);
        assert_eq!(s.split_users(2).unwrap(), [0, 0, 2]);
        for n in 2..200 {
            assert_eq!(s.split_users(n).unwrap().iter().sum::<u64>(), n);
        }
        assert!(s.split_users(1).unwrap_err().contains("fixed counts add up to 2"));
        let only_fixed = Scenario { users: vec![user("c", 0, Some(2))], ..Scenario::default() };
        assert_eq!(only_fixed.split_users(2).unwrap(), [2]);
        assert!(only_fixed.split_users(3).unwrap_err().contains("no user type has a weight"));
    }

    #[test]
    fn every_total_is_split_exactly_and_in_proportion() {
        let weights = [5u64, 3, 1, 1];
        let s = Scenario { users: weights.iter().map(|&w| user("u", w, None)).collect(), ..Scenario::default() };
        for n in 0..500u64 {
            let got = s.split_users(n).unwrap();
            assert_eq!(got.iter().sum::<u64>(), n);
            for (g, w) in got.iter().zip(weights) {
                // Largest remainders: never more than one from the exact share.
                let exact = n as f64 * w as f64 / 10.0;
                assert!((*g as f64 - exact).abs() < 1.0, "{n} users: {got:?}");
            }
        }
        // Deterministic.
        assert_eq!(s.split_users(7).unwrap(), s.split_users(7).unwrap());
    }

    #[test]
    fn huge_counts_and_weights_do_not_overflow() {
        let big = i64::MAX as u64;
        let s = Scenario {
            users: vec![user("a", 0, Some(big)), user("b", 0, Some(big)), user("c", 0, Some(big))],
            ..Scenario::default()
        };
        assert!(s.split_users(u64::MAX).unwrap_err().contains("fixed counts add up to"));
        let w = Scenario { users: vec![user("a", big, None), user("b", big, None)], ..Scenario::default() };
        assert_eq!(w.split_users(u64::MAX).unwrap().iter().sum::<u64>(), u64::MAX);
    }

    #[test]
    fn interleaving_mixes_every_slice() {
        let order = interleave(&[6, 2]);
        assert_eq!(order, [0, 0, 1, 0, 0, 0, 1, 0]);
        assert_eq!(interleave(&[0, 3]), [1, 1, 1]);
        assert_eq!(interleave(&[]), Vec::<usize>::new());
    }
}
