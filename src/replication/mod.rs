//! Replication: the relay (master side: VOTE, JOIN, SUBSCRIBE, streaming rows to a replica),
//! the applier (replica side: bootstrap, join, subscribe, applying rows), and the seam between
//! them and the Raft election and synchronous-queue drivers ([`hub`]).
//!
//! Facts: `../shared/spec/box.md` §1.11 and the decoded capture in
//! `../shared/spec/box-observed/replication/`.

pub mod election;
pub mod hub;
