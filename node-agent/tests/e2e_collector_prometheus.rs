//! End to end: the real `node-agent` binary exports OTLP/gRPC every second to the real
//! `otel-collector` binary (otlp receiver → batch → prometheus exporter), a real Prometheus
//! scrapes the exporter every second (`honor_labels: true`), and the test queries Prometheus
//! for the translated names (`system_cpu_time_seconds_total`, `system_memory_usage_bytes`,
//! `system_network_io_bytes_total`, `system_filesystem_usage_bytes`, `process_*`,
//! `target_info`), the labels (`job` from `service.name`, `instance` from
//! `service.instance.id`, attribute labels) and values checked against /proc, /proc/meminfo
//! and statvfs read by the test itself.
//!
//! Needs `prometheus` on PATH (`make deps`) and the `otel-collector` binary of the same target
//! dir: `cargo test --workspace` builds it; alone, run
//! `cargo build -p otel-collector && cargo test -p node-agent --test e2e_collector_prometheus`.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use test_support::collector::{collector_bin, start_collector};
use test_support::prometheus::{honor_labels_scrape_config, query_until, start_prometheus, Sample};
use test_support::{free_port, require_bin, Procs, TempDir};

/// Bound of every wait for data to show up in Prometheus.
const WAIT: Duration = Duration::from_secs(60);

/// `cpu` line of /proc/stat: seconds of (user, sum of all modes), and the number of `cpuN` lines.
fn proc_stat() -> (f64, f64, usize) {
    let text = std::fs::read_to_string("/proc/stat").expect("read /proc/stat");
    let tps = procfs::ticks_per_second() as f64;
    let total: Vec<f64> = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .expect("cpu line")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse::<f64>().expect("number") / tps)
        .collect();
    let cores = text
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    // user nice system idle iowait irq softirq steal (guest is already inside user/nice).
    (total[0], total.iter().take(8).sum(), cores)
}

/// A /proc/meminfo field in bytes.
fn meminfo(field: &str) -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} in /proc/meminfo"));
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("meminfo value");
    kib * 1024.0
}

/// (receive, transmit) bytes of `dev` in /proc/net/dev.
fn net_dev_bytes(dev: &str) -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/net/dev").expect("read /proc/net/dev");
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == dev {
            let v: Vec<f64> = rest
                .split_whitespace()
                .map(|x| x.parse().expect("number"))
                .collect();
            return (v[0], v[8]);
        }
    }
    panic!("{dev} not in /proc/net/dev");
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read hostname")
        .trim()
        .to_string()
}

