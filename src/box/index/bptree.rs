//! A B+ tree ordered by a comparator passed to each call. TREE indexes order tuples by a key
//! definition known only at run time, so their elements cannot implement `Ord`.
//!
//! Built for memory per element (Tarantool's bps tree costs about 16 bytes per entry):
//! - nodes live in two arenas (`Vec`s indexed by `u32`, with free lists): a leaf costs one
//!   buffer allocation for its elements and nothing else;
//! - leaves hold up to `L` elements (64 by default) and are linked both ways for cursors; inner
//!   nodes hold up to `I` children (64) and the number of elements under each, so `nth` and
//!   `count_less` take O(log n);
//! - separators are clones of live elements: `keys[i]` of an inner node is exactly the smallest
//!   element under `children[i + 1]`, and it is replaced when that element goes, so the tree
//!   never keeps a removed element (a tuple) alive;
//! - runs of inserts in order fill leaves completely, wherever they land: each leaf remembers
//!   where its last insert went, and a full leaf splits at the edge of a run (an ascending one
//!   goes on at the end of the left part, a descending one at the front of the right part), so
//!   the elements beside the run move out once; a descending run between two leaves goes on at
//!   the front of the right one. That covers ascending and descending loads and non-unique
//!   indexes appending to each key's group. Inner nodes split at the edge too;
//! - otherwise a full leaf first moves elements to a sibling with room and only then splits in
//!   half, so random loads fill leaves to about 80%;
//! - a removal that leaves a node less than half full merges it with a sibling, or evens the
//!   two out when they do not fit in one node.
//!
//! Callers guarantee a total order: two distinct elements never compare Equal.

use std::cmp::Ordering;
use std::fmt;
use std::iter::FusedIterator;
use std::mem;

const NIL: u32 = u32::MAX;
/// Leaves never move left: splits add a leaf to the right and merges keep the left one.
const FIRST: u32 = 0;
/// Inner levels on a path. Non-root inner nodes have at least two children and ids are `u32`,
/// so a tree cannot get deeper than 33 levels.
const MAX_HEIGHT: usize = 40;

struct Leaf<T> {
    elems: Vec<T>,
    prev: u32,
    next: u32,
    /// Where the last insert into this leaf went (NIL: unknown), to spot runs of inserts in
    /// order (ascending or descending) that land inside the leaf or just before it.
    hint: u32,
}

impl<T> Leaf<T> {
    fn new(elems: Vec<T>, prev: u32, next: u32) -> Self {
        Leaf {
            elems,
            prev,
            next,
            hint: NIL,
        }
    }
}

struct Inner<T> {
    /// `keys[i]` is the smallest element under `children[i + 1]`.
    keys: Vec<T>,
    children: Vec<u32>,
    /// Elements under each child.
    counts: Vec<usize>,
}

impl<T> Inner<T> {
    fn empty() -> Self {
        Inner {
            keys: Vec::new(),
            children: Vec::new(),
            counts: Vec::new(),
        }
    }
}

/// A B+ tree of `T`s with leaves of up to `L` elements and inner nodes of up to `I` children.
pub struct BPlusTree<T, const L: usize = 64, const I: usize = 64> {
    leaves: Vec<Leaf<T>>,
    inners: Vec<Inner<T>>,
    free_leaves: Vec<u32>,
    free_inners: Vec<u32>,
    root: u32,
    /// Inner levels; 0 while the root is a leaf.
    height: usize,
    last: u32,
    len: usize,
    version: u64,
}

/// A position in a [`BPlusTree`]: an element, the end (after the last element) or the place
/// before the first element. Valid until the tree's [`version`](BPlusTree::version) changes;
/// a stale cursor never makes the tree panic, it just points somewhere arbitrary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    leaf: u32,
    pos: u32,
}

impl Cursor {
    /// After the last element.
    pub const END: Cursor = Cursor { leaf: NIL, pos: 0 };
    /// Before the first element.
    pub const BEFORE: Cursor = Cursor { leaf: NIL, pos: 1 };
}

