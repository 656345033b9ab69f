//! `${env:VAR}` / `${env:VAR:-default}` substitution in parsed YAML configuration values.
//!
//! Substitution works on the string scalars of a parsed [`serde_yaml::Value`], not on the raw
//! text, so a variable's value cannot inject YAML structure. The rules follow the upstream
//! OpenTelemetry Collector:
//!
//! - `${env:VAR}` is the variable's value; `${env:VAR:-default}` falls back to `default` when
//!   `VAR` is unset; the bare `${VAR}` form is the same as `${env:VAR}`.
//! - `$$` is a literal `$`; a `$` not followed by `{` or `$` is kept as is.
//! - A string that is exactly one reference takes the type of the substituted text
//!   (`${env:PORT}` with `PORT=4317` becomes the integer 4317; likewise floats and booleans).
//! - Providers other than `env` (`${file:…}`, `${http:…}`) are an error.
//! - An unset variable without a default is handled as [`Unset`] says: the empty string plus a
//!   warning (upstream's behaviour), or an error.
//!
//! Every warning and error starts with the key path of the value (`exporters.otlp.endpoint`,
//! `webhooks[0].secret`) and says how to fix it.
//!
//! ```
//! let mut doc: serde_yaml::Value = serde_yaml::from_str("port: ${env:PORT:-4317}").unwrap();
//! let warnings = config_env::substitute(&mut doc, &|_| None, config_env::Unset::Error).unwrap();
//! assert_eq!(doc["port"], serde_yaml::Value::Number(4317.into()));
//! assert!(warnings.is_empty());
//! ```
//!
//! Tests: `cargo test -p config-env`.

use serde_yaml::Value;

/// What an unset variable without a `:-default` becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unset {
    /// The empty string, and a warning naming the key path (upstream otelcol's behaviour).
    EmptyWithWarning,
    /// A [`SubstError::Unset`] naming the key path.
    Error,
}

/// A reference that cannot be substituted; the message names the key path and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstError {
    /// `${` without a closing `}`.
    #[error("{path}: unterminated `${{` in {text:?}; close it with `}}` or write `$$` for a literal `$`")]
    Unterminated {
        /// Key path of the value.
        path: String,
        /// The whole string value.
        text: String,
    },
    /// A provider other than `env`, e.g. `${file:/etc/token}`.
    #[error("{path}: `${{{reference}}}` uses the `{provider}` provider, which is not supported; use `${{env:VAR}}`")]
    UnsupportedProvider {
        /// Key path of the value.
        path: String,
        /// The text between `${` and `}`.
        reference: String,
        /// The provider name (the part before the first `:`).
        provider: String,
    },
    /// A variable name that is not letters, digits and `_` (or starts with a digit).
    #[error("{path}: `${{{reference}}}`: `{name}` is not a valid environment variable name (letters, digits, `_`)")]
    InvalidName {
        /// Key path of the value.
        path: String,
        /// The text between `${` and `}`.
        reference: String,
        /// The rejected name.
        name: String,
    },
    /// An unset variable without a default, under [`Unset::Error`].
    #[error("{path}: environment variable {name} is not set (set it, or write `${{env:{name}:-default}}`)")]
    Unset {
        /// Key path of the value.
        path: String,
        /// The variable.
        name: String,
    },
}

/// Substitutes every reference in the string values of `value`, recursively.
///
/// `lookup` returns a variable's value (`|name| std::env::var(name).ok()` in production);
/// `unset` decides what an unset variable without a default becomes. Returns the warnings
/// (one per unset variable under [`Unset::EmptyWithWarning`]). Mapping keys are not substituted.
///
/// # Errors
/// [`SubstError`] for the first malformed or unsupported reference, or for an unset variable
/// under [`Unset::Error`].
pub fn substitute(
    value: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: Unset,
) -> Result<Vec<String>, SubstError> {
    let mut ctx = Context {
        lookup,
        unset,
        warnings: Vec::new(),
    };
    ctx.walk(value, "")?;
    Ok(ctx.warnings)
}

/// The text of a mapping key as it appears in key paths (`otlp/tempo`, `8080`, `true`).
pub fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        other => format!("{other:?}"),
    }
}

struct Context<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    unset: Unset,
    warnings: Vec<String>,
}

impl Context<'_> {
    fn walk(&mut self, value: &mut Value, path: &str) -> Result<(), SubstError> {
        match value {
            Value::String(s) if s.contains('$') => {
                let (text, whole) = self.expand(s, path)?;
                *value = if whole {
                    typed_scalar(text)
                } else {
                    Value::String(text)
                };
            }
            Value::Mapping(m) => {
                for (k, v) in m.iter_mut() {
                    self.walk(v, &child_path(path, &key_text(k)))?;
                }
            }
            Value::Sequence(seq) => {
                for (i, v) in seq.iter_mut().enumerate() {
                    self.walk(v, &format!("{path}[{i}]"))?;
                }
            }
            Value::Tagged(t) => self.walk(&mut t.value, path)?,
            _ => {}
        }
        Ok(())
    }

    /// Expands one string; the bool is true when the whole string was a single reference.
    fn expand(&mut self, s: &str, path: &str) -> Result<(String, bool), SubstError> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        let mut references = 0;
        let mut literal = false;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                literal = true;
                rest = tail;
            } else if let Some(body_and_tail) = after.strip_prefix('{') {
                let end = body_and_tail
                    .find('}')
                    .ok_or_else(|| SubstError::Unterminated {
                        path: path.into(),
                        text: s.into(),
                    })?;
                out.push_str(&self.resolve(&body_and_tail[..end], path)?);
                references += 1;
                rest = &body_and_tail[end + 1..];
            } else {
                out.push('$');
                literal = true;
                rest = after;
            }
        }
        out.push_str(rest);
        let whole = references == 1 && !literal && s.starts_with("${") && s.ends_with('}');
        Ok((out, whole))
    }

    /// The replacement text of one reference (`body` is the text between `${` and `}`).
    fn resolve(&mut self, body: &str, path: &str) -> Result<String, SubstError> {
        let (name, default) = parse_reference(body, path)?;
        match ((self.lookup)(name), default, self.unset) {
            (Some(v), _, _) => Ok(v),
            (None, Some(d), _) => Ok(d.to_string()),
            (None, None, Unset::EmptyWithWarning) => {
                self.warnings.push(format!(
                    "{path}: environment variable {name} is not set; substituted an empty string (set it or write `${{env:{name}:-default}}`)"
                ));
                Ok(String::new())
            }
            (None, None, Unset::Error) => Err(SubstError::Unset {
                path: path.into(),
                name: name.into(),
            }),
        }
    }
}

/// Splits a reference body into the variable name and its default.
fn parse_reference<'b>(
    body: &'b str,
    path: &str,
) -> Result<(&'b str, Option<&'b str>), SubstError> {
    let spec = match body.split_once(':') {
        Some((provider, spec)) if is_ident(provider) && !spec.starts_with('-') => {
            if provider != "env" {
                return Err(SubstError::UnsupportedProvider {
                    path: path.into(),
                    reference: body.into(),
                    provider: provider.into(),
                });
            }
            spec
        }
        _ => body,
    };
    let (name, default) = match spec.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (spec, None),
    };
    if !is_ident(name) {
        return Err(SubstError::InvalidName {
            path: path.into(),
            reference: body.into(),
            name: name.into(),
        });
    }
    Ok((name, default))
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Parses substituted text as a YAML scalar (int, float, bool) when it is one; else a string.
fn typed_scalar(text: String) -> Value {
    match serde_yaml::from_str::<Value>(&text) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(text),
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests;
