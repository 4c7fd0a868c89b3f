//! The system spaces: their definitions, the rows of a fresh instance, and what a write to
//! `_space`, `_index`, `_user`, `_priv`, `_func` or `_cluster` does to the schema. DDL is
//! nothing but such writes, so the WAL carries schema changes like any other row.

use std::collections::{BTreeMap, HashMap};

use super::access::{self, AccessModel, Catalog, ObjectInfo, ObjectType, PrivRow, UserRow};
use super::errcode::*;
use super::error::ClientError;
use super::field_type::FieldType;
use super::index::IndexType;
use super::key_def::KeyPart;
use super::mp;
use super::space::{FieldDef, IndexDef, Space, SpaceDef};
use super::tuple::Tuple;
use crate::client_error;

pub const SCHEMA_ID: u32 = 272;
pub const COLLATION_ID: u32 = 276;
pub const VCOLLATION_ID: u32 = 277;
pub const SPACE_ID: u32 = 280;
pub const VSPACE_ID: u32 = 281;
pub const INDEX_ID: u32 = 288;
pub const VINDEX_ID: u32 = 289;
pub const SEQUENCE_ID: u32 = 284;
pub const SEQUENCE_DATA_ID: u32 = 285;
pub const VSEQUENCE_ID: u32 = 286;
pub const FUNC_ID: u32 = 296;
pub const VFUNC_ID: u32 = 297;
pub const USER_ID: u32 = 304;
pub const VUSER_ID: u32 = 305;
pub const PRIV_ID: u32 = 312;
pub const VPRIV_ID: u32 = 313;
pub const CLUSTER_ID: u32 = 320;
pub const TRIGGER_ID: u32 = 328;
pub const TRUNCATE_ID: u32 = 330;
pub const SPACE_SEQUENCE_ID: u32 = 340;
pub const FK_CONSTRAINT_ID: u32 = 356;
pub const CK_CONSTRAINT_ID: u32 = 364;
pub const FUNC_INDEX_ID: u32 = 372;
/// Ids below this are system spaces.
pub const SYSTEM_ID_MAX: u32 = 511;
pub const ADMIN: u32 = 1;

type Fields = &'static [(&'static str, &'static str)];
type Parts = &'static [(u32, &'static str)];
type Indexes = &'static [(&'static str, bool, Parts)];

const SPACE_FIELDS: Fields = &[
    ("id", "unsigned"),
    ("owner", "unsigned"),
    ("name", "string"),
    ("engine", "string"),
    ("field_count", "unsigned"),
    ("flags", "map"),
    ("format", "array"),
];
const SPACE_INDEXES: Indexes = &[
    ("primary", true, &[(0, "unsigned")]),
    ("owner", false, &[(1, "unsigned")]),
    ("name", true, &[(2, "string")]),
];
const INDEX_FIELDS: Fields = &[
    ("id", "unsigned"),
    ("iid", "unsigned"),
    ("name", "string"),
    ("type", "string"),
    ("opts", "map"),
    ("parts", "array"),
];
const INDEX_INDEXES: Indexes = &[
    ("primary", true, &[(0, "unsigned"), (1, "unsigned")]),
    ("name", true, &[(0, "unsigned"), (2, "string")]),
];
const COLLATION_FIELDS: Fields = &[
    ("id", "unsigned"),
    ("name", "string"),
    ("owner", "unsigned"),
    ("type", "string"),
    ("locale", "string"),
    ("opts", "map"),
];
const ID_NAME_INDEXES: Indexes = &[("primary", true, &[(0, "unsigned")]), ("name", true, &[(1, "string")])];
const FUNC_FIELDS: Fields = &[
    ("id", "unsigned"),
    ("owner", "unsigned"),
    ("name", "string"),
    ("setuid", "unsigned"),
    ("language", "string"),
    ("body", "string"),
    ("routine_type", "string"),
    ("param_list", "array"),
    ("returns", "string"),
    ("aggregate", "string"),
    ("sql_data_access", "string"),
    ("is_deterministic", "boolean"),
    ("is_sandboxed", "boolean"),
    ("is_null_call", "boolean"),
    ("exports", "array"),
    ("opts", "map"),
    ("comment", "string"),
    ("created", "string"),
    ("last_altered", "string"),
];
const VFUNC_FIELDS: Fields = &[
    ("id", "unsigned"),
    ("owner", "unsigned"),
    ("name", "string"),
    ("setuid", "unsigned"),
];
const USER_FIELDS: Fields = &[
    ("id", "unsigned"),
    ("owner", "unsigned"),
    ("name", "string"),
    ("type", "string"),
    ("auth", "map"),
];
const PRIV_FIELDS: Fields = &[
    ("grantor", "unsigned"),
    ("grantee", "unsigned"),
    ("object_type", "string"),
    ("object_id", "scalar"),
    ("privilege", "unsigned"),
];
const PRIV_INDEXES: Indexes = &[
    ("primary", true, &[(1, "unsigned"), (2, "string"), (3, "scalar")]),
    ("owner", false, &[(0, "unsigned")]),
    ("object", false, &[(2, "string"), (3, "scalar")]),
];
const CLUSTER_FIELDS: Fields = &[("id", "unsigned"), ("uuid", "string")];
const SEQUENCE_FIELDS: Fields = &[
    ("id", "unsigned"),
    ("owner", "unsigned"),
    ("name", "string"),
    ("step", "integer"),
    ("min", "integer"),
    ("max", "integer"),
    ("start", "integer"),
    ("cache", "integer"),
    ("cycle", "boolean"),
];
const PRIMARY_UNSIGNED: Indexes = &[("primary", true, &[(0, "unsigned")])];
const CLUSTER_INDEXES: Indexes = &[("primary", true, &[(0, "unsigned")]), ("uuid", true, &[(1, "string")])];

