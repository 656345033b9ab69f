//! Parsers for the /proc and /sys files the agent reads, as pure functions over the file's
//! bytes so that recorded fixtures in `testdata/` can be parsed into exact values.
//!
//! The hot, per-process files (`/proc/<pid>/stat`, `io`) and `/proc/stat` are parsed here
//! without allocating; the rest goes through the `procfs` crate's parsers
//! (diskstats, net/dev, loadavg, uptime). Tests: `cargo test -p node-agent parse::`.

use procfs::FromRead;

/// Clock ticks spent by one CPU (or all of them) in each mode, from `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// user (includes guest).
    pub user: u64,
    /// nice (includes guest_nice).
    pub nice: u64,
    /// system.
    pub system: u64,
    /// idle.
    pub idle: u64,
    /// iowait.
    pub iowait: u64,
    /// irq.
    pub irq: u64,
    /// softirq.
    pub softirq: u64,
    /// steal.
    pub steal: u64,
}

impl CpuTicks {
    /// Sum over all modes.
    pub fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }

    /// (`cpu.mode` value, ticks) pairs; irq and softirq both count as `interrupt`.
    pub fn modes(&self) -> [(&'static str, u64); 7] {
        [
            ("user", self.user),
            ("nice", self.nice),
            ("system", self.system),
            ("idle", self.idle),
            ("iowait", self.iowait),
            ("interrupt", self.irq + self.softirq),
            ("steal", self.steal),
        ]
    }
}

/// `/proc/stat`: the machine total, each online CPU with its logical number, and boot time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelStat {
    /// The `cpu` line.
    pub total: CpuTicks,
    /// The `cpuN` lines, with N (offline CPUs are absent, so N is not the index).
    pub cpus: Vec<(u32, CpuTicks)>,
    /// `btime`, seconds since the epoch.
    pub btime: u64,
}

fn num<T: std::str::FromStr + Default>(s: Option<&str>) -> T {
    s.and_then(|s| s.parse().ok()).unwrap_or_default()
}

/// Parses `/proc/stat`, reusing `out.cpus`.
pub fn parse_kernel_stat(text: &str, out: &mut KernelStat) {
    out.cpus.clear();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("cpu") {
            let mut it = rest.split_ascii_whitespace();
            let label = if rest.starts_with(' ') {
                None
            } else {
                it.next()
            };
            let t = CpuTicks {
                user: num(it.next()),
                nice: num(it.next()),
                system: num(it.next()),
                idle: num(it.next()),
                iowait: num(it.next()),
                irq: num(it.next()),
                softirq: num(it.next()),
                steal: num(it.next()),
            };
            match label {
                None => out.total = t,
                Some(n) => {
                    if let Ok(n) = n.parse() {
                        out.cpus.push((n, t));
                    }
                }
            }
        } else if let Some(rest) = line.strip_prefix("btime ") {
            out.btime = num(Some(rest.trim()));
        }
    }
}

/// The `/proc/meminfo` fields the agent uses, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// MemTotal.
    pub total: u64,
    /// MemFree.
    pub free: u64,
    /// MemAvailable.
    pub available: u64,
    /// Buffers.
    pub buffers: u64,
    /// Cached.
    pub cached: u64,
    /// SReclaimable.
    pub slab_reclaimable: u64,
    /// SUnreclaim.
    pub slab_unreclaimable: u64,
    /// SwapTotal.
    pub swap_total: u64,
    /// SwapFree.
    pub swap_free: u64,
}

impl MemInfo {
    /// `used` such that the semantic-convention states add up to the total:
    /// total − free − buffers − cached (reclaimable slab counts as used; it is reported
    /// separately in `system.memory.linux.slab.usage`).
    pub fn used(&self) -> u64 {
        self.total
            .saturating_sub(self.free)
            .saturating_sub(self.buffers)
            .saturating_sub(self.cached)
    }
}

