//! `resource` and `attributes` processors: insert, update, upsert or delete one attribute per
//! action, with a literal `value` or copied `from_attribute`.
//!
//! `resource` acts on resource attributes (config key `attributes`); `attributes` acts on span,
//! log record and metric data point attributes (config key `actions`). Upstream's `hash`,
//! `extract`, `convert` actions and `include`/`exclude` matching are not implemented and are
//! rejected as unknown values/keys.

use super::walk;
use crate::config::ComponentConfigError;
use crate::pipeline::{ConsumeFuture, Consumer, SharedConsumer, Telemetry};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyInner;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use serde::{Deserialize, Serialize};

/// One attribute action.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// The attribute key acted on.
    pub key: String,
    /// What to do.
    pub action: ActionKind,
    /// The literal value (insert/update/upsert).
    #[serde(default)]
    pub value: Option<serde_yaml::Value>,
    /// Copy the value of this attribute of the same item instead of a literal.
    #[serde(default)]
    pub from_attribute: Option<String>,
}

/// The action verbs implemented.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Add the key if absent.
    Insert,
    /// Change the key if present.
    Update,
    /// Insert or update.
    Upsert,
    /// Remove the key.
    Delete,
}

/// `processors.resource`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// Actions applied to every resource, in order.
    pub attributes: Vec<ActionConfig>,
}

/// `processors.attributes`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttributesConfig {
    /// Actions applied to every span / log record / data point, in order.
    pub actions: Vec<ActionConfig>,
}

fn validate_actions(list: &[ActionConfig], field: &str) -> Result<(), ComponentConfigError> {
    if list.is_empty() {
        return Err(ComponentConfigError::new(
            field,
            "no actions; add at least one `{key: K, action: upsert, value: V}`",
        ));
    }
    for (i, a) in list.iter().enumerate() {
        let at = |k: &str| format!("{field}[{i}]{k}");
        if a.key.is_empty() {
            return Err(ComponentConfigError::new(at(".key"), "must not be empty"));
        }
        match (a.action, &a.value, &a.from_attribute) {
            (ActionKind::Delete, None, None) => {}
            (ActionKind::Delete, _, _) => {
                return Err(ComponentConfigError::new(
                    at(""),
                    "`delete` takes no `value` or `from_attribute`; remove them",
                ))
            }
            (_, Some(_), Some(_)) => {
                return Err(ComponentConfigError::new(
                    at(""),
                    "give either `value` or `from_attribute`, not both",
                ))
            }
            (_, None, None) => {
                return Err(ComponentConfigError::new(
                    at(""),
                    format!(
                        "`{}` needs `value` or `from_attribute`",
                        format!("{:?}", a.action).to_lowercase()
                    ),
                ))
            }
            (_, Some(v), None) => {
                to_any(v).map_err(|m| ComponentConfigError::new(at(".value"), m))?;
            }
            _ => {}
        }
    }
    Ok(())
}

impl ResourceConfig {
    /// Checks the actions.
    ///
    /// # Errors
    /// The offending action and the fix.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        validate_actions(&self.attributes, "attributes")
    }
}

impl AttributesConfig {
    /// Checks the actions.
    ///
    /// # Errors
    /// The offending action and the fix.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        validate_actions(&self.actions, "actions")
    }
}

