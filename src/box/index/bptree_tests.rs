use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::rc::Rc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;

/// Elements compare by the key only, so a replacement is visible in the payload.
type Pair = (u64, u32);

fn by_key(a: &Pair, b: &Pair) -> Ordering {
    a.0.cmp(&b.0)
}

fn key(k: u64) -> impl Fn(&Pair) -> Ordering {
    move |e| e.0.cmp(&k)
}

fn u64_cmp(a: &u64, b: &u64) -> Ordering {
    a.cmp(b)
}

fn u64_key(k: u64) -> impl Fn(&u64) -> Ordering {
    move |e| e.cmp(&k)
}

impl<T: Clone, const L: usize, const I: usize> BPlusTree<T, L, I> {
    /// Panics unless every structural invariant holds.
    fn check(&self, cmp: &dyn Fn(&T, &T) -> Ordering) {
        let mut order = Vec::new();
        let (count, _) = self.check_node(self.root, 0, &mut order, cmp);
        assert_eq!(count, self.len, "len");
        assert_eq!(order[0], FIRST, "first leaf");
        assert_eq!(*order.last().unwrap(), self.last, "last leaf");
        assert_eq!(self.leaves[FIRST as usize].prev, NIL);
        assert_eq!(self.leaves[self.last as usize].next, NIL);
        for w in order.windows(2) {
            assert_eq!(self.leaves[w[0] as usize].next, w[1], "next link");
            assert_eq!(self.leaves[w[1] as usize].prev, w[0], "prev link");
            let (a, b) = (&self.leaves[w[0] as usize].elems, &self.leaves[w[1] as usize].elems);
            assert_eq!(cmp(a.last().unwrap(), &b[0]), Ordering::Less, "order across leaves");
        }
        let mut live: Vec<bool> = vec![false; self.leaves.len()];
        for &l in &order {
            live[l as usize] = true;
        }
        for &f in &self.free_leaves {
            assert!(!live[f as usize], "a free leaf in use");
            live[f as usize] = true;
            assert_eq!(
                self.leaves[f as usize].elems.capacity(),
                0,
                "a free leaf holds a buffer"
            );
        }
        assert!(live.iter().all(|&x| x), "a leaf neither in the tree nor free");
        let inner_count = self.count_inners(self.root, 0);
        assert_eq!(
            inner_count + self.free_inners.len(),
            self.inners.len(),
            "inner arena accounting"
        );
    }

    /// Elements under `node` and the smallest of them.
    fn check_node(
        &self,
        node: u32,
        depth: usize,
        order: &mut Vec<u32>,
        cmp: &dyn Fn(&T, &T) -> Ordering,
    ) -> (usize, Option<T>) {
        if depth == self.height {
            let elems = &self.leaves[node as usize].elems;
            assert!(elems.len() <= L && elems.capacity() <= L, "leaf overflow");
            assert!(node == self.root || !elems.is_empty(), "empty leaf");
            for w in elems.windows(2) {
                assert_eq!(cmp(&w[0], &w[1]), Ordering::Less, "order in a leaf");
            }
            order.push(node);
            return (elems.len(), elems.first().cloned());
        }
        let inner = &self.inners[node as usize];
        let n = inner.children.len();
        assert!((2..=I).contains(&n), "inner node of {n} children");
        assert_eq!(inner.keys.len(), n - 1);
        assert_eq!(inner.counts.len(), n);
        assert!(inner.keys.capacity() <= I && inner.children.capacity() <= I + 1);
        let mut total = 0;
        let mut min = None;
        for (i, &c) in inner.children.iter().enumerate() {
            let (count, m) = self.check_node(c, depth + 1, order, cmp);
            assert_eq!(inner.counts[i], count, "subtree count");
            let m = m.expect("empty subtree");
            if i == 0 {
                min = Some(m);
            } else {
                assert_eq!(
                    cmp(&inner.keys[i - 1], &m),
                    Ordering::Equal,
                    "separator is not the minimum"
                );
            }
            total += count;
        }
        (total, min)
    }

    fn count_inners(&self, node: u32, depth: usize) -> usize {
        if depth == self.height {
            return 0;
        }
        1 + self.inners[node as usize]
            .children
            .iter()
            .map(|&c| self.count_inners(c, depth + 1))
            .sum::<usize>()
    }

