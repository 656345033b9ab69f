//! The on-disk write-ahead queue behind `sending_queue.storage` (one directory per exporter).
//!
//! Layout: segment files `<n:020>.seg` written append-only, a new one when the current one
//! passes `segment_size`; each record is
//! `magic u32 | len u32 | crc32 u32 | seq u64 | signal u8 | payload (len - 1 bytes)`, little
//! endian, the CRC-32 covering `seq`, `signal` and the payload. A file `ack` holds the low
//! watermark (every record below it was delivered or given up on) with its own CRC; it is
//! replaced by rename, so a crash leaves the old or the new one.
//!
//! Guarantees: [`Wal::append`] returns once the record is written (and `fsync`ed when
//! configured); a record is removed only by [`Wal::ack`]. On open, every segment is scanned
//! with [`scan_segment`]: a torn tail or a corrupt record (bad magic, impossible length, CRC
//! mismatch) is counted and skipped, and the scan resynchronises on the next valid record, so a
//! damaged directory never stops the collector. Records at or above the watermark are queued
//! again (at-least-once: records delivered after the last watermark write are sent again).
//! Segments are deleted as soon as every record in them is acknowledged; the writer never
//! appends to a segment from an earlier run, so a torn tail stays where it is.
//!
//! Bounds: at most `max_items` records and `max_bytes` bytes on disk; beyond that
//! [`Wal::append`] answers [`WalError::Full`] (the exporter refuses with a retryable status).
//! A failed write (disk full, file size limit) is cut back off the segment, so the file holds
//! only whole records, and is reported as [`WalError::Io`] ([`WriteFailure::of`] names why);
//! the next append simply tries again, so the queue takes records again as soon as space
//! returns. Should even the cut fail, the writer leaves that segment (its torn tail is skipped
//! by the scan of the next start) and the next append opens a new one.
//!
//! All methods do blocking file I/O: async callers run them on `spawn_blocking`.
//!
//! Tests: `cargo test -p otel-collector exporter::wal`; fuzzing of [`scan_segment`]:
//! `fuzzing::wal_segment`; fault tests `tests/durability_*.rs`.

use crate::pipeline::Signal;
use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// First four bytes of every record ("OTQ1").
const MAGIC: u32 = u32::from_le_bytes(*b"OTQ1");
/// Bytes before the signal byte: magic, len, crc, seq.
pub const HEADER_LEN: usize = 20;
/// Largest record accepted on read (a larger length field is corruption).
pub const MAX_RECORD_LEN: u32 = 256 << 20;
/// Name of the watermark file.
const ACK_FILE: &str = "ack";

/// Limits and durability of one queue.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Most records held.
    pub max_items: usize,
    /// Most bytes held (headers included).
    pub max_bytes: u64,
    /// Start a new segment once the current one reaches this size.
    pub segment_size: u64,
    /// `fsync` each record (and directory changes) before [`Wal::append`] returns.
    pub fsync: bool,
}

/// Why the queue could not take or give a record.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The queue holds its maximum of records or bytes; retry once it drains.
    #[error("persistent queue full ({items} records, {bytes} bytes; limits {max_items} records, {max_bytes} bytes)")]
    Full {
        /// Records held.
        items: usize,
        /// Bytes held.
        bytes: u64,
        /// `queue_size`.
        max_items: usize,
        /// `max_size_mib` in bytes.
        max_bytes: u64,
    },
    /// Another process (or another exporter of this one) holds the directory's lock.
    #[error("persistent queue directory {} is in use by another collector (lock file held); give each collector its own file_storage directory", dir.display())]
    Locked {
        /// The queue directory.
        dir: PathBuf,
    },
    /// A file operation failed (disk full, permissions, file size limit).
    #[error("persistent queue: {what} {path}: {source}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl WalError {
    /// Why a write failed, for an I/O error (`None` for [`WalError::Full`] and
    /// [`WalError::Locked`], which only `open` answers).
    pub fn write_failure(&self) -> Option<WriteFailure> {
        match self {
            WalError::Full { .. } | WalError::Locked { .. } => None,
            WalError::Io { source, .. } => Some(WriteFailure::of(source)),
        }
    }
}

/// Why a write to the queue directory failed: the `reason` label of
/// `otelcol_exporter_persistent_queue_write_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFailure {
    /// The filesystem is full, or the user's quota is used up (`ENOSPC`, `EDQUOT`).
    NoSpace,
    /// The process's file size limit was reached (`EFBIG`: `RLIMIT_FSIZE`, `ulimit -f`).
    FileTooLarge,
    /// Any other I/O error (permissions, read-only filesystem, I/O error).
    Other,
}

