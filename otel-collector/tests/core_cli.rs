//! The `otel-collector` command line: `validate` (exit codes and messages naming key paths),
//! `print-config` (files merged in order, variables substituted), start-up errors, SIGINT.
//!
//! Run: `cargo test -p otel-collector --test core_cli`.

mod core_support;

use core_support::Collector;
use std::process::Command;
use test_support::{free_port, workspace_root, TempDir};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_otel-collector"))
}

fn sample() -> std::path::PathBuf {
    workspace_root().join("otel-collector/config/otel-collector.yaml")
}

#[test]
fn validate_accepts_the_shipped_sample() {
    let out = bin()
        .arg("validate")
        .arg("--config")
        .arg(sample())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
}

#[test]
fn validate_reports_every_problem_with_key_paths() {
    let dir = TempDir::new("cli-validate");
    let f = dir.join("bad.yaml");
    std::fs::write(
        &f,
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpointt: 127.0.0.1:4317\nexporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug, otlp/tempo]\n",
    )
    .unwrap();
    let out = bin()
        .arg("validate")
        .arg("--config")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("receivers.otlp.protocols.grpc.endpointt: unknown key `endpointt`; did you mean `endpoint`?"), "{err}");
    assert!(
        err.contains("service.pipelines.traces.exporters: `otlp/tempo` is not defined"),
        "{err}"
    );
    let out = bin()
        .arg("validate")
        .arg("--config")
        .arg(dir.join("missing.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
    let out = bin().arg("validate").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --config"));
}

#[test]
fn print_config_merges_in_order_and_substitutes() {
    let dir = TempDir::new("cli-print");
    let over = dir.join("over.yaml");
    std::fs::write(
        &over,
        "exporters:\n  otlp/tempo:\n    endpoint: ${env:CLI_TEST_TEMPO}\n",
    )
    .unwrap();
    let out = bin()
        .arg("print-config")
        .arg("--config")
        .arg(sample())
        .arg("--config")
        .arg(&over)
        .env("CLI_TEST_TEMPO", "tempo.example:4317")
        .env_remove("OTELCOL_BIND")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).unwrap();
    let tempo = &doc["exporters"]["otlp/tempo"];
    assert_eq!(tempo["endpoint"].as_str(), Some("tempo.example:4317"));
    assert_eq!(
        tempo["compression"].as_str(),
        Some("gzip"),
        "keys of the first file kept"
    );
    assert_eq!(
        doc["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].as_str(),
        Some("127.0.0.1:4317")
    );
}

#[test]
fn port_in_use_fails_start_with_the_endpoint_named() {
    let dir = TempDir::new("cli-port");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let f = dir.join("c.yaml");
    std::fs::write(
        &f,
        format!("receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{port}\nexporters:\n  debug:\nservice:\n  telemetry: {{metrics: {{level: none}}}}\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [debug]}}\n"),
    )
    .unwrap();
    let out = bin().arg("--config").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(
        err.contains("receivers.otlp.protocols.grpc.endpoint"),
        "{err}"
    );
}

#[test]
fn sigint_and_sigterm_exit_zero() {
    let dir = TempDir::new("cli-signal");
    let port = free_port();
    let cfg = format!("receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{port}\nprocessors:\n  batch:\nexporters:\n  debug:\nservice:\n  telemetry: {{metrics: {{level: none}}}}\n  pipelines:\n    logs: {{receivers: [otlp], processors: [batch], exporters: [debug]}}\n");
    let mut c = Collector::start(&dir, "sig", &cfg, &[port]);
    let pid = c.child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = c.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < until,
            "no exit after SIGINT:\n{}",
            c.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "SIGINT exit {status}:\n{}", c.logs());
    assert!(c.logs().contains("collector stopped"), "{}", c.logs());
    let mut c = Collector::start(&dir, "sig2", &cfg, &[port]);
    assert!(c.terminate().success(), "{}", c.logs());
}