/// (id, name, engine, format, indexes) of every system space, as Tarantool 2.6 has them.
const SYSTEM_SPACES: &[(u32, &str, &str, Fields, Indexes)] = &[
    (
        SCHEMA_ID,
        "_schema",
        "memtx",
        &[("key", "string"), ("value", "any")],
        &[("primary", true, &[(0, "string")])],
    ),
    (COLLATION_ID, "_collation", "memtx", COLLATION_FIELDS, ID_NAME_INDEXES),
    (
        VCOLLATION_ID,
        "_vcollation",
        "sysview",
        COLLATION_FIELDS,
        ID_NAME_INDEXES,
    ),
    (SPACE_ID, "_space", "memtx", SPACE_FIELDS, SPACE_INDEXES),
    (VSPACE_ID, "_vspace", "sysview", SPACE_FIELDS, SPACE_INDEXES),
    (INDEX_ID, "_index", "memtx", INDEX_FIELDS, INDEX_INDEXES),
    (VINDEX_ID, "_vindex", "sysview", INDEX_FIELDS, INDEX_INDEXES),
    (FUNC_ID, "_func", "memtx", FUNC_FIELDS, SPACE_INDEXES),
    (VFUNC_ID, "_vfunc", "sysview", VFUNC_FIELDS, SPACE_INDEXES),
    (USER_ID, "_user", "memtx", USER_FIELDS, SPACE_INDEXES),
    (VUSER_ID, "_vuser", "sysview", USER_FIELDS, SPACE_INDEXES),
    (PRIV_ID, "_priv", "memtx", PRIV_FIELDS, PRIV_INDEXES),
    (VPRIV_ID, "_vpriv", "sysview", PRIV_FIELDS, PRIV_INDEXES),
    (CLUSTER_ID, "_cluster", "memtx", CLUSTER_FIELDS, CLUSTER_INDEXES),
    // The spaces below are unused by node itself, but a Tarantool replica joining this
    // instance needs them: its bootstrap grants refer to them, and its code expects them.
    (SEQUENCE_ID, "_sequence", "memtx", SEQUENCE_FIELDS, SPACE_INDEXES),
    (
        SEQUENCE_DATA_ID,
        "_sequence_data",
        "memtx",
        &[("id", "unsigned"), ("value", "integer")],
        PRIMARY_UNSIGNED,
    ),
    (VSEQUENCE_ID, "_vsequence", "sysview", SEQUENCE_FIELDS, SPACE_INDEXES),
    (
        TRIGGER_ID,
        "_trigger",
        "memtx",
        &[("name", "string"), ("space_id", "unsigned"), ("opts", "map")],
        &[
            ("primary", true, &[(0, "string")]),
            ("space_id", false, &[(1, "unsigned")]),
        ],
    ),
    (
        TRUNCATE_ID,
        "_truncate",
        "memtx",
        &[("id", "unsigned"), ("count", "unsigned")],
        PRIMARY_UNSIGNED,
    ),
    (
        SPACE_SEQUENCE_ID,
        "_space_sequence",
        "memtx",
        &[
            ("id", "unsigned"),
            ("sequence_id", "unsigned"),
            ("is_generated", "boolean"),
            ("field", "unsigned"),
            ("path", "string"),
        ],
        &[
            ("primary", true, &[(0, "unsigned")]),
            ("sequence", false, &[(1, "unsigned")]),
        ],
    ),
    (
        FK_CONSTRAINT_ID,
        "_fk_constraint",
        "memtx",
        &[
            ("name", "string"),
            ("child_id", "unsigned"),
            ("parent_id", "unsigned"),
            ("is_deferred", "boolean"),
            ("match", "string"),
            ("on_delete", "string"),
            ("on_update", "string"),
            ("child_cols", "array"),
            ("parent_cols", "array"),
        ],
        &[
            ("primary", true, &[(0, "string"), (1, "unsigned")]),
            ("child_id", false, &[(1, "unsigned")]),
        ],
    ),
    (
        CK_CONSTRAINT_ID,
        "_ck_constraint",
        "memtx",
        &[
            ("space_id", "unsigned"),
            ("name", "string"),
            ("is_deferred", "boolean"),
            ("language", "string"),
            ("code", "string"),
            ("is_enabled", "boolean"),
        ],
        &[("primary", true, &[(0, "unsigned"), (1, "string")])],
    ),
    (
        FUNC_INDEX_ID,
        "_func_index",
        "memtx",
        &[
            ("space_id", "unsigned"),
            ("index_id", "unsigned"),
            ("func_id", "unsigned"),
        ],
        &[
            ("primary", true, &[(0, "unsigned"), (1, "unsigned")]),
            ("fid", false, &[(2, "unsigned")]),
        ],
    ),
];

