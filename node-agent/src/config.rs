//! Agent configuration: the YAML file, its defaults, and the standard `OTEL_*` environment
//! variables layered on top (environment wins over the file).
//!
//! Every struct denies unknown keys, so a typo is an error at start that names the key.
//! Defaults live in the `Default` impls below and nowhere else.
//!
//! Tests: `cargo test -p node-agent config::`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Errors the configuration can produce; each names the input and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}; pass an existing file with --config")]
    Read {
        /// File that was asked for.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The YAML did not match the schema (unknown key, wrong type, ...).
    #[error("invalid config file {path}: {source}; see node-agent/config/node-agent.yaml for the schema")]
    Parse {
        /// File that was parsed.
        path: PathBuf,
        /// serde_yaml's message, which names the key and line.
        source: serde_yaml::Error,
    },
    /// A value was syntactically fine but not usable.
    #[error("invalid setting {key} = {value:?}: {reason}")]
    Invalid {
        /// Config key or environment variable.
        key: String,
        /// The offending value.
        value: String,
        /// What is wrong and what to do.
        reason: String,
    },
}

/// Whole agent configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Default collection (and export) interval for every scraper.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Where procfs is mounted, or the host's root in a container (`root.host`).
    pub root: RootConfig,
    /// Which scrapers run and how.
    pub scrapers: ScrapersConfig,
    /// Resource attributes added to every export.
    pub resource: ResourceConfig,
    /// OTLP export settings.
    pub export: ExportConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            root: RootConfig::default(),
            scrapers: ScrapersConfig::default(),
            resource: ResourceConfig::default(),
            export: ExportConfig::default(),
        }
    }
}

/// Where the agent reads the machine it reports on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RootConfig {
    /// procfs mount point (ignored when `host` is set).
    pub proc: PathBuf,
    /// The host's root filesystem, mounted in a container (`--host-root`): procfs is read from
    /// `<host>/proc`, the network and mount tables from the host's pid 1 (`<host>/proc/1/net/*`,
    /// `<host>/proc/1/mounts`), and each mount point is `statvfs`ed under `<host>`.
    pub host: Option<PathBuf>,
}

/// Default procfs mount point.
const DEFAULT_PROC: &str = "/proc";

impl Default for RootConfig {
    fn default() -> Self {
        Self {
            proc: PathBuf::from(DEFAULT_PROC),
            host: None,
        }
    }
}

impl RootConfig {
    /// The procfs directory read.
    pub fn proc_dir(&self) -> PathBuf {
        match &self.host {
            Some(h) => h.join("proc"),
            None => self.proc.clone(),
        }
    }

    /// The procfs-relative directory of the network tables: the host's pid 1 network
    /// namespace under a host root, the agent's own otherwise.
    pub fn net_dir(&self) -> &'static str {
        if self.host.is_some() {
            "1/net"
        } else {
            "net"
        }
    }

    /// The procfs-relative mount table: the host's pid 1 mount namespace under a host root,
    /// the agent's own (what its `statvfs` sees) otherwise.
    pub fn mounts_file(&self) -> &'static str {
        if self.host.is_some() {
            "1/mounts"
        } else {
            "self/mounts"
        }
    }

    /// Where a mount point of the mount table is reachable from the agent.
    pub fn mount_path(&self, mountpoint: &str) -> PathBuf {
        match &self.host {
            Some(h) => h.join(mountpoint.trim_start_matches('/')),
            None => PathBuf::from(mountpoint),
        }
    }
}

/// Settings shared by the simple scrapers: on/off and an optional own interval.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Toggle {
    /// Whether the scraper runs.
    pub enabled: bool,
    /// Own interval, rounded up to a whole number of top-level `interval`s. Unset = `interval`.
    #[serde(with = "humantime_serde")]
    pub interval: Option<Duration>,
}

impl Default for Toggle {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: None,
        }
    }
}

/// CPU scraper.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CpuConfig {
    /// Whether the scraper runs.
    pub enabled: bool,
    /// Own interval (see [`Toggle::interval`]).
    #[serde(with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Emit one series per logical CPU (`cpu.logical_number`).
    pub per_core: bool,
    /// Emit machine-wide series without `cpu.logical_number`.
    pub total: bool,
}

