//! The Rust primitives under box's Lua API (`lua/box.lua`): data requests, iterators,
//! transactions, schema information, users, and box.error. All box state lives in one
//! thread-local (the Lua thread owns the database as Tarantool's TX thread does); no borrow
//! of it is held across a yield or a call into Lua.

use std::cell::RefCell;
use std::ffi::c_int;
use std::rc::Rc;
use std::time::Instant;

use mlua::ffi;
use mlua::prelude::*;

use super::access;
use super::chap_sha1;
use super::db::{Db, Request, Stmt};
use super::errcode::*;
use super::error::{format_template, Arg, ClientError};
use super::field_type::FieldType;
use super::index::{split_key, IterState, IterType};
use super::lua_tuple::{self, TupleFormat};
use super::persist::{Persistence, Waiter};
use super::schema::{self, Schema};
use super::session;
use super::space::Space;
use super::tuple::Tuple;
use super::wal::writer::SeqAcks;
use crate::client_error;
use crate::runtime::errors::BoxError;
use crate::runtime::fiber;

/// Everything box keeps between calls.
pub struct BoxRuntime {
    pub db: Db,
    /// Each space's tuple format, None for a space without one (every returned tuple
    /// looks here), as of schema version `formats_version`.
    pub formats: hashbrown::HashMap<u32, Option<Rc<TupleFormat>>>,
    formats_version: u64,
    pub persist: Option<Persistence>,
    /// Session user (real and effective) of the local session.
    pub uid: u32,
    pub euid: u32,
    pub started: Instant,
    schema_version_seen: u64,
    /// `box.stat` counters sampled once a second (newest last), for its `rps`.
    pub stat_samples: std::collections::VecDeque<super::db::Stats>,
    /// `memtx_memory`, for box.slab.info's quota.
    pub memtx_memory: f64,
    /// Spaces with Lua triggers: IPROTO writes to them go through box's Lua API.
    pub spaces_with_triggers: std::collections::HashSet<u32>,
}

thread_local! {
    static RUNTIME: RefCell<Option<BoxRuntime>> = const { RefCell::new(None) };
    static SCHEMA_HOOK: RefCell<Option<LuaFunction>> = const { RefCell::new(None) };
}

fn not_configured() -> LuaError {
    LuaError::runtime("Please call box.cfg{} first")
}

/// Runs `f` on the box state; fails before `box.cfg{}`.
pub fn with_box<R>(f: impl FnOnce(&mut BoxRuntime) -> Result<R, ClientError>) -> LuaResult<R> {
    RUNTIME.with(|r| {
        let mut r = r.borrow_mut();
        let rt = r.as_mut().ok_or_else(not_configured)?;
        f(rt).map_err(ClientError::into_lua_err)
    })
}

pub fn is_started() -> bool {
    RUNTIME.with(|r| r.borrow().is_some())
}

pub fn install_runtime(rt: BoxRuntime) {
    RUNTIME.with(|r| *r.borrow_mut() = Some(rt));
}

fn fid(lua: &Lua) -> u64 {
    fiber::current(lua).id
}

/// Wakes the fibers (and tasks) whose commits the WAL thread has completed: one task
/// wakeup per group the thread writes, whatever the number of commits in it.
pub async fn collect_wal_answers(acks: std::sync::Arc<SeqAcks>) {
    let mut wake = Vec::new();
    loop {
        acks.notify.notified().await;
        let collected = RUNTIME.with(|r| match r.try_borrow_mut() {
            Ok(mut r) => {
                if let Some(rt) = r.as_mut() {
                    if let Some(p) = rt.persist.as_mut() {
                        p.collect(&mut rt.db, &mut wake);
                    }
                }
                true
            }
            Err(_) => false,
        });
        if !collected {
            // The box state is in use (never across a yield, so only in theory): try again.
            acks.notify.notify_one();
            tokio::task::yield_now().await;
            continue;
        }
        wake_waiters(std::mem::take(&mut wake));
    }
}

/// Wakes whoever waited for commits that are now decided.
pub fn wake_waiters(wake: Vec<Waiter>) {
    for w in wake {
        match w {
            Waiter::Fiber(fid) => fiber::wakeup_by_id(fid),
            Waiter::Task(waker) => waker.wake(),
        }
    }
}

/// The scheduler's end-of-round hook: the round's commits go to the WAL thread together.
pub fn flush_wal() {
    RUNTIME.with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            if let Some(p) = r.as_mut().and_then(|rt| rt.persist.as_mut()) {
                p.flush();
            }
        }
    });
}

/// Rolls back the transaction fiber `fid` left open, if any (a request's fiber is reused
/// for the next request, which must not find it); true if there was one.
pub fn rollback_left_open(lua: &Lua, fid: u64) -> bool {
    let had = with_runtime(|rt| {
        let open = rt.db.in_txn(fid);
        if open {
            rt.db.rollback(fid);
        }
        open
    })
    .unwrap_or(false);
    if had {
        if let Err(e) = after_write(lua) {
            crate::modules::log::write(lua, crate::modules::log::Level::Error, &format!("rollback: {e}"));
        }
    }
    had
}

fn on_yield(fid: u64) {
    RUNTIME.with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            if let Some(rt) = r.as_mut() {
                rt.db.abort_by_yield(fid);
            }
        }
    });
}

impl BoxRuntime {
    pub fn new(db: Db, persist: Option<Persistence>) -> BoxRuntime {
        BoxRuntime {
            db,
            formats: hashbrown::HashMap::new(),
            formats_version: 0,
            persist,
            uid: schema::ADMIN,
            euid: schema::ADMIN,
            started: Instant::now(),
            schema_version_seen: 0,
            stat_samples: std::collections::VecDeque::new(),
            memtx_memory: 268435456.0,
            spaces_with_triggers: std::collections::HashSet::new(),
        }
    }

    /// The user access checks are made for: the request's session user when the running
    /// fiber serves a connection, else the local session's.
    pub fn effective_uid(&self) -> u32 {
        super::session::euid(fiber::current_id()).unwrap_or(self.euid)
    }

    pub fn format_of(&mut self, space_id: u32) -> Option<Rc<TupleFormat>> {
        if self.formats_version != self.db.schema.version {
            self.formats.clear();
            self.formats_version = self.db.schema.version;
        }
        if let Some(f) = self.formats.get(&space_id) {
            return f.clone();
        }
        let space = self.db.schema.space(space_id)?;
        let f = if space.def.format.is_empty() {
            None
        } else {
            let names: Vec<String> = space.def.format.iter().map(|f| f.name.clone()).collect();
            Some(Rc::new(TupleFormat::new(names)))
        };
        self.formats.insert(space_id, f.clone());
        f
    }
}

/// Runs `f` on the box state outside Lua (the IPROTO server); None before `box.cfg{}` or
/// while the state is in use.
pub fn with_runtime<R>(f: impl FnOnce(&mut BoxRuntime) -> R) -> Option<R> {
    RUNTIME.with(|r| {
        let mut r = r.try_borrow_mut().ok()?;
        r.as_mut().map(f)
    })
}

