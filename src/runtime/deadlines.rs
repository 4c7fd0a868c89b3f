//! A heap of deadlines, each with what it wakes: the earliest comes out first, and equal
//! deadlines in the order they went in.
//!
//! Entries are never taken out early. Both users (the fiber scheduler's parks and the swim
//! timers) leave an entry behind when its wait ends another way or moves, and skip it when
//! it comes up because its owner's own deadline no longer matches: cheaper than finding it
//! in the heap.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

struct Entry<A, T> {
    at: A,
    /// Keeps equal deadlines in arrival order.
    seq: u64,
    item: T,
}

impl<A: Ord, T> PartialEq for Entry<A, T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<A: Ord, T> Eq for Entry<A, T> {}

impl<A: Ord, T> PartialOrd for Entry<A, T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<A: Ord, T> Ord for Entry<A, T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.at, self.seq).cmp(&(&other.at, other.seq))
    }
}

pub(crate) struct Deadlines<A, T> {
    heap: BinaryHeap<Reverse<Entry<A, T>>>,
    seq: u64,
}

impl<A: Ord + Copy, T> Deadlines<A, T> {
    pub(crate) fn new() -> Self {
        Deadlines {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }

    pub(crate) fn push(&mut self, at: A, item: T) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            item,
        }));
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<A> {
        self.heap.peek().map(|e| e.0.at)
    }

    /// Takes out the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: A) -> Option<(A, T)> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|e| (e.0.at, e.0.item))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

impl<A: Ord + Copy, T> Default for Deadlines<A, T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Deadlines;

    #[test]
    fn due_entries_come_out_earliest_first_and_equal_ones_in_arrival_order() {
        let mut d = Deadlines::new();
        d.push(30, "c");
        d.push(10, "a1");
        d.push(20, "b");
        d.push(10, "a2");
        assert_eq!(d.next(), Some(10));
        assert_eq!(d.pop_due(5), None, "nothing is due before the earliest");
        assert_eq!(d.pop_due(20), Some((10, "a1")));
        assert_eq!(d.pop_due(20), Some((10, "a2")));
        assert_eq!(d.pop_due(20), Some((20, "b")));
        assert_eq!(d.pop_due(20), None);
        assert!(!d.is_empty());
        assert_eq!(d.pop_due(u64::MAX), Some((30, "c")));
        assert!(d.is_empty());
        assert_eq!(d.next(), None);
    }
}
