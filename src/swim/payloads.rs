//! Members' payload bytes and payload TTDs, kept beside the member table.
//!
//! Most members of most clusters never have either: payloads are optional, and the payload
//! TTD is set only when a payload changes. Inline in every member entry they cost 28 bytes
//! (a `Vec` and a `u32`), which a simulated full mesh of 10,000 pays 10^8 times; here a
//! member holds a 4-byte [`PayloadSlot`], empty for "no bytes, TTD 0", and the few that
//! have something own an entry of this table.

/// Where a member's payload lives: 0 for none (empty bytes, TTD 0), else its entry + 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PayloadSlot(u32);

impl PayloadSlot {
    pub(crate) const NONE: PayloadSlot = PayloadSlot(0);

    fn entry(self) -> Option<usize> {
        (self.0 as usize).checked_sub(1)
    }
}

#[derive(Debug, Clone, Default)]
struct Entry {
    bytes: Vec<u8>,
    ttd: u32,
}

/// The side table. Freed entries are reused, so its size follows the members that have a
/// payload or a running payload TTD now, not all that ever had one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Payloads {
    entries: Vec<Entry>,
    free: Vec<u32>,
}

impl Payloads {
    fn get(&self, slot: PayloadSlot) -> Option<&Entry> {
        slot.entry().and_then(|e| self.entries.get(e))
    }

    pub(crate) fn bytes(&self, slot: PayloadSlot) -> &[u8] {
        self.get(slot).map_or(&[], |e| &e.bytes)
    }

    pub(crate) fn ttd(&self, slot: PayloadSlot) -> u32 {
        self.get(slot).map_or(0, |e| e.ttd)
    }

    /// The entry of `slot`, made when it has none.
    fn entry_mut(&mut self, slot: &mut PayloadSlot) -> &mut Entry {
        let e = match slot.entry() {
            Some(e) => e,
            None => {
                let e = match self.free.pop() {
                    Some(e) => e as usize,
                    None => {
                        self.entries.push(Entry::default());
                        self.entries.len() - 1
                    }
                };
                *slot = PayloadSlot(e as u32 + 1);
                e
            }
        };
        &mut self.entries[e]
    }

    /// Frees the entry when it holds nothing any more.
    fn tidy(&mut self, slot: &mut PayloadSlot) {
        if let Some(e) = slot.entry() {
            if self.entries[e].bytes.is_empty() && self.entries[e].ttd == 0 {
                self.release(slot);
            }
        }
    }

    pub(crate) fn set_bytes(&mut self, slot: &mut PayloadSlot, bytes: Vec<u8>) {
        if bytes.is_empty() && *slot == PayloadSlot::NONE {
            return;
        }
        self.entry_mut(slot).bytes = bytes;
        self.tidy(slot);
    }

    pub(crate) fn set_ttd(&mut self, slot: &mut PayloadSlot, ttd: u32) {
        if ttd == 0 && *slot == PayloadSlot::NONE {
            return;
        }
        self.entry_mut(slot).ttd = ttd;
        self.tidy(slot);
    }

    /// One dissemination step: the TTD loses 1, down to 0.
    pub(crate) fn decrease_ttd(&mut self, slot: &mut PayloadSlot) {
        if let Some(e) = slot.entry() {
            let entry = &mut self.entries[e];
            entry.ttd = entry.ttd.saturating_sub(1);
            self.tidy(slot);
        }
    }

    /// The member is gone: its entry is free for another.
    pub(crate) fn release(&mut self, slot: &mut PayloadSlot) {
        if let Some(e) = slot.entry() {
            self.entries[e] = Entry::default();
            self.free.push(e as u32);
            *slot = PayloadSlot::NONE;
        }
    }

    /// Entries in use.
    #[cfg(test)]
    fn in_use(&self) -> usize {
        self.entries.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_hold_takes_no_entry() {
        let mut p = Payloads::default();
        let mut s = PayloadSlot::NONE;
        p.set_bytes(&mut s, Vec::new());
        p.set_ttd(&mut s, 0);
        p.decrease_ttd(&mut s);
        assert_eq!((s, p.in_use()), (PayloadSlot::NONE, 0));
        assert_eq!((p.bytes(s), p.ttd(s)), (&[][..], 0));
    }

    #[test]
    fn bytes_and_ttd_live_until_both_are_gone() {
        let mut p = Payloads::default();
        let mut s = PayloadSlot::NONE;
        // An empty payload set by hand still has a TTD to run (it is gossiped as empty).
        p.set_ttd(&mut s, 2);
        assert_eq!((p.bytes(s), p.ttd(s), p.in_use()), (&[][..], 2, 1));
        p.set_bytes(&mut s, b"ab".to_vec());
        p.decrease_ttd(&mut s);
        p.decrease_ttd(&mut s);
        p.decrease_ttd(&mut s);
        assert_eq!((p.bytes(s), p.ttd(s), p.in_use()), (&b"ab"[..], 0, 1));
        p.set_bytes(&mut s, Vec::new());
        assert_eq!((s, p.in_use()), (PayloadSlot::NONE, 0));
    }

    #[test]
    fn released_entries_are_reused() {
        let mut p = Payloads::default();
        let mut slots = [PayloadSlot::NONE; 3];
        for (k, s) in slots.iter_mut().enumerate() {
            p.set_bytes(s, vec![k as u8]);
        }
        p.release(&mut slots[1]);
        assert_eq!(slots[1], PayloadSlot::NONE);
        let mut again = PayloadSlot::NONE;
        p.set_bytes(&mut again, b"x".to_vec());
        assert_eq!((p.entries.len(), p.in_use()), (3, 3));
        assert_eq!(
            (p.bytes(slots[0]), p.bytes(slots[2]), p.bytes(again)),
            (&[0][..], &[2][..], &b"x"[..])
        );
    }
}
