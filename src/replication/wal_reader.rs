//! Reading the xlog files for a relay that is behind the feed's tail (`wal_feed.rs`): a
//! replica that reconnects after a restart, or one that fell behind the tail's capacity.
//!
//! A *pass* runs on its own thread (the Lua thread never waits for the disk) and sends the
//! rows a reader lacks, in WAL order, through a small channel: the thread blocks while the
//! relay is busy sending, so a replica far behind costs a few batches of memory, not its
//! whole backlog. A pass reads only what the WAL had written when it began (`upto`): a row
//! past that may still be lost by a failed write, and the feed will hand it over anyway.
//!
//! Where to start is Tarantool's rule (`recovery_open_log`): the newest file whose starting
//! vclock the reader already has; every row before that file is one it has. From there
//! rows it has are skipped. Consecutive files must join up (each starts where the previous
//! one ended); a reader behind the oldest file, or a missing file in between, is 2.6's
//! `Missing .xlog file between LSN ...`.

use std::fmt;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::wal_feed::covers;
use crate::box_::wal::row::Row;
use crate::box_::wal::vclock::Vclock;
use crate::box_::wal::xlog::{list_files, FileKind, Next, XlogError, XlogReader};

/// Bytes of rows per message to the relay. Nothing special in the value: big enough that
/// a channel hop per batch is noise, small enough that two in flight cost little.
const BATCH_BYTES: usize = 128 * 1024;
/// Batches in flight between the thread and the relay.
const CHANNEL_DEPTH: usize = 2;

#[derive(Debug, Clone, PartialEq)]
pub enum PassError {
    /// Rows between `from` and `to` are in no file (removed, or never there).
    Gap { from: Box<Vclock>, to: Box<Vclock> },
    /// A file could not be read.
    File(String),
}

impl fmt::Display for PassError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassError::Gap { from, to } => write!(
                f,
                "Missing .xlog file between LSN {} {from} and {} {to}",
                from.signature(),
                to.signature()
            ),
            PassError::File(e) => f.write_str(e),
        }
    }
}

impl PassError {
    pub fn gap(from: Vclock, to: Vclock) -> PassError {
        PassError::Gap {
            from: Box::new(from),
            to: Box::new(to),
        }
    }
}

impl From<XlogError> for PassError {
    fn from(e: XlogError) -> PassError {
        PassError::File(e.to_string())
    }
}

/// What a pass reports, in order.
#[derive(Debug)]
pub enum Piece {
    /// A file is being read (Tarantool logs `recover from <file>`).
    Opened(PathBuf),
    Rows(Vec<Row>),
}

/// A pass in progress. The channel closes when it is done; dropping this stops it.
pub struct FilePass {
    pub rx: mpsc::Receiver<Result<Piece, PassError>>,
    /// What the WAL had written when the pass began: after it the reader has all that.
    pub upto: Vclock,
}

/// Starts a pass over the xlogs in `dir` for a reader that has `have`, up to `upto`.
pub fn start_pass(dir: PathBuf, have: Vclock, upto: Vclock) -> FilePass {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let spawned = std::thread::Builder::new().name("relay_wal".into()).spawn({
        let tx = tx.clone();
        move || {
            let mut out = Output {
                tx: &tx,
                batch: Vec::new(),
                bytes: 0,
            };
            let result = read_files(&dir, have, upto, &mut out);
            // The rows read before an error are good: they go first.
            if out.flush() {
                if let Err(e) = result {
                    let _ = tx.blocking_send(Err(e));
                }
            }
        }
    });
    if let Err(e) = spawned {
        let _ = tx.try_send(Err(PassError::File(format!("failed to start a WAL reader: {e}"))));
    }
    FilePass { rx, upto }
}

/// Rows on their way to the relay, in batches.
struct Output<'a> {
    tx: &'a mpsc::Sender<Result<Piece, PassError>>,
    batch: Vec<Row>,
    bytes: usize,
}

impl Output<'_> {
    /// False when the relay is gone.
    fn send(&mut self, piece: Piece) -> bool {
        self.flush() && self.tx.blocking_send(Ok(piece)).is_ok()
    }

    fn push(&mut self, row: Row) -> bool {
        self.bytes += row.body.len() + 32;
        self.batch.push(row);
        self.bytes < BATCH_BYTES || self.flush()
    }

    fn flush(&mut self) -> bool {
        self.bytes = 0;
        if self.batch.is_empty() {
            return true;
        }
        self.tx
            .blocking_send(Ok(Piece::Rows(std::mem::take(&mut self.batch))))
            .is_ok()
    }
}

