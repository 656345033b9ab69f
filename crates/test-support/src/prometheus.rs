//! A real Prometheus (Debian package `prometheus`) for a test, and PromQL queries with bounded
//! polling against anything that serves `/api/v1/query`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bins::require_bin;
use crate::net::free_port;
use crate::process::{Proc, START_TIMEOUT};
use crate::tempdir::TempDir;
use crate::tls::TestCerts;

/// The `global:` section of every generated `prometheus.yml`: scrape and evaluate every second.
const GLOBAL: &str =
    "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n";

/// A server process on 127.0.0.1 with its own temporary directory (config, data, log); killed
/// on drop, its log printed when the test is failing.
pub struct Server {
    proc: Proc,
    url: String,
    port: u16,
    _dir: TempDir,
}

impl Server {
    /// Spawns `cmd` as `name` (log in `dir/<name>.log`) serving `url` on `port`; owns `dir`.
    pub fn spawn(name: &str, cmd: Command, url: String, port: u16, dir: TempDir) -> Server {
        let log = dir.join(format!("{name}.log"));
        Server {
            proc: Proc::spawn(name, cmd, log),
            url,
            port,
            _dir: dir,
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:9090`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// Waits until `GET <url><path>` with `client` answers 2xx; panics with the log when the
    /// process exits or after [`START_TIMEOUT`].
    pub async fn wait_ready(&mut self, path: &str, client: &reqwest::Client) {
        let url = format!("{}{path}", self.url);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            self.proc.assert_running();
            assert!(
                Instant::now() < deadline,
                "{} not ready at {url} after {START_TIMEOUT:?}:\n{}",
                self.proc.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Options of a Prometheus to start; [`Prometheus::start`] runs it.
#[derive(Default)]
pub struct Prometheus {
    scrape_configs: String,
    flags: Vec<String>,
    port: Option<u16>,
    data_dir: Option<PathBuf>,
    tls: Option<TestCerts>,
}

impl Prometheus {
    /// A Prometheus scraping and evaluating every second, with `scrape_configs_yaml` after
    /// its `global:` section (may be empty: nothing scraped).
    pub fn new(scrape_configs_yaml: &str) -> Self {
        Prometheus {
            scrape_configs: scrape_configs_yaml.to_string(),
            ..Default::default()
        }
    }

    /// Adds a command-line flag, e.g. `--web.enable-remote-write-receiver`.
    pub fn flag(mut self, flag: &str) -> Self {
        self.flags.push(flag.to_string());
        self
    }

    /// Listens on `port` instead of a free one picked at start.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Keeps the TSDB in `dir` (e.g. one backfilled beforehand) instead of a fresh one.
    pub fn data_dir(mut self, dir: PathBuf) -> Self {
        self.data_dir = Some(dir);
        self
    }

    /// Serves HTTPS only, with the server certificate of `certs`.
    pub fn tls(mut self, certs: &TestCerts) -> Self {
        self.tls = Some(certs.clone());
        self
    }

    /// Starts Prometheus on 127.0.0.1 and waits for `/-/ready`.
    pub async fn start(self) -> Server {
        let dir = TempDir::new("prometheus");
        let port = self.port.unwrap_or_else(free_port);
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, format!("{GLOBAL}{}", self.scrape_configs))
            .expect("write prometheus.yml");
        let data = self.data_dir.unwrap_or_else(|| dir.join("data"));
        let mut cmd = Command::new(require_bin("prometheus"));
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(&self.flags);
        let (scheme, client) = match &self.tls {
            Some(certs) => {
                let web = dir.join("web.yml");
                std::fs::write(&web, web_config(certs)).expect("write web.yml");
                cmd.arg(format!("--web.config.file={}", web.display()));
                ("https", certs.client())
            }
            None => ("http", reqwest::Client::new()),
        };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let mut server = Server::spawn("prometheus", cmd, url, port, dir);
        server.wait_ready("/-/ready", &client).await;
        server
    }
}

/// Prometheus' `--web.config.file` serving TLS with the server certificate of `certs`.
fn web_config(certs: &TestCerts) -> String {
    format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
        certs.cert.display(),
        certs.key.display()
    )
}

/// Starts Prometheus on a free loopback port with `scrape_configs_yaml` (may be empty) and
/// `extra` flags, and waits until it is ready.
pub async fn start_prometheus(scrape_configs_yaml: &str, extra: &[&str]) -> Server {
    extra
        .iter()
        .fold(Prometheus::new(scrape_configs_yaml), |p, f| p.flag(f))
        .start()
        .await
}

/// A `scrape_configs:` section with one job `job` scraping `targets` with
/// `honor_labels: true`, so `job` and `instance` come from the scraped series.
pub fn honor_labels_scrape_config(job: &str, targets: &[String]) -> String {
    let targets = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "scrape_configs:\n  - job_name: {job}\n    honor_labels: true\n    \
         static_configs:\n      - targets: [{targets}]\n"
    )
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

    /// Reads one element of `data.result` of an instant query answer.
    fn from_result(r: &Value) -> Sample {
        Sample {
            labels: r["metric"].as_object().cloned().unwrap_or_default(),
            value: r["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN),
        }
    }
}

/// Runs a PromQL instant query against `<base>/api/v1/query` (Prometheus, VictoriaMetrics).
pub async fn query(base: &str, promql: &str) -> Vec<Sample> {
    query_with(&reqwest::Client::new(), base, promql).await
}

/// [`query`] with `client` (e.g. one trusting a test CA).
pub async fn query_with(client: &reqwest::Client, base: &str, promql: &str) -> Vec<Sample> {
    let url =
        reqwest::Url::parse_with_params(&format!("{base}/api/v1/query"), &[("query", promql)])
            .expect("query URL");
    let body: Value = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("query {promql}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("query {promql}: not JSON: {e}"));
    assert_eq!(body["status"], "success", "{promql}: {body}");
    body["data"]["result"]
        .as_array()
        .map(|results| results.iter().map(Sample::from_result).collect())
        .unwrap_or_default()
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
