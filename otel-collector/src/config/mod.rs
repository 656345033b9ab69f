//! The collector's configuration in the upstream otelcol YAML format.
//!
//! Loading goes: read each `--config` file → parse YAML → substitute `${env:VAR}` references
//! ([`config_env`], unset variables become empty with a warning) → merge the files in order (maps deeply, later wins, lists replaced — as upstream)
//! → parse each component by its type (the part of the id before `/`) → check the service graph.
//! Every problem is reported with its full key path (`receivers.otlp.protocols.grpc.endpointt`)
//! and the fix; all problems found are reported at once.
//!
//! Unused components: a receiver no pipeline uses is an error (the issue asks for it: it would
//! open a port that feeds nothing); an unused processor, exporter, connector or extension is a
//! warning, as upstream.
//!
//! Tests: `cargo test -p otel-collector config::`.

pub mod duration;
pub mod endpoint;
pub mod error;
mod service;
pub mod suggest;

pub use error::{parse_component, ComponentConfigError};
pub use service::{
    LogEncoding, LogLevel, MetricsLevel, PipelineConfig, ServiceConfig, TelemetryConfig,
    DEFAULT_METRICS_ADDRESS,
};

use crate::connector::ConnectorConfig;
use crate::exporter::ExporterConfig;
use crate::extension::ExtensionConfig;
use crate::pipeline::Signal;
use crate::processor::ProcessorConfig;
use crate::receiver::ReceiverConfig;
use config_env::{key_text, Unset};
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The top-level keys of a config file.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "receivers",
    "processors",
    "exporters",
    "connectors",
    "extensions",
    "service",
];

/// One problem in a config: where (key path) and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Full key path, e.g. `receivers.otlp.protocols.grpc.endpoint`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No `--config` was given.
    #[error("no configuration given: pass --config FILE.yaml (several are merged in order)")]
    NoConfig,
    /// A config file could not be read.
    #[error("cannot read config file {file}: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A config file is not valid YAML.
    #[error("config file {file} is not valid YAML: {message}")]
    Yaml {
        /// The file.
        file: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The config parsed but has mistakes.
    #[error("invalid configuration ({} problem{}):\n  {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<Problem>),
}

/// A component id, `type[/name]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentId {
    /// The type (`otlp`).
    pub kind: String,
    /// The optional name after `/` (`tempo`).
    pub name: Option<String>,
}

impl ComponentId {
    /// Parses `type[/name]`.
    ///
    /// # Errors
    /// A message saying what form is expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (kind, name) = match text.split_once('/') {
            Some((k, n)) => (k, Some(n)),
            None => (text, None),
        };
        let kind_ok = kind.starts_with(|c: char| c.is_ascii_alphabetic())
            && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !kind_ok {
            return Err(format!(
                "invalid component id `{text}`: the type must start with a letter and contain only letters, digits and `_` (form: `type` or `type/name`)"
            ));
        }
        if let Some(n) = name {
            if n.is_empty() || n.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(format!(
                    "invalid component id `{text}`: the name after `/` must be non-empty without spaces or `/` (form: `type/name`)"
                ));
            }
        }
        Ok(ComponentId {
            kind: kind.to_string(),
            name: name.map(str::to_string),
        })
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{n}", self.kind),
            None => f.write_str(&self.kind),
        }
    }
}

/// A kind of component with a typed config chosen by its type name.
pub trait ComponentKind: Sized {
    /// The top-level section (`receivers`).
    const SECTION: &'static str;
    /// The type names implemented.
    fn kinds() -> &'static [&'static str];
    /// Parses the YAML value of one component of type `kind`.
    ///
    /// # Errors
    /// A mistake with its key path inside the component.
    fn parse_kind(kind: &str, value: Value) -> Result<Self, ComponentConfigError>;
    /// Checks values serde cannot.
    ///
    /// # Errors
    /// A mistake with its key path inside the component.
    fn check(&self) -> Result<(), ComponentConfigError>;
}

impl ComponentKind for ExporterConfig {
    const SECTION: &'static str = "exporters";
    fn kinds() -> &'static [&'static str] {
        ExporterConfig::KINDS
    }
    fn parse_kind(kind: &str, value: Value) -> Result<Self, ComponentConfigError> {
        ExporterConfig::parse(kind, value)
    }
    fn check(&self) -> Result<(), ComponentConfigError> {
        self.validate()
    }
}