/// A registered function (`_func`).
#[derive(Debug, Clone)]
pub struct FuncDef {
    pub id: u32,
    pub owner: u32,
    pub name: String,
    pub setuid: bool,
}

/// The schema cache: every space with its indexes, users and privileges, functions, and
/// the replica set members.
pub struct Schema {
    pub spaces: BTreeMap<u32, Space>,
    pub names: HashMap<String, u32>,
    pub funcs: BTreeMap<u32, FuncDef>,
    pub cluster: BTreeMap<u32, String>,
    pub access: AccessModel,
    /// Bumped on every change of spaces or indexes (IPROTO's SCHEMA_VERSION).
    pub version: u64,
}

fn def_from_static(id: u32, name: &str, engine: &str, fields: Fields) -> SpaceDef {
    SpaceDef {
        id,
        owner: ADMIN,
        name: name.to_string(),
        engine: engine.to_string(),
        field_count: 0,
        temporary: false,
        is_sync: false,
        group_id: 0,
        format: fields
            .iter()
            .map(|(n, t)| FieldDef {
                name: n.to_string(),
                field_type: FieldType::parse(t).unwrap_or(FieldType::Any),
                is_nullable: *n == "value" && id == SCHEMA_ID,
            })
            .collect(),
    }
}

fn index_defs_from_static(space_id: u32, indexes: Indexes) -> Vec<IndexDef> {
    let mut out = Vec::new();
    let mut iid = 0;
    for (name, unique, parts) in indexes {
        // _index has no index 1 in Tarantool: its "name" index is id 2.
        if (space_id == INDEX_ID || space_id == VINDEX_ID) && iid == 1 {
            iid = 2;
        }
        out.push(IndexDef {
            space_id,
            id: iid,
            name: name.to_string(),
            // As in Tarantool: the sequences' values are looked up by id only.
            index_type: if space_id == SEQUENCE_DATA_ID {
                IndexType::Hash
            } else {
                IndexType::Tree
            },
            unique: *unique,
            parts: parts
                .iter()
                .map(|(f, t)| KeyPart {
                    fieldno: *f,
                    field_type: FieldType::parse(t).unwrap_or(FieldType::Scalar),
                    is_nullable: false,
                })
                .collect(),
        });
        iid += 1;
    }
    out
}

