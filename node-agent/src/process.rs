//! Process walk: `system.processes.count` by state, and the top-N processes by CPU and by
//! memory with their `process.*` metrics.
//!
//! One pass reads only `/proc/<pid>/stat` for every process (one open/read/close each, into
//! the shared buffer). The costlier files (`io`, `fd/`, `cmdline`, `cgroup`) are read only
//! for the selected top-N. Unreadable files (other users' processes when unprivileged,
//! processes that exit mid-walk) are skipped and counted.
//! Tests: `cargo test -p node-agent process::`.

use std::collections::HashMap;

use regex::Regex;

use crate::config::ProcessConfig;
use crate::host::Host;
use crate::metrics::{kv, kv_i, Desc, Kind, MetricSet, Val};
use crate::parse;

macro_rules! desc {
    ($id:ident, $name:literal, $unit:literal, $kind:ident, $d:literal) => {
        const $id: Desc = Desc {
            name: $name,
            unit: $unit,
            description: $d,
            kind: Kind::$kind,
        };
    };
}

desc!(
    PROC_COUNT,
    "system.processes.count",
    "{process}",
    UpDownCounter,
    "Processes by state"
);
desc!(
    P_CPU_TIME,
    "process.cpu.time",
    "s",
    Counter,
    "CPU seconds of the process by mode"
);
desc!(
    P_CPU_UTIL,
    "process.cpu.utilization",
    "1",
    Gauge,
    "CPU time since the last collection divided by elapsed time and CPU count"
);
desc!(
    P_MEM,
    "process.memory.usage",
    "By",
    UpDownCounter,
    "Resident set size"
);
desc!(
    P_VMEM,
    "process.memory.virtual",
    "By",
    UpDownCounter,
    "Virtual memory size"
);
desc!(
    P_THREADS,
    "process.thread.count",
    "{thread}",
    UpDownCounter,
    "Threads of the process"
);
desc!(
    P_FDS,
    "process.open_file_descriptor.count",
    "{file_descriptor}",
    UpDownCounter,
    "Open file descriptors"
);
desc!(
    P_DISK_IO,
    "process.disk.io",
    "By",
    Counter,
    "Bytes read from and written to storage"
);

#[derive(Debug, Clone)]
struct Cand {
    pid: i32,
    comm: String,
    utime: u64,
    stime: u64,
    d_utime: u64,
    d_stime: u64,
    starttime: u64,
    rss: u64,
    vsize: u64,
    threads: i64,
}

/// State of the process scraper between collections.
#[derive(Debug)]
pub struct Processes {
    cfg: ProcessConfig,
    include: Option<Regex>,
    exclude: Option<Regex>,
    page_size: u64,
    ncpu: f64,
    /// pid → (starttime, utime, stime) from the previous walk.
    prev: HashMap<i32, (u64, u64, u64)>,
    next: HashMap<i32, (u64, u64, u64)>,
    prev_ns: Option<u64>,
    cands: Vec<Cand>,
}

impl Processes {
    /// A scraper with the given filters (regexes validated by the config).
    pub fn new(cfg: &ProcessConfig, page_size: u64, ncpu: usize) -> Self {
        let re = |s: &str| (!s.is_empty()).then(|| Regex::new(s).ok()).flatten();
        Self {
            cfg: cfg.clone(),
            include: re(&cfg.include),
            exclude: re(&cfg.exclude),
            page_size,
            ncpu: ncpu.max(1) as f64,
            prev: HashMap::new(),
            next: HashMap::new(),
            prev_ns: None,
            cands: Vec::new(),
        }
    }