impl WriteFailure {
    /// Every reason, in label order.
    pub const ALL: [WriteFailure; 3] = [
        WriteFailure::NoSpace,
        WriteFailure::FileTooLarge,
        WriteFailure::Other,
    ];

    /// Position in [`WriteFailure::ALL`] (one counter per reason).
    pub fn index(self) -> usize {
        match self {
            WriteFailure::NoSpace => 0,
            WriteFailure::FileTooLarge => 1,
            WriteFailure::Other => 2,
        }
    }

    /// Classifies an OS error.
    pub fn of(e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::StorageFull | K::QuotaExceeded => WriteFailure::NoSpace,
            K::FileTooLarge => WriteFailure::FileTooLarge,
            _ => WriteFailure::Other,
        }
    }

    /// The metric label: `no_space`, `file_too_large` or `other`.
    pub fn label(self) -> &'static str {
        match self {
            WriteFailure::NoSpace => "no_space",
            WriteFailure::FileTooLarge => "file_too_large",
            WriteFailure::Other => "other",
        }
    }

    /// What an operator reads in the log and a client in the refusal.
    pub fn describe(self) -> &'static str {
        match self {
            WriteFailure::NoSpace => "no space left on the device (disk full or quota exceeded)",
            WriteFailure::FileTooLarge => {
                "file too large (the process's file size limit, RLIMIT_FSIZE / ulimit -f)"
            }
            WriteFailure::Other => "I/O error",
        }
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> WalError + 'a {
    move |source| WalError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// One valid record found by [`scan_segment`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// Offset of the record's header in the segment.
    pub offset: u64,
    /// Whole record length (header, signal byte and payload).
    pub len: u32,
    /// Sequence number.
    pub seq: u64,
    /// Signal byte, already checked to name a signal.
    pub signal: Signal,
}

/// What [`scan_segment`] found in one segment's bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Valid records in file order.
    pub records: Vec<Found>,
    /// Damaged regions skipped (each torn tail or run of corrupt bytes counts once).
    pub skipped: u64,
}

fn signal_byte(s: Signal) -> u8 {
    match s {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

fn byte_signal(b: u8) -> Option<Signal> {
    Signal::ALL.get(usize::from(b)).copied()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// CRC of a record: seq, signal byte, payload.
fn record_crc(seq: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(body);
    h.finalize()
}

/// Encodes one record (header, signal byte, payload).
pub fn encode_record(seq: u64, signal: Signal, payload: &[u8]) -> Vec<u8> {
    let body_len = payload.len() + 1;
    let mut buf = Vec::with_capacity(HEADER_LEN + body_len);
    buf.extend_from_slice(&MAGIC.to_le_bytes());
    buf.extend_from_slice(&(body_len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.push(signal_byte(signal));
    buf.extend_from_slice(payload);
    let crc = record_crc(seq, &buf[HEADER_LEN..]);
    buf[8..12].copy_from_slice(&crc.to_le_bytes());
    buf
}

/// The record starting at `at`, when one valid record starts there.
fn record_at(bytes: &[u8], at: usize) -> Option<Found> {
    let head = bytes.get(at..at.checked_add(HEADER_LEN)?)?;
    if u32_at(head, 0) != MAGIC {
        return None;
    }
    let body_len = u32_at(head, 4);
    if body_len == 0 || body_len > MAX_RECORD_LEN {
        return None;
    }
    let crc = u32_at(head, 8);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&head[12..20]);
    let seq = u64::from_le_bytes(seq);
    let start = at + HEADER_LEN;
    let body = bytes.get(start..start.checked_add(body_len as usize)?)?;
    if record_crc(seq, body) != crc {
        return None;
    }
    Some(Found {
        offset: at as u64,
        len: HEADER_LEN as u32 + body_len,
        seq,
        signal: byte_signal(body[0])?,
    })
}

/// Finds every valid record in a segment's bytes, skipping and counting damaged regions.
///
/// Never panics, whatever the bytes (fuzzed by `fuzzing::wal_segment`).
pub fn scan_segment(bytes: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let mut at = 0usize;
    let mut in_damage = false;
    let magic = MAGIC.to_le_bytes();
    while at < bytes.len() {
        if let Some(f) = record_at(bytes, at) {
            scan.records.push(f);
            at += f.len as usize;
            in_damage = false;
            continue;
        }
        if !in_damage {
            scan.skipped += 1;
            in_damage = true;
        }
        // Resynchronise on the next magic after this position.
        match bytes[at + 1..].windows(4).position(|w| w == magic) {
            Some(p) => at += 1 + p,
            None => break,
        }
    }
    scan
}

/// A record handed out by [`Wal::take_next`].
#[derive(Debug)]
pub struct Record {
    /// Sequence number, for [`Wal::ack`].
    pub seq: u64,
    /// The signal of the payload.
    pub signal: Signal,
    /// The stored bytes (an OTLP protobuf request).
    pub payload: Vec<u8>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    seq: u64,
    segment: u64,
    offset: u64,
    len: u32,
}

/// What [`Wal::open`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OpenReport {
    /// Records queued again from an earlier run.
    pub resumed: usize,
    /// Damaged regions skipped.
    pub skipped: u64,
    /// Segments deleted because nothing in them was left to send.
    pub reclaimed: usize,
}

/// An open queue directory. See the module docs.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    /// Written, not handed out yet.
    unread: VecDeque<Entry>,
    /// Handed out, not acknowledged.
    inflight: BTreeMap<u64, Entry>,
    /// Live (unacknowledged) records per segment.
    segments: BTreeMap<u64, usize>,
    /// The segment being written: id, file, size.
    writer: Option<(u64, File, u64)>,
    next_segment: u64,
    next_seq: u64,
    items: usize,
    bytes: u64,
    watermark: u64,
    /// Records found damaged on read after open.
    pub damaged_on_read: u64,
    /// The directory's `lock` file, exclusively `flock`ed while open (released on drop, on
    /// [`Wal::release_lock`], and by the kernel when the process dies).
    lock: Option<File>,
    /// Simulated write faults (unit tests only).
    #[cfg(test)]
    sim: SimulatedFault,
}

/// Name of the lock file in the queue directory.
const LOCK_FILE: &str = "lock";

/// Takes the directory's exclusive lock without waiting: two writers would interleave records.
fn lock_dir(dir: &Path) -> Result<File, WalError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("opening", &path))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(WalError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(e) => Err(io_err("locking", &path)(e.into())),
    }
}

