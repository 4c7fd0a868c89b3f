//! `yaml`: Tarantool's YAML module (`encode`, `decode`, `NULL`, `cfg`, `new`).
//!
//! `encode` shares the console's emitter. `decode` takes yaml-rust2's event stream rather
//! than its `Yaml` tree so plain scalars are typed by Tarantool's rules (`yes` is true,
//! `Yes` is a string, `0x10` is 16, `.inf` is a string), not by YAML 1.2's core schema.

use std::collections::HashMap;

use mlua::prelude::*;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::runtime::cdata;
use crate::serialize::{self, yaml_emit, Cfg, Format, Walker};

const ENCODE_USAGE: &str = "Usage: encode(object, {tag_prefix = <string>, tag_handle = <string>})";
const DECODE_USAGE: &str = "Usage: yaml.decode(document, [{tag_only = boolean}])";

/// Encodes one value as a YAML document with the given options.
pub fn encode_value(lua: &Lua, value: &LuaValue, cfg: &Cfg) -> LuaResult<String> {
    let mut walker = Walker::new(lua, cfg, Format::Yaml);
    let node = walker.walk(value)?;
    Ok(yaml_emit::document(&node, &walker.anchored))
}

struct Events(Vec<(Event, Marker)>);

impl MarkedEventReceiver for Events {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        self.0.push((ev, mark));
    }
}

struct Builder<'a> {
    lua: &'a Lua,
    cfg: &'a Cfg,
    events: std::vec::IntoIter<(Event, Marker)>,
    anchors: HashMap<usize, LuaValue>,
}

fn strtod_full(text: &str) -> Option<f64> {
    if text.is_empty() {
        return None;
    }
    let c = std::ffi::CString::new(text).ok()?;
    let mut end: *mut libc::c_char = std::ptr::null_mut();
    // Safety: `c` is NUL-terminated; strtod stores where it stopped in `end`.
    let (v, used) = unsafe {
        let v = libc::strtod(c.as_ptr(), &mut end);
        (
            v,
            if end.is_null() {
                0
            } else {
                end.offset_from(c.as_ptr()) as usize
            },
        )
    };
    (used == text.len()).then_some(v)
}

/// A plain scalar typed the way Tarantool's YAML reader types it.
fn plain_scalar(lua: &Lua, text: &str) -> LuaResult<LuaValue> {
    match text {
        "" | "~" | "null" => return cdata::null(lua),
        "true" | "yes" => return Ok(LuaValue::Boolean(true)),
        "false" | "no" => return Ok(LuaValue::Boolean(false)),
        _ => {}
    }
    let Some(n) = strtod_full(text) else {
        return Ok(LuaValue::String(lua.create_string(text)?));
    };
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
        if text.starts_with('-') {
            let v = text.parse::<i64>().unwrap_or(i64::MIN);
            return serialize::push_i64(lua, v);
        }
        let v = body.parse::<u64>().unwrap_or(u64::MAX);
        return if v <= i64::MAX as u64 {
            serialize::push_i64(lua, v as i64)
        } else {
            serialize::push_u64(lua, v)
        };
    }
    Ok(LuaValue::Number(n))
}

impl Builder<'_> {
    fn remember(&mut self, anchor: usize, v: &LuaValue) {
        if anchor > 0 {
            self.anchors.insert(anchor, v.clone());
        }
    }

    /// Builds the node that starts with `ev`.
    fn node(&mut self, ev: Event) -> LuaResult<LuaValue> {
        let lua = self.lua;
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let v = if tag.as_ref().is_some_and(|t| t.suffix == "binary") {
                    use base64::Engine;
                    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(clean)
                        .map_err(|_| LuaError::runtime("failed to decode binary data"))?;
                    LuaValue::String(lua.create_string(&bytes)?)
                } else if style == TScalarStyle::Plain && tag.is_none() {
                    plain_scalar(lua, &text)?
                } else {
                    LuaValue::String(lua.create_string(&text)?)
                };
                self.remember(anchor, &v);
                Ok(v)
            }
            Event::Alias(id) => self
                .anchors
                .get(&id)
                .cloned()
                .ok_or_else(|| LuaError::runtime("invalid reference")),
            Event::SequenceStart(anchor, _) => {
                let t = lua.create_table()?;
                let v = LuaValue::Table(t.clone());
                self.remember(anchor, &v);
                let mut n = 0;
                loop {
                    match self.events.next() {
                        Some((Event::SequenceEnd, _)) | None => break,
                        Some((ev, _)) => {
                            let item = self.node(ev)?;
                            n += 1;
                            t.raw_set(n, item)?;
                        }
                    }
                }
                if self.cfg.decode_save_metatables {
                    t.set_metatable(Some(serialize::array_mt(lua)?))?;
                }
                Ok(v)
            }
            Event::MappingStart(anchor, _) => {
                let t = lua.create_table()?;
                let v = LuaValue::Table(t.clone());
                self.remember(anchor, &v);
                loop {
                    match self.events.next() {
                        Some((Event::MappingEnd, _)) | None => break,
                        Some((ev, _)) => {
                            let key = self.node(ev)?;
                            let value = match self.events.next() {
                                Some((ev, _)) => self.node(ev)?,
                                None => LuaValue::Nil,
                            };
                            if !cdata::is_nil_or_null(lua, &key) {
                                t.raw_set(key, value)?;
                            }
                        }
                    }
                }
                if self.cfg.decode_save_metatables {
                    t.set_metatable(Some(serialize::map_mt(lua)?))?;
                }
                Ok(v)
            }
            _ => Ok(LuaValue::Nil),
        }
    }
}

