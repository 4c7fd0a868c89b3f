//! `Row`: Tarantool's xrow, a header map plus an already-encoded body (docs/box.md).
//!
//! Header encoding mirrors `xrow_header_encode` of 2.6 so files are byte-identical: keys in the
//! order type, replica_id, group_id, lsn, timestamp, tsn, flags; zero replica_id, group_id,
//! lsn and timestamp are left out; tsn is written as `lsn - tsn` (wrapping: a local row inside
//! a global transaction has a smaller lsn than its tsn) and only for rows of multi-statement
//! transactions; the commit flag only on the last row of one. A row without a tsn key is a
//! single-statement transaction: `tsn = lsn`, `is_commit`.

use super::mp::{put_f64, put_uint, Cursor, MpError, MpResult};

pub const IPROTO_SELECT: u32 = 1;
pub const IPROTO_INSERT: u32 = 2;
pub const IPROTO_REPLACE: u32 = 3;
pub const IPROTO_UPDATE: u32 = 4;
pub const IPROTO_DELETE: u32 = 5;
pub const IPROTO_UPSERT: u32 = 9;
pub const IPROTO_NOP: u32 = 12;
/// Raft term and vote (local group) and the synchronous queue's decisions.
pub const IPROTO_RAFT: u32 = 30;
pub const IPROTO_RAFT_PROMOTE: u32 = 31;
pub const IPROTO_RAFT_CONFIRM: u32 = 40;
pub const IPROTO_RAFT_ROLLBACK: u32 = 41;

pub const IPROTO_REQUEST_TYPE: u8 = 0x00;
pub const IPROTO_SYNC: u8 = 0x01;
pub const IPROTO_REPLICA_ID: u8 = 0x02;
pub const IPROTO_LSN: u8 = 0x03;
pub const IPROTO_TIMESTAMP: u8 = 0x04;
pub const IPROTO_SCHEMA_VERSION: u8 = 0x05;
pub const IPROTO_SERVER_VERSION: u8 = 0x06;
pub const IPROTO_GROUP_ID: u8 = 0x07;
pub const IPROTO_TSN: u8 = 0x08;
pub const IPROTO_FLAGS: u8 = 0x09;
pub const IPROTO_FLAG_COMMIT: u64 = 0x01;

pub const IPROTO_SPACE_ID: u8 = 0x10;
pub const IPROTO_INDEX_ID: u8 = 0x11;
pub const IPROTO_INDEX_BASE: u8 = 0x15;
pub const IPROTO_KEY: u8 = 0x20;
pub const IPROTO_TUPLE: u8 = 0x21;
pub const IPROTO_OPS: u8 = 0x28;

/// Rows of spaces with `group_id` 1 are local: not replicated, counted in vclock component 0.
pub const GROUP_LOCAL: u32 = 1;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    /// IPROTO request type: INSERT 2, REPLACE 3, UPDATE 4, DELETE 5, UPSERT 9, NOP 12, ...
    pub kind: u32,
    pub replica_id: u32,
    pub lsn: i64,
    pub timestamp: f64,
    pub group_id: u32,
    /// LSN of the transaction's first row.
    pub tsn: i64,
    /// Set on a transaction's last row.
    pub is_commit: bool,
    /// A MessagePack map; empty for NOP.
    pub body: Vec<u8>,
}

/// A decoded row whose body still lives in the block it was read from: recovery streams these
/// without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RowRef<'a> {
    pub kind: u32,
    pub replica_id: u32,
    pub lsn: i64,
    pub timestamp: f64,
    pub group_id: u32,
    pub tsn: i64,
    pub is_commit: bool,
    pub body: &'a [u8],
}

impl Row {
    pub fn as_ref(&self) -> RowRef<'_> {
        RowRef {
            kind: self.kind,
            replica_id: self.replica_id,
            lsn: self.lsn,
            timestamp: self.timestamp,
            group_id: self.group_id,
            tsn: self.tsn,
            is_commit: self.is_commit,
            body: &self.body,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        self.as_ref().encode(out)
    }

    /// Decodes one row from the start of `buf` (the rest of a block); returns it and its length.
    pub fn decode(buf: &[u8]) -> MpResult<(Row, usize)> {
        let (r, n) = RowRef::decode(buf)?;
        Ok((r.to_row(), n))
    }

    /// A `{SPACE_ID: space_id, TUPLE: tuple}` body, the space id as a fixed `ce` u32 as
    /// Tarantool's `request_replace_body` writes it into snapshots.
    pub fn replace_body(space_id: u32, tuple: &[u8]) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + tuple.len());
        put_replace_body(&mut b, space_id, tuple);
        b
    }
}

