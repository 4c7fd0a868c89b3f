//! `json`: Tarantool's JSON module (`encode`, `decode`, `NULL`, `cfg`, `new`).
//!
//! The decoder is hand written rather than serde_json because scripts see its error texts
//! (`Expected value but found T_END on line 1 at character 1`), and because Tarantool accepts
//! `nan`/`inf` and keeps big integers exact as 64-bit cdata.

use mlua::prelude::*;

use crate::runtime::cdata;
use crate::serialize::{self, format_number, Cfg, Format, Node, Walker};

fn arg_count_error() -> LuaError {
    LuaError::runtime("bad argument #1 to '?' (expected 1 or 2 arguments)")
}

/// Per-call options override the module's cfg; Tarantool indexes whatever it is given.
fn call_cfg(cfg_table: &LuaTable, opts: Option<&LuaValue>, nil_ok: bool) -> LuaResult<Cfg> {
    let mut cfg = Cfg::from_table(cfg_table)?;
    match opts {
        None => {}
        Some(LuaValue::Table(t)) => cfg.apply(t)?,
        Some(LuaValue::Nil) if nil_ok => {}
        Some(LuaValue::String(_)) if !nil_ok => {}
        Some(other) => {
            return Err(LuaError::runtime(format!(
                "attempt to index a {} value",
                serialize::lua_type_name(other)
            )));
        }
    }
    Ok(cfg)
}

fn write_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0C => out.extend_from_slice(b"\\f"),
            0..=0x1F | 0x7F => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

fn write_node(out: &mut Vec<u8>, node: &Node, precision: usize) -> LuaResult<()> {
    match node {
        Node::Null | Node::Nil | Node::Alias(_) => out.extend_from_slice(b"null"),
        Node::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Node::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Node::UInt(u) => out.extend_from_slice(u.to_string().as_bytes()),
        Node::Num(n) => out.extend_from_slice(format_number(*n, precision, false).as_bytes()),
        Node::Str(s) => write_string(out, s),
        Node::Seq { items, .. } => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_node(out, item, precision)?;
            }
            out.push(b']');
        }
        Node::Map { entries, .. } => {
            out.push(b'{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let key = match k {
                    Node::Str(s) => s.clone(),
                    Node::Int(i) => i.to_string().into_bytes(),
                    Node::UInt(u) => u.to_string().into_bytes(),
                    Node::Num(n) if n.fract() == 0.0 => format_number(*n, precision, false).into_bytes(),
                    _ => return Err(LuaError::runtime("table key must be a number or string")),
                };
                write_string(out, &key);
                out.push(b':');
                write_node(out, v, precision)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Encodes a Lua value with the given options.
pub fn encode_value(lua: &Lua, value: &LuaValue, cfg: &Cfg) -> LuaResult<Vec<u8>> {
    let node = Walker::new(lua, cfg, Format::Json).walk(value)?;
    let mut out = Vec::new();
    write_node(&mut out, &node, cfg.precision())?;
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str(Vec<u8>),
    /// Integer text: sign and digits only.
    Int(bool, String),
    Number(f64),
    Bool(bool),
    Null,
    Colon,
    Comma,
    End,
    Error(&'static str),
}

impl Token {
    fn name(&self) -> &'static str {
        match self {
            Token::ObjBegin => "T_OBJ_BEGIN",
            Token::ObjEnd => "T_OBJ_END",
            Token::ArrBegin => "T_ARR_BEGIN",
            Token::ArrEnd => "T_ARR_END",
            Token::Str(_) => "T_STRING",
            Token::Int(..) => "T_INT",
            Token::Number(_) => "T_NUMBER",
            Token::Bool(_) => "T_BOOLEAN",
            Token::Null => "T_NULL",
            Token::Colon => "T_COLON",
            Token::Comma => "T_COMMA",
            Token::End => "T_END",
            Token::Error(e) => e,
        }
    }
}

struct Decoder<'a> {
    lua: &'a Lua,
    text: &'a [u8],
    pos: usize,
    cfg: &'a Cfg,
    depth: i64,
}