    fn live_leaves(&self) -> usize {
        self.leaves.len() - self.free_leaves.len()
    }

    fn separators(&self) -> usize {
        self.inners.iter().map(|n| n.keys.len()).sum()
    }
}

#[test]
fn empty() {
    let mut t = BPlusTree::<u64>::new();
    t.check(&u64_cmp);
    assert!(t.is_empty());
    assert_eq!(t.first(), Cursor::END);
    assert_eq!(t.last(), Cursor::BEFORE);
    assert_eq!(t.next(Cursor::BEFORE), Cursor::END);
    assert_eq!(t.next(Cursor::END), Cursor::END);
    assert_eq!(t.prev(Cursor::END), Cursor::BEFORE);
    assert_eq!(t.prev(Cursor::BEFORE), Cursor::BEFORE);
    assert_eq!(t.at(Cursor::END), None);
    assert_eq!(t.lower_bound(u64_key(5)), Cursor::END);
    assert_eq!(t.upper_bound(u64_key(5)), Cursor::END);
    assert_eq!(t.nth(0), None);
    assert_eq!(t.count_less(u64_key(5)), 0);
    assert_eq!(t.iter().next(), None);
    assert_eq!(t.iter().next_back(), None);
    assert_eq!(t.remove(u64_key(5)), None);
    assert_eq!(t.version(), 0, "a failed remove changes nothing");
    assert_eq!(
        t.mem_bytes(),
        mem::size_of::<Leaf<u64>>(),
        "an empty tree has no element buffer"
    );
}

#[test]
fn small_tree_cursors() {
    let mut t = BPlusTree::<u64>::new();
    for k in [30, 10, 20] {
        assert_eq!(t.insert(k, u64_cmp), None);
    }
    assert_eq!(t.iter().copied().collect::<Vec<_>>(), [10, 20, 30]);
    assert_eq!(t.iter().rev().copied().collect::<Vec<_>>(), [30, 20, 10]);
    assert_eq!(t.at(t.lower_bound(u64_key(20))), Some(&20));
    assert_eq!(t.at(t.upper_bound(u64_key(20))), Some(&30));
    assert_eq!(t.at(t.lower_bound(u64_key(15))), Some(&20));
    assert_eq!(t.lower_bound(u64_key(31)), Cursor::END);
    assert_eq!(
        t.at(t.prev(t.lower_bound(u64_key(31)))),
        Some(&30),
        "prev of the end is the last"
    );
    assert_eq!(t.prev(t.first()), Cursor::BEFORE);
    assert_eq!(t.at(t.next(Cursor::BEFORE)), Some(&10));
    assert_eq!(t.next(t.last()), Cursor::END);
    assert_eq!(t.get(u64_key(20)), Some(&20));
    assert_eq!(t.get(u64_key(21)), None);
    assert_eq!(t.count_less(u64_key(25)), 2);
    assert_eq!((t.nth(0), t.nth(2), t.nth(3)), (Some(&10), Some(&30), None));
    assert_eq!(t.remove(u64_key(20)), Some(20));
    assert_eq!(t.remove(u64_key(20)), None);
    assert_eq!(t.len(), 2);
    t.check(&u64_cmp);
}

#[test]
fn insert_replaces_equal() {
    let mut t = BPlusTree::<Pair, 4, 4>::new();
    for k in 0..100 {
        t.insert((k, 0), by_key);
    }
    for k in 0..100 {
        assert_eq!(t.insert((k, 1), by_key), Some((k, 0)));
    }
    assert_eq!(t.len(), 100);
    assert!(t.iter().all(|e| e.1 == 1));
    t.check(&by_key);
}

#[test]
fn version_changes_on_every_change() {
    let mut t = BPlusTree::<u64>::new();
    let v0 = t.version();
    t.insert(1, u64_cmp);
    let v1 = t.version();
    assert_ne!(v0, v1);
    t.insert(1, u64_cmp);
    let v2 = t.version();
    assert_ne!(v1, v2, "a replacement changes the version");
    let _ = (t.get(u64_key(1)), t.lower_bound(u64_key(1)));
    assert_eq!(t.remove(u64_key(7)), None);
    assert_eq!(t.version(), v2, "lookups and failed removes do not");
    t.remove(u64_key(1));
    let v3 = t.version();
    assert_ne!(v2, v3);
    t.clear();
    assert!(t.version() > v3, "clear does, and versions never repeat");
}