pub(crate) fn put_replace_body(out: &mut Vec<u8>, space_id: u32, tuple: &[u8]) {
    out.extend_from_slice(&[0x82, IPROTO_SPACE_ID, 0xce]);
    out.extend_from_slice(&space_id.to_be_bytes());
    out.push(IPROTO_TUPLE);
    out.extend_from_slice(tuple);
}

fn err<T>(offset: usize, what: &'static str) -> MpResult<T> {
    Err(MpError { offset, what })
}

impl<'a> RowRef<'a> {
    pub fn to_row(&self) -> Row {
        Row {
            kind: self.kind,
            replica_id: self.replica_id,
            lsn: self.lsn,
            timestamp: self.timestamp,
            group_id: self.group_id,
            tsn: self.tsn,
            is_commit: self.is_commit,
            body: self.body.to_vec(),
        }
    }

    /// Appends header and body. A NOP's body is never written: readers (Tarantool's too) do
    /// not look for one.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_with_sync(out, 0)
    }

    /// [`encode`](Self::encode) with a request's sync after the type, as a relay sends rows
    /// to a replica (`xrow_header_encode`: the key is left out when the sync is 0).
    pub fn encode_with_sync(&self, out: &mut Vec<u8>, sync: u64) {
        let map_at = out.len();
        out.push(0x80);
        let mut n = 1u8;
        put_uint(out, IPROTO_REQUEST_TYPE as u64);
        put_uint(out, self.kind as u64);
        if sync != 0 {
            put_uint(out, IPROTO_SYNC as u64);
            put_uint(out, sync);
            n += 1;
        }
        if self.replica_id != 0 {
            put_uint(out, IPROTO_REPLICA_ID as u64);
            put_uint(out, self.replica_id as u64);
            n += 1;
        }
        if self.group_id != 0 {
            put_uint(out, IPROTO_GROUP_ID as u64);
            put_uint(out, self.group_id as u64);
            n += 1;
        }
        if self.lsn != 0 {
            put_uint(out, IPROTO_LSN as u64);
            put_uint(out, self.lsn as u64);
            n += 1;
        }
        if self.timestamp != 0.0 {
            put_uint(out, IPROTO_TIMESTAMP as u64);
            put_f64(out, self.timestamp);
            n += 1;
        }
        if self.tsn != 0 {
            if self.tsn != self.lsn || !self.is_commit {
                put_uint(out, IPROTO_TSN as u64);
                put_uint(out, self.lsn.wrapping_sub(self.tsn) as u64);
                n += 1;
            }
            if self.is_commit && self.tsn != self.lsn {
                put_uint(out, IPROTO_FLAGS as u64);
                put_uint(out, IPROTO_FLAG_COMMIT);
                n += 1;
            }
        }
        out[map_at] = 0x80 | n;
        if self.kind != IPROTO_NOP {
            out.extend_from_slice(self.body);
        }
    }

    /// Decodes one row from the start of `buf`, the rest of a block: a body follows the header
    /// unless the block ends there or the row is a NOP. Any key order; unknown keys skipped.
    pub fn decode(buf: &'a [u8]) -> MpResult<(RowRef<'a>, usize)> {
        let mut c = Cursor::new(buf);
        let mut row = RowRef::default();
        let n = c.read_map_len()?;
        let mut tsn_diff = None;
        let mut flags = 0u64;
        for _ in 0..n {
            let key_at = c.pos();
            let key = c.read_uint()?;
            let at = c.pos();
            match key {
                k if k == IPROTO_REQUEST_TYPE as u64 => {
                    row.kind = u32::try_from(c.read_uint()?).or_else(|_| err(at, "request type out of range"))?
                }
                k if k == IPROTO_REPLICA_ID as u64 => {
                    row.replica_id = u32::try_from(c.read_uint()?).or_else(|_| err(at, "replica id out of range"))?
                }
                k if k == IPROTO_GROUP_ID as u64 => {
                    row.group_id = u32::try_from(c.read_uint()?).or_else(|_| err(at, "group id out of range"))?
                }
                k if k == IPROTO_LSN as u64 => {
                    row.lsn = i64::try_from(c.read_uint()?).or_else(|_| err(at, "lsn out of range"))?
                }
                k if k == IPROTO_TIMESTAMP as u64 => row.timestamp = c.read_f64()?,
                k if k == IPROTO_TSN as u64 => tsn_diff = Some(c.read_uint()?),
                k if k == IPROTO_FLAGS as u64 => flags = c.read_uint()?,
                k if k == IPROTO_SYNC as u64 || k == IPROTO_SCHEMA_VERSION as u64 => {
                    c.read_uint()?;
                }
                k if k > u32::MAX as u64 => return err(key_at, "header key out of range"),
                _ => c.skip()?,
            }
        }
        match tsn_diff {
            Some(d) => {
                row.tsn = row.lsn.wrapping_sub(d as i64);
                row.is_commit = flags & IPROTO_FLAG_COMMIT != 0;
            }
            None => {
                row.tsn = row.lsn;
                row.is_commit = true;
            }
        }
        let header_end = c.pos();
        if !c.is_empty() && row.kind != IPROTO_NOP {
            c.skip()?;
            row.body = &buf[header_end..c.pos()];
        }
        Ok((row, c.pos()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(lsn: i64, tsn: i64, is_commit: bool) -> Row {
        Row {
            kind: IPROTO_INSERT,
            replica_id: 1,
            lsn,
            timestamp: 1_600_000_000.25,
            group_id: 0,
            tsn,
            is_commit,
            body: Row::replace_body(512, &[0x92, 0x01, 0xa1, b'a']),
        }
    }

    fn round_trip(r: &Row) -> Vec<u8> {
        let mut b = Vec::new();
        r.encode(&mut b);
        let (d, n) = Row::decode(&b).unwrap();
        assert_eq!(n, b.len());
        assert_eq!(&d, r);
        b
    }

    #[test]
    fn single_statement_rows_carry_no_tsn() {
        let b = round_trip(&row(5, 5, true));
        // {0: 2, 2: 1, 3: 5, 4: double}: exactly what Tarantool writes.
        assert_eq!(&b[..7], &[0x84, 0x00, 0x02, 0x02, 0x01, 0x03, 0x05]);
        assert_eq!(b[7], 0x04);
        assert_eq!(b.len(), 17 + 12);
    }

    #[test]
    fn multi_statement_rows_carry_tsn_diff_and_commit_flag() {
        let first = round_trip(&row(9, 9, false));
        assert_eq!(&first[17..19], &[0x08, 0x00]);
        let last = round_trip(&row(11, 9, true));
        assert_eq!(&last[17..21], &[0x08, 0x02, 0x09, 0x01]);
        // A local row inside a global transaction: lsn from component 0, below the tsn.
        let local = Row {
            replica_id: 0,
            group_id: GROUP_LOCAL,
            ..row(1, 9, false)
        };
        let b = round_trip(&local);
        assert_eq!(&b[..5], &[0x85, 0x00, 0x02, 0x07, 0x01]);
        assert!(b
            .windows(10)
            .any(|w| w == [0x08, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf8]));
    }

    #[test]
    fn nop_has_no_body_and_rows_follow_each_other() {
        let nop = Row {
            kind: IPROTO_NOP,
            body: Vec::new(),
            ..row(12, 9, true)
        };
        let mut b = Vec::new();
        nop.encode(&mut b);
        row(13, 13, true).encode(&mut b);
        let (a, n) = RowRef::decode(&b).unwrap();
        assert_eq!(a.to_row(), nop);
        let (c, m) = RowRef::decode(&b[n..]).unwrap();
        assert_eq!(c.lsn, 13);
        assert_eq!(n + m, b.len());
    }

    #[test]
    fn decode_tolerates_key_order_and_unknown_keys() {
        // {0x03: 7, 0x01: sync 99, 0x05: schema 3, 0x42: [1, 2], 0x00: 5, 0x02: 4} {0x10: 1}
        let b = [
            0x86, 0x03, 0x07, 0x01, 0x63, 0x05, 0x03, 0x42, 0x92, 1, 2, 0x00, 0x05, 0x02, 0x04, 0x81, 0x10, 0x01,
        ];
        let (r, n) = RowRef::decode(&b).unwrap();
        assert_eq!(n, b.len());
        assert_eq!((r.kind, r.replica_id, r.lsn, r.tsn, r.is_commit), (5, 4, 7, 7, true));
        assert_eq!(r.body, &[0x81, 0x10, 0x01]);
    }

    #[test]
    fn malformed_rows_are_errors_not_panics() {
        let mut good = Vec::new();
        row(5, 3, true).encode(&mut good);
        for cut in 0..good.len() {
            let _ = RowRef::decode(&good[..cut]);
        }
        assert!(RowRef::decode(&good[..good.len() - 1]).is_err());
        assert!(RowRef::decode(&[0x91, 0x00]).is_err());
        assert!(RowRef::decode(&[0x81, 0x04, 0x01]).is_err()); // timestamp must be a double
        assert!(RowRef::decode(&[0x81, 0x03, 0xcf, 0xff, 0, 0, 0, 0, 0, 0, 0]).is_err()); // lsn > i64
        assert!(RowRef::decode(&[0x81, 0xa1, b'x', 0x01]).is_err()); // string key
        let mut seed = 0x1234_5678u32;
        for _ in 0..20_000 {
            let mut b = good.clone();
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let i = (seed >> 8) as usize % b.len();
            b[i] ^= 1 << (seed % 8);
            let _ = RowRef::decode(&b);
        }
    }
}
