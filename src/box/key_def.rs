//! `KeyDef`: which fields of a tuple make an index key and how keys compare.

use crate::client_error;
use std::cmp::Ordering;
use std::hash::Hasher;

use super::errcode::{ER_EXACT_MATCH, ER_KEY_PART_COUNT, ER_KEY_PART_TYPE, ER_TUPLE_NOT_ARRAY};
use super::error::ClientError;
use super::field_type::{self, FieldType};
use super::mp;
use super::tuple::Tuple;

const NIL: &[u8] = &[0xc0];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPart {
    /// 0-based field number.
    pub fieldno: u32,
    pub field_type: FieldType,
    pub is_nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDef {
    pub parts: Vec<KeyPart>,
}

/// A search key split into its encoded parts.
pub type KeyParts<'a> = Vec<&'a [u8]>;

impl KeyDef {
    pub fn new(parts: Vec<KeyPart>) -> KeyDef {
        KeyDef { parts }
    }

    pub fn part_count(&self) -> u32 {
        self.parts.len() as u32
    }

    /// This key definition extended with the parts of `pk` it does not already have: the
    /// order a non-unique index keeps its tuples in, so that every entry is distinct.
    pub fn merge(&self, pk: &KeyDef) -> KeyDef {
        let mut parts = self.parts.clone();
        for p in &pk.parts {
            if !parts.iter().any(|q| q.fieldno == p.fieldno) {
                parts.push(*p);
            }
        }
        KeyDef { parts }
    }

    #[inline]
    fn field(t: &Tuple, fieldno: u32) -> &[u8] {
        t.field_from(fieldno).unwrap_or(NIL)
    }

    pub fn compare(&self, a: &Tuple, b: &Tuple) -> Ordering {
        for p in &self.parts {
            let ord = field_type::compare_values(Self::field(a, p.fieldno), Self::field(b, p.fieldno));
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }

    /// Orders a tuple against a (possibly partial) key: only the key's parts count.
    pub fn compare_with_key(&self, t: &Tuple, key: &[&[u8]]) -> Ordering {
        for (p, k) in self.parts.iter().zip(key) {
            let ord = field_type::compare_values(Self::field(t, p.fieldno), k);
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }

    /// Splits an encoded key (a MessagePack array) into parts and checks them against this
    /// definition: at most `part_count` parts (exactly that many when `exact`), each of its
    /// part's type (nil allowed for nullable parts).
    pub fn validate_key<'k>(&self, key: &'k [u8], exact: bool) -> Result<KeyParts<'k>, ClientError> {
        let (n, mut pos) = mp::read_array(key, 0).ok_or_else(|| client_error!(ER_TUPLE_NOT_ARRAY))?;
        let count = self.part_count();
        if exact && n != count {
            return Err(client_error!(ER_EXACT_MATCH, count, n));
        }
        if n > count {
            return Err(client_error!(ER_KEY_PART_COUNT, count, n));
        }
        let mut parts = Vec::with_capacity(n as usize);
        for (i, p) in self.parts.iter().take(n as usize).enumerate() {
            let end = mp::skip(key, pos).map_err(|_| client_error!(super::errcode::ER_INVALID_MSGPACK, "key"))?;
            let raw = &key[pos..end];
            let nil_ok = p.is_nullable && field_type::is_nil(raw);
            if !nil_ok && !p.field_type.accepts(raw) {
                return Err(client_error!(ER_KEY_PART_TYPE, i as u32, p.field_type.name()));
            }
            parts.push(raw);
            pos = end;
        }
        Ok(parts)
    }

    /// The key of a tuple under this definition, as an encoded array.
    pub fn extract_key(&self, t: &Tuple) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        mp::write_array_header(&mut out, self.part_count());
        for p in &self.parts {
            out.extend_from_slice(t.field(p.fieldno).unwrap_or(NIL));
        }
        out
    }

    pub fn hash_tuple(&self, t: &Tuple) -> u64 {
        let mut h = KeyHasher::default();
        for p in &self.parts {
            field_type::hash_value(Self::field(t, p.fieldno), &mut h);
        }
        h.finish()
    }

    pub fn hash_key(&self, key: &[&[u8]]) -> u64 {
        let mut h = KeyHasher::default();
        for k in key {
            field_type::hash_value(k, &mut h);
        }
        h.finish()
    }

    /// Whether any part of this definition reads field `fieldno`.
    pub fn covers_field(&self, fieldno: u32) -> bool {
        self.parts.iter().any(|p| p.fieldno == fieldno)
    }
}

/// FNV-1a then a final mix: keys are short, and a seeded SipHash would cost more than the
/// comparison it saves.
pub struct KeyHasher(u64);

impl Default for KeyHasher {
    fn default() -> Self {
        KeyHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(v: Vec<rmpv::Value>) -> Tuple {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &rmpv::Value::Array(v)).unwrap();
        Tuple::new(&buf).unwrap()
    }

    fn key(v: Vec<rmpv::Value>) -> Vec<u8> {
        tuple(v).data().to_vec()
    }

    fn part(fieldno: u32, field_type: FieldType) -> KeyPart {
        KeyPart {
            fieldno,
            field_type,
            is_nullable: false,
        }
    }

    #[test]
    fn multi_part_keys_compare_part_by_part_and_partial_keys_match_prefixes() {
        let kd = KeyDef::new(vec![part(1, FieldType::String), part(0, FieldType::Unsigned)]);
        let a = tuple(vec![2.into(), "a".into()]);
        let b = tuple(vec![1.into(), "b".into()]);
        let c = tuple(vec![1.into(), "a".into()]);
        assert_eq!(kd.compare(&a, &b), Ordering::Less);
        assert_eq!(kd.compare(&c, &a), Ordering::Less);
        let k = key(vec!["a".into()]);
        let parts = kd.validate_key(&k, false).unwrap();
        assert_eq!(kd.compare_with_key(&a, &parts), Ordering::Equal);
        assert_eq!(kd.compare_with_key(&b, &parts), Ordering::Greater);
    }

    #[test]
    fn key_validation_gives_tarantools_texts() {
        let kd = KeyDef::new(vec![part(0, FieldType::Unsigned)]);
        let e = kd.validate_key(&key(vec!["x".into()]), false).unwrap_err();
        assert_eq!(
            e.message,
            "Supplied key type of part 0 does not match index part type: expected unsigned"
        );
        let e = kd.validate_key(&key(vec![1.into(), 2.into()]), false).unwrap_err();
        assert_eq!(e.message, "Invalid key part count (expected [0..1], got 2)");
        let e = kd.validate_key(&key(vec![]), true).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid key part count in an exact match (expected 1, got 0)"
        );
    }

    #[test]
    fn equal_numbers_hash_alike() {
        let kd = KeyDef::new(vec![part(0, FieldType::Number)]);
        let a = tuple(vec![1.into()]);
        let b = tuple(vec![rmpv::Value::F64(1.0)]);
        assert_eq!(kd.hash_tuple(&a), kd.hash_tuple(&b));
        let k = key(vec![1.into()]);
        assert_eq!(kd.hash_key(&kd.validate_key(&k, true).unwrap()), kd.hash_tuple(&b));
    }
}
