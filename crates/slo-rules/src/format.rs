//! Number and duration formatting exactly as Sloth (Go) writes them into rules.
//!
//! Sloth renders floats with Go's `%g`/`%v` (shortest representation that round-trips; exponent
//! form when the exponent is below -4 or at least 6), the `sloth_objective` label with
//! `strconv.FormatFloat(f, 'f', -1, 64)`, and windows with Prometheus' own duration format
//! (`5m`, `1h`, `1d`, `4w`). Matching them byte for byte keeps our rules identical to Sloth's.
//!
//! Tests: `cargo test -p slo-rules format::`.

use std::fmt;

/// A duration with millisecond resolution, the resolution of Prometheus durations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PromDuration(pub u64);

const MS_SECOND: u64 = 1_000;
const MS_MINUTE: u64 = 60 * MS_SECOND;
const MS_HOUR: u64 = 60 * MS_MINUTE;
const MS_DAY: u64 = 24 * MS_HOUR;
const MS_WEEK: u64 = 7 * MS_DAY;
const MS_YEAR: u64 = 365 * MS_DAY;

/// Units of the Prometheus duration format, largest first: (suffix, milliseconds, used only when
/// it divides the rest exactly). Prometheus writes `90d`, not `12w6d`.
const UNITS: [(&str, u64, bool); 7] = [
    ("y", MS_YEAR, true),
    ("w", MS_WEEK, true),
    ("d", MS_DAY, false),
    ("h", MS_HOUR, false),
    ("m", MS_MINUTE, false),
    ("s", MS_SECOND, false),
    ("ms", 1, false),
];

impl PromDuration {
    /// A duration of `m` minutes.
    pub const fn minutes(m: u64) -> Self {
        PromDuration(m * MS_MINUTE)
    }

    /// A duration of `h` hours.
    pub const fn hours(h: u64) -> Self {
        PromDuration(h * MS_HOUR)
    }

    /// A duration of `d` days.
    pub const fn days(d: u64) -> Self {
        PromDuration(d * MS_DAY)
    }

    /// The duration in hours as Go's `time.Duration.Hours()` computes it (whole hours plus the
    /// fraction), so burn-rate factors come out with the same rounding as Sloth's.
    pub fn go_hours(self) -> f64 {
        let whole = self.0 / MS_HOUR;
        let rest = self.0 % MS_HOUR;
        whole as f64 + rest as f64 / MS_HOUR as f64
    }

    /// Parses a Prometheus duration (`30d`, `4w`, `1h30m`, `500ms`): units `y w d h m s ms`, each at
    /// most once, largest first.
    ///
    /// # Errors
    /// A message naming what is wrong, for the caller to put next to the key it read.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("{text:?} is not a duration like 30d, 6h or 5m (units y, w, d, h, m, s, ms)")
        };
        if text.is_empty() {
            return Err(bad());
        }
        let mut rest = text;
        let mut total: u64 = 0;
        let mut next_unit = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            // `ms` before `m` so "5ms" is not read as minutes followed by junk.
            let (index, suffix) = [6usize, 0, 1, 2, 3, 4, 5]
                .iter()
                .map(|&i| (i, UNITS[i].0))
                .find(|(_, s)| rest.starts_with(s))
                .ok_or_else(bad)?;
            if index < next_unit {
                return Err(bad());
            }
            next_unit = index + 1;
            rest = &rest[suffix.len()..];
            total = value
                .checked_mul(UNITS[index].1)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
        }
        if total == 0 {
            return Err(format!(
                "{text:?} is zero; a window must be longer than that"
            ));
        }
        Ok(PromDuration(total))
    }
}

impl fmt::Display for PromDuration {
    /// Prometheus' `model.Duration.String()`: `5m`, `1h`, `1d`, `30d`, `4w`, `1h30m`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        let mut ms = self.0;
        for (suffix, unit, exact) in UNITS {
            if exact && !ms.is_multiple_of(unit) {
                continue;
            }
            let n = ms / unit;
            if n > 0 {
                write!(f, "{n}{suffix}")?;
                ms -= n * unit;
            }
        }
        Ok(())
    }
}

