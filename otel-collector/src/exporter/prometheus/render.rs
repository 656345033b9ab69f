//! Text exposition 0.0.4 and OpenMetrics 1.0 rendering of the stored series, straight into one
//! buffer: each series' label text is rendered once when the series is created.

use super::Store;
use crate::translate::model::push_float;
use crate::translate::{Exemplar, Labels, MetricKind, PointValue};
use std::fmt::Write as _;

/// `a="1",b="2"` with values escaped (`\\`, `\"`, `\n`).
pub(crate) fn label_text(labels: &Labels) -> String {
    let mut out = String::with_capacity(labels.len() * 24);
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_into(&mut out, v, true);
        out.push('"');
    }
    out
}

fn escape_into(out: &mut String, v: &str, quote: bool) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

struct Ctx<'a> {
    out: &'a mut String,
    om: bool,
    timestamps: bool,
}

impl Ctx<'_> {
    /// `name{labels[,extra="v"]}`.
    fn series(&mut self, name: &str, suffix: &str, labels: &str, extra: Option<(&str, f64)>) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        if labels.is_empty() && extra.is_none() {
            return;
        }
        self.out.push('{');
        self.out.push_str(labels);
        if let Some((k, v)) = extra {
            if !labels.is_empty() {
                self.out.push(',');
            }
            self.out.push_str(k);
            self.out.push_str("=\"");
            push_float(self.out, v);
            self.out.push('"');
        }
        self.out.push('}');
    }

    fn value(&mut self, v: f64, ts_ms: i64) {
        self.out.push(' ');
        push_float(self.out, v);
        self.timestamp(ts_ms);
    }

    fn count(&mut self, v: u64, ts_ms: i64) {
        let _ = write!(self.out, " {v}");
        self.timestamp(ts_ms);
    }

    fn timestamp(&mut self, ts_ms: i64) {
        if !self.timestamps {
            return;
        }
        if self.om {
            let _ = write!(
                self.out,
                " {}.{:03}",
                ts_ms.div_euclid(1000),
                ts_ms.rem_euclid(1000)
            );
        } else {
            let _ = write!(self.out, " {ts_ms}");
        }
    }

    /// ` # {trace_id="..",span_id=".."} value [ts]` (OpenMetrics only).
    fn exemplar(&mut self, e: Option<&Exemplar>) {
        let Some(e) = e.filter(|_| self.om) else {
            return;
        };
        self.out.push_str(" # {");
        let mut first = true;
        for (k, v) in &e.labels {
            if k != "trace_id" && k != "span_id" {
                continue;
            }
            if !first {
                self.out.push(',');
            }
            first = false;
            let _ = write!(self.out, "{k}=\"{v}\"");
        }
        self.out.push_str("} ");
        push_float(self.out, e.value);
        if e.timestamp_ms > 0 {
            let _ = write!(
                self.out,
                " {}.{:03}",
                e.timestamp_ms.div_euclid(1000),
                e.timestamp_ms.rem_euclid(1000)
            );
        }
    }

    fn end(&mut self) {
        self.out.push('\n');
    }
}

/// Renders the store. Families are in name order; series within a family in no fixed order.
pub(crate) fn render(store: &Store, om: bool, timestamps: bool) -> String {
    let estimate: usize = store
        .families
        .values()
        .map(|f| {
            f.series
                .values()
                .map(|s| {
                    let lines = match &s.point.value {
                        PointValue::Number(_) => 1,
                        PointValue::Histogram { buckets, .. } => buckets.len() + 2,
                        PointValue::Summary { quantiles, .. } => quantiles.len() + 2,
                    };
                    lines * (s.label_text.len() + 64)
                })
                .sum::<usize>()
                + 128
        })
        .sum();
    let mut out = String::with_capacity(estimate + 16);
    let mut ctx = Ctx {
        out: &mut out,
        om,
        timestamps,
    };
    for (name, fam) in &store.families {
        if fam.series.is_empty() {
            continue;
        }
        // OpenMetrics names a counter family without `_total`; a counter whose name lacks it
        // (add_metric_suffixes: false) cannot be a valid OpenMetrics counter, so it is `unknown`.
        let (family_name, type_word) = match (om, fam.kind) {
            (true, MetricKind::Counter) => match name.strip_suffix("_total") {
                Some(base) => (base, "counter"),
                None => (name.as_str(), "unknown"),
            },
            _ => (name.as_str(), fam.kind.as_str()),
        };
        if !fam.help.is_empty() {
            ctx.out.push_str("# HELP ");
            ctx.out.push_str(family_name);
            ctx.out.push(' ');
            escape_into(ctx.out, &fam.help, om);
            ctx.out.push('\n');
        }
        ctx.out.push_str("# TYPE ");
        ctx.out.push_str(family_name);
        ctx.out.push(' ');
        ctx.out.push_str(type_word);
        ctx.out.push('\n');
        for s in fam.series.values() {
            let p = &s.point;
            let ts = p.timestamp_ms;
            match &p.value {
                PointValue::Number(v) => {
                    ctx.series(name, "", &s.label_text, None);
                    ctx.value(*v, ts);
                    if fam.kind == MetricKind::Counter && type_word == "counter" {
                        ctx.exemplar(p.exemplars.last());
                    }
                    ctx.end();
                }
                PointValue::Histogram {
                    count,
                    sum,
                    buckets,
                } => {
                    for (i, (le, c)) in buckets.iter().enumerate() {
                        ctx.series(name, "_bucket", &s.label_text, Some(("le", *le)));
                        ctx.count(*c, ts);
                        if om && !p.exemplars.is_empty() {
                            // The last exemplar that falls into this bucket.
                            let lower = if i == 0 {
                                f64::NEG_INFINITY
                            } else {
                                buckets[i - 1].0
                            };
                            let e = p
                                .exemplars
                                .iter()
                                .rev()
                                .find(|e| e.value > lower && e.value <= *le);
                            ctx.exemplar(e);
                        }
                        ctx.end();
                    }
                    if let Some(sum) = sum {
                        ctx.series(name, "_sum", &s.label_text, None);
                        ctx.value(*sum, ts);
                        ctx.end();
                    }
                    ctx.series(name, "_count", &s.label_text, None);
                    ctx.count(*count, ts);
                    ctx.end();
                }
                PointValue::Summary {
                    count,
                    sum,
                    quantiles,
                } => {
                    for (q, v) in quantiles {
                        ctx.series(name, "", &s.label_text, Some(("quantile", *q)));
                        ctx.value(*v, ts);
                        ctx.end();
                    }
                    ctx.series(name, "_sum", &s.label_text, None);
                    ctx.value(*sum, ts);
                    ctx.end();
                    ctx.series(name, "_count", &s.label_text, None);
                    ctx.count(*count, ts);
                    ctx.end();
                }
            }
        }
    }
    if om {
        out.push_str("# EOF\n");
    }
    out
}
