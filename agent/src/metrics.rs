//! `agent --metrics-listen ADDR`: the agent's own health for a fleet view
//! (process CPU time, threads, runs started and finished, plans refused,
//! busy), in the Prometheus exposition formats through `prometheus-client`.
//!
//! The load figures are not here: the controller merges them exactly and
//! serves them (its `--metrics-listen`); counting them here too would count
//! them twice. Nothing here is on the hot path: a run adds to a counter when
//! it starts and ends, and the process figures are read at scrape time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// What the service counts for the metrics, shared with the collector.
#[derive(Debug, Default)]
pub struct Counters {
    /// Runs whose workers started.
    pub runs_started: AtomicU64,
    /// Runs whose workers started and have ended.
    pub runs_finished: AtomicU64,
    /// Plans refused: busy, invalid, over a limit, a target that does not resolve.
    pub plans_refused: AtomicU64,
}

impl Counters {
    /// Adds one to `c`.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The agent's collector: counters from the service, the rest read at scrape time.
struct Health {
    counters: Arc<Counters>,
    busy: Box<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").field("counters", &self.counters).finish_non_exhaustive()
    }
}

/// CPU time (user and system) of this process, in seconds, from
/// `/proc/self/stat`; `None` where there is no such file.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count from after its ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// Threads of this process, from `/proc/self/task`.
fn threads() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/task").ok()?.count() as u64)
}

impl Collector for Health {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let c = &self.counters;
        let seconds = Unit::Seconds;
        if let Some(cpu) = cpu_seconds() {
            let m = ConstCounter::new(cpu);
            m.encode(encoder.encode_descriptor(
                "volley_agent_process_cpu",
                "CPU time of the agent process, user and system.",
                Some(&seconds),
                m.metric_type(),
            )?)?;
        }
        if let Some(n) = threads() {
            let m = ConstGauge::new(n as i64);
            m.encode(encoder.encode_descriptor(
                "volley_agent_threads",
                "Threads of the agent process.",
                None,
                m.metric_type(),
            )?)?;
        }
        for (name, help, v) in [
            ("volley_agent_runs_started", "Runs whose workers started.", &c.runs_started),
            ("volley_agent_runs_finished", "Runs whose workers started and have ended.", &c.runs_finished),
            (
                "volley_agent_plans_refused",
                "Plans refused: busy, invalid, over a limit, or a target that does not resolve.",
                &c.plans_refused,
            ),
        ] {
            let m = ConstCounter::new(v.load(Ordering::Relaxed));
            m.encode(encoder.encode_descriptor(name, help, None, m.metric_type())?)?;
        }
        let m = ConstGauge::new(i64::from((self.busy)()));
        m.encode(encoder.encode_descriptor(
            "volley_agent_busy",
            "1 while the agent has a run (accepted or going), else 0.",
            None,
            m.metric_type(),
        )?)?;
        Ok(())
    }
}

/// A registry of the agent's health: `counters`, and `busy` asked at each scrape.
pub fn registry(counters: Arc<Counters>, busy: impl Fn() -> bool + Send + Sync + 'static) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Health { counters, busy: Box::new(busy) }));
    registry
}

/// Encodes `registry` as OpenMetrics when the scraper accepts it (as
/// Prometheus does), else in the classic Prometheus text format.
pub fn exposition(registry: &Registry, headers: &HeaderMap) -> Response {
    let openmetrics = wants_openmetrics(headers);
    let mut body = String::new();
    let encoded = if openmetrics {
        prometheus_client::encoding::text::encode(&mut body, registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut body, registry)
    };
    response(encoded.map(|()| body), openmetrics)
}

/// Whether the scraper accepts OpenMetrics (Prometheus does).
pub fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

/// The response carrying an encoded page (`openmetrics`: in which format).
pub fn response(encoded: Result<String, std::fmt::Error>, openmetrics: bool) -> Response {
    let media = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    match encoded {
        Ok(body) => ([(header::CONTENT_TYPE, media)], body).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics\n").into_response(),
    }
}

/// Serves `/metrics` of `registry` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let registry = Arc::new(registry);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: HeaderMap| {
            let registry = registry.clone();
            async move { exposition(&registry, &headers) }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_figures_are_encoded() {
        let counters = Arc::new(Counters::default());
        Counters::bump(&counters.runs_started);
        Counters::bump(&counters.plans_refused);
        let r = registry(counters, || true);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        for line in [
            "volley_agent_runs_started_total 1",
            "volley_agent_runs_finished_total 0",
            "volley_agent_plans_refused_total 1",
            "volley_agent_busy 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.contains("volley_agent_process_cpu_seconds_total "), "{text}");
        let threads = text.lines().find_map(|l| l.strip_prefix("volley_agent_threads ")).unwrap();
        assert!(threads.parse::<u64>().unwrap() >= 1, "{text}");
    }
}
