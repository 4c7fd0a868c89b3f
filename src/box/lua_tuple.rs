//! `box.tuple`: tuples as Lua sees them, with Tarantool 2.6's methods, texts and quirks.
//!
//! A tuple is a userdata holding a [`Tuple`] (the stored MessagePack, shared, never copied)
//! and the names of its space format: a plain `lua_newuserdata` block with one shared
//! metatable whose `__index`, `__len`, `__eq` and `__gc` are raw C functions (an mlua
//! userdata costs a type lookup, protected calls and an environment table per tuple, more
//! than the rest of a `space:replace`). Fields are decoded from the MessagePack on access,
//! straight into Lua values. Lua tables become MessagePack through a raw-stack encoder for
//! the common shapes (numbers, strings, booleans, nil/box.NULL, nested plain arrays); any
//! other value (maps, cdata, other tuples, tables with a metatable) makes it start over on a
//! slower path through mlua values, which leaves tables with `__serialize` to the shared
//! [`Walker`](crate::serialize::Walker).
//!
//! Error texts carry the `builtin/box/tuple.lua:N:` positions Tarantool's Lua half gives them,
//! because scripts and tests compare them. Differences from Tarantool: `type(t)` is
//! `'userdata'` (not `'cdata'`); `t:pairs()` returns a generator, the tuple and the state
//! rather than a luafun iterator, and the global `pairs(t)` needs `__pairs`, which our LuaJIT
//! (built without 5.2 compatibility) ignores; map keys are written sorted rather than in hash
//! order; encoding follows the default `msgpack.cfg` whatever the script set.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::rc::Rc;

use mlua::ffi;
use mlua::prelude::*;

use super::errcode::{ERRCODES, ER_INVALID_MSGPACK, ER_TUPLE_NOT_ARRAY};
use super::error::ClientError;
use super::mp::{self, Mp};
use super::tuple::Tuple;
use super::update;
use crate::client_error;
use crate::modules::log;
use crate::runtime::cdata::{self, Cdata};
use crate::serialize::{self, Cfg};

/// Checks the MessagePack of a new tuple against a space format.
pub type Validator = Box<dyn Fn(&[u8]) -> Result<(), ClientError>>;

/// The names (and types that matter here) of a space format, shared by every tuple a
/// space returns.
pub struct TupleFormat {
    pub names: Vec<String>,
    pub by_name: HashMap<String, u32>,
    /// Fields (0-based) typed `double`: update arithmetic keeps their results floats.
    pub double_fields: Vec<bool>,
    /// Checks a tuple that `t:update()`/`t:upsert()` built against the space format (field
    /// types, count), as Tarantool's `tuple_new` does; None accepts any tuple.
    pub validate: Option<Validator>,
}

impl TupleFormat {
    /// A format of named fields; a repeated name resolves to its first field.
    pub fn new(names: Vec<String>) -> TupleFormat {
        let mut by_name = HashMap::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            by_name.entry(name.clone()).or_insert(i as u32);
        }
        TupleFormat {
            names,
            by_name,
            double_fields: Vec::new(),
            validate: None,
        }
    }

    pub fn field_no(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    pub fn is_double(&self, fieldno: u32) -> bool {
        self.double_fields.get(fieldno as usize).copied().unwrap_or(false)
    }

    fn field_no_bytes(&self, name: &[u8]) -> Option<u32> {
        std::str::from_utf8(name).ok().and_then(|s| self.field_no(s))
    }
}

/// A tuple as Lua sees it: what a tuple userdata's block holds (see [`push_raw`]).
pub struct LuaTuple {
    pub tuple: Tuple,
    pub format: Option<Rc<TupleFormat>>,
}

/// The block of a tuple userdata: None once its `__gc` has run (a finalizer may be called
/// again by hand through `debug.getmetatable`).
type Slot = Option<LuaTuple>;

/// The generator `t:pairs()` returns: it remembers where the last field ended, so that a
/// loop reads each field once.
struct TupleIter {
    tuple: Tuple,
    /// Fields consumed so far (Tarantool's `box_tuple_position`).
    position: u32,
    /// Byte offset of field `position`.
    offset: usize,
}

/// What every tuple function needs, built once per Lua state.
struct Shared {
    null: LuaValue,
    null_ptr: usize,
    array_mt: LuaTable,
    array_mt_ptr: usize,
    map_mt: LuaTable,
    /// The metatable of tuple userdata (also in the registry under [`TUPLE_MT_KEY`]).
    tuple_mt: LuaTable,
    tuple_mt_ptr: usize,
    methods: LuaTable,
    /// `uuid.frombin(bin, 'b')` and "the RFC bytes of a uuid, or nil", once the uuid module
    /// is first needed.
    uuid: RefCell<Option<(LuaFunction, LuaFunction)>>,
}

/// How deep containers may nest, as Tarantool's `encode_max_depth`; also bounds recursion
/// when reading MessagePack that came from elsewhere.
const MAX_DEPTH: u32 = 128;
const MAX_DECODE_DEPTH: u32 = 1000;
/// Tarantool's `luaL_msgpack_default` sparse-array rule; box.tuple.new turns it off.
pub(crate) const SPARSE_RATIO: u32 = 2;
const SPARSE_SAFE: u32 = 10;
/// MessagePack extension type of a UUID.
const MP_UUID: i8 = 2;

const USAGE_AT: &str = "builtin/box/tuple.lua:106: Usage: ";

fn usage(text: &str) -> LuaError {
    LuaError::runtime(format!("{USAGE_AT}{text}"))
}

fn malformed() -> LuaError {
    LuaError::runtime("msgpack.decode: invalid MsgPack")
}

fn shared(lua: &Lua) -> LuaResult<Rc<Shared>> {
    if let Some(sh) = lua.app_data_ref::<Rc<Shared>>() {
        return Ok(sh.clone());
    }
    let sh = init(lua)?;
    lua.set_app_data(sh.clone());
    Ok(sh)
}

// ---------------------------------------------------------------------------------------
// Lua values -> MessagePack
// ---------------------------------------------------------------------------------------

/// A Lua number as Tarantool's `luaL_tofield` encodes it: integral values as integers.
fn write_number(out: &mut Vec<u8>, n: f64) {
    if n.is_finite() && n.fract() != 0.0 {
        mp::write_f64(out, n);
    } else if (0.0..18446744073709551616.0).contains(&n) {
        mp::write_uint(out, n as u64);
    } else if (-9223372036854775808.0..9223372036854775808.0).contains(&n) {
        mp::write_int(out, n as i64);
    } else {
        mp::write_f64(out, n);
    }
}

/// What identifies the tables, cdata and userdata the raw encoder recognises: box.NULL,
/// `array_mt` and the tuple metatable, by address, or (for the raw C functions of box) in
/// stack slots read only when a value needs them.
pub(crate) struct RawCx {
    ptrs: [std::cell::Cell<*const c_void>; 3],
    slots: Option<[c_int; 3]>,
    pub sparse_ratio: u32,
}

const CX_NULL: usize = 0;
const CX_ARRAY_MT: usize = 1;
const CX_TUPLE_MT: usize = 2;

impl RawCx {
    fn from_shared(sh: &Shared, sparse_ratio: u32) -> RawCx {
        let p = |v: usize| std::cell::Cell::new(v as *const c_void);
        RawCx {
            ptrs: [p(sh.null_ptr), p(sh.array_mt_ptr), p(sh.tuple_mt_ptr)],
            slots: None,
            sparse_ratio,
        }
    }

    /// Reads the three values from these stack slots (upvalues) when first needed.
    pub(crate) fn from_slots(null: c_int, array_mt: c_int, tuple_mt: c_int, sparse_ratio: u32) -> RawCx {
        let n = || std::cell::Cell::new(std::ptr::null());
        RawCx {
            ptrs: [n(), n(), n()],
            slots: Some([null, array_mt, tuple_mt]),
            sparse_ratio,
        }
    }

    /// # Safety
    /// The slots given to `from_slots` are valid indexes of `l`.
    unsafe fn ptr(&self, l: *mut ffi::lua_State, which: usize) -> *const c_void {
        let p = self.ptrs[which].get();
        match self.slots {
            Some(slots) if p.is_null() => {
                let p = ffi::lua_topointer(l, slots[which]);
                self.ptrs[which].set(p);
                p
            }
            _ => p,
        }
    }
}

/// The raw encoder met something it leaves to the slow path.
pub(crate) struct Slow;

/// Encodes the value at stack slot `idx`. Nothing here can raise a Lua error, so no
/// longjmp crosses these frames.
pub(crate) unsafe fn raw_value(
    l: *mut ffi::lua_State,
    idx: i32,
    out: &mut Vec<u8>,
    depth: u32,
    cx: &RawCx,
) -> Result<(), Slow> {
    match ffi::lua_type(l, idx) {
        ffi::LUA_TNIL => mp::write_nil(out),
        ffi::LUA_TBOOLEAN => mp::write_bool(out, ffi::lua_toboolean(l, idx) != 0),
        ffi::LUA_TNUMBER => write_number(out, ffi::lua_tonumber(l, idx)),
        ffi::LUA_TSTRING => {
            let mut len = 0usize;
            let p = ffi::lua_tolstring(l, idx, &mut len);
            if p.is_null() {
                return Err(Slow);
            }
            mp::write_str(out, std::slice::from_raw_parts(p as *const u8, len));
        }
        ffi::LUA_TTABLE => raw_table(l, idx, out, depth + 1, cx)?,
        ffi::LUA_TCDATA if ffi::lua_topointer(l, idx) == cx.ptr(l, CX_NULL) => mp::write_nil(out),
        ffi::LUA_TUSERDATA => match tuple_at(l, idx, cx.ptr(l, CX_TUPLE_MT)) {
            Some(t) => out.extend_from_slice(t.tuple.data()),
            None => return Err(Slow),
        },
        _ => return Err(Slow),
    }
    Ok(())
}

unsafe fn raw_table(l: *mut ffi::lua_State, idx: i32, out: &mut Vec<u8>, depth: u32, cx: &RawCx) -> Result<(), Slow> {
    if depth > MAX_DEPTH || ffi::lua_checkstack(l, 4) == 0 {
        return Err(Slow);
    }
    let idx = ffi::lua_absindex(l, idx);
    if ffi::lua_getmetatable(l, idx) != 0 {
        let mt = ffi::lua_topointer(l, -1);
        ffi::lua_pop(l, 1);
        // Decoded arrays keep array_mt only until changed, so they are proper sequences.
        if mt != cx.ptr(l, CX_ARRAY_MT) {
            return Err(Slow);
        }
        return raw_items(l, idx, ffi::lua_objlen(l, idx), out, depth, cx);
    }
    // Most tables are sequences whose items `next` visits in order, 1 to #t: one pass
    // encodes them. Anything else (holes, other keys, another order) is counted first.
    let mark = out.len();
    let n = ffi::lua_objlen(l, idx);
    mp::write_array_header(out, u32::try_from(n).map_err(|_| Slow)?);
    let mut seen = 0usize;
    ffi::lua_pushnil(l);
    while ffi::lua_next(l, idx) != 0 {
        seen += 1;
        if seen > n || ffi::lua_type(l, -2) != ffi::LUA_TNUMBER || ffi::lua_tonumber(l, -2) != seen as f64 {
            ffi::lua_pop(l, 2);
            seen = usize::MAX;
            break;
        }
        let done = raw_value(l, -1, out, depth, cx);
        ffi::lua_pop(l, 1);
        if done.is_err() {
            ffi::lua_pop(l, 1);
            return Err(Slow);
        }
    }
    if seen == n {
        return Ok(());
    }
    out.truncate(mark);
    let len = raw_array_len(l, idx, cx.sparse_ratio).ok_or(Slow)?;
    raw_items(l, idx, len, out, depth, cx)
}

