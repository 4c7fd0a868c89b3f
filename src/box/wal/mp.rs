//! The little MessagePack the WAL needs: a borrowing cursor that validates as it reads (file
//! contents are untrusted: every read is bounds-checked and reports an offset), a skipper,
//! and encoders that pick the shortest form as Tarantool's `mp_encode_*` do (the byte layout
//! of the xlog fixheader depends on it).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpError {
    /// Byte offset inside the buffer the cursor was reading.
    pub offset: usize,
    pub what: &'static str,
}

impl fmt::Display for MpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.what, self.offset)
    }
}

impl std::error::Error for MpError {}

pub type MpResult<T> = Result<T, MpError>;

pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    fn err<T>(&self, what: &'static str) -> MpResult<T> {
        Err(MpError { offset: self.pos, what })
    }

    pub fn peek(&self) -> MpResult<u8> {
        match self.buf.get(self.pos) {
            Some(&b) => Ok(b),
            None => self.err("unexpected end of data"),
        }
    }

    fn take(&mut self, n: usize) -> MpResult<&'a [u8]> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.buf.len() => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => self.err("unexpected end of data"),
        }
    }

    fn be(&mut self, n: usize) -> MpResult<u64> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, &b| (acc << 8) | b as u64))
    }

    /// An unsigned integer; non-negative values in the signed encodings are accepted too.
    pub fn read_uint(&mut self) -> MpResult<u64> {
        let start = self.pos;
        let b = self.peek()?;
        self.pos += 1;
        let v = match b {
            0x00..=0x7f => b as u64,
            0xcc => self.be(1)?,
            0xcd => self.be(2)?,
            0xce => self.be(4)?,
            0xcf => self.be(8)?,
            0xd0 => self.be(1)? as u8 as i8 as i64 as u64,
            0xd1 => self.be(2)? as u16 as i16 as i64 as u64,
            0xd2 => self.be(4)? as u32 as i32 as i64 as u64,
            0xd3 => self.be(8)?,
            _ => {
                self.pos = start;
                return self.err("expected an unsigned integer");
            }
        };
        if (0xd0..=0xd3).contains(&b) && (v as i64) < 0 {
            self.pos = start;
            return self.err("expected an unsigned integer");
        }
        Ok(v)
    }

    pub fn read_f64(&mut self) -> MpResult<f64> {
        match self.peek()? {
            0xca => {
                self.pos += 1;
                Ok(f32::from_bits(self.be(4)? as u32) as f64)
            }
            0xcb => {
                self.pos += 1;
                Ok(f64::from_bits(self.be(8)?))
            }
            _ => self.err("expected a double"),
        }
    }

    pub fn read_map_len(&mut self) -> MpResult<u32> {
        let b = self.peek()?;
        let n = match b {
            0x80..=0x8f => {
                self.pos += 1;
                (b & 0x0f) as u32
            }
            0xde => {
                self.pos += 1;
                self.be(2)? as u32
            }
            0xdf => {
                self.pos += 1;
                self.be(4)? as u32
            }
            _ => return self.err("expected a map"),
        };
        Ok(n)
    }

    /// Skips one value of any type, checking that it is complete. Iterative, so a hostile
    /// nesting depth cannot overflow the stack.
    pub fn skip(&mut self) -> MpResult<()> {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let b = self.peek()?;
            self.pos += 1;
            match b {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => {}
                0x80..=0x8f => pending += 2 * (b & 0x0f) as u64,
                0x90..=0x9f => pending += (b & 0x0f) as u64,
                0xa0..=0xbf => {
                    self.take((b & 0x1f) as usize)?;
                }
                0xc4 | 0xd9 => {
                    let n = self.be(1)? as usize;
                    self.take(n)?;
                }
                0xc5 | 0xda => {
                    let n = self.be(2)? as usize;
                    self.take(n)?;
                }
                0xc6 | 0xdb => {
                    let n = self.be(4)? as usize;
                    self.take(n)?;
                }
                0xc7 => {
                    let n = self.be(1)? as usize;
                    self.take(n + 1)?;
                }
                0xc8 => {
                    let n = self.be(2)? as usize;
                    self.take(n + 1)?;
                }
                0xc9 => {
                    let n = self.be(4)? as usize;
                    self.take(n + 1)?;
                }
                0xca => {
                    self.take(4)?;
                }
                0xcb => {
                    self.take(8)?;
                }
                0xcc | 0xd0 => {
                    self.take(1)?;
                }
                0xcd | 0xd1 => {
                    self.take(2)?;
                }
                0xce | 0xd2 => {
                    self.take(4)?;
                }
                0xcf | 0xd3 => {
                    self.take(8)?;
                }
                0xd4 => {
                    self.take(2)?;
                }
                0xd5 => {
                    self.take(3)?;
                }
                0xd6 => {
                    self.take(5)?;
                }
                0xd7 => {
                    self.take(9)?;
                }
                0xd8 => {
                    self.take(17)?;
                }
                0xdc => pending += self.be(2)?,
                0xdd => pending += self.be(4)?,
                0xde => pending += 2 * self.be(2)?,
                0xdf => pending += 2 * self.be(4)?,
                0xc1 => {
                    self.pos -= 1;
                    return self.err("invalid MessagePack byte 0xc1");
                }
            }
        }
        Ok(())
    }
}

// The writers are box's own (one MessagePack encoder in the crate), under the names the
// WAL code uses.
pub use crate::box_::mp::{
    write_array_header as put_array_len, write_f64 as put_f64, write_map_header as put_map_len, write_str as put_str,
    write_uint as put_uint,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_encodings_are_shortest_and_read_back() {
        for (v, len) in [
            (0u64, 1),
            (127, 1),
            (128, 2),
            (255, 2),
            (256, 3),
            (65535, 3),
            (65536, 5),
            (1 << 32, 9),
        ] {
            let mut b = Vec::new();
            put_uint(&mut b, v);
            assert_eq!(b.len(), len, "{v}");
            let mut c = Cursor::new(&b);
            assert_eq!(c.read_uint(), Ok(v));
            assert!(c.is_empty());
        }
        assert_eq!(Cursor::new(&[0xd0, 5]).read_uint(), Ok(5));
        assert!(Cursor::new(&[0xd0, 0xff]).read_uint().is_err());
        assert!(Cursor::new(&[0xce, 1, 2]).read_uint().is_err());
    }

    #[test]
    fn skip_validates_and_bounds() {
        let mut b = Vec::new();
        put_map_len(&mut b, 2);
        put_uint(&mut b, 1);
        put_array_len(&mut b, 3);
        put_str(&mut b, b"hello");
        put_f64(&mut b, 1.5);
        b.extend_from_slice(&[0xc4, 2, 9, 9]);
        put_uint(&mut b, 2);
        b.push(0xc0);
        let mut c = Cursor::new(&b);
        c.skip().unwrap();
        assert!(c.is_empty());
        for cut in 0..b.len() {
            assert!(Cursor::new(&b[..cut]).skip().is_err(), "cut {cut}");
        }
        // A huge declared array over a short buffer fails instead of looping for long.
        assert!(Cursor::new(&[0xdd, 0xff, 0xff, 0xff, 0xff, 1]).skip().is_err());
        assert!(Cursor::new(&[0xc1]).skip().is_err());
    }
}
