//! The durable log: one append-only JSON Lines file holding every record the engine persists, in order.
//!
//! - **One file, one sync per group.** A writer thread takes every batch queued while it was busy, appends
//!   them with one `write` and one `fdatasync`, and only then acknowledges them. The engine orders its records
//!   so that every prefix of the file can be resumed (see `cxone_agent_state_core::Record`), so a `kill -9`
//!   or a power loss at any byte loses nothing that was acknowledged.
//! - **The audit log an auditor opens.** Audit records are the file's lines without a `kind`; `audit verify`
//!   and `report` read the same file.
//! - **Recovery bounded by what is open.** The engine writes checkpoints; recovery reads the file backwards to
//!   the last whole checkpoint and folds only what follows it. A torn last line (a write cut short, or NUL
//!   padding left by a power loss) is set aside in `PATH.torn-<unix ms>` and cut off; a whole last record
//!   that only lacks its newline is kept and the newline added.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use cxone_agent_state_core::{
    last_checkpoint_start, scan_log, AuditRecord, LogError, LogScan, LogState, Record,
};
use tokio::sync::oneshot;

/// Why the durable log could not be opened or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The log is damaged before its last line (`AUDIT_LOG_CORRUPT`).
    #[error("log {path} is corrupt ({source}); run `cxone-agent-state audit verify`")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where and how.
        source: LogError,
    },
    /// The log was written by a simulation (its first record is a `simulation` mark): real changes are not
    /// mixed into it, so an auditor never reads simulated records as real ones (`INVALID_CONFIG`).
    #[error(
        "log {path} was written by a simulation; real changes are not recorded in it: choose another audit log"
    )]
    Simulated {
        /// The file.
        path: PathBuf,
    },
    /// Another process holds the log (a second writer would fork its hash chain).
    #[error(
        "log {path} is in use by another process (a running service or command); stop it first"
    )]
    Locked {
        /// The file.
        path: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What opening the log found.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Recovery {
    /// The open state, to hand to `Engine::restore`.
    pub state: LogState,
    /// Bytes of the file read to recover (from the last checkpoint on).
    pub bytes_read: u64,
    /// Where a torn last line was set aside, if there was one.
    pub torn_tail_saved_to: Option<PathBuf>,
    /// A whole last record lacked its newline, which was added.
    pub newline_added: bool,
}

/// How much of the file is read back at a time while looking for the last checkpoint.
const TAIL_CHUNK: u64 = 256 * 1024;

/// Opens (or creates) the log at `path` for this process alone (an exclusive lock, held until the writer
/// stops), recovers its open state, and starts the writer appending to it. `now_unix_ms` names a torn tail's
/// file.
pub fn open(
    path: &Path,
    now_unix_ms: u64,
) -> Result<(Recovery, Writer, JoinHandle<()>), StoreError> {
    let mut file = open_locked(path)?;
    if first_record_is_simulation(&mut file).map_err(io_err(path))? == Some(true) {
        return Err(StoreError::Simulated {
            path: path.to_owned(),
        });
    }
    let recovery = recover_file(&mut file, path, now_unix_ms)?;
    file.seek(SeekFrom::End(0)).map_err(io_err(path))?;
    let (writer, thread) = Writer::start_on(file, path)?;
    Ok((recovery, writer, thread))
}

/// Recovers the log at `path` (as [`open`] does) without keeping it open: for tools and tests.
pub fn recover(path: &Path, now_unix_ms: u64) -> Result<Recovery, StoreError> {
    let mut file = open_locked(path)?;
    recover_file(&mut file, path, now_unix_ms)
}

/// The audit records of a log, read line by line as they stand, one line in memory at a time: for readers
/// beside a running writer (a service's event stream, a report over a window), which must never hold the
/// log. A line that is not an audit record (another kind, a torn last line) is passed over; a read error
/// is the last item.
pub fn audit_records(file: File) -> impl Iterator<Item = io::Result<AuditRecord>> {
    let mut reader = io::BufReader::new(file);
    let (mut line, mut failed) = (Vec::new(), false);
    std::iter::from_fn(move || loop {
        if failed {
            return None;
        }
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return None,
            Err(e) => {
                failed = true;
                return Some(Err(e));
            }
            Ok(_) => {}
        }
        if let Ok(Record::Audit(a)) = Record::parse_line(line.strip_suffix(b"\n").unwrap_or(&line))
        {
            return Some(Ok(a));
        }
    })
}

