//! `basicauth`: HTTP Basic authentication. Upstream's keys: as a server `htpasswd.file` and/or
//! `htpasswd.inline` (inline lines win over the file's for the same user); as a client
//! `client_auth.username` / `client_auth.password`. One extension is one or the other, as
//! upstream.
//!
//! Slow hashes (bcrypt, SHA-crypt) are verified on the blocking pool, at most
//! [`MAX_SLOW_CHECKS`] at a time, and a credential that verified is remembered (as a SHA-256
//! digest of `user:password`, at most [`CACHE_ENTRIES`]) until the htpasswd content changes, so
//! a client sending the same credential on every request costs one hash check.

use super::htpasswd::Htpasswd;
use super::{digest, watch_file, AuthFailure, ClientAuthenticator, ServerAuthenticator};
use crate::config::ComponentConfigError;
use base64::Engine as _;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use tokio_util::sync::CancellationToken;

/// Slow hash checks running at once.
pub(super) const MAX_SLOW_CHECKS: usize = 2;
/// Verified credentials remembered.
pub(super) const CACHE_ENTRIES: usize = 1024;

/// `extensions.basicauth[/name]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// Server side: the accepted users.
    #[serde(default)]
    pub htpasswd: Option<HtpasswdSettings>,
    /// Client side: the credential sent.
    #[serde(default)]
    pub client_auth: Option<ClientAuthSettings>,
}

/// `basicauth.htpasswd`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HtpasswdSettings {
    /// Path of an htpasswd file (reloaded when it changes).
    pub file: Option<String>,
    /// htpasswd lines written in the config.
    pub inline: Option<String>,
}

/// `basicauth.client_auth`.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientAuthSettings {
    /// User name (no `:`).
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for ClientAuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuthSettings")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

impl BasicAuthConfig {
    /// Checks that exactly one side is configured and usable.
    ///
    /// # Errors
    /// The key and the fix.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        match (&self.htpasswd, &self.client_auth) {
            (Some(_), Some(_)) => Err(ComponentConfigError::new(
                "",
                "only one of `htpasswd` (server) or `client_auth` (client) can be specified; define two basicauth extensions, like basicauth/server and basicauth/client",
            )),
            (None, None) => Err(ComponentConfigError::new(
                "",
                "no credential source provided: set `htpasswd` (file or inline) to check requests, or `client_auth` to send credentials",
            )),
            (Some(h), None) => {
                if h.file.is_none() && h.inline.as_deref().is_none_or(|s| s.trim().is_empty()) {
                    return Err(ComponentConfigError::new(
                        "htpasswd",
                        "set `file` or `inline` (lines of `user:password-hash`)",
                    ));
                }
                if let Some(f) = &h.file {
                    if !std::path::Path::new(f).is_file() {
                        return Err(ComponentConfigError::new(
                            "htpasswd.file",
                            format!("file {f:?} does not exist or is not a file"),
                        ));
                    }
                }
                if let Some(i) = &h.inline {
                    Htpasswd::parse(i)
                        .map_err(|m| ComponentConfigError::new("htpasswd.inline", m))?;
                }
                Ok(())
            }
            (None, Some(c)) => {
                if c.username.contains(':') {
                    return Err(ComponentConfigError::new(
                        "client_auth.username",
                        "must not contain `:` (Basic authentication separates user and password with it)",
                    ));
                }
                Ok(())
            }
        }
    }
}

/// The table in force and the credentials verified against it.
struct State {
    table: Htpasswd,
    verified: HashSet<[u8; 32]>,
}

/// A started `basicauth` server.
pub(super) struct BasicServer {
    state: RwLock<Arc<Mutex<State>>>,
    slow: tokio::sync::Semaphore,
}

fn combine(file: Option<&[u8]>, inline: Option<&str>) -> Result<Htpasswd, String> {
    let mut text = String::new();
    if let Some(f) = file {
        text.push_str(std::str::from_utf8(f).map_err(|_| "the htpasswd file is not UTF-8")?);
        text.push('\n');
    }
    // Inline content comes last so it overrides the file's entries, as upstream.
    text.push_str(inline.unwrap_or(""));
    Htpasswd::parse(&text)
}

impl BasicServer {
    pub(super) fn start(
        id: &str,
        c: &BasicAuthConfig,
        cancel: &CancellationToken,
    ) -> Result<Arc<Self>, ComponentConfigError> {
        let h = c.htpasswd.clone().unwrap_or_default();
        let file = match &h.file {
            Some(p) => Some(std::fs::read(p).map_err(|e| {
                ComponentConfigError::new("htpasswd.file", format!("cannot read {p:?}: {e}"))
            })?),
            None => None,
        };
        let table = combine(file.as_deref(), h.inline.as_deref()).map_err(|m| {
            ComponentConfigError::new(
                if file.is_some() {
                    "htpasswd.file"
                } else {
                    "htpasswd.inline"
                },
                m,
            )
        })?;
        if table.len() == 0 {
            tracing::warn!(
                extension = id,
                "the htpasswd content holds no user: every request will be refused"
            );
        }
        let me = Arc::new(BasicServer {
            state: RwLock::new(Arc::new(Mutex::new(State {
                table,
                verified: HashSet::new(),
            }))),
            slow: tokio::sync::Semaphore::new(MAX_SLOW_CHECKS),
        });
        if let (Some(path), Some(bytes)) = (&h.file, file) {
            let weak = Arc::downgrade(&me);
            let inline = h.inline.clone();
            watch_file("htpasswd file", id, path, bytes, cancel, move |b| {
                let table = combine(Some(b), inline.as_deref())?;
                if let Some(me) = weak.upgrade() {
                    *me.state.write().unwrap_or_else(|p| p.into_inner()) =
                        Arc::new(Mutex::new(State {
                            table,
                            verified: HashSet::new(),
                        }));
                }
                Ok(())
            });
        }
        Ok(me)
    }
}

