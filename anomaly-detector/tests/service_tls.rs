//! TLS towards Prometheus: a REAL Prometheus serving HTTPS (`--web.config.file` with a server
//! certificate signed by a throw-away CA made with `openssl`) is queried successfully with
//! `prometheus.tls.ca_file`, and refused without it.
//!
//! Needs `prometheus` (`make deps`) and `openssl`.
//! Run: `cargo test -p anomaly-detector --test service_tls`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anomaly_detector::config::PrometheusConfig;
use anomaly_detector::prometheus::PrometheusClient;
use test_support::prometheus::Prometheus;
use test_support::tls::TestCerts;
use test_support::TempDir;
use tokio_util::sync::CancellationToken;

fn client(url: &str, ca: Option<PathBuf>) -> PrometheusClient {
    let mut c: PrometheusConfig = serde_yaml::from_str(&format!(
        "url: '{url}'\ntimeout: 5s\nretry: {{max_attempts: 1}}\nheaders: {{Authorization: 'Bearer not-checked-by-prometheus'}}"
    ))
    .unwrap();
    c.tls.ca_file = ca;
    PrometheusClient::new(&c).unwrap()
}

#[tokio::test]
async fn queries_prometheus_over_https_with_the_configured_ca() {
    let dir = TempDir::new("anomaly-detector-tls");
    let certs = TestCerts::create(&dir);
    let prom = Prometheus::new("").tls(&certs).start().await;

    let trusted = client(prom.url(), Some(certs.ca.clone()));
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
    let err = client(prom.url(), None)
        .query_range("vector(1)", now - 60, now, Duration::from_secs(15), &cancel)
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}