/// The inner nodes and child indexes from the root down to a leaf.
struct Path {
    steps: [(u32, u32); MAX_HEIGHT],
    len: usize,
}

impl Path {
    fn new() -> Self {
        Path {
            steps: [(0, 0); MAX_HEIGHT],
            len: 0,
        }
    }

    fn push(&mut self, node: u32, child: usize) {
        self.steps[self.len] = (node, child as u32);
        self.len += 1;
    }

    fn steps(&self) -> &[(u32, u32)] {
        &self.steps[..self.len]
    }
}

/// Grows a leaf buffer by doubling up to `cap`: a small tree stays small, a full leaf holds
/// exactly `cap` slots.
fn reserve<T>(v: &mut Vec<T>, need: usize, cap: usize) {
    if v.capacity() < need {
        let target = (v.capacity() * 2).max(4).max(need).min(cap);
        v.reserve_exact(target - v.len());
    }
}

/// Grows an arena by a quarter rather than doubling: with big trees, the spare half of a
/// doubled arena would cost over a byte per element.
fn grow_arena<N>(v: &mut Vec<N>) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 4).max(4));
    }
}

impl<T: Clone, const L: usize, const I: usize> Default for BPlusTree<T, L, I> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone, const L: usize, const I: usize> BPlusTree<T, L, I> {
    const LEAF_MIN: usize = L / 2;
    const INNER_MIN: usize = I / 2;

