//! Timeouts that follow each agent's link. The controller measures an
//! agent's round trip at connect ([`SAMPLES`] Describe calls) and derives from it
//! when the agent counts as lost, how long a Renew may take, the run lease,
//! how far ahead of the start instant plans go out and how far ahead of its
//! pace an agent is granted requests. Every figure has a floor, which is what
//! a fast link (loopback, one data centre) gets.
//!
//! Why these shapes: a healthy agent sends a snapshot every second, and each
//! one crosses the link once; on a lossy link TCP retransmits a lost segment
//! after about a round trip plus its variation, doubling each time. Silence
//! is therefore judged against the snapshot interval plus several round trips
//! and several times the jitter, never against a fixed second.

use std::time::Duration;

/// The floor of [`Link::lost_after`] (what a loopback agent gets).
pub const LOST_AFTER_FLOOR: Duration = Duration::from_millis(2200);
/// The floor of [`Link::lease`].
pub const LEASE_FLOOR: Duration = Duration::from_secs(3);
/// The floor of [`Link::renew_timeout`].
pub const RENEW_TIMEOUT_FLOOR: Duration = Duration::from_secs(1);
/// The floor of [`Link::grant_ahead`]: two seconds of the agent's pace.
pub const GRANT_AHEAD_FLOOR: Duration = Duration::from_secs(2);
/// The floor and ceiling of [`start_lead`].
pub const START_LEAD_FLOOR: Duration = Duration::from_millis(20);
pub const START_LEAD_CEILING: Duration = Duration::from_secs(10);
/// How many Describe round trips are measured at connect: two, the first on
/// the new connection and the second on a warm one; the faster is the round
/// trip and the difference the jitter. A third call cost every agent another
/// round trip of the controller's CPU at start (issue #19) and on average
/// widened the spread seen by only half as much again; the loss time allows
/// six slow round trips (with twice the jitter) on top of that.
pub const SAMPLES: usize = 2;

/// One agent's measured link: its fastest Describe round trip and the spread
/// of the samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Link {
    pub rtt: Duration,
    pub jitter: Duration,
}

impl Link {
    /// The link seen through these round-trip samples (none: a zero link).
    pub fn from_samples(samples: &[Duration]) -> Link {
        let (Some(&min), Some(&max)) = (samples.iter().min(), samples.iter().max()) else {
            return Link::default();
        };
        Link { rtt: min, jitter: max - min }
    }

    /// A round trip that is seldom exceeded: the fastest plus twice the spread.
    fn slow_rtt(&self) -> Duration {
        self.rtt + self.jitter * 2
    }

    /// Silence after which the agent is lost: the one-second snapshot
    /// interval, then room for six slow round trips (retransmissions).
    pub fn lost_after(&self) -> Duration {
        (Duration::from_secs(1) + self.slow_rtt() * 6).max(LOST_AFTER_FLOOR)
    }

    /// How long one renewal may take to arrive (the lease leaves room for
    /// it past the loss time); also how long a Cancel or an answer to a plan
    /// is waited for beyond the connect timeout.
    pub fn renew_timeout(&self) -> Duration {
        (self.slow_rtt() * 4).max(RENEW_TIMEOUT_FLOOR)
    }

    /// The run lease the agent is given: it outlives a Renew that times out
    /// and a silence the controller would not yet call a loss.
    pub fn lease(&self) -> Duration {
        (self.lost_after() + self.renew_timeout()).max(LEASE_FLOOR)
    }

    /// How far ahead of its pace the agent's grants run: two seconds, plus
    /// four round trips so that a grant asked for when the agent's snapshot
    /// left is there long before the pool runs dry.
    pub fn grant_ahead(&self) -> Duration {
        GRANT_AHEAD_FLOOR + self.slow_rtt() * 4
    }
}

/// How far in the future the common start instant is set once every agent
/// has accepted its plan: long enough for the start to reach the slowest
/// agent (one way, plus its jitter, twice over), bounded.
pub fn start_lead(links: &[Link]) -> Duration {
    let slowest = links.iter().map(Link::slow_rtt).max().unwrap_or_default();
    (START_LEAD_FLOOR + slowest * 2).min(START_LEAD_CEILING)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_fast_link_gets_the_floors() {
        let l = Link::from_samples(&[MS / 5, MS / 10, MS / 4]);
        assert_eq!(l.rtt, MS / 10);
        assert_eq!(l.lost_after(), LOST_AFTER_FLOOR);
        assert_eq!(l.renew_timeout(), RENEW_TIMEOUT_FLOOR);
        assert_eq!(l.lease(), LOST_AFTER_FLOOR + RENEW_TIMEOUT_FLOOR);
        assert!(l.grant_ahead() < GRANT_AHEAD_FLOOR + MS * 2);
        assert!(start_lead(&[l]) < START_LEAD_FLOOR + MS);
    }

    #[test]
    fn a_slow_link_is_given_time_in_proportion() {
        // 600 ms round trips, one sample 200 ms slower.
        let l = Link::from_samples(&[MS * 600, MS * 800, MS * 610]);
        assert_eq!((l.rtt, l.jitter), (MS * 600, MS * 200));
        // 1 s + 6 × (600 + 400) ms.
        assert_eq!(l.lost_after(), MS * 7000);
        assert_eq!(l.renew_timeout(), MS * 4000);
        assert_eq!(l.lease(), MS * 11_000);
        assert_eq!(l.grant_ahead(), MS * 6000);
        assert_eq!(start_lead(&[Link::default(), l]), MS * 2020);
    }

    #[test]
    fn no_samples_is_a_zero_link_and_the_lead_is_bounded() {
        assert_eq!(Link::from_samples(&[]), Link::default());
        let awful = Link { rtt: Duration::from_secs(30), jitter: Duration::ZERO };
        assert_eq!(start_lead(&[awful]), START_LEAD_CEILING);
    }
}
