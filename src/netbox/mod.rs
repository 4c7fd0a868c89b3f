//! `net.box`, Tarantool 2.6's IPROTO client (spec/box.md §1.9–1.10).
//!
//! The work is split as in later Tarantool versions, which moved net.box's I/O to C:
//!
//! * [`transport`] owns the socket: a reader task that frames and matches responses to the
//!   requests waiting for them, a writer task that sends queued requests in batches, and the
//!   handshake steps (greeting, AUTH, schema fetch). It knows no Lua.
//! * This file is `require('net.box.lib')`: the transport and its in-flight requests as Lua
//!   userdata, with Lua values encoded into requests (through [`crate::iproto::request`])
//!   and answers decoded into Lua values (tuples as `box.tuple`, with field names from the
//!   space format).
//! * lua/net_box.lua is the API users see: connection objects, the state machine run by a
//!   worker fiber (`initial → connecting → auth → fetch_schema → active`, `error`,
//!   `error_reconnect`, `closed`), triggers, space and index objects, futures, and
//!   `net.box.self`. States, option handling and error texts are 2.6's, checked against
//!   the real binary (tests/netbox_tarantool.rs).
//!
//! A call yields only its fiber: the fiber waits on its own request's notifier, so many
//! fibers can have requests in flight on one connection.

pub mod transport;
pub mod uri;

use std::rc::Rc;

use mlua::prelude::*;

use crate::box_::errcode::{ER_MORE_THAN_ONE_TUPLE, ER_PROC_LUA};
use crate::box_::lua_tuple::{self, TupleFormat};
use crate::box_::mp::{self, Mp};
use crate::box_::tuple::Tuple;
use crate::iproto::codec::RequestType;
use crate::iproto::request::{self, Select};
use crate::runtime::errors::{BoxError, ErrorObject};
use crate::runtime::fiber;
use transport::{Decode, Outcome, Pending, Transport};

/// A space format as net.box keeps it (`space._format_cdata` in 2.6): the field names that
/// tuples of the space answer to.
struct Format(Rc<TupleFormat>);

impl LuaUserData for Format {}

/// A request in flight, as the Lua future and the synchronous calls see it.
struct Request(Rc<Pending>);

fn format_arg(v: Option<LuaAnyUserData>) -> Option<Rc<TupleFormat>> {
    v.and_then(|ud| ud.borrow::<Format>().ok().map(|f| f.0.clone()))
}

/// Decodes one MessagePack value the way tuple fields and msgpack.decode come out.
fn decode_value(lua: &Lua, raw: &[u8]) -> LuaResult<LuaValue> {
    if raw.is_empty() {
        return Ok(LuaValue::Nil);
    }
    lua_tuple::decode_to_lua(lua, raw)
}

fn malformed() -> LuaError {
    LuaError::runtime("net.box: invalid MsgPack in a response")
}

/// The items of a MessagePack array, as byte slices.
fn array_items(data: &[u8]) -> LuaResult<Vec<&[u8]>> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let Ok((Mp::Array(n), mut pos)) = mp::read(data, 0) else {
        return Err(malformed());
    };
    let mut items = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let end = mp::skip(data, pos).map_err(|_| malformed())?;
        items.push(&data[pos..end]);
        pos = end;
    }
    Ok(items)
}

fn push_tuple(lua: &Lua, raw: &[u8], format: &Option<Rc<TupleFormat>>) -> LuaResult<LuaValue> {
    let tuple = Tuple::new(raw).map_err(LuaError::from)?;
    lua_tuple::push_tuple(lua, tuple, format.clone())
}

/// A successful answer as the caller gets it, per the request's [`Decode`].
fn decode_answer(lua: &Lua, p: &Pending, data: &[u8]) -> LuaResult<Result<LuaValue, BoxError>> {
    Ok(Ok(match p.decode {
        Decode::Nil => LuaValue::Nil,
        Decode::Data => decode_value(lua, data)?,
        Decode::Tuples => {
            let items = array_items(data)?;
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, raw) in items.iter().enumerate() {
                t.raw_set(i + 1, push_tuple(lua, raw, &p.format)?)?;
            }
            LuaValue::Table(t)
        }
        Decode::FirstTuple | Decode::Get => {
            let items = array_items(data)?;
            if p.decode == Decode::Get && items.len() > 1 {
                // 2.6 sets only the code here, so the message is empty.
                return Ok(Err(BoxError::new("ClientError", ER_MORE_THAN_ONE_TUPLE, "")));
            }
            match items.first() {
                Some(raw) => push_tuple(lua, raw, &p.format)?,
                None => LuaValue::Nil,
            }
        }
        Decode::First => match array_items(data)?.first() {
            Some(raw) => decode_value(lua, raw)?,
            None => LuaValue::Nil,
        },
    }))
}

