//! Recovery: the newest snapshot, then the xlogs from the one holding the snapshot's vclock
//! onward, streaming rows to a callback and maintaining the vclock (Tarantool's
//! `recovery.cc` and `memtx_engine_recover_snapshot`).
//!
//! Damage policy. The last xlog may end in a torn write (a crash mid-write: a short block, or
//! a bad checksum, with nothing valid after it): the file is cut at the last good block and a
//! warning names file and offset. Damage anywhere else (a bad block with valid data after
//! it, data after the EOF marker, a bad row inside a good block, a torn non-last file, a
//! missing xlog) stops recovery with an error naming file and offset, unless `force_recovery`
//! is set: then the damaged part is skipped and a warning says what was lost.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::row::RowRef;
use super::snapshot::{read_snapshot, remove_inprogress};
use super::vclock::{Vclock, VCLOCK_MAX};
use super::xlog::{list_files, Damage, FileKind, Meta, Next, Resync, XlogError, XlogReader};

#[derive(Debug, Clone)]
pub struct RecoveryOptions {
    pub memtx_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub force_recovery: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A snapshot row; its `lsn` is its ordinal in the file.
    Snapshot,
    /// An xlog row not covered by the snapshot.
    Wal,
}

#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// Where the data stands: the snapshot's vclock advanced by every xlog row applied.
    pub vclock: Vclock,
    /// The snapshot recovered from and its vclock.
    pub snapshot: Option<(PathBuf, Vclock)>,
    /// From the snapshot, else from the first xlog.
    pub instance_uuid: Option<Uuid>,
    pub snapshot_rows: u64,
    pub wal_rows: u64,
    pub warnings: Vec<String>,
}

fn list(dir: &Path, kind: FileKind) -> Result<Vec<(i64, PathBuf)>, XlogError> {
    match list_files(dir, kind) {
        Ok(v) => Ok(v),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(XlogError::io(dir, "error reading directory", &e)),
    }
}

struct Run<'a, F> {
    force: bool,
    out: &'a mut Recovered,
    on_row: F,
}