fn labels<'a>(r: impl IntoIterator<Item = &'a Sample>, key: &str) -> BTreeSet<String> {
    r.into_iter().map(|s| s.label(key).to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_to_collector_to_prometheus() {
    let collector = collector_bin(env!("CARGO_BIN_EXE_node-agent"));
    require_bin("prometheus");
    let dir = TempDir::new("node-agent");
    let mut procs = Procs::default();
    let otlp_port = free_port();
    let exporter_port = free_port();
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp_port}
processors:
  batch:
    timeout: 200ms
exporters:
  prometheus:
    endpoint: 127.0.0.1:{exporter_port}
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [prometheus]
"#
    );
    let collector_i = start_collector(
        &mut procs,
        &collector,
        &dir,
        &config,
        &[otlp_port, exporter_port],
    )
    .await;
    let targets = [format!("127.0.0.1:{exporter_port}")];
    let prometheus =
        start_prometheus(&honor_labels_scrape_config("otel-collector", &targets), &[]).await;
    let prom = prometheus.url();

    let (user_before, _, cores) = proc_stat();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_node-agent"));
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") || k == "NODE_AGENT_CONFIG" || k == "K8S_NODE_NAME" {
            agent.env_remove(k);
        }
    }
    agent
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{otlp_port}"),
        )
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
        .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=e2e")
        .env("RUST_LOG", "info");
    let agent_i = procs.spawn("node-agent", agent, dir.join("node-agent.log"));

    // target_info: one per resource; job = service.name, instance = service.instance.id
    // (the host name), the other resource attributes as labels.
    let host = hostname();
    let info = query_until(prom, r#"target_info{job="node-agent"}"#, WAIT, |r| {
        !r.is_empty()
    })
    .await;
    procs.assert_running(agent_i);
    assert_eq!(info.len(), 1, "{info:#?}");
    let info = &info[0];
    assert_eq!(info.label("instance"), host, "{info:?}");
    assert_eq!(info.label("host_name"), host, "{info:?}");
    assert_eq!(info.label("os_type"), "linux", "{info:?}");
    assert_eq!(info.label("deployment_environment"), "e2e", "{info:?}");
    assert!(!info.label("host_arch").is_empty(), "{info:?}");
    assert!(!info.label("service_version").is_empty(), "{info:?}");
    assert!(
        info.labels.get("service_name").is_none()
            && info.labels.get("service_instance_id").is_none(),
        "service.name / service.instance.id become job / instance, not labels: {info:?}"
    );

    // CPU: machine-wide series (no cpu_logical_number) for every mode, the user seconds within
    // what /proc/stat said before the agent started and after the query.
    let total_sel = r#"system_cpu_time_seconds_total{job="node-agent",cpu_logical_number=""}"#;
    let modes = BTreeSet::from(
        [
            "user",
            "nice",
            "system",
            "idle",
            "iowait",
            "interrupt",
            "steal",
        ]
        .map(String::from),
    );
    let cpu = query_until(prom, total_sel, WAIT, |r| labels(r, "cpu_mode") == modes).await;
    let (user_after, all_after, _) = proc_stat();
    for s in &cpu {
        assert_eq!(s.label("instance"), host, "{s:?}");
        assert!(s.value >= 0.0, "{s:?}");
    }
    let user = cpu
        .iter()
        .find(|s| s.label("cpu_mode") == "user")
        .expect("user")
        .value;
    assert!(
        user > 0.0 && user >= user_before - 0.02 && user <= user_after + 0.02,
        "user CPU seconds {user} outside /proc/stat's [{user_before}, {user_after}]"
    );
    let sum1: f64 = cpu.iter().map(|s| s.value).sum();
    assert!(
        sum1 <= all_after + 0.1,
        "sum over modes {sum1} > /proc/stat's {all_after}"
    );
    // Counters keep increasing with new collections.
    let sum_sel = format!("sum({total_sel})");
    query_until(prom, &sum_sel, WAIT, |r| r.len() == 1 && r[0].value > sum1).await;
    // Per core: one series per cpuN line of /proc/stat.
    let per_core = query_until(
        prom,
        r#"count(count by (cpu_logical_number) (system_cpu_time_seconds_total{job="node-agent",cpu_logical_number!=""}))"#,
        WAIT,
        |r| r.len() == 1,
    )
    .await;
    assert_eq!(per_core[0].value, cores as f64, "{per_core:?}");

    // Memory: the states add up to MemTotal.
    let mem = query_until(
        prom,
        r#"system_memory_usage_bytes{job="node-agent"}"#,
        WAIT,
        |r| {
            labels(r, "system_memory_state")
                == BTreeSet::from(["used", "free", "buffers", "cached"].map(String::from))
        },
    )
    .await;
    let mem_total = meminfo("MemTotal");
    let mem_sum: f64 = mem.iter().map(|s| s.value).sum();
    assert!(
        (mem_sum - mem_total).abs() <= 0.05 * mem_total,
        "memory states sum {mem_sum} vs MemTotal {mem_total}: {mem:#?}"
    );
    assert!(mem.iter().all(|s| s.value >= 0.0), "{mem:#?}");

    // Network: loopback carries this very test's traffic (OTLP, scrapes, queries).
    let lo = query_until(
        prom,
        r#"system_network_io_bytes_total{job="node-agent",network_interface_name="lo"}"#,
        WAIT,
        |r| {
            labels(r, "network_io_direction")
                == BTreeSet::from(["receive", "transmit"].map(String::from))
                && r.iter().all(|s| s.value > 0.0)
        },
    )
    .await;
    let (rx, tx) = net_dev_bytes("lo");
    for s in &lo {
        let now = if s.label("network_io_direction") == "receive" {
            rx
        } else {
            tx
        };
        assert!(s.value <= now, "{s:?} exceeds /proc/net/dev's {now}");
    }

    // Filesystem: for a reported mount point, used + free + reserved = the size statvfs gives.
    let fs = query_until(
        prom,
        r#"system_filesystem_usage_bytes{job="node-agent"}"#,
        WAIT,
        |r| !r.is_empty(),
    )
    .await;
    let mountpoint = if fs
        .iter()
        .any(|s| s.label("system_filesystem_mountpoint") == "/")
    {
        "/".to_string()
    } else {
        fs[0].label("system_filesystem_mountpoint").to_string()
    };
    let of_mount: Vec<&Sample> = fs
        .iter()
        .filter(|s| s.label("system_filesystem_mountpoint") == mountpoint)
        .collect();
    assert_eq!(
        labels(of_mount.iter().copied(), "system_filesystem_state"),
        BTreeSet::from(["used", "free", "reserved"].map(String::from)),
        "{of_mount:#?}"
    );
    assert!(
        of_mount.iter().all(|s| !s.label("system_device").is_empty()
            && !s.label("system_filesystem_type").is_empty()),
        "{of_mount:#?}"
    );
    let st = rustix::fs::statvfs(mountpoint.as_str()).expect("statvfs");
    let size = st.f_blocks as f64 * st.f_frsize as f64;
    let fs_sum: f64 = of_mount.iter().map(|s| s.value).sum();
    assert!(
        (fs_sum - size).abs() <= 0.001 * size,
        "{mountpoint}: used + free + reserved = {fs_sum}, statvfs size {size}"
    );

    // Processes: the top-N (5 by CPU ∪ 5 by memory) with their identifying labels.
    let pcpu = query_until(
        prom,
        r#"process_cpu_time_seconds_total{job="node-agent"}"#,
        WAIT,
        |r| !r.is_empty(),
    )
    .await;
    // (No upper bound on the number of processes here: the exporter keeps a series that
    // left the top-N for its `metric_expiration`, so Prometheus sees the union of several
    // collections. The per-collection bound is tested in `otlp_export.rs`.)
    for s in &pcpu {
        assert!(s.label("process_pid").parse::<u32>().is_ok(), "{s:?}");
        assert!(!s.label("process_executable_name").is_empty(), "{s:?}");
        assert!(["user", "system"].contains(&s.label("cpu_mode")), "{s:?}");
        assert_eq!(s.label("instance"), host, "{s:?}");
        assert!(s.value >= 0.0, "{s:?}");
    }
    let rss = query_until(
        prom,
        r#"process_memory_usage_bytes{job="node-agent"}"#,
        WAIT,
        |r| !r.is_empty(),
    )
    .await;
    // Kernel threads (top-N by CPU) have no RSS; the top-N by memory do.
    assert!(
        rss.iter().all(|s| s.value >= 0.0) && rss.iter().any(|s| s.value > 0.0),
        "{rss:#?}"
    );

    procs.assert_running(agent_i);
    procs.assert_running(collector_i);
}
