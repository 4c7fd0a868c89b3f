//! Snapshot (`.snap`) files: writing one from every space's tuples, on its own thread, and
//! reading one back.
//!
//! As Tarantool's memtx checkpoint: the file is `%020lld.snap.inprogress` (signature of the
//! checkpoint vclock) until it is complete, closed with the EOF marker and fsynced, then renamed
//! to `.snap`. Its rows are INSERTs `{0x10: space_id (as ce u32), 0x21: tuple}` with the
//! space's group id, replica id 0, LSNs numbering the rows from 0 (the first carries no LSN
//! key), no tsn, and one timestamp for the whole file; blocks are cut at 128 KB. If a
//! snapshot of the same vclock exists it is only touched, as Tarantool does.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;
use uuid::Uuid;

use super::row::{put_replace_body, RowRef, IPROTO_INSERT};
use super::vclock::Vclock;
use super::xlog::{
    file_name, inprogress_name, FileKind, Meta, Next, XlogError, XlogReader, XlogWriter, BLOCK_THRESHOLD,
};

pub struct SnapshotWriter {
    x: XlogWriter,
    /// The `.snap` name it gets once complete.
    target: PathBuf,
    timestamp: f64,
    next_lsn: i64,
    scratch: Vec<u8>,
}

impl SnapshotWriter {
    /// Creates `dir/NNN.snap.inprogress` for a checkpoint at `vclock`.
    pub fn create(dir: &Path, instance_uuid: Uuid, vclock: &Vclock) -> Result<SnapshotWriter, XlogError> {
        let target = file_name(dir, vclock.signature(), FileKind::Snap);
        let meta = Meta::new(FileKind::Snap, instance_uuid, *vclock, None);
        let x = XlogWriter::create(&target, &meta, true)?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Ok(SnapshotWriter {
            x,
            target,
            timestamp,
            next_lsn: 0,
            scratch: Vec::new(),
        })
    }

    pub fn rows(&self) -> i64 {
        self.next_lsn
    }

    /// Appends one tuple (a MessagePack array) of space `space_id`.
    pub fn write_tuple(&mut self, space_id: u32, group_id: u32, tuple: &[u8]) -> Result<(), XlogError> {
        let mut body = std::mem::take(&mut self.scratch);
        body.clear();
        put_replace_body(&mut body, space_id, tuple);
        let written = self.write_row(IPROTO_INSERT, group_id, &body);
        self.scratch = body;
        written
    }

    /// Appends a row that is not a tuple (the Raft state, the synchronous queue's owner).
    pub fn write_row(&mut self, kind: u32, group_id: u32, body: &[u8]) -> Result<(), XlogError> {
        let row = RowRef {
            kind,
            lsn: self.next_lsn,
            timestamp: self.timestamp,
            group_id,
            body,
            ..RowRef::default()
        };
        self.x.add_row(&row);
        self.next_lsn += 1;
        if self.x.pending_bytes() >= BLOCK_THRESHOLD {
            self.x.flush()?;
        }
        Ok(())
    }

    /// Flushes, writes the EOF marker, fsyncs, renames to `.snap` and syncs the directory.
    pub fn finish(self) -> Result<PathBuf, XlogError> {
        let inprogress = self.x.path().to_owned();
        if let Err(e) = self.x.close() {
            let _ = std::fs::remove_file(&inprogress);
            return Err(e);
        }
        std::fs::rename(&inprogress, &self.target).map_err(|e| {
            let _ = std::fs::remove_file(&inprogress);
            XlogError::io(&inprogress, "failed to rename", &e)
        })?;
        if let Some(dir) = self.target.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(self.target)
    }

    /// Gives up: removes the `.inprogress` file.
    pub fn abort(self) {
        let _ = std::fs::remove_file(self.x.path());
    }
}

/// Writes a snapshot of `tuples` (space id, group id, tuple) at `vclock` and returns its path.
/// If `NNN.snap` exists already it is touched instead (nothing changed since it was made).
pub fn write_snapshot<I, T>(dir: &Path, instance_uuid: Uuid, vclock: &Vclock, tuples: I) -> Result<PathBuf, XlogError>
where
    I: IntoIterator<Item = (u32, u32, T)>,
    T: AsRef<[u8]>,
{
    write_snapshot_with(dir, instance_uuid, vclock, tuples, &[])
}

/// A row after the tuples: (request type, group id, body).
pub type TrailerRow = (u32, u32, Vec<u8>);

