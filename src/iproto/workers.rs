//! The fibers that serve IPROTO requests in Lua (CALL, EVAL, writes to spaces with
//! triggers, session triggers).
//!
//! Each request runs in a fiber of its own, so one that yields holds up no other, but a
//! fiber is not made per request: as Tarantool's TX thread takes request fibers from a pool,
//! a fiber that has served a request parks (`worker` in lua/box/iproto.lua) and serves a
//! later one. Before it does, it is made to look new ([`fiber::reset_for_reuse`]: the name
//! `main` that Tarantool's request fibers have, no `fiber.self().storage`); its session binding ends with the request's reply, and
//! a transaction left open is rolled back by the park, as at any yield. A cancelled worker
//! ends instead of coming back, as Tarantool's do.
//!
//! The request's handler and arguments are pushed straight onto the parked worker's stack
//! (they are what its `coroutine.yield` returns): no mlua values on the way for the common
//! arguments, no new coroutine, no fiber bookkeeping to build and tear down.

use std::cell::RefCell;
use std::ffi::c_int;
use std::rc::Rc;

use mlua::ffi;
use mlua::prelude::*;

use crate::box_::mp::{self, Mp};
use crate::runtime::fiber::{self, Fiber, Start};
use crate::serialize::CDATA_THRESHOLD;

/// A worker's name at the start of each request: Tarantool names its request fibers after
/// the TX thread's cord.
const WORKER_NAME: &str = "main";

/// Idle workers kept; past this many, a worker that finishes a request ends (a burst of
/// slow requests must not leave thousands of parked fibers behind).
const IDLE_MAX: usize = 256;

thread_local! {
    /// Parked workers, the most recently used last (its stack is the warmest).
    static IDLE: RefCell<Vec<Rc<Fiber>>> = const { RefCell::new(Vec::new()) };
    /// The workers' Lua body, set by lua/box/iproto.lua.
    static BODY: RefCell<Option<LuaFunction>> = const { RefCell::new(None) };
}

/// What to push onto a worker's stack: the handler (a registry reference) and its arguments.
pub struct Work<'a> {
    pub handler: c_int,
    pub token: i64,
    /// Pushed after the token, in this order.
    pub leading: &'a [Leading<'a>],
    /// A MessagePack array of [`plain_scalars`] whose items follow (CALL and EVAL arguments).
    pub msgpack_items: Option<&'a [u8]>,
    /// Pushed last, through mlua (the rarer requests build their arguments so).
    pub values: LuaMultiValue,
}

pub enum Leading<'a> {
    Str(&'a [u8]),
    Int(i64),
}

/// Runs `work` in an idle worker, or a new one: `before_start(fiber id)` binds it to the
/// session first. On an error the work did not start (the caller unbinds).
pub fn run(lua: &Lua, work: Work<'_>, before_start: impl FnOnce(u64)) -> LuaResult<()> {
    let worker = match take_idle() {
        Some(w) => w,
        None => spawn(lua)?,
    };
    before_start(worker.id);
    let result = fiber::resume_with(lua, &worker, |co| push(lua, co, work));
    if result.is_err() && fiber::is_idle(&worker) {
        IDLE.with(|i| i.borrow_mut().push(worker));
    }
    result
}

fn take_idle() -> Option<Rc<Fiber>> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let f = &idle[i];
            if fiber::is_dead(f) || f.is_cancelled() {
                idle.swap_remove(i);
            } else if fiber::is_idle(f) {
                // Not one with a wakeup on its way: it would take that for its request.
                return Some(idle.swap_remove(i));
            }
        }
        None
    })
}

/// A new worker, parked and ready for [`fiber::resume_with`].
fn spawn(lua: &Lua) -> LuaResult<Rc<Fiber>> {
    let body = BODY.with(|b| b.borrow().clone());
    let body = body.ok_or_else(|| LuaError::runtime("iproto workers are not installed"))?;
    fiber::spawn(lua, WORKER_NAME, body, LuaMultiValue::new(), Start::Eager)
}

