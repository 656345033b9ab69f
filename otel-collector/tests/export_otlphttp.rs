//! The `otlphttp` exporter against an axum OTLP/HTTP server on loopback: protobuf and JSON
//! bodies, gzip, per-signal URLs, 429 + Retry-After honoured, 4xx permanent.
//!
//! Run: `cargo test -p otel-collector --test export_otlphttp`.

mod export_support;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use export_support::*;
use otel_collector::exporter::start;
use prost::Message as _;
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Seen {
    /// (path, content-type, content-encoding, decoded body, arrival)
    requests: Vec<(String, String, String, Vec<u8>, Instant)>,
    /// Statuses to answer first, in order (then 200).
    script: Vec<(u16, Option<&'static str>)>,
}

type Shared = Arc<Mutex<Seen>>;

async fn handler(
    State(s): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let enc = h("content-encoding");
    let decoded = if enc == "gzip" {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    };
    let mut g = s.lock().unwrap();
    g.requests.push((
        uri.path().to_string(),
        h("content-type"),
        enc,
        decoded,
        Instant::now(),
    ));
    if g.script.is_empty() {
        return (StatusCode::OK, HeaderMap::new(), "").into_response();
    }
    let (code, retry_after) = g.script.remove(0);
    let mut hm = HeaderMap::new();
    if let Some(ra) = retry_after {
        hm.insert("retry-after", ra.parse().unwrap());
    }
    (StatusCode::from_u16(code).unwrap(), hm, "go away").into_response()
}

async fn server(script: Vec<(u16, Option<&'static str>)>) -> (String, Shared) {
    let shared: Shared = Arc::new(Mutex::new(Seen {
        script,
        ..Default::default()
    }));
    let app = axum::Router::new()
        .fallback(axum::routing::post(handler))
        .with_state(Arc::clone(&shared));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), shared)
}

#[tokio::test]
async fn protobuf_gzip_to_signal_paths() {
    let (url, seen) = server(vec![]).await;
    let cfg = exporter_config(
        "otlphttp",
        &format!(
            "endpoint: {url}\nlogs_endpoint: {url}/custom/logs\nsending_queue: {{enabled: false}}"
        ),
    );
    let e = start("otlphttp/pb", &cfg, &ctx("otlphttp/pb"))
        .await
        .unwrap();
    e.consumer.consume(spans("h", 4)).await.unwrap();
    e.consumer.consume(points(3)).await.unwrap();
    e.consumer.consume(logs(2)).await.unwrap();
    let g = seen.lock().unwrap();
    let paths: Vec<&str> = g.requests.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(paths, vec!["/v1/traces", "/v1/metrics", "/custom/logs"]);
    for r in &g.requests {
        assert_eq!(r.1, "application/x-protobuf");
        assert_eq!(r.2, "gzip", "gzip is the default");
    }
    let req = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
        &g.requests[0].3[..],
    )
    .unwrap();
    assert_eq!(
        otel_collector::pipeline::Telemetry::Traces(req),
        spans("h", 4)
    );
}