/// Parses `/proc/meminfo` (values in kB are converted to bytes).
pub fn parse_meminfo(text: &str) -> MemInfo {
    let mut m = MemInfo::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut it = rest.split_ascii_whitespace();
        let v: u64 = num(it.next());
        let v = if it.next() == Some("kB") { v * 1024 } else { v };
        match key {
            "MemTotal" => m.total = v,
            "MemFree" => m.free = v,
            "MemAvailable" => m.available = v,
            "Buffers" => m.buffers = v,
            "Cached" => m.cached = v,
            "SReclaimable" => m.slab_reclaimable = v,
            "SUnreclaim" => m.slab_unreclaimable = v,
            "SwapTotal" => m.swap_total = v,
            "SwapFree" => m.swap_free = v,
            _ => {}
        }
    }
    m
}

/// The `/proc/vmstat` counters used for `system.paging.*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmStat {
    /// pgfault (all faults; minor = pgfault − pgmajfault).
    pub pgfault: u64,
    /// pgmajfault.
    pub pgmajfault: u64,
    /// pswpin (pages swapped in).
    pub pswpin: u64,
    /// pswpout.
    pub pswpout: u64,
    /// pgpgin (pages paged in from disk).
    pub pgpgin: u64,
    /// pgpgout.
    pub pgpgout: u64,
}

/// Parses `/proc/vmstat`.
pub fn parse_vmstat(text: &str) -> VmStat {
    let mut v = VmStat::default();
    for line in text.lines() {
        let Some((k, val)) = line.split_once(' ') else {
            continue;
        };
        let slot = match k {
            "pgfault" => &mut v.pgfault,
            "pgmajfault" => &mut v.pgmajfault,
            "pswpin" => &mut v.pswpin,
            "pswpout" => &mut v.pswpout,
            "pgpgin" => &mut v.pgpgin,
            "pgpgout" => &mut v.pgpgout,
            _ => continue,
        };
        *slot = num(Some(val.trim()));
    }
    v
}

/// One line of `/proc/diskstats` (via `procfs`).
///
/// # Errors
/// A malformed line.
pub fn parse_diskstat_line(line: &str) -> procfs::ProcResult<procfs::DiskStat> {
    procfs::DiskStat::from_line(line)
}

