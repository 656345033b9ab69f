//! The agent works unprivileged: run as `nobody` (via `setpriv`, when the test runs as
//! root), `--once` still succeeds with host and process metrics, and the files it cannot
//! read (other users' `/proc/<pid>/io` and `fd/`) are skipped and counted in
//! `node_agent.unreadable_files{scraper="process"}`.
//! When the test itself is not root, the agent already runs unprivileged and only the
//! success and content are checked (the count then depends on whose processes are top-N).
//!
//! As root the binary is first copied into a temporary directory `nobody` can traverse: the
//! checkout may lie under a directory it cannot (e.g. `/root`, mode 700 on Debian).
//!
//! Run: `cargo test -p node-agent --test unprivileged`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use test_support::TempDir;

fn uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("effective uid")
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A copy of `bin` in a fresh directory every user can traverse (mode 755).
fn readable_copy(bin: &Path, dir: &TempDir) -> PathBuf {
    chmod(dir, 0o755);
    let copy = dir.join("node-agent");
    std::fs::copy(bin, &copy).expect("copy the node-agent binary");
    chmod(&copy, 0o755);
    copy
}

/// `node-agent --once` as `nobody` when root (from a readable copy of `bin`), else as is.
fn once_unprivileged(bin: &Path) -> Output {
    let copy_dir = TempDir::new("node-agent-bin");
    let mut cmd = if uid() == 0 {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(readable_copy(bin, &copy_dir));
        c
    } else {
        Command::new(bin)
    };
    cmd.args(["--once", "--once-window", "100ms"])
        .env_remove("NODE_AGENT_CONFIG")
        .current_dir("/")
        .output()
        .expect("run node-agent (setpriv from util-linux when root)")
}

#[test]
fn runs_as_nobody_from_a_checkout_nobody_cannot_traverse() {
    if uid() != 0 {
        eprintln!("not root: the agent already runs unprivileged (see the other test)");
        return;
    }
    // The binary under a mode-700 directory, as in a clone under /root.
    let private = TempDir::new("node-agent-private");
    chmod(&private, 0o700);
    let bin = private.join("node-agent");
    std::fs::copy(env!("CARGO_BIN_EXE_node-agent"), &bin).expect("copy the binary");
    let out = once_unprivileged(&bin);
    assert!(
        out.status.success(),
        "node-agent --once failed as nobody: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn once_as_nobody_skips_and_counts_unreadable_files() {
    let as_root = uid() == 0;
    let out = once_unprivileged(Path::new(env!("CARGO_BIN_EXE_node-agent")));
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
