//! Tuple update and upsert operations over MessagePack, as Tarantool 2.6's `xrow_update`:
//! `=` assign, `+` `-` arithmetic, `&` `|` `^` bitwise, `!` insert, `#` delete, `:` splice.
//!
//! Operations are first decoded and checked as a whole (a malformed operation fails the
//! request before anything is applied), then applied in order to the tuple's fields, each
//! seeing the fields as the previous ones left them. Error texts and the field numbers in
//! them are Tarantool's: a field given by number is shown 1-based whatever the request's
//! index base (negative numbers as given until resolved), a field given by name as `'name'`.
//!
//! Not supported, with a ClientError instead of Tarantool's result: JSON-path updates into
//! nested fields (`'[2].a'`; a path of one token such as `'[2]'` or `'name'` works) and
//! arithmetic on decimals.

use crate::box_::errcode::*;
use crate::box_::error::ClientError;
use crate::client_error;

/// Tarantool's limit on the number of operations in one request.
const MAX_OPS: u32 = 4000;

/// Applies `ops` (a msgpack array of operation arrays such as `['=', 2, 'x']`) to `tuple` (a
/// msgpack array), returning the new tuple's msgpack bytes. `index_base` is 1 for Lua calls
/// and 0 for IPROTO requests. `field_by_name` resolves a field name used instead of a number
/// (from the space format) to its 0-based field number.
pub fn update(
    tuple: &[u8],
    ops: &[u8],
    index_base: i64,
    field_by_name: &dyn Fn(&str) -> Option<u32>,
) -> Result<Vec<u8>, ClientError> {
    update_typed(tuple, ops, index_base, field_by_name, &|_| false)
}

/// As [`update`], for a space whose format types some fields `double` (`is_double_field`
/// takes a 0-based field number of the new tuple): an arithmetic result that a float holds
/// exactly is stored as a MsgPack float, except in such a field, which accepts only doubles.
pub fn update_typed(
    tuple: &[u8],
    ops: &[u8],
    index_base: i64,
    field_by_name: &dyn Fn(&str) -> Option<u32>,
    is_double_field: &dyn Fn(u32) -> bool,
) -> Result<Vec<u8>, ClientError> {
    let ops = decode_ops(ops, index_base, field_by_name)?;
    let mut fields = split_tuple(tuple)?;
    for op in &ops {
        op.apply(&mut fields)?;
    }
    Ok(store(&fields, is_double_field))
}

/// Upsert's application to an existing tuple: as [`update`], but an operation that fails
/// when applied is skipped (Tarantool logs it and goes on); the skipped errors are returned
/// for the caller to log. Malformed operations fail the whole upsert, as in Tarantool.
pub fn upsert(
    tuple: &[u8],
    ops: &[u8],
    index_base: i64,
    field_by_name: &dyn Fn(&str) -> Option<u32>,
) -> Result<(Vec<u8>, Vec<ClientError>), ClientError> {
    upsert_typed(tuple, ops, index_base, field_by_name, &|_| false)
}

/// [`upsert`] with the `double` fields of the format, as [`update_typed`].
pub fn upsert_typed(
    tuple: &[u8],
    ops: &[u8],
    index_base: i64,
    field_by_name: &dyn Fn(&str) -> Option<u32>,
    is_double_field: &dyn Fn(u32) -> bool,
) -> Result<(Vec<u8>, Vec<ClientError>), ClientError> {
    let ops = decode_ops(ops, index_base, field_by_name)?;
    let mut fields = split_tuple(tuple)?;
    let mut skipped = Vec::new();
    for op in &ops {
        // A failed operation leaves the fields untouched: every check precedes the change.
        if let Err(e) = op.apply(&mut fields) {
            skipped.push(e);
        }
    }
    Ok((store(&fields, is_double_field), skipped))
}

/// Validates the shape of `ops` without a tuple (Tarantool checks upsert operations even
/// when the tuple is absent and is inserted as is).
pub fn check_ops(ops: &[u8], index_base: i64, field_by_name: &dyn Fn(&str) -> Option<u32>) -> Result<(), ClientError> {
    decode_ops(ops, index_base, field_by_name).map(|_| ())
}

// {{{ MessagePack reading

/// Input that is not well-formed MessagePack.
struct Malformed;

/// One MessagePack header; a container's elements follow it.
#[derive(Clone, Copy)]
enum Item<'a> {
    Nil,
    Bool,
    Uint(u64),
    /// The signed family (negative fixint, 0xd0..0xd3), which may hold non-negative values.
    Int(i64),
    Float(f32),
    Double(f64),
    Str(&'a [u8]),
    Bin,
    Array(u32),
    Map(u32),
    Ext(i8),
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, pos: 0 }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).ok_or(Malformed)?;
        let bytes = self.data.get(self.pos..end).ok_or(Malformed)?;
        self.pos = end;
        Ok(bytes)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        self.be().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        self.be().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        self.be().map(u64::from_be_bytes)
    }

    fn ext(&mut self, len: usize) -> Result<Item<'a>, Malformed> {
        let kind = self.u8()? as i8;
        self.take(len)?;
        Ok(Item::Ext(kind))
    }

    /// Reads one header (and the payload of a scalar).
    fn item(&mut self) -> Result<Item<'a>, Malformed> {
        let c = self.u8()?;
        Ok(match c {
            0x00..=0x7f => Item::Uint(c as u64),
            0x80..=0x8f => Item::Map((c & 0x0f) as u32),
            0x90..=0x9f => Item::Array((c & 0x0f) as u32),
            0xa0..=0xbf => Item::Str(self.take((c & 0x1f) as usize)?),
            0xc0 => Item::Nil,
            0xc2 | 0xc3 => Item::Bool,
            0xc4 => {
                let n = self.u8()? as usize;
                self.take(n)?;
                Item::Bin
            }
            0xc5 => {
                let n = self.u16()? as usize;
                self.take(n)?;
                Item::Bin
            }
            0xc6 => {
                let n = self.u32()? as usize;
                self.take(n)?;
                Item::Bin
            }
            0xc7 => {
                let n = self.u8()? as usize;
                self.ext(n)?
            }
            0xc8 => {
                let n = self.u16()? as usize;
                self.ext(n)?
            }
            0xc9 => {
                let n = self.u32()? as usize;
                self.ext(n)?
            }
            0xca => Item::Float(f32::from_bits(self.u32()?)),
            0xcb => Item::Double(f64::from_bits(self.u64()?)),
            0xcc => Item::Uint(self.u8()? as u64),
            0xcd => Item::Uint(self.u16()? as u64),
            0xce => Item::Uint(self.u32()? as u64),
            0xcf => Item::Uint(self.u64()?),
            0xd0 => Item::Int(self.u8()? as i8 as i64),
            0xd1 => Item::Int(self.u16()? as i16 as i64),
            0xd2 => Item::Int(self.u32()? as i32 as i64),
            0xd3 => Item::Int(self.u64()? as i64),
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xd9 => {
                let n = self.u8()? as usize;
                Item::Str(self.take(n)?)
            }
            0xda => {
                let n = self.u16()? as usize;
                Item::Str(self.take(n)?)
            }
            0xdb => {
                let n = self.u32()? as usize;
                Item::Str(self.take(n)?)
            }
            0xdc => Item::Array(self.u16()? as u32),
            0xdd => Item::Array(self.u32()?),
            0xde => Item::Map(self.u16()? as u32),
            0xdf => Item::Map(self.u32()?),
            0xe0..=0xff => Item::Int(c as i8 as i64),
            // 0xc1 is never used.
            _ => return Err(Malformed),
        })
    }

    /// Skips one whole value, containers included (iteratively: nesting depth is the input's).
    fn skip(&mut self) -> Result<(), Malformed> {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            match self.item()? {
                Item::Array(n) => pending += n as u64,
                Item::Map(n) => pending += 2 * n as u64,
                _ => {}
            }
        }
        Ok(())
    }

    /// The bytes of the next whole value.
    fn value(&mut self) -> Result<&'a [u8], Malformed> {
        let start = self.pos;
        self.skip()?;
        Ok(&self.data[start..self.pos])
    }
}

/// The MessagePack type code of Tarantool's decimal extension.
const MP_DECIMAL: i8 = 1;

// }}}

// {{{ MessagePack writing (the shortest encodings, as msgpuck writes them)

// The crate's encoders (box::mp); strings come in pieces here (splice).
use super::mp::{write_array_header as write_array_len, write_int as write_neg_int, write_uint};

