//! Durability: committed statements become WAL rows with LSNs, the WAL writer thread
//! acknowledges them, a failed write rolls them back; recovery and snapshots.

use std::collections::VecDeque;
use std::path::PathBuf;

use uuid::Uuid;

use super::db::{Db, Stmt};
use super::errcode::ER_WAL_IO;
use super::error::ClientError;
use super::tuple::Tuple;
use super::wal::row::Row;
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
        }
    }

    /// Logs a transaction's statements: LSNs are assigned here, in commit order, and the
    /// rows go to the writer as one batch. Returns a ticket to wait on, or None when there
    /// is nothing to wait for (temporary spaces only, or wal_mode none).
    pub fn commit(&mut self, _db: &mut Db, stmts: Vec<Stmt>) -> Result<Option<u64>, ClientError> {
        self.commit_stmts(Stmts::Many(stmts))
    }

    /// [`commit`](Self::commit) for one autocommit statement (no Vec made for it).
    pub fn commit_one(&mut self, stmt: Stmt) -> Result<Option<u64>, ClientError> {
        self.commit_stmts(Stmts::One(stmt))
    }

    fn commit_stmts(&mut self, mut stmts: Stmts) -> Result<Option<u64>, ClientError> {
        // The round's rows go into one vector (`flush`), batches marked by their counts.
        let first_row = self.outbox_rows.len();
        let mut tsn = 0;
        for s in stmts.iter_mut() {
            // The body moves into the row: undo needs only the tuples.
            let Some((kind, body, group_id)) = &mut s.row else {
                continue;
            };
            let lsn = self.vclock.get(self.instance_id) + 1;
            self.vclock.follow(self.instance_id, lsn);
            if tsn == 0 {
                tsn = lsn;
            }
            if self.wal.is_some() {
                self.outbox_rows.push(Row {
                    kind: *kind,
                    replica_id: self.instance_id,
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
            },
        );
        Ok(Some(ticket))
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
    pub fn collect(&mut self, wake: &mut Vec<Waiter>) {
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
                Some(f) if f.0 == ticket => self.failures.pop_front().map_or(Ok(()), |f| Err(f.1)),
                _ if ticket > done => Err(WalError::Closed),
                _ => Ok(()),
            };
            if let Some(p) = self.pending.get_mut(&ticket) {
                // The waiter drops the statements soon, all of them in a burst: their
                // tuples' counts come into cache now, side by side.
                for s in p.stmts.iter_mut() {
                    s.old.iter().chain(&s.new).for_each(Tuple::prefetch);
                }
                p.result = Some(result);
                if let Some(w) = p.waiter.take() {
                    wake.push(w);
                }
            }
        }
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
            Some(Err(e)) => {
                self.last_error = Some(e.to_string());
                db.undo(p.stmts.into_vec());
                Err(client_error!(ER_WAL_IO))
            }
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
    result: Option<Result<(), WalError>>,
    waiter: Option<Waiter>,
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
        }
    }

    /// Collects until `ticket` has its outcome; returns the fibers woken on the way.
    fn collect_until(p: &mut Persistence, db: &mut Db, ticket: u64, fid: u64) -> Result<bool, ClientError> {
        let mut woken = Vec::new();
        loop {
            p.collect(&mut woken);
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
