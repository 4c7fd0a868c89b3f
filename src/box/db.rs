//! The database of one instance: the schema, open transactions, and the data-changing
//! requests (insert, replace, update, upsert, delete) with their undo and their WAL rows.

use super::errcode::*;
use super::error::ClientError;
use super::mp;
use super::schema::{self, Schema};
use super::space::{DupMode, Space};
use super::tuple::Tuple;
use super::update;
use crate::client_error;

/// IPROTO request types, as WAL rows carry them.
pub const IPROTO_INSERT: u32 = 2;
pub const IPROTO_REPLACE: u32 = 3;
pub const IPROTO_UPDATE: u32 = 4;
pub const IPROTO_DELETE: u32 = 5;
pub const IPROTO_UPSERT: u32 = 9;

pub const KEY_SPACE_ID: u8 = 0x10;
pub const KEY_INDEX_ID: u8 = 0x11;
pub const KEY_INDEX_BASE: u8 = 0x15;
pub const KEY_KEY: u8 = 0x20;
pub const KEY_TUPLE: u8 = 0x21;
pub const KEY_OPS: u8 = 0x28;

/// A data-changing request.
#[derive(Debug, Clone)]
pub enum Request<'a> {
    Insert {
        space_id: u32,
        tuple: Tuple,
    },
    Replace {
        space_id: u32,
        tuple: Tuple,
    },
    Update {
        space_id: u32,
        index_id: u32,
        key: &'a [u8],
        ops: &'a [u8],
        index_base: i64,
    },
    Upsert {
        space_id: u32,
        tuple: Tuple,
        ops: &'a [u8],
        index_base: i64,
    },
    Delete {
        space_id: u32,
        index_id: u32,
        key: &'a [u8],
    },
}

impl Request<'_> {
    pub fn space_id(&self) -> u32 {
        match self {
            Request::Insert { space_id, .. }
            | Request::Replace { space_id, .. }
            | Request::Update { space_id, .. }
            | Request::Upsert { space_id, .. }
            | Request::Delete { space_id, .. } => *space_id,
        }
    }
}

/// One executed statement: what it changed (for undo) and the row it logs.
#[derive(Debug, Clone)]
pub struct Stmt {
    pub space_id: u32,
    pub old: Option<Tuple>,
    pub new: Option<Tuple>,
    /// (request type, body, group id); None for temporary spaces.
    pub row: Option<(u32, Vec<u8>, u32)>,
    /// The space is `is_sync`: the transaction waits for the synchronous quorum.
    pub is_sync: bool,
}

#[derive(Debug, Default)]
pub struct Txn {
    pub id: u64,
    pub stmts: Vec<Stmt>,
    pub aborted_by_yield: bool,
}

/// Why the instance is read-only: any reason is enough (`box.info.ro`).
#[derive(Debug, Default, Clone, Copy)]
pub struct RoReasons {
    /// `box.cfg.read_only`.
    pub cfg: bool,
    /// Fewer upstreams than `replication_connect_quorum` (`box.info.status` 'orphan').
    pub orphan: bool,
    /// Raft is on and this node is not the leader.
    pub election: bool,
    /// The synchronous queue holds another instance's transactions, or is frozen.
    pub limbo: bool,
}

/// Request counters for `box.stat()`.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub insert: u64,
    pub replace: u64,
    pub update: u64,
    pub upsert: u64,
    pub delete: u64,
    pub select: u64,
    pub begin: u64,
    pub commit: u64,
    pub rollback: u64,
    pub error: u64,
}

pub struct Db {
    pub schema: Schema,
    /// Open transactions by fiber id (hashbrown's hash: every statement looks here).
    pub txns: hashbrown::HashMap<u64, Txn>,
    next_txn_id: u64,
    pub read_only: bool,
    pub ro_reasons: RoReasons,
    pub stats: Stats,
    /// Errors to log (upsert's skipped operations); the Lua layer writes them out.
    pub pending_errors: Vec<String>,
    /// (space id, old, new) of the last request in a transaction that changed something:
    /// what on_replace triggers see.
    pub last_change: Option<(u32, Option<Tuple>, Option<Tuple>)>,
    /// The fiber applying a replicated transaction through the Lua API (spaces with
    /// triggers, src/box/apply.rs): its statements skip the read-only and access checks.
    pub replicating: Option<u64>,
}

impl Default for Db {
    fn default() -> Self {
        Db::new()
    }
}