/// Converts a YAML value to an OTLP `AnyValue`.
pub(crate) fn to_any(v: &serde_yaml::Value) -> Result<AnyValue, String> {
    use serde_yaml::Value as Y;
    let inner = match v {
        Y::String(s) => AnyInner::StringValue(s.clone()),
        Y::Bool(b) => AnyInner::BoolValue(*b),
        Y::Number(n) => match n.as_i64() {
            Some(i) => AnyInner::IntValue(i),
            None => AnyInner::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        Y::Sequence(s) => AnyInner::ArrayValue(ArrayValue {
            values: s.iter().map(to_any).collect::<Result<_, _>>()?,
        }),
        Y::Mapping(m) => AnyInner::KvlistValue(KeyValueList {
            values: m
                .iter()
                .map(|(k, v)| {
                    Ok(KeyValue {
                        key: config_env::key_text(k),
                        value: Some(to_any(v)?),
                        ..Default::default()
                    })
                })
                .collect::<Result<_, String>>()?,
        }),
        Y::Null => {
            return Err("a null value cannot be an attribute; use `delete` to remove one".into())
        }
        Y::Tagged(t) => return to_any(&t.value),
    };
    Ok(AnyValue { value: Some(inner) })
}

#[derive(Debug, Clone)]
enum Source {
    Value(AnyValue),
    From(String),
}

#[derive(Debug, Clone)]
struct Action {
    key: String,
    kind: ActionKind,
    source: Option<Source>,
}

fn compile(list: &[ActionConfig]) -> Vec<Action> {
    list.iter()
        .map(|a| Action {
            key: a.key.clone(),
            kind: a.action,
            source: match (&a.value, &a.from_attribute) {
                (Some(v), _) => to_any(v).ok().map(Source::Value),
                (None, Some(f)) => Some(Source::From(f.clone())),
                _ => None,
            },
        })
        .collect()
}

fn apply(actions: &[Action], attrs: &mut Vec<KeyValue>) {
    for a in actions {
        let pos = attrs.iter().position(|kv| kv.key == a.key);
        if a.kind == ActionKind::Delete {
            attrs.retain(|kv| kv.key != a.key);
            continue;
        }
        let wanted = match (a.kind, pos) {
            (ActionKind::Insert, Some(_)) | (ActionKind::Update, None) => continue,
            _ => true,
        };
        if !wanted {
            continue;
        }
        let value = match &a.source {
            Some(Source::Value(v)) => v.clone(),
            Some(Source::From(k)) => match attrs
                .iter()
                .find(|kv| &kv.key == k)
                .and_then(|kv| kv.value.clone())
            {
                Some(v) => v,
                None => continue,
            },
            None => continue,
        };
        match pos {
            Some(i) => attrs[i].value = Some(value),
            None => attrs.push(KeyValue {
                key: a.key.clone(),
                value: Some(value),
                ..Default::default()
            }),
        }
    }
}

/// The `resource` processor.
pub struct ResourceProcessor {
    actions: Vec<Action>,
    next: SharedConsumer,
}

impl ResourceProcessor {
    /// Builds it in front of `next`.
    pub fn new(c: &ResourceConfig, next: SharedConsumer) -> Self {
        ResourceProcessor {
            actions: compile(&c.attributes),
            next,
        }
    }
}

impl Consumer for ResourceProcessor {
    fn consume(&self, mut data: Telemetry) -> ConsumeFuture<'_> {
        walk::ensure_resources(&mut data);
        walk::resource_attrs(&mut data, |attrs| apply(&self.actions, attrs));
        self.next.consume(data)
    }
}

/// The `attributes` processor.
pub struct AttributesProcessor {
    actions: Vec<Action>,
    next: SharedConsumer,
}

impl AttributesProcessor {
    /// Builds it in front of `next`.
    pub fn new(c: &AttributesConfig, next: SharedConsumer) -> Self {
        AttributesProcessor {
            actions: compile(&c.actions),
            next,
        }
    }
}

impl Consumer for AttributesProcessor {
    fn consume(&self, mut data: Telemetry) -> ConsumeFuture<'_> {
        walk::item_attrs(&mut data, |attrs| apply(&self.actions, attrs));
        self.next.consume(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_component;

    fn s(v: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(AnyInner::StringValue(v.into())),
        })
    }

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: s(v),
            ..Default::default()
        }
    }

    fn actions(yaml: &str) -> Vec<Action> {
        let c: AttributesConfig = parse_component(serde_yaml::from_str(yaml).unwrap()).unwrap();
        c.validate().unwrap();
        compile(&c.actions)
    }

    #[test]
    fn insert_update_upsert_delete() {
        let a = actions(
            "actions:\n- {key: a, action: insert, value: new}\n- {key: b, action: insert, value: new}\n- {key: c, action: update, value: x}\n- {key: d, action: update, value: x}\n- {key: e, action: upsert, value: 5}\n- {key: f, action: delete}\n- {key: g, action: upsert, from_attribute: a}\n",
        );
        let mut attrs = vec![kv("a", "old"), kv("c", "old"), kv("f", "gone")];
        apply(&a, &mut attrs);
        let get = |k: &str| {
            attrs
                .iter()
                .find(|kv| kv.key == k)
                .map(|kv| kv.value.clone())
        };
        assert_eq!(get("a"), Some(s("old")), "insert keeps existing");
        assert_eq!(get("b"), Some(s("new")), "insert adds missing");
        assert_eq!(get("c"), Some(s("x")), "update changes existing");
        assert_eq!(get("d"), None, "update does not add");
        assert_eq!(
            get("e"),
            Some(Some(AnyValue {
                value: Some(AnyInner::IntValue(5))
            }))
        );
        assert_eq!(get("f"), None, "delete removes");
        assert_eq!(get("g"), Some(s("old")), "from_attribute copies");
    }

    #[test]
    fn invalid_actions_name_the_entry() {
        let c: AttributesConfig = parse_component(
            serde_yaml::from_str("actions:\n- {key: a, action: insert}\n").unwrap(),
        )
        .unwrap();
        let e = c.validate().unwrap_err();
        assert_eq!(e.path, "actions[0]");
        assert!(
            e.message.contains("needs `value` or `from_attribute`"),
            "{e}"
        );
        let e = parse_component::<AttributesConfig>(
            serde_yaml::from_str("actions:\n- {key: a, action: hash}\n").unwrap(),
        )
        .unwrap_err();
        assert!(e.message.contains("unknown value `hash`"), "{e}");
        assert!(e.message.contains("upsert"), "{e}");
    }
}