/// Whether the log at `path` is a simulation's: `Some(true)` when its first record is the mark a simulation
/// writes first, `Some(false)` when it is any other line, `None` for a missing or blank file. Reads only
/// the first line (blank lines before it are skipped, as a scan skips them).
pub fn is_simulated(path: &Path) -> io::Result<Option<bool>> {
    match File::open(path) {
        Ok(mut file) => first_record_is_simulation(&mut file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`is_simulated`] for an open log, read from the start (one short line).
fn first_record_is_simulation(file: &mut File) -> io::Result<Option<bool>> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = io::BufReader::new(&mut *file).take(64 * 1024);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if !text.iter().all(u8::is_ascii_whitespace) {
            return Ok(Some(matches!(
                Record::parse_line(text),
                Ok(Record::Simulation(_))
            )));
        }
    }
}

/// Opens (or creates) the log at `path` and locks it for this process alone.
fn open_locked(path: &Path) -> Result<File, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err(path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(StoreError::Locked {
                path: path.to_owned(),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(path)(e)),
    }
    Ok(file)
}

/// What the log reads as from its last checkpoint on, and where that part starts.
fn read_tail(file: &mut File, path: &Path) -> Result<(u64, u64, LogScan), StoreError> {
    let len = file.metadata().map_err(io_err(path))?.len();
    let (start, state, bytes) = find_start(file, len).map_err(io_err(path))?;
    let scan = match scan_log(&bytes, state, |_| {}) {
        Ok(scan) => scan,
        Err(source) => {
            // The scan counted lines from the checkpoint it started at; name the line in the file.
            let source = match lines_before(file, start) {
                Ok(n) => source.after_lines(n),
                Err(e) => return Err(io_err(path)(e)),
            };
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                source,
            });
        }
    };
    Ok((start, bytes.len() as u64, scan))
}

/// How many lines the first `end` bytes of the file hold (read only when damage is reported, so recovery
/// itself still reads from the last checkpoint on).
fn lines_before(file: &mut File, end: u64) -> io::Result<usize> {
    file.seek(SeekFrom::Start(0))?;
    let mut chunk = vec![0u8; TAIL_CHUNK as usize];
    let (mut left, mut lines) = (end, 0);
    while left > 0 {
        let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        file.read_exact(&mut chunk[..n])?;
        lines += chunk[..n].iter().filter(|&&b| b == b'\n').count();
        left -= n as u64;
    }
    Ok(lines)
}

fn recover_file(file: &mut File, path: &Path, now_unix_ms: u64) -> Result<Recovery, StoreError> {
    let (start, bytes_read, scan) = read_tail(file, path)?;
    let mut recovery = Recovery {
        bytes_read,
        ..Recovery::default()
    };
    let good_end = start + scan.good_len as u64;
    if let Some(tail) = &scan.torn_tail {
        let mut saved = path.as_os_str().to_owned();
        saved.push(format!(".torn-{now_unix_ms}"));
        let saved = PathBuf::from(saved);
        std::fs::write(&saved, tail).map_err(io_err(&saved))?;
        file.set_len(good_end).map_err(io_err(path))?;
        recovery.torn_tail_saved_to = Some(saved);
    }
    if scan.missing_newline {
        file.seek(SeekFrom::Start(good_end)).map_err(io_err(path))?;
        file.write_all(b"\n").map_err(io_err(path))?;
        recovery.newline_added = true;
    }
    if recovery.torn_tail_saved_to.is_some() || recovery.newline_added {
        file.sync_all().map_err(io_err(path))?;
    }
    sync_dir(path);
    recovery.state = scan.state;
    Ok(recovery)
}

/// Reads the open state of the log at `path` without changing the file or locking it (for tools that only
/// look: a torn tail is ignored, a missing file is an empty log).
pub fn read_state(path: &Path) -> Result<LogState, StoreError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LogState::default()),
        Err(e) => return Err(io_err(path)(e)),
    };
    Ok(read_tail(&mut file, path)?.2.state)
}