/// An array of the table's items 1 to `len`.
unsafe fn raw_items(
    l: *mut ffi::lua_State,
    idx: i32,
    len: usize,
    out: &mut Vec<u8>,
    depth: u32,
    cx: &RawCx,
) -> Result<(), Slow> {
    mp::write_array_header(out, u32::try_from(len).map_err(|_| Slow)?);
    for i in 1..=len {
        ffi::lua_rawgeti(l, idx, i as ffi::lua_Integer);
        let done = raw_value(l, -1, out, depth, cx);
        ffi::lua_pop(l, 1);
        done?;
    }
    Ok(())
}

/// Tarantool's array test (`lua_field_inspect_table`): the array length, or None for a map.
unsafe fn raw_array_len(l: *mut ffi::lua_State, idx: i32, sparse_ratio: u32) -> Option<usize> {
    let mut size = 0u32;
    let mut max = 0f64;
    ffi::lua_pushnil(l);
    while ffi::lua_next(l, idx) != 0 {
        ffi::lua_pop(l, 1);
        size += 1;
        let is_index = ffi::lua_type(l, -1) == ffi::LUA_TNUMBER && {
            let k = ffi::lua_tonumber(l, -1);
            if k > max {
                max = k;
            }
            k == size as f64 || (k >= 1.0 && k.floor() == k)
        };
        if !is_index || max > u32::MAX as f64 {
            ffi::lua_pop(l, 1);
            return None;
        }
    }
    let max = max as u32;
    if sparse_ratio > 0 && max as u64 > size as u64 * sparse_ratio as u64 && max > SPARSE_SAFE {
        return None;
    }
    Some(max as usize)
}

/// Tries the raw encoder on a table; false (and `out` as it was) if it gave up.
fn raw_encode(lua: &Lua, sh: &Shared, v: &LuaValue, out: &mut Vec<u8>, sparse_ratio: u32) -> LuaResult<bool> {
    let mark = out.len();
    let cx = RawCx::from_shared(sh, sparse_ratio);
    // Unprotected (no pcall, as `exec_raw` makes): nothing below raises.
    let ok = lua.exec_raw_lua(|raw| {
        // Safety: the value is pushed above the current top and the top is restored; the
        // encoder only reads the stack.
        unsafe {
            let l = raw.state();
            if ffi::lua_checkstack(l, 4) == 0 {
                return false;
            }
            let top = ffi::lua_gettop(l);
            let ok = raw.push_value(v).is_ok() && raw_value(l, top + 1, out, 0, &cx).is_ok();
            ffi::lua_settop(l, top);
            ok
        }
    });
    if !ok {
        out.truncate(mark);
    }
    Ok(ok)
}

/// Encodes any value: raw path first for tables, mlua values otherwise.
fn encode_value(lua: &Lua, sh: &Shared, v: &LuaValue, out: &mut Vec<u8>, sparse_ratio: u32) -> LuaResult<()> {
    if matches!(v, LuaValue::Table(_)) && raw_encode(lua, sh, v, out, sparse_ratio)? {
        return Ok(());
    }
    slow_value(lua, sh, v, out, 0, sparse_ratio)
}

fn slow_value(lua: &Lua, sh: &Shared, v: &LuaValue, out: &mut Vec<u8>, depth: u32, ratio: u32) -> LuaResult<()> {
    match v {
        LuaValue::Nil => mp::write_nil(out),
        LuaValue::Boolean(b) => mp::write_bool(out, *b),
        LuaValue::Integer(i) => mp::write_int(out, *i),
        LuaValue::Number(n) => write_number(out, *n),
        LuaValue::String(s) => mp::write_str(out, &s.as_bytes()),
        LuaValue::Table(t) => slow_table(lua, sh, v, t, out, depth + 1, ratio)?,
        LuaValue::UserData(_) => match tuple_of(lua, v) {
            Some((t, _)) => out.extend_from_slice(t.data()),
            None => walk(lua, v, out, ratio)?,
        },
        LuaValue::Other(_) => match cdata::classify(lua, v)? {
            Some(Cdata::Null) => mp::write_nil(out),
            Some(Cdata::U64(u)) => mp::write_uint(out, u),
            Some(Cdata::I64(i)) => mp::write_int(out, i),
            _ => match uuid_bytes(lua, sh, v)? {
                Some(bin) => {
                    out.extend_from_slice(&[0xd8, MP_UUID as u8]);
                    out.extend_from_slice(&bin);
                }
                None => walk(lua, v, out, ratio)?,
            },
        },
        _ => walk(lua, v, out, ratio)?,
    }
    Ok(())
}

fn slow_table(
    lua: &Lua,
    sh: &Shared,
    v: &LuaValue,
    t: &LuaTable,
    out: &mut Vec<u8>,
    depth: u32,
    ratio: u32,
) -> LuaResult<()> {
    if depth > MAX_DEPTH {
        return Err(LuaError::runtime(format!("Too high nest level - {depth}")));
    }
    let mut force_map = false;
    if let Some(mt) = t.metatable() {
        if mt.to_pointer() as usize == sh.array_mt_ptr {
            return slow_array(lua, sh, t, t.raw_len(), out, depth, ratio);
        }
        if mt.to_pointer() != sh.map_mt.to_pointer() {
            return walk(lua, v, out, ratio);
        }
        force_map = true;
    }
    let mut pairs = Vec::new();
    for pair in t.pairs::<LuaValue, LuaValue>() {
        pairs.push(pair?);
    }
    if !force_map {
        if let Some(len) = array_len(&pairs, ratio) {
            return slow_array(lua, sh, t, len, out, depth, ratio);
        }
    }
    // Tarantool writes keys in its hash order, which differs between processes here; a
    // fixed order keeps stored tuples reproducible.
    serialize::sort_keys(&mut pairs);
    mp::write_map_header(out, pairs.len() as u32);
    for (k, val) in &pairs {
        slow_value(lua, sh, k, out, depth, ratio)?;
        slow_value(lua, sh, val, out, depth, ratio)?;
    }
    Ok(())
}

fn slow_array(
    lua: &Lua,
    sh: &Shared,
    t: &LuaTable,
    len: usize,
    out: &mut Vec<u8>,
    depth: u32,
    ratio: u32,
) -> LuaResult<()> {
    let n = u32::try_from(len).map_err(|_| LuaError::runtime("table is too long"))?;
    mp::write_array_header(out, n);
    for i in 1..=len {
        let item: LuaValue = t.raw_get(i)?;
        slow_value(lua, sh, &item, out, depth, ratio)?;
    }
    Ok(())
}

/// [`raw_array_len`] over collected pairs.
fn array_len(pairs: &[(LuaValue, LuaValue)], ratio: u32) -> Option<usize> {
    let mut max = 0f64;
    for (size, (k, _)) in pairs.iter().enumerate() {
        let k = match k {
            LuaValue::Integer(i) => *i as f64,
            LuaValue::Number(n) => *n,
            _ => return None,
        };
        max = max.max(k);
        if !(k == (size + 1) as f64 || (k >= 1.0 && k.floor() == k)) || max > u32::MAX as f64 {
            return None;
        }
    }
    let (max, size) = (max as u64, pairs.len() as u64);
    if ratio > 0 && max > size * ratio as u64 && max > SPARSE_SAFE as u64 {
        return None;
    }
    Some(max as usize)
}

/// The shared serializer, for `__serialize` and for the errors Tarantool gives about
/// values MessagePack cannot hold.
fn walk(lua: &Lua, v: &LuaValue, out: &mut Vec<u8>, ratio: u32) -> LuaResult<()> {
    let cfg = Cfg {
        encode_sparse_ratio: ratio as i64,
        ..Cfg::default()
    };
    out.extend_from_slice(&crate::modules::msgpack::encode_value(lua, v, &cfg)?);
    Ok(())
}

/// Tarantool's `tuple_encode` for keys and update operations: nil is `[]`, a tuple its own
/// bytes, a table the array of its `#t` items, anything else a one-item array.
fn encode_key(lua: &Lua, sh: &Shared, v: &LuaValue, out: &mut Vec<u8>) -> LuaResult<()> {
    match v {
        LuaValue::Table(t) => {
            let len = t.raw_len();
            mp::write_array_header(
                out,
                u32::try_from(len).map_err(|_| LuaError::runtime("table is too long"))?,
            );
            for i in 1..=len {
                let item: LuaValue = t.raw_get(i)?;
                encode_value(lua, sh, &item, out, SPARSE_RATIO)?;
            }
        }
        LuaValue::UserData(_) => match tuple_of(lua, v) {
            Some((t, _)) => out.extend_from_slice(t.data()),
            None => {
                mp::write_array_header(out, 1);
                encode_value(lua, sh, v, out, SPARSE_RATIO)?;
            }
        },
        _ if cdata::is_nil_or_null(lua, v) => mp::write_array_header(out, 0),
        _ => {
            mp::write_array_header(out, 1);
            encode_value(lua, sh, v, out, SPARSE_RATIO)?;
        }
    }
    Ok(())
}

/// [`encode_key`] straight off the stack for keys of numbers, strings, booleans, nil, plain
/// tables of those and tuples; false (and `out` as it was) for anything else.
///
/// # Safety
/// `idx` is a valid absolute index of `l`, which has four free stack slots.
pub(crate) unsafe fn raw_key(l: *mut ffi::lua_State, idx: c_int, cx: &RawCx, out: &mut Vec<u8>) -> bool {
    let mark = out.len();
    let ok = match ffi::lua_type(l, idx) {
        ffi::LUA_TNIL => {
            mp::write_array_header(out, 0);
            true
        }
        ffi::LUA_TNUMBER | ffi::LUA_TSTRING | ffi::LUA_TBOOLEAN => {
            mp::write_array_header(out, 1);
            raw_value(l, idx, out, 0, cx).is_ok()
        }
        ffi::LUA_TTABLE => match u32::try_from(ffi::lua_objlen(l, idx)) {
            Ok(len) => {
                mp::write_array_header(out, len);
                (1..=len).all(|i| {
                    ffi::lua_rawgeti(l, idx, i as ffi::lua_Integer);
                    let done = raw_value(l, -1, out, 0, cx).is_ok();
                    ffi::lua_pop(l, 1);
                    done
                })
            }
            Err(_) => false,
        },
        ffi::LUA_TUSERDATA => match tuple_at(l, idx, cx.ptr(l, CX_TUPLE_MT)) {
            Some(t) => {
                out.extend_from_slice(t.tuple.data());
                true
            }
            None => false,
        },
        _ => false,
    };
    if !ok {
        out.truncate(mark);
    }
    ok
}

/// The values the raw request functions of box (src/box/lua.rs) take as upvalues to build
/// a [`RawCx`]: box.NULL, `array_mt` and the tuple metatable.
pub(crate) fn raw_cx_values(lua: &Lua) -> LuaResult<[LuaValue; 3]> {
    let sh = shared(lua)?;
    Ok([
        sh.null.clone(),
        LuaValue::Table(sh.array_mt.clone()),
        LuaValue::Table(sh.tuple_mt.clone()),
    ])
}

/// A Lua table or tuple userdata (or anything Tarantool accepts as a tuple) → Tuple, with
/// Tarantool's errors for anything that is not an array.
pub fn tuple_from_lua(lua: &Lua, v: &LuaValue) -> LuaResult<Tuple> {
    let sh = shared(lua)?;
    tuple_from_value(lua, &sh, v, SPARSE_RATIO)
}

fn tuple_from_value(lua: &Lua, sh: &Shared, v: &LuaValue, ratio: u32) -> LuaResult<Tuple> {
    if let Some((t, _)) = tuple_of(lua, v) {
        // A new tuple, as Tarantool makes one: identity (`==`) must differ.
        return Ok(Tuple::from_trusted(t.data()));
    }
    let mut out = Vec::with_capacity(64);
    encode_value(lua, sh, v, &mut out, ratio)?;
    match mp::read(&out, 0) {
        Ok((Mp::Array(_), _)) => Ok(Tuple::from_trusted(&out)),
        _ => Err(client_error!(ER_TUPLE_NOT_ARRAY).into_lua_err()),
    }
}

/// A key as Tarantool encodes one (`s:get(1)` is `s:get{1}`, nil is `{}`).
pub fn key_from_lua(lua: &Lua, v: &LuaValue) -> LuaResult<Vec<u8>> {
    let sh = shared(lua)?;
    let mut out = Vec::with_capacity(16);
    encode_key(lua, &sh, v, &mut out)?;
    Ok(out)
}

