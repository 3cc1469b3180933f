//! The durable files behind a manager: the audit log, the change journal and the webhook outbox.
//!
//! All three are JSON Lines, appended by one writer thread that syncs before it acknowledges, so a
//! `kill -9` at any moment leaves each file a valid prefix plus, at worst, one torn last line:
//!
//! - **audit log** (`PATH`): one [`AuditRecord`] per transition attempt, hash-chained. A torn last line is
//!   moved to `PATH.torn-<unix ms>` on open and the chain continues from the last good record.
//! - **journal** (`PATH.journal`): a [`ChangeIntent`] is written (and synced) before a state change is sent.
//!   An intent with no audit record carrying its idempotency key was interrupted: it is resumed on open.
//! - **outbox** (`PATH.outbox`): webhook payloads to deliver, then `delivered` marks. What is not marked is
//!   delivered again after a restart.
//!
//! Group commit: every batch queued while the thread was writing goes out with one sync per file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use cxone_agent_state_core::{
    scan_log, AuditRecord, ChainHead, ChangeIntent, LogError, OutboxEntry,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// Why the durable files could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The audit log is damaged before its last line (`AUDIT_LOG_CORRUPT`).
    #[error("audit log {path} is corrupt at {source}; run `cxone-agent-state audit verify`")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where and how.
        source: LogError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What opening the files found.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// Where the audit chain continues.
    pub chain_head: ChainHead,
    /// Good audit records already in the log.
    pub audit_records: u64,
    /// Where a torn last line of the audit log was set aside, if there was one.
    pub torn_tail_saved_to: Option<PathBuf>,
    /// Journaled changes with no audit record: they must be resumed.
    pub interrupted: Vec<ChangeIntent>,
    /// Webhook payloads not yet delivered, oldest first.
    pub undelivered: Vec<OutboxEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum OutboxLine {
    Enqueue { entry: OutboxEntry },
    Delivered { event_id: String },
}

/// The file paths of a store rooted at an audit log path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorePaths {
    /// The audit log.
    pub audit: PathBuf,
    /// The change journal.
    pub journal: PathBuf,
    /// The webhook outbox.
    pub outbox: PathBuf,
}

impl StorePaths {
    /// `PATH`, `PATH.journal`, `PATH.outbox`.
    pub fn for_audit_log(audit: impl Into<PathBuf>) -> Self {
        let audit = audit.into();
        let with = |suffix: &str| {
            let mut s = audit.clone().into_os_string();
            s.push(suffix);
            PathBuf::from(s)
        };
        Self {
            journal: with(".journal"),
            outbox: with(".outbox"),
            audit,
        }
    }
}

/// Reads a JSON Lines file, ignoring a torn last line; unreadable complete lines are skipped too (the journal
/// and outbox hold no chain, and a skipped line only means a resend, never a loss of an acknowledged write).
fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let complete = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&bytes[..0], |i| &bytes[..=i]);
    Ok(complete
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect())
}

/// Rewrites a file atomically: a temporary file, synced, renamed over the old one.
fn rewrite(path: &Path, lines: &[Vec<u8>]) -> Result<(), StoreError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    for l in lines {
        f.write_all(l).map_err(io_err(&tmp))?;
        f.write_all(b"\n").map_err(io_err(&tmp))?;
    }
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(path);
    Ok(())
}

/// Syncs the directory holding `path`, so a rename or a new file survives a crash (best effort).
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Opens (or creates) the three files and works out what a restart must do.
pub fn recover(paths: &StorePaths, now_ms: u64) -> Result<Recovery, StoreError> {
    let mut recovery = Recovery::default();
    // Audit log: verify, set a torn tail aside, remember which changes it already records.
    let mut recorded_keys = BTreeSet::new();
    match std::fs::read(&paths.audit) {
        Ok(bytes) => {
            let scan = scan_log(&bytes, ChainHead::default(), |r| {
                if let Some(k) = &r.idempotency_key {
                    recorded_keys.insert(k.clone());
                }
            })
            .map_err(|source| StoreError::Corrupt {
                path: paths.audit.clone(),
                source,
            })?;
            if let Some(tail) = &scan.torn_tail {
                let mut saved = paths.audit.as_os_str().to_owned();
                saved.push(format!(".torn-{now_ms}"));
                let saved = PathBuf::from(saved);
                std::fs::write(&saved, tail).map_err(io_err(&saved))?;
                let f = OpenOptions::new()
                    .write(true)
                    .open(&paths.audit)
                    .map_err(io_err(&paths.audit))?;
                f.set_len(scan.good_len as u64)
                    .map_err(io_err(&paths.audit))?;
                f.sync_all().map_err(io_err(&paths.audit))?;
                recovery.torn_tail_saved_to = Some(saved);
            }
            recovery.chain_head = scan.head;
            recovery.audit_records = scan.records;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&paths.audit)(e)),
    }
    // Journal: intents not yet in the audit log were interrupted. Keep only those.
    let intents: Vec<ChangeIntent> = read_lines(&paths.journal)?;
    let mut seen = BTreeSet::new();
    recovery.interrupted = intents
        .into_iter()
        .filter(|i| !recorded_keys.contains(&i.idempotency_key))
        .filter(|i| seen.insert(i.idempotency_key.clone()))
        .collect();
    let lines: Vec<Vec<u8>> = recovery
        .interrupted
        .iter()
        .map(|i| serde_json::to_vec(i).expect("intents serialize"))
        .collect();
    rewrite(&paths.journal, &lines)?;
    // Outbox: enqueued minus delivered, in order. Compact to just those.
    let mut pending: BTreeMap<String, (usize, OutboxEntry)> = BTreeMap::new();
    for (i, line) in read_lines::<OutboxLine>(&paths.outbox)?
        .into_iter()
        .enumerate()
    {
        match line {
            OutboxLine::Enqueue { entry } => {
                pending.entry(entry.event_id.clone()).or_insert((i, entry));
            }
            OutboxLine::Delivered { event_id } => {
                pending.remove(&event_id);
            }
        }
    }
    let mut undelivered: Vec<(usize, OutboxEntry)> = pending.into_values().collect();
    undelivered.sort_by_key(|(i, _)| *i);
    recovery.undelivered = undelivered.into_iter().map(|(_, e)| e).collect();
    let lines: Vec<Vec<u8>> = recovery
        .undelivered
        .iter()
        .map(|e| serde_json::to_vec(&OutboxLine::Enqueue { entry: e.clone() }).expect("serializes"))
        .collect();
    rewrite(&paths.outbox, &lines)?;
    Ok(recovery)
}

