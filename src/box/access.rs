//! Users, roles, privileges and access checks: Tarantool 2.6's `user.cc`, the `_user`/`_priv`
//! triggers of `alter.cc` and the `access_check_*` functions, as a pure model.
//!
//! The model is fed row by row from the system spaces `_user` (304) and `_priv` (312): the box
//! core calls [`AccessModel::on_user_replace`] / [`AccessModel::on_priv_replace`] from their
//! on-replace triggers (they check the acting user's rights, then apply the change), and the
//! unchecked [`AccessModel::apply_user_replace`] / [`AccessModel::apply_priv_replace`] for
//! recovery and to undo a rolled-back statement. Everything else — effective privileges,
//! role membership — is derived from the rows, and cached per user until the next change.
//!
//! The rules, as in Tarantool: session on universe is needed to log in or `box.session.su`;
//! usage on universe to touch anything at all, owned objects included; beyond that a right
//! comes from universe, from a grant on every object of a type (`object_id` `''`), from a
//! grant on the object, or from ownership (except create). Roles pass all of these on to
//! whoever has them, transitively. Admin (and role super) hold everything on universe; guest
//! holds session, usage and role public, which reads the `_v*` views and calls
//! `box.schema.user.info`.
//!
//! Spaces, functions and sequences live elsewhere; the checks that need their names or
//! owners take a [`Catalog`]. Error texts and codes are Tarantool's (verified on 2.6.0, and
//! unchanged in 2.6.3's sources). Tarantool raises access violations as `AccessDeniedError`
//! (code 42, a subclass of ClientError); here they are a [`ClientError`] with that code.

use std::cell::RefCell;
use std::collections::BTreeMap;

// hashbrown's default hasher: these maps are read for every request's access check, and
// SipHash showed in its profile.
use hashbrown::{HashMap, HashSet};

use rmpv::ValueRef;

use super::chap_sha1::{self, CHAP_SHA1_EMPTY_PASSWORD, SCRAMBLE_BASE64_SIZE, SCRAMBLE_SIZE};
use super::errcode::*;
use super::error::ClientError;
use crate::client_error;

// {{{ privileges

pub const PRIV_READ: u32 = 1;
pub const PRIV_WRITE: u32 = 2;
pub const PRIV_EXECUTE: u32 = 4;
pub const PRIV_SESSION: u32 = 8;
pub const PRIV_USAGE: u32 = 16;
pub const PRIV_CREATE: u32 = 32;
pub const PRIV_DROP: u32 = 64;
pub const PRIV_ALTER: u32 = 128;
pub const PRIV_REFERENCE: u32 = 256;
pub const PRIV_TRIGGER: u32 = 512;
pub const PRIV_INSERT: u32 = 1024;
pub const PRIV_UPDATE: u32 = 2048;
pub const PRIV_DELETE: u32 = 4096;
/// Never granted: the right checked when a `_priv` row is inserted or replaced.
pub const PRIV_GRANT: u32 = 8192;
/// Never granted: the right checked when a `_priv` row is deleted.
pub const PRIV_REVOKE: u32 = 16384;
/// `box.priv.ALL`, and what `_priv` stores for admin and super on universe.
pub const PRIV_ALL: u32 = u32::MAX;

/// Tarantool keeps access in 16 bits (`user_access_t`); `_priv` stores a 32-bit number.
const ACCESS_MASK: u32 = 0xFFFF;
/// Full access as the 16-bit value admin's universe grant must keep.
const ACCESS_FULL: u32 = ACCESS_MASK;

/// The `box.priv` table.
pub const BOX_PRIV: [(&str, u32); 16] = [
    ("R", PRIV_READ),
    ("W", PRIV_WRITE),
    ("X", PRIV_EXECUTE),
    ("S", PRIV_SESSION),
    ("U", PRIV_USAGE),
    ("C", PRIV_CREATE),
    ("D", PRIV_DROP),
    ("A", PRIV_ALTER),
    ("REFERENCE", PRIV_REFERENCE),
    ("TRIGGER", PRIV_TRIGGER),
    ("INSERT", PRIV_INSERT),
    ("UPDATE", PRIV_UPDATE),
    ("DELETE", PRIV_DELETE),
    ("GRANT", PRIV_GRANT),
    ("REVOKE", PRIV_REVOKE),
    ("ALL", PRIV_ALL),
];

/// Lower-case names in bit order: the order `box.schema.user.info` prints them in.
const PRIV_NAMES: [(&str, u32); 13] = [
    ("read", PRIV_READ),
    ("write", PRIV_WRITE),
    ("execute", PRIV_EXECUTE),
    ("session", PRIV_SESSION),
    ("usage", PRIV_USAGE),
    ("create", PRIV_CREATE),
    ("drop", PRIV_DROP),
    ("alter", PRIV_ALTER),
    ("reference", PRIV_REFERENCE),
    ("trigger", PRIV_TRIGGER),
    ("insert", PRIV_INSERT),
    ("update", PRIV_UPDATE),
    ("delete", PRIV_DELETE),
];

/// The name of the lowest bit of `access` as access-denied messages print it (`Read`,
/// `Execute`, ..., `Grant`, `Revoke`; `Any` for none).
pub fn priv_name(access: u32) -> &'static str {
    const NAMES: [&str; 15] = [
        "Read",
        "Write",
        "Execute",
        "Session",
        "Usage",
        "Create",
        "Drop",
        "Alter",
        "Reference",
        "Trigger",
        "Insert",
        "Update",
        "Delete",
        "Grant",
        "Revoke",
    ];
    // C's ffs() on an int: the sign bit counts as bit 32.
    match access {
        0 => "Any",
        a => NAMES.get(a.trailing_zeros() as usize).copied().unwrap_or("Any"),
    }
}

/// A privilege string as `box.schema.user.grant` reads it: case-insensitive, each name found
/// anywhere in the text (`'readwrite'` is read+write, `'foo'` is nothing).
pub fn parse_privileges(text: &str) -> u32 {
    let lower = text.to_lowercase();
    PRIV_NAMES
        .iter()
        .filter(|(name, _)| lower.contains(name))
        .fold(0, |acc, (_, bit)| acc | bit)
}

/// `'read,write,execute'`: the names of the set bits in Tarantool's order.
pub fn privilege_names(privs: u32) -> String {
    let names: Vec<&str> = PRIV_NAMES
        .iter()
        .filter(|(_, bit)| privs & bit != 0)
        .map(|(name, _)| *name)
        .collect();
    names.join(",")
}

/// The bits that may be granted on an object type (`schema.lua`'s `priv_object_combo`).
/// Execute on space is allowed: a legacy Tarantool bug kept for compatibility.
pub fn grantable_privileges(object_type: &str) -> Option<u32> {
    Some(match object_type {
        "universe" => PRIV_ALL,
        "space" => PRIV_ALL ^ PRIV_SESSION ^ PRIV_REVOKE ^ PRIV_GRANT,
        "sequence" => PRIV_READ | PRIV_WRITE | PRIV_USAGE | PRIV_CREATE | PRIV_ALTER | PRIV_DROP,
        "function" | "role" => PRIV_EXECUTE | PRIV_USAGE | PRIV_CREATE | PRIV_DROP,
        "user" => PRIV_CREATE | PRIV_ALTER | PRIV_DROP,
        _ => return None,
    })
}

/// `grant`/`revoke`'s argument check: the object type must be known and `privs` (the
/// resolved bits of the argument `text`) non-empty and grantable on it.
/// Errors: `Unknown object type 'bar'`, `Unsupported universe privilege 'foo'`.
pub fn privilege_check(privs: u32, text: &str, object_type: &str) -> Result<u32, ClientError> {
    let Some(allowed) = grantable_privileges(object_type) else {
        return Err(client_error!(ER_UNKNOWN_SCHEMA_OBJECT, object_type));
    };
    if privs == 0 || privs & allowed != privs {
        return Err(client_error!(ER_UNSUPPORTED_PRIV, object_type, text));
    }
    Ok(privs)
}

/// `box.schema.role.grant/revoke` refuse session and usage, which only users may hold.
pub fn check_role_privilege(text: &str) -> Result<(), ClientError> {
    let lower = text.to_lowercase();
    if lower.contains("session") || lower.contains("usage") {
        return Err(client_error!(ER_GRANT, "system privilege can not be granted to role"));
    }
    Ok(())
}

// }}}

// {{{ object types and built-in ids

/// `_priv`'s object types. Declared in the order of their names, which is the order
/// `_priv`'s primary key (and so `box.schema.user.info`) lists them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectType {
    Collation,
    Function,
    Role,
    Sequence,
    Space,
    Universe,
    User,
}

impl ObjectType {
    pub const ALL: [ObjectType; 7] = [
        ObjectType::Collation,
        ObjectType::Function,
        ObjectType::Role,
        ObjectType::Sequence,
        ObjectType::Space,
        ObjectType::Universe,
        ObjectType::User,
    ];

    /// The name `_priv` stores and messages print.
    pub fn name(self) -> &'static str {
        match self {
            ObjectType::Collation => "collation",
            ObjectType::Function => "function",
            ObjectType::Role => "role",
            ObjectType::Sequence => "sequence",
            ObjectType::Space => "space",
            ObjectType::Universe => "universe",
            ObjectType::User => "user",
        }
    }

    /// Case-sensitive, as Tarantool's lookup.
    pub fn from_name(name: &str) -> Option<ObjectType> {
        ObjectType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Types that can be granted on as a whole (`object_id` `''`).
    fn has_entity(self) -> bool {
        !matches!(self, ObjectType::Universe)
    }
}

pub const GUEST: u32 = 0;
pub const ADMIN: u32 = 1;
pub const PUBLIC: u32 = 2;
pub const REPLICATION: u32 = 3;
pub const SUPER: u32 = 31;
/// Ids up to this one (and SUPER) belong to system users and roles, which cannot be dropped.
pub const BOX_SYSTEM_USER_ID_MAX: u32 = PUBLIC;
/// Users and roles together, built-ins included.
pub const BOX_USER_MAX: usize = 32;
const BOX_NAME_MAX: usize = 65000;
/// How much of an over-long or unknown name error messages quote.
const BOX_INVALID_NAME_MAX: usize = 64;

// }}}

// {{{ rows

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserKind {
    User,
    Role,
}

impl UserKind {
    pub fn name(self) -> &'static str {
        match self {
            UserKind::User => "user",
            UserKind::Role => "role",
        }
    }

    fn object_type(self) -> ObjectType {
        match self {
            UserKind::User => ObjectType::User,
            UserKind::Role => ObjectType::Role,
        }
    }
}

/// A `_user` tuple: `[id, owner, name, type, {'chap-sha1': base64(hash2)} or {}]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    pub id: u32,
    pub owner: u32,
    pub name: String,
    pub kind: UserKind,
    /// hash2 of the password; `None` when no password is set.
    pub auth: Option<[u8; SCRAMBLE_SIZE]>,
}

/// A `_priv` tuple: `[grantor, grantee, object_type, object_id, privilege]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivRow {
    pub grantor: u32,
    pub grantee: u32,
    pub object_type: ObjectType,
    /// `None` is the empty string `''` Tarantool stores for a grant on every object of the
    /// type (`grant('u', 'read', 'space')`). Universe rows store `Some(0)`.
    pub object_id: Option<u32>,
    /// As stored (32 bits); only the low 16 bits mean anything.
    pub privs: u32,
}

fn field_missing(fieldno: usize) -> ClientError {
    client_error!(ER_NO_SUCH_FIELD_NO, fieldno + 1)
}

fn field_type(fieldno: usize, expected: &str) -> ClientError {
    client_error!(ER_FIELD_TYPE, (fieldno + 1).to_string().as_str(), expected)
}

fn decode_tuple(tuple: &[u8]) -> Result<Vec<ValueRef<'_>>, ClientError> {
    let mut rest = tuple;
    match rmpv::decode::read_value_ref(&mut rest) {
        Ok(ValueRef::Array(fields)) => Ok(fields),
        _ => Err(client_error!(ER_INVALID_MSGPACK, "tuple")),
    }
}

fn u32_field(fields: &[ValueRef], fieldno: usize) -> Result<u32, ClientError> {
    match fields.get(fieldno) {
        None => Err(field_missing(fieldno)),
        Some(ValueRef::Integer(n)) => match n.as_u64() {
            Some(v) => u32::try_from(v).map_err(|_| field_type(fieldno, "unsigned")),
            None => Err(field_type(fieldno, "unsigned")),
        },
        Some(_) => Err(field_type(fieldno, "unsigned")),
    }
}

fn str_field(fields: &[ValueRef], fieldno: usize) -> Result<Vec<u8>, ClientError> {
    match fields.get(fieldno) {
        None => Err(field_missing(fieldno)),
        Some(ValueRef::String(s)) => Ok(s.into_bytes()),
        Some(_) => Err(field_type(fieldno, "string")),
    }
}

/// At most `max` bytes of `bytes` as text, as `tt_cstr(name, max)` quotes a name.
fn quote(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned()
}

