//! Counters of served responses, by path and status.
//!
//! `GET /hello` answered 200 is the hot path, so each worker thread has its
//! own counter for it (padded to its own cache line, written only by that
//! thread). Every other response goes to one shared map behind a mutex: those
//! routes sleep or echo bodies, so a short uncontended lock is noise there.
//! The map holds at most [`MAX_PATHS`] distinct paths; later new paths are
//! counted under `(other)` so a scan of random URLs cannot grow memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinct paths counted separately.
pub const MAX_PATHS: usize = 1000;

/// What a server has served: every response except those to `/stats`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// Responses in total.
    pub total: u64,
    /// Responses by path (without query) and status.
    pub by_path: BTreeMap<String, BTreeMap<u16, u64>>,
}

impl Stats {
    /// Responses to `path` with `status`.
    pub fn count(&self, path: &str, status: u16) -> u64 {
        self.by_path.get(path).and_then(|m| m.get(&status)).copied().unwrap_or(0)
    }

    /// Responses to `path`, any status.
    pub fn path_total(&self, path: &str) -> u64 {
        self.by_path.get(path).map_or(0, |m| m.values().sum())
    }
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    hello: AtomicU64,
}

/// The live counters of one server.
#[derive(Debug)]
pub struct Counters {
    shards: Vec<Shard>,
    others: Mutex<HashMap<String, BTreeMap<u16, u64>>>,
}

impl Counters {
    /// Counters for `threads` worker threads.
    pub fn new(threads: usize) -> Counters {
        Counters { shards: (0..threads.max(1)).map(|_| Shard::default()).collect(), others: Mutex::new(HashMap::new()) }
    }

    /// Counts one `GET /hello` answered 200 by worker `thread`.
    #[inline]
    pub fn hello(&self, thread: usize) {
        self.shards[thread % self.shards.len()].hello.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts any other response.
    pub fn record(&self, path: &str, status: u16) {
        let mut map = self.others.lock().unwrap_or_else(|p| p.into_inner());
        let key = if map.contains_key(path) || map.len() < MAX_PATHS { path } else { "(other)" };
        match map.get_mut(key) {
            Some(m) => *m.entry(status).or_default() += 1,
            None => {
                map.insert(key.to_owned(), BTreeMap::from([(status, 1)]));
            }
        }
    }

    /// A consistent-enough copy: each counter is read once.
    pub fn snapshot(&self) -> Stats {
        let mut by_path: BTreeMap<String, BTreeMap<u16, u64>> =
            self.others.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let hello: u64 = self.shards.iter().map(|s| s.hello.load(Ordering::Relaxed)).sum();
        if hello > 0 {
            *by_path.entry("/hello".to_owned()).or_default().entry(200).or_default() += hello;
        }
        let total = by_path.values().flat_map(|m| m.values()).sum();
        Stats { total, by_path }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_path_and_caps_distinct_paths() {
        let c = Counters::new(2);
        c.hello(0);
        c.hello(1);
        c.record("/hello", 404);
        for i in 0..MAX_PATHS + 5 {
            c.record(&format!("/p/{i}"), 200);
        }
        let s = c.snapshot();
        assert_eq!(s.count("/hello", 200), 2);
        assert_eq!(s.path_total("/hello"), 3);
        assert_eq!(s.total, 3 + MAX_PATHS as u64 + 5);
        assert!(s.by_path.len() <= MAX_PATHS + 2);
        assert!(s.count("(other)", 200) >= 5);
    }
}
