//! box: Tarantool's database (spaces, indexes, transactions, users, WAL). See docs/box.md.

pub mod access;
pub mod chap_sha1;
pub mod db;
pub mod errcode;
pub mod error;
pub mod field_type;
pub mod index;
pub mod key_def;
pub mod mp;
pub mod schema;
pub mod space;
pub mod tuple;
pub mod update;
pub mod wal;

#[cfg(test)]
#[path = "space_model_tests.rs"]
mod space_model_tests;
