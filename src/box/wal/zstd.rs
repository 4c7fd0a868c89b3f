//! Zstandard (RFC 8878) for xlog blocks: Tarantool zstd-compresses every block of 2 KB or
//! more (`XLOG_TX_COMPRESS_THRESHOLD`), so every real snapshot is compressed, and so are our
//! WAL blocks of that size.
//!
//! The decoder reads any frame without a dictionary; the optional content checksum is
//! skipped (the block's CRC32-C already covers the compressed bytes). Every read is
//! bounds-checked: corrupt input is an error, never a panic.
//!
//! The encoder ([`compress`]) is small and fast rather than thorough: greedy matches found
//! through a hash of 4 bytes, raw literals, and sequences coded with the predefined FSE
//! distributions (no table descriptions, no Huffman). WAL rows repeat one another (the same
//! header keys, space, neighbouring LSNs and keys), so matches carry nearly all of a block:
//! a block of 100 small replaces shrinks about tenfold, which is what makes a synchronous
//! write of it cheaper.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZstdError(pub &'static str);

impl fmt::Display for ZstdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "zstd: {}", self.0)
    }
}

impl std::error::Error for ZstdError {}

type Result<T> = std::result::Result<T, ZstdError>;

fn bad<T>(what: &'static str) -> Result<T> {
    Err(ZstdError(what))
}

const MAGIC: u32 = 0xFD2F_B528;
const MAX_BLOCK: usize = 128 * 1024;
/// Refuse to inflate beyond this (Tarantool's IPROTO_BODY_LEN_MAX): a corrupt header must not
/// make us allocate without bound.
const MAX_OUTPUT: usize = 1 << 31;

/// Decompresses all frames in `src`, appending to `out` (cleared first).
pub fn decompress(src: &[u8], out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    let mut pos = 0;
    while pos < src.len() {
        pos = frame(src, pos, out)?;
    }
    Ok(())
}

fn le(src: &[u8], pos: usize, n: usize) -> Result<u64> {
    match src.get(pos..pos + n) {
        Some(b) => Ok(b.iter().rev().fold(0u64, |a, &x| (a << 8) | x as u64)),
        None => bad("truncated input"),
    }
}

fn frame(src: &[u8], mut pos: usize, out: &mut Vec<u8>) -> Result<usize> {
    let magic = le(src, pos, 4)? as u32;
    pos += 4;
    if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
        let len = le(src, pos, 4)? as usize;
        pos += 4;
        return match pos.checked_add(len) {
            Some(end) if end <= src.len() => Ok(end),
            _ => bad("truncated skippable frame"),
        };
    }
    if magic != MAGIC {
        return bad("bad frame magic");
    }
    let fhd = le(src, pos, 1)? as u8;
    pos += 1;
    let single_segment = fhd & 0x20 != 0;
    if fhd & 0x08 != 0 {
        return bad("reserved frame header bit set");
    }
    let has_checksum = fhd & 0x04 != 0;
    if !single_segment {
        pos += 1; // window descriptor: the whole frame stays in `out`, so it is not needed
    }
    let did_len = [0, 1, 2, 4][(fhd & 3) as usize];
    if did_len > 0 && le(src, pos, did_len)? != 0 {
        return bad("dictionaries are not supported");
    }
    pos += did_len;
    let fcs_len = match fhd >> 6 {
        0 if single_segment => 1,
        0 => 0,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    le(src, pos, fcs_len)?;
    pos += fcs_len;

    let frame_start = out.len();
    let mut st = State::new();
    loop {
        let bh = le(src, pos, 3)? as usize;
        pos += 3;
        let last = bh & 1 != 0;
        let size = bh >> 3;
        match (bh >> 1) & 3 {
            0 => {
                let data = src.get(pos..pos + size).ok_or(ZstdError("truncated raw block"))?;
                grow(out, size)?;
                out.extend_from_slice(data);
                pos += size;
            }
            1 => {
                let b = *src.get(pos).ok_or(ZstdError("truncated RLE block"))?;
                grow(out, size)?;
                out.resize(out.len() + size, b);
                pos += 1;
            }
            2 => {
                if size > MAX_BLOCK {
                    return bad("block too large");
                }
                let data = src
                    .get(pos..pos + size)
                    .ok_or(ZstdError("truncated compressed block"))?;
                st.block(data, out, frame_start)?;
                pos += size;
            }
            _ => return bad("reserved block type"),
        }
        if last {
            break;
        }
    }
    if has_checksum {
        le(src, pos, 4)?;
        pos += 4;
    }
    Ok(pos)
}

fn grow(out: &[u8], n: usize) -> Result<()> {
    if out.len().saturating_add(n) > MAX_OUTPUT {
        return bad("output too large");
    }
    Ok(())
}

/// Reads a forward (least significant bit first) bitstream: FSE table descriptions.
struct Forward<'a> {
    src: &'a [u8],
    bit: usize,
}