impl<F> Run<'_, F>
where
    F: FnMut(Source, &RowRef<'_>) -> Result<(), String>,
{
    /// An error, or under `force_recovery` a warning.
    fn problem(&mut self, e: XlogError, skipping: &str) -> Result<(), XlogError> {
        if !self.force {
            return Err(e);
        }
        self.out.warnings.push(format!("{e}; {skipping}"));
        Ok(())
    }

    fn apply(&mut self, path: &Path, block: u64, row: &RowRef<'_>) -> Result<(), XlogError> {
        if row.replica_id as usize >= VCLOCK_MAX {
            let e = XlogError::new(
                path,
                Some(block),
                format!("invalid replica id {} in a row", row.replica_id),
            );
            return self.problem(e, "skipping the row");
        }
        if row.lsn <= self.out.vclock.get(row.replica_id) {
            return Ok(());
        }
        self.out.vclock.follow(row.replica_id, row.lsn);
        if let Err(m) = (self.on_row)(Source::Wal, row) {
            let e = XlogError::new(
                path,
                Some(block),
                format!("can't apply row {{{}: {}}}: {m}", row.replica_id, row.lsn),
            );
            return self.problem(e, "skipping the row");
        }
        self.out.wal_rows += 1;
        Ok(())
    }

    fn xlog(&mut self, path: &Path, is_last: bool) -> Result<(), XlogError> {
        let mut r = XlogReader::open(path)?;
        let io = |e: std::io::Error| XlogError::io(path, "failed to read file", &e);
        loop {
            let (offset, damage) = match r.next_block().map_err(io)? {
                Next::Block(b) => {
                    let offset = b.offset;
                    for row in b.rows() {
                        match row {
                            Ok(row) => self.apply(path, offset, &row)?,
                            Err(e) => {
                                let e = XlogError::new(path, Some(offset), format!("can't parse row: {e}"));
                                self.problem(e, "skipping the rest of the block")?;
                                break;
                            }
                        }
                    }
                    continue;
                }
                Next::End { marker } => {
                    if !marker {
                        self.out
                            .warnings
                            .push(format!("file `{}` wasn't correctly closed", path.display()));
                    }
                    return Ok(());
                }
                Next::Damaged { offset, damage } => (offset, damage),
            };
            if damage == Damage::AfterEof {
                return self.problem(XlogError::new(path, Some(offset), damage.to_string()), "ignoring it");
            }
            match r.resync(offset).map_err(io)? {
                None if is_last => {
                    let dropped = r.len() - offset;
                    r.truncate(offset)?;
                    self.out.warnings.push(format!(
                        "{}: torn write at offset {offset} ({damage}): truncated the file there, {dropped} bytes dropped",
                        path.display()
                    ));
                    return Ok(());
                }
                None => {
                    return self.problem(
                        XlogError::new(path, Some(offset), damage.to_string()),
                        "skipping the rest of the file",
                    );
                }
                Some(Resync::Block(to) | Resync::EofMarker(to)) => {
                    let e = XlogError::new(
                        path,
                        Some(offset),
                        format!("{damage}, valid data follows at offset {to}"),
                    );
                    self.problem(e, &format!("skipping {} bytes", to - offset))?;
                    r.seek(to);
                }
            }
        }
    }
}

fn gap(from: &Vclock, to: &Vclock) -> String {
    format!(
        "Missing .xlog file between LSN {} {from} and {} {to}",
        from.signature(),
        to.signature()
    )
}

/// Recovers `memtx_dir` and `wal_dir`: `on_row` gets every snapshot row, then every xlog row
/// past the snapshot. An `Err` from `on_row` stops recovery (or, with `force_recovery`, skips
/// the row with a warning).
pub fn recover<F>(opts: &RecoveryOptions, on_row: F) -> Result<Recovered, XlogError>
where
    F: FnMut(Source, &RowRef<'_>) -> Result<(), String>,
{
    let mut out = Recovered::default();
    let mut run = Run {
        force: opts.force_recovery,
        out: &mut out,
        on_row,
    };

    for p in remove_inprogress(&opts.memtx_dir) {
        run.out
            .warnings
            .push(format!("removed unfinished snapshot {}", p.display()));
    }
    if let Some((sig, path)) = list(&opts.memtx_dir, FileKind::Snap)?.pop() {
        let meta = XlogReader::open(&path)?.meta().clone();
        if meta.vclock.signature() != sig {
            return Err(XlogError::new(&path, Some(0), "signature check failed"));
        }
        let on_row = &mut run.on_row;
        let info = read_snapshot(&path, opts.force_recovery, |r| on_row(Source::Snapshot, r))?;
        run.out.vclock = meta.vclock;
        run.out.instance_uuid = Some(meta.instance_uuid);
        run.out.snapshot = Some((path, meta.vclock));
        run.out.snapshot_rows = info.rows;
        run.out.warnings.extend(info.warnings);
    }

    let mut files: Vec<(PathBuf, Meta)> = Vec::new();
    for (sig, path) in list(&opts.wal_dir, FileKind::Xlog)? {
        let meta = match XlogReader::open(&path) {
            Ok(r) => r.meta().clone(),
            Err(e) => {
                run.problem(e, "skipping the file")?;
                continue;
            }
        };
        let uuid = *run.out.instance_uuid.get_or_insert(meta.instance_uuid);
        let bad = if meta.filetype != FileKind::Xlog.filetype() {
            Some(format!("not an xlog: file type '{}'", meta.filetype))
        } else if meta.vclock.signature() != sig {
            Some("signature check failed".to_string())
        } else if meta.instance_uuid != uuid {
            Some(format!("invalid instance UUID {}", meta.instance_uuid))
        } else {
            None
        };
        match bad {
            Some(m) => run.problem(XlogError::new(&path, Some(0), m), "skipping the file")?,
            None => files.push((path, meta)),
        }
    }

    // The newest xlog starting at or before the recovered vclock holds the first rows needed.
    let start = files
        .iter()
        .rposition(|(_, m)| {
            matches!(
                m.vclock.compare(&run.out.vclock),
                Some(Ordering::Less | Ordering::Equal)
            )
        })
        .unwrap_or(0);
    let n = files.len();
    for i in start..n {
        let (path, meta) = &files[i];
        let gap_from = if i == start {
            let ahead = !matches!(
                meta.vclock.compare(&run.out.vclock),
                Some(Ordering::Less | Ordering::Equal)
            );
            ahead.then_some(run.out.vclock)
        } else {
            let prev = files[i - 1].1.vclock;
            meta.prev_vclock
                .filter(|p| p.compare(&prev) != Some(Ordering::Equal))
                .map(|_| run.out.vclock)
        };
        if let Some(from) = gap_from {
            run.problem(
                XlogError::new(path, Some(0), gap(&from, &meta.vclock)),
                "ignoring a gap in LSN",
            )?;
        }
        if run.out.vclock.compare(&meta.vclock) == Some(Ordering::Less) {
            run.out.vclock = meta.vclock;
        }
        run.xlog(path, i + 1 == n)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::row::{Row, IPROTO_INSERT};
    use super::super::snapshot::{spawn_snapshot, write_snapshot};
    use super::super::testutil::tmpdir;
    use super::super::writer::{WalConfig, WalMode, WalWriter};
    use super::super::xlog::Next;
    use super::super::xlog::{file_name, XlogWriter};
    use super::*;

    fn opts(dir: &Path, force: bool) -> RecoveryOptions {
        RecoveryOptions {
            memtx_dir: dir.to_owned(),
            wal_dir: dir.to_owned(),
            force_recovery: force,
        }
    }

    fn txn(lsn: i64, n: i64) -> Vec<Row> {
        (lsn..lsn + n)
            .map(|l| Row {
                kind: IPROTO_INSERT,
                replica_id: 1,
                lsn: l,
                timestamp: 1.0,
                tsn: lsn,
                is_commit: l == lsn + n - 1,
                body: Row::replace_body(512, &[0x91, 0xcd, (l >> 8) as u8, l as u8]),
                ..Row::default()
            })
            .collect()
    }

    /// (source, replica id, lsn) of everything recovered.
    type Got = Vec<(Source, u32, i64)>;

    fn collect(o: &RecoveryOptions) -> Result<(Got, Recovered), XlogError> {
        let mut got = Vec::new();
        let rec = recover(o, |s, r| {
            got.push((s, r.replica_id, r.lsn));
            Ok(())
        })?;
        Ok((got, rec))
    }

    fn wal_lsns(got: &[(Source, u32, i64)]) -> Vec<i64> {
        got.iter().filter(|g| g.0 == Source::Wal).map(|g| g.2).collect()
    }

    /// An xlog with one block per transaction of `sizes[i]` rows, left without the EOF marker as
    /// after a crash; returns the block offsets and the end.
    fn crashed_xlog(path: &Path, uuid: Uuid, first_lsn: i64, sizes: &[i64]) -> (Vec<u64>, u64) {
        let mut v = Vclock::new();
        if first_lsn > 1 {
            v.follow(1, first_lsn - 1);
        }
        let meta = Meta::new(FileKind::Xlog, uuid, v, None);
        let mut w = XlogWriter::create(path, &meta, false).unwrap();
        let mut starts = Vec::new();
        let mut lsn = first_lsn;
        for &n in sizes {
            starts.push(w.offset());
            for r in txn(lsn, n) {
                w.add_row(&r.as_ref());
            }
            w.flush().unwrap();
            lsn += n;
        }
        (starts, w.offset())
    }

    #[test]
    fn snapshot_then_the_xlog_rows_past_it() {
        let dir = tmpdir("rec-cycle");
        let uuid = Uuid::new_v4();
        let cfg = WalConfig {
            dir: dir.clone(),
            mode: WalMode::Write,
            instance_uuid: uuid,
            max_size: 1 << 30,
        };
        let w = WalWriter::start(cfg.clone(), Vclock::new()).unwrap();
        for i in 0..10 {
            w.submit(txn(1 + 2 * i, 2)).blocking_recv().unwrap().unwrap();
        }
        let at = w.rotate().blocking_recv().unwrap().unwrap();
        assert_eq!(at.signature(), 20);
        // Writes go on while the snapshot is written.
        let rx: Vec<_> = (10..15).map(|i| w.submit(txn(1 + 2 * i, 2))).collect();
        let tuples: Vec<(u32, u32, Vec<u8>)> = (0..20).map(|i| (512, 0, vec![0x91, i as u8])).collect();
        spawn_snapshot(dir.clone(), uuid, at, tuples, Vec::new())
            .blocking_recv()
            .unwrap()
            .unwrap();
        for r in rx {
            r.blocking_recv().unwrap().unwrap();
        }
        w.shutdown().unwrap();

        let (got, rec) = collect(&opts(&dir, false)).unwrap();
        assert_eq!(got.iter().filter(|g| g.0 == Source::Snapshot).count(), 20);
        assert_eq!(wal_lsns(&got), (21..=30).collect::<Vec<_>>());
        assert_eq!(rec.vclock.to_string(), "{1: 30}");
        assert_eq!(rec.snapshot.as_ref().map(|s| s.1), Some(at));
        assert_eq!(
            (rec.instance_uuid, rec.snapshot_rows, rec.wal_rows),
            (Some(uuid), 20, 10)
        );
        assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);

        // The writer restarts on the recovered vclock and recovery goes on from there.
        let w = WalWriter::start(cfg, rec.vclock).unwrap();
        w.submit(txn(31, 1)).blocking_recv().unwrap().unwrap();
        w.shutdown().unwrap();
        let (got, rec) = collect(&opts(&dir, false)).unwrap();
        assert_eq!(wal_lsns(&got), (21..=31).collect::<Vec<_>>());
        assert_eq!(rec.vclock.signature(), 31);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn recovers_a_tarantool_data_directory() {
        let dir = tmpdir("rec-tarantool");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/box/tarantool-2.6");
        for e in std::fs::read_dir(&src).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
        let (got, rec) = collect(&opts(&dir, false)).unwrap();
        let wal: Vec<(u32, i64)> = got.iter().filter(|g| g.0 == Source::Wal).map(|g| (g.1, g.2)).collect();
        assert_eq!(&wal[..5], &[(1, 8), (1, 9), (1, 10), (0, 1), (1, 11)]);
        assert_eq!(wal.len(), 59);
        assert_eq!(rec.vclock.to_string(), "{0: 1, 1: 65}");
        assert_eq!(rec.vclock.signature(), 66);
        assert!(rec.snapshot_rows > 50);
        assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
        for e in std::fs::read_dir(&src).unwrap() {
            let p = e.unwrap().path();
            assert_eq!(
                std::fs::read(&p).unwrap(),
                std::fs::read(dir.join(p.file_name().unwrap())).unwrap()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A crash mid-write: whatever byte the last block was cut at, recovery gives exactly the
    /// complete transactions and cuts the file back to them.
    /// Tarantool 2.6 itself recovers from a snapshot and an xlog we wrote: the rows of its own
    /// sample directory, re-written by `SnapshotWriter` and `WalWriter` (skipped where
    /// `tarantool` is missing).
    #[test]
    fn tarantool_recovers_from_our_files() {
        use super::super::snapshot::SnapshotWriter;
        use super::super::xlog::XlogReader;
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/box/tarantool-2.6");
        let dir = tmpdir("rec-by-tarantool");
        let snap = XlogReader::open(&file_name(&src, 7, FileKind::Snap))
            .unwrap()
            .meta()
            .clone();
        let mut w = SnapshotWriter::create(&dir, snap.instance_uuid, &snap.vclock).unwrap();
        let only_snap = RecoveryOptions {
            memtx_dir: src.clone(),
            wal_dir: dir.join("none"),
            force_recovery: false,
        };
        recover(&only_snap, |_, r| {
            let space = u32::from_be_bytes([r.body[3], r.body[4], r.body[5], r.body[6]]);
            w.write_tuple(space, r.group_id, &r.body[8..])
                .map_err(|e| e.to_string())
        })
        .unwrap();
        w.finish().unwrap();
        let cfg = WalConfig {
            dir: dir.clone(),
            mode: WalMode::Write,
            instance_uuid: snap.instance_uuid,
            max_size: 1 << 30,
        };
        let writer = WalWriter::start(cfg, snap.vclock).unwrap();
        let mut txn = Vec::new();
        let mut r = XlogReader::open(&file_name(&src, 7, FileKind::Xlog)).unwrap();
        while let Next::Block(b) = r.next_block().unwrap() {
            for row in b.rows() {
                let row = row.unwrap();
                txn.push(Row {
                    timestamp: 0.0,
                    ..row.to_row()
                });
                if row.is_commit {
                    writer
                        .submit(std::mem::take(&mut txn))
                        .blocking_recv()
                        .unwrap()
                        .unwrap();
                }
            }
        }
        writer.shutdown().unwrap();
        let script = "box.cfg{log_level = 1} \
            io.stdout:write(box.space.t:count(), ' ', box.space.loc:count(), ' ', box.space.t:get(1)[2], ' ', \
            box.info.vclock[1], ' ', box.info.vclock[0] or 0, '\\n') os.exit(0)";
        let out = match std::process::Command::new("tarantool")
            .arg("-e")
            .arg(script)
            .current_dir(&dir)
            .output()
        {
            Ok(o) => o,
            Err(_) => {
                eprintln!("tarantool not found: skipped");
                return;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(text.trim(), "55 1 x 65 1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn torn_tail_is_truncated_at_every_offset() {
        let dir = tmpdir("rec-torn");
        let path = file_name(&dir, 0, FileKind::Xlog);
        let (starts, end) = crashed_xlog(&path, Uuid::nil(), 1, &[1, 3, 2, 4]);
        let whole = std::fs::read(&path).unwrap();
        let last = *starts.last().unwrap();
        for cut in last..=end {
            std::fs::write(&path, &whole[..cut as usize]).unwrap();
            let (got, rec) = collect(&opts(&dir, false)).unwrap();
            let want: Vec<i64> = if cut == end {
                (1..=10).collect()
            } else {
                (1..=6).collect()
            };
            assert_eq!(wal_lsns(&got), want, "cut at {cut}");
            assert_eq!(rec.vclock.signature(), *want.last().unwrap());
            let len = std::fs::metadata(&path).unwrap().len();
            if cut == last || cut == end {
                assert_eq!(len, cut);
                assert!(
                    rec.warnings.iter().all(|w| w.contains("wasn't correctly closed")),
                    "{:?}",
                    rec.warnings
                );
            } else {
                assert_eq!(len, last, "cut at {cut}");
                let w = rec
                    .warnings
                    .iter()
                    .find(|w| w.contains("torn write"))
                    .expect("a warning");
                assert!(
                    w.contains(&format!("{}: torn write at offset {last}", path.display())),
                    "{w}"
                );
            }
        }
        // A last block of full length whose checksum fails is torn too.
        let mut b = whole.clone();
        b[end as usize - 3] ^= 1;
        std::fs::write(&path, &b).unwrap();
        let (got, _) = collect(&opts(&dir, false)).unwrap();
        assert_eq!(wal_lsns(&got), (1..=6).collect::<Vec<_>>());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), last);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damage_in_the_middle_is_an_error_naming_file_and_offset() {
        let dir = tmpdir("rec-middle");
        let path = file_name(&dir, 0, FileKind::Xlog);
        let (starts, end) = crashed_xlog(&path, Uuid::nil(), 1, &[1, 3, 2, 4]);
        let whole = std::fs::read(&path).unwrap();
        // A bit flip in every byte of the second block (fixheader included) in turn. Only the
        // fields nobody checks (the unused previous-block CRC at byte 5, the padding's content
        // at 12..19: small blocks have a 1-byte length) may change unnoticed.
        for at in starts[1]..starts[2] {
            let mut b = whole.clone();
            b[at as usize] ^= 0x20;
            std::fs::write(&path, &b).unwrap();
            let rel = at - starts[1];
            if rel == 5 || (12..19).contains(&rel) {
                let (got, _) = collect(&opts(&dir, false)).unwrap();
                assert_eq!(wal_lsns(&got), (1..=10).collect::<Vec<_>>());
                continue;
            }
            let e = collect(&opts(&dir, false)).unwrap_err();
            assert_eq!((&e.path, e.offset), (&path, Some(starts[1])), "flip at {at}: {e}");
            assert_eq!(std::fs::read(&path).unwrap(), b, "the file is left alone");
            // Forced: the block is skipped, the rest recovered, and a warning says so.
            let (got, rec) = collect(&opts(&dir, true)).unwrap();
            assert_eq!(wal_lsns(&got), vec![1, 5, 6, 7, 8, 9, 10], "flip at {at}");
            assert!(
                rec.warnings
                    .iter()
                    .any(|w| w.contains(&format!("at offset {}", starts[1]))),
                "{:?}",
                rec.warnings
            );
        }
        // Garbage between two good blocks.
        let mut b = whole[..starts[2] as usize].to_vec();
        b.extend_from_slice(&[7; 10]);
        b.extend_from_slice(&whole[starts[2] as usize..end as usize]);
        std::fs::write(&path, &b).unwrap();
        let e = collect(&opts(&dir, false)).unwrap_err();
        assert_eq!(e.offset, Some(starts[2]));
        assert!(
            e.message
                .contains(&format!("valid data follows at offset {}", starts[2] + 10)),
            "{e}"
        );
        let (got, _) = collect(&opts(&dir, true)).unwrap();
        assert_eq!(wal_lsns(&got), (1..=10).collect::<Vec<_>>());
        // Data after the EOF marker.
        let mut b = whole.clone();
        b.extend_from_slice(&super::super::xlog::EOF_MARKER);
        b.push(0);
        std::fs::write(&path, &b).unwrap();
        let e = collect(&opts(&dir, false)).unwrap_err();
        assert_eq!((e.offset, e.message.as_str()), (Some(end + 4), "data after EOF marker"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_file_that_is_not_the_last_is_an_error() {
        let dir = tmpdir("rec-torn-middle");
        let first = file_name(&dir, 0, FileKind::Xlog);
        let (starts, end) = crashed_xlog(&first, Uuid::nil(), 1, &[2, 2]);
        crashed_xlog(&file_name(&dir, 4, FileKind::Xlog), Uuid::nil(), 5, &[3]);
        let whole = std::fs::read(&first).unwrap();
        std::fs::write(&first, &whole[..end as usize - 2]).unwrap();
        let e = collect(&opts(&dir, false)).unwrap_err();
        assert_eq!((&e.path, e.offset), (&first, Some(starts[1])));
        assert_eq!(std::fs::metadata(&first).unwrap().len(), end - 2);
        let (got, rec) = collect(&opts(&dir, true)).unwrap();
        assert_eq!(wal_lsns(&got), vec![1, 2, 5, 6, 7]);
        assert_eq!(rec.vclock.signature(), 7);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_xlog_is_a_gap() {
        let dir = tmpdir("rec-gap");
        let cfg = WalConfig {
            dir: dir.clone(),
            mode: WalMode::Write,
            instance_uuid: Uuid::new_v4(),
            max_size: 1,
        };
        let w = WalWriter::start(cfg, Vclock::new()).unwrap();
        for i in 0..3 {
            w.submit(txn(1 + 2 * i, 2)).blocking_recv().unwrap().unwrap();
        }
        w.shutdown().unwrap();
        std::fs::remove_file(file_name(&dir, 2, FileKind::Xlog)).unwrap();
        let e = collect(&opts(&dir, false)).unwrap_err();
        assert!(
            e.message
                .starts_with("Missing .xlog file between LSN 2 {1: 2} and 4 {1: 4}"),
            "{e}"
        );
        let (got, rec) = collect(&opts(&dir, true)).unwrap();
        assert_eq!(wal_lsns(&got), vec![1, 2, 5, 6]);
        assert!(
            rec.warnings.iter().any(|w| w.contains("ignoring a gap")),
            "{:?}",
            rec.warnings
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn leftovers_and_foreign_files() {
        let dir = tmpdir("rec-leftovers");
        let uuid = Uuid::new_v4();
        let mut v = Vclock::new();
        v.follow(1, 3);
        write_snapshot(&dir, uuid, &v, [(512u32, 0u32, vec![0x91, 1])]).unwrap();
        // An xlog of another instance.
        let meta = Meta::new(FileKind::Xlog, Uuid::new_v4(), v, None);
        XlogWriter::create(&file_name(&dir, 3, FileKind::Xlog), &meta, false)
            .unwrap()
            .close()
            .unwrap();
        let e = collect(&opts(&dir, false)).unwrap_err();
        assert!(e.message.contains("invalid instance UUID"), "{e}");
        std::fs::write(dir.join("00000000000000000009.snap.inprogress"), b"partial").unwrap();
        let (got, rec) = collect(&opts(&dir, true)).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(rec.vclock, v);
        assert!(!dir.join("00000000000000000009.snap.inprogress").exists());
        assert!(
            rec.warnings.iter().any(|w| w.contains("removed unfinished snapshot")),
            "{:?}",
            rec.warnings
        );
        // A rejected row stops recovery with the file and block named.
        std::fs::remove_file(file_name(&dir, 3, FileKind::Xlog)).unwrap();
        let path = file_name(&dir, 3, FileKind::Xlog);
        let (starts, _) = crashed_xlog(&path, uuid, 4, &[2]);
        let e = recover(&opts(&dir, false), |s, r| {
            if s == Source::Wal && r.lsn == 5 {
                Err("boom".into())
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(e.offset, Some(starts[0]));
        assert!(e.message.contains("can't apply row {1: 5}: boom"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