/// `/proc/net/dev` (via `procfs`), sorted by interface name.
///
/// # Errors
/// A malformed file.
pub fn parse_net_dev(bytes: &[u8]) -> procfs::ProcResult<Vec<procfs::net::DeviceStatus>> {
    let map = procfs::net::InterfaceDeviceStatus::from_read(bytes)?;
    let mut v: Vec<_> = map.0.into_values().collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

/// `/proc/loadavg` (via `procfs`).
///
/// # Errors
/// A malformed file.
pub fn parse_loadavg(bytes: &[u8]) -> procfs::ProcResult<procfs::LoadAverage> {
    procfs::LoadAverage::from_read(bytes)
}

/// `/proc/uptime` seconds (via `procfs`).
///
/// # Errors
/// A malformed file.
pub fn parse_uptime(bytes: &[u8]) -> procfs::ProcResult<f64> {
    Ok(procfs::Uptime::from_read(bytes)?.uptime)
}

/// TCP states in `/proc/net/tcp` order (index = kernel state number − 1), as
/// `network.connection.state` values.
pub const TCP_STATES: [&str; 11] = [
    "established",
    "syn_sent",
    "syn_received",
    "fin_wait_1",
    "fin_wait_2",
    "time_wait",
    "close",
    "close_wait",
    "last_ack",
    "listen",
    "closing",
];

/// Adds the connections of a `/proc/net/tcp` or `tcp6` file to `counts` by state.
pub fn count_tcp_states(text: &str, counts: &mut [u64; 11]) {
    for line in text.lines().skip(1) {
        let Some(st) = line.split_ascii_whitespace().nth(3) else {
            continue;
        };
        if let Ok(n) = u8::from_str_radix(st, 16) {
            if (1..=11).contains(&n) {
                counts[n as usize - 1] += 1;
            }
        }
    }
}

/// One mount from `/proc/<pid>/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Device (`system.device`).
    pub device: String,
    /// Mount point, octal escapes decoded.
    pub mountpoint: String,
    /// Filesystem type.
    pub fstype: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Decodes escapes of the form `<marker>` followed by `digits` digits in `radix`
/// (`\\040` in mount paths, `%20` in OTEL header values); anything else is kept as is.
pub fn decode_escapes(s: &str, marker: u8, digits: usize, radix: u32) -> String {
    if !s.as_bytes().contains(&marker) {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == marker && i + digits < b.len() {
            let code = std::str::from_utf8(&b[i + 1..i + 1 + digits]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(code, radix) {
                out.push(v);
                i += 1 + digits;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unescape_octal(s: &str) -> String {
    decode_escapes(s, b'\\', 3, 8)
}

/// Parses a mounts file (`/proc/self/mounts` format).
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.split_ascii_whitespace();
            let device = it.next()?;
            let mp = it.next()?;
            let fstype = it.next()?;
            let opts = it.next().unwrap_or("");
            Some(Mount {
                device: unescape_octal(device),
                mountpoint: unescape_octal(mp),
                fstype: fstype.to_string(),
                read_only: opts.split(',').any(|o| o == "ro"),
            })
        })
        .collect()
}

/// The fields of `/proc/<pid>/stat` the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidStat<'a> {
    /// Process ID.
    pub pid: i32,
    /// `comm` (between the first `(` and the last `)`), may contain spaces and parentheses.
    pub comm: &'a str,
    /// State letter (R, S, D, Z, T, t, I, X, ...).
    pub state: u8,
    /// User-mode clock ticks.
    pub utime: u64,
    /// Kernel-mode clock ticks.
    pub stime: u64,
    /// Thread count.
    pub num_threads: i64,
    /// Start time, clock ticks after boot.
    pub starttime: u64,
    /// Virtual memory size in bytes.
    pub vsize: u64,
    /// Resident set in pages.
    pub rss_pages: u64,
}

/// Parses `/proc/<pid>/stat` without allocating. `None` if malformed.
pub fn parse_pid_stat(text: &str) -> Option<PidStat<'_>> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let comm = &text[open + 1..close];
    let mut it = text.get(close + 1..)?.split_ascii_whitespace();
    // Field numbers from proc(5): state is 3, utime 14, stime 15, num_threads 20,
    // starttime 22, vsize 23, rss 24.
    let state = *it.next()?.as_bytes().first()?;
    let mut it = it.skip(10); // 4..=13
    let utime = it.next()?.parse().ok()?;
    let stime = it.next()?.parse().ok()?;
    let mut it = it.skip(4); // 16..=19
    let num_threads = it.next()?.parse().ok()?;
    let mut it = it.skip(1); // 21
    let starttime = it.next()?.parse().ok()?;
    let vsize = it.next()?.parse().ok()?;
    let rss_pages = it.next()?.parse::<i64>().ok()?.max(0) as u64;
    Some(PidStat {
        pid,
        comm,
        state,
        utime,
        stime,
        num_threads,
        starttime,
        vsize,
        rss_pages,
    })
}

/// `process.state` value for a `/proc/<pid>/stat` state letter (`None` for dead tasks).
pub fn process_state(c: u8) -> Option<&'static str> {
    match c {
        b'R' => Some("running"),
        b'S' | b'D' | b'I' | b'W' | b'P' => Some("sleeping"),
        b'T' | b't' => Some("stopped"),
        b'Z' => Some("defunct"),
        _ => None,
    }
}

/// `read_bytes` and `write_bytes` from `/proc/<pid>/io`.
pub fn parse_pid_io(text: &str) -> Option<(u64, u64)> {
    let (mut r, mut w) = (None, None);
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("read_bytes:") {
            r = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("write_bytes:") {
            w = v.trim().parse().ok();
        }
    }
    Some((r?, w?))
}

