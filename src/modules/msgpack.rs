//! `msgpack`: Tarantool's MsgPack module (`encode`, `decode`, `decode_unchecked`, `NULL`,
//! `cfg`, `new`, `array_mt`, `map_mt`).
//!
//! Encoding goes through the shared walker, so a Lua number that is integral is written as a
//! MsgPack integer as Tarantool does; decoding marks tables with `array_mt`/`map_mt`, which
//! is what makes them print in flow style in the console.

use mlua::prelude::*;

use crate::runtime::cdata;
use crate::serialize::{self, Cfg, Format, Node, Walker};

fn write_node(out: &mut Vec<u8>, node: &Node) -> Result<(), rmp::encode::ValueWriteError> {
    use rmp::encode::*;
    match node {
        Node::Null | Node::Nil | Node::Alias(_) => write_nil(out).map_err(ValueWriteError::InvalidMarkerWrite)?,
        Node::Bool(b) => write_bool(out, *b).map_err(ValueWriteError::InvalidMarkerWrite)?,
        Node::Int(i) if *i >= 0 => {
            write_uint(out, *i as u64)?;
        }
        Node::Int(i) => {
            write_sint(out, *i)?;
        }
        Node::UInt(u) => {
            write_uint(out, *u)?;
        }
        Node::Num(n) => {
            if n.fract() == 0.0 && (0.0..18446744073709551616.0).contains(n) {
                write_uint(out, *n as u64)?;
            } else if n.fract() == 0.0 && (-9223372036854775808.0..0.0).contains(n) {
                write_sint(out, *n as i64)?;
            } else {
                write_f64(out, *n)?;
            }
        }
        Node::Str(s) => {
            write_str_len(out, s.len() as u32)?;
            out.extend_from_slice(s);
        }
        Node::Seq { items, .. } => {
            write_array_len(out, items.len() as u32)?;
            for item in items {
                write_node(out, item)?;
            }
        }
        Node::Map { entries, .. } => {
            write_map_len(out, entries.len() as u32)?;
            for (k, v) in entries {
                write_node(out, k)?;
                write_node(out, v)?;
            }
        }
    }
    Ok(())
}

/// Encodes a Lua value as MsgPack with the given options.
pub fn encode_value(lua: &Lua, value: &LuaValue, cfg: &Cfg) -> LuaResult<Vec<u8>> {
    // A tuple is its own MessagePack, as Tarantool writes it (nested ones go through
    // their `__serialize`).
    if let Some((t, _)) = crate::box_::lua_tuple::tuple_of(lua, value) {
        return Ok(t.data().to_vec());
    }
    let node = Walker::new(lua, cfg, Format::MsgPack).walk(value)?;
    let mut out = Vec::new();
    write_node(&mut out, &node).map_err(|e| LuaError::runtime(format!("msgpack.encode: {e}")))?;
    Ok(out)
}

fn to_lua(lua: &Lua, v: rmpv::Value, cfg: &Cfg) -> LuaResult<LuaValue> {
    use rmpv::Value;
    Ok(match v {
        Value::Nil => cdata::null(lua)?,
        Value::Boolean(b) => LuaValue::Boolean(b),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => serialize::push_u64(lua, u)?,
            (None, Some(s)) => serialize::push_i64(lua, s)?,
            _ => LuaValue::Nil,
        },
        Value::F32(f) => LuaValue::Number(f as f64),
        Value::F64(f) => LuaValue::Number(f),
        Value::String(s) => LuaValue::String(lua.create_string(s.as_bytes())?),
        Value::Binary(b) => LuaValue::String(lua.create_string(&b)?),
        Value::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.into_iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item, cfg)?)?;
            }
            if cfg.decode_save_metatables {
                t.set_metatable(Some(serialize::array_mt(lua)?))?;
            }
            LuaValue::Table(t)
        }
        Value::Map(entries) => {
            let t = lua.create_table_with_capacity(0, entries.len())?;
            for (k, v) in entries {
                let k = to_lua(lua, k, cfg)?;
                let v = to_lua(lua, v, cfg)?;
                if !k.is_nil() {
                    t.raw_set(k, v)?;
                }
            }
            if cfg.decode_save_metatables {
                t.set_metatable(Some(serialize::map_mt(lua)?))?;
            }
            LuaValue::Table(t)
        }
        // Tarantool's extensions (decimal, uuid, error) have no Lua type here yet.
        Value::Ext(kind, _) => return Err(LuaError::runtime(format!("Unsuported MsgPack extension type: {kind}"))),
    })
}

/// Finds a 0xc1 byte in value position, which rmpv would read as nil but Tarantool
/// rejects; returns where the value at `pos` ends, or `Err(true)` for such a byte.
fn find_reserved(data: &[u8], pos: usize) -> Result<usize, bool> {
    use rmp::Marker;
    let byte = |at: usize| data.get(at).copied().ok_or(false);
    let be = |at: usize, n: usize| -> Result<usize, bool> {
        let bytes = data.get(at..at + n).ok_or(false)?;
        Ok(bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize))
    };
    let marker = Marker::from_u8(byte(pos)?);
    let p = pos + 1;
    let skip_items = |mut at: usize, count: usize| -> Result<usize, bool> {
        for _ in 0..count {
            at = find_reserved(data, at)?;
        }
        Ok(at)
    };
    Ok(match marker {
        Marker::Reserved => return Err(true),
        Marker::FixArray(n) => skip_items(p, n as usize)?,
        Marker::Array16 => skip_items(p + 2, be(p, 2)?)?,
        Marker::Array32 => skip_items(p + 4, be(p, 4)?)?,
        Marker::FixMap(n) => skip_items(p, 2 * n as usize)?,
        Marker::Map16 => skip_items(p + 2, 2 * be(p, 2)?)?,
        Marker::Map32 => skip_items(p + 4, 2 * be(p, 4)?)?,
        // Scalars are checked by rmpv; only their length matters here.
        _ => {
            let mut rest = data.get(pos..).ok_or(false)?;
            let before = rest.len();
            rmpv::decode::read_value(&mut rest).map_err(|_| false)?;
            pos + before - rest.len()
        }
    })
}