/// Tarantool's `identifier_check`: a name must be non-empty valid UTF-8 without control
/// characters, line or paragraph separators, U+FFFD or unassigned code points (only the
/// noncharacters among the latter are known here). Returns the name as text.
pub fn identifier_check(name: &[u8]) -> Result<&str, ClientError> {
    let bad = || client_error!(ER_IDENTIFIER, String::from_utf8_lossy(name).as_ref());
    let text = std::str::from_utf8(name).map_err(|_| bad())?;
    let printable = |c: char| {
        let cp = c as u32;
        let noncharacter = (0xFDD0..=0xFDEF).contains(&cp) || cp & 0xFFFE == 0xFFFE;
        !(c.is_control() || c == '\u{2028}' || c == '\u{2029}' || c == '\u{FFFD}' || noncharacter)
    };
    if text.is_empty() || !text.chars().all(printable) {
        return Err(bad());
    }
    Ok(text)
}

impl UserRow {
    /// A `_user` tuple (MessagePack array) checked as Tarantool's `user_def_new_from_tuple`:
    /// `Failed to create user 'x': unknown user type`, `... user name is too long`,
    /// `... invalid user password`, `Failed to create role 'r': authentication data can not
    /// be set for a role`, `Setting password for guest user has no effect`, ...
    pub fn from_tuple(tuple: &[u8]) -> Result<UserRow, ClientError> {
        let fields = decode_tuple(tuple)?;
        let name = str_field(&fields, 2)?;
        if name.len() > BOX_NAME_MAX {
            let quoted = quote(&name, BOX_INVALID_NAME_MAX);
            return Err(client_error!(ER_CREATE_USER, &quoted, "user name is too long"));
        }
        let id = u32_field(&fields, 0)?;
        let owner = u32_field(&fields, 1)?;
        let kind = str_field(&fields, 3)?;
        let lossy_name = String::from_utf8_lossy(&name).into_owned();
        let kind = match kind.as_slice() {
            b"user" => UserKind::User,
            b"role" => UserKind::Role,
            _ => return Err(client_error!(ER_CREATE_USER, &lossy_name, "unknown user type")),
        };
        let name = identifier_check(&name)?.to_string();
        let auth = match fields.get(4) {
            None => None,
            Some(auth) => {
                let empty = match auth {
                    ValueRef::Array(a) => a.is_empty(),
                    ValueRef::Map(m) => m.is_empty(),
                    _ => false,
                };
                if !empty && kind == UserKind::Role {
                    return Err(client_error!(
                        ER_CREATE_ROLE,
                        &name,
                        "authentication data can not be set for a role"
                    ));
                }
                auth_data(&name, id, auth)?
            }
        };
        Ok(UserRow {
            id,
            owner,
            name,
            kind,
            auth,
        })
    }

    /// The tuple as `_user` stores it.
    pub fn to_tuple(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.name.len());
        write_array_header(&mut out, 5);
        write_uint(&mut out, self.id);
        write_uint(&mut out, self.owner);
        write_str(&mut out, &self.name);
        write_str(&mut out, self.kind.name());
        match self.auth_base64() {
            Some(hash2) => {
                write_map_header(&mut out, 1);
                write_str(&mut out, "chap-sha1");
                write_str(&mut out, &hash2);
            }
            None => write_map_header(&mut out, 0),
        }
        out
    }

    /// The stored hash2 in base64 (`None`: no password).
    pub fn auth_base64(&self) -> Option<String> {
        self.auth.as_ref().map(chap_sha1::encode_hash2)
    }
}

/// `user_def_fill_auth_data`: nil or an array means no data; otherwise a map whose
/// `chap-sha1` key (compared on its first 9 bytes, case-insensitively) holds base64 hash2.
fn auth_data(name: &str, uid: u32, auth: &ValueRef) -> Result<Option<[u8; SCRAMBLE_SIZE]>, ClientError> {
    let entries = match auth {
        ValueRef::Nil | ValueRef::Array(_) => return Ok(None),
        ValueRef::Map(entries) => entries,
        _ => {
            return Err(client_error!(
                ER_CREATE_USER,
                name,
                "invalid password format, use box.schema.user.passwd() to reset password"
            ))
        }
    };
    for (key, value) in entries {
        let ValueRef::String(key) = key else { continue };
        let key = key.as_bytes();
        if key.len() < 9 || !key[..9].eq_ignore_ascii_case(b"chap-sha1") {
            continue;
        }
        let hash = match value {
            ValueRef::String(s) if s.as_bytes().is_empty() || s.as_bytes().len() == SCRAMBLE_BASE64_SIZE => {
                s.as_bytes()
            }
            _ => return Err(client_error!(ER_CREATE_USER, name, "invalid user password")),
        };
        if uid == GUEST && !CHAP_SHA1_EMPTY_PASSWORD.as_bytes().starts_with(hash) {
            return Err(client_error!(ER_GUEST_USER_PASSWORD));
        }
        // An empty hash is accepted but sets no usable password.
        return Ok(std::str::from_utf8(hash).ok().and_then(chap_sha1::decode_hash2));
    }
    Ok(None)
}

impl PrivRow {
    /// A row from its fields, resolving the type name as `priv_def_create_from_tuple`:
    /// unknown names (case-sensitive) and `''` with universe give `Unknown object type 'x'`.
    pub fn new(
        grantor: u32,
        grantee: u32,
        object_type: &str,
        object_id: Option<u32>,
        privs: u32,
    ) -> Result<PrivRow, ClientError> {
        let resolved = ObjectType::from_name(object_type).filter(|t| object_id.is_some() || t.has_entity());
        let Some(object_type) = resolved else {
            return Err(client_error!(ER_UNKNOWN_SCHEMA_OBJECT, object_type));
        };
        Ok(PrivRow {
            grantor,
            grantee,
            object_type,
            object_id,
            privs,
        })
    }

    /// A `_priv` tuple (MessagePack array).
    pub fn from_tuple(tuple: &[u8]) -> Result<PrivRow, ClientError> {
        let fields = decode_tuple(tuple)?;
        let grantor = u32_field(&fields, 0)?;
        let grantee = u32_field(&fields, 1)?;
        let object_type = String::from_utf8_lossy(&str_field(&fields, 2)?).into_owned();
        let object_id = match fields.get(3) {
            None => return Err(field_missing(3)),
            Some(ValueRef::String(s)) if s.as_bytes().is_empty() => None,
            Some(_) => Some(u32_field(&fields, 3)?),
        };
        let row = PrivRow::new(grantor, grantee, &object_type, object_id, 0)?;
        Ok(PrivRow {
            privs: u32_field(&fields, 4)?,
            ..row
        })
    }

    /// The tuple as `_priv` stores it.
    pub fn to_tuple(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        write_array_header(&mut out, 5);
        write_uint(&mut out, self.grantor);
        write_uint(&mut out, self.grantee);
        write_str(&mut out, self.object_type.name());
        match self.object_id {
            Some(id) => write_uint(&mut out, id),
            None => write_str(&mut out, ""),
        }
        write_uint(&mut out, self.privs);
        out
    }

    fn key(&self) -> PrivKey {
        (self.grantee, self.object_type, IdKey::of(self.object_id))
    }

    fn target(&self) -> Target {
        match (self.object_type, self.object_id) {
            (ObjectType::Universe, _) => Target::Universe,
            (t, None) => Target::Entity(t),
            (t, Some(id)) => Target::Object(t, id),
        }
    }

    fn access(&self) -> u32 {
        self.privs & ACCESS_MASK
    }

    /// A role membership: execute alone on a role (other bits make it a privilege on the
    /// role object instead, and Tarantool then ignores the row for effective access).
    fn is_role_grant(&self) -> bool {
        self.on_one_role() && self.access() == PRIV_EXECUTE
    }

    /// A row on one role (not on all roles, which is an ordinary privilege).
    fn on_one_role(&self) -> bool {
        self.object_type == ObjectType::Role && self.object_id.is_some()
    }
}

// Writing to a Vec cannot fail, so the encoders' results carry nothing.
fn write_array_header(out: &mut Vec<u8>, len: u32) {
    let _ = rmp::encode::write_array_len(out, len);
}

fn write_uint(out: &mut Vec<u8>, v: u32) {
    let _ = rmp::encode::write_uint(out, u64::from(v));
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = rmp::encode::write_str(out, s);
}

fn write_map_header(out: &mut Vec<u8>, len: u32) {
    let _ = rmp::encode::write_map_len(out, len);
}

/// `_priv`'s primary key: grantee, object type, object id (numbers before `''`).
type PrivKey = (u32, ObjectType, IdKey);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum IdKey {
    Id(u32),
    All,
}

impl IdKey {
    fn of(id: Option<u32>) -> IdKey {
        id.map_or(IdKey::All, IdKey::Id)
    }
}

/// What a privilege applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Target {
    Universe,
    /// Every object of a type.
    Entity(ObjectType),
    Object(ObjectType, u32),
}

impl Target {
    /// The per-object access slot: users and roles share one per id, as in Tarantool.
    fn slot(self) -> Target {
        match self {
            Target::Object(ObjectType::Role, id) => Target::Object(ObjectType::User, id),
            t => t,
        }
    }
}

// }}}

// {{{ bootstrap

/// The `_user` rows of a fresh Tarantool 2.6 (guest's password is the empty one).
pub fn bootstrap_users() -> Vec<UserRow> {
    let row = |id, name: &str, kind, auth| UserRow {
        id,
        owner: ADMIN,
        name: name.to_string(),
        kind,
        auth,
    };
    vec![
        row(GUEST, "guest", UserKind::User, Some(chap_sha1::hash2(""))),
        row(ADMIN, "admin", UserKind::User, None),
        row(PUBLIC, "public", UserKind::Role, None),
        row(REPLICATION, "replication", UserKind::Role, None),
        row(SUPER, "super", UserKind::Role, None),
    ]
}

/// Ids of the functions public may execute in a fresh 2.6: 1 is `box.schema.user.info`,
/// 2..=67 are the SQL built-ins (`TRIM` ... `LEAST`), 65 among them being `LUA`.
pub const BOOTSTRAP_PUBLIC_FUNCTIONS: std::ops::RangeInclusive<u32> = 1..=67;

/// The `_priv` rows of a fresh Tarantool 2.6, in primary-key order: guest has role public
/// and session+usage; admin and super everything on universe; public executes the
/// bootstrap functions, reads the `_v*` views and writes `_collation` and `_truncate`;
/// replication reads universe and writes `_cluster`. All granted by admin.
pub fn bootstrap_privs() -> Vec<PrivRow> {
    let row = |grantee, object_type, object_id, privs| PrivRow {
        grantor: ADMIN,
        grantee,
        object_type,
        object_id: Some(object_id),
        privs,
    };
    let mut rows = vec![
        row(GUEST, ObjectType::Role, PUBLIC, PRIV_EXECUTE),
        row(GUEST, ObjectType::Universe, 0, PRIV_SESSION | PRIV_USAGE),
        row(ADMIN, ObjectType::Universe, 0, PRIV_ALL),
    ];
    rows.extend(BOOTSTRAP_PUBLIC_FUNCTIONS.map(|id| row(PUBLIC, ObjectType::Function, id, PRIV_EXECUTE)));
    // _collation, _vcollation, _vspace, _vsequence, _vindex, _vfunc, _vuser, _vpriv, _truncate
    for (space, privs) in [
        (276, PRIV_WRITE),
        (277, PRIV_READ),
        (281, PRIV_READ),
        (286, PRIV_READ),
        (289, PRIV_READ),
        (297, PRIV_READ),
        (305, PRIV_READ),
        (313, PRIV_READ),
        (330, PRIV_WRITE),
    ] {
        rows.push(row(PUBLIC, ObjectType::Space, space, privs));
    }
    rows.push(row(REPLICATION, ObjectType::Space, 320, PRIV_WRITE)); // _cluster
    rows.push(row(REPLICATION, ObjectType::Universe, 0, PRIV_READ));
    rows.push(row(SUPER, ObjectType::Universe, 0, PRIV_ALL));
    rows
}

// }}}

// {{{ the model

/// What the model needs to know about spaces, functions and sequences.
pub trait Catalog {
    /// Name and owner of the space, function or sequence `id`; `None` when there is none.
    fn object(&self, object_type: ObjectType, id: u32) -> Option<ObjectInfo>;
    /// Whether `uid` owns a space, a function or a sequence (then it cannot be dropped).
    fn owns_objects(&self, uid: u32) -> bool;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub owner: u32,
}

/// One line of `box.schema.user.info`: `{privs, object_type, object_name}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivInfo {
    pub privs: String,
    pub object_type: &'static str,
    pub object_name: String,
}

/// Effective access of one user: its own grants plus those of every role it has,
/// directly or through other roles.
#[derive(Default, Debug)]
struct Effective {
    universe: u32,
    /// Keyed by `Target::Entity` and `Target::Object` slots.
    objects: HashMap<Target, u32>,
}

impl Effective {
    fn on(&self, target: Target) -> u32 {
        match target {
            Target::Universe => self.universe,
            t => self.objects.get(&t.slot()).copied().unwrap_or(0),
        }
    }
}

/// The authentication tuple of an IPROTO AUTH request (`[mechanism, scramble]`), reduced to
/// what the checks look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthTuple {
    pub part_count: u32,
    /// The second item when it is a string or binary (net.box sends a non-UTF-8 string).
    pub scramble: Option<Vec<u8>>,
}