fn body_with_tuple(space_id: u32, tuple: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(tuple.len() + 8);
    mp::write_map_header(&mut b, 2);
    b.push(KEY_SPACE_ID);
    mp::write_uint(&mut b, space_id as u64);
    b.push(KEY_TUPLE);
    b.extend_from_slice(tuple);
    b
}

fn body_with_key(space_id: u32, key: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(key.len() + 8);
    mp::write_map_header(&mut b, 3);
    b.push(KEY_SPACE_ID);
    mp::write_uint(&mut b, space_id as u64);
    b.push(KEY_INDEX_ID);
    b.push(0);
    b.push(KEY_KEY);
    b.extend_from_slice(key);
    b
}

impl Db {
    pub fn new() -> Db {
        Db {
            schema: Schema::new(),
            txns: hashbrown::HashMap::new(),
            next_txn_id: 1,
            read_only: false,
            ro_reasons: RoReasons::default(),
            stats: Stats::default(),
            pending_errors: Vec::new(),
            last_change: None,
            replicating: None,
        }
    }

    pub fn space(&self, id: u32) -> Result<&Space, ClientError> {
        self.schema
            .space(id)
            .ok_or_else(|| client_error!(ER_NO_SUCH_SPACE, id.to_string()))
    }

    // {{{ transactions

    pub fn in_txn(&self, fid: u64) -> bool {
        self.txns.contains_key(&fid)
    }

    pub fn begin(&mut self, fid: u64) -> Result<u64, ClientError> {
        if self.txns.contains_key(&fid) {
            return Err(client_error!(ER_ACTIVE_TRANSACTION));
        }
        let id = self.next_txn_id;
        self.next_txn_id += 1;
        self.txns.insert(fid, Txn { id, ..Txn::default() });
        self.stats.begin += 1;
        Ok(id)
    }

    /// The row (a DML body) changes an `is_sync` space.
    pub fn is_sync_row(&self, body: &[u8]) -> bool {
        parse_body(body)
            .ok()
            .and_then(|f| f.space_id)
            .and_then(|id| self.schema.space(id))
            .is_some_and(|s| s.def.is_sync)
    }

    /// Changes a reason to be read-only; `read_only` (what writes check) follows.
    pub fn set_ro(&mut self, f: impl FnOnce(&mut RoReasons)) {
        f(&mut self.ro_reasons);
        let r = self.ro_reasons;
        self.read_only = r.cfg || r.orphan || r.election || r.limbo;
    }

    /// Ends the fiber's transaction: its statements to be logged, or an error (the
    /// transaction was aborted by a yield and is rolled back already).
    pub fn commit(&mut self, fid: u64) -> Result<Vec<Stmt>, ClientError> {
        let Some(txn) = self.txns.remove(&fid) else {
            return Ok(Vec::new());
        };
        if txn.aborted_by_yield {
            return Err(client_error!(ER_TRANSACTION_YIELD));
        }
        self.stats.commit += 1;
        Ok(txn.stmts)
    }

    pub fn rollback(&mut self, fid: u64) {
        if let Some(txn) = self.txns.remove(&fid) {
            self.stats.rollback += 1;
            self.undo(txn.stmts);
        }
    }

    /// Savepoints are positions in the statement list.
    pub fn savepoint(&self, fid: u64) -> Result<(u64, usize), ClientError> {
        let txn = self.txns.get(&fid).ok_or_else(|| client_error!(ER_NO_TRANSACTION))?;
        Ok((txn.id, txn.stmts.len()))
    }

    pub fn rollback_to(&mut self, fid: u64, txn_id: u64, pos: usize) -> Result<(), ClientError> {
        let txn = self
            .txns
            .get_mut(&fid)
            .ok_or_else(|| client_error!(ER_NO_TRANSACTION))?;
        if txn.id != txn_id || pos > txn.stmts.len() {
            return Err(client_error!(ER_NO_SUCH_SAVEPOINT));
        }
        let undone = txn.stmts.split_off(pos);
        self.undo(undone);
        Ok(())
    }

    /// A fiber yielded: memtx without MVCC cannot keep its transaction open.
    pub fn abort_by_yield(&mut self, fid: u64) {
        let Some(txn) = self.txns.get_mut(&fid) else { return };
        if txn.stmts.is_empty() || txn.aborted_by_yield {
            return;
        }
        txn.aborted_by_yield = true;
        let stmts = std::mem::take(&mut txn.stmts);
        self.stats.rollback += 1;
        self.undo(stmts);
    }