/// The pass itself; it ends early, with no error, when the relay is gone.
fn read_files(dir: &Path, mut have: Vclock, upto: Vclock, out: &mut Output) -> Result<(), PassError> {
    if covers(&have, &upto) {
        return Ok(());
    }
    let files = list_files(dir, FileKind::Xlog)
        .map_err(|e| PassError::File(format!("{}: error reading directory: {e}", dir.display())))?;
    // The newest file the reader has the start of.
    let mut first = None;
    let mut oldest = upto;
    for (i, (_, path)) in files.iter().enumerate().rev() {
        let reader = XlogReader::open(path)?;
        if covers(&have, &reader.meta().vclock) {
            first = Some((i, reader));
            break;
        }
        oldest = reader.meta().vclock;
    }
    let Some((first_index, mut reader)) = first else {
        return Err(PassError::gap(have, oldest));
    };
    let upto_signature = upto.signature();
    let mut position = reader.meta().vclock;
    'files: for (i, (_, path)) in files.iter().enumerate().skip(first_index) {
        if i > first_index {
            reader = XlogReader::open(path)?;
            let start = reader.meta().vclock;
            if start.signature() != position.signature() {
                return Err(PassError::gap(position, start));
            }
        }
        if !out.send(Piece::Opened(path.clone())) {
            return Ok(());
        }
        loop {
            let block = match reader.next_block() {
                Ok(Next::Block(b)) => b,
                Ok(Next::End { .. }) => break,
                Ok(Next::Damaged { offset, damage }) => {
                    return Err(XlogError::new(path, Some(offset), damage.to_string()).into())
                }
                Err(e) => return Err(XlogError::io(path, "failed to read file", &e).into()),
            };
            for row in block.rows() {
                let row = row.map_err(|e| XlogError::new(path, Some(block.offset), e.to_string()))?;
                position.follow(row.replica_id, row.lsn);
                if position.signature() > upto_signature {
                    break 'files;
                }
                // Local rows (component 0) never leave the instance.
                if row.replica_id != 0 && row.lsn > have.get(row.replica_id) {
                    have.follow(row.replica_id, row.lsn);
                    if !out.push(row.to_row()) {
                        return Ok(());
                    }
                }
                if position.signature() == upto_signature {
                    break 'files;
                }
            }
        }
    }
    Ok(())
}

