//! The `file` exporter: OTLP JSON lines that read back into the same batches, rotation by size
//! with pruned backups, the proto format, and the flush at shutdown.
//!
//! Run: `cargo test -p otel-collector --test export_file`.

mod export_support;

use export_support::*;
use otel_collector::exporter::file::read_json_lines;
use otel_collector::exporter::start;
use otel_collector::pipeline::{Signal, Telemetry};
use std::time::Duration;

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("otelcol-export-file-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn stop(e: &otel_collector::exporter::RunningExporter) {
    e.lifecycle
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn json_lines_round_trip_every_signal() {
    let dir = tempdir("json");
    let path = dir.join("out.jsonl");
    let cfg = exporter_config("file", &format!("path: {}", path.display()));
    let e = start("file/json", &cfg, &ctx("file/json")).await.unwrap();
    let batches = [spans("s", 3), points(2), logs(4), spans("t", 1)];
    for b in &batches {
        e.consumer.consume(b.clone()).await.unwrap();
    }
    stop(&e).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "one line per batch");
    // Upstream OTLP JSON: camelCase keys, hex ids.
    assert!(lines[0].starts_with("{\"resourceSpans\":"), "{}", lines[0]);
    assert!(
        lines[0].contains("\"traceId\":\"07070707070707070707070707070707\""),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("{\"resourceMetrics\":"),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with("{\"resourceLogs\":"), "{}", lines[2]);
    // Each line parses back to the batch that was written.
    let back: Vec<Telemetry> = lines
        .iter()
        .zip([
            Signal::Traces,
            Signal::Metrics,
            Signal::Logs,
            Signal::Traces,
        ])
        .map(|(l, s)| {
            let f = dir.join("one.jsonl");
            std::fs::write(&f, l).unwrap();
            read_json_lines(&f, s).unwrap().remove(0)
        })
        .collect();
    assert_eq!(back, batches.to_vec());
}

#[tokio::test]
async fn rotation_keeps_max_backups_and_loses_no_line() {
    let dir = tempdir("rotate");
    let path = dir.join("traces.jsonl");
    let cfg = exporter_config(
        "file",
        &format!(
            "path: {}\nrotation: {{max_megabytes: 1, max_backups: 2}}",
            path.display()
        ),
    );
    let e = start("file/rotate", &cfg, &ctx("file/rotate"))
        .await
        .unwrap();
    // ~200 KB per batch: 20 batches = ~4 MB -> several rotations.
    for i in 0..20 {
        e.consumer
            .consume(spans(&format!("r{i}"), 1500))
            .await
            .unwrap();
    }
    stop(&e).await;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|d| d.unwrap().path())
        .collect();
    files.sort();
    let backups: Vec<_> = files.iter().filter(|p| **p != path).collect();
    assert_eq!(backups.len(), 2, "max_backups kept: {files:?}");
    for b in &backups {
        let name = b.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("traces-") && name.ends_with(".jsonl"),
            "{name}"
        );
    }
    for f in &files {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(
            len <= 1024 * 1024,
            "{f:?} is {len} bytes, over max_megabytes"
        );
        // Every file holds whole lines that parse.
        let batches = read_json_lines(f, Signal::Traces).unwrap();
        assert!(!batches.is_empty());
        assert!(batches.iter().all(|b| b.item_count() == 1500));
    }
    // The newest lines are in the current file; the last batch written is its last line.
    let current = read_json_lines(&path, Signal::Traces).unwrap();
    let Telemetry::Traces(last) = current.last().unwrap() else {
        panic!()
    };
    assert_eq!(last.resource_spans[0].scope_spans[0].spans[0].name, "r19-0");
}

#[tokio::test]
async fn proto_format_is_length_prefixed() {
    use prost::Message as _;
    let dir = tempdir("proto");
    let path = dir.join("out.bin");
    let cfg = exporter_config("file", &format!("path: {}\nformat: proto", path.display()));
    let e = start("file/proto", &cfg, &ctx("file/proto")).await.unwrap();
    e.consumer.consume(spans("p", 5)).await.unwrap();
    e.consumer.consume(spans("q", 2)).await.unwrap();
    stop(&e).await;
    let bytes = std::fs::read(&path).unwrap();
    let mut rest = &bytes[..];
    let mut counts = vec![];
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let req =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                &rest[4..4 + len],
            )
            .unwrap();
        counts.push(Telemetry::Traces(req).item_count());
        rest = &rest[4 + len..];
    }
    assert_eq!(counts, vec![5, 2]);
}

#[tokio::test]
async fn unwritable_path_fails_at_start_naming_it() {
    let dir = tempdir("bad");
    let blocker = dir.join("file-not-dir");
    std::fs::write(&blocker, "x").unwrap();
    let cfg = exporter_config("file", &format!("path: {}/out.jsonl", blocker.display()));
    let err = start("file/bad", &cfg, &ctx("file/bad")).await.unwrap_err();
    assert!(err.to_string().contains("file-not-dir"), "{err}");
}
