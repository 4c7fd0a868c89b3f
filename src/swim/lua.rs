//! `require('swim')`: the Rust half of the Lua module.
//!
//! As in Tarantool, the API surface (argument checks, the error texts and their
//! `builtin/swim.lua:NNN:` positions, member/event wrappers, the cfg cache, triggers) is Lua,
//! in `lua/swim.lua`; it calls the functions here the way Tarantool's swim.lua calls its C
//! API. An instance handle is a userdata owning an [`Instance`]; a member handle owns the
//! snapshot cell the driver keeps fresh. Failures come back as `nil, box.error`.

use std::rc::Rc;

use mlua::prelude::*;
use uuid::Uuid;

use super::core::Lifeguard;
use super::crypto::{Algo, Codec, Mode};
use super::member::GcMode;
use super::udp::{CfgOpts, Instance, MemberCell};
use crate::runtime::cdata;
use crate::runtime::errors::{BoxError, ErrorObject};

/// The `ptr` of a Lua swim instance.
pub struct SwimPtr(Rc<Instance>);

impl Drop for SwimPtr {
    // The Lua object was collected: delete the instance as Tarantool's GC hook does (no
    // quit). A no-op after `delete`/`quit`.
    fn drop(&mut self) {
        self.0.delete();
    }
}

impl LuaUserData for SwimPtr {}

/// What the event fiber holds: the instance without ownership, so that a forgotten Lua
/// instance is still collected (and deleted) while its fiber waits.
pub struct SwimWatch(Rc<Instance>);

impl LuaUserData for SwimWatch {}

/// The `ptr` of a Lua member object.
pub struct MemberPtr(Rc<MemberCell>);

impl LuaUserData for MemberPtr {}

/// `true`, or `nil, err` with a box.error object.
fn ret(lua: &Lua, r: Result<(), BoxError>) -> LuaResult<LuaMultiValue> {
    match r {
        Ok(()) => Ok(LuaMultiValue::from_iter([LuaValue::Boolean(true)])),
        Err(e) => Ok(LuaMultiValue::from_iter([
            LuaValue::Nil,
            LuaValue::UserData(lua.create_userdata(ErrorObject(e))?),
        ])),
    }
}

/// A UUID from its 16 host-order bytes (`ffi.string(tt_uuid, 16)`).
fn uuid_arg(s: Option<LuaString>) -> LuaResult<Option<Uuid>> {
    match s {
        None => Ok(None),
        Some(s) => {
            let b = s.as_bytes();
            let bytes: [u8; 16] = b[..]
                .try_into()
                .map_err(|_| LuaError::runtime("swim: a UUID must be 16 bytes"))?;
            Ok(Some(Uuid::from_bytes_le(bytes)))
        }
    }
}

fn inst(ud: &LuaAnyUserData) -> LuaResult<Rc<Instance>> {
    if let Ok(w) = ud.borrow::<SwimWatch>() {
        return Ok(w.0.clone());
    }
    Ok(ud.borrow::<SwimPtr>()?.0.clone())
}

fn cell(ud: &LuaAnyUserData) -> LuaResult<Rc<MemberCell>> {
    Ok(ud.borrow::<MemberPtr>()?.0.clone())
}

/// A generation from a Lua number or a 64-bit cdata (`fiber.time64()`).
fn u64_arg(lua: &Lua, v: &LuaValue) -> LuaResult<u64> {
    match v {
        LuaValue::Integer(i) => Ok(*i as u64),
        LuaValue::Number(n) => Ok(*n as u64),
        other => match cdata::classify(lua, other)? {
            Some(cdata::Cdata::U64(u)) => Ok(u),
            Some(cdata::Cdata::I64(i)) => Ok(i as u64),
            _ => Err(LuaError::runtime("swim.new: generation should be non-negative integer")),
        },
    }
}