/// The oldest row the WAL still has, as Tarantool's `gc.vclock` after start: the first
/// xlog's vclock, or (no xlogs) the newest snapshot's. For the ballot.
pub fn oldest_vclock(wal_dir: &Path, memtx_dir: &Path) -> Vclock {
    let meta = |path: &Path| XlogReader::open(path).ok().map(|r| r.meta().vclock);
    if let Some(v) = list_files(wal_dir, FileKind::Xlog)
        .ok()
        .and_then(|f| f.first().and_then(|(_, p)| meta(p)))
    {
        return v;
    }
    list_files(memtx_dir, FileKind::Snap)
        .ok()
        .and_then(|f| f.last().and_then(|(_, p)| meta(p)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::box_::wal::row::IPROTO_INSERT;
    use crate::box_::wal::testutil::tmpdir;
    use crate::box_::wal::writer::{WalConfig, WalMode, WalWriter};

    fn vclock(parts: &[(u32, i64)]) -> Vclock {
        let mut v = Vclock::new();
        for &(id, lsn) in parts {
            v.follow(id, lsn);
        }
        v
    }

    fn row(replica_id: u32, lsn: i64) -> Row {
        Row {
            kind: IPROTO_INSERT,
            replica_id,
            lsn,
            tsn: lsn,
            is_commit: true,
            body: Row::replace_body(512, &[0x91, (lsn & 0x7f) as u8]),
            ..Row::default()
        }
    }

    fn writer(dir: &Path, max_size: u64) -> WalWriter {
        let cfg = WalConfig {
            dir: dir.to_owned(),
            mode: WalMode::Write,
            instance_uuid: uuid::Uuid::new_v4(),
            max_size,
        };
        WalWriter::start(cfg, Vclock::new()).unwrap()
    }

    fn write(w: &WalWriter, rows: Vec<Row>) {
        let rx = w.submit(rows);
        rx.blocking_recv().unwrap().unwrap();
    }

    /// Runs a pass to its end: the rows' (replica, lsn), the files opened, the error.
    fn run(dir: &Path, have: Vclock, upto: Vclock) -> (Vec<(u32, i64)>, usize, Option<PassError>) {
        let mut pass = start_pass(dir.to_owned(), have, upto);
        let (mut rows, mut files, mut error) = (Vec::new(), 0, None);
        while let Some(piece) = pass.rx.blocking_recv() {
            match piece {
                Ok(Piece::Rows(r)) => rows.extend(r.iter().map(|r| (r.replica_id, r.lsn))),
                Ok(Piece::Opened(_)) => files += 1,
                Err(e) => error = Some(e),
            }
        }
        (rows, files, error)
    }

    fn ones(from: i64, to: i64) -> Vec<(u32, i64)> {
        (from..=to).map(|l| (1, l)).collect()
    }

    #[test]
    fn a_pass_crosses_rotations_and_skips_what_the_reader_has() {
        let dir = tmpdir("relay-pass-rotate");
        // 2 KB files: each few groups rotate (and bigger groups are zstd-compressed).
        let w = writer(&dir, 2048);
        for lsn in (1..=400).step_by(20) {
            write(&w, (lsn..lsn + 20).map(|l| row(1, l)).collect());
        }
        let upto = w.vclock();
        assert_eq!(upto, vclock(&[(1, 400)]));
        assert!(list_files(&dir, FileKind::Xlog).unwrap().len() > 3);
        let (rows, files, error) = run(&dir, Vclock::new(), upto);
        assert_eq!(error, None);
        assert_eq!(rows, ones(1, 400));
        let all_files = files;
        // From the middle: fewer files, no row twice, none missing.
        let (rows, files, error) = run(&dir, vclock(&[(1, 250)]), upto);
        assert_eq!((rows, error), (ones(251, 400), None));
        assert!(files < all_files);
        // Only up to what the WAL had written when the pass began.
        let (rows, _, _) = run(&dir, vclock(&[(1, 100)]), vclock(&[(1, 130)]));
        assert_eq!(rows, ones(101, 130));
        // Nothing to do.
        assert_eq!(run(&dir, upto, upto), (vec![], 0, None));
        w.shutdown().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rows_of_other_instances_are_filtered_by_their_own_component() {
        let dir = tmpdir("relay-pass-mixed");
        let w = writer(&dir, 1 << 20);
        // This instance (1), a peer's rows applied here (2), and a local row (0).
        write(&w, vec![row(1, 1), row(2, 1)]);
        write(&w, vec![row(0, 1), row(2, 2), row(1, 2)]);
        write(&w, vec![row(2, 3), row(1, 3)]);
        let upto = w.vclock();
        // The peer itself has its own rows: it gets only instance 1's.
        let (rows, _, error) = run(&dir, vclock(&[(2, 3)]), upto);
        assert_eq!(error, None);
        assert_eq!(rows, vec![(1, 1), (1, 2), (1, 3)]);
        // A replica that has 1: 2 and 2: 1 gets 2: 2, 2: 3 and 1: 3; never the local row.
        let (rows, _, _) = run(&dir, vclock(&[(1, 2), (2, 1)]), upto);
        assert_eq!(rows, vec![(2, 2), (2, 3), (1, 3)]);
        w.shutdown().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_files_are_2_6_gap_errors() {
        let dir = tmpdir("relay-pass-gap");
        let w = writer(&dir, 1024);
        for lsn in (1..=200).step_by(10) {
            write(&w, (lsn..lsn + 10).map(|l| row(1, l)).collect());
        }
        let upto = w.vclock();
        w.shutdown().unwrap();
        let files = list_files(&dir, FileKind::Xlog).unwrap();
        assert!(files.len() > 4);
        // A file in the middle is gone.
        std::fs::remove_file(&files[2].1).unwrap();
        let (rows, _, error) = run(&dir, Vclock::new(), upto);
        let Some(PassError::Gap { from, to }) = error else {
            panic!("no gap reported: {error:?}")
        };
        assert_eq!(rows.last(), Some(&(1, from.get(1))));
        assert!(to.get(1) > from.get(1));
        // The oldest ones are gone: a reader from the start cannot catch up.
        std::fs::remove_file(&files[0].1).unwrap();
        let (rows, _, error) = run(&dir, Vclock::new(), upto);
        assert!(rows.is_empty());
        let text = error.unwrap().to_string();
        assert!(text.starts_with("Missing .xlog file between LSN 0 {} and "), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_file_is_reported_with_its_name() {
        let dir = tmpdir("relay-pass-damaged");
        let w = writer(&dir, 1 << 20);
        for lsn in 1..=5 {
            write(&w, vec![row(1, lsn)]);
        }
        let upto = w.vclock();
        w.shutdown().unwrap();
        let (_, path) = list_files(&dir, FileKind::Xlog).unwrap().remove(0);
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len();
        bytes[len - 10] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let (rows, _, error) = run(&dir, Vclock::new(), upto);
        assert_eq!(rows, ones(1, 4));
        let text = error.unwrap().to_string();
        assert!(text.contains("00000000000000000000.xlog"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_oldest_row_kept_is_the_first_xlogs_start() {
        let dir = tmpdir("relay-oldest");
        assert_eq!(oldest_vclock(&dir, &dir), Vclock::new());
        let w = writer(&dir, 512);
        for lsn in 1..=50 {
            write(&w, vec![row(1, lsn)]);
        }
        w.shutdown().unwrap();
        let files = list_files(&dir, FileKind::Xlog).unwrap();
        std::fs::remove_file(&files[0].1).unwrap();
        let second = XlogReader::open(&files[1].1).unwrap().meta().vclock;
        assert!(second.get(1) > 0);
        assert_eq!(oldest_vclock(&dir, &dir), second);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
