//! The replication exchange as the replica speaks it (spec/box.md §1.11): the requests it
//! sends and the answers it reads, as Tarantool 2.6's `xrow.c` encodes them. Pure functions
//! over byte slices; no logic.
//!
//! ```text
//! replica                                      master
//!   VOTE        {0: 68}                  ->
//!               {0: 0}{0x29: {1 is_ro, 4 is_loading, 5 is_anon, 2 vclock, 3 gc_vclock}}  <-
//!   AUTH        (as any client; only with a login in the URI)
//!   JOIN        {0: 65}{0x24: instance uuid}  ->
//!               {0: 0}{0x26: vclock of the snapshot sent}                 <-
//!               INSERT rows without LSNs: the snapshot, system spaces first <-
//!               {0: 0}{0x26: vclock}   end of the initial join             <-
//!               rows with replica_id/lsn: the final join (the _cluster insert) <-
//!               {0: 0}{0x26: vclock}   end of the join                     <-
//!   SUBSCRIBE   {0: 66}{0x25 replicaset, 0x24 instance, 0x26 vclock, 0x06 version,
//!                       0x50 anon, [0x51 [ids not to send]]}               ->
//!               {0: 0, 2: master id}{0x26: vclock, 0x25: replicaset uuid}   <-
//!               rows, RAFT {0: 30, 7: 1}, heartbeats {0: 0, 2: id, 4: ts}  <-
//!   ACK         {0: 0}{0x26: vclock}   after writes, at least every replication_timeout ->
//! ```
//!
//! Vclocks travel without component 0 (`mp_encode_vclock_ignore0`): it counts local rows,
//! which mean nothing to another instance. Every packet is a `ce`-prefixed length, a header
//! map and an optional body map; rows decode with [`RowRef::decode`](crate::box_::wal::RowRef).

use std::fmt;

use uuid::Uuid;

use crate::box_::mp::{self, Mp};
use crate::box_::wal::vclock::Vclock;
use crate::iproto::codec::keys;

/// Request types of the exchange.
pub const IPROTO_JOIN: u32 = 65;
pub const IPROTO_SUBSCRIBE: u32 = 66;
pub const IPROTO_VOTE: u32 = 68;
/// A heartbeat is an OK (type 0) row without an LSN; an ACK is an OK with a vclock.
pub const IPROTO_OK: u32 = 0;
/// The bit of an error response's type; the rest is the error code.
pub const IPROTO_TYPE_ERROR: u32 = 0x8000;

/// SUBSCRIBE body keys beyond the common ones.
pub const KEY_REPLICA_ANON: u8 = 0x50;
pub const KEY_ID_FILTER: u8 = 0x51;

/// Keys of the ballot map.
pub const BALLOT_IS_RO: u8 = 0x01;
pub const BALLOT_VCLOCK: u8 = 0x02;
pub const BALLOT_GC_VCLOCK: u8 = 0x03;
pub const BALLOT_IS_LOADING: u8 = 0x04;
pub const BALLOT_IS_ANON: u8 = 0x05;

/// A peer's answer to VOTE: what a bootstrapping instance chooses its master by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ballot {
    /// `box.cfg.read_only` of the peer.
    pub is_ro: bool,
    /// The peer has not finished `box.cfg{}` (or is read-only for another reason).
    pub is_loading: bool,
    pub is_anon: bool,
    pub vclock: Vclock,
    /// The oldest vclock whose rows the peer still keeps.
    pub gc_vclock: Vclock,
}

/// A packet that does not say what the exchange expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError(pub String);

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtoError {}

fn bad(what: &str) -> ProtoError {
    ProtoError(format!("Invalid MsgPack - {what}"))
}

/// `v` without component 0, as vclocks are sent.
pub fn without_local(v: &Vclock) -> Vclock {
    let mut out = Vclock::new();
    for (id, lsn) in v.iter().filter(|(id, _)| *id != 0) {
        out.follow(id, lsn);
    }
    out
}

/// Appends one packet: a `ce` length prefix, the header `{0: kind}`, and the body that
/// `body` writes (none if it writes nothing).
fn packet(out: &mut Vec<u8>, kind: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0xce, 0, 0, 0, 0]);
    mp::write_map_header(out, 1);
    mp::write_uint(out, keys::REQUEST_TYPE as u64);
    mp::write_uint(out, kind as u64);
    body(out);
    // A packet over 4 GiB cannot be built from these requests.
    let len = (out.len() - start - 5) as u32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

fn write_uuid(out: &mut Vec<u8>, uuid: &Uuid) {
    mp::write_str(out, uuid.hyphenated().to_string().as_bytes());
}

