//! `controller compare --html FILE`: the comparison as one self-contained
//! page (inline SVG and CSS, no script, no network): the two latency
//! distributions overlaid as percentile curves on a log-scaled "nines" axis,
//! as HdrHistogram's own plots draw them, then the side-by-side table and
//! the verdict.

use std::fmt::Write as _;

use super::{Comparison, Saved};

const W: f64 = 760.0;
const H: f64 = 360.0;
const PAD: f64 = 56.0;
/// The curves' colours: the baseline blue, the candidate orange (apart for
/// colour-blind readers too).
pub const BASELINE_COLOUR: &str = "#1f77b4";
/// See [`BASELINE_COLOUR`].
pub const CANDIDATE_COLOUR: &str = "#ff7f0e";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Points (nines, ms) of a run's percentile curve: x is -log10(1 - q), so
/// 1 is the 90th percentile, 2 the 99th, 3 the 99.9th. From the histogram
/// when the report carries one (a point every 0.02 nine up to the last one
/// its count supports), else from the report's percentiles.
pub fn curve(run: &Saved) -> Vec<(f64, f64)> {
    match run.histogram() {
        Some(h) if !h.is_empty() => {
            let top = (h.len() as f64).log10().clamp(1.0, 6.0);
            let steps = (top / 0.02).ceil() as usize;
            (0..=steps)
                .map(|i| {
                    let x = (i as f64 * 0.02).min(top);
                    let q = 1.0 - 10f64.powf(-x);
                    (x, h.value_at_quantile(q) as f64 / 1000.0)
                })
                .collect()
        }
        _ => crate::report::PERCENTILES
            .iter()
            .filter(|&&q| q < 100.0)
            .filter_map(|&q| run.measure(&super::percentile_name(q)).map(|v| (-(1.0 - q / 100.0).log10(), v)))
            .collect(),
    }
}

/// The overlaid percentile curves of the two runs.
fn chart(baseline: &[(f64, f64)], candidate: &[(f64, f64)]) -> String {
    let all = baseline.iter().chain(candidate);
    let xmax = all.clone().map(|p| p.0).fold(1.0f64, f64::max).ceil();
    let ymax = all.map(|p| p.1).fold(0.0f64, f64::max).max(f64::MIN_POSITIVE) * 1.05;
    let x = |v: f64| PAD + (W - 2.0 * PAD) * v / xmax;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * v / ymax;
    let mut svg = format!(
        "<svg id=\"distribution\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"Latency by percentile\">\
         <title>Latency by percentile</title>\
         <line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" class=\"axis\"/>\
         <line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{b}\" class=\"axis\"/>\
         <text x=\"{PAD}\" y=\"{ty}\" class=\"label\">{ymax:.3} ms</text>",
        b = H - PAD,
        r = W - PAD,
        ty = PAD - 10.0,
    );
    for n in 0..=xmax as usize {
        let label = match n {
            0 => "0%".to_owned(),
            n => format!("{}%", 100.0 - 100.0 * 10f64.powi(-(n as i32))),
        };
        let _ = write!(
            svg,
            "<line x1=\"{gx:.1}\" y1=\"{PAD}\" x2=\"{gx:.1}\" y2=\"{b}\" class=\"grid\"/>\
             <text x=\"{gx:.1}\" y=\"{ly}\" class=\"label\" text-anchor=\"middle\">{label}</text>",
            gx = x(n as f64),
            b = H - PAD,
            ly = H - PAD + 18.0,
        );
    }
    for (name, colour, points) in [("baseline", BASELINE_COLOUR, baseline), ("candidate", CANDIDATE_COLOUR, candidate)]
    {
        let pts: Vec<String> = points.iter().map(|&(px, py)| format!("{:.1},{:.1}", x(px), y(py))).collect();
        let _ = write!(
            svg,
            "<polyline class=\"curve\" data-name=\"{name}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.join(" ")
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{lx}\" y=\"{ly}\" class=\"label\" fill=\"{BASELINE_COLOUR}\">\u{25a0} baseline</text>\
         <text x=\"{lx}\" y=\"{ly2}\" class=\"label\" fill=\"{CANDIDATE_COLOUR}\">\u{25a0} candidate</text>\
         <text x=\"{cx}\" y=\"{by}\" class=\"label\" text-anchor=\"middle\">percentile (log scale of nines)</text></svg>",
        lx = PAD + 10.0,
        ly = PAD + 4.0,
        ly2 = PAD + 20.0,
        cx = W / 2.0,
        by = H - 12.0,
    );
    svg
}

/// The comparison page.
pub fn page(baseline: &Saved, candidate: &Saved, c: &Comparison) -> String {
    let mut s = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Volley: run comparison</title>\
         <style>body{font-family:system-ui,sans-serif;margin:2em;max-width:820px}\
         .axis{stroke:#333}.grid{stroke:#ddd}.label{font-size:12px}\
         table{border-collapse:collapse}td,th{padding:2px 10px;text-align:right}\
         th:first-child,td:first-child{text-align:left}.warn{color:#a00}</style></head><body>",
    );
    let _ = write!(
        s,
        "<h1>Run comparison</h1><p>Baseline: {} ({} requests)<br>Candidate: {} ({} requests)</p>",
        esc(&c.baseline.url),
        c.baseline.total_requests,
        esc(&c.candidate.url),
        c.candidate.total_requests
    );
    for w in &c.warnings {
        let _ = write!(s, "<p class=\"warn\">Not comparable: {}</p>", esc(w));
    }
    let _ = write!(
        s,
        "<h2 id=\"verdict\">Latency: {}</h2><p>{:.0} % confidence; changes under {:.0} % count as none.</p>",
        c.latency.verdict.words(),
        c.confidence * 100.0,
        c.min_change * 100.0
    );
    s.push_str(&chart(&curve(baseline), &curve(candidate)));
    s.push_str("<table><tr><th></th><th>baseline</th><th>candidate</th><th>change</th><th>relative</th></tr>");
    let cell = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"));
    for f in &c.figures {
        let _ = write!(
            s,
            "<tr><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&f.metric),
            f.unit,
            cell(f.baseline),
            cell(f.candidate),
            cell(f.change),
            f.relative_change.map_or_else(|| "n/a".to_owned(), |r| format!("{:+.1} %", r * 100.0))
        );
    }
    s.push_str("</table><pre>");
    s.push_str(&esc(&c.to_text()));
    s.push_str("</pre></body></html>\n");
    s
}
