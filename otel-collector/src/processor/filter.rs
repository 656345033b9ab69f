//! The `filter` processor, upstream's legacy include/exclude form (OTTL is not implemented).
//!
//! ```yaml
//! processors:
//!   filter:
//!     spans:
//!       include: {match_type: strict, services: [checkout]}
//!       exclude: {match_type: regexp, span_names: ["^GET /health"], attributes: [{key: http.route, value: /health}]}
//!     metrics:
//!       exclude: {match_type: regexp, metric_names: ["^go_.*"]}
//!     logs:
//!       exclude: {match_type: strict, severity_texts: [DEBUG], record_attributes: [{key: k, value: v}]}
//! ```
//! An item is kept when it matches `include` (if given) and does not match `exclude` (if given).
//! Within a matcher every property given must match (AND); within one property's list any entry
//! may match (OR). `regexp` patterns are unanchored, as upstream. An attribute entry without
//! `value` matches when the key is present. Supported properties: spans — `services`,
//! `span_names`, `attributes`, `resources`; metrics — `metric_names`, `resource_attributes`;
//! logs — `severity_texts`, `bodies`, `record_attributes`, `resource_attributes`.
//! Self-metric: `otelcol_processor_filter_{spans,datapoints,logs}_filtered{processor}`.
//!
//! Tests: `cargo test -p otel-collector processor::filter`.

use crate::config::{parse_component, ComponentConfigError};
use crate::pipeline::{ConsumeFuture, Consumer, SharedConsumer, Signal, Telemetry};
use crate::telemetry::{Counter, SelfMetrics};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyInner;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// `processors.filter`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Upstream's error handling for OTTL conditions. Parsed only to be refused by
    /// [`FilterConfig::validate`] with a clear message: OTTL is not implemented and the legacy
    /// matchers cannot fail, so the key could not act.
    #[serde(default)]
    pub error_mode: Option<serde_yaml::Value>,
    /// Span matching.
    #[serde(default)]
    pub spans: Option<IncludeExclude<SpanMatch>>,
    /// Metric matching.
    #[serde(default)]
    pub metrics: Option<IncludeExclude<MetricMatch>>,
    /// Log record matching.
    #[serde(default)]
    pub logs: Option<IncludeExclude<LogMatch>>,
}

/// `include` / `exclude` pair.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IncludeExclude<M> {
    /// Keep only matching items.
    #[serde(default)]
    pub include: Option<M>,
    /// Drop matching items.
    #[serde(default)]
    pub exclude: Option<M>,
}

/// How names and values are compared.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    /// Exact equality.
    #[default]
    Strict,
    /// Unanchored regular expression.
    Regexp,
}

/// One attribute condition.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttrMatch {
    /// Attribute key.
    pub key: String,
    /// Value (or pattern); absent = key present.
    #[serde(default)]
    pub value: Option<serde_yaml::Value>,
}

/// Span properties.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpanMatch {
    /// `strict` or `regexp`.
    #[serde(default)]
    pub match_type: MatchType,
    /// `service.name` values.
    #[serde(default)]
    pub services: Vec<String>,
    /// Span names.
    #[serde(default)]
    pub span_names: Vec<String>,
    /// Span attributes (all must match).
    #[serde(default)]
    pub attributes: Vec<AttrMatch>,
    /// Resource attributes (all must match).
    #[serde(default)]
    pub resources: Vec<AttrMatch>,
}

/// Metric properties.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricMatch {
    /// `strict` or `regexp`.
    #[serde(default)]
    pub match_type: MatchType,
    /// Metric names.
    #[serde(default)]
    pub metric_names: Vec<String>,
    /// Resource attributes (all must match).
    #[serde(default)]
    pub resource_attributes: Vec<AttrMatch>,
}

/// Log record properties.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogMatch {
    /// `strict` or `regexp`.
    #[serde(default)]
    pub match_type: MatchType,
    /// Severity texts.
    #[serde(default)]
    pub severity_texts: Vec<String>,
    /// String bodies.
    #[serde(default)]
    pub bodies: Vec<String>,
    /// Record attributes (all must match).
    #[serde(default)]
    pub record_attributes: Vec<AttrMatch>,
    /// Resource attributes (all must match).
    #[serde(default)]
    pub resource_attributes: Vec<AttrMatch>,
}

