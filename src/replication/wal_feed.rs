//! The WAL feed: the rows the WAL writer has written, kept in memory for the relays.
//!
//! A relay must send a row only once the WAL has it (in `fsync` mode: once it is on disk),
//! else a replica could hold a row its master loses in a crash. So the rows come from the
//! writer thread, after each group's write: the thread moves them here (no copy) together
//! with the vclock before and after the group. Relays read this tail; a relay that is behind
//! it (a replica catching up after a restart, or one slower than the tail's size) reads the
//! xlog files instead (`wal_reader.rs`) until the tail covers what it lacks.
//!
//! The tail is kept only while some relay reads the feed (nothing is kept on an instance
//! without replicas) and holds at most [`DEFAULT_CAPACITY`] bytes of rows: older groups
//! are dropped, and a relay that still needed them goes back to the files.
//!
//! Positions are vclocks: the WAL is one history, and a row is "after" a vclock `v` when its
//! LSN is above `v`'s component for its instance. The tail *covers* a relay's vclock when
//! every row written before the tail's first group is already in that vclock; the relay
//! then reads the tail and skips the rows it has. Component 0 (local rows) is never
//! relayed and never compared.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::box_::wal::row::Row;
use crate::box_::wal::vclock::{Vclock, VCLOCK_MAX};

/// Bytes of rows the tail keeps for slow relays. A replica more than this behind reads
/// files, which costs a thread and some disk reads but no memory.
pub const DEFAULT_CAPACITY: usize = 16 * 1024 * 1024;

/// Rough per-row overhead beyond the body, for the capacity count.
const ROW_OVERHEAD: usize = std::mem::size_of::<Row>();

/// Whether `a` has every row `b` has, leaving component 0 out.
pub fn covers(a: &Vclock, b: &Vclock) -> bool {
    (1..VCLOCK_MAX as u32).all(|id| a.get(id) >= b.get(id))
}

/// One write of the WAL thread: its rows in order and where it moved the WAL.
#[derive(Debug)]
pub struct WrittenGroup {
    pub seq: u64,
    pub vclock_before: Vclock,
    pub vclock_after: Vclock,
    pub rows: Vec<Row>,
}

struct Tail {
    /// Everything the WAL has written (and synced).
    written: Vclock,
    /// Readers of the feed (relays); nothing is kept while there are none.
    readers: usize,
    groups: VecDeque<Arc<WrittenGroup>>,
    /// Every row written after this vclock is in `groups`. None: nothing was published since
    /// the first reader came, and the tail begins with the next group.
    start: Option<Vclock>,
    bytes: usize,
    next_seq: u64,
    capacity: usize,
}

pub struct WalFeed {
    tail: Mutex<Tail>,
    /// The last group's seq + 1, for readers waiting for more.
    published: watch::Sender<u64>,
}

/// The reader's position fell out of the tail: it must read files from its vclock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged;

impl WalFeed {
    /// A feed for a WAL that starts at `vclock`.
    pub fn new(vclock: Vclock) -> Arc<WalFeed> {
        WalFeed::with_capacity(vclock, DEFAULT_CAPACITY)
    }

