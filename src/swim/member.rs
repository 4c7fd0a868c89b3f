//! One entry of the SWIM member table, the event bits triggers see, and small helpers the
//! core shares with its drivers (spec §0, §2.1).
//!
//! A [`Member`] is what one instance believes about one peer (or about itself): status,
//! address, incarnation, payload, plus the bookkeeping of the three SWIM components
//! (failure detection counters, dissemination TTDs). Fields are private to the crate; the
//! Lua binding reads them through getters and never writes them.

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddrV4;

use uuid::Uuid;

use super::proto::{Incarnation, Status};

/// Event bits of `on_member_event` (spec §0). A member's changes between two drains are
/// OR-ed into one mask, as Tarantool batches them per member.
pub mod event {
    /// The member was added to the table.
    pub const NEW: u8 = 0x01;
    /// Its status changed.
    pub const NEW_STATUS: u8 = 0x02;
    /// Its address changed.
    pub const NEW_URI: u8 = 0x04;
    /// Its generation changed (always together with [`NEW_VERSION`]).
    pub const NEW_GENERATION: u8 = 0x08;
    /// Its incarnation changed in any way.
    pub const NEW_VERSION: u8 = 0x10;
    /// `is_new_incarnation`: either incarnation bit.
    pub const NEW_INCARNATION: u8 = NEW_GENERATION | NEW_VERSION;
    /// Its payload bytes changed.
    pub const NEW_PAYLOAD: u8 = 0x20;
    /// `is_update`: any of the bits between NEW and DROP.
    pub const UPDATE: u8 = NEW_STATUS | NEW_URI | NEW_GENERATION | NEW_VERSION | NEW_PAYLOAD;
    /// The member left the table.
    pub const DROP: u8 = 0x40;
}

/// How dead members are removed (spec §1.2 `gc_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcMode {
    /// Dead members are deleted after `NO_ACKS_TO_GC` more unacked pings once their status
    /// TTD is 0. Gossip about unknown dead members is ignored.
    On,
    /// Dead members stay (and are pinged every ack timeout) until removed by hand.
    Off,
}

/// Identity of one member *object*: a member removed and added again with the same UUID is
/// a new object, the way Tarantool's refcounted C members are. Event batching and the Lua
/// member cache key on it. Never reused within one [`super::core::Swim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(pub u64);

/// A member as one instance sees it.
#[derive(Debug, Clone)]
pub struct Member {
    pub(crate) id: MemberId,
    pub(crate) uuid: Uuid,
    pub(crate) addr: SocketAddrV4,
    pub(crate) status: Status,
    pub(crate) incarnation: Incarnation,
    pub(crate) payload: Vec<u8>,
    /// False when the payload was never learned, or a newer incarnation arrived without
    /// one: the bytes are kept (and returned to Lua) but not gossiped.
    pub(crate) payload_up_to_date: bool,
    /// Dissemination steps left for this member's record (spec §2.5).
    pub(crate) status_ttd: u32,
    /// Dissemination steps left during which the record carries the payload.
    pub(crate) payload_ttd: u32,
    pub(crate) in_dissemination: bool,
    /// Expired pings in the current status (spec §2.3).
    pub(crate) unacked: u32,
    /// Set while the member is in the ack-wait heap; the heap entry with another deadline
    /// is stale.
    pub(crate) ack_deadline: Option<u64>,
    /// Lifeguard: distinct gossip senders that confirmed the current suspicion.
    pub(crate) confirmations: Vec<Uuid>,
}

impl Member {
    pub(crate) fn new(id: MemberId, uuid: Uuid, addr: SocketAddrV4, status: Status) -> Member {
        Member {
            id,
            uuid,
            addr,
            status,
            incarnation: Incarnation::default(),
            payload: Vec::new(),
            payload_up_to_date: false,
            status_ttd: 0,
            payload_ttd: 0,
            in_dissemination: false,
            unacked: 0,
            ack_deadline: None,
            confirmations: Vec::new(),
        }
    }