    pub fn new() -> Self {
        // Uneven inner splits leave two children on the small side, so an overflowing node
        // (I + 1 children) must have at least four.
        const {
            assert!(
                L >= 2 && I >= 4 && L < u32::MAX as usize,
                "BPlusTree: L >= 2 and I >= 4"
            )
        };
        BPlusTree {
            leaves: vec![Leaf::new(Vec::new(), NIL, NIL)],
            inners: Vec::new(),
            free_leaves: Vec::new(),
            free_inners: Vec::new(),
            root: FIRST,
            height: 0,
            last: FIRST,
            len: 0,
            version: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Changes with every insert, successful remove and clear: a cursor taken at another
    /// version is stale (re-seek by the last element it returned).
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn clear(&mut self) {
        let version = self.version + 1;
        *self = Self::new();
        self.version = version;
    }

    /// Inserts `v`; an element comparing Equal to it is replaced and returned.
    pub fn insert(&mut self, v: T, cmp: impl Fn(&T, &T) -> Ordering) -> Option<T> {
        let mut path = Path::new();
        let (leaf, pos) = self.descend(|e| cmp(e, &v) != Ordering::Greater, |n, j| path.push(n, j));
        self.version += 1;
        let elems = &mut self.leaves[leaf as usize].elems;
        if pos > 0 && cmp(&elems[pos - 1], &v) == Ordering::Equal {
            let old = mem::replace(&mut elems[pos - 1], v);
            if pos == 1 {
                let min = elems[0].clone();
                self.set_separator(&path, min);
            }
            return Some(old);
        }
        self.len += 1;
        for &(n, j) in path.steps() {
            self.inners[n as usize].counts[j as usize] += 1;
        }
        let n = self.leaves[leaf as usize].elems.len();
        if n == L {
            self.insert_full(&path, leaf, pos, v);
            return None;
        }
        if pos == n {
            // A run of descending inserts at the front of the next leaf goes on there, or in a
            // new leaf when that one is full, rather than mixing with this leaf's elements.
            if let Some(next) = self.next_sibling(&path) {
                if self.leaves[next as usize].hint == 0 {
                    if let Err(v) = self.prepend_next(&path, v) {
                        self.split_leaf(&path, leaf, pos, v, n);
                    }
                    return None;
                }
            }
        }
        let node = &mut self.leaves[leaf as usize];
        reserve(&mut node.elems, n + 1, L);
        node.elems.insert(pos, v);
        node.hint = pos as u32;
        None
    }

    /// Removes and returns the element for which `probe` says Equal; `probe` orders elements
    /// against the sought key.
    pub fn remove(&mut self, probe: impl Fn(&T) -> Ordering) -> Option<T> {
        let mut path = Path::new();
        let (leaf, pos) = self.descend(|e| probe(e) != Ordering::Greater, |n, j| path.push(n, j));
        let elems = &mut self.leaves[leaf as usize].elems;
        if pos == 0 || probe(&elems[pos - 1]) != Ordering::Equal {
            return None;
        }
        self.version += 1;
        self.len -= 1;
        let old = elems.remove(pos - 1);
        let emptied = elems.is_empty();
        if pos == 1 && !emptied {
            let min = elems[0].clone();
            self.set_separator(&path, min);
        }
        for &(n, j) in path.steps() {
            self.inners[n as usize].counts[j as usize] -= 1;
        }
        self.rebalance(&path, leaf);
        if emptied {
            // The leaf's minimum changes when it takes its sibling's elements, and when it was
            // a leftmost child that minimum is a separator further up.
            self.refresh_separator(&probe);
        }
        Some(old)
    }

    pub fn get(&self, probe: impl Fn(&T) -> Ordering) -> Option<&T> {
        self.at(self.lower_bound(&probe))
            .filter(|e| probe(e) == Ordering::Equal)
    }

    /// The first element not less than the key (`probe(e) != Less`), or the end.
    pub fn lower_bound(&self, probe: impl Fn(&T) -> Ordering) -> Cursor {
        let (leaf, pos) = self.descend(|e| probe(e) == Ordering::Less, |_, _| {});
        self.cursor(leaf, pos)
    }

    /// The first element greater than the key (`probe(e) == Greater`), or the end.
    pub fn upper_bound(&self, probe: impl Fn(&T) -> Ordering) -> Cursor {
        let (leaf, pos) = self.descend(|e| probe(e) != Ordering::Greater, |_, _| {});
        self.cursor(leaf, pos)
    }

    /// How many elements are less than the key.
    pub fn count_less(&self, probe: impl Fn(&T) -> Ordering) -> usize {
        let mut before = 0;
        let (_, pos) = self.descend(
            |e| probe(e) == Ordering::Less,
            |n, j| before += self.inners[n as usize].counts[..j].iter().sum::<usize>(),
        );
        before + pos
    }

    /// The first element, or the end when empty.
    pub fn first(&self) -> Cursor {
        if self.len == 0 {
            Cursor::END
        } else {
            Cursor { leaf: FIRST, pos: 0 }
        }
    }

    /// The last element, or before the first when empty.
    pub fn last(&self) -> Cursor {
        if self.len == 0 {
            Cursor::BEFORE
        } else {
            Cursor {
                leaf: self.last,
                pos: self.leaves[self.last as usize].elems.len() as u32 - 1,
            }
        }
    }

    /// The element under `c`; None at the end or before the first.
    pub fn at(&self, c: Cursor) -> Option<&T> {
        self.leaves.get(c.leaf as usize)?.elems.get(c.pos as usize)
    }

    /// The element after `c`: the first one after BEFORE, the end after the last one.
    pub fn next(&self, c: Cursor) -> Cursor {
        if c == Cursor::BEFORE {
            return self.first();
        }
        match self.leaves.get(c.leaf as usize) {
            None => Cursor::END,
            Some(leaf) if c.pos as usize + 1 < leaf.elems.len() => Cursor {
                leaf: c.leaf,
                pos: c.pos + 1,
            },
            Some(leaf) if leaf.next == NIL => Cursor::END,
            Some(leaf) => Cursor {
                leaf: leaf.next,
                pos: 0,
            },
        }
    }

    /// The element before `c`: the last one before the end, BEFORE before the first one.
    pub fn prev(&self, c: Cursor) -> Cursor {
        if c == Cursor::END {
            return self.last();
        }
        match self.leaves.get(c.leaf as usize) {
            None => Cursor::BEFORE,
            Some(_) if c.pos > 0 => Cursor {
                leaf: c.leaf,
                pos: c.pos - 1,
            },
            Some(leaf) => match self.leaves.get(leaf.prev as usize) {
                None => Cursor::BEFORE,
                Some(p) => Cursor {
                    leaf: leaf.prev,
                    pos: (p.elems.len() as u32).saturating_sub(1),
                },
            },
        }
    }

    /// The element at position `n` in order, in O(log n).
    pub fn nth(&self, mut n: usize) -> Option<&T> {
        if n >= self.len {
            return None;
        }
        let mut node = self.root;
        for _ in 0..self.height {
            let inner = &self.inners[node as usize];
            let mut j = 0;
            while n >= inner.counts[j] {
                n -= inner.counts[j];
                j += 1;
            }
            node = inner.children[j];
        }
        self.leaves[node as usize].elems.get(n)
    }

    /// All elements in order.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            leaves: &self.leaves,
            front: [].iter(),
            front_next: FIRST,
            back: [].iter(),
            back_prev: self.last,
            remaining: self.len,
        }
    }

