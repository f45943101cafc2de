//! Durations as people write them (`500ms`, `1.5s`, `2m`, `1h 30m`), in one
//! syntax (humantime's) and with one message when they are not, whether they
//! come from a flag, a scenario file or the API.

use std::time::Duration;

/// Why a duration was refused. The message names the text as given.
#[derive(Debug, thiserror::Error)]
pub enum DurationError {
    /// Not humantime syntax. One message whatever the parser found (with one
    /// example); the parser's own reason, which brings examples of its own,
    /// is the `source`.
    #[error("{text:?} is not a duration (a number and a unit, e.g. 10s)")]
    Syntax {
        /// The text, trimmed.
        text: String,
        /// What the parser found wrong.
        #[source]
        reason: humantime::DurationError,
    },
    /// Zero where only a positive duration makes sense.
    #[error("{text:?} must be longer than zero")]
    Zero {
        /// The text, trimmed.
        text: String,
    },
}

/// Parses a duration such as `500ms`, `1.5s` or `2m` (surrounding spaces
/// ignored). Zero is a duration.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    humantime::parse_duration(text).map_err(|reason| DurationError::Syntax { text: text.to_owned(), reason })
}

/// [`parse_duration`], refusing zero: for run lengths, timeouts and the like.
pub fn parse_nonzero_duration(text: &str) -> Result<Duration, DurationError> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err(DurationError::Zero { text: text.trim().to_owned() });
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_why_not() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration(" 1.5s ").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_duration("soon").unwrap_err().to_string(),
            "\"soon\" is not a duration (a number and a unit, e.g. 10s)"
        );
        assert!(parse_duration("").unwrap_err().to_string().starts_with("\"\" is not a duration ("));
        assert!(parse_duration("10").unwrap_err().to_string().starts_with("\"10\" is not a duration ("));
        assert_eq!(parse_nonzero_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_nonzero_duration(" 0ms").unwrap_err().to_string(), "\"0ms\" must be longer than zero");
        assert!(matches!(parse_nonzero_duration("x"), Err(DurationError::Syntax { .. })));
    }
}
