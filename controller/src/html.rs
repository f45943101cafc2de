//! `--html FILE`: the report as one self-contained HTML page (inline SVG
//! charts, inline CSS, no script and no network needed to open it): rate and
//! latency percentiles over time, the latency distribution, status codes, and
//! the per-agent table, and for scenario runs the per-name table and the
//! failure messages.

use std::fmt::Write as _;

use crate::report::{PERCENTILES, Report};

const W: f64 = 720.0;
const H: f64 = 220.0;
const PAD: f64 = 40.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A line chart of one or more series over the run's seconds.
fn line_chart(title: &str, unit: &str, lines: &[(&str, &str, Vec<Option<f64>>)]) -> String {
    let n = lines.iter().map(|l| l.2.len()).max().unwrap_or(0);
    let max = lines.iter().flat_map(|l| l.2.iter().flatten()).fold(0.0f64, |a, &b| a.max(b)).max(f64::MIN_POSITIVE);
    let x = |i: usize| PAD + (W - 2.0 * PAD) * if n > 1 { i as f64 / (n - 1) as f64 } else { 0.5 };
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * v / max;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>\
         <line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" class=\"axis\"/><line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{b}\" class=\"axis\"/>\
         <text x=\"{PAD}\" y=\"{ty}\" class=\"label\">{max:.3} {unit}</text><text x=\"{r}\" y=\"{lx}\" class=\"label\" text-anchor=\"end\">{n} s</text>",
        t = esc(title),
        b = H - PAD,
        r = W - PAD,
        ty = PAD - 8.0,
        lx = H - PAD + 16.0,
    );
    for (k, (name, color, values)) in lines.iter().enumerate() {
        let points: Vec<String> =
            values.iter().enumerate().filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v)))).collect();
        let _ = write!(
            svg,
            "<polyline class=\"series\" data-name=\"{name}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\" class=\"label\">{name}</text>",
            points.join(" "),
            W - PAD - 60.0,
            PAD + 14.0 * k as f64
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A bar chart of labelled values.
fn bar_chart(title: &str, bars: &[(String, f64)]) -> String {
    let max = bars.iter().map(|b| b.1).fold(0.0f64, f64::max).max(f64::MIN_POSITIVE);
    let n = bars.len().max(1) as f64;
    let slot = (W - 2.0 * PAD) / n;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>",
        t = esc(title)
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let h = (H - 2.0 * PAD) * v / max;
        let x = PAD + slot * i as f64;
        let _ = write!(
            svg,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{} {v:.3}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"label\" text-anchor=\"middle\">{}</text>",
            x + slot * 0.15,
            H - PAD - h,
            slot * 0.7,
            esc(label),
            x + slot / 2.0,
            H - PAD + 16.0,
            esc(label)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The whole page.
pub fn page(r: &Report) -> String {
    let rate: Vec<Option<f64>> = r.series.iter().map(|s| Some(s.requests as f64)).collect();
    let fails: Vec<Option<f64>> = r.series.iter().map(|s| Some(s.failures as f64)).collect();
    let p50: Vec<Option<f64>> = r.series.iter().map(|s| s.p50_ms).collect();
    let p90: Vec<Option<f64>> = r.series.iter().map(|s| s.p90_ms).collect();
    let p99: Vec<Option<f64>> = r.series.iter().map(|s| s.p99_ms).collect();
    let l = &r.latency_ms;
    let dist: Vec<(String, f64)> = PERCENTILES
        .iter()
        .zip([l.p50, l.p66, l.p75, l.p80, l.p90, l.p95, l.p98, l.p99, l.p999, l.max])
        .filter_map(|(p, v)| v.map(|v| (format!("{p}%"), v)))
        .collect();
    let statuses: Vec<(String, f64)> = r
        .status_codes
        .iter()
        .map(|(c, n)| (c.clone(), *n as f64))
        .chain(r.errors.iter().map(|(c, n)| (c.clone(), *n as f64)))
        .collect();
    let mut rows = String::new();
    for a in &r.agents {
        let _ = write!(
            rows,
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
    let opt = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3} ms"));
    let names = names_tables(r);
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>Volley report: {title}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:60em}} .chart{{width:100%;max-width:720px;background:#fafafa;margin:.5em 0 1.5em}}\
         .axis{{stroke:#888}} .label{{font-size:11px;fill:#333}} .bar{{fill:#4a7ab5}} table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}} dt{{font-weight:bold}}</style></head><body>\
         <h1>Volley report</h1><p>{title}</p><dl>\
         <dt>Total requests</dt><dd id=\"total\">{total}</dd><dt>Successful requests</dt><dd>{ok}</dd>\
         <dt>Failed requests</dt><dd>{failed}</dd><dt>Average response time</dt><dd>{avg}</dd>\
         <dt>Requests per second</dt><dd>{rps:.2}</dd>{open}<dt>p99</dt><dd>{p99v}</dd></dl>\
         <h2>Rate over time</h2>{rate_chart}<h2>Latency over time</h2>{lat_chart}\
         <h2>Latency distribution</h2>{dist_chart}<h2>Status codes and errors</h2>{status_chart}{names}\
         <h2>Agents</h2><table><tr><th>address</th><th>host</th><th>state</th><th>conns</th><th>requests</th>\
         <th>success</th><th>failed</th><th>req/s</th></tr>{rows}</table></body></html>\n",
        title = esc(&match &r.scenario {
            Some(sc) => format!("scenario against {} with {} users", r.url, sc.users),
            None => format!("{} {}", r.method, r.url),
        }),
        total = r.total_requests,
        ok = r.successful_requests,
        failed = r.failed_requests,
        avg = opt(r.average_response_time_ms),
        rps = r.requests_per_second,
        open = r.rate.as_ref().map_or_else(String::new, |rate| format!(
            "<dt>Requested / achieved rate</dt><dd>{:.2} / {:.2}</dd><dt>Missed requests</dt><dd id=\"missed\">{}</dd>",
            rate.requested, rate.achieved, r.missed
        )),
        p99v = opt(l.p99),
        rate_chart =
            line_chart("requests per second", "req/s", &[("req/s", "#4a7ab5", rate), ("failed", "#c0392b", fails)]),
        lat_chart = line_chart(
            "latency percentiles",
            "ms",
            &[("p50", "#27ae60", p50), ("p90", "#e67e22", p90), ("p99", "#c0392b", p99)]
        ),
        dist_chart = bar_chart("latency percentiles of the whole run (ms)", &dist),
        status_chart = bar_chart("responses by status code and requests by error class", &statuses),
    )
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