/// [`write_snapshot`] with `trailer` rows written after the tuples, as Tarantool writes its
/// RAFT state at the end of a checkpoint.
pub fn write_snapshot_with<I, T>(
    dir: &Path,
    instance_uuid: Uuid,
    vclock: &Vclock,
    tuples: I,
    trailer: &[TrailerRow],
) -> Result<PathBuf, XlogError>
where
    I: IntoIterator<Item = (u32, u32, T)>,
    T: AsRef<[u8]>,
{
    let target = file_name(dir, vclock.signature(), FileKind::Snap);
    if target.exists() {
        let f = File::options()
            .write(true)
            .open(&target)
            .map_err(|e| XlogError::io(&target, "failed to open", &e))?;
        f.set_modified(SystemTime::now())
            .map_err(|e| XlogError::io(&target, "can't update snapshot timestamp", &e))?;
        return Ok(target);
    }
    let mut w = SnapshotWriter::create(dir, instance_uuid, vclock)?;
    for (space_id, group_id, tuple) in tuples {
        if let Err(e) = w.write_tuple(space_id, group_id, tuple.as_ref()) {
            w.abort();
            return Err(e);
        }
    }
    for (kind, group_id, body) in trailer {
        if let Err(e) = w.write_row(*kind, *group_id, body) {
            w.abort();
            return Err(e);
        }
    }
    w.finish()
}

/// `write_snapshot` on a thread of its own; the receiver completes when the file is renamed.
pub fn spawn_snapshot<I, T>(
    dir: PathBuf,
    instance_uuid: Uuid,
    vclock: Vclock,
    tuples: I,
    trailer: Vec<TrailerRow>,
) -> oneshot::Receiver<Result<PathBuf, XlogError>>
where
    I: IntoIterator<Item = (u32, u32, T)> + Send + 'static,
    T: AsRef<[u8]>,
{
    let (done, rx) = oneshot::channel();
    let dir2 = dir.clone();
    let spawned = std::thread::Builder::new().name("snapshot".into()).spawn(move || {
        let _ = done.send(write_snapshot_with(&dir2, instance_uuid, &vclock, tuples, &trailer));
    });
    if let Err(e) = spawned {
        // The closure, and the sender in it, is dropped: report through a fresh channel.
        let (done, rx) = oneshot::channel();
        let _ = done.send(Err(XlogError::io(&dir, "failed to start the snapshot thread", &e)));
        return rx;
    }
    rx
}

/// Removes `.inprogress` files a crashed or failed snapshot left; returns their names.
pub fn remove_inprogress(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for e in entries.flatten() {
        let p = e.path();
        let is_leftover = p.to_str().is_some_and(|s| s.ends_with(".snap.inprogress"));
        if is_leftover && std::fs::remove_file(&p).is_ok() {
            removed.push(p);
        }
    }
    removed
}

/// What reading a snapshot gave besides its rows.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub path: PathBuf,
    pub meta: Meta,
    pub rows: u64,
    pub warnings: Vec<String>,
}