/// `process.command`: the zeroth string of `/proc/<pid>/cmdline` (empty for kernel threads).
pub fn parse_cmdline_argv0(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Container ID from a cgroup v2 `/proc/<pid>/cgroup` file (`0::/path`), recognising the
/// path shapes of Docker, containerd/CRI-O (Kubernetes) and Podman: the last 64-hex-digit
/// component, with `docker-`, `cri-containerd-`, `crio-`, `libpod-` prefixes and `.scope`
/// suffix removed.
pub fn parse_cgroup_container_id(text: &str) -> Option<String> {
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    path.rsplit('/').find_map(|comp| {
        let c = comp.strip_suffix(".scope").unwrap_or(comp);
        let c = c.rsplit_once('-').map_or(c, |(_, id)| id);
        let c = c.rsplit_once(':').map_or(c, |(_, id)| id);
        (c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit())).then(|| c.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn kernel_stat_many_cores_with_offline_cpu() {
        let mut ks = KernelStat::default();
        parse_kernel_stat(&fixture("proc/stat"), &mut ks);
        // 64 logical CPUs listed, cpu5 offline (absent).
        assert_eq!(ks.cpus.len(), 63);
        assert!(ks.cpus.iter().all(|(n, _)| *n != 5));
        assert_eq!(ks.cpus.last().unwrap().0, 63);
        assert_eq!(ks.btime, 1_763_900_000);
        assert_eq!(
            ks.total,
            CpuTicks {
                user: 10_132_153,
                nice: 290_696,
                system: 3_084_719,
                idle: 46_828_483,
                iowait: 16_683,
                irq: 0,
                softirq: 25_195,
                steal: 0,
            }
        );
        let (n, c6) = ks.cpus[5];
        assert_eq!(n, 6);
        assert_eq!(c6.user, 160_006);
        assert_eq!(c6.irq + c6.softirq, 406);
        let sum_user: u64 = ks.cpus.iter().map(|(_, c)| c.user).sum();
        assert_eq!(
            sum_user,
            63 * 160_000 + (0..64u64).filter(|&i| i != 5).sum::<u64>()
        );
    }

    #[test]
    fn meminfo_in_bytes_and_used() {
        let m = parse_meminfo(&fixture("proc/meminfo"));
        assert_eq!(m.total, 16_318_484 * 1024);
        assert_eq!(m.free, 1_021_484 * 1024);
        assert_eq!(m.available, 9_875_120 * 1024);
        assert_eq!(m.buffers, 402_140 * 1024);
        assert_eq!(m.cached, 7_831_000 * 1024);
        assert_eq!(m.slab_reclaimable, 512_340 * 1024);
        assert_eq!(m.slab_unreclaimable, 180_220 * 1024);
        assert_eq!(m.swap_total, 2_097_148 * 1024);
        assert_eq!(m.swap_free, 2_000_000 * 1024);
        assert_eq!(
            m.used(),
            (16_318_484 - 1_021_484 - 402_140 - 7_831_000) * 1024
        );
    }

    #[test]
    fn vmstat_paging_counters() {
        let v = parse_vmstat(&fixture("proc/vmstat"));
        assert_eq!(
            v,
            VmStat {
                pgfault: 987_654_321,
                pgmajfault: 12_345,
                pswpin: 17,
                pswpout: 230,
                pgpgin: 4_567_890,
                pgpgout: 9_876_543,
            }
        );
    }

    #[test]
    fn pid_stat_with_spaces_and_parentheses_in_comm() {
        let text = fixture("proc/4242/stat");
        let s = parse_pid_stat(&text).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "my (weird) proc) x");
        assert_eq!(s.state, b'S');
        assert_eq!(s.utime, 1234);
        assert_eq!(s.stime, 567);
        assert_eq!(s.num_threads, 7);
        assert_eq!(s.starttime, 98_765);
        assert_eq!(s.vsize, 123_456_789);
        assert_eq!(s.rss_pages, 2_560);
        let t2 = fixture("proc/2/stat");
        let k = parse_pid_stat(&t2).unwrap();
        assert_eq!(
            (k.pid, k.comm, k.state, k.num_threads),
            (2, "kthreadd", b'S', 1)
        );
        let t77 = fixture("proc/77/stat");
        let z = parse_pid_stat(&t77).unwrap();
        assert_eq!((z.comm, z.state, z.rss_pages), ("defunct child", b'Z', 0));
        assert!(parse_pid_stat("12 (x) S 1").is_none());
    }

    #[test]
    fn pid_io_cmdline_and_cgroup() {
        assert_eq!(
            parse_pid_io(&fixture("proc/4242/io")),
            Some((1_048_576, 409_600))
        );
        assert_eq!(
            parse_cmdline_argv0(b"/usr/bin/my prog\0--flag\0"),
            "/usr/bin/my prog"
        );
        let id = parse_cgroup_container_id(&fixture("proc/4242/cgroup")).unwrap();
        assert_eq!(
            id,
            "3f1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a"
        );
        assert_eq!(parse_cgroup_container_id(&fixture("proc/2/cgroup")), None);
        assert_eq!(parse_cgroup_container_id(&fixture("proc/1/cgroup")), None);
        // cgroup v1/v2 hybrid (Docker on an older host) and CRI-O.
        let id64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let hybrid =
            format!("12:memory:/docker/{id64}\n1:name=systemd:/docker/{id64}\n0::/docker/{id64}\n");
        assert_eq!(parse_cgroup_container_id(&hybrid).as_deref(), Some(id64));
        let crio = format!("0::/kubepods.slice/kubepods-pod1.slice/crio-{id64}.scope\n");
        assert_eq!(parse_cgroup_container_id(&crio).as_deref(), Some(id64));
        // A v1-only file has no `0::` line.
        assert_eq!(
            parse_cgroup_container_id(&format!("4:cpu:/docker/{id64}\n")),
            None
        );
        assert_eq!(
            parse_cgroup_container_id("0::/system.slice/docker-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.scope\n")
                .as_deref(),
            Some("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        );
    }

    #[test]
    fn escapes_decode_and_malformed_ones_are_kept() {
        assert_eq!(decode_escapes("/mnt/a\\040b", b'\\', 3, 8), "/mnt/a b");
        assert_eq!(decode_escapes("a%20b%2", b'%', 2, 16), "a b%2");
        assert_eq!(decode_escapes("%zz", b'%', 2, 16), "%zz");
    }

    #[test]
    fn net_dev_via_procfs() {
        let v = parse_net_dev(fixture("proc/net/dev").as_bytes()).unwrap();
        let names: Vec<_> = v.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["eth0", "lo", "veth1a2b3c"]);
        let eth0 = &v[0];
        assert_eq!(eth0.recv_bytes, 9_876_543_210);
        assert_eq!(eth0.recv_packets, 12_345_678);
        assert_eq!(eth0.recv_errs, 3);
        assert_eq!(eth0.recv_drop, 42);
        assert_eq!(eth0.sent_bytes, 1_234_567_890);
        assert_eq!(eth0.sent_packets, 7_654_321);
        assert_eq!(eth0.sent_errs, 0);
        assert_eq!(eth0.sent_drop, 1);
    }

    #[test]
    fn diskstats_via_procfs() {
        let text = fixture("proc/diskstats");
        let d: Vec<_> = text
            .lines()
            .map(|l| parse_diskstat_line(l).unwrap())
            .collect();
        assert_eq!(d.len(), 5);
        let nvme = d.iter().find(|d| d.name == "nvme0n1").unwrap();
        assert_eq!(nvme.reads, 1_520_340);
        assert_eq!(nvme.sectors_read, 98_765_432);
        assert_eq!(nvme.writes, 2_345_678);
        assert_eq!(nvme.sectors_written, 123_456_789);
        assert_eq!(nvme.time_in_progress, 1_234_560);
        assert_eq!(nvme.time_reading, 456_789);
        assert_eq!(nvme.time_writing, 2_345_678);
    }

    #[test]
    fn loadavg_uptime_tcp_and_mounts() {
        let l = parse_loadavg(fixture("proc/loadavg").as_bytes()).unwrap();
        assert_eq!((l.one, l.five, l.fifteen), (1.25, 0.75, 0.5));
        assert_eq!(
            parse_uptime(fixture("proc/uptime").as_bytes()).unwrap(),
            123_456.78
        );
        let mut c = [0u64; 11];
        count_tcp_states(&fixture("proc/net/tcp"), &mut c);
        count_tcp_states(&fixture("proc/net/tcp6"), &mut c);
        assert_eq!(c[0], 3); // established
        assert_eq!(c[5], 1); // time_wait
        assert_eq!(c[9], 3); // listen
        assert_eq!(c.iter().sum::<u64>(), 7);
        let m = parse_mounts(&fixture("proc/mounts"));
        assert_eq!(m.len(), 6);
        assert_eq!(m[0].mountpoint, "/");
        assert_eq!(m[0].device, "/dev/nvme0n1p2");
        assert_eq!(m[0].fstype, "ext4");
        assert!(!m[0].read_only);
        let spaced = m.iter().find(|m| m.mountpoint.contains(' ')).unwrap();
        assert_eq!(spaced.mountpoint, "/mnt/my disk");
        assert!(spaced.read_only);
    }
}