impl Forward<'_> {
    fn read(&mut self, n: u32) -> Result<u32> {
        let mut v = 0u32;
        for i in 0..n {
            let byte = *self
                .src
                .get(self.bit / 8)
                .ok_or(ZstdError("truncated table description"))?;
            v |= (((byte >> (self.bit % 8)) & 1) as u32) << i;
            self.bit += 1;
        }
        Ok(v)
    }

    fn rewind(&mut self, n: usize) {
        self.bit -= n;
    }

    fn bytes_used(&self) -> usize {
        self.bit.div_ceil(8)
    }
}

/// Reads a backward bitstream (Huffman and FSE streams): starts at the highest set bit of the
/// last byte and moves towards the start. Reading past the start yields zero bits and leaves
/// `pos` negative, which the callers check.
struct Backward<'a> {
    src: &'a [u8],
    pos: i64,
}

impl<'a> Backward<'a> {
    fn new(src: &'a [u8]) -> Result<Self> {
        match src.last() {
            Some(&b) if b != 0 => Ok(Backward {
                src,
                pos: (src.len() as i64 - 1) * 8 + 7 - b.leading_zeros() as i64,
            }),
            _ => bad("bad bitstream end"),
        }
    }

    /// Bits `[start, start + n)` of the stream, `start >= 0`, `n <= 56`.
    fn extract(&self, start: i64, n: u32) -> u64 {
        let byte = (start / 8) as usize;
        let mut v = 0u64;
        for i in 0..8 {
            if let Some(&b) = self.src.get(byte + i) {
                v |= (b as u64) << (8 * i);
            }
        }
        (v >> (start % 8)) & ((1u64 << n) - 1)
    }

    fn read(&mut self, n: u32) -> u64 {
        if n == 0 {
            return 0;
        }
        let start = self.pos - n as i64;
        self.pos = start;
        if start >= 0 {
            self.extract(start, n)
        } else if start + (n as i64) <= 0 {
            0
        } else {
            self.extract(0, (start + n as i64) as u32) << (-start)
        }
    }
}

#[derive(Clone, Default)]
struct Fse {
    log: u32,
    symbol: Vec<u8>,
    bits: Vec<u8>,
    base: Vec<u16>,
}

impl Fse {
    fn from_counts(counts: &[i16], log: u32) -> Result<Fse> {
        let size = 1usize << log;
        let mut t = Fse {
            log,
            symbol: vec![0; size],
            bits: vec![0; size],
            base: vec![0; size],
        };
        let mut next = vec![0u16; counts.len()];
        let mut high = size;
        for (s, &c) in counts.iter().enumerate() {
            if c == -1 {
                high -= 1;
                t.symbol[high] = s as u8;
                next[s] = 1;
            }
        }
        let step = (size >> 1) + (size >> 3) + 3;
        let mask = size - 1;
        let mut pos = 0;
        for (s, &c) in counts.iter().enumerate() {
            if c <= 0 {
                continue;
            }
            next[s] = c as u16;
            for _ in 0..c {
                t.symbol[pos] = s as u8;
                loop {
                    pos = (pos + step) & mask;
                    if pos < high {
                        break;
                    }
                }
            }
        }
        if pos != 0 {
            return bad("bad FSE distribution");
        }
        for i in 0..size {
            let s = t.symbol[i] as usize;
            let n = next[s];
            next[s] += 1;
            if n == 0 {
                return bad("bad FSE distribution");
            }
            let nb = log - (15 - n.leading_zeros());
            t.bits[i] = nb as u8;
            t.base[i] = ((n as u32) << nb).wrapping_sub(size as u32) as u16;
        }
        Ok(t)
    }

    fn rle(symbol: u8) -> Fse {
        Fse {
            log: 0,
            symbol: vec![symbol],
            bits: vec![0],
            base: vec![0],
        }
    }

    /// Parses a table description; returns the table and the bytes it took.
    fn read(src: &[u8], max_log: u32, max_symbol: usize) -> Result<(Fse, usize)> {
        let mut r = Forward { src, bit: 0 };
        let log = r.read(4)? + 5;
        if log > max_log {
            return bad("FSE accuracy log too large");
        }
        let mut remaining: i32 = 1 << log;
        let mut counts: Vec<i16> = Vec::new();
        while remaining > 0 {
            if counts.len() > max_symbol {
                return bad("too many FSE symbols");
            }
            let bits = 32 - ((remaining + 1) as u32).leading_zeros();
            let mut val = r.read(bits)? as i32;
            let lower = (1i32 << (bits - 1)) - 1;
            let threshold = (1i32 << bits) - 1 - (remaining + 1);
            if (val & lower) < threshold {
                r.rewind(1);
                val &= lower;
            } else if val > lower {
                val -= threshold;
            }
            let p = val - 1;
            remaining -= p.abs();
            counts.push(p as i16);
            if p == 0 {
                loop {
                    let repeat = r.read(2)?;
                    counts.resize(counts.len() + repeat as usize, 0);
                    if repeat != 3 {
                        break;
                    }
                }
            }
        }
        if remaining != 0 || counts.len() > max_symbol + 1 {
            return bad("bad FSE distribution");
        }
        Ok((Fse::from_counts(&counts, log)?, r.bytes_used()))
    }
}

struct FseState<'t> {
    t: &'t Fse,
    state: usize,
}

