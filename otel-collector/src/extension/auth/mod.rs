//! Authenticator extensions: `bearertokenauth` and `basicauth`, in upstream's config shape,
//! used as `auth: {authenticator: NAME}` on receivers (`protocols.grpc.auth`,
//! `protocols.http.auth`: the server side) and on the `otlp` / `otlphttp` exporters (the client
//! side, which adds the credential to every request).
//!
//! Server side: a request without valid credentials is answered HTTP 401 (with
//! `WWW-Authenticate`) or gRPC `UNAUTHENTICATED` before its body is read, and counted in
//! `otelcol_receiver_auth_failures_total{receiver,transport,authenticator,reason}` (`missing`,
//! `malformed`, `invalid`); accepted ones in `otelcol_receiver_auth_succeeded_total`. The
//! secret is never logged, nor is what the client sent. Comparisons are constant-time
//! ([`subtle`]): tokens and plain passwords are compared as SHA-256 digests, so neither their
//! content nor their length shows in the timing.
//!
//! Secrets in files (`bearertokenauth.filename`, `basicauth.htpasswd.file`) are polled every
//! [`FILE_POLL`] and swapped in when their content changes; a file that cannot be read keeps the
//! previous secret and is logged (without its content).
//!
//! Tests: `cargo test -p otel-collector extension::auth` and `tests/sec_tls_auth.rs`.

mod basic;
mod bearer;
mod htpasswd;

pub use basic::{BasicAuthConfig, ClientAuthSettings, HtpasswdSettings};
pub use bearer::BearerTokenAuthConfig;

use crate::config::ComponentConfigError;
use crate::telemetry::{Counter, SelfMetrics};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// How often secret files are checked for changes.
pub const FILE_POLL: Duration = Duration::from_secs(1);

/// `auth:` on a receiver protocol or an exporter: which authenticator extension to use.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthRef {
    /// Id of an authenticator extension listed in `service.extensions`.
    pub authenticator: String,
}

/// Why a request was not authenticated. Carries no secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credentials in the request.
    Missing,
    /// Credentials that cannot be parsed (wrong scheme, bad base64).
    Malformed,
    /// Credentials that do not match.
    Invalid,
}

impl AuthFailure {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::Invalid => "invalid",
        }
    }

    /// The message sent back to the client.
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => "authentication required: the request carries no credentials",
            AuthFailure::Malformed => "authentication failed: the credentials are malformed",
            AuthFailure::Invalid => "authentication failed: invalid credentials",
        }
    }

    /// The `WWW-Authenticate` challenge.
    pub fn challenge(self) -> &'static str {
        "Bearer realm=\"otel-collector\", Basic realm=\"otel-collector\""
    }
}

/// The server side of an authenticator: checks a request's headers (gRPC metadata are HTTP/2
/// headers too).
pub trait ServerAuthenticator: Send + Sync {
    /// `Ok` when the headers carry valid credentials.
    fn authenticate<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
    ) -> BoxFuture<'a, Result<(), AuthFailure>>;
}

/// The client side of an authenticator: the header to add to every outgoing request (its value
/// may change when a secret file changes).
pub trait ClientAuthenticator: Send + Sync + std::fmt::Debug {
    /// Header name and current value.
    fn header(&self) -> (http::HeaderName, http::HeaderValue);
}

/// A server authenticator bound to one receiver transport, with its counters.
#[derive(Clone)]
pub struct ServerAuth {
    inner: Arc<dyn ServerAuthenticator>,
    receiver: Arc<str>,
    authenticator: Arc<str>,
    succeeded: Counter,
    failed: [Counter; 3],
    last_warn_s: Arc<AtomicU64>,
}

impl std::fmt::Debug for ServerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAuth")
            .field("authenticator", &self.authenticator)
            .finish_non_exhaustive()
    }
}

/// Failures are logged at most this often per receiver transport (then only counted).
const WARN_EVERY: Duration = Duration::from_secs(60);

impl ServerAuth {
    /// Binds `inner` (extension `authenticator`) to `receiver` / `transport`.
    pub fn new(
        inner: Arc<dyn ServerAuthenticator>,
        authenticator: &str,
        receiver: &str,
        transport: &'static str,
    ) -> Self {
        let m = SelfMetrics::global();
        let labels = vec![
            ("receiver", receiver.to_string()),
            ("transport", transport.to_string()),
            ("authenticator", authenticator.to_string()),
        ];
        let failed = [
            AuthFailure::Missing,
            AuthFailure::Malformed,
            AuthFailure::Invalid,
        ]
        .map(|f| {
            let mut l = labels.clone();
            l.push(("reason", f.reason().to_string()));
            m.counter(
                "otelcol_receiver_auth_failures_total",
                "Requests a receiver refused for missing or invalid credentials, by reason.",
                l,
            )
        });
        ServerAuth {
            inner,
            receiver: receiver.into(),
            authenticator: authenticator.into(),
            succeeded: m.counter(
                "otelcol_receiver_auth_succeeded_total",
                "Requests whose credentials a receiver accepted.",
                labels,
            ),
            failed,
            last_warn_s: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Checks `headers`, counting the outcome; logs (rate-limited, without any secret) failures.
    pub async fn check(&self, headers: &http::HeaderMap) -> Result<(), AuthFailure> {
        match self.inner.authenticate(headers).await {
            Ok(()) => {
                self.succeeded.add(1);
                Ok(())
            }
            Err(f) => {
                let i = match f {
                    AuthFailure::Missing => 0,
                    AuthFailure::Malformed => 1,
                    AuthFailure::Invalid => 2,
                };
                self.failed[i].add(1);
                self.warn(f);
                Err(f)
            }
        }
    }

    fn warn(&self, f: AuthFailure) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let last = self.last_warn_s.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY.as_secs()
            && self
                .last_warn_s
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                receiver = %self.receiver,
                authenticator = %self.authenticator,
                reason = f.reason(),
                "request refused: {} (further failures within {}s are only counted in otelcol_receiver_auth_failures_total)",
                f.message(),
                WARN_EVERY.as_secs()
            );
        }
    }
}

