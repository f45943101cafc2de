//! Charts as inline SVG, drawn by the `plotters` crate: lines over a run's
//! seconds and labelled bars. Used by the HTML report ([`crate::html`]) and
//! by `controller serve`'s page (which fetches them while a run goes), and
//! meant for any other page that needs one (a comparison page, say).
//!
//! `plotters` draws the axes, ticks, gridlines, axis units, the legend and
//! the marks. On top of its output this module adds only what SVG from a
//! drawing library cannot know: a `class="series" data-name=".."` on each
//! line (so pages and tests can find it) and a `<title>` on invisible bands
//! over each point, which the browser shows as the hover value. Long series
//! are downsampled for display ([`downsample`]); the JSON and CSV keep every
//! second.

use std::fmt::Write as _;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

/// Width and height of every chart in SVG units (it scales with the page).
const SIZE: (u32, u32) = (760, 280);

/// At most this many points per line are drawn; longer series are folded
/// into buckets (each kept as its lowest and highest value, so peaks stay).
pub const MAX_POINTS: usize = 600;

/// The colour of the invisible hover bands: unique, so they can be found in
/// the SVG plotters wrote.
const BAND: RGBColor = RGBColor(1, 2, 3);

/// Colours for lines and bars, told apart also by people with the common
/// colour-vision deficiencies (Okabe–Ito).
pub const BLUE: RGBColor = RGBColor(0, 114, 178);
pub const ORANGE: RGBColor = RGBColor(230, 159, 0);
pub const GREEN: RGBColor = RGBColor(0, 158, 115);
pub const VERMILLION: RGBColor = RGBColor(213, 94, 0);
pub const PURPLE: RGBColor = RGBColor(204, 121, 167);
pub const GREY: RGBColor = RGBColor(110, 110, 110);

/// The axes' colour: no line may have it, since lines are told apart from
/// the axes' tick marks (polylines too) by colour.
const AXIS: RGBColor = RGBColor(136, 136, 136);

/// One line of a chart over time: its legend name, colour and one value per
/// second (`None` where there was nothing to measure).
pub struct Line<'a> {
    pub name: &'a str,
    pub color: RGBColor,
    pub values: Vec<Option<f64>>,
}

/// One displayed point: the second it stands for (the middle of its
/// second, or of its bucket's seconds) and its value.
type Point = (f64, f64);

/// Reduces one value per second to at most `max` points for display: each
/// bucket of consecutive seconds becomes its lowest and its highest value,
/// in time order, so a one-second spike in a day-long run is still drawn.
/// Seconds without a value stay gaps: each run of values is its own slice.
pub fn downsample(values: &[Option<f64>], max: usize) -> Vec<Vec<Point>> {
    let bucket = values.len().div_ceil(max.max(2) / 2).max(1);
    let mut segments: Vec<Vec<Point>> = Vec::new();
    let mut open = false;
    for (b, chunk) in values.chunks(bucket).enumerate() {
        let start = b * bucket;
        let present: Vec<(usize, f64)> =
            chunk.iter().enumerate().filter_map(|(i, v)| v.map(|v| (start + i, v))).collect();
        if present.is_empty() {
            open = false;
            continue;
        }
        if !open {
            segments.push(Vec::new());
            open = true;
        }
        // `segments` is non-empty: one was pushed just above if none was open.
        let seg = segments.last_mut().expect("a segment is open");
        let mid = |i: usize| i as f64 + 0.5;
        if bucket == 1 {
            seg.push((mid(present[0].0), present[0].1));
            continue;
        }
        let lo = present.iter().copied().fold(present[0], |a, b| if b.1 < a.1 { b } else { a });
        let hi = present.iter().copied().fold(present[0], |a, b| if b.1 > a.1 { b } else { a });
        let (first, second) = if lo.0 <= hi.0 { (lo, hi) } else { (hi, lo) };
        seg.push((mid(first.0), first.1));
        if second.0 != first.0 {
            seg.push((mid(second.0), second.1));
        }
    }
    segments
}

/// A round upper bound for an axis from its largest value.
fn nice_max(max: f64) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|&m| m >= max * 1.05).unwrap_or(10.0 * mag)
}

