//! The load generator behind the `loadgen` binary: an open-loop schedule (requests start at
//! their planned time whatever the previous ones do, and latency is measured from the planned
//! start, so a slow server cannot hide its slowness by slowing the client down), a flat or
//! diurnal rate, and injected incidents (`error-spike`, `latency-spike` through the target's
//! `/admin/faults`; `traffic-drop` by sending less).
//!
//! Bounded: it stops scheduling after `duration`, waits at most the request timeout for what is
//! in flight, and never has more than `max_in_flight` requests open (extra starts are counted
//! as `dropped`). A closed-loop mode (`concurrency` workers back to back) exists for throughput
//! benchmarks.
//!
//! Tests: `cargo test -p demo-app loadgen` and `tests/loadgen.rs`.

use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

/// Rate shape over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pattern {
    /// Constant `--rps`.
    Flat,
    /// A compressed day: `rps * (1 - 0.6 cos(2 pi t / day))`, trough 0.4x at t=0, peak 1.6x
    /// at half a day, mean `rps`.
    Diurnal,
}

/// Amplitude of the diurnal pattern (fraction of the mean rate).
pub const DIURNAL_AMPLITUDE: f64 = 0.6;

/// Kind of injected incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectKind {
    /// `PUT /admin/faults` with `error_rate` = value (default 0.5).
    ErrorSpike,
    /// `PUT /admin/faults` with `latency_ms` = value (default 500) and half as much jitter.
    LatencySpike,
    /// Loadgen sends only value (default 0.1) times the scheduled rate.
    TrafficDrop,
}

impl InjectKind {
    fn default_value(self) -> f64 {
        match self {
            InjectKind::ErrorSpike => 0.5,
            InjectKind::LatencySpike => 500.0,
            InjectKind::TrafficDrop => 0.1,
        }
    }
}

/// One injected incident: `KIND[=VALUE]@START+LEN`, e.g. `error-spike@30s+20s`,
/// `latency-spike=800@1m+30s`, `traffic-drop=0.2@10s+10s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inject {
    /// What happens.
    pub kind: InjectKind,
    /// Its strength (error rate, added ms, or remaining traffic fraction).
    pub value: f64,
    /// Offset from the start of the run.
    pub start: Duration,
    /// How long it lasts.
    pub len: Duration,
}

/// A malformed `--inject` value.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InjectParseError {
    /// Not of the form `KIND[=VALUE]@START+LEN`.
    #[error("--inject {0:?}: expected KIND[=VALUE]@START+LEN, e.g. error-spike@30s+20s")]
    Shape(String),
    /// Unknown kind.
    #[error("--inject kind {0:?} is unknown: use error-spike, latency-spike or traffic-drop")]
    Kind(String),
    /// Value not a number or out of range.
    #[error("--inject value {0:?} is invalid: error-spike takes 0..=1, latency-spike milliseconds (0..=60000), traffic-drop 0..=1")]
    Value(String),
    /// START or LEN not a duration.
    #[error("--inject duration {0:?} is invalid: use e.g. 30s, 2m, 1m30s")]
    Duration(String),
}

impl FromStr for Inject {
    type Err = InjectParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shape = || InjectParseError::Shape(s.to_string());
        let (head, when) = s.split_once('@').ok_or_else(shape)?;
        let (start, len) = when.split_once('+').ok_or_else(shape)?;
        let (kind, value) = match head.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (head, None),
        };
        let kind = match kind.trim() {
            "error-spike" => InjectKind::ErrorSpike,
            "latency-spike" => InjectKind::LatencySpike,
            "traffic-drop" => InjectKind::TrafficDrop,
            other => return Err(InjectParseError::Kind(other.to_string())),
        };
        let value = match value {
            None => kind.default_value(),
            Some(v) => {
                let x: f64 = v
                    .trim()
                    .parse()
                    .map_err(|_| InjectParseError::Value(v.to_string()))?;
                let ok = match kind {
                    InjectKind::ErrorSpike | InjectKind::TrafficDrop => (0.0..=1.0).contains(&x),
                    InjectKind::LatencySpike => (0.0..=60_000.0).contains(&x),
                };
                if !ok {
                    return Err(InjectParseError::Value(v.to_string()));
                }
                x
            }
        };
        let dur = |t: &str| {
            humantime::parse_duration(t.trim())
                .map_err(|_| InjectParseError::Duration(t.to_string()))
        };
        let len = dur(len)?;
        if len.is_zero() {
            return Err(InjectParseError::Duration(len_str(when)));
        }
        Ok(Inject {
            kind,
            value,
            start: dur(start)?,
            len,
        })
    }
}