impl ComponentKind for ExtensionConfig {
    const SECTION: &'static str = "extensions";
    fn kinds() -> &'static [&'static str] {
        ExtensionConfig::KINDS
    }
    fn parse_kind(kind: &str, value: Value) -> Result<Self, ComponentConfigError> {
        ExtensionConfig::parse(kind, value)
    }
    fn check(&self) -> Result<(), ComponentConfigError> {
        self.validate()
    }
}

/// A loaded, checked configuration.
#[derive(Debug)]
pub struct Config {
    /// `receivers`, by id.
    pub receivers: BTreeMap<String, ReceiverConfig>,
    /// `processors`, by id.
    pub processors: BTreeMap<String, ProcessorConfig>,
    /// `exporters`, by id.
    pub exporters: BTreeMap<String, ExporterConfig>,
    /// `connectors`, by id.
    pub connectors: BTreeMap<String, ConnectorConfig>,
    /// `extensions`, by id.
    pub extensions: BTreeMap<String, ExtensionConfig>,
    /// `service`.
    pub service: ServiceConfig,
    /// Things that work but are probably not meant (unused components, unset variables).
    pub warnings: Vec<String>,
    /// The merged, substituted document (what `print-config` shows).
    pub effective: Value,
    /// Components that failed to parse (already reported), so pipelines naming them are not
    /// reported again as undefined.
    broken: BTreeSet<(&'static str, String)>,
}

impl Config {
    /// Loads and merges `paths` in order, substituting from the process environment.
    ///
    /// # Errors
    /// Unreadable files, invalid YAML, or every problem found in the merged config.
    pub fn load(paths: &[PathBuf]) -> Result<Config, ConfigError> {
        if paths.is_empty() {
            return Err(ConfigError::NoConfig);
        }
        let mut docs = Vec::with_capacity(paths.len());
        for p in paths {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                file: p.clone(),
                source,
            })?;
            docs.push((display(p), text));
        }
        let lookup = |name: &str| std::env::var(name).ok();
        Config::from_docs(&docs, &lookup)
    }

    /// Parses, substitutes and merges `(name, yaml)` documents in order.
    ///
    /// # Errors
    /// Invalid YAML, or every problem found in the merged config.
    pub fn from_docs(
        docs: &[(String, String)],
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        let mut merged = Value::Mapping(Mapping::new());
        for (name, text) in docs {
            let mut v: Value = if text.trim().is_empty() {
                Value::Mapping(Mapping::new())
            } else {
                serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml {
                    file: name.clone(),
                    message: e.to_string(),
                })?
            };
            let found =
                config_env::substitute(&mut v, lookup, Unset::EmptyWithWarning).map_err(|e| {
                    ConfigError::Invalid(vec![Problem {
                        path: String::new(),
                        message: format!("{e} (in {name})"),
                    }])
                })?;
            warnings.extend(found);
            merge(&mut merged, v);
        }
        Config::from_value(merged, warnings)
    }

    /// Parses the merged document.
    ///
    /// # Errors
    /// Every problem found.
    pub fn from_value(doc: Value, warnings: Vec<String>) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut top = match doc.clone() {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            _ => {
                return Err(invalid(
                    "",
                    "the config must be a YAML mapping with keys receivers, processors, exporters, connectors, extensions, service",
                ))
            }
        };
        for key in top.keys() {
            let k = key_text(key);
            if !TOP_LEVEL_KEYS.contains(&k.as_str()) {
                problems.push(unknown_key(&k, &k, TOP_LEVEL_KEYS));
            }
        }
        let mut broken = BTreeSet::new();
        let mut take = |k: &str| top.remove(k).unwrap_or(Value::Null);
        let receivers =
            parse_section::<ReceiverConfig>(take("receivers"), &mut problems, &mut broken);
        let processors =
            parse_section::<ProcessorConfig>(take("processors"), &mut problems, &mut broken);
        let exporters =
            parse_section::<ExporterConfig>(take("exporters"), &mut problems, &mut broken);
        let connectors =
            parse_section::<ConnectorConfig>(take("connectors"), &mut problems, &mut broken);
        let extensions =
            parse_section::<ExtensionConfig>(take("extensions"), &mut problems, &mut broken);
        let service = match take("service") {
            Value::Null => {
                problems.push(Problem {
                    path: "service".into(),
                    message: "missing: add `service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}` or similar".into(),
                });
                None
            }
            v => match parse_component::<ServiceConfig>(v) {
                Ok(s) => Some(s),
                Err(e) => {
                    problems.push(Problem {
                        path: e.prefixed("service"),
                        message: e.message,
                    });
                    None
                }
            },
        };
        let service_ok = service.is_some();
        let mut config = Config {
            receivers,
            processors,
            exporters,
            connectors,
            extensions,
            service: service.unwrap_or_default(),
            warnings,
            effective: doc,
            broken,
        };
        if service_ok {
            config.check_service(&mut problems);
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// The pipelines that list `id` among their receivers.
    pub fn pipelines_receiving_from<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a PipelineConfig)> + 'a {
        self.service
            .pipelines
            .iter()
            .filter(move |(_, p)| p.receivers.iter().any(|r| r == id))
    }

    fn check_service(&mut self, problems: &mut Vec<Problem>) {
        let mut used_receivers = BTreeSet::new();
        let mut used_processors = BTreeSet::new();
        let mut used_exporters = BTreeSet::new();
        // connector id -> (signals it is fed from, signals it feeds)
        let mut conn_in: BTreeMap<&str, Vec<Signal>> = BTreeMap::new();
        let mut conn_out: BTreeMap<&str, Vec<Signal>> = BTreeMap::new();
        for id in self.connectors.keys() {
            if self.receivers.contains_key(id) || self.exporters.contains_key(id) {
                problems.push(Problem {
                    path: format!("connectors.{id}"),
                    message: format!(
                        "`{id}` is also defined as a receiver or exporter; give the connector another name, like `{id}/connector`"
                    ),
                });
            }
        }
        if self.service.pipelines.is_empty() {
            problems.push(Problem {
                path: "service.pipelines".into(),
                message: "no pipelines: define at least one, like `traces: {receivers: [otlp], exporters: [debug]}`".into(),
            });
        }
        for (pname, p) in &self.service.pipelines {
            let base = format!("service.pipelines.{pname}");
            let signal = match pipeline_signal(pname) {
                Ok(s) => Some(s),
                Err(m) => {
                    problems.push(Problem {
                        path: base.clone(),
                        message: m,
                    });
                    None
                }
            };
            if p.receivers.is_empty() {
                problems.push(Problem {
                    path: format!("{base}.receivers"),
                    message: "a pipeline needs at least one receiver".into(),
                });
            }
            if p.exporters.is_empty() {
                problems.push(Problem {
                    path: format!("{base}.exporters"),
                    message: "a pipeline needs at least one exporter".into(),
                });
            }
            for (list, field) in [
                (&p.receivers, "receivers"),
                (&p.processors, "processors"),
                (&p.exporters, "exporters"),
            ] {
                let mut seen = BTreeSet::new();
                for id in list {
                    if !seen.insert(id) {
                        problems.push(Problem {
                            path: format!("{base}.{field}"),
                            message: format!("`{id}` is listed twice; list it once"),
                        });
                    }
                }
            }
            for id in &p.receivers {
                if self.receivers.contains_key(id) {
                    used_receivers.insert(id.clone());
                } else if self.connectors.contains_key(id) {
                    conn_out.entry(id.as_str()).or_default().extend(signal);
                } else if !self.broken.contains(&("receivers", id.clone()))
                    && !self.broken.contains(&("connectors", id.clone()))
                {
                    problems.push(undefined(
                        &base,
                        "receivers",
                        id,
                        self.receivers.keys().chain(self.connectors.keys()),
                    ));
                }
            }
            for id in &p.processors {
                if self.processors.contains_key(id) {
                    used_processors.insert(id.clone());
                } else if !self.broken.contains(&("processors", id.clone())) {
                    problems.push(undefined(&base, "processors", id, self.processors.keys()));
                }
            }
            for id in &p.exporters {
                if let Some(e) = self.exporters.get(id) {
                    used_exporters.insert(id.clone());
                    if let Some(signal) = signal.filter(|s| !e.signals().contains(s)) {
                        problems.push(Problem {
                            path: format!("{base}.exporters"),
                            message: format!(
                                "exporter `{id}` does not support {signal} (it takes {}); move it to a {} pipeline",
                                join_signals(e.signals()),
                                join_signals(e.signals())
                            ),
                        });
                    }
                } else if self.connectors.contains_key(id) {
                    conn_in.entry(id.as_str()).or_default().extend(signal);
                } else if !self.broken.contains(&("exporters", id.clone()))
                    && !self.broken.contains(&("connectors", id.clone()))
                {
                    problems.push(undefined(
                        &base,
                        "exporters",
                        id,
                        self.exporters.keys().chain(self.connectors.keys()),
                    ));
                }
            }
        }
        for (id, c) in &self.connectors {
            let ins = conn_in.get(id.as_str());
            let outs = conn_out.get(id.as_str());
            match (ins, outs) {
                (None, None) => self
                    .warnings
                    .push(format!("connectors.{id}: defined but used by no pipeline")),
                (Some(_), None) => problems.push(Problem {
                    path: format!("connectors.{id}"),
                    message: format!("used as an exporter but no pipeline lists it among its receivers; add `{id}` to the receivers of the pipeline it should feed"),
                }),
                (None, Some(_)) => problems.push(Problem {
                    path: format!("connectors.{id}"),
                    message: format!("used as a receiver but no pipeline lists it among its exporters; add `{id}` to the exporters of the pipeline that should feed it"),
                }),
                (Some(ins), Some(outs)) => {
                    for i in ins {
                        if !outs.iter().any(|o| c.supports(*i, *o)) {
                            problems.push(Problem {
                                path: format!("connectors.{id}"),
                                message: format!(
                                    "connector `{id}` cannot turn {i} into {}; it connects {}",
                                    join_signals(outs),
                                    c.describe()
                                ),
                            });
                        }
                    }
                }
            }
        }
        if let Some(cycle) = self.connector_cycle() {
            problems.push(Problem {
                path: "service.pipelines".into(),
                message: format!(
                    "connectors form a cycle ({}); data would loop forever — break the cycle",
                    cycle.join(" -> ")
                ),
            });
        }
        for id in self.receivers.keys() {
            if !used_receivers.contains(id) {
                problems.push(Problem {
                    path: format!("receivers.{id}"),
                    message: format!("defined but used by no pipeline; add `{id}` to a pipeline's receivers or remove it"),
                });
            }
        }
        for id in self.processors.keys() {
            if !used_processors.contains(id) {
                self.warnings
                    .push(format!("processors.{id}: defined but used by no pipeline"));
            }
        }
        for id in self.exporters.keys() {
            if !used_exporters.contains(id) {
                self.warnings
                    .push(format!("exporters.{id}: defined but used by no pipeline"));
            }
        }
        let mut seen = BTreeSet::new();
        for id in &self.service.extensions {
            if !seen.insert(id) {
                problems.push(Problem {
                    path: "service.extensions".into(),
                    message: format!("`{id}` is listed twice; list it once"),
                });
            }
            if !self.extensions.contains_key(id)
                && !self.broken.contains(&("extensions", id.clone()))
            {
                problems.push(undefined(
                    "service",
                    "extensions",
                    id,
                    self.extensions.keys(),
                ));
            }
        }
        for id in self.extensions.keys() {
            if !self.service.extensions.contains(id) {
                self.warnings.push(format!(
                    "extensions.{id}: defined but not enabled; add it to service.extensions"
                ));
            }
        }
        self.check_authenticators(problems);
        self.check_storage(problems);
        if let Err(m) = self.service.telemetry.check() {
            problems.push(m);
        }
    }

    /// Every `auth: {authenticator: ID}` must name an authenticator extension enabled in
    /// `service.extensions` that can play that side (server for receivers, client for exporters).
    fn check_authenticators(&self, problems: &mut Vec<Problem>) {
        let refs = self
            .receivers
            .iter()
            .flat_map(|(id, r)| {
                r.authenticators()
                    .into_iter()
                    .map(move |(k, a)| (format!("receivers.{id}.{k}"), a, true))
            })
            .chain(self.exporters.iter().filter_map(|(id, e)| {
                e.authenticator()
                    .map(|(k, a)| (format!("exporters.{id}.{k}"), a, false))
            }));
        for (path, name, server) in refs {
            if self.broken.contains(&("extensions", name.clone())) {
                continue;
            }
            let Some(ext) = self.extensions.get(&name) else {
                problems.push(undefined_authenticator(
                    &path,
                    &name,
                    self.extensions.keys(),
                ));
                continue;
            };
            let side = if server { "server" } else { "client" };
            let message = match ext.as_auth() {
                None => Some(format!("`{name}` is not an authenticator extension (use bearertokenauth or basicauth)")),
                Some(a) if server && !a.serves() => Some(format!(
                    "`{name}` cannot check requests: a basicauth used by a receiver needs `htpasswd`"
                )),
                Some(a) if !server && !a.signs() => Some(format!(
                    "`{name}` cannot sign requests: a basicauth used by an exporter needs `client_auth`"
                )),
                Some(_) if !self.service.extensions.contains(&name) => Some(format!(
                    "authenticator `{name}` is defined but not enabled; add it to service.extensions"
                )),
                Some(_) => None,
            };
            if let Some(message) = message {
                problems.push(Problem {
                    path,
                    message: format!("{message} (needed as the {side} side)"),
                });
            }
        }
    }

    /// Every `sending_queue.storage` must name a `file_storage` extension enabled in
    /// `service.extensions`.
    fn check_storage(&self, problems: &mut Vec<Problem>) {
        for (id, e) in &self.exporters {
            let Some((key, name)) = e.storage() else {
                continue;
            };
            if self.broken.contains(&("extensions", name.clone())) {
                continue;
            }
            let message = match self.extensions.get(&name) {
                None => format!(
                    "storage `{name}` is not defined under top-level `extensions`; define a file_storage extension and list it in service.extensions"
                ),
                Some(ext) if ext.as_storage().is_none() => {
                    format!("`{name}` is not a file_storage extension")
                }
                Some(_) if !self.service.extensions.contains(&name) => format!(
                    "storage `{name}` is defined but not enabled; add it to service.extensions"
                ),
                Some(_) => continue,
            };
            problems.push(Problem {
                path: format!("exporters.{id}.{key}"),
                message,
            });
        }
    }

    /// A cycle of pipelines through connectors, if any (pipeline names in order).
    fn connector_cycle(&self) -> Option<Vec<String>> {
        let names: Vec<&String> = self.service.pipelines.keys().collect();
        let edges = |from: &PipelineConfig| -> Vec<usize> {
            names
                .iter()
                .enumerate()
                .filter(|(_, n)| {
                    let to = &self.service.pipelines[**n];
                    from.exporters
                        .iter()
                        .any(|e| self.connectors.contains_key(e) && to.receivers.contains(e))
                })
                .map(|(i, _)| i)
                .collect()
        };
        // 0 = unvisited, 1 = on stack, 2 = done
        fn dfs(
            i: usize,
            state: &mut [u8],
            stack: &mut Vec<usize>,
            adj: &[Vec<usize>],
        ) -> Option<Vec<usize>> {
            state[i] = 1;
            stack.push(i);
            for &j in &adj[i] {
                if state[j] == 1 {
                    let start = stack.iter().position(|&s| s == j).unwrap_or(0);
                    let mut c = stack[start..].to_vec();
                    c.push(j);
                    return Some(c);
                }
                if state[j] == 0 {
                    if let Some(c) = dfs(j, state, stack, adj) {
                        return Some(c);
                    }
                }
            }
            stack.pop();
            state[i] = 2;
            None
        }
        let adj: Vec<Vec<usize>> = names
            .iter()
            .map(|n| edges(&self.service.pipelines[*n]))
            .collect();
        let mut state = vec![0u8; names.len()];
        for i in 0..names.len() {
            if state[i] == 0 {
                if let Some(c) = dfs(i, &mut state, &mut Vec::new(), &adj) {
                    return Some(c.into_iter().map(|i| names[i].clone()).collect());
                }
            }
        }
        None
    }
}

