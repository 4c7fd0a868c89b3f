//! Field types, which MessagePack values each accepts, and Tarantool's order of values:
//! nil < boolean < number < string < varbinary < uuid < other extensions < array < map,
//! numbers compared by value whatever their encoding (1 == 1.0, -1 < 2^64 - 1).

use std::cmp::Ordering;

use super::mp::{self, Mp};

/// MessagePack extension type of Tarantool's uuid (`MP_UUID`).
pub const MP_UUID: i8 = 2;
/// MessagePack extension type of Tarantool's decimal (`MP_DECIMAL`).
pub const MP_DECIMAL: i8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    Any,
    Unsigned,
    String,
    Number,
    Double,
    Integer,
    Boolean,
    Varbinary,
    Scalar,
    Decimal,
    Uuid,
    Array,
    Map,
}

impl FieldType {
    /// Parses a type name as `format` and index `parts` accept it (with the legacy aliases).
    pub fn parse(name: &str) -> Option<FieldType> {
        Some(match name.to_ascii_lowercase().as_str() {
            "any" => FieldType::Any,
            "unsigned" | "uint" | "num" => FieldType::Unsigned,
            "string" | "str" => FieldType::String,
            "number" => FieldType::Number,
            "double" => FieldType::Double,
            "integer" | "int" => FieldType::Integer,
            "boolean" | "bool" => FieldType::Boolean,
            "varbinary" => FieldType::Varbinary,
            "scalar" => FieldType::Scalar,
            "decimal" => FieldType::Decimal,
            "uuid" => FieldType::Uuid,
            "array" => FieldType::Array,
            "map" => FieldType::Map,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FieldType::Any => "any",
            FieldType::Unsigned => "unsigned",
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Double => "double",
            FieldType::Integer => "integer",
            FieldType::Boolean => "boolean",
            FieldType::Varbinary => "varbinary",
            FieldType::Scalar => "scalar",
            FieldType::Decimal => "decimal",
            FieldType::Uuid => "uuid",
            FieldType::Array => "array",
            FieldType::Map => "map",
        }
    }

    /// Whether an index may be built on this type (arrays, maps and `any` can't be keys).
    pub fn is_indexable(self) -> bool {
        !matches!(self, FieldType::Any | FieldType::Array | FieldType::Map)
    }

    /// Whether the encoded value `raw` is of this type (nil is handled by nullability).
    pub fn accepts(self, raw: &[u8]) -> bool {
        let Ok((v, _)) = mp::read(raw, 0) else {
            return false;
        };
        match self {
            FieldType::Any => true,
            FieldType::Unsigned => matches!(v, Mp::UInt(_)),
            FieldType::Integer => matches!(v, Mp::UInt(_) | Mp::Int(_)),
            FieldType::Number => {
                matches!(
                    v,
                    Mp::UInt(_) | Mp::Int(_) | Mp::F32(_) | Mp::F64(_) | Mp::Ext(MP_DECIMAL, _)
                )
            }
            FieldType::Double => matches!(v, Mp::F32(_) | Mp::F64(_)),
            FieldType::String => matches!(v, Mp::Str(_)),
            FieldType::Boolean => matches!(v, Mp::Bool(_)),
            FieldType::Varbinary => matches!(v, Mp::Bin(_)),
            FieldType::Decimal => matches!(v, Mp::Ext(MP_DECIMAL, _)),
            FieldType::Uuid => matches!(v, Mp::Ext(MP_UUID, b) if b.len() == 16),
            FieldType::Scalar => !matches!(v, Mp::Array(_) | Mp::Map(_) | Mp::Nil),
            FieldType::Array => matches!(v, Mp::Array(_)),
            FieldType::Map => matches!(v, Mp::Map(_)),
        }
    }
}

pub fn is_nil(raw: &[u8]) -> bool {
    raw.first() == Some(&0xc0)
}

/// The rank of a value's class in Tarantool's cross-type order.
fn class(v: &Mp) -> u8 {
    match v {
        Mp::Nil => 0,
        Mp::Bool(_) => 1,
        Mp::UInt(_) | Mp::Int(_) | Mp::F32(_) | Mp::F64(_) | Mp::Ext(MP_DECIMAL, _) => 2,
        Mp::Str(_) => 3,
        Mp::Bin(_) => 4,
        Mp::Ext(MP_UUID, _) => 5,
        Mp::Ext(..) => 6,
        Mp::Array(_) => 7,
        Mp::Map(_) => 8,
    }
}

/// A number as compared: integers exactly, floats as doubles.
#[derive(Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

fn as_num(v: &Mp) -> Num {
    match *v {
        Mp::UInt(u) => Num::Int(u as i128),
        Mp::Int(i) => Num::Int(i as i128),
        Mp::F32(f) => Num::Float(f as f64),
        Mp::F64(f) => Num::Float(f),
        // Decimals are not decoded; they sort as zero among numbers.
        _ => Num::Float(0.0),
    }
}

fn compare_int_float(i: i128, f: f64) -> Ordering {
    if f.is_nan() {
        // NaN sorts below every number, as in Tarantool's mp_compare_double.
        return Ordering::Greater;
    }
    let t = f.trunc();
    if t >= 1.8e19 {
        return Ordering::Less;
    }
    if t <= -1.0e19 {
        return Ordering::Greater;
    }
    match i.cmp(&(t as i128)) {
        Ordering::Equal => 0.0f64.partial_cmp(&(f - t)).unwrap_or(Ordering::Equal),
        other => other,
    }
}

fn compare_nums(a: Num, b: Num) -> Ordering {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Int(x), Num::Float(y)) => compare_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => compare_int_float(y, x).reverse(),
        (Num::Float(x), Num::Float(y)) => match (x.is_nan(), y.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        },
    }
}

