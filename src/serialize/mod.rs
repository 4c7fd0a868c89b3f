//! Serialization shared by `json`, `yaml`, `msgpack` and the console.
//!
//! Lua values are first turned into a [`Node`] tree by [`Walker`], which applies Tarantool's
//! rules (`__serialize`, array vs map detection, sparse arrays, box.NULL, 64-bit cdata, error
//! objects, depth limits, the `cfg` options). Each format then writes the tree its own way.

pub mod lua_emit;
pub mod yaml_emit;

use std::collections::{HashMap, HashSet};

use mlua::prelude::*;

use crate::runtime::cdata::{self, Cdata};
use crate::runtime::errors;

/// The options every Tarantool serializer shares (`json.cfg`, `yaml.cfg`, `msgpack.cfg`).
#[derive(Debug, Clone)]
pub struct Cfg {
    pub encode_max_depth: i64,
    pub encode_deep_as_nil: bool,
    pub encode_invalid_as_nil: bool,
    pub encode_invalid_numbers: bool,
    pub encode_use_tostring: bool,
    pub encode_load_metatables: bool,
    pub encode_sparse_convert: bool,
    pub encode_sparse_ratio: i64,
    pub encode_sparse_safe: i64,
    pub encode_number_precision: i64,
    pub decode_invalid_numbers: bool,
    pub decode_max_depth: i64,
    pub decode_save_metatables: bool,
}

impl Default for Cfg {
    fn default() -> Cfg {
        Cfg {
            encode_max_depth: 128,
            encode_deep_as_nil: false,
            encode_invalid_as_nil: false,
            encode_invalid_numbers: true,
            encode_use_tostring: false,
            encode_load_metatables: true,
            encode_sparse_convert: true,
            encode_sparse_ratio: 2,
            encode_sparse_safe: 10,
            encode_number_precision: 14,
            decode_invalid_numbers: true,
            decode_max_depth: 128,
            decode_save_metatables: true,
        }
    }
}

const BOOL_KEYS: &[&str] = &[
    "encode_deep_as_nil",
    "encode_invalid_as_nil",
    "encode_invalid_numbers",
    "encode_use_tostring",
    "encode_load_metatables",
    "encode_sparse_convert",
    "decode_invalid_numbers",
    "decode_save_metatables",
];
const INT_KEYS: &[&str] = &[
    "encode_max_depth",
    "encode_sparse_ratio",
    "encode_sparse_safe",
    "encode_number_precision",
    "decode_max_depth",
];

impl Cfg {
    fn bool_mut(&mut self, key: &str) -> Option<&mut bool> {
        Some(match key {
            "encode_deep_as_nil" => &mut self.encode_deep_as_nil,
            "encode_invalid_as_nil" => &mut self.encode_invalid_as_nil,
            "encode_invalid_numbers" => &mut self.encode_invalid_numbers,
            "encode_use_tostring" => &mut self.encode_use_tostring,
            "encode_load_metatables" => &mut self.encode_load_metatables,
            "encode_sparse_convert" => &mut self.encode_sparse_convert,
            "decode_invalid_numbers" => &mut self.decode_invalid_numbers,
            "decode_save_metatables" => &mut self.decode_save_metatables,
            _ => return None,
        })
    }

    fn int_mut(&mut self, key: &str) -> Option<&mut i64> {
        Some(match key {
            "encode_max_depth" => &mut self.encode_max_depth,
            "encode_sparse_ratio" => &mut self.encode_sparse_ratio,
            "encode_sparse_safe" => &mut self.encode_sparse_safe,
            "encode_number_precision" => &mut self.encode_number_precision,
            "decode_max_depth" => &mut self.decode_max_depth,
            _ => return None,
        })
    }

    /// Applies the known keys of an options table; like Tarantool, values are not validated
    /// beyond their Lua truthiness or numeric value, and unknown keys are ignored.
    pub fn apply(&mut self, opts: &LuaTable) -> LuaResult<()> {
        for key in BOOL_KEYS {
            let v: LuaValue = opts.get(*key)?;
            if !v.is_nil() {
                if let Some(slot) = self.bool_mut(key) {
                    *slot = !matches!(v, LuaValue::Boolean(false));
                }
            }
        }
        for key in INT_KEYS {
            let v: LuaValue = opts.get(*key)?;
            let n = match v {
                LuaValue::Integer(i) => Some(i),
                LuaValue::Number(n) => Some(n as i64),
                _ => None,
            };
            if let (Some(n), Some(slot)) = (n, self.int_mut(key)) {
                *slot = n;
            }
        }
        Ok(())
    }

