//! The agent works unprivileged: run as `nobody` (via `setpriv`, when the test runs as
//! root), `--once` still succeeds with host and process metrics, and the files it cannot
//! read (other users' `/proc/<pid>/io` and `fd/`) are skipped and counted in
//! `node_agent.unreadable_files{scraper="process"}`.
//! When the test itself is not root, the agent already runs unprivileged and only the
//! success and content are checked (the count then depends on whose processes are top-N).
//!
//! Run: `cargo test -p node-agent --test unprivileged`.

use std::process::Command;

fn uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("effective uid")
}

#[test]
fn once_as_nobody_skips_and_counts_unreadable_files() {
    let bin = env!("CARGO_BIN_EXE_node-agent");
    let as_root = uid() == 0;
    let mut cmd = if as_root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin]);
        c
    } else {
        Command::new(bin)
    };
    let out = cmd
        .args(["--once", "--once-window", "100ms"])
        .env_remove("NODE_AGENT_CONFIG")
        .output()
        .expect("run node-agent (setpriv from util-linux when root)");
    assert!(
        out.status.success(),
        "node-agent --once failed unprivileged: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("OTLP JSON");
    let metrics = v["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
        .as_array()
        .expect("metrics array");
    let names: Vec<&str> = metrics.iter().filter_map(|m| m["name"].as_str()).collect();
    for want in [
        "system.cpu.time",
        "system.memory.usage",
        "process.memory.usage",
    ] {
        assert!(names.contains(&want), "missing {want}: {names:?}");
    }
    if as_root {
        let unreadable = metrics
            .iter()
            .find(|m| m["name"] == "node_agent.unreadable_files")
            .expect(
                "root's processes in the top-N are unreadable for nobody, so the counter exists",
            );
        let pts = unreadable["sum"]["dataPoints"].as_array().unwrap();
        let process = pts
            .iter()
            .find(|p| p["attributes"][0]["value"]["stringValue"] == "process")
            .expect("scraper=process point");
        let n: u64 = process["asInt"].as_str().unwrap().parse().unwrap();
        assert!(n >= 1, "unreadable count {n}");
    }
}