    /// Walks `/proc`, emits `system.processes.count` when `counts`, and the top-N when `top`.
    pub fn collect(&mut self, host: &mut Host, out: &mut MetricSet, counts: bool, top: bool) {
        let now_ns = out.time_ns;
        let dir = match std::fs::read_dir(&host.reader.proc) {
            Ok(d) => d,
            Err(e) => {
                host.unreadable.hit("process", &e);
                return;
            }
        };
        let mut state_counts = [0i64; 4]; // running, sleeping, stopped, defunct
        self.cands.clear();
        self.next.clear();
        let mut path = String::with_capacity(32);
        for ent in dir.flatten() {
            let name = ent.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            path.clear();
            use std::fmt::Write;
            let _ = write!(path, "{pid}/stat");
            let text = match host.reader.proc_text(&path) {
                Ok(t) => t,
                Err(e) => {
                    // The process exited between readdir and open: not a permission problem.
                    if e.kind() != std::io::ErrorKind::NotFound {
                        host.unreadable.hit("process", &e);
                    }
                    continue;
                }
            };
            let Some(st) = parse::parse_pid_stat(text) else {
                continue;
            };
            match parse::process_state(st.state) {
                Some("running") => state_counts[0] += 1,
                Some("sleeping") => state_counts[1] += 1,
                Some("stopped") => state_counts[2] += 1,
                Some("defunct") => state_counts[3] += 1,
                _ => {}
            }
            if !top {
                continue;
            }
            self.next.insert(pid, (st.starttime, st.utime, st.stime));
            if self.include.as_ref().is_some_and(|r| !r.is_match(st.comm))
                || self.exclude.as_ref().is_some_and(|r| r.is_match(st.comm))
            {
                continue;
            }
            let (d_utime, d_stime) = match self.prev.get(&pid) {
                Some(&(start, u, s)) if start == st.starttime => {
                    (st.utime.saturating_sub(u), st.stime.saturating_sub(s))
                }
                _ => (0, 0),
            };
            self.cands.push(Cand {
                pid,
                comm: st.comm.to_string(),
                utime: st.utime,
                stime: st.stime,
                d_utime,
                d_stime,
                starttime: st.starttime,
                rss: st.rss_pages * self.page_size,
                vsize: st.vsize,
                threads: st.num_threads,
            });
        }
        if counts {
            for (state, n) in ["running", "sleeping", "stopped", "defunct"]
                .iter()
                .zip(state_counts)
            {
                out.add(
                    &PROC_COUNT,
                    host.boot_ns,
                    vec![kv("process.state", *state)],
                    Val::I(n),
                );
            }
        }
        if top {
            let elapsed_s = self.prev_ns.map(|p| now_ns.saturating_sub(p) as f64 / 1e9);
            let selected = select_top(&mut self.cands, self.cfg.top_n);
            for c in selected {
                emit_process(host, out, &c, elapsed_s, self.ncpu);
            }
            std::mem::swap(&mut self.prev, &mut self.next);
            self.prev_ns = Some(now_ns);
        }
    }
}

/// The union of the top `n` by CPU delta and the top `n` by RSS, ordered by pid.
fn select_top(cands: &mut [Cand], n: usize) -> Vec<Cand> {
    if n == 0 || cands.is_empty() {
        return Vec::new();
    }
    let n = n.min(cands.len());
    let mut out: Vec<Cand> = Vec::with_capacity(2 * n);
    let cpu_key = |c: &Cand| (c.d_utime + c.d_stime, c.utime + c.stime, -(c.pid as i64));
    cands.select_nth_unstable_by(n - 1, |a, b| cpu_key(b).cmp(&cpu_key(a)));
    out.extend_from_slice(&cands[..n]);
    let mem_key = |c: &Cand| (c.rss, -(c.pid as i64));
    cands.select_nth_unstable_by(n - 1, |a, b| mem_key(b).cmp(&mem_key(a)));
    for c in &cands[..n] {
        if !out.iter().any(|o| o.pid == c.pid) {
            out.push(c.clone());
        }
    }
    out.sort_by_key(|c| c.pid);
    out
}

