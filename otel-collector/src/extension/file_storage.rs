//! Extension `file_storage`: where exporters that name it in `sending_queue.storage` keep their
//! persistent queue (one sub-directory `exporter_<id>` per exporter, see [`crate::exporter::wal`]).
//!
//! Keys follow the upstream extension: `directory`, `create_directory`, `fsync`, `timeout`, and
//! the `compaction` block. Our store is a set of append-only segments deleted as they drain, so
//! space is reclaimed continuously without a compaction pass: the `compaction` keys are accepted
//! so upstream configs load unchanged, and only `compaction.on_start` acts (logged reclamation of
//! drained segments at start, which we always do). `segment_size_kib` is ours.
//!
//! Tests: `cargo test -p otel-collector extension::file_storage`, `tests/durability_*.rs`.

use crate::config::{duration, ComponentConfigError};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `extensions.file_storage[/name]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileStorageConfig {
    /// Base directory (upstream default `/var/lib/otelcol/file_storage`).
    pub directory: PathBuf,
    /// Create `directory` (and parents) when missing; otherwise a missing one fails start.
    pub create_directory: bool,
    /// `fsync` every record before the exporter accepts a batch (durable across power loss;
    /// without it, across process crashes only).
    pub fsync: bool,
    /// Accepted for upstream compatibility (lock timeout of its database); unused.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Upstream's compaction settings (see the module docs).
    pub compaction: CompactionConfig,
    /// Size at which a new segment file is started (KiB, default 8192).
    pub segment_size_kib: u64,
}

/// `compaction` block, in upstream's shape.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Reclaim drained segments at start (always done; logged when set).
    pub on_start: bool,
    /// Upstream: compact while running. Drained segments are always deleted at once here.
    pub on_rebound: bool,
    /// Upstream: scratch directory for compaction; unused (no copy is made).
    pub directory: Option<PathBuf>,
    /// Upstream: records per compaction transaction; unused.
    pub max_transaction_size: u64,
    /// Upstream: rebound thresholds; unused.
    pub rebound_needed_threshold_mib: u64,
    /// Upstream: rebound thresholds; unused.
    pub rebound_trigger_threshold_mib: u64,
    /// Upstream: how often to check for rebound; unused.
    #[serde(with = "duration")]
    pub check_interval: Duration,
    /// Upstream: remove temporary compaction files at start; unused.
    pub cleanup_on_start: bool,
}

impl Default for FileStorageConfig {
    fn default() -> Self {
        FileStorageConfig {
            directory: PathBuf::from("/var/lib/otelcol/file_storage"),
            create_directory: false,
            fsync: false,
            timeout: Duration::from_secs(1),
            compaction: CompactionConfig::default(),
            segment_size_kib: 8192,
        }
    }
}

impl FileStorageConfig {
    /// Checks values serde cannot.
    ///
    /// # Errors
    /// An empty directory or a zero segment size, naming the key.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        if self.directory.as_os_str().is_empty() {
            return Err(ComponentConfigError::new(
                "directory",
                "must name a directory for the persistent queues",
            ));
        }
        if self.segment_size_kib == 0 {
            return Err(ComponentConfigError::new(
                "segment_size_kib",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The queue directory of exporter `id` (`/` and other unsafe characters become `_`).
    pub fn queue_dir(&self, id: &str) -> PathBuf {
        let safe: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.directory.join(format!("exporter_{safe}"))
    }

    /// Checks that `directory` exists, creating it when `create_directory` is set.
    ///
    /// # Errors
    /// The directory is missing (and may not be created) or cannot be created.
    pub fn prepare(&self) -> Result<(), String> {
        let dir: &Path = &self.directory;
        if dir.is_dir() {
            return Ok(());
        }
        if !self.create_directory {
            return Err(format!(
                "directory {} does not exist; create it or set create_directory: true",
                dir.display()
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_shape_parses_and_queue_dirs_are_safe() {
        let c: FileStorageConfig = serde_yaml::from_str(
            "directory: /tmp/q\nfsync: true\ntimeout: 2s\ncompaction: {on_start: true, on_rebound: true, directory: /tmp, max_transaction_size: 65536, check_interval: 5s}",
        )
        .unwrap();
        assert!(c.fsync && c.compaction.on_start);
        c.validate().unwrap();
        assert_eq!(
            c.queue_dir("otlp/tempo"),
            PathBuf::from("/tmp/q/exporter_otlp_tempo")
        );
        let e = serde_yaml::from_str::<FileStorageConfig>("directry: x").unwrap_err();
        assert!(e.to_string().contains("directry"), "{e}");
    }

    #[test]
    fn missing_directory_is_an_error_unless_created() {
        let d = test_support::tempdir::TempDir::new("fs-prepare");
        let mut c = FileStorageConfig {
            directory: d.path().join("a/b"),
            ..FileStorageConfig::default()
        };
        assert!(c.prepare().unwrap_err().contains("create_directory"));
        c.create_directory = true;
        c.prepare().unwrap();
        assert!(d.path().join("a/b").is_dir());
    }
}
