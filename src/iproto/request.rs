//! Client-side request encoding: the packets net.box sends (spec/box.md §1.2–1.5), byte for
//! byte as Tarantool 2.6's `net_box.c` writes them.
//!
//! ```text
//!  ce <u32 len>  82 01 <sync> 00 <type>  <body map>
//!  '-- fixed --' '------ header -------' '---------'
//! ```
//!
//! The length prefix is always the 5-byte `ce` form (net.box reserves it before encoding and
//! patches it after), the header lists SYNC before REQUEST_TYPE, and body keys come in
//! net.box's order (SELECT: space, index, iterator, offset, limit, key). Keys, tuples and
//! arguments arrive here already encoded as MessagePack: turning Lua values into
//! MessagePack is the caller's business. Each function appends one whole packet to `out`,
//! so many requests can be queued into one buffer and written together.

use super::codec::{keys, RequestType};
use crate::box_::chap_sha1::{self, SCRAMBLE_SIZE};
use crate::box_::mp;

/// Bytes of the length prefix: `ce` and a big-endian u32.
const LEN_PREFIX: usize = 5;

/// The name of the only authentication method 2.6 knows.
const CHAP_SHA1: &[u8] = b"chap-sha1";

/// Starts a packet: the length placeholder and the header. Returns where the packet began.
fn begin(out: &mut Vec<u8>, sync: u64, kind: RequestType) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0xce, 0, 0, 0, 0]);
    mp::write_map_header(out, 2);
    mp::write_uint(out, keys::SYNC as u64);
    mp::write_uint(out, sync);
    mp::write_uint(out, keys::REQUEST_TYPE as u64);
    mp::write_uint(out, kind.code() as u64);
    start
}

/// Patches the length prefix of the packet that began at `start`.
fn finish(out: &mut [u8], start: usize) {
    // A request over 4 GiB cannot be sent at all; the server would refuse it (2 GiB max).
    let len = (out.len() - start - LEN_PREFIX) as u32;
    out[start + 1..start + LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
}

fn key(out: &mut Vec<u8>, k: u8) {
    mp::write_uint(out, k as u64);
}

/// PING: no body.
pub fn ping(out: &mut Vec<u8>, sync: u64) {
    let start = begin(out, sync, RequestType::Ping);
    finish(out, start);
}

/// AUTH with CHAP-SHA1: `{USER_NAME: user, TUPLE: ['chap-sha1', scramble]}`. The scramble is
/// sent as a MessagePack str, as net.box does (the server takes str or bin).
pub fn auth(out: &mut Vec<u8>, sync: u64, user: &[u8], password: &[u8], salt: &[u8]) {
    let scramble: [u8; SCRAMBLE_SIZE] = chap_sha1::scramble(salt, password);
    let start = begin(out, sync, RequestType::Auth);
    mp::write_map_header(out, 2);
    key(out, keys::USER_NAME);
    mp::write_str(out, user);
    key(out, keys::TUPLE);
    mp::write_array_header(out, 2);
    mp::write_str(out, CHAP_SHA1);
    mp::write_str(out, &scramble);
    finish(out, start);
}

/// CALL (1.7+) or CALL_16: `{FUNCTION_NAME: name, TUPLE: args}`; `args` is an array.
pub fn call(out: &mut Vec<u8>, sync: u64, kind: RequestType, name: &[u8], args: &[u8]) {
    let start = begin(out, sync, kind);
    mp::write_map_header(out, 2);
    key(out, keys::FUNCTION_NAME);
    mp::write_str(out, name);
    key(out, keys::TUPLE);
    out.extend_from_slice(args);
    finish(out, start);
}

/// EVAL: `{EXPR: expr, TUPLE: args}`.
pub fn eval(out: &mut Vec<u8>, sync: u64, expr: &[u8], args: &[u8]) {
    let start = begin(out, sync, RequestType::Eval);
    mp::write_map_header(out, 2);
    key(out, keys::EXPR);
    mp::write_str(out, expr);
    key(out, keys::TUPLE);
    out.extend_from_slice(args);
    finish(out, start);
}

/// What a SELECT asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Select {
    pub space_id: u32,
    pub index_id: u32,
    /// Raw iterator code; the server checks it.
    pub iterator: u32,
    pub offset: u32,
    pub limit: u32,
}