/// The `_space` tuple of a definition.
pub fn space_tuple(def: &SpaceDef) -> Vec<u8> {
    let mut out = Vec::new();
    mp::write_array_header(&mut out, 7);
    mp::write_uint(&mut out, def.id as u64);
    mp::write_uint(&mut out, def.owner as u64);
    mp::write_str(&mut out, def.name.as_bytes());
    mp::write_str(&mut out, def.engine.as_bytes());
    mp::write_uint(&mut out, def.field_count as u64);
    let mut flags: Vec<(&str, bool)> = Vec::new();
    if def.temporary {
        flags.push(("temporary", true));
    }
    if def.is_sync {
        flags.push(("is_sync", true));
    }
    let group = def.group_id != 0;
    mp::write_map_header(&mut out, flags.len() as u32 + group as u32);
    for (k, v) in flags {
        mp::write_str(&mut out, k.as_bytes());
        mp::write_bool(&mut out, v);
    }
    if group {
        mp::write_str(&mut out, b"group_id");
        mp::write_uint(&mut out, def.group_id as u64);
    }
    mp::write_array_header(&mut out, def.format.len() as u32);
    for f in &def.format {
        mp::write_map_header(&mut out, 2 + f.is_nullable as u32);
        mp::write_str(&mut out, b"name");
        mp::write_str(&mut out, f.name.as_bytes());
        mp::write_str(&mut out, b"type");
        mp::write_str(&mut out, f.field_type.name().as_bytes());
        if f.is_nullable {
            mp::write_str(&mut out, b"is_nullable");
            mp::write_bool(&mut out, true);
        }
    }
    out
}

/// The `_index` tuple of a definition (compact parts unless a part is nullable).
pub fn index_tuple(def: &IndexDef) -> Vec<u8> {
    let mut out = Vec::new();
    mp::write_array_header(&mut out, 6);
    mp::write_uint(&mut out, def.space_id as u64);
    mp::write_uint(&mut out, def.id as u64);
    mp::write_str(&mut out, def.name.as_bytes());
    mp::write_str(&mut out, def.index_type.stored_name().as_bytes());
    mp::write_map_header(&mut out, 1);
    mp::write_str(&mut out, b"unique");
    mp::write_bool(&mut out, def.unique);
    mp::write_array_header(&mut out, def.parts.len() as u32);
    for p in &def.parts {
        if p.is_nullable {
            mp::write_map_header(&mut out, 3);
            mp::write_str(&mut out, b"field");
            mp::write_uint(&mut out, p.fieldno as u64);
            mp::write_str(&mut out, b"type");
            mp::write_str(&mut out, p.field_type.name().as_bytes());
            mp::write_str(&mut out, b"is_nullable");
            mp::write_bool(&mut out, true);
        } else {
            mp::write_array_header(&mut out, 2);
            mp::write_uint(&mut out, p.fieldno as u64);
            mp::write_str(&mut out, p.field_type.name().as_bytes());
        }
    }
    out
}

fn func_tuple(id: u32, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    mp::write_array_header(&mut out, 19);
    mp::write_uint(&mut out, id as u64);
    mp::write_uint(&mut out, ADMIN as u64);
    mp::write_str(&mut out, name.as_bytes());
    mp::write_uint(&mut out, 1);
    for s in ["LUA", "", "function"] {
        mp::write_str(&mut out, s.as_bytes());
    }
    mp::write_array_header(&mut out, 0);
    for s in ["any", "none", "none"] {
        mp::write_str(&mut out, s.as_bytes());
    }
    for b in [false, false, true] {
        mp::write_bool(&mut out, b);
    }
    mp::write_array_header(&mut out, 1);
    mp::write_str(&mut out, b"LUA");
    mp::write_map_header(&mut out, 0);
    for s in ["", "2019-12-29 17:52:51", "2019-12-29 17:52:51"] {
        mp::write_str(&mut out, s.as_bytes());
    }
    out
}

