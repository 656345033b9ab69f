use super::*;
use crate::connector::testing::{failed, histograms, request, span, sums, with_attrs};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

fn graph(yaml: &str) -> ServiceGraph {
    let c: ServiceGraphConfig =
        crate::config::parse_component(serde_yaml::from_str(yaml).unwrap()).unwrap();
    c.validate().unwrap();
    ServiceGraph::new("sg-test", &c)
}

const TOTAL: &str = "traces_service_graph_request_total";
const FAILED: &str = "traces_service_graph_request_failed_total";
const SERVER: &str = "traces_service_graph_request_server";
const CLIENT: &str = "traces_service_graph_request_client";

fn edge(client: &str, server: &str, conn: &str, failed: bool) -> String {
    format!("client={client},connection_type={conn},failed={failed},server={server}")
}

fn collect(g: &ServiceGraph, now: Instant) -> ExportMetricsServiceRequest {
    g.collect(now, 7).expect("metrics")
}

#[test]
fn client_in_one_service_and_server_in_another_make_one_edge() {
    let g = graph("{}");
    let now = Instant::now();
    g.ingest(
        &request(vec![
            (
                "frontend",
                vec![
                    span(1, 1, 0, SpanKind::Server, "GET /", 9_000),
                    span(1, 2, 1, SpanKind::Client, "GET", 3_000),
                ],
            ),
            (
                "inventory",
                vec![span(1, 3, 2, SpanKind::Server, "GET /stock", 60_000)],
            ),
        ]),
        now,
    );
    // The root server span of frontend waits for a caller that never comes.
    assert_eq!(g.pending(), 1);
    let out = collect(&g, now);
    assert_eq!(
        sums(&out, TOTAL),
        vec![(edge("frontend", "inventory", "", false), 1)]
    );
    assert!(
        super::super::testing::metrics(&out, FAILED).is_empty(),
        "no failed series without failures"
    );
    let mut b = vec![0u64; 17];
    b[6] = 1; // 60 ms in (50 ms, 100 ms]
    assert_eq!(
        histograms(&out, SERVER),
        vec![(edge("frontend", "inventory", "", false), b, 0.06)]
    );
    let mut b = vec![0u64; 17];
    b[1] = 1; // 3 ms in (2 ms, 4 ms]
    assert_eq!(
        histograms(&out, CLIENT),
        vec![(edge("frontend", "inventory", "", false), b, 0.003)]
    );
    let m = super::super::testing::metrics(&out, SERVER)[0];
    assert_eq!(m.unit, "s");
}

#[test]
fn errors_on_either_side_mark_the_edge_failed() {
    let g = graph("{}");
    let now = Instant::now();
    g.ingest(
        &request(vec![
            (
                "a",
                vec![
                    span(1, 1, 0, SpanKind::Client, "c", 1),
                    failed(span(2, 1, 0, SpanKind::Client, "c", 1)),
                    span(3, 1, 0, SpanKind::Client, "c", 1),
                ],
            ),
            (
                "b",
                vec![
                    span(1, 2, 1, SpanKind::Server, "s", 1),
                    span(2, 2, 1, SpanKind::Server, "s", 1),
                    failed(span(3, 2, 1, SpanKind::Server, "s", 1)),
                ],
            ),
        ]),
        now,
    );
    let out = collect(&g, now);
    assert_eq!(
        sums(&out, TOTAL),
        vec![
            (edge("a", "b", "", false), 1),
            (edge("a", "b", "", true), 2)
        ]
    );
    assert_eq!(sums(&out, FAILED), vec![(edge("a", "b", "", true), 2)]);
}

#[test]
fn halves_pair_out_of_order_and_across_requests() {
    let g = graph("{}");
    let t0 = Instant::now();
    g.ingest(
        &request(vec![("b", vec![span(1, 2, 1, SpanKind::Server, "s", 1)])]),
        t0,
    );
    g.ingest(
        &request(vec![("c", vec![span(1, 4, 3, SpanKind::Server, "s", 1)])]),
        t0,
    );
    assert_eq!(g.pending(), 2);
    g.ingest(
        &request(vec![("a", vec![span(1, 1, 0, SpanKind::Client, "c", 1)])]),
        t0 + Duration::from_millis(500),
    );
    g.ingest(
        &request(vec![("a", vec![span(1, 3, 0, SpanKind::Client, "c", 1)])]),
        t0 + Duration::from_millis(900),
    );
    assert_eq!(g.pending(), 0);
    assert_eq!(
        sums(&collect(&g, t0 + Duration::from_secs(1)), TOTAL),
        vec![
            (edge("a", "b", "", false), 1),
            (edge("a", "c", "", false), 1)
        ]
    );
}

