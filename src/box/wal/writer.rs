//! The WAL writer: its own thread, fed through a queue, completing each batch (one
//! transaction's rows) through a `tokio::sync::oneshot`, or for the Lua thread's commits by
//! sequence number ([`SeqAcks`]: one counter and one wakeup per group).
//!
//! Group commit: the thread takes every batch queued by the time it wakes, appends them in
//! submission order to the current block (a new block once one passes 128 KB, always at a
//! transaction boundary), writes it (zstd-compressed from 2 KB, as Tarantool writes its
//! xlogs), and completes the group. In `fsync` mode the xlog is
//! opened with O_DSYNC, as Tarantool opens it, so each block write returns once it is on
//! disk: the whole group shares that sync. While it writes, new batches queue up and form
//! the next group.
//!
//! A failed write (or sync) fails the batch that hit it and every batch after it, and every
//! batch submitted afterwards, until `resume()` (cascading rollback, as Tarantool: the Lua
//! thread undoes the failed transactions and everything that could have seen them, then calls
//! `resume`). The file is cut back to the last good block so nothing of a failed batch stays.
//!
//! Files follow Tarantool's `wal.c`: the xlog named by the current vclock is created on the
//! first write (or reopened at start if it exists); `rotate` closes the current one if it has
//! rows, so the next write starts a new file named by the checkpoint's vclock; a file past
//! `max_size` is closed before the next group; at shutdown an empty xlog named by the final
//! vclock is left behind, so the next start need not scan the last file for the vclock.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;
use uuid::Uuid;

use super::row::Row;
use super::vclock::Vclock;
use super::xlog::{file_name, list_files, FileKind, Meta, XlogError, XlogReader, XlogWriter, BLOCK_THRESHOLD};
use crate::replication::wal_feed::WalFeed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalMode {
    /// No files; commits complete at once.
    None,
    /// write(2) before completing, no fsync.
    Write,
    /// Synchronous write(2)s (O_DSYNC) before completing: one sync per group.
    Fsync,
}

impl FromStr for WalMode {
    type Err = String;

    fn from_str(s: &str) -> Result<WalMode, String> {
        match s {
            "none" => Ok(WalMode::None),
            "write" => Ok(WalMode::Write),
            "fsync" => Ok(WalMode::Fsync),
            _ => Err(format!("invalid wal_mode '{s}'")),
        }
    }
}

impl fmt::Display for WalMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WalMode::None => "none",
            WalMode::Write => "write",
            WalMode::Fsync => "fsync",
        })
    }
}

#[derive(Debug, Clone)]
pub struct WalConfig {
    pub dir: PathBuf,
    pub mode: WalMode,
    pub instance_uuid: Uuid,
    /// `wal_max_size`: an xlog this big is closed before the next write.
    pub max_size: u64,
}

impl WalConfig {
    /// Tarantool's default `wal_max_size`.
    pub const DEFAULT_MAX_SIZE: u64 = 256 * 1024 * 1024;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalError {
    /// A file operation failed; the batch that hit it was not written.
    Io(XlogError),
    /// Not written because an earlier batch failed (cascading rollback).
    Cascade,
    /// `rotate` during a cascading rollback: a snapshot now could contain rolled back data.
    InRollback,
    /// The writer has shut down.
    Closed,
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io(e) => write!(f, "Failed to write to disk: {e}"),
            WalError::Cascade => f.write_str("Failed to write to disk: rolled back after an earlier WAL write error"),
            WalError::InRollback => f.write_str("Can't start a checkpoint while in cascading rollback"),
            WalError::Closed => f.write_str("WAL writer is shut down"),
        }
    }
}

impl std::error::Error for WalError {}

impl From<XlogError> for WalError {
    fn from(e: XlogError) -> WalError {
        WalError::Io(e)
    }
}

/// Counters for tests and `box.stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WalStats {
    /// Batches (transactions) completed successfully.
    pub batches: u64,
    pub rows: u64,
    /// Groups the thread took from the queue at once.
    pub groups: u64,
    /// Blocks written (one write(2) each).
    pub writes: u64,
    /// Groups made durable (in `fsync` mode), by their O_DSYNC writes or an fdatasync.
    pub fsyncs: u64,
    pub bytes: u64,
    /// Batches failed, by the error itself or by cascade.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    rows: AtomicU64,
    groups: AtomicU64,
    writes: AtomicU64,
    fsyncs: AtomicU64,
    bytes: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> WalStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WalStats {
            batches: g(&self.batches),
            rows: g(&self.rows),
            groups: g(&self.groups),
            writes: g(&self.writes),
            fsyncs: g(&self.fsyncs),
            bytes: g(&self.bytes),
            failed: g(&self.failed),
        }
    }
}

pub type Done<T> = oneshot::Sender<Result<T, WalError>>;

/// How a batch's outcome reaches its submitter: its own oneshot, or its sequence number
/// in [`SeqAcks`] (the Lua thread's commits: one counter instead of a channel per commit).
enum Ack {
    Done(Done<()>),
    Seq(u64),
}

/// The outcomes of the batches submitted with [`WalWriter::submit_seq`]. They complete in
/// submission order, so one counter says which are done; the few that fail are listed.
/// The thread wakes `notify` once per group.
#[derive(Default)]
pub struct SeqAcks {
    /// The highest sequence number completed (written or failed).
    done: AtomicU64,
    /// Failed batches (sequence number, error), oldest first, until taken.
    failed: Mutex<Vec<(u64, WalError)>>,
    /// Set when the thread is gone: no batch will complete any more.
    closed: AtomicBool,
    pub notify: tokio::sync::Notify,
}