fn write_vclock(out: &mut Vec<u8>, v: &Vclock) {
    without_local(v).encode_mp(out);
}

/// VOTE: no body.
pub fn encode_vote(out: &mut Vec<u8>) {
    packet(out, IPROTO_VOTE, |_| {});
}

/// JOIN `{INSTANCE_UUID: uuid}`.
pub fn encode_join(out: &mut Vec<u8>, instance_uuid: &Uuid) {
    packet(out, IPROTO_JOIN, |b| {
        mp::write_map_header(b, 1);
        mp::write_uint(b, keys::INSTANCE_UUID as u64);
        write_uuid(b, instance_uuid);
    });
}

/// What SUBSCRIBE tells the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribe {
    pub replicaset_uuid: Uuid,
    pub instance_uuid: Uuid,
    /// Where to start: rows past it are sent.
    pub vclock: Vclock,
    /// `version_id` of this instance.
    pub version_id: u32,
    pub anon: bool,
    /// Bit i set: do not send rows of instance i (the instance's own, once it writes).
    pub id_filter: u32,
}

/// SUBSCRIBE, keys in `xrow_encode_subscribe`'s order; the filter only when non-empty.
pub fn encode_subscribe(out: &mut Vec<u8>, s: &Subscribe) {
    packet(out, IPROTO_SUBSCRIBE, |b| {
        mp::write_map_header(b, if s.id_filter != 0 { 6 } else { 5 });
        mp::write_uint(b, keys::CLUSTER_UUID as u64);
        write_uuid(b, &s.replicaset_uuid);
        mp::write_uint(b, keys::INSTANCE_UUID as u64);
        write_uuid(b, &s.instance_uuid);
        mp::write_uint(b, keys::VCLOCK as u64);
        write_vclock(b, &s.vclock);
        mp::write_uint(b, keys::SERVER_VERSION as u64);
        mp::write_uint(b, s.version_id as u64);
        mp::write_uint(b, KEY_REPLICA_ANON as u64);
        mp::write_bool(b, s.anon);
        if s.id_filter != 0 {
            mp::write_uint(b, KEY_ID_FILTER as u64);
            mp::write_array_header(b, s.id_filter.count_ones());
            for id in (0..32).filter(|i| s.id_filter & (1 << i) != 0) {
                mp::write_uint(b, id as u64);
            }
        }
    });
}

/// ACK `{0: 0}{VCLOCK: vclock}`: what this instance has written.
pub fn encode_ack(out: &mut Vec<u8>, vclock: &Vclock) {
    packet(out, IPROTO_OK, |b| {
        mp::write_map_header(b, 1);
        mp::write_uint(b, keys::VCLOCK as u64);
        write_vclock(b, vclock);
    });
}

/// The values of a body map's unsigned keys, in order (other keys are skipped).
fn body_entries(body: &[u8], what: &str) -> Result<Vec<(u64, std::ops::Range<usize>)>, ProtoError> {
    let (n, mut pos) = match mp::read(body, 0) {
        Ok((Mp::Map(n), p)) => (n, p),
        _ => return Err(bad(what)),
    };
    let mut out = Vec::new();
    for _ in 0..n {
        let (key, at) = mp::read(body, pos).map_err(|_| bad(what))?;
        let end = mp::skip(body, at).map_err(|_| bad(what))?;
        if let Mp::UInt(k) = key {
            out.push((k, at..end));
        }
        pos = end;
    }
    Ok(out)
}

fn read_bool(raw: &[u8], what: &str) -> Result<bool, ProtoError> {
    match mp::read(raw, 0) {
        Ok((Mp::Bool(b), _)) => Ok(b),
        _ => Err(bad(what)),
    }
}

fn read_vclock(raw: &[u8], what: &str) -> Result<Vclock, ProtoError> {
    let (v, _) = Vclock::decode_mp(raw).map_err(|_| bad(what))?;
    Ok(without_local(&v))
}

fn read_uuid(raw: &[u8], what: &str) -> Result<Uuid, ProtoError> {
    match mp::read(raw, 0) {
        Ok((Mp::Str(s), _)) => std::str::from_utf8(s)
            .ok()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| bad(what)),
        _ => Err(bad(what)),
    }
}

