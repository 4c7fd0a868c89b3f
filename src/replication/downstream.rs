//! What box sees of the relays: each replica's relay state for
//! `box.info.replication[id].downstream`, and how far each replica has acknowledged, which
//! keeps the xlogs it still needs from garbage collection (Tarantool's gc consumers).
//!
//! 2.6.0 shows `downstream` only once a replica subscribed: `{status = 'follow', idle, vclock}`
//! while the relay runs (`idle`: seconds since it last sent a row or heartbeat; `vclock`:
//! what the replica acknowledged), `{status = 'stopped', message, system_message}` after it
//! ended. (`lag` came with a later version.) A replica that only joined shows none.
//! Everything here lives on the Lua thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use uuid::Uuid;

use crate::box_::wal::vclock::{Vclock, VCLOCK_MAX};

#[derive(Debug, Clone, PartialEq)]
pub enum RelayState {
    /// Streaming to the replica.
    Follow,
    /// Ended with this error (`system_message`: the errno's text, when there is one).
    Stopped {
        message: String,
        system_message: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Downstream {
    /// None: the replica joined but never subscribed (no `downstream` shown).
    pub state: Option<RelayState>,
    /// What the replica acknowledged last (at subscribe: the vclock it came with).
    pub vclock: Vclock,
    /// When the relay last sent a row or a heartbeat.
    pub last_row: Instant,
}

thread_local! {
    static DOWNSTREAMS: RefCell<HashMap<Uuid, Downstream>> = RefCell::new(HashMap::new());
}

/// Changes (or makes) the entry of replica `uuid`.
pub fn update(uuid: Uuid, f: impl FnOnce(&mut Downstream)) {
    DOWNSTREAMS.with(|d| {
        let mut d = d.borrow_mut();
        let entry = d.entry(uuid).or_insert_with(|| Downstream {
            state: None,
            vclock: Vclock::new(),
            last_row: Instant::now(),
        });
        f(entry);
    });
}

pub fn get(uuid: &Uuid) -> Option<Downstream> {
    DOWNSTREAMS.with(|d| d.borrow().get(uuid).cloned())
}

/// Whether a relay streams to `uuid` now (a second SUBSCRIBE from it is refused).
pub fn is_following(uuid: &Uuid) -> bool {
    get(uuid).is_some_and(|d| d.state == Some(RelayState::Follow))
}

/// The by-component minimum of `a` and `b` for every instance but 0, whose component stays
/// `a`'s (Tarantool's `vclock_min_ignore0`: replicas never need local rows).
pub fn min_ignore0(a: &Vclock, b: &Vclock) -> Vclock {
    let mut out = Vclock::new();
    for id in 0..VCLOCK_MAX as u32 {
        let lsn = if id == 0 { a.get(0) } else { a.get(id).min(b.get(id)) };
        if lsn != 0 || a.iter().any(|(i, _)| i == id) {
            out.follow(id, lsn);
        }
    }
    out
}

/// The oldest WAL row that the replicas `wanted` (those still in `_cluster`) may need:
/// xlogs before it may go. None: no replica holds anything back.
pub fn gc_floor(wanted: impl Fn(&Uuid) -> bool) -> Option<Vclock> {
    DOWNSTREAMS.with(|d| {
        d.borrow()
            .iter()
            .filter(|(u, _)| wanted(u))
            .map(|(_, d)| d.vclock)
            .reduce(|a, b| min_ignore0(&a, &b))
    })
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
    fn the_gc_floor_is_the_least_acknowledged_vclock_of_current_replicas() {
        let (a, b, gone) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(gc_floor(|_| true), None);
        update(a, |d| d.vclock = vclock(&[(1, 10), (2, 3)]));
        update(b, |d| d.vclock = vclock(&[(1, 7), (2, 5)]));
        update(gone, |d| d.vclock = vclock(&[(1, 1)]));
        let floor = gc_floor(|u| *u != gone).unwrap();
        assert_eq!(floor, vclock(&[(1, 7), (2, 3)]));
        // Component 0 is the checkpoint's own.
        assert_eq!(
            min_ignore0(&vclock(&[(0, 9), (1, 20)]), &vclock(&[(0, 1), (1, 7)])),
            vclock(&[(0, 9), (1, 7)])
        );
    }

    #[test]
    fn only_a_subscribed_relay_follows() {
        let u = Uuid::new_v4();
        update(u, |_| {});
        assert!(!is_following(&u));
        update(u, |d| d.state = Some(RelayState::Follow));
        assert!(is_following(&u));
        update(u, |d| {
            d.state = Some(RelayState::Stopped {
                message: "timed out".into(),
                system_message: Some("Connection timed out".into()),
            })
        });
        assert!(!is_following(&u));
    }
}