    /// Reverts statements, newest first.
    pub fn undo(&mut self, stmts: Vec<Stmt>) {
        for s in stmts.into_iter().rev() {
            if let Some(space) = self.schema.space_mut(s.space_id) {
                if let Some(n) = &s.new {
                    space.remove(n);
                }
                if let Some(o) = &s.old {
                    space.restore(o);
                }
            }
            if Schema::is_system(s.space_id) {
                let _ = self
                    .schema
                    .on_system_replace(s.space_id, s.new.as_ref(), s.old.as_ref(), schema::ADMIN, false);
            }
        }
    }

    // }}}

    /// Executes a request for fiber `fid` as user `uid`. The statement joins the fiber's
    /// transaction; without one it is returned for the caller to commit (`autocommit`).
    /// Returns the tuple Lua sees (the new one; the deleted one for delete) and the
    /// statement when it is the caller's to commit.
    pub fn execute(
        &mut self,
        fid: u64,
        uid: u32,
        req: Request,
        checked: bool,
    ) -> Result<(Option<Tuple>, Option<Stmt>), ClientError> {
        let in_txn = match self.txns.get(&fid) {
            Some(txn) if txn.aborted_by_yield => return Err(client_error!(ER_TRANSACTION_YIELD)),
            Some(_) => true,
            None => false,
        };
        self.last_change = None;
        let checked = checked && self.replicating != Some(fid);
        let result = self.execute_stmt(uid, req, checked);
        let stmt = match result {
            Ok(Some(stmt)) => stmt,
            Ok(None) => return Ok((None, None)),
            Err(e) => {
                self.stats.error += 1;
                return Err(e);
            }
        };
        let shown = if stmt.new.is_some() {
            stmt.new.clone()
        } else {
            stmt.old.clone()
        };
        if !in_txn {
            return Ok((shown, Some(stmt)));
        }
        // Only read by lua/box.lua's trigger path, which always writes in a transaction.
        self.last_change = Some((stmt.space_id, stmt.old.clone(), stmt.new.clone()));
        match self.txns.get_mut(&fid) {
            Some(txn) => {
                txn.stmts.push(stmt);
                Ok((shown, None))
            }
            None => Ok((shown, Some(stmt))),
        }
    }

