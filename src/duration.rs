//! Durations as policy authors and operators write them: `90s`, `5m`,
//! `1h30m`, `7d`, `250ms`.

use std::time::Duration;

/// Parses a duration such as `5m` or `1h30m`. Units: `ms`, `s`, `m`, `h`, `d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("expected a number at `{rest}`"));
        }
        let (number, tail) = rest.split_at(digits);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("`{number}` is too large"))?;
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
            "" => return Err(format!("`{number}` has no unit")),
            other => return Err(format!("unknown unit `{other}`")),
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
        assert_eq!(parse_duration("5"), Err("`5` has no unit".into()));
        assert_eq!(
            parse_duration("5 minutes"),
            Err("unknown unit ` minutes`".into())
        );
        assert_eq!(
            parse_duration("m5"),
            Err("expected a number at `m5`".into())
        );
        assert_eq!(parse_duration(""), Err("empty duration".into()));
    }

    #[test]
    fn formats_round_trip() {
        for text in ["5m", "1h30m", "250ms", "7d", "1m1s"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
    }
}
