//! The write-ahead log: xlog and snap files in Tarantool 2.6's formats, the WAL writer thread
//! with group commit, recovery and garbage collection. See docs/box.md.

pub mod gc;
pub mod mp;
pub mod recovery;
pub mod row;
pub mod snapshot;
pub mod vclock;
pub mod writer;
pub mod xlog;
pub mod zstd;

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