/// Any Lua value as MessagePack, as Tarantool's default serializer writes it.
pub fn value_to_msgpack(lua: &Lua, v: &LuaValue) -> LuaResult<Vec<u8>> {
    let sh = shared(lua)?;
    let mut out = Vec::with_capacity(16);
    encode_value(lua, &sh, v, &mut out, SPARSE_RATIO)?;
    Ok(out)
}

/// Appends each value's MessagePack to `out` (the IPROTO server's reply bodies).
pub fn append_msgpack<'a>(lua: &Lua, values: impl Iterator<Item = &'a LuaValue>, out: &mut Vec<u8>) -> LuaResult<()> {
    let sh = shared(lua)?;
    for v in values {
        encode_value(lua, &sh, v, out, SPARSE_RATIO)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// MessagePack -> Lua values
// ---------------------------------------------------------------------------------------

/// Decodes one MessagePack value as Tarantool does for tuple fields: integers of 1e14 and
/// more as 64-bit cdata, nil as box.NULL, arrays and maps marked with `array_mt`/`map_mt`
/// (so the console prints them in flow style), UUIDs as uuid cdata.
pub fn decode_to_lua(lua: &Lua, raw: &[u8]) -> LuaResult<LuaValue> {
    decode(lua, &*shared(lua)?, raw)
}

/// Decodes the items of the MessagePack array `raw` (already validated) into `into`: the
/// arguments of an IPROTO CALL or EVAL.
pub fn decode_array_items(lua: &Lua, raw: &[u8], into: &mut LuaMultiValue) -> LuaResult<()> {
    let sh = shared(lua)?;
    let Some((count, mut pos)) = mp::read_array(raw, 0) else {
        return Err(client_error!(ER_INVALID_MSGPACK, "packet body").into_lua_err());
    };
    for _ in 0..count {
        into.push_back(decode_at(lua, &sh, raw, &mut pos, 0)?);
    }
    Ok(())
}

fn decode(lua: &Lua, sh: &Shared, raw: &[u8]) -> LuaResult<LuaValue> {
    let mut pos = 0;
    decode_at(lua, sh, raw, &mut pos, 0)
}

fn decode_at(lua: &Lua, sh: &Shared, data: &[u8], pos: &mut usize, depth: u32) -> LuaResult<LuaValue> {
    let (v, next) = mp::read(data, *pos).map_err(|_| malformed())?;
    *pos = next;
    Ok(match v {
        Mp::Nil => sh.null.clone(),
        Mp::Bool(b) => LuaValue::Boolean(b),
        Mp::UInt(u) => serialize::push_u64(lua, u)?,
        Mp::Int(i) => serialize::push_i64(lua, i)?,
        Mp::F32(f) => LuaValue::Number(f as f64),
        Mp::F64(f) => LuaValue::Number(f),
        Mp::Str(s) | Mp::Bin(s) => LuaValue::String(lua.create_string(s)?),
        Mp::Array(n) => {
            if depth >= MAX_DECODE_DEPTH {
                return Err(LuaError::runtime("Too high nest level"));
            }
            let mut items = Vec::with_capacity(n.min(4096) as usize);
            for _ in 0..n {
                items.push(decode_at(lua, sh, data, pos, depth + 1)?);
            }
            let t = lua.create_sequence_from(items)?;
            t.set_metatable(Some(sh.array_mt.clone()))?;
            LuaValue::Table(t)
        }
        Mp::Map(n) => {
            if depth >= MAX_DECODE_DEPTH {
                return Err(LuaError::runtime("Too high nest level"));
            }
            let t = lua.create_table_with_capacity(0, n.min(4096) as usize)?;
            for _ in 0..n {
                let k = decode_at(lua, sh, data, pos, depth + 1)?;
                let v = decode_at(lua, sh, data, pos, depth + 1)?;
                t.raw_set(k, v)?;
            }
            t.set_metatable(Some(sh.map_mt.clone()))?;
            LuaValue::Table(t)
        }
        Mp::Ext(MP_UUID, payload) if payload.len() == 16 => {
            let (frombin, _) = uuid_helpers(lua, sh)?;
            frombin.call(lua.create_string(payload)?)?
        }
        Mp::Ext(..) => return Err(LuaError::runtime("Unsupported extension type")),
    })
}

fn uuid_helpers(lua: &Lua, sh: &Shared) -> LuaResult<(LuaFunction, LuaFunction)> {
    if let Some(h) = sh.uuid.borrow().as_ref() {
        return Ok(h.clone());
    }
    let h: (LuaFunction, LuaFunction) = lua
        .load(
            "local uuid = require('uuid') \
             return function(bin) return uuid.frombin(bin, 'b') end, \
             function(v) if uuid.is_uuid(v) then return v:bin('b') end end",
        )
        .set_name("=box.tuple")
        .eval()?;
    *sh.uuid.borrow_mut() = Some(h.clone());
    Ok(h)
}

/// The RFC 4122 bytes of a uuid cdata; None for any other cdata.
fn uuid_bytes(lua: &Lua, sh: &Shared, v: &LuaValue) -> LuaResult<Option<Vec<u8>>> {
    let Ok((_, tobin)) = uuid_helpers(lua, sh) else {
        return Ok(None);
    };
    match tobin.call::<Option<LuaString>>(v.clone())? {
        Some(s) if s.as_bytes().len() == 16 => Ok(Some(s.as_bytes().to_vec())),
        _ => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------
// Fields by JSON path: t.name, t['[2]'], t['name.a[1]']
// ---------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
enum Token<'a> {
    /// 0-based.
    Num(u32),
    Str(&'a [u8]),
    Any,
    End,
}

/// Tarantool's JSON path lexer, reduced to what field lookup needs: any syntax error just
/// means "no such field".
struct PathLexer<'a> {
    src: &'a [u8],
    offset: usize,
}

impl<'a> PathLexer<'a> {
    fn new(src: &'a [u8]) -> PathLexer<'a> {
        PathLexer { src, offset: 0 }
    }

    fn rest(&self) -> &'a [u8] {
        &self.src[self.offset..]
    }

    fn next_char(&mut self) -> Option<char> {
        let rest = self.rest();
        let len = match *rest.first()? {
            b if b < 0x80 => 1,
            b if b >= 0xf0 => 4,
            b if b >= 0xe0 => 3,
            _ => 2,
        };
        let c = std::str::from_utf8(rest.get(..len)?).ok()?.chars().next()?;
        self.offset += len;
        Some(c)
    }

    fn next(&mut self) -> Option<Token<'a>> {
        if self.offset >= self.src.len() {
            return Some(Token::End);
        }
        let start = self.offset;
        match self.next_char()? {
            '[' => {
                let token = match *self.src.get(self.offset)? {
                    q @ (b'"' | b'\'') => {
                        let body = self.offset + 1;
                        let len = self.src.get(body..)?.iter().position(|&b| b == q)?;
                        if len == 0 {
                            return None;
                        }
                        self.offset = body + len + 1;
                        Token::Str(&self.src[body..body + len])
                    }
                    b'*' => {
                        self.offset += 1;
                        Token::Any
                    }
                    _ => {
                        let digits = self.rest().iter().take_while(|b| b.is_ascii_digit()).count();
                        let text = std::str::from_utf8(&self.rest()[..digits]).ok()?;
                        let n: u32 = text.parse().ok()?;
                        self.offset += digits;
                        Token::Num(n.checked_sub(1)?)
                    }
                };
                if self.src.get(self.offset) != Some(&b']') {
                    return None;
                }
                self.offset += 1;
                Some(token)
            }
            '.' => self.identifier(self.offset),
            _ if start == 0 => self.identifier(start),
            _ => None,
        }
    }

    fn identifier(&mut self, start: usize) -> Option<Token<'a>> {
        self.offset = start;
        let first = self.next_char()?;
        if !(first.is_alphabetic() || first == '_') {
            return None;
        }
        loop {
            let before = self.offset;
            match self.next_char() {
                Some(c) if c.is_alphanumeric() || c == '_' => {}
                _ => {
                    self.offset = before;
                    break;
                }
            }
        }
        Some(Token::Str(&self.src[start..self.offset]))
    }
}

/// The raw field a path names, or None (unknown name, bad syntax, no such element).
fn field_by_path<'t>(tuple: &'t Tuple, format: Option<&TupleFormat>, path: &[u8]) -> Option<&'t [u8]> {
    if path.is_empty() {
        return None;
    }
    // A name that itself looks like a path ('a.b', '[1]') is a name first.
    if let Some(no) = format.and_then(|f| f.field_no_bytes(path)) {
        return tuple.field(no);
    }
    let mut lexer = PathLexer::new(path);
    let fieldno = match lexer.next()? {
        Token::Num(n) => n,
        Token::Str(name) => format?.field_no_bytes(name)?,
        Token::Any | Token::End => return None,
    };
    let mut field = tuple.field(fieldno)?;
    let mut lexer = PathLexer::new(lexer.rest());
    loop {
        field = match lexer.next()? {
            Token::End => return Some(field),
            Token::Num(i) => go_to_index(field, i)?,
            Token::Str(key) => go_to_key(field, key)?,
            Token::Any => return None,
        };
    }
}

fn go_to_index(data: &[u8], index: u32) -> Option<&[u8]> {
    match mp::read(data, 0).ok()? {
        (Mp::Array(n), mut pos) => {
            if index >= n {
                return None;
            }
            for _ in 0..index {
                pos = mp::skip(data, pos).ok()?;
            }
            Some(&data[pos..mp::skip(data, pos).ok()?])
        }
        // Maps are indexed by their unsigned keys, counted from 1 like fields.
        (Mp::Map(n), pos) => map_value(data, pos, n, |k| k == Mp::UInt(index as u64 + 1)),
        _ => None,
    }
}

fn go_to_key<'d>(data: &'d [u8], key: &[u8]) -> Option<&'d [u8]> {
    match mp::read(data, 0).ok()? {
        (Mp::Map(n), pos) => map_value(data, pos, n, |k| k == Mp::Str(key)),
        _ => None,
    }
}

fn map_value(data: &[u8], mut pos: usize, n: u32, wanted: impl Fn(Mp) -> bool) -> Option<&[u8]> {
    for _ in 0..n {
        let (k, _) = mp::read(data, pos).ok()?;
        let value = mp::skip(data, pos).ok()?;
        let end = mp::skip(data, value).ok()?;
        if wanted(k) {
            return Some(&data[value..end]);
        }
        pos = end;
    }
    None
}

// ---------------------------------------------------------------------------------------
// tostring(t): YAML flow style, as Tarantool's tuple_to_yaml gets it from libyaml
// ---------------------------------------------------------------------------------------

/// libyaml's printable set (what it writes without escapes).
fn yaml_printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || (0xA0..=0xD7FF).contains(&u)
        || ((0xE000..=0xFFFD).contains(&u) && u != 0xFEFF)
}

fn yaml_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// Tarantool's `utf8_check_printable`: valid UTF-8 without C1 controls and non-characters;
/// other strings are written as `!!binary`.
fn tarantool_printable(bytes: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(bytes).ok()?;
    let bad = s.chars().any(|c| {
        let u = c as u32;
        (0x80..=0x9F).contains(&u) || u == 0xFEFF || u == 0xFFFE || u == 0xFFFF
    });
    (!bad).then_some(s)
}

/// How libyaml writes one scalar, with what it needs to know to place it as a key.
struct YamlScalar {
    text: String,
    /// Length libyaml counts for the simple-key limit.
    key_len: usize,
    multiline: bool,
}

/// Base64 as Tarantool's `base64_encode` writes it: a line break every 72 characters.
fn base64_wrapped(bytes: &[u8]) -> String {
    use base64::Engine;
    let flat = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(flat.len() + flat.len() / 72);
    for (i, c) in flat.chars().enumerate() {
        if i > 0 && i % 72 == 0 {
            out.push('\n');
        }
        out.push(c);
    }
    out
}