impl AuthTuple {
    /// From the MessagePack of IPROTO_TUPLE, which must be an array.
    pub fn from_msgpack(bytes: &[u8]) -> Result<AuthTuple, ClientError> {
        let mut rest = bytes;
        let Ok(ValueRef::Array(items)) = rmpv::decode::read_value_ref(&mut rest) else {
            return Err(client_error!(ER_INVALID_MSGPACK, "packet body"));
        };
        let scramble = match items.get(1) {
            Some(ValueRef::String(s)) => Some(s.into_bytes()),
            Some(ValueRef::Binary(b)) => Some(b.to_vec()),
            _ => None,
        };
        Ok(AuthTuple {
            part_count: items.len() as u32,
            scramble,
        })
    }
}

#[derive(Default)]
pub struct AccessModel {
    users: HashMap<u32, UserRow>,
    privs: BTreeMap<PrivKey, PrivRow>,
    effective: RefCell<HashMap<u32, Effective>>,
}

impl AccessModel {
    /// An empty model: no users at all, as before recovery.
    pub fn new() -> AccessModel {
        AccessModel::default()
    }

    /// The state of a fresh instance: [`bootstrap_users`] and [`bootstrap_privs`] applied.
    pub fn bootstrap() -> AccessModel {
        let mut m = AccessModel::new();
        for u in bootstrap_users() {
            m.apply_user_replace(None, Some(u));
        }
        for p in bootstrap_privs() {
            m.apply_priv_replace(None, Some(p));
        }
        m
    }

    fn invalidate(&mut self) {
        self.effective.get_mut().clear();
    }

    // {{{ lookups

    /// A user or role by id.
    pub fn user(&self, uid: u32) -> Option<&UserRow> {
        self.users.get(&uid)
    }

    /// A user or role by name.
    pub fn user_by_name(&self, name: &str) -> Option<&UserRow> {
        self.users.values().find(|u| u.name == name)
    }

    /// Users and roles in id order.
    pub fn users(&self) -> Vec<&UserRow> {
        let mut all: Vec<&UserRow> = self.users.values().collect();
        all.sort_by_key(|u| u.id);
        all
    }

    /// `user_find`: a user or role by id, else `User '42' is not found`.
    pub fn find_user(&self, uid: u32) -> Result<&UserRow, ClientError> {
        self.users
            .get(&uid)
            .ok_or_else(|| client_error!(ER_NO_SUCH_USER, uid.to_string().as_str()))
    }

    /// `user_find_by_name`: a user (not a role) by name, else `User 'x' is not found`
    /// (the name quoted up to 64 bytes), as `box.session.su` and authentication look up.
    pub fn find_user_by_name(&self, name: &str) -> Result<&UserRow, ClientError> {
        self.user_by_name(name)
            .filter(|u| u.kind == UserKind::User)
            .ok_or_else(|| client_error!(ER_NO_SUCH_USER, quote(name.as_bytes(), BOX_INVALID_NAME_MAX).as_str()))
    }

    /// The stored `_priv` row for (grantee, object type, object id), as `_vpriv:get` finds it.
    pub fn priv_row(&self, grantee: u32, object_type: ObjectType, object_id: Option<u32>) -> Option<&PrivRow> {
        self.privs.get(&(grantee, object_type, IdKey::of(object_id)))
    }

    /// The rows granted to `grantee`, in primary-key order.
    pub fn privs_of(&self, grantee: u32) -> impl Iterator<Item = &PrivRow> {
        let from = (grantee, ObjectType::Collation, IdKey::Id(0));
        let to = (grantee, ObjectType::User, IdKey::All);
        self.privs.range(from..=to).map(|(_, row)| row)
    }

    /// Roles granted directly to `uid`, in id order.
    pub fn roles_of(&self, uid: u32) -> Vec<u32> {
        self.privs_of(uid)
            .filter(|p| p.is_role_grant())
            .filter_map(|p| p.object_id)
            .filter(|&r| self.is_role(r))
            .collect()
    }

    /// Users and roles that `role` is granted to directly, in id order.
    pub fn members_of(&self, role: u32) -> Vec<u32> {
        if !self.is_role(role) {
            return Vec::new();
        }
        let mut members: Vec<u32> = self
            .privs
            .values()
            .filter(|p| p.is_role_grant() && p.object_id == Some(role))
            .map(|p| p.grantee)
            .collect();
        members.sort_unstable();
        members
    }

    fn is_role(&self, uid: u32) -> bool {
        self.users.get(&uid).is_some_and(|u| u.kind == UserKind::Role)
    }

    // }}}

    // {{{ effective access

    fn with_effective<R>(&self, uid: u32, f: impl FnOnce(&Effective) -> R) -> R {
        let mut cache = self.effective.borrow_mut();
        let eff = cache.entry(uid).or_insert_with(|| self.compute_effective(uid));
        f(eff)
    }

    /// Own grants plus those of every role reachable through role grants. Roles are
    /// visited once, so a loop (possible only in unchecked data) does no harm.
    fn compute_effective(&self, uid: u32) -> Effective {
        let mut eff = Effective::default();
        if !self.users.contains_key(&uid) {
            return eff;
        }
        let mut seen = HashSet::new();
        let mut stack = vec![uid];
        while let Some(u) = stack.pop() {
            if !seen.insert(u) {
                continue;
            }
            for p in self.privs_of(u) {
                if p.on_one_role() {
                    if p.is_role_grant() {
                        if let Some(role) = p.object_id.filter(|&r| self.is_role(r)) {
                            stack.push(role);
                        }
                    }
                    // Tarantool skips every such row carrying execute when loading grants.
                    if p.access() & PRIV_EXECUTE != 0 {
                        continue;
                    }
                }
                match p.target() {
                    Target::Universe => eff.universe |= p.access(),
                    t => *eff.objects.entry(t.slot()).or_insert(0) |= p.access(),
                }
            }
        }
        if uid == ADMIN {
            // Admin always has the universe, even before its `_priv` row is loaded.
            eff.universe = ACCESS_FULL;
        }
        eff
    }

    /// Effective access on universe (own grants and roles').
    pub fn universe_access(&self, uid: u32) -> u32 {
        self.with_effective(uid, |e| e.universe)
    }

    /// Effective access on every object of a type (grants with object id `''`).
    pub fn entity_access(&self, uid: u32, object_type: ObjectType) -> u32 {
        self.with_effective(uid, |e| e.on(Target::Entity(object_type)))
    }

    /// Effective access on one object (not counting universe or entity grants).
    pub fn object_access(&self, uid: u32, object_type: ObjectType, id: u32) -> u32 {
        let target = match object_type {
            ObjectType::Universe => Target::Universe,
            t => Target::Object(t, id),
        };
        self.with_effective(uid, |e| e.on(target))
    }

    /// Whether `uid` has `role`, directly or through other roles.
    pub fn has_role(&self, uid: u32, role: u32) -> bool {
        let mut seen = HashSet::new();
        let mut stack = self.roles_of(uid);
        while let Some(r) = stack.pop() {
            if r == role {
                return true;
            }
            if seen.insert(r) {
                stack.extend(self.roles_of(r));
            }
        }
        false
    }

    // }}}

    // {{{ access checks

    fn denied(&self, uid: u32, access: &str, object_type: &str, object_name: &str) -> ClientError {
        match self.find_user(uid) {
            Ok(user) => client_error!(ER_ACCESS_DENIED, access, object_type, object_name, &user.name),
            Err(e) => e,
        }
    }

    /// `access_check_session`: the session privilege on universe, needed to log in or
    /// `box.session.su`. `Session access to universe '' is denied for user 'x'`.
    pub fn check_session(&self, uid: u32) -> Result<(), ClientError> {
        let user = self.find_user(uid)?;
        if self.universe_access(uid) & PRIV_SESSION == 0 {
            return Err(client_error!(
                ER_ACCESS_DENIED,
                priv_name(PRIV_SESSION),
                ObjectType::Universe.name(),
                "",
                &user.name
            ));
        }
        Ok(())
    }

    /// `access_check_universe`: `access` plus usage on universe, e.g. execute for EVAL:
    /// `Execute access to universe '' is denied for user 'guest'`.
    pub fn check_universe(&self, uid: u32, access: u32) -> Result<(), ClientError> {
        self.check_universe_object(uid, access, ObjectType::Universe, "")
    }

    /// `access_check_universe_object`: as [`Self::check_universe`] but naming an object in
    /// the error, as CALL of a function that is not in `_func` does (`(uid, PRIV_EXECUTE,
    /// Function, name)` → `Execute access to function 'f' is denied for user 'guest'`).
    pub fn check_universe_object(
        &self,
        uid: u32,
        access: u32,
        object_type: ObjectType,
        object_name: &str,
    ) -> Result<(), ClientError> {
        let access = access | PRIV_USAGE;
        let denied = access & !self.universe_access(uid);
        if denied != 0 {
            return Err(self.denied(uid, priv_name(denied), object_type.name(), object_name));
        }
        Ok(())
    }

    /// `access_check_space`: `access` (read for SELECT, write for DML) on a space, from
    /// universe, all-spaces or the space's own grants; the owner needs only usage.
    /// `Read access to space 'test' is denied for user 'guest'`, or without usage
    /// `Usage access to universe '' is denied for user 'guest'`.
    pub fn check_space(
        &self,
        uid: u32,
        space_id: u32,
        space_name: &str,
        owner: u32,
        access: u32,
    ) -> Result<(), ClientError> {
        self.check_object(uid, ObjectType::Space, space_id, space_name, owner, access | PRIV_USAGE)
    }

    /// `access_check_sequence`: write (and usage) on a sequence, as `next`/`set`/`reset` and
    /// auto-increment need. `Write access to sequence 's' is denied for user 'guest'`.
    pub fn check_sequence(&self, uid: u32, seq_id: u32, seq_name: &str, owner: u32) -> Result<(), ClientError> {
        self.check_object(
            uid,
            ObjectType::Sequence,
            seq_id,
            seq_name,
            owner,
            PRIV_USAGE | PRIV_WRITE,
        )
    }

    fn check_object(
        &self,
        uid: u32,
        object_type: ObjectType,
        id: u32,
        name: &str,
        owner: u32,
        access: u32,
    ) -> Result<(), ClientError> {
        let (universe, entity, object) = self.with_effective(uid, |e| {
            (
                e.universe,
                e.on(Target::Entity(object_type)),
                e.on(Target::Object(object_type, id)),
            )
        });
        let missing = access & !universe & !entity;
        // Usage cannot come from the object; the owner needs nothing else.
        if missing != 0 && (missing & PRIV_USAGE != 0 || (owner != uid && missing & !object != 0)) {
            return Err(if universe & PRIV_USAGE == 0 {
                self.denied(uid, priv_name(PRIV_USAGE), ObjectType::Universe.name(), "")
            } else {
                self.denied(uid, priv_name(access), object_type.name(), name)
            });
        }
        Ok(())
    }

    /// `func_access_check`: execute (and usage) on a function in `_func`, for CALL and
    /// `box.func.f:call()`. Tarantool always checks execute, and reports execute even when
    /// usage is what is missing: `Execute access to function 'f' is denied for user 'guest'`.
    pub fn check_function(&self, uid: u32, func_id: u32, func_name: &str, owner: u32) -> Result<(), ClientError> {
        let need = PRIV_EXECUTE | PRIV_USAGE;
        let (universe, entity, object) = self.with_effective(uid, |e| {
            (
                e.universe,
                e.on(Target::Entity(ObjectType::Function)),
                e.on(Target::Object(ObjectType::Function, func_id)),
            )
        });
        if universe & need == need {
            return Ok(());
        }
        let missing = need & !entity & !universe;
        if missing & PRIV_USAGE != 0 || (owner != uid && missing & !object != 0) {
            return Err(self.denied(uid, priv_name(PRIV_EXECUTE), ObjectType::Function.name(), func_name));
        }
        Ok(())
    }

    /// `access_check_ddl`: the right to create, drop or alter (`privilege`) an object, as the
    /// system-space triggers check it. Universe, all-objects-of-the-type or the object's
    /// own grants give it; the owner (or admin) needs only usage, except for create.
    /// `Create access to space 'sync' is denied for user 'guest'`. `name` is the object's
    /// name as the statement leaves it (the new name of a renamed space or user).
    ///
    /// What Tarantool passes, by statement: space create/drop/alter and index
    /// create/drop/alter → `(space name, space id, space owner, Space, C/D/A)`; function
    /// create/drop → `(name, id, owner, Function, C/D)`; sequence create/drop/alter →
    /// `(name, id, owner, Sequence, C/D/A)`. Users and roles are checked by
    /// [`Self::on_user_replace`], grants by [`Self::on_priv_replace`].
    pub fn check_ddl(
        &self,
        uid: u32,
        name: &str,
        object_id: u32,
        owner: u32,
        object_type: ObjectType,
        privilege: u32,
    ) -> Result<(), ClientError> {
        let target = match object_type {
            ObjectType::Universe => Target::Universe,
            t => Target::Object(t, object_id),
        };
        self.ddl_check(uid, name, owner, target, privilege)
    }

