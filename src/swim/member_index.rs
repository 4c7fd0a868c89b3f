//! UUID → position in the member table.
//!
//! Open addressing with linear probing over one `u32` per slot, at most three quarters
//! full. A slot is 0 when empty; otherwise its low `log2(slots)` bits hold the member's
//! position + 1 and the bits above them hold the same bits of the key's hash (a tag).
//!
//! Why not a `HashMap<Uuid, usize>`: looking up the ~26 records of every packet was the
//! core's biggest cost, and it was waiting for memory: the map's bucket (24 bytes) and then
//! the member entry are two cache misses per record. Here a slot is 4 bytes (2 KiB for
//! 100 members, small enough to stay cached), and the only miss left is the member entry,
//! which the caller reads next anyway; the tag means a probe that is not the one rarely
//! touches it. The slot size is also what a full mesh of 10,000 simulated members pays
//! per entry (10^8 entries: 0.66 GB at 4 bytes and 3/4 load, 2.6 GB at 8 bytes and 1/2).
//! The hash is a multiply-xor fold keyed per instance, so crafted UUIDs cannot pile up on
//! purpose.
//!
//! The tag leaves no room for a slot's home, so removing and growing re-hash the UUIDs of
//! the members the slots point to: both take the member table, with every position valid.

use uuid::Uuid;

use super::member::{prefetch, Member};

/// An odd 64-bit constant with well-mixed bits (2^64 / φ); nothing else special.
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// The smallest slot array.
const MIN_SLOTS: usize = 16;

#[derive(Debug, Clone)]
pub(crate) struct MemberIndex {
    key: u64,
    slots: Vec<u32>,
    len: usize,
}

impl MemberIndex {
    pub(crate) fn new(key: u64) -> MemberIndex {
        MemberIndex {
            key,
            slots: vec![0; MIN_SLOTS],
            len: 0,
        }
    }

    /// The key's hash: what [`MemberIndex::get_hashed`] and the prefetches take, so that a
    /// packet's records are hashed once for the prefetch pass and the lookup after it.
    pub(crate) fn hash(&self, uuid: &Uuid) -> u32 {
        let (a, b) = uuid.as_u64_pair();
        let mut h = (self.key.rotate_left(23) ^ a).wrapping_mul(MIX);
        h = (h.rotate_left(23) ^ b).wrapping_mul(MIX);
        h ^= h >> 32;
        h = h.wrapping_mul(MIX);
        // The high half after the last multiply is the best mixed.
        (h >> 32) as u32
    }

    /// The position field of a slot; also the mask of home slots.
    fn mask(&self) -> u32 {
        (self.slots.len() - 1) as u32
    }

    fn pos_of(&self, slot: u32) -> usize {
        ((slot & self.mask()) - 1) as usize
    }

    /// The slot for (`hash`, `pos`). Positions stay below `len`, which the load limit keeps
    /// below the slot count, so `pos + 1` fits the position field.
    fn slot(&self, hash: u32, pos: usize) -> u32 {
        (hash & !self.mask()) | (pos as u32 + 1)
    }

    fn fits(&self, len: usize) -> bool {
        len * 4 <= self.slots.len() * 3
    }

    /// The position of `uuid`; `members` is the table the positions point into.
    pub(crate) fn get(&self, uuid: &Uuid, members: &[Member]) -> Option<usize> {
        self.get_hashed(uuid, self.hash(uuid), members)
    }