    /// Reads a module's `cfg` table.
    pub fn from_table(t: &LuaTable) -> LuaResult<Cfg> {
        let mut cfg = Cfg::default();
        cfg.apply(t)?;
        Ok(cfg)
    }

    /// `%.{precision}g` precision Tarantool uses: at most 14 digits, 14 when unset.
    pub fn precision(&self) -> usize {
        if self.encode_number_precision < 1 {
            return 14;
        }
        self.encode_number_precision.min(14) as usize
    }
}

/// A `cfg` table with the defaults; calling it (`json.cfg{...}`) updates its fields.
pub fn new_cfg_table(lua: &Lua) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    let d = Cfg::default();
    let mut d2 = d.clone();
    for key in BOOL_KEYS {
        t.raw_set(*key, d2.bool_mut(key).map(|b| *b).unwrap_or(false))?;
    }
    for key in INT_KEYS {
        t.raw_set(*key, d2.int_mut(key).map(|n| *n).unwrap_or(0))?;
    }
    let mt = lua.create_table()?;
    mt.raw_set(
        "__call",
        lua.create_function(|_, (this, opts): (LuaTable, LuaValue)| {
            let LuaValue::Table(opts) = opts else {
                let got = if opts.is_nil() {
                    "no value"
                } else {
                    lua_type_name(&opts)
                };
                return Err(LuaError::runtime(format!(
                    "bad argument #2 to '?' (table expected, got {got})"
                )));
            };
            for pair in opts.pairs::<LuaValue, LuaValue>() {
                let (k, v) = pair?;
                this.raw_set(k, v)?;
            }
            Ok(())
        })?,
    )?;
    t.set_metatable(Some(mt))?;
    Ok(t)
}

/// The metatables Tarantool gives decoded arrays and maps (`json.array_mt`, ...); shared by
/// every module so a decoded table prints in flow style like Tarantool's.
/// The fields every serializer module shares (`NULL`, `array_mt`, `map_mt`, its `cfg`, and
/// `new()` making an independent copy with its own `cfg`), set on the module table `m`.
pub fn install_common(lua: &Lua, m: &LuaTable, cfg: LuaTable, build: fn(&Lua) -> LuaResult<LuaTable>) -> LuaResult<()> {
    m.set("NULL", cdata::null(lua)?)?;
    m.set("array_mt", array_mt(lua)?)?;
    m.set("map_mt", map_mt(lua)?)?;
    m.set("cfg", cfg)?;
    m.set("new", lua.create_function(move |lua, ()| build(lua))?)?;
    Ok(())
}

pub fn array_mt(lua: &Lua) -> LuaResult<LuaTable> {
    shared_mt(lua, "node.serialize.array_mt", "seq")
}

pub fn map_mt(lua: &Lua) -> LuaResult<LuaTable> {
    shared_mt(lua, "node.serialize.map_mt", "map")
}

fn shared_mt(lua: &Lua, key: &str, kind: &str) -> LuaResult<LuaTable> {
    if let Ok(t) = lua.named_registry_value::<LuaTable>(key) {
        return Ok(t);
    }
    let t = lua.create_table()?;
    t.raw_set("__serialize", kind)?;
    // As in Tarantool, changing a decoded table drops its mark, so it prints as any table.
    let newindex: LuaFunction = lua
        .load("return function(t, k, v) setmetatable(t, nil) t[k] = v end")
        .set_name("=serialize")
        .eval()?;
    t.raw_set("__newindex", newindex)?;
    lua.set_named_registry_value(key, t.clone())?;
    Ok(t)
}