fn len_str(when: &str) -> String {
    when.split_once('+')
        .map(|(_, l)| l.to_string())
        .unwrap_or_default()
}

impl Inject {
    fn active_at(&self, t: Duration) -> bool {
        t >= self.start && t < self.start + self.len
    }
}

/// The planned request rate over time.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Mean requests per second.
    pub rps: f64,
    /// Shape.
    pub pattern: Pattern,
    /// Length of one compressed day (diurnal pattern).
    pub day: Duration,
    /// Incidents.
    pub injects: Vec<Inject>,
}

impl Schedule {
    /// Requests per second planned at offset `t`.
    pub fn rate_at(&self, t: Duration) -> f64 {
        let base = match self.pattern {
            Pattern::Flat => self.rps,
            Pattern::Diurnal => {
                let phase = t.as_secs_f64() / self.day.as_secs_f64().max(1e-9);
                self.rps * (1.0 - DIURNAL_AMPLITUDE * (2.0 * std::f64::consts::PI * phase).cos())
            }
        };
        self.injects
            .iter()
            .filter(|i| i.kind == InjectKind::TrafficDrop && i.active_at(t))
            .fold(base, |r, i| r * i.value)
    }

    /// Planned start offsets within `duration` (what the open loop follows), at most `cap`.
    pub fn planned_starts(&self, duration: Duration, cap: usize) -> Vec<Duration> {
        let mut out = Vec::new();
        let mut clock = PlanClock::new(duration);
        while let Some(t) = clock.next(self) {
            if out.len() >= cap {
                break;
            }
            out.push(t);
        }
        out
    }
}

/// Walks the planned start times; seconds are kept in `f64` so that many small steps do not
/// accumulate nanosecond truncation (which would add a request at the very end).
struct PlanClock {
    t: f64,
    end: f64,
}

impl PlanClock {
    fn new(duration: Duration) -> Self {
        PlanClock {
            t: 0.0,
            end: duration.as_secs_f64() - 1e-9,
        }
    }

    /// The next planned start, or `None` past the end.
    fn next(&mut self, schedule: &Schedule) -> Option<Duration> {
        while self.t < self.end {
            let now = Duration::from_secs_f64(self.t);
            let rate = schedule.rate_at(now);
            if rate <= 0.0 || !rate.is_finite() {
                self.t += 0.01;
                continue;
            }
            self.t += 1.0 / rate;
            return Some(now);
        }
        None
    }
}

/// The request mix: out of every 20 requests, 10 `GET /api/products`, 5 `GET /api/users/{id}`,
/// 1 `GET /api/users`, 4 `POST /api/orders`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `GET /api/products`.
    Products,
    /// `GET /api/users/{id}`.
    User,
    /// `GET /api/users`.
    Users,
    /// `POST /api/orders`.
    Order,
}

impl RequestKind {
    /// The kind of the `i`-th request.
    pub fn nth(i: u64) -> Self {
        match i % 20 {
            0..=9 => RequestKind::Products,
            10..=14 => RequestKind::User,
            15 => RequestKind::Users,
            _ => RequestKind::Order,
        }
    }
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Base URL of the frontend, e.g. `http://127.0.0.1:8080`.
    pub target: reqwest::Url,
    /// The rate plan.
    pub schedule: Schedule,
    /// How long to send.
    pub duration: Duration,
    /// Per-request timeout (also the wait for stragglers at the end).
    pub timeout: Duration,
    /// Most requests open at once; further planned starts are dropped and counted.
    pub max_in_flight: usize,
    /// Progress line period.
    pub progress_every: Duration,
    /// Closed loop with this many workers instead of the open-loop schedule.
    pub concurrency: Option<usize>,
}

/// Latency histogram bounds: 1 µs .. 120 s, 3 significant digits.
const HIST_MAX_US: u64 = 120_000_000;

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

#[derive(Debug)]
struct Stats {
    ok: u64,
    errors: u64,
    client_errors: u64,
    hist: Histogram<u64>,
    interval_ok: u64,
    interval_errors: u64,
    interval_hist: Histogram<u64>,
}

