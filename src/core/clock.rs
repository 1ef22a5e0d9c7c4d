//! Time as plain Unix seconds, with RFC 3339 and duration helpers.
//!
//! The library never reads the clock: every function that needs *now* takes
//! it as a parameter. [`now`] exists for the command-line tool.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Seconds since the Unix epoch, UTC.
pub type UnixTime = i64;

/// One day in seconds.
pub const DAY: i64 = 86_400;

/// The system clock. Only the command-line tool calls this; the library takes
/// time as a parameter everywhere.
pub fn now() -> UnixTime {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Formats `t` as RFC 3339 in UTC, e.g. `2026-11-27T18:00:00Z`.
pub fn rfc3339(t: UnixTime) -> String {
    match OffsetDateTime::from_unix_timestamp(t) {
        Ok(dt) => dt.format(&Rfc3339).unwrap_or_else(|_| t.to_string()),
        Err(_) => format!("@{t}"),
    }
}

/// Parses an RFC 3339 timestamp (`2026-11-27T18:00:00Z`) or a bare date
/// (`2026-11-27`, midnight UTC).
pub fn parse_rfc3339(s: &str) -> Result<UnixTime, String> {
    if let Ok(dt) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(dt.unix_timestamp());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(s, &fmt) {
        Ok(d) => Ok(d.midnight().assume_utc().unix_timestamp()),
        Err(_) => {
            Err(format!("invalid time {s:?}: expected RFC 3339 like 2026-11-27T18:00:00Z or a date like 2026-11-27"))
        }
    }
}

/// Parses a duration such as `30d`, `12h`, `90m`, `45s` or `2w` into seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let err = || format!("invalid duration {s:?}: expected a number and a unit (s, m, h, d, w), e.g. 30d");
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?);
    let n: i64 = num.parse().map_err(|_| err())?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => DAY,
        "w" => 7 * DAY,
        _ => return Err(err()),
    };
    n.checked_mul(mul).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = 1_795_000_000;
        assert_eq!(parse_rfc3339(&rfc3339(t)).unwrap(), t);
        assert_eq!(parse_rfc3339("1970-01-02").unwrap(), DAY);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d").unwrap(), 30 * DAY);
        assert_eq!(parse_duration("2w").unwrap(), 14 * DAY);
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
