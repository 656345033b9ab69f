//! Anomaly history: every anomaly episode (its alert, its escalation, its resolution) with
//! labels, scores, observed/expected values and band, in an embedded SQLite database (`rusqlite`
//! with the bundled SQLite, so no system library is needed).
//!
//! Why SQLite: the file format is among the most tested pieces of software there is, a
//! transaction either lands whole or not at all (write-ahead log, `synchronous=FULL`), and the
//! API's filters (range, service, detection, severity, state) and keyset pagination are a
//! `WHERE` clause over two indexes. A file that is damaged anyway (truncated by a full disk or a
//! copy cut short) is detected when it is opened (`PRAGMA quick_check`), moved aside as
//! `FILE.corrupt-<unix time>` with an ERROR log line, and a new store is started: the service
//! never refuses to start or panics because of its history.
//!
//! Retention: episodes that started before `retention` ago are deleted, then the oldest ones
//! while there are more than `max_events` or the file is over `max_bytes` (the file shrinks:
//! `auto_vacuum=INCREMENTAL`). Pruning runs at open, every [`PRUNE_EVERY`] writes and when the
//! service calls [`History::prune`] (every few minutes).
//!
//! Tests: `cargo test -p anomaly-detector history::` (restart, retention by age/count/size,
//! truncated file, filters and pagination).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

use crate::config::HistoryConfig;
use crate::prometheus::Labels;
use crate::state::{service_of, AnomalyRecord};

/// Writes between two automatic prunes.
pub const PRUNE_EVERY: u64 = 256;

/// Most episodes one page returns.
pub const MAX_PAGE: usize = 1000;

/// Errors of the history store.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// SQLite refused an operation (disk full, permissions, ...).
    #[error("anomaly history {path}: {source}")]
    Sqlite {
        /// The database file (`:memory:` for an in-memory store).
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A damaged file could not be moved aside.
    #[error("anomaly history {path} is damaged and cannot be moved aside: {source}")]
    MoveAside {
        /// The database file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A pagination cursor that this store did not produce.
    #[error("invalid cursor {0:?}: pass the next_cursor of a previous answer unchanged")]
    Cursor(String),
}

/// Which episodes [`History::query`] returns.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// Episodes still open at or ending after this (unix seconds).
    pub from: Option<i64>,
    /// Episodes started at or before this (unix seconds).
    pub to: Option<i64>,
    /// Service (`service_name`, `job` or `service` label).
    pub service: Option<String>,
    /// Detection name.
    pub detection: Option<String>,
    /// `warning` or `critical`.
    pub severity: Option<String>,
    /// `firing` or `resolved`.
    pub state: Option<String>,
    /// Continue after this cursor (a previous page's `next_cursor`).
    pub cursor: Option<String>,
    /// Page size (at most [`MAX_PAGE`]).
    pub limit: usize,
}

/// One page of episodes, newest start first.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// The episodes.
    pub items: Vec<AnomalyRecord>,
    /// Cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The store; all methods are blocking (call them from `spawn_blocking` in handlers).
#[derive(Debug)]
pub struct History {
    conn: Mutex<Connection>,
    name: String,
    cfg: HistoryConfig,
    writes: AtomicU64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS episodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    detection TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    service TEXT,
    labels TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    starts_at INTEGER NOT NULL,
    ends_at INTEGER,
    ts INTEGER NOT NULL,
    value REAL,
    expected REAL,
    lower REAL,
    upper REAL,
    score REAL NOT NULL,
    model TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (detection, fingerprint, starts_at)
);
CREATE INDEX IF NOT EXISTS episodes_by_start ON episodes (starts_at, id);
CREATE INDEX IF NOT EXISTS episodes_by_service ON episodes (service, starts_at);
";

