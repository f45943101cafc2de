//! Live progress while a run goes, on stderr.
//!
//! On a terminal: two rows drawn in place by `indicatif` from the first moment
//! of the run: elapsed / total with a bar, the percentage and the ETA (of the
//! request count or of the run time); then the last second's rate, failures,
//! p50/p99, agents up/lost and, in scenario runs, the users. Each row is cut
//! to the terminal's width, so nothing wraps and no stale line is left behind.
//! Elsewhere (a pipe, a file, CI): one plain line per second, no escape codes.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Limit;

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nowhere (`--quiet`, or JSON/CSV consumers who want none).
    Off,
    /// Plain lines on stderr, one per second (stderr is not a terminal).
    Lines,
    /// One line on the terminal, redrawn in place.
    Terminal,
}

impl Progress {
    /// Progress for this process: nothing when quiet, a live line on a
    /// terminal, plain lines otherwise.
    pub fn detect(quiet: bool) -> Progress {
        use std::io::IsTerminal;
        if quiet {
            Progress::Off
        } else if std::io::stderr().is_terminal() {
            Progress::Terminal
        } else {
            Progress::Lines
        }
    }
}

/// One completed second of the run, as the display shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Seconds since the start, counting this one (1 for the first).
    pub second: u64,
    /// Requests completed so far.
    pub done: u64,
    /// Requests completed in this second.
    pub rate: u64,
    /// Failures in this second.
    pub failures: u64,
    /// Its median latency in ms.
    pub p50_ms: Option<f64>,
    /// Its 99th percentile in ms.
    pub p99_ms: Option<f64>,
    /// Agents still running, and agents lost.
    pub agents: (usize, usize),
}

/// The live display of one run; clones draw on the same line.
#[derive(Debug, Clone)]
pub struct Live {
    mode: Progress,
    goal: Option<Limit>,
    users: Option<u64>,
    bar: Option<ProgressBar>,
}

/// How often the terminal line is redrawn between seconds (the ETA and the
/// elapsed time move on their own).
const TICK: Duration = Duration::from_millis(200);

impl Live {
    /// A display in `mode` for a run towards `goal` (`None`: unknown, as in
    /// tests), with `users` virtual users in scenario runs. On a terminal the
    /// line appears at once.
    pub fn new(mode: Progress, goal: Option<Limit>, users: Option<u64>) -> Live {
        let bar = (mode == Progress::Terminal).then(|| {
            // Two rows, each narrower than the terminal: the bar (at most 62
            // columns), then the figures, cut to the width in `show`.
            let (len, template) = match goal {
                Some(Limit::Requests(n)) => (n, "{pos}/{len} req [{bar:20}] {percent:>3}% ETA {eta}\n{msg}"),
                Some(Limit::Duration(d)) => (
                    d.as_millis().try_into().unwrap_or(u64::MAX),
                    "{elapsed}/{prefix} [{bar:20}] {percent:>3}% ETA {eta}\n{msg}",
                ),
                None => (0, "{elapsed} {msg}"),
            };
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
            // The templates are fixed above; a mistake in one is a bug the tests catch.
            let style = ProgressStyle::with_template(template).expect("valid template").progress_chars("=> ");
            bar.set_style(style);
            if let Some(Limit::Duration(d)) = goal {
                bar.set_prefix(humantime::format_duration(d).to_string());
            }
            bar.set_message("starting");
            bar.enable_steady_tick(TICK);
            bar
        });
        Live { mode, goal, users, bar }
    }

    /// Shows a completed second; `elapsed` is how far into the run the
    /// newest snapshot reaches.
    pub fn show(&self, t: &Tick, elapsed: Duration) {
        let text = self.figures(t);
        match (&self.bar, self.mode) {
            (Some(bar), _) => {
                bar.set_position(match self.goal {
                    Some(Limit::Duration(_)) => elapsed.as_millis().try_into().unwrap_or(u64::MAX),
                    _ => t.done,
                });
                bar.set_message(fit(text, width()));
            }
            (None, Progress::Lines) => {
                use std::io::Write;
                let mut err = std::io::stderr().lock();
                // Progress is a courtesy: a closed stderr must not stop the run.
                let _ = writeln!(err, "[{:>4}s] {} requests, {text}", t.second, t.done);
            }
            _ => {}
        }
    }

    /// The figures of one second, as both displays show them.
    pub fn figures(&self, t: &Tick) -> String {
        let lat = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
        let mut s = format!(
            "{} req/s, {} failed, p50 {} ms, p99 {} ms, agents {} up / {} lost",
            t.rate,
            t.failures,
            lat(t.p50_ms),
            lat(t.p99_ms),
            t.agents.0,
            t.agents.1
        );
        if let Some(u) = self.users {
            s.push_str(&format!(", {u} users"));
        }
        s
    }

    /// Writes `text` on its own line above the live line (or alone).
    pub fn say(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    /// Ends the display, leaving its last figures on the terminal and the
    /// cursor on a line of its own.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
            eprintln!();
        }
    }
}

/// The terminal's width in columns (80 when it cannot be told).
fn width() -> usize {
    terminal_size::terminal_size_of(std::io::stderr()).map_or(80, |(w, _)| usize::from(w.0))
}

/// `text` cut to fewer than `width` columns (the figures are ASCII): a row
/// as wide as the terminal would leave the cursor at its edge, and some
/// terminals wrap it.
fn fit(mut text: String, width: usize) -> String {
    text.truncate(width.saturating_sub(1));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_name_every_value() {
        let live = Live::new(Progress::Off, Some(Limit::Requests(10)), Some(5));
        let t = Tick { second: 2, done: 7, rate: 4, failures: 1, p50_ms: Some(1.5), p99_ms: None, agents: (2, 1) };
        assert_eq!(live.figures(&t), "4 req/s, 1 failed, p50 1.500 ms, p99 - ms, agents 2 up / 1 lost, 5 users");
        assert_eq!(fit("0123456789".into(), 8), "0123456");
        assert_eq!(fit("0123".into(), 80), "0123");
    }
}