/// The rows of a fresh instance, in the order they must be applied: (space id, tuple).
pub fn bootstrap_rows(cluster_uuid: &str, instance_uuid: &str) -> Vec<(u32, Vec<u8>)> {
    let mut rows = Vec::new();
    let kv = |k: &str, v: &dyn Fn(&mut Vec<u8>)| {
        let mut t = Vec::new();
        mp::write_array_header(&mut t, 2);
        mp::write_str(&mut t, k.as_bytes());
        v(&mut t);
        t
    };
    rows.push((SCHEMA_ID, kv("cluster", &|t| mp::write_str(t, cluster_uuid.as_bytes()))));
    rows.push((SCHEMA_ID, kv("max_id", &|t| mp::write_uint(t, SYSTEM_ID_MAX as u64))));
    let mut version = Vec::new();
    mp::write_array_header(&mut version, 4);
    mp::write_str(&mut version, b"version");
    for v in [2, 3, 1] {
        mp::write_uint(&mut version, v);
    }
    rows.push((SCHEMA_ID, version));
    for (id, name, engine, fields, _) in SYSTEM_SPACES {
        rows.push((SPACE_ID, space_tuple(&def_from_static(*id, name, engine, fields))));
    }
    for (id, _, _, _, indexes) in SYSTEM_SPACES {
        for def in index_defs_from_static(*id, indexes) {
            rows.push((INDEX_ID, index_tuple(&def)));
        }
    }
    rows.push((FUNC_ID, func_tuple(1, "box.schema.user.info")));
    for u in access::bootstrap_users() {
        rows.push((USER_ID, u.to_tuple()));
    }
    for p in access::bootstrap_privs() {
        // The SQL built-in functions (2..=67) do not exist here; their grants would dangle.
        if p.object_type == ObjectType::Function && p.object_id.is_some_and(|id| id > 1) {
            continue;
        }
        rows.push((PRIV_ID, p.to_tuple()));
    }
    let mut member = Vec::new();
    mp::write_array_header(&mut member, 2);
    mp::write_uint(&mut member, 1);
    mp::write_str(&mut member, instance_uuid.as_bytes());
    rows.push((CLUSTER_ID, member));
    rows
}

impl Schema {
    /// The schema before any row: the system spaces exist (empty) so that their own rows,
    /// from a snapshot or a bootstrap, can be applied.
    pub fn new() -> Schema {
        let mut schema = Schema {
            spaces: BTreeMap::new(),
            names: HashMap::new(),
            funcs: BTreeMap::new(),
            cluster: BTreeMap::new(),
            access: AccessModel::new(),
            version: 1,
        };
        for (id, name, engine, fields, indexes) in SYSTEM_SPACES {
            let mut space = Space::new(def_from_static(*id, name, engine, fields));
            for def in index_defs_from_static(*id, indexes) {
                // Static definitions of empty spaces: nothing can fail.
                let _ = space.add_index(def);
            }
            schema.names.insert(name.to_string(), *id);
            schema.spaces.insert(*id, space);
        }
        schema
    }

    pub fn space(&self, id: u32) -> Option<&Space> {
        self.spaces.get(&id)
    }

    pub fn space_mut(&mut self, id: u32) -> Option<&mut Space> {
        self.spaces.get_mut(&id)
    }

    pub fn space_by_name(&self, name: &str) -> Option<&Space> {
        self.names.get(name).and_then(|id| self.spaces.get(id))
    }

    pub fn is_system(space_id: u32) -> bool {
        matches!(space_id, SPACE_ID | INDEX_ID | USER_ID | PRIV_ID | FUNC_ID | CLUSTER_ID)
    }

