//! A space: its definition (as stored in `_space`/`_index`), its indexes, and the one
//! primitive every write goes through, `replace` (Tarantool's `space->replace`).

use std::collections::HashMap;

use rmpv::Value;

use super::errcode::*;
use super::error::ClientError;
use super::field_type::{self, FieldType};
use super::index::{Index, IndexType};
use super::key_def::{KeyDef, KeyPart};
use super::tuple::Tuple;
use crate::client_error;

#[derive(Debug, Clone, PartialEq)]
pub struct FieldDef {
    pub name: String,
    pub field_type: FieldType,
    pub is_nullable: bool,
}

/// A `_space` row: `[id, owner, name, engine, field_count, flags, format]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpaceDef {
    pub id: u32,
    pub owner: u32,
    pub name: String,
    pub engine: String,
    pub field_count: u32,
    pub temporary: bool,
    pub is_sync: bool,
    /// 1 for `is_local` spaces: their rows are not replicated.
    pub group_id: u32,
    pub format: Vec<FieldDef>,
}

/// An `_index` row: `[space_id, id, name, type, opts, parts]`.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexDef {
    pub space_id: u32,
    pub id: u32,
    pub name: String,
    pub index_type: IndexType,
    pub unique: bool,
    pub parts: Vec<KeyPart>,
}

fn decode(t: &Tuple) -> Result<Vec<Value>, ClientError> {
    match rmpv::decode::read_value(&mut t.data()) {
        Ok(Value::Array(items)) => Ok(items),
        _ => Err(client_error!(ER_TUPLE_NOT_ARRAY)),
    }
}

fn map_get<'a>(m: &'a Value, key: &str) -> Option<&'a Value> {
    m.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

fn field_u32(items: &[Value], i: usize, what: &str) -> Result<u32, ClientError> {
    items
        .get(i)
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| client_error!(ER_FIELD_TYPE, (i + 1).to_string(), what))
}

fn field_str(items: &[Value], i: usize) -> Result<String, ClientError> {
    items
        .get(i)
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| client_error!(ER_FIELD_TYPE, (i + 1).to_string(), "string"))
}

impl SpaceDef {
    pub fn from_tuple(t: &Tuple) -> Result<SpaceDef, ClientError> {
        let items = decode(t)?;
        let id = field_u32(&items, 0, "unsigned")?;
        let owner = field_u32(&items, 1, "unsigned")?;
        let name = field_str(&items, 2)?;
        let space_name = name.clone();
        let engine = field_str(&items, 3)?;
        let field_count = field_u32(&items, 4, "unsigned")?;
        let flags = items.get(5).cloned().unwrap_or(Value::Map(vec![]));
        let flag = |k: &str| map_get(&flags, k).and_then(|v| v.as_bool()).unwrap_or(false);
        let mut format = Vec::new();
        if let Some(Value::Array(fields)) = items.get(6) {
            for (i, f) in fields.iter().enumerate() {
                let name = map_get(f, "name")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| client_error!(ER_WRONG_SPACE_FORMAT, (i + 1) as u32, "field name is missing"))?;
                let ty = map_get(f, "type").and_then(|v| v.as_str()).unwrap_or("any");
                let field_type = FieldType::parse(ty).ok_or_else(|| {
                    client_error!(
                        ER_CREATE_SPACE,
                        &space_name,
                        format!("field {} has unknown field type", i + 1)
                    )
                })?;
                let is_nullable = map_get(f, "is_nullable").and_then(|v| v.as_bool()).unwrap_or(false);
                format.push(FieldDef {
                    name,
                    field_type,
                    is_nullable,
                });
            }
        }
        Ok(SpaceDef {
            id,
            owner,
            name,
            engine,
            field_count,
            temporary: flag("temporary"),
            is_sync: flag("is_sync"),
            group_id: map_get(&flags, "group_id").and_then(|v| v.as_u64()).unwrap_or(0) as u32,
            format,
        })
    }
}

