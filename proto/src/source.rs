//! Source addresses: the local addresses an agent's connections leave from
//! (`controller run --source-addr`), and the ones an agent lets plans name
//! (`agent --allow-source`).
//!
//! One source address reaches one target `addr:port` through at most the
//! ephemeral port range (~28k ports on Linux by default), so a run wider
//! than that spreads its connections over several source addresses. A list
//! holds single addresses, ranges `A-B` and CIDR networks, parsed once; the
//! n-th address is found by arithmetic, so a `/16` is never expanded.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The most entries (addresses, ranges or networks) one list may have.
pub const MAX_ENTRIES: usize = 1024;

/// A list entry that does not parse, or a list that is too long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(String);

/// One entry: the inclusive range `first..=last` of one address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    v6: bool,
    first: u128,
    last: u128,
}

impl Range {
    fn len(&self) -> u128 {
        self.last - self.first + 1
    }

    fn ip(&self, n: u128) -> IpAddr {
        to_ip(self.v6, self.first + n)
    }

    fn covers(&self, other: &Range) -> bool {
        self.v6 == other.v6 && self.first <= other.first && other.last <= self.last
    }
}

fn to_bits(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn to_ip(v6: bool, bits: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(bits))
    } else {
        // In range by construction: IPv4 entries hold 32-bit values.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(bits).unwrap_or(u32::MAX)))
    }
}

impl FromStr for Range {
    type Err = SourceError;

    fn from_str(s: &str) -> Result<Range, SourceError> {
        let bad = |why: &str| SourceError(format!("{s:?} is not {why}"));
        let ip = |t: &str| t.trim().parse::<IpAddr>().map_err(|_| bad("an IP address, a range A-B or a CIDR network"));
        if let Some((net, len)) = s.split_once('/') {
            let (v6, bits) = to_bits(ip(net)?);
            let width = if v6 { 128 } else { 32 };
            let len: u32 = len.trim().parse().ok().filter(|&l| l <= width).ok_or_else(|| bad("a CIDR network"))?;
            let host_bits = width - len;
            let mask = if host_bits == 0 { 0 } else { u128::MAX >> (128 - host_bits) };
            let (mut first, mut last) = (bits & !mask, bits | mask);
            // An IPv4 network's own and broadcast addresses are no hosts'.
            if !v6 && host_bits >= 2 {
                first += 1;
                last -= 1;
            }
            return Ok(Range { v6, first, last });
        }
        if let Some((a, b)) = s.split_once('-') {
            let ((v6, first), (v6b, last)) = (to_bits(ip(a)?), to_bits(ip(b)?));
            if v6 != v6b || first > last {
                return Err(bad("a range from a lower to a higher address of one family"));
            }
            return Ok(Range { v6, first, last });
        }
        let (v6, bits) = to_bits(ip(s)?);
        Ok(Range { v6, first: bits, last: bits })
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.ip(0))
        } else {
            write!(f, "{}-{}", self.ip(0), to_ip(self.v6, self.last))
        }
    }
}

/// A list of source addresses (or of allowed ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddrs {
    ranges: Vec<Range>,
    total: u128,
}

