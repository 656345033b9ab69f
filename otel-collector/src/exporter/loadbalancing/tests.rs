use super::*;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn parse(yaml: &str) -> Result<LoadBalancingConfig, ComponentConfigError> {
    let c: LoadBalancingConfig = super::super::parse_as(serde_yaml::from_str(yaml).unwrap())?;
    c.validate()?;
    Ok(c)
}

const AGENT: &str = r#"
routing_key: traceID
protocol:
  otlp:
    tls: {insecure: true}
    compression: gzip
    timeout: 10s
    retry_on_failure: {enabled: true, max_elapsed_time: 5m}
    sending_queue: {enabled: true, queue_size: 1000}
resolver:
  dns: {hostname: gw-headless.observability.svc.cluster.local, port: 4317, interval: 15s}
"#;

#[test]
fn upstream_shapes_parse() {
    let c = parse(AGENT).unwrap();
    assert_eq!(c.routing_key, RoutingKey::TraceId);
    assert_eq!(
        c.resolver.dns.as_ref().unwrap().interval,
        Duration::from_secs(15)
    );
    let (q, _) = c.queue_and_retry().unwrap();
    assert_eq!(q.queue_size, 1000);
    let c = parse(
        "routing_key: service\nprotocol: {otlp: {tls: {insecure: true}}}\nresolver: {static: {hostnames: [a, 'b:4000']}}",
    )
    .unwrap();
    assert_eq!(c.routing_key, RoutingKey::Service);
    assert_eq!(static_endpoint("a"), "a:4317");
    assert_eq!(static_endpoint("b:4000"), "b:4000");
    assert_eq!(static_endpoint("10.0.0.1"), "10.0.0.1:4317");
}

#[test]
fn config_errors_name_the_key() {
    let e = parse("protocol: {otlp: {compresion: gzip}}\nresolver: {static: {hostnames: [a]}}")
        .unwrap_err();
    assert_eq!(e.path, "protocol.otlp.compresion", "{e}");
    let e = parse("protocol: {otlp: {endpoint: 'x:1'}}\nresolver: {static: {hostnames: [a]}}")
        .unwrap_err();
    assert_eq!(e.path, "protocol.otlp.endpoint");
    let e = parse("protocol: {otlp: {}}\nresolver: {}").unwrap_err();
    assert_eq!(e.path, "resolver");
    let e = parse("protocol: {otlp: {}}\nresolver: {static: {hostnames: []}}").unwrap_err();
    assert_eq!(e.path, "resolver.static.hostnames");
    let e =
        parse("routing_key: streamID\nprotocol: {otlp: {}}\nresolver: {static: {hostnames: [a]}}")
            .unwrap_err();
    assert_eq!(e.path, "routing_key");
    let e = parse("protocol: {otlp: {}}\nresolver: {k8s: {service: x}}").unwrap_err();
    assert!(e.message.contains("k8s"), "{e}");
}

fn keys(n: usize) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(5);
    (0..n).map(|_| fnv(&rng.random::<[u8; 16]>())).collect()
}

