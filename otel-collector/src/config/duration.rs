//! Durations in config values, written as upstream does: `5s`, `200ms`, `1m30s`, `1h`.
//!
//! Use with `#[serde(with = "crate::config::duration")]` (or `duration::option` for `Option`).
//! Tests: `cargo test -p otel-collector config::duration`.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

/// Parses `5s`, `200ms`, `1m30s`, `1.5s`, `0` (Go's `time.ParseDuration` syntax, as upstream).
///
/// # Errors
/// A message with the offending text and an example of the expected form.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = || {
        format!("invalid duration `{text}`: write a number with a unit, like `5s`, `200ms`, `1m30s` (units: ns, us, ms, s, m, h)")
    };
    if t.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats like Go (`5s`, `200ms`), for printing the effective config.
pub fn format(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

/// Serde `deserialize_with` for a required duration.
///
/// # Errors
/// When the value is not a duration string.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let raw = Raw::deserialize(d)?;
    raw.into_duration().map_err(serde::de::Error::custom)
}

/// Serde `serialize_with` for a duration.
///
/// # Errors
/// Never, besides the serializer's own.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Text(String),
    Int(i64),
}

impl Raw {
    fn into_duration(self) -> Result<Duration, String> {
        match self {
            Raw::Text(t) => parse(&t),
            // Upstream reads a bare integer as nanoseconds; `0` is the common case.
            Raw::Int(0) => Ok(Duration::ZERO),
            Raw::Int(n) => Err(format!(
                "invalid duration `{n}`: a bare number is ambiguous; write it with a unit, like `{n}s` or `{n}ms`"
            )),
        }
    }
}

/// The same for `Option<Duration>`.
pub mod option {
    use super::*;

    /// Serde `deserialize_with` for an optional duration.
    ///
    /// # Errors
    /// When the value is present and not a duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(r) => r
                .into_duration()
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }

    /// Serde `serialize_with` for an optional duration.
    ///
    /// # Errors
    /// Never, besides the serializer's own.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format(*d)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_bad_durations_with_example() {
        for bad in ["5", "5x", "s", "", "1m30", "fast"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("like `5s`"), "{bad}: {e}");
        }
    }

    #[test]
    fn formats_back() {
        assert_eq!(format(Duration::from_secs(5)), "5s");
        assert_eq!(format(Duration::from_millis(200)), "200ms");
    }
}