/// A write fault simulated by the unit tests: segment writes fail with `error` once a
/// segment would grow past `max_segment_bytes` (what `RLIMIT_FSIZE` does; with
/// `StorageFull` it stands for a full disk), writing the part that fits first.
#[cfg(test)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SimulatedFault {
    /// Largest segment size a write may reach; `None` = no fault.
    pub max_segment_bytes: Option<u64>,
    /// The error a write past the limit fails with.
    pub error: Option<std::io::ErrorKind>,
    /// Cutting a failed record off the segment fails too.
    pub truncate_fails: bool,
}

/// Writes `rec` at the end of `file` (of `size` bytes) and syncs it with `fsync`.
fn write_record(
    file: &mut File,
    size: u64,
    rec: &[u8],
    fsync: bool,
    limit: Option<(u64, std::io::ErrorKind)>,
) -> std::io::Result<()> {
    if let Some((max, kind)) = limit {
        if size + rec.len() as u64 > max {
            let room = usize::try_from(max.saturating_sub(size)).unwrap_or(usize::MAX);
            file.write_all(&rec[..room.min(rec.len())])?;
            return Err(kind.into());
        }
    }
    file.write_all(rec)?;
    if fsync {
        file.sync_data()?;
    }
    Ok(())
}

fn segment_name(id: u64) -> String {
    format!("{id:020}.seg")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    name.strip_suffix(".seg")?.parse().ok()
}

