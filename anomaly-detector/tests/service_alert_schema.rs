//! Alert payloads and delivery:
//! * the Alertmanager body produced for firing and resolved anomalies validates against the
//!   `postableAlerts` schema of Alertmanager's v2 API (fixture
//!   `testdata/service_alertmanager_postable_alerts.schema.json`), with no key outside it;
//! * generic webhooks: the `X-Signature-256` HMAC verifies against the received body, 5xx is
//!   retried, a re-sent firing alert is deduplicated by fingerprint, a resolution goes out once.
//!
//! Run: `cargo test -p anomaly-detector --test service_alert_schema`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anomaly_detector::alert::{
    alertmanager_body, verify, AlertDispatcher, AlertEvent, AlertStatus,
};
use anomaly_detector::config::Config;
use anomaly_detector::engine::Tracker;
use anomaly_detector::metrics::Metrics;
use anomaly_detector::prometheus::{Labels, RangeSeries};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/service_alertmanager_postable_alerts.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn resolve<'a>(root: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/definitions/").expect("local ref");
            &root["definitions"][name]
        }
        None => s,
    }
}

/// Property names a schema (with its allOf parts) allows.
fn allowed_properties(root: &Value, s: &Value, out: &mut Vec<String>) {
    let s = resolve(root, s);
    if let Some(p) = s.get("properties").and_then(Value::as_object) {
        out.extend(p.keys().cloned());
    }
    for part in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        allowed_properties(root, part, out);
    }
}

/// A small validator for the schema subset used by the fixture: type, properties, required,
/// additionalProperties, items, allOf, $ref, format date-time and uri. In an object made of
/// `allOf` parts, keys outside every part are errors (Alertmanager would silently drop them).
fn validate(root: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let s = resolve(root, schema);
    if let Some(parts) = s.get("allOf").and_then(Value::as_array) {
        for part in parts {
            validate(root, part, v, at, errors);
        }
        if let Some(obj) = v.as_object() {
            let mut allowed = Vec::new();
            allowed_properties(root, s, &mut allowed);
            for k in obj.keys() {
                if !allowed.contains(k) {
                    errors.push(format!("{at}.{k}: not in the schema"));
                }
            }
        }
    }
    match s.get("type").and_then(Value::as_str) {
        Some("array") => match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    validate(root, &s["items"], item, &format!("{at}[{i}]"), errors);
                }
            }
            None => errors.push(format!("{at}: expected array")),
        },
        Some("object") => {
            let Some(obj) = v.as_object() else {
                errors.push(format!("{at}: expected object"));
                return;
            };
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !obj.contains_key(r.as_str().unwrap()) {
                    errors.push(format!("{at}: required {r} missing"));
                }
            }
            if let Some(add) = s.get("additionalProperties") {
                for (k, item) in obj {
                    validate(root, add, item, &format!("{at}.{k}"), errors);
                }
            }
        }
        Some("string") => match v.as_str() {
            Some(text) => match s.get("format").and_then(Value::as_str) {
                Some("date-time") if humantime::parse_rfc3339(text).is_err() => {
                    errors.push(format!("{at}: {text:?} is not RFC 3339"))
                }
                Some("uri") if reqwest::Url::parse(text).is_err() => {
                    errors.push(format!("{at}: {text:?} is not a URI"))
                }
                _ => {}
            },
            None => errors.push(format!("{at}: expected string")),
        },
        _ => {}
    }
    if let (Some(props), Some(obj)) = (
        s.get("properties").and_then(Value::as_object),
        v.as_object(),
    ) {
        for (k, ps) in props {
            if let Some(item) = obj.get(k) {
                validate(root, ps, item, &format!("{at}.{k}"), errors);
            }
        }
    }
}

fn check(body: &[u8]) -> Vec<String> {
    let root = schema();
    let v: Value = serde_json::from_slice(body).unwrap();
    let mut errors = Vec::new();
    validate(&root, &root["root"], &v, "$", &mut errors);
    errors
}

