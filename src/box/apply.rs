//! Applying a transaction received from an upstream: box's one way in for the applier.
//!
//! A transaction's rows (grouped by tsn up to the commit flag) are applied to the spaces as
//! admin, without access or read-only checks, then logged to the WAL as they came: with
//! their origin replica id, LSN, tsn and timestamp. The local vclock follows them at once,
//! before the write completes, so a transaction that arrives again over another path (a
//! full mesh) is recognised as applied while its first copy is still being written; this is
//! Tarantool's "applier vclock", and there is no yield between the check and the follow.
//!
//! Rows kinds: DML changes the spaces; NOP changes nothing (it only moves the vclock);
//! CONFIRM, ROLLBACK and PROMOTE are logged for the synchronous queue, which decides on
//! them (its driver hooks in here). RAFT rows never come here (they carry no LSN).

use super::db::{IPROTO_DELETE, IPROTO_INSERT, IPROTO_REPLACE, IPROTO_UPDATE, IPROTO_UPSERT};
use super::errcode::*;
use super::error::ClientError;
use super::lua::BoxRuntime;
use super::mp::{self, Mp};
use super::wal::row::{Row, IPROTO_NOP};
use crate::client_error;

/// Synchronous replication's decisions (docs/raft.md): logged, not applied to spaces.
pub const IPROTO_PROMOTE: u32 = 31;
pub const IPROTO_CONFIRM: u32 = 40;
pub const IPROTO_ROLLBACK: u32 = 41;

/// What became of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Every row was applied before (or is being written): nothing done.
    Already,
    /// Applied and handed to the WAL; the ticket resolves once written (None: no WAL).
    Logged(Option<u64>),
    /// Nothing done yet: a row goes to a space with Lua triggers, so the transaction is
    /// staged for the Lua path ([`install`]'s functions, run by the applier's fiber).
    NeedsTriggers,
}

/// A row that could not be applied: the error, and the row as Tarantool's
/// `error applying row: {...}` log line shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyError {
    pub error: ClientError,
    pub row: String,
}

fn is_dml(kind: u32) -> bool {
    matches!(
        kind,
        IPROTO_INSERT | IPROTO_REPLACE | IPROTO_UPDATE | IPROTO_DELETE | IPROTO_UPSERT
    )
}

/// Applies one transaction's rows (all of one tsn, the last with the commit flag) and logs
/// them. Rows already applied are skipped: the whole transaction if its last row is, else
/// its leading ones (an old master that split a transaction). `skip_conflict`: a duplicate
/// key turns the row into a NOP instead of failing (`replication_skip_conflict`).
/// On an error nothing of the transaction stays.
pub fn apply_transaction(rt: &mut BoxRuntime, mut rows: Vec<Row>, skip_conflict: bool) -> Result<Applied, ApplyError> {
    let Some(persist) = rt.persist.as_mut() else {
        return Err(ApplyError {
            error: client_error!(ER_LOADING),
            row: String::new(),
        });
    };
    let applied = |r: &Row| persist.vclock.get(r.replica_id) >= r.lsn;
    if rows.last().is_none_or(applied) {
        return Ok(Applied::Already);
    }
    let skip = rows.iter().take_while(|r| applied(r)).count();
    rows.drain(..skip);
    let has_triggers = |r: &Row| {
        is_dml(r.kind)
            && super::db::parse_body(&r.body)
                .ok()
                .and_then(|f| f.space_id)
                .is_some_and(|id| rt.spaces_with_triggers.contains(&id))
    };
    if rows.iter().any(has_triggers) {
        STAGED.with(|s| {
            *s.borrow_mut() = Some(Staged {
                rows,
                marks: Vec::new(),
            })
        });
        return Ok(Applied::NeedsTriggers);
    }
    let mut stmts = Vec::new();
    for row in rows.iter_mut() {
        if !is_dml(row.kind) {
            match row.kind {
                IPROTO_NOP | IPROTO_CONFIRM | IPROTO_ROLLBACK | IPROTO_PROMOTE => continue,
                other => {
                    rt.db.undo(std::mem::take(&mut stmts));
                    return Err(ApplyError {
                        error: client_error!(ER_UNKNOWN_REQUEST_TYPE, other),
                        row: describe_row(row),
                    });
                }
            }
        }
        match rt.db.execute_row(row.kind, &row.body) {
            Ok(stmt) => stmts.extend(stmt),
            Err(e) if e.code == ER_TUPLE_FOUND && skip_conflict => {
                // The foreign row is logged as a NOP: the vclock still moves past it.
                row.kind = IPROTO_NOP;
                row.body.clear();
            }
            Err(error) => {
                rt.db.undo(std::mem::take(&mut stmts));
                return Err(ApplyError {
                    error,
                    row: describe_row(row),
                });
            }
        }
    }
    let ticket = match rt.persist.as_mut() {
        Some(p) => p.commit_replicated(&mut rt.db, stmts, rows),
        None => None,
    };
    Ok(Applied::Logged(ticket))
}