fn read_watermark(dir: &Path) -> u64 {
    let Ok(b) = std::fs::read(dir.join(ACK_FILE)) else {
        return 0;
    };
    if b.len() != 12 || crc32fast::hash(&b[..8]) != u32_at(&b, 8) {
        tracing::warn!(dir = %dir.display(), "persistent queue: ack file damaged; resending every stored record");
        return 0;
    }
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

impl Wal {
    /// Releases the directory lock (at shutdown, so a reload can open the directory again
    /// while this value still exists). The queue must not be written afterwards.
    pub fn release_lock(&mut self) {
        self.lock = None;
    }

    /// Opens (creating if needed) the queue in `dir`, scanning what an earlier run left.
    ///
    /// # Errors
    /// The directory cannot be created or listed, or a segment cannot be read. Damaged records
    /// are not errors: they are skipped and counted in the report.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, OpenReport), WalError> {
        std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        let lock = lock_dir(dir)?;
        let watermark = read_watermark(dir);
        let mut ids = Vec::new();
        for e in std::fs::read_dir(dir).map_err(io_err("listing", dir))? {
            let e = e.map_err(io_err("listing", dir))?;
            if let Some(id) = e.file_name().to_str().and_then(parse_segment_name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            opts,
            unread: VecDeque::new(),
            inflight: BTreeMap::new(),
            segments: BTreeMap::new(),
            writer: None,
            next_segment: ids.last().map_or(0, |l| l + 1),
            next_seq: watermark,
            items: 0,
            bytes: 0,
            watermark,
            damaged_on_read: 0,
            lock: Some(lock),
            #[cfg(test)]
            sim: SimulatedFault::default(),
        };
        let mut report = OpenReport::default();
        for id in ids {
            let path = dir.join(segment_name(id));
            let bytes = std::fs::read(&path).map_err(io_err("reading", &path))?;
            let scan = scan_segment(&bytes);
            report.skipped += scan.skipped;
            let mut live = 0;
            for f in scan.records {
                wal.next_seq = wal.next_seq.max(f.seq + 1);
                if f.seq < watermark {
                    continue;
                }
                live += 1;
                wal.items += 1;
                wal.bytes += u64::from(f.len);
                wal.unread.push_back(Entry {
                    seq: f.seq,
                    segment: id,
                    offset: f.offset,
                    len: f.len,
                });
            }
            if live == 0 {
                std::fs::remove_file(&path).map_err(io_err("removing", &path))?;
                report.reclaimed += 1;
            } else {
                wal.segments.insert(id, live);
            }
        }
        // Segments are in id order, records in seq order within each: keep seq order overall.
        wal.unread.make_contiguous().sort_by_key(|e| e.seq);
        report.resumed = wal.unread.len();
        Ok((wal, report))
    }

    /// The queue directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sets the simulated write fault (unit tests only).
    #[cfg(test)]
    pub(crate) fn simulate(&mut self, fault: SimulatedFault) {
        self.sim = fault;
    }

    #[cfg(test)]
    fn simulated_limit(&self) -> Option<(u64, std::io::ErrorKind)> {
        let kind = self.sim.error.unwrap_or(std::io::ErrorKind::StorageFull);
        self.sim.max_segment_bytes.map(|m| (m, kind))
    }

    #[cfg(not(test))]
    fn simulated_limit(&self) -> Option<(u64, std::io::ErrorKind)> {
        None
    }

    #[cfg(test)]
    fn simulated_truncate_failure(&self) -> bool {
        self.sim.truncate_fails
    }

    #[cfg(not(test))]
    fn simulated_truncate_failure(&self) -> bool {
        false
    }

    /// Records held (queued and in flight).
    pub fn len(&self) -> usize {
        self.items
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records waiting to be handed out by [`Wal::take_next`].
    pub fn unread(&self) -> usize {
        self.unread.len()
    }

    /// Number of segment files on disk.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
            + usize::from(
                self.writer
                    .as_ref()
                    .is_some_and(|(id, _, _)| !self.segments.contains_key(id)),
            )
    }

    fn sync_dir(&self) -> Result<(), WalError> {
        if self.opts.fsync {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err("syncing", &self.dir))?;
        }
        Ok(())
    }

    /// The writer, rotated to a new segment when the current one is full.
    fn writer(&mut self) -> Result<&mut (u64, File, u64), WalError> {
        let rotate = self
            .writer
            .as_ref()
            .is_some_and(|(_, _, size)| *size >= self.opts.segment_size);
        if rotate {
            if let Some((id, _, _)) = self.writer.take() {
                self.reclaim_if_drained(id)?;
            }
        }
        if self.writer.is_none() {
            let id = self.next_segment;
            self.next_segment += 1;
            let path = self.dir.join(segment_name(id));
            let f = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(io_err("creating", &path))?;
            self.sync_dir()?;
            self.writer = Some((id, f, 0));
        }
        Ok(self.writer.as_mut().expect("writer was just set"))
    }

    /// Appends one record; returns once it is written (and synced with `fsync`).
    ///
    /// # Errors
    /// [`WalError::Full`] at the limits; [`WalError::Io`] when the write failed (nothing of
    /// the record is left in the segment then).
    pub fn append(&mut self, signal: Signal, payload: &[u8]) -> Result<u64, WalError> {
        let rec = encode_record(self.next_seq, signal, payload);
        let len = rec.len() as u64;
        if self.items >= self.opts.max_items || self.bytes + len > self.opts.max_bytes {
            return Err(WalError::Full {
                items: self.items,
                bytes: self.bytes,
                max_items: self.opts.max_items,
                max_bytes: self.opts.max_bytes,
            });
        }
        let fsync = self.opts.fsync;
        let seq = self.next_seq;
        let dir = self.dir.clone();
        let limit = self.simulated_limit();
        let truncate_fails = self.simulated_truncate_failure();
        let (id, file, size) = self.writer()?;
        let path = dir.join(segment_name(*id));
        if let Err(source) = write_record(file, *size, &rec, fsync, limit) {
            // Cut a partial record off; if even that fails, never write to this segment again
            // (the scan on the next start skips its torn tail) and delete it once drained.
            let cut = if truncate_fails {
                Err(std::io::ErrorKind::Other.into())
            } else {
                file.set_len(*size)
            };
            if cut.is_err() {
                if let Some((id, _, _)) = self.writer.take() {
                    let _ = self.reclaim_if_drained(id);
                }
            }
            return Err(WalError::Io {
                what: "writing",
                path,
                source,
            });
        }
        let entry = Entry {
            seq,
            segment: *id,
            offset: *size,
            len: len as u32,
        };
        *size += len;
        *self.segments.entry(entry.segment).or_insert(0) += 1;
        self.next_seq += 1;
        self.items += 1;
        self.bytes += len;
        self.unread.push_back(entry);
        Ok(entry.seq)
    }

    /// Hands out the oldest unread record. A record that no longer reads back intact is
    /// counted in `damaged_on_read`, acknowledged and skipped.
    ///
    /// # Errors
    /// A segment cannot be opened or read.
    pub fn take_next(&mut self) -> Result<Option<Record>, WalError> {
        while let Some(e) = self.unread.pop_front() {
            let path = self.dir.join(segment_name(e.segment));
            let mut buf = vec![0u8; e.len as usize];
            let read = File::open(&path).and_then(|f| f.read_exact_at(&mut buf, e.offset));
            if let Err(source) = read {
                // Keep it first in line: the caller retries later.
                self.unread.push_front(e);
                return Err(WalError::Io {
                    what: "reading",
                    path,
                    source,
                });
            }
            self.inflight.insert(e.seq, e);
            match record_at(&buf, 0) {
                Some(f) if f.seq == e.seq => {
                    buf.drain(..HEADER_LEN + 1);
                    return Ok(Some(Record {
                        seq: e.seq,
                        signal: f.signal,
                        payload: buf,
                    }));
                }
                _ => {
                    self.damaged_on_read += 1;
                    self.ack(e.seq)?;
                }
            }
        }
        Ok(None)
    }

    /// Puts an in-flight record back at the front (it will be handed out again).
    pub fn requeue(&mut self, seq: u64) {
        if let Some(e) = self.inflight.remove(&seq) {
            self.unread.push_front(e);
        }
    }

    /// Forgets a delivered (or given up) record; deletes its segment once drained and moves
    /// the watermark.
    ///
    /// # Errors
    /// The segment or the ack file cannot be removed or written.
    pub fn ack(&mut self, seq: u64) -> Result<(), WalError> {
        self.ack_all(&[seq])
    }

    /// [`Wal::ack`] for several records (a merged send), writing the watermark once.
    ///
    /// # Errors
    /// As [`Wal::ack`]; the records before the failing one are forgotten, the others stay in
    /// flight.
    pub fn ack_all(&mut self, seqs: &[u64]) -> Result<(), WalError> {
        for &seq in seqs {
            let Some(e) = self.inflight.remove(&seq) else {
                continue;
            };
            self.items -= 1;
            self.bytes -= u64::from(e.len);
            if let Some(live) = self.segments.get_mut(&e.segment) {
                *live -= 1;
            }
            self.reclaim_if_drained(e.segment)?;
        }
        self.write_watermark()
    }

    fn reclaim_if_drained(&mut self, id: u64) -> Result<(), WalError> {
        let writing = self.writer.as_ref().is_some_and(|(w, _, _)| *w == id);
        if writing || self.segments.get(&id).is_some_and(|l| *l > 0) {
            return Ok(());
        }
        self.segments.remove(&id);
        let path = self.dir.join(segment_name(id));
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing", &path)(e)),
        }
    }

    /// Writes the low watermark when it moved: the oldest record still held, or the next seq.
    fn write_watermark(&mut self) -> Result<(), WalError> {
        let oldest_inflight = self.inflight.keys().next().copied();
        let oldest_unread = self.unread.iter().map(|e| e.seq).min();
        let w = [oldest_inflight, oldest_unread, Some(self.next_seq)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.next_seq);
        if w == self.watermark {
            return Ok(());
        }
        let mut b = w.to_le_bytes().to_vec();
        b.extend_from_slice(&crc32fast::hash(&b).to_le_bytes());
        let tmp = self.dir.join("ack.tmp");
        let path = self.dir.join(ACK_FILE);
        File::create(&tmp)
            .and_then(|mut f| f.write_all(&b))
            .map_err(io_err("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err("renaming", &path))?;
        self.watermark = w;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::tempdir::TempDir;

    fn opts() -> WalOptions {
        WalOptions {
            max_items: 1000,
            max_bytes: 1 << 20,
            segment_size: 200,
            fsync: false,
        }
    }

    fn drain(w: &mut Wal) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(r) = w.take_next().unwrap() {
            w.ack(r.seq).unwrap();
            out.push(r.payload);
        }
        out
    }

    #[test]
    fn write_failures_are_classified_and_indexed_in_label_order() {
        use std::io::{Error, ErrorKind};
        for (i, f) in WriteFailure::ALL.iter().enumerate() {
            assert_eq!(f.index(), i, "{}", f.label());
        }
        let of = |k| WriteFailure::of(&Error::from(k));
        assert_eq!(of(ErrorKind::StorageFull), WriteFailure::NoSpace);
        assert_eq!(of(ErrorKind::QuotaExceeded), WriteFailure::NoSpace);
        assert_eq!(of(ErrorKind::FileTooLarge), WriteFailure::FileTooLarge);
        assert_eq!(of(ErrorKind::PermissionDenied), WriteFailure::Other);
    }

    #[test]
    fn a_second_writer_of_the_directory_is_refused_until_the_lock_is_released() {
        let t = TempDir::new("wal-lock");
        let (mut first, _) = Wal::open(t.path(), opts()).unwrap();
        first.append(Signal::Traces, b"one").unwrap();
        let Err(e) = Wal::open(t.path(), opts()) else {
            panic!("a second open must be refused");
        };
        assert!(matches!(e, WalError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("in use by another collector"), "{e}");
        first.release_lock();
        let (mut second, report) = Wal::open(t.path(), opts()).unwrap();
        assert_eq!(report.resumed, 1);
        drop(first);
        assert_eq!(drain(&mut second), vec![b"one".to_vec()]);
        drop(second);
        Wal::open(t.path(), opts()).expect("a dropped queue frees the directory");
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn records_come_back_in_order_and_segments_are_reclaimed() {
        let d = TempDir::new("wal-order");
        let (mut w, r) = Wal::open(d.path(), opts()).unwrap();
        assert_eq!(r, OpenReport::default());
        for i in 0..20u8 {
            w.append(Signal::Logs, &[i; 30]).unwrap();
        }
        assert!(segments(d.path()).len() > 3, "rotated");
        let got = drain(&mut w);
        assert_eq!(got, (0..20u8).map(|i| vec![i; 30]).collect::<Vec<_>>());
        assert!(w.is_empty());
        assert_eq!(
            segments(d.path()).len(),
            1,
            "only the segment being written"
        );
    }

    #[test]
    fn unacknowledged_records_are_resumed_after_reopen() {
        let d = TempDir::new("wal-resume");
        let (mut w, _) = Wal::open(d.path(), opts()).unwrap();
        for i in 0..10u8 {
            w.append(Signal::Traces, &[i; 10]).unwrap();
        }
        // Deliver 4 (acked), hand out 2 more without ack (in flight at the "crash").
        for _ in 0..4 {
            let r = w.take_next().unwrap().unwrap();
            w.ack(r.seq).unwrap();
        }
        w.take_next().unwrap().unwrap();
        w.take_next().unwrap().unwrap();
        drop(w);
        let (mut w, r) = Wal::open(d.path(), opts()).unwrap();
        assert_eq!(r.resumed, 6);
        assert_eq!(r.skipped, 0);
        let got = drain(&mut w);
        assert_eq!(got, (4..10u8).map(|i| vec![i; 10]).collect::<Vec<_>>());
        // New records continue after the old sequence numbers.
        let seq = w.append(Signal::Traces, b"x").unwrap();
        assert!(seq >= 10, "{seq}");
    }

    #[test]
    fn limits_refuse_with_full() {
        let d = TempDir::new("wal-full");
        let (mut w, _) = Wal::open(
            d.path(),
            WalOptions {
                max_items: 3,
                max_bytes: 1000,
                ..opts()
            },
        )
        .unwrap();
        for _ in 0..3 {
            w.append(Signal::Metrics, b"abc").unwrap();
        }
        assert!(matches!(
            w.append(Signal::Metrics, b"abc"),
            Err(WalError::Full { items: 3, .. })
        ));
        let r = w.take_next().unwrap().unwrap();
        w.ack(r.seq).unwrap();
        w.append(Signal::Metrics, b"abc").unwrap();
        // Byte bound.
        assert!(matches!(
            w.append(Signal::Metrics, &[0; 2000]),
            Err(WalError::Full { .. })
        ));
    }

    #[test]
    fn torn_tail_and_flipped_bytes_are_counted_and_skipped() {
        let d = TempDir::new("wal-corrupt");
        let (mut w, _) = Wal::open(d.path(), opts()).unwrap();
        for i in 0..12u8 {
            w.append(Signal::Logs, &[i; 40]).unwrap();
        }
        drop(w);
        let segs = segments(d.path());
        assert!(segs.len() >= 3, "{segs:?}");
        // Flip a payload byte of the first record of the first segment.
        let mut b = std::fs::read(&segs[0]).unwrap();
        b[HEADER_LEN + 5] ^= 0xff;
        std::fs::write(&segs[0], &b).unwrap();
        // Truncate the last segment mid-record.
        let last = segs.last().unwrap();
        let len = std::fs::metadata(last).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(last)
            .unwrap()
            .set_len(len - 7)
            .unwrap();
        let (mut w, r) = Wal::open(d.path(), opts()).unwrap();
        assert_eq!(r.skipped, 2, "{r:?}");
        assert_eq!(r.resumed, 10);
        let got = drain(&mut w);
        assert_eq!(got.len(), 10);
        assert!(!got.contains(&vec![0u8; 40]), "the flipped record is gone");
        assert_eq!(got[0], vec![1u8; 40]);
    }

    #[test]
    fn scan_resynchronises_after_garbage() {
        let mut bytes = b"garbage OTQ1 more garbage".to_vec();
        bytes.extend(encode_record(7, Signal::Traces, b"hello"));
        bytes.extend([0xde, 0xad]);
        bytes.extend(encode_record(8, Signal::Metrics, b"world"));
        let s = scan_segment(&bytes);
        assert_eq!(s.skipped, 2);
        assert_eq!(
            s.records.iter().map(|f| f.seq).collect::<Vec<_>>(),
            vec![7, 8]
        );
        assert_eq!(scan_segment(&[]), Scan::default());
    }

    #[test]
    fn a_damaged_ack_file_resends_everything() {
        let d = TempDir::new("wal-ack");
        let (mut w, _) = Wal::open(d.path(), opts()).unwrap();
        w.append(Signal::Logs, b"a").unwrap();
        w.append(Signal::Logs, b"b").unwrap();
        let r = w.take_next().unwrap().unwrap();
        w.ack(r.seq).unwrap();
        drop(w);
        std::fs::write(d.path().join(ACK_FILE), b"junk").unwrap();
        let (_, r) = Wal::open(d.path(), opts()).unwrap();
        assert_eq!(r.resumed, 2, "at-least-once: the delivered one comes again");
    }

    fn big_segments() -> WalOptions {
        WalOptions {
            segment_size: 1 << 20,
            ..opts()
        }
    }

    fn fault(max: u64, error: std::io::ErrorKind, truncate_fails: bool) -> SimulatedFault {
        SimulatedFault {
            max_segment_bytes: Some(max),
            error: Some(error),
            truncate_fails,
        }
    }

    /// A write that fails part way (disk full, file size limit) leaves the segment holding whole
    /// records only, says why, and the queue takes records again once space returns.
    #[test]
    fn a_failed_write_leaves_only_whole_records_and_appends_resume_when_space_returns() {
        use std::io::ErrorKind;
        let d = TempDir::new("wal-nospace");
        let (mut w, _) = Wal::open(d.path(), big_segments()).unwrap();
        for i in 0..5u8 {
            w.append(Signal::Traces, &[i; 100]).unwrap();
        }
        let seg = segments(d.path()).remove(0);
        let whole = std::fs::metadata(&seg).unwrap().len();
        // Room for half a record more.
        for (kind, why) in [
            (ErrorKind::StorageFull, WriteFailure::NoSpace),
            (ErrorKind::FileTooLarge, WriteFailure::FileTooLarge),
            (ErrorKind::QuotaExceeded, WriteFailure::NoSpace),
        ] {
            w.simulate(fault(whole + 60, kind, false));
            let err = w.append(Signal::Traces, &[9; 100]).unwrap_err();
            assert_eq!(err.write_failure(), Some(why), "{err}");
            assert!(err.to_string().contains(&*seg.to_string_lossy()), "{err}");
            assert_eq!(std::fs::metadata(&seg).unwrap().len(), whole, "cut back");
        }
        assert_eq!(
            (w.len(), w.unread()),
            (5, 5),
            "nothing counted for failures"
        );
        let scan = scan_segment(&std::fs::read(&seg).unwrap());
        assert_eq!((scan.records.len(), scan.skipped), (5, 0));
        // Space returns: the same writer goes on, no restart needed.
        w.simulate(SimulatedFault::default());
        for i in 5..8u8 {
            w.append(Signal::Traces, &[i; 100]).unwrap();
        }
        assert_eq!(segments(d.path()).len(), 1);
        drop(w);
        let (mut w, r) = Wal::open(d.path(), big_segments()).unwrap();
        assert_eq!((r.resumed, r.skipped), (8, 0), "{r:?}");
        let got = drain(&mut w);
        assert_eq!(got, (0..8u8).map(|i| vec![i; 100]).collect::<Vec<_>>());
    }

    /// When even cutting the torn record off fails, the writer leaves that segment: records
    /// read back intact in the same run, and the next start skips the torn tail once.
    #[test]
    fn a_torn_record_that_cannot_be_cut_moves_the_writer_to_a_new_segment() {
        let d = TempDir::new("wal-torn-write");
        let (mut w, _) = Wal::open(d.path(), big_segments()).unwrap();
        for i in 0..3u8 {
            w.append(Signal::Logs, &[i; 50]).unwrap();
        }
        let whole = std::fs::metadata(&segments(d.path())[0]).unwrap().len();
        w.simulate(fault(whole + 30, std::io::ErrorKind::FileTooLarge, true));
        w.append(Signal::Logs, &[7; 50]).unwrap_err();
        w.simulate(SimulatedFault::default());
        w.append(Signal::Logs, &[3; 50]).unwrap();
        let segs = segments(d.path());
        assert_eq!(segs.len(), 2, "a new segment after the torn one");
        assert_eq!(std::fs::metadata(&segs[0]).unwrap().len(), whole + 30);
        drop(w);
        let (mut w, r) = Wal::open(d.path(), big_segments()).unwrap();
        assert_eq!((r.resumed, r.skipped), (4, 1), "{r:?}");
        let got = drain(&mut w);
        assert_eq!(got, (0..4u8).map(|i| vec![i; 50]).collect::<Vec<_>>());
        assert_eq!(
            segments(d.path()).len(),
            0,
            "drained segments of the last run are deleted"
        );
    }

    /// The same in one run: the abandoned segment is read back and deleted once drained.
    #[test]
    fn an_abandoned_torn_segment_is_deleted_once_drained() {
        let d = TempDir::new("wal-torn-drain");
        let (mut w, _) = Wal::open(d.path(), big_segments()).unwrap();
        w.append(Signal::Logs, &[1; 50]).unwrap();
        w.simulate(fault(80, std::io::ErrorKind::StorageFull, true));
        w.append(Signal::Logs, &[2; 50]).unwrap_err();
        w.simulate(SimulatedFault::default());
        w.append(Signal::Logs, &[3; 50]).unwrap();
        assert_eq!(segments(d.path()).len(), 2);
        assert_eq!(drain(&mut w), vec![vec![1u8; 50], vec![3u8; 50]]);
        assert_eq!(segments(d.path()).len(), 1, "only the one being written");
        assert_eq!(w.damaged_on_read, 0);
    }

    /// A record whose segment cannot be read stays first in line and is handed out later.
    #[test]
    fn a_record_that_cannot_be_read_stays_first_in_line() {
        let d = TempDir::new("wal-unreadable");
        let (mut w, _) = Wal::open(d.path(), opts()).unwrap();
        w.append(Signal::Metrics, b"m").unwrap();
        let seg = segments(d.path()).remove(0);
        let aside = d.path().join("aside");
        std::fs::rename(&seg, &aside).unwrap();
        assert!(w.take_next().is_err());
        assert_eq!((w.unread(), w.len()), (1, 1));
        std::fs::rename(&aside, &seg).unwrap();
        let r = w.take_next().unwrap().unwrap();
        assert_eq!(r.payload, b"m");
        w.ack(r.seq).unwrap();
        assert!(w.is_empty());
    }

    #[test]
    fn requeued_records_are_handed_out_again() {
        let d = TempDir::new("wal-requeue");
        let (mut w, _) = Wal::open(d.path(), opts()).unwrap();
        w.append(Signal::Logs, b"a").unwrap();
        let r = w.take_next().unwrap().unwrap();
        assert!(w.take_next().unwrap().is_none());
        w.requeue(r.seq);
        assert_eq!(w.take_next().unwrap().unwrap().payload, b"a");
    }
}