fn write_str(out: &mut Vec<u8>, parts: &[&[u8]]) {
    super::mp::write_str_header(out, parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.extend_from_slice(p);
    }
}

// }}}

// {{{ Operations

/// An operation's argument, read when the operations are decoded.
enum OpArg<'a> {
    /// `=` and `!`: the value as is.
    Value(&'a [u8]),
    Delete(u32),
    Scalar(Scalar<'a>),
}

/// The operations that compute a field's new value from its old one.
enum Scalar<'a> {
    Arith(Num),
    Bit(u64),
    /// `offset` is 0-based when non-negative (the index base already taken off).
    Splice {
        offset: i64,
        cut: i64,
        paste: &'a [u8],
    },
}

struct Op<'a> {
    opcode: u8,
    /// 0-based, or negative counting from the end.
    field_no: i64,
    /// The field as the request named it (name or JSON path), for error messages.
    path: Option<&'a [u8]>,
    arg: OpArg<'a>,
}

/// How an error message names an operation's field: the path in quotes, or the number
/// 1-based (Tarantool's TUPLE_INDEX_BASE, whatever the request's base) unless negative.
fn field_str(path: Option<&[u8]>, field_no: i64) -> String {
    match path {
        Some(p) => format!("'{}'", String::from_utf8_lossy(p)),
        None if field_no >= 0 => (field_no + 1).to_string(),
        None => field_no.to_string(),
    }
}

fn illegal(what: &str) -> ClientError {
    client_error!(ER_ILLEGAL_PARAMS, what)
}

fn malformed_ops(_: Malformed) -> ClientError {
    client_error!(ER_INVALID_MSGPACK, "update operations")
}

/// Decodes and checks every operation, as Tarantool does before applying any.
fn decode_ops<'a>(
    ops: &'a [u8],
    index_base: i64,
    field_by_name: &dyn Fn(&str) -> Option<u32>,
) -> Result<Vec<Op<'a>>, ClientError> {
    let mut r = Reader::new(ops);
    let count = match r.item().map_err(malformed_ops)? {
        Item::Array(n) => n,
        _ => return Err(illegal("update operations must be an array {{op,..}, {op,..}}")),
    };
    if count > MAX_OPS {
        return Err(illegal("too many operations for update"));
    }
    let mut out = Vec::with_capacity(count as usize);
    for op_num in 1..=count {
        out.push(decode_op(&mut r, op_num, index_base, field_by_name)?);
    }
    if !r.at_end() {
        return Err(illegal("can't unpack update operations"));
    }
    Ok(out)
}

/// An int32 as msgpuck's `mp_read_int32` reads it: any integer encoding whose value fits.
fn as_i32(item: Item) -> Option<i32> {
    match item {
        Item::Uint(v) => i32::try_from(v).ok(),
        Item::Int(v) => i32::try_from(v).ok(),
        _ => None,
    }
}

fn decode_op<'a>(
    r: &mut Reader<'a>,
    op_num: u32,
    index_base: i64,
    field_by_name: &dyn Fn(&str) -> Option<u32>,
) -> Result<Op<'a>, ClientError> {
    let arg_count = match r.item().map_err(malformed_ops)? {
        Item::Array(n) => n,
        _ => return Err(illegal("update operation must be an array {op,..}")),
    };
    if arg_count < 1 {
        return Err(illegal("update operation must be an array {op,..}, got empty array"));
    }
    let name = match r.item().map_err(malformed_ops)? {
        Item::Str(s) => s,
        _ => return Err(illegal("update operation name must be a string")),
    };
    let expected_args = match name {
        b"=" | b"!" | b"+" | b"-" | b"&" | b"|" | b"^" | b"#" => 3,
        b":" => 5,
        _ => {
            let shown = format!("\"{}\"", String::from_utf8_lossy(name));
            return Err(client_error!(ER_UNKNOWN_UPDATE_OP, op_num, &shown));
        }
    };
    let opcode = name[0];
    if arg_count != expected_args {
        let reason = format!("wrong number of arguments, expected {expected_args}, got {arg_count}");
        return Err(client_error!(ER_UNKNOWN_UPDATE_OP, op_num, &reason));
    }

    let mut path = None;
    let field_no = match r.item().map_err(malformed_ops)? {
        item @ (Item::Uint(_) | Item::Int(_)) => {
            // Tarantool has no field number yet here; it shows as field 1.
            let Some(v) = as_i32(item) else {
                return Err(arg_type(opcode, None, 0, "an integer"));
            };
            let v = v as i64;
            if v - index_base >= 0 {
                v - index_base
            } else if v < 0 {
                v
            } else {
                return Err(client_error!(ER_NO_SUCH_FIELD_NO, v));
            }
        }
        Item::Str(p) => {
            path = Some(p);
            resolve_path(p, field_by_name)?
        }
        _ => return Err(illegal("field id must be a number or a string")),
    };

    let type_err = |expected| arg_type(opcode, path, field_no, expected);
    let arg = match opcode {
        b'=' | b'!' => OpArg::Value(r.value().map_err(malformed_ops)?),
        b'+' | b'-' => match Num::read(r.item().map_err(malformed_ops)?) {
            NumRead::Num(n) => OpArg::Scalar(Scalar::Arith(n)),
            NumRead::Decimal => return Err(decimal_unsupported()),
            NumRead::NotNumber => return Err(type_err("a number")),
        },
        b'&' | b'|' | b'^' => match r.item().map_err(malformed_ops)? {
            Item::Uint(v) => OpArg::Scalar(Scalar::Bit(v)),
            _ => return Err(type_err("a positive integer")),
        },
        b'#' => match r.item().map_err(malformed_ops)? {
            // Tarantool keeps the count in 32 bits.
            Item::Uint(v) if v as u32 != 0 => OpArg::Delete(v as u32),
            Item::Uint(_) => return Err(update_field_err(path, field_no, "cannot delete 0 fields")),
            _ => return Err(type_err("a positive integer")),
        },
        _ => {
            let Some(offset) = as_i32(r.item().map_err(malformed_ops)?) else {
                return Err(type_err("an integer"));
            };
            let mut offset = offset as i64;
            if offset >= 0 {
                if offset - index_base < 0 {
                    return Err(splice_bound(path, field_no));
                }
                offset -= index_base;
            }
            let Some(cut) = as_i32(r.item().map_err(malformed_ops)?) else {
                return Err(type_err("an integer"));
            };
            let Item::Str(paste) = r.item().map_err(malformed_ops)? else {
                return Err(type_err("a string"));
            };
            OpArg::Scalar(Scalar::Splice {
                offset,
                cut: cut as i64,
                paste,
            })
        }
    };
    Ok(Op {
        opcode,
        field_no,
        path,
        arg,
    })
}

fn arg_type(opcode: u8, path: Option<&[u8]>, field_no: i64, expected: &str) -> ClientError {
    client_error!(ER_UPDATE_ARG_TYPE, opcode, &field_str(path, field_no), expected)
}

fn update_field_err(path: Option<&[u8]>, field_no: i64, reason: &str) -> ClientError {
    client_error!(ER_UPDATE_FIELD, &field_str(path, field_no), reason)
}

fn splice_bound(path: Option<&[u8]>, field_no: i64) -> ClientError {
    client_error!(ER_UPDATE_SPLICE, &field_str(path, field_no), "offset is out of bound")
}

fn decimal_unsupported() -> ClientError {
    client_error!(ER_UNSUPPORTED, "Tuple update", "decimal arithmetic")
}

// }}}

// {{{ Field names and JSON paths

/// Resolves a field given as a string: a name of the format, else the first token of a
/// JSON path (`[2]`, `name`, `["name"]`). Longer paths update inside a field, which is not
/// supported here.
fn resolve_path(path: &[u8], field_by_name: &dyn Fn(&str) -> Option<u32>) -> Result<i64, ClientError> {
    let by_name = |bytes: &[u8]| std::str::from_utf8(bytes).ok().and_then(field_by_name);
    if let Some(n) = by_name(path) {
        return Ok(n as i64);
    }
    let not_found = || client_error!(ER_NO_SUCH_FIELD_NAME, &*String::from_utf8_lossy(path));
    let bad_json = |pos: usize| update_field_err(Some(path), 0, &format!("invalid JSON in position {pos}"));
    let mut lexer = JsonLexer::new(path);
    let field_no = match lexer.next_token().map_err(bad_json)? {
        Token::Num(n) => n,
        Token::Str(name) => match by_name(name) {
            Some(n) => n as i64,
            None => return Err(not_found()),
        },
        Token::Any | Token::End => return Err(not_found()),
    };
    if !lexer.at_end() {
        // Tarantool reports a bad rest of the path when it walks there; check it all now.
        while lexer.next_token().map_err(bad_json)? != Token::End {}
        return Err(update_field_err(Some(path), 0, "JSON path updates are not supported"));
    }
    Ok(field_no)
}

