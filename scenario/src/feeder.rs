//! Feeders: test data for virtual users, read from a CSV or JSON-lines file
//! by the controller and shipped to the agents in the plan (agents never
//! read the controller's disk).
//!
//! ```toml
//! [[feeder]]
//! name = "users"              # its columns are ${users.COLUMN}
//! file = "users.csv"          # relative to the scenario file; .jsonl/.ndjson are JSON lines
//! mode = "unique"             # or "cycle" (default), "random"
//! per = "user"                # a row per virtual user (default), or "iteration"
//! on_exhausted = "stop_user"  # unique only: or "end_run"
//! ```
//!
//! The table travels compactly, as all cells' text joined and where each
//! cell ends ([`Table`]); the scenario JSON carries only the feeder's
//! definition ([`Feeder`]), so the table does not count against the
//! scenario's size limit (it has its own, [`MAX_FEEDER_BYTES`]).

use serde::{Deserialize, Serialize};

use crate::ScenarioError;

/// The most bytes all of a scenario's feeder files may hold together.
pub const MAX_FEEDER_BYTES: u64 = 64 << 20;

/// How a feeder hands out rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every row at most once across the whole cluster: rows are split into
    /// disjoint slices per agent and worker thread.
    Unique,
    /// Rows in order, starting over at the end.
    #[default]
    Cycle,
    /// A row picked at random each time.
    Random,
}

/// When a virtual user takes a row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    /// Once, when the user starts: its setup steps and requests see it.
    #[default]
    User,
    /// At the start of every iteration: only requests see it.
    Iteration,
}

/// What a unique feeder does when its rows run out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExhausted {
    /// The user that found no row stops; the others go on.
    #[default]
    StopUser,
    /// The agent whose rows ran out ends its part of the run.
    EndRun,
}

/// A feeder as the plan carries it (the rows travel separately).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feeder {
    /// Its name, the prefix of its variables.
    pub name: String,
    /// Column names, in order.
    pub columns: Vec<String>,
    /// How rows are handed out.
    #[serde(default)]
    pub mode: Mode,
    /// When a user takes a row.
    #[serde(default)]
    pub per: Per,
    /// Unique feeders: what happens when rows run out.
    #[serde(default)]
    pub on_exhausted: OnExhausted,
    /// Rows in the whole table.
    pub rows: u64,
    /// The table itself: only where the file was read (the controller).
    #[serde(skip)]
    pub table: Table,
}

impl Feeder {
    /// The variable name of column `c`: `name.column`.
    pub fn var(&self, c: usize) -> String {
        format!("{}.{}", self.name, self.columns[c])
    }
}

/// Rows of cells, stored as one string and where each cell ends (cells are
/// row-major; `ends.len()` is rows × columns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Every cell's text, joined.
    pub text: String,
    /// The end offset of each cell in `text`.
    pub ends: Vec<u32>,
}

/// Why a received table does not fit its feeder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TableError(String);

impl Table {
    /// A table from its parts, checked: offsets ascending, within the text,
    /// on character boundaries, and a whole number of rows of `columns`.
    pub fn from_parts(text: String, ends: Vec<u32>, columns: usize) -> Result<Table, TableError> {
        if columns == 0 || !ends.len().is_multiple_of(columns) {
            return Err(TableError(format!("{} cells are not whole rows of {columns} columns", ends.len())));
        }
        let mut prev = 0usize;
        for &e in &ends {
            let e = e as usize;
            if e < prev || e > text.len() || !text.is_char_boundary(e) {
                return Err(TableError(format!("cell end {e} is out of order or outside the text")));
            }
            prev = e;
        }
        if prev != text.len() {
            return Err(TableError("text past the last cell".into()));
        }
        Ok(Table { text, ends })
    }

    /// Cell `i` (row-major).
    pub fn cell(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    fn push(&mut self, cell: &str) {
        self.text.push_str(cell);
        // The text is at most MAX_FEEDER_BYTES, which fits u32.
        self.ends.push(self.text.len() as u32);
    }

    /// Rows `rows` of a table of `columns` columns, as a table of their own
    /// (an agent's slice of a unique feeder).
    pub fn slice(&self, columns: usize, rows: std::ops::Range<usize>) -> Table {
        let (first, last) = (rows.start * columns, rows.end * columns);
        if first >= last {
            return Table::default();
        }
        let base = if first == 0 { 0 } else { self.ends[first - 1] };
        let end = self.ends[last - 1];
        Table {
            text: self.text[base as usize..end as usize].to_owned(),
            ends: self.ends[first..last].iter().map(|e| e - base).collect(),
        }
    }
}

/// The file formats a feeder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header row.
    Csv,
    /// One JSON object per line; the first object's keys are the columns.
    JsonLines,
}

impl Format {
    /// The format of `path` by its extension: `.jsonl` and `.ndjson` are JSON lines, anything else CSV.
    pub fn of(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson") => Format::JsonLines,
            _ => Format::Csv,
        }
    }
}

/// Reads a feeder's `text` (from the file named `origin`) into its columns
/// and table; errors name the file's line and column.
pub fn read(text: &str, format: Format, origin: &str, field: &str) -> Result<(Vec<String>, Table), ScenarioError> {
    let err = |at: Option<(usize, usize)>, message: String| ScenarioError {
        origin: origin.to_owned(),
        at,
        field: field.to_owned(),
        message,
    };
    let (columns, table) = match format {
        Format::Csv => read_csv(text, &err)?,
        Format::JsonLines => read_json_lines(text, &err)?,
    };
    if let Some(bad) = columns.iter().find(|c| !valid_name(c)) {
        return Err(err(
            Some((1, 1)),
            format!("column {bad:?} cannot be a variable name (letters, digits, _ and - only)"),
        ));
    }
    if let Some(i) = (1..columns.len()).find(|&i| columns[..i].contains(&columns[i])) {
        return Err(err(Some((1, 1)), format!("column {:?} appears twice", columns[i])));
    }
    if table.ends.is_empty() {
        return Err(err(None, "has no rows of data".into()));
    }
    Ok((columns, table))
}

