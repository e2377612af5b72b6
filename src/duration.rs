//! Durations as policy authors and operators write them: `90s`, `5m`,
//! `1h30m`, `7d`, `250ms`.

use std::time::Duration;

/// Why a duration does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was written.
    #[error("empty duration")]
    Empty,
    /// A unit or other text where a number should start.
    #[error("expected a number at `{0}`")]
    ExpectedNumber(String),
    /// More digits than a `u64` holds.
    #[error("`{0}` is too large")]
    TooLarge(String),
    /// A number without its unit (`5`).
    #[error("`{0}` has no unit")]
    MissingUnit(String),
    /// A unit other than `ms`, `s`, `m`, `h`, `d`.
    #[error("unknown unit `{0}`")]
    UnknownUnit(String),
}

/// Parses a duration such as `5m` or `1h30m`. Units: `ms`, `s`, `m`, `h`, `d`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::ExpectedNumber(rest.to_owned()));
        }
        let (number, tail) = rest.split_at(digits);
        let n: u64 = number
            .parse()
            .map_err(|_| DurationError::TooLarge(number.to_owned()))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            "" => return Err(DurationError::MissingUnit(number.to_owned())),
            other => return Err(DurationError::UnknownUnit(other.to_owned())),
        };
        total = total.saturating_add(part);
        rest = tail;
    }
    Ok(total)
}

/// Formats a duration the way [`parse_duration`] reads it, largest units
/// first (`1h30m`, `300ms`).
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    let millis = d.subsec_millis();
    if secs == 0 {
        return format!("{millis}ms");
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if millis > 0 {
        out.push_str(&format!("{millis}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
    }

    #[test]
    fn rejects_bad_durations_with_reason() {
        let cases = [
            (
                "5",
                DurationError::MissingUnit("5".into()),
                "`5` has no unit",
            ),
            (
                "5 minutes",
                DurationError::UnknownUnit(" minutes".into()),
                "unknown unit ` minutes`",
            ),
            (
                "m5",
                DurationError::ExpectedNumber("m5".into()),
                "expected a number at `m5`",
            ),
            ("", DurationError::Empty, "empty duration"),
            (
                "99999999999999999999s",
                DurationError::TooLarge("99999999999999999999".into()),
                "`99999999999999999999` is too large",
            ),
        ];
        for (text, error, message) in cases {
            assert_eq!(parse_duration(text), Err(error.clone()));
            assert_eq!(error.to_string(), message);
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in ["5m", "1h30m", "250ms", "7d", "1m1s"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
    }
}
