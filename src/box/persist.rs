//! Durability: committed statements become WAL rows with LSNs, the WAL writer thread
//! acknowledges them, a failed write rolls them back; recovery and snapshots.

use std::collections::VecDeque;
use std::path::PathBuf;

use uuid::Uuid;

use super::db::{Db, Stmt};
use super::errcode::ER_WAL_IO;
use super::error::ClientError;
use super::raft::limbo::{Limbo, LimboOutput, SynchroKind, SynchroRequest};
use super::tuple::Tuple;
use super::wal::row::{Row, GROUP_LOCAL, IPROTO_RAFT_CONFIRM, IPROTO_RAFT_PROMOTE, IPROTO_RAFT_ROLLBACK};
use super::wal::vclock::Vclock;
use super::wal::writer::{WalError, WalMode, WalWriter};
use crate::client_error;

pub struct Persistence {
    pub wal: Option<WalWriter>,
    pub mode: WalMode,
    pub vclock: Vclock,
    pub instance_id: u32,
    pub instance_uuid: Uuid,
    pub memtx_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub checkpoint_count: usize,
    /// Transactions written but not yet acknowledged, by ticket. A ticket is the sequence
    /// number the WAL writer acknowledges the transaction's batch by (`SeqAcks`).
    pending: hashbrown::HashMap<u64, Pending>,
    next_ticket: u64,
    /// Every ticket up to this one has its outcome in `pending` (see `collect`).
    collected: u64,
    /// Failures the WAL reported for tickets past `collected`.
    failures: VecDeque<(u64, WalError)>,
    /// Errors the WAL reported, for the log.
    pub last_error: Option<String>,
    /// Transactions committed in this scheduler round, not yet handed to the WAL thread:
    /// their rows back to back, and (row count, ticket) per transaction.
    outbox_rows: Vec<Row>,
    outbox_batches: Vec<(u32, u64)>,
    /// The synchronous transaction queue: transactions of `is_sync` spaces, and those
    /// behind them, wait here after their WAL write (docs/raft.md).
    pub limbo: Limbo,
    /// CONFIRM and ROLLBACK rows the limbo asked for, for the synchro task to write.
    pub synchro_writes: Vec<SynchroRequest>,
    pub synchro_wakeup: std::rc::Rc<tokio::sync::Notify>,
    /// Replicated transactions with business in the limbo, by ticket: queued there (kept
    /// until the owner's decision with their statements, to undo a ROLLBACK), or carrying
    /// a decision to apply once written.
    replicated: hashbrown::HashMap<u64, bool>,
    /// Waiters woken by a replicated decision, for the next collect to wake.
    woken_by_replication: Vec<Waiter>,
    /// Statements of replicated transactions waiting in the limbo, for a ROLLBACK.
    replicated_undo: hashbrown::HashMap<u64, Vec<Stmt>>,
}

/// The body of a RAFT row that persists `{0: term, 1: vote}` (the WAL's and a checkpoint's).
pub fn raft_state_body(term: u64, vote: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(12);
    super::mp::write_map_header(&mut body, 2);
    body.push(0x00);
    super::mp::write_uint(&mut body, term);
    body.push(0x01);
    super::mp::write_uint(&mut body, vote as u64);
    body
}

/// Microseconds since the process started: the limbo's and Raft's clock.
pub fn now_us() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(std::time::Instant::now).elapsed().as_micros() as u64
}

impl Persistence {
    pub fn new(
        wal: Option<WalWriter>,
        mode: WalMode,
        vclock: Vclock,
        instance_id: u32,
        instance_uuid: Uuid,
        memtx_dir: PathBuf,
        wal_dir: PathBuf,
    ) -> Persistence {
        Persistence {
            wal,
            mode,
            vclock,
            instance_id,
            instance_uuid,
            memtx_dir,
            wal_dir,
            checkpoint_count: 2,
            pending: hashbrown::HashMap::new(),
            next_ticket: 1,
            collected: 0,
            failures: VecDeque::new(),
            last_error: None,
            outbox_rows: Vec::new(),
            outbox_batches: Vec::new(),
            limbo: Limbo::new(instance_id, 1, 5_000_000),
            synchro_writes: Vec::new(),
            synchro_wakeup: std::rc::Rc::new(tokio::sync::Notify::new()),
            replicated: hashbrown::HashMap::new(),
            woken_by_replication: Vec::new(),
            replicated_undo: hashbrown::HashMap::new(),
        }
    }