impl Default for CpuConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: None,
            per_core: true,
            total: true,
        }
    }
}

/// Disk scraper.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DiskConfig {
    /// Whether the scraper runs.
    pub enabled: bool,
    /// Own interval (see [`Toggle::interval`]).
    #[serde(with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Devices whose name matches are skipped (partitions, loop, ram by default, like node_exporter).
    pub exclude_devices: String,
}

impl Default for DiskConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: None,
            exclude_devices: r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p|mmcblk\d+p)\d+$"
                .to_string(),
        }
    }
}

/// Filesystem scraper.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FilesystemConfig {
    /// Whether the scraper runs.
    pub enabled: bool,
    /// Own interval (see [`Toggle::interval`]).
    #[serde(with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Filesystem types skipped (pseudo filesystems by default).
    pub exclude_fs_types: Vec<String>,
    /// Mount points whose path matches are skipped.
    pub exclude_mountpoints: String,
}

impl Default for FilesystemConfig {
    fn default() -> Self {
        let types = [
            "autofs",
            "binfmt_misc",
            "bpf",
            "cgroup",
            "cgroup2",
            "configfs",
            "debugfs",
            "devpts",
            "devtmpfs",
            "fusectl",
            "hugetlbfs",
            "iso9660",
            "mqueue",
            "nsfs",
            "overlay",
            "proc",
            "procfs",
            "pstore",
            "rpc_pipefs",
            "securityfs",
            "selinuxfs",
            "squashfs",
            "sysfs",
            "tracefs",
            "tmpfs",
            "ramfs",
            "nfsd",
            "fuse.lxcfs",
            "fuse.gvfsd-fuse",
            "efivarfs",
        ];
        Self {
            enabled: true,
            interval: None,
            exclude_fs_types: types.iter().map(|s| s.to_string()).collect(),
            exclude_mountpoints: r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
                .to_string(),
        }
    }
}

/// Network scraper.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Whether the scraper runs.
    pub enabled: bool,
    /// Own interval (see [`Toggle::interval`]).
    #[serde(with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Interfaces whose name matches are skipped (empty = keep all).
    pub exclude_interfaces: String,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: None,
            exclude_interfaces: String::new(),
        }
    }
}

/// Top-N process scraper.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessConfig {
    /// Whether per-process metrics are emitted.
    pub enabled: bool,
    /// Own interval (see [`Toggle::interval`]).
    #[serde(with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// How many processes by CPU and how many by memory (the union is reported, at most 2 × top_n).
    pub top_n: usize,
    /// Only processes whose executable name matches (empty = all).
    pub include: String,
    /// Processes whose executable name matches are skipped (empty = none).
    pub exclude: String,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: None,
            top_n: 5,
            include: String::new(),
            exclude: String::new(),
        }
    }
}

/// All scrapers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapersConfig {
    /// `system.cpu.time`, `system.cpu.utilization`.
    pub cpu: CpuConfig,
    /// `system.cpu.load_average.*`.
    pub load: Toggle,
    /// `system.memory.*`.
    pub memory: Toggle,
    /// `system.paging.*`.
    pub paging: Toggle,
    /// `system.disk.*`.
    pub disk: DiskConfig,
    /// `system.filesystem.*`.
    pub filesystem: FilesystemConfig,
    /// `system.network.*`.
    pub network: NetworkConfig,
    /// `system.network.connections` (TCP by state).
    pub connections: Toggle,
    /// `system.processes.count`.
    pub processes: Toggle,
    /// `system.uptime`.
    pub uptime: Toggle,
    /// Top-N `process.*`.
    pub process: ProcessConfig,
}

impl Default for ScrapersConfig {
    fn default() -> Self {
        Self {
            cpu: CpuConfig::default(),
            load: Toggle::default(),
            memory: Toggle::default(),
            paging: Toggle::default(),
            disk: DiskConfig::default(),
            filesystem: FilesystemConfig::default(),
            network: NetworkConfig::default(),
            // Reading /proc/net/tcp{,6} makes the kernel walk the whole TCP hash table
            // (milliseconds on large machines), so connections are counted less often.
            connections: Toggle {
                enabled: true,
                interval: Some(Duration::from_secs(60)),
            },
            processes: Toggle::default(),
            uptime: Toggle::default(),
            process: ProcessConfig::default(),
        }
    }
}