/// The pattern index iterators use: remember the last element returned and re-seek after it
/// when the tree changed underneath.
#[test]
fn stale_cursor_reseek() {
    let mut t = BPlusTree::<u64, 4, 4>::new();
    for k in 0..200 {
        t.insert(k, u64_cmp);
    }
    let mut seen = Vec::new();
    let mut c = t.first();
    let mut version = t.version();
    loop {
        if t.version() != version {
            c = t.upper_bound(u64_key(*seen.last().unwrap()));
            version = t.version();
        }
        let Some(&e) = t.at(c) else { break };
        seen.push(e);
        c = t.next(c);
        // Each step deletes the element after the next one and adds one far ahead.
        t.remove(u64_key(e + 2));
        if e % 3 == 0 {
            t.insert(e + 1000, u64_cmp);
        }
    }
    let expect: Vec<u64> = {
        let mut m: BTreeSet<u64> = (0..200).collect();
        let mut out = Vec::new();
        let mut last = None;
        while let Some(&e) = match last {
            None => m.iter().next(),
            Some(l) => m.range((Bound::Excluded(l), Bound::Unbounded)).next(),
        } {
            out.push(e);
            last = Some(e);
            m.remove(&(e + 2));
            if e % 3 == 0 {
                m.insert(e + 1000);
            }
        }
        out
    };
    assert_eq!(seen, expect);
    t.check(&u64_cmp);
}

#[test]
fn stale_cursor_does_not_panic() {
    let mut t = BPlusTree::<u64, 4, 4>::new();
    for k in 0..100 {
        t.insert(k, u64_cmp);
    }
    let cursors: Vec<Cursor> = (0..100).map(|k| t.lower_bound(u64_key(k))).collect();
    for k in 0..100 {
        t.remove(u64_key(k));
    }
    for &c in &cursors {
        let _ = (t.at(c), t.next(c), t.prev(c), t.at(t.next(c)), t.at(t.prev(c)));
    }
    t.clear();
    for &c in &cursors {
        assert_eq!((t.at(c), t.at(t.next(c)), t.at(t.prev(c))), (None, None, None));
    }
}

#[test]
fn ordered_loads_fill_leaves() {
    const N: u64 = 100_000;
    let mut up = BPlusTree::<u64>::new();
    for k in 0..N {
        up.insert(k, u64_cmp);
    }
    up.check(&u64_cmp);
    assert_eq!(
        up.live_leaves(),
        (N as usize).div_ceil(64),
        "ascending: all leaves but the last full"
    );
    let per = up.mem_bytes() as f64 / N as f64;
    assert!(per <= 9.5, "ascending: {per} bytes per element");
    let mut down = BPlusTree::<u64>::new();
    for k in (0..N).rev() {
        down.insert(k, u64_cmp);
    }
    down.check(&u64_cmp);
    assert_eq!(
        down.live_leaves(),
        (N as usize).div_ceil(64),
        "descending: all leaves but the first full"
    );

    // Runs in order that land inside the tree: a non-unique index appending to (or prepending
    // to) each key's group, and runs between two existing leaves.
    type Load = Box<dyn Iterator<Item = (u64, u64)>>;
    let loads: [(&str, Load); 6] = [
        (
            "ascending groups",
            Box::new((0..N / 16).flat_map(|i| (0..16).map(move |g| (g, i)))),
        ),
        (
            "descending groups",
            Box::new((0..N / 16).rev().flat_map(|i| (0..16).map(move |g| (g, i)))),
        ),
        (
            "ascending between",
            Box::new((0..64).map(|i| (0, i)).chain([(2, 0)]).chain((0..N).map(|i| (1, i)))),
        ),
        (
            "descending between",
            Box::new(
                (0..64)
                    .map(|i| (0, i))
                    .chain([(2, 0)])
                    .chain((0..N).rev().map(|i| (1, i))),
            ),
        ),
        (
            "descending between full",
            Box::new(
                (0..64)
                    .map(|i| (0, i))
                    .chain((0..64).map(|i| (2, i)))
                    .chain((0..N).rev().map(|i| (1, i))),
            ),
        ),
        (
            "ascending between full",
            Box::new(
                (0..64)
                    .map(|i| (0, i))
                    .chain((0..64).map(|i| (2, i)))
                    .chain((0..N).map(|i| (1, i))),
            ),
        ),
    ];
    let pair_cmp = |a: &(u64, u64), b: &(u64, u64)| a.cmp(b);
    for (name, load) in loads {
        let mut t = BPlusTree::<(u64, u64)>::new();
        for e in load {
            t.insert(e, pair_cmp);
        }
        t.check(&pair_cmp);
        let per_leaf = t.len() as f64 / t.live_leaves() as f64;
        assert!(per_leaf > 60.0, "{name}: {per_leaf} elements per leaf");
    }
}