#[derive(PartialEq, Eq, Debug)]
enum Token<'a> {
    /// 0-based: paths count fields from 1.
    Num(i64),
    Str(&'a [u8]),
    Any,
    End,
}

/// Tarantool's JSON path lexer (`json_lexer`). Errors are 1-based positions counted in
/// Unicode symbols, as Tarantool reports them. Identifier characters use Rust's Unicode
/// classes, close to but not exactly ICU's `u_isalpha`/`u_isdigit`.
struct JsonLexer<'a> {
    src: &'a [u8],
    offset: usize,
    symbols: usize,
}

impl<'a> JsonLexer<'a> {
    fn new(src: &'a [u8]) -> JsonLexer<'a> {
        JsonLexer {
            src,
            offset: 0,
            symbols: 0,
        }
    }

    fn at_end(&self) -> bool {
        self.offset >= self.src.len()
    }

    fn current(&self) -> Option<u8> {
        self.src.get(self.offset).copied()
    }

    /// Decodes the next UTF-8 symbol; end of input and invalid UTF-8 are errors at the next position.
    fn read_symbol(&mut self) -> Result<char, usize> {
        let rest = &self.src[self.offset.min(self.src.len())..];
        let len = match rest.first() {
            None => return Err(self.symbols + 1),
            Some(b) if *b < 0x80 => 1,
            Some(b) if *b >= 0xf0 => 4,
            Some(b) if *b >= 0xe0 => 3,
            Some(_) => 2,
        };
        let c = rest
            .get(..len)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.chars().next())
            .ok_or(self.symbols + 1)?;
        self.offset += len;
        self.symbols += 1;
        Ok(c)
    }

    fn next_token(&mut self) -> Result<Token<'a>, usize> {
        if self.at_end() {
            return Ok(Token::End);
        }
        let start = self.offset;
        let start_symbols = self.symbols;
        match self.read_symbol()? {
            '[' => {
                let token = match self.current() {
                    None => return Err(self.symbols),
                    Some(q @ (b'"' | b'\'')) => self.string(q)?,
                    Some(b'*') => {
                        self.offset += 1;
                        self.symbols += 1;
                        Token::Any
                    }
                    Some(_) => self.integer()?,
                };
                if self.current() != Some(b']') {
                    return Err(self.symbols + 1);
                }
                self.offset += 1;
                self.symbols += 1;
                Ok(token)
            }
            '.' => {
                if self.at_end() {
                    return Err(self.symbols + 1);
                }
                self.identifier()
            }
            _ if start != 0 => Err(self.symbols),
            _ => {
                // Only a path's first token may be a bare identifier.
                self.offset = start;
                self.symbols = start_symbols;
                self.identifier()
            }
        }
    }

    fn string(&mut self, quote: u8) -> Result<Token<'a>, usize> {
        self.offset += 1;
        self.symbols += 1;
        let start = self.offset;
        loop {
            let c = self.read_symbol()?;
            if c as u32 == quote as u32 {
                let s = &self.src[start..self.offset - 1];
                if s.is_empty() {
                    return Err(self.symbols);
                }
                return Ok(Token::Str(s));
            }
        }
    }

    fn integer(&mut self) -> Result<Token<'a>, usize> {
        let digits = self.src[self.offset..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return Err(self.symbols + 1);
        }
        let value = self.src[self.offset..self.offset + digits]
            .iter()
            .fold(0i64, |v, d| v.saturating_mul(10).saturating_add((d - b'0') as i64));
        if value < 1 {
            return Err(self.symbols + 1);
        }
        self.offset += digits;
        self.symbols += digits;
        Ok(Token::Num(value - 1))
    }

    fn identifier(&mut self) -> Result<Token<'a>, usize> {
        let start = self.offset;
        let c = self.read_symbol()?;
        if !c.is_alphabetic() && c != '_' {
            return Err(self.symbols);
        }
        loop {
            let (offset, symbols) = (self.offset, self.symbols);
            match self.read_symbol() {
                Ok(c) if c.is_alphanumeric() || c == '_' => {}
                _ => {
                    self.offset = offset;
                    self.symbols = symbols;
                    break;
                }
            }
        }
        Ok(Token::Str(&self.src[start..self.offset]))
    }
}

// }}}

// {{{ Numbers

/// An arithmetic operand or result. Integers are kept wide enough for any sum of an int64
/// and a uint64 (Tarantool's int96); a result must fit int64 or uint64.
#[derive(Clone, Copy, Debug)]
enum Num {
    Int(i128),
    Real(f64),
}

enum NumRead {
    Num(Num),
    Decimal,
    NotNumber,
}

impl Num {
    fn read(item: Item) -> NumRead {
        match item {
            Item::Uint(v) => NumRead::Num(Num::Int(v as i128)),
            Item::Int(v) => NumRead::Num(Num::Int(v as i128)),
            Item::Float(v) => NumRead::Num(Num::Real(v as f64)),
            Item::Double(v) => NumRead::Num(Num::Real(v)),
            Item::Ext(MP_DECIMAL) => NumRead::Decimal,
            _ => NumRead::NotNumber,
        }
    }

    fn to_f64(self) -> f64 {
        match self {
            Num::Int(v) => v as f64,
            Num::Real(v) => v,
        }
    }

    /// Stores an integer as uint when non-negative; a real as a float when a float holds it
    /// exactly (Tarantool's rule), unless the field is typed `double`.
    fn write(self, out: &mut Vec<u8>, double_field: bool) {
        match self {
            Num::Int(v) if v >= 0 => write_uint(out, v as u64),
            Num::Int(v) => write_neg_int(out, v as i64),
            Num::Real(v) => {
                let max = f32::MAX as f64;
                if !double_field && (-max..=max).contains(&v) && (v as f32) as f64 == v {
                    out.push(0xca);
                    out.extend_from_slice(&(v as f32).to_bits().to_be_bytes());
                } else {
                    out.push(0xcb);
                    out.extend_from_slice(&v.to_bits().to_be_bytes());
                }
            }
        }
    }
}

// }}}

// {{{ Applying

/// A field of the tuple being built.
enum Field<'a> {
    /// As in the old tuple, or inserted by `!`: it may still take one scalar operation.
    Fresh(&'a [u8]),
    /// Set by `=` or a scalar operation: it takes no more scalar operations (Tarantool's
    /// "double update of the same field"), though `=` may set it again.
    Updated(Value<'a>),
}

enum Value<'a> {
    /// The value of `=`, as is.
    Raw(&'a [u8]),
    /// Arithmetic results are encoded at the end: the encoding depends on where the field lands.
    Num(Num),
    Encoded(Vec<u8>),
}

fn split_tuple(tuple: &[u8]) -> Result<Vec<Field<'_>>, ClientError> {
    let malformed = |_| client_error!(ER_INVALID_MSGPACK, "tuple");
    let mut r = Reader::new(tuple);
    let count = match r.item().map_err(malformed)? {
        Item::Array(n) => n,
        _ => return Err(client_error!(ER_TUPLE_NOT_ARRAY)),
    };
    // Bounded by the input: each field takes at least one byte.
    let mut fields = Vec::with_capacity((count as usize).min(tuple.len()));
    for _ in 0..count {
        fields.push(Field::Fresh(r.value().map_err(malformed)?));
    }
    Ok(fields)
}

fn store(fields: &[Field], is_double_field: &dyn Fn(u32) -> bool) -> Vec<u8> {
    let mut out = Vec::new();
    write_array_len(&mut out, fields.len() as u32);
    for (i, f) in fields.iter().enumerate() {
        match f {
            Field::Fresh(bytes) | Field::Updated(Value::Raw(bytes)) => out.extend_from_slice(bytes),
            Field::Updated(Value::Num(n)) => n.write(&mut out, is_double_field(i as u32)),
            Field::Updated(Value::Encoded(bytes)) => out.extend_from_slice(bytes),
        }
    }
    out
}