/// Decodes the first document of a YAML text; `None` when the text holds no document.
pub fn decode_value(lua: &Lua, text: &str, cfg: &Cfg) -> LuaResult<Option<LuaValue>> {
    let mut events = Events(Vec::new());
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut events, false) {
        let m = e.marker();
        return Err(LuaError::runtime(format!(
            "{} at document: {}, line: {}, column: {}\n",
            e.info(),
            usize::from(events.0.iter().any(|(ev, _)| matches!(ev, Event::DocumentStart))),
            m.line(),
            m.col() + 1
        )));
    }
    let mut b = Builder {
        lua,
        cfg,
        events: events.0.into_iter(),
        anchors: HashMap::new(),
    };
    while let Some((ev, _)) = b.events.next() {
        match ev {
            Event::StreamStart | Event::DocumentStart | Event::Nothing => continue,
            Event::StreamEnd | Event::DocumentEnd => return Ok(None),
            other => return b.node(other).map(Some),
        }
    }
    Ok(None)
}

fn build(lua: &Lua) -> LuaResult<LuaTable> {
    let m = lua.create_table()?;
    let cfg = serialize::new_cfg_table(lua)?;
    let c = cfg.clone();
    m.set(
        "encode",
        lua.create_function(move |lua, args: LuaMultiValue| {
            let ok = match args.len() {
                1 => true,
                2 => matches!(args[1], LuaValue::Table(_)),
                _ => false,
            };
            if !ok {
                return Err(LuaError::runtime(ENCODE_USAGE));
            }
            let cfg = Cfg::from_table(&c)?;
            encode_value(lua, &args[0], &cfg)
        })?,
    )?;
    let c = cfg.clone();
    m.set(
        "decode",
        lua.create_function(move |lua, args: LuaMultiValue| {
            let ok = match args.len() {
                1 => true,
                2 => matches!(args[1], LuaValue::Table(_) | LuaValue::Nil),
                _ => false,
            };
            let text = match args.front() {
                Some(LuaValue::String(s)) if ok => s.to_string_lossy(),
                Some(v @ (LuaValue::Integer(_) | LuaValue::Number(_))) if ok => lua
                    .coerce_string(v.clone())?
                    .map(|s| s.to_string_lossy())
                    .unwrap_or_default(),
                _ => return Err(LuaError::runtime(DECODE_USAGE)),
            };
            let cfg = Cfg::from_table(&c)?;
            Ok(match decode_value(lua, &text, &cfg)? {
                Some(v) => LuaMultiValue::from_vec(vec![v]),
                None => LuaMultiValue::new(),
            })
        })?,
    )?;
    serialize::install_common(lua, &m, cfg, build)?;
    Ok(m)
}

/// Builds the `yaml` module table.
pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    build(lua)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lua() -> Lua {
        cdata::test_lua()
    }

    #[test]
    fn plain_scalars_are_typed_like_tarantool() {
        let lua = lua();
        let cfg = Cfg::default();
        let get = |s: &str| decode_value(&lua, s, &cfg).unwrap().unwrap();
        assert_eq!(get("yes"), LuaValue::Boolean(true));
        assert!(matches!(get("Yes"), LuaValue::String(_)));
        assert_eq!(get("0x10"), LuaValue::Number(16.0));
        assert_eq!(get("1e3"), LuaValue::Number(1000.0));
        assert!(matches!(get(".inf"), LuaValue::String(_)));
        assert!(decode_value(&lua, "", &cfg).unwrap().is_none());
    }

    #[test]
    fn encode_round_trips_through_decode() {
        let lua = lua();
        let cfg = Cfg::default();
        let v: LuaValue = lua
            .load("return {a = {1, 'yes', ''}, b = 'multi\\nline'}")
            .eval()
            .unwrap();
        let text = encode_value(&lua, &v, &cfg).unwrap();
        let back = decode_value(&lua, &text, &cfg).unwrap().unwrap();
        let again = encode_value(&lua, &back, &Cfg::default()).unwrap();
        assert!(again.contains("'yes'"), "{again}");
    }
}
