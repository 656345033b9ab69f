//! Shared, read-mostly view of what the detections found: the latest evaluation of every series,
//! each detection's cycle status and a bounded list of recent anomalies. The scheduler writes it
//! once per cycle; the HTTP API and `/metrics` read it.
//!
//! Tests: `cargo test -p anomaly-detector state::`; the API tests in `api.rs` read it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

use crate::history::History;
use crate::prometheus::Labels;

/// Labels that name the service a series belongs to, in order of preference.
pub const SERVICE_LABELS: [&str; 3] = ["service_name", "job", "service"];

/// The service of a series, from its `service_name`, `job` or `service` label.
pub fn service_of(labels: &Labels) -> Option<&str> {
    SERVICE_LABELS
        .iter()
        .find_map(|k| labels.get(*k).map(String::as_str))
}

/// Latest evaluation of one series.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesSnapshot {
    /// Series labels as returned by the query.
    pub labels: Labels,
    /// Unix seconds of the evaluated point.
    pub timestamp: i64,
    /// Observed value.
    pub value: f64,
    /// Model forecast.
    pub expected: f64,
    /// Lower edge of the prediction interval.
    pub lower: f64,
    /// Upper edge of the prediction interval.
    pub upper: f64,
    /// Anomaly score in [0, 1].
    pub score: f64,
    /// Whether the point was judged anomalous.
    pub anomalous: bool,
    /// Model kind in use (`warming_up`, `robust_mad`, `holt`, `holt_winters`).
    pub model: &'static str,
    /// Whether an alert is currently firing for the series.
    pub firing: bool,
}

/// Outcome of a detection's last cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CycleStatus {
    /// No cycle finished yet.
    Pending,
    /// The last cycle succeeded.
    Success,
    /// The last cycle failed.
    Failure,
}

/// Cycle bookkeeping of a detection.
#[derive(Debug, Clone, Serialize)]
pub struct CycleInfo {
    /// Last outcome.
    pub status: CycleStatus,
    /// Unix seconds of the last successful cycle.
    pub last_success: Option<i64>,
    /// Error of the last failed cycle.
    pub last_error: Option<String>,
    /// Failed cycles in a row.
    pub consecutive_failures: u32,
    /// Duration of the last cycle in seconds.
    pub last_duration_seconds: f64,
    /// The detection's evaluation interval in seconds (0 until its runner is scheduled).
    pub interval_seconds: u64,
    /// Unix seconds when the runner was scheduled.
    pub scheduled_at: Option<i64>,
    /// Unix seconds when the last cycle (successful or not) completed.
    pub last_completed: Option<i64>,
}

/// A detection whose runner completed no cycle for this many intervals is stalled.
pub const STALL_INTERVALS: u64 = 3;

impl CycleInfo {
    /// Whether, as of `now` (unix seconds), the runner completed no cycle within
    /// [`STALL_INTERVALS`] intervals of the last completion (or of being scheduled).
    pub fn stalled(&self, now: i64) -> bool {
        let Some(since) = self.last_completed.or(self.scheduled_at) else {
            return false;
        };
        self.interval_seconds > 0
            && now.saturating_sub(since) > (self.interval_seconds * STALL_INTERVALS) as i64
    }
}

impl Default for CycleInfo {
    fn default() -> Self {
        Self {
            status: CycleStatus::Pending,
            last_success: None,
            last_error: None,
            consecutive_failures: 0,
            last_duration_seconds: 0.0,
            interval_seconds: 0,
            scheduled_at: None,
            last_completed: None,
        }
    }
}

/// Everything known about one detection.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DetectionSnapshot {
    /// Detection name.
    pub name: String,
    /// Latest evaluation per series.
    pub series: Vec<SeriesSnapshot>,
    /// Open anomaly episodes.
    pub firing: Vec<AnomalyRecord>,
    /// Cycle status.
    pub cycle: CycleInfo,
}

/// One anomaly episode (firing, or resolved with its end).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AnomalyRecord {
    /// Detection name.
    pub detection: String,
    /// Series labels.
    #[schema(value_type = BTreeMap<String, String>)]
    pub labels: Labels,
    /// Alert fingerprint (stable hash of the series labels).
    pub fingerprint: String,
    /// `firing` or `resolved`.
    #[schema(value_type = String, pattern = "^(firing|resolved)$")]
    pub status: &'static str,
    /// `warning` or `critical`.
    #[schema(value_type = String, pattern = "^(warning|critical)$")]
    pub severity: &'static str,
    /// Unix seconds when it started.
    pub starts_at: i64,
    /// Unix seconds when it ended (resolved only).
    pub ends_at: Option<i64>,
    /// Unix seconds of the most anomalous point seen.
    pub timestamp: i64,
    /// Observed value at that point (null when not a finite number).
    #[schema(value_type = Option<f64>)]
    pub value: f64,
    /// Expected value (null while warming up).
    #[schema(value_type = Option<f64>)]
    pub expected: f64,
    /// Band lower edge.
    #[schema(value_type = Option<f64>)]
    pub lower: f64,
    /// Band upper edge.
    #[schema(value_type = Option<f64>)]
    pub upper: f64,
    /// Highest score in the episode, in [0, 1].
    #[schema(value_type = Option<f64>)]
    pub score: f64,
    /// Model kind (`warming_up`, `robust_mad`, `holt`, `holt_winters`).
    #[schema(value_type = String)]
    pub model: &'static str,
}

/// The shared store.
#[derive(Debug)]
pub struct Store {
    detections: RwLock<BTreeMap<String, Arc<DetectionSnapshot>>>,
    recent: Mutex<VecDeque<AnomalyRecord>>,
    recent_cap: usize,
    history: Option<Arc<History>>,
}

