//! Tuples in Lua (`box.tuple`): a userdata over a [`Tuple`] whose fields decode on access,
//! and the fast path from Lua tables to MessagePack that every write takes.

use std::collections::HashMap;
use std::rc::Rc;

use mlua::prelude::*;

use super::errcode::*;
use super::error::ClientError;
use super::mp::{self, Mp};
use super::tuple::Tuple;
use super::update;
use crate::client_error;
use crate::runtime::cdata;
use crate::serialize::{self, Cfg};

/// Field names of a space format, shared by the tuples a space returns.
#[derive(Debug, Default)]
pub struct TupleFormat {
    pub names: Vec<String>,
    pub by_name: HashMap<String, u32>,
}

impl TupleFormat {
    pub fn new(names: Vec<String>) -> TupleFormat {
        let by_name = names.iter().enumerate().map(|(i, n)| (n.clone(), i as u32)).collect();
        TupleFormat { names, by_name }
    }
}

/// A tuple as Lua sees it.
pub struct LuaTuple {
    pub tuple: Tuple,
    pub format: Option<Rc<TupleFormat>>,
}

pub fn push_tuple(lua: &Lua, tuple: Tuple, format: Option<Rc<TupleFormat>>) -> LuaResult<LuaValue> {
    lua.create_userdata(LuaTuple { tuple, format }).map(LuaValue::UserData)
}

// {{{ decoding

fn push_int(lua: &Lua, v: Mp) -> LuaResult<LuaValue> {
    match v {
        Mp::UInt(u) => serialize::push_u64(lua, u),
        Mp::Int(i) => serialize::push_i64(lua, i),
        _ => Ok(LuaValue::Nil),
    }
}

fn decode_at(lua: &Lua, data: &[u8], pos: usize, top: bool) -> LuaResult<(LuaValue, usize)> {
    let bad = || LuaError::runtime("msgpack.decode: invalid MsgPack");
    let (v, next) = mp::read(data, pos).map_err(|_| bad())?;
    Ok(match v {
        Mp::Nil => (cdata::null(lua)?, next),
        Mp::Bool(b) => (LuaValue::Boolean(b), next),
        Mp::UInt(_) | Mp::Int(_) => (push_int(lua, v)?, next),
        Mp::F32(f) => (LuaValue::Number(f as f64), next),
        Mp::F64(f) => (LuaValue::Number(f), next),
        Mp::Str(s) | Mp::Bin(s) => (LuaValue::String(lua.create_string(s)?), next),
        Mp::Array(n) => {
            let t = lua.create_table_with_capacity(n as usize, 0)?;
            let mut p = next;
            for i in 1..=n {
                let (item, after) = decode_at(lua, data, p, false)?;
                t.raw_set(i, item)?;
                p = after;
            }
            t.set_metatable(Some(serialize::array_mt(lua)?))?;
            (LuaValue::Table(t), p)
        }
        Mp::Map(n) => {
            let t = lua.create_table_with_capacity(0, n as usize)?;
            let mut p = next;
            for _ in 0..n {
                let (k, after_k) = decode_at(lua, data, p, false)?;
                let (item, after) = decode_at(lua, data, after_k, false)?;
                if !cdata::is_nil_or_null(lua, &k) {
                    t.raw_set(k, item)?;
                }
                p = after;
            }
            t.set_metatable(Some(serialize::map_mt(lua)?))?;
            (LuaValue::Table(t), p)
        }
        Mp::Ext(..) => {
            // Extensions (uuid, decimal) decode through the msgpack module, which knows them.
            let end = mp::skip(data, pos).map_err(|_| bad())?;
            let cfg = Cfg::default();
            let (v, _) = crate::modules::msgpack::decode_at(lua, &data[..end], pos, &cfg)?;
            let _ = top;
            (v, end)
        }
    })
}

/// One encoded value as Lua.
pub fn decode_to_lua(lua: &Lua, raw: &[u8]) -> LuaResult<LuaValue> {
    decode_at(lua, raw, 0, true).map(|(v, _)| v)
}

// }}}

// {{{ encoding

fn write_number(out: &mut Vec<u8>, n: f64) {
    if n.fract() == 0.0 && (-9.223_372_036_854_776e18..1.844_674_407_370_955_2e19).contains(&n) {
        if n >= 0.0 {
            mp::write_uint(out, n as u64);
        } else {
            mp::write_int(out, n as i64);
        }
    } else {
        mp::write_f64(out, n);
    }
}

