//! Metric and label names: OTLP → Prometheus, per the OpenTelemetry specification's
//! "Prometheus and OpenMetrics compatibility" section (the same rules as the upstream
//! collector's `pkg/translator/prometheus` with name normalisation on).
//!
//! Tests: `cargo test -p otel-collector translate::names`.

/// What kind of Prometheus metric a name is built for (decides the `_total` / `_ratio` suffixes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// Monotonic sum: gets `_total`.
    Counter,
    /// Gauge: gets `_ratio` when the unit is `1`.
    Gauge,
    /// Non-monotonic sum (a Prometheus gauge, but `_ratio` is for OTLP gauges only, as
    /// upstream), histogram, exponential histogram or summary: unit suffix only.
    Other,
}

fn is_metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// OTLP unit (UCUM) → Prometheus unit word.
fn main_unit(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        _ => return None,
    })
}

/// The unit after `/` (`By/s` → `per_second`).
fn per_unit(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// Removes `{...}` annotations (`{request}`, `By{packet}`), which carry no unit.
fn strip_annotations(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    let mut depth = 0usize;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// Replaces runs of characters outside `[a-zA-Z0-9]` with one `_` and trims `_` at both ends.
fn clean_unit(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    for c in unit.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// The unit suffix tokens for `unit`: (main, per). Either may be empty.
pub fn unit_suffixes(unit: &str) -> (String, String) {
    let unit = strip_annotations(unit);
    if unit.is_empty() {
        return (String::new(), String::new());
    }
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (unit.as_str(), None),
    };
    let main = match main_unit(main) {
        Some(word) => word.to_string(),
        None => clean_unit(main),
    };
    let per = match per {
        Some(p) if !p.is_empty() => {
            let word = match per_unit(p) {
                Some(w) => w.to_string(),
                None => clean_unit(p),
            };
            if word.is_empty() {
                String::new()
            } else {
                format!("per_{word}")
            }
        }
        _ => String::new(),
    };
    (main, per)
}

/// Builds the Prometheus metric name for an OTLP metric.
///
/// With `add_suffixes` (the default in both exporters): the name is split into tokens at every
/// character outside `[a-zA-Z0-9:]` and re-joined with `_` (so runs of underscores collapse), the
/// unit suffix is appended unless it is already a token, `_total` is moved to the end for
/// counters, `_ratio` is appended for gauges with unit `1`, the namespace is prepended, and a
/// leading digit gets a `_` prefix. Without it only invalid characters are replaced.
pub fn metric_name(
    name: &str,
    unit: &str,
    kind: NameKind,
    namespace: &str,
    add_suffixes: bool,
) -> String {
    let out = if add_suffixes {
        let mut tokens: Vec<&str> = name
            .split(|c: char| !is_metric_char(c))
            .filter(|t| !t.is_empty())
            .collect();
        let (main, per) = unit_suffixes(unit);
        if !main.is_empty() && !tokens.contains(&main.as_str()) {
            tokens.push(&main);
        }
        if !per.is_empty() && !tokens.contains(&per.as_str()) {
            tokens.push(&per);
        }
        if kind == NameKind::Counter {
            tokens.retain(|t| *t != "total");
            tokens.push("total");
        }
        if unit == "1" && kind == NameKind::Gauge {
            tokens.retain(|t| *t != "ratio");
            tokens.push("ratio");
        }
        let ns_tokens: Vec<&str> = namespace
            .split(|c: char| !is_metric_char(c))
            .filter(|t| !t.is_empty())
            .collect();
        let mut all = ns_tokens;
        all.extend(tokens);
        all.join("_")
    } else {
        let base: Vec<&str> = name
            .split(|c: char| !is_metric_char(c) && c != '_')
            .filter(|t| !t.is_empty())
            .collect();
        let base = base.join("_");
        let ns: Vec<&str> = namespace
            .split(|c: char| !is_metric_char(c) && c != '_')
            .filter(|t| !t.is_empty())
            .collect();
        if ns.is_empty() {
            base
        } else {
            format!("{}_{base}", ns.join("_"))
        }
    };
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{out}")
    } else {
        out
    }
}

/// Builds a Prometheus label name from an attribute key the way the upstream collector does: a
/// key starting with a digit gets a `key_` prefix, one starting with a single `_` a `key`
/// prefix (`__` is kept), then every character outside `[a-zA-Z0-9_]` becomes `_` (runs are not
/// collapsed, as upstream). Returns `None` for keys that end up empty or all underscores (the
/// attribute is dropped: such a label name is invalid or reserved).
pub fn label_name(key: &str) -> Option<String> {
    let mut out = String::with_capacity(key.len() + 4);
    if key.starts_with(|c: char| c.is_ascii_digit()) {
        out.push_str("key_");
    } else if key.starts_with('_') && !key.starts_with("__") {
        out.push_str("key");
    }
    for c in key.chars() {
        out.push(if c.is_ascii_alphanumeric() { c } else { '_' });
    }
    if out.chars().all(|c| c == '_') {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_follow_the_spec_table() {
        let cases = [
            // (name, unit, kind, namespace, expected)
            (
                "http.server.request.duration",
                "s",
                NameKind::Other,
                "",
                "http_server_request_duration_seconds",
            ),
            (
                "system.memory.usage",
                "By",
                NameKind::Gauge,
                "",
                "system_memory_usage_bytes",
            ),
            (
                "http.server.requests",
                "{request}",
                NameKind::Counter,
                "",
                "http_server_requests_total",
            ),
            (
                "requests.total.count",
                "1",
                NameKind::Counter,
                "",
                "requests_count_total",
            ),
            (
                "system.cpu.utilization",
                "1",
                NameKind::Gauge,
                "",
                "system_cpu_utilization_ratio",
            ),
            (
                "cpu.ratio.value",
                "1",
                NameKind::Gauge,
                "",
                "cpu_value_ratio",
            ),
            (
                "network.io",
                "By/s",
                NameKind::Counter,
                "",
                "network_io_bytes_per_second_total",
            ),
            (
                "latency_seconds",
                "s",
                NameKind::Other,
                "",
                "latency_seconds",
            ),
            ("queue__depth..x", "", NameKind::Gauge, "", "queue_depth_x"),
            (
                "2xx.responses",
                "",
                NameKind::Counter,
                "",
                "_2xx_responses_total",
            ),
            ("temp", "Cel", NameKind::Gauge, "app", "app_temp_celsius"),
            ("up.down", "{conn}", NameKind::Gauge, "", "up_down"),
            (
                "weird",
                "m/mo",
                NameKind::Gauge,
                "",
                "weird_meters_per_month",
            ),
            (
                "custom",
                "widgets/s",
                NameKind::Gauge,
                "",
                "custom_widgets_per_second",
            ),
            ("rate", "1/s", NameKind::Gauge, "", "rate_per_second"),
            ("pct", "%", NameKind::Gauge, "", "pct_percent"),
            // An up-down counter with unit 1 (what translate gives a non-monotonic sum).
            ("cpu.usage", "1", NameKind::Other, "", "cpu_usage"),
        ];
        for (name, unit, kind, ns, want) in cases {
            assert_eq!(
                metric_name(name, unit, kind, ns, true),
                want,
                "{name} [{unit}]"
            );
        }
    }

    #[test]
    fn without_suffixes_only_characters_are_fixed() {
        assert_eq!(
            metric_name("http.server.duration", "s", NameKind::Counter, "", false),
            "http_server_duration"
        );
        assert_eq!(
            metric_name("a__b", "s", NameKind::Counter, "ns", false),
            "ns_a__b"
        );
    }

    #[test]
    fn label_names_are_sanitised() {
        assert_eq!(label_name("http.method").as_deref(), Some("http_method"));
        assert_eq!(label_name("123abc").as_deref(), Some("key_123abc"));
        assert_eq!(label_name("_private").as_deref(), Some("key_private"));
        assert_eq!(label_name("__reserved").as_deref(), Some("__reserved"));
        assert_eq!(label_name("a..b").as_deref(), Some("a__b"));
        assert_eq!(label_name(".x").as_deref(), Some("_x"));
        assert_eq!(label_name("δ").as_deref(), None);
        assert_eq!(label_name("").as_deref(), None);
    }
}