/// An unsigned integer or a string read without the general decoder: the keys of most
/// indexes, compared millions of times a second.
#[inline]
fn fast_scalar(v: &[u8]) -> Option<Fast<'_>> {
    let b = *v.first()?;
    let be = |n: usize| -> Option<u64> { Some(v.get(1..1 + n)?.iter().fold(0u64, |acc, x| (acc << 8) | *x as u64)) };
    let str_at = |hdr: usize, len: u64| -> Option<Fast<'_>> {
        let len = usize::try_from(len).ok()?;
        Some(Fast::Str(v.get(hdr..hdr + len)?))
    };
    match b {
        0x00..=0x7f => Some(Fast::UInt(b as u64)),
        0xcc => be(1).map(Fast::UInt),
        0xcd => be(2).map(Fast::UInt),
        0xce => be(4).map(Fast::UInt),
        0xcf => be(8).map(Fast::UInt),
        0xa0..=0xbf => str_at(1, (b & 0x1f) as u64),
        0xd9 => str_at(2, be(1)?),
        0xda => str_at(3, be(2)?),
        0xdb => str_at(5, be(4)?),
        _ => None,
    }
}

enum Fast<'a> {
    UInt(u64),
    Str(&'a [u8]),
}

/// Compares two encoded scalar values in Tarantool's order. Containers compare by class
/// only: they cannot be index keys.
#[inline]
pub fn compare_values(a: &[u8], b: &[u8]) -> Ordering {
    match (fast_scalar(a), fast_scalar(b)) {
        (Some(Fast::UInt(x)), Some(Fast::UInt(y))) => return x.cmp(&y),
        (Some(Fast::Str(x)), Some(Fast::Str(y))) => return x.cmp(y),
        _ => {}
    }
    let (va, vb) = match (mp::read(a, 0), mp::read(b, 0)) {
        (Ok((va, _)), Ok((vb, _))) => (va, vb),
        (Err(_), Err(_)) => return Ordering::Equal,
        (Err(_), Ok(_)) => return Ordering::Less,
        (Ok(_), Err(_)) => return Ordering::Greater,
    };
    compare_decoded(&va, &vb)
}

