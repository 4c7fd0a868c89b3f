//! Throughput figures, run by hand in release mode:
//! `cargo test --release --lib box_::wal::bench -- --ignored --nocapture`.

use std::time::Instant;

use uuid::Uuid;

use super::recovery::{recover, RecoveryOptions, Source};
use super::row::{Row, IPROTO_INSERT};
use super::snapshot::write_snapshot;
use super::testutil::tmpdir;
use super::vclock::Vclock;
use super::writer::{WalConfig, WalMode, WalWriter};

const N: u32 = 1_000_000;

/// `[i, "name-i"]`: a small tuple, about 15 bytes.
fn tuple(i: u32) -> Vec<u8> {
    let s = format!("name-{}", i % 100_000);
    let mut t = vec![0x92, 0xce];
    t.extend_from_slice(&i.to_be_bytes());
    t.push(0xa0 | s.len() as u8);
    t.extend_from_slice(s.as_bytes());
    t
}

#[test]
#[ignore]
fn recovery_of_a_million_rows() {
    let dir = tmpdir("bench");
    let uuid = Uuid::new_v4();
    let tuples: Vec<(u32, u32, Vec<u8>)> = (0..N).map(|i| (512, 0, tuple(i))).collect();
    let mut v = Vclock::new();
    v.follow(1, N as i64);

    let t = Instant::now();
    let path = write_snapshot(&dir, uuid, &v, tuples.iter().map(|(s, g, t)| (*s, *g, t.as_slice()))).unwrap();
    let write = t.elapsed();
    let size = std::fs::metadata(&path).unwrap().len();

    let opts = RecoveryOptions {
        memtx_dir: dir.clone(),
        wal_dir: dir.join("wal"),
        force_recovery: false,
    };
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let mut bytes = 0usize;
        let rec = recover(&opts, |_, r| {
            bytes += r.body.len();
            Ok(())
        })
        .unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!((rec.snapshot_rows, bytes > 0), (N as u64, true));
    }
    eprintln!(
        "snapshot of {N} rows, {:.1} MB: written in {:.3} s, recovered in {:.3} s ({:.0} rows/s)",
        size as f64 / 1e6,
        write.as_secs_f64(),
        best,
        N as f64 / best
    );

    // The same rows through the WAL writer, one row per transaction, all queued at once.
    let cfg = WalConfig {
        dir: dir.join("wal"),
        mode: WalMode::Write,
        instance_uuid: uuid,
        max_size: 1 << 40,
    };
    let w = WalWriter::start(cfg, Vclock::new()).unwrap();
    let t = Instant::now();
    let rx: Vec<_> = (0..N)
        .map(|i| {
            let lsn = i as i64 + 1;
            w.submit(vec![Row {
                kind: IPROTO_INSERT,
                replica_id: 1,
                lsn,
                tsn: lsn,
                is_commit: true,
                body: Row::replace_body(512, &tuples[i as usize].2),
                ..Row::default()
            }])
        })
        .collect();
    for r in rx {
        r.blocking_recv().unwrap().unwrap();
    }
    let wal_write = t.elapsed().as_secs_f64();
    let st = w.stats();
    w.shutdown().unwrap();
    std::fs::remove_file(&path).unwrap();
    let t = Instant::now();
    let mut n = 0u64;
    let rec = recover(&opts, |s, _| {
        assert_eq!(s, Source::Wal);
        n += 1;
        Ok(())
    })
    .unwrap();
    let wal_read = t.elapsed().as_secs_f64();
    assert_eq!((n, rec.vclock.signature()), (N as u64, N as i64));
    eprintln!(
        "WAL (write mode) of {N} one-row transactions: written in {wal_write:.3} s ({} groups, {} writes, {:.1} MB), \
         recovered in {wal_read:.3} s",
        st.groups,
        st.writes,
        st.bytes as f64 / 1e6
    );

    // fsync mode: fibers committing at once share fsyncs.
    let cfg = WalConfig {
        dir: dir.join("wal-fsync"),
        mode: WalMode::Fsync,
        instance_uuid: uuid,
        max_size: 1 << 40,
    };
    let w = WalWriter::start(cfg, Vclock::new()).unwrap();
    let t = Instant::now();
    let m = 20_000;
    let rx: Vec<_> = (0..m)
        .map(|i| {
            let lsn = i as i64 + 1;
            w.submit(vec![Row {
                kind: IPROTO_INSERT,
                replica_id: 1,
                lsn,
                tsn: lsn,
                is_commit: true,
                body: Row::replace_body(512, &tuples[i].2),
                ..Row::default()
            }])
        })
        .collect();
    for r in rx {
        r.blocking_recv().unwrap().unwrap();
    }
    let el = t.elapsed().as_secs_f64();
    let st = w.stats();
    w.shutdown().unwrap();
    eprintln!(
        "WAL (fsync mode) of {m} one-row transactions queued at once: {el:.3} s, {} fsyncs",
        st.fsyncs
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