fn tracker() -> Tracker {
    let text = "prometheus: {url: 'http://127.0.0.1:9090'}\ndetections:\n  - name: latency_p95\n    query: q\n    step: 60s\n    history: 1d\n    labels: {team: shop}\n    annotations: {runbook_url: 'https://runbooks/x'}\n";
    let c = Config::from_yaml(text, Path::new("t.yaml"), |_| None).unwrap();
    c.validate().unwrap();
    let d = c.detections.into_iter().next().unwrap();
    Tracker::new(
        Arc::new(d),
        Duration::from_secs(60),
        "http://127.0.0.1:9090/graph?g0.expr=q".into(),
        "http://127.0.0.1:3000/d/a?var-service={service}".into(),
    )
}

fn series(from: i64, to: i64, f: impl Fn(i64) -> f64) -> RangeSeries {
    let labels: Labels = [
        ("job", "checkout"),
        ("http_route", "/api/orders"),
        ("__name__", "x"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    RangeSeries {
        labels,
        points: (from..=to).step_by(60).map(|t| (t, f(t))).collect(),
    }
}

fn normal(t: i64) -> f64 {
    0.2 + 0.05 * (2.0 * std::f64::consts::PI * (t % 3600) as f64 / 3600.0).sin()
        + 0.002 * ((t / 60) % 5) as f64
}

/// Firing, then resolved, events of one anomaly episode.
fn episode() -> (Vec<AlertEvent>, Vec<AlertEvent>) {
    let mut t = tracker();
    let start: i64 = 1_800_000_000; // a multiple of 60
    assert!(t
        .process(
            vec![series(start, start + 600 * 60, normal)],
            start + 600 * 60
        )
        .events
        .is_empty());
    let mut now = start + 600 * 60;
    let mut firing = Vec::new();
    for _ in 0..5 {
        now += 60;
        let out = t.process(vec![series(now, now, |_| 3.0)], now);
        firing.extend(
            out.events
                .into_iter()
                .filter(|e| e.status == AlertStatus::Firing),
        );
        if !firing.is_empty() {
            break;
        }
    }
    assert!(!firing.is_empty(), "the spike fires");
    let mut resolved = Vec::new();
    for _ in 0..200 {
        now += 60;
        let out = t.process(vec![series(now, now, normal)], now);
        resolved.extend(
            out.events
                .into_iter()
                .filter(|e| e.status == AlertStatus::Resolved),
        );
        if !resolved.is_empty() {
            break;
        }
    }
    assert!(!resolved.is_empty(), "the return to normal resolves");
    (firing, resolved)
}

#[test]
fn alertmanager_payload_matches_postable_alerts_schema() {
    let (firing, resolved) = episode();
    for batch in [&firing, &resolved] {
        let body = alertmanager_body(batch);
        let errors = check(&body);
        assert!(
            errors.is_empty(),
            "{errors:?}\n{}",
            String::from_utf8_lossy(&body)
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        let a = &v[0];
        for key in [
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
        ] {
            assert!(a.get(key).is_some(), "{key} present");
        }
        let labels = a["labels"].as_object().unwrap();
        for (k, val) in labels {
            assert!(
                anomaly_detector::config::valid_label_name(k),
                "label name {k}"
            );
            assert!(!val.as_str().unwrap().is_empty(), "label {k} has a value");
        }
        assert_eq!(labels["alertname"], "AnomalyDetected");
        assert_eq!(labels["team"], "shop");
        assert_eq!(labels["http_route"], "/api/orders");
        for key in [
            "summary",
            "description",
            "score",
            "model",
            "dashboard",
            "runbook_url",
        ] {
            assert!(a["annotations"][key].is_string(), "annotation {key}");
        }
        assert_eq!(
            a["annotations"]["dashboard"],
            "http://127.0.0.1:3000/d/a?var-service=checkout"
        );
    }
    // Firing alerts end in the future (4 intervals); a resolution ends now, after it started.
    let f = &firing[0].alert;
    let r = &resolved[0].alert;
    let ts = |s: &str| humantime::parse_rfc3339(s).unwrap();
    assert!(ts(&f.ends_at) > ts(&f.starts_at));
    assert!(ts(&r.ends_at) > ts(&r.starts_at));
    assert_eq!(f.starts_at, r.starts_at);
    assert_eq!(firing[0].fingerprint, resolved[0].fingerprint);
    // A schema violation is caught (the validator can fail).
    let errors = check(br#"[{"labels": {"a": 1}, "startsAt": "yesterday", "extra": true}]"#);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        !check(br#"[{"annotations": {}}]"#).is_empty(),
        "labels are required"
    );
}

/// Deliveries as (signature header, body).
type Deliveries = Arc<Mutex<Vec<(Option<String>, Bytes)>>>;

#[derive(Clone, Default)]
struct Sink {
    received: Deliveries,
    fail_first: Arc<Mutex<u32>>,
}

async fn start_sink(sink: Sink) -> String {
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(s): State<Sink>, headers: HeaderMap, body: Bytes| async move {
                    let mut fail = s.fail_first.lock().unwrap();
                    if *fail > 0 {
                        *fail -= 1;
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let sig = headers
                        .get("x-signature-256")
                        .map(|v| v.to_str().unwrap().to_string());
                    s.received.lock().unwrap().push((sig, body));
                    StatusCode::OK
                },
            ),
        )
        .with_state(sink);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hook")
}

async fn wait_count(sink: &Sink, n: usize) {
    for _ in 0..100 {
        if sink.received.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "webhook received {} deliveries, expected {n}",
        sink.received.lock().unwrap().len()
    );
}

#[tokio::test]
async fn webhook_is_signed_retried_and_deduplicated() {
    let (firing, resolved) = episode();
    let sink = Sink::default();
    *sink.fail_first.lock().unwrap() = 2;
    let url = start_sink(sink.clone()).await;
    let text = format!(
        "prometheus: {{url: 'http://127.0.0.1:9090'}}\nwebhooks:\n  - name: hook\n    url: '{url}'\n    secret: 's3cret'\n    retry: {{max_attempts: 4, initial_backoff: 10ms, max_backoff: 50ms}}\ndetections: [{{name: d, query: q}}]\n"
    );
    let config = Config::from_yaml(&text, Path::new("t.yaml"), |_| None).unwrap();
    config.validate().unwrap();
    let metrics = Arc::new(Metrics::default());
    let mut tasks = JoinSet::new();
    let dispatcher = AlertDispatcher::start(
        None,
        &config.webhooks,
        metrics.clone(),
        &mut tasks,
        CancellationToken::new(),
    )
    .unwrap();
    let route = |events: &[AlertEvent]| -> Vec<AlertEvent> {
        events
            .iter()
            .cloned()
            .map(|mut e| {
                e.webhooks = Arc::from(vec!["hook".to_string()]);
                e
            })
            .collect()
    };
    // Firing three times (as every cycle re-sends it): delivered once despite two 503s.
    for _ in 0..3 {
        dispatcher.dispatch(&route(&firing));
    }
    wait_count(&sink, 1).await;
    dispatcher.dispatch(&route(&resolved));
    dispatcher.dispatch(&route(&resolved));
    wait_count(&sink, 2).await;
    drop(dispatcher);
    while tasks.join_next().await.is_some() {}
    let received = sink.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "one firing and one resolved delivery");
    for (i, (sig, body)) in received.iter().enumerate() {
        let sig = sig.as_deref().expect("signature header");
        assert!(verify(b"s3cret", body, sig), "signature verifies");
        assert!(!verify(b"wrong", body, sig));
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["receiver"], "hook");
        assert_eq!(v["status"], if i == 0 { "firing" } else { "resolved" });
        let a = &v["alerts"][0];
        assert_eq!(a["labels"]["alertname"], "AnomalyDetected");
        assert_eq!(a["fingerprint"], firing[0].fingerprint);
        assert!(a["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("vs expected"));
        assert!(a["startsAt"].is_string() && a["endsAt"].is_string());
    }
    let text = metrics.render(&anomaly_detector::state::Store::new(["d"], 1));
    assert!(
        text.contains("anomaly_detector_alerts_sent_total{sink=\"hook\",status=\"firing\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("anomaly_detector_alerts_sent_total{sink=\"hook\",status=\"resolved\"} 1"),
        "{text}"
    );
}
