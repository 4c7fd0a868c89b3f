//! TREE and HASH indexes of tuples, and Tarantool's iterator types over them.

pub mod bptree;

use crate::client_error;
use std::cmp::Ordering;

use hashbrown::HashTable;

use self::bptree::{BPlusTree, Cursor};
use super::errcode::ER_UNSUPPORTED_INDEX_FEATURE;
use super::error::ClientError;
use super::field_type::FieldType;
use super::key_def::KeyDef;
use super::tuple::Tuple;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexType {
    Tree,
    Hash,
}

impl IndexType {
    pub fn parse(s: &str) -> Option<IndexType> {
        match s.to_ascii_lowercase().as_str() {
            "tree" => Some(IndexType::Tree),
            "hash" => Some(IndexType::Hash),
            _ => None,
        }
    }

    /// As `_index` stores it.
    pub fn stored_name(self) -> &'static str {
        match self {
            IndexType::Tree => "tree",
            IndexType::Hash => "hash",
        }
    }

    /// As index objects show it.
    pub fn name(self) -> &'static str {
        match self {
            IndexType::Tree => "TREE",
            IndexType::Hash => "HASH",
        }
    }
}

/// `box.index.EQ` ... with Tarantool's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IterType {
    Eq = 0,
    Req = 1,
    All = 2,
    Lt = 3,
    Le = 4,
    Ge = 5,
    Gt = 6,
}

impl IterType {
    pub fn from_code(code: i64) -> Option<IterType> {
        Some(match code {
            0 => IterType::Eq,
            1 => IterType::Req,
            2 => IterType::All,
            3 => IterType::Lt,
            4 => IterType::Le,
            5 => IterType::Ge,
            6 => IterType::Gt,
            _ => return None,
        })
    }

    pub fn parse(name: &str) -> Option<IterType> {
        Some(match name.to_ascii_uppercase().as_str() {
            "EQ" => IterType::Eq,
            "REQ" => IterType::Req,
            "ALL" => IterType::All,
            "LT" => IterType::Lt,
            "LE" => IterType::Le,
            "GE" => IterType::Ge,
            "GT" => IterType::Gt,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            IterType::Eq => "EQ",
            IterType::Req => "REQ",
            IterType::All => "ALL",
            IterType::Lt => "LT",
            IterType::Le => "LE",
            IterType::Ge => "GE",
            IterType::Gt => "GT",
        }
    }

    pub fn is_reverse(self) -> bool {
        matches!(self, IterType::Req | IterType::Lt | IterType::Le)
    }
}

/// A TREE entry: the tuple and an order-preserving summary of its first key part, so
/// that most comparisons during a descent never touch tuple memory (Tarantool's "hints").
#[derive(Clone)]
struct Entry {
    hint: u64,
    tuple: Tuple,
}

/// How the first key part maps to a hint; `None` for types without a cheap mapping
/// (all hints equal: every comparison is a full one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HintKind {
    None,
    Unsigned,
    Integer,
    String,
}

impl HintKind {
    fn of(kd: &KeyDef) -> HintKind {
        match kd.parts.first().map(|p| p.field_type) {
            Some(FieldType::Unsigned) => HintKind::Unsigned,
            Some(FieldType::Integer) => HintKind::Integer,
            Some(FieldType::String) => HintKind::String,
            _ => HintKind::None,
        }
    }

    /// True if equal hints `h` mean equal values, so no full comparison is needed: integer
    /// kinds map each value to its own hint, except 0 (nil, or no hint) and the saturated
    /// `u64::MAX`, which several values share.
    #[inline]
    fn exact(self, h: u64) -> bool {
        matches!(self, HintKind::Unsigned | HintKind::Integer) && h != 0 && h != u64::MAX
    }

    /// Nil (nullable parts) is 0, below every value; equal hints only mean "compare fully".
    #[inline]
    fn hint(self, raw: Option<&[u8]>) -> u64 {
        let Some(raw) = raw else { return 0 };
        match (self, super::mp::read(raw, 0)) {
            (HintKind::None, _) => 0,
            (HintKind::Unsigned | HintKind::Integer, Ok((super::mp::Mp::UInt(v), _))) => {
                let biased = if self == HintKind::Integer {
                    v.saturating_add(1 << 63)
                } else {
                    v
                };
                biased.saturating_add(1)
            }
            (HintKind::Integer, Ok((super::mp::Mp::Int(v), _))) => ((v as u64) ^ (1 << 63)).saturating_add(1),
            (HintKind::String, Ok((super::mp::Mp::Str(s), _))) => {
                let mut h = 0u64;
                for i in 0..7 {
                    h = (h << 8) | *s.get(i).unwrap_or(&0) as u64;
                }
                (h << 8) | 1
            }
            _ => 0,
        }
    }
}