impl LuaUserData for Request {
    fn add_methods<M: LuaUserDataMethods<Self>>(m: &mut M) {
        m.add_method("is_ready", |_, this, ()| Ok(this.0.is_ready()));
        // result() -> nil (not ready) | true, value | false, error
        m.add_method("result", |lua, this, ()| {
            let answer = match this.0.outcome() {
                Outcome::Waiting => return Ok(LuaMultiValue::new()),
                Outcome::Failed(e) => Err(e),
                Outcome::Done { data, .. } => decode_answer(lua, &this.0, &data)?,
            };
            match answer {
                Ok(v) => (true, v).into_lua_multi(lua),
                Err(e) => (false, ErrorObject(e)).into_lua_multi(lua),
            }
        });
        // wait(timeout, seen) -> true when answered or past `seen` pushes, false on timeout.
        m.add_async_method("wait", |lua, this, (timeout, seen): (f64, usize)| {
            let p = this.0.clone();
            drop(this);
            async move {
                let limit = fiber::duration_from_secs(timeout.max(0.0));
                let done = fiber::cancellable(&lua, tokio::time::timeout(limit, p.changed(seen))).await?;
                Ok(done.is_ok())
            }
        });
        m.add_method("push_count", |_, this, ()| Ok(this.0.push_count()));
        // push(i) -> the i-th pushed value (1-based), from {DATA: [value]}.
        m.add_method("push", |lua, this, i: usize| {
            let Some(data) = i.checked_sub(1).and_then(|i| this.0.push_data(i)) else {
                return Ok(LuaValue::Nil);
            };
            match array_items(&data)?.first() {
                Some(raw) => decode_value(lua, raw),
                None => Ok(LuaValue::Nil),
            }
        });
        m.add_method("discard", |_, this, ()| {
            this.0
                .discard(BoxError::new("ClientError", ER_PROC_LUA, "Response is discarded"));
            Ok(())
        });
    }
}

fn tuple_bytes(lua: &Lua, v: &LuaValue) -> LuaResult<Vec<u8>> {
    Ok(lua_tuple::tuple_from_lua(lua, v)?.data().to_vec())
}

fn key_bytes(lua: &Lua, v: &LuaValue) -> LuaResult<Vec<u8>> {
    lua_tuple::key_from_lua(lua, v)
}

fn lua_str(s: &LuaString) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// Numbers from Lua as `lua_tonumber` + a C cast to `uint32_t` read them in net_box.c.
fn as_u32(v: f64) -> u32 {
    (v as i64) as u32
}

type SelectArgs = (
    f64,
    f64,
    f64,
    f64,
    f64,
    LuaValue,
    Option<LuaAnyUserData>,
    Option<String>,
);