/// Encodes plain values directly; anything with a metatable, cdata or userdata goes
/// through the general serializer, which knows every rule.
fn encode(lua: &Lua, v: &LuaValue, out: &mut Vec<u8>, depth: usize) -> LuaResult<()> {
    match v {
        LuaValue::Nil => mp::write_nil(out),
        LuaValue::Boolean(b) => mp::write_bool(out, *b),
        LuaValue::Integer(i) => mp::write_int(out, *i),
        LuaValue::Number(n) => write_number(out, *n),
        LuaValue::String(s) => mp::write_str(out, &s.as_bytes()),
        LuaValue::Table(t) if t.metatable().is_none() && depth < 32 => {
            let n = t.raw_len();
            let mut count = 0usize;
            let mut plain_array = true;
            let mut string_keys = true;
            for pair in t.pairs::<LuaValue, LuaValue>() {
                let (k, _) = pair?;
                count += 1;
                match k {
                    LuaValue::Integer(i) if i >= 1 && (i as usize) <= n => string_keys = false,
                    LuaValue::Number(f) if f >= 1.0 && f.fract() == 0.0 && (f as usize) <= n => string_keys = false,
                    LuaValue::String(_) => plain_array = false,
                    _ => {
                        plain_array = false;
                        string_keys = false;
                    }
                }
            }
            if plain_array && count == n {
                mp::write_array_header(out, n as u32);
                for i in 1..=n {
                    encode(lua, &t.raw_get::<LuaValue>(i)?, out, depth + 1)?;
                }
            } else if string_keys && n == 0 {
                mp::write_map_header(out, count as u32);
                for pair in t.pairs::<LuaValue, LuaValue>() {
                    let (k, val) = pair?;
                    encode(lua, &k, out, depth + 1)?;
                    encode(lua, &val, out, depth + 1)?;
                }
            } else {
                out.extend_from_slice(&crate::modules::msgpack::encode_value(lua, v, &Cfg::default())?);
            }
        }
        LuaValue::UserData(ud) => match ud.borrow::<LuaTuple>() {
            Ok(t) => out.extend_from_slice(t.tuple.data()),
            Err(_) => out.extend_from_slice(&crate::modules::msgpack::encode_value(lua, v, &Cfg::default())?),
        },
        _ => out.extend_from_slice(&crate::modules::msgpack::encode_value(lua, v, &Cfg::default())?),
    }
    Ok(())
}

/// Encodes the plain value at `idx` straight from the Lua stack (no handles for keys,
/// values or strings); false if it meets anything that needs the general serializer
/// (metatables, cdata such as box.NULL or uint64, userdata, deep nesting).
///
/// Safety: `state` is a live Lua state with the value at `idx`.
unsafe fn encode_raw(state: *mut mlua::ffi::lua_State, idx: i32, out: &mut Vec<u8>, depth: usize) -> bool {
    use mlua::ffi;
    match ffi::lua_type(state, idx) {
        ffi::LUA_TNIL => mp::write_nil(out),
        ffi::LUA_TBOOLEAN => mp::write_bool(out, ffi::lua_toboolean(state, idx) != 0),
        ffi::LUA_TNUMBER => write_number(out, ffi::lua_tonumber(state, idx)),
        ffi::LUA_TSTRING => {
            let mut len = 0usize;
            let ptr = ffi::lua_tolstring(state, idx, &mut len);
            if ptr.is_null() {
                return false;
            }
            mp::write_str(out, std::slice::from_raw_parts(ptr as *const u8, len));
        }
        ffi::LUA_TTABLE => {
            if depth > 16 || ffi::lua_checkstack(state, 4) == 0 {
                return false;
            }
            let idx = ffi::lua_absindex(state, idx);
            if ffi::lua_getmetatable(state, idx) != 0 {
                ffi::lua_pop(state, 1);
                return false;
            }
            let n = ffi::lua_objlen(state, idx);
            let mut count = 0usize;
            let (mut int_keys, mut str_keys) = (true, true);
            ffi::lua_pushnil(state);
            while ffi::lua_next(state, idx) != 0 {
                count += 1;
                match ffi::lua_type(state, -2) {
                    ffi::LUA_TNUMBER => {
                        let k = ffi::lua_tonumber(state, -2);
                        str_keys = false;
                        if !(k >= 1.0 && k.fract() == 0.0 && k <= n as f64) {
                            int_keys = false;
                        }
                    }
                    ffi::LUA_TSTRING => int_keys = false,
                    _ => {
                        int_keys = false;
                        str_keys = false;
                    }
                }
                ffi::lua_pop(state, 1);
            }
            if int_keys && count == n {
                mp::write_array_header(out, n as u32);
                for i in 1..=n {
                    ffi::lua_rawgeti(state, idx, i as ffi::lua_Integer);
                    let ok = encode_raw(state, -1, out, depth + 1);
                    ffi::lua_pop(state, 1);
                    if !ok {
                        return false;
                    }
                }
            } else if str_keys && n == 0 {
                mp::write_map_header(out, count as u32);
                ffi::lua_pushnil(state);
                while ffi::lua_next(state, idx) != 0 {
                    if !encode_raw(state, -2, out, depth + 1) || !encode_raw(state, -1, out, depth + 1) {
                        ffi::lua_pop(state, 2);
                        return false;
                    }
                    ffi::lua_pop(state, 1);
                }
            } else {
                return false;
            }
        }
        _ => return false,
    }
    true
}