const OTTL_HINT: &str = "OTTL conditions are not supported by this collector; use the legacy form `spans|metrics|logs: {include|exclude: {match_type: strict|regexp, ...}}` (see docs/collector.md)";

impl FilterConfig {
    /// Parses the YAML value, refusing OTTL keys with a pointer to the supported form.
    ///
    /// # Errors
    /// OTTL keys, unknown keys, bad types.
    pub fn parse(value: serde_yaml::Value) -> Result<Self, ComponentConfigError> {
        for (path, v) in [
            ("traces", &value["traces"]),
            ("metrics.metric", &value["metrics"]["metric"]),
            ("metrics.datapoint", &value["metrics"]["datapoint"]),
            ("logs.log_record", &value["logs"]["log_record"]),
        ] {
            if !v.is_null() {
                return Err(ComponentConfigError::new(path, OTTL_HINT));
            }
        }
        parse_component(value)
    }

    /// Compiles the patterns to check them.
    ///
    /// # Errors
    /// An invalid regular expression, naming its key.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        if self.error_mode.is_some() {
            return Err(ComponentConfigError::new(
                "error_mode",
                "applies to OTTL conditions, which this collector does not implement; the legacy include/exclude matchers cannot fail, so remove error_mode",
            ));
        }
        if self.spans.is_none() && self.metrics.is_none() && self.logs.is_none() {
            return Err(ComponentConfigError::new(
                "",
                "nothing to filter; add `spans`, `metrics` or `logs` with `include` or `exclude`",
            ));
        }
        Compiled::new(self).map(|_| ())
    }
}

#[derive(Debug)]
enum StrMatch {
    Strict(Vec<String>),
    Regexp(Vec<Regex>),
}

