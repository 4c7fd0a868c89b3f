//! The ballot: what an instance answers to VOTE (IPROTO 68). A joining replica asks every
//! peer for one and bootstraps from the best (writable, not loading, biggest vclock).
//!
//! 2.6.0 sends four keys, in this order: `{0x29: {1 is_ro, 4 is_loading, 2 vclock,
//! 3 gc_vclock}}` (`is_anon`, key 5, came later: 2.6.3 sends it). `is_ro` is `box.cfg.read_only`;
//! `is_loading` is box's own read-only flag, which 2.6.0 holds while loading and then sets to
//! `box.cfg.read_only`, so a read-only instance says it is loading too (captured: `{1: true,
//! 4: true}` with `read_only = true`). Vclocks leave component 0 out. The reply's header is
//! an ordinary IPROTO reply's (fixed-width type, sync and schema version).

use crate::box_::mp;
use crate::box_::wal::vclock::Vclock;
use crate::iproto::codec;

use super::proto;
pub use super::replica_proto::Ballot;
use super::replica_proto::{BALLOT_GC_VCLOCK, BALLOT_IS_LOADING, BALLOT_IS_RO, BALLOT_VCLOCK};

/// The master's half: the ballot an instance gives. (The replica reads it with
/// `replica_proto::decode_ballot`.)
impl Ballot {
    /// The ballot of an instance whose box is not loaded yet (it listens before it
    /// bootstraps or recovers): loading, nothing written.
    pub fn loading(read_only: bool) -> Ballot {
        Ballot {
            is_ro: read_only,
            is_loading: true,
            ..Ballot::default()
        }
    }

    /// The ballot of a loaded instance, as 2.6.0 fills it (see the module comment).
    pub fn loaded(read_only: bool, vclock: Vclock, gc_vclock: Vclock) -> Ballot {
        Ballot {
            is_ro: read_only,
            is_loading: read_only,
            is_anon: false,
            vclock,
            gc_vclock,
        }
    }

    /// The body `{0x29: {...}}`, the four keys of 2.6.0 (no `is_anon`).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        mp::write_map_header(out, 1);
        mp::write_uint(out, codec::keys::BALLOT as u64);
        mp::write_map_header(out, 4);
        mp::write_uint(out, BALLOT_IS_RO as u64);
        mp::write_bool(out, self.is_ro);
        mp::write_uint(out, BALLOT_IS_LOADING as u64);
        mp::write_bool(out, self.is_loading);
        mp::write_uint(out, BALLOT_VCLOCK as u64);
        proto::put_vclock(out, &self.vclock);
        mp::write_uint(out, BALLOT_GC_VCLOCK as u64);
        proto::put_vclock(out, &self.gc_vclock);
    }

    /// The whole reply to a VOTE with `sync`.
    pub fn encode_reply(&self, sync: u64, schema_version: u32) -> Vec<u8> {
        let mut body = Vec::with_capacity(32);
        self.encode_body(&mut body);
        codec::encode_ok(sync, schema_version, Some(&body))
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
    fn the_replicas_decoder_reads_what_the_master_writes() {
        let b = Ballot::loaded(false, vclock(&[(1, 5), (3, 2)]), vclock(&[(1, 2)]));
        let mut body = Vec::new();
        b.encode_body(&mut body);
        assert_eq!(super::super::replica_proto::decode_ballot(Some(&body)), Ok(b));
    }
}