/// Pushes the handler and its arguments onto the parked worker's stack; returns how many.
fn push(lua: &Lua, co: *mut ffi::lua_State, work: Work<'_>) -> LuaResult<c_int> {
    let items = match work.msgpack_items {
        Some(raw) => mp::read_array(raw, 0).ok_or_else(|| LuaError::runtime("arguments are not an array"))?,
        None => (0, 0),
    };
    let room = 2 + work.leading.len() + items.0 as usize + work.values.len();
    let room = c_int::try_from(room).map_err(|_| LuaError::runtime("too many arguments"))?;
    // Safety: `co` is the worker's suspended coroutine with an empty stack; everything
    // pushed is checked for room first and nothing here raises a Lua error.
    unsafe {
        if ffi::lua_checkstack(co, room + 1) == 0 {
            return Err(LuaError::runtime("too many arguments"));
        }
        ffi::lua_rawgeti(co, ffi::LUA_REGISTRYINDEX, work.handler as ffi::lua_Integer);
        ffi::lua_pushinteger(co, work.token as ffi::lua_Integer);
        for v in work.leading {
            match v {
                Leading::Str(s) => {
                    ffi::lua_pushlstring(co, s.as_ptr() as *const _, s.len());
                }
                Leading::Int(i) => ffi::lua_pushinteger(co, *i as ffi::lua_Integer),
            }
        }
        if let Some(raw) = work.msgpack_items {
            if !push_scalars(co, raw, items.0, items.1) {
                return Err(LuaError::runtime("arguments are not plain scalars"));
            }
        }
        move_values(lua, co, work.values)?;
        Ok(ffi::lua_gettop(co))
    }
}

/// True if `raw` is a MessagePack array of scalars that Lua holds as plain values (no
/// box.NULL, tables, big integers or extensions): [`Work::msgpack_items`] takes only those,
/// the rest goes through the full decoder.
pub fn plain_scalars(raw: &[u8]) -> bool {
    let Some((count, mut pos)) = mp::read_array(raw, 0) else {
        return false;
    };
    for _ in 0..count {
        match mp::read(raw, pos) {
            Ok((Mp::Nil | Mp::Array(_) | Mp::Map(_) | Mp::Ext(..), _)) | Err(_) => return false,
            Ok((Mp::UInt(u), _)) if u >= CDATA_THRESHOLD => return false,
            Ok((Mp::Int(i), _)) if i.unsigned_abs() >= CDATA_THRESHOLD => return false,
            Ok((_, next)) => pos = next,
        }
    }
    true
}

/// Pushes `count` items starting at `pos` of `raw`, all [`plain_scalars`]; false (some
/// pushed) at the first other one.
///
/// # Safety
/// `co` has room for `count` values.
unsafe fn push_scalars(co: *mut ffi::lua_State, raw: &[u8], count: u32, mut pos: usize) -> bool {
    for _ in 0..count {
        let Ok((v, next)) = mp::read(raw, pos) else {
            return false;
        };
        // No stack slot for box.NULL is needed: nil is not plain.
        if matches!(v, Mp::Nil) || !crate::box_::lua_tuple::push_scalar(co, &raw[pos..next], 0) {
            return false;
        }
        pos = next;
    }
    true
}

/// Moves mlua values onto `co`'s stack.
///
/// # Safety
/// `co` is a coroutine of `lua`'s state with room for the values.
unsafe fn move_values(lua: &Lua, co: *mut ffi::lua_State, values: LuaMultiValue) -> LuaResult<()> {
    if values.is_empty() {
        return Ok(());
    }
    let n = values.len() as c_int;
    lua.exec_raw::<()>(values, |state| ffi::lua_xmove(state, co, n))
}

/// `box.internal.iproto_worker_idle()`, called by a worker after each request: resets the
/// fiber and parks it on the idle list; false when it must end instead (cancelled, or
/// enough idle already).
fn worker_idle(lua: &Lua, (): ()) -> LuaResult<bool> {
    let f = fiber::current(lua);
    // A transaction the handler left (a write with triggers, a session trigger) ends here.
    crate::box_::lua::rollback_left_open(lua, f.id);
    if !fiber::reset_for_reuse(lua, &f, WORKER_NAME) {
        return Ok(false);
    }
    Ok(IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        if idle.len() >= IDLE_MAX {
            return false;
        }
        idle.push(f);
        true
    }))
}

pub fn install(lua: &Lua, internal: &LuaTable) -> LuaResult<()> {
    internal.set("iproto_worker_idle", lua.create_function(worker_idle)?)?;
    internal.set("iproto_park_marker", LuaValue::LightUserData(fiber::park_marker()))?;
    internal.set(
        "iproto_set_worker",
        lua.create_function(|_, body: LuaFunction| {
            BODY.with(|b| *b.borrow_mut() = Some(body));
            Ok(())
        })?,
    )?;
    Ok(())
}