// {{{ the Lua path: transactions that reach spaces with triggers
//
// Tarantool runs a space's before_replace and on_replace triggers for replicated rows too
// (conflict resolution is often written so). Those triggers live in lua/box.lua, around the
// spaces' methods; such a transaction is staged here, and the applier's fiber runs the
// function lua/box.lua registers: it begins a transaction, takes each row
// (`replicated_row`), runs it through the space's method (triggers and all, without the
// read-only and access checks) and commits with `replicated_commit`, which logs what the
// rows became with their origin ids: the changed tuple of a before_replace as a REPLACE, a
// row a trigger skipped as a NOP. A trigger's own write to another space would make the
// transaction half local: refused as in 2.6 (`Replication does not support distributed
// transactions`), unless the space is local.

/// The transaction the Lua path works on, and where each of its rows' statements start.
struct Staged {
    rows: Vec<Row>,
    marks: Vec<usize>,
}

thread_local! {
    static STAGED: std::cell::RefCell<Option<Staged>> = const { std::cell::RefCell::new(None) };
}

/// The registry key of lua/box.lua's function for staged transactions.
pub const REPLICATED_APPLIER: &str = "node.box.replicated_applier";

/// Runs the staged transaction through lua/box.lua's function (from the applier's fiber):
/// the WAL ticket, or the row that failed (1-based) and its error.
pub fn apply_staged(lua: &mlua::Lua, skip_conflict: bool) -> Result<Option<u64>, ApplyError> {
    let n = STAGED.with(|s| s.borrow().as_ref().map_or(0, |s| s.rows.len()));
    let call = lua
        .named_registry_value::<mlua::Function>(REPLICATED_APPLIER)
        .and_then(|f| f.call::<(Option<u64>, Option<usize>, Option<u32>, Option<String>)>((n, skip_conflict)));
    let described = |i: Option<usize>| {
        STAGED.with(|s| {
            s.borrow()
                .as_ref()
                .and_then(|s| s.rows.get(i.unwrap_or(1).saturating_sub(1)).map(describe_row))
                .unwrap_or_default()
        })
    };
    let outcome = match call {
        Ok((ticket, None, _, _)) => Ok(ticket),
        Ok((_, row, code, message)) => Err(ApplyError {
            error: ClientError {
                code: code.unwrap_or(ER_PROC_LUA),
                message: message.unwrap_or_default(),
            },
            row: described(row),
        }),
        Err(e) => Err(ApplyError {
            error: ClientError {
                code: ER_PROC_LUA,
                message: crate::runtime::errors::message(&e),
            },
            row: described(None),
        }),
    };
    STAGED.with(|s| s.borrow_mut().take());
    outcome
}

