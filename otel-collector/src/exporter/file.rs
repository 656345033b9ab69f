//! The `file` exporter: writes every batch to a file, one OTLP export request per line.
//!
//! `format: json` (default) writes the upstream file exporter's format: each batch as one
//! `ExportTraceServiceRequest` / `ExportMetricsServiceRequest` / `ExportLogsServiceRequest` in the
//! OTLP JSON mapping, followed by a newline. `format: proto` writes each request as protobuf
//! prefixed by its length (4 bytes, big endian). A dedicated writer thread owns the file, so the
//! async runtime never blocks on disk; batches reach it through a bounded channel (full →
//! refused). Output is buffered and flushed every `flush_interval` and at shutdown.
//!
//! `rotation` (optional) starts a new file when the current one would exceed `max_megabytes`;
//! the old one is renamed `<stem>-<UTC time>.<ext>` beside it and only the newest `max_backups`
//! are kept.
//!
//! Tests: `cargo test -p otel-collector exporter::file` and `tests/export_file.rs`.

use super::queue::ExporterMetrics;
use crate::config::ComponentConfigError;
use crate::pipeline::{
    contain, ConsumeError, ConsumeFuture, Consumer, Shutdown, ShutdownFuture, Signal, Telemetry,
};
use serde::Deserialize;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

/// Output format of the file exporter.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// OTLP JSON, one request per line.
    #[default]
    Json,
    /// Length-prefixed protobuf.
    Proto,
}

/// The `rotation` block.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RotationConfig {
    /// Size at which the file is rotated (default 100).
    pub max_megabytes: u64,
    /// Rotated files kept, newest first; 0 keeps all (default 100).
    pub max_backups: usize,
    /// Accepted for upstream compatibility; age-based removal is not implemented (must be 0).
    pub max_days: u64,
    /// Name backups in local time instead of UTC; accepted, only UTC is implemented (must be false).
    pub localtime: bool,
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            max_megabytes: 100,
            max_backups: 100,
            max_days: 0,
            localtime: false,
        }
    }
}

/// Configuration of a `file` exporter.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileExporterConfig {
    /// File to write (created with its parent directories).
    pub path: PathBuf,
    /// `json` (default) or `proto`.
    #[serde(default)]
    pub format: FileFormat,
    /// Size-based rotation; none when absent.
    #[serde(default)]
    pub rotation: Option<RotationConfig>,
    /// How often buffered output is flushed (default 1s).
    #[serde(default = "default_flush", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Append to an existing file instead of truncating it (default false, as upstream).
    #[serde(default)]
    pub append: bool,
    /// Batches buffered for the writer before new ones are refused (default 1000).
    #[serde(default = "default_queue")]
    pub queue_size: usize,
}

fn default_flush() -> Duration {
    Duration::from_secs(1)
}
fn default_queue() -> usize {
    1000
}

impl FileExporterConfig {
    /// Checks what serde cannot, naming the key.
    ///
    /// # Errors
    /// The key path and the fix.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ComponentConfigError::new(
                "path",
                "must name the output file (for example ./traces.jsonl)",
            ));
        }
        if self.flush_interval.is_zero() {
            return Err(ComponentConfigError::new(
                "flush_interval",
                "must be greater than 0 (for example 1s)",
            ));
        }
        if self.queue_size == 0 {
            return Err(ComponentConfigError::new(
                "queue_size",
                "must be at least 1 (for example 1000)",
            ));
        }
        if let Some(r) = &self.rotation {
            if r.max_megabytes == 0 {
                return Err(ComponentConfigError::new(
                    "rotation.max_megabytes",
                    "must be at least 1",
                ));
            }
            if r.max_days != 0 {
                return Err(ComponentConfigError::new(
                    "rotation.max_days",
                    "age-based removal is not supported; remove the key and use max_backups",
                ));
            }
            if r.localtime {
                return Err(ComponentConfigError::new(
                    "rotation.localtime",
                    "only UTC backup names are supported; remove the key",
                ));
            }
        }
        Ok(())
    }
}

enum Msg {
    Data(Telemetry),
    Stop(tokio::sync::oneshot::Sender<()>),
}