pub fn compare_decoded(va: &Mp, vb: &Mp) -> Ordering {
    let (ca, cb) = (class(va), class(vb));
    if ca != cb {
        return ca.cmp(&cb);
    }
    match (va, vb) {
        (Mp::Bool(x), Mp::Bool(y)) => x.cmp(y),
        (Mp::UInt(x), Mp::UInt(y)) => x.cmp(y),
        (Mp::Str(x), Mp::Str(y)) | (Mp::Bin(x), Mp::Bin(y)) => x.cmp(y),
        (Mp::Ext(_, x), Mp::Ext(_, y)) if ca == 5 => x.cmp(y),
        _ if ca == 2 => compare_nums(as_num(va), as_num(vb)),
        _ => Ordering::Equal,
    }
}

/// Feeds a value into a hasher so that values that compare Equal hash alike (1 and 1.0).
pub fn hash_value(raw: &[u8], h: &mut impl std::hash::Hasher) {
    let Ok((v, _)) = mp::read(raw, 0) else {
        h.write_u8(0xff);
        return;
    };
    match v {
        Mp::UInt(u) => h.write_i128(u as i128),
        Mp::Int(i) => h.write_i128(i as i128),
        Mp::F32(_) | Mp::F64(_) => {
            let f = match v {
                Mp::F32(f) => f as f64,
                Mp::F64(f) => f,
                _ => 0.0,
            };
            if f.fract() == 0.0 && f.abs() < 1.8e19 {
                h.write_i128(f as i128);
            } else {
                h.write_u64(f.to_bits());
            }
        }
        Mp::Str(s) => {
            h.write_u8(3);
            h.write(s);
        }
        Mp::Bin(s) => {
            h.write_u8(4);
            h.write(s);
        }
        Mp::Ext(t, s) => {
            h.write_i8(t);
            h.write(s);
        }
        Mp::Bool(b) => h.write_u8(b as u8 + 10),
        Mp::Nil => h.write_u8(12),
        Mp::Array(_) | Mp::Map(_) => h.write(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: rmpv::Value) -> Vec<u8> {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &v).unwrap();
        buf
    }

    #[test]
    fn numbers_compare_by_value_across_encodings() {
        use rmpv::Value as V;
        let one = enc(V::from(1));
        let one_f = enc(V::F64(1.0));
        assert_eq!(compare_values(&one, &one_f), Ordering::Equal);
        assert_eq!(
            compare_values(&enc(V::from(-1)), &enc(V::from(u64::MAX))),
            Ordering::Less
        );
        assert_eq!(
            compare_values(&enc(V::from(u64::MAX)), &enc(V::F64(1e30))),
            Ordering::Less
        );
        assert_eq!(compare_values(&enc(V::from(2)), &enc(V::F64(1.5))), Ordering::Greater);
        assert_eq!(compare_values(&enc(V::from(1)), &enc(V::F64(1.5))), Ordering::Less);
    }

    #[test]
    fn classes_order_nil_bool_number_string_binary() {
        use rmpv::Value as V;
        let seq = [
            enc(V::Nil),
            enc(V::Boolean(true)),
            enc(V::from(100)),
            enc(V::from("a")),
            enc(V::Binary(vec![0])),
        ];
        for w in seq.windows(2) {
            assert_eq!(compare_values(&w[0], &w[1]), Ordering::Less);
        }
    }

    #[test]
    fn types_accept_their_encodings() {
        use rmpv::Value as V;
        assert!(FieldType::Unsigned.accepts(&enc(V::from(5))));
        assert!(!FieldType::Unsigned.accepts(&enc(V::from(-5))));
        assert!(FieldType::Integer.accepts(&enc(V::from(-5))));
        assert!(!FieldType::Integer.accepts(&enc(V::F64(1.5))));
        assert!(FieldType::Number.accepts(&enc(V::F64(1.5))));
        assert!(FieldType::Scalar.accepts(&enc(V::from("x"))));
        assert!(!FieldType::Scalar.accepts(&enc(V::Array(vec![]))));
        assert_eq!(FieldType::parse("STR"), Some(FieldType::String));
    }
}