impl SourceAddrs {
    /// Parses entries (each an address, a range `A-B` or a CIDR network;
    /// an entry may itself be a comma-separated list).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<SourceAddrs, SourceError> {
        let mut ranges = Vec::new();
        for entry in entries {
            for part in entry.as_ref().split(',').map(str::trim).filter(|p| !p.is_empty()) {
                ranges.push(part.parse::<Range>()?);
                if ranges.len() > MAX_ENTRIES {
                    return Err(SourceError(format!("more than {MAX_ENTRIES} entries")));
                }
            }
        }
        if ranges.is_empty() {
            return Err(SourceError("no address given".into()));
        }
        let total = ranges.iter().map(Range::len).fold(0u128, u128::saturating_add);
        Ok(SourceAddrs { ranges, total })
    }

    /// Every loopback address: `127.0.0.0/8` and `::1` (an agent's default
    /// `--allow-source`).
    pub fn loopback() -> SourceAddrs {
        let ranges = vec![
            Range {
                v6: false,
                first: u128::from(u32::from(Ipv4Addr::new(127, 0, 0, 0))),
                last: u128::from(u32::from(Ipv4Addr::new(127, 255, 255, 255))),
            },
            Range { v6: true, first: 1, last: 1 },
        ];
        SourceAddrs { total: ranges.iter().map(Range::len).sum(), ranges }
    }

    /// Every address of both families (`--allow-source any`).
    pub fn any() -> SourceAddrs {
        let ranges = vec![
            Range { v6: false, first: 0, last: u128::from(u32::MAX) },
            Range { v6: true, first: 0, last: u128::MAX },
        ];
        SourceAddrs { total: u128::MAX, ranges }
    }

    /// How many addresses the list holds (saturating).
    pub fn len(&self) -> u128 {
        self.total
    }

    /// Whether the list is empty (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The address for connection `i`: round-robin over the whole list.
    pub fn nth(&self, i: u64) -> IpAddr {
        let mut n = u128::from(i) % self.total.max(1);
        for r in &self.ranges {
            if n < r.len() {
                return r.ip(n);
            }
            n -= r.len();
        }
        self.ranges[0].ip(0)
    }

    /// The first entry of `other` that no entry of this list covers whole.
    pub fn first_outside(&self, other: &SourceAddrs) -> Option<String> {
        other.ranges.iter().find(|o| !self.ranges.iter().any(|r| r.covers(o))).map(Range::to_string)
    }

    /// The entries' first and last addresses: what to try binding to check a
    /// list is this host's without binding to every address.
    pub fn ends(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ranges.iter().flat_map(|r| {
            let last = to_ip(r.v6, r.last);
            std::iter::once(r.ip(0)).chain((r.first != r.last).then_some(last))
        })
    }

    /// Whether the list has addresses of the other family than `target`'s.
    pub fn family_mismatch(&self, target: IpAddr) -> Option<String> {
        self.ranges.iter().find(|r| r.v6 != target.is_ipv6()).map(Range::to_string)
    }

    /// The entries as text, one per range (for the plan).
    pub fn to_strings(&self) -> Vec<String> {
        self.ranges.iter().map(Range::to_string).collect()
    }
}

impl FromStr for SourceAddrs {
    type Err = SourceError;

    fn from_str(s: &str) -> Result<SourceAddrs, SourceError> {
        if s.trim() == "any" {
            return Ok(SourceAddrs::any());
        }
        SourceAddrs::parse(&[s])
    }
}

impl fmt::Display for SourceAddrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_strings().join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lists_ranges_and_networks() {
        let l: SourceAddrs = "127.0.0.2, 127.0.0.5-127.0.0.7,10.0.0.0/30,::1".parse().unwrap();
        assert_eq!(l.len(), 1 + 3 + 2 + 1);
        let firsts: Vec<IpAddr> = (0..8).map(|i| l.nth(i)).collect();
        let want = ["127.0.0.2", "127.0.0.5", "127.0.0.6", "127.0.0.7", "10.0.0.1", "10.0.0.2", "::1", "127.0.0.2"];
        assert_eq!(firsts, want.map(ip));
        assert_eq!(l.to_string(), "127.0.0.2,127.0.0.5-127.0.0.7,10.0.0.1-10.0.0.2,::1");
        assert_eq!(l.ends().count(), 1 + 2 + 2 + 1);
        let wide: SourceAddrs = "10.0.0.0/8".parse().unwrap();
        assert_eq!(wide.len(), (1 << 24) - 2);
        assert_eq!(wide.nth(u64::MAX), wide.nth(u64::MAX % ((1 << 24) - 2)));
        assert_eq!("fd00::/127".parse::<SourceAddrs>().unwrap().len(), 2);
        for bad in ["", "x", "127.0.0.9-127.0.0.1", "127.0.0.1-::1", "10.0.0.0/33", "1.2.3.4/x", "::1/129"] {
            assert!(bad.parse::<SourceAddrs>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn allowed_lists_cover_whole_entries() {
        let lo = SourceAddrs::loopback();
        assert_eq!(lo.first_outside(&"127.0.0.2,127.1.0.0/16,::1".parse().unwrap()), None);
        assert_eq!(lo.first_outside(&"127.0.0.2,10.0.0.1".parse().unwrap()), Some("10.0.0.1".into()));
        assert_eq!(
            lo.first_outside(&"126.255.255.255-127.0.0.1".parse().unwrap()).as_deref(),
            Some("126.255.255.255-127.0.0.1")
        );
        assert_eq!(SourceAddrs::any().first_outside(&"10.0.0.0/8,fd00::/64".parse().unwrap()), None);
        let l: SourceAddrs = "127.0.0.2,::1".parse().unwrap();
        assert_eq!(l.family_mismatch(ip("127.0.0.1")), Some("::1".into()));
        assert_eq!(l.family_mismatch(ip("::1")), Some("127.0.0.2".into()));
    }
}