/// The signal of a pipeline named `<signal>[/<name>]`.
///
/// # Errors
/// A message naming the valid signals.
pub fn pipeline_signal(name: &str) -> Result<Signal, String> {
    let (sig, rest) = match name.split_once('/') {
        Some((s, n)) => (s, Some(n)),
        None => (name, None),
    };
    if rest.is_some_and(|n| n.is_empty()) {
        return Err(format!(
            "pipeline name `{name}` has an empty name after `/`; write `{sig}/NAME`"
        ));
    }
    Signal::parse(sig).ok_or_else(|| {
        let hint = suggest::closest(sig, Signal::ALL.iter().map(|s| s.as_str()))
            .map(|b| format!(" did you mean `{b}`?"))
            .unwrap_or_default();
        format!(
            "unknown signal `{sig}`:{hint} a pipeline is named `traces`, `metrics` or `logs`, optionally followed by `/name`"
        )
    })
}

fn join_signals(s: &[Signal]) -> String {
    s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

fn undefined<'a>(
    base: &str,
    field: &str,
    id: &str,
    defined: impl Iterator<Item = &'a String>,
) -> Problem {
    let defined: Vec<&str> = defined.map(String::as_str).collect();
    let hint = suggest::closest(id, defined.iter().copied())
        .map(|b| format!(" Did you mean `{b}`?"))
        .unwrap_or_default();
    let section = if field == "extensions" {
        "extensions"
    } else {
        field
    };
    Problem {
        path: format!("{base}.{field}"),
        message: format!(
            "`{id}` is not defined under top-level `{section}`{}; define it there or remove it from this list.{hint}",
            if defined.is_empty() {
                " (nothing is defined there)".to_string()
            } else {
                format!(" (defined: {})", defined.join(", "))
            }
        ),
    }
}