impl<'t> FseState<'t> {
    fn new(t: &'t Fse, s: &mut Backward) -> Self {
        FseState {
            t,
            state: s.read(t.log) as usize,
        }
    }

    fn symbol(&self) -> u8 {
        self.t.symbol[self.state]
    }

    fn update(&mut self, s: &mut Backward) {
        let nb = self.t.bits[self.state] as u32;
        self.state = self.t.base[self.state] as usize + s.read(nb) as usize;
    }
}

#[derive(Default)]
struct Huffman {
    max_bits: u32,
    symbol: Vec<u8>,
    bits: Vec<u8>,
}

impl Huffman {
    /// Parses a tree description; returns the table and the bytes it took.
    fn read(src: &[u8]) -> Result<(Huffman, usize)> {
        let hb = *src.first().ok_or(ZstdError("truncated Huffman tree"))? as usize;
        let mut weights = Vec::with_capacity(256);
        let used;
        if hb >= 128 {
            let n = hb - 127;
            used = 1 + n.div_ceil(2);
            let data = src.get(1..used).ok_or(ZstdError("truncated Huffman weights"))?;
            for i in 0..n {
                weights.push(if i % 2 == 0 { data[i / 2] >> 4 } else { data[i / 2] & 15 });
            }
        } else {
            used = 1 + hb;
            let data = src.get(1..used).ok_or(ZstdError("truncated Huffman weights"))?;
            let (t, n) = Fse::read(data, 6, 255)?;
            let mut s = Backward::new(&data[n..])?;
            let mut s1 = FseState::new(&t, &mut s);
            let mut s2 = FseState::new(&t, &mut s);
            loop {
                if weights.len() > 254 {
                    return bad("too many Huffman weights");
                }
                weights.push(s1.symbol());
                s1.update(&mut s);
                if s.pos < 0 {
                    weights.push(s2.symbol());
                    break;
                }
                weights.push(s2.symbol());
                s2.update(&mut s);
                if s.pos < 0 {
                    weights.push(s1.symbol());
                    break;
                }
            }
        }
        if weights.len() > 255 {
            return bad("too many Huffman weights");
        }
        let mut total = 0u32;
        for &w in &weights {
            if w > 11 {
                return bad("Huffman weight too large");
            }
            if w > 0 {
                total += 1 << (w - 1);
            }
        }
        if total == 0 {
            return bad("empty Huffman tree");
        }
        let max_bits = 32 - total.leading_zeros();
        let left = (1u32 << max_bits) - total;
        if !left.is_power_of_two() || max_bits > 11 {
            return bad("bad Huffman tree");
        }
        weights.push((left.trailing_zeros() + 1) as u8);
        let nbits: Vec<u32> = weights
            .iter()
            .map(|&w| if w > 0 { max_bits + 1 - w as u32 } else { 0 })
            .collect();
        let size = 1usize << max_bits;
        let mut h = Huffman {
            max_bits,
            symbol: vec![0; size],
            bits: vec![0; size],
        };
        let mut rank_count = [0usize; 13];
        for &b in &nbits {
            rank_count[b as usize] += 1;
        }
        let mut rank_idx = [0usize; 13];
        for i in (1..=max_bits as usize).rev() {
            rank_idx[i - 1] = rank_idx[i] + rank_count[i] * (1 << (max_bits as usize - i));
            if rank_idx[i - 1] > size {
                return bad("bad Huffman tree");
            }
            h.bits[rank_idx[i]..rank_idx[i - 1]].fill(i as u8);
        }
        for (s, &b) in nbits.iter().enumerate() {
            if b != 0 {
                let code = rank_idx[b as usize];
                let len = 1usize << (max_bits - b);
                h.symbol[code..code + len].fill(s as u8);
                rank_idx[b as usize] += len;
            }
        }
        Ok((h, used))
    }

    fn decode_stream(&self, src: &[u8], n: usize, out: &mut Vec<u8>) -> Result<()> {
        let mut s = Backward::new(src)?;
        let mask = (1usize << self.max_bits) - 1;
        let mut state = s.read(self.max_bits) as usize;
        for _ in 0..n {
            out.push(self.symbol[state]);
            let nb = self.bits[state] as u32;
            state = ((state << nb) + s.read(nb) as usize) & mask;
        }
        if s.pos != -(self.max_bits as i64) {
            return bad("Huffman stream size mismatch");
        }
        Ok(())
    }
}

const LL_BASE: [u32; 36] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 22, 24, 28, 32, 40, 48, 64, 128, 256, 512, 1024,
    2048, 4096, 8192, 16384, 32768, 65536,
];
const LL_BITS: [u32; 36] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
];
const ML_BASE: [u32; 53] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
    33, 34, 35, 37, 39, 41, 43, 47, 51, 59, 67, 83, 99, 131, 259, 515, 1027, 2051, 4099, 8195, 16387, 32771, 65539,
];
const ML_BITS: [u32; 53] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2,
    3, 3, 4, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
];
const LL_DEFAULT: [i16; 36] = [
    4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 2, 1, 1, 1, 1, 1, -1, -1, -1, -1,
];
const ML_DEFAULT: [i16; 53] = [
    1, 4, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1,
];
const OF_DEFAULT: [i16; 29] = [
    1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1,
];

