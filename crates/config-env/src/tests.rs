use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "HOST" => Some("10.0.0.1".into()),
        "PORT" => Some("4317".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn run(yaml: &str, unset: Unset) -> (Result<Value, SubstError>, Vec<String>) {
    let mut v: Value = serde_yaml::from_str(yaml).unwrap();
    match substitute(&mut v, &env, unset) {
        Ok(warnings) => (Ok(v), warnings),
        Err(e) => (Err(e), Vec::new()),
    }
}

fn warn(yaml: &str) -> (Result<Value, SubstError>, Vec<String>) {
    run(yaml, Unset::EmptyWithWarning)
}

#[test]
fn env_default_and_bare_forms() {
    let (v, w) =
        warn("a: ${env:HOST}:${env:PORT}\nb: ${env:NOPE:-127.0.0.1}:1\nc: ${HOST}\nd: x$$y\n");
    let v = v.unwrap();
    assert_eq!(v["a"], Value::String("10.0.0.1:4317".into()));
    assert_eq!(v["b"], Value::String("127.0.0.1:1".into()));
    assert_eq!(v["c"], Value::String("10.0.0.1".into()));
    assert_eq!(v["d"], Value::String("x$y".into()));
    assert!(w.is_empty());
}

#[test]
fn bare_form_with_default_and_lone_dollar() {
    let (v, _) = warn("a: ${NOPE:-x}\nb: cost $5\nc: ${EMPTY:-d}\n");
    let v = v.unwrap();
    assert_eq!(v["a"], Value::String("x".into()));
    assert_eq!(v["b"], Value::String("cost $5".into()));
    assert_eq!(v["c"], Value::String(String::new()), "set but empty wins");
}

#[test]
fn whole_reference_takes_scalar_type() {
    let (v, _) = warn("port: ${env:PORT}\nflag: ${env:NOPE:-true}\ns: \"${env:PORT}x\"\n");
    let v = v.unwrap();
    assert_eq!(v["port"], Value::Number(4317.into()));
    assert_eq!(v["flag"], Value::Bool(true));
    assert_eq!(v["s"], Value::String("4317x".into()));
}

#[test]
fn sequences_tags_and_paths() {
    let (v, w) = warn("list:\n  - ${env:HOST}\n  - k: ${env:MISSING}\ntagged: !t ${env:PORT}\n");
    let v = v.unwrap();
    assert_eq!(v["list"][0], Value::String("10.0.0.1".into()));
    let Value::Tagged(t) = &v["tagged"] else {
        panic!("tag kept: {v:?}")
    };
    assert_eq!(t.value, Value::Number(4317.into()));
    assert_eq!(w.len(), 1);
    assert!(w[0].starts_with("list[1].k:"), "{}", w[0]);
}

#[test]
fn unset_without_default_warns_with_path() {
    let (v, w) = warn("exporters:\n  otlp:\n    endpoint: ${env:MISSING}\n");
    assert_eq!(
        v.unwrap()["exporters"]["otlp"]["endpoint"],
        Value::String(String::new())
    );
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("exporters.otlp.endpoint"), "{}", w[0]);
    assert!(w[0].contains("MISSING"), "{}", w[0]);
}

#[test]
fn unset_without_default_is_an_error_under_error_policy() {
    let (r, _) = run("webhooks:\n  - secret: ${env:MISSING}\n", Unset::Error);
    let e = r.unwrap_err();
    assert_eq!(
        e,
        SubstError::Unset {
            path: "webhooks[0].secret".into(),
            name: "MISSING".into()
        }
    );
    let msg = e.to_string();
    assert!(msg.starts_with("webhooks[0].secret: "), "{msg}");
    assert!(msg.contains("MISSING is not set"), "{msg}");
    assert!(msg.contains("${env:MISSING:-default}"), "{msg}");
}

#[test]
fn error_policy_still_uses_values_and_defaults() {
    let (v, w) = run(
        "a: ${env:HOST}\nb: ${env:NOPE:-d}\nc: ${env:EMPTY}\n",
        Unset::Error,
    );
    let v = v.unwrap();
    assert_eq!(v["a"], Value::String("10.0.0.1".into()));
    assert_eq!(v["b"], Value::String("d".into()));
    assert_eq!(v["c"], Value::String(String::new()));
    assert!(w.is_empty());
}

#[test]
fn unsupported_provider_and_unterminated_are_errors() {
    let (r, _) = warn("a:\n  b: ${file:/etc/x}\n");
    let e = r.unwrap_err().to_string();
    assert!(
        e.starts_with("a.b:") && e.contains("`file` provider"),
        "{e}"
    );
    let (r, _) = warn("a: ${env:HOST\n");
    assert!(r.unwrap_err().to_string().contains("unterminated"));
}

#[test]
fn invalid_name_is_an_error() {
    let (r, _) = run("a: ${env:1X}\n", Unset::Error);
    assert!(matches!(r, Err(SubstError::InvalidName { ref name, .. }) if name == "1X"));
}

#[test]
fn values_cannot_inject_structure() {
    let mut v: Value = serde_yaml::from_str("a: ${env:X}").unwrap();
    let look = |_: &str| Some("{b: 1}".to_string());
    substitute(&mut v, &look, Unset::Error).unwrap();
    assert_eq!(v["a"], Value::String("{b: 1}".into()));
}

#[test]
fn keys_are_not_substituted() {
    let (v, _) = run("${env:HOST}: 1\n", Unset::Error);
    assert_eq!(v.unwrap()["${env:HOST}"], Value::Number(1.into()));
}

#[test]
fn key_text_of_scalar_keys() {
    assert_eq!(key_text(&Value::String("otlp/a".into())), "otlp/a");
    assert_eq!(key_text(&Value::Number(8080.into())), "8080");
    assert_eq!(key_text(&Value::Bool(true)), "true");
    assert_eq!(key_text(&Value::Null), "null");
}
