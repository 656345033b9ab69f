use super::*;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::translate::tests::fixture;

fn exporter(config: PrometheusExporterConfig) -> PrometheusExporter {
    PrometheusExporter::new("prometheus/test", config)
}

#[test]
fn text_format_has_types_help_and_series() {
    let e = exporter(PrometheusExporterConfig::default());
    e.ingest(&fixture("gauges_and_sums.json"));
    e.ingest(&fixture("histograms.json"));
    let text = e.render(false);
    for want in [
        "# HELP system_cpu_utilization_ratio CPU share\n",
        "# TYPE system_cpu_utilization_ratio gauge\n",
        "system_cpu_utilization_ratio{cpu=\"0\",instance=\"i-1\",job=\"shop/checkout\",otel_scope_name=\"app.meter\",otel_scope_version=\"1.2\"} 0.25\n",
        "# TYPE http_server_requests_total counter\n",
        "# TYPE http_server_request_duration_seconds histogram\n",
        "http_server_request_duration_seconds_bucket{http_route=\"/api/users\",job=\"api\",otel_scope_name=\"http\",le=\"0.005\"} 1\n",
        "http_server_request_duration_seconds_bucket{http_route=\"/api/users\",job=\"api\",otel_scope_name=\"http\",le=\"+Inf\"} 45\n",
        "http_server_request_duration_seconds_sum{http_route=\"/api/users\",job=\"api\",otel_scope_name=\"http\"} 12.5\n",
        "target_info{host_name=\"h1\",instance=\"i-1\",job=\"shop/checkout\",telemetry_sdk_language=\"python\"} 1\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("# EOF"), "{text}");
    assert!(
        !text.contains("trace_id"),
        "no exemplars in text 0.0.4: {text}"
    );
}

#[test]
fn open_metrics_has_counter_family_names_exemplars_and_eof() {
    let e = exporter(PrometheusExporterConfig {
        enable_open_metrics: true,
        send_timestamps: true,
        ..Default::default()
    });
    e.ingest(&fixture("gauges_and_sums.json"));
    e.ingest(&fixture("histograms.json"));
    let om = e.render(true);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE http_server_requests counter\n"), "{om}");
    assert!(om.contains("http_server_requests_total{"), "{om}");
    assert!(
        om.contains("le=\"0.5\"} 28 1700000000.000 # {span_id=\"eee19b7ec3c1b174\",trace_id=\"5b8efff798038103d269b633813fc60c\"} 0.3 1699999995.000\n"),
        "{om}"
    );
    let text = e.render(false);
    assert!(
        text.contains("le=\"0.5\"} 28 1700000000000\n"),
        "ms timestamps in text: {text}"
    );
}

#[test]
fn const_labels_namespace_and_expiration() {
    let e = exporter(PrometheusExporterConfig {
        namespace: "app".into(),
        const_labels: [("region".to_string(), "eu".to_string())]
            .into_iter()
            .collect(),
        metric_expiration: Duration::from_millis(50),
        ..Default::default()
    });
    e.ingest(&fixture("summary.json"));
    let text = e.render(false);
    assert!(
        text.contains(
            "app_rpc_duration_milliseconds{job=\"legacy\",region=\"eu\",quantile=\"0.5\"} 5\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("app_rpc_duration_milliseconds_count{job=\"legacy\",region=\"eu\"} 10\n"),
        "{text}"
    );
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(e.expire(), 0);
    assert_eq!(e.render(false), "");
}

#[test]
fn an_older_point_does_not_replace_a_newer_one() {
    let e = exporter(PrometheusExporterConfig::default());
    let newer = fixture("gauges_and_sums.json");
    let mut older = newer.clone();
    for rm in &mut older.resource_metrics {
        for sm in &mut rm.scope_metrics {
            for m in &mut sm.metrics {
                if let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Gauge(g)) =
                    &mut m.data
                {
                    for dp in &mut g.data_points {
                        dp.time_unix_nano -= 1_000_000_000;
                        dp.value = Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(0.99));
                    }
                }
            }
        }
    }
    e.ingest(&newer);
    e.ingest(&older);
    let text = e.render(false);
    assert!(text.contains("} 0.25\n"), "{text}");
    assert!(!text.contains("0.99"), "{text}");
}

