//! The replication exchange on the wire, as Tarantool 2.6.0 writes and reads it (spec §1.11,
//! `xrow.c`). Pure functions, no I/O.
//!
//! ```text
//! replica                                   master
//!   VOTE {}                         ──▶
//!                                   ◀──     OK {BALLOT: {...}}              (ballot.rs)
//!   JOIN {INSTANCE_UUID}            ──▶
//!                                   ◀──     OK {VCLOCK: read view}
//!                                   ◀──     INSERT {SPACE_ID, TUPLE} ...    (no lsn: the read view)
//!                                   ◀──     OK {VCLOCK: stop}
//!                                   ◀──     rows {REPLICA_ID, LSN, TIMESTAMP} (the WAL up to stop)
//!                                   ◀──     OK {VCLOCK: now}
//!   SUBSCRIBE {CLUSTER_UUID, INSTANCE_UUID, VCLOCK, SERVER_VERSION, REPLICA_ANON, ID_FILTER}
//!                                   ──▶
//!                                   ◀──     OK {REPLICA_ID: master}{VCLOCK, CLUSTER_UUID}
//!                                   ◀──     rows, heartbeats {REPLICA_ID, TIMESTAMP} ...
//!   OK {VCLOCK: applied}  (acks)    ──▶
//! ```
//!
//! Everything the master streams is an xrow: `ce <u32 length>`, a header map (type, the
//! request's sync when not 0, replica id, group id, lsn, timestamp, tsn, flags, each left
//! out when 0) and a body. Unlike IPROTO replies these carry no schema version.
//!
//! Requests are decoded as 2.6.0's `xrow_decode_subscribe` does: only the keys the request
//! needs are read, keys that are not unsigned are skipped with their values, a key is
//! truncated to 8 bits, and a malformed value is `Invalid MsgPack - <what>` (error 20).

use uuid::Uuid;

use crate::box_::errcode::ER_INVALID_MSGPACK;
use crate::box_::error::ClientError;
use crate::box_::mp::{self, Mp};
use crate::box_::wal::row::{RowRef, GROUP_LOCAL, IPROTO_RAFT};
use crate::box_::wal::vclock::{Vclock, VCLOCK_MAX};
use crate::client_error;
use crate::iproto::codec::keys;

use super::replica_proto::{IPROTO_OK, KEY_ID_FILTER, KEY_REPLICA_ANON};

/// Writes `ce <len>` before a packet built from `start` on.
fn frame(out: &mut [u8], start: usize) {
    // Packets are far below 4 GiB; saturate rather than panic.
    let len = u32::try_from(out.len() - start - 5).unwrap_or(u32::MAX);
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

fn begin(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0xce, 0, 0, 0, 0]);
    start
}

/// A vclock as 2.6 sends it (`mp_encode_vclock_ignore0`): component 0 counts local rows,
/// which are nobody else's business.
pub fn put_vclock(out: &mut Vec<u8>, vclock: &Vclock) {
    let parts: Vec<(u32, i64)> = vclock.iter().filter(|&(id, _)| id != 0).collect();
    mp::write_map_header(out, parts.len() as u32);
    for (id, lsn) in parts {
        mp::write_uint(out, id as u64);
        mp::write_uint(out, lsn.max(0) as u64);
    }
}

/// Appends a header map of `type`, sync (if not 0) and `replica_id` (if not 0).
fn put_header(out: &mut Vec<u8>, kind: u32, sync: u64, replica_id: u32, extra: usize) {
    let n = 1 + (sync != 0) as u32 + (replica_id != 0) as u32 + extra as u32;
    mp::write_map_header(out, n);
    mp::write_uint(out, keys::REQUEST_TYPE as u64);
    mp::write_uint(out, kind as u64);
    if sync != 0 {
        mp::write_uint(out, keys::SYNC as u64);
        mp::write_uint(out, sync);
    }
    if replica_id != 0 {
        mp::write_uint(out, keys::REPLICA_ID as u64);
        mp::write_uint(out, replica_id as u64);
    }
}

/// One WAL (or read view) row, framed, with the request's sync.
pub fn put_row(out: &mut Vec<u8>, sync: u64, row: &RowRef) {
    let start = begin(out);
    row.encode_with_sync(out, sync);
    frame(out, start);
}