fn undefined_authenticator<'a>(
    path: &str,
    name: &str,
    defined: impl Iterator<Item = &'a String>,
) -> Problem {
    let defined: Vec<&str> = defined.map(String::as_str).collect();
    let hint = suggest::closest(name, defined.iter().copied())
        .map(|b| format!(" Did you mean `{b}`?"))
        .unwrap_or_default();
    Problem {
        path: path.to_string(),
        message: format!(
            "authenticator `{name}` is not defined under top-level `extensions`; define it (bearertokenauth or basicauth) and list it in service.extensions.{hint}"
        ),
    }
}

fn unknown_key(path: &str, word: &str, valid: &[&str]) -> Problem {
    let hint = suggest::closest(word, valid.iter().copied())
        .map(|b| format!("; did you mean `{b}`?"))
        .unwrap_or_default();
    Problem {
        path: path.to_string(),
        message: format!("unknown key `{word}`{hint} (valid: {})", valid.join(", ")),
    }
}

fn invalid(path: &str, message: &str) -> ConfigError {
    ConfigError::Invalid(vec![Problem {
        path: path.into(),
        message: message.into(),
    }])
}

fn parse_section<T: ComponentKind>(
    value: Value,
    problems: &mut Vec<Problem>,
    broken: &mut BTreeSet<(&'static str, String)>,
) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    let map = match value {
        Value::Null => return out,
        Value::Mapping(m) => m,
        _ => {
            problems.push(Problem {
                path: T::SECTION.into(),
                message: format!(
                    "must be a mapping of component ids to their settings, like `{}: {{{}: {{}}}}`",
                    T::SECTION,
                    T::kinds().first().unwrap_or(&"type")
                ),
            });
            return out;
        }
    };
    for (k, v) in map {
        let id_text = key_text(&k);
        let path = format!("{}.{id_text}", T::SECTION);
        broken.insert((T::SECTION, id_text.clone()));
        let id = match ComponentId::parse(&id_text) {
            Ok(id) => id,
            Err(m) => {
                problems.push(Problem { path, message: m });
                continue;
            }
        };
        if !T::kinds().contains(&id.kind.as_str()) {
            let hint = suggest::closest(&id.kind, T::kinds().iter().copied())
                .map(|b| format!(" Did you mean `{b}`?"))
                .unwrap_or_default();
            problems.push(Problem {
                path,
                message: format!(
                    "unknown {} type `{}`; this collector implements: {}.{hint}",
                    T::SECTION.trim_end_matches('s'),
                    id.kind,
                    if T::kinds().is_empty() {
                        "none".to_string()
                    } else {
                        T::kinds().join(", ")
                    }
                ),
            });
            continue;
        }
        match T::parse_kind(&id.kind, v).and_then(|c| c.check().map(|_| c)) {
            Ok(c) => {
                broken.remove(&(T::SECTION, id_text.clone()));
                out.insert(id_text, c);
            }
            Err(e) => problems.push(Problem {
                path: e.prefixed(&path),
                message: e.message,
            }),
        }
    }
    out
}

/// Deep merge as upstream: mappings merge key by key (later wins), anything else is replaced.
pub fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests;
