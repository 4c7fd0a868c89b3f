//! The synchronous transaction queue ("limbo") of Tarantool 2.6.3, as a pure state machine.
//!
//! A transaction that touches an `is_sync` space is written to the WAL locally and then
//! waits here until `replication_synchro_quorum` instances (the writer's own WAL write
//! counts as one) hold it. The queue belongs to one instance, its *owner* (the leader), and
//! is ordered by the owner's LSNs:
//!
//! * acks (`ack(replica, lsn)`) count per entry; when the oldest waiting entries reach the
//!   quorum, the owner writes `CONFIRM {replica_id: owner, lsn}` and every entry up to `lsn`
//!   commits, in queue order;
//! * an asynchronous transaction that arrives while the queue is not empty waits behind the
//!   synchronous ones and commits with them (no acks of its own), to keep commit order;
//! * if the oldest entry waits longer than `replication_synchro_timeout`, the owner writes
//!   `ROLLBACK {replica_id: owner, lsn}`: that entry and everything after it roll back, newest
//!   first; its client gets `ER_SYNC_QUORUM_TIMEOUT` (216), the others `ER_SYNC_ROLLBACK` (217).
//!   While that write is in flight new transactions are refused (217): a transaction written
//!   after the ROLLBACK row would have to be rolled back by it, which its place in the WAL
//!   contradicts (Tarantool's "cascading rollback");
//! * replicas keep the owner's entries in their own limbo until its CONFIRM or ROLLBACK row
//!   arrives; while the queue is foreign and not empty the node is read-only;
//! * a new leader takes the queue over with `PROMOTE {replica_id: old owner, lsn, term}`
//!   (2.6.3): it first waits until a quorum holds everything in its queue, then the PROMOTE
//!   confirms entries up to `lsn`, rolls back the rest, and makes its writer the owner.
//!   PROMOTE rows from a term older than one already seen are ignored.
//!
//! Shape: inputs are method calls with the time (µs); outputs are drained with
//! [`Limbo::take_outputs`]: [`LimboOutput::Write`] asks the driver to write a CONFIRM,
//! ROLLBACK or PROMOTE row and then feed it back through [`Limbo::apply`] (which is also
//! how rows from the owner and from recovery arrive); [`LimboOutput::Commit`] and
//! [`LimboOutput::Rollback`] finish transactions. Only the owner's first entry times out,
//! and only if a local client waits for it ([`Limbo::written`]): replicas and recovered
//! entries wait for a decision as long as it takes, as in Tarantool.
//!
//! Beyond 2.6.3 (used with the core's fencing option): a *frozen* limbo makes no decisions
//! (no CONFIRM, no timeout ROLLBACK) until a PROMOTE arrives, so a deposed or fenced leader
//! cannot decide what the new leader decides differently (Tarantool 2.10's limbo fencing).

use std::collections::VecDeque;

use crate::box_::errcode::{
    ER_QUORUM_WAIT, ER_SYNC_QUORUM_TIMEOUT, ER_SYNC_ROLLBACK, ER_UNCOMMITTED_FOREIGN_SYNC_TXNS,
};
use crate::box_::error::ClientError;
use crate::box_::wal::vclock::{Vclock, VCLOCK_MAX};
use crate::client_error;

use super::core::InstanceId;

/// The driver's name for a transaction.
pub type TxnId = u64;

/// The synchronous replication requests (IPROTO types 31, 40, 41).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynchroKind {
    Promote,
    Confirm,
    Rollback,
}

impl SynchroKind {
    /// The IPROTO request type of the row.
    pub fn iproto_type(self) -> u32 {
        match self {
            SynchroKind::Promote => 31,
            SynchroKind::Confirm => 40,
            SynchroKind::Rollback => 41,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SynchroKind::Promote => "PROMOTE",
            SynchroKind::Confirm => "CONFIRM",
            SynchroKind::Rollback => "ROLLBACK",
        }
    }
}