/// `OK {VCLOCK: vclock}`: the marks between the stages of a JOIN.
pub fn put_vclock_ok(out: &mut Vec<u8>, sync: u64, vclock: &Vclock) {
    let start = begin(out);
    put_header(out, IPROTO_OK, sync, 0, 0);
    mp::write_map_header(out, 1);
    mp::write_uint(out, keys::VCLOCK as u64);
    put_vclock(out, vclock);
    frame(out, start);
}

/// The answer to SUBSCRIBE: the master's id in the header (the only way a replica learns
/// it), its vclock and replica set in the body.
pub fn put_subscribe_ok(out: &mut Vec<u8>, sync: u64, master_id: u32, vclock: &Vclock, replicaset: &Uuid) {
    let start = begin(out);
    put_header(out, IPROTO_OK, sync, master_id, 0);
    mp::write_map_header(out, 2);
    mp::write_uint(out, keys::VCLOCK as u64);
    put_vclock(out, vclock);
    mp::write_uint(out, keys::CLUSTER_UUID as u64);
    mp::write_str(out, replicaset.hyphenated().to_string().as_bytes());
    frame(out, start);
}

/// A heartbeat: `{type OK, replica id, timestamp}` and no body.
pub fn put_heartbeat(out: &mut Vec<u8>, sync: u64, master_id: u32, timestamp: f64) {
    let start = begin(out);
    put_header(out, IPROTO_OK, sync, master_id, 1);
    mp::write_uint(out, keys::TIMESTAMP as u64);
    mp::write_f64(out, timestamp);
    frame(out, start);
}

/// The election state `{0: 30, 7: 1}{body}` (a RAFT row is local: group 1, no lsn).
pub fn put_raft(out: &mut Vec<u8>, sync: u64, body: &[u8]) {
    let start = begin(out);
    put_header(out, IPROTO_RAFT, sync, 0, 1);
    mp::write_uint(out, keys::GROUP_ID as u64);
    mp::write_uint(out, GROUP_LOCAL as u64);
    out.extend_from_slice(body);
    frame(out, start);
}

/// What a SUBSCRIBE (or JOIN, or an ACK: the same decoder in 2.6) carries.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subscribe {
    pub replicaset_uuid: Option<Uuid>,
    pub instance_uuid: Option<Uuid>,
    pub vclock: Vclock,
    pub version_id: u32,
    pub anon: bool,
    /// Bit `id` set: rows originating from instance `id` are not wanted.
    pub id_filter: u32,
}

/// Which keys a request's decoder reads (2.6 passes NULL for the others, which skips them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Join,
    Subscribe,
    Ack,
}

fn invalid(what: &str) -> ClientError {
    client_error!(ER_INVALID_MSGPACK, what)
}

/// A UUID as `tt_uuid_from_strl` reads one: a 36-character string.
fn read_uuid(data: &[u8], pos: usize) -> Option<(Uuid, usize)> {
    match mp::read(data, pos).ok()? {
        (Mp::Str(s), end) if s.len() == 36 => {
            let text = std::str::from_utf8(s).ok()?;
            // The hyphenated form only (uuid's parser takes others too).
            if [8, 13, 18, 23].iter().any(|&i| s[i] != b'-') {
                return None;
            }
            Uuid::parse_str(text).ok().map(|u| (u, end))
        }
        _ => None,
    }
}

/// `mp_decode_vclock_ignore0`: a map of unsigned ids to unsigned LSNs; component 0 and
/// zero LSNs are dropped. An id Tarantool has no slot for is invalid here too.
pub fn read_vclock(data: &[u8], pos: usize) -> Option<(Vclock, usize)> {
    let (Mp::Map(n), mut p) = mp::read(data, pos).ok()? else {
        return None;
    };
    let mut vclock = Vclock::new();
    for _ in 0..n {
        let (Mp::UInt(id), next) = mp::read(data, p).ok()? else {
            return None;
        };
        let (Mp::UInt(lsn), next) = mp::read(data, next).ok()? else {
            return None;
        };
        p = next;
        if id >= VCLOCK_MAX as u64 || lsn > i64::MAX as u64 {
            return None;
        }
        if lsn > 0 && id != 0 {
            vclock.follow(id as u32, lsn as i64);
        }
    }
    Some((vclock, p))
}