#[test]
fn random_load_memory() {
    const N: usize = 100_000;
    let mut rng = StdRng::seed_from_u64(7);
    let mut t = BPlusTree::<u64>::new();
    while t.len() < N {
        t.insert(rng.random(), u64_cmp);
    }
    t.check(&u64_cmp);
    let per = t.mem_bytes() as f64 / N as f64;
    assert!(per <= 12.0, "random: {per} bytes per element");
    let per_leaf = N as f64 / t.live_leaves() as f64;
    assert!(per_leaf >= 50.0, "random: {per_leaf} elements per leaf");
}

#[test]
fn mass_delete_keeps_leaves_half_full() {
    const N: u64 = 100_000;
    let mut rng = StdRng::seed_from_u64(8);
    let mut keys: Vec<u64> = (0..N).collect();
    for i in (1..keys.len()).rev() {
        keys.swap(i, rng.random_range(0..=i));
    }
    let mut t = BPlusTree::<u64>::new();
    for &k in &keys {
        t.insert(k, u64_cmp);
    }
    for &k in &keys[..keys.len() * 9 / 10] {
        assert_eq!(t.remove(u64_key(k)), Some(k));
    }
    t.check(&u64_cmp);
    let per_leaf = t.len() as f64 / t.live_leaves() as f64;
    assert!(per_leaf >= 32.0, "{per_leaf} elements per leaf after deleting 90%");
    let per = t.mem_bytes() as f64 / t.len() as f64;
    assert!(per <= 32.0, "{per} bytes per element after deleting 90%");
    for &k in &keys[keys.len() * 9 / 10..] {
        assert_eq!(t.remove(u64_key(k)), Some(k));
    }
    t.check(&u64_cmp);
    assert_eq!((t.height, t.live_leaves()), (0, 1), "shrinks back to one leaf");
}

/// Separators are clones: none may outlive its element's removal or replacement.
fn no_stale_clones<const L: usize, const I: usize>(seed: u64, n: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let rc_cmp = |a: &Rc<u64>, b: &Rc<u64>| a.cmp(b);
    let mut t = BPlusTree::<Rc<u64>, L, I>::new();
    let mut model = BTreeSet::new();
    for round in 0..4 {
        while model.len() < n as usize {
            let k = rng.random_range(0..n * 2);
            model.insert(k);
            if let Some(old) = t.insert(Rc::new(k), rc_cmp) {
                assert_eq!(Rc::strong_count(&old), 1, "a replaced element is still referenced");
            }
        }
        t.check(&rc_cmp);
        let clones: usize = t.iter().map(|e| Rc::strong_count(e) - 1).sum();
        assert_eq!(clones, t.separators(), "a separator that is not a live element");
        let floor = if round % 2 == 0 { 0 } else { n as usize / 3 };
        while model.len() > floor {
            let k = rng.random_range(0..n * 2);
            let k = *model.range(k..).next().or(model.iter().next()).unwrap();
            model.remove(&k);
            let old = t.remove(|e: &Rc<u64>| (**e).cmp(&k)).expect("present");
            assert_eq!(Rc::strong_count(&old), 1, "a removed element is still referenced");
        }
        t.check(&rc_cmp);
    }
}

