//! `--html FILE` and `controller serve`'s `/v1/runs/{id}/report.html`: the
//! report as one self-contained HTML page (inline SVG charts drawn by
//! [`crate::chart`], inline CSS, no script and nothing fetched to open it):
//! the verdicts, the settings, rate and latency over time, the latency
//! distribution, status codes, requested vs achieved rate, uncorrected
//! latencies, the per-agent table, and for scenario runs the per-name table
//! and the failure messages.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::chart::{self, Line};
use crate::report::{Latency, PERCENTILES, Report};
use crate::series::SecondRow;

/// Above this many seconds a chart over time gets a "zoom" switch that
/// widens it for scrolling sideways.
const ZOOM_AFTER_S: usize = 120;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:62em;padding:0 1em;color:#222}\
h1{margin-bottom:.2em} .sub{color:#555;margin-top:0} .chart{width:100%;height:auto;display:block;margin:.4em 0 1.4em}\
.scroll{overflow-x:auto} .zoom:checked+label+.scroll .chart{width:400%;max-width:none} .zoom+label{font-size:13px;color:#555}\
table{border-collapse:collapse;margin:.4em 0 1.2em} td,th{border-bottom:1px solid #ddd;padding:.2em .7em;text-align:right}\
td:first-child,th:first-child{text-align:left} .pass{color:#00734d;font-weight:bold} .fail{color:#b00020;font-weight:bold}\
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(10em,1fr));gap:.6em;margin:1em 0}\
.cards div{background:#f3f5f7;border-radius:6px;padding:.4em .8em} .cards dd{margin:0;font-weight:bold;font-size:1.3em}\
.warn{background:#fff4e0;border-left:4px solid #e69f00;padding:.4em .8em}";

/// The whole page.
pub fn page(r: &Report) -> String {
    let title = esc(&match &r.scenario {
        Some(sc) => format!("scenario against {} with {} users", r.url, sc.users),
        None => format!("{} {}", r.method.as_deref().unwrap_or("GET"), r.url),
    });
    // The run's own start when known; otherwise when this page was written.
    let generated = match &r.started_at {
        Some(at) => format!("run started {at}"),
        None => format!("report written {} UTC", humantime::format_rfc3339_seconds(SystemTime::now())),
    };
    let mut body = format!(
        "<h1>Volley report</h1><p class=\"sub\">{title}<br>{generated}</p>{verdict}{cards}",
        verdict = verdicts(r),
        cards = cards(r),
    );
    let _ = write!(body, "<h2>Settings</h2>{}", settings(r));
    let _ = write!(body, "<h2>Rate over time</h2>{}", over_time("zoom-rate", &rate_chart(r), r.series.len()));
    let _ = write!(
        body,
        "<h2>Latency over time</h2>{}",
        over_time("zoom-latency", &latency_chart(&r.series), r.series.len())
    );
    let _ = write!(body, "<h2>Latency distribution</h2>{}{}", distribution_chart(&r.latency_ms), uncorrected(r));
    let _ = write!(body, "<h2>Status codes and errors</h2>{}", status_chart(r));
    body.push_str(&timing(r));
    body.push_str(&names_tables(r));
    let _ = write!(body, "<h2>Agents</h2>{}", agents_table(r));
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Volley report: {title}</title><style>{STYLE}</style></head><body>{body}</body></html>\n"
    )
}

/// The thresholds' verdicts, first thing on the page when there are any.
fn verdicts(r: &Report) -> String {
    if r.thresholds.is_empty() {
        return String::new();
    }
    let failed = r.thresholds.iter().filter(|t| !t.passed).count();
    let mut out = if failed == 0 {
        format!("<p id=\"verdict\" class=\"pass\">All {} thresholds passed.</p>", r.thresholds.len())
    } else {
        format!("<p id=\"verdict\" class=\"fail\">{failed} of {} thresholds failed.</p>", r.thresholds.len())
    };
    out.push_str("<table id=\"thresholds\"><tr><th>threshold</th><th>measured</th><th>verdict</th></tr>");
    for t in &r.thresholds {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"{c}\">{v}</td></tr>",
            esc(&t.expr),
            t.actual.map_or_else(|| "nothing measured".to_owned(), chart::number),
            c = if t.passed { "pass" } else { "fail" },
            v = if t.passed { "passed" } else { "FAILED" },
        );
    }
    out.push_str("</table>");
    out
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3} ms"))
}

/// The headline figures.
fn cards(r: &Report) -> String {
    let items = [
        ("total", "Total requests", r.total_requests.to_string()),
        ("ok", "Successful requests", r.successful_requests.to_string()),
        ("failed", "Failed requests", r.failed_requests.to_string()),
        ("rps", "Requests per second", format!("{:.2}", r.requests_per_second)),
        ("mean", "Average response time", ms(r.average_response_time_ms)),
        ("p99", "p99", ms(r.latency_ms.p99)),
        ("duration", "Duration", format!("{:.2} s", r.duration_s)),
    ];
    let mut out = String::from("<dl class=\"cards\">");
    for (id, name, value) in items {
        let _ = write!(out, "<div><dd id=\"{id}\">{value}</dd><dt>{name}</dt></div>");
    }
    out.push_str("</dl>");
    out
}

/// What the run was asked to do.
fn settings(r: &Report) -> String {
    let mut rows: Vec<(&str, String)> = vec![("target", esc(&r.url))];
    if r.scenario.is_none() {
        rows.push(("method", esc(r.method.as_deref().unwrap_or("GET"))));
    }
    match &r.scenario {
        Some(sc) => {
            rows.push(("users", sc.users.to_string()));
            if let Some(rate) = sc.spawn_rate {
                rows.push(("spawn rate", format!("{rate} users/s")));
            }
            for t in &sc.user_types {
                rows.push(("user type", format!("{}: {} users", esc(&t.name), t.users)));
            }
        }
        None => rows.push(("connections", r.connections.to_string())),
    }
    if let Some(rate) = &r.rate {
        rows.push(("requested rate", format!("{} req/s", chart::number(rate.requested))));
    }
    if r.ramp_up_s > 0.0 {
        rows.push(("ramp-up", format!("{} s", chart::number(r.ramp_up_s))));
    }
    rows.push(("agents", r.agents.len().to_string()));
    rows.push(("ran for", format!("{:.2} s{}", r.duration_s, if r.cancelled { " (cancelled)" } else { "" })));
    let mut out = String::from("<table id=\"settings\">");
    for (k, v) in rows {
        let _ = write!(out, "<tr><td>{k}</td><td>{v}</td></tr>");
    }
    out.push_str("</table>");
    out
}

/// A chart over time, with a switch to widen it when the run is long.
fn over_time(id: &str, svg: &str, seconds: usize) -> String {
    if seconds <= ZOOM_AFTER_S {
        return svg.to_owned();
    }
    format!(
        "<input type=\"checkbox\" class=\"zoom\" id=\"{id}\"><label for=\"{id}\"> zoom in (4× wider; scroll sideways)</label>\
         <div class=\"scroll\">{svg}</div>"
    )
}

fn rate_chart(r: &Report) -> String {
    rate_over_time(&r.series, r.rate.as_ref().map(|rate| rate.requested))
}

/// Requests and failures per second, and the requested rate if any; the
/// report's chart and `controller serve`'s live one.
pub fn rate_over_time(series: &[SecondRow], requested: Option<f64>) -> String {
    let mut lines = vec![
        Line { name: "req/s", color: chart::BLUE, values: series.iter().map(|s| Some(s.requests as f64)).collect() },
        Line {
            name: "failed/s",
            color: chart::VERMILLION,
            values: series.iter().map(|s| Some(s.failures as f64)).collect(),
        },
    ];
    if let Some(requested) = requested {
        // Each second's own target where the run has a shape (stages, a ramp).
        let values = series.iter().map(|s| Some(s.target.unwrap_or(requested))).collect();
        lines.push(Line { name: "requested", color: chart::GREY, values });
    }
    chart::time_chart("rate-chart", "requests per second", "req/s", &lines)
}

/// Latency percentiles per second; the report's chart and `controller
/// serve`'s live one.
pub fn latency_chart(series: &[SecondRow]) -> String {
    chart::time_chart(
        "latency-chart",
        "latency percentiles per second",
        "ms",
        &[
            Line { name: "p50", color: chart::GREEN, values: series.iter().map(|s| s.p50_ms).collect() },
            Line { name: "p90", color: chart::ORANGE, values: series.iter().map(|s| s.p90_ms).collect() },
            Line { name: "p99", color: chart::VERMILLION, values: series.iter().map(|s| s.p99_ms).collect() },
            Line { name: "max", color: chart::PURPLE, values: series.iter().map(|s| s.max_ms).collect() },
        ],
    )
}

/// The percentiles of a latency, as `(label, value)` pairs.
fn percentiles(l: &Latency) -> Vec<(String, Option<f64>)> {
    PERCENTILES
        .iter()
        .zip([l.p50, l.p66, l.p75, l.p80, l.p90, l.p95, l.p98, l.p99, l.p999, l.max])
        .map(|(p, v)| (if *p == 100.0 { "max".to_owned() } else { format!("p{p}") }, v))
        .collect()
}

fn distribution_chart(l: &Latency) -> String {
    let bars: Vec<(String, f64)> = percentiles(l).into_iter().filter_map(|(p, v)| v.map(|v| (p, v))).collect();
    chart::bar_chart("distribution-chart", "latency percentiles of the whole run", "ms", &bars, chart::BLUE)
}

/// With a rate: the latencies as a closed-loop tool would report them,
/// next to the corrected ones.
fn uncorrected(r: &Report) -> String {
    let Some(u) = &r.latency_uncorrected_ms else { return String::new() };
    let mut out = String::from(
        "<p>With a rate, latencies count from each request's intended send time (coordinated omission corrected); \
         the uncorrected ones count from the actual send, as a closed-loop tool reports them.</p>\
         <table id=\"uncorrected\"><tr><th>percentile</th><th>corrected ms</th><th>uncorrected ms</th></tr>",
    );
    for ((p, c), (_, u)) in percentiles(&r.latency_ms).into_iter().zip(percentiles(u)) {
        let f = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"));
        let _ = write!(out, "<tr><td>{p}</td><td>{}</td><td>{}</td></tr>", f(c), f(u));
    }
    out.push_str("</table>");
    out
}

fn status_chart(r: &Report) -> String {
    let bars: Vec<(String, f64)> = r
        .status_codes
        .iter()
        .map(|(c, n)| (c.clone(), *n as f64))
        .chain(r.errors.iter().map(|(c, n)| (c.clone(), *n as f64)))
        .collect();
    if bars.is_empty() {
        return "<p>No responses and no errors.</p>".to_owned();
    }
    chart::bar_chart(
        "status-chart",
        "responses by status code and requests by error class",
        "requests",
        &bars,
        chart::BLUE,
    )
}

/// The open model's schedule: requested vs achieved rate and the lag. The
/// integrator wires `missed` (requests the schedule had no connection for)
/// here when the report carries it.
fn timing(r: &Report) -> String {
    let Some(rate) = &r.rate else { return String::new() };
    let mut out = format!(
        "<h2>Requested vs achieved rate</h2><table id=\"rate\">\
         <tr><td>requested</td><td>{} req/s</td></tr><tr><td>achieved</td><td>{} req/s</td></tr>\
         <tr><td>shortfall</td><td>{:.1} %</td></tr><tr><td>missed (due, never sent)</td><td id=\"missed\">{}</td></tr>\
         <tr><td>cancelled in flight</td><td>{}</td></tr><tr><td>largest schedule lag</td><td>{:.3} ms</td></tr></table>",
        chart::number(rate.requested),
        chart::number(rate.achieved),
        rate.shortfall_percent,
        r.missed,
        r.cancelled_in_flight,
        rate.max_schedule_lag_ms,
    );
    if let Some(w) = &rate.warning {
        let _ = write!(out, "<p class=\"warn\">{}</p>", esc(w));
    }
    out
}

fn agents_table(r: &Report) -> String {
    let mut out = String::from(
        "<table id=\"agents\"><tr><th>address</th><th>host</th><th>state</th><th>conns</th><th>requests</th>\
         <th>success</th><th>failed</th><th>req/s</th></tr>",
    );
    for a in &r.agents {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{:?}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td></tr>",
            esc(&a.address),
            esc(&a.hostname),
            a.state,
            a.connections,
            a.total_requests,
            a.successful_requests,
            a.failed_requests,
            a.requests_per_second
        );
    }
    out.push_str("</table>");
    out
}