#[test]
fn late_halves_expire_into_virtual_nodes_or_are_only_counted() {
    let g = graph("store: {ttl: 1s}");
    let t0 = Instant::now();
    g.ingest(
        &request(vec![
            // Client to an uninstrumented peer named by peer.service, and to an unnamed one.
            (
                "a",
                vec![
                    with_attrs(
                        span(1, 1, 0, SpanKind::Client, "c", 1),
                        &[("peer.service", "payments-psp")],
                    ),
                    span(1, 2, 0, SpanKind::Client, "c", 1),
                ],
            ),
            // A root server span (called by a user), and one whose parent is an internal span.
            (
                "b",
                vec![
                    span(2, 5, 0, SpanKind::Server, "s", 1),
                    span(3, 6, 9, SpanKind::Server, "s", 1),
                ],
            ),
        ]),
        t0,
    );
    let before = g.expired_edges.get();
    g.expire(t0 + Duration::from_millis(999));
    assert_eq!(g.pending(), 4, "nothing expires before the ttl");
    g.expire(t0 + Duration::from_secs(1));
    assert_eq!(g.pending(), 0);
    assert_eq!(g.expired_edges.get() - before, 4);
    let out = collect(&g, t0 + Duration::from_secs(1));
    assert_eq!(
        sums(&out, TOTAL),
        vec![
            (edge("a", "payments-psp", "virtual_node", false), 1),
            (edge("a", "unknown", "virtual_node", false), 1),
            (edge("user", "b", "virtual_node", false), 1),
        ]
    );
    // A server half arriving after its client expired opens a new edge; it is never paired.
    g.ingest(
        &request(vec![("z", vec![span(1, 7, 2, SpanKind::Server, "s", 1)])]),
        t0 + Duration::from_secs(2),
    );
    g.expire(t0 + Duration::from_secs(4));
    assert_eq!(
        sums(&collect(&g, t0 + Duration::from_secs(4)), TOTAL).len(),
        3
    );
}

#[test]
fn database_and_messaging_connection_types() {
    let g = graph("{}");
    let now = Instant::now();
    g.ingest(
        &request(vec![
            (
                "orders",
                vec![
                    with_attrs(
                        span(1, 1, 0, SpanKind::Client, "SELECT", 2_500),
                        &[("db.name", "ordersdb")],
                    ),
                    span(1, 2, 0, SpanKind::Producer, "publish", 1),
                ],
            ),
            (
                "shipping",
                vec![span(1, 3, 2, SpanKind::Consumer, "process", 1)],
            ),
        ]),
        now,
    );
    assert_eq!(g.pending(), 0);
    let out = collect(&g, now);
    assert_eq!(
        sums(&out, TOTAL),
        vec![
            (edge("orders", "ordersdb", "database", false), 1),
            (edge("orders", "shipping", "messaging_system", false), 1),
        ]
    );
    // A database edge records the client span's duration on both sides.
    let h = histograms(&out, SERVER);
    assert_eq!(h[0].2, 0.0025);
}

#[test]
fn dimensions_become_client_and_server_labels() {
    let g = graph("dimensions: [http.method, deployment.environment]\nvirtual_node_extra_label: true\nstore: {ttl: 1s}");
    let now = Instant::now();
    g.ingest(
        &request(vec![
            (
                "a",
                vec![with_attrs(
                    span(1, 1, 0, SpanKind::Client, "c", 1),
                    &[("http.method", "GET")],
                )],
            ),
            (
                "b",
                vec![with_attrs(
                    span(1, 2, 1, SpanKind::Server, "s", 1),
                    &[("http.method", "GET"), ("deployment.environment", "prod")],
                )],
            ),
            ("c", vec![span(2, 2, 0, SpanKind::Server, "s", 1)]),
        ]),
        now,
    );
    g.expire(now + Duration::from_secs(1));
    let out = collect(&g, now);
    assert_eq!(
        sums(&out, TOTAL),
        vec![
            ("client=a,client_http.method=GET,connection_type=,failed=false,server=b,server_deployment.environment=prod,server_http.method=GET".to_string(), 1),
            ("client=user,connection_type=virtual_node,failed=false,server=c,virtual_node=client".to_string(), 1),
        ]
    );
}