/// The Lua path's functions in `box.internal`.
pub fn install(lua: &mlua::Lua, m: &mlua::Table) -> mlua::Result<()> {
    use super::lua::with_box;
    use crate::runtime::fiber;
    m.set(
        "set_replicated_applier",
        lua.create_function(|lua, f: mlua::Function| lua.set_named_registry_value(REPLICATED_APPLIER, f))?,
    )?;
    // Begins the staged transaction in the calling fiber.
    m.set(
        "replicated_begin",
        lua.create_function(|_, ()| {
            let fid = fiber::current_id();
            with_box(|rt| {
                rt.db.begin(fid)?;
                rt.db.replicating = Some(fid);
                Ok(())
            })
        })?,
    )?;
    // Row `i` (1-based): kind, space id, index id, key, tuple (an UPDATE's operations),
    // operations (an UPSERT's), index base. Its statements start here.
    m.set(
        "replicated_row",
        lua.create_function(|lua, i: usize| {
            let fid = fiber::current_id();
            let mark = with_box(|rt| Ok(rt.db.txns.get(&fid).map_or(0, |t| t.stmts.len())))?;
            let row = STAGED.with(|s| {
                let mut s = s.borrow_mut();
                let s = s.as_mut()?;
                s.marks.truncate(i.saturating_sub(1));
                s.marks.push(mark);
                s.rows.get(i.wrapping_sub(1)).cloned()
            });
            let row = row.ok_or_else(|| mlua::Error::runtime("no such replicated row"))?;
            let f = super::db::parse_body(&row.body).unwrap_or_default();
            let value = |raw: Option<&[u8]>| match raw {
                Some(r) => super::lua_tuple::decode_to_lua(lua, r),
                None => Ok(mlua::Value::Nil),
            };
            let kind = if is_dml(row.kind) {
                type_name(row.kind)
            } else {
                "NOP".into()
            };
            Ok((
                kind,
                f.space_id.unwrap_or(0),
                f.index_id,
                value(f.key)?,
                value(f.tuple)?,
                value(f.ops)?,
                f.index_base,
            ))
        })?,
    )?;
    m.set(
        "replicated_abort",
        lua.create_function(|_, ()| {
            let fid = fiber::current_id();
            super::lua::with_runtime(|rt| {
                rt.db.rollback(fid);
                rt.db.replicating = None;
            });
            Ok(())
        })?,
    )?;
    // Commits the staged transaction as what its rows became: the ticket to wait on.
    m.set(
        "replicated_commit",
        lua.create_function(|_, ()| {
            let fid = fiber::current_id();
            let staged = STAGED.with(|s| s.borrow_mut().take());
            let outcome = with_box(|rt| {
                rt.db.replicating = None;
                let stmts = rt.db.commit(fid)?;
                let Some(staged) = staged else {
                    rt.db.undo(stmts);
                    return Err(client_error!(ER_PROTOCOL, "no replicated transaction is staged"));
                };
                let rows = match logged_rows(rt, &staged, &stmts) {
                    Ok(rows) => rows,
                    Err(e) => {
                        rt.db.undo(stmts);
                        return Err(e);
                    }
                };
                Ok(match rt.persist.as_mut() {
                    Some(p) => p.commit_replicated(&mut rt.db, stmts, rows),
                    None => None,
                })
            });
            outcome
        })?,
    )?;
    Ok(())
}

/// The rows a staged transaction logs, from the statements its rows became.
fn logged_rows(rt: &BoxRuntime, staged: &Staged, stmts: &[super::db::Stmt]) -> Result<Vec<Row>, ClientError> {
    let mut out = Vec::new();
    let mut local_lsn = rt.persist.as_ref().map_or(0, |p| p.vclock.get(0));
    for (i, row) in staged.rows.iter().enumerate() {
        if !is_dml(row.kind) {
            out.push(row.clone());
            continue;
        }
        let from = staged.marks.get(i).copied().unwrap_or(stmts.len()).min(stmts.len());
        let to = staged
            .marks
            .get(i + 1)
            .copied()
            .unwrap_or(stmts.len())
            .clamp(from, stmts.len());
        let mut own = stmts[from..to].iter().filter_map(|s| s.row.as_ref());
        let mut logged = row.clone();
        match own.next() {
            // What the row became (a trigger may have changed its tuple).
            Some((kind, body, _)) => {
                logged.kind = *kind;
                logged.body = body.clone();
            }
            // Skipped by a before_replace trigger: it still moves the vclock.
            None => {
                logged.kind = IPROTO_NOP;
                logged.body.clear();
            }
        }
        out.push(logged);
        // Rows the triggers wrote: only to local spaces, counted in vclock component 0.
        for (kind, body, group_id) in own {
            if *group_id != super::wal::row::GROUP_LOCAL {
                return Err(client_error!(ER_UNSUPPORTED, "Replication", "distributed transactions"));
            }
            local_lsn += 1;
            out.push(Row {
                kind: *kind,
                replica_id: 0,
                lsn: local_lsn,
                timestamp: row.timestamp,
                group_id: *group_id,
                tsn: row.tsn,
                is_commit: false,
                body: body.clone(),
            });
        }
    }
    // The commit flag moves to the last row logged.
    let last = out.len().saturating_sub(1);
    for (i, r) in out.iter_mut().enumerate() {
        r.is_commit = i == last;
    }
    Ok(out)
}

