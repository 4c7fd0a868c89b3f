//! The write-ahead log: xlog and snap files in Tarantool 2.6's formats, the WAL writer thread
//! with group commit, recovery and garbage collection. See docs/box.md.

pub mod mp;
pub mod row;
pub mod vclock;
pub mod zstd;
