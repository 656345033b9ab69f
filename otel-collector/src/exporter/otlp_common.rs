//! Settings shared by the `otlp` (gRPC) and `otlphttp` exporters: compression, TLS, headers.
//!
//! Tests: `cargo test -p otel-collector exporter::otlp_common`.

use crate::config::ComponentConfigError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write as _;

/// `compression`: how export bodies are compressed.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (the upstream default).
    #[default]
    Gzip,
    /// zstd.
    Zstd,
    /// No compression (`none` or an empty string upstream).
    #[serde(alias = "")]
    None,
}

impl Compression {
    /// The `grpc-encoding` / `Content-Encoding` token, `None` for no compression.
    pub fn encoding(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::None => None,
        }
    }
}

/// `compression_params`: the compression level.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionParams {
    /// gzip 1 (fastest, the default) ..= 9 (smallest); zstd 1 (default) ..= 22.
    pub level: Option<i32>,
}

/// Default gzip level: fastest, as upstream's `BestSpeed` default; export CPU is the collector's
/// largest cost and level 1 keeps most of the size win.
pub const DEFAULT_GZIP_LEVEL: u32 = 1;
/// Default zstd level (fastest).
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// A compressor with its level resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compressor {
    /// The algorithm.
    pub kind: Compression,
    level: i32,
}

impl Compressor {
    /// Resolves `params` for `kind`, checking the level's range.
    ///
    /// # Errors
    /// `compression_params.level` out of range for the algorithm.
    pub fn new(
        kind: Compression,
        params: &CompressionParams,
    ) -> Result<Self, ComponentConfigError> {
        let level = match (kind, params.level) {
            (Compression::Gzip, None) => DEFAULT_GZIP_LEVEL as i32,
            (Compression::Gzip, Some(l)) if (1..=9).contains(&l) => l,
            (Compression::Zstd, None) => DEFAULT_ZSTD_LEVEL,
            (Compression::Zstd, Some(l)) if (1..=22).contains(&l) => l,
            (Compression::None, _) => 0,
            (k, Some(l)) => {
                return Err(ComponentConfigError::new(
                    "compression_params.level",
                    format!(
                        "level {l} is out of range for {k:?}: use 1..=9 for gzip, 1..=22 for zstd"
                    ),
                ))
            }
        };
        Ok(Compressor { kind, level })
    }

    /// Compresses `data`, writing `prefix` zero bytes first (room for a gRPC frame header).
    ///
    /// # Errors
    /// I/O errors of the encoder (out of memory, in practice never).
    pub fn compress_with_prefix(&self, data: &[u8], prefix: usize) -> std::io::Result<Vec<u8>> {
        match self.kind {
            Compression::None => {
                let mut out = Vec::with_capacity(prefix + data.len());
                out.resize(prefix, 0);
                out.extend_from_slice(data);
                Ok(out)
            }
            Compression::Gzip => {
                let mut out = Vec::with_capacity(prefix + data.len() / 4);
                out.resize(prefix, 0);
                let mut enc =
                    flate2::write::GzEncoder::new(out, flate2::Compression::new(self.level as u32));
                enc.write_all(data)?;
                enc.finish()
            }
            Compression::Zstd => {
                let mut out = Vec::with_capacity(prefix + data.len() / 4);
                out.resize(prefix, 0);
                let mut enc = zstd::stream::write::Encoder::new(out, self.level)?;
                enc.write_all(data)?;
                enc.finish()
            }
        }
    }
}

/// The `tls` block of a client (upstream `configtls.ClientConfig`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientConfig {
    /// Plain-text connection (no TLS) for an endpoint without scheme.
    pub insecure: bool,
    /// Accept any server certificate (testing only).
    pub insecure_skip_verify: bool,
    /// PEM file of the CA that signed the server certificate (default: system roots).
    pub ca_file: Option<String>,
    /// PEM client certificate for mutual TLS (needs `key_file`).
    pub cert_file: Option<String>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<String>,
    /// Server name to verify instead of the endpoint's host.
    pub server_name_override: Option<String>,
}

impl TlsClientConfig {
    /// Checks the files exist and come in pairs.
    ///
    /// # Errors
    /// Names the key (`tls.ca_file`, ...) and the fix.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(ComponentConfigError::new(
                "tls",
                "cert_file and key_file must be given together (client certificate and its key)",
            ));
        }
        for (key, path) in [
            ("tls.ca_file", &self.ca_file),
            ("tls.cert_file", &self.cert_file),
            ("tls.key_file", &self.key_file),
        ] {
            if let Some(p) = path {
                if !std::path::Path::new(p).is_file() {
                    return Err(ComponentConfigError::new(
                        key,
                        format!("file {p:?} does not exist or is not a file; give the path of a PEM file"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `headers`: extra request headers; names and values are checked at validation.
pub type Headers = BTreeMap<String, String>;

/// Converts configured headers into an `http::HeaderMap`.
///
/// # Errors
/// Names `headers.<name>` and says what is invalid.
pub fn header_map(headers: &Headers) -> Result<http::HeaderMap, ComponentConfigError> {
    let mut map = http::HeaderMap::with_capacity(headers.len());
    for (k, v) in headers {
        let name =
            http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).map_err(|_| {
                ComponentConfigError::new(
                    format!("headers.{k}"),
                    "is not a valid HTTP header name (letters, digits, '-')",
                )
            })?;
        let value = http::HeaderValue::from_str(v).map_err(|_| {
            ComponentConfigError::new(
                format!("headers.{k}"),
                "value must be visible ASCII without line breaks",
            )
        })?;
        map.insert(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn gzip_and_zstd_round_trip_with_prefix() {
        let data = b"hello hello hello hello".repeat(100);
        for kind in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let c = Compressor::new(kind, &CompressionParams::default()).unwrap();
            let out = c.compress_with_prefix(&data, 5).unwrap();
            assert_eq!(&out[..5], &[0; 5]);
            let back = match kind {
                Compression::Gzip => {
                    let mut s = Vec::new();
                    flate2::read::GzDecoder::new(&out[5..])
                        .read_to_end(&mut s)
                        .unwrap();
                    s
                }
                Compression::Zstd => zstd::decode_all(&out[5..]).unwrap(),
                Compression::None => out[5..].to_vec(),
            };
            assert_eq!(back, data, "{kind:?}");
        }
    }

    #[test]
    fn level_out_of_range_names_the_key() {
        let e =
            Compressor::new(Compression::Gzip, &CompressionParams { level: Some(12) }).unwrap_err();
        assert_eq!(e.path, "compression_params.level");
    }

    #[test]
    fn bad_header_names_the_key() {
        let mut h = Headers::new();
        h.insert("x ok".into(), "v".into());
        assert_eq!(header_map(&h).unwrap_err().path, "headers.x ok");
        let mut h = Headers::new();
        h.insert("Authorization".into(), "Bearer x".into());
        assert_eq!(header_map(&h).unwrap()["authorization"], "Bearer x");
    }
}