fn single_quoted(out: &mut String, text: &str, indent: usize) {
    out.push('\'');
    let mut breaks = false;
    for c in text.chars() {
        if yaml_break(c) {
            if !breaks && c == '\n' {
                out.push('\n');
            }
            out.push(c);
            breaks = true;
        } else {
            if breaks {
                out.extend(std::iter::repeat_n(' ', indent));
            }
            if c == '\'' {
                out.push('\'');
            }
            out.push(c);
            breaks = false;
        }
    }
    if breaks {
        out.extend(std::iter::repeat_n(' ', indent));
    }
    out.push('\'');
}

fn double_quoted(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        let u = c as u32;
        if !yaml_printable(c) || yaml_break(c) || c == '"' || c == '\\' {
            out.push('\\');
            match c {
                '\0' => out.push('0'),
                '\x07' => out.push('a'),
                '\x08' => out.push('b'),
                '\t' => out.push('t'),
                '\n' => out.push('n'),
                '\x0B' => out.push('v'),
                '\x0C' => out.push('f'),
                '\r' => out.push('r'),
                '\x1B' => out.push('e'),
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                '\u{85}' => out.push('N'),
                '\u{2028}' => out.push('L'),
                '\u{2029}' => out.push('P'),
                _ if u <= 0xFF => out.push_str(&format!("x{u:02X}")),
                _ if u <= 0xFFFF => out.push_str(&format!("u{u:04X}")),
                _ => out.push_str(&format!("U{u:08X}")),
            }
        } else {
            out.push(c);
        }
    }
    out.push('"');
}

/// A string Tarantool asks libyaml to single-quote; libyaml falls back to double quotes when
/// the text has characters it must escape or spaces next to line breaks.
fn yaml_string(text: &str, indent: usize) -> YamlScalar {
    let mut special = false;
    let mut multiline = false;
    let mut space_next_to_break = false;
    let (mut prev_space, mut prev_break) = (false, false);
    for c in text.chars() {
        if !yaml_printable(c) {
            special = true;
        }
        if c == ' ' {
            space_next_to_break |= prev_break;
            prev_space = true;
            prev_break = false;
        } else if yaml_break(c) {
            multiline = true;
            space_next_to_break |= prev_space;
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
    }
    let mut out = String::with_capacity(text.len() + 2);
    if special || space_next_to_break {
        double_quoted(&mut out, text);
    } else {
        single_quoted(&mut out, text, indent);
    }
    YamlScalar {
        text: out,
        key_len: text.len(),
        multiline,
    }
}

struct FlowWriter<'d> {
    data: &'d [u8],
    pos: usize,
    out: String,
}

impl FlowWriter<'_> {
    /// Writes the value at `pos`; `depth` counts the collections around it (libyaml indents
    /// continuation lines of a quoted string by two columns more per level, from 4).
    fn node(&mut self, depth: usize) -> Result<(), mp::Malformed> {
        let (v, next) = mp::read(self.data, self.pos)?;
        self.pos = next;
        match v {
            Mp::Array(n) => {
                if depth as u32 >= MAX_DECODE_DEPTH {
                    return Err(mp::Malformed);
                }
                self.out.push('[');
                for i in 0..n {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.node(depth + 1)?;
                }
                self.out.push(']');
            }
            Mp::Map(n) => {
                if depth as u32 >= MAX_DECODE_DEPTH {
                    return Err(mp::Malformed);
                }
                self.out.push('{');
                for i in 0..n {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.key(depth + 1)?;
                    self.node(depth + 1)?;
                }
                self.out.push('}');
            }
            _ => {
                let s = scalar(v, depth);
                self.out.push_str(&s.text);
            }
        }
        Ok(())
    }

    /// A map key: `key: ` when libyaml takes it for a simple key (a short one-line scalar or
    /// an empty collection), else `? key : `.
    fn key(&mut self, depth: usize) -> Result<(), mp::Malformed> {
        let (v, next) = mp::read(self.data, self.pos)?;
        let simple = match v {
            Mp::Array(n) | Mp::Map(n) => {
                if n > 0 {
                    self.out.push_str("? ");
                }
                self.node(depth)?;
                n == 0
            }
            _ => {
                self.pos = next;
                let s = scalar(v, depth);
                let simple = !s.multiline && s.key_len <= 128;
                if !simple {
                    self.out.push_str("? ");
                }
                self.out.push_str(&s.text);
                simple
            }
        };
        self.out.push_str(if simple { ": " } else { " : " });
        Ok(())
    }
}

fn scalar(v: Mp, depth: usize) -> YamlScalar {
    let plain = |text: String| YamlScalar {
        key_len: text.len(),
        text,
        multiline: false,
    };
    match v {
        Mp::Nil | Mp::Ext(..) | Mp::Array(_) | Mp::Map(_) => plain("null".into()),
        Mp::Bool(b) => plain(b.to_string()),
        Mp::UInt(u) => plain(u.to_string()),
        Mp::Int(i) => plain(i.to_string()),
        Mp::F32(f) => plain(serialize::format_g(f as f64, 14)),
        Mp::F64(f) => plain(serialize::format_g(f, 14)),
        Mp::Str(s) | Mp::Bin(s) => match (matches!(v, Mp::Str(_)), tarantool_printable(s)) {
            (true, Some(text)) => yaml_string(text, 2 * depth + 2),
            _ => {
                let b64 = base64_wrapped(s);
                let multiline = b64.contains('\n');
                // `!!` and `binary` count toward the key length as libyaml's tag.
                let key_len = b64.len() + 8;
                let text = if multiline {
                    let mut q = String::from("!!binary ");
                    single_quoted(&mut q, &b64, 2 * depth + 2);
                    q
                } else {
                    format!("!!binary {b64}")
                };
                YamlScalar {
                    text,
                    key_len,
                    multiline,
                }
            }
        },
    }
}

/// `tostring(t)`.
fn tuple_to_string(tuple: &Tuple) -> LuaResult<String> {
    let mut w = FlowWriter {
        data: tuple.data(),
        pos: 0,
        out: String::with_capacity(tuple.bsize() * 2),
    };
    w.node(0).map_err(|_| malformed())?;
    Ok(w.out)
}

// ---------------------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// The tuple userdata
// ---------------------------------------------------------------------------------------

/// Registry keys (by address) of the tuple metatable and of the function that raises the
/// error a raw C function left in `PENDING_ERROR`. Distinct values keep the addresses apart.
static TUPLE_MT_KEY: u8 = b'T';
static RAISE_KEY: u8 = b'R';

fn key_ptr(key: &'static u8) -> *const c_void {
    key as *const u8 as *const c_void
}

thread_local! {
    /// The error [`raise`] hands to the registry's raising function.
    static PENDING_ERROR: RefCell<Option<LuaError>> = const { RefCell::new(None) };
}

/// Raises `e` from a raw C function as the same Lua error an mlua function returning it
/// gives: an mlua function takes it from `PENDING_ERROR` and fails with it.
///
/// # Safety
/// `l` is the state a raw C function was called with, with a free stack slot. The call
/// unwinds the caller's frames: nothing in them may still own something to drop.
pub(crate) unsafe fn raise(l: *mut ffi::lua_State, e: LuaError) -> c_int {
    PENDING_ERROR.with(|p| *p.borrow_mut() = Some(e));
    ffi::lua_rawgetp(l, ffi::LUA_REGISTRYINDEX, key_ptr(&RAISE_KEY));
    ffi::lua_call(l, 0, 0);
    0
}

/// The tuple in the userdata at stack slot `idx` if the metatable at stack slot `mt` (an
/// upvalue or absolute index) is its metatable.
///
/// # Safety
/// `idx` and `mt` are valid indexes of `l`, which has a free stack slot. The reference lives
/// as long as the userdata stays on the stack.
pub(crate) unsafe fn raw_tuple<'a>(l: *mut ffi::lua_State, idx: c_int, mt: c_int) -> Option<&'a LuaTuple> {
    if ffi::lua_type(l, idx) != ffi::LUA_TUSERDATA {
        return None;
    }
    tuple_at(l, idx, ffi::lua_topointer(l, mt))
}

/// [`raw_tuple`] with the metatable given by its address.
///
/// # Safety
/// As for [`raw_tuple`].
unsafe fn tuple_at<'a>(l: *mut ffi::lua_State, idx: c_int, mt: *const c_void) -> Option<&'a LuaTuple> {
    if ffi::lua_type(l, idx) != ffi::LUA_TUSERDATA || ffi::lua_getmetatable(l, idx) == 0 {
        return None;
    }
    let ours = ffi::lua_topointer(l, -1) == mt;
    ffi::lua_pop(l, 1);
    if !ours {
        return None;
    }
    (*(ffi::lua_touserdata(l, idx) as *const Slot)).as_ref()
}

/// Pushes a new tuple userdata.
///
/// # Safety
/// `l` has two free stack slots, and its registry has the tuple metatable (`shared` ran
/// for this state).
pub(crate) unsafe fn push_raw(l: *mut ffi::lua_State, tuple: Tuple, format: Option<Rc<TupleFormat>>) {
    new_userdata(l, tuple, format);
    ffi::lua_rawgetp(l, ffi::LUA_REGISTRYINDEX, key_ptr(&TUPLE_MT_KEY));
    ffi::lua_setmetatable(l, -2);
}

/// [`push_raw`] with the tuple metatable in stack slot `mt` (an upvalue or absolute index).
///
/// # Safety
/// `l` has two free stack slots and `mt` holds the tuple metatable.
pub(crate) unsafe fn push_raw_with(l: *mut ffi::lua_State, tuple: Tuple, format: Option<Rc<TupleFormat>>, mt: c_int) {
    new_userdata(l, tuple, format);
    ffi::lua_pushvalue(l, mt);
    ffi::lua_setmetatable(l, -2);
}

/// # Safety
/// `l` has a free stack slot.
unsafe fn new_userdata(l: *mut ffi::lua_State, tuple: Tuple, format: Option<Rc<TupleFormat>>) {
    let block = ffi::lua_newuserdata(l, std::mem::size_of::<Slot>()) as *mut Slot;
    // Lua aligns userdata blocks to 8 bytes, as a Slot needs.
    block.write(Some(LuaTuple { tuple, format }));
}

/// The tuple behind a Lua value, if it is one.
pub fn tuple_of(lua: &Lua, v: &LuaValue) -> Option<(Tuple, Option<Rc<TupleFormat>>)> {
    if !matches!(v, LuaValue::UserData(_)) {
        return None;
    }
    let sh = shared(lua).ok()?;
    lua.exec_raw_lua(|raw| {
        // Safety: the value is pushed above the top, which is restored before returning.
        unsafe {
            let l = raw.state();
            if ffi::lua_checkstack(l, 3) == 0 {
                return None;
            }
            let top = ffi::lua_gettop(l);
            let found = match raw.push_value(v) {
                Ok(()) => {
                    tuple_at(l, top + 1, sh.tuple_mt_ptr as *const c_void).map(|t| (t.tuple.clone(), t.format.clone()))
                }
                Err(_) => None,
            };
            ffi::lua_settop(l, top);
            found
        }
    })
}

/// True if the value is a tuple.
pub fn is_tuple(lua: &Lua, v: &LuaValue) -> bool {
    tuple_of(lua, v).is_some()
}

fn check(lua: &Lua, v: &LuaValue, usage_text: &str) -> LuaResult<(Tuple, Option<Rc<TupleFormat>>)> {
    tuple_of(lua, v).ok_or_else(|| usage(usage_text))
}

/// `luaT_checktuple`, which the C methods use.
fn check_c(lua: &Lua, v: Option<&LuaValue>) -> LuaResult<(Tuple, Option<Rc<TupleFormat>>)> {
    match v {
        Some(v) => tuple_of(lua, v).ok_or_else(|| {
            LuaError::runtime(format!(
                "Invalid argument #1 (box.tuple expected, got {})",
                serialize::lua_type_name(v)
            ))
        }),
        None => Err(LuaError::runtime(
            "Invalid argument #1 (box.tuple expected, got no value)",
        )),
    }
}

