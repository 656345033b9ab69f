//! Errors of configuration parsing and validation, each naming the key path and the fix.
//!
//! Tests: `cargo test -p otel-collector config::`.

use std::fmt;

/// A mistake inside one component's configuration (`exporters.otlp/tempo`, `processors.batch`, ...).
///
/// `path` is relative to the component (for example `sending_queue.queue_size`); the config loader
/// prefixes it with the component's own path when it reports the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ComponentConfigError {
    /// Key path inside the component, dot separated (`protocols.grpc.endpoint`); empty for the
    /// component as a whole.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ComponentConfigError {
    /// An error at `path` (relative to the component) with a message saying what to do.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ComponentConfigError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Converts a `serde_path_to_error` failure into an error whose path is the failing key.
    pub fn from_serde(err: serde_path_to_error::Error<serde_yaml::Error>) -> Self {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = crate::config::error::humanize_serde_message(&err.inner().to_string());
        ComponentConfigError { path, message }
    }

    /// This error with `prefix` (e.g. `exporters.otlp`) put in front of its path.
    pub fn prefixed(&self, prefix: &str) -> String {
        if self.path.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", self.path)
        }
    }
}

impl fmt::Display for ComponentConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Removes serde_yaml's position suffix (" at line 3 column 5"), which is relative to the
/// component's re-serialised value and so would mislead.
pub(crate) fn humanize_serde_message(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}