/// What persists from block to block within a frame.
struct State {
    huffman: Option<Huffman>,
    ll: Option<Fse>,
    of: Option<Fse>,
    ml: Option<Fse>,
    rep: [usize; 3],
    literals: Vec<u8>,
}

impl State {
    fn new() -> State {
        State {
            huffman: None,
            ll: None,
            of: None,
            ml: None,
            rep: [1, 4, 8],
            literals: Vec::new(),
        }
    }

    fn block(&mut self, src: &[u8], out: &mut Vec<u8>, frame_start: usize) -> Result<()> {
        let used = self.read_literals(src)?;
        let src = &src[used..];
        let b0 = *src.first().ok_or(ZstdError("truncated sequences header"))? as usize;
        let (nseq, mut pos) = match b0 {
            0..=127 => (b0, 1),
            128..=254 => (((b0 - 128) << 8) + le(src, 1, 1)? as usize, 2),
            _ => (le(src, 1, 2)? as usize + 0x7F00, 3),
        };
        grow(out, self.literals.len())?;
        if nseq == 0 {
            if pos != src.len() {
                return bad("trailing bytes after literals");
            }
            out.extend_from_slice(&self.literals);
            return Ok(());
        }
        let modes = le(src, pos, 1)? as u8;
        pos += 1;
        if modes & 3 != 0 {
            return bad("reserved sequence mode bits");
        }
        pos += Self::table(&mut self.ll, modes >> 6, &src[pos..], 9, 35, &LL_DEFAULT, 6)?;
        pos += Self::table(&mut self.of, (modes >> 4) & 3, &src[pos..], 8, 31, &OF_DEFAULT, 5)?;
        pos += Self::table(&mut self.ml, (modes >> 2) & 3, &src[pos..], 9, 52, &ML_DEFAULT, 6)?;
        let (Some(ll), Some(of), Some(ml)) = (&self.ll, &self.of, &self.ml) else {
            return bad("missing sequence table");
        };
        let mut s = Backward::new(&src[pos..])?;
        let mut lls = FseState::new(ll, &mut s);
        let mut ofs = FseState::new(of, &mut s);
        let mut mls = FseState::new(ml, &mut s);
        let mut lit = 0usize;
        for i in 0..nseq {
            let of_code = ofs.symbol() as u32;
            let ml_code = mls.symbol() as usize;
            let ll_code = lls.symbol() as usize;
            if of_code > 31 || ml_code >= ML_BASE.len() || ll_code >= LL_BASE.len() {
                return bad("bad sequence code");
            }
            let of_value = (1u64 << of_code) + s.read(of_code);
            let ml = (ML_BASE[ml_code] as u64 + s.read(ML_BITS[ml_code])) as usize;
            let ll = (LL_BASE[ll_code] as u64 + s.read(LL_BITS[ll_code])) as usize;
            let offset = if of_value > 3 {
                let o = (of_value - 3) as usize;
                self.rep = [o, self.rep[0], self.rep[1]];
                o
            } else {
                let idx = of_value as usize + usize::from(ll == 0);
                let o = match idx {
                    1 => self.rep[0],
                    2 => self.rep[1],
                    3 => self.rep[2],
                    _ => self.rep[0].wrapping_sub(1),
                };
                if idx == 2 {
                    self.rep[1] = self.rep[0];
                } else if idx > 2 {
                    self.rep[2] = self.rep[1];
                    self.rep[1] = self.rep[0];
                }
                self.rep[0] = o;
                o
            };
            let lits = self
                .literals
                .get(lit..lit + ll)
                .ok_or(ZstdError("literal length out of range"))?;
            grow(out, ll + ml)?;
            out.extend_from_slice(lits);
            lit += ll;
            if offset == 0 || offset > out.len() - frame_start {
                return bad("match offset out of range");
            }
            let from = out.len() - offset;
            if offset >= ml {
                out.extend_from_within(from..from + ml);
            } else {
                for k in 0..ml {
                    out.push(out[from + k]);
                }
            }
            if i + 1 < nseq {
                lls.update(&mut s);
                mls.update(&mut s);
                ofs.update(&mut s);
            }
        }
        if s.pos != 0 {
            return bad("sequence stream size mismatch");
        }
        out.extend_from_slice(&self.literals[lit..]);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn table(
        slot: &mut Option<Fse>,
        mode: u8,
        src: &[u8],
        max_log: u32,
        max_symbol: usize,
        default: &[i16],
        default_log: u32,
    ) -> Result<usize> {
        match mode {
            0 => {
                *slot = Some(Fse::from_counts(default, default_log)?);
                Ok(0)
            }
            1 => {
                let s = *src.first().ok_or(ZstdError("truncated RLE table"))?;
                if s as usize > max_symbol {
                    return bad("bad RLE symbol");
                }
                *slot = Some(Fse::rle(s));
                Ok(1)
            }
            2 => {
                let (t, n) = Fse::read(src, max_log, max_symbol)?;
                *slot = Some(t);
                Ok(n)
            }
            _ if slot.is_some() => Ok(0),
            _ => bad("repeat of a missing table"),
        }
    }

    /// Fills `self.literals`; returns the bytes the literals section took.
    fn read_literals(&mut self, src: &[u8]) -> Result<usize> {
        let b0 = *src.first().ok_or(ZstdError("truncated literals header"))?;
        let kind = b0 & 3;
        let size_format = (b0 >> 2) & 3;
        self.literals.clear();
        if kind < 2 {
            let (regen, hl) = match size_format {
                0 | 2 => ((b0 >> 3) as usize, 1),
                1 => (le(src, 0, 2)? as usize >> 4, 2),
                _ => (le(src, 0, 3)? as usize >> 4, 3),
            };
            if regen > MAX_BLOCK {
                return bad("literals too large");
            }
            if kind == 0 {
                let d = src.get(hl..hl + regen).ok_or(ZstdError("truncated raw literals"))?;
                self.literals.extend_from_slice(d);
                return Ok(hl + regen);
            }
            let b = *src.get(hl).ok_or(ZstdError("truncated RLE literals"))?;
            self.literals.resize(regen, b);
            return Ok(hl + 1);
        }
        let (streams, regen, csize, hl) = match size_format {
            0 | 1 => {
                let h = le(src, 0, 3)? as usize;
                (
                    if size_format == 0 { 1 } else { 4 },
                    (h >> 4) & 0x3FF,
                    (h >> 14) & 0x3FF,
                    3,
                )
            }
            2 => {
                let h = le(src, 0, 4)? as usize;
                (4, (h >> 4) & 0x3FFF, (h >> 18) & 0x3FFF, 4)
            }
            _ => {
                let h = le(src, 0, 5)? as usize;
                (4, (h >> 4) & 0x3FFFF, (h >> 22) & 0x3FFFF, 5)
            }
        };
        if regen > MAX_BLOCK {
            return bad("literals too large");
        }
        let mut data = src
            .get(hl..hl + csize)
            .ok_or(ZstdError("truncated compressed literals"))?;
        if kind == 2 {
            let (h, n) = Huffman::read(data)?;
            self.huffman = Some(h);
            data = &data[n..];
        }
        let h = self
            .huffman
            .as_ref()
            .ok_or(ZstdError("treeless literals without a tree"))?;
        self.literals.reserve(regen);
        if streams == 1 {
            h.decode_stream(data, regen, &mut self.literals)?;
        } else {
            let s1 = le(data, 0, 2)? as usize;
            let s2 = le(data, 2, 2)? as usize;
            let s3 = le(data, 4, 2)? as usize;
            let seg = regen.div_ceil(4);
            if 3 * seg > regen {
                return bad("bad literal stream sizes");
            }
            let mut at = 6;
            for (len, n) in [(s1, seg), (s2, seg), (s3, seg), (usize::MAX, regen - 3 * seg)] {
                let end = if len == usize::MAX { data.len() } else { at + len };
                let stream = data.get(at..end).ok_or(ZstdError("bad literal stream sizes"))?;
                h.decode_stream(stream, n, &mut self.literals)?;
                at = end;
            }
        }
        Ok(hl + csize)
    }
}

// ---------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------

/// Matches are looked up by a hash of their first 4 bytes: 2^HASH_LOG slots.
const HASH_LOG: u32 = 13;
/// The shortest match worth a sequence (zstd's minimum is 3; 4 is what the hash sees).
const MIN_MATCH: usize = 4;
/// Offsets stay below what the predefined offset table can code (codes up to 28), and
/// positions fit the match table's u32 slots: a bigger input is stored as it is.
const MAX_MATCHED_INPUT: usize = 1 << 28;

/// A predefined FSE distribution turned around for encoding: for each symbol and each state
/// the decoder will be in next, the state to be in now and the bits that lead there.
struct FseEncoder {
    log: u32,
    /// `[symbol << log | next]` -> decoder state.
    state: Vec<u16>,
    /// Per decoder state: the bits it reads and the base it adds them to.
    bits: Vec<u8>,
    base: Vec<u16>,
}

impl FseEncoder {
    fn new(counts: &[i16], log: u32) -> FseEncoder {
        let t = match Fse::from_counts(counts, log) {
            Ok(t) => t,
            // The predefined distributions are checked by a test.
            Err(_) => unreachable!("predefined FSE distributions are valid"),
        };
        let size = 1usize << log;
        let mut state = vec![0u16; counts.len() << log];
        for d in 0..size {
            let (s, nb, base) = (t.symbol[d] as usize, t.bits[d] as usize, t.base[d] as usize);
            // The states of one symbol split [0, size) between them: each takes the next
            // states its bits reach.
            for next in base..(base + (1 << nb)).min(size) {
                state[(s << log) | next] = d as u16;
            }
        }
        FseEncoder {
            log,
            state,
            bits: t.bits,
            base: t.base,
        }
    }

