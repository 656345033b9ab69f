//! The live view's data: every `insights.live_interval`, while at least one client listens to
//! `/api/v1/stream`, one task asks Prometheus for the hosts' CPU (total and per core), memory and
//! top processes (the node-agent's `system_*` / `process_*` series) and reads the firing and
//! recent anomalies, and publishes the result to every listener through a `watch` channel (so a
//! slow client skips updates instead of queueing them).
//!
//! Tests: `cargo test -p anomaly-detector insights::live::`; the page itself in
//! `tests/live_view.py` (headless Chromium).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::{Insights, SourceStatus, Sources, SOURCE_ANOMALIES, SOURCE_PROMETHEUS};
use crate::history::HistoryQuery;
use crate::prometheus::{InstantSample, QueryError};
use crate::state::{AnomalyRecord, Store};

/// Processes listed per host.
pub const TOP_PROCESSES: usize = 10;
/// Recent anomalies sent.
pub const RECENT: usize = 10;

const Q_CORES: &str = "1 - avg by (instance, cpu_logical_number) (system_cpu_utilization_ratio{cpu_mode=\"idle\",cpu_logical_number!=\"\"})";
const Q_TOTAL: &str = "1 - avg by (instance) (system_cpu_utilization_ratio{cpu_mode=\"idle\",cpu_logical_number!=\"\"})";
const Q_MEM_USED: &str =
    "sum by (instance) (system_memory_usage_bytes{system_memory_state=\"used\"})";
const Q_MEM_TOTAL: &str = "sum by (instance) (system_memory_usage_bytes)";
const Q_PROC_CPU: &str = "topk(10, sum by (instance, process_pid, process_executable_name) (process_cpu_utilization_ratio))";
const Q_PROC_RSS: &str = "sum by (instance, process_pid) (process_memory_usage_bytes)";

/// One process of the top list.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProcessView {
    /// PID.
    pub pid: String,
    /// Executable name (`comm`).
    pub name: String,
    /// CPU in percent of the whole machine.
    pub cpu_percent: f64,
    /// Resident memory in bytes.
    pub rss_bytes: Option<f64>,
}

/// One host.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HostView {
    /// The node-agent's `instance`.
    pub instance: String,
    /// Busy share of all cores, in [0, 1].
    pub cpu_total: Option<f64>,
    /// Busy share per logical CPU, by CPU number.
    pub cpu_per_core: Vec<CoreView>,
    /// Used memory in bytes.
    pub memory_used_bytes: Option<f64>,
    /// Total memory in bytes.
    pub memory_total_bytes: Option<f64>,
    /// Top processes by CPU.
    pub processes: Vec<ProcessView>,
}

/// One logical CPU.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CoreView {
    /// `cpu.logical_number`.
    pub cpu: String,
    /// Busy share in [0, 1].
    pub busy: f64,
}

/// One update of `/api/v1/stream` (event `snapshot`).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct LiveSnapshot {
    /// Unix seconds of the update.
    pub time: i64,
    /// Hosts seen.
    pub hosts: Vec<HostView>,
    /// Firing anomalies, highest score first.
    pub firing: Vec<AnomalyRecord>,
    /// Latest anomaly episodes, newest first.
    pub recent: Vec<AnomalyRecord>,
    /// Share of the expected host data present (0 when Prometheus is unavailable).
    pub completeness: f64,
    /// Per-source status.
    #[schema(value_type = BTreeMap<String, SourceStatus>)]
    pub sources: Sources,
}

/// One past point of a host (for the charts' first minutes).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HostPoint {
    /// Unix seconds.
    pub time: i64,
    /// Busy share of all cores.
    pub cpu_total: Option<f64>,
    /// Used memory in bytes.
    pub memory_used_bytes: Option<f64>,
    /// Total memory in bytes.
    pub memory_total_bytes: Option<f64>,
}

/// The recent past of one host.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HostHistory {
    /// The node-agent's `instance`.
    pub instance: String,
    /// Oldest first.
    pub points: Vec<HostPoint>,
}

/// The event `history` sent once when a stream opens: the last [`HISTORY_WINDOW`] seconds.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct LiveHistory {
    /// Hosts seen.
    pub hosts: Vec<HostHistory>,
}

/// Seconds of past data sent when a stream opens.
pub const HISTORY_WINDOW: i64 = 600;