/// Where recovery starts: the byte after the last whole checkpoint line and the state it describes, or the
/// start of the file; and the bytes from there to `len`. Reads backwards from the end, a chunk at a time,
/// and reads each byte once.
fn find_start(file: &mut File, len: u64) -> io::Result<(u64, LogState, Vec<u8>)> {
    let mut end = len;
    let mut buf: Vec<u8> = Vec::new();
    // What was read after `buf`, in the order it was read (so the last part of the file first).
    let mut after: Vec<Vec<u8>> = Vec::new();
    while end > 0 || !buf.is_empty() {
        let from = end.saturating_sub(TAIL_CHUNK);
        let mut chunk = vec![0u8; (end - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        end = from;
        // Only lines that start inside `buf` are whole: skip a first partial line unless at the file start.
        let skip = if from == 0 {
            0
        } else {
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => continue,
            }
        };
        let mut search_end = buf.len();
        while let Some(at) = last_checkpoint_start(&buf[skip..search_end]) {
            let line_start = skip + at;
            let line_end = buf[line_start..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| line_start + i);
            if let Some(line_end) = line_end {
                if let Ok(record @ Record::Checkpoint(_)) =
                    Record::parse_line(&buf[line_start..line_end])
                {
                    // Adopts the checkpoint, and counts its line as read (nothing precedes it in this
                    // state, so there is nothing to check it against).
                    let mut state = LogState::default();
                    state.apply(&record).ok();
                    let tail = joined(&buf[line_end + 1..], &after);
                    return Ok((from + line_end as u64 + 1, state, tail));
                }
            }
            // A torn or unreadable checkpoint: look further back.
            if line_start == skip {
                break;
            }
            search_end = line_start - 1;
        }
        if from == 0 {
            break;
        }
        // Keep only the partial first line for the next round; set the rest aside.
        after.push(buf.split_off(skip));
    }
    Ok((0, LogState::default(), joined(&buf, &after)))
}

/// `first`, then the parts `find_start` set aside, in file order.
fn joined(first: &[u8], after: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(first.len() + after.iter().map(Vec::len).sum::<usize>());
    out.extend_from_slice(first);
    for part in after.iter().rev() {
        out.extend_from_slice(part);
    }
    out
}

/// Syncs the directory holding `path`, so a new file survives a crash (best effort).
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Records to append, and who to tell once they are written and synced.
type Job = (Vec<Record>, oneshot::Sender<io::Result<()>>);

/// The writer thread's handle. Dropping every handle lets the thread finish what is queued and exit.
#[derive(Clone, Debug)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on a log already opened, locked and positioned at its end.
    fn start_on(file: File, path: &Path) -> Result<(Self, JoinHandle<()>), StoreError> {
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("cxone-log-writer".into())
            .spawn(move || writer_loop(file, rx))
            .map_err(io_err(path))?;
        Ok((Self { tx }, handle))
    }

    /// Queues records; the receiver answers once they are written and synced.
    pub fn write(&self, records: Vec<Record>) -> oneshot::Receiver<io::Result<()>> {
        let (done, rx) = oneshot::channel();
        if let Err(mpsc::SendError((_, done))) = self.tx.send((records, done)) {
            let _ = done.send(Err(io::Error::other("the log writer has stopped")));
        }
        rx
    }
}

fn writer_loop(mut file: File, rx: mpsc::Receiver<Job>) {
    let mut failed: Option<io::ErrorKind> = None;
    while let Ok(first) = rx.recv() {
        // Group commit: everything already queued goes out with one write and one sync.
        let mut jobs = vec![first];
        while let Ok(more) = rx.try_recv() {
            jobs.push(more);
        }
        let mut bytes = Vec::new();
        let mut waiters = Vec::with_capacity(jobs.len());
        for (records, done) in jobs {
            for r in &records {
                bytes.extend_from_slice(&r.to_line());
            }
            waiters.push(done);
        }
        // After a failure nothing more is written: a later record must never follow a hole.
        let result = match failed {
            Some(kind) => Err(io::Error::new(kind, "an earlier write to the log failed")),
            None => file.write_all(&bytes).and_then(|()| file.sync_data()),
        };
        if let Err(e) = &result {
            failed.get_or_insert(e.kind());
        }
        for w in waiters {
            let _ = w.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
}