impl<'a> Decoder<'a> {
    fn where_(&self, at: usize) -> String {
        let at = at.min(self.text.len());
        let before = &self.text[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = at - before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
        format!("on line {line} at character {col}")
    }

    /// The next token and where it starts (or where its error is).
    fn next(&mut self) -> (Token, usize) {
        while let Some(&b) = self.text.get(self.pos) {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
        let start = self.pos;
        let Some(&b) = self.text.get(start) else {
            return (Token::End, start);
        };
        let single = match b {
            b'{' => Some(Token::ObjBegin),
            b'}' => Some(Token::ObjEnd),
            b'[' => Some(Token::ArrBegin),
            b']' => Some(Token::ArrEnd),
            b':' => Some(Token::Colon),
            b',' => Some(Token::Comma),
            _ => None,
        };
        if let Some(t) = single {
            self.pos += 1;
            return (t, start);
        }
        if b == b'"' {
            return self.string();
        }
        let rest = &self.text[start..];
        for (word, tok) in [
            (&b"true"[..], Token::Bool(true)),
            (b"false", Token::Bool(false)),
            (b"null", Token::Null),
        ] {
            if rest.starts_with(word) {
                self.pos += word.len();
                return (tok, start);
            }
        }
        if b == b'-' || b.is_ascii_digit() || b == b'i' || b == b'n' {
            return self.number();
        }
        (Token::Error("invalid token"), start)
    }

    fn number(&mut self) -> (Token, usize) {
        let start = self.pos;
        let rest = &self.text[start..];
        let body = rest.strip_prefix(b"-").unwrap_or(rest);
        let invalid = (Token::Error("invalid token"), start);
        if body.starts_with(b"0x") || body.starts_with(b"0X") {
            return invalid;
        }
        if body.len() > 1 && body[0] == b'0' && body[1].is_ascii_digit() {
            return invalid;
        }
        if body.first().is_some_and(|c| c.is_ascii_alphabetic()) && !self.cfg.decode_invalid_numbers {
            return invalid;
        }
        let len = rest
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-'))
            .count();
        let Ok(c) = std::ffi::CString::new(&rest[..len]) else {
            return invalid;
        };
        let mut end: *mut libc::c_char = std::ptr::null_mut();
        // Safety: `c` is NUL-terminated; strtod stores where it stopped in `end`.
        let (value, used) = unsafe {
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
        if used == 0 {
            return invalid;
        }
        let text = &rest[..used];
        self.pos += used;
        let negative = text.first() == Some(&b'-');
        let digits = &text[usize::from(negative)..];
        if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
            return (
                Token::Int(negative, String::from_utf8_lossy(digits).into_owned()),
                start,
            );
        }
        (Token::Number(value), start)
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let s = self.text.get(at..at + 4)?;
        u32::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
    }

    fn string(&mut self) -> (Token, usize) {
        let start = self.pos;
        let mut out = Vec::new();
        let mut i = self.pos + 1;
        loop {
            let Some(&b) = self.text.get(i) else {
                return (Token::Error("unexpected end of string"), i);
            };
            match b {
                b'"' => {
                    self.pos = i + 1;
                    return (Token::Str(out), start);
                }
                b'\\' => {
                    let esc = self.text.get(i + 1).copied();
                    let simple = match esc {
                        Some(b'"') => Some(b'"'),
                        Some(b'\\') => Some(b'\\'),
                        Some(b'/') => Some(b'/'),
                        Some(b'b') => Some(0x08),
                        Some(b'f') => Some(0x0C),
                        Some(b'n') => Some(b'\n'),
                        Some(b'r') => Some(b'\r'),
                        Some(b't') => Some(b'\t'),
                        _ => None,
                    };
                    if let Some(c) = simple {
                        out.push(c);
                        i += 2;
                        continue;
                    }
                    if esc != Some(b'u') {
                        return (Token::Error("invalid escape code"), i);
                    }
                    let bad = (Token::Error("invalid unicode escape code"), i);
                    let Some(mut code) = self.hex4(i + 2) else {
                        return bad;
                    };
                    let mut used = 6;
                    if (0xD800..0xDC00).contains(&code) {
                        if self.text.get(i + 6..i + 8) != Some(b"\\u") {
                            return bad;
                        }
                        match self.hex4(i + 8) {
                            Some(low) if (0xDC00..0xE000).contains(&low) => {
                                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                                used = 12;
                            }
                            _ => return bad,
                        }
                    } else if (0xDC00..0xE000).contains(&code) {
                        return bad;
                    }
                    let Some(ch) = char::from_u32(code) else {
                        return bad;
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    i += used;
                }
                _ => {
                    out.push(b);
                    i += 1;
                }
            }
        }
    }

    fn fail(&self, expected: &str, tok: &Token, at: usize) -> LuaError {
        LuaError::runtime(format!(
            "Expected {expected} but found {} {}",
            tok.name(),
            self.where_(at)
        ))
    }

    fn enter(&mut self, at: usize) -> LuaResult<()> {
        self.depth += 1;
        if self.depth > self.cfg.decode_max_depth {
            return Err(LuaError::runtime(format!(
                "Found too many nested data structures ({}) {}",
                self.depth,
                self.where_(at)
            )));
        }
        Ok(())
    }

    fn value(&mut self, tok: Token, at: usize) -> LuaResult<LuaValue> {
        let lua = self.lua;
        Ok(match tok {
            Token::Str(s) => LuaValue::String(lua.create_string(&s)?),
            Token::Int(negative, digits) => int_value(lua, negative, &digits)?,
            Token::Number(n) => LuaValue::Number(n),
            Token::Bool(b) => LuaValue::Boolean(b),
            Token::Null => cdata::null(lua)?,
            Token::ObjBegin => {
                self.enter(at)?;
                let t = lua.create_table()?;
                let (mut tok, mut at) = self.next();
                if tok != Token::ObjEnd {
                    loop {
                        let Token::Str(key) = tok else {
                            return Err(self.fail("object key string", &tok, at));
                        };
                        let (colon, cat) = self.next();
                        if colon != Token::Colon {
                            return Err(self.fail("colon", &colon, cat));
                        }
                        let (vt, vat) = self.next();
                        let v = self.value(vt, vat)?;
                        t.raw_set(lua.create_string(&key)?, v)?;
                        let (sep, sat) = self.next();
                        match sep {
                            Token::Comma => (tok, at) = self.next(),
                            Token::ObjEnd => break,
                            other => return Err(self.fail("comma or object end", &other, sat)),
                        }
                    }
                }
                self.depth -= 1;
                if self.cfg.decode_save_metatables {
                    t.set_metatable(Some(serialize::map_mt(lua)?))?;
                }
                LuaValue::Table(t)
            }
            Token::ArrBegin => {
                self.enter(at)?;
                let t = lua.create_table()?;
                let (mut tok, mut at) = self.next();
                let mut n = 0;
                if tok != Token::ArrEnd {
                    loop {
                        let v = self.value(tok, at)?;
                        n += 1;
                        t.raw_set(n, v)?;
                        let (sep, sat) = self.next();
                        match sep {
                            Token::Comma => (tok, at) = self.next(),
                            Token::ArrEnd => break,
                            other => return Err(self.fail("comma or array end", &other, sat)),
                        }
                    }
                }
                self.depth -= 1;
                if self.cfg.decode_save_metatables {
                    t.set_metatable(Some(serialize::array_mt(lua)?))?;
                }
                LuaValue::Table(t)
            }
            other => return Err(self.fail("value", &other, at)),
        })
    }
}

/// JSON integers: exact as int64 cdata when big, uint64 past int64, saturating beyond.
fn int_value(lua: &Lua, negative: bool, digits: &str) -> LuaResult<LuaValue> {
    if negative {
        let v = format!("-{digits}").parse::<i64>().unwrap_or(i64::MIN);
        return serialize::push_i64(lua, v);
    }
    let v = digits.parse::<u64>().unwrap_or(u64::MAX);
    if v <= i64::MAX as u64 {
        serialize::push_i64(lua, v as i64)
    } else {
        serialize::push_u64(lua, v)
    }
}

/// Decodes one JSON text with the given options.
pub fn decode_value(lua: &Lua, text: &[u8], cfg: &Cfg) -> LuaResult<LuaValue> {
    let mut d = Decoder {
        lua,
        text,
        pos: 0,
        cfg,
        depth: 0,
    };
    let (tok, at) = d.next();
    let v = d.value(tok, at)?;
    let (end, at) = d.next();
    if end != Token::End {
        return Err(d.fail("the end", &end, at));
    }
    Ok(v)
}

fn build(lua: &Lua) -> LuaResult<LuaTable> {
    let m = lua.create_table()?;
    let cfg = serialize::new_cfg_table(lua)?;
    let c = cfg.clone();
    m.set(
        "encode",
        lua.create_function(move |lua, args: LuaMultiValue| {
            if args.is_empty() || args.len() > 2 {
                return Err(arg_count_error());
            }
            let cfg = call_cfg(&c, args.get(1), true)?;
            let out = encode_value(lua, &args[0], &cfg)?;
            lua.create_string(&out)
        })?,
    )?;
    let c = cfg.clone();
    m.set(
        "decode",
        lua.create_function(move |lua, args: LuaMultiValue| {
            if args.is_empty() || args.len() > 2 {
                return Err(arg_count_error());
            }
            let cfg = call_cfg(&c, args.get(1), false)?;
            let text = match &args[0] {
                LuaValue::String(s) => s.as_bytes().to_vec(),
                LuaValue::Integer(_) | LuaValue::Number(_) => lua
                    .coerce_string(args[0].clone())?
                    .map(|s| s.as_bytes().to_vec())
                    .unwrap_or_default(),
                other => {
                    return Err(LuaError::runtime(format!(
                        "bad argument #1 to '?' (string expected, got {})",
                        serialize::lua_type_name(other)
                    )))
                }
            };
            decode_value(lua, &text, &cfg)
        })?,
    )?;
    // json alone also has the lower-case alias.
    m.set("null", cdata::null(lua)?)?;
    serialize::install_common(lua, &m, cfg, build)?;
    Ok(m)
}

/// Builds the `json` module table.
pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    build(lua)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lua() -> Lua {
        cdata::test_lua()
    }

    fn enc(lua: &Lua, src: &str) -> String {
        let v: LuaValue = lua.load(src).eval().unwrap();
        String::from_utf8(encode_value(lua, &v, &Cfg::default()).unwrap()).unwrap()
    }

    fn dec_err(lua: &Lua, text: &str) -> String {
        match decode_value(lua, text.as_bytes(), &Cfg::default()) {
            Err(e) => crate::runtime::errors::message(&e),
            Ok(_) => "ok".into(),
        }
    }

    #[test]
    fn encodes_like_tarantool() {
        let lua = lua();
        assert_eq!(enc(&lua, "return {1, 2, nil, 4}"), "[1,2,null,4]");
        assert_eq!(enc(&lua, "return {a = {}}"), "{\"a\":[]}");
        assert_eq!(enc(&lua, "return 2^63"), "9223372036854775808");
        assert_eq!(enc(&lua, "return 18446744073709551615ULL"), "18446744073709551615");
        assert_eq!(enc(&lua, "return 'a/b\\n\\1'"), "\"a\\/b\\n\\u0001\"");
        assert_eq!(enc(&lua, "return 1/3"), "0.33333333333333");
        assert_eq!(enc(&lua, "return {[1] = 1, [20] = 5}"), "{\"1\":1,\"20\":5}");
    }

    #[test]
    fn decode_errors_name_the_token_and_place() {
        let lua = lua();
        assert_eq!(
            dec_err(&lua, "{"),
            "Expected object key string but found T_END on line 1 at character 2"
        );
        assert_eq!(
            dec_err(&lua, "[1,]"),
            "Expected value but found T_ARR_END on line 1 at character 4"
        );
        assert_eq!(
            dec_err(&lua, "\n\n  [1, x]"),
            "Expected value but found invalid token on line 3 at character 7"
        );
        assert_eq!(
            dec_err(&lua, "\"abc"),
            "Expected value but found unexpected end of string on line 1 at character 5"
        );
        assert_eq!(
            dec_err(&lua, "[01]"),
            "Expected value but found invalid token on line 1 at character 2"
        );
        assert_eq!(
            dec_err(&lua, "{\"a\" 1}"),
            "Expected colon but found T_INT on line 1 at character 6"
        );
        assert_eq!(
            dec_err(&lua, "[1 2.5]"),
            "Expected comma or array end but found T_NUMBER on line 1 at character 4"
        );
        assert_eq!(dec_err(&lua, "[1.]"), "ok");
    }
}
