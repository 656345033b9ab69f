//! OTLP/HTTP handler tests through the router with `oneshot`: formats, compression, limits,
//! status codes.

use super::*;
use crate::pipeline::{ConsumeError, ConsumeFuture, Consumer};
use crate::receiver::otlp::HttpConfig;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyInner;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;
use tower::ServiceExt;

#[derive(Default)]
struct Sink {
    got: Mutex<Vec<Telemetry>>,
    refuse: bool,
}
impl Consumer for Sink {
    fn consume(&self, d: Telemetry) -> ConsumeFuture<'_> {
        let refuse = self.refuse;
        if !refuse {
            self.got.lock().unwrap().push(d);
        }
        Box::pin(async move {
            if refuse {
                Err(ConsumeError::Refused {
                    reason: "memory limit".into(),
                    retry_after: Duration::from_secs(3),
                })
            } else {
                Ok(())
            }
        })
    }
}

fn router(max_body: u64, refuse: bool) -> (Router, Arc<Sink>) {
    let sink = Arc::new(Sink {
        got: Mutex::new(Vec::new()),
        refuse,
    });
    let cfg = HttpConfig {
        max_request_body_size: max_body,
        ..Default::default()
    };
    let targets =
        Signal::ALL.map(|s| Some(SignalTarget::new(sink.clone(), "otlp/test", "http", s)));
    (app(&cfg, targets), sink)
}

async fn post(
    r: &Router,
    path: &str,
    ct: &str,
    enc: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut b = http::Request::post(path).header("content-type", ct);
    if let Some(e) = enc {
        b = b.header("content-encoding", e);
    }
    let resp = r
        .clone()
        .oneshot(b.body(axum::body::Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

const JSON_TRACE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
 "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
 "name":"op","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
 "attributes":[{"key":"n","value":{"intValue":"42"}},{"key":"s","value":{"stringValue":"v"}}]}]}]}]}"#;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn json_mapping_hex_ids_enum_ints_int64_strings() {
    let (r, sink) = router(1 << 20, false);
    let (status, headers, body) = post(
        &r,
        "/v1/traces",
        "application/json",
        None,
        JSON_TRACE.into(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/json");
    let got = sink.got.lock().unwrap();
    let Telemetry::Traces(t) = &got[0] else {
        unreachable!()
    };
    let span = &t.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(
        span.trace_id,
        vec![
            0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
            0xc6, 0x0c
        ]
    );
    assert_eq!(span.span_id.len(), 8);
    assert_eq!(span.kind, 2);
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(
        span.attributes[0].value.as_ref().unwrap().value,
        Some(AnyInner::IntValue(42))
    );
}

#[tokio::test]
async fn protobuf_gzip_and_zstd_bodies() {
    let (r, sink) = router(1 << 20, false);
    let req: ExportTraceServiceRequest = serde_json::from_str(JSON_TRACE).unwrap();
    let pb = req.encode_to_vec();
    let (status, headers, _) =
        post(&r, "/v1/traces", "application/x-protobuf", None, pb.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(
        post(
            &r,
            "/v1/traces",
            "application/x-protobuf",
            Some("gzip"),
            gzip(&pb)
        )
        .await
        .0,
        StatusCode::OK
    );
    let z = zstd::encode_all(&pb[..], 3).unwrap();
    assert_eq!(
        post(&r, "/v1/traces", "application/x-protobuf", Some("zstd"), z)
            .await
            .0,
        StatusCode::OK
    );
    let got = sink.got.lock().unwrap();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|t| *t == Telemetry::Traces(req.clone())),
        "decoded identically"
    );
}

