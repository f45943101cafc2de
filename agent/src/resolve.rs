//! Target addresses: every address the target's host resolves to, kept
//! current while a run goes (`--resolve-each`), and which one each new
//! connection opens to.
//!
//! One [`Addresses`] per run holds the list: resolved when the plan is
//! checked, then again every `resolve_each` by a task on the agent's runtime
//! ([`refresh`]), through the system resolver (`getaddrinfo`: `/etc/hosts`
//! works). `--connect-to` replaces the host (and port) that is resolved; the
//! request still names the URL's host. Each address is checked against the
//! agent's `--allow-target` every time it is resolved: a refused one is left
//! out and reported once; a resolution with no allowed address (or an
//! error) keeps the previous list, so a flapping resolver never empties it.
//!
//! Worker threads never lock per request: each keeps its own
//! [`ThreadTargets`], re-read from the shared list only when a connection
//! opens and the list's generation moved, and on the thread's snapshot tick
//! (about once a second). A connection knows its [`Target`] and counts its
//! requests there (plain `Cell`s: per thread); when a refresh drops its
//! address the connection closes after its current request and the next
//! connect goes to a current address.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use volley_stats::AddrTotals;

use crate::security::TargetPattern;

/// How long one resolution may take before it is given up (the list stays).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest re-resolution interval an agent follows: a plan asking for
/// less gets this, so a resolver is not hammered.
pub const MIN_RESOLVE_EACH: Duration = Duration::from_millis(100);

/// A run's target addresses, shared by its worker threads.
#[derive(Debug)]
pub struct Addresses {
    /// The host resolved (the URL's, or `--connect-to`'s ADDR) and the port.
    host: String,
    port: u16,
    /// How often to resolve again; `None`: once.
    every: Option<Duration>,
    /// The agent's `--allow-target` patterns (empty: any), set once the plan
    /// is accepted.
    allow: OnceLock<Vec<TargetPattern>>,
    /// With `--source-addr`: only addresses of the sources' family (IPv4:
    /// `true`) can be connected to from them.
    family: OnceLock<bool>,
    /// Bumped on every change of `current`.
    generation: AtomicU64,
    /// The allowed addresses, in the resolver's order; never empty.
    current: Mutex<Arc<[SocketAddr]>>,
    /// Addresses refused by `--allow-target` so far, and which of them were
    /// not yet reported.
    refused: Mutex<(BTreeSet<SocketAddr>, Vec<SocketAddr>)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resolves `host:port` with the system resolver, deduplicated, in its order.
pub async fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| format!("no answer within {RESOLVE_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let mut out: Vec<SocketAddr> = Vec::new();
    for a in found {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    if out.is_empty() {
        return Err("no addresses".into());
    }
    // IPv4 first, then by address: a fixed order whatever the resolver's.
    out.sort();
    Ok(out)
}

impl Addresses {
    /// The addresses `first` (a non-empty resolution of `host:port`), to be
    /// resolved again every `every` (`None`: never).
    pub fn new(host: String, port: u16, every: Option<Duration>, first: Vec<SocketAddr>) -> Addresses {
        Addresses {
            host,
            port,
            every: every.map(|e| e.max(MIN_RESOLVE_EACH)),
            allow: OnceLock::new(),
            family: OnceLock::new(),
            generation: AtomicU64::new(1),
            current: Mutex::new(first.into()),
            refused: Mutex::new((BTreeSet::new(), Vec::new())),
        }
    }

    /// The host resolved and the port connected to.
    pub fn lookup_name(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    /// How often the host is resolved again (`None`: never).
    pub fn every(&self) -> Option<Duration> {
        self.every
    }

    /// The current addresses.
    pub fn current(&self) -> Arc<[SocketAddr]> {
        lock(&self.current).clone()
    }

    /// The current list's generation.
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether `allow` (empty: any) allows connecting to `addr` for this host.
    fn allows(allow: &[TargetPattern], host: &str, addr: SocketAddr) -> bool {
        allow.is_empty() || allow.iter().any(|p| p.allows(host, addr.ip(), addr.port()))
    }

    /// Keeps only addresses of one family from now on (IPv4: `true`): the
    /// run's source addresses are of that family.
    pub fn keep_family(&self, ipv4: bool) {
        let _ = self.family.set(ipv4);
        let all = self.current();
        let allow = self.allow.get().map_or(&[][..], Vec::as_slice);
        // The caller checked that the first address is of this family.
        self.apply(allow, &all);
    }

    /// Keeps only what `allow` allows from now on (the agent's
    /// `--allow-target`); `Err` names the addresses when none is allowed.
    pub fn restrict(&self, allow: Vec<TargetPattern>) -> Result<(), String> {
        let allow = self.allow.get_or_init(|| allow);
        let all = self.current();
        if self.apply(allow, &all) {
            return Ok(());
        }
        let list: Vec<String> = all.iter().map(|a| a.ip().to_string()).collect();
        Err(list.join(", "))
    }

    /// Sets the list to the allowed part of `found`, noting refused
    /// addresses; `false` (and the list unchanged) when none is allowed.
    fn apply(&self, allow: &[TargetPattern], found: &[SocketAddr]) -> bool {
        let family = self.family.get();
        let (mut ok, bad): (Vec<SocketAddr>, Vec<SocketAddr>) = found
            .iter()
            .filter(|a| family.is_none_or(|v4| a.is_ipv4() == *v4))
            .partition(|a| Self::allows(allow, &self.host, **a));
        // In a fixed order: a resolver that rotates its answers (round-robin
        // DNS) does not make every resolution look like a change.
        ok.sort();
        {
            let mut refused = lock(&self.refused);
            for a in bad {
                if refused.0.insert(a) {
                    tracing::warn!("target address {a} of {} is not allowed (--allow-target); skipped", self.host);
                    refused.1.push(a);
                }
            }
        }
        if ok.is_empty() {
            return false;
        }
        let mut current = lock(&self.current);
        if current[..] != ok[..] {
            *current = ok.into();
            self.generation.fetch_add(1, Ordering::Release);
        }
        true
    }

    /// Addresses refused since the last call, as report rows.
    pub fn take_refused(&self) -> Vec<(SocketAddr, AddrTotals)> {
        let fresh = std::mem::take(&mut lock(&self.refused).1);
        fresh.into_iter().map(|a| (a, AddrTotals { refused: true, ..AddrTotals::default() })).collect()
    }

    /// Resolves again and updates the list.
    async fn refresh_once(&self) {
        match lookup(&self.host, self.port).await {
            Ok(found) => {
                let allow = self.allow.get().map_or(&[][..], Vec::as_slice);
                if !self.apply(allow, &found) {
                    tracing::warn!(
                        "no address of {} is allowed (--allow-target); keeping the previous ones",
                        self.host
                    );
                }
            }
            Err(e) => tracing::warn!("cannot resolve {} again ({e}); keeping the previous addresses", self.host),
        }
    }
}

/// Resolves `addresses` again every interval until the run is gone.
pub async fn refresh(addresses: Weak<Addresses>) {
    let Some(every) = addresses.upgrade().and_then(|a| a.every) else { return };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(a) = addresses.upgrade() else { return };
        a.refresh_once().await;
    }
}

/// One address as a worker thread's connections see it.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    /// Still in the list: connections to it stay open.
    live: Cell<bool>,
    requests: Cell<u64>,
    failures: Cell<u64>,
    connects: Cell<u64>,
}

impl Target {
    /// Whether connections to it should stay.
    #[inline]
    pub(crate) fn live(&self) -> bool {
        self.live.get()
    }