enum Store {
    Tree(BPlusTree<Entry>, HintKind),
    Hash(HashTable<Tuple>),
}

/// One index of a space. Entries are ordered by `cmp_def` (the key parts, then for a
/// non-unique index the primary key parts), so no two live tuples compare Equal.
pub struct Index {
    pub key_def: KeyDef,
    pub cmp_def: KeyDef,
    pub unique: bool,
    pub index_type: IndexType,
    store: Store,
    /// Bumped on every change; iterators use it to see that their position went stale.
    version: u64,
}

/// Where an iteration stands: enough to continue after the index changed under it.
#[derive(Clone)]
pub struct IterState {
    pub iter_type: IterType,
    pub key: Vec<u8>,
    pub key_parts: u32,
    pub last: Option<Tuple>,
    cursor: Option<(u64, Cursor)>,
    /// HASH iterations walk a copy taken at the start.
    snapshot: Option<std::vec::IntoIter<Tuple>>,
    pub done: bool,
}

impl Index {
    pub fn new(index_type: IndexType, key_def: KeyDef, cmp_def: KeyDef, unique: bool) -> Index {
        let store = match index_type {
            IndexType::Tree => Store::Tree(BPlusTree::new(), HintKind::of(&cmp_def)),
            IndexType::Hash => Store::Hash(HashTable::new()),
        };
        Index {
            key_def,
            cmp_def,
            unique,
            index_type,
            store,
            version: 0,
        }
    }

    pub fn len(&self) -> usize {
        match &self.store {
            Store::Tree(t, _) => t.len(),
            Store::Hash(h) => h.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bsize(&self) -> usize {
        match &self.store {
            Store::Tree(t, _) => t.mem_bytes(),
            Store::Hash(h) => h.capacity() * (std::mem::size_of::<Tuple>() + 1),
        }
    }

    /// The tuple whose full key equals `key` (all key parts given).
    pub fn find(&self, key: &[&[u8]]) -> Option<&Tuple> {
        match &self.store {
            Store::Tree(t, kind) => {
                let probe = key_probe(&self.key_def, *kind, key);
                let c = t.lower_bound(&probe);
                t.at(c).filter(|e| probe(e) == Ordering::Equal).map(|e| &e.tuple)
            }
            Store::Hash(h) => {
                let hash = self.key_def.hash_key(key);
                h.find(hash, |e| self.key_def.compare_with_key(e, key) == Ordering::Equal)
            }
        }
    }

    /// The tuple with the same key as `t` (for uniqueness checks).
    pub fn find_by_tuple(&self, t: &Tuple) -> Option<&Tuple> {
        match &self.store {
            Store::Tree(tree, kind) => {
                let kd = &self.key_def;
                let hint = kind.hint(kd.parts.first().and_then(|p| t.field(p.fieldno)));
                let exact = kd.parts.len() == 1 && kind.exact(hint);
                let probe = |e: &Entry| {
                    e.hint.cmp(&hint).then_with(|| {
                        if exact {
                            Ordering::Equal
                        } else {
                            kd.compare(&e.tuple, t)
                        }
                    })
                };
                let c = tree.lower_bound(probe);
                tree.at(c).filter(|e| probe(e) == Ordering::Equal).map(|e| &e.tuple)
            }
            Store::Hash(h) => {
                let hash = self.key_def.hash_tuple(t);
                h.find(hash, |e| self.key_def.compare(e, t) == Ordering::Equal)
            }
        }
    }

    /// Adds a tuple, replacing (and returning) one that compares Equal in this index's
    /// order; the caller has checked uniqueness.
    pub fn insert(&mut self, t: Tuple) -> Option<Tuple> {
        self.version += 1;
        match &mut self.store {
            Store::Tree(tree, kind) => {
                let cmp = &self.cmp_def;
                let hint = kind.hint(cmp.parts.first().and_then(|p| t.field(p.fieldno)));
                // A replace of an integer primary key never reads the stored tuples.
                let exact = cmp.parts.len() == 1 && kind.exact(hint);
                tree.insert(Entry { hint, tuple: t }, |a, b| {
                    a.hint.cmp(&b.hint).then_with(|| {
                        if exact && a.hint == hint {
                            Ordering::Equal
                        } else {
                            cmp.compare(&a.tuple, &b.tuple)
                        }
                    })
                })
                .map(|e| e.tuple)
            }
            Store::Hash(h) => {
                let kd = &self.key_def;
                let hash = kd.hash_tuple(&t);
                match h.find_entry(hash, |e| kd.compare(e, &t) == Ordering::Equal) {
                    Ok(mut entry) => Some(std::mem::replace(entry.get_mut(), t)),
                    Err(_) => {
                        h.insert_unique(hash, t, |e| kd.hash_tuple(e));
                        None
                    }
                }
            }
        }
    }

    /// Removes exactly this tuple (found by its ordering key).
    pub fn remove(&mut self, t: &Tuple) -> Option<Tuple> {
        self.version += 1;
        match &mut self.store {
            Store::Tree(tree, kind) => {
                let probe = tuple_probe(&self.cmp_def, *kind, t);
                tree.remove(probe).map(|e| e.tuple)
            }
            Store::Hash(h) => {
                let kd = &self.key_def;
                let hash = kd.hash_tuple(t);
                h.find_entry(hash, |e| kd.compare(e, t) == Ordering::Equal)
                    .ok()
                    .map(|entry| entry.remove().0)
            }
        }
    }

    pub fn clear(&mut self) {
        self.version += 1;
        match &mut self.store {
            Store::Tree(t, _) => t.clear(),
            Store::Hash(h) => h.clear(),
        }
    }

    /// Every tuple in index order (hash order for HASH).
    pub fn tuples(&self) -> Box<dyn Iterator<Item = &Tuple> + '_> {
        match &self.store {
            Store::Tree(t, _) => Box::new(t.iter().map(|e| &e.tuple)),
            Store::Hash(h) => Box::new(h.iter()),
        }
    }

    pub fn min(&self, key: &[&[u8]]) -> Option<Tuple> {
        let mut st = self.start(IterType::Ge, key)?;
        self.next(&mut st, key)
    }

    pub fn max(&self, key: &[&[u8]]) -> Option<Tuple> {
        let mut st = self.start(IterType::Le, key)?;
        self.next(&mut st, key)
    }

    pub fn random(&self, rnd: u64) -> Option<Tuple> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        let i = (rnd % n as u64) as usize;
        match &self.store {
            Store::Tree(t, _) => t.nth(i).map(|e| e.tuple.clone()),
            Store::Hash(h) => h.iter().nth(i).cloned(),
        }
    }

