//! Bad input over the wire: truncated protobuf, wrong content type, gzip bomb, oversize body,
//! invalid UTF-8 in JSON, empty request — each gets a clear 4xx (HTTP) or gRPC status, and the
//! collector keeps serving (a good request succeeds after each); a malformed exponential histogram
//! is rejected as `partial_success` and the next metric still arrives. Also: memory_limiter refusals
//! reach clients as HTTP 503 + Retry-After and gRPC UNAVAILABLE (both retryable for every OTLP
//! client), and the receiver's self-metrics count accepted items.
//!
//! Needs `make deps` (Python grpcio for raw gRPC frames).
//! Run: `cargo test -p otel-collector --test core_bad_input`.

mod core_support;

use core_support::Collector;
use std::io::Write;
use std::process::Command;
use test_support::{free_port, python, workspace_root, TempDir};

const GOOD_JSON: &str = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"good","kind":1,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#;

fn config(grpc: u16, http: u16, metrics: u16, processors: &str, extra: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        max_recv_msg_size_mib: 1
      http:
        endpoint: 127.0.0.1:{http}
        max_request_body_size: 1048576
processors:
  memory_limiter:
    check_interval: 100ms
    limit_mib: 2
    spike_limit_mib: 1
  batch:
exporters:
  debug:
    verbosity: basic
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces: {{receivers: [otlp], processors: [{processors}], exporters: [debug]}}
{extra}"#
    )
}