/// A Lua value made ready for a serializer.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    /// Lua's `nil` itself (an array hole), told apart from box.NULL only by the console's
    /// Lua output mode; the other formats write it as null.
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Num(f64),
    Str(Vec<u8>),
    /// `flow` is the YAML hint Tarantool takes from `__serialize = 'seq'`; `id` identifies
    /// the table for YAML anchors.
    Seq {
        items: Vec<Node>,
        flow: bool,
        id: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        flow: bool,
        id: usize,
    },
    /// A table already written elsewhere in the same document (YAML only).
    Alias(usize),
}

impl Node {
    pub fn str(s: &str) -> Node {
        Node::Str(s.as_bytes().to_vec())
    }

    /// A block-style sequence not met before (for building documents in tests).
    pub fn seq(items: Vec<Node>) -> Node {
        Node::Seq {
            items,
            flow: false,
            id: 0,
        }
    }

    /// A block-style map not met before.
    pub fn map(entries: Vec<(Node, Node)>) -> Node {
        Node::Map {
            entries,
            flow: false,
            id: 0,
        }
    }
}

/// The name Lua's `type()` gives a value (mlua says "integer" for some numbers).
pub fn lua_type_name(v: &LuaValue) -> &'static str {
    match v {
        LuaValue::Integer(_) | LuaValue::Number(_) => "number",
        LuaValue::Other(_) => "cdata",
        LuaValue::Error(_) => "userdata",
        other => other.type_name(),
    }
}

/// A userdata's metatable as `debug.getmetatable` gives it, whoever made the userdata (box
/// tuples are not mlua userdata, so `AnyUserData::metatable` does not know them).
pub fn raw_metatable(lua: &Lua, ud: &LuaAnyUserData) -> Option<LuaTable> {
    let v = LuaValue::UserData(ud.clone());
    lua.exec_raw_lua(|raw| {
        // Safety: the value and its metatable are pushed above the top, which is restored.
        unsafe {
            let l = raw.state();
            if mlua::ffi::lua_checkstack(l, 2) == 0 {
                return None;
            }
            let top = mlua::ffi::lua_gettop(l);
            let mt = match raw.push_value(&v) {
                Ok(()) if mlua::ffi::lua_getmetatable(l, -1) != 0 => match raw.pop_value() {
                    LuaValue::Table(t) => Some(t),
                    _ => None,
                },
                _ => None,
            };
            mlua::ffi::lua_settop(l, top);
            mt
        }
    })
}

/// Which serializer walks, for its error texts and its treatment of shared tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    MsgPack,
    /// The console's Lua output mode: shared tables and `nil` as YAML would see them.
    Lua,
}

/// How many `__serialize` functions may hand over to one another before we give up.
const MAX_SERIALIZE_HOPS: usize = 64;
/// YAML has no depth option in Tarantool (shared tables become aliases); this only keeps a
/// pathological `__serialize` chain from exhausting the stack.
const YAML_MAX_DEPTH: i64 = 2000;

/// Turns Lua values into [`Node`]s.
pub struct Walker<'a> {
    lua: &'a Lua,
    cfg: &'a Cfg,
    format: Format,
    seen: HashMap<usize, usize>,
    next_id: usize,
    /// Table ids that YAML must anchor because an [`Node::Alias`] refers to them.
    pub anchored: HashSet<usize>,
}

enum Shape {
    Seq(usize, bool),
    Map(bool),
}