/// SELECT: `{SPACE_ID, INDEX_ID, ITERATOR, OFFSET, LIMIT, KEY}` in that order.
pub fn select(out: &mut Vec<u8>, sync: u64, s: &Select, key_mp: &[u8]) {
    let start = begin(out, sync, RequestType::Select);
    mp::write_map_header(out, 6);
    for (k, v) in [
        (keys::SPACE_ID, s.space_id),
        (keys::INDEX_ID, s.index_id),
        (keys::ITERATOR, s.iterator),
        (keys::OFFSET, s.offset),
        (keys::LIMIT, s.limit),
    ] {
        key(out, k);
        mp::write_uint(out, v as u64);
    }
    key(out, keys::KEY);
    out.extend_from_slice(key_mp);
    finish(out, start);
}

/// INSERT or REPLACE: `{SPACE_ID, TUPLE}`.
pub fn insert(out: &mut Vec<u8>, sync: u64, kind: RequestType, space_id: u32, tuple: &[u8]) {
    let start = begin(out, sync, kind);
    mp::write_map_header(out, 2);
    key(out, keys::SPACE_ID);
    mp::write_uint(out, space_id as u64);
    key(out, keys::TUPLE);
    out.extend_from_slice(tuple);
    finish(out, start);
}

/// DELETE: `{SPACE_ID, INDEX_ID, KEY}`.
pub fn delete(out: &mut Vec<u8>, sync: u64, space_id: u32, index_id: u32, key_mp: &[u8]) {
    let start = begin(out, sync, RequestType::Delete);
    mp::write_map_header(out, 3);
    key(out, keys::SPACE_ID);
    mp::write_uint(out, space_id as u64);
    key(out, keys::INDEX_ID);
    mp::write_uint(out, index_id as u64);
    key(out, keys::KEY);
    out.extend_from_slice(key_mp);
    finish(out, start);
}

/// UPDATE: `{SPACE_ID, INDEX_ID, INDEX_BASE: 1, TUPLE: ops, KEY}`. net.box sends field
/// numbers as Lua writes them, 1-based, and says so with INDEX_BASE.
pub fn update(out: &mut Vec<u8>, sync: u64, space_id: u32, index_id: u32, key_mp: &[u8], ops: &[u8]) {
    let start = begin(out, sync, RequestType::Update);
    mp::write_map_header(out, 5);
    key(out, keys::SPACE_ID);
    mp::write_uint(out, space_id as u64);
    key(out, keys::INDEX_ID);
    mp::write_uint(out, index_id as u64);
    key(out, keys::INDEX_BASE);
    mp::write_uint(out, 1);
    key(out, keys::TUPLE);
    out.extend_from_slice(ops);
    key(out, keys::KEY);
    out.extend_from_slice(key_mp);
    finish(out, start);
}