    fn execute_stmt(&mut self, uid: u32, req: Request, checked: bool) -> Result<Option<Stmt>, ClientError> {
        let space_id = req.space_id();
        // Borrowed mutably from the start: insert and replace need no second lookup.
        let space = self
            .schema
            .spaces
            .get_mut(&space_id)
            .ok_or_else(|| client_error!(ER_NO_SUCH_SPACE, space_id.to_string()))?;
        if space.def.engine == "sysview" {
            return Err(client_error!(
                ER_UNSUPPORTED_INDEX_FEATURE,
                "primary",
                "TREE",
                space.name(),
                "sysview",
                "replace"
            ));
        }
        if checked && self.read_only && !space.def.temporary {
            return Err(client_error!(ER_READONLY));
        }
        // DDL (rows of _space, _index, _func, _user, _priv) is checked as create, alter and
        // drop of the object, as Tarantool does, not as writes to the system space.
        let ddl = Schema::is_system(space_id) && space_id != schema::CLUSTER_ID;
        if checked && uid != schema::ADMIN && !ddl {
            self.schema
                .access
                .check_space(uid, space_id, space.name(), space.def.owner, super::access::PRIV_WRITE)?;
        }
        let temporary = space.def.temporary;
        let group_id = space.def.group_id;
        let is_sync = space.def.is_sync;
        let insert = matches!(req, Request::Insert { .. });
        let (old, new, kind) = match req {
            Request::Insert { tuple, .. } | Request::Replace { tuple, .. } => {
                space.validate(&tuple)?;
                let mode = if insert { DupMode::Insert } else { DupMode::Replace };
                let old = space.replace(Some(&tuple), mode)?;
                if insert {
                    self.stats.insert += 1;
                } else {
                    self.stats.replace += 1;
                }
                (old, Some(tuple), if insert { IPROTO_INSERT } else { IPROTO_REPLACE })
            }
            Request::Update {
                index_id,
                key,
                ops,
                index_base,
                ..
            } => {
                self.stats.update += 1;
                let space = self.space(space_id)?;
                let Some(old) = find_exact(space, index_id, key)? else {
                    // Still check the operations, as Tarantool does.
                    update::check_ops(ops, index_base, &|name| space.field_names.get(name).copied())?;
                    return Ok(None);
                };
                let is_double = |f: u32| {
                    space
                        .def
                        .format
                        .get(f as usize)
                        .is_some_and(|d| d.field_type == super::field_type::FieldType::Double)
                };
                let bytes = update::update_typed(
                    old.data(),
                    ops,
                    index_base,
                    &|name| space.field_names.get(name).copied(),
                    &is_double,
                )?;
                let new = Tuple::new(&bytes)?;
                space.validate(&new)?;
                check_same_primary_key(space, &old, &new)?;
                let space = self.space_mut(space_id)?;
                space.replace(Some(&new), DupMode::Replace)?;
                (Some(old), Some(new), IPROTO_REPLACE)
            }
            Request::Upsert {
                tuple, ops, index_base, ..
            } => {
                self.stats.upsert += 1;
                let space = self
                    .schema
                    .space(space_id)
                    .ok_or_else(|| client_error!(ER_NO_SUCH_SPACE, space_id.to_string()))?;
                let pk = space
                    .primary()
                    .ok_or_else(|| client_error!(ER_NO_SUCH_INDEX_ID, 0u32, space.name()))?;
                let names = |name: &str| space.field_names.get(name).copied();
                let old = pk.find_by_tuple(&tuple).cloned();
                let mut self_errors = Vec::new();
                let new = match &old {
                    None => {
                        update::check_ops(ops, index_base, &names)?;
                        space.validate(&tuple)?;
                        tuple
                    }
                    Some(old) => {
                        let is_double = |f: u32| {
                            space
                                .def
                                .format
                                .get(f as usize)
                                .is_some_and(|d| d.field_type == super::field_type::FieldType::Double)
                        };
                        let (bytes, skipped) = update::upsert_typed(old.data(), ops, index_base, &names, &is_double)?;
                        for e in skipped {
                            self_errors.push(e.message);
                        }
                        let new = Tuple::new(&bytes)?;
                        if let Err(e) = space
                            .validate(&new)
                            .and_then(|_| check_same_primary_key(space, old, &new))
                        {
                            // Upsert never fails on the tuple it finds: it logs and keeps it.
                            self_errors.push(e.message);
                            self.pending_errors.append(&mut self_errors);
                            return Ok(None);
                        }
                        new
                    }
                };
                self.pending_errors.append(&mut self_errors);
                let space = self.space_mut(space_id)?;
                let old = space.replace(Some(&new), DupMode::Replace)?;
                (old, Some(new), IPROTO_REPLACE)
            }
            Request::Delete { index_id, key, .. } => {
                self.stats.delete += 1;
                let space = self.space(space_id)?;
                let Some(old) = find_exact(space, index_id, key)? else {
                    return Ok(None);
                };
                let space = self.space_mut(space_id)?;
                space.remove(&old);
                (Some(old), None, IPROTO_DELETE)
            }
        };
        if checked && uid != schema::ADMIN && ddl {
            if let Err(e) = self.check_ddl(uid, space_id, old.as_ref(), new.as_ref()) {
                self.revert(space_id, old.as_ref(), new.as_ref());
                return Err(e);
            }
        }
        if Schema::is_system(space_id) {
            if let Err(e) = self
                .schema
                .on_system_replace(space_id, old.as_ref(), new.as_ref(), uid, checked)
            {
                if let Some(space) = self.schema.space_mut(space_id) {
                    if let Some(n) = &new {
                        space.remove(n);
                    }
                    if let Some(o) = &old {
                        space.restore(o);
                    }
                }
                return Err(e);
            }
        }
        let row = if temporary {
            None
        } else {
            let body = match (&new, &old) {
                (Some(n), _) => body_with_tuple(space_id, n.data()),
                (None, Some(o)) => {
                    let space = self.space(space_id)?;
                    let key = space.primary().map(|pk| pk.key_def.extract_key(o)).unwrap_or_default();
                    body_with_key(space_id, &key)
                }
                (None, None) => return Ok(None),
            };
            Some((kind, body, group_id))
        };
        Ok(Some(Stmt {
            space_id,
            old,
            new,
            row,
            is_sync,
        }))
    }

    /// Undoes a statement's change to the indexes (before it is recorded anywhere).
    fn revert(&mut self, space_id: u32, old: Option<&Tuple>, new: Option<&Tuple>) {
        if let Some(space) = self.schema.space_mut(space_id) {
            if let Some(n) = new {
                space.remove(n);
            }
            if let Some(o) = old {
                space.restore(o);
            }
        }
    }