/// Decodes a request body as 2.6.0's `xrow_decode_subscribe`, reading the keys `wanted`.
pub fn decode(body: Option<&[u8]>, wanted: Wanted) -> Result<Subscribe, ClientError> {
    let body = body.ok_or_else(|| invalid("request body"))?;
    if mp::skip(body, 0).is_err() {
        return Err(invalid("request body"));
    }
    let Ok((Mp::Map(n), mut p)) = mp::read(body, 0) else {
        return Err(invalid("request body"));
    };
    let want = |key: u8| match wanted {
        Wanted::Join => key == keys::INSTANCE_UUID,
        Wanted::Ack => key == keys::VCLOCK,
        Wanted::Subscribe => key != keys::CLUSTER_UUID,
    };
    let mut out = Subscribe::default();
    // The whole body passed mp_check: every skip below stays inside it.
    let skip = |p: usize| mp::skip(body, p).map_err(|_| invalid("request body"));
    for _ in 0..n {
        let key = match mp::read(body, p) {
            Ok((Mp::UInt(k), next)) => {
                p = next;
                k as u8
            }
            _ => {
                p = skip(skip(p)?)?;
                continue;
            }
        };
        if !want(key) {
            p = skip(p)?;
            continue;
        }
        match key {
            keys::INSTANCE_UUID => {
                let (u, next) = read_uuid(body, p).ok_or_else(|| invalid("UUID"))?;
                out.instance_uuid = Some(u);
                p = next;
            }
            keys::VCLOCK => {
                let (v, next) = read_vclock(body, p).ok_or_else(|| invalid("invalid VCLOCK"))?;
                out.vclock = v;
                p = next;
            }
            keys::SERVER_VERSION => match mp::read(body, p) {
                Ok((Mp::UInt(v), next)) => {
                    out.version_id = v as u32;
                    p = next;
                }
                _ => return Err(invalid("invalid VERSION")),
            },
            KEY_REPLICA_ANON => match mp::read(body, p) {
                Ok((Mp::Bool(b), next)) => {
                    out.anon = b;
                    p = next;
                }
                _ => return Err(invalid("invalid REPLICA_ANON flag")),
            },
            KEY_ID_FILTER => {
                let Ok((Mp::Array(len), mut q)) = mp::read(body, p) else {
                    return Err(invalid("invalid ID_FILTER"));
                };
                for _ in 0..len {
                    match mp::read(body, q) {
                        Ok((Mp::UInt(id), next)) if id < VCLOCK_MAX as u64 => {
                            out.id_filter |= 1 << id;
                            q = next;
                        }
                        _ => return Err(invalid("invalid ID_FILTER")),
                    }
                }
                p = q;
            }
            _ => p = skip(p)?,
        }
    }
    Ok(out)
}