    fn ddl_check(&self, uid: u32, name: &str, owner: u32, target: Target, privilege: u32) -> Result<(), ClientError> {
        let object_type = match target {
            Target::Universe => ObjectType::Universe,
            Target::Entity(t) | Target::Object(t, _) => t,
        };
        let (universe, entity, object) = self.with_effective(uid, |e| {
            let entity = match object_type {
                ObjectType::Universe | ObjectType::Collation => 0,
                t => e.on(Target::Entity(t)),
            };
            let object = match target {
                Target::Object(ObjectType::Collation, _) => 0,
                t => e.on(t),
            };
            (e.universe, entity, object)
        });
        let mut access = (PRIV_USAGE | privilege) & !universe;
        if access == 0 {
            return Ok(());
        }
        let is_owner = owner == uid || uid == ADMIN;
        access &= !entity;
        // Create is never implied by ownership: whoever creates is the owner.
        if access == 0 || (is_owner && access & (PRIV_USAGE | PRIV_CREATE) == 0) {
            return Ok(());
        }
        if access & PRIV_USAGE == 0 {
            access &= !object;
            if access == 0 {
                return Ok(());
            }
        }
        if access & PRIV_USAGE != 0 {
            Err(self.denied(uid, priv_name(PRIV_USAGE), ObjectType::Universe.name(), ""))
        } else {
            // For all-objects grants Tarantool prints an out-of-bounds type name (garbage,
            // or a crash); the type's own name is printed here instead.
            Err(self.denied(uid, priv_name(access), object_type.name(), name))
        }
    }

    // }}}

    // {{{ authentication

    /// Tarantool's `authenticate` for an IPROTO AUTH request; returns the user's id.
    /// Order of checks: the user (not a role) must exist (`User 'x' is not found`); guest
    /// with an empty tuple passes when it has no or the empty password; the user needs
    /// session on universe; then the tuple's shape (`Invalid MsgPack - authentication
    /// request body` / `- authentication scramble` / `- invalid scramble size`); then the
    /// scramble (`Incorrect password supplied for user 'x'`, also for a user without a
    /// password, admin included).
    pub fn authenticate(&self, user_name: &str, salt: &[u8], tuple: &AuthTuple) -> Result<u32, ClientError> {
        let user = self.find_user_by_name(user_name)?;
        if tuple.part_count == 0 && user.id == GUEST && user.auth.is_none_or(|h| h == chap_sha1::hash2("")) {
            return Ok(GUEST);
        }
        self.check_session(user.id)?;
        if tuple.part_count < 2 {
            return Err(client_error!(ER_INVALID_MSGPACK, "authentication request body"));
        }
        let Some(scramble) = &tuple.scramble else {
            return Err(client_error!(ER_INVALID_MSGPACK, "authentication scramble"));
        };
        if scramble.len() != SCRAMBLE_SIZE {
            return Err(client_error!(ER_INVALID_MSGPACK, "invalid scramble size"));
        }
        // No password is an all-zero hash2, which no scramble can match.
        let hash2 = user.auth.unwrap_or([0; SCRAMBLE_SIZE]);
        if !chap_sha1::check_scramble(salt, scramble, &hash2) {
            return Err(client_error!(ER_PASSWORD_MISMATCH, &user.name));
        }
        Ok(user.id)
    }

    // }}}

    // {{{ box.schema.user.info

    /// `box.schema.user.info` / `box.schema.role.info` of `uid` as admin sees it: one line per
    /// `_priv` row, in `_priv` order (object type name, then id, `''` last). `resolve` names
    /// spaces, functions and sequences; users and roles are named here; universe and
    /// all-objects grants have the name `''`.
    pub fn user_info(&self, uid: u32, resolve: impl Fn(ObjectType, u32) -> Option<String>) -> Vec<PrivInfo> {
        self.privs_of(uid)
            .map(|p| {
                let object_name = match (p.object_type, p.object_id) {
                    (ObjectType::Universe, _) | (_, None) => String::new(),
                    (ObjectType::User | ObjectType::Role, Some(id)) => {
                        self.users.get(&id).map(|u| u.name.clone()).unwrap_or_default()
                    }
                    (t, Some(id)) => resolve(t, id).unwrap_or_default(),
                };
                PrivInfo {
                    privs: privilege_names(p.privs),
                    object_type: p.object_type.name(),
                    object_name,
                }
            })
            .collect()
    }

    // }}}

    // {{{ changes from _user

    /// The `_user` on-replace trigger: `actor` (the effective user) needs create, drop or
    /// alter on the user or role; system users cannot be dropped, nor users that still own
    /// objects or privileges; at most [`BOX_USER_MAX`] users and roles exist. Then applies.
    /// Build rows with [`UserRow::from_tuple`], which does the format checks.
    pub fn on_user_replace(
        &mut self,
        actor: u32,
        old: Option<UserRow>,
        new: Option<UserRow>,
        catalog: &dyn Catalog,
    ) -> Result<(), ClientError> {
        let uid = match (&old, &new) {
            (_, Some(row)) | (Some(row), None) => row.id,
            (None, None) => return Ok(()),
        };
        match (self.users.get(&uid), &new) {
            (None, Some(new_row)) => {
                self.ddl_check(
                    actor,
                    &new_row.name,
                    new_row.owner,
                    Target::Object(new_row.kind.object_type(), uid),
                    PRIV_CREATE,
                )?;
                if self.users.len() >= BOX_USER_MAX {
                    return Err(client_error!(ER_USER_MAX, BOX_USER_MAX));
                }
            }
            (Some(cur), None) => {
                self.ddl_check(
                    actor,
                    &cur.name,
                    cur.owner,
                    Target::Object(cur.kind.object_type(), uid),
                    PRIV_DROP,
                )?;
                if uid <= BOX_SYSTEM_USER_ID_MAX || uid == SUPER {
                    return Err(client_error!(
                        ER_DROP_USER,
                        &cur.name,
                        "the user or the role is a system"
                    ));
                }
                if self.has_data(uid, catalog) {
                    return Err(client_error!(ER_DROP_USER, &cur.name, "the user has objects"));
                }
            }
            (Some(cur), Some(new_row)) => {
                // A user owns itself for alter: it may rename itself or change its password.
                self.ddl_check(
                    actor,
                    &new_row.name,
                    uid,
                    Target::Object(cur.kind.object_type(), uid),
                    PRIV_ALTER,
                )?;
            }
            (None, None) => return Ok(()),
        }
        self.apply_user_replace(old, new);
        Ok(())
    }

    /// `user_has_data`: owned spaces, functions or sequences, grants made or received, or
    /// (for a role) members.
    fn has_data(&self, uid: u32, catalog: &dyn Catalog) -> bool {
        catalog.owns_objects(uid)
            || self.privs.values().any(|p| p.grantor == uid || p.grantee == uid)
            || !self.members_of(uid).is_empty()
    }

    /// Applies a `_user` change without checks: for recovery and to undo a rolled-back one.
    pub fn apply_user_replace(&mut self, old: Option<UserRow>, new: Option<UserRow>) {
        if let Some(old) = old {
            self.users.remove(&old.id);
        }
        if let Some(new) = new {
            self.users.insert(new.id, new);
        }
        self.invalidate();
    }

    // }}}

    // {{{ changes from _priv

    /// The `_priv` on-replace trigger (`priv_def_check` + `grant_or_revoke`): grantor and
    /// grantee must exist; `actor` needs grant (insert, replace) or revoke (delete) unless it
    /// is the grantor; the grantor must own the object (admin owns everything; only admin
    /// grants on universe or on all objects of a type; anyone may grant role public);
    /// granting a role must not make a loop; the row must carry privileges; admin's
    /// universe grant cannot be reduced. Then applies.
    pub fn on_priv_replace(
        &mut self,
        actor: u32,
        old: Option<PrivRow>,
        new: Option<PrivRow>,
        catalog: &dyn Catalog,
    ) -> Result<(), ClientError> {
        match (&old, &new) {
            (None, None) => return Ok(()),
            (_, Some(row)) => {
                self.priv_def_check(actor, row, PRIV_GRANT, catalog)?;
                self.check_admin_universe(row, row.access())?;
            }
            (Some(row), None) => {
                self.priv_def_check(actor, row, PRIV_REVOKE, catalog)?;
                self.check_admin_universe(row, 0)?;
            }
        }
        self.apply_priv_replace(old, new);
        Ok(())
    }

    fn check_admin_universe(&self, row: &PrivRow, access: u32) -> Result<(), ClientError> {
        if row.grantee == ADMIN
            && row.object_type == ObjectType::Universe
            && access != ACCESS_FULL
            && self.users.contains_key(&ADMIN)
        {
            return Err(client_error!(ER_GRANT, "can't revoke universe from the admin user"));
        }
        Ok(())
    }

    fn priv_def_check(
        &self,
        actor: u32,
        row: &PrivRow,
        priv_type: u32,
        catalog: &dyn Catalog,
    ) -> Result<(), ClientError> {
        let grantor = self.find_user(row.grantor)?;
        let grantee = self
            .users
            .get(&row.grantee)
            .ok_or_else(|| client_error!(ER_NO_SUCH_USER, row.grantee.to_string().as_str()))?;
        let target = row.target();
        let id = row.object_id.unwrap_or(0);
        // schema_find_name; "(nil)" is what it yields for a missing object.
        let object = match target {
            Target::Object(t @ (ObjectType::Space | ObjectType::Function | ObjectType::Sequence), id) => {
                catalog.object(t, id)
            }
            _ => None,
        };
        let name = match target {
            Target::Universe | Target::Entity(_) => String::new(),
            Target::Object(ObjectType::User | ObjectType::Role, id) => self
                .users
                .get(&id)
                .map_or_else(|| "(nil)".to_string(), |u| u.name.clone()),
            Target::Object(..) => object.as_ref().map_or_else(|| "(nil)".to_string(), |o| o.name.clone()),
        };
        self.ddl_check(actor, &name, grantor.id, target, priv_type)?;
        let not_owner = |owner: u32| owner != grantor.id && grantor.id != ADMIN;
        let denied =
            |type_name: &str| client_error!(ER_ACCESS_DENIED, priv_name(priv_type), type_name, &name, &grantor.name);
        let id_text = id.to_string();
        match target {
            Target::Universe | Target::Entity(ObjectType::Collation) => {
                if target == Target::Universe && grantor.id != ADMIN {
                    return Err(denied(ObjectType::Universe.name()));
                }
            }
            Target::Entity(t) => {
                if grantor.id != ADMIN {
                    return Err(denied(t.name()));
                }
            }
            Target::Object(ObjectType::Space, _) => {
                let Some(o) = &object else {
                    return Err(client_error!(ER_NO_SUCH_SPACE, &id_text));
                };
                if not_owner(o.owner) {
                    return Err(denied(ObjectType::Space.name()));
                }
            }
            Target::Object(ObjectType::Function, _) => {
                let Some(o) = &object else {
                    return Err(client_error!(ER_NO_SUCH_FUNCTION, &id_text));
                };
                if not_owner(o.owner) {
                    return Err(denied(ObjectType::Function.name()));
                }
            }
            Target::Object(ObjectType::Sequence, _) => {
                let Some(o) = &object else {
                    return Err(client_error!(ER_NO_SUCH_SEQUENCE, &id_text));
                };
                if not_owner(o.owner) {
                    return Err(denied(ObjectType::Sequence.name()));
                }
            }
            Target::Object(ObjectType::Role, _) => {
                let role = match self.users.get(&id) {
                    Some(r) if r.kind == UserKind::Role => r,
                    Some(u) => return Err(client_error!(ER_NO_SUCH_ROLE, &u.name)),
                    None => return Err(client_error!(ER_NO_SUCH_ROLE, &id_text)),
                };
                let public_grant = role.id == PUBLIC && row.access() == PRIV_EXECUTE;
                if not_owner(role.owner) && !public_grant {
                    return Err(denied(ObjectType::Role.name()));
                }
                // Checked on revoke too, as Tarantool does.
                self.role_check(grantee, role)?;
            }
            Target::Object(ObjectType::User, _) => {
                let user = match self.users.get(&id) {
                    Some(u) if u.kind == UserKind::User => u,
                    Some(r) => return Err(client_error!(ER_NO_SUCH_USER, &r.name)),
                    None => return Err(client_error!(ER_NO_SUCH_USER, &id_text)),
                };
                if not_owner(user.owner) {
                    return Err(denied(ObjectType::User.name()));
                }
            }
            Target::Object(ObjectType::Universe | ObjectType::Collation, _) => {}
        }
        if row.access() == 0 {
            return Err(client_error!(ER_GRANT, "the grant tuple has no privileges"));
        }
        Ok(())
    }

    /// `role_check`: granting `role` to `grantee` must not make a loop, i.e. `role` must not
    /// be `grantee` or have `grantee` among its roles, directly or not.
    /// `Granting role 'r1' to role 'r3' would create a loop`.
    fn role_check(&self, grantee: &UserRow, role: &UserRow) -> Result<(), ClientError> {
        if role.id == grantee.id || self.has_role(role.id, grantee.id) {
            return Err(client_error!(ER_ROLE_LOOP, &role.name, &grantee.name));
        }
        Ok(())
    }

    /// Applies a `_priv` change without checks: for recovery and to undo a rolled-back one.
    pub fn apply_priv_replace(&mut self, old: Option<PrivRow>, new: Option<PrivRow>) {
        if let Some(old) = old {
            self.privs.remove(&old.key());
        }
        if let Some(new) = new {
            self.privs.insert(new.key(), new);
        }
        self.invalidate();
    }

