//! A minimal zero-copy MessagePack reader for tuples and keys: box reads fields in place
//! (comparisons, validation, field access) instead of decoding whole tuples.

/// One MessagePack value header; containers carry only their length (items follow).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mp<'a> {
    Nil,
    Bool(bool),
    UInt(u64),
    /// Always negative: non-negative integers are `UInt` whatever their encoding.
    Int(i64),
    F32(f32),
    F64(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Array(u32),
    Map(u32),
    Ext(i8, &'a [u8]),
}

/// The input is not valid MessagePack (truncated, or the reserved byte 0xc1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

pub type Result<T> = std::result::Result<T, Malformed>;

fn take(data: &[u8], pos: usize, n: usize) -> Result<&[u8]> {
    data.get(pos..pos.checked_add(n).ok_or(Malformed)?).ok_or(Malformed)
}

fn be(data: &[u8], pos: usize, n: usize) -> Result<u64> {
    Ok(take(data, pos, n)?.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64))
}

/// Reads the value header at `pos`; returns it and the position after the header (for
/// strings, binaries and extensions: after the payload).
#[inline]
pub fn read(data: &[u8], pos: usize) -> Result<(Mp<'_>, usize)> {
    let b = *data.get(pos).ok_or(Malformed)?;
    let p = pos + 1;
    let sized = |len: u64, at: usize| -> Result<(&[u8], usize)> {
        let len = usize::try_from(len).map_err(|_| Malformed)?;
        Ok((take(data, at, len)?, at + len))
    };
    Ok(match b {
        0x00..=0x7f => (Mp::UInt(b as u64), p),
        0x80..=0x8f => (Mp::Map((b & 0x0f) as u32), p),
        0x90..=0x9f => (Mp::Array((b & 0x0f) as u32), p),
        0xa0..=0xbf => {
            let (s, end) = sized((b & 0x1f) as u64, p)?;
            (Mp::Str(s), end)
        }
        0xc0 => (Mp::Nil, p),
        0xc1 => return Err(Malformed),
        0xc2 => (Mp::Bool(false), p),
        0xc3 => (Mp::Bool(true), p),
        0xc4..=0xc6 => {
            let n = 1 << (b - 0xc4);
            let (s, end) = sized(be(data, p, n)?, p + n)?;
            (Mp::Bin(s), end)
        }
        0xc7..=0xc9 => {
            let n = 1 << (b - 0xc7);
            let len = be(data, p, n)?;
            let ty = *data.get(p + n).ok_or(Malformed)? as i8;
            let (s, end) = sized(len, p + n + 1)?;
            (Mp::Ext(ty, s), end)
        }
        0xca => (Mp::F32(f32::from_bits(be(data, p, 4)? as u32)), p + 4),
        0xcb => (Mp::F64(f64::from_bits(be(data, p, 8)?)), p + 8),
        0xcc..=0xcf => {
            let n = 1 << (b - 0xcc);
            (Mp::UInt(be(data, p, n)?), p + n)
        }
        0xd0..=0xd3 => {
            let n = 1 << (b - 0xd0);
            let raw = be(data, p, n)?;
            let shift = 64 - 8 * n as u32;
            let v = ((raw << shift) as i64) >> shift;
            (if v >= 0 { Mp::UInt(v as u64) } else { Mp::Int(v) }, p + n)
        }
        0xd4..=0xd8 => {
            let n = 1 << (b - 0xd4);
            let ty = *data.get(p).ok_or(Malformed)? as i8;
            let (s, end) = sized(n as u64, p + 1)?;
            (Mp::Ext(ty, s), end)
        }
        0xd9..=0xdb => {
            let n = 1 << (b - 0xd9);
            let (s, end) = sized(be(data, p, n)?, p + n)?;
            (Mp::Str(s), end)
        }
        0xdc | 0xdd => {
            let n = if b == 0xdc { 2 } else { 4 };
            (Mp::Array(be(data, p, n)? as u32), p + n)
        }
        0xde | 0xdf => {
            let n = if b == 0xde { 2 } else { 4 };
            (Mp::Map(be(data, p, n)? as u32), p + n)
        }
        0xe0..=0xff => (Mp::Int((b as i8) as i64), p),
    })
}