// }}}

/// The rows of a write that failed are not applied after all: the vclock components of
/// other instances go back to what the WAL holds, so the rows are fetched again.
pub fn forget_unwritten(rt: &mut BoxRuntime) {
    let Some(p) = rt.persist.as_mut() else { return };
    let Some(written) = p.wal.as_ref().map(|w| w.vclock()) else {
        return;
    };
    let own = p.instance_id;
    for (id, _) in p.vclock.iter().collect::<Vec<_>>() {
        if id != own && id != 0 {
            p.vclock.follow(id, written.get(id));
        }
    }
}

/// A row as `request_str` prints it: `{type: 'INSERT', replica_id: 1, lsn: 7, space_id:
/// 512, index_id: 0, tuple: [5, "master"]}`.
pub fn describe_row(row: &Row) -> String {
    let fields = super::db::parse_body(&row.body).unwrap_or_default();
    let mut s = format!(
        "{{type: '{}', replica_id: {}, lsn: {}, space_id: {}, index_id: {}",
        type_name(row.kind),
        row.replica_id,
        row.lsn,
        fields.space_id.unwrap_or(0),
        fields.index_id
    );
    for (name, value) in [("key", fields.key), ("tuple", fields.tuple), ("ops", fields.ops)] {
        if let Some(v) = value {
            s.push_str(&format!(", {name}: {}", mp_text(v)));
        }
    }
    s.push('}');
    s
}

fn type_name(kind: u32) -> String {
    match kind {
        IPROTO_INSERT => "INSERT".into(),
        IPROTO_REPLACE => "REPLACE".into(),
        IPROTO_UPDATE => "UPDATE".into(),
        IPROTO_DELETE => "DELETE".into(),
        IPROTO_UPSERT => "UPSERT".into(),
        IPROTO_NOP => "NOP".into(),
        IPROTO_CONFIRM => "CONFIRM".into(),
        IPROTO_ROLLBACK => "ROLLBACK".into(),
        IPROTO_PROMOTE => "PROMOTE".into(),
        other => format!("unknown ({other})"),
    }
}

/// MessagePack as Tarantool's `mp_snprint` writes it: `[1, "a", {"k": true}]`.
pub fn mp_text(data: &[u8]) -> String {
    let mut out = String::new();
    match mp_text_at(data, 0, &mut out, 0) {
        Ok(_) => out,
        Err(_) => "<invalid msgpack>".into(),
    }
}

/// Containers deeper than this print as `...` (hostile nesting cannot exhaust the stack).
const TEXT_DEPTH_MAX: usize = 32;