/// UPSERT: `{SPACE_ID, INDEX_BASE: 1, OPS, TUPLE}`.
pub fn upsert(out: &mut Vec<u8>, sync: u64, space_id: u32, tuple: &[u8], ops: &[u8]) {
    let start = begin(out, sync, RequestType::Upsert);
    mp::write_map_header(out, 4);
    key(out, keys::SPACE_ID);
    mp::write_uint(out, space_id as u64);
    key(out, keys::INDEX_BASE);
    mp::write_uint(out, 1);
    key(out, keys::OPS);
    out.extend_from_slice(ops);
    key(out, keys::TUPLE);
    out.extend_from_slice(tuple);
    finish(out, start);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iproto::codec::{decode_request, next_packet, Body, PACKET_SIZE_MAX};

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex"))
            .collect()
    }

    /// The one packet in `out`, checked for a `ce` prefix of the right length.
    fn packet(out: &[u8]) -> &[u8] {
        let frame = next_packet(out, PACKET_SIZE_MAX).expect("frames").expect("whole");
        assert_eq!(out[0], 0xce);
        assert_eq!(frame.consumed, out.len());
        &out[frame.packet]
    }

    #[test]
    fn select_is_byte_identical_to_net_box() {
        // spec/box-observed/iproto/netbox_conn.log: the _vspace fetch, sync 2.
        let mut out = Vec::new();
        let s = Select {
            space_id: 281,
            index_id: 0,
            iterator: 2,
            offset: 0,
            limit: u32::MAX,
        };
        select(&mut out, 2, &s, &[0x90]);
        assert_eq!(
            out,
            hex("ce 00 00 00 18 82 01 02 00 01 86 10 cd 01 19 11 00 14 02 13 00 12 ce ff ff ff ff 20 90")
        );
    }

    #[test]
    fn ping_call_eval_match_the_capture() {
        let mut out = Vec::new();
        ping(&mut out, 5);
        assert_eq!(out, hex("ce 00 00 00 05 82 01 05 00 40"));
        out.clear();
        call(&mut out, 6, RequestType::Call, b"add", &[0x92, 0x01, 0x02]);
        assert_eq!(out, hex("ce 00 00 00 0f 82 01 06 00 0a 82 22 a3 61 64 64 21 92 01 02"));
        out.clear();
        eval(&mut out, 7, b"return 1, 2", &[0x90]);
        let req = decode_request(packet(&out)).expect("decodes");
        assert_eq!((req.sync, req.kind), (7, RequestType::Eval));
        assert!(matches!(
            req.body,
            Body::Eval {
                expr: b"return 1, 2",
                args: [0x90]
            }
        ));
    }

    #[test]
    fn auth_carries_the_chap_sha1_scramble_as_str() {
        // spec/box.md §1.8 test vector: salt line and password 'pass'.
        let salt = crate::modules::digest::base64_decode(b"1aaQFi0HmrsWbrOi1HBHpqrRvJsXCjB7rFCRkZm7vDY=");
        let mut out = Vec::new();
        auth(&mut out, 1, b"test", b"pass", &salt);
        let mut expected = hex("ce 00 00 00 2d 82 01 01 00 07 82 23 a4 74 65 73 74 21 92 a9");
        expected.extend_from_slice(b"chap-sha1");
        expected.extend_from_slice(&hex("b4 bb ac 08 47 2e 5f ef a8 0b 7c e2 24 c3 6c fd 7e 30 f7 4c 60"));
        assert_eq!(out, expected);
        let req = decode_request(packet(&out)).expect("decodes");
        let Body::Auth(a) = req.body else {
            panic!("an auth body")
        };
        assert_eq!(a.scramble().expect("scramble").len(), SCRAMBLE_SIZE);
    }

    #[test]
    fn dml_requests_decode_as_the_server_reads_them() {
        let mut out = Vec::new();
        insert(&mut out, 11, RequestType::Insert, 512, &[0x92, 0x01, 0xa1, b'x']);
        let req = decode_request(packet(&out)).expect("decodes");
        let Body::Dml(d) = req.body else { panic!("dml") };
        assert_eq!(
            (req.kind, d.space_id, d.tuple),
            (RequestType::Insert, 512, Some(&[0x92, 0x01, 0xa1, b'x'][..]))
        );

        out.clear();
        delete(&mut out, 12, 512, 1, &[0x91, 0x05]);
        let req = decode_request(packet(&out)).expect("decodes");
        let Body::Dml(d) = req.body else { panic!("dml") };
        assert_eq!((d.index_id, d.key), (1, Some(&[0x91, 0x05][..])));

        out.clear();
        let ops = [0x91, 0x93, 0xa1, b'=', 0x02, 0xa1, b'y'];
        update(&mut out, 13, 512, 0, &[0x91, 0x05], &ops);
        let req = decode_request(packet(&out)).expect("decodes");
        let Body::Dml(d) = req.body else { panic!("dml") };
        assert_eq!(
            (d.index_base, d.tuple, d.key),
            (1, Some(&ops[..]), Some(&[0x91, 0x05][..]))
        );

        out.clear();
        upsert(&mut out, 14, 512, &[0x91, 0x05], &ops);
        let req = decode_request(packet(&out)).expect("decodes");
        let Body::Dml(d) = req.body else { panic!("dml") };
        assert_eq!(
            (req.kind, d.index_base, d.ops, d.tuple),
            (RequestType::Upsert, 1, Some(&ops[..]), Some(&[0x91, 0x05][..]))
        );
    }

    #[test]
    fn queued_requests_frame_one_after_another() {
        let mut out = Vec::new();
        ping(&mut out, 1);
        call(&mut out, 2, RequestType::Call16, b"f", &[0x90]);
        let first = next_packet(&out, PACKET_SIZE_MAX).expect("frames").expect("whole");
        let rest = &out[first.consumed..];
        let second = next_packet(rest, PACKET_SIZE_MAX).expect("frames").expect("whole");
        assert_eq!(second.consumed, rest.len());
        let req = decode_request(&rest[second.packet]).expect("decodes");
        assert_eq!((req.sync, req.kind), (2, RequestType::Call16));
    }
}