impl SeqAcks {
    /// What completed: the highest sequence number done, the failures reported since the
    /// last call (some may be past that number: keep them for the next), and whether the
    /// thread is gone.
    pub fn take(&self) -> (u64, Vec<(u64, WalError)>, bool) {
        let closed = self.closed.load(Ordering::Acquire);
        // Failures are listed before `done` passes them.
        let done = self.done.load(Ordering::Acquire);
        let failed = std::mem::take(&mut *self.failed.lock().unwrap_or_else(PoisonError::into_inner));
        (done, failed, closed)
    }

    fn fail(&self, seq: u64, e: WalError) {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((seq, e));
    }

    fn publish(&self, done: u64) {
        self.done.fetch_max(done, Ordering::Release);
        self.notify.notify_one();
    }
}

/// Tells the submitters that the thread is gone (it ended or panicked): later sends fail,
/// queued messages are dropped (their oneshots report it), sequenced batches fail.
struct CloseAcks(Arc<Shared>, Arc<Queue>);

impl Drop for CloseAcks {
    fn drop(&mut self) {
        drop(self.1.close());
        self.0.acks.closed.store(true, Ordering::Release);
        self.0.acks.notify.notify_one();
    }
}

/// The thread's queue. Messages are pushed under a mutex and taken all at once by swapping
/// the vector; the thread parks when it finds none, and a send unparks it only then. (With
/// std's channel the receiver registered itself under a lock that every send takes too:
/// with one commit at a time the two met at nearly every message and spun.)
struct Queue {
    state: Mutex<QueueState>,
    /// The thread is parked, or about to park: a send must unpark it.
    sleeping: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

#[derive(Default)]
struct QueueState {
    msgs: Vec<Msg>,
    closed: bool,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            state: Mutex::new(QueueState::default()),
            sleeping: AtomicBool::new(false),
            thread: OnceLock::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, m: Msg) -> Result<(), Msg> {
        {
            let mut st = self.lock();
            if st.closed {
                return Err(m);
            }
            st.msgs.push(m);
        }
        // Pairs with the thread's store before its last look (both SeqCst): either it sees
        // the message or this sees it going to sleep.
        if self.sleeping.load(Ordering::SeqCst) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
        Ok(())
    }

    /// Waits until there are messages and moves them all to `into` (empty on entry).
    fn recv_all(&self, into: &mut Vec<Msg>) {
        loop {
            std::mem::swap(&mut self.lock().msgs, into);
            if !into.is_empty() {
                return;
            }
            self.sleeping.store(true, Ordering::SeqCst);
            if self.lock().msgs.is_empty() {
                // An unpark that came first makes this return at once; spurious returns
                // just look again.
                std::thread::park();
            }
            self.sleeping.store(false, Ordering::SeqCst);
        }
    }

    /// Refuses later sends; returns what was queued.
    fn close(&self) -> Vec<Msg> {
        let mut st = self.lock();
        st.closed = true;
        std::mem::take(&mut st.msgs)
    }
}

/// Batches taken into one group at most, so a flood of submits cannot delay completions or
/// grow a group without bound.
const MAX_GROUP: usize = 4096;

enum Msg {
    Write(Vec<Row>, Done<()>),
    /// Several transactions sent with one wakeup of the thread, completed in [`SeqAcks`]:
    /// the rows, and (row count, sequence number) per transaction.
    WriteSeq(Vec<Row>, Vec<(u32, u64)>),
    Rotate(Done<Vclock>),
    Sync(Done<Vclock>),
    Resume,
    CollectGarbage(Box<Vclock>, Done<Vec<PathBuf>>),
    Shutdown,
}

/// State both sides see.
struct Shared {
    stats: Counters,
    /// Vclock of the rows written so far.
    vclock: Mutex<Vclock>,
    warnings: Mutex<Vec<String>>,
    fail_writes: AtomicBool,
    acks: Arc<SeqAcks>,
    /// Each written group's rows, for the relays (`replication::wal_feed`).
    feed: Arc<WalFeed>,
}

impl Shared {
    fn warn(&self, w: String) {
        self.warnings.lock().unwrap_or_else(PoisonError::into_inner).push(w);
    }

    fn set_vclock(&self, v: Vclock) {
        *self.vclock.lock().unwrap_or_else(PoisonError::into_inner) = v;
    }
}

pub struct WalWriter {
    mode: WalMode,
    shared: Arc<Shared>,
    queue: Option<Arc<Queue>>,
    thread: Option<JoinHandle<Result<(), WalError>>>,
}