/// The endpoint each key goes to among `eps` (rendezvous).
fn owners(eps: &[&str], keys: &[u64]) -> Vec<String> {
    keys.iter()
        .map(|k| {
            eps.iter()
                .max_by_key(|e| score(fnv(e.as_bytes()), *k))
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn rendezvous_spreads_evenly_and_moves_only_what_it_must() {
    let ks = keys(30_000);
    let three = ["10.0.0.1:4317", "10.0.0.2:4317", "10.0.0.3:4317"];
    let before = owners(&three, &ks);
    for e in three {
        let n = before.iter().filter(|o| *o == e).count() as f64;
        assert!((n - 10_000.0).abs() < 1_000.0, "{e}: {n}");
    }
    // Taking one out moves exactly its keys, and spreads them over the others.
    let two = owners(&three[..2], &ks);
    for (b, a) in before.iter().zip(&two) {
        if b != three[2].to_string().as_str() {
            assert_eq!(a, b, "a key of a remaining endpoint moved");
        }
    }
    // Adding a fourth moves about a quarter, all of them to the new one.
    let four = owners(&[three[0], three[1], three[2], "10.0.0.4:4317"], &ks);
    let moved: Vec<_> = before.iter().zip(&four).filter(|(b, a)| b != a).collect();
    assert!(moved.iter().all(|(_, a)| a.as_str() == "10.0.0.4:4317"));
    let share = moved.len() as f64 / ks.len() as f64;
    assert!((0.22..0.28).contains(&share), "{share}");
}

fn span(trace: u8) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![1; 8],
        ..Default::default()
    }
}

fn rs(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(AnyInner::StringValue(service.into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn split_by_trace_and_by_service() {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![
            rs("a", vec![span(1), span(2), span(1)]),
            rs("b", vec![span(2), span(3)]),
        ],
    };
    let parts = split(Telemetry::Traces(req.clone()), RoutingKey::TraceId);
    assert_eq!(parts.len(), 3);
    for (k, t) in &parts {
        let Telemetry::Traces(r) = t else { panic!() };
        let ids: Vec<&Vec<u8>> = r
            .resource_spans
            .iter()
            .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
            .map(|s| &s.trace_id)
            .collect();
        assert!(ids.iter().all(|i| fnv(i) == *k), "one trace per part");
    }
    let total: usize = parts.iter().map(|(_, t)| t.item_count()).sum();
    assert_eq!(total, 5);
    let parts = split(Telemetry::Traces(req), RoutingKey::Service);
    assert_eq!(parts.len(), 2);
    let merged = merge(parts.into_iter().map(|(_, t)| t));
    assert_eq!(merged.item_count(), 5);
}

#[tokio::test]
async fn endpoint_list_changes_keep_existing_clients() {
    let c = parse("protocol: {otlp: {tls: {insecure: true}}}\nresolver: {static: {hostnames: ['127.0.0.1:1', '127.0.0.1:2']}}").unwrap();
    let lb = LoadBalancer::new("loadbalancing/t", &c).unwrap();
    assert_eq!(lb.endpoints(), ["127.0.0.1:1", "127.0.0.1:2"]);
    let first = Arc::clone(&lb.snapshot()[0]);
    lb.set_endpoints(vec!["127.0.0.1:3".into(), "127.0.0.1:1".into()])
        .unwrap();
    assert_eq!(lb.endpoints(), ["127.0.0.1:1", "127.0.0.1:3"]);
    assert!(Arc::ptr_eq(&first, &lb.snapshot()[0]));
}

#[tokio::test]
async fn nothing_reachable_keeps_the_parts_for_the_retry() {
    // Two ports nothing listens on: both are taken out, every part stays for the queue's retry.
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let c = parse(&format!(
        "protocol: {{otlp: {{tls: {{insecure: true}}, timeout: 2s}}}}\nresolver: {{static: {{hostnames: ['127.0.0.1:{}', '127.0.0.1:{}']}}}}",
        ports[0], ports[1]
    ))
    .unwrap();
    let lb = LoadBalancer::new("loadbalancing/down", &c).unwrap();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![rs("a", (0..20).map(span).collect())],
    };
    let parts = lb.prepare(Telemetry::Traces(req)).unwrap();
    let e = lb.send(&parts).await.unwrap_err();
    assert!(e.retryable, "{e}");
    let held: usize = parts.take().iter().map(|(_, t)| t.item_count()).sum();
    assert_eq!(held, 20);
    assert!(lb.snapshot().iter().all(|b| !b.is_up(Instant::now())));
}

#[tokio::test]
async fn dns_resolver_routes_to_the_names_addresses_with_the_port() {
    // `localhost` resolves from /etc/hosts without a network; the list it gives is what the
    // balancer routes to, with the configured port.
    let c = parse("protocol: {otlp: {tls: {insecure: true}}}\nresolver: {dns: {hostname: localhost, port: 14317, interval: 50ms}}").unwrap();
    let lb = LoadBalancer::new("loadbalancing/dns", &c).unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(Arc::clone(&lb).run_resolver(cancel.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lb.endpoints().iter().any(|e| e == "127.0.0.1:14317") {
        assert!(
            Instant::now() < deadline,
            "never resolved: {:?}",
            lb.endpoints()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        lb.endpoints().iter().all(|e| e.ends_with(":14317")),
        "{:?}",
        lb.endpoints()
    );
    cancel.cancel();
    task.await.unwrap();
}