/// Decodes one value at byte `start`; returns it and the number of bytes it took.
pub fn decode_at(lua: &Lua, data: &[u8], start: usize, cfg: &Cfg) -> LuaResult<(LuaValue, usize)> {
    let invalid = || LuaError::runtime("msgpack.decode: invalid MsgPack");
    if find_reserved(data, start) == Err(true) {
        // Tarantool's decoder takes 0xc1 for an extension of type 0.
        return Err(LuaError::runtime("Unsuported MsgPack extension type: 0"));
    }
    let mut rest = data.get(start..).ok_or_else(invalid)?;
    let before = rest.len();
    let value = rmpv::decode::read_value(&mut rest).map_err(|_| invalid())?;
    let used = before - rest.len();
    Ok((to_lua(lua, value, cfg)?, used))
}

fn decode_args(lua: &Lua, cfg: &LuaTable, args: LuaMultiValue) -> LuaResult<(LuaValue, usize)> {
    let data = match args.front() {
        Some(LuaValue::String(s)) => s.as_bytes().to_vec(),
        _ => return Err(LuaError::runtime("msgpack.decode: a Lua string or 'char *' expected")),
    };
    let offset = match args.get(1) {
        None | Some(LuaValue::Nil) => None,
        Some(LuaValue::Integer(i)) => Some(*i),
        Some(LuaValue::Number(n)) => Some(*n as i64),
        Some(other) => {
            return Err(LuaError::runtime(format!(
                "bad argument #2 to '?' (number expected, got {})",
                serialize::lua_type_name(other)
            )))
        }
    };
    if let Some(o) = offset {
        if o < 1 || o as usize > data.len() {
            return Err(LuaError::runtime("msgpack.decode: offset is out of bounds"));
        }
    }
    let start = offset.map_or(0, |o| o as usize - 1);
    let cfg = Cfg::from_table(cfg)?;
    let _ = lua;
    let (v, used) = decode_at(lua, &data, start, &cfg)?;
    Ok((v, start + used + 1))
}

fn build(lua: &Lua) -> LuaResult<LuaTable> {
    let m = lua.create_table()?;
    let cfg = serialize::new_cfg_table(lua)?;
    let c = cfg.clone();
    m.set(
        "encode",
        lua.create_function(move |lua, args: LuaMultiValue| {
            match args.len() {
                0 => return Err(LuaError::runtime("msgpack.encode: a Lua object expected")),
                1 => {}
                _ => {
                    return Err(LuaError::runtime(
                        "msgpack.encode: argument 2 must be of type 'struct ibuf'",
                    ))
                }
            }
            let cfg = Cfg::from_table(&c)?;
            let out = encode_value(lua, &args[0], &cfg)?;
            lua.create_string(&out)
        })?,
    )?;
    let c = cfg.clone();
    m.set(
        "decode",
        lua.create_function(move |lua, args: LuaMultiValue| decode_args(lua, &c, args))?,
    )?;
    let c = cfg.clone();
    m.set(
        "decode_unchecked",
        lua.create_function(move |lua, args: LuaMultiValue| decode_args(lua, &c, args))?,
    )?;
    serialize::install_common(lua, &m, cfg, build)?;
    Ok(m)
}

/// Builds the `msgpack` module table.
pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    build(lua)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lua() -> Lua {
        cdata::test_lua()
    }

    fn hex(lua: &Lua, src: &str) -> String {
        let v: LuaValue = lua.load(src).eval().unwrap();
        encode_value(lua, &v, &Cfg::default())
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn encodes_numbers_as_tarantool() {
        let lua = lua();
        assert_eq!(hex(&lua, "return 1.5"), "cb3ff8000000000000");
        assert_eq!(hex(&lua, "return 2^53"), "cf0020000000000000");
        assert_eq!(hex(&lua, "return -33"), "d0df");
        assert_eq!(hex(&lua, "return -0.0"), "00");
        assert_eq!(hex(&lua, "return 2^64"), "cb43f0000000000000");
        assert_eq!(hex(&lua, "return {1, nil, 3}"), "9301c003");
        assert_eq!(hex(&lua, "return -5LL"), "fb");
    }

    #[test]
    fn decodes_big_integers_as_cdata() {
        let lua = lua();
        let data = [0xcf, 0, 0x20, 0, 0, 0, 0, 0, 0];
        let (v, used) = decode_at(&lua, &data, 0, &Cfg::default()).unwrap();
        assert_eq!(used, 9);
        assert_eq!(cdata::classify(&lua, &v).unwrap(), Some(cdata::Cdata::U64(1 << 53)));
    }
}
