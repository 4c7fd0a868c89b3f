//! The rows a replica lacks, in WAL order, from wherever they are: the feed's tail in
//! memory (`wal_feed.rs`) or, while the replica is behind it, the xlog files
//! (`wal_reader.rs`).
//!
//! The stream keeps `have`, the vclock of what its reader has: it starts as the replica's
//! vclock and follows every row handed over. A row is handed over when its LSN is above
//! `have`'s component for its instance, so reading the same stretch twice (from a file, then
//! from the tail) hands nothing over twice, and a switch from files to the tail is safe as
//! soon as the tail covers `have` (every row before the tail is in `have`). Local rows
//! (instance 0) are never handed over.
//!
//! The feed's reader is taken when the stream is made, before anything is read: from then
//! on every group the WAL writes is either in the tail or was written before the stream
//! looked at the files, which is what makes the switch gap-free.

use std::path::PathBuf;
use std::sync::Arc;

use super::wal_feed::{covers, FeedReader, WalFeed, WrittenGroup};
use super::wal_reader::{start_pass, FilePass, PassError, Piece};
use crate::box_::wal::row::Row;
use crate::box_::wal::vclock::Vclock;

/// Bytes of rows taken from the tail at once: what a relay encodes between two yields.
const TAKE_BUDGET: usize = 256 * 1024;

enum Source {
    /// Not decided: the tail if it covers `have`, else the files.
    Undecided,
    /// Reading the tail: the next group's seq.
    Tail(u64),
    Files(Box<FilePass>),
}

pub struct WalStream {
    feed: FeedReader,
    wal_dir: PathBuf,
    have: Vclock,
    source: Source,
    /// Rows received and not yet handed over: a file batch, or tail groups.
    from_files: Vec<Row>,
    from_tail: Vec<Arc<WrittenGroup>>,
    /// Files opened since the last look, for the log.
    opened: Vec<PathBuf>,
}

impl WalStream {
    /// A stream for a reader that has `have`, of the WAL in `wal_dir` fed by `feed`.
    pub fn new(feed: &Arc<WalFeed>, wal_dir: PathBuf, have: Vclock) -> WalStream {
        WalStream {
            feed: feed.reader(),
            wal_dir,
            have,
            source: Source::Undecided,
            from_files: Vec::new(),
            from_tail: Vec::new(),
            opened: Vec::new(),
        }
    }

    /// Starts over from `have` (a JOIN takes the feed's reader first and learns where its
    /// read view stands afterwards).
    pub fn start_from(&mut self, have: Vclock) {
        self.have = have;
        self.source = Source::Undecided;
        self.from_files.clear();
        self.from_tail.clear();
    }

    /// What the reader has: its vclock at the start and every row handed over since.
    pub fn have(&self) -> &Vclock {
        &self.have
    }

    /// What the WAL has written so far.
    pub fn written(&self) -> Vclock {
        self.feed.written()
    }