    /// Checks that this index supports the iterator type; the error names the index.
    pub fn check_iterator(
        &self,
        iter_type: IterType,
        key_parts: usize,
        index_name: &str,
        space_name: &str,
    ) -> Result<(), ClientError> {
        if self.index_type == IndexType::Hash {
            // Tarantool checks the key before the iterator type: only an empty key may be
            // partial, and only for the iterators that then mean "everything".
            let whole = key_parts == self.key_def.parts.len()
                || (key_parts == 0 && matches!(iter_type, IterType::All | IterType::Eq | IterType::Gt));
            if !whole {
                return Err(client_error!(
                    super::errcode::ER_PARTIAL_KEY,
                    "HASH",
                    self.key_def.parts.len() as u64,
                    key_parts as u64
                ));
            }
            if !matches!(iter_type, IterType::All | IterType::Eq | IterType::Gt) {
                return Err(client_error!(
                    ER_UNSUPPORTED_INDEX_FEATURE,
                    index_name,
                    "HASH",
                    space_name,
                    "memtx",
                    "requested iterator type"
                ));
            }
        }
        Ok(())
    }

    /// Begins an iteration; `key` has been validated against `key_def`.
    pub fn start(&self, iter_type: IterType, key: &[&[u8]]) -> Option<IterState> {
        let mut key_bytes = Vec::new();
        for k in key {
            key_bytes.extend_from_slice(k);
        }
        let mut st = IterState {
            iter_type,
            key: key_bytes,
            key_parts: key.len() as u32,
            last: None,
            cursor: None,
            snapshot: None,
            done: false,
        };
        match &self.store {
            Store::Tree(t, kind) => {
                let c = self.seek_tree(t, *kind, iter_type, key);
                st.cursor = Some((self.version, c));
            }
            Store::Hash(h) => {
                let items: Vec<Tuple> = if key.is_empty() || iter_type == IterType::All {
                    h.iter().cloned().collect()
                } else if iter_type == IterType::Eq {
                    self.find(key).cloned().into_iter().collect()
                } else {
                    // GT: what follows the key's tuple in hash order.
                    let all: Vec<Tuple> = h.iter().cloned().collect();
                    match self.find(key) {
                        Some(found) => {
                            let pos = all.iter().position(|t| t.ptr_eq(found)).map(|p| p + 1).unwrap_or(0);
                            all[pos..].to_vec()
                        }
                        None => all,
                    }
                };
                st.snapshot = Some(items.into_iter());
            }
        }
        Some(st)
    }