impl StrMatch {
    fn new(
        t: MatchType,
        list: &[String],
        path: &str,
    ) -> Result<Option<Self>, ComponentConfigError> {
        if list.is_empty() {
            return Ok(None);
        }
        Ok(Some(match t {
            MatchType::Strict => StrMatch::Strict(list.to_vec()),
            MatchType::Regexp => StrMatch::Regexp(
                list.iter()
                    .enumerate()
                    .map(|(i, p)| {
                        Regex::new(p).map_err(|e| {
                            ComponentConfigError::new(
                                format!("{path}[{i}]"),
                                format!("invalid regular expression: {e}"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
        }))
    }
    fn matches(&self, s: &str) -> bool {
        match self {
            StrMatch::Strict(l) => l.iter().any(|x| x == s),
            StrMatch::Regexp(l) => l.iter().any(|r| r.is_match(s)),
        }
    }
}

#[derive(Debug)]
struct AttrCond {
    key: String,
    value: Option<StrMatch>,
}

fn attr_conds(
    t: MatchType,
    list: &[AttrMatch],
    path: &str,
) -> Result<Vec<AttrCond>, ComponentConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            let value = match &a.value {
                None => None,
                Some(v) => {
                    let text = scalar_text(v).ok_or_else(|| {
                        ComponentConfigError::new(
                            format!("{path}[{i}].value"),
                            "must be a string, number or bool",
                        )
                    })?;
                    StrMatch::new(t, &[text], &format!("{path}[{i}].value"))?
                }
            };
            Ok(AttrCond {
                key: a.key.clone(),
                value,
            })
        })
        .collect()
}

fn scalar_text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn any_text(v: &AnyValue) -> Option<String> {
    match v.value.as_ref()? {
        AnyInner::StringValue(s) => Some(s.clone()),
        AnyInner::IntValue(i) => Some(i.to_string()),
        AnyInner::DoubleValue(d) => Some(d.to_string()),
        AnyInner::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

fn attrs_match(conds: &[AttrCond], attrs: &[KeyValue]) -> bool {
    conds.iter().all(|c| {
        attrs.iter().any(|kv| {
            kv.key == c.key
                && match &c.value {
                    None => true,
                    Some(m) => kv
                        .value
                        .as_ref()
                        .and_then(any_text)
                        .is_some_and(|t| m.matches(&t)),
                }
        })
    })
}

fn resource_attrs(r: &Option<Resource>) -> &[KeyValue] {
    r.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[])
}

#[derive(Debug)]
struct SpanM {
    services: Option<StrMatch>,
    names: Option<StrMatch>,
    attrs: Vec<AttrCond>,
    resources: Vec<AttrCond>,
}

#[derive(Debug)]
struct MetricM {
    names: Option<StrMatch>,
    resources: Vec<AttrCond>,
}

#[derive(Debug)]
struct LogM {
    severities: Option<StrMatch>,
    bodies: Option<StrMatch>,
    attrs: Vec<AttrCond>,
    resources: Vec<AttrCond>,
}

#[derive(Debug, Default)]
struct Compiled {
    spans: (Option<SpanM>, Option<SpanM>),
    metrics: (Option<MetricM>, Option<MetricM>),
    logs: (Option<LogM>, Option<LogM>),
}

impl Compiled {
    fn new(c: &FilterConfig) -> Result<Self, ComponentConfigError> {
        let span = |m: &Option<SpanMatch>,
                    p: &str|
         -> Result<Option<SpanM>, ComponentConfigError> {
            m.as_ref()
                .map(|m| {
                    Ok(SpanM {
                        services: StrMatch::new(
                            m.match_type,
                            &m.services,
                            &format!("{p}.services"),
                        )?,
                        names: StrMatch::new(
                            m.match_type,
                            &m.span_names,
                            &format!("{p}.span_names"),
                        )?,
                        attrs: attr_conds(m.match_type, &m.attributes, &format!("{p}.attributes"))?,
                        resources: attr_conds(
                            m.match_type,
                            &m.resources,
                            &format!("{p}.resources"),
                        )?,
                    })
                })
                .transpose()
        };
        let metric =
            |m: &Option<MetricMatch>, p: &str| -> Result<Option<MetricM>, ComponentConfigError> {
                m.as_ref()
                    .map(|m| {
                        Ok(MetricM {
                            names: StrMatch::new(
                                m.match_type,
                                &m.metric_names,
                                &format!("{p}.metric_names"),
                            )?,
                            resources: attr_conds(
                                m.match_type,
                                &m.resource_attributes,
                                &format!("{p}.resource_attributes"),
                            )?,
                        })
                    })
                    .transpose()
            };
        let log = |m: &Option<LogMatch>, p: &str| -> Result<Option<LogM>, ComponentConfigError> {
            m.as_ref()
                .map(|m| {
                    Ok(LogM {
                        severities: StrMatch::new(
                            m.match_type,
                            &m.severity_texts,
                            &format!("{p}.severity_texts"),
                        )?,
                        bodies: StrMatch::new(m.match_type, &m.bodies, &format!("{p}.bodies"))?,
                        attrs: attr_conds(
                            m.match_type,
                            &m.record_attributes,
                            &format!("{p}.record_attributes"),
                        )?,
                        resources: attr_conds(
                            m.match_type,
                            &m.resource_attributes,
                            &format!("{p}.resource_attributes"),
                        )?,
                    })
                })
                .transpose()
        };
        let mut out = Compiled::default();
        if let Some(s) = &c.spans {
            out.spans = (
                span(&s.include, "spans.include")?,
                span(&s.exclude, "spans.exclude")?,
            );
        }
        if let Some(s) = &c.metrics {
            out.metrics = (
                metric(&s.include, "metrics.include")?,
                metric(&s.exclude, "metrics.exclude")?,
            );
        }
        if let Some(s) = &c.logs {
            out.logs = (
                log(&s.include, "logs.include")?,
                log(&s.exclude, "logs.exclude")?,
            );
        }
        Ok(out)
    }
}

/// Keep when (no include or include matches) and (no exclude or exclude does not match).
fn keep<M>(pair: &(Option<M>, Option<M>), matches: impl Fn(&M) -> bool) -> bool {
    pair.0.as_ref().is_none_or(&matches) && !pair.1.as_ref().is_some_and(&matches)
}

/// The running `filter` processor.
pub struct FilterProcessor {
    compiled: Compiled,
    next: SharedConsumer,
    filtered: Counter,
}

impl FilterProcessor {
    /// Builds it in front of `next`. The config was validated at load.
    pub fn new(id: &str, c: &FilterConfig, signal: Signal, next: SharedConsumer) -> Self {
        let name: &'static str = match signal {
            Signal::Traces => "otelcol_processor_filter_spans_filtered_total",
            Signal::Metrics => "otelcol_processor_filter_datapoints_filtered_total",
            Signal::Logs => "otelcol_processor_filter_logs_filtered_total",
        };
        FilterProcessor {
            compiled: Compiled::new(c).unwrap_or_default(),
            next,
            filtered: SelfMetrics::global().counter(
                name,
                "Items dropped by the filter processor.",
                vec![("processor", id.to_string())],
            ),
        }
    }

    /// Applies the filter in place.
    fn apply(&self, data: &mut Telemetry) {
        let c = &self.compiled;
        match data {
            Telemetry::Traces(r) if c.spans.0.is_some() || c.spans.1.is_some() => {
                retain_nested(
                    &mut r.resource_spans,
                    |rs| (resource_attrs(&rs.resource), &mut rs.scope_spans),
                    |ss| &mut ss.spans,
                    |res, s| {
                        let service = res
                            .iter()
                            .find(|kv| kv.key == "service.name")
                            .and_then(|kv| kv.value.as_ref())
                            .and_then(any_text)
                            .unwrap_or_default();
                        keep(&c.spans, |m: &SpanM| {
                            m.services.as_ref().is_none_or(|x| x.matches(&service))
                                && m.names.as_ref().is_none_or(|x| x.matches(&s.name))
                                && attrs_match(&m.attrs, &s.attributes)
                                && attrs_match(&m.resources, res)
                        })
                    },
                );
            }
            Telemetry::Metrics(r) if c.metrics.0.is_some() || c.metrics.1.is_some() => {
                retain_nested(
                    &mut r.resource_metrics,
                    |rm| (resource_attrs(&rm.resource), &mut rm.scope_metrics),
                    |sm| &mut sm.metrics,
                    |res, m| {
                        keep(&c.metrics, |x: &MetricM| {
                            x.names.as_ref().is_none_or(|n| n.matches(&m.name))
                                && attrs_match(&x.resources, res)
                        })
                    },
                );
            }
            Telemetry::Logs(r) if c.logs.0.is_some() || c.logs.1.is_some() => {
                retain_nested(
                    &mut r.resource_logs,
                    |rl| (resource_attrs(&rl.resource), &mut rl.scope_logs),
                    |sl| &mut sl.log_records,
                    |res, l| {
                        keep(&c.logs, |x: &LogM| {
                            let body = l.body.as_ref().and_then(any_text).unwrap_or_default();
                            x.severities
                                .as_ref()
                                .is_none_or(|m| m.matches(&l.severity_text))
                                && x.bodies.as_ref().is_none_or(|m| m.matches(&body))
                                && attrs_match(&x.attrs, &l.attributes)
                                && attrs_match(&x.resources, res)
                        })
                    },
                );
            }
            _ => {}
        }
    }
}

/// Keeps the items (resource → scope → item) for which `keep(resource attributes, item)` holds,
/// then drops scopes and resources left empty.
fn retain_nested<R, S, I>(
    resources: &mut Vec<R>,
    split: impl Fn(&mut R) -> (&[KeyValue], &mut Vec<S>),
    items: impl Fn(&mut S) -> &mut Vec<I>,
    keep: impl Fn(&[KeyValue], &I) -> bool,
) {
    resources.retain_mut(|r| {
        let (res, scopes) = split(r);
        scopes.retain_mut(|s| {
            let list = items(s);
            list.retain(|i| keep(res, i));
            !list.is_empty()
        });
        !scopes.is_empty()
    });
}

impl Consumer for FilterProcessor {
    fn consume(&self, mut data: Telemetry) -> ConsumeFuture<'_> {
        let before = data.item_count();
        self.apply(&mut data);
        let after = data.item_count();
        self.filtered.add((before - after) as u64);
        if after == 0 {
            return Box::pin(async { Ok(()) });
        }
        self.next.consume(data)
    }
}

#[cfg(test)]
mod tests;
