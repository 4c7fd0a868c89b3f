//! Durability: committed statements become WAL rows with LSNs, the WAL writer thread
//! acknowledges them, a failed write rolls them back; recovery and snapshots.

use std::path::PathBuf;

use tokio::sync::oneshot;
use uuid::Uuid;

use super::db::{Db, Stmt};
use super::errcode::ER_WAL_IO;
use super::error::ClientError;
use super::wal::row::Row;
use super::wal::vclock::Vclock;
use super::wal::writer::{WalError, WalMode, WalWriter};
use crate::client_error;

/// The WAL's answer for one transaction.
type Ack = oneshot::Receiver<Result<(), WalError>>;

pub type WalResult = Result<Result<(), WalError>, oneshot::error::RecvError>;

pub struct Persistence {
    pub wal: Option<WalWriter>,
    pub mode: WalMode,
    pub vclock: Vclock,
    pub instance_id: u32,
    pub instance_uuid: Uuid,
    pub memtx_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub checkpoint_count: usize,
    /// Transactions written but not yet acknowledged, by ticket.
    pending: hashbrown::HashMap<u64, Pending>,
    /// The WAL's answers not yet awaited, in commit order (the collector's queue).
    to_collect: std::collections::VecDeque<(u64, Ack)>,
    /// Tells the collector (see `collect`) that a commit is waiting for the WAL.
    pub notify: std::rc::Rc<tokio::sync::Notify>,
    next_ticket: u64,
    /// Errors the WAL reported, for the log.
    pub last_error: Option<String>,
    /// Transactions committed in this scheduler round, not yet handed to the WAL thread.
    outbox: Vec<(Vec<Row>, super::wal::writer::Done<()>)>,
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
            to_collect: std::collections::VecDeque::new(),
            notify: std::rc::Rc::new(tokio::sync::Notify::new()),
            next_ticket: 1,
            last_error: None,
            outbox: Vec::new(),
        }
    }

    /// Logs a transaction's statements: LSNs are assigned here, in commit order, and the
    /// rows go to the writer as one batch. Returns a ticket to wait on, or None when there
    /// is nothing to wait for (temporary spaces only, or wal_mode none).
    pub fn commit(&mut self, _db: &mut Db, mut stmts: Vec<Stmt>) -> Result<Option<u64>, ClientError> {
        let count = stmts.iter().filter(|s| s.row.is_some()).count();
        if count == 0 {
            return Ok(None);
        }
        let mut rows = Vec::with_capacity(count);
        let mut tsn = 0;
        for s in &mut stmts {
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
                rows.push(Row {
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
        if self.wal.is_none() {
            return Ok(None);
        }
        if let Some(last) = rows.last_mut() {
            last.is_commit = true;
        }
        // Sent at the end of the scheduler round with every other commit of the round
        // (`flush`): one wakeup of the WAL thread for all of them.
        let (done, rx) = oneshot::channel();
        self.outbox.push((rows, done));
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.pending.insert(
            ticket,
            Pending {
                stmts,
                result: None,
                waiter: None,
            },
        );
        self.to_collect.push_back((ticket, rx));
        self.notify.notify_one();
        Ok(Some(ticket))
    }

    /// Hands the round's commits to the WAL thread.
    pub fn flush(&mut self) {
        if let Some(wal) = &self.wal {
            wal.submit_many(std::mem::take(&mut self.outbox));
        }
    }

    /// The oldest commit whose WAL answer nobody awaits yet (the collector takes them in
    /// order: the WAL thread answers in order).
    pub fn next_to_collect(&mut self) -> Option<(u64, Ack)> {
        self.to_collect.pop_front()
    }

    /// The WAL answered for `ticket`; returns who to wake, if someone waits.
    pub fn collected(&mut self, ticket: u64, result: WalResult) -> Option<Waiter> {
        let p = self.pending.get_mut(&ticket)?;
        p.result = Some(result);
        p.waiter.take()
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
            Some(Ok(Ok(()))) | None => Ok(true),
            Some(Ok(Err(e))) => {
                self.last_error = Some(e.to_string());
                db.undo(p.stmts);
                Err(client_error!(ER_WAL_IO))
            }
            Some(Err(_)) => {
                db.undo(p.stmts);
                Err(client_error!(ER_WAL_IO))
            }
        }
    }
}

/// A commit between its hand-over to the WAL and the waiting fiber learning the outcome.
struct Pending {
    stmts: Vec<Stmt>,
    result: Option<WalResult>,
    waiter: Option<Waiter>,
}

/// Who waits for a commit: a Lua fiber (box's Lua API) or a Rust task (the IPROTO
/// server's writes, which need no fiber).
pub enum Waiter {
    Fiber(u64),
    Task(std::task::Waker),
}