    /// Heap bytes held by the tree itself (element buffers and node arenas), not counting what
    /// the elements point to or the allocator's own overhead.
    pub fn mem_bytes(&self) -> usize {
        let t = mem::size_of::<T>();
        let leaves: usize = self.leaves.iter().map(|l| l.elems.capacity() * t).sum();
        let inners: usize = self
            .inners
            .iter()
            .map(|n| n.keys.capacity() * t + n.children.capacity() * 4 + n.counts.capacity() * mem::size_of::<usize>())
            .sum();
        leaves
            + inners
            + self.leaves.capacity() * mem::size_of::<Leaf<T>>()
            + self.inners.capacity() * mem::size_of::<Inner<T>>()
            + (self.free_leaves.capacity() + self.free_inners.capacity()) * 4
    }

    /// Walks from the root to the leaf where `before` (true for a prefix of the elements in
    /// order) turns false, telling `step` each inner node and the child taken; returns the leaf
    /// and the position in it.
    fn descend(&self, before: impl Fn(&T) -> bool, mut step: impl FnMut(u32, usize)) -> (u32, usize) {
        // Keys arriving in order (auto-increment ids, recovery of a snapshot) go past the last
        // element at every level: one comparison there instead of a binary search.
        let point = |items: &[T]| match items.last() {
            Some(last) if before(last) => items.len(),
            _ => items.partition_point(&before),
        };
        let mut node = self.root;
        for _ in 0..self.height {
            let inner = &self.inners[node as usize];
            let j = point(&inner.keys);
            step(node, j);
            node = inner.children[j];
        }
        (node, point(&self.leaves[node as usize].elems))
    }

    /// A cursor at `pos` of `leaf`, moved to the next leaf when `pos` is past its end.
    fn cursor(&self, leaf: u32, pos: usize) -> Cursor {
        let l = &self.leaves[leaf as usize];
        if pos < l.elems.len() {
            Cursor { leaf, pos: pos as u32 }
        } else if l.next == NIL {
            Cursor::END
        } else {
            Cursor { leaf: l.next, pos: 0 }
        }
    }

    /// Stores `min`, the new smallest element of the leaf at the end of `path`, in the one
    /// separator that holds it: the deepest step that did not take a leftmost child.
    fn set_separator(&mut self, path: &Path, min: T) {
        if let Some(&(n, j)) = path.steps().iter().rev().find(|s| s.1 > 0) {
            self.inners[n as usize].keys[j as usize - 1] = min;
        }
    }

    /// Replaces the separator comparing Equal to the key (a removed element), if any, by the
    /// smallest element under its right child.
    fn refresh_separator(&mut self, probe: &impl Fn(&T) -> Ordering) {
        let mut node = self.root as usize;
        for depth in 0..self.height {
            let inner = &self.inners[node];
            let j = inner.keys.partition_point(|k| probe(k) == Ordering::Less);
            if j < inner.keys.len() && probe(&inner.keys[j]) == Ordering::Equal {
                let mut n = inner.children[j + 1];
                for _ in depth + 1..self.height {
                    n = self.inners[n as usize].children[0];
                }
                let min = self.leaves[n as usize].elems[0].clone();
                self.inners[node].keys[j] = min;
                return;
            }
            node = inner.children[j] as usize;
        }
    }