    /// Logs a transaction's statements: LSNs are assigned here, in commit order, and the
    /// rows go to the writer as one batch. Returns a ticket to wait on, or None when there
    /// is nothing to wait for (temporary spaces only, or wal_mode none).
    pub fn commit(&mut self, db: &mut Db, stmts: Vec<Stmt>) -> Result<Option<u64>, ClientError> {
        self.commit_stmts(db, Stmts::Many(stmts))
    }

    /// [`commit`](Self::commit) for one autocommit statement (no Vec made for it).
    pub fn commit_one(&mut self, db: &mut Db, stmt: Stmt) -> Result<Option<u64>, ClientError> {
        self.commit_stmts(db, Stmts::One(stmt))
    }

    fn commit_stmts(&mut self, db: &mut Db, mut stmts: Stmts) -> Result<Option<u64>, ClientError> {
        // A synchronous transaction, or any behind one, joins the limbo before its write,
        // so that a rollback can reach it while it is being written (txn_limbo_append).
        let mut in_limbo = false;
        if self.wal.is_some() {
            let (mut logged, mut is_sync) = (false, false);
            for s in stmts.iter_mut().filter(|s| s.row.is_some()) {
                logged = true;
                is_sync |= s.is_sync;
            }
            if logged && self.limbo.must_wait(is_sync) {
                if let Err(e) = self.limbo.append(self.next_ticket, self.instance_id, is_sync) {
                    db.undo(stmts.into_vec());
                    return Err(e);
                }
                in_limbo = true;
            }
        }
        // The round's rows go into one vector (`flush`), batches marked by their counts.
        let first_row = self.outbox_rows.len();
        let mut tsn = 0;
        let mut last_lsn = 0;
        for s in stmts.iter_mut() {
            // The body moves into the row: undo needs only the tuples.
            let Some((kind, body, group_id)) = &mut s.row else {
                continue;
            };
            // Rows of local spaces count in vclock component 0, as Tarantool's WAL counts them:
            // they are never replicated, so the instance's own component stays gapless.
            let replica_id = if *group_id == GROUP_LOCAL { 0 } else { self.instance_id };
            let lsn = self.vclock.get(replica_id) + 1;
            self.vclock.follow(replica_id, lsn);
            if tsn == 0 {
                tsn = lsn;
            }
            if replica_id != 0 {
                last_lsn = lsn;
            }
            if self.wal.is_some() {
                self.outbox_rows.push(Row {
                    kind: *kind,
                    replica_id,
                    lsn,
                    // The WAL thread stamps the rows of each write (as Tarantool's does).
                    timestamp: 0.0,
                    group_id: *group_id,
                    tsn,
                    is_commit: false,
                    body: std::mem::take(body),
                });
            }
        }
        // No row (temporary spaces only), or nothing to wait for (wal_mode none).
        if tsn == 0 || self.wal.is_none() {
            return Ok(None);
        }
        if let Some(last) = self.outbox_rows.last_mut() {
            last.is_commit = true;
        }
        // Sent at the end of the scheduler round with every other commit of the round
        // (`flush`): one wakeup of the WAL thread for all of them.
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let count = (self.outbox_rows.len() - first_row) as u32;
        self.outbox_batches.push((count, ticket));
        self.pending.insert(
            ticket,
            Pending {
                stmts,
                result: None,
                waiter: None,
                lsn: last_lsn,
                in_limbo,
                limbo_committed: false,
                written: false,
            },
        );
        Ok(Some(ticket))
    }

    /// Recovery found transactions (origin, last LSN, synchronous?, their statements) with
    /// no decision in the log: they wait in the limbo for their owner's, which keeps them
    /// or undoes them. Their tickets never reach the WAL (`collect` passes over them).
    pub fn queue_recovered(&mut self, txns: Vec<(u32, i64, bool, Vec<Stmt>)>) {
        for (origin, lsn, is_sync, stmts) in txns {
            let ticket = self.next_ticket;
            self.next_ticket += 1;
            if self.limbo.append(ticket, origin, is_sync).is_err() {
                continue;
            }
            self.limbo.assign_lsn(ticket, lsn);
            self.replicated_undo.insert(ticket, stmts);
        }
    }