/// The ballot in an OK answer to VOTE (`xrow_decode_ballot`). A body without the BALLOT
/// key gives the default ballot, as Tarantool's decoder does.
pub fn decode_ballot(body: Option<&[u8]>) -> Result<Ballot, ProtoError> {
    let body = body.ok_or_else(|| bad("packet body"))?;
    let mut ballot = Ballot::default();
    let Some((_, at)) = body_entries(body, "packet body")?
        .into_iter()
        .find(|(k, _)| *k == keys::BALLOT as u64)
    else {
        return Ok(ballot);
    };
    let raw = &body[at];
    for (key, at) in body_entries(raw, "packet body")? {
        let value = &raw[at];
        match key as u8 {
            BALLOT_IS_RO => ballot.is_ro = read_bool(value, "packet body")?,
            BALLOT_IS_LOADING => ballot.is_loading = read_bool(value, "packet body")?,
            BALLOT_IS_ANON => ballot.is_anon = read_bool(value, "packet body")?,
            BALLOT_VCLOCK => ballot.vclock = read_vclock(value, "packet body")?,
            BALLOT_GC_VCLOCK => ballot.gc_vclock = read_vclock(value, "packet body")?,
            _ => {}
        }
    }
    Ok(ballot)
}

/// The vclock of an OK `{VCLOCK: vclock}` (JOIN's stage markers).
pub fn decode_vclock_body(body: Option<&[u8]>) -> Result<Vclock, ProtoError> {
    let body = body.ok_or_else(|| bad("packet body"))?;
    body_entries(body, "packet body")?
        .into_iter()
        .find(|(k, _)| *k == keys::VCLOCK as u64)
        .map(|(_, at)| read_vclock(&body[at], "invalid vclock"))
        .unwrap_or_else(|| Err(bad("invalid vclock")))
}

/// SUBSCRIBE's answer: the master's vclock and, from 2.1.1 on, its replica set UUID.
pub fn decode_subscribe_response(body: Option<&[u8]>) -> Result<(Vclock, Option<Uuid>), ProtoError> {
    let body = body.ok_or_else(|| bad("packet body"))?;
    let mut vclock = Vclock::new();
    let mut uuid = None;
    for (key, at) in body_entries(body, "packet body")? {
        match key as u8 {
            keys::VCLOCK => vclock = read_vclock(&body[at], "invalid vclock")?,
            keys::CLUSTER_UUID => uuid = Some(read_uuid(&body[at], "UUID")?),
            _ => {}
        }
    }
    Ok((vclock, uuid))
}