#[test]
fn no_stale_clones_small_nodes() {
    no_stale_clones::<2, 4>(1, 300);
    no_stale_clones::<4, 4>(2, 500);
    no_stale_clones::<5, 7>(3, 500);
}

#[test]
fn no_stale_clones_default_nodes() {
    no_stale_clones::<64, 64>(4, 20_000);
}

/// Random operations on the tree and on a BTreeMap, compared after every step.
struct Model<const L: usize, const I: usize> {
    t: BPlusTree<Pair, L, I>,
    m: BTreeMap<u64, u32>,
    rng: StdRng,
    space: u64,
    payload: u32,
    steps: usize,
    check_every: usize,
    /// Inserts in order now and then, to reach the edge splits: next key, step, inserts left.
    run: (u64, i64, usize),
}

impl<const L: usize, const I: usize> Model<L, I> {
    fn run(seed: u64, rounds: usize, max_len: usize, check_every: usize) {
        let mut s: Model<L, I> = Model {
            t: BPlusTree::new(),
            m: BTreeMap::new(),
            rng: StdRng::seed_from_u64(seed),
            space: (max_len as u64 * 2).max(8),
            payload: 0,
            steps: 0,
            check_every,
            run: (0, 1, 0),
        };
        for round in 0..rounds {
            let target = s.rng.random_range(max_len / 2..=max_len);
            while s.m.len() < target {
                s.step(0.7);
            }
            // Down to empty every other round, then grow again from there.
            let floor = if round % 2 == 0 {
                0
            } else {
                s.rng.random_range(0..=target / 2)
            };
            while s.m.len() > floor {
                s.step(0.3);
            }
            s.full_check();
        }
    }

    fn step(&mut self, insert_share: f64) {
        self.steps += 1;
        let version = self.t.version();
        let stale = self.t.lower_bound(key(self.rng.random_range(0..self.space)));
        let changed = if self.rng.random_bool(insert_share) {
            if self.run.2 == 0 && self.rng.random_bool(0.02) {
                let step = if self.rng.random_bool(0.5) { 1 } else { -1 };
                self.run = (
                    self.rng.random_range(0..self.space),
                    step,
                    self.rng.random_range(1..3 * L),
                );
            }
            let k = match self.run {
                (_, _, 0) => self.rng.random_range(0..self.space),
                (k, step, left) => {
                    self.run = ((k as i64 + step).rem_euclid(self.space as i64) as u64, step, left - 1);
                    k
                }
            };
            self.payload += 1;
            let got = self.t.insert((k, self.payload), by_key);
            assert_eq!(got, self.m.insert(k, self.payload).map(|v| (k, v)), "insert {k}");
            true
        } else {
            let k = self.rng.random_range(0..self.space);
            // Mostly remove a present key, so trees really shrink.
            let k = match self.rng.random_bool(0.8) {
                true => self.m.range(k..).next().or(self.m.iter().next()).map_or(k, |(&k, _)| k),
                false => k,
            };
            let got = self.t.remove(key(k));
            let expect = self.m.remove(&k).map(|v| (k, v));
            assert_eq!(got, expect, "remove {k}");
            expect.is_some()
        };
        assert_eq!(self.t.version() != version, changed, "version after a change");
        if !changed {
            assert!(self.t.at(stale).is_none_or(|e| self.t.lower_bound(key(e.0)) == stale));
        }
        assert_eq!(self.t.len(), self.m.len());
        self.queries();
        if self.steps.is_multiple_of(self.check_every) {
            self.full_check();
        }
    }