impl History {
    /// Opens (or creates) the store of `cfg.path`, in memory when it has none. A damaged file is
    /// moved aside and replaced by an empty store (logged at ERROR); episodes left open by the
    /// previous run are closed as resolved at their last update.
    ///
    /// # Errors
    /// [`HistoryError`] when the file cannot be created or written (permissions, disk full).
    pub fn open(cfg: &HistoryConfig, now: i64) -> Result<Self, HistoryError> {
        let name = cfg
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| ":memory:".to_string());
        let conn = match &cfg.path {
            None => Connection::open_in_memory()
                .and_then(|c| c.execute_batch(SCHEMA).map(|_| c))
                .map_err(|source| HistoryError::Sqlite {
                    path: name.clone(),
                    source,
                })?,
            Some(path) => open_file(path, now)?,
        };
        let h = Self {
            conn: Mutex::new(conn),
            name,
            cfg: cfg.clone(),
            writes: AtomicU64::new(0),
        };
        let closed = h.close_open_episodes()?;
        if closed > 0 {
            tracing::info!(store = %h.name, closed, "anomaly history: episodes open at the last stop are marked resolved at their last update");
        }
        h.prune(now)?;
        Ok(h)
    }

    fn err(&self, source: rusqlite::Error) -> HistoryError {
        HistoryError::Sqlite {
            path: self.name.clone(),
            source,
        }
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<R>,
    ) -> Result<R, HistoryError> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c).map_err(|e| self.err(e))
    }

    /// Inserts an episode or updates it (same detection, fingerprint and start): state,
    /// severity, end, peak point.
    ///
    /// # Errors
    /// [`HistoryError::Sqlite`] when the write fails.
    pub fn upsert(&self, r: &AnomalyRecord, now: i64) -> Result<(), HistoryError> {
        self.upsert_all(std::slice::from_ref(r), now)
    }

    /// [`History::upsert`] of several episodes in one transaction (one disk sync).
    ///
    /// # Errors
    /// [`HistoryError::Sqlite`] when the write fails (nothing is written then).
    pub fn upsert_all(&self, records: &[AnomalyRecord], now: i64) -> Result<(), HistoryError> {
        if records.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO episodes (detection, fingerprint, service, labels, state, severity,
                        starts_at, ends_at, ts, value, expected, lower, upper, score, model, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                     ON CONFLICT (detection, fingerprint, starts_at) DO UPDATE SET
                        state = excluded.state, severity = excluded.severity, ends_at = excluded.ends_at,
                        ts = excluded.ts, value = excluded.value, expected = excluded.expected,
                        lower = excluded.lower, upper = excluded.upper, score = excluded.score,
                        model = excluded.model, labels = excluded.labels, updated_at = excluded.updated_at",
                )?;
                for r in records {
                    let labels = serde_json::to_string(&r.labels).unwrap_or_else(|_| "{}".into());
                    stmt.execute(params![
                        r.detection,
                        r.fingerprint,
                        service_of(&r.labels),
                        labels,
                        r.status,
                        r.severity,
                        r.starts_at,
                        r.ends_at,
                        r.timestamp,
                        finite(r.value),
                        finite(r.expected),
                        finite(r.lower),
                        finite(r.upper),
                        if r.score.is_finite() { r.score } else { 0.0 },
                        r.model,
                        now,
                    ])?;
                }
            }
            tx.commit()
        })?;
        let n = records.len() as u64;
        let before = self.writes.fetch_add(n, Ordering::Relaxed);
        if before / PRUNE_EVERY != (before + n) / PRUNE_EVERY {
            self.prune(now)?;
        }
        Ok(())
    }

    /// Episodes matching `q`, newest start first, one page.
    ///
    /// # Errors
    /// [`HistoryError::Cursor`] for a foreign cursor, [`HistoryError::Sqlite`] on read errors.
    pub fn query(&self, q: &HistoryQuery) -> Result<HistoryPage, HistoryError> {
        let limit = q.limit.clamp(1, MAX_PAGE);
        let cursor = q.cursor.as_deref().map(parse_cursor).transpose()?;
        let (mut sql, mut args) = filter_sql(
            "SELECT detection, fingerprint, labels, state, severity, starts_at, ends_at, ts,
                    value, expected, lower, upper, score, model, id
             FROM episodes WHERE 1 = 1",
            q,
        );
        if let Some((start, id)) = cursor {
            args.push(start.into());
            let a = args.len();
            args.push(id.into());
            sql.push_str(&format!(
                " AND (starts_at < ?{a} OR (starts_at = ?{a} AND id < ?{}))",
                a + 1
            ));
        }
        sql.push_str(&format!(
            " ORDER BY starts_at DESC, id DESC LIMIT {}",
            limit + 1
        ));
        let mut rows: Vec<(AnomalyRecord, i64)> = self.with(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let it = stmt.query_map(rusqlite::params_from_iter(args.iter()), row_to_record)?;
            it.collect()
        })?;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|(r, id)| format!("{}.{}", r.starts_at, id))
        } else {
            None
        };
        Ok(HistoryPage {
            items: rows.into_iter().map(|(r, _)| r).collect(),
            next_cursor,
        })
    }

    /// Number of episodes matching `q` (cursor and limit ignored).
    ///
    /// # Errors
    /// [`HistoryError::Sqlite`] on read errors.
    pub fn count(&self, q: &HistoryQuery) -> Result<u64, HistoryError> {
        let (sql, args) = filter_sql("SELECT COUNT(*) FROM episodes WHERE 1 = 1", q);
        self.with(|c| {
            c.query_row(&sql, rusqlite::params_from_iter(args.iter()), |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
        })
    }

    /// Number of episodes stored.
    ///
    /// # Errors
    /// [`HistoryError::Sqlite`] on read errors.
    pub fn len(&self) -> Result<u64, HistoryError> {
        self.with(|c| int(c, "SELECT COUNT(*) FROM episodes"))
    }

    /// Whether the store holds no episode.
    ///
    /// # Errors
    /// [`HistoryError::Sqlite`] on read errors.
    pub fn is_empty(&self) -> Result<bool, HistoryError> {
        Ok(self.len()? == 0)
    }

    /// Size of the database in bytes (pages in use, including free pages not yet returned).
    ///
    /// # Errors
    /// [`HistoryError::Sqlite`] on read errors.
    pub fn size_bytes(&self) -> Result<u64, HistoryError> {
        self.with(size_of)
    }

    /// Applies the retention: age, then count, then size. Returns the episodes deleted.
    ///
    /// # Errors
    /// [`HistoryError::Sqlite`] when a delete fails.
    pub fn prune(&self, now: i64) -> Result<u64, HistoryError> {
        let cutoff = now - self.cfg.retention.as_secs() as i64;
        let (max_events, max_bytes) = (self.cfg.max_events, self.cfg.max_bytes);
        let deleted = self.with(|c| {
            let mut deleted =
                c.execute("DELETE FROM episodes WHERE starts_at < ?1", [cutoff])? as u64;
            let n = int(c, "SELECT COUNT(*) FROM episodes")?;
            if n > max_events {
                deleted += delete_oldest(c, n - max_events)?;
            }
            c.execute_batch("PRAGMA incremental_vacuum")?;
            // Size: drop the oldest tenth until under the limit (bounded number of rounds).
            for _ in 0..20 {
                if size_of(c)? <= max_bytes {
                    break;
                }
                let n = int(c, "SELECT COUNT(*) FROM episodes")?;
                if n == 0 {
                    break;
                }
                deleted += delete_oldest(c, (n / 10).max(1))?;
                c.execute_batch("PRAGMA incremental_vacuum")?;
            }
            Ok(deleted)
        })?;
        if deleted > 0 {
            tracing::debug!(store = %self.name, deleted, "anomaly history pruned");
        }
        Ok(deleted)
    }

    fn close_open_episodes(&self) -> Result<usize, HistoryError> {
        self.with(|c| {
            c.execute(
                "UPDATE episodes SET state = 'resolved', ends_at = updated_at WHERE state = 'firing'",
                [],
            )
        })
    }
}

