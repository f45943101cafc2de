//! Counting what the server answered, by path and status.
//!
//! The counts are what tests compare a load tester's report against, so they
//! must be exact while costing the hot path next to nothing. Each server thread
//! owns a `Shard`: `/hello` answers bump a relaxed atomic, everything else
//! goes into a map behind a mutex that only its own thread and the occasional
//! `Counters::snapshot` ever take, so it is never contended under load.
//!
//! Each shard also keeps the wall-clock instants of the first and last
//! response it counted (atomics: set once, and `fetch_max`), so a test can
//! compare when load reached the server with when a load tester says it ran.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use volley_common::lock;

/// How many distinct paths get a key of their own before the rest share [`OTHER`].
/// A scan over random paths must not grow the server's memory without bound.
pub const MAX_PATHS: usize = 1000;

/// How many distinct methods one path counts apart before the rest share [`OTHER`].
const MAX_METHODS: usize = 16;

/// The key that paths past [`MAX_PATHS`] are counted under.
pub const OTHER: &str = "(other)";

/// How many distinct peer addresses get a count of their own in
/// [`Stats::connections_by_peer`]; the rest share [`OTHER`].
pub const MAX_PEERS: usize = 1000;

/// A snapshot of what the server has answered (requests to `/stats` excluded).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// Every response counted below, summed.
    pub total: u64,
    /// Request path (without query) -> status code -> responses.
    pub by_path: BTreeMap<String, BTreeMap<u16, u64>>,
    /// `METHOD path` -> status code -> responses: the same responses, told
    /// apart by method (`GET /items` and `POST /items` share a path).
    #[serde(default)]
    pub by_method_path: BTreeMap<String, BTreeMap<u16, u64>>,
    /// When the first counted request was answered, in microseconds since
    /// the Unix epoch; `None` before any.
    #[serde(default)]
    pub first_request_unix_us: Option<u64>,
    /// When the last counted request was answered, in microseconds since
    /// the Unix epoch; `None` before any.
    #[serde(default)]
    pub last_request_unix_us: Option<u64>,
    /// Connections accepted, by the peer's IP address (its source address),
    /// those that asked for `/stats` included.
    #[serde(default)]
    pub connections_by_peer: BTreeMap<String, u64>,
    /// Requests that arrived over HTTP/2 (of those counted above).
    #[serde(default)]
    pub http2_requests: u64,
    /// The demo API: successful `POST /login`s by user name (past
    /// [`MAX_DEMO_KEYS`] names, the rest share [`OTHER`]).
    #[serde(default)]
    pub logins_by_user: BTreeMap<String, u64>,
    /// The demo API: items created by `POST /items`, by name (capped the same way).
    #[serde(default)]
    pub items_by_name: BTreeMap<String, u64>,
}

/// How many distinct user and item names the demo API counts apart.
pub const MAX_DEMO_KEYS: usize = 100_000;

impl Stats {
    /// Responses to `path` that had status `status`.
    pub fn count(&self, path: &str, status: u16) -> u64 {
        self.by_path.get(path).and_then(|by_status| by_status.get(&status)).copied().unwrap_or(0)
    }

    /// Responses with `status` to `method` requests for `path`.
    pub fn count_method(&self, method: &str, path: &str, status: u16) -> u64 {
        self.by_method_path.get(&format!("{method} {path}")).and_then(|s| s.get(&status)).copied().unwrap_or(0)
    }

    /// Responses to `method` requests for `path`, whatever their status.
    pub fn method_total(&self, method: &str, path: &str) -> u64 {
        self.by_method_path.get(&format!("{method} {path}")).map_or(0, |s| s.values().sum())
    }

    /// Responses to `path`, whatever their status.
    pub fn path_total(&self, path: &str) -> u64 {
        self.by_path.get(path).map_or(0, |by_status| by_status.values().sum())
    }

    /// Connections accepted from `ip`.
    pub fn connections_from(&self, ip: &str) -> u64 {
        self.connections_by_peer.get(ip).copied().unwrap_or(0)
    }
}

/// One thread's counts.
#[derive(Default)]
struct Shard {
    /// `GET /hello` answered 200: the route a load test hammers, so it skips the map.
    hello_ok: AtomicU64,
    /// Requests that arrived over HTTP/2.
    http2: AtomicU64,
    /// Microseconds since the epoch of this thread's first counted response; 0 before any.
    first_us: AtomicU64,
    /// Microseconds since the epoch of this thread's latest counted response; 0 before any.
    last_us: AtomicU64,
    /// Every other counted response: path -> method -> status -> count.
    paths: Mutex<HashMap<Box<str>, ByMethod>>,
}