/// Go's `fmt.Sprintf("%g", v)` / `%v` for a float64: the shortest digits that round-trip, in
/// exponent form (`1e-05`, `1.5e+06`) when the decimal exponent is < -4 or >= 6, else plain.
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    // Rust's `{:e}` is the shortest round-trip digits too: "1.0000000000331966e-5", "1.44e1".
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        // Rust's `{}` never uses an exponent and prints the same shortest digits.
        format!("{v}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: shortest round-trip digits, never an exponent.
pub fn go_float_plain(v: f64) -> String {
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_matches_sloth_outputs() {
        // Values that appear in Sloth's own generated rules.
        assert_eq!(go_float(99.9 / 100.0), "0.9990000000000001");
        assert_eq!(go_float((100.0 - 99.9) / 100.0), "0.0009999999999999432");
        assert_eq!(go_float((100.0 - 99.0) / 100.0), "0.01");
        assert_eq!(go_float(0.95), "0.95");
        assert_eq!(go_float(14.4), "14.4");
        assert_eq!(go_float(6.0), "6");
        assert_eq!(go_float(30.0), "30");
        assert_eq!(go_float(1.0), "1");
    }

    #[test]
    fn go_float_switches_to_exponent_like_go() {
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(1.0000000000047748e-05), "1.0000000000047748e-05");
        assert_eq!(go_float(100000.0), "100000");
        assert_eq!(go_float(1000000.0), "1e+06");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(-2.5e-7), "-2.5e-07");
        assert_eq!(go_float(1e100), "1e+100");
        assert_eq!(go_float(0.0), "0");
        assert_eq!(go_float(f64::NAN), "NaN");
    }

    #[test]
    fn plain_float_never_uses_an_exponent() {
        assert_eq!(go_float_plain(99.9), "99.9");
        assert_eq!(go_float_plain(99.0), "99");
        assert_eq!(go_float_plain(0.00001), "0.00001");
    }

    #[test]
    fn durations_print_like_prometheus() {
        assert_eq!(PromDuration::minutes(5).to_string(), "5m");
        assert_eq!(PromDuration::minutes(30).to_string(), "30m");
        assert_eq!(PromDuration::hours(1).to_string(), "1h");
        assert_eq!(PromDuration::hours(24).to_string(), "1d");
        assert_eq!(PromDuration::days(3).to_string(), "3d");
        assert_eq!(PromDuration::days(30).to_string(), "30d");
        assert_eq!(PromDuration::days(28).to_string(), "4w");
        assert_eq!(PromDuration::days(90).to_string(), "90d");
        assert_eq!(PromDuration(90 * 60 * 1000).to_string(), "1h30m");
        assert_eq!(PromDuration(1500).to_string(), "1s500ms");
        assert_eq!(PromDuration(0).to_string(), "0s");
    }

    #[test]
    fn durations_parse_and_round_trip() {
        for text in [
            "5m", "30m", "1h", "6h", "1d", "3d", "30d", "4w", "1h30m", "500ms", "1y",
        ] {
            assert_eq!(PromDuration::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(PromDuration::parse("28d").unwrap(), PromDuration::days(28));
        assert_eq!(PromDuration::parse("5ms").unwrap(), PromDuration(5));
    }

    #[test]
    fn bad_durations_are_refused_with_the_input_named() {
        for text in ["", "30", "d", "5x", "1m1h", "1h1h", "-5m", "0s", "5m "] {
            let err = PromDuration::parse(text).unwrap_err();
            assert!(err.contains(&format!("{text:?}")), "{text:?}: {err}");
        }
    }

    #[test]
    fn go_hours_keeps_fractions() {
        assert_eq!(PromDuration::days(30).go_hours(), 720.0);
        assert_eq!(PromDuration::minutes(5).go_hours(), 5.0 / 60.0);
    }
}