/// The last [`HISTORY_WINDOW`] seconds of CPU and memory per host (empty when Prometheus
/// cannot say; the snapshot events carry the source status).
pub async fn history(insights: &Insights) -> LiveHistory {
    let end = super::now();
    let step = insights.cfg.live_interval.as_secs().max(1);
    let c = insights.client();
    let cancel = CancellationToken::new();
    let q = |query: &'static str| {
        c.query_range(
            query,
            end - HISTORY_WINDOW,
            end,
            std::time::Duration::from_secs(step),
            &cancel,
        )
    };
    let (cpu, used, total) = futures::join!(q(Q_TOTAL), q(Q_MEM_USED), q(Q_MEM_TOTAL));
    let (Ok(cpu), Ok(used), Ok(total)) = (cpu, used, total) else {
        return LiveHistory::default();
    };
    let index = |v: Vec<crate::prometheus::RangeSeries>| -> BTreeMap<String, BTreeMap<i64, f64>> {
        v.into_iter()
            .map(|s| {
                (
                    s.labels.get("instance").cloned().unwrap_or_default(),
                    s.points
                        .into_iter()
                        .filter(|(_, x)| x.is_finite())
                        .collect(),
                )
            })
            .collect()
    };
    let (cpu, used, total) = (index(cpu), index(used), index(total));
    let hosts = cpu
        .iter()
        .map(|(inst, points)| {
            let mut times: Vec<i64> = points.keys().copied().collect();
            times.extend(used.get(inst).into_iter().flat_map(|m| m.keys().copied()));
            times.sort_unstable();
            times.dedup();
            HostHistory {
                instance: inst.clone(),
                points: times
                    .into_iter()
                    .map(|t| HostPoint {
                        time: t,
                        cpu_total: points.get(&t).copied(),
                        memory_used_bytes: used.get(inst).and_then(|m| m.get(&t)).copied(),
                        memory_total_bytes: total.get(inst).and_then(|m| m.get(&t)).copied(),
                    })
                    .collect(),
            }
        })
        .collect();
    LiveHistory { hosts }
}

/// The publisher of live snapshots.
#[derive(Debug)]
pub struct Live {
    tx: watch::Sender<Arc<LiveSnapshot>>,
    wake: Notify,
    /// Fires when [`Live::run`] stops, so open streams end and the server can shut down.
    stopped: CancellationToken,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            tx: watch::channel(Arc::new(LiveSnapshot::default())).0,
            wake: Notify::new(),
            stopped: CancellationToken::new(),
        }
    }
}

impl Live {
    /// Fires when the publisher stops (shutdown): streams end with it.
    pub fn stopped(&self) -> CancellationToken {
        self.stopped.clone()
    }

    /// A new listener; wakes the publisher so the listener gets fresh data at once.
    pub fn subscribe(&self) -> watch::Receiver<Arc<LiveSnapshot>> {
        let rx = self.tx.subscribe();
        self.wake.notify_one();
        rx
    }

    /// Publishes a snapshot every `insights.live_interval` while anyone listens, until `cancel`.
    pub async fn run(
        self: Arc<Self>,
        insights: Arc<Insights>,
        store: Arc<Store>,
        cancel: CancellationToken,
    ) {
        let interval = insights.cfg.live_interval;
        loop {
            if self.tx.receiver_count() > 0 {
                let snap = snapshot(&insights, &store).await;
                self.tx.send_replace(Arc::new(snap));
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    self.stopped.cancel();
                    return;
                }
                _ = tokio::time::sleep(interval) => {}
                _ = self.wake.notified() => {}
            }
        }
    }
}

fn label<'a>(s: &'a InstantSample, k: &str) -> &'a str {
    s.labels.get(k).map(String::as_str).unwrap_or("")
}

fn by_instance(v: &[InstantSample]) -> BTreeMap<String, f64> {
    v.iter()
        .filter(|s| s.value.is_finite())
        .map(|s| (label(s, "instance").to_string(), s.value))
        .collect()
}

/// Builds one snapshot (never fails: an unreachable Prometheus is reported in `sources`).
pub async fn snapshot(insights: &Insights, store: &Store) -> LiveSnapshot {
    let now = super::now();
    let mut sources = Sources::new();
    let (hosts, completeness) = match hosts(insights, now).await {
        Ok(h) if h.is_empty() => {
            sources.insert(
                SOURCE_PROMETHEUS.into(),
                SourceStatus::partial(
                    Vec::new(),
                    "no node-agent samples (system_cpu_utilization_ratio) in Prometheus",
                ),
            );
            (h, 0.0)
        }
        Ok(h) => {
            let with_all = h
                .iter()
                .filter(|x| x.cpu_total.is_some() && x.memory_used_bytes.is_some())
                .count();
            let c = with_all as f64 / h.len() as f64;
            sources.insert(
                SOURCE_PROMETHEUS.into(),
                if c == 1.0 {
                    SourceStatus::ok()
                } else {
                    SourceStatus::partial(Vec::new(), "some hosts lack CPU or memory samples")
                },
            );
            (h, c)
        }
        Err(e) => {
            sources.insert(SOURCE_PROMETHEUS.into(), super::unavailable(&e));
            (Vec::new(), 0.0)
        }
    };
    let mut firing: Vec<AnomalyRecord> = store
        .detections()
        .iter()
        .flat_map(|d| d.firing.iter().cloned())
        .collect();
    firing.sort_by(|a, b| b.score.total_cmp(&a.score));
    let recent = match store.history() {
        Some(h) => {
            let h = h.clone();
            let q = HistoryQuery {
                limit: RECENT,
                ..Default::default()
            };
            match tokio::task::spawn_blocking(move || h.query(&q)).await {
                Ok(Ok(page)) => {
                    sources.insert(SOURCE_ANOMALIES.into(), SourceStatus::ok());
                    page.items
                }
                Ok(Err(e)) => {
                    sources.insert(
                        SOURCE_ANOMALIES.into(),
                        SourceStatus::unavailable(e.to_string()),
                    );
                    store.recent().into_iter().take(RECENT).collect()
                }
                Err(e) => {
                    sources.insert(
                        SOURCE_ANOMALIES.into(),
                        SourceStatus::unavailable(e.to_string()),
                    );
                    Vec::new()
                }
            }
        }
        None => {
            sources.insert(SOURCE_ANOMALIES.into(), SourceStatus::ok());
            store.recent().into_iter().take(RECENT).collect()
        }
    };
    LiveSnapshot {
        time: now,
        hosts,
        firing,
        recent,
        completeness,
        sources,
    }
}

