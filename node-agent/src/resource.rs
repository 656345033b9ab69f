//! Resource attributes: detected host facts, then the config file's attributes, then
//! `OTEL_RESOURCE_ATTRIBUTES`, then `OTEL_SERVICE_NAME` (later wins).
//!
//! Tests: `cargo test -p node-agent resource::`.

use std::collections::BTreeMap;
use std::path::Path;

use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::config::{parse_kv_list, Config, ConfigError};
use crate::metrics::kv;

/// `host.arch` value for a Rust target architecture.
pub fn host_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

/// `PRETTY_NAME` from an os-release file.
pub fn os_pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        l.strip_prefix("PRETTY_NAME=")
            .map(|v| v.trim().trim_matches('"').to_string())
    })
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The resource attributes, sorted by key.
///
/// # Errors
/// A malformed `OTEL_RESOURCE_ATTRIBUTES`.
pub fn attributes(
    cfg: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut a = BTreeMap::new();
    // Under a host root these name the host (its hostname, machine id and OS), not the container.
    let proc = cfg.root.proc_dir();
    let file = |p: &str| cfg.root.mount_path(p);
    let host = read_trim(&proc.join("sys/kernel/hostname")).unwrap_or_else(|| "unknown".into());
    a.insert("host.name".to_string(), host.clone());
    if let Some(id) =
        read_trim(&file("/etc/machine-id")).or_else(|| read_trim(&file("/var/lib/dbus/machine-id")))
    {
        a.insert("host.id".to_string(), id);
    }
    a.insert(
        "host.arch".to_string(),
        host_arch(std::env::consts::ARCH).to_string(),
    );
    a.insert("os.type".to_string(), "linux".to_string());
    let release = read_trim(&proc.join("sys/kernel/osrelease"));
    let pretty = std::fs::read_to_string(file("/etc/os-release"))
        .ok()
        .and_then(|t| os_pretty_name(&t));
    let desc = match (pretty, release) {
        (Some(p), Some(r)) => format!("{p} (Linux {r})"),
        (Some(p), None) => p,
        (None, Some(r)) => format!("Linux {r}"),
        (None, None) => "Linux".to_string(),
    };
    a.insert("os.description".to_string(), desc);
    a.insert("service.name".to_string(), "node-agent".to_string());
    a.insert(
        "service.version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    a.insert("service.instance.id".to_string(), host);
    let node_env = &cfg.resource.k8s_node_name_env;
    if let Some(node) = (!node_env.is_empty()).then(|| env(node_env)).flatten() {
        if !node.is_empty() {
            a.insert("k8s.node.name".to_string(), node);
        }
    }
    for (k, v) in &cfg.resource.attributes {
        a.insert(k.clone(), v.clone());
    }
    if let Some(s) = env("OTEL_RESOURCE_ATTRIBUTES") {
        for (k, v) in parse_kv_list("OTEL_RESOURCE_ATTRIBUTES", &s)? {
            a.insert(k, v);
        }
    }
    if let Some(s) = env("OTEL_SERVICE_NAME").filter(|s| !s.is_empty()) {
        a.insert("service.name".to_string(), s);
    }
    Ok(a)
}

/// The OTLP resource message for `attrs`.
pub fn to_proto(attrs: &BTreeMap<String, String>) -> Resource {
    Resource {
        attributes: attrs
            .iter()
            .map(|(k, v)| kv(k.clone(), v.clone()))
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_root_names_the_host() {
        let mut cfg = Config::default();
        cfg.root.host = Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/hostroot"));
        let a = attributes(&cfg, &|_| None).unwrap();
        assert_eq!(a["host.name"], "fixture-node");
        assert_eq!(a["host.id"], "fixture-machine-id-0123456789abcdef");
        assert!(
            a["os.description"].starts_with("Fixture Linux 1.0"),
            "{a:?}"
        );
    }

    #[test]
    fn precedence_and_k8s_node() {
        let mut cfg = Config::default();
        cfg.resource
            .attributes
            .insert("deployment.environment.name".into(), "dev".into());
        cfg.resource
            .attributes
            .insert("team".into(), "from-file".into());
        let env = |k: &str| match k {
            "K8S_NODE_NAME" => Some("node-7".to_string()),
            "OTEL_RESOURCE_ATTRIBUTES" => Some("team=from-env,service.name=ignored".to_string()),
            "OTEL_SERVICE_NAME" => Some("agent-x".to_string()),
            _ => None,
        };
        let a = attributes(&cfg, &env).unwrap();
        assert_eq!(a["k8s.node.name"], "node-7");
        assert_eq!(a["team"], "from-env");
        assert_eq!(a["deployment.environment.name"], "dev");
        assert_eq!(a["service.name"], "agent-x");
        assert_eq!(a["os.type"], "linux");
        assert!(!a["host.name"].is_empty());
        assert_eq!(a["service.instance.id"], a["host.name"]);
        let a = attributes(&Config::default(), &|_| None).unwrap();
        assert_eq!(a["service.name"], "node-agent");
        assert!(!a.contains_key("k8s.node.name"));
    }

    #[test]
    fn arch_and_os_release() {
        assert_eq!(host_arch("x86_64"), "amd64");
        assert_eq!(host_arch("aarch64"), "arm64");
        assert_eq!(
            os_pretty_name("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n")
                .as_deref(),
            Some("Debian GNU/Linux 13 (trixie)")
        );
    }
}
