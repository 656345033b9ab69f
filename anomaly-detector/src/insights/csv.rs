//! CSV exports (RFC 4180: comma separated, CRLF line ends, fields quoted when needed, a header
//! row whose names carry the units, e.g. `request_rate (requests/s)`) of metric series and
//! breakdowns. Empty fields are missing values.
//!
//! Tests: `cargo test -p anomaly-detector insights::csv::`; `tests/insights_api.rs` parses the
//! served CSV back.

use super::{BreakdownRow, MetricSeries};

/// Header of the timestamp column.
pub const TIMESTAMP_HEADER: &str = "timestamp (unix s)";

fn writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new())
}

fn num(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map(|x| x.to_string())
        .unwrap_or_default()
}

fn finish(w: csv::Writer<Vec<u8>>) -> Vec<u8> {
    w.into_inner().unwrap_or_default()
}

/// One column per series, one row per timestamp (the series share their timestamps).
pub fn series(all: &[MetricSeries]) -> Vec<u8> {
    let mut w = writer();
    let mut header = vec![TIMESTAMP_HEADER.to_string()];
    header.extend(all.iter().map(|s| format!("{} ({})", s.metric, s.unit)));
    let _ = w.write_record(&header);
    let rows = all.first().map(|s| s.points.len()).unwrap_or(0);
    for i in 0..rows {
        let mut rec = vec![all[0].points[i].timestamp.to_string()];
        rec.extend(
            all.iter()
                .map(|s| num(s.points.get(i).and_then(|p| p.value))),
        );
        let _ = w.write_record(&rec);
    }
    finish(w)
}

/// One row per breakdown group.
pub fn breakdown(by: &str, rows: &[BreakdownRow]) -> Vec<u8> {
    let mut w = writer();
    let _ = w.write_record([
        by,
        "requests (count)",
        "errors (count)",
        "error_ratio (ratio)",
        "share (ratio)",
        "latency_p50 (seconds)",
        "latency_p95 (seconds)",
        "latency_p99 (seconds)",
    ]);
    for r in rows {
        let _ = w.write_record([
            r.key.clone(),
            r.requests.to_string(),
            r.errors.to_string(),
            num(r.error_ratio),
            num(r.share),
            num(r.latency_seconds.p50),
            num(r.latency_seconds.p95),
            num(r.latency_seconds.p99),
        ]);
    }
    finish(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insights::{Percentiles, Point, SourceStatus, Stats};

    #[test]
    fn quoting_units_and_empty_values() {
        let rows = vec![BreakdownRow {
            key: "/api/a,\"b\"".into(),
            requests: 10.0,
            errors: 1.0,
            error_ratio: Some(0.1),
            share: Some(1.0),
            latency_seconds: Percentiles::default(),
        }];
        let text = String::from_utf8(breakdown("route", &rows)).unwrap();
        assert!(
            text.starts_with("route,requests (count),errors (count),"),
            "{text}"
        );
        assert!(
            text.contains("\r\n\"/api/a,\"\"b\"\"\",10,1,0.1,1,,,\r\n"),
            "{text:?}"
        );
        let s = MetricSeries {
            metric: "cpu".into(),
            unit: "cores".into(),
            description: String::new(),
            points: vec![
                Point {
                    timestamp: 5,
                    value: Some(0.5),
                },
                Point {
                    timestamp: 20,
                    value: None,
                },
            ],
            stats: Stats::default(),
            completeness: 0.5,
            status: SourceStatus::ok(),
        };
        let text = String::from_utf8(series(&[s])).unwrap();
        assert_eq!(text, "timestamp (unix s),cpu (cores)\r\n5,0.5\r\n20,\r\n");
    }
}