async fn get(router: Router, accept: Option<&str>) -> (String, String) {
    let mut req = Request::builder().uri("/metrics");
    if let Some(a) = accept {
        req = req.header(header::ACCEPT, a);
    }
    let resp = router
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers()[header::CONTENT_TYPE]
        .to_str()
        .expect("ct")
        .to_string();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (ct, String::from_utf8(body.to_vec()).expect("utf8"))
}

#[tokio::test]
async fn accept_header_selects_the_format() {
    const PROM_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let on = exporter(PrometheusExporterConfig {
        enable_open_metrics: true,
        ..Default::default()
    });
    on.ingest(&fixture("histograms.json"));
    let (ct, body) = get(on.router(), Some(PROM_ACCEPT)).await;
    assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
    assert!(body.ends_with("# EOF\n"));
    let (ct, _) = get(on.router(), None).await;
    assert_eq!(ct, TEXT_CONTENT_TYPE);
    let off = exporter(PrometheusExporterConfig::default());
    let (ct, _) = get(off.router(), Some(PROM_ACCEPT)).await;
    assert_eq!(
        ct, TEXT_CONTENT_TYPE,
        "OpenMetrics only when enable_open_metrics"
    );
}

#[test]
fn config_parses_upstream_keys_and_rejects_unknown_ones() {
    let yaml = "endpoint: 127.0.0.1:9999\nnamespace: x\nconst_labels: {a: b}\nsend_timestamps: true\nmetric_expiration: 10m\nresource_to_telemetry_conversion: {enabled: true}\nenable_open_metrics: true\nadd_metric_suffixes: false\n";
    let c =
        PrometheusExporterConfig::parse(serde_yaml::from_str(yaml).expect("yaml")).expect("parses");
    assert_eq!(c.metric_expiration, Duration::from_secs(600));
    assert!(c.resource_to_telemetry_conversion.enabled);
    c.validate().expect("valid");
    let err = PrometheusExporterConfig::parse(serde_yaml::from_str("endpont: x").expect("yaml"))
        .expect_err("unknown key");
    assert!(err.to_string().contains("endpont"), "{err}");
    let bad = PrometheusExporterConfig {
        endpoint: "nope".into(),
        ..Default::default()
    };
    assert_eq!(bad.validate().expect_err("bad endpoint").path, "endpoint");
    let bad = PrometheusExporterConfig {
        const_labels: [("1x".to_string(), "v".to_string())].into_iter().collect(),
        ..Default::default()
    };
    assert!(bad.validate().is_err());
    assert_eq!(
        PrometheusExporterConfig::parse(serde_yaml::Value::Null).expect("empty"),
        PrometheusExporterConfig::default()
    );
}

#[test]
fn scrape_of_100k_series_renders_every_line() {
    use crate::translate::{MetricKind, Point, PointValue};
    let e = exporter(PrometheusExporterConfig::default());
    let fam = Family {
        name: "bench_gauge".into(),
        kind: MetricKind::Gauge,
        help: String::new(),
        points: (0..100_000)
            .map(|i| Point {
                labels: vec![("id".into(), i.to_string()), ("job".into(), "b".into())],
                timestamp_ms: 1,
                value: PointValue::Number(i as f64),
                stale: false,
                exemplars: vec![],
            })
            .collect(),
    };
    e.store(vec![fam]);
    let text = e.render(false);
    assert_eq!(text.lines().count(), 100_001);
}

/// The scrape exporter emits `target_info` as upstream's does: also for a resource whose only
/// attributes are `service.name`/`service.namespace`/`service.instance.id`.
#[test]
fn target_info_for_every_resource_with_a_job_or_instance() {
    let e = exporter(PrometheusExporterConfig::default());
    e.ingest(&fixture("target_info_scrape.json"));
    let text = e.render(false);
    for want in [
        "target_info{instance=\"i-1\",job=\"shop/checkout\"} 1\n",
        "target_info{instance=\"i-2\"} 1\n",
        "target_info{host_name=\"h1\",job=\"web\"} 1\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert_eq!(text.matches("\ntarget_info{").count(), 3, "{text}");
}
