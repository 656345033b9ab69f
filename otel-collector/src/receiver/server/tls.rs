//! Receiver TLS: the `tls` block of `protocols.grpc` and `protocols.http` (upstream's
//! `configtls.ServerConfig` keys that we implement), served with rustls.
//!
//! - `cert_file` / `key_file`: the server certificate chain and its key (PEM);
//! - `client_ca_file`: when set, every client must present a certificate signed by one of these
//!   CAs (mutual TLS); a client without one, or with one from another CA, fails the handshake;
//! - `min_version` / `max_version`: `"1.2"` (the default minimum, as upstream) or `"1.3"`;
//! - `reload_interval`: every interval the files are read again and, when their bytes changed, the
//!   new certificate (and, with `client_ca_file_reload: true`, the new client CA) is used for new
//!   connections without a restart. A reload that fails (half-written file, key not matching)
//!   keeps the previous certificate, is logged and counted in
//!   `otelcol_receiver_tls_reloads_total{result="failed"}`.
//!
//! Tests: `cargo test -p otel-collector receiver::server::tls` and `tests/sec_tls_auth.rs`.

use crate::config::ComponentConfigError;
use crate::telemetry::{Counter, SelfMetrics};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the client CA file is polled with `client_ca_file_reload: true` and no
/// `reload_interval`.
pub const DEFAULT_CLIENT_CA_POLL: Duration = Duration::from_secs(5);

/// `protocols.<grpc|http>.tls`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsServerConfig {
    /// PEM certificate chain of the server (leaf first).
    pub cert_file: Option<String>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<String>,
    /// PEM CA certificates that sign client certificates; set = mutual TLS required.
    pub client_ca_file: Option<String>,
    /// Re-read `client_ca_file` when it changes.
    pub client_ca_file_reload: bool,
    /// Lowest TLS version accepted: `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<String>,
    /// Highest TLS version accepted (default `"1.3"`).
    pub max_version: Option<String>,
    /// Re-read the certificate and key this often (unset: never).
    #[serde(with = "crate::config::duration::option")]
    pub reload_interval: Option<Duration>,
}

/// A TLS version rustls implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Version {
    Tls12,
    Tls13,
}

fn parse_version(key: &str, v: &str) -> Result<Version, ComponentConfigError> {
    match v.trim() {
        "1.2" => Ok(Version::Tls12),
        "1.3" => Ok(Version::Tls13),
        "1.0" | "1.1" => Err(ComponentConfigError::new(
            key,
            format!(
                "TLS {v} is not supported (it is deprecated, RFC 8996); use \"1.2\" or \"1.3\""
            ),
        )),
        other => Err(ComponentConfigError::new(
            key,
            format!("unknown TLS version `{other}`; use \"1.2\" or \"1.3\""),
        )),
    }
}

impl TlsServerConfig {
    /// Checks pairs, files and versions; `prefix` is the key path of this block
    /// (`protocols.grpc.tls`).
    ///
    /// # Errors
    /// The key and the fix.
    pub fn validate(&self, prefix: &str) -> Result<(), ComponentConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        if self.cert_file.is_none() || self.key_file.is_none() {
            return Err(ComponentConfigError::new(
                prefix,
                "a TLS server needs both cert_file and key_file (PEM certificate chain and its private key)",
            ));
        }
        for (k, path) in [
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
            ("client_ca_file", &self.client_ca_file),
        ] {
            if let Some(p) = path {
                if !std::path::Path::new(p).is_file() {
                    return Err(ComponentConfigError::new(
                        key(k),
                        format!("file {p:?} does not exist or is not a file; give the path of a PEM file"),
                    ));
                }
            }
        }
        if self.client_ca_file_reload && self.client_ca_file.is_none() {
            return Err(ComponentConfigError::new(
                key("client_ca_file_reload"),
                "is true but no client_ca_file is set; set client_ca_file or remove this key",
            ));
        }
        let (min, max) = self.versions(prefix)?;
        if min > max {
            return Err(ComponentConfigError::new(
                key("min_version"),
                "is higher than max_version; lower min_version or raise max_version",
            ));
        }
        if self.reload_interval.is_some_and(|d| d.is_zero()) {
            return Err(ComponentConfigError::new(
                key("reload_interval"),
                "must be greater than 0 (for example 1m), or removed to never reload",
            ));
        }
        Ok(())
    }

    fn versions(&self, prefix: &str) -> Result<(Version, Version), ComponentConfigError> {
        let min = match &self.min_version {
            Some(v) => parse_version(&format!("{prefix}.min_version"), v)?,
            None => Version::Tls12,
        };
        let max = match &self.max_version {
            Some(v) => parse_version(&format!("{prefix}.max_version"), v)?,
            None => Version::Tls13,
        };
        Ok((min, max))
    }

    /// How often the files are polled, if at all.
    fn poll_interval(&self) -> Option<Duration> {
        match (self.reload_interval, self.client_ca_file_reload) {
            (Some(d), _) => Some(d),
            (None, true) => Some(DEFAULT_CLIENT_CA_POLL),
            (None, false) => None,
        }
    }
}

