//! The functions the fuzz targets call (`otel-collector/fuzz/`, `make fuzz`), shared with the
//! stable-toolchain replay test `tests/fuzz_replay.rs`, which feeds every file under
//! `testdata/fuzz/<target>/` (seed corpus and every crash found) through the same function.
//!
//! Each takes arbitrary bytes and must neither panic nor hang on any of them; where a property
//! can be checked cheaply it is asserted (a protobuf decode → encode → decode → encode round
//! trip is stable).
//!
//! Tests: `cargo test -p otel-collector --test fuzz_replay`.

use crate::config::Config;
use crate::exporter::prometheus::{PrometheusExporter, PrometheusExporterConfig};
use crate::pipeline::{Signal, Telemetry};
use crate::receiver::validate;
use crate::translate::{DeltaMode, DropCounters, TranslateOptions, Translator};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every fuzz target: its name (directory under `testdata/fuzz/`) and entry point.
pub const TARGETS: &[(&str, Target)] = &[
    ("otlp_proto", otlp_proto),
    ("otlp_json", otlp_json),
    ("prometheus_translate", prometheus_translate),
    ("config", config),
    ("wal_segment", wal_segment),
];

/// The signal chosen by an input's first byte, and the rest of the input.
fn split(data: &[u8]) -> Option<(Signal, &[u8])> {
    let (&sel, body) = data.split_first()?;
    Some((Signal::ALL[usize::from(sel) % 3], body))
}

fn round_trip<T: Message + Default>(msg: &T) {
    let once = msg.encode_to_vec();
    let again = T::decode(&once[..]).expect("what we encoded decodes");
    assert_eq!(
        again.encode_to_vec(),
        once,
        "encode/decode round trip is stable"
    );
}

/// OTLP protobuf decoding of the signal the first byte selects (as the receivers decode), the
/// receiver's validation, and a re-encoding round trip.
pub fn otlp_proto(data: &[u8]) {
    let Some((signal, body)) = split(data) else {
        return;
    };
    let decoded = match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(body).map(Telemetry::Traces),
        Signal::Metrics => ExportMetricsServiceRequest::decode(body).map(Telemetry::Metrics),
        Signal::Logs => ExportLogsServiceRequest::decode(body).map(Telemetry::Logs),
    };
    let Ok(mut t) = decoded else { return };
    match &t {
        Telemetry::Traces(r) => round_trip(r),
        Telemetry::Metrics(r) => round_trip(r),
        Telemetry::Logs(r) => round_trip(r),
    }
    let _ = t.item_count();
    let _ = validate::drop_invalid(&mut t);
}

/// OTLP JSON decoding of the signal the first byte selects, the receiver's validation, and
/// re-serialisation (what the file exporter writes).
pub fn otlp_json(data: &[u8]) {
    let Some((signal, body)) = split(data) else {
        return;
    };
    let decoded = match signal {
        Signal::Traces => serde_json::from_slice(body).map(Telemetry::Traces),
        Signal::Metrics => serde_json::from_slice(body).map(Telemetry::Metrics),
        Signal::Logs => serde_json::from_slice(body).map(Telemetry::Logs),
    };
    let Ok(mut t) = decoded else { return };
    let _ = validate::drop_invalid(&mut t);
    let _ = match &t {
        Telemetry::Traces(r) => serde_json::to_vec(r),
        Telemetry::Metrics(r) => serde_json::to_vec(r),
        Telemetry::Logs(r) => serde_json::to_vec(r),
    };
}

/// The Prometheus translation of any decoded metrics request (protobuf when the first byte is
/// even, JSON when odd), unvalidated: the translator under both delta modes and without
/// suffixes, then the scrape exporter's text and OpenMetrics rendering.
pub fn prometheus_translate(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let req = if sel % 2 == 0 {
        ExportMetricsServiceRequest::decode(body).ok()
    } else {
        serde_json::from_slice::<ExportMetricsServiceRequest>(body).ok()
    };
    let Some(req) = req else { return };
    let metrics = crate::telemetry::SelfMetrics::global();
    for (suffixes, delta) in [(true, DeltaMode::Accumulate), (false, DeltaMode::Drop)] {
        let opts = TranslateOptions {
            add_metric_suffixes: suffixes,
            delta_mode: delta,
            resource_to_telemetry: !suffixes,
            max_series_per_metric: 50,
            ..TranslateOptions::default()
        };
        let mut t = Translator::new(opts, DropCounters::new(metrics, "fuzz"));
        // Twice: the second pass meets the delta and cardinality state of the first.
        let _ = t.translate(&req);
        let _ = t.translate(&req);
    }
    let exporter = PrometheusExporter::new("fuzz", PrometheusExporterConfig::default());
    exporter.ingest(&req);
    let _ = exporter.render(false);
    let _ = exporter.render(true);
}

/// Config parsing of arbitrary text: YAML, `${env:...}` substitution, every component's parse
/// and the service graph checks.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let lookup = |name: &str| (name == "FUZZ").then(|| "127.0.0.1:4317".to_string());
    let _ = Config::from_docs(&[("fuzz.yaml".to_string(), text)], &lookup);
}

/// The persistent queue's segment reader on arbitrary bytes: every record it returns lies
/// inside the input, in order, without overlap, and re-encodes to exactly its bytes; damaged
/// regions are counted, never more than there are bytes.
pub fn wal_segment(data: &[u8]) {
    use crate::exporter::wal;
    let scan = wal::scan_segment(data);
    assert!(
        scan.skipped <= data.len() as u64,
        "skipped {}",
        scan.skipped
    );
    let mut end = 0u64;
    for f in &scan.records {
        assert!(f.offset >= end, "records overlap");
        end = f.offset + u64::from(f.len);
        assert!(end <= data.len() as u64, "record past the end");
        let bytes = &data[f.offset as usize..end as usize];
        let payload = &bytes[wal::HEADER_LEN + 1..];
        assert_eq!(
            wal::encode_record(f.seq, f.signal, payload),
            bytes,
            "a record re-encodes to its bytes"
        );
    }
}