    // }}}
}

// }}}

#[cfg(test)]
mod tests {
    //! Every expected text below was printed by a real Tarantool 2.6.0 running the same
    //! sequence through `box.schema.*`, `box.session.su` and net.box, unless marked [source].

    use super::*;
    use crate::modules::digest::base64_decode;

    #[derive(Default)]
    struct Cat {
        objects: HashMap<(ObjectType, u32), ObjectInfo>,
    }

    impl Cat {
        fn with(mut self, t: ObjectType, id: u32, name: &str, owner: u32) -> Cat {
            let info = ObjectInfo {
                name: name.to_string(),
                owner,
            };
            self.objects.insert((t, id), info);
            self
        }

        fn name(&self, t: ObjectType, id: u32) -> Option<String> {
            self.objects.get(&(t, id)).map(|o| o.name.clone())
        }
    }

    impl Catalog for Cat {
        fn object(&self, t: ObjectType, id: u32) -> Option<ObjectInfo> {
            self.objects.get(&(t, id)).cloned()
        }

        fn owns_objects(&self, uid: u32) -> bool {
            self.objects.values().any(|o| o.owner == uid)
        }
    }

    const TEST: u32 = 512;
    const F1: u32 = 68;
    const SEQ1: u32 = 1;

    /// The system spaces public can see, plus `test` (512), function `f1` and sequence `seq1`,
    /// all owned by admin.
    fn catalog() -> Cat {
        let mut cat = Cat::default();
        for (id, name) in [
            (276, "_collation"),
            (277, "_vcollation"),
            (280, "_space"),
            (281, "_vspace"),
            (286, "_vsequence"),
            (289, "_vindex"),
            (297, "_vfunc"),
            (304, "_user"),
            (305, "_vuser"),
            (313, "_vpriv"),
            (320, "_cluster"),
            (330, "_truncate"),
        ] {
            cat = cat.with(ObjectType::Space, id, name, ADMIN);
        }
        cat = cat.with(ObjectType::Function, 1, "box.schema.user.info", ADMIN);
        for id in 2..=67 {
            cat = cat.with(ObjectType::Function, id, &format!("SQL{id}"), ADMIN);
        }
        cat.with(ObjectType::Space, TEST, "test", ADMIN)
            .with(ObjectType::Function, F1, "f1", ADMIN)
            .with(ObjectType::Sequence, SEQ1, "seq1", ADMIN)
    }