impl IndexDef {
    pub fn from_tuple(t: &Tuple, space_name: &str) -> Result<IndexDef, ClientError> {
        let items = decode(t)?;
        let space_id = field_u32(&items, 0, "unsigned")?;
        let id = field_u32(&items, 1, "unsigned")?;
        let name = field_str(&items, 2)?;
        let ty = field_str(&items, 3)?;
        let index_type = IndexType::parse(&ty).ok_or_else(|| client_error!(ER_INDEX_TYPE, &name, space_name))?;
        let opts = items.get(4).cloned().unwrap_or(Value::Map(vec![]));
        let unique = map_get(&opts, "unique").and_then(|v| v.as_bool()).unwrap_or(true);
        let mut parts = Vec::new();
        let wrong = |why: &str| client_error!(ER_WRONG_INDEX_PARTS, why);
        let Some(Value::Array(raw_parts)) = items.get(5) else {
            return Err(wrong("expected an array"));
        };
        for p in raw_parts {
            let (fieldno, ty, is_nullable) = match p {
                Value::Array(a) => (
                    a.first().and_then(|v| v.as_u64()),
                    a.get(1).and_then(|v| v.as_str()),
                    false,
                ),
                Value::Map(_) => (
                    map_get(p, "field").and_then(|v| v.as_u64()),
                    map_get(p, "type").and_then(|v| v.as_str()),
                    map_get(p, "is_nullable").and_then(|v| v.as_bool()).unwrap_or(false),
                ),
                _ => (None, None, false),
            };
            let fieldno = fieldno
                .and_then(|f| u32::try_from(f).ok())
                .ok_or_else(|| wrong("field was not found"))?;
            let field_type = ty
                .and_then(FieldType::parse)
                .ok_or_else(|| wrong("unknown field type"))?;
            parts.push(KeyPart {
                fieldno,
                field_type,
                is_nullable,
            });
        }
        Ok(IndexDef {
            space_id,
            id,
            name,
            index_type,
            unique,
            parts,
        })
    }
}

/// What a write does when a tuple with the same primary key exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DupMode {
    /// `insert`: a duplicate is an error.
    Insert,
    /// `replace`: the old tuple goes.
    Replace,
}

/// One field's requirement, merged from the format and every index part on it.
#[derive(Debug, Clone, Copy)]
struct FieldCheck {
    fieldno: u32,
    field_type: FieldType,
    is_nullable: bool,
}

pub struct Space {
    pub def: SpaceDef,
    /// Indexes by id (ids may have gaps).
    pub indexes: Vec<Option<(IndexDef, Index)>>,
    pub field_names: HashMap<String, u32>,
    checks: Vec<FieldCheck>,
}

impl Space {
    pub fn new(def: SpaceDef) -> Space {
        let mut space = Space {
            def,
            indexes: Vec::new(),
            field_names: HashMap::new(),
            checks: Vec::new(),
        };
        space.refresh_checks();
        space
    }

    /// Takes a new definition (an `_space` update) keeping the data and indexes.
    pub fn set_def(&mut self, def: SpaceDef) {
        self.def = def;
        self.refresh_checks();
    }

