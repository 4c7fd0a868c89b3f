//! Raft leader election and synchronous replication, as Tarantool 2.6.3 has them, as pure
//! state machines (see docs/raft.md):
//!
//! - [`core`]: leader election (terms, votes, the leader, writability), plus opt-in pre-vote
//!   and leader fencing;
//! - [`limbo`]: the queue of synchronous transactions waiting for a quorum (CONFIRM,
//!   ROLLBACK, PROMOTE);
//! - [`sim`]: a seeded simulation of a replica set running both over a lossy network, with
//!   crashes, checking the safety invariants at every step.
//!
//! Drivers (relay, applier, `box.cfg`, `box.info.election`) feed them and carry out their
//! outputs; nothing here does I/O or reads a clock.

pub mod core;
pub mod limbo;
pub mod sim;
