//! `bearertokenauth`: a static bearer token (or several), inline or from a file that is
//! reloaded when it changes. Upstream's keys: `header` (default `Authorization`), `scheme`
//! (default `Bearer`; empty: the header holds the bare token), `token`, `tokens`, `filename`
//! (one token per line; takes precedence over `token`/`tokens`, as upstream).
//!
//! As a server it accepts a request whose header equals `scheme + " " + token` for any of the
//! tokens; as a client it sends the first token.

use super::{
    digest, matches_any, watch_file, AuthFailure, ClientAuthenticator, ServerAuthenticator,
};
use crate::config::ComponentConfigError;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;

/// `extensions.bearertokenauth[/name]`.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BearerTokenAuthConfig {
    /// Header carrying the token.
    #[serde(default = "default_header")]
    pub header: String,
    /// Auth scheme written before the token.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// The token.
    #[serde(default)]
    pub token: Option<String>,
    /// Several accepted tokens (the first is sent by clients).
    #[serde(default)]
    pub tokens: Vec<String>,
    /// File holding the token(s), one per line; reloaded when it changes.
    #[serde(default)]
    pub filename: Option<String>,
}

fn default_header() -> String {
    "Authorization".into()
}
fn default_scheme() -> String {
    "Bearer".into()
}

impl std::fmt::Debug for BearerTokenAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerTokenAuthConfig")
            .field("header", &self.header)
            .field("scheme", &self.scheme)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("tokens", &format!("[{} redacted]", self.tokens.len()))
            .field("filename", &self.filename)
            .finish()
    }
}

impl BearerTokenAuthConfig {
    /// Checks that a token source is given and the header name is valid.
    ///
    /// # Errors
    /// The key and the fix.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        if self.token.as_deref().is_none_or(str::is_empty)
            && self.tokens.is_empty()
            && self.filename.is_none()
        {
            return Err(ComponentConfigError::new(
                "",
                "no bearer token provided: set `token`, `tokens` or `filename`",
            ));
        }
        if self.tokens.iter().any(|t| t.trim().is_empty()) {
            return Err(ComponentConfigError::new(
                "tokens",
                "holds an empty token; remove it",
            ));
        }
        http::HeaderName::from_bytes(self.header.as_bytes())
            .map_err(|_| ComponentConfigError::new("header", "is not a valid HTTP header name"))?;
        if let Some(f) = &self.filename {
            if !std::path::Path::new(f).is_file() {
                return Err(ComponentConfigError::new(
                    "filename",
                    format!("file {f:?} does not exist or is not a file"),
                ));
            }
        }
        Ok(())
    }
}

/// The tokens in force, as full header values (digests for checking, the first in clear for
/// sending).
struct Values {
    digests: Vec<[u8; 32]>,
    first: http::HeaderValue,
}

/// A started `bearertokenauth`.
pub(super) struct BearerToken {
    header: http::HeaderName,
    scheme: String,
    values: RwLock<Arc<Values>>,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerToken")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// The tokens of a token file: one per line, blank lines ignored.
fn file_tokens(bytes: &[u8]) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the token file is not UTF-8".to_string())?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if tokens.is_empty() {
        return Err("the token file holds no token".into());
    }
    Ok(tokens)
}

impl BearerToken {
    pub(super) fn start(
        id: &str,
        c: &BearerTokenAuthConfig,
        cancel: &CancellationToken,
    ) -> Result<Arc<Self>, ComponentConfigError> {
        let header = http::HeaderName::from_bytes(c.header.as_bytes())
            .map_err(|_| ComponentConfigError::new("header", "is not a valid HTTP header name"))?;
        let (tokens, file) = match &c.filename {
            Some(f) => {
                let bytes = std::fs::read(f).map_err(|e| {
                    ComponentConfigError::new("filename", format!("cannot read {f:?}: {e}"))
                })?;
                let tokens =
                    file_tokens(&bytes).map_err(|m| ComponentConfigError::new("filename", m))?;
                if c.token.is_some() || !c.tokens.is_empty() {
                    tracing::warn!(
                        extension = id,
                        "filename is set: the token(s) written in the config are ignored"
                    );
                }
                (tokens, Some((f.clone(), bytes)))
            }
            None => {
                let mut t = c.tokens.clone();
                if let Some(one) = c.token.as_ref().filter(|t| !t.is_empty()) {
                    t.insert(0, one.clone());
                }
                (t, None)
            }
        };
        let me = Arc::new(BearerToken {
            header,
            scheme: c.scheme.clone(),
            values: RwLock::new(Arc::new(Values {
                digests: Vec::new(),
                first: http::HeaderValue::from_static(""),
            })),
        });
        me.set(&tokens).map_err(|m| {
            ComponentConfigError::new(if file.is_some() { "filename" } else { "token" }, m)
        })?;
        if let Some((path, bytes)) = file {
            let weak = Arc::downgrade(&me);
            watch_file("bearer token file", id, &path, bytes, cancel, move |b| {
                let tokens = file_tokens(b)?;
                match weak.upgrade() {
                    Some(me) => me.set(&tokens),
                    None => Ok(()),
                }
            });
        }
        Ok(me)
    }

