//! The synchronous queue's driver: writes the CONFIRM and ROLLBACK rows the limbo asks
//! for (in order, each applied to the limbo once durable) and fires its timeout.

use std::collections::VecDeque;

use super::lua::{wake_waiters, wal_written, with_runtime};
use super::persist::now_us;
use super::raft::limbo::SynchroRequest;

/// Runs for the life of the instance (started by `box.cfg`).
pub async fn run() {
    let Some(wakeup) = with_runtime(|rt| rt.persist.as_ref().map(|p| p.synchro_wakeup.clone())).flatten() else {
        return;
    };
    // Rows handed to the WAL, oldest first: each is applied once written, in this order.
    let mut in_flight: VecDeque<(u64, SynchroRequest)> = VecDeque::new();
    loop {
        let deadline = with_runtime(|rt| {
            let mut wake = Vec::new();
            let p = rt.persist.as_mut()?;
            if p.limbo.next_deadline().is_some_and(|d| d <= now_us()) {
                p.limbo.handle_timer(now_us());
                p.run_limbo(&mut rt.db, &mut wake);
            }
            for req in std::mem::take(&mut p.synchro_writes) {
                if let Some(ticket) = p.write_synchro(&req) {
                    in_flight.push_back((ticket, req));
                }
            }
            wake_waiters(wake);
            Some(p.limbo.next_deadline())
        })
        .flatten()
        .flatten();
        if let Some((ticket, req)) = in_flight.pop_front() {
            let written = wal_written(ticket).await;
            with_runtime(|rt| {
                let Some(p) = rt.persist.as_mut() else { return };
                match written {
                    Ok(()) => p.limbo.apply(&req),
                    // Tarantool panics when it cannot log a decision; the queue stays
                    // undecided here and the timeout asks again.
                    Err(e) => p.last_error = Some(format!("failed to write {}: {e}", req.kind.name())),
                }
                let mut wake = Vec::new();
                p.run_limbo(&mut rt.db, &mut wake);
                wake_waiters(wake);
            });
            continue;
        }
        match deadline {
            Some(at) => {
                let wait = std::time::Duration::from_micros(at.saturating_sub(now_us()));
                let _ = tokio::time::timeout(wait, wakeup.notified()).await;
            }
            None => wakeup.notified().await,
        }
    }
}

/// Recovery's view of the synchronous queue: rows of synchronous transactions (and of any
/// transaction behind one) wait here until the log's CONFIRM applies them or its ROLLBACK
/// drops them, as Tarantool's limbo holds them during recovery.
#[derive(Default)]
pub struct HeldTxns {
    txns: VecDeque<HeldTxn>,
}

pub struct HeldTxn {
    pub origin: u32,
    pub tsn: i64,
    /// The LSN of its last row so far.
    pub lsn: i64,
    pub is_sync: bool,
    pub rows: Vec<(u32, Vec<u8>)>,
}

impl HeldTxns {
    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    /// Holds a data row of `origin`; a row joins the transaction of its tsn.
    pub fn hold(&mut self, origin: u32, tsn: i64, lsn: i64, is_sync: bool, kind: u32, body: &[u8]) {
        match self.txns.back_mut() {
            Some(t) if t.origin == origin && t.tsn == tsn => {
                t.lsn = lsn;
                t.is_sync |= is_sync;
                t.rows.push((kind, body.to_vec()));
            }
            _ => self.txns.push_back(HeldTxn {
                origin,
                tsn,
                lsn,
                is_sync,
                rows: vec![(kind, body.to_vec())],
            }),
        }
    }

    /// A CONFIRM (or the confirming half of a PROMOTE): the transactions it covers, to apply
    /// in order, with the asynchronous ones queued behind them.
    pub fn confirm(&mut self, owner: u32, lsn: i64) -> Vec<HeldTxn> {
        let mut out = Vec::new();
        while let Some(t) = self.txns.front() {
            if t.is_sync && !(t.origin == owner && t.lsn <= lsn) {
                break;
            }
            out.extend(self.txns.pop_front());
        }
        out
    }

    /// A ROLLBACK from `lsn` on (or the rest of a PROMOTE): everything from the first
    /// synchronous transaction of `owner` at or past `lsn` is dropped.
    pub fn rollback(&mut self, owner: u32, lsn: i64) {
        if let Some(i) = self
            .txns
            .iter()
            .position(|t| t.is_sync && t.origin == owner && t.lsn >= lsn)
        {
            self.txns.truncate(i);
        }
    }

    /// What no decision reached: stays undecided after recovery.
    pub fn into_rest(self) -> Vec<HeldTxn> {
        self.txns.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_transactions_follow_the_logged_decisions() {
        let mut h = HeldTxns::default();
        h.hold(1, 5, 5, true, 2, b"a");
        h.hold(1, 6, 6, false, 2, b"b");
        h.hold(1, 7, 7, true, 2, b"c");
        h.hold(1, 7, 8, false, 2, b"d");
        h.hold(1, 9, 9, true, 2, b"e");
        let applied = h.confirm(1, 5);
        assert_eq!(applied.iter().map(|t| t.tsn).collect::<Vec<_>>(), [5, 6]);
        // A CONFIRM of another owner's queue covers nothing of this one.
        assert!(h.confirm(2, 100).is_empty());
        h.rollback(1, 9);
        let applied = h.confirm(1, 8);
        assert_eq!(applied.len(), 1);
        assert_eq!(applied[0].rows.len(), 2);
        assert!(h.is_empty());
    }
}