#[test]
fn the_store_is_bounded_by_max_items() {
    let g = graph("store: {max_items: 2}");
    let now = Instant::now();
    let before = g.dropped_spans.get();
    g.ingest(
        &request(vec![(
            "a",
            (1..=5)
                .map(|i| span(i, i, 0, SpanKind::Client, "c", 1))
                .collect(),
        )]),
        now,
    );
    assert_eq!(g.pending(), 2);
    assert_eq!(g.dropped_spans.get() - before, 3);
    // Completing a waiting edge frees its place.
    g.ingest(
        &request(vec![("b", vec![span(1, 9, 1, SpanKind::Server, "s", 1)])]),
        now,
    );
    assert_eq!(g.pending(), 1);
}

#[test]
fn three_service_orders_give_exact_edge_counts() {
    let g = graph("{}");
    let now = Instant::now();
    for t in 1..=20u8 {
        let mut front = vec![
            span(t, 1, 0, SpanKind::Server, "POST /orders", 30_000),
            span(t, 2, 1, SpanKind::Client, "reserve", 5_000),
        ];
        let mut inv = vec![span(t, 3, 2, SpanKind::Server, "reserve", 4_000)];
        let mut pay = Vec::new();
        if t % 4 != 0 {
            front.push(span(t, 4, 1, SpanKind::Client, "charge", 20_000));
            let s = span(t, 5, 4, SpanKind::Server, "charge", 15_000);
            pay.push(if t % 5 == 0 { failed(s) } else { s });
        }
        // Split: the inventory half of odd traces comes in a later request.
        if t % 2 == 1 {
            g.ingest(&request(vec![("frontend", front), ("payment", pay)]), now);
            g.ingest(&request(vec![("inventory", std::mem::take(&mut inv))]), now);
        } else {
            g.ingest(
                &request(vec![
                    ("frontend", front),
                    ("inventory", inv),
                    ("payment", pay),
                ]),
                now,
            );
        }
    }
    let out = collect(&g, now);
    // 15 traces call payment (t % 4 != 0); 5, 10 and 15 fail (20 does not call it).
    assert_eq!(
        sums(&out, TOTAL),
        vec![
            (edge("frontend", "inventory", "", false), 20),
            (edge("frontend", "payment", "", false), 12),
            (edge("frontend", "payment", "", true), 3),
        ]
    );
    assert_eq!(
        sums(&out, FAILED),
        vec![(edge("frontend", "payment", "", true), 3)]
    );
    let h = histograms(&out, SERVER);
    // Inventory's 4 ms server spans: upper-inclusive, so all in (2 ms, 4 ms].
    let mut b = vec![0u64; 17];
    b[1] = 20;
    assert_eq!(h[0].1, b);
    // Payment's 15 ms in (10 ms, 50 ms], split by the failed label.
    let mut b = vec![0u64; 17];
    b[5] = 12;
    assert_eq!(h[1].1, b);
}

#[test]
fn config_mistakes_are_refused_with_their_key() {
    let bad = |yaml: &str| {
        let v = serde_yaml::from_str(yaml).unwrap();
        match crate::config::parse_component::<ServiceGraphConfig>(v) {
            Err(e) => e.path,
            Ok(c) => c.validate().expect_err(yaml).path,
        }
    };
    assert_eq!(bad("store: {ttl: 0s}"), "store.ttl");
    assert_eq!(bad("store: {max_items: 0}"), "store.max_items");
    assert_eq!(
        bad("latency_histogram_buckets: [1s, 10ms]"),
        "latency_histogram_buckets"
    );
    assert_eq!(bad("store: {size: 3}"), "store.size");
}
