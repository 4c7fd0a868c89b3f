//! Random operation sequences on a space with TREE indexes, checked against a plain model:
//! a map from primary key to tuple, searched by sorting and filtering.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::field_type::FieldType;
use super::index::{IndexType, IterType};
use super::key_def::KeyPart;
use super::space::{DupMode, IndexDef, Space, SpaceDef};
use super::tuple::Tuple;

fn space() -> Space {
    let mut s = Space::new(SpaceDef {
        id: 512,
        owner: 1,
        name: "model".into(),
        engine: "memtx".into(),
        field_count: 0,
        temporary: false,
        is_sync: false,
        group_id: 0,
        format: vec![],
    });
    let part = |fieldno| KeyPart {
        fieldno,
        field_type: FieldType::Unsigned,
        is_nullable: false,
    };
    s.add_index(IndexDef {
        space_id: 512,
        id: 0,
        name: "pk".into(),
        index_type: IndexType::Tree,
        unique: true,
        parts: vec![part(0)],
    })
    .unwrap();
    // Non-unique, two parts: partial keys and duplicates are exercised.
    s.add_index(IndexDef {
        space_id: 512,
        id: 1,
        name: "sk".into(),
        index_type: IndexType::Tree,
        unique: false,
        parts: vec![part(1), part(2)],
    })
    .unwrap();
    s
}

fn tuple(a: u64, b: u64, c: u64) -> Tuple {
    let mut buf = Vec::new();
    super::mp::write_array_header(&mut buf, 3);
    for v in [a, b, c] {
        super::mp::write_uint(&mut buf, v);
    }
    Tuple::new(&buf).unwrap()
}

fn fields(t: &Tuple) -> (u64, u64, u64) {
    let f = |i| match super::mp::read(t.field(i).unwrap(), 0).unwrap().0 {
        super::mp::Mp::UInt(v) => v,
        _ => panic!("unsigned expected"),
    };
    (f(0), f(1), f(2))
}

fn enc(v: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    super::mp::write_uint(&mut buf, v);
    buf
}

/// What Tarantool's iterator gives, computed from the model.
fn expected(model: &BTreeMap<u64, (u64, u64, u64)>, index: u32, it: IterType, key: &[u64]) -> Vec<u64> {
    // Sort by the index's order (secondary: (b, c, pk)).
    let mut rows: Vec<(Vec<u64>, u64)> = model
        .values()
        .map(|&(a, b, c)| if index == 0 { (vec![a], a) } else { (vec![b, c, a], a) })
        .collect();
    rows.sort();
    if key.is_empty() {
        let all = rows.iter().map(|r| r.1);
        return if it.is_reverse() {
            all.rev().collect()
        } else {
            all.collect()
        };
    }
    let cmp = |k: &Vec<u64>| k[..key.len()].cmp(key);
    let matching: Vec<u64> = match it {
        IterType::All => rows.iter().map(|r| r.1).collect(),
        IterType::Eq => rows.iter().filter(|r| cmp(&r.0).is_eq()).map(|r| r.1).collect(),
        IterType::Req => rows.iter().rev().filter(|r| cmp(&r.0).is_eq()).map(|r| r.1).collect(),
        IterType::Ge => rows.iter().filter(|r| cmp(&r.0).is_ge()).map(|r| r.1).collect(),
        IterType::Gt => rows.iter().filter(|r| cmp(&r.0).is_gt()).map(|r| r.1).collect(),
        IterType::Le => rows.iter().rev().filter(|r| cmp(&r.0).is_le()).map(|r| r.1).collect(),
        IterType::Lt => rows.iter().rev().filter(|r| cmp(&r.0).is_lt()).map(|r| r.1).collect(),
    };
    matching
}

fn actual(s: &Space, index: u32, it: IterType, key: &[u64]) -> Vec<u64> {
    let (_, ix) = s.index(index).unwrap();
    let encoded: Vec<Vec<u8>> = key.iter().map(|v| enc(*v)).collect();
    let parts: Vec<&[u8]> = encoded.iter().map(|v| v.as_slice()).collect();
    let mut st = ix.start(it, &parts).unwrap();
    let mut out = Vec::new();
    while let Some(t) = ix.next(&mut st, &parts) {
        out.push(fields(&t).0);
    }
    out
}

#[test]
fn random_operations_match_the_model() {
    for seed in 0..20u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut s = space();
        let mut model: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
        for step in 0..1500 {
            let a = rng.random_range(0..200u64);
            let b = rng.random_range(0..8u64);
            let c = rng.random_range(0..4u64);
            match rng.random_range(0..10) {
                0..=3 => {
                    let r = s.replace(Some(&tuple(a, b, c)), DupMode::Insert);
                    assert_eq!(
                        r.is_err(),
                        model.contains_key(&a),
                        "seed {seed} step {step}: insert {a}"
                    );
                    model.entry(a).or_insert((a, b, c));
                }
                4..=5 => {
                    s.replace(Some(&tuple(a, b, c)), DupMode::Replace).unwrap();
                    model.insert(a, (a, b, c));
                }
                6 => {
                    if let Some(old) = s.primary().unwrap().find(&[&enc(a)]).cloned() {
                        s.remove(&old);
                    }
                    model.remove(&a);
                }
                _ => {
                    let its = [
                        IterType::All,
                        IterType::Eq,
                        IterType::Req,
                        IterType::Ge,
                        IterType::Gt,
                        IterType::Le,
                        IterType::Lt,
                    ];
                    let it = its[rng.random_range(0..its.len())];
                    let index = rng.random_range(0..2u32);
                    let key: Vec<u64> = match (it, index, rng.random_range(0..3)) {
                        (IterType::All, _, _) | (_, _, 0) => vec![],
                        (_, 0, _) => vec![a],
                        (_, _, 1) => vec![b],
                        _ => vec![b, c],
                    };
                    let want = expected(&model, index, it, &key);
                    let got = actual(&s, index, it, &key);
                    assert_eq!(got, want, "seed {seed} step {step}: index {index} {it:?} {key:?}");
                }
            }
            assert_eq!(s.len(), model.len());
        }
    }
}