    fn queries(&mut self) {
        let (t, m) = (&self.t, &self.m);
        let q = self.rng.random_range(0..self.space);
        let pair = |(&k, &v): (&u64, &u32)| (k, v);
        assert_eq!(t.get(key(q)), m.get(&q).map(|&v| (q, v)).as_ref(), "get {q}");
        // Walk forward from both bounds and backward from just before them.
        let lb = t.lower_bound(key(q));
        let ub = t.upper_bound(key(q));
        let walk = |mut c: Cursor, forward: bool| {
            let mut out = Vec::new();
            for _ in 0..3 {
                out.push(t.at(c).copied());
                c = if forward { t.next(c) } else { t.prev(c) };
            }
            out
        };
        let expect = |it: &mut dyn Iterator<Item = Pair>| (0..3).map(|_| it.next()).collect::<Vec<_>>();
        assert_eq!(walk(lb, true), expect(&mut m.range(q..).map(pair)), "lower_bound {q}");
        let after = (Bound::Excluded(q), Bound::Unbounded);
        assert_eq!(walk(ub, true), expect(&mut m.range(after).map(pair)), "upper_bound {q}");
        assert_eq!(
            walk(t.prev(lb), false),
            expect(&mut m.range(..q).rev().map(pair)),
            "before {q}"
        );
        assert_eq!(
            walk(t.prev(ub), false),
            expect(&mut m.range(..=q).rev().map(pair)),
            "at or before {q}"
        );
        assert_eq!(t.at(t.first()), m.first_key_value().map(pair).as_ref());
        assert_eq!(t.at(t.last()), m.last_key_value().map(pair).as_ref());
        assert_eq!(t.at(t.prev(t.first())), None);
        assert_eq!(t.at(t.next(t.last())), None);
        // The model answers these in O(n).
        if self.steps.is_multiple_of(if m.len() < 1000 { 4 } else { 256 }) {
            assert_eq!(t.count_less(key(q)), m.range(..q).count(), "count_less {q}");
            let n = self.rng.random_range(0..=m.len());
            assert_eq!(t.nth(n).copied(), m.iter().nth(n).map(pair), "nth {n}");
        }
    }

    fn full_check(&mut self) {
        self.t.check(&by_key);
        let all: Vec<Pair> = self.m.iter().map(|(&k, &v)| (k, v)).collect();
        assert!(self.t.iter().copied().eq(all.iter().copied()));
        assert!(self.t.iter().rev().copied().eq(all.iter().rev().copied()));
        assert_eq!(self.t.iter().len(), all.len());
        // Both ends at once meet without overlap.
        let mut it = self.t.iter();
        let (mut front, mut back) = (Vec::new(), Vec::new());
        loop {
            let side = self.rng.random_bool(0.5);
            match if side { it.next() } else { it.next_back() } {
                Some(&e) if side => front.push(e),
                Some(&e) => back.push(e),
                None => break,
            }
        }
        front.extend(back.into_iter().rev());
        assert_eq!(front, all);
    }
}

#[test]
fn model_tiny_nodes() {
    Model::<2, 4>::run(11, 30, 200, 1);
}

#[test]
fn model_small_nodes() {
    Model::<4, 4>::run(12, 30, 400, 1);
    Model::<5, 7>::run(13, 20, 600, 3);
}

#[test]
fn model_default_nodes_small_trees() {
    Model::<64, 64>::run(14, 40, 150, 1);
}

#[test]
fn model_default_nodes_large_trees() {
    Model::<64, 64>::run(15, 4, 30_000, 2_000);
}

#[test]
fn model_several_seeds() {
    for seed in 100..110 {
        Model::<3, 5>::run(seed, 6, 300, 7);
    }
}

#[test]
fn churn_keeps_leaves_filled() {
    let mut rng = StdRng::seed_from_u64(9);
    let mut t = BPlusTree::<u64>::new();
    let mut keys = Vec::new();
    while t.len() < 50_000 {
        let k: u64 = rng.random();
        if t.insert(k, u64_cmp).is_none() {
            keys.push(k);
        }
    }
    for _ in 0..200_000 {
        let i = rng.random_range(0..keys.len());
        assert_eq!(t.remove(u64_key(keys[i])), Some(keys[i]));
        keys[i] = rng.random();
        assert_eq!(t.insert(keys[i], u64_cmp), None);
    }
    t.check(&u64_cmp);
    let per_leaf = t.len() as f64 / t.live_leaves() as f64;
    assert!(
        per_leaf >= 44.0,
        "{per_leaf} elements per leaf after random replacements"
    );
    let per = t.mem_bytes() as f64 / t.len() as f64;
    assert!(per <= 13.0, "{per} bytes per element after random replacements");
}