type ErrFn<'a> = dyn Fn(Option<(usize, usize)>, String) -> ScenarioError + 'a;

fn read_csv(text: &str, err: &ErrFn<'_>) -> Result<(Vec<String>, Table), ScenarioError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(text.as_bytes());
    let at = |pos: Option<&csv::Position>| pos.map(|p| (p.line() as usize, 1));
    let columns: Vec<String> =
        reader.headers().map_err(|e| err(Some((1, 1)), csv_message(&e)))?.iter().map(|h| h.trim().to_owned()).collect();
    let mut table = Table::default();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => record.iter().for_each(|cell| table.push(cell)),
            Err(e) => {
                let pos = match e.kind() {
                    csv::ErrorKind::UnequalLengths { pos, .. } => pos.as_ref(),
                    _ => e.position(),
                };
                return Err(err(at(pos), csv_message(&e)));
            }
        }
    }
    Ok((columns, table))
}

fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("this row has {len} fields; the header row has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".into(),
        _ => e.to_string(),
    }
}

fn read_json_lines(text: &str, err: &ErrFn<'_>) -> Result<(Vec<String>, Table), ScenarioError> {
    let mut columns: Option<Vec<String>> = None;
    let mut table = Table::default();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| err(Some((n, e.column().max(1))), e.to_string()))?;
        let serde_json::Value::Object(object) = value else {
            return Err(err(Some((n, 1)), "each line must be one JSON object".into()));
        };
        let cols = columns.get_or_insert_with(|| object.keys().cloned().collect());
        if let Some(extra) = object.keys().find(|k| !cols.contains(k)) {
            return Err(err(Some((n, 1)), format!("key {extra:?} is not among the first line's: {}", cols.join(", "))));
        }
        for c in cols.iter() {
            match object.get(c) {
                None => return Err(err(Some((n, 1)), format!("key {c:?} is missing (the first line has it)"))),
                Some(serde_json::Value::String(s)) => table.push(s),
                Some(serde_json::Value::Null) => table.push(""),
                Some(other) => table.push(&other.to_string()),
            }
        }
    }
    Ok((columns.unwrap_or_default(), table))
}

/// Whether `name` may be a feeder's or a column's name: it is written inside
/// `${feeder.column}`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> Result<(Vec<String>, Table), String> {
        read(text, Format::Csv, "u.csv", "feeder[0]").map_err(|e| e.to_string())
    }

    #[test]
    fn csv_rows_and_slices() {
        let (cols, t) = csv("name,password\nann,a1\n\"b,ob\",b2\ncy,\n").unwrap();
        assert_eq!(cols, ["name", "password"]);
        assert_eq!((t.cell(0), t.cell(2), t.cell(3), t.cell(4), t.cell(5)), ("ann", "b,ob", "b2", "cy", ""));
        let s = t.slice(2, 1..3);
        assert_eq!((s.cell(0), s.cell(1), s.cell(2), s.cell(3)), ("b,ob", "b2", "cy", ""));
        assert_eq!(Table::from_parts(s.text.clone(), s.ends.clone(), 2).unwrap(), s);
        assert_eq!(t.slice(2, 3..3), Table::default());
    }

    #[test]
    fn csv_errors_name_the_line() {
        assert_eq!(
            csv("name,password\nann,a1\nbob\n").unwrap_err(),
            "u.csv:3:1: feeder[0]: this row has 1 fields; the header row has 2"
        );
        assert_eq!(csv("name,name\nx,y\n").unwrap_err(), "u.csv:1:1: feeder[0]: column \"name\" appears twice");
        assert_eq!(
            csv("a b\nx\n").unwrap_err().split(": ").nth(2).unwrap(),
            "column \"a b\" cannot be a variable name (letters, digits, _ and - only)"
        );
        assert_eq!(csv("name\n").unwrap_err(), "u.csv: feeder[0]: has no rows of data");
    }

    #[test]
    fn json_lines() {
        let text = "{\"id\": 7, \"name\": \"ann\"}\n\n{\"name\": \"bob\", \"id\": null}\n";
        let (cols, t) = read(text, Format::JsonLines, "o.jsonl", "feeder[1]").unwrap();
        assert_eq!(cols, ["id", "name"]);
        assert_eq!((t.cell(0), t.cell(1), t.cell(2), t.cell(3)), ("7", "ann", "", "bob"));
        let e = read("{\"id\": 1}\n{\"id\": 2, \"x\": 3}\n", Format::JsonLines, "o.jsonl", "f").unwrap_err();
        assert_eq!(e.to_string(), "o.jsonl:2:1: f: key \"x\" is not among the first line's: id");
        let e = read("{\"id\": 1}\n{\"id\": }\n", Format::JsonLines, "o.jsonl", "f").unwrap_err();
        assert!(e.to_string().starts_with("o.jsonl:2:8: f: "), "{e}");
    }

    #[test]
    fn received_tables_are_checked() {
        assert!(Table::from_parts("abc".into(), vec![1, 3], 2).is_ok());
        assert!(Table::from_parts("abc".into(), vec![1, 3], 3).is_err());
        assert!(Table::from_parts("abc".into(), vec![2, 1], 2).is_err());
        assert!(Table::from_parts("abc".into(), vec![1, 4], 2).is_err());
        assert!(Table::from_parts("é".into(), vec![1, 2], 2).is_err());
        assert!(Table::from_parts("abcd".into(), vec![1, 3], 2).is_err());
    }
}