    /// Files the stream opened since the last call.
    pub fn take_opened(&mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.opened)
    }

    /// Whether rows are waiting to be taken.
    pub fn is_ready(&self) -> bool {
        !self.from_files.is_empty() || !self.from_tail.is_empty()
    }

    /// Waits until there are rows to take. Cancel-safe: a cancelled wait loses nothing.
    pub async fn ready(&mut self) -> Result<(), PassError> {
        loop {
            if self.is_ready() {
                return Ok(());
            }
            match &mut self.source {
                Source::Undecided => {
                    self.source = match self.feed.attach(&self.have) {
                        Some(seq) => Source::Tail(seq),
                        None => Source::Files(Box::new(start_pass(
                            self.wal_dir.clone(),
                            self.have,
                            self.feed.written(),
                        ))),
                    };
                }
                Source::Tail(next) => {
                    let wanted = *next;
                    if self.feed.groups_from(wanted, TAKE_BUDGET, &mut self.from_tail).is_err() {
                        // Dropped from the tail before we read it: back to the files.
                        self.source = Source::Undecided;
                        continue;
                    }
                    match self.from_tail.last() {
                        Some(g) => *next = g.seq + 1,
                        None => self.feed.changed().await,
                    }
                }
                Source::Files(pass) => match pass.rx.recv().await {
                    Some(Ok(Piece::Rows(rows))) => self.from_files = rows,
                    Some(Ok(Piece::Opened(path))) => self.opened.push(path),
                    Some(Err(e)) => return Err(e),
                    None => {
                        // The pass read everything written when it began: the reader must
                        // have it all now, or some file was missing.
                        let upto = pass.upto;
                        if !covers(&self.have, &upto) {
                            return Err(PassError::gap(self.have, upto));
                        }
                        self.source = Source::Undecided;
                    }
                },
            }
        }
    }

    /// Hands the rows waiting (see [`ready`](Self::ready)) that the reader lacks to `each`,
    /// in WAL order; each joins `have`.
    pub fn take(&mut self, mut each: impl FnMut(&Row)) {
        let have = &mut self.have;
        let mut offer = |row: &Row| {
            if row.replica_id != 0 && row.lsn > have.get(row.replica_id) {
                have.follow(row.replica_id, row.lsn);
                each(row);
            }
        };
        for row in self.from_files.drain(..) {
            offer(&row);
        }
        for group in self.from_tail.drain(..) {
            group.rows.iter().for_each(&mut offer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::box_::wal::row::IPROTO_INSERT;
    use crate::box_::wal::testutil::tmpdir;
    use crate::box_::wal::writer::{WalConfig, WalMode, WalWriter};
    use crate::box_::wal::xlog::{list_files, FileKind};
    use std::time::Duration;

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
            body: Row::replace_body(512, &[0x92, 0x01, 0xa4, b'd', b'a', b't', b'a']),
            ..Row::default()
        }
    }

    fn writer(dir: &std::path::Path, max_size: u64, start: Vclock) -> WalWriter {
        let cfg = WalConfig {
            dir: dir.to_owned(),
            mode: WalMode::Write,
            instance_uuid: uuid::Uuid::new_v4(),
            max_size,
        };
        WalWriter::start(cfg, start).unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Reads the stream until `n` rows came (or a second passes without any).
    async fn read(stream: &mut WalStream, n: usize) -> Result<Vec<(u32, i64)>, PassError> {
        let mut got = Vec::new();
        while got.len() < n {
            match tokio::time::timeout(Duration::from_secs(5), stream.ready()).await {
                Ok(r) => r?,
                Err(_) => break,
            }
            stream.take(|r| got.push((r.replica_id, r.lsn)));
        }
        Ok(got)
    }

    fn ones(from: i64, to: i64) -> Vec<(u32, i64)> {
        (from..=to).map(|l| (1, l)).collect()
    }

    #[test]
    fn a_reader_far_behind_reads_files_then_the_tail_while_writes_go_on() {
        let dir = tmpdir("stream-far-behind");
        let w = writer(&dir, 4096, Vclock::new());
        // History written before anyone reads the feed: only in the files.
        for lsn in (1..=2000).step_by(50) {
            w.submit((lsn..lsn + 50).map(|l| row(1, l)).collect())
                .blocking_recv()
                .unwrap()
                .unwrap();
        }
        assert!(list_files(&dir, FileKind::Xlog).unwrap().len() > 5);
        let feed = w.feed();
        let mut stream = WalStream::new(&feed, dir.clone(), Vclock::new());
        // Writes race with the reading: a thread keeps writing meanwhile.
        let w = Arc::new(w);
        let racer = {
            let w = w.clone();
            std::thread::spawn(move || {
                for lsn in 2001..=3000 {
                    let done = w.submit(vec![row(1, lsn)]);
                    if lsn % 7 == 0 {
                        done.blocking_recv().unwrap().unwrap();
                    }
                }
            })
        };
        let got = runtime().block_on(read(&mut stream, 3000)).unwrap();
        racer.join().unwrap();
        assert_eq!(got, ones(1, 3000));
        assert_eq!(stream.have(), &vclock(&[(1, 3000)]));
        assert!(!stream.take_opened().is_empty(), "the history came from files");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reader_that_falls_out_of_the_tail_goes_back_to_the_files() {
        let dir = tmpdir("stream-lagged");
        let start = vclock(&[(1, 0)]);
        let cfg = WalConfig {
            dir: dir.clone(),
            mode: WalMode::Write,
            instance_uuid: uuid::Uuid::new_v4(),
            max_size: 1 << 20,
        };
        let w = WalWriter::start(cfg, start).unwrap();
        let feed = w.feed();
        let rt = runtime();
        let mut stream = WalStream::new(&feed, dir.clone(), Vclock::new());
        w.submit(vec![row(1, 1)]).blocking_recv().unwrap().unwrap();
        assert_eq!(rt.block_on(read(&mut stream, 1)).unwrap(), ones(1, 1));
        assert!(stream.take_opened().is_empty(), "caught up through the tail alone");
        // 20 MB of rows while the reader does not read: more than the tail keeps.
        let big = |lsn| Row {
            body: Row::replace_body(512, &[vec![0x91, 0xc5, 0x40, 0x00], vec![7u8; 0x4000]].concat()),
            ..row(1, lsn)
        };
        for lsn in (2..1300).step_by(100) {
            w.submit((lsn..lsn + 100).map(big).collect())
                .blocking_recv()
                .unwrap()
                .unwrap();
        }
        let got = rt.block_on(read(&mut stream, 1300)).unwrap();
        assert!(
            got == ones(2, 1301),
            "{} rows, {:?}..{:?}",
            got.len(),
            got.first(),
            got.last()
        );
        assert!(!stream.take_opened().is_empty(), "the dropped part came from files");
        drop(w);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rows_the_reader_has_or_that_are_local_are_skipped() {
        let dir = tmpdir("stream-filter");
        let w = writer(&dir, 1 << 20, Vclock::new());
        let feed = w.feed();
        // A replica (2) that has its own rows and this instance's rows up to 2.
        let mut stream = WalStream::new(&feed, dir.clone(), vclock(&[(1, 2), (2, 2)]));
        for rows in [
            vec![row(1, 1), row(2, 1)],
            vec![row(0, 1), row(1, 2), row(2, 2)],
            vec![row(1, 3), row(0, 2), row(2, 3)],
        ] {
            w.submit(rows).blocking_recv().unwrap().unwrap();
        }
        let got = runtime().block_on(read(&mut stream, 2)).unwrap();
        assert_eq!(got, vec![(1, 3), (2, 3)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reader_behind_removed_files_gets_a_gap_error() {
        let dir = tmpdir("stream-gap");
        let w = writer(&dir, 512, Vclock::new());
        for lsn in 1..=100 {
            w.submit(vec![row(1, lsn)]).blocking_recv().unwrap().unwrap();
        }
        let files = list_files(&dir, FileKind::Xlog).unwrap();
        assert!(files.len() > 2);
        std::fs::remove_file(&files[0].1).unwrap();
        let mut stream = WalStream::new(&w.feed(), dir.clone(), Vclock::new());
        let err = runtime().block_on(read(&mut stream, 100)).unwrap_err();
        assert!(matches!(err, PassError::Gap { .. }), "{err}");
        // One that has the removed rows is served.
        let mut stream = WalStream::new(&w.feed(), dir.clone(), vclock(&[(1, 99)]));
        assert_eq!(runtime().block_on(read(&mut stream, 1)).unwrap(), ones(100, 100));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
