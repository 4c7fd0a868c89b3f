//! box: Tarantool's database (spaces, indexes, transactions, users, WAL). See docs/box.md.

pub mod access;
pub mod chap_sha1;
pub mod errcode;
pub mod error;