/// A CONFIRM, ROLLBACK or PROMOTE row (body `{2: replica_id, 3: lsn, 0x53: term}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynchroRequest {
    pub kind: SynchroKind,
    /// Whose LSNs `lsn` counts: the queue owner (PROMOTE: the former owner; 0 = none).
    pub replica_id: InstanceId,
    /// Who wrote the row (its header's replica id); a PROMOTE makes it the owner.
    pub origin_id: InstanceId,
    pub lsn: i64,
    /// PROMOTE only: the Raft term of the promotion.
    pub term: u64,
}

impl SynchroRequest {
    /// Decodes a row of type `kind` (31, 40, 41) written by instance `origin`: body
    /// `{2: replica_id, 3: lsn, 0x53: term}` (unknown keys skipped).
    pub fn decode(kind: u32, origin: InstanceId, body: &[u8]) -> Result<SynchroRequest, String> {
        use crate::box_::wal::mp::Cursor;
        let kind = match kind {
            31 => SynchroKind::Promote,
            40 => SynchroKind::Confirm,
            41 => SynchroKind::Rollback,
            other => return Err(format!("not a synchronous replication request: type {other}")),
        };
        let bad = |e| format!("invalid {} body: {e}", kind.name());
        let mut req = SynchroRequest {
            kind,
            replica_id: 0,
            origin_id: origin,
            lsn: 0,
            term: 0,
        };
        let mut c = Cursor::new(body);
        for _ in 0..c.read_map_len().map_err(bad)? {
            match c.read_uint().map_err(bad)? {
                0x02 => {
                    let id = c.read_uint().map_err(bad)?;
                    req.replica_id = u32::try_from(id)
                        .ok()
                        .filter(|&i| (i as usize) < VCLOCK_MAX)
                        .ok_or_else(|| format!("invalid {} body: replica id {id}", kind.name()))?;
                }
                0x03 => req.lsn = c.read_uint().map_err(bad)? as i64,
                0x53 => req.term = c.read_uint().map_err(bad)?,
                _ => c.skip().map_err(bad)?,
            }
        }
        Ok(req)
    }
}

/// What the limbo asks of its driver, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimboOutput {
    /// Write this row to the WAL (and so replicate it), then pass it to [`Limbo::apply`].
    Write(SynchroRequest),
    /// The transaction is committed.
    Commit(TxnId),
    /// The transaction is rolled back; a waiting client gets `error`.
    Rollback { txn: TxnId, error: ClientError },
}

#[derive(Debug, Clone)]
struct Entry {
    txn: TxnId,
    is_sync: bool,
    /// The owner's LSN of a synchronous entry once written; async entries never get one here.
    lsn: Option<i64>,
    ack_count: usize,
    /// A local client waits since then (the timeout clock); `None` for replicated and
    /// recovered entries, which never time out.
    waiting_since: Option<u64>,
}

/// One instance's synchronous queue. See the module doc.
pub struct Limbo {
    self_id: InstanceId,
    owner: InstanceId,
    queue: VecDeque<Entry>,
    /// Component i: the owner's LSN as instance i acknowledged it (the owner's own write too).
    acks: Vclock,
    /// The biggest LSN the owner confirmed or is confirming; nothing at or below it may be
    /// rolled back. Reset when the owner changes.
    confirmed_lsn: i64,
    /// The newest PROMOTE term seen from each instance.
    promote_terms: [u64; VCLOCK_MAX],
    promote_greatest_term: u64,
    /// A ROLLBACK or PROMOTE of ours is being written: refuse new entries (cascading rollback).
    is_in_rollback: bool,
    /// The entry whose timeout caused the ROLLBACK in flight: it gets 216, the rest 217.
    timed_out: Option<TxnId>,
    /// No decisions until a PROMOTE (node's fencing option).
    frozen: bool,
    quorum: usize,
    synchro_timeout: u64,
    /// Rollbacks performed, as Tarantool counts them.
    rollback_count: u64,
    outputs: Vec<LimboOutput>,
}