/// Pushes a tuple to Lua.
pub fn push_tuple(lua: &Lua, tuple: Tuple, format: Option<Rc<TupleFormat>>) -> LuaResult<LuaValue> {
    // The metatable is made when box.tuple is first set up.
    shared(lua)?;
    push(lua, tuple, format)
}

fn push(lua: &Lua, tuple: Tuple, format: Option<Rc<TupleFormat>>) -> LuaResult<LuaValue> {
    lua.exec_raw_lua(|raw| {
        // Safety: two slots are checked for; the userdata is popped as it was pushed.
        unsafe {
            let l = raw.state();
            if ffi::lua_checkstack(l, 2) == 0 {
                return Err(LuaError::runtime("stack overflow"));
            }
            push_raw(l, tuple, format);
            Ok(raw.pop_value())
        }
    })
}

/// A Lua function over a raw C function with upvalues.
pub(crate) fn c_closure(lua: &Lua, f: ffi::lua_CFunction, upvalues: &[LuaValue]) -> LuaResult<LuaFunction> {
    lua.exec_raw_lua(|raw| {
        // Safety: the upvalues and the closure are pushed above the top, which is restored.
        unsafe {
            let l = raw.state();
            let n = upvalues.len() as c_int;
            if ffi::lua_checkstack(l, n + 1) == 0 {
                return Err(LuaError::runtime("stack overflow"));
            }
            let top = ffi::lua_gettop(l);
            for v in upvalues {
                if let Err(e) = raw.push_value(v) {
                    ffi::lua_settop(l, top);
                    return Err(e);
                }
            }
            ffi::lua_pushcclosure(l, f, n);
            match raw.pop_value() {
                LuaValue::Function(f) => Ok(f),
                _ => Err(LuaError::runtime("lua_pushcclosure made no function")),
            }
        }
    })
}

/// Stores `v` in the registry under a static key's address.
fn set_registry(lua: &Lua, key: &'static u8, v: &LuaValue) -> LuaResult<()> {
    lua.exec_raw_lua(|raw| {
        // Safety: one value is pushed and taken by lua_rawsetp.
        unsafe {
            let l = raw.state();
            if ffi::lua_checkstack(l, 3) == 0 {
                return Err(LuaError::runtime("stack overflow"));
            }
            raw.push_value(v)?;
            ffi::lua_rawsetp(l, ffi::LUA_REGISTRYINDEX, key_ptr(key));
            Ok(())
        }
    })
}

/// Upvalues of the raw metamethods.
const UV_MT: c_int = ffi::lua_upvalueindex(1);
const UV_METHODS: c_int = ffi::lua_upvalueindex(2);
const UV_NULL: c_int = ffi::lua_upvalueindex(3);
const UV_SLOW_INDEX: c_int = ffi::lua_upvalueindex(4);

/// The string at stack slot `idx`.
///
/// # Safety
/// The slot holds a string; the slice lives while it stays on the stack.
unsafe fn lua_bytes<'a>(l: *mut ffi::lua_State, idx: c_int) -> &'a [u8] {
    let mut len = 0usize;
    let p = ffi::lua_tolstring(l, idx, &mut len);
    if p.is_null() {
        return &[];
    }
    std::slice::from_raw_parts(p as *const u8, len)
}

/// Pushes a field decoded as [`decode`] would for the scalars that need no Lua helper
/// (box.NULL is at stack slot `null`); false (nothing pushed) for arrays, maps, 64-bit
/// cdata and extensions.
///
/// # Safety
/// `l` has a free stack slot; `null` is a valid index.
pub(crate) unsafe fn push_scalar(l: *mut ffi::lua_State, raw: &[u8], null: c_int) -> bool {
    let big = serialize::CDATA_THRESHOLD;
    match mp::read(raw, 0) {
        Ok((Mp::Nil, _)) => ffi::lua_pushvalue(l, null),
        Ok((Mp::Bool(b), _)) => ffi::lua_pushboolean(l, b as c_int),
        Ok((Mp::UInt(u), _)) if u < big => ffi::lua_pushnumber(l, u as f64),
        Ok((Mp::Int(i), _)) if i.unsigned_abs() < big => ffi::lua_pushnumber(l, i as f64),
        Ok((Mp::F32(f), _)) => ffi::lua_pushnumber(l, f as f64),
        Ok((Mp::F64(f), _)) => ffi::lua_pushnumber(l, f),
        Ok((Mp::Str(s) | Mp::Bin(s), _)) => {
            ffi::lua_pushlstring(l, s.as_ptr() as *const _, s.len());
        }
        _ => return false,
    }
    true
}

/// Calls the function at stack slot `f` with the first `nargs` arguments and returns what
/// it returns.
///
/// # Safety
/// `l` is a raw C function's state with a free stack slot, and `f` a valid index (an upvalue);
/// nothing of the caller may own something to drop (an error unwinds through it).
pub(crate) unsafe fn call_with_args(l: *mut ffi::lua_State, f: c_int, nargs: c_int) -> c_int {
    ffi::lua_settop(l, nargs);
    ffi::lua_pushvalue(l, f);
    ffi::lua_insert(l, 1);
    ffi::lua_call(l, nargs, ffi::LUA_MULTRET);
    ffi::lua_gettop(l)
}

/// `t[key]`, the tuples' `__index`: fields decoded straight onto the stack; upvalues are
/// the tuple metatable, the methods, box.NULL and the mlua version of this for the values
/// [`push_scalar`] leaves.
unsafe extern "C-unwind" fn tuple_index(l: *mut ffi::lua_State) -> c_int {
    // Safety: Lua calls this with (tuple, key) and the upvalues `init` gave it; values only
    // borrowed from the stack are alive when `call_with_args` may unwind.
    unsafe {
        let Some(t) = raw_tuple(l, 1, UV_MT) else {
            return call_with_args(l, UV_SLOW_INDEX, 2);
        };
        let field = match ffi::lua_type(l, 2) {
            ffi::LUA_TNUMBER => match t.tuple.field(ffi_u32(ffi::lua_tonumber(l, 2) - 1.0)) {
                Some(raw) => raw,
                None => {
                    ffi::lua_pushnil(l);
                    return 1;
                }
            },
            // Without a format only `[n]...` paths can name a field; a field wins over a
            // method of the same name.
            ffi::LUA_TSTRING => {
                let path = lua_bytes(l, 2);
                let found = if t.format.is_some() || path.first() == Some(&b'[') {
                    field_by_path(&t.tuple, t.format.as_deref(), path)
                } else {
                    None
                };
                match found {
                    Some(raw) if raw.first() != Some(&0xc0) => raw,
                    _ => return method(l),
                }
            }
            _ => return method(l),
        };
        if push_scalar(l, field, UV_NULL) {
            1
        } else {
            call_with_args(l, UV_SLOW_INDEX, 2)
        }
    }
}

/// `methods[key]` for `tuple_index`.
///
/// # Safety
/// As for `tuple_index`.
unsafe fn method(l: *mut ffi::lua_State) -> c_int {
    ffi::lua_settop(l, 2);
    ffi::lua_rawget(l, UV_METHODS);
    1
}

/// `#t`.
unsafe extern "C-unwind" fn tuple_len(l: *mut ffi::lua_State) -> c_int {
    // Safety: Lua calls this with the operand at 1 and the metatable as upvalue 1.
    unsafe {
        match raw_tuple(l, 1, UV_MT) {
            Some(t) => {
                ffi::lua_pushnumber(l, t.tuple.len() as f64);
                1
            }
            None => raise(l, LuaError::runtime("box.tuple expected")),
        }
    }
}

/// `a == b`: the same stored tuple (Tarantool compares the pointers).
unsafe extern "C-unwind" fn tuple_eq(l: *mut ffi::lua_State) -> c_int {
    // Safety: Lua calls this with the operands at 1 and 2 and the metatable as upvalue 1.
    unsafe {
        let same = match (raw_tuple(l, 1, UV_MT), raw_tuple(l, 2, UV_MT)) {
            (Some(a), Some(b)) => a.tuple.ptr_eq(&b.tuple),
            _ => false,
        };
        ffi::lua_pushboolean(l, same as c_int);
        1
    }
}

/// The finalizer: drops the tuple reference and the format (once).
unsafe extern "C-unwind" fn tuple_gc(l: *mut ffi::lua_State) -> c_int {
    // Safety: the block of a userdata with the tuple metatable is a Slot that `push_raw`
    // wrote; taking it leaves None for any later call.
    unsafe {
        if raw_tuple(l, 1, UV_MT).is_some() {
            let block = ffi::lua_touserdata(l, 1) as *mut Slot;
            drop((*block).take());
        }
        0
    }
}

/// A number argument as LuaJIT's FFI converts it to `uint32_t` (wrapping, truncating).
fn ffi_u32(n: f64) -> u32 {
    (n as i64) as u32
}

/// A number argument, with 64-bit cdata read as numbers.
fn number_arg(lua: &Lua, v: &LuaValue) -> LuaResult<Option<f64>> {
    Ok(match v {
        LuaValue::Integer(i) => Some(*i as f64),
        LuaValue::Number(n) => Some(*n),
        LuaValue::Other(_) => match cdata::classify(lua, v)? {
            Some(Cdata::U64(u)) => Some(u as f64),
            Some(Cdata::I64(i)) => Some(i as f64),
            _ => None,
        },
        _ => None,
    })
}

/// C's `lua_tonumber`: numbers and numeric strings, 0 otherwise.
fn c_tonumber(lua: &Lua, v: Option<&LuaValue>) -> LuaResult<f64> {
    Ok(match v {
        Some(LuaValue::Integer(i)) => *i as f64,
        Some(LuaValue::Number(n)) => *n,
        Some(s @ LuaValue::String(_)) => lua.coerce_number(s.clone())?.unwrap_or(0.0),
        _ => 0.0,
    })
}

/// Field `fieldno` (0-based) of a tuple as Lua sees it; nil past the end.
fn field_value(lua: &Lua, sh: &Shared, tuple: &Tuple, fieldno: u32) -> LuaResult<LuaValue> {
    match tuple.field(fieldno) {
        Some(raw) => decode(lua, sh, raw),
        None => Ok(LuaValue::Nil),
    }
}

/// `t[key]`: numbers are fields from 1, strings are names or JSON paths (a field wins over
/// a method of the same name), anything else and misses look up the methods.
fn index(lua: &Lua, sh: &Shared, tuple: &Tuple, format: Option<&TupleFormat>, key: LuaValue) -> LuaResult<LuaValue> {
    match &key {
        LuaValue::Integer(i) => return field_value(lua, sh, tuple, (*i - 1) as u32),
        LuaValue::Number(n) => return field_value(lua, sh, tuple, ffi_u32(n - 1.0)),
        LuaValue::String(s) => {
            let path = s.as_bytes();
            // Without a format only `[n]...` paths can name a field.
            if format.is_some() || path.first() == Some(&b'[') {
                if let Some(raw) = field_by_path(tuple, format, &path) {
                    if raw.first() != Some(&0xc0) {
                        return decode(lua, sh, raw);
                    }
                }
            }
        }
        _ => {}
    }
    sh.methods.raw_get(key)
}

/// The arguments of `totable`/`unpack`: Tarantool compares them with numbers, which fails
/// for other types with LuaJIT's message.
fn range_arg(lua: &Lua, v: &LuaValue, line: u32) -> LuaResult<Option<f64>> {
    if v.is_nil() {
        return Ok(None);
    }
    match number_arg(lua, v)? {
        Some(n) => Ok(Some(n)),
        None => Err(LuaError::runtime(format!(
            "builtin/box/tuple.lua:{line}: attempt to compare {} with number",
            serialize::lua_type_name(v)
        ))),
    }
}