pub fn value_to_msgpack(lua: &Lua, v: &LuaValue) -> LuaResult<Vec<u8>> {
    let mut out = Vec::with_capacity(32);
    if let LuaValue::Table(_) = v {
        let mut fast = true;
        // Safety: exec_raw hands us the state with the table on top of the stack.
        unsafe {
            lua.exec_raw::<()>(v, |state| {
                fast = encode_raw(state, -1, &mut out, 0);
            })?;
        }
        if fast {
            return Ok(out);
        }
        out.clear();
    }
    encode(lua, v, &mut out, 0)?;
    Ok(out)
}

/// A Lua table or tuple as a Tuple; anything else gets Tarantool's error.
pub fn tuple_from_lua(lua: &Lua, v: &LuaValue) -> LuaResult<Tuple> {
    match v {
        LuaValue::UserData(ud) => {
            if let Ok(t) = ud.borrow::<LuaTuple>() {
                return Ok(t.tuple.clone());
            }
            Err(client_error!(ER_TUPLE_NOT_ARRAY).into_lua_err())
        }
        LuaValue::Table(_) => {
            let bytes = value_to_msgpack(lua, v)?;
            Tuple::new(&bytes).map_err(ClientError::into_lua_err)
        }
        _ => Err(client_error!(ER_TUPLE_NOT_ARRAY).into_lua_err()),
    }
}

/// A search key: a table or tuple as is, nil as the empty key, a scalar as a one-part key.
pub fn key_from_lua(lua: &Lua, v: &LuaValue) -> LuaResult<Vec<u8>> {
    match v {
        LuaValue::Nil => Ok(vec![0x90]),
        LuaValue::Table(_) | LuaValue::UserData(_) => {
            let bytes = value_to_msgpack(lua, v)?;
            match mp::read(&bytes, 0) {
                Ok((Mp::Array(_), _)) => Ok(bytes),
                _ => Err(client_error!(ER_TUPLE_NOT_ARRAY).into_lua_err()),
            }
        }
        other => {
            if cdata::is_nil_or_null(lua, other) {
                return Ok(vec![0x90]);
            }
            let mut out = vec![0x91];
            encode(lua, other, &mut out, 0)?;
            Ok(out)
        }
    }
}

// }}}

// {{{ the userdata

/// 1-based position arguments of unpack/totable (negative counts from the end).
fn range(len: u32, from: Option<i64>, to: Option<i64>) -> (u32, u32) {
    let from = from.unwrap_or(1).max(1) as u32;
    let to = to.map(|t| t.max(0) as u32).unwrap_or(len).min(len);
    (from, to)
}

fn fields_as_lua(lua: &Lua, t: &Tuple, from: u32, to: u32) -> LuaResult<Vec<LuaValue>> {
    let mut out = Vec::new();
    for (i, raw) in t.fields().enumerate() {
        let n = i as u32 + 1;
        if n < from {
            continue;
        }
        if n > to {
            break;
        }
        out.push(decode_to_lua(lua, raw)?);
    }
    Ok(out)
}