/// Returns `(id, member ptr)` for a cell.
fn push_member(lua: &Lua, c: Rc<MemberCell>) -> LuaResult<LuaMultiValue> {
    let id = c.info.borrow().id.0 as f64;
    Ok(LuaMultiValue::from_iter([
        LuaValue::Number(id),
        LuaValue::UserData(lua.create_userdata(MemberPtr(c))?),
    ]))
}

/// `internal.cfg(ptr, uri, uuid, heartbeat_rate, ack_timeout, gc_mode, local_health,
/// dynamic_suspicion, push_news, count_refusals)`.
type CfgArgs = (
    LuaAnyUserData,
    Option<String>,
    Option<LuaString>,
    Option<f64>,
    Option<f64>,
    Option<String>,
    Option<bool>,
    Option<bool>,
    Option<bool>,
    Option<bool>,
);

fn internal(lua: &Lua) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    let f = |name: &str, func: LuaFunction| t.raw_set(name, func);

    f(
        "new",
        lua.create_function(|lua, generation: LuaValue| {
            let g = u64_arg(lua, &generation)?;
            lua.create_userdata(SwimPtr(Instance::new(lua, g)))
        })?,
    )?;
    f(
        "cfg",
        lua.create_function(
            |lua, (ud, uri, uuid, hb, ack, gc, health, suspicion, push_news, count_refusals): CfgArgs| {
                let opts = CfgOpts {
                    uri,
                    uuid: uuid_arg(uuid)?,
                    heartbeat_rate: hb,
                    ack_timeout: ack,
                    gc_mode: gc.map(|g| if g == "off" { GcMode::Off } else { GcMode::On }),
                    lifeguard: health
                        .zip(suspicion)
                        .map(|(local_health, dynamic_suspicion)| Lifeguard {
                            local_health,
                            dynamic_suspicion,
                        }),
                    push_news,
                    count_refusals,
                };
                ret(lua, inst(&ud)?.cfg(opts))
            },
        )?,
    )?;
    f(
        "is_configured",
        lua.create_function(|_, ud: LuaAnyUserData| Ok(inst(&ud)?.is_configured()))?,
    )?;
    f(
        "size",
        lua.create_function(|_, ud: LuaAnyUserData| Ok(inst(&ud)?.size()))?,
    )?;
    f(
        "watch",
        lua.create_function(|_, ud: LuaAnyUserData| Ok(SwimWatch(inst(&ud)?)))?,
    )?;
    f("fd", lua.create_function(|_, ud: LuaAnyUserData| Ok(inst(&ud)?.fd()))?)?;
    f(
        "member",
        lua.create_function(|lua, (ud, uuid): (LuaAnyUserData, Option<LuaString>)| {
            match inst(&ud)?.member(uuid_arg(uuid)?) {
                Some(c) => push_member(lua, c),
                None => Ok(LuaMultiValue::new()),
            }
        })?,
    )?;
    f(
        "uuids",
        lua.create_function(|lua, ud: LuaAnyUserData| {
            let list = inst(&ud)?.uuids();
            lua.create_sequence_from(
                list.into_iter()
                    .map(|u| lua.create_string(u.to_bytes_le()))
                    .collect::<LuaResult<Vec<_>>>()?,
            )
        })?,
    )?;
    f(
        "add_member",
        lua.create_function(
            |lua, (ud, uri, uuid): (LuaAnyUserData, Option<String>, Option<LuaString>)| {
                let (Some(uri), Some(uuid)) = (uri, uuid_arg(uuid)?) else {
                    return ret(
                        lua,
                        Err(BoxError::new(
                            "SwimError",
                            0,
                            "swim.add_member: URI and UUID are mandatory",
                        )),
                    );
                };
                ret(lua, inst(&ud)?.add_member(&uri, uuid))
            },
        )?,
    )?;
    f(
        "remove_member",
        lua.create_function(|lua, (ud, uuid): (LuaAnyUserData, Option<LuaString>)| {
            let Some(uuid) = uuid_arg(uuid)? else {
                return ret(
                    lua,
                    Err(BoxError::new("SwimError", 0, "swim.remove_member: UUID is mandatory")),
                );
            };
            ret(lua, inst(&ud)?.remove_member(uuid))
        })?,
    )?;
    f(
        "probe_member",
        lua.create_function(|lua, (ud, uri): (LuaAnyUserData, Option<String>)| {
            let Some(uri) = uri else {
                return ret(
                    lua,
                    Err(BoxError::new("SwimError", 0, "swim.probe_member: URI is mandatory")),
                );
            };
            ret(lua, inst(&ud)?.probe_member(&uri))
        })?,
    )?;
    f(
        "broadcast",
        lua.create_function(|lua, (ud, port): (LuaAnyUserData, f64)| ret(lua, inst(&ud)?.broadcast(port as i64)))?,
    )?;
    f(
        "set_payload",
        lua.create_function(|lua, (ud, data, size): (LuaAnyUserData, Option<LuaString>, f64)| {
            if size < 0.0 || size > super::proto::MAX_PAYLOAD_SIZE as f64 {
                return ret(
                    lua,
                    Err(BoxError::new("IllegalParams", 0, "Payload should be <= 1200 and >= 0")),
                );
            }
            let bytes = data.map(|d| d.as_bytes().to_vec()).unwrap_or_default();
            let n = (size as usize).min(bytes.len());
            ret(lua, inst(&ud)?.set_payload(&bytes[..n]))
        })?,
    )?;
    f(
        "set_codec",
        lua.create_function(
            |lua, (ud, algo, mode, key): (LuaAnyUserData, String, String, Option<LuaString>)| {
                let algo = Algo::parse(&algo).ok_or_else(|| LuaError::runtime("unknown crypto algorithm"))?;
                let mode = Mode::parse(&mode).ok_or_else(|| LuaError::runtime("unknown crypto algorithm mode"))?;
                let key = key.map(|k| k.as_bytes().to_vec()).unwrap_or_default();
                let r = Codec::new(algo, mode, &key)
                    .map(|c| inst(&ud).map(|i| i.set_codec(c)))
                    .map_err(|e| BoxError::new("CryptoError", 0, e.to_string()));
                match r {
                    Ok(r) => {
                        r?;
                        ret(lua, Ok(()))
                    }
                    Err(e) => ret(lua, Err(e)),
                }
            },
        )?,
    )?;
    f(
        "set_collect",
        lua.create_function(|_, (ud, on): (LuaAnyUserData, bool)| {
            inst(&ud)?.set_collect(on);
            Ok(())
        })?,
    )?;
    f(
        "quit",
        lua.create_function(|_, ud: LuaAnyUserData| {
            inst(&ud)?.quit();
            Ok(())
        })?,
    )?;
    f(
        "delete",
        lua.create_function(|_, ud: LuaAnyUserData| {
            inst(&ud)?.delete();
            Ok(())
        })?,
    )?;
    // The event fiber's wait: a list of `{member id, mask, member ptr}`, or nil once the
    // instance is gone. Only this fiber ever runs Lua for the instance.
    f(
        "wait_events",
        lua.create_async_function(|lua, ud: LuaAnyUserData| async move {
            let i = inst(&ud)?;
            drop(ud);
            loop {
                match i.take_events() {
                    None => return Ok(LuaValue::Nil),
                    Some(evs) if !evs.is_empty() => {
                        let out = lua.create_table_with_capacity(evs.len(), 0)?;
                        for (e, c) in evs {
                            let rec = lua.create_table_with_capacity(3, 0)?;
                            rec.raw_set(1, e.id.0 as f64)?;
                            rec.raw_set(2, e.mask)?;
                            rec.raw_set(3, MemberPtr(c))?;
                            out.raw_push(rec)?;
                        }
                        return Ok(LuaValue::Table(out));
                    }
                    Some(_) => {}
                }
                crate::runtime::fiber::cancellable(&lua, i.events_ready()).await?;
            }
        })?,
    )?;
    f(
        "stat",
        lua.create_function(|lua, ud: LuaAnyUserData| {
            let Some((s, d)) = inst(&ud)?.stats() else {
                return Ok(LuaValue::Nil);
            };
            let t = lua.create_table()?;
            let pairs: &[(&str, u64)] = &[
                ("packets_sent", s.packets_sent),
                ("bytes_sent", s.bytes_sent),
                ("packets_received", s.packets_received),
                ("bytes_received", s.bytes_received),
                ("pings_sent", s.pings_sent),
                ("acks_sent", s.acks_sent),
                ("indirect_pings_sent", s.indirect_pings_sent),
                ("probes_sent", s.probes_sent),
                ("quits_sent", s.quits_sent),
                ("pushes_sent", s.pushes_sent),
                ("forwarded", s.forwarded),
                ("dropped_decode", s.dropped_decode),
                ("dropped_crypto", s.dropped_crypto),
                ("dropped_stale", s.dropped_stale),
                ("dropped_from_self", s.dropped_from_self),
                ("dropped_after_quit", s.dropped_after_quit),
                ("dropped_nil_sender", s.dropped_nil_sender),
                ("dropped_bad_records", s.dropped_bad_records),
                ("acks_coalesced", s.acks_coalesced),
                ("probes_coalesced", s.probes_coalesced),
                ("probes_retried", s.probes_retried),
                ("suspicions", s.suspicions),
                ("deaths", s.deaths),
                ("refutations", s.refutations),
                ("pings_refused", s.pings_refused),
                ("dropped_oversized", d.dropped_oversized),
                ("send_errors", d.send_errors),
                ("recv_errors", d.recv_errors),
                ("refusals", d.refusals),
            ];
            for &(k, v) in pairs {
                t.raw_set(k, v as f64)?;
            }
            Ok(LuaValue::Table(t))
        })?,
    )?;

    // Member handles.
    f(
        "member_status",
        lua.create_function(|_, ud: LuaAnyUserData| Ok(cell(&ud)?.status().name()))?,
    )?;
    f(
        "member_uri",
        lua.create_function(|_, ud: LuaAnyUserData| Ok(cell(&ud)?.info.borrow().addr.to_string()))?,
    )?;
    f(
        "member_uuid",
        lua.create_function(|lua, ud: LuaAnyUserData| lua.create_string(cell(&ud)?.info.borrow().uuid.to_bytes_le()))?,
    )?;
    f(
        "member_incarnation",
        lua.create_function(|lua, ud: LuaAnyUserData| {
            let inc = cell(&ud)?.incarnation();
            Ok((
                cdata::push_u64(lua, inc.generation)?,
                cdata::push_u64(lua, inc.version)?,
            ))
        })?,
    )?;
    // Payload bytes, whether they are up to date, and the incarnation as two numbers-ish
    // keys for the decode cache.
    f(
        "member_payload",
        lua.create_function(|lua, ud: LuaAnyUserData| {
            let c = cell(&ud)?;
            let info = c.info.borrow();
            Ok((lua.create_string(&info.payload)?, info.payload_up_to_date))
        })?,
    )?;
    f(
        "member_is_dropped",
        lua.create_function(|_, ud: LuaAnyUserData| Ok(cell(&ud)?.dropped.get()))?,
    )?;
    f(
        "member_id",
        lua.create_function(|_, ud: LuaAnyUserData| Ok(cell(&ud)?.info.borrow().id.0 as f64))?,
    )?;
    f(
        "is_instance",
        lua.create_function(|_, v: LuaValue| Ok(matches!(v, LuaValue::UserData(ud) if ud.is::<SwimPtr>())))?,
    )?;
    f(
        "is_member",
        lua.create_function(|_, v: LuaValue| Ok(matches!(v, LuaValue::UserData(ud) if ud.is::<MemberPtr>())))?,
    )?;
    Ok(t)
}

/// `require('swim')`.
pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    let internal = internal(lua)?;
    lua.load(include_str!("../../lua/swim.lua"))
        .set_name("@builtin/swim.lua")
        .call(internal)
}