    fn seek_tree(&self, t: &BPlusTree<Entry>, kind: HintKind, iter_type: IterType, key: &[&[u8]]) -> Cursor {
        if key.is_empty() {
            return if iter_type.is_reverse() { t.last() } else { t.first() };
        }
        let by_key = key_probe(&self.cmp_def, kind, key);
        let by_key = &by_key;
        match iter_type {
            IterType::Eq | IterType::Ge | IterType::All => t.lower_bound(by_key),
            IterType::Gt => t.upper_bound(by_key),
            IterType::Req | IterType::Le => t.prev(t.upper_bound(by_key)),
            IterType::Lt => t.prev(t.lower_bound(by_key)),
        }
    }

    /// The next tuple of an iteration, continuing correctly if the index changed since.
    pub fn next(&self, st: &mut IterState, key: &[&[u8]]) -> Option<Tuple> {
        if st.done {
            return None;
        }
        let found = match &self.store {
            Store::Tree(t, kind) => {
                let reverse = st.iter_type.is_reverse();
                let cursor = match (st.cursor, &st.last) {
                    (Some((v, c)), _) if v == self.version => c,
                    (_, Some(last)) => {
                        // The tree changed: continue after the last tuple returned.
                        let probe = tuple_probe(&self.cmp_def, *kind, last);
                        if reverse {
                            t.prev(t.lower_bound(probe))
                        } else {
                            t.upper_bound(probe)
                        }
                    }
                    (_, None) => self.seek_tree(t, *kind, st.iter_type, key),
                };
                let item = t.at(cursor).map(|e| e.tuple.clone());
                if let Some(item) = &item {
                    let next = if reverse { t.prev(cursor) } else { t.next(cursor) };
                    st.cursor = Some((self.version, next));
                    let stop = matches!(st.iter_type, IterType::Eq | IterType::Req)
                        && !key.is_empty()
                        && self.cmp_def.compare_with_key(item, key) != Ordering::Equal;
                    if stop {
                        st.done = true;
                        return None;
                    }
                }
                item
            }
            Store::Hash(_) => st.snapshot.as_mut().and_then(|s| s.next()),
        };
        match &found {
            Some(t) => st.last = Some(t.clone()),
            None => st.done = true,
        }
        found
    }
}

/// Orders entries against a (partial) search key: hints first, then the full comparison.
fn key_probe<'k>(kd: &'k KeyDef, kind: HintKind, key: &'k [&'k [u8]]) -> impl Fn(&Entry) -> Ordering + 'k {
    let hint = key.first().map(|k| kind.hint(Some(k)));
    // A one-part key with an exact hint is decided by the hint alone.
    let exact = key.len() == 1 && hint.is_some_and(|h| kind.exact(h));
    move |e: &Entry| match hint {
        Some(h) if e.hint != h => e.hint.cmp(&h),
        Some(_) if exact => Ordering::Equal,
        _ => kd.compare_with_key(&e.tuple, key),
    }
}

/// Orders entries against a tuple in the index's full order.
fn tuple_probe<'t>(kd: &'t KeyDef, kind: HintKind, t: &'t Tuple) -> impl Fn(&Entry) -> Ordering + 't {
    let hint = kind.hint(kd.parts.first().and_then(|p| t.field(p.fieldno)));
    let exact = kd.parts.len() == 1 && kind.exact(hint);
    move |e: &Entry| {
        e.hint.cmp(&hint).then_with(|| {
            if exact {
                Ordering::Equal
            } else {
                kd.compare(&e.tuple, t)
            }
        })
    }
}

