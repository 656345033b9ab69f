//! Cross-check against a real `prometheus-node-exporter` (Debian package, `make deps`)
//! scraped at the same moment: node_exporter is scraped, then `node-agent --once` collects,
//! then node_exporter is scraped again, so the agent's reading lies between the two.
//!
//! Tolerances (stated here and in docs/node-agent.md):
//! - CPU seconds per CPU and mode (and the machine total): within [before − 0.02 s,
//!   after + 0.02 s] (/proc/stat has 10 ms resolution; irq + softirq = our `interrupt`).
//! - Network bytes per device and direction: within [before, after] exactly (monotonic).
//! - Memory: MemTotal equal; free, cached, buffers within the change between the two scrapes
//!   plus 2 % of MemTotal (other processes allocate meanwhile).
//! - Filesystem bytes per mount point: size equal to used + free + reserved within 0.1 %;
//!   available within the change between scrapes plus 0.5 % of the size.
//!
//! Run: `cargo test -p node-agent --test node_exporter_crosscheck`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, NumberDataPoint};
use test_support::free_port;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.to_string())
        }
        _ => Err(std::io::Error::other(format!(
            "bad response: {}",
            &out[..out.len().min(200)]
        ))),
    }
}

/// `name{labels}` → value, labels kept as the exposition text (sorted by node_exporter).
type Samples = HashMap<String, f64>;

fn parse_prom(text: &str) -> Samples {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn scrape(port: u16) -> Samples {
    parse_prom(&http_get(port, "/metrics").expect("scrape node_exporter"))
}

fn start_node_exporter() -> (Kill, u16) {
    let port = free_port();
    let child = Command::new("prometheus-node-exporter")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start prometheus-node-exporter ({e}): run `make deps` (Debian package prometheus-node-exporter)")
        });
    let guard = Kill(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    while http_get(port, "/metrics").is_err() {
        assert!(
            Instant::now() < deadline,
            "node_exporter did not answer on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (guard, port)
}

fn agent_once() -> ExportMetricsServiceRequest {
    let out = Command::new(env!("CARGO_BIN_EXE_node-agent"))
        .args(["--once", "--once-window", "100ms"])
        .env_remove("NODE_AGENT_CONFIG")
        .output()
        .expect("run node-agent --once");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .expect("--once prints an ExportMetricsServiceRequest as OTLP JSON")
}

struct Pt {
    attrs: HashMap<String, String>,
    v: f64,
}

fn agent_points(req: &ExportMetricsServiceRequest, name: &str) -> Vec<Pt> {
    let conv = |p: &NumberDataPoint| Pt {
        attrs: p
            .attributes
            .iter()
            .filter_map(|kv| {
                let v = match kv.value.as_ref()?.value.as_ref()? {
                    AV::StringValue(s) => s.clone(),
                    AV::IntValue(i) => i.to_string(),
                    _ => return None,
                };
                Some((kv.key.clone(), v))
            })
            .collect(),
        v: match p.value {
            Some(number_data_point::Value::AsDouble(f)) => f,
            Some(number_data_point::Value::AsInt(i)) => i as f64,
            None => f64::NAN,
        },
    };
    req.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .filter(|m| m.name == name)
        .flat_map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.iter().map(conv).collect::<Vec<_>>(),
            Some(metric::Data::Sum(s)) => s.data_points.iter().map(conv).collect(),
            _ => vec![],
        })
        .collect()
}

fn find<'a>(pts: &'a [Pt], want: &[(&str, &str)]) -> Option<&'a Pt> {
    pts.iter().find(|p| {
        want.iter()
            .all(|(k, v)| p.attrs.get(*k).map(String::as_str) == Some(*v))
            && p.attrs.len() >= want.len()
    })
}

fn bracket(what: &str, before: f64, agent: f64, after: f64, eps: f64) {
    let (lo, hi) = (before.min(after) - eps, before.max(after) + eps);
    assert!(
        agent >= lo && agent <= hi,
        "{what}: agent {agent} outside node_exporter [{before}, {after}] ± {eps}"
    );
}

