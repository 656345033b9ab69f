//! The per-service metrics the API serves, as PromQL over the names the collector exports
//! (OpenTelemetry `http.server.request.duration` → `http_server_request_duration_seconds_*`;
//! `process.cpu.time` → `process_cpu_time_seconds_total`; `process.memory.usage` →
//! `process_memory_usage_bytes`; `service.namespace/service.name` → `job`), and the breakdown
//! dimensions.
//!
//! Tests: `cargo test -p anomaly-detector insights::catalogue::`; values against a real
//! Prometheus in `tests/insights_api.rs`.

/// Request counter (histogram count) of the RED metrics.
pub const REQUESTS: &str = "http_server_request_duration_seconds_count";
/// Latency histogram buckets.
pub const BUCKETS: &str = "http_server_request_duration_seconds_bucket";
/// Process CPU time counter (OpenTelemetry process metrics).
pub const CPU_TIME: &str = "process_cpu_time_seconds_total";
/// Process resident memory.
pub const MEMORY: &str = "process_memory_usage_bytes";
/// Matcher of a server error.
pub const ERROR_MATCHER: &str = "http_response_status_code=~\"5..\"";

/// A metric of `/api/v1/services/{service}/metrics/{metric}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Requests per second.
    RequestRate,
    /// 5xx / all requests.
    ErrorRatio,
    /// Median latency.
    LatencyP50,
    /// 95th percentile latency.
    LatencyP95,
    /// 99th percentile latency.
    LatencyP99,
    /// CPU cores used.
    Cpu,
    /// Resident memory.
    Memory,
    /// 1 - error ratio.
    Availability,
}

/// Every metric, in answer order.
pub const METRICS: [Metric; 8] = [
    Metric::RequestRate,
    Metric::ErrorRatio,
    Metric::LatencyP50,
    Metric::LatencyP95,
    Metric::LatencyP99,
    Metric::Cpu,
    Metric::Memory,
    Metric::Availability,
];

impl Metric {
    /// Name in URLs and answers.
    pub fn name(self) -> &'static str {
        match self {
            Metric::RequestRate => "request_rate",
            Metric::ErrorRatio => "error_ratio",
            Metric::LatencyP50 => "latency_p50",
            Metric::LatencyP95 => "latency_p95",
            Metric::LatencyP99 => "latency_p99",
            Metric::Cpu => "cpu",
            Metric::Memory => "memory",
            Metric::Availability => "availability",
        }
    }

    /// Unit of the values.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::RequestRate => "requests/s",
            Metric::ErrorRatio | Metric::Availability => "ratio",
            Metric::LatencyP50 | Metric::LatencyP95 | Metric::LatencyP99 => "seconds",
            Metric::Cpu => "cores",
            Metric::Memory => "bytes",
        }
    }

    /// One line on what it is.
    pub fn description(self) -> &'static str {
        match self {
            Metric::RequestRate => "HTTP server requests per second",
            Metric::ErrorRatio => "share of requests answered with a 5xx status",
            Metric::LatencyP50 => "median request duration",
            Metric::LatencyP95 => "95th percentile request duration",
            Metric::LatencyP99 => "99th percentile request duration",
            Metric::Cpu => "CPU time per second of the service's processes (process.cpu.time)",
            Metric::Memory => "resident memory of the service's processes (process.memory.usage)",
            Metric::Availability => "share of requests answered without a 5xx status",
        }
    }

    /// By name.
    pub fn parse(name: &str) -> Option<Metric> {
        METRICS.into_iter().find(|m| m.name() == name)
    }

    /// Every name.
    pub fn names() -> Vec<&'static str> {
        METRICS.iter().map(|m| m.name()).collect()
    }

    /// The raw series whose samples tell whether data is present (for completeness).
    pub fn base(self) -> &'static str {
        match self {
            Metric::Cpu => CPU_TIME,
            Metric::Memory => MEMORY,
            _ => REQUESTS,
        }
    }

    /// PromQL of the series for `job` with `rate()` windows of `window` seconds.
    pub fn promql(self, job: &str, window: i64) -> String {
        let sel = selector(job);
        let w = format!("{window}s");
        let quantile = |q: f64| {
            format!("histogram_quantile({q}, sum by (le) (rate({BUCKETS}{{{sel}}}[{w}])))")
        };
        match self {
            Metric::RequestRate => format!("sum(rate({REQUESTS}{{{sel}}}[{w}]))"),
            // A service without any 5xx series still has an error ratio of 0.
            Metric::ErrorRatio => format!(
                "(sum(rate({REQUESTS}{{{sel},{ERROR_MATCHER}}}[{w}])) or sum(rate({REQUESTS}{{{sel}}}[{w}])) * 0) / sum(rate({REQUESTS}{{{sel}}}[{w}]))"
            ),
            Metric::LatencyP50 => quantile(0.5),
            Metric::LatencyP95 => quantile(0.95),
            Metric::LatencyP99 => quantile(0.99),
            Metric::Cpu => format!("sum(rate({CPU_TIME}{{{sel}}}[{w}]))"),
            Metric::Memory => format!("sum({MEMORY}{{{sel}}})"),
            Metric::Availability => format!(
                "1 - ((sum(rate({REQUESTS}{{{sel},{ERROR_MATCHER}}}[{w}])) or sum(rate({REQUESTS}{{{sel}}}[{w}])) * 0) / sum(rate({REQUESTS}{{{sel}}}[{w}])))"
            ),
        }
    }
}