    /// Applies a change of a system space row to the cache. `checked` is false when
    /// replaying (recovery, rollback): what was once accepted is applied as is.
    pub fn on_system_replace(
        &mut self,
        space_id: u32,
        old: Option<&Tuple>,
        new: Option<&Tuple>,
        actor: u32,
        checked: bool,
    ) -> Result<(), ClientError> {
        match space_id {
            SPACE_ID => self.on_space_replace(old, new, checked),
            INDEX_ID => self.on_index_replace(old, new),
            USER_ID => {
                let old = old.map(|t| UserRow::from_tuple(t.data())).transpose()?;
                let new = new.map(|t| UserRow::from_tuple(t.data())).transpose()?;
                if checked {
                    let catalog = SchemaCatalog {
                        spaces: &self.spaces,
                        funcs: &self.funcs,
                    };
                    self.access.on_user_replace(actor, old, new, &catalog)
                } else {
                    self.access.apply_user_replace(old, new);
                    Ok(())
                }
            }
            PRIV_ID => {
                let old = old.map(|t| PrivRow::from_tuple(t.data())).transpose()?;
                let new = new.map(|t| PrivRow::from_tuple(t.data())).transpose()?;
                if checked {
                    let catalog = SchemaCatalog {
                        spaces: &self.spaces,
                        funcs: &self.funcs,
                    };
                    self.access.on_priv_replace(actor, old, new, &catalog)
                } else {
                    self.access.apply_priv_replace(old, new);
                    Ok(())
                }
            }
            FUNC_ID => {
                if let Some(o) = old {
                    if let Some(id) = first_u32(o) {
                        self.funcs.remove(&id);
                    }
                }
                if let Some(n) = new {
                    let f = func_from_tuple(n)?;
                    if checked && self.funcs.values().any(|g| g.name == f.name && g.id != f.id) {
                        return Err(client_error!(ER_FUNCTION_EXISTS, &f.name));
                    }
                    self.funcs.insert(f.id, f);
                }
                Ok(())
            }
            CLUSTER_ID => {
                if let Some(o) = old {
                    if let Some(id) = first_u32(o) {
                        self.cluster.remove(&id);
                    }
                }
                if let Some(n) = new {
                    let id = first_u32(n).ok_or_else(|| client_error!(ER_FIELD_TYPE, "1", "unsigned"))?;
                    let uuid = n.field(1).and_then(mp_str).unwrap_or_default();
                    self.cluster.insert(id, uuid);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_space_replace(&mut self, old: Option<&Tuple>, new: Option<&Tuple>, checked: bool) -> Result<(), ClientError> {
        match (old, new) {
            (None, Some(n)) => {
                let def = SpaceDef::from_tuple(n)?;
                // Rows that come from files or peers (a Tarantool data directory or master) may
                // name engines node has not got (vinyl, blackhole): their spaces are kept in
                // memory like memtx ones, so the schema stays whole.
                if checked && def.engine != "memtx" && def.engine != "sysview" {
                    return Err(client_error!(ER_NO_SUCH_ENGINE, &def.engine));
                }
                if let Some(existing) = self.spaces.get_mut(&def.id) {
                    // A system space's own row (bootstrap or recovery): adopt it.
                    existing.set_def(def);
                } else {
                    if self.names.contains_key(&def.name) {
                        return Err(client_error!(ER_SPACE_EXISTS, &def.name));
                    }
                    self.names.insert(def.name.clone(), def.id);
                    self.spaces.insert(def.id, Space::new(def));
                }
            }
            (Some(_), Some(n)) => {
                let def = SpaceDef::from_tuple(n)?;
                let space = self
                    .spaces
                    .get_mut(&def.id)
                    .ok_or_else(|| client_error!(ER_NO_SUCH_SPACE, def.id.to_string()))?;
                if space.def.name != def.name {
                    if self.names.get(&def.name).is_some_and(|id| *id != def.id) {
                        return Err(client_error!(ER_SPACE_EXISTS, &def.name));
                    }
                    self.names.remove(&space.def.name);
                    self.names.insert(def.name.clone(), def.id);
                }
                for t in space
                    .primary()
                    .map(|p| p.tuples().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
                {
                    let probe = Space::new(def.clone());
                    probe
                        .validate(&t)
                        .map_err(|e| client_error!(ER_ALTER_SPACE, &def.name, e.message))?;
                }
                space.set_def(def);
            }
            (Some(o), None) => {
                let id = first_u32(o).ok_or_else(|| client_error!(ER_FIELD_TYPE, "1", "unsigned"))?;
                if let Some(space) = self.spaces.get(&id) {
                    if space.indexes.iter().any(|i| i.is_some()) && id > SYSTEM_ID_MAX {
                        return Err(client_error!(ER_DROP_SPACE, space.name(), "the space has indexes"));
                    }
                    let name = space.def.name.clone();
                    self.names.remove(&name);
                    self.spaces.remove(&id);
                }
            }
            (None, None) => {}
        }
        self.version += 1;
        Ok(())
    }

    fn on_index_replace(&mut self, old: Option<&Tuple>, new: Option<&Tuple>) -> Result<(), ClientError> {
        let space_id = new
            .or(old)
            .and_then(first_u32)
            .ok_or_else(|| client_error!(ER_FIELD_TYPE, "1", "unsigned"))?;
        let space = self
            .spaces
            .get_mut(&space_id)
            .ok_or_else(|| client_error!(ER_NO_SUCH_SPACE, space_id.to_string()))?;
        let space_name = space.def.name.clone();
        match (old, new) {
            (None, Some(n)) => {
                let def = IndexDef::from_tuple(n, &space_name)?;
                if space.index(def.id).is_some() {
                    if space_id <= SYSTEM_ID_MAX {
                        // A system index's own row: it already exists.
                        return Ok(());
                    }
                    return Err(client_error!(ER_INDEX_EXISTS, &def.name));
                }
                space.add_index(def)?;
            }
            (Some(_), Some(n)) => {
                let def = IndexDef::from_tuple(n, &space_name)?;
                let previous = space.drop_index(def.id);
                if let Err(e) = space.add_index(def) {
                    if let Some((d, _)) = previous {
                        let _ = space.add_index(d);
                    }
                    return Err(e);
                }
            }
            (Some(o), None) => {
                let iid = o.field(1).and_then(mp_u32).unwrap_or(0);
                if iid == 0 && space.indexes.iter().skip(1).any(|i| i.is_some()) {
                    return Err(client_error!(ER_DROP_PRIMARY_KEY, &space_name));
                }
                space.drop_index(iid);
                if iid == 0 {
                    // Without a primary key a space holds no data.
                    space.truncate();
                }
            }
            (None, None) => {}
        }
        self.version += 1;
        Ok(())
    }
}

impl Default for Schema {
    fn default() -> Self {
        Schema::new()
    }
}

fn mp_u32(raw: &[u8]) -> Option<u32> {
    match mp::read(raw, 0) {
        Ok((mp::Mp::UInt(v), _)) => u32::try_from(v).ok(),
        _ => None,
    }
}

fn mp_str(raw: &[u8]) -> Option<String> {
    match mp::read(raw, 0) {
        Ok((mp::Mp::Str(s), _)) => Some(String::from_utf8_lossy(s).into_owned()),
        _ => None,
    }
}

fn first_u32(t: &Tuple) -> Option<u32> {
    t.field(0).and_then(mp_u32)
}

fn func_from_tuple(t: &Tuple) -> Result<FuncDef, ClientError> {
    let id = first_u32(t).ok_or_else(|| client_error!(ER_FIELD_TYPE, "1", "unsigned"))?;
    let owner = t.field(1).and_then(mp_u32).unwrap_or(ADMIN);
    let name = t
        .field(2)
        .and_then(mp_str)
        .ok_or_else(|| client_error!(ER_FIELD_TYPE, "3", "string"))?;
    let setuid = t.field(3).and_then(mp_u32).unwrap_or(0) != 0;
    Ok(FuncDef {
        id,
        owner,
        name,
        setuid,
    })
}

/// Names and owners of objects, for access checks and `user.info`.
pub struct SchemaCatalog<'a> {
    pub spaces: &'a BTreeMap<u32, Space>,
    pub funcs: &'a BTreeMap<u32, FuncDef>,
}

impl Catalog for SchemaCatalog<'_> {
    fn object(&self, object_type: ObjectType, id: u32) -> Option<ObjectInfo> {
        match object_type {
            ObjectType::Space => self.spaces.get(&id).map(|s| ObjectInfo {
                name: s.def.name.clone(),
                owner: s.def.owner,
            }),
            ObjectType::Function => self.funcs.get(&id).map(|f| ObjectInfo {
                name: f.name.clone(),
                owner: f.owner,
            }),
            _ => None,
        }
    }

    fn owns_objects(&self, uid: u32) -> bool {
        self.spaces
            .values()
            .any(|s| s.def.owner == uid && s.def.id > SYSTEM_ID_MAX)
            || self.funcs.values().any(|f| f.owner == uid && f.id > 1)
    }
}