    fn alloc_leaf(&mut self, leaf: Leaf<T>) -> u32 {
        if let Some(id) = self.free_leaves.pop() {
            self.leaves[id as usize] = leaf;
            return id;
        }
        assert!(self.leaves.len() < NIL as usize, "BPlusTree: too many leaves");
        grow_arena(&mut self.leaves);
        self.leaves.push(leaf);
        self.leaves.len() as u32 - 1
    }

    fn alloc_inner(&mut self, inner: Inner<T>) -> u32 {
        if let Some(id) = self.free_inners.pop() {
            self.inners[id as usize] = inner;
            return id;
        }
        assert!(self.inners.len() < NIL as usize, "BPlusTree: too many inner nodes");
        grow_arena(&mut self.inners);
        self.inners.push(inner);
        self.inners.len() as u32 - 1
    }

    /// Inserts `v` at `pos` of the full `leaf`: by a split at an edge for inserts in order,
    /// else by moving elements to a sibling with room, else by a split in the middle.
    fn insert_full(&mut self, path: &Path, leaf: u32, pos: usize, v: T) {
        let hint = self.leaves[leaf as usize].hint;
        // How many of the L + 1 elements stay. Only the first leaf sees pos == 0. An append
        // that does not continue an ascending run goes to the front of the next leaf if it has
        // room: descending inserts between two leaves would otherwise get a leaf each. A run
        // inside the leaf goes on at the end of the left part (ascending) or the front of the
        // right part (descending), so the other elements move out once instead of halving
        // every leaf the run fills.
        let s = if pos == L {
            if hint != L as u32 - 1 && self.next_sibling(path).is_some() {
                match self.prepend_next(path, v) {
                    Ok(()) => return,
                    Err(v) => return self.split_leaf(path, leaf, pos, v, L),
                }
            }
            L
        } else if pos == 0 {
            1
        } else if pos as u32 == hint.wrapping_add(1) {
            pos + 1
        } else if pos as u32 == hint {
            pos
        } else {
            match self.spill(path, leaf, pos, v) {
                Ok(()) => return,
                Err(v) => return self.split_leaf(path, leaf, pos, v, L.div_ceil(2)),
            }
        };
        self.split_leaf(path, leaf, pos, v, s);
    }

    /// The leaf after the one at the end of `path` if they have the same parent.
    fn next_sibling(&self, path: &Path) -> Option<u32> {
        let &(p, j) = path.steps().last()?;
        self.inners[p as usize].children.get(j as usize + 1).copied()
    }

    /// Puts `v` first in the leaf after the one at the end of `path` (they have the same
    /// parent) if it has room; gives `v` back if not.
    fn prepend_next(&mut self, path: &Path, v: T) -> Result<(), T> {
        let &(p, j) = path.steps().last().expect("a sibling has a parent");
        let (p, j) = (p as usize, j as usize);
        let next = &mut self.leaves[self.inners[p].children[j + 1] as usize];
        let n = next.elems.len();
        if n == L {
            return Err(v);
        }
        reserve(&mut next.elems, n + 1, L);
        next.elems.insert(0, v);
        next.hint = 0;
        let sep = next.elems[0].clone();
        let parent = &mut self.inners[p];
        parent.keys[j] = sep;
        parent.counts[j] -= 1;
        parent.counts[j + 1] += 1;
        Ok(())
    }