#[test]
fn totals_agree_with_node_exporter() {
    let (_ne, port) = start_node_exporter();
    let a = scrape(port);
    let req = agent_once();
    let b = scrape(port);
    let g = |s: &Samples, k: &str| -> f64 {
        *s.get(k)
            .unwrap_or_else(|| panic!("node_exporter lacks {k}"))
    };

    // CPU seconds: every CPU and mode, and the machine total.
    let cpu = agent_points(&req, "system.cpu.time");
    let ncpu = cpu
        .iter()
        .filter_map(|p| p.attrs.get("cpu.logical_number"))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(ncpu >= 1);
    let mut checked = 0;
    for n in 0..ncpu {
        let cpu_s = n.to_string();
        for (mode, ne_modes) in [
            ("user", &["user"][..]),
            ("nice", &["nice"]),
            ("system", &["system"]),
            ("idle", &["idle"]),
            ("iowait", &["iowait"]),
            ("steal", &["steal"]),
            ("interrupt", &["irq", "softirq"]),
        ] {
            let ne = |s: &Samples| -> f64 {
                ne_modes
                    .iter()
                    .map(|m| {
                        g(
                            s,
                            &format!("node_cpu_seconds_total{{cpu=\"{n}\",mode=\"{m}\"}}"),
                        )
                    })
                    .sum()
            };
            let p = find(&cpu, &[("cpu.logical_number", &cpu_s), ("cpu.mode", mode)])
                .unwrap_or_else(|| panic!("agent lacks cpu {n} {mode}"));
            bracket(&format!("cpu{n} {mode}"), ne(&a), p.v, ne(&b), 0.02);
            checked += 1;
        }
    }
    assert_eq!(checked, ncpu * 7);
    let ne_total = |s: &Samples| -> f64 {
        s.iter()
            .filter(|(k, _)| k.starts_with("node_cpu_seconds_total{"))
            .map(|(_, v)| v)
            .sum()
    };
    let agent_total: f64 = cpu
        .iter()
        .filter(|p| !p.attrs.contains_key("cpu.logical_number"))
        .map(|p| p.v)
        .sum();
    bracket(
        "cpu total",
        ne_total(&a),
        agent_total,
        ne_total(&b),
        0.02 * 7.0 * ncpu as f64,
    );

    // Memory.
    let total = g(&a, "node_memory_MemTotal_bytes");
    let lim = agent_points(&req, "system.memory.limit");
    assert_eq!(lim[0].v, total, "MemTotal");
    let mem = agent_points(&req, "system.memory.usage");
    for (state, ne_name) in [
        ("free", "node_memory_MemFree_bytes"),
        ("cached", "node_memory_Cached_bytes"),
        ("buffers", "node_memory_Buffers_bytes"),
    ] {
        let p = find(&mem, &[("system.memory.state", state)]).unwrap();
        bracket(
            &format!("memory {state}"),
            g(&a, ne_name),
            p.v,
            g(&b, ne_name),
            0.02 * total,
        );
    }

    // Filesystem bytes per mount point seen by both.
    let fs = agent_points(&req, "system.filesystem.usage");
    let mut mounts = 0;
    for (k, size) in a
        .iter()
        .filter(|(k, _)| k.starts_with("node_filesystem_size_bytes{"))
    {
        let labels = &k["node_filesystem_size_bytes".len()..];
        let Some(mp) = labels
            .split("mountpoint=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            continue;
        };
        let state = |s: &str| {
            find(
                &fs,
                &[
                    ("system.filesystem.mountpoint", mp),
                    ("system.filesystem.state", s),
                ],
            )
            .map(|p| p.v)
        };
        let (Some(used), Some(free), Some(reserved)) =
            (state("used"), state("free"), state("reserved"))
        else {
            continue;
        };
        let sum = used + free + reserved;
        assert!(
            (sum - size).abs() <= size * 0.001,
            "{mp}: size {size} vs used+free+reserved {sum}"
        );
        let avail = |s: &Samples| g(s, &format!("node_filesystem_avail_bytes{labels}"));
        bracket(
            &format!("{mp} available"),
            avail(&a),
            free,
            avail(&b),
            size * 0.005,
        );
        mounts += 1;
    }
    assert!(mounts >= 1, "no mount point in common with node_exporter");

    // Network bytes per device and direction.
    let net = agent_points(&req, "system.network.io");
    let mut devices = 0;
    for p in &net {
        let dev = &p.attrs["network.interface.name"];
        let dir = &p.attrs["network.io.direction"];
        let ne_dir = if dir == "receive" {
            "receive"
        } else {
            "transmit"
        };
        let key = format!("node_network_{ne_dir}_bytes_total{{device=\"{dev}\"}}");
        if let (Some(x), Some(y)) = (a.get(&key), b.get(&key)) {
            bracket(&format!("{dev} {dir} bytes"), *x, p.v, *y, 0.0);
            devices += 1;
        }
    }
    assert!(
        devices >= 2,
        "no network device in common with node_exporter"
    );
}