/// `t:totable([from[, to]])`'s fields, as Tarantool's loop counts them (from and to may be
/// fractional: `from` picks the field of its integer part, and counting goes on in steps of 1).
fn range(lua: &Lua, sh: &Shared, tuple: &Tuple, i: &LuaValue, j: &LuaValue) -> LuaResult<Vec<LuaValue>> {
    let from = range_arg(lua, i, 177)?;
    if from.is_some_and(|i| i < 1.0) {
        return Err(LuaError::runtime(
            "builtin/box/tuple.lua:178: tuple.totable: invalid second argument",
        ));
    }
    let to = range_arg(lua, j, 186)?;
    if to.is_some_and(|j| j <= 0.0) {
        return Err(LuaError::runtime(
            "builtin/box/tuple.lua:187: tuple.totable: invalid third argument",
        ));
    }
    let mut i = from.unwrap_or(1.0);
    let j = to.unwrap_or(4294967295.0);
    let mut out = Vec::new();
    for raw in tuple.fields().skip(ffi_u32(i - 1.0) as usize) {
        if i > j {
            break;
        }
        out.push(decode(lua, sh, raw)?);
        i += 1.0;
    }
    Ok(out)
}

fn totable(lua: &Lua, sh: &Shared, (t, i, j): (LuaValue, LuaValue, LuaValue)) -> LuaResult<LuaTable> {
    let (tuple, _) = check(lua, &t, "tuple:totable([from[, to]])")?;
    let items = range(lua, sh, &tuple, &i, &j)?;
    let table = lua.create_sequence_from(items)?;
    table.set_metatable(Some(sh.array_mt.clone()))?;
    Ok(table)
}

fn unpack(lua: &Lua, sh: &Shared, (t, i, j): (LuaValue, LuaValue, LuaValue)) -> LuaResult<LuaMultiValue> {
    let (tuple, _) = check(lua, &t, "tuple:totable([from[, to]])")?;
    Ok(LuaMultiValue::from_iter(range(lua, sh, &tuple, &i, &j)?))
}

/// `t:next([pos])`: the field after `pos` (0-based count of fields before it).
fn next(lua: &Lua, sh: &Shared, (t, pos): (LuaValue, LuaValue)) -> LuaResult<LuaMultiValue> {
    let (tuple, _) = check(lua, &t, "tuple:next(tuple[, pos])")?;
    let pos = if pos.is_nil() {
        0.0
    } else {
        number_arg(lua, &pos)?.ok_or_else(|| {
            LuaError::runtime(format!(
                "builtin/box/tuple.lua:157: bad argument #2 to 'box_tuple_field' (cannot convert '{}' to 'unsigned int')",
                serialize::lua_type_name(&pos)
            ))
        })?
    };
    match tuple.field(ffi_u32(pos)) {
        Some(raw) => Ok(LuaMultiValue::from_iter([
            LuaValue::Number(pos + 1.0),
            decode(lua, sh, raw)?,
        ])),
        None => Ok(LuaMultiValue::from_iter([LuaValue::Nil])),
    }
}

const BAD_NEXT_KEY: &str = "builtin/box/tuple.lua:126: error: invalid key to 'next'";
const BAD_NEXT_POS: &str = "builtin/box/tuple.lua:144: error: invalid key to 'next'";

impl TupleIter {
    fn new(tuple: Tuple) -> TupleIter {
        let offset = mp::read_array(tuple.data(), 0).map(|(_, p)| p).unwrap_or(0);
        TupleIter {
            tuple,
            position: 0,
            offset,
        }
    }

    /// The raw field at 0-based `pos`, reading on from the last one when it follows it.
    fn seek(&mut self, pos: u32) -> Option<&[u8]> {
        let data = self.tuple.data();
        let (count, first) = mp::read_array(data, 0)?;
        if pos != self.position {
            self.position = 0;
            self.offset = first;
            while self.position < pos && self.position < count {
                self.offset = mp::skip(data, self.offset).ok()?;
                self.position += 1;
            }
        }
        if self.position >= count {
            return None;
        }
        let start = self.offset;
        self.offset = mp::skip(data, start).ok()?;
        self.position += 1;
        Some(&data[start..self.offset])
    }

    /// One step of `for k, v in t:pairs()`: the state is the number of fields read.
    fn step(&mut self, lua: &Lua, sh: &Shared, pos: &LuaValue) -> LuaResult<LuaMultiValue> {
        let pos = if pos.is_nil() {
            0.0
        } else {
            number_arg(lua, pos)?.ok_or_else(|| LuaError::runtime(BAD_NEXT_KEY))?
        };
        let len = self.tuple.len();
        let raw = if pos == self.position as f64 {
            self.seek(self.position)
        } else {
            self.seek(ffi_u32(pos))
        };
        match raw {
            Some(raw) => Ok(LuaMultiValue::from_iter([
                LuaValue::Number(pos + 1.0),
                decode(lua, sh, raw)?,
            ])),
            None if len as f64 == pos => Ok(LuaMultiValue::from_iter([LuaValue::Nil])),
            None => Err(LuaError::runtime(BAD_NEXT_POS)),
        }
    }
}

/// `t:pairs([pos])` / `t:ipairs()`: generator, tuple, state.
fn pairs(lua: &Lua, _: &Shared, (t, pos): (LuaValue, LuaValue)) -> LuaResult<(LuaAnyUserData, LuaValue, LuaValue)> {
    let (tuple, _) = check(lua, &t, "tuple:pairs(tuple[, pos])")?;
    Ok((lua.create_any_userdata(TupleIter::new(tuple))?, t, pos))
}

/// What `find` compares fields with, as Lua's `==` would see the decoded field.
enum Needle {
    Nil,
    Bool(bool),
    Num(f64),
    U64(u64),
    I64(i64),
    Str(Vec<u8>),
    Uuid(Vec<u8>),
    /// Tables, functions, userdata: a decoded field is never the same object.
    Never,
}

impl Needle {
    fn new(lua: &Lua, sh: &Shared, v: &LuaValue) -> LuaResult<Needle> {
        Ok(match v {
            LuaValue::Nil => Needle::Nil,
            LuaValue::Boolean(b) => Needle::Bool(*b),
            LuaValue::Integer(i) => Needle::Num(*i as f64),
            LuaValue::Number(n) => Needle::Num(*n),
            LuaValue::String(s) => Needle::Str(s.as_bytes().to_vec()),
            LuaValue::Other(_) => match cdata::classify(lua, v)? {
                Some(Cdata::Null) => Needle::Nil,
                Some(Cdata::U64(u)) => Needle::U64(u),
                Some(Cdata::I64(i)) => Needle::I64(i),
                _ => uuid_bytes(lua, sh, v)?.map_or(Needle::Never, Needle::Uuid),
            },
            _ => Needle::Never,
        })
    }

    fn matches(&self, field: &[u8]) -> bool {
        let Ok((v, _)) = mp::read(field, 0) else {
            return false;
        };
        // Integers of 1e14 and more decode as 64-bit cdata, which LuaJIT compares with a
        // number by converting the number to the integer type.
        let big = serialize::CDATA_THRESHOLD;
        match (self, v) {
            (Needle::Nil, Mp::Nil) => true,
            (Needle::Bool(a), Mp::Bool(b)) => *a == b,
            (Needle::Num(x), Mp::UInt(u)) if u < big => *x == u as f64,
            (Needle::Num(x), Mp::UInt(u)) => *x >= 0.0 && *x as u64 == u,
            (Needle::Num(x), Mp::Int(i)) if i.unsigned_abs() < big => *x == i as f64,
            (Needle::Num(x), Mp::Int(i)) => *x as i64 == i,
            (Needle::Num(x), Mp::F32(f)) => *x == f as f64,
            (Needle::Num(x), Mp::F64(f)) => *x == f,
            (Needle::U64(a), Mp::UInt(u)) => *a == u,
            (Needle::U64(a), Mp::Int(i)) => *a == i as u64,
            (Needle::U64(a), Mp::F64(f)) => f >= 0.0 && *a == f as u64,
            (Needle::I64(a), Mp::UInt(u)) => *a as u64 == u,
            (Needle::I64(a), Mp::Int(i)) => *a == i,
            (Needle::I64(a), Mp::F64(f)) => *a == f as i64,
            (Needle::Str(a), Mp::Str(b) | Mp::Bin(b)) => a.as_slice() == b,
            (Needle::Uuid(a), Mp::Ext(MP_UUID, b)) => a.as_slice() == b,
            _ => false,
        }
    }
}

/// The 1-based positions (after `offset`) of fields equal to the value, as Tarantool's
/// luafun-based `find`/`findall` give them; `all` false stops at the first.
fn find_positions(
    lua: &Lua,
    sh: &Shared,
    tuple: &Tuple,
    offset: &LuaValue,
    val: &LuaValue,
    all: bool,
) -> LuaResult<(f64, Vec<u32>)> {
    // `val == nil` is also true for box.NULL, which then shifts like a missing argument.
    let (offset, val) = if cdata::is_nil_or_null(lua, val) {
        (0.0, offset)
    } else {
        let o = number_arg(lua, offset)?.ok_or_else(|| LuaError::runtime(BAD_NEXT_KEY))?;
        (o, val)
    };
    let needle = Needle::new(lua, sh, val)?;
    let len = tuple.len();
    let start = ffi_u32(offset);
    if start >= len {
        return if len as f64 == offset {
            Ok((offset, Vec::new()))
        } else {
            Err(LuaError::runtime(BAD_NEXT_POS))
        };
    }
    let mut found = Vec::new();
    for (i, raw) in tuple.fields().skip(start as usize).enumerate() {
        if needle.matches(raw) {
            found.push(i as u32 + 1);
            if !all {
                break;
            }
        }
    }
    Ok((offset, found))
}

fn find(lua: &Lua, sh: &Shared, (t, offset, val): (LuaValue, LuaValue, LuaValue)) -> LuaResult<Option<f64>> {
    let (tuple, _) = check(lua, &t, "tuple:find([offset, ]val)")?;
    let (offset, found) = find_positions(lua, sh, &tuple, &offset, &val, false)?;
    Ok(found.first().map(|&i| offset + i as f64))
}

fn findall(lua: &Lua, sh: &Shared, (t, offset, val): (LuaValue, LuaValue, LuaValue)) -> LuaResult<LuaTable> {
    let (tuple, _) = check(lua, &t, "tuple:findall([offset, ]val)")?;
    let (offset, found) = find_positions(lua, sh, &tuple, &offset, &val, true)?;
    lua.create_sequence_from(found.into_iter().map(|i| offset + i as f64))
}

fn bsize(lua: &Lua, _: &Shared, t: LuaValue) -> LuaResult<usize> {
    let (tuple, _) = check(lua, &t, "tuple:bsize()")?;
    Ok(tuple.bsize())
}

/// `t:slice(from[, to])`: C's argument rules (0-based `from`, exclusive `to`, negative
/// counts from the end).
fn slice(lua: &Lua, sh: &Shared, args: LuaMultiValue) -> LuaResult<LuaMultiValue> {
    let (tuple, _) = check_c(lua, args.front())?;
    let argc = args.len().saturating_sub(1);
    if argc == 0 || argc > 2 {
        return Err(LuaError::runtime("tuple.slice(): bad arguments"));
    }
    let count = tuple.len() as i64;
    let offset = c_tonumber(lua, args.get(1))? as i32 as i64;
    let start = if offset >= 0 && offset < count {
        offset
    } else if offset < 0 && -offset <= count {
        offset + count
    } else {
        return Err(LuaError::runtime("tuple.slice(): start >= field count"));
    };
    let end = if argc == 2 {
        let offset = c_tonumber(lua, args.get(2))? as i32 as i64;
        if offset > 0 && offset <= count {
            offset
        } else if offset < 0 && -offset < count {
            offset + count
        } else {
            return Err(LuaError::runtime("tuple.slice(): end > field count"));
        }
    } else {
        count
    };
    if end <= start {
        return Err(LuaError::runtime("tuple.slice(): start must be less than end"));
    }
    let mut out = Vec::with_capacity((end - start) as usize);
    for raw in tuple.fields().skip(start as usize).take((end - start) as usize) {
        out.push(decode(lua, sh, raw)?);
    }
    Ok(LuaMultiValue::from_iter(out))
}

