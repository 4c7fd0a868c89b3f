//! Placeholder with the B+ tree's API over a sorted Vec, so the index layer builds until the
//! real tree lands (branch `bptree`). O(n) inserts: not for production sizes.

use std::cmp::Ordering;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor(usize);

pub struct BPlusTree<T: Clone> {
    items: Vec<T>,
    version: u64,
}

impl<T: Clone> Default for BPlusTree<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> BPlusTree<T> {
    pub fn new() -> Self {
        BPlusTree {
            items: Vec::new(),
            version: 0,
        }
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn insert(&mut self, v: T, cmp: impl Fn(&T, &T) -> Ordering) -> Option<T> {
        self.version += 1;
        match self.items.binary_search_by(|e| cmp(e, &v)) {
            Ok(i) => Some(std::mem::replace(&mut self.items[i], v)),
            Err(i) => {
                self.items.insert(i, v);
                None
            }
        }
    }
    pub fn remove(&mut self, probe: impl Fn(&T) -> Ordering) -> Option<T> {
        match self.items.binary_search_by(probe) {
            Ok(i) => {
                self.version += 1;
                Some(self.items.remove(i))
            }
            Err(_) => None,
        }
    }
    pub fn get(&self, probe: impl Fn(&T) -> Ordering) -> Option<&T> {
        self.items.binary_search_by(probe).ok().map(|i| &self.items[i])
    }
    pub fn lower_bound(&self, probe: impl Fn(&T) -> Ordering) -> Cursor {
        Cursor(self.items.partition_point(|e| probe(e) == Ordering::Less))
    }
    pub fn upper_bound(&self, probe: impl Fn(&T) -> Ordering) -> Cursor {
        Cursor(self.items.partition_point(|e| probe(e) != Ordering::Greater))
    }
    pub fn first(&self) -> Cursor {
        Cursor(0)
    }
    pub fn last(&self) -> Cursor {
        Cursor(self.items.len().wrapping_sub(1))
    }
    pub fn at(&self, c: Cursor) -> Option<&T> {
        self.items.get(c.0)
    }
    pub fn next(&self, c: Cursor) -> Cursor {
        Cursor(c.0.wrapping_add(1))
    }
    pub fn prev(&self, c: Cursor) -> Cursor {
        Cursor(c.0.wrapping_sub(1))
    }
    pub fn nth(&self, n: usize) -> Option<&T> {
        self.items.get(n)
    }
    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn clear(&mut self) {
        self.version += 1;
        self.items.clear();
    }
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.items.iter()
    }
    pub fn mem_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<T>()
    }
}
