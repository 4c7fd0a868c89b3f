//! box: Tarantool's database (spaces, indexes, transactions, users, WAL). See docs/box.md.

pub mod errcode;
pub mod error;
pub mod index;
