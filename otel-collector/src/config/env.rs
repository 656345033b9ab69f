//! `${env:VAR}`, `${env:VAR:-default}` and bare `${VAR}` substitution in config string values.
//!
//! As upstream, substitution happens in the parsed YAML's string values (not in the raw text), so
//! a value cannot inject YAML structure; `$$` is a literal `$`; a string that is exactly one
//! reference takes the type of the substituted text (`${env:PORT}` with `PORT=4317` is an int).
//! An unset variable without a default becomes the empty string with a warning (upstream does so).
//!
//! Tests: `cargo test -p otel-collector config::env`.

use serde_yaml::Value;

/// Substitutes every reference in the string values of `value`, recursively.
///
/// `lookup` returns a variable's value (`std::env::var` in production). Warnings (unset variables)
/// are pushed to `warnings`.
///
/// # Errors
/// A message naming the key path when a reference is malformed or uses an unsupported provider.
pub fn substitute(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    match value {
        Value::String(s) if s.contains('$') => {
            let (out, whole) = expand(s, path, lookup, warnings)?;
            *value = if whole {
                typed_scalar(out)
            } else {
                Value::String(out)
            };
        }
        Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                let key = key_text(k);
                let child = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                substitute(v, &child, lookup, warnings)?;
            }
        }
        Value::Sequence(seq) => {
            for (i, v) in seq.iter_mut().enumerate() {
                substitute(v, &format!("{path}[{i}]"), lookup, warnings)?;
            }
        }
        Value::Tagged(t) => substitute(&mut t.value, path, lookup, warnings)?,
        _ => {}
    }
    Ok(())
}

/// The text of a mapping key, for key paths.
pub(crate) fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        other => format!("{other:?}"),
    }
}

/// Parses substituted text as a YAML scalar (int, float, bool) when it is one; else a string.
fn typed_scalar(text: String) -> Value {
    match serde_yaml::from_str::<Value>(&text) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(text),
    }
}

/// Expands one string; the bool is true when the whole string was a single reference.
fn expand(
    s: &str,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<(String, bool), String> {
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
            let end = body_and_tail.find('}').ok_or_else(|| {
                format!(
                    "{path}: unterminated `${{` in {s:?}; close it with `}}` or write `$$` for a literal `$`"
                )
            })?;
            let body = &body_and_tail[..end];
            out.push_str(&resolve(body, path, lookup, warnings)?);
            references += 1;
            rest = &body_and_tail[end + 1..];
        } else {
            out.push('$');
            literal = true;
            rest = after;
        }
    }
    let whole = references == 1 && !literal && s.starts_with("${") && s.ends_with('}');
    out.push_str(rest);
    Ok((out, whole))
}

fn resolve(
    body: &str,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let (scheme, spec) = match body.split_once(':') {
        Some((scheme, spec)) if is_ident(scheme) && !spec.starts_with('-') => (scheme, spec),
        _ => ("env", body),
    };
    if scheme != "env" {
        return Err(format!(
            "{path}: `${{{body}}}` uses the `{scheme}` provider, which this collector does not support; use `${{env:VAR}}`"
        ));
    }
    let (name, default) = match spec.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (spec, None),
    };
    if !is_ident(name) {
        return Err(format!(
            "{path}: `${{{body}}}`: `{name}` is not a valid environment variable name (letters, digits, `_`)"
        ));
    }
    match (lookup(name), default) {
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_string()),
        (None, None) => {
            warnings.push(format!(
                "{path}: environment variable {name} is not set; substituted an empty string (set it or write `${{env:{name}:-default}}`)"
            ));
            Ok(String::new())
        }
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("10.0.0.1".into()),
            "PORT" => Some("4317".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(yaml: &str) -> (Result<Value, String>, Vec<String>) {
        let mut v: Value = serde_yaml::from_str(yaml).unwrap();
        let mut w = Vec::new();
        let r = substitute(&mut v, "", &env, &mut w).map(|_| v);
        (r, w)
    }

    #[test]
    fn env_default_and_bare_forms() {
        let (v, w) =
            run("a: ${env:HOST}:${env:PORT}\nb: ${env:NOPE:-127.0.0.1}:1\nc: ${HOST}\nd: x$$y\n");
        let v = v.unwrap();
        assert_eq!(v["a"], Value::String("10.0.0.1:4317".into()));
        assert_eq!(v["b"], Value::String("127.0.0.1:1".into()));
        assert_eq!(v["c"], Value::String("10.0.0.1".into()));
        assert_eq!(v["d"], Value::String("x$y".into()));
        assert!(w.is_empty());
    }

    #[test]
    fn whole_reference_takes_scalar_type() {
        let (v, _) = run("port: ${env:PORT}\nflag: ${env:NOPE:-true}\ns: \"${env:PORT}x\"\n");
        let v = v.unwrap();
        assert_eq!(v["port"], Value::Number(4317.into()));
        assert_eq!(v["flag"], Value::Bool(true));
        assert_eq!(v["s"], Value::String("4317x".into()));
    }

    #[test]
    fn unset_without_default_warns_with_path() {
        let (v, w) = run("exporters:\n  otlp:\n    endpoint: ${env:MISSING}\n");
        assert_eq!(
            v.unwrap()["exporters"]["otlp"]["endpoint"],
            Value::String(String::new())
        );
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("exporters.otlp.endpoint"), "{}", w[0]);
        assert!(w[0].contains("MISSING"), "{}", w[0]);
    }

    #[test]
    fn unsupported_provider_and_unterminated_are_errors() {
        let (r, _) = run("a:\n  b: ${file:/etc/x}\n");
        let e = r.unwrap_err();
        assert!(
            e.starts_with("a.b:") && e.contains("`file` provider"),
            "{e}"
        );
        let (r, _) = run("a: ${env:HOST\n");
        assert!(r.unwrap_err().contains("unterminated"));
    }

    #[test]
    fn values_cannot_inject_structure() {
        let mut v: Value = serde_yaml::from_str("a: ${env:X}").unwrap();
        let look = |_: &str| Some("{b: 1}".to_string());
        substitute(&mut v, "", &look, &mut Vec::new()).unwrap();
        assert_eq!(v["a"], Value::String("{b: 1}".into()));
    }
}