/// An error answer's code and message (`{0x31: message}`; the 0x52 stack repeats it).
pub fn decode_error(kind: u32, body: Option<&[u8]>) -> (u32, String) {
    let code = kind & !IPROTO_TYPE_ERROR;
    let message = body
        .and_then(|b| body_entries(b, "error").ok().map(|e| (b, e)))
        .and_then(|(b, entries)| {
            entries
                .into_iter()
                .find(|(k, _)| *k == keys::ERROR_24 as u64)
                .and_then(|(_, at)| match mp::read(&b[at], 0) {
                    Ok((Mp::Str(s), _)) => Some(String::from_utf8_lossy(s).into_owned()),
                    _ => None,
                })
        })
        .unwrap_or_default();
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::box_::wal::RowRef;

    fn vclock(pairs: &[(u32, i64)]) -> Vclock {
        let mut v = Vclock::new();
        for &(id, lsn) in pairs {
            v.follow(id, lsn);
        }
        v
    }

    /// The packet after its 5-byte length prefix, checking the prefix.
    fn unframe(out: &[u8]) -> &[u8] {
        assert_eq!(out[0], 0xce);
        let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        assert_eq!(len, out.len() - 5);
        &out[5..]
    }

    #[test]
    fn vote_and_ack_are_the_captured_bytes() {
        // C1> len=3 prefix=ce00000003 {0: 68}
        let mut out = Vec::new();
        encode_vote(&mut out);
        assert_eq!(out, [0xce, 0, 0, 0, 3, 0x81, 0x00, 0x44]);
        // C1> len=8 prefix=ce00000008 {0: 0} {38: {1: 8}}; component 0 is never sent.
        out.clear();
        encode_ack(&mut out, &vclock(&[(0, 5), (1, 8)]));
        assert_eq!(out, [0xce, 0, 0, 0, 8, 0x81, 0x00, 0x00, 0x81, 0x26, 0x81, 0x01, 0x08]);
    }

    #[test]
    fn subscribe_matches_the_capture() {
        // C1> len=97 {0: 66} {37: rs, 36: inst, 38: {1: 8}, 6: 132611, 80: False, 81: [2]}
        let s = Subscribe {
            replicaset_uuid: Uuid::parse_str("5a75c700-a7d0-4edb-a03f-a802135f8601").unwrap(),
            instance_uuid: Uuid::parse_str("d86dfa21-d3b8-4d6c-b0a3-f0c9de7d8953").unwrap(),
            vclock: vclock(&[(1, 8)]),
            version_id: 132611,
            anon: false,
            id_filter: 1 << 2,
        };
        let mut out = Vec::new();
        encode_subscribe(&mut out, &s);
        let p = unframe(&out);
        assert_eq!(p.len(), 97);
        let (row, n) = RowRef::decode(p).unwrap();
        assert_eq!((row.kind, n), (IPROTO_SUBSCRIBE, p.len()));
        let entries = body_entries(row.body, "t").unwrap();
        let keys: Vec<u64> = entries.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [0x25, 0x24, 0x26, 0x06, 0x50, 0x51]);
        assert_eq!(&row.body[entries[5].1.clone()], &[0x91, 0x02]);
        // No filter while orphan: five keys.
        out.clear();
        encode_subscribe(&mut out, &Subscribe { id_filter: 0, ..s });
        let (row, _) = RowRef::decode(unframe(&out)).unwrap();
        assert_eq!(row.body[0], 0x85);
    }

    #[test]
    fn join_carries_the_uuid_as_a_string() {
        let uuid = Uuid::parse_str("d86dfa21-d3b8-4d6c-b0a3-f0c9de7d8953").unwrap();
        let mut out = Vec::new();
        encode_join(&mut out, &uuid);
        // C1> len=43 {0: 65} {36: 'd86dfa21-...'}
        let p = unframe(&out);
        assert_eq!(p.len(), 43);
        let (row, _) = RowRef::decode(p).unwrap();
        assert_eq!(row.kind, IPROTO_JOIN);
        assert_eq!(&row.body[..3], &[0x81, 0x24, 0xd9]);
        assert!(row.body.ends_with(b"d86dfa21-d3b8-4d6c-b0a3-f0c9de7d8953"));
    }

    #[test]
    fn ballot_of_the_capture_decodes() {
        // {41: {1: False, 4: False, 5: False, 2: {1: 7}, 3: {}}}
        let body = [
            0x81, 0x29, 0x85, 0x01, 0xc2, 0x04, 0xc2, 0x05, 0xc2, 0x02, 0x81, 0x01, 0x07, 0x03, 0x80,
        ];
        let b = decode_ballot(Some(&body)).unwrap();
        assert_eq!(
            b,
            Ballot {
                vclock: vclock(&[(1, 7)]),
                ..Ballot::default()
            }
        );
        let ro = [0x81, 0x29, 0x82, 0x01, 0xc3, 0x04, 0xc3];
        let b = decode_ballot(Some(&ro)).unwrap();
        assert!(b.is_ro && b.is_loading);
        // No ballot key: the defaults. Garbage: an error, never a panic.
        assert_eq!(decode_ballot(Some(&[0x80])).unwrap(), Ballot::default());
        assert!(decode_ballot(Some(&[0x81, 0x29, 0x81, 0x01, 0x05])).is_err());
        assert!(decode_ballot(None).is_err());
        for cut in 0..body.len() {
            let _ = decode_ballot(Some(&body[..cut]));
        }
    }

    #[test]
    fn subscribe_response_and_vclock_markers_decode() {
        // {38: {1: 8}, 37: '5a75c700-...'}
        let mut body = vec![0x82, 0x26, 0x81, 0x01, 0x08, 0x25, 0xd9, 36];
        body.extend_from_slice(b"5a75c700-a7d0-4edb-a03f-a802135f8601");
        let (v, uuid) = decode_subscribe_response(Some(&body)).unwrap();
        assert_eq!(v, vclock(&[(1, 8)]));
        assert_eq!(
            uuid.map(|u| u.to_string()).as_deref(),
            Some("5a75c700-a7d0-4edb-a03f-a802135f8601")
        );
        assert_eq!(
            decode_vclock_body(Some(&[0x81, 0x26, 0x81, 0x01, 0x07])).unwrap(),
            vclock(&[(1, 7)])
        );
        assert!(decode_vclock_body(Some(&[0x80])).is_err());
        assert!(decode_subscribe_response(Some(&[0x81, 0x25, 0x01])).is_err());
    }

    #[test]
    fn errors_give_code_and_message() {
        let mut body = vec![0x81, 0x31, 0xa5];
        body.extend_from_slice(b"boom!");
        assert_eq!(decode_error(0x8000 | 116, Some(&body)), (116, "boom!".into()));
        assert_eq!(decode_error(0x8000 | 3, None), (3, String::new()));
    }
}
