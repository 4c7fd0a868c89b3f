//! box: Tarantool's database (spaces, indexes, transactions, users, WAL). See docs/box.md.

/// The Tarantool version box reports (`box.info.version`, the IPROTO greeting).
pub const VERSION: &str = "2.6.0-0-gnode";
/// The same as `major.minor.patch`, which clients parse from the IPROTO greeting.
pub const VERSION_SHORT: &str = "2.6.0";

pub mod access;
pub mod apply;
pub mod chap_sha1;
pub mod db;
pub mod errcode;
pub mod error;
pub mod field_type;
pub mod index;
pub mod key_def;
pub mod lua;
pub mod lua_election;
pub mod lua_info;
pub mod lua_tuple;
pub mod mp;
pub mod persist;
pub mod raft;
pub mod schema;
pub mod session;
pub mod space;
pub mod status;
pub mod synchro;
pub mod tuple;
pub mod update;
pub mod wal;

#[cfg(test)]
#[path = "space_model_tests.rs"]
mod space_model_tests;