impl Limbo {
    /// An empty queue on instance `self_id`; `quorum` is `replication_synchro_quorum`,
    /// `synchro_timeout` is `replication_synchro_timeout` in µs.
    pub fn new(self_id: InstanceId, quorum: usize, synchro_timeout: u64) -> Limbo {
        Limbo {
            self_id,
            owner: 0,
            queue: VecDeque::new(),
            acks: Vclock::new(),
            confirmed_lsn: 0,
            promote_terms: [0; VCLOCK_MAX],
            promote_greatest_term: 0,
            is_in_rollback: false,
            timed_out: None,
            frozen: false,
            quorum: quorum.max(1),
            synchro_timeout,
            rollback_count: 0,
            outputs: Vec::new(),
        }
    }

    // ===== reading =====

    /// The instance whose transactions the queue holds, 0 before the first one.
    pub fn owner(&self) -> InstanceId {
        self.owner
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// The limbo forbids writes here: it holds another instance's transactions, or it is
    /// frozen (2.6.3's `txn_limbo_is_ro` plus node's fencing).
    pub fn is_ro(&self) -> bool {
        (self.owner != self.self_id && !self.queue.is_empty()) || self.frozen
    }

    /// A transaction must wait here: it is synchronous, or the queue is not empty (an
    /// asynchronous one then waits behind the synchronous ones).
    pub fn must_wait(&self, is_sync: bool) -> bool {
        is_sync || !self.queue.is_empty()
    }

    pub fn confirmed_lsn(&self) -> i64 {
        self.confirmed_lsn
    }

    /// The LSN of the newest written synchronous entry.
    pub fn last_sync_lsn(&self) -> Option<i64> {
        self.queue.iter().rev().filter(|e| e.is_sync).find_map(|e| e.lsn)
    }

    /// The newest PROMOTE term seen from `id`.
    pub fn promote_term(&self, id: InstanceId) -> u64 {
        self.promote_terms.get(id as usize).copied().unwrap_or(0)
    }

    pub fn promote_greatest_term(&self) -> u64 {
        self.promote_greatest_term
    }

    /// Rows of `id` come from an instance whose last PROMOTE is older than the newest one
    /// (2.6.3's applier turns such synchronous transactions into NOPs when Raft is on).
    pub fn is_replica_outdated(&self, id: InstanceId) -> bool {
        self.promote_term(id) < self.promote_greatest_term
    }

    pub fn is_in_rollback(&self) -> bool {
        self.is_in_rollback
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    pub fn rollback_count(&self) -> u64 {
        self.rollback_count
    }

    /// `replication_synchro_timeout` in µs.
    pub fn synchro_timeout(&self) -> u64 {
        self.synchro_timeout
    }

    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// The owner's LSN as each instance acknowledged it.
    pub fn acks(&self) -> &Vclock {
        &self.acks
    }

    /// When [`Limbo::handle_timer`] is due: the first entry's timeout, if it can time out.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timeout_candidate()
            .map(|(since, _, _)| since.saturating_add(self.synchro_timeout))
    }

    /// Drains the outputs, oldest first.
    pub fn take_outputs(&mut self) -> Vec<LimboOutput> {
        std::mem::take(&mut self.outputs)
    }

    // ===== configuration =====

    /// `replication_synchro_quorum` changed: entries that now have enough acks are confirmed.
    pub fn set_quorum(&mut self, quorum: usize) {
        self.quorum = quorum.max(1);
        self.on_parameters_change();
    }

    /// `replication_synchro_timeout` changed (µs); the first entry's deadline moves with it.
    pub fn set_synchro_timeout(&mut self, timeout: u64) {
        self.synchro_timeout = timeout;
        self.on_parameters_change();
    }

    /// Stop deciding (no CONFIRM, no timeout ROLLBACK) until a PROMOTE is applied. For a
    /// leader that lost its quorum or learned of a newer term (fencing, beyond 2.6.3).
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    // ===== transactions =====

    /// Queue transaction `txn` of instance `owner` (the local id for local ones). Fails
    /// while a rollback is being written (`ER_SYNC_ROLLBACK`) or when the queue holds
    /// another instance's transactions (`ER_UNCOMMITTED_FOREIGN_SYNC_TXNS`). Call before the
    /// WAL write, so that a rollback can reach a transaction still being written.
    pub fn append(&mut self, txn: TxnId, owner: InstanceId, is_sync: bool) -> Result<(), ClientError> {
        if self.is_in_rollback {
            return Err(client_error!(ER_SYNC_ROLLBACK));
        }
        if self.owner != owner {
            if self.owner != 0 && !self.queue.is_empty() {
                return Err(client_error!(ER_UNCOMMITTED_FOREIGN_SYNC_TXNS, self.owner));
            }
            self.owner = owner;
            self.confirmed_lsn = 0;
        }
        self.queue.push_back(Entry {
            txn,
            is_sync,
            lsn: None,
            ack_count: 0,
            waiting_since: None,
        });
        Ok(())
    }

    /// The queue holds `txn`.
    pub fn holds(&self, txn: TxnId) -> bool {
        self.queue.iter().any(|e| e.txn == txn)
    }

    /// The WAL write of local transaction `txn` failed: it leaves the queue (its client gets
    /// the WAL error; every later write fails too until the WAL resumes).
    pub fn abort(&mut self, txn: TxnId) {
        self.queue.retain(|e| e.txn != txn);
    }

    /// The WAL gave `txn` its `lsn` (a replicated or recovered transaction: nobody waits
    /// for it here). On the owner, acks that arrived before the write are counted.
    pub fn assign_lsn(&mut self, txn: TxnId, lsn: i64) {
        let owner_is_self = self.owner == self.self_id;
        let acks = self.acks;
        let Some(e) = self.queue.iter_mut().find(|e| e.txn == txn) else {
            return;
        };
        if !e.is_sync || e.lsn.is_some() {
            return;
        }
        e.lsn = Some(lsn);
        if owner_is_self {
            e.ack_count = acks.iter().filter(|&(_, acked)| acked >= lsn).count();
        }
    }

    /// A local transaction is written with `lsn` at `now` and its client waits: assign the
    /// LSN, count our own write as the first ack, start the timeout clock.
    pub fn written(&mut self, txn: TxnId, lsn: i64, now: u64) {
        self.assign_lsn(txn, lsn);
        if let Some(e) = self.queue.iter_mut().find(|e| e.txn == txn && e.is_sync) {
            e.waiting_since = Some(now);
        }
        if self.owner == self.self_id {
            self.ack(self.self_id, lsn);
        }
    }

    /// Instance `replica` holds the owner's rows up to `lsn` (its vclock[owner]).
    pub fn ack(&mut self, replica: InstanceId, lsn: i64) {
        if self.queue.is_empty() || self.is_in_rollback || self.frozen {
            // A rollback in flight dooms the whole queue: confirming any of it would be a
            // second, contradicting decision.
            return;
        }
        let prev = self.acks.get(replica);
        if lsn <= prev {
            return;
        }
        self.acks.follow(replica, lsn);
        let mut confirm_lsn = None;
        for e in self.queue.iter_mut() {
            let Some(entry_lsn) = e.lsn else {
                // Async (commits with the entries before it) or not written yet.
                continue;
            };
            if entry_lsn > lsn {
                break;
            }
            if entry_lsn <= prev {
                continue;
            }
            e.ack_count += 1;
            if e.ack_count >= self.quorum {
                confirm_lsn = Some(entry_lsn);
            }
        }
        if let Some(lsn) = confirm_lsn.filter(|&l| l > self.confirmed_lsn) {
            self.write_confirm(lsn);
        }
    }

    /// Call at (or after) [`Limbo::next_deadline`]: the first entry's client has waited too
    /// long; write a ROLLBACK for it and everything after it.
    pub fn handle_timer(&mut self, now: u64) {
        let Some((since, txn, lsn)) = self.timeout_candidate() else {
            return;
        };
        if now < since.saturating_add(self.synchro_timeout) {
            return;
        }
        self.is_in_rollback = true;
        self.timed_out = Some(txn);
        self.outputs.push(LimboOutput::Write(SynchroRequest {
            kind: SynchroKind::Rollback,
            replica_id: self.owner,
            origin_id: self.self_id,
            lsn,
            term: 0,
        }));
    }

    /// A CONFIRM, ROLLBACK or PROMOTE row, from our own WAL write, from the owner (through
    /// the applier) or from recovery (`txn_limbo_process`).
    pub fn apply(&mut self, req: &SynchroRequest) {
        if req.origin_id == self.self_id && matches!(req.kind, SynchroKind::Rollback | SynchroKind::Promote) {
            // Our own decision is durable: the queue may take new entries again.
            self.is_in_rollback = false;
        }
        let origin = req.origin_id as usize;
        if origin < VCLOCK_MAX && self.promote_terms[origin] < req.term {
            self.promote_terms[origin] = req.term;
            if req.term > self.promote_greatest_term {
                self.promote_greatest_term = req.term;
            } else if req.kind == SynchroKind::Promote {
                // A promotion older than one already seen: its queue is history.
                return;
            }
        }
        let mut lsn = req.lsn;
        if req.replica_id == 0 {
            // The promoter's queue was empty and never owned: ours must empty as well.
        } else if req.replica_id != self.owner {
            if req.kind != SynchroKind::Promote {
                // A decision about a queue we don't hold, e.g. an old leader's CONFIRM of
                // rows confirmed long ago, written again at its recovery.
                return;
            }
            // A newer leader takes over a queue it saw in other hands: it was elected by a
            // quorum, which didn't wait for ours, so ours rolls back.
            lsn = 0;
        }
        match req.kind {
            SynchroKind::Confirm => self.read_confirm(lsn),
            SynchroKind::Rollback => self.read_rollback(lsn),
            SynchroKind::Promote => {
                self.read_confirm(lsn);
                self.read_rollback(lsn + 1);
                self.owner = req.origin_id;
                self.confirmed_lsn = 0;
                self.frozen = false;
                self.acks = Vclock::new();
            }
        }
    }

    // ===== promotion (box_promote of 2.6.3, the limbo half) =====

    /// A node elected leader in `term` starts taking the queue over. `None` when it already
    /// did in this term. The driver then waits until `quorum` instances (itself included)
    /// hold the former owner's rows up to `wait_lsn` and calls [`Limbo::finish_promotion`].
    pub fn begin_promotion(&self, term: u64) -> Option<Promotion> {
        if self.promote_term(self.self_id) >= term {
            return None;
        }
        Some(Promotion {
            former_owner: self.owner,
            wait_lsn: self.last_sync_lsn().unwrap_or(self.confirmed_lsn),
            is_queue_empty: self.queue.is_empty(),
            term,
        })
    }

    /// `acked` instances (this one included) hold `p.wait_lsn` of the former owner. Writes
    /// the PROMOTE when that is a quorum (at once for an empty queue) and returns `Ok(true)`;
    /// `Ok(false)` to keep waiting; `ER_QUORUM_WAIT` when the queue grew meanwhile (begin
    /// again).
    pub fn finish_promotion(&mut self, p: &Promotion, acked: usize) -> Result<bool, ClientError> {
        if !p.is_queue_empty && acked < self.quorum {
            return Ok(false);
        }
        if self.owner != p.former_owner || self.last_sync_lsn().is_some_and(|l| l > p.wait_lsn) {
            return Err(client_error!(
                ER_QUORUM_WAIT,
                self.quorum,
                "new synchronous transactions appeared"
            ));
        }
        self.confirmed_lsn = p.wait_lsn;
        self.is_in_rollback = true;
        self.outputs.push(LimboOutput::Write(SynchroRequest {
            kind: SynchroKind::Promote,
            replica_id: p.former_owner,
            origin_id: self.self_id,
            lsn: p.wait_lsn,
            term: p.term,
        }));
        Ok(true)
    }

    // ===== internals =====

    /// The first entry, when it may time out: ours, synchronous, written, waited for, not
    /// already being confirmed, and no decision in flight or frozen.
    fn timeout_candidate(&self) -> Option<(u64, TxnId, i64)> {
        if self.is_in_rollback || self.frozen || self.owner != self.self_id {
            return None;
        }
        let first = self.queue.front()?;
        let (since, lsn) = (first.waiting_since?, first.lsn?);
        if !first.is_sync || lsn <= self.confirmed_lsn {
            // A CONFIRM covering it is being written: it can only commit now.
            return None;
        }
        Some((since, first.txn, lsn))
    }

    fn on_parameters_change(&mut self) {
        if self.queue.is_empty() || self.is_in_rollback || self.frozen {
            return;
        }
        let confirm_lsn = self
            .queue
            .iter()
            .filter(|e| e.is_sync && e.ack_count >= self.quorum)
            .filter_map(|e| e.lsn)
            .next_back();
        if let Some(lsn) = confirm_lsn.filter(|&l| l > self.confirmed_lsn) {
            self.write_confirm(lsn);
        }
    }

    fn write_confirm(&mut self, lsn: i64) {
        self.confirmed_lsn = lsn;
        self.outputs.push(LimboOutput::Write(SynchroRequest {
            kind: SynchroKind::Confirm,
            replica_id: self.owner,
            origin_id: self.self_id,
            lsn,
            term: 0,
        }));
    }

    /// Commit entries up to `lsn`, in order; an async entry commits once nothing unconfirmed
    /// is before it.
    fn read_confirm(&mut self, lsn: i64) {
        while let Some(e) = self.queue.front() {
            if e.is_sync && e.lsn.is_none_or(|l| l > lsn) {
                break;
            }
            let txn = e.txn;
            self.queue.pop_front();
            self.outputs.push(LimboOutput::Commit(txn));
        }
    }

    /// Roll back every synchronous entry from `lsn` on and everything after it, newest first.
    /// An entry not written yet counts as newer than any LSN (2.6.3 would leave the queue as
    /// is when its last entry is unwritten; it cannot be, in any order Tarantool writes).
    fn read_rollback(&mut self, lsn: i64) {
        // The oldest synchronous entry of the trailing run at or after `lsn`; async entries
        // between it and an older synchronous one keep waiting for that one.
        let mut first_victim = None;
        for (i, e) in self.queue.iter().enumerate().rev() {
            if !e.is_sync {
                continue;
            }
            if e.lsn.is_some_and(|l| l < lsn) {
                break;
            }
            first_victim = Some(i);
        }
        let Some(first_victim) = first_victim else {
            return;
        };
        let timed_out = self.timed_out.take();
        while self.queue.len() > first_victim {
            let Some(e) = self.queue.pop_back() else { break };
            let code = if Some(e.txn) == timed_out {
                ER_SYNC_QUORUM_TIMEOUT
            } else {
                ER_SYNC_ROLLBACK
            };
            self.rollback_count += 1;
            self.outputs.push(LimboOutput::Rollback {
                txn: e.txn,
                error: client_error!(code),
            });
        }
    }
}

/// A leader's take-over of the queue in progress (see [`Limbo::begin_promotion`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promotion {
    /// The queue's owner when the promotion began (0 if it never had one).
    pub former_owner: InstanceId,
    /// Everything up to this LSN of `former_owner` is confirmed by the PROMOTE.
    pub wait_lsn: i64,
    /// Nothing to wait for: the PROMOTE can be written at once.
    pub is_queue_empty: bool,
    pub term: u64,
}

impl Promotion {
    /// An instance whose vclock is `vclock` holds everything the PROMOTE will confirm.
    pub fn is_held_by(&self, vclock: &Vclock) -> bool {
        self.former_owner == 0 || vclock.get(self.former_owner) >= self.wait_lsn
    }
}

#[cfg(test)]
#[path = "limbo_tests.rs"]
mod tests;