impl Store {
    /// A store that keeps at most `recent_cap` resolved anomalies, with `names` pending.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>, recent_cap: usize) -> Self {
        let detections = names
            .into_iter()
            .map(|n| {
                (
                    n.to_string(),
                    Arc::new(DetectionSnapshot {
                        name: n.to_string(),
                        ..Default::default()
                    }),
                )
            })
            .collect();
        Self {
            detections: RwLock::new(detections),
            recent: Mutex::new(VecDeque::new()),
            recent_cap: recent_cap.max(1),
            history: None,
        }
    }

    /// Keeps every anomaly episode also in `history` (firing ones as they start, escalate or
    /// peak; resolved ones when they end).
    pub fn with_history(mut self, history: Arc<History>) -> Self {
        self.history = Some(history);
        self
    }

    /// The anomaly history, when one is attached.
    pub fn history(&self) -> Option<&Arc<History>> {
        self.history.as_ref()
    }

    /// Replaces a detection's snapshot; episodes that started, escalated or peaked since the
    /// previous one go to the history (written after the lock is released).
    pub fn publish(&self, snapshot: DetectionSnapshot) {
        let changed: Vec<AnomalyRecord> = {
            let mut map = self.detections.write().unwrap_or_else(|p| p.into_inner());
            let previous = map.get(&snapshot.name).cloned();
            let changed = match &self.history {
                Some(_) => snapshot
                    .firing
                    .iter()
                    .filter(|r| {
                        !previous.as_ref().is_some_and(|p| {
                            p.firing.iter().any(|o| {
                                o.fingerprint == r.fingerprint
                                    && o.starts_at == r.starts_at
                                    && o.severity == r.severity
                                    && o.timestamp == r.timestamp
                            })
                        })
                    })
                    .cloned()
                    .collect(),
                None => Vec::new(),
            };
            map.insert(snapshot.name.clone(), Arc::new(snapshot));
            changed
        };
        if let Some(h) = &self.history {
            keep(h, &changed);
        }
    }

    /// All detection snapshots, by name.
    pub fn detections(&self) -> Vec<Arc<DetectionSnapshot>> {
        let map = self.detections.read().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    /// Records a finished (resolved) anomaly episode.
    pub fn record_resolved(&self, record: AnomalyRecord) {
        if let Some(h) = &self.history {
            keep(h, std::slice::from_ref(&record));
        }
        let mut q = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == self.recent_cap {
            q.pop_front();
        }
        q.push_back(record);
    }

    /// Resolved anomalies, newest first.
    pub fn recent(&self) -> Vec<AnomalyRecord> {
        let q = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().rev().cloned().collect()
    }
}

/// Writes `records` to the history in one transaction; a failure is logged (first of a burst at
/// WARN), never fatal.
fn keep(h: &History, records: &[AnomalyRecord]) {
    if records.is_empty() {
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    static FAILING: AtomicBool = AtomicBool::new(false);
    match h.upsert_all(records, crate::engine::unix_now()) {
        Ok(()) => {
            if FAILING.swap(false, Ordering::Relaxed) {
                tracing::info!("anomaly history writable again");
            }
        }
        Err(e) => {
            if FAILING.swap(true, Ordering::Relaxed) {
                tracing::debug!(error = %e, "anomaly history write failed again");
            } else {
                tracing::warn!(error = %e, "cannot write the anomaly history; the API's history misses this episode");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: i64) -> AnomalyRecord {
        AnomalyRecord {
            detection: "d".into(),
            labels: Labels::new(),
            fingerprint: n.to_string(),
            status: "resolved",
            severity: "warning",
            starts_at: n,
            ends_at: Some(n + 1),
            timestamp: n,
            value: 0.0,
            expected: 0.0,
            lower: 0.0,
            upper: 0.0,
            score: 1.0,
            model: "holt",
        }
    }

    #[test]
    fn recent_is_bounded_newest_first() {
        let s = Store::new(["d"], 3);
        for i in 0..5 {
            s.record_resolved(record(i));
        }
        let r = s.recent();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].starts_at, 4);
        assert_eq!(r[2].starts_at, 2);
    }

    #[test]
    fn episodes_reach_the_history() {
        let h = Arc::new(History::open(&crate::config::HistoryConfig::default(), 0).unwrap());
        let s = Store::new(["d"], 3).with_history(h.clone());
        let mut r = record(7);
        r.status = "firing";
        r.ends_at = None;
        let snap = |r: &AnomalyRecord| DetectionSnapshot {
            name: "d".into(),
            firing: vec![r.clone()],
            ..Default::default()
        };
        s.publish(snap(&r));
        s.publish(snap(&r));
        let page = |h: &History| {
            h.query(&crate::history::HistoryQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap()
            .items
        };
        assert_eq!(page(&h).len(), 1);
        assert_eq!(page(&h)[0].status, "firing");
        r.severity = "critical";
        s.publish(snap(&r));
        assert_eq!(page(&h)[0].severity, "critical", "escalation recorded");
        r.status = "resolved";
        r.ends_at = Some(9);
        s.record_resolved(r);
        let items = page(&h);
        assert_eq!(items.len(), 1, "one episode");
        assert_eq!((items[0].status, items[0].ends_at), ("resolved", Some(9)));
    }

    #[test]
    fn service_label_preference() {
        let mut l = Labels::new();
        assert_eq!(service_of(&l), None);
        l.insert("job".into(), "checkout".into());
        assert_eq!(service_of(&l), Some("checkout"));
        l.insert("service_name".into(), "cart".into());
        assert_eq!(service_of(&l), Some("cart"));
    }
}