/// A running `file` exporter.
#[derive(Debug)]
pub struct FileExporter {
    id: String,
    tx: SyncSender<Msg>,
    closing: AtomicBool,
    metrics: ExporterMetrics,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl FileExporter {
    /// Opens the file and starts the writer thread.
    ///
    /// # Errors
    /// The file (or its directory) cannot be created.
    pub fn start(
        id: &str,
        cfg: &FileExporterConfig,
        metrics: ExporterMetrics,
    ) -> std::io::Result<Self> {
        let writer = Writer::open(cfg)?;
        let (tx, rx) = mpsc::sync_channel::<Msg>(cfg.queue_size);
        metrics.queue_capacity.set(cfg.queue_size as i64);
        let flush = cfg.flush_interval;
        let (thread_metrics, thread_id) = (metrics.clone(), id.to_string());
        std::thread::Builder::new()
            .name(format!("file-exporter-{id}"))
            .spawn(move || writer.run(rx, flush, &thread_metrics, &thread_id))?;
        Ok(FileExporter {
            id: id.to_string(),
            tx,
            closing: AtomicBool::new(false),
            metrics,
        })
    }
}

impl Consumer for FileExporter {
    fn consume(&self, data: Telemetry) -> ConsumeFuture<'_> {
        Box::pin(async move {
            let (signal, n) = (data.signal(), data.item_count() as u64);
            let refuse = |why: &str| {
                self.metrics.enqueue_failed(signal, n);
                Err(ConsumeError::Refused {
                    reason: format!("file exporter {}: {why}", self.id),
                    retry_after: Duration::from_secs(1),
                })
            };
            if self.closing.load(Ordering::Acquire) {
                return refuse("shutting down");
            }
            match self.tx.try_send(Msg::Data(data)) {
                Ok(()) => {
                    self.metrics.queue_size.add(1);
                    Ok(())
                }
                Err(TrySendError::Full(_)) => refuse("writer queue is full"),
                Err(TrySendError::Disconnected(_)) => refuse("writer stopped"),
            }
        })
    }
}

impl Shutdown for FileExporter {
    fn shutdown(&self, deadline: tokio::time::Instant) -> ShutdownFuture<'_> {
        Box::pin(async move {
            self.closing.store(true, Ordering::Release);
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let tx = self.tx.clone();
            // The channel may be full: hand the blocking send to a blocking thread.
            let send = tokio::task::spawn_blocking(move || tx.send(Msg::Stop(done_tx)).is_ok());
            let wait = async {
                if send.await.unwrap_or(false) {
                    let _ = done_rx.await;
                }
            };
            if tokio::time::timeout_at(deadline, wait).await.is_err() {
                tracing::warn!(exporter = %self.id, "file exporter did not finish writing by the shutdown deadline");
            }
        })
    }
}

/// The writer thread's state: the open file, its size, rotation settings.
struct Writer {
    path: PathBuf,
    format: FileFormat,
    rotation: Option<RotationConfig>,
    out: BufWriter<File>,
    size: u64,
    line: Vec<u8>,
}

fn open_file(path: &Path, append: bool) -> std::io::Result<(File, u64)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let f = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)?;
    let size = f.metadata()?.len();
    Ok((f, size))
}

impl Writer {
    fn open(cfg: &FileExporterConfig) -> std::io::Result<Self> {
        let (f, size) = open_file(&cfg.path, cfg.append)?;
        Ok(Writer {
            path: cfg.path.clone(),
            format: cfg.format,
            rotation: cfg.rotation.clone(),
            out: BufWriter::with_capacity(256 * 1024, f),
            size,
            line: Vec::with_capacity(64 * 1024),
        })
    }

