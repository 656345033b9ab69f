//! End to end: the Python OpenTelemetry SDK (gRPC, HTTP/protobuf) and hand-written OTLP JSON
//! send all three signals to collector A (otlp receiver → batch → otlp exporter), which forwards
//! to collector B (otlp receiver → file exporter). Every span, data point and log record must
//! arrive in B's file with its attributes intact; both collectors stop with exit 0 on SIGTERM.
//!
//! Needs `make deps` (the Python venv). Run: `cargo test -p otel-collector --test core_pipeline`.

mod core_support;

use core_support::Collector;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use test_support::{free_port, python, workspace_root, TempDir};

/// The scalar of an OTLP JSON AnyValue as plain JSON (ints may be strings or numbers).
fn scalar(v: &Value) -> Value {
    if let Some(s) = v.get("stringValue") {
        return s.clone();
    }
    if let Some(b) = v.get("boolValue") {
        return b.clone();
    }
    if let Some(d) = v.get("doubleValue") {
        return d.clone();
    }
    if let Some(i) = v.get("intValue") {
        let n = match i {
            Value::String(s) => s.parse::<i64>().ok(),
            other => other.as_i64(),
        };
        return n.map(Value::from).unwrap_or(Value::Null);
    }
    Value::Null
}

fn attrs_of(item: &Value) -> Vec<(String, Value)> {
    item.get("attributes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|kv| {
                    (
                        kv["key"].as_str().unwrap_or_default().to_string(),
                        scalar(&kv["value"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn has_attrs(item: &Value, want: &Value) -> bool {
    let got = attrs_of(item);
    want.as_object().is_some_and(|w| {
        w.iter().all(|(k, v)| {
            got.iter().any(|(gk, gv)| {
                gk == k && (gv == v || gv.as_f64().is_some() && gv.as_f64() == v.as_f64())
            })
        })
    })
}

/// Items seen in the file: (resource service.name, item JSON) per signal.
#[derive(Default)]
struct Seen {
    spans: Vec<(String, Value)>,
    points: Vec<(String, Value)>,
    logs: Vec<(String, Value)>,
}

fn service_of(resource: &Value) -> String {
    attrs_of(resource)
        .into_iter()
        .find(|(k, _)| k == "service.name")
        .and_then(|(_, v)| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn read_file(path: &std::path::Path) -> Seen {
    let mut seen = Seen::default();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(doc) = serde_json::from_str::<Value>(line) else {
            continue; // a line being written right now
        };
        for rs in doc["resourceSpans"].as_array().into_iter().flatten() {
            let svc = service_of(&rs["resource"]);
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    seen.spans.push((svc.clone(), s.clone()));
                }
            }
        }
        for rm in doc["resourceMetrics"].as_array().into_iter().flatten() {
            let svc = service_of(&rm["resource"]);
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    let name = m["name"].as_str().unwrap_or_default();
                    for kind in [
                        "sum",
                        "gauge",
                        "histogram",
                        "exponentialHistogram",
                        "summary",
                    ] {
                        for p in m[kind]["dataPoints"].as_array().into_iter().flatten() {
                            let mut p = p.clone();
                            p["__metric"] = Value::from(name);
                            seen.points.push((svc.clone(), p));
                        }
                    }
                }
            }
        }
        for rl in doc["resourceLogs"].as_array().into_iter().flatten() {
            let svc = service_of(&rl["resource"]);
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for l in sl["logRecords"].as_array().into_iter().flatten() {
                    seen.logs.push((svc.clone(), l.clone()));
                }
            }
        }
    }
    seen
}

fn transport(want: &Value) -> String {
    format!(
        "core-test-{}",
        want["attrs"]["test.transport"].as_str().unwrap_or_default()
    )
}

/// What of `expected` is not (yet) in `seen`, as readable lines.
fn missing(expected: &Value, seen: &Seen) -> Vec<String> {
    let mut out = Vec::new();
    for want in expected["spans"].as_array().into_iter().flatten() {
        let ok = seen.spans.iter().any(|(svc, s)| {
            *svc == transport(want) && s["name"] == want["name"] && has_attrs(s, &want["attrs"])
        });
        if !ok {
            out.push(format!("span {want}"));
        }
    }
    for want in expected["points"].as_array().into_iter().flatten() {
        let ok = seen.points.iter().any(|(svc, p)| {
            *svc == transport(want)
                && p["__metric"] == want["metric"]
                && has_attrs(p, &want["attrs"])
        });
        if !ok {
            out.push(format!("data point {want}"));
        }
    }
    for want in expected["logs"].as_array().into_iter().flatten() {
        let ok = seen.logs.iter().any(|(svc, l)| {
            *svc == transport(want)
                && l["body"]["stringValue"] == want["body"]
                && has_attrs(l, &want["attrs"])
        });
        if !ok {
            out.push(format!("log record {want}"));
        }
    }
    out
}

#[test]
fn sdk_and_json_data_crosses_two_collectors_intact() {
    let py = python();
    let dir = TempDir::new("pipeline");
    let out = dir.join("out.jsonl");
    let (down, up_grpc, up_http) = (free_port(), free_port(), free_port());
    let downstream = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{down}
exporters:
  file:
    path: {out}
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
    metrics: {{receivers: [otlp], exporters: [file]}}
    logs: {{receivers: [otlp], exporters: [file]}}
"#,
        out = out.display()
    );
    let upstream = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{up_grpc}
      http:
        endpoint: 127.0.0.1:{up_http}
processors:
  batch:
    timeout: 200ms
    send_batch_size: 50
exporters:
  otlp:
    endpoint: 127.0.0.1:{down}
    tls:
      insecure: true
    compression: gzip
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
    metrics: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
    logs: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
"#
    );
    let mut b = Collector::start(&dir, "downstream", &downstream, &[down]);
    let mut a = Collector::start(&dir, "upstream", &upstream, &[up_grpc, up_http]);

    let sent = Command::new(&py)
        .arg(workspace_root().join("otel-collector/tests/python/core_send.py"))
        .args(["--grpc", &format!("127.0.0.1:{up_grpc}")])
        .args(["--http", &format!("http://127.0.0.1:{up_http}")])
        .args(["--run", "pipeline"])
        .output()
        .expect("run the Python sender");
    assert!(
        sent.status.success(),
        "Python sender failed: {}\n{}\nupstream log:\n{}",
        sent.status,
        String::from_utf8_lossy(&sent.stderr),
        a.logs()
    );
    let expected: Value = serde_json::from_slice(&sent.stdout).expect("sender prints JSON");
    assert_eq!(expected["spans"].as_array().map(Vec::len), Some(17));
    assert_eq!(expected["points"].as_array().map(Vec::len), Some(11));
    assert_eq!(expected["logs"].as_array().map(Vec::len), Some(12));

    let until = Instant::now() + Duration::from_secs(30);
    let mut left;
    loop {
        left = missing(&expected, &read_file(&out));
        if left.is_empty() || Instant::now() > until {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        left.is_empty(),
        "{} items did not arrive intact:\n{}\nupstream log:\n{}\ndownstream log:\n{}",
        left.len(),
        left.join("\n"),
        a.logs(),
        b.logs()
    );
    let sa = a.terminate();
    let sb = b.terminate();
    assert!(sa.success(), "upstream exit {sa}:\n{}", a.logs());
    assert!(sb.success(), "downstream exit {sb}:\n{}", b.logs());
}