/// Scenario runs: the per-name table and the failure messages (empty otherwise).
fn names_tables(r: &Report) -> String {
    if r.names.is_empty() {
        return String::new();
    }
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    let mut out = String::from(
        "<h2>Requests by name</h2><table id=\"names\"><tr><th>type</th><th>name</th><th>requests</th><th>failures</th>\
         <th>mean ms</th><th>min</th><th>max</th><th>median</th><th>p95</th><th>p99</th><th>req/s</th></tr>",
    );
    for n in &r.names {
        let l = &n.latency_ms;
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td></tr>",
            esc(&n.method),
            esc(&n.name),
            n.requests,
            n.failures,
            ms(l.mean),
            ms(l.min),
            ms(l.max),
            ms(l.p50),
            ms(l.p95),
            ms(l.p99),
            n.requests_per_second
        );
    }
    out.push_str("</table>");
    if !r.failures.is_empty() {
        out.push_str("<h2>Failures</h2><table id=\"failures\"><tr><th>count</th><th>name</th><th>message</th></tr>");
        for f in &r.failures {
            let _ = write!(out, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", f.count, esc(&f.name), esc(&f.message));
        }
        out.push_str("</table>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(seconds: u64) -> Vec<SecondRow> {
        (0..seconds)
            .map(|second| SecondRow {
                second,
                requests: 100 + second % 13,
                successes: 100 + second % 13,
                failures: 0,
                p50_ms: Some(1.0),
                p90_ms: Some(2.0),
                p99_ms: Some(3.0 + (second % 5) as f64),
                max_ms: Some(9.0),
                target: None,
            })
            .collect()
    }

    #[test]
    fn a_long_run_is_downsampled_and_gets_a_zoom_switch() {
        let hour = rows(3_600);
        let svg = rate_over_time(&hour, Some(100.0));
        for name in ["req/s", "failed/s", "requested"] {
            let at = svg.find(&format!("data-name=\"{name}\"")).unwrap_or_else(|| panic!("no {name} line"));
            let points = svg[at..].split("points=\"").nth(1).unwrap().split('"').next().unwrap();
            let n = points.split_whitespace().count();
            assert!((2..=chart::MAX_POINTS).contains(&n), "{name}: {n} points");
        }
        // One polyline per line: the axes' tick marks are not taken for one.
        assert_eq!(svg.matches("class=\"series\"").count(), 3, "{svg}");
        assert!(over_time("z", &svg, hour.len()).contains("class=\"zoom\""));
        let minute = rows(60);
        assert!(!over_time("z", &rate_over_time(&minute, None), minute.len()).contains("class=\"zoom\""));
    }
}