/// C's `lua_tointeger`: numbers truncated, numeric strings converted, 0 otherwise.
fn c_tointeger(lua: &Lua, v: Option<&LuaValue>) -> LuaResult<i64> {
    Ok(match v {
        Some(LuaValue::Integer(i)) => *i,
        Some(LuaValue::Number(n)) => *n as i64,
        Some(s @ LuaValue::String(_)) => lua.coerce_number(s.clone())?.map_or(0, |n| n as i64),
        _ => 0,
    })
}

/// `t:transform(offset, len, ...)`: removes `len` fields at `offset` and inserts the values
/// there, giving a tuple without format; with nothing to do, the same tuple.
fn transform(lua: &Lua, sh: &Shared, args: LuaMultiValue) -> LuaResult<LuaValue> {
    let (tuple, format) = check_c(lua, args.front())?;
    if args.len() < 3 {
        return Err(LuaError::runtime("tuple.transform(): bad arguments"));
    }
    let mut offset = c_tointeger(lua, args.get(1))?;
    let mut len = c_tointeger(lua, args.get(2))?;
    let count = tuple.len() as i64;
    let out_of_bound = || LuaError::runtime("tuple.transform(): offset is out of bound");
    if offset == 0 {
        return Err(out_of_bound());
    } else if offset < 0 {
        if -offset > count {
            return Err(out_of_bound());
        }
        offset += count + 1;
    } else if offset > count {
        offset = count + 1;
    }
    if len < 0 {
        return Err(LuaError::runtime("tuple.transform(): len is negative"));
    }
    len = len.min(count + 1 - offset);
    let values: Vec<&LuaValue> = args.iter().skip(3).collect();
    let delete = offset < count + 1 && len > 0;
    let op_count = delete as u32 + values.len() as u32;
    if op_count == 0 {
        return push(lua, tuple, format);
    }
    let mut ops = Vec::with_capacity(16 + 8 * values.len());
    mp::write_array_header(&mut ops, op_count);
    if delete {
        mp::write_array_header(&mut ops, 3);
        mp::write_str(&mut ops, b"#");
        mp::write_uint(&mut ops, offset as u64);
        mp::write_uint(&mut ops, len as u64);
    }
    // Each insert goes before the previous one, so the values end up in argument order.
    for v in values.iter().rev() {
        mp::write_array_header(&mut ops, 3);
        mp::write_str(&mut ops, b"!");
        mp::write_uint(&mut ops, offset as u64);
        encode_value(lua, sh, v, &mut ops, SPARSE_RATIO)?;
    }
    let data = update::update(tuple.data(), &ops, 1, &|_| None).map_err(ClientError::into_lua_err)?;
    push(lua, Tuple::from_trusted(&data), None)
}

/// The operations of `t:update(ops)` / `t:upsert(ops)`, which must be a table.
fn ops_arg(lua: &Lua, sh: &Shared, ops: &LuaValue, usage_text: &str) -> LuaResult<Vec<u8>> {
    if !matches!(ops, LuaValue::Table(_)) {
        return Err(LuaError::runtime(format!(
            "builtin/box/tuple.lua:{}: Usage: {usage_text}",
            if usage_text.starts_with("tuple:update") {
                230
            } else {
                243
            }
        )));
    }
    let mut out = Vec::with_capacity(32);
    encode_key(lua, sh, ops, &mut out)?;
    Ok(out)
}

fn finish(lua: &Lua, data: Vec<u8>, format: Option<Rc<TupleFormat>>) -> LuaResult<LuaValue> {
    if let Some(validate) = format.as_ref().and_then(|f| f.validate.as_ref()) {
        validate(&data).map_err(ClientError::into_lua_err)?;
    }
    push(lua, Tuple::from_trusted(&data), format)
}

const UPDATE_USAGE: &str = "tuple:update({ { op, field, arg}+ })";
const UPSERT_USAGE: &str = "tuple:upsert({ { op, field, arg}+ })";

fn tuple_update(lua: &Lua, sh: &Shared, (t, ops): (LuaValue, LuaValue)) -> LuaResult<LuaValue> {
    let (tuple, format) = check(lua, &t, UPDATE_USAGE)?;
    let ops = ops_arg(lua, sh, &ops, UPDATE_USAGE)?;
    let f = format.as_deref();
    let data = update::update_typed(tuple.data(), &ops, 1, &|name| f.and_then(|f| f.field_no(name)), &|no| {
        f.is_some_and(|f| f.is_double(no))
    })
    .map_err(ClientError::into_lua_err)?;
    finish(lua, data, format)
}

fn tuple_upsert(lua: &Lua, sh: &Shared, (t, ops): (LuaValue, LuaValue)) -> LuaResult<LuaValue> {
    let (tuple, format) = check(lua, &t, UPSERT_USAGE)?;
    let ops = ops_arg(lua, sh, &ops, UPSERT_USAGE)?;
    let f = format.as_deref();
    let (data, skipped) =
        update::upsert_typed(tuple.data(), &ops, 1, &|name| f.and_then(|f| f.field_no(name)), &|no| {
            f.is_some_and(|f| f.is_double(no))
        })
        .map_err(ClientError::into_lua_err)?;
    for e in skipped {
        log::write(lua, log::Level::Error, "UPSERT operation failed:");
        let name = ERRCODES.get(e.code as usize).map_or("UNKNOWN", |c| c.name);
        log::write(lua, log::Level::Error, &format!("ER_{name}: {}", e.message));
    }
    finish(lua, data, format)
}

/// `t:tomap([{names_only = bool}])`: named fields by name (and by number unless
/// names_only), the others by number.
fn tomap(lua: &Lua, sh: &Shared, args: LuaMultiValue) -> LuaResult<LuaTable> {
    let bad = || LuaError::runtime("Usage: tuple:tomap(opts)");
    if args.is_empty() || args.len() > 2 {
        return Err(bad());
    }
    let mut names_only = false;
    if let Some(opts) = args.get(1) {
        let LuaValue::Table(opts) = opts else {
            return Err(bad());
        };
        match opts.get::<LuaValue>("names_only")? {
            LuaValue::Nil => {}
            LuaValue::Boolean(b) => names_only = b,
            _ => return Err(bad()),
        }
    }
    let (tuple, format) = check_c(lua, args.front())?;
    let names: &[String] = format.as_deref().map_or(&[], |f| &f.names);
    let table = lua.create_table_with_capacity(tuple.len() as usize, names.len())?;
    for (i, raw) in tuple.fields().enumerate() {
        let v = decode(lua, sh, raw)?;
        match names.get(i) {
            Some(name) => {
                if !names_only {
                    table.raw_set(i + 1, v.clone())?;
                }
                table.raw_set(name.as_str(), v)?;
            }
            None if names_only => break,
            None => table.raw_set(i + 1, v)?,
        }
    }
    Ok(table)
}

/// `box.tuple.new(...)`: one table or tuple is the tuple; anything else (or several values)
/// are its fields. Sparse tables stay arrays, as in Tarantool's tuple serializer.
fn tuple_new(lua: &Lua, sh: &Shared, args: LuaMultiValue) -> LuaResult<LuaValue> {
    let tuple = match args.len() {
        0 => Tuple::from_trusted(&[0x90]),
        1 if matches!(&args[0], LuaValue::Table(_)) || is_tuple(lua, &args[0]) => {
            tuple_from_value(lua, sh, &args[0], 0)?
        }
        n => {
            let mut out = Vec::with_capacity(16 * n);
            mp::write_array_header(&mut out, n as u32);
            for v in args.iter() {
                encode_value(lua, sh, v, &mut out, SPARSE_RATIO)?;
            }
            Tuple::from_trusted(&out)
        }
    };
    push(lua, tuple, None)
}

/// Errors for `t.x = v`, with the caller's position as LuaJIT gives it for cdata.
const NEWINDEX_LUA: &str = r#"
local format, type, error = string.format, type, error
return function(_, k)
    if type(k) == 'string' then
        error(format("'struct tuple' has no member named '%s'", k), 2)
    end
    error(format("'struct tuple' cannot be indexed with '%s'", type(k)), 2)
end
"#;

/// Registers the userdata types and builds the methods; once per Lua state.
fn init(lua: &Lua) -> LuaResult<Rc<Shared>> {
    let null = cdata::null(lua)?;
    let array_mt = serialize::array_mt(lua)?;
    let map_mt = serialize::map_mt(lua)?;
    let methods = lua.create_table()?;
    // The methods need the shared state, which holds the methods table: they reach it
    // through a cell filled once it exists.
    let cell: Rc<OnceCell<Rc<Shared>>> = Rc::new(OnceCell::new());
    macro_rules! method {
        ($name:expr, $f:expr) => {{
            let cell = cell.clone();
            let f = $f;
            let func = lua.create_function(move |lua, args| {
                let sh = cell
                    .get()
                    .ok_or_else(|| LuaError::runtime("box.tuple is not initialised"))?;
                f(lua, sh, args)
            })?;
            methods.raw_set($name, func)?;
        }};
    }
    method!("totable", totable);
    method!("find", find);
    method!("findall", findall);
    method!("transform", transform);
    method!("update", tuple_update);
    method!("upsert", tuple_upsert);
    method!("unpack", unpack);
    method!("next", next);
    method!("pairs", pairs);
    method!("slice", slice);
    method!("bsize", bsize);
    method!("tomap", tomap);
    let pairs_fn: LuaFunction = methods.raw_get("pairs")?;
    methods.raw_set("ipairs", pairs_fn.clone())?;

    let totable_fn: LuaFunction = methods.raw_get("totable")?;
    let newindex: LuaFunction = lua.load(NEWINDEX_LUA).set_name("=box.tuple").eval()?;
    // The tuple userdata's metatable: raw C functions for what is hot, mlua functions for
    // the rest (they find the tuple with `tuple_of`).
    let mt = lua.create_table()?;
    let index_cell = cell.clone();
    let slow_index = lua.create_function(move |lua, (t, key): (LuaValue, LuaValue)| {
        let sh = index_cell
            .get()
            .ok_or_else(|| LuaError::runtime("box.tuple is not initialised"))?;
        let (tuple, format) = check_c(lua, Some(&t))?;
        index(lua, sh, &tuple, format.as_deref(), key)
    })?;
    let mt_value = LuaValue::Table(mt.clone());
    mt.raw_set(
        "__index",
        c_closure(
            lua,
            tuple_index,
            &[
                mt_value.clone(),
                LuaValue::Table(methods.clone()),
                null.clone(),
                LuaValue::Function(slow_index),
            ],
        )?,
    )?;
    mt.raw_set("__len", c_closure(lua, tuple_len, std::slice::from_ref(&mt_value))?)?;
    mt.raw_set("__eq", c_closure(lua, tuple_eq, std::slice::from_ref(&mt_value))?)?;
    mt.raw_set("__gc", c_closure(lua, tuple_gc, std::slice::from_ref(&mt_value))?)?;
    mt.raw_set(
        "__tostring",
        lua.create_function(|lua, t: LuaValue| tuple_to_string(&check_c(lua, Some(&t))?.0))?,
    )?;
    mt.raw_set("__newindex", newindex)?;
    mt.raw_set("__pairs", pairs_fn.clone())?;
    mt.raw_set("__ipairs", pairs_fn)?;
    // What json/yaml/msgpack and the console serialize a tuple as.
    mt.raw_set("__serialize", totable_fn)?;
    // As mlua's userdata had them: getmetatable(t) is false.
    mt.raw_set("__metatable", false)?;
    mt.raw_set("__name", "LuaTuple")?;
    set_registry(lua, &TUPLE_MT_KEY, &mt_value)?;
    let raise_fn = lua.create_function(|_, ()| -> LuaResult<()> {
        Err(PENDING_ERROR
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| LuaError::runtime("no pending error")))
    })?;
    set_registry(lua, &RAISE_KEY, &LuaValue::Function(raise_fn))?;
    let iter_cell = cell.clone();
    lua.register_userdata_type::<TupleIter>(move |reg| {
        reg.add_meta_method_mut(LuaMetaMethod::Call, move |lua, this, (_, pos): (LuaValue, LuaValue)| {
            let sh = iter_cell
                .get()
                .ok_or_else(|| LuaError::runtime("box.tuple is not initialised"))?;
            this.step(lua, sh, &pos)
        });
        reg.add_meta_method(LuaMetaMethod::ToString, |_, _, ()| Ok("<tuple iterator>"));
    })?;

    let sh = Rc::new(Shared {
        null_ptr: null.to_pointer() as usize,
        null,
        array_mt_ptr: array_mt.to_pointer() as usize,
        array_mt,
        map_mt,
        tuple_mt_ptr: mt.to_pointer() as usize,
        tuple_mt: mt,
        methods,
        uuid: RefCell::new(None),
    });
    let _ = cell.set(sh.clone());
    Ok(sh)
}