    /// Counts a request sent on a connection to it.
    #[inline]
    pub(crate) fn request(&self, failed: bool) {
        self.requests.set(self.requests.get() + 1);
        if failed {
            self.failures.set(self.failures.get() + 1);
        }
    }

    /// Counts a connection opened to it.
    pub(crate) fn connected(&self) {
        self.connects.set(self.connects.get() + 1);
    }
}

/// A worker thread's view of the addresses, and its counts by address.
#[derive(Debug, Default)]
pub(crate) struct ThreadTargets {
    /// The generation `list` follows.
    seen: Cell<u64>,
    /// The current addresses.
    list: RefCell<Vec<Rc<Target>>>,
    /// Every address this thread has known (their counts are handed over).
    known: RefCell<Vec<Rc<Target>>>,
}

impl ThreadTargets {
    /// Follows the shared list if it changed: addresses dropped from it are
    /// no longer live (their connections drain).
    pub(crate) fn refresh(&self, shared: &Addresses) {
        let generation = shared.generation();
        if generation == self.seen.get() {
            return;
        }
        self.seen.set(generation);
        let current = shared.current();
        let mut known = self.known.borrow_mut();
        for t in known.iter() {
            t.live.set(current.contains(&t.addr));
        }
        let list = current
            .iter()
            .map(|a| match known.iter().find(|t| t.addr == *a) {
                Some(t) => t.clone(),
                None => {
                    let t = Rc::new(Target {
                        addr: *a,
                        live: Cell::new(true),
                        requests: Cell::new(0),
                        failures: Cell::new(0),
                        connects: Cell::new(0),
                    });
                    known.push(t.clone());
                    t
                }
            })
            .collect();
        *self.list.borrow_mut() = list;
    }