    fn value_of(&self, token: &str) -> String {
        if self.scheme.is_empty() {
            token.to_string()
        } else {
            format!("{} {token}", self.scheme)
        }
    }

    fn set(&self, tokens: &[String]) -> Result<(), String> {
        let values: Vec<String> = tokens.iter().map(|t| self.value_of(t)).collect();
        let first = values
            .first()
            .ok_or("no token")?
            .parse::<http::HeaderValue>()
            .map_err(|_| "a token holds characters an HTTP header cannot carry".to_string())?;
        let mut first = first;
        first.set_sensitive(true);
        let v = Values {
            digests: values.iter().map(|v| digest(v.as_bytes())).collect(),
            first,
        };
        *self.values.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(v);
        Ok(())
    }

    fn current(&self) -> Arc<Values> {
        self.values
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ServerAuthenticator for BearerToken {
    fn authenticate<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
    ) -> BoxFuture<'a, Result<(), AuthFailure>> {
        let got = headers.get(&self.header).map(|v| digest(v.as_bytes()));
        let values = self.current();
        Box::pin(async move {
            let got = got.ok_or(AuthFailure::Missing)?;
            if matches_any(&got, &values.digests) {
                Ok(())
            } else {
                Err(AuthFailure::Invalid)
            }
        })
    }
}

impl ClientAuthenticator for BearerToken {
    fn header(&self) -> (http::HeaderName, http::HeaderValue) {
        (self.header.clone(), self.current().first.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(y: &str) -> BearerTokenAuthConfig {
        serde_yaml::from_str(y).unwrap()
    }

    fn headers(name: &str, v: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn checks_scheme_and_token_and_signs_with_the_first() {
        let c = cfg("token: s3cret\ntokens: [other]");
        c.validate().unwrap();
        let b = BearerToken::start("bearertokenauth", &c, &CancellationToken::new()).unwrap();
        let ok = headers("authorization", "Bearer s3cret");
        assert_eq!(b.authenticate(&ok).await, Ok(()));
        assert_eq!(
            b.authenticate(&headers("authorization", "Bearer other"))
                .await,
            Ok(())
        );
        assert_eq!(
            b.authenticate(&headers("authorization", "Bearer wrong"))
                .await,
            Err(AuthFailure::Invalid)
        );
        assert_eq!(
            b.authenticate(&headers("authorization", "s3cret")).await,
            Err(AuthFailure::Invalid),
            "the scheme is part of the value"
        );
        assert_eq!(
            b.authenticate(&http::HeaderMap::new()).await,
            Err(AuthFailure::Missing)
        );
        let (name, value) = b.header();
        assert_eq!(name, "authorization");
        assert_eq!(value, "Bearer s3cret");
        assert!(value.is_sensitive());
    }

    #[tokio::test]
    async fn custom_header_and_empty_scheme() {
        let c = cfg("token: abc\nheader: X-Api-Key\nscheme: ''");
        let b = BearerToken::start("b", &c, &CancellationToken::new()).unwrap();
        assert_eq!(b.authenticate(&headers("x-api-key", "abc")).await, Ok(()));
        assert_eq!(
            b.authenticate(&headers("authorization", "abc")).await,
            Err(AuthFailure::Missing)
        );
    }

    #[test]
    fn config_needs_a_token_source_and_hides_secrets_in_debug() {
        assert!(cfg("scheme: Bearer").validate().is_err());
        assert!(cfg("tokens: ['']").validate().is_err());
        let c = cfg("token: very-secret-value");
        assert!(!format!("{c:?}").contains("very-secret-value"));
        assert!(serde_yaml::from_str::<BearerTokenAuthConfig>("tokn: x").is_err());
    }

    #[tokio::test]
    async fn a_changed_token_file_is_picked_up() {
        let dir = std::env::temp_dir().join(format!("h17bearer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("token");
        std::fs::write(&f, "first\n").unwrap();
        let c = cfg(&format!("filename: {}", f.display()));
        c.validate().unwrap();
        let stop = CancellationToken::new();
        let b = BearerToken::start("b", &c, &stop).unwrap();
        assert_eq!(
            b.authenticate(&headers("authorization", "Bearer first"))
                .await,
            Ok(())
        );
        std::fs::write(&f, "second\n\n").unwrap();
        let mut switched = false;
        for _ in 0..100 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if b.authenticate(&headers("authorization", "Bearer second"))
                .await
                == Ok(())
            {
                switched = true;
                break;
            }
        }
        assert!(switched, "the new token was not picked up");
        assert_eq!(
            b.authenticate(&headers("authorization", "Bearer first"))
                .await,
            Err(AuthFailure::Invalid)
        );
        // An emptied file keeps the last good token.
        std::fs::write(&f, "\n").unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert_eq!(
            b.authenticate(&headers("authorization", "Bearer second"))
                .await,
            Ok(())
        );
        stop.cancel();
        std::fs::remove_dir_all(&dir).ok();
    }
}