impl<'a> Walker<'a> {
    pub fn new(lua: &'a Lua, cfg: &'a Cfg, format: Format) -> Walker<'a> {
        Walker {
            lua,
            cfg,
            format,
            seen: HashMap::new(),
            next_id: 1,
            anchored: HashSet::new(),
        }
    }

    pub fn walk(&mut self, value: &LuaValue) -> LuaResult<Node> {
        self.value(value, 0, 0)
    }

    fn depth_error(&self, level: i64) -> LuaError {
        match self.format {
            Format::MsgPack => LuaError::runtime(format!("Too high nest level - {level}")),
            _ => LuaError::runtime("Too high nest level"),
        }
    }

    fn max_depth(&self) -> i64 {
        match self.format {
            Format::Yaml | Format::Lua => YAML_MAX_DEPTH,
            _ => self.cfg.encode_max_depth,
        }
    }

    fn invalid(&self, value: &LuaValue, type_name: &str) -> LuaResult<Node> {
        if self.cfg.encode_use_tostring {
            let s: LuaString = self.lua.globals().get::<LuaFunction>("tostring")?.call(value.clone())?;
            return Ok(Node::Str(s.as_bytes().to_vec()));
        }
        if self.cfg.encode_invalid_as_nil {
            return Ok(Node::Null);
        }
        Err(LuaError::runtime(format!("unsupported Lua type '{type_name}'")))
    }

    fn number(&self, n: f64) -> LuaResult<Node> {
        if !n.is_finite() && !self.cfg.encode_invalid_numbers {
            if self.cfg.encode_invalid_as_nil {
                return Ok(Node::Null);
            }
            return Err(LuaError::runtime("number must not be NaN or Inf"));
        }
        Ok(Node::Num(n))
    }

    fn value(&mut self, value: &LuaValue, level: i64, hops: usize) -> LuaResult<Node> {
        match value {
            LuaValue::Nil if self.format == Format::Lua => Ok(Node::Nil),
            LuaValue::Nil => Ok(Node::Null),
            LuaValue::Boolean(b) => Ok(Node::Bool(*b)),
            LuaValue::Integer(i) => Ok(Node::Int(*i)),
            LuaValue::Number(n) => self.number(*n),
            LuaValue::String(s) => Ok(Node::Str(s.as_bytes().to_vec())),
            LuaValue::Table(t) => self.table(t, level, hops),
            LuaValue::UserData(ud) => match ud.borrow::<errors::ErrorObject>() {
                Ok(e) => Ok(Node::str(&e.0.message)),
                Err(_) => self.userdata(value, ud, level, hops),
            },
            LuaValue::LightUserData(p) if p.0.is_null() => Ok(Node::Null),
            LuaValue::LightUserData(_) => self.invalid(value, "userdata"),
            LuaValue::Error(e) => Ok(Node::str(&errors::message(e))),
            LuaValue::Function(_) => self.invalid(value, "function"),
            LuaValue::Thread(_) => self.invalid(value, "thread"),
            LuaValue::Other(_) => match cdata::classify(self.lua, value)? {
                Some(Cdata::Null) => Ok(Node::Null),
                Some(Cdata::U64(u)) => Ok(Node::UInt(u)),
                Some(Cdata::I64(i)) => Ok(Node::Int(i)),
                _ if is_uuid(self.lua, value) => {
                    // Tarantool's text serializers write a UUID as its string.
                    let s: LuaString = self.lua.globals().get::<LuaFunction>("tostring")?.call(value.clone())?;
                    Ok(Node::Str(s.as_bytes().to_vec()))
                }
                _ => self.invalid(value, "cdata"),
            },
        }
    }

    /// A userdata whose metatable has a `__serialize` function (a box tuple) is what that
    /// function returns, as Tarantool does for its objects.
    fn userdata(&mut self, value: &LuaValue, ud: &LuaAnyUserData, level: i64, hops: usize) -> LuaResult<Node> {
        if self.cfg.encode_load_metatables {
            let serializer = raw_metatable(self.lua, ud).map(|mt| mt.get::<LuaValue>("__serialize"));
            if let Some(Ok(LuaValue::Function(f))) = serializer {
                if hops >= MAX_SERIALIZE_HOPS {
                    return Err(self.depth_error(level + 1));
                }
                let result: LuaValue = f.call(ud.clone()).map_err(without_traceback)?;
                return self.value(&result, level, hops + 1);
            }
        }
        self.invalid(value, "userdata")
    }

    fn table(&mut self, t: &LuaTable, level: i64, hops: usize) -> LuaResult<Node> {
        let level = level + 1;
        if level > self.max_depth() {
            if self.cfg.encode_deep_as_nil {
                return Ok(Node::Null);
            }
            return Err(self.depth_error(level));
        }
        let ptr = t.to_pointer() as usize;
        if matches!(self.format, Format::Yaml | Format::Lua) {
            if let Some(&id) = self.seen.get(&ptr) {
                self.anchored.insert(id);
                return Ok(Node::Alias(id));
            }
        }
        let mut shape = None;
        if self.cfg.encode_load_metatables {
            if let Some(mt) = t.metatable() {
                match mt.raw_get::<LuaValue>("__serialize")? {
                    LuaValue::Nil => {}
                    LuaValue::Function(f) => {
                        if hops >= MAX_SERIALIZE_HOPS {
                            return Err(self.depth_error(level));
                        }
                        let result: LuaValue = f.call(t.clone()).map_err(without_traceback)?;
                        return self.value(&result, level - 1, hops + 1);
                    }
                    LuaValue::String(s) => {
                        shape = Some(match &*s.as_bytes() {
                            b"seq" => Shape::Seq(t.raw_len(), true),
                            b"sequence" | b"array" => Shape::Seq(t.raw_len(), false),
                            b"map" => Shape::Map(true),
                            b"mapping" => Shape::Map(false),
                            _ => return Err(LuaError::runtime("invalid __serialize value")),
                        })
                    }
                    _ => return Err(LuaError::runtime("invalid __serialize value")),
                }
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        if matches!(self.format, Format::Yaml | Format::Lua) {
            self.seen.insert(ptr, id);
        }
        let mut pairs = Vec::new();
        if !matches!(shape, Some(Shape::Seq(..))) {
            for pair in t.pairs::<LuaValue, LuaValue>() {
                pairs.push(pair?);
            }
        }
        let shape = match shape {
            Some(s) => s,
            None => self.detect(&pairs)?,
        };
        match shape {
            Shape::Seq(len, flow) => {
                let mut items = Vec::with_capacity(len);
                for i in 1..=len {
                    let v: LuaValue = t.raw_get(i)?;
                    items.push(self.value(&v, level, 0)?);
                }
                Ok(Node::Seq { items, flow, id })
            }
            Shape::Map(flow) => {
                sort_keys(&mut pairs);
                let mut entries = Vec::with_capacity(pairs.len());
                for (k, v) in &pairs {
                    let key = self.value(k, level, 0)?;
                    let value = self.value(v, level, 0)?;
                    entries.push((key, value));
                }
                Ok(Node::Map { entries, flow, id })
            }
        }
    }

    /// Tarantool's array test: only positive integer keys, and not too sparse.
    fn detect(&self, pairs: &[(LuaValue, LuaValue)]) -> LuaResult<Shape> {
        let mut max = 0usize;
        for (k, _) in pairs {
            let index = match k {
                LuaValue::Integer(i) if *i >= 1 => Some(*i as f64),
                LuaValue::Number(n) if *n >= 1.0 && n.fract() == 0.0 => Some(*n),
                _ => None,
            };
            match index {
                Some(i) if i <= u32::MAX as f64 => max = max.max(i as usize),
                _ => return Ok(Shape::Map(false)),
            }
        }
        let count = pairs.len() as i64;
        let ratio = self.cfg.encode_sparse_ratio;
        if ratio > 0 && max as i64 > self.cfg.encode_sparse_safe && max as i64 > count.saturating_mul(ratio) {
            if self.cfg.encode_sparse_convert {
                return Ok(Shape::Map(false));
            }
            return Err(LuaError::runtime("excessively sparse array"));
        }
        Ok(Shape::Seq(max, false))
    }
}

/// mlua appends a traceback to errors raised by Lua code it calls; Tarantool's serializers
/// pass on the bare message.
fn without_traceback(e: LuaError) -> LuaError {
    let msg = errors::message(&e);
    match msg.find("\nstack traceback:") {
        Some(cut) => LuaError::runtime(&msg[..cut]),
        None => e,
    }
}

/// Map keys in a fixed order: Tarantool follows its hash table layout, which our LuaJIT
/// randomises per process, so we sort instead (numbers, then strings, then the rest).
pub fn sort_keys(pairs: &mut [(LuaValue, LuaValue)]) {
    fn rank(v: &LuaValue) -> u8 {
        match v {
            LuaValue::Integer(_) | LuaValue::Number(_) => 0,
            LuaValue::String(_) => 1,
            LuaValue::Boolean(_) => 2,
            _ => 3,
        }
    }
    fn num(v: &LuaValue) -> f64 {
        match v {
            LuaValue::Integer(i) => *i as f64,
            LuaValue::Number(n) => *n,
            _ => 0.0,
        }
    }
    pairs.sort_by(|(a, _), (b, _)| {
        rank(a).cmp(&rank(b)).then_with(|| match (a, b) {
            (LuaValue::String(x), LuaValue::String(y)) => x.as_bytes().cmp(&y.as_bytes()),
            (LuaValue::Boolean(x), LuaValue::Boolean(y)) => x.cmp(y),
            _ if rank(a) == 0 => num(a).partial_cmp(&num(b)).unwrap_or(std::cmp::Ordering::Equal),
            _ => std::cmp::Ordering::Equal,
        })
    });
}

/// C's `%.{precision}g`, which Tarantool uses for non-integral numbers.
pub fn format_g(n: f64, precision: usize) -> String {
    let mut buf = [0u8; 64];
    let fmt = format!("%.{precision}g\0");
    // Safety: the buffer is large enough for any %g output with precision <= 17 and
    // snprintf never writes past the size given.
    let len = unsafe {
        libc::snprintf(
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            fmt.as_ptr() as *const libc::c_char,
            n,
        )
    };
    let len = (len.max(0) as usize).min(buf.len() - 1);
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// A Lua number as Tarantool's YAML and JSON print it: integral values that fit a 64-bit
/// integer as digits, others with `%.14g`; `nan` carries its sign like printf.
pub fn format_number(n: f64, precision: usize, signed_nan: bool) -> String {
    if n.is_nan() {
        return if signed_nan && n.is_sign_negative() {
            "-nan".into()
        } else {
            "nan".into()
        };
    }
    if n.is_infinite() {
        return if n > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if n.fract() == 0.0 {
        if (-9223372036854775808.0..0.0).contains(&n) {
            return (n as i64).to_string();
        }
        if (0.0..18446744073709551616.0).contains(&n) {
            return (n as u64).to_string();
        }
    }
    format_g(n, precision)
}

/// Integers decoded from JSON, YAML or MsgPack: Tarantool gives plain numbers below 1e14
/// in magnitude and 64-bit cdata above, so that printing never loses digits.
pub const CDATA_THRESHOLD: u64 = 100_000_000_000_000;

pub fn push_u64(lua: &Lua, v: u64) -> LuaResult<LuaValue> {
    if v < CDATA_THRESHOLD {
        Ok(LuaValue::Number(v as f64))
    } else {
        cdata::push_u64(lua, v)
    }
}

/// Signed integers, with the same threshold.
pub fn push_i64(lua: &Lua, v: i64) -> LuaResult<LuaValue> {
    if v.unsigned_abs() < CDATA_THRESHOLD {
        Ok(LuaValue::Number(v as f64))
    } else {
        cdata::push_i64(lua, v)
    }
}

/// The console's Lua output mode: each value of a packed table `{n = k, ...}` as a Lua
/// literal (see [`lua_emit`]), joined with `, `, then `;`. A value that cannot be
/// serialized gives the error Tarantool prints.
pub fn console_format_lua(lua: &Lua, values: LuaTable, block: bool) -> LuaResult<String> {
    let n: usize = values.raw_get::<Option<usize>>("n").ok().flatten().unwrap_or(0);
    let cfg = Cfg {
        encode_use_tostring: true,
        ..Cfg::default()
    };
    let mut parts = Vec::with_capacity(n);
    for i in 1..=n {
        let v: LuaValue = values.raw_get(i)?;
        // Each value is walked on its own: a table shared by two values is written twice.
        let mut walker = Walker::new(lua, &cfg, Format::Lua);
        let text = match walker.walk(&v) {
            Ok(node) => lua_emit::value(&node, block),
            Err(e) => {
                let text = format!(
                    "console: exception while formatting output: \"{}\"",
                    errors::message(&e)
                );
                let error = Node::Map {
                    entries: vec![(Node::str("error"), Node::str(&text))],
                    flow: false,
                    id: 0,
                };
                lua_emit::value(&error, block)
            }
        };
        parts.push(text);
    }
    Ok(parts.join(", ") + ";")
}

/// The console's formatter: a packed table `{n = k, ...}` as one YAML document with one
/// list item per value, or `- error: ...` when a value cannot be serialized.
pub fn console_format(lua: &Lua, values: LuaTable) -> LuaResult<String> {
    let n: usize = values.raw_get::<Option<usize>>("n").ok().flatten().unwrap_or(0);
    if n == 0 {
        return Ok("---\n...\n".into());
    }
    let cfg = Cfg {
        encode_use_tostring: true,
        ..Cfg::default()
    };
    let walked = (|| {
        let mut walker = Walker::new(lua, &cfg, Format::Yaml);
        let mut items = Vec::with_capacity(n);
        for i in 1..=n {
            let v: LuaValue = values.raw_get(i)?;
            items.push(walker.walk(&v)?);
        }
        Ok::<_, LuaError>((
            Node::Seq {
                items,
                flow: false,
                id: 0,
            },
            walker.anchored,
        ))
    })();
    match walked {
        Ok((doc, anchored)) => Ok(yaml_emit::document(&doc, &anchored)),
        Err(e) => {
            let text = format!(
                "console: an exception occurred when formatting the output: {}",
                errors::message(&e)
            );
            let doc = Node::Seq {
                items: vec![Node::Map {
                    entries: vec![(Node::str("error"), Node::str(&text))],
                    flow: false,
                    id: 0,
                }],
                flow: false,
                id: 0,
            };
            Ok(yaml_emit::document(&doc, &HashSet::new()))
        }
    }
}

/// True for a `struct tt_uuid` cdata (the uuid module's objects). The ctype exists only once
/// the uuid module has been loaded, hence the pcall.
fn is_uuid(lua: &Lua, value: &LuaValue) -> bool {
    let check = lua.named_registry_value::<LuaFunction>("node.is_uuid_cdata").or_else(|_| {
        let f: LuaFunction = lua
            .load("local ffi = require('ffi') return function(v) local ok, yes = pcall(ffi.istype, 'struct tt_uuid', v) return ok and yes end")
            .set_name("=is_uuid")
            .eval()?;
        lua.set_named_registry_value("node.is_uuid_cdata", f.clone())?;
        Ok::<_, LuaError>(f)
    });
    match check {
        Ok(f) => f.call::<bool>(value.clone()).unwrap_or(false),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_like_tarantool() {
        assert_eq!(format_number(2f64.powi(53), 14, true), "9007199254740992");
        assert_eq!(format_number(2f64.powi(63), 14, true), "9223372036854775808");
        assert_eq!(format_number(2f64.powi(64), 14, true), "1.844674407371e+19");
        assert_eq!(format_number(-0.0, 14, true), "0");
        assert_eq!(format_number(0.1, 14, true), "0.1");
        assert_eq!(format_number(1.0 / 3.0, 14, true), "0.33333333333333");
        assert_eq!(format_number(1e100, 14, true), "1e+100");
        assert_eq!(format_number(1e-5, 14, true), "1e-05");
        assert_eq!(format_number(f64::NAN.copysign(-1.0), 14, true), "-nan");
        assert_eq!(format_number(f64::NAN.copysign(-1.0), 14, false), "nan");
        assert_eq!(format_number(f64::NEG_INFINITY, 14, true), "-inf");
    }

    #[test]
    fn cfg_tables_apply_options() {
        let lua = Lua::new();
        let t = new_cfg_table(&lua).unwrap();
        let call: LuaFunction = lua
            .load("return function(c) c{encode_max_depth = 3} end")
            .eval()
            .unwrap();
        call.call::<()>(t.clone()).unwrap();
        let cfg = Cfg::from_table(&t).unwrap();
        assert_eq!(cfg.encode_max_depth, 3);
        assert_eq!(cfg.encode_sparse_safe, 10);
    }

    #[test]
    fn sparse_arrays_follow_the_ratio() {
        let lua = Lua::new();
        let cfg = Cfg::default();
        let mut w = Walker::new(&lua, &cfg, Format::Json);
        let t: LuaValue = lua.load("return {[1] = 1, [20] = 2}").eval().unwrap();
        assert!(matches!(w.walk(&t).unwrap(), Node::Map { .. }));
        let t: LuaValue = lua.load("return {1, 2, nil, 4}").eval().unwrap();
        assert!(matches!(w.walk(&t).unwrap(), Node::Seq { ref items, .. } if items.len() == 4));
        let t: LuaValue = lua.load("return {[0] = 'z'}").eval().unwrap();
        assert!(matches!(w.walk(&t).unwrap(), Node::Map { .. }));
    }
}