impl LuaUserData for Transport {
    fn add_methods<M: LuaUserDataMethods<Self>>(m: &mut M) {
        // connect(host, port, timeout) -> greeting table | nil, error text
        m.add_async_method(
            "connect",
            |lua, this, (host, port, timeout): (Option<String>, String, f64)| {
                let h = this.handle();
                drop(this);
                async move {
                    let limit = fiber::duration_from_secs(timeout.max(0.0));
                    let r = fiber::cancellable(&lua, h.connect(host.as_deref(), &port, limit)).await?;
                    match r {
                        Ok(g) => {
                            let t = lua.create_table()?;
                            t.set("version_id", g.version_id)?;
                            t.set("version", g.version)?;
                            t.set("protocol", g.protocol)?;
                            t.set("uuid", g.uuid.to_string())?;
                            (t,).into_lua_multi(&lua)
                        }
                        Err(e) => (LuaValue::Nil, e).into_lua_multi(&lua),
                    }
                }
            },
        );
        m.add_method("disconnect", |_, this, ()| {
            this.handle().disconnect();
            Ok(())
        });
        m.add_method("abandon", |_, this, ()| {
            this.handle().abandon();
            Ok(())
        });
        // auth(user, password) -> true | nil, error text
        m.add_async_method("auth", |lua, this, (user, password): (LuaString, LuaString)| {
            let h = this.handle();
            drop(this);
            async move {
                let (user, password) = (lua_str(&user), lua_str(&password));
                match fiber::cancellable(&lua, h.auth(&user, &password)).await? {
                    Ok(()) => (true,).into_lua_multi(&lua),
                    Err(e) => (LuaValue::Nil, e).into_lua_multi(&lua),
                }
            }
        });
        // fetch_schema(peer_version_id) -> version, spaces, indexes, collations | nil, error
        m.add_async_method("fetch_schema", |lua, this, peer_version_id: u32| {
            let h = this.handle();
            drop(this);
            async move {
                match fiber::cancellable(&lua, h.fetch_schema(peer_version_id)).await? {
                    Ok(s) => {
                        let collations = match &s.collations {
                            Some(c) => decode_value(&lua, c)?,
                            None => LuaValue::Nil,
                        };
                        (
                            s.version,
                            decode_value(&lua, &s.spaces)?,
                            decode_value(&lua, &s.indexes)?,
                            collations,
                        )
                            .into_lua_multi(&lua)
                    }
                    Err(e) => (LuaValue::Nil, e).into_lua_multi(&lua),
                }
            }
        });
        // next_event() -> 'schema' | 'error', text
        m.add_async_method("next_event", |lua, this, ()| {
            let h = this.handle();
            drop(this);
            async move {
                match fiber::cancellable(&lua, h.next_event()).await? {
                    transport::Event::SchemaChanged => ("schema",).into_lua_multi(&lua),
                    transport::Event::Broken(why) => ("error", why).into_lua_multi(&lua),
                }
            }
        });
        m.add_method("watch_schema", |_, this, version: Option<u64>| {
            this.handle().watch_schema(version);
            Ok(())
        });
        m.add_method("schema_outdated", |_, this, ()| Ok(this.handle().schema_outdated()));
        m.add_method("fail_all", |_, this, (code, message): (u32, String)| {
            this.handle().fail_all(&BoxError::new("ClientError", code, message));
            Ok(())
        });

        m.add_method("ping", |_, this, ()| {
            Ok(Request(this.handle().send(Decode::Nil, None, request::ping)))
        });
        // call(name, args, is_call_16)
        m.add_method(
            "call",
            |lua, this, (name, args, call_16): (LuaString, LuaValue, Option<bool>)| {
                let args = tuple_bytes(lua, &args)?;
                let kind = if call_16 == Some(true) {
                    RequestType::Call16
                } else {
                    RequestType::Call
                };
                let decode = if call_16 == Some(true) {
                    Decode::Tuples
                } else {
                    Decode::Data
                };
                let name = lua_str(&name);
                Ok(Request(this.handle().send(decode, None, |out, sync| {
                    request::call(out, sync, kind, &name, &args)
                })))
            },
        );
        m.add_method("eval", |lua, this, (expr, args): (LuaString, LuaValue)| {
            let args = tuple_bytes(lua, &args)?;
            let expr = lua_str(&expr);
            Ok(Request(this.handle().send(Decode::Data, None, |out, sync| {
                request::eval(out, sync, &expr, &args)
            })))
        });
        // count(expr, args): index:count is an eval whose first value is the answer.
        m.add_method("count", |lua, this, (name, args): (LuaString, LuaValue)| {
            let args = tuple_bytes(lua, &args)?;
            let name = lua_str(&name);
            Ok(Request(this.handle().send(Decode::First, None, |out, sync| {
                request::call(out, sync, RequestType::Call, &name, &args)
            })))
        });
        // select(space_id, index_id, iterator, offset, limit, key, format, kind)
        // kind: nil (a table of tuples), 'get', or 'first' (min/max).
        m.add_method(
            "select",
            |lua, this, (space_id, index_id, iterator, offset, limit, key, format, kind): SelectArgs| {
                let key = key_bytes(lua, &key)?;
                let decode = match kind.as_deref() {
                    Some("get") => Decode::Get,
                    Some("first") => Decode::FirstTuple,
                    _ => Decode::Tuples,
                };
                let s = Select {
                    space_id: as_u32(space_id),
                    index_id: as_u32(index_id),
                    iterator: as_u32(iterator),
                    offset: as_u32(offset),
                    limit: as_u32(limit),
                };
                Ok(Request(this.handle().send(decode, format_arg(format), |out, sync| {
                    request::select(out, sync, &s, &key)
                })))
            },
        );
        for (name, kind) in [("insert", RequestType::Insert), ("replace", RequestType::Replace)] {
            m.add_method(
                name,
                move |lua, this, (space_id, tuple, format): (f64, LuaValue, Option<LuaAnyUserData>)| {
                    let tuple = tuple_bytes(lua, &tuple)?;
                    Ok(Request(this.handle().send(
                        Decode::FirstTuple,
                        format_arg(format),
                        |out, sync| request::insert(out, sync, kind, as_u32(space_id), &tuple),
                    )))
                },
            );
        }
        m.add_method(
            "delete",
            |lua, this, (space_id, index_id, key, format): (f64, f64, LuaValue, Option<LuaAnyUserData>)| {
                let key = key_bytes(lua, &key)?;
                Ok(Request(this.handle().send(
                    Decode::FirstTuple,
                    format_arg(format),
                    |out, sync| request::delete(out, sync, as_u32(space_id), as_u32(index_id), &key),
                )))
            },
        );
        m.add_method(
            "update",
            |lua, this, (space_id, index_id, key, ops, format): (f64, f64, LuaValue, LuaValue, Option<LuaAnyUserData>)| {
                let ops = tuple_bytes(lua, &ops)?;
                let key = key_bytes(lua, &key)?;
                Ok(Request(this.handle().send(
                    Decode::FirstTuple,
                    format_arg(format),
                    |out, sync| request::update(out, sync, as_u32(space_id), as_u32(index_id), &key, &ops),
                )))
            },
        );
        m.add_method(
            "upsert",
            |lua, this, (space_id, tuple, ops): (f64, LuaValue, LuaValue)| {
                let ops = tuple_bytes(lua, &ops)?;
                let tuple = tuple_bytes(lua, &tuple)?;
                Ok(Request(this.handle().send(Decode::Nil, None, |out, sync| {
                    request::upsert(out, sync, as_u32(space_id), &tuple, &ops)
                })))
            },
        );
    }
}