/// Resource settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceConfig {
    /// Extra attributes (lower precedence than `OTEL_RESOURCE_ATTRIBUTES`).
    pub attributes: BTreeMap<String, String>,
    /// Environment variable holding the Kubernetes node name (downward API).
    pub k8s_node_name_env: String,
}

impl Default for ResourceConfig {
    fn default() -> Self {
        Self {
            attributes: BTreeMap::new(),
            k8s_node_name_env: "K8S_NODE_NAME".to_string(),
        }
    }
}

/// OTLP wire protocol.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC.
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    #[serde(rename = "http/json")]
    HttpJson,
}

impl Protocol {
    fn parse(key: &str, v: &str) -> Result<Self, ConfigError> {
        match v.trim() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            "http/json" => Ok(Self::HttpJson),
            other => Err(invalid(key, other, "use grpc, http/protobuf or http/json")),
        }
    }
}

/// Payload compression.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
}

/// TLS settings for the export connection (used when the endpoint is `https://`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the CA certificate(s) to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mTLS (needs `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM client key for mTLS (needs `cert_file`).
    pub key_file: Option<PathBuf>,
}

/// Export settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExportConfig {
    /// Base endpoint, like `OTEL_EXPORTER_OTLP_ENDPOINT` (HTTP appends `/v1/metrics`).
    /// Unset = `http://localhost:4317` for gRPC, `http://localhost:4318` for HTTP.
    pub endpoint: Option<String>,
    /// Full metrics URL, like `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` (used as is).
    pub metrics_endpoint: Option<String>,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Extra request headers (gRPC metadata).
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Payload compression.
    pub compression: Compression,
    /// TLS for `https://` endpoints.
    pub tls: TlsConfig,
    /// Upper bound of the in-memory buffer of unsent collections (encoded bytes).
    pub buffer_max_bytes: usize,
    /// First retry delay after a failed export; doubles up to `max_backoff`.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest delay between retries.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How long shutdown may spend flushing the buffer.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            metrics_endpoint: None,
            protocol: Protocol::Grpc,
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            compression: Compression::None,
            tls: TlsConfig::default(),
            buffer_max_bytes: 4 << 20,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

impl ExportConfig {
    /// The URL requests go to: the metrics endpoint as is, else the base endpoint
    /// (plus `/v1/metrics` for HTTP), else the protocol's default.
    pub fn url(&self) -> String {
        if let Some(u) = &self.metrics_endpoint {
            return u.clone();
        }
        match self.protocol {
            Protocol::Grpc => self
                .endpoint
                .clone()
                .unwrap_or_else(|| "http://localhost:4317".to_string()),
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                let base = self
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| "http://localhost:4318".to_string());
                format!("{}/v1/metrics", base.trim_end_matches('/'))
            }
        }
    }
}

fn invalid(key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// Parses `k1=v1,k2=v2` (the `OTEL_*_HEADERS` / `OTEL_RESOURCE_ATTRIBUTES` format, values
/// percent-decoded).
///
/// # Errors
/// An entry without `=` or with an empty key.
pub fn parse_kv_list(key: &str, s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| invalid(key, part, "expected key=value pairs separated by commas"))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(invalid(key, part, "empty key"));
        }
        out.push((percent_decode(k), percent_decode(v.trim())));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    crate::parse::decode_escapes(s, b'%', 2, 16)
}