/// `base` with the `AND ...` clauses of `q`'s filters, and their arguments.
fn filter_sql(base: &str, q: &HistoryQuery) -> (String, Vec<rusqlite::types::Value>) {
    let mut sql = base.to_string();
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut push = |clause: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(from) = q.from {
        push(" AND (ends_at IS NULL OR ends_at >= ?)", from.into());
    }
    if let Some(to) = q.to {
        push(" AND starts_at <= ?", to.into());
    }
    for (col, v) in [
        ("service", &q.service),
        ("detection", &q.detection),
        ("severity", &q.severity),
        ("state", &q.state),
    ] {
        if let Some(v) = v {
            push(&format!(" AND {col} = ?"), v.clone().into());
        }
    }
    (sql, args)
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn size_of(c: &mut Connection) -> rusqlite::Result<u64> {
    let pages = int(c, "PRAGMA page_count")?;
    let free = int(c, "PRAGMA freelist_count")?;
    let size = int(c, "PRAGMA page_size")?;
    Ok(pages.saturating_sub(free) * size)
}

fn delete_oldest(c: &mut Connection, n: u64) -> rusqlite::Result<u64> {
    Ok(c.execute(
        "DELETE FROM episodes WHERE id IN (SELECT id FROM episodes ORDER BY starts_at, id LIMIT ?1)",
        [n as i64],
    )? as u64)
}

/// A single non-negative integer answer.
fn int(c: &Connection, sql: &str) -> rusqlite::Result<u64> {
    c.query_row(sql, [], |r| r.get::<_, i64>(0))
        .map(|n| n.max(0) as u64)
}

fn parse_cursor(s: &str) -> Result<(i64, i64), HistoryError> {
    let bad = || HistoryError::Cursor(s.to_string());
    let (a, b) = s.split_once('.').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}

/// Maps a stored string onto the `'static` values [`AnomalyRecord`] uses.
fn intern(v: &str, known: &[&'static str], other: &'static str) -> &'static str {
    known.iter().copied().find(|k| *k == v).unwrap_or(other)
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<(AnomalyRecord, i64)> {
    let labels: String = row.get(2)?;
    let state: String = row.get(3)?;
    let severity: String = row.get(4)?;
    let model: String = row.get(13)?;
    let num = |i: usize| -> rusqlite::Result<f64> {
        Ok(row.get::<_, Option<f64>>(i)?.unwrap_or(f64::NAN))
    };
    Ok((
        AnomalyRecord {
            detection: row.get(0)?,
            fingerprint: row.get(1)?,
            labels: serde_json::from_str::<Labels>(&labels).unwrap_or_default(),
            status: intern(&state, &["firing", "resolved"], "resolved"),
            severity: intern(&severity, &["warning", "critical"], "warning"),
            starts_at: row.get(5)?,
            ends_at: row.get(6)?,
            timestamp: row.get(7)?,
            value: num(8)?,
            expected: num(9)?,
            lower: num(10)?,
            upper: num(11)?,
            score: row.get(12)?,
            model: intern(
                &model,
                &["warming_up", "robust_mad", "holt", "holt_winters"],
                "warming_up",
            ),
        },
        row.get(14)?,
    ))
}

/// Whether `e` means the file is not a usable database (as opposed to, say, permissions).
fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

fn open_file(path: &Path, now: i64) -> Result<Connection, HistoryError> {
    let sql_err = |source| HistoryError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    match try_open(path) {
        Ok(c) => Ok(c),
        Err(e)
            if is_damage(&e)
                || matches!(&e, rusqlite::Error::SqliteFailure(_, Some(m)) if m.starts_with("quick_check")) =>
        {
            let aside = PathBuf::from(format!("{}.corrupt-{now}", path.display()));
            tracing::error!(store = %path.display(), error = %e, moved_to = %aside.display(), "anomaly history file is damaged; moved aside, starting an empty history");
            std::fs::rename(path, &aside).map_err(|source| HistoryError::MoveAside {
                path: path.display().to_string(),
                source,
            })?;
            for ext in ["-wal", "-shm"] {
                let side = PathBuf::from(format!("{}{ext}", path.display()));
                if side.exists() {
                    let _ = std::fs::rename(&side, format!("{}{ext}", aside.display()));
                }
            }
            try_open(path).map_err(sql_err)
        }
        Err(e) => Err(sql_err(e)),
    }
}

fn try_open(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    // auto_vacuum must be set before the first table exists; harmless afterwards.
    c.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
    let _mode: String = c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    c.execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")?;
    let check: Option<String> = c
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .optional()?;
    if check.as_deref() != Some("ok") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some(format!("quick_check: {}", check.unwrap_or_default())),
        ));
    }
    c.execute_batch(SCHEMA)?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record(job: &str, start: i64, end: Option<i64>, severity: &'static str) -> AnomalyRecord {
        AnomalyRecord {
            detection: "latency".into(),
            labels: [("job".to_string(), job.to_string())].into_iter().collect(),
            fingerprint: format!("fp-{job}"),
            status: if end.is_some() { "resolved" } else { "firing" },
            severity,
            starts_at: start,
            ends_at: end,
            timestamp: start + 5,
            value: 3.0,
            expected: 1.0,
            lower: 0.5,
            upper: 1.5,
            score: 0.97,
            model: "holt_winters",
        }
    }

    fn cfg(path: Option<PathBuf>) -> HistoryConfig {
        HistoryConfig {
            path,
            ..HistoryConfig::default()
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ad-history-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn all(h: &History) -> Vec<AnomalyRecord> {
        h.query(&HistoryQuery {
            limit: MAX_PAGE,
            ..Default::default()
        })
        .unwrap()
        .items
    }

    #[test]
    fn restart_keeps_history_and_closes_open_episodes() {
        let d = dir("restart");
        let path = d.join("a.db");
        {
            let h = History::open(&cfg(Some(path.clone())), 1_000).unwrap();
            h.upsert(&record("a", 100, None, "warning"), 110).unwrap();
            // Escalation and resolution update the same episode.
            h.upsert(&record("a", 100, None, "critical"), 120).unwrap();
            h.upsert(&record("a", 100, Some(200), "critical"), 200)
                .unwrap();
            h.upsert(&record("b", 300, None, "warning"), 310).unwrap();
        }
        let h = History::open(&cfg(Some(path)), 1_000).unwrap();
        let items = all(&h);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].labels["job"], "b");
        assert_eq!(items[0].status, "resolved", "open at stop: closed");
        assert_eq!(items[0].ends_at, Some(310));
        let a = &items[1];
        assert_eq!(
            (a.status, a.severity, a.ends_at),
            ("resolved", "critical", Some(200))
        );
        assert_eq!(
            (a.value, a.expected, a.lower, a.upper),
            (3.0, 1.0, 0.5, 1.5)
        );
        assert_eq!(a.model, "holt_winters");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn batch_writes_in_one_transaction() {
        let h = History::open(&cfg(None), 0).unwrap();
        let batch: Vec<AnomalyRecord> = (0..50)
            .map(|i| record(&format!("s{i}"), i, None, "warning"))
            .collect();
        h.upsert_all(&batch, 1).unwrap();
        assert_eq!(h.len().unwrap(), 50);
        h.upsert_all(&batch[..10], 2).unwrap();
        assert_eq!(h.len().unwrap(), 50, "same episodes updated, not added");
    }

    #[test]
    fn filters_and_cursor_pagination() {
        let h = History::open(&cfg(None), 0).unwrap();
        for i in 0..25 {
            let job = if i % 2 == 0 { "even" } else { "odd" };
            let sev = if i % 5 == 0 { "critical" } else { "warning" };
            h.upsert(&record(job, 1_000 + i * 10, Some(1_005 + i * 10), sev), 0)
                .unwrap();
        }
        let q = |f: &dyn Fn(&mut HistoryQuery)| {
            let mut q = HistoryQuery {
                limit: 100,
                ..Default::default()
            };
            f(&mut q);
            h.query(&q).unwrap()
        };
        assert_eq!(q(&|q| q.service = Some("even".into())).items.len(), 13);
        assert_eq!(
            h.count(&HistoryQuery {
                service: Some("even".into()),
                ..Default::default()
            })
            .unwrap(),
            13
        );
        assert_eq!(q(&|q| q.severity = Some("critical".into())).items.len(), 5);
        assert_eq!(q(&|q| q.state = Some("firing".into())).items.len(), 0);
        // [1100, 1150]: episodes starting 1100..=1150 plus the one ending at 1095? no: ends < from.
        let r = q(&|q| {
            q.from = Some(1_100);
            q.to = Some(1_150);
        });
        let starts: Vec<i64> = r.items.iter().map(|r| r.starts_at).collect();
        assert_eq!(starts, vec![1150, 1140, 1130, 1120, 1110, 1100]);
        // Pages of 10 cover everything once, newest first.
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = h
                .query(&HistoryQuery {
                    limit: 10,
                    cursor: cursor.clone(),
                    ..Default::default()
                })
                .unwrap();
            seen.extend(page.items.iter().map(|r| r.starts_at));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen.len(), 25);
        assert!(seen.windows(2).all(|w| w[0] > w[1]));
        let err = h
            .query(&HistoryQuery {
                cursor: Some("nope".into()),
                limit: 1,
                ..Default::default()
            })
            .unwrap_err();
        assert!(matches!(err, HistoryError::Cursor(_)));
    }

    #[test]
    fn retention_by_age_count_and_size() {
        let mut c = cfg(None);
        c.retention = Duration::from_secs(1_000);
        c.max_events = 10;
        let h = History::open(&c, 0).unwrap();
        for i in 0..30 {
            h.upsert(
                &record(&format!("s{i}"), i * 100, Some(i * 100 + 1), "warning"),
                0,
            )
            .unwrap();
        }
        // now = 3000: starts before 2000 go (0..=1900: 20 of them), then count keeps 10.
        let deleted = h.prune(3_000).unwrap();
        assert_eq!(deleted, 20);
        assert_eq!(h.len().unwrap(), 10);
        for i in 30..45 {
            h.upsert(&record(&format!("s{i}"), i * 100, None, "warning"), 0)
                .unwrap();
        }
        h.prune(3_000).unwrap();
        let items = all(&h);
        assert_eq!(items.len(), 10);
        assert_eq!(items.last().unwrap().starts_at, 3_500, "oldest went first");

        // Size: a store over max_bytes shrinks below it.
        let d = dir("size");
        let mut c = cfg(Some(d.join("s.db")));
        c.max_bytes = 64 * 1024;
        let h = History::open(&c, 0).unwrap();
        for i in 0..2_000 {
            let mut r = record(&format!("service-with-a-long-name-{i}"), i, None, "warning");
            r.labels
                .insert("http_route".into(), format!("/api/some/long/route/{i}"));
            h.upsert(&r, 0).unwrap();
        }
        h.prune(0).unwrap();
        assert!(
            h.size_bytes().unwrap() <= 64 * 1024,
            "{}",
            h.size_bytes().unwrap()
        );
        assert!(h.len().unwrap() > 0);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn truncated_file_is_moved_aside_without_panic() {
        let d = dir("truncated");
        let path = d.join("t.db");
        {
            let h = History::open(&cfg(Some(path.clone())), 0).unwrap();
            for i in 0..500 {
                h.upsert(&record(&format!("s{i}"), i, Some(i + 1), "warning"), 0)
                    .unwrap();
            }
            // Checkpoint so the data lives in the main file, then cut that file in the middle.
            h.with(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)"))
                .unwrap();
        }
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len > 8192, "{len}");
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len / 2 + 100).unwrap();
        drop(f);
        let h = History::open(&cfg(Some(path.clone())), 42).unwrap();
        assert_eq!(h.len().unwrap(), 0, "a new, empty store");
        h.upsert(&record("after", 1, None, "warning"), 1).unwrap();
        assert_eq!(h.len().unwrap(), 1);
        assert!(
            PathBuf::from(format!("{}.corrupt-42", path.display())).exists(),
            "damaged file kept for inspection"
        );
        // Garbage instead of a database: the same.
        std::fs::write(
            d.join("g.db"),
            b"this is not a database at all, just some text",
        )
        .unwrap();
        let h = History::open(&cfg(Some(d.join("g.db"))), 7).unwrap();
        assert_eq!(h.len().unwrap(), 0);
        let _ = std::fs::remove_dir_all(&d);
    }
}