    /// Moves elements of the full `leaf` to the sibling with more room (if it has room for
    /// two) and inserts `v`; gives `v` back when the siblings are (nearly) full too. Random
    /// inserts fill leaves to about 80% this way rather than 70%.
    fn spill(&mut self, path: &Path, leaf: u32, pos: usize, v: T) -> Result<(), T> {
        let Some(&(p, j)) = path.steps().last() else {
            return Err(v);
        };
        let (p, j) = (p as usize, j as usize);
        let parent = &self.inners[p];
        let left = if j > 0 {
            Some(parent.children[j - 1] as usize)
        } else {
            None
        };
        let right = parent.children.get(j + 1).map(|&r| r as usize);
        let room = |id: Option<usize>| id.map_or(0, |id| L - self.leaves[id].elems.len());
        let (lroom, rroom) = (room(left), room(right));
        if lroom.max(rroom) < 2 {
            return Err(v);
        }
        let leaf = leaf as usize;
        if lroom >= rroom {
            // The first k go left; v goes left too when it comes before the new first.
            let (l, k) = (left.expect("room on the left"), lroom / 2);
            let mut le = mem::take(&mut self.leaves[l].elems);
            let ln = le.len();
            reserve(&mut le, ln + k + 1, L);
            let node = &mut self.leaves[leaf];
            le.extend(node.elems.drain(..k));
            let mut lhint = NIL;
            if pos <= k {
                le.insert(ln + pos, v);
                lhint = (ln + pos) as u32;
                node.hint = NIL;
            } else {
                node.elems.insert(pos - k, v);
                node.hint = (pos - k) as u32;
            }
            let (sep, n) = (node.elems[0].clone(), node.elems.len());
            let parent = &mut self.inners[p];
            parent.keys[j - 1] = sep;
            parent.counts[j - 1] = le.len();
            parent.counts[j] = n;
            self.leaves[l].elems = le;
            self.leaves[l].hint = lhint;
        } else {
            // The last k go right; v goes right when it comes after the new last.
            let (r, k) = (right.expect("room on the right"), rroom / 2);
            let mut re = mem::take(&mut self.leaves[r].elems);
            let rn = re.len();
            reserve(&mut re, rn + k + 1, L);
            let node = &mut self.leaves[leaf];
            let keep = L - k;
            re.splice(0..0, node.elems.drain(keep..));
            let mut rhint = NIL;
            if pos <= keep {
                node.elems.insert(pos, v);
                node.hint = pos as u32;
            } else {
                re.insert(pos - keep, v);
                rhint = (pos - keep) as u32;
            }
            let (sep, n) = (re[0].clone(), node.elems.len());
            let parent = &mut self.inners[p];
            parent.keys[j] = sep;
            parent.counts[j] = n;
            parent.counts[j + 1] = re.len();
            self.leaves[r].elems = re;
            self.leaves[r].hint = rhint;
        }
        Ok(())
    }

    /// Splits `leaf` while inserting `v` at `pos`, keeping `s` of its elements and `v`.
    fn split_leaf(&mut self, path: &Path, leaf: u32, pos: usize, v: T, s: usize) {
        let node = &mut self.leaves[leaf as usize];
        let total = node.elems.len() + 1;
        let mut right = Vec::with_capacity(L);
        let mut right_hint = NIL;
        if pos < s {
            right.extend(node.elems.drain(s - 1..));
            node.elems.insert(pos, v);
            node.hint = pos as u32;
        } else {
            right.extend(node.elems.drain(s..));
            right.insert(pos - s, v);
            node.hint = NIL;
            right_hint = (pos - s) as u32;
        }
        let next = node.next;
        let sep = right[0].clone();
        let r = self.alloc_leaf(Leaf {
            hint: right_hint,
            ..Leaf::new(right, leaf, next)
        });
        self.leaves[leaf as usize].next = r;
        if next == NIL {
            self.last = r;
        } else {
            self.leaves[next as usize].prev = r;
        }
        self.add_child(path, sep, r, s, total - s);
    }