/// The bytes a server config was built from, to tell whether a reload changed anything.
#[derive(Clone, PartialEq, Eq)]
struct Material {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

/// A TLS acceptor whose configuration can be swapped while it serves (certificate rotation).
pub struct ReloadingAcceptor {
    current: RwLock<Arc<ServerConfig>>,
    material: RwLock<Material>,
    config: TlsServerConfig,
    prefix: String,
    alpn: Vec<Vec<u8>>,
    reload_ok: Counter,
    reload_failed: Counter,
    /// TLS handshakes that failed (bad client certificate, wrong version, not TLS at all).
    pub handshake_failures: Counter,
}

impl std::fmt::Debug for ReloadingAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingAcceptor")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl ReloadingAcceptor {
    /// Loads the files of `config` (block at key path `prefix`) for receiver `receiver` on
    /// `transport`; `alpn` lists the protocols offered (`h2`, `http/1.1`).
    ///
    /// # Errors
    /// Unreadable or unparsable files, a key that does not match the certificate, naming the key.
    pub fn new(
        config: &TlsServerConfig,
        prefix: &str,
        receiver: &str,
        transport: &'static str,
        alpn: &[&[u8]],
    ) -> Result<Arc<Self>, ComponentConfigError> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|a| a.to_vec()).collect();
        let material = read_material(config, prefix)?;
        let server = build(config, prefix, &material, &alpn)?;
        let m = SelfMetrics::global();
        let labels = |result: &str| {
            vec![
                ("receiver", receiver.to_string()),
                ("transport", transport.to_string()),
                ("result", result.to_string()),
            ]
        };
        let help = "Certificate reloads of a receiver's TLS configuration, by result.";
        Ok(Arc::new(ReloadingAcceptor {
            current: RwLock::new(Arc::new(server)),
            material: RwLock::new(material),
            config: config.clone(),
            prefix: prefix.to_string(),
            alpn,
            reload_ok: m.counter("otelcol_receiver_tls_reloads_total", help, labels("ok")),
            reload_failed: m.counter("otelcol_receiver_tls_reloads_total", help, labels("failed")),
            handshake_failures: m.counter(
                "otelcol_receiver_tls_handshake_failures_total",
                "TLS handshakes a receiver refused or that failed (bad or missing client certificate, protocol version, not TLS).",
                vec![
                    ("receiver", receiver.to_string()),
                    ("transport", transport.to_string()),
                ],
            ),
        }))
    }

    /// The acceptor for the next connection (the configuration in force now).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let cfg = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        tokio_rustls::TlsAcceptor::from(cfg)
    }

    /// Reads the files again; swaps in a new configuration when their bytes changed. Returns
    /// whether the configuration changed.
    ///
    /// # Errors
    /// A file that cannot be read or parsed; the configuration in force is kept.
    pub fn reload(&self) -> Result<bool, ComponentConfigError> {
        let mut fresh = read_material(&self.config, &self.prefix)?;
        if !self.config.client_ca_file_reload {
            // Only the certificate and key rotate unless client CA reloads were asked for.
            fresh.client_ca = self
                .material
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .client_ca
                .clone();
        }
        if *self.material.read().unwrap_or_else(|p| p.into_inner()) == fresh {
            return Ok(false);
        }
        let server = build(&self.config, &self.prefix, &fresh, &self.alpn)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(server);
        *self.material.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(true)
    }

    /// Polls the files every `reload_interval` (if set) until `stop`.
    pub fn spawn_reloader(self: &Arc<Self>, receiver: &str, stop: CancellationToken) {
        let Some(every) = self.config.poll_interval() else {
            return;
        };
        let me = self.clone();
        let receiver = receiver.to_string();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match me.reload() {
                    Ok(true) => {
                        me.reload_ok.add(1);
                        tracing::info!(receiver = %receiver, tls = %me.prefix, "TLS certificate reloaded");
                    }
                    Ok(false) => {}
                    Err(e) => {
                        me.reload_failed.add(1);
                        tracing::warn!(receiver = %receiver, error = %e, "TLS certificate reload failed; the previous certificate stays in use");
                    }
                }
            }
        });
    }
}