    fn run(
        mut self,
        rx: mpsc::Receiver<Msg>,
        flush_every: Duration,
        metrics: &ExporterMetrics,
        id: &str,
    ) {
        let mut dirty = false;
        let mut failed_once = false;
        loop {
            match rx.recv_timeout(flush_every) {
                Ok(Msg::Data(data)) => {
                    metrics.queue_size.add(-1);
                    let (signal, n) = (data.signal(), data.item_count() as u64);
                    let written = contain::catch_sync("exporter", id, || self.write(&data))
                        .unwrap_or_else(|p| Err(std::io::Error::other(p.message)));
                    match written {
                        Ok(()) => {
                            metrics.sent(signal, n);
                            dirty = true;
                        }
                        Err(e) => {
                            metrics.send_failed(signal, n);
                            if !failed_once {
                                tracing::error!(exporter = %id, path = %self.path.display(), error = %e, "cannot write; dropping batches (counted in otelcol_exporter_send_failed_*)");
                                failed_once = true;
                            }
                        }
                    }
                }
                Ok(Msg::Stop(done)) => {
                    // Everything sent before Stop has been written (FIFO).
                    if let Err(e) = self.out.flush() {
                        tracing::error!(exporter = %id, error = %e, "flush at shutdown failed");
                    }
                    let _ = done.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if dirty {
                        if let Err(e) = self.out.flush() {
                            tracing::error!(exporter = %id, error = %e, "flush failed");
                        }
                        dirty = false;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.out.flush();
                    return;
                }
            }
        }
    }

    fn write(&mut self, data: &Telemetry) -> std::io::Result<()> {
        self.line.clear();
        match self.format {
            FileFormat::Json => {
                let r = match data {
                    Telemetry::Traces(r) => serde_json::to_writer(&mut self.line, r),
                    Telemetry::Metrics(r) => serde_json::to_writer(&mut self.line, r),
                    Telemetry::Logs(r) => serde_json::to_writer(&mut self.line, r),
                };
                r.map_err(std::io::Error::other)?;
                self.line.push(b'\n');
            }
            FileFormat::Proto => {
                let body = super::otlp::encode_proto(data);
                let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
                self.line.extend_from_slice(&len.to_be_bytes());
                self.line.extend_from_slice(&body);
            }
        }
        if let Some(rot) = &self.rotation {
            let max = rot.max_megabytes * 1024 * 1024;
            if self.size > 0 && self.size + self.line.len() as u64 > max {
                self.rotate()?;
            }
        }
        self.out.write_all(&self.line)?;
        self.size += self.line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let backup = backup_name(&self.path, SystemTime::now());
        std::fs::rename(&self.path, &backup)?;
        let (f, size) = open_file(&self.path, false)?;
        self.out = BufWriter::with_capacity(256 * 1024, f);
        self.size = size;
        if let Some(keep) = self.rotation.as_ref().map(|r| r.max_backups) {
            if keep > 0 {
                prune_backups(&self.path, keep)?;
            }
        }
        Ok(())
    }
}

fn stem_ext(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (stem, ext)
}

/// `<dir>/<stem>-YYYY-MM-DDTHH-MM-SS.mmm<ext>` (UTC), unique within the directory.
fn backup_name(path: &Path, now: SystemTime) -> PathBuf {
    let (stem, ext) = stem_ext(path);
    let dir = path.parent().unwrap_or(Path::new(""));
    let t = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let stamp = utc_stamp(t);
    let mut candidate = dir.join(format!("{stem}-{stamp}{ext}"));
    let mut n = 1;
    while candidate.exists() {
        candidate = dir.join(format!("{stem}-{stamp}-{n}{ext}"));
        n += 1;
    }
    candidate
}

/// Splits seconds since the epoch into UTC (year, month, day, hour, minute, second).
fn civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Formats a time since the epoch as `YYYY-MM-DDTHH-MM-SS.mmm` (sortable, file-name safe).
fn utc_stamp(t: Duration) -> String {
    let (y, m, d, hh, mm, ss) = civil(t.as_secs());
    format!(
        "{y:04}-{m:02}-{d:02}T{hh:02}-{mm:02}-{ss:02}.{:03}",
        t.subsec_millis()
    )
}

/// Formats `t` as RFC 3339 in UTC with milliseconds (`2026-11-24T05:00:00.123Z`).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let t = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let (y, m, d, hh, mm, ss) = civil(t.as_secs());
    format!(
        "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:03}Z",
        t.subsec_millis()
    )
}

/// Deletes the oldest backups of `path` beyond `keep`.
fn prune_backups(path: &Path, keep: usize) -> std::io::Result<()> {
    let (stem, ext) = stem_ext(path);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = format!("{stem}-");
    let mut backups: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().map(|n| n.to_string_lossy()).is_some_and(|n| {
                n.starts_with(&prefix) && n.ends_with(&ext) && n.len() > prefix.len() + ext.len()
            })
        })
        .collect();
    if backups.len() <= keep {
        return Ok(());
    }
    backups.sort();
    let excess = backups.len() - keep;
    for old in &backups[..excess] {
        std::fs::remove_file(old)?;
    }
    Ok(())
}

/// Reads a JSON-lines file written by this exporter back into batches (tests, tools).
///
/// # Errors
/// I/O errors, or a line that is not an export request of `signal`.
pub fn read_json_lines(path: &Path, signal: Signal) -> std::io::Result<Vec<Telemetry>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let t = match signal {
                Signal::Traces => serde_json::from_str(l).map(Telemetry::Traces),
                Signal::Metrics => serde_json::from_str(l).map(Telemetry::Metrics),
                Signal::Logs => serde_json::from_str(l).map(Telemetry::Logs),
            };
            t.map_err(std::io::Error::other)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamp_formats_known_instants() {
        assert_eq!(utc_stamp(Duration::ZERO), "1970-01-01T00-00-00.000");
        assert_eq!(
            utc_stamp(Duration::from_millis(784_111_777_123)),
            "1994-11-06T08-49-37.123"
        );
        assert_eq!(
            utc_stamp(Duration::from_secs(1_709_251_199)),
            "2024-02-29T23-59-59.000"
        );
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(784_111_777_123)),
            "1994-11-06T08:49:37.123Z"
        );
    }

    #[test]
    fn rotation_keys_are_checked() {
        let c: FileExporterConfig =
            serde_yaml::from_str("path: x.jsonl\nrotation: {max_days: 3}").unwrap();
        assert_eq!(c.validate().unwrap_err().path, "rotation.max_days");
        let c: FileExporterConfig = serde_yaml::from_str("path: x.jsonl").unwrap();
        c.validate().unwrap();
        assert_eq!(c.flush_interval, Duration::from_secs(1));
    }
}
