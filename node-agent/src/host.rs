//! Host scrapers: turn /proc and /sys into semantic-convention `system.*` metrics.
//!
//! One [`Host`] keeps the state between collections (previous CPU ticks for utilization,
//! one reusable read buffer, compiled filters, counters of unreadable files). Every path is
//! under the configured procfs root, so the tests run it against `testdata/proc`.
//! Tests: `cargo test -p node-agent host::`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use regex::Regex;

use crate::config::Config;
use crate::metrics::{kv, kv_i, Desc, Kind, MetricSet, Val};
use crate::parse::{self, CpuTicks, KernelStat};

macro_rules! desc {
    ($id:ident, $name:literal, $unit:literal, $kind:ident, $d:literal) => {
        pub(crate) const $id: Desc = Desc {
            name: $name,
            unit: $unit,
            description: $d,
            kind: Kind::$kind,
        };
    };
}

desc!(
    CPU_TIME,
    "system.cpu.time",
    "s",
    Counter,
    "Seconds each logical CPU spent on each mode"
);
desc!(
    CPU_UTIL,
    "system.cpu.utilization",
    "1",
    Gauge,
    "Fraction of CPU time spent in each mode since the last collection"
);
desc!(
    LOAD_1M,
    "system.cpu.load_average.1m",
    "{run_queue_item}",
    Gauge,
    "Load average over 1 minute"
);
desc!(
    LOAD_5M,
    "system.cpu.load_average.5m",
    "{run_queue_item}",
    Gauge,
    "Load average over 5 minutes"
);
desc!(
    LOAD_15M,
    "system.cpu.load_average.15m",
    "{run_queue_item}",
    Gauge,
    "Load average over 15 minutes"
);
desc!(
    MEM_USAGE,
    "system.memory.usage",
    "By",
    UpDownCounter,
    "Memory in use by state"
);
desc!(
    MEM_UTIL,
    "system.memory.utilization",
    "1",
    Gauge,
    "Fraction of memory by state"
);
desc!(
    MEM_LIMIT,
    "system.memory.limit",
    "By",
    UpDownCounter,
    "Total memory"
);
desc!(
    MEM_SLAB,
    "system.memory.linux.slab.usage",
    "By",
    UpDownCounter,
    "Slab memory by state"
);
desc!(
    MEM_AVAILABLE,
    "system.linux.memory.available",
    "By",
    UpDownCounter,
    "MemAvailable estimate"
);
desc!(
    PAGING_USAGE,
    "system.paging.usage",
    "By",
    UpDownCounter,
    "Swap space by state"
);
desc!(
    PAGING_UTIL,
    "system.paging.utilization",
    "1",
    Gauge,
    "Fraction of swap space by state"
);
desc!(
    PAGING_FAULTS,
    "system.paging.faults",
    "{fault}",
    Counter,
    "Page faults by type"
);
desc!(
    PAGING_OPS,
    "system.paging.operations",
    "{operation}",
    Counter,
    "Paging operations by direction and type"
);
desc!(
    DISK_IO,
    "system.disk.io",
    "By",
    Counter,
    "Bytes read and written"
);
desc!(
    DISK_OPS,
    "system.disk.operations",
    "{operation}",
    Counter,
    "Completed reads and writes"
);
desc!(
    DISK_IO_TIME,
    "system.disk.io_time",
    "s",
    Counter,
    "Time the device had I/O in progress"
);
desc!(
    DISK_OP_TIME,
    "system.disk.operation_time",
    "s",
    Counter,
    "Time spent on reads and writes (summed over requests)"
);
desc!(
    DISK_MERGED,
    "system.disk.merged",
    "{operation}",
    Counter,
    "Merged reads and writes"
);
desc!(
    FS_USAGE,
    "system.filesystem.usage",
    "By",
    UpDownCounter,
    "Filesystem space by state"
);
desc!(
    FS_UTIL,
    "system.filesystem.utilization",
    "1",
    Gauge,
    "Fraction of filesystem space used"
);
desc!(
    NET_IO,
    "system.network.io",
    "By",
    Counter,
    "Bytes received and transmitted"
);
desc!(
    NET_PACKETS,
    "system.network.packets",
    "{packet}",
    Counter,
    "Packets received and transmitted"
);
desc!(
    NET_ERRORS,
    "system.network.errors",
    "{error}",
    Counter,
    "Receive and transmit errors"
);
desc!(
    NET_DROPPED,
    "system.network.dropped",
    "{packet}",
    Counter,
    "Packets dropped"
);
desc!(
    NET_CONNS,
    "system.network.connections",
    "{connection}",
    UpDownCounter,
    "TCP connections by state"
);
desc!(UPTIME, "system.uptime", "s", Gauge, "Seconds since boot");
desc!(
    UNREADABLE,
    "node_agent.unreadable_files",
    "{file}",
    Counter,
    "Files the agent could not read (permissions, vanished processes), by scraper"
);

