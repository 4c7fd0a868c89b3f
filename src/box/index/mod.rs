//! TREE and HASH indexes of tuples, and Tarantool's iterator types over them.

pub mod bptree;

use crate::client_error;
use std::cmp::Ordering;

use hashbrown::HashTable;

use self::bptree::{BPlusTree, Cursor};
use super::errcode::ER_UNSUPPORTED_INDEX_FEATURE;
use super::error::ClientError;
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

enum Store {
    Tree(BPlusTree<Tuple>),
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
            IndexType::Tree => Store::Tree(BPlusTree::new()),
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
            Store::Tree(t) => t.len(),
            Store::Hash(h) => h.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bsize(&self) -> usize {
        match &self.store {
            Store::Tree(t) => t.mem_bytes(),
            Store::Hash(h) => h.capacity() * (std::mem::size_of::<Tuple>() + 1),
        }
    }

    /// The tuple whose full key equals `key` (all key parts given).
    pub fn find(&self, key: &[&[u8]]) -> Option<&Tuple> {
        match &self.store {
            Store::Tree(t) => {
                let c = t.lower_bound(|e| self.key_def.compare_with_key(e, key));
                t.at(c)
                    .filter(|e| self.key_def.compare_with_key(e, key) == Ordering::Equal)
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
            Store::Tree(tree) => {
                let c = tree.lower_bound(|e| self.key_def.compare(e, t));
                tree.at(c).filter(|e| self.key_def.compare(e, t) == Ordering::Equal)
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
            Store::Tree(tree) => {
                let cmp = &self.cmp_def;
                tree.insert(t, |a, b| cmp.compare(a, b))
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
            Store::Tree(tree) => {
                let cmp = &self.cmp_def;
                tree.remove(|e| cmp.compare(e, t))
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
            Store::Tree(t) => t.clear(),
            Store::Hash(h) => h.clear(),
        }
    }

    /// Every tuple in index order (hash order for HASH).
    pub fn tuples(&self) -> Box<dyn Iterator<Item = &Tuple> + '_> {
        match &self.store {
            Store::Tree(t) => Box::new(t.iter()),
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
            Store::Tree(t) => t.nth(i).cloned(),
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
            let ok = matches!(iter_type, IterType::All | IterType::Eq | IterType::Gt);
            if !ok {
                return Err(client_error!(
                    ER_UNSUPPORTED_INDEX_FEATURE,
                    index_name,
                    "HASH",
                    space_name,
                    "memtx",
                    "requested iterator type"
                ));
            }
            if key_parts != 0 && key_parts < self.key_def.parts.len() {
                return Err(ClientError::with_message(
                    super::errcode::ER_UNSUPPORTED,
                    format!(
                        "HASH index  does not support selects via a partial key (expected {} parts, got {}). Please Consider changing index type to TREE.",
                        self.key_def.parts.len(),
                        key_parts
                    ),
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
            Store::Tree(t) => {
                let c = self.seek_tree(t, iter_type, key);
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

    fn seek_tree(&self, t: &BPlusTree<Tuple>, iter_type: IterType, key: &[&[u8]]) -> Cursor {
        let kd = &self.cmp_def;
        if key.is_empty() {
            return if iter_type.is_reverse() { t.last() } else { t.first() };
        }
        let by_key = |e: &Tuple| kd.compare_with_key(e, key);
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
            Store::Tree(t) => {
                let reverse = st.iter_type.is_reverse();
                let cursor = match (st.cursor, &st.last) {
                    (Some((v, c)), _) if v == self.version => c,
                    (_, Some(last)) => {
                        // The tree changed: continue after the last tuple returned.
                        let kd = &self.cmp_def;
                        if reverse {
                            t.prev(t.lower_bound(|e| kd.compare(e, last)))
                        } else {
                            t.upper_bound(|e| kd.compare(e, last))
                        }
                    }
                    (_, None) => self.seek_tree(t, st.iter_type, key),
                };
                let item = t.at(cursor).cloned();
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
