//! box: Tarantool's database (spaces, indexes, transactions, users, WAL). See docs/box.md.

pub mod access;
pub mod chap_sha1;
pub mod errcode;
pub mod error;
pub mod field_type;
pub mod index;
pub mod key_def;
pub mod lua_tuple;
pub mod mp;
pub mod space;
pub mod tuple;
pub mod update;