/// The `box.tuple` table: `new`, `is`, and every method as a function of the tuple.
pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    let sh = shared(lua)?;
    let m = lua.create_table()?;
    for pair in sh.methods.pairs::<LuaValue, LuaValue>() {
        let (k, v) = pair?;
        m.raw_set(k, v)?;
    }
    let sh2 = sh.clone();
    m.raw_set(
        "new",
        lua.create_function(move |lua, args: LuaMultiValue| tuple_new(lua, &sh2, args))?,
    )?;
    m.raw_set("is", lua.create_function(|lua, v: LuaValue| Ok(is_tuple(lua, &v)))?)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lua() -> Lua {
        let lua = cdata::test_lua();
        let boxt = lua.create_table().unwrap();
        boxt.set("NULL", cdata::null(&lua).unwrap()).unwrap();
        boxt.set("tuple", module(&lua).unwrap()).unwrap();
        lua.globals().set("box", boxt).unwrap();
        lua
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn eval(lua: &Lua, src: &str) -> LuaValue {
        lua.load(src).eval().unwrap()
    }

    fn value_hex(lua: &Lua, src: &str) -> String {
        hex(&value_to_msgpack(lua, &eval(lua, src)).unwrap())
    }

    #[test]
    fn values_encode_as_tarantool_does() {
        let lua = lua();
        assert_eq!(value_hex(&lua, "return 1.5"), "cb3ff8000000000000");
        assert_eq!(value_hex(&lua, "return 2^53"), "cf0020000000000000");
        assert_eq!(value_hex(&lua, "return -0.0"), "00");
        assert_eq!(value_hex(&lua, "return -2^63"), "d38000000000000000");
        assert_eq!(value_hex(&lua, "return 2^64"), "cb43f0000000000000");
        assert_eq!(
            value_hex(&lua, "return {1, 'ab', true, box.NULL, {2.5}}"),
            "9501a26162c3c091cb4004000000000000"
        );
        assert_eq!(value_hex(&lua, "return {1, nil, 3}"), "9301c003");
        // Items in the hash part, and in another order than 1..n: counted first.
        assert_eq!(
            value_hex(&lua, "local t = {} t[3] = 3 t[2] = 2 t[1] = 1 return t"),
            "93010203"
        );
        assert_eq!(value_hex(&lua, "local t = {1, 2} t[4] = 4 return t"), "940102c004");
        assert_eq!(value_hex(&lua, "return {1, 2, x = 3}"), "8301010202a17803");
        assert_eq!(value_hex(&lua, "return {{}, {{1}}, {nil, nil}}"), "939091910190");
        assert_eq!(value_hex(&lua, "return {[1] = 1, [20] = 2}"), "8201011402");
        assert_eq!(value_hex(&lua, "return {b = 1, a = {}}"), "82a16190a16201");
        assert_eq!(
            value_hex(&lua, "return {18446744073709551615ULL, -5LL}"),
            "92cffffffffffffffffffb"
        );
        assert_eq!(value_hex(&lua, "return {box.tuple.new{1}}"), "919101");
        assert_eq!(
            value_hex(&lua, "return {setmetatable({1}, {__serialize = 'map'})}"),
            "91810101"
        );
    }

    #[test]
    fn raw_and_slow_paths_agree() {
        let lua = lua();
        // The same table once plain (raw path) and once with a cdata that sends it all to
        // the slow path.
        let plain = value_hex(&lua, "return {1, -7, 0.25, 'x', {true, {}}, nil, 2^40}");
        let slow = value_hex(&lua, "return {1, -7, 0.25, 'x', {true, {}}, nil, 2^40, 5ULL}");
        assert_eq!(&slow[2..slow.len() - 2], &plain[2..]);
        assert_eq!(&slow[..2], "98");
    }

    #[test]
    fn tuples_must_be_arrays() {
        let lua = lua();
        let err = |src: &str| tuple_from_lua(&lua, &eval(&lua, src)).unwrap_err().to_string();
        assert!(err("return {a = 1}").contains("Tuple/Key must be MsgPack array"));
        assert!(err("return 5").contains("Tuple/Key must be MsgPack array"));
        assert!(err("return nil").contains("Tuple/Key must be MsgPack array"));
        assert!(err("return {print}").contains("unsupported Lua type 'function'"));
        // Too sparse for an array: a map, hence no tuple (box.tuple.new keeps it an array).
        assert!(err("return {1, [13] = 5}").contains("Tuple/Key must be MsgPack array"));
        let t = tuple_from_lua(&lua, &eval(&lua, "return {1, 'a'}")).unwrap();
        assert_eq!(hex(t.data()), "9201a161");
        let n: u32 = lua.load("return #box.tuple.new{1, [13] = 5}").eval().unwrap();
        assert_eq!(n, 13);
    }

    #[test]
    fn keys_follow_tuple_encode() {
        let lua = lua();
        let key = |src: &str| hex(&key_from_lua(&lua, &eval(&lua, src)).unwrap());
        assert_eq!(key("return nil"), "90");
        assert_eq!(key("return box.NULL"), "90");
        assert_eq!(key("return 1"), "9101");
        assert_eq!(key("return 'a'"), "91a161");
        assert_eq!(key("return {1, 2}"), "920102");
        assert_eq!(key("return {a = 1}"), "90");
        assert_eq!(key("return box.tuple.new{3, 4}"), "920304");
    }

    #[test]
    fn fields_decode_as_tarantool_does() {
        let lua = lua();
        let v = decode_to_lua(&lua, &[0xcf, 0, 0x20, 0, 0, 0, 0, 0, 1]).unwrap();
        assert_eq!(cdata::classify(&lua, &v).unwrap(), Some(Cdata::U64((1 << 53) + 1)));
        let v = decode_to_lua(&lua, &[0xc0]).unwrap();
        assert_eq!(cdata::classify(&lua, &v).unwrap(), Some(Cdata::Null));
        let v = decode_to_lua(&lua, &[0x92, 0x01, 0xc0]).unwrap();
        let t = v.as_table().unwrap();
        assert_eq!(t.raw_len(), 2);
        assert_eq!(
            t.metatable().unwrap().to_pointer(),
            serialize::array_mt(&lua).unwrap().to_pointer()
        );
        assert!(decode_to_lua(&lua, &[0x92, 0x01]).is_err());
        assert!(decode_to_lua(&lua, &[0xd4, 0x05, 0x00]).is_err());
    }

    #[test]
    fn paths_name_fields_and_nested_values() {
        let lua = lua();
        let t = tuple_from_lua(&lua, &eval(&lua, "return {1, {a = {10, 20}}, 'x'}")).unwrap();
        let f = TupleFormat::new(vec!["id".into(), "doc".into()]);
        let get = |path: &str, f: Option<&TupleFormat>| field_by_path(&t, f, path.as_bytes()).map(hex);
        assert_eq!(get("id", Some(&f)), Some("01".into()));
        assert_eq!(get("[3]", None), Some("a178".into()));
        assert_eq!(get("doc.a[2]", Some(&f)), Some("14".into()));
        assert_eq!(get("[2]['a'][1]", None), Some("0a".into()));
        assert_eq!(get("[2].a[3]", None), None);
        assert_eq!(get("doc", None), None);
        assert_eq!(get("[0]", None), None);
        assert_eq!(get("[1", None), None);
        assert_eq!(get("", Some(&f)), None);
    }

    #[test]
    fn tostring_is_libyaml_flow_style() {
        let lua = lua();
        let show = |src: &str| -> String {
            lua.load(format!("return tostring(box.tuple.new({src}))"))
                .eval()
                .unwrap()
        };
        assert_eq!(
            show("{1, 'a', {2}, box.NULL, {a = 1}}"),
            "[1, 'a', [2], null, {'a': 1}]"
        );
        assert_eq!(
            show("{\"it's\", 'tab\\t', 1.5, 2^64, -0.0, 0.1}"),
            "['it''s', \"tab\\t\", 1.5, 1.844674407371e+19, 0, 0.1]"
        );
        assert_eq!(show("{'a\\nb'}"), "['a\n\n    b']");
        assert_eq!(show("{{{'a\\nb'}}}"), "[[['a\n\n        b']]]");
        assert_eq!(show("{'\\xff\\xfe', 'x \\n y'}"), "[!!binary //4=, \"x \\n y\"]");
        assert_eq!(show("{{[{1}] = 2}}"), "[{? [1] : 2}]");
        assert_eq!(
            show("{{[string.rep('k', 129)] = 1}}"),
            format!("[{{? '{}' : 1}}]", "k".repeat(129))
        );
    }

    #[test]
    fn methods_behave_as_in_tarantool() {
        let lua = lua();
        lua.load(
            r#"
            local t = box.tuple.new{1, 2, 3, 2, 'x', 2, box.NULL}
            assert(#t == 7 and t[1] == 1 and t[5] == 'x' and t[8] == nil and t[0] == nil)
            assert(t[7] == nil and type(t[7]) == 'cdata')
            assert(select('#', t:unpack()) == 7 and select('#', t:unpack(2, 3)) == 2)
            assert(t:find(2) == 2 and t:find(3, 2) == 4 and t:find(nil) == 7)
            local all = t:findall(2)
            assert(#all == 3 and all[3] == 6)
            local n = 0
            for k, v in t:pairs() do n = n + 1 assert(k == n) end
            assert(n == 7)
            assert(t:bsize() == 9)
            assert(t == t and t ~= box.tuple.new{1} and t:transform(2, 0) == t)
            assert(tostring(t:update{{'=', 1, 10}}) == "[10, 2, 3, 2, 'x', 2, null]")
            assert(tostring(t:transform(2, 2, 'a')) == "[1, 'a', 2, 'x', 2, null]")
            assert(t.bsize == box.tuple.bsize and t.nope == nil and t['[5]'] == 'x')
            local ok, e = pcall(t.update, t, 5)
            assert(tostring(e):find('builtin/box/tuple.lua:230: Usage: tuple:update({ { op, field, arg}+ })', 1, true))
            ok, e = pcall(t.update, t, {{'=', 10, 1}})
            assert(tostring(e):find('Field 10 was not found in the tuple', 1, true))
            ok, e = pcall(function() t.x = 1 end)
            assert(tostring(e):find("'struct tuple' has no member named 'x'", 1, true))
            assert(box.tuple.is(t) and not box.tuple.is({}))
            "#,
        )
        .exec()
        .unwrap();
    }

    #[test]
    fn formats_give_names() {
        let lua = lua();
        let mut f = TupleFormat::new(vec!["id".into(), "name".into(), "val".into()]);
        f.double_fields = vec![false, false, true];
        let f = Rc::new(f);
        let tuple = tuple_from_lua(&lua, &eval(&lua, "return {1, 'a', 1.5, 'extra'}")).unwrap();
        let t = push_tuple(&lua, tuple, Some(f)).unwrap();
        lua.load(
            r#"
            local t = ...
            assert(t.id == 1 and t.name == 'a' and t['val'] == 1.5 and t.extra == nil)
            local m = t:tomap()
            assert(m.id == 1 and m[1] == 1 and m[4] == 'extra' and m.val == 1.5)
            m = t:tomap{names_only = true}
            assert(m.id == 1 and m[1] == nil and m[4] == nil)
            local u = t:update{{'=', 'name', 'b'}, {'+', 'val', 1}}
            assert(u.name == 'b' and u.val == 2.5)
            assert(t:transform(1, 1).name == nil)
            "#,
        )
        .call::<()>(t)
        .unwrap();
    }
}