impl WalWriter {
    /// Starts the writer after recovery: `vclock` is the recovered one. Reopens the xlog named
    /// by it if there is one (renaming it to `.corrupted` if its meta is unreadable).
    pub fn start(cfg: WalConfig, vclock: Vclock) -> Result<WalWriter, WalError> {
        let shared = Arc::new(Shared {
            stats: Counters::default(),
            vclock: Mutex::new(vclock),
            warnings: Mutex::new(Vec::new()),
            fail_writes: AtomicBool::new(false),
            acks: Arc::new(SeqAcks::default()),
            feed: WalFeed::new(vclock),
        });
        if cfg.mode == WalMode::None {
            return Ok(WalWriter {
                mode: cfg.mode,
                shared,
                queue: None,
                thread: None,
            });
        }
        let mut last_file_vclock = None;
        let files = match list_files(&cfg.dir, FileKind::Xlog) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(XlogError::io(&cfg.dir, "error reading directory", &e).into()),
        };
        if let Some((_, path)) = files.last() {
            match XlogReader::open(path) {
                Ok(r) => last_file_vclock = Some(r.meta().vclock),
                Err(e) => shared.warn(format!("{e}")),
            }
        }
        let mut current = None;
        let path = file_name(&cfg.dir, vclock.signature(), FileKind::Xlog);
        if path.exists() {
            match XlogWriter::open_append(&path) {
                Ok(mut w) => {
                    w.compress_blocks();
                    if cfg.mode == WalMode::Fsync {
                        w.use_dsync()?;
                    }
                    current = Some(w)
                }
                Err(e) => {
                    let mut to = path.clone().into_os_string();
                    to.push(".corrupted");
                    shared.warn(format!("{e}; renaming corrupted {}", path.display()));
                    std::fs::rename(&path, &to).map_err(|e| XlogError::io(&path, "failed to rename", &e))?;
                }
            }
        }
        let queue = Arc::new(Queue::new());
        let rx = queue.clone();
        let mut t = Thread {
            cfg: cfg.clone(),
            vclock,
            current,
            last_file_vclock,
            in_rollback: false,
            shared: shared.clone(),
            acked: 0,
        };
        let thread = std::thread::Builder::new()
            .name("wal".into())
            .spawn(move || {
                let _close = CloseAcks(t.shared.clone(), rx.clone());
                t.run(&rx)
            })
            .map_err(|e| XlogError::io(&cfg.dir, "failed to start the WAL thread", &e))?;
        // Set before anyone can send (start has not returned).
        let _ = queue.thread.set(thread.thread().clone());
        Ok(WalWriter {
            mode: cfg.mode,
            shared,
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    pub fn mode(&self) -> WalMode {
        self.mode
    }

    fn send(&self, m: Msg) -> Result<(), Msg> {
        match &self.queue {
            Some(q) => q.send(m),
            None => Err(m),
        }
    }

    /// The rows written, as they are written (what relays send to replicas).
    pub fn feed(&self) -> Arc<WalFeed> {
        self.shared.feed.clone()
    }

    /// The outcomes of the batches given to [`submit_seq`](Self::submit_seq).
    pub fn acks(&self) -> Arc<SeqAcks> {
        self.shared.acks.clone()
    }

    /// Queues several transactions at once: their rows back to back, and for each its row
    /// count and sequence number (increasing from one call to the next), whose outcome
    /// [`acks`](Self::acks) tells. One message and one wakeup of the thread for every commit
    /// of a scheduler round; the thread splits the rows (its allocations, not the caller's).
    pub fn submit_seq(&self, rows: Vec<Row>, batches: Vec<(u32, u64)>) {
        let Some(last) = batches.last().map(|b| b.1) else {
            return;
        };
        if self.mode == WalMode::None {
            drop(self.submit(rows));
            self.shared.acks.publish(last);
            return;
        }
        if let Err(Msg::WriteSeq(_, batches)) = self.send(Msg::WriteSeq(rows, batches)) {
            for (_, seq) in batches {
                self.shared.acks.fail(seq, WalError::Closed);
            }
            self.shared.acks.publish(last);
        }
    }

    /// Queues one transaction's rows (LSNs assigned; a zero timestamp is set to the write
    /// time). Never blocks; the receiver completes once the rows are written (and synced). A
    /// `RecvError` from it means the thread died: treat it as `WalError::Closed`.
    pub fn submit(&self, rows: Vec<Row>) -> oneshot::Receiver<Result<(), WalError>> {
        let (done, rx) = oneshot::channel();
        if self.mode == WalMode::None {
            let mut v = self.shared.vclock.lock().unwrap_or_else(PoisonError::into_inner);
            for r in &rows {
                v.follow(r.replica_id, r.lsn);
            }
            Counters::add(&self.shared.stats.batches, 1);
            Counters::add(&self.shared.stats.rows, rows.len() as u64);
            let _ = done.send(Ok(()));
            return rx;
        }
        if let Err(Msg::Write(_, done)) = self.send(Msg::Write(rows, done)) {
            let _ = done.send(Err(WalError::Closed));
        }
        rx
    }

    /// Closes the current xlog if it has rows (the next write starts a new one) and returns the
    /// vclock of everything queued before: where a checkpoint stands.
    pub fn rotate(&self) -> oneshot::Receiver<Result<Vclock, WalError>> {
        let (done, rx) = oneshot::channel();
        if self.mode == WalMode::None {
            let _ = done.send(Ok(self.vclock()));
        } else if let Err(Msg::Rotate(done)) = self.send(Msg::Rotate(done)) {
            let _ = done.send(Err(WalError::Closed));
        }
        rx
    }

    /// The vclock once everything queued before is written.
    pub fn sync(&self) -> oneshot::Receiver<Result<Vclock, WalError>> {
        let (done, rx) = oneshot::channel();
        if self.mode == WalMode::None {
            let _ = done.send(Ok(self.vclock()));
        } else if let Err(Msg::Sync(done)) = self.send(Msg::Sync(done)) {
            let _ = done.send(Err(WalError::Closed));
        }
        rx
    }

    /// Ends a cascading rollback: batches submitted after this are written again.
    pub fn resume(&self) {
        let _ = self.send(Msg::Resume);
    }

    /// Deletes the xlogs whose rows are all older than `vclock` (the oldest snapshot kept);
    /// returns the files removed.
    pub fn collect_garbage(&self, vclock: Vclock) -> oneshot::Receiver<Result<Vec<PathBuf>, WalError>> {
        let (done, rx) = oneshot::channel();
        if self.mode == WalMode::None {
            let _ = done.send(Ok(Vec::new()));
        } else if let Err(Msg::CollectGarbage(_, done)) = self.send(Msg::CollectGarbage(Box::new(vclock), done)) {
            let _ = done.send(Err(WalError::Closed));
        }
        rx
    }

    /// Vclock of the rows written so far.
    pub fn vclock(&self) -> Vclock {
        *self.shared.vclock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn stats(&self) -> WalStats {
        self.shared.stats.get()
    }

    /// Warnings the thread had no one to tell (a file it could not close cleanly, a corrupted
    /// xlog renamed at start, a file gc could not remove).
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.shared.warnings.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Makes every block write fail as if the disk did (Tarantool's ERRINJ_WAL_WRITE).
    pub fn inject_write_error(&self, on: bool) {
        self.shared.fail_writes.store(on, Ordering::Relaxed);
    }

    /// Writes everything queued, leaves the files closed, joins the thread.
    pub fn shutdown(mut self) -> Result<(), WalError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), WalError> {
        if let Some(q) = self.queue.take() {
            let _ = q.send(Msg::Shutdown);
        }
        match self.thread.take() {
            Some(t) => t.join().unwrap_or(Err(WalError::Closed)),
            None => Ok(()),
        }
    }
}

impl Drop for WalWriter {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

struct Thread {
    cfg: WalConfig,
    /// Vclock of the rows written.
    vclock: Vclock,
    current: Option<XlogWriter>,
    /// The newest xlog's starting vclock: the next file's PrevVClock.
    last_file_vclock: Option<Vclock>,
    in_rollback: bool,
    shared: Arc<Shared>,
    /// The highest sequence number completed (see [`SeqAcks`]).
    acked: u64,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Thread {
    fn run(&mut self, queue: &Queue) -> Result<(), WalError> {
        let mut group = Vec::new();
        let mut msgs = Vec::new();
        let mut stop = false;
        while !stop {
            queue.recv_all(&mut msgs);
            // What follows a shutdown is dropped with the drain (its senders learn it).
            for m in msgs.drain(..) {
                match m {
                    Msg::Write(rows, done) => {
                        group.push((rows, Ack::Done(done)));
                        if group.len() >= MAX_GROUP {
                            self.write_group(std::mem::take(&mut group));
                        }
                    }
                    Msg::WriteSeq(rows, batches) => {
                        let mut rows = rows.into_iter();
                        for (count, seq) in batches {
                            let rows = rows.by_ref().take(count as usize).collect();
                            group.push((rows, Ack::Seq(seq)));
                            if group.len() >= MAX_GROUP {
                                self.write_group(std::mem::take(&mut group));
                            }
                        }
                    }
                    other => {
                        self.write_group(std::mem::take(&mut group));
                        if !self.control(other) {
                            stop = true;
                            break;
                        }
                    }
                }
            }
            self.write_group(std::mem::take(&mut group));
        }
        self.finish()
    }

    /// Handles a message other than a write; false on shutdown.
    fn control(&mut self, m: Msg) -> bool {
        match m {
            Msg::Write(..) | Msg::WriteSeq(..) => {}
            Msg::Rotate(done) => {
                if self.in_rollback {
                    let _ = done.send(Err(WalError::InRollback));
                    return true;
                }
                let has_rows = self
                    .current
                    .as_ref()
                    .is_some_and(|c| c.meta().vclock.signature() != self.vclock.signature());
                if has_rows {
                    self.close_current();
                }
                let _ = done.send(Ok(self.vclock));
            }
            Msg::Sync(done) => {
                let _ = done.send(if self.in_rollback {
                    Err(WalError::Cascade)
                } else {
                    Ok(self.vclock)
                });
            }
            Msg::Resume => self.in_rollback = false,
            Msg::CollectGarbage(v, done) => {
                let _ = done.send(self.collect_garbage(&v));
            }
            Msg::Shutdown => return false,
        }
        true
    }

    fn close_current(&mut self) {
        if let Some(c) = self.current.take() {
            let path = c.path().to_owned();
            if let Err(e) = c.close() {
                self.shared.warn(format!("{}: failed to close: {e}", path.display()));
            }
        }
    }

    fn collect_garbage(&mut self, v: &Vclock) -> Result<Vec<PathBuf>, WalError> {
        let files = list_files(&self.cfg.dir, FileKind::Xlog)
            .map_err(|e| XlogError::io(&self.cfg.dir, "error reading directory", &e))?;
        let sig = v.signature();
        // With no xlog open and everything written covered by `v`, every older file can go;
        // otherwise keep the newest file starting at or before `v`: its rows reach past it.
        let threshold = if self.current.is_none() && sig >= self.vclock.signature() {
            Some(sig)
        } else {
            files.iter().rev().find(|(s, _)| *s <= sig).map(|(s, _)| *s)
        };
        let mut removed = Vec::new();
        let Some(threshold) = threshold else { return Ok(removed) };
        for (s, path) in files {
            if s >= threshold || self.current.as_ref().is_some_and(|c| c.path() == path) {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => self
                    .shared
                    .warn(format!("error while removing {}: {e}", path.display())),
            }
        }
        Ok(removed)
    }

    /// Makes sure an xlog is open for the next group: rotates a full one, creates one if none.
    fn prepare(&mut self) -> Result<(), XlogError> {
        if self.current.as_ref().is_some_and(|c| c.offset() >= self.cfg.max_size) {
            self.close_current();
        }
        if self.current.is_none() {
            let path = file_name(&self.cfg.dir, self.vclock.signature(), FileKind::Xlog);
            let meta = Meta::new(
                FileKind::Xlog,
                self.cfg.instance_uuid,
                self.vclock,
                self.last_file_vclock,
            );
            let mut w = XlogWriter::create(&path, &meta, false)?;
            w.compress_blocks();
            if self.cfg.mode == WalMode::Fsync {
                w.use_dsync()?;
                sync_dir(&self.cfg.dir);
            }
            self.last_file_vclock = Some(self.vclock);
            self.current = Some(w);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<u64, XlogError> {
        let Some(x) = self.current.as_mut() else { return Ok(0) };
        if x.pending_rows() == 0 {
            return Ok(0);
        }
        if self.shared.fail_writes.load(Ordering::Relaxed) {
            x.discard_pending();
            return Err(XlogError::new(
                x.path(),
                Some(x.offset()),
                "failed to write: injected error",
            ));
        }
        let n = x.flush()?;
        Counters::add(&self.shared.stats.writes, 1);
        Counters::add(&self.shared.stats.bytes, n);
        Ok(n)
    }

    fn fail(&mut self, batches: impl IntoIterator<Item = Ack>, first: Option<XlogError>) {
        let mut first = first.map(WalError::Io);
        for ack in batches {
            Counters::add(&self.shared.stats.failed, 1);
            self.ack(ack, Err(first.take().unwrap_or(WalError::Cascade)));
        }
        self.in_rollback = true;
    }

    /// Completes a batch; sequenced ones become visible at the end of the group.
    fn ack(&mut self, ack: Ack, r: Result<(), WalError>) {
        match ack {
            Ack::Done(done) => {
                let _ = done.send(r);
            }
            Ack::Seq(seq) => {
                if let Err(e) = r {
                    self.shared.acks.fail(seq, e);
                }
                self.acked = self.acked.max(seq);
            }
        }
    }

    fn write_group(&mut self, group: Vec<(Vec<Row>, Ack)>) {
        if group.is_empty() {
            return;
        }
        let before = self.acked;
        self.write_batches(group);
        if self.acked > before {
            self.shared.acks.publish(self.acked);
        }
    }

    fn write_batches(&mut self, group: Vec<(Vec<Row>, Ack)>) {
        Counters::add(&self.shared.stats.groups, 1);
        if self.in_rollback {
            self.fail(group.into_iter().map(|(_, d)| d), None);
            return;
        }
        if let Err(e) = self.prepare() {
            self.fail(group.into_iter().map(|(_, d)| d), Some(e));
            return;
        }
        let start = self.current.as_ref().map_or(0, |c| c.offset());
        let ts = now();
        let mut vclock = self.vclock;
        // (batch, rows, vclock after it) flushed / waiting in the current block.
        let mut written: Vec<(Ack, u64)> = Vec::new();
        let mut written_vclock = self.vclock;
        let mut pending: Vec<(Ack, u64)> = Vec::new();
        // The rows themselves go to the relays once written, if any relay reads them.
        let keep_rows = self.shared.feed.has_readers();
        let mut written_rows: Vec<Row> = Vec::new();
        let mut pending_rows: Vec<Row> = Vec::new();
        let mut rest = group.into_iter();
        let mut error = None;
        for (mut rows, done) in rest.by_ref() {
            let Some(x) = self.current.as_mut() else {
                pending.push((done, 0));
                error = Some(XlogError::new(&self.cfg.dir, None, "no xlog open"));
                break;
            };
            for r in rows.iter_mut() {
                if r.timestamp == 0.0 {
                    r.timestamp = ts;
                }
                x.add_row(&r.as_ref());
                vclock.follow(r.replica_id, r.lsn);
            }
            pending.push((done, rows.len() as u64));
            if keep_rows {
                pending_rows.append(&mut rows);
            }
            if x.pending_bytes() >= BLOCK_THRESHOLD {
                match self.flush() {
                    Ok(_) => {
                        written.append(&mut pending);
                        written_rows.append(&mut pending_rows);
                        written_vclock = vclock;
                    }
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
        }
        if error.is_none() {
            match self.flush() {
                Ok(_) => {
                    written.append(&mut pending);
                    written_rows.append(&mut pending_rows);
                    written_vclock = vclock;
                }
                Err(e) => error = Some(e),
            }
        }
        if self.cfg.mode == WalMode::Fsync && !written.is_empty() {
            // An O_DSYNC file's writes are on disk already.
            let synced = match self.current.as_ref() {
                Some(x) if !x.is_dsync() => x.sync(),
                _ => Ok(()),
            };
            Counters::add(&self.shared.stats.fsyncs, 1);
            if let Err(e) = synced {
                // What was written may or may not be on disk: cut it off, so a restart cannot
                // replay transactions we are about to roll back.
                if let Some(x) = self.current.as_mut() {
                    if let Err(t) = x.truncate(start) {
                        self.shared.warn(format!("{t}"));
                    }
                }
                let all = written.into_iter().chain(pending).map(|(d, _)| d);
                let rest = rest.map(|(_, d)| d);
                self.fail(all.chain(rest).collect::<Vec<_>>(), Some(e));
                return;
            }
        }
        let before = std::mem::replace(&mut self.vclock, written_vclock);
        self.shared.set_vclock(written_vclock);
        if before != written_vclock {
            self.shared
                .feed
                .publish(before, written_vclock, keep_rows.then_some(written_rows));
        }
        // Counted before anyone learns of the completion.
        Counters::add(&self.shared.stats.batches, written.len() as u64);
        Counters::add(&self.shared.stats.rows, written.iter().map(|w| w.1).sum());
        for (ack, _) in written {
            self.ack(ack, Ok(()));
        }
        if error.is_some() || !pending.is_empty() {
            let failed: Vec<_> = pending
                .into_iter()
                .map(|(d, _)| d)
                .chain(rest.map(|(_, d)| d))
                .collect();
            self.fail(failed, error);
        }
    }

    /// At shutdown: leave an empty xlog named by the final vclock unless the current one is
    /// exactly that, then close the current one.
    fn finish(&mut self) -> Result<(), WalError> {
        let need_empty = match &self.current {
            None => true,
            Some(c) => c.meta().vclock.signature() != self.vclock.signature(),
        };
        let mut result = Ok(());
        if need_empty {
            let path = file_name(&self.cfg.dir, self.vclock.signature(), FileKind::Xlog);
            if !path.exists() {
                let meta = Meta::new(
                    FileKind::Xlog,
                    self.cfg.instance_uuid,
                    self.vclock,
                    self.last_file_vclock,
                );
                result = XlogWriter::create(&path, &meta, false)
                    .and_then(|w| w.close())
                    .map(|_| ());
            }
        }
        if let Some(c) = self.current.take() {
            let closed = c.close().map(|_| ());
            result = result.and(closed);
        }
        result.map_err(WalError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::super::row::IPROTO_INSERT;
    use super::super::testutil::tmpdir;
    use super::super::xlog::Next;
    use super::*;

    fn cfg(dir: &Path, mode: WalMode) -> WalConfig {
        WalConfig {
            dir: dir.to_owned(),
            mode,
            instance_uuid: Uuid::new_v4(),
            max_size: WalConfig::DEFAULT_MAX_SIZE,
        }
    }

    /// One transaction of `n` rows starting at `lsn`, as the Lua thread would hand it over.
    fn txn(lsn: i64, n: i64) -> Vec<Row> {
        (lsn..lsn + n)
            .map(|l| Row {
                kind: IPROTO_INSERT,
                replica_id: 1,
                lsn: l,
                tsn: lsn,
                is_commit: l == lsn + n - 1,
                body: Row::replace_body(512, &[0x91, 0xcd, (l >> 8) as u8, l as u8]),
                ..Row::default()
            })
            .collect()
    }

    /// Every row of every xlog in `dir`, in file order, with each file's meta.
    fn read_dir(dir: &Path) -> Vec<(i64, Meta, Vec<Row>, usize, bool)> {
        let mut out = Vec::new();
        for (sig, path) in list_files(dir, FileKind::Xlog).unwrap() {
            let mut r = XlogReader::open(&path).unwrap();
            let meta = r.meta().clone();
            let (mut rows, mut blocks) = (Vec::new(), 0);
            let marker = loop {
                match r.next_block().unwrap() {
                    Next::Block(b) => {
                        blocks += 1;
                        rows.extend(b.rows().map(|x| x.unwrap().to_row()));
                    }
                    Next::End { marker } => break marker,
                    Next::Damaged { offset, damage } => panic!("{}: {offset}: {damage}", path.display()),
                }
            };
            out.push((sig, meta, rows, blocks, marker));
        }
        out
    }

    fn lsns(rows: &[Row]) -> Vec<i64> {
        rows.iter().map(|r| r.lsn).collect()
    }

    #[test]
    fn writes_in_order_and_leaves_an_empty_xlog_at_shutdown() {
        let dir = tmpdir("writer-basic");
        let w = WalWriter::start(cfg(&dir, WalMode::Fsync), Vclock::new()).unwrap();
        let rx: Vec<_> = (0..50).map(|i| w.submit(txn(1 + 3 * i, 3))).collect();
        for r in rx {
            r.blocking_recv().unwrap().unwrap();
        }
        assert_eq!(w.vclock().to_string(), "{1: 150}");
        let st = w.stats();
        assert_eq!((st.batches, st.rows, st.failed), (50, 150, 0));
        assert!(st.fsyncs >= 1 && st.fsyncs <= st.groups && st.writes >= st.groups);
        w.shutdown().unwrap();
        let files = read_dir(&dir);
        assert_eq!(files.len(), 2);
        let (sig, meta, rows, _, marker) = &files[0];
        assert_eq!(
            (*sig, meta.vclock.to_string(), meta.prev_vclock, *marker),
            (0, "{}".into(), None, true)
        );
        assert_eq!(lsns(rows), (1..=150).collect::<Vec<_>>());
        assert!(rows.iter().all(|r| r.timestamp > 1e9));
        assert!(rows[2].is_commit && !rows[3].is_commit && rows[3].tsn == 4);
        let (sig, meta, rows, _, marker) = &files[1];
        assert_eq!((*sig, meta.vclock.to_string(), *marker), (150, "{1: 150}".into(), true));
        assert_eq!(meta.prev_vclock.map(|v| v.to_string()), Some("{}".into()));
        assert!(rows.is_empty());
        // The next start reopens that empty xlog instead of making another one.
        let mut v = Vclock::new();
        v.follow(1, 150);
        let w = WalWriter::start(cfg(&dir, WalMode::Write), v).unwrap();
        w.submit(txn(151, 2)).blocking_recv().unwrap().unwrap();
        assert_eq!(w.stats().fsyncs, 0);
        w.shutdown().unwrap();
        let files = read_dir(&dir);
        assert_eq!(files.iter().map(|f| f.0).collect::<Vec<_>>(), vec![0, 150, 152]);
        assert_eq!(lsns(&files[1].2), vec![151, 152]);
        assert!(files[1].4);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Many transactions committing at once share fsyncs.
    #[test]
    fn group_commit_shares_fsyncs() {
        let dir = tmpdir("writer-group");
        let w = Arc::new(WalWriter::start(cfg(&dir, WalMode::Fsync), Vclock::new()).unwrap());
        // All queued before the first completes.
        let rx: Vec<_> = (0..400).map(|i| w.submit(txn(1 + i, 1))).collect();
        for r in rx {
            r.blocking_recv().unwrap().unwrap();
        }
        let st = w.stats();
        assert_eq!(st.batches, 400);
        assert!(st.fsyncs * 4 < st.batches, "{st:?}");
        // Writers each waiting for their own commit before the next, as fibers do.
        let lsn = Arc::new(Mutex::new(400i64));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (w, lsn) = (w.clone(), lsn.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let rx = {
                            // LSNs are assigned and submitted in one step, as on the Lua thread.
                            let mut l = lsn.lock().unwrap();
                            *l += 1;
                            w.submit(txn(*l, 1))
                        };
                        rx.blocking_recv().unwrap().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let st2 = w.stats();
        assert_eq!(st2.batches, 800);
        assert!(st2.fsyncs - st.fsyncs < 400, "{st2:?}");
        eprintln!("group commit: {st:?} then {st2:?}");
        match Arc::try_unwrap(w) {
            Ok(w) => w.shutdown().unwrap(),
            Err(_) => panic!("writer still shared"),
        }
        let rows: Vec<Row> = read_dir(&dir).into_iter().flat_map(|f| f.2).collect();
        assert_eq!(lsns(&rows), (1..=800).collect::<Vec<_>>());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn none_mode_writes_nothing() {
        let dir = tmpdir("writer-none");
        let w = WalWriter::start(cfg(&dir.join("wal"), WalMode::None), Vclock::new()).unwrap();
        w.submit(txn(1, 5)).blocking_recv().unwrap().unwrap();
        assert_eq!(w.rotate().blocking_recv().unwrap().unwrap().to_string(), "{1: 5}");
        assert_eq!((w.stats().batches, w.stats().writes), (1, 0));
        w.shutdown().unwrap();
        assert!(!dir.join("wal").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotate_starts_a_new_xlog_on_the_next_write() {
        let dir = tmpdir("writer-rotate");
        let w = WalWriter::start(cfg(&dir, WalMode::Write), Vclock::new()).unwrap();
        w.submit(txn(1, 4)).blocking_recv().unwrap().unwrap();
        assert_eq!(w.rotate().blocking_recv().unwrap().unwrap().signature(), 4);
        // Nothing written since: the same point, no new file.
        assert_eq!(w.rotate().blocking_recv().unwrap().unwrap().signature(), 4);
        assert_eq!(list_files(&dir, FileKind::Xlog).unwrap().len(), 1);
        w.submit(txn(5, 2)).blocking_recv().unwrap().unwrap();
        assert_eq!(w.sync().blocking_recv().unwrap().unwrap().signature(), 6);
        w.shutdown().unwrap();
        let files = read_dir(&dir);
        assert_eq!(files.iter().map(|f| f.0).collect::<Vec<_>>(), vec![0, 4, 6]);
        assert!(files.iter().all(|f| f.4));
        assert_eq!(files[1].1.prev_vclock.map(|v| v.signature()), Some(0));
        assert_eq!(files[2].1.prev_vclock.map(|v| v.signature()), Some(4));
        assert_eq!(lsns(&files[1].2), vec![5, 6]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn xlogs_rotate_past_max_size() {
        let dir = tmpdir("writer-maxsize");
        let w = WalWriter::start(
            WalConfig {
                max_size: 600,
                ..cfg(&dir, WalMode::Write)
            },
            Vclock::new(),
        )
        .unwrap();
        for i in 0..20 {
            w.submit(txn(1 + 5 * i, 5)).blocking_recv().unwrap().unwrap();
        }
        w.shutdown().unwrap();
        let files = read_dir(&dir);
        assert!(files.len() > 3);
        let mut prev: Option<Vclock> = None;
        for (sig, meta, rows, _, marker) in &files {
            assert!(marker);
            assert_eq!(meta.prev_vclock, prev);
            assert_eq!(meta.vclock.signature(), *sig);
            if let Some(r) = rows.first() {
                assert_eq!(r.lsn, sig + 1);
            }
            prev = Some(meta.vclock);
        }
        let rows: Vec<Row> = files.into_iter().flat_map(|f| f.2).collect();
        assert_eq!(lsns(&rows), (1..=100).collect::<Vec<_>>());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn big_groups_split_into_blocks_at_transaction_boundaries() {
        let dir = tmpdir("writer-blocks");
        let w = WalWriter::start(cfg(&dir, WalMode::Write), Vclock::new()).unwrap();
        // One transaction bigger than a block stays in one block.
        w.submit(txn(1, 20_000)).blocking_recv().unwrap().unwrap();
        let rx: Vec<_> = (0..2000).map(|i| w.submit(txn(20_001 + 10 * i, 10))).collect();
        for r in rx {
            r.blocking_recv().unwrap().unwrap();
        }
        w.shutdown().unwrap();
        let files = read_dir(&dir);
        assert!(files[0].3 > 3, "blocks: {}", files[0].3);
        let mut r = XlogReader::open(&list_files(&dir, FileKind::Xlog).unwrap()[0].1).unwrap();
        let mut first = true;
        while let Next::Block(b) = r.next_block().unwrap() {
            let rows: Vec<_> = b.rows().map(|x| x.unwrap()).collect();
            assert!(rows.last().unwrap().is_commit);
            if first {
                assert_eq!(rows.len(), 20_000);
                first = false;
            } else {
                assert!(b.data.len() < BLOCK_THRESHOLD + 1000);
            }
        }
        assert_eq!(lsns(&files[0].2).len(), 40_000);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_write_error_rolls_back_everything_queued_until_resume() {
        let dir = tmpdir("writer-error");
        let w = WalWriter::start(cfg(&dir, WalMode::Fsync), Vclock::new()).unwrap();
        w.submit(txn(1, 2)).blocking_recv().unwrap().unwrap();
        w.inject_write_error(true);
        let rx: Vec<_> = (0..3).map(|i| w.submit(txn(3 + i, 1))).collect();
        let res: Vec<_> = rx.into_iter().map(|r| r.blocking_recv().unwrap()).collect();
        match &res[0] {
            Err(WalError::Io(e)) => {
                assert!(e.path.ends_with("00000000000000000000.xlog"), "{e}");
                assert!(e.to_string().contains("injected"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        // Whether the three landed in one group or several, all after the first cascade.
        assert!(res[1..].iter().all(|r| r == &Err(WalError::Cascade)), "{res:?}");
        w.inject_write_error(false);
        assert_eq!(w.submit(txn(3, 1)).blocking_recv().unwrap(), Err(WalError::Cascade));
        assert_eq!(w.rotate().blocking_recv().unwrap(), Err(WalError::InRollback));
        w.resume();
        w.submit(txn(3, 1)).blocking_recv().unwrap().unwrap();
        assert_eq!(w.vclock().signature(), 3);
        assert_eq!(w.stats().failed, 4);
        w.shutdown().unwrap();
        let rows: Vec<Row> = read_dir(&dir).into_iter().flat_map(|f| f.2).collect();
        assert_eq!(lsns(&rows), vec![1, 2, 3]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `submit_seq` of transactions given as (rows, sequence number).
    fn submit_seq(w: &WalWriter, txns: Vec<(Vec<Row>, u64)>) {
        let batches = txns.iter().map(|(rows, seq)| (rows.len() as u32, *seq)).collect();
        w.submit_seq(txns.into_iter().flat_map(|t| t.0).collect(), batches);
    }

    /// Waits until the sequenced batches up to `seq` are complete; returns the failures.
    fn acked(w: &WalWriter, seq: u64) -> Vec<(u64, WalError)> {
        let mut failed = Vec::new();
        loop {
            let (done, f, closed) = w.acks().take();
            failed.extend(f);
            if done >= seq || closed {
                return failed;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn sequenced_batches_complete_in_order_and_list_their_failures() {
        let dir = tmpdir("writer-seq");
        let w = WalWriter::start(cfg(&dir, WalMode::Write), Vclock::new()).unwrap();
        submit_seq(&w, vec![(txn(1, 2), 1), (txn(3, 1), 2)]);
        assert_eq!(acked(&w, 2), vec![]);
        w.inject_write_error(true);
        submit_seq(&w, vec![(txn(4, 1), 3), (txn(5, 1), 4)]);
        let failed = acked(&w, 4);
        assert_eq!(failed.iter().map(|f| f.0).collect::<Vec<_>>(), vec![3, 4]);
        assert!(matches!(failed[0].1, WalError::Io(_)), "{failed:?}");
        assert_eq!(failed[1].1, WalError::Cascade);
        w.inject_write_error(false);
        w.resume();
        submit_seq(&w, vec![(txn(4, 1), 5)]);
        assert_eq!(acked(&w, 5), vec![]);
        assert_eq!(w.vclock().signature(), 4);
        let acks = w.acks();
        w.shutdown().unwrap();
        // A thread that is gone says so, and nothing more completes.
        assert!(acks.take().2);
        let rows: Vec<Row> = read_dir(&dir).into_iter().flat_map(|f| f.2).collect();
        assert_eq!(lsns(&rows), vec![1, 2, 3, 4]);
        let commits: Vec<bool> = rows.iter().map(|r| r.is_commit).collect();
        assert_eq!(commits, vec![false, true, true, true]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unusable_wal_dir_fails_the_write_and_names_the_path() {
        let dir = tmpdir("writer-baddir");
        let file = dir.join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        match WalWriter::start(cfg(&file, WalMode::Write), Vclock::new()) {
            Err(WalError::Io(e)) => assert_eq!(e.path, file),
            other => panic!("{:?}", other.err()),
        }
        // Missing at start is fine (it is created on the first write), unusable by then is not.
        std::fs::remove_file(&file).unwrap();
        let w = WalWriter::start(cfg(&file, WalMode::Write), Vclock::new()).unwrap();
        std::fs::write(&file, b"x").unwrap();
        let rx: Vec<_> = (0..2).map(|i| w.submit(txn(1 + i, 1))).collect();
        let res: Vec<_> = rx.into_iter().map(|r| r.blocking_recv().unwrap()).collect();
        match &res[0] {
            Err(e @ WalError::Io(x)) => assert!(x.path.starts_with(&file), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(res[1], Err(WalError::Cascade));
        assert!(w.shutdown().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn submits_after_the_thread_is_gone_fail_with_closed() {
        let dir = tmpdir("writer-closed");
        let mut w = WalWriter::start(cfg(&dir, WalMode::Write), Vclock::new()).unwrap();
        w.stop().unwrap();
        assert_eq!(w.submit(txn(1, 1)).blocking_recv().unwrap(), Err(WalError::Closed));
        assert_eq!(w.rotate().blocking_recv().unwrap(), Err(WalError::Closed));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