/// Writes to make durable, and what to do once they are.
#[derive(Debug, Default)]
pub struct Batch {
    /// Audit records, in chain order.
    pub audit: Vec<AuditRecord>,
    /// Change intents.
    pub intents: Vec<ChangeIntent>,
    /// Webhook payloads to enqueue.
    pub outbox: Vec<OutboxEntry>,
    /// Webhook deliveries to mark (not synced on their own: losing a mark only means a resend).
    pub delivered: Vec<String>,
}

impl Batch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.audit.is_empty()
            && self.intents.is_empty()
            && self.outbox.is_empty()
            && self.delivered.is_empty()
    }

    /// Whether the batch must be synced before it is acknowledged.
    fn needs_sync(&self) -> bool {
        !(self.audit.is_empty() && self.intents.is_empty() && self.outbox.is_empty())
    }
}

enum Job {
    Write(Batch, Option<oneshot::Sender<io::Result<()>>>),
    Flush(oneshot::Sender<io::Result<()>>),
}

/// The writer thread's handle. Dropping every handle lets the thread finish what is queued and exit.
#[derive(Clone, Debug)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

struct Files {
    audit: File,
    journal: File,
    outbox: File,
}

impl Writer {
    /// Starts the writer thread over the three files (append mode).
    pub fn start(paths: &StorePaths) -> Result<(Self, JoinHandle<()>), StoreError> {
        let open = |p: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(io_err(p))
        };
        let files = Files {
            audit: open(&paths.audit)?,
            journal: open(&paths.journal)?,
            outbox: open(&paths.outbox)?,
        };
        sync_dir(&paths.audit);
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("cxone-store-writer".into())
            .spawn(move || writer_loop(files, rx))
            .map_err(io_err(&paths.audit))?;
        Ok((Self { tx }, handle))
    }

    /// Queues a batch; the returned receiver answers once it is durable.
    pub fn write(&self, batch: Batch) -> oneshot::Receiver<io::Result<()>> {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Job::Write(batch, Some(done))).is_err() {
            let (done, rx) = oneshot::channel();
            let _ = done.send(Err(io::Error::other("the store writer has stopped")));
            return rx;
        }
        rx
    }

    /// Queues a batch without waiting for it (delivery marks).
    pub fn write_detached(&self, batch: Batch) {
        let _ = self.tx.send(Job::Write(batch, None));
    }

    /// Answers once everything queued before it is written and synced.
    pub fn flush(&self) -> oneshot::Receiver<io::Result<()>> {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Job::Flush(done)).is_err() {
            let (done, rx) = oneshot::channel();
            let _ = done.send(Ok(()));
            return rx;
        }
        rx
    }
}

fn writer_loop(mut files: Files, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        // Group commit: take everything already queued, write it all, sync once per file.
        let mut jobs = vec![first];
        while let Ok(more) = rx.try_recv() {
            jobs.push(more);
        }
        let mut waiters = Vec::new();
        let mut sync = false;
        let mut result: io::Result<()> = Ok(());
        for job in jobs {
            match job {
                Job::Write(batch, done) => {
                    sync |= batch.needs_sync();
                    if result.is_ok() {
                        result = write_batch(&mut files, &batch);
                    }
                    waiters.extend(done);
                }
                Job::Flush(done) => {
                    sync = true;
                    waiters.push(done);
                }
            }
        }
        if result.is_ok() && sync {
            result = files
                .audit
                .sync_data()
                .and_then(|()| files.journal.sync_data())
                .and_then(|()| files.outbox.sync_data());
        }
        for w in waiters {
            let _ = w.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
    let _ = files.outbox.sync_data();
}

fn write_batch(files: &mut Files, batch: &Batch) -> io::Result<()> {
    fn lines<T: Serialize>(items: impl IntoIterator<Item = T>) -> Vec<u8> {
        let mut out = Vec::new();
        for item in items {
            serde_json::to_writer(&mut out, &item).expect("store lines serialize");
            out.push(b'\n');
        }
        out
    }
    // One write per file, so a crash tears at most the last line. Order: journal, outbox, audit. A crash
    // after the outbox write but before the audit write leaves a webhook with no audit record; the journaled
    // change is then resumed and announced again under the same event id (derived from its idempotency key),
    // which the outbox and receivers dedupe. The other order could lose the webhook of an audited change.
    if !batch.intents.is_empty() {
        files.journal.write_all(&lines(&batch.intents))?;
    }
    let outbox: Vec<OutboxLine> = batch
        .outbox
        .iter()
        .map(|e| OutboxLine::Enqueue { entry: e.clone() })
        .chain(batch.delivered.iter().map(|id| OutboxLine::Delivered {
            event_id: id.clone(),
        }))
        .collect();
    if !outbox.is_empty() {
        files.outbox.write_all(&lines(&outbox))?;
    }
    if !batch.audit.is_empty() {
        files.audit.write_all(&lines(&batch.audit))?;
    }
    Ok(())
}