    /// Create, alter or drop access for a change of `_space`, `_index` or `_func` by a
    /// non-admin user (`_user` and `_priv` are checked by the access model itself).
    fn check_ddl(&self, uid: u32, space_id: u32, old: Option<&Tuple>, new: Option<&Tuple>) -> Result<(), ClientError> {
        use super::access::{ObjectType, PRIV_ALTER, PRIV_CREATE, PRIV_DROP};
        let privilege = match (old, new) {
            (None, Some(_)) => PRIV_CREATE,
            (Some(_), None) => PRIV_DROP,
            _ => PRIV_ALTER,
        };
        let field_u32 = |t: &Tuple, i: u32| match t.field(i).map(|raw| super::mp::read(raw, 0)) {
            Some(Ok((super::mp::Mp::UInt(v), _))) => v as u32,
            _ => 0,
        };
        let field_str = |t: &Tuple, i: u32| match t.field(i).map(|raw| super::mp::read(raw, 0)) {
            Some(Ok((super::mp::Mp::Str(s), _))) => String::from_utf8_lossy(s).into_owned(),
            _ => String::new(),
        };
        let Some(row) = new.or(old) else { return Ok(()) };
        let access = &self.schema.access;
        match space_id {
            schema::SPACE_ID => access.check_ddl(
                uid,
                &field_str(row, 2),
                field_u32(row, 0),
                field_u32(row, 1),
                ObjectType::Space,
                privilege,
            ),
            schema::INDEX_ID => {
                // An index is part of its space: creating or dropping one alters the space.
                let sid = field_u32(row, 0);
                let (name, owner) = self
                    .schema
                    .space(sid)
                    .map(|s| (s.def.name.clone(), s.def.owner))
                    .unwrap_or_default();
                access.check_ddl(uid, &name, sid, owner, ObjectType::Space, PRIV_ALTER)
            }
            schema::FUNC_ID => access.check_ddl(
                uid,
                &field_str(row, 2),
                field_u32(row, 0),
                field_u32(row, 1),
                ObjectType::Function,
                privilege,
            ),
            _ => Ok(()),
        }
    }

    fn space_mut(&mut self, id: u32) -> Result<&mut Space, ClientError> {
        self.schema
            .space_mut(id)
            .ok_or_else(|| client_error!(ER_NO_SUCH_SPACE, id.to_string()))
    }

    /// Applies a logged row (recovery, a joining replica): no access or read-only checks,
    /// system space changes applied as they were accepted.
    pub fn apply_row(&mut self, kind: u32, body: &[u8]) -> Result<(), ClientError> {
        if !matches!(
            kind,
            IPROTO_INSERT | IPROTO_REPLACE | IPROTO_UPDATE | IPROTO_DELETE | IPROTO_UPSERT
        ) {
            // NOP, and the synchronous queue's rows (CONFIRM, ROLLBACK, PROMOTE): no data.
            return Ok(());
        }
        let fields = parse_body(body)?;
        let space_id = fields
            .space_id
            .ok_or_else(|| client_error!(ER_MISSING_REQUEST_FIELD, "space id"))?;
        if matches!(kind, IPROTO_INSERT | IPROTO_REPLACE) && !Schema::is_system(space_id) {
            // Recovery's bulk of rows: straight into the indexes, no statement or undo.
            let raw = fields
                .tuple
                .ok_or_else(|| client_error!(ER_MISSING_REQUEST_FIELD, "tuple"))?;
            let tuple = Tuple::new(raw)?;
            let space = self.space_mut(space_id)?;
            space.validate(&tuple)?;
            let mode = if kind == IPROTO_INSERT {
                DupMode::Insert
            } else {
                DupMode::Replace
            };
            space.replace(Some(&tuple), mode)?;
            return Ok(());
        }
        match row_request(kind, space_id, &fields)? {
            Some(req) => self.execute_stmt(schema::ADMIN, req, false).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Executes a replicated row's request as the applier does: as admin, without access or
    /// read-only checks. Returns the statement (for undo), None if nothing changed.
    pub fn execute_row(&mut self, kind: u32, body: &[u8]) -> Result<Option<Stmt>, ClientError> {
        let fields = parse_body(body)?;
        let space_id = fields
            .space_id
            .ok_or_else(|| client_error!(ER_MISSING_REQUEST_FIELD, "space id"))?;
        match row_request(kind, space_id, &fields)? {
            Some(req) => self.execute_stmt(schema::ADMIN, req, false),
            None => Err(client_error!(ER_UNKNOWN_REQUEST_TYPE, kind)),
        }
    }
}

/// The request a DML row carries; None for a type that is not DML.
fn row_request<'a>(kind: u32, space_id: u32, fields: &BodyFields<'a>) -> Result<Option<Request<'a>>, ClientError> {
    let tuple = || -> Result<Tuple, ClientError> {
        Tuple::new(
            fields
                .tuple
                .ok_or_else(|| client_error!(ER_MISSING_REQUEST_FIELD, "tuple"))?,
        )
    };
    let key = || fields.key.ok_or_else(|| client_error!(ER_MISSING_REQUEST_FIELD, "key"));
    let ops = || fields.ops.ok_or_else(|| client_error!(ER_MISSING_REQUEST_FIELD, "ops"));
    Ok(Some(match kind {
        IPROTO_INSERT => Request::Insert {
            space_id,
            tuple: tuple()?,
        },
        IPROTO_REPLACE => Request::Replace {
            space_id,
            tuple: tuple()?,
        },
        IPROTO_DELETE => Request::Delete {
            space_id,
            index_id: fields.index_id,
            key: key()?,
        },
        IPROTO_UPDATE => Request::Update {
            space_id,
            index_id: fields.index_id,
            key: key()?,
            // An UPDATE carries its operations under TUPLE (OPS is UPSERT's key).
            ops: fields
                .tuple
                .or(fields.ops)
                .ok_or_else(|| client_error!(ER_MISSING_REQUEST_FIELD, "tuple"))?,
            index_base: fields.index_base,
        },
        IPROTO_UPSERT => Request::Upsert {
            space_id,
            tuple: tuple()?,
            ops: ops()?,
            index_base: fields.index_base,
        },
        _ => return Ok(None),
    }))
}

