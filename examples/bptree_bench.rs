//! BPlusTree (box TREE indexes' tree) against std's BTreeSet, on u64 elements.
//!
//!     cargo run --release --example bptree_bench [N]      (default: 1000000)
//!
//! Memory: heap bytes per element after N inserts in ascending and in random order, as
//! requested from the allocator and as glibc counts them in use (with chunk headers).
//! Time: ns per insert (random and ascending order), lookup of a present key (random order),
//! lower_bound, element of a full iteration (by the iterator and by cursors), remove (random
//! order). The tree's comparator is a closure over `u64::cmp`, so both sides compare alike;
//! tuples compare far more slowly.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::Instant;

use node::box_::index::bptree::BPlusTree;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// Counts requested heap bytes.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to System with the caller's arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), AtomicOrdering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), AtomicOrdering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, AtomicOrdering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), AtomicOrdering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// (requested, in use by glibc) heap bytes.
fn heap() -> (usize, usize) {
    // SAFETY: mallinfo2 only reads allocator statistics.
    let info = unsafe { libc::mallinfo2() };
    (ALLOCATED.load(AtomicOrdering::Relaxed), info.uordblks + info.hblkhd)
}

fn cmp(a: &u64, b: &u64) -> Ordering {
    a.cmp(b)
}

fn key(k: u64) -> impl Fn(&u64) -> Ordering {
    move |e| e.cmp(&k)
}

fn ns_per(n: usize, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_nanos() as f64 / n as f64
}

/// ns per call of `f` over every key.
fn each(keys: &[u64], mut f: impl FnMut(u64)) -> f64 {
    ns_per(keys.len(), || keys.iter().for_each(|&k| f(k)))
}

fn sink<X>(x: X) {
    black_box(x);
}

fn per_elem(before: (usize, usize), after: (usize, usize), n: usize) -> (f64, f64) {
    (
        (after.0 - before.0) as f64 / n as f64,
        (after.1 - before.1) as f64 / n as f64,
    )
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut rng = SmallRng::seed_from_u64(1);
    let ascending: Vec<u64> = (0..n as u64).collect();
    let mut shuffled = ascending.clone();
    for i in (1..n).rev() {
        shuffled.swap(i, rng.random_range(0..=i));
    }
    let mut probes = shuffled.clone();
    for i in (1..n).rev() {
        probes.swap(i, rng.random_range(0..=i));
    }

    println!("N = {n}, u64 elements; bytes per element: requested / in use by glibc");
    for (order, keys) in [("ascending", &ascending), ("random", &shuffled)] {
        let before = heap();
        let mut t = BPlusTree::<u64>::new();
        for &k in keys {
            t.insert(k, cmp);
        }
        let (req, used) = per_elem(before, heap(), n);
        let own = t.mem_bytes() as f64 / n as f64;
        drop(t);
        let before = heap();
        let mut s = BTreeSet::new();
        for &k in keys {
            s.insert(k);
        }
        let (sreq, sused) = per_elem(before, heap(), n);
        drop(s);
        println!(
            "memory, {order:9} inserts: BPlusTree {req:5.2} / {used:5.2} (mem_bytes {own:5.2}); BTreeSet {sreq:5.2} / {sused:5.2}"
        );
    }

    println!("ns per operation: BPlusTree / BTreeSet");
    let row = |what: &str, a: f64, b: f64| println!("{what:22} {a:7.1} / {b:7.1}");

    let mut t = BPlusTree::<u64>::new();
    let mut s = BTreeSet::new();
    let a = each(&ascending, |k| sink(t.insert(k, cmp)));
    let b = each(&ascending, |k| sink(s.insert(k)));
    row("insert, ascending", a, b);

    let mut t = BPlusTree::<u64>::new();
    let mut s = BTreeSet::new();
    let a = each(&shuffled, |k| sink(t.insert(k, cmp)));
    let b = each(&shuffled, |k| sink(s.insert(k)));
    row("insert, random", a, b);

    let a = each(&probes, |k| sink(t.get(key(k))));
    let b = each(&probes, |k| sink(s.get(&k)));
    row("get, random", a, b);

    let a = each(&probes, |k| sink(t.at(t.lower_bound(key(k)))));
    let b = each(&probes, |k| sink(s.range(k..).next()));
    row("lower_bound, random", a, b);

    let a = each(&probes, |k| sink(t.nth(k as usize)));
    row("nth, random", a, f64::NAN);

    let a = ns_per(n, || sink(t.iter().fold(0u64, |x, &e| x.wrapping_add(e))));
    let b = ns_per(n, || sink(s.iter().fold(0u64, |x, &e| x.wrapping_add(e))));
    row("iterate, per element", a, b);

    let a = ns_per(n, || {
        let (mut c, mut x) = (t.first(), 0u64);
        while let Some(&e) = t.at(c) {
            x = x.wrapping_add(e);
            c = t.next(c);
        }
        black_box(x);
    });
    row("iterate by cursor", a, f64::NAN);

    let a = each(&probes, |k| sink(t.remove(key(k))));
    let b = each(&probes, |k| sink(s.remove(&k)));
    row("remove, random", a, b);
    assert!(t.is_empty() && s.is_empty());
}