/// A value as a tick or a hover shows it: whole numbers without decimals.
pub fn number(v: f64) -> String {
    let s = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    // 0.500 reads as 0.5, 2.00 as 2.
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

fn hex(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Makes plotters' fixed-size `<svg>` scale with the page and names it.
fn finish(svg: String, id: &str, title: &str) -> String {
    let (w, h) = SIZE;
    let fixed = format!("<svg width=\"{w}\" height=\"{h}\" ");
    let id = if id.is_empty() { String::new() } else { format!("id=\"{}\" ", esc(id)) };
    svg.replacen(&fixed, &format!("<svg {id}class=\"chart\" role=\"img\" aria-label=\"{t}\" ", t = esc(title)), 1)
        // Inline in HTML, an <svg> needs no namespace (and the page then names
        // no URL but the target's).
        .replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)
        .replacen('>', &format!("><title>{}</title>", esc(title)), 1)
}

/// A chart of lines over the run's seconds: x in seconds since the start,
/// y in `unit` from zero, a legend in the lines' colours, and per second a
/// hover band listing every line's value. `id` becomes the SVG's id (may be
/// empty). Each line's colour must be unique in the chart.
pub fn time_chart(id: &str, title: &str, unit: &str, lines: &[Line<'_>]) -> String {
    let seconds = lines.iter().map(|l| l.values.len()).max().unwrap_or(0);
    let shown: Vec<Vec<Vec<Point>>> = lines.iter().map(|l| downsample(&l.values, MAX_POINTS)).collect();
    let max = shown.iter().flatten().flatten().map(|p| p.1).fold(0.0, f64::max);
    // Headroom above the highest line for the legend in the upper left.
    let (x_max, y_max) = ((seconds.max(1)) as f64, nice_max(max * 1.4));
    let mut svg = String::new();
    let drawn = draw_lines(&mut svg, title, unit, lines, &shown, x_max, y_max);
    if let Err(e) = drawn {
        return format!("<p class=\"chart-error\">{}: the chart could not be drawn: {}</p>", esc(title), esc(&e));
    }
    let mut svg = finish(svg, id, title);
    for l in lines {
        svg = svg.replace(
            &format!("<polyline fill=\"none\" opacity=\"1\" stroke=\"{}\"", hex(l.color)),
            &format!(
                "<polyline class=\"series\" data-name=\"{}\" fill=\"none\" opacity=\"1\" stroke=\"{}\"",
                esc(l.name),
                hex(l.color)
            ),
        );
    }
    let titles: Vec<String> = bands(seconds)
        .map(|(from, to)| {
            let when = if to - from == 1 { format!("second {from}") } else { format!("seconds {from}–{}", to - 1) };
            let values: Vec<String> = lines
                .iter()
                .map(|l| {
                    let vs: Vec<f64> = l
                        .values
                        .get(from..to.min(l.values.len()))
                        .unwrap_or_default()
                        .iter()
                        .flatten()
                        .copied()
                        .collect();
                    let lo = vs.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = vs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    match vs.len() {
                        0 => format!("{}: none", l.name),
                        _ if lo == hi => format!("{}: {} {unit}", l.name, number(lo)),
                        _ => format!("{}: {}–{} {unit}", l.name, number(lo), number(hi)),
                    }
                })
                .collect();
            format!("{when}: {}", values.join(", "))
        })
        .collect();
    title_rects(&svg, BAND, "hover", &titles)
}

/// Gives the rects plotters filled with `fill` a `<title>` each (the hover
/// text), in drawing order: the hover bands ([`BAND`]) or a bar chart's bars
/// (the only rects in their colour).
fn title_rects(svg: &str, fill: RGBColor, class: &str, titles: &[String]) -> String {
    let marker = format!("fill=\"{}\"", hex(fill));
    let mut out = String::with_capacity(svg.len());
    let mut rest = svg;
    let mut titles = titles.iter();
    while let Some(at) = rest.find(&marker) {
        let Some(end) = rest[at..].find("/>") else { break };
        // Only rects: the marker is inside a `<rect` opened before it.
        let Some(open) = rest[..at].rfind("<rect ") else { break };
        let Some(title) = titles.next() else { break };
        out.push_str(&rest[..open]);
        let _ = write!(out, "<rect class=\"{class}\" ");
        out.push_str(&rest[open + "<rect ".len()..at + end]);
        let _ = write!(out, "><title>{}</title></rect>", esc(title));
        rest = &rest[at + end + 2..];
    }
    out.push_str(rest);
    out
}

/// The seconds each hover band covers: one band per second, or per bucket
/// of seconds when there are more than [`MAX_POINTS`] / 2.
fn bands(seconds: usize) -> impl Iterator<Item = (usize, usize)> {
    let width = seconds.div_ceil(MAX_POINTS / 2).max(1);
    (0..seconds).step_by(width).map(move |from| (from, (from + width).min(seconds)))
}

/// plotters' part of [`time_chart`].
fn draw_lines(
    svg: &mut String,
    title: &str,
    unit: &str,
    lines: &[Line<'_>],
    shown: &[Vec<Vec<Point>>],
    x_max: f64,
    y_max: f64,
) -> Result<(), String> {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 19))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds since the start")
        .y_desc(unit)
        .x_labels(10)
        .y_labels(6)
        .x_label_formatter(&|v| number(*v))
        .y_label_formatter(&|v| number(*v))
        .light_line_style(RGBColor(236, 236, 236))
        .bold_line_style(RGBColor(214, 214, 214))
        .axis_style(AXIS)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    for (line, segments) in lines.iter().zip(shown) {
        let color = line.color;
        for seg in segments {
            chart
                .draw_series(LineSeries::new(seg.iter().copied(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?;
            // Marks on the points when they are few: a lone point (a
            // sub-second run) is a dot, not nothing.
            if seg.len() <= 120 {
                chart.draw_series(seg.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(|e| e.to_string())?;
            }
        }
        // The legend entry: an empty series carrying the name and swatch.
        chart
            .draw_series(std::iter::empty::<Circle<Point, u32>>())
            .map_err(|e| e.to_string())?
            .label(line.name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
    }
    let seconds = x_max as usize;
    chart
        .draw_series(
            bands(seconds)
                .map(|(from, to)| Rectangle::new([(from as f64, y_max), (to as f64, 0.0)], BAND.mix(0.004).filled())),
        )
        .map_err(|e| e.to_string())?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// A bar chart of labelled values in `unit`, each bar with its value
/// written above it and as its hover text.
pub fn bar_chart(id: &str, title: &str, unit: &str, bars: &[(String, f64)], color: RGBColor) -> String {
    let mut svg = String::new();
    let max = nice_max(bars.iter().map(|b| b.1).fold(0.0, f64::max) * 1.12);
    if let Err(e) = draw_bars(&mut svg, title, unit, bars, color, max) {
        return format!("<p class=\"chart-error\">{}: the chart could not be drawn: {}</p>", esc(title), esc(&e));
    }
    let svg = finish(svg, id, title);
    let titles: Vec<String> = bars.iter().map(|(l, v)| format!("{l}: {} {unit}", number(*v))).collect();
    title_rects(&svg, color, "bar", &titles)
}

/// plotters' part of [`bar_chart`].
fn draw_bars(
    svg: &mut String,
    title: &str,
    unit: &str,
    bars: &[(String, f64)],
    color: RGBColor,
    max: f64,
) -> Result<(), String> {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let n = bars.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 19))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        // A segmented range 0..k has k + 1 slots: one per bar (but at
        // least 0..1: plotters draws an empty range 0..0 askew).
        .build_cartesian_2d((0..(n - 1).max(1)).into_segmented(), 0f64..max)
        .map_err(|e| e.to_string())?;
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => bars.get(*i).map(|b| b.0.clone()).unwrap_or_default(),
        SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&label)
        .y_labels(6)
        .y_label_formatter(&|v| number(*v))
        .y_desc(unit)
        .light_line_style(RGBColor(236, 236, 236))
        .bold_line_style(RGBColor(214, 214, 214))
        .axis_style(AXIS)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    // Bars at most 90 units wide: a lone status code is a bar, not a wall.
    let slot = chart.plotting_area().dim_in_pixel().0 / n.max(2) as u32;
    let side = (slot.saturating_sub(90) / 2).max(8);
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let end = if i + 1 < n.max(2) { SegmentValue::Exact(i + 1) } else { SegmentValue::Last };
            let mut bar = Rectangle::new([(SegmentValue::Exact(i), *v), (end, 0.0)], color.filled());
            bar.set_margin(0, 0, side, side);
            bar
        }))
        .map_err(|e| e.to_string())?;
    let style = TextStyle::from(("sans-serif", 15).into_font()).pos(plotters::style::text_anchor::Pos::new(
        plotters::style::text_anchor::HPos::Center,
        plotters::style::text_anchor::VPos::Bottom,
    ));
    chart
        .draw_series(
            bars.iter()
                .enumerate()
                .map(|(i, (_, v))| Text::new(number(*v), (SegmentValue::CenterOf(i), *v), style.clone())),
        )
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_series_are_drawn_as_they_are() {
        let v = [Some(1.0), Some(3.0), None, Some(2.0)];
        assert_eq!(downsample(&v, MAX_POINTS), vec![vec![(0.5, 1.0), (1.5, 3.0)], vec![(3.5, 2.0)]]);
    }

    #[test]
    fn a_day_long_series_keeps_its_spike_and_its_low_within_the_bound() {
        let mut v: Vec<Option<f64>> = (0..86_400).map(|i| Some(100.0 + (i % 7) as f64)).collect();
        v[40_000] = Some(9_000.0);
        v[70_001] = Some(1.0);
        let segs = downsample(&v, MAX_POINTS);
        assert_eq!(segs.len(), 1);
        let points = &segs[0];
        assert!(points.len() <= MAX_POINTS, "{} points", points.len());
        assert!(points.len() >= MAX_POINTS / 2, "{} points", points.len());
        assert!(points.iter().any(|p| p.1 == 9_000.0 && p.0 == 40_000.5), "the spike is kept at its second");
        assert!(points.iter().any(|p| p.1 == 1.0 && p.0 == 70_001.5), "the low is kept at its second");
        assert!(points.windows(2).all(|w| w[0].0 < w[1].0), "in time order");
        assert!(points.iter().all(|p| (1.0..=9_000.0).contains(&p.1)), "no invented values");
    }

    #[test]
    fn a_chart_names_its_lines_and_has_ticks_legend_and_hover_values() {
        let svg = time_chart(
            "rate",
            "requests per second",
            "req/s",
            &[
                Line { name: "requests", color: BLUE, values: vec![Some(10.0), Some(12.0), Some(11.0)] },
                Line { name: "failed", color: VERMILLION, values: vec![Some(0.0), None, Some(1.0)] },
            ],
        );
        assert!(svg.starts_with("<svg id=\"rate\" class=\"chart\""), "{svg}");
        assert_eq!(svg.matches("data-name=\"requests\"").count(), 1, "{svg}");
        assert_eq!(svg.matches("data-name=\"failed\"").count(), 2, "two segments around the gap: {svg}");
        assert!(svg.contains("<title>second 1: requests: 12 req/s, failed: none</title>"), "{svg}");
        assert!(svg.contains("\nseconds since the start\n</text>"), "{svg}");
        assert!(svg.contains("req/s"));
        assert_eq!(svg.matches("<title>").count(), 4, "the chart's title and one per second");
    }

    #[test]
    fn numbers_read_without_trailing_zeros() {
        let shown: Vec<String> = [0.5, 2.0, 2.5, 1234.4, 0.0125, 0.0].into_iter().map(number).collect();
        assert_eq!(shown, ["0.5", "2", "2.5", "1234", "0.013", "0"]);
    }

    #[test]
    fn a_bar_chart_writes_each_value() {
        let one = bar_chart("", "status codes", "responses", &[("200".into(), 1234.0)], BLUE);
        assert!(one.contains("<title>200: 1234 responses</title>"), "{one}");
        assert!(!one.contains("width=\"-"), "{one}");
        let svg = bar_chart("", "status codes", "responses", &[("200".into(), 1234.0), ("503".into(), 7.0)], BLUE);
        assert!(svg.contains(">\n1234\n</text>"), "{svg}");
        assert!(svg.contains("<title>503: 7 responses</title>"), "{svg}");
        assert!(!svg.contains("width=\"-"), "{svg}");
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 2, "{svg}");
    }
}