    fn msg<T: std::fmt::Debug>(r: Result<T, ClientError>) -> String {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.message,
        }
    }

    fn denied<T: std::fmt::Debug>(r: Result<T, ClientError>) -> String {
        let e = r.expect_err("expected access denied");
        assert_eq!(e.code, ER_ACCESS_DENIED, "{}", e.message);
        e.message
    }

    fn user_row(id: u32, owner: u32, name: &str, kind: UserKind, password: Option<&str>) -> UserRow {
        UserRow {
            id,
            owner,
            name: name.to_string(),
            kind,
            auth: password.map(chap_sha1::hash2),
        }
    }

    /// `schema.lua`'s grant: merge into the existing row and replace it as `actor`.
    fn grant(
        m: &mut AccessModel,
        cat: &Cat,
        actor: u32,
        grantee: u32,
        t: ObjectType,
        id: Option<u32>,
        privs: u32,
    ) -> Result<(), ClientError> {
        let old = m.priv_row(grantee, t, id).cloned();
        let merged = privs | old.as_ref().map_or(0, |r| r.privs);
        let new = PrivRow {
            grantor: actor,
            grantee,
            object_type: t,
            object_id: id,
            privs: merged,
        };
        m.on_priv_replace(actor, old, Some(new), cat)
    }

    /// `schema.lua`'s revoke: clear bits, delete the row when none remain.
    fn revoke(m: &mut AccessModel, cat: &Cat, actor: u32, grantee: u32, t: ObjectType, id: Option<u32>, privs: u32) {
        let old = m.priv_row(grantee, t, id).cloned().expect("granted");
        let left = old.privs & !privs;
        let new = (left != 0).then(|| PrivRow {
            privs: left,
            ..old.clone()
        });
        m.on_priv_replace(actor, Some(old), new, cat).expect("revoke");
    }

    /// `box.schema.user.create` as admin: the row, role public, alter on itself,
    /// session+usage on universe.
    fn create_user(m: &mut AccessModel, cat: &Cat, id: u32, name: &str, password: Option<&str>) {
        let row = user_row(id, ADMIN, name, UserKind::User, password);
        m.on_user_replace(ADMIN, None, Some(row), cat).expect("create user");
        grant(m, cat, ADMIN, id, ObjectType::Role, Some(PUBLIC), PRIV_EXECUTE).expect("public");
        grant(m, cat, ADMIN, id, ObjectType::User, Some(id), PRIV_ALTER).expect("alter self");
        let su = PRIV_SESSION | PRIV_USAGE;
        grant(m, cat, ADMIN, id, ObjectType::Universe, Some(0), su).expect("session,usage");
    }

    fn create_role(m: &mut AccessModel, cat: &Cat, actor: u32, id: u32, name: &str) -> Result<(), ClientError> {
        let row = user_row(id, actor, name, UserKind::Role, None);
        m.on_user_replace(actor, None, Some(row), cat)
    }

    fn info(m: &AccessModel, cat: &Cat, uid: u32) -> Vec<[String; 3]> {
        m.user_info(uid, |t, id| cat.name(t, id))
            .into_iter()
            .map(|i| [i.privs, i.object_type.to_string(), i.object_name])
            .collect()
    }

    fn lines(rows: &[[&str; 3]]) -> Vec<[String; 3]> {
        rows.iter().map(|r| r.map(str::to_string)).collect()
    }

    const ALL_NAMES: &str = "read,write,execute,session,usage,create,drop,alter,reference,trigger,insert,update,delete";

    // {{{ privileges

    #[test]
    fn box_priv_and_names() {
        // box.priv of 2.6.0
        let expected = [
            ("R", 1),
            ("W", 2),
            ("X", 4),
            ("S", 8),
            ("U", 16),
            ("C", 32),
            ("D", 64),
            ("A", 128),
            ("REFERENCE", 256),
            ("TRIGGER", 512),
            ("INSERT", 1024),
            ("UPDATE", 2048),
            ("DELETE", 4096),
            ("GRANT", 8192),
            ("REVOKE", 16384),
            ("ALL", 4294967295),
        ];
        assert_eq!(BOX_PRIV, expected);
        assert_eq!(privilege_names(PRIV_ALL), ALL_NAMES);
        assert_eq!(
            privilege_names(PRIV_SESSION | PRIV_USAGE | PRIV_READ | PRIV_WRITE),
            "read,write,session,usage"
        );
        assert_eq!(privilege_names(0), "");
        assert_eq!(priv_name(PRIV_READ | PRIV_USAGE), "Read");
        assert_eq!(priv_name(PRIV_WRITE | PRIV_USAGE), "Write");
        assert_eq!(priv_name(PRIV_GRANT), "Grant");
        assert_eq!(priv_name(PRIV_REVOKE), "Revoke");
        assert_eq!(priv_name(0), "Any");
        assert_eq!(priv_name(1 << 20), "Any");
    }

    #[test]
    fn privilege_strings_parse_like_schema_lua() {
        assert_eq!(
            parse_privileges("read,write,execute"),
            PRIV_READ | PRIV_WRITE | PRIV_EXECUTE
        );
        // Substring search: 'readwrite' was accepted as read+write by 2.6.0.
        assert_eq!(parse_privileges("readwrite"), PRIV_READ | PRIV_WRITE);
        assert_eq!(parse_privileges("Session, USAGE"), PRIV_SESSION | PRIV_USAGE);
        assert_eq!(parse_privileges(ALL_NAMES), PRIV_GRANT - 1);
        assert_eq!(parse_privileges("foo"), 0);

        let check = |text: &str, t: &str| privilege_check(parse_privileges(text), text, t);
        assert_eq!(check("read,write", "universe"), Ok(PRIV_READ | PRIV_WRITE));
        let e = check("foo", "universe").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (98, "Unsupported universe privilege 'foo'")
        );
        assert_eq!(msg(check("Foo", "space")), "Unsupported space privilege 'Foo'");
        assert_eq!(msg(check("session", "space")), "Unsupported space privilege 'session'");
        assert_eq!(msg(check("read", "function")), "Unsupported function privilege 'read'");
        let e = check("read", "bar").unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (49, "Unknown object type 'bar'"));
        assert_eq!(check("execute", "space"), Ok(PRIV_EXECUTE));

        let e = check_role_privilege("read,Session").unwrap_err();
        assert_eq!(e.code, 88);
        assert_eq!(
            e.message,
            "Incorrect grant arguments: system privilege can not be granted to role"
        );
        assert_eq!(check_role_privilege("read,write"), Ok(()));
    }

    // }}}

    // {{{ rows and bootstrap

    fn tuple(v: rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &v).expect("encode");
        out
    }

    fn user_tuple(id: u32, owner: u32, name: &str, kind: &str, auth: rmpv::Value) -> Vec<u8> {
        tuple(rmpv::Value::Array(vec![
            id.into(),
            owner.into(),
            name.into(),
            kind.into(),
            auth,
        ]))
    }

    fn chap(hash: &str) -> rmpv::Value {
        rmpv::Value::Map(vec![("chap-sha1".into(), hash.into())])
    }

    fn empty_map() -> rmpv::Value {
        rmpv::Value::Map(Vec::new())
    }

    #[test]
    fn bootstrap_user_rows_are_tarantools() {
        // box.space._user:select{} of a fresh 2.6.0
        let expected = [
            user_tuple(0, 1, "guest", "user", chap("vhvewKp0tNyweZQ+cFKAlsyphfg=")),
            user_tuple(1, 1, "admin", "user", empty_map()),
            user_tuple(2, 1, "public", "role", empty_map()),
            user_tuple(3, 1, "replication", "role", empty_map()),
            user_tuple(31, 1, "super", "role", empty_map()),
        ];
        let rows = bootstrap_users();
        let tuples: Vec<Vec<u8>> = rows.iter().map(UserRow::to_tuple).collect();
        assert_eq!(tuples, expected);
        for (row, t) in rows.iter().zip(&expected) {
            assert_eq!(&UserRow::from_tuple(t).expect("parse"), row);
        }
    }

    #[test]
    fn bootstrap_priv_rows_are_tarantools() {
        // box.space._priv:select{} of a fresh 2.6.0, in its order
        let mut expected: Vec<(u32, u32, &str, u32, u32)> = vec![
            (1, 0, "role", 2, 4),
            (1, 0, "universe", 0, 24),
            (1, 1, "universe", 0, 4294967295),
        ];
        expected.extend((1..=67).map(|id| (1, 2, "function", id, 4)));
        expected.extend([
            (1, 2, "space", 276, 2),
            (1, 2, "space", 277, 1),
            (1, 2, "space", 281, 1),
            (1, 2, "space", 286, 1),
            (1, 2, "space", 289, 1),
            (1, 2, "space", 297, 1),
            (1, 2, "space", 305, 1),
            (1, 2, "space", 313, 1),
            (1, 2, "space", 330, 2),
            (1, 3, "space", 320, 2),
            (1, 3, "universe", 0, 1),
            (1, 31, "universe", 0, 4294967295),
        ]);
        let rows = bootstrap_privs();
        assert_eq!(rows.len(), expected.len());
        for (row, (grantor, grantee, t, id, privs)) in rows.iter().zip(&expected) {
            let bytes = tuple(rmpv::Value::Array(vec![
                (*grantor).into(),
                (*grantee).into(),
                (*t).into(),
                (*id).into(),
                (*privs).into(),
            ]));
            assert_eq!(row.to_tuple(), bytes);
            assert_eq!(&PrivRow::from_tuple(&bytes).expect("parse"), row);
        }
        let keys: Vec<PrivKey> = rows.iter().map(PrivRow::key).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "primary-key order");
    }

    #[test]
    fn user_tuple_checks() {
        let m = || rmpv::Value::Map(Vec::new());
        let parse = |t: Vec<u8>| UserRow::from_tuple(&t);
        let e = parse(user_tuple(100, 1, "zz", "robot", m())).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (43, "Failed to create user 'zz': unknown user type")
        );
        let e = parse(user_tuple(100, 1, "zz", "user", chap("short"))).unwrap_err();
        assert_eq!(e.message, "Failed to create user 'zz': invalid user password");
        // The key is matched on its first 9 bytes, case-insensitively.
        let odd_key = rmpv::Value::Map(vec![("CHAP-SHA1xx".into(), "short".into())]);
        assert_eq!(
            msg(parse(user_tuple(100, 1, "zz", "user", odd_key))),
            "Failed to create user 'zz': invalid user password"
        );
        let numeric = rmpv::Value::Map(vec![("chap-sha1".into(), 5.into())]);
        assert_eq!(
            msg(parse(user_tuple(106, 1, "z6", "user", numeric))),
            "Failed to create user 'z6': invalid user password"
        );
        // Accepted, with no usable password.
        let other = rmpv::Value::Map(vec![("other".into(), "short".into()), ("chap-sha1".into(), "".into())]);
        assert_eq!(parse(user_tuple(100, 1, "zz", "user", other)).expect("ok").auth, None);

        let e = parse(user_tuple(101, 1, "", "user", m())).unwrap_err();
        assert_eq!(e.code, 70);
        assert_eq!(
            e.message,
            "Invalid identifier '' (expected printable symbols only or it is too long)"
        );
        assert_eq!(
            msg(parse(user_tuple(102, 1, "a\u{1}b", "user", m()))),
            "Invalid identifier 'a\u{1}b' (expected printable symbols only or it is too long)"
        );
        let long = "x".repeat(65001);
        let e = parse(user_tuple(103, 1, &long, "user", m())).unwrap_err();
        assert_eq!(
            e.message,
            format!("Failed to create user '{}': user name is too long", "x".repeat(64))
        );
        let e = parse(user_tuple(
            105,
            1,
            "z5",
            "role",
            rmpv::Value::Map(vec![("x".into(), 1.into())]),
        ))
        .unwrap_err();
        assert_eq!(e.code, 84);
        assert_eq!(
            e.message,
            "Failed to create role 'z5': authentication data can not be set for a role"
        );

        let e = parse(user_tuple(0, 1, "guest", "user", chap(&chap_sha1::hash2_base64("x")))).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (96, "Setting password for guest user has no effect")
        );
        assert_eq!(
            parse(user_tuple(0, 1, "guest", "user", chap(""))).expect("ok").auth,
            None
        );
        assert_eq!(parse(user_tuple(0, 1, "guest", "user", m())).expect("ok").auth, None);
        let alice = parse(user_tuple(32, 1, "alice", "user", chap("GWve3irk+EykTEfVTXhHjH4r17c="))).expect("ok");
        assert_eq!(alice.auth, Some(chap_sha1::hash2("pass")));
        // [source] a non-map auth field (the _user format rejects it before the trigger).
        assert_eq!(
            parse(user_tuple(107, 1, "z7", "user", "pw".into())).unwrap_err().code,
            43
        );
        // [source] field errors of tuple_field_u32/str.
        let short = tuple(rmpv::Value::Array(vec![1.into(), 1.into()]));
        assert_eq!(msg(UserRow::from_tuple(&short)), "Field 3 was not found in the tuple");
        let bad_id = tuple(rmpv::Value::Array(vec![
            "x".into(),
            1.into(),
            "n".into(),
            "user".into(),
        ]));
        assert_eq!(
            msg(UserRow::from_tuple(&bad_id)),
            "Tuple field 1 type does not match one required by operation: expected unsigned"
        );
    }

    #[test]
    fn priv_tuple_object_types() {
        let row = |t: &str, id: rmpv::Value| {
            PrivRow::from_tuple(&tuple(rmpv::Value::Array(vec![
                1.into(),
                32.into(),
                t.into(),
                id,
                1.into(),
            ])))
        };
        let e = row("foo", 1.into()).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (49, "Unknown object type 'foo'"));
        assert_eq!(msg(row("universe", "".into())), "Unknown object type 'universe'");
        assert_eq!(msg(row("Space", 1.into())), "Unknown object type 'Space'");
        let entity = row("space", "".into()).expect("entity");
        assert_eq!(entity.object_id, None);
        // grant('alice', 'read', 'space') stored [1, 32, 'space', '', 1]
        let stored = tuple(rmpv::Value::Array(vec![
            1.into(),
            32.into(),
            "space".into(),
            "".into(),
            1.into(),
        ]));
        assert_eq!(entity.to_tuple(), stored);
    }

    // }}}

    // {{{ info, roles

    #[test]
    fn user_info_of_builtins_and_a_new_user() {
        let cat = catalog();
        let mut m = AccessModel::bootstrap();
        create_user(&mut m, &cat, 32, "alice", Some("pass"));
        let alice_row = user_tuple(32, 1, "alice", "user", chap("GWve3irk+EykTEfVTXhHjH4r17c="));
        assert_eq!(m.user(32).map(UserRow::to_tuple), Some(alice_row));
        assert_eq!(
            info(&m, &cat, 32),
            lines(&[
                ["execute", "role", "public"],
                ["session,usage", "universe", ""],
                ["alter", "user", "alice"],
            ])
        );
        assert_eq!(
            info(&m, &cat, GUEST),
            lines(&[["execute", "role", "public"], ["session,usage", "universe", ""]])
        );
        assert_eq!(info(&m, &cat, ADMIN), lines(&[[ALL_NAMES, "universe", ""]]));
        assert_eq!(info(&m, &cat, SUPER), lines(&[[ALL_NAMES, "universe", ""]]));
        assert_eq!(
            info(&m, &cat, REPLICATION),
            lines(&[["write", "space", "_cluster"], ["read", "universe", ""]])
        );
        let public = info(&m, &cat, PUBLIC);
        assert_eq!(public.len(), 76);
        assert_eq!(public[0], lines(&[["execute", "function", "box.schema.user.info"]])[0]);
        let spaces: Vec<&str> = public[67..].iter().map(|l| l[2].as_str()).collect();
        assert_eq!(
            spaces,
            [
                "_collation",
                "_vcollation",
                "_vspace",
                "_vsequence",
                "_vindex",
                "_vfunc",
                "_vuser",
                "_vpriv",
                "_truncate"
            ]
        );
        assert_eq!(public[67][0], "write");

        // grant('alice', 'readwrite', 'universe'); grant('alice', 'read', 'space')
        let rw = parse_privileges("readwrite");
        grant(&mut m, &cat, ADMIN, 32, ObjectType::Universe, Some(0), rw).expect("grant");
        grant(&mut m, &cat, ADMIN, 32, ObjectType::Space, None, PRIV_READ).expect("grant");
        assert_eq!(
            info(&m, &cat, 32),
            lines(&[
                ["execute", "role", "public"],
                ["read", "space", ""],
                ["read,write,session,usage", "universe", ""],
                ["alter", "user", "alice"],
            ])
        );
        let stored: Vec<Vec<u8>> = m.privs_of(32).map(PrivRow::to_tuple).collect();
        assert_eq!(
            stored[2],
            PrivRow::new(1, 32, "universe", Some(0), 27).expect("row").to_tuple()
        );
    }

    #[test]
    fn entity_grants_list_in_priv_order() {
        let cat = catalog();
        let mut m = AccessModel::bootstrap();
        create_user(&mut m, &cat, 33, "erin", None);
        grant(&mut m, &cat, ADMIN, 33, ObjectType::Space, None, PRIV_READ).expect("grant");
        grant(&mut m, &cat, ADMIN, 33, ObjectType::Function, None, PRIV_EXECUTE).expect("grant");
        grant(&mut m, &cat, ADMIN, 33, ObjectType::Sequence, None, PRIV_WRITE).expect("grant");
        assert_eq!(
            info(&m, &cat, 33),
            lines(&[
                ["execute", "function", ""],
                ["execute", "role", "public"],
                ["write", "sequence", ""],
                ["read", "space", ""],
                ["session,usage", "universe", ""],
                ["alter", "user", "erin"],
            ])
        );
    }

    #[test]
    fn role_loops_are_refused() {
        let cat = catalog();
        let mut m = AccessModel::bootstrap();
        for (id, name) in [(33, "r1"), (34, "r2"), (35, "r3")] {
            create_role(&mut m, &cat, ADMIN, id, name).expect("role");
        }
        grant(&mut m, &cat, ADMIN, 33, ObjectType::Role, Some(34), PRIV_EXECUTE).expect("r2 to r1");
        grant(&mut m, &cat, ADMIN, 34, ObjectType::Role, Some(35), PRIV_EXECUTE).expect("r3 to r2");
        let e = grant(&mut m, &cat, ADMIN, 35, ObjectType::Role, Some(33), PRIV_EXECUTE).unwrap_err();
        assert_eq!(e.code, 87);
        assert_eq!(e.message, "Granting role 'r1' to role 'r3' would create a loop");
        assert_eq!(
            msg(grant(&mut m, &cat, ADMIN, 33, ObjectType::Role, Some(33), PRIV_EXECUTE)),
            "Granting role 'r1' to role 'r1' would create a loop"
        );
        assert_eq!(info(&m, &cat, 33), lines(&[["execute", "role", "r2"]]));
        assert_eq!(m.roles_of(33), [34]);
        assert_eq!(m.members_of(35), [34]);
        assert!(m.has_role(33, 35));
        assert!(!m.has_role(35, 33));
    }

    #[test]
    fn privileges_flow_through_roles_transitively_and_the_cache_follows() {
        let cat = catalog();
        let mut m = AccessModel::bootstrap();
        create_user(&mut m, &cat, 32, "bob", None);
        for (id, name) in [(33, "r1"), (34, "r2")] {
            create_role(&mut m, &cat, ADMIN, id, name).expect("role");
        }
        let read = |m: &AccessModel| m.check_space(32, TEST, "test", ADMIN, PRIV_READ);
        assert_eq!(denied(read(&m)), "Read access to space 'test' is denied for user 'bob'");
        grant(&mut m, &cat, ADMIN, 34, ObjectType::Space, Some(TEST), PRIV_READ).expect("read to r2");
        grant(&mut m, &cat, ADMIN, 32, ObjectType::Role, Some(33), PRIV_EXECUTE).expect("r1 to bob");
        assert!(read(&m).is_err());
        grant(&mut m, &cat, ADMIN, 33, ObjectType::Role, Some(34), PRIV_EXECUTE).expect("r2 to r1");
        assert_eq!(read(&m), Ok(()));
        assert_eq!(m.object_access(32, ObjectType::Space, TEST), PRIV_READ);
        revoke(&mut m, &cat, ADMIN, 33, ObjectType::Role, Some(34), PRIV_EXECUTE);
        assert!(read(&m).is_err());
    }

    #[test]
    fn a_role_grant_with_more_than_execute_is_no_membership() {
        // grant('bob', 'execute,drop', 'role', 'r') stored [1, 32, 'role', 33, 68] and bob
        // did not get r's read on test.
        let cat = catalog();
        let mut m = AccessModel::bootstrap();
        create_user(&mut m, &cat, 32, "bob", None);
        create_role(&mut m, &cat, ADMIN, 33, "r").expect("role");
        grant(&mut m, &cat, ADMIN, 33, ObjectType::Space, Some(TEST), PRIV_READ).expect("grant");
        grant(
            &mut m,
            &cat,
            ADMIN,
            32,
            ObjectType::Role,
            Some(33),
            PRIV_EXECUTE | PRIV_DROP,
        )
        .expect("grant");
        assert_eq!(m.roles_of(32), [PUBLIC]);
        assert_eq!(
            denied(m.check_space(32, TEST, "test", ADMIN, PRIV_READ)),
            "Read access to space 'test' is denied for user 'bob'"
        );
    }

    #[test]
    fn privileges_on_all_roles_are_no_membership() {
        let cat = catalog();
        let mut m = AccessModel::bootstrap();
        create_user(&mut m, &cat, 32, "bob", None);
        for (id, name) in [(33, "r"), (34, "r2")] {
            create_role(&mut m, &cat, ADMIN, id, name).expect("role");
        }
        grant(
            &mut m,
            &cat,
            ADMIN,
            32,
            ObjectType::Role,
            None,
            PRIV_EXECUTE | PRIV_DROP,
        )
        .expect("grant");
        assert_eq!(
            info(&m, &cat, 32),
            lines(&[
                ["execute", "role", "public"],
                ["execute,drop", "role", ""],
                ["session,usage", "universe", ""],
                ["alter", "user", "bob"],
            ])
        );
        assert_eq!(m.roles_of(32), [PUBLIC]);
        let r = m.user(33).cloned();
        assert_eq!(m.on_user_replace(32, r, None, &cat), Ok(()));
        revoke(&mut m, &cat, ADMIN, 32, ObjectType::Role, None, PRIV_DROP);
        let r2 = m.user(34).cloned();
        assert_eq!(
            denied(m.on_user_replace(32, r2, None, &cat)),
            "Drop access to role 'r2' is denied for user 'bob'"
        );
    }

    #[test]
    fn a_role_may_carry_session_and_usage() {
        let cat = catalog();
        let mut m = AccessModel::bootstrap();
        create_user(&mut m, &cat, 32, "eve", None);
        create_role(&mut m, &cat, ADMIN, 33, "sr").expect("role");
        // _priv:insert{1, sr, 'universe', 0, 27}
        let row = PrivRow::new(ADMIN, 33, "universe", Some(0), 27).expect("row");
        m.on_priv_replace(ADMIN, None, Some(row), &cat).expect("insert");
        revoke(
            &mut m,
            &cat,
            ADMIN,
            32,
            ObjectType::Universe,
            Some(0),
            PRIV_SESSION | PRIV_USAGE,
        );
        assert_eq!(
            denied(m.check_session(32)),
            "Session access to universe '' is denied for user 'eve'"
        );
        grant(&mut m, &cat, ADMIN, 32, ObjectType::Role, Some(33), PRIV_EXECUTE).expect("grant");
        assert_eq!(m.check_session(32), Ok(()));
        assert_eq!(m.check_space(32, TEST, "test", ADMIN, PRIV_READ), Ok(()));
    }

    // }}}

    // {{{ checks on data access

    #[test]
    fn guest_by_default() {
        let m = AccessModel::bootstrap();
        let e = m.check_universe(GUEST, PRIV_EXECUTE).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (42, "Execute access to universe '' is denied for user 'guest'")
        );
        assert_eq!(
            denied(m.check_function(GUEST, F1, "f1", ADMIN)),
            "Execute access to function 'f1' is denied for user 'guest'"
        );
        // CALL of a Lua function that is not in _func
        assert_eq!(
            denied(m.check_universe_object(GUEST, PRIV_EXECUTE, ObjectType::Function, "nosuchf")),
            "Execute access to function 'nosuchf' is denied for user 'guest'"
        );
        assert_eq!(
            denied(m.check_space(GUEST, TEST, "test", ADMIN, PRIV_READ)),
            "Read access to space 'test' is denied for user 'guest'"
        );
        assert_eq!(
            denied(m.check_space(GUEST, TEST, "test", ADMIN, PRIV_WRITE)),
            "Write access to space 'test' is denied for user 'guest'"
        );
        assert_eq!(m.check_space(GUEST, 281, "_vspace", ADMIN, PRIV_READ), Ok(()));
        assert_eq!(
            denied(m.check_space(GUEST, 280, "_space", ADMIN, PRIV_READ)),
            "Read access to space '_space' is denied for user 'guest'"
        );
        assert_eq!(
            denied(m.check_space(GUEST, 304, "_user", ADMIN, PRIV_READ)),
            "Read access to space '_user' is denied for user 'guest'"
        );
        assert_eq!(
            denied(m.check_sequence(GUEST, SEQ1, "seq1", ADMIN)),
            "Write access to sequence 'seq1' is denied for user 'guest'"
        );
        assert_eq!(m.check_function(GUEST, 1, "box.schema.user.info", ADMIN), Ok(()));
        assert_eq!(m.check_session(GUEST), Ok(()));
        assert_eq!(m.universe_access(GUEST), PRIV_SESSION | PRIV_USAGE);
    }

    #[test]
    fn admin_has_everything() {
        let m = AccessModel::bootstrap();
        assert_eq!(m.check_universe(ADMIN, PRIV_EXECUTE), Ok(()));
        assert_eq!(m.check_space(ADMIN, TEST, "test", 40, PRIV_WRITE), Ok(()));
        assert_eq!(m.check_ddl(ADMIN, "x", 600, 40, ObjectType::Space, PRIV_DROP), Ok(()));
        // Even with no rows loaded yet.
        let mut empty = AccessModel::new();
        empty.apply_user_replace(None, bootstrap_users().into_iter().nth(1));
        assert_eq!(empty.universe_access(ADMIN), ACCESS_FULL);
    }

    #[test]
    fn without_usage_nothing_works() {
        let cat = catalog();
        let mut m = AccessModel::bootstrap();
        grant(
            &mut m,
            &cat,
            ADMIN,
            GUEST,
            ObjectType::Universe,
            Some(0),
            PRIV_READ | PRIV_WRITE | PRIV_EXECUTE,
        )
        .expect("grant");
        revoke(&mut m, &cat, ADMIN, GUEST, ObjectType::Universe, Some(0), PRIV_USAGE);
        let usage = "Usage access to universe '' is denied for user 'guest'";
        assert_eq!(denied(m.check_space(GUEST, TEST, "test", ADMIN, PRIV_READ)), usage);
        assert_eq!(denied(m.check_space(GUEST, TEST, "test", ADMIN, PRIV_WRITE)), usage);
        assert_eq!(denied(m.check_sequence(GUEST, SEQ1, "seq1", ADMIN)), usage);
        assert_eq!(
            denied(m.check_ddl(GUEST, "sync", 513, GUEST, ObjectType::Space, PRIV_CREATE)),
            usage
        );
        // Functions report execute even when usage is what is missing.
        assert_eq!(
            denied(m.check_function(GUEST, F1, "f1", ADMIN)),
            "Execute access to function 'f1' is denied for user 'guest'"
        );
        // ... and owners get nothing without usage either.
        assert_eq!(denied(m.check_space(GUEST, 513, "d", GUEST, PRIV_READ)), usage);
        assert_eq!(
            denied(m.check_function(GUEST, 70, "df", GUEST)),
            "Execute access to function 'df' is denied for user 'guest'"
        );
    }

    #[test]
    fn owners_and_all_object_grants() {
        let cat = catalog();
        let mut m = AccessModel::bootstrap();
        create_user(&mut m, &cat, 32, "dave", None);
        create_user(&mut m, &cat, 33, "erin", None);
        // dave owns space d (513) and function df (70): no grants needed beyond usage.
        assert_eq!(m.check_space(32, 513, "d", 32, PRIV_WRITE), Ok(()));
        assert_eq!(m.check_space(32, 513, "d", 32, PRIV_READ), Ok(()));
        assert_eq!(m.check_function(32, 70, "df", 32), Ok(()));
        assert_eq!(
            denied(m.check_space(32, TEST, "test", ADMIN, PRIV_READ)),
            "Read access to space 'test' is denied for user 'dave'"
        );
        assert_eq!(
            denied(m.check_function(32, F1, "f1", ADMIN)),
            "Execute access to function 'f1' is denied for user 'dave'"
        );
        // erin: read on all spaces, execute on all functions, write on all sequences.
        grant(&mut m, &cat, ADMIN, 33, ObjectType::Space, None, PRIV_READ).expect("grant");
        grant(&mut m, &cat, ADMIN, 33, ObjectType::Function, None, PRIV_EXECUTE).expect("grant");
        grant(&mut m, &cat, ADMIN, 33, ObjectType::Sequence, None, PRIV_WRITE).expect("grant");
        assert_eq!(m.check_space(33, TEST, "test", ADMIN, PRIV_READ), Ok(()));
        assert_eq!(
            denied(m.check_space(33, TEST, "test", ADMIN, PRIV_WRITE)),
            "Write access to space 'test' is denied for user 'erin'"
        );
        assert_eq!(m.check_function(33, F1, "f1", ADMIN), Ok(()));
        assert_eq!(m.check_sequence(33, SEQ1, "seq1", ADMIN), Ok(()));
        assert_eq!(m.entity_access(33, ObjectType::Space), PRIV_READ);
        revoke(&mut m, &cat, ADMIN, 33, ObjectType::Universe, Some(0), PRIV_USAGE);
        let usage = "Usage access to universe '' is denied for user 'erin'";
        assert_eq!(denied(m.check_space(33, TEST, "test", ADMIN, PRIV_READ)), usage);
        assert_eq!(denied(m.check_sequence(33, SEQ1, "seq1", ADMIN)), usage);
        assert_eq!(
            denied(m.check_function(33, F1, "f1", ADMIN)),
            "Execute access to function 'f1' is denied for user 'erin'"
        );
    }

    #[test]
    fn an_unknown_user_is_reported_as_such() {
        // [source] user_find() when the effective user is gone; the second text is captured.
        let m = AccessModel::bootstrap();
        let e = m.check_universe(77, PRIV_READ).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (45, "User '77' is not found"));
        assert_eq!(msg(m.find_user_by_name("public")), "User 'public' is not found");
    }

    // }}}

    // {{{ DDL checks

    /// guest with read,write,execute on universe but not create/drop/alter.
    fn rwx_guest() -> (AccessModel, Cat) {
        let cat = catalog();
        let mut m = AccessModel::bootstrap();
        let rwx = PRIV_READ | PRIV_WRITE | PRIV_EXECUTE;
        grant(&mut m, &cat, ADMIN, GUEST, ObjectType::Universe, Some(0), rwx).expect("grant");
        create_user(&mut m, &cat, 32, "alice", Some("pass"));
        create_user(&mut m, &cat, 33, "bob", Some("pass"));
        (m, cat)
    }

    #[test]
    fn ddl_on_spaces_functions_sequences() {
        let (m, _) = rwx_guest();
        let ddl = |name, id, owner, t, p| denied(m.check_ddl(GUEST, name, id, owner, t, p));
        assert_eq!(
            ddl("sync", 513, GUEST, ObjectType::Space, PRIV_CREATE),
            "Create access to space 'sync' is denied for user 'guest'"
        );
        assert_eq!(
            ddl("ff", 69, GUEST, ObjectType::Function, PRIV_CREATE),
            "Create access to function 'ff' is denied for user 'guest'"
        );
        assert_eq!(
            ddl("sq", 2, GUEST, ObjectType::Sequence, PRIV_CREATE),
            "Create access to sequence 'sq' is denied for user 'guest'"
        );
        assert_eq!(
            ddl("test", TEST, ADMIN, ObjectType::Space, PRIV_DROP),
            "Drop access to space 'test' is denied for user 'guest'"
        );
        // create_index is create on the space
        assert_eq!(
            ddl("test", TEST, ADMIN, ObjectType::Space, PRIV_CREATE),
            "Create access to space 'test' is denied for user 'guest'"
        );
        // rename: the new name is reported
        assert_eq!(
            ddl("t2", TEST, ADMIN, ObjectType::Space, PRIV_ALTER),
            "Alter access to space 't2' is denied for user 'guest'"
        );
        assert_eq!(
            ddl("f1", F1, ADMIN, ObjectType::Function, PRIV_DROP),
            "Drop access to function 'f1' is denied for user 'guest'"
        );
        assert_eq!(
            ddl("seq1", SEQ1, ADMIN, ObjectType::Sequence, PRIV_DROP),
            "Drop access to sequence 'seq1' is denied for user 'guest'"
        );
        assert_eq!(
            ddl("seq1", SEQ1, ADMIN, ObjectType::Sequence, PRIV_ALTER),
            "Alter access to sequence 'seq1' is denied for user 'guest'"
        );
        // Owners may drop and alter, but create needs the privilege.
        assert_eq!(
            m.check_ddl(GUEST, "own", 513, GUEST, ObjectType::Space, PRIV_DROP),
            Ok(())
        );
        assert_eq!(
            m.check_ddl(GUEST, "own", 513, GUEST, ObjectType::Space, PRIV_ALTER),
            Ok(())
        );
    }

    #[test]
    fn ddl_on_users_and_roles() {
        let (mut m, cat) = rwx_guest();
        let carol = user_row(34, GUEST, "carol", UserKind::User, None);
        let e = m.on_user_replace(GUEST, None, Some(carol), &cat).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (42, "Create access to user 'carol' is denied for user 'guest'")
        );
        assert_eq!(
            denied(create_role(&mut m, &cat, GUEST, 34, "rr")),
            "Create access to role 'rr' is denied for user 'guest'"
        );
        let bob = m.user(33).cloned();
        assert_eq!(
            denied(m.on_user_replace(GUEST, bob.clone(), None, &cat)),
            "Drop access to user 'bob' is denied for user 'guest'"
        );
        let replication = m.user(REPLICATION).cloned();
        assert_eq!(
            denied(m.on_user_replace(GUEST, replication, None, &cat)),
            "Drop access to role 'replication' is denied for user 'guest'"
        );
        let bobby = bob.clone().map(|u| UserRow {
            name: "bobby".into(),
            ..u
        });
        assert_eq!(
            denied(m.on_user_replace(GUEST, bob.clone(), bobby, &cat)),
            "Alter access to user 'bobby' is denied for user 'guest'"
        );
        let new_password = bob.clone().map(|u| UserRow {
            auth: Some(chap_sha1::hash2("x")),
            ..u
        });
        assert_eq!(
            denied(m.on_user_replace(GUEST, bob, new_password, &cat)),
            "Alter access to user 'bob' is denied for user 'guest'"
        );
        // A user alters itself (passwd, rename) without any privilege.
        let alice = m.user(32).cloned();
        let renamed = alice.clone().map(|u| UserRow {
            name: "alicia".into(),
            ..u
        });
        assert_eq!(m.on_user_replace(32, alice, renamed, &cat), Ok(()));
        assert_eq!(m.user_by_name("alicia").map(|u| u.id), Some(32));
        let bob = m.user(33).cloned();
        let bobby = bob.clone().map(|u| UserRow {
            name: "bobby".into(),
            ..u
        });
        assert_eq!(
            denied(m.on_user_replace(32, bob, bobby, &cat)),
            "Alter access to user 'bobby' is denied for user 'alicia'"
        );
    }

    #[test]
    fn dropping_users() {
        let (mut m, cat) = rwx_guest();
        let alice = m.user(32).cloned();
        let e = m.on_user_replace(ADMIN, alice, None, &cat).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (44, "Failed to drop user or role 'alice': the user has objects")
        );
        for (uid, name) in [(GUEST, "guest"), (PUBLIC, "public"), (SUPER, "super")] {
            let row = m.user(uid).cloned();
            assert_eq!(
                msg(m.on_user_replace(ADMIN, row, None, &cat)),
                format!("Failed to drop user or role '{name}': the user or the role is a system")
            );
        }
        // box.schema.user.drop revokes everything first; then the row goes.
        let grants: Vec<PrivRow> = m.privs_of(32).cloned().collect();
        for g in grants {
            m.on_priv_replace(ADMIN, Some(g), None, &cat).expect("revoke");
        }
        let alice = m.user(32).cloned();
        assert_eq!(m.on_user_replace(ADMIN, alice, None, &cat), Ok(()));
        assert!(m.user(32).is_none());
        // A role that is granted to someone has data too.
        create_role(&mut m, &cat, ADMIN, 34, "r").expect("role");
        grant(&mut m, &cat, ADMIN, 33, ObjectType::Role, Some(34), PRIV_EXECUTE).expect("grant");
        let r = m.user(34).cloned();
        assert_eq!(
            msg(m.on_user_replace(ADMIN, r, None, &cat)),
            "Failed to drop user or role 'r': the user has objects"
        );
    }

    #[test]
    fn at_most_32_users_and_roles() {
        let cat = catalog();
        let mut m = AccessModel::bootstrap();
        for i in 0..27 {
            let row = user_row(32 + i, ADMIN, &format!("u{}", i + 1), UserKind::User, None);
            m.on_user_replace(ADMIN, None, Some(row), &cat).expect("create");
        }
        let row = user_row(59, ADMIN, "u28", UserKind::User, None);
        let e = m.on_user_replace(ADMIN, None, Some(row), &cat).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (56, "A limit on the total number of users has been reached: 32")
        );
    }

    #[test]
    fn creating_as_a_user_with_create() {
        let (mut m, mut cat) = rwx_guest();
        grant(
            &mut m,
            &cat,
            ADMIN,
            32,
            ObjectType::Universe,
            Some(0),
            PRIV_READ | PRIV_WRITE | PRIV_EXECUTE | PRIV_CREATE,
        )
        .expect("grant");
        assert_eq!(
            m.check_ddl(32, "amine", 513, 32, ObjectType::Space, PRIV_CREATE),
            Ok(())
        );
        cat = cat.with(ObjectType::Space, 513, "amine", 32);
        assert_eq!(m.check_ddl(32, "amine", 513, 32, ObjectType::Space, PRIV_DROP), Ok(()));
        assert_eq!(
            denied(m.check_ddl(32, "test", TEST, ADMIN, ObjectType::Space, PRIV_DROP)),
            "Drop access to space 'test' is denied for user 'alice'"
        );
        create_role(&mut m, &cat, 32, 34, "arole").expect("role");
        let carol = user_row(35, 32, "carol", UserKind::User, None);
        m.on_user_replace(32, None, Some(carol.clone()), &cat).expect("carol");
        // alice owns carol and may drop her; bob is admin's.
        assert_eq!(m.on_user_replace(32, Some(carol), None, &cat), Ok(()));
        let bob = m.user(33).cloned();
        assert_eq!(
            denied(m.on_user_replace(32, bob, None, &cat)),
            "Drop access to user 'bob' is denied for user 'alice'"
        );
        // Grants by alice: only on what she owns, and role public.
        assert_eq!(
            denied(grant(&mut m, &cat, 32, 33, ObjectType::Space, Some(TEST), PRIV_READ)),
            "Grant access to space 'test' is denied for user 'alice'"
        );
        assert_eq!(
            grant(&mut m, &cat, 32, 33, ObjectType::Space, Some(513), PRIV_READ),
            Ok(())
        );
        assert_eq!(
            grant(&mut m, &cat, 32, 33, ObjectType::Role, Some(34), PRIV_EXECUTE),
            Ok(())
        );
        assert_eq!(
            denied(grant(
                &mut m,
                &cat,
                32,
                33,
                ObjectType::Role,
                Some(REPLICATION),
                PRIV_EXECUTE
            )),
            "Grant access to role 'replication' is denied for user 'alice'"
        );
        assert_eq!(m.roles_of(33), [PUBLIC, 34]);
        let bob_roles: Vec<[String; 3]> = info(&m, &cat, 33).into_iter().filter(|l| l[1] == "role").collect();
        assert_eq!(
            bob_roles,
            lines(&[["execute", "role", "public"], ["execute", "role", "arole"]])
        );
    }

    // }}}

    // {{{ grant checks (_priv trigger)

    #[test]
    fn grants_by_a_user_without_grant_rights() {
        let (mut m, cat) = rwx_guest();
        let mut g = |t, id, p| grant(&mut m, &cat, GUEST, 33, t, id, p);
        assert_eq!(
            denied(g(ObjectType::Space, Some(TEST), PRIV_READ)),
            "Grant access to space 'test' is denied for user 'guest'"
        );
        assert_eq!(
            denied(g(ObjectType::Universe, Some(0), PRIV_READ)),
            "Grant access to universe '' is denied for user 'guest'"
        );
        // Anyone may grant role public.
        assert_eq!(g(ObjectType::Role, Some(PUBLIC), PRIV_EXECUTE), Ok(()));
        assert_eq!(
            denied(g(ObjectType::Role, Some(REPLICATION), PRIV_EXECUTE)),
            "Grant access to role 'replication' is denied for user 'guest'"
        );
        assert_eq!(
            denied(g(ObjectType::User, Some(32), PRIV_ALTER)),
            "Grant access to user 'alice' is denied for user 'guest'"
        );
        // Only admin grants on all objects of a type (Tarantool's message here prints an
        // out-of-bounds type name; the type's own name is used instead).
        assert_eq!(
            g(ObjectType::Space, None, PRIV_READ).unwrap_err().code,
            ER_ACCESS_DENIED
        );
        // Claiming admin as the grantor needs the grant privilege itself.
        let spoofed = PrivRow::new(ADMIN, 33, "space", Some(TEST), PRIV_READ).expect("row");
        assert_eq!(
            denied(m.on_priv_replace(GUEST, None, Some(spoofed), &cat)),
            "Grant access to space 'test' is denied for user 'guest'"
        );
        // Deleting a row is checked as revoke.
        let row = m.priv_row(33, ObjectType::Universe, Some(0)).cloned();
        assert_eq!(
            denied(m.on_priv_replace(GUEST, row, None, &cat)),
            "Revoke access to universe '' is denied for user 'guest'"
        );
    }

    #[test]
    fn raw_priv_rows_referring_to_nothing() {
        let (mut m, cat) = rwx_guest();
        let mut insert = |grantor, grantee, t: &str, id: u32, privs| {
            let row = PrivRow::new(grantor, grantee, t, Some(id), privs)?;
            m.on_priv_replace(ADMIN, None, Some(row), &cat)
        };
        let e = insert(1, 32, "space", 999, 1).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (36, "Space '999' does not exist"));
        let e = insert(1, 32, "function", 999, 1).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (51, "Function '999' does not exist"));
        let e = insert(1, 32, "role", 999, 4).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (82, "Role '999' is not found"));
        assert_eq!(msg(insert(1, 32, "role", 1, 4)), "Role 'admin' is not found");
        assert_eq!(msg(insert(1, 32, "user", 2, 4)), "User 'public' is not found");
        assert_eq!(msg(insert(1, 32, "user", 999, 4)), "User '999' is not found");
        let e = insert(1, 32, "sequence", 999, 4).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (145, "Sequence '999' does not exist"));
        assert_eq!(msg(insert(1, 32, "foo", 1, 4)), "Unknown object type 'foo'");
        assert_eq!(msg(insert(1, 999, "universe", 0, 4)), "User '999' is not found");
        assert_eq!(msg(insert(999, 32, "universe", 0, 4)), "User '999' is not found");
        let e = insert(1, 32, "space", 280, 0).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (88, "Incorrect grant arguments: the grant tuple has no privileges")
        );
        let admin_universe = m.priv_row(ADMIN, ObjectType::Universe, Some(0)).cloned();
        let reduced = admin_universe.clone().map(|r| PrivRow { privs: 7, ..r });
        let cant = "Incorrect grant arguments: can't revoke universe from the admin user";
        assert_eq!(
            msg(m.on_priv_replace(ADMIN, admin_universe.clone(), reduced, &cat)),
            cant
        );
        assert_eq!(msg(m.on_priv_replace(ADMIN, admin_universe, None, &cat)), cant);
        assert_eq!(m.universe_access(ADMIN), ACCESS_FULL);
    }

    #[test]
    fn unchecked_apply_undoes_a_grant() {
        let cat = catalog();
        let mut m = AccessModel::bootstrap();
        let row = PrivRow::new(ADMIN, GUEST, "space", Some(TEST), PRIV_READ).expect("row");
        m.on_priv_replace(ADMIN, None, Some(row.clone()), &cat).expect("grant");
        assert_eq!(m.check_space(GUEST, TEST, "test", ADMIN, PRIV_READ), Ok(()));
        // rollback
        m.apply_priv_replace(Some(row), None);
        assert!(m.check_space(GUEST, TEST, "test", ADMIN, PRIV_READ).is_err());
    }

    // }}}

    // {{{ authentication

    fn salt() -> Vec<u8> {
        base64_decode(b"1aaQFi0HmrsWbrOi1HBHpqrRvJsXCjB7rFCRkZm7vDY=")
    }

    fn auth_with(salt: &[u8], password: &str) -> AuthTuple {
        AuthTuple {
            part_count: 2,
            scramble: Some(chap_sha1::scramble(salt, password).to_vec()),
        }
    }

    #[test]
    fn authentication() {
        let (mut m, cat) = rwx_guest();
        let salt = salt();
        assert_eq!(m.authenticate("alice", &salt, &auth_with(&salt, "pass")), Ok(32));
        let e = m.authenticate("alice", &salt, &auth_with(&salt, "wrong")).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (47, "Incorrect password supplied for user 'alice'")
        );
        let e = m.authenticate("nobody", &salt, &auth_with(&salt, "wrong")).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (45, "User 'nobody' is not found"));
        // admin has no password: nothing matches
        for pw in ["", "x"] {
            assert_eq!(
                msg(m.authenticate("admin", &salt, &auth_with(&salt, pw))),
                "Incorrect password supplied for user 'admin'"
            );
        }
        assert_eq!(
            msg(m.authenticate("public", &salt, &auth_with(&salt, "x"))),
            "User 'public' is not found"
        );
        // guest: an empty tuple, or the empty password
        let empty = AuthTuple {
            part_count: 0,
            scramble: None,
        };
        assert_eq!(m.authenticate("guest", &salt, &empty), Ok(GUEST));
        assert_eq!(m.authenticate("guest", &salt, &auth_with(&salt, "")), Ok(GUEST));
        assert_eq!(
            msg(m.authenticate("guest", &salt, &auth_with(&salt, "x"))),
            "Incorrect password supplied for user 'guest'"
        );
        // a user without a password
        create_user(&mut m, &cat, 34, "nopw", None);
        assert_eq!(
            msg(m.authenticate("nopw", &salt, &auth_with(&salt, ""))),
            "Incorrect password supplied for user 'nopw'"
        );
        // session is checked before the password
        revoke(&mut m, &cat, ADMIN, 34, ObjectType::Universe, Some(0), PRIV_SESSION);
        assert_eq!(
            denied(m.authenticate("nopw", &salt, &auth_with(&salt, "x"))),
            "Session access to universe '' is denied for user 'nopw'"
        );
        // guest with {} in _user: only the empty tuple gets in
        let guest = m.user(GUEST).cloned();
        let no_password = guest.clone().map(|g| UserRow { auth: None, ..g });
        m.on_user_replace(ADMIN, guest, no_password, &cat).expect("replace");
        assert_eq!(m.authenticate("guest", &salt, &empty), Ok(GUEST));
        assert_eq!(
            msg(m.authenticate("guest", &salt, &auth_with(&salt, ""))),
            "Incorrect password supplied for user 'guest'"
        );
    }

    #[test]
    fn authentication_tuple_shapes() {
        // [source] authenticate(): shape errors come after the session check.
        let m = AccessModel::bootstrap();
        let salt = salt();
        let one = AuthTuple {
            part_count: 1,
            scramble: None,
        };
        let e = m.authenticate("guest", &salt, &one).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (20, "Invalid MsgPack - authentication request body")
        );
        let not_bytes = AuthTuple {
            part_count: 2,
            scramble: None,
        };
        assert_eq!(
            msg(m.authenticate("guest", &salt, &not_bytes)),
            "Invalid MsgPack - authentication scramble"
        );
        let short = AuthTuple {
            part_count: 2,
            scramble: Some(vec![0; 19]),
        };
        assert_eq!(
            msg(m.authenticate("guest", &salt, &short)),
            "Invalid MsgPack - invalid scramble size"
        );

        // net.box sends the scramble as a (non-UTF-8) str, Python as bin.
        let s = chap_sha1::scramble(&salt, "");
        let mut netbox = vec![0x92, 0xa9];
        netbox.extend_from_slice(b"chap-sha1");
        netbox.push(0xb4);
        netbox.extend_from_slice(&s);
        let t = AuthTuple::from_msgpack(&netbox).expect("decode");
        assert_eq!(t.scramble.as_deref(), Some(&s[..]));
        assert_eq!(m.authenticate("guest", &salt, &t), Ok(GUEST));
        let mut python = vec![0x92, 0xa9];
        python.extend_from_slice(b"chap-sha1");
        python.extend_from_slice(&[0xc4, 0x14]);
        python.extend_from_slice(&s);
        assert_eq!(AuthTuple::from_msgpack(&python).expect("decode"), t);
        assert_eq!(AuthTuple::from_msgpack(&[0x90]).expect("decode").part_count, 0);
        assert_eq!(
            AuthTuple::from_msgpack(&[0x92, 0xa1, b'x', 0x05])
                .expect("decode")
                .scramble,
            None
        );
    }

    // }}}
}