    pub fn id(&self) -> MemberId {
        self.id
    }
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }
    pub fn addr(&self) -> SocketAddrV4 {
        self.addr
    }
    pub fn status(&self) -> Status {
        self.status
    }
    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }
    /// The last known payload, even when it is outdated.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    pub fn is_payload_up_to_date(&self) -> bool {
        self.payload_up_to_date
    }
    /// Dissemination steps left (0: not queued for dissemination).
    pub fn status_ttd(&self) -> u32 {
        self.status_ttd
    }
    pub fn payload_ttd(&self) -> u32 {
        self.payload_ttd
    }
    /// Expired pings counted in the current status.
    pub fn unacked_pings(&self) -> u32 {
        self.unacked
    }

    /// An owned snapshot, e.g. the last state of a dropped member.
    pub fn info(&self) -> MemberInfo {
        MemberInfo {
            id: self.id,
            uuid: self.uuid,
            addr: self.addr,
            status: self.status,
            incarnation: self.incarnation,
            payload: self.payload.clone(),
            payload_up_to_date: self.payload_up_to_date,
        }
    }
}

/// What Lua can read from a member, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: MemberId,
    pub uuid: Uuid,
    pub addr: SocketAddrV4,
    pub status: Status,
    pub incarnation: Incarnation,
    pub payload: Vec<u8>,
    pub payload_up_to_date: bool,
}

/// One batched trigger event. `last` is the member's final state when the mask has DROP
/// (the table no longer holds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEvent {
    pub id: MemberId,
    pub uuid: Uuid,
    pub mask: u8,
    pub last: Option<MemberInfo>,
}

/// `ceil(log2(n))`, 0 for n ≤ 1.
pub(crate) fn ceil_log2(n: usize) -> u32 {
    if n <= 1 {
        0
    } else {
        usize::BITS - (n - 1).leading_zeros()
    }
}

/// The event bits an incarnation change makes: any change is NEW_VERSION, a generation
/// change adds NEW_GENERATION (spec §0).
pub(crate) fn incarnation_bits(old: Incarnation, new: Incarnation) -> u8 {
    if old == new {
        0
    } else if old.generation != new.generation {
        event::NEW_GENERATION | event::NEW_VERSION
    } else {
        event::NEW_VERSION
    }
}

/// A keyed hasher for UUID keys. UUIDs are already random, so a multiply-xor fold is
/// enough; the per-instance key keeps crafted UUIDs from colliding on purpose. SipHash
/// would be the safe default but costs a third of the simulator's time on 10,000 members.
#[derive(Clone, Copy)]
pub(crate) struct KeyedHash(pub u64);

pub(crate) struct KeyedHasher(u64);

/// An odd 64-bit constant with well-mixed bits (2^64 / φ); nothing else special.
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

impl BuildHasher for KeyedHash {
    type Hasher = KeyedHasher;
    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher(self.0)
    }
}

impl Hasher for KeyedHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(word)).wrapping_mul(MIX);
        }
    }
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 32;
        h = h.wrapping_mul(MIX);
        h ^ (h >> 29)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttd_is_ceil_log2_plus_one() {
        // Spec §2.5: 1 for a single-member table, 2 for 2, 3 for 3–4, 4 for 5–8.
        let cases = [(1, 1), (2, 2), (3, 3), (4, 3), (5, 4), (8, 4), (9, 5), (1000, 11)];
        for (i, (n, want)) in cases.iter().enumerate() {
            assert_eq!(ceil_log2(*n) + 1, *want, "#{i}: n = {n}");
        }
    }

    #[test]
    fn incarnation_change_bits() {
        // Spec §0: a generation change sets both bits, a version change only NEW_VERSION.
        let a = Incarnation::new(1, 1);
        assert_eq!(incarnation_bits(a, a), 0);
        assert_eq!(incarnation_bits(a, Incarnation::new(1, 2)), event::NEW_VERSION);
        assert_eq!(incarnation_bits(a, Incarnation::new(2, 0)), event::NEW_INCARNATION);
    }
}