/// Resolves when the WAL has written the commit `ticket` (Err: it failed and was rolled
/// back), for Rust tasks: fibers park at Lua level instead.
pub async fn wal_written(ticket: u64) -> Result<(), ClientError> {
    std::future::poll_fn(|cx| {
        let outcome = with_runtime(|rt| match rt.persist.as_mut() {
            Some(p) => p.poll_done(&mut rt.db, ticket, Waiter::Task(cx.waker().clone())),
            None => Ok(true),
        });
        match outcome {
            Some(Ok(false)) => std::task::Poll::Pending,
            Some(Ok(true)) | None => std::task::Poll::Ready(Ok(())),
            Some(Err(e)) => std::task::Poll::Ready(Err(e)),
        }
    })
    .await
}

/// Commits an autocommit statement; the ticket (if any) is what `wal_wait` waits on.
pub fn commit_stmts(rt: &mut BoxRuntime, stmts: Vec<Stmt>) -> Result<Option<u64>, ClientError> {
    match rt.persist.as_mut() {
        Some(p) => p.commit(&mut rt.db, stmts),
        None => Ok(None),
    }
}

/// [`commit_stmts`] for one statement.
pub fn commit_stmt(rt: &mut BoxRuntime, stmt: Stmt) -> Result<Option<u64>, ClientError> {
    match rt.persist.as_mut() {
        Some(p) => p.commit_one(&mut rt.db, stmt),
        None => Ok(None),
    }
}

/// After a change to a system space, box.space must be rebuilt (outside every borrow).
pub fn after_write(lua: &Lua) -> LuaResult<()> {
    let changed = RUNTIME.with(|r| {
        let mut r = r.borrow_mut();
        let Some(rt) = r.as_mut() else { return false };
        if rt.db.schema.version != rt.schema_version_seen {
            rt.schema_version_seen = rt.db.schema.version;
            rt.formats.clear();
            true
        } else {
            false
        }
    });
    if changed {
        let hook = SCHEMA_HOOK.with(|h| h.borrow().clone());
        if let Some(hook) = hook {
            hook.call::<()>(())?;
        }
    }
    let _ = lua;
    Ok(())
}

/// The tuple Lua sees and the commit ticket to wait on (nil when nothing to wait for).
fn write(lua: &Lua, req: Request<'_>) -> LuaResult<(LuaValue, Option<i64>)> {
    let fid = fid(lua);
    let (tuple, ticket, space_id, in_txn) = with_box(|rt| {
        let space_id = req.space_id();
        let (shown, stmt) = rt.db.execute(fid, rt.effective_uid(), req, true)?;
        let in_txn = rt.db.in_txn(fid);
        let ticket = match stmt {
            Some(stmt) => commit_stmt(rt, stmt)?,
            None => None,
        };
        Ok((shown, ticket, space_id, in_txn))
    })?;
    if in_txn {
        fiber::watch_next_yield(fid, on_yield);
    }
    if Schema::is_system(space_id) || space_id == schema::SCHEMA_ID {
        after_write(lua)?;
    }
    Ok((push(lua, space_id, tuple)?, ticket.map(|t| t as i64)))
}

// {{{ raw C functions: the hot requests straight off the Lua stack
//
// `insert`, `replace`, `get` and `wal_done` are called for nearly every request, and mlua's
// way into Rust (typed arguments moved to its ref thread, the callback wrapper, results
// moved back) cost as much as the request itself. These read their arguments off the stack
// and push their results onto it; whatever they do not handle (system spaces, values the raw
// encoder leaves, a box that is not configured) they hand, before changing anything, to
// the mlua version of the function, which then does all of it.

/// Upvalues of the raw request functions (see [`raw_function`]).
const UV_NULL: c_int = ffi::lua_upvalueindex(1);
const UV_ARRAY_MT: c_int = ffi::lua_upvalueindex(2);
const UV_TUPLE_MT: c_int = ffi::lua_upvalueindex(3);
/// The mlua version of the function.
const UV_SLOW: c_int = ffi::lua_upvalueindex(4);
/// `wal_done`'s ending for outcomes that need Lua (see [`raw_wal_done`]).
const UV_FINISH: c_int = ffi::lua_upvalueindex(5);

/// What a raw request function did.
enum Outcome {
    /// Handled: the tuple to return (nil for none), the commit ticket to wait on, and
    /// whether the fiber is already its waiter.
    Done(Option<Tuple>, Option<Rc<TupleFormat>>, Option<u64>, bool),
    /// Nothing done: the mlua version does it all.
    Slow,
    Failed(LuaError),
}

thread_local! {
    /// The raw requests' encoding buffer, reused (a tuple copies what it needs).
    static ENCODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// What `wal_done` leaves to its mlua ending.
    static WAL_OUTCOME: RefCell<Option<LuaResult<bool>>> = const { RefCell::new(None) };
}

/// A raw request function with its upvalues: the raw encoder's pointers, the mlua version
/// and (for `wal_done`) its ending.
fn raw_function(
    lua: &Lua,
    f: ffi::lua_CFunction,
    slow: LuaFunction,
    finish: Option<LuaFunction>,
) -> LuaResult<LuaFunction> {
    let [null, array_mt, tuple_mt] = lua_tuple::raw_cx_values(lua)?;
    let finish = finish.map_or(LuaValue::Nil, LuaValue::Function);
    lua_tuple::c_closure(lua, f, &[null, array_mt, tuple_mt, LuaValue::Function(slow), finish])
}

/// The raw encoder's context, from the upvalues.
fn raw_cx() -> lua_tuple::RawCx {
    lua_tuple::RawCx::from_slots(UV_NULL, UV_ARRAY_MT, UV_TUPLE_MT, lua_tuple::SPARSE_RATIO)
}

/// A number argument holding a whole value in `0..=max` (the rest goes the slow way, whose
/// conversion gives the errors).
///
/// # Safety
/// `idx` is a valid index of `l`.
unsafe fn arg_whole(l: *mut ffi::lua_State, idx: c_int, max: f64) -> Option<f64> {
    if ffi::lua_type(l, idx) != ffi::LUA_TNUMBER {
        return None;
    }
    let n = ffi::lua_tonumber(l, idx);
    (n >= 0.0 && n <= max && n.fract() == 0.0).then_some(n)
}

/// Ends a raw request function: returns (tuple or nil, ticket or nil), hands over to the
/// mlua version, or raises.
///
/// # Safety
/// `l` is a raw request function's state; `nargs` is how many arguments the mlua version
/// takes.
unsafe fn finish_request(l: *mut ffi::lua_State, outcome: Outcome, nargs: c_int, nresults: c_int) -> c_int {
    match outcome {
        Outcome::Slow => lua_tuple::call_with_args(l, UV_SLOW, nargs),
        Outcome::Failed(e) => lua_tuple::raise(l, e),
        Outcome::Done(tuple, format, ticket, waiting) => {
            match tuple {
                Some(t) => lua_tuple::push_raw_with(l, t, format, UV_TUPLE_MT),
                None => ffi::lua_pushnil(l),
            }
            if nresults >= 2 {
                match ticket {
                    Some(t) => ffi::lua_pushnumber(l, t as f64),
                    None => ffi::lua_pushnil(l),
                }
            }
            if nresults >= 3 {
                ffi::lua_pushboolean(l, waiting as c_int);
            }
            nresults
        }
    }
}