    /// Logs a CONFIRM, ROLLBACK or PROMOTE row of this instance; the ticket resolves when it
    /// is written. It bypasses the limbo: it is what the limbo waits for.
    pub fn write_synchro(&mut self, req: &SynchroRequest) -> Option<u64> {
        let mut body = Vec::with_capacity(24);
        let with_term = req.kind == SynchroKind::Promote;
        super::mp::write_map_header(&mut body, if with_term { 3 } else { 2 });
        body.push(0x02);
        super::mp::write_uint(&mut body, req.replica_id as u64);
        body.push(0x03);
        super::mp::write_uint(&mut body, req.lsn.max(0) as u64);
        if with_term {
            body.push(0x53);
            super::mp::write_uint(&mut body, req.term);
        }
        self.write_system_row(req.kind.iproto_type(), body, false)
    }

    /// Logs a RAFT row `{0: term, 1: vote}` (local: never replicated, counted in vclock
    /// component 0, as Tarantool 2.6.3 persists its election state).
    pub fn write_raft(&mut self, term: u64, vote: u32) -> Option<u64> {
        self.write_system_row(super::wal::row::IPROTO_RAFT, raft_state_body(term, vote), true)
    }

    fn write_system_row(&mut self, kind: u32, body: Vec<u8>, local: bool) -> Option<u64> {
        self.wal.as_ref()?;
        let replica_id = if local { 0 } else { self.instance_id };
        let lsn = self.vclock.get(replica_id) + 1;
        self.vclock.follow(replica_id, lsn);
        self.outbox_rows.push(Row {
            kind,
            replica_id,
            lsn,
            timestamp: 0.0,
            group_id: if local { GROUP_LOCAL } else { 0 },
            tsn: lsn,
            is_commit: true,
            body,
        });
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.outbox_batches.push((1, ticket));
        // Written by a task, not a fiber: no scheduler round ends to send it.
        self.flush();
        self.pending.insert(
            ticket,
            Pending {
                stmts: Stmts::Many(Vec::new()),
                result: None,
                waiter: None,
                lsn,
                in_limbo: false,
                limbo_committed: false,
                written: false,
            },
        );
        Some(ticket)
    }

    /// Logs a transaction received from another instance: its rows as they came (origin
    /// replica id, LSN, tsn, timestamp), the vclock following each, so a row arriving
    /// again (a full mesh) is known as applied before it is written. `stmts` are its
    /// changes, undone if the write fails. Returns the ticket to wait on (None without a WAL).
    pub fn commit_replicated(&mut self, db: &mut Db, stmts: Vec<Stmt>, rows: Vec<Row>) -> Option<u64> {
        for r in &rows {
            self.vclock.follow(r.replica_id, r.lsn);
        }
        self.wal.as_ref()?;
        let ticket = self.next_ticket;
        // A CONFIRM, ROLLBACK or PROMOTE of the queue's owner: the limbo applies it at once,
        // in stream order (2.6.3's applier writes it and processes it before it reads the next
        // row; here later rows may be applied while it is being written, so it must be
        // processed first). Its WAL write follows the rows before it, as on the owner.
        let synchro = rows.iter().find_map(|r| match r.kind {
            IPROTO_RAFT_PROMOTE | IPROTO_RAFT_CONFIRM | IPROTO_RAFT_ROLLBACK => {
                SynchroRequest::decode(r.kind, r.replica_id, &r.body).ok()
            }
            _ => None,
        });
        // A synchronous transaction of the owner, or any behind one, waits in our limbo
        // for the owner's decision; the applier goes on once it is written.
        let is_sync = stmts.iter().any(|s| s.is_sync);
        let origin = rows.iter().map(|r| r.replica_id).find(|&id| id != 0).unwrap_or(0);
        let last_lsn = rows
            .iter()
            .filter(|r| r.replica_id == origin)
            .map(|r| r.lsn)
            .max()
            .unwrap_or(0);
        let mut in_limbo = false;
        if !stmts.is_empty() && origin != 0 && self.limbo.must_wait(is_sync) {
            in_limbo = self.limbo.append(ticket, origin, is_sync).is_ok();
            // The LSN is known from the row: a CONFIRM that follows can decide at once.
            self.limbo.assign_lsn(ticket, last_lsn);
        }
        let count = rows.len() as u32;
        self.outbox_rows.extend(rows);
        self.next_ticket += 1;
        self.outbox_batches.push((count, ticket));
        self.pending.insert(
            ticket,
            Pending {
                stmts: Stmts::Many(stmts),
                result: None,
                waiter: None,
                lsn: last_lsn,
                in_limbo: false,
                limbo_committed: false,
                written: false,
            },
        );
        if in_limbo {
            self.replicated.insert(ticket, true);
        }
        if let Some(req) = synchro {
            self.limbo.apply(&req);
            let mut wake = Vec::new();
            self.run_limbo(db, &mut wake);
            // Replicated decisions wake nobody local but the transactions they decide.
            self.woken_by_replication.extend(wake);
        }
        Some(ticket)
    }

