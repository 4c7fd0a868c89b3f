//! Bad news travels at once: node's addition to how a failure spreads.
//!
//! # Why
//!
//! Under Tarantool's rules a member is declared dead by whoever counts five missed acks
//! (two to suspect it, three more), and everyone else learns it from records piggybacked
//! on pings and acks, a few hops per round step. With node's `verify_suspicion` every
//! member that hears the suspicion also checks the suspect itself, so a death is seen
//! everywhere about `first ping + 0.5 s + the time the suspicion takes to spread` after it
//! happens (100 members, 0.1 s heartbeat and ack timeout: 0.93 s simulated, 0.77–0.97 s
//! measured against Tarantool's 1.05–1.21 s). The spreading is most of what is left above
//! the rules' own 0.5 s.
//!
//! # What
//!
//! Three kinds of news are sent at once, each in a packet of its own: a body with the
//! source UUID and a one-record dissemination section. Tarantool never sends such a packet,
//! but its decoder takes every section as optional and applies the records like any others
//! (checked against the real binary: `tests/swim_interop.rs`). The rules do not change:
//! every member still needs its own missed acks, or a record, to change a status.
//!
//! * **Suspicion**, by the member whose own misses made it: to [`PUSH_FANOUT`] random
//!   members, which then check the suspect at once (`verify_suspicion`); not relayed.
//! * **Death**, by a member whose own misses made it (not by one that only heard of it):
//!   to every alive member, like a quit. With the suspicion pushed, the first checkers
//!   decide within the same millisecond, so a death is seen everywhere about
//!   `first ping + 0.5 s`.
//! * **Refutation**, by the suspect itself when it bumps its version: to [`PUSH_FANOUT`]
//!   random members, so that its checkers stop counting misses sooner.
//!
//! # When not
//!
//! A member pushes a suspicion or a death only with a clean record ([`MissLog`]): at least
//! [`CLEAN_ACKS`] acks, no missed ack about any other member (except members found dead
//! since: their silence was theirs), and no suspicion of itself refuted, in the last
//! [`CLEAN_WINDOW_HEARTBEATS`] heartbeats. A member on a lossy network (or an overloaded
//! one, whose acks come late) then stays with the piggybacked pace, which is the one that
//! lets a falsely suspected member refute before many have heard: pushing every suspicion
//! and death at 20 % packet loss made each false death seen by every member (measured while
//! this was designed, with the check removed: 100 members, 600 rounds, 94,269 observed
//! false deaths instead of 156). `bash scripts/bench/swim-sim.sh --false-deaths 30`
//! compares the kept rule with pushing off.

/// Members a suspicion or a refutation is pushed to. A suspicion needs one checker to
/// reach a verdict (the rest hear the death from it); three survive a lost datagram or two.
pub const PUSH_FANOUT: usize = 3;

/// How long a member's record must be clean before it pushes, in heartbeats: enough of its
/// own pings (one per heartbeat) that a lossy link shows. At 20 % loss an ack goes missing
/// on 36 % of pings, so ten in a row come back only 1 % of the time.
pub const CLEAN_WINDOW_HEARTBEATS: u64 = 20;

/// Acks a clean record must have seen within its window: silence is not a clean record (a
/// member that just started, or whose pings all went unanswered, has no misses either).
pub const CLEAN_ACKS: usize = 8;

/// Members a [`MissLog`] remembers misses about. A clean window holds the suspect and a few
/// members that then died; an overflow only makes the record dirty.
const MISS_RING: usize = 16;

/// What a member's own failure detection saw lately: its last missed acks and whom they
/// were about, its last acks and the last refutation of itself. `K` names a member.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MissLog<K> {
    /// Time of the last missed ack about each of the last [`MISS_RING`] members missed, a ring.
    misses: [Option<(u64, K)>; MISS_RING],
    next_miss: usize,
    /// Time of the newest miss pushed out of the ring: whom it was about is forgotten.
    forgotten: Option<u64>,
    last_refutation: Option<u64>,
    /// Times of the last [`CLEAN_ACKS`] acks, a ring; 0 where none was seen yet.
    acks: [u64; CLEAN_ACKS],
    next_ack: usize,
}

impl<K: Copy> Default for MissLog<K> {
    fn default() -> Self {
        MissLog {
            misses: [None; MISS_RING],
            next_miss: 0,
            forgotten: None,
            last_refutation: None,
            acks: [0; CLEAN_ACKS],
            next_ack: 0,
        }
    }
}

impl<K: Copy + PartialEq> MissLog<K> {
    pub(crate) fn note_ack(&mut self, now: u64) {
        self.acks[self.next_ack] = now;
        self.next_ack = (self.next_ack + 1) % CLEAN_ACKS;
    }

    pub(crate) fn note_miss(&mut self, now: u64, member: K) {
        // One entry per member, so that a suspect's own misses do not push others out.
        if let Some(entry) = self.misses.iter_mut().flatten().find(|(_, k)| *k == member) {
            entry.0 = now;
            return;
        }
        if let Some((t, _)) = self.misses[self.next_miss] {
            self.forgotten = Some(t);
        }
        self.misses[self.next_miss] = Some((now, member));
        self.next_miss = (self.next_miss + 1) % MISS_RING;
    }

