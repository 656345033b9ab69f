//! Receiver TLS and authentication against the real binary, each case over gRPC and HTTP:
//! right and wrong CA, plain text to a TLS port, an expired server certificate, mutual TLS
//! (no client certificate, one from another CA, an expired one, a valid one), a certificate
//! rotated on disk and picked up without restart; bearer token (none, wrong, right; counted, never
//! logged) and basic auth (htpasswd with bcrypt), and the exporters signing their requests with
//! both authenticators' client sides (a rejected exporter credential counted, not retried).
//!
//! Certificates are made with `openssl` (Debian package, `make deps`). Run:
//! `cargo test -p otel-collector --test sec_tls_auth`.

mod core_support;

use core_support::Collector;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use test_support::tls::{CertPair, TestCerts};
use test_support::{free_port, TempDir};

/// How a client's attempt ended.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Accepted.
    Ok,
    /// gRPC status code or HTTP status.
    Refused(String),
    /// No TLS session (or no connection): the error text.
    NoSession(String),
}

impl Outcome {
    fn no_session(&self) -> bool {
        matches!(self, Outcome::NoSession(_))
    }
}

/// TLS settings of a test client.
#[derive(Default, Clone)]
struct Client<'a> {
    /// CA to trust; `None`: plain text.
    ca: Option<&'a Path>,
    /// Client certificate.
    identity: Option<&'a CertPair>,
    /// `Authorization` header value.
    authorization: Option<&'a str>,
}