fn field_by_key(lua: &Lua, this: &LuaTuple, key: &LuaValue) -> LuaResult<LuaValue> {
    let index = match key {
        LuaValue::Integer(i) => Some(*i),
        LuaValue::Number(n) if n.fract() == 0.0 => Some(*n as i64),
        LuaValue::String(s) => {
            let name = s.to_string_lossy();
            match this.format.as_ref().and_then(|f| f.by_name.get(&name)) {
                Some(i) => Some(*i as i64 + 1),
                None => return Ok(LuaValue::Nil),
            }
        }
        _ => None,
    };
    match index {
        Some(i) if i >= 1 => match this.tuple.field(i as u32 - 1) {
            Some(raw) => decode_to_lua(lua, raw),
            None => Ok(LuaValue::Nil),
        },
        _ => Ok(LuaValue::Nil),
    }
}

fn as_table(lua: &Lua, t: &Tuple) -> LuaResult<LuaTable> {
    let out = lua.create_table_with_capacity(t.len() as usize, 0)?;
    for (i, v) in fields_as_lua(lua, t, 1, u32::MAX)?.into_iter().enumerate() {
        out.raw_set(i + 1, v)?;
    }
    Ok(out)
}

fn names_lookup(format: &Option<Rc<TupleFormat>>) -> impl Fn(&str) -> Option<u32> + '_ {
    move |name| format.as_ref().and_then(|f| f.by_name.get(name).copied())
}

/// The 1-based field number from which find/findall start, and the value sought.
fn find_args(args: LuaMultiValue) -> (u32, LuaValue) {
    let v: Vec<LuaValue> = args.into_iter().collect();
    match v.as_slice() {
        [start, value] => {
            let s = match start {
                LuaValue::Integer(i) => *i as u32,
                LuaValue::Number(n) => *n as u32,
                _ => 1,
            };
            (s.max(1), value.clone())
        }
        [value] => (1, value.clone()),
        _ => (1, LuaValue::Nil),
    }
}

fn positions(lua: &Lua, t: &Tuple, start: u32, value: &LuaValue) -> LuaResult<Vec<u32>> {
    let needle = value_to_msgpack(lua, value)?;
    let mut out = Vec::new();
    for (i, raw) in t.fields().enumerate() {
        let n = i as u32 + 1;
        if n >= start && super::field_type::compare_values(raw, &needle).is_eq() {
            out.push(n);
        }
    }
    Ok(out)
}