impl Stats {
    fn new() -> Self {
        Stats {
            ok: 0,
            errors: 0,
            client_errors: 0,
            hist: new_hist(),
            interval_ok: 0,
            interval_errors: 0,
            interval_hist: new_hist(),
        }
    }

    fn record(&mut self, outcome: Outcome, latency: Duration) {
        let us = (latency.as_micros() as u64).clamp(1, HIST_MAX_US);
        let _ = self.hist.record(us);
        let _ = self.interval_hist.record(us);
        match outcome {
            Outcome::Ok => {
                self.ok += 1;
                self.interval_ok += 1;
            }
            Outcome::ClientError => {
                self.client_errors += 1;
                self.interval_ok += 1;
            }
            Outcome::Error => {
                self.errors += 1;
                self.interval_errors += 1;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    ClientError,
    Error,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Requests started.
    pub sent: u64,
    /// Requests that got a 2xx/3xx.
    pub ok: u64,
    /// 5xx answers, timeouts and transport errors.
    pub errors: u64,
    /// 4xx answers (e.g. out of stock).
    pub client_errors: u64,
    /// Planned starts skipped because `max_in_flight` requests were open.
    pub dropped: u64,
    /// Requests still open at the end (abandoned after the timeout).
    pub abandoned: u64,
    /// Wall time from first planned start to the last answer, seconds.
    pub elapsed_s: f64,
    /// Completed requests per second of `elapsed_s`.
    pub achieved_rps: f64,
    /// `errors / (ok + errors + client_errors)`.
    pub error_ratio: f64,
    /// Latency percentiles, milliseconds (from the planned start in open loop).
    pub latency_ms: Percentiles,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |v: u64| v as f64 / 1000.0;
    if h.is_empty() {
        return Percentiles {
            p50: 0.0,
            p90: 0.0,
            p99: 0.0,
            p999: 0.0,
            max: 0.0,
        };
    }
    Percentiles {
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

impl Summary {
    /// The human-readable summary block.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let completed = self.ok + self.errors + self.client_errors;
        let _ = writeln!(
            s,
            "summary: sent={} completed={} ok={} errors={} ({:.2}%) client_errors={} dropped={} abandoned={} elapsed={:.1}s achieved_rps={:.1}",
            self.sent,
            completed,
            self.ok,
            self.errors,
            self.error_ratio * 100.0,
            self.client_errors,
            self.dropped,
            self.abandoned,
            self.elapsed_s,
            self.achieved_rps
        );
        let p = &self.latency_ms;
        let _ = write!(
            s,
            "latency_ms: p50={:.2} p90={:.2} p99={:.2} p99.9={:.2} max={:.2}",
            p.p50, p.p90, p.p99, p.p999, p.max
        );
        s
    }
}

fn lock(stats: &Mutex<Stats>) -> MutexGuard<'_, Stats> {
    stats.lock().unwrap_or_else(|e| e.into_inner())
}

struct Requester {
    client: reqwest::Client,
    target: reqwest::Url,
}

impl Requester {
    fn url(&self, path: &str) -> String {
        self.target
            .join(path)
            .map_or_else(|_| format!("{}{}", self.target, path), |u| u.to_string())
    }

    async fn send(&self, i: u64) -> Outcome {
        let req = match RequestKind::nth(i) {
            RequestKind::Products => self.client.get(self.url("/api/products")),
            RequestKind::User => self.client.get(self.url(&format!("/api/users/{}", i % 50 + 1))),
            RequestKind::Users => self.client.get(self.url("/api/users")),
            RequestKind::Order => self.client.post(self.url("/api/orders")).json(&serde_json::json!({
                "user_id": i % 50 + 1,
                "items": [{"product_id": i % 20 + 1, "quantity": i % 3 + 1}, {"product_id": (i / 20) % 20 + 1, "quantity": 1}]
            })),
        };
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                // Read the body so the connection is reused and the latency includes it.
                let _ = resp.bytes().await;
                if status.is_server_error() {
                    Outcome::Error
                } else if status.is_client_error() {
                    Outcome::ClientError
                } else {
                    Outcome::Ok
                }
            }
            Err(_) => Outcome::Error,
        }
    }
}

/// A `loadgen` failure.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

async fn put_faults(client: &reqwest::Client, target: &reqwest::Url, inject: &Inject) -> String {
    let secs = inject.len.as_secs().max(1);
    let body = match inject.kind {
        InjectKind::ErrorSpike => {
            serde_json::json!({"error_rate": inject.value, "duration_s": secs})
        }
        InjectKind::LatencySpike => serde_json::json!({
            "latency_ms": inject.value as u64, "latency_jitter_ms": (inject.value / 2.0) as u64, "duration_s": secs
        }),
        InjectKind::TrafficDrop => {
            return format!(
                "traffic-drop to {:.0}% for {:?}",
                inject.value * 100.0,
                inject.len
            )
        }
    };
    let url = target
        .join("/admin/faults")
        .map(|u| u.to_string())
        .unwrap_or_default();
    match client.put(&url).json(&body).send().await {
        Ok(r) if r.status().is_success() => format!("PUT /admin/faults {body}"),
        Ok(r) => format!(
            "PUT /admin/faults {body} FAILED: HTTP {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ),
        Err(e) => format!("PUT /admin/faults {body} FAILED: {e}"),
    }
}

/// Runs the load; progress lines and injection notes go to `log`.
///
/// # Errors
/// [`LoadError`] when the client cannot be built; request failures are counted, not returned.
pub async fn run(
    opts: LoadOptions,
    log: impl Fn(&str) + Send + Sync + 'static,
) -> Result<Summary, LoadError> {
    let client = reqwest::Client::builder()
        .timeout(opts.timeout)
        .pool_max_idle_per_host(opts.max_in_flight.min(1024))
        .build()?;
    let requester = Arc::new(Requester {
        client: client.clone(),
        target: opts.target.clone(),
    });
    let stats = Arc::new(Mutex::new(Stats::new()));
    let log = Arc::new(log);
    let start = Instant::now();
    let end = start + opts.duration;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(opts.max_in_flight.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut sent = 0u64;
    let mut dropped = 0u64;

    // Injections run on their own timers.
    for inj in opts.schedule.injects.clone() {
        let (client, target, log) = (client.clone(), opts.target.clone(), log.clone());
        if inj.start >= opts.duration {
            continue;
        }
        tasks.spawn(async move {
            tokio::time::sleep_until(start + inj.start).await;
            let what = put_faults(&client, &target, &inj).await;
            log(&format!(
                "[{:>6.1}s] inject {:?}: {what}",
                inj.start.as_secs_f64(),
                inj.kind
            ));
        });
    }

    // Progress lines.
    let progress = {
        let (stats, log, every) = (stats.clone(), log.clone(), opts.progress_every);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(start + every, every);
            loop {
                tick.tick().await;
                let line = {
                    let mut s = lock(&stats);
                    let n = s.interval_ok + s.interval_errors;
                    let p = percentiles(&s.interval_hist);
                    let line =
                        format!(
                        "[{:>6.1}s] done={} rps={:.1} errors={} ({:.1}%) p50={:.1}ms p99={:.1}ms",
                        start.elapsed().as_secs_f64(),
                        s.ok + s.errors + s.client_errors,
                        n as f64 / every.as_secs_f64(),
                        s.interval_errors,
                        if n > 0 { s.interval_errors as f64 * 100.0 / n as f64 } else { 0.0 },
                        p.p50,
                        p.p99
                    );
                    s.interval_ok = 0;
                    s.interval_errors = 0;
                    s.interval_hist.reset();
                    line
                };
                log(&line);
            }
        })
    };

    match opts.concurrency {
        Some(workers) => {
            let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let mut workers_set = tokio::task::JoinSet::new();
            for _ in 0..workers.max(1) {
                let (requester, stats, counter) =
                    (requester.clone(), stats.clone(), counter.clone());
                workers_set.spawn(async move {
                    while Instant::now() < end {
                        let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let t0 = Instant::now();
                        let outcome = requester.send(i).await;
                        lock(&stats).record(outcome, t0.elapsed());
                    }
                });
            }
            while workers_set.join_next().await.is_some() {}
            sent = counter.load(std::sync::atomic::Ordering::Relaxed);
        }
        None => {
            let mut clock = PlanClock::new(opts.duration);
            while let Some(t) = clock.next(&opts.schedule) {
                let planned = start + t;
                tokio::time::sleep_until(planned).await;
                match in_flight.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let (requester, stats, i) = (requester.clone(), stats.clone(), sent);
                        tasks.spawn(async move {
                            let outcome = requester.send(i).await;
                            // Latency from the planned start: no coordinated omission.
                            lock(&stats).record(outcome, planned.elapsed());
                            drop(permit);
                        });
                        sent += 1;
                    }
                    Err(_) => dropped += 1,
                }
                // Reap finished tasks now and then so the set stays small.
                while tasks.try_join_next().is_some() {}
            }
        }
    }

    // Stragglers get at most the request timeout (plus a little) to finish.
    let wait = tokio::time::timeout(opts.timeout + Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let abandoned = if wait.is_err() {
        let n = tasks.len() as u64;
        tasks.abort_all();
        n
    } else {
        0
    };
    progress.abort();
    let elapsed = start.elapsed().as_secs_f64();
    let s = lock(&stats);
    let completed = s.ok + s.errors + s.client_errors;
    Ok(Summary {
        sent,
        ok: s.ok,
        errors: s.errors,
        client_errors: s.client_errors,
        dropped,
        abandoned,
        elapsed_s: elapsed,
        achieved_rps: if elapsed > 0.0 {
            completed as f64 / elapsed
        } else {
            0.0
        },
        error_ratio: if completed > 0 {
            s.errors as f64 / completed as f64
        } else {
            0.0
        },
        latency_ms: percentiles(&s.hist),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_injections() {
        let i: Inject = "error-spike@30s+20s".parse().unwrap();
        assert_eq!(
            i,
            Inject {
                kind: InjectKind::ErrorSpike,
                value: 0.5,
                start: Duration::from_secs(30),
                len: Duration::from_secs(20)
            }
        );
        let i: Inject = "latency-spike=800@1m+30s".parse().unwrap();
        assert_eq!(
            (i.kind, i.value, i.start),
            (InjectKind::LatencySpike, 800.0, Duration::from_secs(60))
        );
        let i: Inject = "traffic-drop=0.2@10s+5s".parse().unwrap();
        assert_eq!((i.kind, i.value), (InjectKind::TrafficDrop, 0.2));
        assert_eq!(
            "boom@1s+1s".parse::<Inject>(),
            Err(InjectParseError::Kind("boom".into()))
        );
        assert!(matches!(
            "error-spike@1s".parse::<Inject>(),
            Err(InjectParseError::Shape(_))
        ));
        assert!(matches!(
            "error-spike=2@1s+1s".parse::<Inject>(),
            Err(InjectParseError::Value(_))
        ));
        assert!(matches!(
            "error-spike@soon+1s".parse::<Inject>(),
            Err(InjectParseError::Duration(_))
        ));
        assert!(matches!(
            "error-spike@1s+0s".parse::<Inject>(),
            Err(InjectParseError::Duration(_))
        ));
    }

    #[test]
    fn flat_schedule_is_exact_and_traffic_drop_thins_it() {
        let mut s = Schedule {
            rps: 100.0,
            pattern: Pattern::Flat,
            day: Duration::from_secs(600),
            injects: vec![],
        };
        let n = s.planned_starts(Duration::from_secs(10), usize::MAX).len();
        assert_eq!(n, 1000);
        s.injects.push("traffic-drop=0.1@5s+5s".parse().unwrap());
        let n = s.planned_starts(Duration::from_secs(10), usize::MAX).len();
        assert_eq!(n, 550);
    }

    #[test]
    fn diurnal_schedule_has_trough_and_peak_and_keeps_the_mean() {
        let s = Schedule {
            rps: 100.0,
            pattern: Pattern::Diurnal,
            day: Duration::from_secs(100),
            injects: vec![],
        };
        assert!((s.rate_at(Duration::ZERO) - 40.0).abs() < 1e-9);
        assert!((s.rate_at(Duration::from_secs(50)) - 160.0).abs() < 1e-9);
        let n = s.planned_starts(Duration::from_secs(100), usize::MAX).len() as f64;
        assert!((n - 10_000.0).abs() / 10_000.0 < 0.02, "{n}");
    }

    #[test]
    fn mix_matches_its_documentation() {
        let kinds: Vec<RequestKind> = (0..20).map(RequestKind::nth).collect();
        let count = |k| kinds.iter().filter(|x| **x == k).count();
        assert_eq!(
            (
                count(RequestKind::Products),
                count(RequestKind::User),
                count(RequestKind::Users),
                count(RequestKind::Order)
            ),
            (10, 5, 1, 4)
        );
    }
}