    /// Carries out what the limbo decided: commits and rollbacks reach their waiters (a
    /// rollback undoes the transaction's changes at once, newest first, as the limbo lists
    /// them), rows to write go to the synchro task.
    pub fn run_limbo(&mut self, db: &mut Db, wake: &mut Vec<Waiter>) {
        for out in self.limbo.take_outputs() {
            match out {
                LimboOutput::Commit(txn) => {
                    self.replicated_undo.remove(&txn);
                    if let Some(p) = self.pending.get_mut(&txn) {
                        p.limbo_committed = true;
                        // An asynchronous transaction may be confirmed before its own write.
                        if p.written && p.result.is_none() {
                            p.result = Some(Ok(()));
                            wake.extend(p.waiter.take());
                        }
                    }
                }
                LimboOutput::Rollback { txn, error } => {
                    if let Some(stmts) = self.replicated_undo.remove(&txn) {
                        db.undo(stmts);
                        continue;
                    }
                    if self.replicated.contains_key(&txn) {
                        // Rolled back before its write finished: undone now; the applier
                        // still waits for the write itself.
                        if let Some(p) = self.pending.get_mut(&txn) {
                            db.undo(std::mem::replace(&mut p.stmts, Stmts::Many(Vec::new())).into_vec());
                        }
                        continue;
                    }
                    if let Some(p) = self.pending.get_mut(&txn) {
                        if p.result.is_none() {
                            db.undo(std::mem::replace(&mut p.stmts, Stmts::Many(Vec::new())).into_vec());
                            p.result = Some(Err(Failure::Synchro(error)));
                            wake.extend(p.waiter.take());
                        }
                    }
                }
                LimboOutput::Write(req) => {
                    self.synchro_writes.push(req);
                    self.synchro_wakeup.notify_one();
                }
            }
        }
        if self.limbo.next_deadline().is_some() {
            // A new first entry may time out: the synchro task re-arms its timer.
            self.synchro_wakeup.notify_one();
        }
        let limbo_ro = self.limbo.is_ro();
        if db.ro_reasons.limbo != limbo_ro {
            db.set_ro(|r| r.limbo = limbo_ro);
        }
    }

    /// Hands the round's commits to the WAL thread.
    pub fn flush(&mut self) {
        if let Some(wal) = &self.wal {
            if !self.outbox_batches.is_empty() {
                wal.submit_seq(
                    std::mem::take(&mut self.outbox_rows),
                    std::mem::take(&mut self.outbox_batches),
                );
            }
        }
    }