    /// Puts `right`, split off the node at the end of `path`, after it in its parent; `lc` and
    /// `rc` are the elements now under each. Splits overflowing parents up to the root.
    fn add_child(&mut self, path: &Path, mut sep: T, mut right: u32, mut lc: usize, mut rc: usize) {
        for &(n, j) in path.steps().iter().rev() {
            let j = j as usize;
            let node = &mut self.inners[n as usize];
            node.counts[j] = lc;
            node.keys.insert(j, sep);
            node.children.insert(j + 1, right);
            node.counts.insert(j + 1, rc);
            let total = node.children.len();
            if total <= I {
                return;
            }
            // Children that stay; as with leaves, an edge split keeps the full part together.
            let s = if j + 2 == total {
                total - 2
            } else if j == 0 {
                2
            } else {
                total / 2
            };
            let mut keys = Vec::with_capacity(I);
            keys.extend(node.keys.drain(s..));
            sep = node.keys.pop().expect("an overflowing node has keys");
            let mut children = Vec::with_capacity(I + 1);
            children.extend(node.children.drain(s..));
            let mut counts = Vec::with_capacity(I + 1);
            counts.extend(node.counts.drain(s..));
            lc = node.counts.iter().sum();
            rc = counts.iter().sum();
            right = self.alloc_inner(Inner { keys, children, counts });
        }
        let mut keys = Vec::with_capacity(I);
        keys.push(sep);
        let mut children = Vec::with_capacity(I + 1);
        children.extend([self.root, right]);
        let mut counts = Vec::with_capacity(I + 1);
        counts.extend([lc, rc]);
        self.root = self.alloc_inner(Inner { keys, children, counts });
        self.height += 1;
    }

    /// Restores the fill of the leaf at the end of `path` and of its ancestors after a removal.
    fn rebalance(&mut self, path: &Path, leaf: u32) {
        let mut depth = path.len;
        if depth == 0 || self.leaves[leaf as usize].elems.len() >= Self::LEAF_MIN {
            return;
        }
        let (p, j) = path.steps[depth - 1];
        let mut merged = self.fix_leaves(p, j as usize);
        while merged {
            depth -= 1;
            if depth == 0 || self.inners[path.steps[depth].0 as usize].children.len() >= Self::INNER_MIN {
                break;
            }
            let (p, j) = path.steps[depth - 1];
            merged = self.fix_inners(p, j as usize);
        }
        while self.height > 0 && self.inners[self.root as usize].children.len() == 1 {
            let old = self.root;
            self.root = self.inners[old as usize].children[0];
            self.height -= 1;
            self.inners[old as usize] = Inner::empty();
            self.free_inners.push(old);
        }
    }

    /// Merges the underfull leaf `children[j]` of `p` with a sibling, or evens the two out when
    /// they do not fit in one leaf. True when `p` lost a child.
    fn fix_leaves(&mut self, p: u32, j: usize) -> bool {
        let li = j.saturating_sub(1);
        let (l, r) = {
            let parent = &self.inners[p as usize];
            (parent.children[li] as usize, parent.children[li + 1] as usize)
        };
        let mut re = mem::take(&mut self.leaves[r].elems);
        let le = &mut self.leaves[l].elems;
        let (ln, rn) = (le.len(), re.len());
        if ln + rn <= L {
            reserve(le, ln + rn, L);
            le.append(&mut re);
            let next = self.leaves[r].next;
            self.leaves[l].next = next;
            if next == NIL {
                self.last = l as u32;
            } else {
                self.leaves[next as usize].prev = l as u32;
            }
            self.leaves[r] = Leaf::new(Vec::new(), NIL, NIL);
            self.free_leaves.push(r as u32);
            let parent = &mut self.inners[p as usize];
            parent.keys.remove(li);
            parent.children.remove(li + 1);
            let rc = parent.counts.remove(li + 1);
            parent.counts[li] += rc;
            return true;
        }
        let want = (ln + rn) / 2;
        if ln < want {
            reserve(le, want, L);
            le.extend(re.drain(..want - ln));
        } else {
            reserve(&mut re, ln + rn - want, L);
            re.splice(0..0, le.drain(want..));
        }
        let sep = re[0].clone();
        self.leaves[r].elems = re;
        let parent = &mut self.inners[p as usize];
        parent.keys[li] = sep;
        parent.counts[li] = want;
        parent.counts[li + 1] = ln + rn - want;
        false
    }