fn request(name: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    name: name.into(),
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One export over gRPC on a fresh connection.
async fn grpc(port: u16, c: &Client<'_>) -> Outcome {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let scheme = if c.ca.is_some() { "https" } else { "http" };
    let mut ep = Endpoint::from_shared(format!("{scheme}://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    if let Some(ca) = c.ca {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
            .domain_name("127.0.0.1");
        if let Some(id) = c.identity {
            tls = tls.identity(Identity::from_pem(
                std::fs::read(&id.cert).unwrap(),
                std::fs::read(&id.key).unwrap(),
            ));
        }
        ep = ep.tls_config(tls).unwrap();
    }
    let channel = match ep.connect().await {
        Ok(ch) => ch,
        Err(e) => return Outcome::NoSession(format!("{e:?}")),
    };
    let mut req = tonic::Request::new(request("grpc-span"));
    if let Some(a) = c.authorization {
        req.metadata_mut()
            .insert("authorization", a.parse().unwrap());
    }
    match TraceServiceClient::new(channel).export(req).await {
        Ok(_) => Outcome::Ok,
        // A handshake the server refuses after it completed on the client's side (TLS 1.3
        // client certificates), or TLS alert bytes where HTTP/2 was expected (plain text to a
        // TLS port), show as a transport failure of the first call (which code depends on when
        // the client notices the alert).
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::Unknown
                    | tonic::Code::Unavailable
                    | tonic::Code::Internal
                    | tonic::Code::Cancelled
            ) =>
        {
            Outcome::NoSession(format!("{s:?}"))
        }
        Err(s) => Outcome::Refused(format!("{:?}", s.code())),
    }
}

/// One export over HTTP (protobuf) on a fresh connection.
async fn http(port: u16, c: &Client<'_>) -> Outcome {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0);
    let scheme = if let Some(ca) = c.ca {
        let certs = reqwest::Certificate::from_pem_bundle(&std::fs::read(ca).unwrap()).unwrap();
        b = b.tls_certs_only(certs);
        "https"
    } else {
        "http"
    };
    if let Some(id) = c.identity {
        let mut pem = std::fs::read(&id.cert).unwrap();
        pem.extend(std::fs::read(&id.key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    let mut rb = b
        .build()
        .unwrap()
        .post(format!("{scheme}://127.0.0.1:{port}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request("http-span").encode_to_vec());
    if let Some(a) = c.authorization {
        rb = rb.header("authorization", a);
    }
    match rb.send().await {
        Ok(r) if r.status().is_success() => Outcome::Ok,
        Ok(r) => Outcome::Refused(r.status().as_u16().to_string()),
        Err(e) => Outcome::NoSession(format!("{e:?}")),
    }
}

/// Both transports' outcomes for `c`.
async fn both(ports: (u16, u16), c: &Client<'_>) -> (Outcome, Outcome) {
    (grpc(ports.0, c).await, http(ports.1, c).await)
}

/// A collector whose otlp receiver has `grpc_extra` / `http_extra` settings (YAML flow
/// entries, like `tls: {...}`), writing spans to `dir/out.jsonl`.
fn start(dir: &Path, name: &str, extra: &str, extensions: &str) -> (Collector, (u16, u16), u16) {
    let (g, h, m) = (free_port(), free_port(), free_port());
    let out = dir.join(format!("{name}.jsonl"));
    let (ext_block, ext_list) = if extensions.is_empty() {
        (String::new(), "[]".to_string())
    } else {
        let ids: Vec<&str> = extensions
            .lines()
            .filter(|l| !l.starts_with(' ') && l.trim_end().ends_with(':'))
            .map(|l| l.trim_end().trim_end_matches(':'))
            .collect();
        (
            format!("extensions:\n{}\n", indent(extensions)),
            format!("[{}]", ids.join(", ")),
        )
    };
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{g}", {extra}}}
      http: {{endpoint: "127.0.0.1:{h}", {extra}}}
exporters:
  file:
    path: "{out}"
    flush_interval: 100ms
{ext_block}service:
  extensions: {ext_list}
  telemetry:
    metrics:
      address: "127.0.0.1:{m}"
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
"#,
        out = out.display()
    );
    let c = Collector::start(dir, name, &config, &[g, h, m]);
    (c, (g, h), m)
}

fn indent(block: &str) -> String {
    block
        .lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn tls_yaml(cert: &Path, key: &Path, more: &str) -> String {
    format!(
        "tls: {{cert_file: \"{}\", key_file: \"{}\"{more}}}",
        cert.display(),
        key.display()
    )
}

/// The collector's own metrics: `name{labels}` → value.
async fn self_metrics(port: u16) -> BTreeMap<String, f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("self-metrics")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// Sum of the series of `name` whose labels contain every `needle`.
fn sum(m: &BTreeMap<String, f64>, name: &str, needles: &[&str]) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            k.starts_with(&format!("{name}{{")) && needles.iter().all(|n| k.contains(n))
        })
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test]
async fn tls_right_ca_passes_wrong_ca_and_plain_text_fail() {
    let dir = TempDir::new("sec-tls");
    let certs = TestCerts::create_named(&dir, "srv-", "IP:127.0.0.1", 1);
    let other = TestCerts::create_named(&dir, "other-", "IP:127.0.0.1", 1);
    let extra = tls_yaml(&certs.cert, &certs.key, "");
    let (_c, ports, metrics) = start(&dir, "tls", &extra, "");
    let right = Client {
        ca: Some(&certs.ca),
        ..Default::default()
    };
    assert_eq!(both(ports, &right).await, (Outcome::Ok, Outcome::Ok));
    let wrong = Client {
        ca: Some(&other.ca),
        ..Default::default()
    };
    let (g, h) = both(ports, &wrong).await;
    assert!(g.no_session() && h.no_session(), "wrong CA: {g:?} / {h:?}");
    let text = format!("{g:?} {h:?}");
    assert!(text.contains("UnknownIssuer"), "{text}");
    let (g, h) = both(ports, &Client::default()).await;
    assert!(g.no_session(), "plain text to the TLS gRPC port: {g:?}");
    assert!(h.no_session(), "plain text to the TLS HTTP port: {h:?}");
    let m = self_metrics(metrics).await;
    let failures = sum(&m, "otelcol_receiver_tls_handshake_failures_total", &[]);
    assert!(failures >= 4.0, "handshake failures counted: {failures}");
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused_by_clients() {
    let dir = TempDir::new("sec-expired");
    let certs = TestCerts::create_named(&dir, "old-", "IP:127.0.0.1", -1);
    let (_c, ports, _) = start(&dir, "expired", &tls_yaml(&certs.cert, &certs.key, ""), "");
    let client = Client {
        ca: Some(&certs.ca),
        ..Default::default()
    };
    let (g, h) = both(ports, &client).await;
    assert!(g.no_session() && h.no_session(), "{g:?} / {h:?}");
    let text = format!("{g:?} {h:?}");
    assert_eq!(
        text.matches("Expired").count(),
        2,
        "both say expired: {text}"
    );
}

#[tokio::test]
async fn mtls_needs_a_valid_client_certificate_from_the_client_ca() {
    let dir = TempDir::new("sec-mtls");
    let certs = TestCerts::create_named(&dir, "srv-", "IP:127.0.0.1", 1);
    let other = TestCerts::create_named(&dir, "other-", "IP:127.0.0.1", 1);
    let good = certs.client_cert("client", 1);
    let expired = certs.client_cert("expired-client", -1);
    let foreign = other.client_cert("foreign-client", 1);
    let more = format!(", client_ca_file: \"{}\"", certs.ca.display());
    let (_c, ports, metrics) = start(&dir, "mtls", &tls_yaml(&certs.cert, &certs.key, &more), "");
    let with = |identity| Client {
        ca: Some(&certs.ca),
        identity,
        ..Default::default()
    };
    let (g, h) = both(ports, &with(None)).await;
    assert!(
        g.no_session() && h.no_session(),
        "no client cert: {g:?} / {h:?}"
    );
    let (g, h) = both(ports, &with(Some(&foreign))).await;
    assert!(
        g.no_session() && h.no_session(),
        "foreign client cert: {g:?} / {h:?}"
    );
    let (g, h) = both(ports, &with(Some(&expired))).await;
    assert!(
        g.no_session() && h.no_session(),
        "expired client cert: {g:?} / {h:?}"
    );
    assert_eq!(
        both(ports, &with(Some(&good))).await,
        (Outcome::Ok, Outcome::Ok)
    );
    let m = self_metrics(metrics).await;
    for t in ["grpc", "http"] {
        let f = sum(
            &m,
            "otelcol_receiver_tls_handshake_failures_total",
            &[&format!("transport=\"{t}\"")],
        );
        assert!(
            f >= 3.0,
            "{t}: three refused client certificates counted, got {f}"
        );
    }
}

/// Replaces `dst` by `src` atomically (write beside, rename).
fn install(src: &Path, dst: &Path) {
    let tmp = dst.with_extension("tmp");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dst).unwrap();
}

#[tokio::test]
async fn a_rotated_certificate_is_picked_up_without_restart() {
    let dir = TempDir::new("sec-rotate");
    let a = TestCerts::create_named(&dir, "a-", "IP:127.0.0.1", 1);
    let b = TestCerts::create_named(&dir, "b-", "IP:127.0.0.1", 1);
    let (cert, key) = (dir.join("live.pem"), dir.join("live.key"));
    install(&a.cert, &cert);
    install(&a.key, &key);
    let extra = tls_yaml(&cert, &key, ", reload_interval: 200ms");
    let (mut c, ports, metrics) = start(&dir, "rotate", &extra, "");
    let trust_a = Client {
        ca: Some(&a.ca),
        ..Default::default()
    };
    let trust_b = Client {
        ca: Some(&b.ca),
        ..Default::default()
    };
    assert_eq!(both(ports, &trust_a).await, (Outcome::Ok, Outcome::Ok));
    let (g, h) = both(ports, &trust_b).await;
    assert!(
        g.no_session() && h.no_session(),
        "before rotation: {g:?} / {h:?}"
    );
    // Key first, then certificate: a poll between the two sees a mismatched pair, which must
    // keep the old certificate rather than break the listener.
    install(&b.key, &key);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        both(ports, &trust_a).await,
        (Outcome::Ok, Outcome::Ok),
        "half-rotated: old pair still served"
    );
    install(&b.cert, &cert);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if both(ports, &trust_b).await == (Outcome::Ok, Outcome::Ok) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rotated certificate not picked up:\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (g, h) = both(ports, &trust_a).await;
    assert!(
        g.no_session() && h.no_session(),
        "after rotation the old CA no longer fits: {g:?} / {h:?}"
    );
    assert!(c.running());
    let m = self_metrics(metrics).await;
    assert!(sum(&m, "otelcol_receiver_tls_reloads_total", &["result=\"ok\""]) >= 2.0);
    assert!(
        sum(
            &m,
            "otelcol_receiver_tls_reloads_total",
            &["result=\"failed\""]
        ) >= 2.0,
        "the mismatched pair was refused on both transports"
    );
}

const TOKEN: &str = "s3cret-token-0123";

#[tokio::test]
async fn bearer_token_none_wrong_right_are_counted_and_never_logged() {
    let dir = TempDir::new("sec-bearer");
    let ext = format!("bearertokenauth:\n  token: \"{TOKEN}\"");
    let extra = "auth: {authenticator: bearertokenauth}";
    let (mut c, ports, metrics) = start(&dir, "bearer", extra, &ext);
    let none = Client::default();
    assert_eq!(
        both(ports, &none).await,
        (
            Outcome::Refused("Unauthenticated".into()),
            Outcome::Refused("401".into())
        )
    );
    let wrong_value = "Bearer wrong-guess-987";
    let wrong = Client {
        authorization: Some(wrong_value),
        ..Default::default()
    };
    assert_eq!(
        both(ports, &wrong).await,
        (
            Outcome::Refused("Unauthenticated".into()),
            Outcome::Refused("401".into())
        )
    );
    let right_value = format!("Bearer {TOKEN}");
    let right = Client {
        authorization: Some(&right_value),
        ..Default::default()
    };
    assert_eq!(both(ports, &right).await, (Outcome::Ok, Outcome::Ok));
    let m = self_metrics(metrics).await;
    for t in ["grpc", "http"] {
        let tr = format!("transport=\"{t}\"");
        assert_eq!(
            sum(
                &m,
                "otelcol_receiver_auth_failures_total",
                &[&tr, "reason=\"missing\""]
            ),
            1.0,
            "{t}"
        );
        assert_eq!(
            sum(
                &m,
                "otelcol_receiver_auth_failures_total",
                &[&tr, "reason=\"invalid\""]
            ),
            1.0,
            "{t}"
        );
        assert_eq!(
            sum(&m, "otelcol_receiver_auth_succeeded_total", &[&tr]),
            1.0,
            "{t}"
        );
        assert_eq!(
            sum(&m, "otelcol_receiver_accepted_spans_total", &[&tr]),
            1.0,
            "{t}: only the authenticated span"
        );
    }
    assert_eq!(c.terminate().code(), Some(0));
    let log = c.logs();
    assert!(
        log.contains("request refused"),
        "a failure is logged:\n{log}"
    );
    assert!(
        !log.contains(TOKEN) && !log.contains("wrong-guess-987"),
        "no secret in the log:\n{log}"
    );
}

/// An htpasswd line for `user` with a bcrypt hash (`openssl` has no bcrypt; the APR1 MD5 form
/// it makes is the other common one, checked as well).
fn htpasswd_apr1(dir: &Path, user: &str, password: &str) -> String {
    let out = std::process::Command::new(test_support::require_bin("openssl"))
        .current_dir(dir)
        .args(["passwd", "-apr1", password])
        .output()
        .unwrap();
    assert!(out.status.success());
    format!("{user}:{}", String::from_utf8(out.stdout).unwrap().trim())
}

#[tokio::test]
async fn basicauth_checks_htpasswd_and_exporters_sign_with_both_authenticators() {
    let dir = TempDir::new("sec-basic");
    let htpasswd = dir.join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("{}\n", htpasswd_apr1(&dir, "alice", "wonder-pass")),
    )
    .unwrap();
    // Collector B: gRPC checks a bearer token, HTTP checks basic auth.
    let (gb, hb, mb) = (free_port(), free_port(), free_port());
    let out = dir.join("b.jsonl");
    let b_config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{gb}", auth: {{authenticator: bearertokenauth}}}}
      http: {{endpoint: "127.0.0.1:{hb}", auth: {{authenticator: basicauth/server}}}}
exporters:
  file: {{path: "{out}", flush_interval: 100ms}}
extensions:
  bearertokenauth: {{token: "{TOKEN}"}}
  basicauth/server:
    htpasswd:
      file: "{htpasswd}"
      inline: |
        bob:plain-bob
service:
  extensions: [bearertokenauth, basicauth/server]
  telemetry: {{metrics: {{address: "127.0.0.1:{mb}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
"#,
        out = out.display(),
        htpasswd = htpasswd.display()
    );
    let _b = Collector::start(&dir, "b", &b_config, &[gb, hb, mb]);
    let basic = |u: &str, p: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    for (auth, want) in [
        (basic("alice", "wonder-pass"), Outcome::Ok),
        (basic("bob", "plain-bob"), Outcome::Ok),
        (basic("alice", "nope"), Outcome::Refused("401".into())),
        (format!("Bearer {TOKEN}"), Outcome::Refused("401".into())),
    ] {
        let c = Client {
            authorization: Some(&auth),
            ..Default::default()
        };
        assert_eq!(http(hb, &c).await, want, "{auth}");
    }
    // Collector A forwards over both exporters, each signing with a client authenticator.
    let (ga, ma) = (free_port(), free_port());
    let a_config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{ga}"}}
exporters:
  otlp:
    endpoint: "127.0.0.1:{gb}"
    tls: {{insecure: true}}
    auth: {{authenticator: bearertokenauth}}
  otlphttp:
    endpoint: "http://127.0.0.1:{hb}"
    auth: {{authenticator: basicauth/client}}
extensions:
  bearertokenauth: {{token: "{TOKEN}"}}
  basicauth/client:
    client_auth: {{username: alice, password: wonder-pass}}
service:
  extensions: [bearertokenauth, basicauth/client]
  telemetry: {{metrics: {{address: "127.0.0.1:{ma}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp, otlphttp]}}
"#
    );
    let _a = Collector::start(&dir, "a", &a_config, &[ga, ma]);
    assert_eq!(grpc(ga, &Client::default()).await, Outcome::Ok);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = self_metrics(mb).await;
        let g = sum(
            &m,
            "otelcol_receiver_accepted_spans_total",
            &["transport=\"grpc\""],
        );
        let h = sum(
            &m,
            "otelcol_receiver_accepted_spans_total",
            &["transport=\"http\""],
        );
        if g == 1.0 && h == 3.0 {
            // http: alice and bob directly, then A's otlphttp exporter.
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B did not get A's signed exports: grpc {g}, http {h}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A remote-write endpoint that accepts only `Bearer {TOKEN}`: counts accepted and refused requests.
async fn remote_write_requiring_token() -> (u16, std::sync::Arc<[std::sync::atomic::AtomicU32; 2]>)
{
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    let counts: Arc<[AtomicU32; 2]> = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let c = counts.clone();
    let app = axum::Router::new().route(
        "/api/v1/write",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let c = c.clone();
            async move {
                let ok = headers
                    .get("authorization")
                    .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
                c[usize::from(!ok)].fetch_add(1, Ordering::SeqCst);
                if ok {
                    axum::http::StatusCode::NO_CONTENT
                } else {
                    axum::http::StatusCode::UNAUTHORIZED
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_signs_with_its_authenticator_and_a_rejected_credential_is_counted_not_retried(
) {
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use std::sync::atomic::Ordering;
    let dir = TempDir::new("sec-prw-auth");
    let (rw, counts) = remote_write_requiring_token().await;
    let (g, m) = (free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{g}"}}
exporters:
  prometheusremotewrite/right:
    endpoint: "http://127.0.0.1:{rw}/api/v1/write"
    auth: {{authenticator: bearertokenauth/right}}
  prometheusremotewrite/wrong:
    endpoint: "http://127.0.0.1:{rw}/api/v1/write"
    auth: {{authenticator: bearertokenauth/wrong}}
extensions:
  bearertokenauth/right: {{token: "{TOKEN}"}}
  bearertokenauth/wrong: {{token: "wrong-guess-987"}}
service:
  extensions: [bearertokenauth/right, bearertokenauth/wrong]
  telemetry: {{metrics: {{address: "127.0.0.1:{m}"}}}}
  pipelines:
    metrics: {{receivers: [otlp], exporters: [prometheusremotewrite/right, prometheusremotewrite/wrong]}}
"#
    );
    let c = Collector::start(&dir, "prw-auth", &config, &[g, m]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let point = NumberDataPoint {
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsDouble(1.5)),
        ..Default::default()
    };
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue_depth".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![point],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut client = MetricsServiceClient::connect(format!("http://127.0.0.1:{g}"))
        .await
        .unwrap();
    client.export(req).await.expect("accepted by the receiver");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (sent, failed) = loop {
        let s = self_metrics(m).await;
        let sent = sum(
            &s,
            "otelcol_exporter_sent_metric_points_total",
            &["prometheusremotewrite/right"],
        );
        let failed = sum(
            &s,
            "otelcol_exporter_send_failed_metric_points_total",
            &["prometheusremotewrite/wrong"],
        );
        if sent >= 1.0 && failed >= 1.0 {
            break (sent, failed);
        }
        assert!(
            Instant::now() < deadline,
            "right exporter sent {sent}, wrong exporter failed {failed}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((sent, failed), (1.0, 1.0));
    // Give a retry (if there wrongly were one) time to arrive: 401 is permanent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        counts[0].load(Ordering::SeqCst),
        1,
        "the signed request arrived once"
    );
    assert_eq!(
        counts[1].load(Ordering::SeqCst),
        1,
        "the rejected credential was tried once, not retried"
    );
    let log = c.logs();
    assert!(log.contains("401"), "the rejection is logged:\n{log}");
    assert!(
        !log.contains(TOKEN) && !log.contains("wrong-guess-987"),
        "no secret in the log:\n{log}"
    );
}