/// The fields of a DML body that box reads.
#[derive(Default)]
pub struct BodyFields<'a> {
    pub space_id: Option<u32>,
    pub index_id: u32,
    pub index_base: i64,
    pub key: Option<&'a [u8]>,
    pub tuple: Option<&'a [u8]>,
    pub ops: Option<&'a [u8]>,
}

pub fn parse_body(body: &[u8]) -> Result<BodyFields<'_>, ClientError> {
    let bad = || client_error!(ER_INVALID_MSGPACK, "request body");
    let (n, mut pos) = match mp::read(body, 0) {
        Ok((mp::Mp::Map(n), p)) => (n, p),
        _ => return Err(bad()),
    };
    let mut f = BodyFields::default();
    for _ in 0..n {
        let (k, p) = mp::read(body, pos).map_err(|_| bad())?;
        let end = mp::skip(body, p).map_err(|_| bad())?;
        let raw = &body[p..end];
        let as_u64 = || match mp::read(raw, 0) {
            Ok((mp::Mp::UInt(v), _)) => Some(v),
            _ => None,
        };
        if let mp::Mp::UInt(k) = k {
            match k as u8 {
                KEY_SPACE_ID => f.space_id = as_u64().and_then(|v| u32::try_from(v).ok()),
                KEY_INDEX_ID => f.index_id = as_u64().unwrap_or(0) as u32,
                KEY_INDEX_BASE => f.index_base = as_u64().unwrap_or(0) as i64,
                KEY_KEY => f.key = Some(raw),
                KEY_TUPLE => f.tuple = Some(raw),
                KEY_OPS => f.ops = Some(raw),
                _ => {}
            }
        }
        pos = end;
    }
    Ok(f)
}

/// The tuple with exactly this key in a unique index.
pub fn find_exact(space: &Space, index_id: u32, key: &[u8]) -> Result<Option<Tuple>, ClientError> {
    let (def, index) = space.find_index(index_id)?;
    if !def.unique {
        return Err(client_error!(ER_MORE_THAN_ONE_TUPLE));
    }
    let parts = index.key_def.validate_key(key, true)?;
    Ok(index.find(&parts).cloned())
}

fn check_same_primary_key(space: &Space, old: &Tuple, new: &Tuple) -> Result<(), ClientError> {
    if let Some((def, pk)) = space.index(0) {
        if pk.key_def.compare(old, new) != std::cmp::Ordering::Equal {
            return Err(client_error!(ER_CANT_UPDATE_PRIMARY_KEY, &def.name, space.name()));
        }
    }
    Ok(())
}