    /// `fix_leaves` one level up: the inner node `children[j]` of `p` is underfull.
    fn fix_inners(&mut self, p: u32, j: usize) -> bool {
        let li = j.saturating_sub(1);
        let (l, r) = {
            let parent = &self.inners[p as usize];
            (parent.children[li] as usize, parent.children[li + 1] as usize)
        };
        let mut rnode = mem::replace(&mut self.inners[r], Inner::empty());
        let (ln, rn) = (self.inners[l].children.len(), rnode.children.len());
        if ln + rn <= I {
            let parent = &mut self.inners[p as usize];
            let sep = parent.keys.remove(li);
            parent.children.remove(li + 1);
            let rc = parent.counts.remove(li + 1);
            parent.counts[li] += rc;
            let lnode = &mut self.inners[l];
            lnode.keys.push(sep);
            lnode.keys.append(&mut rnode.keys);
            lnode.children.append(&mut rnode.children);
            lnode.counts.append(&mut rnode.counts);
            self.free_inners.push(r as u32);
            return true;
        }
        let want = (ln + rn) / 2;
        let moved: usize;
        if ln < want {
            // Rotate the first children of r into l, through the parent's separator.
            let k = want - ln;
            let mut keys: Vec<T> = rnode.keys.drain(..k).collect();
            let sep = keys.pop().expect("a rotation moves at least one key");
            let children: Vec<u32> = rnode.children.drain(..k).collect();
            let counts: Vec<usize> = rnode.counts.drain(..k).collect();
            moved = counts.iter().sum();
            let parent = &mut self.inners[p as usize];
            let old = mem::replace(&mut parent.keys[li], sep);
            parent.counts[li] += moved;
            parent.counts[li + 1] -= moved;
            let lnode = &mut self.inners[l];
            lnode.keys.push(old);
            lnode.keys.extend(keys);
            lnode.children.extend(children);
            lnode.counts.extend(counts);
        } else {
            // Rotate the last children of l into r.
            let k = ln - want;
            let lnode = &mut self.inners[l];
            let keys: Vec<T> = lnode.keys.drain(ln - k..).collect();
            let sep = lnode.keys.pop().expect("a rotation leaves l a key");
            let children: Vec<u32> = lnode.children.drain(ln - k..).collect();
            let counts: Vec<usize> = lnode.counts.drain(ln - k..).collect();
            moved = counts.iter().sum();
            let parent = &mut self.inners[p as usize];
            let old = mem::replace(&mut parent.keys[li], sep);
            parent.counts[li] -= moved;
            parent.counts[li + 1] += moved;
            rnode.keys.splice(0..0, keys.into_iter().chain(std::iter::once(old)));
            rnode.children.splice(0..0, children);
            rnode.counts.splice(0..0, counts);
        }
        self.inners[r] = rnode;
        false
    }
}

impl<T: Clone + fmt::Debug, const L: usize, const I: usize> fmt::Debug for BPlusTree<T, L, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<'a, T: Clone, const L: usize, const I: usize> IntoIterator for &'a BPlusTree<T, L, I> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

/// In-order iterator over a [`BPlusTree`], from both ends.
pub struct Iter<'a, T> {
    leaves: &'a [Leaf<T>],
    front: std::slice::Iter<'a, T>,
    /// The leaf `front` moves to when it runs out.
    front_next: u32,
    back: std::slice::Iter<'a, T>,
    back_prev: u32,
    /// Stops both ends where they meet, even inside one leaf.
    remaining: usize,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        if self.remaining == 0 {
            return None;
        }
        loop {
            if let Some(e) = self.front.next() {
                self.remaining -= 1;
                return Some(e);
            }
            let leaves = self.leaves;
            let leaf = &leaves[self.front_next as usize];
            self.front = leaf.elems.iter();
            self.front_next = leaf.next;
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<T> DoubleEndedIterator for Iter<'_, T> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        loop {
            if let Some(e) = self.back.next_back() {
                self.remaining -= 1;
                return Some(e);
            }
            let leaves = self.leaves;
            let leaf = &leaves[self.back_prev as usize];
            self.back = leaf.elems.iter();
            self.back_prev = leaf.prev;
        }
    }
}

impl<T> ExactSizeIterator for Iter<'_, T> {}
impl<T> FusedIterator for Iter<'_, T> {}

#[cfg(test)]
#[path = "bptree_tests.rs"]
mod tests;
