//! The write-ahead log: xlog and snap files in Tarantool 2.6's formats, the WAL writer thread
//! with group commit, recovery and garbage collection (docs/box.md).
//!
//! - [`row`]: `Row`/`RowRef`, Tarantool's xrow header encoding byte for byte.
//! - [`vclock`]: `Vclock`, its signature, text and MessagePack forms.
//! - [`xlog`]: the file format (meta, 19-byte fixheader, blocks, EOF marker), `XlogWriter`
//!   and the buffered `XlogReader` that reports damage by offset; [`zstd`] decodes the blocks
//!   Tarantool compresses.
//! - [`writer`]: `WalWriter`, the WAL thread: group commit, rotation, cascading rollback.
//! - [`snapshot`]: writing a snapshot on its own thread, reading one.
//! - [`recovery`]: snapshot + xlogs → rows and the vclock; torn tails cut, damage reported.
//! - [`gc`]: old snapshots and xlogs removed after a checkpoint.
//!
//! How box uses it: recover at start (`recover`), start the writer on the recovered vclock,
//! assign LSNs and `submit` each transaction's rows, await the receiver; on an error roll the
//! transaction back (and, on a cascade, every later one) and call `resume`. A checkpoint is
//! `rotate` (its vclock), the tuples collected on the Lua thread, `spawn_snapshot`, then
//! `gc::collect_garbage`.

pub mod gc;
pub mod mp;
pub mod recovery;
pub mod row;
pub mod snapshot;
pub mod vclock;
pub mod writer;
pub mod xlog;
pub mod zstd;

pub use recovery::{recover, Recovered, RecoveryOptions, Source};
pub use row::{Row, RowRef};
pub use snapshot::{read_snapshot, spawn_snapshot, write_snapshot, SnapshotWriter};
pub use vclock::Vclock;
pub use writer::{WalConfig, WalError, WalMode, WalStats, WalWriter};
pub use xlog::XlogError;

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::PathBuf;

    /// A fresh directory per test name and process.
    pub fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("node-wal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

#[cfg(test)]
mod bench;