impl<'a> Op<'a> {
    /// The position of this operation's field among `count` fields.
    fn position(&self, count: usize) -> Result<usize, ClientError> {
        let count = count as i64;
        if self.field_no >= 0 && self.field_no < count {
            return Ok(self.field_no as usize);
        }
        if self.field_no < 0 && self.field_no + count >= 0 {
            return Ok((self.field_no + count) as usize);
        }
        Err(match self.path {
            None => client_error!(
                ER_NO_SUCH_FIELD_NO,
                self.field_no + if self.field_no >= 0 { 1 } else { 0 }
            ),
            // Tarantool quotes the path here on top of the template's quotes: "Field ''[5]'' ...".
            Some(_) => client_error!(ER_NO_SUCH_FIELD_NAME, &field_str(self.path, self.field_no)),
        })
    }

    fn apply(&self, fields: &mut Vec<Field<'a>>) -> Result<(), ClientError> {
        match &self.arg {
            OpArg::Value(v) if self.opcode == b'!' => self.insert(fields, v),
            // `=` one past the end appends.
            OpArg::Value(v) if self.field_no == fields.len() as i64 => self.insert(fields, v),
            OpArg::Value(v) => {
                let i = self.position(fields.len())?;
                fields[i] = Field::Updated(Value::Raw(v));
                Ok(())
            }
            OpArg::Delete(n) => {
                let i = self.position(fields.len())?;
                let end = i.saturating_add(*n as usize).min(fields.len());
                fields.drain(i..end);
                Ok(())
            }
            OpArg::Scalar(scalar) => {
                let i = self.position(fields.len())?;
                // From here on messages name the field by its resolved, non-negative number.
                let shown = field_str(self.path, i as i64);
                let Field::Fresh(old) = fields[i] else {
                    return Err(client_error!(
                        ER_UPDATE_FIELD,
                        &shown,
                        "double update of the same field"
                    ));
                };
                fields[i] = Field::Updated(self.scalar(scalar, old, &shown)?);
                Ok(())
            }
        }
    }

    fn insert(&self, fields: &mut Vec<Field<'a>>, value: &'a [u8]) -> Result<(), ClientError> {
        let i = self.position(fields.len() + 1)?;
        fields.insert(i, Field::Fresh(value));
        Ok(())
    }

    /// The new value of a field after an arithmetic, bitwise or splice operation.
    fn scalar(&self, scalar: &Scalar, old: &[u8], shown: &str) -> Result<Value<'a>, ClientError> {
        let type_err = |expected| client_error!(ER_UPDATE_ARG_TYPE, self.opcode, shown, expected);
        let old = Reader::new(old)
            .item()
            .map_err(|_| client_error!(ER_INVALID_MSGPACK, "tuple"))?;
        match *scalar {
            Scalar::Arith(arg) => {
                let left = match Num::read(old) {
                    NumRead::Num(n) => n,
                    NumRead::Decimal => return Err(decimal_unsupported()),
                    NumRead::NotNumber => return Err(type_err("a number")),
                };
                self.arith(left, arg, shown).map(Value::Num)
            }
            Scalar::Bit(arg) => {
                let Item::Uint(left) = old else {
                    return Err(type_err("a positive integer"));
                };
                let v = match self.opcode {
                    b'&' => left & arg,
                    b'|' => left | arg,
                    _ => left ^ arg,
                };
                let mut out = Vec::new();
                write_uint(&mut out, v);
                Ok(Value::Encoded(out))
            }
            Scalar::Splice { offset, cut, paste } => {
                let Item::Str(s) = old else {
                    return Err(type_err("a string"));
                };
                // Wider than Tarantool's int32, so extreme offsets and cuts (which crash
                // Tarantool 2.6) take their plain meaning.
                let len = s.len() as i64;
                let offset = if offset < 0 {
                    if -offset > len + 1 {
                        return Err(client_error!(ER_UPDATE_SPLICE, shown, "offset is out of bound"));
                    }
                    offset + len + 1
                } else {
                    offset.min(len)
                };
                let rest = len - offset;
                let cut = if cut < 0 {
                    if -cut > rest {
                        0
                    } else {
                        cut + rest
                    }
                } else {
                    cut.min(rest)
                };
                let (offset, tail) = (offset as usize, (offset + cut) as usize);
                let mut out = Vec::with_capacity(s.len() + paste.len() + 5);
                write_str(&mut out, &[&s[..offset], paste, &s[tail..]]);
                Ok(Value::Encoded(out))
            }
        }
    }

    fn arith(&self, left: Num, right: Num, shown: &str) -> Result<Num, ClientError> {
        let minus = self.opcode == b'-';
        match (left, right) {
            (Num::Int(a), Num::Int(b)) => {
                let r = if minus { a - b } else { a + b };
                if r < i64::MIN as i128 || r > u64::MAX as i128 {
                    return Err(client_error!(ER_UPDATE_INTEGER_OVERFLOW, self.opcode, shown));
                }
                Ok(Num::Int(r))
            }
            _ => {
                let (a, b) = (left.to_f64(), right.to_f64());
                Ok(Num::Real(if minus { a - b } else { a + b }))
            }
        }
    }
}

// }}}