/// Streams the rows of a snapshot file. Damage or a row `on_row` rejects is an error naming
/// file and offset; with `force_recovery` the damaged part is skipped with a warning. A file
/// without the EOF marker is an error even then: a snapshot is renamed only once complete, so
/// one without the marker cannot be trusted (Tarantool panics on it).
pub fn read_snapshot<F>(path: &Path, force_recovery: bool, mut on_row: F) -> Result<SnapshotInfo, XlogError>
where
    F: FnMut(&RowRef<'_>) -> Result<(), String>,
{
    let mut r = XlogReader::open(path)?;
    let meta = r.meta().clone();
    if meta.filetype != FileKind::Snap.filetype() {
        return Err(XlogError::new(
            path,
            Some(0),
            format!("not a snapshot: file type '{}'", meta.filetype),
        ));
    }
    let mut info = SnapshotInfo {
        path: path.to_owned(),
        meta,
        rows: 0,
        warnings: Vec::new(),
    };
    let io = |e: std::io::Error| XlogError::io(path, "failed to read file", &e);
    loop {
        let at = r.offset();
        match r.next_block().map_err(io)? {
            Next::Block(b) => {
                let offset = b.offset;
                for row in b.rows() {
                    let row = match row {
                        Ok(row) => row,
                        Err(e) => {
                            let e = XlogError::new(path, Some(offset), format!("can't parse row: {e}"));
                            if !force_recovery {
                                return Err(e);
                            }
                            info.warnings.push(format!("{e}; skipping the rest of the block"));
                            break;
                        }
                    };
                    if let Err(m) = on_row(&row) {
                        let e = XlogError::new(path, Some(offset), format!("can't apply row {}: {m}", row.lsn));
                        if !force_recovery {
                            return Err(e);
                        }
                        info.warnings.push(e.to_string());
                    }
                    info.rows += 1;
                }
            }
            Next::End { marker: true } => return Ok(info),
            Next::End { marker: false } => {
                return Err(XlogError::new(path, Some(at), "snapshot has no EOF marker"));
            }
            Next::Damaged { offset, damage } => {
                let e = XlogError::new(path, Some(offset), damage.to_string());
                if !force_recovery {
                    return Err(e);
                }
                match r.resync(offset).map_err(io)? {
                    Some(res) => {
                        let to = match res {
                            super::xlog::Resync::Block(p) | super::xlog::Resync::EofMarker(p) => p,
                        };
                        info.warnings.push(format!("{e}; skipping {} bytes", to - offset));
                        r.seek(to);
                    }
                    None => {
                        return Err(XlogError::new(
                            path,
                            Some(offset),
                            format!("{damage}; snapshot has no EOF marker"),
                        ))
                    }
                }
            }
        }
    }
}

/// The `.inprogress` name a snapshot at `vclock` is written under.
pub fn inprogress_path(dir: &Path, vclock: &Vclock) -> PathBuf {
    inprogress_name(&file_name(dir, vclock.signature(), FileKind::Snap))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::tmpdir;
    use super::*;

    fn tuple(i: u32) -> Vec<u8> {
        let mut t = vec![0x92, 0xce];
        t.extend_from_slice(&i.to_be_bytes());
        t.extend_from_slice(&[0xa3, b'a', b'b', b'c']);
        t
    }

    #[test]
    fn round_trip_in_tarantools_row_layout() {
        let dir = tmpdir("snap-rt");
        let mut v = Vclock::new();
        v.follow(1, 42);
        let uuid = Uuid::new_v4();
        let tuples: Vec<(u32, u32, Vec<u8>)> = (0..50_000)
            .map(|i| (if i < 10 { 280 } else { 512 }, u32::from(i % 7 == 0), tuple(i)))
            .collect();
        let path = spawn_snapshot(dir.clone(), uuid, v, tuples.clone(), Vec::new())
            .blocking_recv()
            .unwrap()
            .unwrap();
        assert_eq!(path, dir.join("00000000000000000042.snap"));
        assert!(!inprogress_path(&dir, &v).exists());
        let mut back = Vec::new();
        let info = read_snapshot(&path, false, |r| {
            assert_eq!(
                (r.kind, r.replica_id, r.tsn, r.is_commit),
                (IPROTO_INSERT, 0, r.lsn, true)
            );
            assert_eq!(r.lsn, back.len() as i64);
            assert_eq!(&r.body[..3], &[0x82, 0x10, 0xce]);
            let space = u32::from_be_bytes([r.body[3], r.body[4], r.body[5], r.body[6]]);
            assert_eq!(r.body[7], 0x21);
            back.push((space, r.group_id, r.body[8..].to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(back, tuples);
        assert_eq!(
            (
                info.rows,
                info.meta.vclock,
                info.meta.instance_uuid,
                info.meta.prev_vclock
            ),
            (50_000, v, uuid, None)
        );
        // The same vclock again: touched, not rewritten.
        let before = std::fs::read(&path).unwrap();
        let again = write_snapshot(&dir, uuid, &v, Vec::<(u32, u32, Vec<u8>)>::new()).unwrap();
        assert_eq!(again, path);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_tarantool_made_snapshots() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/box/tarantool-2.6");
        let mut spaces = std::collections::BTreeMap::new();
        let info = read_snapshot(&file_name(&dir, 7, FileKind::Snap), false, |r| {
            let space = u32::from_be_bytes([r.body[3], r.body[4], r.body[5], r.body[6]]);
            *spaces.entry(space).or_insert(0) += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(info.meta.vclock.to_string(), "{1: 7}");
        // _schema 272, _space 280, _index 288, ... and the user space 512 with its one tuple.
        assert!(spaces.contains_key(&272) && spaces.contains_key(&280) && spaces.contains_key(&288));
        assert_eq!(spaces.get(&512), Some(&1));
        assert_eq!(info.rows, spaces.values().sum::<u64>());
    }

    #[test]
    fn damaged_or_unfinished_snapshots_are_errors() {
        let dir = tmpdir("snap-damage");
        let v = Vclock::new();
        let path = write_snapshot(&dir, Uuid::new_v4(), &v, (0..20_000).map(|i| (512u32, 0u32, tuple(i)))).unwrap();
        let good = std::fs::read(&path).unwrap();
        let count = |force| {
            let mut n = 0;
            read_snapshot(&path, force, |_| {
                n += 1;
                Ok(())
            })
            .map(|i| (n, i.warnings.len()))
        };
        // No EOF marker: an error even with force_recovery.
        std::fs::write(&path, &good[..good.len() - 4]).unwrap();
        for force in [false, true] {
            let e = count(force).unwrap_err();
            assert!(e.message.contains("no EOF marker"), "{e}");
        }
        // A flipped bit in the first block: an error naming the block; forced, the rest is read.
        let mut b = good.clone();
        b[5000] ^= 0x10;
        std::fs::write(&path, &b).unwrap();
        let e = count(false).unwrap_err();
        assert_eq!(
            (e.path.clone(), e.offset),
            (path.clone(), Some(Meta::parse(&good).unwrap().unwrap().1 as u64))
        );
        let (n, warnings) = count(true).unwrap();
        assert!(n > 0 && n < 20_000 && warnings == 1, "{n} {warnings}");
        // A row the caller rejects.
        std::fs::write(&path, &good).unwrap();
        let e = read_snapshot(&path, false, |r| {
            if r.lsn == 7 {
                Err("duplicate key".into())
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(e.to_string().contains("can't apply row 7: duplicate key"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
