//! The ballot: what an instance answers to VOTE (IPROTO 68). A joining replica asks every
//! peer for one and bootstraps from the best (writable, not loading, biggest vclock).
//!
//! 2.6.0 sends four keys, in this order: `{0x29: {1 is_ro, 4 is_loading, 2 vclock,
//! 3 gc_vclock}}` (`is_anon`, key 5, came with 2.6.1). `is_ro` is `box.cfg.read_only`;
//! `is_loading` is box's own read-only flag, which 2.6.0 holds while loading and then sets to
//! `box.cfg.read_only`, so a read-only instance says it is loading too (captured: `{1: true,
//! 4: true}` with `read_only = true`). Vclocks leave component 0 out. The reply's header is
//! an ordinary IPROTO reply's (fixed-width type, sync and schema version).

use crate::box_::errcode::ER_INVALID_MSGPACK;
use crate::box_::error::ClientError;
use crate::box_::mp::{self, Mp};
use crate::box_::wal::vclock::Vclock;
use crate::client_error;
use crate::iproto::codec;

use super::proto;

const KEY_IS_RO: u8 = 0x01;
const KEY_VCLOCK: u8 = 0x02;
const KEY_GC_VCLOCK: u8 = 0x03;
const KEY_IS_LOADING: u8 = 0x04;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ballot {
    pub is_ro: bool,
    pub is_loading: bool,
    /// Everything the instance has written.
    pub vclock: Vclock,
    /// The oldest row its WAL still holds: a replica behind it cannot catch up.
    pub gc_vclock: Vclock,
}

impl Ballot {
    /// The ballot of an instance whose box is not loaded yet (it listens before it
    /// bootstraps or recovers): loading, nothing written.
    pub fn loading(read_only: bool) -> Ballot {
        Ballot {
            is_ro: read_only,
            is_loading: true,
            vclock: Vclock::new(),
            gc_vclock: Vclock::new(),
        }
    }

    /// The ballot of a loaded instance, as 2.6.0 fills it (see the module comment).
    pub fn loaded(read_only: bool, vclock: Vclock, gc_vclock: Vclock) -> Ballot {
        Ballot {
            is_ro: read_only,
            is_loading: read_only,
            vclock,
            gc_vclock,
        }
    }

