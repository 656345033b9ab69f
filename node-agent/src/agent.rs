//! The collection schedule: which scrapers run on which tick, producing one
//! `ExportMetricsServiceRequest` per tick.
//!
//! The base tick is the top-level `interval`; a scraper with its own interval runs every
//! `ceil(interval_k / interval)` ticks. Tests: `cargo test -p node-agent agent::`.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::config::Config;
use crate::host::Host;
use crate::metrics::MetricSet;
use crate::process::Processes;

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Scrapers, their schedule and the resource.
#[derive(Debug)]
pub struct Agent {
    host: Host,
    procs: Processes,
    cfg: Config,
    resource: Resource,
    every: [u64; 11],
    tick: u64,
}

impl Agent {
    /// Builds the agent from a validated config.
    pub fn new(cfg: &Config, resource: Resource) -> Self {
        let tps = procfs::ticks_per_second();
        let page = procfs::page_size();
        let host = Host::new(cfg, tps, now_ns());
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        let base = cfg.interval.as_millis().max(1) as u64;
        let every = cfg
            .scraper_intervals()
            .map(|(_, iv)| iv.map_or(1, |d| (d.as_millis() as u64).div_ceil(base).max(1)));
        Self {
            procs: Processes::new(&cfg.scrapers.process, page, ncpu),
            host,
            cfg: cfg.clone(),
            resource,
            every,
            tick: 0,
        }
    }

    /// Runs the scrapers due on this tick (all of them when `all`) and advances the tick.
    pub fn collect(&mut self, all: bool) -> ExportMetricsServiceRequest {
        let mut out = MetricSet::new(now_ns());
        let t = self.tick;
        self.tick += 1;
        let due = |i: usize| all || t.is_multiple_of(self.every[i]);
        let s = &self.cfg.scrapers;
        let h = &mut self.host;
        if s.cpu.enabled && due(0) {
            h.cpu(&mut out);
        }
        if s.load.enabled && due(1) {
            h.load(&mut out);
        }
        let mem = s.memory.enabled && due(2);
        let paging = s.paging.enabled && due(3);
        if mem || paging {
            h.memory_and_swap(&mut out, mem, paging);
        }
        if paging {
            h.paging_activity(&mut out);
        }
        if s.disk.enabled && due(4) {
            h.disk(&mut out);
        }
        if s.filesystem.enabled && due(5) {
            h.filesystem(&mut out);
        }
        if s.network.enabled && due(6) {
            h.network(&mut out);
        }
        if s.connections.enabled && due(10) {
            h.connections(&mut out);
        }
        let counts = s.processes.enabled && due(7);
        let top = s.process.enabled && s.process.top_n > 0 && due(9);
        if counts || top {
            self.procs.collect(h, &mut out, counts, top);
        }
        if s.uptime.enabled && due(8) {
            h.uptime(&mut out);
        }
        h.self_metrics(&mut out);
        out.into_request(&self.resource)
    }

    /// Files skipped so far (all scrapers).
    pub fn unreadable_total(&self) -> u64 {
        self.host.unreadable.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::tests::fixture_config;

    #[test]
    fn scraper_with_longer_interval_runs_every_kth_tick() {
        let mut cfg = fixture_config();
        cfg.interval = std::time::Duration::from_secs(1);
        cfg.scrapers.uptime.interval = Some(std::time::Duration::from_secs(3));
        cfg.scrapers.filesystem.enabled = false;
        let mut a = Agent::new(&cfg, Resource::default());
        let has_uptime = |r: &ExportMetricsServiceRequest| {
            r.resource_metrics[0].scope_metrics[0]
                .metrics
                .iter()
                .any(|m| m.name == "system.uptime")
        };
        let ticks: Vec<bool> = (0..6).map(|_| has_uptime(&a.collect(false))).collect();
        assert_eq!(ticks, [true, false, false, true, false, false]);
        assert!(has_uptime(&a.collect(true)));
    }
}