    /// Records the outcomes the WAL has reported since the last call and adds whoever
    /// waits for them to `wake`.
    pub fn collect(&mut self, db: &mut Db, wake: &mut Vec<Waiter>) {
        let Some(wal) = &self.wal else { return };
        let (done, failed, closed) = wal.acks().take();
        self.failures.extend(failed);
        // A WAL thread that is gone completes nothing more: what it has not done failed.
        let upto = if closed { self.next_ticket - 1 } else { done };
        while self.collected < upto {
            let ticket = self.collected + 1;
            self.collected = ticket;
            while self.failures.front().is_some_and(|f| f.0 < ticket) {
                self.failures.pop_front();
            }
            let result = match self.failures.front() {
                Some(f) if f.0 == ticket => self.failures.pop_front().map_or(Ok(()), |f| Err(Failure::Wal(f.1))),
                _ if ticket > done => Err(Failure::Wal(WalError::Closed)),
                _ => Ok(()),
            };
            if self.replicated.remove(&ticket).is_some() {
                match &result {
                    // Still undecided: its statements stay for the owner's ROLLBACK.
                    Ok(()) if self.limbo.holds(ticket) => {
                        if let Some(p) = self.pending.get_mut(&ticket) {
                            let stmts = std::mem::replace(&mut p.stmts, Stmts::Many(Vec::new()));
                            self.replicated_undo.insert(ticket, stmts.into_vec());
                        }
                    }
                    Ok(()) => {}
                    Err(_) => self.limbo.abort(ticket),
                }
            }
            let Some(p) = self.pending.get_mut(&ticket) else {
                continue;
            };
            if p.written {
                // Recovered transactions hold tickets the WAL never saw.
                continue;
            }
            p.written = true;
            if p.in_limbo && p.result.is_none() {
                match result {
                    Ok(()) if p.limbo_committed => p.result = Some(Ok(())),
                    // The limbo decides: the own write is the first ack (for a synchronous
                    // one), the CONFIRM or ROLLBACK comes later.
                    Ok(()) => {
                        self.limbo.written(ticket, p.lsn, now_us());
                        continue;
                    }
                    Err(e) => {
                        self.limbo.abort(ticket);
                        p.result = Some(Err(e));
                    }
                }
            } else if p.result.is_none() {
                p.result = Some(result);
            } else {
                // A rollback decided before the write finished.
                continue;
            }
            // The waiter drops the statements soon, all of them in a burst: their
            // tuples' counts come into cache now, side by side.
            for s in p.stmts.iter_mut() {
                s.old.iter().chain(&s.new).for_each(Tuple::prefetch);
            }
            if let Some(w) = p.waiter.take() {
                wake.push(w);
            }
        }
        self.run_limbo(db, wake);
        wake.append(&mut self.woken_by_replication);
    }

    /// Makes `waiter` the one to wake when `ticket`'s outcome arrives; false (nothing
    /// done) if it is known already, for `poll_done` to report.
    pub fn wait_for(&mut self, ticket: u64, waiter: Waiter) -> bool {
        match self.pending.get_mut(&ticket) {
            Some(p) if p.result.is_none() => {
                p.waiter = Some(waiter);
                true
            }
            _ => false,
        }
    }

    /// For `waiter` waiting on `ticket`: Ok(true) once the write is done (its statements
    /// rolled back and an error returned if it failed), Ok(false) to wait until woken.
    pub fn poll_done(&mut self, db: &mut Db, ticket: u64, waiter: Waiter) -> Result<bool, ClientError> {
        let Some(p) = self.pending.get_mut(&ticket) else {
            return Ok(true);
        };
        if p.result.is_none() {
            p.waiter = Some(waiter);
            return Ok(false);
        }
        let Some(p) = self.pending.remove(&ticket) else {
            return Ok(true);
        };
        match p.result {
            Some(Ok(())) | None => Ok(true),
            Some(Err(Failure::Wal(e))) => {
                self.last_error = Some(e.to_string());
                db.undo(p.stmts.into_vec());
                Err(client_error!(ER_WAL_IO))
            }
            // Undone when the limbo decided.
            Some(Err(Failure::Synchro(e))) => Err(e),
        }
    }
}

/// A transaction's statements; most are a single autocommit one, kept without a Vec.
enum Stmts {
    One(Stmt),
    Many(Vec<Stmt>),
}

impl Stmts {
    fn iter_mut(&mut self) -> std::slice::IterMut<'_, Stmt> {
        match self {
            Stmts::One(s) => std::slice::from_mut(s).iter_mut(),
            Stmts::Many(v) => v.iter_mut(),
        }
    }

    fn into_vec(self) -> Vec<Stmt> {
        match self {
            Stmts::One(s) => vec![s],
            Stmts::Many(v) => v,
        }
    }
}