// Expected bytes and messages below were taken from Tarantool 2.6.0 running the same
// operations (`s:update` from Lua for index base 1, raw IPROTO requests for base 0).
#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value as V;

    macro_rules! a {
        ($($x:expr),* $(,)?) => { V::Array(vec![$(V::from($x)),*]) };
    }

    fn mp(v: &V) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).expect("encode into a Vec");
        out
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// The test space's format: a, b, c.
    fn names(name: &str) -> Option<u32> {
        ["a", "b", "c"].iter().position(|n| *n == name).map(|i| i as u32)
    }

    fn run(tuple: V, ops: V, base: i64) -> Result<String, (u32, String)> {
        update(&mp(&tuple), &mp(&ops), base, &names)
            .map(|t| hex(&t))
            .map_err(|e| (e.code, e.message))
    }

    /// Updates with index base 1, expecting success; the new tuple in hex.
    fn ok(tuple: V, ops: V) -> String {
        run(tuple, ops, 1).unwrap_or_else(|e| panic!("unexpected error {e:?}"))
    }

    /// Updates with index base 1, expecting an error.
    fn err(tuple: V, ops: V) -> (u32, String) {
        match run(tuple, ops, 1) {
            Ok(t) => panic!("unexpected success {t}"),
            Err(e) => e,
        }
    }

    fn e(code: u32, msg: &str) -> (u32, String) {
        (code, msg.to_string())
    }

    fn abc() -> V {
        a![1, "abc", 5]
    }

    #[test]
    fn operation_shape_errors() {
        let cases: Vec<(V, (u32, String))> = vec![
            (
                a![a!["x", 2, 1]],
                e(ER_UNKNOWN_UPDATE_OP, "Unknown UPDATE operation #1: \"x\""),
            ),
            (
                a![a!["==", 2, 1]],
                e(ER_UNKNOWN_UPDATE_OP, "Unknown UPDATE operation #1: \"==\""),
            ),
            (
                a![a!["", 2, 1]],
                e(ER_UNKNOWN_UPDATE_OP, "Unknown UPDATE operation #1: \"\""),
            ),
            (
                a![a!["+", 3, 1], a!["x", 3, 1]],
                e(ER_UNKNOWN_UPDATE_OP, "Unknown UPDATE operation #2: \"x\""),
            ),
            (
                a![a![1, 2, 1]],
                e(
                    ER_ILLEGAL_PARAMS,
                    "Illegal parameters, update operation name must be a string",
                ),
            ),
            (
                a![a![]],
                e(
                    ER_ILLEGAL_PARAMS,
                    "Illegal parameters, update operation must be an array {op,..}, got empty array",
                ),
            ),
            (
                a![1],
                e(
                    ER_ILLEGAL_PARAMS,
                    "Illegal parameters, update operation must be an array {op,..}",
                ),
            ),
            (
                a![a!["=", 2]],
                e(
                    ER_UNKNOWN_UPDATE_OP,
                    "Unknown UPDATE operation #1: wrong number of arguments, expected 3, got 2",
                ),
            ),
            (
                a![a!["=", 2, 1, 2]],
                e(
                    ER_UNKNOWN_UPDATE_OP,
                    "Unknown UPDATE operation #1: wrong number of arguments, expected 3, got 4",
                ),
            ),
            (
                a![a![":", 2, 1]],
                e(
                    ER_UNKNOWN_UPDATE_OP,
                    "Unknown UPDATE operation #1: wrong number of arguments, expected 5, got 3",
                ),
            ),
            (
                a![a!["=", a![], 1]],
                e(
                    ER_ILLEGAL_PARAMS,
                    "Illegal parameters, field id must be a number or a string",
                ),
            ),
            // Out of int32: Tarantool has no field number yet and shows field 1.
            (
                a![a!["=", 1u64 << 40, 1]],
                e(
                    ER_UPDATE_ARG_TYPE,
                    "Argument type in operation '=' on field 1 does not match field type: expected an integer",
                ),
            ),
            (
                a![a!["=", -(1i64 << 40), 1]],
                e(
                    ER_UPDATE_ARG_TYPE,
                    "Argument type in operation '=' on field 1 does not match field type: expected an integer",
                ),
            ),
        ];
        for (ops, expected) in cases {
            assert_eq!(err(abc(), ops.clone()), expected, "ops {ops}");
        }
        let not_array = update(&mp(&abc()), &mp(&V::from(5)), 1, &names).unwrap_err();
        assert_eq!(
            not_array.message,
            "Illegal parameters, update operations must be an array {{op,..}, {op,..}}"
        );
    }

    #[test]
    fn operations_are_all_checked_before_any_is_applied() {
        // The first operation would fail when applied, the second fails to decode.
        assert_eq!(
            err(abc(), a![a!["+", 8, 1], a!["+", 3, "x"]]),
            e(
                ER_UPDATE_ARG_TYPE,
                "Argument type in operation '+' on field 3 does not match field type: expected a number"
            )
        );
        assert_eq!(
            err(abc(), a![a!["=", 3, 1], a!["+", 3, "x"]]).1,
            "Argument type in operation '+' on field 3 does not match field type: expected a number"
        );
    }

    #[test]
    fn too_many_operations() {
        let op = a!["=", 2, "x"];
        let ops = V::Array(vec![op.clone(); 4001]);
        assert_eq!(
            err(abc(), ops),
            e(ER_ILLEGAL_PARAMS, "Illegal parameters, too many operations for update")
        );
        let ops = V::Array(vec![op; 4000]);
        assert_eq!(ok(abc(), ops), "9301a17805");
        assert_eq!(ok(abc(), a![]), "9301a361626305");
    }

    #[test]
    fn field_numbers() {
        assert_eq!(
            err(abc(), a![a!["=", 0, 1]]),
            e(ER_NO_SUCH_FIELD_NO, "Field 0 was not found in the tuple")
        );
        assert_eq!(
            err(abc(), a![a!["=", 5, 1]]),
            e(ER_NO_SUCH_FIELD_NO, "Field 5 was not found in the tuple")
        );
        // `=` one past the end appends.
        assert_eq!(ok(abc(), a![a!["=", 4, 1]]), "9401a36162630501");
        assert_eq!(ok(abc(), a![a!["=", -1, "x"]]), "9301a3616263a178");
        assert_eq!(ok(abc(), a![a!["=", -3, 1]]), "9301a361626305");
        assert_eq!(
            err(abc(), a![a!["=", -4, 1]]),
            e(ER_NO_SUCH_FIELD_NO, "Field -4 was not found in the tuple")
        );
        assert_eq!(ok(abc(), a![a!["!", -1, "x"]]), "9401a361626305a178");
        assert_eq!(ok(abc(), a![a!["!", 4, "x"]]), "9401a361626305a178");
        assert_eq!(ok(abc(), a![a!["!", 1, "x"]]), ok(abc(), a![a!["!", -4, "x"]]));
        assert_eq!(ok(abc(), a![a!["!", 1, "x"]]), "94a17801a361626305");
        assert_eq!(
            err(abc(), a![a!["!", 5, "x"]]),
            e(ER_NO_SUCH_FIELD_NO, "Field 5 was not found in the tuple")
        );
        assert_eq!(
            err(abc(), a![a!["!", -5, "x"]]),
            e(ER_NO_SUCH_FIELD_NO, "Field -5 was not found in the tuple")
        );
        // A negative number is shown as given until resolved, then by its position.
        assert_eq!(
            err(abc(), a![a!["+", -1, "x"]]).1,
            "Argument type in operation '+' on field -1 does not match field type: expected a number"
        );
        assert_eq!(
            err(abc(), a![a!["+", -2, 1]]).1,
            "Argument type in operation '+' on field 2 does not match field type: expected a number"
        );
    }

    #[test]
    fn each_operation_sees_the_previous_ones() {
        assert_eq!(ok(abc(), a![a!["#", 3, 1], a!["=", -1, "z"]]), "9201a17a");
        assert_eq!(
            ok(abc(), a![a!["!", 2, "q"], a!["=", -1, "z"], a!["#", -2, 1]]),
            "9301a171a17a"
        );
        assert_eq!(ok(abc(), a![a!["#", 1, 3], a!["!", 1, 1]]), "9101");
        assert_eq!(ok(abc(), a![a!["#", 1, 3], a!["=", 1, 1]]), "9101");
        assert_eq!(ok(abc(), a![a!["!", 3, 1], a!["!", 3, 2]]), "9501a3616263020105");
        assert_eq!(ok(abc(), a![a!["#", 2, 1], a!["+", 2, 1]]), "920106");
        assert_eq!(
            err(abc(), a![a!["=", 4, 1], a!["=", 6, 1]]).1,
            "Field 6 was not found in the tuple"
        );
    }

    #[test]
    fn double_update_of_a_field() {
        let double = |n| {
            e(
                ER_UPDATE_FIELD,
                &format!("Field {n} UPDATE error: double update of the same field"),
            )
        };
        assert_eq!(err(abc(), a![a!["+", 3, 1], a!["+", 3, 1]]), double(3));
        assert_eq!(err(abc(), a![a!["=", 3, 1], a!["+", 3, 1]]), double(3));
        assert_eq!(err(abc(), a![a![":", 2, 1, 1, "x"], a![":", 2, 1, 1, "x"]]), double(2));
        assert_eq!(err(abc(), a![a!["+", -1, 1], a!["+", 3, 1]]), double(3));
        // The updated field moves with insertions.
        assert_eq!(err(abc(), a![a!["+", 3, 1], a!["!", 3, 9], a!["+", 4, 1]]), double(4));
        // `=` may follow anything; inserted and appended fields take one scalar operation.
        assert_eq!(ok(abc(), a![a!["+", 3, 1], a!["=", 3, 1]]), "9301a361626301");
        assert_eq!(ok(abc(), a![a!["=", 3, 1], a!["=", 3, 2]]), "9301a361626302");
        assert_eq!(ok(abc(), a![a!["!", 3, 7], a!["+", 3, 1]]), "9401a36162630805");
        assert_eq!(ok(abc(), a![a!["=", 4, 7], a!["+", 4, 1]]), "9401a36162630508");
        assert_eq!(ok(abc(), a![a!["+", 3, 1], a!["#", 3, 1]]), "9201a3616263");
        assert_eq!(
            err(abc(), a![a!["+", "c", 1], a!["+", "c", 1]]).1,
            "Field 'c' UPDATE error: double update of the same field"
        );
    }

    #[test]
    fn integer_arithmetic() {
        let (u64max, i64min) = (u64::MAX, i64::MIN);
        let overflow = |op| {
            e(
                ER_UPDATE_INTEGER_OVERFLOW,
                &format!("Integer overflow when performing '{op}' operation on field 3"),
            )
        };
        assert_eq!(err(a![1, "abc", u64max], a![a!["+", 3, 1]]), overflow('+'));
        assert_eq!(err(a![1, "abc", u64max], a![a!["-", 3, -1]]), overflow('-'));
        assert_eq!(ok(a![1, "abc", u64max], a![a!["-", 3, u64max]]), "9301a361626300");
        assert_eq!(
            ok(a![1, "abc", u64max], a![a!["+", 3, i64min]]),
            "9301a3616263cf7fffffffffffffff"
        );
        assert_eq!(err(a![1, "abc", i64min], a![a!["-", 3, 1]]), overflow('-'));
        assert_eq!(err(a![1, "abc", i64min], a![a!["+", 3, -1]]), overflow('+'));
        assert_eq!(
            ok(a![1, "abc", i64min], a![a!["+", 3, u64max]]),
            "9301a3616263cf7fffffffffffffff"
        );
        assert_eq!(err(a![1, "abc", i64min], a![a!["-", 3, u64max]]), overflow('-'));
        assert_eq!(err(a![1, "abc", 0], a![a!["-", 3, u64max]]), overflow('-'));
        assert_eq!(err(a![1, "abc", -1], a![a!["-", 3, u64max]]), overflow('-'));
        assert_eq!(
            ok(a![1, "abc", -1], a![a!["+", 3, u64max]]),
            "9301a3616263cffffffffffffffffe"
        );
        assert_eq!(ok(abc(), a![a!["-", 3, 10]]), "9301a3616263fb");
        assert_eq!(ok(abc(), a![a!["-", 3, 5]]), "9301a361626300");
        assert_eq!(ok(abc(), a![a!["-", 3, 6]]), "9301a3616263ff");
        assert_eq!(ok(a![1, "abc", -5], a![a!["+", 3, 5]]), "9301a361626300");
        assert_eq!(ok(a![1, "abc", -5], a![a!["-", 3, -200]]), "9301a3616263ccc3");
        assert_eq!(ok(abc(), a![a!["+", 3, (1 << 24) + 1]]), "9301a3616263ce01000006");
        // The lowest int64 stays a signed integer.
        assert_eq!(
            ok(a![1, "abc", -1], a![a!["+", 3, i64min + 1]]),
            "9301a3616263d38000000000000000"
        );
    }

    #[test]
    fn real_arithmetic_stores_a_float_when_it_is_exact() {
        assert_eq!(ok(abc(), a![a!["+", 3, 0.5]]), "9301a3616263ca40b00000");
        assert_eq!(ok(abc(), a![a!["+", 3, 0.1]]), "9301a3616263cb4014666666666666");
        assert_eq!(ok(a![1, "abc", 0.25], a![a!["+", 3, 1]]), "9301a3616263ca3fa00000");
        assert_eq!(ok(a![1, "abc", 0.1], a![a!["-", 3, 0.1]]), "9301a3616263ca00000000");
        assert_eq!(ok(abc(), a![a!["+", 3, 1e300]]), "9301a3616263cb7e37e43c8800759c");
        assert_eq!(
            ok(abc(), a![a!["+", 3, f64::INFINITY]]),
            "9301a3616263cb7ff0000000000000"
        );
        assert_eq!(ok(abc(), a![a!["+", 3, -f64::NAN]]), "9301a3616263cbfff8000000000000");
        assert_eq!(
            ok(a![1, "abc", 5.5], a![a!["+", 3, 16777216]]),
            "9301a3616263cb4170000058000000"
        );
        assert_eq!(ok(abc(), a![a!["+", 3, 4e38]]), "9301a3616263cb47f2ced32a16a1b1");
        // Within the float range but not exact.
        assert_eq!(ok(abc(), a![a!["+", 3, 3e38]]), "9301a3616263cb47ec363cbf21f28a");
        assert_eq!(ok(a![1, "abc", 1.5f32], a![a!["+", 3, 1]]), "9301a3616263ca40200000");
        assert_eq!(
            ok(a![1, "abc", 1.5f32], a![a!["+", 3, 0.1]]),
            "9301a3616263cb3ff999999999999a"
        );
        assert_eq!(ok(abc(), a![a!["+", 3, 0.1f32]]), "9301a3616263cb4014666666800000");
        assert_eq!(
            ok(a![1, "abc", 0.1f32], a![a!["+", 3, 0.1f32]]),
            "9301a3616263ca3e4ccccd"
        );
        assert_eq!(ok(a![1, "abc", 2.0], a![a!["-", 3, 1]]), "9301a3616263ca3f800000");
        assert_eq!(ok(abc(), a![a!["-", 3, 5.5]]), "9301a3616263cabf000000");
        assert_eq!(ok(a![1, "abc", -1], a![a!["+", 3, 1.5]]), "9301a3616263ca3f000000");
        // `=` stores its value as given.
        assert_eq!(ok(abc(), a![a!["=", 3, 0.1f32]]), "9301a3616263ca3dcccccd");
        assert_eq!(ok(abc(), a![a!["=", 3, 2.0]]), "9301a3616263cb4000000000000000");
        // Integers become doubles: the uint64 maximum rounds to 2^64.
        assert_eq!(
            ok(a![1, "abc", u64::MAX], a![a!["+", 3, 0.5]]),
            "9301a3616263ca5f800000"
        );
    }

    #[test]
    fn a_double_field_gets_a_double() {
        let t = mp(&a![1, 5.0, 5]);
        let ops = mp(&a![a!["+", 2, 0.5], a!["+", 3, 0.5]]);
        let is_double = |f: u32| f == 1;
        // Tarantool 2.6 with format {unsigned, double, number}.
        let r = update_typed(&t, &ops, 1, &names, &is_double).expect("update");
        assert_eq!(hex(&r), "9301cb4016000000000000ca40b00000");
        // The type is the one of the position the field ends at.
        let ops = mp(&a![a!["+", 2, 0.5], a!["+", 3, 0.5], a!["!", 2, 0.5]]);
        let r = update_typed(&t, &ops, 1, &names, &is_double).expect("update");
        assert_eq!(hex(&r), "9401cb3fe0000000000000ca40b00000ca40b00000");
        let (r, skipped) = upsert_typed(&t, &mp(&a![a!["-", 2, 0.5]]), 1, &names, &is_double).expect("upsert");
        assert_eq!((hex(&r), skipped), ("9301cb401200000000000005".to_string(), vec![]));
    }

    #[test]
    fn arithmetic_type_errors() {
        let expected = |op, n| {
            e(
                ER_UPDATE_ARG_TYPE,
                &format!("Argument type in operation '{op}' on field {n} does not match field type: expected a number"),
            )
        };
        assert_eq!(err(abc(), a![a!["+", 3, "x"]]), expected('+', 3));
        assert_eq!(err(abc(), a![a!["+", 2, 1]]), expected('+', 2));
        assert_eq!(err(a![1, "abc", true], a![a!["-", 3, 1]]), expected('-', 3));
        assert_eq!(err(a![1, "abc", a![1]], a![a!["-", 3, 1]]), expected('-', 3));
        assert_eq!(err(abc(), a![a!["+", 3, true]]), expected('+', 3));
        assert_eq!(err(abc(), a![a!["+", 3, V::Nil]]), expected('+', 3));
    }

    #[test]
    fn decimals_are_not_supported() {
        let decimal = V::Ext(1, vec![0x00, 0x1c]);
        let msg = "Tuple update does not support decimal arithmetic";
        assert_eq!(err(abc(), a![a!["+", 3, decimal.clone()]]), e(ER_UNSUPPORTED, msg));
        assert_eq!(err(a![1, "abc", decimal], a![a!["+", 3, 1]]), e(ER_UNSUPPORTED, msg));
        assert_eq!(
            err(abc(), a![a!["+", 3, V::Ext(2, vec![0; 16])]]).1,
            "Argument type in operation '+' on field 3 does not match field type: expected a number"
        );
    }

    #[test]
    fn bitwise() {
        let u64max = u64::MAX;
        let positive = |op, n| {
            e(
                ER_UPDATE_ARG_TYPE,
                &format!(
                    "Argument type in operation '{op}' on field {n} does not match field type: expected a positive integer"
                ),
            )
        };
        assert_eq!(ok(abc(), a![a!["^", 3, 3]]), "9301a361626306");
        assert_eq!(ok(abc(), a![a!["&", 3, 4]]), "9301a361626304");
        assert_eq!(ok(abc(), a![a!["|", 3, 0x100]]), "9301a3616263cd0105");
        assert_eq!(
            ok(a![1, "abc", u64max], a![a!["^", 3, 1]]),
            "9301a3616263cffffffffffffffffe"
        );
        assert_eq!(
            ok(a![1, "abc", u64max], a![a!["&", 3, u64max]]),
            "9301a3616263cfffffffffffffffff"
        );
        assert_eq!(err(abc(), a![a!["&", 3, -1]]), positive('&', 3));
        assert_eq!(err(abc(), a![a!["&", 2, 1]]), positive('&', 2));
        assert_eq!(err(a![1, "abc", -5], a![a!["|", 3, 1]]), positive('|', 3));
        assert_eq!(err(abc(), a![a!["|", 3, 0.5]]), positive('|', 3));
        assert_eq!(err(abc(), a![a!["&", 3, 18446744073709551616.0]]), positive('&', 3));
    }

    #[test]
    fn delete() {
        let positive = e(
            ER_UPDATE_ARG_TYPE,
            "Argument type in operation '#' on field 2 does not match field type: expected a positive integer",
        );
        assert_eq!(
            err(abc(), a![a!["#", 2, 0]]),
            e(ER_UPDATE_FIELD, "Field 2 UPDATE error: cannot delete 0 fields")
        );
        assert_eq!(err(abc(), a![a!["#", 2, -1]]), positive);
        assert_eq!(err(abc(), a![a!["#", 2, "x"]]), positive);
        assert_eq!(ok(abc(), a![a!["#", 2, 100]]), "9101");
        assert_eq!(ok(abc(), a![a!["#", -1, 1]]), "9201a3616263");
        assert_eq!(ok(abc(), a![a!["#", 2, 1]]), "920105");
        assert_eq!(
            err(abc(), a![a!["#", 4, 1]]),
            e(ER_NO_SUCH_FIELD_NO, "Field 4 was not found in the tuple")
        );
        assert_eq!(
            err(abc(), a![a!["#", -4, 1]]),
            e(ER_NO_SUCH_FIELD_NO, "Field -4 was not found in the tuple")
        );
        // The count is kept in 32 bits, as Tarantool does.
        assert_eq!(ok(abc(), a![a!["#", 2, (1u64 << 32) + 1]]), "920105");
        assert_eq!(
            err(abc(), a![a!["#", 2, 1u64 << 32]]).1,
            "Field 2 UPDATE error: cannot delete 0 fields"
        );
    }

    #[test]
    fn splice() {
        let s = || a![1, "abcdef", 5];
        let bound = |n: &str| {
            e(
                ER_UPDATE_SPLICE,
                &format!("SPLICE error on field {n}: offset is out of bound"),
            )
        };
        let cases: Vec<(V, &str)> = vec![
            (a![":", 2, 1, 2, "XY"], "9301a658596364656605"),
            (a![":", 2, 7, 2, "XY"], "9301a8616263646566585905"),
            (a![":", 2, 8, 2, "XY"], "9301a8616263646566585905"),
            (a![":", 2, 100, 2, "XY"], "9301a8616263646566585905"),
            (a![":", 2, -1, 2, "XY"], "9301a8616263646566585905"),
            (a![":", 2, -2, 2, "XY"], "9301a76162636465585905"),
            (a![":", 2, -7, 2, "XY"], "9301a658596364656605"),
            (a![":", 2, 2, -1, "XY"], "9301a46158596605"),
            (a![":", 2, 2, -5, "XY"], "9301a8615859626364656605"),
            (a![":", 2, 2, -6, "XY"], "9301a8615859626364656605"),
            (a![":", 2, 2, -100, "XY"], "9301a8615859626364656605"),
            (a![":", 2, 2, 100, ""], "9301a16105"),
            (a![":", 2, 2, 0, "XY"], "9301a8615859626364656605"),
            (a![":", -2, 1, 1, "x"], "9301a678626364656605"),
        ];
        for (op, expected) in cases {
            assert_eq!(ok(s(), a![op.clone()]), expected, "op {op}");
        }
        assert_eq!(err(s(), a![a![":", 2, 0, 2, "XY"]]), bound("2"));
        assert_eq!(err(s(), a![a![":", 2, -8, 2, "XY"]]), bound("2"));
        assert_eq!(err(s(), a![a![":", -2, 0, 1, "x"]]), bound("-2"));
        // Resolved before the offset is checked against the string.
        assert_eq!(err(s(), a![a![":", -2, -9, 1, "x"]]), bound("2"));
        assert_eq!(ok(a![1, "", 5], a![a![":", 2, -1, 0, "x"]]), "9301a17805");
        assert_eq!(err(a![1, "", 5], a![a![":", 2, -2, 0, "x"]]), bound("2"));
        // Tarantool 2.6 crashes on these; they take their plain meaning here.
        assert_eq!(err(s(), a![a![":", 2, i32::MIN, 0, "x"]]), bound("2"));
        assert_eq!(ok(s(), a![a![":", 2, 2, i32::MIN, "x"]]), "9301a76178626364656605");

        let arg = |n, what| {
            e(
                ER_UPDATE_ARG_TYPE,
                &format!("Argument type in operation ':' on field {n} does not match field type: expected {what}"),
            )
        };
        assert_eq!(err(s(), a![a![":", 3, 2, 0, "XY"]]), arg(3, "a string"));
        assert_eq!(err(s(), a![a![":", 2, "x", 0, "XY"]]), arg(2, "an integer"));
        assert_eq!(err(s(), a![a![":", 2, 1, "x", "XY"]]), arg(2, "an integer"));
        assert_eq!(err(s(), a![a![":", 2, 1, 0, 5]]), arg(2, "a string"));
        assert_eq!(err(s(), a![a![":", 2, 1.5, 0, "x"]]), arg(2, "an integer"));
        assert_eq!(err(s(), a![a![":", 2, 1u64 << 31, 0, "x"]]), arg(2, "an integer"));
        // A long result gets a longer string header.
        let long = "x".repeat(40);
        let r = ok(s(), a![a![":", 2, 1, 0, long.as_str()]]);
        assert_eq!(&r[..10], "9301d92e78");
    }

    #[test]
    fn fields_by_name_and_path() {
        assert_eq!(ok(abc(), a![a!["=", "b", "x"]]), "9301a17805");
        assert_eq!(ok(abc(), a![a!["=", "[2]", "x"]]), "9301a17805");
        assert_eq!(ok(abc(), a![a!["=", "[\"b\"]", "x"]]), "9301a17805");
        assert_eq!(ok(abc(), a![a!["=", "[4]", "x"]]), "9401a361626305a178");
        assert_eq!(ok(abc(), a![a!["!", "b", "x"]]), "9401a178a361626305");
        assert_eq!(
            err(abc(), a![a!["+", "b", 1]]).1,
            "Argument type in operation '+' on field 'b' does not match field type: expected a number"
        );
        assert_eq!(
            err(abc(), a![a!["+", "[3]", "x"]]).1,
            "Argument type in operation '+' on field '[3]' does not match field type: expected a number"
        );
        let not_found = |name: &str| {
            e(
                ER_NO_SUCH_FIELD_NAME,
                &format!("Field '{name}' was not found in the tuple"),
            )
        };
        assert_eq!(err(abc(), a![a!["=", "zz", 1]]), not_found("zz"));
        assert_eq!(err(abc(), a![a!["=", "zz.x", 1]]), not_found("zz.x"));
        assert_eq!(err(abc(), a![a!["=", "", 1]]), not_found(""));
        assert_eq!(err(abc(), a![a!["=", "[*]", 1]]), not_found("[*]"));
        // Found by the path only when applied: Tarantool quotes the path twice.
        assert_eq!(err(abc(), a![a!["=", "[5]", "x"]]), not_found("'[5]'"));
        let bad = |path: &str, pos| {
            e(
                ER_UPDATE_FIELD,
                &format!("Field '{path}' UPDATE error: invalid JSON in position {pos}"),
            )
        };
        assert_eq!(err(abc(), a![a!["=", "[0]", "x"]]), bad("[0]", 2));
        assert_eq!(err(abc(), a![a!["=", "[-1]", "x"]]), bad("[-1]", 2));
        assert_eq!(err(abc(), a![a!["=", "\"", "x"]]), bad("\"", 1));
        assert_eq!(err(abc(), a![a!["=", "[2", "x"]]), bad("[2", 3));
        assert_eq!(err(abc(), a![a!["=", "[2]x", "x"]]), bad("[2]x", 4));
        assert_eq!(err(abc(), a![a!["=", "[\"\"]", "x"]]), bad("[\"\"]", 3));
        // Paths into a field are not supported.
        let nested = |path: &str| {
            e(
                ER_UPDATE_FIELD,
                &format!("Field '{path}' UPDATE error: JSON path updates are not supported"),
            )
        };
        assert_eq!(err(abc(), a![a!["=", "b.x", "x"]]), nested("b.x"));
        assert_eq!(err(abc(), a![a!["=", "[2][1]", "x"]]), nested("[2][1]"));
        // A name of the format is taken whole before it is read as a path.
        let dotted = |name: &str| (name == "b.x").then_some(1);
        let r = update(&mp(&abc()), &mp(&a![a!["=", "b.x", "x"]]), 1, &dotted).expect("update");
        assert_eq!(hex(&r), "9301a17805");
        // Non-ASCII identifiers and positions in symbols.
        let cyr = |name: &str| (name == "поле").then_some(2);
        let r = update(&mp(&abc()), &mp(&a![a!["=", ".поле", 7]]), 1, &cyr).expect("update");
        assert_eq!(hex(&r), "9301a361626307");
        let r = update(&mp(&abc()), &mp(&a![a!["=", "[\"поле\"]x", 7]]), 1, &cyr).unwrap_err();
        assert_eq!(
            r.message,
            "Field '[\"поле\"]x' UPDATE error: invalid JSON in position 9"
        );
    }

    #[test]
    fn index_base_zero() {
        let ok0 = |ops: V| run(abc(), ops, 0).unwrap_or_else(|e| panic!("unexpected error {e:?}"));
        let err0 = |ops: V| run(abc(), ops, 0).expect_err("an error");
        assert_eq!(ok0(a![a!["=", 1, "x"]]), "9301a17805");
        assert_eq!(ok0(a![a!["=", 3, "x"]]), "9401a361626305a178");
        assert_eq!(ok0(a![a!["!", 3, 1]]), "9401a36162630501");
        assert_eq!(ok0(a![a!["=", -1, "x"]]), "9301a3616263a178");
        assert_eq!(ok0(a![a![":", 1, 0, 1, "X"]]), "9301a358626305");
        assert_eq!(ok0(a![a![":", 1, -1, 1, "X"]]), "9301a46162635805");
        assert_eq!(ok0(a![a![":", 1, 3, 1, "X"]]), "9301a46162635805");
        assert_eq!(ok0(a![a!["#", -1, 1]]), "9201a3616263");
        // Messages count fields from 1 all the same.
        assert_eq!(
            err0(a![a!["=", 4, "x"]]),
            e(ER_NO_SUCH_FIELD_NO, "Field 5 was not found in the tuple")
        );
        assert_eq!(
            err0(a![a!["!", 4, 1]]),
            e(ER_NO_SUCH_FIELD_NO, "Field 5 was not found in the tuple")
        );
        assert_eq!(
            err0(a![a!["=", -4, "x"]]),
            e(ER_NO_SUCH_FIELD_NO, "Field -4 was not found in the tuple")
        );
        assert_eq!(
            err0(a![a!["+", 1, "x"]]).1,
            "Argument type in operation '+' on field 2 does not match field type: expected a number"
        );
        assert_eq!(
            err0(a![a!["+", 2, 1], a!["+", 2, 1]]).1,
            "Field 3 UPDATE error: double update of the same field"
        );
        assert_eq!(
            err0(a![a!["#", 1, 0]]).1,
            "Field 2 UPDATE error: cannot delete 0 fields"
        );
        assert_eq!(
            err0(a![a!["+", 2, u64::MAX]]).1,
            "Integer overflow when performing '+' operation on field 3"
        );
        // Names are 0-based whatever the base.
        assert_eq!(ok0(a![a!["=", "b", "x"]]), "9301a17805");
        assert_eq!(ok0(a![a!["=", "[2]", "x"]]), "9301a17805");
    }

    #[test]
    fn upsert_skips_failing_operations() {
        let t = mp(&abc());
        // Index base 0, as Tarantool 2.6 over IPROTO: the `+` on a string is skipped.
        let (r, skipped) = upsert(&t, &mp(&a![a!["+", 1, 1], a!["=", 2, "x"]]), 0, &names).expect("upsert");
        assert_eq!(hex(&r), "9301a3616263a178");
        assert_eq!(
            skipped,
            vec![ClientError::with_message(
                ER_UPDATE_ARG_TYPE,
                "Argument type in operation '+' on field 2 does not match field type: expected a number"
            )]
        );
        let (r, skipped) = upsert(&t, &mp(&a![a!["=", 5, 1], a!["=", 2, "y"]]), 0, &names).expect("upsert");
        assert_eq!(hex(&r), "9301a3616263a179");
        assert_eq!(
            skipped.iter().map(|e| e.code).collect::<Vec<_>>(),
            vec![ER_NO_SUCH_FIELD_NO]
        );
        // Index base 1, as from Lua: several failures, the rest applied in order.
        let ops = a![a!["+", 8, 1], a!["+", 3, 1], a!["+", 3, 1], a!["=", 2, "q"]];
        let (r, skipped) = upsert(&t, &mp(&ops), 1, &names).expect("upsert");
        assert_eq!(hex(&r), "9301a17106");
        let messages: Vec<_> = skipped.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "Field 8 was not found in the tuple",
                "Field 3 UPDATE error: double update of the same field"
            ]
        );
        // A skipped operation leaves no trace: the splice after a failed one still applies.
        let ops = a![
            a![":", 2, -9, 1, "x"],
            a![":", 2, 1, 1, "x"],
            a!["!", 9, 1],
            a!["#", 9, 1]
        ];
        let (r, skipped) = upsert(&t, &mp(&ops), 1, &names).expect("upsert");
        assert_eq!(hex(&r), "9301a378626305");
        assert_eq!(skipped.len(), 3);
    }

    #[test]
    fn upsert_fails_on_malformed_operations() {
        let t = mp(&abc());
        let e1 = upsert(&t, &mp(&a![a!["+", 1, "x"], a!["=", 2, "x"]]), 0, &names).unwrap_err();
        assert_eq!(
            e1.message,
            "Argument type in operation '+' on field 2 does not match field type: expected a number"
        );
        let e2 = upsert(&t, &mp(&a![a!["y", 5, 1], a!["=", 2, "y"]]), 0, &names).unwrap_err();
        assert_eq!(e2.message, "Unknown UPDATE operation #1: \"y\"");
    }

    #[test]
    fn check_ops_checks_shape_only() {
        let check = |ops: V| check_ops(&mp(&ops), 1, &names).map_err(|e| e.message);
        assert_eq!(
            check(a![a!["=", 99, 1], a!["+", -50, 1], a![":", "c", 1, 1, "x"]]),
            Ok(())
        );
        assert_eq!(
            check(a![a!["+", 2, "x"]]).unwrap_err(),
            err(abc(), a![a!["+", 2, "x"]]).1
        );
        assert_eq!(
            check(a![a!["=", "zz", 1]]).unwrap_err(),
            "Field 'zz' was not found in the tuple"
        );
        assert_eq!(
            check(a![a!["=", 0, 1]]).unwrap_err(),
            "Field 0 was not found in the tuple"
        );
        assert_eq!(check_ops(&mp(&a![a!["=", 0, 1]]), 0, &names), Ok(()));
    }

    #[test]
    fn malformed_input() {
        let t = mp(&abc());
        let ops = mp(&a![a!["=", 2, "x"]]);
        // Every truncation of the operations or the tuple is an error, never a panic.
        for n in 0..ops.len() {
            let e = update(&t, &ops[..n], 1, &names).unwrap_err();
            assert_eq!(e.code, ER_INVALID_MSGPACK, "{n}");
        }
        for n in 0..t.len() {
            let e = update(&t[..n], &ops, 1, &names).unwrap_err();
            assert_eq!(e.code, ER_INVALID_MSGPACK, "{n}");
        }
        let mut trailing = ops.clone();
        trailing.push(0xc0);
        assert_eq!(
            update(&t, &trailing, 1, &names).unwrap_err().message,
            "Illegal parameters, can't unpack update operations"
        );
        assert_eq!(
            update(&mp(&V::from(5)), &ops, 1, &names).unwrap_err(),
            client_error!(ER_TUPLE_NOT_ARRAY)
        );
        // 0xc1 is no MessagePack, and a huge array header promises more than there is.
        assert_eq!(
            update(&t, &[0x91, 0xc1], 1, &names).unwrap_err().code,
            ER_INVALID_MSGPACK
        );
        assert_eq!(
            update(&unhex("ddffffffff"), &ops, 1, &names).unwrap_err().code,
            ER_INVALID_MSGPACK
        );
        assert_eq!(
            update(&t, &unhex("ddffffffff"), 1, &names).unwrap_err().message,
            "Illegal parameters, too many operations for update"
        );
    }

    #[test]
    fn values_are_copied_whole() {
        let nested = a![1, a![2, a![3, "x"]], V::Map(vec![(V::from("k"), V::from(1.5))])];
        let r = ok(abc(), a![a!["=", 2, nested.clone()], a!["!", 1, V::Binary(vec![1, 2])]]);
        let expected = a![V::Binary(vec![1, 2]), 1, nested, 5];
        assert_eq!(r, hex(&mp(&expected)));
        // Long tuples get the right array header.
        let long = V::Array((0..20).map(V::from).collect());
        let r = ok(long, a![a!["#", 1, 2]]);
        assert_eq!(&r[..2], "dc");
        assert_eq!(&r[..6], "dc0012");
    }
}