/// The collector's own metrics page on `port`, as text.
async fn self_metrics(c: &reqwest::Client, port: u16) -> String {
    c.get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// (name, content type, content encoding, body, expected status, expected text in the answer).
type Case<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, u16, &'a str);

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn post(
    c: &reqwest::Client,
    url: &str,
    ct: &str,
    enc: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, Option<String>) {
    let mut r = c.post(url).header("content-type", ct);
    if let Some(e) = enc {
        r = r.header("content-encoding", e);
    }
    let resp = r.body(body).send().await.expect("collector answers");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = String::from_utf8_lossy(&resp.bytes().await.unwrap_or_default()).to_string();
    (status, text, retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_and_grpc_input_gets_clear_errors_and_collector_keeps_serving() {
    let py = python();
    let dir = TempDir::new("bad-input");
    let (g, h, m) = (free_port(), free_port(), free_port());
    let mut col = Collector::start(&dir, "bad", &config(g, h, m, "batch", ""), &[g, h, m]);
    let c = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{h}/v1/traces");
    let good = || post(&c, &url, "application/json", None, GOOD_JSON.into());

    // A valid protobuf body to truncate: the JSON request re-encoded.
    let req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest =
        serde_json::from_str(GOOD_JSON).unwrap();
    let pb = prost::Message::encode_to_vec(&req);

    let mut bad_utf8 = GOOD_JSON.as_bytes().to_vec();
    let at = GOOD_JSON.find("good").unwrap();
    bad_utf8[at] = 0xc3;
    bad_utf8[at + 1] = 0x28;

    let cases: Vec<Case<'_>> = vec![
        (
            "truncated protobuf",
            "application/x-protobuf",
            None,
            pb[..pb.len() - 3].to_vec(),
            400,
            "invalid protobuf",
        ),
        (
            "wrong content type",
            "text/plain",
            None,
            GOOD_JSON.into(),
            415,
            "unsupported content type",
        ),
        (
            "gzip bomb",
            "application/x-protobuf",
            Some("gzip"),
            gzip(&vec![0u8; 64 << 20]),
            413,
            "decompressed request body",
        ),
        (
            "oversize body",
            "application/x-protobuf",
            None,
            vec![0x0a; 2 << 20],
            413,
            "max_request_body_size",
        ),
        (
            "invalid UTF-8 in JSON",
            "application/json",
            None,
            bad_utf8,
            400,
            "invalid OTLP JSON",
        ),
        (
            "empty request",
            "application/json",
            None,
            Vec::new(),
            400,
            "empty request body",
        ),
        (
            "not gzip",
            "application/json",
            Some("gzip"),
            GOOD_JSON.into(),
            400,
            "cannot decompress",
        ),
    ];
    for (name, ct, enc, body, want, msg) in cases {
        let (status, text, _) = post(&c, &url, ct, enc, body).await;
        assert_eq!(status, want, "{name}: {text}");
        assert!(
            text.contains(msg),
            "{name}: answer should say `{msg}`: {text}"
        );
        let (status, text, _) = good().await;
        assert_eq!(status, 200, "good request after {name}: {text}");
    }
    assert!(col.running(), "collector died:\n{}", col.logs());

    let out = Command::new(&py)
        .arg(workspace_root().join("otel-collector/tests/python/core_bad_grpc.py"))
        .arg(format!("127.0.0.1:{g}"))
        .output()
        .expect("run the Python gRPC client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let codes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for bad in ["truncated", "garbage"] {
        let code = codes[bad].as_str().unwrap_or_default();
        assert!(
            code == "INTERNAL" || code == "INVALID_ARGUMENT",
            "{bad}: {code}"
        );
    }
    // tonic answers OUT_OF_RANGE for a message over max_decoding_message_size (Go gRPC says
    // RESOURCE_EXHAUSTED); either way a clear status, and the server keeps serving.
    assert_eq!(codes["oversize"], "OUT_OF_RANGE", "{codes}");
    assert_eq!(
        codes["empty"], "OK",
        "an empty message is a valid empty export request: {codes}"
    );
    assert_eq!(codes["unknown_service"], "UNIMPLEMENTED", "{codes}");
    for after in [
        "after_truncated",
        "after_garbage",
        "after_oversize",
        "after_all",
    ] {
        assert_eq!(codes[after], "OK", "{after}: {codes}");
    }

    // Self-metrics: every good span was counted as accepted, per transport.
    let text = self_metrics(&c, m).await;
    assert!(
        text.contains(
            r#"otelcol_receiver_accepted_spans_total{receiver="otlp",transport="http"} 7"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"otelcol_receiver_accepted_spans_total{receiver="otlp",transport="grpc"} 4"#
        ),
        "{text}"
    );
    let status = col.terminate();
    assert!(status.success(), "exit {status}:\n{}", col.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limiter_refusal_reaches_clients_as_503_and_unavailable() {
    let py = python();
    let dir = TempDir::new("memlimit");
    let (g, h, m) = (free_port(), free_port(), free_port());
    let mut col = Collector::start(
        &dir,
        "memlimit",
        &config(g, h, m, "memory_limiter, batch", ""),
        &[g, h],
    );
    let c = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{h}/v1/traces");
    let (status, text, retry) = post(&c, &url, "application/json", None, GOOD_JSON.into()).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("soft limit"), "{text}");
    assert_eq!(retry.as_deref(), Some("1"));
    let out = Command::new(&py)
        .arg(workspace_root().join("otel-collector/tests/python/core_bad_grpc.py"))
        .arg(format!("127.0.0.1:{g}"))
        .output()
        .expect("run the Python gRPC client");
    let codes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(codes["after_all"], "UNAVAILABLE", "{codes}");
    assert!(col.terminate().success(), "{}", col.logs());
}

/// Invalid spans (wrong-length or all-zero ids) are taken out of a request: the sender gets
/// `partial_success` with the count, the valid spans go on, and the refused counter counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_spans_get_partial_success_over_grpc_and_the_rest_arrives() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let dir = TempDir::new("bad-partial");
    let (g, h, m) = (free_port(), free_port(), free_port());
    let mut col = Collector::start(&dir, "partial", &config(g, h, m, "batch", ""), &[g, h, m]);
    let span = |name: &str, trace_id: Vec<u8>, span_id: Vec<u8>| Span {
        name: name.into(),
        trace_id,
        span_id,
        ..Default::default()
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    span("good-1", vec![7; 16], vec![1; 8]),
                    span("empty-trace-id", vec![], vec![2; 8]),
                    span("good-2", vec![7; 16], vec![3; 8]),
                    span("long-span-id", vec![7; 16], vec![4; 9]),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{g}"))
        .await
        .unwrap();
    let answer = client.export(req).await.unwrap().into_inner();
    let partial = answer.partial_success.expect("partial_success is set");
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial
            .error_message
            .contains("span `empty-trace-id`: trace_id has 0 bytes, must be 16"),
        "{}",
        partial.error_message
    );
    let c = reqwest::Client::new();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = self_metrics(&c, m).await;
        let accepted = text.contains(
            r#"otelcol_receiver_accepted_spans_total{receiver="otlp",transport="grpc"} 2"#,
        );
        let refused = text.contains(
            r#"otelcol_receiver_refused_spans_total{receiver="otlp",transport="grpc"} 2"#,
        );
        let sent = text.contains(r#"otelcol_exporter_sent_spans_total{exporter="debug"} 2"#);
        if accepted && refused && sent {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "want 2 accepted, 2 refused, 2 sent:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(col.terminate().success(), "{}", col.logs());
}

/// A metrics request whose exponential histogram has bucket indexes beyond `i32::MAX` (offset
/// near the limit, many buckets), then a valid gauge.
fn exp_histogram_requests() -> (
    opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
    opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
) {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, number_data_point, ExponentialHistogram, ExponentialHistogramDataPoint,
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let wrap = |m: Metric| ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![m],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let bad = wrap(Metric {
        name: "evil.latency".into(),
        unit: "s".into(),
        data: Some(Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                count: 1000,
                time_unix_nano: now,
                positive: Some(Buckets {
                    offset: i32::MAX - 10,
                    bucket_counts: vec![1; 1000],
                }),
                ..Default::default()
            }],
            aggregation_temporality: 2,
        })),
        ..Default::default()
    });
    let good = wrap(Metric {
        name: "after.evil".into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                value: Some(number_data_point::Value::AsInt(42)),
                time_unix_nano: now,
                ..Default::default()
            }],
        })),
        ..Default::default()
    });
    (bad, good)
}