/// `internal.insert(space_id, tuple[, wait])` / `internal.replace(space_id, tuple[, wait])`:
/// the tuple, the commit ticket, and true if `wait` was given and the fiber is already the
/// ticket's waiter, so it can park at once (a `wal_done` less per commit). The mlua versions
/// return only the first two.
unsafe extern "C-unwind" fn raw_insert(l: *mut ffi::lua_State) -> c_int {
    // Safety: Lua calls this with the upvalues of `raw_function`.
    unsafe {
        let outcome = raw_put(l, true);
        finish_request(l, outcome, 2, 3)
    }
}

unsafe extern "C-unwind" fn raw_replace(l: *mut ffi::lua_State) -> c_int {
    // Safety: as for `raw_insert`.
    unsafe {
        let outcome = raw_put(l, false);
        finish_request(l, outcome, 2, 3)
    }
}

/// # Safety
/// `l` is a raw request function's state.
unsafe fn raw_put(l: *mut ffi::lua_State, insert: bool) -> Outcome {
    let Some(space_id) = arg_whole(l, 1, u32::MAX as f64).map(|n| n as u32) else {
        return Outcome::Slow;
    };
    // A system space's change rebuilds box.space, which calls Lua.
    if Schema::is_system(space_id) || space_id == schema::SCHEMA_ID {
        return Outcome::Slow;
    }
    let cx = raw_cx();
    let tuple = match lua_tuple::raw_tuple(l, 2, UV_TUPLE_MT) {
        // A new tuple, as Tarantool makes one: identity (`==`) must differ.
        Some(t) => Tuple::from_trusted(t.tuple.data()),
        None if ffi::lua_type(l, 2) == ffi::LUA_TTABLE => {
            let encoded = ENCODE_BUF.with(|b| {
                let mut b = b.borrow_mut();
                b.clear();
                // The raw encoder gives arrays only (or gives up).
                lua_tuple::raw_value(l, 2, &mut b, 0, &cx)
                    .ok()
                    .map(|()| Tuple::from_trusted(&b))
            });
            match encoded {
                Some(t) => t,
                None => return Outcome::Slow,
            }
        }
        None => return Outcome::Slow,
    };
    let fid = fiber::current_id();
    let will_wait = ffi::lua_toboolean(l, 3) != 0;
    let req = if insert {
        Request::Insert { space_id, tuple }
    } else {
        Request::Replace { space_id, tuple }
    };
    let done = with_box(|rt| {
        let (shown, stmt) = rt.db.execute(fid, rt.effective_uid(), req, true)?;
        let in_txn = rt.db.in_txn(fid);
        let ticket = match stmt {
            Some(stmt) => commit_stmt(rt, stmt)?,
            None => None,
        };
        let waiting = match (ticket, rt.persist.as_mut()) {
            (Some(t), Some(p)) if will_wait => p.wait_for(t, Waiter::Fiber(fid)),
            _ => false,
        };
        let format = if shown.is_some() { rt.format_of(space_id) } else { None };
        Ok((shown, format, ticket, in_txn, waiting))
    });
    match done {
        Ok((shown, format, ticket, in_txn, waiting)) => {
            if in_txn {
                fiber::watch_next_yield(fid, on_yield);
            }
            Outcome::Done(shown, format, ticket, waiting)
        }
        Err(e) => Outcome::Failed(e),
    }
}

/// `internal.get(space_id, index_id, key)`.
unsafe extern "C-unwind" fn raw_get(l: *mut ffi::lua_State) -> c_int {
    // Safety: as for `raw_insert`.
    unsafe {
        let outcome = raw_get_outcome(l);
        finish_request(l, outcome, 3, 1)
    }
}

/// # Safety
/// `l` is a raw request function's state.
unsafe fn raw_get_outcome(l: *mut ffi::lua_State) -> Outcome {
    let (Some(space_id), Some(index_id)) = (arg_whole(l, 1, u32::MAX as f64), arg_whole(l, 2, u32::MAX as f64)) else {
        return Outcome::Slow;
    };
    let (space_id, index_id) = (space_id as u32, index_id as u32);
    let cx = raw_cx();
    let found = ENCODE_BUF.with(|b| {
        let mut key = b.borrow_mut();
        key.clear();
        if !lua_tuple::raw_key(l, 3, &cx, &mut key) {
            return None;
        }
        Some(with_box(|rt| {
            let uid = rt.effective_uid();
            let (sid, space, _) = read_target(rt, uid, space_id, index_id)?;
            let t = super::db::find_exact(space, index_id, &key)?.filter(|t| visible(rt, uid, space_id, t));
            rt.db.stats.select += 1;
            let format = if t.is_some() { rt.format_of(sid) } else { None };
            Ok((t, format))
        }))
    });
    match found {
        None => Outcome::Slow,
        Some(Ok((t, format))) => Outcome::Done(t, format, None, false),
        Some(Err(e)) => Outcome::Failed(e),
    }
}

/// `internal.wal_done(ticket)`: true once the commit's WAL write is done, false (the fiber
/// is registered as its waiter) before. A failed write, or one after which box.space must
/// be rebuilt, ends in the mlua function `UV_FINISH`, as the outcome is known by then.
unsafe extern "C-unwind" fn raw_wal_done(l: *mut ffi::lua_State) -> c_int {
    // Safety: as for `raw_insert`; nothing to drop is alive when a Lua call may unwind.
    unsafe {
        let Some(ticket) = arg_whole(l, 1, u64::MAX as f64).map(|n| n as u64) else {
            return lua_tuple::call_with_args(l, UV_SLOW, 1);
        };
        let fid = fiber::current_id();
        let outcome = with_runtime(|rt| {
            let r = match rt.persist.as_mut() {
                Some(p) => p.poll_done(&mut rt.db, ticket, Waiter::Fiber(fid)),
                None => Ok(true),
            };
            (r, rt.db.schema.version != rt.schema_version_seen)
        });
        match outcome {
            Some((Ok(false), _)) => {
                ffi::lua_pushboolean(l, 0);
                1
            }
            Some((Ok(true), false)) => {
                ffi::lua_pushboolean(l, 1);
                1
            }
            Some((result, _)) => {
                WAL_OUTCOME.with(|o| *o.borrow_mut() = Some(result.map_err(ClientError::into_lua_err)));
                lua_tuple::call_with_args(l, UV_FINISH, 0)
            }
            // Not configured: the mlua version says so.
            None => lua_tuple::call_with_args(l, UV_SLOW, 1),
        }
    }
}

// }}}

fn push(lua: &Lua, space_id: u32, t: Option<Tuple>) -> LuaResult<LuaValue> {
    match t {
        None => Ok(LuaValue::Nil),
        Some(t) => {
            let format = RUNTIME.with(|r| r.borrow_mut().as_mut().and_then(|rt| rt.format_of(space_id)));
            lua_tuple::push_tuple(lua, t, format)
        }
    }
}

fn space_ref(rt: &BoxRuntime, id: u32) -> Result<&Space, ClientError> {
    rt.db.space(id)
}

fn iter_type(code: Option<i64>) -> Result<IterType, ClientError> {
    match code {
        None => Ok(IterType::Eq),
        Some(c) => IterType::from_code(c).ok_or_else(|| client_error!(ER_ILLEGAL_PARAMS, "Invalid iterator type")),
    }
}