    pub fn with_capacity(vclock: Vclock, capacity: usize) -> Arc<WalFeed> {
        Arc::new(WalFeed {
            tail: Mutex::new(Tail {
                written: vclock,
                readers: 0,
                groups: VecDeque::new(),
                start: None,
                bytes: 0,
                next_seq: 1,
                capacity,
            }),
            published: watch::channel(0).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether anyone reads the feed: the writer collects a group's rows only then.
    pub fn has_readers(&self) -> bool {
        self.lock().readers > 0
    }

    /// Writer thread: a group moved the WAL from `before` to `after`. `rows` are its rows,
    /// or None when the writer did not keep them (no reader when the group began): then
    /// the tail starts after the group, and a reader that needs it reads the file.
    pub fn publish(&self, before: Vclock, after: Vclock, rows: Option<Vec<Row>>) {
        let dropped;
        {
            let mut t = self.lock();
            t.written = after;
            if t.readers == 0 {
                return;
            }
            match rows {
                Some(rows) if !rows.is_empty() => {
                    let seq = t.next_seq;
                    t.next_seq += 1;
                    t.bytes += rows.iter().map(|r| r.body.len() + ROW_OVERHEAD).sum::<usize>();
                    if t.start.is_none() {
                        t.start = Some(before);
                    }
                    t.groups.push_back(Arc::new(WrittenGroup {
                        seq,
                        vclock_before: before,
                        vclock_after: after,
                        rows,
                    }));
                    dropped = t.evict();
                }
                Some(_) => return,
                None => {
                    dropped = std::mem::take(&mut t.groups);
                    t.bytes = 0;
                    t.start = Some(after);
                    // The group takes a seq it is not stored under: a reader positioned
                    // at it lags instead of reading past it.
                    t.next_seq += 1;
                }
            }
            self.published.send_replace(t.next_seq);
        }
        // Rows are freed outside the lock.
        drop(dropped);
    }

    /// What the WAL has written so far.
    pub fn written(&self) -> Vclock {
        self.lock().written
    }

    /// Starts reading the feed; the tail is kept from now on (until the reader is dropped).
    pub fn reader(self: &Arc<Self>) -> FeedReader {
        self.lock().readers += 1;
        FeedReader {
            feed: self.clone(),
            published: self.published.subscribe(),
        }
    }
}

impl Tail {
    /// Drops the oldest groups past the capacity (the newest always stays).
    fn evict(&mut self) -> VecDeque<Arc<WrittenGroup>> {
        let mut dropped = VecDeque::new();
        while self.bytes > self.capacity && self.groups.len() > 1 {
            let Some(g) = self.groups.pop_front() else { break };
            self.bytes -= g.rows.iter().map(|r| r.body.len() + ROW_OVERHEAD).sum::<usize>();
            self.start = Some(g.vclock_after);
            dropped.push_back(g);
        }
        dropped
    }
}

/// A relay's handle on the feed. Dropping the last one lets the writer keep nothing.
pub struct FeedReader {
    feed: Arc<WalFeed>,
    published: watch::Receiver<u64>,
}

impl FeedReader {
    pub fn written(&self) -> Vclock {
        self.feed.written()
    }

    /// Where to read the tail from for a reader that has `have`: the seq of the first
    /// group to read, or None when rows `have` lacks were written before the tail began
    /// (they are in the files only).
    pub fn attach(&self, have: &Vclock) -> Option<u64> {
        let t = self.feed.lock();
        let from = t.groups.front().map_or(t.next_seq, |g| g.seq);
        match &t.start {
            Some(start) if covers(have, start) => Some(from),
            // Nothing published since the first reader came: the next group follows `written`.
            None if covers(have, &t.written) => Some(from),
            _ => None,
        }
    }

    /// The groups from `seq` on, about `budget` bytes of rows of them (at least one
    /// group if there is any), or Lagged when `seq` was dropped.
    pub fn groups_from(&self, seq: u64, budget: usize, out: &mut Vec<Arc<WrittenGroup>>) -> Result<(), Lagged> {
        let t = self.feed.lock();
        match t.groups.front() {
            Some(g) if g.seq > seq => Err(Lagged),
            None if seq < t.next_seq => Err(Lagged),
            Some(g) => {
                let skip = (seq - g.seq) as usize;
                let mut taken = 0;
                for g in t.groups.iter().skip(skip) {
                    if taken >= budget {
                        break;
                    }
                    taken += g.rows.iter().map(|r| r.body.len() + ROW_OVERHEAD).sum::<usize>();
                    out.push(g.clone());
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Whether a group from `seq` on may be there (cheap: no lock).
    pub fn may_have(&self, seq: u64) -> bool {
        *self.published.borrow() > seq
    }

    /// Waits until a group is published after the last call (cancel-safe).
    pub async fn changed(&mut self) {
        if self.published.changed().await.is_err() {
            // The feed lives as long as this reader holds it: never closed.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for FeedReader {
    fn drop(&mut self) {
        let dropped = {
            let mut t = self.feed.lock();
            t.readers -= 1;
            if t.readers > 0 {
                return;
            }
            t.start = None;
            t.bytes = 0;
            std::mem::take(&mut t.groups)
        };
        drop(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::box_::wal::row::IPROTO_INSERT;

    fn vclock(parts: &[(u32, i64)]) -> Vclock {
        let mut v = Vclock::new();
        for &(id, lsn) in parts {
            v.follow(id, lsn);
        }
        v
    }

    fn rows(from: i64, to: i64) -> Vec<Row> {
        (from..=to)
            .map(|lsn| Row {
                kind: IPROTO_INSERT,
                replica_id: 1,
                lsn,
                tsn: lsn,
                is_commit: true,
                body: vec![0; 100],
                ..Row::default()
            })
            .collect()
    }

    fn publish(feed: &WalFeed, from: i64, to: i64) {
        feed.publish(vclock(&[(1, from - 1)]), vclock(&[(1, to)]), Some(rows(from, to)));
    }

    fn lsns(reader: &FeedReader, seq: u64) -> Result<Vec<i64>, Lagged> {
        let mut groups = Vec::new();
        reader.groups_from(seq, usize::MAX, &mut groups)?;
        Ok(groups.iter().flat_map(|g| g.rows.iter().map(|r| r.lsn)).collect())
    }

    #[test]
    fn nothing_is_kept_without_readers() {
        let feed = WalFeed::new(Vclock::new());
        publish(&feed, 1, 3);
        assert_eq!(feed.written(), vclock(&[(1, 3)]));
        let reader = feed.reader();
        // Rows 1..3 were written before the reader came: a reader lacking them must read files.
        assert_eq!(reader.attach(&vclock(&[(1, 2)])), None);
        // One that has them reads the tail from its next group.
        let seq = reader.attach(&vclock(&[(1, 3)])).unwrap();
        publish(&feed, 4, 5);
        assert_eq!(lsns(&reader, seq), Ok(vec![4, 5]));
        drop(reader);
        assert!(!feed.has_readers());
        let reader = feed.reader();
        assert_eq!(lsns(&reader, seq + 1), Ok(vec![]));
        assert_eq!(reader.attach(&vclock(&[(1, 4)])), None);
    }

    #[test]
    fn the_tail_covers_readers_from_its_first_group_on() {
        let feed = WalFeed::new(vclock(&[(1, 10)]));
        let reader = feed.reader();
        publish(&feed, 11, 12);
        publish(&feed, 13, 15);
        // Any vclock from 10 on is covered; rows it has are the reader's to skip.
        for have in [10, 12, 14, 15, 20] {
            assert!(reader.attach(&vclock(&[(1, have)])).is_some(), "{have}");
        }
        assert_eq!(reader.attach(&vclock(&[(1, 9)])), None);
        // Component 0 is never compared.
        assert!(reader.attach(&vclock(&[(0, 100), (1, 10)])).is_some());
        let seq = reader.attach(&vclock(&[(1, 10)])).unwrap();
        assert_eq!(lsns(&reader, seq), Ok(vec![11, 12, 13, 14, 15]));
        assert_eq!(lsns(&reader, seq + 1), Ok(vec![13, 14, 15]));
        assert_eq!(lsns(&reader, seq + 2), Ok(vec![]));
    }

    #[test]
    fn old_groups_are_dropped_past_the_capacity_and_their_readers_lag() {
        // Each row counts 100 + overhead bytes: about four rows fit.
        let feed = WalFeed::with_capacity(Vclock::new(), 4 * (100 + ROW_OVERHEAD));
        let reader = feed.reader();
        let first = reader.attach(&Vclock::new()).unwrap();
        for lsn in 1..=10 {
            publish(&feed, lsn, lsn);
        }
        assert_eq!(lsns(&reader, first), Err(Lagged));
        // The tail now starts at 6: vclocks from 6 on are covered.
        assert_eq!(reader.attach(&vclock(&[(1, 5)])), None);
        let seq = reader.attach(&vclock(&[(1, 6)])).unwrap();
        assert_eq!(lsns(&reader, seq), Ok(vec![7, 8, 9, 10]));
        // One huge group is kept even when it alone exceeds the capacity.
        feed.publish(vclock(&[(1, 10)]), vclock(&[(1, 30)]), Some(rows(11, 30)));
        let seq = reader.attach(&vclock(&[(1, 10)])).unwrap();
        assert_eq!(lsns(&reader, seq).unwrap().len(), 20);
    }

    #[test]
    fn a_group_written_without_its_rows_starts_the_tail_after_it() {
        let feed = WalFeed::new(Vclock::new());
        let reader = feed.reader();
        publish(&feed, 1, 2);
        feed.publish(vclock(&[(1, 2)]), vclock(&[(1, 4)]), None);
        publish(&feed, 5, 5);
        assert_eq!(reader.attach(&vclock(&[(1, 2)])), None);
        let seq = reader.attach(&vclock(&[(1, 4)])).unwrap();
        assert_eq!(lsns(&reader, seq), Ok(vec![5]));
        // A reader that had read the first group and waited for the next one lags.
        assert_eq!(lsns(&reader, 2), Err(Lagged));
        assert_eq!(lsns(&reader, 1), Err(Lagged));
    }

    #[test]
    fn readers_are_woken_by_publishes_from_another_thread() {
        let feed = WalFeed::new(Vclock::new());
        let mut reader = feed.reader();
        let seq = reader.attach(&Vclock::new()).unwrap();
        assert!(!reader.may_have(seq));
        let writer = {
            let feed = feed.clone();
            std::thread::spawn(move || {
                for lsn in 1..=100 {
                    publish(&feed, lsn, lsn);
                }
            })
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let mut got = Vec::new();
            let mut next = seq;
            while got.len() < 100 {
                let mut groups = Vec::new();
                reader.groups_from(next, 1000, &mut groups).unwrap();
                if groups.is_empty() {
                    reader.changed().await;
                    continue;
                }
                next = groups.last().unwrap().seq + 1;
                got.extend(groups.iter().flat_map(|g| g.rows.iter().map(|r| r.lsn)));
            }
            got
        });
        writer.join().unwrap();
        assert_eq!(got, (1..=100).collect::<Vec<_>>());
    }
}