    pub(crate) fn note_refutation(&mut self, now: u64) {
        self.last_refutation = Some(now);
    }

    /// True when [`CLEAN_ACKS`] acks and no miss since `now - window` other than about
    /// `subject` or about members `excused` (those since found dead: their silence was
    /// theirs, not our link's).
    pub(crate) fn is_clean_except(&self, subject: K, now: u64, window: u64, excused: impl Fn(K) -> bool) -> bool {
        let recent = |t: u64| t != 0 && now.saturating_sub(t) < window;
        let acked = self.acks.iter().all(|&t| recent(t));
        let misses_excused = self
            .misses
            .iter()
            .flatten()
            .all(|&(t, k)| !recent(t) || k == subject || excused(k));
        acked && misses_excused && !self.forgotten.is_some_and(recent) && !self.last_refutation.is_some_and(recent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::member::MemberId;

    const W: u64 = 1_000;

    fn none(_: MemberId) -> bool {
        false
    }

    /// A log that saw [`CLEAN_ACKS`] acks just before `now`.
    fn acked(now: u64) -> MissLog<MemberId> {
        let mut log = MissLog::<MemberId>::default();
        for k in 0..CLEAN_ACKS as u64 {
            log.note_ack(now - 100 + k);
        }
        log
    }

    #[test]
    fn too_few_recent_acks_are_not_clean() {
        let mut log = MissLog::<MemberId>::default();
        assert!(!log.is_clean_except(MemberId(1), 5_000, W, none), "nothing seen yet");
        for k in 0..CLEAN_ACKS as u64 - 1 {
            log.note_ack(4_500 + k);
        }
        assert!(!log.is_clean_except(MemberId(1), 5_000, W, none));
        log.note_ack(3_000);
        assert!(!log.is_clean_except(MemberId(1), 5_000, W, none), "one ack is too old");
        for k in 0..CLEAN_ACKS as u64 {
            log.note_ack(4_900 + k);
        }
        assert!(log.is_clean_except(MemberId(1), 5_000, W, none));
    }

    #[test]
    fn misses_about_the_subject_only_keep_the_record_clean() {
        let mut log = acked(5_000);
        assert!(log.is_clean_except(MemberId(1), 5_000, W, none));
        log.note_miss(4_000, MemberId(1));
        log.note_miss(4_500, MemberId(1));
        assert!(log.is_clean_except(MemberId(1), 5_000, W, none));
        assert!(!log.is_clean_except(MemberId(2), 5_000, W, none));
    }

    #[test]
    fn a_recent_miss_about_another_member_spoils_it_until_the_window_passes() {
        let mut log = acked(5_000);
        log.note_miss(4_000, MemberId(2));
        log.note_miss(4_100, MemberId(1));
        log.note_miss(4_200, MemberId(1));
        assert!(!log.is_clean_except(MemberId(1), 4_900, W, none));
        assert!(log.is_clean_except(MemberId(1), 5_000, W, none));
        // The other member's miss is remembered behind any number of the subject's.
        log.note_miss(5_500, MemberId(3));
        log.note_miss(5_600, MemberId(1));
        assert!(!log.is_clean_except(MemberId(1), 5_700, W, none));
    }

    #[test]
    fn a_miss_about_a_member_found_dead_is_excused() {
        let mut log = acked(5_000);
        log.note_miss(4_500, MemberId(2));
        log.note_miss(4_600, MemberId(1));
        assert!(!log.is_clean_except(MemberId(1), 5_000, W, none));
        assert!(log.is_clean_except(MemberId(1), 5_000, W, |k| k == MemberId(2)));
        log.note_miss(4_700, MemberId(3));
        assert!(!log.is_clean_except(MemberId(1), 5_000, W, |k| k == MemberId(2)));
    }

    #[test]
    fn misses_pushed_out_of_the_ring_spoil_it_while_recent() {
        let mut log = acked(5_000);
        for k in 0..=MISS_RING as u64 {
            log.note_miss(4_000 + k, MemberId(1));
        }
        assert!(
            log.is_clean_except(MemberId(1), 4_500, W, none),
            "all about the subject"
        );
        // More members than the ring holds, all since found dead: the first is forgotten.
        let mut log = acked(5_000);
        for k in 0..=MISS_RING as u64 {
            log.note_miss(4_000 + k, MemberId(2 + k));
        }
        assert!(!log.is_clean_except(MemberId(1), 4_500, W, |_| true));
        assert!(log.is_clean_except(MemberId(1), 5_001, W, |_| true));
    }

    #[test]
    fn a_refutation_spoils_it() {
        let mut log = acked(5_400);
        log.note_refutation(4_500);
        assert!(!log.is_clean_except(MemberId(1), 5_000, W, none));
        assert!(log.is_clean_except(MemberId(1), 5_500, W, none));
    }
}