/// The search state of `pairs()`: the iteration and what it needs to continue.
struct LuaIterator {
    space_id: u32,
    index_id: u32,
    state: IterState,
}

impl LuaUserData for LuaIterator {}

/// A select: which index, how to iterate, which page of the result.
pub struct Select<'a> {
    /// The space or view asked for.
    pub space_id: u32,
    pub index_id: u32,
    pub iterator: IterType,
    pub offset: u64,
    pub limit: u64,
    pub key: &'a [u8],
}

/// Passes each tuple of the select to `each`; returns the space they come from (a view's
/// base space).
pub fn select_each(rt: &BoxRuntime, uid: u32, q: &Select, mut each: impl FnMut(&Tuple)) -> Result<u32, ClientError> {
    let (space_id, space, (def, index)) = read_target(rt, uid, q.space_id, q.index_id)?;
    let parts = index.key_def.validate_key(q.key, false)?;
    index.check_iterator(q.iterator, parts.len(), &def.name, space.name())?;
    let Some(mut st) = index.start(q.iterator, &parts) else {
        return Ok(space_id);
    };
    let (mut taken, mut skipped) = (0, 0);
    while taken < q.limit {
        let Some(t) = index.next(&mut st, &parts) else { break };
        if skipped < q.offset {
            skipped += 1;
            continue;
        }
        if !visible(rt, uid, q.space_id, &t) {
            continue;
        }
        each(&t);
        taken += 1;
    }
    Ok(space_id)
}

/// Views (`_vspace`...) show a non-admin only the objects it has some access to.
fn visible(rt: &BoxRuntime, uid: u32, view_id: u32, t: &Tuple) -> bool {
    use access::ObjectType;
    if uid == schema::ADMIN || view_id == base_space(rt, view_id) {
        return true;
    }
    let am = &rt.db.schema.access;
    if am.universe_access(uid) & access::PRIV_READ != 0 {
        return true;
    }
    let field = |i: u32| -> Option<u32> {
        match t.field(i).map(|raw| super::mp::read(raw, 0)) {
            Some(Ok((super::mp::Mp::UInt(v), _))) => u32::try_from(v).ok(),
            _ => None,
        }
    };
    match view_id {
        schema::VSPACE_ID | schema::VINDEX_ID => {
            let Some(id) = field(0) else { return false };
            let owner = rt.db.schema.space(id).map(|s| s.def.owner);
            owner == Some(uid) || am.object_access(uid, ObjectType::Space, id) != 0
        }
        schema::VUSER_ID => field(0) == Some(uid) || field(1) == Some(uid),
        schema::VPRIV_ID => field(0) == Some(uid) || field(1) == Some(uid),
        schema::VFUNC_ID => {
            field(1) == Some(uid)
                || field(0).is_some_and(|id| am.object_access(uid, ObjectType::Function, id) != 0)
                || am.universe_access(uid) & access::PRIV_EXECUTE != 0
        }
        _ => true,
    }
}

/// A read needs read access to the space (views: to the view itself).
fn check_read(rt: &BoxRuntime, uid: u32, space_id: u32) -> Result<(), ClientError> {
    if uid == schema::ADMIN {
        return Ok(());
    }
    let space = rt.db.space(space_id)?;
    rt.db
        .schema
        .access
        .check_space(uid, space_id, space.name(), space.def.owner, access::PRIV_READ)
}

/// The one way into a space for reads (Tarantool's `check_index`): read access, then a
/// view's base space, then the index.
fn read_target(
    rt: &BoxRuntime,
    uid: u32,
    space_id: u32,
    index_id: u32,
) -> Result<(u32, &Space, &(super::space::IndexDef, super::index::Index)), ClientError> {
    check_read(rt, uid, space_id)?;
    let sid = base_space(rt, space_id);
    let space = space_ref(rt, sid)?;
    Ok((sid, space, space.find_index(index_id)?))
}

/// Reads from a view go to the space it shows.
fn base_space(rt: &BoxRuntime, space_id: u32) -> u32 {
    match rt.db.schema.space(space_id) {
        // _vsequence shows _sequence (285 is _sequence_data); the others precede their view.
        Some(s) if s.def.engine == "sysview" && space_id == schema::VSEQUENCE_ID => schema::SEQUENCE_ID,
        Some(s) if s.def.engine == "sysview" => space_id - 1,
        _ => space_id,
    }
}

fn key_bytes(lua: &Lua, key: &LuaValue) -> LuaResult<Vec<u8>> {
    lua_tuple::key_from_lua(lua, key)
}

fn raise_fn(lua: &Lua) -> LuaResult<LuaFunction> {
    lua.create_function(|_, args: LuaMultiValue| -> LuaResult<()> {
        let mut it = args.into_iter();
        let code = match it.next() {
            Some(LuaValue::Integer(c)) => c as u32,
            Some(LuaValue::Number(c)) => c as u32,
            _ => 0,
        };
        let owned: Vec<String> = it.map(|v| lua_arg_string(&v)).collect();
        let args: Vec<Arg> = owned
            .iter()
            .map(|s| match s.parse::<i64>() {
                Ok(n) if !s.is_empty() => Arg::Int(n),
                _ => Arg::Str(s.as_str().into()),
            })
            .collect();
        Err(ClientError::new(code, &args).into_lua_err())
    })
}

fn lua_arg_string(v: &LuaValue) -> String {
    match v {
        LuaValue::String(s) => s.to_string_lossy(),
        LuaValue::Integer(i) => i.to_string(),
        LuaValue::Number(n) if n.fract() == 0.0 => (*n as i64).to_string(),
        LuaValue::Number(n) => n.to_string(),
        LuaValue::Boolean(b) => b.to_string(),
        LuaValue::Nil => String::new(),
        other => format!("{other:?}"),
    }
}

fn field_type_name(t: FieldType) -> &'static str {
    t.name()
}