#[tokio::test]
async fn json_encoding_without_compression() {
    let (url, seen) = server(vec![]).await;
    let cfg = exporter_config(
        "otlphttp",
        &format!(
            "endpoint: {url}\nencoding: json\ncompression: none\nsending_queue: {{enabled: false}}"
        ),
    );
    let e = start("otlphttp/json", &cfg, &ctx("otlphttp/json"))
        .await
        .unwrap();
    e.consumer.consume(spans("j", 1)).await.unwrap();
    let g = seen.lock().unwrap();
    assert_eq!(g.requests[0].1, "application/json");
    assert_eq!(g.requests[0].2, "");
    let v: serde_json::Value = serde_json::from_slice(&g.requests[0].3).unwrap();
    assert_eq!(
        v["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"],
        "j-0"
    );
    assert_eq!(
        v["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"],
        "07070707070707070707070707070707"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_then_delivered() {
    let (url, seen) = server(vec![(429, Some("1")), (503, None)]).await;
    let cfg = exporter_config(
        "otlphttp",
        &format!("endpoint: {url}\nretry_on_failure: {{initial_interval: 10ms, max_interval: 20ms}}\nsending_queue: {{enabled: false}}"),
    );
    let e = start("otlphttp/retry", &cfg, &ctx("otlphttp/retry"))
        .await
        .unwrap();
    e.consumer.consume(spans("r", 2)).await.unwrap();
    let g = seen.lock().unwrap();
    assert_eq!(g.requests.len(), 3, "429, 503, then 200");
    let gap = g.requests[1].4 - g.requests[0].4;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 honoured, waited {gap:?}"
    );
}

#[tokio::test]
async fn client_errors_are_permanent() {
    let (url, seen) = server(vec![(400, None)]).await;
    let cfg = exporter_config(
        "otlphttp",
        &format!("endpoint: {url}\nretry_on_failure: {{initial_interval: 10ms}}\nsending_queue: {{enabled: false}}"),
    );
    let e = start("otlphttp/bad", &cfg, &ctx("otlphttp/bad"))
        .await
        .unwrap();
    let err = e.consumer.consume(spans("b", 2)).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("400"), "{err}");
    assert_eq!(seen.lock().unwrap().requests.len(), 1, "not retried");
}

/// An HTTPS OTLP server on 127.0.0.1 whose certificate is valid for `collector.test` only.
async fn tls_server(dir: &std::path::Path) -> (u16, Shared, test_support::tls::TestCerts) {
    let certs = test_support::tls::TestCerts::create_for(dir, "DNS:collector.test");
    let identity = tonic::transport::Identity::from_pem(
        std::fs::read(&certs.cert).unwrap(),
        std::fs::read(&certs.key).unwrap(),
    );
    let shared: Shared = Arc::new(Mutex::new(Seen::default()));
    let app = axum::Router::new()
        .fallback(axum::routing::post(handler))
        .with_state(Arc::clone(&shared));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let incoming = futures::stream::unfold(l, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    });
    let server = tonic::transport::Server::builder()
        .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
        .unwrap()
        .accept_http1(true)
        .add_routes(tonic::service::Routes::from(app))
        .serve_with_incoming(incoming);
    tokio::spawn(server);
    (port, shared, certs)
}

/// `tls.server_name_override` acts: connecting to 127.0.0.1, the certificate is checked against
/// the override (it was ignored, so the check failed against the IP); without it the same
/// endpoint fails, so the test would catch the key being ignored again.
#[tokio::test]
async fn tls_server_name_override_verifies_the_certificate_against_the_name() {
    let dir = test_support::TempDir::new("otlphttp-sni");
    let (port, seen, certs) = tls_server(&dir).await;
    let yaml = |extra: &str| {
        format!(
            "endpoint: https://127.0.0.1:{port}\ntls: {{ca_file: {:?}{extra}}}\nsending_queue: {{enabled: false}}\nretry_on_failure: {{enabled: false}}",
            certs.ca.display().to_string()
        )
    };
    let cfg = exporter_config("otlphttp", &yaml(", server_name_override: collector.test"));
    let e = start("otlphttp/sni", &cfg, &ctx("otlphttp/sni"))
        .await
        .unwrap();
    e.consumer.consume(spans("tls", 2)).await.unwrap();
    e.consumer.consume(logs(1)).await.unwrap();
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .requests
        .iter()
        .map(|r| r.0.clone())
        .collect();
    assert_eq!(paths, vec!["/v1/traces", "/v1/logs"]);

    let cfg = exporter_config("otlphttp", &yaml(""));
    let e = start("otlphttp/nosni", &cfg, &ctx("otlphttp/nosni"))
        .await
        .unwrap();
    let err = e.consumer.consume(spans("tls", 1)).await.unwrap_err();
    assert!(
        err.to_string().contains("127.0.0.1"),
        "without the override the certificate does not match: {err}"
    );
    assert_eq!(seen.lock().unwrap().requests.len(), 2);
}
