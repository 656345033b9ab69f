//! The `otel-collector` binary, run by the tests of other crates.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::Procs;

/// The `otel-collector` binary of the same cargo target dir and profile as the calling test,
/// i.e. next to that crate's own binary (`bin_of_this_crate`, from
/// `env!("CARGO_BIN_EXE_...")`), built first when needed ([`crate::bins::workspace_bin`]).
pub fn collector_bin(bin_of_this_crate: &str) -> PathBuf {
    crate::bins::workspace_bin(bin_of_this_crate, "otel-collector", "otel-collector")
}

/// Writes `config_yaml` to `dir/collector.yaml`, checks it with `otel-collector validate`,
/// starts `otel-collector --config` (log in `dir/collector.log`) and waits until every port in
/// `ports` listens. Returns the process index in `procs`.
pub async fn start_collector(
    procs: &mut Procs,
    bin: &Path,
    dir: &Path,
    config_yaml: &str,
    ports: &[u16],
) -> usize {
    let config = dir.join("collector.yaml");
    std::fs::write(&config, config_yaml).expect("write collector config");
    validate(bin, &config, config_yaml);
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env_remove("LOG_FORMAT");
    let i = procs.spawn("otel-collector", cmd, dir.join("collector.log"));
    for &port in ports {
        procs.wait_port(i, port).await;
    }
    i
}

/// Panics with the collector's answer unless `otel-collector validate` accepts `config`.
fn validate(bin: &Path, config: &Path, config_yaml: &str) {
    let out = Command::new(bin)
        .args(["validate", "--config"])
        .arg(config)
        .output()
        .expect("run otel-collector validate");
    assert!(
        out.status.success(),
        "{} validate rejected the generated config:\n{config_yaml}\n{}{}",
        bin.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
