//! Configuration through the binary: the shipped `config/detector.yaml` is valid, environment
//! overrides win, and configuration errors exit non-zero with a message naming the key or file.
//!
//! Run: `cargo test -p anomaly-detector --test service_config`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anomaly_detector::config::Config;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/detector.yaml")
}

fn detector(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anomaly-detector"));
    cmd.args(args);
    for var in [
        "PROMETHEUS_URL",
        "ALERTMANAGER_URL",
        "DETECTOR_ADDR",
        "DETECTOR_CONFIG",
        "DETECTOR_WEBHOOK_URL",
        "DETECTOR_WEBHOOK_SECRET",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn temp_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("anomaly-detector-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn shipped_config_is_valid_and_targets_red_metrics() {
    let text = std::fs::read_to_string(shipped()).unwrap();
    let c = Config::from_yaml(&text, &shipped(), |_| None).unwrap();
    c.validate().unwrap();
    assert_eq!(c.prometheus.url, "http://127.0.0.1:9090");
    assert_eq!(
        c.alertmanager.as_ref().unwrap().url,
        "http://127.0.0.1:9093"
    );
    assert_eq!(c.server.addr.to_string(), "127.0.0.1:9464");
    let names: Vec<&str> = c.detections.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["request_rate", "error_ratio", "latency_p95"]);
    for d in &c.detections {
        assert!(
            d.query.contains("http_server_request_duration_seconds"),
            "{}",
            d.query
        );
        assert!(d.query.contains("job"), "grouped by service: {}", d.query);
    }
    assert!(c.detections[1]
        .query
        .contains("http_response_status_code=~\"5..\""));
    assert!(c.detections[2].query.contains("histogram_quantile(0.95"));

    let out = detector(&["--config", shipped().to_str().unwrap(), "--check"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shipped_config_substitutes_webhook_variables() {
    let text = std::fs::read_to_string(shipped()).unwrap();
    let c = Config::from_yaml(&text, &shipped(), |v| match v {
        "DETECTOR_WEBHOOK_URL" => Some("http://hooks.example:8080/in".into()),
        "DETECTOR_WEBHOOK_SECRET" => Some("123456".into()),
        _ => None,
    })
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.webhooks[0].url, "http://hooks.example:8080/in");
    let secret = c.webhooks[0].secret.as_ref().unwrap();
    assert_eq!(secret.0, "123456", "a numeric secret stays a string");
    let c = Config::from_yaml(&text, &shipped(), |_| None).unwrap();
    assert_eq!(c.webhooks[0].url, "http://127.0.0.1:9095/webhook");
    assert_eq!(c.webhooks[0].secret.as_ref().unwrap().0, "demo-secret");
}

#[test]
fn environment_overrides_the_file() {
    let out = detector(
        &["--config", shipped().to_str().unwrap(), "--check"],
        &[
            ("PROMETHEUS_URL", "http://127.0.0.2:19090"),
            ("ALERTMANAGER_URL", "http://127.0.0.2:19093"),
            ("DETECTOR_ADDR", "127.0.0.1:19464"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("http://127.0.0.2:19090"), "{printed}");
    assert!(printed.contains("http://127.0.0.2:19093"), "{printed}");
    assert!(printed.contains("127.0.0.1:19464"), "{printed}");
    assert!(!printed.contains("demo-secret"), "secrets are redacted");
}

#[test]
fn errors_name_the_problem() {
    let cases: [(&str, &str, &str); 5] = [
        ("typo.yaml", "prometheus: {url: 'http://127.0.0.1:9090'}\ndetections: [{name: a, query: up, stepp: 1m}]\n", "stepp"),
        ("nodet.yaml", "prometheus: {url: 'http://127.0.0.1:9090'}\ndetections: []\n", "detections"),
        ("hook.yaml", "prometheus: {url: 'http://127.0.0.1:9090'}\ndetections: [{name: a, query: up, webhooks: [ops]}]\n", "webhook \"ops\" is not defined"),
        ("env.yaml", "prometheus: {url: '${env:NO_SUCH_VAR_FOR_TEST}'}\ndetections: [{name: a, query: up}]\n", "prometheus.url: environment variable NO_SUCH_VAR_FOR_TEST is not set"),
        ("dur.yaml", "prometheus: {url: 'http://127.0.0.1:9090'}\nevaluation_interval: soon\ndetections: [{name: a, query: up}]\n", "evaluation_interval"),
    ];
    for (name, text, needle) in cases {
        let p = temp_config(name, text);
        let out = detector(&["--config", p.to_str().unwrap(), "--check"], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} must be rejected");
        assert!(
            err.contains(needle),
            "{name}: {err:?} should mention {needle:?}"
        );
    }
    let out = detector(&["--config", "/nonexistent/detector.yaml"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot read config file /nonexistent/detector.yaml"));
    let out = detector(
        &["--config", shipped().to_str().unwrap(), "--check"],
        &[("DETECTOR_ADDR", "nowhere")],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DETECTOR_ADDR"));
    let out = detector(&[], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config FILE.yaml is required"));
}