/// A key given as stored bytes (the parts back to back), split again for comparisons.
pub fn split_key(bytes: &[u8], parts: u32) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(parts as usize);
    let mut pos = 0;
    for _ in 0..parts {
        let Ok(end) = super::mp::skip(bytes, pos) else { break };
        out.push(&bytes[pos..end]);
        pos = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::box_::field_type::FieldType;
    use crate::box_::key_def::KeyPart;

    fn tuple(a: u64, b: &str) -> Tuple {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &rmpv::Value::Array(vec![a.into(), b.into()])).unwrap();
        Tuple::new(&buf).unwrap()
    }

    fn enc(v: rmpv::Value) -> Vec<u8> {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &v).unwrap();
        buf
    }

    fn pk() -> KeyDef {
        KeyDef::new(vec![KeyPart {
            fieldno: 0,
            field_type: FieldType::Unsigned,
            is_nullable: false,
        }])
    }

    fn collect(ix: &Index, it: IterType, key: &[&[u8]]) -> Vec<u64> {
        let mut st = ix.start(it, key).unwrap();
        let mut out = vec![];
        while let Some(t) = ix.next(&mut st, key) {
            out.push(t.field(0).unwrap()[0] as u64);
        }
        out
    }

    #[test]
    fn tree_iterators_follow_tarantools_semantics() {
        let mut ix = Index::new(IndexType::Tree, pk(), pk(), true);
        for i in [5u64, 1, 3, 7] {
            ix.insert(tuple(i, "x"));
        }
        let k3 = enc(3.into());
        let k = [&k3[..]];
        assert_eq!(collect(&ix, IterType::Eq, &k), vec![3]);
        assert_eq!(collect(&ix, IterType::Ge, &k), vec![3, 5, 7]);
        assert_eq!(collect(&ix, IterType::Gt, &k), vec![5, 7]);
        assert_eq!(collect(&ix, IterType::Le, &k), vec![3, 1]);
        assert_eq!(collect(&ix, IterType::Lt, &k), vec![1]);
        assert_eq!(collect(&ix, IterType::Req, &k), vec![3]);
        assert_eq!(collect(&ix, IterType::All, &[]), vec![1, 3, 5, 7]);
        assert_eq!(collect(&ix, IterType::Le, &[]), vec![7, 5, 3, 1]);
    }

    #[test]
    fn integer_keys_sharing_a_hint_stay_apart() {
        // Hints decide equality alone except where several values share one: the saturated
        // top (2^63 and up for integer, u64::MAX - 1 and up for unsigned).
        for ty in [FieldType::Unsigned, FieldType::Integer] {
            let kd = KeyDef::new(vec![KeyPart {
                fieldno: 0,
                field_type: ty,
                is_nullable: false,
            }]);
            let mut ix = Index::new(IndexType::Tree, kd.clone(), kd, true);
            let mut keys: Vec<rmpv::Value> = [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1, 0, 7]
                .into_iter()
                .map(rmpv::Value::from)
                .collect();
            if ty == FieldType::Integer {
                keys.extend([-1i64, i64::MIN, i64::MIN + 1].map(rmpv::Value::from));
            }
            let row =
                |k: &rmpv::Value, v: &str| Tuple::new(&enc(rmpv::Value::Array(vec![k.clone(), v.into()]))).unwrap();
            for k in &keys {
                assert!(ix.insert(row(k, "a")).is_none(), "{ty:?} {k} is new");
            }
            assert_eq!(ix.len(), keys.len());
            for k in &keys {
                let key = enc(k.clone());
                let found = ix.find(&[&key[..]]).map(|t| t.field(0).unwrap().to_vec());
                assert_eq!(found, Some(key.clone()), "{ty:?} {k} found as itself");
                let old = ix.insert(row(k, "b")).map(|t| t.field(0).unwrap().to_vec());
                assert_eq!(old, Some(key), "{ty:?} {k} replaced in place");
            }
            assert_eq!(ix.len(), keys.len());
        }
    }

    #[test]
    fn iteration_survives_deleting_what_it_returned() {
        let mut ix = Index::new(IndexType::Tree, pk(), pk(), true);
        for i in 0..10u64 {
            ix.insert(tuple(i, "x"));
        }
        let mut st = ix.start(IterType::All, &[]).unwrap();
        let mut seen = vec![];
        while let Some(t) = ix.next(&mut st, &[]) {
            seen.push(t.field(0).unwrap()[0]);
            ix.remove(&t);
        }
        assert_eq!(seen, (0..10).collect::<Vec<u8>>());
        assert!(ix.is_empty());
    }

    #[test]
    fn hash_finds_by_key() {
        let mut ix = Index::new(IndexType::Hash, pk(), pk(), true);
        for i in 0..100u64 {
            ix.insert(tuple(i, "x"));
        }
        let k = enc(42.into());
        assert!(ix.find(&[&k[..]]).is_some());
        let t = tuple(42, "x");
        assert!(ix.remove(&t).is_some());
        assert!(ix.find(&[&k[..]]).is_none());
        assert_eq!(ix.len(), 99);
    }
}