    /// The decoder state that yields `symbol` and then moves to `next`, and the bits (value,
    /// count) that make it move there.
    fn step(&self, symbol: usize, next: usize) -> (usize, u64, u32) {
        let d = self.state[(symbol << self.log) | next] as usize;
        let nb = self.bits[d] as u32;
        (d, (next - self.base[d] as usize) as u64, nb)
    }
}

struct Encoders {
    ll: FseEncoder,
    ml: FseEncoder,
    of: FseEncoder,
}

fn encoders() -> &'static Encoders {
    static E: std::sync::OnceLock<Encoders> = std::sync::OnceLock::new();
    E.get_or_init(|| Encoders {
        ll: FseEncoder::new(&LL_DEFAULT, 6),
        ml: FseEncoder::new(&ML_DEFAULT, 6),
        of: FseEncoder::new(&OF_DEFAULT, 5),
    })
}

/// A forward bitstream, least significant bit first, as the decoder reads it backwards.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter<'_> {
    /// Appends the low `bits` (at most 32) of `v`.
    fn put(&mut self, v: u64, bits: u32) {
        if bits == 0 {
            return;
        }
        self.acc |= (v & ((1u64 << bits) - 1)) << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// The end mark (a 1 bit) and the last byte.
    fn finish(mut self) {
        self.put(1, 1);
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
    }
}