async fn hosts(insights: &Insights, now: i64) -> Result<Vec<HostView>, QueryError> {
    let c = insights.client();
    let cancel = CancellationToken::new();
    let q = |query: &'static str| c.query_instant(query, now, &cancel);
    let (cores, total, used, mem, pcpu, prss) = futures::join!(
        q(Q_CORES),
        q(Q_TOTAL),
        q(Q_MEM_USED),
        q(Q_MEM_TOTAL),
        q(Q_PROC_CPU),
        q(Q_PROC_RSS)
    );
    let (cores, total, used, mem, pcpu, prss) = (cores?, total?, used?, mem?, pcpu?, prss?);
    Ok(assemble(&cores, &total, &used, &mem, &pcpu, &prss))
}

/// Joins the query answers into one view per instance.
fn assemble(
    cores: &[InstantSample],
    total: &[InstantSample],
    used: &[InstantSample],
    mem: &[InstantSample],
    pcpu: &[InstantSample],
    prss: &[InstantSample],
) -> Vec<HostView> {
    let (total, used, mem) = (by_instance(total), by_instance(used), by_instance(mem));
    let rss: BTreeMap<(String, String), f64> = prss
        .iter()
        .map(|s| {
            (
                (
                    label(s, "instance").to_string(),
                    label(s, "process_pid").to_string(),
                ),
                s.value,
            )
        })
        .collect();
    let mut instances: Vec<String> = total.keys().chain(used.keys()).cloned().collect();
    instances.sort();
    instances.dedup();
    instances
        .into_iter()
        .map(|inst| {
            let mut per_core: Vec<CoreView> = cores
                .iter()
                .filter(|s| label(s, "instance") == inst && s.value.is_finite())
                .map(|s| CoreView {
                    cpu: label(s, "cpu_logical_number").to_string(),
                    busy: s.value.clamp(0.0, 1.0),
                })
                .collect();
            per_core.sort_by_key(|c| c.cpu.parse::<u32>().unwrap_or(u32::MAX));
            let mut processes: Vec<ProcessView> = pcpu
                .iter()
                .filter(|s| label(s, "instance") == inst && s.value.is_finite())
                .map(|s| ProcessView {
                    pid: label(s, "process_pid").to_string(),
                    name: label(s, "process_executable_name").to_string(),
                    cpu_percent: s.value * 100.0,
                    rss_bytes: rss
                        .get(&(inst.clone(), label(s, "process_pid").to_string()))
                        .copied(),
                })
                .collect();
            processes.sort_by(|a, b| b.cpu_percent.total_cmp(&a.cpu_percent));
            processes.truncate(TOP_PROCESSES);
            HostView {
                cpu_total: total.get(&inst).copied(),
                memory_used_bytes: used.get(&inst).copied(),
                memory_total_bytes: mem.get(&inst).copied(),
                cpu_per_core: per_core,
                processes,
                instance: inst,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, &str)], v: f64) -> InstantSample {
        InstantSample {
            labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timestamp: 0,
            value: v,
        }
    }

    #[test]
    fn assembles_hosts() {
        let h = assemble(
            &[
                s(&[("instance", "h"), ("cpu_logical_number", "10")], 0.5),
                s(&[("instance", "h"), ("cpu_logical_number", "2")], 0.25),
            ],
            &[s(&[("instance", "h")], 0.375)],
            &[s(&[("instance", "h")], 1e9)],
            &[s(&[("instance", "h")], 4e9)],
            &[
                s(
                    &[
                        ("instance", "h"),
                        ("process_pid", "1"),
                        ("process_executable_name", "init"),
                    ],
                    0.01,
                ),
                s(
                    &[
                        ("instance", "h"),
                        ("process_pid", "7"),
                        ("process_executable_name", "cargo"),
                    ],
                    0.4,
                ),
            ],
            &[s(&[("instance", "h"), ("process_pid", "7")], 5e8)],
        );
        assert_eq!(h.len(), 1);
        let h = &h[0];
        assert_eq!(
            h.cpu_per_core
                .iter()
                .map(|c| c.cpu.as_str())
                .collect::<Vec<_>>(),
            ["2", "10"]
        );
        assert_eq!(h.processes[0].name, "cargo");
        assert_eq!(h.processes[0].cpu_percent, 40.0);
        assert_eq!(h.processes[0].rss_bytes, Some(5e8));
        assert_eq!(h.processes[1].rss_bytes, None);
        assert_eq!(h.memory_total_bytes, Some(4e9));
    }
}