/// `new_format(format)`: field names from a `_vspace` format array (`{{name = ...}, ...}`).
fn new_format(_: &Lua, format: LuaValue) -> LuaResult<Format> {
    let mut names = Vec::new();
    if let LuaValue::Table(t) = format {
        for field in t.sequence_values::<LuaValue>() {
            let name = match field? {
                LuaValue::Table(f) => f.get::<Option<String>>("name")?,
                _ => None,
            };
            match name {
                Some(n) => names.push(n),
                None => break,
            }
        }
    }
    Ok(Format(Rc::new(TupleFormat::new(names))))
}

/// `parse_uri(text)` -> {host, service, login, password} | nil
fn parse_uri(lua: &Lua, text: String) -> LuaResult<LuaValue> {
    let Some(u) = uri::parse(&text) else {
        return Ok(LuaValue::Nil);
    };
    let t = lua.create_table()?;
    t.set("host", u.host)?;
    t.set("service", u.service)?;
    t.set("login", u.login)?;
    t.set("password", u.password)?;
    Ok(LuaValue::Table(t))
}

const NET_BOX_LUA: &str = include_str!("../../lua/net_box.lua");

/// `require('net.box')`: lua/net_box.lua, under the chunk name Tarantool's error positions
/// show (`builtin/box/net_box.lua:N:`).
pub fn lua_module(lua: &Lua) -> LuaResult<LuaTable> {
    lua.load(NET_BOX_LUA).set_name("@builtin/box/net_box.lua").call(())
}

/// `require('net.box.lib')`.
pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    let m = lua.create_table()?;
    m.set("new_transport", lua.create_function(|_, ()| Ok(Transport::new()))?)?;
    m.set("new_format", lua.create_function(new_format)?)?;
    m.set("parse_uri", lua.create_function(parse_uri)?)?;
    Ok(m)
}