/// One match: literals before it, how far back it copies from, how much.
#[derive(Clone, Copy)]
struct Sequence {
    literals: u32,
    offset: u32,
    len: u32,
}

fn code_of(base: &[u32], v: u32) -> usize {
    base.partition_point(|&b| b <= v) - 1
}

/// Compresses `src` into one zstd frame appended to `out`.
pub fn compress(src: &[u8], out: &mut Vec<u8>) {
    frame_header(src.len(), out);
    if src.len() >= MAX_MATCHED_INPUT {
        stored_blocks(src, out);
        return;
    }
    MATCHER.with(|m| {
        let mut m = m.borrow_mut();
        let m = &mut *m;
        // Entries of earlier frames are below `base`: stale, without clearing the table.
        if m.table.is_empty() || m.base as usize + src.len() >= 1 << 31 {
            m.table = vec![0; 1 << HASH_LOG];
            m.base = 0;
        }
        blocks(src, m, out);
        m.base += src.len() as u32 + 1;
    });
}

fn frame_header(len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC.to_le_bytes());
    // Single segment (the window is the content), no checksum, no dictionary; the content
    // size in the fewest bytes.
    let n = len as u64;
    match n {
        0..=255 => out.extend_from_slice(&[0x20, n as u8]),
        256..=65791 => {
            out.push(0x20 | 0x40);
            out.extend_from_slice(&((n - 256) as u16).to_le_bytes());
        }
        _ if n <= u32::MAX as u64 => {
            out.push(0x20 | 0x80);
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        _ => {
            out.push(0x20 | 0xC0);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

/// Raw blocks of at most 128 KB.
fn stored_blocks(src: &[u8], out: &mut Vec<u8>) {
    let mut chunks = src.chunks(MAX_BLOCK).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0]);
    }
    while let Some(c) = chunks.next() {
        let header = (c.len() << 3) | chunks.peek().is_none() as usize;
        out.extend_from_slice(&(header as u32).to_le_bytes()[..3]);
        out.extend_from_slice(c);
    }
}

/// The match finder's table, kept from frame to frame (a block of a few KB should not pay
/// for clearing 32 KB): slots hold `base + position + 1`.
struct Matcher {
    table: Vec<u32>,
    base: u32,
    seqs: Vec<Sequence>,
    literals: Vec<u8>,
}

thread_local! {
    static MATCHER: std::cell::RefCell<Matcher> = const {
        std::cell::RefCell::new(Matcher {
            table: Vec::new(),
            base: 0,
            seqs: Vec::new(),
            literals: Vec::new(),
        })
    };
}

fn blocks(src: &[u8], m: &mut Matcher, out: &mut Vec<u8>) {
    let mut start = 0;
    loop {
        let end = (start + MAX_BLOCK).min(src.len());
        let last = end == src.len();
        let header_at = out.len();
        out.extend_from_slice(&[0, 0, 0]);
        m.seqs.clear();
        m.literals.clear();
        find_matches(src, start, end, m);
        encode_block(&m.seqs, &m.literals, out);
        let size = out.len() - header_at - 3;
        let header = if size < end - start {
            (size << 3) | (2 << 1) | last as usize
        } else {
            // Not smaller: stored as it is.
            out.truncate(header_at + 3);
            out.extend_from_slice(&src[start..end]);
            ((end - start) << 3) | last as usize
        };
        out[header_at..header_at + 3].copy_from_slice(&(header as u32).to_le_bytes()[..3]);
        if last {
            break;
        }
        start = end;
    }
}