impl Config {
    /// Loads the file (or defaults when `path` is `None`), applies the environment from `env`
    /// and validates the result.
    ///
    /// # Errors
    /// Unreadable file, YAML that does not match the schema, or an invalid value.
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                Self::from_yaml(&text).map_err(|source| ConfigError::Parse {
                    path: p.to_path_buf(),
                    source,
                })?
            }
            None => Self::default(),
        };
        cfg.apply_env(env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses YAML text (an empty document gives the defaults).
    ///
    /// # Errors
    /// YAML syntax errors, unknown keys, wrong types.
    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml::Error> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(text)
    }

    /// Applies the standard `OTEL_*` variables (they override the file).
    ///
    /// # Errors
    /// A variable with an unusable value.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let e = &mut self.export;
        if let Some(v) = env("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
            .map(|v| ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", v))
            .or_else(|| {
                env("OTEL_EXPORTER_OTLP_PROTOCOL").map(|v| ("OTEL_EXPORTER_OTLP_PROTOCOL", v))
            })
        {
            e.protocol = Protocol::parse(v.0, &v.1)?;
        }
        if let Some(v) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
            e.endpoint = Some(v);
        }
        if let Some(v) = env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
            e.metrics_endpoint = Some(v);
        }
        for key in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
        ] {
            if let Some(v) = env(key) {
                for (k, v) in parse_kv_list(key, &v)? {
                    e.headers.insert(k, v);
                }
            }
        }
        for key in [
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
        ] {
            if let Some(v) = env(key) {
                let ms: u64 = v
                    .trim()
                    .parse()
                    .map_err(|_| invalid(key, &v, "expected milliseconds as an integer"))?;
                e.timeout = Duration::from_millis(ms);
            }
        }
        for key in [
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
        ] {
            if let Some(v) = env(key) {
                e.compression = match v.trim() {
                    "gzip" => Compression::Gzip,
                    "none" | "" => Compression::None,
                    other => return Err(invalid(key, other, "use gzip or none")),
                };
            }
        }
        if let Some(v) = env("OTEL_EXPORTER_OTLP_CERTIFICATE") {
            e.tls.ca_file = Some(PathBuf::from(v));
        }
        if let Some(v) = env("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE") {
            e.tls.cert_file = Some(PathBuf::from(v));
        }
        if let Some(v) = env("OTEL_EXPORTER_OTLP_CLIENT_KEY") {
            e.tls.key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = env("OTEL_METRIC_EXPORT_INTERVAL") {
            let ms: u64 = v.trim().parse().map_err(|_| {
                invalid(
                    "OTEL_METRIC_EXPORT_INTERVAL",
                    &v,
                    "expected milliseconds as an integer",
                )
            })?;
            self.interval = Duration::from_millis(ms);
        }
        Ok(())
    }

    /// Checks values that the schema cannot: intervals, regexes, TLS pairs.
    ///
    /// # Errors
    /// The first invalid value found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(h) = &self.root.host {
            if self.root.proc != Path::new(DEFAULT_PROC) {
                return Err(invalid(
                    "root.proc",
                    &self.root.proc.display().to_string(),
                    "set either root.host (procfs is then <host>/proc) or root.proc, not both",
                ));
            }
            if !h.is_absolute() {
                return Err(invalid(
                    "root.host",
                    &h.display().to_string(),
                    "must be an absolute path (e.g. /host)",
                ));
            }
        }
        if self.interval < Duration::from_millis(100) {
            return Err(invalid(
                "interval",
                &format!("{:?}", self.interval),
                "must be at least 100ms",
            ));
        }
        for (name, iv) in self.scraper_intervals() {
            if let Some(iv) = iv {
                if iv.is_zero() {
                    return Err(invalid(
                        &format!("scrapers.{name}.interval"),
                        &format!("{iv:?}"),
                        "must be positive (it is rounded up to a multiple of the top-level interval)",
                    ));
                }
            }
        }
        let s = &self.scrapers;
        for (key, re) in [
            ("scrapers.disk.exclude_devices", &s.disk.exclude_devices),
            (
                "scrapers.filesystem.exclude_mountpoints",
                &s.filesystem.exclude_mountpoints,
            ),
            (
                "scrapers.network.exclude_interfaces",
                &s.network.exclude_interfaces,
            ),
            ("scrapers.process.include", &s.process.include),
            ("scrapers.process.exclude", &s.process.exclude),
        ] {
            if let Err(err) = regex::Regex::new(re) {
                return Err(invalid(key, re, &format!("not a valid regex: {err}")));
            }
        }
        if s.process.top_n > 100 {
            return Err(invalid(
                "scrapers.process.top_n",
                &s.process.top_n.to_string(),
                "at most 100",
            ));
        }
        let tls = &self.export.tls;
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(invalid(
                "export.tls",
                "cert_file/key_file",
                "set both cert_file and key_file for mTLS, or neither",
            ));
        }
        let url = self.export.url();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "export.endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)",
                &url,
                "must start with http:// or https://",
            ));
        }
        if self.export.buffer_max_bytes < 64 << 10 {
            return Err(invalid(
                "export.buffer_max_bytes",
                &self.export.buffer_max_bytes.to_string(),
                "at least 65536",
            ));
        }
        Ok(())
    }

    /// Name and own interval of every scraper.
    pub fn scraper_intervals(&self) -> [(&'static str, Option<Duration>); 11] {
        let s = &self.scrapers;
        [
            ("cpu", s.cpu.interval),
            ("load", s.load.interval),
            ("memory", s.memory.interval),
            ("paging", s.paging.interval),
            ("disk", s.disk.interval),
            ("filesystem", s.filesystem.interval),
            ("network", s.network.interval),
            ("processes", s.processes.interval),
            ("uptime", s.uptime.interval),
            ("process", s.process.interval),
            ("connections", s.connections.interval),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn empty_yaml_is_defaults() {
        assert_eq!(Config::from_yaml("").unwrap(), Config::default());
    }

    #[test]
    fn shipped_sample_config_parses_and_validates() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/node-agent.yaml");
        let cfg = Config::load(Some(&p), &no_env).unwrap();
        assert_eq!(cfg.scrapers.process.top_n, 5);
    }

    #[test]
    fn host_root_paths_and_validation() {
        let mut cfg = Config::from_yaml("root: {host: /host}\n").unwrap();
        cfg.validate().unwrap();
        let r = &cfg.root;
        assert_eq!(r.proc_dir(), Path::new("/host/proc"));
        assert_eq!(r.net_dir(), "1/net");
        assert_eq!(r.mounts_file(), "1/mounts");
        assert_eq!(r.mount_path("/var/lib"), Path::new("/host/var/lib"));
        assert_eq!(r.mount_path("/"), Path::new("/host"));
        let own = RootConfig::default();
        assert_eq!(own.proc_dir(), Path::new("/proc"));
        assert_eq!((own.net_dir(), own.mounts_file()), ("net", "self/mounts"));
        assert_eq!(own.mount_path("/var/lib"), Path::new("/var/lib"));
        cfg.root.proc = PathBuf::from("/elsewhere/proc");
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("root.proc") && err.contains("root.host"),
            "{err}"
        );
        let err = Config::from_yaml("root: {host: host}\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
        // root.sys was never read: it is gone, and naming it is an error.
        let err = Config::from_yaml("root: {sys: /sys}\n").unwrap_err();
        assert!(err.to_string().contains("sys"), "{err}");
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = Config::from_yaml("scrapers:\n  cpu:\n    enabeld: true\n").unwrap_err();
        assert!(err.to_string().contains("enabeld"), "{err}");
    }

    #[test]
    fn env_overrides_file() {
        let mut cfg = Config::from_yaml("interval: 5s\nexport:\n  endpoint: http://a:1\n").unwrap();
        let env = |k: &str| match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://b:4318".to_string()),
            "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("http/protobuf".to_string()),
            "OTEL_EXPORTER_OTLP_HEADERS" => Some("api-key=a%20b, x=1".to_string()),
            "OTEL_METRIC_EXPORT_INTERVAL" => Some("2000".to_string()),
            _ => None,
        };
        cfg.apply_env(&env).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.export.url(), "http://b:4318/v1/metrics");
        assert_eq!(cfg.interval, Duration::from_secs(2));
        assert_eq!(cfg.export.headers["api-key"], "a b");
        assert_eq!(cfg.export.headers["x"], "1");
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let env = |k: &str| (k == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| "udp".to_string());
        let err = Config::default().apply_env(&env).unwrap_err().to_string();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && err.contains("grpc"),
            "{err}"
        );
        let cfg = Config::from_yaml("scrapers:\n  process:\n    include: '('\n").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("scrapers.process.include"), "{err}");
        let cfg =
            Config::from_yaml("interval: 10s\nscrapers:\n  disk:\n    interval: 0s\n").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("scrapers.disk.interval"), "{err}");
    }

    #[test]
    fn grpc_url_is_used_as_is() {
        let mut cfg = Config::default();
        assert_eq!(cfg.export.url(), "http://localhost:4317");
        cfg.export.endpoint = Some("http://127.0.0.1:9/".into());
        assert_eq!(cfg.export.url(), "http://127.0.0.1:9/");
    }
}
