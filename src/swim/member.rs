//! One entry of the SWIM member table, the event bits triggers see, and small helpers the
//! core shares with its drivers (spec §0, §2.1).
//!
//! A [`Member`] is what one instance believes about one peer (or about itself): status,
//! address, incarnation, payload, plus the bookkeeping of the three SWIM components
//! (failure detection counters, dissemination TTDs). Fields are private to the crate; the
//! Lua binding reads them through getters and never writes them.

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
///
/// Laid out by hand: every received packet carries about 26 records, each checked against
/// its member, and every sent one about 26 records read from members, so what those two
/// read (incarnation, UUID, payload, address, status, payload flag) fills the first cache
/// line and the bookkeeping the second. The member table is where the core spends most of
/// its time waiting for memory; this makes it one line per record instead of two or three.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub struct Member {
    pub(crate) incarnation: Incarnation,
    pub(crate) uuid: Uuid,
    pub(crate) payload: Vec<u8>,
    pub(crate) addr: SocketAddrV4,
    pub(crate) status: Status,
    /// False when the payload was never learned, or a newer incarnation arrived without
    /// one: the bytes are kept (and returned to Lua) but not gossiped.
    pub(crate) payload_up_to_date: bool,
    // ----- second cache line -----
    pub(crate) id: MemberId,
    /// Set while the member is in the ack-wait heap; the heap entry with another deadline
    /// is stale.
    pub(crate) ack_deadline: Option<u64>,
    /// Lifeguard: distinct gossip senders that confirmed the current suspicion.
    pub(crate) confirmations: Vec<Uuid>,
    /// Dissemination steps left for this member's record (spec §2.5).
    pub(crate) status_ttd: u32,
    /// Dissemination steps left during which the record carries the payload.
    pub(crate) payload_ttd: u32,
    /// Expired pings in the current status (spec §2.3).
    pub(crate) unacked: u32,
    pub(crate) in_dissemination: bool,
}

// The layout above: the hot fields fill the first line, the whole entry two.
const _: () = assert!(std::mem::offset_of!(Member, payload_up_to_date) < 64);
const _: () = assert!(std::mem::size_of::<Member>() == 128);

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

/// Asks the CPU to start loading the cache line of `value`. Only a hint: it changes no
/// result, only how many cache misses run at once.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // Safety: a prefetch reads nothing into the program and never faults; SSE, which it
    // needs, is part of every x86_64 CPU.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// An odd 64-bit constant with well-mixed bits (2^64 / φ); nothing else special.
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// The smallest slot array: room for 8 members at the maximum load.
const INDEX_MIN_SLOTS: usize = 16;

/// UUID → position in the member table: open addressing with linear probing over one
/// `u64` per slot (0: empty; else the position + 1 in the high half and the low half of
/// the key's hash as a tag), at most half full.
///
/// Why not a `HashMap<Uuid, usize>`: looking up the ~26 records of every packet was the
/// core's biggest cost, and it was waiting for memory: the map's bucket (24 bytes) and then
/// the member entry are two cache misses per record. Here the slot array is 8 bytes per
/// slot, small enough to stay cached (2 KiB for 100 members), and the only miss left is
/// the member entry, which the caller reads next anyway; the tag means a probe that is not
/// the one does not touch it. The hash is a multiply-xor fold keyed per instance, so
/// crafted UUIDs cannot pile up on purpose.
#[derive(Debug, Clone)]
pub(crate) struct MemberIndex {
    key: u64,
    slots: Vec<u64>,
    len: usize,
}

impl MemberIndex {
    pub(crate) fn new(key: u64) -> MemberIndex {
        MemberIndex {
            key,
            slots: vec![0; INDEX_MIN_SLOTS],
            len: 0,
        }
    }