fn emit_process(host: &mut Host, out: &mut MetricSet, c: &Cand, elapsed_s: Option<f64>, ncpu: f64) {
    let tps = host.tps as f64;
    let start_ns = host.boot_ns + (c.starttime as f64 / tps * 1e9) as u64;
    let pid = c.pid;
    let command = match host.reader.proc_bytes(&format!("{pid}/cmdline")) {
        Ok(b) => parse::parse_cmdline_argv0(b),
        Err(_) => String::new(),
    };
    let container = host
        .reader
        .proc_text(&format!("{pid}/cgroup"))
        .ok()
        .and_then(parse::parse_cgroup_container_id);
    let base = || {
        let mut a = vec![
            kv_i("process.pid", pid as i64),
            kv("process.executable.name", c.comm.clone()),
            kv(
                "process.command",
                if command.is_empty() {
                    c.comm.clone()
                } else {
                    command.clone()
                },
            ),
        ];
        if let Some(id) = &container {
            a.push(kv("container.id", id.clone()));
        }
        a
    };
    let with = |k: &'static str, v: &'static str| {
        let mut a = base();
        a.push(kv(k, v));
        a
    };
    for (mode, ticks, d) in [("user", c.utime, c.d_utime), ("system", c.stime, c.d_stime)] {
        out.add(
            &P_CPU_TIME,
            start_ns,
            with("cpu.mode", mode),
            Val::F(ticks as f64 / tps),
        );
        if let Some(e) = elapsed_s.filter(|e| *e > 0.0) {
            out.add(
                &P_CPU_UTIL,
                0,
                with("cpu.mode", mode),
                Val::F(d as f64 / tps / e / ncpu),
            );
        }
    }
    out.add(&P_MEM, start_ns, base(), Val::I(c.rss as i64));
    out.add(&P_VMEM, start_ns, base(), Val::I(c.vsize as i64));
    out.add(&P_THREADS, start_ns, base(), Val::I(c.threads));
    let mut fd_path = host.reader.proc.clone();
    fd_path.push(format!("{pid}/fd"));
    match std::fs::read_dir(&fd_path) {
        Ok(d) => out.add(&P_FDS, start_ns, base(), Val::I(d.count() as i64)),
        Err(e) => host
            .unreadable
            .hit("process", &format_args!("{}: {e}", fd_path.display())),
    }
    match host.reader.proc_text(&format!("{pid}/io")) {
        Ok(t) => {
            if let Some((r, w)) = parse::parse_pid_io(t) {
                out.add(
                    &P_DISK_IO,
                    start_ns,
                    with("disk.io.direction", "read"),
                    Val::I(r as i64),
                );
                out.add(
                    &P_DISK_IO,
                    start_ns,
                    with("disk.io.direction", "write"),
                    Val::I(w as i64),
                );
            }
        }
        Err(e) => host
            .unreadable
            .hit("process", &format_args!("{pid}/io: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::tests::{attr, fixture_config, num, points};
    use crate::host::Host;

    fn run(cfg: &ProcessConfig) -> (MetricSet, Host) {
        let mut h = Host::new(&fixture_config(), 100, 0);
        let mut p = Processes::new(cfg, 4096, 4);
        let mut set = MetricSet::new(2_000_000_000);
        p.collect(&mut h, &mut set, true, true);
        (set, h)
    }

    #[test]
    fn counts_by_state_and_top_n_from_fixture() {
        let cfg = ProcessConfig {
            top_n: 1,
            ..ProcessConfig::default()
        };
        let (set, h) = run(&cfg);
        let count = |s: &str| {
            num(points(&set, "system.processes.count")
                .into_iter()
                .find(|p| attr(p, "process.state").as_deref() == Some(s))
                .unwrap())
        };
        assert_eq!(count("sleeping"), 3.0);
        assert_eq!(count("defunct"), 1.0);
        assert_eq!(count("running"), 0.0);
        // top 1 by CPU (no previous walk: total ticks) = systemd (13000), by RSS = 4242 (2560
        // pages) vs systemd (3000 pages) → systemd both times; only one process reported.
        let mem = points(&set, "process.memory.usage");
        assert_eq!(mem.len(), 1);
        assert_eq!(attr(mem[0], "process.pid").as_deref(), Some("1"));
        assert_eq!(num(mem[0]), 3000.0 * 4096.0);
        // systemd's fd dir is missing in the fixture, io too → counted, not fatal.
        assert!(h.unreadable.total() >= 2);
    }

    #[test]
    fn weird_comm_process_metrics_exact() {
        let cfg = ProcessConfig {
            top_n: 5,
            include: "weird".into(),
            ..ProcessConfig::default()
        };
        let (set, _) = run(&cfg);
        let cpu = points(&set, "process.cpu.time");
        assert_eq!(cpu.len(), 2);
        let user = cpu
            .iter()
            .find(|p| attr(p, "cpu.mode").as_deref() == Some("user"))
            .unwrap();
        assert_eq!(num(user), 12.34);
        assert_eq!(
            attr(user, "process.executable.name").as_deref(),
            Some("my (weird) proc) x")
        );
        assert_eq!(
            attr(user, "process.command").as_deref(),
            Some("/opt/my app/bin/weird")
        );
        assert_eq!(
            attr(user, "container.id").as_deref(),
            Some("3f1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a")
        );
        // start = btime + starttime / CLK_TCK
        assert_eq!(
            user.start_time_unix_nano,
            1_763_900_000_000_000_000 + 987_650_000_000
        );
        assert_eq!(
            num(points(&set, "process.memory.usage")[0]),
            2560.0 * 4096.0
        );
        assert_eq!(
            num(points(&set, "process.memory.virtual")[0]),
            123_456_789.0
        );
        assert_eq!(num(points(&set, "process.thread.count")[0]), 7.0);
        assert_eq!(
            num(points(&set, "process.open_file_descriptor.count")[0]),
            4.0
        );
        let io = points(&set, "process.disk.io");
        assert_eq!(io.len(), 2);
        assert_eq!(num(io[0]), 1_048_576.0);
        assert_eq!(num(io[1]), 409_600.0);
        // No utilization on the first walk.
        assert!(points(&set, "process.cpu.utilization").is_empty());
    }

    #[test]
    fn never_more_than_two_n_processes() {
        let mk = |pid: i32, cpu: u64, rss: u64| Cand {
            pid,
            comm: format!("p{pid}"),
            utime: cpu,
            stime: 0,
            d_utime: cpu,
            d_stime: 0,
            starttime: 0,
            rss,
            vsize: 0,
            threads: 1,
        };
        let mut c: Vec<Cand> = (0..50).map(|i| mk(i, i as u64, (50 - i) as u64)).collect();
        let sel = select_top(&mut c, 3);
        let pids: Vec<i32> = sel.iter().map(|c| c.pid).collect();
        assert_eq!(pids, [0, 1, 2, 47, 48, 49]);
        let sel = select_top(&mut c, 0);
        assert!(sel.is_empty());
    }

    #[test]
    fn exclude_filter_applies() {
        let cfg = ProcessConfig {
            top_n: 5,
            exclude: "^(systemd|kthreadd|defunct child)$".into(),
            ..ProcessConfig::default()
        };
        let (set, _) = run(&cfg);
        let pids: std::collections::BTreeSet<_> = points(&set, "process.memory.usage")
            .iter()
            .filter_map(|p| attr(p, "process.pid"))
            .collect();
        assert_eq!(pids.into_iter().collect::<Vec<_>>(), ["4242"]);
    }
}