    /// The body `{0x29: {...}}`.
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        mp::write_map_header(out, 1);
        mp::write_uint(out, codec::keys::BALLOT as u64);
        mp::write_map_header(out, 4);
        mp::write_uint(out, KEY_IS_RO as u64);
        mp::write_bool(out, self.is_ro);
        mp::write_uint(out, KEY_IS_LOADING as u64);
        mp::write_bool(out, self.is_loading);
        mp::write_uint(out, KEY_VCLOCK as u64);
        proto::put_vclock(out, &self.vclock);
        mp::write_uint(out, KEY_GC_VCLOCK as u64);
        proto::put_vclock(out, &self.gc_vclock);
    }

    /// The whole reply to a VOTE with `sync`.
    pub fn encode_reply(&self, sync: u64, schema_version: u32) -> Vec<u8> {
        let mut body = Vec::with_capacity(32);
        self.encode_body(&mut body);
        codec::encode_ok(sync, schema_version, Some(&body))
    }

    /// Reads a VOTE reply's body as 2.6.0's `xrow_decode_ballot`: no BALLOT key is an
    /// empty ballot, unknown keys are skipped, a value of the wrong type is
    /// `Invalid MsgPack - packet body`.
    pub fn decode_body(body: Option<&[u8]>) -> Result<Ballot, ClientError> {
        let invalid = || client_error!(ER_INVALID_MSGPACK, "packet body");
        let body = body.ok_or_else(invalid)?;
        if mp::skip(body, 0).is_err() {
            return Err(invalid());
        }
        let Ok((Mp::Map(n), mut p)) = mp::read(body, 0) else {
            return Err(invalid());
        };
        let skip = |p: usize| mp::skip(body, p).map_err(|_| invalid());
        let mut ballot = Ballot::default();
        let mut found = false;
        for _ in 0..n {
            match mp::read(body, p) {
                Ok((Mp::UInt(k), next)) if k == codec::keys::BALLOT as u64 => {
                    p = next;
                    found = true;
                    break;
                }
                Ok((Mp::UInt(_), next)) => p = skip(next)?,
                _ => p = skip(skip(p)?)?,
            }
        }
        if !found {
            return Ok(ballot);
        }
        let Ok((Mp::Map(n), mut p)) = mp::read(body, p) else {
            return Err(invalid());
        };
        for _ in 0..n {
            let key = match mp::read(body, p) {
                Ok((Mp::UInt(k), next)) => {
                    p = next;
                    k
                }
                _ => {
                    p = skip(skip(p)?)?;
                    continue;
                }
            };
            let flag = |p: usize| match mp::read(body, p) {
                Ok((Mp::Bool(b), next)) => Ok((b, next)),
                _ => Err(invalid()),
            };
            match key {
                k if k == KEY_IS_RO as u64 => (ballot.is_ro, p) = flag(p)?,
                k if k == KEY_IS_LOADING as u64 => (ballot.is_loading, p) = flag(p)?,
                k if k == KEY_VCLOCK as u64 => (ballot.vclock, p) = proto::read_vclock(body, p).ok_or_else(invalid)?,
                k if k == KEY_GC_VCLOCK as u64 => {
                    (ballot.gc_vclock, p) = proto::read_vclock(body, p).ok_or_else(invalid)?
                }
                _ => p = skip(p)?,
            }
        }
        Ok(ballot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vclock(parts: &[(u32, i64)]) -> Vclock {
        let mut v = Vclock::new();
        for &(id, lsn) in parts {
            v.follow(id, lsn);
        }
        v
    }

    #[test]
    fn reply_is_byte_for_byte_2_6_0s() {
        // Captured from 2.6.0 (sync 7, schema version 84, vclock {0: 1, 1: 11}):
        // `{0: 0, 1: 7, 5: 84} {41: {1: false, 4: false, 2: {1: 11}, 3: {}}}`.
        let b = Ballot::loaded(false, vclock(&[(0, 1), (1, 11)]), Vclock::new());
        let reply = b.encode_reply(7, 84);
        let expected: &[u8] = &[
            0xce, 0, 0, 0, 0x24, 0x83, 0x00, 0xce, 0, 0, 0, 0, 0x01, 0xcf, 0, 0, 0, 0, 0, 0, 0, 7, 0x05, 0xce, 0, 0, 0,
            84, 0x81, 0x29, 0x84, 0x01, 0xc2, 0x04, 0xc2, 0x02, 0x81, 0x01, 0x0b, 0x03, 0x80,
        ];
        assert_eq!(reply, expected);
    }

    #[test]
    fn read_only_instances_say_they_are_loading_as_2_6_0_does() {
        let b = Ballot::loaded(true, vclock(&[(1, 13)]), Vclock::new());
        assert!(b.is_ro && b.is_loading);
        let mut body = Vec::new();
        b.encode_body(&mut body);
        assert_eq!(&body[..7], &[0x81, 0x29, 0x84, 0x01, 0xc3, 0x04, 0xc3]);
        // Before box is loaded: loading whatever read_only says.
        assert!(Ballot::loading(false).is_loading);
        assert!(!Ballot::loading(false).is_ro);
        assert!(Ballot::loading(true).is_ro);
    }

    #[test]
    fn decoding_reads_what_encoding_writes_and_tolerates_what_2_6_tolerates() {
        let b = Ballot::loaded(false, vclock(&[(1, 5), (3, 2)]), vclock(&[(1, 2)]));
        let mut body = Vec::new();
        b.encode_body(&mut body);
        assert_eq!(Ballot::decode_body(Some(&body)), Ok(b));
        // No ballot key at all: an empty ballot.
        assert_eq!(Ballot::decode_body(Some(&[0x81, 0x01, 0x02])), Ok(Ballot::default()));
        // 2.6.1's is_anon (key 5) is skipped.
        let with_anon = [0x81, 0x29, 0x82, 0x05, 0xc3, 0x01, 0xc3];
        assert!(Ballot::decode_body(Some(&with_anon)).unwrap().is_ro);
        let bad = [0x81, 0x29, 0x81, 0x01, 0x01];
        assert_eq!(
            Ballot::decode_body(Some(&bad)).unwrap_err().message,
            "Invalid MsgPack - packet body"
        );
        assert!(Ballot::decode_body(None).is_err());
        assert!(Ballot::decode_body(Some(&[0x81, 0x29])).is_err());
    }
}