#[tokio::test]
async fn bad_inputs_get_clear_4xx() {
    let (r, sink) = router(64 * 1024, false);
    let req: ExportTraceServiceRequest = serde_json::from_str(JSON_TRACE).unwrap();
    let pb = req.encode_to_vec();
    // truncated protobuf
    let (s, _, body) = post(
        &r,
        "/v1/traces",
        "application/x-protobuf",
        None,
        pb[..pb.len() / 2].to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let st = crate::rpc::Status::decode(&body[..]).unwrap();
    assert!(st.message.contains("invalid protobuf"), "{}", st.message);
    // wrong content type
    let (s, _, body) = post(&r, "/v1/traces", "text/plain", None, pb.clone()).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(String::from_utf8_lossy(&body).contains("application/x-protobuf"));
    // invalid UTF-8 in JSON
    let mut bad = JSON_TRACE.as_bytes().to_vec();
    let at = JSON_TRACE.find("\"op\"").unwrap() + 1;
    bad[at] = 0xff;
    let (s, _, body) = post(&r, "/v1/traces", "application/json", None, bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8_lossy(&body).contains("invalid OTLP JSON"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // empty body
    let (s, _, _) = post(&r, "/v1/logs", "application/json", None, vec![]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // oversize body
    let (s, _, _) = post(
        &r,
        "/v1/traces",
        "application/x-protobuf",
        None,
        vec![0u8; 65 * 1024],
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // gzip bomb: 64 MiB of zeros compresses to ~64 KiB... use 8 MiB → ~8 KiB, under the body limit
    let bomb = gzip(&vec![0u8; 8 << 20]);
    assert!(bomb.len() < 64 * 1024);
    let (s, _, body) = post(
        &r,
        "/v1/traces",
        "application/x-protobuf",
        Some("gzip"),
        bomb,
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(crate::rpc::Status::decode(&body[..])
        .unwrap()
        .message
        .contains("decompressed"));
    // not gzip at all
    let (s, _, _) = post(
        &r,
        "/v1/traces",
        "application/x-protobuf",
        Some("gzip"),
        pb.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // unknown encoding
    let (s, _, _) = post(
        &r,
        "/v1/traces",
        "application/x-protobuf",
        Some("br"),
        pb.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(sink.got.lock().unwrap().is_empty());
    // still serving
    assert_eq!(
        post(&r, "/v1/traces", "application/x-protobuf", None, pb)
            .await
            .0,
        StatusCode::OK
    );
}

/// A refusal is the answer `receiver::answer` decides: 503 + Retry-After, and a
/// `google.rpc.Status` body carrying UNAVAILABLE and the same delay as `RetryInfo`, on every
/// signal and in both body formats.
#[tokio::test]
async fn refusal_is_503_with_retry_after_on_every_signal() {
    let (r, _) = router(1 << 20, true);
    let bodies = [
        ("/v1/traces", JSON_TRACE.to_string()),
        (
            "/v1/metrics",
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","gauge":{"dataPoints":[{"asInt":"1"}]}}]}]}]}"#.to_string(),
        ),
        (
            "/v1/logs",
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hi"}}]}]}]}"#.to_string(),
        ),
    ];
    for (path, json) in bodies {
        let (s, h, body) = post(&r, path, "application/json", None, json.clone().into()).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(h["retry-after"], "3", "{path}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], 14, "{path}: {v}");
        assert_eq!(v["details"][0]["retryDelay"], "3s", "{path}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains("memory limit"),
            "{v}"
        );
        // The same answer as protobuf.
        let signal = Signal::ALL
            .into_iter()
            .find(|s| path.ends_with(s.as_str()))
            .unwrap();
        let pb = match decode(signal, Format::Json, json.as_bytes()).unwrap() {
            Telemetry::Traces(t) => t.encode_to_vec(),
            Telemetry::Metrics(m) => m.encode_to_vec(),
            Telemetry::Logs(l) => l.encode_to_vec(),
        };
        let (s, h, body) = post(&r, path, "application/x-protobuf", None, pb).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(h["retry-after"], "3", "{path}");
        let st = crate::rpc::Status::decode(&body[..]).unwrap();
        assert_eq!(st.code, 14);
        assert_eq!(
            crate::rpc::retry_delay_in_status(&body),
            Some(Duration::from_secs(3))
        );
    }
}

#[tokio::test]
async fn metrics_and_logs_json() {
    let (r, sink) = router(1 << 20, false);
    let m = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"c","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"asInt":"7","timeUnixNano":"1"}]}}]}]}]}"#;
    assert_eq!(
        post(&r, "/v1/metrics", "application/json", None, m.into())
            .await
            .0,
        StatusCode::OK
    );
    let l = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":9,"severityText":"INFO","body":{"stringValue":"hi"},"traceId":"5b8efff798038103d269b633813fc60c"}]}]}]}"#;
    assert_eq!(
        post(
            &r,
            "/v1/logs",
            "application/json; charset=utf-8",
            None,
            l.into()
        )
        .await
        .0,
        StatusCode::OK
    );
    let got = sink.got.lock().unwrap();
    assert_eq!(got[0].item_count(), 1);
    assert_eq!(got[1].item_count(), 1);
    let Telemetry::Logs(lr) = &got[1] else {
        unreachable!()
    };
    assert_eq!(
        lr.resource_logs[0].scope_logs[0].log_records[0].severity_number,
        9
    );
}

#[tokio::test]
async fn cors_preflight_allows_configured_origins_only() {
    let sink = Arc::new(Sink::default());
    let cfg = HttpConfig {
        cors: Some(crate::receiver::otlp::CorsConfig {
            allowed_origins: vec!["https://app.example.com".into()],
            allowed_headers: vec!["x-tenant".into()],
            max_age: Some(600),
        }),
        ..Default::default()
    };
    let targets =
        Signal::ALL.map(|s| Some(SignalTarget::new(sink.clone(), "otlp/cors", "http", s)));
    let r = app(&cfg, targets);
    let preflight = |origin: &str| {
        http::Request::builder()
            .method("OPTIONS")
            .uri("/v1/traces")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-tenant")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let ok = r
        .clone()
        .oneshot(preflight("https://app.example.com"))
        .await
        .unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(ok.headers()["access-control-max-age"], "600");
    let other = r
        .oneshot(preflight("https://evil.example.com"))
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_compressed_bodies_decompress_on_the_blocking_pool() {
    let (r, sink) = router(1 << 20, false);
    // ~700 KB of pseudo-random hex: compresses to well over the blocking threshold.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let text: String = (0..700_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_digit((x % 16) as u32, 16).unwrap_or('0')
        })
        .collect();
    let mut req: ExportTraceServiceRequest = serde_json::from_str(JSON_TRACE).unwrap();
    req.resource_spans[0].scope_spans[0].spans[0].name = text;
    let z = gzip(&req.encode_to_vec());
    assert!(z.len() > BLOCKING_DECOMPRESS_THRESHOLD, "{}", z.len());
    let (status, _, body) = post(&r, "/v1/traces", "application/x-protobuf", Some("gzip"), z).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(sink.got.lock().unwrap()[0], Telemetry::Traces(req));
    // Corrupt large body: a clear 400 from the same path.
    let garbage: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (status, _, _) = post(
        &r,
        "/v1/traces",
        "application/x-protobuf",
        Some("gzip"),
        garbage,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn invalid_spans_are_rejected_with_partial_success() {
    let (r, sink) = router(1 << 20, false);
    // One good span, one with a 15-byte trace id, one with an all-zero span id.
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"good"},
        {"traceId":"5b8efff798038103d269b633813fc6","spanId":"eee19b7ec3c1b174","name":"short"},
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"0000000000000000","name":"zero"}]}]}]}"#;
    let (status, _, resp) = post(&r, "/v1/traces", JSON, None, body.as_bytes().to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "2", "{v}");
    let msg = v["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(msg.contains("span `short`: trace_id has 15 bytes"), "{msg}");
    {
        let got = sink.got.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].item_count(), 1);
    }

    // Protobuf: the same answer as an ExportLogsServiceResponse; nothing valid left → no consume.
    let req = ExportLogsServiceRequest {
        resource_logs: vec![opentelemetry_proto::tonic::logs::v1::ResourceLogs {
            scope_logs: vec![opentelemetry_proto::tonic::logs::v1::ScopeLogs {
                log_records: vec![opentelemetry_proto::tonic::logs::v1::LogRecord {
                    trace_id: vec![1; 5],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (status, _, resp) = post(&r, "/v1/logs", PROTOBUF, None, req.encode_to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    let answer = ExportLogsServiceResponse::decode(&resp[..]).unwrap();
    assert_eq!(answer.partial_success.unwrap().rejected_log_records, 1);
    assert_eq!(
        sink.got.lock().unwrap().len(),
        1,
        "an emptied request is not consumed"
    );
}

/// Panics on the first request, takes the next ones.
#[derive(Default)]
struct PanicsOnce(std::sync::atomic::AtomicBool, Sink);
impl Consumer for PanicsOnce {
    fn consume(&self, d: Telemetry) -> ConsumeFuture<'_> {
        if !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
            panic!("pipeline bug");
        }
        self.1.consume(d)
    }
}

/// A panic in the pipelines answers that request with a permanent error (counted), and the
/// receiver serves the next one.
#[tokio::test]
async fn a_panic_in_the_pipeline_fails_that_request_only() {
    let sink = Arc::new(PanicsOnce::default());
    let targets =
        Signal::ALL.map(|s| Some(SignalTarget::new(sink.clone(), "otlp/panics", "http", s)));
    let r = app(&HttpConfig::default(), targets);
    let (s, _, body) = post(
        &r,
        "/v1/traces",
        "application/json",
        None,
        JSON_TRACE.into(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["message"].as_str().unwrap().contains("internal error")
            && v["message"].as_str().unwrap().contains("pipeline bug"),
        "{v}"
    );
    assert_eq!(
        crate::pipeline::contain::panics("receiver", "otlp/panics"),
        1
    );
    let (s, _, _) = post(
        &r,
        "/v1/traces",
        "application/json",
        None,
        JSON_TRACE.into(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(sink.1.got.lock().unwrap().len(), 1);
}