/// One path's counts: method -> status -> count.
type ByMethod = HashMap<Box<str>, BTreeMap<u16, u64>>;

/// The counts of one server: a shard per thread plus the set of paths that
/// have been given a key, which is shared so the [`MAX_PATHS`] cap is global.
pub(crate) struct Counters {
    shards: Box<[Shard]>,
    admitted: Mutex<HashSet<Box<str>>>,
    /// Connections by peer IP (`None`: past [`MAX_PEERS`]); taken once per
    /// accepted connection, never per request.
    peers: Mutex<HashMap<Option<IpAddr>, u64>>,
}

impl Counters {
    pub(crate) fn new(threads: usize) -> Self {
        Counters {
            shards: (0..threads).map(|_| Shard::default()).collect(),
            admitted: Mutex::new(HashSet::new()),
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one accepted connection from `peer`.
    pub(crate) fn accepted(&self, peer: IpAddr) {
        let mut peers = lock(&self.peers);
        let key = if peers.len() < MAX_PEERS || peers.contains_key(&Some(peer)) { Some(peer) } else { None };
        *peers.entry(key).or_default() += 1;
    }

    /// Counts one `GET /hello` answered 200 on thread `shard`.
    #[inline]
    pub(crate) fn hello_ok(&self, shard: usize) {
        // Relaxed: nothing is ordered against this count; a snapshot only needs
        // every increment that happened before the response was written.
        let shard = &self.shards[shard];
        shard.hello_ok.fetch_add(1, Ordering::Relaxed);
        shard.stamp();
    }

    /// Counts one request that arrived over HTTP/2 on thread `shard`.
    #[inline]
    pub(crate) fn http2(&self, shard: usize) {
        self.shards[shard].http2.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one response with `status` to a `method` request for `path`
    /// on thread `shard`.
    pub(crate) fn record(&self, shard: usize, method: &str, path: &str, status: u16) {
        self.shards[shard].stamp();
        let mut paths = lock(&self.shards[shard].paths);
        // The common case, a path and method this thread has seen, neither
        // allocates nor touches the shared set.
        if let Some(by_status) = paths.get_mut(path).and_then(|m| m.get_mut(method)) {
            *by_status.entry(status).or_default() += 1;
            return;
        }
        let key = if paths.contains_key(path) || self.admit(path) { path } else { OTHER };
        let by_method = paths.entry(key.into()).or_default();
        // Methods are the client's to choose: a few keys each, then one more.
        let method = if by_method.len() < MAX_METHODS { method } else { OTHER };
        *by_method.entry(method.into()).or_default().entry(status).or_default() += 1;
    }

    /// Whether `path` has, or may now take, a key of its own.
    fn admit(&self, path: &str) -> bool {
        let mut admitted = lock(&self.admitted);
        if admitted.contains(path) {
            return true;
        }
        if admitted.len() >= MAX_PATHS {
            return false;
        }
        admitted.insert(path.into());
        true
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let mut stats = Stats::default();
        for (peer, &n) in lock(&self.peers).iter() {
            stats.connections_by_peer.insert(peer.map_or_else(|| OTHER.to_owned(), |ip| ip.to_string()), n);
        }
        for shard in self.shards.iter() {
            let (first, last) = (shard.first_us.load(Ordering::Relaxed), shard.last_us.load(Ordering::Relaxed));
            if first != 0 {
                stats.first_request_unix_us = Some(stats.first_request_unix_us.map_or(first, |f| f.min(first)));
            }
            if last != 0 {
                stats.last_request_unix_us = Some(stats.last_request_unix_us.map_or(last, |l| l.max(last)));
            }
            stats.http2_requests += shard.http2.load(Ordering::Relaxed);
            let hello = shard.hello_ok.load(Ordering::Relaxed);
            if hello > 0 {
                add(&mut stats, "GET", "/hello", 200, hello);
            }
            for (path, by_method) in lock(&shard.paths).iter() {
                for (method, by_status) in by_method {
                    for (&status, &n) in by_status {
                        add(&mut stats, method, path, status, n);
                    }
                }
            }
        }
        stats
    }
}

impl Shard {
    /// Notes that this thread counted a response now. The atomics are this
    /// thread's own (no lock, no cache line shared with other threads'
    /// writes); the first instant is set once, the last only moves forward.
    #[inline]
    fn stamp(&self) {
        let now = unix_us();
        if self.first_us.load(Ordering::Relaxed) == 0 {
            let _ = self.first_us.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
        self.last_us.fetch_max(now, Ordering::Relaxed);
    }
}

/// Microseconds since the Unix epoch, at least 1 so that 0 can mean "never".
fn unix_us() -> u64 {
    // A clock set before 1970 reads as 1 µs rather than failing a request.
    let us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
    u64::try_from(us).unwrap_or(u64::MAX).max(1)
}

fn add(stats: &mut Stats, method: &str, path: &str, status: u16, n: u64) {
    stats.total += n;
    *stats.by_method_path.entry(format!("{method} {path}")).or_default().entry(status).or_default() += n;
    let by_status = match stats.by_path.get_mut(path) {
        Some(by_status) => by_status,
        None => stats.by_path.entry(path.to_owned()).or_default(),
    };
    *by_status.entry(status).or_default() += n;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_summed() {
        let counters = Counters::new(2);
        counters.hello_ok(0);
        counters.hello_ok(1);
        counters.record(1, "POST", "/hello", 405);
        counters.record(0, "GET", "/status/500", 500);
        counters.record(1, "GET", "/status/500", 500);
        counters.record(1, "DELETE", "/status/500", 500);

        let stats = counters.snapshot();
        assert_eq!(stats.total, 6);
        assert_eq!(stats.count("/hello", 200), 2);
        assert_eq!(stats.count("/hello", 405), 1);
        assert_eq!(stats.count_method("POST", "/hello", 405), 1);
        assert_eq!(stats.count_method("GET", "/hello", 200), 2);
        assert_eq!(stats.path_total("/hello"), 3);
        assert_eq!(stats.count("/status/500", 500), 3);
        assert_eq!(stats.method_total("GET", "/status/500"), 2);
        assert_eq!(stats.method_total("DELETE", "/status/500"), 1);
        assert_eq!(stats.count("/nowhere", 404), 0);
    }

    #[test]
    fn paths_past_the_cap_share_one_key_across_threads() {
        let counters = Counters::new(2);
        for i in 0..MAX_PATHS + 3 {
            counters.record(i % 2, "GET", &format!("/p/{i}"), 404);
        }
        // A path admitted on one thread keeps its key on another.
        counters.record(1, "GET", "/p/0", 404);

        let stats = counters.snapshot();
        assert_eq!(stats.by_path.len(), MAX_PATHS + 1);
        assert_eq!(stats.count(OTHER, 404), 3);
        assert_eq!(stats.count("/p/0", 404), 2);
        assert_eq!(stats.total, MAX_PATHS as u64 + 4);
    }

    #[test]
    fn first_and_last_request_instants_span_the_requests() {
        let counters = Counters::new(2);
        let empty = counters.snapshot();
        assert_eq!((empty.first_request_unix_us, empty.last_request_unix_us), (None, None));
        let json = serde_json::to_value(&empty).unwrap();
        assert!(json["first_request_unix_us"].is_null() && json["last_request_unix_us"].is_null(), "{json}");

        let before = unix_us();
        counters.hello_ok(1);
        let first = counters.snapshot().first_request_unix_us.unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        counters.record(0, "GET", "/status/500", 500);
        counters.hello_ok(1);
        let after = unix_us();

        let stats = counters.snapshot();
        // The first instant is set once: later requests on any thread keep it.
        assert_eq!(stats.first_request_unix_us, Some(first));
        let last = stats.last_request_unix_us.unwrap();
        assert!(before <= first && first + 5_000 <= last && last <= after, "{before} {first} {last} {after}");
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["first_request_unix_us"], first);
        assert_eq!(json["last_request_unix_us"], last);
    }

    #[test]
    fn connections_are_counted_by_peer_up_to_a_cap() {
        let counters = Counters::new(1);
        let ip = |i: usize| IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
        for i in 0..MAX_PEERS + 2 {
            counters.accepted(ip(i));
        }
        counters.accepted(ip(0));
        let stats = counters.snapshot();
        assert_eq!(stats.connections_by_peer.len(), MAX_PEERS + 1);
        assert_eq!(stats.connections_from("10.0.0.0"), 2);
        assert_eq!(stats.connections_from(OTHER), 2);
    }

    #[test]
    fn stats_round_trip_through_json() {
        let counters = Counters::new(1);
        counters.hello_ok(0);
        counters.record(0, "GET", "/status/503", 503);
        let stats = counters.snapshot();
        let json = serde_json::to_string(&stats).unwrap();
        assert_eq!(serde_json::from_str::<Stats>(&json).unwrap(), stats);
    }
}