/// A breakdown dimension (`by=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// `http_route`.
    Route,
    /// `http_response_status_code`.
    StatusCode,
    /// `http_request_method`.
    Method,
    /// `instance`.
    Instance,
}

/// Every dimension.
pub const DIMENSIONS: [Dimension; 4] = [
    Dimension::Route,
    Dimension::StatusCode,
    Dimension::Method,
    Dimension::Instance,
];

impl Dimension {
    /// Name in `by=`.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Route => "route",
            Dimension::StatusCode => "status_code",
            Dimension::Method => "method",
            Dimension::Instance => "instance",
        }
    }

    /// The Prometheus label.
    pub fn label(self) -> &'static str {
        match self {
            Dimension::Route => "http_route",
            Dimension::StatusCode => "http_response_status_code",
            Dimension::Method => "http_request_method",
            Dimension::Instance => "instance",
        }
    }

    /// By name.
    pub fn parse(name: &str) -> Option<Dimension> {
        DIMENSIONS.into_iter().find(|d| d.name() == name)
    }

    /// Every name.
    pub fn names() -> Vec<&'static str> {
        DIMENSIONS.iter().map(|d| d.name()).collect()
    }
}

/// `job="<job>"` with the value escaped for PromQL.
pub fn selector(job: &str) -> String {
    format!("job=\"{}\"", escape(job))
}

/// Escapes a PromQL string literal's content.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Request totals over a whole range (`increase` over `range` seconds at its end), optionally
/// by a label and/or only errors.
pub fn increase_query(job: &str, range: i64, by: Option<&str>, errors_only: bool) -> String {
    let sel = selector(job);
    let m = if errors_only {
        format!("{sel},{ERROR_MATCHER}")
    } else {
        sel
    };
    let by = by.map(|l| format!(" by ({l})")).unwrap_or_default();
    format!("sum{by} (increase({REQUESTS}{{{m}}}[{range}s]))")
}

/// Latency quantile over a whole range, optionally by a label.
pub fn range_quantile_query(job: &str, range: i64, q: f64, by: Option<&str>) -> String {
    let sel = selector(job);
    let by = by.map(|l| format!("{l}, ")).unwrap_or_default();
    format!("histogram_quantile({q}, sum by ({by}le) (increase({BUCKETS}{{{sel}}}[{range}s])))")
}

/// 1 at every step where `base` has a sample for `job` within the step before it.
pub fn presence_query(base: &str, job: &str, step: i64) -> String {
    format!(
        "max(count_over_time({base}{{{}}}[{step}s])) > bool 0",
        selector(job)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_queries_escape() {
        for m in METRICS {
            assert_eq!(Metric::parse(m.name()), Some(m));
            assert!(m.promql("demo/x", 60).contains("job=\"demo/x\""));
        }
        for d in DIMENSIONS {
            assert_eq!(Dimension::parse(d.name()), Some(d));
        }
        assert_eq!(selector("a\"b"), "job=\"a\\\"b\"");
        assert_eq!(
            increase_query("j", 3600, Some("http_route"), true),
            "sum by (http_route) (increase(http_server_request_duration_seconds_count{job=\"j\",http_response_status_code=~\"5..\"}[3600s]))"
        );
        assert!(Metric::parse("bogus").is_none());
    }
}