impl LuaUserData for LuaTuple {
    fn add_methods<M: LuaUserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(LuaMetaMethod::Index, |lua, this, key: LuaValue| {
            field_by_key(lua, this, &key)
        });
        methods.add_meta_method(LuaMetaMethod::Len, |_, this, ()| Ok(this.tuple.len()));
        methods.add_meta_method(LuaMetaMethod::ToString, |lua, this, ()| {
            let v = decode_to_lua(lua, this.tuple.data())?;
            let json: LuaTable = lua.globals().get::<LuaFunction>("require")?.call("json")?;
            let encode: LuaFunction = json.get("encode")?;
            encode.call::<String>(v)
        });
        methods.add_meta_method(LuaMetaMethod::Eq, |_, this, other: LuaAnyUserData| {
            Ok(other
                .borrow::<LuaTuple>()
                .map(|o| o.tuple.data() == this.tuple.data())
                .unwrap_or(false))
        });
        methods.add_meta_method("__serialize", |lua, this, ()| decode_to_lua(lua, this.tuple.data()));
        methods.add_method("unpack", |lua, this, (from, to): (Option<i64>, Option<i64>)| {
            let (from, to) = range(this.tuple.len(), from, to);
            Ok(LuaMultiValue::from_iter(fields_as_lua(lua, &this.tuple, from, to)?))
        });
        methods.add_method("totable", |lua, this, (from, to): (Option<i64>, Option<i64>)| {
            let (from, to) = range(this.tuple.len(), from, to);
            let out = lua.create_table()?;
            for (i, v) in fields_as_lua(lua, &this.tuple, from, to)?.into_iter().enumerate() {
                out.raw_set(i + 1, v)?;
            }
            out.set_metatable(Some(serialize::array_mt(lua)?))?;
            Ok(out)
        });
        methods.add_method("tomap", |lua, this, opts: Option<LuaTable>| {
            let names_only = match &opts {
                Some(o) => o.get::<Option<bool>>("names_only")?.unwrap_or(false),
                None => false,
            };
            let out = lua.create_table()?;
            for (i, raw) in this.tuple.fields().enumerate() {
                let v = decode_to_lua(lua, raw)?;
                if !names_only {
                    out.raw_set(i + 1, v.clone())?;
                }
                if let Some(name) = this.format.as_ref().and_then(|f| f.names.get(i)) {
                    out.raw_set(name.as_str(), v)?;
                }
            }
            Ok(out)
        });
        methods.add_method("bsize", |_, this, ()| Ok(this.tuple.bsize()));
        methods.add_method("update", |lua, this, ops: LuaValue| {
            let ops = value_to_msgpack(lua, &ops)?;
            let bytes = update::update(this.tuple.data(), &ops, 1, &names_lookup(&this.format))
                .map_err(ClientError::into_lua_err)?;
            push_tuple(lua, Tuple::from_trusted(&bytes), this.format.clone())
        });
        methods.add_method("upsert", |lua, this, ops: LuaValue| {
            let ops = value_to_msgpack(lua, &ops)?;
            let (bytes, _) = update::upsert(this.tuple.data(), &ops, 1, &names_lookup(&this.format))
                .map_err(ClientError::into_lua_err)?;
            push_tuple(lua, Tuple::from_trusted(&bytes), this.format.clone())
        });
        methods.add_method("transform", |lua, this, args: LuaMultiValue| {
            let mut it = args.into_iter();
            let len = this.tuple.len() as i64;
            let start = match it.next() {
                Some(LuaValue::Integer(i)) => i,
                Some(LuaValue::Number(n)) => n as i64,
                _ => return Err(LuaError::runtime("tuple.transform(): bad arguments")),
            };
            let count = match it.next() {
                Some(LuaValue::Integer(i)) => i,
                Some(LuaValue::Number(n)) => n as i64,
                _ => return Err(LuaError::runtime("tuple.transform(): bad arguments")),
            };
            let start = if start < 0 { len + start + 1 } else { start };
            if start < 1 || count < 0 {
                return Err(LuaError::runtime("tuple.transform(): bad arguments"));
            }
            let inserted: Vec<LuaValue> = it.collect();
            let mut fields: Vec<&[u8]> = this.tuple.fields().collect();
            let from = ((start - 1) as usize).min(fields.len());
            let to = (from + count as usize).min(fields.len());
            let mut encoded = Vec::new();
            for v in &inserted {
                encoded.push(value_to_msgpack(lua, v)?);
            }
            fields.splice(from..to, encoded.iter().map(|e| e.as_slice()));
            let mut out = Vec::new();
            mp::write_array_header(&mut out, fields.len() as u32);
            for f in fields {
                out.extend_from_slice(f);
            }
            push_tuple(lua, Tuple::from_trusted(&out), this.format.clone())
        });
        methods.add_method("find", |lua, this, args: LuaMultiValue| {
            let (start, value) = find_args(args);
            Ok(positions(lua, &this.tuple, start, &value)?.first().copied())
        });
        methods.add_method("findall", |lua, this, args: LuaMultiValue| {
            let (start, value) = find_args(args);
            lua.create_sequence_from(positions(lua, &this.tuple, start, &value)?)
        });
        for name in ["pairs", "ipairs"] {
            methods.add_method(name, |lua, this, ()| {
                let values = as_table(lua, &this.tuple)?;
                let n = this.tuple.len() as i64;
                let step = lua.create_function(move |_, (t, i): (LuaTable, i64)| {
                    let i = i + 1;
                    if i > n {
                        return Ok((LuaValue::Nil, LuaValue::Nil));
                    }
                    Ok((LuaValue::Integer(i), t.raw_get::<LuaValue>(i)?))
                })?;
                Ok((step, values, 0))
            });
        }
    }
}

// }}}

pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    let m = lua.create_table()?;
    m.set(
        "new",
        lua.create_function(|lua, args: LuaMultiValue| {
            let v = match args.len() {
                1 => match args.front() {
                    Some(LuaValue::Table(_)) | Some(LuaValue::UserData(_)) => {
                        args.front().cloned().unwrap_or(LuaValue::Nil)
                    }
                    Some(other) => LuaValue::Table(lua.create_sequence_from([other.clone()])?),
                    None => LuaValue::Nil,
                },
                0 => LuaValue::Table(lua.create_table()?),
                _ => LuaValue::Table(lua.create_sequence_from(args)?),
            };
            let t = tuple_from_lua(lua, &v)?;
            push_tuple(lua, t, None)
        })?,
    )?;
    m.set(
        "is",
        lua.create_function(|_, v: LuaValue| {
            Ok(matches!(&v, LuaValue::UserData(ud) if ud.borrow::<LuaTuple>().is_ok()))
        })?,
    )?;
    Ok(m)
}
