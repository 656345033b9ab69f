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
    ///
    /// Unknown keys and values get a "did you mean" suggestion and the list of valid ones.
    pub fn from_serde(err: serde_path_to_error::Error<serde_yaml::Error>) -> Self {
        let path = err.path().to_string();
        let mut path = if path == "." { String::new() } else { path };
        let message = humanize_serde_message(&err.inner().to_string());
        match crate::config::suggest::rewrite_unknown(&message) {
            Some((word, rewritten, is_key)) => {
                let last = path.rsplit('.').next().unwrap_or("");
                if is_key && last != word {
                    path = if path.is_empty() {
                        word
                    } else {
                        format!("{path}.{word}")
                    };
                }
                ComponentConfigError {
                    path,
                    message: rewritten,
                }
            }
            None => ComponentConfigError { path, message },
        }
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

/// Deserialises one component's YAML value into its typed config (`null` means all defaults),
/// with errors naming the key path inside the component.
///
/// # Errors
/// The first mistake found, with its key path and the fix.
pub fn parse_component<T: serde::de::DeserializeOwned>(
    value: serde_yaml::Value,
) -> Result<T, ComponentConfigError> {
    let value = match value {
        serde_yaml::Value::Null => serde_yaml::Value::Mapping(Default::default()),
        v => v,
    };
    serde_path_to_error::deserialize(value).map_err(ComponentConfigError::from_serde)
}

/// Removes serde_yaml's position suffix (" at line 3 column 5"), which is relative to the
/// component's re-serialised value and so would mislead.
pub(crate) fn humanize_serde_message(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(default)]
        endpoint: String,
        #[serde(default)]
        transport: String,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        #[serde(default)]
        grpc: Option<Inner>,
    }

    #[test]
    fn unknown_key_names_full_path_and_suggests() {
        let v: serde_yaml::Value = serde_yaml::from_str("grpc:\n  endpointt: x\n").unwrap();
        let e = parse_component::<Outer>(v).unwrap_err();
        assert_eq!(e.path, "grpc.endpointt");
        assert!(
            e.message.contains("did you mean `endpoint`"),
            "{}",
            e.message
        );
        assert_eq!(
            e.prefixed("receivers.otlp"),
            "receivers.otlp.grpc.endpointt"
        );
    }

    #[test]
    fn null_means_defaults() {
        let o = parse_component::<Outer>(serde_yaml::Value::Null).unwrap();
        assert!(o.grpc.is_none());
    }
}