/// The started authenticators, by extension id.
#[derive(Clone, Default)]
pub struct Authenticators {
    server: BTreeMap<String, Arc<dyn ServerAuthenticator>>,
    client: BTreeMap<String, Arc<dyn ClientAuthenticator>>,
}

impl std::fmt::Debug for Authenticators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticators")
            .field("server", &self.server.keys().collect::<Vec<_>>())
            .field("client", &self.client.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why an authenticator could not start.
#[derive(Debug, thiserror::Error)]
#[error("extension {id}: {source}")]
pub struct AuthStartError {
    /// Extension id.
    pub id: String,
    /// What is wrong, with its key path.
    pub source: ComponentConfigError,
}

/// An authenticator extension's typed config.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthConfig<'a> {
    /// `bearertokenauth`.
    Bearer(&'a BearerTokenAuthConfig),
    /// `basicauth`.
    Basic(&'a BasicAuthConfig),
}

impl AuthConfig<'_> {
    /// Whether it can check requests (receivers).
    pub fn serves(&self) -> bool {
        match self {
            AuthConfig::Bearer(_) => true,
            AuthConfig::Basic(c) => c.htpasswd.is_some(),
        }
    }
    /// Whether it can sign requests (exporters).
    pub fn signs(&self) -> bool {
        match self {
            AuthConfig::Bearer(_) => true,
            AuthConfig::Basic(c) => c.client_auth.is_some(),
        }
    }
}

impl Authenticators {
    /// Starts every authenticator in `configs` (id → config): reads their secrets (errors
    /// surface here) and spawns their file watchers, which stop with `cancel`.
    ///
    /// # Errors
    /// A secret file that cannot be read or parsed.
    pub fn start<'a>(
        configs: impl IntoIterator<Item = (&'a str, AuthConfig<'a>)>,
        cancel: &CancellationToken,
    ) -> Result<Self, AuthStartError> {
        let mut out = Authenticators::default();
        for (id, c) in configs {
            let err = |source| AuthStartError {
                id: id.to_string(),
                source,
            };
            match c {
                AuthConfig::Bearer(c) => {
                    let b = bearer::BearerToken::start(id, c, cancel).map_err(err)?;
                    out.server.insert(id.to_string(), b.clone());
                    out.client.insert(id.to_string(), b);
                }
                AuthConfig::Basic(c) => {
                    if c.htpasswd.is_some() {
                        let s = basic::BasicServer::start(id, c, cancel).map_err(err)?;
                        out.server.insert(id.to_string(), s);
                    }
                    if let Some(ca) = &c.client_auth {
                        out.client
                            .insert(id.to_string(), Arc::new(basic::BasicClient::new(ca)));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The server side of `id`.
    pub fn server(&self, id: &str) -> Option<Arc<dyn ServerAuthenticator>> {
        self.server.get(id).cloned()
    }

    /// The client side of `id`.
    pub fn client(&self, id: &str) -> Option<Arc<dyn ClientAuthenticator>> {
        self.client.get(id).cloned()
    }
}

/// Polls `path` every [`FILE_POLL`] until `cancel`; calls `on_change` with the new content
/// whenever it differs from the last one seen (`initial`).
pub(crate) fn watch_file(
    what: &'static str,
    id: &str,
    path: &str,
    initial: Vec<u8>,
    cancel: &CancellationToken,
    on_change: impl Fn(&[u8]) -> Result<(), String> + Send + 'static,
) {
    let (id, path, cancel) = (id.to_string(), path.to_string(), cancel.clone());
    tokio::spawn(async move {
        let mut last = initial;
        let mut tick = tokio::time::interval(FILE_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            match tokio::fs::read(&path).await {
                Ok(now) if now != last => match on_change(&now) {
                    Ok(()) => {
                        tracing::info!(extension = %id, file = %path, "{what} reloaded");
                        last = now;
                        failing = false;
                    }
                    Err(e) if !failing => {
                        tracing::warn!(extension = %id, file = %path, error = %e, "{what} changed but cannot be used; keeping the previous one");
                        failing = true;
                    }
                    Err(_) => {}
                },
                Ok(_) => {}
                Err(e) if !failing => {
                    tracing::warn!(extension = %id, file = %path, error = %e, "cannot read {what}; keeping the previous one");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    });
}

/// SHA-256 of `data`: secrets are compared as digests (fixed length, constant time).
pub(crate) fn digest(data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}

/// Whether `candidate` equals any of `expected`, in time independent of which (or whether one)
/// matches.
pub(crate) fn matches_any(candidate: &[u8; 32], expected: &[[u8; 32]]) -> bool {
    use subtle::ConstantTimeEq as _;
    let mut found = subtle::Choice::from(0u8);
    for e in expected {
        found |= candidate.ct_eq(e);
    }
    found.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_any_finds_the_one_equal_digest() {
        let a = digest(b"Bearer a");
        let b = digest(b"Bearer b");
        assert!(matches_any(&b, &[a, b]));
        assert!(!matches_any(&digest(b"Bearer c"), &[a, b]));
        assert!(!matches_any(&a, &[]));
    }

    #[test]
    fn failure_messages_carry_no_secret_and_say_what_happened() {
        for f in [
            AuthFailure::Missing,
            AuthFailure::Malformed,
            AuthFailure::Invalid,
        ] {
            assert!(f.message().starts_with("authentication"));
        }
    }
}