    /// [`MemberIndex::get`] with `h = self.hash(uuid)` already known.
    pub(crate) fn get_hashed(&self, uuid: &Uuid, h: u32, members: &[Member]) -> Option<usize> {
        let mask = self.mask();
        let mut i = h & mask;
        loop {
            let s = self.slots[i as usize];
            if s == 0 {
                return None;
            }
            if ((s ^ h) & !mask) == 0 {
                let pos = self.pos_of(s);
                if members.get(pos).is_some_and(|m| m.uuid == *uuid) {
                    return Some(pos);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Starts loading the slot where a lookup of the key hashed to `h` begins.
    pub(crate) fn prefetch(&self, h: u32) {
        prefetch(&self.slots[(h & self.mask()) as usize]);
    }

    /// Starts loading every slot.
    pub(crate) fn prefetch_all(&self) {
        super::member::prefetch_all(&self.slots);
    }

    /// The position in the slot where a lookup of the key hashed to `h` begins, if its tag
    /// matches: a guess for prefetching, not an answer (the member there may be another).
    pub(crate) fn likely_pos(&self, h: u32) -> Option<usize> {
        let mask = self.mask();
        let s = self.slots[(h & mask) as usize];
        (s != 0 && ((s ^ h) & !mask) == 0).then(|| self.pos_of(s))
    }

    /// Makes room for `len` entries in all, so that inserting up to there does not grow.
    pub(crate) fn reserve(&mut self, len: usize, members: &[Member]) {
        let mut slots = self.slots.len();
        while len * 4 > slots * 3 {
            slots *= 2;
        }
        if slots > self.slots.len() {
            self.rebuild(slots, members);
        }
    }

    /// Adds `uuid` at `pos`; the caller knows it is absent. `members` holds every position
    /// already indexed.
    pub(crate) fn insert(&mut self, uuid: &Uuid, pos: usize, members: &[Member]) {
        if !self.fits(self.len + 1) {
            self.rebuild(self.slots.len() * 2, members);
        }
        let h = self.hash(uuid);
        self.place(self.slot(h, pos), h);
        self.len += 1;
    }

    fn place(&mut self, slot: u32, hash: u32) {
        let mask = self.mask();
        let mut i = hash & mask;
        while self.slots[i as usize] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i as usize] = slot;
    }

    /// Moves every entry into `count` slots; the tags are re-made from the members' UUIDs.
    fn rebuild(&mut self, count: usize, members: &[Member]) {
        let old = std::mem::replace(&mut self.slots, vec![0; count]);
        let old_mask = (old.len() - 1) as u32;
        for s in old.into_iter().filter(|&s| s != 0) {
            let pos = ((s & old_mask) - 1) as usize;
            let h = self.hash(&members[pos].uuid);
            self.place(self.slot(h, pos), h);
        }
    }

    /// The slot index holding (`uuid`, `pos`).
    fn find(&self, uuid: &Uuid, pos: usize) -> Option<usize> {
        let h = self.hash(uuid);
        let want = self.slot(h, pos);
        let mask = self.mask();
        let mut i = h & mask;
        loop {
            match self.slots[i as usize] {
                0 => return None,
                s if s == want => return Some(i as usize),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Forgets `uuid`, which is at `pos`. `members` must still hold every indexed position
    /// (call before removing the entry from the table).
    pub(crate) fn remove(&mut self, uuid: &Uuid, pos: usize, members: &[Member]) {
        let Some(mut hole) = self.find(uuid, pos) else { return };
        self.len -= 1;
        // Backward shift: pull later entries of the run into the hole unless that would put
        // one before its home slot.
        let mask = self.mask() as usize;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s == 0 {
                break;
            }
            let home = self.hash(&members[self.pos_of(s)].uuid) as usize & mask;
            // Distance from home to j versus from the hole to j, both cyclic.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = 0;
    }

    /// `uuid` moves from `from` to `to` (a swap-remove of the member table).
    pub(crate) fn repoint(&mut self, uuid: &Uuid, from: usize, to: usize) {
        if let Some(i) = self.find(uuid, from) {
            self.slots[i] = self.slot(self.hash(uuid), to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::member::MemberId;
    use crate::swim::proto::Status;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, SocketAddrV4};

    /// The index against a HashMap model under random inserts and swap-removes, with
    /// random UUIDs and with sequential ones (what a crafted cluster uses), through
    /// several growths.
    #[test]
    fn member_index_matches_a_map() {
        let mut rng = StdRng::seed_from_u64(0x1de7);
        for sequential in [false, true] {
            let mut index = MemberIndex::new(rng.random());
            let mut members: Vec<Member> = Vec::new();
            let mut model: HashMap<Uuid, usize> = HashMap::new();
            let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
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
                    index.insert(&uuid, pos, &members);
                    model.insert(uuid, pos);
                } else {
                    let pos = rng.random_range(0..members.len());
                    let uuid = members[pos].uuid;
                    index.remove(&uuid, pos, &members);
                    model.remove(&uuid);
                    let last = members.len() - 1;
                    if pos < last {
                        let moved = members[last].uuid;
                        index.repoint(&moved, last, pos);
                        model.insert(moved, pos);
                    }
                    members.swap_remove(pos);
                }
                if step % 97 == 0 {
                    for (uuid, &pos) in &model {
                        assert_eq!(index.get(uuid, &members), Some(pos), "step {step}");
                    }
                    assert_eq!(index.get(&Uuid::from_u128(u128::MAX - step), &members), None);
                    assert_eq!(index.len, model.len());
                    assert!(index.fits(index.len), "step {step}: over the load limit");
                }
            }
        }
    }

    /// `reserve` sizes the slots once for what is coming: no growth while filling up to
    /// it, and the entries already there are still found.
    #[test]
    fn reserve_then_fill_does_not_grow() {
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
        let mut index = MemberIndex::new(7);
        let mut members = Vec::new();
        for k in 0..10u64 {
            let uuid = Uuid::from_u128(u128::from(k) + 1);
            members.push(Member::new(MemberId(k), uuid, addr, Status::Alive));
            index.insert(&uuid, k as usize, &members);
        }
        index.reserve(1000, &members);
        let slots = index.slots.len();
        assert!((1000 * 4 / 3..2 * 1000 * 4 / 3).contains(&slots), "{slots} slots");
        for k in 10..1000u64 {
            let uuid = Uuid::from_u128(u128::from(k) + 1);
            members.push(Member::new(MemberId(k), uuid, addr, Status::Alive));
            index.insert(&uuid, k as usize, &members);
        }
        assert_eq!(index.slots.len(), slots);
        for (k, m) in members.iter().enumerate() {
            assert_eq!(index.get(&m.uuid, &members), Some(k));
        }
    }
}