    fn refresh_checks(&mut self) {
        self.field_names = self
            .def
            .format
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i as u32))
            .collect();
        let mut checks: Vec<FieldCheck> = self
            .def
            .format
            .iter()
            .enumerate()
            .map(|(i, f)| FieldCheck {
                fieldno: i as u32,
                field_type: f.field_type,
                is_nullable: f.is_nullable,
            })
            .collect();
        for (_, ix) in self.indexes.iter().flatten() {
            for p in &ix.key_def.parts {
                match checks.iter_mut().find(|c| c.fieldno == p.fieldno) {
                    Some(c) => {
                        if c.field_type == FieldType::Any
                            || (c.field_type == FieldType::Scalar && p.field_type != FieldType::Any)
                        {
                            c.field_type = p.field_type;
                        }
                        c.is_nullable &= p.is_nullable;
                    }
                    None => checks.push(FieldCheck {
                        fieldno: p.fieldno,
                        field_type: p.field_type,
                        is_nullable: p.is_nullable,
                    }),
                }
            }
        }
        checks.sort_by_key(|c| c.fieldno);
        self.checks = checks;
    }

    pub fn id(&self) -> u32 {
        self.def.id
    }

    pub fn name(&self) -> &str {
        &self.def.name
    }

    pub fn primary(&self) -> Option<&Index> {
        self.indexes.first().and_then(|i| i.as_ref()).map(|(_, ix)| ix)
    }

    pub fn index(&self, id: u32) -> Option<&(IndexDef, Index)> {
        self.indexes.get(id as usize).and_then(|i| i.as_ref())
    }

    /// The index `id`, or Tarantool's `No index #N is defined in space '...'`.
    pub fn find_index(&self, id: u32) -> Result<&(IndexDef, Index), ClientError> {
        self.index(id)
            .ok_or_else(|| client_error!(ER_NO_SUCH_INDEX_ID, id, self.name()))
    }

    pub fn index_by_name(&self, name: &str) -> Option<&(IndexDef, Index)> {
        self.indexes.iter().flatten().find(|(d, _)| d.name == name)
    }

    pub fn len(&self) -> usize {
        self.primary().map(|p| p.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bsize(&self) -> usize {
        self.primary().map(|p| p.tuples().map(|t| t.bsize()).sum()).unwrap_or(0)
    }

    /// The key definition of a new index on this space: its parts, and the order it keeps
    /// (extended by the primary key for non-unique indexes).
    pub fn make_index(&self, def: &IndexDef) -> Result<Index, ClientError> {
        let key_def = KeyDef::new(def.parts.clone());
        let cmp_def = match (def.id, self.primary()) {
            (0, _) => key_def.clone(),
            (_, Some(pk)) if !def.unique || def.parts.iter().any(|p| p.is_nullable) => key_def.merge(&pk.key_def),
            _ => key_def.clone(),
        };
        Ok(Index::new(def.index_type, key_def, cmp_def, def.unique))
    }

    /// Adds an index (built from the primary key's tuples), checking what Tarantool checks.
    pub fn add_index(&mut self, def: IndexDef) -> Result<(), ClientError> {
        let space = self.def.name.clone();
        let modify = |why: &str| client_error!(ER_MODIFY_INDEX, &def.name, &space, why);
        if def.index_type == IndexType::Hash && !def.unique {
            return Err(modify("HASH index must be unique"));
        }
        if def.index_type == IndexType::Hash && def.parts.iter().any(|p| p.is_nullable) {
            return Err(ClientError::with_message(
                ER_UNSUPPORTED,
                "HASH does not support nullable parts",
            ));
        }
        if def.id == 0 && def.parts.iter().any(|p| p.is_nullable) {
            return Err(client_error!(ER_NULLABLE_PRIMARY, &space));
        }
        if def.id == 0 && !def.unique {
            return Err(modify("primary key must be unique"));
        }
        for p in &def.parts {
            if !p.field_type.is_indexable() {
                return Err(modify(&format!(
                    "field type '{}' is not supported",
                    p.field_type.name()
                )));
            }
        }
        if def.id != 0 && self.primary().is_none() {
            return Err(client_error!(
                ER_ALTER_SPACE,
                &space,
                "can not add a secondary key before primary"
            ));
        }
        let mut index = self.make_index(&def)?;
        if let Some(pk) = self.primary() {
            for t in pk.tuples() {
                self.check_tuple_against(t, &def)?;
                if def.unique && !has_nil_key(&index.key_def, t) && index.find_by_tuple(t).is_some() {
                    return Err(client_error!(ER_TUPLE_FOUND, &def.name, &space));
                }
                index.insert(t.clone());
            }
        }
        let slot = def.id as usize;
        if self.indexes.len() <= slot {
            self.indexes.resize_with(slot + 1, || None);
        }
        self.indexes[slot] = Some((def, index));
        self.refresh_checks();
        Ok(())
    }

    pub fn drop_index(&mut self, id: u32) -> Option<(IndexDef, Index)> {
        let taken = self.indexes.get_mut(id as usize).and_then(|slot| slot.take());
        while matches!(self.indexes.last(), Some(None)) {
            self.indexes.pop();
        }
        self.refresh_checks();
        taken
    }

    fn check_tuple_against(&self, t: &Tuple, def: &IndexDef) -> Result<(), ClientError> {
        for p in &def.parts {
            match t.field(p.fieldno) {
                None if p.is_nullable => {}
                None => return Err(client_error!(ER_FIELD_MISSING, (p.fieldno + 1).to_string())),
                Some(raw) if p.is_nullable && field_type::is_nil(raw) => {}
                Some(raw) if !p.field_type.accepts(raw) => {
                    return Err(client_error!(
                        ER_FIELD_TYPE,
                        (p.fieldno + 1).to_string(),
                        p.field_type.name()
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Checks a tuple against the format and every index's field types.
    pub fn validate(&self, t: &Tuple) -> Result<(), ClientError> {
        if self.def.field_count > 0 && t.len() != self.def.field_count {
            return Err(client_error!(ER_EXACT_FIELD_COUNT, t.len(), self.def.field_count));
        }
        if self.checks.is_empty() {
            return Ok(());
        }
        let mut fields = t.fields().enumerate().peekable();
        for c in &self.checks {
            let raw = loop {
                match fields.peek() {
                    Some((i, _)) if (*i as u32) < c.fieldno => {
                        fields.next();
                    }
                    Some((i, raw)) if *i as u32 == c.fieldno => break Some(*raw),
                    _ => break None,
                }
            };
            match raw {
                None if c.is_nullable => {}
                None => return Err(client_error!(ER_FIELD_MISSING, (c.fieldno + 1).to_string())),
                Some(raw) if c.is_nullable && field_type::is_nil(raw) => {}
                Some(raw) if !c.field_type.accepts(raw) => {
                    return Err(client_error!(
                        ER_FIELD_TYPE,
                        (c.fieldno + 1).to_string(),
                        c.field_type.name()
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Replaces `old` (found by the caller in the primary key, or None) with `new` in every
    /// index, or fails without changing anything. Returns the tuple that left the space.
    pub fn replace(&mut self, new: Option<&Tuple>, mode: DupMode) -> Result<Option<Tuple>, ClientError> {
        let Some(new) = new else { return Ok(None) };
        if self.indexes.len() == 1 {
            // Only a primary key: one descent replaces and tells what was there.
            let Some((def, pk)) = self.indexes[0].as_mut() else {
                return Err(client_error!(ER_NO_SUCH_INDEX_ID, 0u32, &self.def.name));
            };
            let old = pk.insert(new.clone());
            if let (Some(o), DupMode::Insert) = (&old, mode) {
                pk.insert(o.clone());
                return Err(client_error!(ER_TUPLE_FOUND, &def.name, &self.def.name));
            }
            return Ok(old);
        }
        let pk = self
            .primary()
            .ok_or_else(|| client_error!(ER_NO_SUCH_INDEX_ID, 0u32, &self.def.name))?;
        let old = pk.find_by_tuple(new).cloned();
        if old.is_some() && mode == DupMode::Insert {
            let name = &self.indexes[0]
                .as_ref()
                .map(|(d, _)| d.name.clone())
                .unwrap_or_default();
            return Err(client_error!(ER_TUPLE_FOUND, name, &self.def.name));
        }
        for (def, ix) in self.indexes.iter().flatten().skip(1) {
            if !ix.unique || has_nil_key(&ix.key_def, new) {
                continue;
            }
            if let Some(dup) = ix.find_by_tuple(new) {
                if old.as_ref().is_none_or(|o| !o.ptr_eq(dup)) {
                    return Err(client_error!(ER_TUPLE_FOUND, &def.name, &self.def.name));
                }
            }
        }
        for (i, (_, ix)) in self.indexes.iter_mut().flatten().enumerate() {
            // The primary key replaces the old tuple in place; others may file it elsewhere.
            if let (Some(o), true) = (&old, i > 0) {
                ix.remove(o);
            }
            ix.insert(new.clone());
        }
        Ok(old)
    }

    /// Removes exactly this tuple from every index.
    pub fn remove(&mut self, t: &Tuple) {
        for (_, ix) in self.indexes.iter_mut().flatten() {
            ix.remove(t);
        }
    }

    /// Puts a tuple back in every index (undo of a remove).
    pub fn restore(&mut self, t: &Tuple) {
        for (_, ix) in self.indexes.iter_mut().flatten() {
            ix.insert(t.clone());
        }
    }

    pub fn truncate(&mut self) {
        for (_, ix) in self.indexes.iter_mut().flatten() {
            ix.clear();
        }
    }
}

/// Unique nullable indexes let any number of tuples have a nil key part.
fn has_nil_key(kd: &KeyDef, t: &Tuple) -> bool {
    kd.parts
        .iter()
        .any(|p| p.is_nullable && t.field(p.fieldno).is_none_or(field_type::is_nil))
}