/// A commit between its hand-over to the WAL and the waiting fiber learning the outcome.
struct Pending {
    stmts: Stmts,
    result: Option<Result<(), Failure>>,
    waiter: Option<Waiter>,
    /// The LSN of the transaction's last replicated row (the limbo's name for it).
    lsn: i64,
    /// It waits in the limbo after its write.
    in_limbo: bool,
    /// The limbo committed it (an asynchronous one may be, before its write finished).
    limbo_committed: bool,
    /// The WAL has answered for it.
    written: bool,
}

/// Why a commit failed.
enum Failure {
    /// The WAL write failed: the statements are undone when the waiter learns it.
    Wal(WalError),
    /// The limbo rolled it back (timeout, ROLLBACK row): undone already.
    Synchro(ClientError),
}

/// Who waits for a commit: a Lua fiber (box's Lua API) or a Rust task (the IPROTO
/// server's writes, which need no fiber).
pub enum Waiter {
    Fiber(u64),
    Task(std::task::Waker),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::box_::db::IPROTO_REPLACE;
    use crate::box_::wal::testutil::tmpdir;
    use crate::box_::wal::WalConfig;

    fn stmt() -> Stmt {
        let tuple = Tuple::new(&[0x91, 0x01]).unwrap();
        Stmt {
            space_id: 999,
            old: None,
            new: Some(tuple.clone()),
            row: Some((IPROTO_REPLACE, Row::replace_body(999, tuple.data()), 0)),
            is_sync: false,
        }
    }

    /// Collects until `ticket` has its outcome; returns the fibers woken on the way.
    fn collect_until(p: &mut Persistence, db: &mut Db, ticket: u64, fid: u64) -> Result<bool, ClientError> {
        let mut woken = Vec::new();
        loop {
            p.collect(db, &mut woken);
            match p.poll_done(db, ticket, Waiter::Fiber(fid)) {
                Ok(false) => std::thread::sleep(std::time::Duration::from_millis(1)),
                done => {
                    assert!(woken.iter().all(|w| matches!(w, Waiter::Fiber(f) if *f == fid)));
                    return done;
                }
            }
        }
    }

    #[test]
    fn commits_learn_their_wal_outcome_by_ticket() {
        let dir = tmpdir("persist-acks");
        let wal_cfg = WalConfig {
            dir: dir.clone(),
            mode: WalMode::Write,
            instance_uuid: Uuid::new_v4(),
            max_size: WalConfig::DEFAULT_MAX_SIZE,
        };
        let wal = WalWriter::start(wal_cfg, Vclock::new()).unwrap();
        let mut p = Persistence::new(
            Some(wal),
            WalMode::Write,
            Vclock::new(),
            1,
            Uuid::new_v4(),
            dir.clone(),
            dir.clone(),
        );
        let mut db = Db::new();
        let a = p.commit(&mut db, vec![stmt()]).unwrap().unwrap();
        let b = p.commit(&mut db, vec![stmt()]).unwrap().unwrap();
        // Nothing is known before the round's commits go to the WAL.
        assert_eq!(p.poll_done(&mut db, a, Waiter::Fiber(101)), Ok(false));
        p.flush();
        assert_eq!(collect_until(&mut p, &mut db, a, 101), Ok(true));
        assert_eq!(collect_until(&mut p, &mut db, b, 102), Ok(true));
        // A failed write fails its commit and every one after it until resume.
        p.wal.as_ref().unwrap().inject_write_error(true);
        let c = p.commit(&mut db, vec![stmt()]).unwrap().unwrap();
        let d = p.commit(&mut db, vec![stmt()]).unwrap().unwrap();
        p.flush();
        let failed = collect_until(&mut p, &mut db, d, 103).unwrap_err();
        assert_eq!(failed.code, ER_WAL_IO);
        assert_eq!(collect_until(&mut p, &mut db, c, 104).unwrap_err().code, ER_WAL_IO);
        assert!(p.last_error.as_deref().is_some_and(|e| e.contains("injected")));
        drop(p);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