/// The replica set uuid a SUBSCRIBE names (2.6.0's master does not read it; a replica
/// checks the master's answer instead), for the log. None when absent or malformed.
pub fn replicaset_of(body: Option<&[u8]>) -> Option<Uuid> {
    let body = body?;
    let (Mp::Map(n), mut p) = mp::read(body, 0).ok()? else {
        return None;
    };
    for _ in 0..n {
        let (key, next) = mp::read(body, p).ok()?;
        if key == Mp::UInt(keys::CLUSTER_UUID as u64) {
            return read_uuid(body, next).map(|(u, _)| u);
        }
        p = mp::skip(body, mp::skip(body, p).ok()?).ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::box_::wal::row::{Row, IPROTO_INSERT};

    fn vclock(parts: &[(u32, i64)]) -> Vclock {
        let mut v = Vclock::new();
        for &(id, lsn) in parts {
            v.follow(id, lsn);
        }
        v
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn marks_and_heartbeats_match_tarantool_2_6_bytes() {
        // Captured from 2.6.0: `{0: 0, 1: 5} {38: {1: 13}}`.
        let mut out = Vec::new();
        put_vclock_ok(&mut out, 5, &vclock(&[(0, 1), (1, 13)]));
        assert_eq!(out, hex("ce0000000a8200000105812681010d"));
        // `{0: 0, 1: 9, 2: 1} {38: {1: 13}, 37: uuid}`.
        let rs = Uuid::parse_str("9eed7418-26c5-4b56-8b8c-c235e87ff37c").unwrap();
        out.clear();
        put_subscribe_ok(&mut out, 9, 1, &vclock(&[(1, 13)]), &rs);
        assert_eq!(
            out,
            hex(concat!(
                "ce00000033",
                "83000001090201822681010d25d92439656564373431382d323663352d346235362d",
                "386238632d633233356538376666333763"
            ))
        );
        // `{0: 0, 1: 9, 2: 1, 4: 1795848397.9957774}`.
        out.clear();
        put_heartbeat(&mut out, 9, 1, f64::from_bits(0x41dac29e337fbad1));
        assert_eq!(out, hex("ce000000118400000109020104cb41dac29e337fbad1"));
        // Without a sync the key is left out: `{0: 0, 2: 1, 4: ts}`.
        out.clear();
        put_heartbeat(&mut out, 0, 1, 1.5);
        assert_eq!(&out[5..12], &[0x83, 0x00, 0x00, 0x02, 0x01, 0x04, 0xcb]);
    }

    #[test]
    fn rows_carry_the_sync_after_the_type() {
        // Captured from 2.6.0: `{0: 2, 1: 9, 2: 1, 3: 13, 4: ts} {16: 320, 33: [2, uuid]}`.
        let body = hex(concat!(
            "8210cd0140219202d92431313131313131312d323232322d333333332d343434342d",
            "353535353535353535353535"
        ));
        let row = Row {
            kind: IPROTO_INSERT,
            replica_id: 1,
            lsn: 13,
            timestamp: f64::from_bits(0x41dac29e2d63e665),
            tsn: 13,
            is_commit: true,
            body,
            ..Row::default()
        };
        let mut out = Vec::new();
        put_row(&mut out, 9, &row.as_ref());
        assert_eq!(&out[..5], &hex("ce00000041"));
        assert_eq!(&out[5..24], &hex("85000201090201030d04cb41dac29e2d63e665"));
        // A read view row: `{0: 2, 1: 5} {16: 512, 33: [1, 'a']}` (space id as ce u32).
        out.clear();
        let snap = Row {
            kind: IPROTO_INSERT,
            body: Row::replace_body(512, &hex("9201a161")),
            ..Row::default()
        };
        put_row(&mut out, 5, &snap.as_ref());
        assert_eq!(out, hex("ce0000001182000201058210ce00000200219201a161"));
    }

    #[test]
    fn raft_rows_are_local_and_carry_their_body() {
        let mut out = Vec::new();
        put_raft(&mut out, 0, &hex("83000201010203"));
        // `{0: 30, 7: 1} {0: 2, 1: 1, 2: 3}` as captured from 2.6.3.
        assert_eq!(out, hex("ce0000000c82001e070183000201010203"));
    }

    fn body(pairs: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut b = Vec::new();
        mp::write_map_header(&mut b, pairs.len() as u32);
        for (k, v) in pairs {
            mp::write_uint(&mut b, *k as u64);
            b.extend_from_slice(v);
        }
        b
    }

    fn str_(s: &str) -> Vec<u8> {
        let mut b = Vec::new();
        mp::write_str(&mut b, s.as_bytes());
        b
    }

    const UUID: &str = "11111111-2222-3333-4444-555555555555";

    #[test]
    fn subscribe_decodes_every_key_a_2_6_replica_sends() {
        let b = body(&[
            (0x25, str_("5a75c700-a7d0-4edb-a03f-a802135f8601")),
            (0x24, str_(UUID)),
            (0x26, hex("8201080205")),
            (0x06, hex("ce00020603")),
            (0x50, vec![0xc2]),
            (0x51, hex("9102")),
        ]);
        let s = decode(Some(&b), Wanted::Subscribe).unwrap();
        assert_eq!(s.instance_uuid, Some(Uuid::parse_str(UUID).unwrap()));
        assert_eq!(s.vclock, vclock(&[(1, 8), (2, 5)]));
        assert_eq!(s.version_id, 0x20603);
        assert!(!s.anon);
        assert_eq!(s.id_filter, 1 << 2);
        // The master does not read the replica set (2.6.0 passes NULL for it).
        assert_eq!(s.replicaset_uuid, None);
        assert_eq!(
            replicaset_of(Some(&b)),
            Some(Uuid::parse_str("5a75c700-a7d0-4edb-a03f-a802135f8601").unwrap())
        );
    }

    #[test]
    fn malformed_requests_get_2_6_texts() {
        let msg = |b: Option<&[u8]>, w| decode(b, w).unwrap_err().message;
        assert_eq!(msg(None, Wanted::Subscribe), "Invalid MsgPack - request body");
        assert_eq!(msg(Some(&[0x05]), Wanted::Subscribe), "Invalid MsgPack - request body");
        assert_eq!(
            msg(Some(&[0x82, 0x01]), Wanted::Subscribe),
            "Invalid MsgPack - request body"
        );
        let vclock_array = body(&[(0x26, hex("920102"))]);
        assert_eq!(
            msg(Some(&vclock_array), Wanted::Subscribe),
            "Invalid MsgPack - invalid VCLOCK"
        );
        let vclock_str = body(&[(0x26, [vec![0x81, 0x01], str_("x")].concat())]);
        assert_eq!(msg(Some(&vclock_str), Wanted::Ack), "Invalid MsgPack - invalid VCLOCK");
        let bad_uuid = body(&[(0x24, str_("not-a-uuid"))]);
        assert_eq!(msg(Some(&bad_uuid), Wanted::Join), "Invalid MsgPack - UUID");
        let version = body(&[(0x06, str_("x"))]);
        assert_eq!(
            msg(Some(&version), Wanted::Subscribe),
            "Invalid MsgPack - invalid VERSION"
        );
        let anon = body(&[(0x50, vec![0x01])]);
        assert_eq!(
            msg(Some(&anon), Wanted::Subscribe),
            "Invalid MsgPack - invalid REPLICA_ANON flag"
        );
        let filter = body(&[(0x51, hex("9128"))]);
        assert_eq!(
            msg(Some(&filter), Wanted::Subscribe),
            "Invalid MsgPack - invalid ID_FILTER"
        );
        assert_eq!(decode(Some(&filter), Wanted::Subscribe).unwrap_err().code, 20);
    }

    #[test]
    fn keys_a_request_does_not_need_are_not_checked() {
        // A JOIN reads only the instance uuid; an ACK only the vclock.
        let b = body(&[(0x26, hex("920102")), (0x24, str_(UUID))]);
        assert!(decode(Some(&b), Wanted::Join).is_ok());
        let b = body(&[(0x24, str_("x")), (0x26, hex("810107"))]);
        assert_eq!(decode(Some(&b), Wanted::Ack).unwrap().vclock, vclock(&[(1, 7)]));
        // String keys are skipped with their values; keys are truncated to 8 bits.
        let mut b = vec![0x82];
        b.extend(str_("k"));
        b.extend(str_("v"));
        b.extend(hex("cd0124"));
        b.extend(str_(UUID));
        assert_eq!(
            decode(Some(&b), Wanted::Join).unwrap().instance_uuid,
            Some(Uuid::parse_str(UUID).unwrap())
        );
        // Component 0 and zero LSNs of a remote vclock are dropped.
        let b = body(&[(0x26, hex("83000501000207"))]);
        assert_eq!(decode(Some(&b), Wanted::Ack).unwrap().vclock, vclock(&[(2, 7)]));
    }

    #[test]
    fn truncated_and_mutated_requests_never_panic() {
        let good = body(&[
            (0x24, str_(UUID)),
            (0x26, hex("8201080205")),
            (0x06, hex("ce00020603")),
            (0x51, hex("9102")),
        ]);
        for cut in 0..good.len() {
            assert!(decode(Some(&good[..cut]), Wanted::Subscribe).is_err());
        }
        let mut seed = 0x9e37_79b9u32;
        for _ in 0..20_000 {
            let mut b = good.clone();
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let i = (seed >> 8) as usize % b.len();
            b[i] ^= 1 << (seed % 8);
            let _ = decode(Some(&b), Wanted::Subscribe);
            let _ = replicaset_of(Some(&b));
        }
    }
}