/// The position after the whole value at `pos` (containers included).
#[inline]
pub fn skip(data: &[u8], pos: usize) -> Result<usize> {
    let mut pos = pos;
    // Items still to skip; containers add theirs. Iterative so hostile nesting cannot
    // overflow the stack.
    let mut pending: u64 = 1;
    while pending > 0 {
        let (v, next) = read(data, pos)?;
        pending -= 1;
        match v {
            Mp::Array(n) => pending += n as u64,
            Mp::Map(n) => pending += 2 * n as u64,
            _ => {}
        }
        pos = next;
    }
    Ok(pos)
}

/// Reads an array header at `pos`: its length and where its first item starts.
pub fn read_array(data: &[u8], pos: usize) -> Option<(u32, usize)> {
    match read(data, pos) {
        Ok((Mp::Array(n), next)) => Some((n, next)),
        _ => None,
    }
}

pub fn write_array_header(out: &mut Vec<u8>, n: u32) {
    if n < 16 {
        out.push(0x90 | n as u8);
    } else if n <= u16::MAX as u32 {
        out.push(0xdc);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

pub fn write_map_header(out: &mut Vec<u8>, n: u32) {
    if n < 16 {
        out.push(0x80 | n as u8);
    } else if n <= u16::MAX as u32 {
        out.push(0xde);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdf);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

pub fn write_uint(out: &mut Vec<u8>, v: u64) {
    if v < 128 {
        out.push(v as u8);
    } else if v <= u8::MAX as u64 {
        out.extend_from_slice(&[0xcc, v as u8]);
    } else if v <= u16::MAX as u64 {
        out.push(0xcd);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= u32::MAX as u64 {
        out.push(0xce);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

pub fn write_int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        write_uint(out, v as u64);
    } else if v >= -32 {
        out.push(v as i8 as u8);
    } else if v >= i8::MIN as i64 {
        out.extend_from_slice(&[0xd0, v as i8 as u8]);
    } else if v >= i16::MIN as i64 {
        out.push(0xd1);
        out.extend_from_slice(&(v as i16).to_be_bytes());
    } else if v >= i32::MIN as i64 {
        out.push(0xd2);
        out.extend_from_slice(&(v as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

pub fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    write_str_header(out, s.len());
    out.extend_from_slice(s);
}

/// The header of a string of `n` bytes (for strings written in pieces).
pub fn write_str_header(out: &mut Vec<u8>, n: usize) {
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= u8::MAX as usize {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= u16::MAX as usize {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

pub fn write_bool(out: &mut Vec<u8>, v: bool) {
    out.push(if v { 0xc3 } else { 0xc2 });
}

pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    out.push(0xcb);
    out.extend_from_slice(&v.to_bits().to_be_bytes());
}

pub fn write_nil(out: &mut Vec<u8>) {
    out.push(0xc0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_skips_nested_values() {
        let mut buf = Vec::new();
        write_array_header(&mut buf, 3);
        write_int(&mut buf, -100);
        write_str(&mut buf, b"hello");
        write_map_header(&mut buf, 1);
        write_uint(&mut buf, 70000);
        write_array_header(&mut buf, 0);
        let (n, mut pos) = read_array(&buf, 0).unwrap();
        assert_eq!(n, 3);
        assert_eq!(read(&buf, pos).unwrap().0, Mp::Int(-100));
        pos = skip(&buf, pos).unwrap();
        assert_eq!(read(&buf, pos).unwrap().0, Mp::Str(b"hello"));
        pos = skip(&buf, pos).unwrap();
        assert_eq!(skip(&buf, pos).unwrap(), buf.len());
    }

    #[test]
    fn truncated_input_is_malformed_not_a_panic() {
        for bad in [
            &[0xcd, 0x01][..],
            &[0xa5, b'a'],
            &[0x92, 0x01],
            &[0xc1],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert_eq!(skip(bad, 0), Err(Malformed), "{bad:?}");
        }
    }

    #[test]
    fn signed_encodings_of_positive_numbers_read_as_unsigned() {
        assert_eq!(read(&[0xd0, 0x05], 0).unwrap().0, Mp::UInt(5));
        assert_eq!(read(&[0xd1, 0xff, 0xfe], 0).unwrap().0, Mp::Int(-2));
    }
}
