//! One entry of the SWIM member table, the event bits triggers see, and small helpers the
//! core shares with its drivers (spec §0, §2.1).
//!
//! A [`Member`] is what one instance believes about one peer (or about itself): status,
//! address, incarnation, payload, plus the bookkeeping of the three SWIM components
//! (failure detection counters, dissemination TTDs). Fields are private to the crate; the
//! Lua binding reads them through a [`MemberView`] and never writes them.

use std::net::SocketAddrV4;

use uuid::Uuid;

use super::payloads::{PayloadSlot, Payloads};
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
///
/// Every received packet carries about 26 records, each checked against its member, and
/// every sent one about 26 records read from members, so the entry holds what those read
/// and what every round step and ack touch, in 56 bytes, and nothing else: a simulated full
/// mesh of 10,000 members has 10^8 of them (128 bytes each made that 12.8 GB). What few
/// members need lives beside the table in [`super::core::Swim`]: payload bytes and payload
/// TTDs ([`super::payloads`], through [`Member::payload`]), ack deadlines and Lifeguard's
/// confirmations. The member table is where the core spends most of its time waiting for
/// memory; a smaller entry also means fewer cache lines per packet.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct Member {
    pub(crate) incarnation: Incarnation,
    pub(crate) uuid: Uuid,
    pub(crate) id: MemberId,
    pub(crate) addr: SocketAddrV4,
    pub(crate) status: Status,
    /// False when the payload was never learned, or a newer incarnation arrived without
    /// one: the bytes are kept (and returned to Lua) but not gossiped.
    pub(crate) payload_up_to_date: bool,
    pub(crate) payload: PayloadSlot,
    /// Dissemination steps left for this member's record (spec §2.5); the member is in the
    /// dissemination queue exactly while this is above 0. At most `ceil(log2 N) + 1`.
    pub(crate) status_ttd: u8,
    /// Expired pings in the current status (spec §2.3), saturating: only compared with
    /// thresholds of at most 9.
    pub(crate) unacked: u8,
}

// The layout above: one entry is 56 bytes, with no padding wasted beyond the tail.
const _: () = assert!(std::mem::size_of::<Member>() == 56);

impl Member {
    pub(crate) fn new(id: MemberId, uuid: Uuid, addr: SocketAddrV4, status: Status) -> Member {
        Member {
            id,
            uuid,
            addr,
            status,
            incarnation: Incarnation::default(),
            payload: PayloadSlot::NONE,
            payload_up_to_date: false,
            status_ttd: 0,
            unacked: 0,
        }
    }

    /// A read-only view that also sees the payload side table.
    pub(crate) fn view<'a>(&'a self, payloads: &'a Payloads) -> MemberView<'a> {
        MemberView { member: self, payloads }
    }
}

/// A member and its payload, as the core's readers see it.
#[derive(Debug, Clone, Copy)]
pub struct MemberView<'a> {
    member: &'a Member,
    payloads: &'a Payloads,
}

impl<'a> MemberView<'a> {
    pub fn id(&self) -> MemberId {
        self.member.id
    }
    pub fn uuid(&self) -> Uuid {
        self.member.uuid
    }
    pub fn addr(&self) -> SocketAddrV4 {
        self.member.addr
    }
    pub fn status(&self) -> Status {
        self.member.status
    }
    pub fn incarnation(&self) -> Incarnation {
        self.member.incarnation
    }
    /// The last known payload, even when it is outdated.
    pub fn payload(&self) -> &'a [u8] {
        self.payloads.bytes(self.member.payload)
    }
    pub fn is_payload_up_to_date(&self) -> bool {
        self.member.payload_up_to_date
    }
    /// Dissemination steps left (0: not queued for dissemination).
    pub fn status_ttd(&self) -> u32 {
        u32::from(self.member.status_ttd)
    }
    pub fn payload_ttd(&self) -> u32 {
        self.payloads.ttd(self.member.payload)
    }
    /// Expired pings counted in the current status.
    pub fn unacked_pings(&self) -> u32 {
        u32::from(self.member.unacked)
    }

    /// An owned snapshot, e.g. the last state of a dropped member.
    pub fn info(&self) -> MemberInfo {
        MemberInfo {
            id: self.member.id,
            uuid: self.member.uuid,
            addr: self.member.addr,
            status: self.member.status,
            incarnation: self.member.incarnation,
            payload: self.payload().to_vec(),
            payload_up_to_date: self.member.payload_up_to_date,
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

/// Asks the CPU to start loading the cache lines of `value` (its first and last byte: a
/// 56-byte member entry may straddle two). Only a hint: it changes no result, only how
/// many cache misses run at once.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    let first = (value as *const T).cast::<u8>();
    prefetch_line(first);
    prefetch_line(first.wrapping_add(std::mem::size_of::<T>().saturating_sub(1)));
}

/// [`prefetch`] for every cache line of `items`.
#[inline]
pub(crate) fn prefetch_all<T>(items: &[T]) {
    const CACHE_LINE: usize = 64;
    let first = items.as_ptr().cast::<u8>();
    for offset in (0..std::mem::size_of_val(items)).step_by(CACHE_LINE) {
        prefetch_line(first.wrapping_add(offset));
    }
}

#[inline(always)]
fn prefetch_line(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // Safety: a prefetch reads nothing into the program and never faults, even on an
    // address outside any object; SSE, which it needs, is part of every x86_64 CPU.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
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