fn mp_text_at(data: &[u8], pos: usize, out: &mut String, depth: usize) -> mp::Result<usize> {
    let (v, mut next) = mp::read(data, pos)?;
    match v {
        Mp::Nil => out.push_str("null"),
        Mp::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Mp::UInt(n) => out.push_str(&n.to_string()),
        Mp::Int(n) => out.push_str(&n.to_string()),
        Mp::F32(f) => out.push_str(&f.to_string()),
        Mp::F64(f) => out.push_str(&f.to_string()),
        Mp::Str(s) => {
            out.push('"');
            out.push_str(&String::from_utf8_lossy(s));
            out.push('"');
        }
        Mp::Bin(b) => out.push_str(&format!("<binary {} bytes>", b.len())),
        Mp::Ext(t, b) => out.push_str(&format!("<ext {t}, {} bytes>", b.len())),
        Mp::Array(n) | Mp::Map(n) if depth >= TEXT_DEPTH_MAX => {
            let _ = n;
            out.push_str("...");
            return mp::skip(data, pos);
        }
        Mp::Array(n) => {
            out.push('[');
            for i in 0..n {
                if i > 0 {
                    out.push_str(", ");
                }
                next = mp_text_at(data, next, out, depth + 1)?;
            }
            out.push(']');
        }
        Mp::Map(n) => {
            out.push('{');
            for i in 0..n {
                if i > 0 {
                    out.push_str(", ");
                }
                next = mp_text_at(data, next, out, depth + 1)?;
                out.push_str(": ");
                next = mp_text_at(data, next, out, depth + 1)?;
            }
            out.push('}');
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::box_::db::Db;
    use crate::box_::persist::Persistence;
    use crate::box_::schema;
    use crate::box_::wal::vclock::Vclock;
    use crate::box_::wal::writer::WalMode;

    /// A box with one space `t` (id 512, primary key unsigned) and no WAL.
    fn runtime() -> BoxRuntime {
        let mut db = Db::new();
        for (space_id, tuple) in schema::bootstrap_rows(&uuid::Uuid::nil().to_string(), &uuid::Uuid::nil().to_string())
        {
            db.apply_row(IPROTO_INSERT, &Row::replace_body(space_id, &tuple))
                .unwrap();
        }
        let space = rmp(&["[512, 1, 't', 'memtx', 0, {}, []]"]);
        db.apply_row(IPROTO_INSERT, &Row::replace_body(schema::SPACE_ID, &space))
            .unwrap();
        let index = rmp(&["[512, 0, 'pk', 'tree', {'unique': true}, [[0, 'unsigned']]]"]);
        db.apply_row(IPROTO_INSERT, &Row::replace_body(schema::INDEX_ID, &index))
            .unwrap();
        let p = Persistence::new(
            None,
            WalMode::None,
            Vclock::new(),
            2,
            uuid::Uuid::nil(),
            ".".into(),
            ".".into(),
        );
        BoxRuntime::new(db, Some(p))
    }

    /// A tiny literal encoder for tests: JSON-ish text through serde_json.
    fn rmp(parts: &[&str]) -> Vec<u8> {
        let text = parts.concat().replace('\'', "\"");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut out = Vec::new();
        encode(&value, &mut out);
        out
    }

    fn encode(v: &serde_json::Value, out: &mut Vec<u8>) {
        use serde_json::Value;
        match v {
            Value::Null => mp::write_nil(out),
            Value::Bool(b) => mp::write_bool(out, *b),
            Value::Number(n) => mp::write_uint(out, n.as_u64().unwrap()),
            Value::String(s) => mp::write_str(out, s.as_bytes()),
            Value::Array(a) => {
                mp::write_array_header(out, a.len() as u32);
                a.iter().for_each(|x| encode(x, out));
            }
            Value::Object(m) => {
                mp::write_map_header(out, m.len() as u32);
                for (k, x) in m {
                    mp::write_str(out, k.as_bytes());
                    encode(x, out);
                }
            }
        }
    }

    fn insert(replica_id: u32, lsn: i64, tsn: i64, is_commit: bool, tuple: &str) -> Row {
        Row {
            kind: IPROTO_INSERT,
            replica_id,
            lsn,
            timestamp: 1.0,
            group_id: 0,
            tsn,
            is_commit,
            body: Row::replace_body(512, &rmp(&[tuple])),
        }
    }

    fn count(rt: &BoxRuntime) -> usize {
        rt.db.space(512).unwrap().primary().unwrap().len()
    }

    #[test]
    fn recovered_undecided_transactions_follow_the_owners_decision() {
        use crate::box_::raft::limbo::{SynchroKind, SynchroRequest};
        let mut rt = runtime();
        // Two synchronous transactions of instance 1 the log had no decision for.
        let mut undecided = Vec::new();
        for (lsn, tuple) in [(5, "[5]"), (6, "[6]")] {
            let row = insert(1, lsn, lsn, true, tuple);
            let stmt = rt.db.execute_row(row.kind, &row.body).unwrap();
            undecided.push((1, lsn, true, stmt.into_iter().collect()));
        }
        let p = rt.persist.as_mut().unwrap();
        p.queue_recovered(undecided);
        assert_eq!((p.limbo.owner(), p.limbo.len()), (1, 2));
        assert_eq!(count(&rt), 2);
        // The owner confirms the first and rolls back the second.
        let mut wake = Vec::new();
        for (kind, lsn) in [(SynchroKind::Confirm, 5), (SynchroKind::Rollback, 6)] {
            let p = rt.persist.as_mut().unwrap();
            p.limbo.apply(&SynchroRequest {
                kind,
                replica_id: 1,
                origin_id: 1,
                lsn,
                term: 0,
            });
            p.run_limbo(&mut rt.db, &mut wake);
        }
        assert!(rt.persist.as_ref().unwrap().limbo.is_empty());
        assert_eq!(count(&rt), 1, "the rolled-back one is undone, the confirmed one stays");
        assert!(rt.db.space(512).unwrap().primary().unwrap().tuples().next().is_some());
    }

    #[test]
    fn a_transaction_applies_once_and_moves_the_vclock() {
        let mut rt = runtime();
        let txn = vec![insert(1, 5, 5, false, "[1]"), insert(1, 6, 5, true, "[2]")];
        assert_eq!(
            apply_transaction(&mut rt, txn.clone(), false),
            Ok(Applied::Logged(None))
        );
        assert_eq!(count(&rt), 2);
        assert_eq!(rt.persist.as_ref().unwrap().vclock.get(1), 6);
        // The same transaction over another path: nothing happens (no duplicate-key error).
        assert_eq!(apply_transaction(&mut rt, txn, false), Ok(Applied::Already));
        // A transaction whose first rows were applied: only the rest.
        let split = vec![insert(1, 6, 6, false, "[2]"), insert(1, 7, 6, true, "[3]")];
        assert_eq!(apply_transaction(&mut rt, split, false), Ok(Applied::Logged(None)));
        assert_eq!(count(&rt), 3);
    }

    #[test]
    fn a_conflict_undoes_the_transaction_unless_skipped() {
        let mut rt = runtime();
        apply_transaction(&mut rt, vec![insert(1, 1, 1, true, "[1]")], false).unwrap();
        let txn = vec![insert(1, 2, 2, false, "[2]"), insert(1, 3, 2, true, "[1]")];
        let e = apply_transaction(&mut rt, txn.clone(), false).unwrap_err();
        assert_eq!(e.error.code, ER_TUPLE_FOUND);
        assert_eq!(
            e.row,
            "{type: 'INSERT', replica_id: 1, lsn: 3, space_id: 512, index_id: 0, tuple: [1]}"
        );
        // Nothing of it stays, and the vclock did not move: it can come again.
        assert_eq!(count(&rt), 1);
        assert_eq!(rt.persist.as_ref().unwrap().vclock.get(1), 1);
        assert_eq!(apply_transaction(&mut rt, txn, true), Ok(Applied::Logged(None)));
        assert_eq!(count(&rt), 2);
        assert_eq!(rt.persist.as_ref().unwrap().vclock.get(1), 3);
    }

    #[test]
    fn nop_and_synchro_rows_move_the_vclock_only() {
        let mut rt = runtime();
        let mut nop = insert(3, 4, 4, true, "[9]");
        nop.kind = IPROTO_NOP;
        nop.body.clear();
        let mut confirm = insert(3, 5, 5, true, "[9]");
        confirm.kind = IPROTO_CONFIRM;
        confirm.body = vec![0x82, 0x02, 0x03, 0x03, 0x04];
        assert!(apply_transaction(&mut rt, vec![nop], false).is_ok());
        assert!(apply_transaction(&mut rt, vec![confirm], false).is_ok());
        assert_eq!(count(&rt), 0);
        assert_eq!(rt.persist.as_ref().unwrap().vclock.get(3), 5);
        let mut odd = insert(3, 6, 6, true, "[9]");
        odd.kind = 77;
        assert_eq!(
            apply_transaction(&mut rt, vec![odd], false).unwrap_err().error.code,
            ER_UNKNOWN_REQUEST_TYPE
        );
    }

    #[test]
    fn rows_print_as_tarantool_prints_them() {
        assert_eq!(
            mp_text(&rmp(&["[5, 'master', {'a': [true, null]}]"])),
            "[5, \"master\", {\"a\": [true, null]}]"
        );
        assert_eq!(mp_text(&[0x92, 0x01]), "<invalid msgpack>");
        let mut deep = vec![0x91; 100];
        deep.push(0x01);
        assert!(mp_text(&deep).contains("..."));
    }
}
