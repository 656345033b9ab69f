//! Graph assembly end to end: one receiver shared by several pipelines, processors per pipeline
//! (attributes, filter, resource), a `forward` connector feeding two pipelines, and one file
//! exporter shared by two pipelines.
//!
//! Run: `cargo test -p otel-collector --test core_fanout`.

mod core_support;

use core_support::Collector;
use std::time::{Duration, Instant};
use test_support::{free_port, TempDir};

fn spans_json(names: &[&str]) -> String {
    let spans: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(r#"{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"00000000000000{:02x}","name":"{n}","kind":1,"startTimeUnixNano":"1","endTimeUnixNano":"2"}}"#, i + 1)
        })
        .collect();
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"fan"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

/// (span name, value of attribute `route`, value of resource attribute `env`) per span in a file.
fn spans_in(path: &std::path::Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        for rs in doc["resourceSpans"].as_array().into_iter().flatten() {
            let find = |attrs: &serde_json::Value, k: &str| {
                attrs
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|kv| kv["key"] == k)
                    .and_then(|kv| kv["value"]["stringValue"].as_str())
                    .unwrap_or("")
                    .to_string()
            };
            let env = find(&rs["resource"]["attributes"], "env");
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    out.push((
                        s["name"].as_str().unwrap_or("").to_string(),
                        find(&s["attributes"], "route"),
                        env.clone(),
                    ));
                }
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_connector_and_exporter_fan_out() {
    let dir = TempDir::new("fanout");
    let port = free_port();
    let (a, b, direct) = (
        dir.join("a.jsonl"),
        dir.join("b.jsonl"),
        dir.join("direct.jsonl"),
    );
    let cfg = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
processors:
  attributes/route:
    actions:
      - {{key: route, action: upsert, value: via-connector}}
  resource/env:
    attributes:
      - {{key: env, action: insert, value: test}}
  filter/nohealth:
    spans:
      exclude:
        match_type: regexp
        span_names: ["^health"]
  batch:
    timeout: 50ms
connectors:
  forward:
exporters:
  file/a:
    path: {a}
  file/b:
    path: {b}
  file/direct:
    path: {direct}
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces/in:
      receivers: [otlp]
      processors: [attributes/route]
      exporters: [forward]
    traces/a:
      receivers: [forward]
      processors: [resource/env, batch]
      exporters: [file/a]
    traces/b:
      receivers: [forward]
      processors: [filter/nohealth]
      exporters: [file/b, file/a]
    traces/direct:
      receivers: [otlp]
      exporters: [file/direct]
"#,
        a = a.display(),
        b = b.display(),
        direct = direct.display()
    );
    let mut col = Collector::start(&dir, "fanout", &cfg, &[port]);
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/traces"))
        .header("content-type", "application/json")
        .body(spans_json(&["work", "health-check"]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let s = |n: &str, r: &str, e: &str| (n.to_string(), r.to_string(), e.to_string());
    // file/a is shared: from traces/a (resource env added) and from traces/b (filtered, no env).
    let want_a = vec![
        s("health-check", "via-connector", "test"),
        s("work", "via-connector", ""),
        s("work", "via-connector", "test"),
    ];
    let want_b = vec![s("work", "via-connector", "")];
    let want_direct = vec![s("health-check", "", ""), s("work", "", "")];
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until
        && (spans_in(&a) != want_a || spans_in(&b) != want_b || spans_in(&direct) != want_direct)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(spans_in(&a), want_a, "{}", col.logs());
    assert_eq!(spans_in(&b), want_b);
    assert_eq!(
        spans_in(&direct),
        want_direct,
        "the direct pipeline sees the data unmodified by the other pipelines"
    );
    assert!(col.terminate().success(), "{}", col.logs());
}

/// A persistent exporter that refuses (its disk queue is full) decides the answer even when a
/// memory exporter took the batch, in one pipeline (exporter fan-out) and across two pipelines
/// (receiver fan-out): answering 200 would acknowledge data the persistent queue does not hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_persistent_queue_is_refused_even_when_a_memory_exporter_took_the_batch() {
    let one = "traces: {receivers: [otlp], exporters: [file/mem, otlp/disk]}";
    let two = "traces/mem: {receivers: [otlp], exporters: [file/mem]}\n    traces/disk: {receivers: [otlp], exporters: [otlp/disk]}";
    for (case, pipelines) in [("one-pipeline", one), ("two-pipelines", two)] {
        let dir = TempDir::new("fanout-durable");
        let (port, down) = (free_port(), free_port());
        let mem = dir.join("mem.jsonl");
        let cfg = format!(
            r#"
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{port}"}}
extensions:
  file_storage/q: {{directory: "{q}", create_directory: true}}
exporters:
  file/mem: {{path: "{mem}"}}
  otlp/disk:
    endpoint: "127.0.0.1:{down}"
    tls: {{insecure: true}}
    sending_queue: {{storage: file_storage/q, queue_size: 2, num_consumers: 1}}
service:
  extensions: [file_storage/q]
  telemetry: {{metrics: {{level: none}}}}
  pipelines:
    {pipelines}
"#,
            q = dir.join("q").display(),
            mem = mem.display(),
        );
        let mut col = Collector::start(&dir, case, &cfg, &[port]);
        let http = reqwest::Client::new();
        let mut statuses = Vec::new();
        for i in 0..8 {
            let name = format!("s{i}");
            let resp = http
                .post(format!("http://127.0.0.1:{port}/v1/traces"))
                .header("content-type", "application/json")
                .body(spans_json(&[name.as_str()]))
                .send()
                .await
                .expect("answer");
            statuses.push(resp.status().as_u16());
        }
        assert!(
            statuses[..2].iter().all(|&s| s == 200),
            "{case}: the first batches fit the disk queue: {statuses:?}"
        );
        assert!(
            statuses.contains(&503),
            "{case}: a full persistent queue must be refused although file/mem took the batch: {statuses:?}\n{}",
            col.logs()
        );
        let until = Instant::now() + Duration::from_secs(10);
        while spans_in(&mem).len() < 8 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            spans_in(&mem).len(),
            8,
            "{case}: file/mem still got every batch"
        );
        col.terminate();
    }
}