/// `user` and `password` of a `Basic` Authorization value.
fn parse_basic(value: &http::HeaderValue) -> Result<(String, String), AuthFailure> {
    let v = value.to_str().map_err(|_| AuthFailure::Malformed)?;
    let (scheme, rest) = v.split_once(' ').ok_or(AuthFailure::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthFailure::Malformed);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| AuthFailure::Malformed)?;
    let text = String::from_utf8(raw).map_err(|_| AuthFailure::Malformed)?;
    let (u, p) = text.split_once(':').ok_or(AuthFailure::Malformed)?;
    Ok((u.to_string(), p.to_string()))
}

impl ServerAuthenticator for BasicServer {
    fn authenticate<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
    ) -> BoxFuture<'a, Result<(), AuthFailure>> {
        Box::pin(async move {
            let value = headers
                .get(http::header::AUTHORIZATION)
                .ok_or(AuthFailure::Missing)?;
            let (user, password) = parse_basic(value)?;
            let key = digest(format!("{user}:{password}").as_bytes());
            let state = self.state.read().unwrap_or_else(|p| p.into_inner()).clone();
            let stored = {
                let s = state.lock().unwrap_or_else(|p| p.into_inner());
                if s.verified.contains(&key) {
                    return Ok(());
                }
                s.table.get(&user).cloned()
            };
            let Some(stored) = stored else {
                // Spend about what a plain comparison costs, so unknown users do not answer
                // faster than wrong plain passwords.
                let _ = digest(password.as_bytes());
                return Err(AuthFailure::Invalid);
            };
            let ok = if stored.is_slow() {
                let _permit = self
                    .slow
                    .acquire()
                    .await
                    .map_err(|_| AuthFailure::Invalid)?;
                tokio::task::spawn_blocking(move || stored.verify(&password))
                    .await
                    .unwrap_or(false)
            } else {
                stored.verify(&password)
            };
            if !ok {
                return Err(AuthFailure::Invalid);
            }
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            if s.verified.len() >= CACHE_ENTRIES {
                s.verified.clear();
            }
            s.verified.insert(key);
            Ok(())
        })
    }
}

/// A `basicauth` client: a fixed `Authorization: Basic ...` header.
pub(super) struct BasicClient {
    value: http::HeaderValue,
}

impl std::fmt::Debug for BasicClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicClient").finish_non_exhaustive()
    }
}

impl BasicClient {
    pub(super) fn new(c: &ClientAuthSettings) -> Self {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", c.username, c.password));
        let mut value = http::HeaderValue::from_str(&format!("Basic {token}"))
            .unwrap_or_else(|_| http::HeaderValue::from_static("Basic"));
        value.set_sensitive(true);
        BasicClient { value }
    }
}

impl ClientAuthenticator for BasicClient {
    fn header(&self) -> (http::HeaderName, http::HeaderValue) {
        (http::header::AUTHORIZATION, self.value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(y: &str) -> BasicAuthConfig {
        serde_yaml::from_str(y).unwrap()
    }

    fn with(v: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[tokio::test]
    async fn server_checks_users_and_client_signs_so_the_server_accepts() {
        let bcrypt = htauth::hash_password("b-pass", htauth::HashAlgorithm::Bcrypt).unwrap();
        let c = cfg(&format!(
            "htpasswd:\n  inline: |\n    alice:plain-pass\n    bob:{bcrypt}\n"
        ));
        c.validate().unwrap();
        let s = BasicServer::start("basicauth", &c, &CancellationToken::new()).unwrap();
        let client = |u: &str, p: &str| {
            let (_, v) = BasicClient::new(&ClientAuthSettings {
                username: u.into(),
                password: p.into(),
            })
            .header();
            let mut h = http::HeaderMap::new();
            h.insert(http::header::AUTHORIZATION, v);
            h
        };
        assert_eq!(s.authenticate(&client("alice", "plain-pass")).await, Ok(()));
        assert_eq!(s.authenticate(&client("bob", "b-pass")).await, Ok(()));
        assert_eq!(
            s.authenticate(&client("bob", "b-pass")).await,
            Ok(()),
            "cached"
        );
        assert_eq!(
            s.authenticate(&client("bob", "nope")).await,
            Err(AuthFailure::Invalid)
        );
        assert_eq!(
            s.authenticate(&client("carol", "plain-pass")).await,
            Err(AuthFailure::Invalid)
        );
        assert_eq!(
            s.authenticate(&with("Bearer abc")).await,
            Err(AuthFailure::Malformed)
        );
        assert_eq!(
            s.authenticate(&with("Basic %%%")).await,
            Err(AuthFailure::Malformed)
        );
        assert_eq!(
            s.authenticate(&http::HeaderMap::new()).await,
            Err(AuthFailure::Missing)
        );
    }

    #[test]
    fn exactly_one_side_and_no_colon_in_user() {
        assert!(cfg("{}").validate().is_err());
        assert!(
            cfg("htpasswd: {inline: 'a:b'}\nclient_auth: {username: a, password: b}")
                .validate()
                .is_err()
        );
        let e = cfg("client_auth: {username: 'a:b', password: c}")
            .validate()
            .unwrap_err();
        assert_eq!(e.path, "client_auth.username");
        let e = cfg("htpasswd: {inline: 'nocolon'}").validate().unwrap_err();
        assert_eq!(e.path, "htpasswd.inline");
        let c = cfg("client_auth: {username: u, password: hunter2}");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
