//! Config loading tests: one per error message the loader can produce, plus merging and
//! substitution end to end.

use super::*;

const GOOD: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
      http:
processors:
  batch:
    timeout: 200ms
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "PORT" => Some("5317".into()),
        _ => None,
    }
}

fn load(docs: &[&str]) -> Result<Config, ConfigError> {
    let docs: Vec<(String, String)> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("doc{i}.yaml"), d.to_string()))
        .collect();
    Config::from_docs(&docs, &env)
}

/// Loads `yaml`, expects failure, returns the problems as `path: message` lines.
fn problems(yaml: &str) -> Vec<Problem> {
    match load(&[yaml]) {
        Err(ConfigError::Invalid(p)) => p,
        Err(e) => panic!("expected validation problems, got {e}"),
        Ok(_) => panic!("expected an error for:\n{yaml}"),
    }
}

fn one(yaml: &str) -> Problem {
    let p = problems(yaml);
    assert_eq!(p.len(), 1, "{p:#?}");
    p.into_iter().next().unwrap_or_else(|| unreachable!())
}

#[test]
fn good_config_loads() {
    let c = load(&[GOOD]).unwrap();
    assert!(c.receivers.contains_key("otlp"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn unknown_nested_key_names_full_path_and_suggests() {
    let p = one(&GOOD.replace("endpoint: 127.0.0.1:4317", "endpointt: 127.0.0.1:4317"));
    assert_eq!(p.path, "receivers.otlp.protocols.grpc.endpointt");
    assert!(
        p.message.contains("did you mean `endpoint`"),
        "{}",
        p.message
    );
}

#[test]
fn unknown_top_level_key_suggests() {
    let p = one(&format!("{GOOD}\nrecievers: {{}}\n"));
    assert_eq!(p.path, "recievers");
    assert!(
        p.message.contains("did you mean `receivers`"),
        "{}",
        p.message
    );
}

#[test]
fn unknown_component_type_lists_known_ones() {
    let p = one(&GOOD.replace(
        "  batch:\n    timeout: 200ms",
        "  batch:\n    timeout: 200ms\n  groupbytrace:",
    ));
    assert_eq!(p.path, "processors.groupbytrace");
    assert!(
        p.message.contains("unknown processor type `groupbytrace`"),
        "{}",
        p.message
    );
    assert!(p.message.contains("memory_limiter"), "{}", p.message);
    let p = one(&GOOD.replace(
        "  otlp:\n    protocols:",
        "  jaeger:\n    protocols: {}\n  otlp:\n    protocols:",
    ));
    assert_eq!(p.path, "receivers.jaeger");
    assert!(p.message.contains("implements: otlp"), "{}", p.message);
}

#[test]
fn pipeline_naming_undefined_component() {
    let p = one(&GOOD.replace("exporters: [debug]", "exporters: [debug, otlp/tempo]"));
    assert_eq!(p.path, "service.pipelines.traces.exporters");
    assert!(
        p.message
            .contains("`otlp/tempo` is not defined under top-level `exporters`"),
        "{}",
        p.message
    );
    let p = one(&GOOD.replace("processors: [batch]", "processors: [bacth]"));
    assert_eq!(p.path, "service.pipelines.traces.processors");
    assert!(p.message.contains("Did you mean `batch`?"), "{}", p.message);
}

#[test]
fn unused_receiver_is_an_error_unused_exporter_a_warning() {
    let p = one(&GOOD.replace(
        "receivers:\n  otlp:",
        "receivers:\n  otlp/unused:\n    protocols: {grpc: {endpoint: 127.0.0.1:1}}\n  otlp:",
    ));
    assert_eq!(p.path, "receivers.otlp/unused");
    assert!(p.message.contains("used by no pipeline"), "{}", p.message);
    let c = load(&[&GOOD.replace("  debug:\n", "  debug:\n  debug/spare:\n")]).unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.starts_with("exporters.debug/spare")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn bad_endpoint_and_duration() {
    let p = one(&GOOD.replace("endpoint: 127.0.0.1:4317", "endpoint: 127.0.0.1"));
    assert_eq!(p.path, "receivers.otlp.protocols.grpc.endpoint");
    assert!(p.message.contains("port is missing"), "{}", p.message);
    let p = one(&GOOD.replace("timeout: 200ms", "timeout: 200"));
    assert_eq!(p.path, "processors.batch.timeout");
    assert!(
        p.message.contains("like `200s` or `200ms`"),
        "{}",
        p.message
    );
}

#[test]
fn bad_signal_and_pipeline_without_exporters() {
    let p = one(&GOOD.replace("    traces:\n", "    trace:\n"));
    assert_eq!(p.path, "service.pipelines.trace");
    assert!(p.message.contains("did you mean `traces`"), "{}", p.message);
    let p = one(&GOOD.replace("exporters: [debug]", "exporters: []"));
    assert_eq!(p.path, "service.pipelines.traces.exporters");
    assert!(p.message.contains("at least one exporter"), "{}", p.message);
}

#[test]
fn unknown_key_in_pipeline_and_service() {
    let p = one(&GOOD.replace(
        "      exporters: [debug]",
        "      exporters: [debug]\n      exporter: [debug]",
    ));
    assert_eq!(p.path, "service.pipelines.traces.exporter");
    assert!(
        p.message.contains("did you mean `exporters`"),
        "{}",
        p.message
    );
}

#[test]
fn missing_service_is_explained() {
    let p = one("receivers: {}\n");
    assert_eq!(p.path, "service");
    assert!(p.message.contains("missing"), "{}", p.message);
}

#[test]
fn files_merge_deeply_later_wins_lists_replaced() {
    let overlay = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:${env:PORT}\nservice:\n  pipelines:\n    traces:\n      processors: []\n";
    let c = load(&[GOOD, overlay]).unwrap();
    let ReceiverConfig::Otlp(o) = &c.receivers["otlp"];
    assert_eq!(
        o.protocols.grpc.as_ref().unwrap().endpoint,
        "127.0.0.1:5317"
    );
    assert!(o.protocols.http.is_some(), "http kept from the first file");
    let p = &c.service.pipelines["traces"];
    assert!(p.processors.is_empty(), "lists are replaced");
    assert_eq!(
        p.exporters,
        vec!["debug".to_string()],
        "untouched keys kept"
    );
    assert!(
        c.warnings.iter().any(|w| w.contains("processors.batch")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn env_default_applies() {
    let c = load(&[&GOOD.replace("127.0.0.1:4317", "${env:BIND:-127.0.0.2}:4317")]).unwrap();
    let ReceiverConfig::Otlp(o) = &c.receivers["otlp"];
    assert_eq!(
        o.protocols.grpc.as_ref().unwrap().endpoint,
        "127.0.0.2:4317"
    );
}

#[test]
fn unset_env_warns_and_other_providers_fail() {
    let c = load(&[&GOOD.replace("127.0.0.1:4317", "${env:BIND}:4317")]).unwrap();
    assert!(
        c.warnings.iter().any(
            |w| w.starts_with("receivers.otlp.protocols.grpc.endpoint: ")
                && w.contains("BIND is not set")
        ),
        "{:?}",
        c.warnings
    );
    let e = load(&[GOOD, "exporters:\n  debug:\n    x: ${file:/t}\n"]).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("exporters.debug.x") && s.contains("`file` provider") && s.contains("doc1.yaml"),
        "{s}"
    );
}

#[test]
fn invalid_yaml_names_the_file() {
    let e = load(&[GOOD, "a: [unclosed"]).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("doc1.yaml") && s.contains("not valid YAML"),
        "{s}"
    );
}

#[test]
fn connectors_forward_between_pipelines() {
    let yaml = r#"
receivers:
  otlp:
    protocols: {grpc: {endpoint: "127.0.0.1:0"}}
connectors:
  forward:
exporters:
  debug:
service:
  pipelines:
    traces/in:
      receivers: [otlp]
      exporters: [forward]
    traces/out:
      receivers: [forward]
      exporters: [debug]
"#;
    load(&[yaml]).unwrap();
    let p = one(&yaml.replace("    traces/out:", "    metrics/out:"));
    assert_eq!(p.path, "connectors.forward");
    assert!(
        p.message.contains("cannot turn traces into metrics"),
        "{}",
        p.message
    );
    let p = one(&yaml.replace(
        "      receivers: [forward]\n      exporters: [debug]",
        "      receivers: [forward]\n      exporters: [debug, forward]",
    ));
    assert!(p.message.contains("cycle"), "{p}");
}

#[test]
fn unsupported_env_provider_is_an_error() {
    let e = load(&[&GOOD.replace("127.0.0.1:4317", "${file:/x}")]).unwrap_err();
    assert!(e.to_string().contains("`file` provider"), "{e}");
}

#[test]
fn filter_ottl_is_refused_with_pointer() {
    let p = one(&GOOD
        .replace(
            "  batch:\n    timeout: 200ms",
            "  batch:\n    timeout: 200ms\n  filter:\n    traces:\n      span: ['name == \"x\"']",
        )
        .replace("processors: [batch]", "processors: [batch, filter]"));
    assert_eq!(p.path, "processors.filter.traces");
    assert!(p.message.contains("OTTL"), "{}", p.message);
}

#[test]
fn telemetry_address_forms() {
    let c = load(&[&format!(
        "{GOOD}  telemetry:\n    metrics:\n      level: none\n"
    )])
    .unwrap();
    assert_eq!(c.service.telemetry.metrics_address(), None);
    let c = load(&[&format!("{GOOD}  telemetry:\n    metrics:\n      readers:\n        - pull: {{exporter: {{prometheus: {{host: 127.0.0.1, port: 9999}}}}}}\n")]).unwrap();
    assert_eq!(
        c.service.telemetry.metrics_address().as_deref(),
        Some("127.0.0.1:9999")
    );
    let c = load(&[GOOD]).unwrap();
    assert_eq!(
        c.service.telemetry.metrics_address().as_deref(),
        Some(DEFAULT_METRICS_ADDRESS)
    );
}

#[test]
fn shipped_sample_config_is_valid() {
    let text = include_str!("../../config/otel-collector.yaml");
    let c = Config::from_docs(&[("sample".into(), text.into())], &|_| None).unwrap();
    let names: Vec<&str> = c.service.pipelines.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["logs", "metrics", "traces", "traces/sampled"]);
}

#[test]
fn exporter_not_supporting_the_signal() {
    let yaml = GOOD
        .replace(
            "  debug:\n",
            "  debug:\n  prometheus:\n    endpoint: 127.0.0.1:8889\n",
        )
        .replace("exporters: [debug]", "exporters: [debug, prometheus]");
    let p = one(&yaml);
    assert_eq!(p.path, "service.pipelines.traces.exporters");
    assert!(
        p.message
            .contains("exporter `prometheus` does not support traces (it takes metrics)"),
        "{}",
        p.message
    );
}

#[test]
fn duplicate_and_invalid_ids() {
    let p = one(&GOOD.replace("receivers: [otlp]", "receivers: [otlp, otlp]"));
    assert!(p.message.contains("listed twice"), "{p}");
    let p = one(&GOOD.replace("  debug:\n", "  debug:\n  debug/:\n"));
    assert_eq!(p.path, "exporters.debug/");
    assert!(p.message.contains("invalid component id"), "{p}");
}

const STORAGE: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
extensions:
  file_storage/q:
    directory: /tmp/queues
    fsync: true
exporters:
  otlp:
    endpoint: 127.0.0.1:4999
    sending_queue:
      storage: file_storage/q
service:
  extensions: [file_storage/q]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
"#;

#[test]
fn sending_queue_storage_must_name_an_enabled_file_storage() {
    load(&[STORAGE]).unwrap();
    let p = one(&STORAGE.replace("storage: file_storage/q", "storage: file_storage/x"));
    assert_eq!(p.path, "exporters.otlp.sending_queue.storage");
    assert!(p.message.contains("not defined"), "{}", p.message);
    let p = one(&STORAGE.replace("extensions: [file_storage/q]", "extensions: []"));
    assert!(p.message.contains("not enabled"), "{}", p.message);
}
