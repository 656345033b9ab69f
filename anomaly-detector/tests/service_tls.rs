//! TLS towards Prometheus: a REAL Prometheus serving HTTPS (`--web.config.file` with a server
//! certificate signed by a throw-away CA made with `openssl`) is queried successfully with
//! `prometheus.tls.ca_file`, and refused without it.
//!
//! Needs `prometheus` (`make deps`) and `openssl`.
//! Run: `cargo test -p anomaly-detector --test service_tls`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anomaly_detector::config::PrometheusConfig;
use anomaly_detector::prometheus::PrometheusClient;
use tokio_util::sync::CancellationToken;

struct Kill(Child, PathBuf);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(self.1.join("prometheus.log")) {
                eprintln!("--- prometheus.log ---\n{log}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn binary(name: &str, hint: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` not found in PATH: {hint}");
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(binary("openssl", "install the Debian package openssl"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn client(port: u16, ca: Option<PathBuf>) -> PrometheusClient {
    let mut c: PrometheusConfig = serde_yaml::from_str(&format!(
        "url: 'https://127.0.0.1:{port}'\ntimeout: 5s\nretry: {{max_attempts: 1}}\nheaders: {{Authorization: 'Bearer not-checked-by-prometheus'}}"
    ))
    .unwrap();
    c.tls.ca_file = ca;
    PrometheusClient::new(&c).unwrap()
}

#[tokio::test]
async fn queries_prometheus_over_https_with_the_configured_ca() {
    let prometheus = binary("prometheus", "run `make deps`");
    let dir = std::env::temp_dir().join(format!("anomaly-detector-tls-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=anomaly-detector test CA",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );
    std::fs::write(
        dir.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            dir.join("server.crt").display(),
            dir.join("server.key").display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        "global: {scrape_interval: 15s}\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(prometheus)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!(
            "--web.config.file={}",
            dir.join("web.yml").display()
        ))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let _guard = Kill(child, dir.clone());

    let trusted = client(port, Some(dir.join("ca.crt")));
    let cancel = CancellationToken::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let series = loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        match trusted
            .query_range("vector(1)", now - 60, now, Duration::from_secs(15), &cancel)
            .await
        {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "HTTPS query with the CA never succeeded: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(series.len(), 1);
    assert!(series[0].points.iter().all(|(_, v)| *v == 1.0));

    // Without the CA the server certificate is not trusted.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let err = client(port, None)
        .query_range("vector(1)", now - 60, now, Duration::from_secs(15), &cancel)
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}