    fn hash(&self, uuid: &Uuid) -> u32 {
        let (a, b) = uuid.as_u64_pair();
        let mut h = (self.key.rotate_left(23) ^ a).wrapping_mul(MIX);
        h = (h.rotate_left(23) ^ b).wrapping_mul(MIX);
        h ^= h >> 32;
        h = h.wrapping_mul(MIX);
        // The high half after the last multiply is the best mixed.
        (h >> 32) as u32
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn slot(pos: usize, tag: u32) -> u64 {
        ((pos as u64 + 1) << 32) | u64::from(tag)
    }

    fn pos_of(slot: u64) -> usize {
        ((slot >> 32) - 1) as usize
    }

    /// The position of `uuid`; `members` is the table the positions point into.
    pub(crate) fn get(&self, uuid: &Uuid, members: &[Member]) -> Option<usize> {
        let tag = self.hash(uuid);
        let mask = self.mask();
        let mut i = tag as usize & mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                return None;
            }
            if s as u32 == tag {
                let pos = Self::pos_of(s);
                if members.get(pos).is_some_and(|m| m.uuid == *uuid) {
                    return Some(pos);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Starts loading the slot where a lookup of `uuid` begins.
    pub(crate) fn prefetch(&self, uuid: &Uuid) {
        prefetch(&self.slots[self.hash(uuid) as usize & self.mask()]);
    }

    /// The position in the slot where a lookup of `uuid` begins, if its tag matches: a
    /// guess for prefetching, not an answer (the member there may be another).
    pub(crate) fn likely_pos(&self, uuid: &Uuid) -> Option<usize> {
        let tag = self.hash(uuid);
        let s = self.slots[tag as usize & self.mask()];
        (s != 0 && s as u32 == tag).then(|| Self::pos_of(s))
    }

    /// Adds `uuid` at `pos`; the caller knows it is absent.
    pub(crate) fn insert(&mut self, uuid: &Uuid, pos: usize) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let tag = self.hash(uuid);
        self.place(Self::slot(pos, tag));
        self.len += 1;
    }

    fn place(&mut self, slot: u64) {
        let mask = self.mask();
        let mut i = slot as u32 as usize & mask;
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
    }

    fn grow(&mut self) {
        let bigger = vec![0; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, bigger);
        for s in old.into_iter().filter(|&s| s != 0) {
            self.place(s);
        }
    }

    /// The slot holding (`uuid`, `pos`).
    fn find(&self, uuid: &Uuid, pos: usize) -> Option<usize> {
        let tag = self.hash(uuid);
        let want = Self::slot(pos, tag);
        let mask = self.mask();
        let mut i = tag as usize & mask;
        loop {
            match self.slots[i] {
                0 => return None,
                s if s == want => return Some(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Forgets `uuid`, which is at `pos`.
    pub(crate) fn remove(&mut self, uuid: &Uuid, pos: usize) {
        let Some(mut hole) = self.find(uuid, pos) else { return };
        self.len -= 1;
        // Backward shift: pull later entries of the run into the hole unless that would put
        // one before its home slot.
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s == 0 {
                break;
            }
            let home = s as u32 as usize & mask;
            // Distance from home to j versus from the hole to j, both cyclic.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = 0;
    }

    /// `uuid` moved from `from` to `to` (a swap-remove of the member table).
    pub(crate) fn repoint(&mut self, uuid: &Uuid, from: usize, to: usize) {
        if let Some(i) = self.find(uuid, from) {
            self.slots[i] = Self::slot(to, self.hash(uuid));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    use std::collections::HashMap;

    /// The index against a HashMap model under random inserts and swap-removes, with
    /// random UUIDs and with sequential ones (what a crafted cluster uses).
    #[test]
    fn member_index_matches_a_map() {
        let mut rng = StdRng::seed_from_u64(0x1de7);
        for sequential in [false, true] {
            let mut index = MemberIndex::new(rng.random());
            let mut members: Vec<Member> = Vec::new();
            let mut model: HashMap<Uuid, usize> = HashMap::new();
            let addr = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 1);
            let mut next = 0u128;
            for step in 0..20_000 {
                let grow = members.len() < 600 && rng.random_range(0..3) != 0 || members.is_empty();
                if grow {
                    next += 1;
                    let uuid = if sequential {
                        Uuid::from_u128(next)
                    } else {
                        Uuid::from_u128(rng.random())
                    };
                    if model.contains_key(&uuid) {
                        continue;
                    }
                    let pos = members.len();
                    members.push(Member::new(MemberId(next as u64), uuid, addr, Status::Alive));
                    index.insert(&uuid, pos);
                    model.insert(uuid, pos);
                } else {
                    let pos = rng.random_range(0..members.len());
                    let uuid = members[pos].uuid;
                    index.remove(&uuid, pos);
                    model.remove(&uuid);
                    let last = members.len() - 1;
                    members.swap_remove(pos);
                    if pos < last {
                        let moved = members[pos].uuid;
                        index.repoint(&moved, last, pos);
                        model.insert(moved, pos);
                    }
                }
                if step % 97 == 0 {
                    for (uuid, &pos) in &model {
                        assert_eq!(index.get(uuid, &members), Some(pos), "step {step}");
                    }
                    assert_eq!(index.get(&Uuid::from_u128(u128::MAX - step), &members), None);
                    assert_eq!(index.len, model.len());
                }
            }
        }
    }

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