    /// The address for a connect numbered `n` (a connection's run-wide index
    /// plus its reconnects): round-robin over the current list.
    pub(crate) fn pick(&self, shared: &Addresses, n: u64) -> Rc<Target> {
        self.refresh(shared);
        let list = self.list.borrow();
        // Never empty: the shared list never is.
        list[(n % list.len().max(1) as u64) as usize].clone()
    }

    /// The generation of the list this thread follows: a connection opened
    /// under an older one may have to move ([`ThreadTargets::should_move`]).
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.seen.get()
    }

    /// After the list changed: whether a connection to `t`, opened as
    /// connect number `n`, should close after its request and reconnect as
    /// number `n` again: its address left the list, or the round-robin over
    /// the new list puts connect `n` on another address (so that new
    /// addresses get their share at once, not only after errors).
    pub(crate) fn should_move(&self, t: &Target, n: u64) -> bool {
        if !t.live() {
            return true;
        }
        let list = self.list.borrow();
        list.get((n % list.len().max(1) as u64) as usize).is_some_and(|x| x.addr != t.addr)
    }

    /// How many addresses are current (as of the last pick or refresh).
    pub(crate) fn len(&self) -> usize {
        self.list.borrow().len()
    }

    /// The counts since the last call, by address.
    pub(crate) fn take(&self) -> Vec<(SocketAddr, AddrTotals)> {
        let mut out = Vec::new();
        for t in self.known.borrow().iter() {
            let row = AddrTotals {
                requests: t.requests.replace(0),
                failures: t.failures.replace(0),
                connects: t.connects.replace(0),
                refused: false,
            };
            if row != AddrTotals::default() {
                out.push((t.addr, row));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn threads_follow_the_list_and_drain_dropped_addresses() {
        let shared = Addresses::new("t".into(), 80, None, vec![a("10.0.0.1:80"), a("10.0.0.2:80")]);
        let mine = ThreadTargets::default();
        let picks: Vec<SocketAddr> = (0..4).map(|n| mine.pick(&shared, n).addr).collect();
        assert_eq!(picks, [a("10.0.0.1:80"), a("10.0.0.2:80"), a("10.0.0.1:80"), a("10.0.0.2:80")]);
        let first = mine.pick(&shared, 0);
        let second = mine.pick(&shared, 3);
        let before = mine.generation();
        // The same addresses in another order are no change.
        assert!(shared.apply(&[], &[a("10.0.0.2:80"), a("10.0.0.1:80")]));
        mine.refresh(&shared);
        assert_eq!(mine.generation(), before);
        first.connected();
        first.request(false);
        first.request(true);
        // 10.0.0.1 leaves, 10.0.0.3 comes.
        assert!(shared.apply(&[], &[a("10.0.0.2:80"), a("10.0.0.3:80")]));
        mine.refresh(&shared);
        assert!(!first.live(), "a dropped address drains");
        assert!(mine.should_move(&first, 0));
        assert!(!mine.should_move(&second, 2), "connect 2 is on 10.0.0.2 still");
        assert!(mine.should_move(&second, 3), "connect 3 now goes to 10.0.0.3");
        assert_eq!(mine.pick(&shared, 1).addr, a("10.0.0.3:80"));
        let taken = mine.take();
        assert_eq!(taken, [(a("10.0.0.1:80"), AddrTotals { requests: 2, failures: 1, connects: 1, refused: false })]);
        assert!(mine.take().is_empty());
    }

    #[test]
    fn the_allowlist_is_applied_to_every_resolution() {
        let shared = Addresses::new("t".into(), 80, None, vec![a("127.0.0.1:80"), a("10.0.0.2:80")]);
        assert!(shared.restrict(vec!["127.0.0.0/8".parse().unwrap()]).is_ok());
        assert_eq!(&shared.current()[..], [a("127.0.0.1:80")]);
        let refused = shared.take_refused();
        assert_eq!(refused.len(), 1);
        assert!(refused[0].1.refused);
        assert!(shared.take_refused().is_empty(), "reported once");
        // A resolution with nothing allowed keeps the list.
        let allow: Vec<TargetPattern> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(!shared.apply(&allow, &[a("10.0.0.9:80")]));
        assert_eq!(&shared.current()[..], [a("127.0.0.1:80")]);
        // With IPv4 source addresses, IPv6 target addresses are left out.
        let dual = Addresses::new("t".into(), 80, None, vec![a("[::1]:80"), a("127.0.0.1:80")]);
        dual.keep_family(true);
        assert_eq!(&dual.current()[..], [a("127.0.0.1:80")]);
        assert!(dual.take_refused().is_empty(), "another family is not a refusal");
        let none = Addresses::new("t".into(), 80, None, vec![a("10.0.0.2:80")]);
        assert_eq!(none.restrict(vec!["127.0.0.0/8".parse().unwrap()]).unwrap_err(), "10.0.0.2");
    }
}
