//! Harness of the cross-component end-to-end tests (`node-agent/tests/e2e_collector_prometheus.rs`
//! and `demo-app/tests/e2e_collector.rs`, which includes this file by `#[path]`): the real
//! `otel-collector` binary with a generated config, a real Prometheus (Debian package) scraping
//! the collector's Prometheus exporter, and PromQL instant queries with bounded polling.
//!
//! Every server listens on 127.0.0.1 on a port picked at runtime; every process started here is
//! owned by a [`Procs`] guard that kills it on drop (and prints the tail of its log when the
//! test is failing). Nothing here names a path outside the repository or the system temp dir.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a server may take to come up (the machine may be busy compiling).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Finds `name` on PATH or panics telling to run `make deps`.
pub fn require_bin(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` not found on PATH: run `make deps` (installs the Debian package `{name}`)");
}

/// The `otel-collector` binary of the same cargo target dir and profile as this test, i.e.
/// next to the crate's own binary (`bin_of_this_crate`, from `env!("CARGO_BIN_EXE_...")`, which
/// is `$CARGO_TARGET_DIR/debug/...` or `<workspace>/target/debug/...`). Only that directory is
/// searched: a binary from another target dir may be stale. `cargo test --workspace` (and so
/// `make test`) builds it; panics with the command to run when it is missing.
pub fn collector_bin(bin_of_this_crate: &str) -> PathBuf {
    let dir = Path::new(bin_of_this_crate)
        .parent()
        .expect("binary path has a parent");
    let bin = dir.join("otel-collector");
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build -p otel-collector` (with the same CARGO_TARGET_DIR as \
         the tests), or run the tests with `cargo test --workspace` / `make test`, which build it",
        bin.display()
    );
    bin
}

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `<tmp>/e2e-<tag>-<pid>-<n>`.
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "e2e-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    /// `self/name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One child process with the file its stdout and stderr go to.
pub struct Proc {
    /// Short name for messages.
    pub name: String,
    /// The process.
    pub child: Child,
    /// Its log file.
    pub log: PathBuf,
}

impl Proc {
    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Owns every process a test starts; kills them all (last started first) on drop. When the
/// test is panicking it prints the last lines of each log, so a failure shows why.
#[derive(Default)]
pub struct Procs(Vec<Proc>);

impl Procs {
    /// Spawns `cmd` with stdout and stderr to `log`, owned by this guard; returns its index.
    pub fn spawn(&mut self, name: &str, mut cmd: Command, log: PathBuf) -> usize {
        let out = std::fs::File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        self.0.push(Proc {
            name: name.to_string(),
            child,
            log,
        });
        self.0.len() - 1
    }

    /// The process at `i`.
    pub fn get(&mut self, i: usize) -> &mut Proc {
        &mut self.0[i]
    }

    /// Panics with the log if the process at `i` has exited.
    pub fn assert_running(&mut self, i: usize) {
        let p = &mut self.0[i];
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!("{} exited early ({status}):\n{}", p.name, p.log_text());
        }
    }

    /// Sends SIGTERM to the process at `i` and waits (bounded) for it; returns its exit status.
    pub async fn terminate(&mut self, i: usize, within: Duration) -> std::process::ExitStatus {
        let p = &mut self.0[i];
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(p.child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM {} failed", p.name);
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = p.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?} of SIGTERM:\n{}",
                p.name,
                p.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        for p in self.0.iter_mut().rev() {
            let _ = p.child.kill();
            let _ = p.child.wait();
            if failing {
                let text = p.log_text();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                eprintln!(
                    "---- last lines of {} ({}):\n{tail}",
                    p.name,
                    p.log.display()
                );
            }
        }
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`, failing early when the
/// process `i` exits.
pub async fn wait_port(procs: &mut Procs, i: usize, port: u16) {
    let deadline = Instant::now() + START_TIMEOUT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        procs.assert_running(i);
        let p = procs.get(i);
        assert!(
            Instant::now() < deadline,
            "{} does not listen on 127.0.0.1:{port} after {START_TIMEOUT:?}:\n{}",
            p.name,
            p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `config_yaml` to `dir/collector.yaml`, checks it with `otel-collector validate`,
/// starts `otel-collector --config` and waits until every port in `ports` listens. Returns
/// the process index in `procs`.
pub async fn start_collector(
    procs: &mut Procs,
    bin: &Path,
    dir: &TempDir,
    config_yaml: &str,
    ports: &[u16],
) -> usize {
    let config = dir.path("collector.yaml");
    std::fs::write(&config, config_yaml).expect("write collector config");
    let out = Command::new(bin)
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .expect("run otel-collector validate");
    assert!(
        out.status.success(),
        "{} validate rejected the generated config:\n{config_yaml}\n{}{}",
        bin.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env_remove("LOG_FORMAT");
    let i = procs.spawn("otel-collector", cmd, dir.path("collector.log"));
    for &port in ports {
        wait_port(procs, i, port).await;
    }
    i
}

/// Starts Prometheus on a free loopback port (data in `dir/prometheus`), scraping
/// `targets` every second with `honor_labels: true`, and waits for `/-/ready`. Returns the
/// process index and the base URL.
pub async fn start_prometheus(
    procs: &mut Procs,
    dir: &TempDir,
    targets: &[String],
) -> (usize, String) {
    let bin = require_bin("prometheus");
    let port = free_port();
    let cfg = dir.path("prometheus.yml");
    let targets = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: otel-collector\n    honor_labels: true\n    \
             static_configs:\n      - targets: [{targets}]\n"
        ),
    )
    .expect("write prometheus.yml");
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path("prometheus").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let i = procs.spawn("prometheus", cmd, dir.path("prometheus.log"));
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(r) = client.get(format!("{url}/-/ready")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        procs.assert_running(i);
        assert!(
            Instant::now() < deadline,
            "prometheus not ready at {url} after {START_TIMEOUT:?}:\n{}",
            procs.get(i).log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (i, url)
}

/// One series of an instant query result.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Its labels.
    pub labels: serde_json::Map<String, Value>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// Label `k`, or "" when absent (as PromQL sees it).
    pub fn label(&self, k: &str) -> &str {
        self.labels.get(k).and_then(Value::as_str).unwrap_or("")
    }
}

/// Runs a PromQL instant query (`/api/v1/query`).
pub async fn query(base: &str, promql: &str) -> Vec<Sample> {
    let url =
        reqwest::Url::parse_with_params(&format!("{base}/api/v1/query"), &[("query", promql)])
            .expect("query URL");
    let body: Value = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("query {promql}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("query {promql}: not JSON: {e}"));
    assert_eq!(body["status"], "success", "{promql}: {body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|r| Sample {
            labels: r["metric"].as_object().cloned().unwrap_or_default(),
            value: r["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN),
        })
        .collect()
}

/// Polls `promql` every 250 ms until `ok` holds for its result, and returns that result;
/// panics after `timeout` showing the last result.
pub async fn query_until(
    base: &str,
    promql: &str,
    timeout: Duration,
    ok: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = query(base, promql).await;
        if ok(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{promql}: condition not met within {timeout:?}; last result: {r:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