#[test]
fn sighup_reloads_a_valid_config_and_keeps_running_on_an_invalid_one() {
    let dir = TempDir::new("cli-hup");
    let (p1, p2) = (free_port(), free_port());
    let cfg = |port: u16| {
        format!("receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{port}\nexporters:\n  debug:\nservice:\n  telemetry: {{metrics: {{level: none}}}}\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [debug]}}\n")
    };
    let mut c = Collector::start(&dir, "hup", &cfg(p1), &[p1]);
    let pid = c.child.id().to_string();
    let file = dir.join("hup.yaml");
    let listening = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    let wait = |what: &dyn Fn() -> bool| {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < until && !what() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        what()
    };
    // An invalid config is rejected; the running one keeps serving.
    std::fs::write(
        &file,
        "receivers: {otlp: {protocols: {http: {endpointt: x}}}}\n",
    )
    .unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(
        wait(&|| c.logs().contains("new configuration rejected")),
        "{}",
        c.logs()
    );
    assert!(c.running() && listening(p1));
    // A valid one replaces it.
    std::fs::write(&file, cfg(p2)).unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(wait(&|| listening(p2)), "{}", c.logs());
    assert!(
        wait(&|| !listening(p1)),
        "old receiver still listening:\n{}",
        c.logs()
    );
    assert!(c.terminate().success(), "{}", c.logs());
}

/// Reads `THP_enabled` from /proc/PID/status (Linux 5.0 and later).
fn thp_enabled(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim().to_string())
        .expect("/proc/PID/status has no THP_enabled line (kernel older than 5.0)")
}

#[test]
fn transparent_huge_pages_are_off_unless_asked_for() {
    let dir = TempDir::new("cli-thp");
    let port = free_port();
    let cfg = format!("receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{port}\nexporters:\n  debug:\nservice:\n  telemetry: {{metrics: {{level: none}}}}\n  pipelines:\n    logs: {{receivers: [otlp], exporters: [debug]}}\n");
    let mut c = Collector::start(&dir, "thp", &cfg, &[port]);
    assert_eq!(thp_enabled(c.child.id()), "0", "{}", c.logs());
    assert!(c.terminate().success(), "{}", c.logs());

    // MIMALLOC_ALLOW_THP=1 keeps the kernel's default, which is what this test process has.
    let cfg_path = dir.join("thp.yaml");
    let mut child = bin()
        .arg("--config")
        .arg(&cfg_path)
        .env("MIMALLOC_ALLOW_THP", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < until,
            "second collector did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let inherited = thp_enabled(std::process::id());
    let got = thp_enabled(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(got, inherited);
}

/// Two collectors on one `file_storage` directory would interleave records: the second fails to
/// start naming the directory; a SIGHUP reload of the first opens its own queue again.
#[test]
fn a_queue_directory_in_use_fails_start_and_a_reload_reopens_it() {
    let dir = TempDir::new("cli-lock");
    let q = dir.join("q");
    let cfg = |port: u16, exporter_port: u16| {
        format!("receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{port}\nextensions:\n  file_storage/q: {{directory: \"{}\", create_directory: true}}\nexporters:\n  otlp:\n    endpoint: 127.0.0.1:{exporter_port}\n    tls: {{insecure: true}}\n    sending_queue: {{storage: file_storage/q}}\nservice:\n  extensions: [file_storage/q]\n  telemetry: {{metrics: {{level: none}}}}\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [otlp]}}\n", q.display())
    };
    let (p1, p2, down) = (free_port(), free_port(), free_port());
    let mut first = Collector::start(&dir, "first", &cfg(p1, down), &[p1]);
    let f = dir.join("second.yaml");
    std::fs::write(&f, cfg(p2, down)).unwrap();
    let out = bin().arg("--config").arg(&f).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the second collector must not start"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another collector"), "{err}");
    assert!(err.contains("exporter_otlp"), "names the directory: {err}");
    // Reload: the old service's queue releases the lock before the new one opens it.
    let p3 = free_port();
    std::fs::write(dir.join("first.yaml"), cfg(p3, down)).unwrap();
    let pid = first.child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < until
        && std::net::TcpStream::connect(("127.0.0.1", p3)).is_err()
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", p3)).is_ok(),
        "reloaded config serves:\n{}",
        first.logs()
    );
    assert!(
        !first.logs().contains("restarting the previous one"),
        "{}",
        first.logs()
    );
    assert!(first.terminate().success(), "{}", first.logs());
}