/// Greedy matching over `src[start..end]` (matches may reach back before `start`, within
/// the frame): the sequences, and the literals they leave, in order.
fn find_matches(src: &[u8], start: usize, end: usize, m: &mut Matcher) {
    let read4 = |i: usize| u32::from_le_bytes([src[i], src[i + 1], src[i + 2], src[i + 3]]);
    let hash = |v: u32| (v.wrapping_mul(0x9E37_79B1) >> (32 - HASH_LOG)) as usize;
    let (table, seqs, lits) = (&mut m.table, &mut m.seqs, &mut m.literals);
    let base = m.base as usize;
    let mut anchor = start;
    let mut i = start;
    while i + MIN_MATCH <= end {
        let h = hash(read4(i));
        let slot = table[h] as usize;
        table[h] = (base + i + 1) as u32;
        if slot <= base || read4(slot - base - 1) != read4(i) {
            i += 1;
            continue;
        }
        let mut from = slot - base - 1;
        let mut at = i;
        let mut len = MIN_MATCH;
        while at + len < end && src[from + len] == src[at + len] {
            len += 1;
        }
        // Back over literals that match too.
        while at > anchor && from > 0 && src[at - 1] == src[from - 1] {
            at -= 1;
            from -= 1;
            len += 1;
        }
        seqs.push(Sequence {
            literals: (at - anchor) as u32,
            offset: (at - from) as u32,
            len: len as u32,
        });
        lits.extend_from_slice(&src[anchor..at]);
        i = at + len;
        anchor = i;
        // The match's end is a likely start of the next one.
        if i >= 2 && i + 2 <= end && i - 2 >= start {
            table[hash(read4(i - 2))] = (base + i - 1) as u32;
        }
    }
    lits.extend_from_slice(&src[anchor..end]);
}