/// `box.internal` for lua/box.lua.
pub fn internal(lua: &Lua) -> LuaResult<LuaTable> {
    let m = lua.create_table()?;
    m.set("raise", raise_fn(lua)?)?;
    m.set(
        "set_schema_hook",
        lua.create_function(|_, f: LuaFunction| {
            SCHEMA_HOOK.with(|h| *h.borrow_mut() = Some(f));
            Ok(())
        })?,
    )?;
    m.set(
        "last_change",
        lua.create_function(|lua, ()| {
            let change = with_box(|rt| Ok(rt.db.last_change.clone()))?;
            match change {
                Some((space_id, old, new)) => Ok((true, push(lua, space_id, old)?, push(lua, space_id, new)?)),
                None => Ok((false, LuaValue::Nil, LuaValue::Nil)),
            }
        })?,
    )?;
    m.set(
        "last_change_reset",
        lua.create_function(|_, ()| {
            with_box(|rt| {
                rt.db.last_change = None;
                Ok(())
            })
        })?,
    )?;
    // The primary key of a tuple of the space, as a tuple (usable as a search key).
    m.set(
        "primary_key",
        lua.create_function(|lua, (space_id, t): (u32, LuaValue)| {
            let tuple = lua_tuple::tuple_from_lua(lua, &t)?;
            let key = with_box(|rt| {
                let space = rt.db.space(space_id)?;
                let pk = space
                    .primary()
                    .ok_or_else(|| client_error!(ER_NO_SUCH_INDEX_ID, 0u32, space.name()))?;
                Ok(pk.key_def.extract_key(&tuple))
            })?;
            lua_tuple::push_tuple(lua, Tuple::from_trusted(&key), None)
        })?,
    )?;
    m.set(
        "take_logs",
        lua.create_function(|lua, ()| {
            let msgs = RUNTIME.with(|r| {
                r.borrow_mut()
                    .as_mut()
                    .map(|rt| std::mem::take(&mut rt.db.pending_errors))
                    .unwrap_or_default()
            });
            if msgs.is_empty() {
                return Ok(LuaValue::Nil);
            }
            Ok(LuaValue::Table(lua.create_sequence_from(msgs)?))
        })?,
    )?;

    // {{{ writes
    let slow_insert = lua.create_function(|lua, (space_id, tuple): (u32, LuaValue)| {
        let tuple = lua_tuple::tuple_from_lua(lua, &tuple)?;
        write(lua, Request::Insert { space_id, tuple })
    })?;
    m.set("insert", raw_function(lua, raw_insert, slow_insert, None)?)?;
    let slow_replace = lua.create_function(|lua, (space_id, tuple): (u32, LuaValue)| {
        let tuple = lua_tuple::tuple_from_lua(lua, &tuple)?;
        write(lua, Request::Replace { space_id, tuple })
    })?;
    m.set("replace", raw_function(lua, raw_replace, slow_replace, None)?)?;
    m.set(
        "update",
        lua.create_function(|lua, (space_id, index_id, key, ops): (u32, u32, LuaValue, LuaValue)| {
            let key = key_bytes(lua, &key)?;
            let ops = lua_tuple::value_to_msgpack(lua, &ops)?;
            write(
                lua,
                Request::Update {
                    space_id,
                    index_id,
                    key: &key,
                    ops: &ops,
                    index_base: 1,
                },
            )
        })?,
    )?;
    m.set(
        "upsert",
        lua.create_function(|lua, (space_id, tuple, ops): (u32, LuaValue, LuaValue)| {
            let tuple = lua_tuple::tuple_from_lua(lua, &tuple)?;
            let ops = lua_tuple::value_to_msgpack(lua, &ops)?;
            let (_, ticket) = write(
                lua,
                Request::Upsert {
                    space_id,
                    tuple,
                    ops: &ops,
                    index_base: 1,
                },
            )?;
            // upsert returns nothing; only the ticket.
            Ok((LuaValue::Nil, ticket))
        })?,
    )?;
    m.set(
        "delete",
        lua.create_function(|lua, (space_id, index_id, key): (u32, u32, LuaValue)| {
            let key = key_bytes(lua, &key)?;
            write(
                lua,
                Request::Delete {
                    space_id,
                    index_id,
                    key: &key,
                },
            )
        })?,
    )?;
    m.set(
        "truncate",
        lua.create_function(|lua, space_id: u32| {
            let fid = fid(lua);
            let ticket = with_box(|rt| {
                if rt.db.in_txn(fid) {
                    return Err(client_error!(
                        ER_UNSUPPORTED,
                        "Truncate",
                        "multi-statement transactions"
                    ));
                }
                let space = rt.db.space(space_id)?;
                if rt.db.read_only && !space.def.temporary {
                    return Err(client_error!(ER_READONLY));
                }
                let uid = rt.effective_uid();
                if uid != schema::ADMIN {
                    rt.db.schema.access.check_space(
                        uid,
                        space_id,
                        space.name(),
                        space.def.owner,
                        access::PRIV_WRITE,
                    )?;
                }
                let temporary = space.def.temporary;
                let stmts: Vec<Stmt> = space
                    .primary()
                    .map(|pk| {
                        pk.tuples()
                            .map(|t| Stmt {
                                space_id,
                                old: Some(t.clone()),
                                new: None,
                                row: if temporary {
                                    None
                                } else {
                                    let mut body = Vec::new();
                                    super::mp::write_map_header(&mut body, 3);
                                    body.push(super::db::KEY_SPACE_ID);
                                    super::mp::write_uint(&mut body, space_id as u64);
                                    body.push(super::db::KEY_INDEX_ID);
                                    body.push(0);
                                    body.push(super::db::KEY_KEY);
                                    body.extend_from_slice(&pk.key_def.extract_key(t));
                                    Some((super::db::IPROTO_DELETE, body, space.def.group_id))
                                },
                                is_sync: space.def.is_sync,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(space) = rt.db.schema.space_mut(space_id) {
                    space.truncate();
                }
                commit_stmts(rt, stmts)
            })?;
            Ok(ticket.map(|t| t as i64))
        })?,
    )?;
    // }}}

    // {{{ reads
    let slow_get = lua.create_function(|lua, (space_id, index_id, key): (u32, u32, LuaValue)| {
        let key = key_bytes(lua, &key)?;
        let (sid, t) = with_box(|rt| {
            let (sid, space, _) = read_target(rt, rt.effective_uid(), space_id, index_id)?;
            let t =
                super::db::find_exact(space, index_id, &key)?.filter(|t| visible(rt, rt.effective_uid(), space_id, t));
            rt.db.stats.select += 1;
            Ok((sid, t))
        })?;
        // nil for none: lua/box.lua turns it into no value, as Tarantool returns.
        push(lua, sid, t)
    })?;
    m.set("get", raw_function(lua, raw_get, slow_get, None)?)?;
    m.set(
        "select",
        lua.create_function(
            |lua, (space_id, index_id, it, offset, limit, key): (u32, u32, Option<i64>, f64, f64, LuaValue)| {
                let key = key_bytes(lua, &key)?;
                let (sid, tuples) = with_box(|rt| {
                    let q = Select {
                        space_id,
                        index_id,
                        iterator: iter_type(it)?,
                        offset: offset.max(0.0) as u64,
                        limit: if limit < 0.0 { 0 } else { limit as u64 },
                        key: &key,
                    };
                    rt.db.stats.select += 1;
                    let mut tuples = Vec::new();
                    let sid = select_each(rt, rt.effective_uid(), &q, |t| tuples.push(t.clone()))?;
                    Ok((sid, tuples))
                })?;
                let format = RUNTIME.with(|r| r.borrow_mut().as_mut().and_then(|rt| rt.format_of(sid)));
                let out = lua.create_table_with_capacity(tuples.len(), 0)?;
                for (i, t) in tuples.into_iter().enumerate() {
                    out.raw_set(i + 1, lua_tuple::push_tuple(lua, t, format.clone())?)?;
                }
                Ok(out)
            },
        )?,
    )?;
    m.set(
        "iterator",
        lua.create_function(
            |lua, (space_id, index_id, it, key): (u32, u32, Option<i64>, LuaValue)| {
                let key = key_bytes(lua, &key)?;
                let st = with_box(|rt| {
                    let it = iter_type(it)?;
                    let (sid, space, (def, index)) = read_target(rt, rt.effective_uid(), space_id, index_id)?;
                    let parts = index.key_def.validate_key(&key, false)?;
                    index.check_iterator(it, parts.len(), &def.name, space.name())?;
                    let it = if parts.is_empty() && it == IterType::Eq {
                        IterType::All
                    } else {
                        it
                    };
                    let state = index.start(it, &parts).ok_or_else(|| client_error!(ER_UNKNOWN))?;
                    rt.db.stats.select += 1;
                    Ok(LuaIterator {
                        space_id: sid,
                        index_id,
                        state,
                    })
                })?;
                lua.create_userdata(st)
            },
        )?,
    )?;
    m.set(
        "iterator_next",
        lua.create_function(|lua, (ud, _ctl): (LuaAnyUserData, LuaValue)| {
            let (sid, t) = {
                let mut it = ud.borrow_mut::<LuaIterator>()?;
                let it = &mut *it;
                let t = with_box(|rt| {
                    let Some(space) = rt.db.schema.space(it.space_id) else {
                        return Ok(None);
                    };
                    let Some((_, index)) = space.index(it.index_id) else {
                        return Ok(None);
                    };
                    let key_bytes = std::mem::take(&mut it.state.key);
                    let key = split_key(&key_bytes, it.state.key_parts);
                    let next = index.next(&mut it.state, &key);
                    it.state.key = key_bytes;
                    Ok(next)
                })?;
                (it.space_id, t)
            };
            match t {
                None => Ok(LuaMultiValue::new()),
                Some(t) => {
                    let v = push(lua, sid, Some(t))?;
                    Ok(LuaMultiValue::from_iter([LuaValue::UserData(ud), v]))
                }
            }
        })?,
    )?;
    m.set(
        "count",
        lua.create_function(
            |lua, (space_id, index_id, it, key): (u32, u32, Option<i64>, LuaValue)| {
                let key = key_bytes(lua, &key)?;
                with_box(|rt| {
                    let it = iter_type(it)?;
                    let (_, _, (_, index)) = read_target(rt, rt.effective_uid(), space_id, index_id)?;
                    let parts = index.key_def.validate_key(&key, false)?;
                    if parts.is_empty() && matches!(it, IterType::Eq | IterType::All | IterType::Ge | IterType::Le) {
                        return Ok(index.len() as u64);
                    }
                    let Some(mut st) = index.start(it, &parts) else {
                        return Ok(0);
                    };
                    let mut n = 0u64;
                    while index.next(&mut st, &parts).is_some() {
                        n += 1;
                    }
                    Ok(n)
                })
            },
        )?,
    )?;
    m.set(
        "len",
        lua.create_function(|_, (space_id, index_id): (u32, u32)| {
            with_box(|rt| {
                let (_, _, (_, index)) = read_target(rt, rt.effective_uid(), space_id, index_id)?;
                Ok(index.len() as u64)
            })
        })?,
    )?;
    m.set(
        "bsize",
        lua.create_function(|_, (space_id, index_id): (u32, u32)| {
            with_box(|rt| {
                let (_, _, (_, index)) = read_target(rt, rt.effective_uid(), space_id, index_id)?;
                Ok(index.bsize() as u64)
            })
        })?,
    )?;
    m.set(
        "space_bsize",
        lua.create_function(|_, space_id: u32| with_box(|rt| Ok(space_ref(rt, space_id)?.bsize() as u64)))?,
    )?;
    for (name, is_max) in [("min", false), ("max", true)] {
        m.set(
            name,
            lua.create_function(move |lua, (space_id, index_id, key): (u32, u32, LuaValue)| {
                let key = key_bytes(lua, &key)?;
                let (sid, t) = with_box(|rt| {
                    let (sid, space, (def, index)) = read_target(rt, rt.effective_uid(), space_id, index_id)?;
                    let parts = index.key_def.validate_key(&key, false)?;
                    if index.index_type == super::index::IndexType::Hash {
                        return Err(client_error!(
                            ER_UNSUPPORTED_INDEX_FEATURE,
                            &def.name,
                            "HASH",
                            space.name(),
                            "memtx",
                            if is_max { "max()" } else { "min()" }
                        ));
                    }
                    Ok((sid, if is_max { index.max(&parts) } else { index.min(&parts) }))
                })?;
                push(lua, sid, t)
            })?,
        )?;
    }
    m.set(
        "random",
        lua.create_function(|lua, (space_id, index_id, rnd): (u32, u32, f64)| {
            let (sid, t) = with_box(|rt| {
                let (sid, _, (_, index)) = read_target(rt, rt.effective_uid(), space_id, index_id)?;
                Ok((sid, index.random(rnd.max(0.0) as u64)))
            })?;
            push(lua, sid, t)
        })?,
    )?;
    // }}}

    // {{{ transactions
    m.set(
        "begin",
        lua.create_function(|lua, ()| {
            let fid = fid(lua);
            with_box(|rt| rt.db.begin(fid).map(|_| ()))
        })?,
    )?;
    m.set(
        "commit",
        lua.create_function(|lua, ()| {
            let fid = fid(lua);
            let ticket = with_box(|rt| {
                let stmts = rt.db.commit(fid)?;
                commit_stmts(rt, stmts)
            })?;
            Ok(ticket.map(|t| t as i64))
        })?,
    )?;
    m.set(
        "rollback",
        lua.create_function(|lua, ()| {
            let fid = fid(lua);
            with_box(|rt| {
                rt.db.rollback(fid);
                Ok(())
            })?;
            after_write(lua)
        })?,
    )?;
    m.set(
        "txn_id",
        lua.create_function(|lua, ()| {
            let fid = fid(lua);
            if !is_started() {
                return Ok(None);
            }
            with_box(|rt| Ok(rt.db.txns.get(&fid).map(|t| t.id)))
        })?,
    )?;
    m.set(
        "savepoint",
        lua.create_function(|lua, ()| {
            let fid = fid(lua);
            with_box(|rt| rt.db.savepoint(fid).map(|(id, pos)| (id, pos as u64)))
        })?,
    )?;
    m.set(
        "rollback_to",
        lua.create_function(|lua, (txn_id, pos): (u64, u64)| {
            let fid = fid(lua);
            with_box(|rt| rt.db.rollback_to(fid, txn_id, pos as usize))?;
            after_write(lua)
        })?,
    )?;
    let slow_wal_done = lua.create_function(|lua, ticket: u64| {
        let fid = fid(lua);
        let outcome = with_box(|rt| match rt.persist.as_mut() {
            Some(p) => p.poll_done(&mut rt.db, ticket, Waiter::Fiber(fid)),
            None => Ok(true),
        });
        if !matches!(outcome, Ok(false)) {
            // A failed write rolled statements back: DDL among them changes box.space.
            after_write(lua)?;
        }
        outcome
    })?;
    let finish_wal_done = lua.create_function(|lua, ()| {
        let outcome = WAL_OUTCOME
            .with(|o| o.borrow_mut().take())
            .unwrap_or_else(|| Err(LuaError::runtime("wal_done: no outcome")));
        after_write(lua)?;
        outcome
    })?;
    m.set(
        "wal_done",
        raw_function(lua, raw_wal_done, slow_wal_done, Some(finish_wal_done))?,
    )?;
    // A function: the fiber module (which registers the park) loads after this table.
    m.set(
        "park_function",
        lua.create_function(|lua, ()| lua.named_registry_value::<LuaFunction>(fiber::PARK_UNTIL_WOKEN))?,
    )?;
    // }}}

    // {{{ schema information
    m.set(
        "spaces",
        lua.create_function(|lua, ()| {
            let out = lua.create_table()?;
            RUNTIME.with(|r| -> LuaResult<()> {
                let r = r.borrow();
                let Some(rt) = r.as_ref() else { return Ok(()) };
                for (i, space) in rt.db.schema.spaces.values().enumerate() {
                    out.raw_set(i + 1, space_info(lua, space)?)?;
                }
                Ok(())
            })?;
            Ok(out)
        })?,
    )?;
    m.set(
        "space_format",
        lua.create_function(|lua, space_id: u32| {
            let info = RUNTIME.with(|r| -> LuaResult<Option<LuaTable>> {
                let r = r.borrow();
                let Some(rt) = r.as_ref() else { return Ok(None) };
                match rt.db.schema.space(space_id) {
                    Some(s) => Ok(Some(format_table(lua, s)?)),
                    None => Ok(None),
                }
            })?;
            info.ok_or_else(|| client_error!(ER_NO_SUCH_SPACE, space_id.to_string()).into_lua_err())
        })?,
    )?;
    m.set(
        "field_type_ok",
        lua.create_function(|_, t: LuaValue| {
            Ok(match t {
                LuaValue::String(s) => FieldType::parse(&s.to_string_lossy()).is_some(),
                _ => false,
            })
        })?,
    )?;
    // }}}

    // {{{ users and sessions
    m.set(
        "password_hash",
        lua.create_function(|_, pw: LuaString| Ok(chap_sha1::hash2_base64(pw.as_bytes())))?,
    )?;
    m.set(
        "privilege_bits",
        lua.create_function(|_, (text, object_type): (LuaValue, String)| {
            let bits = match &text {
                LuaValue::String(s) => access::parse_privileges(&s.to_string_lossy()),
                LuaValue::Integer(i) => *i as u32,
                LuaValue::Number(n) => *n as u32,
                _ => 0,
            };
            let text = lua_arg_string(&text);
            access::privilege_check(bits, &text, &object_type).map_err(ClientError::into_lua_err)
        })?,
    )?;
    m.set(
        "privilege_names",
        lua.create_function(|_, bits: u32| Ok(access::privilege_names(bits)))?,
    )?;
    m.set(
        "user_info",
        lua.create_function(|lua, uid: u32| {
            let rows = with_box(|rt| {
                let schema = &rt.db.schema;
                let resolve = |ty: access::ObjectType, id: u32| -> Option<String> {
                    match ty {
                        access::ObjectType::Space => schema.space(id).map(|s| s.def.name.clone()),
                        access::ObjectType::Function => schema.funcs.get(&id).map(|f| f.name.clone()),
                        access::ObjectType::Role | access::ObjectType::User => {
                            schema.access.user(id).map(|u| u.name.clone())
                        }
                        _ => None,
                    }
                };
                Ok(schema.access.user_info(uid, resolve))
            })?;
            let out = lua.create_table()?;
            for (i, p) in rows.into_iter().enumerate() {
                let row = lua.create_sequence_from([
                    LuaValue::String(lua.create_string(&p.privs)?),
                    LuaValue::String(lua.create_string(p.object_type)?),
                    LuaValue::String(lua.create_string(&p.object_name)?),
                ])?;
                out.raw_set(i + 1, row)?;
            }
            Ok(out)
        })?,
    )?;
    m.set(
        "priv",
        lua.create_table_from([
            ("READ", access::PRIV_READ),
            ("WRITE", access::PRIV_WRITE),
            ("EXECUTE", access::PRIV_EXECUTE),
            ("SESSION", access::PRIV_SESSION),
            ("USAGE", access::PRIV_USAGE),
            ("CREATE", access::PRIV_CREATE),
            ("DROP", access::PRIV_DROP),
            ("ALTER", access::PRIV_ALTER),
        ])?,
    )?;
    m.set(
        "session_uid",
        lua.create_function(|_, ()| {
            let fid = fiber::current_id();
            Ok(session::uid(fid).unwrap_or_else(|| RUNTIME.with(|r| r.borrow().as_ref().map_or(1, |rt| rt.uid))))
        })?,
    )?;
    m.set(
        "session_euid",
        lua.create_function(|_, ()| {
            let fid = fiber::current_id();
            Ok(session::euid(fid).unwrap_or_else(|| RUNTIME.with(|r| r.borrow().as_ref().map_or(1, |rt| rt.euid))))
        })?,
    )?;
    m.set(
        "set_euid",
        lua.create_function(|_, uid: u32| {
            if !session::set_euid(fiber::current_id(), uid, false) {
                RUNTIME.with(|r| {
                    if let Some(rt) = r.borrow_mut().as_mut() {
                        rt.euid = uid;
                    }
                });
            }
            Ok(())
        })?,
    )?;
    m.set(
        "set_uid",
        lua.create_function(|_, uid: u32| {
            if !session::set_euid(fiber::current_id(), uid, true) {
                RUNTIME.with(|r| {
                    if let Some(rt) = r.borrow_mut().as_mut() {
                        rt.uid = uid;
                        rt.euid = uid;
                    }
                });
            }
            Ok(())
        })?,
    )?;
    m.set(
        "session_id",
        lua.create_function(|_, ()| Ok(session::of_fiber(fiber::current_id()).map_or(1, |s| s.id)))?,
    )?;
    m.set(
        "session_exists",
        lua.create_function(|_, id: u64| Ok(session::exists(id)))?,
    )?;
    m.set(
        "session_peer",
        // Without an id: the running session's peer. With one: (found, peer).
        lua.create_function(|_, id: Option<u64>| {
            let mine = session::of_fiber(fiber::current_id());
            Ok(match id {
                None => (true, mine.map(|s| s.peer.clone())),
                Some(1) => (true, None),
                Some(id) => match session::by_id(id) {
                    Some(s) => (true, Some(s.peer.clone())),
                    None => (false, None),
                },
            })
        })?,
    )?;
    m.set(
        "session_sync",
        lua.create_function(|_, ()| Ok(session::sync(fiber::current_id()).unwrap_or(0)))?,
    )?;
    m.set(
        "session_push",
        lua.create_function(|lua, (value, sync): (LuaValue, Option<u64>)| {
            let fid = fiber::current_id();
            let Some(s) = session::of_fiber(fid) else {
                return Err(client_error!(ER_UNSUPPORTED, "Session 'console'", "push()").into_lua_err());
            };
            let data = lua_tuple::value_to_msgpack(lua, &value)?;
            let sync = sync.or_else(|| session::sync(fid)).unwrap_or(0);
            if !s.push(sync, &data) {
                let kind = format!("Session '{}'", s.kind.name());
                return Err(client_error!(ER_UNSUPPORTED, kind, "push()").into_lua_err());
            }
            Ok(true)
        })?,
    )?;
    m.set(
        "user_name",
        lua.create_function(|_, uid: u32| {
            // Before box.cfg{} only the built-in users exist (Tarantool answers the same).
            let configured = RUNTIME.with(|r| r.borrow().is_some());
            if !configured {
                return Ok(match uid {
                    access::GUEST => Some("guest".to_string()),
                    access::ADMIN => Some("admin".to_string()),
                    _ => None,
                });
            }
            with_box(|rt| Ok(rt.db.schema.access.user(uid).map(|u| u.name.clone())))
        })?,
    )?;
    m.set(
        "user_id",
        lua.create_function(|_, name: String| {
            with_box(|rt| Ok(rt.db.schema.access.user_by_name(&name).map(|u| u.id)))
        })?,
    )?;
    m.set(
        "set_space_triggers",
        lua.create_function(|_, (space_id, has): (u32, bool)| {
            with_box(|rt| {
                if has {
                    rt.spaces_with_triggers.insert(space_id);
                } else {
                    rt.spaces_with_triggers.remove(&space_id);
                }
                Ok(())
            })
        })?,
    )?;
    m.set(
        "session_type",
        lua.create_function(|_, ()| Ok(session::kind_name(fiber::current_id())))?,
    )?;
    // }}}

    super::lua_info::install(lua, &m)?;
    super::lua_election::install(lua, &m)?;
    Ok(m)
}

fn format_table(lua: &Lua, space: &Space) -> LuaResult<LuaTable> {
    let format = lua.create_table()?;
    for (i, f) in space.def.format.iter().enumerate() {
        let ft = lua.create_table()?;
        ft.set("name", f.name.as_str())?;
        ft.set("type", field_type_name(f.field_type))?;
        if f.is_nullable {
            ft.set("is_nullable", true)?;
        }
        format.raw_set(i + 1, ft)?;
    }
    Ok(format)
}

fn space_info(lua: &Lua, space: &Space) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    t.set("id", space.def.id)?;
    t.set("name", space.def.name.as_str())?;
    t.set("engine", space.def.engine.as_str())?;
    t.set("field_count", space.def.field_count)?;
    t.set("is_sync", space.def.is_sync)?;
    t.set("temporary", space.def.temporary)?;
    t.set("is_local", space.def.group_id == 1)?;
    t.set("enabled", space.primary().is_some())?;
    t.set("format", format_table(lua, space)?)?;
    let indexes = lua.create_table()?;
    for (def, index) in space.indexes.iter().flatten() {
        let it = lua.create_table()?;
        it.set("id", def.id)?;
        it.set("name", def.name.as_str())?;
        it.set("type", def.index_type.name())?;
        it.set("unique", def.unique)?;
        let parts = lua.create_table()?;
        for (j, p) in index.key_def.parts.iter().enumerate() {
            // In the order Tarantool's luaT_push_key_def sets them (console output).
            let pt = lua.create_table()?;
            pt.set("type", p.field_type.name())?;
            pt.set("fieldno", p.fieldno + 1)?;
            pt.set("is_nullable", p.is_nullable)?;
            parts.raw_set(j + 1, pt)?;
        }
        it.set("parts", parts)?;
        indexes.raw_set(indexes.raw_len() + 1, it)?;
    }
    t.set("indexes", indexes)?;
    Ok(t)
}

/// `box.error`: raise by code, `new`, the code constants, `last`.
pub fn error_module(lua: &Lua) -> LuaResult<LuaTable> {
    let m = lua.create_table()?;
    for e in ERRCODES {
        m.raw_set(e.name, e.code)?;
    }
    let new_error = |lua: &Lua, args: LuaMultiValue| -> LuaResult<BoxError> {
        let mut it = args.into_iter();
        match it.next() {
            Some(LuaValue::Table(t)) => {
                let code: u32 = t.get::<Option<u32>>("code")?.unwrap_or(0);
                let reason: String = t.get::<Option<String>>("reason")?.unwrap_or_default();
                let kind: Option<String> = t.get("type")?;
                match kind {
                    Some(k) => Ok(BoxError {
                        kind: Box::leak(k.into_boxed_str()),
                        code: Some(code),
                        message: reason,
                        errno: None,
                    }),
                    None => Ok(BoxError::new("ClientError", code, reason)),
                }
            }
            Some(LuaValue::Integer(c)) => {
                let rest: Vec<String> = it.map(|v| lua_arg_string(&v)).collect();
                let template = ERRCODES.get(c as usize).map(|e| e.template).unwrap_or("Unknown error");
                let args: Vec<Arg> = rest
                    .iter()
                    .map(|s| match s.parse::<i64>() {
                        Ok(n) => Arg::Int(n),
                        Err(_) => Arg::Str(s.as_str().into()),
                    })
                    .collect();
                Ok(BoxError::new("ClientError", c as u32, format_template(template, &args)))
            }
            Some(LuaValue::Number(c)) => {
                let _ = lua;
                Ok(BoxError::new(
                    "ClientError",
                    c as u32,
                    format_template(
                        ERRCODES.get(c as usize).map(|e| e.template).unwrap_or("Unknown error"),
                        &[],
                    ),
                ))
            }
            _ => Err(LuaError::runtime("box.error(): bad arguments")),
        }
    };
    m.set(
        "new",
        lua.create_function(move |lua, args: LuaMultiValue| {
            let e = new_error(lua, args)?;
            lua.create_userdata(crate::runtime::errors::ErrorObject(e))
        })?,
    )?;
    let mt = lua.create_table()?;
    mt.set(
        "__call",
        lua.create_function(move |lua, args: LuaMultiValue| -> LuaResult<()> {
            let mut it = args.into_iter();
            it.next(); // the box.error table itself
            let rest: LuaMultiValue = it.collect();
            if rest.is_empty() {
                // box.error(): raise the last error again, if there is one.
                return match crate::runtime::errors::last_error() {
                    Some(e) => Err(e.into_lua_err()),
                    None => Ok(()),
                };
            }
            if let Some(LuaValue::UserData(ud)) = rest.front() {
                if let Ok(e) = ud.borrow::<crate::runtime::errors::ErrorObject>() {
                    return Err(e.0.clone().into_lua_err());
                }
            }
            Err(new_error(lua, rest)?.into_lua_err())
        })?,
    )?;
    m.set_metatable(Some(mt))?;
    m.set(
        "last",
        lua.create_function(|lua, ()| match crate::runtime::errors::last_error() {
            Some(e) => lua
                .create_userdata(crate::runtime::errors::ErrorObject(e))
                .map(LuaValue::UserData),
            None => Ok(LuaValue::Nil),
        })?,
    )?;
    m.set(
        "clear",
        lua.create_function(|_, ()| {
            crate::runtime::errors::set_last_error(None);
            Ok(())
        })?,
    )?;
    Ok(m)
}

const BOX_LUA: &str = include_str!("../../lua/box.lua");
const IPROTO_LUA: &str = include_str!("../../lua/box/iproto.lua");
const CFG_CHECK_LUA: &str = include_str!("../../lua/box/cfg_check.lua");

/// Fills the `box` global: box.error, box.tuple, and the Lua API of lua/box.lua.
pub fn install(lua: &Lua) -> LuaResult<()> {
    let boxt: LuaTable = lua.globals().get("box")?;
    boxt.set("error", error_module(lua)?)?;
    let cfg_check: LuaTable = lua.load(CFG_CHECK_LUA).set_name("=box/cfg_check").call(())?;
    let internal = internal(lua)?;
    boxt.set("internal", internal.clone())?;
    crate::iproto::server::install(lua, &internal)?;
    crate::iproto::workers::install(lua, &internal)?;
    lua.load(BOX_LUA)
        .set_name("=box")
        .call::<()>((internal.clone(), cfg_check))?;
    lua.load(IPROTO_LUA).set_name("=box/iproto").call::<()>(internal)?;
    Ok(())
}