fn read_file(key: String, path: &str) -> Result<Vec<u8>, ComponentConfigError> {
    std::fs::read(path)
        .map_err(|e| ComponentConfigError::new(key, format!("cannot read {path:?}: {e}")))
}

fn read_material(config: &TlsServerConfig, prefix: &str) -> Result<Material, ComponentConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    let (Some(cert), Some(pkey)) = (&config.cert_file, &config.key_file) else {
        return Err(ComponentConfigError::new(
            prefix,
            "a TLS server needs both cert_file and key_file",
        ));
    };
    Ok(Material {
        cert: read_file(key("cert_file"), cert)?,
        key: read_file(key("key_file"), pkey)?,
        client_ca: match &config.client_ca_file {
            Some(p) => Some(read_file(key("client_ca_file"), p)?),
            None => None,
        },
    })
}

/// Parses every certificate of a PEM bundle.
fn certs(key: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ComponentConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ComponentConfigError::new(key, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(ComponentConfigError::new(
            key,
            "holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
        ));
    }
    Ok(certs)
}

fn build(
    config: &TlsServerConfig,
    prefix: &str,
    m: &Material,
    alpn: &[Vec<u8>],
) -> Result<ServerConfig, ComponentConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    let chain = certs(&key("cert_file"), &m.cert)?;
    let private = PrivateKeyDer::from_pem_slice(&m.key).map_err(|e| {
        ComponentConfigError::new(key("key_file"), format!("not a PEM private key: {e}"))
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let (min, max) = config.versions(prefix)?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (Version::Tls12, &rustls::version::TLS12),
        (Version::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| *v >= min && *v <= max)
    .map(|(_, p)| p)
    .collect();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| ComponentConfigError::new(key("min_version"), e.to_string()))?;
    let builder = match &m.client_ca {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for c in certs(&key("client_ca_file"), pem)? {
                roots.add(c).map_err(|e| {
                    ComponentConfigError::new(
                        key("client_ca_file"),
                        format!("not a usable CA certificate: {e}"),
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ComponentConfigError::new(key("client_ca_file"), e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder.with_single_cert(chain, private).map_err(|e| {
        ComponentConfigError::new(
            key("key_file"),
            format!("the key does not fit the certificate, or the certificate is unusable: {e}"),
        )
    })?;
    server.alpn_protocols = alpn.to_vec();
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(y: &str) -> TlsServerConfig {
        serde_yaml::from_str(y).unwrap()
    }

    #[test]
    fn versions_and_pairs_are_checked_with_their_key() {
        let dir = std::env::temp_dir().join(format!("h17tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x.pem");
        std::fs::write(&f, "x").unwrap();
        let p = f.display().to_string();
        let e = cfg(&format!("cert_file: {p}")).validate("tls").unwrap_err();
        assert_eq!(e.path, "tls", "{e}");
        let e = cfg(&format!(
            "{{cert_file: {p}, key_file: {p}, min_version: '1.1'}}"
        ))
        .validate("tls")
        .unwrap_err();
        assert_eq!(e.path, "tls.min_version");
        assert!(e.message.contains("not supported"), "{e}");
        let e = cfg(&format!(
            "{{cert_file: {p}, key_file: {p}, min_version: '1.3', max_version: '1.2'}}"
        ))
        .validate("tls")
        .unwrap_err();
        assert_eq!(e.path, "tls.min_version");
        let e = cfg(&format!("{{cert_file: {p}, key_file: /nonexistent/k.pem}}"))
            .validate("tls")
            .unwrap_err();
        assert_eq!(e.path, "tls.key_file");
        cfg(&format!(
            "{{cert_file: {p}, key_file: {p}, min_version: '1.3', reload_interval: 1m}}"
        ))
        .validate("tls")
        .unwrap();
        // A file that is not PEM is refused when the acceptor is built, naming the key.
        let e = ReloadingAcceptor::new(
            &cfg(&format!("{{cert_file: {p}, key_file: {p}}}")),
            "tls",
            "otlp",
            "grpc",
            &[b"h2"],
        )
        .unwrap_err();
        assert_eq!(e.path, "tls.cert_file", "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(serde_yaml::from_str::<TlsServerConfig>("ca_pem: x").is_err());
    }
}
