//! Cost of the service around the model, per evaluation cycle of one detection with many series:
//! decoding the `query_range` JSON, feeding each series' new point to its detector (series
//! lookup, alert decisions), building the store snapshot and rendering `/metrics`.
//!
//! Run: `cargo bench -p anomaly-detector --bench service_cycle` (add `-- --series N` to change
//! the series count, default 10,000). Prints one line per stage with the median of 5 cycles.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anomaly_detector::config::Config;
use anomaly_detector::engine::Tracker;
use anomaly_detector::metrics::Metrics;
use anomaly_detector::prometheus::parse_matrix;
use anomaly_detector::state::{DetectionSnapshot, Store};

const HISTORY: i64 = 300;
const STEP: i64 = 60;
const CYCLES: usize = 5;

fn value(series: usize, t: i64) -> f64 {
    let phase = (series % 97) as f64;
    10.0 + (t as f64 / 3600.0 + phase).sin() + ((t / STEP + series as i64) % 7) as f64 * 0.01
}

/// A `query_range` body with `series` series of `points` points ending at `end`.
fn body(series: usize, end: i64, points: i64) -> String {
    let mut s = String::from(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
    for i in 0..series {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            r#"{{"metric":{{"job":"svc{}","http_route":"/api/r{}","instance":"10.0.{}.{}:8080"}},"values":["#,
            i % 50,
            i % 200,
            i / 250,
            i % 250
        ));
        for p in 0..points {
            let t = end - (points - 1 - p) * STEP;
            if p > 0 {
                s.push(',');
            }
            s.push_str(&format!(r#"[{t},"{}"]"#, value(i, t)));
        }
        s.push_str("]}");
    }
    s.push_str("]}}");
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let series = args
        .iter()
        .position(|a| a == "--series")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000usize);
    let text = "prometheus: {url: 'http://127.0.0.1:9090'}\ndetections: [{name: bench, query: q, step: 1m, history: 1d, max_series: 1000000}]\n";
    let config = Config::from_yaml(text, Path::new("bench.yaml"), |_| None).unwrap();
    let detection = Arc::new(config.detections.into_iter().next().unwrap());
    let mut tracker = Tracker::new(
        detection,
        Duration::from_secs(60),
        "http://127.0.0.1:9090/graph".into(),
        "http://127.0.0.1:3000/d/x".into(),
    );
    let mut end: i64 = 1_800_000_000;

    let t = Instant::now();
    let history = parse_matrix(body(series, end, HISTORY).as_bytes()).unwrap();
    let parse_history = t.elapsed();
    let t = Instant::now();
    tracker.process(history, end);
    let replay = t.elapsed();
    println!(
        "first sight: {series} series x {HISTORY} points: decode {:.3}s, replay {:.3}s ({:.2} us/point)",
        parse_history.as_secs_f64(),
        replay.as_secs_f64(),
        replay.as_secs_f64() * 1e6 / (series as f64 * HISTORY as f64)
    );

    let store = Store::new(["bench"], 10);
    let metrics = Metrics::default();
    let (mut decode, mut process, mut snapshot, mut render) = (vec![], vec![], vec![], vec![]);
    let mut bytes = 0;
    for _ in 0..CYCLES {
        end += STEP;
        let b = body(series, end, 2);
        bytes = b.len();
        let t = Instant::now();
        let r = parse_matrix(b.as_bytes()).unwrap();
        decode.push(t.elapsed());
        let t = Instant::now();
        let out = tracker.process(r, end);
        process.push(t.elapsed());
        assert_eq!(out.series_evaluated as usize, series);
        let t = Instant::now();
        store.publish(DetectionSnapshot {
            name: "bench".into(),
            series: tracker.snapshot(),
            firing: tracker.firing(),
            cycle: Default::default(),
        });
        snapshot.push(t.elapsed());
        let t = Instant::now();
        let text = metrics.render(&store);
        render.push(t.elapsed());
        assert!(text.len() > series * 6 * 40);
    }
    let (d, p, s, r) = (
        median(decode),
        median(process),
        median(snapshot),
        median(render),
    );
    println!("incremental cycle, {series} series, 1 new point each (median of {CYCLES}):");
    println!(
        "  decode query_range JSON ({:.1} MB)  {:8.1} ms",
        bytes as f64 / 1e6,
        d.as_secs_f64() * 1e3
    );
    println!(
        "  feed detectors + alert decisions   {:8.1} ms",
        p.as_secs_f64() * 1e3
    );
    println!(
        "  store snapshot                     {:8.1} ms",
        s.as_secs_f64() * 1e3
    );
    println!(
        "  render /metrics                    {:8.1} ms",
        r.as_secs_f64() * 1e3
    );
    println!(
        "  total                              {:8.1} ms",
        (d + p + s + r).as_secs_f64() * 1e3
    );
}