/// The malformed exponential histogram over OTLP/gRPC and OTLP/HTTP is rejected as
/// `partial_success` (it used to overflow `offset + len` in the Prometheus translation, panicking
/// the batch processor's timer task so nothing was flushed any more); the valid metric sent next
/// reaches the exporter's scrape page, and nothing panicked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_exponential_histogram_is_rejected_and_the_next_metric_arrives() {
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
    let dir = TempDir::new("bad-exphist");
    let (g, h, m, p) = (free_port(), free_port(), free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{g}"}}
      http: {{endpoint: "127.0.0.1:{h}"}}
processors:
  batch: {{timeout: 50ms}}
exporters:
  prometheus: {{endpoint: "127.0.0.1:{p}"}}
service:
  telemetry:
    metrics:
      address: "127.0.0.1:{m}"
  pipelines:
    metrics: {{receivers: [otlp], processors: [batch], exporters: [prometheus]}}
"#
    );
    let mut col = Collector::start(&dir, "exphist", &config, &[g, h, m, p]);
    let (bad, good) = exp_histogram_requests();
    let mut client = MetricsServiceClient::connect(format!("http://127.0.0.1:{g}"))
        .await
        .unwrap();
    let answer = client.export(bad.clone()).await.unwrap().into_inner();
    let partial = answer.partial_success.expect("partial_success over gRPC");
    assert_eq!(partial.rejected_data_points, 1);
    assert!(
        partial.error_message.contains("evil.latency") && partial.error_message.contains("2^31-1"),
        "{}",
        partial.error_message
    );
    let c = reqwest::Client::new();
    let resp = c
        .post(format!("http://127.0.0.1:{h}/v1/metrics"))
        .header("content-type", "application/x-protobuf")
        .body(prost::Message::encode_to_vec(&bad))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: ExportMetricsServiceResponse =
        prost::Message::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(
        body.partial_success.map(|p| p.rejected_data_points),
        Some(1)
    );

    client.export(good).await.unwrap();
    let scrape = format!("http://127.0.0.1:{p}/metrics");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = c.get(&scrape).send().await.unwrap().text().await.unwrap();
        if text.contains("after_evil 42") {
            assert!(!text.contains("evil_latency"), "{text}");
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the valid metric never reached the exporter:\n{text}\n{}",
            col.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let own = self_metrics(&c, m).await;
    assert!(!own.contains("otelcol_component_panics_total"), "{own}");
    assert!(
        own.contains(
            r#"otelcol_receiver_refused_metric_points_total{receiver="otlp",transport="grpc"} 1"#
        ),
        "{own}"
    );
    assert!(col.running(), "collector died:\n{}", col.logs());
    assert!(col.terminate().success(), "{}", col.logs());
}
