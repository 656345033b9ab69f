//! Command-line behaviour: invalid configuration is a clear error at start (non-zero exit,
//! message naming the key or variable), `--print-config` shows the effective configuration
//! with the environment applied, and `--once` prints OTLP JSON.
//!
//! Run: `cargo test -p node-agent --test cli`.

use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_node-agent"));
    c.args(args)
        .env_remove("NODE_AGENT_CONFIG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .env_remove("OTEL_METRIC_EXPORT_INTERVAL");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run node-agent")
}

fn write_tmp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("node-agent-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn unknown_key_fails_at_start_naming_it() {
    let p = write_tmp("bad.yaml", "scrapers:\n  proces:\n    top_n: 3\n");
    let out = run(&["--config", p.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("proces") && err.contains("bad.yaml"), "{err}");
}

#[test]
fn bad_env_value_fails_naming_the_variable() {
    let out = run(&["--once"], &[("OTEL_METRIC_EXPORT_INTERVAL", "ten")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OTEL_METRIC_EXPORT_INTERVAL"), "{err}");
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let out = run(&["--config", "/nonexistent/node-agent.yaml"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/node-agent.yaml") && err.contains("--config"),
        "{err}"
    );
}

#[test]
fn print_config_applies_environment_over_the_sample_file() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/config/node-agent.yaml");
    let out = run(
        &["--print-config", "--config", sample],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "2500"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["export"]["endpoint"].as_str(),
        Some("http://127.0.0.1:4318")
    );
    assert_eq!(v["export"]["protocol"].as_str(), Some("http/protobuf"));
    assert_eq!(v["interval"].as_str(), Some("2s 500ms"));
    assert_eq!(v["scrapers"]["process"]["top_n"].as_u64(), Some(5));
}

#[test]
fn once_prints_otlp_json_with_resource_and_scope() {
    let out = run(
        &["--once", "--once-window", "50ms"],
        &[("OTEL_SERVICE_NAME", "agent-under-test")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rm = &v["resourceMetrics"][0];
    let attrs = rm["resource"]["attributes"].as_array().unwrap();
    let service = attrs
        .iter()
        .find(|a| a["key"] == "service.name")
        .map(|a| a["value"]["stringValue"].clone());
    assert_eq!(service, Some(serde_json::json!("agent-under-test")));
    assert_eq!(rm["scopeMetrics"][0]["scope"]["name"], "node-agent");
    // Counters carry OTLP JSON's camelCase fields and cumulative temporality (2).
    let cpu = rm["scopeMetrics"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "system.cpu.time")
        .unwrap();
    assert_eq!(cpu["unit"], "s");
    assert_eq!(cpu["sum"]["isMonotonic"], true);
    assert_eq!(cpu["sum"]["aggregationTemporality"], 2);
    assert!(cpu["sum"]["dataPoints"][0]["asDouble"].is_number());
}