/// A compressed block's content: raw literals, then the sequences.
fn encode_block(seqs: &[Sequence], lits: &[u8], out: &mut Vec<u8>) {
    let n = lits.len();
    match n {
        0..=31 => out.push((n << 3) as u8),
        32..=4095 => out.extend_from_slice(&(((n << 4) | (1 << 2)) as u16).to_le_bytes()),
        _ => out.extend_from_slice(&(((n << 4) | (3 << 2)) as u32).to_le_bytes()[..3]),
    }
    out.extend_from_slice(lits);
    let count = seqs.len();
    match count {
        0..=127 => out.push(count as u8),
        128..=0x7EFF => out.extend_from_slice(&[((count >> 8) + 128) as u8, count as u8]),
        _ => {
            out.push(255);
            out.extend_from_slice(&((count - 0x7F00) as u16).to_le_bytes());
        }
    }
    if count == 0 {
        return;
    }
    // Predefined distributions for all three codes.
    out.push(0);
    let e = encoders();
    let mut w = BitWriter { out, acc: 0, n: 0 };
    let (mut ll_state, mut ml_state, mut of_state) = (0, 0, 0);
    // The decoder reads the stream from its end: the encoder writes the last sequence first
    // and each group of fields in the reverse of the order they are read in.
    for (k, s) in seqs.iter().enumerate().rev() {
        let ll_code = code_of(&LL_BASE, s.literals);
        let ml_code = code_of(&ML_BASE, s.len);
        // Offsets as plain values (+3), never as repeat codes.
        let of_value = s.offset + 3;
        let of_code = 31 - of_value.leading_zeros();
        if k + 1 == count {
            ll_state = e.ll.step(ll_code, 0).0;
            ml_state = e.ml.step(ml_code, 0).0;
            of_state = e.of.step(of_code as usize, 0).0;
        } else {
            let (d_of, v_of, nb_of) = e.of.step(of_code as usize, of_state);
            let (d_ml, v_ml, nb_ml) = e.ml.step(ml_code, ml_state);
            let (d_ll, v_ll, nb_ll) = e.ll.step(ll_code, ll_state);
            w.put(v_of, nb_of);
            w.put(v_ml, nb_ml);
            w.put(v_ll, nb_ll);
            (ll_state, ml_state, of_state) = (d_ll, d_ml, d_of);
        }
        w.put((s.literals - LL_BASE[ll_code]) as u64, LL_BITS[ll_code]);
        w.put((s.len - ML_BASE[ml_code]) as u64, ML_BITS[ml_code]);
        w.put((of_value - (1 << of_code)) as u64, of_code);
    }
    w.put(ml_state as u64, e.ml.log);
    w.put(of_state as u64, e.of.log);
    w.put(ll_state as u64, e.ll.log);
    w.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_distributions_are_complete() {
        let sum = |d: &[i16]| d.iter().map(|&c| c.unsigned_abs() as u32).sum::<u32>();
        assert_eq!(sum(&LL_DEFAULT), 64);
        assert_eq!(sum(&ML_DEFAULT), 64);
        assert_eq!(sum(&OF_DEFAULT), 32);
        for (d, log) in [(&LL_DEFAULT[..], 6), (&ML_DEFAULT[..], 6), (&OF_DEFAULT[..], 5)] {
            assert!(Fse::from_counts(d, log).is_ok());
        }
    }

    #[test]
    fn raw_and_rle_blocks() {
        // Frame: magic, FHD 0x20 (single segment, 1-byte content size), size 7; a raw block of 3
        // bytes, then a last RLE block of 4 bytes.
        let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0x20, 7];
        f.extend_from_slice(&[(3 << 3) as u8, 0, 0, b'a', b'b', b'c']);
        f.extend_from_slice(&[((4 << 3) | 2 | 1) as u8, 0, 0, b'z']);
        let mut out = Vec::new();
        decompress(&f, &mut out).unwrap();
        assert_eq!(out, b"abczzzz");
        for cut in 0..f.len() {
            assert!(decompress(&f[..cut], &mut out).is_err() || cut == 0);
        }
    }

    fn vectors() -> Vec<(std::path::PathBuf, usize, u32)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/box/zstd");
        let list = std::fs::read_to_string(dir.join("vectors.txt")).unwrap();
        list.lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (dir.join(f[0]), f[1].parse().unwrap(), f[2].parse().unwrap())
            })
            .collect()
    }

    /// Frames made by the `zstd` command line (levels --fast=5 to 19, with and without the
    /// content checksum, raw/RLE/compressed blocks, multi-block frames that repeat tables);
    /// `vectors.txt` holds each source's length and CRC32-C.
    #[test]
    fn cli_made_frames_decode() {
        let v = vectors();
        assert!(v.len() >= 8);
        let mut out = Vec::new();
        for (p, len, crc) in v {
            decompress(&std::fs::read(&p).unwrap(), &mut out).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(out.len(), len, "{}", p.display());
            assert_eq!(crate::modules::digest::crc32c_update(0, &out), crc, "{}", p.display());
        }
    }

    /// Rows as the WAL writes them, then odd inputs: each round-trips through our decoder.
    #[test]
    fn compressed_frames_round_trip() {
        let mut rows = Vec::new();
        for lsn in 0..3000u32 {
            rows.extend_from_slice(&[0x85, 0x00, 0x03, 0x02, 0x01, 0x03, 0xce]);
            rows.extend_from_slice(&lsn.to_be_bytes());
            rows.extend_from_slice(&[0x04, 0xcb, 0x41, 0xda, 0xc2, 0x9a, 0xe1, 0x17, (lsn >> 4) as u8, 0x00]);
            rows.extend_from_slice(&[0x82, 0x10, 0xcd, 0x02, 0x00, 0x21, 0x93, 0xce]);
            rows.extend_from_slice(&(lsn * 7919 % 100_000).to_be_bytes());
            rows.extend_from_slice(b"\xabsome string");
            rows.extend_from_slice(&[0xcd, (lsn >> 8) as u8, lsn as u8]);
        }
        let mut seed = 7u32;
        let noise: Vec<u8> = (0..300_000)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (seed >> 16) as u8
            })
            .collect();
        let mut inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"a".to_vec(),
            b"abcabcabcabcabcabcabcabcabc".to_vec(),
            vec![0; 1000],
            vec![7; 200_000],
            rows[..2048].to_vec(),
            rows.clone(),
            noise.clone(),
        ];
        let mut mixed = rows.clone();
        mixed.extend_from_slice(&noise[..70_000]);
        mixed.extend_from_slice(&rows[..50_000]);
        inputs.push(mixed);
        let (mut packed, mut back) = (Vec::new(), Vec::new());
        for (k, input) in inputs.iter().enumerate() {
            packed.clear();
            compress(input, &mut packed);
            decompress(&packed, &mut back).unwrap_or_else(|e| panic!("input {k}: {e}"));
            assert!(back == *input, "input {k} comes back different");
        }
        packed.clear();
        compress(&rows[..5000], &mut packed);
        assert!(packed.len() * 3 < 5000, "rows compress: {} bytes", packed.len());
    }

    /// What inputs too big for the match finder get: stored blocks.
    #[test]
    fn stored_frames_round_trip() {
        let mut back = Vec::new();
        for n in [0, 1, MAX_BLOCK, MAX_BLOCK + 1, 3 * MAX_BLOCK + 5] {
            let input: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            let mut packed = Vec::new();
            frame_header(n, &mut packed);
            stored_blocks(&input, &mut packed);
            decompress(&packed, &mut back).unwrap();
            assert!(back == input, "{n} bytes");
        }
    }

    /// The reference decoder (the `zstd` command, when installed) reads our frames too.
    #[test]
    fn the_zstd_command_reads_our_frames() {
        let mut input = Vec::new();
        for i in 0..20_000u32 {
            input.extend_from_slice(format!("row {} key {} some string\n", i, i * 31 % 977).as_bytes());
        }
        let mut packed = Vec::new();
        compress(&input, &mut packed);
        let dir = std::env::temp_dir().join(format!("node-zstd-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("frame.zst");
        std::fs::write(&file, &packed).unwrap();
        let Ok(out) = std::process::Command::new("zstd").arg("-dc").arg(&file).output() else {
            eprintln!("zstd not found: skipped");
            return;
        };
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout == input);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_frames_are_errors_not_panics() {
        let mut seed = 99u32;
        let mut out = Vec::new();
        for (p, _, _) in vectors() {
            let good = std::fs::read(&p).unwrap();
            for _ in 0..40 {
                let mut b = good.clone();
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let i = (seed >> 8) as usize % b.len();
                b[i] ^= 1 << (seed % 8);
                let _ = decompress(&b, &mut out);
                let _ = decompress(&good[..i], &mut out);
            }
        }
    }
}