/// A reusable file reader rooted at the procfs mount.
#[derive(Debug)]
pub struct Reader {
    /// procfs root.
    pub proc: PathBuf,
    buf: Vec<u8>,
    path: PathBuf,
}

impl Reader {
    /// A reader for the procfs root `proc`.
    pub fn new(proc: &Path) -> Self {
        Self {
            proc: proc.to_path_buf(),
            buf: vec![0; 16 << 10],
            path: PathBuf::new(),
        }
    }

    /// Reads `<proc>/<rel>` into the shared buffer.
    ///
    /// # Errors
    /// The file cannot be opened or read.
    pub fn proc_bytes(&mut self, rel: &str) -> std::io::Result<&[u8]> {
        self.path.clear();
        self.path.push(&self.proc);
        self.path.push(rel);
        let n = read_into(&self.path, &mut self.buf)?;
        Ok(&self.buf[..n])
    }

    /// Like [`Reader::proc_bytes`], as text (invalid UTF-8 replaced by nothing: parsing stops there).
    ///
    /// # Errors
    /// The file cannot be opened or read.
    pub fn proc_text(&mut self, rel: &str) -> std::io::Result<&str> {
        let b = self.proc_bytes(rel)?;
        Ok(match std::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
        })
    }
}

/// Reads a whole file into `buf` (kept initialized at its full length, so nothing is
/// zeroed per read) with plain `read` calls: no `statx`/`lseek` size probing, which procfs
/// files cannot answer anyway. Returns the number of bytes read.
fn read_into(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut f = File::open(path)?;
    let mut filled = 0;
    loop {
        if buf.len() - filled < 4096 {
            let n = (buf.len() * 2).max(16 << 10);
            buf.resize(n, 0);
        }
        match f.read(&mut buf[filled..]) {
            Ok(0) => return Ok(filled),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Counters of files the agent skipped, by scraper.
#[derive(Debug, Default, Clone)]
pub struct Unreadable {
    /// (scraper name, count) in first-seen order.
    pub counts: Vec<(&'static str, u64)>,
}

impl Unreadable {
    /// Counts one unreadable file for `scraper`; logs the first per scraper at DEBUG.
    pub fn hit(&mut self, scraper: &'static str, what: &dyn std::fmt::Display) {
        match self.counts.iter_mut().find(|(s, _)| *s == scraper) {
            Some((_, n)) => *n += 1,
            None => {
                tracing::debug!(scraper, file = %what, "unreadable file skipped (counted in node_agent.unreadable_files)");
                self.counts.push((scraper, 1));
            }
        }
    }

    /// Total over all scrapers.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

fn opt_regex(s: &str) -> Option<Regex> {
    // Validated in Config::validate.
    (!s.is_empty()).then(|| Regex::new(s).ok()).flatten()
}

/// State of the host scrapers between collections.
#[derive(Debug)]
pub struct Host {
    /// File reader (shared with the process scraper).
    pub reader: Reader,
    cfg: Config,
    disk_exclude: Option<Regex>,
    fs_exclude: Option<Regex>,
    net_exclude: Option<Regex>,
    /// Clock ticks per second (`getconf CLK_TCK`).
    pub tps: u64,
    /// Boot time in ns since the epoch (start time of the system counters).
    pub boot_ns: u64,
    stat: KernelStat,
    prev_stat: Option<KernelStat>,
    /// Files skipped so far.
    pub unreadable: Unreadable,
    /// Start time of the agent (start of its own counters).
    pub agent_start_ns: u64,
}

fn ticks_s(ticks: u64, tps: u64) -> f64 {
    ticks as f64 / tps as f64
}

impl Host {
    /// Builds the scraper from a validated config; reads `btime` once.
    pub fn new(cfg: &Config, tps: u64, now_ns: u64) -> Self {
        let mut h = Self {
            reader: Reader::new(&cfg.root.proc_dir()),
            cfg: cfg.clone(),
            disk_exclude: opt_regex(&cfg.scrapers.disk.exclude_devices),
            fs_exclude: opt_regex(&cfg.scrapers.filesystem.exclude_mountpoints),
            net_exclude: opt_regex(&cfg.scrapers.network.exclude_interfaces),
            tps: tps.max(1),
            boot_ns: 0,
            stat: KernelStat::default(),
            prev_stat: None,
            unreadable: Unreadable::default(),
            agent_start_ns: now_ns,
        };
        if let Ok(t) = h.reader.proc_text("stat") {
            let mut ks = KernelStat::default();
            parse::parse_kernel_stat(t, &mut ks);
            h.boot_ns = ks.btime * 1_000_000_000;
        }
        h
    }

    /// `system.cpu.time` and `system.cpu.utilization` (utilization from the second call on).
    pub fn cpu(&mut self, out: &mut MetricSet) {
        let text = match self.reader.proc_text("stat") {
            Ok(t) => t,
            Err(e) => {
                self.unreadable.hit("cpu", &e);
                return;
            }
        };
        let mut cur = std::mem::take(&mut self.stat);
        parse::parse_kernel_stat(text, &mut cur);
        let (per_core, total) = (self.cfg.scrapers.cpu.per_core, self.cfg.scrapers.cpu.total);
        let start = self.boot_ns;
        let tps = self.tps;
        let emit_time = |out: &mut MetricSet, n: Option<u32>, t: &CpuTicks| {
            for (mode, ticks) in t.modes() {
                let mut attrs = vec![kv("cpu.mode", mode)];
                if let Some(n) = n {
                    attrs.push(kv_i("cpu.logical_number", n as i64));
                }
                out.add(&CPU_TIME, start, attrs, Val::F(ticks_s(ticks, tps)));
            }
        };
        if total {
            emit_time(out, None, &cur.total);
        }
        if per_core {
            for (n, t) in &cur.cpus {
                emit_time(out, Some(*n), t);
            }
        }
        if let Some(prev) = &self.prev_stat {
            let emit_util =
                |out: &mut MetricSet, n: Option<u32>, now: &CpuTicks, before: &CpuTicks| {
                    let dt = now.total().saturating_sub(before.total());
                    if dt == 0 {
                        return;
                    }
                    for ((mode, a), (_, b)) in now.modes().into_iter().zip(before.modes()) {
                        let mut attrs = vec![kv("cpu.mode", mode)];
                        if let Some(n) = n {
                            attrs.push(kv_i("cpu.logical_number", n as i64));
                        }
                        out.add(
                            &CPU_UTIL,
                            0,
                            attrs,
                            Val::F(a.saturating_sub(b) as f64 / dt as f64),
                        );
                    }
                };
            if total {
                emit_util(out, None, &cur.total, &prev.total);
            }
            if per_core {
                for (n, t) in &cur.cpus {
                    if let Some((_, p)) = prev.cpus.iter().find(|(pn, _)| pn == n) {
                        emit_util(out, Some(*n), t, p);
                    }
                }
            }
        }
        // Keep the current sample as `prev`, reusing the old allocation for the next parse.
        self.stat = self.prev_stat.take().unwrap_or_default();
        self.prev_stat = Some(cur);
    }

    /// `system.cpu.load_average.*`.
    pub fn load(&mut self, out: &mut MetricSet) {
        match self.reader.proc_bytes("loadavg").map(parse::parse_loadavg) {
            Ok(Ok(l)) => {
                out.add(&LOAD_1M, 0, vec![], Val::F(l.one as f64));
                out.add(&LOAD_5M, 0, vec![], Val::F(l.five as f64));
                out.add(&LOAD_15M, 0, vec![], Val::F(l.fifteen as f64));
            }
            Ok(Err(e)) => self.unreadable.hit("load", &e),
            Err(e) => self.unreadable.hit("load", &e),
        }
    }

    /// `system.memory.*` and `system.paging.usage`/`.utilization` (both from /proc/meminfo).
    pub fn memory_and_swap(&mut self, out: &mut MetricSet, memory: bool, paging: bool) {
        let m = match self.reader.proc_text("meminfo") {
            Ok(t) => parse::parse_meminfo(t),
            Err(e) => {
                self.unreadable.hit("memory", &e);
                return;
            }
        };
        let start = self.boot_ns;
        if memory {
            // The semantic-convention states; they add up to MemTotal.
            let states = [
                ("used", m.used()),
                ("free", m.free),
                ("buffers", m.buffers),
                ("cached", m.cached),
            ];
            for (s, v) in states {
                out.add(
                    &MEM_USAGE,
                    start,
                    vec![kv("system.memory.state", s)],
                    Val::I(v as i64),
                );
            }
            if m.total > 0 {
                for (s, v) in states {
                    out.add(
                        &MEM_UTIL,
                        0,
                        vec![kv("system.memory.state", s)],
                        Val::F(v as f64 / m.total as f64),
                    );
                }
            }
            out.add(&MEM_LIMIT, start, vec![], Val::I(m.total as i64));
            for (st, v) in [
                ("reclaimable", m.slab_reclaimable),
                ("unreclaimable", m.slab_unreclaimable),
            ] {
                out.add(
                    &MEM_SLAB,
                    start,
                    vec![kv("system.memory.linux.slab.state", st)],
                    Val::I(v as i64),
                );
            }
            out.add(&MEM_AVAILABLE, start, vec![], Val::I(m.available as i64));
        }
        if paging {
            let used = m.swap_total.saturating_sub(m.swap_free);
            for (s, v) in [("used", used), ("free", m.swap_free)] {
                out.add(
                    &PAGING_USAGE,
                    start,
                    vec![kv("system.paging.state", s)],
                    Val::I(v as i64),
                );
                if m.swap_total > 0 {
                    out.add(
                        &PAGING_UTIL,
                        0,
                        vec![kv("system.paging.state", s)],
                        Val::F(v as f64 / m.swap_total as f64),
                    );
                }
            }
        }
    }

    /// `system.paging.faults` and `.operations` from /proc/vmstat.
    pub fn paging_activity(&mut self, out: &mut MetricSet) {
        let v = match self.reader.proc_text("vmstat") {
            Ok(t) => parse::parse_vmstat(t),
            Err(e) => {
                self.unreadable.hit("paging", &e);
                return;
            }
        };
        let start = self.boot_ns;
        let minor = v.pgfault.saturating_sub(v.pgmajfault);
        for (t, n) in [("major", v.pgmajfault), ("minor", minor)] {
            out.add(
                &PAGING_FAULTS,
                start,
                vec![kv("system.paging.fault.type", t)],
                Val::I(n as i64),
            );
        }
        for (dir, t, n) in [
            ("in", "major", v.pswpin),
            ("out", "major", v.pswpout),
            ("in", "minor", v.pgpgin),
            ("out", "minor", v.pgpgout),
        ] {
            out.add(
                &PAGING_OPS,
                start,
                vec![
                    kv("system.paging.direction", dir),
                    kv("system.paging.fault.type", t),
                ],
                Val::I(n as i64),
            );
        }
    }

    /// `system.disk.*` from /proc/diskstats (sector = 512 bytes, times in ms).
    pub fn disk(&mut self, out: &mut MetricSet) {
        let text = match self.reader.proc_text("diskstats") {
            Ok(t) => t,
            Err(e) => {
                self.unreadable.hit("disk", &e);
                return;
            }
        };
        let start = self.boot_ns;
        for line in text.lines() {
            let Ok(d) = parse::parse_diskstat_line(line) else {
                continue;
            };
            if self
                .disk_exclude
                .as_ref()
                .is_some_and(|r| r.is_match(&d.name))
            {
                continue;
            }
            let dev = || kv("system.device", d.name.clone());
            for (dir, bytes, ops, ms, merged) in [
                (
                    "read",
                    d.sectors_read * 512,
                    d.reads,
                    d.time_reading,
                    d.merged,
                ),
                (
                    "write",
                    d.sectors_written * 512,
                    d.writes,
                    d.time_writing,
                    d.writes_merged,
                ),
            ] {
                let attrs = || vec![dev(), kv("disk.io.direction", dir)];
                out.add(&DISK_IO, start, attrs(), Val::I(bytes as i64));
                out.add(&DISK_OPS, start, attrs(), Val::I(ops as i64));
                out.add(&DISK_OP_TIME, start, attrs(), Val::F(ms as f64 / 1000.0));
                out.add(&DISK_MERGED, start, attrs(), Val::I(merged as i64));
            }
            out.add(
                &DISK_IO_TIME,
                start,
                vec![dev()],
                Val::F(d.time_in_progress as f64 / 1000.0),
            );
        }
    }

    /// `system.filesystem.usage` / `.utilization` for real filesystems (statvfs on each mount).
    pub fn filesystem(&mut self, out: &mut MetricSet) {
        // Without a host root the agent's own mount namespace is what statvfs sees
        // (/proc/self/mounts); with one, the host's pid 1 table, statvfs'd under the host root.
        let mounts = match self.reader.proc_text(self.cfg.root.mounts_file()) {
            Ok(t) => parse::parse_mounts(t),
            Err(e) => {
                self.unreadable.hit("filesystem", &e);
                return;
            }
        };
        let fc = &self.cfg.scrapers.filesystem;
        let start = self.boot_ns;
        for m in mounts {
            if fc.exclude_fs_types.contains(&m.fstype)
                || self
                    .fs_exclude
                    .as_ref()
                    .is_some_and(|r| r.is_match(&m.mountpoint))
            {
                continue;
            }
            let st = match rustix::fs::statvfs(self.cfg.root.mount_path(&m.mountpoint)) {
                Ok(s) => s,
                Err(e) => {
                    self.unreadable
                        .hit("filesystem", &format_args!("statvfs {}: {e}", m.mountpoint));
                    continue;
                }
            };
            if st.f_blocks == 0 {
                continue;
            }
            let bs = if st.f_frsize > 0 {
                st.f_frsize
            } else {
                st.f_bsize
            };
            let total = st.f_blocks * bs;
            let free = st.f_bavail * bs;
            let reserved = st.f_bfree.saturating_sub(st.f_bavail) * bs;
            let used = total.saturating_sub(st.f_bfree * bs);
            let mode = if m.read_only { "ro" } else { "rw" };
            let attrs = |state: Option<&'static str>| {
                let mut a = vec![
                    kv("system.device", m.device.clone()),
                    kv("system.filesystem.mountpoint", m.mountpoint.clone()),
                    kv("system.filesystem.type", m.fstype.clone()),
                    kv("system.filesystem.mode", mode),
                ];
                if let Some(s) = state {
                    a.push(kv("system.filesystem.state", s));
                }
                a
            };
            for (s, v) in [("used", used), ("free", free), ("reserved", reserved)] {
                out.add(&FS_USAGE, start, attrs(Some(s)), Val::I(v as i64));
            }
            out.add(&FS_UTIL, 0, attrs(None), Val::F(used as f64 / total as f64));
        }
    }

    /// `system.network.*` from /proc/net/dev.
    pub fn network(&mut self, out: &mut MetricSet) {
        let start = self.boot_ns;
        let dev = format!("{}/dev", self.cfg.root.net_dir());
        match self.reader.proc_bytes(&dev).map(parse::parse_net_dev) {
            Ok(Ok(devs)) => {
                for d in devs {
                    if self
                        .net_exclude
                        .as_ref()
                        .is_some_and(|r| r.is_match(&d.name))
                    {
                        continue;
                    }
                    for (dir, bytes, pkts, errs, drops) in [
                        (
                            "receive",
                            d.recv_bytes,
                            d.recv_packets,
                            d.recv_errs,
                            d.recv_drop,
                        ),
                        (
                            "transmit",
                            d.sent_bytes,
                            d.sent_packets,
                            d.sent_errs,
                            d.sent_drop,
                        ),
                    ] {
                        let attrs = || {
                            vec![
                                kv("network.interface.name", d.name.clone()),
                                kv("network.io.direction", dir),
                            ]
                        };
                        out.add(&NET_IO, start, attrs(), Val::I(bytes as i64));
                        out.add(&NET_PACKETS, start, attrs(), Val::I(pkts as i64));
                        out.add(&NET_ERRORS, start, attrs(), Val::I(errs as i64));
                        out.add(&NET_DROPPED, start, attrs(), Val::I(drops as i64));
                    }
                }
            }
            Ok(Err(e)) => self.unreadable.hit("network", &e),
            Err(e) => self.unreadable.hit("network", &e),
        }
    }

    /// `system.network.connections`: TCP connections by state from /proc/net/tcp{,6}.
    pub fn connections(&mut self, out: &mut MetricSet) {
        let start = self.boot_ns;
        let mut counts = [0u64; 11];
        let net = self.cfg.root.net_dir();
        for f in ["tcp", "tcp6"] {
            match self.reader.proc_text(&format!("{net}/{f}")) {
                Ok(t) => parse::count_tcp_states(t, &mut counts),
                // tcp6 is absent when IPv6 is disabled: not an error worth counting.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => self.unreadable.hit("connections", &e),
            }
        }
        for (state, n) in parse::TCP_STATES.iter().zip(counts) {
            out.add(
                &NET_CONNS,
                start,
                vec![
                    kv("network.transport", "tcp"),
                    kv("network.connection.state", *state),
                ],
                Val::I(n as i64),
            );
        }
    }

    /// `system.uptime`.
    pub fn uptime(&mut self, out: &mut MetricSet) {
        match self.reader.proc_bytes("uptime").map(parse::parse_uptime) {
            Ok(Ok(u)) => out.add(&UPTIME, 0, vec![], Val::F(u)),
            Ok(Err(e)) => self.unreadable.hit("uptime", &e),
            Err(e) => self.unreadable.hit("uptime", &e),
        }
    }

    /// The agent's own `node_agent.unreadable_files` counter.
    pub fn self_metrics(&self, out: &mut MetricSet) {
        for (scraper, n) in &self.unreadable.counts {
            out.add(
                &UNREADABLE,
                self.agent_start_ns,
                vec![kv("scraper", *scraper)],
                Val::I(*n as i64),
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, NumberDataPoint};

    pub(crate) fn fixture_config() -> Config {
        let mut cfg = Config::default();
        let td = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        cfg.root.proc = td.join("proc");
        cfg
    }

    pub(crate) fn points<'a>(set: &'a MetricSet, name: &str) -> Vec<&'a NumberDataPoint> {
        set.metrics
            .iter()
            .filter(|m| m.name == name)
            .flat_map(|m| match &m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.iter().collect::<Vec<_>>(),
                Some(metric::Data::Sum(s)) => s.data_points.iter().collect(),
                _ => vec![],
            })
            .collect()
    }

    pub(crate) fn attr(p: &NumberDataPoint, key: &str) -> Option<String> {
        p.attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
            match kv.value.as_ref()?.value.as_ref()? {
                AV::StringValue(s) => Some(s.clone()),
                AV::IntValue(i) => Some(i.to_string()),
                _ => None,
            }
        })
    }

    pub(crate) fn num(p: &NumberDataPoint) -> f64 {
        match p.value {
            Some(number_data_point::Value::AsDouble(f)) => f,
            Some(number_data_point::Value::AsInt(i)) => i as f64,
            None => f64::NAN,
        }
    }

    fn find<'a>(set: &'a MetricSet, name: &str, want: &[(&str, &str)]) -> &'a NumberDataPoint {
        points(set, name)
            .into_iter()
            .find(|p| want.iter().all(|(k, v)| attr(p, k).as_deref() == Some(*v)))
            .unwrap_or_else(|| panic!("no {name} point with {want:?}"))
    }

    #[test]
    fn cpu_from_fixture_total_and_per_core() {
        let mut h = Host::new(&fixture_config(), 100, 0);
        assert_eq!(h.boot_ns, 1_763_900_000_000_000_000);
        let mut set = MetricSet::new(1);
        h.cpu(&mut set);
        let pts = points(&set, "system.cpu.time");
        assert_eq!(pts.len(), 7 * 64); // total + 63 online cores, 7 modes each
        let p = find(
            &set,
            "system.cpu.time",
            &[("cpu.logical_number", "63"), ("cpu.mode", "user")],
        );
        assert_eq!(num(p), 1600.63);
        assert_eq!(p.start_time_unix_nano, 1_763_900_000_000_000_000);
        let p = find(&set, "system.cpu.time", &[("cpu.mode", "idle")]);
        assert!(attr(p, "cpu.logical_number").is_none());
        assert_eq!(num(p), 468_284.83);
        let p = find(
            &set,
            "system.cpu.time",
            &[("cpu.logical_number", "6"), ("cpu.mode", "interrupt")],
        );
        assert_eq!(num(p), 4.06);
        // No utilization on the first collection; the same file again gives dt = 0 → none.
        assert!(points(&set, "system.cpu.utilization").is_empty());
    }

    #[test]
    fn memory_paging_disk_network_load_uptime_from_fixture() {
        let mut h = Host::new(&fixture_config(), 100, 0);
        let mut set = MetricSet::new(1);
        h.memory_and_swap(&mut set, true, true);
        h.paging_activity(&mut set);
        h.disk(&mut set);
        h.network(&mut set);
        h.connections(&mut set);
        h.load(&mut set);
        h.uptime(&mut set);
        let kb = 1024.0;
        assert_eq!(
            num(find(
                &set,
                "system.memory.usage",
                &[("system.memory.state", "free")]
            )),
            1_021_484.0 * kb
        );
        assert_eq!(
            num(find(
                &set,
                "system.memory.usage",
                &[("system.memory.state", "used")]
            )),
            (16_318_484.0 - 1_021_484.0 - 402_140.0 - 7_831_000.0) * kb
        );
        assert_eq!(
            num(points(&set, "system.memory.limit")[0]),
            16_318_484.0 * kb
        );
        let states: f64 = points(&set, "system.memory.usage")
            .iter()
            .map(|p| num(p))
            .sum();
        assert_eq!(
            states,
            16_318_484.0 * kb,
            "memory states add up to MemTotal"
        );
        assert_eq!(
            num(find(
                &set,
                "system.memory.linux.slab.usage",
                &[("system.memory.linux.slab.state", "unreclaimable")]
            )),
            180_220.0 * kb
        );
        let u = num(find(
            &set,
            "system.memory.utilization",
            &[("system.memory.state", "cached")],
        ));
        assert!((u - 7_831_000.0 / 16_318_484.0).abs() < 1e-12);
        assert_eq!(
            num(find(
                &set,
                "system.paging.usage",
                &[("system.paging.state", "used")]
            )),
            97_148.0 * kb
        );
        assert_eq!(
            num(find(
                &set,
                "system.paging.faults",
                &[("system.paging.fault.type", "minor")]
            )),
            987_641_976.0
        );
        assert_eq!(
            num(find(
                &set,
                "system.paging.operations",
                &[
                    ("system.paging.direction", "out"),
                    ("system.paging.fault.type", "major")
                ]
            )),
            230.0
        );
        // loop0 and partitions excluded; nvme0n1 and dm-0 kept.
        let devs: std::collections::BTreeSet<_> = points(&set, "system.disk.io")
            .iter()
            .filter_map(|p| attr(p, "system.device"))
            .collect();
        assert_eq!(devs.into_iter().collect::<Vec<_>>(), ["dm-0", "nvme0n1"]);
        assert_eq!(
            num(find(
                &set,
                "system.disk.io",
                &[("system.device", "nvme0n1"), ("disk.io.direction", "read")]
            )),
            98_765_432.0 * 512.0
        );
        assert_eq!(
            num(find(
                &set,
                "system.disk.io_time",
                &[("system.device", "nvme0n1")]
            )),
            1234.56
        );
        assert_eq!(
            num(find(
                &set,
                "system.network.io",
                &[
                    ("network.interface.name", "eth0"),
                    ("network.io.direction", "transmit")
                ]
            )),
            1_234_567_890.0
        );
        assert_eq!(
            num(find(
                &set,
                "system.network.dropped",
                &[
                    ("network.interface.name", "eth0"),
                    ("network.io.direction", "receive")
                ]
            )),
            42.0
        );
        assert_eq!(
            num(find(
                &set,
                "system.network.connections",
                &[("network.connection.state", "listen")]
            )),
            3.0
        );
        assert_eq!(points(&set, "system.network.connections").len(), 11);
        assert_eq!(num(points(&set, "system.cpu.load_average.15m")[0]), 0.5);
        assert_eq!(num(points(&set, "system.uptime")[0]), 123_456.78);
        assert_eq!(h.unreadable.total(), 0);
    }

    /// A config reading the fixture host root (which differs from the machine's own).
    pub(crate) fn host_root_config() -> Config {
        let mut cfg = Config::default();
        cfg.root.host = Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/hostroot"));
        cfg.validate().unwrap();
        cfg
    }

    #[test]
    fn host_root_reads_the_hosts_pid1_tables_and_statvfs_under_the_root() {
        let mut h = Host::new(&host_root_config(), 100, 0);
        let mut set = MetricSet::new(1);
        h.filesystem(&mut set);
        h.network(&mut set);
        h.connections(&mut set);
        // Mounts from proc/1/mounts, statvfs'd under the root (the paths exist only there).
        let mounts: std::collections::BTreeSet<_> = points(&set, "system.filesystem.utilization")
            .into_iter()
            .map(|p| {
                (
                    attr(p, "system.device").unwrap(),
                    attr(p, "system.filesystem.mountpoint").unwrap(),
                )
            })
            .collect();
        assert_eq!(
            mounts,
            [
                ("/dev/fixture-data", "/srv/data"),
                ("/dev/fixture-root", "/")
            ]
            .map(|(d, m)| (d.to_string(), m.to_string()))
            .into()
        );
        let p = find(
            &set,
            "system.filesystem.usage",
            &[
                ("system.filesystem.mountpoint", "/srv/data"),
                ("system.filesystem.state", "used"),
            ],
        );
        assert_eq!(attr(p, "system.filesystem.mode").as_deref(), Some("ro"));
        // /gone is in the host's table but not under the root: counted, not fatal.
        assert_eq!(h.unreadable.total(), 1, "{:?}", h.unreadable);
        // Interfaces and connections of the host's pid 1 namespace, not the agent's.
        let p = find(
            &set,
            "system.network.io",
            &[
                ("network.interface.name", "fixture0"),
                ("network.io.direction", "receive"),
            ],
        );
        assert_eq!(num(p), 424242.0);
        assert!(points(&set, "system.network.io").iter().all(|p| attr(
            p,
            "network.interface.name"
        )
        .as_deref()
            != Some("container0")));
        let conns = |state: &str| {
            num(find(
                &set,
                "system.network.connections",
                &[("network.connection.state", state)],
            ))
        };
        assert_eq!(conns("established"), 2.0);
        assert_eq!(conns("listen"), 1.0);
        assert_eq!(conns("time_wait"), 0.0);
    }

    #[test]
    fn missing_files_are_counted_not_fatal() {
        let mut cfg = fixture_config();
        cfg.root.proc = PathBuf::from("/nonexistent-node-agent-test");
        let mut h = Host::new(&cfg, 100, 0);
        let mut set = MetricSet::new(1);
        h.cpu(&mut set);
        h.memory_and_swap(&mut set, true, true);
        h.network(&mut set);
        assert_eq!(h.unreadable.total(), 3);
        h.self_metrics(&mut set);
        assert_eq!(
            num(find(
                &set,
                "node_agent.unreadable_files",
                &[("scraper", "cpu")]
            )),
            1.0
        );
    }
}
