//! Garbage collection after a checkpoint, as Tarantool's `gc.c` with checkpoints as the only
//! consumers: keep the newest `checkpoint_count` snapshots, delete the older ones (and any
//! `.snap.inprogress` a failed snapshot left), and delete every xlog whose rows are all older
//! than the oldest snapshot kept. The xlog part runs on the WAL thread, which alone knows
//! whether the newest file is still being written to (`WalWriter::collect_garbage`).
//!
//! Call it when no snapshot is being written: a `.snap.inprogress` counts as a leftover.

use std::path::{Path, PathBuf};

use tokio::sync::oneshot;

use super::snapshot::remove_inprogress;
use super::vclock::Vclock;
use super::writer::{WalError, WalWriter};
use super::xlog::{list_files, FileKind, XlogError, XlogReader};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcReport {
    /// The oldest snapshot kept and its vclock: xlogs are kept from it on.
    pub oldest_kept: Option<(PathBuf, Vclock)>,
    pub removed: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

/// Keeps the newest `checkpoint_count` (at least 1) snapshots in `memtx_dir`, removes the
/// rest and `.inprogress` leftovers.
pub fn collect_snapshots(memtx_dir: &Path, checkpoint_count: usize) -> Result<GcReport, XlogError> {
    let mut report = GcReport::default();
    let snaps = match list_files(memtx_dir, FileKind::Snap) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(XlogError::io(memtx_dir, "error reading directory", &e)),
    };
    let keep_from = snaps.len().saturating_sub(checkpoint_count.max(1));
    if let Some((_, path)) = snaps.get(keep_from) {
        match XlogReader::open(path) {
            Ok(r) => report.oldest_kept = Some((path.clone(), r.meta().vclock)),
            // Without its vclock no xlog can be judged safe to delete: keep them all.
            Err(e) => report.warnings.push(format!("{e}; keeping every xlog")),
        }
    }
    for (_, path) in &snaps[..keep_from] {
        match std::fs::remove_file(path) {
            Ok(()) => report.removed.push(path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => report
                .warnings
                .push(format!("error while removing {}: {e}", path.display())),
        }
    }
    report.removed.extend(remove_inprogress(memtx_dir));
    Ok(report)
}

/// Both steps; the snapshot files are removed on a helper thread (unlinking big files takes a
/// while and the caller is the Lua thread), the xlogs on the WAL thread.
pub async fn collect_garbage(
    memtx_dir: PathBuf,
    checkpoint_count: usize,
    wal: &WalWriter,
) -> Result<GcReport, WalError> {
    let (done, rx) = oneshot::channel();
    let dir = memtx_dir.clone();
    std::thread::Builder::new()
        .name("gc".into())
        .spawn(move || {
            let _ = done.send(collect_snapshots(&dir, checkpoint_count));
        })
        .map_err(|e| XlogError::io(&memtx_dir, "failed to start the gc thread", &e))?;
    let mut report = rx.await.map_err(|_| WalError::Closed)??;
    if let Some((_, vclock)) = &report.oldest_kept {
        let removed = wal.collect_garbage(*vclock).await.map_err(|_| WalError::Closed)??;
        report.removed.extend(removed);
    }
    report.warnings.extend(wal.take_warnings());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::super::recovery::{recover, RecoveryOptions, Source};
    use super::super::row::{Row, IPROTO_INSERT};
    use super::super::snapshot::write_snapshot;
    use super::super::testutil::tmpdir;
    use super::super::writer::{WalConfig, WalMode};
    use super::*;
    use uuid::Uuid;

    fn txn(lsn: i64) -> Vec<Row> {
        vec![Row {
            kind: IPROTO_INSERT,
            replica_id: 1,
            lsn,
            tsn: lsn,
            is_commit: true,
            body: Row::replace_body(512, &[0x91, lsn as u8]),
            ..Row::default()
        }]
    }

    fn names(dir: &Path, kind: FileKind) -> Vec<i64> {
        list_files(dir, kind).unwrap().into_iter().map(|f| f.0).collect()
    }

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Checkpoints at 10, 20, 30, 40 with writes in between; keeping two leaves snaps 30 and
    /// 40 and the xlogs from the one holding vclock 30 on, and recovery still works.
    #[test]
    fn keeps_the_newest_checkpoints_and_the_xlogs_they_need() {
        let dir = tmpdir("gc-keep");
        let uuid = Uuid::new_v4();
        let cfg = WalConfig {
            dir: dir.clone(),
            mode: WalMode::Write,
            instance_uuid: uuid,
            max_size: 1 << 30,
        };
        let w = WalWriter::start(cfg, Vclock::new()).unwrap();
        let mut lsn = 0;
        for _ in 0..4 {
            for _ in 0..10 {
                lsn += 1;
                w.submit(txn(lsn)).blocking_recv().unwrap().unwrap();
            }
            let v = w.rotate().blocking_recv().unwrap().unwrap();
            write_snapshot(&dir, uuid, &v, (1..=lsn).map(|i| (512u32, 0u32, vec![0x91, i as u8]))).unwrap();
        }
        lsn += 1;
        w.submit(txn(lsn)).blocking_recv().unwrap().unwrap();
        std::fs::write(dir.join("00000000000000000099.snap.inprogress"), b"left over").unwrap();
        assert_eq!(names(&dir, FileKind::Xlog), vec![0, 10, 20, 30, 40]);

        let report = block_on(collect_garbage(dir.clone(), 2, &w)).unwrap();
        assert_eq!(report.oldest_kept.as_ref().map(|k| k.1.signature()), Some(30));
        assert_eq!(names(&dir, FileKind::Snap), vec![30, 40]);
        assert_eq!(names(&dir, FileKind::Xlog), vec![30, 40]);
        assert_eq!(report.removed.len(), 2 + 1 + 3);
        assert!(!dir.join("00000000000000000099.snap.inprogress").exists());
        w.shutdown().unwrap();

        let mut wal = Vec::new();
        let rec = recover(
            &RecoveryOptions {
                memtx_dir: dir.clone(),
                wal_dir: dir.clone(),
                force_recovery: false,
            },
            |s, r| {
                if s == Source::Wal {
                    wal.push(r.lsn);
                }
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(wal, vec![41]);
        assert_eq!(rec.vclock.signature(), 41);
        // Dropping the newest snapshot: the oldest kept one recovers with the xlogs kept for it.
        std::fs::remove_file(dir.join("00000000000000000040.snap")).unwrap();
        let rec = recover(
            &RecoveryOptions {
                memtx_dir: dir.clone(),
                wal_dir: dir.clone(),
                force_recovery: false,
            },
            |_, _| Ok(()),
        )
        .unwrap();
        assert_eq!((rec.wal_rows, rec.vclock.signature()), (11, 41));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Right after a checkpoint with nothing written since, the sealed xlog is entirely older
    /// than the snapshot and goes too.
    #[test]
    fn a_sealed_xlog_covered_by_the_snapshot_goes() {
        let dir = tmpdir("gc-sealed");
        let uuid = Uuid::new_v4();
        let cfg = WalConfig {
            dir: dir.clone(),
            mode: WalMode::Write,
            instance_uuid: uuid,
            max_size: 1 << 30,
        };
        let w = WalWriter::start(cfg, Vclock::new()).unwrap();
        for lsn in 1..=5 {
            w.submit(txn(lsn)).blocking_recv().unwrap().unwrap();
        }
        let v = w.rotate().blocking_recv().unwrap().unwrap();
        write_snapshot(&dir, uuid, &v, [(512u32, 0u32, vec![0x90])]).unwrap();
        block_on(collect_garbage(dir.clone(), 1, &w)).unwrap();
        assert!(names(&dir, FileKind::Xlog).is_empty());
        w.submit(txn(6)).blocking_recv().unwrap().unwrap();
        w.shutdown().unwrap();
        assert_eq!(names(&dir, FileKind::Xlog), vec![5, 6]);
        let rec = recover(
            &RecoveryOptions {
                memtx_dir: dir.clone(),
                wal_dir: dir.clone(),
                force_recovery: false,
            },
            |_, _| Ok(()),
        )
        .unwrap();
        assert_eq!((rec.snapshot_rows, rec.wal_rows, rec.vclock.signature()), (1, 1, 6));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn separate_dirs_and_nothing_to_do() {
        let dir = tmpdir("gc-empty");
        let r = collect_snapshots(&dir.join("missing"), 2).unwrap();
        assert_eq!(r, GcReport::default());
        let v = Vclock::new();
        write_snapshot(&dir, Uuid::new_v4(), &v, [(512u32, 0u32, vec![0x90])]).unwrap();
        let r = collect_snapshots(&dir, 0).unwrap();
        assert_eq!(r.oldest_kept.map(|k| k.1), Some(v));
        assert!(r.removed.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
